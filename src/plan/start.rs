//! Start points: what a restore can begin from (a full backup, an
//! incremental chain, a snapshot) and which of them a plan may use
//! (`--from`). Every kind is a `BackupRecord`; they differ in what getting
//! the data directory back costs (`CostModel::start`) and in how recover
//! brings it back.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::catalog::{BackupRecord, StartKind};

/// Which start points a plan may begin from: any (the cheapest), one
/// kind, or one backup by id (`--from full|incremental|snapshot|ID`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum StartFilter {
    #[default]
    Any,
    Full,
    Incremental,
    Snapshot,
    Id(String),
}

impl StartFilter {
    pub fn admits(&self, b: &BackupRecord) -> bool {
        match self {
            StartFilter::Any => true,
            StartFilter::Full => matches!(b.start, StartKind::Full),
            StartFilter::Incremental => matches!(b.start, StartKind::Incremental { .. }),
            StartFilter::Snapshot => matches!(b.start, StartKind::Snapshot { .. }),
            StartFilter::Id(id) => b.id == *id,
        }
    }

    pub fn is_any(&self) -> bool {
        *self == StartFilter::Any
    }
}

/// As `--from` is written: `any`, `full`, `incremental`, `snapshot` or
/// the id.
impl From<StartFilter> for String {
    fn from(f: StartFilter) -> String {
        match f {
            StartFilter::Any => "any".into(),
            StartFilter::Full => "full".into(),
            StartFilter::Incremental => "incremental".into(),
            StartFilter::Snapshot => "snapshot".into(),
            StartFilter::Id(id) => id,
        }
    }
}

impl fmt::Display for StartFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFilter::Any => f.write_str("any start point"),
            StartFilter::Full => f.write_str("a full backup"),
            StartFilter::Incremental => f.write_str("an incremental backup"),
            StartFilter::Snapshot => f.write_str("a snapshot"),
            StartFilter::Id(id) => write!(f, "backup {id}"),
        }
    }
}

impl FromStr for StartFilter {
    type Err = String;

    /// `full`, `incremental`, `snapshot`, or a backup id (ids are never
    /// those words: `pitr backup` makes them from a time stamp).
    fn from_str(s: &str) -> Result<StartFilter, String> {
        Ok(match s.trim() {
            "" => return Err("--from needs full, incremental, snapshot or a backup id".into()),
            "any" => StartFilter::Any,
            "full" => StartFilter::Full,
            "incremental" => StartFilter::Incremental,
            "snapshot" => StartFilter::Snapshot,
            id => StartFilter::Id(id.to_string()),
        })
    }
}

