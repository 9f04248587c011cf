//! The cost model: estimated seconds for each kind of edge. Defaults are
//! deliberately round; they are replaced by the medians of the rates that
//! earlier restores from the same repository measured (recorded in
//! `catalog/timings/`), and either can be overridden per run
//! (`--restore-rate`, `--replay-rate`).

use serde::Serialize;

use crate::catalog::{BackupRecord, RestoreTiming, SnapshotProvider, StartKind};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CostModel {
    /// Bytes of data directory per second fetched, decompressed, verified
    /// and written.
    pub restore_bytes_per_sec: f64,
    /// Bytes of WAL per second that the server replays (fetch included).
    pub replay_bytes_per_sec: f64,
    /// Fixed seconds: starting the server, promotion, checks.
    pub startup_secs: f64,
    /// Seconds to bring back a snapshot by each provider: a btrfs clone
    /// and an operator's restore command take about the same time
    /// whatever the size (a subvolume snapshot; a volume made from a
    /// snapshot), a copy moves every byte (`copy_bytes_per_sec`).
    pub btrfs_clone_secs: f64,
    pub command_clone_secs: f64,
    pub copy_bytes_per_sec: f64,
    /// Fixed seconds per backup of an incremental chain beyond its full
    /// backup (its manifest fetched and its files walked).
    pub chain_link_secs: f64,
    /// Where the rates come from, in words.
    pub source: String,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            restore_bytes_per_sec: 200e6,
            replay_bytes_per_sec: 60e6,
            startup_secs: 3.0,
            btrfs_clone_secs: 1.0,
            command_clone_secs: 30.0,
            copy_bytes_per_sec: 400e6,
            chain_link_secs: 0.2,
            source: "defaults".into(),
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite() && *x > 0.0);
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Some(v[v.len() / 2])
}

/// One recorded restore's replay rate: the bytes it was seen replaying
/// over that time, which leaves out the server's start-up (the model's
/// `startup_secs`, counted apart); from a timing of an older pitr, which
/// did not see it, the plan's WAL over the time from the server's start.
/// A restore that saw too little replay (an `--immediate` one, say) tells
/// no rate: NaN, left out of the median. What was seen must also have
/// lasted `SEEN_SECS`: its ends are known to a poll and a promotion
/// (tens of milliseconds), which would swamp a shorter span.
fn replay_rate(t: &RestoreTiming, rate: impl Fn(u64, f64) -> f64) -> f64 {
    match (t.replayed_bytes, t.replayed_seconds) {
        (Some(bytes), Some(secs)) if secs >= SEEN_SECS => rate(bytes, secs),
        (Some(_), Some(_)) => f64::NAN,
        _ => rate(t.wal_bytes, t.replay_seconds),
    }
}

/// The shortest replay seen that tells a rate.
const SEEN_SECS: f64 = 0.5;

