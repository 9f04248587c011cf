//! `pitr backup [--incremental [--parent ID]]`: `capture::backup::take`,
//! progress through the reporter.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use crate::capture::backup::{self, BackupEvent, BackupKind, BackupOptions};
use crate::cli::args::{self, RepoArg};
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::cli::report::Reporter;

pub struct Args {
    pub pgdata: PathBuf,
    pub conn: Option<String>,
    pub label: Option<String>,
    pub spread_checkpoint: bool,
    pub jobs: Option<usize>,
    pub archive_timeout: u64,
    pub max_rate: Option<NonZeroU64>,
    pub from_standby: Option<String>,
    pub incremental: bool,
    pub parent: Option<String>,
    pub json: bool,
}

pub async fn run(arg: &RepoArg, a: Args) -> Result<(), Failure> {
    let jobs = a.jobs.unwrap_or_else(|| args::default_jobs(&arg.repo));
    let repo = super::open_repo(arg).await?;
    let opts = BackupOptions {
        pgdata: a.pgdata,
        conninfo: a.conn,
        label: a.label,
        fast: !a.spread_checkpoint,
        jobs,
        archive_timeout: Duration::from_secs(a.archive_timeout),
        max_rate: a.max_rate,
        from_standby: a.from_standby.clone(),
    };
    // The bar says when the copy is held to a rate: its speed is then the
    // cap's, not the disk's.
    let msg = match a.max_rate {
        Some(r) => format!(
            "backup (max {}/s)",
            crate::plan::explain::human_bytes(r.get())
        ),
        None => "backup".to_string(),
    };
    let reporter = Reporter::new(a.json);
    let r2 = reporter.clone();
    let kind = if a.incremental {
        BackupKind::Incremental { parent: a.parent }
    } else {
        BackupKind::Full
    };
    let rec = backup::take(&repo, &opts, &kind, move |ev| match ev {
        BackupEvent::Started { total_bytes, .. } => r2.bytes(total_bytes, &msg),
        BackupEvent::FileDone { bytes } => r2.inc(bytes),
        BackupEvent::Stopped { .. } => r2.finish(),
    })
    .await;
    reporter.finish();
    render::backup(
        &rec?,
        &render::BackupRun {
            max_rate: a.max_rate.map(NonZeroU64::get),
            from_standby: a.from_standby.is_some(),
        },
        a.json,
    )
}