/// How a start point is named in evidence and alternatives: its kind and
/// id, and for an incremental the chain it is applied on.
pub(super) fn describe(chain: &[&BackupRecord]) -> String {
    let Some(last) = chain.last() else {
        return String::new();
    };
    match &last.start {
        StartKind::Full => format!("backup {}", last.id),
        StartKind::Incremental { .. } => {
            let on: Vec<&str> = chain.iter().rev().skip(1).map(|b| b.id.as_str()).collect();
            format!(
                "incremental backup {} (on {}: a chain of {})",
                last.id,
                on.join(" ← "),
                chain.len()
            )
        }
        StartKind::Snapshot {
            provider,
            consistency,
            ..
        } => format!(
            "snapshot {} ({}, {})",
            last.id,
            provider.name(),
            match consistency {
                crate::catalog::Consistency::Bracketed => "taken inside the backup API",
                crate::catalog::Consistency::Atomic =>
                    "atomic: consistent only once replay passes the end of WAL it was taken at",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Consistency, SnapshotProvider};
    use crate::pg::Lsn;
    use crate::plan::testkit::Kit;

    #[test]
    fn from_parses_kinds_and_ids() {
        assert_eq!("full".parse(), Ok(StartFilter::Full));
        assert_eq!("incremental".parse(), Ok(StartFilter::Incremental));
        assert_eq!("snapshot".parse(), Ok(StartFilter::Snapshot));
        assert_eq!(
            "20261127T120000Z".parse(),
            Ok(StartFilter::Id("20261127T120000Z".into()))
        );
        assert!(" ".parse::<StartFilter>().is_err());
    }

    #[test]
    fn filters_admit_their_kind_and_name_chains() {
        let c = Kit::new().backup("f", 1, 2, 3).build();
        let full = c.backups[0].clone();
        let incr = BackupRecord {
            id: "i".into(),
            start: StartKind::Incremental {
                parent: "f".into(),
                changed_bytes: 1,
            },
            ..full.clone()
        };
        let snap = BackupRecord {
            id: "s".into(),
            start: StartKind::Snapshot {
                provider: SnapshotProvider::Btrfs,
                handle: "/x".into(),
                consistency: Consistency::Atomic,
                commands: None,
                tablespaces: Vec::new(),
            },
            ..full.clone()
        };
        assert!(StartFilter::Full.admits(&full) && !StartFilter::Full.admits(&incr));
        assert!(StartFilter::Incremental.admits(&incr) && !StartFilter::Incremental.admits(&snap));
        assert!(StartFilter::Snapshot.admits(&snap) && !StartFilter::Snapshot.admits(&full));
        assert!(StartFilter::Id("i".into()).admits(&incr));
        assert!(!StartFilter::Id("i".into()).admits(&full));
        assert!([&full, &incr, &snap]
            .iter()
            .all(|b| StartFilter::Any.admits(b)));
        assert_eq!(describe(&[&full]), "backup f");
        assert_eq!(
            describe(&[&full, &incr]),
            "incremental backup i (on f: a chain of 2)"
        );
        assert!(describe(&[&snap]).starts_with("snapshot s (btrfs, atomic"));
    }

    use crate::plan::cost::CostModel;
    use crate::plan::testkit::{lsn, tli};
    use crate::plan::{plan, PlanError, RecoveryTarget, Step, TargetSpec};

    /// A full backup in segment 2 (400 MiB), incrementals in 10, 20 and
    /// 30 (20 MiB changed each), 40 segments of WAL on timeline 1.
    fn chained() -> Kit {
        Kit::new()
            .segments(1, 1..=40)
            .start_point("f", StartKind::Full, 1, 2, 400, 100)
            .incremental("i1", "f", 1, 10, 400, 20)
            .incremental("i2", "i1", 1, 20, 400, 20)
            .incremental("i3", "i2", 1, 30, 400, 20)
    }

    fn kinds(p: &crate::plan::Plan) -> Vec<&'static str> {
        p.steps
            .iter()
            .map(|s| match s {
                Step::RestoreBackup { .. } => "restore",
                Step::ApplyIncremental { .. } => "apply",
                Step::CloneSnapshot { .. } => "clone",
                Step::ReplayWal { .. } => "replay",
                Step::StopAtTarget { .. } => "stop",
            })
            .collect()
    }

    fn spec(target: RecoveryTarget, from: StartFilter) -> TargetSpec {
        TargetSpec {
            from,
            ..TargetSpec::new(target)
        }
    }

    #[test]
    fn the_newest_incremental_replays_least_and_its_chain_is_applied_in_order() {
        let c = chained().build();
        let p = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Latest),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(p.backup.id, "i3");
        assert_eq!(p.backup.start.name(), "incremental");
        assert_eq!(p.backup.chain, ["f", "i1", "i2", "i3"]);
        assert_eq!(
            kinds(&p),
            ["restore", "apply", "apply", "apply", "replay", "stop"]
        );
        // Everything the chain stores is fetched.
        let stored: u64 = c.backups.iter().map(|b| b.stored_bytes).sum();
        assert!(p.total_bytes > stored, "{} vs {stored}", p.total_bytes);
        assert!(
            p.evidence[0].starts_with("incremental backup i3 (on i2 ← i1 ← f: a chain of 4)"),
            "{}",
            p.evidence[0]
        );
        assert_eq!(p.alternatives.len(), 3);
        assert!(
            p.alternatives.iter().all(|a| a.contains(" s more")),
            "{:?}",
            p.alternatives
        );
        // The estimate is the steps' sum, and each alternative costs more.
        let sum: f64 = p.steps.iter().map(Step::estimated_seconds).sum();
        assert!((sum - p.estimated_seconds).abs() < 1e-9);
    }

    #[test]
    fn a_broken_chain_is_never_a_start_point() {
        let mut c = chained().build();
        c.backups.retain(|b| b.id != "i2");
        let p = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Latest),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(p.backup.chain, ["f", "i1"]);
        assert!(
            p.alternatives.iter().all(|a| !a.contains("i3")),
            "{:?}",
            p.alternatives
        );
        // Asked for by id, it is refused, not silently replaced.
        let err = plan(
            &c,
            &spec(RecoveryTarget::Latest, StartFilter::Id("i3".into())),
            &CostModel::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PlanError::NotFound { target, .. } if target == "backup i3"),
            "{err}"
        );
    }

    #[test]
    fn a_snapshot_wins_when_cheaper_but_never_past_the_target() {
        let c = chained()
            .snapshot(
                "s20",
                SnapshotProvider::Btrfs,
                Consistency::Bracketed,
                1,
                21,
                400,
            )
            .snapshot(
                "s35",
                SnapshotProvider::Btrfs,
                Consistency::Bracketed,
                1,
                35,
                400,
            )
            .build();
        let latest = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Latest),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(latest.backup.id, "s35");
        assert_eq!(kinds(&latest), ["clone", "replay", "stop"]);
        assert_eq!(
            latest.total_bytes,
            latest
                .steps
                .iter()
                .map(|s| match s {
                    Step::ReplayWal { stored_bytes, .. } => *stored_bytes,
                    _ => 0,
                })
                .sum::<u64>()
        );
        // A target in segment 25: s35 lies after it; s20 replays least.
        let at25 = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Lsn(lsn(25, 0x4000))),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(at25.backup.id, "s20");
        assert!(
            at25.alternatives.iter().all(|a| !a.contains("s35")),
            "{:?}",
            at25.alternatives
        );
        // An operator's volume restore (30 s) loses to the chain.
        let slow = chained()
            .snapshot(
                "s25",
                SnapshotProvider::Command,
                Consistency::Bracketed,
                1,
                25,
                400,
            )
            .build();
        let p = plan(
            &slow,
            &TargetSpec::new(RecoveryTarget::Latest),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(p.backup.id, "i3");
        assert!(
            p.alternatives[0].starts_with("snapshot s25 (command")
                || p.alternatives.iter().any(|a| a.starts_with("snapshot s25")),
            "{:?}",
            p.alternatives
        );
    }

    #[test]
    fn an_atomic_snapshot_serves_only_targets_after_its_end_of_wal() {
        let c = Kit::new()
            .segments(1, 1..=12)
            .start_point("f", StartKind::Full, 1, 2, 400, 100)
            .snapshot(
                "a",
                SnapshotProvider::Btrfs,
                Consistency::Atomic,
                1,
                10,
                400,
            )
            .build();
        let a = &c.backups[1];
        let before = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Lsn(Lsn::new(a.stop_lsn.as_u64() - 8))),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(before.backup.id, "f");
        let after = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Lsn(Lsn::new(a.stop_lsn.as_u64() + 8))),
            &CostModel::default(),
        )
        .unwrap();
        assert_eq!(after.backup.id, "a");
        assert!(
            after.evidence[0].contains("atomic: consistent only once replay passes"),
            "{}",
            after.evidence[0]
        );
    }

    #[test]
    fn from_forces_a_kind_or_a_start_point() {
        let c = chained()
            .snapshot(
                "s35",
                SnapshotProvider::Copy,
                Consistency::Bracketed,
                1,
                35,
                400,
            )
            .build();
        let cost = CostModel::default();
        let by = |from: StartFilter| plan(&c, &spec(RecoveryTarget::Latest, from), &cost);
        assert_eq!(by(StartFilter::Any).unwrap().backup.id, "s35");
        assert_eq!(by(StartFilter::Full).unwrap().backup.id, "f");
        assert_eq!(by(StartFilter::Incremental).unwrap().backup.id, "i3");
        assert_eq!(by(StartFilter::Snapshot).unwrap().backup.id, "s35");
        let i1 = by(StartFilter::Id("i1".into())).unwrap();
        assert_eq!((i1.backup.id.as_str(), i1.alternatives.len()), ("i1", 0));
        assert_eq!(i1.from, StartFilter::Id("i1".into()));
        let none = Kit::new().segments(1, 1..=4).backup("f", 1, 2, 10).build();
        let err = plan(
            &none,
            &spec(RecoveryTarget::Latest, StartFilter::Snapshot),
            &cost,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--from snapshot admits no start point"),
            "{err}"
        );
        assert!(matches!(err, PlanError::NotFound { timeline, .. } if timeline == tli(1)));
    }

    #[test]
    fn without_its_full_backup_no_incremental_is_restorable() {
        let mut c = chained().build();
        c.backups.retain(|b| b.id != "f");
        // The window `info` shows has no start, and plan finds no backup.
        let w = crate::plan::restorable_windows(&c);
        assert!(
            !w.is_empty() && w.iter().all(|w| w.earliest.is_none()),
            "{w:?}"
        );
        let err = plan(
            &c,
            &TargetSpec::new(RecoveryTarget::Latest),
            &CostModel::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, PlanError::NotFound { target, .. } if target == "a backup"),
            "{err}"
        );
    }
}
