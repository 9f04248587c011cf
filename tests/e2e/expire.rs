//! `pitr expire`: with a window that begins between two backups, the
//! older backup goes with the WAL before the anchor; every moment of the
//! window still restores row-exact, the moments before it are refused by
//! plan; a dry run removes nothing; a window older than every backup is
//! refused; a segment archived again after an expire is listed again and
//! goes with the next one.

use std::time::Duration;

use crate::harness::*;

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn stop_time(b: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    b["stop_time"].as_str().unwrap().parse().unwrap()
}

#[test]
fn expire_removes_what_the_window_does_not_need() {
    expire_scenario(Cluster::new());
}

#[test]
fn expire_on_s3_removes_what_the_window_does_not_need() {
    expire_scenario(Cluster::on_s3(crate::s3::shared(), "expire"));
}

fn expire_scenario(c: Cluster) {
    c.create_table();
    let b0 = c.backup();
    c.psql("insert into t(id) values (1)");
    let old_seg = c.switch_and_archive();
    // Keep the old segment's bytes, to archive it again later.
    let saved = c.path_of("saved");
    std::fs::create_dir_all(&saved).unwrap();
    let saved_seg = saved.join(&old_seg);
    c.pitr
        .ok(&["wal-fetch", &old_seg, saved_seg.to_str().unwrap()]);
    let b1 = c.backup();
    c.psql("select pg_sleep(2); insert into t(id) values (2)");
    c.psql("select pg_sleep(2); insert into t(id) values (3)");
    let b2 = c.backup();
    c.psql("insert into t(id) values (4)");
    let in_window = c.psql("select clock_timestamp()").trim().to_string();
    c.psql("insert into t(id) values (5)");
    c.switch_and_archive();

    // The window starts 1.5 to 2.5 s after b1 finished (b2 finished 4 s
    // after it): b1 is the anchor, b0 and the WAL before b1 go.
    let since_b1 = chrono::Utc::now() - stop_time(&b1);
    let window = format!("{}ms", since_b1.num_milliseconds() - 1500);
    let dry = c
        .pitr
        .json(&["expire", "--keep-window", &window, "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        ids(&dry["backups"]),
        [b0["id"].as_str().unwrap()],
        "{dry:#}"
    );
    assert!(dry["wal_segments"].as_u64().unwrap() >= 1, "{dry:#}");
    assert!(dry["bytes_freed"].as_u64().unwrap() > 0, "{dry:#}");
    let kept: Vec<String> = ids(&dry["plan"]["keep"]);
    assert!(
        kept.contains(&b1["id"].as_str().unwrap().to_string()),
        "{dry:#}"
    );
    assert_eq!(
        c.pitr.json(&["info"])["backups"].as_array().unwrap().len(),
        3
    );

    let since_b1 = chrono::Utc::now() - stop_time(&b1);
    let window = format!("{}ms", since_b1.num_milliseconds() - 1500);
    let r = c.pitr.json(&["expire", "--keep-window", &window]);
    assert_eq!(ids(&r["backups"]), [b0["id"].as_str().unwrap()], "{r:#}");
    let info = c.pitr.json(&["info"]);
    let listed: Vec<String> = ids(&info["backups"]);
    assert_eq!(
        listed,
        [b1["id"].as_str().unwrap(), b2["id"].as_str().unwrap()]
    );
    let tli_dir = c.pitr.repo.join("wal").join(&old_seg[..8]);
    let record_there = |seg: &str| {
        if c.pitr.is_s3() {
            // wal-fetch tells: a file not archived exits 3.
            let probe = c.path_of("probe");
            let out = c.pitr.run(&["wal-fetch", seg, probe.to_str().unwrap()]);
            let _ = std::fs::remove_file(&probe);
            out.status.success()
        } else {
            tli_dir.join(format!("{seg}.json")).exists()
        }
    };
    if !c.pitr.is_s3() {
        let dir = c.pitr.repo.join("backups").join(b0["id"].as_str().unwrap());
        assert!(!dir.exists());
    }
    assert!(!record_there(&old_seg), "{old_seg} kept");
    // What expire left verifies clean (nothing listed that it removed).
    let v = c.pitr.json(&["verify"]);
    assert_eq!(
        v["verify"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
    // A moment in the window restores row-exact, from what was kept.
    let restored = c.restore_to("restore", "in-window", &["--to", &in_window]);
    assert_eq!(restored.rows(), "1,2,3,4");
    drop(restored);
    // A moment before the window's anchor is gone.
    let (code, err) = c
        .pitr
        .fails(&["plan", "--to", b0["stop_time"].as_str().unwrap()]);
    assert_eq!(code, 4, "{err}");

    // Archived again after the expire: listed again (it is not hidden by
    // an expire that started before it), then the next expire removes it.
    let again = c.pitr.json(&["wal-push", saved_seg.to_str().unwrap()]);
    assert_eq!(again["status"], "stored", "{again}");
    assert!(record_there(&old_seg));
    let since_b1 = chrono::Utc::now() - stop_time(&b1);
    let window = format!("{}ms", since_b1.num_milliseconds() - 1500);
    let r = c.pitr.json(&["expire", "--keep-window", &window]);
    assert_eq!(r["wal_segments"], 1, "{r:#}");
    assert!(!record_there(&old_seg));

    // A window older than every backup: refused, nothing removed.
    std::thread::sleep(Duration::from_millis(50));
    let (code, err) = c.pitr.fails(&["expire", "--keep-window", "10ms"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("widen --keep-window"), "{err}");
    assert_eq!(
        c.pitr.json(&["info"])["backups"].as_array().unwrap().len(),
        2
    );
    let (code, err) = c.pitr.fails(&["expire", "--keep-window", "soon"]);
    assert_eq!(code, 2, "{err}");
}
