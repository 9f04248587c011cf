//! The `pitr` command line: argument parsing (`args`), one module per
//! command (`command/<verb>.rs`: map arguments to a library call), what is
//! printed (`render`), progress (`report`) and exit codes (`exit`). This
//! file only dispatches, and (as root, before any thread exists) switches
//! to the OS user each command's files belong to. Business rules live in
//! the library.

pub mod args;
pub mod command;
pub mod config;
pub mod exit;
pub mod render;
pub mod report;

use std::path::{Path, PathBuf};

use crate::recover::{self, Action};
use crate::repo::RepoLocation;
use crate::server::user;
use args::{Cli, Command, FollowArgs, RestoreArgs};
use exit::Failure;

/// The outermost directory `drop_privileges` created for a restore's
/// --pgdata: removed again if the restore is refused before writing data.
static CREATED_PGDATA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The same for a fork's local --new-repo: removed again (while empty) if
/// the fork fails.
static CREATED_NEW_REPO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Before any thread exists: when running as root, become the OS user the
/// command's files belong to (see `server::user`), after the library has
/// prepared what that user must own.
pub fn drop_privileges(cli: &Cli) -> Result<(), Failure> {
    if !user::is_root() {
        return Ok(());
    }
    match &cli.command {
        Command::Init { repo, pgdata, .. } => {
            let owner = user::owner_of(pgdata)?;
            let location = RepoLocation::parse(&repo.repo)?;
            crate::repo::init::give_root_to(&location, owner.uid, owner.gid, &owner.name)?;
            user::become_user(&owner)?;
        }
        Command::Backup { pgdata, .. } => user::become_user(&user::owner_of(pgdata)?)?,
        Command::Snapshot {
            pgdata,
            where_,
            provider,
            ..
        } => {
            let owner = user::owner_of(pgdata)?;
            if *provider != args::ProviderArg::Command {
                command::snapshot::prepare_dir(pgdata, where_.snapshot_dir.as_deref(), &owner)?;
            }
            user::become_user(&owner)?
        }
        // As backup and snapshot: the data directory's owner.
        Command::Maintain {
            pgdata,
            where_,
            provider,
            ..
        } => {
            let owner = user::owner_of(pgdata)?;
            if provider.is_some_and(|p| p != args::ProviderArg::Command) {
                command::snapshot::prepare_dir(pgdata, where_.snapshot_dir.as_deref(), &owner)?;
            }
            user::become_user(&owner)?
        }
        Command::WalPush { repo, .. } => {
            let location = RepoLocation::parse(&repo.repo)?;
            if let Some(root) = location.local_path() {
                if let Ok(owner) = user::owner_of(root) {
                    user::become_user(&owner)?;
                }
            }
        }
        Command::Restore { args, action } => hand_over(args, Action::from(*action), None, None)?,
        Command::Rollback { args, upgrade_to } => {
            hand_over(args, Action::Promote, upgrade_to.as_deref(), None)?
        }
        Command::Fork { args, new_repo, .. } => {
            let source = RepoLocation::parse(&args.repo.repo)?;
            let new = RepoLocation::parse(new_repo)?;
            recover::fork::check(&source, &new, !args.no_start, Action::Promote)?;
            if let Some(path) = new.local_path() {
                recover::fork::check_local_empty(path)?;
            }
            hand_over(args, Action::Promote, None, new.local_path())?
        }
        Command::Follow { args } => hand_over_standby(args)?,
        Command::Verify { args } => hand_over_verify(args)?,
        // The server's files and its peer-authenticated role are its
        // owner's.
        Command::Status { pgdata, .. } | Command::Promote { pgdata, .. } => {
            user::become_user(&user::owner_of(pgdata)?)?
        }
        // The server's peer-authenticated role is its owner's.
        Command::Check {
            pgdata: Some(pgdata),
            ..
        } => user::become_user(&user::owner_of(pgdata)?)?,
        // A local repository's owner removes what expire removes (and its
        // snapshots' provider copies: never as root, see ops::expire).
        Command::Expire { repo, .. } => {
            let location = RepoLocation::parse(&repo.repo)?;
            if let Some(root) = location.local_path() {
                if let Ok(owner) = user::owner_of(root) {
                    user::become_user(&owner)?;
                }
            }
        }
        Command::Check { pgdata: None, .. }
        | Command::AddKey { .. }
        | Command::WalFetch { .. }
        | Command::WalPrefetch { .. }
        | Command::Info { .. }
        | Command::Plan { .. }
        | Command::Installs { .. }
        | Command::Inspect { .. } => {}
    }
    Ok(())
}

/// restore, rollback and fork as root: refuse what cannot run before
/// anything is created, have the library create --pgdata (and the
/// upgrade's physical copy, or a fork's local --new-repo, which its
/// archive_command writes as that user) for `--os-user`, then become that
/// user.
fn hand_over(
    args: &RestoreArgs,
    action: Action,
    upgrade_to: Option<&Path>,
    new_repo: Option<&Path>,
) -> Result<(), Failure> {
    recover::run::check(&args.target.spec()?, action, upgrade_to)?;
    let physical = upgrade_to.map(|_| recover::run::physical_dir(&args.pgdata));
    hand_over_dirs(
        &args.pgdata,
        physical.as_deref(),
        new_repo,
        &args.tablespace_map,
        args.port,
        args.socket_dir.as_deref(),
        &args.os_user,
    )
}

