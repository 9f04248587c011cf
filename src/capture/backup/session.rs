//! The SQL session that brackets a backup: the non-exclusive low-level API
//! on one connection held for the whole copy — `pg_backup_start` ..
//! `pg_backup_stop` from PostgreSQL 15, `pg_start_backup(.., exclusive =>
//! false)` .. `pg_stop_backup(false, false)` before.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::{BackupError, ReturnedError};
use crate::pg::backup_label::BackupLabel;
use crate::pg::{Lsn, SegmentName, WalFileName};

fn returned<E: Into<ReturnedError>>(what: &'static str) -> impl FnOnce(E) -> BackupError {
    move |e| BackupError::Returned {
        what,
        source: e.into(),
    }
}

fn sql(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> BackupError {
    move |source| BackupError::Sql { what, source }
}

/// A connected server, and which backup functions it has.
pub(crate) struct Session<'a> {
    client: &'a Client,
    version_num: i32,
}

/// What `pg_backup_stop` returned, checked.
pub(crate) struct Stopped {
    pub(crate) stop_lsn: Lsn,
    /// The `backup_label` contents, as returned.
    pub(crate) labelfile: String,
    pub(crate) label: BackupLabel,
    pub(crate) spcmap: Option<String>,
    /// `pg_walfile_name(stop lsn)`, as returned.
    pub(crate) stop_segment: String,
    pub(crate) stop_seg: SegmentName,
    pub(crate) stop_time: DateTime<Utc>,
}

impl<'a> Session<'a> {
    /// Asks the server its version (which functions to call) and its clock
    /// (the backup's start time, which names it).
    pub(crate) async fn open(
        client: &'a Client,
    ) -> Result<(Session<'a>, DateTime<Utc>), BackupError> {
        let version_num: i32 = client
            .query_one("select current_setting('server_version_num')::int", &[])
            .await
            .map_err(sql("server_version_num"))?
            .try_get(0)
            .map_err(sql("server_version_num"))?;
        let start_time: DateTime<Utc> = client
            .query_one("select clock_timestamp()", &[])
            .await
            .map_err(sql("clock_timestamp()"))?
            .try_get(0)
            .map_err(sql("clock_timestamp()"))?;
        Ok((
            Session {
                client,
                version_num,
            },
            start_time,
        ))
    }

    /// Starts the backup; returns its start LSN.
    pub(crate) async fn start(&self, label: &str, fast: bool) -> Result<Lsn, BackupError> {
        let start_sql = if self.version_num >= 150000 {
            "select pg_backup_start($1, $2)::text"
        } else {
            "select pg_start_backup($1, $2, false)::text"
        };
        let start_lsn: String = self
            .client
            .query_one(start_sql, &[&label, &fast])
            .await
            .map_err(sql("pg_backup_start"))?
            .try_get(0)
            .map_err(sql("pg_backup_start"))?;
        start_lsn.parse().map_err(returned("start LSN"))
    }

    /// Ends a backup that failed, ignoring what it returns.
    pub(crate) async fn abort(&self) -> Result<(), tokio_postgres::Error> {
        let q = if self.version_num >= 150000 {
            "select pg_backup_stop(false)"
        } else {
            "select pg_stop_backup(false, false)"
        };
        self.client.query(q, &[]).await.map(|_| ())
    }

    /// Stops the backup and checks what the server returned: the stop LSN,
    /// a `backup_label` that parses and a stop file that is a segment.
    pub(crate) async fn stop(&self) -> Result<Stopped, BackupError> {
        // wait_for_archive => false: the server still switches to a new
        // segment, but its own wait polls once a second; pitr watches its own
        // repository for the stop segment instead (wait_archived), which is
        // both the stronger check and ~1 s faster.
        let stop_sql = if self.version_num >= 150000 {
            "select lsn::text, labelfile, spcmapfile, pg_walfile_name(lsn), clock_timestamp() from pg_backup_stop(false)"
        } else {
            "select lsn::text, labelfile, spcmapfile, pg_walfile_name(lsn), clock_timestamp() from pg_stop_backup(false, false)"
        };
        let row = self
            .client
            .query_one(stop_sql, &[])
            .await
            .map_err(sql("pg_backup_stop"))?;
        // try_get: a column of another type is an error, not a panic.
        let stop_lsn: String = row.try_get(0).map_err(sql("pg_backup_stop"))?;
        let stop_lsn: Lsn = stop_lsn.parse().map_err(returned("stop LSN"))?;
        let labelfile: String = row.try_get(1).map_err(sql("pg_backup_stop"))?;
        let spcmap: Option<String> = row.try_get(2).map_err(sql("pg_backup_stop"))?;
        let stop_segment: String = row.try_get(3).map_err(sql("pg_backup_stop"))?;
        let stop_time: DateTime<Utc> = row.try_get(4).map_err(sql("pg_backup_stop"))?;
        let label = BackupLabel::parse(&labelfile).map_err(returned("backup_label"))?;
        let stop_name = WalFileName::parse(&stop_segment).map_err(returned("stop segment name"))?;
        let stop_seg: SegmentName = match stop_name {
            WalFileName::Segment(s) => s,
            other => {
                return Err(returned("stop segment name")(ReturnedError::NotASegment(
                    other.to_string(),
                )))
            }
        };
        Ok(Stopped {
            stop_lsn,
            labelfile,
            label,
            spcmap,
            stop_segment,
            stop_seg,
            stop_time,
        })
    }
}
