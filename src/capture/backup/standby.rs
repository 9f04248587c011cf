//! `pitr backup --from-standby`: copy the files from a streaming standby,
//! bracket the backup on the primary (as pgBackRest's `backup-standby`
//! does, `command/backup/backup.c: backupStart`, `db/db.c: dbReplayWait`).
//!
//! The primary runs `pg_backup_start` .. `pg_backup_stop` and so gives the
//! backup its start checkpoint, `backup_label` and stop segment; the files
//! come from the standby's data directory (`--pgdata`), `pg_control` last
//! as always. Before anything is copied:
//!
//! 1. the standby is in recovery and is the same database system as the
//!    primary and the repository (`Standby::connect`);
//! 2. after `pg_backup_start`, the standby has replayed up to the backup's
//!    start LSN (the redo point of the primary's backup checkpoint);
//! 3. a `CHECKPOINT` on the standby (a restartpoint) has moved the
//!    standby's own redo point (`pg_control_checkpoint().redo_lsn`) to or
//!    past that start LSN (`Standby::reach`).
//!
//! Why 3 matters: recovery of the backup starts replay at the primary's
//! start checkpoint, so every page on the standby's disk must be at least
//! as new as that redo point, or be rewritten by a full-page image after
//! it. Pages the standby replayed but only holds in its buffers are on
//! disk only after a restartpoint; a page written out before the redo
//! point and changed again in the buffers is fine, but a page flushed by
//! a restartpoint whose redo lies *before* the start LSN may predate
//! changes that WAL after the start LSN will not redo (its full-page image
//! lies before the start). A restartpoint at or after the start LSN
//! flushes everything replayed before it, which is exactly what the copy
//! needs. Both waits share one deadline (`--archive-timeout`), and the
//! error names both positions.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::Client;

use super::{BackupError, ReturnedError};
use crate::catalog::RepoConfig;
use crate::pg::Lsn;
use crate::server::conn;

fn sql(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> BackupError {
    move |source| BackupError::Sql { what, source }
}

fn lsn(what: &'static str, text: &str) -> Result<Lsn, BackupError> {
    text.parse()
        .map_err(|e: crate::pg::PosError| BackupError::Returned {
            what,
            source: ReturnedError::from(e),
        })
}

/// `pg_control_system()`'s system identifier, as text.
async fn system(c: &Client, what: &'static str) -> Result<String, BackupError> {
    c.query_one(
        "select system_identifier::text from pg_control_system()",
        &[],
    )
    .await
    .map_err(sql(what))?
    .try_get::<_, String>(0)
    .map_err(sql(what))
}

/// A connection to the standby the files are copied from.
pub(super) struct Standby {
    client: Client,
    /// Where it is, for messages (`host=… port=…`, no password).
    named: String,
}

/// What `Standby::reach` saw last, for its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Replay(Option<Lsn>),
    Redo(Lsn),
}

impl Standby {
    /// Connects and checks it is a standby of the primary's system and of
    /// the repository's, and (when the server will tell) that its data
    /// directory is `pgdata`.
    pub(super) async fn connect(
        conninfo: &str,
        primary: &Client,
        config: &RepoConfig,
        pgdata: &Path,
    ) -> Result<Standby, BackupError> {
        // No host in it: the server of --pgdata (its postmaster.pid), which
        // is the standby.
        let cfg = conn::config_for(Some(conninfo), Some(pgdata))?;
        let named = conn::describe(&cfg);
        let client = conn::connect(&cfg).await?;
        let in_recovery: bool = client
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .map_err(sql("pg_is_in_recovery() on the standby"))?
            .try_get(0)
            .map_err(sql("pg_is_in_recovery() on the standby"))?;
        if !in_recovery {
            return Err(BackupError::StandbyIsPrimary { standby: named });
        }
        let standby_system = system(&client, "pg_control_system() on the standby").await?;
        let primary_system = system(primary, "pg_control_system() on the primary").await?;
        let repo_system = config.system_id.to_string();
        if primary_system != repo_system {
            return Err(BackupError::OtherCluster {
                pgdata: "the primary (--conn)".into(),
                found: primary_system,
                expected: repo_system,
            });
        }
        if standby_system != primary_system {
            return Err(BackupError::StandbyOtherSystem {
                standby: named,
                found: standby_system,
                expected: primary_system,
            });
        }
        // data_directory needs pg_read_all_settings; without it, the
        // system identifier check above (and check_cluster's on --pgdata)
        // is what holds.
        if let Ok(row) = client
            .query_one("select current_setting('data_directory')", &[])
            .await
        {
            if let Ok(dir) = row.try_get::<_, String>(0) {
                let same = match (std::fs::canonicalize(&dir), std::fs::canonicalize(pgdata)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => true, // another host's path: cannot compare
                };
                if !same {
                    return Err(BackupError::StandbyOtherDirectory {
                        standby: named,
                        data_directory: dir,
                        pgdata: pgdata.display().to_string(),
                    });
                }
            }
        }
        Ok(Standby { client, named })
    }

    /// Waits until the standby has replayed to `start` and a restartpoint
    /// on it has its redo point at or past `start` (module comment, 2 and
    /// 3), within `timeout`.
    pub(super) async fn reach(&self, start: Lsn, timeout: Duration) -> Result<(), BackupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.look(start).await?;
            if let Some(seen) = seen {
                if tokio::time::Instant::now() >= deadline {
                    return Err(match seen {
                        Seen::Replay(replay) => BackupError::StandbyBehind {
                            standby: self.named.clone(),
                            replay: replay.map_or_else(|| "nothing".into(), |l| l.to_string()),
                            start,
                            waited_secs: timeout.as_secs(),
                        },
                        Seen::Redo(redo) => BackupError::StandbyRestartpoint {
                            standby: self.named.clone(),
                            redo,
                            start,
                            waited_secs: timeout.as_secs(),
                        },
                    });
                }
            } else {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One look: None when both conditions hold, else what fell short.
    async fn look(&self, start: Lsn) -> Result<Option<Seen>, BackupError> {
        const REPLAY: &str = "pg_last_wal_replay_lsn() on the standby";
        let replay: Option<String> = self
            .client
            .query_one("select pg_last_wal_replay_lsn()::text", &[])
            .await
            .map_err(sql(REPLAY))?
            .try_get(0)
            .map_err(sql(REPLAY))?;
        let replay = replay.map(|r| lsn("standby replay LSN", &r)).transpose()?;
        if replay.is_none_or(|r| r < start) {
            return Ok(Some(Seen::Replay(replay)));
        }
        self.client
            .batch_execute("checkpoint")
            .await
            .map_err(sql("CHECKPOINT on the standby"))?;
        const REDO: &str = "pg_control_checkpoint() on the standby";
        let redo: String = self
            .client
            .query_one("select redo_lsn::text from pg_control_checkpoint()", &[])
            .await
            .map_err(sql(REDO))?
            .try_get(0)
            .map_err(sql(REDO))?;
        let redo = lsn("standby redo LSN", &redo)?;
        if redo < start {
            return Ok(Some(Seen::Redo(redo)));
        }
        Ok(None)
    }
}
