//! One restore, start to finish: the directory prepared (or refused), the
//! data directory materialized, recovery settings written, the server
//! started and watched to the target, the result verified against the plan
//! and timed; a failure marked in the directory (see the module above).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{RestoreTiming, StartKind};
use crate::pg::{Lsn, TimelineId};
use crate::plan::{Plan, RecoveryTarget, ReplaySpan};
use crate::repo::codec::CodecError;
use crate::repo::{Repo, RepoError};
use crate::server::install::BinError;

use super::progress::ReplayRate;
use super::settings::Action;
use super::{chain, from_snapshot, instance, settings, verify};

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
    #[error("recovery ended at {end}, short of the end of the archived WAL ({through}): segment {missing} was not replayed; is it readable in the repository?")]
    EndedShort {
        end: Lsn,
        missing: String,
        through: String,
    },
    #[error("recovery ended at {end}, {expected}, not where the plan stops: {plan}")]
    EndedElsewhere {
        end: Lsn,
        expected: String,
        plan: String,
    },
    #[error("cannot tell where recovery ended: {0}")]
    EndUnknown(String),
    #[error("recovery made no progress for {secs} s ({state}); the server was stopped (raise --stall-timeout if recovery is only slow)\n--- last lines of {log} ---\n{tail}")]
    Stalled {
        secs: u64,
        state: String,
        log: String,
        tail: String,
    },
    #[error("the server answering on port {port} is not the one pitr started: {detail}; another server uses this port")]
    WrongServer { port: u16, detail: String },
    #[error("postgres (pid {pid}) did not stop: fast and immediate shutdown and SIGKILL of its process group all timed out")]
    StopFailed { pid: i32 },
    #[error("no free TCP port found on 127.0.0.1")]
    NoPort,
    #[error("port {port} is in use ({by}): choose another with --port")]
    PortInUse { port: u16, by: String },
    #[error(transparent)]
    Tablespace(#[from] super::tablespaces::TablespaceError),
    /// A snapshot start point whose `tablespace_map` names a tablespace
    /// the snapshot does not carry (its record lists no copy of it).
    #[error("snapshot {0} does not hold every tablespace of its cluster: restore from a backup instead (--from full or --from incremental)")]
    Tablespaces(String),
    /// The snapshot provider could not clone a snapshot start point back.
    #[error("snapshot {id}")]
    Snapshot {
        id: String,
        #[source]
        source: Box<crate::capture::snapshot::ProviderError>,
    },
    /// A fork's own repository could not be made ready before the server
    /// started (`fork::init_new_repo`).
    #[error("the fork's repository {repo}")]
    NewRepo {
        repo: String,
        #[source]
        source: Box<super::fork::NewRepoError>,
    },
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub pgdata: PathBuf,
    pub port: Option<u16>,
    /// The install's bin directory (`install::select` chose it).
    pub pg_bin: PathBuf,
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
    /// Recovery that shows no progress for this long (no replay, no WAL
    /// delivered, nothing logged) fails; each step of stopping the server
    /// gets this long too (at most `instance::STOP_STEP`).
    pub stall_timeout: Duration,
    /// The outermost directory of `pgdata` that this run created before
    /// calling `restore` (the CLI creates it before dropping root
    /// privileges); removed again if the restore is refused before any
    /// data is written. `restore` tracks what it creates itself.
    pub created_dir: Option<PathBuf>,
    /// `Action::Standby`: the primary to stream from (`primary_conninfo`).
    pub primary_conninfo: Option<String>,
    /// A fork: the server archives into this repository of its own
    /// (initialized from the restored pg_control before the server first
    /// starts) instead of `archive_mode = 'off'`.
    pub archive: Option<super::fork::ArchiveInto>,
    /// `--tablespace-map OLD=NEW` pairs (`tablespaces::plan`).
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,
}

