//! The scanner checked against `pg_waldump` as the oracle: real archived
//! PostgreSQL 15 segments (1 MiB) in `testdata/wal/pg15/`, made by
//! `testdata/make-wal-fixtures.sh`, each with the filtered `pg_waldump`
//! output it must agree with (record count, first and last record, every
//! transaction end, restore point, checkpoint and switch). Also: corrupted
//! copies of them end the scan cleanly and never panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::pg::lsn::{Lsn, WalSegmentSize};

const SEG: u64 = 1 << 20;

fn seg_size() -> WalSegmentSize {
    WalSegmentSize::new(SEG).unwrap()
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/wal/pg15")
}

type Fixture = (String, Vec<u8>, String);

/// (segment name, decompressed bytes, oracle text), sorted by name; read once.
fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(load_fixtures)
}

fn load_fixtures() -> Vec<Fixture> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("testdata/wal/pg15 is missing: run testdata/make-wal-fixtures.sh as root")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".zst").map(str::to_string))
        .collect();
    names.sort();
    assert!(
        names.len() >= 3,
        "expected at least 3 WAL fixtures, found {names:?}"
    );
    names
        .into_iter()
        .map(|name| {
            let dir = fixture_dir();
            let zst = std::fs::read(dir.join(format!("{name}.zst"))).unwrap();
            let bytes = zstd::decode_all(&zst[..]).unwrap();
            let oracle = std::fs::read_to_string(dir.join(format!("{name}.waldump.txt"))).unwrap();
            (name, bytes, oracle)
        })
        .collect()
}

/// What the oracle file says about one segment.
#[derive(Debug, Default)]
struct Oracle {
    count: u64,
    first: Option<Lsn>,
    /// (start, xl_tot_len, is_switch) of the last record.
    last: Option<(Lsn, u64, bool)>,
    xact_ends: Vec<(Lsn, XactKind, u32, DateTime<Utc>)>,
    restore_points: Vec<(Lsn, String)>,
    checkpoints: Vec<(Lsn, Lsn, u32, bool, u64)>,
    switch: Option<Lsn>,
}

/// The text after `key` up to the next `,` (pg_waldump's field layout).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line}"))
        + key.len();
    let rest = &line[at..];
    rest[..rest.find(',').unwrap_or(rest.len())].trim()
}

/// "2026-11-25 14:28:41.490347 UTC" (pg_waldump with TZ=UTC).
fn waldump_time(s: &str) -> DateTime<Utc> {
    let s = s.trim();
    let s = s
        .strip_suffix("UTC")
        .unwrap_or_else(|| panic!("time not in UTC: {s:?}"));
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .and_utc()
}

fn parse_oracle(text: &str) -> Oracle {
    let mut o = Oracle::default();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("COUNT ") {
            o.count = n.trim().parse().unwrap();
            continue;
        }
        if let Some(rec) = line.strip_prefix("FIRST ") {
            o.first = Some(field(rec, "lsn: ").parse().unwrap());
            continue;
        }
        if let Some(rec) = line.strip_prefix("LAST ") {
            let tot = field(rec, "len (rec/tot): ")
                .split('/')
                .nth(1)
                .unwrap()
                .trim();
            o.last = Some((
                field(rec, "lsn: ").parse().unwrap(),
                tot.parse().unwrap(),
                rec.contains("desc: SWITCH"),
            ));
            continue;
        }
        let rmgr = line
            .strip_prefix("rmgr: ")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let lsn: Lsn = field(line, "lsn: ").parse().unwrap();
        let desc = &line[line.find("desc: ").unwrap() + 6..];
        let (op, rest) = desc.split_once(' ').unwrap_or((desc, ""));
        match (rmgr, op) {
            ("Transaction", _) => {
                let kind = match op {
                    "COMMIT" => XactKind::Commit,
                    "ABORT" => XactKind::Abort,
                    "COMMIT_PREPARED" => XactKind::CommitPrepared,
                    "ABORT_PREPARED" => XactKind::AbortPrepared,
                    other => panic!("unexpected xact record {other}"),
                };
                let until_semicolon = rest.split(';').next().unwrap();
                let (xid, time) = match kind {
                    XactKind::Commit | XactKind::Abort => {
                        (field(line, "tx: ").parse().unwrap(), until_semicolon)
                    }
                    _ => {
                        let (xid, time) = until_semicolon.split_once(": ").unwrap();
                        (xid.parse().unwrap(), time)
                    }
                };
                o.xact_ends.push((lsn, kind, xid, waldump_time(time)));
            }
            ("XLOG", "RESTORE_POINT") => o.restore_points.push((lsn, rest.to_string())),
            ("XLOG", "CHECKPOINT_SHUTDOWN" | "CHECKPOINT_ONLINE") => {
                let redo = rest
                    .strip_prefix("redo ")
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap();
                let rest_commas = rest.replace(';', ",");
                let tli = field(&rest_commas, "tli ").parse().unwrap();
                // "xid EPOCH:XID": pg_waldump's form of nextXid.
                let (epoch, xid) = field(&rest_commas, "xid ").split_once(':').unwrap();
                let next_xid = (epoch.parse::<u64>().unwrap() << 32) | xid.parse::<u64>().unwrap();
                o.checkpoints.push((
                    lsn,
                    redo.parse().unwrap(),
                    tli,
                    op == "CHECKPOINT_ONLINE",
                    next_xid,
                ));
            }
            ("XLOG", "SWITCH") => o.switch = Some(lsn),
            _ => panic!("unexpected oracle line: {line}"),
        }
    }
    o
}

