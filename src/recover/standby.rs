//! A standby pitr started (`pitr follow`, `Action::Standby`): it has no
//! target, so there is no end of recovery to watch for. It is ready once
//! it is consistent and accepts read-only connections (`postmaster.pid`
//! says "ready", as for a primary, and SQL over a connection served by
//! our own postmaster says it is in recovery). Watched like a restore
//! (`instance::watch`), never through the server log: the postmaster's
//! exit, its status line, pg_wal and SQL, with the stall deadline reset
//! by any sign of replay.

use std::time::{Duration, Instant};

use super::instance::{self, within, Progress, Running, WatchSpec, Watched};
use super::RecoverError;
use crate::pg::Lsn;
use crate::server::process::{self, PmStatus};

/// Waits until the standby started in `running` accepts read-only
/// connections, in recovery; fails when it exits, opens for writes
/// (it is not a standby), or shows no progress for `spec.stall_timeout`.
pub async fn wait_consistent(
    running: &mut Running,
    spec: &WatchSpec<'_>,
) -> Result<Watched, RecoverError> {
    let mut cfg = instance::socket_config(spec.socket_dir, spec.port, spec.db_user);
    cfg.application_name("pitr follow");
    let round_trip = instance::ROUND_TRIP.min(spec.stall_timeout);
    let log = running.log.display().to_string();
    let start = Instant::now();
    let mut progress = Progress::new();
    loop {
        match running.postmaster.try_wait() {
            Ok(Some(status)) => {
                return instance::exited(running, spec.action, status, None, None);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(RecoverError::ServerFailed {
                    fatal: format!("cannot wait for the postmaster: {e}"),
                    log,
                    tail: instance::log_tail(&running.log, 25),
                })
            }
        }
        let pm = process::pm_status(&running.pgdata);
        let state = match pm {
            Some(s) => format!("the postmaster reports {}", s.as_str()),
            None => "the postmaster reports no status yet".to_string(),
        };
        // "ready" once a hot standby accepts connections, as a primary
        // does (postmaster.c: PMSIGNAL_BEGIN_HOT_STANDBY); SQL tells them
        // apart.
        if pm == Some(PmStatus::Ready) {
            if let Some(w) = sample(&cfg, running, spec, round_trip).await? {
                return Ok(Watched {
                    connected_secs: Some(start.elapsed().as_secs_f64()),
                    log,
                    ..w
                });
            }
        }
        let log_len = std::fs::metadata(&running.log)
            .map(|m| m.len())
            .unwrap_or(0);
        progress.note((
            log_len,
            instance::pg_wal_signature(&running.pgdata),
            state.clone(),
        ));
        if progress.since.elapsed() >= spec.stall_timeout {
            return Err(RecoverError::Stalled {
                secs: spec.stall_timeout.as_secs(),
                state,
                log,
                tail: instance::log_tail(&running.log, 25),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One look over SQL once the postmaster says it is a hot standby: the
/// replay position and last replayed commit when it is our server and in
/// recovery; None to look again (no answer yet).
async fn sample(
    cfg: &tokio_postgres::Config,
    running: &Running,
    spec: &WatchSpec<'_>,
    round_trip: Duration,
) -> Result<Option<Watched>, RecoverError> {
    let (c, conn) = match tokio::time::timeout(round_trip, cfg.connect(tokio_postgres::NoTls)).await
    {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            // An authentication refusal will not go away (by its
            // SQLSTATE: the message is in the server's language).
            if let Some(db) = e.as_db_error() {
                if matches!(db.code().code(), "28000" | "28P01") {
                    return Err(RecoverError::ServerFailed {
                        fatal: format!(
                            "cannot connect as {} to see the standby: {} (pass --db-user, or allow local connections for it in pg_hba.conf)",
                            spec.db_user,
                            db.message()
                        ),
                        log: running.log.display().to_string(),
                        tail: instance::log_tail(&running.log, 10),
                    });
                }
            }
            tracing::debug!(error = %e, "the standby does not take connections yet");
            return Ok(None);
        }
        Err(_) => return Ok(None),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    if instance::check_identity(&c, running.pid, spec.port, round_trip)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let sql = "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()";
    let Ok(row) = within(round_trip, c.query_one(sql, &[])).await else {
        return Ok(None);
    };
    let in_recovery: bool = row.try_get(0).unwrap_or(false);
    if !in_recovery {
        return Err(RecoverError::ServerFailed {
            fatal: "the standby ended recovery and opened for writes".into(),
            log: running.log.display().to_string(),
            tail: instance::log_tail(&running.log, 25),
        });
    }
    let replay_lsn = row
        .try_get::<_, Option<String>>(1)
        .ok()
        .flatten()
        .and_then(|l| l.parse::<Lsn>().ok());
    Ok(Some(Watched {
        timeline: None,
        end: None,
        replay_lsn,
        last_commit: row.try_get(2).ok().flatten(),
        log: String::new(),
        connected_secs: None,
        first_replay: None,
    }))
}
