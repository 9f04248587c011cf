//! `pitr maintain`: what to capture now (`plan::maintain::decide`, from the
//! catalog, the cost model and the server's timeline), then capturing it:
//! a full or incremental backup (`capture::backup`) or a snapshot
//! (`capture::snapshot`). Run from cron or a systemd timer every
//! `interval`; each run says what it did and why.

use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use crate::capture::backup::{self, BackupError, BackupEvent, BackupKind, BackupOptions};
use crate::capture::snapshot::{self, ProviderArgs, SnapshotError, SnapshotOptions};
use crate::catalog::SnapshotProvider;
use crate::plan::cost::CostModel;
use crate::plan::maintain::{decide, Capture, Decision, MaintainPolicy};
use crate::plan::PlanError;
use crate::repo::{Repo, RepoError};

#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// The server, and how a backup is taken (`pgdata`, `conninfo`,
    /// `jobs`, `archive_timeout`, rate).
    pub backup: BackupOptions,
    pub policy: MaintainPolicy,
    /// The snapshot provider, when snapshots may be taken.
    pub snapshot: Option<(SnapshotProvider, ProviderArgs)>,
    /// Decide and say, capture nothing.
    pub dry_run: bool,
}

/// What one run decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainReport {
    pub decision: Decision,
    pub dry_run: bool,
    /// What was captured (absent: nothing, or a dry run).
    pub captured: Option<Captured>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    pub id: String,
    /// `full`, `incremental` or `snapshot`.
    pub kind: &'static str,
    pub stored_bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("cannot decide what to capture: {0}")]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The decision asked for a snapshot with no provider given (a bug:
    /// it only does when one is).
    #[error("maintain decided on a snapshot but has no --provider")]
    NoProvider,
}

/// Decides what `repo` needs now for the server at `opts.backup.pgdata`,
/// and captures it unless `dry_run`.
pub async fn maintain(
    repo: &Repo,
    opts: &MaintainOptions,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<MaintainReport, MaintainError> {
    let catalog = repo.load_catalog().await?;
    let control = backup::read_control(&opts.backup.pgdata)?;
    let cost = CostModel::from_timings(&catalog.timings);
    let mut policy = opts.policy.clone();
    policy.snapshots = opts.snapshot.is_some();
    let decision = decide(
        &catalog,
        control.checkpoint_timeline,
        &cost,
        Utc::now(),
        &policy,
    )?;
    if opts.dry_run || decision.capture == Capture::Nothing {
        return Ok(MaintainReport {
            decision,
            dry_run: opts.dry_run,
            captured: None,
        });
    }
    let began = Instant::now();
    let captured = match &decision.capture {
        Capture::Nothing => None,
        Capture::Full | Capture::Incremental { .. } => {
            let kind = match &decision.capture {
                Capture::Incremental { parent } => BackupKind::Incremental {
                    parent: Some(parent.clone()),
                },
                _ => BackupKind::Full,
            };
            let b = backup::take(repo, &opts.backup, &kind, on_event).await?;
            Some(Captured {
                id: b.record.id.clone(),
                kind: b.record.start.name(),
                stored_bytes: b.record.stored_bytes,
                seconds: began.elapsed().as_secs_f64(),
            })
        }
        Capture::Snapshot => {
            let Some((provider, args)) = &opts.snapshot else {
                return Err(MaintainError::NoProvider);
            };
            let s = snapshot::snapshot(
                repo,
                &SnapshotOptions {
                    pgdata: opts.backup.pgdata.clone(),
                    conninfo: opts.backup.conninfo.clone(),
                    provider: *provider,
                    provider_args: args.clone(),
                    atomic: false,
                    archive_timeout: opts.backup.archive_timeout,
                },
            )
            .await?;
            Some(Captured {
                id: s.id,
                kind: "snapshot",
                stored_bytes: 0,
                seconds: began.elapsed().as_secs_f64(),
            })
        }
    };
    Ok(MaintainReport {
        decision,
        dry_run: false,
        captured,
    })
}
