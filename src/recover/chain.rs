//! Restoring an incremental backup: its chain (`Catalog::chain`, the full
//! backup first) applied in order, as if each backup were put back over
//! the one before. Each file of the last backup starts from the newest
//! backup of the chain that holds it whole (`FileSource::Own`), restored by
//! `materialize`; the changed blocks of every later backup that has it as a
//! delta are then written over it in order (the file first cut or extended
//! to that backup's size), and an unchanged entry keeps what is there.
//! Files the last backup does not list are never created, which is what
//! removing them at each step would leave. `backup_label`,
//! `tablespace_map` and `pg_control` come from the last backup only,
//! written last once everything else is durable (`materialize::finish`):
//! a restore that stops half-way leaves a directory that cannot start.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::materialize::{self, OnBytes};
use super::RecoverError;
use crate::catalog::model::FileKind;
use crate::catalog::{BackupFile, BackupManifest, BlockRange, ContentHash, FileSource};
use crate::repo::{codec, layout, Repo};

/// One delta to write over a file: the backup that holds it, the entry's
/// position in that backup's manifest, and the entry.
struct Delta {
    manifest: usize,
    position: usize,
    file: BackupFile,
}

/// Where each file of the last backup comes from: the chain index of the
/// backup that holds it whole (and its position there), then the deltas
/// written over it, oldest first.
struct FilePlan {
    base: (usize, usize),
    deltas: Vec<Delta>,
}

/// Plans every file of the last manifest (pure: the manifests decide).
fn plan(manifests: &[BackupManifest]) -> Result<BTreeMap<String, FilePlan>, RecoverError> {
    let Some(last) = manifests.last() else {
        return Err(RecoverError::BadManifest("an empty chain".into()));
    };
    let by_path: Vec<HashMap<&str, usize>> = manifests
        .iter()
        .map(|m| {
            m.files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.path.as_str(), i))
                .collect()
        })
        .collect();
    let mut out = BTreeMap::new();
    for f in last
        .files
        .iter()
        .filter(|f| f.kind == FileKind::File && f.path != "global/pg_control")
    {
        let mut deltas = Vec::new();
        let mut base = None;
        for k in (0..manifests.len()).rev() {
            let Some(&i) = by_path[k].get(f.path.as_str()) else {
                break;
            };
            let entry = &manifests[k].files[i];
            match entry.source {
                FileSource::Own => {
                    base = Some((k, i));
                    break;
                }
                FileSource::Unchanged => {}
                FileSource::Delta { .. } => deltas.push(Delta {
                    manifest: k,
                    position: i,
                    file: entry.clone(),
                }),
            }
        }
        let Some(base) = base else {
            return Err(RecoverError::BadManifest(format!(
                "{} in backup {} comes from a parent backup that does not hold it",
                f.path, last.id
            )));
        };
        deltas.reverse();
        out.insert(f.path.clone(), FilePlan { base, deltas });
    }
    Ok(out)
}

/// The manifests to restore `backup` from, its full backup first: one
/// for a full backup, its chain for an incremental (`plan.backup.chain`
/// names the same ids; the catalog is read again here so a parent removed
/// since planning is found before anything is written).
pub async fn load_chain(
    repo: &Repo,
    backup: &crate::plan::BackupChoice,
) -> Result<Vec<BackupManifest>, RecoverError> {
    // The planner names the chain; a plan made without one (a single id
    // for an incremental) is completed from the catalog.
    let ids: Vec<String> = match backup.start {
        crate::catalog::StartKind::Incremental { .. } if backup.chain.len() < 2 => {
            let catalog = repo.load_catalog().await?;
            catalog
                .chain(&backup.id)
                .map_err(|e| RecoverError::BadManifest(e.to_string()))?
                .into_iter()
                .map(|b| b.id.clone())
                .collect()
        }
        _ if backup.chain.last() == Some(&backup.id) => backup.chain.clone(),
        _ => vec![backup.id.clone()],
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(materialize::load_manifest(repo, &id).await?);
    }
    Ok(out)
}

/// Builds the data directory of `manifests` (a chain, full backup first;
/// one manifest is a full backup, put back by `materialize`).
pub async fn materialize_any(
    repo: &Repo,
    manifests: &[BackupManifest],
    pgdata: &Path,
    jobs: usize,
    on_bytes: OnBytes,
) -> Result<(), RecoverError> {
    match manifests {
        [one] => materialize::materialize(repo, one, pgdata, jobs, on_bytes).await,
        _ => materialize_chain(repo, manifests, pgdata, jobs, on_bytes).await,
    }
}

