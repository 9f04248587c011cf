//! What `pitr maintain` captures now, so that the estimated replay from the
//! newest start point to any moment stays under a bound and a start point
//! in the repository is never more than a day old. Pure: the catalog, the
//! cost model and the clock in, a decision and its reasons out;
//! `ops::maintain` carries it out.
//!
//! The rule, run every `interval` (by cron or a timer):
//! - the replay a restore to now would need is the WAL archived along the
//!   timeline since the newest start point's redo point, at the replay
//!   rate; at the next run it will have grown by the WAL rate seen (the
//!   WAL since the newest start point at least one interval old, over the
//!   time since it finished or one interval if that is longer, so a backup
//!   that just finished does not read as a burst) times the interval. If that exceeds `max_replay`, capture now: a snapshot when
//!   a provider is configured (the cheapest to bring back), else a backup.
//! - a backup in the repository (full or incremental) at least every
//!   `max_age` (24 hours), whatever the rate: snapshots stay on the
//!   machine's volumes, the repository is what survives its loss.
//! - the backup is an incremental on the newest one when there is a full
//!   backup on this timeline, its chain is shorter than `max_chain`, and
//!   the WAL since its newest link is less than the data directory (past
//!   that an incremental stores about as much as a full one, and a long
//!   chain makes every restore apply more); else a full backup.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::cost::CostModel;
use super::explain::human_secs;
use super::timeline::Timeline;
use super::PlanError;
use crate::catalog::{BackupRecord, Catalog, StartKind};
use crate::pg::TimelineId;

/// The bounds `maintain` keeps.
#[derive(Clone, Debug, Serialize)]
pub struct MaintainPolicy {
    /// Estimated replay from the newest start point, at most (seconds).
    pub max_replay_secs: f64,
    /// How often `maintain` runs (seconds): the bound must hold until the
    /// next run.
    pub interval_secs: f64,
    /// A backup in the repository at least this often (seconds).
    pub max_age_secs: f64,
    /// Incrementals on one full backup, at most.
    pub max_chain: usize,
    /// A snapshot provider is configured, so snapshots may be taken.
    pub snapshots: bool,
}

/// What to capture now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Capture {
    Nothing,
    Full,
    Incremental { parent: String },
    Snapshot,
}

/// The decision, with the figures it was made from.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub capture: Capture,
    /// Why, in words.
    pub reason: String,
    pub timeline: TimelineId,
    /// The newest start point on the timeline (any kind), and the newest
    /// backup in the repository (full or incremental).
    pub newest_start: Option<String>,
    pub newest_backup: Option<String>,
    /// Seconds since the newest backup in the repository finished.
    pub backup_age_secs: Option<f64>,
    /// WAL archived since the newest start point's redo point, and the
    /// replay it means now and at the next run.
    pub wal_bytes_since: u64,
    pub wal_bytes_per_sec: f64,
    pub replay_secs_now: f64,
    pub replay_secs_next_run: f64,
    pub policy: MaintainPolicy,
}