/// `RestoreOptions::stall_timeout` unless told otherwise.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// Where replay ended: the end of the last replayed record (after
    /// `--action shutdown`, a lower bound).
    pub recovery_end_lsn: Option<Lsn>,
    pub last_replayed_commit: Option<DateTime<Utc>>,
    pub target: RecoveryTarget,
    pub backup_id: String,
    pub elapsed_seconds: f64,
    /// The plan's estimate of the whole restore (`elapsed_seconds` is
    /// what it took).
    pub estimated_seconds: f64,
    /// What replay covered, how long it took and how fast it went (None
    /// with `--no-start`).
    pub replay: Option<ReplayRate>,
    pub server_log: String,
    pub connect: String,
}

/// Progress events for the CLI's reporter (`progress::Tracker` turns
/// them into bytes, rates and ETAs).
#[derive(Debug, Clone)]
pub enum RecoverEvent {
    /// Downloading the data directory begins: this many bytes.
    Materializing {
        total_bytes: u64,
    },
    /// This many more bytes of it are written.
    Bytes(u64),
    /// The server starts on `port` and will replay `replay` (the plan's
    /// span: from the backup's redo point to the expected end).
    Starting {
        port: u16,
        replay: ReplaySpan,
    },
    /// Replay has reached `lsn` (`pg_last_wal_replay_lsn()`, or at the
    /// end where recovery ended), as seen at `at`.
    Replaying {
        lsn: Lsn,
        at: Instant,
    },
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
    crate::server::install::check_bin_dir(&opts.pg_bin)?;
    let bin = opts.pg_bin.clone();
    let socket_dir = opts
        .socket_dir
        .clone()
        .unwrap_or_else(instance::default_socket_dir);
    // Before anything is created or fetched: a port no other server holds.
    let port = match opts.port {
        Some(p) => {
            instance::check_port(p, &socket_dir)?;
            p
        }
        None => instance::free_port(&socket_dir)?,
    };
    let created = prepare_dir(&opts.pgdata)?.or_else(|| opts.created_dir.clone());
    let stop_step = opts.stall_timeout.min(instance::STOP_STEP);
    let mut running: Option<instance::Running> = None;
    let mut wrote = false;
    let result = async {
        let mut materialize_started = Instant::now();
        let total = if let StartKind::Snapshot { .. } = plan.backup.start {
            let id = &plan.backup.id;
            from_snapshot::materialize(
                repo,
                id,
                &opts.pgdata,
                config.pg_major,
                &opts.tablespace_map,
                &on_event,
                &mut wrote,
            )
            .await?
        } else {
            // An incremental comes back through its chain (plan.backup.chain).
            let mut manifests = chain::load_chain(repo, &plan.backup).await?;
            let Some(manifest) = manifests.last_mut() else {
                return Err(RecoverError::BadManifest("an empty chain".into()));
            };
            // Before anything is fetched: where each tablespace goes,
            // refused if it is not empty; then its directory and link, and
            // the map recovery reads naming the new places.
            let spaces = super::tablespaces::plan(
                manifest.tablespace_map.as_deref(),
                config.pg_major,
                &opts.tablespace_map,
            )?;
            if !spaces.is_empty() {
                // From here a failure leaves the directory marked failed.
                wrote = true;
                super::tablespaces::create(&opts.pgdata, &spaces)?;
                manifest.tablespace_map =
                    Some(super::tablespaces::render(&spaces, config.pg_major)?);
            }
            let total: u64 = manifest.files.iter().map(|f| f.size).sum();
            on_event(RecoverEvent::Materializing { total_bytes: total });
            let ev = on_event.clone();
            materialize_started = Instant::now();
            wrote = true;
            chain::materialize_any(
                repo,
                &manifests,
                &opts.pgdata,
                opts.jobs,
                Arc::new(move |b| ev(RecoverEvent::Bytes(b))),
            )
            .await?;
            total
        };
        let materialize_seconds = materialize_started.elapsed().as_secs_f64();
        let spool = spool_dir(&opts.pgdata);
        // A standby fetches without the prefetch spool: it runs for as long
        // as it follows, mostly asking for a segment not archived yet, which
        // the prefetcher would poll the store for twice a second.
        let standby = opts.action == Action::Standby;
        let restore_command = settings::restore_command(
            &opts.pitr_exe.display().to_string(),
            &repo.location().to_arg(),
            &repo.pass_on_args(),
            (!standby).then_some(spool.as_path()),
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
            resolved: settings::resolved_lsn(plan),
            primary_conninfo: opts.primary_conninfo.clone(),
            archive_command: opts.archive.as_ref().map(|a| a.command.clone()),
        };
        instance::write_config(&opts.pgdata, &s)?;
        if let Some(archive) = &opts.archive {
            super::fork::init_new_repo(archive, &opts.pgdata).await?;
        }
        if !opts.start {
            on_event(RecoverEvent::Done);
            return Ok(RestoreOutcome {
                connect: format!(
                    "{} start -D {} -l {}",
                    bin.join("pg_ctl").display(),
                    opts.pgdata.display(),
                    opts.pgdata.join(instance::LOG_NAME).display()
                ),
                ..outcome(opts, port, &socket_dir, plan, started)
            });
        }
        let span = plan.replay_span(config.wal_segment_size);
        on_event(RecoverEvent::Starting { port, replay: span });
        let replay_started = Instant::now();
        let r = running.insert(instance::start(&bin, &opts.pgdata).await?);
        let spec = instance::WatchSpec {
            socket_dir: &socket_dir,
            port,
            db_user: &opts.db_user,
            action: opts.action,
            fast_promote: s.fast_promote(),
            stall_timeout: opts.stall_timeout,
        };
        if standby {
            // No end to watch for: ready once consistent, and replaying on.
            let watched = super::standby::wait_consistent(r, &spec).await?;
            on_event(RecoverEvent::Done);
            return Ok(RestoreOutcome {
                timeline: Some(plan.timeline),
                replay_lsn: watched.replay_lsn,
                last_replayed_commit: watched.last_commit,
                server_log: watched.log,
                ..outcome(opts, port, &socket_dir, plan, started)
            });
        }
        let watched = instance::watch(r, &spec, on_event.clone()).await?;
        let replay_ended = Instant::now();
        let replay_seconds = replay_ended.duration_since(replay_started).as_secs_f64();
        // Where recovery ended is where replay got to: the last position.
        if let Some(end) = watched.end {
            on_event(RecoverEvent::Replaying {
                lsn: end.lsn(),
                at: replay_ended,
            });
        }
        // Recovery is over: the prefetcher sees its spool gone and exits.
        if let Err(e) = crate::capture::wal_spool::remove(&spool) {
            tracing::warn!(error = %e, spool = %spool.display(), "could not remove the WAL prefetch spool");
        }
        verify(repo, plan, &watched, config.wal_segment_size).await?;
        on_event(RecoverEvent::Done);
        let replay = watched.end.map(|end| {
            ReplayRate::new(
                span.start,
                end.lsn(),
                replay_seconds,
                replay_estimate(plan),
            )
        });
        // Replay as seen over SQL: from the first position the server told
        // (once consistent) to the end, without its start-up.
        let seen = watched.first_replay.zip(watched.end).map(|((first, at), end)| {
            (
                end.lsn().checked_sub(first).unwrap_or(0),
                replay_ended.saturating_duration_since(at).as_secs_f64(),
            )
        });
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
                replay_seconds,
                startup_seconds: watched.connected_secs.unwrap_or(0.0),
                replayed_bytes: seen.map(|(b, _)| b),
                replayed_seconds: seen.map(|(_, s)| s),
                estimated_seconds: Some(plan.estimated_seconds),
                actual_seconds: Some(started.elapsed().as_secs_f64()),
                start: Some(plan.backup.start.timing_name()),
            },
        )
        .await;
        Ok(RestoreOutcome {
            timeline: watched.timeline,
            replay_lsn: watched.replay_lsn,
            recovery_end_lsn: watched.end.map(|e| e.lsn()),
            last_replayed_commit: watched.last_commit,
            replay,
            server_log: watched.log.clone(),
            ..outcome(opts, port, &socket_dir, plan, started)
        })
    }
    .await;
    if let Err(e) = &result {
        let stopped = match running.as_mut() {
            Some(r) => instance::stop_running(r, stop_step).await,
            None => Ok(()),
        };
        if let Err(stop_err) = stopped {
            tracing::error!(error = %stop_err, "could not stop the restored server");
        }
        let _ = crate::capture::wal_spool::remove(&spool_dir(&opts.pgdata));
        if wrote {
            mark_failed(&opts.pgdata, e);
        } else if let Some(root) = &created {
            remove_created(&opts.pgdata, root);
        }
    }
    result
}

