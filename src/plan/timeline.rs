//! The timeline view: which timeline recovery follows (`choose`), and that
//! timeline's history as recovery reads it (`Timeline`): which timeline's
//! file holds each segment (the switch points), which backups lie on the
//! history, and walks along its archived segments that stop at a target,
//! a gap or the end of the archive. Everything the locators, the route
//! and the windows know about timelines comes from here.

use chrono::{DateTime, Utc};

use super::{PlanError, RecoveryTarget, TargetSpec, TimelineChoice};
use crate::catalog::{BackupRecord, Catalog, WalSegmentRecord};
use crate::pg::history::HistorySpan;
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalSegmentSize};

/// One timeline's history over the catalog: the segments recovery along
/// it reads, and the backups it can start from.
pub(super) struct Timeline<'a> {
    catalog: &'a Catalog,
    /// The timeline recovery follows (the history's own).
    pub tli: TimelineId,
    pub size: WalSegmentSize,
    /// Newest first.
    stretches: Vec<HistorySpan>,
    /// The highest archived segment number on any timeline.
    last_archived: Option<SegNo>,
}

impl<'a> Timeline<'a> {
    pub fn new(catalog: &'a Catalog, tli: TimelineId) -> Result<Timeline<'a>, PlanError> {
        let history = catalog.history_of(tli).ok_or(PlanError::NoHistory(tli))?;
        let mut stretches = history.ancestors();
        stretches.reverse();
        Ok(Timeline {
            catalog,
            tli,
            size: catalog.config.wal_segment_size,
            stretches,
            last_archived: catalog.wal.keys().map(|(_, s)| *s).max(),
        })
    }

    pub fn catalog(&self) -> &'a Catalog {
        self.catalog
    }

    /// The timeline whose file holds segment `segno` on this history: the
    /// stretch it falls in. The segment where a child branches off comes
    /// from the child (its copy holds the parent's WAL up to the switch
    /// point and the child's after it). Postgres' XLogFileReadAnyTLI would
    /// fall back to an older timeline's file when the newer one is missing,
    /// but past the switch point that file is another history: a gap here.
    pub fn tli_for(&self, segno: SegNo) -> TimelineId {
        self.stretches
            .iter()
            .find(|s| s.begin.segno(self.size) <= segno)
            .map(|s| s.tli)
            .unwrap_or(TimelineId::FIRST)
    }

    /// The archived file recovery will read for `segno`.
    pub fn segment(&self, segno: SegNo) -> Option<&'a WalSegmentRecord> {
        self.catalog.wal.get(&(self.tli_for(segno), segno))
    }

    /// The name recovery would ask for (for messages about a gap).
    pub fn expected_name(&self, segno: SegNo) -> String {
        SegmentName::new(self.tli_for(segno), segno, self.size).to_string()
    }

    /// A backup is on this history if it was taken on one of its
    /// timelines before that timeline branched off.
    pub fn holds_backup(&self, b: &BackupRecord) -> bool {
        self.stretches.iter().any(|s| {
            s.tli == b.timeline
                && b.start_lsn >= s.begin
                && s.end.is_none_or(|end| b.stop_lsn <= end)
        })
    }

    /// The backups on this history, with their index in the catalog, in
    /// catalog order; `None` when there are none.
    pub fn backups(&self) -> Option<LineBackups<'a>> {
        let all: Vec<(usize, &'a BackupRecord)> = self
            .catalog
            .backups
            .iter()
            .enumerate()
            .filter(|(_, b)| self.holds_backup(b))
            .collect();
        let earliest = all
            .iter()
            .min_by_key(|(_, b)| b.stop_lsn)
            .map(|(_, b)| *b)?;
        Some(LineBackups {
            all,
            earliest,
            size: self.size,
        })
    }

    /// The highest segment archived under the name this history reads it
    /// by (a segment only a sibling timeline holds does not count).
    pub fn last_on_history(&self) -> Option<SegNo> {
        self.catalog
            .wal
            .keys()
            .filter(|(t, s)| self.tli_for(*s) == *t)
            .map(|(_, s)| *s)
            .max()
    }

    /// The timelines whose files hold the archived segments `from..=to`,
    /// in order, each once per stretch.
    pub fn timelines_between(&self, from: SegNo, to: SegNo) -> Vec<TimelineId> {
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

    /// Walks archived segments from `first` in order until `hit` holds.
    pub fn walk(&self, first: SegNo, hit: impl Fn(SegNo, &WalSegmentRecord) -> bool) -> Walk<'a> {
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
    pub fn walk_any(
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

    /// Latest transaction-end time in segments `from..=to`, and the name
    /// of the segment that holds it.
    pub fn latest_time(&self, from: SegNo, to: SegNo) -> Option<(DateTime<Utc>, String)> {
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

/// How a walk along the timeline ended.
#[derive(Debug, PartialEq)]
pub(super) enum Walk<'a> {
    /// The predicate held in this segment.
    Found(SegNo, &'a WalSegmentRecord),
    /// Segment missing before the predicate held (a later one exists).
    Gap(SegNo),
    /// The archive ended first (after this segment, if any was seen).
    End(Option<SegNo>),
}

/// The backups on one timeline's history (never empty).
pub(super) struct LineBackups<'a> {
    /// With their index in the catalog, in catalog order.
    pub all: Vec<(usize, &'a BackupRecord)>,
    /// The one consistent first (lowest stop LSN).
    pub earliest: &'a BackupRecord,
    size: WalSegmentSize,
}

impl<'a> LineBackups<'a> {
    /// The segment each backup starts replaying from.
    pub fn starts(&self) -> Vec<SegNo> {
        self.all
            .iter()
            .map(|(_, b)| b.start_lsn.segno(self.size))
            .collect()
    }

    /// The first segment any of them replays.
    pub fn first_start(&self) -> SegNo {
        self.starts().into_iter().min().unwrap_or(SegNo::new(0))
    }

    /// The newest (highest stop LSN) backup for which `ok` holds.
    pub fn newest_where(&self, ok: impl Fn(&BackupRecord) -> bool) -> Option<&'a BackupRecord> {
        self.all
            .iter()
            .filter(|(_, b)| ok(b))
            .max_by_key(|(_, b)| b.stop_lsn)
            .map(|(_, b)| *b)
    }
}

/// Every timeline the repository knows, newest first.
pub(super) fn known_timelines(catalog: &Catalog) -> Vec<TimelineId> {
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

/// Picks the timeline recovery follows, and says why. With the default
/// (latest), a restore point or transaction that the newest timeline's
/// history does not pass through leads to the newest timeline that does.
pub(super) fn choose(
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
