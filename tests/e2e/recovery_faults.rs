//! Restores under faults on the recovery side: a server whose log is not
//! in English, an archive that lost a segment's data, a port held by
//! another server's Unix socket, refused restores, and a recovery that
//! stops moving. pitr must decide from what the server *is* (SQL, its
//! exit status, pg_control, the new timeline's history), never from what
//! its log says, and every wait must end.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

/// No restore in these tests may take longer: a hang fails the test.
const LIMIT: Duration = Duration::from_secs(240);

/// Inserts row `i` in its own transaction; returns its xid.
fn insert(c: &Cluster, i: i32) -> u32 {
    returned_xid(&c.psql(&format!(
        "insert into t(id) values ({i}) returning txid_current()"
    )))
}

/// `pitr restore --json` into `<cluster dir>/<name>`, failing the test
/// if it does not finish within `LIMIT` or fails.
fn restore(c: &Cluster, name: &str, args: &[&str]) -> serde_json::Value {
    c.pitr
        .json_within(&c.restore_args("restore", name, args), LIMIT)
}

fn server_log(pgdata: &Path) -> String {
    std::fs::read_to_string(pgdata.join("pitr-recovery.log")).unwrap()
}

/// Finding: recovery was watched by matching English log lines ("pausing
/// at the end of recovery", "shutdown at recovery target", "recovery
/// stopping"). Under a German lc_messages a paused restore hung forever
/// and restores to an LSN, xid or restore point were marked failed.
#[test]
fn a_server_logging_in_german_is_restored_to_every_target_and_action() {
    let c = Cluster::with_conf("lc_messages = 'de_DE.UTF-8'\n");
    c.create_table();
    c.backup();
    insert(&c, 1);
    let x2 = insert(&c, 2);
    c.psql("select pg_create_restore_point('vor_drei')");
    insert(&c, 3);
    let lsn = c
        .psql("select pg_current_wal_insert_lsn()")
        .trim()
        .to_string();
    let x4 = insert(&c, 4);
    insert(&c, 5);
    c.switch_and_archive();
    // The source cluster itself logs in German: the setting took.
    let source_log = std::fs::read_to_string(c.dir.path().join("server.log")).unwrap();
    assert!(
        source_log.contains("Datenbanksystem ist bereit"),
        "{source_log}"
    );
    let x2s = x2.to_string();
    let x4s = x4.to_string();

    // Promote at an LSN, an xid and a restore point.
    for (name, args, want) in [
        ("lsn", vec!["--lsn", lsn.as_str()], "1,2,3"),
        ("xid", vec!["--xid", x2s.as_str()], "1,2"),
        ("name", vec!["--name", "vor_drei"], "1,2"),
    ] {
        let r = Restored::from_json(restore(&c, name, &args));
        assert_eq!(r.rows(), want, "{name}");
        assert_eq!(r.psql("select pg_is_in_recovery()").trim(), "f", "{name}");
        assert!(r.out["recovery_end_lsn"].is_string(), "{}", r.out);
        let log = server_log(&r.pgdata);
        // The server really spoke German about where it stopped.
        assert!(log.contains("Wiederherstellung beendet"), "{name}: {log}");
        assert!(!log.contains("recovery stopping"), "{name}: {log}");
    }

    // Pause at a restore point: read-only, paused, the rows before it.
    let r = Restored::from_json(restore(
        &c,
        "paused",
        &["--name", "vor_drei", "--action", "pause"],
    ));
    assert_eq!(r.out["action"], "pause");
    assert_eq!(r.rows(), "1,2");
    assert_eq!(
        r.psql("select pg_get_wal_replay_pause_state()").trim(),
        "paused"
    );
    let log = server_log(&r.pgdata);
    assert!(
        log.contains("pausiere am Ende der Wiederherstellung"),
        "{log}"
    );
    drop(r);

    // Shut down right after transaction 4: stopped, startable, and
    // started again (paused instead) it holds exactly rows 1-4.
    let stopped = c.dir.path().join("stopped");
    let out = restore(&c, "stopped", &["--xid", &x4s, "--action", "shutdown"]);
    assert_eq!(out["action"], "shutdown");
    assert!(!stopped.join("postmaster.pid").exists());
    assert!(stopped.join("global/pg_control").exists());
    assert!(!stopped.join("PITR_RESTORE_FAILED").exists());
    let log = server_log(&stopped);
    assert!(
        log.contains("Herunterfahren beim Wiederherstellungsziel"),
        "{log}"
    );
    assert!(!log.contains("shutdown at recovery target"), "{log}");
    let auto = stopped.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap();
    text.push_str("recovery_target_action = 'pause'\nhot_standby = on\n");
    std::fs::write(&auto, text).unwrap();
    let mut start = as_postgres(format!("{PG_BIN}/pg_ctl"));
    start
        .args(["start", "-w", "-t", "120", "-D"])
        .arg(&stopped)
        .arg("-l")
        .arg(stopped.join("restarted.log"));
    run_ok(start);
    let port = out["port"].as_u64().unwrap() as u16;
    let socket = Path::new(out["socket_directory"].as_str().unwrap()).to_path_buf();
    wait_for("the restarted copy pauses", Duration::from_secs(60), || {
        psql(&socket, port, "select pg_get_wal_replay_pause_state()").trim() == "paused"
    });
    let got = rows(&socket, port);
    stop_server(&stopped);
    assert_eq!(got, "1,2,3,4");
}

