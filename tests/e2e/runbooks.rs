//! The runbooks in docs/runbooks/ are executed here exactly as written:
//! every fenced block whose info string is `sh`, in order, in one bash
//! (`set -euo pipefail`), with the runbook's variables set for a test
//! cluster and `pitr` and the PostgreSQL client on PATH. A runbook that
//! drifts from the code fails. Blocks marked otherwise (`text`) are shown
//! to the reader only.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// The `sh` blocks of a Markdown text, in order.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                let info = info.trim();
                assert!(
                    !matches!(info, "bash" | "shell" | "console" | "zsh"),
                    "a ```{info} block: mark commands the test runs `sh`, and others `text`"
                );
                current = (info == "sh").then(String::new);
                if current.is_none() {
                    // A block of another kind: skip to its end.
                    current = Some(String::from("\u{0}skip"));
                }
            }
            (Some(b), Some(_)) => {
                if !b.starts_with('\u{0}') {
                    blocks.push(std::mem::take(b));
                }
                current = None;
            }
            (Some(b), None) => {
                if !b.starts_with('\u{0}') {
                    b.push_str(line);
                    b.push('\n');
                }
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    blocks
}

/// Runs runbook `name` (docs/runbooks/<name>.md) with `vars`; returns
/// its standard output. Fails the test, with everything it printed, when
/// any command fails.
pub fn run_runbook(name: &str, vars: &[(&str, String)], work: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/runbooks/{name}.md"));
    let md = std::fs::read_to_string(&path).unwrap();
    let blocks = sh_blocks(&md);
    assert!(blocks.len() >= 3, "{name}: only {} sh blocks", blocks.len());
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let pitr_dir = pitr_exe().parent().unwrap().to_path_buf();
    let path_var = format!(
        "{}:{PG_BIN}:{}",
        pitr_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(&script)
        .current_dir(work)
        .env("PATH", path_var);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "runbook {name} failed ({}):\n--- script ---\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn sh_blocks_are_the_ones_run() {
    let md = "intro\n```sh\necho one\n```\n```text\nnot run\n```\n  ```sh\necho two\n  ```\n";
    assert_eq!(sh_blocks(md), ["echo one\n", "echo two\n"]);
}

/// docs/runbooks/rollback.md: a table emptied by mistake, rolled back to
/// the moment before, into a new server.
#[test]
fn rollback_runbook() {
    let c = Cluster::new();
    c.psql("create table orders(id int primary key, item text)");
    c.psql("insert into orders select g, 'item ' || g from generate_series(1, 100) g");
    c.backup();
    c.psql("insert into orders select g, 'late ' || g from generate_series(101, 120) g");
    let before = c.psql("select now()").trim().to_string();
    let kept = c.psql("select count(*), sum(id) from orders");
    c.psql("delete from orders");
    c.switch_and_archive();
    let new_pgdata = c.path_of("rolled-back");
    let port = free_port();
    let work = c.dir.path().join("runbook-rollback");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_runbook(
        "rollback",
        &[
            ("PITR_REPO", c.pitr.spec.clone()),
            ("TARGET_TIME", before.clone()),
            ("NEW_PGDATA", new_pgdata.display().to_string()),
            ("NEW_PORT", port.to_string()),
            ("SOCKET_DIR", c.socket_dir().display().to_string()),
        ],
        &work,
    );
    assert!(out.contains("restored backup"), "{out}");
    assert!(
        out.lines().any(|l| l.trim() == "f"),
        "the server is writable: {out}"
    );
    let rows = psql(c.socket_dir(), port, "select count(*), sum(id) from orders");
    assert_eq!(rows, kept, "rolled back to {before}");
    stop_server(&new_pgdata);
}

/// docs/runbooks/disaster-recovery.md: the primary stopped without a
/// shutdown checkpoint (its host is "gone"); the runbook restores the
/// newest archived moment onto a new data directory, resumes archiving
/// into the same repository on a new timeline and backs it up. Then the
/// new primary's writes restore from the repository alone.
#[test]
fn disaster_recovery_runbook() {
    let c = Cluster::new();
    c.psql("create table orders(id int primary key, item text)");
    c.psql("insert into orders select g, 'item ' || g from generate_series(1, 100) g");
    c.backup();
    c.psql("insert into orders select g, 'late ' || g from generate_series(101, 150) g");
    c.switch_and_archive();
    let archived = c.psql("select count(*), sum(id) from orders");
    let lost_at = c.psql("select now()").trim().to_string();
    // The host is gone: no shutdown checkpoint, nothing more archived.
    stop_server_with(&c.bin, &c.pgdata);
    let new_pgdata = c.path_of("recovered");
    let port = free_port();
    let work = c.dir.path().join("runbook-dr");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_runbook(
        "disaster-recovery",
        &[
            ("PITR_REPO", c.pitr.spec.clone()),
            ("NEW_PGDATA", new_pgdata.display().to_string()),
            ("NEW_PORT", port.to_string()),
            ("SOCKET_DIR", c.socket_dir().display().to_string()),
            ("LOST_AT", lost_at.clone()),
        ],
        &work,
    );
    let rpo: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("RPO: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no RPO line: {out}"));
    // The last commit was archived a moment before the loss.
    assert!((0..120).contains(&rpo), "RPO {rpo} s: {out}");
    assert!(out.contains(&format!("primary lost at {lost_at}")), "{out}");
    for l in out
        .lines()
        .filter(|l| l.starts_with("RPO: ") || l.starts_with("RTO: "))
    {
        eprintln!("disaster-recovery runbook: {l}");
    }
    assert!(out.lines().any(|l| l.starts_with("RTO: ")), "{out}");
    // Every archived commit survived, and the server is a primary on
    // timeline 2 that archives into the same repository.
    let q = |sql: &str| psql(c.socket_dir(), port, sql);
    assert_eq!(q("select count(*), sum(id) from orders"), archived);
    assert_eq!(q("select pg_is_in_recovery()").trim(), "f");
    assert_eq!(
        q("select timeline_id from pg_control_checkpoint()").trim(),
        "2"
    );
    let info = c.pitr.json(&["info"]);
    let on_2 = info["backups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["timeline"] == 2);
    assert!(on_2, "the first backup of timeline 2: {info:#}");
    // The new primary's writes are protected: archived on timeline 2 and
    // restored from the repository alone.
    q("insert into orders values (1000, 'after the disaster')");
    let seg = q("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    c.wait_archived(&seg);
    let again = c.path_of("again");
    let r = c.restore_to("restore", "again", &["--latest"]);
    assert_eq!(
        r.psql("select count(*) from orders where id = 1000").trim(),
        "1"
    );
    drop(r);
    let _ = std::fs::remove_dir_all(again);
    stop_server(&new_pgdata);
}

/// docs/runbooks/fork.md: a fork at a moment, writable, protected by its
/// own repository, which alone restores it.
#[test]
fn fork_runbook() {
    let c = Cluster::new();
    c.psql("create table orders(id int primary key, item text)");
    c.psql("insert into orders select g, 'item ' || g from generate_series(1, 100) g");
    c.backup();
    c.psql("insert into orders values (101, 'before the fork')");
    let at = c.psql("select now()").trim().to_string();
    let kept = c.psql("select count(*), sum(id) from orders");
    c.psql("insert into orders values (102, 'after the fork')");
    c.switch_and_archive();
    let fork_repo = c.dir.path().join("fork-repo");
    let fork_pgdata = c.path_of("fork");
    let port = free_port();
    let work = c.dir.path().join("runbook-fork");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_runbook(
        "fork",
        &[
            ("PITR_REPO", c.pitr.spec.clone()),
            ("FORK_REPO", fork_repo.display().to_string()),
            ("FORK_TIME", at.clone()),
            ("FORK_PGDATA", fork_pgdata.display().to_string()),
            ("FORK_PORT", port.to_string()),
            ("SOCKET_DIR", c.socket_dir().display().to_string()),
        ],
        &work,
    );
    assert!(out.lines().any(|l| l.trim() == "f"), "writable: {out}");
    let q = |sql: &str| psql(c.socket_dir(), port, sql);
    assert_eq!(
        q("select count(*), sum(id) from orders"),
        kept,
        "forked at {at}"
    );
    q("insert into orders values (500, 'only on the fork')");
    let seg = q("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    // The fork's repository alone restores the fork's own write.
    let fork = Pitr::local(fork_repo.clone());
    fork.wait_archived(&seg);
    let restored = c.path_of("from-fork-repo");
    let rport = free_port();
    fork.ok(&[
        "restore",
        "--latest",
        "--pgdata",
        restored.to_str().unwrap(),
        "--port",
        &rport.to_string(),
        "--socket-dir",
        c.socket_dir().to_str().unwrap(),
    ]);
    let rows = psql(
        c.socket_dir(),
        rport,
        "select count(*) filter (where id = 500), count(*) filter (where id = 102) from orders",
    );
    assert_eq!(
        rows.trim(),
        "1|0",
        "the fork's row, not the source's later one"
    );
    stop_server(&restored);
    stop_server(&fork_pgdata);
}
