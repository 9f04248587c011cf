//! The `btrfs` provider: the data directory is a subvolume, a snapshot is
//! a read-only snapshot of it (`btrfs subvolume snapshot -r`) in the
//! snapshot directory, named by the snapshot's id, and its handle is that
//! path. A restore is a writable snapshot of the snapshot at the new data
//! directory, which must be on the same filesystem (btrfs cannot clone
//! across filesystems). As an unprivileged user (pitr run as root becomes
//! the data directory's owner) deleting a subvolume needs the filesystem
//! mounted with `user_subvol_rm_allowed`, and a read-only one is made
//! writable first.
//!
//! Tablespaces: a btrfs snapshot stops at subvolume boundaries, so each
//! tablespace's directory (where its `pg_tblspc` link points) must be a
//! subvolume of its own, on the snapshot directory's filesystem; each is
//! snapshotted read-only as `<dir>/<id>.tablespace-<oid>` (ids hold no
//! dot), its handle kept in the record, and cloned back (writable) into
//! the tablespace's new directory, which must be on that filesystem too.
//! Whether two paths are on one filesystem is asked of btrfs itself
//! (`BTRFS_IOC_FS_INFO`: the filesystem's UUID), so a clone across
//! filesystems is refused before anything is written. The snapshots of a
//! data directory and its tablespaces are taken one after another: only
//! bracketed (`pg_backup_start` .. `pg_backup_stop`) together.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::provider::{ensure_dir, io, run, Created, ProviderError, TablespaceTarget};
use crate::catalog::SnapshotTablespace;
use crate::pg::tablespace_map::TablespaceLink;

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

/// Why `path` cannot be snapshotted as a subvolume, if it cannot.
fn not_subvolume(path: &Path) -> Result<Option<&'static str>, ProviderError> {
    if !on_btrfs(path)? {
        return Ok(Some("not on a btrfs filesystem"));
    }
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.ino() != SUBVOLUME_ROOT_INO {
        return Ok(Some("a directory inside a subvolume"));
    }
    Ok(None)
}

/// `pgdata` must be the root of a btrfs subvolume.
pub(super) async fn check_subvolume(pgdata: &Path) -> Result<(), ProviderError> {
    match not_subvolume(pgdata)? {
        Some(detail) => Err(ProviderError::NotSubvolume {
            path: pgdata.display().to_string(),
            detail: detail.to_string(),
        }),
        None => Ok(()),
    }
}

/// Each tablespace's directory is the root of a subvolume on the
/// filesystem of the snapshot directory `dir` (its nearest existing
/// ancestor, where it is still to be made).
pub(super) fn check_tablespaces(dir: &Path, links: &[TablespaceLink]) -> Result<(), ProviderError> {
    if links.is_empty() {
        return Ok(());
    }
    let anc = existing_ancestor(dir);
    let dir_on_btrfs = on_btrfs(&anc)?;
    let dir_fs = fs_uuid(&anc)?;
    for l in links {
        if let Some(detail) = not_subvolume(&l.path)? {
            return Err(ProviderError::TablespaceNotSubvolume {
                oid: l.oid,
                path: l.path.display().to_string(),
                detail: detail.to_string(),
            });
        }
        let other = || ProviderError::TablespaceOtherFilesystem {
            oid: l.oid,
            path: l.path.display().to_string(),
            dir: dir.display().to_string(),
        };
        if !dir_on_btrfs {
            return Err(other());
        }
        // Unknown (a directory pitr may not open): the snapshot itself tells.
        if let (Some(a), Some(b)) = (dir_fs, fs_uuid(&l.path)?) {
            if a != b {
                return Err(other());
            }
        }
    }
    Ok(())
}

/// A tablespace's own snapshot: beside the data directory's, named by
/// the snapshot's id (which has no dot) and the tablespace's OID.
fn tablespace_handle(dir: &Path, id: &str, oid: u32) -> PathBuf {
    dir.join(format!("{id}.tablespace-{oid}"))
}

async fn snapshot_ro(from: &Path, to: &Path) -> Result<(), ProviderError> {
    let mut c = tokio::process::Command::new("btrfs");
    c.args(["subvolume", "snapshot", "-r"]).arg(from).arg(to);
    run(c, format!("btrfs subvolume snapshot -r {}", from.display()))
        .await
        .map(|_| ())
}

/// The data directory's snapshot, then each tablespace's; a failure
/// deletes those already made.
pub(super) async fn create(
    pgdata: &Path,
    dir: &Path,
    id: &str,
    links: &[TablespaceLink],
) -> Result<Created, ProviderError> {
    ensure_dir(dir)?;
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let handle = dir.join(id);
    snapshot_ro(pgdata, &handle).await?;
    let handle = handle.display().to_string();
    let mut tablespaces: Vec<SnapshotTablespace> = Vec::new();
    for l in links {
        let ts = tablespace_handle(&dir, id, l.oid);
        if let Err(e) = snapshot_ro(&l.path, &ts).await {
            if let Err(de) = delete(&handle, &tablespaces).await {
                tracing::warn!(error = %de, "could not delete the snapshots of a failed run");
            }
            return Err(e);
        }
        tablespaces.push(SnapshotTablespace {
            oid: l.oid,
            path: l.path.clone(),
            handle: Some(ts.display().to_string()),
        });
    }
    Ok(Created {
        handle,
        tablespaces,
    })
}

