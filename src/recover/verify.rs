//! Whether recovery ended where the plan said ("success means the plan
//! happened"). The end of replay is the end of the last replayed record
//! (Postgres' EndRecPtr): after promotion the switch point the new
//! timeline's `.history` file records (xlog.c: StartupXLOG writes
//! `EndOfLog` there), while paused `pg_last_wal_replay_lsn()`
//! (lastReplayedEndRecPtr), after a shutdown at the target only a lower
//! bound (pg_control's minimum recovery point, or the last replay position
//! seen over SQL). None of it comes from the server log.
//!
//! What the plan knows bounds that end: `--latest` must replay the last
//! complete record of the last planned segment; an LSN, restore point or
//! the end of the backup must be reached (and a restore point not passed);
//! a time or xid target stops right before (or after) its transaction end
//! record, exactly known when the stop segment's transaction list is at
//! hand, else bounded by the latest transaction end of the stop segment.
//! Postgres 13+ itself refuses to promote when a set target was not
//! reached; these checks catch the rest (a short `--latest`, a stop in the
//! wrong place) and never pass on a guess: a bound the plan does not know
//! is not checked.

use crate::pg::wal::XactEnd;
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalFileName, WalSegmentSize};
use crate::plan::{Plan, RecoveryTarget, Step, TimeStop};

use super::RecoverError;

/// Where replay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayEnd {
    /// The end of the last replayed record.
    Exact(Lsn),
    /// Replay ended here or later (after `--action shutdown`).
    AtLeast(Lsn),
}

impl ReplayEnd {
    pub fn lsn(self) -> Lsn {
        match self {
            ReplayEnd::Exact(l) | ReplayEnd::AtLeast(l) => l,
        }
    }
}

/// How far a record's end (EndRecPtr, already MAXALIGNed) can lie before
/// the next record's start: a long page header (SizeOfXLogLongPHD, 40
/// bytes on 64-bit builds) when the next record opens a segment. Rounded up.
const HEADER_GAP: u64 = 64;

/// A restore point record (XLogRecord, a short data header and
/// xl_restore_point: 8 + 64 bytes) plus a page header it may cross: well
/// under this many bytes from its start to its end.
const RESTORE_POINT_MAX: u64 = 512;

/// What the plan says about the end of replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Replay ends at or after this LSN (strictly after when `.1`).
    pub after: Option<(Lsn, bool)>,
    /// Replay ends at or before this LSN.
    pub until: Option<Lsn>,
    /// `--latest`: replay reaches past the start of this segment (used
    /// when the WAL index does not know where its last record ends).
    pub through_segment: Option<SegNo>,
}

