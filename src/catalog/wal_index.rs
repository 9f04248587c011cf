//! The WAL index as `Catalog` holds it in memory: what planning and
//! `info` read of every archived segment, in fixed-size form, sorted by
//! timeline and segment number, with each timeline's segments kept as
//! runs of consecutive numbers (so "is segment s archived", "the next
//! missing one" and "the last one" are binary searches over runs, not
//! walks over records).
//!
//! Built from `WalSegmentRecord`s at load time; the on-disk format
//! (`WalSegmentRecord` in chunks and pending entries) is unchanged. What a
//! record holds that planning does not read (its hashes, data tag,
//! `pushed_at`, scan error) stays out: restore reads those from the
//! record objects of the segments it fetches (`wal-fetch`). Everything of
//! a record's `WalSummary` is kept, exactly: a `WalEntry` materializes a
//! segment with its summary, equal to the record's. Values that are rare
//! (restore points, a name that is not the segment's canonical one) live
//! in small side tables by position.
//!
//! Invariants: `segs` is sorted by (timeline, segment number) with no
//! duplicates; `timelines` is sorted by timeline, each owning the
//! contiguous positions `at..at + len` of `segs`; its runs are ascending,
//! non-adjacent (two runs always have a missing segment between them) and
//! cover exactly its positions in order.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::hash::HashKind;
use super::model::{WalSegmentRecord, WalSummary};
use crate::pg::wal::{RestorePoint, XactEnd, XactKind};
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalFileName, WalSegmentSize};

// `Seg::flags` bits: which optional values are present, and booleans.
const SUMMARY: u16 = 1;
const FIRST_RECORD: u16 = 1 << 1;
const END_LSN: u16 = 1 << 2;
const MIN_TIME: u16 = 1 << 3;
const MAX_XACT: u16 = 1 << 4;
const SWITCH: u16 = 1 << 5;
const TAIL_INCOMPLETE: u16 = 1 << 6;
const MIN_XID: u16 = 1 << 7;
const MAX_XID: u16 = 1 << 8;
const SHA256: u16 = 1 << 9;
const RESTORE_POINTS: u16 = 1 << 10;
const ODD_NAME: u16 = 1 << 11;
const NEXT_XID: u16 = 1 << 12;
const TAIL_SEEN: u16 = 1 << 13;
const HEAD_READ: u16 = 1 << 14;

/// One segment, fixed size (a value absent from the record is zero here,
/// with its `flags` bit clear).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seg {
    segno: u64,
    raw_bytes: u64,
    stored_bytes: u64,
    first_record: u64,
    end_lsn: u64,
    switch_lsn: u64,
    records: u64,
    xact_count: u64,
    /// The newest transaction end (`WalSummary::max_xact`).
    max_lsn: u64,
    max_end_lsn: u64,
    max_time: DateTime<Utc>,
    min_time: DateTime<Utc>,
    max_xact_xid: u32,
    min_xid: u32,
    max_xid: u32,
    flags: u16,
    max_kind: u8,
    tli: TimelineId,
    /// Order of arrival at the builder (of two records of one segment,
    /// the later wins).
    seq: u32,
}

fn kind_code(k: XactKind) -> u8 {
    match k {
        XactKind::Commit => 0,
        XactKind::Abort => 1,
        XactKind::CommitPrepared => 2,
        XactKind::AbortPrepared => 3,
    }
}

fn kind_of(code: u8) -> XactKind {
    match code {
        0 => XactKind::Commit,
        1 => XactKind::Abort,
        2 => XactKind::CommitPrepared,
        _ => XactKind::AbortPrepared,
    }
}

/// Consecutive archived segments `first..first + len` of one timeline, at
/// positions `at..at + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    len: u64,
    at: usize,
}

impl Run {
    fn last(&self) -> u64 {
        self.first + self.len - 1
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Line {
    tli: TimelineId,
    runs: Vec<Run>,
    raw_bytes: u64,
    stored_bytes: u64,
}

/// One archived segment as planning reads it: its name, sizes, which hash
/// its record carries, and its WAL summary exactly as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct WalEntry {
    pub name: String,
    pub timeline: TimelineId,
    pub segno: SegNo,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub hash: HashKind,
    pub summary: Option<WalSummary>,
}

/// A cheap handle on one segment of the index (no allocation): the fast
/// path for loops over many segments.
#[derive(Clone, Copy, Debug)]
pub struct SegRef<'a> {
    index: &'a WalIndex,
    pos: usize,
    pub timeline: TimelineId,
    pub segno: SegNo,
}

