//! A transaction target, proven from exact transaction lists. Postgres
//! stops at the first commit or abort record whose xid (the twophase xid
//! for prepared transactions) equals the target's 32 bits
//! (xlogrecovery.c: recoveryStopsBefore / recoveryStopsAfter): after it,
//! or before it with `--exclusive`. The WAL index's per-segment xid range
//! is only a bound (xids are assigned in start order and end in any order,
//! and a timeline that branched off reuses the numbers after its switch),
//! so the segments whose range holds the xid, on every timeline, are
//! candidates whose transaction lists the caller reads from the repository
//! (`XactLists`, by `recover::run` before planning); here, pure, the xid's
//! end record is looked up in them, the timeline whose history holds its
//! commit is chosen, and an xid that is absent, aborted, or of another
//! epoch is refused, naming where it looked. A candidate segment whose
//! list could not be read (archived by an older pitr) falls back to the
//! bound, and the plan says so.
//!
//! The epoch of a 64-bit xid (`pg_current_xact_id()`) is checked against
//! the WAL: the nearest checkpoint's nextXid (`WalSummary::next_xid`) on
//! the record's history widens the record's 32-bit xid the way
//! `widen_snapshot_xid` (xid8funcs.c) does.

use std::collections::BTreeMap;

use super::{gap, Located, StartBy};
use crate::catalog::Catalog;
use crate::pg::wal::{XactEnd, XactKind};
use crate::pg::{Lsn, SegNo, TimelineId};
use crate::plan::timeline::{known_timelines, LineBackups, Timeline, Walk};
use crate::plan::{PlanError, RecoveryTarget, StopPoint, TargetSpec, TimelineChoice, Xid};

/// Every transaction end of some archived segments, by (timeline of the
/// file, segment number): what the caller read for an xid target.
#[derive(Clone, Debug, Default)]
pub struct XactLists {
    lists: BTreeMap<(TimelineId, SegNo), Vec<XactEnd>>,
}

impl XactLists {
    pub fn new() -> XactLists {
        XactLists::default()
    }

    /// Records the transaction list of timeline `tli`'s file of `segno`.
    pub fn insert(&mut self, tli: TimelineId, segno: SegNo, list: Vec<XactEnd>) {
        self.lists.insert((tli, segno), list);
    }

    fn get(&self, tli: TimelineId, segno: SegNo) -> Option<&[XactEnd]> {
        self.lists.get(&(tli, segno)).map(|v| v.as_slice())
    }
}

/// The archived segments, on every timeline, whose xid range holds `x`:
/// the transaction lists an xid target needs, in catalog order.
pub fn xid_candidates(catalog: &Catalog, x: Xid) -> Vec<(TimelineId, SegNo)> {
    catalog
        .wal
        .iter()
        .filter(|r| r.may_hold_xid(x.xid()))
        .map(|r| (r.timeline, r.segno))
        .collect()
}

/// One place the xid ends (or may end).
#[derive(Clone, Debug)]
struct Find {
    /// The file's timeline and segment.
    tli: TimelineId,
    segno: SegNo,
    name: String,
    /// The end record, from the segment's list; `None`: the list could
    /// not be read and only the bound says the xid may end here.
    end: Option<XactEnd>,
    /// Where the record (or, for a bound, the segment's newest
    /// transaction end) lies.
    lsn: Lsn,
    /// The record's epoch, when a checkpoint on its history tells it.
    epoch: Option<u32>,
}

impl Find {
    fn is_commit(&self) -> bool {
        self.end
            .as_ref()
            .is_some_and(|e| matches!(e.kind, XactKind::Commit | XactKind::CommitPrepared))
    }

    fn is_abort(&self) -> bool {
        self.end.is_some() && !self.is_commit()
    }

    /// A commit whose epoch is not the one asked for.
    fn epoch_differs(&self, x: Xid) -> bool {
        matches!((x.epoch(), self.epoch), (Some(a), Some(b)) if a != b)
    }
}

/// Everything the lists and bounds say about `x`.
struct Ends {
    finds: Vec<Find>,
    /// Candidate segments whose full list was searched.
    searched: Vec<String>,
}

