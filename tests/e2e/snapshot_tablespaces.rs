//! Issue 13's last clause: snapshots carry every tablespace. Against real
//! PostgreSQL 15 (and, for btrfs, a loop-mounted btrfs image): a copy
//! snapshot and an operator-command snapshot (`--covers-tablespaces`) of a
//! cluster with two tablespaces, each taken while inserts write into one
//! of them, restored with `--tablespace-map` to a time after it with
//! exactly the source's rows in every tablespace and
//! `pg_tablespace_location()` naming the new places; a btrfs snapshot
//! with a tablespace on its own subvolume, restored the same way. And
//! what is refused before anything is written or taken: a tablespace
//! target that is not empty, a btrfs tablespace that is no subvolume or on
//! another filesystem than the snapshots, a btrfs tablespace mapped off
//! the snapshot's filesystem, `--atomic` with tablespaces, the command
//! provider without `--covers-tablespaces`.
//! Expected rows come from the source, at the target time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::snapshot::{bank, conn, Aside, Btrfs};
use crate::tablespaces::{
    ids_until, insert_rows, mkdir_as_postgres, two_tablespaces, writes_into_two,
};

/// A time halfway between rows `a` and `b` of `t`.
fn midpoint(c: &Cluster, a: i32, b: i32) -> String {
    c.psql(&format!(
        "select x.ts + (y.ts - x.ts) / 2 from t x, t y where x.id = {a} and y.id = {b}"
    ))
    .trim()
    .to_string()
}

fn location(psql: impl Fn(&str) -> String, name: &str) -> String {
    psql(&format!(
        "select pg_tablespace_location(oid) from pg_tablespace where spcname = '{name}'"
    ))
    .trim()
    .to_string()
}

fn oid_of(c: &Cluster, name: &str) -> u64 {
    returned(&c.psql(&format!(
        "select oid from pg_tablespace where spcname = '{name}'"
    )))
}

/// A snapshot's record, as stored (envelope and body).
fn record(c: &Cluster, id: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(c.pitr.repo.join(format!("catalog/backups/{id}.json"))).unwrap(),
    )
    .unwrap()
}

