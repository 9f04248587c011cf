//! The `pitr` command line: argument parsing (`args`), exit codes
//! (`exit`), progress (`report`) and the glue that runs each command.
//! Business rules live in the library; this layer adds context, chooses
//! the OS user, and prints.

pub mod args;
pub mod exit;
pub mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use crate::capture::backup::{self, BackupEvent, BackupOptions};
use crate::capture::{wal_fetch, wal_push, wal_spool};
use crate::catalog::{Catalog, RepoConfig};
use crate::plan::compat;
use crate::plan::{self, explain, RecoveryTarget, TargetSpec, TimelineChoice};
use crate::recover::{self, Action, RecoverEvent, RestoreOptions};
use crate::repo::store::PutMode;
use crate::repo::{layout, Repo, RepoLocation, KIND_CONFIG};
use crate::server::{install, user};
use args::{Cli, Command, RestoreArgs, TargetArgs};
use exit::{Code, Failure};
use report::Reporter;

/// wal-fetch through the spool: records the request, makes sure a
/// prefetcher runs, and hands over the segment if it is spooled. Any
/// trouble with the spool only costs speed: the caller fetches directly.
fn spooled_fetch(
    repo: &args::RepoArg,
    dir: &Path,
    prefetch: usize,
    name: &str,
    dest: &Path,
) -> bool {
    use crate::pg::WalFileName;
    if !matches!(WalFileName::parse(name), Ok(WalFileName::Segment(_))) {
        return false;
    }
    let spool = wal_spool::Spool::new(dir);
    if let Err(e) = spool.note_request(name) {
        tracing::warn!("prefetch spool {}: {e}", dir.display());
        return false;
    }
    if prefetch > 0 && !spool.prefetcher_running() {
        if let Err(e) = start_prefetcher(repo, dir, prefetch) {
            tracing::warn!("cannot start the WAL prefetcher: {e}");
        }
    }
    match spool.take(name, dest) {
        Ok(hit) => hit,
        Err(e) => {
            tracing::warn!("prefetch spool {}: {e}", dir.display());
            false
        }
    }
}

/// Starts `pitr wal-prefetch` detached (own process group, no terminal,
/// errors appended to `DIR/.log`); it outlives this restore_command.
fn start_prefetcher(repo: &args::RepoArg, dir: &Path, prefetch: usize) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(".log"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("wal-prefetch")
        .arg("--repo")
        .arg(&repo.repo)
        .arg("--spool")
        .arg(dir)
        .arg("--prefetch")
        .arg(prefetch.to_string());
    cmd.args(repo.s3_settings().to_args());
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(())
}

async fn open_repo(arg: &args::RepoArg) -> Result<Repo, Failure> {
    Ok(Repo::open(RepoLocation::parse(&arg.repo)?, &arg.s3_settings()).await)
}

fn print_json<T: Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure::new(Code::Internal, e))?;
    println!("{s}");
    Ok(())
}

/// The JSON of `v` with `peak_rss_bytes`: this process's peak resident
/// memory so far (backup and restore report it; it is bounded by --jobs,
/// not by the size of the database).
fn print_json_with_rss<T: Serialize>(v: &T) -> Result<(), Failure> {
    let mut value = serde_json::to_value(v).map_err(|e| Failure::new(Code::Internal, e))?;
    if let serde_json::Value::Object(map) = &mut value {
        map.insert(
            "peak_rss_bytes".to_string(),
            serde_json::Value::from(report::peak_rss_bytes()),
        );
    }
    print_json(&value)
}

