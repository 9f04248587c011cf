//! The repository: where a cluster's WAL, backups and metadata live. A
//! `Repo` wraps a `Store` (local filesystem now; S3 next) and knows the key
//! layout (`layout`), the codec (`codec`) and how to read and write the
//! catalog's metadata objects. It decides nothing about Postgres.

pub mod codec;
pub mod layout;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::catalog::{
    BackupRecord, Catalog, Envelope, EnvelopeError, RepoConfig, WalSegmentRecord,
};
use crate::pg::history::TimelineHistory;
use crate::pg::{TimelineId, WalFileName};
use store::{FsStore, ObjectKey, PutMode, Store, StoreError};

pub const KIND_CONFIG: &str = "pitr.repo";
pub const KIND_WAL: &str = "pitr.wal-segment";
pub const KIND_BACKUP: &str = "pitr.backup";
pub const KIND_MANIFEST: &str = "pitr.backup-manifest";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("metadata object {key}: {source}")]
    Meta {
        key: ObjectKey,
        #[source]
        source: EnvelopeError,
    },
    #[error("object {key}: {source}")]
    Codec {
        key: ObjectKey,
        #[source]
        source: codec::CodecError,
    },
    #[error(
        "no pitr repository at {0}: run `pitr init --repo {0} --pgdata <data directory>` first"
    )]
    NotInitialized(String),
    #[error("unsupported repository address {0:?}: use a local path or file:///path (S3 support is not built yet)")]
    UnsupportedScheme(String),
    #[error("timeline history {name}: {reason}")]
    History { name: String, reason: String },
}

impl RepoError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RepoError::Store(StoreError::NotFound(_)))
    }
}

/// Where a repository is, as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoLocation {
    Local(PathBuf),
}

impl RepoLocation {
    /// Accepts `/path`, `relative/path` and `file:///path`.
    pub fn parse(s: &str) -> Result<RepoLocation, RepoError> {
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(RepoError::UnsupportedScheme(s.to_string()));
            }
            return Ok(RepoLocation::Local(PathBuf::from(rest)));
        }
        if s.is_empty() || s.contains("://") {
            return Err(RepoError::UnsupportedScheme(s.to_string()));
        }
        let p = PathBuf::from(s);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        };
        Ok(RepoLocation::Local(abs))
    }

    /// The form to hand to another pitr process (restore_command).
    pub fn to_arg(&self) -> String {
        match self {
            RepoLocation::Local(p) => p.display().to_string(),
        }
    }

    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            RepoLocation::Local(p) => Some(p),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Repo {
    location: RepoLocation,
    store: Arc<dyn Store>,
}

impl Repo {
    pub fn open(location: RepoLocation) -> Repo {
        let store: Arc<dyn Store> = match &location {
            RepoLocation::Local(p) => Arc::new(FsStore::new(p.clone())),
        };
        Repo { location, store }
    }

    pub fn location(&self) -> &RepoLocation {
        &self.location
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates the root of a local repository.
    pub fn create_root(&self) -> Result<(), RepoError> {
        match &self.location {
            RepoLocation::Local(p) => FsStore::new(p.clone()).create_root()?,
        }
        Ok(())
    }

    pub async fn put_meta<T: Serialize>(
        &self,
        key: &ObjectKey,
        kind: &str,
        value: &T,
        mode: PutMode,
    ) -> Result<(), RepoError> {
        let bytes = Envelope::seal(kind, value).map_err(|source| RepoError::Meta {
            key: key.clone(),
            source,
        })?;
        self.store.put(key, &bytes, mode).await?;
        Ok(())
    }

    pub async fn get_meta<T: DeserializeOwned>(
        &self,
        key: &ObjectKey,
        kind: &str,
    ) -> Result<T, RepoError> {
        let bytes = self.store.get(key).await?;
        Envelope::open(kind, &bytes).map_err(|source| RepoError::Meta {
            key: key.clone(),
            source,
        })
    }

    /// Reads `pitr.json`, saying clearly when there is no repository.
    pub async fn config(&self) -> Result<RepoConfig, RepoError> {
        match self.get_meta(&layout::config(), KIND_CONFIG).await {
            Err(e) if e.is_not_found() => Err(RepoError::NotInitialized(self.location.to_arg())),
            other => other,
        }
    }

    /// Reads an archived non-segment file (history, .backup, .partial).
    pub async fn get_aux(&self, name: &WalFileName) -> Result<Vec<u8>, RepoError> {
        let key = layout::aux_file(name);
        let stored = self.store.get(&key).await?;
        codec::decompress(&stored).map_err(|source| RepoError::Codec { key, source })
    }

    pub async fn list_backups(&self) -> Result<Vec<BackupRecord>, RepoError> {
        let mut out = Vec::new();
        for meta in self.store.list(layout::BACKUPS_DIR).await? {
            if meta.key.file_name() == "backup.json" {
                out.push(
                    self.get_meta::<BackupRecord>(&meta.key, KIND_BACKUP)
                        .await?,
                );
            }
        }
        out.sort_by(|a, b| a.stop_lsn.cmp(&b.stop_lsn).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Loads everything the planner reads.
    pub async fn load_catalog(&self) -> Result<Catalog, RepoError> {
        let config = self.config().await?;
        let backups = self.list_backups().await?;
        let mut wal = BTreeMap::new();
        for meta in self.store.list(layout::WAL_DIR).await? {
            if meta.key.as_str().ends_with(".json") {
                let rec: WalSegmentRecord = self.get_meta(&meta.key, KIND_WAL).await?;
                wal.insert((rec.timeline, rec.segno), rec);
            }
        }
        let mut histories = BTreeMap::new();
        for meta in self.store.list(layout::HISTORY_DIR).await? {
            let fname = meta.key.file_name().trim_end_matches(".zst").to_string();
            let Ok(WalFileName::History(tli)) = WalFileName::parse(&fname) else {
                continue;
            };
            let stored = self.store.get(&meta.key).await?;
            let raw = codec::decompress(&stored).map_err(|source| RepoError::Codec {
                key: meta.key.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&raw);
            let hist = TimelineHistory::parse(tli, &text).map_err(|e| RepoError::History {
                name: fname.clone(),
                reason: e.to_string(),
            })?;
            histories.insert(tli, hist);
        }
        Ok(Catalog {
            config,
            backups,
            wal,
            histories,
        })
    }

    /// The history of `tli` (TLI 1 has none and is its own root).
    pub fn history_of(catalog: &Catalog, tli: TimelineId) -> Option<TimelineHistory> {
        if tli == TimelineId::FIRST {
            return Some(TimelineHistory::root());
        }
        catalog.histories.get(&tli).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            RepoLocation::parse("file:///srv/repo").unwrap(),
            RepoLocation::Local(PathBuf::from("/srv/repo"))
        );
        assert_eq!(
            RepoLocation::parse("/srv/repo").unwrap().to_arg(),
            "/srv/repo"
        );
        assert!(RepoLocation::parse("s3://bucket/x").is_err());
        assert!(RepoLocation::parse("file://relative").is_err());
        assert!(RepoLocation::parse("").is_err());
        let rel = RepoLocation::parse("some/dir").unwrap();
        assert!(rel.local_path().unwrap().is_absolute());
    }
}
