//! The new server's process: configuration files, the postmaster started as
//! pitr's direct child with an explicit environment in its own process
//! group (so its exit is seen at once, and it outlives pitr as an operator
//! expects), watching recovery, and stopping it.
//!
//! Watching never reads the server log (its language is the cluster's
//! `lc_messages`): it follows the postmaster's exit status, its status line
//! in `postmaster.pid`, pg_control, pg_wal and SQL (replay position, pause
//! state, `pg_is_in_recovery()`), and only over a connection proven to be
//! served by our own postmaster. Every wait has a deadline: recovery that
//! shows no progress for the stall timeout fails, and a stop escalates
//! from fast to immediate shutdown to SIGKILL of the process group. The
//! log's last FATAL line and tail are attached to failures, as information.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::process::Command;

use super::restore::POLL;
use super::settings::{auto_conf_block_over, Action, RecoverySettings};
use super::verify::ReplayEnd;
use super::{OnEvent, RecoverError, RecoverEvent};
use crate::pg::control::{ControlFile, DbState};
use crate::pg::history::TimelineHistory;
use crate::pg::{Lsn, SegNo, TimelineId, WalFileName, WalSegmentSize};
use crate::server::process::{self, PmStatus};

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

/// Refuses `port` if anything holds it: a listener on 127.0.0.1, or a
/// server's Unix socket (or its lock file, with a live process) in
/// `socket_dir`, where the new server's socket would go.
pub fn check_port(port: u16, socket_dir: &Path) -> Result<(), RecoverError> {
    match process::port_holder(port, socket_dir) {
        Some(by) => Err(RecoverError::PortInUse { port, by }),
        None => Ok(()),
    }
}

/// A free port from the kernel's ephemeral range, not held by any
/// server's Unix socket in `socket_dir` either.
pub fn free_port(socket_dir: &Path) -> Result<u16, RecoverError> {
    free_port_except(socket_dir, None)
}

/// `free_port`, never `avoid` (a port promised to another server of the
/// same run).
pub fn free_port_except(socket_dir: &Path, avoid: Option<u16>) -> Result<u16, RecoverError> {
    for _ in 0..20 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|_| RecoverError::NoPort)?;
        let port = l.local_addr().map_err(|_| RecoverError::NoPort)?.port();
        drop(l);
        if Some(port) != avoid && process::port_holder(port, socket_dir).is_none() {
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
/// recovery.signal (standby.signal for a standby), and supplies
/// postgresql.conf / pg_hba.conf when the backup had none (Debian keeps
/// them in /etc/postgresql).
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
    // What the backup brought: recovery targets of an earlier restore in
    // it are cleared by the block (settings::inherited_targets).
    let existing = match std::fs::read(&auto) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(werr(&auto)(e)),
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .map_err(werr(&auto))?;
    f.write_all(format!("\n{}", auto_conf_block_over(s, &existing)).as_bytes())
        .map_err(werr(&auto))?;
    f.sync_all().map_err(werr(&auto))?;
    // A standby waits for more WAL when the archive has no next segment;
    // archive recovery ends there.
    let signal = if s.action == Action::Standby {
        "standby.signal"
    } else {
        "recovery.signal"
    };
    super::materialize::write_synced(&pgdata.join(signal), b"")?;
    Ok(())
}

pub struct Running {
    pub pgdata: PathBuf,
    pub log: PathBuf,
    /// The postmaster, our direct child: its exit is seen at once. It runs
    /// in its own process group, so it outlives pitr and is not hit by the
    /// terminal's signals.
    pub postmaster: tokio::process::Child,
    /// Its pid, which is also its process group's id.
    pub pid: i32,
}

fn pg_ctl(bin: &Path) -> Command {
    let mut c = Command::new(bin.join("pg_ctl"));
    explicit_env(&mut c);
    c.kill_on_drop(true);
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
    let pid = postmaster
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| spawn_err(std::io::Error::other("the postmaster has no pid")))?;
    Ok(Running {
        pgdata: pgdata.to_path_buf(),
        log,
        postmaster,
        pid,
    })
}

/// How long `stop` gives each step.
pub const STOP_STEP: Duration = Duration::from_secs(60);

