//! Golden tests: the text (`explain::render`) and JSON (`pitr plan
//! --json`, docs/plan-json.md) of representative plans and refusals, over
//! one fixed catalog, compared with the files in `snapshots/`. A change
//! to what `plan` prints fails here; review it with `cargo insta review`
//! (or rerun with `INSTA_UPDATE=always`) and commit the new files.
//!
//! The catalog: timeline 1 archived in segments 1..=6; timeline 2
//! branched off it at 0/48008000 (inside segment 4) and archived in
//! segments 4..=8. Backups b1 (timeline 1, segment 1, 100 MiB), b2
//! (timeline 1, segment 3, 200 MiB) and b3 (timeline 2, segment 7).
//! Restore points "before_upgrade" (timeline 1, segment 3) and
//! "tl1_only" (timeline 1, segment 5, after the branch).

use super::cost::CostModel;
use super::testkit::{at, lsn, xact_lists, Kit};
use super::{
    explain, plan_with, restorable_windows, Plan, RecoveryTarget, TargetSpec, TimelineChoice, Xid,
};
use crate::catalog::Catalog;
use crate::pg::wal::{XactEnd, XactKind};

fn catalog() -> Catalog {
    kit().build()
}

fn kit() -> Kit {
    Kit::new()
        .segments(1, 1..=6)
        .branch(2, 1, lsn(4, 0x8000))
        .segments(2, 4..=8)
        .restore_point(1, 3, "before_upgrade", 31)
        .restore_point(1, 5, "tl1_only", 51)
        .backup("b1", 1, 1, 100)
        .backup("b2", 1, 3, 200)
        .backup("b3", 2, 7, 100)
}

fn spec(target: RecoveryTarget) -> TargetSpec {
    TargetSpec::new(target)
}

/// Planned as `recover::run` does: with the transaction lists an xid
/// target needs.
fn plan(c: &Catalog, spec: &TargetSpec, cost: &CostModel) -> Result<Plan, super::PlanError> {
    plan_with(c, spec, cost, &xact_lists(c))
}

fn planned(spec: &TargetSpec) -> Plan {
    match plan(&catalog(), spec, &CostModel::default()) {
        Ok(p) => p,
        Err(e) => panic!("{spec:?}: {e}"),
    }
}

/// Both renderings of one plan, each its own snapshot.
fn golden(name: &str, p: &Plan) {
    insta::assert_snapshot!(format!("{name}_text"), explain::render(p));
    insta::assert_snapshot!(
        format!("{name}_json"),
        serde_json::to_string_pretty(p).unwrap()
    );
}

#[test]
fn time_across_a_timeline_switch() {
    golden(
        "time_across_switch",
        &planned(&spec(RecoveryTarget::Time(at(1055)))),
    );
}

#[test]
fn time_refined_to_the_stop_record() {
    let mut p = planned(&spec(RecoveryTarget::Time(at(1055))));
    let xact = |lsn_off: u64, xid: u32, secs: i64| XactEnd {
        lsn: lsn(6, lsn_off),
        end_lsn: lsn(6, lsn_off + 0x40),
        kind: XactKind::Commit,
        xid,
        time: at(secs),
    };
    let list = [
        xact(0x3000, 2010, 1058),
        xact(0x1000, 2006, 1060),
        xact(0x0800, 2009, 1054),
    ];
    p.resolve_time(&[("000000020000000000000006", Some(&list))])
        .unwrap();
    golden("time_refined", &p);
}

#[test]
fn time_at_the_last_archived_commit() {
    // Timeline 2's last commit (segment 8, 1080 s): no later one for
    // recovery_target_time to stop before; the plan stops right after it.
    let mut p = planned(&spec(RecoveryTarget::Time(at(1080))));
    let list = [XactEnd {
        lsn: lsn(8, 0x1000),
        end_lsn: lsn(8, 0x1040),
        kind: XactKind::Commit,
        xid: 2008,
        time: at(1080),
    }];
    p.resolve_time(&[("000000020000000000000008", Some(&list))])
        .unwrap();
    golden("time_at_last_commit", &p);
}

#[test]
fn time_on_an_older_timeline() {
    let mut s = spec(RecoveryTarget::Time(at(55)));
    s.timeline = TimelineChoice::Id(super::testkit::tli(1));
    golden("time_timeline_1", &planned(&s));
}

#[test]
fn lsn_exclusive() {
    let mut s = spec(RecoveryTarget::Lsn(lsn(5, 0x3000)));
    s.inclusive = false;
    golden("lsn_exclusive", &planned(&s));
}

#[test]
fn xid() {
    golden("xid", &planned(&spec(RecoveryTarget::Xid(Xid::new(2006)))));
}

