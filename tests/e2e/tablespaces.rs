//! Issue 13, part 6: a cluster with tablespaces is protected. A backup (full,
//! and an incremental on it)
//! carries every tablespace (taken while pgbench writes into one of them);
//! a restore to a time after it puts each where `--tablespace-map OLD=NEW`
//! says, with exactly the source's rows in every tablespace, and the
//! restored server's `pg_tablespace_location()` shows the new places. A
//! restore without a map, while the original directories are in use (not
//! empty), is refused before anything is fetched, naming the directory
//! and the flag; with the originals gone (the source stopped, its
//! directories moved away) a restore without a map puts them back there.

use std::path::{Path, PathBuf};

use crate::harness::*;

/// Ids of table `table`, in order, comma-separated, up to time `to`.
pub(crate) fn ids_until(psql: impl Fn(&str) -> String, table: &str, to: &str) -> String {
    psql(&format!(
        "select coalesce(string_agg(id::text, ',' order by id), '') from {table} where ts <= '{to}'"
    ))
    .trim()
    .to_string()
}

pub(crate) fn mkdir_as_postgres(dir: &Path) {
    let mut c = as_postgres("mkdir");
    c.arg("-p").arg(dir);
    run_ok(c);
}

/// Inserts rows `from..=to` into `t` (tablespace one) and `u` (two), one
/// transaction per row, ~200 ms apart.
pub(crate) fn insert_rows(c: &Cluster, from: i32, to: i32) {
    for i in from..=to {
        c.psql(&format!(
            "select pg_sleep(0.2); insert into t(id) values ({i}); insert into u(id) values ({i})"
        ));
    }
}

#[test]
fn tablespaces_are_backed_up_and_restored_where_the_map_says() {
    scenario(Cluster::new());
}

/// The same on PostgreSQL 17 (another catalog version directory).
#[test]
fn tablespaces_on_pg17_are_backed_up_and_restored_where_the_map_says() {
    scenario(Cluster::of_major(17));
}

/// The scenarios' cluster layout: tablespaces `one` (at `<dir>/ts one`:
/// a path with a space, so the map's escaping is exercised end to end)
/// and `two` (`<dir>/ts2`); `t(id, ts)` in one, `u(id, ts)` in two with
/// its index in one, `w(id, v)` in two for pgbench to write into; rows
/// 1..=3 in `t` and `u`. Returns the two directories.
pub(crate) fn two_tablespaces(c: &Cluster) -> (PathBuf, PathBuf) {
    let one = c.path_of("ts one");
    let two = c.path_of("ts2");
    mkdir_as_postgres(&one);
    mkdir_as_postgres(&two);
    c.psql(&format!(
        "create tablespace one location '{}'",
        one.display()
    ));
    c.psql(&format!(
        "create tablespace two location '{}'",
        two.display()
    ));
    c.psql(
        "create table t(id int primary key, ts timestamptz not null default clock_timestamp()) tablespace one",
    );
    c.psql(
        "create table u(id int, ts timestamptz not null default clock_timestamp()) tablespace two",
    );
    c.psql("create index u_id on u(id) tablespace one");
    c.psql("create table w(id serial primary key, v int) tablespace two");
    insert_rows(c, 1, 3);
    (one, two)
}

