//! Everything a command prints on stdout, in one place: `--json` (pretty
//! JSON of the library's result types) and the text forms. Progress goes
//! to stderr through `report::Reporter`, never here.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::capture::backup::Backup;
use crate::capture::wal_push::PushOutcome;
use crate::catalog::summary::TimelineWal;
use crate::catalog::{BackupRecord, DamagedObject, RepoConfig, StartKind};
use crate::pg::control::{ControlFile, Fingerprint, PgMajor};
use crate::pg::Lsn;
use crate::plan::{explain, Plan};
use crate::recover::fork::ForkOutcome;
use crate::recover::promote::Promoted;
use crate::recover::run::{Restored, Upgraded};
use crate::recover::status::Status;
use crate::recover::Action;
use crate::repo::init::Initialized;

use super::exit::{Code, Failure};
use super::report;

/// `info --json`.
#[derive(Serialize)]
pub struct Info {
    pub repository: String,
    pub cluster: RepoConfig,
    pub backups: Vec<BackupRecord>,
    pub wal: Vec<TimelineWal>,
    pub restorable: Option<crate::plan::Window>,
    pub restorable_error: Option<String>,
    /// Every timeline's window, newest first.
    pub timelines: Vec<crate::plan::Window>,
    /// Catalog objects that could not be read (left out of all the above).
    pub damaged: Vec<DamagedObject>,
}

/// `inspect PGDATA --json`.
#[derive(Serialize)]
pub struct DataDirFacts {
    pub pgdata: String,
    pub major: PgMajor,
    pub control: ControlFile,
    /// Present when the directory is a base backup or an unfinished restore.
    pub backup_label: Option<String>,
    pub arch: &'static str,
}

/// One entry of `installs --json`.
#[derive(Serialize)]
pub struct InstallReport {
    pub bin_dir: String,
    pub version: String,
    pub major: PgMajor,
    pub arch: &'static str,
    pub fingerprint: Option<Fingerprint>,
    pub error: Option<String>,
}

fn to_value<T: Serialize>(v: T) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::new(Code::Internal, e))
}

pub fn json<T: Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure::new(Code::Internal, e))?;
    println!("{s}");
    Ok(())
}

/// The JSON of `v` with `peak_rss_bytes`: this process's peak resident
/// memory so far (backup and restore report it; it is bounded by --jobs,
/// not by the size of the database).
pub fn json_with_rss<T: Serialize>(v: &T) -> Result<(), Failure> {
    let mut value = serde_json::to_value(v).map_err(|e| Failure::new(Code::Internal, e))?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert(
            "peak_rss_bytes".to_string(),
            serde_json::Value::from(report::peak_rss_bytes()),
        );
    }
    json(&value)
}