impl<'a> SegRef<'a> {
    fn seg(&self) -> &'a Seg {
        &self.index.segs[self.pos]
    }

    pub fn raw_bytes(&self) -> u64 {
        self.seg().raw_bytes
    }

    pub fn stored_bytes(&self) -> u64 {
        self.seg().stored_bytes
    }

    pub fn hash(&self) -> HashKind {
        if self.seg().flags & SHA256 != 0 {
            HashKind::Sha256
        } else {
            HashKind::Blake3
        }
    }

    pub fn has_summary(&self) -> bool {
        self.seg().flags & SUMMARY != 0
    }

    /// Whether a transaction end may lie, unseen, across this segment's
    /// end, as far as this segment tells: its last record runs into the
    /// next segment (`WalSummary::tail_incomplete`) and its header here
    /// does not show it is no transaction end (`WalSummary::tail_seen`). A
    /// segment without a summary may hide anything. The next segment may
    /// still have read that record whole ([`SegRef::head_read`]); the
    /// plan's timeline knows which segment is next.
    pub fn may_hide_xact_end(&self) -> bool {
        let f = self.seg().flags;
        f & SUMMARY == 0 || (f & TAIL_INCOMPLETE != 0 && f & TAIL_SEEN == 0)
    }

    /// `summary.head_read`: the record running in from the previous
    /// segment was read whole, and is among this segment's if it is a
    /// transaction end.
    pub fn head_read(&self) -> bool {
        let f = self.seg().flags;
        f & (SUMMARY | HEAD_READ) == SUMMARY | HEAD_READ
    }

    /// `summary.max_xact_time()`.
    pub fn max_xact_time(&self) -> Option<DateTime<Utc>> {
        let s = self.seg();
        (s.flags & (SUMMARY | MAX_XACT) == SUMMARY | MAX_XACT).then_some(s.max_time)
    }

    /// `summary.end_lsn`.
    pub fn end_lsn(&self) -> Option<Lsn> {
        let s = self.seg();
        (s.flags & (SUMMARY | END_LSN) == SUMMARY | END_LSN).then_some(Lsn::new(s.end_lsn))
    }

    /// `summary.may_hold_xid(xid)`.
    pub fn may_hold_xid(&self, xid: u32) -> bool {
        let s = self.seg();
        s.flags & (SUMMARY | MIN_XID | MAX_XID) == SUMMARY | MIN_XID | MAX_XID
            && s.min_xid <= xid
            && xid <= s.max_xid
    }

    /// `summary.max_xact`'s position.
    pub fn max_xact_lsn(&self) -> Option<Lsn> {
        let s = self.seg();
        (s.flags & (SUMMARY | MAX_XACT) == SUMMARY | MAX_XACT).then_some(Lsn::new(s.max_lsn))
    }

    /// `summary.first_record`.
    pub fn first_record(&self) -> Option<Lsn> {
        let s = self.seg();
        (s.flags & (SUMMARY | FIRST_RECORD) == SUMMARY | FIRST_RECORD)
            .then_some(Lsn::new(s.first_record))
    }

    /// The record's name (the canonical one unless it said otherwise).
    pub fn name(&self) -> String {
        if self.seg().flags & ODD_NAME != 0 {
            if let Some(n) = self.index.odd_names.get(&self.pos) {
                return n.clone();
            }
        }
        SegmentName::new(self.timeline, self.segno, self.index.size).to_string()
    }

    /// The whole entry (allocates its name).
    pub fn entry(&self) -> WalEntry {
        let mut e = WalEntry {
            name: String::new(),
            timeline: self.timeline,
            segno: self.segno,
            raw_bytes: 0,
            stored_bytes: 0,
            hash: HashKind::Blake3,
            summary: None,
        };
        self.fill(&mut e);
        e
    }

    /// Overwrites `e` with this segment, reusing its buffers.
    pub fn fill(&self, e: &mut WalEntry) {
        use std::fmt::Write;
        let s = self.seg();
        e.name.clear();
        match self.index.odd_names.get(&self.pos) {
            Some(n) if s.flags & ODD_NAME != 0 => e.name.push_str(n),
            _ => {
                let _ = write!(
                    e.name,
                    "{}",
                    SegmentName::new(self.timeline, self.segno, self.index.size)
                );
            }
        }
        e.timeline = self.timeline;
        e.segno = self.segno;
        e.raw_bytes = s.raw_bytes;
        e.stored_bytes = s.stored_bytes;
        e.hash = self.hash();
        if s.flags & SUMMARY == 0 {
            e.summary = None;
            return;
        }
        let has = |bit: u16| s.flags & bit != 0;
        let lsn = |bit: u16, v: u64| has(bit).then_some(Lsn::new(v));
        let mut points = e
            .summary
            .take()
            .map(|x| x.restore_points)
            .unwrap_or_default();
        points.clear();
        if has(RESTORE_POINTS) {
            if let Some(p) = self.index.restore_points.get(&self.pos) {
                points.extend(p.iter().cloned());
            }
        }
        e.summary = Some(WalSummary {
            first_record: lsn(FIRST_RECORD, s.first_record),
            end_lsn: lsn(END_LSN, s.end_lsn),
            records: s.records,
            xact_count: s.xact_count,
            min_xact_time: has(MIN_TIME).then_some(s.min_time),
            max_xact: has(MAX_XACT).then(|| XactEnd {
                lsn: Lsn::new(s.max_lsn),
                end_lsn: Lsn::new(s.max_end_lsn),
                kind: kind_of(s.max_kind),
                xid: s.max_xact_xid,
                time: s.max_time,
            }),
            restore_points: points,
            switch_lsn: lsn(SWITCH, s.switch_lsn),
            tail_incomplete: has(TAIL_INCOMPLETE),
            tail_seen: has(TAIL_SEEN),
            head_read: has(HEAD_READ),
            min_xid: has(MIN_XID).then_some(s.min_xid),
            max_xid: has(MAX_XID).then_some(s.max_xid),
            next_xid: if has(NEXT_XID) {
                self.index.next_xids.get(&self.pos).copied()
            } else {
                None
            },
        });
    }
}

