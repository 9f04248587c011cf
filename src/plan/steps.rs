//! The steps of a plan and their totals, for a chosen route to a located
//! stop: restore the backup, replay the WAL from its start segment to the
//! stop segment, stop at the target. Bytes come from the catalog, seconds
//! from the cost model.

use super::cost::CostModel;
use super::evidence::{self, Proof};
use super::locate::Located;
use super::route::Route;
use super::timeline::Timeline;
use super::{pg_time, BackupChoice, Plan, RecoveryTarget, Step, TargetSpec};
use crate::catalog::{BackupRecord, StartKind};

/// The plan that follows `route` to `located`.
pub(super) fn assemble(
    spec: &TargetSpec,
    line: &Timeline<'_>,
    timeline_reason: String,
    route: Route<'_>,
    located: Located,
    cost: &CostModel,
) -> Plan {
    let Route {
        chosen,
        chain,
        start_secs,
        replay_secs,
        alternatives,
    } = route;
    let Located {
        segno: stop_seg,
        stop,
        ..
    } = located;
    let start_seg = chosen.start_lsn.segno(line.size);
    let (wal_bytes, wal_stored, count, sha256) = line.totals(start_seg, stop_seg);
    let from_name = line
        .segment(start_seg)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| line.expected_name(start_seg));
    let mut steps = bring_back(&chain, cost);
    steps.extend([
        Step::ReplayWal {
            timeline: line.tli,
            from_segment: from_name.clone(),
            to_segment: stop.segment.clone(),
            segments: count,
            bytes: wal_bytes,
            stored_bytes: wal_stored,
            estimated_seconds: cost.replay(wal_bytes),
        },
        Step::StopAtTarget {
            description: match &spec.target {
                RecoveryTarget::Time(t) => format!(
                    "stop before the first transaction that ended after {}",
                    pg_time(*t)
                ),
                RecoveryTarget::Latest => "replay to the end of archived WAL, then promote".into(),
                other => format!(
                    "stop at {other}{}",
                    if spec.inclusive { "" } else { " (exclusive)" }
                ),
            },
            estimated_seconds: cost.startup_secs,
        },
    ]);
    let mut evidence = evidence::lines(&Proof {
        chosen,
        chain: &chain,
        from_segment: &from_name,
        to_segment: &stop.segment,
        segments: count,
        sha256_segments: sha256,
        timelines: &line.timelines_between(start_seg, stop_seg),
        stop: &stop.description,
        timeline_reason: &timeline_reason,
        immediate: spec.target == RecoveryTarget::Immediate,
    });
    evidence.push(evidence::chosen_by_cost(
        start_secs,
        replay_secs,
        cost.startup_secs,
        alternatives.len(),
    ));
    let chain_stored: u64 = chain.iter().map(|b| b.stored_bytes).sum();
    Plan {
        target: spec.target.clone(),
        inclusive: spec.inclusive,
        timeline_choice: spec.timeline,
        from: spec.from.clone(),
        timeline: line.tli,
        timeline_reason,
        backup: BackupChoice {
            id: chosen.id.clone(),
            start: chosen.start.clone(),
            chain: chain.iter().map(|b| b.id.clone()).collect(),
            timeline: chosen.timeline,
            start_lsn: chosen.start_lsn,
            stop_lsn: chosen.stop_lsn,
            stop_time: chosen.stop_time,
        },
        estimated_seconds: steps.iter().map(Step::estimated_seconds).sum(),
        steps,
        stop,
        total_bytes: chain_stored + wal_stored,
        evidence,
        alternatives,
        cost_model: cost.clone(),
        install: None,
        damaged: Vec::new(),
        time_stop: None,
    }
}

