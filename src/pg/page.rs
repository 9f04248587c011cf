//! Relation pages as an incremental backup reads them: which files are
//! main-fork relation segments (`relpath.c`: `<relfilenode>` or
//! `<relfilenode>.<segno>` under `base/<dboid>/`, `global/` or a
//! tablespace's `PG_<major>_<catversion>/<dboid>/`; `_fsm`, `_vm` and
//! `_init` are other forks), and whether a block changed since an LSN, from
//! its page header's `pd_lsn` (`bufpage.h`: `PageHeaderData`, whose first
//! field is a `PageXLogRecPtr` of two 32-bit halves, xlogid then xrecoff,
//! in the server's byte order — little-endian on the platforms pitr reads).
//!
//! # Why the page LSN decides (what pg_probackup's DELTA mode relies on)
//! Every WAL-logged change of a page sets its `pd_lsn` to the LSN of the
//! record that made it (`PageSetLSN`), and LSNs only grow. A backup runs
//! with full_page_writes forced on, and `pg_backup_start` returns (as the
//! backup's start LSN) the redo point of a checkpoint that flushed every
//! page dirtied before it. So a page read now whose `pd_lsn` is older than
//! the parent backup's start LSN was not changed by WAL since the parent
//! began: the parent's copy (or, through its chain, the copy it kept) is
//! the same page, up to hint bits, which are never needed for correctness.
//! A page changed since has `pd_lsn` at or after the parent's start and is
//! stored; a page being written while it is read (torn) was changed after
//! this backup's own redo point, and replay overwrites it from the full
//! page image its first change after that point logged. A new page (all
//! zero, `pd_lsn` 0: extended and not yet written, or a relation without
//! WAL) is always stored, so a relation truncated and extended again never
//! gets old tuples back from the parent. Holds for PostgreSQL 13–18: the
//! header has not changed since 8.3.
//!
//! The free space map and visibility map are not judged this way (their
//! bits are cleared without a WAL record that stamps the map page), nor is
//! any other file: those are compared whole.

use super::bytes::u32_at;
use super::Lsn;

/// The LSN stamped on a page (`PageGetLSN`), little-endian; None when
/// `page` is shorter than the 8-byte field.
pub fn page_lsn(page: &[u8]) -> Option<Lsn> {
    let hi = u32_at(page, 0)?;
    let lo = u32_at(page, 4)?;
    Some(Lsn::new((u64::from(hi) << 32) | u64::from(lo)))
}

/// Whether block `page` must be stored by a backup whose parent started at
/// `since`: it is new (`pd_lsn` 0, as on every all-zero page), short, or
/// was changed by WAL at or after `since`.
pub fn block_changed(page: &[u8], since: Lsn) -> bool {
    match page_lsn(page) {
        None => true,
        Some(l) => l == Lsn::ZERO || l >= since,
    }
}

/// Whether the data-directory path `rel` (`/`-separated) is a main-fork
/// segment of a relation: a file of digits (`relfilenode`), optionally
/// `.<segment number>`, directly in `global/`, `base/<oid>/`, or
/// `pg_tblspc/<oid>/<version dir>/<oid>/`.
pub fn is_main_fork(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let in_relation_dir = match parts.as_slice() {
        ["global", _] => true,
        ["base", db, _] => digits(db),
        ["pg_tblspc", spc, ver, db, _] => digits(spc) && ver.starts_with("PG_") && digits(db),
        _ => false,
    };
    let Some(name) = parts.last() else {
        return false;
    };
    let (node, seg) = match name.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (*name, None),
    };
    in_relation_dir && digits(node) && seg.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_fork_paths() {
        for p in [
            "base/5/16384",
            "base/5/16384.1",
            "global/1262",
            "pg_tblspc/16390/PG_15_202209061/5/16391",
        ] {
            assert!(is_main_fork(p), "{p}");
        }
        for p in [
            "base/5/16384_fsm",
            "base/5/16384_vm",
            "base/5/16384_init",
            "base/5/16384_vm.1",
            "base/5/PG_VERSION",
            "base/5/pg_filenode.map",
            "global/pg_control",
            "pg_xact/0000",
            "base/5/16384.",
            "base/x/16384",
            "16384",
            "pg_tblspc/16390/PG_15_202209061/5/16391_fsm",
        ] {
            assert!(!is_main_fork(p), "{p}");
        }
    }

    #[test]
    fn a_zero_or_short_page_is_always_changed() {
        let zero = [0u8; 8192];
        assert!(block_changed(&zero, Lsn::new(0x1_0000_0000)));
        assert!(block_changed(&zero[..4], Lsn::new(1)));
        let mut page = [0u8; 8192];
        page[..4].copy_from_slice(&1u32.to_le_bytes());
        page[4..8].copy_from_slice(&0x28u32.to_le_bytes());
        assert_eq!(page_lsn(&page), Some("1/28".parse().unwrap()));
        assert!(!block_changed(&page, "1/29".parse().unwrap()));
        assert!(block_changed(&page, "1/28".parse().unwrap()));
        assert!(block_changed(&page, "0/FFFFFFFF".parse().unwrap()));
    }

    /// A heap file from a real server (testdata/make-page-fixtures.sh):
    /// every block's LSN as pageinspect's page_header() printed it, and
    /// exactly the blocks written after `since` judged changed.
    #[test]
    fn real_pages_against_pageinspect() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pages");
        let heap = std::fs::read(dir.join("heap")).unwrap();
        let since: Lsn = std::fs::read_to_string(dir.join("since"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let oracle = std::fs::read_to_string(dir.join("lsns.txt")).unwrap();
        let mut changed = Vec::new();
        for line in oracle.lines() {
            let (b, lsn) = line.split_once(' ').unwrap();
            let b: usize = b.parse().unwrap();
            let lsn: Lsn = lsn.parse().unwrap();
            let page = &heap[b * 8192..(b + 1) * 8192];
            assert_eq!(page_lsn(page), Some(lsn), "block {b}");
            if block_changed(page, since) {
                changed.push(b);
            }
        }
        assert_eq!(heap.len(), oracle.lines().count() * 8192);
        // The script updated a row of blocks 1 and 4; the new versions went
        // to block 4 and a new block 6.
        assert_eq!(changed, [1, 4, 6]);
    }
}
