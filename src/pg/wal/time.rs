//! Postgres time values as `DateTime<Utc>`: `TimestampTz` (microseconds since
//! 2000-01-01 00:00:00 UTC; commit and restore-point times, see
//! `timestamp.h`) and `pg_time_t` (Unix seconds; CheckPoint.time, see
//! `pg_control.h`). Out-of-range values (including Postgres' ±infinity)
//! give `None`, never a panic.

use chrono::{DateTime, Utc};

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
/// (POSTGRES_EPOCH_JDATE − UNIX_EPOCH_JDATE) · SECS_PER_DAY · USECS_PER_SEC.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A `TimestampTz` (µs since 2000-01-01 UTC) as a UTC time.
/// Mirrors `timestamptz_to_time_t`, keeping the microseconds.
pub fn timestamptz_to_utc(pg_micros: i64) -> Option<DateTime<Utc>> {
    let unix_micros = pg_micros.checked_add(PG_EPOCH_OFFSET_MICROS)?;
    DateTime::<Utc>::from_timestamp_micros(unix_micros)
}

/// A `pg_time_t` (seconds since the Unix epoch) as a UTC time.
pub fn pg_time_to_utc(unix_secs: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(unix_secs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_epoch_is_2000() {
        let t = timestamptz_to_utc(0).unwrap();
        assert_eq!(t.to_rfc3339(), "2000-01-01T00:00:00+00:00");
        let t = timestamptz_to_utc(1).unwrap();
        assert_eq!(t.timestamp_subsec_micros(), 1);
        let t = timestamptz_to_utc(-1).unwrap();
        assert_eq!(t.to_rfc3339(), "1999-12-31T23:59:59.999999+00:00");
    }

    #[test]
    fn extremes_do_not_panic() {
        // DT_NOBEGIN / DT_NOEND are i64::MIN / i64::MAX.
        assert_eq!(timestamptz_to_utc(i64::MAX), None);
        assert_eq!(timestamptz_to_utc(i64::MIN), None);
        assert_eq!(pg_time_to_utc(i64::MAX), None);
        assert_eq!(
            pg_time_to_utc(0).unwrap().to_rfc3339(),
            "1970-01-01T00:00:00+00:00"
        );
    }
}
