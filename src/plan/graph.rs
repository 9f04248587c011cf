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
use super::{
    BackupChoice, Plan, PlanError, RecoveryTarget, Step, StopPoint, TargetSpec, TimelineChoice,
};
use crate::catalog::{BackupRecord, Catalog, WalSegmentRecord};
use crate::pg::history::HistorySpan;
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalSegmentSize};

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
    /// The highest archived segment number on any timeline.
    last_archived: Option<SegNo>,
}

impl<'a> Timeline<'a> {
    fn new(catalog: &'a Catalog, tli: TimelineId) -> Result<Timeline<'a>, PlanError> {
        let history = catalog.history_of(tli).ok_or(PlanError::NoHistory(tli))?;
        let mut stretches = history.ancestors();
        stretches.reverse();
        Ok(Timeline {
            catalog,
            size: catalog.config.wal_segment_size,
            stretches,
            last_archived: catalog.wal.keys().map(|(_, s)| *s).max(),
        })
    }

    /// The timeline whose file holds segment `segno` on this history: the
    /// stretch it falls in. The segment where a child branches off comes
    /// from the child (its copy holds the parent's WAL up to the switch
    /// point and the child's after it). Postgres' XLogFileReadAnyTLI would
    /// fall back to an older timeline's file when the newer one is missing,
    /// but past the switch point that file is another history: a gap here.
    fn tli_for(&self, segno: SegNo) -> TimelineId {
        self.stretches
            .iter()
            .find(|s| s.begin.segno(self.size) <= segno)
            .map(|s| s.tli)
            .unwrap_or(TimelineId::FIRST)
    }

    /// The archived file recovery will read for `segno`.
    fn segment(&self, segno: SegNo) -> Option<&'a WalSegmentRecord> {
        self.catalog.wal.get(&(self.tli_for(segno), segno))
    }

    /// The name recovery would ask for (for messages about a gap).
    fn expected_name(&self, segno: SegNo) -> String {
        SegmentName::new(self.tli_for(segno), segno, self.size).to_string()
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

/// How a walk along the timeline ended.
enum Walk<'a> {
    /// The predicate held in this segment.
    Found(SegNo, &'a WalSegmentRecord),
    /// Segment missing before the predicate held (a later one exists).
    Gap(SegNo),
    /// The archive ended first.
    End(Option<SegNo>),
}

impl<'a> Timeline<'a> {
    /// Walks archived segments from `first` in order until `hit` holds.
    fn walk(&self, first: SegNo, hit: impl Fn(SegNo, &WalSegmentRecord) -> bool) -> Walk<'a> {
        let last_archived = self.last_archived.unwrap_or(first);
        let mut s = first;
        let mut last_seen = None;
        while s <= last_archived {
            let Some(rec) = self.segment(s) else {
                let beyond = last_archived > s;
                return if beyond {
                    Walk::Gap(s)
                } else {
                    Walk::End(last_seen)
                };
            };
            if hit(s, rec) {
                return Walk::Found(s, rec);
            }
            last_seen = Some(s);
            s = s.next();
        }
        Walk::End(last_seen)
    }

    /// `walk` from each start, newest first: the first that finds the
    /// target wins (an older backup may reach what a newer one cannot,
    /// and a gap before a newer backup does not matter to it); otherwise
    /// the newest start's answer.
    fn walk_any(
        &self,
        starts: &[SegNo],
        hit: impl Fn(SegNo, &WalSegmentRecord) -> bool,
    ) -> Walk<'a> {
        let mut starts = starts.to_vec();
        starts.sort();
        starts.dedup();
        let mut first_answer = None;
        for start in starts.into_iter().rev() {
            match self.walk(start, &hit) {
                found @ Walk::Found(..) => return found,
                other => {
                    first_answer.get_or_insert(other);
                }
            }
        }
        first_answer.unwrap_or(Walk::End(None))
    }

    /// Latest transaction-end time in segments `from..=to`.
    fn latest_time(&self, from: SegNo, to: SegNo) -> Option<(DateTime<Utc>, String)> {
        let mut best: Option<(DateTime<Utc>, String)> = None;
        let mut s = from;
        while s <= to {
            if let Some(rec) = self.segment(s) {
                if let Some(m) = rec.summary.as_ref().and_then(|x| x.max_xact_time()) {
                    if best.as_ref().is_none_or(|(b, _)| m > *b) {
                        best = Some((m, rec.name.clone()));
                    }
                }
            }
            s = s.next();
        }
        best
    }
}

