//! The timeline view: which timeline recovery follows (`choose`), and that
//! timeline's history as recovery reads it (`Timeline`): which timeline's
//! file holds each segment (the switch points), which backups lie on the
//! history, and walks along its archived segments that stop at a target,
//! a gap or the end of the archive. Everything the locators, the route
//! and the windows know about timelines comes from here.

use chrono::{DateTime, Utc};

use super::StartFilter;
use super::{PlanError, RecoveryTarget, TargetSpec, TimelineChoice};
use crate::catalog::{BackupRecord, Catalog, HashKind, SegRef, WalEntry};
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalSegmentSize};

/// Segments `lo..hi` (`hi` excluded; `None`: no end) are read from
/// timeline `tli`'s files.
#[derive(Clone, Copy, Debug)]
struct Span {
    tli: TimelineId,
    lo: u64,
    hi: Option<u64>,
}

impl Span {
    fn holds(&self, s: u64) -> bool {
        self.lo <= s && self.hi.is_none_or(|h| s < h)
    }
}

/// One timeline's history over the catalog: the segments recovery along
/// it reads, and the backups it can start from.
pub(super) struct Timeline<'a> {
    catalog: &'a Catalog,
    /// The timeline recovery follows (the history's own).
    pub tli: TimelineId,
    pub size: WalSegmentSize,
    /// Newest first.
    stretches: Vec<crate::pg::history::HistorySpan>,
    /// Which timeline's file holds each segment: disjoint, covering every
    /// segment number, newest first.
    spans: Vec<Span>,
    /// The highest archived segment number on any timeline.
    last_archived: Option<SegNo>,
}

/// How a walk over the index ended (before entries are made).
enum RawWalk<'a> {
    Found(SegRef<'a>),
    Gap(SegNo),
    End(Option<SegNo>),
    /// Reached the segment where a walk already made began.
    Joined,
}

impl<'a> Timeline<'a> {
    pub fn new(catalog: &'a Catalog, tli: TimelineId) -> Result<Timeline<'a>, PlanError> {
        let history = catalog.history_of(tli).ok_or(PlanError::NoHistory(tli))?;
        let mut stretches = history.ancestors();
        stretches.reverse();
        let size = catalog.config.wal_segment_size;
        // `tli_for` takes the first (newest) stretch that begins at or
        // before a segment; a stretch beginning at or after a newer one's
        // begin is never taken.
        let mut spans = Vec::new();
        let mut end: Option<u64> = None;
        for st in &stretches {
            let b = st.begin.segno(size).get();
            if end.is_none_or(|e| b < e) {
                spans.push(Span {
                    tli: st.tli,
                    lo: b,
                    hi: end,
                });
                end = Some(b);
            }
        }
        if end != Some(0) {
            spans.push(Span {
                tli: TimelineId::FIRST,
                lo: 0,
                hi: end,
            });
        }
        Ok(Timeline {
            catalog,
            tli,
            size,
            stretches,
            spans,
            last_archived: catalog.wal.last_segno(),
        })
    }

    // Part of the view the locators use (the route used it for the chosen
    // backup before it kept its candidates).
    #[allow(dead_code)]
    pub fn catalog(&self) -> &'a Catalog {
        self.catalog
    }

    fn span_of(&self, segno: SegNo) -> Span {
        let s = segno.get();
        self.spans
            .iter()
            .find(|sp| sp.holds(s))
            .copied()
            .unwrap_or(Span {
                tli: TimelineId::FIRST,
                lo: s,
                hi: s.checked_add(1),
            })
    }

    /// The timeline whose file holds segment `segno` on this history: the
    /// stretch it falls in. The segment where a child branches off comes
    /// from the child (its copy holds the parent's WAL up to the switch
    /// point and the child's after it). Postgres' XLogFileReadAnyTLI would
    /// fall back to an older timeline's file when the newer one is missing,
    /// but past the switch point that file is another history: a gap here.
    pub fn tli_for(&self, segno: SegNo) -> TimelineId {
        self.span_of(segno).tli
    }

