//! The build `Fingerprint` recorded in pg_control, and what a difference
//! between a backup's and an install's means, in plain words with what to
//! do about it. Mirrors the compatibility checks of `ReadControlFile` in
//! `src/backend/access/transam/xlog.c`, in its order; decoding the
//! fingerprint is `pg::control`'s.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::bytes::ByteOrder;
use super::major::PgMajor;

/// The build constants recorded in pg_control. A data directory only starts
/// under a server whose own values match (ReadControlFile), so comparing a
/// backup's fingerprint with a throw-away initdb's tells before a restore
/// whether the install can run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub pg_control_version: u32,
    pub catalog_version_no: u32,
    pub max_align: u32,
    /// `floatFormat` held 1234567.0, as every IEEE-754 build writes.
    pub float_format_ok: bool,
    pub blcksz: u32,
    pub relseg_size: u32,
    pub xlog_blcksz: u32,
    /// Informational: the server adopts the cluster's value at startup.
    pub xlog_seg_size: u32,
    pub name_data_len: u32,
    pub index_max_keys: u32,
    pub toast_max_chunk_size: u32,
    pub loblksize: u32,
    pub float8_by_val: bool,
    /// Informational: 0 = page checksums off; not a compatibility check.
    pub data_checksum_version: u32,
    pub byte_order: ByteOrder,
    /// The major implied by pg_control_version and catalog_version_no. A
    /// hint only: 1300 covers 13–16 and is told apart by catalog version
    /// thresholds that beta builds do not follow; the data directory's
    /// `PG_VERSION` file is authoritative.
    pub major_hint: Option<PgMajor>,
}

/// One field where a backup's build differs from an install's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FingerprintMismatch {
    /// The pg_control field, as named in `Fingerprint`.
    pub field: &'static str,
    /// The backup's value (the receiver of `differences`), as text.
    pub backup: String,
    /// The install's value (the argument of `differences`), as text.
    pub install: String,
    /// One line in plain words, starting with what differs.
    pub explanation: String,
}

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

impl Fingerprint {
    /// The fields the server would refuse to start on, comparing `self` (the
    /// backup) with `other` (the install), in ReadControlFile's order, plus
    /// the byte order. Not compared, like the server: `xlog_seg_size` (the
    /// server adopts the cluster's) and `data_checksum_version`.
    pub fn differences(&self, other: &Fingerprint) -> Vec<FingerprintMismatch> {
        let mut out = Vec::new();
        let mut check = |field: &'static str, a: String, b: String, what: &str, why: &str| {
            if a != b {
                out.push(FingerprintMismatch {
                    field,
                    explanation: format!("{what} {a} vs {b}: {why}"),
                    backup: a,
                    install: b,
                });
            }
        };
        let restore_onto = self.major_hint.map_or_else(
            || "an install of the backup's major".to_string(),
            |m| format!("a {m} install"),
        );
        check(
            "byte_order",
            self.byte_order.to_string(),
            other.byte_order.to_string(),
            "byte order",
            "the backup comes from a machine of the other endianness and cannot be restored here",
        );
        check(
            "pg_control_version",
            self.pg_control_version.to_string(),
            other.pg_control_version.to_string(),
            "pg_control version",
            &format!("the install is a different PostgreSQL major; restore onto {restore_onto}"),
        );
        check(
            "catalog_version_no",
            self.catalog_version_no.to_string(),
            other.catalog_version_no.to_string(),
            "catalog version",
            "the install is a different major, or a beta/RC build; use the exact release line the backup came from",
        );
        check(
            "max_align",
            self.max_align.to_string(),
            other.max_align.to_string(),
            "maximum data alignment",
            "the install was built for a different architecture (32-bit vs 64-bit)",
        );
        check(
            "float_format_ok",
            float_format_text(self.float_format_ok),
            float_format_text(other.float_format_ok),
            "float format",
            "one side does not use IEEE-754 doubles in this byte order",
        );
        check(
            "blcksz",
            self.blcksz.to_string(),
            other.blcksz.to_string(),
            "block size",
            "the install was built with a different --with-blocksize",
        );
        check(
            "relseg_size",
            self.relseg_size.to_string(),
            other.relseg_size.to_string(),
            "blocks per relation segment",
            "the install was built with a different --with-segsize",
        );
        check(
            "xlog_blcksz",
            self.xlog_blcksz.to_string(),
            other.xlog_blcksz.to_string(),
            "WAL block size",
            "the install was built with a different --with-wal-blocksize",
        );
        check(
            "name_data_len",
            self.name_data_len.to_string(),
            other.name_data_len.to_string(),
            "identifier length (NAMEDATALEN)",
            "the install was built with a different NAMEDATALEN in pg_config_manual.h",
        );
        check(
            "index_max_keys",
            self.index_max_keys.to_string(),
            other.index_max_keys.to_string(),
            "maximum index columns (INDEX_MAX_KEYS)",
            "the install was built with a different INDEX_MAX_KEYS in pg_config_manual.h",
        );
        check(
            "toast_max_chunk_size",
            self.toast_max_chunk_size.to_string(),
            other.toast_max_chunk_size.to_string(),
            "TOAST chunk size",
            "the install was built with a different block size or alignment",
        );
        check(
            "loblksize",
            self.loblksize.to_string(),
            other.loblksize.to_string(),
            "large-object chunk size",
            "the install was built with a different block size",
        );
        check(
            "float8_by_val",
            by_val_text(self.float8_by_val),
            by_val_text(other.float8_by_val),
            "float8 passing",
            "the install is a 32-bit build or was built with --disable-float8-byval",
        );
        out
    }
}

fn float_format_text(ok: bool) -> String {
    if ok { "IEEE-754" } else { "unknown" }.to_string()
}

pub(super) fn by_val_text(by_val: bool) -> String {
    if by_val { "by value" } else { "by reference" }.to_string()
}

#[cfg(test)]
mod tests {
    use crate::pg::control::ControlFile;

    const PG15: &[u8] = include_bytes!("../../testdata/pg15/pg_control");
    const SEG1: &[u8] = include_bytes!("../../testdata/pg15/pg_control.walseg1mb");

    #[test]
    fn differences_explain_in_plain_words() {
        let a = ControlFile::decode(PG15).unwrap().fingerprint;
        let seg1 = ControlFile::decode(SEG1).unwrap().fingerprint;
        // Segment size and checksums differ, but neither is a compat check.
        assert_ne!(a.xlog_seg_size, seg1.xlog_seg_size);
        assert_ne!(a.data_checksum_version, seg1.data_checksum_version);
        assert!(a.differences(&seg1).is_empty());

        let mut b = a.clone();
        b.blcksz = 16384;
        b.catalog_version_no = 202_307_071;
        b.float8_by_val = false;
        let d = a.differences(&b);
        let fields: Vec<_> = d.iter().map(|m| m.field).collect();
        assert_eq!(fields, ["catalog_version_no", "blcksz", "float8_by_val"]);
        assert_eq!(
            d[1].to_string(),
            "block size 8192 vs 16384: the install was built with a different --with-blocksize"
        );
        assert_eq!(
            (d[1].backup.as_str(), d[1].install.as_str()),
            ("8192", "16384")
        );
        assert!(d[2]
            .explanation
            .starts_with("float8 passing by value vs by reference"));

        let mut c = a.clone();
        c.pg_control_version = 1700;
        let d = a.differences(&c);
        assert!(
            d[0].explanation.contains("restore onto a 15 install"),
            "{}",
            d[0]
        );
    }
}
