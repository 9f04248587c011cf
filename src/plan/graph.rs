//! Catalog → petgraph graph → cheapest route. Nodes are restorable
//! states: a virtual source, "backup B restored", "WAL replayed through
//! segment s" on the target timeline's history, and the target. Edges are
//! actions weighted by estimated seconds (`cost`). A segment edge exists
//! only when the segment is archived, so a route never crosses a gap;
//! Dijkstra (A* with a zero heuristic, which also returns the path) picks
//! the cheapest backup. New kinds of states (snapshots, incremental
//! chains) are new node and edge kinds here.

use chrono::{DateTime, Utc};
use petgraph::graph::{DiGraph, NodeIndex};

use super::cost::CostModel;
use super::{BackupChoice, Plan, PlanError, RecoveryTarget, Step, StopPoint};
use crate::catalog::{BackupRecord, Catalog, WalSegmentRecord};
use crate::pg::history::{HistorySpan, TimelineHistory};
use crate::pg::{SegNo, SegmentName, TimelineId, WalSegmentSize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Source,
    Backup(usize),
    Replayed(SegNo),
    Target,
}

struct Timeline<'a> {
    catalog: &'a Catalog,
    size: WalSegmentSize,
    /// Newest first.
    stretches: Vec<HistorySpan>,
}

impl<'a> Timeline<'a> {
    fn new(catalog: &'a Catalog, tli: TimelineId) -> Result<Timeline<'a>, PlanError> {
        let history = if tli == TimelineId::FIRST {
            TimelineHistory::root()
        } else {
            catalog
                .histories
                .get(&tli)
                .cloned()
                .ok_or(PlanError::NoHistory(tli))?
        };
        let mut stretches = history.ancestors();
        stretches.reverse();
        Ok(Timeline {
            catalog,
            size: catalog.config.wal_segment_size,
            stretches,
        })
    }

    /// The archived file recovery will read for `segno`, like Postgres'
    /// XLogFileReadAnyTLI: the newest timeline of the history whose
    /// stretch begins at or before the segment and has the file.
    fn segment(&self, segno: SegNo) -> Option<&'a WalSegmentRecord> {
        self.stretches
            .iter()
            .filter(|s| s.begin.segno(self.size) <= segno)
            .find_map(|s| self.catalog.wal.get(&(s.tli, segno)))
    }

    /// The name recovery would ask for first (for messages about a gap).
    fn expected_name(&self, segno: SegNo) -> String {
        let tli = self
            .stretches
            .iter()
            .find(|s| s.begin.segno(self.size) <= segno)
            .map(|s| s.tli)
            .unwrap_or(TimelineId::FIRST);
        SegmentName::new(tli, segno, self.size).to_string()
    }

    /// A backup is on this history if it was taken on one of its
    /// timelines before that timeline branched off.
    fn holds_backup(&self, b: &BackupRecord) -> bool {
        self.stretches.iter().any(|s| {
            s.tli == b.timeline
                && b.start_lsn >= s.begin
                && s.end.is_none_or(|end| b.stop_lsn <= end)
        })
    }

    fn timelines_between(&self, from: SegNo, to: SegNo) -> Vec<TimelineId> {
        let mut out: Vec<TimelineId> = Vec::new();
        let mut s = from;
        while s <= to {
            if let Some(rec) = self.segment(s) {
                if out.last() != Some(&rec.timeline) {
                    out.push(rec.timeline);
                }
            }
            s = s.next();
        }
        out
    }
}

