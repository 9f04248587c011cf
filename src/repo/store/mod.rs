//! The object store under a repository: a small trait with one backend per
//! kind of storage (`fs`, `s3`; `memory` for tests; `fault` wraps any of
//! them to inject faults in tests), and the one conformance suite they all
//! pass (`conformance`). Keys are typed, relative,
//! `/`-separated paths. Every write is atomic and durable when it returns;
//! `PutMode::Create` never replaces an existing object.

pub mod conformance;
pub mod fault;
pub mod fs;
pub mod memory;
pub mod s3;

use std::fmt;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use fault::FaultStore;
pub use fs::FsStore;
pub use memory::MemoryStore;
pub use s3::{S3Settings, S3Store};

/// A validated object key: relative, `/`-separated, no `.`/`..` parts,
/// no empty parts, no leading dot in any part (dot-names are the store's
/// temporary files).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn new(s: impl Into<String>) -> Result<ObjectKey, StoreError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.split('/')
                .all(|p| !p.is_empty() && !p.starts_with('.') && !p.contains('\0'));
        if ok {
            Ok(ObjectKey(s))
        } else {
            Err(StoreError::BadKey(s))
        }
    }

    /// For keys assembled from parts that cannot break the rules (hex
    /// digits, fixed words); see `layout`.
    pub(crate) fn trusted(s: String) -> ObjectKey {
        debug_assert!(ObjectKey::new(s.clone()).is_ok(), "bad key {s:?}");
        ObjectKey(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path part.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with `AlreadyExists` if the key exists; never replace.
    Create,
    /// Replace atomically.
    Overwrite,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found")]
    NotFound(ObjectKey),
    #[error("object {0} already exists")]
    AlreadyExists(ObjectKey),
    #[error("invalid object key {0:?}")]
    BadKey(String),
    #[error("{op} {target}: {}{message}{}", .code.as_ref().map(|c| format!("{c}: ")).unwrap_or_default(), .status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Remote {
        op: &'static str,
        target: String,
        code: Option<String>,
        status: Option<u16>,
        message: String,
        retryable: bool,
    },
    /// Encryption at rest refused the object or the keys
    /// (`repo::crypt`).
    #[error(transparent)]
    Crypt(Box<crate::repo::crypt::CryptError>),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether trying again may succeed (a full disk, a flaky network);
    /// not-found, conflicts and bad keys never do.
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Io { .. } => true,
            StoreError::Remote { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Human-readable location, for messages (never contains secrets).
    fn describe(&self) -> String;
    /// Whether the store is reachable and its container exists (the
    /// bucket; the root directory), with an error that says which.
    async fn check(&self) -> Result<(), StoreError>;
    async fn put(&self, key: &ObjectKey, data: &[u8], mode: PutMode) -> Result<(), StoreError>;
    /// Streams `reader` into `key`; returns the bytes written.
    async fn put_reader(
        &self,
        key: &ObjectKey,
        reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError>;
    /// Writes a whole object (replacing any) whose durability may wait for
    /// the next `sync`: it is complete and visible under `key` when this
    /// returns, but only `sync` makes it survive a crash. For many objects
    /// written before one commit marker (a backup's files before its
    /// manifest). Stores whose puts are durable anyway need not override.
    async fn put_deferred(&self, key: &ObjectKey, data: Vec<u8>) -> Result<(), StoreError> {
        self.put(key, &data, PutMode::Overwrite).await
    }
    /// Reads the object on the calling (blocking) thread, for stores that
    /// keep objects as local files, so a worker thread needs no trip
    /// through the async runtime; None for remote stores (use `get`).
    fn get_blocking(&self, _key: &ObjectKey) -> Option<Result<Vec<u8>, StoreError>> {
        None
    }
    /// Removes what writers that provably died left behind (the fs
    /// store's temporary files); returns how many. S3 keeps no partial
    /// objects (an abandoned multipart upload is the bucket lifecycle's
    /// to expire).
    async fn sweep_abandoned(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
    /// Makes every object written with `put_deferred` durable.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError>;
    async fn open_read(&self, key: &ObjectKey) -> Result<ObjectReader, StoreError>;
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError>;
    /// Every object whose key starts with `prefix/` (recursively), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;
    /// Deletes every object under `prefix/`.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError>;
}
