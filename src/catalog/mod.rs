//! The model of what a repository holds: its identity, backups, archived
//! WAL segments with their scan summaries (the WAL index), and timeline
//! histories. Pure serde types; reading and writing them is `repo/`'s job.

pub mod envelope;
pub mod hash;
pub mod model;
pub mod summary;
pub mod wal_index;

pub use envelope::{Envelope, EnvelopeError};
pub use hash::{ContentHash, HashKind};
pub use model::{
    BackupClaim, BackupFile, BackupManifest, BackupRecord, BlockRange, Catalog, ChainError,
    Consistency, DamagedObject, DeltaPart, Encryption, FileChunk, FileSource, KeyRecord,
    RepoConfig, RestoreTiming, SnapshotCommands, SnapshotProvider, SnapshotTablespace, StartKind,
    VerifyKind, VerifyResult, WalHorizon, WalIndexChunk, WalSegmentRecord, WalSummary,
};
pub use wal_index::{SegRef, TimelineTotals, WalEntry, WalIndex, WalIndexBuilder};
