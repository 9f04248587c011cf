//! Issue 13, parts 4 and 6: a backup held to `--max-rate` (it takes at
//! least size / rate and restores row-exact), and a backup copied from a
//! streaming standby while the primary brackets it (`--from-standby`),
//! under pgbench, restored to a time after it; refusals of a standby of
//! another cluster and of a primary named as the standby.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;

/// What pgbench's tables hold, as Postgres computes it.
fn bank(psql: impl Fn(&str) -> String) -> String {
    psql("select count(*), sum(abalance), (select count(*) from pgbench_history) from pgbench_accounts")
        .trim()
        .to_string()
}

/// `--max-rate` holds the whole copy to the rate: a backup of N bytes at
/// R bytes/s takes at least N / R seconds (measured around the command:
/// a lower bound, no upper one), reports the rate in `--json`, and
/// restores row-exact. Garbage and 0 are usage errors.
#[test]
fn a_backup_at_max_rate_takes_at_least_size_over_rate_and_restores() {
    max_rate_scenario(Cluster::new());
}

#[test]
fn a_backup_of_pg17_at_max_rate_takes_at_least_size_over_rate_and_restores() {
    max_rate_scenario(Cluster::of_major(17));
}

fn max_rate_scenario(c: Cluster) {
    c.create_table();
    c.psql("insert into t(id) select g from generate_series(1, 20000) g");
    c.psql("create table pad as select g, md5(g::text) as m from generate_series(1, 40000) g");
    c.switch_and_archive();

    for bad in ["0", "fast", "-1M", "5T", ""] {
        let flag = format!("--max-rate={bad}");
        let (code, err) = c.pitr.fails(&["backup", "--pgdata", c.pgdata_str(), &flag]);
        assert_eq!(code, 2, "--max-rate {bad:?}: {err}");
        assert!(err.contains("--max-rate"), "{err}");
    }

    let started = Instant::now();
    let fast = c.backup();
    let unthrottled = started.elapsed().as_secs_f64();
    assert!(fast["max_rate_bytes_per_sec"].is_null(), "{fast:#}");

    let rate: u64 = 4 << 20; // 4M
    let started = Instant::now();
    let b = c.pitr.json(&[
        "backup",
        "--pgdata",
        c.pgdata_str(),
        "--max-rate",
        "4M",
        "--jobs",
        "4",
    ]);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(b["max_rate_bytes_per_sec"].as_u64(), Some(rate), "{b:#}");
    let size = b["raw_bytes"].as_u64().unwrap();
    let floor = size as f64 / rate as f64;
    eprintln!(
        "max-rate: {size} bytes at 4 MiB/s took {elapsed:.2} s (floor {floor:.2} s); unthrottled {unthrottled:.2} s"
    );
    assert!(
        elapsed >= floor,
        "{size} bytes at {rate} B/s took {elapsed} s, less than {floor} s"
    );

    c.psql("insert into t(id) values (20001)");
    let want = rows(c.socket_dir(), c.port);
    c.switch_and_archive();
    let r = c.restore_to("restore", "restored", &["--latest"]);
    assert_eq!(r.out["backup_id"], b["id"], "{:#}", r.out);
    assert_eq!(r.rows(), want);
    assert_eq!(
        r.psql("select count(*), sum(g) from pad").trim(),
        c.psql("select count(*), sum(g) from pad").trim()
    );
}

/// A streaming standby of `c`, running on its own port; stopped on drop.
/// Made with `pg_basebackup -R` (Postgres' own tool) where the install
/// has it; the npm builds of other majors do not, so there it is `pitr
/// follow --primary-conninfo` from a backup, waited for until it streams.
struct Standby {
    bin: String,
    pgdata: PathBuf,
    port: u16,
    socket: PathBuf,
    /// The follower, when `pitr follow` made it (it stops itself).
    followed: Option<Restored>,
}

impl Standby {
    fn of(c: &Cluster, name: &str) -> Standby {
        if !Path::new(&format!("{}/pg_basebackup", c.bin)).exists() {
            return Standby::followed(c, name);
        }
        let pgdata = c.path_of(name);
        let mut bb = as_postgres(format!("{}/pg_basebackup", c.bin));
        bb.arg("-D")
            .arg(&pgdata)
            .args(["-R", "-X", "stream", "-c", "fast", "-U", "postgres", "-h"])
            .arg(c.socket_dir())
            .args(["-p", &c.port.to_string()]);
        run_ok(bb);
        let port = free_port();
        let conf = pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&format!("port = {port}\nhot_standby = on\n"));
        std::fs::write(&conf, text).unwrap();
        let mut start = as_postgres(format!("{}/pg_ctl", c.bin));
        start
            .args(["start", "-w", "-D"])
            .arg(&pgdata)
            .arg("-l")
            .arg(c.dir.path().join(format!("{name}.log")));
        run_ok(start);
        let s = Standby {
            bin: c.bin.clone(),
            pgdata,
            port,
            socket: c.socket_dir().to_path_buf(),
            followed: None,
        };
        assert_eq!(s.psql("select pg_is_in_recovery()").trim(), "t");
        s
    }

    fn followed(c: &Cluster, name: &str) -> Standby {
        c.backup();
        let f = Restored::from_json(c.restore_report(
            "follow",
            name,
            &["--primary-conninfo", &conninfo(c)],
        ));
        wait_for(
            &format!("{name} to stream"),
            Duration::from_secs(60),
            || {
                f.psql("select count(*) from pg_stat_wal_receiver where status = 'streaming'")
                    .trim()
                    == "1"
            },
        );
        Standby {
            bin: c.bin.clone(),
            pgdata: f.pgdata.clone(),
            port: f.port,
            socket: f.socket_dir.clone(),
            followed: Some(f),
        }
    }

    fn psql(&self, sql: &str) -> String {
        psql(&self.socket, self.port, sql)
    }

    fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres",
            self.socket.display(),
            self.port
        )
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if self.followed.is_none() {
            stop_server_with(&self.bin, &self.pgdata);
        }
    }
}

