//! The parallel copy: every walked file read, hashed, compressed and
//! stored, whole or in chunks of `CHUNK_BYTES`, `jobs` pieces in flight;
//! `global/pg_control` last and alone, then one sync of the store. What each
//! piece turned into goes to `manifest` for the manifest entries.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::throttle::{Throttle, SLICE};
use super::walk::Entry;
use super::{BackupError, BackupEvent};
use crate::catalog::model::FileKind;
use crate::catalog::ContentHash;
use crate::repo::{codec, layout, Repo};

pub use crate::repo::layout::CHUNK_BYTES;

/// What one worker copies: a whole small file, or one chunk of a big one.
#[derive(Clone, Copy)]
pub(super) enum Piece {
    Whole,
    Chunk { c: usize, offset: u64, len: u64 },
}

/// What a piece turned into (None: the file vanished, a dropped relation
/// whose truth WAL replay recreates).
pub(super) type PieceResult = Option<(u64, u64, ContentHash)>;

/// Every entry's finished pieces, in the walk's order.
pub(super) type Copied = Vec<Vec<(Piece, PieceResult)>>;

/// Copies every entry: whole small files and chunks of big ones are read,
/// hashed and compressed on blocking threads and written to the store,
/// `jobs` pieces in flight. pg_control goes last, alone, then the store is
/// made durable in one step (the manifest, written after, commits it).
pub(super) async fn copy_files(
    repo: &Repo,
    id: &str,
    entries: Arc<Vec<Entry>>,
    jobs: usize,
    throttle: Option<Arc<Throttle>>,
    on_event: Arc<impl Fn(BackupEvent) + Send + Sync + 'static>,
) -> Result<Copied, BackupError> {
    let mut units: Vec<(usize, Piece)> = Vec::new();
    let mut control = None;
    for (n, e) in entries.iter().enumerate() {
        if e.kind != FileKind::File {
            continue;
        }
        if e.rel == "global/pg_control" {
            control = Some(n);
        } else if e.size <= CHUNK_BYTES {
            units.push((n, Piece::Whole));
        } else {
            let mut offset = 0;
            let mut c = 0;
            while offset < e.size {
                let len = CHUNK_BYTES.min(e.size - offset);
                units.push((n, Piece::Chunk { c, offset, len }));
                offset += len;
                c += 1;
            }
        }
    }
    let mut done: Copied = vec![Vec::new(); entries.len()];
    let mut set: JoinSet<Result<(usize, Piece, PieceResult), BackupError>> = JoinSet::new();
    let spawn = |set: &mut JoinSet<_>, n: usize, piece: Piece| {
        let repo = repo.clone();
        let entries = entries.clone();
        let id = id.to_string();
        let on_event = on_event.clone();
        let throttle = throttle.clone();
        set.spawn(async move {
            let r = copy_piece(&repo, &id, n, &entries[n], piece, throttle).await?;
            if let Some((size, _, _)) = &r {
                on_event(BackupEvent::FileDone { bytes: *size });
            }
            Ok((n, piece, r))
        });
    };
    for (n, piece) in units {
        while set.len() >= jobs {
            if let Some(j) = set.join_next().await {
                let (i, p, r) = joined(j)?;
                done[i].push((p, r));
            }
        }
        spawn(&mut set, n, piece);
    }
    while let Some(j) = set.join_next().await {
        let (i, p, r) = joined(j)?;
        done[i].push((p, r));
    }
    if let Some(n) = control {
        spawn(&mut set, n, Piece::Whole);
        if let Some(j) = set.join_next().await {
            let (i, p, r) = joined(j)?;
            done[i].push((p, r));
        }
    }
    repo.store().sync().await?;
    Ok(done)
}

