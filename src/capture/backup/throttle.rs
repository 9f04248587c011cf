//! `pitr backup --max-rate`: one token bucket shared by every copy worker,
//! charged with the bytes read from the data directory, so that a backup
//! never reads faster than the operator allows ("a backup must not starve
//! the database it protects"), however many `--jobs` run.
//!
//! The bucket holds no burst: it is a virtual clock (`paid_until`) that
//! every read advances by `bytes / rate`; the worker whose read pushed the
//! clock sleeps until it. So the copy takes at least `total bytes / rate`
//! from its first read, and never averages more than the rate over any
//! stretch longer than one read (reads are at most `SLICE` bytes). Workers run on
//! blocking threads (`spawn_blocking`), so the wait is a thread sleep.
//!
//! `parse_rate` reads the flag: plain bytes per second, or a number with
//! a binary suffix `k`, `M`, `G` (KiB, MiB, GiB; case-insensitive, an
//! optional trailing `B` or `iB`), as `pg_basebackup --max-rate` counts
//! kilobytes in 1024s.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a `--max-rate` value is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RateError {
    #[error(
        "--max-rate {0:?} is not a rate: give bytes per second, e.g. 50M, 500k, 1G or 1048576"
    )]
    NotARate(String),
    #[error("--max-rate must be more than 0 bytes per second")]
    Zero,
}

/// Reads `50M`, `1G`, `500k`, `1048576`, `1.5M`, `64KiB` (binary
/// multiples) as bytes per second.
pub fn parse_rate(text: &str) -> Result<NonZeroU64, RateError> {
    let bytes = parse_size(text).ok_or_else(|| RateError::NotARate(text.to_string()))?;
    NonZeroU64::new(bytes).ok_or(RateError::Zero)
}

/// A size as operators write one: bytes, or a number (decimals allowed)
/// with `k`, `M` or `G` (binary multiples; `kB`, `KiB` alike).
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    if number.contains('.') {
        let v: f64 = number.parse().ok()?;
        let b = (v * mult as f64).floor();
        (b.is_finite() && b < u64::MAX as f64).then_some(b as u64)
    } else {
        number.parse::<u64>().ok()?.checked_mul(mult)
    }
}

/// The most bytes one read takes before it is charged: small enough that
/// the rate holds over a second, large enough to read efficiently.
pub const SLICE: usize = 256 << 10;

/// The shared bucket (see the module comment).
#[derive(Debug)]
pub struct Throttle {
    rate: NonZeroU64,
    paid_until: Mutex<Option<Instant>>,
    /// Nanoseconds workers slept, summed over workers.
    slept_nanos: AtomicU64,
}

impl Throttle {
    pub fn new(rate: NonZeroU64) -> Throttle {
        Throttle {
            rate,
            paid_until: Mutex::new(None),
            slept_nanos: AtomicU64::new(0),
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate.get()
    }

    /// Seconds the workers spent waiting for the bucket, summed.
    pub fn slept_seconds(&self) -> f64 {
        self.slept_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Charges `bytes` just read and blocks the calling thread until the
    /// bucket has paid for them.
    pub fn charge(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate.get() as f64);
        let now = Instant::now();
        let until = {
            // A poisoned lock only means another worker panicked holding
            // it; the clock inside is still a valid instant.
            let mut paid = self
                .paid_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let from = match *paid {
                Some(p) if p > now => p,
                _ => now,
            };
            let until = from + cost;
            *paid = Some(until);
            until
        };
        let wait = until.saturating_duration_since(now);
        if !wait.is_zero() {
            std::thread::sleep(wait);
            self.slept_nanos
                .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_binary_suffixes_and_refuse_garbage() {
        let r = |s: &str| parse_rate(s).map(NonZeroU64::get);
        assert_eq!(r("1048576"), Ok(1048576));
        assert_eq!(r("500k"), Ok(500 * 1024));
        assert_eq!(r("500K"), Ok(500 * 1024));
        assert_eq!(r("50M"), Ok(50 << 20));
        assert_eq!(r("50MB"), Ok(50 << 20));
        assert_eq!(r("64KiB"), Ok(64 << 10));
        assert_eq!(r("1G"), Ok(1 << 30));
        assert_eq!(r("1.5M"), Ok(3 << 19));
        assert_eq!(r("100b"), Ok(100));
        assert_eq!(r("0"), Err(RateError::Zero));
        assert_eq!(r("0M"), Err(RateError::Zero));
        for bad in [
            "",
            "M",
            "fast",
            "-5M",
            "5T",
            "5 M",
            "1.",
            ".5M",
            "1e6",
            "99999999999999999999",
            "17179869184G",
        ] {
            assert!(
                matches!(r(bad), Err(RateError::NotARate(_))),
                "{bad:?}: {:?}",
                r(bad)
            );
        }
    }

    /// Four threads reading 64 KiB pieces at 1 MiB/s: 1.5 MiB takes at
    /// least 1.5 s, whatever the threads do.
    #[test]
    fn shared_bucket_bounds_all_workers_together() {
        let t = std::sync::Arc::new(Throttle::new(NonZeroU64::new(1 << 20).unwrap()));
        let piece = 64 << 10;
        let pieces = 24; // 1.5 MiB
        let start = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..pieces / 4 {
                        t.charge(piece);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let floor = (pieces * piece) as f64 / (1 << 20) as f64;
        assert!(elapsed >= floor, "{elapsed} s < {floor} s");
        assert!(t.slept_seconds() > 0.0);
    }
}
