//! Planner invariants on random catalogs, checked against brute force:
//! one or two timelines (2 branching off 1 inside a random segment),
//! random gaps on each, random backups on either. For a time target the
//! plan must exist exactly when some backup has a complete route, cost no
//! more than the cheapest such route, never cross a gap, and never restore
//! a backup the target's timeline does not descend from. Start points are
//! of every kind: full backups, incrementals on a random earlier backup
//! (whose chain a removed parent may break), and snapshots by each
//! provider; and a random `--from` narrows them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::cost::CostModel;
use super::testkit::{self, base, size, SEG};
use super::{plan, PlanError, RecoveryTarget, StartFilter, TargetSpec};
use crate::catalog::{
    BackupRecord, Catalog, Consistency, SnapshotProvider, StartKind, WalSegmentRecord,
};
use crate::pg::history::TimelineHistory;
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId};

/// Latest commit time of segment `s` on timeline `tli`: later segments
/// commit later, timeline 2 after everything on timeline 1.
fn seg_time(tli: u32, s: u64) -> DateTime<Utc> {
    base()
        + Duration::seconds(if tli == 1 {
            10 * s as i64
        } else {
            1000 + 10 * s as i64
        })
}

#[derive(Clone, Debug)]
struct World {
    n1: u64,
    missing1: Vec<bool>,
    /// (segment where timeline 2 branches off, its segment count, gaps)
    branch: Option<(u64, u64, Vec<bool>)>,
    /// (on timeline 2?, start segment, stored MB)
    backups: Vec<(bool, u64, u64)>,
    /// Per backup: its kind (0 full, 1 incremental, 2..=4 a snapshot by
    /// btrfs, copy, command) and which earlier backup an incremental is on.
    kinds: Vec<(u8, usize)>,
    /// A backup removed after the catalog is built (breaking any chain
    /// through it).
    removed: Option<usize>,
    /// `--from`: 0 any, 1 full, 2 incremental, 3 snapshot, 4 the first backup.
    from: u8,
    target_secs: i64,
}

impl World {
    fn from(&self) -> StartFilter {
        match self.from {
            1 => StartFilter::Full,
            2 => StartFilter::Incremental,
            3 => StartFilter::Snapshot,
            4 => StartFilter::Id("b0".into()),
            _ => StartFilter::Any,
        }
    }
}

fn world() -> impl Strategy<Value = World> {
    (4u64..24).prop_flat_map(|n1| {
        (
            Just(n1),
            prop::collection::vec(prop::bool::weighted(0.12), n1 as usize),
            prop::option::of((1..n1).prop_flat_map(|k| {
                (Just(k), 2u64..16).prop_flat_map(|(k, n2)| {
                    (
                        Just(k),
                        Just(n2),
                        prop::collection::vec(prop::bool::weighted(0.12), n2 as usize),
                    )
                })
            })),
            prop::collection::vec((any::<bool>(), 0u64..40, 1u64..500), 1..6),
            prop::collection::vec((0u8..5, 0usize..6), 6),
            prop::option::weighted(0.2, 0usize..6),
            prop::sample::select(vec![0u8, 0, 0, 1, 2, 3, 4]),
            0i64..1500,
        )
            .prop_map(
                |(n1, missing1, branch, backups, kinds, removed, from, target_secs)| World {
                    n1,
                    missing1,
                    branch,
                    backups,
                    kinds,
                    removed,
                    from,
                    target_secs,
                },
            )
    })
}

fn record(tli: u32, s: u64) -> WalSegmentRecord {
    let secs = (seg_time(tli, s) - base()).num_seconds();
    testkit::record(tli, s, 1000 + s as u32, secs)
}

/// The switch point of timeline 2: inside segment k.
fn switchpoint(k: u64) -> Lsn {
    Lsn::new(k * SEG + 0x8000)
}

fn build(w: &World) -> Catalog {
    build_keeping(w, |_| true)
}

