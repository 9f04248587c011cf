//! `pitr status`: the server running on a data directory as a script
//! needs it. From the server (over a connection its own postmaster
//! serves): in recovery or not, the timeline, the replay position
//! (`pg_last_wal_replay_lsn()`) or, on a primary, the current WAL position,
//! the last replayed transaction's time (`pg_last_xact_replay_timestamp()`)
//! and whether it streams from a primary (`pg_stat_wal_receiver`). From
//! the repository (`--repo`, else the one its `restore_command` or, on a
//! primary, its `archive_command` names): the end of the WAL archived
//! along its timeline's history and the newest transaction end in it, and
//! from both, the lag: for a standby, archived WAL not replayed yet
//! (bytes, and the time between the newest archived transaction end and
//! the last replayed one); for a primary, WAL written and not archived
//! yet (bytes).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::instance;
use super::live::{self, LiveServer, ServerError};
use super::settings;
use crate::pg::{Lsn, TimelineId};
use crate::plan::{self, ArchiveEnd};
use crate::repo::store::S3Settings;
use crate::repo::{Repo, RepoError, RepoLocation};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Where the repository `status` measured against came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoSource {
    /// `--repo` (or `PITR_REPO`).
    Option,
    /// The server's `restore_command` (`pitr wal-fetch --repo …`).
    RestoreCommand,
    /// The server's `archive_command` (`pitr wal-push --repo …`).
    ArchiveCommand,
}

