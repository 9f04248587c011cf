//! Executing a Plan: materialize the data directory from the chosen backup,
//! write recovery settings for the server's version, start the install on a
//! free (or given) port, watch replay, stop at the target, promote / pause /
//! shut down, verify, and report how to connect. A failed restore stops the
//! server, removes `global/pg_control` (so the directory cannot be started
//! or mistaken for a finished restore) and leaves `PITR_RESTORE_FAILED`
//! with the reason beside the server log. A restore refused before any data
//! was written leaves nothing behind: no marker in a directory the user
//! made, and no directory pitr created for it. Success means the plan
//! happened: where replay ended is checked against the plan (`verify`).
//! Nothing here chooses a backup. Beside restores: a standby that follows
//! the repository (`Action::Standby`, `standby`), and what `status` and
//! `promote` do to a server already running on a data directory (`live`).

pub mod chain;
pub mod fork;
pub mod from_snapshot;
pub mod install;
pub mod instance;
pub mod live;
pub mod materialize;
pub mod pgdata;
pub mod progress;
pub mod promote;
pub mod restore;
pub mod run;
pub mod settings;
pub mod standby;
pub mod status;
pub mod tablespaces;
pub mod upgrade;
pub mod verify;
pub mod verify_repo;
pub mod verify_restore;

pub use restore::{
    create_pgdata, remove_created, restore, spool_dir, OnEvent, RecoverError, RecoverEvent,
    RestoreOptions, RestoreOutcome,
};
pub use settings::Action;
