//! `SystemId`: which database system a data directory, a WAL segment or a
//! backup belongs to. Read from pg_control (`system_identifier`) and from
//! every WAL segment's long page header.
//!
//! Invariant: serialized as a decimal string, because the value exceeds the
//! integers JSON readers keep exact.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Text that is not a system identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid system identifier {0:?}: expected the decimal number pg_controldata prints")]
pub struct SystemIdError(String);

/// The cluster's `system_identifier`: initdb's random 64-bit ID, shared by a
/// primary, its standbys and every backup of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemId(u64);

impl SystemId {
    pub const fn new(v: u64) -> SystemId {
        SystemId(v)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for SystemId {
    type Err = SystemIdError;
    fn from_str(s: &str) -> Result<SystemId, SystemIdError> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SystemIdError(s.to_string()));
        }
        t.parse()
            .map(SystemId)
            .map_err(|_| SystemIdError(s.to_string()))
    }
}

impl Serialize for SystemId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SystemId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SystemId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_json() {
        let id: SystemId = "7712115568550397704".parse().unwrap();
        assert_eq!(id.get(), 7_712_115_568_550_397_704);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"7712115568550397704\""
        );
        let back: SystemId = serde_json::from_str("\"7712115568550397704\"").unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<SystemId>("7712115568550397704").is_err());
        for bad in ["", "-1", "0x10", "18446744073709551616", "1 2"] {
            assert!(bad.parse::<SystemId>().is_err(), "{bad:?}");
        }
    }
}
