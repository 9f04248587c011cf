//! `pitr backup`: a full base backup with the non-exclusive low-level API.
//! One session holds `pg_backup_start` .. `pg_backup_stop` (PG15+; the
//! `pg_start_backup(.., exclusive => false)` pair before 15) while the data
//! directory is copied file by file, compressed and checksummed into
//! `backups/<id>/files/`. `pg_control` is copied last. The manifest, with
//! the returned `backup_label` and `tablespace_map`, follows; the
//! `backup.json` record comes last of all and only once the stop segment is
//! archived in this repository, so a backup that was killed or failed is
//! never listed. A failed backup removes what it wrote.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use crate::catalog::model::FileKind;
use crate::catalog::{
    BackupClaim, BackupFile, BackupManifest, BackupRecord, ContentHash, FileChunk, RepoConfig,
    WalSegmentRecord,
};
use crate::pg::backup_label::BackupLabel;
use crate::pg::control::{ControlError, ControlFile};
use crate::pg::{Lsn, SegmentName};
use crate::pg::{MajorError, PgMajor};
use crate::repo::store::{PutMode, StoreError};
use crate::repo::{
    codec, layout, Repo, RepoError, KIND_BACKUP, KIND_CLAIM, KIND_MANIFEST, KIND_WAL,
};
use crate::server::conn::{self, ConnError};

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
    #[error("backup_label returned by the server: {0}")]
    Label(String),
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

/// Files and directories whose contents are never copied: mirrors
/// basebackup.c (excludeDirContents, excludeFiles).
const EXCLUDE_DIR_CONTENTS: &[&str] = &[
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];
const EXCLUDE_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "backup_manifest",
    "recovery.signal",
    "standby.signal",
    "pg_internal.init",
    "PITR_RESTORE_FAILED",
];

struct Entry {
    rel: String,
    abs: PathBuf,
    kind: FileKind,
    mode: u32,
    size: u64,
}