/// Every archived segment the catalog lists (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct WalIndex {
    size: WalSegmentSize,
    segs: Vec<Seg>,
    lines: Vec<Line>,
    restore_points: BTreeMap<usize, Vec<RestorePoint>>,
    /// `WalSummary::next_xid`: only segments holding a checkpoint have one.
    next_xids: BTreeMap<usize, u64>,
    odd_names: BTreeMap<usize, String>,
}

/// Collects records in any order; a later record of the same segment
/// replaces an earlier one (as a pending entry replaces a chunk's). Sorts
/// in place, so building holds one array of segments, not two.
pub struct WalIndexBuilder {
    size: WalSegmentSize,
    segs: Vec<Seg>,
    restore_points: BTreeMap<u32, Vec<RestorePoint>>,
    next_xids: BTreeMap<u32, u64>,
    names: BTreeMap<u32, String>,
}

impl WalIndexBuilder {
    pub fn new(size: WalSegmentSize) -> WalIndexBuilder {
        WalIndexBuilder {
            size,
            segs: Vec::new(),
            restore_points: BTreeMap::new(),
            next_xids: BTreeMap::new(),
            names: BTreeMap::new(),
        }
    }

    /// Room for `n` more records.
    pub fn reserve(&mut self, n: usize) {
        self.segs.reserve(n);
    }

