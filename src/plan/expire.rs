//! What `pitr expire` may remove: the start points and WAL that no
//! restorable moment inside the retention window needs. Pure: the
//! catalog, the clock and the policy in, a plan out; `ops::expire`
//! carries it out.
//!
//! The window is `[now - keep_window, now]`. A moment `t` in it is
//! restored from a start point consistent before `t` on `t`'s timeline's
//! history, with WAL continuous from its start to `t`. The newest such
//! start point consistent before the window's start (the anchor) reaches
//! every moment in the window that any older one reaches (its WAL is a
//! suffix of theirs), so along every timeline whose archived WAL reaches
//! into the window, pitr keeps:
//! - every start point that finished inside the window,
//! - the anchor, and the newest backup in the repository before the
//!   window (snapshots stay on the machine's volumes: the repository alone
//!   must restore the window),
//! - the newest `keep_full` full backups,
//! - every backup a kept incremental's chain needs (`Catalog::chain`),
//!
//! and every WAL segment (of any timeline) numbered at or after the
//! earliest start segment of what it keeps: a kept start point replays
//! from its own start segment on, and becomes consistent within it.
//! Everything else that finished before the window may go. A start point
//! inside the window is never removed, even one that cannot be restored
//! now (its parent unreadable for a while, say).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::explain::human_secs;
use super::timeline::{known_timelines, Timeline};
use crate::catalog::{BackupRecord, Catalog, StartKind};
use crate::pg::SegNo;

/// What to keep.
#[derive(Clone, Debug, Serialize)]
pub struct ExpirePolicy {
    /// Seconds back from now that every moment stays restorable.
    pub keep_window_secs: f64,
    /// The newest this many full backups are kept whatever their age.
    pub keep_full: usize,
}

/// A start point kept, and why.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Kept {
    pub id: String,
    pub reason: String,
}

