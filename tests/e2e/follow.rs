//! Followers end to end: `pitr follow` makes a hot standby of the newest
//! backup that replays WAL as the source archives it; `pitr status`
//! reports its replay position, streaming and lag against the repository;
//! `pitr promote --archive-to` makes it a primary on a new timeline that
//! archives into the same repository (its history file pushed by pitr),
//! and a later restore of that timeline has exactly its rows.

use std::time::{Duration, Instant};

use super::harness::*;
use super::s3;

/// `pitr status --json` of `pgdata`, with the repository found the way
/// the command finds it when `--repo` is not given (`PITR_REPO` unset).
fn status_from_config(c: &Cluster, pgdata: &std::path::Path) -> serde_json::Value {
    let mut cmd = c
        .pitr
        .cmd(&["status", "--json", "--pgdata", pgdata.to_str().unwrap()]);
    cmd.env_remove("PITR_REPO");
    let out = run_ok(cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad json {e}: {out}"))
}

fn status(c: &Cluster, pgdata: &std::path::Path) -> serde_json::Value {
    c.pitr
        .json(&["status", "--pgdata", pgdata.to_str().unwrap()])
}

/// Whether LSN `a` is before `b` (Postgres compares them).
fn lsn_before(c: &Cluster, a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let (a, b) = (a.as_str().unwrap(), b.as_str().unwrap());
    c.psql(&format!("select '{a}'::pg_lsn < '{b}'::pg_lsn"))
        .trim()
        == "t"
}

#[test]
fn a_follower_replays_archived_rows_then_promotes_onto_a_new_timeline() {
    follow_scenario(Cluster::new());
}

#[test]
fn a_follower_on_s3_replays_archived_rows_then_promotes_onto_a_new_timeline() {
    follow_scenario(Cluster::on_s3(s3::shared(), "follow"));
}

fn follow_scenario(c: Cluster) {
    c.create_table();
    c.psql("insert into t(id) values (1)");
    let b = c.backup();

    // A standby of the newest backup, consistent and read-only.
    let out = c.restore_report("follow", "follower", &[]);
    let f = Restored::from_json(out.clone());
    assert_eq!(out["action"], "standby", "{out:#}");
    assert_eq!(out["timeline"], 1, "{out:#}");
    assert_eq!(out["backup_id"], b["id"], "{out:#}");
    assert!(out["replay_lsn"].is_string(), "{out:#}");
    assert_eq!(f.psql("select pg_is_in_recovery()").trim(), "t");
    assert_eq!(f.rows(), "1");
    assert!(f.pgdata.join("standby.signal").exists());
    assert!(!f.pgdata.join("recovery.signal").exists());
    let auto = std::fs::read_to_string(f.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("# pitr follow: a standby from backup"),
        "{auto}"
    );
    assert!(auto.contains(" wal-fetch --repo "), "{auto}");
    assert!(!auto.contains("--spool"), "{auto}");
    assert!(auto.contains("\nhot_standby = on\n"), "{auto}");
    assert!(
        auto.contains("\nrecovery_target_timeline = '1'\n"),
        "{auto}"
    );
    assert!(!auto.contains("recovery_target_action"), "{auto}");
    // No primary named: an empty one, over any a backup carried.
    assert!(auto.contains("\nprimary_conninfo = ''\n"), "{auto}");
    assert_eq!(f.psql("show archive_mode").trim(), "off");

    let s1 = status(&c, &f.pgdata);
    assert_eq!(s1["in_recovery"], true, "{s1:#}");
    assert_eq!(s1["timeline"], 1, "{s1:#}");
    assert_eq!(s1["streaming"], false, "{s1:#}");
    assert_eq!(s1["repository_source"], "option", "{s1:#}");
    assert!(s1["replay_lsn"].is_string(), "{s1:#}");
    assert!(s1["lag_bytes"].as_u64().is_some(), "{s1:#}");
    // Without --repo: the repository its restore_command names.
    let s = status_from_config(&c, &f.pgdata);
    assert_eq!(s["repository_source"], "restore_command", "{s:#}");
    assert_eq!(
        s["repository"].as_str(),
        Some(c.pitr.spec.as_str()),
        "{s:#}"
    );
    assert_eq!(s["archive"], s1["archive"], "{s:#}");

    // A row inserted on the source reaches the follower within seconds of
    // its segment's archiving (a standby retries restore_command every
    // wal_retrieve_retry_interval, 5 s).
    c.psql("insert into t(id) values (2)");
    let seg = c.switch_and_archive();
    let archived = Instant::now();
    wait_for(
        "the follower to show row 2",
        Duration::from_secs(60),
        || f.rows() == "1,2",
    );
    let took = archived.elapsed();
    eprintln!("row 2 reached the follower {took:?} after its segment was archived");
    assert!(took < Duration::from_secs(20), "{took:?}");
    wait_for(
        "the follower at the archive's end",
        Duration::from_secs(30),
        || status(&c, &f.pgdata)["lag_bytes"] == 0,
    );
    let s2 = status(&c, &f.pgdata);
    assert!(
        lsn_before(&c, &s1["replay_lsn"], &s2["replay_lsn"]),
        "{s1:#}\n{s2:#}"
    );
    assert_eq!(
        s2["archive"]["segment"].as_str(),
        Some(seg.as_str()),
        "{s2:#}"
    );
    assert_eq!(s2["archive"]["end_lsn"], s2["replay_lsn"], "{s2:#}");
    assert_eq!(s2["lag_seconds"], 0.0, "{s2:#}");
    assert!(s2["last_replayed_commit"].is_string(), "{s2:#}");

    // Replay paused: what is archived meanwhile is lag, in bytes and in
    // the time between the two commits.
    f.psql("select pg_wal_replay_pause()");
    c.psql("select pg_sleep(0.3); insert into t(id) values (3)");
    c.switch_and_archive();
    let paused = status(&c, &f.pgdata);
    assert_eq!(paused["replay_paused"], true, "{paused:#}");
    assert!(paused["lag_bytes"].as_u64().unwrap() > 0, "{paused:#}");
    let lag = paused["lag_seconds"].as_f64().unwrap();
    let want: f64 = c
        .psql("select extract(epoch from max(ts) filter (where id = 3) - max(ts) filter (where id = 2)) from t")
        .trim()
        .parse()
        .unwrap();
    assert!(
        lag > 0.25 && lag < want + 1.0,
        "lag {lag}, rows {want} s apart: {paused:#}"
    );
    f.psql("select pg_wal_replay_resume()");
    wait_for(
        "the follower to show row 3",
        Duration::from_secs(60),
        || f.rows() == "1,2,3",
    );

    if !c.pitr.is_s3() {
        // Another system's repository is refused before anything changes.
        let other = Cluster::new();
        let (code, err) = c.pitr.fails(&[
            "promote",
            "--pgdata",
            f.pgdata.to_str().unwrap(),
            "--archive-to",
            &other.pitr.spec,
        ]);
        assert_eq!(code, 5, "{err}");
        assert!(err.contains("holds system"), "{err}");
        assert_eq!(f.psql("select pg_is_in_recovery()").trim(), "t");
    }

    // Promoted, archiving into the same repository on a new timeline.
    let p = c.pitr.json(&[
        "promote",
        "--pgdata",
        f.pgdata.to_str().unwrap(),
        "--archive-to",
        &c.pitr.spec,
    ]);
    assert_eq!(p["promoted"], true, "{p:#}");
    assert_eq!(p["timeline"], 2, "{p:#}");
    assert!(p["switch_lsn"].is_string(), "{p:#}");
    let a = &p["archiving"];
    assert_eq!(a["history_file"], "00000002.history", "{p:#}");
    assert_eq!(a["history_push"], "stored", "{p:#}");
    assert_eq!(a["restarted"], true, "{p:#}");
    assert_eq!(f.psql("select pg_is_in_recovery()").trim(), "f");
    assert_eq!(f.psql("show archive_mode").trim(), "on");
    // The history file in the repository is the one Postgres wrote.
    let fetched = c.dir.path().join("fetched.history");
    c.pitr
        .ok(&["wal-fetch", "00000002.history", fetched.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(f.pgdata.join("pg_wal/00000002.history")).unwrap()
    );
    // Promoting again changes nothing.
    let again = c
        .pitr
        .json(&["promote", "--pgdata", f.pgdata.to_str().unwrap()]);
    assert_eq!(again["promoted"], false, "{again:#}");
    assert_eq!(again["timeline"], 2, "{again:#}");

    // New writes are archived on timeline 2; the source goes on on 1.
    f.psql("insert into t(id) values (10)");
    let seg2 = f
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    assert!(seg2.starts_with("00000002"), "{seg2}");
    c.wait_archived(&seg2);
    c.psql("insert into t(id) values (4)");
    c.switch_and_archive();
    let s = status_from_config(&c, &f.pgdata);
    assert_eq!(s["in_recovery"], false, "{s:#}");
    assert_eq!(s["timeline"], 2, "{s:#}");
    assert_eq!(s["repository_source"], "archive_command", "{s:#}");
    assert!(s["current_lsn"].is_string(), "{s:#}");

    // A restore of the latest state follows the new timeline: exactly its
    // rows, not the source's row 4.
    let r = c.restore_to("restore", "after-promote", &["--latest"]);
    assert_eq!(r.rows(), "1,2,3,10");
    assert_eq!(r.out["timeline"], 3, "{:#}", r.out);
    let pgdata = r.pgdata.clone();
    drop(r);
    // A server that is not running: exit 8, saying so.
    let (code, err) = c
        .pitr
        .fails(&["status", "--pgdata", pgdata.to_str().unwrap()]);
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("no server is running"), "{err}");
}

/// With `--primary-conninfo` the follower also streams: a row shows up
/// without any segment switch or archiving, and status says it streams.
#[test]
fn a_follower_with_a_primary_conninfo_streams() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    let conninfo = format!(
        "host={} port={} user=postgres application_name=follower",
        c.socket_dir().display(),
        c.port
    );
    let out = c.restore_report("follow", "streamer", &["--primary-conninfo", &conninfo]);
    let f = Restored::from_json(out);
    let auto = std::fs::read_to_string(f.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("\nprimary_conninfo = 'host="), "{auto}");
    wait_for("the follower to stream", Duration::from_secs(60), || {
        status(&c, &f.pgdata)["streaming"] == true
    });
    c.psql("insert into t(id) values (1)");
    wait_for("the streamed row", Duration::from_secs(30), || {
        f.rows() == "1"
    });
    let s = status(&c, &f.pgdata);
    assert_eq!(s["streaming"], true, "{s:#}");
    assert_eq!(s["wal_receiver"], "streaming", "{s:#}");
    assert!(s["receive_lsn"].is_string(), "{s:#}");
    // Streamed past the archive: no lag.
    assert_eq!(s["lag_bytes"], 0, "{s:#}");
    assert_eq!(
        c.psql("select count(*) from pg_stat_replication where application_name = 'follower'")
            .trim(),
        "1"
    );
}