/// Stops the server pitr started, stepwise, each step given `step` to
/// finish: fast shutdown (SIGINT), immediate shutdown (SIGQUIT), then
/// SIGKILL to its process group (its own, see `start`) and to each of its
/// children's groups.
pub async fn stop_running(running: &mut Running, step: Duration) -> Result<(), RecoverError> {
    use nix::sys::signal::{kill, killpg, Signal};
    let pid = nix::unistd::Pid::from_raw(running.pid);
    if let Ok(Some(_)) = running.postmaster.try_wait() {
        return Ok(());
    }
    for (signal, mode) in [(Signal::SIGINT, "fast"), (Signal::SIGQUIT, "immediate")] {
        if kill(pid, signal).is_ok() && exits_within(&mut running.postmaster, step).await {
            return Ok(());
        }
        tracing::warn!(
            pid = running.pid,
            mode,
            "the server did not stop in time; escalating"
        );
    }
    // The postmaster's children each lead a group of their own (see
    // postmaster.c: signal_child): those go too, and with them whatever
    // they run (a hanging restore_command).
    let children = process::children_of(running.pid);
    let _ = killpg(pid, Signal::SIGKILL);
    for c in children {
        process::kill_group(c);
    }
    if exits_within(&mut running.postmaster, step).await {
        Ok(())
    } else {
        Err(RecoverError::StopFailed { pid: running.pid })
    }
}

async fn exits_within(child: &mut tokio::process::Child, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, child.wait()).await, Ok(Ok(_)))
}

/// Stops the server running on `pgdata` (not necessarily started by this
/// process): `pg_ctl stop` fast, then immediate, then SIGKILL of the
/// postmaster (of its process group when it leads one), each step given
/// `STOP_STEP`.
pub async fn stop(bin: &Path, pgdata: &Path) -> Result<(), RecoverError> {
    stop_dir(bin, pgdata, STOP_STEP).await
}

async fn stop_dir(bin: &Path, pgdata: &Path, step: Duration) -> Result<(), RecoverError> {
    if !pgdata.join("postmaster.pid").exists() {
        return Ok(());
    }
    let secs = step.as_secs().max(1).to_string();
    for mode in ["fast", "immediate"] {
        let run = pg_ctl(bin)
            .args(["stop", "-w", "-t", &secs, "-m", mode, "-D"])
            .arg(pgdata)
            .output();
        let limit = step + Duration::from_secs(5);
        if let Ok(Ok(out)) = tokio::time::timeout(limit, run).await {
            if out.status.success() {
                return Ok(());
            }
        }
    }
    // Only a postmaster really running on this directory: postmaster.pid
    // may be stale and its pid reused.
    let Some(pid) = process::postmaster_pid(pgdata).filter(|p| process::runs_in(*p, pgdata)) else {
        return Ok(());
    };
    let children = process::children_of(pid);
    process::kill_group(pid);
    for c in children {
        process::kill_group(c);
    }
    let started = Instant::now();
    while process::alive(pid) && process::runs_in(pid, pgdata) {
        if started.elapsed() > step {
            return Err(RecoverError::StopFailed { pid });
        }
        tokio::time::sleep(POLL).await;
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

/// The server's last FATAL or PANIC line, attached to a failure as
/// information only: nothing is decided by it (the words are translated
/// under a non-English lc_messages, and so may these markers be).
pub(crate) fn fatal_line(log: &Path) -> Option<String> {
    let mut offset = 0;
    let text = read_log_from(log, &mut offset);
    text.lines()
        .rev()
        .find(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .map(|l| l.trim().to_string())
}

/// What was seen when watching recovery ended.
pub struct Watched {
    pub timeline: Option<TimelineId>,
    /// Where replay ended (see `verify`).
    pub end: Option<ReplayEnd>,
    pub replay_lsn: Option<Lsn>,
    /// The first replay position the server told, and when: with the
    /// end, the replay rate without the server's start-up.
    pub first_replay: Option<(Lsn, Instant)>,
    pub last_commit: Option<DateTime<Utc>>,
    /// Where the server log is.
    pub log: String,
    /// Seconds from the start of watching to the first SQL connection.
    pub connected_secs: Option<f64>,
}

/// How to watch one restore.
pub struct WatchSpec<'a> {
    pub socket_dir: &'a Path,
    pub port: u16,
    pub db_user: &'a str,
    pub action: Action,
    pub fast_promote: bool,
    /// Recovery that shows no progress for this long has stalled.
    pub stall_timeout: Duration,
}

/// Asks the server to promote, as `pg_ctl promote` does: the `promote`
/// file in the data directory, then SIGUSR1 to the postmaster.
fn request_promotion(running: &Running) -> std::io::Result<()> {
    std::fs::write(running.pgdata.join("promote"), b"")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(std::io::Error::from)
}

/// One look at recovery over SQL.
struct Sample {
    in_recovery: bool,
    replay_lsn: Option<Lsn>,
    last_commit: Option<DateTime<Utc>>,
    /// `pg_get_wal_replay_pause_state()`: "not paused", "pause requested"
    /// or "paused" (13 only knows whether a pause was requested).
    pause: String,
}

/// The SQL that samples recovery on a server of version `num`.
fn sample_sql(num: i32) -> &'static str {
    if num >= 140000 {
        "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), \
         case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() else 'not paused' end"
    } else {
        "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(), \
         case when pg_is_in_recovery() and pg_is_wal_replay_paused() then 'paused' else 'not paused' end"
    }
}

fn parse_lsn(v: Option<String>) -> Option<Lsn> {
    v.and_then(|l| l.parse::<Lsn>().ok())
}

async fn sample(c: &tokio_postgres::Client, num: i32) -> Result<Sample, tokio_postgres::Error> {
    let row = c.query_one(sample_sql(num), &[]).await?;
    Ok(Sample {
        in_recovery: row.try_get(0)?,
        replay_lsn: parse_lsn(row.try_get(1)?),
        last_commit: row.try_get(2)?,
        pause: row.try_get(3)?,
    })
}

/// No single SQL round trip may hold up the watch loop (and with it the
/// deadlines) longer than this: a stopped server accepts a connection on
/// its socket and then never answers.
pub(crate) const ROUND_TRIP: Duration = Duration::from_secs(5);

pub(crate) async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs_f64())),
    }
}

