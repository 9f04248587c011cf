//! Which pg_control versions pitr reads, and where every field it reads
//! sits in each: one table, a column per `pg_control_version`, that the
//! decoder looks fields up in. Offsets are LP64 (x86_64, aarch64, ppc64le)
//! from `src/include/catalog/pg_control.h` of each major (the reference's
//! §1.3); `checkPointCopy` (the CheckPoint struct of `pg_control.h`)
//! starts at 40.
//!
//! Invariants, checked when the crate compiles: the table has one row per
//! `Field`, in order, and every field lies within `CONTROL_DATA_SIZE`, so
//! once the decoder has checked the file is that long no read can fail.

use super::CONTROL_DATA_SIZE;
use crate::pg::major::PgMajor;

/// A field of ControlFileData that pitr reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    SystemIdentifier,
    PgControlVersion,
    CatalogVersionNo,
    State,
    Time,
    CheckPoint,
    CheckPointRedo,
    CheckPointThisTimeLineId,
    CheckPointPrevTimeLineId,
    CheckPointTime,
    MinRecoveryPoint,
    MinRecoveryPointTli,
    BackupStartPoint,
    BackupEndPoint,
    BackupEndRequired,
    WalLevel,
    MaxConnections,
    MaxWorkerProcesses,
    MaxWalSenders,
    MaxPreparedXacts,
    MaxLocksPerXact,
    MaxAlign,
    FloatFormat,
    Blcksz,
    RelsegSize,
    XlogBlcksz,
    XlogSegSize,
    NameDataLen,
    IndexMaxKeys,
    ToastMaxChunkSize,
    Loblksize,
    Float8ByVal,
    DataChecksumVersion,
    Crc,
}

/// A field's C type, which gives its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CType {
    Bool,
    I32,
    U32,
    I64,
    U64,
    F64,
}

impl CType {
    pub(super) const fn width(self) -> usize {
        match self {
            CType::Bool => 1,
            CType::I32 | CType::U32 => 4,
            CType::I64 | CType::U64 | CType::F64 => 8,
        }
    }
}

/// The `pg_control_version` of each column of [`OFFSETS`], and the majors
/// that write it.
const VERSIONS: [(u32, &str); 4] = [(1201, "12"), (1300, "13–16"), (1700, "17"), (1800, "18")];

use CType::*;
use Field::*;

/// Every field's type and offset per version. The columns differ only where
/// pg_control.h did: 12 keeps float4ByVal at 248 (not read: 64-bit builds
/// pass float4 by value unless built with --disable-float4-byval, an option
/// 13 removed), so float8ByVal is at 249; 18's `default_char_signedness` at
/// 256 pushes the mock authentication nonce and the CRC down by four bytes.
/// 17's CheckPoint gains `wal_level` in former padding, which moves nothing.
#[rustfmt::skip]
const OFFSETS: [(Field, CType, [usize; 4]); 34] = [
    // field, C type                  1201  1300  1700  1800
    (SystemIdentifier,         U64,  [   0,    0,    0,    0]),
    (PgControlVersion,         U32,  [   8,    8,    8,    8]),
    (CatalogVersionNo,         U32,  [  12,   12,   12,   12]),
    (State,                    I32,  [  16,   16,   16,   16]),
    (Time,                     I64,  [  24,   24,   24,   24]),
    (CheckPoint,               U64,  [  32,   32,   32,   32]),
    (CheckPointRedo,           U64,  [  40,   40,   40,   40]),
    (CheckPointThisTimeLineId, U32,  [  48,   48,   48,   48]),
    (CheckPointPrevTimeLineId, U32,  [  52,   52,   52,   52]),
    (CheckPointTime,           I64,  [ 104,  104,  104,  104]),
    (MinRecoveryPoint,         U64,  [ 136,  136,  136,  136]),
    (MinRecoveryPointTli,      U32,  [ 144,  144,  144,  144]),
    (BackupStartPoint,         U64,  [ 152,  152,  152,  152]),
    (BackupEndPoint,           U64,  [ 160,  160,  160,  160]),
    (BackupEndRequired,        Bool, [ 168,  168,  168,  168]),
    (WalLevel,                 I32,  [ 172,  172,  172,  172]),
    (MaxConnections,           I32,  [ 180,  180,  180,  180]),
    (MaxWorkerProcesses,       I32,  [ 184,  184,  184,  184]),
    (MaxWalSenders,            I32,  [ 188,  188,  188,  188]),
    (MaxPreparedXacts,         I32,  [ 192,  192,  192,  192]),
    (MaxLocksPerXact,          I32,  [ 196,  196,  196,  196]),
    (MaxAlign,                 U32,  [ 204,  204,  204,  204]),
    (FloatFormat,              F64,  [ 208,  208,  208,  208]),
    (Blcksz,                   U32,  [ 216,  216,  216,  216]),
    (RelsegSize,               U32,  [ 220,  220,  220,  220]),
    (XlogBlcksz,               U32,  [ 224,  224,  224,  224]),
    (XlogSegSize,              U32,  [ 228,  228,  228,  228]),
    (NameDataLen,              U32,  [ 232,  232,  232,  232]),
    (IndexMaxKeys,             U32,  [ 236,  236,  236,  236]),
    (ToastMaxChunkSize,        U32,  [ 240,  240,  240,  240]),
    (Loblksize,                U32,  [ 244,  244,  244,  244]),
    (Float8ByVal,              Bool, [ 249,  248,  248,  248]),
    (DataChecksumVersion,      U32,  [ 252,  252,  252,  252]),
    (Crc,                      U32,  [ 288,  288,  288,  292]),
];

