//! Talking to and running PostgreSQL: finding installs (`install`),
//! connecting to a running server, seeing a running server from outside
//! (ports, `postmaster.pid`, its processes; never its log), and running
//! server programs as the right OS user. Used by `capture/` (backup) and
//! `recover/` (restore).

pub mod conn;
pub mod install;
pub mod process;
pub mod user;
