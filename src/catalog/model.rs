//! Catalog types. Everything here is what `repo/` stores as metadata
//! objects (inside an `Envelope`) and what `plan/` reads. Times are UTC;
//! positions are `Lsn`s; sizes are bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::wal_index::WalIndex;
use crate::pg::control::{Fingerprint, PgMajor, SystemId};
use crate::pg::history::TimelineHistory;
use crate::pg::wal::{RestorePoint, SegmentScan, TailPrefix, XactEnd};
use crate::pg::{Lsn, SegNo, TimelineId, WalSegmentSize};

/// `pitr.json`: the repository's identity, fixed at `pitr init`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RepoConfig {
    pub system_id: SystemId,
    pub pg_major: PgMajor,
    pub wal_segment_size: WalSegmentSize,
    pub fingerprint: Fingerprint,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// Set when the repository's data objects are encrypted (`pitr init
    /// --encrypt`); such a `pitr.json` is written at format version 4, so
    /// an older pitr never writes plaintext into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// How a repository's data objects are encrypted: the cipher and every key
/// id its objects may carry. Only ids are kept (derived from a key, they
/// tell a wrong key from the right one and say nothing of it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Encryption {
    /// `aes-256-gcm`.
    pub cipher: String,
    /// Oldest first; new objects are encrypted with the newest one given.
    pub keys: Vec<KeyRecord>,
}

/// One key a repository knows, by id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    /// 16 hex digits (`repo::crypt::KeyId`).
    pub id: String,
    pub added_at: DateTime<Utc>,
}

/// What the WAL scanner found in one archived segment: the WAL index entry
/// that lets a time target resolve to a segment before recovery starts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalSummary {
    pub first_record: Option<Lsn>,
    pub end_lsn: Option<Lsn>,
    pub records: u64,
    pub xact_count: u64,
    pub min_xact_time: Option<DateTime<Utc>>,
    /// The transaction end with the greatest timestamp in this segment.
    /// Recovery to time T stops before the first xact end with time > T,
    /// which lies in the first segment whose `max_xact` is after T.
    pub max_xact: Option<XactEnd>,
    pub restore_points: Vec<RestorePoint>,
    pub switch_lsn: Option<Lsn>,
    pub tail_incomplete: bool,
    /// With `tail_incomplete`: the record running into the next segment
    /// begins here and is no transaction end, so the segment hides none
    /// (`SegmentScan::tail_seen`). Absent (false) in entries written before
    /// it existed: those may hide one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tail_seen: bool,
    /// The record running in from the previous segment was read whole:
    /// joined, when this segment was archived, with the beginning the
    /// previous segment's record kept (`WalSegmentRecord::tail`,
    /// `pg::wal::join`: length, xl_prev and CRC checked). A transaction end
    /// or restore point it is counts among this segment's (in WAL order,
    /// first), though it starts in the previous segment: recovery needs
    /// this segment to read it. False when there was nothing to join (no
    /// record runs in, or the previous segment was not archived first),
    /// or the halves did not make a record; then the previous segment's
    /// `tail_seen` alone says whether the boundary hides a transaction end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub head_read: bool,
    /// Smallest and largest xid among the segment's transaction ends
    /// (commit/abort, prepared ones by their own xid): where an `--xid`
    /// target can lie. Absent in entries written before they existed.
    #[serde(default)]
    pub min_xid: Option<u32>,
    #[serde(default)]
    pub max_xid: Option<u32>,
    /// nextXid (`epoch << 32 | xid`) of the segment's last checkpoint
    /// record: how an xid of this stretch of WAL widens to the 64-bit form
    /// `pg_current_xact_id()` shows. Absent when the segment holds no
    /// checkpoint, and in entries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_xid: Option<u64>,
}

