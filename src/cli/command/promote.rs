//! `pitr promote`: `recover::promote::promote`, with the repository of
//! `--archive-to` opened first.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::args::{KeyFlags, S3Flags};
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::recover::promote::{self, PromoteOptions};
use crate::repo::{Repo, RepoLocation};

pub struct Args {
    pub pgdata: PathBuf,
    pub archive_to: Option<String>,
    pub s3: S3Flags,
    pub keys: KeyFlags,
    pub db_user: String,
    pub wait: Duration,
    pub json: bool,
}

pub async fn run(a: &Args) -> Result<(), Failure> {
    let repo = match &a.archive_to {
        Some(r) => Some(
            Repo::open(RepoLocation::parse(r)?, &a.s3.settings())
                .await
                .with_keys(a.keys.source())?,
        ),
        None => None,
    };
    let opts = PromoteOptions {
        pgdata: &a.pgdata,
        db_user: &a.db_user,
        archive_to: repo.as_ref(),
        wait: a.wait,
    };
    let out = promote::promote(&opts).await?;
    render::promote(&out, a.json)
}