/// The scratch directory `verify --restore` created as root for
/// `--os-user` (removed by the run).
static VERIFY_SCRATCH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// verify as root: with --restore, create the scratch directory for
/// `--os-user` and become that user (the restore and the scratch server
/// run as it, as `pitr restore`'s do); else, for a local repository, its
/// owner (whose the result record is).
fn hand_over_verify(args: &args::VerifyArgs) -> Result<(), Failure> {
    if args.restore {
        if let Some(to) = &args.to {
            crate::plan::parse_time(to)?;
        }
        let os_user = user::lookup(&args.os_user)?;
        let dir = recover::verify_restore::create_scratch(Some((os_user.uid, os_user.gid)))?;
        let _ = VERIFY_SCRATCH.set(dir);
        user::become_user(&os_user)?;
        return Ok(());
    }
    let location = RepoLocation::parse(&args.repo.repo)?;
    if let Some(root) = location.local_path() {
        if let Ok(owner) = user::owner_of(root) {
            user::become_user(&owner)?;
        }
    }
    Ok(())
}

/// follow as root: the same for the standby's data directory.
fn hand_over_standby(args: &FollowArgs) -> Result<(), Failure> {
    hand_over_dirs(
        &args.pgdata,
        None,
        None,
        &args.tablespace_map,
        args.port,
        args.socket_dir.as_deref(),
        &args.os_user,
    )
}