/// What a restore of `plan` into `opts.pgdata`, served on `port`, reports
/// before anything of its replay is known: where it is and how to
/// connect.
fn outcome(
    opts: &RestoreOptions,
    port: u16,
    socket_dir: &Path,
    plan: &Plan,
    started: Instant,
) -> RestoreOutcome {
    RestoreOutcome {
        data_directory: opts.pgdata.display().to_string(),
        port,
        socket_directory: socket_dir.display().to_string(),
        action: opts.action,
        timeline: None,
        replay_lsn: None,
        recovery_end_lsn: None,
        last_replayed_commit: None,
        target: plan.target.clone(),
        backup_id: plan.backup.id.clone(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        estimated_seconds: plan.estimated_seconds,
        replay: None,
        server_log: String::new(),
        connect: format!(
            "psql -h {} -p {port} -U {} postgres",
            socket_dir.display(),
            opts.db_user
        ),
    }
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
/// last replayed commit is not after it (pg_last_xact_replay_timestamp()),
/// and where replay ended agrees with the plan (`verify`). The stop
/// segment's transaction list, where the repository has it, pins a time or
/// xid target's stop record exactly.
async fn verify(
    repo: &Repo,
    plan: &Plan,
    watched: &instance::Watched,
    size: crate::pg::WalSegmentSize,
) -> Result<(), RecoverError> {
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
    let Some(end) = watched.end else {
        return Err(RecoverError::EndUnknown(
            "the server did not say where replay ended".into(),
        ));
    };
    let mut xacts = None;
    if matches!(
        plan.target,
        RecoveryTarget::Time(_) | RecoveryTarget::Xid(_)
    ) {
        if let Ok(crate::pg::WalFileName::Segment(seg)) =
            crate::pg::WalFileName::parse(&plan.stop.segment)
        {
            match repo.segment_xacts(&seg).await {
                Ok(x) => xacts = Some(x),
                Err(e) => tracing::debug!(error = %e, "no transaction list for the stop segment"),
            }
        }
    }
    let expected = verify::expected(plan, xacts.as_deref(), size);
    verify::check(plan, &expected, end, size)
}

/// The plan's seconds for what `ReplayRate::seconds` measures: replaying
/// its WAL, plus the fixed start-up (server start, promotion).
fn replay_estimate(plan: &Plan) -> f64 {
    plan.steps
        .iter()
        .map(|s| match s {
            crate::plan::Step::ReplayWal {
                estimated_seconds, ..
            }
            | crate::plan::Step::StopAtTarget {
                estimated_seconds, ..
            } => *estimated_seconds,
            crate::plan::Step::RestoreBackup { .. }
            | crate::plan::Step::ApplyIncremental { .. }
            | crate::plan::Step::CloneSnapshot { .. } => 0.0,
        })
        .sum()
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

/// The data directory must be new or empty; it is created 0700. Returns
/// the outermost directory created here (None if `pgdata` existed).
fn prepare_dir(pgdata: &Path) -> Result<Option<PathBuf>, RecoverError> {
    use std::os::unix::fs::PermissionsExt;
    let werr = |source| RecoverError::Write {
        path: pgdata.display().to_string(),
        source,
    };
    let mut created = None;
    match std::fs::read_dir(pgdata) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(RecoverError::NotEmpty {
                    path: pgdata.display().to_string(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            created = create_pgdata(pgdata, None).map_err(werr)?;
        }
        Err(e) => return Err(werr(e)),
    }
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700)).map_err(werr)?;
    Ok(created)
}

/// Creates `pgdata` and its missing parents, each given to `owner` (uid,
/// gid) when set; returns the outermost directory created (None when
/// `pgdata` already existed). What it returns is what `remove_created` may
/// take away again.
pub fn create_pgdata(pgdata: &Path, owner: Option<(u32, u32)>) -> std::io::Result<Option<PathBuf>> {
    let mut missing = Vec::new();
    let mut dir = Some(pgdata);
    while let Some(d) = dir {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    std::fs::create_dir_all(pgdata)?;
    if let Some((uid, gid)) = owner {
        for d in &missing {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
        }
    }
    Ok(missing.pop())
}

/// Undoes `create_pgdata` after a restore refused before writing any
/// data: removes `pgdata` and its parents up to `created`, each only while
/// empty (so nothing anyone put there is ever removed).
pub fn remove_created(pgdata: &Path, created: &Path) {
    if !pgdata.starts_with(created) {
        return;
    }
    let mut dir = Some(pgdata);
    while let Some(d) = dir {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Data was written (or someone put something there): it stays,
            // marked failed.
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => return,
            Err(e) => {
                tracing::warn!(error = %e, dir = %d.display(), "could not remove a directory this restore created");
                return;
            }
        }
        if d == created {
            return;
        }
        dir = d.parent();
    }
}

/// Leaves a failed restore unstartable and explained (once data was
/// written to it).
fn mark_failed(pgdata: &Path, err: &RecoverError) {
    if matches!(err, RecoverError::NotEmpty { .. }) {
        return; // not ours
    }
    mark_unusable(pgdata, "restore", err);
}

/// Removes `global/pg_control` (the directory can no longer be started
/// or mistaken for a finished restore) and writes `PITR_RESTORE_FAILED`
/// with the reason: what `pitr <command>` leaves of a data directory it
/// wrote and then failed with (restore, and a fork whose first backup
/// failed after a finished restore).
pub(crate) fn mark_unusable(pgdata: &Path, command: &str, reason: &dyn std::fmt::Display) {
    let _ = std::fs::remove_file(pgdata.join("global/pg_control"));
    let _ = std::fs::write(
        pgdata.join("PITR_RESTORE_FAILED"),
        format!(
            "pitr {command} failed at {}; this directory is not a usable data directory.\n{reason}\n",
            Utc::now()
        ),
    );
}

/// For watch loops: how often to look again.
pub(crate) const POLL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_refused_restore_created_goes_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("a");
        let pgdata = top.join("b").join("pgdata");
        assert_eq!(create_pgdata(&pgdata, None).unwrap(), Some(top.clone()));
        assert!(pgdata.is_dir());
        // Existing: nothing created, nothing to undo.
        assert_eq!(create_pgdata(&pgdata, None).unwrap(), None);
        remove_created(&pgdata, &top);
        assert!(!top.exists());
        assert!(d.path().is_dir());

        // Something put beside it stops the removal there.
        create_pgdata(&pgdata, None).unwrap();
        std::fs::write(top.join("b").join("other"), b"x").unwrap();
        remove_created(&pgdata, &top);
        assert!(!pgdata.exists());
        assert!(top.join("b").join("other").exists());

        // A non-empty data directory (data was written) is never removed.
        let full = d.path().join("full");
        let created = create_pgdata(&full, None).unwrap().unwrap();
        std::fs::write(full.join("PG_VERSION"), b"15\n").unwrap();
        remove_created(&full, &created);
        assert!(full.join("PG_VERSION").exists());

        // Only inside what was created.
        remove_created(d.path(), &top);
        assert!(d.path().is_dir());
    }

    #[test]
    fn prepare_dir_reports_only_what_it_created() {
        let d = tempfile::tempdir().unwrap();
        let mine = d.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        assert_eq!(prepare_dir(&mine).unwrap(), None);
        let new = d.path().join("x").join("new");
        assert_eq!(prepare_dir(&new).unwrap(), Some(d.path().join("x")));
        std::fs::write(mine.join("f"), b"").unwrap();
        assert!(matches!(
            prepare_dir(&mine),
            Err(RecoverError::NotEmpty { .. })
        ));
    }
}
