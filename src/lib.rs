//! pitr: point-in-time recovery for PostgreSQL. See docs/architecture.md.
//! Dependencies point one way: cli → recover/capture → plan/repo →
//! catalog → pg; `server` holds what capture and recover share about
//! running servers.

pub mod capture;
pub mod catalog;
pub mod cli;
pub mod ops;
pub mod pg;
pub mod plan;
pub mod recover;
pub mod repo;
pub mod server;
