//! Errors from reading a WAL segment. Only problems that make the whole
//! segment unusable are errors; anything found after a valid first page
//! (a recycled page, a torn or zeroed record, a CRC mismatch) is the end of
//! valid WAL and ends a scan cleanly, as it does for Postgres' own reader
//! (xlogreader.c).

/// Why a buffer could not be scanned as a WAL segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalScanError {
    /// The buffer is not exactly one segment long (archived segments always
    /// are; a `.partial` or truncated file must be padded or rejected first).
    #[error("wal segment is {actual} bytes, expected exactly {expected} (the cluster's wal_segment_size)")]
    WrongSize { actual: u64, expected: u64 },

    /// The first page's long header is missing or inconsistent.
    #[error("bad long page header at the start of the wal segment: {detail}")]
    BadLongHeader { detail: String },

    /// The page magic belongs to no Postgres major this tool reads.
    #[error(
        "unknown wal page magic {magic:#06X}: not wal from postgres 12-18 \
         (or written on a big-endian machine)"
    )]
    UnknownMagic { magic: u16 },
}

impl WalScanError {
    pub(crate) fn bad_header(detail: impl Into<String>) -> WalScanError {
        WalScanError::BadLongHeader {
            detail: detail.into(),
        }
    }
}