impl WalSummary {
    pub fn from_scan(scan: &SegmentScan) -> WalSummary {
        let max_xact = scan.xact_ends.iter().max_by_key(|x| x.time).cloned();
        WalSummary {
            first_record: scan.first_record,
            end_lsn: scan.end_lsn,
            records: scan.records,
            xact_count: scan.xact_ends.len() as u64,
            min_xact_time: scan.xact_ends.iter().map(|x| x.time).min(),
            max_xact,
            restore_points: scan.restore_points.clone(),
            switch_lsn: scan.switch_lsn,
            tail_incomplete: scan.tail_incomplete,
            tail_seen: scan.tail_incomplete && scan.tail_seen,
            head_read: false,
            min_xid: scan.xact_ends.iter().map(|x| x.xid).min(),
            max_xid: scan.xact_ends.iter().map(|x| x.xid).max(),
            next_xid: scan.checkpoints.last().map(|c| c.next_xid),
        }
    }

    /// Whether transaction `xid` may end in this segment.
    pub fn may_hold_xid(&self, xid: u32) -> bool {
        matches!((self.min_xid, self.max_xid), (Some(lo), Some(hi)) if lo <= xid && xid <= hi)
    }

    pub fn max_xact_time(&self) -> Option<DateTime<Utc>> {
        self.max_xact.as_ref().map(|x| x.time)
    }
}

impl WalSegmentRecord {
    pub fn content_hash(&self) -> crate::catalog::ContentHash {
        crate::catalog::ContentHash::from_fields(&self.sha256, &self.blake3)
    }
}

impl BackupFile {
    pub fn content_hash(&self) -> crate::catalog::ContentHash {
        crate::catalog::ContentHash::from_fields(&self.sha256, &self.blake3)
    }
}

/// One archived WAL segment (`wal/<tli>/<name>.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalSegmentRecord {
    pub name: String,
    pub timeline: TimelineId,
    pub segno: SegNo,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// SHA-256 of the segment as Postgres wrote it (records written
    /// before pitr used BLAKE3; empty since).
    pub sha256: String,
    /// BLAKE3 of the segment as Postgres wrote it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    pub pushed_at: DateTime<Utc>,
    pub summary: Option<WalSummary>,
    /// Why the scan failed, when it did (the segment is still archived).
    pub scan_error: Option<String>,
    /// The content tag naming the data object (`wal/<TLI>/<name>.<tag>.zst`,
    /// see `repo::layout::segment_data`); absent in records written before
    /// format version 2, whose data object has the plain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_tag: Option<String>,
    /// The beginning of the segment's last record when it runs into the
    /// next segment and may be a transaction end or restore point
    /// (`SegmentScan::tail`): the next segment's push completes it
    /// (`WalSummary::head_read`). Not part of the WAL index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<TailPrefix>,
}

/// A compacted stretch of the WAL index (`catalog/wal/<TLI>/chunk-<N>.json`):
/// the records of every archived segment of timeline `timeline` whose
/// number lies in `first_segno..=last_segno`. Immutable once written.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalIndexChunk {
    pub timeline: TimelineId,
    pub chunk: u64,
    pub first_segno: SegNo,
    pub last_segno: SegNo,
    pub segments: Vec<WalSegmentRecord>,
}

/// A finished, restorable base backup (`catalog/backups/<id>.json`). It is
/// written last, after every file and the manifest, and only once the stop
/// segment is archived: its presence is what makes a backup listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupRecord {
    pub id: String,
    pub label: String,
    pub system_id: SystemId,
    pub pg_major: PgMajor,
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub stop_timeline: TimelineId,
    pub start_segment: String,
    pub stop_segment: String,
    /// Server clock (`clock_timestamp()`) right before `pg_backup_start`.
    pub start_time: DateTime<Utc>,
    /// Server clock right after `pg_backup_stop` returned: every commit
    /// after this time lies after the backup's consistency point.
    pub stop_time: DateTime<Utc>,
    pub fingerprint: Fingerprint,
    pub files: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub pitr_version: String,
    /// The machine architecture pitr ran on when taking the backup
    /// (`std::env::consts::ARCH`); absent in records from before it was kept.
    #[serde(default)]
    pub arch: Option<String>,
    /// What kind of start point this is: a full backup (absent in records
    /// written before there were others), an incremental on a parent, or
    /// a snapshot of the data directory. Records of the other kinds are
    /// written at format version 3 (`catalog::envelope`).
    #[serde(default, skip_serializing_if = "StartKind::is_full")]
    pub start: StartKind,
}