/// `init`: the record, and the archive_command to set.
pub fn init(
    out: &Initialized,
    repo_named: &str,
    archive_command: &str,
    as_json: bool,
) -> Result<(), Failure> {
    match out {
        Initialized::Existing(existing) => {
            if as_json {
                return json(existing);
            }
            println!(
                "repository {repo_named} already initialized for system {}",
                existing.system_id
            );
        }
        Initialized::Created(config) => {
            if as_json {
                return json(config);
            }
            println!(
                "initialized {repo_named}: system {}, PostgreSQL {}, {} WAL segments",
                config.system_id,
                config.pg_major,
                explain::human_bytes(config.wal_segment_size.bytes())
            );
            if let Some(enc) = &config.encryption {
                println!(
                    "encrypted with {} under key {}: keep the key file safe and apart from the repository, without it nothing in the repository can be restored",
                    enc.cipher,
                    enc.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            println!(
                "set in postgresql.conf: archive_mode = on, archive_command = {}",
                crate::recover::settings::guc_quote(archive_command)
            );
        }
    }
    Ok(())
}

/// `wal-push`: nothing unless `--json` (archive_command output goes to
/// the server log).
pub fn wal_push(out: &PushOutcome, as_json: bool) -> Result<(), Failure> {
    if as_json {
        json(out)?;
    }
    Ok(())
}

/// How a backup ran, beside its record: `--json` adds
/// `max_rate_bytes_per_sec` (null when unthrottled) and `from_standby`.
pub struct BackupRun {
    pub max_rate: Option<u64>,
    pub from_standby: bool,
}

pub fn backup(b: &Backup, run: &BackupRun, as_json: bool) -> Result<(), Failure> {
    let rec = &b.record;
    let changed_bytes = match &rec.start {
        StartKind::Incremental { changed_bytes, .. } => *changed_bytes,
        _ => rec.raw_bytes,
    };
    if as_json {
        // The record, and beside it the kind, the parent, the bytes stored
        // because they changed, the files by source, and how it ran.
        let mut value = to_value(rec)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("kind".into(), rec.start.name().into());
            map.insert("parent".into(), rec.start.parent().into());
            map.insert("changed_bytes".into(), changed_bytes.into());
            map.insert("file_sources".into(), to_value(b.sources)?);
            map.insert(
                "max_rate_bytes_per_sec".into(),
                serde_json::Value::from(run.max_rate),
            );
            map.insert(
                "from_standby".into(),
                serde_json::Value::from(run.from_standby),
            );
        }
        return json_with_rss(&value);
    }
    println!(
        "backup {} done: {} files, {} ({} stored), WAL {}..{} on timeline {}",
        rec.id,
        rec.files,
        explain::human_bytes(rec.raw_bytes),
        explain::human_bytes(rec.stored_bytes),
        rec.start_lsn,
        rec.stop_lsn,
        rec.timeline
    );
    if let Some(parent) = rec.start.parent() {
        println!(
            "  incremental on {parent}: {} changed; files: {} stored, {} unchanged, {} as changed blocks",
            explain::human_bytes(changed_bytes),
            b.sources.own,
            b.sources.unchanged,
            b.sources.delta
        );
    }
    if let Some(rate) = run.max_rate {
        println!("read at most {}/s", explain::human_bytes(rate));
    }
    if run.from_standby {
        println!("files copied from the standby, bracketed on the primary");
    }
    Ok(())
}

pub fn snapshot(
    r: &crate::capture::snapshot::SnapshotReport,
    as_json: bool,
) -> Result<(), Failure> {
    if as_json {
        return json(r);
    }
    println!(
        "snapshot {} done ({} {}, {:?}): {} in {} files, WAL {}..{} on timeline {}, {:.1} s ({:.1} s the snapshot itself)",
        r.id,
        r.provider.name(),
        r.handle,
        r.consistency,
        explain::human_bytes(r.raw_bytes),
        r.files,
        r.start_lsn,
        r.stop_lsn,
        r.timeline,
        r.seconds,
        r.snapshot_seconds
    );
    Ok(())
}

/// A start point's kind as `info` lists it: `full`, `incremental`, or
/// `snapshot (provider, consistency)`.
fn start_kind(k: &crate::catalog::StartKind) -> String {
    match k {
        crate::catalog::StartKind::Snapshot {
            provider,
            consistency,
            ..
        } => format!(
            "snapshot ({}, {})",
            provider.name(),
            match consistency {
                crate::catalog::Consistency::Bracketed => "bracketed",
                crate::catalog::Consistency::Atomic => "atomic",
            }
        ),
        crate::catalog::StartKind::Incremental { parent, .. } => format!("incremental on {parent}"),
        other => other.name().to_string(),
    }
}

pub fn plan(plan: &Plan, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(plan);
    }
    print!("{}", explain::render(plan));
    damaged(&plan.damaged);
    Ok(())
}

