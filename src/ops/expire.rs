//! `pitr expire`: removes what `plan::expire` says no moment of the
//! retention window needs, safely beside running `wal-push` and `backup`:
//!
//! 1. One expire at a time: `claims/expire.json`, created once (a claim a
//!    dead run left is cleared once its process is provably gone).
//! 2. The start time `t0` is taken before the catalog is read, so every
//!    segment acknowledged after it is younger than `t0`.
//! 3. The WAL horizon (`catalog/wal-horizon.json`: below which segment,
//!    archived before `t0`) is written before any segment goes, so a
//!    catalog read from then on no longer lists them, and a dead run
//!    leaves nothing listed that is gone. It only ever grows.
//! 4. Start points: the record first (unlisted at once), then its objects
//!    (`backups/<id>/`); incrementals before their parents. Never one
//!    another kept start point's chain needs. Before any WAL: a run that
//!    dies midway never leaves a listed start point without its WAL.
//! 5. Segments below the horizon: only those whose record says they were
//!    archived before `t0`; data, transaction lists, then the record and
//!    its index entry. Index chunks wholly below the horizon go last.
//!
//! History files are kept (a few bytes each, and what any later timeline's
//! history is read from). A snapshot's provider copy (and its tablespaces'
//! own snapshots) is deleted by its provider after its record
//! (`capture::snapshot::delete`); one the
//! provider cannot delete is named in the report (`snapshots_left`), for
//! the operator.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::capture::backup::claim;
use crate::catalog::{BackupClaim, Catalog, StartKind, WalHorizon, WalSegmentRecord};
use crate::pg::{SegNo, WalFileName};
use crate::plan::expire::{plan_expire, ExpireError, ExpirePlan, ExpirePolicy};
use crate::repo::store::{PutMode, StoreError};
use crate::repo::{layout, Repo, RepoError, KIND_CLAIM, KIND_WAL, KIND_WAL_HORIZON};

#[derive(Debug, thiserror::Error)]
pub enum ExpireRunError {
    #[error(transparent)]
    Plan(#[from] ExpireError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("another pitr expire is running on this repository (pid {pid} on {host}, since {since}); run one at a time")]
    Running {
        pid: u32,
        host: String,
        since: DateTime<Utc>,
    },
    #[error("backup {id} is needed by {needed_by}, which expire keeps: refusing to remove it (a bug: the plan must keep a kept start point's chain)")]
    Needed { id: String, needed_by: String },
}

impl From<StoreError> for ExpireRunError {
    fn from(e: StoreError) -> Self {
        ExpireRunError::Repo(RepoError::Store(e))
    }
}

#[derive(Clone, Debug)]
pub struct ExpireOptions {
    pub policy: ExpirePolicy,
    pub dry_run: bool,
}

/// A start point removed (or that would be).
#[derive(Clone, Debug, Serialize)]
pub struct Removed {
    pub id: String,
    pub kind: &'static str,
    pub stop_time: DateTime<Utc>,
    pub stored_bytes: u64,
}

/// What `pitr expire --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ExpireReport {
    pub dry_run: bool,
    pub plan: ExpirePlan,
    pub backups: Vec<Removed>,
    /// WAL segments removed (or that would be), and their stored bytes.
    pub wal_segments: u64,
    pub wal_stored_bytes: u64,
    /// Segments below the horizon archived after expire started: kept.
    pub kept_recent: Vec<String>,
    /// Stored bytes freed (or that would be): backups' objects and WAL.
    pub bytes_freed: u64,
    /// Snapshots whose record is removed but whose provider could not
    /// delete its copy, and why: delete them by hand.
    pub snapshots_left: Vec<String>,
}

/// Plans and (unless `dry_run`) carries out an expire of `repo`.
pub async fn expire(repo: &Repo, opts: &ExpireOptions) -> Result<ExpireReport, ExpireRunError> {
    if opts.dry_run {
        let t0 = Utc::now();
        let catalog = repo.load_catalog().await?;
        return report_only(&catalog, t0, &opts.policy);
    }
    lock(repo).await?;
    let result = run(repo, &opts.policy).await;
    if let Err(e) = repo.store().delete(&layout::expire_claim()).await {
        tracing::warn!(error = %e, "could not remove the expire claim");
    }
    result
}