/// The steps that bring the start point back: a full backup restored; an
/// incremental's full backup restored and each later link applied in
/// order; a snapshot cloned by its provider.
fn bring_back(chain: &[&BackupRecord], cost: &CostModel) -> Vec<Step> {
    chain
        .iter()
        .enumerate()
        .map(|(k, b)| match &b.start {
            StartKind::Full => Step::RestoreBackup {
                backup_id: b.id.clone(),
                files: b.files,
                bytes: b.raw_bytes,
                stored_bytes: b.stored_bytes,
                estimated_seconds: cost.start(&chain[..=k]),
            },
            StartKind::Incremental { changed_bytes, .. } => Step::ApplyIncremental {
                backup_id: b.id.clone(),
                files: b.files,
                changed_bytes: *changed_bytes,
                stored_bytes: b.stored_bytes,
                estimated_seconds: cost.start(&chain[..=k]) - cost.start(&chain[..k]),
            },
            StartKind::Snapshot {
                provider, handle, ..
            } => Step::CloneSnapshot {
                backup_id: b.id.clone(),
                provider: provider.name().to_string(),
                handle: handle.clone(),
                bytes: b.raw_bytes,
                estimated_seconds: cost.start(&chain[..=k]),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::plan::testkit::{at, lsn, seg_name, tli, Kit, SEG};
    use crate::plan::{locate, TimelineChoice};

    fn assembled(c: &Catalog, target: RecoveryTarget, inclusive: bool, stop_seg: u64) -> Plan {
        let line = Timeline::new(c, tli(2)).unwrap();
        let route = Route {
            chosen: &c.backups[0],
            chain: vec![&c.backups[0]],
            start_secs: 0.5,
            replay_secs: 1.0,
            alternatives: vec!["backup other (finished then)".into()],
        };
        let located = locate::Located {
            segno: crate::pg::SegNo::new(stop_seg),
            stop: crate::plan::StopPoint {
                segment: seg_name(2, stop_seg),
                description: "stops here".into(),
                lsn: None,
                time: None,
                xid: None,
            },
            start_by: locate::StartBy::Any,
        };
        let spec = TargetSpec {
            target,
            inclusive,
            timeline: TimelineChoice::Latest,
            from: Default::default(),
        };
        assemble(
            &spec,
            &line,
            "why".into(),
            route,
            located,
            &CostModel::default(),
        )
    }

    fn forked() -> Catalog {
        Kit::new()
            .segments(1, 1..=6)
            .branch(2, 1, lsn(4, 0x8000))
            .segments(2, 4..=8)
            .edit(1, 2, |r| {
                r.blake3 = String::new();
                r.sha256 = "ab".repeat(32);
            })
            .backup("b1", 1, 2, 100)
            .build()
    }

    #[test]
    fn steps_and_totals() {
        let c = forked();
        let p = assembled(&c, RecoveryTarget::Latest, true, 6);
        let [Step::RestoreBackup {
            backup_id,
            bytes,
            stored_bytes,
            ..
        }, Step::ReplayWal {
            timeline,
            from_segment,
            to_segment,
            segments,
            bytes: wal_bytes,
            stored_bytes: wal_stored,
            ..
        }, Step::StopAtTarget { description, .. }] = p.steps.as_slice()
        else {
            panic!("steps: {:?}", p.steps);
        };
        assert_eq!(backup_id, "b1");
        assert_eq!((*bytes, *stored_bytes), (400 << 20, 100 << 20));
        assert_eq!(*timeline, tli(2));
        assert_eq!(from_segment, &seg_name(1, 2));
        assert_eq!(to_segment, &seg_name(2, 6));
        // 2, 3 from timeline 1; 4, 5, 6 from timeline 2.
        assert_eq!(*segments, 5);
        assert_eq!((*wal_bytes, *wal_stored), (5 * SEG, 5 * SEG / 8));
        assert_eq!(
            description,
            "replay to the end of archived WAL, then promote"
        );
        assert_eq!(p.total_bytes, (100 << 20) + 5 * SEG / 8);
        let sum: f64 = p.steps.iter().map(Step::estimated_seconds).sum();
        assert_eq!(p.estimated_seconds, sum);
        assert_eq!(p.timeline, tli(2));
        assert_eq!(p.backup.id, "b1");
        assert_eq!(p.alternatives, ["backup other (finished then)"]);
        assert!(
            p.evidence[1].contains("(5 segments, timeline 1 → 2)"),
            "{}",
            p.evidence[1]
        );
        assert!(
            p.evidence[1].contains("(1 of them with a SHA-256 hash"),
            "{}",
            p.evidence[1]
        );
        assert_eq!(p.evidence[2], "stops here");
        assert_eq!(p.evidence[3], "recovery follows why");
    }

    #[test]
    fn how_each_target_stops() {
        let c = forked();
        let stop = |target, inclusive| match assembled(&c, target, inclusive, 6).steps.last() {
            Some(Step::StopAtTarget { description, .. }) => description.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            stop(RecoveryTarget::Time(at(1)), false),
            "stop before the first transaction that ended after 2026-11-25 12:00:01.000000+00"
        );
        assert_eq!(
            stop(RecoveryTarget::Xid(crate::plan::Xid::new(5)), true),
            "stop at transaction 5"
        );
        assert_eq!(
            stop(RecoveryTarget::Lsn(lsn(5, 0)), false),
            "stop at LSN 0/5000000 (exclusive)"
        );
    }
}