/// The bounds `plan` puts on the end of replay. `xacts` is the stop
/// segment's transaction list when the repository has it (it pins a time
/// or xid target's stop record exactly, as `Plan::refine` does).
pub fn expected(plan: &Plan, xacts: Option<&[XactEnd]>, size: WalSegmentSize) -> Expected {
    let mut e = Expected {
        after: None,
        until: None,
        through_segment: None,
    };
    let minus_gap = |l: Lsn| Lsn::new(l.as_u64().saturating_sub(HEADER_GAP));
    match &plan.target {
        RecoveryTarget::Latest => {
            // The last complete record of the last planned segment; without
            // it, at least something past that segment's start.
            e.after = plan.stop.lsn.map(|l| (l, false));
            if e.after.is_none() {
                e.through_segment = segno_of(&plan.stop.segment, size);
            }
        }
        RecoveryTarget::Immediate => {
            // Consistent at the backup's end: replay stops right there
            // (xlogrecovery.c: recoveryStopsBefore, RECOVERY_TARGET_IMMEDIATE).
            e.after = plan.stop.lsn.map(|l| (l, false));
        }
        RecoveryTarget::Lsn(l) => {
            // The first record starting at or after l is replayed
            // (inclusive) or is the first one not replayed (exclusive).
            e.after = Some(if plan.inclusive {
                (*l, true)
            } else {
                (minus_gap(*l), false)
            });
        }
        RecoveryTarget::Name(_) => {
            if let Some(rp) = plan.stop.lsn {
                e.after = Some((rp, true));
                e.until = rp.checked_add(RESTORE_POINT_MAX);
            }
        }
        RecoveryTarget::Xid(x) => {
            let rec = xacts.and_then(|xs| xs.iter().find(|r| r.xid == *x));
            if let Some(r) = rec {
                if plan.inclusive {
                    e.after = Some((r.lsn, true));
                    e.until = r.end_lsn.checked_add(HEADER_GAP);
                } else {
                    e.after = Some((minus_gap(r.lsn), false));
                    e.until = Some(r.lsn);
                }
            }
        }
        RecoveryTarget::Time(_) if resolved_time(plan).is_some() => {
            if let Some((after, until)) = resolved_time(plan) {
                e.after = Some(after);
                e.until = Some(until);
            }
        }
        RecoveryTarget::Time(t) => {
            // Postgres stops before the first transaction end (in WAL
            // order) after the target; the plan's stop LSN is the latest
            // one of the stop segment, so at least an upper bound.
            let rec = xacts.and_then(|xs| {
                let mut v: Vec<&XactEnd> = xs.iter().collect();
                v.sort_by_key(|r| r.lsn);
                v.into_iter().find(|r| {
                    if plan.inclusive {
                        r.time > *t
                    } else {
                        r.time >= *t
                    }
                })
            });
            // Left to Postgres because the WAL index may not see every
            // transaction end on the way (`TimeStop::Time`): an unseen one
            // from `unseen_from` on can be where recovery rightly stops,
            // so the lower bound is the earlier of the two (none when
            // where is not known).
            let lower = |r: Lsn| match &plan.time_stop {
                Some(TimeStop::Time { unseen_from, .. }) => unseen_from.map(|u| u.min(r)),
                _ => Some(r),
            };
            match rec {
                Some(r) => {
                    e.after = lower(r.lsn).map(|l| (minus_gap(l), false));
                    e.until = Some(r.lsn);
                }
                None => e.until = plan.stop.lsn,
            }
        }
    }
    e
}

/// The bounds of a time target resolved to its exact record (the plan's
/// `TimeStop::Lsn`): stopped right after the last transaction end kept, replay
/// ends at that record's end; stopped right before the first one not kept,
/// at the end of the record before it (at most a page header earlier).
fn resolved_time(plan: &Plan) -> Option<((Lsn, bool), Lsn)> {
    match &plan.time_stop {
        Some(TimeStop::Lsn {
            inclusive: true,
            kept: Some(k),
            ..
        }) => Some(((k.lsn, true), k.end_lsn)),
        Some(TimeStop::Lsn {
            lsn,
            inclusive: false,
            ..
        }) => Some((
            (Lsn::new(lsn.as_u64().saturating_sub(HEADER_GAP)), false),
            *lsn,
        )),
        _ => None,
    }
}

fn segno_of(name: &str, size: WalSegmentSize) -> Option<SegNo> {
    match WalFileName::parse(name) {
        Ok(WalFileName::Segment(s)) => s.segno(size).ok(),
        _ => None,
    }
}

/// The name of segment `segno` on the timeline the plan replays it on.
fn planned_name(plan: &Plan, segno: SegNo, size: WalSegmentSize) -> String {
    let mut tli: TimelineId = plan.timeline;
    for step in &plan.steps {
        if let Step::ReplayWal {
            timeline,
            from_segment,
            to_segment,
            ..
        } = step
        {
            let (Some(from), Some(to)) = (segno_of(from_segment, size), segno_of(to_segment, size))
            else {
                continue;
            };
            if from <= segno && segno <= to {
                tli = *timeline;
            }
        }
    }
    SegmentName::new(tli, segno, size).to_string()
}

