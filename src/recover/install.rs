//! Which install runs a restore: discovery (`server::install`) meets the
//! pure choice (`plan::compat`). `--pg-bin` names one install, refused
//! before anything is fetched if it cannot run the backup; otherwise the
//! first compatible install found here. Only installs of the backup's
//! major are fingerprinted (a scratch initdb each, cached).

use std::path::{Path, PathBuf};

use crate::catalog::BackupRecord;
use crate::plan::compat::{self, ChooseError, InstallFacts, Mismatch};
use crate::server::install::{self, Install, InstallError};
use crate::server::user::OsUser;

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("--pg-bin {}: not a PostgreSQL bin directory (it needs postgres, pg_ctl and initdb)", .0.display())]
    NotAnInstall(PathBuf),
    #[error(transparent)]
    Fingerprint(#[from] InstallError),
    #[error(
        "{bin_dir} cannot run backup {backup_id} (nothing was fetched):\n  {}{}",
        mismatches.iter().map(|m| m.explanation.as_str()).collect::<Vec<_>>().join("\n  "),
        if same_major.is_empty() { String::new() } else { format!("\nfound here: {}", same_major.join(", ")) }
    )]
    CannotRun {
        bin_dir: String,
        backup_id: String,
        mismatches: Vec<Mismatch>,
        /// Installs of the backup's major found here (bin directories).
        same_major: Vec<String>,
    },
    #[error(
        "{choice}{}",
        if other_majors.is_empty() { String::new() } else { format!("\nother majors found: {}", other_majors.join(", ")) }
    )]
    NoneCompatible {
        choice: ChooseError,
        /// Installs of other majors, not fingerprinted: "BIN (PostgreSQL V)".
        other_majors: Vec<String>,
    },
}

/// Where to look and who runs the scratch initdb.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// `--pg-bin`: only this install, which must be able to run the backup.
    pub pg_bin: Option<PathBuf>,
    /// Searched besides the usual places (`PITR_PG_BIN_DIRS`).
    pub extra_dirs: Vec<PathBuf>,
    /// Who runs the scratch initdb (`install::scratch_user`).
    pub initdb_user: Option<OsUser>,
}

fn facts(i: &Install, os_user: Option<&OsUser>) -> Result<InstallFacts, InstallError> {
    let fingerprint = install::fingerprint(i, os_user, &install::default_cache_dir())?;
    Ok(InstallFacts {
        bin_dir: i.bin_dir.display().to_string(),
        version: i.version.clone(),
        major: i.major,
        fingerprint,
        arch: install::machine_arch().to_string(),
    })
}

/// The install that will run a restore of `backup`.
pub fn select(backup: &BackupRecord, search: &Search) -> Result<InstallFacts, SelectError> {
    let os_user = search.initdb_user.as_ref();
    if let Some(dir) = &search.pg_bin {
        let named = install::named(dir).ok_or_else(|| SelectError::NotAnInstall(dir.clone()))?;
        let f = facts(&named, os_user)?;
        let m = compat::mismatches(
            backup.pg_major,
            &backup.fingerprint,
            backup.arch.as_deref(),
            &f,
        );
        if m.is_empty() {
            return Ok(f);
        }
        let same_major = install::discover(&search.extra_dirs)
            .into_iter()
            .filter(|i| i.major == backup.pg_major)
            .map(|i| i.bin_dir.display().to_string())
            .collect();
        return Err(SelectError::CannotRun {
            bin_dir: f.bin_dir,
            backup_id: backup.id.clone(),
            mismatches: m,
            same_major,
        });
    }
    let mut candidates = Vec::new();
    let mut other_majors = Vec::new();
    for i in install::discover(&search.extra_dirs) {
        if i.major == backup.pg_major {
            candidates.push(facts(&i, os_user)?);
        } else {
            other_majors.push(format!(
                "{} (PostgreSQL {})",
                i.bin_dir.display(),
                i.version
            ));
        }
    }
    compat::choose(
        backup.pg_major,
        &backup.fingerprint,
        backup.arch.as_deref(),
        &candidates,
    )
    .cloned()
    .map_err(|choice| SelectError::NoneCompatible {
        choice,
        other_majors,
    })
}

/// The install `--upgrade-to DIR` names, if it is one.
pub fn upgrade_target(dir: &Path) -> Option<Install> {
    install::named(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::control::{ControlFile, PgMajor};
    use crate::pg::{Lsn, TimelineId};

    const DEBIAN_15: &str = "/usr/lib/postgresql/15/bin";

    fn backup_of(major: u32, control: &str) -> BackupRecord {
        let bytes =
            std::fs::read(format!("{}/testdata/{control}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let c = ControlFile::decode(&bytes).unwrap();
        let tli = TimelineId::new(1).unwrap();
        BackupRecord {
            id: "b1".into(),
            label: String::new(),
            system_id: c.system_identifier,
            pg_major: PgMajor::new(major).unwrap(),
            timeline: tli,
            start_lsn: Lsn::new(0x2000028),
            checkpoint_lsn: Lsn::new(0x2000028),
            stop_lsn: Lsn::new(0x2000100),
            stop_timeline: tli,
            start_segment: String::new(),
            stop_segment: String::new(),
            start_time: chrono::Utc::now(),
            stop_time: chrono::Utc::now(),
            fingerprint: c.fingerprint,
            files: 1,
            raw_bytes: 0,
            stored_bytes: 0,
            pitr_version: String::new(),
            arch: Some(install::machine_arch().to_string()),
            start: Default::default(),
        }
    }

    fn search(pg_bin: Option<&str>) -> Search {
        Search {
            pg_bin: pg_bin.map(PathBuf::from),
            extra_dirs: Vec::new(),
            initdb_user: install::scratch_user(),
        }
    }

    #[test]
    fn pg_bin_must_be_an_install() {
        let junk = tempfile::tempdir().unwrap();
        let b = backup_of(15, "pg15/pg_control.default");
        let err = select(&b, &search(junk.path().to_str())).unwrap_err();
        assert!(matches!(err, SelectError::NotAnInstall(_)), "{err:?}");
    }

    #[test]
    fn the_matching_install_is_chosen_and_a_named_other_major_refused() {
        assert!(
            Path::new(DEBIAN_15).join("initdb").is_file(),
            "no Debian PostgreSQL 15 at {DEBIAN_15}: run scripts/setup.sh (the README's test command does)"
        );
        let b15 = backup_of(15, "pg15/pg_control.default");
        let chosen = select(&b15, &search(None)).unwrap();
        assert_eq!(chosen.major.get(), 15);
        let named = select(&b15, &search(Some(DEBIAN_15))).unwrap();
        assert_eq!(named.bin_dir, chosen.bin_dir);

        let b17 = backup_of(17, "pg17/pg_control");
        let err = select(&b17, &search(Some(DEBIAN_15))).unwrap_err();
        let SelectError::CannotRun { mismatches, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(mismatches[0].field, "major");
        assert!(err.to_string().contains("(nothing was fetched)"), "{err}");
    }
}