/// Builds the data directory of the last of `manifests` (a chain, full
/// backup first) in `pgdata`.
pub async fn materialize_chain(
    repo: &Repo,
    manifests: &[BackupManifest],
    pgdata: &Path,
    jobs: usize,
    on_bytes: OnBytes,
) -> Result<(), RecoverError> {
    let plans = plan(manifests)?;
    let Some(last) = manifests.last() else {
        return Err(RecoverError::BadManifest("an empty chain".into()));
    };
    // The files each backup holds whole for the result, as a manifest of
    // that backup (object numbers kept, so the same objects are read); the
    // last backup's directories come with the first.
    let dirs: Vec<BackupFile> = last
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Dir)
        .cloned()
        .collect();
    for (k, m) in manifests.iter().enumerate() {
        let mut files = if k == 0 { dirs.clone() } else { Vec::new() };
        for p in plans.values().filter(|p| p.base.0 == k) {
            let i = p.base.1;
            let mut f = m.files[i].clone();
            f.object = Some(f.object_number(i).map_err(RecoverError::BadManifest)? as u64);
            files.push(f);
        }
        if files.is_empty() {
            continue;
        }
        let part = BackupManifest {
            id: m.id.clone(),
            files,
            backup_label: String::new(),
            tablespace_map: None,
        };
        materialize::materialize_files(repo, &part, pgdata, jobs, on_bytes.clone()).await?;
    }
    apply_deltas(repo, manifests, &plans, pgdata, jobs, on_bytes.clone()).await?;
    crate::repo::durable::sync_filesystem(pgdata).map_err(|source| RecoverError::Write {
        path: pgdata.display().to_string(),
        source,
    })?;
    materialize::finish(repo, last, pgdata, on_bytes).await
}

