//! `pitr wal-fetch`, Postgres' `restore_command`. A file that is not in a
//! healthy repository is an ordinary answer (Postgres probes for history
//! files that do not exist, and asks past the end of the archive) and is
//! reported as `FetchError::NotFound` so the CLI exits quietly with its own
//! code. Everything else is loud and must stop recovery, never end it: a
//! missing repository (`pitr.json` absent: a typo, an unmounted disk, a
//! wrong S3 prefix), a segment the catalog lists whose record or data
//! cannot be read, a corrupt object. The file is written to a temporary
//! name beside the destination and renamed, after its checksum is verified.

use std::path::Path;

use crate::catalog::{ContentHash, WalSegmentRecord};
use crate::pg::{SegmentName, WalFileName, WalNameError};
use crate::repo::codec::{self, CodecError};
use crate::repo::store::StoreError;
use crate::repo::{layout, Repo, RepoError, KIND_WAL};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not in the repository")]
    NotFound(String),
    #[error("{name} is archived but cannot be served: {reason}; recovery must not go on without it (run `pitr info` to see the damage)")]
    Unservable { name: String, reason: String },
    #[error(transparent)]
    Name(#[from] WalNameError),
    #[error("{name}: {source}")]
    Corrupt {
        name: String,
        #[source]
        source: CodecError,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Repo(RepoError),
}

impl From<RepoError> for FetchError {
    fn from(e: RepoError) -> Self {
        FetchError::Repo(e)
    }
}

/// Restores archived file `name` to `dest`; returns its size.
pub async fn wal_fetch(repo: &Repo, name: &str, dest: &Path) -> Result<u64, FetchError> {
    let fetched = fetch(repo, name).await?;
    let fname = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("restore");
    let tmp = dest.with_file_name(format!(".{fname}.pitr-tmp-{}", std::process::id()));
    write_fetched(name, fetched, &tmp, dest).await
}

/// An archived file as read from the repository: a segment still
/// compressed (decoded as it is written), or the raw bytes of a small file.
pub enum Fetched {
    Segment {
        stored: Vec<u8>,
        size: u64,
        hash: ContentHash,
    },
    Raw(Vec<u8>),
}

/// Reads archived file `name` from the repository.
pub async fn fetch(repo: &Repo, name: &str) -> Result<Fetched, FetchError> {
    let parsed = WalFileName::parse(name)?;
    match &parsed {
        WalFileName::Segment(seg) => {
            let record: WalSegmentRecord =
                match repo.get_meta(&layout::segment_record(seg), KIND_WAL).await {
                    Ok(r) => r,
                    Err(e) if e.is_not_found() => return Err(absent(repo, name, Some(seg)).await),
                    Err(e) => return Err(e.into()),
                };
            let unservable = |reason: String| FetchError::Unservable {
                name: name.to_string(),
                reason,
            };
            let tag = layout::record_tag(&record)
                .map_err(|e| unservable(format!("its record is damaged: {e}")))?;
            let key = layout::segment_data(seg, tag.as_ref());
            let stored = match repo.store().get(&key).await {
                Ok(s) => s,
                Err(StoreError::NotFound(_)) => {
                    return Err(unservable(format!(
                        "its record exists but its data object {key} is missing"
                    )))
                }
                Err(e) => return Err(FetchError::Repo(e.into())),
            };
            Ok(Fetched::Segment {
                stored,
                size: record.raw_bytes,
                hash: record.content_hash(),
            })
        }
        other => match repo.get_aux(other).await {
            Ok(raw) => Ok(Fetched::Raw(raw)),
            Err(RepoError::Codec { source, .. }) => Err(FetchError::Corrupt {
                name: name.to_string(),
                source,
            }),
            Err(e) if e.is_not_found() => Err(absent(repo, name, None).await),
            Err(e) => Err(e.into()),
        },
    }
}

/// Why `name` was not found: an ordinary "not archived" only when the
/// repository is there (`pitr.json` reads) and, for a segment, the WAL
/// index does not list it either.
async fn absent(repo: &Repo, name: &str, seg: Option<&SegmentName>) -> FetchError {
    let config = match repo.config().await {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    if let Some(seg) = seg {
        let listed = match seg.segno(config.wal_segment_size) {
            Ok(segno) => repo.wal_index_lists(seg, segno).await,
            Err(_) => Ok(false),
        };
        match listed {
            Ok(false) => {}
            Ok(true) => {
                return FetchError::Unservable {
                    name: name.to_string(),
                    reason: "the WAL index lists it but its record is missing".into(),
                }
            }
            Err(e) => return e.into(),
        }
    }
    FetchError::NotFound(name.to_string())
}

/// Writes a fetched file to `tmp` (decoding and verifying a segment on
/// the way: its hash on a second thread), then renames it to `dest`.
/// Returns the bytes written. Nothing is left at `tmp` on failure.
pub async fn write_fetched(
    name: &str,
    fetched: Fetched,
    tmp: &Path,
    dest: &Path,
) -> Result<u64, FetchError> {
    let name = name.to_string();
    let (tmp, dest) = (tmp.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let werr = |source| FetchError::Write {
            path: dest.display().to_string(),
            source,
        };
        let res = (|| {
            let file = std::fs::File::create(&tmp).map_err(werr)?;
            let n = match &fetched {
                Fetched::Segment { stored, size, hash } => {
                    let out = std::io::BufWriter::with_capacity(1 << 20, &file);
                    codec::decode_into_hashing_aside(stored, *size, hash, out).map_err(
                        |source| match source {
                            CodecError::Io(e) => werr(e),
                            source => FetchError::Corrupt {
                                name: name.clone(),
                                source,
                            },
                        },
                    )?;
                    *size
                }
                Fetched::Raw(raw) => {
                    std::io::Write::write_all(&mut &file, raw).map_err(werr)?;
                    raw.len() as u64
                }
            };
            // Postgres fsyncs every segment restore_command hands it (it
            // keeps it in pg_wal, durably renamed): writing it back now,
            // while replay is elsewhere, makes that fsync cheap later.
            crate::repo::durable::start_writeback(&file, 0, n);
            std::fs::rename(&tmp, &dest).map_err(werr)?;
            Ok(n)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    })
    .await
    .map_err(|e| FetchError::Write {
        path: String::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}
