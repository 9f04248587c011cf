//! Recovery settings for the new server, written as a block appended to
//! `postgresql.auto.conf` (never as command-line options, so the operator
//! can change them later with ALTER SYSTEM and a restart) plus
//! `recovery.signal`. PostgreSQL 12+ reads recovery GUCs from any config
//! file; later lines win, and ALTER SYSTEM rewrites the file cleanly.

use serde::Serialize;

use crate::pg::{Lsn, TimelineId};
use crate::plan::pg_time;
use crate::plan::Xid;
use crate::plan::{Plan, RecoveryTarget, TimeStop};
use crate::repo::store::S3Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// End recovery and open for writes on a new timeline.
    Promote,
    /// Stay in recovery, read-only, paused at the target.
    Pause,
    /// Stop the server at the target.
    Shutdown,
    /// No target: stay a hot standby (`standby.signal`), replaying
    /// archived WAL as it arrives, and streaming from a primary when
    /// `primary_conninfo` is given (`pitr follow`).
    Standby,
}

impl Action {
    /// Its `recovery_target_action` (none for a standby, which has no
    /// target).
    pub fn as_guc(self) -> Option<&'static str> {
        match self {
            Action::Promote => Some("promote"),
            Action::Pause => Some("pause"),
            Action::Shutdown => Some("shutdown"),
            Action::Standby => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RecoverySettings {
    /// Full command line of `restore_command` (placeholders %f %p kept).
    pub restore_command: String,
    pub target: RecoveryTarget,
    pub inclusive: bool,
    pub timeline: TimelineId,
    pub action: Action,
    pub port: u16,
    pub socket_dir: Option<String>,
    pub backup_id: String,
    /// Major version of the server that will run recovery.
    pub major: u32,
    /// A time target resolved to its exact record: written as
    /// `recovery_target_lsn` (with this `recovery_target_inclusive`)
    /// instead of the time (`resolved_lsn`).
    pub resolved: Option<(Lsn, bool)>,
    /// A standby's (`Action::Standby`) connection to its primary, for
    /// streaming: written as `primary_conninfo`.
    pub primary_conninfo: Option<String>,
    /// A fork's `archive_command` (into its own repository, never the
    /// source's): written with `archive_mode = 'on'`, so Postgres archives
    /// the new timeline's history file and every segment from promotion
    /// on. None: `archive_mode = 'off'`.
    pub archive_command: Option<String>,
}

/// The LSN and inclusiveness a plan resolved its time target to, if it did
/// (`Plan::resolve_time`).
pub fn resolved_lsn(plan: &Plan) -> Option<(Lsn, bool)> {
    match &plan.time_stop {
        Some(TimeStop::Lsn { lsn, inclusive, .. }) => Some((*lsn, *inclusive)),
        _ => None,
    }
}

/// The target lines of a time resolved to an LSN: why, then the setting.
fn resolved_lines(s: &RecoverySettings) -> Option<Vec<String>> {
    let (lsn, inclusive) = s.resolved?;
    Some(vec![
        format!(
            "# {} resolved to its exact record: recovery stops right {} the record at {lsn}.",
            s.target,
            if inclusive { "after" } else { "before" }
        ),
        format!("recovery_target_lsn = {}", guc_quote(&lsn.to_string())),
        format!(
            "recovery_target_inclusive = {}",
            if inclusive { "on" } else { "off" }
        ),
    ])
}

impl RecoverySettings {
    /// Whether `promote` is carried out by pausing at the target and
    /// promoting with `pg_promote()` (requested while replay is still
    /// running), which ends recovery without the full end-of-recovery
    /// checkpoint that `recovery_target_action = promote` waits for: the
    /// server accepts writes at once and checkpoints in the background, as
    /// after any standby promotion. Needs a target to pause at and hot
    /// standby (without it Postgres turns `pause` into `shutdown`).
    pub fn fast_promote(&self) -> bool {
        self.action == Action::Promote && !matches!(self.target, RecoveryTarget::Latest)
    }
}

/// Quotes for `/bin/sh` (restore_command runs through the shell); plain
/// words stay bare so the command reads naturally.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `restore_command` calling this pitr, carrying the repository and
/// the S3 settings given to this run, so recovery works without the
/// operator repeating them. Credentials are never written here: the
/// restored server inherits the AWS_* environment of this run, and the
/// credential chain (profile, instance role) does the rest.
pub fn restore_command(
    pitr_exe: &str,
    repo: &str,
    pass_on: &[String],
    spool: Option<&std::path::Path>,
) -> String {
    let mut cmd = String::new();
    if let Some(dir) = spool {
        // A segment the prefetcher has ready is one rename away: no pitr
        // process, which is most of what a spooled fetch costs. (The
        // spool holds only complete, verified segments, under their
        // names; anything else falls through to wal-fetch.)
        // (NUL stands for Postgres' %f until the escaping below: no path
        // holds one.)
        let spooled = shell_quote(&format!("{}/\0f", dir.display()));
        cmd.push_str(&format!("mv -f {spooled} \0p 2>/dev/null || "));
    }
    cmd.push_str(&format!(
        "{} wal-fetch --repo {}",
        shell_quote(pitr_exe),
        shell_quote(repo)
    ));
    if let Some(dir) = spool {
        cmd.push_str(&format!(
            " --spool {}",
            shell_quote(&dir.display().to_string())
        ));
    }
    for arg in pass_on {
        cmd.push(' ');
        cmd.push_str(&shell_quote(arg));
    }
    // Postgres expands %f, %p, %r and %% in restore_command: a '%' of our
    // own (a path, a prefix) must reach the shell as itself.
    let mut cmd = cmd
        .replace('%', "%%")
        .replace("\0f", "%f")
        .replace("\0p", "%p");
    cmd.push_str(" %f %p");
    cmd
}

/// The `archive_command` that archives into `repo` with this pitr and
/// these flags (`Repo::pass_on_args`: S3 settings, key files; what `pitr
/// init` tells the operator to set).
pub fn archive_command(pitr_exe: &str, repo: &str, pass_on: &[String]) -> String {
    let mut cmd = format!(
        "{} wal-push --repo {}",
        shell_quote(pitr_exe),
        shell_quote(repo)
    );
    for arg in pass_on {
        cmd.push(' ');
        cmd.push_str(&shell_quote(arg));
    }
    let mut cmd = cmd.replace('%', "%%");
    cmd.push_str(" %p");
    cmd
}

pub fn guc_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `s` as an SQL string literal for a statement that takes no parameters
/// (`ALTER SYSTEM`): an escape string, so it means the same whatever
/// `standard_conforming_strings` says.
pub fn sql_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The value of the last `name = value` line of a configuration file's
/// text (later lines win, as Postgres reads them; see guc-file.l), quotes
/// and escapes undone (DeescapeQuotedString).
pub fn conf_value(text: &str, name: &str) -> Option<String> {
    text.lines().rev().find_map(|l| conf_line(l, name))
}

fn conf_line(line: &str, name: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line.strip_prefix(name)?;
    if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return None; // a longer name
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let Some(quoted) = rest.strip_prefix('\'') else {
        return rest
            .split(|c: char| c.is_whitespace() || c == '#')
            .next()
            .filter(|v| !v.is_empty())
            .map(str::to_string);
    };
    let mut out = String::new();
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\'' => return Some(out),
            '\\' => match chars.next()? {
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None // unterminated
}

/// The words `/bin/sh` would split `cmd` into (single and double quotes,
/// backslashes), or None when a quote is not closed. Operators (`||`,
/// `2>/dev/null`) come out as words of their own: enough to find a
/// command's arguments, not to run it.
fn shell_words(cmd: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => w.push(c),
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                if let Some(c) = chars.next() {
                    w.push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

/// The repository and S3 settings a `restore_command` that calls `pitr
/// wal-fetch` fetches from (what `restore_command` writes, read back), or
/// None when it calls no `wal-fetch --repo`. `%%` is the server's escape
/// for `%` and is undone.
pub fn repo_of_restore_command(cmd: &str) -> Option<(String, S3Settings)> {
    repo_of_command(cmd, "wal-fetch")
}

/// The same for an `archive_command` calling `pitr wal-push`.
pub fn repo_of_archive_command(cmd: &str) -> Option<(String, S3Settings)> {
    repo_of_command(cmd, "wal-push")
}

fn repo_of_command(cmd: &str, verb: &str) -> Option<(String, S3Settings)> {
    let words = shell_words(cmd)?;
    let at = words.iter().position(|w| w == verb)?;
    let mut repo = None;
    let mut s3 = S3Settings::default();
    let mut args = words[at + 1..].iter().map(|w| w.replace("%%", "%"));
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--repo" => repo = value(),
            "--s3-region" => s3.region = value(),
            "--s3-endpoint" => s3.endpoint = value(),
            "--s3-path-style" => s3.path_style = true,
            "--spool" | "--prefetch" | "--key-file" => {
                value();
            }
            f if f.starts_with("--") => {}
            _ => break, // %f %p, or what follows the command
        }
    }
    Some((repo?, s3))
}

/// `recovery_target_xid`'s value for a server of `major`: PostgreSQL 13+
/// parses it as a 64-bit number and keeps the low 32 bits
/// (check_recovery_target_xid: strtou64, the epoch form of
/// `pg_current_xact_id()`, tested by 003_recovery_targets.pl after
/// `pg_resetwal --epoch`), so the form the user gave is written; 12 reads
/// it with strtoul, so it gets the 32-bit xid the WAL records carry.
fn xid_value(x: &Xid, major: u32) -> String {
    if major >= 13 {
        x.to_string()
    } else {
        x.xid().to_string()
    }
}

/// The `recovery_target*` line for a target (none for `latest`).
fn target_line(t: &RecoveryTarget, major: u32) -> Option<String> {
    Some(match t {
        RecoveryTarget::Time(t) => format!("recovery_target_time = {}", guc_quote(&pg_time(*t))),
        RecoveryTarget::Lsn(l) => format!("recovery_target_lsn = {}", guc_quote(&l.to_string())),
        RecoveryTarget::Xid(x) => {
            format!("recovery_target_xid = {}", guc_quote(&xid_value(x, major)))
        }
        RecoveryTarget::Name(n) => format!("recovery_target_name = {}", guc_quote(n)),
        RecoveryTarget::Immediate => "recovery_target = 'immediate'".to_string(),
        RecoveryTarget::Latest => return None,
    })
}

/// The recovery target settings, in the order a cleared block writes
/// them (`recovery_target` is `--immediate`'s).
const TARGET_GUCS: [&str; 6] = [
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_inclusive",
];

/// The recovery target settings that `existing` (the postgresql.auto.conf
/// a backup brought along) sets. A backup of a server that was itself
/// restored (a fork; a rollback made a primary) carries that restore's
/// block, and Postgres would apply its target to this recovery too: the
/// last line of a name wins (guc-file.l: ProcessConfigFileInternal marks
/// earlier duplicates ignorable), and a second target kind is refused
/// ("multiple recovery targets specified", the recovery_target_* assign
/// hooks). Names are matched as Postgres does, case-insensitively, in
/// both `name = value` and `name value` lines.
pub fn inherited_targets(existing: &str) -> Vec<&'static str> {
    let named: Vec<String> = existing
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let end = l
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(l.len());
            (end > 0).then(|| l[..end].to_ascii_lowercase())
        })
        .collect();
    TARGET_GUCS
        .into_iter()
        .filter(|g| named.iter().any(|n| n == g))
        .collect()
}

