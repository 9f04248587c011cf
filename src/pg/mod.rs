//! Facts about PostgreSQL that need no server: WAL positions and file
//! names, pg_control, timeline history, backup_label, the WAL scanner.
//! Pure and synchronous: no tokio, no processes, no storage.

pub mod lsn;
pub mod major;
pub mod system_id;
pub mod walname;

pub use lsn::{Lsn, PosError, SegNo, TimelineId, WalSegmentSize};
pub use major::{MajorError, PgMajor};
pub use system_id::{SystemId, SystemIdError};
pub use walname::{SegmentName, WalFileName, WalNameError};
pub mod backup_label;
pub(crate) mod bytes;
pub mod control;
pub mod fingerprint;
pub mod history;
pub mod wal;
