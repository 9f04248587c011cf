//! Operations over the whole repository, built from the layers below:
//! `maintain` (what to capture now, then capture it), `expire` (remove
//! what a retention window does not need) and `check` (is the protection
//! working). Each decides with a pure function in `plan/` and acts
//! through `capture/`, `recover/` and `repo/`; only `cli/` uses them.

pub mod check;
pub mod expire;
pub mod maintain;