/// Every timeline the repository knows, newest first.
fn known_timelines(catalog: &Catalog) -> Vec<TimelineId> {
    let mut all: Vec<TimelineId> = catalog
        .histories
        .keys()
        .copied()
        .chain(catalog.wal.keys().map(|(t, _)| *t))
        .chain(std::iter::once(TimelineId::FIRST))
        .collect();
    all.sort();
    all.dedup();
    all.reverse();
    all
}

/// Where a named restore point or a transaction end lies: (file's
/// timeline, a position inside it).
fn locations(catalog: &Catalog, target: &RecoveryTarget) -> Vec<(TimelineId, Lsn)> {
    let size = catalog.config.wal_segment_size;
    let mut out = Vec::new();
    for ((tli, segno), rec) in &catalog.wal {
        let Some(sum) = &rec.summary else { continue };
        match target {
            RecoveryTarget::Name(n) => {
                out.extend(
                    sum.restore_points
                        .iter()
                        .filter(|r| &r.name == n)
                        .map(|r| (*tli, r.lsn)),
                );
            }
            RecoveryTarget::Xid(x) if sum.may_hold_xid(*x) => {
                // Where this segment's transaction ends lie: the newest
                // one's record. (A timeline's first segment starts with a
                // copy of its parent's WAL; its newest commit is the child's.)
                let at = sum.max_xact.as_ref().map(|m| m.lsn);
                out.push((
                    *tli,
                    at.or(sum.first_record)
                        .unwrap_or_else(|| segno.start_lsn(size)),
                ));
            }
            _ => {}
        }
    }
    out
}

/// Picks the timeline recovery follows, and says why.
fn choose_timeline(
    catalog: &Catalog,
    spec: &TargetSpec,
) -> Result<(TimelineId, String), PlanError> {
    let latest = catalog.latest_timeline();
    match spec.timeline {
        TimelineChoice::Id(t) => {
            if catalog.history_of(t).is_none() {
                return Err(PlanError::NoHistory(t));
            }
            Ok((t, format!("timeline {t} as asked (--timeline {t})")))
        }
        TimelineChoice::Current => {
            let newest = catalog.backups.iter().max_by_key(|b| b.stop_lsn);
            let t = newest.map(|b| b.timeline).unwrap_or(TimelineId::FIRST);
            Ok((t, format!("current: timeline {t}, the newest backup's")))
        }
        TimelineChoice::Latest => {
            if !matches!(
                spec.target,
                RecoveryTarget::Name(_) | RecoveryTarget::Xid(_)
            ) {
                return Ok((latest, format!("latest: timeline {latest}, the newest in the repository (Postgres' default)")));
            }
            let locs = locations(catalog, &spec.target);
            if locs.is_empty() {
                return Err(PlanError::NotFound {
                    target: spec.target.to_string(),
                    timeline: latest,
                    searched: Some("every archived timeline".into()),
                    hint: match spec.target {
                        RecoveryTarget::Name(_) => "check the name (pg_create_restore_point), or archive the WAL that holds it (SELECT pg_switch_wal())".into(),
                        _ => "the transaction has not ended in archived WAL yet (SELECT pg_switch_wal() on the source), or the xid is wrong".into(),
                    },
                });
            }
            // Timelines whose history reaches the target where it was written.
            let holds = |t: TimelineId| {
                catalog.history_of(t).is_some_and(|h| {
                    locs.iter()
                        .any(|(file_tli, lsn)| h.tli_of_point(*lsn) == *file_tli)
                })
            };
            if holds(latest) {
                return Ok((
                    latest,
                    format!("latest: timeline {latest}, which holds {}", spec.target),
                ));
            }
            let found = known_timelines(catalog).into_iter().find(|t| holds(*t));
            match found {
                Some(t) => Ok((
                    t,
                    format!(
                        "timeline {t}: {} exists only off the newest timeline {latest}, whose history branched away before it (Postgres' default would replay timeline {latest} and never reach it)",
                        spec.target
                    ),
                )),
                None => Err(PlanError::NotFound {
                    target: spec.target.to_string(),
                    timeline: latest,
                    searched: Some("every archived timeline".into()),
                    hint: "no timeline's history reaches it".into(),
                }),
            }
        }
    }
}

