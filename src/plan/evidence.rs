//! The evidence: the lines of plain text a plan carries to say why the
//! target is reachable (the backup is consistent before it, the WAL from
//! there to the stop is archived without a gap, where recovery stops, and
//! which timeline it follows), and how other usable backups are named.

use crate::catalog::BackupRecord;
use crate::pg::TimelineId;

/// What the evidence speaks of: the chosen backup and the WAL replayed
/// after it.
pub(super) struct Proof<'a> {
    pub chosen: &'a BackupRecord,
    /// The first segment replayed and the stop segment.
    pub from_segment: &'a str,
    pub to_segment: &'a str,
    /// Archived segments between them (both included).
    pub segments: u64,
    /// The timelines whose files are replayed, in order.
    pub timelines: &'a [TimelineId],
    /// `StopPoint::description`.
    pub stop: &'a str,
    pub timeline_reason: &'a str,
}

/// The evidence lines, in the order `plan` prints them.
pub(super) fn lines(p: &Proof<'_>) -> Vec<String> {
    let timelines = p
        .timelines
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" → ");
    vec![
        format!(
            "backup {} is consistent at {} (finished {}), before the target",
            p.chosen.id, p.chosen.stop_lsn, p.chosen.stop_time
        ),
        format!(
            "WAL is continuous from {} to {} ({} segments, timeline {timelines}), every segment archived with a content hash (BLAKE3)",
            p.from_segment, p.to_segment, p.segments
        ),
        p.stop.to_string(),
        format!("recovery follows {}", p.timeline_reason),
    ]
}

/// How a backup that could also reach the target is listed.
pub(super) fn alternative(b: &BackupRecord) -> String {
    format!("backup {} (finished {})", b.id, b.stop_time)
}
