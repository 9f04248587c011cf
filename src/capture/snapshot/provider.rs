//! The three providers behind one enum: `create(pgdata, id, tablespaces)
//! -> Created` (the handle and the tablespaces it carries),
//! `restore(handle, new pgdata, tablespace targets)`, `delete(handle,
//! tablespaces)`. What a provider needs to restore or delete is in the
//! catalog (`StartKind::Snapshot`: the provider, its handle, each
//! tablespace's own handle where it has one and, for `command`, the
//! commands), so a restore needs no flags. Every external program runs
//! with a deadline (`PROVIDER_TIMEOUT`) and is killed when it passes.
//!
//! Tablespaces, per provider: `copy` walks into them as a base backup
//! does, so the copy holds each under `pg_tblspc/<oid>/`, and a restore
//! copies that into the tablespace's new directory; `btrfs` snapshots
//! each tablespace's own subvolume beside the data directory's snapshot
//! and clones it back into the new directory; `command` tells the
//! operator's commands where they are (`PITR_TABLESPACES`) and takes a
//! cluster with tablespaces only when told its snapshot covers them
//! (`--covers-tablespaces`). The links and `tablespace_map` are the
//! restore's (`recover::from_snapshot`), as for a backup.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::catalog::{SnapshotCommands, SnapshotProvider, SnapshotTablespace};
use crate::pg::tablespace_map::TablespaceLink;

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
    #[error("tablespace {oid} at {path} is not a btrfs subvolume ({detail}): the btrfs provider snapshots each tablespace as a subvolume of its own; make it one (with the server stopped: btrfs subvolume create, move the directory's contents into it), or take --provider copy, or protect the cluster with pitr backup")]
    TablespaceNotSubvolume {
        oid: u32,
        path: String,
        detail: String,
    },
    #[error("tablespace {oid} at {path} is not on the btrfs filesystem of the snapshot directory {dir}: a btrfs snapshot stays on its subvolume's filesystem; choose a --snapshot-dir on that filesystem, or take --provider copy, or protect the cluster with pitr backup")]
    TablespaceOtherFilesystem { oid: u32, path: String, dir: String },
    #[error("the cluster has tablespaces ({list}), whose directories the command provider's snapshot holds only if your create command snapshots them too (PITR_TABLESPACES names them): say it does with --covers-tablespaces, or take --provider copy, or protect the cluster with pitr backup")]
    CommandTablespaces { list: String },
    #[error("--covers-tablespaces is for --provider command: the btrfs and copy providers carry tablespaces themselves")]
    CoversNotCommand,
    #[error("tablespace {oid}: its path {path:?} has a line break, which PITR_TABLESPACES cannot pass to the commands")]
    TablespacePath { oid: u32, path: String },
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
    #[error("snapshot {handle} holds no copy of tablespace {oid}")]
    NoTablespace { handle: String, oid: u32 },
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
    Btrfs { dir: PathBuf },
    /// Copies (`cp -a --reflink=auto`) in `dir`.
    Copy { dir: PathBuf },
    Command {
        commands: SnapshotCommands,
        /// `--covers-tablespaces`: the operator says the create command
        /// snapshots the tablespaces' directories too.
        covers_tablespaces: bool,
    },
}

/// What a provider made: the data directory's snapshot, and the
/// tablespaces it carries as the record keeps them.
#[derive(Clone, Debug)]
pub struct Created {
    pub handle: String,
    pub tablespaces: Vec<SnapshotTablespace>,
}

/// One tablespace a restore puts back: the provider's own snapshot of it
/// (btrfs) and where it goes (`recover::tablespaces::plan`: a directory
/// that is absent or empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceTarget {
    pub oid: u32,
    pub handle: Option<String>,
    pub to: PathBuf,
}

