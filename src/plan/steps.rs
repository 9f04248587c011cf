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
        alternatives,
    } = route;
    let Located {
        segno: stop_seg,
        stop,
        ..
    } = located;
    let start_seg = chosen.start_lsn.segno(line.size);
    let (mut wal_bytes, mut wal_stored, mut count) = (0u64, 0u64, 0u64);
    let mut s = start_seg;
    while s <= stop_seg {
        if let Some(r) = line.segment(s) {
            wal_bytes += r.raw_bytes;
            wal_stored += r.stored_bytes;
            count += 1;
        }
        s = s.next();
    }
    let from_name = line
        .segment(start_seg)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| line.expected_name(start_seg));
    let steps = vec![
        Step::RestoreBackup {
            backup_id: chosen.id.clone(),
            files: chosen.files,
            bytes: chosen.raw_bytes,
            stored_bytes: chosen.stored_bytes,
            estimated_seconds: cost.restore(chosen.stored_bytes, chosen.raw_bytes),
        },
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
    ];
    let evidence = evidence::lines(&Proof {
        chosen,
        from_segment: &from_name,
        to_segment: &stop.segment,
        segments: count,
        timelines: &line.timelines_between(start_seg, stop_seg),
        stop: &stop.description,
        timeline_reason: &timeline_reason,
    });
    Plan {
        target: spec.target.clone(),
        inclusive: spec.inclusive,
        timeline_choice: spec.timeline,
        timeline: line.tli,
        timeline_reason,
        backup: BackupChoice {
            id: chosen.id.clone(),
            timeline: chosen.timeline,
            start_lsn: chosen.start_lsn,
            stop_lsn: chosen.stop_lsn,
            stop_time: chosen.stop_time,
        },
        estimated_seconds: steps.iter().map(Step::estimated_seconds).sum(),
        steps,
        stop,
        total_bytes: chosen.stored_bytes + wal_stored,
        evidence,
        alternatives,
        cost_model: cost.clone(),
        install: None,
        damaged: Vec::new(),
    }
}
