//! `pitr backup`: a full base backup with the non-exclusive low-level API.
//! One session holds `pg_backup_start` .. `pg_backup_stop` (PG15+; the
//! `pg_start_backup(.., exclusive => false)` pair before 15) while the data
//! directory is copied file by file, compressed and checksummed into
//! `backups/<id>/files/`. `pg_control` is copied last. The manifest, with
//! the returned `backup_label` and `tablespace_map`, follows; the record
//! `catalog/backups/<id>.json` comes last of all, and only once the stop segment is
//! archived in this repository, so a backup that was killed or failed is
//! never listed. A failed backup removes what it wrote.
//!
//! The parts, in the order a backup runs them: `cluster` (is this the
//! repository's cluster and major), `walk` (what to copy), `claim` (an id
//! no other run takes), `session` (start and stop on the server), `copy`
//! (the parallel file copy) and `manifest` (the manifest, then the record).
//! `throttle` caps the copy's read rate (`--max-rate`); `standby` copies
//! from a standby while the primary brackets the backup (`--from-standby`).
//!
//! The walk runs after `pg_backup_start` (and, from a standby, after the
//! standby has replayed to the start): a relation file created before the
//! start checkpoint but after the walk would otherwise be missing, and
//! replay from the start checkpoint would never create it.
//!
//! An incremental (`BackupKind::Incremental`, `incremental`) runs the same
//! way on a parent backup: files equal to the parent's are recorded as
//! unchanged and relation files store only their changed blocks; its
//! manifest and record are written at format version 3.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::{
    BackupFile, BackupRecord, FileSource, RepoConfig, StartKind, WalSegmentRecord,
};
use crate::pg::control::ControlError;
use crate::pg::{Lsn, MajorError, PgMajor, SegmentName, TimelineId};
use crate::repo::store::StoreError;
use crate::repo::{layout, Repo, RepoError, KIND_WAL};
use crate::server::conn::{self, ConnError};

pub(crate) mod claim;
mod cluster;
mod copy;
mod incremental;
mod manifest;
pub(crate) mod session;
mod standby;
mod throttle;
pub(crate) mod walk;

pub use cluster::{check_cluster, read_control, read_major};
pub use copy::CHUNK_BYTES;
pub use incremental::BackupKind;
pub use throttle::{parse_rate, parse_size, RateError, Throttle};

use incremental::{Basis, Parent};

