//! `pitr.toml`: found by `--config`, `PITR_CONFIG` (or /etc/pitr/pitr.toml,
//! which the tests leave alone); its settings give way to the environment,
//! which gives way to flags; typos and missing files are refused.

use crate::harness::*;

/// pitr with only the environment given here (no PITR_REPO from the
/// harness).
fn bare(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(pitr_exe());
    c.args(args)
        .env_remove("PITR_REPO")
        .env_remove("PITR_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn settings_come_from_flags_then_the_environment_then_the_file() {
    let c = Cluster::new();
    c.create_table();
    c.backup();
    let dir = c.path_of("conf");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pitr.toml");
    let repo = c.pitr.repo.display().to_string();
    std::fs::write(&file, format!("repo = \"{repo}\"\njobs = 2\n")).unwrap();
    let file_s = file.to_str().unwrap();

    // The file alone: info reads the repository it names, by --config
    // and by PITR_CONFIG.
    for o in [
        bare(&["info", "--json", "--config", file_s], &[]),
        bare(&["info", "--json"], &[("PITR_CONFIG", file_s)]),
    ] {
        assert!(o.status.success(), "{}", stderr(&o));
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(info["backups"].as_array().unwrap().len(), 1, "{info}");
    }
    // The environment beats the file.
    let env_repo = dir.join("env-repo");
    let o = bare(
        &["info", "--config", file_s],
        &[("PITR_REPO", env_repo.to_str().unwrap())],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("env-repo"), "{}", stderr(&o));
    // A flag beats both.
    let o = bare(
        &["info", "--json", "--config", file_s, "--repo", &repo],
        &[("PITR_REPO", env_repo.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let flag_repo = dir.join("flag-repo");
    let o = bare(
        &[
            "info",
            "--config",
            file_s,
            "--repo",
            flag_repo.to_str().unwrap(),
        ],
        &[],
    );
    assert!(stderr(&o).contains("flag-repo"), "{}", stderr(&o));

    // archive_command needs no --repo once the file names it.
    let seg = c
        .psql("select pg_walfile_name(pg_switch_wal())")
        .trim()
        .to_string();
    c.pitr.wait_archived(&seg);
    let fetched = dir.join(&seg);
    let o = bare(
        &[
            "wal-fetch",
            &seg,
            fetched.to_str().unwrap(),
            "--config",
            file_s,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bare(
        &[
            "wal-push",
            fetched.to_str().unwrap(),
            "--json",
            "--config",
            file_s,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["status"], "already_archived", "{out}");
}

#[test]
fn a_bad_or_missing_settings_file_is_refused() {
    let dir = shared_tempdir();
    let file = dir.path().join("pitr.toml");
    std::fs::write(&file, "rpeo = \"/somewhere\"\n").unwrap();
    let o = bare(&["info", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(file.to_str().unwrap()) && e.contains("rpeo"),
        "{e}"
    );
    std::fs::write(&file, "jobs = \"four\"\n").unwrap();
    let o = bare(&["info"], &[("PITR_CONFIG", file.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let missing = dir.path().join("absent.toml");
    let o = bare(&["info", "--config", missing.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("absent.toml (named by --config)"),
        "{}",
        stderr(&o)
    );
}
