//! One `pitr snapshot` run: refuse what cannot work before the server is
//! asked anything (copy cannot be atomic; atomic needs `--conn` and no
//! tablespaces; btrfs needs subvolumes; command needs
//! `--covers-tablespaces` for a cluster with tablespaces), claim an id,
//! take the snapshot bracketed or atomic, wait for the WAL it needs to be
//! archived here, then write the record (with the tablespaces the
//! snapshot carries: every one `pg_backup_stop`'s `tablespace_map` names,
//! or the run fails). Whatever fails after the provider made its snapshot
//! deletes it again, and the claim is released at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::provider::{Created, Provider, ProviderArgs, ProviderError};
use crate::capture::backup::session::Session;
use crate::capture::backup::walk::walk;
use crate::capture::backup::{self, check_cluster, read_control, BackupError};
use crate::catalog::model::FileKind;
use crate::catalog::{
    BackupManifest, BackupRecord, Consistency, RepoConfig, SnapshotProvider, StartKind,
};
use crate::pg::control::ControlFile;
use crate::pg::tablespace_map::{self, TablespaceLink};
use crate::pg::{Lsn, SegmentName, TimelineId, WalFileName};
use crate::repo::store::PutMode;
use crate::repo::{layout, Repo, KIND_BACKUP, KIND_MANIFEST};
use crate::server::conn;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the copy provider cannot take an atomic snapshot: a copy of a running data directory is not one instant image; leave out --atomic (the copy is then bracketed by the backup API)")]
    CopyCannotBeAtomic,
    #[error("--atomic needs --conn: pitr reads the end of WAL from the server right after the snapshot, which is where the snapshot becomes consistent")]
    AtomicNeedsConn,
    #[error("{path} is a link to another volume: an atomic snapshot of the data directory would not hold the WAL crash recovery needs; leave out --atomic")]
    AtomicWalElsewhere { path: String },
    #[error("--atomic with tablespaces: the data directory and each tablespace are snapshotted one after another, which is no instant image of them together; leave out --atomic (a bracketed snapshot carries tablespaces)")]
    AtomicTablespaces,
    /// `pg_backup_stop`'s `tablespace_map` names a tablespace the
    /// snapshot does not hold (created while it was taken).
    #[error("tablespace {oids} appeared while the snapshot was taken and is not in it: take the snapshot again")]
    TablespacesChanged { oids: String },
    #[error("the tablespace_map pg_backup_stop returned")]
    TablespaceMap(#[source] tablespace_map::MapError),
    #[error("the {what} the server returned")]
    Returned {
        what: &'static str,
        #[source]
        source: crate::capture::backup::ReturnedError,
    },
    /// Shared with `backup`: the cluster, the session, the claim, the wait
    /// for the archive, the repository.
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("snapshot provider {provider}")]
    Provider {
        provider: &'static str,
        #[source]
        source: ProviderError,
    },
}

impl From<crate::repo::store::StoreError> for SnapshotError {
    fn from(e: crate::repo::store::StoreError) -> Self {
        SnapshotError::Backup(BackupError::from(e))
    }
}

impl From<crate::repo::RepoError> for SnapshotError {
    fn from(e: crate::repo::RepoError) -> Self {
        SnapshotError::Backup(BackupError::Repo(e))
    }
}

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub pgdata: PathBuf,
    pub conninfo: Option<String>,
    pub provider: SnapshotProvider,
    pub provider_args: ProviderArgs,
    /// No backup API: the snapshot is one instant image (`Consistency::Atomic`).
    pub atomic: bool,
    /// How long to wait for the WAL the snapshot needs to be archived.
    pub archive_timeout: Duration,
}

/// What `pitr snapshot --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub id: String,
    pub provider: SnapshotProvider,
    pub handle: String,
    pub consistency: Consistency,
    pub start_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub timeline: TimelineId,
    pub stop_time: DateTime<Utc>,
    pub raw_bytes: u64,
    pub files: u64,
    /// The whole run, from connecting to the record written.
    pub seconds: f64,
    /// How long the provider took to make the snapshot.
    pub snapshot_seconds: f64,
}

fn provider_err(kind: SnapshotProvider) -> impl FnOnce(ProviderError) -> SnapshotError {
    move |source| SnapshotError::Provider {
        provider: kind.name(),
        source,
    }
}