impl CostModel {
    /// Defaults refined by recorded restores (medians; a rate needs at
    /// least 1 MB moved in at least 0.05 s to count).
    pub fn from_timings(timings: &[RestoreTiming]) -> CostModel {
        let mut m = CostModel::default();
        let rate = |bytes: u64, secs: f64| {
            if bytes >= 1_000_000 && secs >= 0.05 {
                bytes as f64 / secs
            } else {
                f64::NAN
            }
        };
        // The repository's restore rate from restores of its own objects
        // (full and incremental); a snapshot's clone from its provider's.
        fn of<'t>(
            timings: &'t [RestoreTiming],
            kind: &'t str,
        ) -> impl Iterator<Item = &'t RestoreTiming> + 't {
            timings
                .iter()
                .filter(move |t| t.start.as_deref() == Some(kind))
        }
        let restore = median(
            timings
                .iter()
                .filter(|t| {
                    !t.start
                        .as_deref()
                        .is_some_and(|k| k.starts_with("snapshot"))
                })
                .map(|t| rate(t.data_bytes, t.materialize_seconds))
                .collect(),
        );
        let secs = |kind: &str| {
            median(
                of(timings, kind)
                    .map(|t| t.materialize_seconds)
                    .filter(|s| *s > 0.0)
                    .collect(),
            )
        };
        if let Some(s) = secs("snapshot:btrfs") {
            m.btrfs_clone_secs = s;
        }
        if let Some(s) = secs("snapshot:command") {
            m.command_clone_secs = s;
        }
        if let Some(r) = median(
            of(timings, "snapshot:copy")
                .map(|t| rate(t.data_bytes, t.materialize_seconds))
                .collect(),
        ) {
            m.copy_bytes_per_sec = r;
        }
        let replay = median(timings.iter().map(|t| replay_rate(t, rate)).collect());
        let startup = median(timings.iter().map(|t| t.startup_seconds).collect());
        let mut used = 0;
        if let Some(r) = restore {
            m.restore_bytes_per_sec = r;
            used += 1;
        }
        if let Some(r) = replay {
            m.replay_bytes_per_sec = r;
            used += 1;
        }
        if let Some(s) = startup {
            m.startup_secs = s;
        }
        if used > 0 {
            m.source = format!("medians of {} recorded restores", timings.len());
        }
        m
    }

    /// Per-run overrides in MB/s.
    pub fn with_overrides(
        mut self,
        restore_mbps: Option<f64>,
        replay_mbps: Option<f64>,
    ) -> CostModel {
        if let Some(r) = restore_mbps.filter(|r| *r > 0.0) {
            self.restore_bytes_per_sec = r * 1e6;
            self.source = format!("{}; restore rate given", self.source);
        }
        if let Some(r) = replay_mbps.filter(|r| *r > 0.0) {
            self.replay_bytes_per_sec = r * 1e6;
            self.source = format!("{}; replay rate given", self.source);
        }
        self
    }

    pub fn restore(&self, _stored_bytes: u64, raw_bytes: u64) -> f64 {
        raw_bytes as f64 / self.restore_bytes_per_sec
    }

    pub fn replay(&self, wal_bytes: u64) -> f64 {
        wal_bytes as f64 / self.replay_bytes_per_sec
    }

    /// Seconds to have a start point's data directory back, from the
    /// backups that rebuild it (`Catalog::chain`: its full backup first,
    /// the start point last): a full backup's bytes at the restore rate;
    /// an incremental's chain as its full backup plus what each later
    /// link changed, and a fixed cost per link; a snapshot by its
    /// provider (`snapshot_clone`).
    pub fn start(&self, chain: &[&BackupRecord]) -> f64 {
        let Some(last) = chain.last() else {
            return 0.0;
        };
        match &last.start {
            StartKind::Full => self.restore(last.stored_bytes, last.raw_bytes),
            StartKind::Snapshot { provider, .. } => self.snapshot_clone(*provider, last.raw_bytes),
            StartKind::Incremental { .. } => chain
                .iter()
                .map(|b| match &b.start {
                    StartKind::Incremental { changed_bytes, .. } => {
                        self.chain_link_secs + *changed_bytes as f64 / self.restore_bytes_per_sec
                    }
                    _ => self.restore(b.stored_bytes, b.raw_bytes),
                })
                .sum(),
        }
    }

    /// Seconds for `provider` to bring back a snapshot of `raw_bytes`.
    pub fn snapshot_clone(&self, provider: SnapshotProvider, raw_bytes: u64) -> f64 {
        match provider {
            SnapshotProvider::Btrfs => self.btrfs_clone_secs,
            SnapshotProvider::Command => self.command_clone_secs,
            SnapshotProvider::Copy => raw_bytes as f64 / self.copy_bytes_per_sec,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(data: u64, m: f64, wal: u64, r: f64) -> RestoreTiming {
        RestoreTiming {
            at: chrono::Utc::now(),
            backup_id: "b".into(),
            data_bytes: data,
            materialize_seconds: m,
            wal_bytes: wal,
            replay_seconds: r,
            startup_seconds: 1.5,
            replayed_bytes: None,
            replayed_seconds: None,
            estimated_seconds: None,
            actual_seconds: None,
            start: None,
        }
    }

    /// A timing as this pitr records it: the replay it saw, the estimate
    /// and what the restore took.
    fn seen(wal: u64, replay_secs: f64, replayed: u64, replayed_secs: f64) -> RestoreTiming {
        RestoreTiming {
            replayed_bytes: Some(replayed),
            replayed_seconds: Some(replayed_secs),
            estimated_seconds: Some(9.0),
            actual_seconds: Some(12.0),
            ..timing(100_000_000, 1.0, wal, replay_secs)
        }
    }

    #[test]
    fn the_replay_rate_is_what_replay_was_seen_doing() {
        // 64 MB of planned WAL took 3 s from the server's start, of which
        // 1.5 s were start-up: the 60 MB seen replayed in 0.5 s is the rate.
        let m = CostModel::from_timings(&[seen(64_000_000, 3.0, 60_000_000, 0.5)]);
        assert_eq!(m.replay_bytes_per_sec, 120e6);
        // Too little replay seen (an --immediate restore) tells no rate,
        // not the plan's WAL over the start-up; nor does a short glimpse
        // (8 MB in 0.1 s, mostly the poll and the promotion).
        for glimpse in [
            seen(2_000_000, 1.0, 300, 0.0),
            seen(16_000_000, 1.0, 8_000_000, 0.1),
        ] {
            let m = CostModel::from_timings(&[glimpse]);
            assert_eq!(
                m.replay_bytes_per_sec,
                CostModel::default().replay_bytes_per_sec
            );
        }
        // Older timings (nothing seen) still count the old way.
        let m = CostModel::from_timings(&[
            seen(64_000_000, 3.0, 60_000_000, 0.5),
            timing(100_000_000, 1.0, 32_000_000, 1.0),
            timing(100_000_000, 1.0, 0, 0.0),
        ]);
        assert_eq!(m.replay_bytes_per_sec, 120e6);
    }

    /// The next plan's estimate uses what the last restore recorded.
    #[test]
    fn a_recorded_timing_changes_the_next_estimate() {
        use crate::plan::testkit::Kit;
        use crate::plan::{plan, RecoveryTarget, Step, TargetSpec};
        let mut c = Kit::new().segments(1, 1..=6).backup("b", 1, 2, 10).build();
        let spec = TargetSpec::new(RecoveryTarget::Latest);
        let replay_of = |p: &crate::plan::Plan| {
            p.steps
                .iter()
                .find_map(|s| match s {
                    Step::ReplayWal {
                        bytes,
                        estimated_seconds,
                        ..
                    } => Some((*bytes, *estimated_seconds)),
                    _ => None,
                })
                .unwrap()
        };
        let before = plan(&c, &spec, &CostModel::from_timings(&c.timings)).unwrap();
        let (wal, secs) = replay_of(&before);
        assert_eq!(secs, wal as f64 / 60e6, "the default rate");
        // A restore recorded its replay (300 MB/s seen), its start-up
        // (1.5 s) and 40 MB/s of data directory.
        c.timings.push(RestoreTiming {
            data_bytes: 40_000_000,
            materialize_seconds: 1.0,
            ..seen(wal, 2.0, 150_000_000, 0.5)
        });
        let after = plan(&c, &spec, &CostModel::from_timings(&c.timings)).unwrap();
        let (_, secs) = replay_of(&after);
        assert_eq!(secs, wal as f64 / 300e6);
        assert_eq!(after.cost_model.startup_secs, 1.5);
        assert_eq!(after.cost_model.restore_bytes_per_sec, 40e6);
        assert!(
            (after.estimated_seconds - before.estimated_seconds).abs() > 0.1,
            "{} then {}",
            before.estimated_seconds,
            after.estimated_seconds
        );
        assert_eq!(after.cost_model.source, "medians of 1 recorded restores");
    }

    fn record(id: &str, start: StartKind, raw: u64) -> BackupRecord {
        let mut c = crate::plan::testkit::Kit::new()
            .backup("x", 1, 2, 3)
            .build();
        let mut b = c.backups.remove(0);
        b.id = id.into();
        b.start = start;
        b.raw_bytes = raw;
        b
    }

    #[test]
    fn each_kind_of_start_costs_what_bringing_it_back_moves() {
        let m = CostModel::default();
        let full = record("f", StartKind::Full, 2_000_000_000);
        assert_eq!(m.start(&[&full]), 10.0, "2 GB at 200 MB/s");
        // An incremental: its full backup, then what each link changed.
        let i1 = record(
            "i1",
            StartKind::Incremental {
                parent: "f".into(),
                changed_bytes: 100_000_000,
            },
            2_000_000_000,
        );
        let i2 = record(
            "i2",
            StartKind::Incremental {
                parent: "i1".into(),
                changed_bytes: 300_000_000,
            },
            2_000_000_000,
        );
        let chain = m.start(&[&full, &i1, &i2]);
        assert!(
            (chain - (10.0 + 0.5 + 1.5 + 2.0 * m.chain_link_secs)).abs() < 1e-9,
            "{chain}"
        );
        // Snapshots: a clone's fixed time, or a copy of every byte.
        let snap = |provider| {
            record(
                "s",
                StartKind::Snapshot {
                    provider,
                    handle: "h".into(),
                    consistency: crate::catalog::Consistency::Bracketed,
                    commands: None,
                    tablespaces: Vec::new(),
                },
                2_000_000_000,
            )
        };
        assert_eq!(
            m.start(&[&snap(SnapshotProvider::Btrfs)]),
            m.btrfs_clone_secs
        );
        assert_eq!(
            m.start(&[&snap(SnapshotProvider::Command)]),
            m.command_clone_secs
        );
        assert_eq!(
            m.start(&[&snap(SnapshotProvider::Copy)]),
            5.0,
            "2 GB at 400 MB/s"
        );
        assert_eq!(m.start(&[]), 0.0);
    }

    #[test]
    fn a_snapshot_clone_measures_its_provider_not_the_restore_rate() {
        let mut btrfs = timing(2_000_000_000, 0.4, 0, 0.0);
        btrfs.start = Some("snapshot:btrfs".into());
        let mut copy = timing(2_000_000_000, 4.0, 0, 0.0);
        copy.start = Some("snapshot:copy".into());
        let mut full = timing(100_000_000, 2.0, 0, 0.0);
        full.start = Some("full".into());
        let m = CostModel::from_timings(&[btrfs, copy, full]);
        assert_eq!(m.btrfs_clone_secs, 0.4);
        assert_eq!(m.copy_bytes_per_sec, 500e6);
        assert_eq!(m.restore_bytes_per_sec, 50e6, "from the full restore alone");
        assert_eq!(
            m.command_clone_secs,
            CostModel::default().command_clone_secs
        );
    }

    #[test]
    fn recorded_restores_refine_the_defaults() {
        let d = CostModel::default();
        assert_eq!(CostModel::from_timings(&[]), d);
        let m = CostModel::from_timings(&[
            timing(100_000_000, 1.0, 32_000_000, 2.0),
            timing(100_000_000, 2.0, 32_000_000, 1.0),
            timing(100_000_000, 4.0, 0, 0.0), // no WAL: not a replay rate
        ]);
        assert_eq!(m.restore_bytes_per_sec, 50e6);
        assert_eq!(m.replay_bytes_per_sec, 32e6);
        assert_eq!(m.startup_secs, 1.5);
        assert!(m.source.contains("3 recorded restores"), "{}", m.source);
        let o = m.with_overrides(Some(400.0), None);
        assert_eq!(o.restore_bytes_per_sec, 400e6);
        assert_eq!(o.replay_bytes_per_sec, 32e6);
    }
}
