//! A store wrapper that injects faults: writes whose key matches a rule
//! fail as a full disk would (after nothing was written), and reads of
//! matching keys fail as a broken network would. For tests of what pitr
//! promises when storage fails part-way (see docs/reliability.md); it
//! changes nothing else, so it passes the same conformance suite as the
//! store it wraps when no rule matches.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{ObjectKey, ObjectMeta, ObjectReader, PutMode, Store, StoreError};

type Rule = Box<dyn Fn(&ObjectKey) -> bool + Send + Sync>;

/// Wraps `inner`; faults are switched on and off while in use.
pub struct FaultStore {
    inner: Arc<dyn Store>,
    fail_writes: Mutex<Option<Rule>>,
    fail_reads: Mutex<Option<Rule>>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn injected(op: &'static str, key: &ObjectKey) -> StoreError {
    StoreError::Io {
        op,
        path: key.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "injected fault: no space left on device",
        ),
    }
}

impl FaultStore {
    pub fn new(inner: Arc<dyn Store>) -> FaultStore {
        FaultStore {
            inner,
            fail_writes: Mutex::new(None),
            fail_reads: Mutex::new(None),
        }
    }

    /// From now on, every write (put, deferred put, delete) of a key for
    /// which `rule` holds fails; `None` heals.
    pub fn fail_writes(&self, rule: Option<Rule>) {
        if let Ok(mut r) = self.fail_writes.lock() {
            *r = rule;
        }
    }

    /// From now on, every read (get, open, head) of a key for which
    /// `rule` holds fails; `None` heals.
    pub fn fail_reads(&self, rule: Option<Rule>) {
        if let Ok(mut r) = self.fail_reads.lock() {
            *r = rule;
        }
    }

    fn check(
        rules: &Mutex<Option<Rule>>,
        op: &'static str,
        key: &ObjectKey,
    ) -> Result<(), StoreError> {
        let hit = rules
            .lock()
            .map(|r| r.as_ref().is_some_and(|rule| rule(key)))
            .unwrap_or(false);
        if hit {
            Err(injected(op, key))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FaultStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    async fn put(&self, key: &ObjectKey, data: &[u8], mode: PutMode) -> Result<(), StoreError> {
        Self::check(&self.fail_writes, "write", key)?;
        self.inner.put(key, data, mode).await
    }
    async fn put_reader(
        &self,
        key: &ObjectKey,
        reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        Self::check(&self.fail_writes, "write", key)?;
        self.inner.put_reader(key, reader, mode).await
    }
    async fn put_deferred(&self, key: &ObjectKey, data: Vec<u8>) -> Result<(), StoreError> {
        Self::check(&self.fail_writes, "write", key)?;
        self.inner.put_deferred(key, data).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
    async fn sweep_abandoned(&self) -> Result<usize, StoreError> {
        self.inner.sweep_abandoned().await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        Self::check(&self.fail_reads, "read", key)?;
        self.inner.get(key).await
    }
    async fn open_read(&self, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        Self::check(&self.fail_reads, "read", key)?;
        self.inner.open_read(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        Self::check(&self.fail_reads, "stat", key)?;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        Self::check(&self.fail_writes, "delete", key)?;
        self.inner.delete(key).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        self.inner.delete_prefix(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::store::MemoryStore;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::new(s).unwrap()
    }

    #[tokio::test]
    async fn matching_writes_fail_as_a_full_disk_and_write_nothing() {
        let inner = Arc::new(MemoryStore::new());
        let s = FaultStore::new(inner.clone());
        s.fail_writes(Some(Box::new(|k: &ObjectKey| {
            k.as_str().starts_with("wal/")
        })));
        let wal = key("wal/00000001/a");
        for err in [
            s.put(&wal, b"x", PutMode::Create).await.unwrap_err(),
            s.put_deferred(&wal, b"x".to_vec()).await.unwrap_err(),
            s.put_reader(
                &wal,
                Box::new(std::io::Cursor::new(b"x".to_vec())),
                PutMode::Create,
            )
            .await
            .unwrap_err(),
        ] {
            assert!(err.retryable(), "{err}");
            assert!(err.to_string().contains("no space left"), "{err}");
        }
        assert!(inner.head(&wal).await.unwrap().is_none());
        // Keys the rule does not match are written as usual.
        s.put(&key("catalog/x"), b"y", PutMode::Create)
            .await
            .unwrap();
        assert_eq!(inner.get(&key("catalog/x")).await.unwrap(), b"y");
        // Healed: the same write now lands.
        s.fail_writes(None);
        s.put(&wal, b"x", PutMode::Create).await.unwrap();
        assert_eq!(inner.get(&wal).await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn matching_reads_fail_and_deletes_count_as_writes() {
        let inner = Arc::new(MemoryStore::new());
        let s = FaultStore::new(inner.clone());
        let k = key("backups/1/files/0.zst");
        s.put(&k, b"data", PutMode::Create).await.unwrap();
        s.fail_reads(Some(Box::new(|k: &ObjectKey| k.as_str().ends_with(".zst"))));
        assert!(s.get(&k).await.is_err());
        assert!(s.open_read(&k).await.is_err());
        assert!(s.head(&k).await.is_err());
        s.fail_reads(None);
        assert_eq!(s.get(&k).await.unwrap(), b"data");
        s.fail_writes(Some(Box::new(|_: &ObjectKey| true)));
        assert!(s.delete(&k).await.is_err());
        assert_eq!(inner.get(&k).await.unwrap(), b"data");
    }
}
