//! `pitr status`: `recover::status::status` against `--repo` when given
//! (else the repository the server's own commands name).

use std::path::Path;

use crate::cli::args::S3Flags;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::recover::status;
use crate::repo::{Repo, RepoLocation};

pub async fn run(
    pgdata: &Path,
    repo: Option<&str>,
    s3: &S3Flags,
    db_user: &str,
    json: bool,
) -> Result<(), Failure> {
    let repo = match repo.filter(|r| !r.is_empty()) {
        Some(r) => Some(Repo::open(RepoLocation::parse(r)?, &s3.settings()).await),
        None => None,
    };
    let out = status::status(pgdata, db_user, repo).await?;
    render::status(&out, json)
}
