//! Issue 10's findings on the capture side, against real PostgreSQL under
//! load and real stores: backups of a busy database restore, concurrent
//! backups never share an id, and racing
//! wal-pushes of different bytes never change what was acknowledged (on
//! S3 as on the local store, whose race is also covered by unit tests).

use std::process::Child;

use crate::harness::*;

/// Creates and drops tables in a loop for `secs` seconds: relation files
/// appear and vanish while a backup copies the directory.
fn churn(c: &Cluster, secs: u64) -> Child {
    let script = "\\set n random(1, 1000000)\ncreate table churn_:n as select g from generate_series(1, 2000) g;\ndrop table churn_:n;\n";
    let file = c.dir.path().join("churn.sql");
    std::fs::write(&file, script).unwrap();
    c.pgbench(&[
        "-n",
        "-c",
        "2",
        "-T",
        &secs.to_string(),
        "-f",
        file.to_str().unwrap(),
    ])
    .spawn()
    .unwrap()
}

fn restore_latest(c: &Cluster, name: &str) -> Restored {
    let dir = c.dir.path().join(name);
    let out = c
        .pitr
        .json(&["restore", "--latest", "--pgdata", dir.to_str().unwrap()]);
    Restored::from_json(out)
}

/// What pgbench's tables hold, as Postgres computes it.
fn bank(psql: impl Fn(&str) -> String) -> String {
    psql("select count(*), sum(abalance), (select count(*) from pgbench_history) from pgbench_accounts")
        .trim()
        .to_string()
}

/// Finding 1: a backup taken while pgbench (4 clients) writes and other
/// sessions create and drop relations exits 0, is listed, and restores to
/// exactly what the primary holds.
#[test]
fn a_backup_of_a_busy_database_restores_exactly() {
    let c = Cluster::new();
    let init = c.pgbench(&["-i", "-s", "10", "-q"]).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let load = c
        .pgbench(&["-n", "-c", "4", "-j", "2", "-T", "12"])
        .spawn()
        .unwrap();
    let churning = churn(&c, 12);
    // One job, held to 40 MB/s: the copy of ~160 MB takes about 4 s, long
    // enough for files the walk listed to vanish under it whatever the
    // machine's speed (unthrottled, a fast machine copied everything
    // before any churned table was dropped, and the test proved nothing).
    let b = c.pitr.json(&[
        "backup",
        "--pgdata",
        c.pgdata_str(),
        "--jobs",
        "1",
        "--max-rate",
        "40M",
    ]);
    for mut child in [load, churning] {
        let out = child.wait().unwrap();
        assert!(out.success());
    }
    let id = b["id"].as_str().unwrap();
    // Files vanished during the copy (the finding's trigger): some file's
    // objects are stored under another number than its manifest position.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.pitr.repo.join(format!("backups/{id}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let files = manifest["body"]["files"].as_array().unwrap();
    let shifted = files
        .iter()
        .enumerate()
        .filter(|(i, f)| f["object"].as_u64() != Some(*i as u64))
        .count();
    assert!(
        shifted > 0,
        "no file vanished during the backup: the test proves nothing"
    );
    let want = bank(|q| c.psql(q));
    c.switch_and_archive();
    let r = restore_latest(&c, "restored");
    assert_eq!(bank(|q| r.psql(q)), want);
    assert_eq!(
        r.psql("select count(*) from pg_class where relname like 'churn_%'")
            .trim(),
        c.psql("select count(*) from pg_class where relname like 'churn_%'")
            .trim()
    );
}

/// Finding 5: two backups started in the same second both succeed with
/// distinct ids, and each listed backup restores.
#[test]
fn concurrent_backups_take_distinct_ids_and_each_restores() {
    let c = Cluster::new();
    c.psql("create table t as select g from generate_series(1, 1000) g");
    let spawn = || {
        c.pitr
            .cmd(&["backup", "--json", "--pgdata", c.pgdata_str()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut ids = Vec::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    let info = c.pitr.json(&["info"]);
    let listed: Vec<&str> = info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{info:#}");
    c.psql("insert into t select g from generate_series(1001, 1010) g");
    c.switch_and_archive();
    // Each listed backup restores: with the other one's record set aside,
    // the plan has to use it.
    let records = c.pitr.repo.join("catalog/backups");
    for (i, id) in ids.iter().enumerate() {
        let other = &ids[1 - i];
        let (rec, aside) = (
            records.join(format!("{other}.json")),
            c.dir.path().join(format!("{other}.json.aside")),
        );
        std::fs::rename(&rec, &aside).unwrap();
        let plan = c.pitr.json(&["plan", "--latest"]);
        assert_eq!(plan["backup"]["id"].as_str(), Some(id.as_str()), "{plan:#}");
        {
            let r = restore_latest(&c, &format!("r{i}"));
            assert_eq!(r.psql("select count(*) from t").trim(), "1010");
        }
        std::fs::rename(&aside, &rec).unwrap();
    }
}

/// Finding 3 on S3: racing wal-pushes of different bytes under one name;
/// the acknowledged one is what wal-fetch returns, every time.
///
/// Runs on moto, whose conditional create is atomic as AWS S3's is. s3s-fs
/// 0.14.1 checks for the key and then writes it, so two racing creates can
/// both succeed there; pitr reads its record back before acknowledging,
/// which narrows that window but cannot close it: on S3 the guarantee rests
/// on the server's `If-None-Match` (docs/reliability.md).
#[test]
fn racing_wal_pushes_on_s3_never_change_the_acknowledged_segment() {
    let server = crate::s3::S3Server::start(crate::s3::Kind::Moto);
    let c = Cluster::on_s3(&server, "race");
    let seg = c.switch_and_archive();
    let dir = c.dir.path().join("race");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let (pa, pb) = (dir.join("a").join(&seg), dir.join("b").join(&seg));
    c.pitr.ok(&["wal-fetch", &seg, pa.to_str().unwrap()]);
    let complete = std::fs::read(&pa).unwrap();
    let mut other = complete.clone();
    other[complete.len() / 2] ^= 0xFF;
    std::fs::write(&pb, &other).unwrap();
    for trial in 0..10 {
        let repo = Pitr {
            repo: c.pitr.repo.clone(),
            spec: format!("s3://race/trial-{trial}"),
            env: c.pitr.env.clone(),
        };
        repo.ok(&["init", "--pgdata", c.pgdata_str()]);
        let spawn = |p: &std::path::Path| {
            repo.cmd(&["wal-push", p.to_str().unwrap()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(&pa), spawn(&pb));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let winner = match (a.status.code(), b.status.code()) {
            (Some(0), Some(9)) => &complete,
            (Some(9), Some(0)) => &other,
            codes => panic!(
                "trial {trial}: expected one success and one conflict, got {codes:?}: {} / {}",
                String::from_utf8_lossy(&a.stderr),
                String::from_utf8_lossy(&b.stderr)
            ),
        };
        let out = dir.join(format!("fetched-{trial}"));
        repo.ok(&["wal-fetch", &seg, out.to_str().unwrap()]);
        assert!(
            std::fs::read(&out).unwrap() == *winner,
            "trial {trial}: wal-fetch returned other bytes than the acknowledged push"
        );
    }
}
