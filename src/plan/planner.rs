//! `plan`: from a target to a Plan, in the planner's order: choose the
//! timeline, view its history, locate the stop, find the cheapest route
//! to it, assemble the steps and evidence. Each stage lives in its own
//! module; this one only sequences them.

use super::cost::CostModel;
use super::timeline::{self, Timeline};
use super::{
    locate, route, steps, Plan, PlanError, RecoveryTarget, StartFilter, TargetSpec, XactLists,
};
use crate::catalog::Catalog;

/// Plans recovery to `spec` over `catalog`. An xid target is planned from
/// the bounds alone (see `plan_with`).
pub fn plan(catalog: &Catalog, spec: &TargetSpec, cost: &CostModel) -> Result<Plan, PlanError> {
    plan_with(catalog, spec, cost, &XactLists::new())
}

/// Plans recovery to `spec` over `catalog`, with the transaction lists an
/// xid target is proven from (`xid_candidates` names the segments; a
/// candidate without a list falls back to its xid range).
pub fn plan_with(
    catalog: &Catalog,
    spec: &TargetSpec,
    cost: &CostModel,
    xacts: &XactLists,
) -> Result<Plan, PlanError> {
    if catalog.backups.is_empty() {
        return Err(PlanError::NoBackups);
    }
    let (tli, timeline_reason) = choose_timeline(catalog, spec, xacts)?;
    let line = Timeline::new(catalog, tli)?;
    let Some(backups) = line.backups_from(&spec.from) else {
        return Err(match &spec.from {
            StartFilter::Any => PlanError::NotFound {
                target: "a backup".into(),
                timeline: tli,
                searched: None,
                hint: "no backup lies on this timeline's history: take one with `pitr backup`"
                    .into(),
            },
            from => PlanError::NotFound {
                target: from.to_string(),
                timeline: tli,
                searched: None,
                hint: format!(
                    "--from {} admits no start point on this timeline's history that can be brought back: `pitr info` lists them; leave --from out to use any",
                    String::from(from.clone())
                ),
            },
        });
    };
    // Every stop but --immediate's is found first, then routed to; the
    // stop of --immediate depends on the backup, so it is routed first.
    let mut time_stop = None;
    let located = match &spec.target {
        RecoveryTarget::Time(t) => {
            let (located, pending) = locate::time::locate(*t, spec.inclusive, &line, &backups)?;
            time_stop = Some(pending);
            Some(located)
        }
        RecoveryTarget::Lsn(l) => Some(locate::lsn::locate(*l, spec.inclusive, &line, &backups)?),
        RecoveryTarget::Xid(x) => Some(locate::xid::locate(
            *x,
            spec.inclusive,
            &line,
            &backups,
            xacts,
        )?),
        RecoveryTarget::Name(n) => Some(locate::name::locate(n, &line, &backups)?),
        RecoveryTarget::Latest => Some(locate::latest::locate(&line, &backups)?),
        RecoveryTarget::Immediate => None,
    };
    let (route, located) = match located {
        Some(located) => (
            route::cheapest(&line, &backups, &spec.target, &located, cost)?,
            located,
        ),
        None => {
            let route = route::self_contained(&line, &backups, cost)?;
            let located = locate::immediate::locate(&line, route.chosen);
            (route, located)
        }
    };
    let mut plan = steps::assemble(spec, &line, timeline_reason, route, located, cost);
    plan.time_stop = time_stop;
    Ok(plan)
}

/// The timeline: an xid target's from its exact transaction lists, every
/// other's from the timeline view.
fn choose_timeline(
    catalog: &Catalog,
    spec: &TargetSpec,
    xacts: &XactLists,
) -> Result<(crate::pg::TimelineId, String), PlanError> {
    match &spec.target {
        RecoveryTarget::Xid(x) => locate::xid::choose(catalog, spec, *x, xacts),
        _ => timeline::choose(catalog, spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testkit::{lsn, tli, Kit};
    use crate::plan::TimelineChoice;

    #[test]
    fn no_backup_at_all() {
        let c = Kit::new().segments(1, 1..=3).build();
        let spec = TargetSpec::new(RecoveryTarget::Latest);
        assert_eq!(
            plan(&c, &spec, &CostModel::default()).unwrap_err(),
            PlanError::NoBackups
        );
    }

    #[test]
    fn no_backup_on_the_chosen_history() {
        // The only backup was taken on timeline 1 after timeline 2 left it.
        let c = Kit::new()
            .segments(1, 1..=6)
            .branch(2, 1, lsn(3, 0))
            .segments(2, 3..=6)
            .backup("b1", 1, 5, 1)
            .build();
        let spec = TargetSpec::new(RecoveryTarget::Latest);
        assert!(matches!(
            plan(&c, &spec, &CostModel::default()),
            Err(PlanError::NotFound { target, timeline, .. })
                if target == "a backup" && timeline == tli(2)
        ));
        // Along timeline 1 it is there.
        let spec = TargetSpec {
            timeline: TimelineChoice::Id(tli(1)),
            ..spec
        };
        let p = plan(&c, &spec, &CostModel::default()).unwrap();
        assert_eq!((p.backup.id.as_str(), p.timeline), ("b1", tli(1)));
    }
}