/// Writes every file's deltas, oldest first; `jobs` files at once.
async fn apply_deltas(
    repo: &Repo,
    manifests: &[BackupManifest],
    plans: &BTreeMap<String, FilePlan>,
    pgdata: &Path,
    jobs: usize,
    on_bytes: OnBytes,
) -> Result<(), RecoverError> {
    let ids: Arc<Vec<String>> = Arc::new(manifests.iter().map(|m| m.id.clone()).collect());
    let mut set: JoinSet<Result<(), RecoverError>> = JoinSet::new();
    for (path, p) in plans {
        if p.deltas.is_empty() {
            continue;
        }
        while set.len() >= jobs.max(1) {
            if let Some(r) = set.join_next().await {
                joined(r)?;
            }
        }
        let target = materialize::target_path(pgdata, path)?;
        let deltas: Vec<(String, usize, BackupFile)> = p
            .deltas
            .iter()
            .map(|d| (ids[d.manifest].clone(), d.position, d.file.clone()))
            .collect();
        let repo = repo.clone();
        let on_bytes = on_bytes.clone();
        set.spawn(async move {
            for (id, position, file) in deltas {
                let n = apply_delta(&repo, &id, position, &file, &target).await?;
                on_bytes(n);
            }
            Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        joined(r)?;
    }
    Ok(())
}

fn joined(r: Result<Result<(), RecoverError>, tokio::task::JoinError>) -> Result<(), RecoverError> {
    r.map_err(|e| RecoverError::Write {
        path: String::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Writes one delta of backup `id` over the file at `target`: cut or
/// extended to the entry's size, then each part's blocks, every part
/// checked against its hash. Returns the bytes written.
async fn apply_delta(
    repo: &Repo,
    id: &str,
    position: usize,
    file: &BackupFile,
    target: &Path,
) -> Result<u64, RecoverError> {
    let FileSource::Delta {
        block_size,
        blocks,
        parts,
    } = &file.source
    else {
        return Ok(0);
    };
    let werr = |source| RecoverError::Write {
        path: target.display().to_string(),
        source,
    };
    let bad = |what: String| RecoverError::BadManifest(format!("{}: {what}", file.path));
    let bs = u64::from(*block_size);
    if bs == 0 {
        return Err(bad("block size 0".into()));
    }
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(werr)?;
    out.set_len(file.size).map_err(werr)?;
    let obj = file
        .object_number(position)
        .map_err(RecoverError::BadManifest)?;
    let all: Vec<u32> = BlockRange::expand(blocks).collect();
    if parts.iter().map(|p| p.blocks as usize).sum::<usize>() != all.len() {
        return Err(bad("its parts do not hold its blocks".into()));
    }
    let mut next = 0usize;
    let mut written = 0u64;
    for part in parts {
        let key = layout::backup_chunk(id, obj, part.chunk as usize)
            .map_err(|e| RecoverError::Repo(e.into()))?;
        let stored = repo
            .store()
            .get(&key)
            .await
            .map_err(|e| RecoverError::Repo(e.into()))?;
        let size = u64::from(part.blocks) * bs;
        let hash = ContentHash::Blake3(part.blake3.clone());
        let label = format!("{} (changed blocks, part {})", file.path, part.chunk);
        let mine = all[next..next + part.blocks as usize].to_vec();
        next += part.blocks as usize;
        let out = out.try_clone().map_err(werr)?;
        let target = target.to_path_buf();
        let size_limit = file.size;
        tokio::task::spawn_blocking(move || {
            // Bounded by what decoding checks (exactly `size` bytes), not
            // preallocated from the manifest's word.
            let mut raw = Vec::with_capacity(size.min(layout::CHUNK_BYTES) as usize);
            codec::decode_into(&stored, size, &hash, &mut raw).map_err(|source| match source {
                codec::CodecError::Checksum { expected, actual } => RecoverError::Checksum {
                    path: label.clone(),
                    expected,
                    actual,
                },
                source => RecoverError::Corrupt {
                    path: label.clone(),
                    source,
                },
            })?;
            for (i, no) in mine.iter().enumerate() {
                let at = u64::from(*no) * bs;
                let block = &raw[i * bs as usize..(i + 1) * bs as usize];
                // A block past the file's size (its last block was cut
                // short when read) is written only up to it.
                let keep = size_limit.saturating_sub(at).min(bs) as usize;
                std::os::unix::fs::FileExt::write_all_at(&out, &block[..keep], at).map_err(
                    |source| RecoverError::Write {
                        path: target.display().to_string(),
                        source,
                    },
                )?;
            }
            Ok::<_, RecoverError>(())
        })
        .await
        .map_err(|e| RecoverError::Write {
            path: file.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
        written += size;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, source: FileSource) -> BackupFile {
        BackupFile {
            path: path.into(),
            kind: FileKind::File,
            mode: 0o600,
            size: 8192,
            stored_bytes: 0,
            sha256: String::new(),
            blake3: String::new(),
            chunks: vec![],
            object: None,
            source,
        }
    }

    fn manifest(id: &str, files: Vec<BackupFile>) -> BackupManifest {
        BackupManifest {
            id: id.into(),
            files,
            backup_label: String::new(),
            tablespace_map: None,
        }
    }

    fn delta() -> FileSource {
        FileSource::Delta {
            block_size: 8192,
            blocks: vec![BlockRange { start: 0, count: 1 }],
            parts: vec![],
        }
    }

    /// Each file starts from the newest backup holding it whole and takes
    /// every later delta in order; a file whose chain has no whole copy
    /// is refused; files the last backup lacks are not planned.
    #[test]
    fn files_start_from_the_newest_whole_copy() {
        let chain = vec![
            manifest(
                "full",
                vec![
                    file("a", FileSource::Own),
                    file("b", FileSource::Own),
                    file("gone", FileSource::Own),
                ],
            ),
            manifest(
                "i1",
                vec![
                    file("a", delta()),
                    file("b", FileSource::Own),
                    file("gone", FileSource::Unchanged),
                ],
            ),
            manifest(
                "i2",
                vec![
                    file("a", FileSource::Unchanged),
                    file("b", delta()),
                    file("c", FileSource::Own),
                ],
            ),
            manifest(
                "i3",
                vec![file("a", delta()), file("b", delta()), file("c", delta())],
            ),
        ];
        let p = plan(&chain).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        let summary = |k: &str| {
            let f = &p[k];
            (
                f.base.0,
                f.deltas.iter().map(|d| d.manifest).collect::<Vec<_>>(),
            )
        };
        assert_eq!(summary("a"), (0, vec![1, 3]));
        assert_eq!(summary("b"), (1, vec![2, 3]));
        assert_eq!(summary("c"), (2, vec![3]));

        let broken = vec![
            manifest("full", vec![file("x", FileSource::Own)]),
            manifest("i1", vec![file("y", delta())]),
        ];
        assert!(matches!(plan(&broken), Err(RecoverError::BadManifest(_))));
    }
}
