//! Issue 13 part 1: `pitr backup --incremental [--parent ID]` against real
//! PostgreSQL 15 and 17. A full backup, then three incrementals taken while
//! pgbench (four clients) writes, with rows inserted, updated and deleted,
//! a table truncated and refilled and a table dropped between them; every
//! incremental restores, through its chain, to exactly the rows the source
//! had right after it. An incremental on timeline 2 restores through a
//! chain that starts on timeline 1. Refusals: no parent, an unknown parent.

use std::process::Child;
use std::time::Instant;

use crate::harness::*;

fn load(c: &Cluster, secs: u64) -> Child {
    c.pgbench(&["-n", "-c", "4", "-j", "2", "-T", &secs.to_string()])
        .spawn()
        .unwrap()
}

/// Everything the scenario writes, as Postgres computes it: the ids of
/// `t`, digests of `u`, `trunc` and pgbench's tables (read through an
/// index too), and whether `dropme` exists.
const STATE: &str = "select \
    (select coalesce(string_agg(id::text, ',' order by id), '') from t) || ' | ' || \
    (select count(*) || ':' || md5(coalesce(string_agg(id || '=' || v, ',' order by id), '')) from u) || ' | ' || \
    (select count(*) || ':' || md5(coalesce(string_agg(id::text, ',' order by id), '')) from trunc) || ' | ' || \
    (select md5(string_agg(aid || '=' || abalance, ',' order by aid)) from pgbench_accounts) || ' | ' || \
    (select count(*) || ':' || coalesce(sum(delta), 0) from pgbench_history) || ' | ' || \
    (select count(*) from pg_class where relname = 'dropme')";

const INDEXED: &str = "set enable_seqscan = off; set enable_bitmapscan = off; \
    select count(*) || ':' || sum(abalance) from pgbench_accounts where aid between 1000 and 60000";

/// Changes between backups `k` (1-based): rows inserted into `t`,
/// updated and deleted in `u`; before the first incremental `trunc` is
/// truncated and refilled, before the second `dropme` is dropped.
fn change(c: &Cluster, k: i32) {
    c.psql(&format!(
        "insert into t(id) select g from generate_series({}, {}) g",
        k * 100,
        k * 100 + 20
    ));
    c.psql(&format!(
        "update u set v = v || '-{k}' where id % 5 = {k}; delete from u where id % 11 = {k}"
    ));
    if k == 1 {
        c.psql("truncate trunc; insert into trunc select g from generate_series(5000, 5100) g");
    }
    if k == 2 {
        c.psql("drop table dropme");
    }
}

fn setup(c: &Cluster) {
    c.create_table();
    c.psql("create table u(id int primary key, v text)");
    c.psql("insert into u select g, 'v' || g from generate_series(1, 20000) g");
    c.psql("create table trunc(id int)");
    c.psql("insert into trunc select g from generate_series(1, 30000) g");
    c.psql("create table dropme as select g from generate_series(1, 10000) g");
    let init = c.pgbench(&["-i", "-s", "1", "-q"]).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}

fn incremental(c: &Cluster, pgdata: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["backup", "--incremental", "--pgdata", pgdata];
    args.extend_from_slice(extra);
    c.pitr.json(&args)
}

