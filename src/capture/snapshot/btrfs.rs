//! The `btrfs` provider: the data directory is a subvolume, a snapshot is
//! a read-only snapshot of it (`btrfs subvolume snapshot -r`) in the
//! snapshot directory, named by the snapshot's id, and its handle is that
//! path. A restore is a writable snapshot of the snapshot at the new data
//! directory, which must be on the same filesystem (btrfs cannot clone
//! across filesystems). As an unprivileged user (pitr run as root becomes
//! the data directory's owner) deleting a subvolume needs the filesystem
//! mounted with `user_subvol_rm_allowed`, and a read-only one is made
//! writable first.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::provider::{ensure_dir, io, run, ProviderError};

/// statfs(2) `f_type` of btrfs (linux/magic.h: BTRFS_SUPER_MAGIC).
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// The inode number of every subvolume's root directory (btrfs_tree.h:
/// BTRFS_FIRST_FREE_OBJECTID): what btrfs-progs' `subvolume show` checks
/// (`test_issubvolume`), read here without its privileges.
const SUBVOLUME_ROOT_INO: u64 = 256;

fn on_btrfs(path: &Path) -> Result<bool, ProviderError> {
    let st = nix::sys::statfs::statfs(path).map_err(|e| ProviderError::Io {
        path: path.display().to_string(),
        source: std::io::Error::from(e),
    })?;
    #[allow(clippy::unnecessary_cast)] // the type of f_type differs between targets
    Ok(st.filesystem_type().0 as i64 == BTRFS_SUPER_MAGIC)
}

/// `pgdata` must be the root of a btrfs subvolume.
pub(super) async fn check_subvolume(pgdata: &Path) -> Result<(), ProviderError> {
    let refuse = |detail: &str| ProviderError::NotSubvolume {
        path: pgdata.display().to_string(),
        detail: detail.to_string(),
    };
    if !on_btrfs(pgdata)? {
        return Err(refuse("not on a btrfs filesystem"));
    }
    let meta = std::fs::metadata(pgdata).map_err(io(pgdata))?;
    if meta.ino() != SUBVOLUME_ROOT_INO {
        return Err(refuse("a directory inside a subvolume"));
    }
    Ok(())
}

pub(super) async fn create(pgdata: &Path, dir: &Path, id: &str) -> Result<String, ProviderError> {
    ensure_dir(dir)?;
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let handle = dir.join(id);
    let mut c = tokio::process::Command::new("btrfs");
    c.args(["subvolume", "snapshot", "-r"])
        .arg(pgdata)
        .arg(&handle);
    run(
        c,
        format!("btrfs subvolume snapshot -r {}", pgdata.display()),
    )
    .await?;
    Ok(handle.display().to_string())
}

/// The snapshot exists and `target` is on btrfs (whether it is the same
/// filesystem only the clone can tell).
pub(super) fn check_restore(handle: &str, target: &Path) -> Result<(), ProviderError> {
    if !Path::new(handle).is_dir() {
        return Err(ProviderError::Gone {
            handle: handle.to_string(),
        });
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    if !on_btrfs(parent)? {
        return Err(ProviderError::NotBtrfs {
            path: target.display().to_string(),
        });
    }
    Ok(())
}

pub(super) async fn restore(handle: &str, target: &Path) -> Result<(), ProviderError> {
    check_restore(handle, target)?;
    // `btrfs subvolume snapshot SRC DEST` makes DEST itself only when it
    // does not exist: the empty directory restore prepared goes first,
    // and comes back if the snapshot fails.
    std::fs::remove_dir(target).map_err(io(target))?;
    let mut c = tokio::process::Command::new("btrfs");
    c.args(["subvolume", "snapshot", handle]).arg(target);
    let done = run(c, format!("btrfs subvolume snapshot {handle}")).await;
    if let Err(e) = done {
        if !target.exists() {
            if let Err(re) = ensure_dir(target) {
                tracing::warn!(error = %re, "could not recreate the empty data directory");
            }
        }
        return Err(match e {
            ProviderError::Failed { stderr, .. } if stderr.contains("cross-device") => {
                ProviderError::OtherFilesystem {
                    handle: handle.to_string(),
                    target: target.display().to_string(),
                }
            }
            e => e,
        });
    }
    Ok(())
}

pub(super) async fn delete(handle: &str) -> Result<(), ProviderError> {
    if !Path::new(handle).exists() {
        return Ok(());
    }
    // An unprivileged user cannot delete a read-only subvolume.
    let mut ro = tokio::process::Command::new("btrfs");
    ro.args(["property", "set", "-ts", handle, "ro", "false"]);
    if let Err(e) = run(ro, format!("btrfs property set {handle} ro false")).await {
        tracing::debug!(error = %e, "could not make the snapshot writable before deleting it");
    }
    let mut c = tokio::process::Command::new("btrfs");
    c.args(["subvolume", "delete", handle]);
    run(c, format!("btrfs subvolume delete {handle}"))
        .await
        .map(|_| ())
}
