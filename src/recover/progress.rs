//! Progress of a restore as numbers, for whoever shows it (the CLI's bar
//! and `--progress json` lines): which phase runs (download of the data
//! directory, then WAL replay), bytes done of the total, the replay
//! position, the rate over a sliding window and the time left at that
//! rate. Fed by `RecoverEvent`s; renders nothing.
//!
//! A rate is bytes moved between the oldest sample of the window (or the
//! last one before it) and *now*: a replay that stalls shows its rate
//! falling to 0 instead of the last good one, and no rate is given until
//! the samples span `MIN_SPAN` (one 16 MiB segment delivered 10 ms after
//! the first sample is not 1.6 GB/s). No rate, or a rate of 0, or an
//! unknown total, gives no ETA.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RecoverEvent;
use crate::pg::Lsn;
use crate::plan::ReplaySpan;

/// How far back a rate looks.
pub const WINDOW: Duration = Duration::from_secs(5);

/// The shortest span of samples that gives a rate.
pub const MIN_SPAN: Duration = Duration::from_millis(250);

/// Samples closer together than this are one (the newest kept): a window
/// holds at most `WINDOW / SPACING` of them, however often bytes arrive
/// (a download reports every 64 KiB piece).
const SPACING: Duration = Duration::from_millis(50);

/// Bytes per second over a sliding window of `(time, bytes done)` samples.
#[derive(Clone, Debug)]
pub struct RateWindow {
    window: Duration,
    /// Oldest first; at most one sample older than the newest minus
    /// `window` (the anchor the window's rate is measured from).
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub fn new(window: Duration) -> RateWindow {
        RateWindow {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Notes that `done` bytes were done at `at`. Samples out of time
    /// order are ignored (they would make no rate).
    pub fn push(&mut self, at: Instant, done: u64) {
        if self.samples.back().is_some_and(|(t, _)| *t > at) {
            return;
        }
        let n = self.samples.len();
        if n >= 2 && at.saturating_duration_since(self.samples[n - 2].0) < SPACING {
            self.samples.pop_back();
        }
        self.samples.push_back((at, done));
        let Some(from) = at.checked_sub(self.window) else {
            return;
        };
        while self.samples.get(1).is_some_and(|(t, _)| *t <= from) {
            self.samples.pop_front();
        }
    }

    /// Bytes per second from the window's anchor to `now`, given the
    /// newest sample's bytes; `None` until the samples span `MIN_SPAN`.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        // The last sample at or before the window's start, else the oldest.
        let from = now.checked_sub(self.window);
        let anchor = self
            .samples
            .iter()
            .take_while(|(t, _)| from.is_some_and(|f| *t <= f))
            .last()
            .or_else(|| self.samples.front())?;
        let (_, last) = self.samples.back()?;
        let span = now.checked_duration_since(anchor.0)?;
        if span < MIN_SPAN {
            return None;
        }
        Some(last.saturating_sub(anchor.1) as f64 / span.as_secs_f64())
    }
}

/// Seconds left to do `total` at `rate` bytes per second, having done
/// `done`: 0 once done, `None` without a total or a positive rate.
pub fn eta_seconds(done: u64, total: Option<u64>, rate: Option<f64>) -> Option<f64> {
    let total = total?;
    if done >= total {
        return Some(0.0);
    }
    let rate = rate.filter(|r| r.is_finite() && *r > 0.0)?;
    Some((total - done) as f64 / rate)
}

/// What runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Fetching, verifying and writing the data directory.
    Download,
    /// The server replaying WAL (from its start, before any position is
    /// known, to the end of recovery).
    Replay,
}

/// One `--progress json` line: where a phase stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressLine {
    pub phase: Phase,
    /// Download: bytes of the data directory written. Replay: bytes of WAL
    /// replayed since the backup's redo point.
    pub bytes_done: u64,
    /// The phase's total (replay: from the redo point to where recovery
    /// is expected to end), when known.
    pub bytes_total: Option<u64>,
    /// Replay: the replay position (`pg_last_wal_replay_lsn()`), once
    /// the server tells it.
    pub lsn: Option<Lsn>,
    /// Replay: where recovery is expected to end.
    pub end_lsn: Option<Lsn>,
    /// Over the last `WINDOW`.
    pub bytes_per_sec: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// Since the phase began.
    pub elapsed_seconds: f64,
    /// True on the phase's last line.
    pub done: bool,
    pub time: DateTime<Utc>,
}