fn sql(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SnapshotError {
    move |source| SnapshotError::Backup(BackupError::Sql { what, source })
}

/// Takes a snapshot of `opts.pgdata` and records it in `repo`.
pub async fn snapshot(
    repo: &Repo,
    opts: &SnapshotOptions,
) -> Result<SnapshotReport, SnapshotError> {
    let began = Instant::now();
    if opts.atomic && opts.provider == SnapshotProvider::Copy {
        return Err(SnapshotError::CopyCannotBeAtomic);
    }
    if opts.atomic && opts.conninfo.is_none() {
        return Err(SnapshotError::AtomicNeedsConn);
    }
    let kind = opts.provider;
    let provider =
        Provider::new(kind, &opts.pgdata, &opts.provider_args).map_err(provider_err(kind))?;
    let config = repo.config().await?;
    check_cluster(&opts.pgdata, &config)?;
    // Each tablespace lies outside the data directory: the provider
    // carries it (see `provider`), never in one instant image with it.
    let tablespaces = crate::capture::backup::walk::tablespace_links(&opts.pgdata)?;
    if opts.atomic && !tablespaces.is_empty() {
        return Err(SnapshotError::AtomicTablespaces);
    }
    provider
        .check(&opts.pgdata, &tablespaces)
        .await
        .map_err(provider_err(kind))?;
    if opts.atomic {
        let wal = opts.pgdata.join("pg_wal");
        let linked = std::fs::symlink_metadata(&wal)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if linked {
            return Err(SnapshotError::AtomicWalElsewhere {
                path: wal.display().to_string(),
            });
        }
    }
    // What the data directory holds, as a backup walks it.
    let entries = walk(&opts.pgdata)?;
    let size = (
        entries.iter().filter(|e| e.kind == FileKind::File).count() as u64,
        entries.iter().map(|e| e.size).sum::<u64>(),
    );
    drop(entries);

    let cfg = conn::config_for(opts.conninfo.as_deref(), Some(&opts.pgdata))
        .map_err(BackupError::from)?;
    let client = conn::connect(&cfg).await.map_err(BackupError::from)?;
    let (session, start_time) = Session::open(&client).await?;
    backup::claim::sweep_abandoned(repo).await;
    let id =
        backup::claim::claim_id(repo, &start_time.format("%Y%m%dT%H%M%SZ").to_string()).await?;
    let run = Run {
        repo,
        opts,
        config: &config,
        provider: &provider,
        id: &id,
        client: &client,
        session: &session,
        start_time,
        size,
        tablespaces: &tablespaces,
    };
    let result = run.take().await;
    if let Err(e) = repo.store().delete(&layout::backup_claim(&id)?).await {
        tracing::warn!(error = %e, id, "could not remove the snapshot's claim");
    }
    let (record, snapshot_seconds, handle) = result?;
    Ok(SnapshotReport {
        id: record.id,
        provider: kind,
        handle,
        consistency: consistency(opts.atomic),
        start_lsn: record.start_lsn,
        checkpoint_lsn: record.checkpoint_lsn,
        stop_lsn: record.stop_lsn,
        timeline: record.timeline,
        stop_time: record.stop_time,
        raw_bytes: record.raw_bytes,
        files: record.files,
        seconds: began.elapsed().as_secs_f64(),
        snapshot_seconds,
    })
}

fn consistency(atomic: bool) -> Consistency {
    if atomic {
        Consistency::Atomic
    } else {
        Consistency::Bracketed
    }
}

/// One run under a claimed id.
struct Run<'a> {
    repo: &'a Repo,
    opts: &'a SnapshotOptions,
    config: &'a RepoConfig,
    provider: &'a Provider,
    id: &'a str,
    client: &'a tokio_postgres::Client,
    session: &'a Session<'a>,
    start_time: DateTime<Utc>,
    /// Files and bytes of the data directory (and its tablespaces).
    size: (u64, u64),
    /// The cluster's `pg_tblspc` links, as checked before the run.
    tablespaces: &'a [TablespaceLink],
}

/// What a snapshot is consistent at, as the record keeps it.
struct Points {
    timeline: TimelineId,
    start_lsn: Lsn,
    checkpoint_lsn: Lsn,
    start_segment: String,
    stop_lsn: Lsn,
    stop_segment: String,
    stop_seg: SegmentName,
    stop_time: DateTime<Utc>,
    backup_label: Option<(String, Option<String>)>,
}

