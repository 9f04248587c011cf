//! Fuzz targets for every parser of bytes pitr reads from disk or from a
//! repository: pg_control, WAL page headers, whole WAL segments (and the
//! records in them), timeline `.history` files, `backup_label` and `.backup`
//! files, WAL file names, `PG_VERSION`, `postmaster.pid`, every catalog
//! metadata kind inside its envelope, listed object keys, and the zstd
//! codec. See docs/fuzzing.md.
//!
//! Each target has two kinds of generator: arbitrary bytes, and mutations
//! (bit flips, byte and word overwrites, copies, insertions, removals,
//! truncations, extensions) of real fixtures made by PostgreSQL
//! (`testdata/`) or sealed by pitr. Where a checksum would stop a mutation at
//! the door (pg_control's CRC, a WAL record's CRC, an envelope's SHA-256) a
//! second mutated variant is re-checksummed so the fields behind it are
//! reached. Every parse runs on a worker thread under a deadline and an
//! allocation budget: a panic, a hang or a huge allocation fails the case.
//!
//! Case counts keep a debug run of the whole file to a few seconds;
//! `PROPTEST_CASES=N` runs every target N times instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use pitr::catalog::envelope::sha256_hex;
use pitr::catalog::model::FileKind;
use pitr::catalog::{
    BackupClaim, BackupFile, BackupManifest, BackupRecord, ContentHash, Envelope, FileChunk,
    RepoConfig, RestoreTiming, WalIndexChunk, WalSegmentRecord, WalSummary,
};
use pitr::pg::backup_label::{BackupHistoryFile, BackupLabel};
use pitr::pg::control::{ControlFile, PgMajor};
use pitr::pg::history::TimelineHistory;
use pitr::pg::wal::{scan_segment, LongPageHeader, SegmentScan, XactEnd};
use pitr::pg::{Lsn, TimelineId, WalFileName, WalSegmentSize};
use pitr::repo::store::ObjectKey;
use pitr::repo::{codec, layout};

// ---------------------------------------------------------------------------
// The guard: a deadline and an allocation budget around every parse.

/// A parse that takes longer than this has hung (the slowest target, a
/// 1 MiB segment scan in a debug build, takes milliseconds).
const DEADLINE: Duration = Duration::from_secs(5);

/// Most bytes a worker thread may hold at once. Every parser here needs at
/// most a few times its input; the codec is asked for at most 1 MiB.
const ALLOC_BUDGET: i64 = 64 << 20;

/// Counts each thread's live heap bytes and their peak, so a parse that
/// allocates in proportion to a length field (rather than to its input)
/// fails its case instead of exhausting the machine. (zstd's own C
/// allocations are not seen here; what it decodes into is.)
struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// touches only const-initialized thread-locals without destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `parse` on a fresh thread; fails the case if it panics, runs past
/// `DEADLINE`, or holds more than `ALLOC_BUDGET` bytes at once. (A hung
/// thread is left behind: the case has failed, and the process ends soon.)
fn guarded<R: Send + 'static>(
    what: &str,
    parse: impl FnOnce() -> R + Send + 'static,
) -> Result<R, TestCaseError> {
    guarded_for(DEADLINE, what, parse)
}

fn guarded_for<R: Send + 'static>(
    deadline: Duration,
    what: &str,
    parse: impl FnOnce() -> R + Send + 'static,
) -> Result<R, TestCaseError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz {what}"))
        .spawn(move || {
            let out = parse();
            let peak = PEAK.with(Cell::get);
            let _ = tx.send((out, peak));
        })
        .map_err(|e| TestCaseError::fail(format!("{what}: cannot spawn a worker: {e}")))?;
    match rx.recv_timeout(deadline) {
        Ok((out, peak)) => {
            let _ = worker.join();
            if peak > ALLOC_BUDGET {
                return Err(TestCaseError::fail(format!(
                    "{what}: held {peak} bytes at once (budget {ALLOC_BUDGET})"
                )));
            }
            Ok(out)
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!(
            "{what}: no answer within {deadline:?} (a hang)"
        ))),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let msg = match worker.join() {
                Err(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text panic".to_string()),
                Ok(()) => "the worker ended without answering".to_string(),
            };
            Err(TestCaseError::fail(format!("{what}: panicked: {msg}")))
        }
    }
}

/// Cases per target: a whole debug run of this file takes a few seconds.
const CASES: u32 = 2000;
/// For the targets that build a megabyte per case (noise segments, bombs,
/// nesting 20 000 deep).
const CASES_SLOW: u32 = 300;

/// `cases` unless `PROPTEST_CASES` says otherwise; failures are kept in
/// `proptest-regressions/fuzz_parsers.txt` and replayed first.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz_parsers.txt",
        ))),
        // A hang costs DEADLINE per shrinking step: stop shrinking early.
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Mutations of real inputs.

/// One edit of a byte buffer. Positions are `Index`es, scaled to the
/// buffer's length when applied (edits of an empty buffer are no-ops).
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        byte: u8,
    },
    /// A little-endian 4- or 8-byte value, typically a length or offset.
    SetWord {
        at: Index,
        word: Vec<u8>,
    },
    /// Copies up to `len` bytes from one place to another (duplicates
    /// structure: lines, headers, fields).
    Copy {
        from: Index,
        to: Index,
        len: u16,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Remove {
        at: Index,
        len: u16,
    },
    Truncate {
        at: Index,
    },
    Extend {
        bytes: Vec<u8>,
    },
}

/// Bytes that mean something to the formats here: digits, hex, the
/// punctuation of LSNs, labels and history lines, NUL and 0xFF.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        2 => prop::sample::select(b"0123456789ABCDEFabcdef/:.()# \t\n\r\0\xFF\x7F\x80".to_vec()),
    ]
}

fn interesting_word() -> impl Strategy<Value = Vec<u8>> {
    let u32s = prop::sample::select(vec![
        0u32,
        1,
        8,
        23,
        24,
        40,
        0x7F,
        0xFF,
        0x1FFF,
        0x2000,
        0xFFFF,
        0x10000,
        0x3FFF_FFFF,
        0x4000_0000,
        0x7FFF_FFFF,
        0x8000_0000,
        u32::MAX,
    ]);
    prop_oneof![
        2 => u32s.prop_map(|v| v.to_le_bytes().to_vec()),
        1 => any::<u32>().prop_map(|v| v.to_le_bytes().to_vec()),
        1 => prop::sample::select(vec![0u64, u64::MAX, i64::MAX as u64, 1 << 63, 1 << 32])
            .prop_map(|v| v.to_le_bytes().to_vec()),
        1 => any::<u64>().prop_map(|v| v.to_le_bytes().to_vec()),
    ]
}

