//! The parent of an incremental backup and what each walked file is
//! compared with. The parent is the newest full or incremental backup of
//! this cluster on the server's current timeline, or the one `--parent`
//! names (which may lie on an ancestor timeline if the current one
//! branched off after the parent's end); its chain must restore
//! (`Catalog::chain`). Each file then gets a `Basis`: main-fork relation
//! segments the parent has are compared block by block against the
//! parent's start LSN (`pg::page`, which says why that is correct); other
//! files the parent has whole are compared by their BLAKE3; everything
//! else, and `pg_control`, is stored whole.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::walk::Entry;
use super::BackupError;
use crate::catalog::model::FileKind;
use crate::catalog::{BackupFile, BackupManifest, BackupRecord, Catalog, RepoConfig, StartKind};
use crate::pg::{page, Lsn, TimelineId};
use crate::repo::{layout, Repo, KIND_MANIFEST};

/// What kind of backup to take.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BackupKind {
    #[default]
    Full,
    /// Only what changed since `parent` (None: the newest backup on the
    /// server's timeline).
    Incremental { parent: Option<String> },
}

/// The parent an incremental is taken on.
pub(super) struct Parent {
    pub(super) record: BackupRecord,
    /// The parent's manifest entries by path: the chain's state of every
    /// file at the parent (its `size`, and `blake3` when known).
    files: HashMap<String, BackupFile>,
    /// The timeline the incremental must start on.
    pub(super) timeline: TimelineId,
}

/// How one walked file is stored.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Basis {
    /// Whole, in this backup's objects.
    Own,
    /// Whole unless its BLAKE3 equals the parent's (then: unchanged).
    Compare { blake3: String, size: u64 },
    /// Block by block: blocks changed since `since` (or past the parent's
    /// size) are stored.
    Blocks {
        since: Lsn,
        parent_size: u64,
        parent_blake3: String,
        block_size: u32,
    },
}

/// The server's current timeline (`pg_control_checkpoint()`; right after
/// `pg_backup_start`'s checkpoint it is the backup's start timeline, which
/// `check_timeline` compares once the backup stopped).
pub(super) async fn server_timeline(client: &Client) -> Result<TimelineId, BackupError> {
    let sql = |source| BackupError::Sql {
        what: "pg_control_checkpoint()",
        source,
    };
    let tli: i32 = client
        .query_one("select timeline_id from pg_control_checkpoint()", &[])
        .await
        .map_err(sql)?
        .try_get(0)
        .map_err(sql)?;
    u32::try_from(tli)
        .ok()
        .and_then(|t| TimelineId::new(t).ok())
        .ok_or_else(|| BackupError::BadParent {
            id: String::new(),
            reason: format!("the server reports timeline {tli}"),
        })
}

/// Finds and checks the parent, and reads its manifest.
pub(super) async fn choose_parent(
    repo: &Repo,
    config: &RepoConfig,
    timeline: TimelineId,
    requested: Option<&str>,
) -> Result<Parent, BackupError> {
    let catalog = repo.load_catalog().await?;
    let record = pick(&catalog, config, timeline, requested)?.clone();
    let manifest: BackupManifest = repo
        .get_meta(&layout::backup_manifest(&record.id)?, KIND_MANIFEST)
        .await?;
    Ok(Parent {
        files: manifest
            .files
            .into_iter()
            .map(|f| (f.path.clone(), f))
            .collect(),
        record,
        timeline,
    })
}

/// The parent by the rules above (pure: the catalog decides).
pub(super) fn pick<'a>(
    catalog: &'a Catalog,
    config: &RepoConfig,
    timeline: TimelineId,
    requested: Option<&str>,
) -> Result<&'a BackupRecord, BackupError> {
    let bad = |id: &str, reason: String| BackupError::BadParent {
        id: id.to_string(),
        reason,
    };
    let parent = match requested {
        Some(id) => catalog
            .backup(id)
            .ok_or_else(|| BackupError::UnknownParent(id.to_string()))?,
        None => catalog
            .backups
            .iter()
            .filter(|b| {
                b.timeline == timeline
                    && b.system_id == config.system_id
                    && !matches!(b.start, StartKind::Snapshot { .. })
            })
            .max_by(|a, b| a.stop_lsn.cmp(&b.stop_lsn).then(a.id.cmp(&b.id)))
            .ok_or(BackupError::NoParent { timeline })?,
    };
    if matches!(parent.start, StartKind::Snapshot { .. }) {
        return Err(bad(
            &parent.id,
            "it is a snapshot, not a backup in this repository's objects".into(),
        ));
    }
    if parent.system_id != config.system_id {
        return Err(bad(
            &parent.id,
            format!("it is of database system {}", parent.system_id),
        ));
    }
    catalog
        .chain(&parent.id)
        .map_err(|e| bad(&parent.id, e.to_string()))?;
    if parent.timeline != timeline {
        // Only a parent whose whole backup lies on this timeline's history
        // (it ended before the switch away from its timeline): every page
        // changed on this timeline since then has a later LSN.
        let on_history = catalog
            .history_of(timeline)
            .is_some_and(|h| h.tli_of_point(parent.stop_lsn) == parent.timeline);
        if !on_history {
            return Err(bad(
                &parent.id,
                format!(
                    "it is on timeline {}, which the server's timeline {timeline} did not branch from after the backup's end",
                    parent.timeline
                ),
            ));
        }
    }
    Ok(parent)
}

impl Parent {
    /// How each walked entry is stored.
    pub(super) fn basis(&self, entries: &[Entry], block_size: u32) -> Vec<Basis> {
        entries
            .iter()
            .map(|e| {
                let Some(p) = self.files.get(&e.rel) else {
                    return Basis::Own;
                };
                if e.kind != FileKind::File
                    || p.kind != FileKind::File
                    || e.rel == "global/pg_control"
                    || e.size == 0
                {
                    return Basis::Own;
                }
                if page::is_main_fork(&e.rel) && block_size > 0 {
                    return Basis::Blocks {
                        since: self.record.start_lsn,
                        parent_size: p.size,
                        parent_blake3: p.blake3.clone(),
                        block_size,
                    };
                }
                if p.blake3.is_empty() || !p.chunks.is_empty() {
                    return Basis::Own;
                }
                Basis::Compare {
                    blake3: p.blake3.clone(),
                    size: p.size,
                }
            })
            .collect()
    }

    /// The start kind of the backup taken on this parent.
    pub(super) fn start(&self, changed_bytes: u64) -> StartKind {
        StartKind::Incremental {
            parent: self.record.id.clone(),
            changed_bytes,
        }
    }
}
