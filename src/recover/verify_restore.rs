//! `pitr verify --restore`: proves a repository restores by doing it. The
//! newest backup (or the plan for `--to`) is restored with the library's
//! own restore (`run::restore`: the same planning, install selection and
//! restore as `pitr restore`, so its `RestoreTiming` feeds the cost model)
//! into a scratch directory, promoted, and checked while it runs:
//! `pg_amcheck --all --heapallindexed` (every heap relation's pages and
//! every btree index of every database, with the `amcheck` extension
//! created on the scratch server only) when the install has it; then,
//! after a fast shutdown, `pg_checksums --check` (every page of every
//! relation file) when data checksums are on. Reports the time to the
//! first accepted connection and to the end of the checks. The scratch
//! server is always stopped and the scratch directory always removed: on
//! success, on failure and on Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use crate::catalog::{VerifyKind, VerifyResult};
use crate::plan::{RecoveryTarget, StartFilter, TargetSpec, TimelineChoice};
use crate::repo::Repo;

use super::install::Search;
use super::run::{self, PlanOptions, RunError, RunOptions};
use super::verify_repo::{Finding, FindingKind};
use super::{Action, OnEvent};

#[derive(Debug, thiserror::Error)]
pub enum RestoreCheckError {
    #[error(transparent)]
    Run(Box<RunError>),
    #[error("cannot prepare the scratch directory {path}")]
    Scratch {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the scratch server at {dir} accepts no connection: {reason}")]
    Connect { dir: String, reason: String },
    #[error("running {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted: the scratch server was stopped and its directory removed")]
    Interrupted,
}

impl From<RunError> for RestoreCheckError {
    fn from(e: RunError) -> Self {
        RestoreCheckError::Run(Box::new(e))
    }
}

/// What `verify --restore` restores and where.
#[derive(Debug, Clone)]
pub struct RestoreCheckOptions {
    /// `None`: the newest restorable point (`--latest`); else `--to`.
    pub to: Option<chrono::DateTime<Utc>>,
    pub search: Search,
    /// A directory of the restore's own (created by the caller, owned by
    /// the user the server runs as, empty): the data directory and the
    /// server's socket go in it, and it is removed at the end.
    pub scratch: PathBuf,
    pub db_user: String,
    pub jobs: usize,
    pub stall_timeout: Duration,
}

/// What `pg_amcheck` did.
#[derive(Debug, Clone, Serialize)]
pub struct AmcheckOutcome {
    /// Whether the install has `pg_amcheck`.
    pub available: bool,
    pub ran: bool,
    pub ok: bool,
    /// What was checked, in words (or why nothing was).
    pub checked: String,
    pub databases: Vec<String>,
    /// The end of its output when it found something.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// What `pg_checksums --check` did (data checksums on only).
#[derive(Debug, Clone, Serialize)]
pub struct ChecksumsOutcome {
    pub ran: bool,
    pub ok: bool,
    pub checked: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreCheckReport {
    pub repository: String,
    pub ok: bool,
    pub problems: Vec<Finding>,
    pub backup_id: String,
    pub target: RecoveryTarget,
    pub pg_bin: String,
    /// From the start of the restore to the first connection the scratch
    /// server accepted, and to the end of the checks.
    pub time_to_usable_seconds: f64,
    pub time_to_checked_seconds: f64,
    /// What the restore itself reported (`pitr restore --json`'s
    /// `elapsed_seconds` and `estimated_seconds`).
    pub restore_seconds: f64,
    pub estimated_seconds: f64,
    pub data_checksums: Option<bool>,
    pub amcheck: AmcheckOutcome,
    pub checksums: Option<ChecksumsOutcome>,
    /// The scratch directory, removed.
    pub scratch: String,
    pub scratch_removed: bool,
}

/// Restores, starts, checks, stops and removes (see the module comment).
pub async fn verify_restore(
    repo: &Repo,
    opts: &RestoreCheckOptions,
    on_event: OnEvent,
) -> Result<RestoreCheckReport, RestoreCheckError> {
    let pgdata = opts.scratch.join("data");
    let work = restore_and_check(repo, opts, &pgdata, on_event);
    let out = tokio::select! {
        out = work => out,
        _ = tokio::signal::ctrl_c() => Err(RestoreCheckError::Interrupted),
    };
    // Whatever happened: no server left on the scratch copy (the restore
    // stops its own on failure; this catches an interrupted one), and no
    // scratch copy left.
    kill_leftover_server(&pgdata);
    let removed = remove_scratch(&opts.scratch);
    out.map(|mut r| {
        r.scratch_removed = removed;
        r
    })
}

async fn restore_and_check(
    repo: &Repo,
    opts: &RestoreCheckOptions,
    pgdata: &Path,
    on_event: OnEvent,
) -> Result<RestoreCheckReport, RestoreCheckError> {
    let started = Instant::now();
    let target = match opts.to {
        Some(t) => RecoveryTarget::Time(t),
        None => RecoveryTarget::Latest,
    };
    let run_opts = RunOptions {
        plan: PlanOptions {
            target: TargetSpec {
                target: target.clone(),
                inclusive: true,
                timeline: TimelineChoice::Latest,
                from: StartFilter::Any,
            },
            restore_rate: None,
            replay_rate: None,
            search: opts.search.clone(),
        },
        pgdata: pgdata.to_path_buf(),
        // Tablespaces go back to their original places: a cluster whose
        // tablespace directories are in use there is refused (not yet
        // mapped into the scratch directory).
        tablespace_map: Vec::new(),
        port: None,
        socket_dir: Some(opts.scratch.clone()),
        action: Action::Promote,
        db_user: opts.db_user.clone(),
        jobs: opts.jobs,
        start: true,
        stall_timeout: opts.stall_timeout,
        created_dir: None,
        primary_conninfo: None,
        archive: None,
    };
    let restored = run::restore(repo, &run_opts, on_event).await?;
    let bin = restored.bin_dir.clone();
    let port = restored.outcome.port;
    let checked = check_running(&opts.scratch, port, &opts.db_user, &bin).await;
    let time_to_usable = started.elapsed().as_secs_f64();
    // Stopped before anything else happens to the result.
    let stopped = super::instance::stop(&bin, pgdata).await;
    let (usable_at, data_checksums, databases, mut amcheck) = checked?;
    let time_to_usable =
        usable_at.map_or(time_to_usable, |t| t.duration_since(started).as_secs_f64());
    if let Err(e) = stopped {
        tracing::warn!(error = %e, "could not stop the scratch server cleanly");
    }
    amcheck.databases = databases;
    let mut problems = Vec::new();
    if amcheck.ran && !amcheck.ok {
        problems.push(Finding::new(
            FindingKind::AmcheckFailed,
            restored.outcome.backup_id.clone(),
            format!(
                "pg_amcheck found corruption in the restored copy of backup {}: {}; the backup (or WAL replayed onto it) holds damaged data: take a new backup and check the primary",
                restored.outcome.backup_id,
                last_line(&amcheck.output)
            ),
        ));
    }
    let checksums = if data_checksums == Some(true) {
        let c = pg_checksums(&bin, pgdata).await?;
        if c.ran && !c.ok {
            problems.push(Finding::new(
                FindingKind::ChecksumFailed,
                restored.outcome.backup_id.clone(),
                format!(
                    "pg_checksums found pages whose data checksum fails in the restored copy of backup {}: {}; take a new backup and check the primary",
                    restored.outcome.backup_id,
                    last_line(&c.output)
                ),
            ));
        }
        Some(c)
    } else {
        None
    };
    Ok(RestoreCheckReport {
        repository: repo.location().to_arg(),
        ok: problems.is_empty(),
        problems,
        backup_id: restored.outcome.backup_id.clone(),
        target,
        pg_bin: bin.display().to_string(),
        time_to_usable_seconds: time_to_usable,
        time_to_checked_seconds: started.elapsed().as_secs_f64(),
        restore_seconds: restored.outcome.elapsed_seconds,
        estimated_seconds: restored.outcome.estimated_seconds,
        data_checksums,
        amcheck,
        checksums,
        scratch: opts.scratch.display().to_string(),
        scratch_removed: false,
    })
}

type Running = (Option<Instant>, Option<bool>, Vec<String>, AmcheckOutcome);

/// Connects (the first accepted connection is "usable"), reads whether
/// data checksums are on, and runs pg_amcheck over every database that
/// takes connections.
async fn check_running(
    socket_dir: &Path,
    port: u16,
    db_user: &str,
    bin: &Path,
) -> Result<Running, RestoreCheckError> {
    let dir = socket_dir.display().to_string();
    let connect_err = |reason: String| RestoreCheckError::Connect {
        dir: dir.clone(),
        reason,
    };
    let cfg = super::instance::socket_config(socket_dir, port, db_user);
    let client = connect(&cfg).await.map_err(&connect_err)?;
    let usable = Instant::now();
    let checksums = client
        .query_one("SHOW data_checksums", &[])
        .await
        .ok()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .map(|v| v == "on");
    let databases: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| connect_err(e.to_string()))?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect();
    let program = bin.join("pg_amcheck");
    if !program.is_file() {
        return Ok((
            Some(usable),
            checksums,
            databases,
            AmcheckOutcome {
                available: false,
                ran: false,
                ok: true,
                checked: format!("amcheck: not available in {}", bin.display()),
                databases: Vec::new(),
                output: String::new(),
            },
        ));
    }
    // pg_amcheck needs the extension in each database it checks: created
    // here, on the scratch copy only.
    for db in &databases {
        let mut c = cfg.clone();
        c.dbname(db);
        let client = connect(&c).await.map_err(&connect_err)?;
        if let Err(e) = client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            .await
        {
            return Ok((
                Some(usable),
                checksums,
                databases.clone(),
                AmcheckOutcome {
                    available: true,
                    ran: false,
                    ok: true,
                    checked: format!(
                        "amcheck: the amcheck extension cannot be created in {db} ({e}): install the contrib package of {}",
                        bin.display()
                    ),
                    databases: Vec::new(),
                    output: String::new(),
                },
            ));
        }
    }
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(["--all", "--heapallindexed", "--no-password"])
        .arg("--host")
        .arg(socket_dir)
        .arg("--port")
        .arg(port.to_string())
        .arg("--username")
        .arg(db_user);
    let (out, text) = run_tool(cmd, &program).await?;
    Ok((
        Some(usable),
        checksums,
        databases.clone(),
        AmcheckOutcome {
            available: true,
            ran: true,
            ok: out.status.success(),
            checked: format!(
                "pg_amcheck --all --heapallindexed: every page of every table, materialized view and TOAST table, and every btree index (each index entry matched against its table) in {} database(s){}",
                databases.len(),
                if checksums == Some(true) {
                    "; reading each page also verified its data checksum"
                } else {
                    ""
                }
            ),
            databases: Vec::new(),
            output: tail(&text, 40),
        },
    ))
}

/// The first connection the server accepts, within a minute (the restore
/// returned once it was ready; this only rides out a slow socket).
async fn connect(cfg: &tokio_postgres::Config) -> Result<tokio_postgres::Client, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match cfg.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return Ok(client);
            }
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `pg_checksums --check` of the stopped scratch copy: every page of every
/// relation file, all forks.
async fn pg_checksums(bin: &Path, pgdata: &Path) -> Result<ChecksumsOutcome, RestoreCheckError> {
    let program = bin.join("pg_checksums");
    if !program.is_file() {
        return Ok(ChecksumsOutcome {
            ran: false,
            ok: true,
            checked: format!("pg_checksums: not available in {}", bin.display()),
            output: String::new(),
        });
    }
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg("--check").arg("-D").arg(pgdata);
    let (out, text) = run_tool(cmd, &program).await?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    Ok(ChecksumsOutcome {
        ran: true,
        ok: out.status.success(),
        checked: format!(
            "pg_checksums --check after a clean shutdown: every page of every relation file (all forks): {} files, {} blocks, {} bad",
            field("Files scanned:"),
            field("Blocks scanned:"),
            field("Bad checksums:")
        ),
        output: if out.status.success() {
            String::new()
        } else {
            tail(&text, 40)
        },
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
}

/// A server still running on the scratch copy (an interrupted restore):
/// SIGKILL of its process group. It is a throwaway copy; nothing of it
/// is kept.
fn kill_leftover_server(pgdata: &Path) {
    if let Some(pid) = crate::server::process::postmaster_pid(pgdata) {
        if crate::server::process::runs_in(pid, pgdata) {
            crate::server::process::kill_group(pid);
        }
    }
}

/// Removes the scratch directory; whether it is gone.
fn remove_scratch(dir: &Path) -> bool {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "could not remove the scratch copy");
            false
        }
    }
}

