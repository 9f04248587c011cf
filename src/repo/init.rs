//! `pitr init`'s rule: a repository belongs to one database system. The
//! first init records the cluster's identity (`pitr.json`: system
//! identifier, major, WAL segment size, build fingerprint); init again for
//! the same system is a no-op that reports the existing record; init for
//! another system is refused and nothing is written. As root, a local
//! repository's root is created and given to the user that runs
//! `archive_command` (the data directory's owner) first.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::catalog::{Encryption, RepoConfig};
use crate::pg::control::{ControlFile, PgMajor, SystemId};

use super::store::{FsStore, PutMode};
use super::{layout, Repo, RepoError, RepoLocation, KIND_CONFIG};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{repo} already holds database system {existing}, but {pgdata} is system {system}: use another repository")]
    OtherSystem {
        /// The repository as the user named it.
        repo: String,
        existing: SystemId,
        pgdata: String,
        system: SystemId,
    },
    #[error("{repo} already exists in the clear: encryption is chosen when a repository is created; init a new repository with --encrypt")]
    Clear { repo: String },
    #[error("a key was given but not --encrypt: add --encrypt to create {repo} encrypted, or drop --key-file / PITR_KEY")]
    KeyWithoutEncrypt { repo: String },
    #[error("--encrypt needs a key: give --key-file FILE (32 random bytes as hex or base64; make one with `openssl rand -base64 32 > FILE`) or PITR_KEY")]
    NoKey,
    #[error("adding a key needs one of the repository's current keys: give it with --key-file (or PITR_KEY), and the new one with --new-key-file")]
    NoCurrentKey,
    #[error(transparent)]
    Crypt(#[from] super::crypt::CryptError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("giving {} to {user}", .path.display())]
    GiveAway {
        path: std::path::PathBuf,
        user: String,
        #[source]
        source: std::io::Error,
    },
}

/// What init did.
#[derive(Debug, Clone)]
pub enum Initialized {
    /// The repository was created with this record.
    Created(RepoConfig),
    /// It already held this record, for the same system: nothing changed.
    Existing(RepoConfig),
}

/// The record a repository keeps of the cluster whose pg_control and
/// major are given.
pub fn config_for(control: &ControlFile, major: PgMajor, now: DateTime<Utc>) -> RepoConfig {
    RepoConfig {
        system_id: control.system_identifier,
        pg_major: major,
        wal_segment_size: control.wal_segment_size,
        fingerprint: control.fingerprint.clone(),
        created_at: now,
        created_by: format!("pitr {}", env!("CARGO_PKG_VERSION")),
        encryption: None,
    }
}

/// What `pitr.json` of a new encrypted repository says: sealed with the
/// first key `repo` was given.
pub fn encryption_for(repo: &Repo, now: DateTime<Utc>) -> Result<Encryption, InitError> {
    let first = repo.keyring().first().ok_or(InitError::NoKey)?;
    Ok(super::crypt::encryption_for(first, now))
}

/// Initializes `repo` for `config`'s system (of the cluster at `pgdata`,
/// named in the refusal, as is the repository as `repo_named`).
pub async fn init(
    repo: &Repo,
    config: RepoConfig,
    repo_named: &str,
    pgdata: &Path,
) -> Result<Initialized, InitError> {
    match repo.config().await {
        Ok(existing) if existing.system_id != config.system_id => Err(InitError::OtherSystem {
            repo: repo_named.to_string(),
            existing: existing.system_id,
            pgdata: pgdata.display().to_string(),
            system: config.system_id,
        }),
        Ok(existing) if config.encryption.is_some() && existing.encryption.is_none() => {
            Err(InitError::Clear {
                repo: repo_named.to_string(),
            })
        }
        Ok(existing) => Ok(Initialized::Existing(existing)),
        Err(RepoError::NotInitialized(_)) => {
            if config.encryption.is_none() && !repo.key_source().is_empty() {
                return Err(InitError::KeyWithoutEncrypt {
                    repo: repo_named.to_string(),
                });
            }
            repo.create_root()?;
            repo.store().check().await.map_err(RepoError::from)?;
            // An older pitr must not write into an encrypted repository in
            // the clear: it refuses format version 4.
            let version = if config.encryption.is_some() {
                crate::catalog::envelope::ENCRYPTED_VERSION
            } else {
                crate::catalog::envelope::WRITE_VERSION
            };
            repo.put_meta_at(
                &layout::config(),
                KIND_CONFIG,
                &config,
                PutMode::Create,
                version,
            )
            .await?;
            Ok(Initialized::Created(config))
        }
        Err(e) => Err(e.into()),
    }
}