/// Edits that keep the length (for inputs whose length is checked first,
/// like a WAL segment).
fn in_place_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (any::<Index>(), interesting_byte()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        2 => (any::<Index>(), interesting_word()).prop_map(|(at, word)| Mutation::SetWord { at, word }),
        1 => (any::<Index>(), any::<Index>(), 1u16..256)
            .prop_map(|(from, to, len)| Mutation::Copy { from, to, len }),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || prop::collection::vec(interesting_byte(), 1..32);
    prop_oneof![
        8 => in_place_mutation(),
        1 => (any::<Index>(), bytes()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<Index>(), 1u16..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => bytes().prop_map(|bytes| Mutation::Extend { bytes }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..8)
}

fn in_place_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(in_place_mutation(), 1..8)
}

fn apply(buf: &mut Vec<u8>, edits: &[Mutation]) {
    for m in edits {
        let len = buf.len();
        let pos = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        match m {
            Mutation::Extend { bytes } => buf.extend_from_slice(bytes),
            Mutation::Insert { at, bytes } => {
                let at = pos(at);
                buf.splice(at..at, bytes.iter().copied());
            }
            _ if len == 0 => {}
            Mutation::FlipBit { at, bit } => buf[pos(at)] ^= 1 << bit,
            Mutation::SetByte { at, byte } => buf[pos(at)] = *byte,
            Mutation::SetWord { at, word } => {
                let at = pos(at);
                let n = word.len().min(len - at);
                buf[at..at + n].copy_from_slice(&word[..n]);
            }
            Mutation::Copy { from, to, len: n } => {
                let (from, to) = (pos(from), pos(to));
                let n = usize::from(*n).min(len - from).min(len - to);
                buf.copy_within(from..from + n, to);
            }
            Mutation::Remove { at, len: n } => {
                let at = pos(at);
                let end = at + usize::from(*n).min(len - at);
                buf.drain(at..end);
            }
            Mutation::Truncate { at } => buf.truncate(pos(at)),
        }
    }
}

/// `fixture` with `edits` applied.
fn mutated(fixture: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut b = fixture.to_vec();
    apply(&mut b, edits);
    b
}

fn arbitrary_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Text as the callers make it from stored bytes (history files are read
/// with `from_utf8_lossy`; the others are already `String`s).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// Fixtures made by PostgreSQL (testdata/README.md).

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn read(rel: &str) -> Vec<u8> {
    let p = testdata().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// Every pg_control fixture (13–18, three initdb variants each, and the
/// pg15 extras).
fn controls() -> &'static [Vec<u8>] {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(|| {
        let mut out = Vec::new();
        for major in 13..=18 {
            for f in ["pg_control", "pg_control.walseg64", "pg_control.checksums"] {
                out.push(read(&format!("pg{major}/{f}")));
            }
        }
        for f in [
            "pg_control.default",
            "pg_control.promoted",
            "pg_control.walseg1mb",
        ] {
            out.push(read(&format!("pg15/{f}")));
        }
        for c in &out {
            ControlFile::decode(c).expect("every pg_control fixture decodes");
        }
        out
    })
}

/// A real WAL segment: its file name, bytes and clean scan.
struct Segment {
    name: String,
    bytes: Vec<u8>,
    stored_len: u64,
    scan: SegmentScan,
}

const SEG: u64 = 1 << 20;
const WAL_PAGE: usize = 8192;

fn seg_size() -> WalSegmentSize {
    WalSegmentSize::new(SEG).unwrap()
}

/// Every WAL fixture of 13–18 (1 MiB segments), decompressed and scanned.
fn segments() -> &'static [Segment] {
    static S: OnceLock<Vec<Segment>> = OnceLock::new();
    S.get_or_init(|| {
        let mut out = Vec::new();
        for major in 13..=18 {
            let dir = testdata().join(format!("wal/pg{major}"));
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("fixture dir {}: {e}", dir.display()))
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".zst").map(str::to_string))
                .collect();
            names.sort();
            for name in names {
                let stored = read(&format!("wal/pg{major}/{name}.zst"));
                let bytes = zstd::decode_all(&stored[..]).expect("fixture decompresses");
                let scan = scan_segment(&bytes, seg_size()).expect("fixture scans");
                out.push(Segment {
                    name,
                    bytes,
                    stored_len: stored.len() as u64,
                    scan,
                });
            }
        }
        assert!(out.len() >= 20, "expected the WAL fixtures of 13-18");
        out
    })
}

fn history_fixtures() -> [(u32, Vec<u8>); 2] {
    [
        (2, read("pg15/00000002.history")),
        (3, read("pg15/00000003.history")),
    ]
}

fn label_fixture() -> Vec<u8> {
    read("pg15/backup_label")
}

fn backup_history_fixture() -> Vec<u8> {
    read("pg15/000000010000000000000002.00000028.backup")
}

fn pg_version_fixtures() -> Vec<Vec<u8>> {
    (13..=18)
        .map(|m| read(&format!("pg{m}/PG_VERSION")))
        .collect()
}

/// Names of real archived files of every kind.
fn wal_names() -> Vec<String> {
    let mut names: Vec<String> = segments().iter().map(|s| s.name.clone()).collect();
    names.extend(
        [
            "00000002.history",
            "00000003.history",
            "000000010000000000000002.00000028.backup",
            "000000020000000000000003.partial",
            "0000000A00000001000000FF",
        ]
        .map(String::from),
    );
    names
}

// ---------------------------------------------------------------------------
// Invariants of what the parsers return.

fn check_scan(scan: &SegmentScan) -> Result<(), TestCaseError> {
    let start = scan.header.page_addr;
    let end = start.checked_add(SEG).expect("parse checks the room");
    let inside = |l: Lsn| start <= l && l <= end;
    for l in [
        scan.first_record,
        scan.last_record,
        scan.end_lsn,
        scan.switch_lsn,
    ]
    .into_iter()
    .flatten()
    {
        prop_assert!(inside(l), "{l} outside the segment at {start}");
    }
    prop_assert_eq!(scan.first_record.is_some(), scan.records > 0);
    if let (Some(first), Some(last)) = (scan.first_record, scan.last_record) {
        prop_assert!(first <= last);
    }
    prop_assert!(scan.xact_ends.windows(2).all(|w| w[0].lsn < w[1].lsn));
    for x in &scan.xact_ends {
        prop_assert!(inside(x.lsn) && x.lsn < x.end_lsn && inside(x.end_lsn));
    }
    Ok(())
}

