//! `pitr promote`: makes the standby running on a data directory a
//! primary (`pg_promote()`, or the `promote` file and SIGUSR1 as `pg_ctl
//! promote` does when the role may not call it), and with `--archive-to R`
//! makes it archive into R: the new timeline's history file pushed first
//! (Postgres wrote it while archiving was off, so its archiver never will),
//! then `archive_mode` and `archive_command` set with ALTER SYSTEM and
//! the server restarted (archive_mode needs it) through pitr's own stop
//! and start, as the data directory's owner.
//!
//! Everything that can refuse is checked before anything changes: R must
//! hold this database system (its system identifier, from pg_control),
//! and a restart must be possible (the install found, no start options
//! pitr would not repeat). A server already out of recovery (a finished
//! `restore` or `rollback`) is not promoted again: `--archive-to` alone
//! turns archiving on for it the same way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::instance;
use super::live::{self, LiveServer, ServerError};
use super::settings;
use super::RecoverError;
use crate::capture::wal_push::{wal_push, PushError, PushStatus};
use crate::pg::control::{ControlFile, SystemId};
use crate::pg::{Lsn, TimelineId};
use crate::repo::{Repo, RepoError};

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{pgdata} is database system {found}, but repository {repo} holds system {expected}: a server archives only into its own system's repository")]
    OtherSystem {
        pgdata: String,
        repo: String,
        found: SystemId,
        expected: SystemId,
    },
    #[error("{pgdata} already archives into repository {current}; --archive-to {requested} would move it (a fork archives into its own repository: its WAL must not join another history). To move it on purpose, change archive_command yourself")]
    ArchivesElsewhere {
        pgdata: String,
        current: String,
        requested: String,
    },
    #[error("cannot read {path}: {reason}")]
    Control { path: String, reason: String },
    #[error("the server was started with options that pitr would not repeat when it restarts it with archiving on ({options}); set archive_mode and archive_command yourself, restart it, and push {history} with pitr wal-push")]
    StartOptions { options: String, history: String },
    #[error("cannot tell which install runs the server (postmaster {pid}): {reason}")]
    Install { pid: i32, reason: String },
    #[error("the server is still in recovery {secs} s after it was asked to promote (raise --wait if it has much WAL left to replay)")]
    NotPromoted { secs: u64 },
    #[error("the promoted server does not say its timeline")]
    NoTimeline,
    #[error("pushing the new timeline's history file {path}")]
    History {
        path: String,
        #[source]
        source: PushError,
    },
    #[error("archiving {path}, a segment of the new timeline written while archiving was off")]
    Segment {
        path: String,
        #[source]
        source: PushError,
    },
    #[error("restarting the server with archiving on")]
    Restart(#[source] RecoverError),
    #[error("after the restart archive_mode is {0:?}, not on (set by a configuration file that ALTER SYSTEM does not override?)")]
    ArchivingOff(String),
    #[error("locating the pitr executable")]
    Exe(#[source] std::io::Error),
}

/// What `promote` does.
pub struct PromoteOptions<'a> {
    pub pgdata: &'a Path,
    pub db_user: &'a str,
    /// `--archive-to`: the repository the new primary archives into.
    pub archive_to: Option<&'a Repo>,
    /// How long promotion may take (replay of WAL already received).
    pub wait: Duration,
}

/// Archiving turned on by `--archive-to`.
#[derive(Clone, Debug, Serialize)]
pub struct Archiving {
    pub repository: String,
    pub archive_command: String,
    /// The new timeline's history file (none on timeline 1) and whether
    /// the push stored it or found it there.
    pub history_file: Option<String>,
    pub history_push: Option<PushStatus>,
    /// Whether the server was restarted (archive_mode was off).
    pub restarted: bool,
    /// Whole segments of the new timeline written while archiving was off
    /// and still in pg_wal, pushed by pitr before the restart (whose
    /// shutdown checkpoint, archiving not yet active, recycles them).
    pub pushed_segments: Vec<String>,
    /// When the new timeline's first segments were recycled before
    /// archiving was on: what is missing, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unarchived: Option<String>,
}

