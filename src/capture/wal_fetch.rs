//! `pitr wal-fetch`, Postgres' `restore_command`. A missing file is an
//! ordinary answer (Postgres probes for history files that do not exist)
//! and is reported as `FetchError::NotFound` so the CLI exits quietly with
//! its own code; everything else is an error with a message. The file is
//! written to a temporary name beside the destination and renamed, after
//! its checksum is verified.

use std::path::Path;

use crate::catalog::WalSegmentRecord;
use crate::pg::{WalFileName, WalNameError};
use crate::repo::codec::{self, CodecError};
use crate::repo::{layout, Repo, RepoError, KIND_WAL};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not in the repository")]
    NotFound(String),
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
    let raw = fetch_raw(repo, name).await?;
    write_atomically(dest, &raw).await?;
    Ok(raw.len() as u64)
}

/// The verified content of archived file `name`.
pub async fn fetch_raw(repo: &Repo, name: &str) -> Result<Vec<u8>, FetchError> {
    let parsed = WalFileName::parse(name)?;
    let not_found = |e: RepoError| {
        if e.is_not_found() {
            FetchError::NotFound(name.to_string())
        } else {
            FetchError::Repo(e)
        }
    };
    let raw = match &parsed {
        WalFileName::Segment(seg) => {
            let record: WalSegmentRecord = repo
                .get_meta(&layout::segment_record(seg), KIND_WAL)
                .await
                .map_err(not_found)?;
            let stored = repo
                .store()
                .get(&layout::segment_data(seg))
                .await
                .map_err(|e| not_found(e.into()))?;
            codec::decode_chunk(&stored, record.raw_bytes, &record.sha256).map_err(|source| {
                FetchError::Corrupt {
                    name: name.to_string(),
                    source,
                }
            })?
        }
        other => match repo.get_aux(other).await {
            Ok(raw) => raw,
            Err(RepoError::Codec { source, .. }) => {
                return Err(FetchError::Corrupt {
                    name: name.to_string(),
                    source,
                })
            }
            Err(e) => return Err(not_found(e)),
        },
    };
    Ok(raw)
}

pub async fn write_atomically(dest: &Path, raw: &[u8]) -> Result<(), FetchError> {
    let werr = |source| FetchError::Write {
        path: dest.display().to_string(),
        source,
    };
    let fname = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("restore");
    let tmp = dest.with_file_name(format!(".{fname}.pitr-tmp-{}", std::process::id()));
    let res = async {
        tokio::fs::write(&tmp, raw).await?;
        tokio::fs::rename(&tmp, dest).await
    }
    .await;
    if let Err(e) = res {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(werr(e));
    }
    Ok(())
}
