//! `pitr wal-push`, Postgres' `archive_command`. A segment is acknowledged
//! (exit 0) only once its data object and then its record object are
//! durable; the record is the commit marker. Pushing the same bytes again
//! succeeds; different bytes under an archived name are refused and
//! nothing is overwritten. Segments from another cluster (system
//! identifier) or with another segment size are refused.

use std::path::Path;

use chrono::Utc;
use serde::Serialize;

use crate::catalog::{ContentHash, RepoConfig, WalSegmentRecord, WalSummary};
use crate::pg::history::TimelineHistory;
use crate::pg::wal::{join, scan_segment, Crossing, LongPageHeader, SegmentScan};
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalFileName, WalNameError, WalSegmentSize};
use crate::repo::codec;

use super::mapped::FileBytes;
use crate::repo::store::{PutMode, StoreError};
use crate::repo::{layout, Repo, RepoError, KIND_WAL, KIND_WAL_XACTS};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Name(#[from] WalNameError),
    #[error("{name} is {actual} bytes; this repository's WAL segments are {expected} bytes")]
    WrongSize {
        name: String,
        actual: u64,
        expected: u64,
    },
    #[error("{name} is not a valid WAL file: {reason}")]
    BadSegment { name: String, reason: String },
    #[error("{name} belongs to database system {found}, but this repository holds system {expected}: archive_command points at the wrong repository")]
    OtherCluster {
        name: String,
        found: String,
        expected: String,
    },
    #[error("{name} is already archived with different content; refusing to overwrite it (two clusters archiving to one repository, or a restored server still archiving here?)")]
    Conflict { name: String },
    #[error("{name} is not finished: its last page is not written yet (a copy taken while PostgreSQL was still writing it?); archive the completed segment from pg_wal")]
    Unfinished { name: String },
    #[error("compressing {name}: {source}")]
    Compress {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl From<StoreError> for PushError {
    fn from(e: StoreError) -> Self {
        PushError::Repo(RepoError::Store(e))
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    Stored,
    AlreadyArchived,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    pub name: String,
    pub status: PushStatus,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// Archives the file at `path` (its name is the archive name).
pub async fn wal_push(repo: &Repo, path: &Path) -> Result<PushOutcome, PushError> {
    let fname = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let name = WalFileName::parse(&fname)?;
    let config = repo.config().await?;
    let read_err = |source| PushError::Read {
        path: path.display().to_string(),
        source,
    };
    match &name {
        WalFileName::Segment(seg) => {
            let raw = FileBytes::read(path).map_err(read_err)?;
            let out = push_segment(repo, &config, seg, raw, path).await?;
            compact_previous_chunk(repo, &config, seg).await;
            Ok(out)
        }
        WalFileName::Partial(_) => {
            let raw = tokio::fs::read(path).await.map_err(read_err)?;
            check_header(&config, &fname, &raw)?;
            push_aux(repo, &name, raw).await
        }
        WalFileName::History(tli) => {
            let raw = tokio::fs::read(path).await.map_err(read_err)?;
            check_history(*tli, &fname, &raw)?;
            push_aux(repo, &name, raw).await
        }
        WalFileName::Backup { .. } => {
            let raw = tokio::fs::read(path).await.map_err(read_err)?;
            push_aux(repo, &name, raw).await
        }
    }
}

/// A segment of timeline `tli` (after the first) is only plannable with
/// that timeline's history file. Postgres archives it at promotion only
/// when archiving is on then; a server restored, forked or promoted with
/// archiving off and switched on later never does. So the first push of a
/// timeline's segment into a repository without its history file pushes
/// the one beside the segment (`pg_wal/<TLI>.history`: Postgres keeps every
/// history file there). Best effort, like Postgres' own ordering: the
/// segment is durable either way, and a timeline whose history never
/// arrives is refused by `plan` with its name.
async fn push_missing_history(repo: &Repo, tli: TimelineId, segment: &Path) {
    if tli.get() <= 1 {
        return;
    }
    let name = WalFileName::History(tli);
    match repo.store().head(&layout::aux_file(&name)).await {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(error = %e, "cannot tell whether {name} is archived");
            return;
        }
    }
    let path = segment.with_file_name(name.to_string());
    let pushed = match tokio::fs::read(&path).await {
        Ok(raw) => match check_history(tli, &name.to_string(), &raw) {
            Ok(()) => push_aux(repo, &name, raw).await,
            Err(e) => Err(e),
        },
        Err(e) => {
            tracing::warn!(
                "timeline {tli} has no history file in the repository, and {} cannot be read ({e}): restores on timeline {tli} are refused until it is archived (pitr wal-push {})",
                path.display(),
                path.display()
            );
            return;
        }
    };
    match pushed {
        Ok(_) => tracing::info!(
            "archived {name} from {} (the timeline's history was missing)",
            path.display()
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not archive the missing history file {}", path.display())
        }
    }
}

/// In the first few segments of a WAL index chunk, make sure the previous
/// chunk is compacted. Best effort: the segment is already acknowledged,
/// and uncompacted entries are still read (just more slowly).
async fn compact_previous_chunk(repo: &Repo, config: &RepoConfig, seg: &SegmentName) {
    let Ok(segno) = seg.segno(config.wal_segment_size) else {
        return;
    };
    let (chunk, offset) = (
        segno.get() / layout::CHUNK_SEGMENTS,
        segno.get() % layout::CHUNK_SEGMENTS,
    );
    if chunk == 0 || offset >= 8 {
        return;
    }
    if let Err(e) = repo.compact_wal_index(seg.timeline(), chunk - 1).await {
        tracing::warn!(error = %e, chunk = chunk - 1, "could not compact the WAL index");
    }
    // Once per chunk too: what killed pushes left in the store.
    if offset == 0 {
        if let Err(e) = repo.store().sweep_abandoned().await {
            tracing::warn!(error = %e, "could not sweep abandoned temporary files");
        }
    }
}

/// A history file must be one Postgres could have written: text that
/// parses, with at least its parent's entry (only timeline 1 has none,
/// and it has no file). Garbage pushed under a history name would
/// otherwise be archived for good and refuse the real file.
fn check_history(tli: TimelineId, name: &str, raw: &[u8]) -> Result<(), PushError> {
    let bad = |reason: String| PushError::BadSegment {
        name: name.to_string(),
        reason,
    };
    let text = std::str::from_utf8(raw).map_err(|_| bad("it is not text".into()))?;
    let history = TimelineHistory::parse(tli, text).map_err(|e| bad(e.to_string()))?;
    if history.entries().is_empty() {
        return Err(bad(format!(
            "it names no parent timeline (a history file of timeline {tli} has at least one entry)"
        )));
    }
    Ok(())
}

/// Checks a segment's long page header against the repository; returns it.
fn check_header(config: &RepoConfig, name: &str, raw: &[u8]) -> Result<LongPageHeader, PushError> {
    let header = LongPageHeader::parse(raw).map_err(|e| PushError::BadSegment {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    if header.system_id != config.system_id.get() {
        return Err(PushError::OtherCluster {
            name: name.to_string(),
            found: header.system_id.to_string(),
            expected: config.system_id.to_string(),
        });
    }
    if u64::from(header.seg_size) != config.wal_segment_size.bytes() {
        return Err(PushError::WrongSize {
            name: name.to_string(),
            actual: u64::from(header.seg_size),
            expected: config.wal_segment_size.bytes(),
        });
    }
    Ok(header)
}

async fn push_segment(
    repo: &Repo,
    config: &RepoConfig,
    seg: &SegmentName,
    raw: FileBytes,
    path: &Path,
) -> Result<PushOutcome, PushError> {
    let name = seg.to_string();
    let size = config.wal_segment_size;
    if raw.len() as u64 != size.bytes() {
        return Err(PushError::WrongSize {
            name,
            actual: raw.len() as u64,
            expected: size.bytes(),
        });
    }
    let segno = seg.segno(size)?;
    let header = check_header(config, &name, &raw)?;
    // A recycled file keeps its old page addresses: it is not this segment.
    if header.page_addr != segno.start_lsn(size) {
        return Err(PushError::BadSegment {
            name,
            reason: format!(
                "its first page is for WAL position {}, not {} (a recycled or misnamed file)",
                header.page_addr,
                segno.start_lsn(size)
            ),
        });
    }
    // Only a segment that is plainly this repository's may bring its
    // timeline's history (created once: a wrong one would stay), and
    // before the scan, so that the first segment of a timeline can read
    // the record running in from its parent's segment by that history.
    push_missing_history(repo, seg.timeline(), path).await;
    let record_key = layout::segment_record(seg);

    // Fast path for a re-push: the record is the commit marker.
    match repo
        .get_meta::<WalSegmentRecord>(&record_key, KIND_WAL)
        .await
    {
        Ok(existing) => return already_archived(repo, seg, &existing, &raw).await,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }

    // Compression of two halves on two threads (two zstd frames, read back
    // as one stream), the hash and the WAL scan on a third: a push costs
    // about its CPU time over two cores.
    let (raw, stored, hash, scanned, finished) = tokio::task::spawn_blocking(move || {
        let done = std::thread::scope(|scope| {
            let raw = &raw;
            let other = scope.spawn(|| {
                let hash = ContentHash::of(raw);
                let scanned = scan_segment(raw, size);
                (hash, scanned)
            });
            let stored = codec::compress_split(raw);
            let Ok((hash, scanned)) = other.join() else {
                return Err(std::io::Error::other("the hashing thread panicked"));
            };
            let written = header.last_page_written(raw);
            let finished = match &scanned {
                Ok(scan) => written || scan.switch_lsn.is_some(),
                // The scanner could not read it: judge by the last page
                // alone, but only refuse what is plainly not this
                // segment's (another address), never mere zeros that a
                // switch may have left.
                Err(_) => written || !recycled_tail(raw, &header),
            };
            Ok((stored, hash, scanned, finished))
        });
        done.map(|(stored, hash, scanned, finished)| (raw, stored, hash, scanned, finished))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|source| PushError::Compress {
        name: name.clone(),
        source,
    })?;
    if !finished {
        // A copy of the segment Postgres is still writing: accepting it
        // would make the real one a conflict forever.
        return Err(PushError::Unfinished { name });
    }
    let stored = stored.map_err(|source| PushError::Compress {
        name: name.clone(),
        source,
    })?;

    let (summary, scan_error, xacts, tail) = match scanned {
        Ok(mut scan) => {
            let head = read_head(repo, seg, segno, size, &scan).await;
            match &head {
                Some(Crossing::Xact(x)) => scan.xact_ends.insert(0, x.clone()),
                Some(Crossing::RestorePoint(p)) => scan.restore_points.insert(0, p.clone()),
                Some(Crossing::Other) | None => {}
            }
            let mut summary = WalSummary::from_scan(&scan);
            summary.head_read = head.is_some();
            (Some(summary), None, Some(scan.xact_ends), scan.tail)
        }
        Err(e) => (None, Some(e.to_string()), None, None),
    };
    let head_read = summary.as_ref().is_some_and(|s| s.head_read);
    let (sha256, blake3) = hash.into_fields();
    let tag = layout::DataTag::from_blake3(&blake3)?;
    let record = WalSegmentRecord {
        name: name.clone(),
        timeline: seg.timeline(),
        segno,
        raw_bytes: size.bytes(),
        stored_bytes: stored.len() as u64,
        sha256,
        blake3,
        pushed_at: Utc::now(),
        summary,
        scan_error,
        data_tag: Some(tag.to_string()),
        tail,
    };
    // The data object is named by its content: a racing push of other
    // bytes writes another object, never this one, and an existing object
    // under this name already holds these bytes (writes are atomic).
    let data =
        async { create_or_same(repo, &layout::segment_data(seg, Some(&tag)), &stored).await };
    // Every transaction end: what pins a time or xid target's exact record.
    let xacts = async {
        let bytes = xacts.and_then(|x| {
            crate::catalog::Envelope::seal(KIND_WAL_XACTS, &x)
                .ok()
                .and_then(|b| codec::compress(&b).ok())
        });
        if let Some(bytes) = bytes {
            let key = layout::segment_xacts(seg, Some(&tag), head_read);
            create_or_same(repo, &key, &bytes).await?;
        }
        Ok::<(), PushError>(())
    };
    fault_point("before-data");
    tokio::try_join!(data, xacts)?;
    fault_point("after-data");
    // The record is the commit marker: created once, never replaced. The
    // WAL index entry follows it (the catalog never lists a segment whose
    // record and data are not durable); the push is acknowledged only
    // once both are, and a retry after a failure between them writes the
    // entry again (`already_archived`).
    match repo
        .put_meta(&record_key, KIND_WAL, &record, PutMode::Create)
        .await
    {
        Ok(()) => {
            // Read the marker back before acknowledging: a store whose
            // create-if-absent is not atomic (some S3-compatible servers
            // check, then write) can let a racing push of other bytes
            // replace it; then that push is the archived one, not ours.
            let stored: WalSegmentRecord = repo.get_meta(&record_key, KIND_WAL).await?;
            if stored.content_hash() != record.content_hash() {
                return already_archived(repo, seg, &stored, &raw).await;
            }
            fault_point("after-record");
            put_index_entry(repo, seg, &record).await?;
            fault_point("after-index");
            Ok(PushOutcome {
                name,
                status: PushStatus::Stored,
                raw_bytes: record.raw_bytes,
                stored_bytes: record.stored_bytes,
            })
        }
        Err(RepoError::Store(StoreError::AlreadyExists(_))) => {
            // A concurrent push of the same name won the race.
            let existing: WalSegmentRecord = repo.get_meta(&record_key, KIND_WAL).await?;
            already_archived(repo, seg, &existing, &raw).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The record running into this segment from the previous one, read
/// whole: the previous segment's record keeps its beginning
/// (`WalSegmentRecord::tail`) and this scan its rest. `None` when nothing
/// runs in, the previous segment is not archived yet (Postgres archives in
/// order, so it normally is) or kept no beginning, or the halves do not
/// make one record; the boundary then stays unknown to plans, which let
/// Postgres find a time target's stop itself there. Never fails the push.
async fn read_head(
    repo: &Repo,
    seg: &SegmentName,
    segno: SegNo,
    size: WalSegmentSize,
    scan: &SegmentScan,
) -> Option<Crossing> {
    let cont = scan.continuation.as_ref()?;
    let prev_no = SegNo::new(segno.get().checked_sub(1)?);
    let prev = previous_record(repo, seg.timeline(), prev_no, size).await?;
    let tail = prev.tail.as_ref()?;
    match join(tail, cont, scan.header.magic) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(segment = %seg, previous = %prev.name, error = %e,
                "the record running in from the previous segment does not join");
            None
        }
    }
}

/// The archived record of segment `segno` that precedes timeline `tli`'s
/// next one: `tli`'s own, else the one of the timeline that wrote that
/// stretch of WAL by `tli`'s history (a timeline's first segments follow
/// its parent's).
async fn previous_record(
    repo: &Repo,
    tli: TimelineId,
    segno: SegNo,
    size: WalSegmentSize,
) -> Option<WalSegmentRecord> {
    let get = |t: TimelineId| {
        let key = layout::segment_record(&SegmentName::new(t, segno, size));
        async move { repo.get_meta::<WalSegmentRecord>(&key, KIND_WAL).await }
    };
    match get(tli).await {
        Ok(r) => return Some(r),
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the previous segment's record");
            return None;
        }
    }
    let text = repo.get_aux(&WalFileName::History(tli)).await.ok()?;
    let history = TimelineHistory::parse(tli, std::str::from_utf8(&text).ok()?).ok()?;
    // Recovery reads a segment from the timeline that holds its last
    // byte (the child's file of the segment it branches in: Postgres'
    // XLogFileReadAnyTLI, `plan::Timeline::tli_for`); only a segment wholly
    // before the branch is the parent's.
    let last_byte = Lsn::new(segno.start_lsn(size).as_u64() + size.bytes() - 1);
    let owner = history.tli_of_point(last_byte);
    if owner == tli {
        return None;
    }
    get(owner).await.ok()
}

/// Fault injection for the kill -9 tests (docs/reliability.md): with
/// `PITR_FAULT_STOP_AT=<phase>` in its environment, wal-push stops itself
/// (SIGSTOP) at that phase, so a test can kill it exactly there. Unset,
/// this does nothing.
fn fault_point(phase: &str) {
    if std::env::var_os("PITR_FAULT_STOP_AT").is_some_and(|p| p == phase) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}

/// Whether the last page of a segment holds another segment's page (a
/// recycled file not yet overwritten): plainly unfinished.
fn recycled_tail(raw: &[u8], header: &LongPageHeader) -> bool {
    let bl = header.xlog_blcksz as usize;
    let Some(page) = raw.len().checked_sub(bl).and_then(|s| raw.get(s..)) else {
        return false;
    };
    page.iter().any(|&b| b != 0)
}

/// Writes a content-named object unless it exists (then it holds the
/// same bytes: its name is their hash, and writes are atomic).
async fn create_or_same(
    repo: &Repo,
    key: &crate::repo::store::ObjectKey,
    bytes: &[u8],
) -> Result<(), PushError> {
    match repo.store().put(key, bytes, PutMode::Create).await {
        Ok(()) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The segment's WAL index entry: what `info` and `plan` read.
async fn put_index_entry(
    repo: &Repo,
    seg: &SegmentName,
    record: &WalSegmentRecord,
) -> Result<(), PushError> {
    // The index entry is what `load_catalog` reads for every segment:
    // without the tail's bytes, which only the next segment's push needs
    // (from the record object).
    let entry = WalSegmentRecord {
        tail: None,
        ..record.clone()
    };
    repo.put_meta(
        &layout::wal_index_pending(seg),
        KIND_WAL,
        &entry,
        PutMode::Overwrite,
    )
    .await
    .map_err(PushError::from)
}

/// A re-push of an archived name: the same bytes succeed (and make sure the
/// WAL index lists the segment, in case the push that wrote the record died
/// before its index entry); other bytes are a conflict that changes nothing.
async fn already_archived(
    repo: &Repo,
    seg: &SegmentName,
    existing: &WalSegmentRecord,
    raw: &[u8],
) -> Result<PushOutcome, PushError> {
    let outcome = same_or_conflict(existing, raw)?;
    if !repo.wal_index_lists(seg, existing.segno).await? {
        put_index_entry(repo, seg, existing).await?;
    }
    Ok(outcome)
}

/// An archived record against the bytes pushed again under its name,
/// hashed the way the record was.
fn same_or_conflict(existing: &WalSegmentRecord, raw: &[u8]) -> Result<PushOutcome, PushError> {
    let theirs = existing.content_hash();
    if existing.raw_bytes == raw.len() as u64 && theirs.recompute(raw) == theirs {
        Ok(PushOutcome {
            name: existing.name.clone(),
            status: PushStatus::AlreadyArchived,
            raw_bytes: raw.len() as u64,
            stored_bytes: existing.stored_bytes,
        })
    } else {
        Err(PushError::Conflict {
            name: existing.name.clone(),
        })
    }
}

/// History, `.backup` and `.partial` files: small, stored whole; a re-push
/// compares content.
async fn push_aux(repo: &Repo, name: &WalFileName, raw: Vec<u8>) -> Result<PushOutcome, PushError> {
    let key = layout::aux_file(name);
    let stored = codec::compress(&raw).map_err(|source| PushError::Compress {
        name: name.to_string(),
        source,
    })?;
    match repo.store().put(&key, &stored, PutMode::Create).await {
        Ok(()) => Ok(PushOutcome {
            name: name.to_string(),
            status: PushStatus::Stored,
            raw_bytes: raw.len() as u64,
            stored_bytes: stored.len() as u64,
        }),
        Err(StoreError::AlreadyExists(_)) => {
            let existing = repo.get_aux(name).await?;
            if existing == raw {
                Ok(PushOutcome {
                    name: name.to_string(),
                    status: PushStatus::AlreadyArchived,
                    raw_bytes: raw.len() as u64,
                    stored_bytes: stored.len() as u64,
                })
            } else {
                Err(PushError::Conflict {
                    name: name.to_string(),
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::SegNo;

    fn record(hash: ContentHash, raw_bytes: u64) -> WalSegmentRecord {
        let (sha256, blake3) = hash.into_fields();
        WalSegmentRecord {
            name: "000000010000000000000003".into(),
            timeline: TimelineId::new(1).unwrap(),
            segno: SegNo::new(3),
            raw_bytes,
            stored_bytes: 10,
            sha256,
            blake3,
            pushed_at: Utc::now(),
            summary: None,
            scan_error: None,
            data_tag: None,
            tail: None,
        }
    }

    use crate::catalog::RepoConfig;
    use crate::repo::store::fault::FaultStore;
    use crate::repo::store::{FsStore, ObjectKey};
    use crate::repo::{RepoLocation, KIND_CONFIG};
    use std::sync::Arc;

    /// A real 1 MiB segment made by PostgreSQL 15 (testdata/wal/pg15), whose
    /// last page is written (no switch): a finished segment.
    fn segment(n: &str) -> Vec<u8> {
        let path = format!(
            "{}/testdata/wal/pg15/00000001000000000000000{n}.zst",
            env!("CARGO_MANIFEST_DIR")
        );
        zstd::decode_all(&std::fs::read(path).unwrap()[..]).unwrap()
    }

    const NAME: &str = "000000010000000000000009";

    /// A repository for the fixtures' cluster, over a fault-injecting store.
    async fn repo_for(raw: &[u8]) -> (tempfile::TempDir, Repo, Arc<FaultStore>) {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(FaultStore::new(Arc::new(FsStore::new(dir.path()))));
        let repo = Repo::with_store(
            RepoLocation::Local(dir.path().to_path_buf()),
            faults.clone(),
        );
        let header = LongPageHeader::parse(raw).unwrap();
        let control = crate::pg::control::ControlFile::decode(include_bytes!(
            "../../testdata/pg15/pg_control"
        ))
        .unwrap();
        let config = RepoConfig {
            system_id: crate::pg::control::SystemId::new(header.system_id),
            pg_major: crate::pg::control::PgMajor::new(15).unwrap(),
            wal_segment_size: crate::pg::WalSegmentSize::new(u64::from(header.seg_size)).unwrap(),
            fingerprint: control.fingerprint,
            created_at: Utc::now(),
            created_by: "test".into(),
            encryption: None,
        };
        repo.put_meta(&layout::config(), KIND_CONFIG, &config, PutMode::Create)
            .await
            .unwrap();
        (dir, repo, faults)
    }

    /// Writes `raw` as `name` in a new directory under `dir` and pushes it.
    async fn push(
        repo: &Repo,
        dir: &Path,
        name: &str,
        raw: &[u8],
    ) -> Result<PushOutcome, PushError> {
        let sub = tempfile::tempdir_in(dir).unwrap();
        let path = sub.path().join(name);
        std::fs::write(&path, raw).unwrap();
        wal_push(repo, &path).await
    }

    async fn fetched(repo: &Repo, name: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        crate::capture::wal_fetch::wal_fetch(repo, name, &dest)
            .await
            .unwrap();
        std::fs::read(dest).unwrap()
    }

    async fn listed(repo: &Repo) -> usize {
        repo.load_catalog().await.unwrap().wal.len()
    }

    /// A record placed across a segment end (testdata/wal/pg15-crossing):
    /// pushed in order, the next segment's push reads it whole, and a
    /// transaction end or restore point it is counts among that segment's
    /// (summary, transaction list); pushed out of order, nothing is read
    /// and the boundary stays unknown.
    #[tokio::test]
    async fn a_record_across_a_segment_end_is_read_by_the_next_push() {
        use crate::pg::wal::crossing_fixtures::cases;
        for c in cases() {
            let name = &c.case;
            let expected = join(
                scan_segment(&c.first.1, size_of(&c.first.1))
                    .unwrap()
                    .tail
                    .as_ref()
                    .unwrap(),
                scan_segment(&c.next.1, size_of(&c.next.1))
                    .unwrap()
                    .continuation
                    .as_ref()
                    .unwrap(),
                LongPageHeader::parse(&c.next.1).unwrap().magic,
            )
            .unwrap();
            for in_order in [true, false] {
                let (dir, repo, _) = repo_for(&c.first.1).await;
                let order = if in_order {
                    [&c.first, &c.next]
                } else {
                    [&c.next, &c.first]
                };
                for (n, raw) in order {
                    push(&repo, dir.path(), n, raw).await.unwrap();
                }
                let seg = |n: &str| match WalFileName::parse(n).unwrap() {
                    WalFileName::Segment(s) => s,
                    other => panic!("{other:?}"),
                };
                let first: WalSegmentRecord = repo
                    .get_meta(&layout::segment_record(&seg(&c.first.0)), KIND_WAL)
                    .await
                    .unwrap();
                assert!(first.tail.is_some(), "{name}: the beginning is kept");
                let next: WalSegmentRecord = repo
                    .get_meta(&layout::segment_record(&seg(&c.next.0)), KIND_WAL)
                    .await
                    .unwrap();
                let sum = next.summary.unwrap();
                let xacts = repo.segment_xacts(&seg(&c.next.0)).await.unwrap();
                assert_eq!(sum.head_read, in_order, "{name}");
                let (want_x, want_p) = match (&expected, in_order) {
                    (Crossing::Xact(x), true) => (vec![x.clone()], vec![]),
                    (Crossing::RestorePoint(p), true) => (vec![], vec![p.clone()]),
                    _ => (vec![], vec![]),
                };
                assert_eq!(xacts, want_x, "{name}, in order: {in_order}");
                assert_eq!(sum.restore_points, want_p, "{name}, in order: {in_order}");
                assert_eq!(sum.xact_count, want_x.len() as u64, "{name}");
                assert_eq!(sum.max_xact, want_x.first().cloned(), "{name}");
            }
        }
    }

    /// A push of N+1 before N that died after writing its transaction list
    /// (without the crossing commit), retried once N is archived: the
    /// retry reads the commit whole, and the list read back is the one
    /// with it, not the first push's (review of the crossing change).
    #[tokio::test]
    async fn a_retried_push_never_pairs_its_summary_with_another_list() {
        use crate::pg::wal::crossing_fixtures::cases;
        let c = cases().into_iter().find(|c| c.case == "commit_32").unwrap();
        let (dir, repo, faults) = repo_for(&c.first.1).await;
        let WalFileName::Segment(next) = WalFileName::parse(&c.next.0).unwrap() else {
            panic!("a segment name")
        };
        let rk = layout::segment_record(&next);
        faults.fail_writes(Some(Box::new(move |k: &ObjectKey| *k == rk)));
        assert!(push(&repo, dir.path(), &c.next.0, &c.next.1).await.is_err());
        faults.fail_writes(None);
        push(&repo, dir.path(), &c.first.0, &c.first.1)
            .await
            .unwrap();
        push(&repo, dir.path(), &c.next.0, &c.next.1).await.unwrap();
        let record: WalSegmentRecord = repo
            .get_meta(&layout::segment_record(&next), KIND_WAL)
            .await
            .unwrap();
        assert!(record.summary.as_ref().unwrap().head_read);
        let list = repo.segment_xacts(&next).await.unwrap();
        assert_eq!(
            list.len(),
            1,
            "the crossing commit is in the list read back"
        );
    }

    /// A segment refused as another cluster's brings no history file along
    /// (it is created once: a wrong one would stay).
    #[tokio::test]
    async fn a_refused_segment_brings_no_history() {
        let ours = segment("9");
        let theirs = &crate::pg::wal::crossing_fixtures::cases()[0].first.1;
        let (dir, repo, _) = repo_for(&ours).await;
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let name = "000000020000000000000007";
        std::fs::write(sub.path().join(name), theirs).unwrap();
        std::fs::write(
            sub.path().join("00000002.history"),
            "1\t0/7000028\tno recovery target specified\n",
        )
        .unwrap();
        let err = wal_push(&repo, &sub.path().join(name)).await.unwrap_err();
        assert!(matches!(err, PushError::OtherCluster { .. }), "{err}");
        let history = WalFileName::History(TimelineId::new(2).unwrap());
        assert!(repo.get_aux(&history).await.unwrap_err().is_not_found());
    }

    fn size_of(raw: &[u8]) -> crate::pg::WalSegmentSize {
        let h = LongPageHeader::parse(raw).unwrap();
        crate::pg::WalSegmentSize::new(u64::from(h.seg_size)).unwrap()
    }

    /// A segment of timeline 2 pushed into a repository without timeline
    /// 2's history file brings the one beside it (a server whose archiving
    /// was switched on after its promotion); without one there, the
    /// segment is archived all the same.
    #[tokio::test]
    async fn the_first_segment_of_a_timeline_brings_its_missing_history() {
        let raw = segment("9");
        let name = "000000020000000000000009";
        let history = WalFileName::History(TimelineId::new(2).unwrap());
        let text = "1\t0/9000028\tno recovery target specified\n";
        for beside in [true, false] {
            let (dir, repo, _) = repo_for(&raw).await;
            let sub = tempfile::tempdir_in(dir.path()).unwrap();
            std::fs::write(sub.path().join(name), &raw).unwrap();
            if beside {
                std::fs::write(sub.path().join(history.to_string()), text).unwrap();
            }
            wal_push(&repo, &sub.path().join(name)).await.unwrap();
            match repo.get_aux(&history).await {
                Ok(got) => {
                    assert!(beside);
                    assert_eq!(got, text.as_bytes());
                }
                Err(e) => assert!(!beside && e.is_not_found(), "{e}"),
            }
            assert_eq!(listed(&repo).await, 1, "the segment is archived either way");
        }
    }

    /// Finding 3 of issue 10: two pushes of different bytes under one name
    /// race; whichever is acknowledged is what wal-fetch returns, every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_pushes_of_different_bytes_never_change_the_acknowledged_one() {
        let complete = segment("9");
        let mut other = complete.clone();
        other[0x50000 + 100] ^= 0xFF; // still finished: its last page is intact
        for trial in 0..30 {
            let (dir, repo, _) = repo_for(&complete).await;
            let (a, b) = tokio::join!(
                push(&repo, dir.path(), NAME, &complete),
                push(&repo, dir.path(), NAME, &other)
            );
            let winner = match (&a, &b) {
                (Ok(_), Err(PushError::Conflict { .. })) => &complete,
                (Err(PushError::Conflict { .. }), Ok(_)) => &other,
                _ => panic!(
                    "trial {trial}: expected one success and one conflict, got {a:?} / {b:?}"
                ),
            };
            assert!(
                fetched(&repo, NAME).await == *winner,
                "trial {trial}: wal-fetch returned other bytes than the acknowledged push"
            );
            assert_eq!(listed(&repo).await, 1);
        }
    }

    /// Finding 4: a push that fails before its record leaves no WAL index
    /// entry; one that fails after it is completed by the retry.
    #[tokio::test]
    async fn a_failed_push_never_leaves_the_index_claiming_the_segment() {
        let raw = segment("9");
        let (dir, repo, faults) = repo_for(&raw).await;
        let WalFileName::Segment(seg) = WalFileName::parse(NAME).unwrap() else {
            panic!("{NAME} is a segment name")
        };
        let record_key = layout::segment_record(&seg);
        let rk = record_key.clone();
        faults.fail_writes(Some(Box::new(move |k: &ObjectKey| *k == rk)));
        assert!(push(&repo, dir.path(), NAME, &raw).await.is_err());
        assert_eq!(
            listed(&repo).await,
            0,
            "the index lists a segment whose push failed"
        );
        faults.fail_writes(Some(Box::new(|k: &ObjectKey| {
            k.as_str().starts_with("catalog/wal/")
        })));
        assert!(push(&repo, dir.path(), NAME, &raw).await.is_err());
        assert_eq!(listed(&repo).await, 0);
        faults.fail_writes(None);
        let out = push(&repo, dir.path(), NAME, &raw).await.unwrap();
        assert_eq!(out.status, PushStatus::AlreadyArchived);
        assert_eq!(
            listed(&repo).await,
            1,
            "the retry did not complete the index"
        );
        assert!(fetched(&repo, NAME).await == raw);
    }

    /// Finding 9: a copy of a segment still being written (zeros where the
    /// rest will go, or the recycled file's old pages) is refused, and the
    /// finished segment is then archived.
    #[tokio::test]
    async fn an_unfinished_copy_is_refused_and_the_finished_segment_then_archived() {
        let raw = segment("9");
        let (dir, repo, _) = repo_for(&raw).await;
        let mut zeroed = raw.clone();
        zeroed[0x80000..].fill(0);
        let mut recycled = raw.clone();
        recycled[0x80000..].copy_from_slice(&segment("A")[0x80000..]);
        for copy in [zeroed, recycled] {
            let e = push(&repo, dir.path(), NAME, &copy).await.unwrap_err();
            assert!(matches!(e, PushError::Unfinished { .. }), "{e}");
        }
        assert_eq!(listed(&repo).await, 0);
        let out = push(&repo, dir.path(), NAME, &raw).await.unwrap();
        assert_eq!(out.status, PushStatus::Stored);
        // A segment closed by a switch ends in zeroed pages: finished.
        let switched = segment("7");
        let out = push(&repo, dir.path(), "000000010000000000000007", &switched)
            .await
            .unwrap();
        assert_eq!(out.status, PushStatus::Stored);
    }

    /// Finding 8: garbage under a history name is refused; the real file is
    /// then archived and the repository still plans.
    #[tokio::test]
    async fn a_garbage_history_file_is_refused() {
        let raw = segment("9");
        let (dir, repo, _) = repo_for(&raw).await;
        for garbage in [
            &b"garbage\n"[..],
            b"",
            b"\xff\xfe",
            b"2\t0/3000000\tno recovery target specified\n",
        ] {
            let e = push(&repo, dir.path(), "00000002.history", garbage)
                .await
                .unwrap_err();
            assert!(matches!(e, PushError::BadSegment { .. }), "{e}");
        }
        let real = include_bytes!("../../testdata/pg15/00000002.history");
        push(&repo, dir.path(), "00000002.history", real)
            .await
            .unwrap();
        assert_eq!(repo.load_catalog().await.unwrap().histories.len(), 1);
    }

    #[test]
    fn a_re_push_is_compared_the_way_the_record_was_hashed() {
        let raw = vec![7u8; 4096];
        let other = vec![8u8; 4096];
        let old = ContentHash::Sha256(codec::sha256_hex(&raw));
        for existing in [record(old, 4096), record(ContentHash::of(&raw), 4096)] {
            let same = same_or_conflict(&existing, &raw).unwrap();
            assert_eq!(same.status, PushStatus::AlreadyArchived);
            assert!(matches!(
                same_or_conflict(&existing, &other),
                Err(PushError::Conflict { .. })
            ));
        }
        // The same hash but another size is not the same segment.
        let short = record(ContentHash::of(&raw), 1024);
        assert!(matches!(
            same_or_conflict(&short, &raw),
            Err(PushError::Conflict { .. })
        ));
    }
}
