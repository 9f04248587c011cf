//! A time target resolved to the exact WAL record, from the transaction
//! lists of the segments the locator named (read by the caller: plan does
//! no I/O). Postgres' rule (xlogrecovery.c: recoveryStopsBefore with
//! RECOVERY_TARGET_TIME, getRecordTimestamp): in WAL order, recovery stops
//! *before* the first transaction end (commit, abort, and their prepared
//! forms) whose xact_time is after the target (`--exclusive`: at or
//! after); there is no "stop after" for a time. So:
//!
//! - When that record S is archived, the plan writes
//!   `recovery_target_lsn = S.start` with `recovery_target_inclusive =
//!   off` (recoveryStopsBefore: stop before the first record whose start
//!   is at or past the LSN): replay ends exactly where Postgres'
//!   `recovery_target_time` ends it, deterministically.
//! - When no transaction end after the target is archived, but the last
//!   archived one is at the target (Postgres alone cannot stop there: it
//!   needs a later one to stop before), the plan writes
//!   `recovery_target_lsn = K.start` with `recovery_target_inclusive = on`
//!   for the last archived transaction end K (recoveryStopsAfter: stop
//!   after the first record whose start is at or past the LSN): replay
//!   ends at K's end, and only WAL through K's segment is needed.
//! - Without the lists (segments archived by an older pitr), the plan
//!   keeps `recovery_target_time` and says why.
//!
//! The last transaction end kept (K) is named either way: the record
//! before S in WAL order, in S's segment or the previous segment that
//! ends transactions.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Plan, PlanError, RecoveryTarget, Step};
use crate::pg::wal::{XactEnd, XactKind};
use crate::pg::Lsn;

/// How a time target's stop is written for Postgres.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum TimeStop {
    /// `recovery_target_lsn`: the exact record is known.
    Lsn {
        /// `recovery_target_lsn`.
        lsn: Lsn,
        /// `recovery_target_inclusive`: on stops right after the record
        /// starting at `lsn` (the last one kept), off right before it (the
        /// first one not replayed).
        inclusive: bool,
        /// The last transaction end replayed, when known.
        kept: Option<XactRef>,
        /// The first transaction end not replayed (the one Postgres'
        /// `recovery_target_time` stops before); none when the target is
        /// at the last archived one.
        stops_before: Option<XactRef>,
    },
    /// `recovery_target_time`, as given: the exact record is not known.
    Time {
        reason: String,
        /// Where the first transaction end the WAL index may not see could
        /// start (a record running into the next segment unread, or a
        /// segment without summary): recovery may rightly stop there, or
        /// anywhere later up to the stop the index shows. None when no
        /// such place is known (no transaction list).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unseen_from: Option<Lsn>,
    },
    /// Not resolved yet: the transaction lists of these segments decide
    /// (`plan::plan` alone; the commands always resolve).
    Pending {
        /// The segment holding the stop (or, at the end of the archive,
        /// the last transaction end).
        stop_segment: String,
        /// The previous segment that ends transactions (for naming the
        /// last one kept when the stop is the first of its segment).
        kept_segment: Option<String>,
        /// Set when the target is at the last archived transaction end:
        /// the refusal if its segment has no transaction list.
        #[serde(skip)]
        unless_resolved: Option<PlanError>,
    },
}

/// One transaction-end record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XactRef {
    pub kind: XactKind,
    pub xid: u32,
    pub time: DateTime<Utc>,
    /// Start of the record.
    pub lsn: Lsn,
    /// End of the record (where replay ends when it is the last one).
    pub end_lsn: Lsn,
    pub segment: String,
}

impl XactRef {
    fn of(x: &XactEnd, segment: &str) -> XactRef {
        XactRef {
            kind: x.kind,
            xid: x.xid,
            time: x.time,
            lsn: x.lsn,
            end_lsn: x.end_lsn,
            segment: segment.to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "the {} of xid {} at {} (LSN {})",
            kind_name(self.kind),
            self.xid,
            self.time,
            self.lsn
        )
    }
}