fn joined<T>(r: Result<Result<T, BackupError>, tokio::task::JoinError>) -> Result<T, BackupError> {
    r.map_err(|e| BackupError::Copy {
        path: String::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Reads, hashes, compresses and stores one piece; returns (raw bytes,
/// stored bytes, content hash), or None if the file is gone.
async fn copy_piece(
    repo: &Repo,
    id: &str,
    n: usize,
    entry: &Entry,
    piece: Piece,
    throttle: Option<Arc<Throttle>>,
) -> Result<PieceResult, BackupError> {
    let key = match piece {
        Piece::Whole => layout::backup_file(id, n)?,
        Piece::Chunk { c, .. } => layout::backup_chunk(id, n, c)?,
    };
    let abs = entry.abs.clone();
    let rel = entry.rel.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let copy_err = |source| BackupError::Copy {
            path: rel.clone(),
            source,
        };
        // One chunk buffer per worker thread, reused: a fresh 8 MiB buffer
        // per chunk costs 2048 page faults, as much CPU as hashing it.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            let Some(got) = read_piece(&abs, piece, buf, throttle.as_deref()).map_err(copy_err)?
            else {
                return Ok(None);
            };
            let raw = &buf[..got];
            let (stored, hash) = codec::encode_chunk(raw).map_err(copy_err)?;
            Ok::<_, BackupError>(Some((got as u64, stored, hash)))
        })
    })
    .await
    .map_err(|e| BackupError::Copy {
        path: entry.rel.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let Some((size, stored, sha)) = encoded else {
        return Ok(None);
    };
    let stored_len = stored.len() as u64;
    repo.store().put_deferred(&key, stored).await?;
    Ok(Some((size, stored_len, sha)))
}

/// Reads one piece as it is now into `buf`, returning how many bytes it
/// has: a whole file (up to one chunk; a file that grew since the walk is
/// replayed from WAL), or up to one chunk at its offset (short or empty
/// past a truncation). None if the file no longer exists. With a
/// throttle, reads are at most `SLICE` bytes, each charged to it.
fn read_piece(
    abs: &Path,
    piece: Piece,
    buf: &mut Vec<u8>,
    throttle: Option<&Throttle>,
) -> std::io::Result<Option<usize>> {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::File::open(abs) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (offset, want) = match piece {
        Piece::Whole => (0, CHUNK_BYTES),
        Piece::Chunk { offset, len, .. } => (offset, len),
    };
    let want = usize::try_from(want).map_err(std::io::Error::other)?;
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut got = 0;
    let slice = if throttle.is_some() { SLICE } else { want };
    while got < want {
        let end = want.min(got + slice);
        match file.read_at(&mut buf[got..end], offset + got as u64) {
            Ok(0) => break,
            Ok(k) => {
                got += k;
                if let Some(t) = throttle {
                    t.charge(k as u64);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(got))
}

#[cfg(test)]
mod tests {
    use super::super::{manifest, walk::walk};
    use super::*;
    use crate::catalog::BackupManifest;

    /// Finding 1 of issue 10: a file that vanishes during the copy (a
    /// dropped relation) must not shift where the manifest says the files
    /// after it are stored: each one restores from its own objects.
    #[tokio::test]
    async fn a_file_that_vanishes_mid_copy_shifts_no_other_file() {
        let data = tempfile::tempdir().unwrap();
        let p = data.path();
        std::fs::create_dir_all(p.join("base/1")).unwrap();
        std::fs::create_dir_all(p.join("global")).unwrap();
        let big = (0..(CHUNK_BYTES as usize + 5000))
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>();
        for (f, body) in [
            ("base/1/100", b"first".to_vec()),
            ("base/1/200", b"dropped".to_vec()),
            ("base/1/300", b"third".to_vec()),
            ("base/1/400", big.clone()),
            ("global/pg_control", b"control".to_vec()),
        ] {
            std::fs::write(p.join(f), body).unwrap();
        }
        let entries = Arc::new(walk(p).unwrap());
        std::fs::remove_file(p.join("base/1/200")).unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let repo = Repo::with_store(
            crate::repo::RepoLocation::Local(store_dir.path().to_path_buf()),
            Arc::new(crate::repo::store::FsStore::new(store_dir.path())),
        );
        let copied = copy_files(&repo, "b1", entries.clone(), 2, None, Arc::new(|_| {}))
            .await
            .unwrap();
        let files = manifest::files(&entries, copied);
        assert!(files.iter().all(|f| f.path != "base/1/200"));
        let manifest = BackupManifest {
            id: "b1".into(),
            files,
            backup_label: String::new(),
            tablespace_map: None,
        };
        let out = tempfile::tempdir().unwrap();
        let restored = out.path().join("data");
        std::fs::create_dir(&restored).unwrap();
        crate::recover::materialize::materialize(&repo, &manifest, &restored, 2, Arc::new(|_| {}))
            .await
            .unwrap();
        for (f, body) in [
            ("base/1/100", &b"first"[..]),
            ("base/1/300", b"third"),
            ("base/1/400", &big),
            ("global/pg_control", b"control"),
        ] {
            assert!(
                std::fs::read(restored.join(f)).unwrap() == body,
                "{f} restored wrong"
            );
        }
        assert!(!restored.join("base/1/200").exists());
    }
}
