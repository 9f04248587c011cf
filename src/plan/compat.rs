//! Does a backup meet an install that can run it? Physical backups and
//! their WAL restore only onto the same major version, build options and
//! architecture family (see postgres-internals §1.5: ReadControlFile's
//! checks, plus PG_VERSION). Pure: the caller brings the backup's
//! fingerprint (recorded at backup time) and each install's (read from a
//! scratch initdb). Across majors, a logical dump is the way, and the
//! errors say so.

use serde::Serialize;

use crate::pg::control::{Fingerprint, FingerprintMismatch, PgMajor};

/// An install as the planner sees it.
#[derive(Clone, Debug, Serialize)]
pub struct InstallFacts {
    pub bin_dir: String,
    pub version: String,
    pub major: PgMajor,
    pub fingerprint: Fingerprint,
    pub arch: String,
}

/// One reason an install cannot run a backup.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Mismatch {
    pub field: String,
    pub backup: String,
    pub install: String,
    pub explanation: String,
}

impl From<FingerprintMismatch> for Mismatch {
    fn from(m: FingerprintMismatch) -> Self {
        Mismatch {
            field: m.field.to_string(),
            backup: m.backup,
            install: m.install,
            explanation: m.explanation,
        }
    }
}

/// Every mismatch between a backup (major, fingerprint, architecture if
/// recorded) and an install; empty means compatible.
pub fn mismatches(
    backup_major: PgMajor,
    backup: &Fingerprint,
    backup_arch: Option<&str>,
    install: &InstallFacts,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if backup_major != install.major {
        out.push(Mismatch {
            field: "major".into(),
            backup: backup_major.to_string(),
            install: install.major.to_string(),
            explanation: format!(
                "major {backup_major} backup, install is {}: a physical restore cannot cross major versions; restore onto a {backup_major} install, or restore there and move the data with pg_dump/pg_restore to upgrade",
                install.major
            ),
        });
    }
    if let Some(arch) = backup_arch {
        if !same_family(arch, &install.arch) {
            out.push(Mismatch {
                field: "architecture".into(),
                backup: arch.to_string(),
                install: install.arch.clone(),
                explanation: format!(
                    "architecture {arch} vs {}: the data files' layout depends on the machine; restore on a {arch} machine, or use a logical dump",
                    install.arch
                ),
            });
        }
    }
    out.extend(
        backup
            .differences(&install.fingerprint)
            .into_iter()
            .map(Mismatch::from),
    );
    out
}

/// 64-bit little-endian machines share one on-disk layout (pg_control
/// cannot tell them apart, and Postgres accepts each other's files).
fn same_family(a: &str, b: &str) -> bool {
    const LE64: [&str; 4] = ["x86_64", "aarch64", "powerpc64le", "riscv64"];
    a == b || (LE64.contains(&a) && LE64.contains(&b))
}

/// Why no install was chosen (`choose`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ChooseError {
    #[error("no PostgreSQL install found; install PostgreSQL {major} (Debian: apt-get install postgresql-{major}) or pass --pg-bin")]
    NoInstall { major: PgMajor },
    #[error(
        "no install can run this PostgreSQL {major} backup; install PostgreSQL {major} with the same build options, or use a logical dump. Installs found:\n  {}",
        Rejected::lines(.rejected)
    )]
    NoneCompatible {
        major: PgMajor,
        /// Every install considered, with its mismatches.
        rejected: Vec<Rejected>,
    },
}

/// An install `choose` passed over, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub bin_dir: String,
    pub version: String,
    pub mismatches: Vec<Mismatch>,
}