/// The current phase, as the events told it.
#[derive(Clone, Debug)]
struct Current {
    phase: Phase,
    started: Instant,
    total: Option<u64>,
    done: u64,
    lsn: Option<Lsn>,
    span: Option<ReplaySpan>,
    rate: RateWindow,
    finished: bool,
}

impl Current {
    fn new(phase: Phase, now: Instant, total: Option<u64>, span: Option<ReplaySpan>) -> Current {
        let mut rate = RateWindow::new(WINDOW);
        rate.push(now, 0);
        Current {
            phase,
            started: now,
            total,
            done: 0,
            lsn: None,
            span,
            rate,
            finished: false,
        }
    }
}

/// Progress as events arrive; `line` says where it stands.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    current: Option<Current>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Takes one event, received at `now` (a replay position carries its
    /// own time). Returns the line that ends the phase this event ended,
    /// if it ended one (download at the server's start; replay at `Done`).
    pub fn event(&mut self, ev: &RecoverEvent, now: Instant) -> Option<ProgressLine> {
        match ev {
            RecoverEvent::Materializing { total_bytes } => {
                let ended = self.finish(now);
                self.current = Some(Current::new(Phase::Download, now, Some(*total_bytes), None));
                ended
            }
            RecoverEvent::Bytes(n) => {
                if let Some(c) = self.current.as_mut().filter(|c| c.phase == Phase::Download) {
                    c.done = c.done.saturating_add(*n);
                    c.rate.push(now, c.done);
                }
                None
            }
            RecoverEvent::Starting { replay, .. } => {
                let ended = self.finish(now);
                self.current = Some(Current::new(
                    Phase::Replay,
                    now,
                    replay.bytes(),
                    Some(*replay),
                ));
                ended
            }
            RecoverEvent::Replaying { lsn, at } => {
                if let Some(c) = self.current.as_mut().filter(|c| c.phase == Phase::Replay) {
                    // Positions only grow: a late sample changes nothing,
                    // and replay is never before where it starts (a lower
                    // bound from the startup process's title can be).
                    let lsn = c.span.map_or(*lsn, |s| s.start.max(*lsn));
                    let lsn = c.lsn.map_or(lsn, |l| l.max(lsn));
                    c.lsn = Some(lsn);
                    c.done = c.span.map_or(0, |s| s.done(lsn));
                    c.rate.push(*at, c.done);
                }
                None
            }
            RecoverEvent::Done => self.finish(now),
        }
    }

    /// Marks the current phase finished; its last line.
    fn finish(&mut self, now: Instant) -> Option<ProgressLine> {
        let c = self.current.as_mut().filter(|c| !c.finished)?;
        c.finished = true;
        self.line(now)
    }

    /// Where the current phase stands at `now` (None before the first).
    pub fn line(&self, now: Instant) -> Option<ProgressLine> {
        let c = self.current.as_ref()?;
        let rate = c.rate.rate(now);
        Some(ProgressLine {
            phase: c.phase,
            bytes_done: c.done,
            bytes_total: c.total,
            lsn: c.lsn,
            end_lsn: c.span.and_then(|s| s.end),
            bytes_per_sec: rate,
            eta_seconds: if c.finished {
                Some(0.0)
            } else {
                eta_seconds(c.done, c.total, rate)
            },
            elapsed_seconds: now.saturating_duration_since(c.started).as_secs_f64(),
            done: c.finished,
            time: Utc::now(),
        })
    }
}

/// How replay went (`restore --json`'s `replay`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayRate {
    /// The backup's redo point, where replay began.
    pub start_lsn: Lsn,
    /// Where recovery ended (`recovery_end_lsn`).
    pub end_lsn: Lsn,
    /// Bytes of WAL from start to end.
    pub bytes: u64,
    /// From the server's start to the end of recovery (promotion, pause
    /// or shutdown included).
    pub seconds: f64,
    /// `bytes / seconds` (0 when no time passed).
    pub bytes_per_sec: f64,
    /// The plan's estimate for the same: replaying its WAL plus the fixed
    /// start-up.
    pub estimated_seconds: f64,
}

