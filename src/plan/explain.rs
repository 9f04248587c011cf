//! Rendering a Plan for people: a table of steps with bytes and estimated
//! time, the totals, where recovery stops, and the evidence. `--json`
//! serializes the `Plan` itself (schema in docs/plan-json.md).

use std::fmt::Write;

use super::{Plan, Step};

/// `n` of a thing named `one`, pluralized: "1 segment", "6 segments".
pub fn count(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A span of seconds as messages say it: `90 s`, `25 min`, `26.0 h`,
/// `14.0 days`.
pub fn human_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 3.0 * 86400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Target:    {}{}",
        plan.target,
        if plan.inclusive { "" } else { " (exclusive)" }
    );
    let _ = writeln!(
        out,
        "Timeline:  {} ({})",
        plan.timeline, plan.timeline_reason
    );
    let _ = writeln!(
        out,
        "Start:     {} {} (consistent at {}, finished {})",
        plan.backup.start.name(),
        plan.backup.id,
        plan.backup.stop_lsn,
        plan.backup.stop_time
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  #  {:<58} {:>12} {:>10}",
        "step", "fetch", "est. time"
    );
    for (i, step) in plan.steps.iter().enumerate() {
        let (what, bytes) = match step {
            Step::RestoreBackup {
                backup_id,
                files,
                bytes,
                stored_bytes,
                ..
            } => (
                format!(
                    "restore backup {backup_id} ({files} files, {})",
                    human_bytes(*bytes)
                ),
                *stored_bytes,
            ),
            Step::ApplyIncremental {
                backup_id,
                files,
                changed_bytes,
                stored_bytes,
                ..
            } => (
                format!(
                    "apply incremental {backup_id} ({files} files, {} changed)",
                    human_bytes(*changed_bytes)
                ),
                *stored_bytes,
            ),
            Step::CloneSnapshot {
                backup_id,
                provider,
                bytes,
                ..
            } => (
                format!(
                    "clone snapshot {backup_id} by {provider} ({})",
                    human_bytes(*bytes)
                ),
                0,
            ),
            Step::ReplayWal {
                timeline,
                from_segment,
                to_segment,
                segments,
                stored_bytes,
                ..
            } => (
                format!("replay {segments} WAL segments on timeline {timeline}: {from_segment}..{to_segment}"),
                *stored_bytes,
            ),
            Step::StopAtTarget { description, .. } => (description.clone(), 0),
        };
        let _ = writeln!(
            out,
            "  {}  {:<58} {:>12} {:>9.1}s",
            i + 1,
            what,
            human_bytes(bytes),
            step.estimated_seconds()
        );
    }
    let _ = writeln!(
        out,
        "     {:<58} {:>12} {:>9.1}s",
        "total",
        human_bytes(plan.total_bytes),
        plan.estimated_seconds
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Stops:     {}", plan.stop.description);
    if let Some(t) = &plan.time_stop {
        let _ = writeln!(out, "Resolved:  {}", time_stop(t));
    }
    if let Some(i) = &plan.install {
        let _ = writeln!(out, "Install:   {i}");
    }
    let _ = writeln!(out, "Evidence:");
    for e in &plan.evidence {
        let _ = writeln!(out, "  - {e}");
    }
    if !plan.alternatives.is_empty() {
        let _ = writeln!(out, "Also possible (costlier):");
        for a in &plan.alternatives {
            let _ = writeln!(out, "  - {a}");
        }
    }
    out
}

/// How a time target is written for Postgres, in one line.
fn time_stop(t: &super::TimeStop) -> String {
    use super::TimeStop;
    match t {
        TimeStop::Lsn {
            lsn,
            inclusive,
            kept,
            ..
        } => format!(
            "recovery_target_lsn = {lsn}, recovery_target_inclusive = {}{}",
            if *inclusive { "on" } else { "off" },
            kept.as_ref()
                .map(|k| format!(
                    "; last transaction kept: xid {} ({}) at {}, LSN {}",
                    k.xid,
                    super::resolve::kind_name(k.kind),
                    k.time,
                    k.lsn
                ))
                .unwrap_or_default()
        ),
        TimeStop::Time { reason, .. } => format!("recovery_target_time is written: {reason}"),
        TimeStop::Pending { stop_segment, .. } => format!(
            "not yet: the transaction list of segment {stop_segment} decides the exact record"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(16 << 20), "16.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
