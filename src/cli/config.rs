//! `pitr.toml`: settings an operator writes once instead of on every
//! command line. The file is found by `--config FILE`, else the
//! `PITR_CONFIG` environment variable, else `/etc/pitr/pitr.toml` when it
//! exists. Precedence is flags > environment > file: before the command
//! line is parsed, each setting of the file becomes the value of its
//! environment variable (`ENV_OF`) unless the environment already has
//! one, and every flag reads its environment variable when absent. So a
//! file is exactly a set of environment defaults, which is also how
//! `archive_command` and `restore_command` (run by Postgres, with its
//! environment) see it.
//!
//! ```toml
//! repo = "s3://backups/main"     # PITR_REPO, --repo
//! jobs = 4                       # PITR_JOBS, --jobs
//! max_rate = "100M"              # PITR_MAX_RATE, --max-rate (backup, snapshot, maintain)
//! key_file = "/etc/pitr/repo.key"  # PITR_KEY_FILE, --key-file
//! [retention]
//! keep_window = "14d"            # PITR_KEEP_WINDOW, expire --keep-window
//! keep_full = 2                  # PITR_KEEP_FULL, expire --keep-full
//! [s3]
//! region = "eu-west-1"           # AWS_REGION, --s3-region
//! endpoint = "http://127.0.0.1:9000"  # AWS_ENDPOINT_URL, --s3-endpoint
//! path_style = true              # PITR_S3_PATH_STYLE, --s3-path-style
//! ```
//!
//! An unknown key is refused (a typo must not pass for a setting), as is
//! a file named by `--config` or `PITR_CONFIG` that does not exist.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the file is looked for when neither `--config` nor
/// `PITR_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/pitr/pitr.toml";

/// The file's settings (each optional).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub repo: Option<String>,
    pub jobs: Option<u32>,
    pub max_rate: Option<String>,
    pub key_file: Option<PathBuf>,
    pub retention: Option<RetentionSection>,
    pub s3: Option<S3Section>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub keep_window: Option<String>,
    pub keep_full: Option<u32>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path} (named by {by}): {source}")]
    Read {
        path: PathBuf,
        by: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{by} needs a file name")]
    NoPath { by: &'static str },
}

/// Which file, and what named it.
#[derive(Debug, PartialEq)]
pub struct Located {
    pub path: PathBuf,
    /// `--config`, `PITR_CONFIG` or the default path.
    pub by: &'static str,
}

/// The file the command line (`--config FILE` or `--config=FILE`) or
/// `env_config` (`PITR_CONFIG`) names, else the default path if it
/// exists. The command line is scanned before clap parses it, up to a
/// `--` (after which nothing is an option).
pub fn locate(
    args: &[OsString],
    env_config: Option<OsString>,
    default: &Path,
) -> Result<Option<Located>, ConfigError> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            let path = it.next().filter(|p| !p.is_empty());
            let path = path.ok_or(ConfigError::NoPath { by: "--config" })?;
            return Ok(Some(Located {
                path: PathBuf::from(path),
                by: "--config",
            }));
        }
        if let Some(p) = s.strip_prefix("--config=") {
            if p.is_empty() {
                return Err(ConfigError::NoPath { by: "--config" });
            }
            return Ok(Some(Located {
                path: PathBuf::from(p),
                by: "--config",
            }));
        }
    }
    if let Some(p) = env_config {
        if p.is_empty() {
            return Err(ConfigError::NoPath { by: "PITR_CONFIG" });
        }
        return Ok(Some(Located {
            path: PathBuf::from(p),
            by: "PITR_CONFIG",
        }));
    }
    Ok(default.is_file().then(|| Located {
        path: default.to_path_buf(),
        by: "the default path",
    }))
}

/// Reads and checks the file.
pub fn load(at: &Located) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(&at.path).map_err(|source| ConfigError::Read {
        path: at.path.clone(),
        by: at.by,
        source,
    })?;
    parse(&at.path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

impl ConfigFile {
    /// Each setting as the environment variable its flag reads, and the
    /// value.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(r) = &self.repo {
            out.push(("PITR_REPO", r.clone()));
        }
        if let Some(j) = self.jobs {
            out.push(("PITR_JOBS", j.to_string()));
        }
        if let Some(r) = &self.max_rate {
            out.push(("PITR_MAX_RATE", r.clone()));
        }
        if let Some(k) = &self.key_file {
            out.push(("PITR_KEY_FILE", k.display().to_string()));
        }
        if let Some(r) = &self.retention {
            if let Some(w) = &r.keep_window {
                out.push(("PITR_KEEP_WINDOW", w.clone()));
            }
            if let Some(n) = r.keep_full {
                out.push(("PITR_KEEP_FULL", n.to_string()));
            }
        }
        if let Some(s3) = &self.s3 {
            if let Some(r) = &s3.region {
                out.push(("AWS_REGION", r.clone()));
            }
            if let Some(e) = &s3.endpoint {
                out.push(("AWS_ENDPOINT_URL", e.clone()));
            }
            if let Some(p) = s3.path_style {
                out.push(("PITR_S3_PATH_STYLE", p.to_string()));
            }
        }
        out
    }
}

