//! The repository: where a cluster's WAL, backups and metadata live. A
//! `Repo` (`repository`) wraps a `Store` (a local directory, or an S3
//! bucket and prefix: `location`) and knows the key layout (`layout`), the
//! codec (`codec`), how to read and write the catalog's metadata objects
//! and how to load the whole catalog (`catalog_load`); `init` holds the
//! rule for making one. It decides nothing about Postgres.

mod catalog_load;
pub mod codec;
pub mod crypt;
pub mod durable;
pub mod init;
pub mod layout;
mod location;
mod repository;
pub mod store;

pub use location::RepoLocation;
pub use repository::{Repo, RepoError};

pub const KIND_CONFIG: &str = "pitr.repo";
pub const KIND_WAL: &str = "pitr.wal-segment";
pub const KIND_BACKUP: &str = "pitr.backup";
pub const KIND_MANIFEST: &str = "pitr.backup-manifest";
pub const KIND_WAL_CHUNK: &str = "pitr.wal-index-chunk";
pub const KIND_WAL_XACTS: &str = "pitr.wal-xacts";
pub const KIND_TIMING: &str = "pitr.restore-timing";
pub const KIND_CLAIM: &str = "pitr.backup-claim";
pub const KIND_VERIFY: &str = "pitr.verify-result";
pub const KIND_WAL_HORIZON: &str = "pitr.wal-horizon";