/// The outermost directory `drop_privileges` created for a restore's
/// --pgdata: removed again if the restore is refused before writing data.
static CREATED_PGDATA: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Before any thread exists: when running as root, become the OS user the
/// command's files belong to (see `server::user`).
pub fn drop_privileges(cli: &Cli) -> Result<(), Failure> {
    if !user::is_root() {
        return Ok(());
    }
    match &cli.command {
        Command::Init { repo, pgdata, .. } => {
            let owner = user::owner_of(pgdata)?;
            let location = RepoLocation::parse(&repo.repo)?;
            if let Some(root) = location.local_path() {
                crate::repo::store::FsStore::new(root).create_root()?;
                std::os::unix::fs::chown(root, Some(owner.uid), Some(owner.gid)).map_err(|e| {
                    Failure::new(Code::Storage, e).context(format!(
                        "giving {} to {}",
                        root.display(),
                        owner.name
                    ))
                })?;
            }
            user::become_user(&owner)?;
        }
        Command::Backup { pgdata, .. } => user::become_user(&user::owner_of(pgdata)?)?,
        Command::WalPush { repo, .. } => {
            let location = RepoLocation::parse(&repo.repo)?;
            if let Some(root) = location.local_path() {
                if let Ok(owner) = user::owner_of(root) {
                    user::become_user(&owner)?;
                }
            }
        }
        Command::Restore { args, .. } | Command::Rollback { args, .. } => {
            // Usage errors first: nothing is created for a command that
            // cannot run.
            check_restore_args(&cli.command)?;
            let os_user = user::lookup(&args.os_user)?;
            if let Some(port) = args.port {
                let sockets = args.socket_dir.clone();
                recover::instance::check_port(
                    port,
                    &sockets.unwrap_or_else(recover::instance::default_socket_dir),
                )?;
            }
            let dir = &args.pgdata;
            let created =
                recover::create_pgdata(dir, Some((os_user.uid, os_user.gid))).map_err(|e| {
                    Failure::new(Code::Usage, e).context(format!("creating {}", dir.display()))
                })?;
            if let Some(root) = created {
                let _ = CREATED_PGDATA.set(root);
            }
            // Only an empty directory is handed over: a non-empty one is
            // refused by restore, and its ownership must not change.
            let empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty {
                std::os::unix::fs::chown(dir, Some(os_user.uid), Some(os_user.gid)).map_err(
                    |e| {
                        Failure::new(Code::Usage, e).context(format!(
                            "giving {} to {}",
                            dir.display(),
                            os_user.name
                        ))
                    },
                )?;
            }
            if let Command::Rollback {
                upgrade_to: Some(_),
                ..
            } = &cli.command
            {
                let physical = physical_dir(dir);
                std::fs::create_dir_all(&physical).map_err(|e| {
                    Failure::new(Code::Usage, e).context(format!("creating {}", physical.display()))
                })?;
                std::os::unix::fs::chown(&physical, Some(os_user.uid), Some(os_user.gid)).map_err(
                    |e| {
                        Failure::new(Code::Usage, e).context(format!(
                            "giving {} to {}",
                            physical.display(),
                            os_user.name
                        ))
                    },
                )?;
            }
            user::become_user(&os_user)?;
        }
        Command::WalFetch { .. }
        | Command::WalPrefetch { .. }
        | Command::Info { .. }
        | Command::Plan { .. }
        | Command::Installs { .. }
        | Command::Inspect { .. } => {}
    }
    Ok(())
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init { repo, pgdata, json } => init(&repo, &pgdata, json.json).await,
        Command::WalPush { repo, path, json } => {
            let repo = open_repo(&repo).await?;
            let out = wal_push::wal_push(&repo, &path).await?;
            if json.json {
                print_json(&out)?;
            }
            Ok(())
        }
        Command::WalFetch {
            repo,
            name,
            dest,
            spool,
            prefetch,
        } => {
            if let Some(dir) = spool {
                if spooled_fetch(&repo, &dir, prefetch, &name, &dest) {
                    return Ok(());
                }
            }
            async {
                let repo = open_repo(&repo).await?;
                wal_fetch::wal_fetch(&repo, &name, &dest).await?;
                Ok(())
            }
            .await
            .map_err(Failure::stop_recovery)
        }
        Command::WalPrefetch {
            repo,
            spool,
            prefetch,
            jobs,
        } => {
            let jobs = jobs.unwrap_or_else(|| args::default_jobs(&repo.repo));
            let repo = open_repo(&repo).await?;
            wal_spool::prefetch(&repo, &wal_spool::Spool::new(spool), prefetch, jobs).await?;
            Ok(())
        }
        Command::Backup {
            repo,
            pgdata,
            conn,
            label,
            spread_checkpoint,
            jobs,
            archive_timeout,
            json,
        } => {
            let jobs = jobs.unwrap_or_else(|| args::default_jobs(&repo.repo));
            let repo = open_repo(&repo).await?;
            let opts = BackupOptions {
                pgdata,
                conninfo: conn,
                label,
                fast: !spread_checkpoint,
                jobs,
                archive_timeout: Duration::from_secs(archive_timeout),
            };
            let reporter = Reporter::new(json.json);
            let r2 = reporter.clone();
            let rec = backup::backup(&repo, &opts, move |ev| match ev {
                BackupEvent::Started { total_bytes, .. } => r2.bytes(total_bytes, "backup"),
                BackupEvent::FileDone { bytes } => r2.inc(bytes),
                BackupEvent::Stopped { .. } => r2.finish(),
            })
            .await;
            reporter.finish();
            let rec = rec?;
            if json.json {
                print_json_with_rss(&rec)?;
            } else {
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
            }
            Ok(())
        }
        Command::Info { repo, json } => info(&repo, json.json).await,
        Command::Plan { repo, target, json } => {
            let target_args = target;
            let target = resolve_target(&target_args)?;
            let repo = open_repo(&repo).await?;
            let catalog = repo.load_catalog().await?;
            let cost = target_args.cost_model(&catalog);
            let mut plan = plan::plan(&catalog, &target, &cost)?;
            plan.damaged = catalog.damaged.clone();
            refine(&repo, &mut plan).await;
            plan.install = Some(match select_install(&catalog, &plan, None) {
                Ok(i) => format!("{} (PostgreSQL {})", i.bin_dir, i.version),
                Err(f) => format!("none here can run it: {:#}", f.error),
            });
            if json.json {
                print_json(&plan)
            } else {
                print!("{}", explain::render(&plan));
                print_damaged(&plan.damaged);
                Ok(())
            }
        }
        Command::Restore { args, action } => restore(args, action.into()).await,
        Command::Installs { pg_bin, json } => installs(&pg_bin, json.json),
        Command::Inspect {
            pgdata,
            backup,
            repo,
            json,
        } => inspect(pgdata.as_deref(), backup.as_deref(), repo, json.json).await,
        Command::Rollback {
            args,
            upgrade_to: None,
        } => restore(args, Action::Promote).await,
        Command::Rollback {
            args,
            upgrade_to: Some(dir),
        } => rollback_upgrade(args, &dir).await,
    }
}