fn chain_scenario(c: Cluster) {
    setup(&c);
    // Refused before any backup exists: no parent.
    let (code, err) = c
        .pitr
        .fails(&["backup", "--incremental", "--pgdata", c.pgdata_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("take a full backup first"), "{err}");

    let t0 = Instant::now();
    let full = c.backup();
    let full_secs = t0.elapsed().as_secs_f64();
    let full_id = full["id"].as_str().unwrap().to_string();
    assert_eq!(full["kind"], "full");

    let (code, err) = c.pitr.fails(&[
        "backup",
        "--incremental",
        "--parent",
        "20990101T000000Z",
        "--pgdata",
        c.pgdata_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no backup 20990101T000000Z"), "{err}");

    let mut parent = full_id.clone();
    let mut taken = Vec::new();
    for k in 1..=3 {
        change(&c, k);
        let busy = load(&c, 5);
        let t0 = Instant::now();
        let inc = incremental(&c, c.pgdata_str(), &[]);
        let secs = t0.elapsed().as_secs_f64();
        let out = busy.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(inc["kind"], "incremental", "{inc:#}");
        assert_eq!(inc["parent"].as_str(), Some(parent.as_str()), "{inc:#}");
        assert_eq!(inc["start"]["kind"], "incremental");
        let raw = inc["raw_bytes"].as_u64().unwrap();
        let changed = inc["changed_bytes"].as_u64().unwrap();
        let stored = inc["stored_bytes"].as_u64().unwrap();
        assert!(changed < raw, "changed {changed} of {raw}");
        assert!(
            inc["file_sources"]["unchanged"].as_u64().unwrap() > 0
                && inc["file_sources"]["delta"].as_u64().unwrap() > 0,
            "{inc:#}"
        );
        eprintln!(
            "incremental {k}: {secs:.1}s, raw {raw}, changed {changed}, stored {stored} (full: {} stored in {full_secs:.1}s), files {}",
            full["stored_bytes"], inc["file_sources"]
        );
        let id = inc["id"].as_str().unwrap().to_string();
        let rp = format!("after_{k}");
        c.psql(&format!("select pg_create_restore_point('{rp}')"));
        let want = c.psql(STATE);
        let want_indexed = c.psql(INDEXED);
        taken.push((id.clone(), rp, want, want_indexed));
        parent = id;
    }
    // A small change: an incremental far smaller than the full backup
    // (on one taken once pgbench stopped: pages it wrote during the last
    // incremental changed after that one began).
    incremental(&c, c.pgdata_str(), &[]);
    c.psql("insert into t(id) values (1000)");
    let small = incremental(&c, c.pgdata_str(), &[]);
    let small_stored = small["stored_bytes"].as_u64().unwrap();
    let full_stored = full["stored_bytes"].as_u64().unwrap();
    eprintln!(
        "after a quiet spell: incremental stored {small_stored} bytes, changed {}, full stored {full_stored}",
        small["changed_bytes"]
    );
    assert!(
        small_stored * 10 < full_stored,
        "{small_stored} of {full_stored}"
    );
    c.switch_and_archive();

    let info = c.pitr.json(&["info"]);
    let listed = info["backups"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|b| b["id"] == full_id.as_str() && b["kind"] == "full" && b["parent"].is_null()));
    for (i, (id, ..)) in taken.iter().enumerate() {
        let want_parent = if i == 0 { &full_id } else { &taken[i - 1].0 };
        assert!(
            listed.iter().any(|b| b["id"] == id.as_str()
                && b["kind"] == "incremental"
                && b["parent"] == want_parent.as_str()),
            "{info:#}"
        );
    }
    let text = c.pitr.ok(&["info"]);
    assert!(
        text.contains(&format!("incremental on {full_id}")),
        "{text}"
    );

    for (i, (id, rp, want, want_indexed)) in taken.iter().enumerate() {
        // By cost the planner takes the incremental when replay is dear
        // (here: 0.1 MB/s); on this small a database, at the default
        // rates, the full backup and a little replay may cost less.
        let plan = c.pitr.json(&["plan", "--name", rp, "--replay-rate", "0.1"]);
        assert_eq!(plan["backup"]["id"].as_str(), Some(id.as_str()), "{plan:#}");
        assert_eq!(plan["backup"]["start"]["kind"], "incremental", "{plan:#}");
        assert_eq!(
            plan["backup"]["chain"].as_array().unwrap().len(),
            i + 2,
            "{plan:#}"
        );
        assert_eq!(
            plan["backup"]["chain"][0].as_str(),
            Some(full_id.as_str()),
            "{plan:#}"
        );
        // Every listed incremental restores: through its chain, forced.
        let t0 = Instant::now();
        let r = c.restore_to("restore", &format!("r-{rp}"), &["--name", rp, "--from", id]);
        eprintln!(
            "restore of {id} (chain) to {rp}: {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(r.out["backup_id"].as_str(), Some(id.as_str()));
        assert_eq!(&r.psql(STATE), want, "{rp}");
        assert_eq!(&r.psql(INDEXED), want_indexed, "{rp}");
    }
    // verify reads every incremental's objects by their sources: clean.
    let v = c.pitr.json(&["verify"]);
    assert_eq!(
        v["verify"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
}

#[test]
fn incremental_chain_restores_exactly_on_pg15() {
    chain_scenario(Cluster::new());
}

#[test]
fn incremental_chain_restores_exactly_on_pg17() {
    chain_scenario(Cluster::of_major(17));
}

/// The oldest major, with the backup functions before 15's renaming.
#[test]
fn incremental_chain_restores_exactly_on_pg13() {
    chain_scenario(Cluster::of_major(13));
}

/// An incremental taken on timeline 2 (a branch made after its parent
/// ended) restores through a chain whose full backup and first
/// incremental are on timeline 1. Without `--parent` it is refused: no
/// backup lies on timeline 2 yet.
#[test]
fn an_incremental_on_timeline_2_restores_through_a_chain_from_timeline_1() {
    let c = Cluster::new();
    setup(&c);
    let full = c.backup();
    change(&c, 1);
    let inc1 = incremental(&c, c.pgdata_str(), &[]);
    let inc1_id = inc1["id"].as_str().unwrap().to_string();
    assert_eq!(inc1["parent"], full["id"]);
    super::insert_rows(&c, 1, 4);
    let to = super::midpoint(&c, 2, 3);
    c.psql("insert into t(id) values (99)"); // lost by the branch
    c.switch_and_archive();

    let r = c.branch("tl2", &to);
    assert_eq!(r.out["timeline"], 2);
    let pgdata = r.pgdata.to_str().unwrap().to_string();
    let (code, err) = c
        .pitr
        .fails(&["backup", "--incremental", "--pgdata", &pgdata]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("take a full backup first"), "{err}");

    r.psql("insert into t(id) values (200), (201); update u set v = 'tl2' where id < 100");
    let inc2 = incremental(&c, &pgdata, &["--parent", &inc1_id]);
    assert_eq!(inc2["parent"].as_str(), Some(inc1_id.as_str()), "{inc2:#}");
    assert_eq!(inc2["timeline"], 2);
    let inc2_id = inc2["id"].as_str().unwrap().to_string();
    r.psql("insert into t(id) values (202)");
    r.psql("select pg_create_restore_point('on_tl2')");
    let want = r.psql(STATE);
    let seg = r
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    assert!(seg.starts_with("00000002"), "{seg}");
    c.wait_archived(&seg);

    // Replay made dear, the planner takes the newest incremental (whose
    // chain crosses the timeline switch); the restore is forced to it.
    let plan = c
        .pitr
        .json(&["plan", "--name", "on_tl2", "--replay-rate", "0.1"]);
    assert_eq!(
        plan["backup"]["id"].as_str(),
        Some(inc2_id.as_str()),
        "{plan:#}"
    );
    assert_eq!(plan["backup"]["start"]["kind"], "incremental");
    assert_eq!(
        plan["backup"]["chain"].as_array().unwrap().len(),
        3,
        "{plan:#}"
    );
    let restored = c.restore_to(
        "restore",
        "from-chain",
        &["--name", "on_tl2", "--from", &inc2_id],
    );
    assert_eq!(restored.out["backup_id"].as_str(), Some(inc2_id.as_str()));
    assert_eq!(restored.psql(STATE), want);
    assert!(
        restored.rows().starts_with("1,2,100,"),
        "{}",
        restored.rows()
    );
    assert!(
        restored.rows().ends_with(",120,200,201,202"),
        "{}",
        restored.rows()
    );
}

/// kill -9 of `pitr backup --incremental` at spread-out moments: nothing
/// killed is listed, the next incremental sweeps what the killed runs
/// left and takes the last listed backup as its parent, and its chain
/// restores exactly.
#[test]
fn a_killed_incremental_is_never_listed_and_the_next_one_restores() {
    let c = Cluster::new();
    c.create_table();
    c.psql("create table big as select g, repeat(md5(g::text), 20) as pad from generate_series(1, 150000) g");
    let full = c.backup();
    let full_id = full["id"].as_str().unwrap().to_string();
    c.psql("update big set pad = 'x' where g % 1000 = 0");
    let probe = Instant::now();
    let first = incremental(&c, c.pgdata_str(), &[]);
    let took = probe.elapsed();
    let first_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["parent"].as_str(), Some(full_id.as_str()));
    let backups = c.pitr.repo.join("backups");
    for n in 0..4u32 {
        c.psql(&format!("update big set pad = 'k{n}' where g % 997 = {n}"));
        let mut child = c
            .pitr
            .cmd(&[
                "backup",
                "--incremental",
                "--pgdata",
                c.pgdata_str(),
                "--jobs",
                "1",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(took.mul_f64(f64::from(n + 1) / 6.0));
        let _ = child.kill();
        let finished = child.wait().unwrap().success();
        let info = c.pitr.json(&["info"]);
        let listed = info["backups"].as_array().unwrap().len();
        assert!(listed >= 2 && listed <= 2 + n as usize + 1, "{info:#}");
        eprintln!("incremental kill {n}: finished before the kill: {finished}");
    }
    // A run in a new second sweeps every killed run's objects.
    std::thread::sleep(std::time::Duration::from_secs(1));
    c.psql("insert into t(id) values (1), (2)");
    let last = incremental(&c, c.pgdata_str(), &[]);
    let info = c.pitr.json(&["info"]);
    let listed: Vec<(String, Option<String>)> = info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["parent"].as_str().map(str::to_string),
            )
        })
        .collect();
    // The parent is the newest listed one before it.
    let before = &listed[listed.len() - 2].0;
    assert_eq!(last["parent"].as_str(), Some(before.as_str()), "{listed:?}");
    for d in std::fs::read_dir(&backups).unwrap() {
        let d = d.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            listed.iter().any(|(id, _)| *id == d),
            "backup {d} is neither listed nor swept: {listed:?}"
        );
    }
    assert!(listed.iter().any(|(id, _)| *id == first_id));
    let want = c.psql("select md5(string_agg(g || pad, ',' order by g)) from big");
    c.switch_and_archive();
    let last_id = last["id"].as_str().unwrap().to_string();
    let r = c.restore_to("restore", "after-kills", &["--latest", "--from", &last_id]);
    assert_eq!(r.out["backup_id"], last["id"]);
    assert_eq!(
        r.psql("select md5(string_agg(g || pad, ',' order by g)) from big"),
        want
    );
    assert_eq!(r.rows(), "1,2");
}
