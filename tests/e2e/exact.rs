//! Exactness under concurrency (issue 12, point 3): a pgbench workload on
//! several clients, backups taken mid-load, and restores to many time
//! targets, each compared with what Postgres' own rule gives on the WAL.
//!
//! The oracle is Postgres: the transaction ends come from the source
//! server's own WAL reader (pg_walinspect's `pg_get_wal_records_info`, the
//! records pg_waldump prints), in WAL order, and the expected state for a
//! time T is "every transaction end before the first one whose time is
//! after T" (xlogrecovery.c: recoveryStopsBefore; `--exclusive`: at or
//! after). No clock reading of the test decides an expected row. Each
//! restore is compared by the count and the sum of the xids the workload
//! wrote with `txid_current()`, so one transaction too many or too few
//! fails, and by the plan's kept and stopped-before records.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

/// One transaction end as the source server's WAL reader shows it.
#[derive(Debug, Clone)]
struct End {
    lsn: String,
    xid: u64,
    commit: bool,
    /// Postgres' text of xact_time (UTC), and the same in microseconds.
    time: String,
    micros: i64,
}

/// Every commit/abort record in `from..to`, in WAL order.
fn ends(c: &Cluster, from: &str, to: &str) -> Vec<End> {
    let out = c.psql(&format!(
        "select start_lsn, xid, record_type, ts::text, \
                (extract(epoch from ts) * 1000000)::bigint \
         from (select start_lsn, xid, record_type, \
                      (regexp_match(description, \
                        '^(?:\\d+: )?(\\d{{4}}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?[+-]\\d\\d)'))[1]::timestamptz as ts \
               from pg_get_wal_records_info('{from}', '{to}') \
               where resource_manager = 'Transaction' \
                 and record_type in ('COMMIT', 'ABORT', 'COMMIT_PREPARED', 'ABORT_PREPARED')) r \
         order by start_lsn"
    ));
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            End {
                lsn: f[0].to_string(),
                xid: f[1].parse().unwrap(),
                commit: f[2].starts_with("COMMIT"),
                time: f[3].to_string(),
                micros: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// Switches WAL and waits until it is archived; then every transaction
/// end from `from` to there, in WAL order, and the xids the workload wrote
/// to `w`.
fn archived_ends(c: &Cluster, from: &str) -> (Vec<End>, std::collections::HashSet<u64>) {
    let end = c.psql("select pg_switch_wal()").trim().to_string();
    let seg = c
        .psql(&format!("select pg_walfile_name('{end}'::pg_lsn - 1)"))
        .trim()
        .to_string();
    c.wait_archived(&seg);
    let written = c
        .psql("select x from w")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect();
    (ends(c, from, &end), written)
}

/// Postgres' rule: the index of the first end past `t` (None: none is).
fn stop_index(ends: &[End], t: i64, inclusive: bool) -> Option<usize> {
    ends.iter().position(|e| {
        if inclusive {
            e.micros > t
        } else {
            e.micros >= t
        }
    })
}

/// (count, sum) of the workload's xids committed before `stop`.
fn expected(ends: &[End], stop: Option<usize>, written: &std::collections::HashSet<u64>) -> String {
    let kept = &ends[..stop.unwrap_or(ends.len())];
    let xids: Vec<u64> = kept
        .iter()
        .filter(|e| e.commit && written.contains(&e.xid))
        .map(|e| e.xid)
        .collect();
    format!("{}|{}", xids.len(), xids.iter().sum::<u64>())
}

/// A target: how it was picked, the time as Postgres printed it, its
/// value in microseconds, inclusive.
struct Target {
    what: String,
    time: String,
    micros: i64,
    inclusive: bool,
}

fn at(c: &Cluster, what: &str, sql_time: &str, inclusive: bool) -> Target {
    let out = c.psql(&format!(
        "select t::text, (extract(epoch from t) * 1000000)::bigint from (select ({sql_time})::timestamptz as t) x"
    ));
    let (time, micros) = out.trim().split_once('|').unwrap();
    Target {
        what: what.to_string(),
        time: time.to_string(),
        micros: micros.parse().unwrap(),
        inclusive,
    }
}

/// Runs the workload with two backups taken mid-load, then restores to
/// targets picked from the WAL; `picks` commit times are sampled.
fn scenario(c: &Cluster, picks: usize, tag: &str) {
    c.psql("alter system set wal_keep_size = '1GB'");
    c.psql("select pg_reload_conf()");
    c.psql("create extension pg_walinspect");
    c.psql(
        "create table acc(id int primary key, bal int not null default 0); \
         insert into acc(id) select g from generate_series(1, 1000) g; \
         create table w(x bigint not null)",
    );
    let from = c.psql("select pg_current_wal_lsn()").trim().to_string();
    let b1 = c.backup();
    let scripts = c.dir.path();
    std::fs::write(
        scripts.join("work.sql"),
        "\\set aid random(1, 1000)\nBEGIN;\nUPDATE acc SET bal = bal + 1 WHERE id = :aid;\n\
         INSERT INTO w(x) VALUES (txid_current());\nEND;\n",
    )
    .unwrap();
    std::fs::write(
        scripts.join("undo.sql"),
        "BEGIN;\nINSERT INTO w(x) VALUES (txid_current());\nROLLBACK;\n",
    )
    .unwrap();
    let mut bench = as_postgres(format!("{PG_BIN}/pgbench"));
    bench
        .args(["-n", "-c", "4", "-j", "2", "-T", "10", "-R", "1000", "-h"])
        .arg(c.socket_dir())
        .args(["-p", &c.port.to_string(), "-U", "postgres", "-f"])
        .arg(format!("{}@9", scripts.join("work.sql").display()))
        .arg("-f")
        .arg(format!("{}@1", scripts.join("undo.sql").display()))
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = bench.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let b2 = c.backup();
    std::thread::sleep(Duration::from_secs(2));
    let b3 = c.backup();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    // A few more commits once the last backup has surely finished (on a
    // loaded machine a backup can outlast pgbench's 10 s), so that the
    // targets right after each backup lie inside the archived WAL.
    for _ in 0..20 {
        c.psql("insert into w(x) values (txid_current())");
    }
    let (all, written) = archived_ends(c, &from);
    assert!(
        written.len() > 300,
        "the workload wrote {} rows",
        written.len()
    );
    assert!(
        all.iter().any(|e| !e.commit),
        "the workload aborted nothing"
    );
    // Commit times are not monotonic in WAL order under concurrency (the
    // reason the rule is "the first in WAL order"): show it happened.
    let inversions = all.windows(2).filter(|p| p[1].micros < p[0].micros).count();
    eprintln!(
        "{tag}: {} transaction ends, {inversions} out of time order",
        all.len()
    );

    // Workload commits after the first backup finished (planable).
    let b1_stop = at(
        c,
        "b1",
        &format!("'{}'", b1["stop_time"].as_str().unwrap()),
        true,
    )
    .micros;
    let workload: Vec<&End> = all
        .iter()
        .filter(|e| e.commit && written.contains(&e.xid) && e.micros > b1_stop)
        .collect();
    let mut targets = Vec::new();
    for i in 0..picks {
        let e = workload[(i * 2 + 1) * workload.len() / (picks * 2 + 1)];
        targets.push(at(
            c,
            &format!("commit of xid {}", e.xid),
            &format!("'{}'", e.time),
            true,
        ));
        targets.push(at(
            c,
            &format!("1 µs before the commit of xid {}", e.xid),
            &format!("'{}'::timestamptz - interval '1 microsecond'", e.time),
            true,
        ));
        if i == 0 {
            targets.push(at(
                c,
                &format!("commit of xid {} (exclusive)", e.xid),
                &format!("'{}'", e.time),
                false,
            ));
        }
    }
    for (name, b) in [("b2", &b2), ("b3", &b3)] {
        let (start, stop) = (
            b["start_time"].as_str().unwrap(),
            b["stop_time"].as_str().unwrap(),
        );
        targets.push(at(
            c,
            &format!("inside backup {name}"),
            &format!(
                "'{start}'::timestamptz + ('{stop}'::timestamptz - '{start}'::timestamptz) / 2"
            ),
            true,
        ));
        targets.push(at(
            c,
            &format!("right after backup {name}"),
            &format!("'{stop}'::timestamptz + interval '1 microsecond'"),
            true,
        ));
    }
    // A commit whose record follows a later-stamped one: the first in WAL
    // order past its time is that earlier record, not a later commit.
    if let Some(p) = all
        .windows(2)
        .find(|p| p[1].micros < p[0].micros && p[1].commit)
    {
        targets.push(at(
            c,
            "a commit out of time order",
            &format!("'{}'", p[1].time),
            true,
        ));
    }
    let last = all.iter().max_by_key(|e| e.micros).unwrap();
    assert!(
        targets.iter().all(|t| t.micros <= last.micros),
        "the workload must outlast the backups"
    );
    targets.push(at(c, "the last commit", &format!("'{}'", last.time), true));

    let resolved = restore_each(c, &all, &written, &targets, tag);
    // Postgres archives in order, so every segment boundary was read
    // whole at the next segment's push: no target is left to
    // recovery_target_time, and the last commit is reachable.
    assert_eq!(
        resolved,
        targets.len(),
        "{tag}: every time target resolved to an LSN"
    );
}

/// Plans and restores each target, comparing the plan's records and the
/// restored rows with Postgres' rule applied to `all`; returns how many
/// targets the plan resolved to an LSN (the others were left to
/// Postgres' `recovery_target_time`).
fn restore_each(
    c: &Cluster,
    all: &[End],
    written: &std::collections::HashSet<u64>,
    targets: &[Target],
    tag: &str,
) -> usize {
    let mut resolved = 0;
    for (n, t) in targets.iter().enumerate() {
        let stop = stop_index(all, t.micros, t.inclusive);
        let want = expected(all, stop, written);
        let mut args = vec!["--to", t.time.as_str()];
        if !t.inclusive {
            args.push("--exclusive");
        }
        // The plan names the records Postgres' rule names.
        let mut plan_args = vec!["plan", "--json"];
        plan_args.extend(&args);
        let out = c.pitr.run(&plan_args);
        if !out.status.success() {
            let info = c.pitr.run(&["info", "--json"]);
            let listing: Vec<String> = std::fs::read_dir(c.pitr.repo.join("wal/00000001"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "{}: {}\ninfo {}\nrepo {listing:?}\nlast {:?}",
                t.what,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&info.stdout),
                all.last()
            );
        }
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ts = &p["time_stop"];
        let by_lsn = ts["by"] == "lsn";
        if by_lsn {
            resolved += 1;
            let kept = stop.map_or(all.len(), |s| s) - 1;
            assert_eq!(
                ts["kept"]["xid"].as_u64(),
                Some(all[kept].xid),
                "{}: {p:#}",
                t.what
            );
            assert_eq!(
                ts["kept"]["lsn"].as_str(),
                Some(all[kept].lsn.as_str()),
                "{}",
                t.what
            );
            match stop {
                Some(s) => {
                    assert_eq!(
                        ts["stops_before"]["lsn"].as_str(),
                        Some(all[s].lsn.as_str()),
                        "{}",
                        t.what
                    );
                    assert_eq!(ts["inclusive"], false);
                }
                None => {
                    assert!(ts["stops_before"].is_null(), "{}: {p:#}", t.what);
                    assert_eq!(ts["inclusive"], true);
                }
            }
        } else {
            // Left to Postgres: only because a record crosses a segment
            // end on the way, which the index cannot see into.
            assert_eq!(ts["by"], "time", "{}: {p:#}", t.what);
            let reason = ts["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("runs from segment"), "{}: {p:#}", t.what);
            assert!(
                stop.is_some(),
                "{}: the last commit is not left to Postgres",
                t.what
            );
        }
        args.extend(["--action", "pause"]);
        let name = format!("{tag}-{n}");
        let r = c.restore_to("restore", &name, &args);
        let got = r.psql("select count(*), coalesce(sum(x), 0) from w");
        assert_eq!(got.trim(), want, "{}: target {}", t.what, t.time);
        let auto = std::fs::read_to_string(r.pgdata.join("postgresql.auto.conf")).unwrap();
        let setting = if by_lsn {
            "\nrecovery_target_lsn = "
        } else {
            "\nrecovery_target_time = "
        };
        assert!(auto.contains(setting), "{auto}");
        drop(r);
        let _ = std::fs::remove_dir_all(c.path_of(&name));
    }
    eprintln!(
        "{tag}: {} time targets, each restored to Postgres' own record: {resolved} resolved to an LSN, {} left to Postgres' recovery_target_time",
        targets.len(),
        targets.len() - resolved
    );
    resolved
}

#[test]
fn time_targets_under_concurrent_load_stop_at_postgres_own_record() {
    let c = Cluster::new();
    scenario(&c, 4, "pg15");
}

#[test]
fn time_targets_under_concurrent_load_on_17() {
    let c = Cluster::of_major(17);
    scenario(&c, 1, "pg17");
}

/// Commits placed across segment ends on purpose
/// (testdata/sql/place-at-segment-end.sql): each record starts 32, 16 or 8
/// bytes before a segment's end, so its timestamp, or its header itself,
/// lies in the next segment. Targets at each commit's time (it is kept,
/// the next commit stops recovery) and 1 µs before it (recovery stops
/// before it) resolve to an LSN — the next segment's push read the record
/// whole — and restore to Postgres' own record.
fn across_segment_ends(c: &Cluster, tag: &str) {
    // The WAL reader (the oracle) reads the source's pg_wal: keep it.
    c.psql("alter system set wal_keep_size = '1GB'");
    c.psql("select pg_reload_conf()");
    c.psql(include_str!("../../testdata/sql/place-at-segment-end.sql"));
    c.psql("create extension pg_walinspect");
    c.psql("create table w(x bigint not null)");
    let from = c.psql("select pg_current_wal_lsn()").trim().to_string();
    c.backup();
    // The last commit kept by a target just before the first placed one.
    c.psql("insert into w(x) values (txid_current())");
    let mut placed = Vec::new();
    for gap in [32, 16, 8] {
        // Another process's record can slip in between the padding and
        // the commit: check where the commit landed, and try again.
        let lsn = (0..10)
            .find_map(|_| {
                let at = c
                    .psql(&format!(
                        "begin; insert into w(x) values (txid_current()); \
                         select pitr_place_at_segment_end({gap}, true); commit"
                    ))
                    .trim()
                    .to_string();
                // (The reader lists records that end by the range's end.)
                let kind = c.psql(&format!(
                    "select record_type from pg_get_wal_records_info('{at}', pg_current_wal_flush_lsn()) \
                     where start_lsn = '{at}'"
                ));
                (kind.trim() == "COMMIT").then_some(at)
            })
            .unwrap_or_else(|| panic!("{tag}: no commit placed {gap} bytes before a segment end"));
        placed.push((gap, lsn));
        c.psql("insert into w(x) values (txid_current())");
    }
    // A restore point 56 bytes before a segment end: its name runs on in
    // the next segment. (Nothing flushes it: the commit after it does,
    // before the WAL reader can see it.)
    let (rp, rp_name, rows_at_rp) = (0..10)
        .find_map(|i| {
            let name = format!("across-{i}");
            let at = c
                .psql(&format!(
                    "select pitr_place_at_segment_end(56, false); \
                     select pg_create_restore_point('{name}')"
                ))
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let rows = c.psql("select count(*), coalesce(sum(x), 0) from w");
            c.psql("insert into w(x) values (txid_current())");
            let kind = c.psql(&format!(
                "select record_type from pg_get_wal_records_info('{at}', pg_current_wal_flush_lsn()) \
                 where start_lsn = '{at}'"
            ));
            (kind.trim() == "RESTORE_POINT").then_some((at, name, rows))
        })
        .unwrap_or_else(|| panic!("{tag}: no restore point placed 56 bytes before a segment end"));
    let (all, written) = archived_ends(c, &from);
    let mut targets = Vec::new();
    for (gap, lsn) in &placed {
        let e = all.iter().find(|e| &e.lsn == lsn).unwrap_or_else(|| {
            panic!("{tag}: the commit at {lsn} is not in the WAL reader's list")
        });
        targets.push(at(
            c,
            &format!("a commit {gap} bytes before a segment end"),
            &format!("'{}'", e.time),
            true,
        ));
        targets.push(at(
            c,
            &format!("1 µs before a commit {gap} bytes before a segment end"),
            &format!("'{}'::timestamptz - interval '1 microsecond'", e.time),
            true,
        ));
    }
    let resolved = restore_each(c, &all, &written, &targets, tag);
    assert_eq!(
        resolved,
        targets.len(),
        "{tag}: every target resolved to an LSN"
    );

    // The restore point is found (it used to be in neither segment's
    // index) and recovery stops right after it.
    let p = c.pitr.json(&["plan", "--name", &rp_name]);
    assert_eq!(p["stop"]["lsn"].as_str(), Some(rp.as_str()), "{p:#}");
    let r = c.restore_to(
        "restore",
        &format!("{tag}-rp"),
        &["--name", &rp_name, "--action", "pause"],
    );
    let got = r.psql("select count(*), coalesce(sum(x), 0) from w");
    assert_eq!(got, rows_at_rp, "{tag}: restore point across a segment end");
}

#[test]
fn commits_across_segment_ends_are_exact() {
    let c = Cluster::new();
    across_segment_ends(&c, "pg15-across");
}

#[test]
fn commits_across_segment_ends_are_exact_on_17() {
    let c = Cluster::of_major(17);
    across_segment_ends(&c, "pg17-across");
}
