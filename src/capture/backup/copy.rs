//! The parallel copy: every walked file read, hashed, compressed and
//! stored, whole or in chunks of `CHUNK_BYTES`, `jobs` pieces in flight;
//! `global/pg_control` last and alone, then one sync of the store. What each
//! piece turned into goes to `manifest` for the manifest entries. In an
//! incremental (`incremental::Basis`), a file compared whole with its
//! parent's hash stores nothing when equal, and a relation file is read in
//! regions of `CHUNK_BYTES` whose changed blocks (`pg::page`) are stored
//! together as the region's chunk object.

use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::incremental::Basis;
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
    Chunk {
        c: usize,
        offset: u64,
        len: u64,
    },
    /// Region `c` of a relation file, judged block by block.
    Blocks {
        c: usize,
        offset: u64,
        len: u64,
    },
}

/// What a piece turned into (None: the file vanished, a dropped relation
/// whose truth WAL replay recreates).
pub(super) type PieceResult = Option<Got>;

#[derive(Clone, Debug)]
pub(super) enum Got {
    /// Stored: (raw bytes, stored bytes, content hash).
    Stored(u64, u64, ContentHash),
    /// Read whole (this many bytes) and equal to the parent's: nothing
    /// stored.
    Unchanged(u64),
    /// A region read (`read` bytes, rounded up to whole blocks) whose
    /// `blocks` (file block numbers, ascending) are stored, concatenated,
    /// in its chunk object (`stored` bytes, `hash` of the raw blocks);
    /// no object when `blocks` is empty.
    Blocks {
        read: u64,
        blocks: Vec<u32>,
        stored: u64,
        hash: Option<ContentHash>,
    },
}

impl Got {
    /// Bytes of the file this piece read (progress).
    fn read(&self) -> u64 {
        match self {
            Got::Stored(n, ..) | Got::Unchanged(n) | Got::Blocks { read: n, .. } => *n,
        }
    }
}

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
    basis: Arc<Vec<Basis>>,
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
        } else if matches!(basis.get(n), Some(Basis::Blocks { .. })) {
            let mut offset = 0;
            let mut c = 0;
            while offset < e.size {
                let len = CHUNK_BYTES.min(e.size - offset);
                units.push((n, Piece::Blocks { c, offset, len }));
                offset += len;
                c += 1;
            }
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
        let basis = basis.get(n).cloned().unwrap_or(Basis::Own);
        let id = id.to_string();
        let on_event = on_event.clone();
        let throttle = throttle.clone();
        set.spawn(async move {
            let r = copy_piece(&repo, &id, n, &entries[n], piece, basis, throttle).await?;
            if let Some(got) = &r {
                on_event(BackupEvent::FileDone { bytes: got.read() });
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

/// Reads, hashes, compresses and stores one piece as `basis` says; None
/// if the file is gone.
async fn copy_piece(
    repo: &Repo,
    id: &str,
    n: usize,
    entry: &Entry,
    piece: Piece,
    basis: Basis,
    throttle: Option<Arc<Throttle>>,
) -> Result<PieceResult, BackupError> {
    let key = match piece {
        Piece::Whole => layout::backup_file(id, n)?,
        Piece::Chunk { c, .. } | Piece::Blocks { c, .. } => layout::backup_chunk(id, n, c)?,
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
            static DELTA: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            let Some(got) = read_piece(&abs, piece, buf, throttle.as_deref()).map_err(copy_err)?
            else {
                return Ok(None);
            };
            if let (Piece::Blocks { offset, .. }, Basis::Blocks { .. }) = (piece, &basis) {
                return DELTA.with_borrow_mut(|delta| {
                    let (read, blocks) = changed_blocks(buf, got, offset, &basis, delta)
                        .map_err(copy_err)?;
                    if blocks.is_empty() {
                        return Ok(Some((
                            Got::Blocks {
                                read,
                                blocks,
                                stored: 0,
                                hash: None,
                            },
                            None,
                        )));
                    }
                    let (stored, hash) = codec::encode_chunk(delta).map_err(copy_err)?;
                    let got = Got::Blocks {
                        read,
                        blocks,
                        stored: stored.len() as u64,
                        hash: Some(hash),
                    };
                    Ok::<_, BackupError>(Some((got, Some(stored))))
                });
            }
            let raw = &buf[..got];
            if let Basis::Compare { blake3, size } = &basis {
                let hash = ContentHash::of(raw);
                if *size == got as u64 && hash == ContentHash::Blake3(blake3.clone()) {
                    return Ok(Some((Got::Unchanged(got as u64), None)));
                }
            }
            let (stored, hash) = codec::encode_chunk(raw).map_err(copy_err)?;
            let got = Got::Stored(got as u64, stored.len() as u64, hash);
            Ok::<_, BackupError>(Some((got, Some(stored))))
        })
    })
    .await
    .map_err(|e| BackupError::Copy {
        path: entry.rel.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let Some((got, stored)) = encoded else {
        return Ok(None);
    };
    if let Some(stored) = stored {
        repo.store().put_deferred(&key, stored).await?;
    }
    Ok(Some(got))
}

/// The blocks of a region read into `buf[..got]` (at file `offset`) that
/// a `Basis::Blocks` file must store, and the bytes read rounded up to
/// whole blocks (a block cut by a concurrent extension reads as zeros
/// after the cut: a new page, which replay rewrites). Their contents go to
/// `delta`, concatenated. When more than half of the region's blocks
/// changed, all of them are stored: the object is then the region as read.
fn changed_blocks(
    buf: &mut Vec<u8>,
    got: usize,
    offset: u64,
    basis: &Basis,
    delta: &mut Vec<u8>,
) -> std::io::Result<(u64, Vec<u32>)> {
    let Basis::Blocks {
        since,
        parent_size,
        block_size,
        ..
    } = basis
    else {
        return Err(std::io::Error::other("not a block-wise file"));
    };
    let bs = *block_size as usize;
    let padded = got.div_ceil(bs) * bs;
    if buf.len() < padded {
        buf.resize(padded, 0);
    }
    buf[got..padded].fill(0);
    let first = offset / *block_size as u64;
    let in_parent = parent_size / *block_size as u64;
    let count = padded / bs;
    let mut changed = Vec::new();
    for i in 0..count {
        let no = first + i as u64;
        let page = &buf[i * bs..(i + 1) * bs];
        if no >= in_parent || crate::pg::page::block_changed(page, *since) {
            changed.push(i);
        }
    }
    if changed.len() * 2 > count {
        changed = (0..count).collect();
    }
    delta.clear();
    let mut blocks = Vec::with_capacity(changed.len());
    for i in changed {
        delta.extend_from_slice(&buf[i * bs..(i + 1) * bs]);
        let no = u32::try_from(first + i as u64)
            .map_err(|_| std::io::Error::other("block number out of range"))?;
        blocks.push(no);
    }
    Ok((padded as u64, blocks))
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
        Piece::Chunk { offset, len, .. } | Piece::Blocks { offset, len, .. } => (offset, len),
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
        let basis = Arc::new(vec![Basis::Own; entries.len()]);
        let copied = copy_files(
            &repo,
            "b1",
            entries.clone(),
            basis.clone(),
            2,
            None,
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        let files = manifest::files(&entries, &basis, copied);
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
