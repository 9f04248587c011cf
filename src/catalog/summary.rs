//! What a catalog holds, summed up for people: the archived WAL of each
//! timeline as one range, with the segments missing inside it. Pure.

use serde::Serialize;

use crate::pg::{SegNo, SegmentName, TimelineId};

use super::Catalog;

/// Missing segments named per timeline, at most.
pub const MISSING_NAMED: usize = 100;

/// The archived WAL of one timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineWal {
    pub timeline: TimelineId,
    pub first_segment: String,
    pub last_segment: String,
    pub segments: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub missing: Vec<String>,
}

/// Archived WAL per timeline, in timeline order; at most `MISSING_NAMED`
/// missing segments named each. Works on the index's runs: what is
/// missing lies between two runs (or after a record whose name says
/// another segment than its place: the next one is counted from what
/// the name says, as when this read every record).
pub fn wal_by_timeline(catalog: &Catalog) -> Vec<TimelineWal> {
    let wal = &catalog.wal;
    let size = wal.segment_size();
    let mut out: Vec<TimelineWal> = Vec::new();
    for totals in wal.timeline_totals() {
        let tli = totals.timeline;
        let (Some(first), Some(last)) = (wal.at(tli, totals.first), wal.at(tli, totals.last))
        else {
            continue;
        };
        let mut missing = Vec::new();
        // Records after which the next is not simply the next number: the
        // last of each run but the last, and those with an odd name.
        let mut prev: Option<crate::catalog::SegRef<'_>> = None;
        for (lo, hi) in wal.runs(tli) {
            if missing.len() >= MISSING_NAMED {
                break;
            }
            if let Some(p) = prev {
                push_missing(&mut missing, wal.named_segno(&p), lo, tli, size);
            }
            for odd in wal.odd_named(tli, lo, hi) {
                if odd.segno < hi {
                    push_missing(
                        &mut missing,
                        wal.named_segno(&odd),
                        odd.segno.next(),
                        tli,
                        size,
                    );
                }
            }
            prev = wal.at(tli, hi);
        }
        out.push(TimelineWal {
            timeline: tli,
            first_segment: first.name(),
            last_segment: last.name(),
            segments: totals.segments,
            bytes: totals.raw_bytes,
            stored_bytes: totals.stored_bytes,
            missing,
        });
    }
    out
}

/// Names the segments after `prev` and before `next`, up to the limit.
fn push_missing(
    missing: &mut Vec<String>,
    prev: Option<SegNo>,
    next: SegNo,
    tli: TimelineId,
    size: crate::pg::WalSegmentSize,
) {
    let Some(prev) = prev else { return };
    let mut s = prev.next();
    while s < next && missing.len() < MISSING_NAMED {
        missing.push(SegmentName::new(tli, s, size).to_string());
        s = s.next();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::{RepoConfig, WalIndex, WalSegmentRecord};
    use crate::pg::control::{ControlFile, PgMajor};

    fn catalog() -> Catalog {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/pg15/pg_control"
        ))
        .unwrap();
        let c = ControlFile::decode(&bytes).unwrap();
        Catalog {
            config: RepoConfig {
                system_id: c.system_identifier,
                pg_major: PgMajor::new(15).unwrap(),
                wal_segment_size: c.wal_segment_size,
                fingerprint: c.fingerprint,
                created_at: chrono::Utc::now(),
                created_by: String::new(),
                encryption: None,
            },
            backups: Vec::new(),
            wal: WalIndex::new(c.wal_segment_size),
            histories: BTreeMap::new(),
            timings: Vec::new(),
            damaged: Vec::new(),
        }
    }

    #[test]
    fn one_range_per_timeline_with_the_holes_named() {
        let mut catalog = catalog();
        let size = catalog.config.wal_segment_size;
        let name = |tli: u32, seg: u64| {
            SegmentName::new(TimelineId::new(tli).unwrap(), SegNo::new(seg), size).to_string()
        };
        let mut records = Vec::new();
        for (tli, seg) in [(1, 1), (1, 2), (1, 5), (2, 5)] {
            let timeline = TimelineId::new(tli).unwrap();
            let segno = SegNo::new(seg);
            records.push(WalSegmentRecord {
                name: name(tli, seg),
                timeline,
                segno,
                raw_bytes: 16,
                stored_bytes: 1,
                sha256: String::new(),
                blake3: String::new(),
                pushed_at: chrono::Utc::now(),
                summary: None,
                scan_error: None,
                data_tag: None,
                tail: None,
            });
        }
        catalog.wal = WalIndex::from_records(size, records);
        let wal = wal_by_timeline(&catalog);
        assert_eq!(wal.len(), 2);
        assert_eq!(wal[0].segments, 3);
        assert_eq!(wal[0].bytes, 48);
        assert_eq!(wal[0].first_segment, name(1, 1));
        assert_eq!(wal[0].last_segment, name(1, 5));
        assert_eq!(wal[0].missing, [name(1, 3), name(1, 4)]);
        assert_eq!(wal[1].timeline, TimelineId::new(2).unwrap());
        assert_eq!(wal[1].segments, 1);
        assert!(wal[1].missing.is_empty());
    }
}
