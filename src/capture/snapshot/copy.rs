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
//!
//! Tablespaces: the walk follows each `pg_tblspc/<oid>` link into its
//! `PG_<major>_<catversion>` directory, so the copy holds a tablespace as
//! the directory `<handle>/pg_tblspc/<oid>/PG_…/`. A restore of a cluster
//! with tablespaces copies everything else into the new data directory
//! and each `<handle>/pg_tblspc/<oid>/.` into that tablespace's new
//! directory; the links to them are the caller's.

use std::path::{Path, PathBuf};

use super::provider::{ensure_dir, io, run, ProviderError, TablespaceTarget};
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

/// The copy is still there, with each tablespace's directory.
pub(super) fn check_restore(
    handle: &str,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    if !Path::new(handle).join("global/pg_control").is_file() {
        return Err(ProviderError::Gone {
            handle: handle.to_string(),
        });
    }
    for t in tablespaces {
        if !tablespace_in(handle, t.oid).is_dir() {
            return Err(ProviderError::NoTablespace {
                handle: handle.to_string(),
                oid: t.oid,
            });
        }
    }
    Ok(())
}

/// Where the copy holds tablespace `oid`.
fn tablespace_in(handle: &str, oid: u32) -> PathBuf {
    Path::new(handle).join("pg_tblspc").join(oid.to_string())
}

pub(super) async fn restore(
    handle: &str,
    target: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    check_restore(handle, tablespaces)?;
    ensure_dir(target)?;
    if tablespaces.is_empty() {
        return cp(&[Path::new(handle).join(".")], target).await;
    }
    // Everything but the tablespaces' directories into the data
    // directory: its top level but pg_tblspc, then pg_tblspc's other
    // entries (in-place tablespaces are directories of the data
    // directory's own).
    let top = entries(Path::new(handle), |name| name != "pg_tblspc")?;
    cp(&top, target).await?;
    let tblspc = Path::new(handle).join("pg_tblspc");
    if tblspc.is_dir() {
        let into = target.join("pg_tblspc");
        ensure_dir(&into)?;
        let others = entries(&tblspc, |name| {
            !tablespaces.iter().any(|t| t.oid.to_string() == name)
        })?;
        cp(&others, &into).await?;
    }
    for t in tablespaces {
        std::fs::create_dir_all(&t.to).map_err(io(&t.to))?;
        cp(&[tablespace_in(handle, t.oid).join(".")], &t.to).await?;
    }
    Ok(())
}

/// The entries of `dir` whose names `keep` takes, as paths.
fn entries(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, ProviderError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if keep(&e.file_name().to_string_lossy()) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// `cp -a --reflink=auto <from>… <into>` (nothing to do for no `from`).
async fn cp(from: &[PathBuf], into: &Path) -> Result<(), ProviderError> {
    let Some(first) = from.first() else {
        return Ok(());
    };
    let mut c = tokio::process::Command::new("cp");
    c.args(["-a", "--reflink=auto"]).args(from).arg(into);
    let what = if from.len() == 1 {
        format!("cp -a --reflink=auto {}", first.display())
    } else {
        format!(
            "cp -a --reflink=auto {} and {} more",
            first.display(),
            from.len() - 1
        )
    };
    run(c, what).await.map(|_| ())
}

pub(super) async fn delete(handle: &str) -> Result<(), ProviderError> {
    match std::fs::remove_dir_all(handle) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(Path::new(handle))(e)),
    }
}
