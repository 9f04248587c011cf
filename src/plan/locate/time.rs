//! A time target: recovery stops before the first transaction that ended
//! after the time, which lies in the first segment (from a backup that
//! finished before the time) whose latest transaction end is after it.

use chrono::{DateTime, Utc};

use super::{Located, StartBy};
use crate::catalog::WalEntry;
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
    let after = |_: SegNo, r: &WalEntry| {
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
        on_line(c, 1, |line, backups| locate(at(secs), line, backups))
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
            at_time(&c, 60).unwrap_err(),
            PlanError::AfterLatest {
                target: at(60),
                latest: Some(at(60)),
                latest_segment: Some(seg_name(1, 6)),
            }
        );
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
