//! Decoding `global/pg_control` (ControlFileData) for PostgreSQL 12–18 into a
//! version-neutral `ControlFile`, with the build `Fingerprint` that must match
//! between a backup and the install that restores it (`pg::fingerprint`).
//! Mirrors `src/include/catalog/pg_control.h` (the struct; where each field
//! sits per version is the table in `layout`), `ReadControlFile` in
//! `src/backend/access/transam/xlog.c` (the CRC check) and
//! `src/bin/pg_controldata/pg_controldata.c` (the wording of states).
//!
//! Invariants: a `ControlFile` only exists if the stored CRC-32C matched the
//! bytes it covers, the version was one we know the layout of, and the WAL
//! segment size was valid. Only 64-bit (LP64) layouts are decoded; a 32-bit
//! file fails its CRC at the LP64 offset and is reported as such. Decoding
//! never panics: every read is bounds-checked.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::bytes::Reader;
use super::lsn::{Lsn, PosError, TimelineId, WalSegmentSize};
use layout::Field::*;
use layout::{major_hint, unsupported_major, CType, Field, Layout, PG_CONTROL_VERSION_OFFSET};

pub use super::bytes::ByteOrder;
// The types of `ControlFile`'s fields, where callers have long found them;
// `crate::pg::{Fingerprint, PgMajor, SystemId}` are the same.
pub use super::fingerprint::{Fingerprint, FingerprintMismatch};
pub use super::major::PgMajor;
pub use super::system_id::SystemId;

mod layout;

/// `sizeof(ControlFileData)` on LP64 in every supported major.
pub const CONTROL_DATA_SIZE: usize = 296;

/// `PG_CONTROL_FILE_SIZE`: what the server writes (the tail is zeros).
pub const CONTROL_FILE_SIZE: usize = 8192;

/// The value `floatFormat` must hold (FLOATFORMAT_VALUE in pg_control.h).
const FLOAT_FORMAT_VALUE: f64 = 1_234_567.0;

/// Errors decoding pg_control.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("pg_control is {len} bytes, need at least {need}: the file is truncated; copy global/pg_control again")]
    TooShort { len: usize, need: usize },
    #[error(
        "unknown pg_control version {found} (byte-swapped: {swapped}): not a pg_control file, \
         or from a PostgreSQL release pitr does not know (it reads 12 to 18)"
    )]
    UnknownVersion { found: u32, swapped: u32 },
    #[error("pg_control version {version} is PostgreSQL {major}, which pitr does not support: use PostgreSQL 12 or later")]
    UnsupportedVersion { version: u32, major: &'static str },
    #[error(
        "pg_control checksum mismatch (stored {stored:08x}, computed {computed:08x}): \
         pg_control is corrupt or from a build with a different layout (pitr reads 64-bit builds only)"
    )]
    Crc { stored: u32, computed: u32 },
    #[error(
        "unknown cluster state {0} in pg_control: the file is corrupt or from a newer PostgreSQL"
    )]
    UnknownState(i32),
    #[error("pg_control {field} holds {secs}, which is not a valid time: the file is corrupt")]
    BadTime { field: &'static str, secs: i64 },
    #[error("pg_control {field} holds timeline 0: the file is corrupt")]
    BadTimeline {
        field: &'static str,
        #[source]
        source: PosError,
    },
    #[error("pg_control holds an invalid WAL segment size: the file is corrupt")]
    BadSegmentSize {
        #[source]
        source: PosError,
    },
}

// ---------------------------------------------------------------------------
// DbState

/// `DBState` from pg_control.h; `Display` uses pg_controldata's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbState {
    Startup,
    Shutdowned,
    ShutdownedInRecovery,
    Shutdowning,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
}

impl DbState {
    fn from_raw(v: i32) -> Result<DbState, ControlError> {
        Ok(match v {
            0 => DbState::Startup,
            1 => DbState::Shutdowned,
            2 => DbState::ShutdownedInRecovery,
            3 => DbState::Shutdowning,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            other => return Err(ControlError::UnknownState(other)),
        })
    }
}

