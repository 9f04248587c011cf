//! Where replay runs, as far as a plan knows it: from the chosen backup's
//! redo point (`start_lsn`, backup_label's START WAL LOCATION, where
//! Postgres begins to replay) to the position recovery is expected to
//! reach. Progress reports replayed bytes against this span; nothing
//! decides anything by it (`recover::verify` checks where replay really
//! ended, with its own, stricter bounds).
//!
//! The end, per target kind: the resolved stop record of a time target
//! (the end of the last transaction end kept when the target is at the
//! last archived one), the stop record of an xid or a restore point, the
//! LSN itself, the end of the last planned segment's last record for
//! `--latest`, the backup's end (its consistency point) for
//! `--immediate`. Where the catalog does not know the record, the end of
//! the stop segment: recovery needs no WAL after it, so it is an upper
//! bound.

use serde::{Deserialize, Serialize};

use super::{Plan, RecoveryTarget, TimeStop};
use crate::pg::{Lsn, WalFileName, WalSegmentSize};

/// The LSN range replay is expected to cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySpan {
    /// Where replay starts: the backup's redo point.
    pub start: Lsn,
    /// Where recovery is expected to end; `None` when the plan cannot
    /// say (a stop segment whose name does not parse).
    pub end: Option<Lsn>,
}

impl ReplaySpan {
    /// Bytes of WAL from start to end (0 when the end is before the start).
    pub fn bytes(&self) -> Option<u64> {
        self.end.map(|e| e.checked_sub(self.start).unwrap_or(0))
    }

    /// Bytes replayed once replay reached `lsn`, at most the span.
    pub fn done(&self, lsn: Lsn) -> u64 {
        let done = lsn.checked_sub(self.start).unwrap_or(0);
        match self.bytes() {
            Some(total) => done.min(total),
            None => done,
        }
    }
}