impl ReplayRate {
    pub fn new(start_lsn: Lsn, end_lsn: Lsn, seconds: f64, estimated_seconds: f64) -> ReplayRate {
        let bytes = end_lsn.checked_sub(start_lsn).unwrap_or(0);
        ReplayRate {
            start_lsn,
            end_lsn,
            bytes,
            seconds,
            bytes_per_sec: if seconds > 0.0 {
                bytes as f64 / seconds
            } else {
                0.0
            },
            estimated_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_steady_rate_is_measured_over_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(WINDOW);
        // 10 MB/s, a sample every 100 ms, for 20 s.
        for i in 0..=200u64 {
            w.push(t0 + ms(100 * i), i * 1_000_000);
        }
        let r = w.rate(t0 + ms(20_000)).unwrap();
        assert!((r - 10e6).abs() < 1.0, "{r}");
        // The window holds what it needs, not all 20 s of samples.
        assert!(w.samples.len() <= 52, "{}", w.samples.len());
    }

    #[test]
    fn many_samples_a_second_keep_the_window_small() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(WINDOW);
        // 64 KiB a millisecond (65.5 MB/s) for 20 s.
        for i in 0..=20_000u64 {
            w.push(t0 + ms(i), i * 65_536);
        }
        let most = (WINDOW.as_millis() / SPACING.as_millis()) as usize + 5;
        assert!(w.samples.len() <= most, "{}", w.samples.len());
        let r = w.rate(t0 + ms(20_000)).unwrap();
        assert!((r - 65_536_000.0).abs() < 1.0, "{r}");
        // The newest sample is always kept as it came.
        assert_eq!(w.samples.back(), Some(&(t0 + ms(20_000), 20_000 * 65_536)));
    }

