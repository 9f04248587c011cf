//! The data-directory walk: every directory and file a base backup copies,
//! skipping what Postgres' own base backup skips (basebackup.c:
//! excludeDirContents, excludeFiles), in the order the copy needs —
//! directories before files, parents before children, `global/pg_control`
//! last. Each tablespace (a `pg_tblspc/<oid>` link) is walked in its
//! `PG_<major>_<catversion>` directory only, as basebackup.c's
//! sendTablespace does (TABLESPACE_VERSION_DIRECTORY): the link is a
//! directory entry `pg_tblspc/<oid>`, its files are stored under
//! `pg_tblspc/<oid>/PG_…/…`, and where the link points is recorded by
//! `tablespace_links` for the manifest's `tablespace_map`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::BackupError;
use crate::catalog::model::FileKind;
use crate::pg::tablespace_map::TablespaceLink;

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
    // `PG_<major>_<catversion>`, read once the first link is found.
    let mut version_dir: Option<Result<String, (String, String)>> = None;
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
                    let version_dir =
                        version_dir.get_or_insert_with(|| tablespace_version_dir(pgdata));
                    let version_dir = version_dir.as_ref().map_err(|e| BackupError::Read {
                        path: e.0.clone(),
                        source: std::io::Error::other(e.1.clone()),
                    })?;
                    out.push(Entry {
                        rel: child_rel.clone(),
                        abs: path.clone(),
                        kind: FileKind::Dir,
                        mode: 0o700,
                        size: 0,
                    });
                    // Through the link: its target must be a directory.
                    let inner = path.join(version_dir);
                    match std::fs::metadata(&inner) {
                        Ok(m) if m.is_dir() => {
                            out.push(Entry {
                                rel: format!("{child_rel}/{version_dir}"),
                                abs: inner.clone(),
                                kind: FileKind::Dir,
                                mode: m.mode() & 0o7777,
                                size: 0,
                            });
                            stack.push((inner, format!("{child_rel}/{version_dir}")));
                        }
                        // A tablespace of another major (or none yet): not
                        // this cluster's files.
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(BackupError::Read {
                                path: inner.display().to_string(),
                                source,
                            })
                        }
                    }
                    continue;
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

/// The directory a tablespace holds this cluster's files in:
/// `PG_<major>_<catversion>` (catalog/catalog.h: TABLESPACE_VERSION_DIRECTORY),
/// from `PG_VERSION` and pg_control. Err: (path, why).
fn tablespace_version_dir(pgdata: &Path) -> Result<String, (String, String)> {
    let major =
        super::read_major(pgdata).map_err(|e| (pgdata.display().to_string(), e.to_string()))?;
    let control =
        super::read_control(pgdata).map_err(|e| (pgdata.display().to_string(), e.to_string()))?;
    Ok(format!(
        "PG_{}_{}",
        major.get(),
        control.fingerprint.catalog_version_no
    ))
}

/// Every `pg_tblspc/<oid>` link and where it points, by OID. A directory
/// there (an in-place tablespace) is part of the data directory and is
/// not listed; a name that is not an OID is refused.
pub(crate) fn tablespace_links(pgdata: &Path) -> Result<Vec<TablespaceLink>, BackupError> {
    let dir = pgdata.join("pg_tblspc");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BackupError::Read {
                path: dir.display().to_string(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| BackupError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|source| BackupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let oid: u32 = name.parse().map_err(|_| {
            BackupError::Tablespaces(format!("pg_tblspc/{name} is not named by an OID"))
        })?;
        let target = std::fs::read_link(&path).map_err(|source| BackupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        out.push(TablespaceLink { oid, path: target });
    }
    out.sort_by_key(|l| l.oid);
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
    }

    /// A tablespace is walked through its link, in this cluster's
    /// `PG_<major>_<catversion>` directory only; the link is listed with
    /// where it points.
    #[test]
    fn walk_follows_tablespace_links_into_their_version_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data");
        for dir in ["global", "base/1", "pg_tblspc"] {
            std::fs::create_dir_all(p.join(dir)).unwrap();
        }
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pg15");
        std::fs::copy(fixtures.join("pg_control"), p.join("global/pg_control")).unwrap();
        std::fs::copy(fixtures.join("PG_VERSION"), p.join("PG_VERSION")).unwrap();
        let cat = super::super::read_control(&p)
            .unwrap()
            .fingerprint
            .catalog_version_no;
        let ts = d.path().join("ts one");
        let version = format!("PG_15_{cat}");
        std::fs::create_dir_all(ts.join(&version).join("5")).unwrap();
        std::fs::create_dir_all(ts.join("PG_14_202107181/5")).unwrap();
        std::fs::write(ts.join(&version).join("5/16390"), b"rel").unwrap();
        std::fs::write(ts.join("PG_14_202107181/5/1"), b"old").unwrap();
        std::os::unix::fs::symlink(&ts, p.join("pg_tblspc/16400")).unwrap();

        let entries = walk(&p).unwrap();
        let rels: Vec<_> = entries.iter().map(|e| e.rel.as_str()).collect();
        assert!(rels.contains(&"pg_tblspc/16400"), "{rels:?}");
        let file = format!("pg_tblspc/16400/{version}/5/16390");
        assert!(rels.contains(&file.as_str()), "{rels:?}");
        assert!(!rels.iter().any(|r| r.contains("PG_14")), "{rels:?}");
        assert_eq!(rels.last(), Some(&"global/pg_control"));
        assert_eq!(
            tablespace_links(&p).unwrap(),
            vec![TablespaceLink {
                oid: 16400,
                path: ts.clone()
            }]
        );
        std::os::unix::fs::symlink(&ts, p.join("pg_tblspc/x")).unwrap();
        assert!(matches!(
            tablespace_links(&p),
            Err(BackupError::Tablespaces(_))
        ));
    }
}