    /// The archived file recovery will read for `segno`, as an entry.
    pub fn segment(&self, segno: SegNo) -> Option<WalEntry> {
        self.seg(segno).map(|r| r.entry())
    }

    /// The archived file recovery will read for `segno` (no allocation).
    pub fn seg(&self, segno: SegNo) -> Option<SegRef<'a>> {
        self.catalog.wal.at(self.tli_for(segno), segno)
    }

    /// Whether a transaction end may lie where the index does not see it,
    /// in or at the end of `s`, a segment of this line: `s` has no summary,
    /// or its last record runs into the next segment unseen
    /// (`SegRef::may_hide_xact_end`) and the segment recovery reads next
    /// did not read that record whole (`SegRef::head_read`).
    pub fn hides_xact_end(&self, s: &SegRef<'_>) -> bool {
        if !s.has_summary() {
            return true;
        }
        s.may_hide_xact_end()
            && !s
                .segno
                .get()
                .checked_add(1)
                .and_then(|n| self.seg(SegNo::new(n)))
                .is_some_and(|n| n.head_read())
    }

    /// The archived segments recovery reads in `from..=to`, ascending
    /// (each from the timeline whose file holds it).
    pub fn archived(&self, from: SegNo, to: SegNo) -> impl Iterator<Item = SegRef<'a>> + '_ {
        let wal = &self.catalog.wal;
        let (lo, hi) = (from.get(), to.get());
        let mut spans: Vec<Span> = self
            .spans
            .iter()
            .filter(|sp| sp.lo <= hi && sp.hi.is_none_or(|h| lo < h))
            .copied()
            .collect();
        spans.sort_by_key(|sp| sp.lo);
        spans.into_iter().flat_map(move |sp| {
            let a = sp.lo.max(lo);
            let b = sp.hi.map_or(hi, |h| (h - 1).min(hi));
            wal.range(sp.tli, SegNo::new(a), SegNo::new(b))
        })
    }

    /// The name recovery would ask for (for messages about a gap).
    pub fn expected_name(&self, segno: SegNo) -> String {
        SegmentName::new(self.tli_for(segno), segno, self.size).to_string()
    }

    /// Every segment in `from..=to` that recovery would not find, at most
    /// `limit`, ascending.
    pub fn missing(&self, from: SegNo, to: SegNo, limit: usize) -> Vec<SegNo> {
        // A binary search over runs per missing segment, not a look at
        // every archived one.
        let mut out = Vec::new();
        let mut s = from;
        while s <= to && out.len() < limit {
            let sp = self.span_of(s);
            let hi = sp.hi.map_or(to, |h| SegNo::new(h - 1).min(to));
            match self.catalog.wal.first_missing(sp.tli, s, hi) {
                Some(g) => {
                    out.push(g);
                    s = g.next();
                }
                None => s = hi.next(),
            }
        }
        out
    }

    /// The backups that rebuild start point `b`, its full backup first
    /// (`Catalog::chain`); `b` alone when its chain cannot be read, which
    /// `backups_from` has already left out.
    pub fn chain(&self, b: &'a BackupRecord) -> Vec<&'a BackupRecord> {
        self.catalog.chain(&b.id).unwrap_or_else(|_| vec![b])
    }

    /// Seconds to bring start point `b` back (`CostModel::start`).
    pub fn start_cost(&self, b: &'a BackupRecord, cost: &super::cost::CostModel) -> f64 {
        cost.start(&self.chain(b))
    }

    /// A backup is on this history if it was taken on one of its
    /// timelines before that timeline branched off.
    pub fn holds_backup(&self, b: &BackupRecord) -> bool {
        self.stretches.iter().any(|s| {
            s.tli == b.timeline
                && b.start_lsn >= s.begin
                && s.end.is_none_or(|end| b.stop_lsn <= end)
        })
    }

    /// The backups on this history, with their index in the catalog, in
    /// catalog order; `None` when there are none.
    pub fn backups(&self) -> Option<LineBackups<'a>> {
        self.backups_from(&StartFilter::Any)
    }

    /// The start points on this history that `from` admits and that can
    /// be brought back (an incremental whose chain is broken cannot),
    /// with their index in the catalog, in catalog order; `None` when
    /// there are none.
    pub fn backups_from(&self, from: &StartFilter) -> Option<LineBackups<'a>> {
        let all: Vec<(usize, &'a BackupRecord)> = self
            .catalog
            .backups
            .iter()
            .enumerate()
            .filter(|(_, b)| self.holds_backup(b))
            .filter(|(_, b)| from.admits(b))
            .filter(|(_, b)| self.catalog.chain(&b.id).is_ok())
            .collect();
        let earliest = all
            .iter()
            .min_by_key(|(_, b)| b.stop_lsn)
            .map(|(_, b)| *b)?;
        Some(LineBackups {
            all,
            earliest,
            size: self.size,
        })
    }

    /// The highest segment archived under the name this history reads it
    /// by (a segment only a sibling timeline holds does not count).
    pub fn last_on_history(&self) -> Option<SegNo> {
        self.spans
            .iter()
            .filter_map(|sp| {
                self.catalog
                    .wal
                    .last_in(sp.tli, SegNo::new(sp.lo), sp.hi.map(SegNo::new))
            })
            .max()
    }

    /// The timelines whose files hold the archived segments `from..=to`,
    /// in order, each once per stretch.
    pub fn timelines_between(&self, from: SegNo, to: SegNo) -> Vec<TimelineId> {
        let mut out: Vec<TimelineId> = Vec::new();
        for r in self.archived(from, to) {
            if out.last() != Some(&r.timeline) {
                out.push(r.timeline);
            }
        }
        out
    }

    /// Raw bytes, stored bytes, count and SHA-256-checked count of the
    /// archived segments in `from..=to`.
    pub fn totals(&self, from: SegNo, to: SegNo) -> (u64, u64, u64, u64) {
        let (mut raw, mut stored, mut count, mut sha256) = (0u64, 0u64, 0u64, 0u64);
        for r in self.archived(from, to) {
            raw += r.raw_bytes();
            stored += r.stored_bytes();
            count += 1;
            if r.hash() == HashKind::Sha256 {
                sha256 += 1;
            }
        }
        (raw, stored, count, sha256)
    }

    /// Walks the index from `first` in order until `hit` holds, a segment
    /// is missing, the archive ends, or (with `join`) it reaches `join`.
    fn walk_raw(
        &self,
        first: SegNo,
        join: Option<SegNo>,
        mut hit: impl FnMut(SegRef<'a>) -> bool,
    ) -> RawWalk<'a> {
        let last_archived = self.last_archived.unwrap_or(first);
        let mut s = first;
        let mut last_seen = None;
        let missing = |s: SegNo, last_seen: Option<SegNo>| {
            if last_archived > s {
                RawWalk::Gap(s)
            } else {
                RawWalk::End(last_seen)
            }
        };
        while s <= last_archived {
            if join.is_some_and(|j| s >= j) {
                return RawWalk::Joined;
            }
            let sp = self.span_of(s);
            let mut hi = sp
                .hi
                .map_or(last_archived, |h| SegNo::new(h - 1).min(last_archived));
            if let Some(j) = join {
                if j > s {
                    hi = hi.min(SegNo::new(j.get() - 1));
                }
            }
            for r in self.catalog.wal.range(sp.tli, s, hi) {
                if r.segno != s {
                    return missing(s, last_seen);
                }
                if hit(r) {
                    return RawWalk::Found(r);
                }
                last_seen = Some(s);
                s = s.next();
            }
            if s <= hi {
                return missing(s, last_seen);
            }
        }
        RawWalk::End(last_seen)
    }

    /// Walks archived segments from `first` in order until `hit` holds.
    pub fn walk(&self, first: SegNo, hit: impl Fn(SegNo, &WalEntry) -> bool) -> Walk {
        self.walk_joined(first, None, &hit)
            .unwrap_or(Walk::End(None))
    }

    /// `walk`, stopping with `None` where it reaches `join`.
    fn walk_joined(
        &self,
        first: SegNo,
        join: Option<SegNo>,
        hit: &impl Fn(SegNo, &WalEntry) -> bool,
    ) -> Option<Walk> {
        let mut buf: Option<WalEntry> = None;
        let found = self.walk_raw(first, join, |r| {
            let e = buf.get_or_insert_with(|| r.entry());
            r.fill(e);
            hit(r.segno, e)
        });
        match found {
            RawWalk::Found(r) => Some(Walk::Found(r.segno, r.entry())),
            RawWalk::Gap(g) => Some(Walk::Gap(g)),
            RawWalk::End(l) => Some(Walk::End(l)),
            RawWalk::Joined => None,
        }
    }

    /// `walk` from each start, newest first: the first that finds the
    /// target wins (an older backup may reach what a newer one cannot,
    /// and a gap before a newer backup does not matter to it); otherwise
    /// the newest start's answer. A walk that reaches a newer start stops
    /// there: from that segment on it would see what that start's walk
    /// saw, which did not find the target (so every segment is read once).
    pub fn walk_any(&self, starts: &[SegNo], hit: impl Fn(SegNo, &WalEntry) -> bool) -> Walk {
        let mut starts = starts.to_vec();
        starts.sort();
        starts.dedup();
        let mut first_answer = None;
        let mut newer: Option<SegNo> = None;
        for start in starts.into_iter().rev() {
            match self.walk_joined(start, newer, &hit) {
                Some(found @ Walk::Found(..)) => return found,
                Some(other) => {
                    first_answer.get_or_insert(other);
                }
                None => {}
            }
            newer = Some(start);
        }
        first_answer.unwrap_or(Walk::End(None))
    }

    /// The first segment from `first` that recovery would not find before
    /// reaching past `to`: what `walk(first, |s, _| s > to)` calls a gap.
    pub fn gap_before(&self, first: SegNo, to: SegNo) -> Option<SegNo> {
        match self.walk_raw(first, None, |r| r.segno > to) {
            RawWalk::Gap(g) => Some(g),
            _ => None,
        }
    }

    /// Latest transaction-end time in segments `from..=to`, and the name
    /// of the segment that holds it.
    pub fn latest_time(&self, from: SegNo, to: SegNo) -> Option<(DateTime<Utc>, String)> {
        let mut best: Option<(DateTime<Utc>, SegRef<'a>)> = None;
        for r in self.archived(from, to) {
            if let Some(m) = r.max_xact_time() {
                if best.as_ref().is_none_or(|(b, _)| m > *b) {
                    best = Some((m, r));
                }
            }
        }
        best.map(|(t, r)| (t, r.name()))
    }
}

