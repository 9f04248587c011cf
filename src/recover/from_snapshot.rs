//! Building the new data directory from a snapshot start point
//! (`StartKind::Snapshot`) instead of backup objects: the provider clones
//! the snapshot into the (empty) data directory
//! (`capture::snapshot::restore`), then pitr makes the clone what a
//! restored base backup would be. Always: the source's `postmaster.pid`,
//! `postmaster.opts`, signal files and any `backup_label` go, and the
//! contents of the directories a base backup leaves empty (basebackup.c:
//! excludeDirContents, as `backup::walk` mirrors it) except `pg_wal`.
//! Bracketed: `pg_wal`'s contents go too (replay fetches every segment
//! from the repository, from the label's checkpoint on), as do the files
//! a base backup never copies (excludeFiles), and `backup_label` (and
//! `tablespace_map`) are written from the snapshot's manifest, exactly as
//! `materialize` writes them. Atomic: `pg_wal` stays (the server first
//! replays what it holds, as after a crash, then the archive), and no
//! label is written. A link in the clone (pg_wal on another volume, a
//! `pg_tblspc/<oid>` link) is removed, never followed: it would point at
//! the source's own files.
//!
//! Tablespaces (bracketed snapshots only) come back as from a backup:
//! before anything is written, `tablespaces::plan` decides where each of
//! the manifest's `tablespace_map` goes (where it was, or where
//! `--tablespace-map` says) and refuses a target that is not empty; the
//! provider puts each tablespace's contents there (the record names the
//! tablespaces the snapshot carries, and a map naming one it does not is
//! refused); then `tablespaces::create` makes the `pg_tblspc/<oid>` links
//! and the `tablespace_map` written names the new places, from which
//! recovery recreates the links at start. The recovery settings are
//! written by `restore` as for any backup.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::capture::backup::walk::{EXCLUDE_DIR_CONTENTS, EXCLUDE_FILES};
use crate::capture::snapshot::TablespaceTarget;
use crate::catalog::{BackupRecord, Consistency, SnapshotTablespace, StartKind};
use crate::pg::tablespace_map::TablespaceLink;
use crate::pg::PgMajor;
use crate::repo::{layout, Repo, KIND_BACKUP};

use super::restore::{OnEvent, RecoverError, RecoverEvent};
use super::{materialize, tablespaces};

fn werr(path: &Path) -> impl FnOnce(std::io::Error) -> RecoverError + '_ {
    move |source| RecoverError::Write {
        path: path.display().to_string(),
        source,
    }
}

/// Clones snapshot `id` into `pgdata` (its tablespaces where they were,
/// or where `mappings`, `--tablespace-map OLD=NEW`, say) and prepares it
/// for recovery; returns the bytes it counts as materialized (the
/// snapshot's data directory size). `wrote` turns true once the provider
/// is about to write: a refusal before leaves `pgdata` and every
/// tablespace's target as they were.
pub async fn materialize(
    repo: &Repo,
    id: &str,
    pgdata: &Path,
    major: PgMajor,
    mappings: &[(PathBuf, PathBuf)],
    on_event: &OnEvent,
    wrote: &mut bool,
) -> Result<u64, RecoverError> {
    let key = layout::backup_record(id).map_err(|e| RecoverError::Repo(e.into()))?;
    let record: BackupRecord = repo.get_meta(&key, KIND_BACKUP).await?;
    let StartKind::Snapshot {
        provider,
        handle,
        consistency,
        commands,
        tablespaces: carried,
    } = &record.start
    else {
        return Err(RecoverError::BadManifest(format!(
            "backup {id} is a {} start point, not a snapshot",
            record.start.name()
        )));
    };
    let manifest = match consistency {
        Consistency::Bracketed => Some(materialize::load_manifest(repo, id).await?),
        // Taken without the backup API: never of a cluster with tablespaces.
        Consistency::Atomic if !carried.is_empty() => {
            return Err(RecoverError::Tablespaces(id.to_string()))
        }
        Consistency::Atomic => None,
    };
    // Before anything is written: where each tablespace goes, refused if
    // it is not empty, as for a backup (`restore`).
    let spaces = tablespaces::plan(
        manifest.as_ref().and_then(|m| m.tablespace_map.as_deref()),
        major,
        mappings,
    )?;
    let targets = targets(id, &spaces, carried)?;
    let provider_err = |source| RecoverError::Snapshot {
        id: id.to_string(),
        source: Box::new(source),
    };
    crate::capture::snapshot::check_restore(*provider, handle, pgdata, &targets)
        .map_err(provider_err)?;
    on_event(RecoverEvent::Materializing {
        total_bytes: record.raw_bytes,
    });
    *wrote = true;
    crate::capture::snapshot::restore(*provider, commands.as_ref(), id, handle, pgdata, &targets)
        .await
        .map_err(provider_err)?;
    // As for every restore (`restore::prepare_dir`): the server refuses a
    // data directory others can read, whatever mode the clone came with.
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))
        .map_err(werr(pgdata))?;
    let dir = pgdata.to_path_buf();
    let c = *consistency;
    let dirs: Vec<PathBuf> = spaces.iter().map(|l| l.path.clone()).collect();
    tokio::task::spawn_blocking(move || {
        prune(&dir, c)?;
        dirs.iter().try_for_each(|d| prune_tablespace(d, c))
    })
    .await
    .map_err(|e| RecoverError::Write {
        path: pgdata.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })??;
    // The links to where each tablespace now is (the clone's went in
    // `prune`).
    tablespaces::create(pgdata, &spaces)?;
    crate::repo::durable::sync_filesystem(pgdata).map_err(werr(pgdata))?;
    for l in &spaces {
        crate::repo::durable::sync_filesystem(&l.path).map_err(werr(&l.path))?;
    }
    if let Some(m) = manifest {
        materialize::write_synced(&pgdata.join("backup_label"), m.backup_label.as_bytes())?;
        if !spaces.is_empty() {
            let map = tablespaces::render(&spaces, major)?;
            materialize::write_synced(&pgdata.join("tablespace_map"), map.as_bytes())?;
        }
    }
    on_event(RecoverEvent::Bytes(record.raw_bytes));
    Ok(record.raw_bytes)
}

