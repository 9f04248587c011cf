//! The route: which backup to restore and which WAL to replay to reach a
//! located stop, the cheapest by estimated seconds (`cost`). Nodes are
//! restorable states: a virtual source, "backup B restored", "WAL
//! replayed through segment s" on the timeline's history, and the target.
//! A segment edge exists only when the segment is archived, so a route
//! never crosses a gap; Dijkstra (petgraph's A* with a zero heuristic,
//! which also returns the path) picks the backup. New kinds of states
//! (snapshots, incremental chains) are new node and edge kinds here.
//! `--immediate` needs no graph: each backup replays only its own WAL.

use petgraph::graph::{DiGraph, NodeIndex};

use super::cost::CostModel;
use super::evidence;
use super::locate::Located;
use super::timeline::{LineBackups, Timeline, Walk};
use super::{PlanError, RecoveryTarget};
use crate::catalog::BackupRecord;
use crate::pg::SegNo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Source,
    /// A backup, by its index in the catalog.
    Backup(usize),
    Replayed(SegNo),
    Target,
}

/// The chosen backup, and the others that could also reach the target.
#[derive(Debug)]
pub(super) struct Route<'a> {
    pub chosen: &'a BackupRecord,
    pub alternatives: Vec<String>,
}

/// The cheapest route to `located` from the backups on the line.
pub(super) fn cheapest<'a>(
    line: &Timeline<'a>,
    backups: &LineBackups<'a>,
    target: &RecoveryTarget,
    located: &Located,
    cost: &CostModel,
) -> Result<Route<'a>, PlanError> {
    let size = line.size;
    let stop_seg = located.segno;
    // Backups that can reach the target: consistent before it, starting
    // no later than the stop segment.
    let candidates: Vec<(usize, &BackupRecord)> = backups
        .all
        .iter()
        .filter(|(_, b)| b.stop_lsn.prev_segno(size) <= stop_seg)
        .filter(|(_, b)| located.start_by.admits(b))
        .copied()
        .collect();
    if candidates.is_empty() {
        return Err(PlanError::NoBackupBefore {
            target: target.to_string(),
            timeline: line.tli,
            earliest_lsn: backups.earliest.stop_lsn,
            backup_id: backups.earliest.id.clone(),
        });
    }
    let first = candidates
        .iter()
        .map(|(_, b)| b.start_lsn.segno(size))
        .min()
        .unwrap_or(backups.first_start());

    let mut g: DiGraph<Node, f64> = DiGraph::new();
    let source = g.add_node(Node::Source);
    let goal = g.add_node(Node::Target);
    let mut seg_nodes: Vec<(SegNo, NodeIndex)> = Vec::new();
    let mut s = first;
    while s <= stop_seg {
        if line.segment(s).is_some() {
            seg_nodes.push((s, g.add_node(Node::Replayed(s))));
        }
        s = s.next();
    }
    // seg_nodes is sorted by segment number.
    let seg_node = |s: SegNo| {
        seg_nodes
            .binary_search_by_key(&s, |(n, _)| *n)
            .ok()
            .map(|i| seg_nodes[i].1)
    };
    let seg_cost = |s: SegNo| {
        line.segment(s)
            .map(|r| cost.replay(r.raw_bytes))
            .unwrap_or(0.0)
    };
    for w in seg_nodes.windows(2) {
        if w[1].0 == w[0].0.next() {
            g.add_edge(w[0].1, w[1].1, seg_cost(w[1].0));
        }
    }
    if let Some(last) = seg_node(stop_seg) {
        g.add_edge(last, goal, cost.startup_secs);
    }
    for (i, b) in &candidates {
        let start = b.start_lsn.segno(size);
        let Some(first_seg) = seg_node(start) else {
            continue;
        };
        let bn = g.add_node(Node::Backup(*i));
        g.add_edge(source, bn, cost.restore(b.stored_bytes, b.raw_bytes));
        g.add_edge(bn, first_seg, seg_cost(start));
    }
    let route = petgraph::algo::astar(&g, source, |n| n == goal, |e| *e.weight(), |_| 0.0);
    let Some((_total, path)) = route else {
        // Every candidate's WAL has a gap before the stop segment.
        let newest = candidates
            .iter()
            .max_by_key(|(_, b)| b.stop_lsn)
            .map(|(_, b)| *b)
            .unwrap_or(backups.earliest);
        let start = newest.start_lsn.segno(size);
        let gap = match line.walk(start, |s, _| s > stop_seg) {
            Walk::Gap(g) => g,
            _ => start,
        };
        return Err(PlanError::MissingSegment {
            segment: line.expected_name(gap),
            backup_id: newest.id.clone(),
            last_restorable: line.latest_time(start, gap).map(|(t, _)| t),
        });
    };
    let chosen = path
        .iter()
        .find_map(|n| match g[*n] {
            Node::Backup(i) => Some(i),
            _ => None,
        })
        .and_then(|i| line.catalog().backups.get(i));
    let Some(chosen) = chosen else {
        return Err(PlanError::NoBackups);
    };
    let alternatives = candidates
        .iter()
        .filter(|(_, b)| b.id != chosen.id && seg_node(b.start_lsn.segno(size)).is_some())
        .map(|(_, b)| evidence::alternative(b))
        .collect();
    Ok(Route {
        chosen,
        alternatives,
    })
}