/// The recovery target settings this block writes itself.
fn written_targets(s: &RecoverySettings) -> Vec<&'static str> {
    // A standby writes no target, whatever the settings say.
    if s.action == Action::Standby {
        return Vec::new();
    }
    if s.resolved.is_some() {
        return vec!["recovery_target_lsn", "recovery_target_inclusive"];
    }
    let (own, has_inclusive) = match &s.target {
        RecoveryTarget::Time(_) => ("recovery_target_time", true),
        RecoveryTarget::Lsn(_) => ("recovery_target_lsn", true),
        RecoveryTarget::Xid(_) => ("recovery_target_xid", true),
        RecoveryTarget::Name(_) => ("recovery_target_name", false),
        RecoveryTarget::Immediate => ("recovery_target", false),
        RecoveryTarget::Latest => return Vec::new(),
    };
    let mut out = vec![own];
    if has_inclusive && !s.inclusive {
        out.push("recovery_target_inclusive");
    }
    out
}

/// The block appended to postgresql.auto.conf.
pub fn auto_conf_block(s: &RecoverySettings) -> String {
    auto_conf_block_over(s, "")
}

/// The block appended to a postgresql.auto.conf that holds `existing`:
/// recovery targets it sets (`inherited_targets`) and this block does not
/// are cleared first, so that only this restore's target applies (a
/// standby's: none).
pub fn auto_conf_block_over(s: &RecoverySettings, existing: &str) -> String {
    let mut lines = if s.action == Action::Standby {
        standby_lines(s)
    } else {
        target_lines(s)
    };
    // After the header and restore_command, before any target.
    let cleared = cleared_lines(s, existing);
    lines.splice(3.min(lines.len())..3.min(lines.len()), cleared);
    if s.major >= 14 {
        lines.extend([
            "# The data directory was synced as restored: one syncfs at start-up instead"
                .to_string(),
            "# of an fsync per file (same guarantee).".to_string(),
            "recovery_init_sync_method = 'syncfs'".to_string(),
        ]);
    }
    lines.push(format!(
        "recovery_target_timeline = {}",
        guc_quote(&s.timeline.to_string())
    ));
    match &s.archive_command {
        Some(cmd) => lines.extend([
            "# A fork: it archives into its own repository (never the source's), from".to_string(),
            "# the new timeline's history file and first segment on.".to_string(),
            "archive_mode = 'on'".to_string(),
            format!("archive_command = {}", guc_quote(cmd)),
        ]),
        None => lines.extend([
            "# Archiving stays off so this copy never writes into the source's repository."
                .to_string(),
            "archive_mode = 'off'".to_string(),
        ]),
    }
    lines.push(format!("port = {}", s.port));
    if let Some(dir) = &s.socket_dir {
        lines.push(format!("unix_socket_directories = {}", guc_quote(dir)));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Recovery targets `existing` sets that this block does not write,
/// reset to their defaults (no target; inclusive).
fn cleared_lines(s: &RecoverySettings, existing: &str) -> Vec<String> {
    let written = written_targets(s);
    let cleared: Vec<&str> = inherited_targets(existing)
        .into_iter()
        .filter(|g| !written.contains(g))
        .collect();
    if cleared.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![
        "# The backup's postgresql.auto.conf sets recovery targets of its own (a backup"
            .to_string(),
        "# of a restored server): cleared, so that only this restore's target applies.".to_string(),
    ];
    for g in cleared {
        let default = if g == "recovery_target_inclusive" {
            "on"
        } else {
            "''"
        };
        lines.push(format!("{g} = {default}"));
    }
    lines
}

/// A standby's first lines (`standby.signal` goes beside them): no
/// target, hot standby, and the primary to stream from when given.
/// Postgres in standby mode retries restore_command every
/// `wal_retrieve_retry_interval` (5 s) once the archive has no next
/// segment, so archived WAL is replayed as it arrives.
fn standby_lines(s: &RecoverySettings) -> Vec<String> {
    let mut lines = vec![
        format!(
            "# pitr follow: a standby from backup {}, replaying archived WAL as it arrives.",
            s.backup_id
        ),
        "# Change these with ALTER SYSTEM (or remove them) and restart; pitr promote ends it."
            .to_string(),
        format!("restore_command = {}", guc_quote(&s.restore_command)),
    ];
    // Without one, an empty primary_conninfo: a backup of a follower
    // carries its primary's in postgresql.auto.conf, and this standby
    // must not stream from a server nobody named.
    let conninfo = s.primary_conninfo.as_deref().unwrap_or("");
    lines.push(format!("primary_conninfo = {}", guc_quote(conninfo)));
    lines.push("hot_standby = on".to_string());
    lines
}

/// A restore's first lines: the target and what happens there.
fn target_lines(s: &RecoverySettings) -> Vec<String> {
    let mut lines = vec![
        format!("# pitr restore: backup {} to {}.", s.backup_id, s.target),
        "# Change these with ALTER SYSTEM (or remove them) and restart.".to_string(),
        format!("restore_command = {}", guc_quote(&s.restore_command)),
    ];
    if let Some(resolved) = resolved_lines(s) {
        lines.extend(resolved);
    }
    if let Some(t) = target_line(&s.target, s.major) {
        if s.resolved.is_none() {
            lines.push(t);
            let has_inclusive = matches!(
                s.target,
                RecoveryTarget::Time(_) | RecoveryTarget::Lsn(_) | RecoveryTarget::Xid(_)
            );
            if !s.inclusive && has_inclusive {
                lines.push("recovery_target_inclusive = off".to_string());
            }
        }
        if s.fast_promote() {
            lines.extend([
                "# promote: paused at the target, pitr promotes it (as pg_ctl promote), which"
                    .to_string(),
                "# skips the end-of-recovery checkpoint; started by hand, run pg_promote()."
                    .to_string(),
                "recovery_target_action = 'pause'".to_string(),
                "hot_standby = on".to_string(),
            ]);
        } else if let Some(action) = s.action.as_guc() {
            lines.push(format!("recovery_target_action = {}", guc_quote(action)));
            if s.action == Action::Pause {
                // Without hot standby Postgres shuts down instead of pausing.
                lines.push("hot_standby = on".to_string());
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_block() {
        let s = RecoverySettings {
            restore_command: format!(
                "{} wal-fetch --repo {} %f %p",
                shell_quote("/usr/local/bin/pitr"),
                shell_quote("/srv/it's repo")
            ),
            target: RecoveryTarget::Time(
                chrono::DateTime::parse_from_rfc3339("2026-11-25T14:02:17.25Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            ),
            inclusive: true,
            timeline: TimelineId::new(2).unwrap(),
            action: Action::Promote,
            port: 54321,
            socket_dir: Some("/tmp".into()),
            backup_id: "20261125T140000Z".into(),
            major: 15,
            resolved: None,
            primary_conninfo: None,
            archive_command: None,
        };
        let want = "\
# pitr restore: backup 20261125T140000Z to time 2026-11-25 14:02:17.250000+00.
# Change these with ALTER SYSTEM (or remove them) and restart.
restore_command = '/usr/local/bin/pitr wal-fetch --repo ''/srv/it''\\\\''''s repo'' %f %p'
recovery_target_time = '2026-11-25 14:02:17.250000+00'
# promote: paused at the target, pitr promotes it (as pg_ctl promote), which
# skips the end-of-recovery checkpoint; started by hand, run pg_promote().
recovery_target_action = 'pause'
hot_standby = on
# The data directory was synced as restored: one syncfs at start-up instead
# of an fsync per file (same guarantee).
recovery_init_sync_method = 'syncfs'
recovery_target_timeline = '2'
# Archiving stays off so this copy never writes into the source's repository.
archive_mode = 'off'
port = 54321
unix_socket_directories = '/tmp'
";
        assert_eq!(auto_conf_block(&s), want);
    }

    #[test]
    fn exact_block_for_a_64_bit_xid_per_major() {
        let block = |major| {
            auto_conf_block(&RecoverySettings {
                restore_command: "/bin/pitr wal-fetch --repo /r %f %p".into(),
                target: RecoveryTarget::Xid(Xid::full((1 << 32) | 733)),
                inclusive: false,
                timeline: TimelineId::new(1).unwrap(),
                action: Action::Shutdown,
                port: 5433,
                socket_dir: None,
                backup_id: "b".into(),
                major,
                resolved: None,
                primary_conninfo: None,
                archive_command: None,
            })
        };
        let want = |value: &str, sync: &str| {
            format!(
                "\
# pitr restore: backup b to transaction 4294968029.
# Change these with ALTER SYSTEM (or remove them) and restart.
restore_command = '/bin/pitr wal-fetch --repo /r %f %p'
recovery_target_xid = '{value}'
recovery_target_inclusive = off
recovery_target_action = 'shutdown'
{sync}recovery_target_timeline = '1'
# Archiving stays off so this copy never writes into the source's repository.
archive_mode = 'off'
port = 5433
"
            )
        };
        let sync = "\
# The data directory was synced as restored: one syncfs at start-up instead
# of an fsync per file (same guarantee).
recovery_init_sync_method = 'syncfs'
";
        // 13+ parse the 64-bit form (and keep its low 32 bits); 12 gets those.
        assert_eq!(block(17), want("4294968029", sync));
        assert_eq!(block(13), want("4294968029", ""));
        assert_eq!(block(12), want("733", ""));
    }

    #[test]
    fn restore_command_escapes_percent_signs_of_its_own() {
        let cmd = restore_command(
            "/bin/pitr",
            "/srv/repo%f",
            &[],
            Some(std::path::Path::new("/d/50%/pg_wal/pitr-spool")),
        );
        assert_eq!(
            cmd,
            "mv -f '/d/50%%/pg_wal/pitr-spool/%f' %p 2>/dev/null || /bin/pitr wal-fetch --repo '/srv/repo%%f' --spool '/d/50%%/pg_wal/pitr-spool' %f %p"
        );
    }

    #[test]
    fn archive_command_carries_s3_settings() {
        let s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: true,
            ..S3Settings::default()
        };
        assert_eq!(
            archive_command("/bin/pitr", "s3://b/p%1", &s3.to_args()),
            "/bin/pitr wal-push --repo 's3://b/p%%1' --s3-endpoint http://127.0.0.1:9000 --s3-path-style %p"
        );
    }

    #[test]
    fn key_files_are_passed_on_and_skipped_when_read_back() {
        let mut args = S3Settings {
            region: Some("eu-west-1".into()),
            ..S3Settings::default()
        }
        .to_args();
        args.extend(["--key-file".to_string(), "/etc/pitr/my key".to_string()]);
        let cmd = restore_command("/bin/pitr", "s3://b/p", &args, None);
        assert_eq!(
            cmd,
            "/bin/pitr wal-fetch --repo s3://b/p --s3-region eu-west-1 --key-file '/etc/pitr/my key' %f %p"
        );
        let (repo, s3) = repo_of_restore_command(&cmd).unwrap();
        assert_eq!(
            (repo.as_str(), s3.region.as_deref()),
            ("s3://b/p", Some("eu-west-1"))
        );
        let cmd = archive_command("/bin/pitr", "/r", &args);
        assert_eq!(repo_of_archive_command(&cmd).unwrap().0, "/r");
    }

    #[test]
    fn restore_command_carries_s3_settings() {
        let plain = restore_command("/bin/pitr", "/srv/repo", &[], None);
        assert_eq!(plain, "/bin/pitr wal-fetch --repo /srv/repo %f %p");
        let spooled = restore_command(
            "/bin/pitr",
            "/srv/repo",
            &[],
            Some(std::path::Path::new("/d/pg_wal/pitr-spool")),
        );
        assert_eq!(
            spooled,
            "mv -f '/d/pg_wal/pitr-spool/%f' %p 2>/dev/null || /bin/pitr wal-fetch --repo /srv/repo --spool /d/pg_wal/pitr-spool %f %p"
        );
        let s3 = S3Settings {
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: true,
        };
        assert_eq!(
            restore_command("/bin/pitr", "s3://b/p", &s3.to_args(), None),
            "/bin/pitr wal-fetch --repo s3://b/p --s3-region eu-west-1 --s3-endpoint http://127.0.0.1:9000 --s3-path-style %f %p"
        );
    }

    #[test]
    fn each_target_kind_writes_its_setting() {
        let base = |target, inclusive| RecoverySettings {
            restore_command: "pitr wal-fetch --repo /r %f %p".into(),
            target,
            inclusive,
            timeline: TimelineId::new(1).unwrap(),
            action: Action::Pause,
            port: 5433,
            socket_dir: None,
            backup_id: "b".into(),
            major: 13,
            resolved: None,
            primary_conninfo: None,
            archive_command: None,
        };
        let lsn = base(RecoveryTarget::Lsn("0/3000060".parse().unwrap()), false);
        let text = auto_conf_block(&lsn);
        let want = "\nrecovery_target_lsn = '0/3000060'\nrecovery_target_inclusive = off\nrecovery_target_action = 'pause'\nhot_standby = on\n";
        assert!(text.contains(want), "{text}");
        let text = auto_conf_block(&base(RecoveryTarget::Xid(crate::plan::Xid::new(733)), true));
        assert!(
            text.contains("\nrecovery_target_xid = '733'\nrecovery_target_action"),
            "{text}"
        );
        let text = auto_conf_block(&base(RecoveryTarget::Name("it's".into()), true));
        assert!(
            text.contains("\nrecovery_target_name = 'it''s'\n"),
            "{text}"
        );
        let text = auto_conf_block(&base(RecoveryTarget::Immediate, true));
        assert!(text.contains("\nrecovery_target = 'immediate'\n"), "{text}");
        let text = auto_conf_block(&base(RecoveryTarget::Latest, true));
        assert!(!text.contains("recovery_target_action"), "{text}");
        assert!(!text.contains("recovery_target ="), "{text}");
        assert!(text.contains("recovery_target_timeline = '1'"), "{text}");
    }

    #[test]
    fn a_resolved_time_is_written_as_its_lsn() {
        let s = |inclusive| RecoverySettings {
            restore_command: "pitr wal-fetch --repo /r %f %p".into(),
            target: RecoveryTarget::Time(
                chrono::DateTime::parse_from_rfc3339("2026-11-25T14:02:17.25Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            ),
            inclusive: true,
            timeline: TimelineId::new(1).unwrap(),
            action: Action::Shutdown,
            port: 5433,
            socket_dir: None,
            backup_id: "b".into(),
            major: 15,
            resolved: Some(("0/3000060".parse().unwrap(), inclusive)),
            primary_conninfo: None,
            archive_command: None,
        };
        let text = auto_conf_block(&s(false));
        let want = "\n# time 2026-11-25 14:02:17.250000+00 resolved to its exact record: recovery stops right before the record at 0/3000060.\nrecovery_target_lsn = '0/3000060'\nrecovery_target_inclusive = off\nrecovery_target_action = 'shutdown'\n";
        assert!(text.contains(want), "{text}");
        assert!(!text.contains("recovery_target_time ="), "{text}");
        let text = auto_conf_block(&s(true));
        assert!(
            text.contains("\nrecovery_target_lsn = '0/3000060'\nrecovery_target_inclusive = on\n"),
            "{text}"
        );
    }

    fn standby(major: u32, primary: Option<&str>) -> RecoverySettings {
        RecoverySettings {
            restore_command: "/usr/local/bin/pitr wal-fetch --repo /srv/repo %f %p".into(),
            target: RecoveryTarget::Latest,
            inclusive: true,
            timeline: TimelineId::new(3).unwrap(),
            action: Action::Standby,
            port: 54321,
            socket_dir: Some("/tmp".into()),
            backup_id: "20261125T140000Z".into(),
            major,
            resolved: None,
            primary_conninfo: primary.map(str::to_string),
            archive_command: None,
        }
    }

    /// A fork's block: archiving on, into its own repository.
    fn fork_settings() -> RecoverySettings {
        RecoverySettings {
            restore_command: "/bin/pitr wal-fetch --repo /src %f %p".into(),
            target: RecoveryTarget::Time(
                chrono::DateTime::parse_from_rfc3339("2026-11-25T14:02:17.25Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            ),
            inclusive: true,
            timeline: TimelineId::new(1).unwrap(),
            action: Action::Promote,
            port: 5433,
            socket_dir: None,
            backup_id: "b".into(),
            major: 13,
            resolved: Some(("0/3000060".parse().unwrap(), false)),
            archive_command: Some(archive_command("/bin/pitr", "/srv/fork repo", &[])),
            primary_conninfo: None,
        }
    }

    #[test]
    fn exact_standby_block() {
        let want = "\
# pitr follow: a standby from backup 20261125T140000Z, replaying archived WAL as it arrives.
# Change these with ALTER SYSTEM (or remove them) and restart; pitr promote ends it.
restore_command = '/usr/local/bin/pitr wal-fetch --repo /srv/repo %f %p'
primary_conninfo = 'host=/tmp port=5432 user=''rep'' application_name=pitr'
hot_standby = on
# The data directory was synced as restored: one syncfs at start-up instead
# of an fsync per file (same guarantee).
recovery_init_sync_method = 'syncfs'
recovery_target_timeline = '3'
# Archiving stays off so this copy never writes into the source's repository.
archive_mode = 'off'
port = 54321
unix_socket_directories = '/tmp'
";
        let s = standby(
            15,
            Some("host=/tmp port=5432 user='rep' application_name=pitr"),
        );
        assert_eq!(auto_conf_block(&s), want);
        // No target, no action, however the settings were filled in.
        let mut odd = standby(13, None);
        odd.target = RecoveryTarget::Name("rp".into());
        let text = auto_conf_block(&odd);
        assert!(!text.contains("recovery_target ="), "{text}");
        assert!(!text.contains("recovery_target_name"), "{text}");
        assert!(!text.contains("recovery_target_action"), "{text}");
        assert!(text.contains("\nprimary_conninfo = ''\n"), "{text}");
        assert!(!text.contains("recovery_init_sync_method"), "{text}");
        assert!(text.contains("\nhot_standby = on\n"), "{text}");
        assert_eq!(Action::Standby.as_guc(), None);
    }

    #[test]
    fn the_repository_is_read_back_from_the_restore_command() {
        let s3 = S3Settings {
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: true,
        };
        for (repo, s3) in [
            ("/srv/repo", S3Settings::default()),
            ("/srv/it's 50% repo", S3Settings::default()),
            ("s3://b/p%1", s3),
        ] {
            for spool in [None, Some(std::path::Path::new("/d/50%/pg_wal/pitr-spool"))] {
                let cmd = restore_command("/opt/my pitr/pitr", repo, &s3.to_args(), spool);
                assert_eq!(
                    repo_of_restore_command(&cmd),
                    Some((repo.to_string(), s3.clone())),
                    "{cmd}"
                );
                // As the server keeps it in postgresql.auto.conf.
                let conf = format!("# x\nrestore_command = {}\n", guc_quote(&cmd));
                assert_eq!(conf_value(&conf, "restore_command"), Some(cmd.clone()));
            }
        }
        assert_eq!(
            repo_of_restore_command("cp /archive/%f %p"),
            None,
            "not pitr's"
        );
        assert_eq!(repo_of_restore_command("pitr wal-fetch --repo '/x"), None);
        assert_eq!(
            repo_of_restore_command("pitr wal-fetch --repo=/x %f %p"),
            Some(("/x".into(), S3Settings::default()))
        );
        let s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: true,
            ..S3Settings::default()
        };
        let cmd = archive_command("/bin/pitr", "s3://b/p%1", &s3.to_args());
        assert_eq!(
            repo_of_archive_command(&cmd),
            Some(("s3://b/p%1".into(), s3))
        );
        assert_eq!(repo_of_restore_command(&cmd), None);
    }

    #[test]
    fn configuration_values_are_read_as_postgres_reads_them() {
        let text = "restore_command = 'a'\nrestore_command_x = 'b'\n  restore_command='it''s \\\\ \\n'  # c\nport = 5433 # p\nhot_standby on\n";
        assert_eq!(
            conf_value(text, "restore_command").as_deref(),
            Some("it's \\ \n")
        );
        assert_eq!(conf_value(text, "port").as_deref(), Some("5433"));
        assert_eq!(conf_value(text, "hot_standby").as_deref(), Some("on"));
        assert_eq!(conf_value(text, "archive_mode"), None);
        assert_eq!(conf_value("x = 'open", "x"), None);
        assert_eq!(sql_literal("it's \\"), "E'it''s \\\\'");
    }

    #[test]
    fn exact_block_of_a_fork() {
        let want = "\
# pitr restore: backup b to time 2026-11-25 14:02:17.250000+00.
# Change these with ALTER SYSTEM (or remove them) and restart.
restore_command = '/bin/pitr wal-fetch --repo /src %f %p'
# time 2026-11-25 14:02:17.250000+00 resolved to its exact record: recovery stops right before the record at 0/3000060.
recovery_target_lsn = '0/3000060'
recovery_target_inclusive = off
# promote: paused at the target, pitr promotes it (as pg_ctl promote), which
# skips the end-of-recovery checkpoint; started by hand, run pg_promote().
recovery_target_action = 'pause'
hot_standby = on
recovery_target_timeline = '1'
# A fork: it archives into its own repository (never the source's), from
# the new timeline's history file and first segment on.
archive_mode = 'on'
archive_command = '/bin/pitr wal-push --repo ''/srv/fork repo'' %p'
port = 5433
";
        assert_eq!(auto_conf_block(&fork_settings()), want);
    }

    #[test]
    fn targets_a_copied_auto_conf_holds_are_cleared_before_this_ones() {
        // What a backup of a fork (or of any restored server) brings along:
        // ALTER SYSTEM's header and line, then the fork's restore block.
        let existing = format!(
            "# Do not edit this file manually!\nwork_mem = '8MB'\n\n{}",
            auto_conf_block(&fork_settings())
        );
        assert_eq!(
            inherited_targets(&existing),
            ["recovery_target_lsn", "recovery_target_inclusive"]
        );
        let restore = |target, inclusive| RecoverySettings {
            restore_command: "/bin/pitr wal-fetch --repo /fork %f %p".into(),
            target,
            inclusive,
            timeline: TimelineId::new(2).unwrap(),
            action: Action::Promote,
            port: 5434,
            socket_dir: None,
            backup_id: "f".into(),
            major: 13,
            resolved: None,
            archive_command: None,
            primary_conninfo: None,
        };
        // --latest writes no target: both are cleared (else recovery would
        // stop at the fork's LSN, before this backup is even consistent).
        let latest = auto_conf_block_over(&restore(RecoveryTarget::Latest, true), &existing);
        let want = "\
# pitr restore: backup f to the latest archived WAL.
# Change these with ALTER SYSTEM (or remove them) and restart.
restore_command = '/bin/pitr wal-fetch --repo /fork %f %p'
# The backup's postgresql.auto.conf sets recovery targets of its own (a backup
# of a restored server): cleared, so that only this restore's target applies.
recovery_target_lsn = ''
recovery_target_inclusive = on
recovery_target_timeline = '2'
# Archiving stays off so this copy never writes into the source's repository.
archive_mode = 'off'
port = 5434
";
        assert_eq!(latest, want);
        // Another kind: the old one is cleared before the new one is set
        // (Postgres refuses two kinds at once).
        let xid = auto_conf_block_over(
            &restore(RecoveryTarget::Xid(Xid::new(900)), true),
            &existing,
        );
        let at = |needle: &str| {
            xid.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in {xid}"))
        };
        assert!(at("\nrecovery_target_lsn = ''\n") < at("\nrecovery_target_xid = '900'\n"));
        assert!(xid.contains("\nrecovery_target_inclusive = on\n"), "{xid}");
        // The same kind is simply written again (the last line wins).
        let lsn = auto_conf_block_over(
            &restore(RecoveryTarget::Lsn("0/5000000".parse().unwrap()), false),
            &existing,
        );
        assert!(!lsn.contains("cleared"), "{lsn}");
        assert!(
            lsn.contains("\nrecovery_target_lsn = '0/5000000'\nrecovery_target_inclusive = off\n"),
            "{lsn}"
        );
        // Nothing to clear in a backup of an ordinary server.
        assert_eq!(
            auto_conf_block_over(&restore(RecoveryTarget::Latest, true), "work_mem = '8MB'\n"),
            auto_conf_block(&restore(RecoveryTarget::Latest, true))
        );
    }

    #[test]
    fn inherited_targets_are_read_as_postgres_reads_names() {
        let text = "\
# recovery_target_xid = '5' (a comment)
  Recovery_Target_Name 'rp'
recovery_target_time='2026-11-25 14:02:17+00'
recovery_target_timeline = 'latest'
recovery_target_action = 'pause'
recovery_target = immediate
";
        assert_eq!(
            inherited_targets(text),
            [
                "recovery_target",
                "recovery_target_name",
                "recovery_target_time"
            ]
        );
        assert!(inherited_targets("").is_empty());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(guc_quote("a'b"), "'a''b'");
    }
}
