//! The `copy` provider: a copy of the data directory in the snapshot
//! directory, `<dir>/<id>`, its handle that path. Correct on every
//! filesystem, and cheap where the filesystem shares blocks (`std::fs::copy`
//! is `copy_file_range(2)`, which btrfs and XFS serve by reflink, as
//! `cp --reflink=auto` would). The copy walks the directory as a base
//! backup does (`backup::walk`: the same exclusions, pg_wal's contents
//! among them, and a file that vanishes mid-copy is skipped), which a
//! plain `cp -a` of a running server cannot (it fails on the first file
//! that vanishes). Never atomic: only bracketed by the backup API. A
//! restore is `cp -a --reflink=auto <handle>/. <new pgdata>`.

use std::path::Path;

use super::provider::{ensure_dir, io, run, ProviderError};
use crate::capture::backup::walk::{walk, Entry};
use crate::capture::backup::BackupError;
use crate::catalog::model::FileKind;

pub(super) async fn create(pgdata: &Path, dir: &Path, id: &str) -> Result<String, ProviderError> {
    ensure_dir(dir)?;
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let handle = dir.join(id);
    let pgdata = pgdata.to_path_buf();
    let to = handle.clone();
    tokio::task::spawn_blocking(move || copy_tree(&pgdata, &to))
        .await
        .map_err(|e| ProviderError::Io {
            path: handle.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })??;
    Ok(handle.display().to_string())
}

fn copy_tree(pgdata: &Path, to: &Path) -> Result<(), ProviderError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let entries: Vec<Entry> = walk(pgdata).map_err(|e| match e {
        BackupError::Read { path, source } => ProviderError::Io { path, source },
        other => ProviderError::Io {
            path: pgdata.display().to_string(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(io(to))?;
    for e in &entries {
        let dst = to.join(&e.rel);
        match e.kind {
            FileKind::Dir => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(e.mode)
                    .create(&dst)
                    .map_err(io(&dst))?;
            }
            FileKind::File => match std::fs::copy(&e.abs, &dst) {
                Ok(_) => {
                    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(e.mode))
                        .map_err(io(&dst))?;
                }
                // Dropped while the copy ran: replay recreates what it needs.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound && !e.abs.exists() => {}
                Err(err) => return Err(io(&e.abs)(err)),
            },
        }
    }
    crate::repo::durable::sync_filesystem(to).map_err(io(to))
}

/// The copy is still there.
pub(super) fn check_restore(handle: &str) -> Result<(), ProviderError> {
    if !Path::new(handle).join("global/pg_control").is_file() {
        return Err(ProviderError::Gone {
            handle: handle.to_string(),
        });
    }
    Ok(())
}

pub(super) async fn restore(handle: &str, target: &Path) -> Result<(), ProviderError> {
    check_restore(handle)?;
    ensure_dir(target)?;
    let mut c = tokio::process::Command::new("cp");
    c.args(["-a", "--reflink=auto"])
        .arg(Path::new(handle).join("."))
        .arg(target);
    run(c, format!("cp -a --reflink=auto {handle}/.")).await?;
    Ok(())
}

pub(super) async fn delete(handle: &str) -> Result<(), ProviderError> {
    match std::fs::remove_dir_all(handle) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(Path::new(handle))(e)),
    }
}
