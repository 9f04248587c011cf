//! `Repo`: a `Store` at a `RepoLocation`, and the typed access to what it
//! holds: metadata objects in their envelopes (get/put by kind), the
//! repository's config, a segment's transaction list and the archived
//! non-segment files. What the whole catalog is made of is read in
//! `catalog_load`.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::crypt::{CryptError, CryptStore, KeySource, Keyring};
use super::store::{FsStore, ObjectKey, PutMode, S3Settings, S3Store, Store, StoreError};
use super::{codec, layout, RepoLocation, KIND_CONFIG, KIND_WAL, KIND_WAL_XACTS};
use crate::catalog::{Envelope, EnvelopeError, RepoConfig, WalSegmentRecord};
use crate::pg::WalFileName;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// (A key refused by encryption at rest is no storage failure: its
    /// message stands alone.)
    #[error("{}{}", store_prefix(.0), .0)]
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
    /// Objects that disagree with each other (a list and its record).
    #[error("object {key}: {reason}")]
    Inconsistent { key: ObjectKey, reason: String },
    #[error("unsupported repository address {0:?}: use a local path, file:///path or s3://BUCKET/PREFIX")]
    UnsupportedScheme(String),
}

/// "storage: ", except before a refusal by encryption at rest.
fn store_prefix(e: &StoreError) -> &'static str {
    if matches!(e, StoreError::Crypt(_)) {
        ""
    } else {
        "storage: "
    }
}

impl RepoError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, RepoError::Store(StoreError::NotFound(_)))
    }
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub(super) location: RepoLocation,
    pub(super) s3: S3Settings,
    /// Where the keys came from (passed on to the commands pitr writes).
    keys: KeySource,
    /// The store, behind encryption at rest (`crypt`): what `store`
    /// returns.
    crypt: Arc<CryptStore>,
    pub(super) store: Arc<dyn Store>,
}

impl Repo {
    /// Opens the repository at `location`; `s3` applies to S3 locations.
    pub async fn open(location: RepoLocation, s3: &S3Settings) -> Repo {
        let store: Arc<dyn Store> = match &location {
            RepoLocation::Local(p) => Arc::new(FsStore::new(p.clone())),
            RepoLocation::S3 { bucket, prefix } => {
                Arc::new(S3Store::connect(bucket, prefix, s3).await)
            }
        };
        let mut repo = Repo::with_store(location, store);
        repo.s3 = s3.clone();
        repo
    }

    /// A repository over any store (tests, wrappers).
    pub fn with_store(location: RepoLocation, store: Arc<dyn Store>) -> Repo {
        let crypt = Arc::new(CryptStore::new(
            store,
            location.to_arg(),
            Keyring::default(),
        ));
        Repo {
            location,
            s3: S3Settings::default(),
            keys: KeySource::default(),
            store: crypt.clone(),
            crypt,
        }
    }

    /// The repository with the keys `source` gives (read now): data
    /// objects are sealed and opened with them if the repository is
    /// encrypted, and every operation is refused if it is not, or if it
    /// does not know them.
    pub fn with_keys(self, source: KeySource) -> Result<Repo, CryptError> {
        let keys = source.load()?;
        let crypt = Arc::new(CryptStore::new(
            self.crypt.inner().clone(),
            self.location.to_arg(),
            keys,
        ));
        Ok(Repo {
            keys: source,
            store: crypt.clone(),
            crypt,
            ..self
        })
    }

    /// Where this run's keys came from.
    pub fn key_source(&self) -> &KeySource {
        &self.keys
    }

    /// This run's keys, as read when it was opened (`with_keys`).
    pub fn keyring(&self) -> &Keyring {
        self.crypt.keys()
    }

    /// The flags another pitr process needs to reach this repository as
    /// this one does (S3 settings, key files); never credentials or keys.
    pub fn pass_on_args(&self) -> Vec<String> {
        let mut args = self.s3.to_args();
        args.extend(self.keys.to_args());
        args
    }

    /// The S3 settings given on the command line, to pass on to other pitr
    /// processes (restore_command).
    pub fn s3_settings(&self) -> &S3Settings {
        &self.s3
    }

