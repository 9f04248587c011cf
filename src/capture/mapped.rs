//! A file mapped read-only into memory. wal-push reads a whole 16 MiB
//! segment; copying it into a fresh buffer costs as much as hashing it
//! (4096 page faults, each zeroing a page, then the copy). Mapping the
//! page-cache pages the file already sits in costs one system call.
//!
//! The mapping is only for files nobody truncates while we read them: a
//! completed WAL segment handed to `archive_command` stays as it is until
//! the command returns. (Were one truncated anyway, reading past its new
//! end would kill pitr with SIGBUS: the segment is simply not
//! acknowledged, and Postgres tries again.)

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; nothing aliases it mutably.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the whole file; None for an empty one (nothing to map).
    pub fn open(path: &Path) -> io::Result<Option<Mapped>> {
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh read-only private mapping of a file we opened;
        // MAP_POPULATE maps its pages now (one call instead of a fault per
        // page). The descriptor may close after mmap returns.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Mapped { ptr, len }))
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is mapped readable for our lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap returned, once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// A file's bytes: mapped when it has any, else an empty buffer.
pub enum FileBytes {
    Mapped(Mapped),
    Empty,
}

impl FileBytes {
    pub fn read(path: &Path) -> io::Result<FileBytes> {
        Ok(match Mapped::open(path)? {
            Some(m) => FileBytes::Mapped(m),
            None => FileBytes::Empty,
        })
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m.bytes(),
            FileBytes::Empty => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_file_as_it_is() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        assert_eq!(&*FileBytes::read(&p).unwrap(), &data[..]);
        std::fs::write(&p, b"").unwrap();
        assert!(FileBytes::read(&p).unwrap().is_empty());
        assert!(FileBytes::read(&d.path().join("missing")).is_err());
    }
}