pub fn info(info: &Info, as_json: bool) -> Result<(), Failure> {
    if as_json {
        // Each backup with its kind and parent spelled out (the record
        // leaves `start` out for a full backup).
        let mut value = to_value(info)?;
        if let Some(list) = value.get_mut("backups").and_then(|b| b.as_array_mut()) {
            for (v, b) in list.iter_mut().zip(&info.backups) {
                if let serde_json::Value::Object(map) = v {
                    map.insert("kind".into(), b.start.name().into());
                    map.insert("parent".into(), b.start.parent().into());
                }
            }
        }
        return json(&value);
    }
    println!("repository  {}", info.repository);
    println!(
        "cluster     system {}, PostgreSQL {}, WAL segments of {}",
        info.cluster.system_id,
        info.cluster.pg_major,
        explain::human_bytes(info.cluster.wal_segment_size.bytes())
    );
    if let Some(enc) = &info.cluster.encryption {
        let ids: Vec<&str> = enc.keys.iter().map(|k| k.id.as_str()).collect();
        println!("encrypted   {}, keys {}", enc.cipher, ids.join(", "));
    }
    println!();
    println!("backups ({}):", info.backups.len());
    for b in &info.backups {
        println!(
            "  {}  {}  tl {}  {}..{}  finished {}  {} ({} stored)",
            b.id,
            start_kind(&b.start),
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            b.stop_time,
            explain::human_bytes(b.raw_bytes),
            explain::human_bytes(b.stored_bytes)
        );
    }
    println!();
    println!("WAL:");
    for t in &info.wal {
        println!(
            "  timeline {}: {}..{} ({}, {} stored){}",
            t.timeline,
            t.first_segment,
            t.last_segment,
            explain::count(t.segments, "segment"),
            explain::human_bytes(t.stored_bytes),
            if t.missing.is_empty() {
                String::new()
            } else {
                format!(", MISSING: {}", t.missing.join(", "))
            }
        );
    }
    println!();
    let show = |t: Option<DateTime<Utc>>| t.map(|t| t.to_string()).unwrap_or_else(|| "none".into());
    let show_lsn = |l: Option<Lsn>| l.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
    if let Some(e) = &info.restorable_error {
        println!("restorable  unknown: {e}");
    }
    for w in &info.timelines {
        println!("restorable on timeline {}:", w.timeline);
        println!(
            "  earliest  {} at {} (end of backup {})",
            show(w.earliest),
            show_lsn(w.earliest_lsn),
            w.earliest_backup.as_deref().unwrap_or("-")
        );
        println!(
            "  latest    before {} (last archived transaction, segment {}); LSN up to {}",
            show(w.latest),
            w.latest_segment.as_deref().unwrap_or("-"),
            show_lsn(w.latest_lsn)
        );
        if !w.gaps.is_empty() {
            println!("  GAPS      {}", w.gaps.join(", "));
        }
    }
    damaged(&info.damaged);
    Ok(())
}

/// Damaged catalog objects, for the text output of `info` and `plan`.
fn damaged(damaged: &[DamagedObject]) {
    if damaged.is_empty() {
        return;
    }
    println!();
    println!("DAMAGED ({}), left out and planned around:", damaged.len());
    for d in damaged {
        println!("  {}: {}", d.key, d.reason);
    }
}

pub fn restore(r: &Restored, no_start: bool, as_json: bool) -> Result<(), Failure> {
    let out = &r.outcome;
    if as_json {
        return json_with_rss(out);
    }
    println!(
        "restored backup {} to {} in {:.1}s (planned {:.1}s)",
        out.backup_id, out.target, out.elapsed_seconds, out.estimated_seconds
    );
    last_commit(out);
    if let Some(r) = &out.replay {
        println!(
            "  replayed:       {} of WAL ({}..{}) in {:.1}s, {:.1} MB/s (planned {:.1}s)",
            explain::human_bytes(r.bytes),
            r.start_lsn,
            r.end_lsn,
            r.seconds,
            r.bytes_per_sec / 1e6,
            r.estimated_seconds
        );
    }
    if no_start {
        println!("  not started (--no-start); start it with: {}", out.connect);
        println!("  data directory: {}", out.data_directory);
        return Ok(());
    }
    match out.action {
        Action::Promote => println!(
            "  promoted on timeline {}",
            out.timeline
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into())
        ),
        Action::Pause => {
            println!("  paused at the target (read-only); SELECT pg_wal_replay_resume() promotes")
        }
        Action::Shutdown => println!("  stopped at the target"),
        Action::Standby => println!("  a standby, replaying WAL as it is archived"),
    }
    println!("  data directory: {}", out.data_directory);
    println!("  server log:     {}", out.server_log);
    if out.action != Action::Shutdown {
        println!("  connect:        {}", out.connect);
    }
    Ok(())
}

fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// `follow`: the standby, and how to watch it.
pub fn follow(r: &Restored, repository: &str, as_json: bool) -> Result<(), Failure> {
    let out = &r.outcome;
    if as_json {
        return json_with_rss(out);
    }
    println!(
        "following {repository}: a hot standby from backup {} on timeline {}, ready in {:.1}s",
        out.backup_id,
        or_dash(out.timeline),
        out.elapsed_seconds
    );
    println!("  replayed to:    {}", or_dash(out.replay_lsn));
    println!("  data directory: {}", out.data_directory);
    println!("  server log:     {}", out.server_log);
    println!("  connect:        {} (read-only)", out.connect);
    println!(
        "  watch it:       pitr status --pgdata {}",
        out.data_directory
    );
    Ok(())
}

pub fn status(s: &Status, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(s);
    }
    println!("data directory  {}", s.data_directory);
    if s.in_recovery {
        println!(
            "role            standby{}, timeline {}",
            if s.replay_paused {
                " (replay paused)"
            } else {
                ""
            },
            or_dash(s.timeline)
        );
        println!("replayed to     {}", or_dash(s.replay_lsn));
        println!("last commit     {}", or_dash(s.last_replayed_commit));
        println!(
            "streaming       {}",
            match (&s.wal_receiver, s.streaming) {
                (_, true) => format!("yes, received to {}", or_dash(s.receive_lsn)),
                (Some(r), false) => format!("no (WAL receiver: {r})"),
                (None, false) => "no".to_string(),
            }
        );
    } else {
        println!("role            primary, timeline {}", or_dash(s.timeline));
        println!("written to      {}", or_dash(s.current_lsn));
    }
    match (&s.repository, &s.archive) {
        (Some(repo), Some(a)) => {
            println!("repository      {repo}");
            println!(
                "archived to     {} (segment {}), newest transaction end {}",
                or_dash(a.end_lsn),
                a.segment,
                or_dash(a.newest_commit)
            );
            let secs = s.lag_seconds.map(|v| format!(", {v:.3} s"));
            println!(
                "lag             {}{} {}",
                s.lag_bytes
                    .map(explain::human_bytes)
                    .unwrap_or_else(|| "unknown".into()),
                secs.unwrap_or_default(),
                if s.in_recovery {
                    "archived, not replayed yet"
                } else {
                    "written, not archived yet"
                }
            );
        }
        (repo, _) => {
            if let Some(repo) = repo {
                println!("repository      {repo}");
            }
            if let Some(note) = &s.archive_note {
                println!("lag             unknown: {note}");
            }
        }
    }
    Ok(())
}

pub fn promote(p: &Promoted, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(p);
    }
    if p.promoted {
        println!(
            "promoted {} in {:.1}s: a primary on timeline {}{}",
            p.data_directory,
            p.elapsed_seconds,
            p.timeline,
            p.switch_lsn
                .map(|l| format!(" (from {l})"))
                .unwrap_or_default()
        );
    } else {
        println!(
            "{} was already a primary, on timeline {}",
            p.data_directory, p.timeline
        );
    }
    if let Some(a) = &p.archiving {
        println!(
            "  archiving into {}{}",
            a.repository,
            if a.restarted { " (restarted)" } else { "" }
        );
        if let Some(h) = &a.history_file {
            println!("  history file:  {h} pushed");
        }
        if !a.pushed_segments.is_empty() {
            println!(
                "  archived:      {} (written while archiving was off)",
                a.pushed_segments.join(", ")
            );
        }
        if let Some(note) = &a.unarchived {
            println!("  warning:       {note}");
        }
        println!(
            "  archive_command = {}",
            crate::recover::settings::guc_quote(&a.archive_command)
        );
    }
    Ok(())
}

/// The restore's last replayed commit, as restore and fork print it (the
/// disaster-recovery runbook reads this line).
fn last_commit(out: &crate::recover::RestoreOutcome) {
    println!(
        "  last replayed commit: {}",
        out.last_replayed_commit
            .map(|t| t.to_string())
            .unwrap_or_else(|| "none".into())
    );
}

pub fn fork(f: &ForkOutcome, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json_with_rss(f);
    }
    let r = &f.restored;
    println!(
        "forked {} (backup {}) to {} in {:.1}s",
        f.repo, r.backup_id, r.target, f.elapsed_seconds
    );
    last_commit(r);
    println!(
        "  promoted on timeline {}, archiving into {}",
        f.timeline, f.new_repo
    );
    println!(
        "  first backup in {}: {} (WAL to {})",
        f.new_repo, f.first_backup_id, f.first_backup_stop_lsn
    );
    println!("  data directory: {}", f.data_directory);
    println!("  server log:     {}", f.server_log);
    println!("  connect:        {}", f.connect);
    Ok(())
}