    pub fn location(&self) -> &RepoLocation {
        &self.location
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store as it holds the objects: sealed objects as stored, sizes
    /// as stored (for what looks at objects without reading them).
    pub fn raw_store(&self) -> &Arc<dyn Store> {
        self.crypt.inner()
    }

    /// Creates the root of a local repository.
    pub fn create_root(&self) -> Result<(), RepoError> {
        match &self.location {
            RepoLocation::Local(p) => FsStore::new(p.clone()).create_root()?,
            RepoLocation::S3 { .. } => {}
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
        self.put_meta_at(
            key,
            kind,
            value,
            mode,
            crate::catalog::envelope::WRITE_VERSION,
        )
        .await
    }

    /// `put_meta` at format `version`: 3 for an object an older pitr must
    /// not read as what it knows (`catalog::envelope`).
    pub async fn put_meta_at<T: Serialize>(
        &self,
        key: &ObjectKey,
        kind: &str,
        value: &T,
        mode: PutMode,
        version: u32,
    ) -> Result<(), RepoError> {
        let bytes = Envelope::seal_at(kind, value, version).map_err(|source| RepoError::Meta {
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

    /// Reads `pitr.json`, saying clearly when there is no repository, and
    /// refusing keys that do not fit it (`crypt`).
    pub async fn config(&self) -> Result<RepoConfig, RepoError> {
        let config: RepoConfig = match self.get_meta(&layout::config(), KIND_CONFIG).await {
            Err(e) if e.is_not_found() => {
                return Err(RepoError::NotInitialized(self.location.to_arg()))
            }
            other => other?,
        };
        self.crypt
            .learn(&config)
            .map_err(|e| StoreError::Crypt(Box::new(e)))?;
        Ok(config)
    }

    /// Every transaction end recorded for `segment` at archive time.
    pub async fn segment_xacts(
        &self,
        segment: &crate::pg::SegmentName,
    ) -> Result<Vec<crate::pg::wal::XactEnd>, RepoError> {
        let record: WalSegmentRecord = self
            .get_meta(&layout::segment_record(segment), KIND_WAL)
            .await?;
        let tag = layout::record_tag(&record)?;
        let head = record.summary.as_ref().is_some_and(|s| s.head_read);
        let key = layout::segment_xacts(segment, tag.as_ref(), head);
        let stored = self.store.get(&key).await?;
        let raw = codec::decompress(&stored).map_err(|source| RepoError::Codec {
            key: key.clone(),
            source,
        })?;
        let list: Vec<crate::pg::wal::XactEnd> =
            Envelope::open(KIND_WAL_XACTS, &raw).map_err(|source| RepoError::Meta {
                key: key.clone(),
                source,
            })?;
        // The list must be the one the record summarizes.
        if let Some(s) = &record.summary {
            if s.xact_count != list.len() as u64 {
                return Err(RepoError::Inconsistent {
                    key,
                    reason: format!(
                        "it lists {} transaction ends, but segment {segment}'s record counts {}",
                        list.len(),
                        s.xact_count
                    ),
                });
            }
        }
        Ok(list)
    }

    /// Reads an archived non-segment file (history, .backup, .partial).
    pub async fn get_aux(&self, name: &WalFileName) -> Result<Vec<u8>, RepoError> {
        let key = layout::aux_file(name);
        let stored = self.store.get(&key).await?;
        codec::decompress_bounded(&stored, aux_limit(name))
            .map_err(|source| RepoError::Codec { key, source })
    }
}

/// The most an archived non-segment file may decode to: a `.partial` is at
/// most a segment (1 GiB, the largest size); history and `.backup` files
/// are a few lines (a history file gains one per timeline: 64 MiB is far
/// beyond any real one).
fn aux_limit(name: &WalFileName) -> u64 {
    match name {
        WalFileName::Segment(_) | WalFileName::Partial(_) => codec::MAX_DECOMPRESSED,
        WalFileName::History(_) | WalFileName::Backup { .. } => 64 << 20,
    }
}