impl Ends {
    fn gather(catalog: &Catalog, x: Xid, lists: &XactLists) -> Ends {
        let mut finds = Vec::new();
        let mut searched = Vec::new();
        for (tli, segno) in xid_candidates(catalog, x) {
            let Some(rec) = catalog.wal.get(&(tli, segno)) else {
                continue;
            };
            match lists.get(tli, segno) {
                Some(list) => {
                    searched.push(rec.name.clone());
                    finds.extend(list.iter().filter(|e| e.xid == x).map(|e| Find {
                        tli,
                        segno,
                        name: rec.name.clone(),
                        end: Some(e.clone()),
                        lsn: e.lsn,
                        epoch: epoch_of(catalog, tli, segno, e.xid),
                    }));
                }
                None => {
                    let sum = rec.summary.as_ref();
                    let lsn = sum
                        .and_then(|s| s.max_xact.as_ref().map(|m| m.lsn).or(s.first_record))
                        .unwrap_or_else(|| segno.start_lsn(catalog.config.wal_segment_size));
                    finds.push(Find {
                        tli,
                        segno,
                        name: rec.name.clone(),
                        end: None,
                        lsn,
                        epoch: None,
                    });
                }
            }
        }
        Ends { finds, searched }
    }

    /// The finds on timeline `t`'s history: recovery along it reads the
    /// same WAL at the find's position as the find's own file holds.
    fn on(&self, catalog: &Catalog, t: TimelineId) -> Vec<&Find> {
        let Some(h) = catalog.history_of(t) else {
            return Vec::new();
        };
        self.finds
            .iter()
            .filter(|f| {
                catalog
                    .history_of(f.tli)
                    .is_some_and(|fh| fh.tli_of_point(f.lsn) == h.tli_of_point(f.lsn))
            })
            .collect()
    }

    fn searched(&self) -> String {
        if self.searched.is_empty() {
            "the xid range of every archived segment: none holds it".into()
        } else {
            format!(
                "every transaction end of segment{} {}",
                if self.searched.len() == 1 { "" } else { "s" },
                self.searched.join(", ")
            )
        }
    }
}

/// The epoch of `xid`, ended in timeline `tli`'s file of `segno`: from
/// the nearest checkpoint's nextXid along that timeline's history (at or
/// before the segment, else after it). Xids stay within 2^31 of nextXid,
/// so the nearest full xid with these low 32 bits is the one.
fn epoch_of(catalog: &Catalog, tli: TimelineId, segno: SegNo, xid: u32) -> Option<u32> {
    let line = Timeline::new(catalog, tli).ok()?;
    let next_at = |s: SegNo| {
        line.segment(s)
            .and_then(|r| r.summary)
            .and_then(|s| s.next_xid)
    };
    let last = catalog.wal.last_segno()?;
    let mut next = None;
    let mut s = segno;
    loop {
        if let Some(n) = next_at(s) {
            next = Some(n);
            break;
        }
        if s.get() == 0 {
            break;
        }
        s = SegNo::new(s.get() - 1);
    }
    if next.is_none() {
        let mut s = segno.next();
        while s <= last {
            if let Some(n) = next_at(s) {
                next = Some(n);
                break;
            }
            s = s.next();
        }
    }
    let next = next?;
    let diff = i64::from(xid.wrapping_sub(next as u32) as i32);
    let full = i64::try_from(next).ok()?.checked_add(diff)?;
    u32::try_from(u64::try_from(full).ok()? >> 32).ok()
}

/// Why no commit of `x` is on the timelines `finds` came from.
fn refusal(x: Xid, timeline: TimelineId, finds: &[&Find], ends: &Ends) -> PlanError {
    let target = RecoveryTarget::Xid(x).to_string();
    if let Some(f) = finds.iter().find(|f| f.is_commit() && f.epoch_differs(x)) {
        return PlanError::XidEpoch {
            target,
            xid: x.xid(),
            given: x.epoch().unwrap_or_default(),
            wal: f.epoch.unwrap_or_default(),
            segment: f.name.clone(),
        };
    }
    if let Some(f) = finds.iter().find(|f| f.is_abort()) {
        return PlanError::XidAborted {
            target,
            lsn: f.lsn,
            segment: f.name.clone(),
        };
    }
    let elsewhere: Vec<String> = ends
        .finds
        .iter()
        .filter(|f| f.is_commit() && !f.epoch_differs(x))
        .map(|f| format!("timeline {} (segment {})", f.tli, f.name))
        .collect();
    PlanError::NotFound {
        target,
        timeline,
        searched: Some(ends.searched()),
        hint: if elsewhere.is_empty() {
            "the transaction has not ended in archived WAL (SELECT pg_switch_wal() on the source), or the xid is not a top-level transaction's: a row's xmin written inside a savepoint is a subtransaction's xid, which no commit record carries (give the top-level one, e.g. pg_current_xact_id() before the savepoint)".into()
        } else {
            format!(
                "it commits only off this timeline's history, on {}: choose that timeline",
                elsewhere.join(", ")
            )
        },
    }
}

