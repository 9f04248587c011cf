//! A transaction target: recovery stops at the end of that transaction,
//! in the first segment whose range of ended xids holds it (a bound: the
//! exact record is named later, by `Plan::refine`).

use super::{gap, Located, StartBy};
use crate::catalog::WalEntry;
use crate::pg::SegNo;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, RecoveryTarget, StopPoint};

pub(in crate::plan) fn locate(
    x: u32,
    inclusive: bool,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
    let holds = |_: SegNo, r: &WalEntry| r.summary.as_ref().is_some_and(|s| s.may_hold_xid(x));
    match line.walk_any(&backups.starts(), holds) {
        Walk::Found(s, rec) => Ok(Located {
            segno: s,
            stop: StopPoint {
                segment: rec.name.clone(),
                description: format!(
                    "transaction {x} ends in segment {} (its transaction ends span xids {}..{}): recovery stops {} it",
                    rec.name,
                    rec.summary.as_ref().and_then(|s| s.min_xid).unwrap_or_default(),
                    rec.summary.as_ref().and_then(|s| s.max_xid).unwrap_or_default(),
                    if inclusive { "right after" } else { "right before" }
                ),
                lsn: None,
                time: None,
                xid: Some(x),
            },
            // Where the transaction began is unknown: any backup that is
            // consistent by the stop segment may hold it.
            start_by: StartBy::Any,
        }),
        Walk::Gap(g) => Err(gap(line, backups, g)),
        Walk::End(_) => Err(PlanError::NotFound {
            target: RecoveryTarget::Xid(x).to_string(),
            timeline: line.tli,
            searched: None,
            hint: "the transaction has not ended in archived WAL on this timeline (SELECT pg_switch_wal() on the source), or the xid is wrong".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::locate::on_line;
    use crate::plan::testkit::{seg_name, tli, Kit};

    fn kit() -> Kit {
        Kit::new().segments(1, 1..=6).backup("b1", 1, 1, 1)
    }

    fn of(c: &crate::catalog::Catalog, x: u32, inclusive: bool) -> Result<Located, PlanError> {
        on_line(c, 1, |line, backups| locate(x, inclusive, line, backups))
    }

    #[test]
    fn stops_in_the_first_segment_whose_xids_hold_it() {
        let c = kit()
            .edit(1, 5, |r| {
                if let Some(s) = r.summary.as_mut() {
                    s.min_xid = Some(900);
                }
            })
            .build();
        let l = of(&c, 1004, true).unwrap();
        assert_eq!(l.segno, SegNo::new(4));
        assert_eq!(l.stop.segment, seg_name(1, 4));
        assert_eq!(l.stop.xid, Some(1004));
        assert_eq!(l.start_by, StartBy::Any);
        assert!(l.stop.description.ends_with("right after it"));
        assert!(of(&c, 1004, false)
            .unwrap()
            .stop
            .description
            .ends_with("right before it"));
        // The range is a bound: 950 may end in segment 5.
        assert_eq!(of(&c, 950, true).unwrap().segno, SegNo::new(5));
    }

    #[test]
    fn an_xid_that_never_ended() {
        let c = kit().build();
        assert!(matches!(
            of(&c, 7, true),
            Err(PlanError::NotFound { timeline, searched: None, .. }) if timeline == tli(1)
        ));
    }

    #[test]
    fn a_gap_before_it() {
        let c = kit().without(1, 2).build();
        assert!(matches!(
            of(&c, 1004, true),
            Err(PlanError::MissingSegment { segment, .. }) if segment == seg_name(1, 2)
        ));
    }
}