/// What `pitr promote` reports (`--json` prints this).
#[derive(Clone, Debug, Serialize)]
pub struct Promoted {
    pub data_directory: String,
    pub port: u16,
    pub socket_directory: Option<String>,
    /// False when it was already out of recovery.
    pub promoted: bool,
    /// The timeline it writes now.
    pub timeline: TimelineId,
    /// Where that timeline began (its history file's switch point).
    pub switch_lsn: Option<Lsn>,
    pub archiving: Option<Archiving>,
    pub elapsed_seconds: f64,
}

/// The pg_control of `pgdata`.
fn control(pgdata: &Path) -> Result<ControlFile, PromoteError> {
    let path = pgdata.join("global").join("pg_control");
    let err = |reason: String| PromoteError::Control {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
    ControlFile::decode(&bytes).map_err(|e| err(e.to_string()))
}

/// The bin directory of the install the postmaster runs
/// (`/proc/<pid>/exe`), for pg_ctl and postgres at the restart.
fn install_of(pid: i32) -> Result<PathBuf, PromoteError> {
    let err = |reason: String| PromoteError::Install { pid, reason };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| err(e.to_string()))?;
    let bin = exe
        .parent()
        .ok_or_else(|| err(format!("{} has no directory", exe.display())))?;
    crate::server::install::check_bin_dir(bin).map_err(|e| err(e.to_string()))?;
    Ok(bin.to_path_buf())
}

/// The start options in `postmaster.opts` (written by the postmaster:
/// its program, then each argument in double quotes; see postmaster.c:
/// CreateOptsFile) other than `-D <pgdata>`: what a plain `postgres -D`
/// restart would lose.
pub fn extra_start_options(opts: &str, pgdata: &Path) -> Vec<String> {
    let args: Vec<&str> = opts
        .trim()
        .split(" \"")
        .skip(1)
        .map(|a| a.strip_suffix('"').unwrap_or(a))
        .collect();
    let mut extra = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "-D"
            && args
                .get(i + 1)
                .is_some_and(|d| same_dir(Path::new(d), pgdata))
        {
            i += 2;
            continue;
        }
        if let Some(d) = a.strip_prefix("-D").filter(|d| !d.is_empty()) {
            if same_dir(Path::new(d), pgdata) {
                i += 1;
                continue;
            }
        }
        extra.push(a.to_string());
        i += 1;
    }
    extra
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn history_name(tli: TimelineId) -> String {
    format!("{:08X}.history", tli.get())
}