/// The snapshot exists, and `target` is on its btrfs filesystem; so for
/// each tablespace's own snapshot and its new directory.
pub(super) fn check_restore(
    handle: &str,
    target: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    check_clone(handle, target)?;
    for t in tablespaces {
        let Some(ts) = &t.handle else {
            return Err(ProviderError::NoTablespace {
                handle: handle.to_string(),
                oid: t.oid,
            });
        };
        check_clone(ts, &t.to)?;
    }
    Ok(())
}

/// Snapshot `handle` is there and can be cloned into `target`: the
/// directory the clone is made in (`target`'s parent, or its nearest
/// existing ancestor) is on the same btrfs filesystem.
fn check_clone(handle: &str, target: &Path) -> Result<(), ProviderError> {
    if !Path::new(handle).is_dir() {
        return Err(ProviderError::Gone {
            handle: handle.to_string(),
        });
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let parent = existing_ancestor(parent);
    if !on_btrfs(&parent)? {
        return Err(ProviderError::NotBtrfs {
            path: target.display().to_string(),
        });
    }
    // Unknown (a directory pitr may not open): the clone itself tells.
    if let (Some(a), Some(b)) = (fs_uuid(Path::new(handle))?, fs_uuid(&parent)?) {
        if a != b {
            return Err(ProviderError::OtherFilesystem {
                handle: handle.to_string(),
                target: target.display().to_string(),
            });
        }
    }
    Ok(())
}

/// `path`, or its nearest ancestor that exists.
fn existing_ancestor(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.ancestors()
        .find(|a| a.exists())
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

pub(super) async fn restore(
    handle: &str,
    target: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    check_restore(handle, target, tablespaces)?;
    clone(handle, target).await?;
    for t in tablespaces {
        let Some(ts) = &t.handle else {
            return Err(ProviderError::NoTablespace {
                handle: handle.to_string(),
                oid: t.oid,
            });
        };
        if let Some(parent) = t.to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        clone(ts, &t.to).await?;
    }
    Ok(())
}

/// A writable snapshot of `handle` at `target`. `btrfs subvolume snapshot
/// SRC DEST` makes DEST itself only when it does not exist: an empty
/// directory there (what restore prepared) goes first, and comes back if
/// the snapshot fails.
async fn clone(handle: &str, target: &Path) -> Result<(), ProviderError> {
    let existed = target.exists();
    if existed {
        std::fs::remove_dir(target).map_err(io(target))?;
    }
    let mut c = tokio::process::Command::new("btrfs");
    c.args(["subvolume", "snapshot", handle]).arg(target);
    let done = run(c, format!("btrfs subvolume snapshot {handle}")).await;
    if let Err(e) = done {
        if existed && !target.exists() {
            if let Err(re) = ensure_dir(target) {
                tracing::warn!(error = %re, "could not recreate the empty directory");
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

/// Each tablespace's own snapshot, then the data directory's; every one
/// is tried, the first failure returned.
pub(super) async fn delete(
    handle: &str,
    tablespaces: &[SnapshotTablespace],
) -> Result<(), ProviderError> {
    let mut first = None;
    let handles = tablespaces
        .iter()
        .filter_map(|t| t.handle.as_deref())
        .chain(std::iter::once(handle));
    for h in handles {
        if let Err(e) = delete_one(h).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

async fn delete_one(handle: &str) -> Result<(), ProviderError> {
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

/// `BTRFS_IOC_FS_INFO` (linux/btrfs.h: `_IOR(BTRFS_IOCTL_MAGIC, 31, struct
/// btrfs_ioctl_fs_info_args)`, a 1024-byte struct), which any user may ask.
const BTRFS_IOC_FS_INFO: libc::Ioctl = 0x8400_941F;
/// Where the filesystem's UUID lies in `btrfs_ioctl_fs_info_args`: after
/// `max_id` and `num_devices` (two `__u64`), `fsid[16]`.
const FSID_OFFSET: usize = 16;

/// The UUID of the btrfs filesystem holding `path`: what decides whether
/// one subvolume can be snapshotted into another's directory (the kernel
/// refuses across superblocks). None where `path` is not on btrfs or
/// cannot be opened by this user (a directory without read permission).
fn fs_uuid(path: &Path) -> Result<Option<[u8; 16]>, ProviderError> {
    use std::os::fd::AsRawFd;
    if !on_btrfs(path)? {
        return Ok(None);
    }
    let Ok(dir) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let mut args = [0u8; 1024];
    // SAFETY: the kernel writes at most the 1024 bytes of `args`
    // (btrfs_ioctl_fs_info copies exactly sizeof(struct
    // btrfs_ioctl_fs_info_args)) on a descriptor we hold for the call.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), BTRFS_IOC_FS_INFO, args.as_mut_ptr()) };
    if rc != 0 {
        return Err(io(path)(std::io::Error::last_os_error()));
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&args[FSID_OFFSET..FSID_OFFSET + 16]);
    Ok(Some(uuid))
}