fn report_only(
    catalog: &Catalog,
    t0: DateTime<Utc>,
    policy: &ExpirePolicy,
) -> Result<ExpireReport, ExpireRunError> {
    let plan = plan_expire(catalog, t0, policy)?;
    let backups = removed(catalog, &plan);
    let (n, bytes) = wal_below(catalog, plan.wal_below);
    Ok(ExpireReport {
        dry_run: true,
        bytes_freed: backups.iter().map(|b| b.stored_bytes).sum::<u64>() + bytes,
        plan,
        backups,
        wal_segments: n,
        wal_stored_bytes: bytes,
        kept_recent: Vec::new(),
        snapshots_left: Vec::new(),
    })
}

fn removed(catalog: &Catalog, plan: &ExpirePlan) -> Vec<Removed> {
    plan.remove
        .iter()
        .filter_map(|id| catalog.backup(id))
        .map(|b| Removed {
            id: b.id.clone(),
            kind: b.start.name(),
            stop_time: b.stop_time,
            stored_bytes: b.stored_bytes,
        })
        .collect()
}

/// Segments of the index numbered below `below`, and their stored bytes.
fn wal_below(catalog: &Catalog, below: Option<SegNo>) -> (u64, u64) {
    let Some(below) = below else { return (0, 0) };
    catalog
        .wal
        .iter()
        .filter(|r| r.segno < below)
        .fold((0, 0), |(n, b), r| (n + 1, b + r.stored_bytes()))
}

