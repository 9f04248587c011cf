//! A time target: recovery stops before the first transaction that ended
//! after the time, which lies in the first segment (from a backup that
//! finished before the time) whose latest transaction end is after it.

use chrono::{DateTime, Utc};

use super::{Located, StartBy};
use crate::catalog::WalSegmentRecord;
use crate::pg::SegNo;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, StopPoint};

pub(in crate::plan) fn locate(
    t: DateTime<Utc>,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
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
    let after = |_: SegNo, r: &WalSegmentRecord| {
        r.summary
            .as_ref()
            .and_then(|x| x.max_xact_time())
            .is_some_and(|m| m > t)
    };
    match line.walk_any(&starts, after) {
        Walk::Found(s, rec) => {
            let later = rec.summary.as_ref().and_then(|x| x.max_xact.clone());
            Ok(Located {
                segno: s,
                stop: StopPoint {
                    segment: rec.name.clone(),
                    description: format!(
                        "segment {} holds the end of transaction {} at {}, after the target: recovery stops there at the latest",
                        rec.name,
                        later.as_ref().map(|x| x.xid).unwrap_or_default(),
                        later.as_ref().map(|x| x.time.to_string()).unwrap_or_default()
                    ),
                    lsn: later.as_ref().map(|x| x.lsn),
                    time: later.as_ref().map(|x| x.time),
                    xid: later.as_ref().map(|x| x.xid),
                },
                start_by: StartBy::FinishedBefore(t),
            })
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
            Err(PlanError::AfterLatest {
                target: t,
                latest: latest.as_ref().map(|(l, _)| *l),
                latest_segment: latest.map(|(_, n)| n),
            })
        }
    }
}
