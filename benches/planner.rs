//! Planner and WAL scanner benchmark (`cargo bench --bench planner`; run
//! by bench/run.sh). Prints a markdown table; timings only, no assertions.
//!
//! 1. Planning over a synthetic catalog: 1,000,000 WAL segments, 10,000
//!    backups, 50 timelines (each branching off the previous), a time
//!    target near the end of the newest timeline. Reports build time,
//!    planning time (median of 5), the two computations of `pitr info`
//!    (`catalog::summary::wal_by_timeline`, `plan::restorable_windows`,
//!    median of 5 each), the memory the catalog holds (resident set
//!    before and after building it, per segment) and the process's peak
//!    RSS.
//! 2. Scanner throughput on real segments: every file in
//!    $PITR_BENCH_WAL_DIR (16 MiB segments from pgbench), MB/s.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pitr::catalog::{
    BackupRecord, Catalog, RepoConfig, WalIndexBuilder, WalSegmentRecord, WalSummary,
};
use pitr::pg::control::{ControlFile, PgMajor};
use pitr::pg::history::TimelineHistory;
use pitr::pg::wal::{scan_segment, XactEnd, XactKind};
use pitr::pg::{Lsn, SegNo, SegmentName, TimelineId, WalSegmentSize};
use pitr::plan::{cost::CostModel, plan, RecoveryTarget, TargetSpec};

