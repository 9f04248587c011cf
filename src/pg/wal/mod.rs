//! The WAL segment scanner: reads one archived segment and reports the
//! records a PITR index needs (transaction ends, restore points,
//! checkpoints, the switch) plus where valid WAL begins and ends in it.
//! Version-neutral results from per-major decoding (PG 12–18 page magics).

mod crossing;
mod error;
mod page;
mod record;
mod rmgr;
mod scan;
mod time;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod major_tests;
#[cfg(test)]
mod oracle_tests;

#[cfg(test)]
pub(crate) use crossing::fixtures as crossing_fixtures;
pub use crossing::{
    join, Continuation, Crossing, JoinError, TailPrefix, MAX_CONTINUATION, MAX_JOINED_LEN,
};
pub use error::WalScanError;
pub use page::{pg_major_for_page_magic, LongPageHeader};
pub use rmgr::{CheckpointRec, RestorePoint, XactEnd, XactKind};
pub use scan::{scan_segment, SegmentScan};
pub use time::{pg_time_to_utc, timestamptz_to_utc, PG_EPOCH_OFFSET_MICROS};
