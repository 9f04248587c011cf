//! `pitr verify`: whether a repository still holds what its catalog
//! promises, read object by object. Every WAL segment's data object is
//! decoded and hashed against its record, every backup file object
//! against its manifest (streamed: memory is bounded by `jobs`, not by
//! the object); the xacts lists decode and agree with their records'
//! counts; WAL continuity is computed from the segments that verified,
//! along each timeline's history, with the planner's own windows
//! (`plan::restorable_windows`), so a gap verify names is one a restore
//! would hit; the catalog is compared with the store (index entries
//! without records, records without index entries, objects nothing
//! names, backup directories nothing lists). Each problem is a typed
//! `Finding` (kind, object key, a sentence saying what is wrong and what
//! to do); one bad object never hides the rest. Verify only reads the
//! repository: the one object it writes is its own result
//! (`catalog/verify/<stamp>.json`, `record_result`).
//!
//! Distinct from `recover::verify`, which checks where a restore's replay
//! ended; the restore half of `pitr verify` is `recover::verify_restore`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::io::SyncIoBridge;

use crate::catalog::model::FileKind;
use crate::catalog::{
    BackupClaim, BackupManifest, Catalog, ContentHash, Envelope, FileSource, StartKind, VerifyKind,
    VerifyResult, WalIndex, WalIndexChunk, WalSegmentRecord,
};
use crate::pg::{SegNo, TimelineId, WalFileName};
use crate::plan::{backups_on, restorable_windows, Window};
use crate::repo::store::{ObjectKey, ObjectMeta, PutMode, Store, StoreError};
use crate::repo::{layout, Repo, RepoError};
use crate::repo::{KIND_CLAIM, KIND_MANIFEST, KIND_VERIFY, KIND_WAL};
use crate::repo::{KIND_WAL_CHUNK, KIND_WAL_XACTS};

/// What kind of problem a finding is. The names (kebab-case) are part of
/// `verify --json` and documented in docs/commands.md.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A segment's data object does not decode, or its hash or size is
    /// not its record's.
    WalCorrupt,
    /// A segment record whose data object is missing.
    WalDataMissing,
    /// A segment record that cannot be read (corrupt, unknown format).
    WalRecordDamaged,
    /// An object under `wal/` that no record names: the data of a push
    /// that was never acknowledged (refused or interrupted), never read.
    WalOrphan,
    /// A segment's transaction list does not decode, or disagrees with
    /// its record's count.
    XactsDamaged,
    /// A segment whose record summarizes transaction ends, but whose
    /// transaction list is missing.
    XactsMissing,
    /// An archived `.partial` or `.backup` file that does not decode.
    AuxCorrupt,
    /// A segment missing (or unreadable) between the earliest backup's
    /// start and the end of the archive, along a timeline's history.
    WalGap,
    /// A timeline history file that does not parse.
    HistoryDamaged,
    /// A WAL index entry whose segment record is missing.
    IndexStale,
    /// A WAL index entry that differs from its segment's record.
    IndexMismatch,
    /// A segment record the WAL index does not list (plans treat the
    /// segment as missing).
    IndexMissing,
    /// A catalog object that cannot be read (`Catalog::damaged`).
    CatalogDamaged,
    /// A backup record without its manifest.
    ManifestMissing,
    /// A manifest that cannot be read, or disagrees with its record.
    ManifestDamaged,
    /// A file object (or chunk) a manifest names that is missing.
    BackupObjectMissing,
    /// A file object that does not decode, or whose hash or size is not
    /// the manifest's.
    BackupObjectCorrupt,
    /// An object under a listed backup's directory its manifest does not
    /// name.
    BackupOrphan,
    /// An incremental whose chain of parents cannot be followed.
    BackupChainBroken,
    /// A backup directory with no record and no live claim: what a failed
    /// or killed backup run left.
    BackupLeftover,
    /// `--restore`: pg_amcheck found corruption in the restored copy.
    AmcheckFailed,
    /// `--restore`: pg_checksums found pages whose checksum fails.
    ChecksumFailed,
}

impl FindingKind {
    /// Whether the problem can cost a restore anything: leftovers and
    /// orphans are never read (they only take space), everything else
    /// can make a restore fail or reach less.
    pub fn harmless(self) -> bool {
        match self {
            FindingKind::WalOrphan | FindingKind::BackupOrphan | FindingKind::BackupLeftover => {
                true
            }
            FindingKind::WalCorrupt
            | FindingKind::WalDataMissing
            | FindingKind::WalRecordDamaged
            | FindingKind::XactsDamaged
            | FindingKind::XactsMissing
            | FindingKind::AuxCorrupt
            | FindingKind::WalGap
            | FindingKind::HistoryDamaged
            | FindingKind::IndexStale
            | FindingKind::IndexMismatch
            | FindingKind::IndexMissing
            | FindingKind::CatalogDamaged
            | FindingKind::ManifestMissing
            | FindingKind::ManifestDamaged
            | FindingKind::BackupObjectMissing
            | FindingKind::BackupObjectCorrupt
            | FindingKind::BackupChainBroken
            | FindingKind::AmcheckFailed
            | FindingKind::ChecksumFailed => false,
        }
    }
}

/// One problem: its kind, the object (or segment) it is about, and a
/// sentence saying what is wrong and what to do.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    pub key: String,
    pub message: String,
    /// Never read by a restore (a leftover or an orphan): it only takes
    /// space. Still reported, and still a non-zero exit.
    pub harmless: bool,
}

impl Finding {
    pub fn new(kind: FindingKind, key: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            kind,
            key: key.into(),
            message: message.into(),
            harmless: kind.harmless(),
        }
    }
}

/// What was read and checked.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Checked {
    /// Objects read (records, lists, data, manifests, files).
    pub objects: u64,
    /// Stored bytes read, and the raw bytes they decoded to.
    pub bytes: u64,
    pub raw_bytes: u64,
    pub wal_segments: u64,
    pub xacts_lists: u64,
    pub history_files: u64,
    pub aux_files: u64,
    pub index_entries: u64,
    pub backups: u64,
    pub backup_objects: u64,
}

