//! Parsing the `backup_label` a base backup carries and the `.backup` history
//! file the primary archives when the backup stops. Mirrors
//! `read_backup_label` in `src/backend/access/transam/xlogrecovery.c` (the
//! reader; `xlog.c` before 15), `build_backup_content` in
//! `src/backend/access/transam/xlogbackup.c` (the writer in 16+;
//! `do_pg_backup_stop` in `xlog.c` before) and `createBackupLabel` in
//! `src/bin/pg_rewind/pg_rewind.c`.
//!
//! Lines are `KEY: value`; order is not enforced, unknown lines are ignored,
//! a repeated key is an error. START WAL LOCATION and CHECKPOINT LOCATION
//! are required like the server requires them; BACKUP METHOD, BACKUP FROM and
//! START TIME are required because every writer since 9.x emits them; LABEL
//! is optional (pg_rewind omits it) and START TIMELINE is optional (before
//! 11). Invariants of a parsed value: the start timeline equals the TLI in
//! the start WAL file's name, and the file name can hold the LSN for some
//! valid WAL segment size.

use super::lsn::{Lsn, TimelineId, WalSegmentSize};
use super::walname::{SegmentName, WalFileName};

/// What is wrong with a backup_label or `.backup` file. Line numbers are
/// 1-based.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("line {line}: {key} value {value:?} is malformed: expected {expected}")]
    Malformed {
        line: usize,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("line {line}: {key} appears again (first on line {first}): the file was edited or concatenated")]
    Duplicate {
        line: usize,
        key: &'static str,
        first: usize,
    },
    #[error(
        "no {key} line: this is not a complete {file}; use the file exactly as the server wrote it"
    )]
    Missing {
        key: &'static str,
        file: &'static str,
    },
    #[error("line {line}: {key} {timeline} does not match timeline {file_tli} of WAL file {segment}: the file was edited or is corrupt")]
    TimelineMismatch {
        line: usize,
        key: &'static str,
        timeline: TimelineId,
        file_tli: TimelineId,
        segment: SegmentName,
    },
    #[error("line {line}: WAL file {segment} cannot hold {lsn} for any WAL segment size: the file was edited or is corrupt")]
    SegmentMismatch {
        line: usize,
        lsn: Lsn,
        segment: SegmentName,
    },
    #[error("line {line}: BACKUP FROM {value:?} is unknown: expected primary, master or standby")]
    UnknownSource { line: usize, value: String },
    #[error("line {line}: STOP WAL LOCATION {stop} is before START WAL LOCATION {start}: the file is corrupt")]
    StopBeforeStart { line: usize, start: Lsn, stop: Lsn },
}

/// The contents of a `backup_label`, as the server reads them when a restored
/// copy starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLabel {
    /// The backup checkpoint's redo LSN: WAL from here on is needed.
    pub start_lsn: Lsn,
    /// The WAL file holding `start_lsn`, as named in the label.
    pub start_segment: SegmentName,
    /// The backup checkpoint record's LSN.
    pub checkpoint_lsn: Lsn,
    /// `streamed` (pg_basebackup, non-exclusive API), `pg_start_backup`
    /// (exclusive, ≤ 14) or `pg_rewind`.
    pub method: String,
    /// `primary` (14+), `master` (≤ 13) or `standby`.
    pub from: String,
    /// In the server's log_timezone (`%Y-%m-%d %H:%M:%S %Z`), so kept as
    /// text: the zone abbreviation alone does not pin an offset.
    pub start_time_text: String,
    /// Empty when the file has no LABEL line (pg_rewind).
    pub label: String,
    pub start_timeline: TimelineId,
    /// PG17+ incremental backups: the previous backup's start LSN and TLI.
    pub incremental_from: Option<(Lsn, TimelineId)>,
}

/// A `.backup` history file: the label plus where the backup stopped. Written
/// only for backups taken on a primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupHistoryFile {
    pub label: BackupLabel,
    /// End of the BACKUP_END record: recovery is consistent from here.
    pub stop_lsn: Lsn,
    pub stop_segment: SegmentName,
    pub stop_time_text: String,
    pub stop_timeline: TimelineId,
}

