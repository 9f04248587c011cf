//! Timeline `.history` files: the ancestry of a timeline and where each
//! ancestor ended. Mirrors `src/backend/access/transam/timeline.c`
//! (readTimeLineHistory, tliOfPointInHistory, tliInHistory).
//!
//! A file `N.history` (N in hex) lists, one per line, each ancestor of
//! timeline N as `<parent TLI, decimal>\t<switchpoint %X/%X>\t<reason>`: the
//! parent's history ends, and its child's begins, at the switchpoint. Blank
//! lines and `#` comments are ignored. Invariants of a parsed history: parent
//! TLIs strictly increase and are all below the file's TLI (as the server
//! checks), and switchpoints never decrease (which the server assumes).
//! Timeline 1 has no file; `TimelineHistory::root()` stands for it.

use super::lsn::{Lsn, TimelineId};

/// What is wrong with a `.history` file. Line numbers are 1-based.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("{file} line {line}: {text:?} is not a history entry: expected {expected}")]
    Syntax {
        file: String,
        line: usize,
        text: String,
        expected: &'static str,
    },
    #[error("{file} line {line}: timeline {tli} follows timeline {prev}: timeline IDs must increase; the file is corrupt")]
    NotIncreasing {
        file: String,
        line: usize,
        tli: TimelineId,
        prev: TimelineId,
    },
    #[error("{file} line {line}: ancestor timeline {parent} is not below the file's own timeline {child}: the file is corrupt or misnamed")]
    NotBelowChild {
        file: String,
        line: usize,
        parent: TimelineId,
        child: TimelineId,
    },
    #[error("{file} line {line}: switchpoint {lsn} is before the previous switchpoint {prev}: the file is corrupt")]
    SwitchpointBackwards {
        file: String,
        line: usize,
        lsn: Lsn,
        prev: Lsn,
    },
}

/// One line of a history file: `parent` ended at `switchpoint`, for `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub parent: TimelineId,
    /// The first LSN not on `parent`: where the next timeline begins.
    pub switchpoint: Lsn,
    /// As recorded (getRecoveryStopReason), e.g. `at restore point "rp1"`.
    pub reason: String,
}

/// One timeline's stretch of a history (TimeLineHistoryEntry): WAL in
/// `begin..end` was written on `tli`. `begin` is zero for the oldest;
/// `end` is `None` for the history's own timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySpan {
    pub tli: TimelineId,
    pub begin: Lsn,
    pub end: Option<Lsn>,
}

/// The parsed history of one timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineHistory {
    tli: TimelineId,
    entries: Vec<HistoryEntry>,
}

impl TimelineHistory {
    /// Timeline 1, which has no history file.
    pub fn root() -> TimelineHistory {
        TimelineHistory {
            tli: TimelineId::FIRST,
            entries: Vec::new(),
        }
    }

