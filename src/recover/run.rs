//! Restore and upgrade as one call each, for the CLI and any other caller:
//! plan from the repository's catalog (refined by the stop segment's
//! transaction list), choose the install before anything is fetched, then
//! execute (`recover::restore`), and for `rollback --upgrade-to` move the
//! restored data into a newer major (`upgrade`). Takes plain options,
//! returns typed errors; progress goes out through `OnEvent`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::catalog::Catalog;
use crate::pg::control::PgMajor;
use crate::pg::{SegmentName, WalFileName};
use crate::plan::cost::CostModel;
use crate::plan::{self, Plan, PlanError, RecoveryTarget, TargetSpec, XactLists};
use crate::repo::store::StoreError;
use crate::repo::{Repo, RepoError};

use super::install::{self, SelectError};
use super::upgrade::UpgradeOutcome;
use super::{Action, OnEvent, RecoverError, RestoreOptions, RestoreOutcome};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--latest replays all archived WAL and then always promotes: --action pause/shutdown need a target")]
    LatestNeedsPromote,
    #[error("a standby has no recovery target: it replays all archived WAL and waits for more")]
    StandbyHasNoTarget,
    #[error("--upgrade-to {}: not a PostgreSQL bin directory (it needs postgres, pg_ctl and initdb)", .0.display())]
    UpgradeNotAnInstall(PathBuf),
    #[error("--upgrade-to {} is PostgreSQL {version}, not newer than the repository's {repo_major}: use plain rollback", .bin_dir.display())]
    UpgradeNotNewer {
        bin_dir: PathBuf,
        version: String,
        repo_major: PgMajor,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("planned backup {0} is not in the catalog")]
    PlannedBackupMissing(String),
    #[error(transparent)]
    Install(#[from] SelectError),
    #[error("locating the pitr executable")]
    Exe(#[source] std::io::Error),
    #[error("restore into {dir} failed")]
    Restore {
        dir: String,
        #[source]
        source: RecoverError,
    },
    #[error("upgrade into {dir} failed")]
    Upgrade {
        dir: String,
        #[source]
        source: RecoverError,
    },
}

/// What restore, rollback and `plan` need to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub target: TargetSpec,
    /// `--restore-rate`, `--replay-rate` (MB/s): override the measured rates.
    pub restore_rate: Option<f64>,
    pub replay_rate: Option<f64>,
    /// Where installs are looked for.
    pub search: install::Search,
}

/// A restore or rollback: what to plan and where to put it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan: PlanOptions,
    pub pgdata: PathBuf,
    pub port: Option<u16>,
    pub socket_dir: Option<PathBuf>,
    pub action: Action,
    pub db_user: String,
    pub jobs: usize,
    /// Start the server (false: `--no-start`).
    pub start: bool,
    pub stall_timeout: Duration,
    /// The outermost directory of `pgdata` created before this call (by
    /// `pgdata::hand_over`): removed again if the restore is refused
    /// before any data is written.
    pub created_dir: Option<PathBuf>,
    /// `Action::Standby` (`pitr follow`): the primary to stream from.
    pub primary_conninfo: Option<String>,
    /// A fork's own repository (`recover::fork`); None for restore and
    /// rollback, whose copies never archive.
    pub archive: Option<super::fork::ArchiveInto>,
    /// `--tablespace-map OLD=NEW` pairs.
    pub tablespace_map: Vec<(PathBuf, PathBuf)>,
}

/// A finished restore, with the backup's major and the install it ran on.
#[derive(Debug, Clone)]
pub struct Restored {
    pub outcome: RestoreOutcome,
    pub backup_major: PgMajor,
    pub bin_dir: PathBuf,
}

/// A finished `rollback --upgrade-to`.
#[derive(Debug, Clone)]
pub struct Upgraded {
    pub outcome: UpgradeOutcome,
    pub backup_major: PgMajor,
}

