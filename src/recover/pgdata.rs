//! The restore's directories before pitr gives up root: when pitr runs as
//! root it creates `--pgdata` (and any missing parents) and gives them to
//! the OS user that will run the server, then becomes that user for good
//! (`server::user::become_user`). Only an empty directory changes owner:
//! a non-empty one is refused by restore, and its ownership must not
//! change. `rollback --upgrade-to` also gets `NEW.pitr-physical`.

use std::path::{Path, PathBuf};

use crate::server::user::OsUser;

#[derive(Debug, thiserror::Error)]
pub enum PgdataError {
    #[error("creating {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("giving {} to {user}", .path.display())]
    GiveAway {
        path: PathBuf,
        user: String,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `pgdata` for `owner` (and `physical`, the upgrade's physical
/// copy, when given); returns the outermost directory created, for
/// `RunOptions::created_dir`.
pub fn hand_over(
    pgdata: &Path,
    physical: Option<&Path>,
    owner: &OsUser,
) -> Result<Option<PathBuf>, PgdataError> {
    let ids = Some((owner.uid, owner.gid));
    let created = super::create_pgdata(pgdata, ids).map_err(|source| PgdataError::Create {
        path: pgdata.to_path_buf(),
        source,
    })?;
    let empty = std::fs::read_dir(pgdata)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty {
        give(pgdata, owner)?;
    }
    if let Some(physical) = physical {
        std::fs::create_dir_all(physical).map_err(|source| PgdataError::Create {
            path: physical.to_path_buf(),
            source,
        })?;
        give(physical, owner)?;
    }
    Ok(created)
}

fn give(path: &Path, owner: &OsUser) -> Result<(), PgdataError> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).map_err(|source| {
        PgdataError::GiveAway {
            path: path.to_path_buf(),
            user: owner.name.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> OsUser {
        OsUser {
            name: "me".into(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    #[test]
    fn creates_what_is_missing_and_reports_the_outermost() {
        let d = tempfile::tempdir().unwrap();
        let pgdata = d.path().join("a").join("new");
        let physical = d.path().join("a").join("new.pitr-physical");
        let created = hand_over(&pgdata, Some(&physical), &me()).unwrap();
        assert_eq!(created, Some(d.path().join("a")));
        assert!(pgdata.is_dir() && physical.is_dir());
        // Existing and not empty: left as it is, nothing created.
        std::fs::write(pgdata.join("f"), b"x").unwrap();
        assert_eq!(hand_over(&pgdata, None, &me()).unwrap(), None);
    }
}
