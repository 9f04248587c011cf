//! The restorable windows that `pitr info` shows: per timeline, from the
//! end of the earliest backup on its history to the last transaction end
//! and last record in WAL continuous from the newest backup, and every
//! missing segment in between.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::timeline::{known_timelines, Timeline};
use super::PlanError;
use crate::catalog::{BackupRecord, Catalog};
use crate::pg::{Lsn, SegNo, TimelineId};

/// What can be restored along one timeline's history: from the end of
/// the earliest backup on it (time and LSN) to the last transaction end
/// (time targets must be before it) and the last record (LSN targets) in
/// WAL continuous from the newest backup; and every missing segment from
/// the earliest backup's start to the last archived segment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Window {
    pub timeline: TimelineId,
    pub earliest: Option<DateTime<Utc>>,
    pub earliest_lsn: Option<Lsn>,
    pub earliest_backup: Option<String>,
    pub latest: Option<DateTime<Utc>>,
    pub latest_lsn: Option<Lsn>,
    pub latest_segment: Option<String>,
    /// Missing segments (at most `MAX_GAPS` listed).
    pub gaps: Vec<String>,
}

/// How many missing segments a window lists.
const MAX_GAPS: usize = 100;

/// The window of the newest timeline.
pub fn restorable_window(catalog: &Catalog) -> Result<Window, PlanError> {
    window_of(catalog, catalog.latest_timeline())
}

/// One window per timeline with a history (or timeline 1), newest first;
/// timelines whose ancestry is unknown are left out.
pub fn restorable_windows(catalog: &Catalog) -> Vec<Window> {
    known_timelines(catalog)
        .into_iter()
        .filter_map(|t| window_of(catalog, t).ok())
        .collect()
}

/// The backups on `tli`'s history (those its window counts from); empty
/// when the timeline's ancestry is unknown.
pub fn backups_on(catalog: &Catalog, tli: TimelineId) -> Vec<&BackupRecord> {
    let Ok(line) = Timeline::new(catalog, tli) else {
        return Vec::new();
    };
    catalog
        .backups
        .iter()
        .filter(|b| line.holds_backup(b))
        .collect()
}

fn window_of(catalog: &Catalog, tli: TimelineId) -> Result<Window, PlanError> {
    let line = Timeline::new(catalog, tli)?;
    // Start points that can be brought back (an incremental whose chain
    // is broken cannot).
    let on_line: Vec<&BackupRecord> = line
        .backups()
        .map(|b| b.all.into_iter().map(|(_, b)| b).collect())
        .unwrap_or_default();
    let earliest = on_line.iter().min_by_key(|b| b.stop_lsn);
    let mut window = Window {
        timeline: tli,
        earliest: earliest.map(|b| b.stop_time),
        earliest_lsn: earliest.map(|b| b.stop_lsn),
        earliest_backup: earliest.map(|b| b.id.clone()),
        latest: None,
        latest_lsn: None,
        latest_segment: None,
        gaps: Vec::new(),
    };
    if let (Some(e), Some(last)) = (earliest, line.last_on_history()) {
        window.gaps = line
            .missing(e.start_lsn.segno(line.size), last, MAX_GAPS)
            .into_iter()
            .map(|s| line.expected_name(s))
            .collect();
    }
    let Some(newest) = on_line.iter().max_by_key(|b| b.stop_lsn) else {
        return Ok(window);
    };
    // The WAL continuous from the newest backup's start.
    let mut s = newest.start_lsn.segno(line.size);
    let mut latest_seg = None;
    for rec in line.archived(s, SegNo::new(u64::MAX)) {
        if rec.segno != s {
            break;
        }
        if let Some(m) = rec.max_xact_time() {
            if window.latest.is_none_or(|l| m > l) {
                window.latest = Some(m);
                latest_seg = Some(rec);
            }
        }
        window.latest_lsn = rec.end_lsn().or(window.latest_lsn);
        s = s.next();
    }
    window.latest_segment = latest_seg.map(|r| r.name());
    Ok(window)
}

/// The newest WAL archived along one timeline's history: what a standby
/// following that timeline from the repository can replay up to
/// (`pitr status` measures its lag against it).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ArchiveEnd {
    pub timeline: TimelineId,
    /// The last archived segment, under the name the history reads it by.
    pub segment: String,
    /// Where its last whole record ends, as Postgres' replay position
    /// would be after it (the segment's end after a switch record).
    pub end_lsn: Option<Lsn>,
    /// The newest transaction end (commit or abort) archived in the
    /// segments from the one asked for on, and its segment.
    pub newest_commit: Option<DateTime<Utc>>,
    pub newest_commit_segment: Option<String>,
}

