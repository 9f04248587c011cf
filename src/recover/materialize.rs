//! Building the new data directory from a backup: every directory and file
//! of the manifest, each object streamed from the store through zstd and
//! checked against its recorded size and content hash; `pg_control` written
//! last; `backup_label` (and `tablespace_map`) from the manifest. Small
//! files and the chunks of big ones are restored by `jobs` workers at
//! once, each chunk written at its offset; writeback starts as each is
//! written, and one `syncfs` makes all of it durable before the label and
//! `pg_control` are written (and another after).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::io::SyncIoBridge;

use crate::catalog::model::FileKind;
use crate::catalog::{BackupFile, BackupManifest, ContentHash};
use crate::repo::codec;
use crate::repo::{layout, Repo, KIND_MANIFEST};

use super::RecoverError;

/// Progress callback argument: bytes of one finished file.
pub type OnBytes = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

fn werr(path: &Path) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |source| RecoverError::Write {
        path: path.display().to_string(),
        source,
    }
}

pub async fn load_manifest(repo: &Repo, backup_id: &str) -> Result<BackupManifest, RecoverError> {
    let key = layout::backup_manifest(backup_id).map_err(|e| RecoverError::Repo(e.into()))?;
    Ok(repo.get_meta(&key, KIND_MANIFEST).await?)
}

/// Safe relative path inside the data directory.
pub(crate) fn target_path(pgdata: &Path, rel: &str) -> Result<PathBuf, RecoverError> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if !ok {
        return Err(RecoverError::BadManifest(format!("unsafe path {rel:?}")));
    }
    Ok(pgdata.join(rel))
}

/// What one worker restores.
enum Unit {
    /// A small file: one object, decoded in memory.
    Whole(usize),
    /// A file stored whole but larger than a chunk (backups taken before
    /// chunking): streamed, so memory stays bounded.
    Streamed(usize),
    /// Chunk `c` of file `n`, written at its offset into the file created
    /// (at its full length) beforehand.
    Chunk(usize, usize),
}

pub async fn materialize(
    repo: &Repo,
    manifest: &BackupManifest,
    pgdata: &Path,
    jobs: usize,
    on_bytes: OnBytes,
) -> Result<(), RecoverError> {
    materialize_files(repo, manifest, pgdata, jobs, on_bytes.clone()).await?;
    finish(repo, manifest, pgdata, on_bytes).await
}

/// Every directory and file of the manifest but `pg_control`, durable when
/// it returns (`recover::chain` calls it once per backup of a chain, with
/// the files each one holds whole).
pub(crate) async fn materialize_files(
    repo: &Repo,
    manifest: &BackupManifest,
    pgdata: &Path,
    jobs: usize,
    on_bytes: OnBytes,
) -> Result<(), RecoverError> {
    // Directories first, in manifest order (parents before children).
    for f in manifest.files.iter().filter(|f| f.kind == FileKind::Dir) {
        let path = target_path(pgdata, &f.path)?;
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(werr(&path)(e)),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(werr(&path))?;
    }
    let mut units = Vec::new();
    for (n, f) in manifest.files.iter().enumerate() {
        if f.kind != FileKind::File {
            continue;
        }
        let path = target_path(pgdata, &f.path)?;
        if f.path == "global/pg_control" {
            continue;
        } else if !f.chunks.is_empty() {
            let out = create_file(&path)?;
            out.set_len(f.size).map_err(werr(&path))?;
            units.extend((0..f.chunks.len()).map(|c| Unit::Chunk(n, c)));
        } else if f.size > crate::repo::layout::CHUNK_BYTES {
            units.push(Unit::Streamed(n));
        } else {
            units.push(Unit::Whole(n));
        }
    }
    let manifest = Arc::new(manifest.clone());
    let pgdata_buf = pgdata.to_path_buf();
    let mut set: JoinSet<Result<(), RecoverError>> = JoinSet::new();
    let spawn = |set: &mut JoinSet<_>, unit: Unit| {
        let repo = repo.clone();
        let manifest = manifest.clone();
        let pgdata = pgdata_buf.clone();
        let on_bytes = on_bytes.clone();
        set.spawn(async move {
            let bytes = restore_unit(&repo, &manifest, &pgdata, unit).await?;
            on_bytes(bytes);
            Ok(())
        });
    };
    for unit in units {
        while set.len() >= jobs.max(1) {
            if let Some(r) = set.join_next().await {
                joined(r)?;
            }
        }
        spawn(&mut set, unit);
    }
    while let Some(r) = set.join_next().await {
        joined(r)?;
    }
    // Everything but the label and pg_control is durable before they are
    // written: a crash leaves a directory that cannot start.
    sync_fs(pgdata)
}

/// The `backup_label` (and `tablespace_map`) of `manifest`, then its
/// `pg_control`, last, each durable.
pub(crate) async fn finish(
    repo: &Repo,
    manifest: &BackupManifest,
    pgdata: &Path,
    on_bytes: OnBytes,
) -> Result<(), RecoverError> {
    let label = pgdata.join("backup_label");
    write_synced(&label, manifest.backup_label.as_bytes())?;
    if let Some(map) = &manifest.tablespace_map {
        write_synced(&pgdata.join("tablespace_map"), map.as_bytes())?;
    }
    let Some(n) = manifest
        .files
        .iter()
        .position(|f| f.kind == FileKind::File && f.path == "global/pg_control")
    else {
        return Err(RecoverError::BadManifest(
            "the backup has no global/pg_control".into(),
        ));
    };
    on_bytes(restore_unit(repo, manifest, pgdata, Unit::Whole(n)).await?);
    sync_fs(pgdata)
}