/// The kinds of start point a restore can begin from. All are recorded as
/// `BackupRecord`s (`catalog/backups/<id>.json`): each has a WAL position
/// it is consistent at (`stop_lsn`) and a checkpoint replay starts from,
/// so the planner routes through them alike and only the cost of getting
/// the data directory back differs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartKind {
    /// Every file of the data directory, in this backup's own objects.
    #[default]
    Full,
    /// Only what changed since `parent` (a full backup or another
    /// incremental of the same cluster): restored by applying the chain
    /// from its full backup in order (`Catalog::chain`).
    Incremental {
        parent: String,
        /// Bytes of relation blocks and whole files this backup stored
        /// because they changed since the parent (before compression).
        changed_bytes: u64,
    },
    /// A snapshot of the data directory kept by a snapshot provider, not
    /// in the repository's objects: `handle` is what the provider needs
    /// to clone it back (a subvolume path, a directory, an id).
    Snapshot {
        provider: SnapshotProvider,
        handle: String,
        consistency: Consistency,
        /// The `command` provider's commands, kept so that a restore on
        /// another day needs no flags; absent for the other providers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commands: Option<SnapshotCommands>,
        /// Every tablespace the snapshot carries, by OID; absent when the
        /// cluster had none. A record with any is written at format
        /// version 4 (`StartKind::format_version`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tablespaces: Vec<SnapshotTablespace>,
    },
}

/// One tablespace a snapshot carries: where it was and, where the
/// provider snapshots it apart from the data directory, that snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotTablespace {
    /// Its OID: the name of its `pg_tblspc` link.
    pub oid: u32,
    /// The directory its link pointed to when the snapshot was taken.
    pub path: std::path::PathBuf,
    /// The provider's own snapshot of it (btrfs: a read-only snapshot of
    /// the tablespace's subvolume); absent where the data directory's
    /// snapshot holds it (copy: `pg_tblspc/<oid>/` of the copy; command:
    /// the operator's snapshot, which `--covers-tablespaces` said covers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

/// The operator's commands of the `command` provider (`sh -c`, with
/// `PITR_SNAPSHOT_ID`, `PITR_PGDATA`, `PITR_SNAPSHOT_HANDLE` and
/// `PITR_TARGET_PGDATA` in their environment; see
/// `capture::snapshot::command`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotCommands {
    /// Takes the snapshot; the last line it prints is the handle.
    pub create: String,
    /// Clones the snapshot into `PITR_TARGET_PGDATA` (an empty directory).
    pub restore: String,
    /// Removes the snapshot.
    pub delete: String,
}

impl StartKind {
    pub fn is_full(&self) -> bool {
        matches!(self, StartKind::Full)
    }

    /// `full`, `incremental` or `snapshot`: the kind's name in `plan
    /// --json` and in `--from`.
    pub fn name(&self) -> &'static str {
        match self {
            StartKind::Full => "full",
            StartKind::Incremental { .. } => "incremental",
            StartKind::Snapshot { .. } => "snapshot",
        }
    }

    pub fn parent(&self) -> Option<&str> {
        match self {
            StartKind::Incremental { parent, .. } => Some(parent),
            _ => None,
        }
    }

    /// The format version a record of this kind is written at: 3 for
    /// incrementals and snapshots, 4 for a snapshot that carries
    /// tablespaces (a pitr that reads 3 would know only its data
    /// directory's snapshot: see `catalog::envelope`).
    pub fn format_version(&self) -> u32 {
        match self {
            StartKind::Full => super::envelope::WRITE_VERSION,
            StartKind::Snapshot { tablespaces, .. } if !tablespaces.is_empty() => 4,
            StartKind::Incremental { .. } | StartKind::Snapshot { .. } => 3,
        }
    }
}

/// How a snapshot is cloned back into a data directory.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotProvider {
    /// A btrfs subvolume snapshot (`btrfs subvolume snapshot`).
    Btrfs,
    /// A copy of the directory (`cp --reflink=auto`).
    Copy,
    /// Operator-supplied create, restore and delete commands.
    Command,
}

impl SnapshotProvider {
    pub fn name(self) -> &'static str {
        match self {
            SnapshotProvider::Btrfs => "btrfs",
            SnapshotProvider::Copy => "copy",
            SnapshotProvider::Command => "command",
        }
    }
}

