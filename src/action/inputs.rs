//! `pi-image action run SUBCOMMAND`: the generated action's run step. It reads the
//! `INPUT_*` variables the action passes (composite actions get none of their own,
//! actions/runner#665, so every action.yml maps each input explicitly in `env:`), turns
//! them into SUBCOMMAND's arguments, and replaces itself with `pi-image SUBCOMMAND …`
//! without any `INPUT_*` variable (the token's among them).
//!
//! An empty input is "not set": it becomes no flag, so the binary's default applies, and
//! so does a variable of the same name the workflow set itself (a job-level IMG_NAME).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;

use std::collections::BTreeSet;

use super::{DEFAULT_TOKEN_VAR, Kind, RENAMED, Step, TOKEN_INPUT, catalogue};
use crate::error::usage;
use crate::gha::escape::redact_credentials;
use crate::gha::{Gha, Level};
use crate::process::CmdSpec;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The subcommand to run [default: the `command` input]
    pub subcommand: Option<String>,
    /// The action's root directory (its default cloud-init seed is there)
    #[arg(long)]
    pub action_path: Option<PathBuf>,
}

/// What `action run` becomes.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Invocation {
    pub subcommand: String,
    pub args: Vec<String>,
    /// Variables set for it; a secret's value is never kept here.
    pub env: Vec<(String, String)>,
    #[serde(skip)]
    pub secret_env: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// What [`invocation`] needs to know about the world besides the inputs.
#[derive(Debug, Default)]
pub struct Context {
    /// The action's root, whose `cloud-init/user-data.yaml` is the default seed.
    pub action_path: Option<PathBuf>,
    /// Variables set (non-empty) in the step's environment, of those that matter here
    /// (USER_DATA, GITHUB_TOKEN).
    pub env_set: BTreeSet<String>,
    /// The workflow's own token (`PI_IMAGE_DEFAULT_TOKEN`), for `token` when nothing
    /// else gives one.
    pub default_token: Option<String>,
    /// `INPUT_*` variables whose value is not UTF-8: an error only if this step uses one.
    pub not_utf8: BTreeSet<String>,
    /// The workspace has the conventional `cloud-init/user-data.yaml`.
    pub workspace_seed: bool,
}

/// The `INPUT_*` variable of an input.
pub fn variable(input: &str) -> String {
    format!("INPUT_{}", input.replace('-', "_").to_ascii_uppercase())
}

fn non_empty_lines(value: &str) -> impl Iterator<Item = &str> {
    value
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
}

fn boolean(input: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(usage(format!(
            "input `{input}` must be true or false, not {}: fix the `with:` of this step",
            crate::shell::quote(value)
        ))),
    }
}

