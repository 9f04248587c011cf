//! `pitr verify` (issue 15 part 2) against real PostgreSQL and real
//! stores: a clean repository verifies clean; each kind of damage, made on
//! a copy of it, is named with its kind and key and exits 10; a killed
//! backup's directory is a leftover; S3 the same; `--restore` restores to
//! a scratch directory, runs pg_amcheck and pg_checksums on a cluster with
//! data checksums, records a timing and a result, and leaves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::s3;

/// `pitr verify <extra> --json` against `p`'s repository: (exit code, the
/// JSON on stdout, stderr).
fn verify(p: &Pitr, extra: &[&str], env: &[(&str, &Path)]) -> (i32, Value, String) {
    let mut args = vec!["verify"];
    args.extend(extra);
    args.push("--json");
    let mut cmd = p.cmd(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_within(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// (kind, key) of every problem in a verify report.
fn problems(v: &Value) -> Vec<(String, String)> {
    v["verify"]["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["kind"].as_str().unwrap_or("").to_string(),
                        p["key"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(v: &Value, kind: &str, key: &str) -> bool {
    problems(v).iter().any(|(k, p)| k == kind && p == key)
}

/// Stops the cluster with a fast shutdown: the archiver finishes what is
/// ready first, so the repository is quiescent (nothing half-pushed).
fn stop_fast(c: &Cluster) {
    let mut cmd = as_postgres(format!("{}/pg_ctl", c.bin));
    cmd.args(["stop", "-m", "fast", "-w", "-D"]).arg(&c.pgdata);
    run_ok(cmd);
}

/// A copy of the local repository (ownership kept), as its own `Pitr`.
fn copy_repo(c: &Cluster, name: &str) -> Pitr {
    let dst = c.dir.path().join(name);
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(&c.pitr.repo).arg(&dst);
    run_ok(cmd);
    Pitr::local(dst)
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// `path` relative to the repository root, as a key.
fn key_of(repo: &Path, path: &Path) -> String {
    path.strip_prefix(repo)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The largest file object of backup `id`.
fn largest_backup_object(repo: &Path, id: &str) -> PathBuf {
    std::fs::read_dir(repo.join("backups").join(id).join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// A cluster with a backup and WAL after it: two switched segments, so
/// the first is inside the archive (damaging it is a gap). Stopped.
fn archived_cluster(c: &Cluster) -> (String, String, String) {
    c.create_table();
    c.psql("insert into t(id) select g from generate_series(1, 1000) g");
    let b = c.backup();
    let id = b["id"].as_str().unwrap().to_string();
    c.psql("insert into t(id) select g from generate_series(1001, 2000) g");
    let inner = c.switch_and_archive();
    c.psql("insert into t(id) values (2001)");
    let last = c.switch_and_archive();
    stop_fast(c);
    (id, inner, last)
}

#[test]
fn verify_names_each_kind_of_damage_and_a_clean_repository_is_clean() {
    let c = Cluster::new();
    let (id, inner, _last) = archived_cluster(&c);
    let repo = c.pitr.repo.clone();

    // Clean: exit 0, no problem, counts of what was read.
    let (code, v, err) = verify(&c.pitr, &[], &[]);
    assert_eq!(code, 0, "{err}\n{v:#}");
    let r = &v["verify"];
    assert_eq!(r["ok"], true, "{v:#}");
    assert_eq!(r["problems"].as_array().map(Vec::len), Some(0), "{v:#}");
    let checked = &r["checked"];
    assert!(checked["wal_segments"].as_u64().unwrap() >= 3, "{v:#}");
    assert!(checked["xacts_lists"].as_u64().unwrap() >= 1, "{v:#}");
    assert!(checked["index_entries"].as_u64().unwrap() >= 3, "{v:#}");
    assert_eq!(checked["backups"], 1, "{v:#}");
    assert!(checked["backup_objects"].as_u64().unwrap() > 100, "{v:#}");
    assert!(checked["bytes"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(r["restorable"][0]["earliest_backup"], id.as_str(), "{v:#}");
    eprintln!(
        "verify: {} objects, {} bytes stored ({} raw) in {:.2} s: {:.1} MB/s",
        checked["objects"],
        checked["bytes"],
        checked["raw_bytes"],
        r["seconds"].as_f64().unwrap(),
        r["mb_per_second"].as_f64().unwrap()
    );
    // Its result is recorded, and nothing else was written.
    let recorded = v["recorded"].as_str().expect("a recorded result");
    assert!(recorded.starts_with("catalog/verify/"), "{recorded}");
    let body: Value = serde_json::from_slice(&std::fs::read(repo.join(recorded)).unwrap()).unwrap();
    assert_eq!(body["kind"], "pitr.verify-result");
    assert_eq!(body["body"]["kind"], "integrity");
    assert_eq!(body["body"]["ok"], true);
    assert_eq!(body["body"]["problems"], 0);
    // No repository there: refused as a usage error, nothing created.
    let nowhere = c.dir.path().join("no-repo");
    let (code, _, err) = verify(&Pitr::local(nowhere.clone()), &[], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pitr repository"), "{err}");
    assert!(!nowhere.exists());
    // Text form: says it is clean.
    let text = c.pitr.ok(&["verify"]);
    assert!(text.contains("no problems found"), "{text}");

    // A flipped byte in a WAL data object: corrupt, and a gap there.
    let p = copy_repo(&c, "flipped");
    let obj = segment_data_object(&p.repo, &inner);
    flip_byte(&obj);
    let (code, v, err) = verify(&p, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    assert!(has(&v, "wal-corrupt", &key_of(&p.repo, &obj)), "{v:#}");
    assert!(has(&v, "wal-gap", &inner), "{v:#}");
    assert!(err.contains("wal-corrupt") && err.contains(&inner), "{err}");
    assert_eq!(v["verify"]["ok"], false);

    // A deleted WAL data object: missing, and the gap names the segment.
    let p = copy_repo(&c, "deleted-wal");
    let obj = segment_data_object(&p.repo, &inner);
    std::fs::remove_file(&obj).unwrap();
    let (code, v, err) = verify(&p, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    assert!(has(&v, "wal-data-missing", &key_of(&p.repo, &obj)), "{v:#}");
    assert!(has(&v, "wal-gap", &inner), "{v:#}");
    let gap = v["verify"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "wal-gap")
        .unwrap();
    assert!(
        gap["message"].as_str().unwrap().contains("be restored"),
        "{gap:#}"
    );

    // A deleted backup file object.
    let p = copy_repo(&c, "deleted-file");
    let obj = largest_backup_object(&p.repo, &id);
    std::fs::remove_file(&obj).unwrap();
    let (code, v, err) = verify(&p, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    assert!(
        has(&v, "backup-object-missing", &key_of(&p.repo, &obj)),
        "{v:#}"
    );
    assert_eq!(problems(&v).len(), 1, "{v:#}");

    // A flipped byte in a backup file object.
    let p = copy_repo(&c, "flipped-file");
    let obj = largest_backup_object(&p.repo, &id);
    flip_byte(&obj);
    let (code, v, err) = verify(&p, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    assert!(
        has(&v, "backup-object-corrupt", &key_of(&p.repo, &obj)),
        "{v:#}"
    );

    // A corrupt manifest.
    let p = copy_repo(&c, "manifest");
    let manifest = p.repo.join("backups").join(&id).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replacen("\"path\"", "\"pAth\"", 1)).unwrap();
    let (code, v, err) = verify(&p, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    let key = format!("backups/{id}/manifest.json");
    assert!(has(&v, "manifest-damaged", &key), "{v:#}");

    // An orphan data object (a push never acknowledged): harmless, named.
    let p = copy_repo(&c, "orphan");
    let obj = segment_data_object(&p.repo, &inner);
    let orphan = obj.with_file_name(format!("{inner}.{}.zst", "0".repeat(32)));
    std::fs::copy(&obj, &orphan).unwrap();
    let (code, v, err) = verify(&p, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    assert_eq!(
        problems(&v),
        vec![("wal-orphan".to_string(), key_of(&p.repo, &orphan))],
        "{v:#}"
    );
    assert_eq!(v["verify"]["problems"][0]["harmless"], true);
    // Verify only reads: the orphan is still there.
    assert!(orphan.exists());
}

/// A backup killed while copying leaves its directory and its claim:
/// verify names the directory as a leftover of a run that is gone.
#[test]
fn verify_reports_the_directory_of_a_killed_backup_as_a_leftover() {
    let c = Cluster::new();
    c.psql("create table big as select g, md5(g::text) as m from generate_series(1, 600000) g");
    c.switch_and_archive();
    let before: Vec<_> = list_backup_dirs(&c.pitr.repo);
    let mut child = c
        .pitr
        .cmd(&["backup", "--pgdata", c.pgdata_str(), "--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let id = loop {
        let new: Vec<String> = list_backup_dirs(&c.pitr.repo)
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        if let Some(id) = new.iter().find(|id| {
            std::fs::read_dir(c.pitr.repo.join("backups").join(id).join("files"))
                .is_ok_and(|mut d| d.next().is_some())
        }) {
            break id.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the backup never wrote a file"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !c.pitr
            .repo
            .join(format!("catalog/backups/{id}.json"))
            .exists(),
        "the backup finished before it was killed: the test proves nothing"
    );
    stop_fast(&c);
    let (code, v, err) = verify(&c.pitr, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    let key = format!("backups/{id}/");
    assert!(has(&v, "backup-leftover", &key), "{v:#}");
    let f = v["verify"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key.as_str())
        .unwrap();
    assert_eq!(f["harmless"], true);
    assert!(f["message"].as_str().unwrap().contains("is gone"), "{f:#}");
    // Nothing else is wrong with the repository.
    assert!(
        problems(&v).iter().all(|(k, _)| k == "backup-leftover"),
        "{v:#}"
    );
    // Verify removed nothing.
    assert!(c.pitr.repo.join("backups").join(&id).exists());
}

fn list_backup_dirs(repo: &Path) -> Vec<String> {
    std::fs::read_dir(repo.join("backups"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn verify_on_s3_is_clean_then_names_a_corrupt_segment() {
    let server = s3::shared();
    let c = Cluster::on_s3(server, "verify");
    let (_id, inner, _last) = archived_cluster(&c);
    let (code, v, err) = verify(&c.pitr, &[], &[]);
    assert_eq!(code, 0, "{err}\n{v:#}");
    assert_eq!(v["verify"]["ok"], true, "{v:#}");
    assert!(v["verify"]["checked"]["backup_objects"].as_u64().unwrap() > 100);
    // A restore from S3 to a scratch directory, checked and removed.
    let tmp = c.dir.path().join("scratch");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (code, v, err) = verify(&c.pitr, &["--restore"], &[("TMPDIR", tmp.as_path())]);
    assert_eq!(code, 0, "{err}\n{v:#}");
    assert_eq!(v["verify"]["amcheck"]["ok"], true, "{v:#}");
    assert!(entries(&tmp).is_empty());
    let root = server.object_path("verify", "cluster1");
    let obj = segment_data_object(&root, &inner);
    flip_byte(&obj);
    let (code, v, err) = verify(&c.pitr, &[], &[]);
    assert_eq!(code, 10, "{err}\n{v:#}");
    assert!(has(&v, "wal-corrupt", &key_of(&root, &obj)), "{v:#}");
    assert!(has(&v, "wal-gap", &inner), "{v:#}");
}

/// The entries of `dir` (the scratch restores' TMPDIR).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn verify_restore_checks_a_scratch_copy_records_it_and_leaves_nothing() {
    let c = Cluster::with_initdb_args(&["--data-checksums"]);
    c.create_table();
    c.psql("insert into t(id) select g from generate_series(1, 1000) g");
    c.psql("create index on t(ts)");
    c.backup();
    c.psql("select pg_sleep(0.3); insert into t(id) values (1001)");
    c.psql("select pg_sleep(0.3); insert into t(id) values (1002)");
    let mid = c
        .psql("select x.ts + (y.ts - x.ts) / 2 from t x, t y where x.id = 1001 and y.id = 1002")
        .trim()
        .to_string();
    c.switch_and_archive();
    let tmp = c.dir.path().join("scratch");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let env = [("TMPDIR", tmp.as_path())];

    let (code, v, err) = verify(&c.pitr, &["--restore"], &env);
    assert_eq!(code, 0, "{err}\n{v:#}");
    let r = &v["verify"];
    assert_eq!(r["ok"], true, "{v:#}");
    assert_eq!(r["data_checksums"], true, "{v:#}");
    assert_eq!(r["amcheck"]["ran"], true, "{v:#}");
    assert_eq!(r["amcheck"]["ok"], true, "{v:#}");
    assert_eq!(r["checksums"]["ran"], true, "{v:#}");
    assert_eq!(r["checksums"]["ok"], true, "{v:#}");
    assert!(
        r["checksums"]["checked"]
            .as_str()
            .unwrap()
            .contains(", 0 bad"),
        "{v:#}"
    );
    let usable = r["time_to_usable_seconds"].as_f64().unwrap();
    let checked = r["time_to_checked_seconds"].as_f64().unwrap();
    assert!(usable > 0.0 && usable <= checked, "{v:#}");
    eprintln!("verify --restore: usable after {usable:.2} s, checked after {checked:.2} s");
    assert_eq!(r["scratch_removed"], true, "{v:#}");
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));
    // The result and the restore's timing are recorded; plans learn from it.
    let recorded = v["recorded"].as_str().unwrap();
    let body: Value =
        serde_json::from_slice(&std::fs::read(c.pitr.repo.join(recorded)).unwrap()).unwrap();
    assert_eq!(body["body"]["kind"], "restore");
    assert_eq!(body["body"]["ok"], true);
    assert!(body["body"]["time_to_usable_seconds"].as_f64().unwrap() > 0.0);
    let p = c.pitr.json(&["plan", "--latest"]);
    let source = p["cost_model"]["source"].as_str().unwrap();
    assert!(source.contains("recorded restores"), "{p:#}");

    // --to TIME: that plan, restored and checked the same way.
    let (code, v, err) = verify(&c.pitr, &["--restore", "--to", &mid], &env);
    assert_eq!(code, 0, "{err}\n{v:#}");
    assert_eq!(v["verify"]["ok"], true, "{v:#}");
    assert!(v["verify"]["target"].to_string().contains("time"), "{v:#}");
    assert!(entries(&tmp).is_empty());

    // Bad input is refused before anything is made.
    let (code, _, err) = verify(&c.pitr, &["--restore", "--to", "2026-11-25 14:02"], &env);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = verify(&c.pitr, &["--to", &mid], &env);
    assert_eq!(code, 2, "--to needs --restore: {err}");
    assert!(entries(&tmp).is_empty());

    // A corrupt backup object: the restore fails clearly, nothing is left.
    stop_fast(&c);
    let p = copy_repo(&c, "corrupt");
    let id = p.ok(&["info", "--json"]);
    let info: Value = serde_json::from_str(&id).unwrap();
    let id = info["backups"][0]["id"].as_str().unwrap().to_string();
    flip_byte(&largest_backup_object(&p.repo, &id));
    let (code, _, err) = verify(&p, &["--restore"], &env);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("checksum") || err.contains("corrupt"), "{err}");
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));
    // The failure is the last verify result.
    let results = entries(&p.repo.join("catalog/verify"));
    assert!(!results.is_empty());
}

/// A repository being archived into while verify reads it: pushes in
/// progress (data before record, record before index entry) are not
/// problems.
#[test]
fn verify_of_a_repository_being_archived_into_finds_nothing() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    let init = c.pgbench(&["-i", "-s", "2", "-q"]).output().unwrap();
    assert!(init.status.success());
    let mut load = c
        .pgbench(&["-n", "-c", "2", "-T", "12"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < Duration::from_secs(10) {
        c.psql("select pg_switch_wal()");
        let (code, v, err) = verify(&c.pitr, &[], &[]);
        if code != 0 {
            let log = std::fs::read_to_string(c.dir.path().join("server.log")).unwrap();
            let arch: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("archiv") || l.contains("pitr"))
                .collect();
            let files = std::fs::read_dir(c.pitr.repo.join("wal/00000001"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| problems(&v).iter().any(|(_, k)| k.contains(&n[..24])))
                .collect::<Vec<_>>();
            panic!("{err}\n{:?}\n{files:?}\n{}", problems(&v), arch.join("\n"));
        }
        runs += 1;
    }
    assert!(load.wait().unwrap().success());
    assert!(runs >= 2, "only {runs} verify runs");
}
