//! `pitr follow`: `recover::run::restore` with `Action::Standby` (a hot
//! standby of the newest backup, replaying WAL as it is archived),
//! progress through the reporter.

use std::path::PathBuf;

use crate::cli::args::FollowArgs;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::cli::report::Reporter;
use crate::recover::run;

pub async fn run(args: &FollowArgs, created_dir: Option<PathBuf>) -> Result<(), Failure> {
    let opts = args.run_options(super::search(args.pg_bin.as_deref()), created_dir);
    let repo = super::open_repo(&args.repo).await?;
    let reporter = Reporter::with_mode(args.progress.progress, args.json.json);
    let out = run::restore(&repo, &opts, super::restore::progress(&reporter)).await;
    reporter.finish();
    render::follow(&out?, &repo.location().to_arg(), args.json.json)
}
