//! What the data directory says it is: its pg_control (decoded and
//! CRC-checked) and its `PG_VERSION`, and whether that is the cluster and
//! major this repository holds.

use std::path::Path;

use super::BackupError;
use crate::catalog::RepoConfig;
use crate::pg::control::ControlFile;
use crate::pg::PgMajor;

/// Reads and checks the cluster's identity against the repository.
pub fn check_cluster(pgdata: &Path, config: &RepoConfig) -> Result<ControlFile, BackupError> {
    let control = read_control(pgdata)?;
    if control.system_identifier != config.system_id {
        return Err(BackupError::OtherCluster {
            pgdata: pgdata.display().to_string(),
            found: control.system_identifier.to_string(),
            expected: config.system_id.to_string(),
        });
    }
    let major = read_major(pgdata)?;
    if major != config.pg_major {
        return Err(BackupError::OtherMajor {
            pgdata: pgdata.display().to_string(),
            found: major,
            expected: config.pg_major,
        });
    }
    Ok(control)
}

/// Reads and decodes `global/pg_control`.
pub fn read_control(pgdata: &Path) -> Result<ControlFile, BackupError> {
    let path = pgdata.join("global/pg_control");
    let bytes = std::fs::read(&path).map_err(|source| BackupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    ControlFile::decode(&bytes).map_err(|source| BackupError::Control {
        path: path.display().to_string(),
        source,
    })
}

/// Reads the authoritative major from `PG_VERSION`.
pub fn read_major(pgdata: &Path) -> Result<PgMajor, BackupError> {
    let path = pgdata.join("PG_VERSION");
    let text = std::fs::read_to_string(&path).map_err(|source| BackupError::Read {
        path: path.display().to_string(),
        source,
    })?;
    PgMajor::from_pg_version_file(&text).map_err(|source| BackupError::PgVersion {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::control::ControlError;

    /// What `pitr` prints is the error and its sources joined by ": ";
    /// the typed sources keep the text the string reason used to hold.
    #[test]
    fn control_and_pg_version_errors_carry_their_typed_source() {
        use std::error::Error;
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir(p.join("global")).unwrap();
        std::fs::write(p.join("global/pg_control"), [0u8; 100]).unwrap();
        std::fs::write(p.join("PG_VERSION"), "9.6\n").unwrap();

        let e = read_control(p).unwrap_err();
        let path = p.join("global/pg_control").display().to_string();
        assert!(
            matches!(
                &e,
                BackupError::Control {
                    source: ControlError::TooShort {
                        len: 100,
                        need: 296
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), path);
        let source = e.source().unwrap().to_string();
        assert!(
            source.starts_with("pg_control is 100 bytes, need at least 296"),
            "{source}"
        );

        let e = read_major(p).unwrap_err();
        assert!(matches!(&e, BackupError::PgVersion { .. }), "{e:?}");
        assert_eq!(e.to_string(), p.join("PG_VERSION").display().to_string());
        assert_eq!(
            e.source().unwrap().to_string(),
            PgMajor::from_pg_version_file("9.6\n")
                .unwrap_err()
                .to_string()
        );
    }
}