/// Finding: a segment the catalog lists but the store cannot serve looked
/// like the end of the archive: `--latest` promoted early and reported
/// success. The restore must fail and name the segment.
///
/// With the recovery-side check alone pitr sees that replay ended short of
/// the plan's last segment. Once `pitr wal-fetch` exits with a status
/// above 125 for such a segment (the wal-fetch change being made
/// alongside), Postgres itself stops with a FATAL naming it: either way
/// this test's assertions hold.
#[test]
fn a_latest_restore_missing_a_mid_archive_segment_fails_and_names_it() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    let mut segments = Vec::new();
    for i in 1..=4 {
        insert(&c, i);
        segments.push(c.switch_and_archive());
    }
    let lost = &segments[1];
    let dir = c.pitr.repo.join("wal").join(&lost[..8]);
    let mut removed = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(lost.as_str()) && name.ends_with(".zst") {
            std::fs::remove_file(e.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "no data object of {lost} in {}", dir.display());
    assert!(
        dir.join(format!("{lost}.json")).exists(),
        "its record stays"
    );

    let new = c.path_of("latest");
    let all = c.restore_args("restore", "latest", &["--latest"]);
    let out = run_within(c.pitr.cmd(&strs(&all)), LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains(lost.as_str()), "{err}");
    assert!(!new.join("global/pg_control").exists());
    assert!(new.join("PITR_RESTORE_FAILED").exists());
    assert!(!new.join("postmaster.pid").exists(), "server left running");
}

/// Finding: with `--port` held by a server listening only on its Unix
/// socket (listen_addresses = ''), restore went ahead, connected to that
/// other server and reported it "promoted". It must be refused before
/// anything is created or fetched.
#[test]
fn a_port_held_by_a_socket_only_server_is_refused_before_anything_is_created() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    insert(&c, 1);
    c.switch_and_archive();
    // Another server, socket only, in the socket directory restore will use.
    let other = Cluster::new();
    assert!(std::net::TcpListener::bind(("127.0.0.1", other.port)).is_ok());
    let new = c.dir.path().join("never");
    let port = other.port.to_string();
    let out = run_within(
        c.pitr.cmd(&[
            "restore",
            "--latest",
            "--pgdata",
            new.to_str().unwrap(),
            "--port",
            &port,
            "--socket-dir",
            other.socket_dir().to_str().unwrap(),
        ]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("port {port} is in use")), "{err}");
    assert!(err.contains(&format!(".s.PGSQL.{port}")), "{err}");
    assert!(!new.exists(), "refused, yet {} was created", new.display());
    // The other server is untouched.
    assert_eq!(other.psql("select pg_is_in_recovery()").trim(), "f");
}

/// The other half of the port finding: a connection that reaches some
/// other server (a race the up-front check cannot close) is recognised by
/// its backend not being a child of our postmaster.
#[test]
fn a_server_that_is_not_ours_is_recognised_after_connecting() {
    let c = Cluster::new();
    let text = std::fs::read_to_string(c.pgdata.join("postmaster.pid")).unwrap();
    let postmaster: i32 = text.lines().next().unwrap().trim().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(c.socket_dir())
            .port(c.port)
            .user("postgres")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let limit = Duration::from_secs(10);
        let ours = pitr::recover::instance::check_identity(&client, postmaster, c.port, limit)
            .await
            .unwrap();
        assert!(ours.is_some(), "our own server was not recognised");
        let me = std::process::id() as i32;
        let err = pitr::recover::instance::check_identity(&client, me, c.port, limit)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not the one pitr started"),
            "{err}"
        );
    });
}