/// Whether a snapshot was taken inside the backup API (`pg_backup_start`
/// .. `pg_backup_stop`, with its `backup_label`) or as one atomic image
/// of a running server, which recovers like a crash: consistent only at
/// the end of the WAL written when it was taken (`stop_lsn`), so only
/// targets after that are reachable from it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    Bracketed,
    Atomic,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
}

/// One entry of a backup manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupFile {
    /// Path relative to the data directory, `/`-separated.
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    pub size: u64,
    pub stored_bytes: u64,
    /// Hash of the file's content as copied: SHA-256 (older backups) or
    /// BLAKE3; both empty for directories and for chunked files, whose
    /// chunks carry their own.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    /// A file larger than one chunk is stored as independent chunks
    /// (`files/<n>.<c>.zst`), so one big relation file is copied and
    /// restored by every worker at once. Empty: one object `files/<n>.zst`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<FileChunk>,
    /// The number `n` in this file's object keys (`files/<n>.zst`,
    /// `files/<n>.<c>.zst`): its place in the backup's walk of the data
    /// directory, which differs from its place in the manifest once a file
    /// vanished during the copy. Absent in manifests written before format
    /// version 2, where the two were always equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<u64>,
    /// Where the file's content comes from in an incremental backup: its
    /// own objects (the default, and the only kind in full backups, so
    /// manifests written before incrementals read unchanged), the parent
    /// chain's copy, or the parent chain's copy with some blocks replaced.
    #[serde(default, skip_serializing_if = "FileSource::is_own")]
    pub source: FileSource,
}

/// Where an incremental backup's file comes from (`BackupFile::source`).
/// Manifests holding anything but `Own` are written at format version 3.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileSource {
    /// The content is in this backup's objects (`files/<n>.zst` or its
    /// chunks), checked by `blake3` or the chunks' hashes.
    #[default]
    Own,
    /// The same content as the file of this path in the parent's chain
    /// (`size` and `blake3` are the parent's): no object.
    Unchanged,
    /// The parent chain's file, cut or extended to `size`, with the blocks
    /// in `blocks` replaced. Their new contents, in the order of `blocks`,
    /// are this backup's chunk objects `files/<n>.<part.chunk>.zst`, one
    /// per part, each holding the next `part.blocks` blocks.
    Delta {
        block_size: u32,
        blocks: Vec<BlockRange>,
        parts: Vec<DeltaPart>,
    },
}

impl FileSource {
    pub fn is_own(&self) -> bool {
        matches!(self, FileSource::Own)
    }

    /// `own`, `unchanged` or `delta`.
    pub fn name(&self) -> &'static str {
        match self {
            FileSource::Own => "own",
            FileSource::Unchanged => "unchanged",
            FileSource::Delta { .. } => "delta",
        }
    }
}

/// Consecutive block numbers `start .. start + count`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockRange {
    pub start: u32,
    pub count: u32,
}

impl BlockRange {
    /// Ranges of the ascending block numbers `blocks`, runs merged.
    pub fn compact(blocks: impl IntoIterator<Item = u32>) -> Vec<BlockRange> {
        let mut out: Vec<BlockRange> = Vec::new();
        for b in blocks {
            match out.last_mut() {
                Some(r) if r.start.checked_add(r.count) == Some(b) => r.count += 1,
                _ => out.push(BlockRange { start: b, count: 1 }),
            }
        }
        out
    }

    /// Every block number of `ranges`, in order.
    pub fn expand(ranges: &[BlockRange]) -> impl Iterator<Item = u32> + '_ {
        ranges
            .iter()
            .flat_map(|r| (0..r.count).map(move |i| r.start.saturating_add(i)))
    }
}

/// One object of a `Delta` file: the next `blocks` blocks of the delta's
/// list, concatenated, stored as `files/<n>.<chunk>.zst`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeltaPart {
    pub chunk: u32,
    pub blocks: u32,
    pub stored_bytes: u64,
    /// BLAKE3 of the part's raw bytes (its blocks, concatenated).
    pub blake3: String,
}

impl BackupFile {
    /// The number in this file's object keys, given its manifest position.
    pub fn object_number(&self, position: usize) -> Result<usize, String> {
        match self.object {
            None => Ok(position),
            Some(n) => usize::try_from(n).map_err(|_| format!("object number {n} is out of range")),
        }
    }
}