const START_WAL: &str = "START WAL LOCATION";
const STOP_WAL: &str = "STOP WAL LOCATION";
const CHECKPOINT: &str = "CHECKPOINT LOCATION";
const METHOD: &str = "BACKUP METHOD";
const FROM: &str = "BACKUP FROM";
const START_TIME: &str = "START TIME";
const LABEL: &str = "LABEL";
const START_TLI: &str = "START TIMELINE";
const STOP_TIME: &str = "STOP TIME";
const STOP_TLI: &str = "STOP TIMELINE";
const INC_LSN: &str = "INCREMENTAL FROM LSN";
const INC_TLI: &str = "INCREMENTAL FROM TLI";

const KEYS: [&str; 12] = [
    START_WAL, STOP_WAL, CHECKPOINT, METHOD, FROM, START_TIME, LABEL, START_TLI, STOP_TIME,
    STOP_TLI, INC_LSN, INC_TLI,
];

const LABEL_FILE: &str = "backup_label";
const HISTORY_FILE: &str = ".backup history file";

/// The known `KEY: value` lines of a file, each with its line number.
struct Lines<'a> {
    slots: [Option<(usize, &'a str)>; KEYS.len()],
}

impl<'a> Lines<'a> {
    fn scan(text: &'a str) -> Result<Lines<'a>, LabelError> {
        let mut slots: [Option<(usize, &'a str)>; KEYS.len()] = [None; KEYS.len()];
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            for (k, key) in KEYS.iter().enumerate() {
                // "KEY:" then the value after one space ("LABEL: " may be
                // followed by nothing).
                let Some(rest) = raw.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
                    continue;
                };
                let value = rest.strip_prefix(' ').unwrap_or(rest);
                if let Some((first, _)) = slots[k] {
                    return Err(LabelError::Duplicate { line, key, first });
                }
                slots[k] = Some((line, value));
                break;
            }
        }
        Ok(Lines { slots })
    }

    fn get(&self, key: &'static str) -> Option<(usize, &'a str)> {
        let k = KEYS.iter().position(|k| *k == key)?;
        self.slots[k]
    }

    fn require(
        &self,
        key: &'static str,
        file: &'static str,
    ) -> Result<(usize, &'a str), LabelError> {
        self.get(key).ok_or(LabelError::Missing { key, file })
    }
}

fn malformed(line: usize, key: &'static str, value: &str, expected: &'static str) -> LabelError {
    LabelError::Malformed {
        line,
        key,
        value: value.to_string(),
        expected,
    }
}

fn parse_lsn(line: usize, key: &'static str, value: &str) -> Result<Lsn, LabelError> {
    value
        .trim()
        .parse()
        .map_err(|_| malformed(line, key, value, "an LSN like 0/2000028"))
}

fn parse_tli(line: usize, key: &'static str, value: &str) -> Result<TimelineId, LabelError> {
    // Written with %u: decimal, unlike the hex TLI in file names.
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(line, key, value, "a decimal timeline ID"));
    }
    v.parse()
        .map_err(|_| malformed(line, key, value, "a decimal timeline ID"))
}

/// `X/Y (file NAME)`: an LSN and the WAL file that holds it.
fn parse_location(
    line: usize,
    key: &'static str,
    value: &str,
    end_pointer: bool,
) -> Result<(Lsn, SegmentName), LabelError> {
    let expected = "an LSN and its WAL file like 0/2000028 (file 000000010000000000000002)";
    let bad = || malformed(line, key, value, expected);
    let (lsn_text, rest) = value.split_once(" (file ").ok_or_else(bad)?;
    let name = rest.trim_end().strip_suffix(')').ok_or_else(bad)?;
    let lsn: Lsn = lsn_text.trim().parse().map_err(|_| bad())?;
    let segment = match WalFileName::parse(name) {
        Ok(WalFileName::Segment(s)) => s,
        _ => return Err(bad()),
    };
    if !segment_can_hold(segment, lsn, end_pointer) {
        return Err(LabelError::SegmentMismatch { line, lsn, segment });
    }
    Ok((lsn, segment))
}