/// What restore, rollback and follow refuse before anything is created:
/// `--latest` with an action other than promote, a standby with a target,
/// an `--upgrade-to` that is not an install.
pub fn check(
    target: &TargetSpec,
    action: Action,
    upgrade_to: Option<&Path>,
) -> Result<(), RunError> {
    let latest = target.target == RecoveryTarget::Latest;
    match action {
        Action::Standby if !latest => return Err(RunError::StandbyHasNoTarget),
        Action::Pause | Action::Shutdown if latest => return Err(RunError::LatestNeedsPromote),
        Action::Promote | Action::Pause | Action::Shutdown | Action::Standby => {}
    }
    if let Some(dir) = upgrade_to {
        upgrade_install(dir)?;
    }
    Ok(())
}

/// The install `--upgrade-to DIR` names.
pub fn upgrade_install(dir: &Path) -> Result<crate::server::install::Install, RunError> {
    install::upgrade_target(dir).ok_or_else(|| RunError::UpgradeNotAnInstall(dir.to_path_buf()))
}

/// Where `rollback --upgrade-to` restores physically before the upgrade.
pub fn physical_dir(pgdata: &Path) -> PathBuf {
    let name = pgdata
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pgdata".into());
    pgdata.with_file_name(format!("{name}.pitr-physical"))
}

fn cost_model(catalog: &Catalog, opts: &PlanOptions) -> CostModel {
    CostModel::from_timings(&catalog.timings).with_overrides(opts.restore_rate, opts.replay_rate)
}

/// `pitr plan`: the plan, refined to the exact stop record where the
/// repository has it, with the damaged objects it planned around and the
/// install that would run it (or why none here can).
pub async fn plan_only(repo: &Repo, opts: &PlanOptions) -> Result<Plan, RunError> {
    let catalog = repo.load_catalog().await?;
    let mut plan = planned(repo, &catalog, opts).await?;
    plan.damaged = catalog.damaged.clone();
    refine(repo, &mut plan).await;
    plan.install = Some(match select_for(&catalog, &plan, &opts.search) {
        Ok(i) => format!("{} (PostgreSQL {})", i.bin_dir, i.version),
        Err(e) => format!("none here can run it: {}", with_sources(&e)),
    });
    Ok(plan)
}

/// The plan for `opts` on `catalog`, as `plan` and `restore` both need
/// it: an xid proven from the transaction lists (read first, so the
/// planner stays pure), and a time resolved to its exact record.
async fn planned(repo: &Repo, catalog: &Catalog, opts: &PlanOptions) -> Result<Plan, RunError> {
    let xacts = xid_lists(repo, catalog, &opts.target).await;
    let mut plan = plan::plan_with(catalog, &opts.target, &cost_model(catalog, opts), &xacts)?;
    resolve_time(repo, &mut plan).await?;
    Ok(plan)
}

/// Words an xid plan's stop as its exact end record when the repository
/// has the stop segment's transaction list (segments archived by older
/// pitr do not). A time target is resolved by `resolve_time` instead.
pub async fn refine(repo: &Repo, plan: &mut Plan) {
    if !matches!(plan.target, RecoveryTarget::Xid(_)) {
        return;
    }
    let Ok(WalFileName::Segment(seg)) = WalFileName::parse(&plan.stop.segment) else {
        return;
    };
    if let Some(xacts) = transaction_list(repo, &seg).await {
        plan.refine(&xacts);
    }
}

/// The transaction list of `seg`, or `None` when the repository has none
/// (a segment archived by an older pitr) or it cannot be read now; the
/// callers then plan as without it (the segment's xid range, or
/// `recovery_target_time`), which is correct, only less exact, so an
/// unreadable list (a transient store error, a damaged object) is a
/// warning, not a failure.
async fn transaction_list(repo: &Repo, seg: &SegmentName) -> Option<Vec<crate::pg::wal::XactEnd>> {
    match repo.segment_xacts(seg).await {
        Ok(list) => Some(list),
        Err(e) if e.is_not_found() => {
            tracing::debug!(segment = %seg, "no transaction list (archived by an older pitr)");
            None
        }
        Err(RepoError::Store(StoreError::Crypt(c)))
            if matches!(*c, crate::repo::crypt::CryptError::KeyNeeded { .. }) =>
        {
            tracing::warn!(segment = %seg,
                "the repository is encrypted and no key was given: segment {seg}'s transaction list is not read, so the plan is as exact as the catalog alone makes it (give --key-file for the exact stopping record)");
            None
        }
        Err(e) => {
            tracing::warn!(segment = %seg, error = %e,
                "cannot read the transaction list; planning without it (less exact)");
            None
        }
    }
}