fn check_history(h: &TimelineHistory) -> Result<(), TestCaseError> {
    for w in h.entries().windows(2) {
        prop_assert!(w[0].parent < w[1].parent);
        prop_assert!(w[0].switchpoint <= w[1].switchpoint);
    }
    prop_assert!(h.entries().iter().all(|e| e.parent < h.tli()));
    let spans = h.ancestors();
    prop_assert_eq!(spans.len(), h.entries().len() + 1);
    for e in h.entries() {
        prop_assert!(h.is_ancestor(e.parent));
        let _ = h.tli_of_point(e.switchpoint);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// pg_control

/// Writes the CRC pg_control's version says belongs after the mutated
/// bytes, so the mutation reaches the fields (ReadControlFile checks the
/// CRC first).
fn fix_control_crc(b: &mut [u8]) {
    let Some(v) = b.get(8..12) else { return };
    let v: [u8; 4] = v.try_into().unwrap();
    let crc_at = |version: u32| match version {
        1201 | 1300 | 1700 => Some(288),
        1800 => Some(292),
        _ => None,
    };
    let (le, at) = match (crc_at(u32::from_le_bytes(v)), crc_at(u32::from_be_bytes(v))) {
        (Some(at), _) => (true, at),
        (None, Some(at)) => (false, at),
        (None, None) => return,
    };
    if b.len() < at + 4 {
        return;
    }
    let crc = crc32c::crc32c(&b[..at]);
    let crc = if le {
        crc.to_le_bytes()
    } else {
        crc.to_be_bytes()
    };
    b[at..at + 4].copy_from_slice(&crc);
}

fn decode_control(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    guarded("ControlFile::decode", move || {
        ControlFile::decode(&bytes).map(|cf| cf.fingerprint.differences(&cf.fingerprint))
    })?
    .map_or(Ok(()), |diffs| {
        prop_assert!(diffs.is_empty());
        Ok(())
    })
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn control_arbitrary_bytes(bytes in arbitrary_bytes(600)) {
        decode_control(bytes)?;
    }

    #[test]
    fn control_mutated(which in any::<Index>(), edits in mutations(), fix_crc in any::<bool>()) {
        let fixtures = controls();
        let mut b = mutated(&fixtures[which.index(fixtures.len())], &edits);
        if fix_crc {
            fix_control_crc(&mut b);
        }
        decode_control(b)?;
    }
}

// ---------------------------------------------------------------------------
// WAL: the first page's long header, and whole segments.

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn long_page_header_arbitrary_bytes(bytes in arbitrary_bytes(64)) {
        guarded("LongPageHeader::parse", move || LongPageHeader::parse(&bytes).map(|h| h.pg_major()))?
            .ok();
    }

    #[test]
    fn long_page_header_mutated(which in any::<Index>(), edits in mutations()) {
        let segs = segments();
        let b = mutated(&segs[which.index(segs.len())].bytes[..64], &edits);
        if let Ok(h) = guarded("LongPageHeader::parse", move || LongPageHeader::parse(&b))? {
            prop_assert!(h.pg_major().is_some());
            prop_assert!(h.page_addr.as_u64() % u64::from(h.seg_size) == 0);
        }
    }
}

/// xorshift64*: a megabyte of noise from a seed (a proptest `Vec<u8>` of
/// that size is too slow to generate in a debug build).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn scan(bytes: Vec<u8>, size: WalSegmentSize) -> Result<(), TestCaseError> {
    if let Ok(s) = guarded("scan_segment", move || scan_segment(&bytes, size))? {
        check_scan(&s)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES_SLOW))]

    /// Noise with no, a real first, or real every page header, so that the
    /// page and record paths see random bytes.
    #[test]
    fn wal_segment_arbitrary_bytes(seed in any::<u64>(), headers in 0u8..3, which in any::<Index>()) {
        let mut buf = noise(seed, SEG as usize);
        let segs = segments();
        let real = &segs[which.index(segs.len())].bytes;
        if headers >= 1 {
            buf[..40].copy_from_slice(&real[..40]);
        }
        if headers == 2 {
            for at in (WAL_PAGE..SEG as usize).step_by(WAL_PAGE) {
                buf[at..at + 2].copy_from_slice(&real[..2]);
                buf[at + 2] &= 0x0D; // any flags but XLP_LONG_HEADER
                buf[at + 3] = 0;
                buf[at + 4..at + 16].copy_from_slice(&real[at + 4..at + 16]);
            }
        }
        scan(buf, seg_size())?;
    }
}

