//! The planner: from a catalog and a recovery target to a `Plan` (which
//! backup, which WAL, where recovery stops, what it costs) or a typed error
//! that says exactly why the target cannot be reached. Pure: no I/O.
//!
//! One concern a file, in the order `plan` runs them (`planner`):
//! `timeline` (which timeline recovery follows; its history: switch
//! points, backups on it, walks along its segments), `locate/` (one
//! locator per target kind: where recovery stops), `route` (the graph and
//! the cheapest backup), `steps` (steps and totals), `evidence` (why the
//! target is reachable, in words). Beside them: `window` (what `info`
//! shows as restorable), `span` (where replay starts and is expected to
//! end, for progress), `target` (targets as users write them), `cost`,
//! `compat` (backup vs install) and `explain` (rendering).

pub mod compat;
pub mod cost;
mod evidence;
pub mod expire;
pub mod explain;
mod locate;
pub mod maintain;
mod planner;
mod resolve;
mod route;
mod span;
mod start;
mod steps;
pub mod target;
mod timeline;
mod window;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod testkit;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pg::{Lsn, TimelineId};

pub use locate::xid::{xid_candidates, XactLists};
pub use planner::{plan, plan_with};
pub use resolve::{TimeStop, XactList, XactRef};
pub use span::ReplaySpan;
pub use start::StartFilter;
pub use target::{
    parse_time, pg_time, RecoveryTarget, TargetSpec, TimeError, TimelineChoice, Xid, XidError,
};
pub use window::{
    archive_end, backups_on, restorable_window, restorable_windows, ArchiveEnd, Window,
};

/// A route to a target, proven from the catalog before anything is fetched.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub target: RecoveryTarget,
    /// `recovery_target_inclusive`.
    pub inclusive: bool,
    /// What was asked for (`--timeline`, default latest).
    pub timeline_choice: TimelineChoice,
    /// Which start points the plan could begin from (`--from`).
    #[serde(skip_serializing_if = "StartFilter::is_any")]
    pub from: StartFilter,
    /// The timeline recovery follows (`recovery_target_timeline`).
    pub timeline: TimelineId,
    /// Why that timeline, in words.
    pub timeline_reason: String,
    pub backup: BackupChoice,
    pub steps: Vec<Step>,
    pub stop: StopPoint,
    pub total_bytes: u64,
    pub estimated_seconds: f64,
    /// Why the target is reachable, in plain words.
    pub evidence: Vec<String>,
    /// Other backups that could also reach the target (not chosen).
    pub alternatives: Vec<String>,
    /// The rates the estimates used.
    pub cost_model: cost::CostModel,
    /// The install that will run the restore, or why none here can (set
    /// by the caller after the compatibility check).
    pub install: Option<String>,
    /// Catalog objects that could not be read and were planned around
    /// (set by the caller, from `Catalog::damaged`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::catalog::DamagedObject>,
    /// A time target's stop as written for Postgres: the exact record
    /// (`recovery_target_lsn`) or the time (`resolve`). None for other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_stop: Option<TimeStop>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupChoice {
    pub id: String,
    /// The start point's kind (`kind`: full, incremental or snapshot) and,
    /// for a snapshot, how to clone it back.
    pub start: crate::catalog::StartKind,
    /// The backups restored in order to rebuild this start point, its full
    /// backup first and `id` last (one id unless it is an incremental).
    pub chain: Vec<String>,
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub stop_time: DateTime<Utc>,
}

/// Where recovery will stop, as far as the WAL index shows: the last
/// segment needed (`segment`), and the record that proves it (its LSN,
/// time and xid where known). No WAL after `segment` is needed.
#[derive(Clone, Debug, Serialize)]
pub struct StopPoint {
    pub segment: String,
    pub description: String,
    pub lsn: Option<Lsn>,
    pub time: Option<DateTime<Utc>>,
    pub xid: Option<u32>,
}

impl Plan {
    /// Narrows the stop point to the exact record, from every transaction
    /// end of the stop segment (read from the repository by the caller):
    /// for an xid, its own end record. (A time target is resolved by
    /// `resolve_time`, from the lists `time_lists` names.)
    pub fn refine(&mut self, xacts: &[crate::pg::wal::XactEnd]) {
        let mut ordered: Vec<&crate::pg::wal::XactEnd> = xacts.iter().collect();
        ordered.sort_by_key(|x| x.lsn);
        let old = self.stop.description.clone();
        let described = match &self.target {
            RecoveryTarget::Xid(x) => {
                let Some(end) = ordered.iter().find(|e| e.xid == *x) else {
                    return;
                };
                self.stop.lsn = Some(end.lsn);
                self.stop.time = Some(end.time);
                format!(
                    "recovery stops {} the {} of xid {x} at {} (LSN {}) in segment {}",
                    if self.inclusive {
                        "right after"
                    } else {
                        "right before"
                    },
                    resolve::kind_name(end.kind),
                    end.time,
                    end.lsn,
                    self.stop.segment
                )
            }
            _ => return,
        };
        self.stop.description = described.clone();
        for e in self.evidence.iter_mut() {
            if *e == old {
                *e = described.clone();
            }
        }
    }