pub fn upgrade(u: &Upgraded, as_json: bool) -> Result<(), Failure> {
    let up = &u.outcome;
    if as_json {
        return json(up);
    }
    println!(
        "restored backup {} to {} on PostgreSQL {}, then moved it into PostgreSQL {} in {:.1}s",
        up.restored_from.backup_id,
        up.restored_from.target,
        u.backup_major,
        up.server_version,
        up.elapsed_seconds
    );
    println!("  data directory: {}", up.data_directory);
    println!("  server log:     {}", up.server_log);
    println!("  connect:        {}", up.connect);
    Ok(())
}

pub fn installs(list: &[InstallReport], as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(&list);
    }
    if list.is_empty() {
        println!("no PostgreSQL install found (looked on PATH, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/local/pgsql/bin, PITR_PG_BIN_DIRS)");
    }
    for r in list {
        match (&r.fingerprint, &r.error) {
            (Some(f), _) => {
                println!(
                "{:<70} PostgreSQL {:<8} {}  catalog {}  blocks {}  WAL blocks {}  checksums {}",
                r.bin_dir,
                r.version,
                r.arch,
                f.catalog_version_no,
                f.blcksz,
                f.xlog_blcksz,
                if f.data_checksum_version > 0 { "on" } else { "off" }
            )
            }
            (None, Some(e)) => println!(
                "{:<70} PostgreSQL {:<8} fingerprint failed: {e}",
                r.bin_dir, r.version
            ),
            (None, None) => {}
        }
    }
    Ok(())
}

pub fn inspect_dir(facts: &DataDirFacts, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(facts);
    }
    let c = &facts.control;
    let f = &c.fingerprint;
    println!("data directory  {}", facts.pgdata);
    println!(
        "system          {}  PostgreSQL {}  state: {}",
        c.system_identifier, facts.major, c.state
    );
    println!(
        "checkpoint      {} (redo {}) on timeline {} at {}",
        c.checkpoint, c.checkpoint_redo, c.checkpoint_timeline, c.checkpoint_time
    );
    println!(
        "min recovery    {} (timeline {})",
        c.min_recovery_point, c.min_recovery_point_tli
    );
    println!(
        "build           catalog {}  control {}  blocks {}  WAL blocks {}  WAL segments {}  align {}  float8 by value {}  checksums {}  {}, {}",
        f.catalog_version_no,
        f.pg_control_version,
        f.blcksz,
        f.xlog_blcksz,
        explain::human_bytes(c.wal_segment_size.bytes()),
        f.max_align,
        f.float8_by_val,
        if f.data_checksum_version > 0 { "on" } else { "off" },
        f.byte_order,
        facts.arch
    );
    if let Some(l) = &facts.backup_label {
        println!("backup_label:\n{}", l.trim_end());
    }
    Ok(())
}

pub fn inspect_backup(rec: &BackupRecord, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(rec);
    }
    let f = &rec.fingerprint;
    println!("backup          {} ({})", rec.id, rec.label);
    println!(
        "system          {}  PostgreSQL {}  timeline {}",
        rec.system_id, rec.pg_major, rec.timeline
    );
    println!(
        "WAL             {} (checkpoint {}) .. {}",
        rec.start_lsn, rec.checkpoint_lsn, rec.stop_lsn
    );
    println!("time            {} .. {}", rec.start_time, rec.stop_time);
    println!(
        "build           catalog {}  control {}  blocks {}  WAL blocks {}  align {}  float8 by value {}  checksums {}  {}, {}",
        f.catalog_version_no,
        f.pg_control_version,
        f.blcksz,
        f.xlog_blcksz,
        f.max_align,
        f.float8_by_val,
        if f.data_checksum_version > 0 { "on" } else { "off" },
        f.byte_order,
        rec.arch.as_deref().unwrap_or("not recorded")
    );
    Ok(())
}

