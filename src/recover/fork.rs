//! `pitr fork`: a promoted, writable copy of the cluster at any target
//! restore accepts, that archives into a repository of its own
//! (`--new-repo`) from its first segment, with a first base backup taken
//! there once it is promoted, so the new repository alone restores it.
//!
//! The steps: the new repository is checked before anything is fetched
//! (apart from the source's, reachable, empty); the target is planned and
//! restored as `restore --action promote` does (`run::restore`, the same
//! refusals), except that the recovery settings turn archiving on with an
//! `archive_command` into the new repository, which is initialized from
//! the restored pg_control (the same system identifier: a physical copy
//! keeps it) before the server first starts, so Postgres itself archives
//! the new timeline's history file and every segment after promotion; then
//! the first base backup (`capture::backup`) into the new repository, and
//! a check that it holds the new timeline's history.
//!
//! Invariants: the source repository gains no object from the fork (no
//! WAL, history or backup; only the restore's timing record, which every
//! restore from it leaves in `catalog/timings/`); the new repository is
//! this fork's alone (`pitr.json` is created, never taken over). A fork
//! that fails leaves what a failed restore leaves (the server stopped,
//! `global/pg_control` removed, `PITR_RESTORE_FAILED`), and the new
//! repository is emptied of what this run put in it (directories it made
//! are removed).

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use crate::capture::backup::{self, BackupError, BackupOptions};
use crate::pg::{Lsn, TimelineId, WalFileName};
use crate::repo::init::{self, InitError, Initialized};
use crate::repo::store::StoreError;
use crate::repo::{layout, Repo, RepoError, RepoLocation};

use super::run::{self, RunError, RunOptions};
use super::{Action, OnEvent, RecoverError, RestoreOutcome};

#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("--new-repo {new_repo} is the source repository: a fork archives into a repository of its own")]
    SameRepo { new_repo: String },
    #[error("--new-repo {new_repo} and --repo {repo} overlap (one lies inside the other): a fork's repository must be apart from the source's")]
    Nested { repo: String, new_repo: String },
    #[error("--new-repo {new_repo} is not empty ({found}): a fork archives into a new, empty repository of its own; nothing was restored")]
    NotEmpty { new_repo: String, found: String },
    #[error("--new-repo {new_repo}")]
    NewRepo {
        new_repo: String,
        #[source]
        source: RepoError,
    },
    #[error("a fork is started, promoted and backed up: --no-start does not apply")]
    NoStart,
    #[error("a fork always promotes: --action {0} does not apply")]
    NotPromote(&'static str),
    #[error(transparent)]
    Run(Box<RunError>),
    #[error("the promoted fork did not say its timeline; it was stopped and marked failed")]
    NoTimeline,
    #[error("the fork's first backup into {new_repo} failed; the fork was stopped and marked failed, and what it put in {new_repo} removed")]
    FirstBackup {
        new_repo: String,
        #[source]
        source: Box<BackupError>,
    },
    #[error("timeline {timeline}'s history file did not reach {new_repo} within {waited_secs} s, so {new_repo} alone could not restore the fork; it was stopped and marked failed, and what it put in {new_repo} removed")]
    HistoryNotArchived {
        timeline: TimelineId,
        new_repo: String,
        waited_secs: u64,
    },
}

impl From<RunError> for ForkError {
    fn from(e: RunError) -> Self {
        ForkError::Run(Box::new(e))
    }
}

/// Why the fork's repository could not be made ready before its server
/// first started (inside `RecoverError::NewRepo`).
#[derive(Debug, thiserror::Error)]
pub enum NewRepoError {
    #[error("reading the restored cluster's identity")]
    Identity(#[source] BackupError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("another run initialized it meanwhile: a fork needs a repository of its own")]
    Taken,
}

/// Where a fork's server archives, as restore hands it on to the recovery
/// settings and to `init_new_repo`.
#[derive(Debug, Clone)]
pub struct ArchiveInto {
    pub repo: Repo,
    /// `archive_command` (`settings::archive_command` for `repo`).
    pub command: String,
    /// Set once this run created the repository's `pitr.json`: from then
    /// on what the repository holds is this fork's, and a failure empties
    /// it.
    pub initialized: Arc<AtomicBool>,
}

/// A fork: what to restore (`run.action` must be promote, `run.start`
/// true) and how to back it up.
#[derive(Debug, Clone)]
pub struct ForkOptions {
    pub run: RunOptions,
    /// Parallel uploads of the first backup.
    pub backup_jobs: usize,
    /// How long the first backup waits for its last segment, and the fork
    /// for its history file, to reach the new repository.
    pub archive_timeout: Duration,
    /// The outermost directory of a local `--new-repo` created before this
    /// call (as root, by the CLI, for the OS user); removed again (while
    /// empty) when the fork fails.
    pub created_new_repo: Option<PathBuf>,
}

/// A finished fork (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct ForkOutcome {
    pub data_directory: String,
    pub port: u16,
    pub socket_directory: String,
    /// The fork's own timeline (the one promotion began).
    pub timeline: TimelineId,
    /// The source repository, as given.
    pub repo: String,
    /// The fork's repository.
    pub new_repo: String,
    pub archive_command: String,
    /// The first base backup, in `new_repo`.
    pub first_backup_id: String,
    pub first_backup_stop_lsn: Lsn,
    /// The restore from the source repository the fork began with.
    pub restored: RestoreOutcome,
    pub elapsed_seconds: f64,
    pub server_log: String,
    pub connect: String,
}

