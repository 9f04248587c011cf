//! `pitr restore`: `recover::run::restore`, progress through the reporter.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::args::RestoreArgs;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::cli::report::Reporter;
use crate::recover::{run, Action, OnEvent, RecoverEvent};

/// Recovery events as progress on a terminal.
pub(crate) fn progress(reporter: &Reporter) -> OnEvent {
    let r = reporter.clone();
    Arc::new(move |ev| match ev {
        RecoverEvent::Materializing { total_bytes } => r.bytes(total_bytes, "restore"),
        RecoverEvent::Bytes(n) => r.inc(n),
        RecoverEvent::Starting { port } => r.status(format!("starting server on port {port}")),
        RecoverEvent::Replaying { lsn } => r.status(format!("replaying WAL at {lsn}")),
        RecoverEvent::Done => r.finish(),
    })
}

pub async fn run(
    args: &RestoreArgs,
    action: Action,
    created_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let opts = args.run_options(action, super::search(args.pg_bin.as_deref()), created_dir)?;
    let repo = super::open_repo(&args.repo).await?;
    let reporter = Reporter::new(args.json.json);
    let out = run::restore(&repo, &opts, progress(&reporter)).await;
    reporter.finish();
    render::restore(&out?, args.no_start, args.json.json)
}
