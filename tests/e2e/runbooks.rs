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
                current = (info.trim() == "sh").then(String::new);
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
