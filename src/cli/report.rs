//! What the user sees while long work runs, on stderr, fed by events from
//! the library, never by log lines. `--progress auto` (the default): a
//! bar on a terminal, nothing with --json or when stderr is not a TTY;
//! `bar`: a bar on a terminal even with --json; `json`: one JSON object a
//! line, once a second and at the end of each phase (`progress::
//! ProgressLine`, docs/commands.md), so stdout stays one document;
//! `none`: nothing. Restores show the numbers `recover::progress::Tracker`
//! computes: bytes of the phase's total, the rate over a sliding window,
//! the ETA.

use std::io::IsTerminal;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::plan::explain::human_bytes;
use crate::recover::progress::{Phase, ProgressLine, Tracker};
use crate::recover::RecoverEvent;

use super::args::ProgressMode;

/// How often `--progress json` prints a line.
const LINE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    tracker: Arc<Mutex<Tracker>>,
    lines: Option<Arc<Lines>>,
}

/// The `--progress json` printer: a thread that prints the tracker's line
/// once a second until told to stop.
struct Lines {
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Reporter {
    /// `--progress auto`: a bar on a terminal unless `json`.
    pub fn new(json: bool) -> Reporter {
        Reporter::with_mode(ProgressMode::Auto, json)
    }

    pub fn with_mode(mode: ProgressMode, json: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = match mode {
            ProgressMode::Auto => !json && terminal,
            ProgressMode::Bar => terminal,
            ProgressMode::Json | ProgressMode::None => false,
        }
        .then(ProgressBar::hidden);
        let tracker = Arc::new(Mutex::new(Tracker::new()));
        let lines = (mode == ProgressMode::Json).then(|| Arc::new(Lines::start(tracker.clone())));
        Reporter {
            bar,
            tracker,
            lines,
        }
    }

    /// Starts a byte-counting bar.
    pub fn bytes(&self, total: u64, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            b.set_length(total);
            b.set_position(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(msg.to_string());
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// One recovery event: the tracker takes it, the bar shows where it
    /// stands, and a phase it ended gets its last JSON line.
    pub fn recover_event(&self, ev: RecoverEvent) {
        let now = Instant::now();
        let Ok(mut tracker) = self.tracker.lock() else {
            return;
        };
        let ended = tracker.event(&ev, now);
        if self.lines.is_some() {
            // Printed under the lock, so no older line can follow it.
            if let Some(line) = ended {
                print_line(&line);
            }
        }
        let Some(b) = &self.bar else {
            return;
        };
        // Drawn under the lock too: events come from several threads (the
        // download's workers), and a bar must not go back.
        let line = tracker.line(now);
        match (&ev, line) {
            (RecoverEvent::Materializing { total_bytes }, _) => {
                start_bar(b, Some(*total_bytes), "restore", String::new());
            }
            (RecoverEvent::Starting { port, .. }, Some(line)) => {
                let msg = format!("starting the server on port {port}");
                start_bar(b, line.bytes_total, "replay", msg);
            }
            (RecoverEvent::Done, _) => b.finish_and_clear(),
            (_, Some(line)) => {
                b.set_message(describe(&line));
                b.set_position(line.bytes_done);
            }
            (_, None) => {}
        }
    }

    /// Ends the bar and the JSON lines (the last line of a phase is
    /// printed when the phase ends, see `recover_event`).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(l) = &self.lines {
            l.stop();
        }
    }
}

/// Shows `bar` as a byte bar of `total` (a spinner when unknown), drawn
/// once it is set up (a frame half old, half new would show the last
/// phase's rate beside the new one's total).
fn start_bar(b: &ProgressBar, total: Option<u64>, prefix: &str, msg: String) {
    b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    b.set_position(0);
    let style = match total {
        Some(t) => {
            b.set_length(t);
            ProgressStyle::with_template("{prefix:>7} [{bar:16}] {percent:>3}% {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ")
        }
        None => {
            b.unset_length();
            ProgressStyle::with_template("{prefix:>7} {spinner} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
        }
    };
    b.set_style(style);
    b.set_prefix(prefix.to_string());
    b.set_message(msg);
    b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
}

/// The bar's message: how far (the replay position against the plan's
/// end; bytes of the download), the rate and the ETA. Narrow enough that
/// bar and message fit 80 columns.
fn describe(line: &ProgressLine) -> String {
    let mut parts = Vec::new();
    match (line.phase, line.lsn) {
        (Phase::Replay, Some(lsn)) => parts.push(match line.end_lsn {
            Some(end) => format!("{lsn} of {end}"),
            None => lsn.to_string(),
        }),
        (Phase::Replay, None) => parts.push("starting".into()),
        (Phase::Download, _) => parts.push(match line.bytes_total {
            Some(t) => format!("{} of {}", human_bytes(line.bytes_done), human_bytes(t)),
            None => human_bytes(line.bytes_done),
        }),
    }
    if let Some(r) = line.bytes_per_sec {
        parts.push(format!("{:.1} MB/s", r / 1e6));
    }
    if let Some(eta) = line.eta_seconds {
        parts.push(format!("ETA {}", eta_text(eta)));
    }
    parts.join("  ")
}

/// `42s`, `3m05s`, `2h07m`.
pub fn eta_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn print_line(line: &ProgressLine) {
    if let Ok(text) = serde_json::to_string(line) {
        eprintln!("{text}");
    }
}

impl Lines {
    fn start(tracker: Arc<Mutex<Tracker>>) -> Lines {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LINE_EVERY) {
                let Ok(t) = tracker.lock() else {
                    return;
                };
                // A finished phase printed its last line when it ended.
                if let Some(line) = t.line(Instant::now()).filter(|l| !l.done) {
                    print_line(&line);
                }
            }
        });
        Lines {
            stop: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Stops the thread (idempotent) and waits for it.
    fn stop(&self) {
        if let Ok(mut s) = self.stop.lock() {
            s.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Peak resident set size of this process, in bytes (0 if unknown).
pub fn peak_rss_bytes() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    // Linux reports kilobytes.
    getrusage(UsageWho::RUSAGE_SELF)
        .ok()
        .and_then(|u| u64::try_from(u.max_rss()).ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_reads_as_a_person_would_say_it() {
        assert_eq!(eta_text(0.2), "0s");
        assert_eq!(eta_text(42.4), "42s");
        assert_eq!(eta_text(185.0), "3m05s");
        assert_eq!(eta_text(7620.0), "2h07m");
        assert_eq!(eta_text(-3.0), "0s");
    }

    #[test]
    fn the_bar_says_where_replay_is_how_fast_and_how_long() {
        let line = ProgressLine {
            phase: Phase::Replay,
            bytes_done: 10,
            bytes_total: Some(100),
            lsn: Some("0/5A3B0C8".parse().unwrap()),
            end_lsn: Some("0/17800000".parse().unwrap()),
            bytes_per_sec: Some(52_340_000.0),
            eta_seconds: Some(65.0),
            elapsed_seconds: 1.0,
            done: false,
            time: chrono::Utc::now(),
        };
        let said = describe(&line);
        assert_eq!(said, "0/5A3B0C8 of 0/17800000  52.3 MB/s  ETA 1m05s");
        // " replay [================] 100% " and the message: 80 columns.
        assert!(32 + said.len() <= 80, "{said}");
        let open = ProgressLine {
            end_lsn: None,
            eta_seconds: None,
            ..line.clone()
        };
        assert_eq!(describe(&open), "0/5A3B0C8  52.3 MB/s");
        let early = ProgressLine {
            lsn: None,
            bytes_per_sec: None,
            eta_seconds: None,
            ..line.clone()
        };
        assert_eq!(describe(&early), "starting");
        let download = ProgressLine {
            phase: Phase::Download,
            bytes_done: 3 << 20,
            bytes_total: Some(22 << 20),
            lsn: None,
            end_lsn: None,
            eta_seconds: Some(0.4),
            ..line
        };
        assert_eq!(
            describe(&download),
            "3.0 MiB of 22.0 MiB  52.3 MB/s  ETA 0s"
        );
    }
}
