//! `pitr snapshot`: `capture::snapshot::snapshot`, then the report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::snapshot::{self, SnapshotOptions};
use crate::cli::args::{ProviderArg, RepoArg};
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::recover::pgdata::PgdataError;
use crate::server::user::OsUser;

pub struct Args {
    pub pgdata: PathBuf,
    pub provider: ProviderArg,
    pub conn: Option<String>,
    pub atomic: bool,
    pub where_: crate::cli::args::ProviderFlags,
    pub archive_timeout: u64,
    pub json: bool,
}

pub async fn run(arg: &RepoArg, a: Args) -> Result<(), Failure> {
    let repo = super::open_repo(arg).await?;
    let opts = SnapshotOptions {
        pgdata: a.pgdata,
        conninfo: a.conn,
        provider: a.provider.into(),
        provider_args: a.where_.args(),
        atomic: a.atomic,
        archive_timeout: Duration::from_secs(a.archive_timeout),
    };
    let report = snapshot::snapshot(&repo, &opts).await?;
    render::snapshot(&report, a.json)
}

/// As root, before becoming the data directory's owner: the snapshot
/// directory exists and is that owner's (the btrfs and copy providers
/// write into it as the owner).
pub fn prepare_dir(pgdata: &Path, given: Option<&Path>, owner: &OsUser) -> Result<(), Failure> {
    let dir = snapshot::snapshot_dir(pgdata, given);
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|source| PgdataError::Create {
        path: dir.clone(),
        source,
    })?;
    std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid)).map_err(|source| {
        PgdataError::GiveAway {
            path: dir.clone(),
            user: owner.name.clone(),
            source,
        }
    })?;
    Ok(())
}
