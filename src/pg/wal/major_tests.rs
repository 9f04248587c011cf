//! The scanner checked on every major without a `pg_waldump` here (13, 14,
//! 16, 17, 18): real archived 1 MiB segments in `testdata/wal/pgNN/`, made by
//! `testdata/make-major-wal-fixtures.sh`, against an oracle the server wrote
//! itself (`oracle.txt`): each transaction's xid and commit timestamp
//! (`pg_xact_commit_timestamp`, to the microsecond; aborts between two clock
//! readings), the restore point's end LSN (`pg_create_restore_point`), the
//! checkpoint (`pg_control_checkpoint()`) and the switches (`pg_switch_wal`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::*;
use crate::pg::lsn::{Lsn, WalSegmentSize};
use crate::pg::walname::SegmentName;

const MAJORS: [u32; 5] = [13, 14, 16, 17, 18];

/// SizeOfXLogRecord: a switch record is a bare header.
const SWITCH_RECORD_LEN: u64 = 24;
/// SizeOfXLogShortPHD.
const SHORT_PAGE_HEADER: u64 = 24;

fn dir(major: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/wal/pg{major}"))
}

/// A transaction end the server reported, with the window its time must
/// lie in (one instant for commits: their commit timestamp).
#[derive(Debug, Clone, PartialEq)]
struct OracleXact {
    kind: XactKind,
    xid: u32,
    earliest: DateTime<Utc>,
    latest: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Oracle {
    major: u32,
    system_id: u64,
    seg_size: u64,
    xacts: Vec<OracleXact>,
    /// (name, LSN returned by pg_create_restore_point: the record's end).
    restore_points: Vec<(String, Lsn)>,
    /// (checkpoint LSN, redo LSN, timeline).
    checkpoints: Vec<(Lsn, Lsn, u32)>,
    /// LSNs returned by pg_switch_wal: the end of each switch record.
    switch_ends: Vec<Lsn>,
    segments: Vec<String>,
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .with_timezone(&Utc)
}

fn parse_oracle(text: &str) -> Oracle {
    let mut o = Oracle::default();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let w: Vec<&str> = line.split_whitespace().collect();
        let xact = |kind, times: &[&str]| OracleXact {
            kind,
            xid: w[1].parse().unwrap(),
            earliest: utc(times[0]),
            latest: utc(times[times.len() - 1]),
        };
        match (w[0], w.len()) {
            ("major", 2) => o.major = w[1].parse().unwrap(),
            ("server_version_num", 2) => {}
            ("system_identifier", 2) => o.system_id = w[1].parse().unwrap(),
            ("wal_segment_size", 2) => o.seg_size = w[1].parse().unwrap(),
            ("commit", 3) => o.xacts.push(xact(XactKind::Commit, &w[2..])),
            ("commit_prepared", 3) => o.xacts.push(xact(XactKind::CommitPrepared, &w[2..])),
            ("abort", 4) => o.xacts.push(xact(XactKind::Abort, &w[2..])),
            ("abort_prepared", 4) => o.xacts.push(xact(XactKind::AbortPrepared, &w[2..])),
            ("restore_point", 3) => o
                .restore_points
                .push((w[1].to_string(), w[2].parse().unwrap())),
            ("checkpoint", 4) => o.checkpoints.push((
                w[1].parse().unwrap(),
                w[2].parse().unwrap(),
                w[3].parse().unwrap(),
            )),
            ("switch", 2) => o.switch_ends.push(w[1].parse().unwrap()),
            ("segment", 2) => o.segments.push(w[1].to_string()),
            _ => panic!("unexpected oracle line: {line:?}"),
        }
    }
    o
}

/// The oracle and (name, scan) of every segment of one major, in order.
fn load(major: u32) -> (Oracle, Vec<(String, SegmentScan)>) {
    let d = dir(major);
    let text = std::fs::read_to_string(d.join("oracle.txt")).unwrap_or_else(|e| {
        panic!(
            "testdata/wal/pg{major}/oracle.txt: {e}: run scripts/pg-majors.sh and \
             testdata/make-major-wal-fixtures.sh as root"
        )
    });
    let o = parse_oracle(&text);
    assert_eq!(o.major, major);
    let mut on_disk: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".zst").map(str::to_string))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, o.segments, "pg{major}: segments on disk vs oracle");
    let size = WalSegmentSize::new(o.seg_size).unwrap();
    let scans = o
        .segments
        .iter()
        .map(|name| {
            let zst = std::fs::read(d.join(format!("{name}.zst"))).unwrap();
            let bytes = zstd::decode_all(&zst[..]).unwrap();
            let scan =
                scan_segment(&bytes, size).unwrap_or_else(|e| panic!("pg{major} {name}: {e}"));
            (name.clone(), scan)
        })
        .collect();
    (o, scans)
}

#[test]
fn headers_name_the_major_cluster_and_file() {
    for major in MAJORS {
        let (o, scans) = load(major);
        let size = WalSegmentSize::new(o.seg_size).unwrap();
        for (name, s) in &scans {
            let ctx = format!("pg{major} {name}");
            assert_eq!(s.header.pg_major(), Some(major), "{ctx}");
            assert_eq!(s.header.system_id, o.system_id, "{ctx}");
            assert_eq!(u64::from(s.header.seg_size), o.seg_size, "{ctx}");
            assert_eq!(s.header.xlog_blcksz, 8192, "{ctx}");
            let from_header =
                SegmentName::new(s.header.timeline, s.header.page_addr.segno(size), size);
            assert_eq!(from_header.to_string(), *name, "{ctx}");
        }
    }
}

