//! The GitHub Action, derived from the command line.
//!
//! Every `action.yml` (the root one, which takes `command`, and one per subcommand under
//! `<subcommand>/`) and the README's input and output tables are generated from the clap
//! definitions and the typed step outputs ([`catalogue`]), by the hidden
//! `pi-image action generate`; a test fails when a generated file is stale. At run time
//! the generated step calls `pi-image action run <subcommand>`, which reads the `INPUT_*`
//! variables the action passes and becomes that subcommand ([`inputs`]).
//!
//! The rule that keeps the two sides in step: an input is named as its flag is. A flag
//! whose name two subcommands share means the same in both (same kind, same variable),
//! which [`catalogue`] checks, so the root action can offer one input for it.

pub mod generate;
pub mod inputs;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use clap::{ArgAction, CommandFactory as _};

use crate::cli::Cli;
use crate::commands::{
    collect_artifacts, doctor, manifest, pipeline, prepare_mirrors, release, run_pi_gen, sign,
    smoke, verify,
};
use crate::gha::{Gha, StepReport};

/// `pi-image action`: what the generated actions run, and how they are generated.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Run SUBCOMMAND with the arguments its action's INPUT_* variables give
    Run(inputs::RunArgs),
    /// Write (or, with --check, compare) every action.yml and the README's tables
    Generate(generate::GenerateArgs),
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Run(a) => inputs::main(gha, a),
        What::Generate(a) => generate::main(gha, a),
    }
}

/// The subcommands, in the order of a workflow (and of the root action's listing).
pub const STEPS: &[&str] = &[
    "prepare-mirrors",
    "run-pi-gen",
    "collect-artifacts",
    "smoke",
    "manifest",
    "sign",
    "verify",
    "release",
    "pipeline",
    "doctor",
];

/// How an input's text becomes arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `--flag VALUE`
    Value,
    /// `--flag` when `true`, nothing when `false`
    Bool,
    /// `--flag LINE` for each non-empty line
    Lines,
    /// each non-empty line a positional argument
    Positional,
}

/// One input of an action.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Input {
    /// The input's name: the flag's long name (a positional's value name, lower-case).
    pub name: String,
    pub kind: Kind,
    /// The variable the flag also reads, if any.
    pub env: Option<String>,
    /// Exported as that variable instead of given as a flag: a secret (never on a command
    /// line), or a setting of a step `pipeline` runs (its steps read their variables).
    pub via_env: bool,
    /// Never shown.
    pub secret: bool,
    /// A positional argument that takes several values.
    pub many: bool,
    pub help: String,
    /// The binary's default, for the description.
    pub default: Option<String>,
}

/// One subcommand as an action sees it.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub about: String,
    pub inputs: Vec<Input>,
    /// (name, description) of each step output.
    pub outputs: Vec<(String, String)>,
}

/// The action's own inputs, before the subcommand's.
pub const INSTALL_HELP: &str = "How to get the binary: auto (a verified release binary for a release of the action, a build of its source otherwise) or source (always build the action's source)";
pub const ARGS_HELP: &str =
    "Extra command-line arguments, one per line, appended last (a later flag wins)";

/// The input whose default is the workflow's own token. Its `default:` in action.yml is
/// empty and the token reaches the step as `PI_IMAGE_DEFAULT_TOKEN`, so the binary can
/// tell a token the workflow gave (`token`, the old `github-token`, or a job-level
/// GITHUB_TOKEN, in that order) from the default, which applies only without them.
pub const TOKEN_INPUT: &str = "token";
pub const DEFAULT_TOKEN_VAR: &str = "PI_IMAGE_DEFAULT_TOKEN";

/// An input of the root action renamed when the inputs took their flags' names.
pub struct Renamed {
    pub old: &'static str,
    pub new: &'static str,
    /// The steps the old name served: only there does it still work.
    pub steps: &'static [&'static str],
}