#[test]
fn fixtures_match_pg_waldump() {
    let mut seen_kinds = std::collections::BTreeSet::new();
    let (mut no_records, mut starts_mid_record, mut checkpoint_kinds) = (false, false, [false; 2]);
    for (name, bytes, oracle) in fixtures() {
        let o = parse_oracle(oracle);
        let scan = scan_segment(bytes, seg_size()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seg_start = scan.header.page_addr;
        assert_eq!(scan.header.pg_major(), Some(15), "{name}");
        assert_eq!(scan.header.seg_size as u64, SEG, "{name}");
        assert_eq!(
            crate::pg::walname::SegmentName::new(
                scan.header.timeline,
                seg_start.segno(seg_size()),
                seg_size()
            )
            .to_string(),
            *name,
            "{name}: the header's address and timeline give the file name"
        );

        assert_eq!(scan.records, o.count, "{name}: record count");
        assert_eq!(scan.first_record, o.first, "{name}: first record");
        assert_eq!(scan.last_record, o.last.map(|l| l.0), "{name}: last record");

        let got: Vec<_> = scan
            .xact_ends
            .iter()
            .map(|x| (x.lsn, x.kind, x.xid, x.time))
            .collect();
        assert_eq!(got, o.xact_ends, "{name}: transaction ends");
        let got: Vec<_> = scan
            .restore_points
            .iter()
            .map(|r| (r.lsn, r.name.clone()))
            .collect();
        assert_eq!(got, o.restore_points, "{name}: restore points");
        let got: Vec<_> = scan
            .checkpoints
            .iter()
            .map(|c| (c.lsn, c.redo, c.timeline.get(), c.online, c.next_xid))
            .collect();
        assert_eq!(got, o.checkpoints, "{name}: checkpoints");
        assert_eq!(scan.switch_lsn, o.switch, "{name}: switch");

        // Ends: the next record's start, or the segment's end after a switch.
        let seg_end = Lsn::new(seg_start.as_u64() + SEG);
        for x in &scan.xact_ends {
            assert!(
                x.end_lsn > x.lsn && x.end_lsn.as_u64() % 8 == 0,
                "{name}: {x:?}"
            );
        }
        if let Some((last, tot, is_switch)) = o.last {
            let end = scan.end_lsn.unwrap();
            if is_switch {
                assert_eq!(end, seg_end, "{name}: end after a switch");
            } else if last.as_u64() % 8192 + tot <= 8192 {
                assert_eq!(
                    end.as_u64(),
                    last.as_u64() + tot.next_multiple_of(8),
                    "{name}: end"
                );
            }
        } else {
            assert_eq!(scan.end_lsn, None, "{name}");
        }
        // Archived segments are full: WAL either switched, or runs on.
        assert_eq!(
            scan.tail_incomplete,
            scan.switch_lsn.is_none() && scan.end_lsn != Some(seg_end),
            "{name}: tail_incomplete"
        );

        no_records |= scan.records == 0;
        starts_mid_record |= scan
            .first_record
            .is_some_and(|f| f.as_u64() > seg_start.as_u64() + 40);
        seen_kinds.extend(scan.xact_ends.iter().map(|x| format!("{:?}", x.kind)));
        for c in &scan.checkpoints {
            checkpoint_kinds[usize::from(c.online)] = true;
        }
        // Times are real: within a day of each other in one fixture run.
        for x in &scan.xact_ends {
            assert!(
                (x.time - scan.xact_ends[0].time).num_hours().abs() < 24,
                "{name}: {x:?}"
            );
        }
    }
    // The fixtures exercise what they are meant to.
    assert_eq!(
        seen_kinds.len(),
        4,
        "all four xact-end kinds: {seen_kinds:?}"
    );
    assert!(no_records, "a segment inside one long record");
    assert!(starts_mid_record, "a segment starting with a continuation");
    assert_eq!(
        checkpoint_kinds,
        [true, true],
        "shutdown and online checkpoints"
    );
}

#[test]
fn restore_points_and_prepared_xids_are_found() {
    let all: Vec<SegmentScan> = fixtures()
        .iter()
        .map(|(_, b, _)| scan_segment(b, seg_size()).unwrap())
        .collect();
    let names: Vec<&str> = all
        .iter()
        .flat_map(|s| s.restore_points.iter().map(|r| r.name.as_str()))
        .collect();
    assert_eq!(names, ["rp_one", "rp_two"]);
    // COMMIT_PREPARED/ABORT_PREPARED carry xl_xid 0: the xid must be the
    // prepared transaction's own.
    for x in all.iter().flat_map(|s| &s.xact_ends) {
        assert_ne!(x.xid, 0, "{x:?}");
    }
    // Restore point times come from rp_time, close to the commits around them.
    let rp = &all.iter().flat_map(|s| &s.restore_points).next().unwrap();
    let commit = all
        .iter()
        .flat_map(|s| &s.xact_ends)
        .find(|x| x.lsn < rp.lsn)
        .unwrap();
    assert!((rp.time - commit.time).num_seconds().abs() < 60);
}

#[test]
fn wrong_size_is_an_error() {
    let (_, bytes, _) = &fixtures()[0];
    let err = scan_segment(&bytes[..bytes.len() - 1], seg_size()).unwrap_err();
    assert_eq!(
        err,
        WalScanError::WrongSize {
            actual: SEG - 1,
            expected: SEG
        }
    );
    assert!(
        err.to_string().starts_with("wal segment is 1048575 bytes"),
        "{err}"
    );
    // A 1 MiB segment read as if segments were 2 MiB.
    let mut doubled = bytes.clone();
    doubled.extend_from_slice(bytes);
    let err = scan_segment(&doubled, WalSegmentSize::new(2 * SEG).unwrap()).unwrap_err();
    assert!(matches!(err, WalScanError::BadLongHeader { .. }), "{err}");
}

#[test]
fn flipped_byte_ends_the_scan_at_that_record() {
    for (name, bytes, _) in fixtures() {
        let clean = scan_segment(bytes, seg_size()).unwrap();
        let Some(victim) = clean.xact_ends.get(clean.xact_ends.len() / 2) else {
            continue;
        };
        let off = (victim.lsn.as_u64() - clean.header.page_addr.as_u64()) as usize + 26;
        let mut bad = bytes.clone();
        bad[off] ^= 0x40;
        let scan = scan_segment(&bad, seg_size()).unwrap();
        assert!(
            scan.last_record < Some(victim.lsn),
            "{name}: {:?}",
            scan.last_record
        );
        assert!(scan.records < clean.records, "{name}");
        assert!(
            !scan.tail_incomplete,
            "{name}: corruption is the end of WAL"
        );
        assert!(scan.xact_ends.iter().all(|x| x.lsn < victim.lsn), "{name}");
        assert_eq!(scan.switch_lsn, None, "{name}");
        assert_eq!(
            &clean.xact_ends[..scan.xact_ends.len()],
            &scan.xact_ends[..],
            "{name}"
        );
    }
}

#[test]
fn recycled_tail_ends_the_scan_cleanly() {
    // Page 40 onwards carries an older segment's addresses, as in a recycled
    // segment that was only partly rewritten.
    let (name, bytes, _) = fixtures()
        .iter()
        .find(|(_, b, _)| {
            let s = scan_segment(b, seg_size()).unwrap();
            s.records > 100 && s.switch_lsn.is_none()
        })
        .unwrap();
    let clean = scan_segment(bytes, seg_size()).unwrap();
    let mut bad = bytes.clone();
    for page in 40..(SEG as usize / 8192) {
        let at = page * 8192 + 8;
        let addr = u64::from_le_bytes(bad[at..at + 8].try_into().unwrap()) - 4 * SEG;
        bad[at..at + 8].copy_from_slice(&addr.to_le_bytes());
    }
    let scan = scan_segment(&bad, seg_size()).unwrap();
    let cut = clean.header.page_addr.as_u64() + 40 * 8192;
    assert!(scan.records > 0 && scan.records < clean.records, "{name}");
    assert!(scan.end_lsn.unwrap().as_u64() <= cut, "{name}");
    assert!(!scan.tail_incomplete, "{name}");
    let expected: Vec<_> = clean
        .xact_ends
        .iter()
        .filter(|x| x.end_lsn.as_u64() <= cut)
        .collect();
    assert_eq!(
        scan.xact_ends.iter().collect::<Vec<_>>(),
        expected,
        "{name}"
    );
}

/// xorshift64*: cheap deterministic noise without a dependency.
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random bytes, with and without a plausible first page header and
    /// plausible page headers on every page, never panic.
    #[test]
    fn random_segments_never_panic(seed in any::<u64>(), headers in 0u8..3) {
        let mut buf = noise(seed, SEG as usize);
        let real = &fixtures()[0].1;
        if headers >= 1 {
            buf[..40].copy_from_slice(&real[..40]);
        }
        if headers == 2 {
            // Valid headers on every page (random flags and xlp_rem_len kept),
            // so the record paths see random records.
            for page in 1..(SEG as usize / 8192) {
                let at = page * 8192;
                buf[at..at + 2].copy_from_slice(&real[..2]);
                buf[at + 2] &= 0x0D;
                buf[at + 3] = 0;
                buf[at + 4..at + 16].copy_from_slice(&real[at + 4..at + 16]);
            }
        }
        let _ = scan_segment(&buf, seg_size());
    }

    /// A real segment with a few bytes changed never panics, and whatever it
    /// still reports is a prefix of the clean scan or an error.
    #[test]
    fn mutated_segments_never_panic(
        which in 0usize..16,
        edits in proptest::collection::vec((0usize..(1 << 20), any::<u8>()), 1..12),
    ) {
        let bytes = &fixtures()[which % fixtures().len()].1;
        let clean = scan_segment(bytes, seg_size()).unwrap();
        let mut buf = bytes.clone();
        for (at, v) in edits {
            buf[at] = v;
        }
        if let Ok(scan) = scan_segment(&buf, seg_size()) {
            // Changed bytes make records disappear, never appear (CRC), except
            // that a changed page header may move where the first record is.
            if scan.first_record == clean.first_record {
                prop_assert!(scan.records <= clean.records);
                let n = scan.xact_ends.len().min(clean.xact_ends.len());
                prop_assert_eq!(&scan.xact_ends[..n], &clean.xact_ends[..n]);
            }
        }
    }

    /// A truncated or over-long buffer is a size error, never a panic.
    #[test]
    fn any_other_length_is_rejected(len in 0usize..(2 << 20)) {
        prop_assume!(len != SEG as usize);
        let buf = vec![0u8; len];
        let is_wrong_size = matches!(scan_segment(&buf, seg_size()), Err(WalScanError::WrongSize { .. }));
        prop_assert!(is_wrong_size);
    }
}

