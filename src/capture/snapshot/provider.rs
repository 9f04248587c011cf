//! The three providers behind one enum: `create(pgdata, id) -> handle`,
//! `restore(handle, new pgdata)`, `delete(handle)`. What a provider needs
//! to restore or delete is in the catalog (`StartKind::Snapshot`: the
//! provider, its handle and, for `command`, the commands), so a restore
//! needs no flags. Every external program runs with a deadline
//! (`PROVIDER_TIMEOUT`) and is killed when it passes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::catalog::{SnapshotCommands, SnapshotProvider};

use super::{btrfs, command, copy};

/// How long one provider program (a `btrfs`, a `cp`, an operator's
/// command) may run before it is killed and the step fails.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a provider could not create, restore or delete a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("running {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{what} did not finish within {secs} s and was killed")]
    TimedOut { what: String, secs: u64 },
    #[error("{path} is not a btrfs subvolume ({detail}): the btrfs provider snapshots a data directory that is one (btrfs subvolume create, then initdb or move the data into it)")]
    NotSubvolume { path: String, detail: String },
    #[error("{path} is not on a btrfs filesystem: a btrfs snapshot is cloned back only onto the filesystem that holds it")]
    NotBtrfs { path: String },
    #[error("{target} is not on the btrfs filesystem that holds snapshot {handle}: restore into a directory on that filesystem, or take a copy snapshot")]
    OtherFilesystem { handle: String, target: String },
    #[error("--provider command needs --{0}")]
    MissingCommand(&'static str),
    #[error("the create command printed no handle (its last line of output names the snapshot)")]
    NoHandle,
    #[error("snapshot {handle} is gone: its provider no longer has it")]
    Gone { handle: String },
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A provider with what it needs to create snapshots.
#[derive(Clone, Debug)]
pub enum Provider {
    /// Read-only subvolume snapshots in `dir`.
    Btrfs {
        dir: PathBuf,
    },
    /// Copies (`cp -a --reflink=auto`) in `dir`.
    Copy {
        dir: PathBuf,
    },
    Command(SnapshotCommands),
}

/// What `pitr snapshot` was told about the provider.
#[derive(Clone, Debug, Default)]
pub struct ProviderArgs {
    /// `--snapshot-dir` (btrfs, copy): default `<pgdata's parent>/.pitr-snapshots`.
    pub snapshot_dir: Option<PathBuf>,
    pub create_command: Option<String>,
    pub restore_command: Option<String>,
    pub delete_command: Option<String>,
}

/// `--snapshot-dir`, or `.pitr-snapshots` beside the data directory.
pub fn snapshot_dir(pgdata: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(d) => d.to_path_buf(),
        None => {
            let abs = std::path::absolute(pgdata).unwrap_or_else(|_| pgdata.to_path_buf());
            abs.parent()
                .unwrap_or_else(|| Path::new("/"))
                .join(".pitr-snapshots")
        }
    }
}

impl Provider {
    /// The provider `kind` with its arguments; refuses `command` without
    /// all three of its commands.
    pub fn new(
        kind: SnapshotProvider,
        pgdata: &Path,
        args: &ProviderArgs,
    ) -> Result<Provider, ProviderError> {
        let dir = || snapshot_dir(pgdata, args.snapshot_dir.as_deref());
        Ok(match kind {
            SnapshotProvider::Btrfs => Provider::Btrfs { dir: dir() },
            SnapshotProvider::Copy => Provider::Copy { dir: dir() },
            SnapshotProvider::Command => {
                let need = |v: &Option<String>, name| {
                    v.clone()
                        .filter(|s| !s.trim().is_empty())
                        .ok_or(ProviderError::MissingCommand(name))
                };
                Provider::Command(SnapshotCommands {
                    create: need(&args.create_command, "create-command")?,
                    restore: need(&args.restore_command, "restore-command")?,
                    delete: need(&args.delete_command, "delete-command")?,
                })
            }
        })
    }

    pub fn kind(&self) -> SnapshotProvider {
        match self {
            Provider::Btrfs { .. } => SnapshotProvider::Btrfs,
            Provider::Copy { .. } => SnapshotProvider::Copy,
            Provider::Command(_) => SnapshotProvider::Command,
        }
    }

    /// The commands to record in the catalog (`command` only).
    pub fn commands(&self) -> Option<SnapshotCommands> {
        match self {
            Provider::Command(c) => Some(c.clone()),
            Provider::Btrfs { .. } | Provider::Copy { .. } => None,
        }
    }

    /// What can be checked before the server is asked for anything:
    /// a btrfs data directory must be a subvolume.
    pub async fn check(&self, pgdata: &Path) -> Result<(), ProviderError> {
        match self {
            Provider::Btrfs { .. } => btrfs::check_subvolume(pgdata).await,
            Provider::Copy { .. } | Provider::Command(_) => Ok(()),
        }
    }

    /// Takes the snapshot of `pgdata` as `id`; returns its handle.
    pub async fn create(&self, pgdata: &Path, id: &str) -> Result<String, ProviderError> {
        match self {
            Provider::Btrfs { dir } => btrfs::create(pgdata, dir, id).await,
            Provider::Copy { dir } => copy::create(pgdata, dir, id).await,
            Provider::Command(c) => command::create(c, pgdata, id).await,
        }
    }

    /// The data directory inside the snapshot, when it is one pitr can
    /// read (btrfs, copy): its pg_control is the snapshot's own.
    pub fn readable_dir(&self, handle: &str) -> Option<PathBuf> {
        match self {
            Provider::Btrfs { .. } | Provider::Copy { .. } => Some(PathBuf::from(handle)),
            Provider::Command(_) => None,
        }
    }
}

