//! Executing a Plan: materialize the data directory from the chosen backup,
//! write recovery settings for the server's version, start the install on a
//! free (or given) port, watch replay, stop at the target, promote / pause /
//! shut down, verify, and report how to connect. A failed restore stops the
//! server, removes `global/pg_control` (so the directory cannot be started
//! or mistaken for a finished restore) and leaves `PITR_RESTORE_FAILED`
//! with the reason beside the server log. Nothing here chooses a backup.

pub mod materialize;
pub mod server;
pub mod settings;
pub mod upgrade;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::RestoreTiming;
use crate::pg::{Lsn, TimelineId};
use crate::plan::{Plan, RecoveryTarget};
use crate::repo::codec::CodecError;
use crate::repo::{Repo, RepoError};
use crate::server::bin::BinError;

pub use settings::Action;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("{path} already exists and is not empty: restore into a new or empty directory")]
    NotEmpty { path: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("backup file {path}: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: CodecError,
    },
    #[error("backup file {path} does not match its manifest: expected {expected}, got {actual}")]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("backup manifest: {0}")]
    BadManifest(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Bin(#[from] BinError),
    #[error("running {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("the server failed during recovery: {fatal}\n--- last lines of {log} ---\n{tail}")]
    ServerFailed {
        fatal: String,
        log: String,
        tail: String,
    },
    #[error("recovery went past the target: last replayed commit at {replayed}, target {target}")]
    PastTarget {
        replayed: DateTime<Utc>,
        target: DateTime<Utc>,
    },
    #[error("the server ended recovery without stopping at {target} (no \"recovery stopping\" in its log)\n--- last lines of {log} ---\n{tail}")]
    TargetNotReached {
        target: String,
        log: String,
        tail: String,
    },
    #[error("no free TCP port found on 127.0.0.1")]
    NoPort,
    #[error("port {0} is in use: choose another with --port")]
    PortInUse(u16),
    #[error("tablespaces are not supported by restore yet")]
    Tablespaces,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub pgdata: PathBuf,
    pub port: Option<u16>,
    pub pg_bin: Option<PathBuf>,
    pub socket_dir: Option<PathBuf>,
    pub action: Action,
    /// The database role pitr connects as to watch recovery.
    pub db_user: String,
    /// The pitr executable that restore_command calls.
    pub pitr_exe: PathBuf,
    pub jobs: usize,
    /// Start the server and watch recovery (false: only materialize and
    /// configure, for the operator to start it).
    pub start: bool,
}

/// What a finished restore reports (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub data_directory: String,
    pub port: u16,
    pub socket_directory: String,
    pub action: Action,
    /// Timeline the server is on now (the new one after promotion).
    pub timeline: Option<TimelineId>,
    pub replay_lsn: Option<Lsn>,
    pub last_replayed_commit: Option<DateTime<Utc>>,
    pub target: RecoveryTarget,
    pub backup_id: String,
    pub elapsed_seconds: f64,
    pub server_log: String,
    pub connect: String,
}

/// Progress events for the CLI's reporter.
#[derive(Debug, Clone)]
pub enum RecoverEvent {
    Materializing { total_bytes: u64 },
    Bytes(u64),
    Starting { port: u16 },
    Replaying { lsn: Lsn },
    Done,
}

pub type OnEvent = Arc<dyn Fn(RecoverEvent) + Send + Sync>;

/// Executes `plan` into `opts.pgdata`.
pub async fn restore(
    repo: &Repo,
    plan: &Plan,
    opts: &RestoreOptions,
    on_event: OnEvent,
) -> Result<RestoreOutcome, RecoverError> {
    let started = Instant::now();
    let target = plan.target.clone();
    let config = repo.config().await?;
    let bin = crate::server::bin::find_bin_dir(opts.pg_bin.as_deref(), config.pg_major)?;
    prepare_dir(&opts.pgdata)?;
    let manifest = materialize::load_manifest(repo, &plan.backup.id).await;
    let result = async {
        let manifest = manifest?;
        if manifest.tablespace_map.is_some() {
            return Err(RecoverError::Tablespaces);
        }
        let total: u64 = manifest.files.iter().map(|f| f.size).sum();
        on_event(RecoverEvent::Materializing { total_bytes: total });
        let ev = on_event.clone();
        let materialize_started = Instant::now();
        materialize::materialize(
            repo,
            &manifest,
            &opts.pgdata,
            opts.jobs,
            Arc::new(move |b| ev(RecoverEvent::Bytes(b))),
        )
        .await?;
        let materialize_seconds = materialize_started.elapsed().as_secs_f64();
        let port = match opts.port {
            Some(p) => {
                if !server::port_free(p) {
                    return Err(RecoverError::PortInUse(p));
                }
                p
            }
            None => server::free_port()?,
        };
        let socket_dir = opts
            .socket_dir
            .clone()
            .unwrap_or_else(server::default_socket_dir);
        let spool = spool_dir(&opts.pgdata);
        let restore_command = settings::restore_command(
            &opts.pitr_exe.display().to_string(),
            &repo.location().to_arg(),
            repo.s3_settings(),
            Some(&spool),
        );
        let s = settings::RecoverySettings {
            restore_command,
            target: target.clone(),
            inclusive: plan.inclusive,
            timeline: plan.timeline,
            action: opts.action,
            port,
            socket_dir: Some(socket_dir.display().to_string()),
            backup_id: plan.backup.id.clone(),
            major: config.pg_major.get(),
        };
        server::write_config(&opts.pgdata, &s)?;
        if !opts.start {
            on_event(RecoverEvent::Done);
            return Ok(RestoreOutcome {
                data_directory: opts.pgdata.display().to_string(),
                port,
                socket_directory: socket_dir.display().to_string(),
                action: opts.action,
                timeline: None,
                replay_lsn: None,
                last_replayed_commit: None,
                target: target.clone(),
                backup_id: plan.backup.id.clone(),
                elapsed_seconds: started.elapsed().as_secs_f64(),
                server_log: String::new(),
                connect: format!(
                    "{} start -D {} -l {}",
                    bin.join("pg_ctl").display(),
                    opts.pgdata.display(),
                    opts.pgdata.join(server::LOG_NAME).display()
                ),
            });
        }
        on_event(RecoverEvent::Starting { port });
        let replay_started = Instant::now();
        let mut running = server::start(&bin, &opts.pgdata).await?;
        let watched = server::watch(
            &mut running,
            &socket_dir,
            port,
            &opts.db_user,
            opts.action,
            s.fast_promote(),
            on_event.clone(),
        )
        .await?;
        // Recovery is over: the prefetcher sees its spool gone and exits.
        if let Err(e) = crate::capture::wal_spool::remove(&spool) {
            tracing::warn!(error = %e, spool = %spool.display(), "could not remove the WAL prefetch spool");
        }
        if let Err(e) = verify(plan, &watched) {
            let _ = server::stop(&bin, &opts.pgdata).await;
            return Err(e);
        }
        on_event(RecoverEvent::Done);
        record_timing(
            repo,
            RestoreTiming {
                at: Utc::now(),
                backup_id: plan.backup.id.clone(),
                data_bytes: total,
                materialize_seconds,
                wal_bytes: plan
                    .steps
                    .iter()
                    .map(|s| match s {
                        crate::plan::Step::ReplayWal { bytes, .. } => *bytes,
                        _ => 0,
                    })
                    .sum(),
                replay_seconds: replay_started.elapsed().as_secs_f64(),
                startup_seconds: watched.connected_secs.unwrap_or(0.0),
            },
        )
        .await;
        let connect = format!(
            "psql -h {} -p {port} -U {} postgres",
            socket_dir.display(),
            opts.db_user
        );
        Ok(RestoreOutcome {
            data_directory: opts.pgdata.display().to_string(),
            port,
            socket_directory: socket_dir.display().to_string(),
            action: opts.action,
            timeline: watched.timeline,
            replay_lsn: watched.replay_lsn,
            last_replayed_commit: watched.last_commit,
            target: target.clone(),
            backup_id: plan.backup.id.clone(),
            elapsed_seconds: started.elapsed().as_secs_f64(),
            server_log: running.log.display().to_string(),
            connect,
        })
    }
    .await;
    if let Err(e) = &result {
        let _ = server::stop(&bin, &opts.pgdata).await;
        let _ = crate::capture::wal_spool::remove(&spool_dir(&opts.pgdata));
        mark_failed(&opts.pgdata, e);
    }
    result
}

/// The wal-fetch prefetch spool of a restored data directory: inside
/// pg_wal (same filesystem, so handing a segment over is a rename; never
/// copied by base backups, which skip pg_wal's contents), absolute because
/// restore_command may be run from anywhere.
pub fn spool_dir(pgdata: &Path) -> PathBuf {
    std::path::absolute(pgdata)
        .unwrap_or_else(|_| pgdata.to_path_buf())
        .join("pg_wal")
        .join("pitr-spool")
}

/// Checks the server stopped where the plan said: for a time target the
/// last replayed commit is not after it; for the others Postgres' own
/// "recovery stopping ..." line is in the log (see xlogrecovery.c:
/// recoveryStopsBefore/After). `--action shutdown` has no SQL view.
fn verify(plan: &Plan, watched: &server::Watched) -> Result<(), RecoverError> {
    if let (RecoveryTarget::Time(t), Some(replayed)) = (&plan.target, watched.last_commit) {
        let past = if plan.inclusive {
            replayed > *t
        } else {
            replayed >= *t
        };
        if past {
            return Err(RecoverError::PastTarget {
                replayed,
                target: *t,
            });
        }
    }
    let needs_line = !matches!(
        plan.target,
        RecoveryTarget::Latest | RecoveryTarget::Time(_)
    );
    if needs_line && !watched.log_text.contains("recovery stopping") {
        return Err(RecoverError::TargetNotReached {
            target: plan.target.to_string(),
            log: watched.log.clone(),
            tail: watched
                .log_text
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    Ok(())
}

/// Keeps what this restore measured for the cost model. Best effort: a
/// repository that cannot take it does not fail a finished restore.
async fn record_timing(repo: &Repo, timing: RestoreTiming) {
    let stamp = format!(
        "{}-{}",
        timing.at.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    );
    let Ok(key) = crate::repo::layout::restore_timing(&stamp) else {
        return;
    };
    let put = repo
        .put_meta(
            &key,
            crate::repo::KIND_TIMING,
            &timing,
            crate::repo::store::PutMode::Create,
        )
        .await;
    if let Err(e) = put {
        tracing::warn!(error = %e, "could not record this restore's timing");
    }
}

/// The data directory must be new or empty; it is created 0700.
fn prepare_dir(pgdata: &Path) -> Result<(), RecoverError> {
    use std::os::unix::fs::PermissionsExt;
    let werr = |source| RecoverError::Write {
        path: pgdata.display().to_string(),
        source,
    };
    match std::fs::read_dir(pgdata) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(RecoverError::NotEmpty {
                    path: pgdata.display().to_string(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(pgdata).map_err(werr)?;
        }
        Err(e) => return Err(werr(e)),
    }
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700)).map_err(werr)
}

/// Leaves a failed restore unstartable and explained.
fn mark_failed(pgdata: &Path, err: &RecoverError) {
    if matches!(err, RecoverError::NotEmpty { .. }) {
        return; // not ours
    }
    let _ = std::fs::remove_file(pgdata.join("global/pg_control"));
    let _ = std::fs::write(
        pgdata.join("PITR_RESTORE_FAILED"),
        format!(
            "pitr restore failed at {}; this directory is not a usable data directory.\n{err}\n",
            Utc::now()
        ),
    );
}

/// For watch loops: how often to look again.
pub(crate) const POLL: Duration = Duration::from_millis(200);