async fn lock(repo: &Repo) -> Result<(), ExpireRunError> {
    let claim = claim::this_process("expire");
    for _ in 0..2 {
        match repo
            .put_meta(&layout::expire_claim(), KIND_CLAIM, &claim, PutMode::Create)
            .await
        {
            Ok(()) => return Ok(()),
            Err(RepoError::Store(StoreError::AlreadyExists(_))) => {
                let held: BackupClaim = repo.get_meta(&layout::expire_claim(), KIND_CLAIM).await?;
                let gone = claim::owner_of(&held).provably_gone();
                if !gone {
                    return Err(ExpireRunError::Running {
                        pid: held.pid,
                        host: held.hostname,
                        since: held.started_at,
                    });
                }
                repo.store().delete(&layout::expire_claim()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ExpireRunError::Running {
        pid: 0,
        host: "another run that took the claim just now".into(),
        since: Utc::now(),
    })
}

async fn run(repo: &Repo, policy: &ExpirePolicy) -> Result<ExpireReport, ExpireRunError> {
    let t0 = Utc::now();
    let catalog = repo.load_catalog().await?;
    let plan = plan_expire(&catalog, t0, policy)?;
    // Never a parent of something kept (the plan keeps chains; checked
    // again here, against the catalog as read).
    for id in &plan.remove {
        if let Some(d) = catalog
            .dependents(id)
            .into_iter()
            .find(|d| !plan.remove.contains(&d.id))
        {
            return Err(ExpireRunError::Needed {
                id: id.clone(),
                needed_by: d.id.clone(),
            });
        }
    }
    let backups = removed(&catalog, &plan);
    // Incrementals before their parents: a run that dies midway never
    // leaves a listed incremental without its parent.
    let mut order: Vec<&str> = plan.remove.iter().map(String::as_str).collect();
    order.sort_by_key(|id| std::cmp::Reverse(catalog.chain(id).map(|c| c.len()).unwrap_or(0)));
    let mut snapshots_left = Vec::new();
    for id in order {
        let Some(b) = catalog.backup(id) else {
            continue;
        };
        repo.store().delete(&layout::backup_record(id)?).await?;
        repo.store().delete_prefix(&layout::backup_dir(id)?).await?;
        if let StartKind::Snapshot {
            provider,
            handle,
            commands,
            tablespaces,
            ..
        } = &b.start
        {
            // A handle and commands come from the repository: whoever can
            // write it must not get a path removed or a command run as root.
            if nix::unistd::geteuid().is_root() {
                snapshots_left.push(format!(
                    "{id} ({} {handle}): not deleted, pitr ran as root (run expire as the data directory's owner)",
                    provider.name()
                ));
            } else if let Err(e) = crate::capture::snapshot::delete(
                *provider,
                commands.as_ref(),
                id,
                handle,
                tablespaces,
            )
            .await
            {
                snapshots_left.push(format!("{id} ({} {handle}): {e}", provider.name()));
            }
        }
    }
    // Then the WAL: a run that dies before this leaves only WAL no listed
    // start point needs, never a listed start point without its WAL.
    let (wal_segments, wal_stored_bytes, kept_recent) = match plan.wal_below {
        Some(below) => remove_wal(repo, below, t0).await?,
        None => (0, 0, Vec::new()),
    };
    Ok(ExpireReport {
        dry_run: false,
        bytes_freed: backups.iter().map(|b| b.stored_bytes).sum::<u64>() + wal_stored_bytes,
        plan,
        backups,
        wal_segments,
        wal_stored_bytes,
        kept_recent,
        snapshots_left,
    })
}

/// Writes the horizon, then removes every segment below it that was
/// archived before `t0`. Returns (segments removed, their stored bytes,
/// segments kept because they were archived after `t0`).
async fn remove_wal(
    repo: &Repo,
    below: SegNo,
    t0: DateTime<Utc>,
) -> Result<(u64, u64, Vec<String>), ExpireRunError> {
    let horizon = match repo.wal_horizon().await? {
        Some(h) if h.below >= below => WalHorizon {
            below: h.below,
            at: t0.max(h.at),
        },
        _ => WalHorizon { below, at: t0 },
    };
    repo.put_meta(
        &layout::wal_horizon(),
        KIND_WAL_HORIZON,
        &horizon,
        PutMode::Overwrite,
    )
    .await?;
    let size = repo.config().await?.wal_segment_size;
    let mut records = Vec::new();
    for meta in repo.store().list(layout::WAL_DIR).await? {
        let name = meta.key.file_name().to_string();
        let Some(seg) = name.strip_suffix(".json") else {
            continue;
        };
        let Ok(WalFileName::Segment(seg)) = WalFileName::parse(seg) else {
            continue;
        };
        if seg.segno(size).is_ok_and(|s| s < below) {
            records.push((seg, meta.key));
        }
    }
    let (mut n, mut bytes, mut recent) = (0u64, 0u64, Vec::new());
    for (seg, key) in records {
        let rec: WalSegmentRecord = repo.get_meta(&key, KIND_WAL).await?;
        if rec.pushed_at >= t0 {
            recent.push(seg.to_string());
            continue;
        }
        let tag = layout::record_tag(&rec)?;
        repo.store()
            .delete(&layout::segment_data(&seg, tag.as_ref()))
            .await?;
        for head in [false, true] {
            repo.store()
                .delete(&layout::segment_xacts(&seg, tag.as_ref(), head))
                .await?;
        }
        repo.store().delete(&key).await?;
        repo.store()
            .delete(&layout::wal_index_pending(&seg))
            .await?;
        n += 1;
        bytes += rec.stored_bytes;
    }
    // Index chunks wholly below the horizon (their every segment is gone,
    // or was archived after t0 and is listed by its pending entry... which
    // a compacted chunk replaced: keep those chunks).
    for meta in repo.store().list(layout::CATALOG_WAL_DIR).await? {
        if let Some(layout::WalIndexKey::Chunk(..)) = layout::parse_wal_index_key(&meta.key) {
            let chunk: crate::catalog::WalIndexChunk =
                match repo.get_meta(&meta.key, crate::repo::KIND_WAL_CHUNK).await {
                    Ok(c) => c,
                    Err(_) => continue,
                };
            let all_gone =
                chunk.last_segno < below && chunk.segments.iter().all(|r| horizon.hides(r));
            if all_gone {
                repo.store().delete(&meta.key).await?;
            }
        }
    }
    Ok((n, bytes, recent))
}
