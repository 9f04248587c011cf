//! The fault-injection suite of issue 10: kill -9 at every phase of
//! wal-push (a loop, with the phase each kill landed in counted), a full
//! disk under the repository, corrupt, truncated and missing objects under
//! a `--latest` restore, and a stopped S3 server under a restore. Each
//! asserts that no acknowledged segment is lost, no wrong result is
//! reported as success, and the error names what is wrong. The counts
//! printed here are the ones in docs/reliability.md.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The objects one segment has in a local repository: (data, record,
/// index entry).
pub(crate) fn phase_of(repo: &Path, seg: &str) -> (bool, bool, bool) {
    let tli = &seg[..8];
    let data = std::fs::read_dir(repo.join("wal").join(tli))
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with(&format!("{seg}.")) && n.ends_with(".zst") && !n.contains("xacts")
            })
        })
        .unwrap_or(false);
    let record = repo.join(format!("wal/{tli}/{seg}.json")).exists();
    let index = repo
        .join(format!("catalog/wal/{tli}/pending/{seg}.json"))
        .exists();
    (data, record, index)
}

/// Waits until `child` has stopped itself (SIGSTOP at a
/// `PITR_FAULT_STOP_AT` phase), so a kill lands exactly there.
pub(crate) fn wait_stopped(child: &std::process::Child, what: &str) {
    let pid = child.id();
    wait_for(what, Duration::from_secs(30), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    });
}

