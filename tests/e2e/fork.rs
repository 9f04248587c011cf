//! `pitr fork` against real PostgreSQL 15: a fork at a time, an xid and
//! `--latest` accepts writes, archives its new timeline into a repository
//! of its own (local, and S3 on s3s-fs), and that repository alone
//! restores it: the fork's rows are there, the source's rows after the
//! fork point are not. The source repository gains no object from the
//! fork but the restore's timing record. Refusals (the source repository
//! itself or inside it, a non-empty one, --no-start, a port in use, an
//! unreachable target) leave nothing behind; a fork that fails after its
//! repository was initialized leaves it empty.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::s3;

/// No fork or restore here may take longer: a hang fails the test.
const LIMIT: Duration = Duration::from_secs(300);

/// Inserts row `i` in its own transaction on the server `psql` talks to;
/// returns its xid.
fn insert_via(psql: impl Fn(&str) -> String, i: i32) -> u32 {
    returned_xid(&psql(&format!(
        "insert into t(id) values ({i}) returning txid_current()"
    )))
}

/// Every object of a local repository (files under it, as `FsStore`
/// lists them: dot-files are its temporaries).
fn objects(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Every key in `bucket` of the S3 server.
fn s3_keys(server: &s3::S3Server, bucket: &str) -> BTreeSet<String> {
    let client = server.client();
    s3::runtime().block_on(async {
        let mut out = BTreeSet::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                out.insert(o.key().unwrap().to_string());
            }
        }
        out
    })
}

/// `pitr fork <target…> --new-repo <new_repo>` into `<cluster dir>/<name>`
/// through `pitr` (the source repository and its environment): the fork,
/// running (stopped on drop).
fn fork(c: &Cluster, pitr: &Pitr, name: &str, target: &[&str], new_repo: &str) -> Restored {
    let mut args = target.to_vec();
    args.extend(["--new-repo", new_repo]);
    Restored::from_json(pitr.json_within(&c.restore_args("fork", name, &args), LIMIT))
}

/// What every fork must show: promoted on timeline 2 with `want` rows,
/// archiving into `new_repo` (settings and `show`), writable; rows
/// `written` go in and their segment reaches `new` (the fork's repository
/// through `pitr`). Returns that segment.
fn check_fork(f: &Restored, want: &str, new: &Pitr, written: &[i32]) -> String {
    assert_eq!(f.out["timeline"], 2, "{:#}", f.out);
    assert_eq!(f.out["new_repo"].as_str(), Some(new.spec.as_str()));
    assert_eq!(f.rows(), want);
    assert_eq!(f.psql("select pg_is_in_recovery()").trim(), "f");
    assert_eq!(f.psql("show archive_mode").trim(), "on");
    let command = f.psql("show archive_command");
    assert!(
        command.contains(&format!(" wal-push --repo {} ", new.spec)),
        "{command}"
    );
    let auto = std::fs::read_to_string(f.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("\narchive_mode = 'on'\n"), "{auto}");
    assert!(!auto.contains("archive_mode = 'off'"), "{auto}");
    assert!(
        !auto.contains(s3::SECRET_KEY),
        "credentials leaked into {auto}"
    );
    for &i in written {
        insert_via(|q| f.psql(q), i);
    }
    let seg = f
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    assert!(seg.starts_with("00000002"), "{seg}");
    new.wait_archived(&seg);
    // The first backup is the new repository's, of the same system.
    let info = new.json(&["info"]);
    let backups = info["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{info:#}");
    assert_eq!(backups[0]["id"], f.out["first_backup_id"]);
    assert_eq!(backups[0]["timeline"], 2);
    seg
}

/// `pitr restore --latest` from the fork's repository alone into
/// `<cluster dir>/<name>`.
fn restore_from(c: &Cluster, new: &Pitr, name: &str) -> Restored {
    Restored::from_json(new.json_within(&c.restore_args("restore", name, &["--latest"]), LIMIT))
}