/// One chunk of a chunked backup file: `size` bytes at `offset`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileChunk {
    pub offset: u64,
    pub size: u64,
    pub stored_bytes: u64,
    /// BLAKE3 of the chunk's raw bytes.
    pub blake3: String,
}

/// `backups/<id>/manifest.json`: every file of the backup plus the
/// `backup_label` and `tablespace_map` that `pg_backup_stop` returned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupManifest {
    pub id: String,
    pub files: Vec<BackupFile>,
    pub backup_label: String,
    pub tablespace_map: Option<String>,
}

/// `claims/<id>.json`: the backup id one run took (created once, never
/// replaced, so two runs can never share an id) and who took it, so that a
/// later run can tell a backup that is still running from one whose
/// process is provably gone (same machine and boot, and no process with
/// that pid and start time) and clear what it left behind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupClaim {
    pub id: String,
    pub started_at: DateTime<Utc>,
    /// `/proc/sys/kernel/random/boot_id` of the machine that ran it.
    pub boot_id: String,
    pub hostname: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since
    /// boot): tells a reused pid from the original process.
    pub pid_start: u64,
}

/// `catalog/wal-horizon.json`: `pitr expire` removes (or may have
/// removed) the WAL segments numbered below `below`, of every timeline,
/// that were archived before `at`; loading the catalog leaves their index
/// entries out, so nothing plans through a segment that is gone. A
/// segment archived at or after `at` is never removed by that expire (it
/// may have been pushed while expire ran) and stays listed. Written
/// before any segment is removed; `below` only ever grows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WalHorizon {
    pub below: SegNo,
    pub at: DateTime<Utc>,
}

impl WalHorizon {
    /// Whether `r` is gone (or going) by this horizon.
    pub fn hides(&self, r: &WalSegmentRecord) -> bool {
        r.segno < self.below && r.pushed_at < self.at
    }
}

/// What one restore measured (`catalog/timings/<stamp>.json`): the cost
/// model's rates come from the medians of these.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RestoreTiming {
    pub at: DateTime<Utc>,
    pub backup_id: String,
    /// Bytes of data directory materialized, and how long it took.
    pub data_bytes: u64,
    pub materialize_seconds: f64,
    /// Bytes of WAL the plan replayed, and how long from server start to
    /// the target.
    pub wal_bytes: u64,
    pub replay_seconds: f64,
    pub startup_seconds: f64,
    /// Bytes of WAL replayed while pitr watched (from the first replay
    /// position the server told to where recovery ended), and over how
    /// long: the replay rate without the server's start-up. Absent in
    /// timings recorded by older pitr.
    #[serde(default)]
    pub replayed_bytes: Option<u64>,
    #[serde(default)]
    pub replayed_seconds: Option<f64>,
    /// The plan's estimate of the whole restore, and what it took (from
    /// the start of the download to the end of recovery).
    #[serde(default)]
    pub estimated_seconds: Option<f64>,
    #[serde(default)]
    pub actual_seconds: Option<f64>,
    /// The kind of start point restored (`StartKind::name`; for a snapshot
    /// `snapshot:<provider>`): a snapshot's clone time says nothing of the
    /// repository's restore rate, so each kind's measurements stay apart.
    /// Absent in timings of older pitr, which restored full backups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// What one `pitr verify` run found (`catalog/verify/<stamp>.json`): the
/// last of these is what "last verify result" means to `pitr check`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerifyResult {
    pub at: DateTime<Utc>,
    pub kind: VerifyKind,
    /// No problem found (and, for a restore, the scratch server started
    /// and its checks passed).
    pub ok: bool,
    pub problems: u64,
    /// Objects read and checked, and their stored bytes.
    pub objects_checked: u64,
    pub bytes_checked: u64,
    /// `restore`: the backup restored, and from the start of the restore
    /// to the first accepted connection and to the end of the checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_usable_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_checked_seconds: Option<f64>,
    /// The pitr that ran it.
    pub pitr_version: String,
}

/// Which `pitr verify` ran.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerifyKind {
    /// `pitr verify`: every object against its record, continuity, the
    /// catalog against the store.
    Integrity,
    /// `pitr verify --restore`: a scratch restore, started and checked.
    Restore,
}