/// The catalog of `w` with only the archived segments `keep` admits.
fn build_keeping(w: &World, keep: impl Fn(SegNo) -> bool) -> Catalog {
    let config = testkit::config();
    let mut wal = BTreeMap::new();
    for s in 0..w.n1 {
        if !w.missing1[s as usize] {
            let r = record(1, s);
            wal.insert((r.timeline, r.segno), r);
        }
    }
    let mut histories = BTreeMap::new();
    if let Some((k, n2, missing2)) = &w.branch {
        for i in 0..*n2 {
            if !missing2[i as usize] {
                let r = record(2, k + i);
                wal.insert((r.timeline, r.segno), r);
            }
        }
        let text = format!("1\t{}\tbranch\n", switchpoint(*k));
        let t2 = TimelineId::new(2).unwrap();
        histories.insert(t2, TimelineHistory::parse(t2, &text).unwrap());
    }
    let mut backups = Vec::new();
    for (i, (on2, start, mb)) in w.backups.iter().enumerate() {
        let (tli, s) = match (&w.branch, on2) {
            (Some((k, n2, _)), true) => (2u32, k + 1 + start % n2),
            _ => (1u32, start % w.n1),
        };
        let start_lsn = Lsn::new(s * SEG + 0x28);
        backups.push(BackupRecord {
            id: format!("b{i}"),
            label: String::new(),
            system_id: config.system_id,
            pg_major: config.pg_major,
            timeline: TimelineId::new(tli).unwrap(),
            start_lsn,
            checkpoint_lsn: start_lsn,
            stop_lsn: Lsn::new(s * SEG + 0x100),
            stop_timeline: TimelineId::new(tli).unwrap(),
            start_segment: String::new(),
            stop_segment: String::new(),
            start_time: seg_time(tli, s) - Duration::seconds(5),
            stop_time: seg_time(tli, s) - Duration::seconds(4),
            fingerprint: config.fingerprint.clone(),
            files: 1,
            raw_bytes: (mb * 4) << 20,
            stored_bytes: mb << 20,
            pitr_version: String::new(),
            arch: None,
            start: match w.kinds[i] {
                (1, p) if i > 0 => StartKind::Incremental {
                    parent: format!("b{}", p % i),
                    changed_bytes: (mb << 20) / 2,
                },
                (k @ 2..=4, _) => StartKind::Snapshot {
                    provider: [
                        SnapshotProvider::Btrfs,
                        SnapshotProvider::Copy,
                        SnapshotProvider::Command,
                    ][usize::from(k - 2)],
                    handle: String::new(),
                    consistency: Consistency::Bracketed,
                    commands: None,
                    tablespaces: Vec::new(),
                },
                _ => StartKind::Full,
            },
        });
    }
    if let Some(r) = w.removed {
        let id = format!("b{r}");
        backups.retain(|b| b.id != id);
    }
    Catalog {
        wal: crate::catalog::WalIndex::from_records(
            config.wal_segment_size,
            wal.into_values().filter(|r| keep(r.segno)),
        ),
        config,
        backups,
        histories,
        timings: Vec::new(),
        damaged: Vec::new(),
    }
}