/// Whether `segment` is the file holding `lsn` for some WAL segment size
/// (1 MiB ..= 1 GiB). The label does not say which size; any other name means
/// the line was tampered with. An end pointer may also name the previous
/// segment (XLByteToPrevSeg) when it falls exactly on a boundary.
fn segment_can_hold(segment: SegmentName, lsn: Lsn, end_pointer: bool) -> bool {
    (20..=30).any(|shift| {
        let Ok(size) = WalSegmentSize::new(1u64 << shift) else {
            return false;
        };
        let tli = segment.timeline();
        segment == SegmentName::new(tli, lsn.segno(size), size)
            || (end_pointer && segment == SegmentName::new(tli, lsn.prev_segno(size), size))
    })
}

impl BackupLabel {
    /// Parses a `backup_label` file's text.
    pub fn parse(text: &str) -> Result<BackupLabel, LabelError> {
        BackupLabel::from_lines(&Lines::scan(text)?, LABEL_FILE)
    }

    /// Recovery must reach the BACKUP_END record before it is consistent
    /// (the server sets backupEndRequired for `streamed`).
    pub fn backup_end_required(&self) -> bool {
        self.method == "streamed"
    }

    /// Taken on a standby: no `.backup` file exists and the end of the
    /// backup is pg_control's minRecoveryPoint.
    pub fn from_standby(&self) -> bool {
        self.from == "standby"
    }

    fn from_lines(lines: &Lines<'_>, file: &'static str) -> Result<BackupLabel, LabelError> {
        let (start_line, v) = lines.require(START_WAL, file)?;
        let (start_lsn, start_segment) = parse_location(start_line, START_WAL, v, false)?;

        let (line, v) = lines.require(CHECKPOINT, file)?;
        let checkpoint_lsn = parse_lsn(line, CHECKPOINT, v)?;

        let (line, v) = lines.require(METHOD, file)?;
        let method = v.trim();
        if method.is_empty() || method.contains(char::is_whitespace) {
            return Err(malformed(line, METHOD, v, "one word like streamed"));
        }

        let (line, v) = lines.require(FROM, file)?;
        let from = v.trim();
        if !matches!(from, "primary" | "master" | "standby") {
            return Err(LabelError::UnknownSource {
                line,
                value: v.to_string(),
            });
        }

        let (_, start_time_text) = lines.require(START_TIME, file)?;
        let label = lines.get(LABEL).map_or("", |(_, v)| v);

        // read_backup_label: START TIMELINE must equal the file name's TLI.
        let start_timeline = match lines.get(START_TLI) {
            None => start_segment.timeline(),
            Some((line, v)) => {
                let timeline = parse_tli(line, START_TLI, v)?;
                if timeline != start_segment.timeline() {
                    return Err(LabelError::TimelineMismatch {
                        line,
                        key: START_TLI,
                        timeline,
                        file_tli: start_segment.timeline(),
                        segment: start_segment,
                    });
                }
                timeline
            }
        };

        let incremental_from = match (lines.get(INC_LSN), lines.get(INC_TLI)) {
            (None, None) => None,
            (Some((l1, lsn)), Some((l2, tli))) => {
                Some((parse_lsn(l1, INC_LSN, lsn)?, parse_tli(l2, INC_TLI, tli)?))
            }
            (Some(_), None) => return Err(LabelError::Missing { key: INC_TLI, file }),
            (None, Some(_)) => return Err(LabelError::Missing { key: INC_LSN, file }),
        };

        Ok(BackupLabel {
            start_lsn,
            start_segment,
            checkpoint_lsn,
            method: method.to_string(),
            from: from.to_string(),
            start_time_text: start_time_text.trim().to_string(),
            label: label.to_string(),
            start_timeline,
            incremental_from,
        })
    }
}