/// Finds and reads the file, and sets each of its settings whose
/// environment variable is unset. Call before the command line is parsed
/// and before any thread starts (it changes the process environment).
pub fn apply(args: &[OsString]) -> Result<Option<PathBuf>, ConfigError> {
    let Some(at) = locate(
        args,
        std::env::var_os("PITR_CONFIG"),
        Path::new(DEFAULT_PATH),
    )?
    else {
        return Ok(None);
    };
    let file = load(&at)?;
    for (name, value) in file.env() {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(Some(at.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_flag_then_the_environment_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("pitr.toml");
        let none = dir.path().join("absent.toml");
        let at = |a: &[&str], env: Option<&str>, d: &Path| {
            locate(&args(a), env.map(OsString::from), d).unwrap()
        };
        assert_eq!(
            at(
                &["pitr", "info", "--config", "/x.toml"],
                Some("/y.toml"),
                &none
            ),
            Some(Located {
                path: "/x.toml".into(),
                by: "--config"
            })
        );
        assert_eq!(
            at(&["pitr", "--config=/x.toml", "info"], None, &none).map(|l| l.path),
            Some(PathBuf::from("/x.toml"))
        );
        assert_eq!(
            at(&["pitr", "info"], Some("/y.toml"), &none).map(|l| l.by),
            Some("PITR_CONFIG")
        );
        // The default only when it exists.
        assert_eq!(at(&["pitr", "info"], None, &none), None);
        std::fs::write(&default, "").unwrap();
        assert_eq!(
            at(&["pitr", "info"], None, &default).map(|l| l.path),
            Some(default.clone())
        );
        // After `--`, `--config` is an argument, not the option.
        assert_eq!(
            at(&["pitr", "x", "--", "--config", "/x"], None, &none),
            None
        );
        assert!(matches!(
            locate(&args(&["pitr", "info", "--config"]), None, &none),
            Err(ConfigError::NoPath { by: "--config" })
        ));
        assert!(matches!(
            locate(&args(&["pitr"]), Some(OsString::new()), &none),
            Err(ConfigError::NoPath { by: "PITR_CONFIG" })
        ));
    }

    #[test]
    fn settings_become_environment_defaults() {
        let f = parse(
            Path::new("p.toml"),
            "repo = \"s3://b/p\"\njobs = 3\nmax_rate = \"50M\"\nkey_file = \"/etc/pitr/k\"\n\
             [retention]\nkeep_window = \"14d\"\nkeep_full = 2\n\
             [s3]\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:9\"\npath_style = true\n",
        )
        .unwrap();
        assert_eq!(
            f.env(),
            [
                ("PITR_REPO", "s3://b/p".to_string()),
                ("PITR_JOBS", "3".into()),
                ("PITR_MAX_RATE", "50M".into()),
                ("PITR_KEY_FILE", "/etc/pitr/k".into()),
                ("PITR_KEEP_WINDOW", "14d".into()),
                ("PITR_KEEP_FULL", "2".into()),
                ("AWS_REGION", "eu-west-1".into()),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
                ("PITR_S3_PATH_STYLE", "true".into()),
            ]
        );
        assert!(parse(Path::new("p.toml"), "").unwrap().env().is_empty());
    }

    #[test]
    fn typos_and_bad_values_are_refused_with_the_file_named() {
        for bad in [
            "rpeo = \"x\"",
            "jobs = \"four\"",
            "[s3]\nregoin = \"x\"",
            "[retention]\nkeep_windwo = \"1d\"",
            "[retention]\nkeep_full = -1",
            "repo = ",
        ] {
            let e = parse(Path::new("/etc/pitr/pitr.toml"), bad).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with("configuration file /etc/pitr/pitr.toml: "),
                "{text}"
            );
        }
        let e = parse(Path::new("p.toml"), "rpeo = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rpeo"), "{e}");
        let e = load(&Located {
            path: "/nonexistent/pitr.toml".into(),
            by: "PITR_CONFIG",
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent/pitr.toml (named by PITR_CONFIG)"),
            "{e}"
        );
    }
}