    pub fn push(&mut self, rec: WalSegmentRecord) {
        // More than 2^32 records cannot be told apart by arrival; they
        // would not fit in memory either.
        let seq = u32::try_from(self.segs.len()).unwrap_or(u32::MAX);
        let canonical = match WalFileName::parse(&rec.name) {
            Ok(WalFileName::Segment(n)) => {
                n.timeline() == rec.timeline && n.segno(self.size).ok() == Some(rec.segno)
            }
            _ => false,
        };
        let mut seg = Seg {
            segno: rec.segno.get(),
            raw_bytes: rec.raw_bytes,
            stored_bytes: rec.stored_bytes,
            first_record: 0,
            end_lsn: 0,
            switch_lsn: 0,
            records: 0,
            xact_count: 0,
            max_lsn: 0,
            max_end_lsn: 0,
            max_time: DateTime::<Utc>::UNIX_EPOCH,
            min_time: DateTime::<Utc>::UNIX_EPOCH,
            max_xact_xid: 0,
            min_xid: 0,
            max_xid: 0,
            flags: 0,
            max_kind: 0,
            tli: rec.timeline,
            seq,
        };
        if matches!(rec.content_hash(), super::ContentHash::Sha256(_)) {
            seg.flags |= SHA256;
        }
        if !canonical {
            seg.flags |= ODD_NAME;
            self.names.insert(seq, rec.name);
        }
        if let Some(sum) = rec.summary {
            seg.flags |= SUMMARY;
            if let Some(v) = sum.first_record {
                seg.flags |= FIRST_RECORD;
                seg.first_record = v.as_u64();
            }
            if let Some(v) = sum.end_lsn {
                seg.flags |= END_LSN;
                seg.end_lsn = v.as_u64();
            }
            if let Some(v) = sum.switch_lsn {
                seg.flags |= SWITCH;
                seg.switch_lsn = v.as_u64();
            }
            seg.records = sum.records;
            seg.xact_count = sum.xact_count;
            if let Some(t) = sum.min_xact_time {
                seg.flags |= MIN_TIME;
                seg.min_time = t;
            }
            if let Some(x) = sum.max_xact {
                seg.flags |= MAX_XACT;
                seg.max_lsn = x.lsn.as_u64();
                seg.max_end_lsn = x.end_lsn.as_u64();
                seg.max_time = x.time;
                seg.max_xact_xid = x.xid;
                seg.max_kind = kind_code(x.kind);
            }
            if sum.tail_incomplete {
                seg.flags |= TAIL_INCOMPLETE;
            }
            if sum.tail_seen {
                seg.flags |= TAIL_SEEN;
            }
            if sum.head_read {
                seg.flags |= HEAD_READ;
            }
            if let Some(x) = sum.min_xid {
                seg.flags |= MIN_XID;
                seg.min_xid = x;
            }
            if let Some(x) = sum.max_xid {
                seg.flags |= MAX_XID;
                seg.max_xid = x;
            }
            if !sum.restore_points.is_empty() {
                seg.flags |= RESTORE_POINTS;
                self.restore_points.insert(seq, sum.restore_points);
            }
            if let Some(x) = sum.next_xid {
                seg.flags |= NEXT_XID;
                self.next_xids.insert(seq, x);
            }
        }
        self.segs.push(seg);
    }

    pub fn build(self) -> WalIndex {
        let WalIndexBuilder {
            size,
            mut segs,
            mut restore_points,
            mut next_xids,
            mut names,
        } = self;
        let key = |s: &Seg| (s.tli, s.segno, s.seq);
        if !segs.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
            segs.sort_unstable_by_key(key);
        }
        // Of records of one segment, the last to arrive (highest seq,
        // sorted last) wins.
        segs.dedup_by(|later, earlier| {
            let same = (later.tli, later.segno) == (earlier.tli, earlier.segno);
            if same {
                *earlier = *later;
            }
            same
        });
        segs.shrink_to_fit();
        let mut by_pos_points = BTreeMap::new();
        let mut by_pos_next_xids = BTreeMap::new();
        let mut odd_names = BTreeMap::new();
        let mut lines: Vec<Line> = Vec::new();
        for (pos, seg) in segs.iter().enumerate() {
            if seg.flags & RESTORE_POINTS != 0 {
                if let Some(p) = restore_points.remove(&seg.seq) {
                    by_pos_points.insert(pos, p);
                }
            }
            if seg.flags & NEXT_XID != 0 {
                if let Some(x) = next_xids.remove(&seg.seq) {
                    by_pos_next_xids.insert(pos, x);
                }
            }
            if seg.flags & ODD_NAME != 0 {
                if let Some(n) = names.remove(&seg.seq) {
                    odd_names.insert(pos, n);
                }
            }
            let s = seg.segno;
            match lines.last_mut() {
                Some(l) if l.tli == seg.tli => {
                    l.raw_bytes = l.raw_bytes.saturating_add(seg.raw_bytes);
                    l.stored_bytes = l.stored_bytes.saturating_add(seg.stored_bytes);
                    match l.runs.last_mut() {
                        Some(r) if r.last().checked_add(1) == Some(s) => r.len += 1,
                        _ => l.runs.push(Run {
                            first: s,
                            len: 1,
                            at: pos,
                        }),
                    }
                }
                _ => lines.push(Line {
                    tli: seg.tli,
                    runs: vec![Run {
                        first: s,
                        len: 1,
                        at: pos,
                    }],
                    raw_bytes: seg.raw_bytes,
                    stored_bytes: seg.stored_bytes,
                }),
            }
        }
        WalIndex {
            size,
            segs,
            lines,
            restore_points: by_pos_points,
            next_xids: by_pos_next_xids,
            odd_names,
        }
    }
}