/// Plans recovery to `target` over `catalog`.
pub fn plan(
    catalog: &Catalog,
    target: &RecoveryTarget,
    cost: &CostModel,
) -> Result<Plan, PlanError> {
    let RecoveryTarget::Time(t) = target;
    let t = *t;
    if catalog.backups.is_empty() {
        return Err(PlanError::NoBackups);
    }
    let tli = catalog.latest_timeline();
    let line = Timeline::new(catalog, tli)?;
    let size = line.size;

    let on_line: Vec<(usize, &BackupRecord)> = catalog
        .backups
        .iter()
        .enumerate()
        .filter(|(_, b)| line.holds_backup(b))
        .collect();
    let earliest = on_line
        .iter()
        .min_by_key(|(_, b)| b.stop_time)
        .map(|(_, b)| *b);
    let Some(earliest) = earliest else {
        return Err(PlanError::NoBackups);
    };
    let candidates: Vec<(usize, &BackupRecord)> = on_line
        .iter()
        .filter(|(_, b)| b.stop_time < t)
        .copied()
        .collect();
    if candidates.is_empty() {
        return Err(PlanError::BeforeEarliest {
            target: t,
            earliest: earliest.stop_time,
            backup_id: earliest.id.clone(),
        });
    }
    let newest = candidates
        .iter()
        .max_by_key(|(_, b)| b.stop_lsn)
        .map(|(_, b)| *b)
        .unwrap_or(earliest);

    // Walk the WAL from the oldest candidate's start: find the first
    // segment holding a transaction end after the target, or the gap or
    // end of the archive that comes first.
    let first = candidates
        .iter()
        .map(|(_, b)| b.start_lsn.segno(size))
        .min()
        .unwrap_or(SegNo::new(0));
    let last_archived = catalog.wal.keys().map(|(_, s)| *s).max().unwrap_or(first);
    let mut latest: Option<(DateTime<Utc>, String)> = None;
    let mut stop: Option<(SegNo, &WalSegmentRecord)> = None;
    let mut gap: Option<SegNo> = None;
    let mut s = first;
    while s <= last_archived {
        let Some(rec) = line.segment(s) else {
            gap = Some(s);
            break;
        };
        let max = rec.summary.as_ref().and_then(|sum| sum.max_xact_time());
        if let Some(m) = max {
            if m > t {
                stop = Some((s, rec));
                break;
            }
            if latest.as_ref().is_none_or(|(l, _)| m > *l) {
                latest = Some((m, rec.name.clone()));
            }
        }
        s = s.next();
    }
    let Some((stop_seg, stop_rec)) = stop else {
        if let Some(g) = gap {
            let beyond = catalog.wal.keys().any(|(_, s)| *s > g);
            if beyond {
                return Err(PlanError::MissingSegment {
                    segment: line.expected_name(g),
                    backup_id: newest.id.clone(),
                    last_restorable: latest.map(|(l, _)| l.min(t)),
                });
            }
        }
        return Err(PlanError::AfterLatest {
            target: t,
            latest: latest.as_ref().map(|(l, _)| *l),
            latest_segment: latest.map(|(_, n)| n),
        });
    };
    let Some(later) = stop_rec.summary.as_ref().and_then(|s| s.max_xact.clone()) else {
        // `stop` is only set for a segment with a summary and an xact.
        return Err(PlanError::AfterLatest {
            target: t,
            latest: None,
            latest_segment: None,
        });
    };

    // The graph.
    let mut g: DiGraph<Node, f64> = DiGraph::new();
    let source = g.add_node(Node::Source);
    let goal = g.add_node(Node::Target);
    let mut seg_nodes: Vec<(SegNo, NodeIndex)> = Vec::new();
    let mut s = first;
    while s <= stop_seg {
        seg_nodes.push((s, g.add_node(Node::Replayed(s))));
        s = s.next();
    }
    let seg_node = |s: SegNo| seg_nodes.iter().find(|(n, _)| *n == s).map(|(_, i)| *i);
    let seg_cost = |s: SegNo| {
        line.segment(s)
            .map(|r| cost.replay(r.raw_bytes))
            .unwrap_or(0.0)
    };
    for w in seg_nodes.windows(2) {
        g.add_edge(w[0].1, w[1].1, seg_cost(w[1].0));
    }
    if let Some((_, last)) = seg_nodes.last() {
        g.add_edge(*last, goal, cost.startup_secs);
    }
    for (i, b) in &candidates {
        let start = b.start_lsn.segno(size);
        let Some(first_seg) = seg_node(start) else {
            continue; // starts after the stop segment
        };
        let bn = g.add_node(Node::Backup(*i));
        g.add_edge(source, bn, cost.restore(b.stored_bytes, b.raw_bytes));
        g.add_edge(bn, first_seg, seg_cost(start));
    }
    let route = petgraph::algo::astar(&g, source, |n| n == goal, |e| *e.weight(), |_| 0.0);
    let Some((_total, path)) = route else {
        return Err(PlanError::BeforeEarliest {
            target: t,
            earliest: earliest.stop_time,
            backup_id: earliest.id.clone(),
        });
    };
    let chosen = path
        .iter()
        .find_map(|n| match g[*n] {
            Node::Backup(i) => Some(i),
            _ => None,
        })
        .and_then(|i| catalog.backups.get(i));
    let Some(chosen) = chosen else {
        return Err(PlanError::NoBackups);
    };

    // Steps and evidence.
    let start_seg = chosen.start_lsn.segno(size);
    let mut wal_bytes = 0u64;
    let mut wal_stored = 0u64;
    let mut count = 0u64;
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
    let restore_secs = cost.restore(chosen.stored_bytes, chosen.raw_bytes);
    let replay_secs = cost.replay(wal_bytes);
    let steps = vec![
        Step::RestoreBackup {
            backup_id: chosen.id.clone(),
            files: chosen.files,
            bytes: chosen.raw_bytes,
            stored_bytes: chosen.stored_bytes,
            estimated_seconds: restore_secs,
        },
        Step::ReplayWal {
            timeline: tli,
            from_segment: from_name.clone(),
            to_segment: stop_rec.name.clone(),
            segments: count,
            bytes: wal_bytes,
            stored_bytes: wal_stored,
            estimated_seconds: replay_secs,
        },
        Step::StopAtTarget {
            description: format!(
                "stop before the first transaction that ended after {}",
                super::pg_time(t)
            ),
            estimated_seconds: cost.startup_secs,
        },
    ];
    let tlis = line.timelines_between(start_seg, stop_seg);
    let tli_text = tlis
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" → ");
    let evidence = vec![
        format!(
            "backup {} is consistent at {} (finished {}), before the target",
            chosen.id, chosen.stop_lsn, chosen.stop_time
        ),
        format!(
            "WAL is continuous from {from_name} to {} ({count} segments, timeline {tli_text}), every segment archived with a SHA-256",
            stop_rec.name
        ),
        format!(
            "segment {} holds the end of transaction {} at {}, after the target: recovery stops there at the latest",
            stop_rec.name, later.xid, later.time
        ),
    ];
    let alternatives = candidates
        .iter()
        .filter(|(_, b)| b.id != chosen.id && seg_node(b.start_lsn.segno(size)).is_some())
        .map(|(_, b)| format!("backup {} (finished {})", b.id, b.stop_time))
        .collect();
    let total_bytes = chosen.stored_bytes + wal_stored;
    Ok(Plan {
        target: target.clone(),
        timeline: tli,
        backup: BackupChoice {
            id: chosen.id.clone(),
            timeline: chosen.timeline,
            start_lsn: chosen.start_lsn,
            stop_lsn: chosen.stop_lsn,
            stop_time: chosen.stop_time,
        },
        estimated_seconds: steps.iter().map(Step::estimated_seconds).sum(),
        steps,
        stop: StopPoint {
            segment: stop_rec.name.clone(),
            later_xid: later.xid,
            later_lsn: later.lsn,
            later_time: later.time,
        },
        total_bytes,
        evidence,
        alternatives,
    })
}