/// The old names still work in the root action (with a deprecation message), for
/// workflows written before, and only for the steps they served then.
pub const RENAMED: &[Renamed] = &[
    Renamed {
        old: "apt-rewrite-mirrors",
        new: "rewrite-mirrors",
        steps: &["prepare-mirrors", "pipeline"],
    },
    Renamed {
        old: "apt-mirror-raspbian",
        new: "raspbian-mirror",
        steps: &["prepare-mirrors", "pipeline"],
    },
    Renamed {
        old: "apt-mirror-raspberrypi",
        new: "raspberrypi-mirror",
        steps: &["prepare-mirrors", "pipeline"],
    },
    Renamed {
        old: "settings",
        new: "setting",
        steps: &["run-pi-gen"],
    },
    Renamed {
        old: "options",
        new: "option",
        steps: &["manifest"],
    },
    Renamed {
        old: "markers",
        new: "marker",
        steps: &["smoke"],
    },
    Renamed {
        old: "failure-markers",
        new: "failure-marker",
        steps: &["smoke"],
    },
    Renamed {
        old: "smoke-image",
        new: "image",
        steps: &["smoke", "pipeline"],
    },
    Renamed {
        old: "github-token",
        new: "token",
        steps: &["release", "pipeline"],
    },
    Renamed {
        old: "verify-repository",
        new: "repository",
        steps: &["verify"],
    },
    Renamed {
        old: "files",
        new: "file",
        steps: &["sign", "verify"],
    },
];

/// Every subcommand's inputs and outputs, read from the clap definitions and the typed
/// outputs. Fails when two subcommands give one flag name two meanings.
pub fn catalogue() -> anyhow::Result<Vec<Step>> {
    let cli = Cli::command();
    let mut steps = Vec::new();
    for &name in STEPS {
        let Some(sub) = cli.find_subcommand(name) else {
            bail!("internal: no subcommand `{name}`");
        };
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let inputs = own_inputs(sub);
        steps.push(Step {
            name,
            about,
            inputs,
            outputs: outputs_of(name)?,
        });
    }
    // pipeline's steps read their settings from variables: its action takes them too.
    let mut extra: Vec<Input> = Vec::new();
    // pipeline's steps read their settings from variables: its action takes those inputs.
    for step in steps.iter().filter(|s| pipeline::STEPS.contains(&s.name)) {
        for input in step.inputs.iter().filter(|i| i.env.is_some()) {
            if !extra.iter().any(|e| e.name == input.name) {
                extra.push(Input {
                    via_env: true,
                    help: format!("{} (for {})", input.help, step.name),
                    ..input.clone()
                });
            }
        }
    }
    if let Some(pipeline) = steps.iter_mut().find(|s| s.name == "pipeline") {
        for input in extra {
            if !pipeline.inputs.iter().any(|i| i.name == input.name) {
                pipeline.inputs.push(input);
            }
        }
    }
    check_meanings(&steps)?;
    for r in RENAMED {
        let has = |name: &str| {
            steps
                .iter()
                .any(|s| s.inputs.iter().any(|i| i.name == name))
        };
        let served = r.steps.iter().all(|name| {
            steps
                .iter()
                .any(|s| s.name == *name && s.inputs.iter().any(|i| i.name == r.new))
        });
        if has(r.old) || !served {
            bail!(
                "internal: renamed input `{}` → `{}` does not match the flags",
                r.old,
                r.new
            );
        }
    }
    Ok(steps)
}

