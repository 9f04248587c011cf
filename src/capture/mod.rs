//! What goes into the repository: WAL segments and history files from
//! `archive_command` (`wal_push`), the same files back out for
//! `restore_command` (`wal_fetch`), and base backups (`backup`).

pub mod backup;
pub mod mapped;
pub mod owner;
pub mod snapshot;
pub mod wal_fetch;
pub mod wal_push;
pub mod wal_spool;
