//! A restore point target: recovery stops right after the first restore
//! point of that name on the timeline's history.

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
            Ok(Located {
                segno: s,
                stop: StopPoint {
                    segment: rec.name.clone(),
                    description: format!(
                        "restore point {n:?}{} in segment {}: recovery stops right after it",
                        rp.as_ref()
                            .map(|p| format!(" at {} (created {})", p.lsn, p.time))
                            .unwrap_or_default(),
                        rec.name
                    ),
                    lsn: rp.as_ref().map(|p| p.lsn),
                    time: rp.as_ref().map(|p| p.time),
                    xid: None,
                },
                start_by: rp.map_or(StartBy::Any, |p| StartBy::ConsistentBy(p.lsn)),
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
}