    pub fn spec(&self) -> TargetSpec {
        TargetSpec {
            target: self.target.clone(),
            inclusive: self.inclusive,
            timeline: self.timeline_choice,
            from: self.from.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Step {
    /// Fetch, decompress and verify every file of a base backup.
    RestoreBackup {
        backup_id: String,
        files: u64,
        bytes: u64,
        stored_bytes: u64,
        estimated_seconds: f64,
    },
    /// Apply one incremental backup of a chain on what the steps before
    /// it restored: its changed blocks and files, in chain order.
    ApplyIncremental {
        backup_id: String,
        files: u64,
        changed_bytes: u64,
        stored_bytes: u64,
        estimated_seconds: f64,
    },
    /// Clone a snapshot back into the data directory by its provider.
    CloneSnapshot {
        backup_id: String,
        provider: String,
        handle: String,
        bytes: u64,
        estimated_seconds: f64,
    },
    /// Start the server and replay archived WAL, fetched on demand.
    ReplayWal {
        timeline: TimelineId,
        from_segment: String,
        to_segment: String,
        segments: u64,
        bytes: u64,
        stored_bytes: u64,
        estimated_seconds: f64,
    },
    /// Stop at the target, then promote/pause/shut down.
    StopAtTarget {
        description: String,
        estimated_seconds: f64,
    },
}

impl Step {
    pub fn estimated_seconds(&self) -> f64 {
        match self {
            Step::RestoreBackup {
                estimated_seconds, ..
            }
            | Step::ApplyIncremental {
                estimated_seconds, ..
            }
            | Step::CloneSnapshot {
                estimated_seconds, ..
            }
            | Step::ReplayWal {
                estimated_seconds, ..
            }
            | Step::StopAtTarget {
                estimated_seconds, ..
            } => *estimated_seconds,
        }
    }
}

/// Why a target cannot be planned. Each says what to do instead.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PlanError {
    #[error("the repository has no finished backup: take one with `pitr backup`")]
    NoBackups,
    #[error("target {target} is before the earliest restorable time {earliest} (the end of backup {backup_id}): choose a later time")]
    BeforeEarliest {
        target: DateTime<Utc>,
        earliest: DateTime<Utc>,
        backup_id: String,
    },
    #[error("target {target} is after the latest archived WAL: the last archived transaction ended at {}{}; choose an earlier time, or archive more WAL (SELECT pg_switch_wal() on the source) and plan again", .latest.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into()), .latest_segment.as_ref().map(|s| format!(" in segment {s}")).unwrap_or_default())]
    AfterLatest {
        target: DateTime<Utc>,
        latest: Option<DateTime<Utc>>,
        latest_segment: Option<String>,
    },
    #[error("WAL segment {segment} is missing from the repository, so replay from backup {backup_id} cannot pass it; the last restorable time before the gap is {}", .last_restorable.map(|t| t.to_string()).unwrap_or_else(|| "unknown (no transaction recorded before the gap)".into()))]
    MissingSegment {
        segment: String,
        backup_id: String,
        last_restorable: Option<DateTime<Utc>>,
    },
    #[error("timeline {0} has no history file in the repository, so its ancestry is unknown")]
    NoHistory(TimelineId),
    #[error("no backup is consistent before {target} on timeline {timeline} (the earliest ends at {earliest_lsn}, backup {backup_id}): choose a later target")]
    NoBackupBefore {
        target: String,
        timeline: TimelineId,
        earliest_lsn: Lsn,
        backup_id: String,
    },
    #[error("{target} is not in the archived WAL of timeline {timeline}{}: {hint}", .searched.as_ref().map(|s| format!(" (searched {s})")).unwrap_or_default())]
    NotFound {
        target: String,
        timeline: TimelineId,
        searched: Option<String>,
        hint: String,
    },
    #[error("{target} aborted (its abort record is at {lsn} in segment {segment}): recovery to it would stop at the abort, keeping nothing of it; choose a transaction that committed, or a time or LSN")]
    XidAborted {
        target: String,
        lsn: Lsn,
        segment: String,
    },
    #[error("{target} is xid {xid} of epoch {given}, but the archived WAL holds xid {xid} in epoch {wal} (segment {segment}): give the value pg_current_xact_id() returned on this cluster, or the 32-bit xid {xid}")]
    XidEpoch {
        target: String,
        xid: u32,
        given: u32,
        wal: u32,
        segment: String,
    },
    #[error("{target} is past the end of the archived WAL on timeline {timeline}{}: choose an earlier target, or archive more WAL and plan again", .end.map(|e| format!(" (it ends at {e})")).unwrap_or_default())]
    AfterEnd {
        target: String,
        timeline: TimelineId,
        end: Option<Lsn>,
    },
}