/// `pitr verify` (integrity): what was checked and every problem found.
#[derive(Clone, Debug, Serialize)]
pub struct IntegrityReport {
    pub repository: String,
    pub ok: bool,
    pub problems: Vec<Finding>,
    pub checked: Checked,
    pub seconds: f64,
    /// Stored bytes read a second (MB: 10^6 bytes), and raw bytes
    /// decoded and hashed a second.
    pub mb_per_second: f64,
    pub decoded_mb_per_second: f64,
    /// Backups whose run still holds its claim (not problems).
    pub backups_in_progress: Vec<String>,
    /// What can be restored from the objects that verified, per
    /// timeline, newest first (the same windows as `pitr info`, from
    /// verified WAL only).
    pub restorable: Vec<Window>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The store failed while an object was being read (not a corrupt
    /// object: the bytes never arrived).
    #[error("reading {key}: {reason}")]
    Read { key: String, reason: String },
    #[error("a verify worker failed: {0}")]
    Task(String),
}

impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        VerifyError::Repo(e.into())
    }
}

/// Progress: the stored bytes about to be read, then each object's.
#[derive(Clone, Copy, Debug)]
pub enum VerifyEvent {
    Total { bytes: u64 },
    Bytes(u64),
}

pub type OnVerify = Arc<dyn Fn(VerifyEvent) + Send + Sync>;

#[derive(Clone)]
pub struct IntegrityOptions {
    /// Objects read at once.
    pub jobs: usize,
    pub on_event: OnVerify,
}