    #[test]
    fn the_rate_follows_a_change_within_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(WINDOW);
        let mut done = 0;
        for i in 0..=100u64 {
            w.push(t0 + ms(100 * i), done);
            done += 1_000_000; // 10 MB/s for 10 s
        }
        let fast = t0 + ms(10_000);
        for i in 1..=60u64 {
            done += 10_000_000; // then 100 MB/s for 6 s
            w.push(fast + ms(100 * i), done);
        }
        let r = w.rate(fast + ms(6_000)).unwrap();
        assert!((r - 100e6).abs() / 100e6 < 0.01, "{r}");
    }

    #[test]
    fn no_rate_from_too_short_a_span_and_no_division_by_zero() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(WINDOW);
        assert_eq!(w.rate(t0), None);
        w.push(t0, 0);
        assert_eq!(w.rate(t0), None);
        // 16 MB within 10 ms of the first sample is no rate yet.
        w.push(t0 + ms(10), 16_000_000);
        assert_eq!(w.rate(t0 + ms(10)), None);
        assert_eq!(w.rate(t0 + MIN_SPAN), Some(16_000_000.0 / 0.25));
        // Two samples at the same instant.
        let mut same = RateWindow::new(WINDOW);
        same.push(t0, 5);
        same.push(t0, 7);
        assert_eq!(same.rate(t0), None);
        // A sample out of order is ignored.
        same.push(t0 + ms(1000), 100);
        same.push(t0 + ms(500), 1_000_000);
        assert_eq!(same.rate(t0 + ms(1000)), Some(95.0));
    }

    #[test]
    fn a_stall_lets_the_rate_fall_to_zero_and_gives_no_eta() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(WINDOW);
        for i in 0..=20u64 {
            w.push(t0 + ms(100 * i), i * 1_000_000);
        }
        // 2 s later nothing moved: the rate over the window falls.
        let later = w.rate(t0 + ms(4_000)).unwrap();
        assert!(later < 10e6 && later > 0.0, "{later}");
        // Past the window, nothing moved within it.
        let stalled = w.rate(t0 + ms(20_000));
        assert_eq!(stalled, Some(0.0));
        assert_eq!(eta_seconds(20_000_000, Some(40_000_000), stalled), None);
    }

    #[test]
    fn eta_is_what_is_left_at_the_rate() {
        assert_eq!(eta_seconds(0, Some(100), Some(10.0)), Some(10.0));
        assert_eq!(eta_seconds(100, Some(100), Some(10.0)), Some(0.0));
        assert_eq!(eta_seconds(150, Some(100), None), Some(0.0));
        // End unknown, rate unknown, rate 0 or not a number: no ETA.
        assert_eq!(eta_seconds(10, None, Some(10.0)), None);
        assert_eq!(eta_seconds(10, Some(100), None), None);
        assert_eq!(eta_seconds(10, Some(100), Some(0.0)), None);
        assert_eq!(eta_seconds(10, Some(100), Some(f64::NAN)), None);
        assert_eq!(eta_seconds(10, Some(100), Some(f64::INFINITY)), None);
    }

    #[test]
    fn the_eta_only_falls_while_the_rate_is_steady() {
        let t0 = Instant::now();
        let mut tr = Tracker::new();
        let span = ReplaySpan {
            start: Lsn::new(0x100_0000),
            end: Some(Lsn::new(0x100_0000 + 200_000_000)),
        };
        tr.event(
            &RecoverEvent::Starting {
                port: 5432,
                replay: span,
            },
            t0,
        );
        let mut last = f64::INFINITY;
        let mut etas = 0;
        // 20 MB/s, sampled every 10 ms (as watch samples once connected)
        // and the ETA looked at every 100 ms.
        for i in 1..=900u64 {
            let at = t0 + ms(10 * i);
            let lsn = Lsn::new(span.start.as_u64() + i * 200_000);
            tr.event(&RecoverEvent::Replaying { lsn, at }, at);
            if i % 10 == 0 {
                let line = tr.line(at).unwrap();
                assert_eq!(line.phase, Phase::Replay);
                assert_eq!(line.lsn, Some(lsn));
                assert_eq!(line.bytes_done, i * 200_000);
                let Some(eta) = line.eta_seconds else {
                    continue;
                };
                etas += 1;
                assert!(eta <= last + 1e-9, "ETA rose from {last} to {eta} at {i}");
                last = eta;
                let rate = line.bytes_per_sec.unwrap();
                assert!((rate - 20e6).abs() / 20e6 < 0.05, "{rate}");
            }
        }
        assert!(etas >= 85, "{etas} ETAs");
        // 9 s of 10 done at 20 MB/s: about 1 s left.
        assert!((last - 1.0).abs() < 0.1, "{last}");
    }

    #[test]
    fn phases_follow_the_events_and_each_ends_with_a_done_line() {
        let t0 = Instant::now();
        let mut tr = Tracker::new();
        assert_eq!(tr.line(t0), None);
        assert_eq!(
            tr.event(&RecoverEvent::Materializing { total_bytes: 1000 }, t0),
            None
        );
        tr.event(&RecoverEvent::Bytes(400), t0 + ms(500));
        tr.event(&RecoverEvent::Bytes(600), t0 + ms(1000));
        let d = tr.line(t0 + ms(1000)).unwrap();
        assert_eq!(
            (d.phase, d.bytes_done, d.bytes_total, d.done),
            (Phase::Download, 1000, Some(1000), false)
        );
        assert_eq!(d.bytes_per_sec, Some(1000.0));
        assert_eq!(d.eta_seconds, Some(0.0));
        // The server starts: the download's last line.
        let span = ReplaySpan {
            start: Lsn::new(1000),
            end: None,
        };
        let ended = tr
            .event(
                &RecoverEvent::Starting {
                    port: 1,
                    replay: span,
                },
                t0 + ms(1100),
            )
            .unwrap();
        assert_eq!((ended.phase, ended.done), (Phase::Download, true));
        // Replay with its end unknown: bytes, no total, no ETA; before the
        // first position, none.
        let r = tr.line(t0 + ms(1100)).unwrap();
        assert_eq!((r.phase, r.lsn, r.bytes_done), (Phase::Replay, None, 0));
        // Download bytes arriving late change nothing now.
        tr.event(&RecoverEvent::Bytes(5), t0 + ms(1200));
        let at = t0 + ms(2100);
        tr.event(
            &RecoverEvent::Replaying {
                lsn: Lsn::new(3000),
                at,
            },
            at,
        );
        let r = tr.line(at).unwrap();
        assert_eq!((r.bytes_done, r.bytes_total), (2000, None));
        assert_eq!(r.bytes_per_sec, Some(2000.0));
        assert_eq!(r.eta_seconds, None);
        // An older position does not move replay back.
        tr.event(
            &RecoverEvent::Replaying {
                lsn: Lsn::new(2000),
                at: at + ms(10),
            },
            at + ms(10),
        );
        assert_eq!(tr.line(at + ms(10)).unwrap().lsn, Some(Lsn::new(3000)));
        // Nor before the replay's start.
        let mut early = Tracker::new();
        early.event(
            &RecoverEvent::Starting {
                port: 1,
                replay: span,
            },
            t0,
        );
        early.event(
            &RecoverEvent::Replaying {
                lsn: Lsn::new(10),
                at: t0,
            },
            t0,
        );
        let e = early.line(t0).unwrap();
        assert_eq!((e.lsn, e.bytes_done), (Some(Lsn::new(1000)), 0));
        let last = tr.event(&RecoverEvent::Done, at + ms(20)).unwrap();
        assert_eq!(
            (last.phase, last.done, last.lsn, last.eta_seconds),
            (Phase::Replay, true, Some(Lsn::new(3000)), Some(0.0))
        );
        // Done twice ends nothing more.
        assert_eq!(tr.event(&RecoverEvent::Done, at + ms(30)), None);
    }

    #[test]
    fn a_progress_line_round_trips_through_json() {
        let line = ProgressLine {
            phase: Phase::Replay,
            bytes_done: 123_456_789,
            bytes_total: Some(987_654_321),
            lsn: Some("1/5A3B0C8".parse().unwrap()),
            end_lsn: Some("1/9000000".parse().unwrap()),
            bytes_per_sec: Some(52_300_000.5),
            eta_seconds: Some(16.5),
            elapsed_seconds: 2.25,
            done: false,
            time: "2026-11-25T14:02:17.123456Z".parse().unwrap(),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(!text.contains('\n'), "one line: {text}");
        assert_eq!(
            text,
            r#"{"phase":"replay","bytes_done":123456789,"bytes_total":987654321,"lsn":"1/5A3B0C8","end_lsn":"1/9000000","bytes_per_sec":52300000.5,"eta_seconds":16.5,"elapsed_seconds":2.25,"done":false,"time":"2026-11-25T14:02:17.123456Z"}"#
        );
        let back: ProgressLine = serde_json::from_str(&text).unwrap();
        assert_eq!(back, line);
        // Unknowns are null, not missing: every line has every field.
        let download = ProgressLine {
            phase: Phase::Download,
            bytes_total: None,
            lsn: None,
            end_lsn: None,
            bytes_per_sec: None,
            eta_seconds: None,
            ..line
        };
        let v: serde_json::Value = serde_json::to_value(&download).unwrap();
        assert_eq!(v["phase"], "download");
        for k in [
            "bytes_total",
            "lsn",
            "end_lsn",
            "bytes_per_sec",
            "eta_seconds",
        ] {
            assert!(v[k].is_null(), "{k}: {v}");
        }
        assert_eq!(v.as_object().unwrap().len(), 10);
        let back: ProgressLine = serde_json::from_value(v).unwrap();
        assert_eq!(back, download);
    }

    #[test]
    fn the_replay_rate_of_a_finished_restore() {
        let r = ReplayRate::new(Lsn::new(1_000), Lsn::new(101_000), 2.0, 3.0);
        assert_eq!((r.bytes, r.bytes_per_sec), (100_000, 50_000.0));
        let instant = ReplayRate::new(Lsn::new(1_000), Lsn::new(1_000), 0.0, 3.0);
        assert_eq!((instant.bytes, instant.bytes_per_sec), (0, 0.0));
    }
}
