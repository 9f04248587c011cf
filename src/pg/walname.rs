//! Names of the files Postgres hands to `archive_command` and asks of
//! `restore_command`: WAL segments, `.partial` segments, `.backup` history
//! files and timeline `.history` files. Mirrors `xlog_internal.h`
//! (XLogFileName, IsXLogFileName, IsPartialXLogFileName,
//! IsBackupHistoryFileName, IsTLHistoryFileName).

use std::fmt;

use super::lsn::{Lsn, SegNo, TimelineId, WalSegmentSize};

/// What an archived file is, parsed from its name alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalFileName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`
    Segment(SegmentName),
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.partial`: the last, incomplete segment of an
    /// old timeline; recovery never reads it.
    Partial(SegmentName),
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`: backup history file;
    /// `offset` is the backup start's offset within the named segment.
    Backup { segment: SegmentName, offset: u32 },
    /// `TTTTTTTT.history`
    History(TimelineId),
}

/// A segment's name without its size: timeline and the two 32-bit halves.
/// The segment number needs the segment size (`segno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName {
    tli: TimelineId,
    log: u32,
    seg: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalNameError {
    #[error("{0:?} is not a WAL file name (expected a 24-hex-digit segment, .partial, .backup or .history name)")]
    Unknown(String),
    #[error("segment name {name:?} is impossible with {size}-byte segments (low part must be below {limit:X})")]
    BadForSize { name: String, size: u64, limit: u64 },
}

fn is_upper_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn hex32(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

impl SegmentName {
    pub fn new(tli: TimelineId, segno: SegNo, size: WalSegmentSize) -> SegmentName {
        let per = size.segments_per_id();
        SegmentName {
            tli,
            log: (segno.get() / per) as u32,
            seg: (segno.get() % per) as u32,
        }
    }

    pub fn timeline(&self) -> TimelineId {
        self.tli
    }

    /// The segment number, checking the name is possible for this size.
    pub fn segno(&self, size: WalSegmentSize) -> Result<SegNo, WalNameError> {
        let per = size.segments_per_id();
        if u64::from(self.seg) >= per {
            return Err(WalNameError::BadForSize {
                name: self.to_string(),
                size: size.bytes(),
                limit: per,
            });
        }
        Ok(SegNo::new(u64::from(self.log) * per + u64::from(self.seg)))
    }

    /// First LSN of the segment.
    pub fn start_lsn(&self, size: WalSegmentSize) -> Result<Lsn, WalNameError> {
        Ok(self.segno(size)?.start_lsn(size))
    }

    fn parse(s: &str) -> Option<SegmentName> {
        if s.len() != 24 || !is_upper_hex(s) {
            return None;
        }
        let tli = TimelineId::new(hex32(&s[0..8])?).ok()?;
        Some(SegmentName {
            tli,
            log: hex32(&s[8..16])?,
            seg: hex32(&s[16..24])?,
        })
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.tli.get(), self.log, self.seg)
    }
}

impl WalFileName {
    pub fn parse(name: &str) -> Result<WalFileName, WalNameError> {
        let unknown = || WalNameError::Unknown(name.to_string());
        if let Some(seg) = SegmentName::parse(name) {
            return Ok(WalFileName::Segment(seg));
        }
        if let Some(stem) = name.strip_suffix(".partial") {
            return SegmentName::parse(stem)
                .map(WalFileName::Partial)
                .ok_or_else(unknown);
        }
        if let Some(stem) = name.strip_suffix(".history") {
            if stem.len() == 8 && is_upper_hex(stem) {
                let tli = hex32(stem).and_then(|v| TimelineId::new(v).ok());
                return tli.map(WalFileName::History).ok_or_else(unknown);
            }
            return Err(unknown());
        }
        if let Some(stem) = name.strip_suffix(".backup") {
            if stem.len() == 33 && stem.as_bytes()[24] == b'.' && is_upper_hex(&stem[25..]) {
                let segment = SegmentName::parse(&stem[..24]).ok_or_else(unknown)?;
                let offset = hex32(&stem[25..]).ok_or_else(unknown)?;
                return Ok(WalFileName::Backup { segment, offset });
            }
        }
        Err(unknown())
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => write!(f, "{s}"),
            WalFileName::Partial(s) => write!(f, "{s}.partial"),
            WalFileName::Backup { segment, offset } => write!(f, "{segment}.{offset:08X}.backup"),
            WalFileName::History(t) => write!(f, "{:08X}.history", t.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mb(n: u64) -> WalSegmentSize {
        WalSegmentSize::new(n << 20).unwrap()
    }

    #[test]
    fn names_for_16mb_and_1gb() {
        let t1 = TimelineId::new(1).unwrap();
        let lsn: Lsn = "0/3002648".parse().unwrap();
        let n = SegmentName::new(t1, lsn.segno(mb(16)), mb(16));
        assert_eq!(n.to_string(), "000000010000000000000003");
        let lsn: Lsn = "5/C0000000".parse().unwrap();
        let n = SegmentName::new(t1, lsn.segno(mb(1024)), mb(1024));
        assert_eq!(n.to_string(), "000000010000000500000003");
        assert_eq!(n.segno(mb(1024)).unwrap(), SegNo::new(23));
        // 1 MiB segments: 4096 per xlogid.
        let n = SegmentName::new(t1, SegNo::new(4097), mb(1));
        assert_eq!(n.to_string(), "000000010000000100000001");
    }

    #[test]
    fn parses_every_kind() {
        let seg = WalFileName::parse("000000030000000100000A7F").unwrap();
        assert!(matches!(seg, WalFileName::Segment(s) if s.timeline().get() == 3));
        assert!(matches!(
            WalFileName::parse("000000010000000000000002.partial").unwrap(),
            WalFileName::Partial(_)
        ));
        let b = WalFileName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!(
            b,
            WalFileName::Backup {
                segment: SegmentName::parse("000000010000000000000002").unwrap(),
                offset: 0x28
            }
        );
        assert_eq!(b.to_string(), "000000010000000000000002.00000028.backup");
        assert_eq!(
            WalFileName::parse("0000000A.history").unwrap(),
            WalFileName::History(TimelineId::new(10).unwrap())
        );
        for bad in [
            "",
            "00000001000000000000000",
            "00000001000000000000000g",
            "000000010000000000000002.backup",
            "00000000.history",
            "000000000000000000000001",
            "RECOVERYXLOG",
            "00000001.historyx",
        ] {
            assert!(WalFileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn impossible_segment_for_size() {
        let n = SegmentName::parse("0000000100000000000000FF").unwrap();
        assert!(n.segno(mb(16)).is_ok());
        assert!(n.segno(mb(1024)).is_err());
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(tli in 1u32.., segno in 0u64..(1u64 << 34), shift in 20u32..=30) {
            let size = WalSegmentSize::new(1u64 << shift).unwrap();
            let segno = SegNo::new(segno);
            let n = SegmentName::new(TimelineId::new(tli).unwrap(), segno, size);
            let parsed = WalFileName::parse(&n.to_string()).unwrap();
            prop_assert_eq!(parsed, WalFileName::Segment(n));
            prop_assert_eq!(n.segno(size).unwrap(), segno);
        }
    }
}
