//! Loading the catalog from `catalog/` only (never listing WAL or backup
//! data): backup records, the WAL index (chunks and pending entries),
//! timeline histories and recorded restores, read in parallel; a damaged
//! object is left out and reported, not fatal. Also the WAL index's upkeep:
//! which entries exist, and compaction of a full chunk.

use std::collections::BTreeMap;

use super::store::{ObjectKey, PutMode, StoreError};
use serde::de::DeserializeOwned;

use super::{codec, layout, Repo, RepoError};
use super::{KIND_BACKUP, KIND_TIMING, KIND_WAL, KIND_WAL_CHUNK};
use crate::catalog::{
    BackupRecord, Catalog, DamagedObject, WalIndexBuilder, WalIndexChunk, WalSegmentRecord,
};
use crate::pg::history::TimelineHistory;
use crate::pg::{TimelineId, WalFileName};

/// Recorded restores the cost model reads.
const TIMINGS_KEPT: usize = 20;

/// Parallel GETs when loading the catalog.
const LOAD_CONCURRENCY: usize = 32;

impl Repo {
    /// Every listed backup, and the backup records that could not be read.
    pub async fn list_backups(&self) -> Result<(Vec<BackupRecord>, Vec<DamagedObject>), RepoError> {
        let keys: Vec<ObjectKey> = self
            .store
            .list(layout::CATALOG_BACKUPS_DIR)
            .await?
            .into_iter()
            .map(|m| m.key)
            .filter(|k| k.as_str().ends_with(".json"))
            .collect();
        let (mut out, damaged) = self.get_many::<BackupRecord>(keys, KIND_BACKUP).await?;
        out.sort_by(|a, b| a.stop_lsn.cmp(&b.stop_lsn).then(a.id.cmp(&b.id)));
        Ok((out, damaged))
    }

