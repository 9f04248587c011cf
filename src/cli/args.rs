//! The command line (clap derive). Names here are the interface: issue
//! texts and docs/commands.md use them exactly.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plan::{parse_time, RecoveryTarget, TargetSpec, TimelineChoice};
use crate::recover::install::Search;
use crate::recover::run::{PlanOptions, RunOptions};
use crate::recover::Action;

use super::exit::Failure;

/// `--action`: what the server does at the target (the library's
/// `recover::Action`, which knows nothing of clap).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionArg {
    /// End recovery and open for writes on a new timeline.
    Promote,
    /// Stay in recovery, read-only, paused at the target.
    Pause,
    /// Stop the server at the target.
    Shutdown,
}

impl From<ActionArg> for Action {
    fn from(a: ActionArg) -> Action {
        match a {
            ActionArg::Promote => Action::Promote,
            ActionArg::Pause => Action::Pause,
            ActionArg::Shutdown => Action::Shutdown,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "pitr",
    version,
    about = "Point-in-time recovery for PostgreSQL"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Settings file (pitr.toml): default /etc/pitr/pitr.toml when it
    /// exists; flags and the environment take precedence over it.
    #[arg(long, global = true, env = "PITR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RepoArg {
    /// Repository: a local path, file:///path or s3://BUCKET/PREFIX.
    #[arg(long, env = "PITR_REPO")]
    pub repo: String,
    #[command(flatten)]
    pub s3: S3Flags,
    #[command(flatten)]
    pub keys: KeyFlags,
}

impl RepoArg {
    pub fn s3_settings(&self) -> crate::repo::store::S3Settings {
        self.s3.settings()
    }

    /// The key files given, and `PITR_KEY`.
    pub fn keys(&self) -> crate::repo::crypt::KeySource {
        self.keys.source()
    }
}

/// The keys of an encrypted repository.
#[derive(Args, Debug, Clone, Default)]
pub struct KeyFlags {
    /// Key file of an encrypted repository (32 random bytes as hex or
    /// base64); repeat it while keys rotate. The key itself may be in
    /// PITR_KEY instead.
    #[arg(
        long = "key-file",
        env = "PITR_KEY_FILE",
        value_delimiter = ':',
        value_name = "FILE"
    )]
    pub key_files: Vec<PathBuf>,
}

impl KeyFlags {
    /// The key files given, and `PITR_KEY`.
    pub fn source(&self) -> crate::repo::crypt::KeySource {
        crate::repo::crypt::KeySource {
            files: self.key_files.clone(),
            env_key: std::env::var(crate::repo::crypt::KEY_ENV)
                .ok()
                .filter(|k| !k.is_empty()),
        }
    }
}

/// How to reach an S3 repository (the AWS_* environment gives the same).
#[derive(Args, Debug, Clone, Default)]
pub struct S3Flags {
    /// S3 region (default: the AWS configuration's, else us-east-1).
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3 endpoint URL, for S3-compatible servers (MinIO, Ceph, R2).
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), for S3-compatible servers.
    #[arg(
        long,
        env = "PITR_S3_PATH_STYLE",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub s3_path_style: bool,
}

impl S3Flags {
    pub fn settings(&self) -> crate::repo::store::S3Settings {
        crate::repo::store::S3Settings {
            region: self.s3_region.clone().filter(|s| !s.is_empty()),
            endpoint: self.s3_endpoint.clone().filter(|s| !s.is_empty()),
            path_style: self.s3_path_style,
        }
    }
}

#[derive(Args, Debug, Clone, Copy)]
pub struct JsonArg {
    /// Print the result as JSON on stdout (no progress output).
    #[arg(long)]
    pub json: bool,
}

/// `pitr snapshot --provider`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderArg {
    Btrfs,
    Copy,
    Command,
}

impl From<ProviderArg> for crate::catalog::SnapshotProvider {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Btrfs => crate::catalog::SnapshotProvider::Btrfs,
            ProviderArg::Copy => crate::catalog::SnapshotProvider::Copy,
            ProviderArg::Command => crate::catalog::SnapshotProvider::Command,
        }
    }
}

