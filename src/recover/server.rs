//! The new server's process: configuration files, the postmaster started as
//! pitr's direct child with an explicit environment in its own process
//! group (so its exit is seen at once, and it outlives pitr as an operator
//! expects), watching recovery over SQL and the server's own log, and
//! stopping it with `pg_ctl` (fast, then immediate).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tokio::process::Command;

use super::settings::{auto_conf_block, Action, RecoverySettings};
use super::{OnEvent, RecoverError, RecoverEvent, POLL};
use crate::pg::{Lsn, TimelineId};

pub const LOG_NAME: &str = "pitr-recovery.log";

/// Environment the restored server keeps, for its restore_command: the AWS
/// credential chain and endpoint settings (never written to any file).
const AWS_PASSTHROUGH: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_CA_BUNDLE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "PITR_S3_PATH_STYLE",
];

/// Whether nothing listens on 127.0.0.1:`port` and no Unix socket lock
/// for it is held in the usual places.
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free port from the kernel's ephemeral range.
pub fn free_port() -> Result<u16, RecoverError> {
    for _ in 0..20 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|_| RecoverError::NoPort)?;
        let port = l.local_addr().map_err(|_| RecoverError::NoPort)?.port();
        drop(l);
        let lock = default_socket_dir().join(format!(".s.PGSQL.{port}.lock"));
        if !lock.exists() {
            return Ok(port);
        }
    }
    Err(RecoverError::NoPort)
}

/// `/var/run/postgresql` where it exists and is writable (Debian, RHEL),
/// else `/tmp` (the compiled-in default elsewhere).
pub fn default_socket_dir() -> PathBuf {
    let debian = Path::new("/var/run/postgresql");
    if debian.is_dir() && nix::unistd::access(debian, nix::unistd::AccessFlags::W_OK).is_ok() {
        debian.to_path_buf()
    } else {
        PathBuf::from("/tmp")
    }
}

/// Appends the recovery block to postgresql.auto.conf, creates
/// recovery.signal, and supplies postgresql.conf / pg_hba.conf when the
/// backup had none (Debian keeps them in /etc/postgresql).
pub fn write_config(pgdata: &Path, s: &RecoverySettings) -> Result<(), RecoverError> {
    use std::io::Write;
    let werr = |p: &Path| {
        let p = p.display().to_string();
        move |source| RecoverError::Write { path: p, source }
    };
    let conf = pgdata.join("postgresql.conf");
    if !conf.exists() {
        super::materialize::write_synced(
            &conf,
            b"# Created by pitr restore: the backup had no postgresql.conf.\n",
        )?;
    }
    let hba = pgdata.join("pg_hba.conf");
    if !hba.exists() {
        super::materialize::write_synced(
            &hba,
            b"# Created by pitr restore: the backup had no pg_hba.conf.\nlocal all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
        )?;
    }
    let auto = pgdata.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .map_err(werr(&auto))?;
    f.write_all(format!("\n{}", auto_conf_block(s)).as_bytes())
        .map_err(werr(&auto))?;
    f.sync_all().map_err(werr(&auto))?;
    super::materialize::write_synced(&pgdata.join("recovery.signal"), b"")?;
    Ok(())
}

pub struct Running {
    pub pgdata: PathBuf,
    pub log: PathBuf,
    /// The postmaster, our direct child: its exit is seen at once. It runs
    /// in its own process group, so it outlives pitr and is not hit by the
    /// terminal's signals.
    pub postmaster: tokio::process::Child,
}

fn pg_ctl(bin: &Path) -> Command {
    let mut c = Command::new(bin.join("pg_ctl"));
    explicit_env(&mut c);
    c
}

fn explicit_env(c: &mut Command) {
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null());
    if let Ok(home) = std::env::var("HOME") {
        c.env("HOME", home);
    }
}

/// Starts `postgres -D pgdata` (what `pg_ctl start` does, minus the wait),
/// its output appended to the server log.
pub async fn start(bin: &Path, pgdata: &Path) -> Result<Running, RecoverError> {
    let log = pgdata.join(LOG_NAME);
    let spawn_err = |e: std::io::Error| RecoverError::Spawn {
        program: bin.join("postgres").display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(spawn_err)?;
    let file2 = file.try_clone().map_err(spawn_err)?;
    let mut c = Command::new(bin.join("postgres"));
    explicit_env(&mut c);
    // restore_command (pitr wal-fetch) finds S3 credentials the AWS way.
    for (k, v) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| AWS_PASSTHROUGH.contains(&k)) {
            c.env(k, v);
        }
    }
    c.arg("-D")
        .arg(pgdata)
        .stdout(file)
        .stderr(file2)
        .process_group(0)
        .kill_on_drop(false);
    let postmaster = c.spawn().map_err(spawn_err)?;
    Ok(Running {
        pgdata: pgdata.to_path_buf(),
        log,
        postmaster,
    })
}