fn walk(pgdata: &Path) -> Result<Vec<Entry>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![(pgdata.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|source| BackupError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| BackupError::Read {
                path: dir.display().to_string(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().to_string();
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(BackupError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            if EXCLUDE_FILES.contains(&name.as_str()) || name.starts_with("pgsql_tmp") {
                continue;
            }
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                if rel == "pg_tblspc" {
                    return Err(BackupError::Tablespaces(child_rel));
                }
                // Other links (e.g. pg_wal on another volume) are followed
                // as directories only when they are pg_wal, whose contents
                // are skipped anyway.
                if child_rel == "pg_wal" {
                    out.push(Entry {
                        rel: child_rel,
                        abs: path,
                        kind: FileKind::Dir,
                        mode: 0o700,
                        size: 0,
                    });
                }
                continue;
            }
            if meta.is_dir() {
                out.push(Entry {
                    rel: child_rel.clone(),
                    abs: path.clone(),
                    kind: FileKind::Dir,
                    mode,
                    size: 0,
                });
                if EXCLUDE_DIR_CONTENTS.contains(&child_rel.as_str()) {
                    if child_rel == "pg_wal" {
                        out.push(Entry {
                            rel: "pg_wal/archive_status".into(),
                            abs: path.join("archive_status"),
                            kind: FileKind::Dir,
                            mode,
                            size: 0,
                        });
                    }
                    continue;
                }
                stack.push((path, child_rel));
            } else if meta.is_file() {
                out.push(Entry {
                    rel: child_rel,
                    abs: path,
                    kind: FileKind::File,
                    mode,
                    size: meta.len(),
                });
            }
        }
    }
    // Directories first (parents before children), pg_control last.
    out.sort_by(|a, b| {
        let key = |e: &Entry| {
            (
                e.kind == FileKind::File,
                e.rel == "global/pg_control",
                e.rel.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// Reads and checks the cluster's identity against the repository.
pub fn check_cluster(pgdata: &Path, config: &RepoConfig) -> Result<ControlFile, BackupError> {
    let control = read_control(pgdata)?;
    if control.system_identifier != config.system_id {
        return Err(BackupError::OtherCluster {
            pgdata: pgdata.display().to_string(),
            found: control.system_identifier.to_string(),
            expected: config.system_id.to_string(),
        });
    }
    let major = read_major(pgdata)?;
    if major != config.pg_major {
        return Err(BackupError::OtherMajor {
            pgdata: pgdata.display().to_string(),
            found: major,
            expected: config.pg_major,
        });
    }
    Ok(control)
}

pub fn read_control(pgdata: &Path) -> Result<ControlFile, BackupError> {
    let path = pgdata.join("global/pg_control");
    let bytes = std::fs::read(&path).map_err(|source| BackupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    ControlFile::decode(&bytes).map_err(|source| BackupError::Control {
        path: path.display().to_string(),
        source,
    })
}

pub fn read_major(pgdata: &Path) -> Result<PgMajor, BackupError> {
    let path = pgdata.join("PG_VERSION");
    let text = std::fs::read_to_string(&path).map_err(|source| BackupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    PgMajor::from_pg_version_file(&text).map_err(|source| BackupError::PgVersion {
        path: path.display().to_string(),
        source,
    })
}

fn sql(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> BackupError {
    move |source| BackupError::Sql { what, source }
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

    let version_num: i32 = client
        .query_one("select current_setting('server_version_num')::int", &[])
        .await
        .map_err(sql("server_version_num"))?
        .get(0);
    let start_time: DateTime<Utc> = client
        .query_one("select clock_timestamp()", &[])
        .await
        .map_err(sql("clock_timestamp()"))?
        .get(0);
    sweep_abandoned(repo).await;
    let id = claim_id(repo, &start_time.format("%Y%m%dT%H%M%SZ").to_string()).await?;
    let result = backup_as(
        repo,
        opts,
        &config,
        &id,
        entries,
        &client,
        version_num,
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

/// Takes an id no other run can take (`claims/<id>.json`, created once):
/// `base`, else `base-<pid>`, else `base-<pid>-<k>`. An id whose record or
/// objects already exist (a backup from before claims) is skipped too.
async fn claim_id(repo: &Repo, base: &str) -> Result<String, BackupError> {
    let pid = std::process::id();
    let owner = super::owner::Owner::current();
    let candidates = std::iter::once(base.to_string())
        .chain(std::iter::once(format!("{base}-{pid}")))
        .chain((1..=20).map(|k| format!("{base}-{pid}-{k}")));
    for id in candidates {
        if repo
            .store()
            .head(&layout::backup_record(&id)?)
            .await?
            .is_some()
            || !repo
                .store()
                .list(&layout::backup_dir(&id)?)
                .await?
                .is_empty()
        {
            continue;
        }
        let claim = BackupClaim {
            id: id.clone(),
            started_at: Utc::now(),
            boot_id: owner
                .as_ref()
                .map(|o| o.boot_id.clone())
                .unwrap_or_default(),
            hostname: owner
                .as_ref()
                .map(|o| o.hostname.clone())
                .unwrap_or_default(),
            pid,
            pid_start: owner.as_ref().map(|o| o.pid_start).unwrap_or_default(),
        };
        match repo
            .put_meta(
                &layout::backup_claim(&id)?,
                KIND_CLAIM,
                &claim,
                PutMode::Create,
            )
            .await
        {
            Ok(()) => return Ok(id),
            Err(RepoError::Store(StoreError::AlreadyExists(_))) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(BackupError::NoFreeId(base.to_string()))
}

/// Clears what killed runs left behind: the store's abandoned temporary
/// files, and for every backup claim without a
/// listed backup whose process is provably gone (see `owner`), its objects
/// and then its claim. Claims of listed backups (a run that died between
/// its record and removing its claim) are simply removed. Best effort.
async fn sweep_abandoned(repo: &Repo) {
    match repo.store().sweep_abandoned().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed abandoned temporary files"),
        Err(e) => tracing::warn!(error = %e, "could not sweep abandoned temporary files"),
    }
    let claims = match repo.store().list(layout::CLAIMS_DIR).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not list backup claims");
            return;
        }
    };
    for meta in claims {
        let claim: BackupClaim = match repo.get_meta(&meta.key, KIND_CLAIM).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, key = %meta.key, "unreadable backup claim left alone");
                continue;
            }
        };
        let swept = async {
            let listed = repo
                .store()
                .head(&layout::backup_record(&claim.id)?)
                .await?
                .is_some();
            let owner = super::owner::Owner {
                boot_id: claim.boot_id.clone(),
                hostname: claim.hostname.clone(),
                pid: claim.pid,
                pid_start: claim.pid_start,
            };
            if !listed {
                if !owner.provably_gone() {
                    return Ok::<bool, BackupError>(false);
                }
                repo.store()
                    .delete_prefix(&layout::backup_dir(&claim.id)?)
                    .await?;
            }
            repo.store().delete(&meta.key).await?;
            Ok(!listed)
        }
        .await;
        match swept {
            Ok(true) => tracing::info!(id = claim.id, "removed an abandoned backup"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, id = claim.id, "could not remove an abandoned backup")
            }
        }
    }
}

/// The backup proper, under a claimed id.
#[allow(clippy::too_many_arguments)]
async fn backup_as(
    repo: &Repo,
    opts: &BackupOptions,
    config: &RepoConfig,
    id: &str,
    entries: Vec<Entry>,
    client: &tokio_postgres::Client,
    version_num: i32,
    start_time: DateTime<Utc>,
    on_event: impl Fn(BackupEvent) + Send + Sync + 'static,
) -> Result<BackupRecord, BackupError> {
    let id = id.to_string();
    let label = opts.label.clone().unwrap_or_else(|| format!("pitr {id}"));
    let start_sql = if version_num >= 150000 {
        "select pg_backup_start($1, $2)::text"
    } else {
        "select pg_start_backup($1, $2, false)::text"
    };
    let start_lsn: String = client
        .query_one(start_sql, &[&label, &opts.fast])
        .await
        .map_err(sql("pg_backup_start"))?
        .get(0);
    let start_lsn: Lsn = start_lsn
        .parse()
        .map_err(|e: crate::pg::PosError| BackupError::Label(e.to_string()))?;
    let total: u64 = entries.iter().map(|e| e.size).sum();
    on_event(BackupEvent::Started {
        id: id.clone(),
        start_lsn,
        total_bytes: total,
    });

    let on_event = Arc::new(on_event);
    let copied = copy_files(repo, &id, entries, opts.jobs.max(1), on_event.clone()).await;
    let files = match copied {
        Ok(f) => f,
        Err(e) => {
            let _ = abort_backup(client, version_num).await;
            let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
            return Err(e);
        }
    };

    // wait_for_archive => false: the server still switches to a new
    // segment, but its own wait polls once a second; pitr watches its own
    // repository for the stop segment instead (wait_archived), which is
    // both the stronger check and ~1 s faster.
    let stop_sql = if version_num >= 150000 {
        "select lsn::text, labelfile, spcmapfile, pg_walfile_name(lsn), clock_timestamp() from pg_backup_stop(false)"
    } else {
        "select lsn::text, labelfile, spcmapfile, pg_walfile_name(lsn), clock_timestamp() from pg_stop_backup(false, false)"
    };
    let row = match client.query_one(stop_sql, &[]).await {
        Ok(r) => r,
        Err(source) => {
            let _ = repo.store().delete_prefix(&layout::backup_dir(&id)?).await;
            return Err(BackupError::Sql {
                what: "pg_backup_stop",
                source,
            });
        }
    };
    let result = finish(repo, config, &id, &label, files, &row, start_time, opts).await;
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

async fn abort_backup(
    client: &tokio_postgres::Client,
    version_num: i32,
) -> Result<(), tokio_postgres::Error> {
    let q = if version_num >= 150000 {
        "select pg_backup_stop(false)"
    } else {
        "select pg_stop_backup(false, false)"
    };
    client.query(q, &[]).await.map(|_| ())
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    repo: &Repo,
    config: &RepoConfig,
    id: &str,
    label: &str,
    files: Vec<BackupFile>,
    row: &tokio_postgres::Row,
    start_time: DateTime<Utc>,
    opts: &BackupOptions,
) -> Result<BackupRecord, BackupError> {
    let stop_lsn: String = row.get(0);
    let stop_lsn: Lsn = stop_lsn
        .parse()
        .map_err(|e: crate::pg::PosError| BackupError::Label(e.to_string()))?;
    let labelfile: String = row.get(1);
    let spcmap: Option<String> = row.get(2);
    let stop_segment: String = row.get(3);
    let stop_time: DateTime<Utc> = row.get(4);
    let parsed = BackupLabel::parse(&labelfile).map_err(|e| BackupError::Label(e.to_string()))?;
    let stop_name = crate::pg::WalFileName::parse(&stop_segment)
        .map_err(|e| BackupError::Label(e.to_string()))?;
    let stop_seg: SegmentName = match stop_name {
        crate::pg::WalFileName::Segment(s) => s,
        other => return Err(BackupError::Label(format!("unexpected stop file {other}"))),
    };
    wait_archived(repo, &stop_seg, opts.archive_timeout).await?;

    let control = read_control(&opts.pgdata)?;
    let manifest = BackupManifest {
        id: id.to_string(),
        files: files.clone(),
        backup_label: labelfile.clone(),
        tablespace_map: spcmap.filter(|s| !s.is_empty()),
    };
    repo.put_meta(
        &layout::backup_manifest(id)?,
        KIND_MANIFEST,
        &manifest,
        PutMode::Create,
    )
    .await?;
    let record = BackupRecord {
        id: id.to_string(),
        label: label.to_string(),
        system_id: config.system_id,
        pg_major: config.pg_major,
        timeline: parsed.start_timeline,
        start_lsn: parsed.start_lsn,
        checkpoint_lsn: parsed.checkpoint_lsn,
        stop_lsn,
        stop_timeline: stop_seg.timeline(),
        start_segment: parsed.start_segment.to_string(),
        stop_segment,
        start_time,
        stop_time,
        fingerprint: control.fingerprint,
        files: files.len() as u64,
        raw_bytes: files.iter().map(|f| f.size).sum(),
        stored_bytes: files.iter().map(|f| f.stored_bytes).sum(),
        pitr_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: Some(std::env::consts::ARCH.to_string()),
    };
    repo.put_meta(
        &layout::backup_record(id)?,
        KIND_BACKUP,
        &record,
        PutMode::Create,
    )
    .await?;
    Ok(record)
}

/// Waits until the segment's record (its commit marker) is in the repo.
async fn wait_archived(
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

/// Files larger than this are stored as chunks of this size, so one big
/// relation file keeps every worker busy; each worker holds at most one
/// raw chunk and its compressed copy (memory is bounded by `jobs`, not by
/// the database).
pub const CHUNK_BYTES: u64 = 8 << 20;

/// What one worker copies: a whole small file, or one chunk of a big one.
#[derive(Clone, Copy)]
enum Piece {
    Whole,
    Chunk { c: usize, offset: u64, len: u64 },
}

/// What a piece turned into (None: the file vanished, a dropped relation
/// whose truth WAL replay recreates).
type PieceResult = Option<(u64, u64, ContentHash)>;

/// Copies every entry: whole small files and chunks of big ones are read,
/// hashed and compressed on blocking threads and written to the store,
/// `jobs` pieces in flight. pg_control goes last, alone, then the store is
/// made durable in one step (the manifest, written after, commits it).
async fn copy_files(
    repo: &Repo,
    id: &str,
    entries: Vec<Entry>,
    jobs: usize,
    on_event: Arc<impl Fn(BackupEvent) + Send + Sync + 'static>,
) -> Result<Vec<BackupFile>, BackupError> {
    let entries = Arc::new(entries);
    let mut units: Vec<(usize, Piece)> = Vec::new();
    let mut control = None;
    for (n, e) in entries.iter().enumerate() {
        if e.kind != FileKind::File {
            continue;
        }
        if e.rel == "global/pg_control" {
            control = Some(n);
        } else if e.size <= CHUNK_BYTES {
            units.push((n, Piece::Whole));
        } else {
            let mut offset = 0;
            let mut c = 0;
            while offset < e.size {
                let len = CHUNK_BYTES.min(e.size - offset);
                units.push((n, Piece::Chunk { c, offset, len }));
                offset += len;
                c += 1;
            }
        }
    }
    let mut done: Vec<Vec<(Piece, PieceResult)>> = vec![Vec::new(); entries.len()];
    let mut set: JoinSet<Result<(usize, Piece, PieceResult), BackupError>> = JoinSet::new();
    let spawn = |set: &mut JoinSet<_>, n: usize, piece: Piece| {
        let repo = repo.clone();
        let entries = entries.clone();
        let id = id.to_string();
        let on_event = on_event.clone();
        set.spawn(async move {
            let r = copy_piece(&repo, &id, n, &entries[n], piece).await?;
            if let Some((size, _, _)) = &r {
                on_event(BackupEvent::FileDone { bytes: *size });
            }
            Ok((n, piece, r))
        });
    };
    for (n, piece) in units {
        while set.len() >= jobs {
            if let Some(j) = set.join_next().await {
                let (i, p, r) = joined(j)?;
                done[i].push((p, r));
            }
        }
        spawn(&mut set, n, piece);
    }
    while let Some(j) = set.join_next().await {
        let (i, p, r) = joined(j)?;
        done[i].push((p, r));
    }
    if let Some(n) = control {
        spawn(&mut set, n, Piece::Whole);
        if let Some(j) = set.join_next().await {
            let (i, p, r) = joined(j)?;
            done[i].push((p, r));
        }
    }
    repo.store().sync().await?;
    // A file that vanished is left out of the manifest; every other file
    // keeps the number its objects were stored under (`object`), so the
    // manifest positions after it may shift without losing their data.
    Ok(entries
        .iter()
        .zip(done)
        .enumerate()
        .filter_map(|(n, (e, pieces))| assemble(n, e, pieces))
        .collect())
}

/// The manifest entry for entry `n` of the walk from its finished pieces.
fn assemble(n: usize, e: &Entry, mut pieces: Vec<(Piece, PieceResult)>) -> Option<BackupFile> {
    let mut file = BackupFile {
        object: Some(n as u64),
        path: e.rel.clone(),
        kind: e.kind,
        mode: e.mode,
        size: 0,
        stored_bytes: 0,
        sha256: String::new(),
        blake3: String::new(),
        chunks: Vec::new(),
    };
    if e.kind == FileKind::Dir {
        return Some(file);
    }
    // A piece that found the file gone means it was dropped mid-copy.
    if pieces.is_empty() || pieces.iter().any(|(_, r)| r.is_none()) {
        return None;
    }
    pieces.sort_by_key(|(p, _)| match p {
        Piece::Whole => 0,
        Piece::Chunk { offset, .. } => *offset,
    });
    for (piece, r) in pieces {
        let (size, stored, sha) = r?;
        file.stored_bytes += stored;
        match piece {
            Piece::Whole => {
                file.size = size;
                (file.sha256, file.blake3) = sha.into_fields();
            }
            Piece::Chunk { offset, .. } => {
                if size > 0 {
                    file.size = file.size.max(offset + size);
                }
                file.chunks.push(FileChunk {
                    offset,
                    size,
                    stored_bytes: stored,
                    blake3: sha.into_fields().1,
                });
            }
        }
    }
    Some(file)
}

fn joined<T>(r: Result<Result<T, BackupError>, tokio::task::JoinError>) -> Result<T, BackupError> {
    r.map_err(|e| BackupError::Copy {
        path: String::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Reads, hashes, compresses and stores one piece; returns (raw bytes,
/// stored bytes, content hash), or None if the file is gone.
async fn copy_piece(
    repo: &Repo,
    id: &str,
    n: usize,
    entry: &Entry,
    piece: Piece,
) -> Result<PieceResult, BackupError> {
    let key = match piece {
        Piece::Whole => layout::backup_file(id, n)?,
        Piece::Chunk { c, .. } => layout::backup_chunk(id, n, c)?,
    };
    let abs = entry.abs.clone();
    let rel = entry.rel.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let copy_err = |source| BackupError::Copy {
            path: rel.clone(),
            source,
        };
        // One chunk buffer per worker thread, reused: a fresh 8 MiB buffer
        // per chunk costs 2048 page faults, as much CPU as hashing it.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            let Some(got) = read_piece(&abs, piece, buf).map_err(copy_err)? else {
                return Ok(None);
            };
            let raw = &buf[..got];
            let (stored, hash) = codec::encode_chunk(raw).map_err(copy_err)?;
            Ok::<_, BackupError>(Some((got as u64, stored, hash)))
        })
    })
    .await
    .map_err(|e| BackupError::Copy {
        path: entry.rel.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let Some((size, stored, sha)) = encoded else {
        return Ok(None);
    };
    let stored_len = stored.len() as u64;
    repo.store().put_deferred(&key, stored).await?;
    Ok(Some((size, stored_len, sha)))
}

/// Reads one piece as it is now into `buf`, returning how many bytes it
/// has: a whole file (up to one chunk; a file that grew since the walk is
/// replayed from WAL), or up to one chunk at its offset (short or empty
/// past a truncation). None if the file no longer exists.
fn read_piece(abs: &Path, piece: Piece, buf: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::File::open(abs) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (offset, want) = match piece {
        Piece::Whole => (0, CHUNK_BYTES),
        Piece::Chunk { offset, len, .. } => (offset, len),
    };
    let want = usize::try_from(want).map_err(std::io::Error::other)?;
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut got = 0;
    while got < want {
        match file.read_at(&mut buf[got..want], offset + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 1 of issue 10: a file that vanishes during the copy (a
    /// dropped relation) must not shift where the manifest says the files
    /// after it are stored: each one restores from its own objects.
    #[tokio::test]
    async fn a_file_that_vanishes_mid_copy_shifts_no_other_file() {
        let data = tempfile::tempdir().unwrap();
        let p = data.path();
        std::fs::create_dir_all(p.join("base/1")).unwrap();
        std::fs::create_dir_all(p.join("global")).unwrap();
        let big = (0..(CHUNK_BYTES as usize + 5000))
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>();
        for (f, body) in [
            ("base/1/100", b"first".to_vec()),
            ("base/1/200", b"dropped".to_vec()),
            ("base/1/300", b"third".to_vec()),
            ("base/1/400", big.clone()),
            ("global/pg_control", b"control".to_vec()),
        ] {
            std::fs::write(p.join(f), body).unwrap();
        }
        let entries = walk(p).unwrap();
        std::fs::remove_file(p.join("base/1/200")).unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let repo = Repo::with_store(
            crate::repo::RepoLocation::Local(store_dir.path().to_path_buf()),
            Arc::new(crate::repo::store::FsStore::new(store_dir.path())),
        );
        let files = copy_files(&repo, "b1", entries, 2, Arc::new(|_| {}))
            .await
            .unwrap();
        assert!(files.iter().all(|f| f.path != "base/1/200"));
        let manifest = BackupManifest {
            id: "b1".into(),
            files,
            backup_label: String::new(),
            tablespace_map: None,
        };
        let out = tempfile::tempdir().unwrap();
        let restored = out.path().join("data");
        std::fs::create_dir(&restored).unwrap();
        crate::recover::materialize::materialize(&repo, &manifest, &restored, 2, Arc::new(|_| {}))
            .await
            .unwrap();
        for (f, body) in [
            ("base/1/100", &b"first"[..]),
            ("base/1/300", b"third"),
            ("base/1/400", &big),
            ("global/pg_control", b"control"),
        ] {
            assert!(
                std::fs::read(restored.join(f)).unwrap() == body,
                "{f} restored wrong"
            );
        }
        assert!(!restored.join("base/1/200").exists());
    }

    /// What `pitr` prints is the error and its sources joined by ": ";
    /// the typed sources keep the text the string reason used to hold.
    #[test]
    fn control_and_pg_version_errors_carry_their_typed_source() {
        use std::error::Error;
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir(p.join("global")).unwrap();
        std::fs::write(p.join("global/pg_control"), [0u8; 100]).unwrap();
        std::fs::write(p.join("PG_VERSION"), "9.6\n").unwrap();

        let e = read_control(p).unwrap_err();
        let path = p.join("global/pg_control").display().to_string();
        assert!(
            matches!(
                &e,
                BackupError::Control {
                    source: ControlError::TooShort {
                        len: 100,
                        need: 296
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), path);
        let source = e.source().unwrap().to_string();
        assert!(
            source.starts_with("pg_control is 100 bytes, need at least 296"),
            "{source}"
        );

        let e = read_major(p).unwrap_err();
        assert!(matches!(&e, BackupError::PgVersion { .. }), "{e:?}");
        assert_eq!(e.to_string(), p.join("PG_VERSION").display().to_string());
        assert_eq!(
            e.source().unwrap().to_string(),
            PgMajor::from_pg_version_file("9.6\n")
                .unwrap_err()
                .to_string()
        );
    }

    #[test]
    fn walk_skips_what_postgres_skips_and_orders_pg_control_last() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for dir in [
            "global",
            "base/1",
            "pg_wal/archive_status",
            "pg_stat_tmp",
            "pg_tblspc",
        ] {
            std::fs::create_dir_all(p.join(dir)).unwrap();
        }
        for f in [
            "global/pg_control",
            "global/1260",
            "base/1/1259",
            "pg_wal/000000010000000000000001",
            "pg_stat_tmp/x",
            "postmaster.pid",
            "PG_VERSION",
            "base/1/pg_internal.init",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
        let entries = walk(p).unwrap();
        let files: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.rel.as_str())
            .collect();
        assert_eq!(
            files,
            [
                "PG_VERSION",
                "base/1/1259",
                "global/1260",
                "global/pg_control"
            ]
        );
        let dirs: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == FileKind::Dir)
            .map(|e| e.rel.as_str())
            .collect();
        assert!(dirs.contains(&"pg_wal/archive_status"));
        assert!(dirs.contains(&"pg_stat_tmp"));

        std::os::unix::fs::symlink("/tmp", p.join("pg_tblspc/16400")).unwrap();
        assert!(matches!(walk(p), Err(BackupError::Tablespaces(_))));
    }
}