/// `--immediate`: each backup needs only its own WAL, from its start to
/// its consistency point; the cheapest complete one wins (the first, in
/// catalog order, on a tie). Every other backup on the line is listed
/// as an alternative.
pub(super) fn self_contained<'a>(
    line: &Timeline<'a>,
    backups: &LineBackups<'a>,
    cost: &CostModel,
) -> Result<Route<'a>, PlanError> {
    let size = line.size;
    let mut best: Option<(f64, &BackupRecord)> = None;
    let mut gap: Option<(SegNo, &BackupRecord)> = None;
    for (_, b) in &backups.all {
        let (start, stop) = (b.start_lsn.segno(size), b.stop_lsn.prev_segno(size));
        let mut s = start;
        let mut c = cost.restore(b.stored_bytes, b.raw_bytes) + cost.startup_secs;
        let mut complete = true;
        while s <= stop {
            match line.segment(s) {
                Some(r) => c += cost.replay(r.raw_bytes),
                None => {
                    gap.get_or_insert((s, b));
                    complete = false;
                    break;
                }
            }
            s = s.next();
        }
        if complete && best.as_ref().is_none_or(|(bc, _)| c < *bc) {
            best = Some((c, b));
        }
    }
    let Some((_, chosen)) = best else {
        let (g, b) = gap.ok_or(PlanError::NoBackups)?;
        return Err(PlanError::MissingSegment {
            segment: line.expected_name(g),
            backup_id: b.id.clone(),
            last_restorable: None,
        });
    };
    let alternatives = backups
        .all
        .iter()
        .filter(|(_, b)| b.id != chosen.id)
        .map(|(_, b)| evidence::alternative(b))
        .collect();
    Ok(Route {
        chosen,
        alternatives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::plan::locate::StartBy;
    use crate::plan::testkit::{lsn, seg_name, tli, Kit};
    use crate::plan::StopPoint;

    /// A stop in segment `s` of timeline 1.
    fn stop_in(s: u64, start_by: StartBy) -> Located {
        Located {
            segno: SegNo::new(s),
            stop: StopPoint {
                segment: seg_name(1, s),
                description: String::new(),
                lsn: None,
                time: None,
                xid: None,
            },
            start_by,
        }
    }

    fn route_to(
        c: &Catalog,
        s: u64,
        start_by: StartBy,
    ) -> Result<(String, Vec<String>), PlanError> {
        let line = Timeline::new(c, tli(1)).unwrap();
        let backups = line.backups().unwrap();
        let r = cheapest(
            &line,
            &backups,
            &RecoveryTarget::Latest,
            &stop_in(s, start_by),
            &CostModel::default(),
        )?;
        Ok((r.chosen.id.clone(), r.alternatives))
    }

    fn ids(alternatives: &[String]) -> Vec<&str> {
        alternatives
            .iter()
            .filter_map(|a| a.strip_prefix("backup ")?.split(' ').next())
            .collect()
    }

    #[test]
    fn the_cheaper_of_restoring_more_or_replaying_more() {
        // 19 segments of replay cost about 5.3 s: less than restoring
        // 4000 MiB (21 s), more than restoring 4 MiB.
        let c = Kit::new()
            .segments(1, 1..=20)
            .backup("far", 1, 1, 1)
            .backup("near", 1, 18, 1000)
            .build();
        let (chosen, alt) = route_to(&c, 20, StartBy::Any).unwrap();
        assert_eq!(chosen, "far");
        assert_eq!(ids(&alt), ["near"]);

        let c = Kit::new()
            .segments(1, 1..=20)
            .backup("far", 1, 1, 1000)
            .backup("near", 1, 18, 1000)
            .build();
        assert_eq!(route_to(&c, 20, StartBy::Any).unwrap().0, "near");
    }

    #[test]
    fn never_across_a_gap() {
        let c = Kit::new()
            .segments(1, 1..=20)
            .without(1, 5)
            .backup("cheap-but-cut-off", 1, 1, 1)
            .backup("dear", 1, 10, 1000)
            .build();
        assert_eq!(route_to(&c, 20, StartBy::Any).unwrap().0, "dear");
    }

    #[test]
    fn every_route_crosses_a_gap() {
        let c = Kit::new()
            .segments(1, 1..=20)
            .without(1, 15)
            .backup("b1", 1, 1, 1)
            .backup("b2", 1, 10, 1)
            .build();
        assert_eq!(
            route_to(&c, 20, StartBy::Any).unwrap_err(),
            PlanError::MissingSegment {
                segment: seg_name(1, 15),
                backup_id: "b2".into(),
                last_restorable: Some(crate::plan::testkit::at(140)),
            }
        );
    }

    #[test]
    fn only_backups_that_can_reach_the_stop() {
        let c = Kit::new()
            .segments(1, 1..=20)
            .backup("b1", 1, 1, 1000)
            .backup("b2", 1, 10, 1)
            .build();
        // b2 is consistent after the stop segment, or after the LSN.
        assert_eq!(route_to(&c, 8, StartBy::Any).unwrap().0, "b1");
        assert_eq!(
            route_to(&c, 20, StartBy::ConsistentBy(lsn(10, 0x80)))
                .unwrap()
                .0,
            "b1"
        );
        assert_eq!(
            route_to(&c, 20, StartBy::ConsistentBy(lsn(1, 0x80))).unwrap_err(),
            PlanError::NoBackupBefore {
                target: RecoveryTarget::Latest.to_string(),
                timeline: tli(1),
                earliest_lsn: lsn(1, 0x100),
                backup_id: "b1".into(),
            }
        );
    }

    fn immediate(c: &Catalog) -> Result<(String, Vec<String>), PlanError> {
        let line = Timeline::new(c, tli(1)).unwrap();
        let backups = line.backups().unwrap();
        let r = self_contained(&line, &backups, &CostModel::default())?;
        Ok((r.chosen.id.clone(), r.alternatives))
    }

    #[test]
    fn immediate_needs_only_the_backups_own_wal() {
        // A gap between the backups matters to neither.
        let c = Kit::new()
            .segments(1, 1..=20)
            .without(1, 5)
            .backup("big", 1, 1, 1000)
            .backup("small", 1, 10, 1)
            .build();
        let (chosen, alt) = immediate(&c).unwrap();
        assert_eq!(chosen, "small");
        assert_eq!(ids(&alt), ["big"]);
        // The cheapest whose own segment is archived.
        let c = Kit::new()
            .segments(1, 1..=20)
            .without(1, 10)
            .backup("big", 1, 1, 1000)
            .backup("small", 1, 10, 1)
            .build();
        assert_eq!(immediate(&c).unwrap().0, "big");
        // On a tie, the first in the catalog.
        let c = Kit::new()
            .segments(1, 1..=20)
            .backup("first", 1, 3, 5)
            .backup("second", 1, 4, 5)
            .build();
        assert_eq!(immediate(&c).unwrap().0, "first");
    }

    #[test]
    fn immediate_with_no_complete_backup() {
        let c = Kit::new()
            .segments(1, 1..=20)
            .without(1, 1)
            .without(1, 10)
            .backup("b1", 1, 1, 1)
            .backup("b2", 1, 10, 1)
            .build();
        assert_eq!(
            immediate(&c).unwrap_err(),
            PlanError::MissingSegment {
                segment: seg_name(1, 1),
                backup_id: "b1".into(),
                last_restorable: None,
            }
        );
    }
}