/// What `pitr snapshot` was told about the provider.
#[derive(Clone, Debug, Default)]
pub struct ProviderArgs {
    /// `--snapshot-dir` (btrfs, copy): default `<pgdata's parent>/.pitr-snapshots`.
    pub snapshot_dir: Option<PathBuf>,
    pub create_command: Option<String>,
    pub restore_command: Option<String>,
    pub delete_command: Option<String>,
    /// `--covers-tablespaces` (command only).
    pub covers_tablespaces: bool,
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
    /// all three of its commands, and `--covers-tablespaces` for another.
    pub fn new(
        kind: SnapshotProvider,
        pgdata: &Path,
        args: &ProviderArgs,
    ) -> Result<Provider, ProviderError> {
        let dir = || snapshot_dir(pgdata, args.snapshot_dir.as_deref());
        if args.covers_tablespaces && kind != SnapshotProvider::Command {
            return Err(ProviderError::CoversNotCommand);
        }
        Ok(match kind {
            SnapshotProvider::Btrfs => Provider::Btrfs { dir: dir() },
            SnapshotProvider::Copy => Provider::Copy { dir: dir() },
            SnapshotProvider::Command => {
                let need = |v: &Option<String>, name| {
                    v.clone()
                        .filter(|s| !s.trim().is_empty())
                        .ok_or(ProviderError::MissingCommand(name))
                };
                Provider::Command {
                    commands: SnapshotCommands {
                        create: need(&args.create_command, "create-command")?,
                        restore: need(&args.restore_command, "restore-command")?,
                        delete: need(&args.delete_command, "delete-command")?,
                    },
                    covers_tablespaces: args.covers_tablespaces,
                }
            }
        })
    }

    pub fn kind(&self) -> SnapshotProvider {
        match self {
            Provider::Btrfs { .. } => SnapshotProvider::Btrfs,
            Provider::Copy { .. } => SnapshotProvider::Copy,
            Provider::Command { .. } => SnapshotProvider::Command,
        }
    }

    /// The commands to record in the catalog (`command` only).
    pub fn commands(&self) -> Option<SnapshotCommands> {
        match self {
            Provider::Command { commands, .. } => Some(commands.clone()),
            Provider::Btrfs { .. } | Provider::Copy { .. } => None,
        }
    }

