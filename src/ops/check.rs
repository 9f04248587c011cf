//! `pitr check`: is the protection working, in a form cron and monitoring
//! systems act on. Each check has a status (ok, warning, critical) and a
//! sentence; the report's status is the worst. From the repository: the
//! age of the newest start point that can be restored, whether WAL is
//! continuous from it to the end of the archive, catalog objects that
//! could not be read, and the last `pitr verify` (`catalog/verify/`): its
//! result, and its age. From the server, when `--pgdata` names a running
//! one: WAL written and not archived yet, and whether its archiver is
//! failing now (`pg_stat_archiver`).
//!
//! `evaluate` is pure (facts and thresholds in, report out); `check`
//! gathers the facts.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{BackupRecord, Catalog, VerifyKind, VerifyResult};
use crate::pg::{Lsn, TimelineId};
use crate::plan::explain::human_secs;
use crate::plan::restorable_windows;
use crate::recover::live::{self, LiveServer, ServerError};
use crate::recover::status::{self, StatusError};
use crate::repo::{Repo, RepoError};

/// How bad one finding is. Ordered: the worst wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Warning,
    Critical,
}

/// One check's finding.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `backup_age`, `wal_continuity`, `catalog`, `archive_lag`,
    /// `archiver`.
    pub check: &'static str,
    pub status: Health,
    pub message: String,
    /// The measured value, in the check's unit (seconds, bytes, count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// What `pitr check` reports (`--json` prints this).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub status: Health,
    pub checks: Vec<Finding>,
    pub repository: String,
    pub at: DateTime<Utc>,
}

/// When a check warns and when it is critical.
#[derive(Clone, Debug, Serialize)]
pub struct Thresholds {
    pub warn_backup_age_secs: f64,
    pub crit_backup_age_secs: f64,
    pub warn_archive_lag_bytes: u64,
    pub crit_archive_lag_bytes: u64,
    /// No `pitr verify` for this long warns (also none at all).
    pub warn_verify_age_secs: f64,
}

impl Default for Thresholds {
    /// A day's backup plus slack, and two; 128 MiB and 1 GiB of WAL; a
    /// weekly verify plus a day.
    fn default() -> Self {
        Thresholds {
            warn_backup_age_secs: 26.0 * 3600.0,
            crit_backup_age_secs: 50.0 * 3600.0,
            warn_archive_lag_bytes: 128 << 20,
            crit_archive_lag_bytes: 1 << 30,
            warn_verify_age_secs: 8.0 * 86400.0,
        }
    }
}

/// What the server says of its archiving.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerFacts {
    pub data_directory: String,
    pub in_recovery: bool,
    pub timeline: Option<TimelineId>,
    pub current_lsn: Option<Lsn>,
    /// WAL written and not archived yet (`status`'s primary lag).
    pub unarchived_bytes: Option<u64>,
    /// Why the lag is unknown.
    pub lag_note: Option<String>,
    /// `pg_stat_archiver`.
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
    pub last_archived_time: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Options of `check`.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The server to check, when one runs here.
    pub pgdata: Option<PathBuf>,
    pub db_user: String,
    pub thresholds: Thresholds,
}

/// Gathers the facts and evaluates them.
pub async fn check(repo: &Repo, opts: &CheckOptions) -> Result<Report, CheckError> {
    let catalog = repo.load_catalog().await?;
    let verified = last_verify(repo).await?;
    let server = match &opts.pgdata {
        None => None,
        Some(d) => Some(server_facts(repo, d, &opts.db_user).await?),
    };
    let now = Utc::now();
    let mut report = evaluate(
        &catalog,
        verified.as_ref(),
        server.as_ref(),
        now,
        &opts.thresholds,
    );
    report.repository = repo.location().to_arg();
    Ok(report)
}

/// The newest `pitr verify` result (`catalog/verify/<stamp>-<pid>.json`,
/// whose names sort by time); one that does not read counts as none.
async fn last_verify(repo: &Repo) -> Result<Option<VerifyResult>, CheckError> {
    let mut keys: Vec<_> = repo
        .store()
        .list(crate::repo::layout::CATALOG_VERIFY_DIR)
        .await
        .map_err(RepoError::from)?
        .into_iter()
        .map(|m| m.key)
        .collect();
    keys.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let Some(key) = keys.last() else {
        return Ok(None);
    };
    match repo.get_meta(key, crate::repo::KIND_VERIFY).await {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::warn!(error = %e, key = %key, "unreadable verify result");
            Ok(None)
        }
    }
}