/// What `add_key` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyAdded {
    /// The new key's id.
    pub id: String,
    /// False when the repository already listed it (nothing changed).
    pub added: bool,
    /// Every key id the repository lists now, oldest first.
    pub keys: Vec<String>,
}

/// Rotation: lists `new`'s key in the encrypted `repo` (opened with one of
/// its current keys, which proves the right to). From then on, a pitr
/// given the new key seals new objects with it (the newest listed key
/// given), and opens older objects with whichever key their header names,
/// as long as that key is given too (until `expire` has removed them).
pub async fn add_key(repo: &Repo, new: &super::crypt::KeySource) -> Result<KeyAdded, InitError> {
    if repo.key_source().is_empty() {
        return Err(InitError::NoCurrentKey);
    }
    let mut config = repo.config().await?;
    let new_key = new.load()?;
    let new_key = new_key.first().ok_or(InitError::NoKey)?;
    let id = new_key.id().to_string();
    let Some(enc) = config.encryption.as_mut() else {
        // (`config()` already refuses keys for a repository in the clear.)
        return Err(InitError::Crypt(super::crypt::CryptError::NotEncrypted {
            repo: repo.location().to_arg(),
            given: id,
        }));
    };
    let added = !enc.keys.iter().any(|k| k.id == id);
    if added {
        enc.keys.push(crate::catalog::KeyRecord {
            id: id.clone(),
            added_at: Utc::now(),
        });
        repo.put_meta_at(
            &layout::config(),
            KIND_CONFIG,
            &config,
            PutMode::Overwrite,
            crate::catalog::envelope::ENCRYPTED_VERSION,
        )
        .await?;
    }
    let keys = config
        .encryption
        .iter()
        .flat_map(|e| e.keys.iter().map(|k| k.id.clone()))
        .collect();
    Ok(KeyAdded { id, added, keys })
}

/// As root, before becoming the repository's user (`uid`, `gid`, `user`):
/// a local repository's root exists and belongs to that user. Nothing to
/// do for S3.
pub fn give_root_to(
    location: &RepoLocation,
    uid: u32,
    gid: u32,
    user: &str,
) -> Result<(), InitError> {
    let Some(root) = location.local_path() else {
        return Ok(());
    };
    FsStore::new(root).create_root().map_err(RepoError::from)?;
    std::os::unix::fs::chown(root, Some(uid), Some(gid)).map_err(|source| InitError::GiveAway {
        path: root.to_path_buf(),
        user: user.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::store::S3Settings;

    fn control() -> ControlFile {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/pg15/pg_control"
        ))
        .unwrap();
        ControlFile::decode(&bytes).unwrap()
    }

    #[tokio::test]
    async fn first_init_records_again_is_a_no_op_another_system_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("repo");
        let repo = Repo::open(RepoLocation::Local(root.clone()), &S3Settings::default()).await;
        let control = control();
        let major = PgMajor::new(15).unwrap();
        let config = config_for(&control, major, Utc::now());
        let pgdata = Path::new("/srv/pg");

        let first = init(&repo, config.clone(), "R", pgdata).await.unwrap();
        assert!(matches!(&first, Initialized::Created(c) if c.system_id == config.system_id));
        assert!(root.join("pitr.json").is_file());

        let again = init(&repo, config_for(&control, major, Utc::now()), "R", pgdata)
            .await
            .unwrap();
        assert!(matches!(&again, Initialized::Existing(c) if c.created_at == config.created_at));

        let mut other = control.clone();
        other.system_identifier = "7000000000000000001".parse().unwrap();
        let err = init(&repo, config_for(&other, major, Utc::now()), "R", pgdata)
            .await
            .unwrap_err();
        assert!(matches!(err, InitError::OtherSystem { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "R already holds database system {}, but /srv/pg is system 7000000000000000001: use another repository",
                config.system_id
            )
        );
        // The record is the first one still.
        assert_eq!(repo.config().await.unwrap().system_id, config.system_id);
    }
}