/// What fork refuses before anything is created: `--no-start`, an action
/// other than promote, and a new repository that is the source's or lies
/// inside it (or it inside the new one).
pub fn check(
    repo: &RepoLocation,
    new_repo: &RepoLocation,
    start: bool,
    action: Action,
) -> Result<(), ForkError> {
    if !start {
        return Err(ForkError::NoStart);
    }
    if action != Action::Promote {
        return Err(ForkError::NotPromote(action.as_guc().unwrap_or("standby")));
    }
    match overlap(repo, new_repo) {
        Some(Overlap::Same) => Err(ForkError::SameRepo {
            new_repo: new_repo.to_arg(),
        }),
        Some(Overlap::Nested) => Err(ForkError::Nested {
            repo: repo.to_arg(),
            new_repo: new_repo.to_arg(),
        }),
        None => Ok(()),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Overlap {
    Same,
    /// One lies inside the other.
    Nested,
}

/// Whether two repositories share objects. Both S3 locations use the same
/// S3 settings, so one bucket name is one bucket.
fn overlap(a: &RepoLocation, b: &RepoLocation) -> Option<Overlap> {
    match (a, b) {
        (RepoLocation::Local(x), RepoLocation::Local(y)) => {
            let (x, y) = (resolved(x), resolved(y));
            if x == y {
                Some(Overlap::Same)
            } else if x.starts_with(&y) || y.starts_with(&x) {
                Some(Overlap::Nested)
            } else {
                None
            }
        }
        (
            RepoLocation::S3 {
                bucket: b1,
                prefix: p1,
            },
            RepoLocation::S3 {
                bucket: b2,
                prefix: p2,
            },
        ) if b1 == b2 => {
            let inside = |p: &str, of: &str| {
                of.is_empty() || p.strip_prefix(of).is_some_and(|r| r.starts_with('/'))
            };
            if p1 == p2 {
                Some(Overlap::Same)
            } else if inside(p1, p2) || inside(p2, p1) {
                Some(Overlap::Nested)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `p` as the file system resolves it, where it exists: absolute, `.` and
/// `..` taken out, its deepest existing ancestor canonicalized (symbolic
/// links followed) and the rest appended.
fn resolved(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::CurDir => {}
            other => norm.push(other),
        }
    }
    let mut base = norm.as_path();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = base.canonicalize() {
            let mut out = real;
            for name in tail.iter().rev() {
                out.push(name);
            }
            return out;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                base = parent;
            }
            _ => return norm,
        }
    }
}

/// A local `--new-repo` must be absent or an empty directory (as root,
/// the CLI asks this before it creates anything).
pub fn check_local_empty(path: &Path) -> Result<(), ForkError> {
    let named = || path.display().to_string();
    match std::fs::read_dir(path) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(entry) => {
                let name = entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "entries".into());
                Err(ForkError::NotEmpty {
                    new_repo: named(),
                    found: format!("it holds {name}"),
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(ForkError::NotEmpty {
            new_repo: named(),
            found: "a file, not a directory".into(),
        }),
        Err(source) => Err(ForkError::NewRepo {
            new_repo: named(),
            source: RepoError::Store(StoreError::Io {
                op: "list",
                path: named(),
                source,
            }),
        }),
    }
}

/// The new repository is reachable (its bucket exists) and holds nothing.
async fn check_new_repo(new_repo: &Repo) -> Result<(), ForkError> {
    let named = new_repo.location().to_arg();
    if let Some(path) = new_repo.location().local_path() {
        return check_local_empty(path);
    }
    let repo_err = |source: StoreError| ForkError::NewRepo {
        new_repo: named.clone(),
        source: RepoError::Store(source),
    };
    new_repo.store().check().await.map_err(repo_err)?;
    // Whatever is there, sealed or not, readable or not.
    let listed = new_repo.raw_store().list("").await.map_err(repo_err)?;
    match listed.first() {
        None => Ok(()),
        Some(first) => Err(ForkError::NotEmpty {
            new_repo: named.clone(),
            found: match listed.len() {
                1 => format!("it holds {}", first.key),
                n => format!("it holds {} and {} more objects", first.key, n - 1),
            },
        }),
    }
}

/// The outermost directory of `path` that does not exist yet (what
/// creating it would create), None when it exists.
fn outermost_missing(path: &Path) -> Option<PathBuf> {
    let mut missing = None;
    let mut dir = Some(path);
    while let Some(d) = dir {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing = Some(d.to_path_buf());
        dir = d.parent();
    }
    missing
}

/// Before the fork's server first starts (called by `restore` once the
/// data directory is materialized and configured): the new repository is
/// initialized for the restored cluster, from its pg_control and
/// PG_VERSION. It must be created here: one that another run initialized
/// meanwhile is refused, never shared.
pub async fn init_new_repo(archive: &ArchiveInto, pgdata: &Path) -> Result<(), RecoverError> {
    let named = archive.repo.location().to_arg();
    let err = |source| RecoverError::NewRepo {
        repo: named.clone(),
        source: Box::new(source),
    };
    let control = backup::read_control(pgdata).map_err(|e| err(NewRepoError::Identity(e)))?;
    let major = backup::read_major(pgdata).map_err(|e| err(NewRepoError::Identity(e)))?;
    let mut config = init::config_for(&control, major, Utc::now());
    // Keys given (those of an encrypted source): sealed with them too.
    if !archive.repo.key_source().is_empty() {
        let enc = init::encryption_for(&archive.repo, Utc::now())
            .map_err(|e| err(NewRepoError::Init(e)))?;
        config.encryption = Some(enc);
    }
    match init::init(&archive.repo, config, &named, pgdata).await {
        Ok(Initialized::Created(_)) => {
            archive.initialized.store(true, Ordering::SeqCst);
            Ok(())
        }
        Ok(Initialized::Existing(_)) => Err(err(NewRepoError::Taken)),
        Err(InitError::Repo(RepoError::Store(StoreError::AlreadyExists(_)))) => {
            Err(err(NewRepoError::Taken))
        }
        Err(e) => Err(err(NewRepoError::Init(e))),
    }
}

/// `pitr fork`: restores `opts.run` from `repo` as a promoted server that
/// archives into `new_repo`, and takes its first backup there.
pub async fn fork(
    repo: &Repo,
    new_repo: &Repo,
    opts: &ForkOptions,
    on_event: OnEvent,
) -> Result<ForkOutcome, ForkError> {
    let created = opts
        .created_new_repo
        .clone()
        .or_else(|| new_repo.location().local_path().and_then(outermost_missing));
    let initialized = Arc::new(AtomicBool::new(false));
    let out = match std::env::current_exe() {
        Ok(pitr_exe) => {
            let archive = ArchiveInto {
                repo: new_repo.clone(),
                command: super::settings::archive_command(
                    &pitr_exe.display().to_string(),
                    &new_repo.location().to_arg(),
                    &new_repo.pass_on_args(),
                ),
                initialized: initialized.clone(),
            };
            fork_into(repo, &archive, opts, on_event).await
        }
        Err(e) => {
            if let Some(root) = &opts.run.created_dir {
                super::remove_created(&opts.run.pgdata, root);
            }
            Err(RunError::Exe(e).into())
        }
    };
    if out.is_err() {
        if initialized.load(Ordering::SeqCst) {
            empty_new_repo(new_repo).await;
        }
        if let (Some(path), Some(root)) = (new_repo.location().local_path(), &created) {
            super::remove_created(path, root);
        }
    }
    out
}

async fn fork_into(
    repo: &Repo,
    archive: &ArchiveInto,
    opts: &ForkOptions,
    on_event: OnEvent,
) -> Result<ForkOutcome, ForkError> {
    let started = Instant::now();
    let new_repo = &archive.repo;
    let named = new_repo.location().to_arg();
    let refused = match check(
        repo.location(),
        new_repo.location(),
        opts.run.start,
        opts.run.action,
    ) {
        Ok(()) => check_new_repo(new_repo).await,
        Err(e) => Err(e),
    };
    if let Err(e) = refused {
        // As restore does for its refusals: what was made for --pgdata goes.
        if let Some(root) = &opts.run.created_dir {
            super::remove_created(&opts.run.pgdata, root);
        }
        return Err(e);
    }
    let run_opts = RunOptions {
        archive: Some(archive.clone()),
        ..opts.run.clone()
    };
    let restored = run::restore(repo, &run_opts, on_event).await?;
    let out = &restored.outcome;
    // From here on the fork is running: a failure stops it and marks it.
    let backed_up = async {
        let timeline = out.timeline.ok_or(ForkError::NoTimeline)?;
        let rec = backup::backup(
            new_repo,
            &BackupOptions {
                pgdata: opts.run.pgdata.clone(),
                conninfo: Some(conninfo(&out.socket_directory, out.port, &opts.run.db_user)),
                label: Some(format!("pitr fork: first backup (of {})", out.target)),
                fast: true,
                jobs: opts.backup_jobs.max(1),
                archive_timeout: opts.archive_timeout,
                max_rate: None,
                from_standby: None,
            },
            |_| {},
        )
        .await
        .map_err(|source| ForkError::FirstBackup {
            new_repo: named.clone(),
            source: Box::new(source),
        })?;
        wait_history(new_repo, timeline, opts.archive_timeout).await?;
        Ok((timeline, rec))
    }
    .await;
    let (timeline, first) = match backed_up {
        Ok(v) => v,
        Err(e) => {
            if let Err(stop) = super::instance::stop(&restored.bin_dir, &opts.run.pgdata).await {
                // Still running, its archiver may still push into the new
                // repository: emptying it now could leave objects without
                // its pitr.json. It is kept, and said so.
                archive.initialized.store(false, Ordering::SeqCst);
                tracing::error!(
                    error = %stop,
                    "could not stop the fork: its repository {} is kept (remove it once the server is stopped)",
                    archive.repo.location().to_arg()
                );
            }
            super::restore::mark_unusable(&opts.run.pgdata, "fork", &e);
            return Err(e);
        }
    };
    Ok(ForkOutcome {
        data_directory: out.data_directory.clone(),
        port: out.port,
        socket_directory: out.socket_directory.clone(),
        timeline,
        repo: repo.location().to_arg(),
        new_repo: named,
        archive_command: archive.command.clone(),
        first_backup_id: first.id,
        first_backup_stop_lsn: first.stop_lsn,
        restored: out.clone(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        server_log: out.server_log.clone(),
        connect: out.connect.clone(),
    })
}

/// A libpq connection string for the fork's server (values quoted as
/// libpq reads them: backslash and single quote escaped).
fn conninfo(socket_dir: &str, port: u16, user: &str) -> String {
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    format!(
        "host={} port={port} user={} dbname=postgres",
        q(socket_dir),
        q(user)
    )
}

/// Waits until the new repository holds timeline `tli`'s history file,
/// which Postgres archives at promotion (before the new timeline's
/// segments: pgarch.c archives history files first), and without which
/// the repository cannot plan a restore onto the fork's timeline.
async fn wait_history(repo: &Repo, tli: TimelineId, timeout: Duration) -> Result<(), ForkError> {
    let key = layout::aux_file(&WalFileName::History(tli));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match repo.store().head(&key).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "looking for the fork's history file"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ForkError::HistoryNotArchived {
                timeline: tli,
                new_repo: repo.location().to_arg(),
                waited_secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After a failed fork (its server stopped): removes everything in the
/// new repository, which was empty before this run and is this fork's
/// alone since it created `pitr.json`. A local repository keeps its
/// directory (removed by the caller if this run made it).
async fn empty_new_repo(new_repo: &Repo) {
    let result = match new_repo.location().local_path() {
        Some(root) => empty_dir(root).map_err(|e| e.to_string()),
        None => new_repo
            .store()
            .delete_prefix("")
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = result {
        tracing::error!(repo = %new_repo.location().to_arg(), error = %e,
            "could not empty the failed fork's repository");
    }
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(s: &str) -> RepoLocation {
        RepoLocation::parse(s).unwrap()
    }

    #[test]
    fn the_new_repository_is_apart_from_the_source() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("repo");
        std::fs::create_dir(&r).unwrap();
        let r_arg = r.display().to_string();
        let promote = |a: &str, b: &str| check(&loc(a), &loc(b), true, Action::Promote);

        let same = promote(&r_arg, &format!("{r_arg}/../repo/.")).unwrap_err();
        assert!(matches!(same, ForkError::SameRepo { .. }), "{same:?}");
        assert!(same
            .to_string()
            .ends_with("is the source repository: a fork archives into a repository of its own"));
        assert!(matches!(
            promote(&r_arg, &format!("file://{r_arg}")),
            Err(ForkError::SameRepo { .. })
        ));
        // Through a symbolic link, too.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&r, &link).unwrap();
        assert!(matches!(
            promote(&r_arg, &link.display().to_string()),
            Err(ForkError::SameRepo { .. })
        ));
        for (a, b) in [
            (r_arg.clone(), format!("{r_arg}/fork")),
            (format!("{r_arg}/inner"), r_arg.clone()),
        ] {
            assert!(
                matches!(promote(&a, &b), Err(ForkError::Nested { .. })),
                "{a} {b}"
            );
        }
        assert!(promote(&r_arg, &format!("{r_arg}-fork")).is_ok());
        assert!(promote(&r_arg, "s3://bucket/repo").is_ok());

        assert!(matches!(
            promote("s3://bkt/p", "s3://bkt/p/"),
            Err(ForkError::SameRepo { .. })
        ));
        for (a, b) in [("s3://bkt/p", "s3://bkt/p/q"), ("s3://bkt", "s3://bkt/p")] {
            assert!(
                matches!(promote(a, b), Err(ForkError::Nested { .. })),
                "{a} {b}"
            );
        }
        assert!(promote("s3://bkt/p", "s3://bkt/pq").is_ok());
        assert!(promote("s3://bkt/p", "s3://other/p").is_ok());
    }

    #[test]
    fn a_fork_is_started_and_promoted() {
        let (a, b) = (loc("/srv/a"), loc("/srv/b"));
        assert!(matches!(
            check(&a, &b, false, Action::Promote),
            Err(ForkError::NoStart)
        ));
        assert!(matches!(
            check(&a, &b, true, Action::Pause),
            Err(ForkError::NotPromote("pause"))
        ));
    }

    #[test]
    fn a_local_new_repository_must_be_absent_or_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_local_empty(&d.path().join("new")).is_ok());
        assert!(check_local_empty(d.path()).is_ok());
        std::fs::write(d.path().join("pitr.json"), b"{}").unwrap();
        let e = check_local_empty(d.path()).unwrap_err();
        assert!(matches!(e, ForkError::NotEmpty { .. }), "{e:?}");
        assert!(e.to_string().contains("(it holds pitr.json)"), "{e}");
        let e = check_local_empty(&d.path().join("pitr.json")).unwrap_err();
        assert!(e.to_string().contains("a file, not a directory"), "{e}");
    }

    #[tokio::test]
    async fn an_s3_like_new_repository_must_hold_nothing() {
        use crate::repo::store::{MemoryStore, PutMode, Store};
        let store = Arc::new(MemoryStore::new());
        let repo = Repo::with_store(loc("s3://bucket/fork"), store.clone());
        assert!(check_new_repo(&repo).await.is_ok());
        for k in ["pitr.json", "wal/00000002/x.json"] {
            let key = crate::repo::store::ObjectKey::new(k).unwrap();
            store.put(&key, b"{}", PutMode::Create).await.unwrap();
        }
        let e = check_new_repo(&repo).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("(it holds pitr.json and 1 more objects)"),
            "{e}"
        );
    }

    #[test]
    fn conninfo_quotes_as_libpq_reads() {
        let c = conninfo("/tmp/it's here", 5433, "postgres");
        assert_eq!(
            c,
            "host='/tmp/it\\'s here' port=5433 user='postgres' dbname=postgres"
        );
        let cfg: tokio_postgres::Config = c.parse().unwrap();
        assert_eq!(cfg.get_user(), Some("postgres"));
        assert_eq!(cfg.get_ports(), [5433]);
        assert!(matches!(
            &cfg.get_hosts()[0],
            tokio_postgres::config::Host::Unix(p) if p == Path::new("/tmp/it's here")
        ));
    }

    #[test]
    fn only_what_is_missing_counts_as_created() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(outermost_missing(d.path()), None);
        assert_eq!(
            outermost_missing(&d.path().join("a/b/c")),
            Some(d.path().join("a"))
        );
    }
}
