//! `pitr rollback`: a restore that promotes (`recover::run::restore`), or
//! with `--upgrade-to DIR` `recover::run::rollback_upgrade`.

use std::path::{Path, PathBuf};

use crate::cli::args::RestoreArgs;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::cli::report::Reporter;
use crate::recover::{run, Action};

pub async fn run(
    args: &RestoreArgs,
    upgrade_to: Option<&Path>,
    created_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let Some(dir) = upgrade_to else {
        return super::restore::run(args, Action::Promote, created_dir).await;
    };
    let opts = args.run_options(
        Action::Promote,
        super::search(args.pg_bin.as_deref()),
        created_dir,
    )?;
    let repo = super::open_repo(&args.repo).await?;
    // The physical step shows no progress: its outcome is part of ours.
    let quiet = Reporter::new(true);
    let out = run::rollback_upgrade(&repo, &opts, dir, super::restore::progress(&quiet)).await?;
    render::upgrade(&out, args.json.json)
}