/// Fast shutdown, then immediate if that did not finish.
pub async fn stop(bin: &Path, pgdata: &Path) -> Result<(), RecoverError> {
    if !pgdata.join("postmaster.pid").exists() {
        return Ok(());
    }
    for mode in ["fast", "immediate"] {
        let ok = pg_ctl(bin)
            .args(["stop", "-w", "-t", "60", "-m", mode, "-D"])
            .arg(pgdata)
            .output()
            .await
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads the server log from `offset`, returning new text.
fn read_log_from(log: &Path, offset: &mut u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        if f.seek(SeekFrom::Start(*offset)).is_ok() {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() {
                *offset += buf.len() as u64;
                s = String::from_utf8_lossy(&buf).into_owned();
            }
        }
    }
    s
}

pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The first FATAL or PANIC of the server itself (not the refusals it
/// logs for our own connection attempts while it starts up).
fn first_fatal(text: &str) -> Option<String> {
    const CLIENT: [&str; 3] = [
        "the database system is starting up",
        "the database system is not yet accepting connections",
        "the database system is shutting down",
    ];
    text.lines()
        .filter(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .find(|l| !CLIENT.iter().any(|c| l.contains(c)))
        .map(|l| l.trim().to_string())
}

pub struct Watched {
    pub timeline: Option<TimelineId>,
    pub replay_lsn: Option<Lsn>,
    pub last_commit: Option<DateTime<Utc>>,
    /// The server log as read while watching, and where it is.
    pub log_text: String,
    pub log: String,
    /// Seconds from the start of watching to the first SQL connection.
    pub connected_secs: Option<f64>,
}

/// Asks the server to promote, as `pg_ctl promote` does: the `promote`
/// file in the data directory, then SIGUSR1 to the postmaster.
fn request_promotion(running: &Running) -> std::io::Result<()> {
    std::fs::write(running.pgdata.join("promote"), b"")?;
    let pid = running
        .postmaster
        .id()
        .ok_or_else(|| std::io::Error::other("the postmaster has exited"))?;
    let pid = i32::try_from(pid).map_err(std::io::Error::other)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(std::io::Error::from)
}

/// Waits for recovery to reach the target and the action to complete.
pub async fn watch(
    running: &mut Running,
    socket_dir: &Path,
    port: u16,
    db_user: &str,
    action: Action,
    fast_promote: bool,
    on_event: OnEvent,
) -> Result<Watched, RecoverError> {
    let mut offset = 0u64;
    let mut log_text = String::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(db_user)
        .dbname("postgres")
        .application_name("pitr restore");
    let fail = |log_text: &str, why: &str| RecoverError::ServerFailed {
        fatal: first_fatal(log_text).unwrap_or_else(|| why.to_string()),
        log: running.log.display().to_string(),
        tail: log_tail(&running.log, 25),
    };
    let start = std::time::Instant::now();
    let mut connected_secs = None;
    let mut promote_requested = false;
    loop {
        log_text.push_str(&read_log_from(&running.log, &mut offset));
        let exited = match running.postmaster.try_wait() {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => start.elapsed().as_secs() > 120,
        };
        if exited {
            log_text.push_str(&read_log_from(&running.log, &mut offset));
            // A clean stop at the target for `shutdown`, a failure otherwise.
            if action == Action::Shutdown && log_text.contains("shutdown at recovery target") {
                return Ok(Watched {
                    timeline: None,
                    replay_lsn: None,
                    last_commit: None,
                    log_text,
                    log: running.log.display().to_string(),
                    connected_secs: None,
                });
            }
            return Err(fail(&log_text, "the server exited during recovery"));
        }
        if client.is_none() {
            match cfg.connect(tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client = Some(c);
                    connected_secs.get_or_insert(start.elapsed().as_secs_f64());
                }
                Err(e) => {
                    if let Some(db) = e.as_db_error() {
                        let code = db.code().code();
                        if code == "28000" || code == "28P01" {
                            return Err(RecoverError::ServerFailed {
                                fatal: format!(
                                    "cannot connect as {db_user} to watch recovery: {} (pass --db-user, or allow local connections for it in pg_hba.conf)",
                                    db.message()
                                ),
                                log: running.log.display().to_string(),
                                tail: log_tail(&running.log, 10),
                            });
                        }
                    }
                }
            }
        }
        if let Some(c) = &client {
            match c
                .query_one(
                    "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end",
                    &[],
                )
                .await
            {
                Ok(row) => {
                    let in_recovery: bool = row.get(0);
                    let lsn: Option<String> = row.get(1);
                    let lsn = lsn.and_then(|l| l.parse::<Lsn>().ok());
                    let last_commit: Option<DateTime<Utc>> = row.get(2);
                    let paused: bool = row.get(3);
                    if let Some(l) = lsn {
                        on_event(RecoverEvent::Replaying { lsn: l });
                    }
                    if fast_promote && !promote_requested && in_recovery {
                        // Still replaying: a promote request now is acted on
                        // the moment replay pauses at the target, with no
                        // end-of-recovery checkpoint. Already paused there:
                        // resuming is quicker than the pause loop's 1 s
                        // wake-up for a late request (the checkpoint is the
                        // usual one). The request is what `pg_ctl promote`
                        // does, so it needs no SQL privilege; resuming does,
                        // and falls back to the request.
                        let resumed = paused
                            && c.query("select pg_wal_replay_resume()", &[])
                                .await
                                .is_ok();
                        promote_requested = resumed || request_promotion(running).is_ok();
                    }
                    let done = match action {
                        Action::Promote => !in_recovery,
                        Action::Pause => {
                            in_recovery && paused && log_text.contains("pausing at the end of recovery")
                        }
                        Action::Shutdown => false,
                    };
                    if done {
                        let timeline = query_timeline(c, in_recovery).await;
                        log_text.push_str(&read_log_from(&running.log, &mut offset));
                        return Ok(Watched {
                            timeline,
                            replay_lsn: lsn,
                            last_commit,
                            log_text,
                            log: running.log.display().to_string(),
                            connected_secs,
                        });
                    }
                }
                Err(_) => {
                    client = None;
                }
            }
        }
        // Connected, a query costs the server next to nothing: look often,
        // so the end of recovery is seen within milliseconds. Until then,
        // each refused attempt is a line in the server log: fewer.
        let pause = if client.is_some() {
            std::time::Duration::from_millis(10)
        } else {
            std::time::Duration::from_millis(50)
        };
        tokio::time::sleep(pause).await;
    }
}

async fn query_timeline(c: &tokio_postgres::Client, in_recovery: bool) -> Option<TimelineId> {
    let q = if in_recovery {
        "select timeline_id::int from pg_control_checkpoint()"
    } else {
        "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
    };
    let v: i32 = c.query_one(q, &[]).await.ok()?.get(0);
    TimelineId::new(u32::try_from(v).ok()?).ok()
}

/// Waits until a freshly started (not recovering) server accepts
/// connections, or fails with its FATAL line.
pub async fn wait_ready(
    running: &mut Running,
    socket_dir: &Path,
    port: u16,
    db_user: &str,
) -> Result<(), RecoverError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(db_user)
        .dbname("postgres");
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = running.postmaster.try_wait() {
            let text = std::fs::read_to_string(&running.log).unwrap_or_default();
            return Err(RecoverError::ServerFailed {
                fatal: first_fatal(&text).unwrap_or_else(|| "the server exited at start".into()),
                log: running.log.display().to_string(),
                tail: log_tail(&running.log, 20),
            });
        }
        if cfg.connect(tokio_postgres::NoTls).await.is_ok() {
            return Ok(());
        }
        if started.elapsed().as_secs() > 120 {
            return Err(RecoverError::ServerFailed {
                fatal: "the server did not accept connections within 120 s".into(),
                log: running.log.display().to_string(),
                tail: log_tail(&running.log, 20),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `server_version` of a running server.
pub async fn query_version(socket_dir: &Path, port: u16, db_user: &str) -> Option<String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(db_user)
        .dbname("postgres");
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c.query_one("show server_version", &[])
        .await
        .ok()?
        .try_get(0)
        .ok()
}
