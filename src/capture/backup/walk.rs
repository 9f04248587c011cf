//! The data-directory walk: every directory and file a base backup copies,
//! skipping what Postgres' own base backup skips (basebackup.c:
//! excludeDirContents, excludeFiles), in the order the copy needs —
//! directories before files, parents before children, `global/pg_control`
//! last. Tablespaces are refused before anything is copied.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::BackupError;
use crate::catalog::model::FileKind;

/// Files and directories whose contents are never copied: mirrors
/// basebackup.c (excludeDirContents, excludeFiles).
pub(crate) const EXCLUDE_DIR_CONTENTS: &[&str] = &[
    "pg_wal",
    "pg_dynshmem",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];
pub(crate) const EXCLUDE_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "backup_manifest",
    "recovery.signal",
    "standby.signal",
    "pg_internal.init",
    "PITR_RESTORE_FAILED",
];

/// One directory or file of the walk, as it was when walked.
pub(crate) struct Entry {
    /// Path relative to the data directory, `/`-separated.
    pub(crate) rel: String,
    pub(crate) abs: PathBuf,
    pub(crate) kind: FileKind,
    pub(crate) mode: u32,
    pub(crate) size: u64,
}

pub(crate) fn walk(pgdata: &Path) -> Result<Vec<Entry>, BackupError> {
    let mut out = Vec::new();
    let mut stack = vec![(pgdata.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|source| BackupError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| BackupError::Read {
                path: dir.display().to_string(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().to_string();
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(BackupError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            if EXCLUDE_FILES.contains(&name.as_str()) || name.starts_with("pgsql_tmp") {
                continue;
            }
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                if rel == "pg_tblspc" {
                    return Err(BackupError::Tablespaces(child_rel));
                }
                // Other links (e.g. pg_wal on another volume) are followed
                // as directories only when they are pg_wal, whose contents
                // are skipped anyway.
                if child_rel == "pg_wal" {
                    out.push(Entry {
                        rel: child_rel,
                        abs: path,
                        kind: FileKind::Dir,
                        mode: 0o700,
                        size: 0,
                    });
                }
                continue;
            }
            if meta.is_dir() {
                out.push(Entry {
                    rel: child_rel.clone(),
                    abs: path.clone(),
                    kind: FileKind::Dir,
                    mode,
                    size: 0,
                });
                if EXCLUDE_DIR_CONTENTS.contains(&child_rel.as_str()) {
                    if child_rel == "pg_wal" {
                        out.push(Entry {
                            rel: "pg_wal/archive_status".into(),
                            abs: path.join("archive_status"),
                            kind: FileKind::Dir,
                            mode,
                            size: 0,
                        });
                    }
                    continue;
                }
                stack.push((path, child_rel));
            } else if meta.is_file() {
                out.push(Entry {
                    rel: child_rel,
                    abs: path,
                    kind: FileKind::File,
                    mode,
                    size: meta.len(),
                });
            }
        }
    }
    // Directories first (parents before children), pg_control last.
    out.sort_by(|a, b| {
        let key = |e: &Entry| {
            (
                e.kind == FileKind::File,
                e.rel == "global/pg_control",
                e.rel.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_skips_what_postgres_skips_and_orders_pg_control_last() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for dir in [
            "global",
            "base/1",
            "pg_wal/archive_status",
            "pg_stat_tmp",
            "pg_tblspc",
        ] {
            std::fs::create_dir_all(p.join(dir)).unwrap();
        }
        for f in [
            "global/pg_control",
            "global/1260",
            "base/1/1259",
            "pg_wal/000000010000000000000001",
            "pg_stat_tmp/x",
            "postmaster.pid",
            "PG_VERSION",
            "base/1/pg_internal.init",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
        let entries = walk(p).unwrap();
        let files: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.rel.as_str())
            .collect();
        assert_eq!(
            files,
            [
                "PG_VERSION",
                "base/1/1259",
                "global/1260",
                "global/pg_control"
            ]
        );
        let dirs: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == FileKind::Dir)
            .map(|e| e.rel.as_str())
            .collect();
        assert!(dirs.contains(&"pg_wal/archive_status"));
        assert!(dirs.contains(&"pg_stat_tmp"));

        std::os::unix::fs::symlink("/tmp", p.join("pg_tblspc/16400")).unwrap();
        assert!(matches!(walk(p), Err(BackupError::Tablespaces(_))));
    }
}