/// Where a snapshot provider keeps snapshots, or the operator's commands
/// (`snapshot`, and `maintain` when it may take snapshots).
#[derive(Args, Debug, Clone, Default)]
pub struct ProviderFlags {
    /// btrfs, copy: where snapshots are kept (default: .pitr-snapshots
    /// beside the data directory).
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// command: takes the snapshot (sh -c, with PITR_SNAPSHOT_ID and
    /// PITR_PGDATA); its last line of output is the snapshot's handle.
    #[arg(long, value_name = "SHELL")]
    pub create_command: Option<String>,
    /// command: clones PITR_SNAPSHOT_HANDLE into PITR_TARGET_PGDATA.
    #[arg(long, value_name = "SHELL")]
    pub restore_command: Option<String>,
    /// command: removes PITR_SNAPSHOT_HANDLE.
    #[arg(long, value_name = "SHELL")]
    pub delete_command: Option<String>,
    /// command: the create command's snapshot covers the tablespaces too
    /// (PITR_TABLESPACES names them, `<oid>=<path>` lines), and the
    /// restore command puts each into the directory PITR_TABLESPACES
    /// names; without it a cluster with tablespaces is refused.
    #[arg(long)]
    pub covers_tablespaces: bool,
}

impl ProviderFlags {
    pub fn args(&self) -> crate::capture::snapshot::ProviderArgs {
        crate::capture::snapshot::ProviderArgs {
            snapshot_dir: self.snapshot_dir.clone(),
            create_command: self.create_command.clone(),
            restore_command: self.restore_command.clone(),
            delete_command: self.delete_command.clone(),
            covers_tablespaces: self.covers_tablespaces,
        }
    }
}

/// `--progress`: what a long command shows on stderr while it runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal and the result is not --json.
    #[default]
    Auto,
    /// A bar when stderr is a terminal, even with --json.
    Bar,
    /// One JSON object a line on stderr, once a second (for scripts).
    Json,
    /// Nothing.
    None,
}

/// `--progress auto|bar|json|none`, for every command that restores
/// (restore, rollback; fork and follow flatten it too).
#[derive(Args, Debug, Clone, Copy)]
pub struct ProgressArg {
    /// Progress on stderr: auto (a bar on a terminal, none with --json),
    /// bar, json (one JSON line a second: phase, bytes, LSN, rate, ETA), none.
    #[arg(
        long,
        value_enum,
        value_name = "auto|bar|json|none",
        default_value = "auto"
    )]
    pub progress: ProgressMode,
}

/// The recovery target: exactly one of --to, --by, --lsn, --xid, --name,
/// --latest, --immediate (a clap group: none or two of them is a usage
/// error, exit 2).
#[derive(Args, Debug, Clone)]
#[group(id = "target", required = true, multiple = false)]
pub struct TargetFlags {
    /// Recover to this time (RFC 3339, or "YYYY-MM-DD HH:MM:SS[.ffffff]+TZ"; a zone is required).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Recover to this long ago, e.g. 90m, 2h, 1h30m.
    #[arg(long, value_name = "DURATION")]
    pub by: Option<String>,
    /// Recover to this WAL location, e.g. 0/3000148.
    #[arg(long, value_name = "LSN")]
    pub lsn: Option<String>,
    /// Recover to the end of this transaction: the 32-bit xid, or the
    /// 64-bit form pg_current_xact_id() returns (epoch << 32 | xid).
    #[arg(long, value_name = "XID")]
    pub xid: Option<String>,
    /// Recover to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Recover all archived WAL, then promote.
    #[arg(long)]
    pub latest: bool,
    /// Recover only until the backup is consistent.
    #[arg(long)]
    pub immediate: bool,
}

/// The target and how to reach it.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    #[command(flatten)]
    pub flags: TargetFlags,
    /// Timeline to follow: latest (default), current, or a number.
    #[arg(long, value_name = "latest|current|N", default_value = "latest")]
    pub timeline: String,
    /// Stop just before the target instead of just after it (time, LSN, xid).
    #[arg(long)]
    pub exclusive: bool,
    /// Planning: assumed restore rate in MB/s of data directory (default:
    /// measured by earlier restores from this repository, else 200).
    #[arg(long, value_name = "MBPS")]
    pub restore_rate: Option<f64>,
    /// Planning: assumed WAL replay rate in MB/s (default: measured, else 60).
    #[arg(long, value_name = "MBPS")]
    pub replay_rate: Option<f64>,
    /// Start from this kind of start point, or this backup or snapshot
    /// (default: whichever reaches the target soonest).
    #[arg(long, value_name = "full|incremental|snapshot|ID")]
    pub from: Option<String>,
}