/// Whether the server that answered `c` is the postmaster pitr started:
/// the backend serving us is that postmaster's child. (The system
/// identifier would not tell a restored copy from its source cluster, the
/// likeliest other server on the same socket.)
pub async fn check_identity(
    c: &tokio_postgres::Client,
    postmaster: i32,
    port: u16,
    limit: Duration,
) -> Result<Option<i32>, RecoverError> {
    let wrong = |detail: String| RecoverError::WrongServer { port, detail };
    // No answer is no evidence either way (our own server may be shutting
    // down at its target): the caller looks again.
    let Ok(row) = within(
        limit,
        c.query_one(
            "select pg_backend_pid(), current_setting('server_version_num')::int",
            &[],
        ),
    )
    .await
    else {
        return Ok(None);
    };
    let backend: i32 = row.try_get(0).map_err(|e| wrong(e.to_string()))?;
    let num: i32 = row.try_get(1).map_err(|e| wrong(e.to_string()))?;
    match process::parent_pid(backend) {
        Ok(parent) if parent == postmaster => Ok(Some(num)),
        Ok(parent) => Err(wrong(format!(
            "its backend {backend} is a child of process {parent}, not of postmaster {postmaster}"
        ))),
        // Our postmaster gone meanwhile: its backends went with it.
        Err(_) if !Path::new(&format!("/proc/{postmaster}")).exists() => Ok(None),
        Err(e) => Err(wrong(format!(
            "its backend {backend} is not a process here ({e})"
        ))),
    }
}

