//! Manifest assembly: one manifest entry per walked directory and file from
//! the pieces its copy produced (a file that vanished mid-copy is left
//! out), then the manifest and the record that lists the backup, written in
//! that order: the record, `catalog/backups/<id>.json`, is the commit.

use chrono::{DateTime, Utc};

use super::copy::{Copied, Piece, PieceResult};
use super::session::Stopped;
use super::walk::Entry;
use super::BackupError;
use crate::catalog::model::FileKind;
use crate::catalog::{BackupFile, BackupManifest, BackupRecord, FileChunk, RepoConfig};
use crate::pg::control::ControlFile;
use crate::repo::store::PutMode;
use crate::repo::{layout, Repo, KIND_BACKUP, KIND_MANIFEST};

/// The manifest's files, from the walk and what the copy made of it. A file
/// that vanished is left out; every other file keeps the number its objects
/// were stored under (`object`), so the manifest positions after it may
/// shift without losing their data.
pub(super) fn files(entries: &[Entry], copied: Copied) -> Vec<BackupFile> {
    entries
        .iter()
        .zip(copied)
        .enumerate()
        .filter_map(|(n, (e, pieces))| assemble(n, e, pieces))
        .collect()
}

/// The manifest entry for entry `n` of the walk from its finished pieces.
fn assemble(n: usize, e: &Entry, mut pieces: Vec<(Piece, PieceResult)>) -> Option<BackupFile> {
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
        Piece::Chunk { offset, .. } => *offset,
    });
    for (piece, r) in pieces {
        let (size, stored, sha) = r?;
        file.stored_bytes += stored;
        match piece {
            Piece::Whole => {
                file.size = size;
                (file.sha256, file.blake3) = sha.into_fields();
            }
            Piece::Chunk { offset, .. } => {
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
        }
    }
    Some(file)
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
) -> Result<BackupRecord, BackupError> {
    let manifest = BackupManifest {
        id: id.to_string(),
        files: files.clone(),
        backup_label: stopped.labelfile.clone(),
        tablespace_map: stopped.spcmap.clone().filter(|s| !s.is_empty()),
    };
    repo.put_meta(
        &layout::backup_manifest(id)?,
        KIND_MANIFEST,
        &manifest,
        PutMode::Create,
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
        start: Default::default(),
    };
    repo.put_meta(
        &layout::backup_record(id)?,
        KIND_BACKUP,
        &record,
        PutMode::Create,
    )
    .await?;
    Ok(record)
}