impl BackupHistoryFile {
    /// Parses a `.backup` history file's text: the label's lines plus STOP
    /// WAL LOCATION, STOP TIME and STOP TIMELINE (optional before 11, then
    /// taken from the stop file's name).
    pub fn parse(text: &str) -> Result<BackupHistoryFile, LabelError> {
        let lines = Lines::scan(text)?;
        let label = BackupLabel::from_lines(&lines, HISTORY_FILE)?;

        let (stop_line, v) = lines.require(STOP_WAL, HISTORY_FILE)?;
        let (stop_lsn, stop_segment) = parse_location(stop_line, STOP_WAL, v, true)?;
        if stop_lsn < label.start_lsn {
            return Err(LabelError::StopBeforeStart {
                line: stop_line,
                start: label.start_lsn,
                stop: stop_lsn,
            });
        }

        let (_, stop_time_text) = lines.require(STOP_TIME, HISTORY_FILE)?;

        let stop_timeline = match lines.get(STOP_TLI) {
            None => stop_segment.timeline(),
            Some((line, v)) => {
                let timeline = parse_tli(line, STOP_TLI, v)?;
                if timeline != stop_segment.timeline() {
                    return Err(LabelError::TimelineMismatch {
                        line,
                        key: STOP_TLI,
                        timeline,
                        file_tli: stop_segment.timeline(),
                        segment: stop_segment,
                    });
                }
                timeline
            }
        };

        Ok(BackupHistoryFile {
            label,
            stop_lsn,
            stop_segment,
            stop_time_text: stop_time_text.trim().to_string(),
            stop_timeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const LABEL_TEXT: &str = include_str!("../../testdata/pg15/backup_label");

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/pg15")
    }

    /// The one `.backup` file the fixture script copied from the archive.
    fn history_fixture() -> (String, String) {
        let mut found = std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".backup"))
            .collect::<Vec<_>>();
        assert_eq!(found.len(), 1, "expected one .backup fixture: {found:?}");
        let name = found.remove(0);
        let text = std::fs::read_to_string(fixtures().join(&name)).unwrap();
        (name, text)
    }

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    fn tli(v: u32) -> TimelineId {
        TimelineId::new(v).unwrap()
    }

