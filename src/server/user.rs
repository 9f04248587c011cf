//! Running as the right OS user. Postgres refuses to run as root, and the
//! files of a cluster and its repository must stay usable by the user that
//! runs `archive_command`. When pitr starts as root it switches the whole
//! process to that user (before any threads exist) for commands that run
//! or read Postgres.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("OS user {0:?} does not exist: create it or pass --os-user")]
    NoSuchUser(String),
    #[error("cannot look up OS user {name}: {source}")]
    Lookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot switch to OS user {name} (uid {uid}): {source}")]
    Switch {
        name: String,
        uid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("{path} is owned by root; refusing to run PostgreSQL as root (give the directory to the postgres user)")]
    RootOwned { path: String },
}

#[derive(Debug, Clone)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn lookup(name: &str) -> Result<OsUser, UserError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(OsUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(UserError::NoSuchUser(name.to_string())),
        Err(source) => Err(UserError::Lookup {
            name: name.to_string(),
            source,
        }),
    }
}

/// The owner of `path`.
pub fn owner_of(path: &Path) -> Result<OsUser, UserError> {
    let meta = std::fs::metadata(path).map_err(|source| UserError::Stat {
        path: path.display().to_string(),
        source,
    })?;
    if meta.uid() == 0 {
        return Err(UserError::RootOwned {
            path: path.display().to_string(),
        });
    }
    let name = User::from_uid(Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| meta.uid().to_string());
    Ok(OsUser {
        name,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Switches this (still single-threaded) process to `user` for good:
/// supplementary groups, gid, then uid; sets HOME and USER to match.
pub fn become_user(user: &OsUser) -> Result<(), UserError> {
    let err = |source| UserError::Switch {
        name: user.name.clone(),
        uid: user.uid,
        source,
    };
    let gid = Gid::from_raw(user.gid);
    let cname = std::ffi::CString::new(user.name.clone()).map_err(|_| err(nix::Error::EINVAL))?;
    nix::unistd::initgroups(&cname, gid).map_err(err)?;
    nix::unistd::setgid(gid).map_err(err)?;
    nix::unistd::setuid(Uid::from_raw(user.uid)).map_err(err)?;
    if let Ok(Some(u)) = User::from_uid(Uid::from_raw(user.uid)) {
        // Single-threaded at this point: nothing else reads the environment.
        std::env::set_var("HOME", &u.dir);
        std::env::set_var("USER", &u.name);
    }
    Ok(())
}
