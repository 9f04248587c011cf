//! The cost model: estimated seconds for each kind of edge. Defaults are
//! deliberately round; the performance issue refines them from measured
//! restores.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct CostModel {
    /// Bytes per second fetched, decompressed and written from the store.
    pub restore_bytes_per_sec: f64,
    /// Bytes of WAL per second that the server replays.
    pub replay_bytes_per_sec: f64,
    /// Fixed seconds: starting the server, promotion, checks.
    pub startup_secs: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            restore_bytes_per_sec: 200e6,
            replay_bytes_per_sec: 60e6,
            startup_secs: 3.0,
        }
    }
}

impl CostModel {
    pub fn restore(&self, stored_bytes: u64, raw_bytes: u64) -> f64 {
        (stored_bytes.max(raw_bytes / 4)) as f64 / self.restore_bytes_per_sec
    }

    pub fn replay(&self, wal_bytes: u64) -> f64 {
        wal_bytes as f64 / self.replay_bytes_per_sec
    }
}
