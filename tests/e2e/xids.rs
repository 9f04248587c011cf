//! Xid targets end to end: the 64-bit form of `pg_current_xact_id()`
//! after an epoch bump (as src/test/recovery/t/003_recovery_targets.pl
//! does with `pg_resetwal --epoch`), an epoch the WAL does not have, and
//! an xid that commits only on timeline 1 after timeline 2 branched off
//! (where timeline 2 aborted its own transaction of that number).

use super::harness::*;
use super::{midpoint, restore_rows};

/// Inserts row `i` in its own transaction; its `pg_current_xact_id()`.
fn insert_full_xid(psql: impl Fn(&str) -> String, i: i32) -> u64 {
    returned(&psql(&format!(
        "select pg_sleep(0.1); insert into t(id) values ({i}) returning pg_current_xact_id()"
    )))
}

/// Stops the cluster, sets its xid epoch with pg_resetwal, starts it.
fn bump_epoch(c: &Cluster, epoch: u32) {
    // pg_resetwal wants a clean shutdown.
    let mut stop = as_postgres(format!("{}/pg_ctl", c.bin));
    stop.args(["stop", "-m", "fast", "-w", "-D"]).arg(&c.pgdata);
    run_ok(stop);
    let mut r = as_postgres(format!("{}/pg_resetwal", c.bin));
    r.args(["-e", &epoch.to_string(), "-D"]).arg(&c.pgdata);
    run_ok(r);
    c.start();
}

/// Rows 1..=3, each its own transaction, after a backup; the full xid of
/// row 2; the rows' WAL archived.
fn three_rows(c: &Cluster) -> u64 {
    c.create_table();
    c.backup();
    insert_full_xid(|q| c.psql(q), 1);
    let x2 = insert_full_xid(|q| c.psql(q), 2);
    insert_full_xid(|q| c.psql(q), 3);
    c.switch_and_archive();
    x2
}

#[test]
fn an_xid_in_pg_current_xact_id_form_after_an_epoch_bump_restores() {
    let c = Cluster::new();
    bump_epoch(&c, 1);
    let x2 = three_rows(&c);
    assert_eq!(x2 >> 32, 1, "pg_current_xact_id() shows epoch 1: {x2}");
    let low = (x2 & 0xFFFF_FFFF).to_string();
    let full = x2.to_string();

    let p = c.pitr.json(&["plan", "--xid", &full]);
    assert_eq!(p["target"]["value"].as_u64(), Some(x2), "{p:#}");
    assert_eq!(p["stop"]["xid"].as_u64(), Some(x2 & 0xFFFF_FFFF), "{p:#}");
    assert!(p["stop"]["lsn"].is_string(), "{p:#}");

    // Written as given: PostgreSQL 13+ reads the 64-bit form.
    let r = c.restore_to("restore", "full", &["--xid", &full]);
    assert_eq!(r.rows(), "1,2");
    let conf = std::fs::read_to_string(r.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(
        conf.contains(&format!("recovery_target_xid = '{full}'")),
        "{conf}"
    );
    drop(r);
    let r = c.restore_to("restore", "full-excl", &["--xid", &full, "--exclusive"]);
    assert_eq!(r.rows(), "1");
    drop(r);
    // The 32 bits alone name the same transaction.
    let p = c.pitr.json(&["plan", "--xid", &low]);
    assert_eq!(
        p["stop"]["lsn"],
        c.pitr.json(&["plan", "--xid", &full])["stop"]["lsn"]
    );

    // Another epoch is refused before anything is fetched, saying the WAL's.
    let other = ((2u64 << 32) | (x2 & 0xFFFF_FFFF)).to_string();
    let (code, err) = c.restore_fails("restore", "other-epoch", &["--xid", &other]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("epoch 1"), "{err}");
    assert!(!c.path_of("other-epoch").exists());
    // Not an xid at all: a usage error.
    let (code, err) = c.pitr.fails(&["plan", "--xid", "12abc"]);
    assert_eq!(code, 2, "{err}");
}

/// PostgreSQL 17 (its npm build has no pg_resetwal, so its epoch stays
/// 0): the 32-bit form restores, and a 64-bit form of epoch 1 is refused
/// naming the WAL's epoch 0.
#[test]
fn xids_on_pg17_restore_and_a_wrong_epoch_is_refused() {
    let c = Cluster::of_major(17);
    let x2 = three_rows(&c);
    assert_eq!(x2 >> 32, 0);
    let r = c.restore_to("restore", "x2", &["--xid", &x2.to_string()]);
    assert_eq!(r.rows(), "1,2");
    drop(r);
    let other = ((1u64 << 32) | x2).to_string();
    let (code, err) = c.pitr.fails(&["plan", "--xid", &other]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("in epoch 0"), "{err}");
}

#[test]
fn an_xid_committed_only_on_timeline_1_after_the_branch_restores_on_timeline_1() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    insert_full_xid(|q| c.psql(q), 1);
    insert_full_xid(|q| c.psql(q), 2);
    let t12 = midpoint(&c, 1, 2);
    insert_full_xid(|q| c.psql(q), 3);
    c.switch_and_archive();

    // Timeline 2 branches off between rows 1 and 2 and archives into the
    // same repository.
    let r = c.branch("tl2", &t12);
    assert_eq!(r.out["timeline"], 2);

    // Timeline 1 goes on: row 7's transaction commits only there.
    let x7 = insert_full_xid(|q| c.psql(q), 7);
    c.switch_and_archive();
    // Timeline 2 numbers its transactions from the branch on: it uses up
    // the xids below x7 and aborts its own x7, so its segment's xid range
    // holds x7 (the bound the planner once chose timeline 2 by).
    loop {
        let next: u64 = r
            .psql("select pg_current_xact_id()")
            .trim()
            .parse()
            .unwrap();
        assert!(next <= x7, "timeline 2 passed {x7} ({next})");
        if next + 1 == x7 {
            break;
        }
    }
    let aborted =
        r.psql("begin; insert into t(id) values (700) returning pg_current_xact_id(); rollback;");
    assert!(aborted.contains(&x7.to_string()), "{aborted}");
    r.psql("insert into t(id) values (701)");
    let seg = r
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    assert!(seg.starts_with("00000002"), "{seg}");
    c.wait_archived(&seg);

    let x7s = x7.to_string();
    let p = c.pitr.json(&["plan", "--xid", &x7s]);
    assert_eq!(p["timeline"], 1, "{p:#}");
    assert!(
        p["timeline_reason"]
            .as_str()
            .unwrap()
            .contains("only off the newest timeline 2"),
        "{p:#}"
    );
    let (rows, _) = restore_rows(&c, "x7", &["--xid", &x7s]);
    assert_eq!(rows, "1,2,3,7");
    // Asked for timeline 2, where x7 aborted: refused before any download.
    let (code, err) = c.restore_fails("restore", "x7-tl2", &["--xid", &x7s, "--timeline", "2"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("aborted"), "{err}");
    assert!(!c.path_of("x7-tl2").exists());
}