#[test]
fn transaction_ends_match_the_server() {
    for major in MAJORS {
        let (o, scans) = load(major);
        let got: Vec<(&str, &XactEnd)> = scans
            .iter()
            .flat_map(|(name, s)| s.xact_ends.iter().map(move |x| (name.as_str(), x)))
            .collect();
        let got_ids: Vec<(XactKind, u32)> = got.iter().map(|(_, x)| (x.kind, x.xid)).collect();
        let want_ids: Vec<(XactKind, u32)> = o.xacts.iter().map(|x| (x.kind, x.xid)).collect();
        assert_eq!(
            got_ids, want_ids,
            "pg{major}: (kind, xid) of every transaction end, in WAL order"
        );
        for ((name, x), want) in got.iter().zip(&o.xacts) {
            let ctx = format!("pg{major} {name}: {x:?}");
            match want.kind {
                // pg_xact_commit_timestamp is the record's xact_time exactly.
                XactKind::Commit | XactKind::CommitPrepared => {
                    assert_eq!(x.time, want.earliest, "{ctx}")
                }
                XactKind::Abort | XactKind::AbortPrepared => {
                    assert!(
                        want.earliest <= x.time && x.time <= want.latest,
                        "{ctx}: {want:?}"
                    )
                }
            }
            assert!(x.end_lsn > x.lsn && x.end_lsn.as_u64() % 8 == 0, "{ctx}");
        }
        // Every kind is there, and the prepared ones carry their own xid.
        for kind in [
            XactKind::Commit,
            XactKind::Abort,
            XactKind::CommitPrepared,
            XactKind::AbortPrepared,
        ] {
            assert!(
                got.iter().any(|(_, x)| x.kind == kind),
                "pg{major}: no {kind:?}"
            );
        }
        assert!(got.iter().all(|(_, x)| x.xid != 0), "pg{major}");
        // WAL order is commit-time order in a single session.
        assert!(got.windows(2).all(|w| w[0].1.lsn < w[1].1.lsn), "pg{major}");
    }
}

#[test]
fn restore_point_checkpoint_and_switches_match_the_server() {
    for major in MAJORS {
        let (o, scans) = load(major);
        let size = WalSegmentSize::new(o.seg_size).unwrap();

        let rps: Vec<(String, Lsn)> = scans
            .iter()
            .flat_map(|(_, s)| &s.restore_points)
            .map(|r| (r.name.clone(), r.end_lsn))
            .collect();
        assert_eq!(
            rps, o.restore_points,
            "pg{major}: restore points (name, end LSN)"
        );
        // Its time (rp_time) lies between the transactions around it.
        let rp = scans
            .iter()
            .flat_map(|(_, s)| &s.restore_points)
            .next()
            .unwrap();
        let xacts: Vec<&XactEnd> = scans.iter().flat_map(|(_, s)| &s.xact_ends).collect();
        let before = xacts.iter().rev().find(|x| x.lsn < rp.lsn).unwrap();
        let after = xacts.iter().find(|x| x.lsn > rp.lsn).unwrap();
        assert!(
            before.time <= rp.time && rp.time <= after.time,
            "pg{major}: {rp:?}"
        );

        let cps: Vec<(Lsn, Lsn, u32)> = scans
            .iter()
            .flat_map(|(_, s)| &s.checkpoints)
            .map(|c| (c.lsn, c.redo, c.timeline.get()))
            .collect();
        assert_eq!(
            cps, o.checkpoints,
            "pg{major}: checkpoints (lsn, redo, tli)"
        );
        assert!(scans
            .iter()
            .flat_map(|(_, s)| &s.checkpoints)
            .all(|c| c.online));

        // pg_switch_wal returns the end of the switch record: 24 bytes after
        // its start, or 48 when a page header falls inside it.
        let switches: Vec<Lsn> = scans.iter().filter_map(|(_, s)| s.switch_lsn).collect();
        assert_eq!(
            switches.len(),
            o.switch_ends.len(),
            "pg{major}: {switches:?}"
        );
        for (start, end) in switches.iter().zip(&o.switch_ends) {
            let len = end.as_u64() - start.as_u64();
            assert!(
                len == SWITCH_RECORD_LEN || len == SWITCH_RECORD_LEN + SHORT_PAGE_HEADER,
                "pg{major}: switch at {start}, server said {end}"
            );
            assert_eq!(start.segno(size), Lsn::new(end.as_u64() - 1).segno(size));
        }
    }
}

#[test]
fn segments_chain_and_long_records_span_them() {
    for major in MAJORS {
        let (o, scans) = load(major);
        let (mut only_a_long_record, mut starts_mid_record) = (false, false);
        for (name, s) in &scans {
            let ctx = format!("pg{major} {name}");
            let seg_start = s.header.page_addr.as_u64();
            let seg_end = Lsn::new(seg_start + o.seg_size);
            // Archived segments are full: the WAL either switched or runs on.
            if s.switch_lsn.is_some() {
                assert_eq!(s.end_lsn, Some(seg_end), "{ctx}");
                assert!(!s.tail_incomplete, "{ctx}");
            } else {
                assert!(s.tail_incomplete, "{ctx}");
            }
            only_a_long_record |= s.records == 0 && s.tail_incomplete;
            starts_mid_record |= s.first_record.is_some_and(|f| f.as_u64() > seg_start + 40);
        }
        // The 1.5 MB logical message starts a segment and ends in the next:
        // one segment with no complete record, one starting mid-record.
        assert!(
            only_a_long_record,
            "pg{major}: a segment holding only a long record"
        );
        assert!(
            starts_mid_record,
            "pg{major}: a segment starting with a continuation"
        );
    }
}