/// Plans recovery to `spec` over `catalog`.
pub fn plan(catalog: &Catalog, spec: &TargetSpec, cost: &CostModel) -> Result<Plan, PlanError> {
    if catalog.backups.is_empty() {
        return Err(PlanError::NoBackups);
    }
    let (tli, timeline_reason) = choose_timeline(catalog, spec)?;
    let line = Timeline::new(catalog, tli)?;
    let size = line.size;
    let target = &spec.target;

    let on_line: Vec<(usize, &BackupRecord)> = catalog
        .backups
        .iter()
        .enumerate()
        .filter(|(_, b)| line.holds_backup(b))
        .collect();
    let Some(earliest) = on_line
        .iter()
        .min_by_key(|(_, b)| b.stop_lsn)
        .map(|(_, b)| *b)
    else {
        return Err(PlanError::NotFound {
            target: "a backup".into(),
            timeline: tli,
            searched: None,
            hint: "no backup lies on this timeline's history: take one with `pitr backup`".into(),
        });
    };
    let first_all = on_line
        .iter()
        .map(|(_, b)| b.start_lsn.segno(size))
        .min()
        .unwrap_or(SegNo::new(0));

    // Where each backup on the line starts replaying.
    let all_starts: Vec<SegNo> = on_line
        .iter()
        .map(|(_, b)| b.start_lsn.segno(size))
        .collect();
    // A target the archive does not hold on this timeline.
    let not_found = |hint: &str| PlanError::NotFound {
        target: target.to_string(),
        timeline: tli,
        searched: None,
        hint: hint.to_string(),
    };
    // A gap met before a non-time target was found.
    let gap_error = |g: SegNo| PlanError::MissingSegment {
        segment: line.expected_name(g),
        backup_id: earliest.id.clone(),
        last_restorable: None,
    };

    // Where the target lies: the last segment recovery needs, and why.
    let (stop_seg, stop, limit_lsn): (SegNo, StopPoint, Option<Lsn>) = match target {
        RecoveryTarget::Time(t) => {
            let t = *t;
            if on_line.iter().all(|(_, b)| b.stop_time >= t) {
                let e = on_line
                    .iter()
                    .min_by_key(|(_, b)| b.stop_time)
                    .map(|(_, b)| *b)
                    .unwrap_or(earliest);
                return Err(PlanError::BeforeEarliest {
                    target: t,
                    earliest: e.stop_time,
                    backup_id: e.id.clone(),
                });
            }
            let first = on_line
                .iter()
                .filter(|(_, b)| b.stop_time < t)
                .map(|(_, b)| b.start_lsn.segno(size))
                .min()
                .unwrap_or(first_all);
            let after = |_: SegNo, r: &WalSegmentRecord| {
                r.summary
                    .as_ref()
                    .and_then(|x| x.max_xact_time())
                    .is_some_and(|m| m > t)
            };
            let starts: Vec<SegNo> = on_line
                .iter()
                .filter(|(_, b)| b.stop_time < t)
                .map(|(_, b)| b.start_lsn.segno(size))
                .collect();
            match line.walk_any(&starts, after) {
                Walk::Found(s, rec) => {
                    let later = rec.summary.as_ref().and_then(|x| x.max_xact.clone());
                    (
                        s,
                        StopPoint {
                            segment: rec.name.clone(),
                            description: format!(
                                "segment {} holds the end of transaction {} at {}, after the target: recovery stops there at the latest",
                                rec.name,
                                later.as_ref().map(|x| x.xid).unwrap_or_default(),
                                later.as_ref().map(|x| x.time.to_string()).unwrap_or_default()
                            ),
                            lsn: later.as_ref().map(|x| x.lsn),
                            time: later.as_ref().map(|x| x.time),
                            xid: later.as_ref().map(|x| x.xid),
                        },
                        None,
                    )
                }
                Walk::Gap(g) => {
                    return Err(PlanError::MissingSegment {
                        segment: line.expected_name(g),
                        backup_id: newest_before(&on_line, |b| b.stop_time < t)
                            .unwrap_or(earliest)
                            .id
                            .clone(),
                        last_restorable: line.latest_time(first, g).map(|(l, _)| l.min(t)),
                    })
                }
                Walk::End(last) => {
                    let latest = last.and_then(|l| line.latest_time(first, l));
                    return Err(PlanError::AfterLatest {
                        target: t,
                        latest: latest.as_ref().map(|(l, _)| *l),
                        latest_segment: latest.map(|(_, n)| n),
                    });
                }
            }
        }
        RecoveryTarget::Lsn(l) => {
            let want = l.segno(size);
            let first = first_all.min(want);
            let mut starts: Vec<SegNo> =
                all_starts.iter().copied().filter(|s| *s <= want).collect();
            if starts.is_empty() {
                starts.push(first);
            }
            match line.walk_any(&starts, |s, _| s >= want) {
                Walk::Found(s, rec) => {
                    // A record must start at or after the target, or
                    // Postgres ends recovery before reaching it.
                    let ends_after = rec
                        .summary
                        .as_ref()
                        .and_then(|x| x.end_lsn)
                        .is_some_and(|e| e > *l);
                    let more = line.segment(s.next()).is_some();
                    if !ends_after && !more {
                        return Err(PlanError::AfterEnd {
                            target: target.to_string(),
                            timeline: tli,
                            end: rec.summary.as_ref().and_then(|x| x.end_lsn),
                        });
                    }
                    let s = if ends_after { s } else { s.next() };
                    let name = line
                        .segment(s)
                        .map(|r| r.name.clone())
                        .unwrap_or_else(|| rec.name.clone());
                    (
                        s,
                        StopPoint {
                            segment: name.clone(),
                            description: format!(
                                "recovery stops at the first record at or after {l} ({}), in segment {name}",
                                if spec.inclusive { "replaying it" } else { "before it" }
                            ),
                            lsn: Some(*l),
                            time: None,
                            xid: None,
                        },
                        Some(*l),
                    )
                }
                Walk::Gap(g) => return Err(gap_error(g)),
                Walk::End(last) => {
                    return Err(PlanError::AfterEnd {
                        target: target.to_string(),
                        timeline: tli,
                        end: last
                            .and_then(|s| line.segment(s))
                            .and_then(|r| r.summary.as_ref())
                            .and_then(|x| x.end_lsn),
                    })
                }
            }
        }
        RecoveryTarget::Name(n) => {
            let rp_on_line = |r: &WalSegmentRecord| {
                r.summary
                    .as_ref()
                    .and_then(|x| x.restore_points.iter().find(|p| &p.name == n).cloned())
            };
            match line.walk_any(&all_starts, |_, r| rp_on_line(r).is_some()) {
                Walk::Found(s, rec) => {
                    let rp = rp_on_line(rec);
                    (
                        s,
                        StopPoint {
                            segment: rec.name.clone(),
                            description: format!(
                                "restore point {n:?}{} in segment {}: recovery stops right after it",
                                rp.as_ref().map(|p| format!(" at {} (created {})", p.lsn, p.time)).unwrap_or_default(),
                                rec.name
                            ),
                            lsn: rp.as_ref().map(|p| p.lsn),
                            time: rp.as_ref().map(|p| p.time),
                            xid: None,
                        },
                        rp.map(|p| p.lsn),
                    )
                }
                Walk::Gap(g) => return Err(gap_error(g)),
                Walk::End(_) => {
                    return Err(not_found(
                        "check the name and the timeline (--timeline), or archive the WAL that holds it",
                    ))
                }
            }
        }
        RecoveryTarget::Xid(x) => {
            let holds = |_: SegNo, r: &WalSegmentRecord| {
                r.summary.as_ref().is_some_and(|s| s.may_hold_xid(*x))
            };
            match line.walk_any(&all_starts, holds) {
                Walk::Found(s, rec) => (
                    s,
                    StopPoint {
                        segment: rec.name.clone(),
                        description: format!(
                            "transaction {x} ends in segment {} (its transaction ends span xids {}..{}): recovery stops {} it",
                            rec.name,
                            rec.summary.as_ref().and_then(|s| s.min_xid).unwrap_or_default(),
                            rec.summary.as_ref().and_then(|s| s.max_xid).unwrap_or_default(),
                            if spec.inclusive { "right after" } else { "right before" }
                        ),
                        lsn: None,
                        time: None,
                        xid: Some(*x),
                    },
                    Some(rec.segno.start_lsn(size)),
                ),
                Walk::Gap(g) => return Err(gap_error(g)),
                Walk::End(_) => {
                    return Err(not_found(
                        "the transaction has not ended in archived WAL on this timeline (SELECT pg_switch_wal() on the source), or the xid is wrong",
                    ))
                }
            }
        }
        RecoveryTarget::Latest => {
            // As far as WAL is continuous from the newest backup.
            let newest = on_line
                .iter()
                .max_by_key(|(_, b)| b.stop_lsn)
                .map(|(_, b)| *b)
                .unwrap_or(earliest);
            let start = newest.start_lsn.segno(size);
            let end = match line.walk(start, |_, _| false) {
                Walk::End(Some(s)) | Walk::Gap(s) if s > start => {
                    if line.segment(s).is_some() {
                        s
                    } else {
                        SegNo::new(s.get() - 1)
                    }
                }
                _ => start,
            };
            let Some(rec) = line.segment(end) else {
                return Err(PlanError::MissingSegment {
                    segment: line.expected_name(start),
                    backup_id: newest.id.clone(),
                    last_restorable: None,
                });
            };
            let end_lsn = rec.summary.as_ref().and_then(|x| x.end_lsn);
            (
                end,
                StopPoint {
                    segment: rec.name.clone(),
                    description: format!(
                        "the end of continuous archived WAL: segment {}{}",
                        rec.name,
                        end_lsn
                            .map(|e| format!(", last record ends at {e}"))
                            .unwrap_or_default()
                    ),
                    lsn: end_lsn,
                    time: line.latest_time(start, end).map(|(t, _)| t),
                    xid: None,
                },
                None,
            )
        }
        RecoveryTarget::Immediate => {
            return plan_immediate(catalog, spec, &line, &on_line, cost, timeline_reason)
        }
    };

    // Backups that can reach the target: consistent before it, starting
    // no later than the stop segment.
    let candidates: Vec<(usize, &BackupRecord)> = on_line
        .iter()
        .filter(|(_, b)| b.stop_lsn.prev_segno(size) <= stop_seg)
        .filter(|(_, b)| match (target, limit_lsn) {
            (RecoveryTarget::Time(t), _) => b.stop_time < *t,
            (RecoveryTarget::Xid(_), _) => true,
            (_, Some(l)) => b.stop_lsn <= l,
            _ => true,
        })
        .copied()
        .collect();
    if candidates.is_empty() {
        return Err(PlanError::NoBackupBefore {
            target: target.to_string(),
            timeline: tli,
            earliest_lsn: earliest.stop_lsn,
            backup_id: earliest.id.clone(),
        });
    }
    let first = candidates
        .iter()
        .map(|(_, b)| b.start_lsn.segno(size))
        .min()
        .unwrap_or(first_all);

    // The graph.
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
            .unwrap_or(earliest);
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
        .and_then(|i| catalog.backups.get(i));
    let Some(chosen) = chosen else {
        return Err(PlanError::NoBackups);
    };
    let alternatives = candidates
        .iter()
        .filter(|(_, b)| b.id != chosen.id && seg_node(b.start_lsn.segno(size)).is_some())
        .map(|(_, b)| format!("backup {} (finished {})", b.id, b.stop_time))
        .collect();
    Ok(finish_plan(
        spec,
        tli,
        timeline_reason,
        &line,
        chosen,
        stop_seg,
        stop,
        alternatives,
        cost,
    ))
}