use session::{Session, Stopped};
use walk::{walk, Entry};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// pg_control cannot be decoded (the source says why and what to do).
    #[error("{path}")]
    Control {
        path: String,
        #[source]
        source: ControlError,
    },
    /// PG_VERSION does not name a major (the source says what it holds).
    #[error("{path}")]
    PgVersion {
        path: String,
        #[source]
        source: MajorError,
    },
    #[error("{pgdata} belongs to database system {found}, but this repository holds system {expected}: use the repository made for this cluster (pitr init)")]
    OtherCluster {
        pgdata: String,
        found: String,
        expected: String,
    },
    #[error("{pgdata} is PostgreSQL {found}, the repository holds PostgreSQL {expected}")]
    OtherMajor {
        pgdata: String,
        found: PgMajor,
        expected: PgMajor,
    },
    /// A `pg_tblspc` entry pitr cannot back up (the text says which).
    #[error("tablespaces: {0}; nothing was copied")]
    Tablespaces(String),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("PostgreSQL refused {what}: {source}")]
    Sql {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// What `pg_backup_start`/`pg_backup_stop` returned does not read
    /// (the source says what is wrong with it).
    #[error("the {what} returned by the server")]
    Returned {
        what: &'static str,
        #[source]
        source: ReturnedError,
    },
    #[error("the backup's stop segment {segment} did not reach this repository within {waited_secs}s; is archive_command `pitr wal-push --repo {repo} %p`? The backup was removed")]
    StopSegmentNotArchived {
        segment: String,
        waited_secs: u64,
        repo: String,
    },
    #[error("copying {path}: {source}")]
    Copy {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no free backup id near {0}: too many backups started in the same second")]
    NoFreeId(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("--from-standby needs --conn naming the primary (without it pitr would connect to the server of --pgdata, the standby)")]
    StandbyNeedsPrimary,
    #[error("--from-standby {standby} is not in recovery: it is a primary; name a streaming standby of the primary given with --conn")]
    StandbyIsPrimary { standby: String },
    #[error("--from-standby {standby} is database system {found}, the primary is {expected}: name a standby of this primary")]
    StandbyOtherSystem {
        standby: String,
        found: String,
        expected: String,
    },
    #[error("--from-standby {standby} runs on {data_directory}, but --pgdata is {pgdata}: give the standby's data directory")]
    StandbyOtherDirectory {
        standby: String,
        data_directory: String,
        pgdata: String,
    },
    #[error("the standby {standby} replayed only to {replay} within {waited_secs}s, the backup starts at {start} on the primary: is it streaming (or restoring) the primary's WAL? (--archive-timeout sets the wait) The backup was removed")]
    StandbyBehind {
        standby: String,
        replay: String,
        start: Lsn,
        waited_secs: u64,
    },
    #[error("a CHECKPOINT on the standby {standby} left its redo point at {redo} within {waited_secs}s, before the backup's start {start}: its disk may hold pages older than the start, which replay would not fix (is checkpointing on the standby blocked?) The backup was removed")]
    StandbyRestartpoint {
        standby: String,
        redo: Lsn,
        start: Lsn,
        waited_secs: u64,
    },
    #[error("no full or incremental backup of this cluster on timeline {timeline} to take an incremental on: take a full backup first (pitr backup without --incremental), or name a parent with --parent")]
    NoParent { timeline: TimelineId },
    #[error("no backup {0} in this repository (pitr info lists them)")]
    UnknownParent(String),
    #[error("backup {id} cannot be the parent of an incremental: {reason}")]
    BadParent { id: String, reason: String },
    #[error("the server switched from timeline {expected} to {found} while the incremental started; take it again")]
    TimelineChanged {
        expected: TimelineId,
        found: TimelineId,
    },
}

/// Why a value the server returned for a backup is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReturnedError {
    #[error(transparent)]
    Lsn(#[from] crate::pg::PosError),
    #[error(transparent)]
    Label(#[from] crate::pg::backup_label::LabelError),
    #[error(transparent)]
    FileName(#[from] crate::pg::WalNameError),
    #[error("{0} is not a WAL segment")]
    NotASegment(String),
}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> Self {
        BackupError::Repo(RepoError::Store(e))
    }
}

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub pgdata: PathBuf,
    pub conninfo: Option<String>,
    pub label: Option<String>,
    /// Request an immediate checkpoint (`fast => true`).
    pub fast: bool,
    pub jobs: usize,
    /// How long to wait for the stop segment to appear in the repository
    /// (and, with `from_standby`, for the standby to reach the start).
    pub archive_timeout: Duration,
    /// Most bytes per second read from the data directory, over all jobs.
    pub max_rate: Option<NonZeroU64>,
    /// Copy from this standby (a conninfo); `conninfo` is the primary
    /// and `pgdata` the standby's data directory.
    pub from_standby: Option<String>,
}

/// Progress events for the reporter.
#[derive(Debug, Clone)]
pub enum BackupEvent {
    Started {
        id: String,
        start_lsn: Lsn,
        total_bytes: u64,
    },
    FileDone {
        bytes: u64,
    },
    Stopped {
        stop_lsn: Lsn,
    },
}

/// A finished backup: its record, and how many of its files it stored
/// itself, left unchanged or stored as changed blocks.
#[derive(Debug, Clone)]
pub struct Backup {
    pub record: BackupRecord,
    pub sources: SourceCounts,
}

/// Files of a backup by where their content comes from (`FileSource`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceCounts {
    pub own: u64,
    pub unchanged: u64,
    pub delta: u64,
}

impl SourceCounts {
    fn of(files: &[BackupFile]) -> SourceCounts {
        let mut c = SourceCounts::default();
        for f in files
            .iter()
            .filter(|f| f.kind == crate::catalog::model::FileKind::File)
        {
            match f.source {
                FileSource::Own => c.own += 1,
                FileSource::Unchanged => c.unchanged += 1,
                FileSource::Delta { .. } => c.delta += 1,
            }
        }
        c
    }
}

