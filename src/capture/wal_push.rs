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
use crate::pg::wal::{scan_segment, LongPageHeader};
use crate::pg::{SegmentName, WalFileName, WalNameError};
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
    #[error("{name} is not a valid WAL segment: {reason}")]
    BadSegment { name: String, reason: String },
    #[error("{name} belongs to database system {found}, but this repository holds system {expected}: archive_command points at the wrong repository")]
    OtherCluster {
        name: String,
        found: String,
        expected: String,
    },
    #[error("{name} is already archived with different content; refusing to overwrite it (two clusters archiving to one repository, or a restored server still archiving here?)")]
    Conflict { name: String },
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
            let out = push_segment(repo, &config, seg, raw).await?;
            compact_previous_chunk(repo, &config, seg).await;
            Ok(out)
        }
        WalFileName::Partial(_) => {
            let raw = tokio::fs::read(path).await.map_err(read_err)?;
            check_header(&config, &fname, &raw)?;
            push_aux(repo, &name, raw).await
        }
        WalFileName::History(_) | WalFileName::Backup { .. } => {
            let raw = tokio::fs::read(path).await.map_err(read_err)?;
            push_aux(repo, &name, raw).await
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
    let record_key = layout::segment_record(seg);
    let data_key = layout::segment_data(seg);

    // Fast path for a re-push: the record is the commit marker.
    match repo
        .get_meta::<WalSegmentRecord>(&record_key, KIND_WAL)
        .await
    {
        Ok(existing) => return same_or_conflict(&existing, &raw),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }

    // Compression of two halves on two threads (two zstd frames, read back
    // as one stream), the hash and the WAL scan on a third: a push costs
    // about its CPU time over two cores.
    let (raw, stored, hash, summary, scan_error, xacts) = tokio::task::spawn_blocking(move || {
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
            let (summary, scan_error, xacts) = match scanned {
                Ok(scan) => (
                    Some(WalSummary::from_scan(&scan)),
                    None,
                    Some(scan.xact_ends),
                ),
                Err(e) => (None, Some(e.to_string()), None),
            };
            Ok((stored, hash, summary, scan_error, xacts))
        });
        done.map(|(stored, hash, summary, scan_error, xacts)| {
            (raw, stored, hash, summary, scan_error, xacts)
        })
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|source| PushError::Compress {
        name: name.clone(),
        source,
    })?;
    let stored = stored.map_err(|source| PushError::Compress {
        name: name.clone(),
        source,
    })?;

    let (sha256, blake3) = hash.into_fields();
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
    };
    let data = async {
        match repo.store().put(&data_key, &stored, PutMode::Create).await {
            Ok(()) => Ok(()),
            // Data without a record: an earlier push died before it was
            // acknowledged. Nothing relies on it, so replace it.
            Err(StoreError::AlreadyExists(_)) => {
                repo.store()
                    .put(&data_key, &stored, PutMode::Overwrite)
                    .await
            }
            Err(e) => Err(e),
        }
        .map_err(PushError::from)
    };
    // Every transaction end, for exact explanations (not read by plan).
    let xacts = async {
        let bytes = xacts.and_then(|x| {
            crate::catalog::Envelope::seal(KIND_WAL_XACTS, &x)
                .ok()
                .and_then(|b| codec::compress(&b).ok())
        });
        if let Some(bytes) = bytes {
            repo.store()
                .put(&layout::segment_xacts(seg), &bytes, PutMode::Overwrite)
                .await?;
        }
        Ok::<(), PushError>(())
    };
    // The index entry, like the data, is durable before the record (the
    // acknowledgement): once it exists, the planner must see the segment.
    // Until then the push is unacknowledged and may be replaced, so the
    // entry may be too. The three writes are independent: done at once.
    let index = async {
        repo.put_meta(
            &layout::wal_index_pending(seg),
            KIND_WAL,
            &record,
            PutMode::Overwrite,
        )
        .await
        .map_err(PushError::from)
    };
    tokio::try_join!(data, xacts, index)?;
    match repo
        .put_meta(&record_key, KIND_WAL, &record, PutMode::Create)
        .await
    {
        Ok(()) => Ok(PushOutcome {
            name,
            status: PushStatus::Stored,
            raw_bytes: record.raw_bytes,
            stored_bytes: record.stored_bytes,
        }),
        Err(RepoError::Store(StoreError::AlreadyExists(_))) => {
            // A concurrent push of the same name won the race.
            let existing: WalSegmentRecord = repo.get_meta(&record_key, KIND_WAL).await?;
            same_or_conflict(&existing, &raw)
        }
        Err(e) => Err(e.into()),
    }
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
    use crate::pg::{SegNo, TimelineId};

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
        }
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
