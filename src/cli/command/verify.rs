//! `pitr verify`: `recover::verify_repo::verify_integrity`, or with
//! `--restore` `recover::verify_restore::verify_restore`; the result is
//! recorded in the repository (`catalog/verify/`), printed, and any
//! problem is exit code 10 naming each.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::args::{default_jobs, VerifyArgs};
use crate::cli::exit::{Code, Failure};
use crate::cli::render;
use crate::cli::report::Reporter;
use crate::recover::verify_repo::{self, Finding, IntegrityOptions, VerifyEvent};
use crate::recover::verify_restore::{self, RestoreCheckOptions};

pub async fn run(args: &VerifyArgs, scratch: Option<PathBuf>) -> Result<(), Failure> {
    if args.restore {
        // As root the scratch directory was made before privileges were
        // dropped; it goes whatever happens here.
        let out = restore(args, scratch.clone()).await;
        if let Some(dir) = scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
        return out;
    }
    let repo = super::open_repo(&args.repo).await?;
    let reporter = Reporter::new(args.json.json);
    let r = reporter.clone();
    let opts = IntegrityOptions {
        jobs: args.jobs.unwrap_or_else(|| default_jobs(&args.repo.repo)),
        on_event: Arc::new(move |ev| match ev {
            VerifyEvent::Total { bytes } => r.bytes(bytes, "verify"),
            VerifyEvent::Bytes(n) => r.inc(n),
        }),
    };
    let out = verify_repo::verify_integrity(&repo, &opts).await;
    reporter.finish();
    let report = out?;
    let recorded = record(&repo, &verify_repo::integrity_result(&report)).await;
    render::verify_integrity(&report, recorded.as_deref(), args.json.json)?;
    problems(&report.problems)
}

async fn restore(args: &VerifyArgs, scratch: Option<PathBuf>) -> Result<(), Failure> {
    let to = args
        .to
        .as_deref()
        .map(crate::plan::parse_time)
        .transpose()?;
    let repo = super::open_repo(&args.repo).await?;
    let scratch = match scratch {
        Some(d) => d,
        None => verify_restore::create_scratch(None)?,
    };
    let opts = RestoreCheckOptions {
        to,
        search: super::search(args.pg_bin.as_deref()),
        scratch,
        db_user: args.db_user.clone(),
        jobs: args.jobs.unwrap_or_else(|| default_jobs(&args.repo.repo)),
        stall_timeout: std::time::Duration::from_secs(args.stall_timeout.max(1)),
    };
    let reporter = Reporter::new(args.json.json);
    let out =
        verify_restore::verify_restore(&repo, &opts, super::restore::progress(&reporter)).await;
    reporter.finish();
    let report = match out {
        Ok(r) => r,
        Err(e) => {
            // "Last verify result" shows the failure too.
            record(&repo, &verify_restore::failed_result()).await;
            return Err(e.into());
        }
    };
    let recorded = record(&repo, &verify_restore::restore_result(&report)).await;
    render::verify_restore(&report, recorded.as_deref(), args.json.json)?;
    problems(&report.problems)
}

/// Records the result; best effort (a repository that cannot take it does
/// not change what verify found), the key when written.
async fn record(repo: &crate::repo::Repo, result: &crate::catalog::VerifyResult) -> Option<String> {
    match verify_repo::record_result(repo, result).await {
        Ok(k) => Some(k.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "could not record the verify result in the repository");
            None
        }
    }
}

/// Exit 10 naming every problem, when there is any.
fn problems(found: &[Finding]) -> Result<(), Failure> {
    if found.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = found
        .iter()
        .map(|f| format!("{} {}", kind_name(f), f.key))
        .collect();
    Err(Failure::new(
        Code::Problems,
        anyhow::anyhow!(
            "verify found {} problem(s): {}",
            found.len(),
            named.join(", ")
        ),
    ))
}

fn kind_name(f: &Finding) -> String {
    serde_json::to_value(f.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", f.kind))
}