impl TargetArgs {
    /// The target the flags give (clap has already checked that exactly
    /// one target flag is present).
    pub fn spec(&self) -> Result<TargetSpec, Failure> {
        let t = &self.flags;
        let target = if let Some(to) = &t.to {
            RecoveryTarget::Time(parse_time(to)?)
        } else if let Some(by) = &t.by {
            let d = humantime::parse_duration(by).map_err(|e| {
                Failure::usage(format!(
                    "--by {by:?}: {e} (write a duration like 90m, 2h or 1h30m)"
                ))
            })?;
            let d = chrono::Duration::from_std(d)
                .map_err(|_| Failure::usage(format!("--by {by:?} is too long")))?;
            let at = chrono::Utc::now()
                .checked_sub_signed(d)
                .ok_or_else(|| Failure::usage(format!("--by {by:?} is too long")))?;
            // Microseconds, as Postgres keeps them (see parse_time).
            RecoveryTarget::Time(chrono::SubsecRound::round_subsecs(at, 6))
        } else if let Some(l) = &t.lsn {
            RecoveryTarget::Lsn(
                l.parse()
                    .map_err(|e| Failure::usage(format!("--lsn: {e}")))?,
            )
        } else if let Some(x) = &t.xid {
            RecoveryTarget::Xid(
                x.parse()
                    .map_err(|e| Failure::usage(format!("--xid: {e}")))?,
            )
        } else if let Some(n) = &t.name {
            if n.is_empty() || n.len() > 63 {
                return Err(Failure::usage(
                    "--name: a restore point name has 1 to 63 bytes",
                ));
            }
            RecoveryTarget::Name(n.clone())
        } else if t.latest {
            RecoveryTarget::Latest
        } else {
            RecoveryTarget::Immediate
        };
        let timeline: TimelineChoice = self
            .timeline
            .parse()
            .map_err(|e| Failure::usage(format!("--timeline {e}")))?;
        if self.exclusive
            && !matches!(
                target,
                RecoveryTarget::Time(_) | RecoveryTarget::Lsn(_) | RecoveryTarget::Xid(_)
            )
        {
            return Err(Failure::usage(
                "--exclusive applies to --to/--by, --lsn and --xid only",
            ));
        }
        let from = match &self.from {
            Some(f) => f.parse().map_err(Failure::usage)?,
            None => crate::plan::StartFilter::Any,
        };
        Ok(TargetSpec {
            target,
            inclusive: !self.exclusive,
            timeline,
            from,
        })
    }

