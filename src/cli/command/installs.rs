//! `pitr installs`: `server::install::discover` (with `--pg-bin` and the
//! configured directories) and each install's fingerprint.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::exit::Failure;
use crate::cli::render;
use crate::pg::control::{Fingerprint, PgMajor};
use crate::server::install;

#[derive(Serialize)]
pub struct InstallReport {
    pub bin_dir: String,
    pub version: String,
    pub major: PgMajor,
    pub arch: &'static str,
    pub fingerprint: Option<Fingerprint>,
    pub error: Option<String>,
}

pub fn run(extra: &[PathBuf], json: bool) -> Result<(), Failure> {
    let os_user = install::scratch_user();
    let mut dirs = extra.to_vec();
    dirs.extend(super::configured_dirs());
    let list: Vec<InstallReport> = install::discover(&dirs)
        .iter()
        .map(|i| {
            let fp = install::fingerprint(i, os_user.as_ref(), &install::default_cache_dir());
            InstallReport {
                bin_dir: i.bin_dir.display().to_string(),
                version: i.version.clone(),
                major: i.major,
                arch: install::machine_arch(),
                error: fp.as_ref().err().map(|e| e.to_string()),
                fingerprint: fp.ok(),
            }
        })
        .collect();
    render::installs(&list, json)
}
