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
use std::path::Path;

/// A read-only private mapping of a whole file (memmap2 unmaps on drop).
pub struct Mapped(memmap2::Mmap);

impl Mapped {
    /// Maps the whole file; None for an empty one (nothing to map).
    pub fn open(path: &Path) -> io::Result<Option<Mapped>> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(None);
        }
        // SAFETY: mapping a file is unsafe because another process may
        // change or truncate it while mapped; see the module comment for
        // why the files mapped here are left alone. map_copy_read_only is
        // PROT_READ + MAP_PRIVATE; populate() is MAP_POPULATE: the pages
        // are mapped now, one call instead of a fault per page. The
        // descriptor may close once the map exists.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .populate()
                .map_copy_read_only(&file)?
        };
        Ok(Some(Mapped(map)))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
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
