//! One WAL record once its bytes are contiguous: the 24-byte XLogRecord
//! header (`xlogrecord.h`), its validity checks and CRC-32C
//! (`xlogreader.c: ValidXLogRecordHeader, ValidXLogRecord`), and the walk over
//! the fragment headers that finds the main data
//! (`xlogreader.c: DecodeXLogRecord`).
//!
//! Invariants: nothing here allocates or panics; a `RecordHeader` only exists
//! for at least 24 bytes; `main_data` returns a range inside the record.

use std::ops::Range;

use super::page::WalFormat;
use crate::pg::bytes::{u16_at, u32_at, u64_at, u8_at};

/// SizeOfXLogRecord.
pub(crate) const RECORD_HEADER_SIZE: usize = 24;
/// Offset of xl_crc; the CRC covers the header up to here.
const CRC_OFFSET: usize = 20;
/// MaxAllocSize: Postgres refuses to read longer records (AllocSizeIsValid).
pub(crate) const MAX_RECORD_LEN: u32 = 0x3FFF_FFFF;
/// RM_MAX_BUILTIN_ID in 12–18 (LogicalMessage, 21).
const RM_MAX_BUILTIN_ID: u8 = 21;
/// RM_MIN_CUSTOM_ID (15+).
const RM_MIN_CUSTOM_ID: u8 = 128;

// Fragment ids (xlogrecord.h).
const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;

// fork_flags and bimg_info bits.
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// sizeof(RelFileNode) / sizeof(RelFileLocator).
const REL_LOCATOR_SIZE: usize = 12;

/// The fixed part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) tot_len: u32,
    pub(crate) xid: u32,
    pub(crate) prev: u64,
    pub(crate) info: u8,
    pub(crate) rmid: u8,
    pub(crate) crc: u32,
}

impl RecordHeader {
    /// Reads the header from the first 24 bytes, if present.
    pub(crate) fn read(b: &[u8]) -> Option<RecordHeader> {
        Some(RecordHeader {
            tot_len: u32_at(b, 0)?,
            xid: u32_at(b, 4)?,
            prev: u64_at(b, 8)?,
            info: u8_at(b, 16)?,
            rmid: u8_at(b, 17)?,
            crc: u32_at(b, CRC_OFFSET)?,
        })
    }

    /// ValidXLogRecordHeader. `prev` is the previous record's start when
    /// reading sequentially; for the first record of a scan (random access)
    /// Postgres only requires xl_prev to point backwards.
    pub(crate) fn is_valid(&self, lsn: u64, prev: Option<u64>, fmt: WalFormat) -> bool {
        let rmid_ok = self.rmid <= RM_MAX_BUILTIN_ID
            || (fmt.allows_custom_rmgrs() && self.rmid >= RM_MIN_CUSTOM_ID);
        let prev_ok = match prev {
            Some(p) => self.prev == p,
            None => self.prev < lsn,
        };
        (RECORD_HEADER_SIZE as u32..=MAX_RECORD_LEN).contains(&self.tot_len) && rmid_ok && prev_ok
    }
}

/// ValidXLogRecord: CRC-32C over the payload `[24, tot_len)`, then the header
/// up to xl_crc. `rec` must be the whole record (`tot_len` bytes).
pub(crate) fn crc_ok(rec: &[u8]) -> bool {
    let (Some(head), Some(body), Some(stored)) = (
        rec.get(..CRC_OFFSET),
        rec.get(RECORD_HEADER_SIZE..),
        u32_at(rec, CRC_OFFSET),
    ) else {
        return false;
    };
    crc32c::crc32c_append(crc32c::crc32c(body), head) == stored
}

/// DecodeXLogRecord, reduced to what the scanner needs: walks the block,
/// origin and top-level-xid headers and returns where the main data lies.
/// The payloads follow all headers and the main data comes last, so it is
/// the final `main_len` bytes. `None` if the headers are inconsistent with
/// `tot_len` (Postgres reports "invalid record" and stops reading there).
///
/// Not checked (they need BLCKSZ from pg_control): an uncompressed image's
/// hole against BLCKSZ, and hole offsets.
pub(crate) fn main_data(rec: &[u8], fmt: WalFormat) -> Option<Range<usize>> {
    main_data_of(rec, rec.len(), fmt)
}

