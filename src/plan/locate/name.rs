//! A restore point target: recovery stops right after the first restore
//! point of that name that replay meets on the timeline's history. A name
//! made more than once is met first where replay starts before the
//! earlier one: the plan names the first one after the newest backup
//! that reaches one, and admits only backups that start after the one
//! before it (xlogrecovery.c: recoveryStopsAfter checks every restore
//! point replayed).

use super::{gap, Located, StartBy};
use crate::catalog::WalEntry;
use crate::pg::wal::RestorePoint;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, RecoveryTarget, StopPoint};

pub(in crate::plan) fn locate(
    n: &str,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
    let point = |r: &WalEntry| -> Option<RestorePoint> {
        r.summary
            .as_ref()
            .and_then(|x| x.restore_points.iter().find(|p| p.name == n).cloned())
    };
    match line.walk_any(&backups.starts(), |_, r| point(r).is_some()) {
        Walk::Found(s, rec) => {
            let rp = point(&rec);
            // The same name earlier on this history, if any: the latest
            // such point before this one.
            let earlier = rp.as_ref().and_then(|p| {
                line.catalog()
                    .wal
                    .restore_points()
                    .filter(|(r, _)| line.seg(r.segno).is_some_and(|x| x.timeline == r.timeline))
                    .flat_map(|(_, points)| points.iter())
                    .filter(|q| q.name == n && q.lsn < p.lsn)
                    .map(|q| q.lsn)
                    .max()
            });
            Ok(Located {
                segno: s,
                stop: StopPoint {
                    segment: rec.name.clone(),
                    description: format!(
                        "restore point {n:?}{} in segment {}: recovery stops right after it{}",
                        rp.as_ref()
                            .map(|p| format!(" at {} (created {})", p.lsn, p.time))
                            .unwrap_or_default(),
                        rec.name,
                        earlier
                            .map(|e| format!(" (the name is also at {e}, earlier: only a backup that starts after that one stops here)"))
                            .unwrap_or_default()
                    ),
                    lsn: rp.as_ref().map(|p| p.lsn),
                    time: rp.as_ref().map(|p| p.time),
                    xid: None,
                },
                start_by: match (&rp, earlier) {
                    (Some(p), Some(e)) => StartBy::ConsistentByAfter {
                        by: p.lsn,
                        after: e,
                    },
                    (Some(p), None) => StartBy::ConsistentBy(p.lsn),
                    (None, _) => StartBy::Any,
                },
            })
        }
        Walk::Gap(g) => Err(gap(line, backups, g)),
        Walk::End(_) => Err(PlanError::NotFound {
            target: RecoveryTarget::Name(n.to_string()).to_string(),
            timeline: line.tli,
            searched: None,
            hint: "check the name and the timeline (--timeline), or archive the WAL that holds it"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::SegNo;
    use crate::plan::locate::on_line;
    use crate::plan::testkit::{at, lsn, seg_name, Kit};

    fn kit() -> Kit {
        Kit::new()
            .segments(1, 1..=6)
            .restore_point(1, 3, "rp", 33)
            .backup("b1", 1, 1, 1)
    }

    fn named(c: &crate::catalog::Catalog, n: &str) -> Result<Located, PlanError> {
        on_line(c, 1, |line, backups| locate(n, line, backups))
    }

    #[test]
    fn stops_right_after_the_restore_point() {
        let c = kit().build();
        let l = named(&c, "rp").unwrap();
        assert_eq!(l.segno, SegNo::new(3));
        assert_eq!(l.stop.segment, seg_name(1, 3));
        assert_eq!(l.stop.lsn, Some(lsn(3, 0x2000)));
        assert_eq!(l.stop.time, Some(at(33)));
        // A backup consistent after the point would replay past it.
        assert_eq!(l.start_by, StartBy::ConsistentBy(lsn(3, 0x2000)));
    }

    #[test]
    fn an_unknown_name() {
        let c = kit().build();
        assert!(matches!(
            named(&c, "RP"),
            Err(PlanError::NotFound { target, .. }) if target == "restore point \"RP\""
        ));
    }

    #[test]
    fn a_gap_before_it() {
        let c = kit().without(1, 2).build();
        assert!(matches!(
            named(&c, "rp"),
            Err(PlanError::MissingSegment { segment, .. }) if segment == seg_name(1, 2)
        ));
    }

    /// A name made twice: Postgres stops at the first one replay meets,
    /// so the point found after the newer backup is reached only from a
    /// backup that starts after the earlier point, however cheap an older
    /// backup is (one starting before it would stop at the earlier one).
    #[test]
    fn a_name_made_twice_admits_only_backups_after_the_earlier_one() {
        let c = Kit::new()
            .segments(1, 1..=6)
            .restore_point(1, 2, "rp", 22)
            .restore_point(1, 5, "rp", 55)
            .backup("cheap-old", 1, 1, 1)
            .backup("dear-new", 1, 3, 900)
            .build();
        let l = named(&c, "rp").unwrap();
        assert_eq!(l.segno, SegNo::new(5));
        assert_eq!(
            l.start_by,
            StartBy::ConsistentByAfter {
                by: lsn(5, 0x2000),
                after: lsn(2, 0x2000),
            }
        );
        assert!(
            l.stop.description.contains("also at"),
            "{}",
            l.stop.description
        );
        let admitted: Vec<&str> = c
            .backups
            .iter()
            .filter(|b| l.start_by.admits(b))
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(admitted, ["dear-new"]);
        // And the whole planner restores from it, not the cheaper one.
        let spec = crate::plan::TargetSpec::new(RecoveryTarget::Name("rp".into()));
        let p = crate::plan::plan(&c, &spec, &crate::plan::cost::CostModel::default()).unwrap();
        assert_eq!(p.backup.id, "dear-new");
        // Made once, any backup consistent by it will do.
        let once = kit().build();
        assert_eq!(
            named(&once, "rp").unwrap().start_by,
            StartBy::ConsistentBy(lsn(3, 0x2000))
        );
    }
}
