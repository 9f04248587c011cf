//! Records that cross a segment boundary: begun in segment N, finished in
//! N+1. A scan of one segment sees only its share of such a record, so the
//! scan of N keeps the beginning of one that may matter to a plan
//! ([`TailPrefix`]: a transaction end or restore point by its header, or a
//! header cut by the segment's end) and the scan of N+1 gives the rest
//! ([`Continuation`]); [`join`] reads the two as one record, with the same
//! checks Postgres' reader applies to any record (xlogreader.c:
//! XLogDecodeNextRecord's length and xl_prev checks, ValidXLogRecord's CRC).
//!
//! A record that the join cannot complete stays unknown: a crash between
//! writing its two halves leaves N+1 starting with
//! XLP_FIRST_IS_OVERWRITE_CONTRECORD and no continuation at all, and the
//! record never existed for recovery.

use serde::{Deserialize, Serialize};

use super::page::WalFormat;
use super::record::{crc_ok, main_data, RecordHeader};
use super::rmgr::{interpret, Interesting, RecordInfo, RestorePoint, XactEnd};
use crate::pg::lsn::Lsn;

/// The longest transaction end or restore point whose beginning the
/// scanner keeps for joining (it is stored in the segment's record). A
/// commit record is tens of bytes, a restore point about a hundred; only a
/// transaction that drops or invalidates very many relations writes a
/// longer one, and such a boundary stays unknown. A record whose header
/// is cut is kept whatever its length: at most 16 bytes lie in the segment.
pub const MAX_JOINED_LEN: usize = 64 * 1024;

/// The most of a record's rest the scanner reads from the segment it ends
/// in (held in memory for the push only, never stored).
pub const MAX_CONTINUATION: usize = 16 << 20;

/// The beginning of a record that runs into the next segment, as the scan
/// of its first segment saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailPrefix {
    /// Start of the record.
    pub lsn: Lsn,
    /// xl_tot_len.
    pub tot_len: u32,
    /// Start of the record before it in this segment (its xl_prev must
    /// name it); none when it is the segment's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Lsn>,
    /// The record's bytes in this segment, page headers left out.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

/// The rest of a record begun in the previous segment, as the scan of the
/// segment it ends in saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// Where the record ends (EndRecPtr: MAXALIGNed, the next record's
    /// start).
    pub end_lsn: Lsn,
    /// The record's bytes in this segment, page headers left out.
    pub bytes: Vec<u8>,
}

/// What a joined record is, to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crossing {
    Xact(XactEnd),
    RestorePoint(RestorePoint),
    /// Any other record: a boundary that hides nothing.
    Other,
}

/// Why two halves do not make one record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the halves hold {have} bytes, but the record is {tot_len} bytes long")]
    Length { have: usize, tot_len: u32 },
    #[error("the record header is not valid at {lsn}")]
    Header { lsn: Lsn },
    #[error("the record at {lsn} fails its CRC")]
    Crc { lsn: Lsn },
    #[error("the record at {lsn} cannot be decoded")]
    Decode { lsn: Lsn },
}

/// Reads `tail` (from segment N) and `cont` (from N+1) as one record, of
/// WAL whose pages carry `magic` (`LongPageHeader::magic`).
pub fn join(tail: &TailPrefix, cont: &Continuation, magic: u16) -> Result<Crossing, JoinError> {
    let lsn = tail.lsn;
    let fmt = WalFormat::for_magic(magic).ok_or(JoinError::Header { lsn })?;
    let have = tail.bytes.len() + cont.bytes.len();
    if have != tail.tot_len as usize {
        return Err(JoinError::Length {
            have,
            tot_len: tail.tot_len,
        });
    }
    let mut whole = Vec::with_capacity(have);
    whole.extend_from_slice(&tail.bytes);
    whole.extend_from_slice(&cont.bytes);
    let h = RecordHeader::read(&whole).ok_or(JoinError::Header { lsn })?;
    if h.tot_len != tail.tot_len || !h.is_valid(lsn.as_u64(), tail.prev.map(Lsn::as_u64), fmt) {
        return Err(JoinError::Header { lsn });
    }
    if !crc_ok(&whole) {
        return Err(JoinError::Crc { lsn });
    }
    let main = main_data(&whole, fmt).ok_or(JoinError::Decode { lsn })?;
    let info = RecordInfo {
        lsn,
        end_lsn: cont.end_lsn,
        rmid: h.rmid,
        info: h.info,
        xid: h.xid,
    };
    Ok(
        match interpret(info, whole.get(main).unwrap_or_default(), fmt) {
            Interesting::Xact(x) => Crossing::Xact(x),
            Interesting::RestorePoint(rp) => Crossing::RestorePoint(rp),
            Interesting::Checkpoint(_) | Interesting::Switch | Interesting::Other => {
                Crossing::Other
            }
        },
    )
}

/// `Vec<u8>` as a lowercase hex string.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// The records placed across segment ends on purpose
/// (testdata/wal/pg15-crossing, by testdata/make-crossing-wal-fixtures.sh).
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::Path;

    /// One case of `crossing.txt`.
    pub(crate) struct Case {
        pub(crate) case: String,
        /// (name, bytes) of segment N, where the record starts.
        pub(crate) first: (String, Vec<u8>),
        /// (name, bytes) of segment N+1, where it ends.
        pub(crate) next: (String, Vec<u8>),
        /// pg_waldump's line for the record.
        pub(crate) waldump: String,
    }

    pub(crate) fn cases() -> Vec<Case> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/wal/pg15-crossing");
        let read = |name: &str| {
            let zst = std::fs::read(dir.join(format!("{name}.zst"))).unwrap_or_else(|e| {
                panic!("{name}.zst: {e}: run testdata/make-crossing-wal-fixtures.sh as root")
            });
            (name.to_string(), zstd::decode_all(&zst[..]).unwrap())
        };
        let list = std::fs::read_to_string(dir.join("crossing.txt")).unwrap();
        list.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                let (case, n, n1, waldump) = (
                    f.next().unwrap(),
                    f.next().unwrap(),
                    f.next().unwrap(),
                    f.next().unwrap(),
                );
                Case {
                    case: case.to_string(),
                    first: read(n),
                    next: read(n1),
                    waldump: waldump.to_string(),
                }
            })
            .collect()
    }
}