impl StartKind {
    /// What a `RestoreTiming` of this kind records in `start`.
    pub fn timing_name(&self) -> String {
        match self {
            StartKind::Snapshot { provider, .. } => format!("snapshot:{}", provider.name()),
            other => other.name().to_string(),
        }
    }
}

/// Everything the planner needs, loaded by `repo/`.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub config: RepoConfig,
    pub backups: Vec<BackupRecord>,
    /// The WAL index, compact (`wal_index`): what planning reads of every
    /// archived segment.
    pub wal: WalIndex,
    pub histories: BTreeMap<TimelineId, TimelineHistory>,
    /// The most recent restores' measurements (at most 20).
    pub timings: Vec<RestoreTiming>,
    /// Catalog objects that could not be read (corrupt, unknown format,
    /// invalid history): left out, so planning goes around them, and
    /// reported by `info` and `plan`.
    pub damaged: Vec<DamagedObject>,
}

/// Why an incremental's chain cannot be restored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ChainError {
    #[error("backup {backup} needs {parent}, which is not in the catalog (removed, or damaged and left out)")]
    Missing { backup: String, parent: String },
    #[error("the parents of backup {backup} lead back to it")]
    Loop { backup: String },
    #[error(
        "backup {backup} names {parent} as its parent, which is a snapshot or of another cluster"
    )]
    Foreign { backup: String, parent: String },
}

/// A catalog object left out of the catalog, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DamagedObject {
    pub key: String,
    pub reason: String,
}

impl Catalog {
    /// The history of `tli` (timeline 1 has no file and is its own root).
    pub fn history_of(&self, tli: TimelineId) -> Option<TimelineHistory> {
        if tli == TimelineId::FIRST {
            Some(TimelineHistory::root())
        } else {
            self.histories.get(&tli).cloned()
        }
    }

    pub fn backup(&self, id: &str) -> Option<&BackupRecord> {
        self.backups.iter().find(|b| b.id == id)
    }