/// Each tablespace the plan puts back, with the provider's own snapshot
/// of it where the record has one. A tablespace the snapshot does not
/// carry is refused.
fn targets(
    id: &str,
    spaces: &[TablespaceLink],
    carried: &[SnapshotTablespace],
) -> Result<Vec<TablespaceTarget>, RecoverError> {
    spaces
        .iter()
        .map(|l| {
            let c = carried
                .iter()
                .find(|c| c.oid == l.oid)
                .ok_or_else(|| RecoverError::Tablespaces(id.to_string()))?;
            Ok(TablespaceTarget {
                oid: l.oid,
                handle: c.handle.clone(),
                to: l.path.clone(),
            })
        })
        .collect()
}

/// Files of the running source that no restore keeps, whatever the
/// consistency (the settings pitr writes decide how the server starts).
const SOURCE_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "recovery.signal",
    "standby.signal",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "PITR_RESTORE_FAILED",
];

/// Makes the clone in `pgdata` what a restored base backup would be (see
/// the module comment).
pub(crate) fn prune(pgdata: &Path, consistency: Consistency) -> Result<(), RecoverError> {
    for name in SOURCE_FILES {
        remove_file(&pgdata.join(name))?;
    }
    remove_links(&pgdata.join("pg_tblspc"))?;
    for rel in EXCLUDE_DIR_CONTENTS {
        if *rel == "pg_wal" && consistency == Consistency::Atomic {
            continue;
        }
        clear(&pgdata.join(rel), *rel == "pg_wal")?;
    }
    if consistency == Consistency::Bracketed {
        remove_excluded(pgdata)?;
    }
    Ok(())
}

/// A tablespace's directory, cloned: what a base backup never copies
/// goes, as in the data directory (a bracketed snapshot only).
fn prune_tablespace(dir: &Path, consistency: Consistency) -> Result<(), RecoverError> {
    if consistency == Consistency::Bracketed {
        remove_excluded(dir)?;
    }
    Ok(())
}

/// Removes every link in `dir` (the clone's `pg_tblspc`: they point at
/// the source's tablespaces), never what they point at.
fn remove_links(dir: &Path) -> Result<(), RecoverError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(werr(dir)(e)),
    };
    for entry in rd {
        let path = entry.map_err(werr(dir))?.path();
        let m = std::fs::symlink_metadata(&path).map_err(werr(&path))?;
        if m.file_type().is_symlink() {
            std::fs::remove_file(&path).map_err(werr(&path))?;
        }
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), RecoverError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(werr(path)(e)),
    }
}

/// Empties `dir` without following links; a link in its place becomes
/// an empty directory. `pg_wal` keeps (or gets) `archive_status`.
fn clear(dir: &Path, wal: bool) -> Result<(), RecoverError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(werr(dir)(e)),
    };
    if meta.file_type().is_symlink() {
        std::fs::remove_file(dir).map_err(werr(dir))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(werr(dir))?;
    } else {
        for entry in std::fs::read_dir(dir).map_err(werr(dir))? {
            let path = entry.map_err(werr(dir))?.path();
            let m = std::fs::symlink_metadata(&path).map_err(werr(&path))?;
            if m.is_dir() {
                std::fs::remove_dir_all(&path).map_err(werr(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(werr(&path))?;
            }
        }
    }
    if wal {
        let status = dir.join("archive_status");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&status)
            .map_err(werr(&status))?;
    }
    Ok(())
}