fn own_inputs(sub: &clap::Command) -> Vec<Input> {
    sub.get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set())
        .filter_map(|a| {
            let kind = match a.get_action() {
                ArgAction::SetTrue => Kind::Bool,
                ArgAction::Set if a.is_positional() => Kind::Positional,
                ArgAction::Append if a.is_positional() => Kind::Positional,
                ArgAction::Set => Kind::Value,
                ArgAction::Append => Kind::Lines,
                _ => return None,
            };
            let name = match a.get_long() {
                Some(long) => long.to_owned(),
                None => a.get_id().as_str().replace('_', "-"),
            };
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            let secret = a.is_hide_env_values_set();
            let help = a
                .get_help()
                .map(ToString::to_string)
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let default = (!a.get_default_values().is_empty() && kind != Kind::Bool).then(|| {
                a.get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            Some(Input {
                name,
                kind,
                via_env: secret && env.is_some(),
                env,
                secret,
                many: matches!(a.get_action(), ArgAction::Append),
                help,
                default,
            })
        })
        .collect()
}

/// A flag name means one thing everywhere: same kind of value, same variable when both
/// read one, and one name per variable.
fn check_meanings(steps: &[Step]) -> anyhow::Result<()> {
    let mut by_name: BTreeMap<&str, (&str, &Input)> = BTreeMap::new();
    let mut by_env: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for step in steps {
        for input in &step.inputs {
            if let Some((other, seen)) = by_name.get(input.name.as_str()) {
                let kinds_differ = seen.kind != input.kind;
                let envs_differ = matches!((&seen.env, &input.env), (Some(a), Some(b)) if a != b);
                if kinds_differ || envs_differ {
                    bail!(
                        "`--{}` means different things in `{other}` ({:?}, {:?}) and `{}` ({:?}, {:?}): rename one so that an input can be named after its flag",
                        input.name,
                        seen.kind,
                        seen.env,
                        step.name,
                        input.kind,
                        input.env
                    );
                }
            } else {
                by_name.insert(&input.name, (step.name, input));
            }
            if let Some(env) = &input.env {
                if let Some((other, name)) = by_env.get(env.as_str()) {
                    if *name != input.name {
                        bail!(
                            "{env} is read by `--{name}` in `{other}` and by `--{}` in `{}`: one variable, one flag name",
                            input.name,
                            step.name
                        );
                    }
                } else {
                    by_env.insert(env, (step.name, &input.name));
                }
            }
        }
    }
    Ok(())
}

/// (name, description) of a typed outputs struct's fields, from its JSON Schema.
fn fields<T: schemars::JsonSchema>() -> anyhow::Result<Vec<(String, String)>> {
    let schema = schemars::schema_for!(T);
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        bail!("internal: outputs schema without properties");
    };
    props
        .iter()
        .map(|(k, v)| {
            if v.get("type").and_then(|t| t.as_str()) != Some("string") {
                bail!("internal: output `{k}` is not a string");
            }
            let description = v
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default();
            if description.is_empty() {
                bail!("internal: output `{k}` has no doc comment");
            }
            Ok((k.clone(), description.replace('\n', " ")))
        })
        .collect()
}

fn outputs_of(step: &str) -> anyhow::Result<Vec<(String, String)>> {
    fn of<R: StepReport>() -> anyhow::Result<Vec<(String, String)>> {
        fields::<R::Outputs>()
    }
    match step {
        "prepare-mirrors" => of::<prepare_mirrors::Outcome>(),
        "run-pi-gen" => of::<run_pi_gen::Outcome>(),
        "collect-artifacts" => of::<collect_artifacts::Outcome>(),
        "smoke" => of::<smoke::Outcome>(),
        "manifest" => of::<manifest::Outcome>(),
        "sign" => of::<sign::Outcome>(),
        "verify" => of::<verify::Outcome>(),
        "release" => of::<release::Outcome>(),
        "pipeline" => of::<pipeline::Outcome>(),
        "doctor" => of::<doctor::Outcome>(),
        _ => bail!("internal: no outputs for `{step}`"),
    }
}

/// Where a sub-action's files sit relative to the repository root.
pub fn action_file(step: Option<&str>) -> PathBuf {
    match step {
        Some(step) => PathBuf::from(step).join("action.yml"),
        None => PathBuf::from("action.yml"),
    }
}