impl Rejected {
    /// One line per install: "BIN (VERSION): why; why".
    fn lines(rejected: &[Rejected]) -> String {
        rejected
            .iter()
            .map(|r| {
                format!(
                    "{} ({}): {}",
                    r.bin_dir,
                    r.version,
                    r.mismatches
                        .iter()
                        .map(|m| m.explanation.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }
}

/// Picks the first compatible install, or explains why none is.
pub fn choose<'a>(
    backup_major: PgMajor,
    backup: &Fingerprint,
    backup_arch: Option<&str>,
    installs: &'a [InstallFacts],
) -> Result<&'a InstallFacts, ChooseError> {
    let mut rejected = Vec::new();
    for i in installs {
        let m = mismatches(backup_major, backup, backup_arch, i);
        if m.is_empty() {
            return Ok(i);
        }
        rejected.push(Rejected {
            bin_dir: i.bin_dir.clone(),
            version: i.version.clone(),
            mismatches: m,
        });
    }
    Err(if rejected.is_empty() {
        ChooseError::NoInstall {
            major: backup_major,
        }
    } else {
        ChooseError::NoneCompatible {
            major: backup_major,
            rejected,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::control::ControlFile;

    fn facts(path: &str, major: u32) -> InstallFacts {
        let bytes = std::fs::read(format!(
            "{}/testdata/pg{major}/pg_control",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        InstallFacts {
            bin_dir: path.into(),
            version: format!("{major}.0"),
            major: PgMajor::new(major).unwrap(),
            fingerprint: ControlFile::decode(&bytes).unwrap().fingerprint,
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn cross_major_is_refused_with_the_way_out() {
        let i15 = facts("/usr/lib/postgresql/15/bin", 15);
        let i17 = facts("/opt/17/bin", 17);
        let backup = i15.fingerprint.clone();
        let m15 = PgMajor::new(15).unwrap();
        assert!(mismatches(m15, &backup, Some("x86_64"), &i15).is_empty());
        assert!(mismatches(m15, &backup, Some("aarch64"), &i15).is_empty());
        let m = mismatches(m15, &backup, Some("x86_64"), &i17);
        let fields: Vec<&str> = m.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(fields[0], "major");
        assert!(fields.contains(&"catalog_version_no"), "{fields:?}");
        assert!(m[0].explanation.contains("restore onto a 15 install"));
        assert!(m[0].explanation.contains("pg_dump"));
        assert_eq!(
            choose(m15, &backup, None, &[i17.clone(), i15.clone()])
                .unwrap()
                .bin_dir,
            i15.bin_dir
        );
        let err = choose(m15, &backup, None, &[i17]).unwrap_err();
        assert!(
            matches!(&err, ChooseError::NoneCompatible { rejected, .. } if rejected.len() == 1),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("no install can run this PostgreSQL 15 backup; "),
            "{text}"
        );
        assert!(
            text.contains("Installs found:\n  /opt/17/bin (17.0): major 15 backup, install is 17"),
            "{text}"
        );
        assert_eq!(
            choose(m15, &backup, None, &[]).unwrap_err().to_string(),
            "no PostgreSQL install found; install PostgreSQL 15 (Debian: apt-get install postgresql-15) or pass --pg-bin"
        );
        let m = mismatches(m15, &backup, Some("i686"), &i15);
        assert_eq!(m[0].field, "architecture");
    }

    /// Flips one field in the real PG15 pg_control (LP64 offsets from
    /// pg_control.h, see postgres-internals §1.3), recomputes the CRC, and
    /// expects exactly that mismatch against an install of the original.
    #[test]
    fn every_fingerprint_field_flipped_in_a_real_pg_control_is_caught() {
        let original = std::fs::read(format!(
            "{}/testdata/pg15/pg_control",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let install = facts("/usr/lib/postgresql/15/bin", 15);
        let m15 = PgMajor::new(15).unwrap();
        let u32_at = |b: &[u8], off: usize| u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
        let cases: Vec<(&str, usize, Vec<u8>)> = vec![
            (
                "catalog_version_no",
                12,
                (u32_at(&original, 12) + 1).to_le_bytes().to_vec(),
            ),
            ("max_align", 204, 4u32.to_le_bytes().to_vec()),
            ("float_format_ok", 208, 1234567.5f64.to_le_bytes().to_vec()),
            ("blcksz", 216, 16384u32.to_le_bytes().to_vec()),
            ("relseg_size", 220, 65536u32.to_le_bytes().to_vec()),
            ("xlog_blcksz", 224, 16384u32.to_le_bytes().to_vec()),
            ("name_data_len", 232, 128u32.to_le_bytes().to_vec()),
            ("index_max_keys", 236, 64u32.to_le_bytes().to_vec()),
            ("toast_max_chunk_size", 240, 1000u32.to_le_bytes().to_vec()),
            ("loblksize", 244, 1024u32.to_le_bytes().to_vec()),
            ("float8_by_val", 248, vec![u8::from(original[248] == 0)]),
        ];
        for (field, off, bytes) in cases {
            let mut b = original.clone();
            b[off..off + bytes.len()].copy_from_slice(&bytes);
            let crc = crc32c::crc32c(&b[..288]);
            b[288..292].copy_from_slice(&crc.to_le_bytes());
            let flipped = ControlFile::decode(&b).unwrap().fingerprint;
            let m = mismatches(m15, &flipped, None, &install);
            let fields: Vec<&str> = m.iter().map(|m| m.field.as_str()).collect();
            assert_eq!(fields, [field], "flipping {field}: {m:?}");
            assert!(!m[0].explanation.is_empty());
        }
        // Not compared, like the server: WAL segment size, data checksums.
        for (off, bytes) in [
            (228usize, (64u32 << 20).to_le_bytes()),
            (252, 1u32.to_le_bytes()),
        ] {
            let mut b = original.clone();
            b[off..off + 4].copy_from_slice(&bytes);
            let crc = crc32c::crc32c(&b[..288]);
            b[288..292].copy_from_slice(&crc.to_le_bytes());
            let flipped = ControlFile::decode(&b).unwrap().fingerprint;
            assert!(mismatches(m15, &flipped, None, &install).is_empty());
        }
    }

    #[test]
    fn each_build_option_is_its_own_mismatch() {
        let i15 = facts("/x", 15);
        let m15 = PgMajor::new(15).unwrap();
        let mut b = i15.fingerprint.clone();
        b.blcksz = 16384;
        let m = mismatches(m15, &b, None, &i15);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].field, "blcksz");
        assert!(m[0].explanation.contains("8192") || m[0].explanation.contains("16384"));
        let mut b = i15.fingerprint.clone();
        b.float8_by_val = !b.float8_by_val;
        assert_eq!(mismatches(m15, &b, None, &i15)[0].field, "float8_by_val");
    }
}