/// What `pitr status` reports (`--json` prints this).
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub data_directory: String,
    pub port: u16,
    pub socket_directory: Option<String>,
    pub in_recovery: bool,
    /// The timeline it follows (a standby: its `recovery_target_timeline`,
    /// else its last restartpoint's) or writes (a primary).
    pub timeline: Option<TimelineId>,
    /// A standby's `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// A primary's `pg_current_wal_lsn()`.
    pub current_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()`: the last replayed commit or abort
    /// (none before one is replayed after the server started).
    pub last_replayed_commit: Option<DateTime<Utc>>,
    pub replay_paused: bool,
    /// A WAL receiver streams from a primary (`pg_stat_wal_receiver`).
    pub streaming: bool,
    /// The WAL receiver's status, when one runs (hidden from roles
    /// without pg_read_all_stats).
    pub wal_receiver: Option<String>,
    /// `pg_last_wal_receive_lsn()`: the end of the WAL streamed so far.
    pub receive_lsn: Option<Lsn>,
    pub repository: Option<String>,
    pub repository_source: Option<RepoSource>,
    /// The end of the WAL archived along the timeline's history.
    pub archive: Option<ArchiveEnd>,
    /// Why there is no `archive` (no repository known, a timeline the
    /// repository has no history of).
    pub archive_note: Option<String>,
    /// A standby: archived WAL not replayed yet (0 when it has replayed
    /// everything archived, or streamed past it). A primary: WAL written
    /// and not archived yet.
    pub lag_bytes: Option<u64>,
    /// A standby: the newest archived transaction end's time minus the last
    /// replayed one's (0 when nothing archived is left to replay). None on
    /// a primary, and when either time is unknown.
    pub lag_seconds: Option<f64>,
}

/// What the server says of itself, in one round trip.
struct Sample {
    in_recovery: bool,
    position: Option<Lsn>,
    last_commit: Option<DateTime<Utc>>,
    paused: bool,
    receive_lsn: Option<Lsn>,
    receiver: Option<String>,
    receiver_running: bool,
    target_timeline: String,
}

const SAMPLE_SQL: &str = "select pg_is_in_recovery(), \
     (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text, \
     pg_last_xact_replay_timestamp(), \
     case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end, \
     pg_last_wal_receive_lsn()::text, \
     (select status from pg_stat_wal_receiver limit 1), \
     exists (select 1 from pg_stat_wal_receiver where pid is not null), \
     current_setting('recovery_target_timeline')";

fn lsn_of(v: Option<String>) -> Option<Lsn> {
    v.and_then(|l| l.parse().ok())
}

async fn sample(c: &tokio_postgres::Client) -> Result<Sample, ServerError> {
    let row = live::query_one(c, SAMPLE_SQL, "reading the server's recovery state").await?;
    let bad = |e: tokio_postgres::Error| ServerError::Sql {
        what: "reading the server's recovery state".into(),
        reason: e.to_string(),
    };
    Ok(Sample {
        in_recovery: row.try_get(0).map_err(bad)?,
        position: lsn_of(row.try_get(1).map_err(bad)?),
        last_commit: row.try_get(2).map_err(bad)?,
        paused: row.try_get(3).map_err(bad)?,
        receive_lsn: lsn_of(row.try_get(4).map_err(bad)?),
        receiver: row.try_get(5).map_err(bad)?,
        receiver_running: row.try_get(6).map_err(bad)?,
        target_timeline: row.try_get(7).map_err(bad)?,
    })
}

/// The repository a server's own configuration names: its
/// `restore_command` (a standby) or `archive_command` (a primary) when it
/// calls `pitr wal-fetch`/`wal-push --repo` (postgresql.auto.conf wins
/// over postgresql.conf, as in the server).
pub fn configured_repo(
    pgdata: &Path,
    in_recovery: bool,
) -> Option<(String, S3Settings, RepoSource)> {
    let (name, source) = if in_recovery {
        ("restore_command", RepoSource::RestoreCommand)
    } else {
        ("archive_command", RepoSource::ArchiveCommand)
    };
    let value = |name: &str| {
        ["postgresql.auto.conf", "postgresql.conf"]
            .iter()
            .find_map(|f| {
                let text = std::fs::read_to_string(pgdata.join(f)).ok()?;
                settings::conf_value(&text, name)
            })
    };
    // A restored copy keeps its source's archive_command with archiving
    // off: that repository is not this server's.
    if !in_recovery && value("archive_mode").is_some_and(|m| m == "off") {
        return None;
    }
    value(name)
        .and_then(|cmd| {
            if in_recovery {
                settings::repo_of_restore_command(&cmd)
            } else {
                settings::repo_of_archive_command(&cmd)
            }
        })
        .map(|(repo, s3)| (repo, s3, source))
}

/// The lag of a server at `position` (a standby's replay position, a
/// primary's write position) against the end of the archive (see
/// `Status::lag_bytes`, `Status::lag_seconds`).
pub fn lag(
    in_recovery: bool,
    position: Option<Lsn>,
    last_replayed: Option<DateTime<Utc>>,
    end: &ArchiveEnd,
) -> (Option<u64>, Option<f64>) {
    let (Some(pos), Some(archived)) = (position, end.end_lsn) else {
        return (None, None);
    };
    if !in_recovery {
        return (Some(pos.checked_sub(archived).unwrap_or(0)), None);
    }
    let bytes = archived.checked_sub(pos).unwrap_or(0);
    let seconds = if bytes == 0 {
        Some(0.0)
    } else {
        match (end.newest_commit, last_replayed) {
            // Nothing archived past the replay position ends a transaction.
            (None, _) => Some(0.0),
            (Some(newest), Some(replayed)) => {
                Some(((newest - replayed).num_microseconds().unwrap_or(0).max(0)) as f64 / 1e6)
            }
            (Some(_), None) => None,
        }
    };
    (Some(bytes), seconds)
}

/// `pitr status --pgdata D [--repo R]`: `repo` is `--repo` when given;
/// otherwise the repository the server's configuration names, if any.
pub async fn status(
    pgdata: &Path,
    db_user: &str,
    repo: Option<Repo>,
) -> Result<Status, StatusError> {
    let server = LiveServer::find(pgdata)?;
    let client = server.connect(db_user, "pitr status").await?;
    let s = sample(&client).await?;
    let timeline = match s.target_timeline.parse::<u32>() {
        // pitr follow writes the timeline; `latest` or `current` leave the
        // last restartpoint's (a query a role may be refused: then none).
        Ok(t) if s.in_recovery => TimelineId::new(t).ok(),
        _ => instance::query_timeline(&client, s.in_recovery).await,
    };
    let mut out = Status {
        data_directory: pgdata.display().to_string(),
        port: server.port,
        socket_directory: server.socket_dir.as_ref().map(|d| d.display().to_string()),
        in_recovery: s.in_recovery,
        timeline,
        replay_lsn: s.position.filter(|_| s.in_recovery),
        current_lsn: s.position.filter(|_| !s.in_recovery),
        last_replayed_commit: s.last_commit,
        replay_paused: s.paused,
        streaming: s.receiver.as_deref() == Some("streaming"),
        wal_receiver: s.receiver.clone().or_else(|| {
            s.receiver_running
                .then(|| "running (status hidden from this role)".to_string())
        }),
        receive_lsn: s.receive_lsn,
        repository: None,
        repository_source: None,
        archive: None,
        archive_note: None,
        lag_bytes: None,
        lag_seconds: None,
    };
    let repo = match repo {
        Some(r) => Some((r, RepoSource::Option)),
        None => match configured_repo(pgdata, s.in_recovery) {
            Some((at, s3, source)) => {
                Some((Repo::open(RepoLocation::parse(&at)?, &s3).await, source))
            }
            None => None,
        },
    };
    let Some((repo, source)) = repo else {
        out.archive_note = Some(format!(
            "no repository: its {} calls no pitr --repo; pass --repo",
            if s.in_recovery {
                "restore_command"
            } else {
                "archive_command"
            }
        ));
        return Ok(out);
    };
    out.repository = Some(repo.location().to_arg());
    out.repository_source = Some(source);
    let Some(tli) = timeline else {
        out.archive_note = Some("the server does not say its timeline".into());
        return Ok(out);
    };
    let catalog = repo.load_catalog().await?;
    let from = s
        .position
        .map(|p| p.segno(catalog.config.wal_segment_size))
        .unwrap_or(crate::pg::SegNo::new(0));
    match plan::archive_end(&catalog, tli, from) {
        Ok(Some(end)) => {
            (out.lag_bytes, out.lag_seconds) = lag(s.in_recovery, s.position, s.last_commit, &end);
            out.archive = Some(end);
        }
        Ok(None) => out.archive_note = Some(format!("no WAL archived on timeline {tli}")),
        // A timeline the repository has no history file of.
        Err(e) => out.archive_note = Some(e.to_string()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn end(lsn: u64, newest: Option<i64>) -> ArchiveEnd {
        ArchiveEnd {
            timeline: TimelineId::new(1).unwrap(),
            segment: "000000010000000000000005".into(),
            end_lsn: Some(Lsn::new(lsn)),
            newest_commit: newest.map(at),
            newest_commit_segment: None,
        }
    }

    #[test]
    fn a_standby_lags_by_what_is_archived_and_not_replayed() {
        let e = end(0x500_0000, Some(30));
        // Behind: bytes, and the time between the two transaction ends.
        assert_eq!(
            lag(true, Some(Lsn::new(0x480_0000)), Some(at(12)), &e),
            (Some(0x80_0000), Some(18.0))
        );
        // At or past the end (streamed ahead of the archive): nothing.
        for pos in [0x500_0000, 0x600_0000] {
            assert_eq!(
                lag(true, Some(Lsn::new(pos)), None, &e),
                (Some(0), Some(0.0))
            );
        }
        // Behind, but nothing replayed since it started: time unknown.
        assert_eq!(
            lag(true, Some(Lsn::new(0x480_0000)), None, &e),
            (Some(0x80_0000), None)
        );
        // Behind, with no transaction end left to replay.
        assert_eq!(
            lag(
                true,
                Some(Lsn::new(0x480_0000)),
                Some(at(12)),
                &end(0x500_0000, None)
            ),
            (Some(0x80_0000), Some(0.0))
        );
        // A replayed commit newer than the archive's (streamed): not negative.
        assert_eq!(
            lag(true, Some(Lsn::new(0x480_0000)), Some(at(40)), &e).1,
            Some(0.0)
        );
        assert_eq!(lag(true, None, None, &e), (None, None));
    }

    #[test]
    fn a_primary_lags_by_what_is_written_and_not_archived() {
        let e = end(0x500_0000, Some(30));
        assert_eq!(
            lag(false, Some(Lsn::new(0x500_0100)), None, &e),
            (Some(0x100), None)
        );
        assert_eq!(
            lag(false, Some(Lsn::new(0x400_0000)), None, &e),
            (Some(0), None)
        );
    }

    #[test]
    fn the_repository_comes_from_the_servers_own_commands() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(configured_repo(d.path(), true), None);
        std::fs::write(
            d.path().join("postgresql.conf"),
            "restore_command = '/bin/pitr wal-fetch --repo /old %f %p'\narchive_command = 'cp %p /x/%f'\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("postgresql.auto.conf"),
            format!(
                "restore_command = {}\n",
                settings::guc_quote(&settings::restore_command(
                    "/bin/pitr",
                    "/srv/it's repo",
                    &[],
                    None
                ))
            ),
        )
        .unwrap();
        assert_eq!(
            configured_repo(d.path(), true),
            Some((
                "/srv/it's repo".into(),
                S3Settings::default(),
                RepoSource::RestoreCommand
            ))
        );
        // A primary's archive_command is not pitr's: no repository.
        assert_eq!(configured_repo(d.path(), false), None);
        // A restored copy: the source's pitr archive_command, archiving
        // off. Not this server's repository until archiving is on.
        let conf = "archive_command = '/bin/pitr wal-push --repo /src %p'\n";
        std::fs::write(d.path().join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            d.path().join("postgresql.auto.conf"),
            "archive_mode = 'off'\n",
        )
        .unwrap();
        assert_eq!(configured_repo(d.path(), false), None);
        std::fs::write(
            d.path().join("postgresql.auto.conf"),
            "archive_mode = 'off'\narchive_mode = 'on'\n",
        )
        .unwrap();
        assert_eq!(
            configured_repo(d.path(), false),
            Some((
                "/src".into(),
                S3Settings::default(),
                RepoSource::ArchiveCommand
            ))
        );
    }
}