/// The record running from one fixture segment into the next, read by the
/// scanner from the first segment alone, against the same record gathered
/// whole from the two segments concatenated (page headers skipped as
/// Postgres lays them out, CRC checked) and decoded like any record.
#[test]
fn tails_agree_with_the_record_read_across_two_segments() {
    use super::page::WalFormat;
    use super::record::{crc_ok, main_data, RecordHeader};
    use super::rmgr::{interpret, Interesting, RecordInfo};
    const BL: usize = 8192;
    let all = fixtures();
    let (mut compared, mut xacts) = (0, 0);
    for pair in all.windows(2) {
        let ((name, a, _), (_, b, _)) = (&pair[0], &pair[1]);
        let scan = scan_segment(a, seg_size()).unwrap();
        let next = scan_segment(b, seg_size()).unwrap();
        let seg_start = scan.header.page_addr.as_u64();
        if next.header.page_addr.as_u64() != seg_start + SEG || !scan.tail_incomplete {
            continue;
        }
        let Some(end) = scan.end_lsn else { continue };
        let both = [&a[..], &b[..]].concat();
        let mut pos = (end.as_u64() - seg_start) as usize;
        if pos.is_multiple_of(BL) {
            pos += if pos == 0 { 40 } else { 24 };
        }
        let tot = u32::from_le_bytes(both[pos..pos + 4].try_into().unwrap()) as usize;
        let mut whole = both[pos..(pos / BL + 1) * BL].to_vec();
        let mut page = (pos / BL + 1) * BL;
        let rec_end = loop {
            if page >= both.len() {
                break None; // longer than the next segment too
            }
            let hdr = if (page as u64).is_multiple_of(SEG) {
                40
            } else {
                24
            };
            let take = (tot - whole.len()).min(BL - hdr);
            whole.extend_from_slice(&both[page + hdr..page + hdr + take]);
            if whole.len() == tot {
                break Some(seg_start + (page + hdr + take.next_multiple_of(8)) as u64);
            }
            page += BL;
        };
        let Some(rec_end) = rec_end else { continue };
        assert!(crc_ok(&whole), "{name}: the tail record is whole");
        let h = RecordHeader::read(&whole).unwrap();
        let fmt = WalFormat::for_magic(scan.header.magic).unwrap();
        let main = main_data(&whole, fmt).unwrap();
        let info = RecordInfo {
            lsn: Lsn::new(seg_start + pos as u64),
            end_lsn: Lsn::new(rec_end),
            rmid: h.rmid,
            info: h.info,
            xid: h.xid,
        };
        let header_here = pos + 24 <= SEG as usize;
        let joined = match (&scan.tail, &next.continuation) {
            (Some(t), Some(c)) => Some(super::join(t, c, scan.header.magic)),
            _ => None,
        };
        match interpret(info, &whole[main], fmt) {
            Interesting::Xact(x) => {
                xacts += 1;
                assert!(!scan.tail_seen, "{name}");
                assert_eq!(joined, Some(Ok(super::Crossing::Xact(x))), "{name}");
            }
            Interesting::RestorePoint(p) => {
                assert_eq!(joined, Some(Ok(super::Crossing::RestorePoint(p))), "{name}");
            }
            _ => {
                assert_eq!(scan.tail_seen, header_here, "{name}: rmid {}", h.rmid);
                if !header_here {
                    assert_eq!(joined, Some(Ok(super::Crossing::Other)), "{name}");
                }
            }
        }
        compared += 1;
    }
    eprintln!("tails compared: {compared}, transaction ends among them: {xacts}");
    assert!(
        compared >= 1,
        "no fixture pair has a record across the boundary"
    );
}

