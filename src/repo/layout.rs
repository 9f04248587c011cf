//! Where each thing lives in a repository (the object key layout):
//!
//! ```text
//! pitr.json                                  RepoConfig
//! wal/<TLI>/<segment>.zst                    segment data
//! wal/<TLI>/<segment>.json                   WalSegmentRecord (its commit marker)
//! wal/<TLI>/<segment>.partial.zst            .partial segments (kept, never replayed)
//! history/<TLI>.history.zst                  timeline history files
//! backup-history/<seg>.<off>.backup.zst      .backup history files
//! backups/<id>/files/<n>.zst                 file n of the manifest
//! backups/<id>/manifest.json                 BackupManifest
//! catalog/backups/<id>.json                  BackupRecord: written last
//! catalog/wal/<TLI>/pending/<segment>.json   WAL index entry (a WalSegmentRecord)
//! catalog/wal/<TLI>/chunk-<N>.json           WAL index chunk N: segments
//!                                            N*CHUNK .. (N+1)*CHUNK-1, immutable
//! ```
//!
//! `info` and `plan` list only `catalog/`: a few objects per backup, one
//! per 1024 segments, and the pending entries of the newest chunk; never
//! the WAL or backup data.

use super::store::{ObjectKey, StoreError};
use crate::pg::{SegmentName, TimelineId, WalFileName};

pub const CONFIG: &str = "pitr.json";
pub const WAL_DIR: &str = "wal";
pub const HISTORY_DIR: &str = "history";
pub const BACKUP_HISTORY_DIR: &str = "backup-history";
pub const BACKUPS_DIR: &str = "backups";
pub const CATALOG_DIR: &str = "catalog";
pub const CATALOG_BACKUPS_DIR: &str = "catalog/backups";
pub const CATALOG_WAL_DIR: &str = "catalog/wal";
pub const CATALOG_TIMINGS_DIR: &str = "catalog/timings";
/// Segments per WAL index chunk.
pub const CHUNK_SEGMENTS: u64 = 1024;

pub fn config() -> ObjectKey {
    key(CONFIG.to_string())
}

/// Keys built here come from hex digits and fixed words only.
fn key(s: String) -> ObjectKey {
    ObjectKey::trusted(s)
}

fn tli_dir(tli: TimelineId) -> String {
    format!("{WAL_DIR}/{:08X}", tli.get())
}

pub fn segment_data(seg: &SegmentName) -> ObjectKey {
    key(format!("{}/{seg}.zst", tli_dir(seg.timeline())))
}

/// Every transaction end of a segment (`pitr.wal-xacts`, zstd): read only
/// to explain exactly where a plan stops.
pub fn segment_xacts(seg: &SegmentName) -> ObjectKey {
    key(format!("{}/{seg}.xacts.zst", tli_dir(seg.timeline())))
}

pub fn segment_record(seg: &SegmentName) -> ObjectKey {
    key(format!("{}/{seg}.json", tli_dir(seg.timeline())))
}

/// Where an archived non-segment file lives (history, .backup, .partial).
pub fn aux_file(name: &WalFileName) -> ObjectKey {
    match name {
        WalFileName::Segment(s) => segment_data(s),
        WalFileName::Partial(s) => key(format!("{}/{name}.zst", tli_dir(s.timeline()))),
        WalFileName::History(_) => key(format!("{HISTORY_DIR}/{name}.zst")),
        WalFileName::Backup { .. } => key(format!("{BACKUP_HISTORY_DIR}/{name}.zst")),
    }
}

/// Checks a backup id is safe as a key part.
pub fn backup_dir(id: &str) -> Result<String, StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !id.starts_with('-');
    if ok {
        Ok(format!("{BACKUPS_DIR}/{id}"))
    } else {
        Err(StoreError::BadKey(id.to_string()))
    }
}

pub fn backup_file(id: &str, n: usize) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{}/files/{n}.zst", backup_dir(id)?))
}

/// Chunk `c` of file `n` (files larger than one chunk).
pub fn backup_chunk(id: &str, n: usize, c: usize) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{}/files/{n}.{c}.zst", backup_dir(id)?))
}

pub fn backup_manifest(id: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{}/manifest.json", backup_dir(id)?))
}

pub fn backup_record(id: &str) -> Result<ObjectKey, StoreError> {
    backup_dir(id)?;
    ObjectKey::new(format!("{CATALOG_BACKUPS_DIR}/{id}.json"))
}

/// A restore's timing record; `stamp` sorts by time.
pub fn restore_timing(stamp: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{CATALOG_TIMINGS_DIR}/{stamp}.json"))
}

pub fn wal_index_pending(seg: &SegmentName) -> ObjectKey {
    key(format!(
        "{CATALOG_WAL_DIR}/{:08X}/pending/{seg}.json",
        seg.timeline().get()
    ))
}

pub fn wal_index_chunk(tli: TimelineId, chunk: u64) -> ObjectKey {
    key(format!(
        "{CATALOG_WAL_DIR}/{:08X}/chunk-{chunk:016X}.json",
        tli.get()
    ))
}

/// What a key under `catalog/wal/` is.
pub enum WalIndexKey {
    Pending,
    Chunk(TimelineId, u64),
}

pub fn parse_wal_index_key(key: &ObjectKey) -> Option<WalIndexKey> {
    let rest = key
        .as_str()
        .strip_prefix(CATALOG_WAL_DIR)?
        .strip_prefix('/')?;
    let (tli, rest) = rest.split_once('/')?;
    let tli = TimelineId::new(u32::from_str_radix(tli, 16).ok()?).ok()?;
    if rest.starts_with("pending/") && rest.ends_with(".json") {
        return Some(WalIndexKey::Pending);
    }
    let n = rest.strip_prefix("chunk-")?.strip_suffix(".json")?;
    Some(WalIndexKey::Chunk(tli, u64::from_str_radix(n, 16).ok()?))
}