/// Turns the inputs (`INPUT_*` name → value) into the subcommand's arguments and
/// variables. Pure: the caller reads the environment.
pub fn invocation(
    steps: &[Step],
    subcommand: Option<&str>,
    inputs: &BTreeMap<String, String>,
    cx: &Context,
) -> anyhow::Result<Invocation> {
    let given = |name: &str| {
        inputs
            .get(&variable(name))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let names = super::STEPS.join(", ");
    let subcommand = match subcommand.or(given("command")) {
        Some(s) => s.trim(),
        None => {
            return Err(usage(format!(
                "the `command` input is required (one of: {names})"
            )));
        }
    };
    let Some(step) = steps.iter().find(|s| s.name == subcommand) else {
        return Err(usage(format!(
            "unknown command {} (one of: {names})",
            crate::shell::quote(subcommand)
        )));
    };
    let mut inv = Invocation {
        subcommand: step.name.to_owned(),
        ..Invocation::default()
    };
    let has = |name: &str| step.inputs.iter().any(|i| i.name == name);
    let renamed_here: Vec<&super::Renamed> = RENAMED
        .iter()
        .filter(|r| r.steps.contains(&step.name))
        .collect();
    for name in step
        .inputs
        .iter()
        .map(|i| i.name.as_str())
        .chain(renamed_here.iter().map(|r| r.old))
        .chain(["args", "command"])
    {
        if cx.not_utf8.contains(&variable(name)) {
            return Err(usage(format!(
                "input `{name}` is not UTF-8 text: give it as text"
            )));
        }
    }
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    for input in &step.inputs {
        if let Some(v) = given(&input.name) {
            values.insert(&input.name, v.to_owned());
        }
    }
    for r in &renamed_here {
        let Some(v) = given(r.old) else { continue };
        if values.contains_key(r.new) {
            inv.warnings.push(format!(
                "input `{}` is the old name of `{}`; both are set, `{}` wins",
                r.old, r.new, r.new
            ));
        } else {
            inv.warnings.push(format!(
                "input `{}` is deprecated: name it `{}`",
                r.old, r.new
            ));
            values.insert(r.new, v.to_owned());
        }
    }
    // The workflow's token, only when the workflow gave none (input or variable).
    if has(TOKEN_INPUT)
        && !values.contains_key(TOKEN_INPUT)
        && !cx.env_set.contains("GITHUB_TOKEN")
        && let Some(token) = cx.default_token.as_ref().filter(|t| !t.is_empty())
    {
        values.insert(TOKEN_INPUT, token.clone());
    }
    // Inputs given to the wrong step: the runner only warns about inputs an action does
    // not declare, and the root action declares every step's.
    let mut unused: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for other in steps {
        for input in other.inputs.iter().filter(|i| !has(&i.name)) {
            if given(&input.name).is_some() {
                unused
                    .entry(input.name.clone())
                    .or_default()
                    .push(other.name);
            }
        }
    }
    for r in RENAMED.iter().filter(|r| !r.steps.contains(&step.name)) {
        if given(r.old).is_some() {
            unused.insert(r.old.to_owned(), r.steps.to_vec());
        }
    }
    for (name, users) in unused {
        let mut users = users;
        users.dedup();
        inv.warnings.push(format!(
            "input `{name}` is not used by `{}` (only by: {}); ignored",
            step.name,
            users.join(", ")
        ));
    }

    let mut positional = Vec::new();
    for input in &step.inputs {
        let Some(value) = values.get(input.name.as_str()) else {
            continue;
        };
        if input.via_env {
            let Some(var) = &input.env else {
                bail!("internal: input `{}` has no variable", input.name);
            };
            let value = if input.kind == Kind::Bool {
                boolean(&input.name, value)?.to_string()
            } else {
                value.clone()
            };
            if input.secret {
                inv.secret_env.push((var.clone(), value));
            } else {
                inv.env.push((var.clone(), value));
            }
            continue;
        }
        // `--flag=VALUE`: a value that starts with `-` is still the flag's value.
        let flag = format!("--{}", input.name);
        match input.kind {
            Kind::Value => inv.args.push(format!("{flag}={value}")),
            Kind::Bool => {
                if boolean(&input.name, value)? {
                    inv.args.push(flag);
                }
            }
            Kind::Lines => {
                for line in non_empty_lines(value) {
                    inv.args.push(format!("{flag}={line}"));
                }
            }
            Kind::Positional => positional.extend(non_empty_lines(value).map(str::to_owned)),
        }
    }
    if let Some(extra) = given("args") {
        inv.args.extend(non_empty_lines(extra).map(str::to_owned));
    }

    // The seed: without a user-data input or variable and without the conventional
    // cloud-init/user-data.yaml in the workspace, the image gets the action's default
    // seed (an image nobody can log in to is not a useful default).
    let wants_seed = matches!(step.name, "run-pi-gen" | "pipeline");
    let user_data = values.contains_key("user-data")
        || inv.env.iter().any(|(k, _)| k == "USER_DATA")
        || cx.env_set.contains("USER_DATA")
        || cx.workspace_seed
        || inv
            .args
            .iter()
            .any(|a| a == "--no-user-data" || a.starts_with("--user-data"));
    if wants_seed
        && !user_data
        && let Some(root) = &cx.action_path
    {
        let seed = root.join("cloud-init/user-data.yaml");
        inv.notes.push(format!(
            "no cloud-init/user-data.yaml in the workspace: using the action's default seed {}",
            seed.display()
        ));
        inv.env
            .push(("USER_DATA".into(), seed.display().to_string()));
    }
    if !positional.is_empty() {
        inv.args.push("--".into());
        inv.args.extend(positional);
    }
    Ok(inv)
}

/// The log lines: the command line, each word quoted as a shell would need, and the
/// variables set (a secret's value never); credentials in URLs hidden.
pub fn shown(inv: &Invocation) -> Vec<String> {
    let mut words = vec![inv.subcommand.clone()];
    words.extend(inv.args.iter().map(|a| crate::shell::quote(a)));
    let mut lines = vec![words.join(" ")];
    if !inv.env.is_empty() || !inv.secret_env.is_empty() {
        let vars: Vec<String> = inv
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::shell::quote(v)))
            .chain(inv.secret_env.iter().map(|(k, _)| format!("{k}=***")))
            .collect();
        lines.push(format!("with {}", vars.join(" ")));
    }
    lines.into_iter().map(|l| redact_credentials(&l)).collect()
}

