//! The GitHub Action (`action.yml`, `action/*.sh`), the workflows and templates, the
//! cloud-init seed and the local `act` dry run: real actionlint, check-jsonschema,
//! cloud-init, shellcheck and act (host mode, no Docker), the real binary.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use crate::support::{read_outputs, repo_root, run, sh};

/// A tool the README's test command installs into `.venv` (or `node_modules/.bin`).
fn tool(name: &str) -> PathBuf {
    for dir in [".venv/bin", "node_modules/.bin"] {
        let p = repo_root().join(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run the README's test command (bash scripts/test.sh)")
}

fn yaml(path: &Path) -> serde_norway::Value {
    serde_norway::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The action, the workflows, the templates and the act stub: every Actions YAML file.
fn actions_yaml() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let root = repo_root();
    let actions = vec![
        root.join("action.yml"),
        root.join("act/offline/unavailable/action.yml"),
    ];
    let mut workflows = Vec::new();
    for dir in [".github/workflows", "templates"] {
        for e in fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yml") {
                workflows.push(p);
            }
        }
    }
    workflows.sort();
    assert!(workflows.len() >= 4, "{workflows:?}");
    (actions, workflows)
}

/// (input, kind, target, commands) rows of action/run.sh's table.
fn mapping_table() -> Vec<(String, String, String, Vec<String>)> {
    let out = sh(
        "bash",
        &[
            repo_root().join("action/run.sh").to_str().unwrap(),
            "--table",
        ],
        repo_root(),
    );
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].to_owned(),
                f[1].to_owned(),
                f[2].to_owned(),
                f[3].split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn env_name(input: &str) -> String {
    format!("INPUT_{}", input.replace('-', "_").to_uppercase())
}