#[test]
fn forks_at_a_time_and_at_latest_archive_into_their_own_repositories() {
    let c = Cluster::new();
    c.create_table();
    for i in 1..=3 {
        insert_via(|q| c.psql(q), i);
    }
    c.backup();
    crate::insert_rows(&c, 4, 8);
    let t = crate::midpoint(&c, 5, 6);
    c.switch_and_archive();
    let system = c.pitr.json(&["info"])["cluster"]["system_id"].clone();
    // The source stops writing: whatever its repository gains now comes
    // from the forks.
    stop_server(&c.pgdata);
    let before = objects(&c.pitr.repo);

    // At a time; the new repository does not exist yet.
    let r2 = c.path_of("fork-repo");
    let new2 = Pitr::local(r2.clone());
    let f = fork(&c, &c.pitr, "fork-at-time", &["--to", &t], &new2.spec);
    assert_eq!(f.out["restored"]["target"]["kind"], "time");
    check_fork(&f, "1,2,3,4,5", &new2, &[100, 101]);
    assert_eq!(new2.json(&["info"])["cluster"]["system_id"], system);
    assert!(r2.join("history/00000002.history.zst").is_file());
    assert!(!r2.join("wal/00000001").exists(), "{:?}", objects(&r2));
    // Promote cannot move the fork's archiving into the source's
    // repository (review of issue 14): refused, nothing changed.
    let (code, err) = c.pitr.fails(&[
        "promote",
        "--pgdata",
        f.pgdata.to_str().unwrap(),
        "--archive-to",
        &c.pitr.spec,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already archives into repository"), "{err}");
    assert!(!c.pitr.repo.join("history/00000002.history.zst").exists());
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for p in [r2.clone(), r2.join("pitr.json"), f.pgdata.clone()] {
            let uid = std::fs::metadata(&p).unwrap().uid();
            assert_eq!(uid, postgres.uid.as_raw(), "{} owned by {uid}", p.display());
        }
    }

    // At the end of the archive; the new repository is an empty directory.
    let r3 = c.path_of("latest-repo");
    std::fs::create_dir(&r3).unwrap();
    std::fs::set_permissions(&r3, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let new3 = Pitr::local(r3.clone());
    let g = fork(&c, &c.pitr, "fork-at-latest", &["--latest"], &new3.spec);
    assert_eq!(g.out["restored"]["target"]["kind"], "latest");
    check_fork(&g, "1,2,3,4,5,6,7,8", &new3, &[200]);

    // The source repository gained nothing of either fork but the two
    // restores' timing records, and lost nothing.
    let after = objects(&c.pitr.repo);
    assert!(before.is_subset(&after), "objects vanished from the source");
    let added: Vec<&String> = after.difference(&before).collect();
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(
        added.iter().all(|k| k.starts_with("catalog/timings/")),
        "the source repository gained {added:?}"
    );

    // Each fork's repository alone restores it: its rows, and none of the
    // source's after the fork point. The fork's own recovery target (an
    // LSN, in the postgresql.auto.conf its backup holds) is cleared.
    drop(f);
    let from2 = restore_from(&c, &new2, "from-fork-repo");
    assert_eq!(from2.rows(), "1,2,3,4,5,100,101");
    assert_eq!(from2.out["timeline"], 3);
    let auto = std::fs::read_to_string(from2.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("\nrecovery_target_lsn = ''\n"), "{auto}");
    assert_eq!(from2.psql("show archive_mode").trim(), "off");
    drop(g);
    let from3 = restore_from(&c, &new3, "from-latest-repo");
    assert_eq!(from3.rows(), "1,2,3,4,5,6,7,8,200");
}

#[test]
fn a_fork_into_s3_at_an_xid_restores_from_there_alone() {
    let server = s3::shared();
    let c = Cluster::new();
    c.create_table();
    for i in 1..=3 {
        insert_via(|q| c.psql(q), i);
    }
    c.backup();
    insert_via(|q| c.psql(q), 4);
    let x5 = insert_via(|q| c.psql(q), 5);
    insert_via(|q| c.psql(q), 6);
    c.switch_and_archive();
    server.create_bucket("fork-xid");
    let new = Pitr {
        repo: c.path_of("unused"),
        spec: "s3://fork-xid/fork".into(),
        env: server.env(),
    };
    // The source repository is local; S3 settings and credentials reach
    // the fork's archive_command through the environment.
    let source = Pitr {
        repo: c.pitr.repo.clone(),
        spec: c.pitr.spec.clone(),
        env: server.env(),
    };
    let before = objects(&c.pitr.repo);
    let x5s = x5.to_string();
    let f = fork(&c, &source, "fork-at-xid", &["--xid", &x5s], &new.spec);
    assert_eq!(f.out["restored"]["target"]["kind"], "xid");
    let seg = check_fork(&f, "1,2,3,4,5", &new, &[300, 301]);
    let keys = s3_keys(server, "fork-xid");
    assert!(keys.contains("fork/pitr.json"), "{keys:?}");
    assert!(
        keys.contains("fork/history/00000002.history.zst"),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("fork/wal/00000002/{seg}."))),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| k.starts_with("fork/")), "{keys:?}");
    // Nothing of the source's timeline: the old timeline's last segment
    // was restored from the archive (marked .done), so Postgres archives
    // no .partial of it (xlog.c: CleanupAfterArchiveRecovery).
    assert!(!keys.iter().any(|k| k.contains("/00000001")), "{keys:?}");

    // The source goes on archiving into its own repository, which never
    // sees the fork's timeline, backup or partial segment.
    insert_via(|q| c.psql(q), 7);
    c.switch_and_archive();
    let after = objects(&c.pitr.repo);
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(
        added.iter().any(|k| k.starts_with("wal/00000001/")),
        "{added:?}"
    );
    for k in &added {
        assert!(
            !k.starts_with("wal/00000002")
                && !k.starts_with("history/")
                && !k.starts_with("backups/")
                && !k.starts_with("catalog/backups/")
                && !k.contains(".partial"),
            "the source repository gained {k} from the fork"
        );
    }

    drop(f);
    let from = restore_from(&c, &new, "from-s3-fork-repo");
    assert_eq!(from.rows(), "1,2,3,4,5,300,301");
    let auto = std::fs::read_to_string(from.pgdata.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("\nrecovery_target_xid = ''\n"), "{auto}");
    assert!(auto.contains("--repo s3://fork-xid/fork "), "{auto}");
}