impl Plan {
    /// Where replay starts and is expected to end (see the module).
    /// `size` is the repository's WAL segment size.
    pub fn replay_span(&self, size: WalSegmentSize) -> ReplaySpan {
        let start = self.backup.start_lsn;
        let segment_end = || match WalFileName::parse(&self.stop.segment) {
            Ok(WalFileName::Segment(s)) => s.segno(size).ok().map(|n| n.next().start_lsn(size)),
            _ => None,
        };
        let end = match &self.target {
            RecoveryTarget::Immediate => Some(self.backup.stop_lsn),
            RecoveryTarget::Lsn(l) => Some(*l),
            RecoveryTarget::Time(_) => match &self.time_stop {
                Some(TimeStop::Lsn {
                    inclusive: true,
                    kept: Some(k),
                    ..
                }) => Some(k.end_lsn),
                Some(TimeStop::Lsn { lsn, .. }) => Some(*lsn),
                // Left to Postgres (or not resolved yet): the latest
                // transaction end of the stop segment, which is after the
                // target, bounds it.
                _ => self.stop.lsn.or_else(segment_end),
            },
            RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) | RecoveryTarget::Latest => {
                self.stop.lsn.or_else(segment_end)
            }
        };
        ReplaySpan {
            start,
            end: end.map(|e| e.max(start)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::wal::XactKind;
    use crate::plan::cost::CostModel;
    use crate::plan::testkit::{at, lsn, size, xact_lists, Kit, SEG};
    use crate::plan::{plan_with, TargetSpec, XactRef};

    /// Timeline 1 archived in segments 1..=6, a backup started in segment
    /// 2 (redo 0x28 into it, consistent at 0x100), a restore point in
    /// segment 4.
    fn catalog() -> crate::catalog::Catalog {
        Kit::new()
            .segments(1, 1..=6)
            .restore_point(1, 4, "rp", 41)
            .backup("b", 1, 2, 10)
            .build()
    }

    fn span_of(target: RecoveryTarget) -> (Plan, ReplaySpan) {
        let c = catalog();
        let p = plan_with(
            &c,
            &TargetSpec::new(target),
            &CostModel::default(),
            &xact_lists(&c),
        )
        .unwrap();
        let s = p.replay_span(size());
        (p, s)
    }

    #[test]
    fn starts_at_the_backups_redo_point() {
        let (p, s) = span_of(RecoveryTarget::Latest);
        assert_eq!(s.start, p.backup.start_lsn);
        assert_eq!(s.start, lsn(2, 0x28));
    }

    #[test]
    fn ends_where_each_target_kind_stops() {
        // --latest: the last record of the last archived segment.
        let (_, s) = span_of(RecoveryTarget::Latest);
        assert_eq!(s.end, Some(Lsn::new(7 * SEG - 8)));
        // --immediate: the backup's consistency point.
        let (_, s) = span_of(RecoveryTarget::Immediate);
        assert_eq!(s.end, Some(lsn(2, 0x100)));
        // --lsn: the LSN.
        let (_, s) = span_of(RecoveryTarget::Lsn(lsn(5, 0x4000)));
        assert_eq!(s.end, Some(lsn(5, 0x4000)));
        // --name: the restore point.
        let (_, s) = span_of(RecoveryTarget::Name("rp".into()));
        assert_eq!(s.end, Some(lsn(4, 0x2000)));
        // --xid: its commit record (segment 5's commit).
        let (_, s) = span_of(RecoveryTarget::Xid(crate::plan::Xid::new(
            crate::plan::testkit::seg_xid(1, 5),
        )));
        assert_eq!(s.end, Some(lsn(5, 0x1000)));
        // A time between segment 4's and 5's commits, not resolved yet:
        // bounded by the stop segment's latest transaction end.
        let (p, s) = span_of(RecoveryTarget::Time(at(45)));
        assert!(matches!(p.time_stop, Some(TimeStop::Pending { .. })));
        assert_eq!(s.end, Some(lsn(5, 0x1000)));
        assert_eq!(
            s.bytes(),
            Some(lsn(5, 0x1000).as_u64() - lsn(2, 0x28).as_u64())
        );
    }

    #[test]
    fn a_resolved_time_ends_at_its_record() {
        let (mut p, _) = span_of(RecoveryTarget::Time(at(45)));
        let x = |seg: u64, xid: u32, secs: i64| XactRef {
            kind: XactKind::Commit,
            xid,
            time: at(secs),
            lsn: lsn(seg, 0x1000),
            end_lsn: lsn(seg, 0x1040),
            segment: String::new(),
        };
        // Stops right before the first transaction end after the target.
        p.time_stop = Some(TimeStop::Lsn {
            lsn: lsn(5, 0x1000),
            inclusive: false,
            kept: Some(x(4, 1004, 40)),
            stops_before: Some(x(5, 1005, 50)),
        });
        assert_eq!(p.replay_span(size()).end, Some(lsn(5, 0x1000)));
        // At the last archived transaction end: right after it, at its end.
        p.time_stop = Some(TimeStop::Lsn {
            lsn: lsn(6, 0x1000),
            inclusive: true,
            kept: Some(x(6, 1006, 60)),
            stops_before: None,
        });
        assert_eq!(p.replay_span(size()).end, Some(lsn(6, 0x1040)));
        // Left to Postgres, and no record known: the stop segment's end.
        p.time_stop = Some(TimeStop::Time {
            reason: "no list".into(),
            unseen_from: None,
        });
        p.stop.lsn = None;
        assert_eq!(p.replay_span(size()).end, Some(Lsn::new(6 * SEG)));
        // A stop segment that is not a segment name: unknown.
        p.stop.segment = "junk".into();
        assert_eq!(p.replay_span(size()).end, None);
    }

    #[test]
    fn done_is_bounded_by_the_span() {
        let s = ReplaySpan {
            start: Lsn::new(1000),
            end: Some(Lsn::new(3000)),
        };
        assert_eq!(s.bytes(), Some(2000));
        assert_eq!(s.done(Lsn::new(500)), 0);
        assert_eq!(s.done(Lsn::new(1500)), 500);
        assert_eq!(s.done(Lsn::new(9000)), 2000);
        let open = ReplaySpan {
            start: Lsn::new(1000),
            end: None,
        };
        assert_eq!(open.bytes(), None);
        assert_eq!(open.done(Lsn::new(9000)), 8000);
        // An end before the start (never planned so) is an empty span.
        let odd = ReplaySpan {
            start: Lsn::new(1000),
            end: Some(Lsn::new(10)),
        };
        assert_eq!(odd.bytes(), Some(0));
    }
}
