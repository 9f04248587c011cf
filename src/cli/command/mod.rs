//! One module per command, in the manner of pgBackRest's `command/<verb>/`:
//! each maps its arguments to the options of ONE library function, calls
//! it, and hands the result to `cli::render`. No rule that a library
//! caller would need lives here.

pub mod backup;
pub mod check;
pub mod follow;
pub mod fork;
pub mod info;
pub mod init;
pub mod inspect;
pub mod installs;
pub mod plan;
pub mod promote;
pub mod restore;
pub mod rollback;
pub mod snapshot;
pub mod status;
pub mod verify;
pub mod wal_fetch;
pub mod wal_prefetch;
pub mod wal_push;

use crate::recover::install::Search;
use crate::repo::{Repo, RepoLocation};
use crate::server::install;

use super::args::RepoArg;
use super::exit::Failure;

/// The repository `arg` names, with its keys. Keys that do not fit it (a
/// repository in the clear, or another key) are refused here, before the
/// command does anything.
pub(crate) async fn open_repo(arg: &RepoArg) -> Result<Repo, Failure> {
    let repo = Repo::open(RepoLocation::parse(&arg.repo)?, &arg.s3_settings())
        .await
        .with_keys(arg.keys())?;
    if !repo.key_source().is_empty() {
        match repo.config().await {
            Ok(_) | Err(crate::repo::RepoError::NotInitialized(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(repo)
}

/// `PITR_PG_BIN_DIRS`: bin directories searched besides the usual places.
pub(crate) fn configured_dirs() -> Vec<std::path::PathBuf> {
    install::configured_dirs(std::env::var_os("PITR_PG_BIN_DIRS").as_deref())
}

/// Where installs are looked for: `--pg-bin` if given, the configured
/// directories, and who runs the scratch initdb.
pub(crate) fn search(pg_bin: Option<&std::path::Path>) -> Search {
    Search {
        pg_bin: pg_bin.map(|p| p.to_path_buf()),
        extra_dirs: configured_dirs(),
        initdb_user: install::scratch_user(),
    }
}
