//! The cost model: estimated seconds for each kind of edge. Defaults are
//! deliberately round; they are replaced by the medians of the rates that
//! earlier restores from the same repository measured (recorded in
//! `catalog/timings/`), and either can be overridden per run
//! (`--restore-rate`, `--replay-rate`).

use serde::Serialize;

use crate::catalog::RestoreTiming;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CostModel {
    /// Bytes of data directory per second fetched, decompressed, verified
    /// and written.
    pub restore_bytes_per_sec: f64,
    /// Bytes of WAL per second that the server replays (fetch included).
    pub replay_bytes_per_sec: f64,
    /// Fixed seconds: starting the server, promotion, checks.
    pub startup_secs: f64,
    /// Where the rates come from, in words.
    pub source: String,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            restore_bytes_per_sec: 200e6,
            replay_bytes_per_sec: 60e6,
            startup_secs: 3.0,
            source: "defaults".into(),
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite() && *x > 0.0);
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Some(v[v.len() / 2])
}

impl CostModel {
    /// Defaults refined by recorded restores (medians; a rate needs at
    /// least 1 MB moved in at least 0.05 s to count).
    pub fn from_timings(timings: &[RestoreTiming]) -> CostModel {
        let mut m = CostModel::default();
        let rate = |bytes: u64, secs: f64| {
            if bytes >= 1_000_000 && secs >= 0.05 {
                bytes as f64 / secs
            } else {
                f64::NAN
            }
        };
        let restore = median(
            timings
                .iter()
                .map(|t| rate(t.data_bytes, t.materialize_seconds))
                .collect(),
        );
        let replay = median(
            timings
                .iter()
                .map(|t| rate(t.wal_bytes, t.replay_seconds))
                .collect(),
        );
        let startup = median(timings.iter().map(|t| t.startup_seconds).collect());
        let mut used = 0;
        if let Some(r) = restore {
            m.restore_bytes_per_sec = r;
            used += 1;
        }
        if let Some(r) = replay {
            m.replay_bytes_per_sec = r;
            used += 1;
        }
        if let Some(s) = startup {
            m.startup_secs = s;
        }
        if used > 0 {
            m.source = format!("medians of {} recorded restores", timings.len());
        }
        m
    }

    /// Per-run overrides in MB/s.
    pub fn with_overrides(
        mut self,
        restore_mbps: Option<f64>,
        replay_mbps: Option<f64>,
    ) -> CostModel {
        if let Some(r) = restore_mbps.filter(|r| *r > 0.0) {
            self.restore_bytes_per_sec = r * 1e6;
            self.source = format!("{}; restore rate given", self.source);
        }
        if let Some(r) = replay_mbps.filter(|r| *r > 0.0) {
            self.replay_bytes_per_sec = r * 1e6;
            self.source = format!("{}; replay rate given", self.source);
        }
        self
    }

    pub fn restore(&self, _stored_bytes: u64, raw_bytes: u64) -> f64 {
        raw_bytes as f64 / self.restore_bytes_per_sec
    }

    pub fn replay(&self, wal_bytes: u64) -> f64 {
        wal_bytes as f64 / self.replay_bytes_per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(data: u64, m: f64, wal: u64, r: f64) -> RestoreTiming {
        RestoreTiming {
            at: chrono::Utc::now(),
            backup_id: "b".into(),
            data_bytes: data,
            materialize_seconds: m,
            wal_bytes: wal,
            replay_seconds: r,
            startup_seconds: 1.5,
        }
    }

    #[test]
    fn recorded_restores_refine_the_defaults() {
        let d = CostModel::default();
        assert_eq!(CostModel::from_timings(&[]), d);
        let m = CostModel::from_timings(&[
            timing(100_000_000, 1.0, 32_000_000, 2.0),
            timing(100_000_000, 2.0, 32_000_000, 1.0),
            timing(100_000_000, 4.0, 0, 0.0), // no WAL: not a replay rate
        ]);
        assert_eq!(m.restore_bytes_per_sec, 50e6);
        assert_eq!(m.replay_bytes_per_sec, 32e6);
        assert_eq!(m.startup_secs, 1.5);
        assert!(m.source.contains("3 recorded restores"), "{}", m.source);
        let o = m.with_overrides(Some(400.0), None);
        assert_eq!(o.restore_bytes_per_sec, 400e6);
        assert_eq!(o.replay_bytes_per_sec, 32e6);
    }
}
