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
    Xid(Xid),
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

/// A transaction id as a user gives it: the 32-bit xid Postgres writes
/// in WAL, or the 64-bit form of `pg_current_xact_id()` (`epoch << 32 |
/// xid`, PostgreSQL 13+), whose epoch pitr checks against the WAL.
/// Recovery matches only the 32 bits (xlogrecovery.c: recoveryStopsAfter
/// compares `TransactionId`s; check_recovery_target_xid parses the
/// setting as a 64-bit number and truncates it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Xid {
    xid: u32,
    epoch: Option<u32>,
}

/// transam.h: FirstNormalTransactionId (0 is invalid, 1 bootstrap, 2
/// frozen: none ends in WAL).
const FIRST_NORMAL_XID: u32 = 3;

impl Xid {
    /// A 32-bit xid (epoch not given).
    pub fn new(xid: u32) -> Xid {
        Xid { xid, epoch: None }
    }

    /// The 64-bit form: `epoch << 32 | xid`.
    pub fn full(full: u64) -> Xid {
        Xid {
            xid: full as u32,
            epoch: Some((full >> 32) as u32),
        }
    }

    /// The 32 bits WAL records carry.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The epoch, when the 64-bit form was given.
    pub fn epoch(&self) -> Option<u32> {
        self.epoch
    }

    /// `epoch << 32 | xid` when the epoch was given.
    pub fn as_full(&self) -> Option<u64> {
        self.epoch
            .map(|e| (u64::from(e) << 32) | u64::from(self.xid))
    }
}

/// Lets WAL records' 32-bit xids be compared with a target directly.
impl PartialEq<Xid> for u32 {
    fn eq(&self, other: &Xid) -> bool {
        *self == other.xid
    }
}

impl fmt::Display for Xid {
    /// As given: `733`, or `4294968029` for the 64-bit form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_full() {
            Some(full) => write!(f, "{full}"),
            None => write!(f, "{}", self.xid),
        }
    }
}

impl Serialize for Xid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_full() {
            Some(full) => s.serialize_u64(full),
            None => s.serialize_u32(self.xid),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XidError {
    #[error("{0:?} is not a transaction id: give the decimal xid (e.g. 733) or pg_current_xact_id()'s 64-bit form (e.g. 4294968029)")]
    Invalid(String),
    #[error(
        "{0} is not a normal transaction id (normal xids start at 3; 0, 1 and 2 never end in WAL)"
    )]
    NotNormal(String),
}

impl std::str::FromStr for Xid {
    type Err = XidError;

    /// Decimal only: what `pg_current_xact_id()`, `txid_current()` and
    /// `xmin` print. A value above 2^32 - 1 is the 64-bit form.
    fn from_str(s: &str) -> Result<Xid, XidError> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(XidError::Invalid(s.to_string()));
        }
        let v: u64 = t.parse().map_err(|_| XidError::Invalid(s.to_string()))?;
        let x = match u32::try_from(v) {
            Ok(x) => Xid::new(x),
            Err(_) => Xid::full(v),
        };
        if x.xid < FIRST_NORMAL_XID {
            return Err(XidError::NotNormal(t.to_string()));
        }
        Ok(x)
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
    /// Which start points the plan may begin from (`--from`).
    pub from: super::StartFilter,
}

impl TargetSpec {
    pub fn new(target: RecoveryTarget) -> TargetSpec {
        TargetSpec {
            target,
            inclusive: true,
            timeline: TimelineChoice::Latest,
            from: super::StartFilter::Any,
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
    // Postgres keeps microseconds and rounds the rest on input
    // (timestamptz_in); so does pitr, so that a target compares with
    // commit times as Postgres' recovery_target_time would.
    use chrono::SubsecRound;
    parse_time_exact(input).map(|t| t.round_subsecs(6))
}

fn parse_time_exact(input: &str) -> Result<DateTime<Utc>, TimeError> {
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
            serde_json::to_string(&TargetSpec::new(RecoveryTarget::Xid(Xid::new(7)))).unwrap(),
            r#"{"target":{"kind":"xid","value":7},"inclusive":true,"timeline":"latest","from":"any"}"#
        );
    }

    #[test]
    fn xids_in_both_forms() {
        let x: Xid = "733".parse().unwrap();
        assert_eq!((x.xid(), x.epoch(), x.as_full()), (733, None, None));
        assert_eq!(x.to_string(), "733");
        assert_eq!("4294967295".parse(), Ok(Xid::new(u32::MAX)));
        // pg_current_xact_id() after pg_resetwal --epoch 1.
        let x: Xid = "4294968029".parse().unwrap();
        assert_eq!((x.xid(), x.epoch()), (733, Some(1)));
        assert_eq!(x.as_full(), Some(4294968029));
        assert_eq!(x.to_string(), "4294968029");
        assert_eq!(RecoveryTarget::Xid(x).to_string(), "transaction 4294968029");
        assert_eq!(serde_json::to_string(&x).unwrap(), "4294968029");
        let big: Xid = " 18446744073709551615 ".parse().unwrap();
        assert_eq!((big.xid(), big.epoch()), (u32::MAX, Some(u32::MAX)));
        assert!(733u32 == Xid::full((7 << 32) | 733));
        assert!(734u32 != Xid::new(733));
    }

    #[test]
    fn xid_refusals() {
        for s in [
            "",
            "abc",
            "-1",
            "+5",
            "0x2dd",
            "7.0",
            "18446744073709551616",
            "1 2",
        ] {
            assert_eq!(s.parse::<Xid>(), Err(XidError::Invalid(s.into())), "{s}");
        }
        for s in ["0", "2", "4294967296", "4294967298"] {
            assert!(
                matches!(s.parse::<Xid>(), Err(XidError::NotNormal(_))),
                "{s}"
            );
        }
        assert!("4294967299".parse::<Xid>().is_ok());
    }

    #[test]
    fn times_keep_microseconds_as_postgres_does() {
        let t = parse_time("2026-11-25 14:02:17.1234567+00").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 123_457_000);
        let t = parse_time("2026-11-25T14:02:17.1234564Z").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_000);
        let t = parse_time("2026-11-25 14:02:17.5+00").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 500_000_000);
    }
}
