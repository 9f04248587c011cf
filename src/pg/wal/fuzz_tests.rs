//! Fuzz targets for the crate-private parts of the WAL reader, which
//! `tests/fuzz_parsers.rs` reaches only through `scan_segment` and valid
//! CRCs: a page header against the segment's first one
//! (`PageHeader::validate`), a record's fragment headers (`main_data`) and
//! the resource managers' main data (`interpret`), for every major's
//! format. Arbitrary bytes and real records with edits; each call runs on a
//! worker thread with a deadline. See docs/fuzzing.md.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::page::{LongPageHeader, PageHeader, WalFormat, LONG_HEADER_SIZE};
use super::record::tests::{main_only, record};
use super::record::{main_data, RecordHeader, RECORD_HEADER_SIZE};
use super::rmgr::{interpret, RecordInfo};
use crate::pg::lsn::Lsn;

/// Runs `f` on a worker thread; a panic or no answer within 5 s fails the
/// case.
fn guarded<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, TestCaseError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(r) => Ok(r),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(TestCaseError::fail("no answer within 5 s (a hang)"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            Err(TestCaseError::fail("panicked"))
        }
    }
}

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

fn format() -> impl Strategy<Value = WalFormat> {
    (12u32..=18).prop_map(|major| WalFormat { major })
}

/// Fragment ids and header bytes that mean something to DecodeXLogRecord:
/// block ids 0–32 with their fork flags, origin, top-level xid and the two
/// main-data ids, or any byte.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop::sample::select(vec![0x00u8, 0x10, 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xFF]);
    prop_oneof![
        3 => (0u8..=33, flags, prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(id, f, rest)| [vec![id, f], rest].concat()),
        1 => (prop::sample::select(vec![252u8, 253, 254, 255]), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(id, rest)| [vec![id], rest].concat()),
        1 => prop::collection::vec(any::<u8>(), 1..8),
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn page_header_validate_never_panics(
        page in prop::collection::vec(any::<u8>(), 0..64),
        real_prefix in 0usize..=LONG_HEADER_SIZE,
        latest in any::<u32>(),
    ) {
        // A long header like the pg15 fixtures', shared by the page when
        // `real_prefix` says so.
        let mut first = vec![0u8; LONG_HEADER_SIZE];
        first[..2].copy_from_slice(&0xD110u16.to_le_bytes());
        first[2..4].copy_from_slice(&2u16.to_le_bytes());
        first[4..8].copy_from_slice(&1u32.to_le_bytes());
        first[8..16].copy_from_slice(&(6u64 << 20).to_le_bytes());
        first[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
        first[36..40].copy_from_slice(&8192u32.to_le_bytes());
        let mut page = page;
        let n = real_prefix.min(page.len());
        page[..n].copy_from_slice(&first[..n]);
        let first = LongPageHeader::parse(&first).unwrap();
        guarded(move || {
            let mut tli = latest;
            PageHeader::validate(&page, 6 << 20, &first, &mut tli).map(|h| h.size())
        })?;
    }

    #[test]
    fn main_data_is_inside_the_record(
        fmt in format(),
        fragments in prop::collection::vec(fragment(), 0..6),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let body = [fragments.concat(), tail].concat();
        let rec = record(10, 0, 1, 0, &body);
        let len = rec.len();
        if let Some(r) = guarded(move || main_data(&rec, fmt))? {
            prop_assert!(RECORD_HEADER_SIZE <= r.start && r.start <= r.end && r.end == len);
        }
    }

    #[test]
    fn records_with_edits_decode_or_are_refused(
        fmt in format(),
        main in prop::collection::vec(any::<u8>(), 0..300),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut rec = record(1, 0, 7, 0, &main_only(&main));
        for (at, v) in edits {
            let i = at.index(rec.len());
            rec[i] = v;
        }
        guarded(move || {
            let h = RecordHeader::read(&rec)?;
            let _ = h.is_valid(0x1000, None, fmt);
            main_data(&rec, fmt)
        })?;
    }

    /// Every resource manager and info byte the scanner interprets, over
    /// arbitrary main data and over xact records with arbitrary xinfo and
    /// counts.
    #[test]
    fn interpret_never_panics(
        fmt in format(),
        rmid in prop_oneof![Just(0u8), Just(1u8), any::<u8>()],
        info in any::<u8>(),
        xid in any::<u32>(),
        main in prop::collection::vec(any::<u8>(), 0..120),
        xinfo in any::<u32>(),
        counts in prop::collection::vec(prop_oneof![any::<i32>(), -2i32..40], 0..6),
    ) {
        let info_rec = RecordInfo {
            lsn: Lsn::new(0x100_0000),
            end_lsn: Lsn::new(0x100_0040),
            rmid,
            info,
            xid,
        };
        let mut xact = 0i64.to_le_bytes().to_vec();
        xact.extend_from_slice(&xinfo.to_le_bytes());
        for c in counts {
            xact.extend_from_slice(&c.to_le_bytes());
            xact.extend_from_slice(&main[..main.len().min(40)]);
        }
        guarded(move || {
            let _ = interpret(info_rec, &main, fmt);
            interpret(info_rec, &xact, fmt)
        })?;
    }
}
