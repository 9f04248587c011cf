//! A transaction target: recovery stops at the end of that transaction,
//! in the first segment whose range of ended xids holds it (a bound: the
//! exact record is named later, by `Plan::refine`).

use super::{gap, Located, StartBy};
use crate::catalog::WalSegmentRecord;
use crate::pg::SegNo;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, RecoveryTarget, StopPoint};

pub(in crate::plan) fn locate(
    x: u32,
    inclusive: bool,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
    let holds =
        |_: SegNo, r: &WalSegmentRecord| r.summary.as_ref().is_some_and(|s| s.may_hold_xid(x));
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