/// `pitr check`: one line per check, worst first; `--nagios`: the
/// plugin's one line (status and the findings that are not ok).
pub fn check(r: &crate::ops::check::Report, as_json: bool, nagios: bool) -> Result<(), Failure> {
    use crate::ops::check::Health;
    let word = |h: Health| match h {
        Health::Ok => "OK",
        Health::Warning => "WARNING",
        Health::Critical => "CRITICAL",
    };
    if as_json {
        return json(r);
    }
    let mut checks: Vec<_> = r.checks.iter().collect();
    checks.sort_by_key(|c| std::cmp::Reverse(c.status));
    if nagios {
        let bad: Vec<String> = checks
            .iter()
            .filter(|c| c.status != Health::Ok)
            .map(|c| format!("{}: {}", c.check, c.message))
            .collect();
        if bad.is_empty() {
            println!("{}: {} checks ok", word(r.status), checks.len());
        } else {
            println!("{}: {}", word(r.status), bad.join("; "));
        }
        return Ok(());
    }
    println!("{} ({})", word(r.status), r.repository);
    for c in checks {
        println!("  {:<8} {:<15} {}", word(c.status), c.check, c.message);
    }
    Ok(())
}

/// `pitr expire`: the window, what is kept and why, what goes (or would).
pub fn add_key(r: &crate::repo::init::KeyAdded, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(r);
    }
    if r.added {
        println!(
            "key {} added; the repository's keys are now {}",
            r.id,
            r.keys.join(", ")
        );
        println!("give both keys from now on (--key-file NEW --key-file OLD, or PITR_KEY_FILE=NEW:OLD): the new one seals, the old one still opens what it sealed until expire has removed it");
    } else {
        println!("key {} is already one of the repository's keys", r.id);
    }
    Ok(())
}