/// The span of times a `--to` target can be planned for on the latest
/// timeline: from the end of the earliest backup to (not including) the
/// last transaction end in WAL that is continuous from the newest backup.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Window {
    pub timeline: TimelineId,
    pub earliest: Option<DateTime<Utc>>,
    pub earliest_backup: Option<String>,
    pub latest: Option<DateTime<Utc>>,
    pub latest_segment: Option<String>,
}

pub fn restorable_window(catalog: &Catalog) -> Result<Window, PlanError> {
    let tli = catalog.latest_timeline();
    let line = Timeline::new(catalog, tli)?;
    let on_line: Vec<&BackupRecord> = catalog
        .backups
        .iter()
        .filter(|b| line.holds_backup(b))
        .collect();
    let earliest = on_line.iter().min_by_key(|b| b.stop_time);
    let mut window = Window {
        timeline: tli,
        earliest: earliest.map(|b| b.stop_time),
        earliest_backup: earliest.map(|b| b.id.clone()),
        latest: None,
        latest_segment: None,
    };
    let Some(newest) = on_line.iter().max_by_key(|b| b.stop_lsn) else {
        return Ok(window);
    };
    let mut s = newest.start_lsn.segno(line.size);
    while let Some(rec) = line.segment(s) {
        if let Some(m) = rec.summary.as_ref().and_then(|x| x.max_xact_time()) {
            if window.latest.is_none_or(|l| m > l) {
                window.latest = Some(m);
                window.latest_segment = Some(rec.name.clone());
            }
        }
        s = s.next();
    }
    Ok(window)
}
