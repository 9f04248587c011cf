//! A store that keeps its objects in memory, for tests of what sits above
//! the store (the repository, capture, recovery) without a disk or a
//! server. It keeps the contract every store keeps (`PutMode::Create`
//! never replaces, a put is whole or absent, listing is recursive and
//! sorted) and passes the same conformance suite as `fs` and `s3`; it
//! keeps nothing across processes, so production never opens one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use super::{ObjectKey, ObjectMeta, ObjectReader, PutMode, Store, StoreError};

/// Objects by key; clones share them.
#[derive(Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<ObjectKey, Arc<Vec<u8>>>>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// Whether `key` lies under `prefix/` (the listing rule of every store:
/// `catalog` holds `catalog/a` but not `catalogue`).
fn under(key: &ObjectKey, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || key
            .as_str()
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The map; a writer that panicked mid-insert cannot leave half an
    /// object (each value is inserted whole), so a poisoned lock is safe
    /// to take over.
    fn objects(&self) -> MutexGuard<'_, BTreeMap<ObjectKey, Arc<Vec<u8>>>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, key: &ObjectKey, data: Vec<u8>, mode: PutMode) -> Result<(), StoreError> {
        let mut objects = self.objects();
        if mode == PutMode::Create && objects.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.clone()));
        }
        objects.insert(key.clone(), Arc::new(data));
        Ok(())
    }

    fn read(&self, key: &ObjectKey) -> Result<Arc<Vec<u8>>, StoreError> {
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.clone()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_string()
    }
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put(&self, key: &ObjectKey, data: &[u8], mode: PutMode) -> Result<(), StoreError> {
        self.insert(key, data.to_vec(), mode)
    }
    async fn put_reader(
        &self,
        key: &ObjectKey,
        mut reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        // Read it all first: a reader that fails part-way leaves nothing.
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .await
            .map_err(|source| StoreError::Io {
                op: "read source for",
                path: key.to_string(),
                source,
            })?;
        let n = data.len() as u64;
        self.insert(key, data, mode)?;
        Ok(n)
    }
    fn get_blocking(&self, key: &ObjectKey) -> Option<Result<Vec<u8>, StoreError>> {
        Some(self.read(key).map(|d| d.as_ref().clone()))
    }
    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        self.read(key).map(|d| d.as_ref().clone())
    }
    async fn open_read(&self, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        let data = self.read(key)?;
        Ok(Box::new(std::io::Cursor::new(data.as_ref().clone())))
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.objects().get(key).map(|d| ObjectMeta {
            key: key.clone(),
            size: d.len() as u64,
        }))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // BTreeMap iterates in key order: sorted, as the trait promises.
        Ok(self
            .objects()
            .iter()
            .filter(|(k, _)| under(k, prefix))
            .map(|(k, d)| ObjectMeta {
                key: k.clone(),
                size: d.len() as u64,
            })
            .collect())
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.objects().remove(key);
        Ok(())
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        self.objects().retain(|k, _| !under(k, prefix));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::store::{conformance, FaultStore, FsStore};

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        conformance::suite(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn fault_store_without_rules_passes_the_suite_over_memory_and_fs() {
        conformance::suite(Arc::new(FaultStore::new(Arc::new(MemoryStore::new())))).await;
        let dir = tempfile::tempdir().unwrap();
        let fs = FsStore::new(dir.path().join("repo"));
        fs.create_root().unwrap();
        conformance::suite(Arc::new(FaultStore::new(Arc::new(fs)))).await;
    }

    #[tokio::test]
    async fn a_failing_streamed_put_leaves_no_object() {
        struct Broken;
        impl tokio::io::AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("connection reset")))
            }
        }
        let s = MemoryStore::new();
        let k = ObjectKey::new("wal/00000001/x").unwrap();
        let err = s
            .put_reader(&k, Box::new(Broken), PutMode::Create)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(s.head(&k).await.unwrap().is_none());
    }
}
