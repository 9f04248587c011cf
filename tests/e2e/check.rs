//! `pitr check`: a repository without a backup is critical; a fresh backup
//! and a keeping-up archiver are ok; an old backup warns; an archiver that
//! fails is critical; `--nagios` answers with a plugin's exit codes and
//! 3 when the check cannot run.

use std::time::Duration;

use crate::harness::*;

fn check(c: &Cluster, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let out = c.pitr.run(&all);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn status_of<'a>(r: &'a serde_json::Value, name: &str) -> &'a str {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} in {r}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn check_reports_what_monitoring_alerts_on() {
    let c = Cluster::new();
    let pgdata = c.pgdata_str().to_string();
    // Nothing restorable yet.
    let (code, r) = check(&c, &[]);
    assert_eq!(code, 12, "{r}");
    assert_eq!(r["status"], "critical");
    assert_eq!(status_of(&r, "backup_age"), "critical");

    c.backup();
    // Never verified: a warning, until `pitr verify` passes.
    let (code, r) = check(&c, &["--pgdata", &pgdata]);
    assert_eq!((code, status_of(&r, "verify")), (11, "warning"), "{r:#}");
    c.pitr.ok(&["verify"]);
    let (code, r) = check(&c, &["--pgdata", &pgdata]);
    assert_eq!(code, 0, "{r:#}");
    for name in [
        "backup_age",
        "wal_continuity",
        "catalog",
        "verify",
        "archive_lag",
        "archiver",
    ] {
        assert_eq!(status_of(&r, name), "ok", "{r:#}");
    }
    // An age bound the backup has passed warns; as a Nagios plugin, 1.
    let (code, r) = check(&c, &["--warn-backup-age", "1ms"]);
    assert_eq!((code, status_of(&r, "backup_age")), (11, "warning"), "{r}");
    let out = c
        .pitr
        .run(&["check", "--warn-backup-age", "1ms", "--nagios"]);
    assert_eq!(out.status.code(), Some(1));
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(line.starts_with("WARNING: backup_age: "), "{line}");

    // archive_command fails from now on: critical, naming the segment.
    c.psql("alter system set archive_command = 'false'");
    c.psql("select pg_reload_conf()");
    c.psql("create table t(x int); insert into t select generate_series(1, 1000)");
    let seg = c
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    wait_for("the archiver to fail", Duration::from_secs(60), || {
        c.psql("select failed_count > 0 from pg_stat_archiver")
            .trim()
            == "t"
    });
    let (code, r) = check(&c, &["--pgdata", &pgdata]);
    assert_eq!(code, 12, "{r:#}");
    assert_eq!(status_of(&r, "archiver"), "critical", "{r:#}");
    let msg = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "archiver")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(&seg), "{msg}");
    let out = c.pitr.run(&["check", "--pgdata", &pgdata, "--nagios"]);
    assert_eq!(out.status.code(), Some(2));
    // An archive lag past the bound is critical too.
    let (_, r) = check(&c, &["--pgdata", &pgdata, "--crit-archive-lag", "1k"]);
    assert_eq!(status_of(&r, "archive_lag"), "critical", "{r:#}");

    // A check that cannot run: a plugin's UNKNOWN; otherwise pitr's code.
    let nowhere = c.path_of("no-repo");
    let out = c
        .pitr
        .cmd(&["check", "--nagios"])
        .args(["--repo", nowhere.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNKNOWN: "));
    let (code, err) = c.pitr.fails(&["check", "--warn-archive-lag", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a size"), "{err}");
}
