//! Finding an install's programs (initdb, pg_ctl, postgres): `--pg-bin`,
//! then Debian's and RHEL's usual places for the wanted major, then PATH.

use std::path::{Path, PathBuf};

use crate::pg::control::PgMajor;

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("no {program} in {dir}: --pg-bin must name a PostgreSQL bin directory")]
    NotInDir { program: String, dir: String },
    #[error("no PostgreSQL {major} install found (looked in /usr/lib/postgresql/{major}/bin, /usr/pgsql-{major}/bin and PATH): install it (Debian: apt-get install postgresql-{major}) or pass --pg-bin")]
    NotFound { major: PgMajor },
}

/// The bin directory holding `pg_ctl` and `postgres` for `major`.
pub fn find_bin_dir(explicit: Option<&Path>, major: PgMajor) -> Result<PathBuf, BinError> {
    if let Some(dir) = explicit {
        for program in ["pg_ctl", "postgres"] {
            if !dir.join(program).is_file() {
                return Err(BinError::NotInDir {
                    program: program.to_string(),
                    dir: dir.display().to_string(),
                });
            }
        }
        return Ok(dir.to_path_buf());
    }
    let candidates = [
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")),
    ];
    for dir in candidates {
        if dir.join("pg_ctl").is_file() && dir.join("postgres").is_file() {
            return Ok(dir);
        }
    }
    if let Ok(pg_ctl) = which::which("pg_ctl") {
        if let Some(dir) = pg_ctl.parent() {
            if dir.join("postgres").is_file() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    Err(BinError::NotFound { major })
}