impl fmt::Display for DbState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pg_controldata.c: dbState()
        f.write_str(match self {
            DbState::Startup => "starting up",
            DbState::Shutdowned => "shut down",
            DbState::ShutdownedInRecovery => "shut down in recovery",
            DbState::Shutdowning => "shutting down",
            DbState::InCrashRecovery => "in crash recovery",
            DbState::InArchiveRecovery => "in archive recovery",
            DbState::InProduction => "in production",
        })
    }
}

// ---------------------------------------------------------------------------
// ControlFile

/// The parts of pg_control that planning and restoring need, independent of
/// the major that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlFile {
    pub system_identifier: SystemId,
    pub state: DbState,
    /// When pg_control was last written.
    pub time: DateTime<Utc>,
    /// LSN of the latest checkpoint record.
    pub checkpoint: Lsn,
    pub checkpoint_redo: Lsn,
    pub checkpoint_timeline: TimelineId,
    pub prev_timeline: TimelineId,
    pub checkpoint_time: DateTime<Utc>,
    pub min_recovery_point: Lsn,
    /// 0 when there is no minimum recovery point.
    pub min_recovery_point_tli: u32,
    pub backup_start_point: Lsn,
    pub backup_end_point: Lsn,
    pub backup_end_required: bool,
    /// 0 minimal, 1 replica, 2 logical (WalLevel).
    pub wal_level: i32,
    pub max_connections: i32,
    pub max_worker_processes: i32,
    pub max_wal_senders: i32,
    pub max_prepared_xacts: i32,
    pub max_locks_per_xact: i32,
    pub wal_segment_size: WalSegmentSize,
    pub fingerprint: Fingerprint,
}

/// Reads fields by name: the offset and type from the layout table, the
/// bytes through the shared reader. A short read (which the length check
/// before makes impossible) is `TooShort`, never a panic.
struct Fields<'a> {
    r: Reader<'a>,
    layout: Layout,
    len: usize,
}

