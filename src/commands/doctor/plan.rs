//! `doctor`'s decision: what is missing, the packages that provide it, the advice for
//! this platform and, with `--apply`, the one apt-get command that installs them.
//! Pure: it works on the checks [`super::gather`] made.

use serde::Serialize;

use super::{Facts, Platform};
use crate::error::usage;

/// What `doctor` reports and, with `--apply`, runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// How many requirements are missing.
    pub missing: usize,
    /// Debian packages that provide what is missing, sorted, once each.
    pub apt: Vec<String>,
    /// The line telling the user how to install them on this platform.
    pub advice: Option<String>,
    /// The command `--apply` runs (program first), when something is to install.
    pub install: Option<Vec<String>>,
}

pub fn plan(apply: bool, facts: &Facts) -> anyhow::Result<Plan> {
    let missing: Vec<_> = facts.checks.iter().filter(|c| !c.ok).collect();
    let mut apt: Vec<String> = missing.iter().filter_map(|c| c.apt.clone()).collect();
    apt.sort_unstable();
    apt.dedup();
    if apply && facts.platform != Platform::Linux {
        return Err(usage(
            "--apply installs Debian packages and works on Linux only",
        ));
    }
    let advice = (!apt.is_empty()).then(|| match facts.platform {
        Platform::Macos => {
            let mut brew: Vec<&str> = missing.iter().filter_map(|c| c.brew).collect();
            brew.dedup();
            format!(
                "to install: brew install {} (pi-gen itself runs only in the container strategies on macOS)",
                brew.join(" ")
            )
        }
        Platform::Windows => "on Windows, use WSL 2: run the Linux binary inside it, with Docker Desktop's WSL integration for the container strategies".to_owned(),
        Platform::Linux | Platform::Other => format!(
            "to install: apt-get install {} (or: pi-image doctor --apply)",
            apt.join(" ")
        ),
    });
    let install = (apply && !apt.is_empty()).then(|| {
        let mut cmd: Vec<String> = if facts.root {
            Vec::new()
        } else {
            vec!["sudo".to_owned()]
        };
        cmd.extend(["apt-get", "install", "-y", "--no-install-recommends"].map(str::to_owned));
        cmd.extend(apt.iter().cloned());
        cmd
    });
    Ok(Plan {
        missing: missing.len(),
        apt,
        advice,
        install,
    })
}