#[test]
fn every_input_reaches_the_binary_through_env_and_the_mapping_table() {
    let action = yaml(&repo_root().join("action.yml"));
    let inputs: BTreeSet<String> = action["inputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let table = mapping_table();
    let mapped: BTreeSet<String> = table.iter().map(|r| r.0.clone()).collect();
    let own: BTreeSet<String> = ["command", "install", "args"].map(String::from).into();
    assert_eq!(
        inputs.difference(&own).cloned().collect::<BTreeSet<_>>(),
        mapped,
        "action.yml inputs and action/run.sh's table differ"
    );
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    let run_step = steps.iter().find(|s| s["id"] == "run").unwrap();
    let env = run_step["env"].as_mapping().unwrap();
    for name in inputs.iter().filter(|n| *n != "install") {
        let var = env_name(name);
        assert_eq!(
            env.get(var.as_str()).and_then(|v| v.as_str()),
            Some(format!("${{{{ inputs.{name} }}}}").as_str()),
            "{var} must map inputs.{name}"
        );
    }
    // Every variable and flag the table names is one that each command it lists reads
    // (`pipeline` passes the environment on to its steps: any step's variable counts).
    let cli = <pi_image::cli::Cli as clap::CommandFactory>::command();
    let mut envs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut flags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for sub in cli.get_subcommands() {
        let name = sub.get_name().to_owned();
        for arg in sub.get_arguments() {
            if let Some(e) = arg.get_env() {
                envs.entry(name.clone())
                    .or_default()
                    .insert(e.to_string_lossy().into_owned());
            }
            if let Some(l) = arg.get_long() {
                flags
                    .entry(name.clone())
                    .or_default()
                    .insert(format!("--{l}"));
            }
        }
    }
    let any_env: BTreeSet<String> = envs.values().flatten().cloned().collect();
    assert!(
        envs["collect-artifacts"].contains("IMG_NAME")
            && flags["run-pi-gen"].contains("--install-deps"),
        "{envs:?} {flags:?}"
    );
    for (name, kind, target, commands) in &table {
        assert!(!commands.is_empty(), "input `{name}` lists no command");
        for command in commands {
            if command == "*" {
                continue;
            }
            assert!(
                envs.contains_key(command) || flags.contains_key(command),
                "input `{name}` lists `{command}`, which is not a subcommand"
            );
            if kind == "env" || kind == "secret" {
                let reads = if command == "pipeline" {
                    any_env.contains(target)
                } else {
                    envs.get(command).is_some_and(|e| e.contains(target))
                };
                assert!(
                    reads,
                    "input `{name}` sets {target} for `{command}`, which does not read it"
                );
            } else if target.starts_with("--") {
                assert!(
                    flags.get(command).is_some_and(|f| f.contains(target)),
                    "input `{name}` passes {target} to `{command}`, which has no such flag"
                );
            }
        }
    }
}

/// Output keys the binary publishes: every `("key", …)` inside an `fn outputs`.
fn binary_output_keys() -> BTreeSet<String> {
    // `("key", value)` on one line, or `(` then `"key",` alone on the next.
    let key = regex::Regex::new(r#"^\s*(?:\(\s*"([a-z0-9-]+)",|"([a-z0-9-]+)",\s*$)"#).unwrap();
    let mut keys = BTreeSet::new();
    for e in walkdir::WalkDir::new(repo_root().join("src/commands")) {
        let e = e.unwrap();
        if e.path().extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = fs::read_to_string(e.path()).unwrap();
        let mut inside = false;
        for line in text.lines() {
            if line.contains("fn outputs(&self)") {
                inside = true;
            } else if inside && line.trim_start().starts_with("fn ") {
                inside = false;
            }
            if inside && let Some(c) = key.captures(line) {
                keys.insert(c.get(1).or(c.get(2)).unwrap().as_str().to_owned());
            }
        }
    }
    keys
}

#[test]
fn every_output_of_the_binary_is_an_action_output() {
    let keys = binary_output_keys();
    // Sanity: the scan sees each command's outputs.
    for k in [
        "strategy",
        "image-path",
        "build-log-path",
        "manifest-path",
        "status",
        "boot-seconds",
        "release-url",
        "steps-run",
    ] {
        assert!(keys.contains(k), "scan missed `{k}`: {keys:?}");
    }
    let action = yaml(&repo_root().join("action.yml"));
    let outputs = action["outputs"].as_mapping().unwrap();
    for k in &keys {
        let v = outputs
            .get(k.as_str())
            .unwrap_or_else(|| panic!("output `{k}` of the binary is not forwarded by action.yml"));
        assert_eq!(
            v["value"].as_str().unwrap(),
            format!("${{{{ steps.run.outputs.{k} }}}}")
        );
    }
    for (k, v) in outputs {
        let k = k.as_str().unwrap();
        let value = v["value"].as_str().unwrap();
        if value.starts_with("${{ steps.run.") {
            assert!(
                keys.contains(k),
                "action output `{k}` is not published by any subcommand"
            );
        }
    }
}

/// A fake pi-image that records its argv and some environment, as JSON lines.
fn recorder(dir: &Path) -> PathBuf {
    let path = dir.join("fake-pi-image");
    fs::write(
        &path,
        "#!/usr/bin/env bash\n{ for a in \"$@\"; do printf 'ARG=%s\\n' \"$a\"; done\n  \
         for v in IMG_NAME OUTPUT_DIR PI_GEN_STAGES SMOKE_DIR GITHUB_TOKEN SIGSTORE_ID_TOKEN USER_DATA; do\n    \
         [[ -v $v ]] && printf 'ENV %s=%s\\n' \"$v\" \"${!v}\"; done; } > \"$RECORD\"\nexit 0\n",
    )
    .unwrap();
    sh("chmod", &["+x", path.to_str().unwrap()], dir);
    path
}

/// action/run.sh with every input of action.yml present and empty (as GitHub passes
/// unset inputs), plus `set`.
fn run_sh(dir: &Path, set: &[(&str, &str)]) -> (i32, String, Vec<String>) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("action/run.sh"))
        .current_dir(dir)
        .env("PI_IMAGE_BIN", recorder(dir))
        .env("RECORD", dir.join("record"))
        .env("GITHUB_ACTION_PATH", repo_root());
    for v in [
        "IMG_NAME",
        "OUTPUT_DIR",
        "PI_GEN_STAGES",
        "GITHUB_TOKEN",
        "USER_DATA",
    ] {
        cmd.env_remove(v);
    }
    for (name, ..) in mapping_table() {
        cmd.env(env_name(&name), "");
    }
    cmd.env("INPUT_ARGS", "");
    for (k, v) in set {
        cmd.env(k, v);
    }
    let _ = fs::remove_file(dir.join("record"));
    let (code, stdout, stderr) = run(&mut cmd);
    let record = fs::read_to_string(dir.join("record")).unwrap_or_default();
    (
        code,
        format!("{stdout}{stderr}"),
        record.lines().map(str::to_owned).collect(),
    )
}

