//! Manifest assembly: one manifest entry per walked directory and file from
//! the pieces its copy produced (a file that vanished mid-copy is left
//! out), then the manifest and the record that lists the backup, written in
//! that order: the record, `catalog/backups/<id>.json`, is the commit.

use chrono::{DateTime, Utc};

use super::copy::{Copied, Got, Piece, PieceResult};
use super::incremental::Basis;
use super::session::Stopped;
use super::walk::Entry;
use super::BackupError;
use crate::catalog::model::FileKind;
use crate::catalog::{
    BackupFile, BackupManifest, BackupRecord, BlockRange, DeltaPart, FileChunk, FileSource,
    RepoConfig, StartKind,
};
use crate::pg::control::ControlFile;
use crate::repo::store::PutMode;
use crate::repo::{layout, Repo, KIND_BACKUP, KIND_MANIFEST};

/// The manifest's files, from the walk and what the copy made of it. A file
/// that vanished is left out; every other file keeps the number its objects
/// were stored under (`object`), so the manifest positions after it may
/// shift without losing their data.
pub(super) fn files(entries: &[Entry], basis: &[Basis], copied: Copied) -> Vec<BackupFile> {
    entries
        .iter()
        .zip(copied)
        .enumerate()
        .filter_map(|(n, (e, pieces))| assemble(n, e, basis.get(n).unwrap_or(&Basis::Own), pieces))
        .collect()
}

/// The manifest entry for entry `n` of the walk from its finished pieces.
fn assemble(
    n: usize,
    e: &Entry,
    basis: &Basis,
    mut pieces: Vec<(Piece, PieceResult)>,
) -> Option<BackupFile> {
    let mut file = BackupFile {
        object: Some(n as u64),
        path: e.rel.clone(),
        kind: e.kind,
        mode: e.mode,
        size: 0,
        stored_bytes: 0,
        sha256: String::new(),
        blake3: String::new(),
        chunks: Vec::new(),
        source: FileSource::Own,
    };
    if e.kind == FileKind::Dir {
        return Some(file);
    }
    // A piece that found the file gone means it was dropped mid-copy.
    if pieces.is_empty() || pieces.iter().any(|(_, r)| r.is_none()) {
        return None;
    }
    pieces.sort_by_key(|(p, _)| match p {
        Piece::Whole => 0,
        Piece::Chunk { offset, .. } | Piece::Blocks { offset, .. } => *offset,
    });
    if let Basis::Blocks { .. } = basis {
        return Some(assemble_blocks(file, basis, pieces));
    }
    for (piece, r) in pieces {
        match (piece, r?) {
            (_, Got::Unchanged(size)) => {
                file.size = size;
                file.source = FileSource::Unchanged;
                if let Basis::Compare { blake3, .. } = basis {
                    file.blake3 = blake3.clone();
                }
            }
            (Piece::Chunk { offset, .. }, Got::Stored(size, stored, sha)) => {
                file.stored_bytes += stored;
                if size > 0 {
                    file.size = file.size.max(offset + size);
                }
                file.chunks.push(FileChunk {
                    offset,
                    size,
                    stored_bytes: stored,
                    blake3: sha.into_fields().1,
                });
            }
            (_, Got::Stored(size, stored, sha)) => {
                file.stored_bytes += stored;
                file.size = size;
                (file.sha256, file.blake3) = sha.into_fields();
            }
            (_, Got::Blocks { .. }) => return None,
        }
    }
    Some(file)
}