/// What counts as the xid's end on a history: exact commits of the right
/// epoch, else candidates known only by their bound.
fn usable<'f>(x: Xid, finds: &[&'f Find]) -> Vec<&'f Find> {
    let exact: Vec<&Find> = finds
        .iter()
        .copied()
        .filter(|f| f.is_commit() && !f.epoch_differs(x))
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    finds.iter().copied().filter(|f| f.end.is_none()).collect()
}

/// Chooses the timeline for an xid target, and says why: the one asked
/// for if its history holds the xid's commit; with `latest`, the newest
/// timeline whose history holds it.
pub(in crate::plan) fn choose(
    catalog: &Catalog,
    spec: &TargetSpec,
    x: Xid,
    lists: &XactLists,
) -> Result<(TimelineId, String), PlanError> {
    let ends = Ends::gather(catalog, x, lists);
    let latest = catalog.latest_timeline();
    let holds = |t: TimelineId| !usable(x, &ends.on(catalog, t)).is_empty();
    let asked = match spec.timeline {
        TimelineChoice::Id(t) => {
            if catalog.history_of(t).is_none() {
                return Err(PlanError::NoHistory(t));
            }
            Some((t, format!("timeline {t} as asked (--timeline {t})")))
        }
        TimelineChoice::Current => {
            let newest = catalog.backups.iter().max_by_key(|b| b.stop_lsn);
            let t = newest.map(|b| b.timeline).unwrap_or(TimelineId::FIRST);
            Some((t, format!("current: timeline {t}, the newest backup's")))
        }
        TimelineChoice::Latest => None,
    };
    if let Some((t, why)) = asked {
        return if holds(t) {
            Ok((t, why))
        } else {
            Err(refusal(x, t, &ends.on(catalog, t), &ends))
        };
    }
    if holds(latest) {
        return Ok((
            latest,
            format!(
                "latest: timeline {latest}, whose history holds the commit of {}",
                spec.target
            ),
        ));
    }
    match known_timelines(catalog).into_iter().find(|t| holds(*t)) {
        Some(t) => Ok((
            t,
            format!(
                "timeline {t}: {} commits only off the newest timeline {latest}, whose history branched away before it (Postgres' default would replay timeline {latest} and never reach it)",
                spec.target
            ),
        )),
        None => {
            let all: Vec<&Find> = ends.finds.iter().collect();
            Err(refusal(x, latest, &all, &ends))
        }
    }
}