/// pgbench (three clients, `secs` seconds) inserting into `w`, in
/// tablespace two, running for a second already when this returns.
pub(crate) fn writes_into_two(c: &Cluster, secs: u32) -> std::process::Child {
    let script = c.path_of("w.sql");
    std::fs::write(
        &script,
        "\\set n random(1, 1000000)\ninsert into w(v) values (:n);\n",
    )
    .unwrap();
    let load = c
        .pgbench(&[
            "-n",
            "-c",
            "3",
            "-T",
            &secs.to_string(),
            "-f",
            script.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    load
}

fn scenario(c: Cluster) {
    let (one, two) = two_tablespaces(&c);

    // pgbench-like writes into tablespace two while the backup copies.
    let load = writes_into_two(&c, 6);
    let b = c
        .pitr
        .json(&["backup", "--pgdata", c.pgdata_str(), "--jobs", "1"]);
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The backup carries both tablespaces' files and where they were.
    let id = b["id"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.pitr.repo.join(format!("backups/{id}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let map = manifest["body"]["tablespace_map"].as_str().unwrap();
    assert!(map.contains(&format!(" {}\n", one.display())), "{map:?}");
    assert!(map.contains(&format!(" {}\n", two.display())), "{map:?}");
    let files = manifest["body"]["files"].as_array().unwrap();
    let in_tblspc = files
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("pg_tblspc/") && f["kind"] == "file")
        .count();
    assert!(
        in_tblspc >= 4,
        "{in_tblspc} tablespace files in the manifest"
    );

    insert_rows(&c, 4, 8);
    let to = c
        .psql("select x.ts + (y.ts - x.ts) / 2 from t x, t y where x.id = 6 and y.id = 7")
        .trim()
        .to_string();
    let want_t = ids_until(|q| c.psql(q), "t", &to);
    let want_u = ids_until(|q| c.psql(q), "u", &to);
    assert_eq!(want_t, "1,2,3,4,5,6");
    assert_eq!(want_u, want_t);
    let want_w = c.psql("select count(*), sum(v) from w").trim().to_string();
    c.switch_and_archive();

    // Without a map the originals (in use, so not empty) are refused,
    // before anything is fetched: nothing is left where it would go.
    let (code, err) = c.restore_fails("restore", "refused", &["--to", &to]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tablespace-map"), "{err}");
    assert!(
        err.contains(&one.display().to_string()) || err.contains(&two.display().to_string()),
        "{err}"
    );
    assert!(!c.path_of("refused").join("base").exists());

    let new_one = c.path_of("restored-ts one");
    let new_two = c.path_of("restored-ts2");
    let map_one = format!("{}={}", one.display(), new_one.display());
    let map_two = format!("{}={}", two.display(), new_two.display());
    let r = c.restore_to(
        "restore",
        "restored",
        &[
            "--to",
            &to,
            "--tablespace-map",
            &map_one,
            "--tablespace-map",
            &map_two,
        ],
    );
    assert_eq!(r.out["backup_id"], b["id"], "{:#}", r.out);
    assert_eq!(ids_until(|q| r.psql(q), "t", "infinity"), want_t);
    assert_eq!(ids_until(|q| r.psql(q), "u", "infinity"), want_u);
    assert_eq!(r.psql("select count(*), sum(v) from w").trim(), want_w);
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
        r.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'one'")
            .trim(),
        new_one.display().to_string()
    );
    assert_eq!(
        r.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'two'")
            .trim(),
        new_two.display().to_string()
    );
    // The originals are untouched and still the source's.
    assert_eq!(
        c.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'one'")
            .trim(),
        one.display().to_string()
    );
    // The new directories belong to the server's user, 0700.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for d in [&new_one, &new_two] {
        let m = std::fs::metadata(d).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{}", d.display());
        if is_root() {
            let pg = std::fs::metadata(&c.pgdata).unwrap();
            assert_eq!(m.uid(), pg.uid(), "{}", d.display());
        }
    }
    drop(r);

    // An incremental carries the tablespaces too: its changed blocks in
    // both, restored through its chain where the map says.
    let inc = c.pitr.json(&[
        "backup",
        "--pgdata",
        c.pgdata_str(),
        "--incremental",
        "--jobs",
        "1",
    ]);
    assert_eq!(inc["kind"], "incremental", "{inc:#}");
    let inc_id = inc["id"].as_str().unwrap().to_string();
    insert_rows(&c, 9, 10);
    let to2 = c
        .psql("select x.ts + (y.ts - x.ts) / 2 from t x, t y where x.id = 9 and y.id = 10")
        .trim()
        .to_string();
    let want_t2 = ids_until(|q| c.psql(q), "t", &to2);
    assert_eq!(want_t2, "1,2,3,4,5,6,7,8,9");
    c.switch_and_archive();
    let inc_one = c.path_of("incr-ts one");
    let inc_two = c.path_of("incr-ts2");
    let map_one = format!("{}={}", one.display(), inc_one.display());
    let map_two = format!("{}={}", two.display(), inc_two.display());
    let ri = c.restore_to(
        "restore",
        "from-incremental",
        &[
            "--to",
            &to2,
            "--from",
            &inc_id,
            "--tablespace-map",
            &map_one,
            "--tablespace-map",
            &map_two,
        ],
    );
    assert_eq!(ri.out["backup_id"].as_str(), Some(inc_id.as_str()));
    assert_eq!(ids_until(|q| ri.psql(q), "t", "infinity"), want_t2);
    assert_eq!(ids_until(|q| ri.psql(q), "u", "infinity"), want_t2);
    assert_eq!(
        ri.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'two'")
            .trim(),
        inc_two.display().to_string()
    );
    drop(ri);

    // Where they were: with the source stopped and its tablespace
    // directories moved away (a lost machine), a restore without a map
    // puts them back at their original paths.
    stop_server_with(&c.bin, &c.pgdata);
    std::fs::rename(&one, c.path_of("lost-one")).unwrap();
    std::fs::rename(&two, c.path_of("lost-two")).unwrap();
    let home = c.restore_to("restore", "home", &["--to", &to]);
    assert_eq!(ids_until(|q| home.psql(q), "t", "infinity"), want_t);
    assert_eq!(ids_until(|q| home.psql(q), "u", "infinity"), want_u);
    assert_eq!(home.psql("select count(*), sum(v) from w").trim(), want_w);
    assert_eq!(
        home.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'one'")
            .trim(),
        one.display().to_string()
    );
}