/// A relation file judged block by block: unchanged (no block stored,
/// same size as the parent's), own (every block stored: its region
/// objects are its chunks), or a delta on the parent's file.
fn assemble_blocks(
    mut file: BackupFile,
    basis: &Basis,
    pieces: Vec<(Piece, PieceResult)>,
) -> BackupFile {
    let Basis::Blocks {
        parent_size,
        parent_blake3,
        block_size,
        ..
    } = basis
    else {
        return file;
    };
    let mut blocks = Vec::new();
    let mut parts = Vec::new();
    let mut chunks = Vec::new();
    for (piece, r) in pieces {
        let (
            Piece::Blocks { c, offset, .. },
            Some(Got::Blocks {
                read,
                blocks: b,
                stored,
                hash,
            }),
        ) = (piece, r)
        else {
            continue;
        };
        if read > 0 {
            file.size = file.size.max(offset + read);
        }
        let whole = b.len() as u64 * u64::from(*block_size) == read;
        if let Some(hash) = hash {
            file.stored_bytes += stored;
            let blake3 = hash.into_fields().1;
            parts.push(DeltaPart {
                chunk: c as u32,
                blocks: b.len() as u32,
                stored_bytes: stored,
                blake3: blake3.clone(),
            });
            chunks.push(whole.then_some(FileChunk {
                offset,
                size: read,
                stored_bytes: stored,
                blake3,
            }));
        } else {
            chunks.push(whole.then_some(FileChunk {
                offset,
                size: 0,
                stored_bytes: 0,
                blake3: String::new(),
            }));
        }
        blocks.extend(b);
    }
    if blocks.is_empty() && file.size == *parent_size {
        file.source = FileSource::Unchanged;
        file.blake3 = parent_blake3.clone();
    } else if !chunks.is_empty()
        && chunks
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| c.size > 0))
    {
        // Every region stored whole: the region objects are the file.
        file.chunks = chunks.into_iter().flatten().collect();
    } else {
        file.source = FileSource::Delta {
            block_size: *block_size,
            blocks: BlockRange::compact(blocks),
            parts,
        };
    }
    file
}

/// Bytes stored because they changed (before compression): whole files
/// of this backup's own, the blocks of deltas.
pub(super) fn changed_bytes(files: &[BackupFile]) -> u64 {
    files
        .iter()
        .filter(|f| f.kind == FileKind::File)
        .map(|f| match &f.source {
            FileSource::Own => f.size,
            FileSource::Unchanged => 0,
            FileSource::Delta {
                block_size, blocks, ..
            } => blocks.iter().map(|r| u64::from(r.count)).sum::<u64>() * u64::from(*block_size),
        })
        .sum()
}

/// Writes the manifest, then the record that lists the backup.
#[allow(clippy::too_many_arguments)]
pub(super) async fn commit(
    repo: &Repo,
    config: &RepoConfig,
    id: &str,
    label: &str,
    files: Vec<BackupFile>,
    stopped: &Stopped,
    start_time: DateTime<Utc>,
    control: ControlFile,
    start: StartKind,
) -> Result<BackupRecord, BackupError> {
    let version = start.format_version();
    let manifest = BackupManifest {
        id: id.to_string(),
        files: files.clone(),
        backup_label: stopped.labelfile.clone(),
        tablespace_map: stopped.spcmap.clone().filter(|s| !s.is_empty()),
    };
    repo.put_meta_at(
        &layout::backup_manifest(id)?,
        KIND_MANIFEST,
        &manifest,
        PutMode::Create,
        version,
    )
    .await?;
    let record = BackupRecord {
        id: id.to_string(),
        label: label.to_string(),
        system_id: config.system_id,
        pg_major: config.pg_major,
        timeline: stopped.label.start_timeline,
        start_lsn: stopped.label.start_lsn,
        checkpoint_lsn: stopped.label.checkpoint_lsn,
        stop_lsn: stopped.stop_lsn,
        stop_timeline: stopped.stop_seg.timeline(),
        start_segment: stopped.label.start_segment.to_string(),
        stop_segment: stopped.stop_segment.clone(),
        start_time,
        stop_time: stopped.stop_time,
        fingerprint: control.fingerprint,
        files: files.len() as u64,
        raw_bytes: files.iter().map(|f| f.size).sum(),
        stored_bytes: files.iter().map(|f| f.stored_bytes).sum(),
        pitr_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: Some(std::env::consts::ARCH.to_string()),
        start,
    };
    repo.put_meta_at(
        &layout::backup_record(id)?,
        KIND_BACKUP,
        &record,
        PutMode::Create,
        version,
    )
    .await?;
    Ok(record)
}
