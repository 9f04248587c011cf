//! The `command` provider: the operator's own create, restore and delete
//! commands for any volume system (LVM, ZFS, EBS, a SAN), each run with
//! `sh -c` and told what to act on through its environment:
//! `PITR_SNAPSHOT_ID` (always), `PITR_PGDATA` (create: the data
//! directory), `PITR_SNAPSHOT_HANDLE` (restore, delete: what create
//! printed) and `PITR_TARGET_PGDATA` (restore: the new data directory, an
//! empty directory the command fills, by a copy or by mounting a clone
//! there). The last non-empty line create prints is the handle. The
//! commands are recorded with the snapshot, so a restore needs no flags.

use std::path::Path;

use super::provider::{io, run, ProviderError};
use crate::catalog::SnapshotCommands;

fn sh(script: &str, id: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(script).env("PITR_SNAPSHOT_ID", id);
    c
}

pub(super) async fn create(
    c: &SnapshotCommands,
    pgdata: &Path,
    id: &str,
) -> Result<String, ProviderError> {
    let pgdata = std::path::absolute(pgdata).map_err(io(pgdata))?;
    let mut cmd = sh(&c.create, id);
    cmd.env("PITR_PGDATA", &pgdata);
    let out = run(cmd, format!("the create command ({})", c.create)).await?;
    out.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or(ProviderError::NoHandle)
}

pub(super) async fn restore(
    c: &SnapshotCommands,
    id: &str,
    handle: &str,
    target: &Path,
) -> Result<(), ProviderError> {
    let target = std::path::absolute(target).map_err(io(target))?;
    let mut cmd = sh(&c.restore, id);
    cmd.env("PITR_SNAPSHOT_HANDLE", handle)
        .env("PITR_TARGET_PGDATA", &target);
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
