//! The parent of an incremental backup and what each walked file is
//! compared with. The parent is the newest full or incremental backup of
//! this cluster on the server's current timeline, or the one `--parent`
//! names (which may lie on an ancestor timeline if the current one
//! branched off after the parent's end); its chain must restore
//! (`Catalog::chain`). Each file then gets a `Basis`: main-fork relation
//! segments the parent has are compared block by block against the
//! parent's start LSN (`pg::page`, which says why that is correct); other
//! files the parent has whole are compared by their BLAKE3; everything
//! else, and `pg_control`, is stored whole.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::walk::Entry;
use super::BackupError;
use crate::catalog::model::FileKind;
use crate::catalog::{BackupFile, BackupManifest, BackupRecord, Catalog, RepoConfig, StartKind};
use crate::pg::{page, Lsn, TimelineId};
use crate::repo::{layout, Repo, KIND_MANIFEST};

/// What kind of backup to take.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BackupKind {
    #[default]
    Full,
    /// Only what changed since `parent` (None: the newest backup on the
    /// server's timeline).
    Incremental { parent: Option<String> },
}

/// The parent an incremental is taken on.
pub(super) struct Parent {
    pub(super) record: BackupRecord,
    /// The parent's manifest entries by path: the chain's state of every
    /// file at the parent (its `size`, and `blake3` when known).
    files: HashMap<String, BackupFile>,
    /// The timeline the incremental must start on.
    pub(super) timeline: TimelineId,
}

/// How one walked file is stored.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Basis {
    /// Whole, in this backup's objects.
    Own,
    /// Whole unless its BLAKE3 equals the parent's (then: unchanged).
    Compare { blake3: String, size: u64 },
    /// Block by block: blocks changed since `since` (or past the parent's
    /// size) are stored.
    Blocks {
        since: Lsn,
        parent_size: u64,
        parent_blake3: String,
        block_size: u32,
    },
}

/// The server's current timeline (`pg_control_checkpoint()`; right after
/// `pg_backup_start`'s checkpoint it is the backup's start timeline, which
/// `check_timeline` compares once the backup stopped).
pub(super) async fn server_timeline(client: &Client) -> Result<TimelineId, BackupError> {
    let sql = |source| BackupError::Sql {
        what: "pg_control_checkpoint()",
        source,
    };
    let tli: i32 = client
        .query_one("select timeline_id from pg_control_checkpoint()", &[])
        .await
        .map_err(sql)?
        .try_get(0)
        .map_err(sql)?;
    u32::try_from(tli)
        .map_err(|_| crate::pg::PosError::Timeline(tli.to_string()))
        .and_then(TimelineId::new)
        .map_err(|e| BackupError::Returned {
            what: "timeline",
            source: e.into(),
        })
}

/// Finds and checks the parent, and reads its manifest.
pub(super) async fn choose_parent(
    repo: &Repo,
    config: &RepoConfig,
    timeline: TimelineId,
    requested: Option<&str>,
) -> Result<Parent, BackupError> {
    let catalog = repo.load_catalog().await?;
    let record = pick(&catalog, config, timeline, requested)?.clone();
    let manifest: BackupManifest = repo
        .get_meta(&layout::backup_manifest(&record.id)?, KIND_MANIFEST)
        .await?;
    Ok(Parent {
        files: manifest
            .files
            .into_iter()
            .map(|f| (f.path.clone(), f))
            .collect(),
        record,
        timeline,
    })
}