    /// The start points `id` is restored from, its full backup first and
    /// `id` last: one record for a full backup or snapshot, the chain of
    /// parents for an incremental. Err names the first parent that is not
    /// in the catalog (removed, or damaged and left out), or a chain that
    /// loops or crosses clusters.
    pub fn chain(&self, id: &str) -> Result<Vec<&BackupRecord>, ChainError> {
        let mut chain = Vec::new();
        let mut at = id;
        loop {
            let Some(b) = self.backup(at) else {
                return Err(ChainError::Missing {
                    backup: id.to_string(),
                    parent: at.to_string(),
                });
            };
            if chain.iter().any(|c: &&BackupRecord| c.id == b.id)
                || chain.len() > self.backups.len()
            {
                return Err(ChainError::Loop {
                    backup: id.to_string(),
                });
            }
            if let Some(child) = chain.last() {
                if b.system_id != child.system_id || matches!(b.start, StartKind::Snapshot { .. }) {
                    return Err(ChainError::Foreign {
                        backup: id.to_string(),
                        parent: b.id.clone(),
                    });
                }
            }
            chain.push(b);
            match b.start.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// The backups whose chains need `id` (its incrementals, and theirs):
    /// what removing `id` would leave unrestorable. Whatever removes a
    /// listed backup (a future `expire`) must ask this first and keep `id`
    /// while it is not empty; today nothing removes listed backups (the
    /// sweep of `capture::backup::claim` removes only unlisted ones).
    pub fn dependents(&self, id: &str) -> Vec<&BackupRecord> {
        self.backups
            .iter()
            .filter(|b| b.id != id)
            .filter(|b| {
                self.chain(&b.id)
                    .is_ok_and(|c| c.iter().any(|p| p.id == id))
            })
            .collect()
    }

    /// Newest timeline with any archived WAL or history file.
    pub fn latest_timeline(&self) -> TimelineId {
        let wal = self.wal.timelines().max();
        let hist = self.histories.keys().copied().max();
        wal.max(hist).unwrap_or(TimelineId::FIRST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{at, record, Kit};

    #[test]
    fn a_horizon_hides_only_what_was_archived_before_it() {
        let h = WalHorizon {
            below: SegNo::new(10),
            at: at(500),
        };
        let mut r = record(1, 9, 1000, 90);
        r.pushed_at = at(499);
        assert!(h.hides(&r));
        // Archived while (or after) the expire ran: kept and listed.
        r.pushed_at = at(500);
        assert!(!h.hides(&r));
        let mut r = record(1, 10, 1000, 100);
        r.pushed_at = at(1);
        assert!(!h.hides(&r), "at the horizon");
    }

    fn with_start(mut c: Catalog, id: &str, start: StartKind) -> Catalog {
        for b in c.backups.iter_mut().filter(|b| b.id == id) {
            b.start = start.clone();
        }
        c
    }

    fn inc(parent: &str) -> StartKind {
        StartKind::Incremental {
            parent: parent.into(),
            changed_bytes: 1,
        }
    }

    fn ids(v: Vec<&BackupRecord>) -> Vec<&str> {
        v.into_iter().map(|b| b.id.as_str()).collect()
    }

    /// A chain runs from the full backup to the incremental; dependents
    /// are every backup whose chain holds the one asked about.
    #[test]
    fn chain_and_dependents() {
        let c = Kit::new()
            .backup("full", 1, 2, 10)
            .backup("i1", 1, 4, 1)
            .backup("i2", 1, 6, 1)
            .backup("other", 1, 8, 10)
            .backup("i3", 1, 9, 1)
            .build();
        let c = with_start(c, "i1", inc("full"));
        let c = with_start(c, "i2", inc("i1"));
        let c = with_start(c, "i3", inc("i1"));
        assert_eq!(ids(c.chain("i2").unwrap()), ["full", "i1", "i2"]);
        assert_eq!(ids(c.chain("full").unwrap()), ["full"]);
        assert_eq!(ids(c.dependents("full")), ["i1", "i2", "i3"]);
        assert_eq!(ids(c.dependents("i1")), ["i2", "i3"]);
        assert!(c.dependents("i2").is_empty());
        assert!(c.dependents("other").is_empty());
    }

    #[test]
    fn chain_refuses_a_missing_parent_a_loop_and_a_snapshot_parent() {
        let c = Kit::new()
            .backup("a", 1, 2, 10)
            .backup("b", 1, 4, 1)
            .backup("snap", 1, 6, 1)
            .backup("c", 1, 8, 1)
            .build();
        let missing = with_start(c.clone(), "b", inc("gone"));
        assert_eq!(
            missing.chain("b").unwrap_err(),
            ChainError::Missing {
                backup: "b".into(),
                parent: "gone".into()
            }
        );
        // What needs a removed backup is not restorable: nobody depends on
        // a backup that is not there, and the orphan lists no dependents.
        assert!(missing.dependents("gone").is_empty());

        let looped = with_start(with_start(c.clone(), "a", inc("b")), "b", inc("a"));
        assert_eq!(
            looped.chain("b").unwrap_err(),
            ChainError::Loop { backup: "b".into() }
        );
        assert!(looped.dependents("a").is_empty());

        let snap = with_start(
            with_start(
                c,
                "snap",
                StartKind::Snapshot {
                    provider: SnapshotProvider::Copy,
                    handle: "/snaps/1".into(),
                    consistency: Consistency::Bracketed,
                    commands: None,
                    tablespaces: Vec::new(),
                },
            ),
            "c",
            inc("snap"),
        );
        assert_eq!(
            snap.chain("c").unwrap_err(),
            ChainError::Foreign {
                backup: "c".into(),
                parent: "snap".into()
            }
        );
        assert!(snap.dependents("snap").is_empty());
    }

    /// FileSource: each kind round-trips; a manifest entry written before
    /// it existed reads as `Own`, and an `Own` entry is written without it.
    #[test]
    fn file_source_round_trips_and_old_entries_read_as_own() {
        let old = r#"{"path":"base/5/16384","kind":"file","mode":384,"size":8192,
            "stored_bytes":100,"sha256":"","blake3":"ab","object":3}"#;
        let f: BackupFile = serde_json::from_str(old).unwrap();
        assert_eq!(f.source, FileSource::Own);
        let back = serde_json::to_value(&f).unwrap();
        assert!(back.get("source").is_none(), "{back}");

        for source in [
            FileSource::Unchanged,
            FileSource::Delta {
                block_size: 8192,
                blocks: BlockRange::compact([0, 1, 2, 7, 9, 10]),
                parts: vec![DeltaPart {
                    chunk: 0,
                    blocks: 6,
                    stored_bytes: 1234,
                    blake3: "cd".into(),
                }],
            },
        ] {
            let g = BackupFile {
                source: source.clone(),
                ..f.clone()
            };
            let text = serde_json::to_string(&g).unwrap();
            assert!(text.contains(source.name()), "{text}");
            assert_eq!(serde_json::from_str::<BackupFile>(&text).unwrap(), g);
        }
        let ranges = BlockRange::compact([0, 1, 2, 7, 9, 10]);
        assert_eq!(
            ranges,
            [
                BlockRange { start: 0, count: 3 },
                BlockRange { start: 7, count: 1 },
                BlockRange { start: 9, count: 2 }
            ]
        );
        assert_eq!(
            BlockRange::expand(&ranges).collect::<Vec<_>>(),
            [0, 1, 2, 7, 9, 10]
        );
    }
}

#[cfg(test)]
mod snapshot_kind_tests {
    use super::*;

    /// The JSON a snapshot record's `start` is written as (and read back
    /// from): the command provider's commands only where it has them.
    #[test]
    fn snapshot_start_points_round_trip_with_and_without_commands() {
        let btrfs = StartKind::Snapshot {
            provider: SnapshotProvider::Btrfs,
            handle: "/srv/.pitr-snapshots/20261128T000000Z".into(),
            consistency: Consistency::Atomic,
            commands: None,
            tablespaces: Vec::new(),
        };
        let json = serde_json::to_value(&btrfs).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "snapshot", "provider": "btrfs",
                "handle": "/srv/.pitr-snapshots/20261128T000000Z", "consistency": "atomic"})
        );
        assert_eq!(serde_json::from_value::<StartKind>(json).unwrap(), btrfs);
        let command = StartKind::Snapshot {
            provider: SnapshotProvider::Command,
            handle: "snap-0abc".into(),
            consistency: Consistency::Bracketed,
            commands: Some(SnapshotCommands {
                create: "c".into(),
                restore: "r".into(),
                delete: "d".into(),
            }),
            tablespaces: Vec::new(),
        };
        let json = serde_json::to_value(&command).unwrap();
        assert_eq!(json["commands"]["restore"], "r");
        assert_eq!(serde_json::from_value::<StartKind>(json).unwrap(), command);
        assert_eq!(command.format_version(), 3);
        assert_eq!(command.name(), "snapshot");
    }

