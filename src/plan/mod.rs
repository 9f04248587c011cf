//! The planner: from a catalog and a recovery target to a `Plan` (which
//! backup, which WAL, where recovery stops, what it costs) or a typed error
//! that says exactly why the target cannot be reached. Pure: no I/O.

pub mod cost;
pub mod explain;
pub mod graph;
pub mod target;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pg::{Lsn, TimelineId};

pub use graph::{plan, restorable_window, Window};
pub use target::{parse_time, pg_time, RecoveryTarget, TimeError};

/// A route to a target, proven from the catalog before anything is fetched.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub target: RecoveryTarget,
    /// The timeline recovery follows (`recovery_target_timeline`).
    pub timeline: TimelineId,
    pub backup: BackupChoice,
    pub steps: Vec<Step>,
    pub stop: StopPoint,
    pub total_bytes: u64,
    pub estimated_seconds: f64,
    /// Why the target is reachable, in plain words.
    pub evidence: Vec<String>,
    /// Other backups that could also reach the target (not chosen).
    pub alternatives: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupChoice {
    pub id: String,
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub stop_time: DateTime<Utc>,
}

/// Where recovery will stop. Postgres stops before the first transaction
/// end whose time is after the target; the WAL index shows that `segment`
/// is the first segment (from the backup on) holding such an end:
/// transaction `later_xid`, ended at `later_time`, record at `later_lsn`.
/// No WAL after `segment` is needed.
#[derive(Clone, Debug, Serialize)]
pub struct StopPoint {
    pub segment: String,
    pub later_xid: u32,
    pub later_lsn: Lsn,
    pub later_time: DateTime<Utc>,
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
}
