//! Where each thing lives in a repository (the object key layout):
//!
//! ```text
//! pitr.json                                  RepoConfig
//! wal/<TLI>/<segment>.<tag>.zst              segment data, named by its content
//!                                            (tag: 32 hex digits of its BLAKE3)
//! wal/<TLI>/<segment>.<tag>.xacts.zst        its transaction ends
//! wal/<TLI>/<segment>.<tag>.head.xacts.zst   … with the one running in from
//!                                            the previous segment (head_read)
//! wal/<TLI>/<segment>.zst                    segment data (records without a tag,
//!                                            written before format version 2)
//! wal/<TLI>/<segment>.json                   WalSegmentRecord (its commit marker)
//! wal/<TLI>/<segment>.partial.zst            .partial segments (kept, never replayed)
//! history/<TLI>.history.zst                  timeline history files
//! backup-history/<seg>.<off>.backup.zst      .backup history files
//! backups/<id>/files/<n>.zst                 file n of the manifest
//! backups/<id>/manifest.json                 BackupManifest
//! claims/<id>.json                           BackupClaim: the id taken, by whom
//! catalog/backups/<id>.json                  BackupRecord: written last
//! catalog/wal/<TLI>/pending/<segment>.json   WAL index entry (a WalSegmentRecord)
//! catalog/wal/<TLI>/chunk-<N>.json           WAL index chunk N: segments
//!                                            N*CHUNK .. (N+1)*CHUNK-1, immutable
//! catalog/verify/<stamp>.json                VerifyResult: what `pitr verify` found
//! ```
//!
//! `info` and `plan` list only `catalog/`: a few objects per backup, one
//! per 1024 segments, and the pending entries of the newest chunk; never
//! the WAL or backup data.

use super::store::{ObjectKey, StoreError};
use crate::pg::{SegmentName, TimelineId, WalFileName};

/// Files larger than this are stored as chunks of this size (objects
/// `<n>.<chunk>.zst`), so one big relation file keeps every backup worker
/// busy; each worker holds at most one raw chunk and its compressed copy
/// (memory is bounded by the number of workers, not by the database).
/// Restore reads the same objects back, so this is part of the layout.
pub const CHUNK_BYTES: u64 = 8 << 20;

pub const CONFIG: &str = "pitr.json";
pub const WAL_DIR: &str = "wal";
pub const HISTORY_DIR: &str = "history";
pub const BACKUP_HISTORY_DIR: &str = "backup-history";
pub const BACKUPS_DIR: &str = "backups";
pub const CATALOG_DIR: &str = "catalog";
pub const CLAIMS_DIR: &str = "claims";
pub const CATALOG_BACKUPS_DIR: &str = "catalog/backups";
pub const CATALOG_WAL_DIR: &str = "catalog/wal";
pub const CATALOG_TIMINGS_DIR: &str = "catalog/timings";
pub const CATALOG_VERIFY_DIR: &str = "catalog/verify";
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

/// Where a segment's data lives. Since format version 2 the data object
/// is named by its content (`tag`, from the record): two pushes of
/// different bytes under one segment name write two objects, and the
/// record (created once, never replaced) says which one was acknowledged,
/// so a refused push can never overwrite acknowledged bytes. `None`: a
/// record written before tags, whose data has the plain name.
pub fn segment_data(seg: &SegmentName, tag: Option<&DataTag>) -> ObjectKey {
    match tag {
        Some(t) => key(format!("{}/{seg}.{t}.zst", tli_dir(seg.timeline()))),
        None => key(format!("{}/{seg}.zst", tli_dir(seg.timeline()))),
    }
}

/// Every transaction end of a segment (`pitr.wal-xacts`, zstd): what pins
/// the exact record a time or xid target stops at. Named like the data,
/// and apart when it also holds the transaction end running in from the
/// previous segment (`head`: `WalSummary::head_read`): the list depends on
/// whether that segment was archived first, and a push retried after it
/// was must not find the other list under its name and keep it.
pub fn segment_xacts(seg: &SegmentName, tag: Option<&DataTag>, head: bool) -> ObjectKey {
    let dir = tli_dir(seg.timeline());
    let head = if head { ".head" } else { "" };
    match tag {
        Some(t) => key(format!("{dir}/{seg}.{t}{head}.xacts.zst")),
        None => key(format!("{dir}/{seg}{head}.xacts.zst")),
    }
}

/// The content tag a segment record names its objects by (None: a record
/// from before tags).
pub fn record_tag(
    record: &crate::catalog::WalSegmentRecord,
) -> Result<Option<DataTag>, StoreError> {
    record.data_tag.as_deref().map(DataTag::parse).transpose()
}

/// The content tag in a segment's object names: the first 32 hex digits
/// of the BLAKE3 of its raw bytes. Checked when read back from a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataTag(String);

impl DataTag {
    pub const LEN: usize = 32;

    /// The tag of content whose BLAKE3 (hex) is `blake3`.
    pub fn from_blake3(blake3: &str) -> Result<DataTag, StoreError> {
        DataTag::parse(blake3.get(..Self::LEN).unwrap_or(blake3))
    }

    /// A tag as stored in a record.
    pub fn parse(s: &str) -> Result<DataTag, StoreError> {
        if s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(DataTag(s.to_ascii_lowercase()))
        } else {
            Err(StoreError::BadKey(format!("segment data tag {s:?}")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DataTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn segment_record(seg: &SegmentName) -> ObjectKey {
    key(format!("{}/{seg}.json", tli_dir(seg.timeline())))
}

/// Where an archived non-segment file lives (history, .backup, .partial).
pub fn aux_file(name: &WalFileName) -> ObjectKey {
    match name {
        WalFileName::Segment(s) => segment_data(s, None),
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

/// The claim on backup id `id` (see `catalog::BackupClaim`).
pub fn backup_claim(id: &str) -> Result<ObjectKey, StoreError> {
    backup_dir(id)?;
    ObjectKey::new(format!("{CLAIMS_DIR}/{id}.json"))
}

pub fn backup_manifest(id: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{}/manifest.json", backup_dir(id)?))
}

pub fn backup_record(id: &str) -> Result<ObjectKey, StoreError> {
    backup_dir(id)?;
    ObjectKey::new(format!("{CATALOG_BACKUPS_DIR}/{id}.json"))
}

/// `catalog/wal-horizon.json`: where `pitr expire` removed WAL below
/// (`catalog::WalHorizon`).
pub fn wal_horizon() -> ObjectKey {
    key(format!("{CATALOG_DIR}/wal-horizon.json"))
}

/// The expire lock: a claim (`claims/expire.json`) no backup id can take.
pub fn expire_claim() -> ObjectKey {
    key(format!("{CLAIMS_DIR}/expire.json"))
}

/// A restore's timing record; `stamp` sorts by time.
pub fn restore_timing(stamp: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{CATALOG_TIMINGS_DIR}/{stamp}.json"))
}

/// A `pitr verify` result; `stamp` sorts by time.
pub fn verify_result(stamp: &str) -> Result<ObjectKey, StoreError> {
    ObjectKey::new(format!("{CATALOG_VERIFY_DIR}/{stamp}.json"))
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