impl<'a> Fields<'a> {
    fn read<T>(
        &self,
        field: Field,
        ty: CType,
        read: impl FnOnce(&Reader<'a>, usize) -> Option<T>,
    ) -> Result<T, ControlError> {
        let (off, table_ty) = self.layout.at(field);
        debug_assert_eq!(table_ty, ty, "{field:?} read as the wrong type");
        read(&self.r, off).ok_or(ControlError::TooShort {
            len: self.len,
            need: off.saturating_add(ty.width()),
        })
    }

    fn u32(&self, field: Field) -> Result<u32, ControlError> {
        self.read(field, CType::U32, Reader::u32)
    }

    fn i32(&self, field: Field) -> Result<i32, ControlError> {
        self.read(field, CType::I32, Reader::i32)
    }

    fn u64(&self, field: Field) -> Result<u64, ControlError> {
        self.read(field, CType::U64, Reader::u64)
    }

    fn f64(&self, field: Field) -> Result<f64, ControlError> {
        self.read(field, CType::F64, Reader::f64)
    }

    fn bool(&self, field: Field) -> Result<bool, ControlError> {
        self.read(field, CType::Bool, Reader::bool)
    }

    fn lsn(&self, field: Field) -> Result<Lsn, ControlError> {
        self.u64(field).map(Lsn::new)
    }

    /// A `pg_time_t`: Unix seconds (not the µs-since-2000 TimestampTz).
    fn time(&self, field: Field, name: &'static str) -> Result<DateTime<Utc>, ControlError> {
        let secs = self.read(field, CType::I64, Reader::i64)?;
        DateTime::<Utc>::from_timestamp(secs, 0).ok_or(ControlError::BadTime { field: name, secs })
    }

    fn timeline(&self, field: Field, name: &'static str) -> Result<TimelineId, ControlError> {
        TimelineId::new(self.u32(field)?).map_err(|source| ControlError::BadTimeline {
            field: name,
            source,
        })
    }
}

impl ControlFile {
    /// Decodes pg_control: detects the byte order from `pg_control_version`,
    /// picks the layout by version, verifies the CRC-32C over the bytes before
    /// the CRC field (ReadControlFile), then reads the fields.
    pub fn decode(bytes: &[u8]) -> Result<ControlFile, ControlError> {
        if bytes.len() < CONTROL_DATA_SIZE {
            return Err(ControlError::TooShort {
                len: bytes.len(),
                need: CONTROL_DATA_SIZE,
            });
        }
        let (order, version) = detect_order(bytes)?;
        let layout = Layout::of(version).ok_or(ControlError::UnknownVersion {
            found: version,
            swapped: version.swap_bytes(),
        })?;
        let r = Fields {
            r: Reader::new(bytes, order),
            layout,
            len: bytes.len(),
        };

        let (crc_off, _) = layout.at(Crc);
        let covered = bytes.get(..crc_off).ok_or(ControlError::TooShort {
            len: bytes.len(),
            need: crc_off,
        })?;
        let computed = crc32c::crc32c(covered);
        let stored = r.u32(Crc)?;
        if stored != computed {
            return Err(ControlError::Crc { stored, computed });
        }

        let catalog_version_no = r.u32(CatalogVersionNo)?;
        let xlog_seg_size = r.u32(XlogSegSize)?;
        let wal_segment_size = WalSegmentSize::new(u64::from(xlog_seg_size))
            .map_err(|source| ControlError::BadSegmentSize { source })?;

        let fingerprint = Fingerprint {
            pg_control_version: version,
            catalog_version_no,
            max_align: r.u32(MaxAlign)?,
            float_format_ok: r.f64(FloatFormat)? == FLOAT_FORMAT_VALUE,
            blcksz: r.u32(Blcksz)?,
            relseg_size: r.u32(RelsegSize)?,
            xlog_blcksz: r.u32(XlogBlcksz)?,
            xlog_seg_size,
            name_data_len: r.u32(NameDataLen)?,
            index_max_keys: r.u32(IndexMaxKeys)?,
            toast_max_chunk_size: r.u32(ToastMaxChunkSize)?,
            loblksize: r.u32(Loblksize)?,
            float8_by_val: r.bool(Float8ByVal)?,
            data_checksum_version: r.u32(DataChecksumVersion)?,
            byte_order: order,
            major_hint: major_hint(version, catalog_version_no),
        };

        Ok(ControlFile {
            system_identifier: SystemId::new(r.u64(SystemIdentifier)?),
            state: DbState::from_raw(r.i32(State)?)?,
            time: r.time(Time, "time")?,
            checkpoint: r.lsn(CheckPoint)?,
            checkpoint_redo: r.lsn(CheckPointRedo)?,
            checkpoint_timeline: r.timeline(CheckPointThisTimeLineId, "checkpoint timeline")?,
            prev_timeline: r.timeline(CheckPointPrevTimeLineId, "previous timeline")?,
            checkpoint_time: r.time(CheckPointTime, "checkpoint time")?,
            min_recovery_point: r.lsn(MinRecoveryPoint)?,
            min_recovery_point_tli: r.u32(MinRecoveryPointTli)?,
            backup_start_point: r.lsn(BackupStartPoint)?,
            backup_end_point: r.lsn(BackupEndPoint)?,
            backup_end_required: r.bool(BackupEndRequired)?,
            wal_level: r.i32(WalLevel)?,
            max_connections: r.i32(MaxConnections)?,
            max_worker_processes: r.i32(MaxWorkerProcesses)?,
            max_wal_senders: r.i32(MaxWalSenders)?,
            max_prepared_xacts: r.i32(MaxPreparedXacts)?,
            max_locks_per_xact: r.i32(MaxLocksPerXact)?,
            wal_segment_size,
            fingerprint,
        })
    }
}

/// Byte order from `pg_control_version`: the value read little-endian, or
/// else byte-swapped, must be a version whose layout we know.
fn detect_order(bytes: &[u8]) -> Result<(ByteOrder, u32), ControlError> {
    let le = Reader::new(bytes, ByteOrder::Little)
        .u32(PG_CONTROL_VERSION_OFFSET)
        .ok_or(ControlError::TooShort {
            len: bytes.len(),
            need: PG_CONTROL_VERSION_OFFSET + 4,
        })?;
    let be = le.swap_bytes();
    if Layout::of(le).is_some() {
        return Ok((ByteOrder::Little, le));
    }
    if Layout::of(be).is_some() {
        return Ok((ByteOrder::Big, be));
    }
    for v in [le, be] {
        if let Some(major) = unsupported_major(v) {
            return Err(ControlError::UnsupportedVersion { version: v, major });
        }
    }
    Err(ControlError::UnknownVersion {
        found: le,
        swapped: be,
    })
}

#[cfg(test)]
mod tests;
