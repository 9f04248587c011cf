//! Positions in the WAL: `Lsn`, `TimelineId`, `SegNo` and `WalSegmentSize`,
//! with Postgres' own text forms. Mirrors `xlog_internal.h` (XLByteToSeg,
//! XLogFileName, XLogFromFileName) and `pg_lsn.c` (`%X/%X`).
//!
//! Invariants: a `WalSegmentSize` is always a power of two between 1 MiB and
//! 1 GiB (as initdb's `--wal-segsize` allows) and comes from pg_control or a
//! repository's recorded settings, never assumed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors parsing the text forms of WAL positions and names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PosError {
    #[error("invalid LSN {0:?}: expected two hex numbers like 16/B374D848")]
    Lsn(String),
    #[error("invalid timeline ID {0:?}: expected a positive number")]
    Timeline(String),
    #[error("invalid WAL segment size {0}: must be a power of two between 1 MiB and 1 GiB")]
    SegmentSize(u64),
}

/// A WAL location (XLogRecPtr), printed as `%X/%X` like Postgres.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub const fn new(v: u64) -> Lsn {
        Lsn(v)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, n: u64) -> Option<Lsn> {
        self.0.checked_add(n).map(Lsn)
    }

    pub fn checked_sub(self, other: Lsn) -> Option<u64> {
        self.0.checked_sub(other.0)
    }

    /// The segment holding the byte at this position (XLByteToSeg).
    pub fn segno(self, size: WalSegmentSize) -> SegNo {
        SegNo(self.0 / size.bytes())
    }

    /// The segment holding the byte just before this position: the segment
    /// an *end* pointer belongs to (XLByteToPrevSeg).
    pub fn prev_segno(self, size: WalSegmentSize) -> SegNo {
        SegNo(self.0.saturating_sub(1) / size.bytes())
    }

    /// Offset within its segment (XLogSegmentOffset).
    pub fn segment_offset(self, size: WalSegmentSize) -> u64 {
        self.0 & (size.bytes() - 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = PosError;
    fn from_str(s: &str) -> Result<Lsn, PosError> {
        let err = || PosError::Lsn(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(err());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Postgres timeline ID (32 bits, starts at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct TimelineId(u32);

impl TimelineId {
    pub const FIRST: TimelineId = TimelineId(1);

    pub fn new(v: u32) -> Result<TimelineId, PosError> {
        if v == 0 {
            return Err(PosError::Timeline("0".into()));
        }
        Ok(TimelineId(v))
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for TimelineId {
    type Error = PosError;
    fn try_from(v: u32) -> Result<Self, PosError> {
        TimelineId::new(v)
    }
}

impl From<TimelineId> for u32 {
    fn from(t: TimelineId) -> u32 {
        t.0
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TimelineId {
    type Err = PosError;
    fn from_str(s: &str) -> Result<Self, PosError> {
        let v: u32 = s
            .trim()
            .parse()
            .map_err(|_| PosError::Timeline(s.to_string()))?;
        TimelineId::new(v).map_err(|_| PosError::Timeline(s.to_string()))
    }
}

/// A WAL segment number (XLogSegNo): LSN / segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegNo(u64);

impl SegNo {
    pub const fn new(v: u64) -> SegNo {
        SegNo(v)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    pub fn next(self) -> SegNo {
        SegNo(self.0 + 1)
    }
    /// First byte of this segment.
    pub fn start_lsn(self, size: WalSegmentSize) -> Lsn {
        Lsn(self.0 * size.bytes())
    }
}

impl fmt::Display for SegNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// WAL segment size in bytes, validated like the server does
/// (IsValidWalSegSize: power of two, 1 MiB ..= 1 GiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct WalSegmentSize(u64);

impl WalSegmentSize {
    pub const MIN: u64 = 1 << 20;
    pub const MAX: u64 = 1 << 30;

    pub fn new(bytes: u64) -> Result<WalSegmentSize, PosError> {
        if bytes.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&bytes) {
            Ok(WalSegmentSize(bytes))
        } else {
            Err(PosError::SegmentSize(bytes))
        }
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// XLogSegmentsPerXLogId: segments per 4 GiB "xlogid".
    pub const fn segments_per_id(self) -> u64 {
        0x1_0000_0000 / self.0
    }
}

impl TryFrom<u64> for WalSegmentSize {
    type Error = PosError;
    fn try_from(v: u64) -> Result<Self, PosError> {
        WalSegmentSize::new(v)
    }
}

impl From<WalSegmentSize> for u64 {
    fn from(s: WalSegmentSize) -> u64 {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_text_forms() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.as_u64(), 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
        assert_eq!("a/1b".parse::<Lsn>().unwrap().to_string(), "A/1B");
        for bad in ["", "16", "16/", "/1", "G/1", "123456789/0", "1/2/3", "-1/2"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn lsn_json_is_a_string() {
        let l = Lsn::new(0x3002648);
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"0/3002648\"");
        let back: Lsn = serde_json::from_str("\"0/3002648\"").unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn segment_sizes() {
        assert!(WalSegmentSize::new(16 << 20).is_ok());
        assert!(WalSegmentSize::new(1 << 20).is_ok());
        assert!(WalSegmentSize::new(1 << 30).is_ok());
        assert!(WalSegmentSize::new(1 << 31).is_err());
        assert!(WalSegmentSize::new(3 << 20).is_err());
        assert!(WalSegmentSize::new(512 << 10).is_err());
    }

    #[test]
    fn end_pointer_belongs_to_previous_segment() {
        let s = WalSegmentSize::new(16 << 20).unwrap();
        let boundary = Lsn::new(3 * (16 << 20));
        assert_eq!(boundary.segno(s), SegNo::new(3));
        assert_eq!(boundary.prev_segno(s), SegNo::new(2));
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v in any::<u64>()) {
            let l = Lsn::new(v);
            prop_assert_eq!(l.to_string().parse::<Lsn>().unwrap(), l);
        }
    }
}