/// Removes, at every level, what `backup::walk` never copies: the files
/// named in excludeFiles and `pgsql_tmp*`.
fn remove_excluded(pgdata: &Path) -> Result<(), RecoverError> {
    let mut stack = vec![pgdata.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(werr(&dir))? {
            let entry = entry.map_err(werr(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&path).map_err(werr(&path))?;
            let excluded = EXCLUDE_FILES.contains(&name.as_str()) || name.starts_with("pgsql_tmp");
            if m.is_dir() {
                if excluded {
                    std::fs::remove_dir_all(&path).map_err(werr(&path))?;
                } else {
                    stack.push(path);
                }
            } else if excluded {
                std::fs::remove_file(&path).map_err(werr(&path))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(p: &Path) {
        for d in [
            "global",
            "base/1/pgsql_tmp",
            "pg_wal/archive_status",
            "pg_replslot/s",
            "pg_stat_tmp",
        ] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        for f in [
            "global/pg_control",
            "base/1/1259",
            "base/1/pg_internal.init",
            "base/1/pgsql_tmp/t1",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/000000010000000000000001.ready",
            "pg_replslot/s/state",
            "pg_stat_tmp/x",
            "postmaster.pid",
            "postmaster.opts",
            "standby.signal",
            "PG_VERSION",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
    }

    #[test]
    fn a_bracketed_clone_keeps_only_what_a_base_backup_holds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        tree(p);
        prune(p, Consistency::Bracketed).unwrap();
        for gone in [
            "postmaster.pid",
            "postmaster.opts",
            "standby.signal",
            "base/1/pg_internal.init",
            "base/1/pgsql_tmp",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/000000010000000000000001.ready",
            "pg_replslot/s",
            "pg_stat_tmp/x",
        ] {
            assert!(!p.join(gone).exists(), "{gone} is still there");
        }
        for kept in [
            "global/pg_control",
            "base/1/1259",
            "PG_VERSION",
            "pg_wal/archive_status",
        ] {
            assert!(p.join(kept).exists(), "{kept} is gone");
        }
    }

    #[test]
    fn an_atomic_clone_keeps_its_wal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        tree(p);
        prune(p, Consistency::Atomic).unwrap();
        assert!(p.join("pg_wal/000000010000000000000001").exists());
        assert!(!p.join("postmaster.pid").exists());
        assert!(!p.join("pg_replslot/s").exists());
        assert!(p.join("base/1/1259").exists());
    }

    #[test]
    fn the_clones_tablespace_links_go_and_what_they_point_at_stays() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("clone");
        let live = d.path().join("live-ts");
        std::fs::create_dir_all(p.join("pg_tblspc/17000")).unwrap();
        std::fs::create_dir_all(live.join("PG_15_1")).unwrap();
        std::fs::write(live.join("PG_15_1/16400"), b"x").unwrap();
        std::os::unix::fs::symlink(&live, p.join("pg_tblspc/16384")).unwrap();
        prune(&p, Consistency::Bracketed).unwrap();
        assert!(std::fs::symlink_metadata(p.join("pg_tblspc/16384")).is_err());
        assert!(live.join("PG_15_1/16400").exists());
        // An in-place tablespace is the data directory's own.
        assert!(p.join("pg_tblspc/17000").is_dir());
    }

    #[test]
    fn a_tablespace_the_snapshot_does_not_carry_is_refused() {
        let spaces = vec![
            TablespaceLink {
                oid: 16384,
                path: PathBuf::from("/new/a"),
            },
            TablespaceLink {
                oid: 16385,
                path: PathBuf::from("/new/b"),
            },
        ];
        let one = SnapshotTablespace {
            oid: 16384,
            path: PathBuf::from("/old/a"),
            handle: Some("/snaps/S.tablespace-16384".into()),
        };
        let e = targets("S", &spaces, std::slice::from_ref(&one)).unwrap_err();
        assert!(
            matches!(&e, RecoverError::Tablespaces(id) if id == "S"),
            "{e}"
        );
        let two = SnapshotTablespace {
            oid: 16385,
            path: PathBuf::from("/old/b"),
            handle: None,
        };
        let t = targets("S", &spaces, &[two, one]).unwrap();
        assert_eq!(
            t,
            vec![
                TablespaceTarget {
                    oid: 16384,
                    handle: Some("/snaps/S.tablespace-16384".into()),
                    to: PathBuf::from("/new/a"),
                },
                TablespaceTarget {
                    oid: 16385,
                    handle: None,
                    to: PathBuf::from("/new/b"),
                },
            ]
        );
    }

    #[test]
    fn a_linked_pg_wal_is_replaced_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("clone");
        let elsewhere = d.path().join("live-wal");
        std::fs::create_dir_all(p.join("global")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("000000010000000000000001"), b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, p.join("pg_wal")).unwrap();
        prune(&p, Consistency::Bracketed).unwrap();
        assert!(elsewhere.join("000000010000000000000001").exists());
        let m = std::fs::symlink_metadata(p.join("pg_wal")).unwrap();
        assert!(m.is_dir() && !m.file_type().is_symlink());
        assert!(p.join("pg_wal/archive_status").is_dir());
    }
}
