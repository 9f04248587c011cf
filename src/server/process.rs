//! A running server seen from outside, without its log: who holds a port
//! (a TCP listener, a Unix socket and its lock file), what the postmaster
//! says of itself in `postmaster.pid`, and whose child a backend is. All of
//! it is language-independent: file formats and kernel facts, never
//! message text.

use std::path::{Path, PathBuf};

/// The postmaster's state from line 8 of `postmaster.pid`
/// (miscadmin.h: LOCK_FILE_LINE_PM_STATUS, PM_STATUS_*; Postgres 10+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmStatus {
    /// Starting up or in recovery, not accepting connections.
    Starting,
    /// Shutting down.
    Stopping,
    /// Accepting connections: a primary, or a hot standby once
    /// consistent (postmaster.c: PMSIGNAL_BEGIN_HOT_STANDBY).
    Ready,
    /// Up in standby mode, not accepting connections (hot_standby off).
    Standby,
}

impl PmStatus {
    /// The word `postmaster.pid` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            PmStatus::Starting => "starting",
            PmStatus::Stopping => "stopping",
            PmStatus::Ready => "ready",
            PmStatus::Standby => "standby",
        }
    }
}

/// `postmaster.pid` of a data directory: the postmaster's pid (line 1)
/// and its status (line 8), when present.
pub fn pm_status(pgdata: &Path) -> Option<PmStatus> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    match text.lines().nth(7)?.trim() {
        "starting" => Some(PmStatus::Starting),
        "stopping" => Some(PmStatus::Stopping),
        "ready" => Some(PmStatus::Ready),
        "standby" => Some(PmStatus::Standby),
        _ => None,
    }
}

/// The pid on line 1 of `postmaster.pid` (negative for a standalone
/// backend; see miscinit.c: CreateLockFile).
pub fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    (pid != 0).then(|| pid.abs())
}

/// Whether process `pid` exists (a process of another user counts).
pub fn alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// The parent of process `pid` (`PPid:` in /proc/<pid>/status).
pub fn parent_pid(pid: i32) -> std::io::Result<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no PPid in /proc/{pid}/status")))
}

/// The processes whose parent is `pid` (from /proc/<n>/stat).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|n| {
            // "pid (comm) state ppid ...": comm may hold anything, so
            // the fields count from its closing parenthesis.
            std::fs::read_to_string(format!("/proc/{n}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// SIGKILLs `pid` and its process group when it leads one (a postmaster
/// started by pitr; each backend, which calls setsid(), with whatever its
/// restore_command runs), else just `pid`.
pub fn kill_group(pid: i32) {
    use nix::sys::signal::{kill, killpg, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    if nix::unistd::getpgid(Some(p)) == Ok(p) {
        let _ = killpg(p, Signal::SIGKILL);
    } else {
        let _ = kill(p, Signal::SIGKILL);
    }
}

/// Whether `pid` is a postmaster running on `pgdata`: a postmaster's
/// working directory is its data directory (postmaster.c: ChangeToDataDir).
/// Guards signals sent on the word of a possibly stale `postmaster.pid`.
pub fn runs_in(pid: i32, pgdata: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    match (cwd, std::fs::canonicalize(pgdata)) {
        (Ok(cwd), Ok(dir)) => cwd == dir,
        _ => false,
    }
}

/// The Unix socket a server on `port` creates in `socket_dir`
/// (pqcomm.h: UNIXSOCK_PATH).
pub fn socket_path(socket_dir: &Path, port: u16) -> PathBuf {
    socket_dir.join(format!(".s.PGSQL.{port}"))
}

/// Who holds `port` for a server whose socket goes in `socket_dir`, if
/// anyone: a listener on 127.0.0.1, a live process holding the socket's
/// lock file (`.s.PGSQL.<port>.lock`, its pid on line 1), or anything
/// accepting connections on the socket itself. A stale socket or lock
/// file (its process gone) holds nothing: Postgres replaces it.
pub fn port_holder(port: u16, socket_dir: &Path) -> Option<String> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        return Some(format!("something listens on 127.0.0.1:{port}"));
    }
    let socket = socket_path(socket_dir, port);
    let lock = PathBuf::from(format!("{}.lock", socket.display()));
    if let Ok(text) = std::fs::read_to_string(&lock) {
        let pid = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
            .map(i32::abs)
            .filter(|p| *p > 0);
        match pid {
            Some(pid) if alive(pid) => {
                return Some(format!(
                    "process {pid} holds the Unix socket lock {}",
                    lock.display()
                ))
            }
            Some(_) => {}
            None => return Some(format!("{} exists and names no process", lock.display())),
        }
    }
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Some(format!(
            "a server accepts connections on {}",
            socket.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_lock_or_listener_holds_the_port() {
        let d = tempfile::tempdir().unwrap();
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let busy = l.local_addr().unwrap().port();
        assert!(port_holder(busy, d.path()).unwrap().contains("127.0.0.1"));
        drop(l);
        let port = {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(port_holder(port, d.path()), None);
        // A lock file naming a live process (this one).
        let lock = d.path().join(format!(".s.PGSQL.{port}.lock"));
        std::fs::write(&lock, format!("{}\n/d\n", std::process::id())).unwrap();
        let why = port_holder(port, d.path()).unwrap();
        assert!(why.contains("Unix socket lock"), "{why}");
        // A stale one (a pid that cannot exist) holds nothing.
        std::fs::write(&lock, "2147483646\n/d\n").unwrap();
        assert_eq!(port_holder(port, d.path()), None);
        std::fs::remove_file(&lock).unwrap();
        // A listening socket without a lock file.
        let sock = std::os::unix::net::UnixListener::bind(socket_path(d.path(), port)).unwrap();
        assert!(port_holder(port, d.path())
            .unwrap()
            .contains("accepts connections"));
        drop(sock);
        // Its file left behind, nobody listening: free.
        assert_eq!(port_holder(port, d.path()), None);
    }

    #[test]
    fn postmaster_pid_lines() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(pm_status(d.path()), None);
        std::fs::write(
            d.path().join("postmaster.pid"),
            "4242\n/data\n1700000000\n5433\n/tmp\n*\n  1234  5678\nstandby \n",
        )
        .unwrap();
        assert_eq!(pm_status(d.path()), Some(PmStatus::Standby));
        assert_eq!(postmaster_pid(d.path()), Some(4242));
        std::fs::write(d.path().join("postmaster.pid"), "4242\n/data\n").unwrap();
        assert_eq!(pm_status(d.path()), None);
    }

    #[test]
    fn children_are_found_by_their_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let kid = child.id() as i32;
        assert!(children_of(me).contains(&kid));
        kill_group(kid);
        child.wait().unwrap();
        assert!(!children_of(me).contains(&kid));
    }

    #[test]
    fn this_process_has_a_parent_and_a_cwd() {
        let me = std::process::id() as i32;
        assert_eq!(parent_pid(me).unwrap(), nix::unistd::getppid().as_raw());
        let cwd = std::env::current_dir().unwrap();
        assert!(runs_in(me, &cwd));
        assert!(!runs_in(me, Path::new("/")) || cwd == Path::new("/"));
        assert!(alive(me));
    }
}