/// Where the bytes of every record the clean scan names lie: the rest of
/// its first page, then each following page after its short header
/// (SizeOfXLogShortPHD). Records that run into the next segment are left
/// out.
fn known_records(seg: &Segment) -> Vec<Vec<Range<usize>>> {
    let s = &seg.scan;
    let start = s.header.page_addr.as_u64();
    let lsns = s
        .xact_ends
        .iter()
        .map(|x| x.lsn)
        .chain(s.restore_points.iter().map(|r| r.lsn))
        .chain(s.checkpoints.iter().map(|c| c.lsn))
        .chain(s.first_record)
        .chain(s.last_record)
        .chain(s.switch_lsn);
    lsns.filter_map(|l| {
        let mut at = usize::try_from(l.as_u64() - start).ok()?;
        let mut left = u32::from_le_bytes(seg.bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let mut pieces = Vec::new();
        while left > 0 {
            let page_end = (at / WAL_PAGE + 1) * WAL_PAGE;
            let n = left.min(page_end - at);
            if at + n > seg.bytes.len() {
                return None;
            }
            pieces.push(at..at + n);
            left -= n;
            at = page_end + 24;
        }
        Some(pieces)
    })
    .collect()
}

/// The length of the pages up to the one after the clean scan's end.
fn live_len(seg: &Segment) -> usize {
    let start = seg.scan.header.page_addr.as_u64();
    let end = seg.scan.end_lsn.map_or(0, |l| l.as_u64() - start) as usize;
    let end = seg
        .scan
        .switch_lsn
        .map_or(end, |l| (l.as_u64() - start) as usize + 64);
    (end.next_multiple_of(WAL_PAGE) + WAL_PAGE).min(seg.bytes.len())
}

/// Sets a record's xl_crc (ValidXLogRecord: CRC-32C of the payload, then
/// of the header up to xl_crc).
fn fix_record_crc(rec: &mut [u8]) {
    if rec.len() < 24 {
        return;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&rec[24..]), &rec[..20]);
    rec[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// Offsets of a page header's fields (XLogPageHeaderData and the long
/// header's additions): magic, info, tli, pageaddr, rem_len, sysid,
/// seg_size, blcksz.
const PAGE_HEADER_FIELDS: [usize; 8] = [0, 2, 4, 8, 16, 24, 32, 36];

proptest! {
    #![proptest_config(config(CASES))]

    /// Short and over-long buffers, and every segment size.
    #[test]
    fn wal_segment_wrong_size(bytes in arbitrary_bytes(4096), shift in 20u32..=30) {
        scan(bytes, WalSegmentSize::new(1 << shift).unwrap())?;
    }

    /// Edits anywhere in the pages that hold records (the fixtures' WAL
    /// ends early in the segment; the rest is zeros or switch padding).
    #[test]
    fn wal_segment_mutated(which in any::<Index>(), edits in in_place_mutations()) {
        let segs = segments();
        let seg = &segs[which.index(segs.len())];
        let mut b = seg.bytes.clone();
        let live = live_len(seg);
        let part = mutated(&b[..live], &edits);
        b[..live].copy_from_slice(&part);
        scan(b, seg_size())?;
    }

    /// Page header fields overwritten on chosen pages: continuation flags,
    /// xlp_rem_len, addresses, timelines, sizes.
    #[test]
    fn wal_segment_page_headers_mutated(
        which in any::<Index>(),
        edits in prop::collection::vec(
            (any::<Index>(), prop::sample::select(PAGE_HEADER_FIELDS.to_vec()), interesting_word()),
            1..6,
        ),
    ) {
        let segs = segments();
        let mut b = segs[which.index(segs.len())].bytes.clone();
        let pages = b.len() / WAL_PAGE;
        for (page, field, word) in edits {
            let at = page.index(pages) * WAL_PAGE + field;
            let n = if field == 8 || field == 24 { 8 } else if field == 0 || field == 2 { 2 } else { 4 };
            let word: Vec<u8> = word.iter().copied().cycle().take(n).collect();
            b[at..at + n].copy_from_slice(&word);
        }
        scan(b, seg_size())?;
    }

    /// A real record (commit, abort, restore point, checkpoint, switch, on
    /// one page or spanning several) mutated and given a correct CRC again,
    /// so the record decoding and the resource managers' parsers see it.
    #[test]
    fn wal_record_mutated_with_valid_crc(
        which in any::<Index>(),
        rec in any::<Index>(),
        edits in in_place_mutations(),
    ) {
        let segs: Vec<&Segment> = segments().iter().filter(|s| !known_records(s).is_empty()).collect();
        let seg = segs[which.index(segs.len())];
        let recs = known_records(seg);
        let pieces = &recs[rec.index(recs.len())];
        let mut b = seg.bytes.clone();
        let mut r: Vec<u8> = pieces.iter().flat_map(|p| b[p.clone()].to_vec()).collect();
        let len = r.len();
        apply(&mut r, &edits);
        // The CRC covers xl_tot_len bytes: the new length if the edit
        // shortened the record, else the old one.
        let new_len = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
        fix_record_crc(&mut r[..if (24..=len).contains(&new_len) { new_len } else { len }]);
        let mut rest = &r[..];
        for p in pieces {
            let (here, after) = rest.split_at(p.len());
            b[p.clone()].copy_from_slice(here);
            rest = after;
        }
        scan(b, seg_size())?;
    }
}

// ---------------------------------------------------------------------------
// Timeline history, backup_label, .backup, file names, PG_VERSION.

fn parse_history(tli: u32, text: String) -> Result<(), TestCaseError> {
    let Ok(tli) = TimelineId::new(tli) else {
        return Ok(());
    };
    if let Ok(h) = guarded("TimelineHistory::parse", move || {
        TimelineHistory::parse(tli, &text)
    })? {
        check_history(&h)?;
    }
    Ok(())
}

fn parse_labels(text: String) -> Result<(), TestCaseError> {
    let (label, hist) = guarded("BackupLabel::parse", move || {
        (BackupLabel::parse(&text), BackupHistoryFile::parse(&text))
    })?;
    if let Ok(l) = label {
        prop_assert_eq!(l.start_timeline, l.start_segment.timeline());
    }
    if let Ok(h) = hist {
        prop_assert!(h.stop_lsn >= h.label.start_lsn);
        prop_assert_eq!(h.stop_timeline, h.stop_segment.timeline());
    }
    Ok(())
}

/// Whatever parses writes back to text that parses to the same links.
fn parse_tablespace_map(text: String, major: u32) -> Result<(), TestCaseError> {
    use pitr::pg::tablespace_map::{parse, render};
    let major = pitr::pg::PgMajor::new(major).expect("a supported major");
    let parsed = guarded("tablespace_map::parse", move || parse(&text, major))?;
    if let Ok(links) = parsed {
        if let Ok(again) = render(&links, major) {
            prop_assert_eq!(parse(&again, major).ok(), Some(links));
        }
    }
    Ok(())
}

fn parse_wal_name(name: String) -> Result<(), TestCaseError> {
    let back = guarded("WalFileName::parse", move || {
        let parsed = WalFileName::parse(&name).ok()?;
        // Every size's segment number and start (checked arithmetic).
        if let WalFileName::Segment(s) | WalFileName::Partial(s) = &parsed {
            for shift in 20..=30 {
                let size = WalSegmentSize::new(1 << shift).unwrap();
                let _ = s.segno(size);
                let _ = s.start_lsn(size);
            }
        }
        Some((name, parsed.to_string()))
    })?;
    if let Some((name, shown)) = back {
        prop_assert_eq!(shown, name, "a parsed name prints as itself");
    }
    Ok(())
}

/// Keys a listing of the repository returns, as `load_catalog` reads them
/// (`ObjectKey::new`, then `parse_wal_index_key` and the history file
/// name).
fn parse_repo_key(key: String) -> Result<(), TestCaseError> {
    guarded("parse_wal_index_key", move || {
        let key = ObjectKey::new(key).ok()?;
        let _ = layout::parse_wal_index_key(&key);
        let name = key.file_name().trim_end_matches(".zst");
        WalFileName::parse(name).ok()
    })?;
    Ok(())
}

/// Real keys of every kind `layout` makes.
fn repo_keys() -> Vec<String> {
    let seg = match WalFileName::parse(&segments()[0].name) {
        Ok(WalFileName::Segment(s)) => s,
        other => panic!("{other:?}"),
    };
    let tli = seg.timeline();
    vec![
        layout::wal_index_pending(&seg).to_string(),
        layout::wal_index_chunk(tli, 0x1F).to_string(),
        layout::segment_data(&seg, None).to_string(),
        layout::segment_data(
            &seg,
            Some(&layout::DataTag::parse("0123456789abcdef0123456789abcdef").unwrap()),
        )
        .to_string(),
        layout::aux_file(&WalFileName::History(TimelineId::new(3).unwrap())).to_string(),
        layout::backup_record("20261125T143520Z")
            .unwrap()
            .to_string(),
    ]
}

/// A server's `postmaster.pid` as 15 writes it (miscinit.c:
/// CreateLockFile, AddToDataDirLockFile): pid, data directory, start time,
/// port, socket directory, listen address, shared memory key, status.
const POSTMASTER_PID: &[u8] = b"12345\n/var/lib/postgresql/15/main\n1764081320\n5432\n\
/var/run/postgresql\nlocalhost\n  5432001    65536\nready   \n";

/// `server::conn::read_postmaster_pid`, which reads the file from a data
/// directory (so each case writes one to a temporary directory).
fn parse_postmaster_pid(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    std::fs::write(dir.path().join("postmaster.pid"), &bytes)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let pgdata = dir.path().to_path_buf();
    guarded("read_postmaster_pid", move || {
        pitr::server::conn::read_postmaster_pid(&pgdata).ok()
    })?;
    Ok(())
}

fn parse_pg_version(text: String) -> Result<(), TestCaseError> {
    if let Ok(m) = guarded("PgMajor::from_pg_version_file", move || {
        PgMajor::from_pg_version_file(&text)
    })? {
        prop_assert!((10..=99).contains(&m.get()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn history_arbitrary(tli in any::<u32>(), bytes in arbitrary_bytes(400), s in "(?s).{0,200}") {
        parse_history(tli, text(&bytes))?;
        parse_history(tli, s)?;
    }

    #[test]
    fn history_mutated(which in 0usize..2, tli in prop_oneof![Just(None), any::<u32>().prop_map(Some)], edits in mutations()) {
        let (own, bytes) = history_fixtures()[which].clone();
        parse_history(tli.unwrap_or(own), text(&mutated(&bytes, &edits)))?;
    }

    #[test]
    fn backup_label_arbitrary(bytes in arbitrary_bytes(600), s in "(?s).{0,300}") {
        parse_labels(text(&bytes))?;
        parse_labels(s)?;
    }

    #[test]
    fn backup_label_mutated(history in any::<bool>(), edits in mutations()) {
        let f = if history { backup_history_fixture() } else { label_fixture() };
        parse_labels(text(&mutated(&f, &edits)))?;
    }

    #[test]
    fn tablespace_map_arbitrary(bytes in arbitrary_bytes(300), s in "(?s)[0-9 /a\\\\\n\r]{0,120}", major in 13u32..=18) {
        parse_tablespace_map(text(&bytes), major)?;
        parse_tablespace_map(s, major)?;
    }

    #[test]
    fn tablespace_map_mutated(edits in mutations(), major in 13u32..=18) {
        parse_tablespace_map(text(&mutated(&read("pg15/tablespace_map"), &edits)), major)?;
    }

    #[test]
    fn wal_name_arbitrary(bytes in arbitrary_bytes(48), s in "[0-9A-Fa-f.a-z]{0,44}") {
        parse_wal_name(text(&bytes))?;
        parse_wal_name(s)?;
    }

    #[test]
    fn wal_name_mutated(which in any::<Index>(), edits in mutations()) {
        let names = wal_names();
        parse_wal_name(text(&mutated(names[which.index(names.len())].as_bytes(), &edits)))?;
    }

    #[test]
    fn repo_key_arbitrary(bytes in arbitrary_bytes(80), s in "[0-9A-Fa-z/.-]{0,60}") {
        parse_repo_key(text(&bytes))?;
        parse_repo_key(s)?;
    }

    #[test]
    fn repo_key_mutated(which in any::<Index>(), edits in mutations()) {
        let keys = repo_keys();
        parse_repo_key(text(&mutated(keys[which.index(keys.len())].as_bytes(), &edits)))?;
    }

    #[test]
    fn postmaster_pid_arbitrary(bytes in arbitrary_bytes(200)) {
        parse_postmaster_pid(bytes)?;
    }

    #[test]
    fn postmaster_pid_mutated(edits in mutations()) {
        parse_postmaster_pid(mutated(POSTMASTER_PID, &edits))?;
    }

    #[test]
    fn pg_version_arbitrary(bytes in arbitrary_bytes(16), s in "[ 0-9\n\t.]{0,8}") {
        parse_pg_version(text(&bytes))?;
        parse_pg_version(s)?;
    }

    #[test]
    fn pg_version_mutated(which in any::<Index>(), edits in mutations()) {
        let f = pg_version_fixtures();
        parse_pg_version(text(&mutated(&f[which.index(f.len())], &edits)))?;
    }
}

// ---------------------------------------------------------------------------
// Catalog metadata: every kind, sealed from real values.

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 123_456_000).single().unwrap()
}

fn real_control() -> ControlFile {
    ControlFile::decode(&controls()[6]).unwrap()
}

fn segment_record(seg: &Segment, with_summary: bool) -> WalSegmentRecord {
    let name = match WalFileName::parse(&seg.name) {
        Ok(WalFileName::Segment(s)) => s,
        other => panic!("fixture name {}: {other:?}", seg.name),
    };
    let (sha256, blake3) = ContentHash::of(&seg.bytes).into_fields();
    WalSegmentRecord {
        name: seg.name.clone(),
        timeline: name.timeline(),
        segno: name.segno(seg_size()).unwrap(),
        raw_bytes: seg.bytes.len() as u64,
        stored_bytes: seg.stored_len,
        sha256,
        blake3,
        pushed_at: at(1_764_081_320),
        summary: with_summary.then(|| WalSummary::from_scan(&seg.scan)),
        scan_error: (!with_summary).then(|| "bad long page header".to_string()),
        data_tag: Some(blake3_tag(&seg.bytes)),
        tail: None,
    }
}

fn blake3_tag(bytes: &[u8]) -> String {
    let (_, b3) = ContentHash::of(bytes).into_fields();
    b3[..32].to_string()
}

fn backup_record() -> BackupRecord {
    let h = BackupHistoryFile::parse(&text(&backup_history_fixture())).unwrap();
    let c = real_control();
    BackupRecord {
        id: "20261125T143520Z".into(),
        label: h.label.label.clone(),
        system_id: c.system_identifier,
        pg_major: PgMajor::new(15).unwrap(),
        timeline: h.label.start_timeline,
        start_lsn: h.label.start_lsn,
        checkpoint_lsn: h.label.checkpoint_lsn,
        stop_lsn: h.stop_lsn,
        stop_timeline: h.stop_timeline,
        start_segment: h.label.start_segment.to_string(),
        stop_segment: h.stop_segment.to_string(),
        start_time: at(1_764_081_320),
        stop_time: at(1_764_081_321),
        fingerprint: c.fingerprint,
        files: 1234,
        raw_bytes: 40 << 20,
        stored_bytes: 5 << 20,
        pitr_version: "0.1.0".into(),
        arch: Some("x86_64".into()),
        start: Default::default(),
    }
}

fn manifest() -> BackupManifest {
    let control = &controls()[6];
    let (_, b3) = ContentHash::of(control).into_fields();
    BackupManifest {
        id: "20261125T143520Z".into(),
        files: vec![
            BackupFile {
                path: "base".into(),
                kind: FileKind::Dir,
                mode: 0o700,
                size: 0,
                stored_bytes: 0,
                sha256: String::new(),
                blake3: String::new(),
                chunks: vec![],
                object: Some(0),
                source: Default::default(),
            },
            BackupFile {
                path: "global/pg_control".into(),
                kind: FileKind::File,
                mode: 0o600,
                size: control.len() as u64,
                stored_bytes: 321,
                sha256: String::new(),
                blake3: b3.clone(),
                chunks: vec![],
                object: Some(0),
                source: Default::default(),
            },
            BackupFile {
                path: "base/5/16384".into(),
                kind: FileKind::File,
                mode: 0o600,
                size: 3 << 20,
                stored_bytes: 1 << 20,
                sha256: String::new(),
                blake3: String::new(),
                chunks: (0..3)
                    .map(|i| FileChunk {
                        offset: i << 20,
                        size: 1 << 20,
                        stored_bytes: 300_000,
                        blake3: b3.clone(),
                    })
                    .collect(),
                object: Some(7),
                source: Default::default(),
            },
            // An incremental's relation file: changed blocks over the parent's.
            BackupFile {
                path: "base/5/16390".into(),
                kind: FileKind::File,
                mode: 0o600,
                size: 5 << 13,
                stored_bytes: 900,
                sha256: String::new(),
                blake3: String::new(),
                chunks: vec![],
                object: Some(8),
                source: pitr::catalog::FileSource::Delta {
                    block_size: 8192,
                    blocks: pitr::catalog::BlockRange::compact([0, 1, 4]),
                    parts: vec![pitr::catalog::DeltaPart {
                        chunk: 0,
                        blocks: 3,
                        stored_bytes: 900,
                        blake3: b3.clone(),
                    }],
                },
            },
        ],
        backup_label: text(&label_fixture()),
        tablespace_map: None,
    }
}

/// One sealed value per metadata kind, with a function that opens bytes as
/// that kind, checks that what opens seals and opens again to the same
/// value, and says whether it opened.
struct Kind {
    name: &'static str,
    sealed: Vec<u8>,
    open: fn(&'static str, Vec<u8>) -> Result<bool, TestCaseError>,
}

fn open_as<T>(kind: &'static str, bytes: Vec<u8>) -> Result<bool, TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Send + 'static,
{
    let round = guarded(kind, move || {
        let v: T = Envelope::open(kind, &bytes).ok()?;
        let again = Envelope::seal(kind, &v).map(|b| Envelope::open::<T>(kind, &b));
        Some((v, again))
    })?;
    let Some((v, again)) = round else {
        return Ok(false);
    };
    match again {
        Ok(Ok(back)) => prop_assert_eq!(back, v, "{} does not survive a second seal", kind),
        Ok(Err(e)) => return Err(TestCaseError::fail(format!("{kind}: reopening: {e}"))),
        Err(e) => return Err(TestCaseError::fail(format!("{kind}: resealing: {e}"))),
    }
    Ok(true)
}

fn kind<T>(name: &'static str, value: &T) -> Kind
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Send + 'static,
{
    let sealed = Envelope::seal(name, value).unwrap();
    assert!(open_as::<T>(name, sealed.clone()).unwrap(), "{name} opens");
    Kind {
        name,
        sealed,
        open: open_as::<T>,
    }
}

fn kinds() -> &'static [Kind] {
    static K: OnceLock<Vec<Kind>> = OnceLock::new();
    K.get_or_init(|| {
        use pitr::repo::*;
        let c = real_control();
        let segs = segments();
        let pg15: Vec<&Segment> = segs
            .iter()
            .filter(|s| s.scan.header.pg_major() == Some(15))
            .collect();
        let records: Vec<WalSegmentRecord> = pg15.iter().map(|s| segment_record(s, true)).collect();
        let config = RepoConfig {
            system_id: c.system_identifier,
            pg_major: PgMajor::from_pg_version_file("15\n").unwrap(),
            wal_segment_size: c.wal_segment_size,
            fingerprint: c.fingerprint.clone(),
            created_at: c.time,
            created_by: "pitr 0.1.0 on x86_64".into(),
            encryption: None,
        };
        let chunk = WalIndexChunk {
            timeline: records[0].timeline,
            chunk: 0,
            first_segno: records[0].segno,
            last_segno: records[records.len() - 1].segno,
            segments: records.clone(),
        };
        let timing = RestoreTiming {
            at: at(1_764_081_400),
            backup_id: "20261125T143520Z".into(),
            data_bytes: 40 << 20,
            materialize_seconds: 1.25,
            wal_bytes: 5 << 20,
            replay_seconds: 0.5,
            startup_seconds: 0.75,
            replayed_bytes: Some(4 << 20),
            replayed_seconds: Some(0.25),
            estimated_seconds: Some(4.5),
            actual_seconds: Some(2.75),
            start: None,
        };
        let xacts: Vec<XactEnd> = pg15.iter().flat_map(|s| s.scan.xact_ends.clone()).collect();
        let claim = BackupClaim {
            id: "20261125T143520Z-4242".into(),
            started_at: at(1_764_081_320),
            boot_id: "2f8c6f4e-6f36-4c8e-9b43-1f6c2a7d9e01".into(),
            hostname: "db1".into(),
            pid: 4242,
            pid_start: 123_456_789,
        };
        vec![
            kind(KIND_CONFIG, &config),
            kind(KIND_WAL, &records[0]),
            kind(KIND_WAL, &segment_record(pg15[1], false)),
            kind(KIND_WAL_CHUNK, &chunk),
            kind(KIND_BACKUP, &backup_record()),
            kind(KIND_MANIFEST, &manifest()),
            kind(KIND_TIMING, &timing),
            kind(KIND_WAL_XACTS, &xacts),
            kind(KIND_CLAIM, &claim),
        ]
    })
}

/// Wraps `body` (JSON text, taken as is) in an envelope with the right
/// checksum, the way `Envelope::seal` does.
fn reseal(kind: &str, body: &str) -> Vec<u8> {
    format!(
        "{{\"kind\": {}, \"format_version\": 1, \"sha256\": \"{}\", \"body\": {body}}}\n",
        serde_json::to_string(kind).unwrap(),
        sha256_hex(body.as_bytes()),
    )
    .into_bytes()
}

/// The body of a sealed envelope as a JSON value.
fn body_of(sealed: &[u8]) -> Value {
    let env: Value = serde_json::from_slice(sealed).unwrap();
    env["body"].clone()
}

/// A value of a different shape or an edge of the same shape: what a
/// corrupted or hand-edited metadata file may hold in one place.
#[derive(Clone, Debug)]
enum JsonEdit {
    Replace(Value),
    Remove,
    /// An array's element duplicated, an object's member given a new name.
    Duplicate,
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i32::MIN as i64,
            i64::MIN,
            i64::MAX,
        ])
        .prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        "[0-9A-Fa-f/.:+TZ -]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "0/0",
            "FFFFFFFF/FFFFFFFF",
            "1/",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "+262143-12-31T23:59:59.999999999Z",
            "-262144-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2026-11-25T14:35:20",
            "dir",
            "file",
            "commit_prepared",
            "little",
            "big",
            "",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    prop_oneof![
        6 => scalar.prop_map(JsonEdit::Replace),
        1 => Just(JsonEdit::Replace(Value::Array(vec![]))),
        1 => Just(JsonEdit::Replace(Value::Object(Default::default()))),
        2 => Just(JsonEdit::Remove),
        1 => Just(JsonEdit::Duplicate),
    ]
}

/// Paths (object keys and array indexes) to every node under `v`.
fn paths(v: &Value, here: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Value::from(k.as_str()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Value::from(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn step<'a>(v: &'a mut Value, seg: &Value) -> Option<&'a mut Value> {
    match (v, seg) {
        (Value::Object(m), Value::String(k)) => m.get_mut(k),
        (Value::Array(a), Value::Number(i)) => a.get_mut(usize::try_from(i.as_u64()?).ok()?),
        _ => None,
    }
}

fn edit_json(body: &mut Value, at: Index, edit: &JsonEdit) {
    let mut all = Vec::new();
    paths(body, &mut Vec::new(), &mut all);
    let path = &all[at.index(all.len())];
    let Some((last, parent_path)) = path.split_last() else {
        if let JsonEdit::Replace(v) = edit {
            *body = v.clone();
        }
        return;
    };
    let mut parent = &mut *body;
    for seg in parent_path {
        parent = step(parent, seg).expect("a path found above");
    }
    match (edit, parent, last) {
        (JsonEdit::Replace(v), parent, last) => {
            if let Some(node) = step(parent, last) {
                *node = v.clone();
            }
        }
        (JsonEdit::Remove, Value::Object(m), Value::String(k)) => {
            m.remove(k);
        }
        (JsonEdit::Remove, Value::Array(a), Value::Number(i)) => {
            a.remove(i.as_u64().unwrap() as usize);
        }
        (JsonEdit::Duplicate, Value::Object(m), Value::String(k)) => {
            let v = m[k].clone();
            m.insert(format!("{k}_"), v);
        }
        (JsonEdit::Duplicate, Value::Array(a), Value::Number(i)) => {
            let i = i.as_u64().unwrap() as usize;
            a.insert(i, a[i].clone());
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Arbitrary bytes, and arbitrary bytes behind a valid envelope.
    #[test]
    fn envelope_arbitrary(which in any::<Index>(), bytes in arbitrary_bytes(300), s in "(?s).{0,120}") {
        let k = &kinds()[which.index(kinds().len())];
        (k.open)(k.name, bytes)?;
        (k.open)(k.name, reseal(k.name, &s))?;
        let quoted = serde_json::to_string(&s).unwrap();
        (k.open)(k.name, reseal(k.name, &quoted))?;
    }

    /// The sealed bytes mutated (the checksum, kind and version refusals).
    #[test]
    fn envelope_mutated(which in any::<Index>(), edits in mutations()) {
        let k = &kinds()[which.index(kinds().len())];
        (k.open)(k.name, mutated(&k.sealed, &edits))?;
    }

    /// The body's bytes mutated and sealed again with the right checksum.
    #[test]
    fn envelope_body_bytes_mutated_and_resealed(which in any::<Index>(), edits in mutations()) {
        let k = &kinds()[which.index(kinds().len())];
        let body = serde_json::to_string_pretty(&body_of(&k.sealed)).unwrap();
        let body = text(&mutated(body.as_bytes(), &edits));
        (k.open)(k.name, reseal(k.name, &body))?;
    }

    /// Values inside the body replaced, removed or duplicated, sealed again
    /// with the right checksum: every field's deserializer sees wrong types
    /// and edge values (LSNs, timelines, system ids, times, sizes).
    #[test]
    fn envelope_body_values_edited_and_resealed(
        which in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), json_edit()), 1..4),
    ) {
        let k = &kinds()[which.index(kinds().len())];
        let mut body = body_of(&k.sealed);
        for (at, edit) in &edits {
            edit_json(&mut body, *at, edit);
        }
        let body = serde_json::to_string_pretty(&body).unwrap();
        (k.open)(k.name, reseal(k.name, &body))?;
    }
}

proptest! {
    #![proptest_config(config(CASES_SLOW))]

    /// Deeply nested arrays and objects, as the body or inside it (a
    /// recursive parser must refuse them, not overflow its stack).
    #[test]
    fn envelope_deeply_nested(which in any::<Index>(), depth in 0usize..20_000, object in any::<bool>(), at in any::<Index>()) {
        let k = &kinds()[which.index(kinds().len())];
        let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
        let deep = format!("{}0{}", open.repeat(depth), close.repeat(depth));
        (k.open)(k.name, reseal(k.name, &deep))?;
        let mut body = body_of(&k.sealed);
        edit_json(&mut body, at, &JsonEdit::Replace(Value::Null));
        let body = serde_json::to_string(&body).unwrap().replacen("null", &deep, 1);
        (k.open)(k.name, reseal(k.name, &body))?;
    }
}

// ---------------------------------------------------------------------------
// The codec: stored objects, their corruptions, and decompression bombs.

/// What the codec may be asked to produce here, and so at most what it
/// may hold (the bound the repository passes is a segment or a file size).
const CODEC_LIMIT: u64 = 1 << 20;

/// Runs every decoder over `stored`, expecting at most `CODEC_LIMIT` bytes
/// of a content whose hash is `hash`. Returns whether `decompress_bounded`
/// accepted it.
fn decode_all_ways(stored: Vec<u8>, hash: ContentHash) -> Result<bool, TestCaseError> {
    guarded("codec", move || {
        let one = codec::decompress_bounded(&stored, CODEC_LIMIT);
        if let Ok(raw) = &one {
            assert!(
                raw.len() as u64 <= CODEC_LIMIT,
                "decompress_bounded overran"
            );
        }
        let mut sink = Vec::new();
        let _ = codec::decode_into(&stored, CODEC_LIMIT, &hash, &mut sink);
        assert!(sink.len() as u64 <= CODEC_LIMIT, "decode_into overran");
        let mut sink = Vec::new();
        let _ = codec::decode_into_hashing_aside(&stored, CODEC_LIMIT, &hash, &mut sink);
        assert!(
            sink.len() as u64 <= CODEC_LIMIT,
            "decode_into_hashing_aside overran"
        );
        let mut sink = Vec::new();
        let _ = codec::decompress_stream_bounded(&stored[..], &mut sink, CODEC_LIMIT);
        assert!(
            sink.len() as u64 <= CODEC_LIMIT,
            "decompress_stream_bounded overran"
        );
        one.is_ok()
    })
}

/// Stored objects made by pitr's own encoders from real content: a
/// pg_control, the start of a segment, a history file, an empty object,
/// and a split (two-frame) encoding.
fn stored_objects() -> &'static [(Vec<u8>, ContentHash)] {
    static S: OnceLock<Vec<(Vec<u8>, ContentHash)>> = OnceLock::new();
    S.get_or_init(|| {
        let seg = &segments()[0].bytes;
        let raws: Vec<Vec<u8>> = vec![
            controls()[0].clone(),
            seg[..64 << 10].to_vec(),
            history_fixtures()[1].1.clone(),
            Vec::new(),
        ];
        let mut out: Vec<(Vec<u8>, ContentHash)> = raws
            .iter()
            .map(|r| codec::encode_chunk(r).unwrap())
            .collect();
        let mut streamed = Vec::new();
        codec::compress_stream(&raws[2][..], &mut streamed).unwrap();
        out.push((streamed, ContentHash::of(&raws[2])));
        let split = codec::compress_split(&seg[..]).unwrap();
        out.push((split, ContentHash::of(&seg[..])));
        out
    })
}

/// A zstd frame of `len` zero bytes (a few hundred bytes for a megabyte).
fn zeros_frame(len: usize) -> Vec<u8> {
    codec::compress(&vec![0; len]).unwrap()
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn codec_arbitrary_bytes(bytes in arbitrary_bytes(600)) {
        decode_all_ways(bytes, ContentHash::of(b""))?;
    }

    #[test]
    fn codec_mutated(which in any::<Index>(), edits in mutations()) {
        let objs = stored_objects();
        let (stored, hash) = &objs[which.index(objs.len())];
        decode_all_ways(mutated(stored, &edits), hash.clone())?;
    }
}

proptest! {
    #![proptest_config(config(CASES_SLOW))]

    /// Frames that expand past the limit (repeated frames, or one frame of
    /// many zeros) are refused without holding more than the limit.
    #[test]
    fn codec_bombs_are_refused(frames in 1usize..40, mib in 1usize..4) {
        prop_assume!(frames * mib > 1);
        let one = zeros_frame(mib << 20);
        let bomb: Vec<u8> = one.iter().copied().cycle().take(one.len() * frames).collect();
        let opened = decode_all_ways(bomb, ContentHash::of(b""))?;
        prop_assert!(!opened, "{} MiB accepted under a 1 MiB limit", frames * mib);
    }
}

// ---------------------------------------------------------------------------
// Sanity: the guard catches what it should, and the fixtures behind the
// mutation generators are what they claim.

#[test]
fn the_guard_catches_panics_hangs_and_huge_allocations() {
    let fails = |r: Result<(), TestCaseError>, what: &str| match r {
        Err(e) => assert!(e.to_string().contains(what), "{e}"),
        Ok(()) => panic!("the guard let {what} through"),
    };
    fails(guarded("p", || panic!("boom")), "panicked: boom");
    let hang = || std::thread::sleep(Duration::from_millis(500));
    fails(guarded_for(Duration::from_millis(20), "h", hang), "a hang");
    let huge = || drop(std::hint::black_box(vec![1u8; 65 << 20]));
    fails(guarded("a", huge), "bytes at once");
    guarded("fine", || drop(std::hint::black_box(vec![1u8; 1 << 20]))).unwrap();
}

#[test]
fn fixtures_parse_cleanly() {
    assert!(controls().len() >= 21);
    let known: Vec<_> = segments().iter().flat_map(known_records).collect();
    assert!(known.len() > 100, "only {} records to mutate", known.len());
    let spanning = known.iter().filter(|pieces| pieces.len() > 1).count();
    assert!(spanning > 0, "no record to mutate spans pages");
    for (tli, h) in history_fixtures() {
        TimelineHistory::parse(TimelineId::new(tli).unwrap(), &text(&h)).unwrap();
    }
    BackupLabel::parse(&text(&label_fixture())).unwrap();
    BackupHistoryFile::parse(&text(&backup_history_fixture())).unwrap();
    for v in pg_version_fixtures() {
        PgMajor::from_pg_version_file(&text(&v)).unwrap();
    }
    for n in wal_names() {
        WalFileName::parse(&n).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("postmaster.pid"), POSTMASTER_PID).unwrap();
    let listen = pitr::server::conn::read_postmaster_pid(dir.path()).unwrap();
    assert_eq!(listen.port, 5432);
    assert_eq!(listen.socket_dir.as_deref(), Some("/var/run/postgresql"));
    assert_eq!(kinds().len(), 9);
    for (stored, hash) in stored_objects() {
        let raw = codec::decompress(stored).unwrap();
        assert_eq!(&hash.recompute(&raw), hash);
    }
}