/// Reads and checks every object of `repo` (see the module comment).
pub async fn verify_integrity(
    repo: &Repo,
    opts: &IntegrityOptions,
) -> Result<IntegrityReport, VerifyError> {
    let started = Instant::now();
    let jobs = opts.jobs.max(1);
    let catalog = repo.load_catalog().await?;
    let store = repo.store().clone();
    let mut problems = Vec::new();
    let mut checked = Checked::default();

    // The catalog's own damage (records, index entries, histories).
    for d in &catalog.damaged {
        problems.push(classify_damaged(&d.key, &d.reason));
    }
    checked.history_files = catalog.histories.len() as u64;

    // WAL: records first (small), then the objects they name.
    let wal = WalListing::of(store.list(layout::WAL_DIR).await?);
    let records = read_all(
        repo,
        wal.records.clone(),
        jobs * 4,
        |repo, key| async move { repo.get_meta::<WalSegmentRecord>(&key, KIND_WAL).await },
    )
    .await?;
    let mut by_segment: BTreeMap<(TimelineId, SegNo), WalSegmentRecord> = BTreeMap::new();
    let mut named: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut units: Vec<Unit> = Vec::new();
    for (key, rec) in records {
        checked.objects += 1;
        let rec = match rec {
            Ok(r) => r,
            Err(RepoError::Meta { source, .. }) => {
                problems.push(Finding::new(
                    FindingKind::WalRecordDamaged,
                    key.as_str(),
                    format!("the segment record cannot be read ({source}): the segment cannot be restored through; if its data object is intact, pushing the segment again from the cluster's pg_wal recreates it, else take a new backup"),
                ));
                continue;
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let Ok(WalFileName::Segment(seg)) = WalFileName::parse(&rec.name) else {
            problems.push(Finding::new(
                FindingKind::WalRecordDamaged,
                key.as_str(),
                format!(
                    "the record names {:?}, which is not a WAL segment",
                    rec.name
                ),
            ));
            continue;
        };
        let tag = match layout::record_tag(&rec) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Finding::new(
                    FindingKind::WalRecordDamaged,
                    key.as_str(),
                    format!("the record's data tag is invalid ({e})"),
                ));
                continue;
            }
        };
        let data = layout::segment_data(&seg, tag.as_ref());
        named.insert(data.clone());
        if let Some(&stored) = wal.all.get(&data) {
            units.push(Unit::Object {
                key: data,
                stored,
                expect: Some((rec.raw_bytes, rec.content_hash())),
                what: What::Wal,
            });
        } else if store.head(&data).await?.is_none() {
            // (Looked for again: a listing is not a snapshot, and a push
            // writes the data before the record.)
            problems.push(Finding::new(
                FindingKind::WalDataMissing,
                data.as_str(),
                format!("segment {} has a record but its data object is missing: a restore that needs this segment stops there (a wal-gap finding names the targets that cuts off, if any); restores past it need a backup taken after it", rec.name),
            ));
        }
        let head = rec.summary.as_ref().is_some_and(|s| s.head_read);
        let xacts = layout::segment_xacts(&seg, tag.as_ref(), head);
        named.insert(xacts.clone());
        let counts = rec.summary.as_ref().map(|s| s.xact_count);
        if let Some(&stored) = wal.all.get(&xacts) {
            units.push(Unit::Xacts {
                key: xacts,
                stored,
                count: counts,
                segment: rec.name.clone(),
            });
        } else if tag.is_some() && counts.is_some_and(|n| n > 0) {
            problems.push(Finding::new(
                FindingKind::XactsMissing,
                xacts.as_str(),
                format!("segment {} records {} transaction ends but its transaction list is missing: time and xid targets in it stop less exactly (Postgres still finds them)", rec.name, counts.unwrap_or(0)),
            ));
        }
        by_segment.insert((rec.timeline, rec.segno), rec);
    }
    // Whatever no record names: unacknowledged pushes, or not pitr's.
    let mut newest: BTreeMap<TimelineId, SegNo> = BTreeMap::new();
    for (tli, segno) in by_segment.keys() {
        let n = newest.entry(*tli).or_insert(*segno);
        *n = (*n).max(*segno);
    }
    let size = catalog.config.wal_segment_size;
    for key in wal.all.keys() {
        if named.contains(key) || wal.records.contains(key) {
            continue;
        }
        if wal.aux.contains(key) {
            units.push(Unit::Object {
                key: key.clone(),
                stored: wal.all.get(key).copied().unwrap_or(0),
                expect: None,
                what: What::Aux,
            });
            continue;
        }
        // A push in progress writes its data before its record: an object
        // whose record now names it is no orphan.
        if named_now(repo, key).await? || at_the_head(key, &newest, size) {
            continue;
        }
        problems.push(Finding::new(
            FindingKind::WalOrphan,
            key.as_str(),
            "no segment record names this object: the data of a push that was never acknowledged (refused or interrupted); restores never read it, and removing it is safe",
        ));
    }
    for meta in store.list(layout::BACKUP_HISTORY_DIR).await? {
        units.push(Unit::Object {
            key: meta.key,
            stored: meta.size,
            expect: None,
            what: What::Aux,
        });
    }

    // The WAL index against the records it was made from.
    let mut indexed: BTreeSet<(TimelineId, SegNo)> = BTreeSet::new();
    let mut chunks = Vec::new();
    let mut pending = Vec::new();
    for meta in store.list(layout::CATALOG_WAL_DIR).await? {
        match layout::parse_wal_index_key(&meta.key) {
            Some(layout::WalIndexKey::Chunk(..)) => chunks.push(meta.key),
            Some(layout::WalIndexKey::Pending) => pending.push(meta.key),
            None => {}
        }
    }
    let chunk_bodies = read_all(repo, chunks, jobs * 4, |repo, key| async move {
        repo.get_meta::<WalIndexChunk>(&key, KIND_WAL_CHUNK).await
    })
    .await?;
    let pending_bodies = read_all(repo, pending, jobs * 4, |repo, key| async move {
        repo.get_meta::<WalSegmentRecord>(&key, KIND_WAL).await
    })
    .await?;
    // Entries `pitr expire` removed the segments of (below its horizon,
    // archived before it ran) are no longer listed: the catalog leaves
    // them out as it loads, and a chunk straddling the horizon keeps them.
    let horizon = repo.wal_horizon().await?;
    let gone = |r: &WalSegmentRecord| horizon.as_ref().is_some_and(|h| h.hides(r));
    let mut entries: Vec<(ObjectKey, WalSegmentRecord)> = Vec::new();
    for (key, chunk) in chunk_bodies {
        checked.objects += 1;
        // Damaged chunks are in `catalog.damaged` already.
        if let Ok(chunk) = chunk {
            entries.extend(
                chunk
                    .segments
                    .into_iter()
                    .filter(|r| !gone(r))
                    .map(|r| (key.clone(), r)),
            );
        }
    }
    for (key, rec) in pending_bodies {
        checked.objects += 1;
        match rec {
            Ok(rec) if !gone(&rec) => entries.push((key, rec)),
            _ => {}
        }
    }
    for (key, entry) in entries {
        checked.index_entries += 1;
        indexed.insert((entry.timeline, entry.segno));
        let record = by_segment.get(&(entry.timeline, entry.segno));
        if record.is_none() && record_exists_now(repo, &entry.name).await? {
            // Archived after `wal/` was listed (the entry follows it).
            continue;
        }
        problems.extend(index_finding(&key, &entry, record));
    }
    let mut newest_indexed: BTreeMap<TimelineId, SegNo> = BTreeMap::new();
    for (tli, segno) in &indexed {
        let n = newest_indexed.entry(*tli).or_insert(*segno);
        *n = (*n).max(*segno);
    }
    for ((tli, segno), rec) in &by_segment {
        // Past the newest indexed segment of its timeline: a push in
        // progress (or failed, and retried by Postgres), not acknowledged.
        let at_head = newest_indexed.get(tli).is_none_or(|n| segno > n);
        if !indexed.contains(&(*tli, *segno)) && !at_head {
            let Ok(WalFileName::Segment(seg)) = WalFileName::parse(&rec.name) else {
                continue;
            };
            // A push in progress writes its entry after its record.
            if repo.wal_index_lists(&seg, *segno).await? {
                continue;
            }
            let key = layout::segment_record(&seg).to_string();
            problems.push(Finding::new(
                FindingKind::IndexMissing,
                key,
                format!("segment {} is archived but the WAL index does not list it: plans treat it as missing; pushing the segment again (the same bytes) writes the entry", rec.name),
            ));
        }
    }

    // Backups: records, manifests, their objects; directories nothing lists.
    let backup_objects = group_backup_objects(store.list(layout::BACKUPS_DIR).await?);
    let record_ids: BTreeSet<String> = store
        .list(layout::CATALOG_BACKUPS_DIR)
        .await?
        .into_iter()
        .filter_map(|m| m.key.file_name().strip_suffix(".json").map(str::to_string))
        .collect();
    for b in &catalog.backups {
        checked.backups += 1;
        if let Err(e) = catalog.chain(&b.id) {
            problems.push(Finding::new(
                FindingKind::BackupChainBroken,
                layout::backup_record(&b.id)
                    .map(|k| k.to_string())
                    .unwrap_or_else(|_| b.id.clone()),
                format!("{e}: it cannot be restored; take a new backup"),
            ));
        }
        let listed = backup_objects.get(&b.id).cloned().unwrap_or_default();
        let (mut found, mut more) = check_backup(repo, b, &listed).await?;
        checked.objects += 1;
        problems.append(&mut found);
        units.append(&mut more);
    }
    let mut in_progress = Vec::new();
    for id in backup_objects.keys() {
        if catalog.backup(id).is_some() || record_ids.contains(id) {
            continue;
        }
        match claim_state(repo, id).await? {
            ClaimState::Live => in_progress.push(id.clone()),
            state => problems.push(leftover_finding(id, state)),
        }
    }

    // Read and check every object named, `jobs` at a time.
    let total: u64 = units.iter().map(Unit::stored).sum();
    (opts.on_event)(VerifyEvent::Total { bytes: total });
    let mut good: HashMap<ObjectKey, ()> = HashMap::new();
    let results = run_bounded(units, jobs, |unit| {
        let store = store.clone();
        let on_event = opts.on_event.clone();
        async move {
            let out = check_unit(&store, &unit).await;
            if let Ok(Checks { stored, .. }) = &out {
                on_event(VerifyEvent::Bytes(*stored));
            }
            (unit, out)
        }
    })
    .await?;
    for (unit, out) in results {
        let out = out?;
        checked.objects += 1;
        checked.bytes += out.stored;
        checked.raw_bytes += out.raw;
        match &unit {
            Unit::Object {
                what: What::Wal, ..
            } => checked.wal_segments += 1,
            Unit::Object {
                what: What::Aux, ..
            } => checked.aux_files += 1,
            Unit::Object {
                what: What::Backup { .. },
                ..
            } => checked.backup_objects += 1,
            Unit::Xacts { .. } => checked.xacts_lists += 1,
        }
        match out.problem {
            None => {
                good.insert(unit.key().clone(), ());
            }
            Some(p) => problems.push(unit.finding(p)),
        }
    }

    // Continuity, from the segments whose data verified and which the
    // index lists (what a restore can use).
    let usable: Vec<WalSegmentRecord> = by_segment
        .into_iter()
        .filter(|(k, _)| indexed.contains(k))
        .filter(|(_, r)| {
            WalFileName::parse(&r.name).ok().is_some_and(|n| match n {
                WalFileName::Segment(s) => layout::record_tag(r)
                    .ok()
                    .is_some_and(|t| good.contains_key(&layout::segment_data(&s, t.as_ref()))),
                _ => false,
            })
        })
        .map(|(_, r)| r)
        .collect();
    let (restorable, gaps) = continuity(&catalog, usable);
    problems.extend(gaps);

    problems.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.key.cmp(&b.key)));
    let seconds = started.elapsed().as_secs_f64();
    Ok(IntegrityReport {
        repository: repo.location().to_arg(),
        ok: problems.is_empty(),
        checked: checked.clone(),
        seconds,
        mb_per_second: rate(checked.bytes, seconds),
        decoded_mb_per_second: rate(checked.raw_bytes, seconds),
        problems,
        backups_in_progress: in_progress,
        restorable,
    })
}