/// Checks `end` against `exp`; the error says where replay ended and what
/// the plan expected.
pub fn check(
    plan: &Plan,
    exp: &Expected,
    end: ReplayEnd,
    size: WalSegmentSize,
) -> Result<(), RecoverError> {
    let lsn = end.lsn();
    let exact = matches!(end, ReplayEnd::Exact(_));
    let elsewhere = |expected: String| RecoverError::EndedElsewhere {
        end: lsn,
        expected,
        plan: plan.stop.description.clone(),
    };
    if let Some(until) = exp.until {
        if lsn > until {
            return Err(elsewhere(format!("past {until}")));
        }
    }
    if !exact {
        // A lower bound proves nothing about reaching a point.
        return Ok(());
    }
    let short = match (exp.after, exp.through_segment) {
        (Some((a, true)), _) => lsn <= a,
        (Some((a, false)), _) => lsn < a,
        (None, Some(seg)) => lsn.prev_segno(size) < seg,
        (None, None) => false,
    };
    if !short {
        return Ok(());
    }
    if plan.target == RecoveryTarget::Latest {
        // The first segment not replayed in full: the one after the
        // segment holding the end, at most the last planned one.
        let mut missing = lsn.prev_segno(size).next();
        if let Some(last) = segno_of(&plan.stop.segment, size) {
            missing = missing.min(last);
        }
        return Err(RecoverError::EndedShort {
            end: lsn,
            missing: planned_name(plan, missing, size),
            through: plan.stop.description.clone(),
        });
    }
    Err(elsewhere(match exp.after {
        Some((a, true)) => format!("not after {a}"),
        Some((a, false)) => format!("before {a}"),
        None => "short of the planned stop".to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::wal::XactKind;
    use crate::plan::{BackupChoice, StopPoint, TimelineChoice};
    use chrono::{DateTime, Utc};

    const MB: u64 = 1 << 20;

    fn size() -> WalSegmentSize {
        WalSegmentSize::new(MB).unwrap()
    }

    fn lsn(v: u64) -> Lsn {
        Lsn::new(v)
    }

    fn time(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    pub(super) fn plan(
        target: RecoveryTarget,
        inclusive: bool,
        stop_segment: &str,
        stop: Option<Lsn>,
    ) -> Plan {
        let tli = TimelineId::new(1).unwrap();
        Plan {
            target,
            inclusive,
            timeline_choice: TimelineChoice::Latest,
            from: Default::default(),
            timeline: tli,
            timeline_reason: String::new(),
            backup: BackupChoice {
                id: "b".into(),
                start: Default::default(),
                chain: vec!["b".into()],
                timeline: tli,
                start_lsn: lsn(2 * MB + 40),
                stop_lsn: lsn(2 * MB + 400),
                stop_time: time("2026-01-01T00:00:00Z"),
            },
            steps: vec![Step::ReplayWal {
                timeline: tli,
                from_segment: "000000010000000000000002".into(),
                to_segment: stop_segment.into(),
                segments: 1,
                bytes: 0,
                stored_bytes: 0,
                estimated_seconds: 0.0,
            }],
            stop: StopPoint {
                segment: stop_segment.into(),
                description: "the plan's stop".into(),
                lsn: stop,
                time: None,
                xid: None,
            },
            total_bytes: 0,
            estimated_seconds: 0.0,
            evidence: Vec::new(),
            alternatives: Vec::new(),
            cost_model: Default::default(),
            install: None,
            damaged: Vec::new(),
            time_stop: None,
        }
    }

    fn run(p: &Plan, xacts: Option<&[XactEnd]>, end: ReplayEnd) -> Result<(), RecoverError> {
        check(p, &expected(p, xacts, size()), end, size())
    }

    #[test]
    fn latest_must_reach_the_last_record_of_the_last_segment() {
        let last = 7 * MB + 0x2000;
        let p = plan(
            RecoveryTarget::Latest,
            true,
            "000000010000000000000007",
            Some(lsn(last)),
        );
        assert!(run(&p, None, ReplayEnd::Exact(lsn(last))).is_ok());
        // Ended at the end of segment 4: segment 5 was never replayed.
        let err = run(&p, None, ReplayEnd::Exact(lsn(5 * MB))).unwrap_err();
        match err {
            RecoverError::EndedShort { missing, end, .. } => {
                assert_eq!(missing, "000000010000000000000005");
                assert_eq!(end, lsn(5 * MB));
            }
            other => panic!("{other}"),
        }
        // Ended inside segment 4 (its last record ran on into 5).
        let err = run(&p, None, ReplayEnd::Exact(lsn(5 * MB - 0x100))).unwrap_err();
        assert!(err.to_string().contains("segment 000000010000000000000005"));
        // Ended inside the last segment, before its last record.
        let err = run(&p, None, ReplayEnd::Exact(lsn(last - 8))).unwrap_err();
        assert!(
            err.to_string().contains("000000010000000000000007"),
            "{err}"
        );
    }

    #[test]
    fn latest_without_an_end_lsn_checks_the_segment() {
        let p = plan(
            RecoveryTarget::Latest,
            true,
            "000000010000000000000007",
            None,
        );
        assert!(run(&p, None, ReplayEnd::Exact(lsn(7 * MB + 24))).is_ok());
        // The switch record of segment 7 ends at segment 8's start.
        assert!(run(&p, None, ReplayEnd::Exact(lsn(8 * MB))).is_ok());
        assert!(run(&p, None, ReplayEnd::Exact(lsn(7 * MB))).is_err());
    }

    #[test]
    fn the_missing_segment_is_named_on_its_planned_timeline() {
        let mut p = plan(
            RecoveryTarget::Latest,
            true,
            "000000020000000000000007",
            Some(lsn(7 * MB + 100)),
        );
        p.steps.push(Step::ReplayWal {
            timeline: TimelineId::new(2).unwrap(),
            from_segment: "000000020000000000000005".into(),
            to_segment: "000000020000000000000007".into(),
            segments: 3,
            bytes: 0,
            stored_bytes: 0,
            estimated_seconds: 0.0,
        });
        if let Step::ReplayWal { to_segment, .. } = &mut p.steps[0] {
            *to_segment = "000000010000000000000004".into();
        }
        let err = run(&p, None, ReplayEnd::Exact(lsn(4 * MB + 10))).unwrap_err();
        assert!(!err.to_string().contains("000000010000000000000005"));
        assert!(
            err.to_string().contains("000000020000000000000005"),
            "{err}"
        );
        let err = run(&p, None, ReplayEnd::Exact(lsn(3 * MB + 10))).unwrap_err();
        assert!(
            err.to_string().contains("000000010000000000000004"),
            "{err}"
        );
    }

    #[test]
    fn lsn_targets() {
        let l = 3 * MB + 0x500;
        let seg = "000000010000000000000003";
        let incl = plan(RecoveryTarget::Lsn(lsn(l)), true, seg, Some(lsn(l)));
        assert!(run(&incl, None, ReplayEnd::Exact(lsn(l + 0x48))).is_ok());
        assert!(run(&incl, None, ReplayEnd::Exact(lsn(l))).is_err());
        assert!(run(&incl, None, ReplayEnd::Exact(lsn(l - 0x100))).is_err());
        // A lower bound cannot prove the target was reached, nor refute it.
        assert!(run(&incl, None, ReplayEnd::AtLeast(lsn(l - 0x100))).is_ok());
        let excl = plan(RecoveryTarget::Lsn(lsn(l)), false, seg, Some(lsn(l)));
        assert!(run(&excl, None, ReplayEnd::Exact(lsn(l))).is_ok());
        // The record before the target ended at a page end.
        assert!(run(&excl, None, ReplayEnd::Exact(lsn(l - 24))).is_ok());
        assert!(run(&excl, None, ReplayEnd::Exact(lsn(l - 0x200))).is_err());
    }

    #[test]
    fn restore_points_are_reached_and_not_passed() {
        let rp = 3 * MB + 0x800;
        let p = plan(
            RecoveryTarget::Name("a".into()),
            true,
            "000000010000000000000003",
            Some(lsn(rp)),
        );
        assert!(run(&p, None, ReplayEnd::Exact(lsn(rp + 0x68))).is_ok());
        assert!(run(&p, None, ReplayEnd::Exact(lsn(rp))).is_err());
        let past = run(&p, None, ReplayEnd::Exact(lsn(rp + 0x4000))).unwrap_err();
        assert!(past.to_string().contains("past"), "{past}");
        assert!(run(&p, None, ReplayEnd::AtLeast(lsn(rp + 0x4000))).is_err());
        // Without the restore point's LSN nothing is known.
        let p = plan(
            RecoveryTarget::Name("a".into()),
            true,
            "000000010000000000000003",
            None,
        );
        assert!(run(&p, None, ReplayEnd::Exact(lsn(1))).is_ok());
    }

    fn xact(xid: u32, at: u64, len: u64, t: &str) -> XactEnd {
        XactEnd {
            lsn: lsn(at),
            end_lsn: lsn(at + len),
            kind: XactKind::Commit,
            xid,
            time: time(t),
        }
    }

    #[test]
    fn xid_targets_stop_at_their_transaction_end() {
        let seg = "000000010000000000000003";
        let xacts = [
            xact(740, 3 * MB + 0x100, 0x28, "2026-01-01T00:00:01Z"),
            xact(741, 3 * MB + 0x300, 0x28, "2026-01-01T00:00:02Z"),
        ];
        let incl = plan(
            RecoveryTarget::Xid(crate::plan::Xid::new(741)),
            true,
            seg,
            None,
        );
        assert!(run(&incl, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x328))).is_ok());
        assert!(run(&incl, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x300))).is_err());
        assert!(run(&incl, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x900))).is_err());
        let excl = plan(
            RecoveryTarget::Xid(crate::plan::Xid::new(741)),
            false,
            seg,
            None,
        );
        assert!(run(&excl, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x300))).is_ok());
        assert!(run(&excl, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x328))).is_err());
        // No transaction list: the plan does not know where, nothing checked.
        assert!(run(&incl, None, ReplayEnd::Exact(lsn(1))).is_ok());
    }

    #[test]
    fn time_targets_stop_before_the_first_later_transaction_end() {
        let seg = "000000010000000000000003";
        let xacts = [
            xact(741, 3 * MB + 0x300, 0x28, "2026-01-01T00:00:02Z"),
            xact(740, 3 * MB + 0x100, 0x28, "2026-01-01T00:00:01Z"),
            xact(742, 3 * MB + 0x500, 0x28, "2026-01-01T00:00:03Z"),
        ];
        let t = RecoveryTarget::Time(time("2026-01-01T00:00:01.5Z"));
        // Unrefined, the plan's stop LSN is the segment's latest end.
        let p = plan(t, true, seg, Some(lsn(3 * MB + 0x500)));
        assert!(run(&p, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x300))).is_ok());
        assert!(run(&p, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x328))).is_err());
        assert!(run(&p, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x128))).is_err());
        assert!(run(&p, None, ReplayEnd::Exact(lsn(3 * MB + 0x328))).is_ok());
        assert!(run(&p, None, ReplayEnd::Exact(lsn(3 * MB + 0x600))).is_err());
        // After a shutdown only "not past" can be checked.
        assert!(run(&p, Some(&xacts), ReplayEnd::AtLeast(lsn(3 * MB + 0x128))).is_ok());
        assert!(run(&p, Some(&xacts), ReplayEnd::AtLeast(lsn(3 * MB + 0x400))).is_err());
        // Left to Postgres past a boundary the index could not read: a
        // transaction end hidden there may stop recovery earlier (in the
        // previous segment, even), never later.
        let mut hidden = p.clone();
        hidden.time_stop = Some(TimeStop::Time {
            reason: "a record runs from segment 2 into the next".into(),
            unseen_from: Some(lsn(2 * MB + 0xFFFE0)),
        });
        assert!(run(&hidden, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x300))).is_ok());
        assert!(run(
            &hidden,
            Some(&xacts),
            ReplayEnd::Exact(lsn(2 * MB + 0xFFFE0))
        )
        .is_ok());
        assert!(run(&hidden, Some(&xacts), ReplayEnd::Exact(lsn(3 * MB + 0x328))).is_err());
        // Not earlier than where the unseen record could start.
        assert!(run(&hidden, Some(&xacts), ReplayEnd::Exact(lsn(2 * MB + 0x100))).is_err());
        assert!(run(&hidden, Some(&xacts), ReplayEnd::Exact(lsn(0))).is_err());
    }

    #[test]
    fn immediate_reaches_the_end_of_the_backup() {
        let p = plan(
            RecoveryTarget::Immediate,
            true,
            "000000010000000000000002",
            Some(lsn(2 * MB + 400)),
        );
        assert!(run(&p, None, ReplayEnd::Exact(lsn(2 * MB + 400))).is_ok());
        assert!(run(&p, None, ReplayEnd::Exact(lsn(2 * MB + 200))).is_err());
    }
}

