//! The records a PITR index needs, and how to read them from a record's main
//! data: transaction ends (`xact.h`; `xactdesc.c: ParseCommitRecord,
//! ParseAbortRecord`), restore points (`xl_restore_point`), checkpoints
//! (`pg_control.h: CheckPoint`) and WAL switches (RM_XLOG_ID).
//!
//! Invariants: parsing is bounds-checked and never panics; a record whose main
//! data is too short for its type is not reported (it passed its CRC, so this
//! cannot happen with real Postgres WAL). Only `XLOG_XACT_HAS_INFO`-driven
//! fields change the layout, so one parser serves every major; the size of a
//! dropped-stats item is the only per-major difference ([`WalFormat`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::page::WalFormat;
use super::time::{pg_time_to_utc, timestamptz_to_utc};
use crate::pg::bytes::{i32_at, i64_at, u32_at, u64_at};
use crate::pg::lsn::{Lsn, TimelineId};

pub(crate) const RM_XLOG_ID: u8 = 0;
pub(crate) const RM_XACT_ID: u8 = 1;

// RM_XLOG_ID opcodes (info & XLR_RMGR_INFO_MASK).
const XLR_RMGR_INFO_MASK: u8 = 0xF0;
const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
pub(crate) const XLOG_SWITCH: u8 = 0x40;
const XLOG_RESTORE_POINT: u8 = 0x70;

// RM_XACT_ID opcodes (info & XLOG_XACT_OPMASK).
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
const XLOG_XACT_HAS_INFO: u8 = 0x80;

// xl_xact_xinfo bits.
const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
const XACT_XINFO_HAS_RELFILENODES: u32 = 1 << 2;
const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;

/// sizeof(xl_xact_dbinfo), TransactionId, RelFileNode/RelFileLocator and
/// SharedInvalidationMessage.
const DBINFO_SIZE: usize = 8;
const XID_SIZE: usize = 4;
const REL_LOCATOR_SIZE: usize = 12;
const INVAL_MSG_SIZE: usize = 16;

/// sizeof(xl_restore_point): TimestampTz + char[MAXFNAMELEN = 64].
const RESTORE_POINT_NAME_LEN: usize = 64;
/// Offset of CheckPoint.time (pg_time_t, Unix seconds), the same 12–18.
const CHECKPOINT_TIME_OFFSET: usize = 64;
/// Offset of CheckPoint.nextXid (FullTransactionId: epoch << 32 | xid;
/// `nextFullXid` in 12–13), the same 12–18 (17's `wal_level` fills the
/// padding after `fullPageWrites`).
const CHECKPOINT_NEXT_XID_OFFSET: usize = 24;

/// Which transaction-ending record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XactKind {
    Commit,
    Abort,
    CommitPrepared,
    AbortPrepared,
}

/// A record that ends a transaction: what a time or xid recovery target
/// stops at (xlogrecovery.c: recoveryStopsBefore / recoveryStopsAfter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XactEnd {
    /// Start of the record.
    pub lsn: Lsn,
    /// End of the record (Postgres' EndRecPtr: MAXALIGNed, = next record's start).
    pub end_lsn: Lsn,
    pub kind: XactKind,
    /// xl_xid for COMMIT/ABORT; the prepared transaction's xid (the
    /// "twophase xid") for COMMIT_PREPARED/ABORT_PREPARED, whose xl_xid is 0.
    pub xid: u32,
    /// xact_time: when the backend committed or aborted.
    pub time: DateTime<Utc>,
}

/// An XLOG_RESTORE_POINT record (`pg_create_restore_point`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub lsn: Lsn,
    pub end_lsn: Lsn,
    /// rp_name up to its NUL; bytes that are not UTF-8 are replaced (U+FFFD).
    pub name: String,
    pub time: DateTime<Utc>,
}

