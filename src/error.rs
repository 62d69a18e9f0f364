//! Exit codes and error reporting: 0 success, 1 the step failed, 2 bad usage or
//! configuration (clap uses 2 for its own usage errors too).

use std::process::ExitCode;

use crate::gha::{Gha, Level};

/// Marks an error as the caller's fault (bad flag value, bad config): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Builds a usage error (exit code 2) from a message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The step was interrupted by a signal; partial outputs were removed.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}; partial outputs were removed and inputs are untouched")]
pub struct Interrupted(pub &'static str);

/// `err` with every mention of `scratch` (a private working copy) replaced by `user`
/// (the input the user named), so a message points at what the user can look at.
/// Whether it is a usage error (exit 2) is kept.
pub fn naming_input(err: anyhow::Error, scratch: &str, user: &str) -> anyhow::Error {
    if scratch.is_empty() || !err.chain().any(|c| c.to_string().contains(scratch)) {
        return err;
    }
    let text = err
        .chain()
        .map(|c| c.to_string().replace(scratch, user))
        .collect::<Vec<_>>()
        .join(": ");
    if err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some())
    {
        usage(text)
    } else {
        anyhow::anyhow!(text)
    }
}

/// Exit code for an error: 2 when any cause is a [`UsageError`], else 1.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    if err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some())
    {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Prints the error chain, and an `::error::` annotation in Actions.
pub fn report(gha: &Gha, err: &anyhow::Error) {
    let mut text = format!("error: {err}");
    for cause in err.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    if gha.in_actions() {
        gha.annotate(Level::Error, &text, None, None);
    } else {
        for line in text.lines() {
            gha.line(line);
        }
    }
}
