//! `pitr restore`: `recover::run::restore`, progress through the reporter.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::args::RestoreArgs;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::cli::report::Reporter;
use crate::recover::{run, Action, OnEvent};

/// Recovery events as progress (`--progress`: a bar on a terminal, or
/// JSON lines on stderr).
pub(crate) fn progress(reporter: &Reporter) -> OnEvent {
    let r = reporter.clone();
    Arc::new(move |ev| r.recover_event(ev))
}

pub async fn run(
    args: &RestoreArgs,
    action: Action,
    created_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let opts = args.run_options(action, super::search(args.pg_bin.as_deref()), created_dir)?;
    let repo = super::open_repo(&args.repo).await?;
    let reporter = Reporter::with_mode(args.progress.progress, args.json.json);
    let out = run::restore(&repo, &opts, progress(&reporter)).await;
    reporter.finish();
    render::restore(&out?, args.no_start, args.json.json)
}