    /// The planning options these flags give.
    pub fn plan_options(&self, search: Search) -> Result<PlanOptions, Failure> {
        Ok(PlanOptions {
            target: self.spec()?,
            restore_rate: self.restore_rate,
            replay_rate: self.replay_rate,
            search,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Data directory to create (must be new or empty).
    #[arg(long)]
    pub pgdata: PathBuf,
    /// Port for the new server (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Directory holding pg_ctl and postgres of the install to run.
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Unix socket directory for the new server (default: /var/run/postgresql if writable, else /tmp).
    #[arg(long)]
    pub socket_dir: Option<PathBuf>,
    /// Database role pitr connects as to watch recovery.
    #[arg(long, default_value = "postgres")]
    pub db_user: String,
    /// OS user that runs the server when pitr runs as root.
    #[arg(long, default_value = "postgres")]
    pub os_user: String,
    /// Parallel file downloads (default: the cores; 4x that on S3, whose
    /// requests wait on the network more than on the CPU).
    #[arg(long, env = "PITR_JOBS")]
    pub jobs: Option<usize>,
    /// Only materialize the data directory and write the recovery settings;
    /// do not start the server (start it yourself with pg_ctl).
    #[arg(long)]
    pub no_start: bool,
    /// Fail the restore when recovery shows no progress for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub stall_timeout: u64,
    /// Restore the tablespace that was at OLD into NEW instead (both
    /// absolute; repeatable). Without it each goes back where it was.
    #[arg(long = "tablespace-map", value_name = "OLD=NEW", value_parser = tablespace_mapping)]
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,
    #[command(flatten)]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `--tablespace-map`: see `recover::tablespaces::parse_mapping`.
fn tablespace_mapping(
    text: &str,
) -> Result<(PathBuf, PathBuf), crate::recover::tablespaces::TablespaceError> {
    crate::recover::tablespaces::parse_mapping(text)
}

impl RestoreArgs {
    /// The library's options for this restore (`created_dir`: what
    /// `drop_privileges` created for `--pgdata`).
    pub fn run_options(
        &self,
        action: Action,
        search: Search,
        created_dir: Option<PathBuf>,
    ) -> Result<RunOptions, Failure> {
        Ok(RunOptions {
            plan: self.target.plan_options(search)?,
            pgdata: self.pgdata.clone(),
            port: self.port,
            socket_dir: self.socket_dir.clone(),
            action,
            db_user: self.db_user.clone(),
            jobs: self.jobs.unwrap_or_else(|| default_jobs(&self.repo.repo)),
            start: !self.no_start,
            stall_timeout: std::time::Duration::from_secs(self.stall_timeout.max(1)),
            created_dir,
            primary_conninfo: None,
            archive: None,
            tablespace_map: self.tablespace_map.clone(),
        })
    }
}

/// `pitr follow`: a standby restored from the repository's newest backup.
#[derive(Args, Debug, Clone)]
pub struct FollowArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Data directory to create for the standby (must be new or empty).
    #[arg(long)]
    pub pgdata: PathBuf,
    /// Port for the standby (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Also stream WAL from this primary (libpq connection string, written
    /// as primary_conninfo), e.g. "host=db1 port=5432 user=replicator".
    #[arg(long, value_name = "CONNINFO")]
    pub primary_conninfo: Option<String>,
    /// Directory holding pg_ctl and postgres of the install to run.
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// Unix socket directory for the standby (default: /var/run/postgresql if writable, else /tmp).
    #[arg(long)]
    pub socket_dir: Option<PathBuf>,
    /// Database role pitr connects as to see the standby ready.
    #[arg(long, default_value = "postgres")]
    pub db_user: String,
    /// OS user that runs the standby when pitr runs as root.
    #[arg(long, default_value = "postgres")]
    pub os_user: String,
    /// Parallel file downloads (default: the cores; 4x that on S3).
    #[arg(long, env = "PITR_JOBS")]
    pub jobs: Option<usize>,
    /// Fail when the standby shows no progress towards accepting
    /// connections for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub stall_timeout: u64,
    /// Restore the tablespace that was at OLD into NEW instead (both
    /// absolute; repeatable).
    #[arg(long = "tablespace-map", value_name = "OLD=NEW", value_parser = tablespace_mapping)]
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,
    #[command(flatten)]
    pub progress: ProgressArg,
    #[command(flatten)]
    pub json: JsonArg,
}

impl FollowArgs {
    /// The library's options: a standby (`Action::Standby`) of the plan
    /// for `--latest` on the newest timeline.
    pub fn run_options(&self, search: Search, created_dir: Option<PathBuf>) -> RunOptions {
        RunOptions {
            plan: PlanOptions {
                target: TargetSpec {
                    target: RecoveryTarget::Latest,
                    inclusive: true,
                    timeline: TimelineChoice::Latest,
                    from: crate::plan::StartFilter::Any,
                },
                restore_rate: None,
                replay_rate: None,
                search,
            },
            pgdata: self.pgdata.clone(),
            port: self.port,
            socket_dir: self.socket_dir.clone(),
            action: Action::Standby,
            db_user: self.db_user.clone(),
            jobs: self.jobs.unwrap_or_else(|| default_jobs(&self.repo.repo)),
            start: true,
            stall_timeout: std::time::Duration::from_secs(self.stall_timeout.max(1)),
            created_dir,
            primary_conninfo: self.primary_conninfo.clone(),
            archive: None,
            tablespace_map: self.tablespace_map.clone(),
        }
    }
}

/// `--max-rate`: see `capture::backup::parse_rate`.
fn max_rate(text: &str) -> Result<std::num::NonZeroU64, crate::capture::backup::RateError> {
    crate::capture::backup::parse_rate(text)
}

/// `pitr verify`: check every object of a repository, or (`--restore`)
/// restore it to a scratch directory and check the running copy.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Restore the newest backup (or the plan for --to) into a scratch
    /// directory, start it, check it (pg_amcheck, data checksums), report
    /// the time to usable, and remove it.
    #[arg(long)]
    pub restore: bool,
    /// With --restore: restore to this time instead of the latest
    /// (RFC 3339, or "YYYY-MM-DD HH:MM:SS[.ffffff]+TZ"; a zone is required).
    #[arg(long, value_name = "TIME", requires = "restore")]
    pub to: Option<String>,
    /// With --restore: the bin directory of the install to run (default:
    /// the one `pitr restore` would choose).
    #[arg(long, value_name = "DIR", requires = "restore")]
    pub pg_bin: Option<PathBuf>,
    /// Objects read at once (default: the cores; 4x that on S3); with
    /// --restore, parallel file downloads.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// With --restore: database role pitr connects to the scratch server as.
    #[arg(long, default_value = "postgres")]
    pub db_user: String,
    /// With --restore: OS user that runs the scratch server when pitr runs as root.
    #[arg(long, default_value = "postgres")]
    pub os_user: String,
    /// With --restore: fail when recovery shows no progress for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub stall_timeout: u64,
    #[command(flatten)]
    pub json: JsonArg,
}

/// Parallel transfers when `--jobs` is not given.
pub fn default_jobs(repo: &str) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    if repo.starts_with("s3://") {
        cores * 4
    } else {
        cores
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository for the cluster in --pgdata.
    Init {
        #[command(flatten)]
        repo: RepoArg,
        /// The cluster's data directory (its pg_control gives the identity).
        #[arg(long)]
        pgdata: PathBuf,
        /// Encrypt every data object with the key given (--key-file or
        /// PITR_KEY); chosen once, when the repository is created.
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// archive_command: store one WAL segment, history or .backup file.
    WalPush {
        #[command(flatten)]
        repo: RepoArg,
        /// The file to archive (%p).
        path: PathBuf,
        #[command(flatten)]
        json: JsonArg,
    },
    /// restore_command: fetch one archived file (%f) to a path (%p).
    WalFetch {
        #[command(flatten)]
        repo: RepoArg,
        /// Archived file name (%f).
        name: String,
        /// Destination path (%p).
        dest: PathBuf,
        /// Prefetch spool: a background prefetcher keeps the next segments
        /// fetched and verified here, so replay never waits on the store.
        #[arg(long, value_name = "DIR")]
        spool: Option<PathBuf>,
        /// Segments kept fetched ahead in the spool (0: no prefetcher).
        #[arg(long, value_name = "N", default_value_t = 16, requires = "spool")]
        prefetch: usize,
    },
    /// The spool's background prefetcher, started by `wal-fetch --spool`.
    #[command(hide = true)]
    WalPrefetch {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        #[arg(long, value_name = "N", default_value_t = 16)]
        prefetch: usize,
        /// Segments fetched at once (default: the cores; 4x that on S3).
        #[arg(long, env = "PITR_JOBS")]
        jobs: Option<usize>,
    },
    /// Take a base backup of a running cluster: full, or with --incremental
    /// only what changed since a parent backup.
    Backup {
        #[command(flatten)]
        repo: RepoArg,
        /// The cluster's data directory.
        #[arg(long)]
        pgdata: PathBuf,
        /// libpq-style connection string (default: from postmaster.pid).
        #[arg(long, value_name = "CONNINFO")]
        conn: Option<String>,
        /// Backup label.
        #[arg(long)]
        label: Option<String>,
        /// Let the starting checkpoint spread out instead of forcing it now.
        #[arg(long)]
        spread_checkpoint: bool,
        /// Parallel file uploads (default: the cores; 4x that on S3).
        #[arg(long, env = "PITR_JOBS")]
        jobs: Option<usize>,
        /// Seconds to wait for the backup's last WAL segment to be archived
        /// (and, with --from-standby, for the standby to reach the start).
        #[arg(long, default_value_t = 120)]
        archive_timeout: u64,
        /// Read the data directory at most this fast, over all jobs: bytes
        /// per second, or with a binary suffix k, M, G (500k, 50M, 1G).
        #[arg(long, env = "PITR_MAX_RATE", value_name = "BYTES_PER_SEC", value_parser = max_rate)]
        max_rate: Option<std::num::NonZeroU64>,
        /// Copy the files from this streaming standby (libpq connection
        /// string); --conn is the primary, which brackets the backup, and
        /// --pgdata the standby's data directory.
        #[arg(long, value_name = "CONNINFO", requires = "conn")]
        from_standby: Option<String>,
        /// Store only what changed since the parent backup: the newest full
        /// or incremental backup on the server's timeline, or --parent.
        #[arg(long)]
        incremental: bool,
        /// The backup an incremental is taken on (an id from `pitr info`).
        #[arg(long, value_name = "ID", requires = "incremental")]
        parent: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Record a snapshot of the data directory as a start point.
    Snapshot {
        #[command(flatten)]
        repo: RepoArg,
        /// The cluster's data directory.
        #[arg(long)]
        pgdata: PathBuf,
        /// Who keeps the snapshot.
        #[arg(long, value_enum)]
        provider: ProviderArg,
        /// libpq-style connection string (default: from postmaster.pid).
        #[arg(long, value_name = "CONNINFO")]
        conn: Option<String>,
        /// No backup API: the snapshot is one instant image of the running
        /// server (btrfs, or an atomic volume snapshot); only targets after
        /// the end of WAL read right after it are reachable. Needs --conn.
        #[arg(long)]
        atomic: bool,
        #[command(flatten)]
        where_: ProviderFlags,
        /// Seconds to wait for the snapshot's last WAL segment to be archived.
        #[arg(long, default_value_t = 120)]
        archive_timeout: u64,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show the repository: cluster, backups, WAL per timeline, restorable times.
    Info {
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Plan a restore without touching anything.
    Plan {
        #[command(flatten)]
        repo: RepoArg,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Restore a new server to a point in time.
    Restore {
        #[command(flatten)]
        args: RestoreArgs,
        /// What the server does at the target.
        #[arg(long, value_enum, default_value = "promote")]
        action: ActionArg,
    },
    /// Show a data directory's or a backup's fingerprint and checkpoint facts.
    Inspect {
        /// A data directory (reads global/pg_control, PG_VERSION, backup_label).
        pgdata: Option<PathBuf>,
        /// A backup in the repository (--repo or PITR_REPO) instead.
        #[arg(long, value_name = "ID", conflicts_with = "pgdata")]
        backup: Option<String>,
        /// Repository, for --backup (S3 settings come from AWS_REGION,
        /// AWS_ENDPOINT_URL and PITR_S3_PATH_STYLE).
        #[arg(long, env = "PITR_REPO")]
        repo: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List the PostgreSQL installs found here and their fingerprints.
    Installs {
        /// Another bin directory to consider (repeatable).
        #[arg(long = "pg-bin")]
        pg_bin: Vec<PathBuf>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// A standby restored from the newest backup, replaying WAL as it is archived.
    Follow {
        #[command(flatten)]
        args: FollowArgs,
    },
    /// Where the server of a data directory is: recovery, replay position, lag behind the repository.
    Status {
        /// The server's data directory.
        #[arg(long)]
        pgdata: PathBuf,
        /// Repository to measure the lag against (default: the one the
        /// server's restore_command, or archive_command, names).
        #[arg(long, env = "PITR_REPO")]
        repo: Option<String>,
        #[command(flatten)]
        s3: S3Flags,
        /// Database role pitr connects as.
        #[arg(long, default_value = "postgres")]
        db_user: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Capture what keeps the estimated replay from the newest start point
    /// under a bound (nothing, an incremental, a snapshot or a full
    /// backup), with a backup in the repository at least daily: run it
    /// from cron or a timer.
    Maintain {
        #[command(flatten)]
        repo: RepoArg,
        /// The cluster's data directory.
        #[arg(long)]
        pgdata: PathBuf,
        /// libpq-style connection string (default: from postmaster.pid).
        #[arg(long, value_name = "CONNINFO")]
        conn: Option<String>,
        /// The longest estimated WAL replay from the newest start point to
        /// any moment (e.g. 5m).
        #[arg(long, value_name = "DURATION")]
        max_replay: String,
        /// How often maintain runs: the bound must hold until the next run.
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        interval: String,
        /// A backup in the repository at least this often.
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        max_age: String,
        /// Incrementals on one full backup, at most.
        #[arg(long, value_name = "N", default_value_t = 6)]
        max_chain: usize,
        /// Take snapshots with this provider when replay is the reason.
        #[arg(long, value_enum)]
        provider: Option<ProviderArg>,
        #[command(flatten)]
        where_: ProviderFlags,
        /// Parallel file uploads of a backup.
        #[arg(long, env = "PITR_JOBS")]
        jobs: Option<usize>,
        /// Read the data directory at most this fast (a backup's --max-rate).
        #[arg(long, env = "PITR_MAX_RATE", value_name = "BYTES_PER_SEC", value_parser = max_rate)]
        max_rate: Option<std::num::NonZeroU64>,
        /// Seconds to wait for a capture's last WAL segment to be archived.
        #[arg(long, default_value_t = 120)]
        archive_timeout: u64,
        /// Say what would be captured and why; capture nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Rotate keys: list a new key in an encrypted repository (opened
    /// with a current one); new objects are sealed with it from then on.
    AddKey {
        #[command(flatten)]
        repo: RepoArg,
        /// The new key's file (32 random bytes as hex or base64).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Remove backups, snapshots and WAL that no moment inside the
    /// retention window needs.
    Expire {
        #[command(flatten)]
        repo: RepoArg,
        /// Every moment from this long ago until now stays restorable
        /// (e.g. 14d, 36h).
        #[arg(long, env = "PITR_KEEP_WINDOW", value_name = "DURATION")]
        keep_window: String,
        /// Keep the newest N full backups too, whatever their age.
        #[arg(long, env = "PITR_KEEP_FULL", value_name = "N", default_value_t = 0)]
        keep_full: usize,
        /// List what would go and the bytes freed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Is the protection working: backup age, WAL continuity, catalog,
    /// and with --pgdata the server's archive lag and archiver (for cron
    /// and monitoring; exit 0 ok, 11 warning, 12 critical).
    Check {
        #[command(flatten)]
        repo: RepoArg,
        /// A running server to check the archiving of.
        #[arg(long)]
        pgdata: Option<PathBuf>,
        /// Database role pitr connects as.
        #[arg(long, default_value = "postgres")]
        db_user: String,
        /// The newest start point's age that warns (e.g. 26h).
        #[arg(long, value_name = "DURATION", default_value = "26h")]
        warn_backup_age: String,
        /// ... and that is critical.
        #[arg(long, value_name = "DURATION", default_value = "50h")]
        crit_backup_age: String,
        /// WAL written and not archived that warns (bytes; k, M, G suffixes).
        #[arg(long, value_name = "BYTES", default_value = "128M")]
        warn_archive_lag: String,
        /// ... and that is critical.
        #[arg(long, value_name = "BYTES", default_value = "1G")]
        crit_archive_lag: String,
        /// No passing `pitr verify` for this long warns (so does none).
        #[arg(long, value_name = "DURATION", default_value = "8d")]
        warn_verify_age: String,
        /// Nagios plugin exit codes: 0 ok, 1 warning, 2 critical, 3 unknown
        /// (the check could not run).
        #[arg(long)]
        nagios: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Make the standby of a data directory a primary (and archive into a repository).
    Promote {
        /// The standby's data directory.
        #[arg(long)]
        pgdata: PathBuf,
        /// Turn archiving on into this repository (it must hold this
        /// database system) and push the new timeline's history file.
        #[arg(long, value_name = "REPO")]
        archive_to: Option<String>,
        #[command(flatten)]
        s3: S3Flags,
        #[command(flatten)]
        keys: KeyFlags,
        /// Database role pitr connects as.
        #[arg(long, default_value = "postgres")]
        db_user: String,
        /// Seconds the promotion may take.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u64,
        #[command(flatten)]
        json: JsonArg,
    },
    /// A promoted, writable copy at a target, archiving into a repository
    /// of its own (--new-repo) with a first backup there.
    #[command(mut_arg("no_start", |a| a.hide(true)))]
    Fork {
        #[command(flatten)]
        args: RestoreArgs,
        /// The fork's own repository (a local path, file:///path or
        /// s3://BUCKET/PREFIX; new or empty, never --repo or inside it); the
        /// S3 flags apply to it as to --repo.
        #[arg(long, value_name = "REPO")]
        new_repo: String,
        /// Seconds the first backup waits for its last WAL segment (and the
        /// fork for its timeline's history file) to reach --new-repo.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        archive_timeout: u64,
    },
    /// Check every object of the repository against its checksum, WAL
    /// continuity, manifests and the catalog; or, with --restore, restore
    /// to a scratch directory and check the running copy.
    Verify {
        #[command(flatten)]
        args: VerifyArgs,
    },
    /// A new database as it was at --to TIME (or --by DURATION ago), promoted.
    Rollback {
        #[command(flatten)]
        args: RestoreArgs,
        /// After restoring onto a matching install, move the data into the
        /// newer install in DIR (pg_dumpall | psql) and leave that running.
        #[arg(long, value_name = "DIR")]
        upgrade_to: Option<PathBuf>,
    },
}

/// A duration flag (`90m`, `26h`, `7d`).
pub fn parse_duration(flag: &str, v: &str) -> Result<std::time::Duration, Failure> {
    humantime::parse_duration(v).map_err(|e| {
        Failure::usage(format!(
            "{flag} {v:?}: {e} (write a duration like 90m, 26h or 7d)"
        ))
    })
}

/// A size flag: bytes, or a number with k, M or G (powers of 1024).
pub fn parse_bytes(flag: &str, v: &str) -> Result<u64, Failure> {
    crate::capture::backup::parse_size(v).ok_or_else(|| {
        Failure::usage(format!(
            "{flag} {v:?} is not a size: write bytes, or a number with k, M or G (powers of 1024), e.g. 128M"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["pitr", "plan", "--repo", "/r"].iter().chain(args).copied())
    }

    #[test]
    fn exactly_one_target_flag() {
        use clap::error::ErrorKind;
        let none = parse(&[]).unwrap_err();
        assert_eq!(none.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(none.exit_code(), 2);
        let two = parse(&["--name", "rp", "--xid", "5"]).unwrap_err();
        assert_eq!(two.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(two.exit_code(), 2);
        assert!(parse(&["--latest", "--immediate"]).is_err());
        for one in [
            &["--to", "2026-11-25 14:02:17+00"][..],
            &["--by", "90m"],
            &["--lsn", "0/3000148"],
            &["--xid", "5"],
            &["--name", "rp"],
            &["--latest"],
            &["--immediate"],
        ] {
            let cli = parse(one).unwrap_or_else(|e| panic!("{one:?}: {e}"));
            let Command::Plan { target, .. } = cli.command else {
                panic!("not plan");
            };
            assert!(target.spec().is_ok(), "{one:?}");
        }
    }

    #[test]
    fn fork_takes_restores_flags_and_its_own_repository() {
        use clap::error::ErrorKind;
        let fork = |args: &[&str]| {
            Cli::try_parse_from(
                ["pitr", "fork", "--repo", "/r", "--pgdata", "/d"]
                    .iter()
                    .chain(args)
                    .copied(),
            )
        };
        let cli = fork(&[
            "--xid",
            "733",
            "--new-repo",
            "s3://b/fork",
            "--port",
            "5433",
        ])
        .unwrap();
        let Command::Fork {
            args,
            new_repo,
            archive_timeout,
        } = cli.command
        else {
            panic!("not fork");
        };
        assert_eq!(new_repo, "s3://b/fork");
        assert_eq!(archive_timeout, 120);
        assert_eq!(args.port, Some(5433));
        assert!(matches!(
            args.target.spec().unwrap().target,
            RecoveryTarget::Xid(_)
        ));
        // --new-repo is required, a target too; a fork always promotes.
        let e = fork(&["--latest"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = fork(&["--new-repo", "/r2"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = fork(&["--latest", "--new-repo", "/r2", "--action", "pause"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn verify_takes_restore_flags_only_with_restore() {
        use clap::error::ErrorKind;
        let verify = |args: &[&str]| {
            Cli::try_parse_from(
                ["pitr", "verify", "--repo", "/r"]
                    .iter()
                    .chain(args)
                    .copied(),
            )
        };
        let Command::Verify { args } = verify(&["--json", "--jobs", "3"]).unwrap().command else {
            panic!("not verify");
        };
        assert!(!args.restore && args.json.json);
        assert_eq!(args.jobs, Some(3));
        let Command::Verify { args } = verify(&[
            "--restore",
            "--to",
            "2026-11-25 14:02:17+00",
            "--pg-bin",
            "/usr/lib/postgresql/15/bin",
        ])
        .unwrap()
        .command
        else {
            panic!("not verify");
        };
        assert!(args.restore && args.to.is_some() && args.pg_bin.is_some());
        for alone in [&["--to", "2026-11-25 14:02:17+00"][..], &["--pg-bin", "/x"]] {
            let e = verify(alone).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument, "{alone:?}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn target_spec_checks_what_clap_cannot() {
        let spec = |args: &[&str]| match parse(args).unwrap().command {
            Command::Plan { target, .. } => target.spec(),
            _ => panic!("not plan"),
        };
        let e = spec(&["--name", "rp", "--exclusive"]).unwrap_err();
        assert_eq!(e.code, crate::cli::exit::Code::Usage);
        let e = spec(&["--to", "2026-11-25 14:02"]).unwrap_err();
        assert_eq!(e.code, crate::cli::exit::Code::Usage);
        let long = "x".repeat(64);
        assert!(spec(&["--name", &long]).is_err());
        // Both forms of an xid; anything else is a usage error.
        let x = |v: &str| match spec(&[&format!("--xid={v}")]).map(|s| s.target) {
            Ok(RecoveryTarget::Xid(x)) => Ok((x.xid(), x.epoch())),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.code),
        };
        assert_eq!(x("733"), Ok((733, None)));
        assert_eq!(x("4294968029"), Ok((733, Some(1))));
        for bad in ["abc", "-1", "0", "7e3", "18446744073709551616"] {
            assert_eq!(x(bad), Err(crate::cli::exit::Code::Usage), "{bad}");
        }
        let ok = spec(&["--lsn", "0/3000148", "--exclusive", "--timeline", "2"]).unwrap();
        assert!(!ok.inclusive);
    }

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_bytes("--x", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("--x", "128M").unwrap(), 128 << 20);
        assert_eq!(parse_bytes("--x", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("--x", " 2k ").unwrap(), 2048);
        for bad in ["", "M", "12Q", "lots", "-1", "5T", "99999999999999999999"] {
            let e = parse_bytes("--x", bad).unwrap_err();
            assert_eq!(e.code, crate::cli::exit::Code::Usage, "{bad}");
            assert!(e.error.to_string().contains("is not a size"), "{bad}");
        }
    }
}
