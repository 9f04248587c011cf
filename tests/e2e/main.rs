//! End-to-end tests against a real PostgreSQL 15 (Debian's postgresql-15):
//! archiving, backups, planning and restores through the pitr binary,
//! checked row by row. One test binary; helpers in `harness`.

mod backup_sources;
mod check;
mod config;
mod encryption;
mod exact;
mod expire;
mod faults;
mod follow;
mod fork;
mod harness;
mod incremental;
mod maintain;
mod progress;
mod recovery_faults;
mod runbooks;
mod s3;
mod snapshot;
mod snapshot_tablespaces;
mod store_conformance;
mod tablespaces;
mod trust;
mod verify;
mod xids;

use harness::*;
use std::time::Duration;

/// Inserts rows `from..=to`, each in its own transaction, ~200 ms apart,
/// so that a midpoint between two rows' timestamps is far from any commit.
fn insert_rows(c: &Cluster, from: i32, to: i32) {
    for i in from..=to {
        // One implicit transaction: the sleep comes first so the commit
        // follows the row's clock_timestamp() immediately.
        c.psql(&format!(
            "select pg_sleep(0.2); insert into t(id) values ({i})"
        ));
    }
}

/// A time halfway between rows `a` and `b`, in Postgres' UTC form.
fn midpoint(c: &Cluster, a: i32, b: i32) -> String {
    midpoint_via(|q| c.psql(q), a, b)
}

fn midpoint_via(psql: impl Fn(&str) -> String, a: i32, b: i32) -> String {
    psql(&format!(
        "select x.ts + (y.ts - x.ts) / 2 from t x, t y where x.id = {a} and y.id = {b}"
    ))
    .trim()
    .to_string()
}

fn ids_until(c: &Cluster, t: &str) -> String {
    c.psql(&format!(
        "select coalesce(string_agg(id::text, ',' order by id), '') from t where ts <= '{t}'"
    ))
    .trim()
    .to_string()
}

#[test]
fn rollback_to_time_restores_exactly_the_rows_before_it() {
    rollback_scenario(Cluster::new());
}

#[test]
fn rollback_on_s3_restores_exactly_the_rows_before_it() {
    rollback_scenario(Cluster::on_s3(s3::shared(), "rollback"));
}

fn rollback_scenario(c: Cluster) {
    c.create_table();
    let b1 = c.backup();
    insert_rows(&c, 1, 6);
    let b2 = c.backup();
    insert_rows(&c, 7, 12);
    let t1 = midpoint(&c, 3, 4); // between the backups
    let t2 = midpoint(&c, 9, 10); // after the second backup
    let want1 = ids_until(&c, &t1);
    let want2 = ids_until(&c, &t2);
    assert_eq!(want1, "1,2,3");
    assert_eq!(want2, "1,2,3,4,5,6,7,8,9");
    // The accident, then make sure its WAL is archived.
    c.psql("drop table t");
    c.switch_and_archive();

    // The planner picks the first backup for a target between the two, and
    // the second (less WAL to replay) for a target after both.
    let p1 = c.pitr.json(&["plan", "--to", &t1]);
    assert_eq!(p1["backup"]["id"], b1["id"], "plan: {p1:#}");
    let p2 = c.pitr.json(&["plan", "--to", &t2]);
    assert_eq!(p2["backup"]["id"], b2["id"], "plan: {p2:#}");
    assert_eq!(p2["steps"][0]["kind"], "restore_backup");
    assert_eq!(p2["steps"][1]["kind"], "replay_wal");
    assert!(p2["alternatives"].as_array().unwrap().len() == 1);

    // rollback (promote) to t1.
    let r1 = c.restore_to("rollback", "rollback1", &["--to", &t1]);
    let new1 = c.path_of("rollback1");
    assert_eq!(r1.out["backup_id"], b1["id"]);
    assert_eq!(r1.out["timeline"], 2);
    let got = r1.psql("select string_agg(id::text, ',' order by id) from t");
    assert_eq!(got.trim(), want1);
    assert_eq!(r1.psql("select pg_is_in_recovery()").trim(), "f");
    // The last replayed commit is not after the target.
    let last = r1.out["last_replayed_commit"].as_str().unwrap().to_string();
    let ok = r1.psql(&format!(
        "select '{last}'::timestamptz <= '{t1}'::timestamptz"
    ));
    assert_eq!(ok.trim(), "t");
    // Settings live in postgresql.auto.conf, archiving to the source is off.
    let auto = std::fs::read_to_string(new1.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("archive_mode = 'off'"), "{auto}");
    // The time is resolved to the exact record: it stops at that LSN.
    assert!(auto.contains("recovery_target_lsn = "), "{auto}");
    assert!(auto.contains("recovery_target_inclusive = off"), "{auto}");
    assert!(!auto.contains("recovery_target_time = "), "{auto}");
    assert_eq!(r1.psql("show archive_mode").trim(), "off");
    // restore_command carries the repository and its S3 settings.
    if c.pitr.is_s3() {
        assert!(auto.contains("--repo s3://rollback/cluster1 "), "{auto}");
        assert!(auto.contains("--s3-endpoint http://127.0.0.1:"), "{auto}");
        assert!(auto.contains("--s3-path-style"), "{auto}");
        assert!(
            !auto.contains(s3::SECRET_KEY),
            "credentials leaked into {auto}"
        );
    }
    // Owned by postgres, not root.
    let meta = std::fs::metadata(new1.join("PG_VERSION")).unwrap();
    if is_root() {
        assert_ne!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    }
    drop(r1);

    // restore with an explicit port to t2, from the second backup.
    let port = free_port().to_string();
    let r2 = c.restore_to(
        "restore",
        "restore2",
        &["--to", &t2, "--port", &port, "--action", "promote"],
    );
    // Restores record what they measured; plans use it from then on.
    let p = c.pitr.json(&["plan", "--to", &t2]);
    let source = p["cost_model"]["source"].as_str().unwrap();
    assert!(source.contains("recorded restores"), "{p:#}");
    let p = c.pitr.json(&["plan", "--to", &t2, "--replay-rate", "1"]);
    assert_eq!(p["cost_model"]["replay_bytes_per_sec"].as_f64(), Some(1e6));
    assert_eq!(r2.port.to_string(), port);
    assert_eq!(r2.out["backup_id"], b2["id"]);
    let got = r2.psql("select string_agg(id::text, ',' order by id) from t");
    assert_eq!(got.trim(), want2);
}

