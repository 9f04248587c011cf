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
                .and_then(|r| r.summary.as_ref())
                .and_then(|x| x.end_lsn),
        )),
    }
}
