//! `pitr installs`: `server::install::discover` (with `--pg-bin` and the
//! configured directories) and each install's fingerprint.

use std::path::PathBuf;

use crate::cli::exit::Failure;
use crate::cli::render::{self, InstallReport};
use crate::server::install;

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