/// A restored copy that finished whole segments of its new timeline while
/// archiving was off: `promote --archive-to` archives them too (without
/// an archive status, Postgres would send them only when a later
/// checkpoint found them old enough to remove, leaving a gap at the start
/// of the timeline until then).
#[test]
fn promote_archive_to_archives_the_segments_finished_before_it() {
    let c = Cluster::new();
    c.psql("create table t(x int)");
    c.backup();
    c.psql("insert into t values (1)");
    c.switch_and_archive();
    let r = c.restore_to("restore", "copy", &["--latest"]);
    let mut finished = Vec::new();
    for x in [2, 3] {
        r.psql(&format!("insert into t values ({x})"));
        finished.push(
            r.psql("select pg_walfile_name(pg_switch_wal())")
                .trim()
                .to_string(),
        );
    }
    assert!(finished[0].starts_with("00000002"), "{finished:?}");
    let p = c.pitr.json(&[
        "promote",
        "--pgdata",
        r.pgdata.to_str().unwrap(),
        "--archive-to",
        &c.pitr.spec,
    ]);
    let pushed = &p["archiving"]["pushed_segments"];
    for seg in &finished {
        assert!(
            pushed.as_array().unwrap().iter().any(|s| s == seg.as_str()),
            "{p:#}"
        );
    }
    // Every segment of timeline 2 from its first (the switch segment, one
    // before the first switched here) is pushed, or named as not archived.
    // (1 MiB segments: the segment number is the LSN over 2^20.)
    let switch = p["switch_lsn"].as_str().unwrap();
    let (hi, lo) = switch.split_once('/').unwrap();
    let lsn = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let first = format!("00000002{:016X}", lsn >> 20);
    let note = p["archiving"]["unarchived"].as_str().unwrap_or_default();
    let first_pushed = pushed
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == first.as_str());
    assert!(first_pushed != note.contains(&first), "{first}: {p:#}");
    for seg in &finished {
        c.wait_archived(seg);
    }
    stop_server(&r.pgdata);
}

