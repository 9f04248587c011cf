//! A time target: recovery stops before the first transaction that ended
//! after the time (`--exclusive`: at or after it), which lies in the first
//! segment (from a backup that finished before the time) whose latest
//! transaction end is after it. With no such segment, a time at the last
//! archived transaction end is still reached (resolved to that record's
//! LSN: `resolve`); a later one is refused, since WAL not yet archived may
//! hold transactions before it.
//!
//! Besides the stop segment, the locator names the segments whose
//! transaction lists pin the exact record (`TimeStop::Pending`).

use chrono::{DateTime, Utc};

use super::{Located, StartBy};
use crate::catalog::WalEntry;
use crate::pg::wal::XactEnd;
use crate::pg::{Lsn, SegNo};
use crate::plan::resolve::TimeStop;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, StopPoint};

pub(in crate::plan) fn locate(
    t: DateTime<Utc>,
    inclusive: bool,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<(Located, TimeStop), PlanError> {
    let size = line.size;
    if backups.all.iter().all(|(_, b)| b.stop_time >= t) {
        let e = backups
            .all
            .iter()
            .min_by_key(|(_, b)| b.stop_time)
            .map(|(_, b)| *b)
            .unwrap_or(backups.earliest);
        return Err(PlanError::BeforeEarliest {
            target: t,
            earliest: e.stop_time,
            backup_id: e.id.clone(),
        });
    }
    let starts: Vec<SegNo> = backups
        .all
        .iter()
        .filter(|(_, b)| b.stop_time < t)
        .map(|(_, b)| b.start_lsn.segno(size))
        .collect();
    let first = starts
        .iter()
        .copied()
        .min()
        .unwrap_or(backups.first_start());
    // Postgres' test (recoveryStopsBefore): after the time, or at or
    // after it when not inclusive.
    let past = |m: DateTime<Utc>| if inclusive { m > t } else { m >= t };
    let after = |_: SegNo, r: &WalEntry| {
        r.summary
            .as_ref()
            .and_then(|x| x.max_xact_time())
            .is_some_and(past)
    };
    match line.walk_any(&starts, after) {
        Walk::Found(s, rec) => {
            let later = rec.summary.as_ref().and_then(|x| x.max_xact.clone());
            let kept_segment = s
                .get()
                .checked_sub(1)
                .and_then(|p| last_with_xacts(line, first, SegNo::new(p)))
                .map(|(_, r)| r.name.clone());
            Ok((
                Located {
                    segno: s,
                    stop: stop_at(
                        &rec.name,
                        later.as_ref(),
                        "holds the end of transaction {xid} at {time}, after the target: recovery stops there at the latest",
                    ),
                    start_by: StartBy::FinishedBefore(t),
                },
                match s.get().checked_sub(1).and_then(|p| hidden_end(line, first, SegNo::new(p))) {
                    // Postgres finds the record itself.
                    Some((reason, unseen_from)) => TimeStop::Time {
                        reason,
                        unseen_from: Some(unseen_from),
                    },
                    None => TimeStop::Pending {
                        stop_segment: rec.name.clone(),
                        kept_segment,
                        unless_resolved: None,
                    },
                },
            ))
        }
        Walk::Gap(g) => Err(PlanError::MissingSegment {
            segment: line.expected_name(g),
            backup_id: backups
                .newest_where(|b| b.stop_time < t)
                .unwrap_or(backups.earliest)
                .id
                .clone(),
            last_restorable: line.latest_time(first, g).map(|(l, _)| l.min(t)),
        }),
        Walk::End(last) => {
            let latest = last.and_then(|l| line.latest_time(first, l));
            let refusal = PlanError::AfterLatest {
                target: t,
                latest: latest.as_ref().map(|(l, _)| *l),
                latest_segment: latest.as_ref().map(|(_, n)| n.clone()),
            };
            // The archive reaches the time only if it shows a transaction
            // end at it (inclusive: none is after it, or the walk would
            // have stopped); the last one archived is then kept.
            let at_target = latest.as_ref().is_some_and(|(l, _)| *l >= t);
            let end = last.and_then(|l| last_with_xacts(line, first, l));
            // Keeping the last archived end needs every end up to the end
            // of the archive seen: one hidden across a boundary, or across
            // the last segment's end into WAL not archived yet, may be
            // later in WAL order and at or before the time.
            let hidden = last.and_then(|l| hidden_end(line, first, l));
            match end {
                Some(_) if at_target && hidden.is_some() => Err(refusal),
                Some((s, rec)) if at_target => {
                    let x = rec.summary.as_ref().and_then(|x| x.max_xact.clone());
                    Ok((
                        Located {
                            segno: s,
                            stop: stop_at(
                                &rec.name,
                                x.as_ref(),
                                "holds the last archived transaction end, at or before the target (the latest, of transaction {xid} at {time}, is at it): recovery stops right after the last one",
                            ),
                            start_by: StartBy::FinishedBefore(t),
                        },
                        TimeStop::Pending {
                            stop_segment: rec.name.clone(),
                            kept_segment: None,
                            unless_resolved: Some(refusal),
                        },
                    ))
                }
                _ => Err(refusal),
            }
        }
    }
}

/// The stop point at transaction end `x` of segment `name`, described as
/// "segment <name> <what>" with `{xid}` and `{time}` filled in from `x`.
fn stop_at(name: &str, x: Option<&XactEnd>, what: &str) -> StopPoint {
    let what = what
        .replace("{xid}", &x.map(|x| x.xid).unwrap_or_default().to_string())
        .replace("{time}", &x.map(|x| x.time.to_string()).unwrap_or_default());
    StopPoint {
        segment: name.to_string(),
        description: format!("segment {name} {what}"),
        lsn: x.map(|x| x.lsn),
        time: x.map(|x| x.time),
        xid: x.map(|x| x.xid),
    }
}

/// Why the index cannot pin the exact record a time stops at: a segment
/// in `first..=upto` (from the earliest backup's start to the last one
/// before the stop record's) may hide a transaction end
/// (`Timeline::hides_xact_end`: a record running into the next segment
/// that the next one did not read whole, or no summary at all), and that
/// end, not one the index shows, could be where Postgres stops. None when
/// every segment and boundary on the way is seen.
fn hidden_end(line: &Timeline<'_>, first: SegNo, upto: SegNo) -> Option<(String, Lsn)> {
    if upto < first {
        return None;
    }
    let hiding = line
        .archived(first, upto)
        .find(|r| line.hides_xact_end(r))?;
    let name = hiding.name();
    let start = hiding.segno.start_lsn(line.size);
    Some(if hiding.has_summary() {
        (
            format!(
                "a record runs from segment {name} into the next, and the WAL index could not read it whole (the next segment was not archived after it, the record could not be joined, or it was archived by an older pitr): a transaction end there could be where recovery stops, so recovery_target_time is written and Postgres finds the record"
            ),
            // The crossing record starts where the last whole one ends.
            hiding.end_lsn().unwrap_or(start),
        )
    } else {
        (
            format!(
                "segment {name} has no WAL summary (its scan failed): a transaction end in it could be where recovery stops, so recovery_target_time is written and Postgres finds the record"
            ),
            start,
        )
    })
}

/// The last segment at or before `from`, and not before `first`, that
/// ends a transaction (a missing segment ends the search).
fn last_with_xacts(line: &Timeline<'_>, first: SegNo, from: SegNo) -> Option<(SegNo, WalEntry)> {
    let mut s = from;
    while s >= first {
        let rec = line.seg(s)?;
        if rec.max_xact_lsn().is_some() {
            return Some((s, rec.entry()));
        }
        s = SegNo::new(s.get().checked_sub(1)?);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::locate::on_line;
    use crate::plan::testkit::{at, lsn, seg_name, Kit};

    /// Segments 1..=6 commit at 10 s apart (segment s at 10·s s); b1
    /// finished at 6 s, b2 (from segment 4) at 36 s.
    fn kit() -> Kit {
        Kit::new()
            .segments(1, 1..=6)
            .backup("b1", 1, 1, 1)
            .backup("b2", 1, 4, 1)
    }

    fn at_time(c: &crate::catalog::Catalog, secs: i64) -> Result<Located, PlanError> {
        on_line(c, 1, |line, backups| {
            locate(at(secs), true, line, backups).map(|(l, _)| l)
        })
    }

    #[test]
    fn stops_in_the_first_segment_that_ends_a_transaction_after_the_time() {
        let c = kit().build();
        let l = at_time(&c, 35).unwrap();
        assert_eq!(l.segno, SegNo::new(4));
        assert_eq!(l.stop.segment, seg_name(1, 4));
        assert_eq!(l.stop.xid, Some(1004));
        assert_eq!(l.stop.time, Some(at(40)));
        assert_eq!(l.stop.lsn, Some(lsn(4, 0x1000)));
        assert_eq!(l.start_by, StartBy::FinishedBefore(at(35)));
        // A commit exactly at the target is kept: the next one stops it.
        assert_eq!(at_time(&c, 30).unwrap().segno, SegNo::new(4));
        assert_eq!(at_time(&c, 45).unwrap().segno, SegNo::new(5));
    }

    #[test]
    fn segments_without_transaction_ends_do_not_stop_it() {
        let c = kit()
            .edit(1, 4, |r| {
                if let Some(s) = r.summary.as_mut() {
                    s.max_xact = None;
                }
            })
            .build();
        assert_eq!(at_time(&c, 35).unwrap().segno, SegNo::new(5));
    }

    #[test]
    fn before_every_backup_finished() {
        let c = kit().build();
        assert_eq!(
            at_time(&c, 6).unwrap_err(),
            PlanError::BeforeEarliest {
                target: at(6),
                earliest: at(6),
                backup_id: "b1".into(),
            }
        );
    }

    #[test]
    fn after_the_last_archived_transaction() {
        let c = kit().build();
        assert_eq!(
            at_time(&c, 61).unwrap_err(),
            PlanError::AfterLatest {
                target: at(61),
                latest: Some(at(60)),
                latest_segment: Some(seg_name(1, 6)),
            }
        );
        // At it: its segment, to be resolved to the record.
        let l = at_time(&c, 60).unwrap();
        assert_eq!(l.segno, SegNo::new(6));
        // The last segment that ends a transaction, not the last one.
        let c = kit()
            .edit(1, 6, |r| {
                if let Some(s) = r.summary.as_mut() {
                    s.max_xact = None;
                }
            })
            .build();
        assert_eq!(at_time(&c, 50).unwrap().segno, SegNo::new(5));
    }

    /// A record that runs from one segment into the next is in neither
    /// one's index (the scanner indexes whole records): a transaction end
    /// hidden there could be where Postgres stops, so a boundary that may
    /// hide one, before the stop, leaves the time to Postgres, and one
    /// anywhere up to the end of the archive refuses the last archived end.
    #[test]
    fn a_record_across_a_segment_end_leaves_the_time_to_postgres() {
        let time_stop = |c: &crate::catalog::Catalog, secs: i64| {
            on_line(c, 1, |line, backups| {
                locate(at(secs), true, line, backups).map(|(_, t)| t)
            })
        };
        let seen = kit().build();
        assert!(matches!(
            time_stop(&seen, 35).unwrap(),
            TimeStop::Pending { .. }
        ));
        let across = |s: u64| {
            kit()
                .edit(1, s, |r| {
                    if let Some(x) = r.summary.as_mut() {
                        x.tail_incomplete = true;
                    }
                })
                .build()
        };
        // Boundary 3|4 lies before the stop record in segment 4.
        match time_stop(&across(3), 35).unwrap() {
            TimeStop::Time {
                reason,
                unseen_from,
            } => {
                assert!(reason.contains(&seg_name(1, 3)), "{reason}");
                let end = lsn(4, 0).as_u64() - 8; // the kit's segments end 8 bytes short
                assert_eq!(
                    unseen_from,
                    Some(Lsn::new(end)),
                    "where the crossing record starts"
                );
            }
            other => panic!("{other:?}"),
        }
        // A boundary whose last record the scanner saw is no transaction
        // end hides none.
        let seen_across = kit()
            .edit(1, 3, |r| {
                if let Some(x) = r.summary.as_mut() {
                    x.tail_incomplete = true;
                    x.tail_seen = true;
                }
            })
            .build();
        assert!(matches!(
            time_stop(&seen_across, 35).unwrap(),
            TimeStop::Pending { .. }
        ));
        // Nor one whose record the next segment read whole (the push of
        // segment 4 joined it with segment 3's beginning).
        let read_whole = |s: u64| {
            kit()
                .edit(1, s, |r| {
                    if let Some(x) = r.summary.as_mut() {
                        x.tail_incomplete = true;
                    }
                })
                .edit(1, s + 1, |r| {
                    if let Some(x) = r.summary.as_mut() {
                        x.head_read = true;
                    }
                })
                .build()
        };
        assert!(matches!(
            time_stop(&read_whole(3), 35).unwrap(),
            TimeStop::Pending { .. }
        ));
        // A read head is no help to a segment without a summary.
        let unscanned = kit()
            .edit(1, 3, |r| r.summary = None)
            .edit(1, 4, |r| {
                if let Some(x) = r.summary.as_mut() {
                    x.head_read = true;
                }
            })
            .build();
        match time_stop(&unscanned, 35).unwrap() {
            TimeStop::Time {
                reason,
                unseen_from,
            } => {
                assert!(reason.contains("no WAL summary"), "{reason}");
                assert_eq!(unseen_from, Some(lsn(3, 0)), "the segment's start");
            }
            other => panic!("{other:?}"),
        }
        // Boundary 4|5 lies after it: the stop record is still pinned.
        assert!(matches!(
            time_stop(&across(4), 35).unwrap(),
            TimeStop::Pending { .. }
        ));
        // The last archived end (60 s, segment 6) is kept only when no end
        // can hide after it, including past the last segment's end.
        assert!(time_stop(&seen, 60).is_ok());
        assert!(time_stop(&read_whole(5), 60).is_ok());
        for s in [5, 6] {
            assert!(
                matches!(
                    time_stop(&across(s), 60),
                    Err(PlanError::AfterLatest { .. })
                ),
                "segment {s}"
            );
        }
    }

    #[test]
    fn a_gap_names_the_segment_and_the_last_restorable_time() {
        // b2 finished after the target, so only b1's replay counts.
        let c = kit().without(1, 3).build();
        assert_eq!(
            at_time(&c, 35).unwrap_err(),
            PlanError::MissingSegment {
                segment: seg_name(1, 3),
                backup_id: "b1".into(),
                last_restorable: Some(at(20)),
            }
        );
    }

    #[test]
    fn a_gap_before_a_newer_backup_does_not_matter() {
        let c = kit().without(1, 2).build();
        let l = at_time(&c, 55).unwrap();
        assert_eq!(l.segno, SegNo::new(6));
    }
}