pub(in crate::plan) fn locate(
    x: Xid,
    inclusive: bool,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
    lists: &XactLists,
) -> Result<Located, PlanError> {
    let catalog = line.catalog();
    let ends = Ends::gather(catalog, x, lists);
    let on_line = ends.on(catalog, line.tli);
    let mut usable = usable(x, &on_line);
    if usable.is_empty() {
        return Err(refusal(x, line.tli, &on_line, &ends));
    }
    // Postgres stops at the first matching record in WAL order.
    usable.sort_by_key(|f| f.lsn);
    let hit = usable[0];
    let rec = match line.walk_any(&backups.starts(), |s, _| s == hit.segno) {
        Walk::Found(_, rec) => rec,
        Walk::Gap(g) => return Err(gap(line, backups, g)),
        Walk::End(_) => {
            return Err(PlanError::NoBackupBefore {
                target: RecoveryTarget::Xid(x).to_string(),
                timeline: line.tli,
                earliest_lsn: backups.earliest.stop_lsn,
                backup_id: backups.earliest.id.clone(),
            })
        }
    };
    let how = if inclusive {
        "right after"
    } else {
        "right before"
    };
    Ok(match &hit.end {
        Some(end) => Located {
            segno: hit.segno,
            stop: StopPoint {
                segment: rec.name.clone(),
                description: format!(
                    "transaction {x} commits at {} (LSN {}) in segment {}{}: recovery stops {how} it",
                    end.time,
                    end.lsn,
                    rec.name,
                    match hit.epoch {
                        Some(e) => format!(", xid {} of epoch {e}", x.xid()),
                        None => String::new(),
                    }
                ),
                lsn: Some(end.lsn),
                time: Some(end.time),
                xid: Some(x.xid()),
            },
            // Recovery must be consistent by the time it stops (else
            // "requested recovery stop point is before consistent
            // recovery point"): after the commit record, or before it.
            start_by: StartBy::ConsistentBy(if inclusive { end.end_lsn } else { end.lsn }),
        },
        None => {
            let sum = rec.summary.as_ref();
            Located {
                segno: hit.segno,
                stop: StopPoint {
                    segment: rec.name.clone(),
                    description: format!(
                        "transaction {x} may end in segment {} (its transaction ends span xids {}..{}; its transaction list is not in the repository): recovery stops {how} it",
                        rec.name,
                        sum.and_then(|s| s.min_xid).unwrap_or_default(),
                        sum.and_then(|s| s.max_xid).unwrap_or_default(),
                    ),
                    lsn: None,
                    time: None,
                    xid: Some(x.xid()),
                },
                // Where the transaction ends is not known exactly: any
                // backup consistent by the stop segment may reach it.
                start_by: StartBy::Any,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::locate::on_line;
    use crate::plan::testkit::{lsn, seg_name, tli, xact_lists as lists_of, Kit};

    fn kit() -> Kit {
        Kit::new().segments(1, 1..=6).backup("b1", 1, 1, 1)
    }

    fn of(c: &Catalog, x: Xid, inclusive: bool, lists: &XactLists) -> Result<Located, PlanError> {
        on_line(c, 1, |line, backups| {
            locate(x, inclusive, line, backups, lists)
        })
    }

    fn spec(x: Xid) -> TargetSpec {
        TargetSpec::new(RecoveryTarget::Xid(x))
    }

    /// Timeline 1 in segments 1..=6; timeline 2 branched off inside
    /// segment 4 and archived in 4..=8. Timeline 2's segment 5 has an
    /// xid range that holds 1005 (timeline 1's commit after the switch),
    /// though its list does not.
    fn forked() -> Catalog {
        Kit::new()
            .segments(1, 1..=6)
            .branch(2, 1, lsn(4, 0x8000))
            .segments(2, 4..=8)
            .edit(2, 5, |r| {
                if let Some(s) = r.summary.as_mut() {
                    s.min_xid = Some(1000);
                }
            })
            .backup("b1", 1, 1, 1)
            .build()
    }

    /// The kit with segment 5's xid range widened down to 900 (as a long
    /// transaction ending there widens it): its range then holds xids
    /// whose ends lie elsewhere, or nowhere.
    fn widened() -> Kit {
        kit().edit(1, 5, |r| {
            if let Some(s) = r.summary.as_mut() {
                s.min_xid = Some(900);
            }
        })
    }

    #[test]
    fn stops_at_the_exact_commit() {
        let c = widened().build();
        let lists = lists_of(&c);
        // Segment 5's range holds 1004 too; its list does not.
        let l = of(&c, Xid::new(1004), true, &lists).unwrap();
        assert_eq!(l.segno, SegNo::new(4));
        assert_eq!(l.stop.segment, seg_name(1, 4));
        assert_eq!(l.stop.lsn, Some(lsn(4, 0x1000)));
        assert_eq!(l.stop.xid, Some(1004));
        assert_eq!(l.start_by, StartBy::ConsistentBy(lsn(4, 0x1040)));
        assert!(
            l.stop.description.ends_with("right after it"),
            "{}",
            l.stop.description
        );
        let l = of(&c, Xid::new(1004), false, &lists).unwrap();
        assert_eq!(l.start_by, StartBy::ConsistentBy(lsn(4, 0x1000)));
        assert!(l.stop.description.ends_with("right before it"));
    }

    #[test]
    fn without_lists_the_bound_is_used_and_said() {
        let c = widened().build();
        let l = of(&c, Xid::new(950), true, &XactLists::new()).unwrap();
        assert_eq!(l.segno, SegNo::new(5));
        assert_eq!(l.start_by, StartBy::Any);
        assert!(
            l.stop.description.contains("not in the repository"),
            "{}",
            l.stop.description
        );
    }

    #[test]
    fn an_xid_only_on_timeline_1_after_the_branch_is_planned_on_timeline_1() {
        let c = forked();
        let lists = lists_of(&c);
        let (t, why) = choose(&c, &spec(Xid::new(1005)), Xid::new(1005), &lists).unwrap();
        assert_eq!(t, tli(1));
        assert!(why.contains("only off the newest timeline 2"), "{why}");
        // Timeline 2's own commit stays on timeline 2.
        let (t, _) = choose(&c, &spec(Xid::new(2005)), Xid::new(2005), &lists).unwrap();
        assert_eq!(t, tli(2));
        // Before the switch, on both: the newest.
        let (t, _) = choose(&c, &spec(Xid::new(1003)), Xid::new(1003), &lists).unwrap();
        assert_eq!(t, tli(2));
        // Asked for timeline 2: refused, saying where it commits.
        let pinned = TargetSpec {
            timeline: TimelineChoice::Id(tli(2)),
            ..spec(Xid::new(1005))
        };
        let err = choose(&c, &pinned, Xid::new(1005), &lists).unwrap_err();
        let PlanError::NotFound { timeline, hint, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*timeline, tli(2));
        assert!(
            hint.contains(&format!("timeline 1 (segment {})", seg_name(1, 5))),
            "{hint}"
        );
    }

    #[test]
    fn an_aborted_xid_is_refused() {
        let c = kit()
            .edit(1, 3, |r| {
                if let Some(m) = r.summary.as_mut().and_then(|s| s.max_xact.as_mut()) {
                    m.kind = XactKind::Abort;
                }
            })
            .build();
        let lists = lists_of(&c);
        let err = choose(&c, &spec(Xid::new(1003)), Xid::new(1003), &lists).unwrap_err();
        assert_eq!(
            err,
            PlanError::XidAborted {
                target: "transaction 1003".into(),
                lsn: lsn(3, 0x1000),
                segment: seg_name(1, 3),
            }
        );
        assert!(matches!(
            of(&c, Xid::new(1003), true, &lists),
            Err(PlanError::XidAborted { .. })
        ));
    }

    #[test]
    fn an_absent_xid_is_refused_naming_the_segments_searched() {
        let c = widened().build();
        let lists = lists_of(&c);
        let err = choose(&c, &spec(Xid::new(950)), Xid::new(950), &lists).unwrap_err();
        let PlanError::NotFound { searched, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            searched.as_deref(),
            Some(format!("every transaction end of segment {}", seg_name(1, 5)).as_str())
        );
        // No range holds it at all.
        let err = choose(&c, &spec(Xid::new(7)), Xid::new(7), &lists).unwrap_err();
        assert!(err.to_string().contains("none holds it"), "{err}");
    }

    #[test]
    fn the_epoch_comes_from_the_nearest_checkpoint() {
        // Epoch 1 from a checkpoint in segment 2 (nextXid 1 << 32 | 1002).
        let c = kit()
            .edit(1, 2, |r| {
                if let Some(s) = r.summary.as_mut() {
                    s.next_xid = Some((1 << 32) | 1002);
                }
            })
            .build();
        let lists = lists_of(&c);
        assert_eq!(epoch_of(&c, tli(1), SegNo::new(4), 1004), Some(1));
        // Near the wrap: an xid just below 2^32 belongs to the epoch before.
        assert_eq!(epoch_of(&c, tli(1), SegNo::new(4), u32::MAX - 5), Some(0));
        // Segment 1 has no checkpoint before it: the one after counts.
        assert_eq!(epoch_of(&c, tli(1), SegNo::new(1), 1001), Some(1));
        let full = Xid::full((1 << 32) | 1004);
        let l = of(&c, full, true, &lists).unwrap();
        assert_eq!(l.segno, SegNo::new(4));
        assert!(
            l.stop.description.contains("xid 1004 of epoch 1"),
            "{}",
            l.stop.description
        );
        let (t, _) = choose(&c, &spec(full), full, &lists).unwrap();
        assert_eq!(t, tli(1));
        // Another epoch: refused, saying the WAL's.
        let wrong = Xid::full((3 << 32) | 1004);
        let err = choose(&c, &spec(wrong), wrong, &lists).unwrap_err();
        assert_eq!(
            err,
            PlanError::XidEpoch {
                target: "transaction 12884902892".into(),
                xid: 1004,
                given: 3,
                wal: 1,
                segment: seg_name(1, 4),
            }
        );
        assert!(err.to_string().contains("epoch 1"), "{err}");
        // Without any checkpoint in the index the epoch cannot be checked.
        let c = kit().build();
        assert!(choose(&c, &spec(wrong), wrong, &lists_of(&c)).is_ok());
    }

    #[test]
    fn a_gap_before_it() {
        let c = kit().without(1, 2).build();
        assert!(matches!(
            of(&c, Xid::new(1004), true, &lists_of(&c)),
            Err(PlanError::MissingSegment { segment, .. }) if segment == seg_name(1, 2)
        ));
    }

    #[test]
    fn candidates_are_every_timelines_segments_whose_range_holds_it() {
        let c = forked();
        assert_eq!(
            xid_candidates(&c, Xid::new(1005)),
            vec![(tli(1), SegNo::new(5)), (tli(2), SegNo::new(5))]
        );
    }
}
