//! The prefetch spool behind `pitr wal-fetch --spool DIR`: replay asks
//! `restore_command` for one segment at a time and waits for each, so a
//! background prefetcher (`pitr wal-prefetch`, started by wal-fetch when
//! none is running) keeps the next `count` segments fetched, verified and
//! decompressed in DIR, `jobs` at a time, and wal-fetch only renames the
//! one asked for into place. pgBackRest's asynchronous archive-get works
//! the same way.
//!
//! A hit needs no pitr process at all: `pitr restore` writes
//! `restore_command = 'mv -f DIR/%f %p 2>/dev/null || pitr wal-fetch …'`,
//! and the prefetcher moves its window on when it sees a segment it
//! fetched taken from the spool.
//!
//! Files in DIR: `<segment>` (complete and verified, ready to hand over),
//! `.<segment>.tmp` (being written), `.requested` (the last segment
//! Postgres asked for: where the window starts), `.lock` (held by the
//! running prefetcher), `.log` (its errors). The spool stays bounded: the
//! prefetcher removes every segment outside the window, and everything
//! when it exits after `IDLE` without a new request or when DIR is removed
//! (as `pitr restore` does once recovery is over).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use tokio::task::JoinSet;

use crate::pg::{SegNo, SegmentName, WalFileName};
use crate::repo::Repo;

use super::wal_fetch::{fetch, write_fetched, FetchError};