/// A cheap fingerprint of pg_wal's entries (names, sizes, times), without
/// pitr's own prefetch spool: it changes as restore_command delivers
/// segments and as the server writes WAL.
pub(crate) fn pg_wal_signature(pgdata: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(rd) = std::fs::read_dir(pgdata.join("pg_wal")) {
        let mut seen: Vec<(String, u64, Option<std::time::SystemTime>)> = rd
            .flatten()
            .filter(|e| e.file_name() != "pitr-spool")
            .map(|e| {
                let meta = e.metadata().ok();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    meta.as_ref().map(|m| m.len()).unwrap_or(0),
                    meta.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        seen.sort();
        seen.hash(&mut h);
    }
    h.finish()
}

/// The WAL segment the startup process reads or waits for, from its
/// process title: `postgres: [cluster_name: ]startup recovering <segment>`
/// (xlogrecovery.c: XLogFileRead; `startup process   recovering` before
/// 13) or `… startup waiting for <segment>` (while restore_command fetches
/// it). The title is not translated; it is absent with
/// `update_process_title = off`.
fn title_segment(title: &str, size: WalSegmentSize) -> Option<SegNo> {
    let title = title.split('\0').next()?.trim_end();
    let (_, rest) = title.split_once("startup ")?;
    // Before 13: "startup process   recovering …".
    let rest = rest.strip_prefix("process").unwrap_or(rest).trim_start();
    let name = rest
        .strip_prefix("recovering ")
        .or_else(|| rest.strip_prefix("waiting for "))?;
    match WalFileName::parse(name.trim()) {
        Ok(WalFileName::Segment(seg)) => seg.segno(size).ok(),
        _ => None,
    }
}

/// Where replay is, before the server can say over SQL (it accepts
/// connections only once consistent): past the start of the segment
/// before the one the startup process reads (`title_segment`), since the
/// reader decodes ahead of replay by at most wal_decode_buffer_size (512
/// kB by default, 15+), less than the smallest segment. A lower bound,
/// for progress only. `startup` caches the startup process's pid.
fn startup_position(
    postmaster: i32,
    startup: &mut Option<i32>,
    size: WalSegmentSize,
) -> Option<Lsn> {
    let title = |pid: i32| std::fs::read(format!("/proc/{pid}/cmdline")).ok();
    let read = |pid: i32| {
        title(pid)
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .filter(|t| t.contains("startup"))
    };
    let text = match startup.and_then(read) {
        Some(t) => t,
        None => {
            let kids =
                std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children"))
                    .map(|s| {
                        s.split_whitespace()
                            .filter_map(|p| p.parse().ok())
                            .collect()
                    })
                    .unwrap_or_else(|_| process::children_of(postmaster));
            let (pid, t) = kids
                .into_iter()
                .find_map(|p: i32| read(p).map(|t| (p, t)))?;
            *startup = Some(pid);
            t
        }
    };
    let seg = title_segment(&text, size)?;
    Some(SegNo::new(seg.get().saturating_sub(1)).start_lsn(size))
}

/// When anything that shows recovery moving last changed.
pub(crate) struct Progress {
    seen: Option<(u64, u64, String)>,
    pub(crate) since: Instant,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            seen: None,
            since: Instant::now(),
        }
    }

    pub(crate) fn note(&mut self, now: (u64, u64, String)) {
        if self.seen.as_ref() != Some(&now) {
            self.seen = Some(now);
            self.since = Instant::now();
        }
    }
}

fn read_control(pgdata: &Path) -> Result<ControlFile, String> {
    let path = pgdata.join("global").join("pg_control");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    ControlFile::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the newest timeline `tli` began: the switch point its history
/// file records, which is where recovery ended (xlog.c: StartupXLOG writes
/// EndOfLog there, see timeline.c: writeTimeLineHistory).
pub fn switch_point(pgdata: &Path, tli: TimelineId) -> Result<Lsn, RecoverError> {
    let path = pgdata
        .join("pg_wal")
        .join(format!("{:08X}.history", tli.get()));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RecoverError::EndUnknown(format!("{}: {e}", path.display())))?;
    let history =
        TimelineHistory::parse(tli, &text).map_err(|e| RecoverError::EndUnknown(e.to_string()))?;
    history
        .entries()
        .last()
        .map(|e| e.switchpoint)
        .ok_or_else(|| RecoverError::EndUnknown(format!("{} has no entries", path.display())))
}