fn newest_before<'a>(
    on_line: &[(usize, &'a BackupRecord)],
    ok: impl Fn(&BackupRecord) -> bool,
) -> Option<&'a BackupRecord> {
    on_line
        .iter()
        .filter(|(_, b)| ok(b))
        .max_by_key(|(_, b)| b.stop_lsn)
        .map(|(_, b)| *b)
}

/// `--immediate`: each backup needs only its own WAL; the cheapest wins.
fn plan_immediate(
    catalog: &Catalog,
    spec: &TargetSpec,
    line: &Timeline<'_>,
    on_line: &[(usize, &BackupRecord)],
    cost: &CostModel,
    timeline_reason: String,
) -> Result<Plan, PlanError> {
    let size = line.size;
    let mut best: Option<(f64, &BackupRecord, SegNo)> = None;
    let mut gap: Option<(SegNo, &BackupRecord)> = None;
    for (_, b) in on_line {
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
        if complete && best.as_ref().is_none_or(|(bc, _, _)| c < *bc) {
            best = Some((c, b, stop));
        }
    }
    let Some((_, chosen, stop_seg)) = best else {
        let (g, b) = gap.ok_or(PlanError::NoBackups)?;
        return Err(PlanError::MissingSegment {
            segment: line.expected_name(g),
            backup_id: b.id.clone(),
            last_restorable: None,
        });
    };
    let name = line
        .segment(stop_seg)
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let stop = StopPoint {
        segment: name.clone(),
        description: format!(
            "backup {} becomes consistent at {} in segment {name}: recovery stops there",
            chosen.id, chosen.stop_lsn
        ),
        lsn: Some(chosen.stop_lsn),
        time: Some(chosen.stop_time),
        xid: None,
    };
    let alternatives = on_line
        .iter()
        .filter(|(_, b)| b.id != chosen.id)
        .map(|(_, b)| format!("backup {} (finished {})", b.id, b.stop_time))
        .collect();
    let _ = catalog;
    Ok(finish_plan(
        spec,
        line_tli(line),
        timeline_reason,
        line,
        chosen,
        stop_seg,
        stop,
        alternatives,
        cost,
    ))
}

