//! The local filesystem store, pitr's embedded default. An object is a file
//! under the root; writes go to a temporary file in `<root>/.tmp/` (named
//! `<pid>.<n>`, on the same filesystem), are fsynced, then linked
//! (`Create`, which fails if the name exists) or renamed (`Overwrite`)
//! into place, and the object's directory is fsynced. New directories are
//! fsynced into their parents. A writer killed mid-write leaves its
//! temporary file in `.tmp/` only, where `sweep_abandoned` finds it.
//!
//! Ownership: when pitr runs as root, every file and directory it creates
//! is given to the owner of the repository's root directory, so the
//! `postgres` user running `archive_command` can keep writing.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::{ObjectKey, ObjectMeta, ObjectReader, PutMode, Store, StoreError};

const FILE_MODE: u32 = 0o640;
const DIR_MODE: u32 = 0o750;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where temporary files live, under the root (dot-named: never listed,
/// never a key).
const TMP_DIR: &str = ".tmp";

/// How old an abandoned temporary file must be before it is removed.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// fsync a directory so a rename or new entry in it is durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync directory", dir))
}

impl FsStore {
    /// Opens a store rooted at `root`, which must exist (`create_root`
    /// makes it).
    pub fn new(root: impl Into<PathBuf>) -> FsStore {
        FsStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the root directory (and missing parents) with pitr's modes.
    pub fn create_root(&self) -> Result<(), StoreError> {
        if !self.root.is_dir() {
            std::fs::create_dir_all(&self.root).map_err(io_err("create directory", &self.root))?;
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(io_err("chmod", &self.root))?;
            if let Some(parent) = self.root.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// When running as root, give `path` to the repository root's owner.
    fn adopt(&self, path: &Path) -> Result<(), StoreError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        let meta = std::fs::metadata(&self.root).map_err(io_err("stat", &self.root))?;
        if meta.uid() == 0 {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_err("chown", path))
    }

    /// Creates the directories above `path`, fsyncing each new one into
    /// its parent.
    fn make_parents(&self, path: &Path) -> Result<(), StoreError> {
        let Some(dir) = path.parent() else {
            return Ok(());
        };
        if dir.is_dir() {
            return Ok(());
        }
        self.make_parents(dir)?;
        match std::fs::create_dir(dir) {
            Ok(()) => {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
                    .map_err(io_err("chmod", dir))?;
                self.adopt(dir)?;
                if let Some(parent) = dir.parent() {
                    sync_dir(parent)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_err("create directory", dir)(e)),
        }
    }

    /// A new temporary file's path in `<root>/.tmp/` (made if missing).
    fn temp_path(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(TMP_DIR);
        if !dir.is_dir() {
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(DIR_MODE))
                        .map_err(io_err("chmod", &dir))?;
                    self.adopt(&dir)?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create directory", &dir)(e)),
            }
        }
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!("{}.{n}", std::process::id())))
    }

    /// Removes temporary files left by writers that are gone: the pid in
    /// the name runs no process here, and the file is older than
    /// `min_age` (a writer on another machine sharing this directory is
    /// not seen in /proc; removing its file would only fail its write,
    /// never acknowledge a wrong one, and the age makes even that moot).
    /// Returns how many were removed.
    pub fn sweep_temps(&self, min_age: std::time::Duration) -> Result<usize, StoreError> {
        let dir = self.root.join(TMP_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(pid) = name.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes `data` to a new temporary file beside `key`'s place (making
    /// the directories above it), fsynced when `durable`, else with its
    /// writeback started; given to the repository's owner. Returns its path.
    fn write_temp(
        &self,
        key: &ObjectKey,
        data: &[u8],
        durable: bool,
    ) -> Result<PathBuf, StoreError> {
        let path = self.path(key);
        self.make_parents(&path)?;
        let tmp = self.temp_path()?;
        let write = || -> io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_compat(FILE_MODE)
                .open(&tmp)?;
            f.write_all(data)?;
            if durable {
                f.sync_all()
            } else {
                crate::repo::durable::start_writeback(&f, 0, data.len() as u64);
                Ok(())
            }
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("write", &tmp)(e));
        }
        if let Err(e) = self.adopt(&tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// An object's bytes, read on this thread.
    fn read_object(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(key.clone())),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Moves a complete, fsynced temporary file into place.
    fn publish(&self, key: &ObjectKey, tmp: &Path, mode: PutMode) -> Result<(), StoreError> {
        let path = self.path(key);
        let res = match mode {
            PutMode::Create => match std::fs::hard_link(tmp, &path) {
                Ok(()) => std::fs::remove_file(tmp).map_err(io_err("remove", tmp)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(StoreError::AlreadyExists(key.clone()))
                }
                Err(e) => Err(io_err("link", &path)(e)),
            },
            PutMode::Overwrite => std::fs::rename(tmp, &path).map_err(io_err("rename", &path)),
        };
        if res.is_err() {
            let _ = std::fs::remove_file(tmp);
            return res;
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn list_into(&self, dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<(), StoreError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("list", dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("list", dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ft = entry.file_type().map_err(io_err("stat", &path))?;
            if ft.is_dir() {
                self.list_into(&path, out)?;
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(&self.root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .map(str::to_string);
                if let Some(rel) = rel {
                    if let Ok(key) = ObjectKey::new(rel) {
                        let size = entry.metadata().map_err(io_err("stat", &path))?.len();
                        out.push(ObjectMeta { key, size });
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FsStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn check(&self) -> Result<(), StoreError> {
        tokio::fs::metadata(&self.root)
            .await
            .map(|_| ())
            .map_err(io_err("open repository", &self.root))
    }

    async fn put(&self, key: &ObjectKey, data: &[u8], mode: PutMode) -> Result<(), StoreError> {
        let this = self.clone();
        let key = key.clone();
        let data = data.to_vec();
        tokio::task::spawn_blocking(move || {
            let tmp = this.write_temp(&key, &data, true)?;
            this.publish(&key, &tmp, mode)
        })
        .await
        .map_err(join_err)?
    }

    async fn put_reader(
        &self,
        key: &ObjectKey,
        mut reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        let path = self.path(key);
        {
            let this = self.clone();
            let path = path.clone();
            tokio::task::spawn_blocking(move || this.make_parents(&path))
                .await
                .map_err(join_err)??;
        }
        let tmp = {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.temp_path())
                .await
                .map_err(join_err)??
        };
        let copy = async {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&tmp)
                .await?;
            let n = tokio::io::copy(&mut reader, &mut f).await?;
            f.flush().await?;
            f.sync_all().await?;
            Ok::<u64, io::Error>(n)
        };
        let n = match copy.await {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(io_err("write", &tmp)(e));
            }
        };
        let this = self.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            this.adopt(&tmp)?;
            this.publish(&key, &tmp, mode)
        })
        .await
        .map_err(join_err)??;
        Ok(n)
    }

    async fn put_deferred(&self, key: &ObjectKey, data: Vec<u8>) -> Result<(), StoreError> {
        let this = self.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = this.write_temp(&key, &data, false)?;
            let path = this.path(&key);
            std::fs::rename(&tmp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_err("rename", &path)(e)
            })
        })
        .await
        .map_err(join_err)?
    }

    async fn sweep_abandoned(&self) -> Result<usize, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.sweep_temps(ABANDONED_AFTER))
            .await
            .map_err(join_err)?
    }

    fn get_blocking(&self, key: &ObjectKey) -> Option<Result<Vec<u8>, StoreError>> {
        Some(self.read_object(key))
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            crate::repo::durable::sync_filesystem(&root).map_err(io_err("syncfs", &root))
        })
        .await
        .map_err(join_err)?
    }

    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        let this = self.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || this.read_object(&key))
            .await
            .map_err(join_err)?
    }

    async fn open_read(&self, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        let path = self.path(key);
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(key.clone())),
            Err(e) => Err(io_err("open", &path)(e)),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: m.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let this = self.clone();
        let dir = self.root.join(prefix.trim_end_matches('/'));
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            this.list_into(&dir, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(join_err)?
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &dir)(e)),
        }
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io {
        op: "background task",
        path: String::new(),
        source: io::Error::other(e.to_string()),
    }
}