/// The parent by the rules above (pure: the catalog decides).
pub(super) fn pick<'a>(
    catalog: &'a Catalog,
    config: &RepoConfig,
    timeline: TimelineId,
    requested: Option<&str>,
) -> Result<&'a BackupRecord, BackupError> {
    let bad = |id: &str, reason: String| BackupError::BadParent {
        id: id.to_string(),
        reason,
    };
    let parent = match requested {
        Some(id) => catalog
            .backup(id)
            .ok_or_else(|| BackupError::UnknownParent(id.to_string()))?,
        None => catalog
            .backups
            .iter()
            .filter(|b| {
                b.timeline == timeline
                    && b.system_id == config.system_id
                    && !matches!(b.start, StartKind::Snapshot { .. })
            })
            .max_by(|a, b| a.stop_lsn.cmp(&b.stop_lsn).then(a.id.cmp(&b.id)))
            .ok_or(BackupError::NoParent { timeline })?,
    };
    if matches!(parent.start, StartKind::Snapshot { .. }) {
        return Err(bad(
            &parent.id,
            "it is a snapshot, not a backup in this repository's objects".into(),
        ));
    }
    if parent.system_id != config.system_id {
        return Err(bad(
            &parent.id,
            format!("it is of database system {}", parent.system_id),
        ));
    }
    catalog
        .chain(&parent.id)
        .map_err(|e| bad(&parent.id, e.to_string()))?;
    if parent.timeline != timeline {
        // Only a parent whose whole backup lies on this timeline's history
        // (it ended before the switch away from its timeline): every page
        // changed on this timeline since then has a later LSN.
        let on_history = catalog
            .history_of(timeline)
            .is_some_and(|h| h.tli_of_point(parent.stop_lsn) == parent.timeline);
        if !on_history {
            return Err(bad(
                &parent.id,
                format!(
                    "it is on timeline {}, which the server's timeline {timeline} did not branch from after the backup's end",
                    parent.timeline
                ),
            ));
        }
    }
    Ok(parent)
}

impl Parent {
    /// How each walked entry is stored.
    pub(super) fn basis(&self, entries: &[Entry], block_size: u32) -> Vec<Basis> {
        entries
            .iter()
            .map(|e| {
                let Some(p) = self.files.get(&e.rel) else {
                    return Basis::Own;
                };
                if e.kind != FileKind::File
                    || p.kind != FileKind::File
                    || e.rel == "global/pg_control"
                {
                    return Basis::Own;
                }
                // An empty relation file (many catalogs) is compared whole.
                if page::is_main_fork(&e.rel) && block_size > 0 && e.size > 0 {
                    return Basis::Blocks {
                        since: self.record.start_lsn,
                        parent_size: p.size,
                        parent_blake3: p.blake3.clone(),
                        block_size,
                    };
                }
                if p.blake3.is_empty() || !p.chunks.is_empty() {
                    return Basis::Own;
                }
                Basis::Compare {
                    blake3: p.blake3.clone(),
                    size: p.size,
                }
            })
            .collect()
    }

    /// The start kind of the backup taken on this parent.
    pub(super) fn start(&self, changed_bytes: u64) -> StartKind {
        StartKind::Incremental {
            parent: self.record.id.clone(),
            changed_bytes,
        }
    }
}