/// kill -9 of `pitr wal-push` at each phase of its run, exactly: before
/// any write, after the data, after the record, after the index entry
/// (the process stops itself there, `PITR_FAULT_STOP_AT`, and is killed
/// once stopped), 5 times each; then 20 more at spread-out moments of an
/// undisturbed run. After each kill: the index never lists a segment
/// without its record; a record, when there is one, serves exactly the
/// pushed bytes; and Postgres' retry (the same push again) succeeds and
/// serves them too.
#[test]
fn kill_9_at_every_phase_of_wal_push_loses_nothing() {
    let c = Cluster::new();
    c.psql("create table t as select g, md5(g::text) from generate_series(1, 20000) g");
    let seg = c.switch_and_archive();
    let src = c.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join(&seg);
    c.pitr.ok(&["wal-fetch", &seg, file.to_str().unwrap()]);
    let bytes = std::fs::read(&file).unwrap();

    let fresh_repo = |n: usize| {
        let p = Pitr::local(c.dir.path().join(format!("kill-{n}")));
        p.ok(&["init", "--pgdata", c.pgdata_str()]);
        p
    };
    // How long an undisturbed push takes here: the timed kills spread over it.
    let probe = fresh_repo(1000);
    let t0 = Instant::now();
    probe.ok(&["wal-push", file.to_str().unwrap()]);
    let full = t0.elapsed();

    let phases = ["before-data", "after-data", "after-record", "after-index"];
    let mut landed = std::collections::BTreeMap::new();
    let stopped = phases.len() * 5;
    let trials = stopped + 20;
    for n in 0..trials {
        let repo = fresh_repo(n);
        let mut cmd = repo.cmd(&["wal-push", file.to_str().unwrap()]);
        let phase = phases.get(n / 5).copied();
        if let Some(p) = phase {
            cmd.env("PITR_FAULT_STOP_AT", p);
        }
        let mut child = cmd.spawn().unwrap();
        match phase {
            Some(p) => wait_stopped(&child, &format!("wal-push to stop {p}")),
            // The fault's timing is the point here, not a wait for a condition.
            None => std::thread::sleep(full.mul_f64((n - stopped) as f64 / 20.0)),
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let (data, record, index) = phase_of(&repo.repo, &seg);
        let state = match (status.success(), data, record, index) {
            (true, ..) => "finished before the kill",
            (false, false, false, false) => "killed before any write",
            (false, true, false, false) => "killed after the data",
            (false, true, true, false) => "killed after the record",
            (false, true, true, true) => "killed after the index entry",
            _ => "impossible order",
        };
        *landed.entry(state).or_insert(0) += 1;
        if let Some(p) = phase {
            let want = match p {
                "before-data" => "killed before any write",
                "after-data" => "killed after the data",
                "after-record" => "killed after the record",
                _ => "killed after the index entry",
            };
            assert_eq!(state, want, "trial {n}, stopped {p}");
        }
        assert!(
            !index || record,
            "trial {n}: the index lists a segment with no record"
        );
        let info = repo.json(&["info"]);
        let listed = info["wal"]
            .as_array()
            .map(|a| !a.is_empty())
            .unwrap_or(false);
        assert!(
            !listed || record,
            "trial {n}: info lists an unacknowledged segment: {info:#}"
        );
        let out = src.join(format!("out-{n}"));
        if record {
            repo.ok(&["wal-fetch", &seg, out.to_str().unwrap()]);
            assert!(
                std::fs::read(&out).unwrap() == bytes,
                "trial {n}: the record serves other bytes"
            );
            std::fs::remove_file(&out).unwrap();
        }
        // Postgres retries until it gets 0.
        repo.ok(&["wal-push", file.to_str().unwrap()]);
        repo.ok(&["wal-fetch", &seg, out.to_str().unwrap()]);
        assert!(
            std::fs::read(&out).unwrap() == bytes,
            "trial {n}: the retry serves other bytes"
        );
        let info = repo.json(&["info"]);
        assert_eq!(
            info["wal"][0]["segments"].as_u64(),
            Some(1),
            "trial {n}: {info:#}"
        );
        std::fs::remove_dir_all(&repo.repo).unwrap();
    }
    eprintln!("wal-push kill -9 over {trials} trials: {landed:?}");
    assert!(!landed.contains_key("impossible order"), "{landed:?}");
}

/// The repository's disk fills up while the database writes: archiving
/// fails (never acknowledged), Postgres keeps the segments, and once
/// there is space again every segment arrives and a restore of the
/// latest point has every row.
#[test]
fn a_full_disk_acknowledges_nothing_and_loses_nothing() {
    assert!(
        is_root(),
        "this test mounts a small tmpfs as the repository: run it as root"
    );
    let dir = shared_tempdir();
    let mnt = dir.path().join("repo");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = |opts: &str| {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    mount("size=64m,mode=0755");
    let guard = Unmount(mnt.clone());
    let c = Cluster::with_repo_at(dir, mnt.clone());
    c.psql("create table t(id int primary key, pad text)");
    c.backup();
    // Fill the disk but for 2 MiB (a dot-file: never an object).
    let filler = mnt.join(".filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5Au8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(2 << 20)).unwrap();
        f.sync_all().unwrap();
    }
    // Rows of random hex (a subquery per row): more WAL than the 2 MiB
    // left, even compressed.
    for i in 0..8 {
        c.psql(&format!(
            "insert into t select g, (select string_agg(md5(g::text || x::text || random()::text), '') from generate_series(1, 30) x) from generate_series({}, {}) g",
            i * 1000 + 1,
            (i + 1) * 1000
        ));
        c.psql("select pg_switch_wal()");
    }
    wait_for(
        "archive_command to fail on the full disk",
        Duration::from_secs(60),
        || {
            c.psql("select failed_count > 0 from pg_stat_archiver")
                .trim()
                == "t"
        },
    );
    // Nothing half-written is listed: every index entry has its record.
    let info = c.pitr.json(&["info"]);
    for t in info["wal"].as_array().unwrap() {
        assert_eq!(t["missing"].as_array().unwrap().len(), 0, "{info:#}");
    }
    let want = c
        .psql("select count(*), sum(length(pad)) from t")
        .trim()
        .to_string();
    let last = c
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    // Space again: everything arrives, in order.
    std::fs::remove_file(&filler).unwrap();
    c.wait_archived(&last);
    let info = c.pitr.json(&["info"]);
    let wal = &info["wal"][0];
    assert_eq!(wal["missing"].as_array().unwrap().len(), 0, "{info:#}");
    assert_eq!(
        wal["last_segment"].as_str(),
        Some(last.as_str()),
        "{info:#}"
    );
    // On the default socket directory: the one restore here that does
    // not pass --socket-dir.
    let new = c.path_of("after-full");
    let r = Restored::from_json(c.pitr.json(&[
        "restore",
        "--latest",
        "--pgdata",
        new.to_str().unwrap(),
    ]));
    assert_eq!(
        r.psql("select count(*), sum(length(pad)) from t").trim(),
        want
    );
    drop(r);
    drop(c);
    drop(guard);
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A cluster with a backup and `segments` archived segments of rows after
/// it; returns the archived segment names after the backup, in order.
fn archived_after_backup(c: &Cluster, segments: usize) -> Vec<String> {
    c.psql("create table t(id int primary key)");
    c.backup();
    (0..segments)
        .map(|i| {
            c.psql(&format!(
                "insert into t select g from generate_series({}, {}) g",
                i * 100 + 1,
                (i + 1) * 100
            ));
            c.switch_and_archive()
        })
        .collect()
}

/// One damaged object in the middle of the archive: a `--latest` restore
/// must fail and name the segment, never promote a copy that silently
/// lacks the rest (finding 2), and leave no startable directory.
#[test]
fn a_damaged_segment_under_a_latest_restore_fails_and_names_it() {
    let c = Cluster::new();
    let segs = archived_after_backup(&c, 4);
    let victim = &segs[1];
    let tli = &victim[..8];
    let data = segment_data_object(&c.pitr.repo, victim);
    let original = std::fs::read(&data).unwrap();
    let record = c.pitr.repo.join(format!("wal/{tli}/{victim}.json"));
    let record_bytes = std::fs::read(&record).unwrap();
    for kind in ["corrupt", "truncated", "record missing"] {
        match kind {
            "corrupt" => {
                let mut b = original.clone();
                let mid = b.len() / 2;
                b[mid] ^= 0x5A;
                std::fs::write(&data, b).unwrap();
            }
            "truncated" => std::fs::write(&data, &original[..original.len() / 3]).unwrap(),
            _ => std::fs::remove_file(&record).unwrap(),
        }
        let name = format!("damaged-{}", kind.replace(' ', "-"));
        let new = c.path_of(&name);
        let (code, err) = c.restore_fails("restore", &name, &["--latest"]);
        assert_ne!(code, 0);
        assert!(
            err.contains(victim.as_str()),
            "{kind}: the error does not name {victim}: {err}"
        );
        assert!(
            !new.join("global/pg_control").exists(),
            "{kind}: a failed restore left a startable directory"
        );
        std::fs::write(&data, &original).unwrap();
        std::fs::write(&record, &record_bytes).unwrap();
    }
    // Healed: the same restore succeeds with every row.
    let r = c.restore_to("restore", "healed", &["--latest"]);
    assert_eq!(r.psql("select count(*) from t").trim(), "400");
}

/// The S3 server is down when a restore starts: a clear storage error,
/// nothing startable left behind, and the same restore works once the
/// server is back. Then it stops in the middle of a restore, while the
/// server replays: all the rows, or a failure that names what could not
/// be fetched; never a promoted copy with rows missing.
#[test]
fn a_stopped_s3_server_fails_a_restore_clearly() {
    let mut server = crate::s3::S3Server::start(crate::s3::Kind::S3sFs);
    let c = Cluster::on_s3(&server, "down");
    archived_after_backup(&c, 2);
    server.pause();
    let new = c.path_of("while-down");
    let (code, err) = c.restore_fails("restore", "while-down", &["--latest"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("s3://down"), "{err}");
    assert!(!new.join("global/pg_control").exists());
    server.resume();
    let r = c.restore_to("restore", "after-up", &["--latest"]);
    assert_eq!(r.psql("select count(*) from t").trim(), "200");
    drop(r);

    // Stopped mid-restore: once the data directory is written and the
    // server is replaying. Whatever WAL was fetched by then, the outcome
    // is all the rows or a failure that says why, never fewer rows.
    for i in 1..10 {
        c.psql(&format!(
            "insert into t select g from generate_series({}, {}) g",
            i * 200 + 1,
            (i + 1) * 200
        ));
        c.switch_and_archive();
    }
    let new = c.path_of("mid-restore");
    let mut child = c
        .pitr
        .cmd(&strs(&c.restore_args(
            "restore",
            "mid-restore",
            &["--json", "--latest"],
        )))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the restored server to start",
        Duration::from_secs(120),
        || new.join("postmaster.pid").exists() || child.try_wait().ok().flatten().is_some(),
    );
    server.pause();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let r = Restored::from_json(serde_json::from_slice(&out.stdout).unwrap());
        assert_eq!(
            r.psql("select count(*) from t").trim(),
            "2000",
            "success with rows missing"
        );
        eprintln!("S3 stopped mid-restore: every segment was fetched before the stop");
    } else {
        assert!(!new.join("global/pg_control").exists(), "{err}");
        assert!(
            err.contains("restore into") && (err.contains("0000000") || err.contains("s3://down")),
            "the failure does not say what could not be fetched: {err}"
        );
        eprintln!(
            "S3 stopped mid-restore: failed as it must: {}",
            err.lines().next().unwrap_or("")
        );
    }
    server.resume();
}

/// kill -9 of `pitr backup` at spread-out moments, 6 times, under pgbench
/// load: nothing killed is ever listed, the next backup sweeps what the
/// killed ones left, and the backup that finishes restores exactly. Then
/// kill -9 of `pitr restore` during the copy, 3 times: pg_control is
/// written last, so a copy cut short is never startable, a second restore
/// into it is refused, and a restore elsewhere succeeds.
#[test]
fn kill_9_during_backup_and_restore_lists_and_reports_nothing_wrong() {
    let c = Cluster::new();
    c.psql("create table big as select g, repeat(md5(g::text), 20) as pad from generate_series(1, 200000) g");
    let probe = Instant::now();
    let first = c.backup();
    let full = probe.elapsed();
    let first_id = first["id"].as_str().unwrap().to_string();
    let backups = c.pitr.repo.join("backups");
    let mut killed_phases = Vec::new();
    for n in 0..6u32 {
        let mut child = c
            .pitr
            .cmd(&["backup", "--pgdata", c.pgdata_str(), "--jobs", "1"])
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(f64::from(n) / 8.0));
        let _ = child.kill();
        let finished = child.wait().unwrap().success();
        let dirs = std::fs::read_dir(&backups).unwrap().count();
        killed_phases.push((finished, dirs));
        let info = c.pitr.json(&["info"]);
        let listed = info["backups"].as_array().unwrap().len();
        // Only the first backup, and any run that finished before its kill.
        assert!(listed >= 1 && listed <= 1 + n as usize + 1, "{info:#}");
    }
    eprintln!("backup kill -9 (finished, backup dirs after): {killed_phases:?}");
    // A backup in a new second sweeps every killed run's objects.
    let after = c.backup();
    let info = c.pitr.json(&["info"]);
    let listed: Vec<String> = info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&first_id) && listed.contains(&after["id"].as_str().unwrap().to_string())
    );
    let dirs: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for d in &dirs {
        assert!(
            listed.contains(d),
            "backup {d} is neither listed nor swept: {dirs:?} / {listed:?}"
        );
    }

    c.psql("insert into big select g, 'after' from generate_series(200001, 200100) g");
    c.switch_and_archive();
    for n in 0..3u32 {
        let name = format!("killed-restore-{n}");
        let new = c.path_of(&name);
        let mut child = c
            .pitr
            .cmd(&strs(&c.restore_args("restore", &name, &["--latest"])))
            .spawn()
            .unwrap();
        wait_for(
            "the restore to start writing",
            Duration::from_secs(60),
            || new.join("base").exists(),
        );
        std::thread::sleep(Duration::from_millis(u64::from(n) * 40));
        let _ = child.kill();
        let _ = child.wait();
        if new.join("global/pg_control").exists() {
            // It got as far as starting the server: that server is ours to stop.
            stop_server(&new);
        }
        let (code, err) = c.restore_fails("restore", &name, &["--latest"]);
        assert_eq!(
            code, 2,
            "a second restore into a killed one's directory: {err}"
        );
    }
    let r = c.restore_to("restore", "restored", &["--latest"]);
    assert_eq!(r.psql("select count(*) from big").trim(), "200100");
}