/// [`main_data`] for a record of `tot_len` bytes of which only the prefix
/// `rec` is at hand (one that runs into the next segment): the range is in
/// the whole record's coordinates and may reach past `rec`. `None` also when
/// a fragment header lies past `rec`.
pub(crate) fn main_data_of(rec: &[u8], tot_len: usize, fmt: WalFormat) -> Option<Range<usize>> {
    let mut off = RECORD_HEADER_SIZE;
    // Bytes of payload announced so far (blocks' data and images, main data).
    let mut datatotal: usize = 0;
    let mut main_len: usize = 0;
    let mut max_block_id: Option<u8> = None;
    let mut have_rel = false;
    let compressed_mask = fmt.bimg_compressed_mask();

    // COPY_HEADER_FIELD: take `n` header bytes, failing if they overrun.
    macro_rules! take {
        ($n:expr) => {{
            let at = off;
            let end = off.checked_add($n)?;
            if end > tot_len || end > rec.len() {
                return None;
            }
            off = end;
            at
        }};
    }

    while tot_len - off > datatotal {
        let id = u8_at(rec, take!(1))?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(u8_at(rec, take!(1))?);
                datatotal = datatotal.checked_add(main_len)?;
                break; // by convention the main data fragment is last
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = usize::try_from(u32_at(rec, take!(4))?).ok()?;
                datatotal = datatotal.checked_add(main_len)?;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                take!(2);
            }
            XLR_BLOCK_ID_TOPLEVEL_XID if fmt.has_toplevel_xid_block() => {
                take!(4);
            }
            block_id if block_id <= XLR_MAX_BLOCK_ID => {
                if max_block_id.is_some_and(|m| block_id <= m) {
                    return None; // out-of-order block_id
                }
                max_block_id = Some(block_id);
                let fork_flags = u8_at(rec, take!(1))?;
                let data_len = usize::from(u16_at(rec, take!(2))?);
                let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
                if has_data != (data_len > 0) {
                    return None; // HAS_DATA must be set iff data_length > 0
                }
                datatotal = datatotal.checked_add(data_len)?;
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let bimg_len = usize::from(u16_at(rec, take!(2))?);
                    take!(2); // hole_offset
                    let bimg_info = u8_at(rec, take!(1))?;
                    if bimg_info & compressed_mask != 0 && bimg_info & BKPIMAGE_HAS_HOLE != 0 {
                        take!(2); // hole_length
                    }
                    datatotal = datatotal.checked_add(bimg_len)?;
                }
                if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    take!(REL_LOCATOR_SIZE);
                    have_rel = true;
                } else if !have_rel {
                    return None; // BKPBLOCK_SAME_REL set but no previous rel
                }
                take!(4); // blkno
            }
            _ => return None, // invalid block_id
        }
    }
    if tot_len - off != datatotal {
        return None;
    }
    Some(tot_len - main_len..tot_len)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const PG15: WalFormat = WalFormat { major: 15 };

    /// Builds a record with a valid CRC: header fields, fragment headers and
    /// payload given as raw bytes.
    pub(crate) fn record(rmid: u8, info: u8, xid: u32, prev: u64, body: &[u8]) -> Vec<u8> {
        let tot_len = (RECORD_HEADER_SIZE + body.len()) as u32;
        let mut r = Vec::with_capacity(tot_len as usize);
        r.extend_from_slice(&tot_len.to_le_bytes());
        r.extend_from_slice(&xid.to_le_bytes());
        r.extend_from_slice(&prev.to_le_bytes());
        r.push(info);
        r.push(rmid);
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&[0; 4]);
        r.extend_from_slice(body);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&r[24..]), &r[..20]);
        r[20..24].copy_from_slice(&crc.to_le_bytes());
        r
    }

    /// Fragment headers + payload for a record with only main data.
    pub(crate) fn main_only(main: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        if main.len() < 256 {
            b.push(XLR_BLOCK_ID_DATA_SHORT);
            b.push(main.len() as u8);
        } else {
            b.push(XLR_BLOCK_ID_DATA_LONG);
            b.extend_from_slice(&(main.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(main);
        b
    }

    #[test]
    fn crc_and_header_checks() {
        let mut r = record(0, 0x40, 0, 0x100, &[]);
        assert!(crc_ok(&r));
        let h = RecordHeader::read(&r).unwrap();
        assert_eq!(h.tot_len, 24);
        assert!(h.is_valid(0x200, Some(0x100), PG15));
        assert!(h.is_valid(0x200, None, PG15));
        assert!(!h.is_valid(0x200, Some(0x108), PG15));
        assert!(!h.is_valid(0x100, None, PG15));
        r[19] ^= 1; // padding byte is covered by the CRC
        assert!(!crc_ok(&r));
        assert!(!crc_ok(&r[..10]));

        let custom = RecordHeader::read(&record(130, 0, 0, 0, &[])).unwrap();
        assert!(custom.is_valid(8, None, PG15));
        assert!(!custom.is_valid(8, None, WalFormat { major: 14 }));
        let bad = RecordHeader::read(&record(22, 0, 0, 0, &[])).unwrap();
        assert!(!bad.is_valid(8, None, PG15));
    }

    #[test]
    fn main_data_after_blocks() {
        // block 0 with data and a new rel, block 1 with SAME_REL and an
        // uncompressed image, an origin, a top-level xid, then main data.
        let mut b = vec![0u8, BKPBLOCK_HAS_DATA];
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&[1, BKPBLOCK_HAS_IMAGE | BKPBLOCK_SAME_REL]);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&5u16.to_le_bytes()); // bimg_len
        b.extend_from_slice(&0u16.to_le_bytes()); // hole_offset
        b.push(BKPIMAGE_HAS_HOLE); // not compressed: no hole_length
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&[XLR_BLOCK_ID_ORIGIN, 1, 0]);
        b.extend_from_slice(&[XLR_BLOCK_ID_TOPLEVEL_XID, 9, 0, 0, 0]);
        b.extend_from_slice(&[XLR_BLOCK_ID_DATA_SHORT, 4]);
        b.extend_from_slice(&[0xAA; 3]); // block 0 data
        b.extend_from_slice(&[0xBB; 5]); // block 1 image
        b.extend_from_slice(&[1, 2, 3, 4]); // main data
        let r = record(10, 0, 5, 0, &b);
        let m = main_data(&r, PG15).unwrap();
        assert_eq!(&r[m], &[1, 2, 3, 4]);
        // 13 has no TOPLEVEL_XID fragment.
        assert_eq!(main_data(&r, WalFormat { major: 13 }), None);
    }

    #[test]
    fn main_data_rejects_inconsistent_headers() {
        let r = record(0, 0, 0, 0, &main_only(&[9; 88]));
        assert_eq!(main_data(&r, PG15).map(|m| m.len()), Some(88));
        let long = record(0, 0, 0, 0, &main_only(&[9; 300]));
        assert_eq!(main_data(&long, PG15).map(|m| m.len()), Some(300));
        // Announced main data longer than the record.
        let mut short = main_only(&[9; 10]);
        short[1] = 11;
        assert_eq!(main_data(&record(0, 0, 0, 0, &short), PG15), None);
        // SAME_REL on the first block.
        let mut b = vec![0u8, BKPBLOCK_SAME_REL, 0, 0];
        b.extend_from_slice(&[0; 4]);
        assert_eq!(main_data(&record(10, 0, 0, 0, &b), PG15), None);
        // Block ids out of order.
        let mut b = Vec::new();
        for id in [1u8, 1] {
            b.extend_from_slice(&[id, 0, 0, 0]);
            b.extend_from_slice(&[0; 16]);
        }
        assert_eq!(main_data(&record(10, 0, 0, 0, &b), PG15), None);
        // Unknown fragment id.
        assert_eq!(main_data(&record(10, 0, 0, 0, &[100, 0]), PG15), None);
        // A bare header is a record with no data.
        assert_eq!(main_data(&record(0, 0x40, 0, 0, &[]), PG15), Some(24..24));
    }
}
