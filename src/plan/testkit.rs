//! Small catalogs for the planner's tests: 16 MiB segments, fixed times
//! (never the clock), and the same shape everywhere so that a test says
//! only what differs. By default segment `s` of timeline `t` holds one
//! commit, of xid `1000 * t + s` at `seg_secs(t, s)` seconds after
//! `base()`, 0x1000 bytes into the segment; a backup started in segment
//! `s` is consistent 0x100 bytes into it and finished 4 s before that
//! segment's commit. Test code: it panics on a malformed fixture.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::catalog::{
    BackupRecord, Catalog, Consistency, RepoConfig, SnapshotProvider, StartKind, WalIndex,
    WalSegmentRecord, WalSummary,
};
use crate::pg::control::{ControlFile, PgMajor};
use crate::pg::history::TimelineHistory;
use crate::pg::wal::{RestorePoint, XactEnd, XactKind};
use crate::pg::{Lsn, SegNo, SegmentName, TimelineId, WalSegmentSize};

pub const SEG: u64 = 16 << 20;

/// The exact transaction lists of a test catalog, as `recover::run`
/// reads them for an xid target: each segment's one transaction end (its
/// summary's `max_xact`).
pub fn xact_lists(c: &Catalog) -> crate::plan::XactLists {
    let mut l = crate::plan::XactLists::new();
    for r in c.wal.iter() {
        let list = r
            .entry()
            .summary
            .and_then(|s| s.max_xact)
            .into_iter()
            .collect();
        l.insert(r.timeline, r.segno, list);
    }
    l
}

pub fn size() -> WalSegmentSize {
    WalSegmentSize::new(SEG).unwrap()
}

/// 2026-11-25 12:00:00 UTC: every time in a test catalog is after it.
pub fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

/// `base()` plus `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    base() + Duration::seconds(secs)
}

pub fn tli(n: u32) -> TimelineId {
    TimelineId::new(n).unwrap()
}

/// The position `offset` bytes into segment `seg`.
pub fn lsn(seg: u64, offset: u64) -> Lsn {
    Lsn::new(seg * SEG + offset)
}

/// When segment `s` of timeline `t` commits by default: 10 s a segment,
/// each timeline 1000 s after its parent.
pub fn seg_secs(t: u32, s: u64) -> i64 {
    10 * s as i64 + 1000 * (i64::from(t) - 1)
}

/// The default xid committed in segment `s` of timeline `t`.
pub fn seg_xid(t: u32, s: u64) -> u32 {
    1000 * t + s as u32
}

/// The name of segment `s` as archived on timeline `t`.
pub fn seg_name(t: u32, s: u64) -> String {
    SegmentName::new(tli(t), SegNo::new(s), size()).to_string()
}

/// A repository of a PostgreSQL 15 cluster (the committed pg_control).
pub fn config() -> RepoConfig {
    let control = ControlFile::decode(include_bytes!("../../testdata/pg15/pg_control")).unwrap();
    RepoConfig {
        system_id: control.system_identifier,
        pg_major: PgMajor::new(15).unwrap(),
        wal_segment_size: size(),
        fingerprint: control.fingerprint.clone(),
        created_at: base(),
        created_by: "test".into(),
        encryption: None,
    }
}

/// Segment `s` of timeline `t` holding one transaction end.
pub fn record(t: u32, s: u64, xid: u32, secs: i64) -> WalSegmentRecord {
    let time = at(secs);
    let xact = XactEnd {
        lsn: lsn(s, 0x1000),
        end_lsn: lsn(s, 0x1040),
        kind: XactKind::Commit,
        xid,
        time,
    };
    WalSegmentRecord {
        name: seg_name(t, s),
        timeline: tli(t),
        segno: SegNo::new(s),
        raw_bytes: SEG,
        stored_bytes: SEG / 8,
        sha256: String::new(),
        blake3: format!("{:064x}", u64::from(t) << 32 | s),
        pushed_at: time,
        summary: Some(WalSummary {
            first_record: Some(lsn(s, 0x28)),
            end_lsn: Some(Lsn::new((s + 1) * SEG - 8)),
            records: 10,
            xact_count: 1,
            min_xact_time: Some(time),
            max_xact: Some(xact),
            restore_points: Vec::new(),
            switch_lsn: None,
            tail_incomplete: false,
            tail_seen: false,
            head_read: false,
            min_xid: Some(xid),
            max_xid: Some(xid),
            next_xid: None,
        }),
        scan_error: None,
        data_tag: None,
        tail: None,
    }
}

/// A catalog under construction (its WAL as records until `build`).
pub struct Kit {
    catalog: Catalog,
    wal: BTreeMap<(TimelineId, SegNo), WalSegmentRecord>,
}