/// An XLOG_CHECKPOINT_SHUTDOWN or XLOG_CHECKPOINT_ONLINE record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRec {
    /// Start of the checkpoint record itself.
    pub lsn: Lsn,
    /// Where replay must start to use this checkpoint.
    pub redo: Lsn,
    /// CheckPoint.ThisTimeLineID.
    pub timeline: TimelineId,
    /// true for CHECKPOINT_ONLINE, false for CHECKPOINT_SHUTDOWN.
    pub online: bool,
    /// CheckPoint.time (whole seconds).
    pub time: DateTime<Utc>,
    /// CheckPoint.nextXid: the next transaction id to assign, with its
    /// epoch (`epoch << 32 | xid`): where the WAL tells the xid epoch.
    pub next_xid: u64,
}

/// What one record means to the scanner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Interesting {
    Xact(XactEnd),
    RestorePoint(RestorePoint),
    Checkpoint(CheckpointRec),
    Switch,
    Other,
}

/// The fields of a record the interpretation needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordInfo {
    pub(crate) lsn: Lsn,
    pub(crate) end_lsn: Lsn,
    pub(crate) rmid: u8,
    pub(crate) info: u8,
    pub(crate) xid: u32,
}

/// True for XLOG_SWITCH, after which the rest of the segment is padding.
pub(crate) fn is_switch(rmid: u8, info: u8) -> bool {
    rmid == RM_XLOG_ID && info & XLR_RMGR_INFO_MASK == XLOG_SWITCH
}

/// True for XLOG_RESTORE_POINT (`pg_create_restore_point`).
pub(crate) fn is_restore_point(rmid: u8, info: u8) -> bool {
    rmid == RM_XLOG_ID && info & XLR_RMGR_INFO_MASK == XLOG_RESTORE_POINT
}

/// True for the records [`interpret`] reports as [`Interesting::Xact`] when
/// their main data is whole: COMMIT, ABORT, COMMIT_PREPARED, ABORT_PREPARED.
pub(crate) fn is_xact_end(rmid: u8, info: u8) -> bool {
    rmid == RM_XACT_ID
        && matches!(
            info & XLOG_XACT_OPMASK,
            XLOG_XACT_COMMIT
                | XLOG_XACT_ABORT
                | XLOG_XACT_COMMIT_PREPARED
                | XLOG_XACT_ABORT_PREPARED
        )
}

/// Classifies a valid record and extracts what we index from its main data.
pub(crate) fn interpret(r: RecordInfo, main: &[u8], fmt: WalFormat) -> Interesting {
    let parsed = match r.rmid {
        RM_XACT_ID => xact_end(r, main, fmt).map(Interesting::Xact),
        RM_XLOG_ID => match r.info & XLR_RMGR_INFO_MASK {
            XLOG_SWITCH => Some(Interesting::Switch),
            XLOG_RESTORE_POINT => restore_point(r, main).map(Interesting::RestorePoint),
            op @ (XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE) => {
                checkpoint(r, main, op == XLOG_CHECKPOINT_ONLINE).map(Interesting::Checkpoint)
            }
            _ => None,
        },
        _ => None,
    };
    parsed.unwrap_or(Interesting::Other)
}

fn xact_end(r: RecordInfo, main: &[u8], fmt: WalFormat) -> Option<XactEnd> {
    let kind = match r.info & XLOG_XACT_OPMASK {
        XLOG_XACT_COMMIT => XactKind::Commit,
        XLOG_XACT_ABORT => XactKind::Abort,
        XLOG_XACT_COMMIT_PREPARED => XactKind::CommitPrepared,
        XLOG_XACT_ABORT_PREPARED => XactKind::AbortPrepared,
        _ => return None,
    };
    // xl_xact_commit / xl_xact_abort both start with xact_time.
    let time = timestamptz_to_utc(i64_at(main, 0)?)?;
    let xid = match kind {
        XactKind::Commit | XactKind::Abort => r.xid,
        XactKind::CommitPrepared | XactKind::AbortPrepared => {
            let is_commit = kind == XactKind::CommitPrepared;
            twophase_xid(main, r.info, is_commit, fmt)?
        }
    };
    Some(XactEnd {
        lsn: r.lsn,
        end_lsn: r.end_lsn,
        kind,
        xid,
        time,
    })
}