/// A follower of a busy source: pgbench on four clients while the follower
/// replays what is archived. Once the load stops and its last segment is
/// archived, the follower reaches the archive's end (`status`: no lag)
/// with exactly the source's rows, and its replay never went back.
#[test]
fn a_follower_keeps_up_with_a_busy_source() {
    let c = Cluster::new();
    let bench = |args: &[&str]| {
        let mut b = as_postgres(format!("{PG_BIN}/pgbench"));
        b.args(args).arg("-h").arg(c.socket_dir()).args([
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
            "postgres",
        ]);
        b
    };
    run_ok(bench(&["-i", "-q", "-s", "2"]));
    c.backup();
    let f = c.restore_to("follow", "busy-follower", &[]);
    let load = bench(&["-n", "-c", "4", "-j", "2", "-T", "8"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the load runs: segments are switched and archived, and the
    // follower's replay moves forward, never back.
    let mut seen: Vec<String> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        c.switch_and_archive();
        let s = status(&c, &f.pgdata);
        assert_eq!(s["in_recovery"], true, "{s:#}");
        if let (Some(prev), Some(now)) = (seen.last(), s["replay_lsn"].as_str()) {
            assert!(
                c.psql(&format!("select '{prev}'::pg_lsn <= '{now}'::pg_lsn"))
                    .trim()
                    == "t",
                "replay went back: {prev} then {now}"
            );
        }
        seen.extend(s["replay_lsn"].as_str().map(str::to_string));
    }
    let done = load.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let want = c.psql("select count(*), sum(delta) from pgbench_history");
    c.switch_and_archive();
    wait_for("the follower to catch up", Duration::from_secs(90), || {
        status(&c, &f.pgdata)["lag_bytes"].as_u64() == Some(0)
    });
    assert_eq!(
        f.psql("select count(*), sum(delta) from pgbench_history"),
        want
    );
    assert!(
        want.split('|')
            .next()
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
            > 100,
        "{want}"
    );
    stop_server(&f.pgdata);
}