#[test]
fn plan_errors_name_the_limit() {
    let c = Cluster::new();
    c.create_table();
    let before_backup = c.psql("select now()").trim().to_string();
    let b = c.backup();
    insert_rows(&c, 1, 3);
    let last_commit = c.psql("select max(ts) from t").trim().to_string();
    let seg3 = c.switch_and_archive();
    insert_rows(&c, 4, 5);
    let after_all = c
        .psql("select clock_timestamp() + interval '1 hour'")
        .trim()
        .to_string();
    let end = c.switch_and_archive();
    let _ = last_commit;

    // Before the earliest restorable time: says which that is.
    let (code, err) = c.pitr.fails(&["plan", "--to", &before_backup]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("before the earliest restorable time"), "{err}");
    assert!(err.contains(b["id"].as_str().unwrap()), "{err}");
    // --by: an hour ago is before the cluster existed.
    let (code, err) = c.pitr.fails(&["plan", "--by", "1h"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("before the earliest restorable time"), "{err}");

    // After the latest archived WAL: says what the latest is.
    let (code, err) = c.pitr.fails(&["plan", "--to", &after_all]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("after the latest archived WAL"), "{err}");
    assert!(
        err.contains(&end),
        "names the segment of the last transaction: {err}"
    );

    // A missing segment: named, with the last restorable time before it.
    let target = midpoint(&c, 4, 5);
    c.pitr.ok(&["plan", "--to", &target]);
    let tli = &seg3[..8];
    let objects = [
        c.pitr.repo.join(format!("wal/{tli}/{seg3}.json")),
        segment_data_object(&c.pitr.repo, &seg3),
        c.pitr
            .repo
            .join(format!("catalog/wal/{tli}/pending/{seg3}.json")),
    ];
    let saved: Vec<Vec<u8>> = objects.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for p in &objects {
        std::fs::remove_file(p).unwrap();
    }
    let (code, err) = c.pitr.fails(&["plan", "--to", &target]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("WAL segment {seg3} is missing")),
        "{err}"
    );
    assert!(err.contains("last restorable time"), "{err}");
    let info = c.pitr.json(&["info"]);
    let missing = &info["wal"][0]["missing"];
    assert_eq!(missing[0].as_str(), Some(seg3.as_str()), "{info:#}");
    assert_eq!(
        info["timelines"][0]["gaps"][0].as_str(),
        Some(seg3.as_str()),
        "{info:#}"
    );
    for (p, bytes) in objects.iter().zip(saved) {
        std::fs::write(p, bytes).unwrap();
    }

    // Times without a zone, and nonsense, are usage errors.
    let (code, err) = c.pitr.fails(&["plan", "--to", "2026-11-25 14:02:17"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no time zone"), "{err}");
    let (code, _) = c.pitr.fails(&["plan", "--to", "yesterday"]);
    assert_eq!(code, 2);
    let (code, err) = c.pitr.fails(&["plan"]);
    assert_eq!(code, 2, "{err}");

    // info agrees with the plan's limits.
    let info = c.pitr.json(&["info"]);
    assert_eq!(info["backups"].as_array().unwrap().len(), 1);
    assert_eq!(info["restorable"]["earliest_backup"], b["id"]);
    assert!(info["restorable"]["latest"].is_string(), "{info:#}");
}

#[test]
fn wal_push_is_idempotent_and_refuses_conflicts_and_strangers() {
    let c = Cluster::new();
    let seg = c.switch_and_archive();
    let wal_path = c.pgdata.join("pg_wal").join(&seg);
    // pg_wal may have recycled the file; archive it from the repository.
    let copy = c.dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let fetched = copy.join(&seg);
    c.pitr.ok(&["wal-fetch", &seg, fetched.to_str().unwrap()]);
    let original = std::fs::read(&fetched).unwrap();
    if wal_path.exists() {
        assert_eq!(std::fs::read(&wal_path).unwrap(), original);
    }
    let data_obj = segment_data_object(&c.pitr.repo, &seg);
    let before = std::fs::read(&data_obj).unwrap();

    // Same bytes again: success.
    let out = c.pitr.json(&["wal-push", fetched.to_str().unwrap()]);
    assert_eq!(out["status"], "already_archived");

    // Different bytes under the same name: refused, nothing overwritten.
    let mut changed = original.clone();
    let n = changed.len();
    changed[n - 100] ^= 0xFF;
    std::fs::write(&fetched, &changed).unwrap();
    let (code, err) = c.pitr.fails(&["wal-push", fetched.to_str().unwrap()]);
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("different content"), "{err}");
    assert_eq!(std::fs::read(&data_obj).unwrap(), before);

    // Wrong size: refused.
    std::fs::write(&fetched, &original[..1000]).unwrap();
    let (code, err) = c.pitr.fails(&["wal-push", fetched.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");

    // A segment from another cluster: refused, names both systems.
    let other = Cluster::new();
    let oseg = other.switch_and_archive();
    let ofile = copy.join(&oseg);
    other
        .pitr
        .ok(&["wal-fetch", &oseg, ofile.to_str().unwrap()]);
    let renamed = copy.join("000000010000000000000077");
    std::fs::rename(&ofile, &renamed).unwrap();
    let (code, err) = c.pitr.fails(&["wal-push", renamed.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("belongs to database system"), "{err}");

    // wal-fetch: a missing file exits 3 and prints nothing.
    let out = c.pitr.run(&[
        "wal-fetch",
        "00000009.history",
        copy.join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!copy.join("x").exists());

    // A corrupted object is detected on fetch.
    let mut bytes = std::fs::read(&data_obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&data_obj, &bytes).unwrap();
    // It must stop recovery (a status above 125), never look like the end
    // of the archive.
    let dest = copy.join("RECOVERYXLOG");
    let (code, err) = c.pitr.fails(&["wal-fetch", &seg, dest.to_str().unwrap()]);
    assert_eq!(code, 200, "{err}");
    assert!(err.contains(&seg), "{err}");
    assert!(!dest.exists());

    // A listed segment whose data object is gone: loud, names it.
    std::fs::remove_file(&data_obj).unwrap();
    let (code, err) = c.pitr.fails(&["wal-fetch", &seg, dest.to_str().unwrap()]);
    assert_eq!(code, 200, "{err}");
    assert!(err.contains(&seg) && err.contains("missing"), "{err}");
    assert!(!dest.exists());

    // A repository that is not there (a typo, an unmounted disk): loud,
    // never the quiet "not archived" that ends recovery.
    let nowhere = c.dir.path().join("no-such-repo");
    let out = c
        .pitr
        .cmd(&[
            "wal-fetch",
            "00000009.history",
            copy.join("x").to_str().unwrap(),
        ])
        .args(["--repo", nowhere.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(200), "{err}");
    assert!(err.contains("no pitr repository"), "{err}");

    // History files are archived too (made by a restore's promotion below
    // in other tests); here: push one by hand, fetch it back. Garbage under
    // a history name is refused, and does not block the real one.
    let hist = copy.join("00000002.history");
    std::fs::write(&hist, "this is not a history file\n").unwrap();
    let (code, err) = c.pitr.fails(&["wal-push", hist.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("00000002.history"), "{err}");
    std::fs::write(&hist, "1\t0/3000000\tno recovery target specified\n").unwrap();
    c.pitr.ok(&["wal-push", hist.to_str().unwrap()]);
    c.pitr.ok(&[
        "wal-fetch",
        "00000002.history",
        copy.join("h").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(copy.join("h")).unwrap(),
        std::fs::read(&hist).unwrap()
    );

    // Files pitr made are usable by the postgres user (archive_command).
    if is_root() {
        let mut cmd = as_postgres(pitr_exe());
        cmd.args(["info", "--json", "--repo"]).arg(&c.pitr.repo);
        let s = run_ok(cmd);
        assert!(s.contains("\"system_id\""));
    }
}

#[test]
fn a_killed_backup_is_never_listed() {
    let c = Cluster::new();
    // Enough data that the copy takes a moment.
    c.psql("create table big as select g, repeat(md5(g::text), 20) as pad from generate_series(1, 200000) g");
    let mut child = c
        .pitr
        .cmd(&["backup", "--pgdata", c.pgdata_str(), "--jobs", "1"])
        .spawn()
        .unwrap();
    // Kill it once it has started writing files.
    let backups = c.pitr.repo.join("backups");
    wait_for("backup to start writing", Duration::from_secs(60), || {
        std::fs::read_dir(&backups)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let info = c.pitr.json(&["info"]);
    assert_eq!(info["backups"].as_array().unwrap().len(), 0, "{info:#}");
    let (code, err) = c.pitr.fails(&["plan", "--to", "2099-01-01 00:00:00+00"]);
    assert_eq!(code, 4);
    assert!(err.contains("no finished backup"), "{err}");
    let killed: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(killed.len(), 1);
    // Ids are start times to the second: a backup in the same second as
    // the killed one could reuse its (swept) id; make them differ.
    wait_for("the next second", Duration::from_secs(5), || {
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string() > killed[0]
    });
    // The server's backup state was released with the session; a backup
    // now (as the postgres OS user, like a cron job would) succeeds, and
    // removes what the killed one left, its process being provably gone
    // (issue 10, finding 11).
    let mut cmd = as_postgres(pitr_exe());
    cmd.args(["backup", "--json", "--pgdata", c.pgdata_str(), "--repo"])
        .arg(&c.pitr.repo);
    let b: serde_json::Value = serde_json::from_str(&run_ok(cmd)).unwrap();
    let id = b["id"].as_str().unwrap();
    assert_eq!(
        c.pitr.json(&["info"])["backups"].as_array().unwrap().len(),
        1
    );
    let left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        left,
        [id.to_string()],
        "the killed backup's objects are still there"
    );
    let claims = c.pitr.repo.join("claims");
    assert_eq!(
        std::fs::read_dir(&claims).map(|d| d.count()).unwrap_or(0),
        0
    );
}

#[test]
fn a_failed_restore_says_why_and_leaves_no_usable_directory() {
    let c = Cluster::new();
    c.create_table();
    // The backup carries a setting the restored server cannot start with.
    c.psql("alter system set shared_preload_libraries = 'pitr_no_such_library'");
    c.backup();
    insert_rows(&c, 1, 2);
    let t = midpoint(&c, 1, 2);
    c.switch_and_archive();
    let new = c.path_of("failed");
    let (code, err) = c.restore_fails("restore", "failed", &["--to", &t]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("FATAL"), "{err}");
    assert!(err.contains("pitr_no_such_library"), "{err}");
    assert!(!new.join("global/pg_control").exists());
    assert!(new.join("PITR_RESTORE_FAILED").exists());
    assert!(!new.join("postmaster.pid").exists(), "server left running");

    // Restoring into a non-empty directory is refused without touching it.
    let (code, err) = c
        .pitr
        .fails(&["restore", "--to", &t, "--pgdata", new.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert!(new.join("PITR_RESTORE_FAILED").exists());
    // A command that cannot run creates nothing, even as root.
    let never = c.dir.path().join("never-created");
    for bad in [
        vec!["restore", "--latest", "--action", "pause"],
        vec!["rollback", "--to", t.as_str(), "--upgrade-to", "/tmp"],
        vec!["restore", "--to", "2026-11-25 14:02:17"],
    ] {
        let mut args = bad.clone();
        args.extend(["--pgdata", never.to_str().unwrap()]);
        let (code, err) = c.pitr.fails(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!never.exists(), "{args:?} created {}", never.display());
    }

    // Its ownership was not touched either.
    let keep = c.dir.path().join("keep");
    std::fs::create_dir(&keep).unwrap();
    std::fs::write(keep.join("precious"), "x").unwrap();
    let (code, _) = c
        .pitr
        .fails(&["restore", "--to", &t, "--pgdata", keep.to_str().unwrap()]);
    assert_eq!(code, 2);
    let meta = std::fs::metadata(&keep).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        nix::unistd::geteuid().as_raw()
    );
}

#[test]
fn repository_and_init_errors_are_clear() {
    let d = shared_tempdir();
    let missing = d.path().join("nothing-here");
    let p = Pitr::local(missing.clone());
    let (code, err) = p.fails(&["info"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pitr init"), "{err}");
    let (code, err) = p.fails(&["info", "--repo", "gs://bucket/x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unsupported repository address"), "{err}");
    // file:// URLs work like paths.
    let c = Cluster::new();
    let url = format!("file://{}", c.pitr.repo.display());
    let out = run_ok({
        let mut cmd = std::process::Command::new(pitr_exe());
        cmd.args(["info", "--json", "--repo", &url]);
        cmd
    });
    assert!(out.contains("\"system_id\""));
    // init again for the same cluster is fine; for another cluster, refused.
    c.pitr.ok(&["init", "--pgdata", c.pgdata_str()]);
    let other = Cluster::new();
    let (code, err) = c.pitr.fails(&["init", "--pgdata", other.pgdata_str()]);
    assert_eq!(code, 5, "{err}");
    // A backup of the wrong cluster into this repository is refused.
    let (code, err) = c.pitr.fails(&["backup", "--pgdata", other.pgdata_str()]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("belongs to database system"), "{err}");
}

#[test]
fn restore_can_pause_or_shut_down_at_the_target() {
    let c = Cluster::new();
    c.create_table();
    let b = c.backup();
    // The backup's .backup history file is archived too. pg_backup_stop
    // waits only for the stop segment, which the archiver may take before
    // the .backup file (its name sorts after a segment of the same number).
    let hist = || {
        std::fs::read_dir(c.pitr.repo.join("backup-history"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    wait_for(
        "the .backup history file archived",
        Duration::from_secs(60),
        || hist() > 0,
    );
    assert_eq!(hist(), 1);
    insert_rows(&c, 1, 4);
    let t = midpoint(&c, 2, 3);
    c.switch_and_archive();

    // pause: read-only, still in recovery, exactly the rows before t.
    let out = c.restore_report("restore", "paused", &["--to", &t, "--action", "pause"]);
    let r = Restored::from_json(out);
    assert_eq!(r.out["action"], "pause");
    assert_eq!(r.out["backup_id"], b["id"]);
    assert_eq!(r.psql("select pg_is_in_recovery()").trim(), "t");
    assert_eq!(r.psql("select pg_is_wal_replay_paused()").trim(), "t");
    assert_eq!(
        r.psql("select string_agg(id::text, ',' order by id) from t")
            .trim(),
        "1,2"
    );
    // Resuming promotes.
    r.psql("select pg_wal_replay_resume()");
    wait_for("promotion after resume", Duration::from_secs(30), || {
        r.psql("select pg_is_in_recovery()").trim() == "f"
    });
    drop(r);

    // shutdown: the server stops at the target; pitr reports success.
    let stopped = c.dir.path().join("stopped");
    let out = c.restore_report("restore", "stopped", &["--to", &t, "--action", "shutdown"]);
    assert_eq!(out["action"], "shutdown");
    assert!(!stopped.join("postmaster.pid").exists());
    let log = std::fs::read_to_string(stopped.join("pitr-recovery.log")).unwrap();
    assert!(log.contains("shutdown at recovery target"), "{log}");
    assert!(stopped.join("global/pg_control").exists());
    assert!(!stopped.join("PITR_RESTORE_FAILED").exists());
}

#[test]
fn s3_outage_during_archiving_loses_no_segment() {
    let mut server = s3::S3Server::start(s3::Kind::S3sFs);
    let c = Cluster::on_s3(&server, "outage");
    c.create_table();
    c.backup();
    insert_rows(&c, 1, 2);
    c.switch_and_archive();

    // The store goes away; Postgres keeps producing segments and retrying.
    server.pause();
    for i in 3..=6 {
        insert_rows(&c, i, i);
        c.psql("select pg_switch_wal()");
    }
    wait_for("archive_command to fail", Duration::from_secs(60), || {
        c.psql("select failed_count > 0 from pg_stat_archiver")
            .trim()
            == "t"
    });
    let t = midpoint(&c, 5, 6);
    insert_rows(&c, 7, 7);
    let last = c.psql("select pg_walfile_name(pg_switch_wal())");

    // Back again: every segment arrives, in order, none lost.
    server.resume();
    c.wait_archived(last.trim());
    let info = c.pitr.json(&["info"]);
    let wal = &info["wal"][0];
    assert_eq!(wal["missing"].as_array().unwrap().len(), 0, "{info:#}");
    assert_eq!(wal["last_segment"].as_str(), Some(last.trim()), "{info:#}");
    let failed: i64 = c
        .psql("select failed_count from pg_stat_archiver")
        .trim()
        .parse()
        .unwrap();
    assert!(failed > 0);

    // And a restore to a time inside the outage has exactly its rows.
    let want = ids_until(&c, &t);
    assert_eq!(want, "1,2,3,4,5");
    let r = c.restore_to("rollback", "after-outage", &["--to", &t]);
    assert_eq!(
        r.psql("select string_agg(id::text, ',' order by id) from t")
            .trim(),
        want
    );
}

#[test]
fn s3_faults_are_detected_and_explained_without_leaking_credentials() {
    let server = s3::shared();
    let c = Cluster::on_s3(server, "faults");
    let seg = c.switch_and_archive();

    // A corrupted object is detected on fetch.
    let path = segment_data_object(&server.object_path("faults", "cluster1"), &seg);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&path, &bytes).unwrap();
    let dest = c.dir.path().join("RECOVERYXLOG");
    let (code, err) = c.pitr.fails(&["wal-fetch", &seg, dest.to_str().unwrap()]);
    assert_eq!(code, 200, "{err}");
    assert!(err.contains(&seg), "{err}");
    assert!(!dest.exists());

    // A wrong S3 prefix is no repository: loud, not "not archived".
    let mut stray = Pitr {
        repo: c.pitr.repo.clone(),
        spec: c.pitr.spec.replace("cluster1", "no-such-prefix"),
        env: c.pitr.env.clone(),
    };
    assert_ne!(stray.spec, c.pitr.spec);
    stray.env.push(("PITR_LOG".into(), "warn".into()));
    let (code, err) = stray.fails(&["wal-fetch", &seg, dest.to_str().unwrap()]);
    assert_eq!(code, 200, "{err}");
    assert!(err.contains("no pitr repository"), "{err}");

    // Wrong credentials: a clear error, exit 6, and the secret never shown.
    let mut bad = Pitr {
        repo: c.pitr.repo.clone(),
        spec: c.pitr.spec.clone(),
        env: c.pitr.env.clone(),
    };
    for (k, v) in bad.env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "wrong-secret-value".into();
        }
    }
    bad.env.push(("PITR_LOG".into(), "debug".into()));
    let out = bad.run(&["info", "--json"]);
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.contains("credentials"), "{err}");
    assert!(err.contains("s3://faults/cluster1/pitr.json"), "{err}");
    assert!(!err.contains("wrong-secret-value"));

    // Debug logs and JSON output of a working run hold no secret either.
    let mut dbg = Pitr {
        repo: c.pitr.repo.clone(),
        spec: c.pitr.spec.clone(),
        env: c.pitr.env.clone(),
    };
    dbg.env.push(("PITR_LOG".into(), "trace".into()));
    let out = dbg.run(&["info", "--json"]);
    assert!(out.status.success());
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains(s3::SECRET_KEY), "secret in output");
    }

    // A missing bucket: moto answers like AWS.
    let moto = s3::S3Server::start(s3::Kind::Moto);
    let p = Pitr {
        repo: c.pitr.repo.clone(),
        spec: "s3://no-such-bucket/x".into(),
        env: moto.env(),
    };
    let (code, err) = p.fails(&["init", "--pgdata", c.pgdata_str()]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("bucket no-such-bucket does not exist"),
        "{err}"
    );
    let (code, err) = p.fails(&["info"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(err.contains("no-such-bucket"), "{err}");
}

/// Inserts row `i` ~200 ms after the previous one; returns its xid.
fn insert_row_xid(c: &Cluster, i: i32) -> u32 {
    insert_xid_via(|q| c.psql(q), i)
}

fn insert_xid_via(psql: impl Fn(&str) -> String, i: i32) -> u32 {
    returned_xid(&psql(&format!(
        "select pg_sleep(0.2); insert into t(id) values ({i}) returning txid_current()"
    )))
}

/// Restores to the target given by `target_args` and returns the rows.
fn restore_rows(c: &Cluster, name: &str, target_args: &[&str]) -> (String, serde_json::Value) {
    let r = c.restore_to("restore", name, target_args);
    let rows = r.rows();
    (rows, r.out.clone())
}

#[test]
fn every_target_kind_and_timeline_choice_restores_the_right_rows() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    insert_row_xid(&c, 1);
    let x2 = insert_row_xid(&c, 2);
    insert_row_xid(&c, 3);
    c.psql("select pg_create_restore_point('rp_a')");
    let x4 = insert_row_xid(&c, 4);
    let lsn = c
        .psql("select pg_current_wal_insert_lsn()")
        .trim()
        .to_string();
    let x5 = insert_row_xid(&c, 5);
    insert_row_xid(&c, 6);
    let t45 = midpoint(&c, 4, 5);
    let t56 = midpoint(&c, 5, 6);
    c.switch_and_archive();

    // plan names the exact record recovery stops before, and the last kept.
    let p = c.pitr.json(&["plan", "--to", &t45]);
    assert_eq!(p["stop"]["xid"].as_u64(), Some(u64::from(x5)), "{p:#}");
    let why = p["stop"]["description"].as_str().unwrap();
    assert!(
        why.contains(&format!("stops before the commit of xid {x5}")),
        "{why}"
    );
    assert!(
        why.contains(&format!("the last one kept is the commit of xid {x4}")),
        "{why}"
    );
    let p = c.pitr.json(&["plan", "--xid", &x4.to_string()]);
    let why = p["stop"]["description"].as_str().unwrap();
    assert!(
        why.contains(&format!("right after the commit of xid {x4}")),
        "{why}"
    );

    // Targets on timeline 1.
    let x2s = x2.to_string();
    assert_eq!(restore_rows(&c, "xid", &["--xid", &x2s]).0, "1,2");
    assert_eq!(
        restore_rows(&c, "xid-excl", &["--xid", &x2s, "--exclusive"]).0,
        "1"
    );
    assert_eq!(restore_rows(&c, "name", &["--name", "rp_a"]).0, "1,2,3");
    assert_eq!(restore_rows(&c, "lsn", &["--lsn", &lsn]).0, "1,2,3,4");
    assert_eq!(restore_rows(&c, "immediate", &["--immediate"]).0, "");
    let plan = c.pitr.json(&["plan", "--name", "rp_a"]);
    assert!(
        plan["stop"]["description"]
            .as_str()
            .unwrap()
            .contains("rp_a"),
        "{plan:#}"
    );

    // Branch: roll back to t45 and make the copy a primary that archives
    // into the same repository (timeline 2).
    let r = c.branch("tl2", &t45);
    assert_eq!(r.out["timeline"], 2);
    let tl2 = Cluster2 { r: &r };
    tl2.insert(100);
    let x101 = tl2.insert(101);
    tl2.insert(102);
    let t_tl2 = tl2.midpoint(100, 101);
    let seg = r
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    assert!(seg.starts_with("00000002"), "{seg}");
    c.wait_archived(&seg);

    // Meanwhile timeline 1 goes on: a restore point only it has.
    c.psql("select pg_create_restore_point('rp_late')");
    insert_row_xid(&c, 7);
    c.switch_and_archive();

    // A time on timeline 2.
    let (rows, out) = restore_rows(&c, "t-tl2", &["--to", &t_tl2]);
    assert_eq!(rows, "1,2,3,4,100");
    assert_eq!(out["timeline"], 3, "promoted onto a new timeline");
    // A time that exists on both: latest (2) by default, 1 when asked.
    let p = c.pitr.json(&["plan", "--to", &t56]);
    assert_eq!(p["timeline"], 2, "{p:#}");
    assert_eq!(restore_rows(&c, "t56-latest", &["--to", &t56]).0, "1,2,3,4");
    let p = c.pitr.json(&["plan", "--to", &t56, "--timeline", "1"]);
    assert_eq!(p["timeline"], 1, "{p:#}");
    assert_eq!(
        restore_rows(&c, "t56-tl1", &["--to", &t56, "--timeline", "1"]).0,
        "1,2,3,4,5"
    );
    // A restore point only timeline 1 has: timeline 1, whatever latest says.
    let p = c.pitr.json(&["plan", "--name", "rp_late"]);
    assert_eq!(p["timeline"], 1, "{p:#}");
    assert!(
        p["timeline_reason"]
            .as_str()
            .unwrap()
            .contains("only off the newest timeline"),
        "{p:#}"
    );
    assert_eq!(
        restore_rows(&c, "rp-late", &["--name", "rp_late"]).0,
        "1,2,3,4,5,6"
    );
    // A transaction only timeline 2 has.
    let x101s = x101.to_string();
    assert_eq!(
        restore_rows(&c, "x101", &["--xid", &x101s]).0,
        "1,2,3,4,100,101"
    );
    // info: a window per timeline, newest first, no gaps.
    let info = c.pitr.json(&["info"]);
    let tls = info["timelines"].as_array().unwrap();
    assert_eq!(tls.len(), 2, "{info:#}");
    assert_eq!(tls[0]["timeline"], 2);
    assert_eq!(tls[1]["timeline"], 1);
    assert!(
        tls.iter().all(|w| w["gaps"].as_array().unwrap().is_empty()),
        "{info:#}"
    );
    assert!(tls[0]["latest_lsn"].is_string(), "{info:#}");
    // --latest follows timeline 2 to its end.
    let (rows, out) = restore_rows(&c, "latest", &["--latest"]);
    assert_eq!(rows, "1,2,3,4,100,101,102");
    assert!(out["timeline"].as_u64().unwrap() >= 3);

    // Targets that cannot be reached say why.
    let (code, err) = c.pitr.fails(&["plan", "--name", "no_such_point"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("restore point \"no_such_point\""), "{err}");
    let (code, err) = c.pitr.fails(&["plan", "--lsn", "FF/0"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("past the end of the archived WAL"), "{err}");
    let (code, err) = c.pitr.fails(&["plan", "--name", "rp_a", "--xid", "5"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = c.pitr.fails(&["plan", "--name", "rp_a", "--exclusive"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = c.pitr.fails(&["plan", "--latest", "--timeline", "9"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("timeline 9"), "{err}");
}

/// Writes on a restored, promoted server.
struct Cluster2<'a> {
    r: &'a Restored,
}

impl Cluster2<'_> {
    fn insert(&self, i: i32) -> u32 {
        insert_xid_via(|q| self.r.psql(q), i)
    }

    fn midpoint(&self, a: i32, b: i32) -> String {
        midpoint_via(|q| self.r.psql(q), a, b)
    }
}

#[test]
fn restores_run_on_another_major_and_cross_major_is_refused() {
    let c = Cluster::of_major(17);
    c.create_table();
    let b = c.backup();
    insert_rows(&c, 1, 4);
    let t = midpoint(&c, 2, 3);
    c.switch_and_archive();

    // plan finds the 17 install by itself and says so.
    let p = c.pitr.json(&["plan", "--to", &t]);
    let install = p["install"].as_str().unwrap();
    assert!(install.contains("/opt/pitr-pg/17/"), "{p:#}");
    let r = c.restore_to("rollback", "on17", &["--to", &t]);
    assert_eq!(r.out["backup_id"], b["id"]);
    assert_eq!(r.rows(), "1,2");
    assert!(r.psql("show server_version_num").trim().starts_with("17"));
    drop(r);

    // A 17 backup onto a 15 install: refused before anything is fetched.
    let cross = c.path_of("cross");
    let (code, err) = c.restore_fails("restore", "cross", &["--to", &t, "--pg-bin", PG_BIN]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("major 17 backup, install is 15"), "{err}");
    assert!(err.contains("nothing was fetched"), "{err}");
    let fetched = std::fs::read_dir(&cross).map(|d| d.count()).unwrap_or(0);
    assert_eq!(fetched, 0, "files were written into {}", cross.display());

    // inspect: the data directory and the backup say 17.
    let d = c.pitr.json(&["inspect", c.pgdata_str()]);
    assert_eq!(d["major"], 17, "{d:#}");
    assert_eq!(d["control"]["state"], "in_production", "{d:#}");
    let id = b["id"].as_str().unwrap();
    let bj = c.pitr.json(&["inspect", "--backup", id]);
    assert_eq!(bj["pg_major"], 17, "{bj:#}");
    assert_eq!(bj["arch"].as_str(), Some(std::env::consts::ARCH));
    let (code, err) = c.pitr.fails(&["inspect", "--backup", "19990101T000000Z"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pitr info"), "{err}");

    // installs lists 15 and 17 with their fingerprints.
    let list = run_ok({
        let mut cmd = std::process::Command::new(pitr_exe());
        cmd.args(["installs", "--json"]);
        cmd
    });
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let majors: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["fingerprint"].is_object())
        .map(|i| i["major"].as_u64().unwrap())
        .collect();
    assert!(majors.contains(&15) && majors.contains(&17), "{list:#}");
}

#[test]
fn rollback_upgrade_to_a_newer_major_keeps_the_rows() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    insert_rows(&c, 1, 4);
    let t = midpoint(&c, 2, 3);
    c.switch_and_archive();
    let bin17 = major_bin(17);

    // A --port already taken (the cluster's own) is refused before
    // anything is restored or created.
    let taken = c.port.to_string();
    let (code, err) = c.restore_fails(
        "rollback",
        "taken",
        &["--to", &t, "--upgrade-to", &bin17, "--port", &taken],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("port {taken} is in use")), "{err}");
    assert!(!c.path_of("taken").exists());
    assert!(!c.path_of("taken.pitr-physical").exists());

    // --port is the final (newer-major) server's, not the physical copy's.
    let port = free_port().to_string();
    let out = c.restore_report(
        "rollback",
        "on17",
        &["--to", &t, "--upgrade-to", &bin17, "--port", &port],
    );
    let r = Restored::from_json(out.clone());
    assert_eq!(r.port.to_string(), port, "{out:#}");
    assert_ne!(out["restored_from"]["port"], out["port"], "{out:#}");
    assert!(
        out["server_version"].as_str().unwrap().starts_with("17"),
        "{out:#}"
    );
    assert_eq!(r.rows(), "1,2");
    assert!(r.psql("show server_version_num").trim().starts_with("17"));
    // The physical copy on 15 was removed once the data moved.
    let physical = out["restored_from"]["data_directory"].as_str().unwrap();
    assert!(
        !std::path::Path::new(physical).exists(),
        "{physical} left behind"
    );

    // Not newer: refused before anything is restored.
    let (code, err) = c.restore_fails("rollback", "same", &["--to", &t, "--upgrade-to", PG_BIN]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not newer"), "{err}");
}

/// A relation file larger than one chunk (8 MiB) is stored as several
/// chunk objects, restored byte for byte by parallel workers, and a
/// corrupted chunk stops the restore with a message that names it.
#[test]
fn a_big_relation_is_stored_in_chunks_and_restored_exactly() {
    let c = Cluster::new();
    c.psql("create table big as select g, md5(g::text) as h from generate_series(1, 300000) g");
    let size: u64 = c
        .psql("select pg_relation_size('big')")
        .trim()
        .parse()
        .unwrap();
    assert!(
        size > 2 * 8 * 1024 * 1024,
        "table of {size} bytes is too small"
    );
    let digest = "select md5(string_agg(h, ',' order by g)) from big";
    let want = c.psql(digest);
    let b = c.backup();
    let id = b["id"].as_str().unwrap();
    // Backup and restore report their peak memory.
    assert!(b["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{b}");
    c.switch_and_archive();

    let files = c.pitr.repo.join("backups").join(id).join("files");
    let mut chunks: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.matches('.').count() == 2)
        .collect();
    chunks.sort();
    assert!(chunks.len() >= 3, "expected chunk objects, got {chunks:?}");

    let r = c.restore_to("restore", "whole", &["--immediate"]);
    assert!(r.out["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(r.psql(digest), want);
    // Recovery fetched through the prefetch spool, removed once it was over.
    let conf = std::fs::read_to_string(r.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(conf.contains("--spool"), "{conf}");
    assert!(!r.pgdata.join("pg_wal/pitr-spool").exists());
    assert_eq!(
        r.psql("select pg_relation_size('big')").trim(),
        size.to_string()
    );
    drop(r);

    // One flipped byte in the middle of a chunk object.
    let victim = files.join(&chunks[1]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let new = c.path_of("corrupt");
    let (code, err) = c.restore_fails("restore", "corrupt", &["--immediate"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("(chunk "), "{err}");
    assert!(!new.join("global/pg_control").exists());
}

/// Processes whose command line mentions `needle` (the spool's path).
fn processes_mentioning(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmd| {
            String::from_utf8_lossy(cmd)
                .replace('\0', " ")
                .contains(needle)
        })
        .count()
}

/// `wal-fetch --spool` starts one background prefetcher that keeps the
/// next segments (and no more) fetched; a spooled segment is handed over
/// byte for byte; removing the spool stops the prefetcher.
#[test]
fn wal_fetch_prefetches_into_a_bounded_spool() {
    let c = Cluster::new();
    c.psql("create table t(x int)");
    let mut names = Vec::new();
    for _ in 0..10 {
        c.psql("insert into t select generate_series(1, 100)");
        names.push(c.switch_and_archive());
    }
    let spool = c.dir.path().join("spool");
    let spool_s = spool.to_str().unwrap().to_string();
    let out = c.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let fetch = |name: &str, dest: &str| {
        c.pitr.ok(&[
            "wal-fetch",
            name,
            out.join(dest).to_str().unwrap(),
            "--spool",
            &spool_s,
            "--prefetch",
            "3",
        ]);
    };
    fetch(&names[0], "a");
    let spooled = |n: &str| spool.join(n).exists();
    wait_for("3 segments prefetched", Duration::from_secs(30), || {
        names[1..=3].iter().all(|n| spooled(n))
    });
    assert!(!spooled(&names[4]), "the spool holds more than the window");
    assert_eq!(processes_mentioning(&spool_s), 1, "one prefetcher");

    fetch(&names[1], "b");
    assert!(
        !spooled(&names[1]),
        "a spooled segment is moved, not copied"
    );
    c.pitr
        .ok(&["wal-fetch", &names[1], out.join("direct").to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out.join("b")).unwrap(),
        std::fs::read(out.join("direct")).unwrap()
    );
    wait_for("the window moves on", Duration::from_secs(30), || {
        spooled(&names[4])
    });
    assert!(!spooled(&names[5]));
    // restore_command's fast path takes a segment with a plain `mv`: the
    // prefetcher sees it taken and moves its window on all the same.
    std::fs::rename(spool.join(&names[2]), out.join("c")).unwrap();
    wait_for(
        "the window follows a plain mv",
        Duration::from_secs(30),
        || spooled(&names[5]),
    );
    assert!(!spooled(&names[6]));

    // Removed as pitr restore removes it: renamed away, then deleted.
    let doomed = c.dir.path().join("spool-removed");
    std::fs::rename(&spool, &doomed).unwrap();
    std::fs::remove_dir_all(&doomed).unwrap();
    wait_for("the prefetcher exits", Duration::from_secs(30), || {
        processes_mentioning(&spool_s) == 0
    });
}

/// Promotion needs no SQL privilege: watched by a role that may not call
/// pg_wal_replay_resume() or pg_promote(), the restore still promotes at
/// the target (pitr asks the postmaster, as pg_ctl promote does).
#[test]
fn a_restore_watched_by_an_unprivileged_role_still_promotes() {
    let c = Cluster::new();
    c.psql("create role watcher login");
    c.create_table();
    c.backup();
    insert_rows(&c, 1, 4);
    let t = midpoint(&c, 2, 3);
    c.switch_and_archive();
    let out = c.restore_report("restore", "watched", &["--to", &t, "--db-user", "watcher"]);
    let r = Restored::from_json(out);
    assert_eq!(r.psql("select pg_is_in_recovery()").trim(), "f");
    assert_eq!(r.rows(), "1,2");
    let log = std::fs::read_to_string(r.pgdata.join("pitr-recovery.log")).unwrap();
    assert!(log.contains("received promote request"), "{log}");
    assert!(!r.pgdata.join("promote").exists());
}

/// A restore point name made twice, with backups before each: the plan
/// says the later one, and the restore stops there (Postgres stops at the
/// first one replay meets, so the plan restores from the backup taken
/// between them, even though the older backup needs less to fetch).
#[test]
fn a_restore_point_name_made_twice_restores_to_the_one_the_plan_names() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    insert_rows(&c, 1, 2);
    c.psql("select pg_create_restore_point('twice')");
    insert_rows(&c, 3, 4);
    let newer = c.backup();
    insert_rows(&c, 5, 6);
    c.psql("select pg_create_restore_point('twice')");
    insert_rows(&c, 7, 8);
    c.switch_and_archive();

    // Fetching made dear and replay cheap: by cost alone the older
    // backup wins, and replay from it would stop at the first point.
    let rates = ["--restore-rate", "0.01", "--replay-rate", "10000"];
    let mut args = vec!["plan", "--name", "twice"];
    args.extend(rates);
    let p = c.pitr.json(&args);
    assert_eq!(p["backup"]["id"], newer["id"], "{p:#}");
    let stop = p["stop"]["description"].as_str().unwrap();
    assert!(stop.contains("also at"), "{p:#}");
    let mut args = vec!["--name", "twice"];
    args.extend(rates);
    let (rows, out) = restore_rows(&c, "twice", &args);
    assert_eq!(rows, "1,2,3,4,5,6", "{out:#}");
    assert_eq!(out["backup_id"], newer["id"]);
}