#[cfg(test)]
impl Parent {
    pub(super) fn for_test(record: BackupRecord, manifest: BackupManifest) -> Parent {
        Parent {
            timeline: record.timeline,
            files: manifest
                .files
                .into_iter()
                .map(|f| (f.path.clone(), f))
                .collect(),
            record,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::{copy, manifest, walk::walk};
    use super::*;
    use crate::catalog::{BlockRange, FileSource};
    use crate::repo::store::FsStore;
    use crate::repo::RepoLocation;

    const BS: usize = 8192;

    /// A page stamped with `lsn`, filled with `fill`.
    fn page(lsn: u64, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; BS];
        p[..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        p
    }

    fn write_pages(path: &Path, pages: &[Vec<u8>]) {
        std::fs::write(path, pages.concat()).unwrap();
    }

    fn set_page(path: &Path, no: usize, p: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(p, (no * BS) as u64).unwrap();
    }

    async fn take(repo: &Repo, id: &str, dir: &Path, parent: Option<&Parent>) -> BackupManifest {
        let entries = Arc::new(walk(dir).unwrap());
        let basis = Arc::new(match parent {
            Some(p) => p.basis(&entries, BS as u32),
            None => vec![Basis::Own; entries.len()],
        });
        let copied = copy::copy_files(
            repo,
            id,
            entries.clone(),
            basis.clone(),
            2,
            None,
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        BackupManifest {
            id: id.into(),
            files: manifest::files(&entries, &basis, copied),
            backup_label: format!("label of {id}"),
            tablespace_map: None,
        }
    }

    /// The default parent is the newest full or incremental backup on the
    /// server's timeline (a snapshot never); `--parent` must exist, restore
    /// (its chain) and lie on the server's timeline or on its history
    /// before the switch away from it.
    #[test]
    fn the_parent_is_the_newest_usable_backup_on_the_timeline() {
        use crate::plan::testkit::{lsn, tli, Kit};
        let mut c = Kit::new()
            .backup("a", 1, 2, 10)
            .backup("b", 1, 4, 1)
            .backup("snap", 1, 6, 1)
            .backup("broken", 1, 7, 1)
            .backup("late", 1, 9, 1)
            .backup("t2", 2, 8, 1)
            .branch(2, 1, lsn(5, 0))
            .build();
        let config = c.config.clone();
        for b in c.backups.iter_mut() {
            match b.id.as_str() {
                "b" => {
                    b.start = StartKind::Incremental {
                        parent: "a".into(),
                        changed_bytes: 1,
                    }
                }
                "snap" => {
                    b.start = StartKind::Snapshot {
                        provider: crate::catalog::SnapshotProvider::Copy,
                        handle: "/s".into(),
                        consistency: crate::catalog::Consistency::Bracketed,
                        commands: None,
                        tablespaces: Vec::new(),
                    }
                }
                "broken" => {
                    b.start = StartKind::Incremental {
                        parent: "gone".into(),
                        changed_bytes: 1,
                    }
                }
                _ => {}
            }
        }
        let id = |r: Result<&BackupRecord, BackupError>| r.map(|b| b.id.clone());
        assert_eq!(id(pick(&c, &config, tli(1), None)).unwrap(), "late");
        assert_eq!(id(pick(&c, &config, tli(2), None)).unwrap(), "t2");
        assert!(matches!(
            pick(&c, &config, tli(3), None),
            Err(BackupError::NoParent { .. })
        ));
        assert!(matches!(
            pick(&c, &config, tli(1), Some("nope")),
            Err(BackupError::UnknownParent(_))
        ));
        for refused in ["snap", "broken"] {
            assert!(
                matches!(
                    pick(&c, &config, tli(1), Some(refused)),
                    Err(BackupError::BadParent { .. })
                ),
                "{refused}"
            );
        }
        // Timeline 2 left timeline 1 in segment 5: "b" (segment 4) lies on
        // its history, "late" (segment 9) does not.
        assert_eq!(id(pick(&c, &config, tli(2), Some("b"))).unwrap(), "b");
        assert!(matches!(
            pick(&c, &config, tli(2), Some("late")),
            Err(BackupError::BadParent { .. })
        ));
        // The newest whose chain is broken is refused, not passed over.
        c.backups.retain(|b| b.id != "late");
        assert!(matches!(
            pick(&c, &config, tli(1), None),
            Err(BackupError::BadParent { id, .. }) if id == "broken"
        ));
    }

    /// Without a server: a full backup, then changes of every kind the
    /// block rule meets (a block changed in each region of a two-region
    /// file, a file extended by a new all-zero page and a changed one, a
    /// file cut short, a map fork and an unchanged file, a new file and a
    /// removed one); the incremental records exactly those, and its chain
    /// restores the changed directory byte for byte.
    #[tokio::test]
    async fn an_incremental_records_what_changed_and_its_chain_restores_it() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        std::fs::create_dir_all(d.join("base/5")).unwrap();
        std::fs::create_dir_all(d.join("global")).unwrap();
        let old = 0x1000u64;
        let big: Vec<Vec<u8>> = (0..1100).map(|i| page(old, (i % 250) as u8)).collect();
        write_pages(&d.join("base/5/16384"), &big);
        write_pages(&d.join("base/5/16385"), &vec![page(old, 1); 4]);
        write_pages(&d.join("base/5/16386"), &vec![page(old, 2); 3]);
        write_pages(&d.join("base/5/16387"), &vec![page(old, 3); 1]);
        std::fs::write(d.join("base/5/16384_vm"), vec![0u8; BS]).unwrap();
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(d.join("global/pg_control"), b"control 1").unwrap();

        let store = tempfile::tempdir().unwrap();
        let repo = Repo::with_store(
            RepoLocation::Local(store.path().to_path_buf()),
            Arc::new(FsStore::new(store.path())),
        );
        let full = take(&repo, "full", d, None).await;

        // The parent started at 0/5000; everything written since is newer.
        let mut record = crate::plan::testkit::Kit::new()
            .backup("full", 1, 0, 1)
            .build()
            .backups
            .remove(0);
        record.start_lsn = Lsn::new(0x5000);
        let new = 0x6000u64;
        set_page(&d.join("base/5/16384"), 3, &page(new, 0xAA));
        set_page(&d.join("base/5/16384"), 1030, &page(new, 0xBB));
        // Not WAL-changed (hint bits): same LSN, other bytes; kept from the parent.
        set_page(&d.join("base/5/16384"), 7, &page(old, 0xCC));
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(d.join("base/5/16385"))
                .unwrap();
            std::io::Write::write_all(&mut f, &vec![0u8; BS]).unwrap();
            std::io::Write::write_all(&mut f, &page(new, 9)).unwrap();
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("base/5/16386"))
            .unwrap()
            .set_len(BS as u64)
            .unwrap();
        std::fs::remove_file(d.join("base/5/16387")).unwrap();
        write_pages(&d.join("base/5/16390"), &[page(old, 4)]);
        std::fs::write(d.join("base/5/16384_vm"), vec![1u8; BS]).unwrap();
        std::fs::write(d.join("global/pg_control"), b"control 2").unwrap();

        let parent = Parent::for_test(record, full.clone());
        let inc = take(&repo, "inc", d, Some(&parent)).await;
        let source = |p: &str| {
            inc.files
                .iter()
                .find(|f| f.path == p)
                .map(|f| f.source.clone())
                .unwrap_or_else(|| panic!("{p} not in the manifest"))
        };
        let blocks = |p: &str| match source(p) {
            FileSource::Delta { blocks, .. } => BlockRange::expand(&blocks).collect::<Vec<_>>(),
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(blocks("base/5/16384"), [3, 1030]);
        assert_eq!(blocks("base/5/16385"), [4, 5]);
        assert_eq!(blocks("base/5/16386"), Vec::<u32>::new());
        assert_eq!(source("base/5/16384_vm"), FileSource::Own);
        assert_eq!(source("PG_VERSION"), FileSource::Unchanged);
        assert_eq!(source("base/5/16390"), FileSource::Own);
        assert_eq!(source("global/pg_control"), FileSource::Own);
        assert!(inc.files.iter().all(|f| f.path != "base/5/16387"));
        // Four changed blocks, two new files of a page, pg_control.
        assert_eq!(
            manifest::changed_bytes(&inc.files),
            (4 * BS + 2 * BS) as u64 + 9
        );

        let out = tempfile::tempdir().unwrap();
        let restored = out.path().join("data");
        std::fs::create_dir(&restored).unwrap();
        crate::recover::chain::materialize_chain(
            &repo,
            &[full, inc],
            &restored,
            2,
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        let mut want = std::fs::read(d.join("base/5/16384")).unwrap();
        // Page 7 comes back as the parent copied it.
        want[7 * BS..8 * BS].copy_from_slice(&page(old, 7));
        assert!(std::fs::read(restored.join("base/5/16384")).unwrap() == want);
        for f in [
            "base/5/16385",
            "base/5/16386",
            "base/5/16390",
            "base/5/16384_vm",
            "PG_VERSION",
            "global/pg_control",
        ] {
            assert!(
                std::fs::read(restored.join(f)).unwrap() == std::fs::read(d.join(f)).unwrap(),
                "{f}"
            );
        }
        assert!(!restored.join("base/5/16387").exists());
        assert_eq!(
            std::fs::read_to_string(restored.join("backup_label")).unwrap(),
            "label of inc"
        );
    }
}