pub fn expire(r: &crate::ops::expire::ExpireReport, as_json: bool) -> Result<(), Failure> {
    if as_json {
        return json(r);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!("window    from {} until now", r.plan.window_start);
    for k in &r.plan.keep {
        println!("keep      {:<24} {}", k.id, k.reason);
    }
    for b in &r.backups {
        println!(
            "{verb:<9} {:<24} {} finished {}, {}",
            b.id,
            b.kind,
            b.stop_time,
            crate::plan::explain::human_bytes(b.stored_bytes)
        );
    }
    println!(
        "WAL       {verb} {} segments ({}){}",
        r.wal_segments,
        crate::plan::explain::human_bytes(r.wal_stored_bytes),
        r.plan
            .wal_below
            .map(|s| format!(" numbered below {s}"))
            .unwrap_or_default()
    );
    if !r.kept_recent.is_empty() {
        println!(
            "          kept {} archived after expire started: {}",
            r.kept_recent.len(),
            r.kept_recent.join(", ")
        );
    }
    for s in &r.snapshots_left {
        println!("left      snapshot {s}: delete it by hand");
    }
    println!(
        "freed     {}{}",
        crate::plan::explain::human_bytes(r.bytes_freed),
        if r.dry_run {
            " (dry run: nothing removed)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `pitr maintain`: what it decided, why, and what it captured.
pub fn maintain(r: &crate::ops::maintain::MaintainReport, as_json: bool) -> Result<(), Failure> {
    use crate::plan::maintain::Capture;
    if as_json {
        return json(r);
    }
    let d = &r.decision;
    let what = match &d.capture {
        Capture::Nothing => "nothing".to_string(),
        Capture::Full => "a full backup".to_string(),
        Capture::Incremental { parent } => format!("an incremental on {parent}"),
        Capture::Snapshot => "a snapshot".to_string(),
    };
    println!(
        "decided   {what}{}",
        if r.dry_run {
            " (dry run: nothing captured)"
        } else {
            ""
        }
    );
    println!("because   {}", d.reason);
    println!(
        "replay    {:.1} s now, {:.1} s by the next run (bound {:.1} s); WAL {} since {}",
        d.replay_secs_now,
        d.replay_secs_next_run,
        d.policy.max_replay_secs,
        explain::human_bytes(d.wal_bytes_since),
        d.newest_start.as_deref().unwrap_or("(no start point)")
    );
    if let Some(c) = &r.captured {
        println!(
            "captured  {} {} in {:.1} s ({} stored)",
            c.kind,
            c.id,
            c.seconds,
            explain::human_bytes(c.stored_bytes)
        );
    }
    Ok(())
}

/// `verify --json`: the report, with the key of the result record.
#[derive(Serialize)]
struct Recorded<'a, T: Serialize> {
    #[serde(rename = "verify")]
    report: &'a T,
    recorded: Option<&'a str>,
}

pub fn verify_integrity(
    r: &crate::recover::verify_repo::IntegrityReport,
    recorded: Option<&str>,
    as_json: bool,
) -> Result<(), Failure> {
    if as_json {
        return json(&Recorded {
            report: r,
            recorded,
        });
    }
    let c = &r.checked;
    println!("repository  {}", r.repository);
    println!(
        "checked     {} objects, {} read ({} decoded) in {:.1} s ({:.0} MB/s read, {:.0} MB/s decoded)",
        c.objects,
        explain::human_bytes(c.bytes),
        explain::human_bytes(c.raw_bytes),
        r.seconds,
        r.mb_per_second,
        r.decoded_mb_per_second
    );
    println!(
        "            {}, {}, {}, {} of {}, {}, {}",
        explain::count(c.wal_segments, "WAL segment"),
        explain::count(c.xacts_lists, "transaction list"),
        if c.index_entries == 1 {
            "1 WAL index entry".to_string()
        } else {
            format!("{} WAL index entries", c.index_entries)
        },
        explain::count(c.backup_objects, "file object"),
        explain::count(c.backups, "backup"),
        explain::count(c.history_files, "history file"),
        explain::count(c.aux_files, "other archived file")
    );
    for id in &r.backups_in_progress {
        println!("in progress backup {id} (its run still holds its claim; not checked)");
    }
    for w in &r.restorable {
        println!(
            "restorable  timeline {}: from {} (backup {}) to {} (verified WAL)",
            w.timeline,
            w.earliest
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            w.earliest_backup.as_deref().unwrap_or("-"),
            match (w.latest, w.latest_lsn) {
                (Some(t), _) => format!("before {t}"),
                (None, Some(l)) => format!("LSN {l}"),
                (None, None) => "-".into(),
            }
        );
    }
    findings(&r.problems);
    if let Some(k) = recorded {
        println!("recorded    {k}");
    }
    Ok(())
}

pub fn verify_restore(
    r: &crate::recover::verify_restore::RestoreCheckReport,
    recorded: Option<&str>,
    as_json: bool,
) -> Result<(), Failure> {
    if as_json {
        return json(&Recorded {
            report: r,
            recorded,
        });
    }
    println!("repository  {}", r.repository);
    println!(
        "restored    backup {} to {} with {} in {:.1} s (estimated {:.1} s)",
        r.backup_id, r.target, r.pg_bin, r.restore_seconds, r.estimated_seconds
    );
    println!(
        "usable      {:.1} s after the restore began (first accepted connection); checked at {:.1} s",
        r.time_to_usable_seconds, r.time_to_checked_seconds
    );
    println!(
        "checksums   {}",
        match r.data_checksums {
            Some(true) => "data checksums on",
            Some(false) => "data checksums off (pages carry none to verify)",
            None => "unknown (SHOW data_checksums failed)",
        }
    );
    println!(
        "amcheck     {}{}",
        if r.amcheck.ran {
            if r.amcheck.ok {
                "OK: "
            } else {
                "FAILED: "
            }
        } else {
            ""
        },
        r.amcheck.checked
    );
    if let Some(c) = &r.checksums {
        println!(
            "pages       {}{}",
            if c.ok { "OK: " } else { "FAILED: " },
            c.checked
        );
    }
    println!(
        "scratch     {} {}",
        r.scratch,
        if r.scratch_removed {
            "removed"
        } else {
            "NOT removed"
        }
    );
    findings(&r.problems);
    if let Some(k) = recorded {
        println!("recorded    {k}");
    }
    Ok(())
}

fn findings(problems: &[crate::recover::verify_repo::Finding]) {
    if problems.is_empty() {
        println!("OK          no problems found");
        return;
    }
    let harmless = problems.iter().filter(|p| p.harmless).count();
    println!();
    println!(
        "PROBLEMS ({}, {harmless} of them harmless leftovers):",
        problems.len()
    );
    for p in problems {
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!("  {kind}  {}", p.key);
        println!("      {}", p.message);
    }
}