/// Refuses a `--port` anything holds, creates the data directory (and the
/// physical copy, or a fork's local new repository, and each
/// `--tablespace-map` NEW directory) for `os_user`, and becomes that user.
fn hand_over_dirs(
    pgdata: &Path,
    physical: Option<&Path>,
    new_repo: Option<&Path>,
    tablespaces: &[(PathBuf, PathBuf)],
    port: Option<u16>,
    socket_dir: Option<&Path>,
    os_user: &str,
) -> Result<(), Failure> {
    let os_user = user::lookup(os_user)?;
    if let Some(port) = port {
        let sockets = socket_dir.map(Path::to_path_buf);
        recover::instance::check_port(
            port,
            &sockets.unwrap_or_else(recover::instance::default_socket_dir),
        )?;
    }
    if let Some(repo) = new_repo {
        if let Some(root) = recover::pgdata::hand_over(repo, None, &os_user)? {
            let _ = CREATED_NEW_REPO.set(root);
        }
    }
    // A NEW that is not empty is left as it is: restore refuses it.
    for (_, new) in tablespaces {
        recover::pgdata::hand_over(new, None, &os_user)?;
    }
    let created = recover::pgdata::hand_over(pgdata, physical, &os_user)?;
    if let Some(root) = created {
        let _ = CREATED_PGDATA.set(root);
    }
    user::become_user(&os_user)?;
    Ok(())
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let created = || CREATED_PGDATA.get().cloned();
    match cli.command {
        Command::Init {
            repo,
            pgdata,
            encrypt,
            json,
        } => command::init::run(&repo, &pgdata, encrypt, json.json).await,
        Command::WalPush { repo, path, json } => {
            command::wal_push::run(&repo, &path, json.json).await
        }
        Command::WalFetch {
            repo,
            name,
            dest,
            spool,
            prefetch,
        } => command::wal_fetch::run(&repo, &name, &dest, spool.as_deref(), prefetch).await,
        Command::WalPrefetch {
            repo,
            spool,
            prefetch,
            jobs,
        } => command::wal_prefetch::run(&repo, spool, prefetch, jobs).await,
        Command::Backup {
            repo,
            pgdata,
            conn,
            label,
            spread_checkpoint,
            jobs,
            archive_timeout,
            max_rate,
            from_standby,
            incremental,
            parent,
            json,
        } => {
            let a = command::backup::Args {
                pgdata,
                conn,
                label,
                spread_checkpoint,
                jobs,
                archive_timeout,
                max_rate,
                from_standby,
                incremental,
                parent,
                json: json.json,
            };
            command::backup::run(&repo, a).await
        }
        Command::Snapshot {
            repo,
            pgdata,
            provider,
            conn,
            atomic,
            where_,
            archive_timeout,
            json,
        } => {
            let a = command::snapshot::Args {
                pgdata,
                provider,
                conn,
                atomic,
                where_,
                archive_timeout,
                json: json.json,
            };
            command::snapshot::run(&repo, a).await
        }
        Command::Maintain {
            repo,
            pgdata,
            conn,
            max_replay,
            interval,
            max_age,
            max_chain,
            provider,
            where_,
            jobs,
            max_rate,
            archive_timeout,
            dry_run,
            json,
        } => {
            let secs = |flag: &str, v: &str| args::parse_duration(flag, v).map(|d| d.as_secs_f64());
            let opts = crate::ops::maintain::MaintainOptions {
                backup: crate::capture::backup::BackupOptions {
                    pgdata,
                    conninfo: conn,
                    label: None,
                    fast: true,
                    jobs: jobs.unwrap_or_else(|| args::default_jobs(&repo.repo)),
                    archive_timeout: std::time::Duration::from_secs(archive_timeout),
                    max_rate,
                    from_standby: None,
                },
                policy: crate::plan::maintain::MaintainPolicy {
                    max_replay_secs: secs("--max-replay", &max_replay)?,
                    interval_secs: secs("--interval", &interval)?,
                    max_age_secs: secs("--max-age", &max_age)?,
                    max_chain,
                    snapshots: provider.is_some(),
                },
                snapshot: provider.map(|p| (p.into(), where_.args())),
                dry_run,
            };
            let repo = command::open_repo(&repo).await?;
            let r = crate::ops::maintain::maintain(&repo, &opts, |_| {}).await?;
            render::maintain(&r, json.json)
        }
        Command::Info { repo, json } => command::info::run(&repo, json.json).await,
        Command::Plan { repo, target, json } => command::plan::run(&repo, &target, json.json).await,
        Command::Restore { args, action } => {
            command::restore::run(&args, action.into(), created()).await
        }
        Command::Installs { pg_bin, json } => command::installs::run(&pg_bin, json.json),
        Command::Inspect {
            pgdata,
            backup,
            repo,
            json,
        } => command::inspect::run(pgdata.as_deref(), backup.as_deref(), repo, json.json).await,
        Command::Rollback { args, upgrade_to } => {
            command::rollback::run(&args, upgrade_to.as_deref(), created()).await
        }
        Command::Follow { args } => command::follow::run(&args, created()).await,
        Command::Verify { args } => {
            command::verify::run(&args, VERIFY_SCRATCH.get().cloned()).await
        }
        Command::Status {
            pgdata,
            repo,
            s3,
            db_user,
            json,
        } => command::status::run(&pgdata, repo.as_deref(), &s3, &db_user, json.json).await,
        Command::AddKey {
            repo,
            new_key_file,
            json,
        } => {
            let repo = command::open_repo(&repo).await?;
            let new = crate::repo::crypt::KeySource {
                files: vec![new_key_file],
                env_key: None,
            };
            let out = crate::repo::init::add_key(&repo, &new).await?;
            render::add_key(&out, json.json)
        }
        Command::Expire {
            repo,
            keep_window,
            keep_full,
            dry_run,
            json,
        } => {
            let window = args::parse_duration("--keep-window", &keep_window)?;
            let opts = crate::ops::expire::ExpireOptions {
                policy: crate::plan::expire::ExpirePolicy {
                    keep_window_secs: window.as_secs_f64(),
                    keep_full,
                },
                dry_run,
            };
            let repo = command::open_repo(&repo).await?;
            let r = crate::ops::expire::expire(&repo, &opts).await?;
            render::expire(&r, json.json)
        }
        Command::Check {
            repo,
            pgdata,
            db_user,
            warn_backup_age,
            crit_backup_age,
            warn_archive_lag,
            crit_archive_lag,
            warn_verify_age,
            nagios,
            json,
        } => {
            let a = command::check::Args {
                pgdata,
                db_user,
                thresholds: crate::ops::check::Thresholds {
                    warn_backup_age_secs: args::parse_duration(
                        "--warn-backup-age",
                        &warn_backup_age,
                    )?
                    .as_secs_f64(),
                    crit_backup_age_secs: args::parse_duration(
                        "--crit-backup-age",
                        &crit_backup_age,
                    )?
                    .as_secs_f64(),
                    warn_archive_lag_bytes: args::parse_bytes(
                        "--warn-archive-lag",
                        &warn_archive_lag,
                    )?,
                    crit_archive_lag_bytes: args::parse_bytes(
                        "--crit-archive-lag",
                        &crit_archive_lag,
                    )?,
                    warn_verify_age_secs: args::parse_duration(
                        "--warn-verify-age",
                        &warn_verify_age,
                    )?
                    .as_secs_f64(),
                },
                nagios,
                json: json.json,
            };
            command::check::run(&repo, &a).await
        }
        Command::Promote {
            pgdata,
            archive_to,
            s3,
            keys,
            db_user,
            wait,
            json,
        } => {
            let a = command::promote::Args {
                pgdata,
                archive_to,
                s3,
                keys,
                db_user,
                wait: std::time::Duration::from_secs(wait),
                json: json.json,
            };
            command::promote::run(&a).await
        }
        Command::Fork {
            args,
            new_repo,
            archive_timeout,
        } => {
            let a = command::fork::Args {
                new_repo,
                archive_timeout,
                created_dir: created(),
                created_new_repo: CREATED_NEW_REPO.get().cloned(),
            };
            command::fork::run(&args, a).await
        }
    }
}
