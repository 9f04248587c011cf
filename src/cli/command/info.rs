//! `pitr info`: the repository's catalog (`Repo::load_catalog`) with the
//! planner's restorable windows, and the archived WAL summed up per
//! timeline with the segments missing between the first and the last.

use serde::Serialize;

use crate::catalog::{BackupRecord, Catalog, DamagedObject, RepoConfig};
use crate::cli::args::RepoArg;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::pg::{SegmentName, TimelineId, WalFileName};
use crate::plan;

#[derive(Serialize)]
pub struct TimelineWal {
    pub timeline: TimelineId,
    pub first_segment: String,
    pub last_segment: String,
    pub segments: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
    pub missing: Vec<String>,
}

#[derive(Serialize)]
pub struct Info {
    pub repository: String,
    pub cluster: RepoConfig,
    pub backups: Vec<BackupRecord>,
    pub wal: Vec<TimelineWal>,
    pub restorable: Option<plan::Window>,
    pub restorable_error: Option<String>,
    /// Every timeline's window, newest first.
    pub timelines: Vec<plan::Window>,
    /// Catalog objects that could not be read (left out of all the above).
    pub damaged: Vec<DamagedObject>,
}

/// Archived WAL per timeline; at most 100 missing segments named each.
fn wal_by_timeline(catalog: &Catalog) -> Vec<TimelineWal> {
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
                    while s < *segno && t.missing.len() < 100 {
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

pub async fn run(arg: &RepoArg, json: bool) -> Result<(), Failure> {
    let repo = super::open_repo(arg).await?;
    let catalog = repo.load_catalog().await?;
    let (restorable, restorable_error) = match plan::restorable_window(&catalog) {
        Ok(w) => (Some(w), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let info = Info {
        repository: repo.location().to_arg(),
        wal: wal_by_timeline(&catalog),
        timelines: plan::restorable_windows(&catalog),
        cluster: catalog.config,
        backups: catalog.backups,
        restorable,
        restorable_error,
        damaged: catalog.damaged,
    };
    render::info(&info, json)
}