/// Waits for recovery to reach the target and the action to complete,
/// watching only what does not depend on the server's language: the
/// postmaster's exit status, `postmaster.pid`, pg_control, pg_wal and SQL
/// (replay position, pause state, recovery state). Fails when the server
/// exits otherwise, or when nothing moves for `spec.stall_timeout`.
pub async fn watch(
    running: &mut Running,
    spec: &WatchSpec<'_>,
    on_event: OnEvent,
) -> Result<Watched, RecoverError> {
    let mut cfg = socket_config(spec.socket_dir, spec.port, spec.db_user);
    cfg.application_name("pitr restore");
    let round_trip = ROUND_TRIP.min(spec.stall_timeout);
    let log = running.log.display().to_string();
    let start = Instant::now();
    let mut client: Option<(tokio_postgres::Client, i32)> = None;
    let mut connected_secs = None;
    let mut promote_requested = false;
    let mut last_lsn: Option<Lsn> = None;
    let mut first_replay = None;
    // Before SQL answers: the startup process's title (`startup_position`).
    let size = read_control(&running.pgdata)
        .ok()
        .map(|c| c.wal_segment_size);
    let mut startup_pid = None;
    let mut titled: Option<Lsn> = None;
    let mut last_commit = None;
    let mut progress = Progress {
        seen: None,
        since: Instant::now(),
    };
    loop {
        match running.postmaster.try_wait() {
            Ok(Some(status)) => {
                return exited(running, spec.action, status, last_lsn, last_commit)
                    .map(|w| Watched { first_replay, ..w })
            }
            Ok(None) => {}
            Err(e) => {
                return Err(RecoverError::ServerFailed {
                    fatal: format!("cannot wait for the postmaster: {e}"),
                    log,
                    tail: log_tail(&running.log, 25),
                })
            }
        }
        let pm = process::pm_status(&running.pgdata);
        let mut state = match pm {
            Some(s) => format!("the postmaster reports {}", s.as_str()),
            None => "the postmaster reports no status yet".to_string(),
        };
        // Connecting only once the postmaster says it accepts connections
        // keeps refused attempts out of the log, and with them any doubt
        // that a growing log is the server's own progress.
        if client.is_none() && matches!(pm, Some(PmStatus::Standby | PmStatus::Ready)) {
            match tokio::time::timeout(round_trip, cfg.connect(tokio_postgres::NoTls)).await {
                Ok(Ok((c, conn))) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    if let Some(num) =
                        check_identity(&c, running.pid, spec.port, round_trip).await?
                    {
                        client = Some((c, num));
                        connected_secs.get_or_insert(start.elapsed().as_secs_f64());
                    }
                }
                Ok(Err(e)) => {
                    // An authentication refusal will not go away (by its
                    // SQLSTATE: the message is in the server's language).
                    if let Some(db) = e.as_db_error() {
                        let code = db.code().code();
                        if code == "28000" || code == "28P01" {
                            return Err(RecoverError::ServerFailed {
                                fatal: format!(
                                    "cannot connect as {} to watch recovery: {} (pass --db-user, or allow local connections for it in pg_hba.conf)",
                                    spec.db_user,
                                    db.message()
                                ),
                                log,
                                tail: log_tail(&running.log, 10),
                            });
                        }
                    }
                }
                Err(_) => {} // no answer in time: the stall deadline decides
            }
        }
        if let (None, Some(size)) = (&client, size) {
            let at = startup_position(running.pid, &mut startup_pid, size);
            if at.is_some_and(|l| Some(l) > titled) {
                titled = at;
                if let Some(lsn) = at {
                    on_event(RecoverEvent::Replaying {
                        lsn,
                        at: Instant::now(),
                    });
                }
            }
        }
        if let Some((c, num)) = &client {
            match within(round_trip, sample(c, *num)).await {
                Ok(s) => {
                    if let Some(l) = s.replay_lsn {
                        let at = Instant::now();
                        on_event(RecoverEvent::Replaying { lsn: l, at });
                        first_replay.get_or_insert((l, at));
                        last_lsn = Some(l);
                    }
                    last_commit = s.last_commit.or(last_commit);
                    state = format!(
                        "{}, replay {}",
                        if s.in_recovery {
                            "in recovery"
                        } else {
                            "promoted"
                        },
                        s.pause
                    );
                    let paused = s.in_recovery && s.pause == "paused";
                    if spec.fast_promote && !promote_requested && s.in_recovery {
                        // Still replaying: a promote request now is acted on
                        // the moment replay pauses at the target, with no
                        // end-of-recovery checkpoint. Already paused there:
                        // resuming is quicker than the pause loop's 1 s
                        // wake-up for a late request (the checkpoint is the
                        // usual one). The request is what `pg_ctl promote`
                        // does, so it needs no SQL privilege; resuming does,
                        // and falls back to the request.
                        let resumed = paused
                            && within(round_trip, c.query("select pg_wal_replay_resume()", &[]))
                                .await
                                .is_ok();
                        promote_requested = resumed || request_promotion(running).is_ok();
                    }
                    let end = match spec.action {
                        Action::Promote if !s.in_recovery => {
                            let tli = query_timeline(c, false).await.ok_or_else(|| {
                                RecoverError::EndUnknown(
                                    "the promoted server does not say its timeline".into(),
                                )
                            })?;
                            Some((
                                Some(tli),
                                ReplayEnd::Exact(switch_point(&running.pgdata, tli)?),
                            ))
                        }
                        Action::Pause if paused => {
                            // Re-read: the sample's position was taken before
                            // its pause state.
                            let lsn = within(
                                round_trip,
                                c.query_one("select pg_last_wal_replay_lsn()::text", &[]),
                            )
                            .await
                            .ok()
                            .and_then(|r| parse_lsn(r.try_get(0).ok().flatten()))
                            .ok_or_else(|| {
                                RecoverError::EndUnknown(
                                    "the paused server does not say its replay position".into(),
                                )
                            })?;
                            last_lsn = Some(lsn);
                            Some((query_timeline(c, true).await, ReplayEnd::Exact(lsn)))
                        }
                        _ => None,
                    };
                    if let Some((timeline, end)) = end {
                        return Ok(Watched {
                            timeline,
                            end: Some(end),
                            replay_lsn: last_lsn,
                            first_replay,
                            last_commit,
                            log,
                            connected_secs,
                        });
                    }
                }
                Err(_) => client = None,
            }
        }
        let log_len = std::fs::metadata(&running.log)
            .map(|m| m.len())
            .unwrap_or(0);
        progress.note((
            log_len,
            pg_wal_signature(&running.pgdata),
            format!("{state} {last_lsn:?}"),
        ));
        if progress.since.elapsed() >= spec.stall_timeout {
            return Err(RecoverError::Stalled {
                secs: spec.stall_timeout.as_secs(),
                state: match last_lsn {
                    Some(l) => format!("{state}, last replayed {l}"),
                    None => state,
                },
                log,
                tail: log_tail(&running.log, 25),
            });
        }
        // Connected, a query costs the server next to nothing: look often,
        // so the end of recovery is seen within milliseconds.
        let pause = if client.is_some() {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(50)
        };
        tokio::time::sleep(pause).await;
    }
}