/// For an xid target, the transaction lists the planner proves it from:
/// those of every archived segment, on every timeline, whose xid range
/// holds it (`plan::xid_candidates`), read before planning so that the
/// planner stays pure and nothing is downloaded for a target it refuses.
/// A list that cannot be read (a segment archived by an older pitr) is
/// left out: the planner falls back to that segment's xid range and says
/// so.
pub async fn xid_lists(repo: &Repo, catalog: &Catalog, spec: &TargetSpec) -> XactLists {
    let mut lists = XactLists::new();
    let RecoveryTarget::Xid(x) = &spec.target else {
        return lists;
    };
    let size = catalog.config.wal_segment_size;
    for (tli, segno) in plan::xid_candidates(catalog, *x) {
        let seg = SegmentName::new(tli, segno, size);
        if let Some(list) = transaction_list(repo, &seg).await {
            lists.insert(tli, segno, list);
        }
    }
    lists
}

/// Resolves a time target to the exact record (`Plan::resolve_time`) from
/// the transaction lists of the segments the plan names; a list the
/// repository does not have (older pitr) leaves the time as given.
pub async fn resolve_time(repo: &Repo, plan: &mut Plan) -> Result<(), PlanError> {
    let mut lists: Vec<(String, Option<Vec<crate::pg::wal::XactEnd>>)> = Vec::new();
    for name in plan.time_lists() {
        let list = match WalFileName::parse(&name) {
            Ok(WalFileName::Segment(seg)) => transaction_list(repo, &seg).await,
            _ => None,
        };
        lists.push((name, list));
    }
    let view: Vec<plan::XactList<'_>> = lists
        .iter()
        .map(|(n, l)| (n.as_str(), l.as_deref()))
        .collect();
    plan.resolve_time(&view)
}

fn select_for(
    catalog: &Catalog,
    plan: &Plan,
    search: &install::Search,
) -> Result<crate::plan::compat::InstallFacts, RunError> {
    let backup = catalog
        .backups
        .iter()
        .find(|b| b.id == plan.backup.id)
        .ok_or_else(|| RunError::PlannedBackupMissing(plan.backup.id.clone()))?;
    Ok(install::select(backup, search)?)
}

/// An error and its sources, joined with ": " (as `{:#}` of anyhow).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `pitr restore` / `pitr rollback`: plans, picks an install (before
/// anything is fetched) and restores. A refusal before any data was
/// written takes away the directories `opts.created_dir` names. With
/// `Action::Standby` (`pitr follow`, target `--latest`): the plan's backup
/// restored as a hot standby of its timeline, returned once it is
/// consistent; it goes on replaying WAL as it is archived.
pub async fn restore(
    repo: &Repo,
    opts: &RunOptions,
    on_event: OnEvent,
) -> Result<Restored, RunError> {
    let out = plan_and_restore(repo, opts, on_event).await;
    if let (Err(_), Some(root)) = (&out, &opts.created_dir) {
        super::remove_created(&opts.pgdata, root);
    }
    out
}

async fn plan_and_restore(
    repo: &Repo,
    opts: &RunOptions,
    on_event: OnEvent,
) -> Result<Restored, RunError> {
    check(&opts.plan.target, opts.action, None)?;
    let catalog = repo.load_catalog().await?;
    let mut plan = planned(repo, &catalog, &opts.plan).await?;
    // Before anything is fetched: an install that can run this backup.
    let chosen = select_for(&catalog, &plan, &opts.plan.search)?;
    plan.install = Some(format!(
        "{} (PostgreSQL {})",
        chosen.bin_dir, chosen.version
    ));
    let pitr_exe = std::env::current_exe().map_err(RunError::Exe)?;
    let ropts = RestoreOptions {
        pgdata: opts.pgdata.clone(),
        port: opts.port,
        pg_bin: PathBuf::from(&chosen.bin_dir),
        socket_dir: opts.socket_dir.clone(),
        action: opts.action,
        db_user: opts.db_user.clone(),
        pitr_exe,
        jobs: opts.jobs,
        start: opts.start,
        stall_timeout: opts.stall_timeout,
        created_dir: opts.created_dir.clone(),
        primary_conninfo: opts.primary_conninfo.clone(),
        archive: opts.archive.clone(),
        tablespace_map: opts.tablespace_map.clone(),
    };
    let outcome = super::restore(repo, &plan, &ropts, on_event)
        .await
        .map_err(|source| RunError::Restore {
            dir: opts.pgdata.display().to_string(),
            source,
        })?;
    let backup_major = catalog
        .backups
        .iter()
        .find(|b| b.id == plan.backup.id)
        .map(|b| b.pg_major)
        .unwrap_or(catalog.config.pg_major);
    Ok(Restored {
        outcome,
        backup_major,
        bin_dir: PathBuf::from(chosen.bin_dir),
    })
}