/// Finding: a restore refused before any data was written left an empty
/// --pgdata behind (created by pitr), so the next attempt needed a manual
/// cleanup. What pitr created goes; what the user made stays untouched.
#[test]
fn a_refused_restore_leaves_no_directory_it_created() {
    let c = Cluster::new();
    c.create_table();
    let b = c.backup();
    insert(&c, 1);
    c.switch_and_archive();

    // Refused by the planner: nested directories pitr created all go.
    let top = c.dir.path().join("a");
    let nested = top.join("b").join("pgdata");
    let (code, err) = c.pitr.fails(&[
        "restore",
        "--lsn",
        "FF/0",
        "--pgdata",
        nested.to_str().unwrap(),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(!top.exists(), "{} left behind", top.display());

    // Refused by restore itself before writing: the manifest is unreadable.
    let manifest = c
        .pitr
        .repo
        .join("backups")
        .join(b["id"].as_str().unwrap())
        .join("manifest.json");
    let aside = c.dir.path().join("manifest.aside");
    std::fs::rename(&manifest, &aside).unwrap();
    let new = c.dir.path().join("new");
    let (code, err) = c
        .pitr
        .fails(&["restore", "--latest", "--pgdata", new.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(!new.exists(), "{} left behind: {err}", new.display());

    // A directory the user made stays, empty and unmarked, either way.
    let mine = c.dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    for args in [["--lsn", "FF/0"], ["--latest", "--immediate"]] {
        let mut all = vec!["restore", "--pgdata", mine.to_str().unwrap()];
        all.extend(args);
        c.pitr.fails(&all);
        assert!(mine.is_dir());
    }
    c.pitr
        .fails(&["restore", "--latest", "--pgdata", mine.to_str().unwrap()]);
    assert!(mine.is_dir());
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 0);
    std::fs::rename(&aside, &manifest).unwrap();
}

/// The processes whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    pitr::server::process::children_of(pid)
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn gone(pid: i32) -> bool {
    !pitr::server::process::alive(pid)
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// Finding: waits had no deadline. A recovery that stops moving (here its
/// startup process is frozen with SIGSTOP, as a hung restore_command or
/// storage would freeze it) must fail after --stall-timeout, and stopping
/// the server must escalate until it is gone: a frozen startup process
/// ignores fast and immediate shutdown.
#[test]
fn a_recovery_that_stops_moving_fails_at_its_deadline_and_the_server_is_killed() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    // Enough WAL that replay takes a while.
    c.psql("insert into t(id) select g from generate_series(10, 150000) g");
    c.switch_and_archive();
    let new = c.path_of("stalled");
    let all = c.restore_args(
        "restore",
        "stalled",
        &["--json", "--latest", "--stall-timeout", "3"],
    );
    let mut cmd = c.pitr.cmd(&strs(&all));
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut restore = cmd.spawn().unwrap();
    // Freeze the startup process as soon as it exists.
    let started = Instant::now();
    let (postmaster, startup) = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no startup process appeared"
        );
        if let Some(pm) = pitr::server::process::postmaster_pid(&new) {
            let startup = children_of(pm)
                .into_iter()
                .find(|k| cmdline(*k).contains("startup"));
            if let Some(s) = startup {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(s),
                    nix::sys::signal::Signal::SIGSTOP,
                )
                .unwrap();
                break (pm, s);
            }
        }
        assert!(
            restore.try_wait().unwrap().is_none(),
            "restore ended before it could be frozen"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let frozen_at = Instant::now();
    let status = loop {
        if let Some(s) = restore.try_wait().unwrap() {
            break s;
        }
        if frozen_at.elapsed() > LIMIT {
            let _ = restore.kill();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(startup),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("restore did not give up on a frozen recovery");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = frozen_at.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut restore.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(7), "{err}");
    assert!(err.contains("no progress for 3 s"), "{err}");
    // Stall (3 s) plus three stop steps of 3 s each, and some slack.
    assert!(took < Duration::from_secs(60), "took {took:?}: {err}");
    wait_for("the postmaster is gone", Duration::from_secs(10), || {
        gone(postmaster)
    });
    wait_for(
        "the frozen startup process is gone",
        Duration::from_secs(10),
        || gone(startup),
    );
    assert!(new.join("PITR_RESTORE_FAILED").exists());
    assert!(!new.join("global/pg_control").exists());
}

/// The watch works on the oldest and newest majors too: 13 has no
/// pg_get_wal_replay_pause_state(), and each major writes its own
/// pg_control (read after `--action shutdown`).
#[test]
fn pause_shutdown_and_latest_are_watched_on_13_and_18() {
    for major in [13, 18] {
        let c = Cluster::of_major(major);
        c.create_table();
        c.backup();
        insert(&c, 1);
        c.psql("select pg_create_restore_point('rp')");
        insert(&c, 2);
        c.switch_and_archive();
        let paused = restore(&c, "paused", &["--name", "rp", "--action", "pause"]);
        let r = Restored::from_json(paused);
        assert_eq!(r.rows(), "1", "{major}");
        assert_eq!(r.psql("select pg_is_in_recovery()").trim(), "t");
        drop(r);
        let out = restore(&c, "stopped", &["--name", "rp", "--action", "shutdown"]);
        assert_eq!(out["action"], "shutdown", "{major}");
        assert!(!c.dir.path().join("stopped/postmaster.pid").exists());
        let r = Restored::from_json(restore(&c, "latest", &["--latest"]));
        assert_eq!(r.rows(), "1,2", "{major}");
        assert_eq!(r.psql("select pg_is_in_recovery()").trim(), "f");
    }
}
