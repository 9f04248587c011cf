//! Recovery targets and how users write them. Times are RFC 3339
//! (`2026-11-25T14:02:17Z`) or Postgres' own output form
//! (`2026-11-25 14:02:17.123456+00`); a time without a zone is refused,
//! never read as local time (Postgres would read it in the *server's*
//! timezone, pitr in the client's: the two would silently disagree).

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::Serialize;

use crate::pg::{Lsn, TimelineId};

/// What to recover to (mirrors Postgres' recovery_target_* settings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum RecoveryTarget {
    /// Stop before the first transaction that ended after this time.
    Time(DateTime<Utc>),
    /// Stop at the first record starting at or after this LSN.
    Lsn(Lsn),
    /// Stop at the end of this transaction.
    Xid(u32),
    /// Stop after the first restore point of this name.
    Name(String),
    /// Replay all archived WAL, then promote.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Time(t) => write!(f, "time {}", pg_time(*t)),
            RecoveryTarget::Lsn(l) => write!(f, "LSN {l}"),
            RecoveryTarget::Xid(x) => write!(f, "transaction {x}"),
            RecoveryTarget::Name(n) => write!(f, "restore point {n:?}"),
            RecoveryTarget::Latest => write!(f, "the latest archived WAL"),
            RecoveryTarget::Immediate => write!(f, "the end of the backup (immediate)"),
        }
    }
}

/// Which timeline recovery follows (`recovery_target_timeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineChoice {
    /// Postgres' default: the newest timeline; pitr narrows it when the
    /// target exists on other timelines only.
    Latest,
    /// The timeline of the backup recovery starts from.
    Current,
    Id(TimelineId),
}

impl Serialize for TimelineChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for TimelineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimelineChoice::Latest => f.write_str("latest"),
            TimelineChoice::Current => f.write_str("current"),
            TimelineChoice::Id(t) => write!(f, "{t}"),
        }
    }
}

impl std::str::FromStr for TimelineChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(TimelineChoice::Latest),
            "current" => Ok(TimelineChoice::Current),
            n => n
                .parse::<TimelineId>()
                .map(TimelineChoice::Id)
                .map_err(|_| format!("{n:?}: expected latest, current or a timeline number")),
        }
    }
}

/// A target with its options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetSpec {
    pub target: RecoveryTarget,
    /// `recovery_target_inclusive` (time, LSN, xid).
    pub inclusive: bool,
    pub timeline: TimelineChoice,
}

impl TargetSpec {
    pub fn new(target: RecoveryTarget) -> TargetSpec {
        TargetSpec {
            target,
            inclusive: true,
            timeline: TimelineChoice::Latest,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error("time {0:?} has no time zone: add one, e.g. \"{0}+00\" or \"{0}Z\" for UTC (pitr never guesses a local time)")]
    NoZone(String),
    #[error("cannot read time {0:?}: use RFC 3339 (2026-11-25T14:02:17Z) or PostgreSQL's form (2026-11-25 14:02:17.123+00)")]
    Invalid(String),
}

/// Parses a time with an explicit zone into UTC.
pub fn parse_time(input: &str) -> Result<DateTime<Utc>, TimeError> {
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // Normalise: 'T' separator, "Z"/"UTC" suffixes, a space before the zone.
    let mut n = s.to_string();
    if n.get(10..11) == Some("T") {
        n.replace_range(10..11, " ");
    }
    for utc in [" UTC", "UTC", " Z", "Z", " GMT", "GMT"] {
        if let Some(stripped) = n.strip_suffix(utc) {
            n = format!("{stripped}+00:00");
            break;
        }
    }
    if let Some(pos) = n.rfind([' ']) {
        let (a, b) = n.split_at(pos);
        if b.trim_start().starts_with(['+', '-']) && a.contains(' ') {
            n = format!("{a}{}", b.trim_start());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z"] {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(&n, fmt) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"] {
        if NaiveDateTime::parse_from_str(&n, fmt).is_ok()
            || (fmt == "%Y-%m-%d" && chrono::NaiveDate::parse_from_str(&n, fmt).is_ok())
        {
            return Err(TimeError::NoZone(s.to_string()));
        }
    }
    Err(TimeError::Invalid(s.to_string()))
}

/// Postgres' own input form with an explicit UTC offset, as written into
/// `recovery_target_time` (the server parses it as timestamptz).
pub fn pg_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn accepted_forms() {
        let want = utc("2026-11-25T14:02:17.5Z");
        for s in [
            "2026-11-25T14:02:17.5Z",
            "2026-11-25T14:02:17.500+00:00",
            "2026-11-25 14:02:17.5+00",
            "2026-11-25 14:02:17.500000+00",
            "2026-11-25 14:02:17.5 +00:00",
            "2026-11-25 15:02:17.5+01",
            "2026-11-25 15:32:17.5+0130",
            "2026-11-25 09:02:17.5-05",
            "2026-11-25 14:02:17.5 UTC",
            "2026-11-25 14:02:17.5Z",
        ] {
            assert_eq!(parse_time(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn refusals() {
        for s in [
            "2026-11-25 14:02:17",
            "2026-11-25T14:02:17",
            "2026-11-25 14:02",
            "2026-11-25",
        ] {
            assert_eq!(parse_time(s), Err(TimeError::NoZone(s.into())), "{s}");
        }
        for s in ["yesterday", "2026-13-45 99:00:00+00", "", "14:02:17+00"] {
            assert!(matches!(parse_time(s), Err(TimeError::Invalid(_))), "{s}");
        }
    }

    #[test]
    fn pg_form_round_trips() {
        let t = utc("2026-11-25T14:02:17.123456Z");
        assert_eq!(pg_time(t), "2026-11-25 14:02:17.123456+00");
        assert_eq!(parse_time(&pg_time(t)), Ok(t));
    }

    #[test]
    fn timeline_choices() {
        assert_eq!("latest".parse(), Ok(TimelineChoice::Latest));
        assert_eq!("current".parse(), Ok(TimelineChoice::Current));
        assert_eq!(
            "3".parse(),
            Ok(TimelineChoice::Id(TimelineId::new(3).unwrap()))
        );
        assert!("0".parse::<TimelineChoice>().is_err());
        assert!("newest".parse::<TimelineChoice>().is_err());
        assert_eq!(
            serde_json::to_string(&TargetSpec::new(RecoveryTarget::Xid(7))).unwrap(),
            r#"{"target":{"kind":"xid","value":7},"inclusive":true,"timeline":"latest"}"#
        );
    }
}
