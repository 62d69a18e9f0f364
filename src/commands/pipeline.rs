//! `pipeline`: the whole release flow by hand — prepare-mirrors → run-pi-gen →
//! collect-artifacts → manifest → smoke → sign → release — each step run as this same
//! binary, so it behaves exactly as in a workflow. Progress is kept in
//! `OUTPUT_DIR/IMG_NAME.pipeline.json`; a re-run resumes after the last completed step.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::config::ImageArgs;
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::model::to_canonical_json;

/// Every step, in order.
pub const STEPS: &[&str] = &[
    "prepare-mirrors",
    "run-pi-gen",
    "collect-artifacts",
    "manifest",
    "smoke",
    "sign",
    "release",
];

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Publish the release (otherwise `release` runs as a dry run)
    #[arg(long)]
    pub publish: bool,
    /// Start again from the first step instead of resuming
    #[arg(long)]
    pub restart: bool,
    /// Sign even without an identity in the environment (interactive browser sign-in)
    #[arg(long)]
    pub sign: bool,
    /// Steps to leave out (repeatable), e.g. `--skip smoke`
    #[arg(long = "skip", value_name = "STEP")]
    pub skip: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub completed: Vec<String>,
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ran: Vec<String>,
    pub resumed_past: Vec<String>,
    pub skipped: Vec<String>,
    pub outputs: BTreeMap<String, String>,
}

impl StepReport for Outcome {
    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("steps-run", self.ran.join(" ")),
            ("steps-skipped", self.skipped.join(" ")),
        ]
    }

    fn summary(&self) -> String {
        let mut s = String::from("### pipeline\n\n| Step | Result |\n| --- | --- |\n");
        for step in STEPS {
            let result = if self.ran.iter().any(|r| r == step) {
                "ran"
            } else if self.resumed_past.iter().any(|r| r == step) {
                "done in an earlier run"
            } else {
                "skipped"
            };
            s.push_str(&format!("| `{}` | {result} |\n", md_cell(step)));
        }
        s.push('\n');
        s
    }
}

/// Arguments that chain one step's outputs into the next.
fn step_args(
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

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let paths = args.image.artifact_paths()?;
    for s in &args.skip {
        if !STEPS.contains(&s.as_str()) {
            return Err(usage(format!(
                "--skip `{s}` is not a step; the steps are {}",
                STEPS.join(", ")
            )));
        }
    }
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create `{}`", paths.dir.display()))?;
    let state_path = paths.dir.join(format!("{}.pipeline.json", paths.img_name));
    let mut state: State = if args.restart {
        State::default()
    } else {
        std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    let exe = std::env::current_exe().context("cannot find the pi-image executable")?;
    let smoke_dir = paths.dir.join("smoke").display().to_string();
    let mut outcome = Outcome::default();
    // Smoke evidence only counts if this run's manifest step comes after a smoke run:
    // run smoke before manifest when both are to run.
    let order: Vec<&str> = {
        let mut o: Vec<&str> = STEPS.to_vec();
        let (m, s) = (
            o.iter().position(|x| *x == "manifest"),
            o.iter().position(|x| *x == "smoke"),
        );
        if let (Some(m), Some(s)) = (m, s) {
            o.remove(s);
            o.insert(m, "smoke");
        }
        o
    };
    for step in order {
        let unsigned =
            step == "sign" && !args.sign && !signing_identity(&|n| std::env::var(n).ok());
        if args.skip.iter().any(|s| s == step) || unsigned {
            let why = if unsigned {
                "no signing identity: run in GitHub Actions with `permissions: id-token: write`, set SIGSTORE_ID_TOKEN or COSIGN_KEY (a cosign key file), or pass --sign to sign in with a browser"
            } else {
                "--skip"
            };
            tracing::info!("pipeline: {step}: skipped ({why})");
            outcome.skipped.push(step.to_owned());
            continue;
        }
        if state.completed.iter().any(|c| c == step) {
            tracing::info!(
                "pipeline: {step}: completed in an earlier run (pass --restart to run it again)"
            );
            outcome.resumed_past.push(step.to_owned());
            continue;
        }
        let step_output = tempfile::NamedTempFile::new().context("cannot create a scratch file")?;
        let argv = step_args(step, &state.outputs, args.publish, &smoke_dir);
        tracing::info!("pipeline: running {}", argv.join(" "));
        let mut cmd = crate::process::command(&exe);
        cmd.args(&argv)
            .env("GITHUB_OUTPUT", step_output.path())
            .env("IMG_NAME", &paths.img_name)
            .env("OUTPUT_DIR", &paths.dir);
        // Each step gets only the credentials it uses: the token reaches `release`
        // alone, the signing identity `sign` alone.
        match step {
            "release" => crate::process::pass_secrets(&mut cmd, &["GITHUB_TOKEN"]),
            "sign" => crate::process::pass_secrets(
                &mut cmd,
                &[
                    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                    "ACTIONS_ID_TOKEN_REQUEST_URL",
                    "SIGSTORE_ID_TOKEN",
                    "COSIGN_PASSWORD",
                ],
            ),
            _ => {}
        }
        let status = cmd
            .status()
            .with_context(|| format!("failed to start the {step} step"))?;
        let text = std::fs::read_to_string(step_output.path()).unwrap_or_default();
        for (k, v) in crate::gha::parse_outputs(&text) {
            state.outputs.insert(k, v);
        }
        if !status.success() {
            atomic_state(&state_path, &state)?;
            bail!(
                "pipeline stopped: step `{step}` failed ({status}); fix it and run `pi-image pipeline` again to resume from `{step}`"
            );
        }
        state.completed.push(step.to_owned());
        atomic_state(&state_path, &state)?;
        outcome.ran.push(step.to_owned());
    }
    outcome.outputs = state.outputs;
    Ok(outcome)
}

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

fn atomic_state(path: &Path, state: &State) -> anyhow::Result<()> {
    crate::atomic::write(path, to_canonical_json(state)?.as_bytes())
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    let outcome = run(&args)?;
    gha.publish(&outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_runs_when_an_identity_is_at_hand() {
        assert!(!signing_identity(&|_| None));
        assert!(signing_identity(
            &|n| (n == "SIGSTORE_ID_TOKEN").then(|| "a.b.c".to_owned())
        ));
        assert!(!signing_identity(&|_| Some(" ".to_owned())));
        assert!(signing_identity(
            &|n| (n == "COSIGN_KEY").then(|| "cosign.key".to_owned())
        ));
        assert!(STEPS.contains(&"sign"));
    }

    #[test]
    fn outputs_chain_between_steps() {
        let mut out = BTreeMap::new();
        out.insert("deploy-dir".to_owned(), "/o/deploy".to_owned());
        out.insert("pi-gen-dir".to_owned(), "/p".to_owned());
        out.insert("build-start".to_owned(), "2026-01-01T00:00:00Z".to_owned());
        out.insert("status".to_owned(), "pass".to_owned());
        assert_eq!(
            step_args("collect-artifacts", &out, false, "s"),
            [
                "collect-artifacts",
                "--deploy-dir",
                "/o/deploy",
                "--pi-gen-dir",
                "/p"
            ]
        );
        assert_eq!(
            step_args("manifest", &out, false, "s"),
            [
                "manifest",
                "--build-start",
                "2026-01-01T00:00:00Z",
                "--smoke-dir",
                "s"
            ]
        );
        assert_eq!(
            step_args("release", &out, false, "s"),
            ["release", "--dry-run"]
        );
        assert_eq!(
            step_args("release", &out, true, "s"),
            ["release", "--publish"]
        );
    }
}