/// `pitr promote --pgdata D [--archive-to R]`.
pub async fn promote(opts: &PromoteOptions<'_>) -> Result<Promoted, PromoteError> {
    let started = Instant::now();
    let server = LiveServer::find(opts.pgdata)?;
    let client = server.connect(opts.db_user, "pitr promote").await?;
    // What could refuse, before anything changes.
    let restart_with = match opts.archive_to {
        Some(repo) => Some(check_archive_to(opts.pgdata, &server, &client, repo).await?),
        None => None,
    };
    let in_recovery: bool = live::query_one(
        &client,
        "select pg_is_in_recovery()",
        "asking whether it is in recovery",
    )
    .await?
    .try_get(0)
    .map_err(|e| sql_error("asking whether it is in recovery", e))?;
    if in_recovery {
        ask_to_promote(&client, &server, opts.wait).await?;
        wait_promoted(&client, opts.wait, started).await?;
    }
    let timeline = instance::query_timeline(&client, false)
        .await
        .ok_or(PromoteError::NoTimeline)?;
    let switch_lsn = if timeline == TimelineId::FIRST {
        None
    } else {
        instance::switch_point(opts.pgdata, timeline).ok()
    };
    let archiving = match (opts.archive_to, restart_with) {
        (Some(repo), Some(bin)) => {
            Some(archive_into(opts, &server, client, repo, &bin, timeline).await?)
        }
        _ => None,
    };
    Ok(Promoted {
        data_directory: opts.pgdata.display().to_string(),
        port: server.port,
        socket_directory: server.socket_dir.as_ref().map(|d| d.display().to_string()),
        promoted: in_recovery,
        timeline,
        switch_lsn,
        archiving,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

fn sql_error(what: &str, e: tokio_postgres::Error) -> PromoteError {
    PromoteError::Server(ServerError::Sql {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// `--archive-to R` is possible: R holds this database system, and the
/// server can be restarted as it runs (its install; no start options a
/// plain `postgres -D` would lose). The install's bin directory.
async fn check_archive_to(
    pgdata: &Path,
    server: &LiveServer,
    client: &tokio_postgres::Client,
    repo: &Repo,
) -> Result<PathBuf, PromoteError> {
    // A server already archiving into another pitr repository (a fork
    // into its own) is not moved by promote: its WAL would join another
    // history in R.
    let setting = |name: &'static str| async move {
        live::query_one(
            client,
            &format!("show {name}"),
            "reading the archive settings",
        )
        .await
        .ok()
        .and_then(|row| row.try_get::<_, String>(0).ok())
    };
    if setting("archive_mode").await.is_some_and(|m| m != "off") {
        let current = setting("archive_command")
            .await
            .and_then(|c| settings::repo_of_archive_command(&c))
            .map(|(r, _)| r);
        if let Some(current) = current {
            let same =
                crate::repo::RepoLocation::parse(&current).is_ok_and(|l| &l == repo.location());
            if !same {
                return Err(PromoteError::ArchivesElsewhere {
                    pgdata: pgdata.display().to_string(),
                    current,
                    requested: repo.location().to_arg(),
                });
            }
        }
    }
    let config = repo.config().await?;
    let found = control(pgdata)?.system_identifier;
    if found != config.system_id {
        return Err(PromoteError::OtherSystem {
            pgdata: pgdata.display().to_string(),
            repo: repo.location().to_arg(),
            found,
            expected: config.system_id,
        });
    }
    let bin = install_of(server.pid)?;
    let opts = std::fs::read_to_string(pgdata.join("postmaster.opts")).unwrap_or_default();
    let extra = extra_start_options(&opts, pgdata);
    if !extra.is_empty() || server.socket_dir.is_none() {
        return Err(PromoteError::StartOptions {
            options: if extra.is_empty() {
                "no Unix socket to watch it on".to_string()
            } else {
                extra.join(" ")
            },
            history: pgdata
                .join("pg_wal/<new timeline>.history")
                .display()
                .to_string(),
        });
    }
    Ok(bin)
}

/// `pg_promote(wait => false)`; a role that may not call it gets what
/// `pg_ctl promote` does instead (the data directory's owner may): the
/// `promote` file and SIGUSR1 to the postmaster.
async fn ask_to_promote(
    client: &tokio_postgres::Client,
    server: &LiveServer,
    wait: Duration,
) -> Result<(), PromoteError> {
    let what = "asking the server to promote (pg_promote())";
    match tokio::time::timeout(wait, client.query_one("select pg_promote(false)", &[])).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
        {
            std::fs::write(server.pgdata.join("promote"), b"")
                .and_then(|()| {
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(server.pid),
                        nix::sys::signal::Signal::SIGUSR1,
                    )
                    .map_err(std::io::Error::from)
                })
                .map_err(|e| {
                    PromoteError::Server(ServerError::Sql {
                        what: format!("{what}; and as pg_ctl promote does"),
                        reason: e.to_string(),
                    })
                })
        }
        Ok(Err(e)) => Err(sql_error(what, e)),
        Err(_) => Err(PromoteError::NotPromoted {
            secs: wait.as_secs(),
        }),
    }
}

/// Waits, within `wait` from `started`, until the server is out of
/// recovery.
async fn wait_promoted(
    client: &tokio_postgres::Client,
    wait: Duration,
    started: Instant,
) -> Result<(), PromoteError> {
    loop {
        let row = live::query_one(
            client,
            "select pg_is_in_recovery()",
            "waiting for the promotion",
        )
        .await?;
        let in_recovery: bool = row
            .try_get(0)
            .map_err(|e| sql_error("waiting for the promotion", e))?;
        if !in_recovery {
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(PromoteError::NotPromoted {
                secs: wait.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes the promoted server archive into `repo`: its timeline's history
/// file pushed first (so the repository knows the timeline before any of
/// its segments), then archive_mode and archive_command set and the
/// server restarted if archive_mode was off (a reload otherwise).
async fn archive_into(
    opts: &PromoteOptions<'_>,
    server: &LiveServer,
    client: tokio_postgres::Client,
    repo: &Repo,
    bin: &Path,
    timeline: TimelineId,
) -> Result<Archiving, PromoteError> {
    let (history_file, history_push) = if timeline == TimelineId::FIRST {
        (None, None)
    } else {
        let path = opts.pgdata.join("pg_wal").join(history_name(timeline));
        let pushed = wal_push(repo, &path)
            .await
            .map_err(|source| PromoteError::History {
                path: path.display().to_string(),
                source,
            })?;
        (Some(history_name(timeline)), Some(pushed.status))
    };
    let (pushed_segments, unarchived) = if timeline == TimelineId::FIRST {
        (Vec::new(), None)
    } else {
        push_finished_segments(opts.pgdata, &client, repo, timeline).await?
    };
    let exe = std::env::current_exe().map_err(PromoteError::Exe)?;
    let command = settings::archive_command(
        &exe.display().to_string(),
        &repo.location().to_arg(),
        &repo.pass_on_args(),
    );
    let what = "turning archiving on (ALTER SYSTEM)";
    let mode: String = live::query_one(&client, "select current_setting('archive_mode')", what)
        .await?
        .try_get(0)
        .map_err(|e| sql_error(what, e))?;
    for sql in [
        "alter system set archive_mode = 'on'".to_string(),
        format!(
            "alter system set archive_command = {}",
            settings::sql_literal(&command)
        ),
    ] {
        crate::recover::instance::within(instance::ROUND_TRIP, client.batch_execute(&sql))
            .await
            .map_err(|reason| {
                PromoteError::Server(ServerError::Sql {
                    what: what.to_string(),
                    reason,
                })
            })?;
    }
    let restarted = mode == "off";
    let client = if restarted {
        drop(client);
        restart(server, bin, opts.db_user).await?;
        // A new postmaster.
        LiveServer::find(opts.pgdata)?
            .connect(opts.db_user, "pitr promote")
            .await?
    } else {
        live::query_one(&client, "select pg_reload_conf()", what).await?;
        client
    };
    let mode: String = live::query_one(&client, "select current_setting('archive_mode')", what)
        .await?
        .try_get(0)
        .map_err(|e| sql_error(what, e))?;
    if mode == "off" {
        return Err(PromoteError::ArchivingOff(mode));
    }
    Ok(Archiving {
        repository: repo.location().to_arg(),
        archive_command: command,
        history_file,
        history_push,
        restarted,
        pushed_segments,
        unarchived,
    })
}

/// Pushes the whole segments of `timeline` still in pg_wal (those before
/// the one being written), as the archiver would have had archiving been
/// on: with it off, no status file marks them, and checkpoints recycle
/// them (the restart's shutdown checkpoint included). Whatever of the
/// timeline's start is already gone is named, with what to do: a restore
/// on this timeline then needs a backup taken from now on.
async fn push_finished_segments(
    pgdata: &Path,
    client: &tokio_postgres::Client,
    repo: &Repo,
    timeline: TimelineId,
) -> Result<(Vec<String>, Option<String>), PromoteError> {
    let what = "finding the segment being written";
    let written: String = live::query_one(client, "select pg_current_wal_lsn()::text", what)
        .await?
        .try_get(0)
        .map_err(|e| sql_error(what, e))?;
    let written: Lsn = written.parse().map_err(|_| PromoteError::NoTimeline)?;
    let control = control(pgdata)?;
    let size = control.wal_segment_size;
    // (pg_walfile_name would name the previous segment at a boundary.)
    let current = crate::pg::SegmentName::new(timeline, written.segno(size), size).to_string();
    let wal = pgdata.join("pg_wal");
    let mut names: Vec<String> = std::fs::read_dir(&wal)
        .map_err(|e| PromoteError::Control {
            path: wal.display().to_string(),
            reason: e.to_string(),
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            matches!(crate::pg::WalFileName::parse(n), Ok(crate::pg::WalFileName::Segment(s)) if s.timeline() == timeline)
                && n.as_str() < current.as_str()
        })
        .collect();
    names.sort();
    for n in &names {
        let path = wal.join(n);
        wal_push(repo, &path)
            .await
            .map_err(|source| PromoteError::Segment {
                path: path.display().to_string(),
                source,
            })?;
    }
    // The timeline's first segment holds its switch point.
    let history = std::fs::read_to_string(wal.join(history_name(timeline))).unwrap_or_default();
    let first = crate::pg::history::TimelineHistory::parse(timeline, &history)
        .ok()
        .and_then(|h| h.entries().last().map(|e| e.switchpoint))
        .map(|lsn| crate::pg::SegmentName::new(timeline, lsn.segno(size), size).to_string());
    let earliest = names.first().cloned().unwrap_or(current);
    let unarchived = first.filter(|f| *f < earliest).map(|f| {
        format!(
            "segments {f} up to before {earliest} of timeline {timeline} were written while archiving was off and recycled: they are not in the repository, so a restore on timeline {timeline} needs a backup taken from now on (pitr backup)"
        )
    });
    Ok((names, unarchived))
}

/// Stops the server (fast, escalating) and starts it again as it ran,
/// `postgres -D` of its install, waiting until it accepts connections.
async fn restart(server: &LiveServer, bin: &Path, db_user: &str) -> Result<(), PromoteError> {
    instance::stop(bin, &server.pgdata)
        .await
        .map_err(PromoteError::Restart)?;
    let mut running = instance::start(bin, &server.pgdata)
        .await
        .map_err(PromoteError::Restart)?;
    let socket_dir = server
        .socket_dir
        .clone()
        .unwrap_or_else(instance::default_socket_dir);
    instance::wait_ready(&mut running, &socket_dir, server.port, db_user)
        .await
        .map_err(PromoteError::Restart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_options_other_than_the_data_directory_are_seen() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let plain = format!("/usr/lib/postgresql/15/bin/postgres \"-D\" \"{dir}\"\n");
        assert!(extra_start_options(&plain, d.path()).is_empty());
        let joined = format!("/usr/lib/postgresql/15/bin/postgres \"-D{dir}\"\n");
        assert!(extra_start_options(&joined, d.path()).is_empty());
        let debian = format!(
            "/usr/lib/postgresql/15/bin/postgres \"-D\" \"{dir}\" \"-c\" \"config_file=/etc/postgresql/15/main/postgresql.conf\"\n"
        );
        assert_eq!(
            extra_start_options(&debian, d.path()),
            ["-c", "config_file=/etc/postgresql/15/main/postgresql.conf"]
        );
        let elsewhere = "/bin/postgres \"-D\" \"/somewhere/else\"\n";
        assert_eq!(
            extra_start_options(elsewhere, d.path()),
            ["-D", "/somewhere/else"]
        );
        assert!(extra_start_options("", d.path()).is_empty());
    }
}
