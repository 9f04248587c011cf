//! The on-disk wrapper of every metadata file pitr writes: a kind, a format
//! version and a SHA-256 of the body's exact bytes. Reading refuses an
//! unknown kind, a newer format version, or a body whose checksum does not
//! match, each with a reason.
//!
//! Format versions: 1, the first; 2 adds content-named WAL data objects
//! (`data_tag`), backup manifests that name each file's object (`object`)
//! and BLAKE3 content hashes in place of SHA-256. A pitr that reads only
//! version 1 meets a version 2 file with "upgrade pitr" instead of
//! misreading it. 3 marks objects an older pitr must not read as what it
//! knows: backup records of start points other than a full backup
//! (incrementals and snapshots, `StartKind`) and manifests whose files
//! come in part from a parent backup. An older pitr then leaves them out
//! (damaged: planned around) instead of restoring a snapshot record as a
//! backup with no files. 4 marks objects that a pitr reading up to 3
//! must not touch at all: the `pitr.json` of an encrypted repository
//! (`RepoConfig::encryption`), which an older pitr refuses whole instead
//! of writing WAL into it in the clear or reading sealed objects as
//! corrupt; and snapshot records that carry tablespaces
//! (`SnapshotTablespace`): a pitr that reads 3 knows only the data
//! directory's snapshot, so it would plan from one and then refuse its
//! `tablespace_map`, and, expiring it, delete that snapshot alone and
//! leave the tablespaces' own (btrfs) behind; it leaves them out instead.
//! This build writes 2, or 3 or 4 for those objects (`seal_at`), and reads
//! 1 to 4.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The newest format version this build reads.
pub const FORMAT_VERSION: u32 = 4;
/// The format version of an encrypted repository's `pitr.json`.
pub const ENCRYPTED_VERSION: u32 = 4;
/// The format version this build writes unless an object needs a newer
/// one (`Envelope::seal_at`): what every pitr since version 2 reads.
pub const WRITE_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a pitr metadata file: {0}")]
    Syntax(#[source] serde_json::Error),
    #[error("expected a {expected} file, found a {found} file")]
    Kind { expected: String, found: String },
    #[error("format version {found} is not known to this pitr (it reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); upgrade pitr to read this repository")]
    Version { found: u32 },
    #[error("checksum mismatch (stored {stored}, computed {computed}): the file is corrupt or was edited by hand")]
    Checksum { stored: String, computed: String },
    #[error("body does not match the {kind} schema: {source}")]
    Body {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot serialize {kind}: {source}")]
    Serialize {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
pub struct Envelope {
    kind: String,
    format_version: u32,
    sha256: String,
    body: Box<RawValue>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Envelope {
    /// Wraps `body` as a `kind` file; returns the bytes to store.
    pub fn seal<T: Serialize>(kind: &str, body: &T) -> Result<Vec<u8>, EnvelopeError> {
        Envelope::seal_at(kind, body, WRITE_VERSION)
    }

    /// Wraps `body` as a `kind` file of format `version` (at most
    /// `FORMAT_VERSION`): 3 or 4 for objects older pitr must not misread.
    pub fn seal_at<T: Serialize>(
        kind: &str,
        body: &T,
        version: u32,
    ) -> Result<Vec<u8>, EnvelopeError> {
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(EnvelopeError::Version { found: version });
        }
        let ser = |source| EnvelopeError::Serialize {
            kind: kind.to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(body).map_err(ser)?;
        let sha256 = sha256_hex(text.as_bytes());
        let body = RawValue::from_string(text).map_err(ser)?;
        let env = Envelope {
            kind: kind.to_string(),
            format_version: version,
            sha256,
            body,
        };
        let mut out = serde_json::to_vec_pretty(&env).map_err(ser)?;
        out.push(b'\n');
        Ok(out)
    }

    /// Checks and unwraps a `kind` file.
    pub fn open<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T, EnvelopeError> {
        let env: Envelope = serde_json::from_slice(bytes).map_err(EnvelopeError::Syntax)?;
        if env.kind != kind {
            return Err(EnvelopeError::Kind {
                expected: kind.to_string(),
                found: env.kind,
            });
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&env.format_version) {
            return Err(EnvelopeError::Version {
                found: env.format_version,
            });
        }
        let computed = sha256_hex(env.body.get().as_bytes());
        if computed != env.sha256 {
            return Err(EnvelopeError::Checksum {
                stored: env.sha256,
                computed,
            });
        }
        serde_json::from_str(env.body.get()).map_err(|source| EnvelopeError::Body {
            kind: kind.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Thing {
        a: u32,
        b: String,
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = Thing {
            a: 7,
            b: "x".into(),
        };
        let bytes = Envelope::seal("thing", &t).unwrap();
        let back: Thing = Envelope::open("thing", &bytes).unwrap();
        assert_eq!(back, t);

        assert!(matches!(
            Envelope::open::<Thing>("other", &bytes),
            Err(EnvelopeError::Kind { .. })
        ));
        let text = String::from_utf8(bytes.clone()).unwrap();
        let tampered = text.replace("\"a\": 7", "\"a\": 8");
        assert_ne!(tampered, text);
        assert!(matches!(
            Envelope::open::<Thing>("thing", tampered.as_bytes()),
            Err(EnvelopeError::Checksum { .. })
        ));
        // Written now: the write version; an older one still reads; a
        // newer one is refused with "upgrade pitr".
        let current = format!("\"format_version\": {WRITE_VERSION}");
        assert!(text.contains(&current));
        let older = text.replace(&current, "\"format_version\": 1");
        assert_eq!(
            Envelope::open::<Thing>("thing", older.as_bytes()).unwrap(),
            t
        );
        // Versions 3 and 4 (`seal_at`) read here; what comes after does not.
        for v in [3, ENCRYPTED_VERSION] {
            let sealed = Envelope::seal_at("thing", &t, v).unwrap();
            let text = String::from_utf8_lossy(&sealed).to_string();
            assert!(text.contains(&format!("\"format_version\": {v}")));
            assert_eq!(Envelope::open::<Thing>("thing", &sealed).unwrap(), t);
        }
        assert!(Envelope::seal_at("thing", &t, FORMAT_VERSION + 1).is_err());
        let newer = text.replace(&current, "\"format_version\": 5");
        let err = Envelope::open::<Thing>("thing", newer.as_bytes()).unwrap_err();
        assert!(matches!(err, EnvelopeError::Version { found: 5 }));
        assert!(err.to_string().contains("upgrade pitr"), "{err}");
        let ancient = text.replace(&current, "\"format_version\": 0");
        assert!(matches!(
            Envelope::open::<Thing>("thing", ancient.as_bytes()),
            Err(EnvelopeError::Version { found: 0 })
        ));
        assert!(matches!(
            Envelope::open::<Thing>("thing", b"{not json"),
            Err(EnvelopeError::Syntax(_))
        ));
    }

    /// Found by tests/fuzz_parsers.rs (`envelope_body_values_edited_and_resealed`:
    /// a RestoreTiming's seconds read back one ulp off): serde_json's default
    /// float parser is not exact, so about one in ten `f64`s pitr wrote read
    /// back as a different number. The `float_roundtrip` feature makes it exact.
    #[test]
    fn floats_read_back_exactly() {
        for x in [907.3038322028689, 481.83792520110524, 1.2566407239779971e17] {
            let bytes = Envelope::seal("f", &x).unwrap();
            assert_eq!(Envelope::open::<f64>("f", &bytes).unwrap(), x);
        }
    }
}