fn resolve_target(t: &TargetArgs) -> Result<TargetSpec, Failure> {
    let given = [
        t.to.is_some(),
        t.by.is_some(),
        t.lsn.is_some(),
        t.xid.is_some(),
        t.name.is_some(),
        t.latest,
        t.immediate,
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(Failure::usage(format!(
            "give exactly one target ({given} given): --to TIME (e.g. \"2026-11-25 14:02:17+00\"), --by DURATION (e.g. 90m), --lsn LSN, --xid XID, --name NAME, --latest or --immediate"
        )));
    }
    let target = if let Some(to) = &t.to {
        RecoveryTarget::Time(plan::parse_time(to)?)
    } else if let Some(by) = &t.by {
        let d = humantime::parse_duration(by).map_err(|e| {
            Failure::usage(format!(
                "--by {by:?}: {e} (write a duration like 90m, 2h or 1h30m)"
            ))
        })?;
        let d = chrono::Duration::from_std(d)
            .map_err(|_| Failure::usage(format!("--by {by:?} is too long")))?;
        let at = Utc::now()
            .checked_sub_signed(d)
            .ok_or_else(|| Failure::usage(format!("--by {by:?} is too long")))?;
        RecoveryTarget::Time(at)
    } else if let Some(l) = &t.lsn {
        RecoveryTarget::Lsn(
            l.parse()
                .map_err(|e| Failure::usage(format!("--lsn: {e}")))?,
        )
    } else if let Some(x) = t.xid {
        RecoveryTarget::Xid(x)
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
    let timeline: TimelineChoice = t
        .timeline
        .parse()
        .map_err(|e| Failure::usage(format!("--timeline {e}")))?;
    if t.exclusive
        && !matches!(
            target,
            RecoveryTarget::Time(_) | RecoveryTarget::Lsn(_) | RecoveryTarget::Xid(_)
        )
    {
        return Err(Failure::usage(
            "--exclusive applies to --to/--by, --lsn and --xid only",
        ));
    }
    Ok(TargetSpec {
        target,
        inclusive: !t.exclusive,
        timeline,
    })
}

/// The configured list of install bin directories: `PITR_PG_BIN_DIRS`,
/// colon-separated (searched besides the usual places).
fn configured_dirs() -> Vec<std::path::PathBuf> {
    install::configured_dirs(std::env::var_os("PITR_PG_BIN_DIRS").as_deref())
}

/// The OS user that scratch initdb runs as: postgres when pitr is root.
fn initdb_user() -> Option<user::OsUser> {
    if user::is_root() {
        user::lookup("postgres").ok()
    } else {
        None
    }
}

fn install_facts(
    i: &install::Install,
    os_user: Option<&user::OsUser>,
) -> Result<compat::InstallFacts, Failure> {
    let fingerprint = install::fingerprint(i, os_user, &install::default_cache_dir())
        .map_err(|e| Failure::new(Code::Incompatible, e))?;
    Ok(compat::InstallFacts {
        bin_dir: i.bin_dir.display().to_string(),
        version: i.version.clone(),
        major: i.major,
        fingerprint,
        arch: install::machine_arch().to_string(),
    })
}

/// The install that will run a restore of `plan`'s backup: `--pg-bin`
/// if given (refused, before anything is fetched, if it cannot run the
/// backup), else the first compatible install found on this machine.
fn select_install(
    catalog: &crate::catalog::Catalog,
    plan: &plan::Plan,
    pg_bin: Option<&Path>,
) -> Result<compat::InstallFacts, Failure> {
    let Some(backup) = catalog.backups.iter().find(|b| b.id == plan.backup.id) else {
        return Err(Failure::new(
            Code::Internal,
            anyhow::anyhow!("planned backup {} is not in the catalog", plan.backup.id),
        ));
    };
    let os_user = initdb_user();
    let found = match pg_bin {
        Some(dir) => {
            let want = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let all = install::discover(&[dir.to_path_buf()]);
            let one: Vec<install::Install> = all
                .into_iter()
                .filter(|i| {
                    std::fs::canonicalize(&i.bin_dir).unwrap_or_else(|_| i.bin_dir.clone()) == want
                })
                .collect();
            if one.is_empty() {
                return Err(Failure::usage(format!(
                    "--pg-bin {}: not a PostgreSQL bin directory (it needs postgres, pg_ctl and initdb)",
                    dir.display()
                )));
            }
            one
        }
        None => install::discover(&configured_dirs()),
    };
    // Only installs of the backup's major can match; fingerprint just those.
    let mut facts = Vec::new();
    let mut others = Vec::new();
    for i in &found {
        if i.major == backup.pg_major || pg_bin.is_some() {
            facts.push(install_facts(i, os_user.as_ref())?);
        } else {
            others.push(format!(
                "{} (PostgreSQL {})",
                i.bin_dir.display(),
                i.version
            ));
        }
    }
    if let (Some(_), Some(f)) = (pg_bin, facts.first()) {
        let m = compat::mismatches(
            backup.pg_major,
            &backup.fingerprint,
            backup.arch.as_deref(),
            f,
        );
        if !m.is_empty() {
            let same: Vec<String> = install::discover(&configured_dirs())
                .into_iter()
                .filter(|i| i.major == backup.pg_major)
                .map(|i| i.bin_dir.display().to_string())
                .collect();
            return Err(Failure::new(
                Code::Incompatible,
                anyhow::anyhow!(
                    "{} cannot run backup {} (nothing was fetched):
  {}{}",
                    f.bin_dir,
                    backup.id,
                    m.iter()
                        .map(|m| m.explanation.as_str())
                        .collect::<Vec<_>>()
                        .join("\n  "),
                    if same.is_empty() {
                        String::new()
                    } else {
                        format!("\nfound here: {}", same.join(", "))
                    }
                ),
            ));
        }
        return Ok(f.clone());
    }
    match compat::choose(
        backup.pg_major,
        &backup.fingerprint,
        backup.arch.as_deref(),
        &facts,
    ) {
        Ok(f) => Ok(f.clone()),
        Err(e) => Err(Failure::new(
            Code::Incompatible,
            anyhow::anyhow!(
                "{e}{}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!("\nother majors found: {}", others.join(", "))
                }
            ),
        )),
    }
}