impl Run<'_> {
    async fn take(&self) -> Result<(BackupRecord, f64, String), SnapshotError> {
        let kind = self.provider.kind();
        let label = format!("pitr snapshot {}", self.id);
        // Bracketed: the backup starts before the snapshot is taken.
        if !self.opts.atomic {
            self.session.start(&label, true).await?;
        }
        let before = match read_control(&self.opts.pgdata) {
            Ok(c) => c,
            Err(e) => {
                if !self.opts.atomic {
                    let _ = self.session.abort().await;
                }
                return Err(e.into());
            }
        };
        let taken = Instant::now();
        let created = match self
            .provider
            .create(&self.opts.pgdata, self.id, self.tablespaces)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                if !self.opts.atomic {
                    let _ = self.session.abort().await;
                }
                return Err(provider_err(kind)(e));
            }
        };
        let snapshot_seconds = taken.elapsed().as_secs_f64();
        let result = self.record(&label, &created, before).await;
        if result.is_err() {
            self.undo(&created).await;
        }
        result.map(|r| (r, snapshot_seconds, created.handle))
    }

    /// Everything after the provider's snapshot exists: its points, the
    /// WAL it needs archived, the manifest and the record.
    async fn record(
        &self,
        label: &str,
        created: &Created,
        before: ControlFile,
    ) -> Result<BackupRecord, SnapshotError> {
        let handle = created.handle.as_str();
        let points = if self.opts.atomic {
            self.atomic_points(handle, before).await?
        } else {
            self.bracketed_points().await?
        };
        if let Some((_, Some(spcmap))) = &points.backup_label {
            self.check_carried(spcmap, created)?;
        }
        backup::wait_archived(self.repo, &points.stop_seg, self.opts.archive_timeout).await?;
        let control = read_control(&self.opts.pgdata)?;
        if let Some((labelfile, spcmap)) = &points.backup_label {
            let manifest = BackupManifest {
                id: self.id.to_string(),
                files: Vec::new(),
                backup_label: labelfile.clone(),
                tablespace_map: spcmap.clone().filter(|s| !s.is_empty()),
            };
            self.repo
                .put_meta(
                    &layout::backup_manifest(self.id)?,
                    KIND_MANIFEST,
                    &manifest,
                    PutMode::Create,
                )
                .await?;
        }
        let start = StartKind::Snapshot {
            provider: self.provider.kind(),
            handle: handle.to_string(),
            consistency: consistency(self.opts.atomic),
            commands: self.provider.commands(),
            tablespaces: created.tablespaces.clone(),
        };
        let record = BackupRecord {
            id: self.id.to_string(),
            label: label.to_string(),
            system_id: self.config.system_id,
            pg_major: self.config.pg_major,
            timeline: points.timeline,
            start_lsn: points.start_lsn,
            checkpoint_lsn: points.checkpoint_lsn,
            stop_lsn: points.stop_lsn,
            stop_timeline: points.stop_seg.timeline(),
            start_segment: points.start_segment,
            stop_segment: points.stop_segment,
            start_time: self.start_time,
            stop_time: points.stop_time,
            fingerprint: control.fingerprint,
            files: self.size.0,
            raw_bytes: self.size.1,
            stored_bytes: 0,
            pitr_version: env!("CARGO_PKG_VERSION").to_string(),
            arch: Some(std::env::consts::ARCH.to_string()),
            start,
        };
        // The record is the commit: written last, at format version 3 (4
        // with tablespaces).
        self.repo
            .put_meta_at(
                &layout::backup_record(self.id)?,
                KIND_BACKUP,
                &record,
                PutMode::Create,
                record.start.format_version(),
            )
            .await?;
        Ok(record)
    }

    /// Every tablespace in `pg_backup_stop`'s map is one the snapshot
    /// carries: a restore recreates each from it.
    fn check_carried(&self, spcmap: &str, created: &Created) -> Result<(), SnapshotError> {
        let named = tablespace_map::parse(spcmap, self.config.pg_major)
            .map_err(SnapshotError::TablespaceMap)?;
        let missing: Vec<String> = named
            .iter()
            .filter(|l| !created.tablespaces.iter().any(|t| t.oid == l.oid))
            .map(|l| l.oid.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError::TablespacesChanged {
                oids: missing.join(", "),
            })
        }
    }

    /// `pg_backup_stop`: the label's start, the returned stop.
    async fn bracketed_points(&self) -> Result<Points, SnapshotError> {
        let s = self.session.stop().await?;
        Ok(Points {
            timeline: s.label.start_timeline,
            start_lsn: s.label.start_lsn,
            checkpoint_lsn: s.label.checkpoint_lsn,
            start_segment: s.label.start_segment.to_string(),
            stop_lsn: s.stop_lsn,
            stop_segment: s.stop_segment.clone(),
            stop_seg: s.stop_seg,
            stop_time: s.stop_time,
            backup_label: Some((s.labelfile.clone(), s.spcmap.clone())),
        })
    }

    /// Right after the image: the end of WAL (where it becomes
    /// consistent), then a switch so that segment is archived. Start and
    /// checkpoint come from the image's own pg_control where pitr can read
    /// it (btrfs, copy); an operator's volume is not readable here, so the
    /// data directory's pg_control read before the image stands in: its
    /// checkpoint is the image's or an earlier one, whose redo point asks
    /// for more WAL, never less.
    async fn atomic_points(
        &self,
        handle: &str,
        before: ControlFile,
    ) -> Result<Points, SnapshotError> {
        // Read before anything else: the position the image holds WAL to.
        let row = self
            .client
            .query_one(
                "select l::text, pg_walfile_name(l), clock_timestamp() from pg_current_wal_insert_lsn() l",
                &[],
            )
            .await
            .map_err(sql("pg_current_wal_insert_lsn"))?;
        let stop_lsn: String = row.try_get(0).map_err(sql("pg_current_wal_insert_lsn"))?;
        let stop_segment: String = row.try_get(1).map_err(sql("pg_current_wal_insert_lsn"))?;
        let stop_time: DateTime<Utc> = row.try_get(2).map_err(sql("pg_current_wal_insert_lsn"))?;
        let returned = |what| {
            move |source: crate::capture::backup::ReturnedError| SnapshotError::Returned {
                what,
                source,
            }
        };
        let stop_lsn: Lsn = stop_lsn
            .parse()
            .map_err(|e: crate::pg::PosError| returned("end of WAL")(e.into()))?;
        let stop_seg = match WalFileName::parse(&stop_segment)
            .map_err(|e| returned("stop segment name")(e.into()))?
        {
            WalFileName::Segment(s) => s,
            other => {
                return Err(returned("stop segment name")(
                    crate::capture::backup::ReturnedError::NotASegment(other.to_string()),
                ))
            }
        };
        self.client
            .query_one("select pg_switch_wal()", &[])
            .await
            .map_err(sql("pg_switch_wal"))?;
        let control = match self.provider.readable_dir(handle) {
            Some(dir) => read_control(&dir)?,
            None => before,
        };
        let size = self.config.wal_segment_size;
        let start_seg = SegmentName::new(
            control.checkpoint_timeline,
            control.checkpoint_redo.segno(size),
            size,
        );
        Ok(Points {
            timeline: control.checkpoint_timeline,
            start_lsn: control.checkpoint_redo,
            checkpoint_lsn: control.checkpoint,
            start_segment: start_seg.to_string(),
            stop_lsn,
            stop_segment,
            stop_seg,
            stop_time,
            backup_label: None,
        })
    }

    /// A failed run: the provider's snapshot and anything written under
    /// the id go.
    async fn undo(&self, created: &Created) {
        let kind = self.provider.kind();
        let commands = self.provider.commands();
        let handle = created.handle.as_str();
        let deleted = super::provider::delete(
            kind,
            commands.as_ref(),
            self.id,
            handle,
            &created.tablespaces,
        )
        .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, handle, "could not delete the snapshot of a failed run");
        }
        match layout::backup_dir(self.id) {
            Ok(dir) => {
                if let Err(e) = self.repo.store().delete_prefix(&dir).await {
                    tracing::warn!(error = %e, "could not remove a failed snapshot's manifest");
                }
            }
            Err(e) => tracing::warn!(error = %e, "no manifest key for the failed snapshot"),
        }
    }
}
