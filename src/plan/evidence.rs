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
    /// The backups that rebuild it, its full backup first.
    pub chain: &'a [&'a BackupRecord],
    /// The first segment replayed and the stop segment.
    pub from_segment: &'a str,
    pub to_segment: &'a str,
    /// Archived segments between them (both included).
    pub segments: u64,
    /// How many of them carry a SHA-256 instead of a BLAKE3 hash
    /// (records pushed before pitr used BLAKE3: catalog/hash.rs).
    pub sha256_segments: u64,
    /// The timelines whose files are replayed, in order.
    pub timelines: &'a [TimelineId],
    /// `StopPoint::description`.
    pub stop: &'a str,
    pub timeline_reason: &'a str,
    /// `--immediate`: the backup's consistency point is the target.
    pub immediate: bool,
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
            "{} is consistent at {} (finished {}), {}",
            super::start::describe(p.chain),
            p.chosen.stop_lsn,
            p.chosen.stop_time,
            if p.immediate {
                "the target"
            } else {
                "before the target"
            }
        ),
        format!(
            "WAL is continuous from {} to {} ({}, timeline {timelines}), {}",
            p.from_segment,
            p.to_segment,
            super::explain::count(p.segments, "segment"),
            hashes(p.segments, p.sha256_segments)
        ),
        p.stop.to_string(),
        format!("recovery follows {}", p.timeline_reason),
    ]
}

/// Why this start point: the estimate it was chosen by, and that the
/// others cost more.
pub(super) fn chosen_by_cost(start: f64, replay: f64, startup: f64, others: usize) -> String {
    let total = start + replay + startup;
    let why = match others {
        0 => "no other start point reaches the target".to_string(),
        1 => "the other start point that reaches the target costs more (listed below)".into(),
        n => format!("the {n} other start points that reach the target cost more (listed below)"),
    };
    format!(
        "chosen by the estimated time to a writable server, {total:.1} s ({start:.1} s to bring the start point back, {replay:.1} s of replay, {startup:.1} s to start): {why}"
    )
}

/// What the archive's hashes prove: `wal-push` records a hash of each
/// segment's bytes as Postgres wrote them (BLAKE3; SHA-256 in records
/// from before), and `wal-fetch` checks it while decompressing.
fn hashes(segments: u64, sha256: u64) -> String {
    let checked = "of the bytes Postgres wrote, checked again when restore_command fetches it";
    match sha256 {
        0 => format!("every segment archived with a BLAKE3 hash {checked}"),
        n if n >= segments => format!(
            "every segment archived with a SHA-256 hash {checked} (archived by a pitr from before BLAKE3)"
        ),
        n => format!(
            "every segment archived with a BLAKE3 hash {checked} ({n} of them with a SHA-256 hash: archived by a pitr from before BLAKE3)"
        ),
    }
}

/// How a backup that could also reach the target is listed.
pub(super) fn alternative(
    b: &BackupRecord,
    chain: &[&BackupRecord],
    start_secs: f64,
    replay_secs: f64,
    chosen_secs: f64,
) -> String {
    let total = start_secs + replay_secs;
    format!(
        "{} (finished {}): est. {:.1} s to bring back + {:.1} s of replay, {:.1} s more",
        super::start::describe(chain),
        b.stop_time,
        start_secs,
        replay_secs,
        (total - chosen_secs).max(0.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{tli, Kit};

    fn proof_lines(segments: u64, sha256: u64, timelines: &[TimelineId]) -> Vec<String> {
        let c = Kit::new().backup_at("b1", 1, 1, 6, 1).build();
        lines(&Proof {
            chosen: &c.backups[0],
            chain: &[&c.backups[0]],
            from_segment: "A",
            to_segment: "B",
            segments,
            sha256_segments: sha256,
            timelines,
            stop: "stops at B",
            timeline_reason: "latest: timeline 2",
            immediate: false,
        })
    }

    #[test]
    fn the_lines_in_order() {
        let l = proof_lines(6, 0, &[tli(1), tli(2)]);
        assert_eq!(
            l,
            [
                "backup b1 is consistent at 0/1000100 (finished 2026-11-25 12:00:06 UTC), before the target",
                "WAL is continuous from A to B (6 segments, timeline 1 → 2), every segment archived with a BLAKE3 hash of the bytes Postgres wrote, checked again when restore_command fetches it",
                "stops at B",
                "recovery follows latest: timeline 2",
            ]
        );
    }

    #[test]
    fn one_segment_and_an_immediate_target() {
        let l = proof_lines(1, 0, &[tli(1)]);
        assert!(l[1].contains("(1 segment, timeline 1)"), "{}", l[1]);
        let c = Kit::new().backup_at("b1", 1, 1, 6, 1).build();
        let l = lines(&Proof {
            chosen: &c.backups[0],
            chain: &[&c.backups[0]],
            from_segment: "A",
            to_segment: "A",
            segments: 1,
            sha256_segments: 0,
            timelines: &[tli(1)],
            stop: "stops at A",
            timeline_reason: "current",
            immediate: true,
        });
        assert!(
            l[0].ends_with("(finished 2026-11-25 12:00:06 UTC), the target"),
            "{}",
            l[0]
        );
    }

    #[test]
    fn older_sha256_records_are_named() {
        let l = proof_lines(6, 2, &[tli(1)]);
        assert!(
            l[1].ends_with(
                "(2 of them with a SHA-256 hash: archived by a pitr from before BLAKE3)"
            ),
            "{}",
            l[1]
        );
        let l = proof_lines(6, 6, &[tli(1)]);
        assert!(
            l[1].contains("every segment archived with a SHA-256 hash"),
            "{}",
            l[1]
        );
        assert!(!l[1].contains("BLAKE3 hash"), "{}", l[1]);
    }

    #[test]
    fn alternatives_name_the_backup_when_it_finished_and_what_it_costs() {
        let c = Kit::new().backup_at("b9", 1, 1, 6, 1).build();
        assert_eq!(
            alternative(&c.backups[0], &[&c.backups[0]], 2.0, 3.25, 4.0),
            "backup b9 (finished 2026-11-25 12:00:06 UTC): est. 2.0 s to bring back + 3.2 s of replay, 1.2 s more"
        );
    }

    #[test]
    fn the_choice_says_what_it_was_chosen_by() {
        let l = chosen_by_cost(1.0, 2.5, 3.0, 2);
        assert!(
            l.contains(
                "6.5 s (1.0 s to bring the start point back, 2.5 s of replay, 3.0 s to start)"
            ),
            "{l}"
        );
        assert!(
            l.ends_with("the 2 other start points that reach the target cost more (listed below)"),
            "{l}"
        );
        assert!(
            chosen_by_cost(1.0, 0.0, 3.0, 0).ends_with("no other start point reaches the target")
        );
    }
}