/// Takes a full backup. `on_event` feeds the progress reporter.
pub async fn backup(
    repo: &Repo,
    opts: &BackupOptions,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<BackupRecord, BackupError> {
    take(repo, opts, &BackupKind::Full, on_event)
        .await
        .map(|b| b.record)
}

/// Takes a backup of `kind`: full, or incremental on a parent.
pub async fn take(
    repo: &Repo,
    opts: &BackupOptions,
    kind: &BackupKind,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<Backup, BackupError> {
    let config = repo.config().await?;
    check_cluster(&opts.pgdata, &config)?;
    if opts.from_standby.is_some() && opts.conninfo.is_none() {
        return Err(BackupError::StandbyNeedsPrimary);
    }
    // What would refuse the copy (a tablespace, an unreadable directory)
    // refuses before the server is asked anything; the copy walks again
    // once the backup has started.
    walk(&opts.pgdata)?;
    let cfg = conn::config_for(opts.conninfo.as_deref(), Some(&opts.pgdata))?;
    let client = conn::connect(&cfg).await?;
    let standby = match &opts.from_standby {
        Some(ci) => Some(standby::Standby::connect(ci, &client, &config, &opts.pgdata).await?),
        None => None,
    };

    let (session, start_time) = Session::open(&client).await?;
    let parent = match kind {
        BackupKind::Full => None,
        BackupKind::Incremental { parent } => {
            let tli = incremental::server_timeline(&client).await?;
            Some(incremental::choose_parent(repo, &config, tli, parent.as_deref()).await?)
        }
    };
    claim::sweep_abandoned(repo).await;
    let id = claim::claim_id(repo, &start_time.format("%Y%m%dT%H%M%SZ").to_string()).await?;
    let result = backup_as(
        repo,
        opts,
        &config,
        &id,
        standby.as_ref(),
        parent.as_ref(),
        &session,
        start_time,
        on_event,
    )
    .await;
    // Whatever happened, the id is no longer being written: a listed
    // backup keeps its record, a failed one has removed its objects.
    if let Err(e) = repo.store().delete(&layout::backup_claim(&id)?).await {
        tracing::warn!(error = %e, id, "could not remove the backup's claim");
    }
    result
}

/// The backup proper, under a claimed id.
#[allow(clippy::too_many_arguments)]
async fn backup_as(
    repo: &Repo,
    opts: &BackupOptions,
    config: &RepoConfig,
    id: &str,
    standby: Option<&standby::Standby>,
    parent: Option<&Parent>,
    session: &Session<'_>,
    start_time: DateTime<Utc>,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<Backup, BackupError> {
    let id = id.to_string();
    let label = opts.label.clone().unwrap_or_else(|| format!("pitr {id}"));
    let start_lsn = session.start(&label, opts.fast).await?;
    let walked = async {
        if let Some(standby) = standby {
            standby.reach(start_lsn, opts.archive_timeout).await?;
        }
        Ok::<_, BackupError>((walk(&opts.pgdata)?, walk::tablespace_links(&opts.pgdata)?))
    }
    .await;
    let (entries, links): (Vec<Entry>, _) = match walked {
        Ok(e) => e,
        Err(e) => {
            let _ = session.abort().await;
            return Err(e);
        }
    };
    let total: u64 = entries.iter().map(|e| e.size).sum();
    on_event(BackupEvent::Started {
        id: id.clone(),
        start_lsn,
        total_bytes: total,
    });

    let on_event = Arc::new(on_event);
    let entries = Arc::new(entries);
    let basis = Arc::new(match parent {
        Some(p) => p.basis(&entries, config.fingerprint.blcksz),
        None => vec![Basis::Own; entries.len()],
    });
    let throttle = opts.max_rate.map(|r| Arc::new(Throttle::new(r)));
    let copied = copy::copy_files(
        repo,
        &id,
        entries.clone(),
        basis.clone(),
        opts.jobs.max(1),
        throttle,
        on_event.clone(),
    )
    .await;
    let files = match copied {
        Ok(c) => manifest::files(&entries, &basis, c),
        Err(e) => {
            let _ = session.abort().await;
            let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
            return Err(e);
        }
    };

    let stopped = match session.stop().await {
        // The map of the links the copy went through (from a standby, its
        // own; the primary's may differ), in Postgres' format.
        Ok(mut s) if !links.is_empty() => {
            match crate::pg::tablespace_map::render(&links, config.pg_major) {
                Ok(map) => s.spcmap = Some(map),
                Err(e) => {
                    let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
                    return Err(BackupError::Tablespaces(e.to_string()));
                }
            }
            s
        }
        Ok(s) => s,
        Err(e) => {
            let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
            return Err(e);
        }
    };
    let sources = SourceCounts::of(&files);
    let result = match parent {
        Some(p) if stopped.label.start_timeline != p.timeline => {
            Err(BackupError::TimelineChanged {
                expected: p.timeline,
                found: stopped.label.start_timeline,
            })
        }
        _ => {
            let start = match parent {
                Some(p) => p.start(manifest::changed_bytes(&files)),
                None => StartKind::Full,
            };
            finish(
                repo, config, &id, &label, files, &stopped, start_time, opts, start,
            )
            .await
        }
    };
    if result.is_err() {
        let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
    }
    if let Ok(rec) = &result {
        on_event(BackupEvent::Stopped {
            stop_lsn: rec.stop_lsn,
        });
    }
    result.map(|record| Backup { record, sources })
}

/// Once the stop segment is archived here, the manifest and the record.
#[allow(clippy::too_many_arguments)]
async fn finish(
    repo: &Repo,
    config: &RepoConfig,
    id: &str,
    label: &str,
    files: Vec<crate::catalog::BackupFile>,
    stopped: &Stopped,
    start_time: DateTime<Utc>,
    opts: &BackupOptions,
    start: StartKind,
) -> Result<BackupRecord, BackupError> {
    wait_archived(repo, &stopped.stop_seg, opts.archive_timeout).await?;
    let control = read_control(&opts.pgdata)?;
    manifest::commit(
        repo, config, id, label, files, stopped, start_time, control, start,
    )
    .await
}

/// Waits until the segment's record (its commit marker) is in the repo.
pub(crate) async fn wait_archived(
    repo: &Repo,
    seg: &SegmentName,
    timeout: Duration,
) -> Result<(), BackupError> {
    let key = layout::segment_record(seg);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match repo.get_meta::<WalSegmentRecord>(&key, KIND_WAL).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(BackupError::StopSegmentNotArchived {
                segment: seg.to_string(),
                waited_secs: timeout.as_secs(),
                repo: repo.location().to_arg(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
