//! Replay progress (issue 14, part 4) against a real server: `--progress
//! json` lines on stderr while a restore replays a few hundred MB of WAL
//! written after the backup, `restore --json`'s replay rate, and the quiet
//! default of `--json` when stderr is not a terminal. The restore's own
//! report is the oracle for where replay ended (`recovery_end_lsn`, which
//! restore checks against the plan before it succeeds).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// One-integer rows, about 65 bytes of WAL each (one heap insert record
/// a row), written after the backup: about 390 MB of WAL, which replays
/// in about 4 s here (100-190 MB/s, by load).
const ROWS: u64 = 6_000_000;

/// `pitr <args>` that must succeed within 10 minutes: (stdout, stderr).
fn run(c: &Cluster, args: &[String]) -> (String, String) {
    let out = run_within(c.pitr.cmd(&strs(args)), Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "pitr {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// stdout as exactly one JSON document (anything else fails to parse).
fn one_document(stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"))
}

/// The `--progress json` lines of stderr, in order, and any other lines.
fn progress_lines(stderr: &str) -> (Vec<Value>, Vec<&str>) {
    let mut lines = Vec::new();
    let mut other = Vec::new();
    for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(l) {
            Ok(v) if v.get("phase").is_some() => lines.push(v),
            _ => other.push(l),
        }
    }
    (lines, other)
}

fn lsn(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an LSN: {v}"));
    let (hi, lo) = s.split_once('/').expect("X/X");
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v["time"].as_str().unwrap().parse().unwrap()
}

#[test]
fn restore_reports_replay_progress_and_its_rate() {
    let c = Cluster::new();
    c.psql("create table big(id int)");
    c.backup();
    // The WAL to replay, all after the backup's end: replayed once the
    // restored server is consistent, where its position can be read.
    let wrote = Instant::now();
    c.psql(&format!(
        "insert into big select generate_series(1, {ROWS})"
    ));
    let last = c.switch_and_archive();
    eprintln!(
        "wrote and archived WAL through {last} in {:.1}s",
        wrote.elapsed().as_secs_f64()
    );

    // --progress json with --json: lines on stderr, one document on stdout.
    let args = c.restore_args(
        "restore",
        "copy",
        &["--latest", "--progress", "json", "--json"],
    );
    // Meanwhile, the restored server's startup process's titles, which
    // pitr reads for the position before the server is consistent.
    let titles = watch_titles(c.path_of("copy"));
    let (stdout, stderr) = run(&c, &args);
    let titles = titles();
    let out = one_document(&stdout);
    let r = Restored::from_json(out.clone());
    assert_eq!(r.psql("select count(*) from big").trim(), ROWS.to_string());
    // As pitr reads them: "startup recovering|waiting for <segment>".
    let named: Vec<&String> = titles
        .iter()
        .filter(|t| {
            let name = t
                .strip_prefix("postgres: startup recovering ")
                .or_else(|| t.strip_prefix("postgres: startup waiting for "));
            name.is_some_and(|n| {
                n.len() == 24
                    && n.bytes()
                        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            })
        })
        .collect();
    assert!(
        named.len() >= 2,
        "the startup process's titles do not name its segments: {titles:?}"
    );
    eprintln!(
        "startup titles: {} seen, e.g. {:?}",
        titles.len(),
        named[named.len() / 2]
    );

    // The replay rate of the restore's report.
    let replay = &out["replay"];
    let (start, end) = (lsn(&replay["start_lsn"]), lsn(&replay["end_lsn"]));
    assert_eq!(replay["end_lsn"], out["recovery_end_lsn"], "{out}");
    assert_eq!(replay["bytes"].as_u64(), Some(end - start));
    assert!(end - start > 150_000_000, "{replay}");
    let seconds = replay["seconds"].as_f64().unwrap();
    let rate = replay["bytes_per_sec"].as_f64().unwrap();
    assert!(seconds > 0.0 && rate > 0.0, "{replay}");
    assert!(
        (rate * seconds - (end - start) as f64).abs() < 1.0,
        "{replay}"
    );
    assert!(
        replay["estimated_seconds"].as_f64().unwrap() > 0.0,
        "{replay}"
    );
    assert!(out["estimated_seconds"].as_f64().unwrap() > 0.0, "{out}");
    eprintln!(
        "replayed {} MB in {seconds:.2}s: {:.1} MB/s (planned {:.2}s); restore {:.1}s (planned {:.1}s)",
        (end - start) / 1_000_000,
        rate / 1e6,
        replay["estimated_seconds"].as_f64().unwrap(),
        out["elapsed_seconds"].as_f64().unwrap(),
        out["estimated_seconds"].as_f64().unwrap()
    );

    let (lines, other) = progress_lines(&stderr);
    assert!(
        other.is_empty(),
        "stderr lines that are not progress: {other:?}"
    );
    for l in &lines {
        let o = l.as_object().unwrap();
        assert_eq!(o.len(), 10, "every line has every field: {l}");
    }
    // Download first, then replay; each phase's last line says so.
    let phases: Vec<&str> = lines.iter().map(|l| l["phase"].as_str().unwrap()).collect();
    let first_replay = phases
        .iter()
        .position(|p| *p == "replay")
        .expect("replay lines");
    assert!(
        phases[..first_replay].iter().all(|p| *p == "download"),
        "{phases:?}"
    );
    assert!(
        phases[first_replay..].iter().all(|p| *p == "replay"),
        "{phases:?}"
    );
    let download_end = &lines[first_replay - 1];
    assert_eq!(download_end["done"], true, "{download_end}");
    assert_eq!(download_end["bytes_done"], download_end["bytes_total"]);

    let replay_lines = &lines[first_replay..];
    let with_lsn: Vec<&Value> = replay_lines
        .iter()
        .filter(|l| !l["lsn"].is_null())
        .collect();
    assert!(
        with_lsn.len() >= 2,
        "replay lines with a position: {replay_lines:?}"
    );
    // The plan's end (the last archived record) is where replay ended, to
    // within the switch record that fills the last segment.
    let planned = lsn(&replay_lines[0]["end_lsn"]);
    assert!(
        planned <= end && end - planned < 1 << 20,
        "planned end {planned:X}, replay ended at {end:X}"
    );
    let total = planned - start;
    // Positions and bytes never go back.
    let mut prev = (0, 0);
    for l in replay_lines {
        assert_eq!(lsn(&l["end_lsn"]), planned, "{l}");
        assert_eq!(l["bytes_total"].as_u64(), Some(total), "{l}");
        let done = l["bytes_done"].as_u64().unwrap();
        let at = if l["lsn"].is_null() {
            0
        } else {
            lsn(&l["lsn"])
        };
        assert!(
            at >= prev.0 && done >= prev.1,
            "went back: {l} after {prev:?}"
        );
        if !l["lsn"].is_null() {
            assert!(at >= start, "replay before its start: {l}");
            assert_eq!(done, (at - start).min(total), "{l}");
        }
        if let Some(r) = l["bytes_per_sec"].as_f64() {
            assert!(r >= 0.0, "{l}");
        }
        if let Some(e) = l["eta_seconds"].as_f64() {
            assert!(e >= 0.0, "{l}");
        }
        prev = (at, done);
    }
    assert!(
        replay_lines
            .iter()
            .any(|l| l["bytes_per_sec"].as_f64().is_some_and(|r| r > 0.0)),
        "a positive rate: {replay_lines:?}"
    );
    let final_line = replay_lines.last().unwrap();
    assert_eq!(final_line["done"], true, "{final_line}");
    assert_eq!(final_line["lsn"], out["recovery_end_lsn"], "{final_line}");
    assert_eq!(final_line["eta_seconds"].as_f64(), Some(0.0));
    assert_eq!(final_line["bytes_done"].as_u64(), Some(total));
    // Once a second while replay runs, and no more often.
    let ticks: Vec<&Value> = replay_lines.iter().filter(|l| l["done"] == false).collect();
    assert!(
        ticks.len() as f64 >= seconds - 2.0,
        "{} lines in {seconds:.1}s of replay",
        ticks.len()
    );
    for w in ticks.windows(2) {
        let gap = (time(w[1]) - time(w[0])).num_milliseconds();
        assert!(gap >= 900, "lines {gap} ms apart: {} then {}", w[0], w[1]);
    }
    for l in replay_lines.iter().take(4) {
        eprintln!("{l}");
    }
    eprintln!(
        "... {} replay lines; the last: {final_line}",
        replay_lines.len()
    );

    // What this restore measured is what the next plan estimates with.
    let plan = c.pitr.json(&["plan", "--latest"]);
    let model = &plan["cost_model"];
    assert_eq!(model["source"], "medians of 1 recorded restores", "{model}");
    assert_ne!(
        model["replay_bytes_per_sec"].as_f64(),
        Some(60e6),
        "{model}"
    );
    drop(r);

    // On a terminal (script(1) gives pitr one): the bar, with the replay
    // position, the rate and the ETA, then the text result.
    let args = c.restore_args("restore", "tty", &["--latest"]);
    let line = std::iter::once(pitr_exe().display().to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tty = std::process::Command::new("script");
    tty.args(["-qec", &line, "/dev/null"])
        .env("PITR_REPO", &c.pitr.spec)
        .env("TERM", "xterm")
        .env("COLUMNS", "160");
    let out = run_within(tty, Duration::from_secs(600));
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("restored backup "), "{screen}");
    let frames = frames(&screen);
    assert!(
        frames
            .iter()
            .any(|f| f.contains("restore [") && f.contains(" MiB of ")),
        "no download bar: {frames:?}"
    );
    // Replay frames with a position show the rate and the ETA.
    let replay: Vec<&String> = frames
        .iter()
        .filter(|f| f.contains("replay [") && f.contains(" of 0/"))
        .collect();
    assert!(
        replay
            .iter()
            .any(|f| f.contains(" MB/s") && f.contains("ETA ")),
        "no replay bar with a position, a rate and an ETA: {frames:?}"
    );
    eprintln!("the bar: {}", replay[replay.len() / 2].trim_end());
    stop_server(&c.path_of("tty"));

    // --json alone, stderr not a terminal: one document, nothing else.
    let args = c.restore_args("restore", "quiet", &["--immediate", "--json"]);
    let (stdout, stderr) = run(&c, &args);
    let out = one_document(&stdout);
    assert!(out["replay"]["bytes_per_sec"].as_f64().is_some(), "{out}");
    assert_eq!(stderr, "", "no progress on stderr");
    drop(Restored::from_json(out));

    // --progress json without --json: the text on stdout, lines on stderr.
    let args = c.restore_args("restore", "text", &["--immediate", "--progress", "json"]);
    let (stdout, stderr) = run(&c, &args);
    assert!(stdout.starts_with("restored backup "), "{stdout}");
    assert!(stdout.contains("  replayed:"), "{stdout}");
    let (lines, other) = progress_lines(&stderr);
    assert!(other.is_empty(), "{other:?}");
    let last = lines.last().expect("progress lines");
    assert_eq!(
        (last["phase"].as_str(), &last["done"]),
        (Some("replay"), &Value::Bool(true))
    );
    stop_server(&c.path_of("text"));
}

/// What a terminal showed, one frame (a line as drawn) at a time: the
/// text between carriage returns, newlines and escape sequences (CSI: ESC
/// [ … final byte, with which indicatif moves the cursor and clears).
fn frames(screen: &str) -> Vec<String> {
    let mut frames = vec![String::new()];
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                }
                frames.push(String::new());
            }
            '\r' | '\n' => frames.push(String::new()),
            c => frames.last_mut().unwrap().push(c),
        }
    }
    frames.retain(|f| !f.trim().is_empty());
    frames
}

/// Watches, every 10 ms, the titles of the processes whose working
/// directory is `pgdata` (Postgres' processes chdir there) and that are a
/// startup process; the returned function stops watching and gives the
/// distinct titles seen, in order.
fn watch_titles(pgdata: std::path::PathBuf) -> impl FnOnce() -> Vec<String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut seen: Vec<String> = Vec::new();
        while !stopped.load(Ordering::Relaxed) {
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let p = e.path();
                if std::fs::read_link(p.join("cwd")).ok().as_ref() != Some(&pgdata) {
                    continue;
                }
                let Ok(raw) = std::fs::read(p.join("cmdline")) else {
                    continue;
                };
                let title = String::from_utf8_lossy(&raw);
                let title = title
                    .split('\0')
                    .next()
                    .unwrap_or("")
                    .trim_end()
                    .to_string();
                if title.contains("startup") && seen.last() != Some(&title) {
                    seen.push(title);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        seen
    });
    move || {
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap()
    }
}
