//! Issue 13 part 2, `pitr snapshot`, against real PostgreSQL (15 and 17)
//! and a real btrfs filesystem (a loop-mounted image): snapshots taken
//! while pgbench writes on four clients, bracketed and atomic, by the
//! btrfs, copy and command providers, each restored to a time after it
//! with exactly the source's rows; an atomic snapshot never serves a
//! target before the end of WAL it was consistent at; and what `snapshot`
//! refuses, and what a failed run leaves (nothing listed, nothing kept).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::*;
use crate::{ids_until, insert_rows, midpoint};

/// A 1 GiB btrfs image loop-mounted (with `user_subvol_rm_allowed`, so
/// the postgres user pitr becomes can delete its subvolumes) in a temp
/// dir; unmounted on drop, which also detaches its loop device.
pub(crate) struct Btrfs {
    _dir: tempfile::TempDir,
    pub(crate) mnt: PathBuf,
}

impl Btrfs {
    /// None (and a loud note) when not root: only root can loop-mount.
    pub(crate) fn mount() -> Option<Btrfs> {
        if !is_root() {
            eprintln!("SKIPPED: the btrfs snapshot tests need root to loop-mount a btrfs image");
            return None;
        }
        let dir = shared_tempdir();
        let img = dir.path().join("btrfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut c = Command::new("truncate");
        c.args(["-s", "1G"]).arg(&img);
        run_ok(c);
        let mut c = Command::new("mkfs.btrfs");
        c.arg("-q").arg(&img);
        run_ok(c);
        let mut c = Command::new("mount");
        c.args(["-o", "loop,user_subvol_rm_allowed"])
            .arg(&img)
            .arg(&mnt);
        run_ok(c);
        std::fs::set_permissions(&mnt, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        Some(Btrfs { _dir: dir, mnt })
    }

    /// A new subvolume `<mnt>/<name>`, the postgres user's.
    pub(crate) fn subvolume(&self, name: &str) -> PathBuf {
        let path = self.mnt.join(name);
        let mut c = Command::new("btrfs");
        c.args(["subvolume", "create"]).arg(&path);
        run_ok(c);
        let mut c = Command::new("chown");
        c.arg("postgres:postgres").arg(&path);
        run_ok(c);
        path
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// pgbench's tables initialized, then four clients writing for `secs`.
fn busy(c: &Cluster, secs: u64) -> Child {
    let init = c.pgbench(&["-i", "-s", "2", "-q"]).output().unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    c.pgbench(&["-n", "-c", "4", "-j", "2", "-T", &secs.to_string()])
        .spawn()
        .unwrap()
}

pub(crate) fn bank(psql: impl Fn(&str) -> String) -> String {
    psql("select count(*), sum(abalance), (select count(*) from pgbench_history) from pgbench_accounts")
        .trim()
        .to_string()
}

pub(crate) fn conn(c: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        c.socket_dir().display(),
        c.port
    )
}

/// Sets a start point's record aside (the planner cannot see it) and
/// back: how a test makes the plan use one particular start point.
pub(crate) struct Aside {
    record: PathBuf,
    kept: PathBuf,
}

impl Aside {
    pub(crate) fn new(c: &Cluster, id: &str) -> Aside {
        let record = c.pitr.repo.join(format!("catalog/backups/{id}.json"));
        let kept = c.dir.path().join(format!("{id}.json.aside"));
        std::fs::rename(&record, &kept).unwrap();
        Aside { record, kept }
    }
}

impl Drop for Aside {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.kept, &self.record);
    }
}

/// Restores to `t` into `pgdata` from start point `id` (every other set
/// aside by the caller): the plan names it as a snapshot (or a full
/// backup), the restore reports it, and the rows are the source's.
fn restore_from(
    c: &Cluster,
    id: &str,
    kind: &str,
    t: &str,
    pgdata: &Path,
    want: &str,
    want_bank: &str,
) -> f64 {
    let plan = c.pitr.json(&["plan", "--to", t]);
    assert_eq!(plan["backup"]["id"].as_str(), Some(id), "{plan:#}");
    assert_eq!(plan["backup"]["start"]["kind"], kind, "{plan:#}");
    let out = c.pitr.json_within(
        &strs_owned(&[
            "restore",
            "--to",
            t,
            "--pgdata",
            pgdata.to_str().unwrap(),
            "--socket-dir",
            c.socket_dir().to_str().unwrap(),
        ]),
        Duration::from_secs(180),
    );
    let r = Restored::from_json(out);
    assert_eq!(r.out["backup_id"].as_str(), Some(id));
    assert_eq!(r.rows(), want, "rows restored from {id}");
    assert_eq!(bank(|q| r.psql(q)), want_bank, "pgbench restored from {id}");
    assert_eq!(r.psql("select pg_is_in_recovery()").trim(), "f");
    r.out["elapsed_seconds"].as_f64().unwrap()
}

fn strs_owned(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `X/Y` as a number, to compare LSNs.
fn lsn(v: &serde_json::Value) -> u64 {
    let s = v.as_str().expect("an LSN");
    let (hi, lo) = s.split_once('/').expect("X/Y");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// On btrfs: a bracketed and an atomic snapshot taken while pgbench
/// writes (and, with `backup`, a full backup beside them, for the
/// timing), each restored to a time after it with exactly the source's
/// rows; a target before the atomic snapshot's stop_lsn is refused.
fn btrfs_scenario(bin: &str, with_backup: bool) {
    let Some(fs) = Btrfs::mount() else { return };
    let c = Cluster::in_pgdata(bin, fs.subvolume("data"));
    c.create_table();
    insert_rows(&c, 1, 2);
    let load = busy(&c, 10);
    std::thread::sleep(Duration::from_secs(2));
    let bracketed = c.pitr.json(&[
        "snapshot",
        "--pgdata",
        c.pgdata_str(),
        "--provider",
        "btrfs",
    ]);
    assert_eq!(bracketed["provider"], "btrfs", "{bracketed:#}");
    assert_eq!(bracketed["consistency"], "bracketed", "{bracketed:#}");
    let handle = PathBuf::from(bracketed["handle"].as_str().unwrap());
    assert_eq!(
        handle.parent(),
        Some(fs.mnt.join(".pitr-snapshots").as_path())
    );
    assert!(handle.join("global/pg_control").is_file());
    let atomic = c.pitr.json(&[
        "snapshot",
        "--pgdata",
        c.pgdata_str(),
        "--provider",
        "btrfs",
        "--atomic",
        "--conn",
        &conn(&c),
    ]);
    assert_eq!(atomic["consistency"], "atomic", "{atomic:#}");
    assert!(
        lsn(&atomic["start_lsn"]) < lsn(&atomic["stop_lsn"]),
        "{atomic:#}"
    );
    eprintln!(
        "PG {bin}: btrfs snapshot seconds: bracketed {} (snapshot itself {}), atomic {} (snapshot itself {})",
        bracketed["seconds"], bracketed["snapshot_seconds"], atomic["seconds"], atomic["snapshot_seconds"]
    );
    // A btrfs snapshot is cloned back only onto btrfs: refused before
    // anything is written, and the directory restore made for it goes.
    let elsewhere = c.path_of("not-on-btrfs");
    let (code, err) = c.pitr.fails(&[
        "restore",
        "--latest",
        "--pgdata",
        elsewhere.to_str().unwrap(),
        "--socket-dir",
        c.socket_dir().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not on a btrfs filesystem"), "{err}");
    assert!(
        !elsewhere.exists(),
        "the refused restore left {elsewhere:?}"
    );
    let full = with_backup.then(|| c.backup());
    assert!(load.wait_with_output().unwrap().status.success());
    insert_rows(&c, 3, 6);
    let t = midpoint(&c, 4, 5);
    let want = ids_until(&c, &t);
    assert_eq!(want, "1,2,3,4");
    let want_bank = bank(|q| c.psql(q));
    c.switch_and_archive();

    let info = c.pitr.json(&["info"]);
    let kinds: Vec<(String, String)> = info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"]["kind"].as_str().unwrap_or("full").to_string(),
                b["start"]["consistency"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("snapshot".into(), "bracketed".into())),
        "{info:#}"
    );
    assert!(
        kinds.contains(&("snapshot".into(), "atomic".into())),
        "{info:#}"
    );
    let text = c.pitr.ok(&["info"]);
    assert!(text.contains("snapshot (btrfs, atomic)"), "{text}");

    let ids = [
        bracketed["id"].as_str().unwrap().to_string(),
        atomic["id"].as_str().unwrap().to_string(),
    ];
    let full_id = full.as_ref().map(|b| b["id"].as_str().unwrap().to_string());
    let mut timings = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let _aside: Vec<Aside> = ids
            .iter()
            .filter(|o| *o != id)
            .chain(full_id.iter())
            .map(|o| Aside::new(&c, o))
            .collect();
        let secs = restore_from(
            &c,
            id,
            "snapshot",
            &t,
            &fs.mnt.join(format!("restored-{i}")),
            &want,
            &want_bank,
        );
        timings.push(secs);
    }
    if let Some(full_id) = &full_id {
        let _aside: Vec<Aside> = ids.iter().map(|o| Aside::new(&c, o)).collect();
        let secs = restore_from(
            &c,
            full_id,
            "full",
            &t,
            &c.path_of("from-full"),
            &want,
            &want_bank,
        );
        eprintln!(
            "PG {bin}: restore seconds: from the bracketed snapshot {:.2}, from the atomic snapshot {:.2}, from a full backup of the same data {secs:.2}",
            timings[0], timings[1]
        );
    }

    // The atomic snapshot is consistent only at its stop_lsn: a target
    // before it (its own checkpoint's redo point) has no start point.
    let _aside: Vec<Aside> = std::iter::once(&ids[0])
        .chain(full_id.iter())
        .map(|o| Aside::new(&c, o))
        .collect();
    let before = atomic["start_lsn"].as_str().unwrap();
    let (code, err) = c.pitr.fails(&["plan", "--lsn", before]);
    assert_ne!(code, 0, "{err}");
    let after = c.pitr.json(&["plan", "--to", &t]);
    assert_eq!(after["backup"]["id"].as_str(), Some(ids[1].as_str()));

    // A run that fails after its subvolume snapshot was made (archiving
    // broken: the stop segment never arrives) deletes it, as the postgres
    // user pitr became, and lists nothing.
    if with_backup {
        c.psql("alter system set archive_command = 'false'");
        c.psql("select pg_reload_conf()");
        let (code, err) = c.pitr.fails(&[
            "snapshot",
            "--pgdata",
            c.pgdata_str(),
            "--provider",
            "btrfs",
            "--archive-timeout",
            "2",
        ]);
        assert_eq!(code, 8, "{err}");
        let mut kept: Vec<String> = std::fs::read_dir(fs.mnt.join(".pitr-snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            ids.to_vec(),
            "the failed run's subvolume is still there"
        );
        c.psql("alter system reset archive_command");
        c.psql("select pg_reload_conf()");
    }
}

#[test]
fn btrfs_snapshots_of_a_busy_pg15_restore_row_exact() {
    btrfs_scenario(PG_BIN, true);
}

#[test]
fn btrfs_snapshots_of_a_busy_pg17_restore_row_exact() {
    btrfs_scenario(&major_bin(17), false);
}

/// The copy and command providers (no btrfs needed): bracketed snapshots
/// taken while pgbench writes restore to a later time row-exact; the
/// command provider's commands are in the catalog, so the restore needs
/// no flags.
#[test]
fn copy_and_command_snapshots_restore_row_exact() {
    let c = Cluster::new();
    c.create_table();
    insert_rows(&c, 1, 2);
    let load = busy(&c, 8);
    std::thread::sleep(Duration::from_secs(2));
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
    assert_eq!(copy["provider"], "copy");
    assert_eq!(copy["consistency"], "bracketed");
    let handle = PathBuf::from(copy["handle"].as_str().unwrap());
    assert!(handle.starts_with(&snaps) && handle.join("PG_VERSION").is_file());
    // A copy holds what a base backup holds: no WAL, no postmaster.pid.
    assert!(!handle.join("postmaster.pid").exists());
    assert_eq!(
        std::fs::read_dir(handle.join("pg_wal"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count(),
        0
    );

    // An operator's commands: here a copy by shell (a volume system's
    // snapshot in real life; docs/commands.md has LVM, ZFS and EBS).
    let cmd_dir = c.path_of("cmd-snaps");
    let create = format!(
        "set -e; d={dir}/$PITR_SNAPSHOT_ID; mkdir -p $d; cd \"$PITR_PGDATA\"; \
         for f in *; do [ \"$f\" = pg_wal ] || cp -a \"$f\" $d/; done; \
         mkdir -p $d/pg_wal/archive_status; echo created; echo $d",
        dir = cmd_dir.display()
    );
    let restore = "cp -a \"$PITR_SNAPSHOT_HANDLE/.\" \"$PITR_TARGET_PGDATA\"";
    let delete = "rm -rf \"$PITR_SNAPSHOT_HANDLE\"";
    let command = c.pitr.json(&[
        "snapshot",
        "--pgdata",
        c.pgdata_str(),
        "--provider",
        "command",
        "--create-command",
        &create,
        "--restore-command",
        restore,
        "--delete-command",
        delete,
    ]);
    assert_eq!(command["provider"], "command");
    let id = command["id"].as_str().unwrap().to_string();
    assert_eq!(
        command["handle"].as_str(),
        Some(cmd_dir.join(&id).to_str().unwrap()),
        "the handle is the create command's last line"
    );
    assert!(load.wait_with_output().unwrap().status.success());
    insert_rows(&c, 3, 6);
    let t = midpoint(&c, 4, 5);
    let want = ids_until(&c, &t);
    assert_eq!(want, "1,2,3,4");
    let want_bank = bank(|q| c.psql(q));
    c.switch_and_archive();

    // The record (format version 3) keeps the commands.
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(c.pitr.repo.join(format!("catalog/backups/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["format_version"], 3);
    assert_eq!(rec["body"]["start"]["commands"]["restore"], restore);
    assert_eq!(rec["body"]["stored_bytes"], 0);

    let copy_id = copy["id"].as_str().unwrap().to_string();
    {
        let _a = Aside::new(&c, &id);
        restore_from(
            &c,
            &copy_id,
            "snapshot",
            &t,
            &c.path_of("from-copy"),
            &want,
            &want_bank,
        );
    }
    {
        let _a = Aside::new(&c, &copy_id);
        restore_from(
            &c,
            &id,
            "snapshot",
            &t,
            &c.path_of("from-command"),
            &want,
            &want_bank,
        );
    }
}

/// What `snapshot` refuses before anything is taken, and a run that
/// fails after its snapshot was made: the snapshot is deleted and
/// nothing is listed.
#[test]
fn snapshot_refusals_and_a_failed_run_leave_nothing() {
    let c = Cluster::new();
    let pg = c.pgdata_str();
    let (code, err) = c.pitr.fails(&[
        "snapshot",
        "--pgdata",
        pg,
        "--provider",
        "copy",
        "--atomic",
        "--conn",
        &conn(&c),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("copy provider cannot take an atomic snapshot"),
        "{err}"
    );

    let (code, err) = c.pitr.fails(&[
        "snapshot",
        "--pgdata",
        pg,
        "--provider",
        "btrfs",
        "--atomic",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--atomic needs --conn"), "{err}");

    // /tmp is no btrfs subvolume.
    let (code, err) = c
        .pitr
        .fails(&["snapshot", "--pgdata", pg, "--provider", "btrfs"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a btrfs subvolume"), "{err}");

    let (code, err) = c.pitr.fails(&[
        "snapshot",
        "--pgdata",
        pg,
        "--provider",
        "command",
        "--create-command",
        "echo x",
        "--delete-command",
        "true",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs --restore-command"), "{err}");

    // A create command that fails: reported with its stderr.
    let (code, err) = c.pitr.fails(&[
        "snapshot",
        "--pgdata",
        pg,
        "--provider",
        "command",
        "--create-command",
        "echo no volume here >&2; exit 3",
        "--restore-command",
        "true",
        "--delete-command",
        "true",
    ]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("no volume here"), "{err}");

    // Archiving broken: the stop segment never arrives, so the run fails
    // after its copy was made, and deletes it.
    c.psql("alter system set archive_command = 'false'");
    c.psql("select pg_reload_conf()");
    let snaps = c.path_of("snaps");
    let (code, err) = c.pitr.fails(&[
        "snapshot",
        "--pgdata",
        pg,
        "--provider",
        "copy",
        "--snapshot-dir",
        snaps.to_str().unwrap(),
        "--archive-timeout",
        "2",
    ]);
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("did not reach this repository"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&snaps).unwrap().collect();
    assert!(
        left.is_empty(),
        "the failed run's copy is still there: {left:?}"
    );

    c.psql("alter system reset archive_command");
    c.psql("select pg_reload_conf()");
    let info = c.pitr.json(&["info"]);
    assert_eq!(info["backups"].as_array().unwrap().len(), 0, "{info:#}");
    let claims = c.pitr.repo.join("claims");
    let claims: Vec<_> = std::fs::read_dir(&claims)
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(claims.is_empty(), "claims left: {claims:?}");
}