/// Whether a record now names `key` (an object under `wal/`): looked up
/// again before calling it an orphan.
async fn named_now(repo: &Repo, key: &ObjectKey) -> Result<bool, VerifyError> {
    let name = key.file_name();
    let Some(Ok(WalFileName::Segment(seg))) = name.get(..24).map(WalFileName::parse) else {
        return Ok(false);
    };
    let rec = match repo
        .get_meta::<WalSegmentRecord>(&layout::segment_record(&seg), KIND_WAL)
        .await
    {
        Ok(r) => r,
        Err(RepoError::Store(StoreError::NotFound(_))) | Err(RepoError::Meta { .. }) => {
            return Ok(false)
        }
        Err(e) => return Err(e.into()),
    };
    let Ok(tag) = layout::record_tag(&rec) else {
        return Ok(false);
    };
    let head = rec.summary.as_ref().is_some_and(|s| s.head_read);
    Ok(layout::segment_data(&seg, tag.as_ref()) == *key
        || layout::segment_xacts(&seg, tag.as_ref(), head) == *key)
}

/// Whether `key` (an object under `wal/` no record names) is of a segment
/// past the newest recorded one of its timeline: a push in progress, or
/// one that failed and that Postgres retries (it archives in order, and
/// acknowledges nothing past a failure). Not a leftover, yet.
fn at_the_head(
    key: &ObjectKey,
    newest: &BTreeMap<TimelineId, SegNo>,
    size: crate::pg::WalSegmentSize,
) -> bool {
    let Some(Ok(WalFileName::Segment(seg))) = key.file_name().get(..24).map(WalFileName::parse)
    else {
        return false;
    };
    let Ok(segno) = seg.segno(size) else {
        return false;
    };
    newest.get(&seg.timeline()).is_none_or(|n| segno > *n)
}

/// Whether the record of segment `name` exists now.
async fn record_exists_now(repo: &Repo, name: &str) -> Result<bool, VerifyError> {
    let Ok(WalFileName::Segment(seg)) = WalFileName::parse(name) else {
        return Ok(false);
    };
    Ok(repo
        .store()
        .head(&layout::segment_record(&seg))
        .await?
        .is_some())
}

/// MB (10^6 bytes) a second.
fn rate(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / 1e6 / seconds
    } else {
        0.0
    }
}

/// What a key of `Catalog::damaged` is, as a finding.
pub fn classify_damaged(key: &str, reason: &str) -> Finding {
    if key.starts_with(&format!("{}/", layout::HISTORY_DIR)) {
        Finding::new(
            FindingKind::HistoryDamaged,
            key,
            format!("the timeline history file cannot be read ({reason}): its timeline is not followed by plans; push it again from the pg_wal of a server on that timeline"),
        )
    } else if key.starts_with(&format!("{}/", layout::CATALOG_BACKUPS_DIR)) {
        Finding::new(
            FindingKind::CatalogDamaged,
            key,
            format!("the backup record cannot be read ({reason}): the backup is not offered to restores; take a new backup"),
        )
    } else {
        Finding::new(
            FindingKind::CatalogDamaged,
            key,
            format!("the catalog object cannot be read ({reason}): what it lists is treated as missing by plans"),
        )
    }
}

/// A WAL index entry against the segment record it was made from.
pub fn index_finding(
    key: &ObjectKey,
    entry: &WalSegmentRecord,
    record: Option<&WalSegmentRecord>,
) -> Option<Finding> {
    match record {
        None => Some(Finding::new(
            FindingKind::IndexStale,
            key.as_str(),
            format!("the WAL index lists segment {}, whose record is missing: restores planned through it fail when they ask for it; take a new backup after it", entry.name),
        )),
        Some(r)
            if r.content_hash() != entry.content_hash()
                || r.data_tag != entry.data_tag
                || r.raw_bytes != entry.raw_bytes =>
        {
            Some(Finding::new(
                FindingKind::IndexMismatch,
                key.as_str(),
                format!("the WAL index's entry for segment {} differs from its record (hash, tag or size): the record is what restores read; the index was written for other bytes", entry.name),
            ))
        }
        Some(_) => None,
    }
}

