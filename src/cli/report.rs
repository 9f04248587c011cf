//! What the user sees while long work runs: a progress bar on a terminal,
//! nothing with --json or when stderr is not a TTY. Fed by events from
//! the library, never by log lines.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    pub fn new(json: bool) -> Reporter {
        let bar = if !json && std::io::stderr().is_terminal() {
            Some(ProgressBar::hidden())
        } else {
            None
        };
        Reporter { bar }
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

    /// A spinner with a changing message (replay LSN).
    pub fn status(&self, msg: String) {
        if let Some(b) = &self.bar {
            if b.length().is_some() {
                b.set_length(0);
                b.set_style(
                    ProgressStyle::with_template("{spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
            }
            b.set_message(msg);
            b.tick();
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
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
