//! `pitr init`: `repo::init::init` for the cluster in `--pgdata`.

use std::path::Path;

use chrono::Utc;

use crate::capture::backup;
use crate::cli::args::RepoArg;
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::repo::init;

pub async fn run(arg: &RepoArg, pgdata: &Path, encrypt: bool, json: bool) -> Result<(), Failure> {
    let repo = super::open_repo(arg).await?;
    let control = backup::read_control(pgdata)?;
    let major = backup::read_major(pgdata)?;
    let mut config = init::config_for(&control, major, Utc::now());
    if encrypt {
        config.encryption = Some(init::encryption_for(&repo, Utc::now())?);
    }
    let out = init::init(&repo, config, &arg.repo, pgdata).await?;
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pitr".into());
    let command = crate::recover::settings::archive_command(
        &exe,
        &repo.location().to_arg(),
        &repo.pass_on_args(),
    );
    render::init(&out, &arg.repo, &command, json)
}
