//! `pitr info`: the repository's catalog (`Repo::load_catalog`) with the
//! planner's restorable windows, and the archived WAL summed up per
//! timeline with the segments missing between the first and the last.

use crate::catalog::summary::wal_by_timeline;
use crate::cli::args::RepoArg;
use crate::cli::exit::Failure;
use crate::cli::render::{self, Info};
use crate::plan;

pub async fn run(arg: &RepoArg, json: bool) -> Result<(), Failure> {
    let repo = super::open_repo(arg).await?;
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
    render::info(&info, json)
}
