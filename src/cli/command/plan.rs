//! `pitr plan`: `recover::run::plan_only` (the plan, its exact stop record
//! and the install that would run it), nothing touched.

use crate::cli::args::{RepoArg, TargetArgs};
use crate::cli::exit::Failure;
use crate::cli::render;
use crate::recover::run;

pub async fn run(arg: &RepoArg, target: &TargetArgs, json: bool) -> Result<(), Failure> {
    let opts = target.plan_options(super::search(None))?;
    let repo = super::open_repo(arg).await?;
    let plan = run::plan_only(&repo, &opts).await?;
    render::plan(&plan, json)
}