#[test]
fn run_sh_maps_inputs_to_variables_and_flags_and_leaves_empty_ones_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("cloud-init")).unwrap();
    fs::write(dir.join("cloud-init/user-data.yaml"), "#cloud-config\n").unwrap();

    // Empty inputs: nothing exported, no flag; a workflow-level variable passes through.
    let (code, log, rec) = run_sh(
        dir,
        &[
            ("INPUT_COMMAND", "run-pi-gen"),
            ("IMG_NAME", "from-job-env"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        rec,
        ["ARG=run-pi-gen", "ENV IMG_NAME=from-job-env"],
        "{log}"
    );

    // Each kind of mapping.
    let (code, log, rec) = run_sh(
        dir,
        &[
            ("INPUT_COMMAND", "run-pi-gen"),
            ("INPUT_IMG_NAME", "kube; rm -rf / #"),
            ("INPUT_PI_GEN_STAGES", "stage0 stage1"),
            (
                "INPUT_SETTINGS",
                "FIRST_USER_NAME=pi\n\n  \nLOCALE_DEFAULT=en_GB.UTF-8\r\n",
            ),
            ("INPUT_INSTALL_DEPS", "true"),
            ("INPUT_CONTINUE", "false"),
            ("INPUT_IMAGE", "-lite"),
            ("INPUT_GITHUB_TOKEN", "ghs_secret"),
            ("INPUT_ARGS", "--hostname\nsk 1"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        rec,
        [
            "ARG=run-pi-gen",
            "ARG=--setting",
            "ARG=FIRST_USER_NAME=pi",
            "ARG=--setting",
            "ARG=LOCALE_DEFAULT=en_GB.UTF-8",
            "ARG=--install-deps",
            "ARG=--hostname",
            "ARG=sk 1",
            "ENV IMG_NAME=kube; rm -rf / #",
            "ENV PI_GEN_STAGES=stage0 stage1",
        ],
        "{log}"
    );
    // An input for another command is named, not silently dropped; a defaulted secret
    // (github-token) is ignored quietly and never printed.
    assert!(
        log.contains("::warning::pi-image action: input `image` is not used by `run-pi-gen`"),
        "{log}"
    );
    assert!(
        !log.contains("github-token") && !log.contains("ghs_secret"),
        "{log}"
    );

    // Secrets reach the binary as variables, masked in the log; words and positionals.
    let (code, log, rec) = run_sh(
        dir,
        &[
            ("INPUT_COMMAND", "release"),
            ("INPUT_GITHUB_TOKEN", "ghs_secret"),
            ("INPUT_PUBLISH", "TRUE"),
            ("INPUT_ASSETS", "dist/*.sigstore.json"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        rec,
        [
            "ARG=release",
            "ARG=--publish",
            "ARG=--assets",
            "ARG=dist/*.sigstore.json",
            "ENV GITHUB_TOKEN=ghs_secret"
        ]
    );
    assert!(
        log.contains("GITHUB_TOKEN=***") && !log.contains("ghs_secret"),
        "{log}"
    );
    let (code, log, rec) = run_sh(
        dir,
        &[
            ("INPUT_COMMAND", "pipeline"),
            ("INPUT_SKIP", "smoke\n sign  prepare-mirrors"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        rec,
        [
            "ARG=pipeline",
            "ARG=--skip",
            "ARG=smoke",
            "ARG=--skip",
            "ARG=sign",
            "ARG=--skip",
            "ARG=prepare-mirrors"
        ]
    );
    let (code, log, rec) = run_sh(
        dir,
        &[
            ("INPUT_COMMAND", "sign"),
            ("INPUT_FILES", "a.img.xz\n--not-a-flag\n"),
            ("INPUT_IDENTITY_TOKEN", "eyJtoken"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        rec,
        [
            "ARG=sign",
            "ARG=--",
            "ARG=a.img.xz",
            "ARG=--not-a-flag",
            "ENV SIGSTORE_ID_TOKEN=eyJtoken"
        ]
    );
    assert!(!log.contains("eyJtoken"), "{log}");

    // Refusals: usage errors (exit 2) before the binary runs.
    for (set, msg) in [
        (vec![], "the `command` input is required"),
        (vec![("INPUT_COMMAND", "rm")], "unknown command `rm`"),
        (
            vec![("INPUT_COMMAND", "release"), ("INPUT_DRAFT", "yes")],
            "input `draft` must be true or false, not `yes`",
        ),
    ] {
        let (code, log, rec) = run_sh(dir, &set);
        assert_eq!(code, 2, "{log}");
        assert!(log.contains(msg), "{log}");
        assert!(rec.is_empty(), "the binary ran: {rec:?}");
    }

    // Without a seed in the workspace, run-pi-gen gets the action's default seed.
    fs::remove_dir_all(dir.join("cloud-init")).unwrap();
    let (code, log, rec) = run_sh(dir, &[("INPUT_COMMAND", "run-pi-gen")]);
    assert_eq!(code, 0, "{log}");
    let seed = repo_root().join("cloud-init/user-data.yaml");
    assert_eq!(
        rec,
        [
            "ARG=run-pi-gen".to_owned(),
            format!("ENV USER_DATA={}", seed.display())
        ]
    );
    let (_, _, rec) = run_sh(
        dir,
        &[
            ("INPUT_COMMAND", "run-pi-gen"),
            ("INPUT_NO_USER_DATA", "true"),
        ],
    );
    assert_eq!(rec, ["ARG=run-pi-gen", "ARG=--no-user-data"]);
}

/// The real binary through run.sh, every input empty: the defaults hold (and an empty
/// variable in the environment, as a workflow's `env:` can leave, is ignored too).
#[test]
fn empty_inputs_keep_the_binary_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("gh-output");
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("action/run.sh"))
        .current_dir(dir)
        .env("PI_IMAGE_BIN", env!("CARGO_BIN_EXE_pi-image"))
        .env("GITHUB_OUTPUT", &out)
        .env("GITHUB_ACTION_PATH", repo_root())
        .env("INPUT_COMMAND", "doctor")
        .env("INPUT_ARGS", "")
        .env("REQUIRED_SPACE_GB", "");
    for (name, ..) in mapping_table() {
        cmd.env(env_name(&name), "");
    }
    let (code, stdout, stderr) = run(&mut cmd);
    // doctor exits 0 or 1 (something missing) but never 2 (bad usage).
    assert!(code == 0 || code == 1, "{code}: {stdout}{stderr}");
    let outputs = read_outputs(&out);
    assert!(outputs.contains_key("missing"), "{outputs:?}");
    assert!(
        stdout.contains("30 GB") || stderr.contains("30 GB"),
        "default min-free-gb: {stdout}{stderr}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn scripts_pass_shellcheck() {
    for f in ["action/run.sh", "action/install.sh", "act/dry-run.sh"] {
        sh("shellcheck", &[f], repo_root());
    }
    // …and shellcheck does fail on a bad script.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("bad.sh"), "#!/bin/bash\nrm -rf $1/x\n").unwrap();
    let out = Command::new("shellcheck")
        .arg(tmp.path().join("bad.sh"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// No `${{ }}` in any script: inputs and contexts reach scripts through `env:` only.
#[test]
fn no_expression_is_interpolated_into_a_script() {
    let (actions, workflows) = actions_yaml();
    let mut scripts = 0;
    for f in actions.iter().chain(&workflows) {
        let doc = yaml(f);
        let mut steps: Vec<&serde_norway::Value> = Vec::new();
        if let Some(s) = doc["runs"]["steps"].as_sequence() {
            steps.extend(s);
        }
        if let Some(jobs) = doc["jobs"].as_mapping() {
            for job in jobs.values() {
                steps.extend(job["steps"].as_sequence().unwrap());
            }
        }
        for step in steps {
            if let Some(script) = step["run"].as_str() {
                scripts += 1;
                assert!(
                    !script.contains("${{"),
                    "{}: expression inside a script:\n{script}",
                    f.display()
                );
            }
        }
    }
    assert!(scripts > 10, "{scripts}");
}

/// Every `uses:` is local, this action, or a full commit SHA from the reviewed list
/// (Node 24 releases; the seed's outages were Node 20 actions under forced Node 24).
#[test]
fn actions_are_pinned_by_full_commit_sha() {
    const PINS: &[(&str, &str, &str)] = &[
        (
            "actions/checkout",
            "3d3c42e5aac5ba805825da76410c181273ba90b1",
            "v7.0.1",
        ),
        (
            "actions/cache",
            "27d5ce7f107fe9357f9df03efb73ab90386fccae",
            "v5.0.5",
        ),
        (
            "actions/upload-artifact",
            "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
            "v7.0.0",
        ),
        (
            "actions/download-artifact",
            "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",
            "v8.0.1",
        ),
    ];
    let uses = regex::Regex::new(r"^\s*(?:-\s+)?uses:\s*(\S+)(?:\s+#\s*(\S+))?\s*$").unwrap();
    let (actions, workflows) = actions_yaml();
    let mut seen = BTreeMap::new();
    for f in actions.iter().chain(&workflows) {
        for line in fs::read_to_string(f).unwrap().lines() {
            let Some(c) = uses.captures(line) else {
                continue;
            };
            let target = &c[1];
            *seen.entry(target.to_owned()).or_insert(0) += 1;
            if target == "./" || target == "sugarkube/pi-image-action@v1" {
                continue;
            }
            let (name, sha) = target.split_once('@').unwrap();
            let pin = PINS
                .iter()
                .find(|p| p.0 == name)
                .unwrap_or_else(|| panic!("{}: `{target}` is not a reviewed action", f.display()));
            assert_eq!(
                sha,
                pin.1,
                "{}: {name} must be pinned to {} ({})",
                f.display(),
                pin.1,
                pin.2
            );
            assert_eq!(
                c.get(2).map(|m| m.as_str()),
                Some(pin.2),
                "{}: `{line}` needs `# {}`",
                f.display(),
                pin.2
            );
        }
    }
    // The act config maps the same pins to the offline stub.
    let actrc = fs::read_to_string(repo_root().join("act/.actrc")).unwrap();
    for target in seen
        .keys()
        .filter(|t| t.starts_with("actions/") && !t.starts_with("actions/checkout"))
    {
        assert!(
            actrc.contains(&format!("--local-repository {target}=offline/unavailable")),
            "act/.actrc does not stub {target}"
        );
    }
    assert!(
        seen.keys().any(|k| k.starts_with("actions/cache@")),
        "{seen:?}"
    );
}

#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn actionlint_and_the_github_schemas_pass_on_the_action_workflows_and_templates() {
    let (actions, workflows) = actions_yaml();
    let cj = crate::support::check_jsonschema();
    let check = |schema: &str, files: &[PathBuf]| {
        let (code, log) = crate::support::run_merged(
            Command::new(&cj)
                .args(["--builtin-schema", schema])
                .args(files),
        );
        (code == 0, log)
    };
    let (ok, log) = check("vendor.github-actions", &actions);
    assert!(ok, "{log}");
    let (ok, log) = check("vendor.github-workflows", &workflows);
    assert!(ok, "{log}");
    let actionlint = tool("actionlint");
    let out = Command::new(&actionlint)
        .arg("-no-color")
        .args(&workflows)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same tools reject a broken copy: they really ran on the files above.
    let tmp = tempfile::tempdir().unwrap();
    let bad_wf = tmp.path().join("bad.yml");
    let text = fs::read_to_string(repo_root().join("templates/pi-image-release.yml")).unwrap();
    fs::write(
        &bad_wf,
        text.replace("timeout-minutes: 240", "timeout-minutes: forever")
            .replace(
                "steps.mode.outputs.dry-run",
                "steps.mode.outputs.dry-run.nope(",
            ),
    )
    .unwrap();
    let (ok, log) = check("vendor.github-workflows", std::slice::from_ref(&bad_wf));
    assert!(!ok && log.contains("timeout-minutes"), "{log}");
    let out = Command::new(&actionlint)
        .arg("-no-color")
        .arg(&bad_wf)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "actionlint accepted a broken workflow"
    );
    let bad_action = tmp.path().join("action.yml");
    let text = fs::read_to_string(repo_root().join("action.yml")).unwrap();
    fs::write(
        &bad_action,
        text.replace("using: composite", "using: node99"),
    )
    .unwrap();
    let (ok, log) = check("vendor.github-actions", std::slice::from_ref(&bad_action));
    assert!(!ok && log.contains("node99"), "{log}");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn the_default_seed_is_valid_cloud_config_without_secrets() {
    let seed = repo_root().join("cloud-init/user-data.yaml");
    let cloud_init = |file: &Path| {
        Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(file)
            .output()
            .expect("cloud-init is installed by the README's test command")
    };
    let out = cloud_init(&seed);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&seed).unwrap();
    let doc = yaml(&seed);
    assert!(text.starts_with("#cloud-config\n"));
    let files = doc["write_files"].as_sequence().unwrap();
    let file = |path: &str| {
        files
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in write_files"))
    };
    // The token placeholder is empty and private; the unit refuses to start without one.
    let env = file("/opt/sugarkube/.cloudflared.env");
    assert_eq!(env["content"].as_str().unwrap(), "TUNNEL_TOKEN=\"\"\n");
    assert_eq!(env["permissions"].as_str().unwrap(), "0600");
    let unit = file("/etc/systemd/system/cloudflared-compose.service")["content"]
        .as_str()
        .unwrap();
    assert!(
        unit.contains("ExecCondition=/bin/sh -c 'test -n \"$TUNNEL_TOKEN\"'"),
        "{unit}"
    );
    assert!(unit.contains("EnvironmentFile=/opt/sugarkube/.cloudflared.env"));
    // The compose file is embedded (no download at boot), and nothing looks like a secret.
    assert!(
        file("/opt/sugarkube/docker-compose.cloudflared.yml")["content"]
            .as_str()
            .unwrap()
            .contains("cloudflare/cloudflared")
    );
    assert!(
        !text.contains("curl -") && !text.contains("wget "),
        "no runtime downloads"
    );
    let secret =
        regex::Regex::new(r#"(?i)(token|password|secret)\s*[=:]\s*"?[A-Za-z0-9_\-]{8,}"#).unwrap();
    assert!(!secret.is_match(&text), "{:?}", secret.find(&text));
    // cloud-init schema rejects a broken copy: the check is real.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("user-data.yaml");
    fs::write(
        &bad,
        text.replace("package_update: true", "package_update: 7"),
    )
    .unwrap();
    assert!(!cloud_init(&bad).status.success());
}

/// A loopback HTTP server for a fake GitHub release: serves `files` under `prefix`,
/// 404 for anything else, for as long as the returned guard lives.
struct Server {
    port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn serve(files: BTreeMap<String, Vec<u8>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = hits.clone();
    std::thread::spawn(move || {
        // Bounded: a test makes a handful of requests.
        for stream in listener.incoming().take(64) {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            h.lock().unwrap().push(path.clone());
            let _ = match files.get(&path) {
                Some(body) => s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| s.write_all(body)),
                None => s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    Server { port, hits }
}

fn version() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pi-image"))
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("pi-image ")
        .to_owned()
}

/// action/install.sh in a clean environment: PATH without any pi-image (plus `path_dir`).
fn install(
    dir: &Path,
    path_dir: Option<&Path>,
    server: &Server,
    mode: &str,
) -> (i32, String, BTreeMap<String, String>, f64) {
    let out = dir.join("gh-output");
    let _ = fs::remove_file(&out);
    let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
    if let Some(p) = path_dir {
        path = format!("{}:{path}", p.display());
    }
    let started = Instant::now();
    let (code, stdout, stderr) = run(Command::new("bash")
        .arg(repo_root().join("action/install.sh"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("GITHUB_ACTION_PATH", repo_root())
        .env("ACTION_REPOSITORY", "sugarkube/pi-image-action")
        .env(
            "GITHUB_SERVER_URL",
            format!("http://127.0.0.1:{}", server.port),
        )
        .env("GITHUB_OUTPUT", &out)
        .env("GITHUB_PATH", dir.join("gh-path"))
        .env("RUNNER_TOOL_CACHE", dir.join("toolcache"))
        .env("RUNNER_TEMP", dir.join("tmp"))
        .env("INPUT_INSTALL", mode));
    let secs = started.elapsed().as_secs_f64();
    (code, format!("{stdout}{stderr}"), read_outputs(&out), secs)
}

fn target_triple() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-gnu",
        "aarch64" => "aarch64-unknown-linux-gnu",
        a => panic!("no release target for {a}"),
    }
}

/// A release directory as release.yml publishes it: the binary in a tarball, SHA256SUMS.
fn fake_release(dir: &Path, version: &str, tamper: bool) -> BTreeMap<String, Vec<u8>> {
    let stage = dir.join("stage");
    fs::create_dir_all(&stage).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_pi-image"), stage.join("pi-image")).unwrap();
    let asset = format!("pi-image-v{version}-{}.tar.gz", target_triple());
    sh(
        "tar",
        &[
            "-czf",
            dir.join(&asset).to_str().unwrap(),
            "-C",
            stage.to_str().unwrap(),
            "pi-image",
        ],
        dir,
    );
    let mut tarball = fs::read(dir.join(&asset)).unwrap();
    let sums = format!("{}  {asset}\n", crate::support::hex_sha256(&tarball));
    if tamper {
        let n = tarball.len();
        tarball[n / 2] ^= 0xff;
    }
    let base = format!("/sugarkube/pi-image-action/releases/download/v{version}");
    BTreeMap::from([
        (format!("{base}/{asset}"), tarball),
        (format!("{base}/SHA256SUMS"), sums.into_bytes()),
        (format!("{base}/{asset}.sigstore.json"), b"{}".to_vec()),
    ])
}

#[test]
fn install_uses_a_matching_binary_on_path_else_downloads_and_verifies_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v = version();
    let server = serve(fake_release(dir, &v, false));

    // A matching binary on PATH: used, nothing downloaded.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pi-image")).parent().unwrap();
    let (code, log, out, _) = install(dir, Some(bin_dir), &server, "auto");
    assert_eq!(code, 0, "{log}");
    assert_eq!(out["source"], "path", "{log}");
    assert_eq!(out["bin"], env!("CARGO_BIN_EXE_pi-image"));
    assert!(server.hits.lock().unwrap().is_empty());

    // Another version on PATH is not used: the release binary is downloaded and checked.
    let old = dir.join("old-bin");
    fs::create_dir_all(&old).unwrap();
    // An older pi-image that can verify bundles: it records what it was asked to verify.
    fs::write(
        old.join("pi-image"),
        "#!/bin/bash\ncase $1 in\n  --version) echo 'pi-image 0.0.1' ;;\n  \
         verify) [[ $2 == --help ]] && exit 0; printf '%s\\n' \"$@\" > \"$HOME/verify-args\"; \
         exit \"$(cat \"$HOME/verify-exit\")\" ;;\n  *) exit 2 ;;\nesac\n",
    )
    .unwrap();
    fs::write(dir.join("verify-exit"), "0").unwrap();
    sh(
        "chmod",
        &["+x", old.join("pi-image").to_str().unwrap()],
        dir,
    );
    let (code, log, out, secs) = install(dir, Some(&old), &server, "auto");
    assert_eq!(code, 0, "{log}");
    assert_eq!(out["source"], "download", "{log}");
    assert!(
        log.contains("ignoring") && log.contains("pi-image 0.0.1"),
        "{log}"
    );
    assert!(log.contains("SHA-256 verified"), "{log}");
    assert!(log.contains("Sigstore bundle verified with"), "{log}");
    let asked: Vec<String> = fs::read_to_string(dir.join("verify-args"))
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with('/') {
                l.rsplit('/').next().unwrap()
            } else {
                l
            }
            .to_owned()
        })
        .collect();
    let asset = format!("pi-image-v{v}-{}.tar.gz", target_triple());
    assert_eq!(
        asked,
        [
            "verify",
            &asset,
            "--bundle",
            &format!("{asset}.sigstore.json"),
            "--repository",
            "sugarkube/pi-image-action"
        ]
    );
    let installed = dir.join(format!("toolcache/pi-image/{v}/bin/pi-image"));
    assert_eq!(Path::new(&out["bin"]), installed);
    assert_eq!(
        fs::read_to_string(dir.join("gh-path"))
            .unwrap()
            .lines()
            .last(),
        installed.parent().unwrap().to_str()
    );
    eprintln!(
        "set-up with the prebuilt binary (loopback download + SHA-256 + extract): {secs:.2} s"
    );
    assert!(secs < 10.0, "set-up took {secs:.1} s");

    // A bundle that does not verify is refused.
    fs::remove_dir_all(dir.join("toolcache")).unwrap();
    fs::write(dir.join("verify-exit"), "1").unwrap();
    let (code, log, _, _) = install(dir, Some(&old), &server, "auto");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("does not verify for sugarkube/pi-image-action"),
        "{log}"
    );
    assert!(
        !dir.join(format!("toolcache/pi-image/{v}/bin/pi-image"))
            .exists()
    );

    // A tampered download is refused, and nothing is installed.
    let tmp2 = tempfile::tempdir().unwrap();
    let server = serve(fake_release(tmp2.path(), &v, true));
    let (code, log, out, _) = install(tmp2.path(), None, &server, "auto");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("::error::pi-image install: SHA-256 mismatch"),
        "{log}"
    );
    assert!(
        out.is_empty()
            && !tmp2
                .path()
                .join(format!("toolcache/pi-image/{v}/bin/pi-image"))
                .exists()
    );

    // No release for this version and no cargo: a clear error (the cargo fallback is
    // exercised for real by ci.yml's `action` job with install: source).
    let tmp3 = tempfile::tempdir().unwrap();
    let server = serve(BTreeMap::new());
    let (code, log, _, _) = install(tmp3.path(), None, &server, "auto");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("no release binary at"), "{log}");
    assert!(log.contains("no cargo to build it"), "{log}");
}

fn smoke_images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-images");
        sh(
            "bash",
            &[
                repo_root()
                    .join("tests/fixtures/smoke/build-images.sh")
                    .to_str()
                    .unwrap(),
                dir.to_str().unwrap(),
            ],
            repo_root(),
        );
        dir
    })
}

/// `act workflow_dispatch -W templates/pi-image-release.yml` through act/dry-run.sh, in
/// host mode (no Docker), with this checkout as `sugarkube/pi-image-action@v1` and the
/// development binary on PATH: the template's dry-run path end to end. pi-gen is the test
/// pi-gen (a real arm64 chroot build) with the smoke fixtures' kernel in its boot
/// partition, so `smoke` boots the image this run built.
#[test]
#[ignore = "tier root: runs the test pi-gen or changes file owners: needs root"]
fn act_runs_the_release_template_dry_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let repo = root.join("repo");
    fs::create_dir_all(&repo).unwrap();
    // A copy of this checkout (what git tracks or would track), as its own repository.
    let files = sh(
        "git",
        &["ls-files", "-co", "--exclude-standard"],
        repo_root(),
    );
    for f in files.lines() {
        let src = repo_root().join(f);
        if src.is_file() {
            let dst = repo.join(f);
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(&src, &dst).unwrap();
        }
    }
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "act test",
        ],
        &[
            "remote",
            "add",
            "origin",
            "https://github.com/sugarkube/pi-image-demo.git",
        ],
    ] {
        sh("git", args, &repo);
    }
    let pi_gen = root.join("pi-gen");
    sh(
        "cp",
        &[
            "-a",
            repo_root().join("tests/fixtures/pi-gen").to_str().unwrap(),
            pi_gen.to_str().unwrap(),
        ],
        root,
    );
    let out_dir = root.join("out");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pi-image")).parent().unwrap();
    let act_dir = tool("act").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}:{}:/usr/sbin:/sbin",
        bin_dir.display(),
        act_dir.display(),
        std::env::var("PATH").unwrap()
    );
    // The kernel, initramfs and Pi 3 device tree of the smoke fixtures, for the test
    // pi-gen's boot partition: the image it builds then boots in QEMU, and `smoke` checks
    // that very image.
    let boot_files = root.join("boot-files");
    fs::create_dir_all(&boot_files).unwrap();
    let ok_img = smoke_images().join("ok.img");
    for f in ["kernel8.img", "initramfs8", "bcm2837-rpi-3-b.dtb"] {
        sh(
            "mcopy",
            &[
                "-i",
                &format!("{}@@{}", ok_img.display(), 8192 * 512),
                &format!("::{f}"),
                boot_files.join(f).to_str().unwrap(),
            ],
            root,
        );
    }
    // Loopback apt mirrors for prepare-mirrors (the test pi-gen names Raspbian and the
    // Raspberry Pi archive); the upstream archives are not reachable from tests.
    let mirror = crate::support::mirror::Mirror::start(crate::support::mirror::Behaviour::Healthy);
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("act/dry-run.sh"))
        .current_dir(&repo)
        .env("PATH", path)
        .env("HOME", root)
        .args([
            "--action-cache-path",
            root.join("act-cache").to_str().unwrap(),
        ])
        .args(["--var", "PI_GEN_STRATEGY=native"])
        .args(["--var", &format!("PI_GEN_DIR={}", pi_gen.display())])
        .args(["--var", &format!("OUTPUT_DIR={}", out_dir.display())])
        .args(["--env", "REQUIRED_SPACE_GB=0"])
        .args(["--env", "XZ_PRESET=0"])
        .args([
            "--env",
            &format!(
                "TEST_PI_GEN_CACHE={}",
                Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join("test-pi-gen-cache")
                    .display()
            ),
        ])
        .args([
            "--env",
            &format!("TEST_PI_GEN_BOOT_FILES={}", boot_files.display()),
        ])
        .args([
            "--env",
            "PI_GEN_PASS_ENV=TEST_PI_GEN_CACHE TEST_PI_GEN_EXPORT TEST_PI_GEN_BOOT_FILES",
        ])
        .args([
            "--env",
            &format!("APT_REWRITE_MIRRORS={}", mirror.url("raspbian")),
        ])
        .args([
            "--env",
            &format!("APT_MIRROR_RASPBERRYPI={}", mirror.url("rpi")),
        ]);
    if crate::run_pi_gen::kernel_can_export() {
        cmd.args(["--env", "TEST_PI_GEN_EXPORT=loop"]);
    } else {
        cmd.args([
            "--env",
            "TEST_PI_GEN_EXPORT=mtools",
            "--env",
            "SKIP_KERNEL_CHECK=1",
        ]);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("GITHUB_")
            || k.starts_with("RUNNER_")
            || k.starts_with("INPUT_")
            || k == "ACT"
        {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let (code, stdout, stderr) = run(&mut cmd);
    let log = format!("{stdout}{stderr}");
    eprintln!("act dry run: {:.1} s", started.elapsed().as_secs_f64());
    fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("act-dry-run.log"),
        &log,
    )
    .unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("🏁  Job succeeded"), "{log}");

    // The dry run says what it skips, and the skipped steps never ran.
    assert!(
        log.contains("::notice title=Dry run::running under act: skipped because they need GitHub"),
        "{log}"
    );
    assert!(
        !log.contains("needs GitHub and must be skipped"),
        "an offline stub ran:\n{log}"
    );
    assert!(!log.contains("Main Free disk space"), "{log}");
    assert!(
        !log.contains("[pi-image release/publish]"),
        "the publish job ran:\n{log}"
    );
    // The binary was the development build, found on PATH by the action's install step.
    assert!(
        log.contains(&format!(
            "pi-image install: using pi-image {} from {}",
            version(),
            env!("CARGO_BIN_EXE_pi-image")
        )),
        "{log}"
    );
    // Each step ran, in order, through the action.
    let order = [
        "pi-image action: run-pi-gen --dry-run",
        "pi-image action: prepare-mirrors",
        "pi-image action: run-pi-gen\n",
        "pi-image action: collect-artifacts",
        "pi-image action: smoke",
        "pi-image action: manifest",
        "pi-image action: release --dry-run",
    ];
    let mut at = 0;
    for step in order {
        let Some(i) = log[at..].find(step) else {
            panic!("`{step}` did not run (after byte {at}):\n{log}")
        };
        at += i + step.len();
    }
    assert!(
        !log.contains("--install-deps"),
        "dry run installs nothing on the host"
    );
    // pi-gen really built (native, arm64 chroot), and the outputs are all there.
    assert!(log.contains("output strategy: native"), "{log}");
    for f in [
        "sugarkube.img.xz",
        "sugarkube.img.xz.sha256",
        "sugarkube.img.xz.metadata.json",
        "sugarkube.img.xz.manifest.json",
        "sugarkube.intoto.json",
        "RELEASE_NOTES.md",
        "smoke/serial.log",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    sh("sha256sum", &["-c", "sugarkube.img.xz.sha256"], &out_dir);
    let manifest: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(out_dir.join("sugarkube.img.xz.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["release"]["channel"], "nightly",
        "from act/workflow-dispatch.json"
    );
    assert_eq!(manifest["smoke"]["status"], "pass");
    // The image smoke booted is the one pi-gen built: its login prompt, on raspi3b.
    let serial = fs::read_to_string(out_dir.join("smoke/serial.log")).unwrap();
    assert!(serial.contains("raspberrypi login:"), "{serial}");
    assert_eq!(manifest["source"]["repository"], "sugarkube/pi-image-demo");
    // bookworm: run-pi-gen's own cloud-init sub-stage (the test pi-gen, like pi-gen's
    // bookworm branch, has no stage2/04-cloud-init).
    let seed =
        fs::read_to_string(pi_gen.join("stage2/91-pi-image-cloud-init/files/user-data")).unwrap();
    assert_eq!(
        seed,
        fs::read_to_string(repo_root().join("cloud-init/user-data.yaml")).unwrap(),
        "the default seed went into the image"
    );
    assert!(log.contains("dry run: nothing was written"), "{log}");
    assert!(
        log.contains(&format!(
            "::set-output:: tag={}",
            manifest["release"]["tag"].as_str().unwrap()
        )),
        "{log}"
    );
}

/// release.yml publishes the binaries with `release --no-manifest`: the plan, in a dry run.
#[test]
fn release_without_a_manifest_plans_plain_assets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("dist")).unwrap();
    for f in [
        "pi-image-v0.1.0-x86_64-unknown-linux-gnu.tar.gz",
        "SHA256SUMS",
    ] {
        fs::write(dir.join("dist").join(f), f).unwrap();
    }
    fs::write(dir.join("dist/RELEASE_NOTES.md"), "pi-image v0.1.0\n").unwrap();
    let base = [
        "release",
        "--no-manifest",
        "--tag",
        "v0.1.0",
        "--notes",
        "dist/RELEASE_NOTES.md",
    ];
    let (code, stdout, stderr) = run(crate::support::pi_image(dir).args(base).args([
        "--assets",
        "dist/*.tar.gz",
        "--assets",
        "dist/SHA256SUMS",
        "--repository",
        "o/r",
    ]));
    let log = format!("{stdout}{stderr}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("create release v0.1.0"), "{log}");
    assert!(
        log.contains("upload   pi-image-v0.1.0-x86_64-unknown-linux-gnu.tar.gz")
            && log.contains("upload   SHA256SUMS"),
        "{log}"
    );
    assert!(log.contains("dry run: nothing was written"), "{log}");
    // Without files, or with a manifest too: usage errors.
    let (code, _, err) = run(crate::support::pi_image(dir)
        .args(base)
        .args(["--repository", "o/r"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pass --assets GLOB"), "{err}");
    let (code, _, err) = run(crate::support::pi_image(dir)
        .args(base)
        .args(["--manifest", "m.json"]));
    assert_eq!(code, 2, "{err}");
}
