//! Durability without a flush per file: `start_writeback` asks the kernel
//! to begin writing a file's new pages right away (so the disk works while
//! the CPU compresses the next chunk), and `sync_filesystem` makes
//! everything written on a filesystem durable with one `syncfs(2)`, the
//! way `initdb --sync-method=syncfs` and `recovery_init_sync_method =
//! syncfs` do. Used where many files are written before one commit point
//! (a backup's objects before its manifest; a restored data directory
//! before `pg_control`).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Starts asynchronous writeback of `len` bytes at `offset` (a hint: it
/// never blocks on the disk and failing it loses nothing).
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // nix does not wrap sync_file_range(2): the one raw libc call left.
    // SAFETY: a plain syscall on a descriptor we own for the call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Flushes every dirty page and inode of the filesystem holding `path`.
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = std::fs::File::open(path)?;
    nix::unistd::syncfs(dir.as_raw_fd()).map_err(io::Error::from)
}