/// The postmaster exited while watched: a success only for `--action
/// shutdown`, when it exited cleanly and pg_control says "shut down in
/// recovery" (xlog.c: CreateRestartPoint at shutdown). Replay then ended
/// at or after pg_control's minimum recovery point and the last replay
/// position seen over SQL.
pub(crate) fn exited(
    running: &Running,
    action: Action,
    status: std::process::ExitStatus,
    last_lsn: Option<Lsn>,
    last_commit: Option<DateTime<Utc>>,
) -> Result<Watched, RecoverError> {
    let control = read_control(&running.pgdata);
    if let (Action::Shutdown, true, Ok(c)) = (action, status.success(), &control) {
        if c.state == DbState::ShutdownedInRecovery {
            let end = last_lsn.map_or(c.min_recovery_point, |l| l.max(c.min_recovery_point));
            return Ok(Watched {
                timeline: TimelineId::new(c.min_recovery_point_tli)
                    .ok()
                    .or(Some(c.checkpoint_timeline)),
                end: Some(ReplayEnd::AtLeast(end)),
                replay_lsn: last_lsn,
                first_replay: None,
                last_commit,
                log: running.log.display().to_string(),
                connected_secs: None,
            });
        }
    }
    let state = match &control {
        Ok(c) => format!("pg_control says {}", c.state),
        Err(e) => e.clone(),
    };
    Err(RecoverError::ServerFailed {
        fatal: format!(
            "postgres exited ({status}; {state}){}",
            fatal_line(&running.log)
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ),
        log: running.log.display().to_string(),
        tail: log_tail(&running.log, 25),
    })
}

