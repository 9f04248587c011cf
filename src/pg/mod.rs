//! Facts about PostgreSQL that need no server: WAL positions and file
//! names, the ids and majors of clusters, pg_control and the build
//! fingerprint it records, timeline history, backup_label, the WAL scanner.
//! Pure and synchronous: no tokio, no processes, no storage. Every decoder
//! of bytes from disk reads through `bytes`, which never panics.

pub mod backup_label;
pub(crate) mod bytes;
pub mod control;
pub mod fingerprint;
pub mod history;
pub mod lsn;
pub mod major;
pub mod page;
pub mod system_id;
pub mod tablespace_map;
pub mod wal;
pub mod walname;

pub use fingerprint::{Fingerprint, FingerprintMismatch};
pub use lsn::{Lsn, PosError, SegNo, TimelineId, WalSegmentSize};
pub use major::{MajorError, PgMajor};
pub use system_id::{SystemId, SystemIdError};
pub use walname::{SegmentName, WalFileName, WalNameError};
