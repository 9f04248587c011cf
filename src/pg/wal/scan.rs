//! Scans one archived WAL segment for the records a PITR index needs, the
//! way Postgres' reader walks it: `xlogreader.c: XLogFindNextRecord` to skip
//! the tail of a record begun in the previous segment, then
//! `XLogDecodeNextRecord` (page-header checks, records that span pages,
//! XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLOG_SWITCH) and `ValidXLogRecord`.
//!
//! Invariants:
//! - Only a segment whose size or first page is wrong is an error. Anything
//!   later that Postgres would treat as the end of WAL — a page with the wrong
//!   address or magic (a recycled segment), a zero or impossible length, a bad
//!   xl_prev, a CRC mismatch, an undecodable record — ends the scan cleanly
//!   with what was found before it.
//! - Never panics: every read is bounds-checked.
//! - Records that fit on their page are read in place; only records that span
//!   pages are copied, into one buffer reused for the whole scan.

use serde::{Deserialize, Serialize};

use super::crossing::{Continuation, TailPrefix, MAX_CONTINUATION, MAX_JOINED_LEN};
use super::error::WalScanError;
use super::page::{LongPageHeader, PageHeader, WalFormat};
use super::record::{crc_ok, main_data, RecordHeader, MAX_RECORD_LEN, RECORD_HEADER_SIZE};
use super::rmgr::{
    interpret, is_restore_point, is_switch, is_xact_end, CheckpointRec, Interesting, RecordInfo,
    RestorePoint, XactEnd,
};
use crate::pg::bytes::{maxalign, u32_at};
use crate::pg::lsn::{Lsn, WalSegmentSize};

/// What one segment holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentScan {
    /// The first page's long header.
    pub header: LongPageHeader,
    /// Start of the first complete record that begins in this segment (after
    /// any continuation of a record from the previous segment).
    pub first_record: Option<Lsn>,
    /// Start of the last complete record.
    pub last_record: Option<Lsn>,
    /// End of the last complete record, as Postgres' EndRecPtr: MAXALIGNed
    /// (the next record's start), and the segment's end after XLOG_SWITCH.
    pub end_lsn: Option<Lsn>,
    /// COMMIT, ABORT, COMMIT_PREPARED and ABORT_PREPARED records, in WAL order.
    pub xact_ends: Vec<XactEnd>,
    pub restore_points: Vec<RestorePoint>,
    pub checkpoints: Vec<CheckpointRec>,
    /// Start of an XLOG_SWITCH record; the rest of the segment is padding.
    pub switch_lsn: Option<Lsn>,
    /// Complete, CRC-checked records that begin in this segment.
    pub records: u64,
    /// The WAL runs on into the next segment in the middle of a record: the
    /// last record begun here (or the continuation filling the whole segment)
    /// ends in a later segment. False when the scan ended at the end of WAL.
    pub tail_incomplete: bool,
    /// With `tail_incomplete`: the record running into the next segment
    /// begins here and its header, here, shows that it is no transaction
    /// end. False when it is one, when its header is cut by the segment's
    /// end, and when one record covers the whole segment.
    #[serde(default)]
    pub tail_seen: bool,
    /// With `tail_incomplete`: what of the record running into the next
    /// segment lies here, when it may be a record a plan needs (a
    /// transaction end or restore point by its header, or a header cut by
    /// the segment's end). The next segment's `continuation` completes it
    /// ([`super::crossing::join`]); only then is it known, CRC-checked, and
    /// whether it was finished at all (a crash leaves
    /// XLP_FIRST_IS_OVERWRITE_CONTRECORD there instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<TailPrefix>,
    /// The rest of the record begun in the previous segment, when this
    /// segment's first page continues one (XLP_FIRST_IS_CONTRECORD) and it
    /// ends here. Transient: used to complete the previous segment's
    /// `tail` when this one is archived, never stored.
    #[serde(skip)]
    pub continuation: Option<Continuation>,
}

/// Scans `buf`, one whole segment of `seg_size` bytes.
pub fn scan_segment(buf: &[u8], seg_size: WalSegmentSize) -> Result<SegmentScan, WalScanError> {
    let expected = seg_size.bytes();
    let actual = buf.len() as u64;
    if actual != expected {
        return Err(WalScanError::WrongSize { actual, expected });
    }
    let header = LongPageHeader::parse(buf)?;
    if u64::from(header.seg_size) != expected {
        return Err(WalScanError::bad_header(format!(
            "xlp_seg_size is {}, but the segment size is {expected}",
            header.seg_size
        )));
    }
    let fmt = WalFormat::for_magic(header.magic).ok_or(WalScanError::UnknownMagic {
        magic: header.magic,
    })?;
    let mut scanner = Scanner {
        buf,
        fmt,
        first: header,
        blcksz: header.xlog_blcksz as usize,
        seg_start: header.page_addr.as_u64(),
        valid_pages: 0,
        latest_tli: 0,
        out: SegmentScan {
            header,
            first_record: None,
            last_record: None,
            end_lsn: None,
            xact_ends: Vec::new(),
            restore_points: Vec::new(),
            checkpoints: Vec::new(),
            switch_lsn: None,
            records: 0,
            tail_incomplete: false,
            tail_seen: false,
            tail: None,
            continuation: None,
        },
    };
    scanner.run(&mut Vec::new());
    Ok(scanner.out)
}