async fn server_facts(
    repo: &Repo,
    pgdata: &std::path::Path,
    db_user: &str,
) -> Result<ServerFacts, CheckError> {
    let st = status::status(pgdata, db_user, Some(repo.clone())).await?;
    let server = LiveServer::find(pgdata)?;
    let client = server.connect(db_user, "pitr check").await?;
    let row = live::query_one(
        &client,
        "select failed_count, last_failed_wal, last_failed_time, last_archived_time from pg_stat_archiver",
        "reading pg_stat_archiver",
    )
    .await?;
    let bad = |e: tokio_postgres::Error| ServerError::Sql {
        what: "reading pg_stat_archiver".into(),
        reason: e.to_string(),
    };
    Ok(ServerFacts {
        data_directory: st.data_directory,
        in_recovery: st.in_recovery,
        timeline: st.timeline,
        current_lsn: st.current_lsn,
        unarchived_bytes: st.lag_bytes.filter(|_| !st.in_recovery),
        lag_note: st.archive_note,
        failed_count: row.try_get(0).map_err(bad)?,
        last_failed_wal: row.try_get(1).map_err(bad)?,
        last_failed_time: row.try_get(2).map_err(bad)?,
        last_archived_time: row.try_get(3).map_err(bad)?,
    })
}

fn level(value: f64, warn: f64, crit: f64) -> Health {
    if value >= crit {
        Health::Critical
    } else if value >= warn {
        Health::Warning
    } else {
        Health::Ok
    }
}