/// Records placed across segment ends on purpose (a commit, an abort, a
/// commit of a prepared transaction and a restore point, starting 40, 32,
/// 24, 16 or 8 bytes before the end, so that the header or the timestamp
/// lies in the next segment): neither scan alone lists the record; the
/// beginning one scan keeps and the rest the other gives join into exactly
/// the record pg_waldump prints, ending where the next segment's first
/// record starts.
#[test]
fn records_placed_across_segment_ends_join_as_pg_waldump_reads_them() {
    use super::crossing::fixtures::cases;
    use super::{join, Crossing};
    let cases = cases();
    assert_eq!(cases.len(), 7, "crossing.txt lists seven cases");
    for c in &cases {
        let name = &c.case;
        let a = scan_segment(&c.first.1, seg_size()).unwrap();
        let b = scan_segment(&c.next.1, seg_size()).unwrap();
        let o = parse_oracle(&c.waldump);
        let lsn: Lsn = field(&c.waldump, "lsn: ").parse().unwrap();
        assert!(a.tail_incomplete, "{name}");
        assert!(!a.xact_ends.iter().any(|x| x.lsn == lsn), "{name}");
        assert!(!b.xact_ends.iter().any(|x| x.lsn == lsn), "{name}");
        let tail = a
            .tail
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no tail kept"));
        assert_eq!(tail.lsn, lsn, "{name}");
        let cont = b
            .continuation
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no continuation"));
        assert_eq!(
            Some(cont.end_lsn),
            b.first_record,
            "{name}: the next record starts at its end"
        );
        match join(tail, cont, a.header.magic) {
            Ok(Crossing::Xact(x)) => {
                assert!(!a.tail_seen, "{name}");
                assert_eq!(vec![(x.lsn, x.kind, x.xid, x.time)], o.xact_ends, "{name}");
            }
            Ok(Crossing::RestorePoint(p)) => {
                assert!(a.tail_seen, "{name}: no transaction end");
                assert_eq!(vec![(p.lsn, p.name)], o.restore_points, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