    /// What can be checked before the server is asked for anything: a
    /// btrfs data directory and each tablespace's directory must be
    /// subvolumes, the tablespaces on the snapshot directory's
    /// filesystem; the command provider takes tablespaces only when told
    /// its snapshot covers them.
    pub async fn check(
        &self,
        pgdata: &Path,
        tablespaces: &[TablespaceLink],
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Btrfs { dir } => {
                btrfs::check_subvolume(pgdata).await?;
                btrfs::check_tablespaces(dir, tablespaces)
            }
            Provider::Copy { .. } => Ok(()),
            Provider::Command {
                covers_tablespaces, ..
            } => {
                if !tablespaces.is_empty() && !covers_tablespaces {
                    return Err(ProviderError::CommandTablespaces {
                        list: tablespaces
                            .iter()
                            .map(|l| format!("{} at {}", l.oid, l.path.display()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                command::tablespaces_env(tablespaces.iter().map(|l| (l.oid, l.path.as_path())))
                    .map(|_| ())
            }
        }
    }

    /// Takes the snapshot of `pgdata` (with `tablespaces`, its
    /// `pg_tblspc` links) as `id`. A failure leaves nothing of it behind.
    pub async fn create(
        &self,
        pgdata: &Path,
        id: &str,
        tablespaces: &[TablespaceLink],
    ) -> Result<Created, ProviderError> {
        let carried = |handle: String| Created {
            handle,
            tablespaces: tablespaces
                .iter()
                .map(|l| SnapshotTablespace {
                    oid: l.oid,
                    path: l.path.clone(),
                    handle: None,
                })
                .collect(),
        };
        match self {
            Provider::Btrfs { dir } => btrfs::create(pgdata, dir, id, tablespaces).await,
            Provider::Copy { dir } => copy::create(pgdata, dir, id).await.map(carried),
            Provider::Command { commands, .. } => {
                command::create(commands, pgdata, id, tablespaces)
                    .await
                    .map(carried)
            }
        }
    }

    /// The data directory inside the snapshot, when it is one pitr can
    /// read (btrfs, copy): its pg_control is the snapshot's own.
    pub fn readable_dir(&self, handle: &str) -> Option<PathBuf> {
        match self {
            Provider::Btrfs { .. } | Provider::Copy { .. } => Some(PathBuf::from(handle)),
            Provider::Command { .. } => None,
        }
    }
}

/// What a restore can check before it writes anything: the snapshot (and
/// each tablespace's copy or own snapshot) is still there (btrfs, copy),
/// and each btrfs clone's target is on the filesystem of what is cloned.
/// A refusal here leaves the new data directory and the tablespaces'
/// targets untouched.
pub fn check_restore(
    kind: SnapshotProvider,
    handle: &str,
    target: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    match kind {
        SnapshotProvider::Btrfs => btrfs::check_restore(handle, target, tablespaces),
        SnapshotProvider::Copy => copy::check_restore(handle, tablespaces),
        SnapshotProvider::Command => Ok(()),
    }
}

/// Clones snapshot `handle` of `kind` into `target`, an empty directory
/// (the btrfs provider replaces it with a subvolume of the same name),
/// and each tablespace's contents into its `to` (absent or empty; btrfs
/// replaces it with a subvolume too). The `pg_tblspc` links are the
/// caller's (`recover::tablespaces::create`).
pub async fn restore(
    kind: SnapshotProvider,
    commands: Option<&SnapshotCommands>,
    id: &str,
    handle: &str,
    target: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<(), ProviderError> {
    match kind {
        SnapshotProvider::Btrfs => btrfs::restore(handle, target, tablespaces).await,
        SnapshotProvider::Copy => copy::restore(handle, target, tablespaces).await,
        SnapshotProvider::Command => {
            let c = commands.ok_or(ProviderError::MissingCommand("restore-command"))?;
            command::restore(c, id, handle, target, tablespaces).await
        }
    }
}

/// Removes snapshot `handle` of `kind`, and the tablespaces' own
/// snapshots (btrfs) of `tablespaces`.
pub async fn delete(
    kind: SnapshotProvider,
    commands: Option<&SnapshotCommands>,
    id: &str,
    handle: &str,
    tablespaces: &[SnapshotTablespace],
) -> Result<(), ProviderError> {
    match kind {
        SnapshotProvider::Btrfs => btrfs::delete(handle, tablespaces).await,
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
        let created = d.path().join("created");
        let c = SnapshotCommands {
            create: format!(
                "echo progress >&2; printf %s \"$PITR_TABLESPACES\" > {}; echo \"$PITR_SNAPSHOT_ID\"; echo \"h-$PITR_SNAPSHOT_ID $PITR_PGDATA\"; echo",
                created.display()
            ),
            restore: format!(
                "echo \"$PITR_SNAPSHOT_ID $PITR_SNAPSHOT_HANDLE $PITR_TARGET_PGDATA\" > {seen}; printf %s \"$PITR_TABLESPACES\" >> {seen}; ls -d \"{ts}\" >> {seen}",
                seen = seen.display(),
                ts = d.path().join("new ts").display()
            ),
            delete: "echo \"$PITR_SNAPSHOT_HANDLE\" >&2; exit 4".into(),
        };
        let links = [
            TablespaceLink {
                oid: 16384,
                path: PathBuf::from("/srv/ts one"),
            },
            TablespaceLink {
                oid: 16390,
                path: PathBuf::from("/srv/ts2"),
            },
        ];
        let handle = command::create(&c, Path::new("/data"), "S1", &links)
            .await
            .unwrap();
        assert_eq!(handle, "h-S1 /data");
        assert_eq!(
            std::fs::read_to_string(&created).unwrap(),
            "16384=/srv/ts one\n16390=/srv/ts2\n"
        );
        // Each tablespace's directory exists (0700) before the restore
        // command runs, and PITR_TABLESPACES names it.
        let to = d.path().join("new ts");
        let targets = [TablespaceTarget {
            oid: 16384,
            handle: None,
            to: to.clone(),
        }];
        command::restore(&c, "S1", &handle, Path::new("/new"), &targets)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            format!(
                "S1 h-S1 /data /new\n16384={}\n{}\n",
                to.display(),
                to.display()
            )
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let e = delete(SnapshotProvider::Command, Some(&c), "S1", "h-S1", &[])
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
            command::create(&silent, Path::new("/data"), "S2", &[]).await,
            Err(ProviderError::NoHandle)
        ));
    }

    /// The command provider takes a cluster with tablespaces only when
    /// told its snapshot covers them; the flag is its alone; a path
    /// PITR_TABLESPACES cannot carry is refused.
    #[tokio::test]
    async fn the_command_provider_takes_tablespaces_only_when_told_it_covers_them() {
        let pgdata = Path::new("/srv/pg/data");
        let mut args = ProviderArgs {
            create_command: Some("echo h".into()),
            restore_command: Some("true".into()),
            delete_command: Some("true".into()),
            ..Default::default()
        };
        let links = vec![TablespaceLink {
            oid: 16384,
            path: PathBuf::from("/srv/ts"),
        }];
        let p = Provider::new(SnapshotProvider::Command, pgdata, &args).unwrap();
        p.check(pgdata, &[]).await.unwrap();
        let e = p.check(pgdata, &links).await.unwrap_err();
        assert!(matches!(e, ProviderError::CommandTablespaces { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("16384 at /srv/ts"), "{text}");
        assert!(text.contains("--covers-tablespaces"), "{text}");
        assert!(text.contains("--provider copy"), "{text}");
        args.covers_tablespaces = true;
        let p = Provider::new(SnapshotProvider::Command, pgdata, &args).unwrap();
        p.check(pgdata, &links).await.unwrap();
        let odd = [TablespaceLink {
            oid: 1,
            path: PathBuf::from("/srv/a\nb"),
        }];
        assert!(matches!(
            p.check(pgdata, &odd).await,
            Err(ProviderError::TablespacePath { oid: 1, .. })
        ));
        for kind in [SnapshotProvider::Copy, SnapshotProvider::Btrfs] {
            assert!(matches!(
                Provider::new(kind, pgdata, &args),
                Err(ProviderError::CoversNotCommand)
            ));
        }
    }

    /// A copy holds a tablespace under `pg_tblspc/<oid>/`: a restore puts
    /// that into the tablespace's new directory and everything else (an
    /// in-place tablespace's directory too) into the data directory.
    #[tokio::test]
    async fn a_copy_restores_each_tablespace_into_its_new_directory() {
        let d = tempfile::tempdir().unwrap();
        let handle = d.path().join("snap");
        for dir in [
            "global",
            "base/1",
            "pg_tblspc/16384/PG_15_202209061/5",
            "pg_tblspc/16999/PG_15_202209061",
        ] {
            std::fs::create_dir_all(handle.join(dir)).unwrap();
        }
        for f in [
            "global/pg_control",
            "base/1/1259",
            "pg_tblspc/16384/PG_15_202209061/5/16400",
            "pg_tblspc/16999/PG_15_202209061/x",
        ] {
            std::fs::write(handle.join(f), f).unwrap();
        }
        let h = handle.to_str().unwrap();
        let to = d.path().join("new ts");
        let missing = [TablespaceTarget {
            oid: 16385,
            handle: None,
            to: to.clone(),
        }];
        assert!(matches!(
            check_restore(SnapshotProvider::Copy, h, Path::new("/x"), &missing),
            Err(ProviderError::NoTablespace { oid: 16385, .. })
        ));
        let targets = [TablespaceTarget {
            oid: 16384,
            handle: None,
            to: to.clone(),
        }];
        let pgdata = d.path().join("data");
        std::fs::create_dir(&pgdata).unwrap();
        restore(SnapshotProvider::Copy, None, "S", h, &pgdata, &targets)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("PG_15_202209061/5/16400")).unwrap(),
            "pg_tblspc/16384/PG_15_202209061/5/16400"
        );
        assert!(pgdata.join("global/pg_control").is_file());
        assert!(pgdata.join("base/1/1259").is_file());
        assert!(!pgdata.join("pg_tblspc/16384").exists());
        assert!(pgdata.join("pg_tblspc/16999/PG_15_202209061/x").is_file());
    }
}