/// What a snapshot's record says of its tablespaces: (oid, path, handle).
fn carried(rec: &serde_json::Value) -> Vec<(u64, String, Option<String>)> {
    rec["body"]["start"]["tablespaces"]
        .as_array()
        .expect("the record lists tablespaces")
        .iter()
        .map(|t| {
            (
                t["oid"].as_u64().unwrap(),
                t["path"].as_str().unwrap().to_string(),
                t["handle"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The names in `dir` (none if it is absent), sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `pitr restore --to TO --pgdata PGDATA --tablespace-map …`, which must
/// succeed: the restored server.
fn restore(c: &Cluster, to: &str, pgdata: &Path, maps: &[String]) -> Restored {
    let mut args: Vec<String> = ["restore", "--to", to, "--pgdata"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(pgdata.display().to_string());
    args.push("--socket-dir".into());
    args.push(c.socket_dir().display().to_string());
    for m in maps {
        args.push("--tablespace-map".into());
        args.push(m.clone());
    }
    Restored::from_json(c.pitr.json_within(&args, Duration::from_secs(180)))
}

fn map(old: &Path, new: &Path) -> String {
    format!("{}={}", old.display(), new.display())
}

/// A copy and a command snapshot, each of a cluster with two tablespaces
/// while inserts write into tablespace two, each restored with
/// `--tablespace-map` row-exact; restoring over the originals (in use)
/// is refused before anything is written.
#[test]
fn copy_and_command_snapshots_carry_two_tablespaces_restored_where_the_map_says() {
    copy_and_command_scenario(Cluster::new());
}

#[test]
fn copy_and_command_snapshots_of_pg17_carry_two_tablespaces() {
    copy_and_command_scenario(Cluster::of_major(17));
}

fn copy_and_command_scenario(c: Cluster) {
    let (one, two) = two_tablespaces(&c);
    let (oid_one, oid_two) = (oid_of(&c, "one"), oid_of(&c, "two"));

    // The command provider refuses tablespaces its snapshot may not
    // cover, before the create command runs.
    let cmd_dir = c.path_of("cmd-snaps");
    let create = format!(
        "set -e; d={dir}/$PITR_SNAPSHOT_ID; mkdir -p $d/data $d/ts; cd \"$PITR_PGDATA\"; \
         for f in *; do [ \"$f\" = pg_wal ] || cp -a \"$f\" $d/data/; done; \
         mkdir -p $d/data/pg_wal/archive_status; \
         printf '%s' \"$PITR_TABLESPACES\" | while IFS='=' read -r oid path; do cp -a \"$path\" \"$d/ts/$oid\"; done; \
         echo $d",
        dir = cmd_dir.display()
    );
    let restore_cmd = "set -e; cp -a \"$PITR_SNAPSHOT_HANDLE/data/.\" \"$PITR_TARGET_PGDATA\"; \
         printf '%s' \"$PITR_TABLESPACES\" | while IFS='=' read -r oid path; do \
         cp -a \"$PITR_SNAPSHOT_HANDLE/ts/$oid/.\" \"$path\"; done";
    let delete = "rm -rf \"$PITR_SNAPSHOT_HANDLE\"";
    let command_args = |covers: bool| {
        let mut a = vec![
            "snapshot",
            "--pgdata",
            c.pgdata_str(),
            "--provider",
            "command",
            "--create-command",
            &create,
            "--restore-command",
            restore_cmd,
            "--delete-command",
            delete,
        ];
        if covers {
            a.push("--covers-tablespaces");
        }
        a
    };
    let (code, err) = c.pitr.fails(&command_args(false));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--covers-tablespaces"), "{err}");
    assert!(err.contains(&one.display().to_string()), "{err}");
    assert!(!cmd_dir.exists(), "the create command ran");

    // Inserts into tablespace two while both snapshots are taken.
    let load = writes_into_two(&c, 8);
    let snaps = c.path_of("snaps");
    let copy = c.pitr.json(&[
        "snapshot",
        "--pgdata",
        c.pgdata_str(),
        "--provider",
        "copy",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
    ]);
    let command = c.pitr.json(&command_args(true));
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy_id = copy["id"].as_str().unwrap().to_string();
    let command_id = command["id"].as_str().unwrap().to_string();

    // Each record lists both tablespaces where they were, at format
    // version 4; the copy holds each under pg_tblspc/<oid>/PG_…/.
    let want_carried = vec![
        (oid_one, one.display().to_string(), None),
        (oid_two, two.display().to_string(), None),
    ];
    for id in [&copy_id, &command_id] {
        let rec = record(&c, id);
        assert_eq!(rec["format_version"], 4, "{rec:#}");
        assert_eq!(carried(&rec), want_carried, "{rec:#}");
    }
    let handle = PathBuf::from(copy["handle"].as_str().unwrap());
    let major: u32 = c
        .psql("show server_version_num")
        .trim()
        .parse::<u32>()
        .unwrap()
        / 10000;
    for oid in [oid_one, oid_two] {
        let inner = names_in(&handle.join(format!("pg_tblspc/{oid}")));
        assert!(
            inner.len() == 1 && inner[0].starts_with(&format!("PG_{major}_")),
            "{oid}: {inner:?}"
        );
    }

    insert_rows(&c, 4, 8);
    let to = midpoint(&c, 6, 7);
    let want_t = ids_until(|q| c.psql(q), "t", &to);
    let want_u = ids_until(|q| c.psql(q), "u", &to);
    assert_eq!(want_t, "1,2,3,4,5,6");
    assert_eq!(want_u, want_t);
    // Every insert into w ended before row 4.
    let want_w = c.psql("select count(*), sum(v) from w").trim().to_string();
    c.switch_and_archive();

    // Over the originals (in use, so not empty): refused before anything
    // is written; the directory restore made for it goes again.
    let refused = c.path_of("refused");
    let (code, err) = {
        let _a = Aside::new(&c, &command_id);
        c.restore_fails("restore", "refused", &["--to", &to])
    };
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tablespace-map"), "{err}");
    assert!(
        err.contains(&one.display().to_string()) || err.contains(&two.display().to_string()),
        "{err}"
    );
    assert!(!refused.exists(), "the refused restore left {refused:?}");

    for (id, other, name) in [
        (&copy_id, &command_id, "copy"),
        (&command_id, &copy_id, "command"),
    ] {
        let _a = Aside::new(&c, other);
        let plan = c.pitr.json(&["plan", "--to", &to]);
        assert_eq!(plan["backup"]["id"].as_str(), Some(id.as_str()), "{plan:#}");
        assert_eq!(plan["backup"]["start"]["kind"], "snapshot", "{plan:#}");
        let new_one = c.path_of(&format!("{name}-ts one"));
        let new_two = c.path_of(&format!("{name}-ts2"));
        let r = restore(
            &c,
            &to,
            &c.path_of(&format!("from-{name}")),
            &[map(&one, &new_one), map(&two, &new_two)],
        );
        assert_eq!(r.out["backup_id"].as_str(), Some(id.as_str()));
        assert_eq!(ids_until(|q| r.psql(q), "t", "infinity"), want_t, "{name}");
        assert_eq!(ids_until(|q| r.psql(q), "u", "infinity"), want_u, "{name}");
        assert_eq!(
            r.psql("select count(*), sum(v) from w").trim(),
            want_w,
            "{name}"
        );
        // The index in tablespace one answers for the table in two.
        assert_eq!(
            r.psql("set enable_seqscan = off; select count(*) from u where id = 3")
                .lines()
                .last()
                .unwrap()
                .trim(),
            "1"
        );
        assert_eq!(
            location(|q| r.psql(q), "one"),
            new_one.display().to_string()
        );
        assert_eq!(
            location(|q| r.psql(q), "two"),
            new_two.display().to_string()
        );
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        for d in [&new_one, &new_two] {
            let m = std::fs::metadata(d).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o700, "{}", d.display());
            if is_root() {
                let pg = std::fs::metadata(&c.pgdata).unwrap();
                assert_eq!(m.uid(), pg.uid(), "{}", d.display());
            }
        }
    }
    // The originals are untouched and still the source's.
    assert_eq!(location(|q| c.psql(q), "one"), one.display().to_string());
    assert_eq!(ids_until(|q| c.psql(q), "t", "infinity"), "1,2,3,4,5,6,7,8");
}

/// Whether `path` is the root of a btrfs subvolume (btrfs_tree.h:
/// BTRFS_FIRST_FREE_OBJECTID).
fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.ino() == 256)
}

/// On btrfs, a tablespace on its own subvolume: refusals first (a
/// tablespace in a plain directory, one on another btrfs filesystem,
/// `--atomic`), then a bracketed
/// snapshot while pgbench writes into the tablespace, restored row-exact
/// with the tablespace mapped to a new subvolume; a map off the
/// snapshot's filesystem is refused before anything is written; a run
/// that fails after its snapshots deletes them all, and so does expire.
#[test]
fn btrfs_snapshot_of_a_tablespace_on_its_own_subvolume_restores_row_exact() {
    let Some(fs) = Btrfs::mount() else { return };
    let c = Cluster::in_pgdata(PG_BIN, fs.subvolume("data"));
    let ts = fs.subvolume("ts");
    let snaps = fs.mnt.join(".pitr-snapshots");
    c.psql(&format!(
        "create tablespace one location '{}'",
        ts.display()
    ));
    c.psql("create table t(id int primary key, ts timestamptz not null default clock_timestamp())");
    c.psql(
        "create table u(id int, ts timestamptz not null default clock_timestamp()) tablespace one",
    );
    let oid = oid_of(&c, "one");

    // A tablespace in a plain directory: refused before anything is taken.
    let plain = fs.mnt.join("plain");
    mkdir_as_postgres(&plain);
    c.psql(&format!(
        "create tablespace plain location '{}'",
        plain.display()
    ));
    let btrfs = [
        "snapshot",
        "--pgdata",
        c.pgdata_str(),
        "--provider",
        "btrfs",
    ];
    let (code, err) = c.pitr.fails(&btrfs);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a btrfs subvolume"), "{err}");
    assert!(err.contains(&plain.display().to_string()), "{err}");
    assert!(err.contains("--provider copy"), "{err}");
    assert!(err.contains("pitr backup"), "{err}");
    assert_eq!(names_in(&snaps), Vec::<String>::new());
    c.psql("drop tablespace plain");

    // A subvolume on another btrfs filesystem than the snapshot
    // directory's: refused too (a snapshot stays on its filesystem).
    let other = Btrfs::mount().expect("a second btrfs image");
    let far = other.subvolume("far");
    c.psql(&format!(
        "create tablespace far location '{}'",
        far.display()
    ));
    let (code, err) = c.pitr.fails(&btrfs);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not on the btrfs filesystem of the snapshot directory"),
        "{err}"
    );
    assert!(err.contains(&far.display().to_string()), "{err}");
    assert_eq!(names_in(&snaps), Vec::<String>::new());
    c.psql("drop tablespace far");

    // --atomic with tablespaces: several snapshots are no one image.
    let mut atomic = btrfs.to_vec();
    let conninfo = conn(&c);
    atomic.extend(["--atomic", "--conn", &conninfo]);
    let (code, err) = c.pitr.fails(&atomic);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--atomic with tablespaces"), "{err}");
    assert_eq!(names_in(&snaps), Vec::<String>::new());
    let info = c.pitr.json(&["info"]);
    assert_eq!(info["backups"].as_array().unwrap().len(), 0, "{info:#}");

    // pgbench's tables in the tablespace, four clients writing.
    insert_rows(&c, 1, 2);
    let init = c
        .pgbench(&[
            "-i",
            "-s",
            "2",
            "-q",
            "--tablespace=one",
            "--index-tablespace=one",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let load = c
        .pgbench(&["-n", "-c", "4", "-j", "2", "-T", "8"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let snap = c.pitr.json(&btrfs);
    assert_eq!(snap["consistency"], "bracketed", "{snap:#}");
    let id = snap["id"].as_str().unwrap().to_string();
    let rec = record(&c, &id);
    assert_eq!(rec["format_version"], 4, "{rec:#}");
    let ts_handle = snaps.join(format!("{id}.tablespace-{oid}"));
    assert_eq!(
        carried(&rec),
        vec![(
            oid,
            ts.display().to_string(),
            Some(ts_handle.display().to_string())
        )],
        "{rec:#}"
    );
    assert!(is_subvolume(&ts_handle));
    let inner = names_in(&ts_handle);
    assert!(
        inner.len() == 1 && inner[0].starts_with("PG_15_"),
        "{inner:?}"
    );
    assert!(load.wait_with_output().unwrap().status.success());
    insert_rows(&c, 3, 6);
    let to = midpoint(&c, 4, 5);
    let want_t = ids_until(|q| c.psql(q), "t", &to);
    let want_u = ids_until(|q| c.psql(q), "u", &to);
    assert_eq!(want_t, "1,2,3,4");
    assert_eq!(want_u, want_t);
    let want_bank = bank(|q| c.psql(q));
    c.switch_and_archive();

    // Mapped off the snapshot's filesystem (another btrfs, or none):
    // refused before anything is written.
    for (target, says) in [
        (
            other.mnt.join("ts"),
            "is not on the btrfs filesystem that holds snapshot",
        ),
        (c.path_of("ts-on-tmp"), "is not on a btrfs filesystem"),
    ] {
        let pgdata = fs.mnt.join("refused");
        let (code, err) = c.pitr.fails(&[
            "restore",
            "--to",
            &to,
            "--pgdata",
            pgdata.to_str().unwrap(),
            "--socket-dir",
            c.socket_dir().to_str().unwrap(),
            "--tablespace-map",
            &map(&ts, &target),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!pgdata.exists(), "the refused restore left {pgdata:?}");
        assert_eq!(names_in(&target), Vec::<String>::new(), "{target:?}");
    }

    let new_ts = fs.mnt.join("restored-ts");
    let r = restore(&c, &to, &fs.mnt.join("restored"), &[map(&ts, &new_ts)]);
    assert_eq!(r.out["backup_id"].as_str(), Some(id.as_str()));
    assert_eq!(ids_until(|q| r.psql(q), "t", "infinity"), want_t);
    assert_eq!(ids_until(|q| r.psql(q), "u", "infinity"), want_u);
    assert_eq!(bank(|q| r.psql(q)), want_bank);
    assert_eq!(location(|q| r.psql(q), "one"), new_ts.display().to_string());
    assert!(is_subvolume(&new_ts), "the tablespace is a clone");
    drop(r);

    // A run that fails after its snapshots were made (archiving broken)
    // deletes the data directory's and the tablespace's.
    c.psql("alter system set archive_command = 'false'");
    c.psql("select pg_reload_conf()");
    let mut failing = btrfs.to_vec();
    failing.extend(["--archive-timeout", "2"]);
    let (code, err) = c.pitr.fails(&failing);
    assert_eq!(code, 8, "{err}");
    assert_eq!(
        names_in(&snaps),
        vec![id.clone(), format!("{id}.tablespace-{oid}")],
        "the failed run's subvolumes are still there"
    );
    c.psql("alter system reset archive_command");
    c.psql("select pg_reload_conf()");

    // Expired (two full backups taken since, the window beginning
    // between them), the snapshot goes with its tablespace's, deleted by
    // the repository's owner, which pitr becomes.
    let anchor = c.backup();
    std::thread::sleep(Duration::from_secs(2));
    c.backup();
    let stop: chrono::DateTime<chrono::Utc> =
        anchor["stop_time"].as_str().unwrap().parse().unwrap();
    let window = format!(
        "{}ms",
        (chrono::Utc::now() - stop).num_milliseconds() - 1000
    );
    let r = c.pitr.json(&["expire", "--keep-window", &window]);
    let gone: Vec<&str> = r["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert!(gone.contains(&id.as_str()), "{r:#}");
    assert_eq!(r["snapshots_left"], serde_json::json!([]), "{r:#}");
    assert_eq!(names_in(&snaps), Vec::<String>::new());
}