    /// Parses the text of `<tli>.history` (readTimeLineHistory). Like the
    /// server, only the first two fields are checked; the reason is the
    /// rest of the line, trimmed.
    pub fn parse(tli: TimelineId, text: &str) -> Result<TimelineHistory, HistoryError> {
        let file = format!("{:08X}.history", tli.get());
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let syntax = |expected| HistoryError::Syntax {
                file: file.clone(),
                line,
                text: raw.to_string(),
                expected,
            };
            // sscanf("%u\t%X/%X"): whitespace separates the fields.
            let (tli_text, rest) = split_field(body);
            let parent =
                parse_decimal_tli(tli_text).ok_or_else(|| syntax("a decimal timeline ID first"))?;
            let (lsn_text, rest) = split_field(rest);
            let switchpoint: Lsn = lsn_text
                .parse()
                .map_err(|_| syntax("a switchpoint LSN like 0/3000F40 after the timeline ID"))?;

            if let Some(prev) = entries.last() {
                if parent <= prev.parent {
                    return Err(HistoryError::NotIncreasing {
                        file,
                        line,
                        tli: parent,
                        prev: prev.parent,
                    });
                }
                if switchpoint < prev.switchpoint {
                    return Err(HistoryError::SwitchpointBackwards {
                        file,
                        line,
                        lsn: switchpoint,
                        prev: prev.switchpoint,
                    });
                }
            }
            if parent >= tli {
                return Err(HistoryError::NotBelowChild {
                    file,
                    line,
                    parent,
                    child: tli,
                });
            }
            entries.push(HistoryEntry {
                parent,
                switchpoint,
                reason: rest.trim().to_string(),
            });
        }
        Ok(TimelineHistory { tli, entries })
    }

    /// The timeline this history belongs to.
    pub fn tli(&self) -> TimelineId {
        self.tli
    }

    /// The file's entries, oldest ancestor first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// Every timeline of this history with the LSN range written on it,
    /// oldest first, ending with this timeline (open-ended). Postgres'
    /// readTimeLineHistory builds the same list newest first.
    pub fn ancestors(&self) -> Vec<HistorySpan> {
        let mut spans = Vec::with_capacity(self.entries.len() + 1);
        let mut begin = Lsn::ZERO;
        for e in &self.entries {
            spans.push(HistorySpan {
                tli: e.parent,
                begin,
                end: Some(e.switchpoint),
            });
            begin = e.switchpoint;
        }
        spans.push(HistorySpan {
            tli: self.tli,
            begin,
            end: None,
        });
        spans
    }

    /// The timeline that WAL position `lsn` belongs to in this history
    /// (tliOfPointInHistory): the span with `begin <= lsn < end`. A
    /// switchpoint itself belongs to the child.
    pub fn tli_of_point(&self, lsn: Lsn) -> TimelineId {
        // Spans cover 0.. without gaps, so the first entry whose end is past
        // `lsn` is the answer; otherwise it is this timeline.
        self.entries
            .iter()
            .find(|e| lsn < e.switchpoint)
            .map_or(self.tli, |e| e.parent)
    }

    /// Whether `tli` is this timeline or one of its ancestors (tliInHistory).
    pub fn is_ancestor(&self, tli: TimelineId) -> bool {
        tli == self.tli || self.entries.iter().any(|e| e.parent == tli)
    }
}

