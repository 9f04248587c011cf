//! `pitr wal-push` (archive_command): `capture::wal_push`.

use std::path::Path;

use crate::capture::wal_push;
use crate::cli::args::RepoArg;
use crate::cli::exit::Failure;
use crate::cli::render;

pub async fn run(arg: &RepoArg, path: &Path, json: bool) -> Result<(), Failure> {
    let repo = super::open_repo(arg).await?;
    let out = wal_push::wal_push(&repo, path).await?;
    render::wal_push(&out, json)
}
