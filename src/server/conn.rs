//! Connections to a running server with tokio-postgres. Without an explicit
//! conninfo, the server's own `postmaster.pid` says where it listens (port
//! on line 4, first socket directory on line 5; see miscadmin.h
//! LOCK_FILE_LINE_*).

use std::path::Path;

use tokio_postgres::{Client, Config, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot read {path}: {source} (is the server running?)")]
    PidFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not say where the server listens; pass --conn")]
    PidFileFormat { path: String },
    #[error("invalid connection string: {0}")]
    Conninfo(#[source] tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL ({target}): {source}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Where a running server listens, from its postmaster.pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub port: u16,
    pub socket_dir: Option<String>,
}

pub fn read_postmaster_pid(pgdata: &Path) -> Result<Listen, ConnError> {
    let path = pgdata.join("postmaster.pid");
    let text = std::fs::read_to_string(&path).map_err(|source| ConnError::PidFile {
        path: path.display().to_string(),
        source,
    })?;
    let lines: Vec<&str> = text.lines().collect();
    let port = lines
        .get(3)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| ConnError::PidFileFormat {
            path: path.display().to_string(),
        })?;
    let socket_dir = lines
        .get(4)
        .map(|l| l.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(Listen { port, socket_dir })
}

/// The user name to connect as when none is given: $PGUSER, else the
/// effective OS user's name (what libpq does).
pub fn default_user() -> String {
    if let Ok(u) = std::env::var("PGUSER") {
        if !u.is_empty() {
            return u;
        }
    }
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "postgres".to_string())
}

/// A config for the server whose data directory is `pgdata`, or from an
/// explicit libpq-style `conninfo` (key=value or postgresql:// URL).
pub fn config_for(conninfo: Option<&str>, pgdata: Option<&Path>) -> Result<Config, ConnError> {
    let mut cfg = match conninfo {
        Some(ci) => ci.parse::<Config>().map_err(ConnError::Conninfo)?,
        None => Config::new(),
    };
    if cfg.get_hosts().is_empty() {
        if let Some(pgdata) = pgdata {
            let listen = read_postmaster_pid(pgdata)?;
            cfg.host_path(listen.socket_dir.as_deref().unwrap_or("/tmp"));
            if cfg.get_ports().is_empty() {
                cfg.port(listen.port);
            }
        } else {
            cfg.host_path("/var/run/postgresql");
        }
    }
    if cfg.get_user().is_none() {
        cfg.user(default_user());
    }
    if cfg.get_dbname().is_none() {
        cfg.dbname("postgres");
    }
    cfg.application_name("pitr");
    Ok(cfg)
}

pub fn describe(cfg: &Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "host={host} port={port} user={}",
        cfg.get_user().unwrap_or("")
    )
}

/// Connects and drives the connection on a background task.
pub async fn connect(cfg: &Config) -> Result<Client, ConnError> {
    let (client, connection) = cfg
        .connect(NoTls)
        .await
        .map_err(|source| ConnError::Connect {
            target: describe(cfg),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}