pub(crate) async fn query_timeline(
    c: &tokio_postgres::Client,
    in_recovery: bool,
) -> Option<TimelineId> {
    let q = if in_recovery {
        "select timeline_id::int from pg_control_checkpoint()"
    } else {
        "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
    };
    let row = within(ROUND_TRIP, c.query_one(q, &[])).await.ok()?;
    let v: i32 = row.try_get(0).ok()?;
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
    let cfg = socket_config(socket_dir, port, db_user);
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = running.postmaster.try_wait() {
            return Err(RecoverError::ServerFailed {
                fatal: format!(
                    "postgres exited at start ({status}){}",
                    fatal_line(&running.log)
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default()
                ),
                log: running.log.display().to_string(),
                tail: log_tail(&running.log, 20),
            });
        }
        if process::pm_status(&running.pgdata) == Some(PmStatus::Ready) {
            if let Ok((c, conn)) = within(ROUND_TRIP, cfg.connect(tokio_postgres::NoTls)).await {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                if check_identity(&c, running.pid, port, ROUND_TRIP)
                    .await?
                    .is_some()
                {
                    return Ok(());
                }
            }
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

/// How pitr connects to a server it started: its Unix socket, database
/// `postgres`, as `db_user`, within a round trip.
pub fn socket_config(socket_dir: &Path, port: u16, db_user: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(db_user)
        .dbname("postgres")
        .connect_timeout(ROUND_TRIP);
    cfg
}

/// `server_version` of a running server.
pub async fn query_version(socket_dir: &Path, port: u16, db_user: &str) -> Option<String> {
    let cfg = socket_config(socket_dir, port, db_user);
    let (c, conn) = within(ROUND_TRIP, cfg.connect(tokio_postgres::NoTls))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    within(ROUND_TRIP, c.query_one("show server_version", &[]))
        .await
        .ok()?
        .try_get(0)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in "postmaster" that ignores fast and immediate shutdown
    /// (SIGINT, SIGQUIT) and has a child of its own: stopping it escalates
    /// to SIGKILL of its process group, within the step deadlines.
    #[tokio::test]
    async fn a_stop_that_does_not_finish_escalates_to_killing_the_group() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "trap '' INT QUIT; sleep 600 & wait; wait"])
            .process_group(0)
            .kill_on_drop(false);
        let (_d, mut running, pid) = stand_in(&mut c);
        // The grandchild exists before we stop.
        let started = Instant::now();
        while std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)
        {
            assert!(started.elapsed() < Duration::from_secs(10), "no child");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let grandchild: i32 = kids.split_whitespace().next().unwrap().parse().unwrap();
        let step = Duration::from_millis(300);
        let started = Instant::now();
        stop_running(&mut running, step).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= step * 2,
            "fast and immediate were each given their step: {took:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        // The rest of its group went with it: gone, or a zombie waiting
        // for init to reap it.
        let gone = |p: i32| {
            !process::alive(p)
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        };
        let started = Instant::now();
        while !gone(grandchild) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the group's other process survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts `c` as a stand-in postmaster in a fresh directory: the
    /// directory (kept while it lives), its `Running`, and its pid.
    fn stand_in(c: &mut Command) -> (tempfile::TempDir, Running, i32) {
        let child = c.spawn().unwrap();
        let pid = i32::try_from(child.id().unwrap()).unwrap();
        let d = tempfile::tempdir().unwrap();
        let running = Running {
            pgdata: d.path().to_path_buf(),
            log: d.path().join(LOG_NAME),
            postmaster: child,
            pid,
        };
        (d, running, pid)
    }

    /// The child starts with the default action for the signals a stop
    /// sends, whatever the test runner inherited: a job started by nohup,
    /// or in the background of a shell without job control, ignores
    /// SIGINT and SIGQUIT, and an ignored signal stays ignored across exec
    /// (a real postmaster installs its own handlers; `sleep` does not).
    fn default_signals(c: &mut Command) {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; signal(2) is one.
        unsafe {
            c.pre_exec(|| {
                for s in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM] {
                    signal(s, SigHandler::SigDfl).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
    }

    #[tokio::test]
    async fn a_server_that_stops_at_once_is_not_signalled_further() {
        let mut c = Command::new("sleep");
        c.arg("600").process_group(0);
        default_signals(&mut c);
        let (_d, mut running, _) = stand_in(&mut c);
        let started = Instant::now();
        stop_running(&mut running, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_startup_process_title_names_the_segment_it_reads() {
        let mib16 = WalSegmentSize::new(16 << 20).unwrap();
        let seg = |t: &str| title_segment(t, mib16).map(|s| s.get());
        assert_eq!(
            seg("postgres: startup recovering 00000001000000000000002A"),
            Some(0x2A)
        );
        // 16 MiB segments: 256 a log file; the title's padding (NULs).
        assert_eq!(
            seg("postgres: startup waiting for 000000020000000300000011\0\0\0"),
            Some(0x311)
        );
        assert_eq!(
            seg("postgres: main: startup recovering 000000010000000000000003   "),
            Some(3)
        );
        assert_eq!(
            seg("postgres: startup process   recovering 000000010000000000000004"),
            Some(4)
        );
        // A name no segment of this size has.
        assert_eq!(
            seg("postgres: startup recovering 000000010000000000000100"),
            None
        );
        for none in [
            "postgres: startup ",
            "postgres: startup recovering 00000002.history",
            "postgres: checkpointer ",
            "postgres: startup waiting for 000000010000000000000003.partial",
            "",
        ] {
            assert_eq!(seg(none), None, "{none:?}");
        }
    }

    /// A stand-in startup process (its argv[0] set as Postgres sets its
    /// title) under a stand-in postmaster: the position is the start of
    /// the segment before the one it reads.
    #[tokio::test]
    async fn replay_is_past_the_segment_before_the_one_the_startup_process_reads() {
        let mut c = Command::new("/bin/bash");
        c.args([
            "-c",
            "(exec -a 'postgres: startup recovering 000000010000000000000005' sleep 600) & wait",
        ])
        .process_group(0)
        .kill_on_drop(true);
        default_signals(&mut c);
        let (_d, mut running, pid) = stand_in(&mut c);
        let size = WalSegmentSize::new(1 << 20).unwrap();
        let mut startup = None;
        let started = Instant::now();
        let at = loop {
            if let Some(l) = startup_position(pid, &mut startup, size) {
                break l;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no startup process seen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(at, Lsn::new(4 << 20));
        // The pid is kept, and read again next time.
        let kept = startup.expect("the startup pid");
        assert_eq!(startup_position(pid, &mut startup, size), Some(at));
        assert_eq!(startup, Some(kept));
        process::kill_group(pid);
        let _ = running.postmaster.wait().await;
    }

    #[test]
    fn pg_wal_signature_ignores_the_spool() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("pg_wal/pitr-spool")).unwrap();
        let a = pg_wal_signature(d.path());
        std::fs::write(d.path().join("pg_wal/pitr-spool/x"), b"1").unwrap();
        assert_eq!(a, pg_wal_signature(d.path()));
        std::fs::write(d.path().join("pg_wal/RECOVERYXLOG"), b"1").unwrap();
        assert_ne!(a, pg_wal_signature(d.path()));
    }

    #[test]
    fn the_end_of_recovery_is_the_new_timelines_switch_point() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("pg_wal")).unwrap();
        std::fs::write(
            d.path().join("pg_wal/00000003.history"),
            "1\t0/3000158\tno recovery target specified\n\n2\t0/5000A28\tbefore transaction 742\n",
        )
        .unwrap();
        let tli = TimelineId::new(3).unwrap();
        assert_eq!(
            switch_point(d.path(), tli).unwrap(),
            "0/5000A28".parse::<Lsn>().unwrap()
        );
        let err = switch_point(d.path(), TimelineId::new(4).unwrap()).unwrap_err();
        assert!(err.to_string().contains("00000004.history"), "{err}");
    }
}