/// The end of the WAL archived along `tli`'s history (None: nothing is
/// archived on it), with the newest transaction end in segments `from`
/// onwards: a standby that has replayed up to segment `from` has every
/// transaction end before it.
pub fn archive_end(
    catalog: &Catalog,
    tli: TimelineId,
    from: SegNo,
) -> Result<Option<ArchiveEnd>, PlanError> {
    let line = Timeline::new(catalog, tli)?;
    let Some(last) = line.last_on_history() else {
        return Ok(None);
    };
    let Some(seg) = line.seg(last) else {
        return Ok(None);
    };
    let newest = line.latest_time(from.min(last), last);
    Ok(Some(ArchiveEnd {
        timeline: tli,
        segment: seg.name(),
        end_lsn: seg.end_lsn(),
        newest_commit: newest.as_ref().map(|(t, _)| *t),
        newest_commit_segment: newest.map(|(_, s)| s),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{at, lsn, seg_name, tli, Kit, SEG};

    fn forked() -> Kit {
        Kit::new()
            .segments(1, 1..=6)
            .branch(2, 1, lsn(4, 0x8000))
            .segments(2, 4..=9)
    }

    #[test]
    fn from_the_earliest_backup_to_the_end_of_continuous_wal() {
        let c = forked().backup("b1", 1, 1, 1).backup("b2", 2, 5, 1).build();
        let w = restorable_window(&c).unwrap();
        assert_eq!(
            w,
            Window {
                timeline: tli(2),
                earliest: Some(at(6)),
                earliest_lsn: Some(lsn(1, 0x100)),
                earliest_backup: Some("b1".into()),
                latest: Some(at(1090)),
                latest_lsn: Some(Lsn::new(10 * SEG - 8)),
                latest_segment: Some(seg_name(2, 9)),
                gaps: Vec::new(),
            }
        );
    }

    #[test]
    fn a_gap_is_listed_and_ends_the_latest() {
        // A gap after the newest backup ends what can be reached; one
        // before it is listed but does not.
        let c = forked()
            .without(2, 7)
            .without(1, 2)
            .backup("b1", 1, 1, 1)
            .backup("b2", 2, 5, 1)
            .build();
        let w = restorable_window(&c).unwrap();
        assert_eq!(w.gaps, [seg_name(1, 2), seg_name(2, 7)]);
        assert_eq!(w.latest, Some(at(1060)));
        assert_eq!(w.latest_segment, Some(seg_name(2, 6)));
        assert_eq!(w.latest_lsn, Some(Lsn::new(7 * SEG - 8)));
    }

    #[test]
    fn each_timeline_sees_its_own_history() {
        let c = forked().backup("b1", 1, 1, 1).build();
        let ws = restorable_windows(&c);
        assert_eq!(
            ws.iter().map(|w| w.timeline).collect::<Vec<_>>(),
            [tli(2), tli(1)]
        );
        // Timeline 1 ends at its own segment 6, not at timeline 2's 9.
        assert_eq!(ws[1].latest_segment, Some(seg_name(1, 6)));
        assert!(ws[1].gaps.is_empty(), "{:?}", ws[1].gaps);
        assert_eq!(ws[0].latest_segment, Some(seg_name(2, 9)));
    }

    #[test]
    fn a_timeline_without_history_is_left_out() {
        let c = forked().segments(3, 10..=11).backup("b1", 1, 1, 1).build();
        let ws = restorable_windows(&c);
        assert_eq!(
            ws.iter().map(|w| w.timeline).collect::<Vec<_>>(),
            [tli(2), tli(1)]
        );
        assert_eq!(restorable_window(&c), Err(PlanError::NoHistory(tli(3))));
    }

    #[test]
    fn no_backup_no_window() {
        let w = restorable_window(&forked().build()).unwrap();
        assert_eq!(w.earliest, None);
        assert_eq!(w.latest, None);
        assert!(w.gaps.is_empty());
    }

    #[test]
    fn the_archive_ends_where_the_history_reads_its_last_segment() {
        let c = forked().backup("b1", 1, 1, 1).build();
        let e = archive_end(&c, tli(2), SegNo::new(0)).unwrap().unwrap();
        assert_eq!(e.segment, seg_name(2, 9));
        assert_eq!(e.end_lsn, Some(Lsn::new(10 * SEG - 8)));
        assert_eq!(e.newest_commit, Some(at(1090)));
        assert_eq!(e.newest_commit_segment, Some(seg_name(2, 9)));
        // Timeline 1 ends at its own last segment, not its child's.
        let e = archive_end(&c, tli(1), SegNo::new(0)).unwrap().unwrap();
        assert_eq!(e.segment, seg_name(1, 6));
        assert_eq!(e.newest_commit, Some(at(60)));
        // Transaction ends only from `from` on; none there: none.
        let c = forked()
            .edit(2, 9, |r| {
                if let Some(s) = r.summary.as_mut() {
                    s.max_xact = None;
                    s.xact_count = 0;
                }
            })
            .build();
        let e = archive_end(&c, tli(2), SegNo::new(9)).unwrap().unwrap();
        assert_eq!(e.newest_commit, None);
        let e = archive_end(&c, tli(2), SegNo::new(8)).unwrap().unwrap();
        assert_eq!(e.newest_commit_segment, Some(seg_name(2, 8)));
        // Past the end: the last segment alone.
        let e = archive_end(&c, tli(2), SegNo::new(50)).unwrap().unwrap();
        assert_eq!(e.newest_commit, None);
        assert_eq!(
            archive_end(&Kit::new().build(), tli(1), SegNo::new(0)),
            Ok(None)
        );
        assert_eq!(
            archive_end(&c, tli(3), SegNo::new(0)),
            Err(PlanError::NoHistory(tli(3)))
        );
    }

    #[test]
    fn at_most_a_hundred_gaps() {
        let mut k = Kit::new().segments(1, 1..=1).segments(1, 300..=300);
        k = k.backup("b1", 1, 1, 1);
        let w = restorable_window(&k.build()).unwrap();
        assert_eq!(w.gaps.len(), MAX_GAPS);
        assert_eq!(w.gaps[0], seg_name(1, 2));
        assert_eq!(w.latest, Some(at(10)));
    }
}