/// The report for `catalog` (and `server`) at `now`.
pub fn evaluate(
    catalog: &Catalog,
    verified: Option<&VerifyResult>,
    server: Option<&ServerFacts>,
    now: DateTime<Utc>,
    t: &Thresholds,
) -> Report {
    let mut checks = Vec::new();
    // The newest backup in the repository that can be brought back, on
    // any timeline (snapshots stay on the machine's volumes: they do not
    // make a lost machine restorable).
    let windows = restorable_windows(catalog);
    let restorable: Vec<&BackupRecord> = catalog
        .backups
        .iter()
        .filter(|b| !matches!(b.start, crate::catalog::StartKind::Snapshot { .. }))
        .filter(|b| catalog.chain(&b.id).is_ok())
        .collect();
    match restorable.iter().max_by_key(|b| b.stop_time) {
        None => checks.push(Finding {
            check: "backup_age",
            status: Health::Critical,
            message: "no backup in the repository can be restored: take one with `pitr backup`"
                .into(),
            value: None,
        }),
        Some(b) => {
            let age = (now - b.stop_time).num_milliseconds() as f64 / 1000.0;
            let status = level(age, t.warn_backup_age_secs, t.crit_backup_age_secs);
            checks.push(Finding {
                check: "backup_age",
                status,
                message: format!(
                    "the newest backup in the repository, {} {}, finished {} ago{}",
                    b.start.name(),
                    b.id,
                    human_secs(age),
                    match status {
                        Health::Ok => String::new(),
                        _ => format!(
                            " (warning from {}, critical from {}): take one with `pitr backup` or `pitr maintain`",
                            human_secs(t.warn_backup_age_secs),
                            human_secs(t.crit_backup_age_secs)
                        ),
                    }
                ),
                value: Some(age),
            });
        }
    }
    // WAL continuity along the newest timeline from its earliest start.
    let newest = windows.first();
    match newest {
        Some(w) if !w.gaps.is_empty() => checks.push(Finding {
            check: "wal_continuity",
            status: Health::Critical,
            message: format!(
                "WAL of timeline {} has gaps ({}): no restore can pass them; `pitr info` shows what is restorable, take a backup to restore past them",
                w.timeline,
                w.gaps.join(", ")
            ),
            value: Some(w.gaps.len() as f64),
        }),
        Some(w) => checks.push(Finding {
            check: "wal_continuity",
            status: Health::Ok,
            message: format!(
                "WAL of timeline {} is continuous from its earliest start point to {}",
                w.timeline,
                w.latest_segment.as_deref().unwrap_or("the end of the archive")
            ),
            value: Some(0.0),
        }),
        None => {}
    }
    checks.push(Finding {
        check: "catalog",
        status: if catalog.damaged.is_empty() {
            Health::Ok
        } else {
            Health::Warning
        },
        message: if catalog.damaged.is_empty() {
            "every catalog object reads".into()
        } else {
            format!(
                "{} catalog object(s) cannot be read and are planned around: {}",
                catalog.damaged.len(),
                catalog
                    .damaged
                    .iter()
                    .map(|d| format!("{} ({})", d.key, d.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
        value: Some(catalog.damaged.len() as f64),
    });
    checks.push(verify_check(verified, now, t));
    if let Some(s) = server {
        server_checks(s, t, &mut checks);
    }
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Health::Ok);
    Report {
        status,
        checks,
        repository: String::new(),
        at: now,
    }
}

/// The last `pitr verify`: critical when it found problems, a warning
/// when there is none or it is older than the bound.
fn verify_check(v: Option<&VerifyResult>, now: DateTime<Utc>, t: &Thresholds) -> Finding {
    let Some(v) = v else {
        return Finding {
            check: "verify",
            status: Health::Warning,
            message: "the repository was never verified: run `pitr verify` (and `pitr verify --restore`) from cron".into(),
            value: None,
        };
    };
    let age = (now - v.at).num_milliseconds() as f64 / 1000.0;
    let kind = match v.kind {
        VerifyKind::Integrity => "pitr verify",
        VerifyKind::Restore => "pitr verify --restore",
    };
    let (status, message) = if !v.ok {
        (
            Health::Critical,
            format!(
                "the last {kind}, {} ago, found {} problem(s): run it again to see them",
                human_secs(age),
                v.problems
            ),
        )
    } else if age >= t.warn_verify_age_secs {
        (
            Health::Warning,
            format!(
                "the last {kind} passed {} ago, longer than {}: run it again",
                human_secs(age),
                human_secs(t.warn_verify_age_secs)
            ),
        )
    } else {
        (
            Health::Ok,
            format!("the last {kind} passed {} ago", human_secs(age)),
        )
    };
    Finding {
        check: "verify",
        status,
        message,
        value: Some(age),
    }
}

fn server_checks(s: &ServerFacts, t: &Thresholds, checks: &mut Vec<Finding>) {
    if s.in_recovery {
        checks.push(Finding {
            check: "archive_lag",
            status: Health::Ok,
            message: format!(
                "{} is in recovery: it archives nothing (`pitr status` shows its replay lag)",
                s.data_directory
            ),
            value: None,
        });
        return;
    }
    match s.unarchived_bytes {
        Some(bytes) => {
            let status = level(
                bytes as f64,
                t.warn_archive_lag_bytes as f64,
                t.crit_archive_lag_bytes as f64,
            );
            checks.push(Finding {
                check: "archive_lag",
                status,
                message: format!(
                    "{} MiB of WAL written and not archived yet{}",
                    bytes >> 20,
                    match status {
                        Health::Ok => String::new(),
                        _ => " (is archive_command keeping up? see pg_stat_archiver and the server log)"
                            .into(),
                    }
                ),
                value: Some(bytes as f64),
            });
        }
        None => checks.push(Finding {
            check: "archive_lag",
            status: Health::Warning,
            message: format!(
                "the archive lag is unknown: {}",
                s.lag_note
                    .as_deref()
                    .unwrap_or("the server's timeline has no archived WAL in this repository")
            ),
            value: None,
        }),
    }
    let failing = s.failed_count > 0
        && s.last_failed_time
            .is_some_and(|f| s.last_archived_time.is_none_or(|a| f > a));
    checks.push(Finding {
        check: "archiver",
        status: if failing {
            Health::Critical
        } else {
            Health::Ok
        },
        message: if failing {
            format!(
                "archive_command is failing: the last attempt, for {}, failed at {} after the last success{} ({} failures since the statistics were reset); its error is in the server log",
                s.last_failed_wal.as_deref().unwrap_or("a file"),
                s.last_failed_time.map(|t| t.to_string()).unwrap_or_default(),
                s.last_archived_time
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                s.failed_count
            )
        } else {
            "archive_command's last attempt succeeded".into()
        },
        value: Some(s.failed_count as f64),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::StartKind;
    use crate::plan::testkit::{at, seg_secs, Kit};

    /// A passing verify far in the future of every test's clock: fresh.
    fn ok_verify() -> Option<&'static VerifyResult> {
        static V: std::sync::OnceLock<VerifyResult> = std::sync::OnceLock::new();
        Some(V.get_or_init(|| verify_at(at(10_000_000), true)))
    }

    fn verify_at(when: DateTime<Utc>, ok: bool) -> VerifyResult {
        VerifyResult {
            at: when,
            kind: VerifyKind::Integrity,
            ok,
            problems: u64::from(!ok),
            objects_checked: 10,
            bytes_checked: 100,
            backup_id: None,
            time_to_usable_seconds: None,
            time_to_checked_seconds: None,
            pitr_version: String::new(),
        }
    }

    #[test]
    fn the_last_verify_passed_recently_or_the_check_says_why_not() {
        let c = Kit::new().segments(1, 1..=6).backup("b", 1, 2, 10).build();
        let now = c.backups[0].stop_time;
        let t = Thresholds::default();
        let r = evaluate(&c, None, None, now, &t);
        assert_eq!(finding(&r, "verify").status, Health::Warning);
        assert!(finding(&r, "verify").message.contains("never verified"));
        let fresh = verify_at(now - chrono::Duration::hours(2), true);
        assert_eq!(
            finding(&evaluate(&c, Some(&fresh), None, now, &t), "verify").status,
            Health::Ok
        );
        let old = verify_at(now - chrono::Duration::days(9), true);
        assert_eq!(
            finding(&evaluate(&c, Some(&old), None, now, &t), "verify").status,
            Health::Warning
        );
        let failed = verify_at(now - chrono::Duration::hours(2), false);
        let r = evaluate(&c, Some(&failed), None, now, &t);
        assert_eq!(
            (r.status, finding(&r, "verify").status),
            (Health::Critical, Health::Critical)
        );
    }

    fn finding<'a>(r: &'a Report, name: &str) -> &'a Finding {
        r.checks.iter().find(|c| c.check == name).unwrap()
    }

    #[test]
    fn the_newest_backups_age_warns_then_is_critical() {
        let c = Kit::new().segments(1, 1..=6).backup("b", 1, 2, 10).build();
        let b = &c.backups[0];
        let t = Thresholds::default();
        let after = |h: i64| b.stop_time + chrono::Duration::hours(h);
        let r = evaluate(&c, ok_verify(), None, after(1), &t);
        assert_eq!(
            (r.status, finding(&r, "backup_age").status),
            (Health::Ok, Health::Ok)
        );
        assert_eq!(finding(&r, "wal_continuity").status, Health::Ok);
        let r = evaluate(&c, ok_verify(), None, after(27), &t);
        assert_eq!(r.status, Health::Warning);
        assert!(
            finding(&r, "backup_age")
                .message
                .contains("full b, finished 27.0 h ago"),
            "{:?}",
            r.checks
        );
        let r = evaluate(&c, ok_verify(), None, after(51), &t);
        assert_eq!(r.status, Health::Critical);
    }

    #[test]
    fn no_restorable_backup_and_gaps_are_critical() {
        let empty = Kit::new().segments(1, 1..=3).build();
        let r = evaluate(&empty, ok_verify(), None, at(100), &Thresholds::default());
        assert_eq!(finding(&r, "backup_age").status, Health::Critical);
        // An incremental whose full backup is gone restores nothing.
        let orphan = Kit::new()
            .segments(1, 1..=6)
            .incremental("i", "gone", 1, 3, 400, 10)
            .build();
        let r = evaluate(
            &orphan,
            ok_verify(),
            None,
            at(seg_secs(1, 6)),
            &Thresholds::default(),
        );
        assert_eq!(finding(&r, "backup_age").status, Health::Critical);
        // A gap after the backup.
        let gap = Kit::new()
            .segments(1, 1..=3)
            .segments(1, 5..=6)
            .start_point("b", StartKind::Full, 1, 2, 40, 10)
            .build();
        let r = evaluate(
            &gap,
            ok_verify(),
            None,
            at(seg_secs(1, 6)),
            &Thresholds::default(),
        );
        let f = finding(&r, "wal_continuity");
        assert_eq!(f.status, Health::Critical);
        assert!(
            f.message.contains("000000010000000000000004"),
            "{}",
            f.message
        );
        assert_eq!(r.status, Health::Critical);
    }

    #[test]
    fn a_primary_behind_on_archiving_or_failing_to_archive() {
        let c = Kit::new().segments(1, 1..=6).backup("b", 1, 2, 10).build();
        let now = c.backups[0].stop_time;
        let t = Thresholds::default();
        let mut s = ServerFacts {
            data_directory: "/d".into(),
            unarchived_bytes: Some(16 << 20),
            ..ServerFacts::default()
        };
        let r = evaluate(&c, ok_verify(), Some(&s), now, &t);
        assert_eq!(r.status, Health::Ok, "{:?}", r.checks);
        s.unarchived_bytes = Some(200 << 20);
        assert_eq!(
            evaluate(&c, ok_verify(), Some(&s), now, &t).status,
            Health::Warning
        );
        s.unarchived_bytes = Some(2 << 30);
        assert_eq!(
            evaluate(&c, ok_verify(), Some(&s), now, &t).status,
            Health::Critical
        );
        // Failing now: the last failure is after the last success.
        s.unarchived_bytes = Some(0);
        s.failed_count = 3;
        s.last_archived_time = Some(now);
        s.last_failed_time = Some(now + chrono::Duration::seconds(5));
        s.last_failed_wal = Some("000000010000000000000007".into());
        let r = evaluate(&c, ok_verify(), Some(&s), now, &t);
        let f = finding(&r, "archiver");
        assert_eq!(f.status, Health::Critical);
        assert!(
            f.message.contains("000000010000000000000007"),
            "{}",
            f.message
        );
        // Failed once, succeeded since: fine.
        s.last_archived_time = Some(now + chrono::Duration::seconds(9));
        assert_eq!(
            evaluate(&c, ok_verify(), Some(&s), now, &t).status,
            Health::Ok
        );
    }
}