/// The windows of `catalog` with its WAL replaced by `usable` (the
/// segments that verified), and a `WalGap` finding for every segment a
/// window misses, with the stretch of targets it cuts off.
pub fn continuity(catalog: &Catalog, usable: Vec<WalSegmentRecord>) -> (Vec<Window>, Vec<Finding>) {
    let mut verified = catalog.clone();
    verified.wal = WalIndex::from_records(catalog.config.wal_segment_size, usable);
    let windows = restorable_windows(&verified);
    let size = catalog.config.wal_segment_size;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for w in &windows {
        let on_line = backups_on(&verified, w.timeline);
        for gap in &w.gaps {
            if !seen.insert(gap.clone()) {
                continue;
            }
            let Ok(WalFileName::Segment(seg)) = WalFileName::parse(gap) else {
                continue;
            };
            let Ok(segno) = seg.segno(size) else {
                continue;
            };
            let from = segno.start_lsn(size);
            // The first start point after the gap: restores reach past it
            // again from there.
            let next = on_line
                .iter()
                .filter(|b| b.start_lsn.segno(size) > segno)
                .min_by_key(|b| b.stop_lsn);
            let cut = match next {
                Some(b) => format!(
                    "targets from {from} up to the end of backup {} ({}, {}) cannot be restored",
                    b.id, b.stop_lsn, b.stop_time
                ),
                None => format!(
                    "no target from {from} on can be restored until a backup is taken after it (`pitr backup`)"
                ),
            };
            out.push(Finding::new(
                FindingKind::WalGap,
                gap.clone(),
                format!(
                    "segment {gap} is missing or unreadable on timeline {}'s history: replay cannot pass it, so {cut}",
                    w.timeline
                ),
            ));
        }
    }
    (windows, out)
}

/// Whether the run that took backup id `id` may still be running.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimState {
    /// Its claim names a process that may still be running (on this
    /// machine and alive, or on another machine).
    Live,
    /// Its claim names a process that is provably gone.
    Gone { host: String, pid: u32 },
    /// No claim (a backup from before claims, or a claim removed).
    None,
    /// A claim that cannot be read.
    Unreadable(String),
}