/// Decides what to capture on timeline `tli` at `now`.
pub fn decide(
    catalog: &Catalog,
    tli: TimelineId,
    cost: &CostModel,
    now: DateTime<Utc>,
    policy: &MaintainPolicy,
) -> Result<Decision, PlanError> {
    let line = Timeline::new(catalog, tli)?;
    let starts: Vec<&BackupRecord> = line
        .backups()
        .map(|b| b.all.into_iter().map(|(_, b)| b).collect())
        .unwrap_or_default();
    let newest = |ok: &dyn Fn(&BackupRecord) -> bool| {
        starts
            .iter()
            .copied()
            .filter(|b| ok(b))
            .max_by_key(|b| b.stop_lsn)
    };
    let newest_start = newest(&|_| true);
    // A backup taken now is on `tli`: its parent must be too.
    let newest_backup =
        newest(&|b| b.timeline == tli && !matches!(b.start, StartKind::Snapshot { .. }));
    let newest_full = newest(&|b| b.timeline == tli && b.start.is_full());
    let since = |b: &BackupRecord| (now - b.stop_time).num_milliseconds() as f64 / 1000.0;
    let (wal_bytes_since, rate) = match (newest_start, line.last_on_history()) {
        (Some(s), Some(last)) => {
            let (raw, ..) = line.totals(s.start_lsn.segno(line.size), last);
            // The rate over at least one interval: from the newest start
            // point that is that old (else the oldest), so the WAL of a
            // backup that just finished does not read as a burst.
            let base = starts
                .iter()
                .copied()
                .filter(|b| since(b) >= policy.interval_secs)
                .max_by_key(|b| b.stop_lsn)
                .or_else(|| starts.iter().copied().min_by_key(|b| b.stop_lsn))
                .unwrap_or(s);
            let (grown, ..) = line.totals(base.stop_lsn.segno(line.size), last);
            let secs = since(base).max(policy.interval_secs).max(1.0);
            (raw, grown as f64 / secs)
        }
        _ => (0, 0.0),
    };
    let replay_now = cost.replay(wal_bytes_since);
    let replay_next = cost.replay(wal_bytes_since + (rate * policy.interval_secs) as u64);
    let age = newest_backup.map(since);
    let mut d = Decision {
        capture: Capture::Nothing,
        reason: String::new(),
        timeline: tli,
        newest_start: newest_start.map(|b| b.id.clone()),
        newest_backup: newest_backup.map(|b| b.id.clone()),
        backup_age_secs: age,
        wal_bytes_since,
        wal_bytes_per_sec: rate,
        replay_secs_now: replay_now,
        replay_secs_next_run: replay_next,
        policy: policy.clone(),
    };
    let backup = || backup_kind(catalog, newest_full, newest_backup, &line, policy);
    let (capture, reason) = match age {
        None => (
            Capture::Full,
            format!("no backup of timeline {tli} is in the repository"),
        ),
        Some(a) if a + policy.interval_secs > policy.max_age_secs => {
            let (c, why) = backup();
            (
                c,
                format!(
                    "the newest backup in the repository will be {} old by the next run, past the {} bound; {why}",
                    human_secs(a + policy.interval_secs),
                    human_secs(policy.max_age_secs)
                ),
            )
        }
        Some(_) if replay_next > policy.max_replay_secs => {
            let over = format!(
                "replay from {} would take {:.1} s by the next run ({:.1} s now, {:.0} kB/s of WAL), past the {:.1} s bound",
                d.newest_start.as_deref().unwrap_or("the newest start point"),
                replay_next,
                replay_now,
                rate / 1e3,
                policy.max_replay_secs
            );
            if policy.snapshots {
                (Capture::Snapshot, format!("{over}; a snapshot is the cheapest start point to bring back"))
            } else {
                let (c, why) = backup();
                (c, format!("{over}; {why}"))
            }
        }
        Some(_) => (
            Capture::Nothing,
            format!(
                "replay from {} would take {:.1} s by the next run, within the {:.1} s bound, and the newest backup is {} old",
                d.newest_start.as_deref().unwrap_or("the newest start point"),
                replay_next,
                policy.max_replay_secs,
                human_secs(age.unwrap_or(0.0))
            ),
        ),
    };
    d.capture = capture;
    d.reason = reason;
    Ok(d)
}