fn sync_fs(pgdata: &Path) -> Result<(), RecoverError> {
    crate::repo::durable::sync_filesystem(pgdata).map_err(werr(pgdata))
}

fn create_file(path: &Path) -> Result<std::fs::File, RecoverError> {
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().write(true).create_new(true),
        0o600,
    )
    .open(path)
    .map_err(werr(path))
}

/// Restores one unit; returns its raw bytes (for progress).
async fn restore_unit(
    repo: &Repo,
    manifest: &BackupManifest,
    pgdata: &Path,
    unit: Unit,
) -> Result<u64, RecoverError> {
    let repo_err = |e: crate::repo::store::StoreError| RecoverError::Repo(e.into());
    let (n, c) = match unit {
        Unit::Streamed(n) => {
            let f = &manifest.files[n];
            let path = target_path(pgdata, &f.path)?;
            restore_streamed(repo, &manifest.id, n, f, &path).await?;
            return Ok(f.size);
        }
        Unit::Whole(n) => (n, None),
        Unit::Chunk(n, c) => (n, Some(c)),
    };
    let f = manifest.files[n].clone();
    let path = target_path(pgdata, &f.path)?;
    let obj = f.object_number(n).map_err(RecoverError::BadManifest)?;
    let (key, offset, size, hash) = match c {
        None => (
            layout::backup_file(&manifest.id, obj).map_err(repo_err)?,
            0,
            f.size,
            f.content_hash(),
        ),
        Some(c) => {
            let chunk = &f.chunks[c];
            (
                layout::backup_chunk(&manifest.id, obj, c).map_err(repo_err)?,
                chunk.offset,
                chunk.size,
                ContentHash::Blake3(chunk.blake3.clone()),
            )
        }
    };
    let label = match c {
        None => f.path.clone(),
        Some(c) => format!("{} (chunk {c})", f.path),
    };
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        // Read on this worker thread (a local store), else fetched
        // through the runtime from here.
        let stored = match repo.store().get_blocking(&key) {
            Some(r) => r,
            None => tokio::runtime::Handle::current().block_on(repo.store().get(&key)),
        }
        .map_err(repo_err)?;
        let out = match c {
            None => create_file(&path)?,
            Some(_) => std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(werr(&path))?,
        };
        let dst = OffsetWriter { file: &out, offset };
        codec::decode_into(&stored, size, &hash, dst).map_err(|source| match source {
            codec::CodecError::Checksum { expected, actual } => RecoverError::Checksum {
                path: label.clone(),
                expected,
                actual,
            },
            codec::CodecError::Io(e) => werr(&path)(e),
            source => RecoverError::Corrupt {
                path: label.clone(),
                source,
            },
        })?;
        crate::repo::durable::start_writeback(&out, offset, size);
        Ok(size)
    })
    .await
    .map_err(|e| RecoverError::Write {
        path: f.path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?
}

fn joined(r: Result<Result<(), RecoverError>, tokio::task::JoinError>) -> Result<(), RecoverError> {
    r.map_err(|e| RecoverError::Write {
        path: String::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), RecoverError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(werr(path))?;
    f.write_all(bytes).map_err(werr(path))?;
    f.sync_all().map_err(werr(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(werr(path))
}

/// Writes sequentially into a file from an offset (a chunk's place).
struct OffsetWriter<'a> {
    file: &'a std::fs::File,
    offset: u64,
}

impl std::io::Write for OffsetWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::write_at(self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams one whole-file object through zstd into place (durability
/// comes from the final `syncfs`).
async fn restore_streamed(
    repo: &Repo,
    backup_id: &str,
    n: usize,
    f: &BackupFile,
    path: &Path,
) -> Result<(), RecoverError> {
    let obj = f.object_number(n).map_err(RecoverError::BadManifest)?;
    let key = layout::backup_file(backup_id, obj).map_err(|e| RecoverError::Repo(e.into()))?;
    let reader = repo
        .store()
        .open_read(&key)
        .await
        .map_err(|e| RecoverError::Repo(e.into()))?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(werr(path))?;
    let pathbuf = path.to_path_buf();
    let limit = f.size;
    let (size, sha) = tokio::task::spawn_blocking(move || {
        let src = std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(reader));
        let mut dst = std::io::BufWriter::with_capacity(1 << 20, &out);
        // A damaged object never writes more than the file's size.
        codec::decompress_stream_bounded(src, &mut dst, limit)
    })
    .await
    .map_err(|e| RecoverError::Write {
        path: pathbuf.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(|source| RecoverError::Corrupt {
        path: f.path.clone(),
        source,
    })?;
    if size != f.size || sha != f.sha256 {
        return Err(RecoverError::Checksum {
            path: f.path.clone(),
            expected: format!("{} bytes, sha256 {}", f.size, f.sha256),
            actual: format!("{size} bytes, sha256 {sha}"),
        });
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(werr(path))?;
    Ok(())
}
