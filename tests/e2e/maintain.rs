//! `pitr maintain`: a full backup when the repository has none; nothing
//! while the replay bound holds; an incremental (or, with a provider, a
//! snapshot) once the WAL since the newest start point would replay for
//! longer than the bound; a full backup once the chain is long; and what
//! it took restores row-exact.

use crate::harness::*;

fn maintain(c: &Cluster, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["maintain", "--pgdata", c.pgdata_str(), "--interval", "1m"];
    all.extend_from_slice(args);
    c.pitr.json(&all)
}

fn kinds(c: &Cluster) -> Vec<String> {
    let info = c.pitr.json(&["info"]);
    info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Fills `n` WAL segments (1 MiB each here) with rows, and archives them.
fn write_wal(c: &Cluster, first_id: i32, n: usize) {
    for k in 0..n {
        let id = first_id + k as i32;
        c.psql(&format!(
            "insert into t(id) values ({id}); insert into pad select g, repeat('x', 200) from generate_series(1, 3000) g; delete from pad;"
        ));
        c.switch_and_archive();
    }
}

#[test]
fn maintain_captures_what_the_bound_needs_and_nothing_more() {
    maintain_scenario(Cluster::new());
}

#[test]
fn maintain_on_pg17_captures_what_the_bound_needs() {
    maintain_scenario(Cluster::of_major(17));
}

fn maintain_scenario(c: Cluster) {
    c.create_table();
    c.psql("create table pad(id int primary key, v text)");
    // No backup yet: a full one, whatever the bound.
    let r = maintain(&c, &["--max-replay", "1h"]);
    assert_eq!(r["decision"]["capture"]["kind"], "full", "{r}");
    assert_eq!(r["captured"]["kind"], "full", "{r}");
    assert_eq!(kinds(&c), ["full"]);
    // Right after it, with a generous bound: nothing.
    let r = maintain(&c, &["--max-replay", "1h"]);
    assert_eq!(r["decision"]["capture"]["kind"], "nothing", "{r}");
    assert!(r["captured"].is_null(), "{r}");
    assert_eq!(kinds(&c).len(), 1);
    // Ten segments of WAL later, a 50 ms bound is exceeded (10 MiB at the
    // default 60 MB/s is 0.17 s): a dry run says so and takes nothing.
    write_wal(&c, 1, 10);
    let r = maintain(&c, &["--max-replay", "50ms", "--dry-run"]);
    assert_eq!(r["decision"]["capture"]["kind"], "incremental", "{r}");
    assert!(
        r["decision"]["replay_secs_now"].as_f64().unwrap() > 0.05,
        "{r}"
    );
    assert!(r["captured"].is_null(), "{r}");
    assert_eq!(kinds(&c).len(), 1);
    let r = maintain(&c, &["--max-replay", "50ms"]);
    assert_eq!(r["captured"]["kind"], "incremental", "{r}");
    let incr = r["captured"]["id"].as_str().unwrap().to_string();
    // With a provider, a snapshot.
    write_wal(&c, 11, 10);
    let snaps = c.path_of("snapshots");
    let r = maintain(
        &c,
        &[
            "--max-replay",
            "50ms",
            "--provider",
            "copy",
            "--snapshot-dir",
            snaps.to_str().unwrap(),
        ],
    );
    assert_eq!(r["captured"]["kind"], "snapshot", "{r}");
    // A chain at --max-chain: a full backup.
    write_wal(&c, 21, 10);
    let r = maintain(&c, &["--max-replay", "50ms", "--max-chain", "1"]);
    assert_eq!(r["decision"]["capture"]["kind"], "full", "{r}");
    assert!(
        r["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("--max-chain 1"),
        "{r}"
    );
    assert_eq!(kinds(&c), ["full", "incremental", "snapshot", "full"]);
    // What maintain took restores: the incremental, to its own point.
    let restored = c.restore_to("restore", "from-incr", &["--from", &incr, "--immediate"]);
    assert_eq!(
        restored.rows(),
        (1..=10)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
}
