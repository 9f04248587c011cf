//! `pitr snapshot`: a snapshot of the data directory, kept by a provider
//! (`btrfs` subvolume snapshots, a `copy`, or the operator's `command`s
//! for LVM, ZFS, EBS and the like), recorded as a start point in the
//! catalog: a `BackupRecord` whose `start` is `StartKind::Snapshot`
//! (provider, handle, consistency), written last and at format version 3,
//! under an id claimed as a backup's is (`backup::claim`). Nothing of the
//! data goes into the repository's objects (`stored_bytes` 0); a
//! bracketed snapshot's `backup_label` and `tablespace_map` go into a
//! manifest without files (`backups/<id>/manifest.json`). A snapshot of a
//! cluster with tablespaces carries every one (how depends on the
//! provider: see `provider`), lists them in its record (format version
//! 4), and is bracketed only.
//!
//! Two kinds (`Consistency`): bracketed (`pg_backup_start` ..
//! `pg_backup_stop` around the snapshot, the stop segment archived here
//! before the record is written, exactly as `backup`), and atomic (one
//! instant image of a running server, no backup API: consistent only once
//! replay reaches the end of WAL read right after the image was taken,
//! recorded as `stop_lsn`). A failed run deletes the provider snapshot it
//! made; a snapshot whose record is not written is never listed.
//!
//! The parts: `provider` (the enum the three providers sit behind),
//! `btrfs`, `copy`, `command`, and `take` (the run itself).

mod btrfs;
mod command;
mod copy;
mod provider;
mod take;

pub use provider::{
    check_restore, delete, restore, snapshot_dir, Created, Provider, ProviderArgs, ProviderError,
    TablespaceTarget, PROVIDER_TIMEOUT,
};
pub use take::{snapshot, SnapshotError, SnapshotOptions, SnapshotReport};
