//! What a catalog holds, summed up for people: the archived WAL of each
//! timeline as one range, with the segments missing inside it. Pure.

use serde::Serialize;

use crate::pg::{SegmentName, TimelineId, WalFileName};

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
/// missing segments named each.
pub fn wal_by_timeline(catalog: &Catalog) -> Vec<TimelineWal> {
    let mut out: Vec<TimelineWal> = Vec::new();
    let size = catalog.config.wal_segment_size;
    for ((tli, segno), rec) in &catalog.wal {
        match out.last_mut() {
            Some(t) if t.timeline == *tli => {
                let last = t.last_segment.clone();
                let prev = WalFileName::parse(&last).ok().and_then(|n| match n {
                    WalFileName::Segment(s) => s.segno(size).ok(),
                    _ => None,
                });
                if let Some(prev) = prev {
                    let mut s = prev.next();
                    while s < *segno && t.missing.len() < MISSING_NAMED {
                        t.missing.push(SegmentName::new(*tli, s, size).to_string());
                        s = s.next();
                    }
                }
                t.last_segment = rec.name.clone();
                t.segments += 1;
                t.bytes += rec.raw_bytes;
                t.stored_bytes += rec.stored_bytes;
            }
            _ => out.push(TimelineWal {
                timeline: *tli,
                first_segment: rec.name.clone(),
                last_segment: rec.name.clone(),
                segments: 1,
                bytes: rec.raw_bytes,
                stored_bytes: rec.stored_bytes,
                missing: Vec::new(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::{RepoConfig, WalSegmentRecord};
    use crate::pg::control::{ControlFile, PgMajor};
    use crate::pg::SegNo;

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
            },
            backups: Vec::new(),
            wal: BTreeMap::new(),
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
        for (tli, seg) in [(1, 1), (1, 2), (1, 5), (2, 5)] {
            let timeline = TimelineId::new(tli).unwrap();
            let segno = SegNo::new(seg);
            catalog.wal.insert(
                (timeline, segno),
                WalSegmentRecord {
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
                },
            );
        }
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