    fn seg(name: &str) -> SegmentName {
        match WalFileName::parse(name).unwrap() {
            WalFileName::Segment(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_real_backup_label() {
        // Values from testdata/pg15/backup_label (pg_basebackup -X none -c fast
        // -l "pitr fixture" on PostgreSQL 15); update if the fixture is
        // regenerated.
        let l = BackupLabel::parse(LABEL_TEXT).unwrap();
        assert_eq!(l.start_lsn, lsn("0/2000028"));
        assert_eq!(l.start_segment, seg("000000010000000000000002"));
        assert_eq!(l.checkpoint_lsn, lsn("0/2000060"));
        assert_eq!(l.method, "streamed");
        assert_eq!(l.from, "primary");
        assert!(l.start_time_text.ends_with(" UTC"), "{}", l.start_time_text);
        assert_eq!(l.label, "pitr fixture");
        assert_eq!(l.start_timeline, tli(1));
        assert_eq!(l.incremental_from, None);
        assert!(l.backup_end_required());
        assert!(!l.from_standby());
    }

    #[test]
    fn parses_the_real_backup_history_file() {
        let (name, text) = history_fixture();
        let h = BackupHistoryFile::parse(&text).unwrap();
        // The history file repeats the label's lines.
        assert_eq!(h.label, BackupLabel::parse(LABEL_TEXT).unwrap());
        assert_eq!(h.stop_lsn, lsn("0/2000100"));
        assert_eq!(h.stop_segment, seg("000000010000000000000002"));
        assert_eq!(h.stop_timeline, tli(1));
        assert!(h.stop_time_text.ends_with(" UTC"));
        assert!(h.stop_lsn > h.label.checkpoint_lsn);
        // Its name is <start segment>.<start offset>.backup.
        let size = WalSegmentSize::new(16 << 20).unwrap();
        match WalFileName::parse(&name).unwrap() {
            WalFileName::Backup { segment, offset } => {
                assert_eq!(segment, h.label.start_segment);
                assert_eq!(u64::from(offset), h.label.start_lsn.segment_offset(size));
            }
            other => panic!("{other:?}"),
        }
        // A .backup file is also a valid label (extra lines are ignored),
        // but a label is not a complete .backup file.
        assert!(BackupLabel::parse(&text).is_ok());
        assert_eq!(
            BackupHistoryFile::parse(LABEL_TEXT),
            Err(LabelError::Missing {
                key: STOP_WAL,
                file: HISTORY_FILE
            })
        );
    }

    const PG13_STANDBY: &str = "START WAL LOCATION: 1/A0000028 (file 00000003000000010000000A)\n\
        CHECKPOINT LOCATION: 1/A0000060\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: standby\n\
        START TIME: 2024-01-02 03:04:05 CET\n\
        LABEL: nightly: with colon\n\
        START TIMELINE: 3\n";

    #[test]
    fn accepts_other_writers() {
        // A standby backup from 13 with 256 MiB segments.
        let l = BackupLabel::parse(PG13_STANDBY).unwrap();
        assert_eq!(l.start_timeline, tli(3));
        assert_eq!(l.label, "nightly: with colon");
        assert!(l.from_standby());
        assert_eq!(l.start_time_text, "2024-01-02 03:04:05 CET");

        // 12/13 write "master".
        let master = PG13_STANDBY.replace("FROM: standby", "FROM: master");
        assert_eq!(BackupLabel::parse(&master).unwrap().from, "master");

        // pg_rewind: no LABEL, no START TIMELINE.
        let rewind = "START WAL LOCATION: 0/5000028 (file 000000020000000000000005)\n\
            CHECKPOINT LOCATION: 0/5000060\n\
            BACKUP METHOD: pg_rewind\n\
            BACKUP FROM: standby\n\
            START TIME: 2024-01-02 03:04:05 UTC\n";
        let l = BackupLabel::parse(rewind).unwrap();
        assert_eq!(l.label, "");
        assert_eq!(l.start_timeline, tli(2));
        assert!(!l.backup_end_required());

        // PG17 incremental, with an unknown line and CRLF endings.
        let inc = "START WAL LOCATION: 0/8000028 (file 000000010000000000000008)\r\n\
            CHECKPOINT LOCATION: 0/8000080\r\n\
            BACKUP METHOD: streamed\r\n\
            BACKUP FROM: primary\r\n\
            START TIME: 2025-01-02 03:04:05 UTC\r\n\
            LABEL: incr\r\n\
            START TIMELINE: 1\r\n\
            SOMETHING NEW: 42\r\n\
            INCREMENTAL FROM LSN: 0/4000028\r\n\
            INCREMENTAL FROM TLI: 1\r\n";
        let l = BackupLabel::parse(inc).unwrap();
        assert_eq!(l.incremental_from, Some((lsn("0/4000028"), tli(1))));
        assert_eq!(l.label, "incr");
    }

    #[test]
    fn malformed_labels_name_the_line() {
        let cases: Vec<(String, LabelError)> = vec![
            (
                LABEL_TEXT.replace(
                    "START WAL LOCATION: 0/2000028",
                    "START WAL LOCATION: 0/20000ZZ",
                ),
                malformed(
                    1,
                    START_WAL,
                    "0/20000ZZ (file 000000010000000000000002)",
                    "",
                ),
            ),
            (
                LABEL_TEXT.replace(
                    "CHECKPOINT LOCATION: 0/2000060",
                    "CHECKPOINT LOCATION: 2000060",
                ),
                malformed(2, CHECKPOINT, "2000060", ""),
            ),
            (
                LABEL_TEXT.replace("START TIMELINE: 1", "START TIMELINE: 2"),
                LabelError::TimelineMismatch {
                    line: 7,
                    key: START_TLI,
                    timeline: tli(2),
                    file_tli: tli(1),
                    segment: seg("000000010000000000000002"),
                },
            ),
            (
                LABEL_TEXT.replace("START TIMELINE: 1", "START TIMELINE: 0x1"),
                malformed(7, START_TLI, "0x1", ""),
            ),
            (
                LABEL_TEXT.replace("BACKUP FROM: primary", "BACKUP FROM: replica"),
                LabelError::UnknownSource {
                    line: 4,
                    value: "replica".into(),
                },
            ),
            (
                LABEL_TEXT.replace(
                    "(file 000000010000000000000002)",
                    "(file 000000010000000000000007)",
                ),
                LabelError::SegmentMismatch {
                    line: 1,
                    lsn: lsn("0/2000028"),
                    segment: seg("000000010000000000000007"),
                },
            ),
            (
                format!("{LABEL_TEXT}LABEL: again\n"),
                LabelError::Duplicate {
                    line: 8,
                    key: LABEL,
                    first: 6,
                },
            ),
            (
                LABEL_TEXT.replace("CHECKPOINT LOCATION: 0/2000060\n", ""),
                LabelError::Missing {
                    key: CHECKPOINT,
                    file: LABEL_FILE,
                },
            ),
            (
                format!("{LABEL_TEXT}INCREMENTAL FROM LSN: 0/1000028\n"),
                LabelError::Missing {
                    key: INC_TLI,
                    file: LABEL_FILE,
                },
            ),
        ];
        for (text, want) in cases {
            let got = BackupLabel::parse(&text).unwrap_err();
            // Compare malformed errors without their `expected` wording.
            match (&got, &want) {
                (
                    LabelError::Malformed {
                        line, key, value, ..
                    },
                    LabelError::Malformed {
                        line: l2,
                        key: k2,
                        value: v2,
                        ..
                    },
                ) => assert_eq!((line, key, value), (l2, k2, v2), "{text}"),
                _ => assert_eq!(got, want, "{text}"),
            }
            let msg = got.to_string();
            assert!(msg.starts_with("line ") || msg.starts_with("no "), "{msg}");
        }
        assert!(BackupLabel::parse("").is_err());
        assert!(BackupLabel::parse("garbage\n\u{0}\u{ffff}").is_err());
    }

    #[test]
    fn malformed_history_files_are_rejected() {
        let (_, text) = history_fixture();
        let before = text.replace(
            "STOP WAL LOCATION: 0/2000100",
            "STOP WAL LOCATION: 0/2000000",
        );
        assert_eq!(
            BackupHistoryFile::parse(&before),
            Err(LabelError::StopBeforeStart {
                line: 2,
                start: lsn("0/2000028"),
                stop: lsn("0/2000000"),
            })
        );
        let wrong_tli = text.replace("STOP TIMELINE: 1", "STOP TIMELINE: 4");
        assert!(matches!(
            BackupHistoryFile::parse(&wrong_tli),
            Err(LabelError::TimelineMismatch {
                line: 10,
                key: STOP_TLI,
                ..
            })
        ));
        let no_time = text.replace("STOP TIME:", "STOPPED AT:");
        assert_eq!(
            BackupHistoryFile::parse(&no_time),
            Err(LabelError::Missing {
                key: STOP_TIME,
                file: HISTORY_FILE
            })
        );
        // Pre-11 files have no STOP TIMELINE: the stop file's TLI is used.
        let old = text.replace("STOP TIMELINE: 1\n", "");
        assert_eq!(
            BackupHistoryFile::parse(&old).unwrap().stop_timeline,
            tli(1)
        );
    }

    #[test]
    fn end_pointer_on_a_boundary_may_name_the_previous_segment() {
        let s = seg("000000010000000000000002");
        assert!(segment_can_hold(s, lsn("0/3000000"), true));
        assert!(!segment_can_hold(s, lsn("0/3000000"), false));
        // 1 GiB segments: 0/40000000 is segment 1, 0/2000028 is segment 0.
        assert!(segment_can_hold(
            seg("000000010000000000000001"),
            lsn("0/40000000"),
            false
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
            let _ = BackupLabel::parse(&text);
            let _ = BackupHistoryFile::parse(&text);
        }

        #[test]
        fn mangled_fixture_lines_never_panic(cut in 0usize..400, junk in "[ -~]{0,20}") {
            let (_, text) = history_fixture();
            let cut = cut.min(text.len());
            if text.is_char_boundary(cut) {
                let t = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
                let _ = BackupHistoryFile::parse(&t);
                let _ = BackupLabel::parse(&t);
            }
        }
    }
}
