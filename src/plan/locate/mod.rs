//! Where recovery stops: one locator per target kind, each walking the
//! timeline view to the last segment recovery needs and returning it as
//! a `Located` (that segment, the `StopPoint` that explains it, and which
//! backups can start a route to it), or the typed error that says why the
//! archive does not hold the target. Locators choose no backup: the route
//! does (`--immediate` aside, whose stop is the chosen backup's own).

pub(super) mod immediate;
pub(super) mod latest;
pub(super) mod lsn;
pub(super) mod name;
pub(super) mod time;
pub(super) mod xid;

use chrono::{DateTime, Utc};

use super::timeline::{LineBackups, Timeline};
use super::{PlanError, StopPoint};
use crate::catalog::BackupRecord;
use crate::pg::{Lsn, SegNo};

/// A located target.
#[derive(Debug)]
pub(super) struct Located {
    /// The last segment recovery needs.
    pub segno: SegNo,
    pub stop: StopPoint,
    /// Which backups can reach the stop (besides being consistent no
    /// later than the stop segment).
    pub start_by: StartBy,
}

/// What a backup must satisfy to start a route to a located target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum StartBy {
    /// Finished before this time (a time target: Postgres would stop
    /// before the backup is consistent otherwise).
    FinishedBefore(DateTime<Utc>),
    /// Consistent at or before this LSN.
    ConsistentBy(Lsn),
    /// Consistent at or before `by`, and replay starting (at the backup's
    /// redo, `start_lsn`) after `after`: a restore point whose name also
    /// occurs earlier, at `after`, where replay from an older backup
    /// would stop instead (Postgres stops at the first one it replays).
    ConsistentByAfter { by: Lsn, after: Lsn },
    /// Any backup.
    Any,
}

impl StartBy {
    pub fn admits(&self, b: &BackupRecord) -> bool {
        match self {
            StartBy::FinishedBefore(t) => b.stop_time < *t,
            StartBy::ConsistentBy(l) => b.stop_lsn <= *l,
            StartBy::ConsistentByAfter { by, after } => b.stop_lsn <= *by && b.start_lsn > *after,
            StartBy::Any => true,
        }
    }
}

/// A gap met before a target other than a time was found: named by the
/// earliest backup on the line (the one whose replay crosses it).
fn gap(line: &Timeline<'_>, backups: &LineBackups<'_>, g: SegNo) -> PlanError {
    PlanError::MissingSegment {
        segment: line.expected_name(g),
        backup_id: backups.earliest.id.clone(),
        last_restorable: None,
    }
}

/// Runs `f` over timeline `t`'s view of `c` and the backups on it.
#[cfg(test)]
fn on_line<R>(
    c: &crate::catalog::Catalog,
    t: u32,
    f: impl FnOnce(&Timeline<'_>, &LineBackups<'_>) -> R,
) -> R {
    let line = Timeline::new(c, crate::plan::testkit::tli(t)).unwrap();
    let backups = line.backups().expect("a backup on the line");
    f(&line, &backups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{at, lsn, Kit};

    #[test]
    fn start_by_admits() {
        let c = Kit::new().backup_at("b", 1, 2, 100, 1).build();
        let b = &c.backups[0];
        assert!(StartBy::Any.admits(b));
        assert!(StartBy::FinishedBefore(at(101)).admits(b));
        // A backup finished exactly at the target cannot reach it.
        assert!(!StartBy::FinishedBefore(at(100)).admits(b));
        assert!(StartBy::ConsistentBy(lsn(2, 0x100)).admits(b));
        assert!(!StartBy::ConsistentBy(lsn(2, 0xFF)).admits(b));
    }
}
