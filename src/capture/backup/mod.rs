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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::catalog::{BackupRecord, RepoConfig, WalSegmentRecord};
use crate::pg::control::ControlError;
use crate::pg::{Lsn, MajorError, PgMajor, SegmentName};
use crate::repo::store::StoreError;
use crate::repo::{layout, Repo, RepoError, KIND_WAL};
use crate::server::conn::{self, ConnError};

pub(crate) mod claim;
mod cluster;
mod copy;
mod manifest;
pub(crate) mod session;
pub(crate) mod walk;

pub use cluster::{check_cluster, read_control, read_major};
pub use copy::CHUNK_BYTES;

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
    #[error("tablespaces ({0}) are not supported by pitr backup yet; nothing was copied")]
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
    /// How long to wait for the stop segment to appear in the repository.
    pub archive_timeout: Duration,
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

/// Takes a full backup. `on_event` feeds the progress reporter.
pub async fn backup(
    repo: &Repo,
    opts: &BackupOptions,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<BackupRecord, BackupError> {
    let config = repo.config().await?;
    check_cluster(&opts.pgdata, &config)?;
    let entries = walk(&opts.pgdata)?;
    let cfg = conn::config_for(opts.conninfo.as_deref(), Some(&opts.pgdata))?;
    let client = conn::connect(&cfg).await?;

    let (session, start_time) = Session::open(&client).await?;
    claim::sweep_abandoned(repo).await;
    let id = claim::claim_id(repo, &start_time.format("%Y%m%dT%H%M%SZ").to_string()).await?;
    let result = backup_as(
        repo, opts, &config, &id, entries, &session, start_time, on_event,
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
    entries: Vec<Entry>,
    session: &Session<'_>,
    start_time: DateTime<Utc>,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<BackupRecord, BackupError> {
    let id = id.to_string();
    let label = opts.label.clone().unwrap_or_else(|| format!("pitr {id}"));
    let start_lsn = session.start(&label, opts.fast).await?;
    let total: u64 = entries.iter().map(|e| e.size).sum();
    on_event(BackupEvent::Started {
        id: id.clone(),
        start_lsn,
        total_bytes: total,
    });

    let on_event = Arc::new(on_event);
    let entries = Arc::new(entries);
    let copied = copy::copy_files(
        repo,
        &id,
        entries.clone(),
        opts.jobs.max(1),
        on_event.clone(),
    )
    .await;
    let files = match copied {
        Ok(c) => manifest::files(&entries, c),
        Err(e) => {
            let _ = session.abort().await;
            let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
            return Err(e);
        }
    };

    let stopped = match session.stop().await {
        Ok(s) => s,
        Err(e) => {
            let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
            return Err(e);
        }
    };
    let result = finish(repo, config, &id, &label, files, &stopped, start_time, opts).await;
    if result.is_err() {
        let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
    }
    if let Ok(rec) = &result {
        on_event(BackupEvent::Stopped {
            stop_lsn: rec.stop_lsn,
        });
    }
    result
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
) -> Result<BackupRecord, BackupError> {
    wait_archived(repo, &stopped.stop_seg, opts.archive_timeout).await?;
    let control = read_control(&opts.pgdata)?;
    manifest::commit(repo, config, id, label, files, stopped, start_time, control).await
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
