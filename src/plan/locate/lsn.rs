//! An LSN target: recovery stops at the first record that starts at or
//! after the LSN, so the stop segment is the one holding the LSN when a
//! record there ends after it, else the next one.

use super::{gap, Located, StartBy};
use crate::pg::{Lsn, SegNo};
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, RecoveryTarget, StopPoint};

pub(in crate::plan) fn locate(
    l: Lsn,
    inclusive: bool,
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
    // Replay from a backup ends no earlier than where it is consistent:
    // an LSN before every backup's end is refused as such, not as a
    // missing segment before the first backup.
    if backups.earliest.stop_lsn > l {
        return Err(PlanError::NoBackupBefore {
            target: RecoveryTarget::Lsn(l).to_string(),
            timeline: line.tli,
            earliest_lsn: backups.earliest.stop_lsn,
            backup_id: backups.earliest.id.clone(),
        });
    }
    let want = l.segno(line.size);
    let first = backups.first_start().min(want);
    let mut starts: Vec<SegNo> = backups
        .starts()
        .into_iter()
        .filter(|s| *s <= want)
        .collect();
    if starts.is_empty() {
        starts.push(first);
    }
    let after_end = |end: Option<Lsn>| PlanError::AfterEnd {
        target: RecoveryTarget::Lsn(l).to_string(),
        timeline: line.tli,
        end,
    };
    match line.walk_any(&starts, |s, _| s >= want) {
        Walk::Found(s, rec) => {
            // A record must start at or after the target, or Postgres
            // ends recovery before reaching it.
            let end = rec.summary.as_ref().and_then(|x| x.end_lsn);
            let ends_after = end.is_some_and(|e| e > l);
            let more = line.segment(s.next()).is_some();
            if !ends_after && !more {
                return Err(after_end(end));
            }
            let s = if ends_after { s } else { s.next() };
            let name = line
                .segment(s)
                .map(|r| r.name.clone())
                .unwrap_or_else(|| rec.name.clone());
            Ok(Located {
                segno: s,
                stop: StopPoint {
                    segment: name.clone(),
                    description: format!(
                        "recovery stops at the first record at or after {l} ({}), in segment {name}",
                        if inclusive { "replaying it" } else { "before it" }
                    ),
                    lsn: Some(l),
                    time: None,
                    xid: None,
                },
                start_by: StartBy::ConsistentBy(l),
            })
        }
        Walk::Gap(g) => Err(gap(line, backups, g)),
        Walk::End(last) => Err(after_end(
            last.and_then(|s| line.segment(s))
                .and_then(|r| r.summary.and_then(|x| x.end_lsn)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::locate::on_line;
    use crate::plan::testkit::{lsn, seg_name, Kit, SEG};

    fn kit() -> Kit {
        Kit::new().segments(1, 1..=6).backup("b1", 1, 1, 1)
    }

    fn at_lsn(c: &crate::catalog::Catalog, l: Lsn, inclusive: bool) -> Result<Located, PlanError> {
        on_line(c, 1, |line, backups| locate(l, inclusive, line, backups))
    }

    #[test]
    fn stops_in_the_segment_holding_the_lsn() {
        let c = kit().build();
        let l = at_lsn(&c, lsn(3, 0x5000), true).unwrap();
        assert_eq!(l.segno, SegNo::new(3));
        assert_eq!(l.stop.segment, seg_name(1, 3));
        assert_eq!(l.stop.lsn, Some(lsn(3, 0x5000)));
        assert_eq!(l.start_by, StartBy::ConsistentBy(lsn(3, 0x5000)));
        assert!(
            l.stop.description.contains("(replaying it)"),
            "{}",
            l.stop.description
        );
        let l = at_lsn(&c, lsn(3, 0x5000), false).unwrap();
        assert!(
            l.stop.description.contains("(before it)"),
            "{}",
            l.stop.description
        );
    }

    #[test]
    fn past_the_last_record_of_a_segment_the_next_one_is_needed() {
        // Segment 3's last record ends 8 bytes before segment 4.
        let c = kit().build();
        let l = at_lsn(&c, Lsn::new(4 * SEG - 8), true).unwrap();
        assert_eq!(l.segno, SegNo::new(4));
        assert_eq!(l.stop.segment, seg_name(1, 4));
        // ... which does not exist after the last archived segment.
        assert_eq!(
            at_lsn(&c, Lsn::new(7 * SEG - 8), true).unwrap_err(),
            PlanError::AfterEnd {
                target: "LSN 0/6FFFFF8".into(),
                timeline: crate::plan::testkit::tli(1),
                end: Some(Lsn::new(7 * SEG - 8)),
            }
        );
    }

    #[test]
    fn before_every_backup_is_consistent() {
        let c = kit().build();
        // b1 is consistent at 0/1000100: an LSN before that is refused as
        // such (it used to name a missing segment 0).
        assert_eq!(
            at_lsn(&c, lsn(1, 0x80), true).unwrap_err(),
            PlanError::NoBackupBefore {
                target: "LSN 0/1000080".into(),
                timeline: crate::plan::testkit::tli(1),
                earliest_lsn: lsn(1, 0x100),
                backup_id: "b1".into(),
            }
        );
        assert!(at_lsn(&c, lsn(1, 0x100), true).is_ok());
    }

    #[test]
    fn past_the_archive() {
        let c = kit().build();
        assert!(matches!(
            at_lsn(&c, lsn(20, 0), true),
            Err(PlanError::AfterEnd { end: Some(e), .. }) if e == Lsn::new(7 * SEG - 8)
        ));
    }

    #[test]
    fn a_gap_before_the_lsn() {
        let c = kit().without(1, 3).build();
        assert_eq!(
            at_lsn(&c, lsn(5, 0), true).unwrap_err(),
            PlanError::MissingSegment {
                segment: seg_name(1, 3),
                backup_id: "b1".into(),
                last_restorable: None,
            }
        );
    }
}
