//! `pitr wal-prefetch` (hidden; started by `wal-fetch --spool`):
//! `capture::wal_spool::prefetch`.

use std::path::PathBuf;

use crate::capture::wal_spool;
use crate::cli::args::{self, RepoArg};
use crate::cli::exit::Failure;

pub async fn run(
    arg: &RepoArg,
    spool: PathBuf,
    prefetch: usize,
    jobs: Option<usize>,
) -> Result<(), Failure> {
    let jobs = jobs.unwrap_or_else(|| args::default_jobs(&arg.repo));
    let repo = super::open_repo(arg).await?;
    wal_spool::prefetch(&repo, &wal_spool::Spool::new(spool), prefetch, jobs).await?;
    Ok(())
}