impl Kit {
    pub fn new() -> Kit {
        Kit {
            catalog: Catalog {
                config: config(),
                backups: Vec::new(),
                wal: WalIndex::new(size()),
                histories: BTreeMap::new(),
                timings: Vec::new(),
                damaged: Vec::new(),
            },
            wal: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) one archived segment.
    pub fn record(mut self, r: WalSegmentRecord) -> Kit {
        self.wal.insert((r.timeline, r.segno), r);
        self
    }

    /// Segments `range` of timeline `t`, each with its default commit.
    pub fn segments(mut self, t: u32, range: RangeInclusive<u64>) -> Kit {
        for s in range {
            self = self.record(record(t, s, seg_xid(t, s), seg_secs(t, s)));
        }
        self
    }

    /// Removes segment `s` of timeline `t`: a gap in the archive.
    pub fn without(mut self, t: u32, s: u64) -> Kit {
        self.wal.remove(&(tli(t), SegNo::new(s)));
        self
    }

    /// Changes one archived segment in place.
    pub fn edit(mut self, t: u32, s: u64, f: impl FnOnce(&mut WalSegmentRecord)) -> Kit {
        let r = self
            .wal
            .get_mut(&(tli(t), SegNo::new(s)))
            .expect("edit: segment not in the fixture");
        f(r);
        self
    }

    /// A restore point `name` 0x2000 bytes into segment `s` of timeline `t`.
    pub fn restore_point(self, t: u32, s: u64, name: &str, secs: i64) -> Kit {
        self.edit(t, s, |r| {
            if let Some(sum) = r.summary.as_mut() {
                sum.restore_points.push(RestorePoint {
                    lsn: lsn(s, 0x2000),
                    end_lsn: lsn(s, 0x2040),
                    name: name.into(),
                    time: at(secs),
                });
            }
        })
    }

    /// Timeline `child`'s history file, as Postgres writes it
    /// (`parent\tswitchpoint\treason` lines).
    pub fn history(mut self, child: u32, text: &str) -> Kit {
        let h = TimelineHistory::parse(tli(child), text).unwrap();
        self.catalog.histories.insert(tli(child), h);
        self
    }

    /// Timeline `child` branching off `parent` at `switch`, whose history
    /// is the parent's plus that switch point.
    pub fn branch(self, child: u32, parent: u32, switch: Lsn) -> Kit {
        let mut text = String::new();
        if let Some(h) = self.catalog.histories.get(&tli(parent)) {
            for e in h.entries() {
                text.push_str(&format!("{}\t{}\t{}\n", e.parent, e.switchpoint, e.reason));
            }
        }
        text.push_str(&format!(
            "{parent}\t{switch}\tno recovery target specified\n"
        ));
        self.history(child, &text)
    }

    /// A backup of `stored_mb` MiB (four times that before compression)
    /// started in segment `s` of timeline `t`, with default times.
    pub fn backup(self, id: &str, t: u32, s: u64, stored_mb: u64) -> Kit {
        self.backup_at(id, t, s, seg_secs(t, s) - 4, stored_mb)
    }

    /// A backup as `backup`, finished at `at(stop_secs)`.
    pub fn backup_at(mut self, id: &str, t: u32, s: u64, stop_secs: i64, stored_mb: u64) -> Kit {
        let c = &self.catalog.config;
        let start_lsn = lsn(s, 0x28);
        let stop_lsn = lsn(s, 0x100);
        self.catalog.backups.push(BackupRecord {
            id: id.into(),
            label: String::new(),
            system_id: c.system_id,
            pg_major: c.pg_major,
            timeline: tli(t),
            start_lsn,
            checkpoint_lsn: start_lsn,
            stop_lsn,
            stop_timeline: tli(t),
            start_segment: seg_name(t, s),
            stop_segment: seg_name(t, s),
            start_time: at(stop_secs - 1),
            stop_time: at(stop_secs),
            fingerprint: c.fingerprint.clone(),
            files: 990,
            raw_bytes: (stored_mb * 4) << 20,
            stored_bytes: stored_mb << 20,
            pitr_version: String::new(),
            arch: None,
            start: Default::default(),
        });
        self
    }

    /// A start point as `backup` (in segment `s` of timeline `t`, `raw_mb`
    /// MiB of data directory), of kind `start`, with `stored_mb` MiB in
    /// its own objects.
    pub fn start_point(
        mut self,
        id: &str,
        start: StartKind,
        t: u32,
        s: u64,
        raw_mb: u64,
        stored_mb: u64,
    ) -> Kit {
        self = self.backup(id, t, s, stored_mb);
        let b = self.catalog.backups.last_mut().unwrap();
        b.raw_bytes = raw_mb << 20;
        b.start = start;
        self
    }

    /// An incremental on `parent` in segment `s`, `changed_mb` MiB changed,
    /// restoring a `raw_mb` MiB data directory.
    pub fn incremental(
        self,
        id: &str,
        parent: &str,
        t: u32,
        s: u64,
        raw_mb: u64,
        changed_mb: u64,
    ) -> Kit {
        let start = StartKind::Incremental {
            parent: parent.into(),
            changed_bytes: changed_mb << 20,
        };
        self.start_point(id, start, t, s, raw_mb, changed_mb / 4)
    }

    /// A snapshot by `provider` in segment `s`.
    pub fn snapshot(
        self,
        id: &str,
        provider: SnapshotProvider,
        consistency: Consistency,
        t: u32,
        s: u64,
        raw_mb: u64,
    ) -> Kit {
        let start = StartKind::Snapshot {
            provider,
            handle: format!("/snapshots/{id}"),
            consistency,
            commands: None,
            tablespaces: Vec::new(),
        };
        self.start_point(id, start, t, s, raw_mb, 0)
    }

    pub fn build(self) -> Catalog {
        let mut c = self.catalog;
        c.wal = WalIndex::from_records(c.config.wal_segment_size, self.wal.into_values());
        c
    }
}
