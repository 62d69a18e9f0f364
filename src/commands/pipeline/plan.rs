//! `pipeline`'s decision: for each step, in order, whether it runs, is left out (and
//! why) or was completed by an earlier run; and the arguments that chain one step's
//! outputs into the next. Pure: it works on the arguments and on what
//! [`super::gather`] read (the saved state, whether a signing identity is at hand).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Args, Facts};
use crate::error::usage;

/// Every step, in the order it runs. Smoke comes before manifest: its evidence only
/// counts if the manifest written after it records it.
pub const STEPS: &[&str] = &[
    "prepare-mirrors",
    "run-pi-gen",
    "collect-artifacts",
    "smoke",
    "manifest",
    "sign",
    "release",
];

/// What happens to one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    Run,
    Skip {
        why: String,
    },
    /// Completed by an earlier run (`--restart` runs it again).
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepPlan {
    pub step: &'static str,
    #[serde(flatten)]
    pub decision: Decision,
    /// The step's command line (after `pi-image`) as far as it is known now: a value an
    /// earlier step has yet to report is shown as `<name of the output>`.
    pub argv: Vec<String>,
}

/// Every step with its decision, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<StepPlan>,
}

const NO_IDENTITY: &str = "no signing identity: run in GitHub Actions with `permissions: id-token: write`, set SIGSTORE_ID_TOKEN or COSIGN_KEY (a cosign key file), or pass --sign to sign in with a browser";

/// Decides each step.
pub fn plan(args: &Args, facts: &Facts) -> anyhow::Result<Plan> {
    for s in &args.skip {
        if !STEPS.contains(&s.as_str()) {
            return Err(usage(format!(
                "--skip `{s}` is not a step; the steps are {}",
                STEPS.join(", ")
            )));
        }
    }
    let mut known = facts.state.outputs.clone();
    let steps = STEPS
        .iter()
        .map(|&step| {
            let unsigned = step == "sign" && !args.sign && !facts.signing_identity;
            let decision = if args.skip.iter().any(|s| s == step) {
                Decision::Skip {
                    why: "--skip".to_owned(),
                }
            } else if unsigned {
                Decision::Skip {
                    why: NO_IDENTITY.to_owned(),
                }
            } else if !args.restart && facts.state.completed.iter().any(|c| c == step) {
                Decision::Done
            } else {
                Decision::Run
            };
            let argv = step_args(step, &known, args.publish, &facts.smoke_dir);
            if decision == Decision::Run {
                for key in PRODUCES
                    .iter()
                    .filter(|(s, _)| *s == step)
                    .flat_map(|(_, k)| *k)
                {
                    known
                        .entry((*key).to_owned())
                        .or_insert_with(|| format!("<{key}>"));
                }
            }
            StepPlan {
                step,
                decision,
                argv,
            }
        })
        .collect();
    Ok(Plan { steps })
}

/// The outputs of each step that later steps take as arguments ([`step_args`]).
const PRODUCES: &[(&str, &[&str])] = &[
    (
        "run-pi-gen",
        &[
            "pi-gen-dir",
            "deploy-dir",
            "build-start",
            "build-end",
            "pi-gen-commit",
            "pi-gen-ref",
        ],
    ),
    ("smoke", &["status"]),
];

/// Whether `sign` can get an identity without a person: GitHub Actions' OIDC endpoint
/// or a given token.
pub fn signing_identity(env: &dyn Fn(&str) -> Option<String>) -> bool {
    [
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "SIGSTORE_ID_TOKEN",
        "COSIGN_KEY",
    ]
    .iter()
    .any(|n| env(n).is_some_and(|v| !v.trim().is_empty()))
}

/// Arguments that chain one step's outputs into the next.
pub fn step_args(
    step: &str,
    out: &BTreeMap<String, String>,
    publish: bool,
    smoke_dir: &str,
) -> Vec<String> {
    let mut a = vec![step.to_owned()];
    let mut pass = |flag: &str, key: &str| {
        if let Some(v) = out.get(key).filter(|v| !v.is_empty()) {
            a.push(flag.to_owned());
            a.push(v.clone());
        }
    };
    match step {
        "run-pi-gen" => pass("--pi-gen-dir", "pi-gen-dir"),
        "collect-artifacts" => {
            pass("--deploy-dir", "deploy-dir");
            pass("--pi-gen-dir", "pi-gen-dir");
        }
        "manifest" => {
            pass("--build-start", "build-start");
            pass("--build-end", "build-end");
            pass("--pi-gen-commit", "pi-gen-commit");
            pass("--pi-gen-ref", "pi-gen-ref");
            if out.contains_key("status") {
                a.extend(["--smoke-dir".to_owned(), smoke_dir.to_owned()]);
            }
        }
        "smoke" => a.extend(["--artifacts-dir".to_owned(), smoke_dir.to_owned()]),
        "release" => a.push(if publish { "--publish" } else { "--dry-run" }.to_owned()),
        _ => {}
    }
    a
}
