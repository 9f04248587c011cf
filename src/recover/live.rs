//! The server running on a data directory, seen by a pitr run that did
//! not start it (`status`, `promote`): found from its `postmaster.pid`
//! (pid, port, socket directory and status line; miscadmin.h
//! LOCK_FILE_LINE_*), believed only when that pid is a live process whose
//! working directory is the data directory (a crash leaves a stale file),
//! and talked to only over a connection whose backend is that
//! postmaster's child (another server may answer on the same port).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Client;

use super::instance::{within, ROUND_TRIP};
use crate::server::conn;
use crate::server::process::{self, PmStatus};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no server is running on {pgdata}: {reason}")]
    NotRunning { pgdata: String, reason: String },
    #[error(
        "the server on {pgdata} is {status}, not accepting connections; try again once it is up"
    )]
    NotReady { pgdata: String, status: String },
    #[error("cannot connect to the server on {pgdata} ({target}): {reason}")]
    Connect {
        pgdata: String,
        target: String,
        reason: String,
    },
    #[error("the server answering on {target} is not the one running on {pgdata}: {detail}")]
    WrongServer {
        pgdata: String,
        target: String,
        detail: String,
    },
    #[error("{what}: {reason}")]
    Sql { what: String, reason: String },
}

/// A running server of a data directory.
#[derive(Debug, Clone)]
pub struct LiveServer {
    pub pgdata: PathBuf,
    /// The postmaster's pid.
    pub pid: i32,
    pub port: u16,
    /// Its first Unix socket directory (None: it listens on TCP only).
    pub socket_dir: Option<PathBuf>,
}

impl LiveServer {
    /// The server running on `pgdata`, accepting connections (as a
    /// primary or a hot standby).
    pub fn find(pgdata: &Path) -> Result<LiveServer, ServerError> {
        let not_running = |reason: String| ServerError::NotRunning {
            pgdata: pgdata.display().to_string(),
            reason,
        };
        if !pgdata.join("PG_VERSION").is_file() {
            return Err(not_running(
                "it is not a data directory (no PG_VERSION)".into(),
            ));
        }
        let Some(pid) = process::postmaster_pid(pgdata) else {
            return Err(not_running("it has no postmaster.pid".into()));
        };
        if !process::alive(pid) || !process::runs_in(pid, pgdata) {
            return Err(not_running(format!(
                "postmaster.pid names process {pid}, which is not running on it (a file left by a crash?)"
            )));
        }
        // "ready": a primary, or a hot standby once consistent.
        let status = match process::pm_status(pgdata) {
            Some(PmStatus::Ready) => None,
            Some(PmStatus::Standby) => Some("a standby with hot_standby off"),
            Some(PmStatus::Stopping) => Some("shutting down"),
            Some(PmStatus::Starting) | None => Some("starting (a standby: not consistent yet)"),
        };
        if let Some(status) = status {
            return Err(ServerError::NotReady {
                pgdata: pgdata.display().to_string(),
                status: status.to_string(),
            });
        }
        let listen = conn::read_postmaster_pid(pgdata).map_err(|e| not_running(e.to_string()))?;
        Ok(LiveServer {
            pgdata: pgdata.to_path_buf(),
            pid,
            port: listen.port,
            socket_dir: listen.socket_dir.map(PathBuf::from),
        })
    }

    fn target(&self) -> String {
        match &self.socket_dir {
            Some(d) => format!("{} port {}", d.display(), self.port),
            None => format!("127.0.0.1 port {}", self.port),
        }
    }

    /// A connection as `db_user` to database `postgres`, proven to be
    /// served by this postmaster (its backend is the postmaster's child).
    pub async fn connect(&self, db_user: &str, application: &str) -> Result<Client, ServerError> {
        let mut cfg = tokio_postgres::Config::new();
        match &self.socket_dir {
            Some(d) => cfg.host_path(d),
            None => cfg.host("127.0.0.1"),
        };
        cfg.port(self.port)
            .user(db_user)
            .dbname("postgres")
            .application_name(application)
            .connect_timeout(ROUND_TRIP);
        let connect_err = |reason: String| ServerError::Connect {
            pgdata: self.pgdata.display().to_string(),
            target: format!("{} as {db_user}", self.target()),
            reason,
        };
        let (client, connection) = within(ROUND_TRIP, cfg.connect(tokio_postgres::NoTls))
            .await
            .map_err(connect_err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
        let row = query_one(
            &client,
            "select pg_backend_pid()",
            "asking for the backend's pid",
        )
        .await?;
        let backend: i32 = row.try_get(0).map_err(|e| connect_err(e.to_string()))?;
        let wrong = |detail: String| ServerError::WrongServer {
            pgdata: self.pgdata.display().to_string(),
            target: self.target(),
            detail,
        };
        match process::parent_pid(backend) {
            Ok(parent) if parent == self.pid => Ok(client),
            Ok(parent) => Err(wrong(format!(
                "its backend {backend} is a child of process {parent}, not of postmaster {}",
                self.pid
            ))),
            Err(e) => Err(wrong(format!(
                "its backend {backend} is not a process here ({e})"
            ))),
        }
    }
}

/// One row of `sql`, within the round-trip deadline; `what` says what
/// was asked, for the error.
pub async fn query_one(
    c: &Client,
    sql: &str,
    what: &str,
) -> Result<tokio_postgres::Row, ServerError> {
    query_one_within(c, sql, what, ROUND_TRIP).await
}

/// `query_one` with its own deadline (a statement that waits).
pub async fn query_one_within(
    c: &Client,
    sql: &str,
    what: &str,
    limit: Duration,
) -> Result<tokio_postgres::Row, ServerError> {
    within(limit, c.query_one(sql, &[]))
        .await
        .map_err(|reason| ServerError::Sql {
            what: what.to_string(),
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_a_live_postmaster_is_not_running() {
        let d = tempfile::tempdir().unwrap();
        let err = LiveServer::find(d.path()).unwrap_err();
        assert!(err.to_string().contains("not a data directory"), "{err}");
        std::fs::write(d.path().join("PG_VERSION"), "15\n").unwrap();
        let err = LiveServer::find(d.path()).unwrap_err();
        assert!(err.to_string().contains("no postmaster.pid"), "{err}");
        // A pid that is alive (this test) but not running on the directory.
        std::fs::write(
            d.path().join("postmaster.pid"),
            format!(
                "{}\n{}\n1700000000\n5433\n/tmp\n*\n  1  2\nready \n",
                std::process::id(),
                d.path().display()
            ),
        )
        .unwrap();
        let err = LiveServer::find(d.path()).unwrap_err();
        assert!(matches!(err, ServerError::NotRunning { .. }), "{err}");
        assert!(err.to_string().contains("left by a crash"), "{err}");
    }
}