/// The next whitespace-delimited field and the text after it.
fn split_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// TLIs inside history files are decimal (`%u`), unlike file names.
fn parse_decimal_tli(s: &str) -> Option<TimelineId> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    TimelineId::new(s.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TLI2: &str = include_str!("../../testdata/pg15/00000002.history");
    const TLI3: &str = include_str!("../../testdata/pg15/00000003.history");

    fn tli(v: u32) -> TimelineId {
        TimelineId::new(v).unwrap()
    }

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    // Expected values are those of the committed fixtures (two real PITRs on
    // PostgreSQL 15: to restore point "rp1", then along timeline 2 to a
    // time); update them if the fixture script is rerun.
    const SWITCH_1: &str = "0/3000F40";
    const SWITCH_2: &str = "0/3001EC8";

    #[test]
    fn parses_the_real_timeline_2_history() {
        let h = TimelineHistory::parse(tli(2), TLI2).unwrap();
        assert_eq!(h.tli(), tli(2));
        assert_eq!(
            h.entries(),
            [HistoryEntry {
                parent: tli(1),
                switchpoint: lsn(SWITCH_1),
                reason: "at restore point \"rp1\"".into(),
            }]
        );
        assert_eq!(
            h.ancestors(),
            [
                HistorySpan {
                    tli: tli(1),
                    begin: Lsn::ZERO,
                    end: Some(lsn(SWITCH_1))
                },
                HistorySpan {
                    tli: tli(2),
                    begin: lsn(SWITCH_1),
                    end: None
                },
            ]
        );
    }

    #[test]
    fn parses_the_real_timeline_3_history() {
        // The file copies its parent's lines (plus a blank line), then adds
        // its own; the time reason ends in a newline of its own.
        assert!(TLI3.starts_with(TLI2));
        let h = TimelineHistory::parse(tli(3), TLI3).unwrap();
        let e = h.entries();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            TimelineHistory::parse(tli(2), TLI2).unwrap().entries()[0]
        );
        assert_eq!(e[1].parent, tli(2));
        assert_eq!(e[1].switchpoint, lsn(SWITCH_2));
        assert!(e[1].reason.starts_with("before 20"), "{}", e[1].reason);
        assert!(e[1].reason.ends_with("+00"), "{}", e[1].reason);

        let a = h.ancestors();
        assert_eq!(a.iter().map(|s| s.tli.get()).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(a[1].begin, lsn(SWITCH_1));
        assert_eq!(a[1].end, Some(lsn(SWITCH_2)));
        assert_eq!(a[2].begin, lsn(SWITCH_2));

        assert_eq!(h.tli_of_point(Lsn::ZERO), tli(1));
        assert_eq!(h.tli_of_point(lsn("0/2000028")), tli(1));
        assert_eq!(h.tli_of_point(lsn(SWITCH_1)), tli(2));
        assert_eq!(h.tli_of_point(lsn("0/3001EC7")), tli(2));
        assert_eq!(h.tli_of_point(lsn(SWITCH_2)), tli(3));
        assert_eq!(h.tli_of_point(lsn("FFFFFFFF/FFFFFFFF")), tli(3));

        assert!(h.is_ancestor(tli(1)));
        assert!(h.is_ancestor(tli(2)));
        assert!(h.is_ancestor(tli(3)));
        assert!(!h.is_ancestor(tli(4)));
    }

    #[test]
    fn root_has_no_ancestors() {
        let r = TimelineHistory::root();
        assert_eq!(r.tli(), TimelineId::FIRST);
        assert!(r.entries().is_empty());
        assert_eq!(
            r.ancestors(),
            [HistorySpan {
                tli: tli(1),
                begin: Lsn::ZERO,
                end: None
            }]
        );
        assert_eq!(r.tli_of_point(lsn("5/0")), tli(1));
        assert!(r.is_ancestor(tli(1)));
        assert!(!r.is_ancestor(tli(2)));
        assert_eq!(TimelineHistory::parse(tli(1), "").unwrap(), r);
    }

    #[test]
    fn comments_blank_lines_and_gaps_in_timelines() {
        // A skipped TLI (3 was abandoned) and TLIs above 9: decimal, not hex.
        let text = "# made by hand\n\n  1\t0/3000000\tno recovery target specified\n\
                    \n2 0/4000000 reached consistency\n10\t1/0\tbefore LSN 1/0\n\n";
        let h = TimelineHistory::parse(tli(16), text).unwrap();
        let tlis: Vec<u32> = h.ancestors().iter().map(|s| s.tli.get()).collect();
        assert_eq!(tlis, [1, 2, 10, 16]);
        assert_eq!(h.entries()[1].reason, "reached consistency");
        assert_eq!(h.entries()[2].reason, "before LSN 1/0");
        assert!(!h.is_ancestor(tli(3)));
        assert_eq!(h.tli_of_point(lsn("0/FFFFFFFF")), tli(10));
        // A line with no reason is fine, as in the server.
        assert!(TimelineHistory::parse(tli(2), "1\t0/100\n").is_ok());
    }

    #[test]
    fn malformed_histories_are_rejected_with_the_line() {
        let err = |t: u32, text: &str| TimelineHistory::parse(tli(t), text).unwrap_err();
        assert!(matches!(
            err(2, "x\t0/1\tr\n"),
            HistoryError::Syntax { line: 1, .. }
        ));
        assert!(matches!(
            err(2, "0x1\t0/1\tr\n"),
            HistoryError::Syntax { line: 1, .. }
        ));
        assert!(matches!(
            err(2, "0\t0/1\tr\n"),
            HistoryError::Syntax { line: 1, .. }
        ));
        assert!(matches!(
            err(2, "\n1\n"),
            HistoryError::Syntax { line: 2, .. }
        ));
        assert!(matches!(
            err(2, "1\t3000F40\tr\n"),
            HistoryError::Syntax { line: 1, .. }
        ));
        assert_eq!(
            err(5, "2\t0/1\ta\n1\t0/2\tb\n"),
            HistoryError::NotIncreasing {
                file: "00000005.history".into(),
                line: 2,
                tli: tli(1),
                prev: tli(2),
            }
        );
        assert!(matches!(
            err(5, "1\t0/1\ta\n1\t0/2\tb\n"),
            HistoryError::NotIncreasing { .. }
        ));
        assert_eq!(
            err(2, "1\t0/1\ta\n2\t0/2\tb\n"),
            HistoryError::NotBelowChild {
                file: "00000002.history".into(),
                line: 2,
                parent: tli(2),
                child: tli(2),
            }
        );
        assert!(matches!(
            err(1, "1\t0/1\ta\n"),
            HistoryError::NotBelowChild { .. }
        ));
        assert_eq!(
            err(3, "1\t0/2\ta\n2\t0/1\tb\n"),
            HistoryError::SwitchpointBackwards {
                file: "00000003.history".into(),
                line: 2,
                lsn: lsn("0/1"),
                prev: lsn("0/2"),
            }
        );
        // The fixture under the wrong (smaller) TLI.
        assert!(matches!(
            TimelineHistory::parse(tli(2), TLI3),
            Err(HistoryError::NotBelowChild { line: 3, .. })
        ));
        let msg = err(0x1A, "x\n").to_string();
        assert!(msg.starts_with("0000001A.history line 1:"), "{msg}");
    }

    /// A random valid history: increasing parents below `tli`, sorted
    /// switchpoints (duplicates allowed).
    fn history_strategy() -> impl Strategy<Value = (u32, Vec<(u32, u64)>)> {
        (2u32..40).prop_flat_map(|tli| {
            let parents =
                proptest::sample::subsequence((1..tli).collect::<Vec<_>>(), 0..(tli as usize));
            let points = proptest::collection::vec(0u64..5000, (tli - 1) as usize);
            (Just(tli), parents, points).prop_map(|(tli, parents, mut points)| {
                points.sort_unstable();
                let entries = parents.into_iter().zip(points).collect();
                (tli, entries)
            })
        })
    }

    proptest! {
        #[test]
        fn spans_tile_the_lsn_space_and_match_brute_force(
            (t, entries) in history_strategy(),
            probes in proptest::collection::vec(0u64..6000, 1..20),
        ) {
            let text: String = entries
                .iter()
                .map(|(p, s)| format!("{p}\t{}\treason\n\n", Lsn::new(*s)))
                .collect();
            let h = TimelineHistory::parse(tli(t), &text).unwrap();
            let spans = h.ancestors();
            prop_assert_eq!(spans.len(), entries.len() + 1);
            prop_assert_eq!(spans[0].begin, Lsn::ZERO);
            prop_assert_eq!(spans.last().unwrap().tli, tli(t));
            for w in spans.windows(2) {
                prop_assert_eq!(w[0].end, Some(w[1].begin));
                prop_assert!(w[0].tli < w[1].tli);
            }
            for p in probes {
                let p = Lsn::new(p);
                // tliOfPointInHistory, searching newest first as the server does.
                let brute = spans
                    .iter()
                    .rev()
                    .find(|s| s.begin <= p && s.end.is_none_or(|e| p < e))
                    .map(|s| s.tli);
                prop_assert_eq!(Some(h.tli_of_point(p)), brute);
                prop_assert!(h.is_ancestor(h.tli_of_point(p)));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(t in 1u32.., text in "(?s).{0,300}") {
            let _ = TimelineHistory::parse(tli(t), &text);
        }

        #[test]
        fn history_like_text_never_panics(
            t in 1u32..20,
            lines in proptest::collection::vec("[0-9]{0,3}[\t ][0-9A-F]{0,3}/[0-9A-F]{0,9}[\t ]?[ -~]{0,10}", 0..6),
        ) {
            let _ = TimelineHistory::parse(tli(t), &lines.join("\n"));
        }
    }
}
