//! Encryption at rest (issue 15 part 3), on the local store and on S3: a
//! repository created with `init --encrypt` while pgbench writes holds
//! nothing but sealed data objects; `info` and `plan` work without the
//! key; fetching WAL or restoring without it, with a wrong key, or with a
//! key for a repository in the clear is refused clearly and writes
//! nothing; with the key (a file, or `PITR_KEY`) a restore is row-exact
//! and verify is clean; an altered object is named by verify.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

pub const KEY: &str = "5f0c2a7e9b3d4c1f8e6a0b2d4f6e8a0c1e3f5a7b9c0d2e4f6a8b0c2d4e6f8a0b";
const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// `pitr` on the cluster's repository with its environment but no key.
fn keyless(c: &Cluster) -> Pitr {
    Pitr {
        repo: c.pitr.repo.clone(),
        spec: c.pitr.spec.clone(),
        env: c
            .pitr
            .env
            .iter()
            .filter(|(k, _)| k != "PITR_KEY_FILE")
            .cloned()
            .collect(),
    }
}

fn with_env(p: Pitr, k: &str, v: &str) -> Pitr {
    let mut p = p;
    p.env.push((k.to_string(), v.to_string()));
    p
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_encrypted_repository_restores_only_with_its_key() {
    scenario(Cluster::encrypted(None, KEY));
}

#[test]
fn an_encrypted_repository_on_s3_restores_only_with_its_key() {
    scenario(Cluster::encrypted(
        Some((crate::s3::shared(), "encrypted")),
        KEY,
    ));
}

fn scenario(c: Cluster) {
    c.create_table();
    let init = c.pgbench(&["-i", "-s", "1", "-q"]).output().unwrap();
    assert!(init.status.success(), "{init:?}");
    // A backup taken while pgbench writes.
    let busy = c
        .pgbench(&["-n", "-c", "4", "-j", "2", "-T", "4"])
        .spawn()
        .unwrap();
    for i in 1..=3 {
        c.psql(&format!("insert into t(id) values ({i})"));
    }
    let b = c.backup();
    let done = busy.wait_with_output().unwrap();
    assert!(done.status.success(), "pgbench: {done:?}");
    c.psql("select pg_sleep(0.2); insert into t(id) values (4)");
    let at = c.psql("select clock_timestamp()").trim().to_string();
    c.psql("select pg_sleep(0.2); insert into t(id) values (5)");
    let seg = c.switch_and_archive();
    let want = c
        .psql(&format!(
            "select string_agg(id::text, ',' order by id) from t where ts <= '{at}'"
        ))
        .trim()
        .to_string();
    assert_eq!(want, "1,2,3,4");

    if !c.pitr.is_s3() {
        // On disk: every data object sealed, the catalog plain JSON.
        let mut sealed = 0;
        for f in files(&c.pitr.repo) {
            let rel = f
                .strip_prefix(&c.pitr.repo)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let bytes = std::fs::read(&f).unwrap();
            if rel == "pitr.json" || rel.starts_with("catalog/") || rel.starts_with("claims/") {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("{rel} is not readable JSON: {e}"));
            } else {
                assert!(bytes.starts_with(b"PITRENC1"), "{rel} is not sealed");
                sealed += 1;
            }
        }
        assert!(sealed > 10, "{sealed} sealed objects");
    }

    // Without the key: the catalog reads, the data does not.
    let nokey = keyless(&c);
    let info = nokey.json(&["info"]);
    assert_eq!(
        info["cluster"]["encryption"]["cipher"], "aes-256-gcm",
        "{info:#}"
    );
    assert_eq!(info["backups"][0]["id"], b["id"]);
    // Planned from the catalog alone: the same start point, the stop left
    // to recovery_target_time (the transaction lists are sealed); with
    // the key, resolved to the exact record.
    let plan = nokey.json(&["plan", "--to", &at]);
    assert_eq!(plan["backup"]["id"], b["id"], "{plan:#}");
    assert_eq!(plan["time_stop"]["by"], "time", "{plan:#}");
    let exact = c.pitr.json(&["plan", "--to", &at]);
    assert_eq!(exact["backup"]["id"], b["id"], "{exact:#}");
    assert_eq!(exact["time_stop"]["by"], "lsn", "{exact:#}");
    let probe = c.path_of("probe");
    let out = nokey.run(&["wal-fetch", &seg, probe.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Not "not archived" (3), which would end a recovery early.
    assert_eq!(out.status.code(), Some(200), "{err}");
    assert!(
        err.contains("is encrypted") && err.contains("--key-file"),
        "{err}"
    );
    assert!(!probe.exists());
    let nokey_restore = Cluster::restore_args(&c, "restore", "nokey", &["--to", &at]);
    let (code, err) = nokey.fails(&strs(&nokey_restore));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is encrypted"), "{err}");
    assert!(
        !c.path_of("nokey").join("PG_VERSION").exists(),
        "a refused restore left a data directory"
    );

    // A wrong key: refused before anything runs.
    let wrong_file = c.path_of("wrong.key");
    std::fs::write(&wrong_file, WRONG).unwrap();
    let wrong = with_env(keyless(&c), "PITR_KEY_FILE", wrong_file.to_str().unwrap());
    let (code, err) = wrong.fails(&["info"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("wrong key for repository"), "{err}");
    assert!(
        !err.contains("storage:"),
        "a key refused is no storage failure: {err}"
    );

    // The key in PITR_KEY instead of a file.
    let env_key = with_env(keyless(&c), "PITR_KEY", KEY);
    env_key.ok(&["wal-fetch", &seg, probe.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&probe).unwrap().len(), 1 << 20);
    // Archived again (a retried archive_command): its sealed objects are
    // compared by what they open to, so it is acknowledged, not a conflict.
    let named = c.path_of("again");
    std::fs::create_dir_all(&named).unwrap();
    let named = named.join(&seg);
    std::fs::copy(&probe, &named).unwrap();
    let again = env_key.json(&["wal-push", named.to_str().unwrap()]);
    assert_eq!(again["status"], "already_archived", "{again}");

    // With the key: row-exact at the target, and verify is clean.
    let r = c.restore_to("restore", "at", &["--to", &at]);
    assert_eq!(r.rows(), want);
    drop(r);
    let v = c.pitr.json(&["verify"]);
    assert_eq!(
        v["verify"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );

    // A test restore through verify, and a fork: its repository is
    // sealed with the same key, and it archives into it.
    let v = c.pitr.json(&["verify", "--restore"]);
    assert_eq!(
        v["verify"]["problems"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
    if !c.pitr.is_s3() {
        let new_repo = c.path_of("fork-repo");
        let args = c.restore_args(
            "fork",
            "fork",
            &["--to", &at, "--new-repo", new_repo.to_str().unwrap()],
        );
        let f = Restored::from_json(c.pitr.json(&strs(&args)));
        assert_eq!(f.rows(), want);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(new_repo.join("pitr.json")).unwrap()).unwrap();
        assert_eq!(config["format_version"], 4, "{config:#}");
        assert_eq!(config["body"]["encryption"]["cipher"], "aes-256-gcm");
        let data: Vec<_> = files(&new_repo.join("backups"))
            .into_iter()
            .chain(
                files(&new_repo.join("wal"))
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "zst")),
            )
            .collect();
        assert!(!data.is_empty());
        for p in data {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                bytes.starts_with(b"PITRENC1"),
                "{} is not sealed",
                p.display()
            );
        }
    }

    if !c.pitr.is_s3() {
        // One byte of a segment altered: verify names that object.
        let obj = segment_data_object(&c.pitr.repo, &seg);
        let mut bytes = std::fs::read(&obj).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        std::fs::write(&obj, bytes).unwrap();
        let out = run_within(c.pitr.cmd(&["verify", "--json"]), Duration::from_secs(300));
        assert_eq!(out.status.code(), Some(10));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rel = obj
            .strip_prefix(&c.pitr.repo)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let named = v["verify"]["problems"].as_array().unwrap().iter().any(|p| {
            p["key"] == rel.as_str()
                && p["message"]
                    .as_str()
                    .is_some_and(|d| d.contains("does not open"))
        });
        assert!(named, "{v:#}");
    }
}

/// Bad keys and the wrong repository for a key, each refused with what to
/// do, nothing written.
#[test]
fn keys_that_do_not_fit_are_refused() {
    let c = Cluster::new();
    let dir = c.path_of("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("good.key");
    std::fs::write(&key_file, KEY).unwrap();
    let bad_file = dir.join("bad.key");
    std::fs::write(&bad_file, "my secret passphrase").unwrap();

    // A key for a repository written in the clear.
    let (code, err) = c
        .pitr
        .fails(&["info", "--key-file", key_file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not encrypted, but a key was given"),
        "{err}"
    );
    // ... and --encrypt on it afterwards.
    let (code, err) = c.pitr.fails(&[
        "init",
        "--pgdata",
        c.pgdata_str(),
        "--encrypt",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not encrypted"), "{err}");

    let new_repo = c.path_of("new-repo");
    let at_new = |args: &[&str]| {
        let mut all = vec![
            "init",
            "--pgdata",
            c.pgdata_str(),
            "--repo",
            new_repo.to_str().unwrap(),
        ];
        all.extend(args);
        c.pitr.fails(&all)
    };
    let (code, err) = at_new(&["--encrypt"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--encrypt needs a key"), "{err}");
    let (code, err) = at_new(&["--key-file", key_file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a key was given but not --encrypt"), "{err}");
    let (code, err) = at_new(&["--encrypt", "--key-file", bad_file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does not hold a key: a key is 32 random bytes"),
        "{err}"
    );
    assert!(
        !new_repo.join("pitr.json").exists(),
        "a refused init wrote the repository's record"
    );
    // And the right way creates it encrypted.
    let mut cmd = c.pitr.cmd(&[
        "init",
        "--pgdata",
        c.pgdata_str(),
        "--repo",
        new_repo.to_str().unwrap(),
        "--encrypt",
        "--key-file",
        key_file.to_str().unwrap(),
        "--json",
    ]);
    cmd.env_remove("PITR_REPO");
    let out = run_ok(cmd);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["encryption"]["cipher"], "aes-256-gcm", "{v:#}");
    assert_eq!(
        v["encryption"]["keys"][0]["id"].as_str().map(str::len),
        Some(16)
    );
}

/// Rotation: `add-key` lists a new key; a server given both seals new
/// segments with the new one (its id in their header), an old segment
/// opens only with the old key, and a restore given both is row-exact.
#[test]
fn keys_rotate_without_rewriting_what_is_stored() {
    let mut c = Cluster::encrypted(None, KEY);
    c.create_table();
    // Sealed with the old key, as is the segment after it.
    c.backup();
    c.psql("insert into t(id) values (1)");
    let old_seg = c.switch_and_archive();
    let old_file = c.pitr.env_value("PITR_KEY_FILE").unwrap();
    let new_file = c.path_of("new.key");
    std::fs::write(&new_file, WRONG).unwrap();
    let mut chown = std::process::Command::new("chown");
    chown.arg("postgres").arg(&new_file);
    run_ok(chown);

    let added = c
        .pitr
        .json(&["add-key", "--new-key-file", new_file.to_str().unwrap()]);
    assert_eq!(added["added"], true, "{added:#}");
    assert_eq!(added["keys"].as_array().map(Vec::len), Some(2), "{added:#}");
    let new_id = added["id"].as_str().unwrap().to_string();
    let again = c
        .pitr
        .json(&["add-key", "--new-key-file", new_file.to_str().unwrap()]);
    assert_eq!(again["added"], false, "{again:#}");

    // The server (its archive_command) now gets both keys.
    stop_server(&c.pgdata);
    let both = format!("{}:{old_file}", new_file.display());
    for (k, v) in c.pitr.env.iter_mut() {
        if k == "PITR_KEY_FILE" {
            *v = both.clone();
        }
    }
    c.start();
    c.psql("insert into t(id) values (2)");
    let new_seg = c.switch_and_archive();
    let header = |seg: &str| {
        let bytes = std::fs::read(segment_data_object(&c.pitr.repo, seg)).unwrap();
        hex_of(&bytes[8..16])
    };
    assert_eq!(header(&new_seg), new_id);
    assert_ne!(header(&old_seg), new_id);

    // Only the new key: the old segment does not open, and says which
    // key it needs.
    let only_new = with_env(keyless(&c), "PITR_KEY_FILE", new_file.to_str().unwrap());
    let probe = c.path_of("probe");
    only_new.ok(&["wal-fetch", &new_seg, probe.to_str().unwrap()]);
    std::fs::remove_file(&probe).unwrap();
    let out = only_new.run(&["wal-fetch", &old_seg, probe.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(200), "{err}");
    assert!(err.contains("which was not given"), "{err}");
    // Both keys: row-exact.
    let r = c.restore_to("restore", "latest", &["--latest"]);
    assert_eq!(r.rows(), "1,2");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// kill -9 of `wal-push` into an encrypted repository at each phase of its
/// run (before any write, after the sealed data, after the record, after
/// the index entry): the index never lists a segment without its record,
/// a record serves exactly the pushed bytes, and the retry succeeds and
/// serves them too; every object it left is sealed.
#[test]
fn kill_9_at_every_phase_of_an_encrypted_wal_push_loses_nothing() {
    let c = Cluster::encrypted(None, KEY);
    c.psql("create table big as select g, md5(g::text) from generate_series(1, 20000) g");
    let seg = c.switch_and_archive();
    let src = c.path_of("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join(&seg);
    c.pitr.ok(&["wal-fetch", &seg, file.to_str().unwrap()]);
    let bytes = std::fs::read(&file).unwrap();
    for (n, phase) in ["before-data", "after-data", "after-record", "after-index"]
        .iter()
        .enumerate()
    {
        let mut repo = Pitr::local(c.path_of(&format!("kill-{n}")));
        repo.env = c.pitr.env.clone();
        repo.ok(&["init", "--pgdata", c.pgdata_str(), "--encrypt"]);
        let mut cmd = repo.cmd(&["wal-push", file.to_str().unwrap()]);
        cmd.env("PITR_FAULT_STOP_AT", phase);
        let mut child = cmd.spawn().unwrap();
        crate::faults::wait_stopped(&child, &format!("wal-push to stop {phase}"));
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        let (data, record, index) = crate::faults::phase_of(&repo.repo, &seg);
        let want = match n {
            0 => (false, false, false),
            1 => (true, false, false),
            2 => (true, true, false),
            _ => (true, true, true),
        };
        assert_eq!((data, record, index), want, "killed {phase}");
        let out = src.join(format!("out-{n}"));
        if record {
            repo.ok(&["wal-fetch", &seg, out.to_str().unwrap()]);
            assert!(
                std::fs::read(&out).unwrap() == bytes,
                "killed {phase}: other bytes"
            );
            std::fs::remove_file(&out).unwrap();
        }
        let wal = repo.repo.join("wal");
        for f in if wal.exists() {
            files(&wal)
        } else {
            Vec::new()
        } {
            let stored = std::fs::read(&f).unwrap();
            assert!(
                stored.starts_with(b"PITRENC1"),
                "{} is not sealed",
                f.display()
            );
        }
        // Postgres retries until it gets 0.
        repo.ok(&["wal-push", file.to_str().unwrap()]);
        repo.ok(&["wal-fetch", &seg, out.to_str().unwrap()]);
        assert!(
            std::fs::read(&out).unwrap() == bytes,
            "killed {phase}: the retry serves other bytes"
        );
        let info = repo.json(&["info"]);
        assert_eq!(info["wal"][0]["segments"].as_u64(), Some(1), "{info:#}");
    }
}
