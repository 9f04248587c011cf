//! `pitr wal-fetch` (restore_command): through the prefetch spool
//! (`capture::wal_spool::fetch_spooled`) when `--spool` is given, else
//! (or on a miss) `capture::wal_fetch`. Every failure but "not archived"
//! exits 200, which stops recovery (docs/exit-codes.md).

use std::path::Path;

use crate::capture::{wal_fetch, wal_spool};
use crate::cli::args::RepoArg;
use crate::cli::exit::Failure;

pub async fn run(
    arg: &RepoArg,
    name: &str,
    dest: &Path,
    spool: Option<&Path>,
    prefetch: usize,
) -> Result<(), Failure> {
    if let Some(dir) = spool {
        if wal_spool::fetch_spooled(dir, prefetch, name, dest, || {
            start_prefetcher(arg, dir, prefetch)
        }) {
            return Ok(());
        }
    }
    async {
        let repo = super::open_repo(arg).await?;
        wal_fetch::wal_fetch(&repo, name, dest).await?;
        Ok(())
    }
    .await
    .map_err(Failure::stop_recovery)
}

/// Starts `pitr wal-prefetch` (this same binary, with this run's
/// repository flags) detached: own process group, no terminal, errors
/// appended to `DIR/.log`; it outlives this restore_command.
fn start_prefetcher(repo: &RepoArg, dir: &Path, prefetch: usize) -> std::io::Result<()> {
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
    cmd.args(repo.keys().to_args());
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(())
}