/// The twophase xid of a COMMIT_PREPARED / ABORT_PREPARED record: walks the
/// optional parts in the order ParseCommitRecord / ParseAbortRecord do
/// (xinfo, dbinfo, subxacts, rels, dropped stats, invals — commit only —,
/// then xl_xact_twophase). `None` if the record has no twophase part or is
/// too short.
fn twophase_xid(main: &[u8], info: u8, is_commit: bool, fmt: WalFormat) -> Option<u32> {
    // MinSizeOfXactCommit / MinSizeOfXactAbort: just xact_time.
    let mut off: usize = 8;
    let mut xinfo = 0;
    if info & XLOG_XACT_HAS_INFO != 0 {
        xinfo = u32_at(main, off)?;
        off += 4;
    }
    // An `int` count followed by that many items of `size` bytes.
    let counted = |off: usize, size: usize| -> Option<usize> {
        let n = usize::try_from(i32_at(main, off)?).ok()?;
        off.checked_add(4)?.checked_add(n.checked_mul(size)?)
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        off += DBINFO_SIZE;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        off = counted(off, XID_SIZE)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILENODES != 0 {
        off = counted(off, REL_LOCATOR_SIZE)?;
    }
    if let Some(item) = fmt.dropped_stats_item_size() {
        if xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
            off = counted(off, item)?;
        }
    }
    if is_commit && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        off = counted(off, INVAL_MSG_SIZE)?;
    }
    if xinfo & XACT_XINFO_HAS_TWOPHASE == 0 {
        return None;
    }
    u32_at(main, off)
}

fn restore_point(r: RecordInfo, main: &[u8]) -> Option<RestorePoint> {
    let time = timestamptz_to_utc(i64_at(main, 0)?)?;
    let raw = main.get(8..)?;
    let raw = &raw[..raw.len().min(RESTORE_POINT_NAME_LEN)];
    let name = match raw.iter().position(|&c| c == 0) {
        Some(nul) => &raw[..nul],
        None => raw,
    };
    Some(RestorePoint {
        lsn: r.lsn,
        end_lsn: r.end_lsn,
        name: String::from_utf8_lossy(name).into_owned(),
        time,
    })
}

