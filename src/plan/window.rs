//! The restorable windows that `pitr info` shows: per timeline, from the
//! end of the earliest backup on its history to the last transaction end
//! and last record in WAL continuous from the newest backup, and every
//! missing segment in between.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::timeline::{known_timelines, Timeline};
use super::PlanError;
use crate::catalog::{BackupRecord, Catalog};
use crate::pg::{Lsn, TimelineId};

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

fn window_of(catalog: &Catalog, tli: TimelineId) -> Result<Window, PlanError> {
    let line = Timeline::new(catalog, tli)?;
    let on_line: Vec<&BackupRecord> = catalog
        .backups
        .iter()
        .filter(|b| line.holds_backup(b))
        .collect();
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
        let mut s = e.start_lsn.segno(line.size);
        while s <= last && window.gaps.len() < MAX_GAPS {
            if line.segment(s).is_none() {
                window.gaps.push(line.expected_name(s));
            }
            s = s.next();
        }
    }
    let Some(newest) = on_line.iter().max_by_key(|b| b.stop_lsn) else {
        return Ok(window);
    };
    let mut s = newest.start_lsn.segno(line.size);
    while let Some(rec) = line.segment(s) {
        if let Some(sum) = &rec.summary {
            if let Some(m) = sum.max_xact_time() {
                if window.latest.is_none_or(|l| m > l) {
                    window.latest = Some(m);
                    window.latest_segment = Some(rec.name.clone());
                }
            }
            window.latest_lsn = sum.end_lsn.or(window.latest_lsn);
        }
        s = s.next();
    }
    Ok(window)
}
