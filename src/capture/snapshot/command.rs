//! The `command` provider: the operator's own create, restore and delete
//! commands for any volume system (LVM, ZFS, EBS, a SAN), each run with
//! `sh -c` and told what to act on through its environment:
//! `PITR_SNAPSHOT_ID` (always), `PITR_PGDATA` (create: the data
//! directory), `PITR_SNAPSHOT_HANDLE` (restore, delete: what create
//! printed), `PITR_TARGET_PGDATA` (restore: the new data directory, an
//! empty directory the command fills, by a copy or by mounting a clone
//! there) and `PITR_TABLESPACES` (create and restore: one `<oid>=<path>`
//! line per tablespace, empty when there is none; for create where each
//! tablespace is, which the snapshot must cover, for restore the empty
//! directory the command fills with that tablespace's contents: what was
//! at its old path). The last non-empty line create prints is the handle.
//! The commands are recorded with the snapshot, so a restore needs no
//! flags. pitr itself makes the `pg_tblspc` links and `tablespace_map` of
//! the restored directory (`recover::from_snapshot`).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::provider::{io, run, ProviderError, TablespaceTarget};
use crate::catalog::SnapshotCommands;
use crate::pg::tablespace_map::TablespaceLink;

fn sh(script: &str, id: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(script).env("PITR_SNAPSHOT_ID", id);
    c
}

/// `PITR_TABLESPACES`: `<oid>=<path>\n` for each tablespace, the path's
/// bytes as they are; a path with a line break cannot be passed.
pub(super) fn tablespaces_env<'a>(
    spaces: impl IntoIterator<Item = (u32, &'a Path)>,
) -> Result<OsString, ProviderError> {
    let mut out = Vec::new();
    for (oid, path) in spaces {
        let bytes = path.as_os_str().as_bytes();
        if bytes.iter().any(|b| *b == b'\n' || *b == b'\r') {
            return Err(ProviderError::TablespacePath {
                oid,
                path: path.display().to_string(),
            });
        }
        out.extend_from_slice(format!("{oid}=").as_bytes());
        out.extend_from_slice(bytes);
        out.push(b'\n');
    }
    Ok(OsString::from_vec(out))
}

pub(super) async fn create(
    c: &SnapshotCommands,
    pgdata: &Path,
    id: &str,
    tablespaces: &[TablespaceLink],
) -> Result<String, ProviderError> {
    let pgdata = std::path::absolute(pgdata).map_err(io(pgdata))?;
    let spaces = tablespaces_env(tablespaces.iter().map(|l| (l.oid, l.path.as_path())))?;
    let mut cmd = sh(&c.create, id);
    cmd.env("PITR_PGDATA", &pgdata)
        .env("PITR_TABLESPACES", spaces);
    let out = run(cmd, format!("the create command ({})", c.create)).await?;
    out.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or(ProviderError::NoHandle)
}

/// Runs the restore command; each tablespace's directory exists (0700)
/// before it runs, as the data directory does.
pub(super) async fn restore(
    c: &SnapshotCommands,
    id: &str,
    handle: &str,
    target: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    use std::os::unix::fs::PermissionsExt;
    let target = std::path::absolute(target).map_err(io(target))?;
    let spaces = tablespaces_env(tablespaces.iter().map(|t| (t.oid, t.to.as_path())))?;
    for t in tablespaces {
        std::fs::create_dir_all(&t.to).map_err(io(&t.to))?;
        std::fs::set_permissions(&t.to, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&t.to))?;
    }
    let mut cmd = sh(&c.restore, id);
    cmd.env("PITR_SNAPSHOT_HANDLE", handle)
        .env("PITR_TARGET_PGDATA", &target)
        .env("PITR_TABLESPACES", spaces);
    run(cmd, format!("the restore command ({})", c.restore)).await?;
    Ok(())
}

pub(super) async fn delete(
    c: &SnapshotCommands,
    id: &str,
    handle: &str,
) -> Result<(), ProviderError> {
    let mut cmd = sh(&c.delete, id);
    cmd.env("PITR_SNAPSHOT_HANDLE", handle);
    run(cmd, format!("the delete command ({})", c.delete)).await?;
    Ok(())
}