fn line_tli(line: &Timeline<'_>) -> TimelineId {
    line.stretches
        .first()
        .map(|s| s.tli)
        .unwrap_or(TimelineId::FIRST)
}

/// Steps, totals and evidence for the chosen backup.
#[allow(clippy::too_many_arguments)]
fn finish_plan(
    spec: &TargetSpec,
    tli: TimelineId,
    timeline_reason: String,
    line: &Timeline<'_>,
    chosen: &BackupRecord,
    stop_seg: SegNo,
    stop: StopPoint,
    alternatives: Vec<String>,
    cost: &CostModel,
) -> Plan {
    let size = line.size;
    let start_seg = chosen.start_lsn.segno(size);
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
            timeline: tli,
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
                    super::pg_time(*t)
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
    let tli_text = line
        .timelines_between(start_seg, stop_seg)
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
            "WAL is continuous from {from_name} to {} ({count} segments, timeline {tli_text}), every segment archived with a content hash (BLAKE3)",
            stop.segment
        ),
        stop.description.clone(),
        format!("recovery follows {timeline_reason}"),
    ];
    Plan {
        target: spec.target.clone(),
        inclusive: spec.inclusive,
        timeline_choice: spec.timeline,
        timeline: tli,
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

/// What can be restored along one timeline's history: from the end of
/// the earliest backup on it (time and LSN) to the last transaction end
/// (time targets must be before it) and the last record (LSN targets) in
/// WAL continuous from the newest backup; and every missing segment from
/// the earliest backup's start to the last archived segment.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Window {
    pub timeline: TimelineId,
    pub earliest: Option<DateTime<Utc>>,
    pub earliest_lsn: Option<Lsn>,
    pub earliest_backup: Option<String>,
    pub latest: Option<DateTime<Utc>>,
    pub latest_lsn: Option<Lsn>,
    pub latest_segment: Option<String>,
    /// Missing segments (at most 100 listed).
    pub gaps: Vec<String>,
}

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
    let last_archived = catalog
        .wal
        .keys()
        .filter(|(t, s)| line.tli_for(*s) == *t)
        .map(|(_, s)| *s)
        .max();
    if let (Some(e), Some(last)) = (earliest, last_archived) {
        let mut s = e.start_lsn.segno(line.size);
        while s <= last && window.gaps.len() < 100 {
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
