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
