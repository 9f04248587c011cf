//! WAL page headers (`xlog_internal.h`: XLogPageHeaderData,
//! XLogLongPageHeaderData) and the per-major differences in the record
//! format. Mirrors `xlogreader.c: XLogReaderValidatePageHeader`.
//!
//! Invariants: a `LongPageHeader` returned by [`LongPageHeader::parse`] has a
//! known magic, the long-header flag, no unknown flags, a non-zero timeline, a
//! valid segment size, a page size Postgres could be built with, and a page
//! address at a segment boundary. Pages after the first are checked against
//! it by [`PageHeader::validate`].

use serde::{Deserialize, Serialize};

use super::error::WalScanError;
use crate::pg::bytes::{u16_at, u32_at, u64_at};
use crate::pg::lsn::{Lsn, TimelineId, WalSegmentSize};

/// SizeOfXLogShortPHD: MAXALIGN(20).
pub(crate) const SHORT_HEADER_SIZE: usize = 24;
/// SizeOfXLogLongPHD: MAXALIGN(36).
pub(crate) const LONG_HEADER_SIZE: usize = 40;

pub(crate) const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
pub(crate) const XLP_LONG_HEADER: u16 = 0x0002;
pub(crate) const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// XLP_ALL_FLAGS in every current minor of 12–18 (0x0007 before the late-2021
/// minors added FIRST_IS_OVERWRITE_CONTRECORD; a subset, so 0x000F accepts both).
pub(crate) const XLP_ALL_FLAGS: u16 = 0x000F;

/// The Postgres major that writes WAL pages with this XLOG_PAGE_MAGIC.
pub fn pg_major_for_page_magic(magic: u16) -> Option<u32> {
    match magic {
        0xD101 => Some(12),
        0xD106 => Some(13),
        0xD10D => Some(14),
        0xD110 => Some(15),
        0xD113 => Some(16),
        0xD116 => Some(17),
        0xD118 => Some(18),
        _ => None,
    }
}

/// The long page header at the start of every WAL segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongPageHeader {
    /// XLOG_PAGE_MAGIC of the major that wrote the segment.
    pub magic: u16,
    /// xlp_info flags (XLP_*).
    pub info: u16,
    /// Timeline of the first page (later pages may be on a newer timeline when
    /// the segment holds a timeline switch).
    pub timeline: TimelineId,
    /// LSN of the segment's first byte.
    pub page_addr: Lsn,
    /// pg_control's system_identifier.
    pub system_id: u64,
    /// wal_segment_size in bytes.
    pub seg_size: u32,
    /// XLOG_BLCKSZ, the WAL page size (8192 unless built otherwise).
    pub xlog_blcksz: u32,
}

impl LongPageHeader {
    /// Reads and checks the first 40 bytes of a segment.
    pub fn parse(segment_start: &[u8]) -> Result<LongPageHeader, WalScanError> {
        let len = segment_start.len();
        fn field<T>(v: Option<T>, len: usize) -> Result<T, WalScanError> {
            v.ok_or_else(|| {
                WalScanError::bad_header(format!(
                    "only {len} bytes, a long page header needs {LONG_HEADER_SIZE}"
                ))
            })
        }
        let b = segment_start;
        let magic = field(u16_at(b, 0), len)?;
        let info = field(u16_at(b, 2), len)?;
        let tli = field(u32_at(b, 4), len)?;
        let page_addr = field(u64_at(b, 8), len)?;
        let system_id = field(u64_at(b, 24), len)?;
        let seg_size = field(u32_at(b, 32), len)?;
        let xlog_blcksz = field(u32_at(b, 36), len)?;

        if pg_major_for_page_magic(magic).is_none() {
            return Err(WalScanError::UnknownMagic { magic });
        }
        if info & XLP_LONG_HEADER == 0 {
            return Err(WalScanError::bad_header(format!(
                "xlp_info {info:#06X} lacks XLP_LONG_HEADER: this is not the start of a segment"
            )));
        }
        if info & !XLP_ALL_FLAGS != 0 {
            return Err(WalScanError::bad_header(format!(
                "xlp_info {info:#06X} has unknown flag bits"
            )));
        }
        let timeline =
            TimelineId::new(tli).map_err(|_| WalScanError::bad_header("timeline ID is 0"))?;
        let size = WalSegmentSize::new(u64::from(seg_size)).map_err(|_| {
            WalScanError::bad_header(format!(
                "xlp_seg_size {seg_size} is not a power of two between 1 MiB and 1 GiB"
            ))
        })?;
        if !(xlog_blcksz.is_power_of_two() && (1024..=65536).contains(&xlog_blcksz)) {
            return Err(WalScanError::bad_header(format!(
                "xlp_xlog_blcksz {xlog_blcksz} is not a power of two between 1 kB and 64 kB"
            )));
        }
        if page_addr % size.bytes() != 0 {
            return Err(WalScanError::bad_header(format!(
                "xlp_pageaddr {} is not at a {seg_size}-byte segment boundary",
                Lsn::new(page_addr)
            )));
        }
        if page_addr.checked_add(size.bytes()).is_none() {
            return Err(WalScanError::bad_header(format!(
                "xlp_pageaddr {} leaves no room for a {seg_size}-byte segment",
                Lsn::new(page_addr)
            )));
        }
        Ok(LongPageHeader {
            magic,
            info,
            timeline,
            page_addr: Lsn::new(page_addr),
            system_id,
            seg_size,
            xlog_blcksz,
        })
    }