/// What a restore can check before it writes anything: the snapshot is
/// still there (btrfs, copy) and a btrfs clone's target is on btrfs. A
/// refusal here leaves the new data directory untouched.
pub fn check_restore(
    kind: SnapshotProvider,
    handle: &str,
    target: &Path,
) -> Result<(), ProviderError> {
    match kind {
        SnapshotProvider::Btrfs => btrfs::check_restore(handle, target),
        SnapshotProvider::Copy => copy::check_restore(handle),
        SnapshotProvider::Command => Ok(()),
    }
}

/// Clones snapshot `handle` of `kind` into `target`, an empty directory
/// (the btrfs provider replaces it with a subvolume of the same name).
pub async fn restore(
    kind: SnapshotProvider,
    commands: Option<&SnapshotCommands>,
    id: &str,
    handle: &str,
    target: &Path,
) -> Result<(), ProviderError> {
    match kind {
        SnapshotProvider::Btrfs => btrfs::restore(handle, target).await,
        SnapshotProvider::Copy => copy::restore(handle, target).await,
        SnapshotProvider::Command => {
            let c = commands.ok_or(ProviderError::MissingCommand("restore-command"))?;
            command::restore(c, id, handle, target).await
        }
    }
}

/// Removes snapshot `handle` of `kind`.
pub async fn delete(
    kind: SnapshotProvider,
    commands: Option<&SnapshotCommands>,
    id: &str,
    handle: &str,
) -> Result<(), ProviderError> {
    match kind {
        SnapshotProvider::Btrfs => btrfs::delete(handle).await,
        SnapshotProvider::Copy => copy::delete(handle).await,
        SnapshotProvider::Command => {
            let c = commands.ok_or(ProviderError::MissingCommand("delete-command"))?;
            command::delete(c, id, handle).await
        }
    }
}

/// Runs `cmd` to the end within `PROVIDER_TIMEOUT`; its stdout if it
/// exits 0, else its status and stderr.
pub(super) async fn run(
    mut cmd: tokio::process::Command,
    what: String,
) -> Result<String, ProviderError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|source| ProviderError::Spawn { program, source })?;
    let out = match tokio::time::timeout(PROVIDER_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.map_err(|source| ProviderError::Io {
            path: what.clone(),
            source,
        })?,
        Err(_) => {
            return Err(ProviderError::TimedOut {
                what,
                secs: PROVIDER_TIMEOUT.as_secs(),
            })
        }
    };
    if !out.status.success() {
        return Err(ProviderError::Failed {
            what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProviderError + '_ {
    move |source| ProviderError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates the snapshot directory (0700) if it is missing.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), ProviderError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_provider_needs_all_three_commands() {
        let pgdata = Path::new("/srv/pg/data");
        let mut args = ProviderArgs {
            create_command: Some("echo h".into()),
            restore_command: Some("true".into()),
            delete_command: Some("  ".into()),
            ..Default::default()
        };
        assert!(matches!(
            Provider::new(SnapshotProvider::Command, pgdata, &args),
            Err(ProviderError::MissingCommand("delete-command"))
        ));
        args.delete_command = Some("true".into());
        let p = Provider::new(SnapshotProvider::Command, pgdata, &args).unwrap();
        assert_eq!(p.kind(), SnapshotProvider::Command);
        assert_eq!(p.commands().unwrap().delete, "true");
        assert!(p.readable_dir("vol-1").is_none());
    }

    #[test]
    fn snapshots_default_to_a_directory_beside_the_data_directory() {
        let pgdata = Path::new("/srv/pg/data");
        assert_eq!(
            snapshot_dir(pgdata, None),
            PathBuf::from("/srv/pg/.pitr-snapshots")
        );
        let p = Provider::new(SnapshotProvider::Copy, pgdata, &ProviderArgs::default()).unwrap();
        assert!(p.commands().is_none());
        assert_eq!(
            p.readable_dir("/srv/pg/.pitr-snapshots/x"),
            Some(PathBuf::from("/srv/pg/.pitr-snapshots/x"))
        );
    }

    #[tokio::test]
    async fn the_handle_is_the_create_commands_last_line_and_the_commands_see_their_environment() {
        let d = tempfile::tempdir().unwrap();
        let seen = d.path().join("seen");
        let c = SnapshotCommands {
            create: "echo progress >&2; echo \"$PITR_SNAPSHOT_ID\"; echo \"h-$PITR_SNAPSHOT_ID $PITR_PGDATA\"; echo"
                .to_string(),
            restore: format!(
                "echo \"$PITR_SNAPSHOT_ID $PITR_SNAPSHOT_HANDLE $PITR_TARGET_PGDATA\" > {}",
                seen.display()
            ),
            delete: "echo \"$PITR_SNAPSHOT_HANDLE\" >&2; exit 4".into(),
        };
        let handle = command::create(&c, Path::new("/data"), "S1").await.unwrap();
        assert_eq!(handle, "h-S1 /data");
        command::restore(&c, "S1", &handle, Path::new("/new"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "S1 h-S1 /data /new\n"
        );
        let e = delete(SnapshotProvider::Command, Some(&c), "S1", "h-S1")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Failed { stderr, .. } if stderr == "h-S1"),
            "{e:?}"
        );
        let silent = SnapshotCommands {
            create: "true".into(),
            ..c
        };
        assert!(matches!(
            command::create(&silent, Path::new("/data"), "S2").await,
            Err(ProviderError::NoHandle)
        ));
    }
}