const SEG: u64 = 16 << 20;
const SEGMENTS: u64 = 1_000_000;
const BACKUPS: u64 = 10_000;
const TIMELINES: u64 = 50;

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn synthetic() -> Catalog {
    let size = WalSegmentSize::new(SEG).unwrap();
    let control = ControlFile::decode(include_bytes!("../testdata/pg15/pg_control")).unwrap();
    let config = RepoConfig {
        system_id: control.system_identifier,
        pg_major: PgMajor::new(15).unwrap(),
        wal_segment_size: size,
        fingerprint: control.fingerprint.clone(),
        created_at: base(),
        created_by: "bench".into(),
        encryption: None,
    };
    // Timeline t (1-based) covers segments [(t-1)*per, t*per + overlap);
    // timeline t+1 branches off t inside segment t*per.
    let per = SEGMENTS / TIMELINES;
    // Records go into the index one at a time, as `Repo::load_catalog`
    // adds them chunk by chunk: the records themselves are never all held.
    let mut wal = WalIndexBuilder::new(size);
    wal.reserve(SEGMENTS as usize + TIMELINES as usize);
    let mut histories = BTreeMap::new();
    let mut text = String::new();
    for t in 1..=TIMELINES {
        let tli = TimelineId::new(t as u32).unwrap();
        if t > 1 {
            text.push_str(&format!(
                "{}\t{}\tbench\n",
                t - 1,
                Lsn::new((t - 1) * per * SEG + 0x8000)
            ));
            histories.insert(tli, TimelineHistory::parse(tli, &text).unwrap());
        }
        let first = (t - 1) * per;
        let last = if t == TIMELINES {
            SEGMENTS
        } else {
            t * per + 1
        };
        for s in first..last {
            let time = base() + Duration::seconds(s as i64);
            let segno = SegNo::new(s);
            let rec = WalSegmentRecord {
                name: SegmentName::new(tli, segno, size).to_string(),
                timeline: tli,
                segno,
                raw_bytes: SEG,
                stored_bytes: SEG / 6,
                sha256: format!("{s:064x}"),
                blake3: String::new(),
                pushed_at: time,
                summary: Some(WalSummary {
                    first_record: Some(Lsn::new(s * SEG + 0x28)),
                    end_lsn: Some(Lsn::new((s + 1) * SEG - 8)),
                    records: 100_000,
                    xact_count: 20_000,
                    min_xact_time: Some(time),
                    max_xact: Some(XactEnd {
                        lsn: Lsn::new(s * SEG + 0x1000),
                        end_lsn: Lsn::new(s * SEG + 0x1040),
                        kind: XactKind::Commit,
                        xid: s as u32,
                        time,
                    }),
                    restore_points: Vec::new(),
                    switch_lsn: None,
                    tail_incomplete: false,
                    tail_seen: false,
                    head_read: false,
                    min_xid: Some(s as u32),
                    max_xid: Some(s as u32),
                    next_xid: None,
                }),
                scan_error: None,
                data_tag: None,
                tail: None,
            };
            wal.push(rec);
        }
    }
    let mut backups = Vec::new();
    for i in 0..BACKUPS {
        let s = i * (SEGMENTS / BACKUPS) + 1;
        let t = (s / per + 1).min(TIMELINES);
        let tli = TimelineId::new(t as u32).unwrap();
        let start = Lsn::new(s * SEG + 0x28);
        backups.push(BackupRecord {
            id: format!("b{i:05}"),
            label: String::new(),
            system_id: config.system_id,
            pg_major: config.pg_major,
            timeline: tli,
            start_lsn: start,
            checkpoint_lsn: start,
            stop_lsn: Lsn::new(s * SEG + 0x100),
            stop_timeline: tli,
            start_segment: String::new(),
            stop_segment: String::new(),
            start_time: base() + Duration::seconds(s as i64 - 1),
            stop_time: base() + Duration::seconds(s as i64 - 1),
            fingerprint: config.fingerprint.clone(),
            files: 1000,
            raw_bytes: 50 << 30,
            stored_bytes: 10 << 30,
            pitr_version: String::new(),
            arch: None,
            start: Default::default(),
        });
    }
    Catalog {
        config,
        backups,
        wal: wal.build(),
        histories,
        timings: Vec::new(),
        damaged: Vec::new(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn main() {
    // cargo bench passes --bench; nothing else to parse.
    let rss_before = rss_mb();
    let t0 = Instant::now();
    let catalog = synthetic();
    let build = t0.elapsed().as_secs_f64();
    let rss_catalog = peak_rss_mb();
    let held = rss_mb() - rss_before;
    let target = TargetSpec::new(RecoveryTarget::Time(
        base() + Duration::seconds(SEGMENTS as i64 - 5_000) + Duration::milliseconds(500),
    ));
    let mut times = Vec::new();
    let mut chosen = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        let p = plan(&catalog, &target, &CostModel::default()).expect("plan");
        times.push(t.elapsed().as_secs_f64());
        chosen = format!("{} on timeline {}", p.backup.id, p.timeline);
    }
    let mut wal_times = Vec::new();
    let mut window_times = Vec::new();
    let mut info = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        let wal = pitr::catalog::summary::wal_by_timeline(&catalog);
        wal_times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let windows = pitr::plan::restorable_windows(&catalog);
        window_times.push(t.elapsed().as_secs_f64());
        info = format!("{} timelines of WAL, {} windows", wal.len(), windows.len());
    }
    let (wal_ms, window_ms) = (median(wal_times) * 1e3, median(window_times) * 1e3);
    println!("| planner ({SEGMENTS} segments, {BACKUPS} backups, {TIMELINES} timelines) | value |");
    println!("|---|---:|");
    println!("| build synthetic catalog | {build:.2} s |");
    println!(
        "| plan to a time (median of 5) | {:.1} ms |",
        median(times) * 1e3
    );
    println!(
        "| info: wal_by_timeline + restorable_windows (medians of 5) | {:.1} ms ({wal_ms:.1} + {window_ms:.1}) |",
        wal_ms + window_ms
    );
    println!(
        "| catalog held (RSS after building it - before) | {held:.0} MB ({:.0} bytes per segment) |",
        held * 1024.0 * 1024.0 / SEGMENTS as f64
    );
    println!(
        "| WAL index arrays (WalIndex::heap_bytes) | {:.0} MB ({:.0} bytes per segment) |",
        catalog.wal.heap_bytes() as f64 / 1024.0 / 1024.0,
        catalog.wal.heap_bytes() as f64 / catalog.wal.len().max(1) as f64
    );
    println!("| peak RSS after building the catalog | {rss_catalog:.0} MB |");
    println!("| peak RSS after planning | {:.0} MB |", peak_rss_mb());
    println!("| chosen | {chosen} |");
    println!("| info | {info} |");

    if let Ok(dir) = std::env::var("PITR_BENCH_WAL_DIR") {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("PITR_BENCH_WAL_DIR")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let segs: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
        let size = WalSegmentSize::new(SEG).unwrap();
        let total: usize = segs.iter().map(|s| s.len()).sum();
        let mut runs = Vec::new();
        let mut records = 0;
        for _ in 0..3 {
            let t = Instant::now();
            records = 0;
            for s in &segs {
                if let Ok(scan) = scan_segment(s, size) {
                    records += scan.records;
                }
            }
            runs.push(t.elapsed().as_secs_f64());
        }
        let secs = median(runs);
        println!();
        println!("| scanner | value |");
        println!("|---|---:|");
        println!("| segments | {} ({} records) |", segs.len(), records);
        println!(
            "| pitr scan_segment | {:.0} MB/s ({:.2} ms per segment) |",
            total as f64 / 1e6 / secs,
            secs * 1e3 / segs.len().max(1) as f64
        );
    }
}
