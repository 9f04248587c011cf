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

/// An encrypted repository on S3 (s3s-fs) that a settings file describes
/// whole: repository, S3 endpoint, key file and retention. With only the
/// credentials in the environment, `info`, `wal-fetch` (which needs the
/// key), `check` and `expire --dry-run` (its window from the file) work;
/// an environment variable beats the file's window.
#[test]
fn a_settings_file_gives_an_encrypted_s3_repository_its_key_and_retention() {
    let server = crate::s3::shared();
    let c = Cluster::encrypted(Some((server, "configured")), crate::encryption::KEY);
    c.create_table();
    c.backup();
    let seg = c.switch_and_archive();
    let key_file = c.pitr.env_value("PITR_KEY_FILE").unwrap();
    let dir = c.path_of("conf");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pitr.toml");
    std::fs::write(
        &file,
        format!(
            "repo = \"{}\"\nkey_file = \"{key_file}\"\n\
             [retention]\nkeep_window = \"7d\"\nkeep_full = 1\n\
             [s3]\nendpoint = \"{}\"\npath_style = true\nregion = \"us-east-1\"\n",
            c.pitr.spec, server.endpoint
        ),
    )
    .unwrap();
    let file_s = file.to_str().unwrap();
    let creds: Vec<(String, String)> = server
        .env()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("AWS_ACCESS")
                || k.starts_with("AWS_SECRET")
                || k == "AWS_EC2_METADATA_DISABLED"
        })
        .collect();
    // pitr with the credentials, the file, and `extra`.
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut env: Vec<(&str, &str)> = creds
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("PITR_CONFIG", file_s));
        env.extend_from_slice(extra);
        bare(args, &env)
    };
    let json = |o: std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };

    let info = json(run(&["info", "--json"], &[]));
    assert_eq!(info["cluster"]["encryption"]["cipher"], "aes-256-gcm");
    let fetched = dir.join(&seg);
    let o = run(&["wal-fetch", &seg, fetched.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 1 << 20);
    let check = run(&["check", "--json"], &[]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["repository"], c.pitr.spec.as_str(), "{report:#}");
    let backup_age = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "backup_age")
        .unwrap();
    assert_eq!(backup_age["status"], "ok", "{report:#}");

    // The window comes from the file: a dry run removes nothing.
    let dry = json(run(&["expire", "--dry-run", "--json"], &[]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["backups"].as_array().map(Vec::len), Some(0), "{dry:#}");
    // Without the file, there is no window.
    let o = bare(&["expire", "--dry-run", "--repo", &c.pitr.spec], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--keep-window"), "{}", stderr(&o));
    // The environment beats the file: a window shorter than the newest
    // backup's age is refused.
    let o = run(&["expire", "--dry-run"], &[("PITR_KEEP_WINDOW", "1ms")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("widen --keep-window"), "{}", stderr(&o));
}