/// Brute force: every backup on the line, walked segment by segment.
/// Returns the cheapest complete route's (cost, backup id).
fn brute_force(
    w: &World,
    c: &Catalog,
    t: DateTime<Utc>,
    cost: &CostModel,
) -> Option<(f64, String)> {
    let (line_tli, k) = match &w.branch {
        Some((k, _, _)) => (2u32, Some(*k)),
        None => (1u32, None),
    };
    let file = |s: u64| {
        let tli = match k {
            Some(k) if s >= k => 2,
            _ => 1,
        };
        c.wal.get(&(TimelineId::new(tli).unwrap(), SegNo::new(s)))
    };
    let on_line = |b: &BackupRecord| match k {
        None => b.timeline.get() == 1,
        Some(k) => b.timeline.get() == 2 || b.stop_lsn <= switchpoint(k),
    };
    let _ = line_tli;
    let max_seg = c.wal.keys().map(|(_, s)| s.get()).max().unwrap_or(0);
    let mut best: Option<(f64, String)> = None;
    let from = w.from();
    for b in c
        .backups
        .iter()
        .filter(|b| on_line(b) && b.stop_time < t && from.admits(b))
    {
        let Ok(chain) = c.chain(&b.id) else { continue };
        let mut s = b.start_lsn.as_u64() / SEG;
        let mut total = cost.start(&chain) + cost.startup_secs;
        // At the end of the archive, a time at the last transaction end
        // is reached through that end's segment (resolved to its LSN).
        let mut at_end: Option<f64> = None;
        let mut latest = None;
        let ok = loop {
            if s > max_seg {
                if let (Some(cost_there), Some(m)) = (at_end, latest) {
                    if m >= t {
                        total = cost_there;
                        break true;
                    }
                }
                break false;
            }
            let Some(r) = file(s) else { break false };
            total += cost.replay(r.raw_bytes);
            let m = r.summary.as_ref().and_then(|x| x.max_xact_time());
            if m.is_some_and(|m| m > t) {
                break true;
            }
            if m.is_some() {
                at_end = Some(total);
                latest = latest.max(m);
            }
            s += 1;
        };
        if ok && best.as_ref().is_none_or(|(c0, _)| total < *c0 - 1e-9) {
            best = Some((total, b.id.clone()));
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn plan_matches_brute_force(w in world()) {
        let c = build(&w);
        let t = base() + Duration::seconds(w.target_secs);
        let cost = CostModel::default();
        let spec = TargetSpec { from: w.from(), ..TargetSpec::new(RecoveryTarget::Time(t)) };
        let got = plan(&c, &spec, &cost);
        let want = brute_force(&w, &c, t, &cost);
        match (&got, &want) {
            (Ok(p), Some((best, _))) => {
                let chosen = c.backups.iter().find(|b| b.id == p.backup.id).unwrap();
                // A start point `--from` admits, whose chain is whole and
                // is the one the plan applies.
                prop_assert!(w.from().admits(chosen));
                let chain = c.chain(&chosen.id);
                prop_assert!(chain.is_ok(), "chosen {} has a broken chain", chosen.id);
                let chain = chain.unwrap();
                let ids: Vec<&str> = chain.iter().map(|b| b.id.as_str()).collect();
                prop_assert_eq!(&p.backup.chain, &ids);
                // Never more expensive than the best complete route.
                let mut total = cost.start(&chain) + cost.startup_secs;
                let start = chosen.start_lsn.as_u64() / SEG;
                let stop_name = &p.stop.segment;
                let mut s = start;
                loop {
                    let tli = match &w.branch { Some((k, _, _)) if s >= *k => 2, _ => 1 };
                    let name = SegmentName::new(TimelineId::new(tli).unwrap(), SegNo::new(s), size()).to_string();
                    // Never crosses a gap.
                    let r = c.wal.get(&(TimelineId::new(tli).unwrap(), SegNo::new(s)));
                    prop_assert!(r.is_some(), "route crosses missing segment {name}");
                    total += cost.replay(SEG);
                    if &name == stop_name { break; }
                    s += 1;
                    prop_assert!(s < 200, "stop segment never reached");
                }
                prop_assert!(total <= best + 1e-6, "plan cost {total} > brute force {best}");
                // The chosen backup lies on the target timeline's history.
                if let Some((k, _, _)) = &w.branch {
                    prop_assert!(chosen.timeline.get() == 2 || chosen.stop_lsn <= switchpoint(*k));
                    prop_assert_eq!(p.timeline.get(), 2);
                }
                prop_assert!(chosen.stop_time < t);
            }
            (Err(e), None) => {
                prop_assert!(matches!(
                    e,
                    PlanError::BeforeEarliest { .. }
                        | PlanError::AfterLatest { .. }
                        | PlanError::MissingSegment { .. }
                        | PlanError::NotFound { .. }
                        | PlanError::NoBackupBefore { .. }
                        | PlanError::NoBackups
                ), "unexpected error {e}");
            }
            (Ok(p), None) => prop_assert!(false, "planned {:?} but brute force found no route", p.backup.id),
            (Err(e), Some((_, id))) => prop_assert!(false, "error {e} but backup {id} has a complete route"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Expire, on random catalogs of every kind of start point: every
    /// moment inside the window that could be restored before (on the
    /// latest timeline, and on timeline 1) can be after, every kept
    /// incremental's chain is whole, and no WAL a kept start point
    /// replays from is removed.
    #[test]
    fn expire_keeps_every_moment_of_the_window(w in world(), window_secs in 1i64..1500, keep_full in 0usize..3) {
        use super::expire::{plan_expire, ExpirePolicy, ExpireError};
        let before = build(&w);
        let now = seg_time(2, 60);
        let policy = ExpirePolicy { keep_window_secs: window_secs as f64, keep_full };
        let p = match plan_expire(&before, now, &policy) {
            Ok(p) => p,
            Err(ExpireError::WindowShorterThanNewest { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let horizon = p.wal_below.map(|s| s.get()).unwrap_or(0);
        let mut after = build_keeping(&w, |s| s.get() >= horizon);
        after.backups.retain(|b| !p.remove.contains(&b.id));
        // Nothing kept lost a parent or the WAL it starts from.
        for k in &p.keep {
            prop_assert!(
                before.chain(&k.id).is_err() || after.chain(&k.id).is_ok(),
                "kept {} lost its chain", k.id
            );
            let b = after.backup(&k.id).unwrap();
            prop_assert!(b.start_lsn.as_u64() / SEG >= horizon, "kept {} starts below the horizon {horizon}", k.id);
        }
        // Nothing inside the window was removed.
        for id in &p.remove {
            let b = before.backup(id).unwrap();
            prop_assert!(b.stop_time < p.window_start, "{id} finished inside the window");
        }
        let cost = CostModel::default();
        let mut moments = vec![p.window_start];
        for tli in [1u32, 2] {
            for s in 0..60u64 {
                let t = seg_time(tli, s);
                moments.push(t);
                moments.push(t - Duration::seconds(1));
            }
        }
        moments.retain(|t| *t >= p.window_start && *t <= now);
        for t in moments {
            for timeline in [crate::plan::TimelineChoice::Latest, crate::plan::TimelineChoice::Id(TimelineId::new(1).unwrap())] {
                let spec = TargetSpec { timeline, ..TargetSpec::new(RecoveryTarget::Time(t)) };
                if let Ok(was) = plan(&before, &spec, &cost) {
                    let now_ = plan(&after, &spec, &cost);
                    prop_assert!(now_.is_ok(), "{t} ({timeline:?}) was restorable from {} and is not after expire (removed {:?}, WAL below {horizon}): {}", was.backup.id, p.remove, now_.unwrap_err());
                }
            }
        }
    }
}