async fn claim_state(repo: &Repo, id: &str) -> Result<ClaimState, VerifyError> {
    let key = layout::backup_claim(id).map_err(RepoError::from)?;
    match repo.get_meta::<BackupClaim>(&key, KIND_CLAIM).await {
        Ok(c) => {
            let owner = crate::capture::owner::Owner {
                boot_id: c.boot_id.clone(),
                hostname: c.hostname.clone(),
                pid: c.pid,
                pid_start: c.pid_start,
            };
            Ok(if owner.provably_gone() {
                ClaimState::Gone {
                    host: c.hostname,
                    pid: c.pid,
                }
            } else {
                ClaimState::Live
            })
        }
        Err(e) if e.is_not_found() => Ok(ClaimState::None),
        Err(RepoError::Meta { source, .. }) => Ok(ClaimState::Unreadable(source.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// A backup directory no record lists, whose run is not running.
pub fn leftover_finding(id: &str, state: ClaimState) -> Finding {
    let why = match state {
        ClaimState::Gone { host, pid } => {
            format!("its run (pid {pid} on {host}) is gone")
        }
        ClaimState::None => "it has no claim".to_string(),
        ClaimState::Unreadable(e) => format!("its claim cannot be read ({e})"),
        ClaimState::Live => "its run may still be going".to_string(),
    };
    Finding::new(
        FindingKind::BackupLeftover,
        format!("{}/{id}/", layout::BACKUPS_DIR),
        format!("backup directory {id} has no record and {why}: a failed or killed backup left it; restores never read it, and the next `pitr backup` removes it (or remove it by hand)"),
    )
}

/// Checks backup `b`'s manifest against its record and the listing of its
/// directory; returns the problems found and the objects to read.
async fn check_backup(
    repo: &Repo,
    b: &crate::catalog::BackupRecord,
    listed: &BTreeMap<ObjectKey, u64>,
) -> Result<(Vec<Finding>, Vec<Unit>), VerifyError> {
    let mut problems = Vec::new();
    let mut units = Vec::new();
    let key = layout::backup_manifest(&b.id).map_err(RepoError::from)?;
    let manifest = match repo.get_meta::<BackupManifest>(&key, KIND_MANIFEST).await {
        Ok(m) => Some(m),
        Err(e) if e.is_not_found() => None,
        Err(RepoError::Meta { source, .. }) => {
            problems.push(Finding::new(
                FindingKind::ManifestDamaged,
                key.as_str(),
                format!("backup {}'s manifest cannot be read ({source}): the backup cannot be restored; take a new backup", b.id),
            ));
            return Ok((problems, units));
        }
        Err(e) => return Err(e.into()),
    };
    // Which objects each kind of start point keeps in the repository (an
    // incremental's files by their source, below).
    let needs_objects = match &b.start {
        StartKind::Full | StartKind::Incremental { .. } => true,
        // Kept by its provider, not in the repository's objects.
        StartKind::Snapshot { .. } => false,
    };
    let Some(manifest) = manifest else {
        if needs_objects {
            problems.push(Finding::new(
                FindingKind::ManifestMissing,
                key.as_str(),
                format!("backup {} is listed but its manifest is missing: it cannot be restored; take a new backup", b.id),
            ));
        }
        return Ok((problems, units));
    };
    if manifest.id != b.id {
        problems.push(Finding::new(
            FindingKind::ManifestDamaged,
            key.as_str(),
            format!("the manifest is backup {}'s, not {}'s", manifest.id, b.id),
        ));
        return Ok((problems, units));
    }
    let mut named: BTreeSet<ObjectKey> = BTreeSet::new();
    named.insert(key.clone());
    if needs_objects {
        for (n, f) in manifest.files.iter().enumerate() {
            if f.kind != FileKind::File {
                continue;
            }
            let obj = match f.object_number(n) {
                Ok(o) => o,
                Err(e) => {
                    problems.push(Finding::new(
                        FindingKind::ManifestDamaged,
                        key.as_str(),
                        format!("{}: {e}", f.path),
                    ));
                    continue;
                }
            };
            let parts: Vec<(ObjectKey, u64, ContentHash, String)> = match &f.source {
                // An incremental's unchanged file: no object of its own
                // (the chain holds it; `Catalog::chain` is checked apart).
                FileSource::Unchanged => Vec::new(),
                // Its changed blocks: one chunk object per part.
                FileSource::Delta {
                    block_size, parts, ..
                } => {
                    let mut v = Vec::new();
                    for part in parts {
                        let c = usize::try_from(part.chunk).unwrap_or(usize::MAX);
                        v.push((
                            layout::backup_chunk(&b.id, obj, c).map_err(RepoError::from)?,
                            u64::from(part.blocks) * u64::from(*block_size),
                            ContentHash::Blake3(part.blake3.clone()),
                            format!("{} (changed blocks, part {})", f.path, part.chunk),
                        ));
                    }
                    v
                }
                FileSource::Own if f.chunks.is_empty() => vec![(
                    layout::backup_file(&b.id, obj).map_err(RepoError::from)?,
                    f.size,
                    f.content_hash(),
                    f.path.clone(),
                )],
                FileSource::Own => {
                    let mut v = Vec::new();
                    for (c, chunk) in f.chunks.iter().enumerate() {
                        v.push((
                            layout::backup_chunk(&b.id, obj, c).map_err(RepoError::from)?,
                            chunk.size,
                            ContentHash::Blake3(chunk.blake3.clone()),
                            format!("{} (chunk {c})", f.path),
                        ));
                    }
                    v
                }
            };
            for (okey, size, hash, path) in parts {
                named.insert(okey.clone());
                match listed.get(&okey) {
                    Some(&stored) => units.push(Unit::Object {
                        key: okey,
                        stored,
                        expect: Some((size, hash)),
                        what: What::Backup {
                            id: b.id.clone(),
                            path,
                        },
                    }),
                    None => problems.push(Finding::new(
                        FindingKind::BackupObjectMissing,
                        okey.as_str(),
                        format!("backup {}'s file {path} is missing from the repository: the backup cannot be restored; take a new backup", b.id),
                    )),
                }
            }
        }
    }
    for okey in listed.keys() {
        if !named.contains(okey) {
            problems.push(Finding::new(
                FindingKind::BackupOrphan,
                okey.as_str(),
                format!("backup {}'s manifest does not name this object: restores never read it, and removing it is safe", b.id),
            ));
        }
    }
    Ok((problems, units))
}

/// Objects under `backups/`, by backup id.
fn group_backup_objects(list: Vec<ObjectMeta>) -> BTreeMap<String, BTreeMap<ObjectKey, u64>> {
    let mut out: BTreeMap<String, BTreeMap<ObjectKey, u64>> = BTreeMap::new();
    for m in list {
        let id = m
            .key
            .as_str()
            .strip_prefix(layout::BACKUPS_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.split('/').next())
            .map(str::to_string);
        if let Some(id) = id {
            out.entry(id).or_default().insert(m.key, m.size);
        }
    }
    out
}

/// Objects under `wal/`: records, and everything else with its size.
#[derive(Default)]
struct WalListing {
    records: Vec<ObjectKey>,
    all: BTreeMap<ObjectKey, u64>,
    /// `.partial` segments: kept, never replayed; checked to decode.
    aux: BTreeSet<ObjectKey>,
}

impl WalListing {
    fn of(list: Vec<ObjectMeta>) -> WalListing {
        let mut out = WalListing::default();
        for m in list {
            let name = m.key.file_name();
            if name.ends_with(".json") {
                out.records.push(m.key.clone());
            } else if name.contains(".partial.") {
                out.aux.insert(m.key.clone());
            }
            out.all.insert(m.key, m.size);
        }
        out
    }
}

/// Reads `keys` with `read`, `jobs` at a time; each key with its result.
async fn read_all<T, F, Fut>(
    repo: &Repo,
    keys: Vec<ObjectKey>,
    jobs: usize,
    read: F,
) -> Result<Vec<(ObjectKey, Result<T, RepoError>)>, VerifyError>
where
    T: Send + 'static,
    F: Fn(Repo, ObjectKey) -> Fut,
    Fut: Future<Output = Result<T, RepoError>> + Send + 'static,
{
    run_bounded(keys, jobs, |key| {
        let fut = read(repo.clone(), key.clone());
        async move { (key, fut.await) }
    })
    .await
}

/// Runs `f` over `items`, at most `jobs` at once.
async fn run_bounded<I, F, Fut>(
    items: Vec<I>,
    jobs: usize,
    f: F,
) -> Result<Vec<Fut::Output>, VerifyError>
where
    F: Fn(I) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        while set.len() >= jobs.max(1) {
            if let Some(r) = set.join_next().await {
                out.push(r.map_err(|e| VerifyError::Task(e.to_string()))?);
            }
        }
        set.spawn(f(item));
    }
    while let Some(r) = set.join_next().await {
        out.push(r.map_err(|e| VerifyError::Task(e.to_string()))?);
    }
    Ok(out)
}

/// What an object is, for its finding.
#[derive(Clone, Debug)]
enum What {
    Wal,
    Aux,
    Backup { id: String, path: String },
}

/// One object to read and check.
#[derive(Clone, Debug)]
enum Unit {
    /// A zstd object; with its expected raw size and hash when a record
    /// or manifest gives them.
    Object {
        key: ObjectKey,
        stored: u64,
        expect: Option<(u64, ContentHash)>,
        what: What,
    },
    /// A segment's transaction list, and the count its record gives.
    Xacts {
        key: ObjectKey,
        stored: u64,
        count: Option<u64>,
        segment: String,
    },
}

impl Unit {
    fn stored(&self) -> u64 {
        match self {
            Unit::Object { stored, .. } | Unit::Xacts { stored, .. } => *stored,
        }
    }

    fn key(&self) -> &ObjectKey {
        match self {
            Unit::Object { key, .. } | Unit::Xacts { key, .. } => key,
        }
    }

    fn finding(&self, problem: String) -> Finding {
        match self {
            Unit::Object { key, what: What::Wal, .. } => Finding::new(
                FindingKind::WalCorrupt,
                key.as_str(),
                format!("the segment's data object is damaged ({problem}): a restore that needs this segment stops there (a wal-gap finding names the targets that cuts off, if any); push it again from the cluster's pg_wal if it is still there, else take a new backup"),
            ),
            Unit::Object { key, what: What::Aux, .. } => Finding::new(
                FindingKind::AuxCorrupt,
                key.as_str(),
                format!("the archived file is damaged ({problem}): restores do not replay it, but it is not what was archived"),
            ),
            Unit::Object { key, what: What::Backup { id, path }, .. } => Finding::new(
                FindingKind::BackupObjectCorrupt,
                key.as_str(),
                format!("backup {id}'s file {path} is damaged ({problem}): the backup cannot be restored; take a new backup"),
            ),
            Unit::Xacts { key, segment, .. } => Finding::new(
                FindingKind::XactsDamaged,
                key.as_str(),
                format!("segment {segment}'s transaction list is damaged ({problem}): time and xid targets in it stop less exactly"),
            ),
        }
    }
}

/// What reading one object found.
struct Checks {
    stored: u64,
    raw: u64,
    problem: Option<String>,
}

async fn check_unit(store: &Arc<dyn Store>, unit: &Unit) -> Result<Checks, VerifyError> {
    match unit {
        Unit::Object { key, expect, .. } => check_object(store, key, expect.clone()).await,
        Unit::Xacts { key, count, .. } => {
            let stored = match store.get(key).await {
                Ok(s) => s,
                Err(e) => return read_failed(e),
            };
            let n = stored.len() as u64;
            let problem = match crate::repo::codec::decompress(&stored) {
                Err(e) => Some(e.to_string()),
                Ok(raw) => {
                    match Envelope::open::<Vec<crate::pg::wal::XactEnd>>(KIND_WAL_XACTS, &raw) {
                        Err(e) => Some(e.to_string()),
                        Ok(list) => match count {
                            Some(c) if *c != list.len() as u64 => Some(format!(
                                "it lists {} transaction ends, its record counts {c}",
                                list.len()
                            )),
                            _ => None,
                        },
                    }
                }
            };
            Ok(Checks {
                stored: n,
                raw: 0,
                problem,
            })
        }
    }
}

/// An object that could not be read: a problem of the object when it is
/// gone or (in an encrypted repository) altered; the end of verify when
/// the store fails or the key is missing.
fn read_failed(e: StoreError) -> Result<Checks, VerifyError> {
    use crate::repo::crypt::CryptError;
    let problem = match &e {
        StoreError::NotFound(_) => "it vanished while verify ran".to_string(),
        StoreError::Crypt(c)
            if matches!(
                **c,
                CryptError::Tampered { .. } | CryptError::Plaintext { .. }
            ) =>
        {
            c.to_string()
        }
        _ => return Err(RepoError::Store(e).into()),
    };
    Ok(Checks {
        stored: 0,
        raw: 0,
        problem: Some(problem),
    })
}

/// Reads a zstd object through, hashing what it decodes to (streamed: a
/// buffer of 256 KiB, whatever the object's size).
async fn check_object(
    store: &Arc<dyn Store>,
    key: &ObjectKey,
    expect: Option<(u64, ContentHash)>,
) -> Result<Checks, VerifyError> {
    let reader = match store.open_read(key).await {
        Ok(r) => r,
        Err(e) => return read_failed(e),
    };
    let key_text = key.to_string();
    tokio::task::spawn_blocking(move || {
        let counted = Arc::new(AtomicU64::new(0));
        let failed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let src = Counting {
            inner: SyncIoBridge::new(reader),
            n: counted.clone(),
            failed: failed.clone(),
        };
        let read_failure = || {
            failed
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .map(|reason| VerifyError::Read {
                    key: key_text.clone(),
                    reason,
                })
        };
        let done = |raw: u64, problem: Option<String>| Checks {
            stored: counted.load(Ordering::Relaxed),
            raw,
            problem,
        };
        let mut dec = match zstd::stream::Decoder::new(src) {
            Ok(d) => d,
            Err(e) => return Ok(done(0, Some(format!("zstd: {e}")))),
        };
        let limit = expect.as_ref().map(|(s, _)| *s);
        let mut hasher = expect.as_ref().map(|(_, h)| h.hasher());
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            match dec.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    total += k as u64;
                    if let Some(l) = limit {
                        if total > l {
                            return Ok(done(
                                total,
                                Some(format!("it decodes to more than the {l} bytes recorded")),
                            ));
                        }
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf[..k]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(err) = read_failure() {
                        return Err(err);
                    }
                    return Ok(done(total, Some(format!("it does not decode (zstd: {e})"))));
                }
            }
        }
        let problem = match (expect, hasher) {
            (Some((size, _)), _) if total != size => {
                Some(format!("it decodes to {total} bytes, {size} recorded"))
            }
            (Some((_, want)), Some(h)) => {
                let got = h.finish();
                (got != want).then(|| format!("its content hash is {got}, {want} recorded"))
            }
            _ => None,
        };
        Ok(done(total, problem))
    })
    .await
    .map_err(|e| VerifyError::Task(e.to_string()))?
}