pub(super) fn kind_name(k: XactKind) -> &'static str {
    match k {
        XactKind::Commit => "commit",
        XactKind::Abort => "abort",
        XactKind::CommitPrepared => "commit of prepared transaction",
        XactKind::AbortPrepared => "abort of prepared transaction",
    }
}

/// A segment's transaction list, as the caller read it (`None`: the
/// repository has none for it).
pub type XactList<'a> = (&'a str, Option<&'a [XactEnd]>);

impl Plan {
    /// The segments whose transaction lists `resolve_time` needs (empty
    /// unless this is an unresolved time target).
    pub fn time_lists(&self) -> Vec<String> {
        match &self.time_stop {
            Some(TimeStop::Pending {
                stop_segment,
                kept_segment,
                ..
            }) => std::iter::once(stop_segment.clone())
                .chain(kept_segment.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Resolves a time target to the exact record from the lists of
    /// `time_lists()`. Refuses only a target at the last archived
    /// transaction end whose segment has no list (Postgres cannot reach
    /// it by time); without lists otherwise it keeps the time.
    pub fn resolve_time(&mut self, lists: &[XactList<'_>]) -> Result<(), PlanError> {
        let RecoveryTarget::Time(t) = self.target else {
            return Ok(());
        };
        let Some(TimeStop::Pending {
            stop_segment,
            kept_segment,
            unless_resolved,
        }) = self.time_stop.clone()
        else {
            return Ok(());
        };
        let list = |name: &str| -> Option<Vec<&XactEnd>> {
            let (_, l) = lists.iter().find(|(n, _)| *n == name)?;
            let mut v: Vec<&XactEnd> = (*l)?.iter().collect();
            v.sort_by_key(|x| x.lsn);
            Some(v)
        };
        let Some(ordered) = list(&stop_segment) else {
            if let Some(e) = unless_resolved {
                return Err(e);
            }
            self.time_stop = Some(TimeStop::Time {
                unseen_from: None,
                reason: format!(
                    "segment {stop_segment} has no transaction list (archived by an older pitr): recovery_target_time is written, and Postgres stops before the first transaction end {} the target in that segment",
                    if self.inclusive { "after" } else { "at or after" }
                ),
            });
            return Ok(());
        };
        let inclusive = self.inclusive;
        let after = |x: &XactEnd| if inclusive { x.time > t } else { x.time >= t };
        let old = self.stop.description.clone();
        let described = if let Some(refusal) = unless_resolved {
            // At the end of the archive: no transaction end after the
            // target (the index says so); keep through the last one.
            let last = match ordered.last() {
                Some(k) if !ordered.iter().any(|x| after(x)) => XactRef::of(k, &stop_segment),
                _ => return Err(refusal),
            };
            self.stop.lsn = Some(last.lsn);
            self.stop.time = Some(last.time);
            self.stop.xid = Some(last.xid);
            let d = format!(
                "recovery stops right after {} in segment {}, the last transaction end archived and the last one kept (recovery_target_lsn = {}, inclusive: no later transaction end is archived for recovery_target_time to stop before)",
                last.describe(),
                stop_segment,
                last.lsn
            );
            self.time_stop = Some(TimeStop::Lsn {
                lsn: last.lsn,
                inclusive: true,
                kept: Some(last),
                stops_before: None,
            });
            d
        } else {
            let Some(pos) = ordered.iter().position(|x| after(x)) else {
                self.time_stop = Some(TimeStop::Time {
                    unseen_from: None,
                    reason: format!(
                        "the transaction list of segment {stop_segment} holds no transaction end after the target, though the WAL index says it does: recovery_target_time is written"
                    ),
                });
                return Ok(());
            };
            let stop = XactRef::of(ordered[pos], &stop_segment);
            let kept = match pos.checked_sub(1) {
                Some(i) => Some(XactRef::of(ordered[i], &stop_segment)),
                None => kept_segment
                    .as_deref()
                    .and_then(|k| list(k).and_then(|v| v.last().map(|x| XactRef::of(x, k)))),
            };
            self.stop.lsn = Some(stop.lsn);
            self.stop.time = Some(stop.time);
            self.stop.xid = Some(stop.xid);
            let d = format!(
                "recovery stops before {} in segment {}, the first transaction end {} the target{} (recovery_target_lsn = {}, exclusive)",
                stop.describe(),
                stop_segment,
                if inclusive { "after" } else { "at or after" },
                match &kept {
                    Some(k) => format!("; the last one kept is {}", k.describe()),
                    None => "; the last one kept is in an earlier segment".into(),
                },
                stop.lsn
            );
            self.time_stop = Some(TimeStop::Lsn {
                lsn: stop.lsn,
                inclusive: false,
                kept,
                stops_before: Some(stop),
            });
            d
        };
        self.stop.description = described.clone();
        for e in self.evidence.iter_mut() {
            if *e == old {
                *e = described.clone();
            }
        }
        if let (
            Some(Step::StopAtTarget { description, .. }),
            Some(TimeStop::Lsn { lsn, inclusive, .. }),
        ) = (self.steps.last_mut(), &self.time_stop)
        {
            *description = format!(
                "stop {} the record at {lsn} (the time resolved to an LSN)",
                if *inclusive {
                    "right after"
                } else {
                    "right before"
                }
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::cost::CostModel;
    use crate::plan::testkit::{at, lsn, seg_name, Kit};
    use crate::plan::TargetSpec;

    /// Segments 1..=6 of timeline 1 commit at 10 s a segment (segment s
    /// at 10·s s, xid 1000 + s, LSN s/0x1000); b1 finished at 6 s.
    fn planned(secs: i64, inclusive: bool) -> Result<Plan, PlanError> {
        let c = Kit::new().segments(1, 1..=6).backup("b1", 1, 1, 1).build();
        let spec = TargetSpec {
            inclusive,
            ..TargetSpec::new(RecoveryTarget::Time(at(secs)))
        };
        super::super::plan(&c, &spec, &CostModel::default())
    }

    fn x(seg: u64, off: u64, xid: u32, secs: i64) -> XactEnd {
        XactEnd {
            lsn: lsn(seg, off),
            end_lsn: lsn(seg, off + 0x40),
            kind: XactKind::Commit,
            xid,
            time: at(secs),
        }
    }

    fn resolved(p: &Plan) -> (Lsn, bool, Option<u32>, Option<u32>) {
        match &p.time_stop {
            Some(TimeStop::Lsn {
                lsn,
                inclusive,
                kept,
                stops_before,
            }) => (
                *lsn,
                *inclusive,
                kept.as_ref().map(|k| k.xid),
                stops_before.as_ref().map(|s| s.xid),
            ),
            other => panic!("not resolved: {other:?}"),
        }
    }

    #[test]
    fn stops_before_the_first_end_after_the_time_in_wal_order() {
        let mut p = planned(35, true).unwrap();
        assert_eq!(p.time_lists(), [seg_name(1, 4), seg_name(1, 3)]);
        // Commit times are not monotonic in WAL order: 2001 (36 s) comes
        // first, so Postgres stops before it although 2002 (34 s) is
        // earlier, and 2002 is not kept.
        let s4 = [
            x(4, 0x2000, 2002, 34),
            x(4, 0x800, 2001, 36),
            x(4, 0x1000, 1004, 40),
        ];
        let s3 = [x(3, 0x1000, 1003, 30), x(3, 0x900, 3000, 29)];
        p.resolve_time(&[(&seg_name(1, 4), Some(&s4)), (&seg_name(1, 3), Some(&s3))])
            .unwrap();
        // The stop is the first of its segment: the last one kept is the
        // last (by LSN) of the previous segment.
        assert_eq!(resolved(&p), (lsn(4, 0x800), false, Some(1003), Some(2001)));
        assert_eq!(p.stop.lsn, Some(lsn(4, 0x800)));
        assert!(
            p.stop
                .description
                .contains("the last one kept is the commit of xid 1003"),
            "{}",
            p.stop.description
        );
        assert!(p.evidence.contains(&p.stop.description));
        // A second later: 2001 is kept, 1004 stops it.
        let mut p = planned(36, true).unwrap();
        p.resolve_time(&[(&seg_name(1, 4), Some(&s4))]).unwrap();
        assert_eq!(
            resolved(&p),
            (lsn(4, 0x1000), false, Some(2001), Some(1004))
        );
    }

    #[test]
    fn exclusive_stops_at_an_end_exactly_at_the_time() {
        // The commit at 30 s is in segment 3: that is the stop segment,
        // not segment 4 (whose latest end is the first after 30 s).
        let mut p = planned(30, false).unwrap();
        assert_eq!(p.stop.segment, seg_name(1, 3));
        let s3 = [x(3, 0x800, 3001, 29), x(3, 0x1000, 1003, 30)];
        p.resolve_time(&[(&seg_name(1, 3), Some(&s3))]).unwrap();
        assert_eq!(
            resolved(&p),
            (lsn(3, 0x1000), false, Some(3001), Some(1003))
        );
        // Inclusive, the commit at 30 s is kept.
        let p = planned(30, true).unwrap();
        assert_eq!(p.stop.segment, seg_name(1, 4));
    }

    #[test]
    fn without_lists_the_time_is_kept_and_the_plan_says_why() {
        let mut p = planned(35, true).unwrap();
        p.resolve_time(&[(&seg_name(1, 4), None)]).unwrap();
        match &p.time_stop {
            Some(TimeStop::Time { reason, .. }) => {
                assert!(reason.contains("no transaction list"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.stop.segment, seg_name(1, 4));
    }

    #[test]
    fn the_last_archived_commit_is_reached_by_its_lsn() {
        // At the newest commit: no later one to stop before.
        let mut p = planned(60, true).unwrap();
        assert_eq!(p.stop.segment, seg_name(1, 6));
        assert_eq!(p.time_lists(), [seg_name(1, 6)]);
        let refusal = PlanError::AfterLatest {
            target: at(60),
            latest: Some(at(60)),
            latest_segment: Some(seg_name(1, 6)),
        };
        // Without the list it is refused, as before.
        assert_eq!(
            p.clone().resolve_time(&[(&seg_name(1, 6), None)]),
            Err(refusal.clone())
        );
        // With it: right after the last end in WAL order (its time need
        // not be the latest).
        let s6 = [x(6, 0x1000, 1006, 60), x(6, 0x3000, 1007, 58)];
        p.resolve_time(&[(&seg_name(1, 6), Some(&s6))]).unwrap();
        assert_eq!(resolved(&p), (lsn(6, 0x3000), true, Some(1007), None));
        assert_eq!(p.stop.xid, Some(1007));
        // Exclusive, the commit at 60 s is the stop.
        let p = planned(60, false).unwrap();
        assert!(matches!(
            p.time_stop,
            Some(TimeStop::Pending {
                unless_resolved: None,
                ..
            })
        ));
        // After the newest commit: WAL not yet archived may hold
        // transactions before the time.
        assert!(matches!(
            planned(61, true),
            Err(PlanError::AfterLatest { .. })
        ));
    }

    #[test]
    fn a_list_that_disagrees_with_the_index_keeps_the_time() {
        let mut p = planned(35, true).unwrap();
        let s4 = [x(4, 0x1000, 1004, 20)];
        p.resolve_time(&[(&seg_name(1, 4), Some(&s4))]).unwrap();
        assert!(matches!(p.time_stop, Some(TimeStop::Time { .. })));
    }
}