/// The prefetcher exits after this long without a new request.
pub const IDLE: Duration = Duration::from_secs(10);
/// How long wal-fetch waits for a segment the prefetcher is writing.
const INFLIGHT_WAIT: Duration = Duration::from_secs(30);
/// A segment the repository did not have is asked again after this.
const ABSENT_RETRY: Duration = Duration::from_millis(500);
const REQUESTED: &str = ".requested";
const LOCK: &str = ".lock";

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tmp_name(name: &str) -> String {
        format!(".{name}.tmp")
    }

    /// Records that Postgres asked for `name` (creating the spool).
    pub fn note_request(&self, name: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".requested.{}", std::process::id()));
        std::fs::write(&tmp, name)?;
        std::fs::rename(&tmp, self.dir.join(REQUESTED))
    }

    fn requested(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(REQUESTED))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Moves prefetched `name` to `dest` if the spool has it, waiting for
    /// it while the running prefetcher is writing it. False: fetch it
    /// directly.
    pub fn take(&self, name: &str, dest: &Path) -> io::Result<bool> {
        let src = self.dir.join(name);
        let tmp = self.dir.join(Self::tmp_name(name));
        let deadline = Instant::now() + INFLIGHT_WAIT;
        loop {
            match std::fs::rename(&src, dest) {
                Ok(()) => return Ok(true),
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EXDEV as i32) => {
                    // Another filesystem: copy, then drop the spooled one.
                    let raw = std::fs::read(&src)?;
                    let part = dest.with_extension("pitr-spool-tmp");
                    std::fs::write(&part, &raw)?;
                    std::fs::rename(&part, dest)?;
                    let _ = std::fs::remove_file(&src);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if !tmp.exists() || !self.prefetcher_running() || Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether a prefetcher holds the spool's lock.
    pub fn prefetcher_running(&self) -> bool {
        match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))
        {
            // Taken and at once released (on drop) when nobody holds it.
            Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
            Err(_) => false,
        }
    }

    /// Takes the lock for a prefetcher's lifetime; None if one runs.
    fn lock(&self) -> io::Result<Option<Flock<std::fs::File>>> {
        std::fs::create_dir_all(&self.dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))?;
        Ok(Flock::lock(f, FlockArg::LockExclusiveNonblock).ok())
    }

    /// Segment files now in the spool (complete ones only).
    fn present(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Removes every segment (complete or partial) not in `keep`.
    fn clean(&self, keep: &[String]) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let seg = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .unwrap_or(&name);
            let ours = !name.starts_with('.') || name.ends_with(".tmp");
            if ours && !keep.iter().any(|k| k == seg) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// `wal-fetch --spool DIR`: records the request, makes sure a prefetcher
/// runs (`start_prefetcher`, when `prefetch` > 0 and none holds the
/// spool), and hands `name` over to `dest` if it is spooled. True when it
/// was; any trouble with the spool only costs speed (logged, false): the
/// caller then fetches directly.
pub fn fetch_spooled(
    dir: &Path,
    prefetch: usize,
    name: &str,
    dest: &Path,
    start_prefetcher: impl FnOnce() -> io::Result<()>,
) -> bool {
    if !matches!(WalFileName::parse(name), Ok(WalFileName::Segment(_))) {
        return false;
    }
    let spool = Spool::new(dir);
    if let Err(e) = spool.note_request(name) {
        tracing::warn!("prefetch spool {}: {e}", dir.display());
        return false;
    }
    if prefetch > 0 && !spool.prefetcher_running() {
        if let Err(e) = start_prefetcher() {
            tracing::warn!("cannot start the WAL prefetcher: {e}");
        }
    }
    match spool.take(name, dest) {
        Ok(hit) => hit,
        Err(e) => {
            tracing::warn!("prefetch spool {}: {e}", dir.display());
            false
        }
    }
}

/// Removes a spool for good, even while its prefetcher is writing: the
/// directory is first renamed away (the prefetcher sees it gone, and can
/// no longer create anything in it by path), then deleted.
pub fn remove(dir: &Path) -> io::Result<()> {
    let Some(name) = dir.file_name() else {
        return Ok(());
    };
    let doomed = dir.with_file_name(format!(
        ".{}.removing-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    match std::fs::rename(dir, &doomed) {
        Ok(()) => std::fs::remove_dir_all(&doomed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The `count` segment names after `name` on its timeline.
fn window(name: &str, count: usize, size: crate::pg::WalSegmentSize) -> Vec<String> {
    let Ok(WalFileName::Segment(seg)) = WalFileName::parse(name) else {
        return Vec::new();
    };
    let Ok(first) = seg.segno(size) else {
        return Vec::new();
    };
    (1..=count as u64)
        .map(|i| SegmentName::new(seg.timeline(), SegNo::new(first.get() + i), size).to_string())
        .collect()
}

/// Runs the prefetcher until idle or until the spool is removed. Returns
/// at once if another prefetcher holds the spool.
pub async fn prefetch(
    repo: &Repo,
    spool: &Spool,
    count: usize,
    jobs: usize,
) -> Result<(), FetchError> {
    let werr = |source| FetchError::Write {
        path: spool.dir().display().to_string(),
        source,
    };
    let Some(_lock) = spool.lock().map_err(werr)? else {
        return Ok(());
    };
    let size = repo.config().await?.wal_segment_size;
    // Leftovers of a prefetcher that was killed mid-write.
    if let Some(req) = spool.requested() {
        spool.clean(&window(&req, count, size));
    }
    let mut last_request: Option<String> = None;
    // Where the window starts: the last segment asked of wal-fetch, or a
    // later one taken from the spool without it (restore_command's `mv`).
    let mut base: Option<String> = None;
    let mut fetched: HashSet<String> = HashSet::new();
    let mut changed = Instant::now();
    let mut absent: HashMap<String, Instant> = HashMap::new();
    loop {
        if !spool.dir().is_dir() {
            return Ok(());
        }
        let req = spool.requested();
        if req != last_request {
            last_request = req.clone();
            base = req;
            changed = Instant::now();
        }
        let present = spool.present().map_err(werr)?;
        for taken in fetched.iter().filter(|n| !present.contains(n)) {
            // Names sort by timeline, then position: a later one taken
            // means replay has moved on (to a newer timeline, perhaps).
            if base.as_ref().is_none_or(|b| taken > b) {
                base = Some(taken.clone());
            }
            changed = Instant::now();
        }
        fetched.retain(|n| present.contains(n));
        if changed.elapsed() >= IDLE {
            spool.clean(&[]);
            return Ok(());
        }
        let Some(from) = base.clone() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let want = window(&from, count, size);
        spool.clean(&want);
        fetched.retain(|n| want.contains(n));
        absent.retain(|_, at| at.elapsed() < ABSENT_RETRY);
        // In window order, stopping at the first one the archive lacks.
        let missing: Vec<String> = want
            .iter()
            .take_while(|n| !absent.contains_key(*n))
            .filter(|n| !present.contains(n))
            .take(jobs.max(1))
            .cloned()
            .collect();
        if missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let mut set = JoinSet::new();
        for name in missing {
            let repo = repo.clone();
            let dir = spool.dir().to_path_buf();
            set.spawn(async move {
                let r = fetch_into(&repo, &dir, &name).await;
                (name, r)
            });
        }
        while let Some(done) = set.join_next().await {
            let Ok((name, r)) = done else { continue };
            match r {
                Ok(()) => {
                    fetched.insert(name);
                }
                Err(FetchError::NotFound(_)) => {
                    absent.insert(name, Instant::now());
                }
                // The spool was removed under us: recovery is over.
                Err(FetchError::Write { .. }) if !spool.dir().is_dir() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Fetches one segment into the spool: written as `.name.tmp` (which
/// exists from before the fetch, so wal-fetch waits for it), then renamed.
async fn fetch_into(repo: &Repo, dir: &Path, name: &str) -> Result<(), FetchError> {
    let tmp = dir.join(Spool::tmp_name(name));
    tokio::fs::write(&tmp, b"")
        .await
        .map_err(|source| FetchError::Write {
            path: tmp.display().to_string(),
            source,
        })?;
    let fetched = match fetch(repo, name).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    write_fetched(name, fetched, &tmp, &dir.join(name)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::WalSegmentSize;

    #[test]
    fn window_follows_the_timeline_across_log_boundaries() {
        let size = WalSegmentSize::new(16 << 20).unwrap();
        assert_eq!(
            window("0000000200000001000000FE", 3, size),
            [
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        assert!(window("00000002.history", 3, size).is_empty());
    }

    #[test]
    fn take_hands_over_spooled_segments_and_clean_bounds_the_spool() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path().join("spool"));
        spool.note_request("000000010000000000000001").unwrap();
        assert_eq!(
            spool.requested().as_deref(),
            Some("000000010000000000000001")
        );
        std::fs::write(spool.dir().join("000000010000000000000002"), b"two").unwrap();
        std::fs::write(spool.dir().join("000000010000000000000009"), b"far").unwrap();
        std::fs::write(spool.dir().join(".000000010000000000000007.tmp"), b"").unwrap();
        let dest = d.path().join("RECOVERYXLOG");
        assert!(spool.take("000000010000000000000002", &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        // Not spooled, and no prefetcher writing it: fetch directly.
        assert!(!spool.take("000000010000000000000003", &dest).unwrap());
        // A claimed name with no prefetcher alive is not waited for.
        assert!(!spool.take("000000010000000000000007", &dest).unwrap());
        spool.clean(&["000000010000000000000003".to_string()]);
        assert!(spool.present().unwrap().is_empty());
        assert!(!spool.dir().join(".000000010000000000000007.tmp").exists());
        assert!(spool.dir().join(REQUESTED).exists());
        // The lock: free until a prefetcher takes it.
        assert!(!spool.prefetcher_running());
        let held = spool.lock().unwrap();
        assert!(held.is_some());
        assert!(spool.prefetcher_running());
        assert!(spool.lock().unwrap().is_none());
        drop(held);
        assert!(!spool.prefetcher_running());
    }
}