/// A reader that counts the bytes through it and keeps the first error
/// (a storage failure, not a corrupt object).
struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
    failed: Arc<Mutex<Option<String>>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(k) => {
                self.n.fetch_add(k as u64, Ordering::Relaxed);
                Ok(k)
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    if let Ok(mut f) = self.failed.lock() {
                        f.get_or_insert_with(|| e.to_string());
                    }
                }
                Err(e)
            }
        }
    }
}

/// Records what a verify run found (`catalog/verify/<stamp>-<pid>.json`),
/// for `pitr check`. The only object verify writes.
pub async fn record_result(repo: &Repo, result: &VerifyResult) -> Result<ObjectKey, RepoError> {
    let stamp = format!(
        "{}-{}",
        result.at.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    );
    let key = layout::verify_result(&stamp)?;
    repo.put_meta(&key, KIND_VERIFY, result, PutMode::Create)
        .await?;
    Ok(key)
}

/// The result record of an integrity report.
pub fn integrity_result(report: &IntegrityReport) -> VerifyResult {
    VerifyResult {
        at: Utc::now(),
        kind: VerifyKind::Integrity,
        ok: report.ok,
        problems: report.problems.len() as u64,
        objects_checked: report.checked.objects,
        bytes_checked: report.checked.bytes,
        backup_id: None,
        time_to_usable_seconds: None,
        time_to_checked_seconds: None,
        pitr_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::*;

    #[test]
    fn a_continuous_archive_has_no_gap() {
        let c = Kit::new()
            .segments(1, 1..=20)
            .backup("b1", 1, 2, 10)
            .build();
        let records = (1..=20).map(|s| record(1, s, seg_xid(1, s), seg_secs(1, s)));
        let (windows, gaps) = continuity(&c, records.collect());
        assert!(gaps.is_empty(), "{gaps:?}");
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].earliest_backup.as_deref(), Some("b1"));
    }

    #[test]
    fn a_segment_that_did_not_verify_is_a_gap_naming_what_it_cuts() {
        let c = Kit::new()
            .segments(1, 1..=20)
            .backup("b1", 1, 2, 10)
            .backup("b2", 1, 12, 10)
            .build();
        // Segment 7 is listed but its data did not verify.
        let records = (1..=20)
            .filter(|s| *s != 7)
            .map(|s| record(1, s, seg_xid(1, s), seg_secs(1, s)));
        let (_, gaps) = continuity(&c, records.collect());
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        let g = &gaps[0];
        assert_eq!(g.kind, FindingKind::WalGap);
        assert_eq!(g.key, seg_name(1, 7));
        assert!(!g.harmless);
        assert!(
            g.message.contains("up to the end of backup b2"),
            "{}",
            g.message
        );
        // After the newest backup: nothing past it until a new one.
        let records = (1..=20)
            .filter(|s| *s != 15)
            .map(|s| record(1, s, seg_xid(1, s), seg_secs(1, s)));
        let (_, gaps) = continuity(&c, records.collect());
        assert_eq!(gaps.len(), 1);
        assert!(
            gaps[0].message.contains("until a backup is taken"),
            "{}",
            gaps[0].message
        );
    }

    #[test]
    fn a_gap_before_a_branch_is_named_once() {
        let c = Kit::new()
            .segments(1, 1..=10)
            .branch(2, 1, lsn(8, 0x100))
            .segments(2, 8..=12)
            .backup("b1", 1, 2, 10)
            .build();
        let records = (1..=10)
            .filter(|s| *s != 5)
            .map(|s| record(1, s, seg_xid(1, s), seg_secs(1, s)))
            .chain((8..=12).map(|s| record(2, s, seg_xid(2, s), seg_secs(2, s))));
        let (_, gaps) = continuity(&c, records.collect());
        assert_eq!(
            gaps.iter().map(|g| g.key.as_str()).collect::<Vec<_>>(),
            vec![seg_name(1, 5).as_str()]
        );
    }

    #[test]
    fn damaged_catalog_objects_are_classified_by_where_they_live() {
        assert_eq!(
            classify_damaged("history/00000002.history.zst", "x").kind,
            FindingKind::HistoryDamaged
        );
        assert_eq!(
            classify_damaged("catalog/backups/b1.json", "x").kind,
            FindingKind::CatalogDamaged
        );
        let f = classify_damaged("catalog/wal/00000001/chunk-0000000000000000.json", "bad");
        assert_eq!(f.kind, FindingKind::CatalogDamaged);
        assert!(f.message.contains("(bad)"));
    }

    #[test]
    fn index_entries_are_checked_against_their_records() {
        let key = ObjectKey::new("catalog/wal/00000001/pending/x.json").unwrap();
        let rec = record(1, 3, 100, 10);
        assert_eq!(index_finding(&key, &rec, Some(&rec)), None);
        assert_eq!(
            index_finding(&key, &rec, None).map(|f| f.kind),
            Some(FindingKind::IndexStale)
        );
        let mut other = rec.clone();
        other.sha256 = "ff".repeat(32);
        other.blake3 = "ee".repeat(32);
        assert_eq!(
            index_finding(&key, &rec, Some(&other)).map(|f| f.kind),
            Some(FindingKind::IndexMismatch)
        );
    }

    #[test]
    fn leftovers_and_orphans_are_harmless_and_say_so() {
        let f = leftover_finding(
            "20260101T000000Z",
            ClaimState::Gone {
                host: "db1".into(),
                pid: 42,
            },
        );
        assert_eq!(f.kind, FindingKind::BackupLeftover);
        assert_eq!(f.key, "backups/20260101T000000Z/");
        assert!(f.harmless && f.message.contains("pid 42 on db1"));
        assert!(FindingKind::WalOrphan.harmless());
        assert!(!FindingKind::WalCorrupt.harmless());
        assert!(!FindingKind::BackupObjectMissing.harmless());
    }

    #[test]
    fn backup_objects_group_by_id() {
        let meta = |k: &str| ObjectMeta {
            key: ObjectKey::new(k).unwrap(),
            size: 1,
        };
        let g = group_backup_objects(vec![
            meta("backups/a/files/0.zst"),
            meta("backups/a/manifest.json"),
            meta("backups/b/files/1.0.zst"),
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!(g["a"].len(), 2);
    }
}