#[derive(Serialize)]
struct InstallReport {
    bin_dir: String,
    version: String,
    major: crate::pg::control::PgMajor,
    arch: &'static str,
    fingerprint: Option<crate::pg::control::Fingerprint>,
    error: Option<String>,
}

fn installs(extra: &[std::path::PathBuf], json: bool) -> Result<(), Failure> {
    let os_user = initdb_user();
    let mut dirs = extra.to_vec();
    dirs.extend(configured_dirs());
    let list: Vec<InstallReport> = install::discover(&dirs)
        .iter()
        .map(|i| {
            let fp = install::fingerprint(i, os_user.as_ref(), &install::default_cache_dir());
            InstallReport {
                bin_dir: i.bin_dir.display().to_string(),
                version: i.version.clone(),
                major: i.major,
                arch: install::machine_arch(),
                error: fp.as_ref().err().map(|e| e.to_string()),
                fingerprint: fp.ok(),
            }
        })
        .collect();
    if json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("no PostgreSQL install found (looked on PATH, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, /usr/local/pgsql/bin, /opt/pitr-pg)");
    }
    for r in &list {
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
            _ => {}
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct DataDirFacts {
    pgdata: String,
    major: crate::pg::control::PgMajor,
    control: crate::pg::control::ControlFile,
    /// Present when the directory is a base backup or an unfinished restore.
    backup_label: Option<String>,
    arch: &'static str,
}

async fn inspect(
    pgdata: Option<&Path>,
    backup: Option<&str>,
    repo: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    match (pgdata, backup) {
        (Some(dir), None) => {
            let control = backup::read_control(dir)?;
            let major = backup::read_major(dir)?;
            let facts = DataDirFacts {
                pgdata: dir.display().to_string(),
                major,
                backup_label: std::fs::read_to_string(dir.join("backup_label")).ok(),
                control,
                arch: install::machine_arch(),
            };
            if json {
                return print_json(&facts);
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
        (None, Some(id)) => {
            let Some(repo_spec) = repo else {
                return Err(Failure::usage("--backup needs --repo (or PITR_REPO)"));
            };
            let arg = args::RepoArg {
                repo: repo_spec,
                s3_region: std::env::var("AWS_REGION").ok(),
                s3_endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
                s3_path_style: std::env::var("PITR_S3_PATH_STYLE")
                    .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on")),
            };
            let repo = open_repo(&arg).await?;
            let key = layout::backup_record(id)?;
            let rec: crate::catalog::BackupRecord =
                match repo.get_meta(&key, crate::repo::KIND_BACKUP).await {
                    Err(e) if e.is_not_found() => {
                        return Err(Failure::usage(format!(
                            "no backup {id} in {}: `pitr info` lists them",
                            repo.location().to_arg()
                        )))
                    }
                    other => other?,
                };
            if json {
                return print_json(&rec);
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
        _ => Err(Failure::usage(
            "give a data directory (pitr inspect /path/to/pgdata) or --backup ID",
        )),
    }
}

/// Adds the exact stop record to a plan when the repository has the stop
/// segment's transaction list (segments archived by older pitr do not).
async fn refine(repo: &Repo, plan: &mut plan::Plan) {
    if !matches!(
        plan.target,
        RecoveryTarget::Time(_) | RecoveryTarget::Xid(_)
    ) {
        return;
    }
    let Ok(crate::pg::WalFileName::Segment(seg)) =
        crate::pg::WalFileName::parse(&plan.stop.segment)
    else {
        return;
    };
    match repo.segment_xacts(&seg).await {
        Ok(xacts) => plan.refine(&xacts),
        Err(e) => tracing::debug!(error = %e, "no transaction list for the stop segment"),
    }
}

async fn init(arg: &args::RepoArg, pgdata: &Path, json: bool) -> Result<(), Failure> {
    let repo = open_repo(arg).await?;
    let repo_arg = &arg.repo;
    let control = backup::read_control(pgdata)?;
    let major = backup::read_major(pgdata)?;
    let config = RepoConfig {
        system_id: control.system_identifier,
        pg_major: major,
        wal_segment_size: control.wal_segment_size,
        fingerprint: control.fingerprint.clone(),
        created_at: Utc::now(),
        created_by: format!("pitr {}", env!("CARGO_PKG_VERSION")),
    };
    match repo.config().await {
        Ok(existing) => {
            if existing.system_id != config.system_id {
                return Err(Failure::new(
                    Code::Incompatible,
                    anyhow::anyhow!(
                        "{repo_arg} already holds database system {}, but {} is system {}: use another repository",
                        existing.system_id,
                        pgdata.display(),
                        config.system_id
                    ),
                ));
            }
            if json {
                print_json(&existing)?;
            } else {
                println!(
                    "repository {repo_arg} already initialized for system {}",
                    existing.system_id
                );
            }
            return Ok(());
        }
        Err(crate::repo::RepoError::NotInitialized(_)) => {}
        Err(e) => return Err(e.into()),
    }
    repo.create_root()?;
    repo.store().check().await?;
    repo.put_meta(&layout::config(), KIND_CONFIG, &config, PutMode::Create)
        .await?;
    if json {
        print_json(&config)?;
    } else {
        println!(
            "initialized {repo_arg}: system {}, PostgreSQL {}, {} WAL segments",
            config.system_id,
            config.pg_major,
            explain::human_bytes(config.wal_segment_size.bytes())
        );
        let command = crate::recover::settings::archive_command(
            &std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "pitr".into()),
            &repo.location().to_arg(),
            repo.s3_settings(),
        );
        println!(
            "set in postgresql.conf: archive_mode = on, archive_command = {}",
            crate::recover::settings::guc_quote(&command)
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct TimelineWal {
    timeline: crate::pg::TimelineId,
    first_segment: String,
    last_segment: String,
    segments: u64,
    bytes: u64,
    stored_bytes: u64,
    missing: Vec<String>,
}

#[derive(Serialize)]
struct Info {
    repository: String,
    cluster: RepoConfig,
    backups: Vec<crate::catalog::BackupRecord>,
    wal: Vec<TimelineWal>,
    restorable: Option<plan::Window>,
    restorable_error: Option<String>,
    /// Every timeline's window, newest first.
    timelines: Vec<plan::Window>,
    /// Catalog objects that could not be read (left out of all the above).
    damaged: Vec<crate::catalog::DamagedObject>,
}

fn wal_by_timeline(catalog: &Catalog) -> Vec<TimelineWal> {
    let mut out: Vec<TimelineWal> = Vec::new();
    let size = catalog.config.wal_segment_size;
    for ((tli, segno), rec) in &catalog.wal {
        match out.last_mut() {
            Some(t) if t.timeline == *tli => {
                let last = t.last_segment.clone();
                let prev = crate::pg::WalFileName::parse(&last)
                    .ok()
                    .and_then(|n| match n {
                        crate::pg::WalFileName::Segment(s) => s.segno(size).ok(),
                        _ => None,
                    });
                if let Some(prev) = prev {
                    let mut s = prev.next();
                    while s < *segno && t.missing.len() < 100 {
                        t.missing
                            .push(crate::pg::SegmentName::new(*tli, s, size).to_string());
                        s = s.next();
                    }
                }
                t.last_segment = rec.name.clone();
                t.segments += 1;
                t.bytes += rec.raw_bytes;
                t.stored_bytes += rec.stored_bytes;
            }
            _ => out.push(TimelineWal {
                timeline: *tli,
                first_segment: rec.name.clone(),
                last_segment: rec.name.clone(),
                segments: 1,
                bytes: rec.raw_bytes,
                stored_bytes: rec.stored_bytes,
                missing: Vec::new(),
            }),
        }
    }
    out
}

async fn info(arg: &args::RepoArg, json: bool) -> Result<(), Failure> {
    let repo = open_repo(arg).await?;
    let catalog = repo.load_catalog().await?;
    let (restorable, restorable_error) = match plan::restorable_window(&catalog) {
        Ok(w) => (Some(w), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let info = Info {
        repository: repo.location().to_arg(),
        wal: wal_by_timeline(&catalog),
        timelines: plan::restorable_windows(&catalog),
        cluster: catalog.config,
        backups: catalog.backups,
        restorable,
        restorable_error,
        damaged: catalog.damaged,
    };
    if json {
        return print_json(&info);
    }
    println!("repository  {}", info.repository);
    println!(
        "cluster     system {}, PostgreSQL {}, WAL segments of {}",
        info.cluster.system_id,
        info.cluster.pg_major,
        explain::human_bytes(info.cluster.wal_segment_size.bytes())
    );
    println!();
    println!("backups ({}):", info.backups.len());
    for b in &info.backups {
        println!(
            "  {}  tl {}  {}..{}  finished {}  {} ({} stored)",
            b.id,
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
            "  timeline {}: {}..{} ({} segments, {} stored){}",
            t.timeline,
            t.first_segment,
            t.last_segment,
            t.segments,
            explain::human_bytes(t.stored_bytes),
            if t.missing.is_empty() {
                String::new()
            } else {
                format!(", MISSING: {}", t.missing.join(", "))
            }
        );
    }
    println!();
    let show = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| t.to_string()).unwrap_or_else(|| "none".into())
    };
    let show_lsn =
        |l: Option<crate::pg::Lsn>| l.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
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
    print_damaged(&info.damaged);
    Ok(())
}

/// Damaged catalog objects, for the text output of `info` and `plan`.
fn print_damaged(damaged: &[crate::catalog::DamagedObject]) {
    if damaged.is_empty() {
        return;
    }
    println!();
    println!("DAMAGED ({}), left out and planned around:", damaged.len());
    for d in damaged {
        println!("  {}: {}", d.key, d.reason);
    }
}

/// What restore and rollback refuse before touching anything: a target
/// that does not parse, `--latest` with an action, an `--upgrade-to` that
/// is not an install.
fn check_restore_args(command: &Command) -> Result<TargetSpec, Failure> {
    let (args, action, upgrade_to) = match command {
        Command::Restore { args, action } => (args, Action::from(*action), None),
        Command::Rollback { args, upgrade_to } => (args, Action::Promote, upgrade_to.as_deref()),
        _ => return Err(Failure::usage("not a restore command")),
    };
    let target = resolve_target(&args.target)?;
    if target.target == RecoveryTarget::Latest && action != Action::Promote {
        return Err(Failure::usage(
            "--latest replays all archived WAL and then always promotes: --action pause/shutdown need a target",
        ));
    }
    if let Some(dir) = upgrade_to {
        upgrade_install(dir)?;
    }
    Ok(target)
}

/// The install `--upgrade-to DIR` names.
fn upgrade_install(dir: &Path) -> Result<install::Install, Failure> {
    install::discover(&[dir.to_path_buf()])
        .into_iter()
        .find(|i| std::fs::canonicalize(&i.bin_dir).ok() == std::fs::canonicalize(dir).ok())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--upgrade-to {}: not a PostgreSQL bin directory (it needs postgres, pg_ctl and initdb)",
                dir.display()
            ))
        })
}

/// Where `rollback --upgrade-to` restores physically before the upgrade.
fn physical_dir(pgdata: &Path) -> std::path::PathBuf {
    let name = pgdata
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pgdata".into());
    pgdata.with_file_name(format!("{name}.pitr-physical"))
}

async fn rollback_upgrade(mut args: RestoreArgs, target_dir: &Path) -> Result<(), Failure> {
    let target = upgrade_install(target_dir)?;
    let repo_major = open_repo(&args.repo).await?.config().await?.pg_major;
    if target.major.get() <= repo_major.get() {
        return Err(Failure::usage(format!(
            "--upgrade-to {} is PostgreSQL {}, not newer than the repository's {repo_major}: use plain rollback",
            target.bin_dir.display(),
            target.version
        )));
    }
    let json = args.json.json;
    let new_pgdata = args.pgdata.clone();
    args.pgdata = physical_dir(&new_pgdata);
    args.json.json = true; // the physical step reports through us
    let out = restore_inner(&args, Action::Promote).await?;
    let backup_major = out.1;
    let physical_bin = std::path::PathBuf::from(&out.2);
    let up = recover::upgrade::upgrade(
        &out.0,
        &physical_bin,
        &target.bin_dir,
        &new_pgdata,
        &args.db_user,
    )
    .await
    .map_err(|e| {
        Failure::from(e).context(format!("upgrade into {} failed", new_pgdata.display()))
    })?;
    if json {
        return print_json(&up);
    }
    println!(
        "restored backup {} to {} on PostgreSQL {}, then moved it into PostgreSQL {} in {:.1}s",
        up.restored_from.backup_id,
        up.restored_from.target,
        backup_major,
        up.server_version,
        up.elapsed_seconds
    );
    println!("  data directory: {}", up.data_directory);
    println!("  server log:     {}", up.server_log);
    println!("  connect:        {}", up.connect);
    Ok(())
}

/// Plans, picks an install and restores; returns the outcome, the
/// backup's major and the install's bin directory. A refusal before any
/// data was written takes away the --pgdata directory it created.
async fn restore_inner(
    args: &RestoreArgs,
    action: Action,
) -> Result<(recover::RestoreOutcome, crate::pg::control::PgMajor, String), Failure> {
    let out = plan_and_restore(args, action).await;
    if let (Err(_), Some(root)) = (&out, CREATED_PGDATA.get()) {
        recover::remove_created(&args.pgdata, root);
    }
    out
}

async fn plan_and_restore(
    args: &RestoreArgs,
    action: Action,
) -> Result<(recover::RestoreOutcome, crate::pg::control::PgMajor, String), Failure> {
    let target = check_restore_args(&Command::Restore {
        args: args.clone(),
        action: match action {
            Action::Promote => args::ActionArg::Promote,
            Action::Pause => args::ActionArg::Pause,
            Action::Shutdown => args::ActionArg::Shutdown,
        },
    })?;
    let repo = open_repo(&args.repo).await?;
    let catalog = repo.load_catalog().await?;
    let mut plan = plan::plan(&catalog, &target, &args.target.cost_model(&catalog))?;
    // Before anything is fetched: an install that can run this backup.
    let chosen = select_install(&catalog, &plan, args.pg_bin.as_deref())?;
    plan.install = Some(format!(
        "{} (PostgreSQL {})",
        chosen.bin_dir, chosen.version
    ));
    let pitr_exe = std::env::current_exe()
        .map_err(|e| Failure::new(Code::Internal, e).context("locating the pitr executable"))?;
    let opts = RestoreOptions {
        pgdata: args.pgdata.clone(),
        port: args.port,
        pg_bin: std::path::PathBuf::from(&chosen.bin_dir),
        socket_dir: args.socket_dir.clone(),
        action,
        db_user: args.db_user.clone(),
        pitr_exe,
        jobs: args
            .jobs
            .unwrap_or_else(|| args::default_jobs(&args.repo.repo)),
        start: !args.no_start,
        stall_timeout: std::time::Duration::from_secs(args.stall_timeout.max(1)),
        created_dir: CREATED_PGDATA.get().cloned(),
    };
    let reporter = Reporter::new(args.json.json);
    let r2 = reporter.clone();
    let on_event: recover::OnEvent = Arc::new(move |ev| match ev {
        RecoverEvent::Materializing { total_bytes } => r2.bytes(total_bytes, "restore"),
        RecoverEvent::Bytes(n) => r2.inc(n),
        RecoverEvent::Starting { port } => r2.status(format!("starting server on port {port}")),
        RecoverEvent::Replaying { lsn } => r2.status(format!("replaying WAL at {lsn}")),
        RecoverEvent::Done => r2.finish(),
    });
    let out = recover::restore(&repo, &plan, &opts, on_event).await;
    reporter.finish();
    let out = out.map_err(|e| {
        let dir = args.pgdata.display().to_string();
        Failure::from(e).context(format!("restore into {dir} failed"))
    })?;
    let major = catalog
        .backups
        .iter()
        .find(|b| b.id == plan.backup.id)
        .map(|b| b.pg_major)
        .unwrap_or(catalog.config.pg_major);
    Ok((out, major, chosen.bin_dir))
}

async fn restore(args: RestoreArgs, action: Action) -> Result<(), Failure> {
    let (out, _, _) = restore_inner(&args, action).await?;
    if args.json.json {
        return print_json_with_rss(&out);
    }
    println!(
        "restored backup {} to {} in {:.1}s",
        out.backup_id, out.target, out.elapsed_seconds
    );
    println!(
        "  last replayed commit: {}",
        out.last_replayed_commit
            .map(|t| t.to_string())
            .unwrap_or_else(|| "none".into())
    );
    if args.no_start {
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
    }
    println!("  data directory: {}", out.data_directory);
    println!("  server log:     {}", out.server_log);
    if out.action != Action::Shutdown {
        println!("  connect:        {}", out.connect);
    }
    Ok(())
}
