//! `pitr fork`: `recover::fork::fork`, the restore's progress through the
//! restore reporter.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::args::{self, RestoreArgs};
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::cli::report::Reporter;
use crate::recover::fork::{self, ForkOptions};
use crate::recover::Action;
use crate::repo::{Repo, RepoLocation};

pub struct Args {
    pub new_repo: String,
    pub archive_timeout: u64,
    /// What `drop_privileges` created for --pgdata and --new-repo.
    pub created_dir: Option<PathBuf>,
    pub created_new_repo: Option<PathBuf>,
}

pub async fn run(restore: &RestoreArgs, a: Args) -> Result<(), Failure> {
    let run = restore.run_options(
        Action::Promote,
        super::search(restore.pg_bin.as_deref()),
        a.created_dir,
    )?;
    let opts = ForkOptions {
        run,
        backup_jobs: restore
            .jobs
            .unwrap_or_else(|| args::default_jobs(&a.new_repo)),
        archive_timeout: Duration::from_secs(a.archive_timeout.max(1)),
        created_new_repo: a.created_new_repo,
    };
    let repo = super::open_repo(&restore.repo).await?;
    // The fork's repository is sealed with --repo's keys: what was
    // encrypted stays so.
    let new_repo = Repo::open(
        RepoLocation::parse(&a.new_repo)?,
        &restore.repo.s3_settings(),
    )
    .await
    .with_keys(restore.repo.keys())?;
    let reporter = Reporter::with_mode(restore.progress.progress, restore.json.json);
    let out = fork::fork(&repo, &new_repo, &opts, super::restore::progress(&reporter)).await;
    reporter.finish();
    render::fork(&out?, restore.json.json)
}