// The invariants of the module doc, checked at compile time.
const _: () = {
    let mut i = 0;
    while i < OFFSETS.len() {
        let (field, ty, offs) = OFFSETS[i];
        assert!(
            field as usize == i,
            "OFFSETS rows must follow Field's order"
        );
        let mut c = 0;
        while c < offs.len() {
            assert!(offs[c] + ty.width() <= CONTROL_DATA_SIZE);
            c += 1;
        }
        i += 1;
    }
};

/// Where `pg_control_version` itself sits: the same in every version, so
/// it can be read before the layout is known.
pub(super) const PG_CONTROL_VERSION_OFFSET: usize = OFFSETS[PgControlVersion as usize].2[0];

/// The layout of one `pg_control_version`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    column: usize,
}

impl Layout {
    /// The layout of a version pitr reads, if it is one.
    pub(super) fn of(pg_control_version: u32) -> Option<Layout> {
        VERSIONS
            .iter()
            .position(|(v, _)| *v == pg_control_version)
            .map(|column| Layout { column })
    }

    /// Where `field` sits, and its type.
    pub(super) fn at(self, field: Field) -> (usize, CType) {
        let (_, ty, offs) = OFFSETS[field as usize];
        (offs[self.column], ty)
    }
}

/// Versions of majors we recognise but do not read (from pgBackRest's table).
pub(super) fn unsupported_major(version: u32) -> Option<&'static str> {
    match version {
        960 => Some("9.6"),
        1002 => Some("10"),
        1100 => Some("11"),
        _ => None,
    }
}

/// The major implied by pg_control. 1300 spans 13–16; the catalog versions
/// of the GA releases split it. A hint: `PG_VERSION` is authoritative.
pub(super) fn major_hint(pg_control_version: u32, catalog_version_no: u32) -> Option<PgMajor> {
    let m = match pg_control_version {
        1201 => 12,
        1300 if catalog_version_no >= 202_307_071 => 16,
        1300 if catalog_version_no >= 202_209_061 => 15,
        1300 if catalog_version_no >= 202_107_181 => 14,
        1300 => 13,
        1700 => 17,
        1800 => 18,
        _ => return None,
    };
    PgMajor::new(m).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's §1.3: the LP64 layouts differ only at 248/249 (12)
    /// and in 256–295 (18); every version has a hint.
    #[test]
    fn columns_differ_only_where_pg_control_h_did() {
        for (field, _, offs) in OFFSETS {
            let same = offs.iter().all(|o| *o == offs[1]);
            assert_eq!(same, !matches!(field, Float8ByVal | Crc), "{field:?}");
        }
        for (v, majors) in VERSIONS {
            let layout = Layout::of(v).unwrap();
            assert_eq!(
                layout.at(PgControlVersion),
                (PG_CONTROL_VERSION_OFFSET, U32)
            );
            let hint = major_hint(v, 0).unwrap().to_string();
            assert!(majors.starts_with(&hint), "{v}: {majors} vs {hint}");
        }
        assert!(Layout::of(1100).is_none());
        assert_eq!(unsupported_major(1100), Some("11"));
    }
}