/// What may go.
#[derive(Clone, Debug, Serialize)]
pub struct ExpirePlan {
    pub window_start: DateTime<Utc>,
    pub keep: Vec<Kept>,
    /// Start points to remove (records, then their objects), oldest first.
    pub remove: Vec<String>,
    /// Segments numbered below this may be removed, on every timeline
    /// (None: nothing is kept, or nothing is below the earliest start).
    pub wal_below: Option<SegNo>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpireError {
    #[error("the newest backup that can be restored, {id}, finished {age} ago, before the {window} window began: no moment inside the window could be restored from a start point inside it, and expire would keep only older ones; take a backup first (pitr backup), or widen --keep-window")]
    WindowShorterThanNewest {
        id: String,
        age: String,
        window: String,
    },
    #[error("--keep-window must be longer than zero")]
    EmptyWindow,
}

/// Plans an expire of `catalog` at `now`.
pub fn plan_expire(
    catalog: &Catalog,
    now: DateTime<Utc>,
    policy: &ExpirePolicy,
) -> Result<ExpirePlan, ExpireError> {
    if policy.keep_window_secs.is_nan() || policy.keep_window_secs <= 0.0 {
        return Err(ExpireError::EmptyWindow);
    }
    let window = chrono::Duration::milliseconds((policy.keep_window_secs * 1000.0) as i64);
    let start = now - window;
    let restorable: Vec<&BackupRecord> = catalog
        .backups
        .iter()
        .filter(|b| catalog.chain(&b.id).is_ok())
        .collect();
    if let Some(newest) = restorable.iter().max_by_key(|b| b.stop_time) {
        if newest.stop_time < start {
            return Err(ExpireError::WindowShorterThanNewest {
                id: newest.id.clone(),
                age: human_secs((now - newest.stop_time).num_milliseconds() as f64 / 1000.0),
                window: human_secs(policy.keep_window_secs),
            });
        }
    }
    let mut keep: Vec<Kept> = Vec::new();
    fn add(keep: &mut Vec<Kept>, b: &BackupRecord, reason: String) {
        if !keep.iter().any(|k| k.id == b.id) {
            keep.push(Kept {
                id: b.id.clone(),
                reason,
            });
        }
    }
    for b in catalog.backups.iter().filter(|b| b.stop_time >= start) {
        add(&mut keep, b, "finished inside the window".into());
    }
    // Each timeline whose history's archived WAL ends a transaction
    // inside the window (a moment after the last one cannot be restored
    // on it): its anchor.
    for tli in known_timelines(catalog) {
        let Ok(line) = Timeline::new(catalog, tli) else {
            continue;
        };
        let Some(last) = line.last_on_history() else {
            continue;
        };
        let reaches = line
            .latest_time(SegNo::new(0), last)
            .is_some_and(|(t, _)| t >= start);
        if !reaches {
            continue;
        }
        let Some(on) = line.backups() else { continue };
        if let Some(anchor) = on.newest_where(|b| b.stop_time < start) {
            add(
                &mut keep,
                anchor,
                format!("the newest start point before the window on timeline {tli}: every moment of the window on it is restored from here or later"),
            );
        }
        // Snapshots stay on the machine's volumes: the repository alone
        // must restore the window too, from its own newest backup.
        let in_repo = |b: &BackupRecord| !matches!(b.start, StartKind::Snapshot { .. });
        if let Some(anchor) = on.newest_where(|b| b.stop_time < start && in_repo(b)) {
            add(
                &mut keep,
                anchor,
                format!("the newest backup in the repository before the window on timeline {tli}: the window restores from the repository alone, without the machine's snapshots"),
            );
        }
    }
    let mut fulls: Vec<&BackupRecord> = catalog
        .backups
        .iter()
        .filter(|b| b.start.is_full())
        .collect();
    fulls.sort_by_key(|b| std::cmp::Reverse(b.stop_time));
    for b in fulls.into_iter().take(policy.keep_full) {
        add(
            &mut keep,
            b,
            format!(
                "one of the newest {} full backups (--keep-full)",
                policy.keep_full
            ),
        );
    }
    // The chains of what is kept.
    let kept_ids: Vec<String> = keep.iter().map(|k| k.id.clone()).collect();
    for id in &kept_ids {
        if let Ok(chain) = catalog.chain(id) {
            for p in chain.iter().filter(|p| p.id != *id) {
                add(
                    &mut keep,
                    p,
                    format!("in the chain of kept incremental {id}"),
                );
            }
        }
    }
    let kept = |b: &BackupRecord| keep.iter().any(|k| k.id == b.id);
    let mut remove: Vec<&BackupRecord> = catalog.backups.iter().filter(|b| !kept(b)).collect();
    remove.sort_by_key(|b| b.stop_time);
    let size = catalog.config.wal_segment_size;
    let wal_below = catalog
        .backups
        .iter()
        .filter(|b| kept(b))
        .map(|b| b.start_lsn.segno(size))
        .min();
    Ok(ExpirePlan {
        window_start: start,
        remove: remove.iter().map(|b| b.id.clone()).collect(),
        keep,
        wal_below,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::StartKind;
    use crate::plan::testkit::{at, seg_secs, Kit};

    fn policy(hours: f64, keep_full: usize) -> ExpirePolicy {
        ExpirePolicy {
            keep_window_secs: hours * 3600.0,
            keep_full,
        }
    }

    #[test]
    fn keeps_the_window_its_anchor_and_their_chains() {
        // Segments 1..=40 on timeline 1 (10 s apart); fulls in 2 and 10,
        // an incremental on the second in 20, another full in 30.
        let c = Kit::new()
            .segments(1, 1..=40)
            .start_point("f2", StartKind::Full, 1, 2, 40, 10)
            .start_point("f10", StartKind::Full, 1, 10, 40, 10)
            .incremental("i20", "f10", 1, 20, 40, 4)
            .start_point("f30", StartKind::Full, 1, 30, 40, 10)
            .build();
        // The window begins at segment 25's time: i20 is the anchor, f10
        // its parent, f30 inside; f2 goes, and WAL before segment 10.
        let now = at(seg_secs(1, 40));
        let hours = (seg_secs(1, 40) - seg_secs(1, 25)) as f64 / 3600.0;
        let p = plan_expire(&c, now, &policy(hours, 0)).unwrap();
        assert_eq!(p.remove, ["f2"]);
        let ids: Vec<&str> = p.keep.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["f30", "i20", "f10"]);
        assert!(p.keep[1]
            .reason
            .contains("newest start point before the window"));
        assert!(p.keep[2].reason.contains("chain of kept incremental i20"));
        assert_eq!(p.wal_below, Some(SegNo::new(10)));
        // --keep-full 3 keeps f2 too, and its WAL.
        let p = plan_expire(&c, now, &policy(hours, 3)).unwrap();
        assert!(p.remove.is_empty());
        assert_eq!(p.wal_below, Some(SegNo::new(2)));
    }

    #[test]
    fn a_snapshot_anchor_keeps_the_repository_backup_before_it() {
        use crate::catalog::{Consistency, SnapshotProvider};
        let c = Kit::new()
            .segments(1, 1..=40)
            .start_point("f2", StartKind::Full, 1, 2, 40, 10)
            .start_point("f10", StartKind::Full, 1, 10, 40, 10)
            .snapshot(
                "s20",
                SnapshotProvider::Btrfs,
                Consistency::Bracketed,
                1,
                20,
                40,
            )
            .start_point("f30", StartKind::Full, 1, 30, 40, 10)
            .build();
        let now = at(seg_secs(1, 40));
        let hours = (seg_secs(1, 40) - seg_secs(1, 25)) as f64 / 3600.0;
        let p = plan_expire(&c, now, &policy(hours, 0)).unwrap();
        let ids: Vec<&str> = p.keep.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["f30", "s20", "f10"]);
        assert!(
            p.keep[2].reason.contains("repository alone"),
            "{}",
            p.keep[2].reason
        );
        assert_eq!(p.remove, ["f2"]);
        assert_eq!(p.wal_below, Some(SegNo::new(10)));
    }

    #[test]
    fn a_window_older_than_every_backup_is_refused() {
        let c = Kit::new().segments(1, 1..=4).backup("b", 1, 2, 10).build();
        let now = c.backups[0].stop_time + chrono::Duration::hours(30);
        let e = plan_expire(&c, now, &policy(24.0, 0)).unwrap_err();
        assert!(matches!(&e, ExpireError::WindowShorterThanNewest { id, .. } if id == "b"));
        assert!(e.to_string().contains("finished 30.0 h ago"), "{e}");
        assert_eq!(
            plan_expire(&c, now, &policy(0.0, 0)).unwrap_err(),
            ExpireError::EmptyWindow
        );
        assert!(plan_expire(&c, now, &policy(31.0, 0)).is_ok());
    }
}
