//! `PgMajor`: a PostgreSQL major version (10 and later number majors with
//! one integer). The data directory's `PG_VERSION` file is the
//! authoritative major of a cluster; pg_control only hints at it.
//!
//! Invariant: a `PgMajor` is between 10 and 99.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Text or a number that is not a major version pitr can name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid PostgreSQL major version {0:?}: expected a number from 10 to 99 like \"15\" \
     (check the data directory's PG_VERSION file; 9.x and older are not supported)"
)]
pub struct MajorError(String);

/// A PostgreSQL major version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct PgMajor(u32);

impl PgMajor {
    pub fn new(v: u32) -> Result<PgMajor, MajorError> {
        if (10..=99).contains(&v) {
            Ok(PgMajor(v))
        } else {
            Err(MajorError(v.to_string()))
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// Parses the contents of a data directory's `PG_VERSION` file ("15\n").
    /// This, not pg_control, is the authoritative major of a data directory.
    pub fn from_pg_version_file(text: &str) -> Result<PgMajor, MajorError> {
        text.parse()
    }
}

impl TryFrom<u32> for PgMajor {
    type Error = MajorError;
    fn try_from(v: u32) -> Result<PgMajor, MajorError> {
        PgMajor::new(v)
    }
}

impl From<PgMajor> for u32 {
    fn from(m: PgMajor) -> u32 {
        m.0
    }
}

impl fmt::Display for PgMajor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for PgMajor {
    type Err = MajorError;
    fn from_str(s: &str) -> Result<PgMajor, MajorError> {
        let t = s.trim();
        let bad = || MajorError(s.to_string());
        if t.is_empty() || t.len() > 2 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let v: u32 = t.parse().map_err(|_| bad())?;
        PgMajor::new(v).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_json() {
        let m = PgMajor::new(15).unwrap();
        assert_eq!(m.to_string(), "15");
        assert_eq!(serde_json::to_string(&m).unwrap(), "15");
        assert_eq!(serde_json::from_str::<PgMajor>("17").unwrap().get(), 17);
        assert!(serde_json::from_str::<PgMajor>("9").is_err());
        assert!(PgMajor::new(100).is_err());
        assert_eq!(PgMajor::from_pg_version_file("18\n").unwrap().get(), 18);
        for bad in ["9.6\n", "", "\n", "fifteen", "015", "100", "1 5"] {
            assert!(PgMajor::from_pg_version_file(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_text_and_what_was_expected() {
        assert_eq!(
            PgMajor::from_pg_version_file("9.6\n")
                .unwrap_err()
                .to_string(),
            "invalid PostgreSQL major version \"9.6\\n\": expected a number from 10 to 99 \
             like \"15\" (check the data directory's PG_VERSION file; 9.x and older are not \
             supported)"
        );
        assert_eq!(
            PgMajor::new(9).unwrap_err().to_string(),
            "invalid PostgreSQL major version \"9\": expected a number from 10 to 99 like \
             \"15\" (check the data directory's PG_VERSION file; 9.x and older are not \
             supported)"
        );
    }
}
