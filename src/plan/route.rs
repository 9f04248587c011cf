//! The route: which backup to restore and which WAL to replay to reach a
//! located stop, the cheapest by estimated seconds (`cost`). The states
//! are a virtual source, "backup B restored", "WAL replayed through
//! segment s" on the timeline's history, and the target; a segment is
//! entered only when it is archived, so a route never crosses a gap.
//! Those states form a chain (segment s follows s - 1, and each backup
//! enters it at its start segment), so the shortest path is one pass
//! along the chain: the cost of reaching segment s is the cheaper of
//! coming from s - 1 and restoring a backup that starts there, summed in
//! the same order Dijkstra over that graph would sum it. On equal cost
//! the state reached from the cheaper predecessor wins (the one Dijkstra
//! settles first); on equal predecessors, the route already on the chain,
//! then the backup first in catalog order. New kinds of states (snapshots,
//! incremental chains) would make this a graph again.
//! `--immediate` needs no graph: each backup replays only its own WAL.

use super::cost::CostModel;
use super::evidence;
use super::locate::Located;
use super::timeline::{LineBackups, Timeline};
use super::{PlanError, RecoveryTarget};
use crate::catalog::BackupRecord;
use crate::pg::SegNo;

/// The chosen start point, and the others that could also reach the
/// target, each with what it would cost.
#[derive(Debug)]
pub(super) struct Route<'a> {
    pub chosen: &'a BackupRecord,
    /// The backups that rebuild `chosen`, its full backup first.
    pub chain: Vec<&'a BackupRecord>,
    /// Estimated seconds to bring `chosen` back, and to replay from it to
    /// the stop.
    pub start_secs: f64,
    pub replay_secs: f64,
    /// The others that could reach the target, cheapest first, each with
    /// its estimate and how much more it costs than the chosen one.
    pub alternatives: Vec<String>,
}

/// A start point that could also reach the target, and its estimate.
struct Priced<'a> {
    backup: &'a BackupRecord,
    start_secs: f64,
    replay_secs: f64,
}

impl Priced<'_> {
    fn total(&self) -> f64 {
        self.start_secs + self.replay_secs
    }
}

/// The alternatives as plans list them: cheapest first (catalog order on
/// a tie), each with its estimate against the chosen route's.
fn listed(line: &Timeline<'_>, mut others: Vec<Priced<'_>>, chosen: f64) -> Vec<String> {
    others.sort_by(|a, b| a.total().total_cmp(&b.total()));
    others
        .iter()
        .map(|p| {
            evidence::alternative(
                p.backup,
                &line.chain(p.backup),
                p.start_secs,
                p.replay_secs,
                chosen,
            )
        })
        .collect()
}

/// The cheapest way found so far to have replayed through one segment.
#[derive(Clone, Copy)]
struct Reached {
    /// Estimated seconds from the source.
    cost: f64,
    /// The cost of the state it came from (Dijkstra settles the cheaper
    /// predecessor first, and keeps the first of equal offers).
    from: f64,
    /// Position in the candidate list of the backup restored.
    backup: usize,
}

