//! `--latest`: recovery replays to the end of the WAL that is continuous
//! from the newest backup on the line, then promotes.

use super::{Located, StartBy};
use crate::pg::SegNo;
use crate::plan::timeline::{LineBackups, Timeline, Walk};
use crate::plan::{PlanError, StopPoint};

pub(in crate::plan) fn locate(
    line: &Timeline<'_>,
    backups: &LineBackups<'_>,
) -> Result<Located, PlanError> {
    let newest = backups.newest_where(|_| true).unwrap_or(backups.earliest);
    let start = newest.start_lsn.segno(line.size);
    let end = match line.walk(start, |_, _| false) {
        Walk::End(Some(s)) | Walk::Gap(s) if s > start => {
            if line.segment(s).is_some() {
                s
            } else {
                SegNo::new(s.get() - 1)
            }
        }
        _ => start,
    };
    let Some(rec) = line.segment(end) else {
        return Err(PlanError::MissingSegment {
            segment: line.expected_name(start),
            backup_id: newest.id.clone(),
            last_restorable: None,
        });
    };
    let end_lsn = rec.summary.as_ref().and_then(|x| x.end_lsn);
    Ok(Located {
        segno: end,
        stop: StopPoint {
            segment: rec.name.clone(),
            description: format!(
                "the end of continuous archived WAL: segment {}{}",
                rec.name,
                end_lsn
                    .map(|e| format!(", last record ends at {e}"))
                    .unwrap_or_default()
            ),
            lsn: end_lsn,
            time: line.latest_time(start, end).map(|(t, _)| t),
            xid: None,
        },
        start_by: StartBy::Any,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;
    use crate::plan::locate::on_line;
    use crate::plan::testkit::{at, seg_name, Kit, SEG};

    fn kit() -> Kit {
        Kit::new()
            .segments(1, 1..=6)
            .backup("b1", 1, 1, 1)
            .backup("b2", 1, 3, 1)
    }

    fn latest(c: &crate::catalog::Catalog) -> Result<Located, PlanError> {
        on_line(c, 1, locate)
    }

    #[test]
    fn the_end_of_the_archive() {
        let c = kit().build();
        let l = latest(&c).unwrap();
        assert_eq!(l.segno, SegNo::new(6));
        assert_eq!(l.stop.segment, seg_name(1, 6));
        assert_eq!(l.stop.lsn, Some(Lsn::new(7 * SEG - 8)));
        assert_eq!(l.stop.time, Some(at(60)));
        assert_eq!(l.start_by, StartBy::Any);
    }

    #[test]
    fn the_end_of_wal_continuous_from_the_newest_backup() {
        // A gap after the newest backup ends it; one before it does not.
        let c = kit().without(1, 5).build();
        assert_eq!(latest(&c).unwrap().segno, SegNo::new(4));
        let c = kit().without(1, 2).build();
        assert_eq!(latest(&c).unwrap().segno, SegNo::new(6));
    }

    #[test]
    fn the_newest_backups_first_segment_is_missing() {
        let c = kit().without(1, 3).build();
        assert_eq!(
            latest(&c).unwrap_err(),
            PlanError::MissingSegment {
                segment: seg_name(1, 3),
                backup_id: "b2".into(),
                last_restorable: None,
            }
        );
    }
}