#[cfg(test)]
mod resolved_time_tests {
    use super::*;
    use crate::pg::wal::XactKind;
    use crate::plan::XactRef;

    const MB: u64 = 1 << 20;

    fn xref(lsn: u64, xid: u32) -> XactRef {
        XactRef {
            kind: XactKind::Commit,
            xid,
            time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:01Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            lsn: Lsn::new(lsn),
            end_lsn: Lsn::new(lsn + 0x40),
            segment: "000000010000000000000003".into(),
        }
    }

    /// A time plan (stop segment 3) whose time stop is `stop`.
    fn with_stop(stop: TimeStop) -> Plan {
        let mut p = super::tests::plan(
            RecoveryTarget::Time(xref(0, 0).time),
            true,
            "000000010000000000000003",
            None,
        );
        p.time_stop = Some(stop);
        p
    }

    #[test]
    fn a_resolved_time_is_checked_at_its_record() {
        let size = WalSegmentSize::new(MB).unwrap();
        let k = 3 * MB + 0x1000;
        // Right after the last kept record: replay ends at its end exactly.
        let after = with_stop(TimeStop::Lsn {
            lsn: Lsn::new(k),
            inclusive: true,
            kept: Some(xref(k, 7)),
            stops_before: None,
        });
        let e = expected(&after, None, size);
        assert_eq!(e.after, Some((Lsn::new(k), true)));
        assert_eq!(e.until, Some(Lsn::new(k + 0x40)));
        assert!(check(&after, &e, ReplayEnd::Exact(Lsn::new(k + 0x40)), size).is_ok());
        // One record short, or one record past: refused.
        assert!(check(&after, &e, ReplayEnd::Exact(Lsn::new(k)), size).is_err());
        assert!(check(&after, &e, ReplayEnd::Exact(Lsn::new(k + 0x80)), size).is_err());
        // Right before the first record not kept.
        let before = with_stop(TimeStop::Lsn {
            lsn: Lsn::new(k),
            inclusive: false,
            kept: None,
            stops_before: Some(xref(k, 8)),
        });
        let e = expected(&before, None, size);
        assert!(check(&before, &e, ReplayEnd::Exact(Lsn::new(k)), size).is_ok());
        assert!(check(&before, &e, ReplayEnd::Exact(Lsn::new(k + 0x40)), size).is_err());
        assert!(check(&before, &e, ReplayEnd::Exact(Lsn::new(k - 0x100)), size).is_err());
    }
}
