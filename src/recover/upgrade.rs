//! `rollback --upgrade-to DIR`: past a physical restore, move the data into
//! a newer major. A physical backup only restores onto its own major, so the
//! route is: restore onto a matching install at the target (promoted), then
//! `pg_dumpall | psql` into a fresh cluster of the newer install, then stop
//! and remove the physical copy, leaving the new major's server running.
//! The new cluster gets the restored copy's `pg_hba.conf`, so the same
//! clients are let in.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Serialize;
use tokio::process::Command;

use super::instance::{self, LOG_NAME};
use super::{RecoverError, RestoreOutcome};

/// What a finished upgrade reports.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeOutcome {
    pub data_directory: String,
    pub port: u16,
    pub socket_directory: String,
    pub server_version: String,
    /// The physical restore the data came from (removed afterwards).
    pub restored_from: RestoreOutcome,
    pub dump_tool: String,
    pub elapsed_seconds: f64,
    pub server_log: String,
    pub connect: String,
}

/// Where `pg_dumpall` and `psql` come from: the newer install, else the
/// restored one's, else PATH (pg_dumpall of a newer major reads older
/// servers; plain SQL loads into any newer server).
fn dump_tools(candidates: &[&Path]) -> Result<PathBuf, RecoverError> {
    for dir in candidates {
        if dir.join("pg_dumpall").is_file() && dir.join("psql").is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    if let (Ok(d), Ok(_)) = (which::which("pg_dumpall"), which::which("psql")) {
        if let Some(dir) = d.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    Err(RecoverError::Spawn {
        program: "pg_dumpall".into(),
        reason: "no pg_dumpall and psql found (looked in the new install, the restored one and PATH): install the PostgreSQL client tools".into(),
    })
}

fn run_err(program: &str) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |e| RecoverError::Spawn {
        program: program.to_string(),
        reason: e.to_string(),
    }
}

/// Runs the upgrade. `physical` is the finished physical restore (its
/// server running); `new_pgdata` must be new or empty; the new server
/// listens on `port` (`--port`), else on a free one.
pub async fn upgrade(
    physical: &RestoreOutcome,
    physical_bin: &Path,
    target_bin: &Path,
    new_pgdata: &Path,
    port: Option<u16>,
    db_user: &str,
) -> Result<UpgradeOutcome, RecoverError> {
    let started = std::time::Instant::now();
    let tools = dump_tools(&[target_bin, physical_bin])?;
    let physical_dir = PathBuf::from(&physical.data_directory);
    let socket_dir = PathBuf::from(&physical.socket_directory);

    // A fresh cluster of the newer major, admitting whom the old one did.
    let out = Command::new(target_bin.join("initdb"))
        .arg("-D")
        .arg(new_pgdata)
        .args(["-U", db_user, "-A", "trust", "--no-sync"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(run_err("initdb"))?;
    if !out.status.success() {
        return Err(RecoverError::Spawn {
            program: target_bin.join("initdb").display().to_string(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if let Ok(hba) = std::fs::read(physical_dir.join("pg_hba.conf")) {
        super::materialize::write_synced(&new_pgdata.join("pg_hba.conf"), &hba)?;
    }
    let port = match port {
        // Checked before the physical restore; checked again now, so a
        // port taken in the meantime is refused with its holder named.
        Some(p) => {
            instance::check_port(p, &socket_dir)?;
            p
        }
        None => instance::free_port(&socket_dir)?,
    };
    {
        use std::io::Write;
        let auto = new_pgdata.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&auto)
            .map_err(|source| RecoverError::Write {
                path: auto.display().to_string(),
                source,
            })?;
        writeln!(
            f,
            "# pitr rollback --upgrade-to: data from backup {} at {}.\nport = {port}\nunix_socket_directories = {}",
            physical.backup_id,
            physical.target,
            super::settings::guc_quote(&socket_dir.display().to_string())
        )
        .map_err(|source| RecoverError::Write {
            path: auto.display().to_string(),
            source,
        })?;
    }
    let mut running = instance::start(target_bin, new_pgdata).await?;
    instance::wait_ready(&mut running, &socket_dir, port, db_user).await?;

    // pg_dumpall from the restored server into the new one.
    let mut dump = Command::new(tools.join("pg_dumpall"))
        .arg("-h")
        .arg(&socket_dir)
        .args(["-p", &physical.port.to_string(), "-U", db_user])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run_err("pg_dumpall"))?;
    let Some(dump_out) = dump.stdout.take() else {
        return Err(RecoverError::Spawn {
            program: "pg_dumpall".into(),
            reason: "no output pipe".into(),
        });
    };
    let dump_out: Stdio = dump_out.try_into().map_err(run_err("pg_dumpall"))?;
    let load = Command::new(tools.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&socket_dir)
        .args(["-p", &port.to_string(), "-U", db_user, "-d", "postgres"])
        .stdin(dump_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(run_err("psql"))?;
    let dumped = dump
        .wait_with_output()
        .await
        .map_err(run_err("pg_dumpall"))?;
    if !dumped.status.success() {
        let _ = instance::stop(target_bin, new_pgdata).await;
        return Err(RecoverError::Spawn {
            program: "pg_dumpall".into(),
            reason: String::from_utf8_lossy(&dumped.stderr).trim().to_string(),
        });
    }
    // Errors for objects the fresh cluster already has (the bootstrap
    // role) are expected; anything else is reported.
    let errors: Vec<String> = String::from_utf8_lossy(&load.stderr)
        .lines()
        .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
        .map(str::to_string)
        .collect();
    if !load.status.success() || !errors.is_empty() {
        let _ = instance::stop(target_bin, new_pgdata).await;
        return Err(RecoverError::Spawn {
            program: "psql (loading the dump)".into(),
            reason: errors.join("\n"),
        });
    }

    // The physical copy has served its purpose.
    instance::stop(physical_bin, &physical_dir).await?;
    let _ = std::fs::remove_dir_all(&physical_dir);

    let version = instance::query_version(&socket_dir, port, db_user)
        .await
        .unwrap_or_default();
    Ok(UpgradeOutcome {
        data_directory: new_pgdata.display().to_string(),
        port,
        socket_directory: socket_dir.display().to_string(),
        server_version: version,
        restored_from: physical.clone(),
        dump_tool: tools.join("pg_dumpall").display().to_string(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        server_log: new_pgdata.join(LOG_NAME).display().to_string(),
        connect: format!(
            "psql -h {} -p {port} -U {db_user} postgres",
            socket_dir.display()
        ),
    })
}