/// How a walk along the timeline ended.
// One per located target: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub(super) enum Walk {
    /// The predicate held in this segment.
    Found(SegNo, WalEntry),
    /// Segment missing before the predicate held (a later one exists).
    Gap(SegNo),
    /// The archive ended first (after this segment, if any was seen).
    End(Option<SegNo>),
}

/// The backups on one timeline's history (never empty).
pub(super) struct LineBackups<'a> {
    /// With their index in the catalog, in catalog order.
    pub all: Vec<(usize, &'a BackupRecord)>,
    /// The one consistent first (lowest stop LSN).
    pub earliest: &'a BackupRecord,
    size: WalSegmentSize,
}

impl<'a> LineBackups<'a> {
    /// The segment each backup starts replaying from.
    pub fn starts(&self) -> Vec<SegNo> {
        self.all
            .iter()
            .map(|(_, b)| b.start_lsn.segno(self.size))
            .collect()
    }

    /// The first segment any of them replays.
    pub fn first_start(&self) -> SegNo {
        self.starts().into_iter().min().unwrap_or(SegNo::new(0))
    }

    /// The newest (highest stop LSN) backup for which `ok` holds.
    pub fn newest_where(&self, ok: impl Fn(&BackupRecord) -> bool) -> Option<&'a BackupRecord> {
        self.all
            .iter()
            .filter(|(_, b)| ok(b))
            .max_by_key(|(_, b)| b.stop_lsn)
            .map(|(_, b)| *b)
    }
}