/// Timeline 2's segment 5 spans xids 1000..2005, so its bound holds 1005,
/// timeline 1's commit after the branch; its list does not.
#[test]
fn xid_off_the_newest_timeline() {
    let c = kit()
        .edit(2, 5, |r| {
            if let Some(s) = r.summary.as_mut() {
                s.min_xid = Some(1000);
            }
        })
        .build();
    let p = plan(
        &c,
        &spec(RecoveryTarget::Xid(Xid::new(1005))),
        &CostModel::default(),
    )
    .unwrap();
    golden("xid_off_newest", &p);
}

#[test]
fn restore_point() {
    golden(
        "name",
        &planned(&spec(RecoveryTarget::Name("before_upgrade".into()))),
    );
}

#[test]
fn restore_point_off_the_newest_timeline() {
    golden(
        "name_off_newest",
        &planned(&spec(RecoveryTarget::Name("tl1_only".into()))),
    );
}

#[test]
fn latest() {
    golden("latest", &planned(&spec(RecoveryTarget::Latest)));
}

#[test]
fn immediate() {
    golden("immediate", &planned(&spec(RecoveryTarget::Immediate)));
}

/// What `plan` says when it refuses, one line per case.
#[test]
fn refusals() {
    let gap = Kit::new()
        .segments(1, 1..=6)
        .without(1, 4)
        .backup("b1", 1, 1, 100)
        .build();
    let cases: Vec<(&str, Catalog, TargetSpec)> = vec![
        (
            "no backups",
            Kit::new().segments(1, 1..=3).build(),
            spec(RecoveryTarget::Latest),
        ),
        (
            "before the earliest backup",
            catalog(),
            spec(RecoveryTarget::Time(at(5))),
        ),
        (
            "after the latest WAL",
            catalog(),
            spec(RecoveryTarget::Time(at(5000))),
        ),
        (
            "across a gap",
            gap.clone(),
            spec(RecoveryTarget::Time(at(55))),
        ),
        (
            "LSN across a gap",
            gap.clone(),
            spec(RecoveryTarget::Lsn(lsn(5, 0))),
        ),
        ("latest from a gap", gap, spec(RecoveryTarget::Latest)),
        (
            "LSN past the end",
            catalog(),
            spec(RecoveryTarget::Lsn(lsn(99, 0))),
        ),
        (
            "unknown name",
            catalog(),
            spec(RecoveryTarget::Name("nope".into())),
        ),
        (
            "unknown xid",
            catalog(),
            spec(RecoveryTarget::Xid(Xid::new(7))),
        ),
        (
            "xid that aborted",
            Kit::new()
                .segments(1, 1..=6)
                .edit(1, 4, |r| {
                    if let Some(m) = r.summary.as_mut().and_then(|s| s.max_xact.as_mut()) {
                        m.kind = XactKind::Abort;
                    }
                })
                .backup("b1", 1, 1, 100)
                .build(),
            spec(RecoveryTarget::Xid(Xid::new(1004))),
        ),
        (
            "xid of another epoch",
            Kit::new()
                .segments(1, 1..=6)
                .edit(1, 2, |r| {
                    if let Some(s) = r.summary.as_mut() {
                        s.next_xid = Some((2 << 32) | 1002);
                    }
                })
                .backup("b1", 1, 1, 100)
                .build(),
            spec(RecoveryTarget::Xid(Xid::full((1 << 32) | 1004))),
        ),
        (
            "xid on another timeline",
            catalog(),
            TargetSpec {
                target: RecoveryTarget::Xid(Xid::new(2006)),
                inclusive: true,
                timeline: TimelineChoice::Id(super::testkit::tli(1)),
                from: Default::default(),
            },
        ),
        (
            "timeline without history",
            catalog(),
            TargetSpec {
                target: RecoveryTarget::Latest,
                inclusive: true,
                timeline: TimelineChoice::Id(super::testkit::tli(9)),
                from: Default::default(),
            },
        ),
        (
            "LSN before every backup",
            catalog(),
            spec(RecoveryTarget::Lsn(lsn(0, 0x10))),
        ),
    ];
    let mut out = String::new();
    for (what, c, s) in cases {
        let said = match plan(&c, &s, &CostModel::default()) {
            Ok(p) => format!("planned (backup {})", p.backup.id),
            Err(e) => format!("{e:?}\n    {e}"),
        };
        out.push_str(&format!("{what}:\n    {said}\n"));
    }
    insta::assert_snapshot!("refusals", out);
}

#[test]
fn windows() {
    let c = Kit::new()
        .segments(1, 1..=6)
        .branch(2, 1, lsn(4, 0x8000))
        .segments(2, 4..=9)
        .without(2, 8)
        .backup("b1", 1, 1, 100)
        .backup("b3", 2, 5, 100)
        .build();
    insta::assert_snapshot!(
        "windows",
        serde_json::to_string_pretty(&restorable_windows(&c)).unwrap()
    );
}