/// A full backup or an incremental on the newest backup, and why.
fn backup_kind(
    catalog: &Catalog,
    full: Option<&BackupRecord>,
    newest: Option<&BackupRecord>,
    line: &Timeline<'_>,
    policy: &MaintainPolicy,
) -> (Capture, String) {
    let (Some(full), Some(newest)) = (full, newest) else {
        return (
            Capture::Full,
            "a full backup: none is on this timeline to be incremental on".into(),
        );
    };
    let chain = catalog.chain(&newest.id).map(|c| c.len()).unwrap_or(0);
    if chain > policy.max_chain {
        return (
            Capture::Full,
            format!(
                "a full backup: the chain of {} already has {} incrementals (--max-chain {})",
                newest.id,
                chain - 1,
                policy.max_chain
            ),
        );
    }
    let since = match line.last_on_history() {
        Some(last) => line.totals(newest.start_lsn.segno(line.size), last).0,
        None => 0,
    };
    if since >= full.raw_bytes {
        return (
            Capture::Full,
            format!(
                "a full backup: {} of WAL since {} is more than the data directory ({}), so an incremental would store about as much",
                super::explain::human_bytes(since),
                newest.id,
                super::explain::human_bytes(full.raw_bytes)
            ),
        );
    }
    (
        Capture::Incremental {
            parent: newest.id.clone(),
        },
        format!("an incremental on {}", newest.id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Consistency, SnapshotProvider};
    use crate::plan::testkit::{at, seg_secs, tli, Kit};

    fn policy(max_replay_secs: f64, snapshots: bool) -> MaintainPolicy {
        MaintainPolicy {
            max_replay_secs,
            interval_secs: 3600.0,
            max_age_secs: 86_400.0,
            max_chain: 3,
            snapshots,
        }
    }

    /// 40 segments (16 MiB each) on timeline 1, a full backup (2000 MiB)
    /// in segment 2, `now` just after the last segment.
    fn world() -> Kit {
        Kit::new()
            .segments(1, 1..=40)
            .start_point("f", StartKind::Full, 1, 2, 2000, 500)
    }

    fn now() -> DateTime<Utc> {
        at(seg_secs(1, 40) + 60)
    }

    #[test]
    fn nothing_while_the_bound_holds() {
        let c = world().build();
        // 39 segments to replay: 10.2 s at 60 MB/s, and ~1 h of WAL more
        // at the rate seen (tiny: the segments span 380 s).
        let d = decide(
            &c,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(1e6, false),
        )
        .unwrap();
        assert_eq!(d.capture, Capture::Nothing, "{}", d.reason);
        assert_eq!(d.wal_bytes_since, 39 * (16 << 20));
        assert!(d.replay_secs_next_run > d.replay_secs_now);
        assert!(d.reason.contains("within the"), "{}", d.reason);
    }

    #[test]
    fn past_the_bound_an_incremental_or_a_snapshot() {
        let c = world().build();
        let d = decide(
            &c,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(5.0, false),
        )
        .unwrap();
        assert_eq!(
            d.capture,
            Capture::Incremental { parent: "f".into() },
            "{}",
            d.reason
        );
        assert!(d.reason.contains("past the 5.0 s bound"), "{}", d.reason);
        let d = decide(&c, tli(1), &CostModel::default(), now(), &policy(5.0, true)).unwrap();
        assert_eq!(d.capture, Capture::Snapshot, "{}", d.reason);
        // A snapshot just taken resets the replay, not the backup's age.
        let s = world()
            .snapshot(
                "s",
                SnapshotProvider::Btrfs,
                Consistency::Bracketed,
                1,
                40,
                400,
            )
            .build();
        let d = decide(&s, tli(1), &CostModel::default(), now(), &policy(5.0, true)).unwrap();
        assert_eq!(d.newest_start.as_deref(), Some("s"));
        assert_eq!(d.newest_backup.as_deref(), Some("f"));
        assert!(d.replay_secs_now < 1.0, "{}", d.replay_secs_now);
    }

    #[test]
    fn a_full_backup_when_there_is_none_the_chain_is_long_or_the_wal_outgrew_the_data() {
        let none = Kit::new().segments(1, 1..=4).build();
        let d = decide(
            &none,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(5.0, false),
        )
        .unwrap();
        assert_eq!(d.capture, Capture::Full);
        let long = world()
            .incremental("i1", "f", 1, 10, 400, 10)
            .incremental("i2", "i1", 1, 12, 400, 10)
            .incremental("i3", "i2", 1, 14, 400, 10)
            .build();
        let d = decide(
            &long,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(1.0, false),
        )
        .unwrap();
        assert_eq!(d.capture, Capture::Full, "{}", d.reason);
        assert!(d.reason.contains("--max-chain 3"), "{}", d.reason);
        // 39 segments (624 MiB) since a 2000 MiB full backup; then since a
        // 100 MiB one.
        let big = world().build();
        let d = decide(
            &big,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(1.0, false),
        )
        .unwrap();
        assert_eq!(d.capture, Capture::Incremental { parent: "f".into() });
        let mut bigger = big.clone();
        bigger.backups[0].raw_bytes = 100 << 20;
        let d = decide(
            &bigger,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(1.0, false),
        )
        .unwrap();
        assert_eq!(d.capture, Capture::Full, "{}", d.reason);
        assert!(
            d.reason.contains("more than the data directory"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_start_point_just_taken_is_not_taken_again() {
        // Segments 1..=40 (16 MiB each) span 400 s; a second full backup
        // finished in segment 40, a minute before now. Its own segment over
        // that minute would read as a gigabyte an hour (16.8 s of replay by
        // the next run, past 15 s); the rate since the older start point,
        // over at least one interval, is 624 MiB an hour (segments 2 to 40).
        let c = world()
            .start_point("f2", StartKind::Full, 1, 40, 2000, 500)
            .build();
        let d = decide(
            &c,
            tli(1),
            &CostModel::default(),
            now(),
            &policy(15.0, false),
        )
        .unwrap();
        assert_eq!(d.newest_start.as_deref(), Some("f2"));
        assert_eq!(d.capture, Capture::Nothing, "{}", d.reason);
        let hourly = d.wal_bytes_per_sec * 3600.0;
        assert!(
            (hourly - (39 * (16u64 << 20)) as f64).abs() < 1.0,
            "{hourly}"
        );
    }

    #[test]
    fn a_backup_in_the_repository_at_least_daily() {
        let c = world().build();
        let later = now() + chrono::Duration::hours(23) + chrono::Duration::minutes(30);
        // Idle: the bound holds, but the backup will be a day old.
        let d = decide(&c, tli(1), &CostModel::default(), later, &policy(1e6, true)).unwrap();
        assert_eq!(
            d.capture,
            Capture::Incremental { parent: "f".into() },
            "{}",
            d.reason
        );
        assert!(d.reason.contains("past the 24.0 h bound"), "{}", d.reason);
    }
}