/// `pitr rollback --upgrade-to DIR`: restores onto a matching install into
/// `physical_dir(pgdata)` (promoted), then moves the data into a new
/// cluster of DIR's newer major at `opts.pgdata` and leaves that running.
pub async fn rollback_upgrade(
    repo: &Repo,
    opts: &RunOptions,
    upgrade_to: &Path,
    on_event: OnEvent,
) -> Result<Upgraded, RunError> {
    let out = restore_and_upgrade(repo, opts, upgrade_to, on_event).await;
    if out.is_err() {
        // What this run created for NEW and the physical copy goes while
        // still empty (refused before any data; as root both were made
        // before privileges were dropped); anything with data in it stays,
        // marked failed.
        let physical = physical_dir(&opts.pgdata);
        super::remove_created(&physical, &physical);
        if let Some(root) = &opts.created_dir {
            super::remove_created(&opts.pgdata, root);
        }
    }
    out
}

async fn restore_and_upgrade(
    repo: &Repo,
    opts: &RunOptions,
    upgrade_to: &Path,
    on_event: OnEvent,
) -> Result<Upgraded, RunError> {
    let target = upgrade_install(upgrade_to)?;
    let repo_major = repo.config().await?.pg_major;
    if target.major.get() <= repo_major.get() {
        return Err(RunError::UpgradeNotNewer {
            bin_dir: target.bin_dir,
            version: target.version,
            repo_major,
        });
    }
    let new_pgdata = opts.pgdata.clone();
    // `--port` is the final server's. The physical copy in between gets
    // another free port; a taken `--port` is refused before anything runs.
    let socket_dir = opts
        .socket_dir
        .clone()
        .unwrap_or_else(super::instance::default_socket_dir);
    let in_use = |source| RunError::Restore {
        dir: new_pgdata.display().to_string(),
        source,
    };
    if let Some(port) = opts.port {
        super::instance::check_port(port, &socket_dir).map_err(in_use)?;
    }
    let physical_port =
        super::instance::free_port_except(&socket_dir, opts.port).map_err(in_use)?;
    let physical = RunOptions {
        pgdata: physical_dir(&new_pgdata),
        action: Action::Promote,
        port: Some(physical_port),
        ..opts.clone()
    };
    let restored = restore(repo, &physical, on_event).await?;
    let outcome = super::upgrade::upgrade(
        &restored.outcome,
        &restored.bin_dir,
        &target.bin_dir,
        &new_pgdata,
        opts.port,
        &opts.db_user,
    )
    .await
    .map_err(|source| RunError::Upgrade {
        dir: new_pgdata.display().to_string(),
        source,
    })?;
    Ok(Upgraded {
        outcome,
        backup_major: restored.backup_major,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::TimelineChoice;

    fn spec(target: RecoveryTarget) -> TargetSpec {
        TargetSpec {
            target,
            inclusive: true,
            timeline: TimelineChoice::Latest,
            from: Default::default(),
        }
    }

    #[test]
    fn latest_always_promotes() {
        let latest = spec(RecoveryTarget::Latest);
        assert!(check(&latest, Action::Promote, None).is_ok());
        for action in [Action::Pause, Action::Shutdown] {
            assert!(matches!(
                check(&latest, action, None),
                Err(RunError::LatestNeedsPromote)
            ));
        }
        let immediate = spec(RecoveryTarget::Immediate);
        assert!(check(&immediate, Action::Pause, None).is_ok());
        // A standby replays everything archived, and goes on.
        assert!(check(&latest, Action::Standby, None).is_ok());
        assert!(matches!(
            check(&immediate, Action::Standby, None),
            Err(RunError::StandbyHasNoTarget)
        ));
    }

    #[test]
    fn upgrade_to_must_be_an_install() {
        let junk = tempfile::tempdir().unwrap();
        let err = check(
            &spec(RecoveryTarget::Latest),
            Action::Promote,
            Some(junk.path()),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::UpgradeNotAnInstall(_)), "{err:?}");
        assert!(err
            .to_string()
            .ends_with("not a PostgreSQL bin directory (it needs postgres, pg_ctl and initdb)"));
    }

    /// Refused before anything was restored (here: the install is not of
    /// a newer major), `rollback --upgrade-to` leaves neither NEW nor
    /// NEW.pitr-physical behind, as created for it when running as root.
    #[tokio::test]
    async fn a_refused_upgrade_takes_away_the_directories_made_for_it() {
        use crate::repo::store::{FsStore, PutMode};
        use crate::repo::{layout, RepoLocation, KIND_CONFIG};
        let bin = Path::new("/usr/lib/postgresql/15/bin");
        assert!(
            bin.join("postgres").exists(),
            "Debian's postgresql-15 (scripts/setup.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FsStore::new(dir.path().join("repo")));
        let repo = Repo::with_store(RepoLocation::Local(dir.path().join("repo")), store);
        let config = crate::catalog::RepoConfig {
            system_id: crate::pg::control::SystemId::new(1),
            pg_major: crate::pg::control::PgMajor::new(15).unwrap(),
            wal_segment_size: crate::pg::WalSegmentSize::new(16 << 20).unwrap(),
            fingerprint: crate::pg::control::ControlFile::decode(include_bytes!(
                "../../testdata/pg15/pg_control"
            ))
            .unwrap()
            .fingerprint,
            created_at: chrono::Utc::now(),
            created_by: "test".into(),
            encryption: None,
        };
        repo.put_meta(&layout::config(), KIND_CONFIG, &config, PutMode::Create)
            .await
            .unwrap();
        let root = dir.path().join("srv");
        let new = root.join("new");
        // What `pgdata::hand_over` makes as root: NEW (and its parent) and
        // the physical copy's directory, empty.
        let created = super::super::create_pgdata(&new, None).unwrap();
        std::fs::create_dir_all(physical_dir(&new)).unwrap();
        let opts = RunOptions {
            plan: PlanOptions {
                target: spec(RecoveryTarget::Latest),
                restore_rate: None,
                replay_rate: None,
                search: install::Search::default(),
            },
            pgdata: new.clone(),
            port: None,
            socket_dir: Some(dir.path().to_path_buf()),
            action: Action::Promote,
            db_user: "postgres".into(),
            jobs: 1,
            start: true,
            stall_timeout: Duration::from_secs(5),
            created_dir: created,
            primary_conninfo: None,
            archive: None,
            tablespace_map: Vec::new(),
        };
        let noop: OnEvent = std::sync::Arc::new(|_| {});
        let err = rollback_upgrade(&repo, &opts, bin, noop).await.unwrap_err();
        assert!(matches!(err, RunError::UpgradeNotNewer { .. }), "{err:?}");
        assert!(!new.exists() && !physical_dir(&new).exists() && !root.exists());
        // A NEW that was there before (and its contents) is left alone.
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("keep"), "x").unwrap();
        let opts = RunOptions {
            created_dir: None,
            ..opts
        };
        let noop: OnEvent = std::sync::Arc::new(|_| {});
        assert!(rollback_upgrade(&repo, &opts, bin, noop).await.is_err());
        assert!(new.join("keep").exists());
    }

    #[test]
    fn physical_copy_sits_beside_the_new_data_directory() {
        assert_eq!(
            physical_dir(Path::new("/srv/new")),
            Path::new("/srv/new.pitr-physical")
        );
        assert_eq!(
            physical_dir(Path::new("/")),
            Path::new("/pgdata.pitr-physical")
        );
    }
}