    /// GETs and opens many metadata objects, `LOAD_CONCURRENCY` at a time.
    /// An object that cannot be read as what it should be (corrupt, an
    /// unknown format) is returned as damage, not as an error, so one bad
    /// object never hides the rest; one that vanished since it was listed
    /// (compacted, swept) is skipped. Storage failures are errors.
    async fn get_many<T: DeserializeOwned + Send + 'static>(
        &self,
        keys: Vec<ObjectKey>,
        kind: &'static str,
    ) -> Result<(Vec<T>, Vec<DamagedObject>), RepoError> {
        let mut set = tokio::task::JoinSet::new();
        let mut out = Vec::with_capacity(keys.len());
        let mut damaged = Vec::new();
        let mut take = |r: Result<Result<T, RepoError>, tokio::task::JoinError>,
                        out: &mut Vec<T>|
         -> Result<(), RepoError> {
            match joined(r)? {
                Ok(v) => out.push(v),
                Err(e) if e.is_not_found() => {}
                Err(RepoError::Meta { key, source }) => damaged.push(DamagedObject {
                    key: key.to_string(),
                    reason: source.to_string(),
                }),
                Err(e) => return Err(e),
            }
            Ok(())
        };
        for key in keys {
            while set.len() >= LOAD_CONCURRENCY {
                if let Some(r) = set.join_next().await {
                    take(r, &mut out)?;
                }
            }
            let repo = self.clone();
            set.spawn(async move { repo.get_meta::<T>(&key, kind).await });
        }
        while let Some(r) = set.join_next().await {
            take(r, &mut out)?;
        }
        Ok((out, damaged))
    }

    /// Where `pitr expire` removed WAL below, if it ever ran.
    pub async fn wal_horizon(&self) -> Result<Option<crate::catalog::WalHorizon>, RepoError> {
        match self
            .get_meta(&layout::wal_horizon(), crate::repo::KIND_WAL_HORIZON)
            .await
        {
            Ok(h) => Ok(Some(h)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads everything the planner reads, from `catalog/` and `history/`
    /// only (a handful of listings, whatever the number of segments). A
    /// damaged object is left out and reported in `Catalog::damaged`: the
    /// planner then goes around what it described (a segment becomes a
    /// gap, a backup is not offered, a timeline without its history is not
    /// followed).
    pub async fn load_catalog(&self) -> Result<Catalog, RepoError> {
        let config = self.config().await?;
        let (backups, mut damaged) = self.list_backups().await?;
        let mut pending = Vec::new();
        let mut chunks = Vec::new();
        for meta in self.store.list(layout::CATALOG_WAL_DIR).await? {
            match layout::parse_wal_index_key(&meta.key) {
                Some(layout::WalIndexKey::Pending) => pending.push(meta.key),
                Some(layout::WalIndexKey::Chunk(..)) => chunks.push(meta.key),
                None => {}
            }
        }
        // Into the compact in-memory index as each chunk arrives (a
        // pending entry, added last, replaces a chunk's record of the
        // same segment).
        let horizon = self.wal_horizon().await?;
        let hidden = |r: &WalSegmentRecord| horizon.as_ref().is_some_and(|h| h.hides(r));
        let mut wal = WalIndexBuilder::new(config.wal_segment_size);
        let (chunks, bad) = self
            .get_many::<WalIndexChunk>(chunks, KIND_WAL_CHUNK)
            .await?;
        damaged.extend(bad);
        for chunk in chunks {
            wal.reserve(chunk.segments.len());
            for rec in chunk.segments.into_iter().filter(|r| !hidden(r)) {
                wal.push(rec);
            }
        }
        let (pending, bad) = self.get_many::<WalSegmentRecord>(pending, KIND_WAL).await?;
        damaged.extend(bad);
        for rec in pending.into_iter().filter(|r| !hidden(r)) {
            wal.push(rec);
        }
        let wal = wal.build();
        let mut histories = BTreeMap::new();
        for meta in self.store.list(layout::HISTORY_DIR).await? {
            let fname = meta.key.file_name().trim_end_matches(".zst").to_string();
            let Ok(WalFileName::History(tli)) = WalFileName::parse(&fname) else {
                continue;
            };
            let stored = self.store.get(&meta.key).await?;
            let parsed = codec::decompress_bounded(&stored, 64 << 20)
                .map_err(|e| e.to_string())
                .and_then(|raw| {
                    let text =
                        std::str::from_utf8(&raw).map_err(|_| "it is not text".to_string())?;
                    TimelineHistory::parse(tli, text).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(hist) => {
                    histories.insert(tli, hist);
                }
                Err(reason) => damaged.push(DamagedObject {
                    key: meta.key.to_string(),
                    reason,
                }),
            }
        }
        let mut timing_keys: Vec<ObjectKey> = self
            .store
            .list(layout::CATALOG_TIMINGS_DIR)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        let skip = timing_keys.len().saturating_sub(TIMINGS_KEPT);
        timing_keys.drain(..skip);
        // A damaged timing record must not stop planning, nor be reported:
        // it only tunes estimates.
        let timings = self
            .get_many::<crate::catalog::RestoreTiming>(timing_keys, KIND_TIMING)
            .await
            .map(|(t, _)| t)
            .unwrap_or_default();
        Ok(Catalog {
            config,
            backups,
            wal,
            histories,
            timings,
            damaged,
        })
    }

    /// Whether the WAL index lists segment `seg` (number `segno`): a
    /// pending entry, or the compacted chunk that covers it.
    pub async fn wal_index_lists(
        &self,
        seg: &crate::pg::SegmentName,
        segno: crate::pg::SegNo,
    ) -> Result<bool, RepoError> {
        if self
            .store
            .head(&layout::wal_index_pending(seg))
            .await?
            .is_some()
        {
            return Ok(true);
        }
        let key = layout::wal_index_chunk(seg.timeline(), segno.get() / layout::CHUNK_SEGMENTS);
        match self.get_meta::<WalIndexChunk>(&key, KIND_WAL_CHUNK).await {
            Ok(chunk) => {
                // A chunk straddling `pitr expire`'s horizon still names
                // the segments it removed: those are no longer listed.
                let horizon = self.wal_horizon().await?;
                Ok(chunk
                    .segments
                    .iter()
                    .any(|r| r.segno == segno && !horizon.as_ref().is_some_and(|h| h.hides(r))))
            }
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Folds the pending WAL index entries of chunk `chunk` of `tli` into
    /// one immutable chunk object, then deletes them. Safe to run twice or
    /// concurrently: the chunk is created, never replaced, and an entry is
    /// deleted only once a chunk holding it exists. Entries that arrive
    /// after the chunk was written stay pending (readers merge both).
    /// Returns whether this call wrote the chunk.
    pub async fn compact_wal_index(&self, tli: TimelineId, chunk: u64) -> Result<bool, RepoError> {
        let key = layout::wal_index_chunk(tli, chunk);
        if self.store.head(&key).await?.is_some() {
            return Ok(false);
        }
        let first = chunk * layout::CHUNK_SEGMENTS;
        let last = first + layout::CHUNK_SEGMENTS - 1;
        let prefix = format!("{}/{:08X}/pending", layout::CATALOG_WAL_DIR, tli.get());
        let keys: Vec<ObjectKey> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect();
        // A damaged pending entry stays pending (and reported by loads).
        let mut segments: Vec<WalSegmentRecord> = self
            .get_many::<WalSegmentRecord>(keys, KIND_WAL)
            .await?
            .0
            .into_iter()
            .filter(|r| r.timeline == tli && (first..=last).contains(&r.segno.get()))
            .collect();
        segments.sort_by_key(|r| r.segno);
        let body = WalIndexChunk {
            timeline: tli,
            chunk,
            first_segno: crate::pg::SegNo::new(first),
            last_segno: crate::pg::SegNo::new(last),
            segments,
        };
        let wrote = match self
            .put_meta(&key, KIND_WAL_CHUNK, &body, PutMode::Create)
            .await
        {
            Ok(()) => true,
            Err(RepoError::Store(StoreError::AlreadyExists(_))) => false,
            Err(e) => return Err(e),
        };
        // Delete only what the chunk that now exists holds.
        let stored: WalIndexChunk = self.get_meta(&key, KIND_WAL_CHUNK).await?;
        for rec in &stored.segments {
            if let Ok(WalFileName::Segment(seg)) = WalFileName::parse(&rec.name) {
                self.store.delete(&layout::wal_index_pending(&seg)).await?;
            }
        }
        Ok(wrote)
    }
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, RepoError> {
    r.map_err(|e| {
        RepoError::Store(StoreError::Io {
            op: "background task",
            path: String::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::RepoConfig;
    use crate::repo::store::{self, FsStore, Store};
    use crate::repo::{RepoLocation, KIND_CONFIG};

    fn record(tli: u32, segno: u64) -> WalSegmentRecord {
        let size = crate::pg::WalSegmentSize::new(16 << 20).unwrap();
        let tli = TimelineId::new(tli).unwrap();
        let seg = crate::pg::SegNo::new(segno);
        WalSegmentRecord {
            name: crate::pg::SegmentName::new(tli, seg, size).to_string(),
            timeline: tli,
            segno: seg,
            raw_bytes: size.bytes(),
            stored_bytes: 100,
            sha256: format!("{segno:064x}"),
            blake3: String::new(),
            pushed_at: chrono::Utc::now(),
            summary: None,
            scan_error: None,
            data_tag: None,
            tail: None,
        }
    }

    /// Delegates to an FsStore and records every listed prefix.
    #[derive(Debug)]
    struct Recording {
        inner: FsStore,
        listed: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Store for Recording {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        async fn check(&self) -> Result<(), StoreError> {
            self.inner.check().await
        }
        async fn put(&self, k: &ObjectKey, d: &[u8], m: PutMode) -> Result<(), StoreError> {
            self.inner.put(k, d, m).await
        }
        async fn put_reader(
            &self,
            k: &ObjectKey,
            r: store::ObjectReader,
            m: PutMode,
        ) -> Result<u64, StoreError> {
            self.inner.put_reader(k, r, m).await
        }
        async fn get(&self, k: &ObjectKey) -> Result<Vec<u8>, StoreError> {
            self.inner.get(k).await
        }
        async fn open_read(&self, k: &ObjectKey) -> Result<store::ObjectReader, StoreError> {
            self.inner.open_read(k).await
        }
        async fn head(&self, k: &ObjectKey) -> Result<Option<store::ObjectMeta>, StoreError> {
            self.inner.head(k).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<store::ObjectMeta>, StoreError> {
            self.listed.lock().unwrap().push(prefix.to_string());
            self.inner.list(prefix).await
        }
        async fn delete(&self, k: &ObjectKey) -> Result<(), StoreError> {
            self.inner.delete(k).await
        }
        async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
            self.inner.delete_prefix(prefix).await
        }
    }

    /// Writes the `pitr.json` of the PostgreSQL 15 fixture cluster.
    async fn initialize(repo: &Repo) {
        let control = crate::pg::control::ControlFile::decode(include_bytes!(
            "../../testdata/pg15/pg_control"
        ))
        .unwrap();
        let config = RepoConfig {
            system_id: control.system_identifier,
            pg_major: crate::pg::control::PgMajor::new(15).unwrap(),
            wal_segment_size: control.wal_segment_size,
            fingerprint: control.fingerprint,
            created_at: chrono::Utc::now(),
            created_by: "test".into(),
            encryption: None,
        };
        repo.put_meta(&layout::config(), KIND_CONFIG, &config, PutMode::Create)
            .await
            .unwrap();
    }

    /// Finding 8 of issue 10: one garbage or corrupt catalog object does
    /// not fail the load; it is reported, and the rest is there.
    #[tokio::test]
    async fn damaged_catalog_objects_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::with_store(
            RepoLocation::Local(dir.path().to_path_buf()),
            Arc::new(FsStore::new(dir.path())),
        );
        initialize(&repo).await;
        let good = record(1, 5);
        let WalFileName::Segment(seg) = WalFileName::parse(&good.name).unwrap() else {
            panic!()
        };
        repo.put_meta(
            &layout::wal_index_pending(&seg),
            KIND_WAL,
            &good,
            PutMode::Create,
        )
        .await
        .unwrap();
        let bad = record(1, 6);
        let WalFileName::Segment(bad_seg) = WalFileName::parse(&bad.name).unwrap() else {
            panic!()
        };
        let put = |k: ObjectKey, b: &'static [u8]| {
            let repo = repo.clone();
            async move { repo.store().put(&k, b, PutMode::Create).await.unwrap() }
        };
        put(layout::wal_index_pending(&bad_seg), b"{ not an envelope").await;
        put(
            layout::backup_record("20260101T000000Z").unwrap(),
            b"garbage",
        )
        .await;
        let hist = WalFileName::parse("00000002.history").unwrap();
        let garbage = codec::compress(b"this is not a history file\n").unwrap();
        repo.store()
            .put(&layout::aux_file(&hist), &garbage, PutMode::Create)
            .await
            .unwrap();
        let catalog = repo.load_catalog().await.unwrap();
        assert_eq!(catalog.wal.len(), 1);
        assert!(catalog.histories.is_empty());
        let mut keys: Vec<&str> = catalog.damaged.iter().map(|d| d.key.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "catalog/backups/20260101T000000Z.json",
                "catalog/wal/00000001/pending/000000010000000000000006.json",
                "history/00000002.history.zst"
            ]
        );
    }

    #[tokio::test]
    async fn wal_index_compaction_keeps_every_segment_visible() {
        let dir = tempfile::tempdir().unwrap();
        let recording = Arc::new(Recording {
            inner: FsStore::new(dir.path()),
            listed: Default::default(),
        });
        let repo = Repo::with_store(
            RepoLocation::Local(dir.path().to_path_buf()),
            recording.clone(),
        );
        initialize(&repo).await;
        let put = |r: WalSegmentRecord| {
            let repo = repo.clone();
            async move {
                let WalFileName::Segment(seg) = WalFileName::parse(&r.name).unwrap() else {
                    panic!()
                };
                repo.put_meta(
                    &layout::wal_index_pending(&seg),
                    KIND_WAL,
                    &r,
                    PutMode::Create,
                )
                .await
                .unwrap();
            }
        };
        for n in 1000..1030 {
            put(record(1, n)).await;
        }
        put(record(2, 1010)).await; // another timeline, same range
        let before = repo.load_catalog().await.unwrap().wal;
        assert_eq!(before.len(), 31);

        assert!(repo.compact_wal_index(TimelineId::FIRST, 0).await.unwrap());
        // Idempotent: the chunk exists, nothing changes.
        assert!(!repo.compact_wal_index(TimelineId::FIRST, 0).await.unwrap());
        let listed = repo.store.list(layout::CATALOG_WAL_DIR).await.unwrap();
        let pending = listed
            .iter()
            .filter(|m| m.key.as_str().contains("/pending/"))
            .count();
        // 1024..1029 of TLI 1 and 1010 of TLI 2 stay pending.
        assert_eq!(pending, 7);
        assert!(listed
            .iter()
            .any(|m| m.key == layout::wal_index_chunk(TimelineId::FIRST, 0)));

        // A late arrival in the compacted range stays pending and visible.
        put(record(1, 999)).await;
        recording.listed.lock().unwrap().clear();
        let after = repo.load_catalog().await.unwrap().wal;
        assert_eq!(after.len(), 32);
        for k in before.keys() {
            assert_eq!(after.get(&k), before.get(&k));
        }
        // Loading the catalog lists the catalog and histories, never the WAL
        // or backup data.
        let listed = recording.listed.lock().unwrap().clone();
        assert_eq!(
            listed,
            [
                "catalog/backups",
                "catalog/wal",
                "history",
                "catalog/timings"
            ]
        );
    }
}