fn conninfo(c: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres",
        c.socket_dir().display(),
        c.port
    )
}

/// Copy from the standby, bracket on the primary: a backup whose files
/// come from a streaming standby while pgbench (four clients) writes on
/// the primary restores, to a time after it, exactly the primary's rows.
#[test]
fn a_backup_from_a_standby_under_load_restores_the_primarys_rows() {
    from_standby_scenario(Cluster::new());
}

#[test]
fn a_backup_from_a_pg17_standby_under_load_restores_the_primarys_rows() {
    from_standby_scenario(Cluster::of_major(17));
}

fn from_standby_scenario(c: Cluster) {
    let init = pgbench(c.socket_dir(), c.port, &["-i", "-s", "5", "-q"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let s = Standby::of(&c, "standby");

    let load = pgbench(
        c.socket_dir(),
        c.port,
        &["-n", "-c", "4", "-j", "2", "-T", "10"],
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let b = c.pitr.json(&[
        "backup",
        "--pgdata",
        s.pgdata.to_str().unwrap(),
        "--conn",
        &conninfo(&c),
        "--from-standby",
        &s.conninfo(),
        "--jobs",
        "1",
    ]);
    let took = started.elapsed().as_secs_f64();
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b["from_standby"], true, "{b:#}");
    eprintln!(
        "from-standby: {} bytes in {took:.2} s under pgbench",
        b["raw_bytes"]
    );

    // The moment to restore to: after the backup and the load, before one
    // more change that must not be restored.
    let want = bank(|q| c.psql(q));
    std::thread::sleep(Duration::from_millis(300));
    let to = c.psql("select clock_timestamp()").trim().to_string();
    std::thread::sleep(Duration::from_millis(300));
    c.psql("update pgbench_accounts set abalance = abalance + 1000 where aid = 1");
    c.switch_and_archive();

    let r = c.restore_to("restore", "restored", &["--to", &to]);
    assert_eq!(r.out["backup_id"], b["id"], "{:#}", r.out);
    assert_eq!(bank(|q| r.psql(q)), want);
}

/// `--from-standby` refuses a primary (exit 2) and a standby of another
/// cluster (exit 5), before any backup is listed; a standby that does
/// not reach the start in time fails naming both positions (exit 8).
#[test]
fn from_standby_refuses_a_primary_and_another_clusters_standby() {
    let c = Cluster::new();
    let s = Standby::of(&c, "standby");
    let other = Cluster::new();
    let stranger = Standby::of(&other, "stranger");
    let backup = |standby: &str| {
        c.pitr.fails(&[
            "backup",
            "--pgdata",
            s.pgdata.to_str().unwrap(),
            "--conn",
            &conninfo(&c),
            "--from-standby",
            standby,
        ])
    };
    let (code, err) = backup(&conninfo(&c));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not in recovery: it is a primary"), "{err}");
    let (code, err) = backup(&stranger.conninfo());
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("name a standby of this primary"), "{err}");
    // --from-standby without --conn is a usage error.
    let (code, err) = c.pitr.fails(&[
        "backup",
        "--pgdata",
        s.pgdata.to_str().unwrap(),
        "--from-standby",
        &s.conninfo(),
    ]);
    assert_eq!(code, 2, "{err}");
    let info = c.pitr.json(&["info"]);
    assert_eq!(
        info["backups"].as_array().map(Vec::len),
        Some(0),
        "{info:#}"
    );

    // A standby that does not replay to the start fails at the deadline,
    // naming both positions (exit 8); nothing is listed, and once it
    // replays again the same backup succeeds.
    s.psql("select pg_wal_replay_pause()");
    c.psql("create table after_pause as select 1");
    let args = |timeout: &str| {
        vec![
            "backup".to_string(),
            "--pgdata".into(),
            s.pgdata.display().to_string(),
            "--conn".into(),
            conninfo(&c),
            "--from-standby".into(),
            s.conninfo(),
            "--archive-timeout".into(),
            timeout.to_string(),
        ]
    };
    let (code, err) = c.pitr.fails(&strs(&args("3")));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("replayed only to"), "{err}");
    assert!(err.contains("the backup starts at"), "{err}");
    let info = c.pitr.json(&["info"]);
    assert_eq!(
        info["backups"].as_array().map(Vec::len),
        Some(0),
        "{info:#}"
    );
    s.psql("select pg_wal_replay_resume()");
    // Without a host, --from-standby reaches the server of --pgdata.
    let mut resumed = args("60");
    resumed[6] = "user=postgres".into();
    let b = c.pitr.json(&strs(&resumed));
    assert_eq!(b["from_standby"], true, "{b:#}");
}