fn checkpoint(r: RecordInfo, main: &[u8], online: bool) -> Option<CheckpointRec> {
    Some(CheckpointRec {
        lsn: r.lsn,
        redo: Lsn::new(u64_at(main, 0)?),
        timeline: TimelineId::new(u32_at(main, 8)?).ok()?,
        online,
        time: pg_time_to_utc(i64_at(main, CHECKPOINT_TIME_OFFSET)?)?,
        next_xid: u64_at(main, CHECKPOINT_NEXT_XID_OFFSET)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: WalFormat = WalFormat { major: 15 };

    fn info(rmid: u8, info: u8, xid: u32) -> RecordInfo {
        RecordInfo {
            lsn: Lsn::new(0x100),
            end_lsn: Lsn::new(0x128),
            rmid,
            info,
            xid,
        }
    }

    fn push_counted(b: &mut Vec<u8>, n: i32, size: usize) {
        b.extend_from_slice(&n.to_le_bytes());
        b.resize(b.len() + n as usize * size, 0xEE);
    }

    #[test]
    fn plain_commit_uses_record_xid() {
        let main = 1_000_000i64.to_le_bytes();
        let got = interpret(info(1, 0x00, 42), &main, PG15);
        let Interesting::Xact(x) = got else {
            panic!("{got:?}")
        };
        assert_eq!(x.kind, XactKind::Commit);
        assert_eq!(x.xid, 42);
        assert_eq!(x.time.to_rfc3339(), "2000-01-01T00:00:01+00:00");
    }

    #[test]
    fn commit_prepared_walks_every_optional_part() {
        for (fmt, stats_item) in [(PG15, 12), (WalFormat { major: 18 }, 16)] {
            let mut b = 5i64.to_le_bytes().to_vec();
            let xinfo = XACT_XINFO_HAS_DBINFO
                | XACT_XINFO_HAS_SUBXACTS
                | XACT_XINFO_HAS_RELFILENODES
                | XACT_XINFO_HAS_DROPPED_STATS
                | XACT_XINFO_HAS_INVALS
                | XACT_XINFO_HAS_TWOPHASE;
            b.extend_from_slice(&xinfo.to_le_bytes());
            b.extend_from_slice(&[0; DBINFO_SIZE]);
            push_counted(&mut b, 2, XID_SIZE);
            push_counted(&mut b, 1, REL_LOCATOR_SIZE);
            push_counted(&mut b, 1, stats_item);
            push_counted(&mut b, 3, INVAL_MSG_SIZE);
            b.extend_from_slice(&732u32.to_le_bytes());
            let got = interpret(info(1, 0x80 | 0x30, 0), &b, fmt);
            let Interesting::Xact(x) = got else {
                panic!("{got:?}")
            };
            assert_eq!((x.kind, x.xid), (XactKind::CommitPrepared, 732));
        }
    }

    #[test]
    fn abort_prepared_has_no_invals() {
        let mut b = 5i64.to_le_bytes().to_vec();
        let xinfo = XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_INVALS | XACT_XINFO_HAS_TWOPHASE;
        b.extend_from_slice(&xinfo.to_le_bytes());
        push_counted(&mut b, 1, XID_SIZE);
        b.extend_from_slice(&734u32.to_le_bytes());
        let Interesting::Xact(x) = interpret(info(1, 0xC0, 0), &b, PG15) else {
            panic!()
        };
        assert_eq!((x.kind, x.xid), (XactKind::AbortPrepared, 734));
    }

    #[test]
    fn malformed_xact_records_are_skipped() {
        // Too short for xact_time.
        assert_eq!(
            interpret(info(1, 0x00, 1), &[0; 7], PG15),
            Interesting::Other
        );
        // Negative and huge counts.
        let mut b = 5i64.to_le_bytes().to_vec();
        b.extend_from_slice(&(XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_TWOPHASE).to_le_bytes());
        b.extend_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(interpret(info(1, 0xB0, 0), &b, PG15), Interesting::Other);
        let n = (i32::MAX).to_le_bytes();
        b.truncate(12);
        b.extend_from_slice(&n);
        assert_eq!(interpret(info(1, 0xB0, 0), &b, PG15), Interesting::Other);
        // PREPARE and ASSIGNMENT are not ends.
        assert_eq!(
            interpret(info(1, 0x10, 1), &[0; 8], PG15),
            Interesting::Other
        );
        assert_eq!(
            interpret(info(1, 0x50, 1), &[0; 8], PG15),
            Interesting::Other
        );
    }

    #[test]
    fn restore_point_and_checkpoint() {
        let mut b = 0i64.to_le_bytes().to_vec();
        let mut name = [0xAB; 64];
        name[..6].copy_from_slice(b"rp_one");
        name[6] = 0;
        b.extend_from_slice(&name);
        let Interesting::RestorePoint(rp) = interpret(info(0, 0x70, 0), &b, PG15) else {
            panic!()
        };
        assert_eq!(rp.name, "rp_one");

        let mut cp = vec![0u8; 88];
        cp[0..8].copy_from_slice(&0x906A58u64.to_le_bytes());
        cp[8..12].copy_from_slice(&3u32.to_le_bytes());
        cp[24..32].copy_from_slice(&((2u64 << 32) | 751).to_le_bytes());
        cp[64..72].copy_from_slice(&1_700_000_000i64.to_le_bytes());
        let Interesting::Checkpoint(c) = interpret(info(0, 0x10, 0), &cp, PG15) else {
            panic!()
        };
        assert_eq!(c.redo, Lsn::new(0x906A58));
        assert_eq!(c.timeline.get(), 3);
        assert!(c.online);
        assert_eq!(c.time.timestamp(), 1_700_000_000);
        assert_eq!(c.next_xid, (2u64 << 32) | 751);
        let Interesting::Checkpoint(c) = interpret(info(0, 0x00, 0), &cp, PG15) else {
            panic!()
        };
        assert!(!c.online);
        assert_eq!(
            interpret(info(0, 0x10, 0), &cp[..70], PG15),
            Interesting::Other
        );
        assert_eq!(interpret(info(0, 0x40, 0), &[], PG15), Interesting::Switch);
        assert!(is_switch(0, 0x40) && !is_switch(1, 0x40));
    }
}