/// The `INPUT_*` variables as text, and the names of those that are not UTF-8.
fn read_inputs() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut inputs = BTreeMap::new();
    let mut not_utf8 = BTreeSet::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str().filter(|k| k.starts_with("INPUT_")) else {
            continue;
        };
        match v.into_string() {
            Ok(v) => {
                inputs.insert(k.to_owned(), v);
            }
            Err(_) => {
                not_utf8.insert(k.to_owned());
            }
        }
    }
    (inputs, not_utf8)
}

pub fn main(gha: &Gha, args: RunArgs) -> anyhow::Result<()> {
    let steps = catalogue()?;
    // URL credentials in inputs were masked at start-up, with the rest of the environment.
    let (inputs, not_utf8) = read_inputs();
    // github.token: the runner masks it already.
    let default_token = std::env::var(DEFAULT_TOKEN_VAR).ok();
    let cx = Context {
        action_path: args.action_path.clone(),
        env_set: ["USER_DATA", "GITHUB_TOKEN"]
            .into_iter()
            .filter(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
            .map(str::to_owned)
            .collect(),
        default_token,
        not_utf8,
        workspace_seed: Path::new("cloud-init/user-data.yaml").exists(),
    };
    let inv = invocation(&steps, args.subcommand.as_deref(), &inputs, &cx)?;
    for (_, secret) in &inv.secret_env {
        gha.mask(secret);
    }
    for w in &inv.warnings {
        gha.annotate(Level::Warning, &format!("pi-image action: {w}"), None, None);
    }
    for n in &inv.notes {
        gha.line(&format!("pi-image action: {n}"));
    }
    if gha.print_plan(&inv)? {
        return Ok(());
    }
    for line in shown(&inv) {
        gha.line(&format!("pi-image action: {line}"));
    }
    // The binary the action's install step chose (the one running now, in the generated
    // step); this binary when started by hand.
    let exe = match std::env::var_os("PI_IMAGE_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => PathBuf::from(bin),
        None => std::env::current_exe().map_err(|e| {
            anyhow::anyhow!("cannot find this binary to run `{}`: {e}", inv.subcommand)
        })?,
    };
    let mut spec = CmdSpec::new(
        &exe.to_string_lossy(),
        &format!("run `pi-image {}`", inv.subcommand),
    )
    .arg(&inv.subcommand)
    .args(&inv.args);
    for (k, v) in inv.env.iter().chain(&inv.secret_env) {
        spec = spec.env(k, v);
    }
    // The child is this tool, as the step itself would have been: it keeps the step's
    // credentials (the OIDC request token for keyless signing, COSIGN_PASSWORD, a
    // job-level GITHUB_TOKEN), but no INPUT_* copy and not the default token's variable.
    spec = spec.pass_secrets(crate::process::SECRET_ENV);
    for k in inputs.keys().chain(&cx.not_utf8) {
        spec = spec.env_remove(k);
    }
    spec = spec.env_remove(DEFAULT_TOKEN_VAR);
    Err(spec.exec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sub: Option<&str>, set: &[(&str, &str)]) -> anyhow::Result<Invocation> {
        let steps = catalogue().unwrap();
        let inputs = set
            .iter()
            .map(|(k, v)| (variable(k), (*v).to_owned()))
            .collect();
        invocation(&steps, sub, &inputs, &Context::default())
    }

    #[test]
    fn inputs_become_flags_named_as_the_inputs_and_empty_ones_nothing() {
        let inv = run(
            Some("collect-artifacts"),
            &[
                ("img-name", "pi"),
                ("xz-preset", ""),
                ("move", "true"),
                ("chown", ""),
            ],
        )
        .unwrap();
        assert_eq!(inv.args, ["--img-name=pi", "--move"]);
        assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    }

    #[test]
    fn a_bool_input_that_is_not_true_or_false_is_a_usage_error_naming_it() {
        let err = run(Some("collect-artifacts"), &[("move", "yes please")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("input `move` must be true or false"),
            "{err}"
        );
        assert_eq!(
            crate::error::exit_code(&err),
            std::process::ExitCode::from(2)
        );
    }

    #[test]
    fn lines_repeat_the_flag_and_positionals_follow_a_double_dash() {
        let inv = run(Some("smoke"), &[("marker", "a\r\n\n  \nb c\n")]).unwrap();
        assert_eq!(inv.args, ["--marker=a", "--marker=b c"]);
        let inv = run(Some("verify"), &[("file", "x.img.xz\n--key\n")]).unwrap();
        assert_eq!(inv.args, ["--", "x.img.xz", "--key"]);
    }

    #[test]
    fn secrets_are_exported_never_put_on_the_command_line_or_shown() {
        let inv = run(Some("release"), &[("token", "ghs_secret"), ("tag", "v1")]).unwrap();
        assert_eq!(inv.args, ["--tag=v1"]);
        assert_eq!(
            inv.secret_env,
            [("GITHUB_TOKEN".to_owned(), "ghs_secret".to_owned())]
        );
        assert_eq!(shown(&inv), ["release --tag=v1", "with GITHUB_TOKEN=***"]);
        assert!(!serde_json::to_string(&inv).unwrap().contains("ghs_secret"));
    }

    #[test]
    fn an_input_of_another_step_is_reported_and_ignored() {
        let inv = run(
            Some("collect-artifacts"),
            &[("marker", "login:"), ("token", "t")],
        )
        .unwrap();
        assert!(inv.args.is_empty());
        assert_eq!(
            inv.warnings,
            [
                "input `marker` is not used by `collect-artifacts` (only by: smoke); ignored",
                "input `token` is not used by `collect-artifacts` (only by: release, pipeline); ignored"
            ]
        );
        assert!(
            !format!("{inv:?}").contains("\"t\""),
            "the token's value is kept nowhere"
        );
    }

    #[test]
    fn old_input_names_still_work_in_the_root_action_with_a_warning() {
        let inv = run(None, &[("command", "smoke"), ("markers", "ok")]).unwrap();
        assert_eq!(inv.args, ["--marker=ok"]);
        assert_eq!(
            inv.warnings,
            ["input `markers` is deprecated: name it `marker`"]
        );
    }

    #[test]
    fn pipeline_passes_its_steps_settings_as_their_variables() {
        let inv = run(
            Some("pipeline"),
            &[("debian-mirror", "http://m/debian"), ("skip", "smoke")],
        )
        .unwrap();
        assert_eq!(inv.args, ["--skip=smoke"]);
        assert_eq!(
            inv.env,
            [("DEBIAN_MIRROR".to_owned(), "http://m/debian".to_owned())]
        );
    }

    #[test]
    fn the_default_seed_applies_only_without_any_seed_of_the_users() {
        let steps = catalogue().unwrap();
        let cx = Context {
            action_path: Some("/act".into()),
            ..Context::default()
        };
        let none = BTreeMap::new();
        let inv = invocation(&steps, Some("run-pi-gen"), &none, &cx).unwrap();
        assert_eq!(
            inv.env,
            [(
                "USER_DATA".to_owned(),
                "/act/cloud-init/user-data.yaml".to_owned()
            )]
        );
        let off: BTreeMap<String, String> = [(variable("no-user-data"), "true".to_owned())].into();
        assert!(
            invocation(&steps, Some("run-pi-gen"), &off, &cx)
                .unwrap()
                .env
                .is_empty()
        );
        let own = Context {
            workspace_seed: true,
            ..cx
        };
        assert!(
            invocation(&steps, Some("run-pi-gen"), &none, &own)
                .unwrap()
                .env
                .is_empty()
        );
    }

    #[test]
    fn a_missing_or_unknown_command_is_a_usage_error() {
        assert!(
            run(None, &[])
                .unwrap_err()
                .to_string()
                .contains("`command` input is required")
        );
        let err = run(None, &[("command", "rm -rf")]).unwrap_err().to_string();
        assert!(err.contains("unknown command 'rm -rf'"), "{err}");
    }

    #[test]
    fn the_default_token_applies_only_when_the_workflow_gave_none() {
        let steps = catalogue().unwrap();
        let cx = |env: &[&str]| Context {
            default_token: Some("ghs_default".into()),
            env_set: env.iter().map(|e| (*e).to_owned()).collect(),
            ..Context::default()
        };
        let token = |set: &[(&str, &str)], env: &[&str]| {
            let inputs = set
                .iter()
                .map(|(k, v)| (variable(k), (*v).to_owned()))
                .collect();
            invocation(&steps, Some("release"), &inputs, &cx(env))
                .unwrap()
                .secret_env
        };
        let gh = |t: &str| vec![("GITHUB_TOKEN".to_owned(), t.to_owned())];
        assert_eq!(token(&[], &[]), gh("ghs_default"));
        assert_eq!(
            token(&[("github-token", "pat")], &[]),
            gh("pat"),
            "the old name beats the default"
        );
        assert_eq!(
            token(&[("token", "t"), ("github-token", "pat")], &[]),
            gh("t")
        );
        assert!(
            token(&[], &["GITHUB_TOKEN"]).is_empty(),
            "a job-level GITHUB_TOKEN is kept"
        );
        // Steps without a token get none.
        let inv = invocation(&steps, Some("smoke"), &BTreeMap::new(), &cx(&[])).unwrap();
        assert!(inv.secret_env.is_empty() && inv.warnings.is_empty());
    }

    #[test]
    fn an_old_input_name_works_only_for_the_steps_it_served() {
        let inv = run(Some("release"), &[("verify-repository", "o/r")]).unwrap();
        assert!(inv.args.is_empty(), "{:?}", inv.args);
        assert_eq!(
            inv.warnings,
            ["input `verify-repository` is not used by `release` (only by: verify); ignored"]
        );
        let inv = run(Some("collect-artifacts"), &[("smoke-image", "a.img")]).unwrap();
        assert!(inv.args.is_empty());
        let inv = run(Some("verify"), &[("verify-repository", "o/r")]).unwrap();
        assert_eq!(inv.args, ["--repository=o/r"]);
    }

    #[test]
    fn a_value_that_starts_with_a_dash_stays_the_flags_value() {
        let inv = run(
            Some("smoke"),
            &[("marker", "--- ready ---"), ("append", "-x")],
        )
        .unwrap();
        let cli = crate::cli::parse_from(
            ["pi-image".to_owned(), "smoke".to_owned()]
                .into_iter()
                .chain(inv.args.clone())
                .map(std::ffi::OsString::from),
            |_| None,
        );
        assert!(cli.is_ok(), "{inv:?}: {:?}", cli.err());
    }

    #[test]
    fn a_non_utf8_input_is_an_error_only_for_the_step_that_uses_it() {
        let steps = catalogue().unwrap();
        let cx = Context {
            not_utf8: [variable("marker")].into(),
            ..Context::default()
        };
        assert!(invocation(&steps, Some("collect-artifacts"), &BTreeMap::new(), &cx).is_ok());
        let err = invocation(&steps, Some("smoke"), &BTreeMap::new(), &cx).unwrap_err();
        assert!(
            err.to_string().contains("input `marker` is not UTF-8"),
            "{err}"
        );
    }
}
