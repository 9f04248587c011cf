//! `pitr inspect`: a data directory's pg_control, PG_VERSION and
//! backup_label (`capture::backup::read_control`, `read_major`), or a
//! backup's record in the repository (`Repo::get_meta`).

use std::path::Path;

use crate::capture::backup;
use crate::catalog::BackupRecord;
use crate::cli::args::{RepoArg, S3Flags};
use crate::cli::exit::Failure;
use crate::cli::render::{self, DataDirFacts};
use crate::repo::{layout, KIND_BACKUP};
use crate::server::install;

pub async fn run(
    pgdata: Option<&Path>,
    backup_id: Option<&str>,
    repo: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    match (pgdata, backup_id) {
        (Some(dir), None) => {
            let control = backup::read_control(dir)?;
            let major = backup::read_major(dir)?;
            let facts = DataDirFacts {
                pgdata: dir.display().to_string(),
                major,
                backup_label: std::fs::read_to_string(dir.join("backup_label")).ok(),
                control,
                arch: install::machine_arch(),
            };
            render::inspect_dir(&facts, json)
        }
        (None, Some(id)) => {
            let Some(repo_spec) = repo else {
                return Err(Failure::usage("--backup needs --repo (or PITR_REPO)"));
            };
            let arg = RepoArg {
                repo: repo_spec,
                s3: S3Flags {
                    s3_region: std::env::var("AWS_REGION").ok(),
                    s3_endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
                    s3_path_style: std::env::var("PITR_S3_PATH_STYLE")
                        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on")),
                },
                // It reads a backup's record only: the catalog needs no key.
                keys: Default::default(),
            };
            let repo = super::open_repo(&arg).await?;
            let key = layout::backup_record(id)?;
            let rec: BackupRecord = match repo.get_meta(&key, KIND_BACKUP).await {
                Err(e) if e.is_not_found() => {
                    return Err(Failure::usage(format!(
                        "no backup {id} in {}: `pitr info` lists them",
                        repo.location().to_arg()
                    )))
                }
                other => other?,
            };
            render::inspect_backup(&rec, json)
        }
        _ => Err(Failure::usage(
            "give a data directory (pitr inspect /path/to/pgdata) or --backup ID",
        )),
    }
}
