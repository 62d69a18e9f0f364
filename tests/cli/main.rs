//! Integration tests: each drives the real `pi-image` binary on images the tests build.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]
#![allow(
    clippy::items_after_statements,
    reason = "a test declares its helper types where it first needs them"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the harness starts the verifiers and tools itself, credentials included on purpose"
)]

mod action;
mod collect_artifacts;
mod doctor;
mod gha_io;
mod hostile;
mod layout;
mod manifest;
mod prepare_mirrors;
mod release;
mod run_pi_gen;
mod sign;
mod smoke;
mod snapshots;
mod support;
mod verify;