/// Every timeline the repository knows, newest first.
pub(super) fn known_timelines(catalog: &Catalog) -> Vec<TimelineId> {
    let mut all: Vec<TimelineId> = catalog
        .histories
        .keys()
        .copied()
        .chain(catalog.wal.timelines())
        .chain(std::iter::once(TimelineId::FIRST))
        .collect();
    all.sort();
    all.dedup();
    all.reverse();
    all
}

/// Where a named restore point or a transaction end lies: (file's
/// timeline, a position inside it).
fn locations(catalog: &Catalog, target: &RecoveryTarget) -> Vec<(TimelineId, Lsn)> {
    let size = catalog.config.wal_segment_size;
    let mut out = Vec::new();
    match target {
        RecoveryTarget::Name(n) => {
            for (r, points) in catalog.wal.restore_points() {
                out.extend(
                    points
                        .iter()
                        .filter(|p| &p.name == n)
                        .map(|p| (r.timeline, p.lsn)),
                );
            }
        }
        RecoveryTarget::Xid(x) => {
            for r in catalog.wal.iter().filter(|r| r.may_hold_xid(x.xid())) {
                // Where this segment's transaction ends lie: the newest
                // one's record. (A timeline's first segment starts with a
                // copy of its parent's WAL; its newest commit is the child's.)
                out.push((
                    r.timeline,
                    r.max_xact_lsn()
                        .or(r.first_record())
                        .unwrap_or_else(|| r.segno.start_lsn(size)),
                ));
            }
        }
        _ => {}
    }
    out
}