/// Creates an empty scratch directory under the temporary directory
/// (`TMPDIR`, else /tmp), 0700, given to `owner` (uid, gid) when set.
pub fn create_scratch(owner: Option<(u32, u32)>) -> Result<PathBuf, RestoreCheckError> {
    let tmp = std::env::temp_dir();
    let err = |source| RestoreCheckError::Scratch {
        path: tmp.display().to_string(),
        source,
    };
    let dir = tempfile::Builder::new()
        .prefix("pitr-verify-")
        .tempdir_in(&tmp)
        .map_err(err)?
        .keep();
    if let Some((uid, gid)) = owner {
        if let Err(source) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
            let _ = std::fs::remove_dir(&dir);
            return Err(RestoreCheckError::Scratch {
                path: dir.display().to_string(),
                source,
            });
        }
    }
    Ok(dir)
}

/// The result record of a restore check.
pub fn restore_result(report: &RestoreCheckReport) -> VerifyResult {
    VerifyResult {
        at: Utc::now(),
        kind: VerifyKind::Restore,
        ok: report.ok,
        problems: report.problems.len() as u64,
        objects_checked: 0,
        bytes_checked: 0,
        backup_id: Some(report.backup_id.clone()),
        time_to_usable_seconds: Some(report.time_to_usable_seconds),
        time_to_checked_seconds: Some(report.time_to_checked_seconds),
        pitr_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// A failed `--restore` as a result record (so "last verify result"
/// shows the failure too).
pub fn failed_result() -> VerifyResult {
    VerifyResult {
        at: Utc::now(),
        kind: VerifyKind::Restore,
        ok: false,
        problems: 1,
        objects_checked: 0,
        bytes_checked: 0,
        backup_id: None,
        time_to_usable_seconds: None,
        time_to_checked_seconds: None,
        pitr_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Runs a check program of the install to the end (killed if this run is
/// dropped); its output and what it printed, stdout then stderr.
async fn run_tool(
    mut cmd: tokio::process::Command,
    program: &Path,
) -> Result<(std::process::Output, String), RestoreCheckError> {
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| RestoreCheckError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_and_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(last_line("x\nerror: bad page\n\n"), "error: bad page");
        assert_eq!(last_line(""), "no output");
    }

    #[test]
    fn scratch_directories_are_made_and_removed() {
        let d = create_scratch(None).unwrap();
        assert!(d.is_dir());
        std::fs::create_dir(d.join("data")).unwrap();
        std::fs::write(d.join("data/f"), "x").unwrap();
        assert!(remove_scratch(&d));
        assert!(!d.exists());
        assert!(remove_scratch(&d), "already gone is removed");
    }
}