    /// A snapshot with tablespaces lists each (its own snapshot's handle
    /// only where the provider made one) and is written at version 4, which
    /// a pitr that reads up to 3 refuses: it would know only the data
    /// directory's snapshot.
    #[test]
    fn a_snapshot_with_tablespaces_is_written_at_version_4() {
        let with = StartKind::Snapshot {
            provider: SnapshotProvider::Btrfs,
            handle: "/srv/.pitr-snapshots/S".into(),
            consistency: Consistency::Bracketed,
            commands: None,
            tablespaces: vec![
                SnapshotTablespace {
                    oid: 16384,
                    path: "/srv/ts one".into(),
                    handle: Some("/srv/.pitr-snapshots/S.tablespace-16384".into()),
                },
                SnapshotTablespace {
                    oid: 16385,
                    path: "/srv/ts2".into(),
                    handle: None,
                },
            ],
        };
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(
            json["tablespaces"],
            serde_json::json!([
                {"oid": 16384, "path": "/srv/ts one",
                 "handle": "/srv/.pitr-snapshots/S.tablespace-16384"},
                {"oid": 16385, "path": "/srv/ts2"}
            ])
        );
        assert_eq!(serde_json::from_value::<StartKind>(json).unwrap(), with);
        assert_eq!(with.format_version(), 4);
        assert!(with.format_version() <= super::super::envelope::FORMAT_VERSION);
        let full = StartKind::Full;
        assert_eq!(full.format_version(), super::super::envelope::WRITE_VERSION);
    }
}