/// Whether `offer` replaces `held`.
fn better(offer: &Reached, held: &Reached) -> bool {
    offer.cost < held.cost || (offer.cost == held.cost && offer.from < held.from)
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

    // Where each candidate enters the chain, by segment (then catalog order).
    let mut entries: Vec<(SegNo, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(k, (_, b))| (b.start_lsn.segno(size), k))
        .filter(|(s, _)| *s <= stop_seg)
        .collect();
    entries.sort();
    let mut next_entry = 0;
    let mut at_stop: Option<Reached> = None;
    let mut prev: Option<(SegNo, Reached)> = None;
    // Replay seconds summed along the archived segments, and their sum
    // before each candidate's start segment: what replay from it costs.
    let mut replayed = 0.0;
    let mut before: Vec<Option<f64>> = vec![None; candidates.len()];
    let start_costs: Vec<f64> = candidates
        .iter()
        .map(|(_, b)| line.start_cost(b, cost))
        .collect();
    for r in line.archived(first, stop_seg) {
        let s = r.segno;
        while entries.get(next_entry).is_some_and(|(e, _)| *e < s) {
            next_entry += 1;
        }
        let step = cost.replay(r.raw_bytes());
        for (e, k) in entries[next_entry..].iter().take_while(|(e, _)| *e == s) {
            debug_assert_eq!(*e, s);
            before[*k] = Some(replayed);
        }
        replayed += step;
        let mut here: Option<Reached> = match prev {
            Some((p, held)) if p.next() == s => Some(Reached {
                cost: held.cost + step,
                from: held.cost,
                backup: held.backup,
            }),
            _ => None,
        };
        while let Some((_, k)) = entries.get(next_entry).filter(|(e, _)| *e == s) {
            let restore = start_costs[*k];
            let offer = Reached {
                cost: restore + step,
                from: restore,
                backup: *k,
            };
            if here.as_ref().is_none_or(|h| better(&offer, h)) {
                here = Some(offer);
            }
            next_entry += 1;
        }
        prev = here.map(|h| (s, h));
        if s == stop_seg {
            at_stop = here;
        }
    }
    let Some(reached) = at_stop else {
        // Every candidate's WAL has a gap before the stop segment.
        let newest = candidates
            .iter()
            .max_by_key(|(_, b)| b.stop_lsn)
            .map(|(_, b)| *b)
            .unwrap_or(backups.earliest);
        let start = newest.start_lsn.segno(size);
        let gap = line.gap_before(start, stop_seg).unwrap_or(start);
        return Err(PlanError::MissingSegment {
            segment: line.expected_name(gap),
            backup_id: newest.id.clone(),
            last_restorable: line.latest_time(start, gap).map(|(t, _)| t),
        });
    };
    let Some((_, chosen)) = candidates.get(reached.backup) else {
        return Err(PlanError::NoBackups);
    };
    let chosen: &'a BackupRecord = chosen;
    let replay_from = |k: usize| before[k].map(|b| replayed - b).unwrap_or(0.0);
    let start_secs = start_costs[reached.backup];
    let replay_secs = replay_from(reached.backup);
    // Only backups whose WAL reaches the stop unbroken are possible.
    let others = candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, b))| {
            let start = b.start_lsn.segno(size);
            b.id != chosen.id
                && first <= start
                && start <= stop_seg
                && line.missing(start, stop_seg, 1).is_empty()
        })
        .map(|(k, (_, b))| Priced {
            backup: b,
            start_secs: start_costs[k],
            replay_secs: replay_from(k),
        })
        .collect();
    Ok(Route {
        chosen,
        chain: line.chain(chosen),
        start_secs,
        replay_secs,
        alternatives: listed(line, others, start_secs + replay_secs),
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
    let mut best: Option<usize> = None;
    let mut gap: Option<(SegNo, &BackupRecord)> = None;
    let mut complete: Vec<Priced<'a>> = Vec::new();
    for (_, b) in &backups.all {
        let (start, stop) = (b.start_lsn.segno(size), b.stop_lsn.prev_segno(size));
        let mut s = start;
        let mut replay = 0.0;
        let mut whole = true;
        while s <= stop {
            match line.seg(s) {
                Some(r) => replay += cost.replay(r.raw_bytes()),
                None => {
                    gap.get_or_insert((s, b));
                    whole = false;
                    break;
                }
            }
            s = s.next();
        }
        if whole {
            let offer = Priced {
                backup: b,
                start_secs: line.start_cost(b, cost),
                replay_secs: replay,
            };
            if best.is_none_or(|k| offer.total() < complete[k].total()) {
                best = Some(complete.len());
            }
            complete.push(offer);
        }
    }
    let Some(k) = best else {
        let (g, b) = gap.ok_or(PlanError::NoBackups)?;
        return Err(PlanError::MissingSegment {
            segment: line.expected_name(g),
            backup_id: b.id.clone(),
            last_restorable: None,
        });
    };
    let chosen = complete.remove(k);
    Ok(Route {
        chosen: chosen.backup,
        chain: line.chain(chosen.backup),
        start_secs: chosen.start_secs,
        replay_secs: chosen.replay_secs,
        alternatives: listed(line, complete, chosen.total()),
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
        let (chosen, alt) = route_to(&c, 20, StartBy::Any).unwrap();
        assert_eq!(chosen, "dear");
        assert!(
            alt.is_empty(),
            "a backup the gap cuts off is no alternative: {alt:?}"
        );
        // Before the gap it is one.
        let c = Kit::new()
            .segments(1, 1..=20)
            .without(1, 15)
            .backup("early", 1, 1, 1000)
            .backup("late", 1, 10, 1)
            .build();
        let (chosen, alt) = route_to(&c, 12, StartBy::Any).unwrap();
        assert_eq!((chosen.as_str(), ids(&alt)), ("late", vec!["early"]));
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
        let (chosen, alt) = immediate(&c).unwrap();
        assert_eq!(chosen, "big");
        assert!(
            alt.is_empty(),
            "an incomplete backup is no alternative: {alt:?}"
        );
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