/// Picks the timeline recovery follows, and says why. With the default
/// (latest), a restore point or transaction that the newest timeline's
/// history does not pass through leads to the newest timeline that does.
pub(super) fn choose(
    catalog: &Catalog,
    spec: &TargetSpec,
) -> Result<(TimelineId, String), PlanError> {
    let latest = catalog.latest_timeline();
    match spec.timeline {
        TimelineChoice::Id(t) => {
            if catalog.history_of(t).is_none() {
                return Err(PlanError::NoHistory(t));
            }
            Ok((t, format!("timeline {t} as asked (--timeline {t})")))
        }
        TimelineChoice::Current => {
            let newest = catalog.backups.iter().max_by_key(|b| b.stop_lsn);
            let t = newest.map(|b| b.timeline).unwrap_or(TimelineId::FIRST);
            Ok((t, format!("current: timeline {t}, the newest backup's")))
        }
        TimelineChoice::Latest => {
            if !matches!(
                spec.target,
                RecoveryTarget::Name(_) | RecoveryTarget::Xid(_)
            ) {
                return Ok((latest, format!("latest: timeline {latest}, the newest in the repository (Postgres' default)")));
            }
            let locs = locations(catalog, &spec.target);
            if locs.is_empty() {
                return Err(PlanError::NotFound {
                    target: spec.target.to_string(),
                    timeline: latest,
                    searched: Some("every archived timeline".into()),
                    hint: match spec.target {
                        RecoveryTarget::Name(_) => "check the name (pg_create_restore_point), or archive the WAL that holds it (SELECT pg_switch_wal())".into(),
                        _ => "the transaction has not ended in archived WAL yet (SELECT pg_switch_wal() on the source), or the xid is wrong".into(),
                    },
                });
            }
            // Timelines whose history reaches the target where it was written.
            let holds = |t: TimelineId| {
                catalog.history_of(t).is_some_and(|h| {
                    locs.iter()
                        .any(|(file_tli, lsn)| h.tli_of_point(*lsn) == *file_tli)
                })
            };
            if holds(latest) {
                return Ok((
                    latest,
                    format!("latest: timeline {latest}, which holds {}", spec.target),
                ));
            }
            let found = known_timelines(catalog).into_iter().find(|t| holds(*t));
            match found {
                Some(t) => Ok((
                    t,
                    format!(
                        "timeline {t}: {} exists only off the newest timeline {latest}, whose history branched away before it (Postgres' default would replay timeline {latest} and never reach it)",
                        spec.target
                    ),
                )),
                None => Err(PlanError::NotFound {
                    target: spec.target.to_string(),
                    timeline: latest,
                    searched: Some("every archived timeline".into()),
                    hint: "no timeline's history reaches it".into(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{at, lsn, seg_name, tli, Kit};

    /// Timeline 1 in segments 1..=6; timeline 2 branched off it inside
    /// segment 4 and archived in 4..=8.
    fn forked() -> Kit {
        Kit::new()
            .segments(1, 1..=6)
            .branch(2, 1, lsn(4, 0x8000))
            .segments(2, 4..=8)
    }

    fn seg(s: u64) -> SegNo {
        SegNo::new(s)
    }

    #[test]
    fn the_switch_segment_is_read_from_the_child() {
        let c = forked().build();
        let line = Timeline::new(&c, tli(2)).unwrap();
        assert_eq!(line.tli_for(seg(3)), tli(1));
        assert_eq!(line.tli_for(seg(4)), tli(2));
        assert_eq!(line.tli_for(seg(7)), tli(2));
        assert_eq!(line.segment(seg(3)).unwrap().name, seg_name(1, 3));
        assert_eq!(line.segment(seg(4)).unwrap().name, seg_name(2, 4));
        // Timeline 1 reads its own file of segment 4.
        let one = Timeline::new(&c, tli(1)).unwrap();
        assert_eq!(one.segment(seg(4)).unwrap().name, seg_name(1, 4));
    }

    /// Timeline 2's segment 4 read the record running in from timeline
    /// 1's segment 3 (the push looked it up by the history): on line 2 the
    /// boundary 3|4 is seen; on line 1, whose segment 4 did not read it,
    /// it is not.
    #[test]
    fn a_boundary_is_seen_by_the_segment_the_line_reads_next() {
        let tail = |r: &mut crate::catalog::WalSegmentRecord| {
            if let Some(x) = r.summary.as_mut() {
                x.tail_incomplete = true;
            }
        };
        let c = forked()
            .edit(1, 3, tail)
            .edit(2, 4, |r| {
                if let Some(x) = r.summary.as_mut() {
                    x.head_read = true;
                }
            })
            .build();
        let two = Timeline::new(&c, tli(2)).unwrap();
        let one = Timeline::new(&c, tli(1)).unwrap();
        let three = two.seg(seg(3)).unwrap();
        assert!(three.may_hide_xact_end(), "segment 3 alone cannot tell");
        assert!(!two.hides_xact_end(&three));
        assert!(one.hides_xact_end(&one.seg(seg(3)).unwrap()));
        // The last archived segment of a line has no next one to read it.
        let c = forked().edit(2, 8, tail).build();
        let two = Timeline::new(&c, tli(2)).unwrap();
        assert!(two.hides_xact_end(&two.seg(seg(8)).unwrap()));
        assert!(!two.hides_xact_end(&two.seg(seg(7)).unwrap()));
    }

    #[test]
    fn no_fallback_to_the_parents_file_past_the_switch() {
        // Timeline 2's copy of segment 5 is missing; timeline 1's file
        // of segment 5 is another history, not a substitute.
        let c = forked().without(2, 5).build();
        let line = Timeline::new(&c, tli(2)).unwrap();
        assert!(line.segment(seg(5)).is_none());
        assert_eq!(line.expected_name(seg(5)), seg_name(2, 5));
        assert_eq!(line.walk(seg(1), |_, _| false), Walk::Gap(seg(5)));
    }

    #[test]
    fn a_timeline_without_history_is_refused() {
        let c = forked().build();
        assert!(matches!(
            Timeline::new(&c, tli(3)),
            Err(PlanError::NoHistory(t)) if t == tli(3)
        ));
    }

    #[test]
    fn backups_on_the_history() {
        let c = forked()
            .backup("before-switch", 1, 2, 1)
            .backup("tl1-after-switch", 1, 5, 1)
            .backup("tl2", 2, 6, 1)
            .build();
        let ids = |t: u32| -> Vec<String> {
            let line = Timeline::new(&c, tli(t)).unwrap();
            let on = line.backups().unwrap();
            on.all.iter().map(|(_, b)| b.id.clone()).collect()
        };
        assert_eq!(ids(2), ["before-switch", "tl2"]);
        assert_eq!(ids(1), ["before-switch", "tl1-after-switch"]);

        let line = Timeline::new(&c, tli(2)).unwrap();
        let on = line.backups().unwrap();
        assert_eq!(on.earliest.id, "before-switch");
        assert_eq!(on.starts(), [seg(2), seg(6)]);
        assert_eq!(on.first_start(), seg(2));
        assert_eq!(on.newest_where(|_| true).unwrap().id, "tl2");
        assert_eq!(
            on.newest_where(|b| b.stop_time < at(1000)).unwrap().id,
            "before-switch"
        );
        assert!(on.newest_where(|_| false).is_none());
    }

    #[test]
    fn no_backups_on_the_history() {
        let c = forked().backup("tl1-after-switch", 1, 5, 1).build();
        let line = Timeline::new(&c, tli(2)).unwrap();
        assert!(line.backups().is_none());
    }

    #[test]
    fn walks_end_found_gap_or_end() {
        let c = Kit::new().segments(1, 1..=6).without(1, 3).build();
        let line = Timeline::new(&c, tli(1)).unwrap();
        let r = line.walk(seg(4), |s, _| s == seg(5));
        assert!(matches!(r, Walk::Found(s, rec) if s == seg(5) && rec.name == seg_name(1, 5)));
        assert_eq!(line.walk(seg(1), |_, _| false), Walk::Gap(seg(3)));
        assert_eq!(line.walk(seg(4), |_, _| false), Walk::End(Some(seg(6))));
        assert_eq!(line.walk(seg(9), |_, _| false), Walk::End(None));
        // The archive ends exactly where the walk starts.
        let c = Kit::new().segments(1, 1..=2).build();
        let line = Timeline::new(&c, tli(1)).unwrap();
        assert_eq!(line.walk(seg(3), |_, _| false), Walk::End(None));
    }

    #[test]
    fn walk_any_tries_the_newest_start_first() {
        let c = Kit::new().segments(1, 1..=6).without(1, 3).build();
        let line = Timeline::new(&c, tli(1)).unwrap();
        // A gap before the newer start does not matter to it.
        let r = line.walk_any(&[seg(1), seg(4)], |s, _| s == seg(5));
        assert!(matches!(r, Walk::Found(s, _) if s == seg(5)));
        // Only the older start reaches a target before the newer one.
        let r = line.walk_any(&[seg(4), seg(1)], |s, _| s == seg(2));
        assert!(matches!(r, Walk::Found(s, _) if s == seg(2)));
        // Nobody finds it: the newest start's answer.
        assert_eq!(
            line.walk_any(&[seg(1), seg(4)], |_, _| false),
            Walk::End(Some(seg(6)))
        );
        assert_eq!(line.walk_any(&[], |_, _| true), Walk::End(None));
    }

    #[test]
    fn latest_time_and_timelines_between() {
        let c = forked().build();
        let line = Timeline::new(&c, tli(2)).unwrap();
        assert_eq!(
            line.latest_time(seg(1), seg(5)),
            Some((at(1050), seg_name(2, 5)))
        );
        assert_eq!(line.latest_time(seg(9), seg(12)), None);
        assert_eq!(line.timelines_between(seg(1), seg(8)), [tli(1), tli(2)]);
        assert_eq!(line.timelines_between(seg(5), seg(8)), [tli(2)]);
        assert_eq!(line.last_on_history(), Some(seg(8)));
        let one = Timeline::new(&c, tli(1)).unwrap();
        assert_eq!(one.last_on_history(), Some(seg(6)));
    }

    #[test]
    fn known_timelines_newest_first() {
        let c = forked().segments(3, 9..=9).build();
        assert_eq!(known_timelines(&c), [tli(3), tli(2), tli(1)]);
        assert_eq!(known_timelines(&Kit::new().build()), [tli(1)]);
    }

    fn chosen(
        c: &Catalog,
        target: RecoveryTarget,
        timeline: TimelineChoice,
    ) -> Result<TimelineId, PlanError> {
        let spec = TargetSpec {
            target,
            inclusive: true,
            timeline,
            from: Default::default(),
        };
        choose(c, &spec).map(|(t, _)| t)
    }

    #[test]
    fn choosing_the_timeline() {
        let c = forked()
            .restore_point(1, 2, "shared", 21)
            .restore_point(1, 5, "tl1_only", 51)
            .backup("b1", 1, 1, 1)
            .build();
        let latest = TimelineChoice::Latest;
        assert_eq!(chosen(&c, RecoveryTarget::Latest, latest), Ok(tli(2)));
        assert_eq!(chosen(&c, RecoveryTarget::Time(at(1)), latest), Ok(tli(2)));
        assert_eq!(
            chosen(&c, RecoveryTarget::Name("shared".into()), latest),
            Ok(tli(2))
        );
        // Only timeline 1's history passes through it.
        assert_eq!(
            chosen(&c, RecoveryTarget::Name("tl1_only".into()), latest),
            Ok(tli(1))
        );
        assert_eq!(
            chosen(&c, RecoveryTarget::Xid(crate::plan::Xid::new(1005)), latest),
            Ok(tli(1))
        );
        assert_eq!(
            chosen(&c, RecoveryTarget::Xid(crate::plan::Xid::new(2005)), latest),
            Ok(tli(2))
        );
        assert!(matches!(
            chosen(&c, RecoveryTarget::Name("nope".into()), latest),
            Err(PlanError::NotFound { .. })
        ));
        assert!(matches!(
            chosen(&c, RecoveryTarget::Xid(crate::plan::Xid::new(7)), latest),
            Err(PlanError::NotFound { .. })
        ));
        // Asked for: kept, if its history is known.
        assert_eq!(
            chosen(&c, RecoveryTarget::Latest, TimelineChoice::Id(tli(1))),
            Ok(tli(1))
        );
        assert_eq!(
            chosen(&c, RecoveryTarget::Latest, TimelineChoice::Id(tli(5))),
            Err(PlanError::NoHistory(tli(5)))
        );
        // Current: the newest backup's timeline.
        assert_eq!(
            chosen(&c, RecoveryTarget::Latest, TimelineChoice::Current),
            Ok(tli(1))
        );
    }

    #[test]
    fn a_restore_point_in_the_switch_segment_before_the_switch() {
        // Segment 4 holds timeline 1's WAL up to 0/48008000 in both files;
        // a point written there before the switch is on both histories.
        let c = forked().restore_point(1, 4, "early", 41).build();
        let spec = TargetSpec::new(RecoveryTarget::Name("early".into()));
        let (t, why) = choose(&c, &spec).unwrap();
        assert_eq!(t, tli(2));
        assert!(why.starts_with("latest: timeline 2, which holds"), "{why}");
    }
}