/// The archived WAL of one timeline, summed up (`WalIndex::timeline_totals`).
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineTotals {
    pub timeline: TimelineId,
    pub first: SegNo,
    pub last: SegNo,
    pub segments: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

impl WalIndex {
    pub fn new(size: WalSegmentSize) -> WalIndex {
        WalIndexBuilder::new(size).build()
    }

    /// The index of `records` (later ones replace earlier ones of the
    /// same segment).
    pub fn from_records(
        size: WalSegmentSize,
        records: impl IntoIterator<Item = WalSegmentRecord>,
    ) -> WalIndex {
        let mut b = WalIndexBuilder::new(size);
        for r in records {
            b.push(r);
        }
        b.build()
    }

    pub fn segment_size(&self) -> WalSegmentSize {
        self.size
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes of memory the index holds (its arrays and side tables,
    /// roughly), for the benchmark.
    pub fn heap_bytes(&self) -> usize {
        self.segs.capacity() * std::mem::size_of::<Seg>()
            + self
                .lines
                .iter()
                .map(|l| {
                    std::mem::size_of::<Line>() + l.runs.capacity() * std::mem::size_of::<Run>()
                })
                .sum::<usize>()
            + self.restore_points.len() * 64
            + self.next_xids.len() * 48
            + self.odd_names.len() * 64
    }

    fn line(&self, tli: TimelineId) -> Option<&Line> {
        self.lines
            .binary_search_by_key(&tli, |l| l.tli)
            .ok()
            .map(|i| &self.lines[i])
    }

    /// Segment `segno` of timeline `tli`, if archived.
    pub fn at(&self, tli: TimelineId, segno: SegNo) -> Option<SegRef<'_>> {
        let line = self.line(tli)?;
        let s = segno.get();
        let i = line.runs.partition_point(|r| r.first <= s);
        let run = line.runs.get(i.checked_sub(1)?)?;
        (s <= run.last()).then(|| SegRef {
            index: self,
            pos: run.at + (s - run.first) as usize,
            timeline: tli,
            segno,
        })
    }

    pub fn contains(&self, tli: TimelineId, segno: SegNo) -> bool {
        self.at(tli, segno).is_some()
    }

    /// Segment `segno` of timeline `tli` as an entry.
    pub fn get(&self, key: &(TimelineId, SegNo)) -> Option<WalEntry> {
        self.at(key.0, key.1).map(|r| r.entry())
    }

    /// The archived segments of `tli` in `from..=to`, ascending.
    pub fn range(
        &self,
        tli: TimelineId,
        from: SegNo,
        to: SegNo,
    ) -> impl Iterator<Item = SegRef<'_>> + '_ {
        let (lo, hi) = (from.get(), to.get());
        let runs: &[Run] = match self.line(tli) {
            Some(l) if lo <= hi => {
                let i = l.runs.partition_point(|r| r.last() < lo);
                let j = l.runs.partition_point(|r| r.first <= hi);
                l.runs.get(i..j).unwrap_or(&[])
            }
            _ => &[],
        };
        runs.iter().flat_map(move |r| {
            let a = r.first.max(lo);
            let b = r.last().min(hi);
            (a..=b).map(move |s| SegRef {
                index: self,
                pos: r.at + (s - r.first) as usize,
                timeline: tli,
                segno: SegNo::new(s),
            })
        })
    }

    /// Every timeline with archived WAL, ascending.
    pub fn timelines(&self) -> impl Iterator<Item = TimelineId> + '_ {
        self.lines.iter().map(|l| l.tli)
    }

    /// Every (timeline, segment) archived, ascending.
    pub fn keys(&self) -> impl Iterator<Item = (TimelineId, SegNo)> + '_ {
        self.lines.iter().flat_map(|l| {
            l.runs
                .iter()
                .flat_map(move |r| (r.first..=r.last()).map(move |s| (l.tli, SegNo::new(s))))
        })
    }

    /// Every archived segment, ascending.
    pub fn iter(&self) -> impl Iterator<Item = SegRef<'_>> + '_ {
        self.lines.iter().flat_map(move |l| {
            l.runs.iter().flat_map(move |r| {
                (0..r.len).map(move |k| SegRef {
                    index: self,
                    pos: r.at + k as usize,
                    timeline: l.tli,
                    segno: SegNo::new(r.first + k),
                })
            })
        })
    }

    /// The archived segments of `tli` as ranges of consecutive numbers.
    pub fn runs(&self, tli: TimelineId) -> impl Iterator<Item = (SegNo, SegNo)> + '_ {
        self.line(tli).into_iter().flat_map(|l| {
            l.runs
                .iter()
                .map(|r| (SegNo::new(r.first), SegNo::new(r.last())))
        })
    }

    /// The segments holding restore points, ascending, with their points.
    pub fn restore_points(&self) -> impl Iterator<Item = (SegRef<'_>, &[RestorePoint])> + '_ {
        self.restore_points
            .iter()
            .filter_map(move |(pos, p)| Some((self.at_pos(*pos)?, p.as_slice())))
    }

    fn at_pos(&self, pos: usize) -> Option<SegRef<'_>> {
        let line = self
            .lines
            .iter()
            .find(|l| l.runs.last().is_some_and(|r| pos < r.at + r.len as usize))?;
        let i = line.runs.partition_point(|r| r.at <= pos);
        let run = line.runs.get(i.checked_sub(1)?)?;
        Some(SegRef {
            index: self,
            pos,
            timeline: line.tli,
            segno: SegNo::new(run.first + (pos - run.at) as u64),
        })
    }

    /// The highest archived segment number on any timeline.
    pub fn last_segno(&self) -> Option<SegNo> {
        self.lines
            .iter()
            .filter_map(|l| l.runs.last().map(|r| r.last()))
            .max()
            .map(SegNo::new)
    }

    /// The highest archived segment of `tli` in `from..to` (`to`
    /// excluded; `None`: unbounded).
    pub fn last_in(&self, tli: TimelineId, from: SegNo, to: Option<SegNo>) -> Option<SegNo> {
        let line = self.line(tli)?;
        let end = to.map_or(u64::MAX, |t| t.get());
        let i = line.runs.partition_point(|r| r.first < end);
        let run = line.runs.get(i.checked_sub(1)?)?;
        let last = run.last().min(end.checked_sub(1)?);
        (last >= from.get()).then_some(SegNo::new(last))
    }

    /// The first segment of `tli` in `from..=to` that is not archived.
    pub fn first_missing(&self, tli: TimelineId, from: SegNo, to: SegNo) -> Option<SegNo> {
        let (from, to) = (from.get(), to.get());
        if from > to {
            return None;
        }
        let Some(line) = self.line(tli) else {
            return Some(SegNo::new(from));
        };
        let i = line.runs.partition_point(|r| r.first <= from);
        match i.checked_sub(1).and_then(|i| line.runs.get(i)) {
            Some(r) if from <= r.last() => {
                let next = r.last().checked_add(1)?;
                (next <= to).then_some(SegNo::new(next))
            }
            _ => Some(SegNo::new(from)),
        }
    }

    /// Sums per timeline, ascending.
    pub fn timeline_totals(&self) -> Vec<TimelineTotals> {
        self.lines
            .iter()
            .filter_map(|l| {
                let (first, last) = (l.runs.first()?, l.runs.last()?);
                Some(TimelineTotals {
                    timeline: l.tli,
                    first: SegNo::new(first.first),
                    last: SegNo::new(last.last()),
                    segments: l.runs.iter().map(|r| r.len).sum(),
                    raw_bytes: l.raw_bytes,
                    stored_bytes: l.stored_bytes,
                })
            })
            .collect()
    }

    /// The segments of `tli` in `lo..=hi` (archived) whose record's name
    /// is not the canonical one, ascending.
    pub fn odd_named(
        &self,
        tli: TimelineId,
        lo: SegNo,
        hi: SegNo,
    ) -> impl Iterator<Item = SegRef<'_>> + '_ {
        let range = match (self.at(tli, lo), self.at(tli, hi)) {
            (Some(a), Some(b)) if !self.odd_names.is_empty() => Some(a.pos..=b.pos),
            _ => None,
        };
        range
            .into_iter()
            .flat_map(move |r| self.odd_names.range(r).map(|(p, _)| *p))
            .filter_map(move |p| self.at_pos(p))
    }

    /// The segment number a name says (for a record whose name is not
    /// its canonical one, what parsing it says, as `info` always did).
    pub fn named_segno(&self, r: &SegRef<'_>) -> Option<SegNo> {
        match self.odd_names.get(&r.pos) {
            Some(n) => match WalFileName::parse(n) {
                Ok(WalFileName::Segment(s)) => s.segno(self.size).ok(),
                _ => None,
            },
            None => Some(r.segno),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const SEG: u64 = 16 << 20;

    fn size() -> WalSegmentSize {
        WalSegmentSize::new(SEG).unwrap()
    }

    fn tli(n: u32) -> TimelineId {
        TimelineId::new(n).unwrap()
    }

    fn record(t: u32, s: u64) -> WalSegmentRecord {
        let time = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(s as i64 * 1_000_000_123);
        WalSegmentRecord {
            name: SegmentName::new(tli(t), SegNo::new(s), size()).to_string(),
            timeline: tli(t),
            segno: SegNo::new(s),
            raw_bytes: SEG,
            stored_bytes: s,
            sha256: String::new(),
            blake3: "b3".into(),
            pushed_at: time,
            summary: Some(WalSummary {
                first_record: Some(Lsn::new(s * SEG + 0x28)),
                end_lsn: None,
                records: u64::MAX - s,
                xact_count: 3,
                min_xact_time: Some(time),
                max_xact: Some(XactEnd {
                    lsn: Lsn::new(s * SEG + 0x1000),
                    end_lsn: Lsn::new(s * SEG + 0x1040),
                    kind: XactKind::CommitPrepared,
                    xid: 7,
                    time,
                }),
                restore_points: Vec::new(),
                switch_lsn: Some(Lsn::new(s * SEG + 0x2000)),
                tail_incomplete: true,
                // Both ways, so the flag's round trip is checked.
                tail_seen: s.is_multiple_of(3),
                head_read: s.is_multiple_of(4),
                min_xid: Some(5),
                max_xid: None,
                // Only segments with a checkpoint have one: some do here.
                next_xid: s.is_multiple_of(2).then_some((1 << 32) | s),
            }),
            scan_error: Some("kept out".into()),
            data_tag: Some("kept out".into()),
            tail: None,
        }
    }

    /// What a `WalEntry` must equal: the record, less what it leaves out.
    fn expected(r: &WalSegmentRecord) -> WalEntry {
        WalEntry {
            name: r.name.clone(),
            timeline: r.timeline,
            segno: r.segno,
            raw_bytes: r.raw_bytes,
            stored_bytes: r.stored_bytes,
            hash: r.content_hash().kind(),
            summary: r.summary.clone(),
        }
    }

    #[test]
    fn entries_are_the_records_summaries_exactly() {
        let mut odd = record(1, 4);
        odd.name = "not-a-segment".into();
        odd.sha256 = "ab".into();
        odd.blake3 = String::new();
        let mut points = record(2, 9);
        if let Some(s) = points.summary.as_mut() {
            s.restore_points.push(RestorePoint {
                lsn: Lsn::new(9 * SEG + 0x3000),
                end_lsn: Lsn::new(9 * SEG + 0x3040),
                name: "rp".into(),
                time: s.min_xact_time.unwrap_or_default(),
            });
        }
        let mut bare = record(1, 6);
        bare.summary = None;
        let all = [record(1, 3), odd, bare, points, record(2, 10)];
        // In any order.
        let index = WalIndex::from_records(size(), all.iter().rev().cloned());
        assert_eq!(index.len(), all.len());
        for r in &all {
            assert_eq!(
                index.get(&(r.timeline, r.segno)),
                Some(expected(r)),
                "{}",
                r.name
            );
        }
        assert_eq!(index.get(&(tli(1), SegNo::new(5))), None);
        let rp: Vec<_> = index
            .restore_points()
            .map(|(r, p)| (r.timeline, r.segno, p[0].name.clone()))
            .collect();
        assert_eq!(rp, [(tli(2), SegNo::new(9), "rp".to_string())]);
        // The odd name is kept, and what it says is what `info` counts from.
        let odd_ref = index.at(tli(1), SegNo::new(4)).unwrap();
        assert_eq!(odd_ref.name(), "not-a-segment");
        assert_eq!(index.named_segno(&odd_ref), None);
        assert_eq!(
            index
                .odd_named(tli(1), SegNo::new(3), SegNo::new(4))
                .map(|r| r.segno)
                .collect::<Vec<_>>(),
            [SegNo::new(4)]
        );
        // A boundary may hide a transaction end unless its tail was seen.
        let hides = |t: u32, s: u64| index.at(tli(t), SegNo::new(s)).unwrap().may_hide_xact_end();
        assert!(!hides(1, 3), "tail_incomplete, tail_seen");
        assert!(hides(1, 4) && hides(2, 10), "tail_incomplete only");
        assert!(hides(1, 6), "no summary");
    }

    #[test]
    fn tail_seen_is_optional_in_json() {
        let mut r = record(1, 4);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["summary"].get("tail_seen"), None, "false is left out");
        if let Some(s) = r.summary.as_mut() {
            s.tail_seen = true;
        }
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["summary"]["tail_seen"], true);
        let mut older = json.clone();
        older["summary"]
            .as_object_mut()
            .unwrap()
            .remove("tail_seen");
        let back: WalSegmentRecord = serde_json::from_value(older).unwrap();
        assert!(!back.summary.unwrap().tail_seen, "older entries: not seen");
    }

    #[test]
    fn a_later_record_of_the_same_segment_wins() {
        let mut newer = record(1, 3);
        newer.stored_bytes = 99;
        let index = WalIndex::from_records(size(), [record(1, 3), record(1, 2), newer.clone()]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(&(tli(1), SegNo::new(3))), Some(expected(&newer)));
    }

    #[test]
    fn runs_ranges_and_bounds() {
        let segs = [1u64, 2, 3, 6, 7, 10];
        let index = WalIndex::from_records(
            size(),
            segs.iter().map(|s| record(1, *s)).chain([record(3, 4)]),
        );
        let n = SegNo::new;
        assert_eq!(
            index.runs(tli(1)).collect::<Vec<_>>(),
            [(n(1), n(3)), (n(6), n(7)), (n(10), n(10))]
        );
        assert_eq!(
            index
                .range(tli(1), n(2), n(9))
                .map(|r| r.segno.get())
                .collect::<Vec<_>>(),
            [2, 3, 6, 7]
        );
        assert_eq!(index.range(tli(2), n(0), n(99)).count(), 0);
        assert_eq!(index.first_missing(tli(1), n(1), n(10)), Some(n(4)));
        assert_eq!(index.first_missing(tli(1), n(6), n(7)), None);
        assert_eq!(index.first_missing(tli(1), n(8), n(10)), Some(n(8)));
        assert_eq!(index.last_in(tli(1), n(0), Some(n(10))), Some(n(7)));
        assert_eq!(index.last_in(tli(1), n(4), Some(n(6))), None);
        assert_eq!(index.last_in(tli(1), n(0), None), Some(n(10)));
        assert_eq!(index.last_segno(), Some(n(10)));
        assert_eq!(index.timelines().collect::<Vec<_>>(), [tli(1), tli(3)]);
        assert_eq!(index.keys().count(), 7);
        assert_eq!(index.iter().count(), 7);
        let totals = index.timeline_totals();
        assert_eq!(totals[0].segments, 6);
        assert_eq!(totals[0].stored_bytes, segs.iter().sum::<u64>());
        assert_eq!((totals[1].first, totals[1].last), (n(4), n(4)));
    }
}
