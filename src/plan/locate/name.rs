//! A restore point target: recovery stops right after the first restore
//! point of that name on the timeline's history.

use super::{gap, Located, StartBy};
use crate::catalog::WalSegmentRecord;
use crate::pg::wal::RestorePoint;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, RecoveryTarget, StopPoint};

pub(in crate::plan) fn locate(
    n: &str,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
    let point = |r: &WalSegmentRecord| -> Option<RestorePoint> {
        r.summary
            .as_ref()
            .and_then(|x| x.restore_points.iter().find(|p| p.name == n).cloned())
    };
    match line.walk_any(&backups.starts(), |_, r| point(r).is_some()) {
        Walk::Found(s, rec) => {
            let rp = point(rec);
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