    /// The Postgres major that wrote this segment.
    pub fn pg_major(&self) -> Option<u32> {
        pg_major_for_page_magic(self.magic)
    }
    /// Whether the last WAL page of `segment` (whose first page this
    /// header is) carries a valid header for its own address: Postgres
    /// writes WAL pages in order, so a segment still being written (or a
    /// copy of one) ends in zeros or in the pages of the file it recycled.
    /// A segment closed by XLOG_SWITCH also ends in zeroed pages
    /// (CopyXLogRecordToWAL clears their headers): check for the switch too.
    pub fn last_page_written(&self, segment: &[u8]) -> bool {
        let bl = self.xlog_blcksz as usize;
        if bl == 0 || segment.len() < bl || !segment.len().is_multiple_of(bl) {
            return false;
        }
        let start = segment.len() - bl;
        let expected = self.page_addr.as_u64() + start as u64;
        let mut tli = 0;
        segment
            .get(start..)
            .and_then(|page| PageHeader::validate(page, expected, self, &mut tli))
            .is_some()
    }
}

/// A page header as found at the start of any page (the short part).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageHeader {
    pub(crate) info: u16,
    pub(crate) rem_len: u32,
}

impl PageHeader {
    /// Bytes taken by this page's header (XLogPageHeaderSize).
    pub(crate) fn size(&self) -> usize {
        if self.info & XLP_LONG_HEADER != 0 {
            LONG_HEADER_SIZE
        } else {
            SHORT_HEADER_SIZE
        }
    }

    pub(crate) fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    pub(crate) fn is_overwrite_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
    }

    /// Checks the page starting at `page` (whose expected LSN is
    /// `expected_addr`) against the segment's first header, like
    /// XLogReaderValidatePageHeader. `latest_tli` is the newest timeline seen
    /// so far and is advanced; timelines must not go backwards. `None` means
    /// the page is not valid WAL of this segment: the end of valid WAL.
    pub(crate) fn validate(
        page: &[u8],
        expected_addr: u64,
        first: &LongPageHeader,
        latest_tli: &mut u32,
    ) -> Option<PageHeader> {
        let magic = u16_at(page, 0)?;
        let info = u16_at(page, 2)?;
        let tli = u32_at(page, 4)?;
        let addr = u64_at(page, 8)?;
        let rem_len = u32_at(page, 16)?;
        if magic != first.magic || info & !XLP_ALL_FLAGS != 0 || addr != expected_addr {
            return None;
        }
        if info & XLP_LONG_HEADER != 0 {
            // A long header anywhere must describe the same cluster and sizes.
            let same = u64_at(page, 24)? == first.system_id
                && u32_at(page, 32)? == first.seg_size
                && u32_at(page, 36)? == first.xlog_blcksz;
            if !same {
                return None;
            }
        }
        if tli == 0 || tli < *latest_tli {
            return None;
        }
        *latest_tli = tli;
        Some(PageHeader { info, rem_len })
    }
}

/// What differs between majors in the parts of the record format the scanner
/// reads. Everything else in 12–18 is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalFormat {
    pub(crate) major: u32,
}

impl WalFormat {
    pub(crate) fn for_magic(magic: u16) -> Option<WalFormat> {
        pg_major_for_page_magic(magic).map(|major| WalFormat { major })
    }

    /// XLR_BLOCK_ID_TOPLEVEL_XID (252) exists from 14 on.
    pub(crate) fn has_toplevel_xid_block(self) -> bool {
        self.major >= 14
    }