/// `OpenOptionsExt::mode` under a name that does not clash with tokio's.
trait ModeCompat {
    fn mode_compat(&mut self, mode: u32) -> &mut Self;
}

impl ModeCompat for std::fs::OpenOptions {
    fn mode_compat(&mut self, mode: u32) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::new(s).unwrap()
    }

    /// Finding 11 of issue 10: what a killed writer left is removed once
    /// its process is gone; a live writer's file is never touched.
    #[test]
    fn abandoned_temporary_files_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path().join("repo"));
        s.create_root().unwrap();
        let live = s.temp_path().unwrap();
        std::fs::write(&live, b"being written").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let dead = dir.path().join(format!("repo/{TMP_DIR}/{dead_pid}.7"));
        std::fs::write(&dead, b"abandoned").unwrap();
        // Too young: kept, whoever wrote it.
        assert_eq!(
            s.sweep_temps(std::time::Duration::from_secs(3600)).unwrap(),
            0
        );
        assert_eq!(s.sweep_temps(std::time::Duration::ZERO).unwrap(), 1);
        assert!(!dead.exists());
        assert!(live.exists(), "a live writer's temporary file was removed");
    }

    #[tokio::test]
    async fn create_never_replaces_and_overwrite_does() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path().join("repo"));
        s.create_root().unwrap();
        let k = key("wal/00000001/a");
        s.put(&k, b"one", PutMode::Create).await.unwrap();
        let err = s.put(&k, b"two", PutMode::Create).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)));
        assert_eq!(s.get(&k).await.unwrap(), b"one");
        s.put(&k, b"three", PutMode::Overwrite).await.unwrap();
        assert_eq!(s.get(&k).await.unwrap(), b"three");
        // No temporary files are left behind, and listing hides them.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("repo/wal/00000001"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["a".to_string()]);
        let temps = std::fs::read_dir(dir.path().join("repo/.tmp"))
            .unwrap()
            .count();
        assert_eq!(temps, 0);
        let listed = s.list("wal").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, 5);
        assert!(matches!(
            s.get(&key("wal/missing")).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn streaming_put_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path());
        let k = key("backups/x/files/base/1/1234.zst");
        let data = vec![7u8; 300_000];
        let n = s
            .put_reader(
                &k,
                Box::new(std::io::Cursor::new(data.clone())),
                PutMode::Create,
            )
            .await
            .unwrap();
        assert_eq!(n, 300_000);
        let mut r = s.open_read(&k).await.unwrap();
        let mut back = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut back)
            .await
            .unwrap();
        assert_eq!(back, data);
        s.delete_prefix("backups/x").await.unwrap();
        assert!(s.head(&k).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn deferred_puts_are_visible_whole_and_sync_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path().join("repo"));
        s.create_root().unwrap();
        let k = key("backups/x/files/3.0.zst");
        s.put_deferred(&k, vec![1u8; 70_000]).await.unwrap();
        s.put_deferred(&k, vec![2u8; 10]).await.unwrap();
        s.sync().await.unwrap();
        assert_eq!(s.get(&k).await.unwrap(), vec![2u8; 10]);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("repo/backups/x/files"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["3.0.zst".to_string()]);
    }

    #[tokio::test]
    async fn fs_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::new(dir.path().join("repo"));
        s.create_root().unwrap();
        crate::repo::store::conformance::suite(std::sync::Arc::new(s)).await;
    }

    #[test]
    fn keys_are_checked() {
        for bad in ["", "/a", "a//b", "a/../b", "a/./b", ".tmp", "a/.x"] {
            assert!(ObjectKey::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(key("a/b/c.zst").file_name(), "c.zst");
    }
}
