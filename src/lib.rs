//! `pi-image`: build, verify, sign and publish Raspberry Pi OS images.
//!
//! Every subcommand lives in `commands/<name>/` and has the same shape:
//! `Args` (clap) → validated `Input` → `gather` (all reading) → pure `plan()` in
//! `plan.rs` → `run()` with effects → `Outcome`, published as step outputs and a
//! step-summary block by [`gha`]. `--print-plan` prints the plan as JSON and stops.
//! `tests/cli/layout.rs` holds the tree to this (`plan.rs` names no effect), except for
//! the subcommands it lists as not yet converted.

pub mod action;
pub mod atomic;
pub mod buildlog;
pub mod checkout;
pub mod checksum;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod gha;
pub mod github;
pub mod host;
pub mod image;
pub mod input;
pub mod logging;
pub mod mirror_url;
pub mod model;
pub mod process;
pub mod progress;
pub mod retry;
pub mod sbom;
pub mod shell;
pub mod sigstore;
pub mod units;
pub mod validate;
pub mod xz;
