//! `pitr check`: `ops::check::check`, rendered, with the report's
//! status as the exit code: 0 ok, 11 warning, 12 critical (errors keep
//! their codes); with `--nagios`, a plugin's 0, 1, 2 and 3 (the check
//! could not run).

use std::io::Write;
use std::path::PathBuf;

use crate::cli::args::RepoArg;
use crate::cli::exit::{Code, Failure};
use crate::cli::render;
use crate::ops::check::{self, CheckOptions, Health, Report, Thresholds};

pub struct Args {
    pub pgdata: Option<PathBuf>,
    pub db_user: String,
    pub thresholds: Thresholds,
    pub nagios: bool,
    pub json: bool,
}

pub async fn run(arg: &RepoArg, a: &Args) -> Result<(), Failure> {
    let outcome = report(arg, a).await;
    if a.nagios {
        // A plugin's exit status is its whole answer: 3 when the check
        // could not run, whatever pitr's own code for the cause.
        let status = match &outcome {
            Ok(r) => match r.status {
                Health::Ok => 0,
                Health::Warning => 1,
                Health::Critical => 2,
            },
            Err(f) => {
                println!("UNKNOWN: {:#}", f.error);
                3
            }
        };
        let _ = std::io::stdout().flush();
        std::process::exit(status);
    }
    let r = outcome?;
    let worst: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.status == r.status)
        .map(|c| c.check)
        .collect();
    match r.status {
        Health::Ok => Ok(()),
        Health::Warning => Err(Failure::new(
            Code::CheckWarning,
            anyhow::anyhow!("check: warning ({})", worst.join(", ")),
        )),
        Health::Critical => Err(Failure::new(
            Code::CheckCritical,
            anyhow::anyhow!("check: critical ({})", worst.join(", ")),
        )),
    }
}

async fn report(arg: &RepoArg, a: &Args) -> Result<Report, Failure> {
    let repo = super::open_repo(arg).await?;
    let opts = CheckOptions {
        pgdata: a.pgdata.clone(),
        db_user: a.db_user.clone(),
        thresholds: a.thresholds.clone(),
    };
    let r = check::check(&repo, &opts).await?;
    render::check(&r, a.json, a.nagios)?;
    Ok(r)
}