#[test]
fn a_fork_refuses_a_repository_not_its_own_and_leaves_nothing() {
    let c = Cluster::new();
    c.create_table();
    insert_via(|q| c.psql(q), 1);
    c.backup();
    insert_via(|q| c.psql(q), 2);
    c.switch_and_archive();
    let repo = c.pitr.spec.clone();
    let pgdata = c.path_of("refused");
    let fails = |args: &[&str], code: i32, says: &str| {
        let all = c.restore_args("fork", "refused", args);
        let out = run_within(c.pitr.cmd(&strs(&all)), LIMIT);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!pgdata.exists(), "{args:?} left {}", pgdata.display());
    };
    let inside = format!("{repo}/fork");
    fails(
        &["--latest", "--new-repo", &repo],
        2,
        "is the source repository",
    );
    fails(&["--latest", "--new-repo", &inside], 2, "overlap");
    assert!(!Path::new(&inside).exists());

    let full = c.path_of("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), b"mine").unwrap();
    fails(
        &["--latest", "--new-repo", full.to_str().unwrap()],
        2,
        "is not empty (it holds keep.txt)",
    );
    assert_eq!(std::fs::read(full.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(objects(&full).len(), 1);

    // An initialized repository (of this very cluster) is not empty either.
    let other = c.path_of("other-repo");
    Pitr::local(other.clone()).ok(&["init", "--pgdata", c.pgdata_str()]);
    fails(
        &["--latest", "--new-repo", other.to_str().unwrap()],
        2,
        "(it holds pitr.json)",
    );

    let fresh = c.path_of("fresh-repo");
    let fresh_s = fresh.to_str().unwrap();
    fails(
        &["--latest", "--new-repo", fresh_s, "--no-start"],
        2,
        "--no-start does not apply",
    );
    let port = c.port.to_string();
    fails(
        &["--latest", "--new-repo", fresh_s, "--port", &port],
        2,
        "is in use",
    );
    fails(
        &["--to", "2000-01-01 00:00:00+00", "--new-repo", fresh_s],
        4,
        "",
    );
    assert!(!fresh.exists(), "a refused fork left {}", fresh.display());
}

#[test]
fn a_fork_that_fails_in_recovery_leaves_its_repository_empty() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    let mut segments = Vec::new();
    for i in 1..=3 {
        insert_via(|q| c.psql(q), i);
        segments.push(c.switch_and_archive());
    }
    // A segment the catalog lists but the store cannot serve: recovery
    // stops (wal-fetch exits 200), after the fork's repository was
    // initialized and the server started.
    let lost = &segments[1];
    let removed = segment_data_object(&c.pitr.repo, lost);
    std::fs::remove_file(&removed).unwrap();

    let r2 = c.path_of("failed-fork-repo");
    let all = c.restore_args(
        "fork",
        "failed-fork",
        &["--latest", "--new-repo", r2.to_str().unwrap()],
    );
    let out = run_within(c.pitr.cmd(&strs(&all)), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    // Recovery failed on the lost segment, so the server had started, so
    // the fork's repository had been initialized (a failure to do so
    // stops the fork before the server starts, with another message).
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains(lost.as_str()), "{err}");
    let new = c.path_of("failed-fork");
    let auto = std::fs::read_to_string(new.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(&format!("--repo {} %p", r2.display())),
        "{auto}"
    );
    assert!(!new.join("global/pg_control").exists());
    assert!(new.join("PITR_RESTORE_FAILED").exists());
    assert!(!new.join("postmaster.pid").exists(), "server left running");
    // The repository it made is gone with what was in it.
    assert!(!r2.exists(), "left {:?}", objects(&r2));
}
