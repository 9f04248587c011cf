//! Building the new data directory from a backup: every directory and file
//! of the manifest, each object streamed from the store through zstd and
//! checked against its recorded size and SHA-256; `pg_control` written
//! last; `backup_label` (and `tablespace_map`) from the manifest. Files are
//! fsynced, then every directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::task::JoinSet;
use tokio_util::io::SyncIoBridge;

use crate::catalog::model::FileKind;
use crate::catalog::{BackupFile, BackupManifest};
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
fn target_path(pgdata: &Path, rel: &str) -> Result<PathBuf, RecoverError> {
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

pub async fn materialize(
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
    let files: Vec<(usize, &BackupFile)> = manifest
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.kind == FileKind::File)
        .collect();
    let mut set: JoinSet<Result<(), RecoverError>> = JoinSet::new();
    let mut control: Option<(usize, BackupFile)> = None;
    for (n, f) in files {
        if f.path == "global/pg_control" {
            control = Some((n, f.clone()));
            continue;
        }
        while set.len() >= jobs.max(1) {
            if let Some(r) = set.join_next().await {
                joined(r)?;
            }
        }
        let repo = repo.clone();
        let f = f.clone();
        let path = target_path(pgdata, &f.path)?;
        let id = manifest.id.clone();
        let on_bytes = on_bytes.clone();
        set.spawn(async move {
            restore_file(&repo, &id, n, &f, &path).await?;
            on_bytes(f.size);
            Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        joined(r)?;
    }
    let label = pgdata.join("backup_label");
    write_synced(&label, manifest.backup_label.as_bytes())?;
    if let Some(map) = &manifest.tablespace_map {
        write_synced(&pgdata.join("tablespace_map"), map.as_bytes())?;
    }
    let Some((n, f)) = control else {
        return Err(RecoverError::BadManifest(
            "the backup has no global/pg_control".into(),
        ));
    };
    let path = target_path(pgdata, &f.path)?;
    restore_file(repo, &manifest.id, n, &f, &path).await?;
    on_bytes(f.size);
    sync_tree(pgdata)?;
    Ok(())
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

async fn restore_file(
    repo: &Repo,
    backup_id: &str,
    n: usize,
    f: &BackupFile,
    path: &Path,
) -> Result<(), RecoverError> {
    let key = layout::backup_file(backup_id, n).map_err(|e| RecoverError::Repo(e.into()))?;
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
    let (size, sha) = tokio::task::spawn_blocking(move || {
        let src = std::io::BufReader::with_capacity(1 << 20, SyncIoBridge::new(reader));
        let mut dst = std::io::BufWriter::with_capacity(1 << 20, &out);
        let r = codec::decompress_stream(src, &mut dst);
        drop(dst);
        r.and_then(|v| out.sync_all().map(|_| v).map_err(codec::CodecError::Io))
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

/// fsync every directory under `root` (files were synced as written).
fn sync_tree(root: &Path) -> Result<(), RecoverError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(werr(&dir))? {
            let entry = entry.map_err(werr(&dir))?;
            if entry.file_type().map_err(werr(&dir))?.is_dir() {
                stack.push(entry.path());
            }
        }
        std::fs::File::open(&dir)
            .and_then(|f| f.sync_all())
            .map_err(werr(&dir))?;
    }
    Ok(())
}