    /// Bits of bimg_info meaning "image is compressed" (BKPIMAGE_COMPRESSED):
    /// BKPIMAGE_IS_COMPRESSED 0x02 until 14; pglz 0x04 | lz4 0x08 | zstd 0x10
    /// from 15 (when 0x02 became BKPIMAGE_APPLY).
    pub(crate) fn bimg_compressed_mask(self) -> u8 {
        if self.major >= 15 {
            0x04 | 0x08 | 0x10
        } else {
            0x02
        }
    }

    /// Custom resource managers (ids 128–255) exist from 15 on (RmgrIdIsValid).
    pub(crate) fn allows_custom_rmgrs(self) -> bool {
        self.major >= 15
    }

    /// sizeof(xl_xact_stats_item) when commit/abort records can carry dropped
    /// stats (XACT_XINFO_HAS_DROPPED_STATS, from 15): 12 bytes until 17,
    /// 16 in 18 (the object id became two uint32 halves).
    pub(crate) fn dropped_stats_item_size(self) -> Option<usize> {
        match self.major {
            ..=14 => None,
            15..=17 => Some(12),
            _ => Some(16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_header_bytes(magic: u16, info: u16, addr: u64) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[0..2].copy_from_slice(&magic.to_le_bytes());
        b[2..4].copy_from_slice(&info.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&addr.to_le_bytes());
        b[24..32].copy_from_slice(&7_000_000_000_000_000_001u64.to_le_bytes());
        b[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn magics() {
        let known = [
            (0xD101, 12),
            (0xD106, 13),
            (0xD10D, 14),
            (0xD110, 15),
            (0xD113, 16),
            (0xD116, 17),
            (0xD118, 18),
        ];
        for (m, v) in known {
            assert_eq!(pg_major_for_page_magic(m), Some(v));
        }
        assert_eq!(pg_major_for_page_magic(0xD098), None);
        assert_eq!(pg_major_for_page_magic(0x10D1), None);
    }

    #[test]
    fn parses_a_long_header() {
        let b = long_header_bytes(0xD110, 0x0006, 0x0700_0000);
        let h = LongPageHeader::parse(&b).unwrap();
        assert_eq!(h.pg_major(), Some(15));
        assert_eq!(h.timeline, TimelineId::FIRST);
        assert_eq!(h.page_addr, Lsn::new(0x0700_0000));
        assert_eq!(h.system_id, 7_000_000_000_000_000_001);
        assert_eq!(h.seg_size, 1 << 20);
        assert_eq!(h.xlog_blcksz, 8192);
    }

    #[test]
    fn rejects_bad_long_headers() {
        let err = |b: &[u8]| LongPageHeader::parse(b).unwrap_err();
        assert!(matches!(
            err(&long_header_bytes(0xD110, 0x0006, 0)[..39]),
            WalScanError::BadLongHeader { .. }
        ));
        assert_eq!(
            err(&long_header_bytes(0xD120, 0x0006, 0)),
            WalScanError::UnknownMagic { magic: 0xD120 }
        );
        let short = err(&long_header_bytes(0xD110, 0x0004, 0));
        assert!(
            short.to_string().contains("lacks XLP_LONG_HEADER"),
            "{short}"
        );
        assert!(matches!(
            err(&long_header_bytes(0xD110, 0x0016, 0)),
            WalScanError::BadLongHeader { .. }
        ));
        let misaligned = err(&long_header_bytes(0xD110, 0x0006, 0x2000));
        assert!(
            misaligned.to_string().contains("segment boundary"),
            "{misaligned}"
        );
        let mut b = long_header_bytes(0xD110, 0x0006, 0);
        b[36..40].copy_from_slice(&8000u32.to_le_bytes());
        assert!(err(&b).to_string().contains("xlog_blcksz 8000"));
        let last = err(&long_header_bytes(
            0xD110,
            0x0006,
            0u64.wrapping_sub(1 << 20),
        ));
        assert!(last.to_string().contains("no room"), "{last}");
        let mut b = long_header_bytes(0xD110, 0x0006, 0);
        b[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert!(err(&b).to_string().contains("timeline"));
    }

    #[test]
    fn format_differences() {
        let f = |m| WalFormat::for_magic(m).unwrap();
        assert!(!f(0xD106).has_toplevel_xid_block());
        assert!(f(0xD10D).has_toplevel_xid_block());
        assert_eq!(f(0xD10D).bimg_compressed_mask(), 0x02);
        assert_eq!(f(0xD110).bimg_compressed_mask(), 0x1C);
        assert_eq!(f(0xD10D).dropped_stats_item_size(), None);
        assert_eq!(f(0xD116).dropped_stats_item_size(), Some(12));
        assert_eq!(f(0xD118).dropped_stats_item_size(), Some(16));
    }
}
