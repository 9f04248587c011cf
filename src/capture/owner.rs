//! Who is running this process, in terms another pitr process can check
//! later: the machine's boot (`/proc/sys/kernel/random/boot_id`), the host
//! name, the pid and the pid's start time (field 22 of `/proc/<pid>/stat`).
//! A process is *provably gone* only when it ran on this very boot of this
//! machine and no process has that pid with that start time: anything else
//! (another machine, a reboot we cannot tell, unreadable `/proc`) counts as
//! possibly alive, and what it owns is left alone.

use std::path::Path;

/// The running process, as recorded in a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub boot_id: String,
    pub hostname: String,
    pub pid: u32,
    pub pid_start: u64,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Field 22 (starttime) of `/proc/<pid>/stat`; the command name (field 2)
/// is in parentheses and may itself hold spaces and parentheses.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    // After the name: field 3 (state) is the first; starttime is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process; None where /proc cannot tell (then nothing it leaves
    /// behind can ever be proven abandoned, which is safe).
    pub fn current() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner {
            boot_id: read_trimmed(Path::new("/proc/sys/kernel/random/boot_id"))?,
            hostname: read_trimmed(Path::new("/proc/sys/kernel/hostname")).unwrap_or_default(),
            pid,
            pid_start: start_time(pid)?,
        })
    }

    /// Whether this owner's process has provably exited (see the module).
    pub fn provably_gone(&self) -> bool {
        let Some(me) = Owner::current() else {
            return false;
        };
        if me.boot_id != self.boot_id || me.hostname != self.hostname {
            return false;
        }
        match start_time(self.pid) {
            None => !Path::new(&format!("/proc/{}", self.pid)).exists(),
            Some(t) => t != self.pid_start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_child_is_gone() {
        let me = Owner::current().expect("/proc is readable here");
        assert!(!me.provably_gone());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        let gone = Owner {
            pid,
            pid_start: start.unwrap_or(0),
            ..me.clone()
        };
        assert!(gone.provably_gone());
        // Same pid, other start time: a reused pid, the original is gone.
        let reused = Owner {
            pid_start: me.pid_start + 1,
            ..me.clone()
        };
        assert!(reused.provably_gone());
        // Another boot or machine: never provable from here.
        let elsewhere = Owner {
            boot_id: "another-boot".into(),
            pid,
            ..me.clone()
        };
        assert!(!elsewhere.provably_gone());
    }
}
