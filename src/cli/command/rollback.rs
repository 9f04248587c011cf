//! `pitr rollback`: a restore that promotes (`recover::run::restore`), or
//! with `--upgrade-to DIR` `recover::run::rollback_upgrade`.

use std::path::{Path, PathBuf};

use crate::cli::args::{ProgressMode, RestoreArgs};
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
    // The physical step shows no bar unless asked (`--progress bar`): its
    // outcome is part of ours. `--progress json` lines are for scripts.
    let mode = match args.progress.progress {
        ProgressMode::Auto => ProgressMode::None,
        asked => asked,
    };
    let reporter = Reporter::with_mode(mode, args.json.json);
    let out = run::rollback_upgrade(&repo, &opts, dir, super::restore::progress(&reporter)).await;
    reporter.finish();
    render::upgrade(&out?, args.json.json)
}