/// How gathering a record that spans pages went.
enum Gathered {
    /// Complete; the next record starts at this segment offset.
    Done { next: usize },
    /// The segment ended with every page valid: the record goes on in the
    /// next segment.
    RunsIntoNextSegment,
    /// A page marked XLP_FIRST_IS_OVERWRITE_CONTRECORD: the record was never
    /// finished (a crash) and WAL continues at this page's first record.
    Overwritten { page: usize },
    /// End of valid WAL.
    Invalid,
}

struct Scanner<'a> {
    buf: &'a [u8],
    fmt: WalFormat,
    first: LongPageHeader,
    blcksz: usize,
    seg_start: u64,
    /// Pages `[0, valid_pages)` passed XLogReaderValidatePageHeader.
    valid_pages: usize,
    /// Newest timeline seen in a page header; may only grow.
    latest_tli: u32,
    out: SegmentScan,
}

impl Scanner<'_> {
    /// The header of page `idx`, validating pages in order on first sight.
    /// `None` at the end of valid WAL (or past the segment).
    fn page(&mut self, idx: usize) -> Option<PageHeader> {
        let start = idx.checked_mul(self.blcksz)?;
        let page = self.buf.get(start..start.checked_add(self.blcksz)?)?;
        if idx < self.valid_pages {
            return PageHeader::validate(page, self.seg_start + start as u64, &self.first, &mut 0);
        }
        if idx != self.valid_pages {
            return None; // the scan never skips a page
        }
        let addr = self.seg_start + start as u64;
        let h = PageHeader::validate(page, addr, &self.first, &mut self.latest_tli)?;
        self.valid_pages += 1;
        Some(h)
    }

    fn run(&mut self, scratch: &mut Vec<u8>) {
        self.out.continuation = self.continuation();
        let Some(mut pos) = self.skip_continuation() else {
            return;
        };
        let buf = self.buf;
        let bl = self.blcksz;
        let mut prev: Option<u64> = None;
        while pos < buf.len() {
            if pos % bl == 0 {
                // A record starting at a page boundary starts after the header,
                // and the page must not claim to continue a record
                // ("contrecord is requested by ...").
                let Some(h) = self.page(pos / bl) else { return };
                if h.is_contrecord() {
                    return;
                }
                pos += h.size();
                continue;
            }
            let lsn = self.seg_start + pos as u64;
            let on_page = bl - pos % bl; // >= 8: records are MAXALIGNed
            let Some(tot_len) = u32_at(buf, pos) else {
                return;
            };
            if !(RECORD_HEADER_SIZE as u32..=MAX_RECORD_LEN).contains(&tot_len) {
                return; // typically 0: the end of WAL
            }
            let tot = tot_len as usize;
            // Check the header before gathering pages, when it is all here.
            let header_here = buf
                .get(pos..pos + on_page.min(RECORD_HEADER_SIZE))
                .and_then(RecordHeader::read);
            if let Some(h) = header_here {
                if !h.is_valid(lsn, prev, self.fmt) {
                    return;
                }
            }
            let (rec, next): (&[u8], usize) = if tot <= on_page {
                let Some(rec) = buf.get(pos..pos + tot) else {
                    return;
                };
                (rec, pos + maxalign(tot))
            } else {
                match self.gather(pos, tot, scratch) {
                    Gathered::Done { next } => (scratch.as_slice(), next),
                    Gathered::RunsIntoNextSegment => {
                        self.out.tail_incomplete = true;
                        self.out.tail_seen = self.tail(lsn, prev, tot, scratch);
                        return;
                    }
                    Gathered::Overwritten { page } => {
                        pos = page * bl;
                        continue;
                    }
                    Gathered::Invalid => return,
                }
            };
            let Some(h) = RecordHeader::read(rec) else {
                return;
            };
            if header_here.is_none() && !h.is_valid(lsn, prev, self.fmt) {
                return;
            }
            if !crc_ok(rec) {
                return;
            }
            let Some(main) = main_data(rec, self.fmt) else {
                return;
            };
            let switch = is_switch(h.rmid, h.info);
            let end = if switch {
                // XLogDecodeNextRecord: after a switch, the next record is in
                // the next segment; the padding belongs to the switch.
                self.seg_start + buf.len() as u64
            } else {
                self.seg_start + next as u64
            };
            self.accept(lsn, end, h, rec.get(main).unwrap_or_default());
            if switch {
                return;
            }
            prev = Some(lsn);
            pos = next;
        }
    }

    /// XLogFindNextRecord: the offset of the first record that begins in
    /// this segment, skipping `xlp_rem_len` bytes of continuation on each
    /// page that has XLP_FIRST_IS_CONTRECORD. `None` if there is none.
    fn skip_continuation(&mut self) -> Option<usize> {
        let bl = self.blcksz;
        let mut idx = 0;
        loop {
            let h = self.page(idx)?;
            let data = idx * bl + h.size();
            if !h.is_contrecord() {
                return Some(data);
            }
            let rem = h.rem_len as usize;
            if rem <= bl - h.size() {
                return Some(data + maxalign(rem));
            }
            idx += 1;
            if idx * bl >= self.buf.len() {
                // One record covers the rest of the segment.
                self.out.tail_incomplete = true;
                return None;
            }
        }
    }

    /// Copies a record of `tot` bytes starting at `pos` that does not fit on
    /// its page into `out`, checking each continuation page like
    /// XLogDecodeNextRecord.
    fn gather(&mut self, pos: usize, tot: usize, out: &mut Vec<u8>) -> Gathered {
        let buf = self.buf;
        let bl = self.blcksz;
        let mut page_start = (pos / bl + 1) * bl;
        out.clear();
        let Some(first) = buf.get(pos..page_start) else {
            return Gathered::Invalid;
        };
        out.extend_from_slice(first);
        loop {
            if page_start >= buf.len() {
                return Gathered::RunsIntoNextSegment;
            }
            let Some(h) = self.page(page_start / bl) else {
                return Gathered::Invalid;
            };
            if h.is_overwrite_contrecord() {
                return Gathered::Overwritten {
                    page: page_start / bl,
                };
            }
            let rem = h.rem_len as usize;
            // "there is no contrecord flag" / "invalid contrecord length".
            if !h.is_contrecord() || rem == 0 || rem != tot - out.len() {
                return Gathered::Invalid;
            }
            let data = page_start + h.size();
            let take = rem.min(bl - h.size());
            let Some(piece) = buf.get(data..data + take) else {
                return Gathered::Invalid;
            };
            out.extend_from_slice(piece);
            if out.len() == tot {
                return Gathered::Done {
                    next: data + maxalign(take),
                };
            }
            page_start += bl;
        }
    }

    /// The record at `lsn`, `tot` bytes long, runs into the next segment and
    /// `prefix` is what of it lies in this one. Whether it is no transaction
    /// end ([`SegmentScan::tail_seen`]); the prefix of one that may matter to
    /// a plan is kept as [`SegmentScan::tail`]. xlogreader.c:
    /// XLogDecodeNextRecord reads xl_tot_len, the only field sure to be on
    /// the record's first page, and the rest of the header may lie on the
    /// next page — here, in the next segment: then nothing is known yet.
    /// Without the rest of the record there is no CRC to check; the header
    /// is checked as for any record, the page headers by `gather`.
    fn tail(&mut self, lsn: u64, prev: Option<u64>, tot: usize, prefix: &[u8]) -> bool {
        let (keep, seen) = match RecordHeader::read(prefix) {
            None => (prefix.len() < RECORD_HEADER_SIZE, false),
            Some(h) if !h.is_valid(lsn, prev, self.fmt) => (false, false),
            Some(h) => {
                let xact = is_xact_end(h.rmid, h.info);
                (xact || is_restore_point(h.rmid, h.info), !xact)
            }
        };
        // A cut header keeps at most 16 bytes, whatever the record's length.
        if keep && (prefix.len() < RECORD_HEADER_SIZE || tot <= MAX_JOINED_LEN) {
            self.out.tail = Some(TailPrefix {
                lsn: Lsn::new(lsn),
                tot_len: tot as u32,
                prev: prev.map(Lsn::new),
                bytes: prefix.to_vec(),
            });
        }
        seen
    }

    /// This segment's share of a record begun in the previous one: the
    /// bytes after each XLP_FIRST_IS_CONTRECORD page header, `xlp_rem_len`
    /// checked on each page as XLogDecodeNextRecord does. `None` when the
    /// first page continues nothing, was overwritten after a crash
    /// (XLP_FIRST_IS_OVERWRITE_CONTRECORD), or the record goes on past
    /// this segment or more than [`MAX_CONTINUATION`] of it lies here.
    fn continuation(&mut self) -> Option<Continuation> {
        let bl = self.blcksz;
        let first = self.page(0)?;
        let rem = first.rem_len as usize;
        if !first.is_contrecord() || rem == 0 || rem > MAX_CONTINUATION {
            return None;
        }
        let mut bytes = Vec::with_capacity(rem);
        let mut idx = 0;
        loop {
            let h = self.page(idx)?;
            if h.is_overwrite_contrecord()
                || !h.is_contrecord()
                || h.rem_len as usize != rem - bytes.len()
            {
                return None;
            }
            let data = idx * bl + h.size();
            let take = (rem - bytes.len()).min(bl.checked_sub(h.size())?);
            bytes.extend_from_slice(self.buf.get(data..data + take)?);
            if bytes.len() == rem {
                return Some(Continuation {
                    end_lsn: Lsn::new(self.seg_start + (data + maxalign(take)) as u64),
                    bytes,
                });
            }
            idx += 1;
        }
    }

    fn accept(&mut self, lsn: u64, end: u64, h: RecordHeader, main: &[u8]) {
        let out = &mut self.out;
        out.records += 1;
        out.first_record.get_or_insert(Lsn::new(lsn));
        out.last_record = Some(Lsn::new(lsn));
        out.end_lsn = Some(Lsn::new(end));
        let info = RecordInfo {
            lsn: Lsn::new(lsn),
            end_lsn: Lsn::new(end),
            rmid: h.rmid,
            info: h.info,
            xid: h.xid,
        };
        match interpret(info, main, self.fmt) {
            Interesting::Xact(x) => out.xact_ends.push(x),
            Interesting::RestorePoint(rp) => out.restore_points.push(rp),
            Interesting::Checkpoint(c) => out.checkpoints.push(c),
            Interesting::Switch => out.switch_lsn = Some(Lsn::new(lsn)),
            Interesting::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::crossing::{join, Crossing, JoinError};
    use super::super::page::{
        XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
    };
    use super::super::record::tests::{main_only, record};
    use super::super::rmgr::XactKind;
    use super::*;

    const SEG: usize = 1 << 20;
    const BL: usize = 8192;
    const SEG_START: u64 = 6 * SEG as u64;
    const MAGIC15: u16 = 0xD110;

    fn seg_size() -> WalSegmentSize {
        WalSegmentSize::new(SEG as u64).unwrap()
    }

    /// Lays records out the way XLogInsert does: page headers on every page,
    /// records MAXALIGNed, records that do not fit continued on the next
    /// pages with XLP_FIRST_IS_CONTRECORD and xlp_rem_len.
    struct Writer {
        buf: Vec<u8>,
        pos: usize,
        prev: u64,
        tli: u32,
    }

    impl Writer {
        fn new() -> Writer {
            Writer::spanning(1)
        }

        /// A writer of `n` consecutive segments (`SEG_START` onwards).
        fn spanning(n: usize) -> Writer {
            Writer {
                buf: vec![0; n * SEG],
                pos: 0,
                prev: SEG_START - 0x100,
                tli: 1,
            }
        }

        fn lsn(&self) -> u64 {
            SEG_START + self.pos as u64
        }

        fn page_header(&mut self, info: u16, rem_len: u32) {
            let at = self.pos;
            assert_eq!(at % BL, 0);
            let long = at.is_multiple_of(SEG);
            let info = info | if long { XLP_LONG_HEADER } else { 0 };
            let b = &mut self.buf[at..];
            b[0..2].copy_from_slice(&MAGIC15.to_le_bytes());
            b[2..4].copy_from_slice(&info.to_le_bytes());
            b[4..8].copy_from_slice(&self.tli.to_le_bytes());
            b[8..16].copy_from_slice(&(SEG_START + at as u64).to_le_bytes());
            b[16..20].copy_from_slice(&rem_len.to_le_bytes());
            if long {
                b[24..32].copy_from_slice(&42u64.to_le_bytes());
                b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
                b[36..40].copy_from_slice(&(BL as u32).to_le_bytes());
            }
            self.pos += if long { 40 } else { 24 };
        }

        /// Raw bytes from the current position, spilling over pages with
        /// continuation headers; stops at the segment's end.
        fn spill(&mut self, mut bytes: &[u8], first_page_info: u16) {
            if self.pos.is_multiple_of(BL) && self.pos < self.buf.len() {
                self.page_header(first_page_info, 0);
            }
            loop {
                let room = BL - self.pos % BL;
                let n = room.min(bytes.len());
                self.buf[self.pos..self.pos + n].copy_from_slice(&bytes[..n]);
                self.pos += n;
                bytes = &bytes[n..];
                if bytes.is_empty() || self.pos >= self.buf.len() {
                    break;
                }
                self.page_header(XLP_FIRST_IS_CONTRECORD, bytes.len() as u32);
            }
            self.pos = maxalign(self.pos);
        }

        /// Appends a record (xl_prev filled in), returning its LSN.
        fn put(&mut self, rmid: u8, info: u8, xid: u32, body: &[u8]) -> u64 {
            if self.pos.is_multiple_of(BL) {
                self.page_header(0, 0);
            }
            let lsn = self.lsn();
            let rec = record(rmid, info, xid, self.prev, body);
            self.spill(&rec, 0);
            self.prev = lsn;
            lsn
        }

        /// Moves to `offset_in_page` bytes into the current page by writing
        /// a filler record (a heap-ish record with only main data).
        fn pad_to(&mut self, offset_in_page: usize) {
            let here = self.pos % BL;
            let header = if here == 0 { 24 } else { 0 };
            let need = offset_in_page - here - header;
            assert!(need >= 32 && need.is_multiple_of(8), "need {need}");
            // 24-byte header, then a 2-byte (short) or 5-byte (long) data header.
            let main_len = if need - 26 < 256 {
                need - 26
            } else {
                need - 29
            };
            self.put(10, 0, 1, &main_only(&vec![7; main_len]));
            assert_eq!(self.pos % BL, offset_in_page);
        }

        /// Writes a filler record that ends exactly at the page's end.
        fn fill_page(&mut self) {
            let here = self.pos % BL;
            let need = BL - here - if here == 0 { 24 } else { 0 };
            let main_len = if need - 26 < 256 {
                need - 26
            } else {
                need - 29
            };
            self.put(10, 0, 1, &main_only(&vec![7; main_len]));
            assert_eq!(self.pos % BL, 0);
        }

        /// Fills every untouched page with a valid header and zeros, as the
        /// server does when it initializes pages ahead of the insert point.
        fn finish(mut self) -> Vec<u8> {
            self.pos = self.pos.next_multiple_of(BL);
            while self.pos < self.buf.len() {
                self.page_header(0, 0);
                self.pos = self.pos.next_multiple_of(BL);
            }
            self.buf
        }
    }

    fn commit(xid: u32, micros: i64) -> (u8, u8, u32, Vec<u8>) {
        (1, 0x00, xid, main_only(&micros.to_le_bytes()))
    }

    fn scan(buf: &[u8]) -> SegmentScan {
        scan_segment(buf, seg_size()).unwrap()
    }

    #[test]
    fn records_across_pages_and_split_headers() {
        let mut w = Writer::new();
        let (r, i, x, b) = commit(700, 1);
        let first = w.put(r, i, x, &b);
        // A 3-page record (a logical message's worth of main data).
        let big = w.put(21, 0, 0, &main_only(&vec![0x5A; 20_000]));
        // A record whose 24-byte header is split: 16 bytes left on the page.
        w.pad_to(BL - 16);
        let (r, i, x, b) = commit(701, 2);
        let split = w.put(r, i, x, &b);
        // One that ends exactly at a page end, then one at the next page.
        w.fill_page();
        let (r, i, x, b) = commit(702, 3);
        let after_boundary = w.put(r, i, x, &b);
        let last = w.lsn();
        w.put(0, 0x40, 0, &[]); // XLOG_SWITCH
        let buf = w.finish();

        let s = scan(&buf);
        assert_eq!(s.first_record, Some(Lsn::new(first)));
        assert_eq!(s.records, 7);
        assert_eq!(s.switch_lsn, Some(Lsn::new(last)));
        assert_eq!(s.last_record, Some(Lsn::new(last)));
        assert_eq!(s.end_lsn, Some(Lsn::new(SEG_START + SEG as u64)));
        assert!(!s.tail_incomplete);
        let xacts: Vec<_> = s
            .xact_ends
            .iter()
            .map(|x| (x.lsn.as_u64(), x.xid))
            .collect();
        assert_eq!(xacts, [(first, 700), (split, 701), (after_boundary, 702)]);
        assert!(big > first && split > big);
        assert_eq!(
            after_boundary % BL as u64,
            24,
            "starts after the next page's header"
        );
        // The split record's end lies on the next page, past its header.
        let split_end = s.xact_ends[1].end_lsn.as_u64();
        assert_eq!(
            split_end,
            (split + 16) + 24 + (34 - 16u64).next_multiple_of(8)
        );
    }

    #[test]
    fn skips_a_continuation_over_several_pages() {
        let mut w = Writer::new();
        // 20 000 bytes of a record begun in the previous segment.
        let tail = vec![0xC3u8; 20_000];
        w.page_header(XLP_FIRST_IS_CONTRECORD, tail.len() as u32);
        let mut rest = &tail[..];
        loop {
            let room = BL - w.pos % BL;
            let n = room.min(rest.len());
            w.pos += n;
            rest = &rest[n..];
            if rest.is_empty() {
                break;
            }
            w.page_header(XLP_FIRST_IS_CONTRECORD, rest.len() as u32);
        }
        w.pos = maxalign(w.pos);
        let (r, i, x, b) = commit(9, 9);
        let first = w.put(r, i, x, &b);
        let buf = w.finish();
        let s = scan(&buf);
        assert_eq!(s.first_record, Some(Lsn::new(first)));
        assert_eq!(first - SEG_START, (40 + 20_000 + 2 * 24) as u64);
        assert_eq!(s.records, 1);
        assert_eq!(s.xact_ends.len(), 1);
        assert!(!s.tail_incomplete);
    }

    #[test]
    fn a_record_covering_the_whole_segment() {
        let mut w = Writer::new();
        w.page_header(XLP_FIRST_IS_CONTRECORD, 3 * SEG as u32);
        w.pos = BL;
        for page in 1..SEG / BL {
            w.page_header(XLP_FIRST_IS_CONTRECORD, (3 * SEG - page * BL) as u32);
            w.pos = (page + 1) * BL;
        }
        let s = scan(&w.buf);
        assert_eq!((s.records, s.first_record, s.end_lsn), (0, None, None));
        assert!(s.tail_incomplete);
    }

    #[test]
    fn last_record_runs_into_the_next_segment() {
        let mut w = Writer::new();
        let (r, i, x, b) = commit(1, 1);
        let first = w.put(r, i, x, &b);
        while w.pos < SEG - 3 * BL {
            w.put(10, 0, 1, &main_only(&[3; 200]));
        }
        let last_complete = w.prev;
        w.put(21, 0, 0, &main_only(&vec![4; 5 * BL]));
        let s = scan(&w.buf);
        assert_eq!(s.first_record, Some(Lsn::new(first)));
        assert_eq!(s.last_record, Some(Lsn::new(last_complete)));
        assert!(s.tail_incomplete);
        assert!(s.tail_seen, "a logical message hides no transaction end");
        assert_eq!(s.xact_ends.len(), 1);
    }

    /// Two segments; the first one's last record, begun `from_end` bytes
    /// before its end, is `body` and runs into the second. Returns the
    /// record's LSN and both scans.
    fn straddle(
        from_end: usize,
        rmid: u8,
        info: u8,
        xid: u32,
        body: &[u8],
    ) -> (u64, SegmentScan, SegmentScan) {
        let mut w = Writer::spanning(2);
        let (r, i, x, b) = commit(1, 1);
        w.put(r, i, x, &b);
        while w.pos < SEG - BL {
            w.fill_page();
        }
        w.pad_to(BL - from_end);
        let lsn = w.put(rmid, info, xid, body);
        assert!(24 + body.len() > from_end, "runs into the next segment");
        let (r, i, x, b) = commit(2, 2);
        w.put(r, i, x, &b);
        let buf = w.finish();
        (lsn, scan(&buf[..SEG]), scan(&buf[SEG..]))
    }

    fn joined(a: &SegmentScan, b: &SegmentScan) -> Result<Crossing, JoinError> {
        let (tail, cont) = (a.tail.as_ref().unwrap(), b.continuation.as_ref().unwrap());
        join(tail, cont, MAGIC15)
    }

    #[test]
    fn a_commit_running_into_the_next_segment_is_read_from_both() {
        let mut main = 5_000_000i64.to_le_bytes().to_vec();
        main.extend_from_slice(&[0; 200]);
        let body = main_only(&main);
        // 40, 32 (xact_time cut), 16 and 8 (the header cut) bytes here.
        for from_end in [40, 32, 16, 8] {
            let (lsn, a, b) = straddle(from_end, 1, 0x00, 812, &body);
            assert!(a.tail_incomplete && !a.tail_seen, "{from_end}");
            assert_eq!(a.xact_ends.len(), 1, "only the whole commit");
            let tail = a.tail.as_ref().unwrap();
            assert_eq!((tail.lsn.as_u64(), tail.bytes.len()), (lsn, from_end));
            let Ok(Crossing::Xact(x)) = joined(&a, &b) else {
                panic!("{from_end}: not joined as a transaction end");
            };
            assert_eq!(
                (x.lsn.as_u64(), x.kind, x.xid),
                (lsn, XactKind::Commit, 812)
            );
            assert_eq!(
                x.time,
                a.xact_ends[0].time + chrono::Duration::microseconds(4_999_999)
            );
            // The rest follows the next segment's long page header.
            let rest = (24 + body.len() - from_end) as u64;
            assert_eq!(
                x.end_lsn.as_u64(),
                SEG_START + SEG as u64 + 40 + rest.next_multiple_of(8)
            );
            assert_eq!(
                b.first_record,
                Some(x.end_lsn),
                "the next record starts at its end"
            );
            assert_eq!(
                b.xact_ends.len(),
                1,
                "the crossing commit is in neither scan"
            );
        }
        // Anything else is seen from its header alone, and joins as Other.
        let (_, a, b) = straddle(16, 10, 0x00, 812, &body);
        assert!(
            a.tail_incomplete && !a.tail_seen,
            "16 bytes hold no xl_rmid"
        );
        assert_eq!(joined(&a, &b), Ok(Crossing::Other));
        let (_, a, b) = straddle(24, 10, 0x00, 812, &body);
        assert!(a.tail_incomplete && a.tail_seen && a.tail.is_none());
        assert!(b.continuation.is_some());
    }

    #[test]
    fn a_join_checks_length_crc_and_xl_prev() {
        let (_, a, b) = straddle(32, 1, 0x00, 812, &main_only(&[1; 100]));
        let (tail, cont) = (a.tail.clone().unwrap(), b.continuation.clone().unwrap());
        let mut short = cont.clone();
        short.bytes.pop();
        assert!(matches!(
            join(&tail, &short, MAGIC15),
            Err(JoinError::Length { .. })
        ));
        let mut flipped = cont.clone();
        flipped.bytes[10] ^= 1;
        assert!(matches!(
            join(&tail, &flipped, MAGIC15),
            Err(JoinError::Crc { .. })
        ));
        let mut moved = tail.clone();
        moved.prev = Some(Lsn::new(tail.prev.unwrap().as_u64() - 8));
        assert!(matches!(
            join(&moved, &cont, MAGIC15),
            Err(JoinError::Header { .. })
        ));
        assert!(matches!(
            join(&tail, &cont, 0x1234),
            Err(JoinError::Header { .. })
        ));
        assert!(matches!(join(&tail, &cont, MAGIC15), Ok(Crossing::Xact(_))));
    }

    #[test]
    fn a_prepared_end_and_a_restore_point_join() {
        let mut main = 10i64.to_le_bytes().to_vec();
        main.extend_from_slice(&0x10u32.to_le_bytes()); // xinfo: TWOPHASE
        main.extend_from_slice(&555u32.to_le_bytes());
        main.extend_from_slice(&[0; 100]);
        let (lsn, a, b) = straddle(40, 1, 0xC0, 0, &main_only(&main));
        let Ok(Crossing::Xact(x)) = joined(&a, &b) else {
            panic!("not joined");
        };
        assert_eq!(
            (x.lsn.as_u64(), x.kind, x.xid),
            (lsn, XactKind::AbortPrepared, 555)
        );

        let mut rp = 77i64.to_le_bytes().to_vec();
        let mut name = [0u8; 64];
        name[..11].copy_from_slice(b"crossing-rp");
        rp.extend_from_slice(&name);
        let (lsn, a, b) = straddle(56, 0, 0x70, 0, &main_only(&rp));
        assert!(a.tail_incomplete && a.tail_seen, "no transaction end");
        let Ok(Crossing::RestorePoint(p)) = joined(&a, &b) else {
            panic!("not joined");
        };
        assert_eq!((p.lsn.as_u64(), p.name.as_str()), (lsn, "crossing-rp"));
    }

    #[test]
    fn an_overwritten_continuation_is_none() {
        let (_, a, b) = straddle(32, 1, 0x00, 812, &main_only(&[1; 100]));
        assert!(a.tail.is_some() && b.continuation.is_some());
        let mut w = Writer::spanning(2);
        w.pos = SEG;
        w.page_header(XLP_FIRST_IS_OVERWRITE_CONTRECORD, 0);
        let (r, i, x, body) = commit(3, 3);
        w.put(r, i, x, &body);
        let buf = w.finish();
        let b = scan(&buf[SEG..]);
        assert_eq!(b.continuation, None, "the torn record was abandoned");
    }

    #[test]
    fn overwrite_contrecord_abandons_the_torn_record() {
        let mut w = Writer::new();
        let (r, i, x, b) = commit(1, 1);
        w.put(r, i, x, &b);
        let before = w.prev;
        // A record started near the end of page 0 whose continuation was
        // never written: the server crashed, and after recovery page 1 got
        // XLP_FIRST_IS_OVERWRITE_CONTRECORD and an OVERWRITE_CONTRECORD record.
        w.pad_to(BL - 64);
        let padded = w.prev;
        let torn = record(10, 0, 5, padded, &main_only(&[9; 500]));
        w.buf[w.pos..BL].copy_from_slice(&torn[..64]);
        w.pos = BL;
        w.page_header(XLP_FIRST_IS_OVERWRITE_CONTRECORD, 0);
        w.prev = padded;
        let overwrite = w.put(0, 0xD0, 0, &main_only(&[0; 16]));
        let (r, i, x, b) = commit(2, 2);
        w.put(r, i, x, &b);
        let buf = w.finish();
        let s = scan(&buf);
        assert!(before < padded);
        assert_eq!(
            s.records, 4,
            "commit, filler, overwrite, commit; not the torn one"
        );
        assert_eq!(s.xact_ends.len(), 2);
        assert_eq!(overwrite - SEG_START, (BL + 24) as u64);
        assert!(!s.tail_incomplete);
    }

    #[test]
    fn end_of_wal_conditions_stop_cleanly() {
        // Three commits and a filler on page 0, then `tamper` at the start of
        // page 1, then a commit.
        let build = |tamper: &dyn Fn(&mut Writer)| {
            let mut w = Writer::new();
            for n in 0..3 {
                let (r, i, x, b) = commit(n, i64::from(n));
                w.put(r, i, x, &b);
            }
            w.fill_page();
            tamper(&mut w);
            let (r, i, x, b) = commit(99, 99);
            w.put(r, i, x, &b);
            scan(&w.finish())
        };
        let clean = build(&|_| {});
        assert_eq!(clean.records, 5);
        assert_eq!(clean.xact_ends.len(), 4);

        // xl_prev that does not point at the previous record.
        let s = build(&|w| w.prev += 8);
        assert_eq!(s.records, 4);
        // A later page with the wrong address (recycled segment).
        let s = build(&|w| {
            w.page_header(0, 0);
            let at = BL + 8;
            let stale = SEG_START - 2 * SEG as u64 + BL as u64;
            w.buf[at..at + 8].copy_from_slice(&stale.to_le_bytes());
        });
        assert_eq!(s.records, 4);
        // A later page with another magic.
        let s = build(&|w| {
            w.page_header(0, 0);
            w.buf[BL] = 0x06;
        });
        assert_eq!(s.records, 4);
        // A timeline going backwards.
        let s = build(&|w| {
            w.buf[4] = 2; // first page on timeline 2
            w.page_header(0, 0);
        });
        assert_eq!(s.header.timeline.get(), 2);
        assert_eq!(s.records, 4);
        // A timeline going forwards mid-segment is fine.
        let s = build(&|w| {
            w.tli = 2;
            w.page_header(0, 0);
        });
        assert_eq!(s.records, 5);
        // A page claiming a continuation where a record should start.
        let s = build(&|w| {
            w.page_header(XLP_FIRST_IS_CONTRECORD, 8);
        });
        assert_eq!(s.records, 4);
        // Unknown page flags.
        let s = build(&|w| {
            w.page_header(0x0100, 0);
        });
        assert_eq!(s.records, 4);
        // An unknown resource manager id (with a correct CRC).
        let s = build(&|w| {
            w.put(22, 0, 0, &[]);
        });
        assert_eq!(s.records, 4);
        // A record header with a zero length.
        let s = build(&|w| {
            w.page_header(0, 0);
            w.pos += 8;
        });
        assert_eq!(s.records, 4);
    }

    #[test]
    fn first_page_problems_are_errors() {
        let w = Writer::new();
        let mut buf = w.finish();
        assert_eq!(scan(&buf).records, 0);
        buf[32..36].copy_from_slice(&(2 * SEG as u32).to_le_bytes());
        let err = scan_segment(&buf, seg_size()).unwrap_err();
        assert!(err.to_string().contains("xlp_seg_size is 2097152"), "{err}");
        buf[0] = 0;
        assert!(matches!(
            scan_segment(&buf, seg_size()),
            Err(WalScanError::UnknownMagic { magic: 0xD100 })
        ));
    }

    #[test]
    fn prepared_and_abort_kinds() {
        let mut w = Writer::new();
        let mut ap = 10i64.to_le_bytes().to_vec();
        ap.extend_from_slice(&0x10u32.to_le_bytes()); // xinfo: TWOPHASE
        ap.extend_from_slice(&555u32.to_le_bytes());
        w.put(1, 0xC0, 0, &main_only(&ap));
        w.put(1, 0x20, 77, &main_only(&11i64.to_le_bytes()));
        let s = scan(&w.finish());
        let got: Vec<_> = s.xact_ends.iter().map(|x| (x.kind, x.xid)).collect();
        assert_eq!(got, [(XactKind::AbortPrepared, 555), (XactKind::Abort, 77)]);
    }
}
