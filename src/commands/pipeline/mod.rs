//! `pipeline`: the whole release flow by hand — prepare-mirrors → run-pi-gen →
//! collect-artifacts → manifest → smoke → sign → release — each step run as this same
//! binary, so it behaves exactly as in a workflow. Progress is kept in
//! `OUTPUT_DIR/IMG_NAME.pipeline.json`; a re-run resumes after the last completed step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

mod plan;

pub use self::plan::{Decision, Plan, STEPS, StepPlan, plan, signing_identity, step_args};
use crate::config::ImageArgs;
use crate::gha::{Gha, StepReport, md_cell};
use crate::model::to_canonical_json;

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

/// pipeline's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// Steps that ran, space-separated
    pub steps_run: String,
    /// Steps left out, space-separated
    pub steps_skipped: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            steps_run: self.ran.join(" "),
            steps_skipped: self.skipped.join(" "),
        }
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

/// What `pipeline` reads before deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub state: State,
    pub signing_identity: bool,
    /// Where smoke leaves its evidence (`OUTPUT_DIR/smoke`).
    pub smoke_dir: String,
}

/// Reads the saved progress (unless `--restart`) and looks for a signing identity.
pub fn gather(args: &Args, state_path: &Path) -> Facts {
    let state = if args.restart {
        State::default()
    } else {
        std::fs::read_to_string(state_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    Facts {
        state,
        signing_identity: signing_identity(&|n| std::env::var(n).ok()),
        smoke_dir: smoke_dir(args),
    }
}

fn smoke_dir(args: &Args) -> String {
    args.image.artifact_paths().map_or_else(
        |_| "smoke".to_owned(),
        |p| p.dir.join("smoke").display().to_string(),
    )
}

fn state_path(args: &Args) -> anyhow::Result<PathBuf> {
    let paths = args.image.artifact_paths()?;
    Ok(paths.dir.join(format!("{}.pipeline.json", paths.img_name)))
}

/// Runs the steps the plan runs, each as this binary, chaining outputs and saving
/// progress after each.
pub fn run(args: &Args, state_path: &Path, facts: Facts, plan: &Plan) -> anyhow::Result<Outcome> {
    let paths = args.image.artifact_paths()?;
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create `{}`", paths.dir.display()))?;
    let mut state = facts.state;
    let smoke_dir = facts.smoke_dir;
    let exe = std::env::current_exe().context("cannot find the pi-image executable")?;
    let mut outcome = Outcome::default();
    for StepPlan { step, decision, .. } in &plan.steps {
        let step = *step;
        match decision {
            Decision::Skip { why } => {
                tracing::info!("pipeline: {step}: skipped ({why})");
                outcome.skipped.push(step.to_owned());
                continue;
            }
            Decision::Done => {
                tracing::info!(
                    "pipeline: {step}: completed in an earlier run (pass --restart to run it again)"
                );
                outcome.resumed_past.push(step.to_owned());
                continue;
            }
            Decision::Run => {}
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
            atomic_state(state_path, &state)?;
            bail!(
                "pipeline stopped: step `{step}` failed ({status}); fix it and run `pi-image pipeline` again to resume from `{step}`"
            );
        }
        state.completed.push(step.to_owned());
        atomic_state(state_path, &state)?;
        outcome.ran.push(step.to_owned());
    }
    outcome.outputs = state.outputs;
    Ok(outcome)
}

fn atomic_state(path: &Path, state: &State) -> anyhow::Result<()> {
    crate::atomic::write(path, to_canonical_json(state)?.as_bytes())
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    let state_path = state_path(&args)?;
    let facts = gather(&args, &state_path);
    let plan = plan(&args, &facts)?;
    if gha.print_plan(&plan)? {
        return Ok(());
    }
    let outcome = run(&args, &state_path, facts, &plan)?;
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

    /// Before run-pi-gen has run, the plan shows where its outputs will go.
    #[test]
    fn a_planned_step_names_the_outputs_it_waits_for() {
        use clap::Parser as _;
        let cli =
            crate::cli::Cli::try_parse_from(["pi-image", "pipeline", "--output-dir", "o"]).unwrap();
        let crate::cli::Command::Pipeline(args) = cli.command else {
            panic!("not pipeline");
        };
        let facts = Facts {
            state: State::default(),
            signing_identity: false,
            smoke_dir: "o/smoke".into(),
        };
        let plan = plan(&args, &facts).unwrap();
        let argv = |step: &str| {
            plan.steps
                .iter()
                .find(|s| s.step == step)
                .unwrap()
                .argv
                .clone()
        };
        assert_eq!(
            argv("collect-artifacts"),
            [
                "collect-artifacts",
                "--deploy-dir",
                "<deploy-dir>",
                "--pi-gen-dir",
                "<pi-gen-dir>"
            ]
        );
        assert_eq!(
            argv("manifest")[..3],
            ["manifest", "--build-start", "<build-start>"]
        );
        assert!(argv("manifest").ends_with(&["--smoke-dir".to_owned(), "o/smoke".to_owned()]));
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
