//! The GitHub Action (`action.yml`, `action/*.sh`), the workflows and templates, the
//! cloud-init seed and the local `act` dry run: real actionlint, check-jsonschema,
//! cloud-init, shellcheck and act (host mode, no Docker), the real binary.

use std::collections::BTreeMap;
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
    let mut actions = action_files();
    actions.push(root.join("act/offline/unavailable/action.yml"));
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

/// Every action: the root one and one per subcommand.
fn action_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("action.yml")];
    for step in pi_image::action::STEPS {
        files.push(root.join(step).join("action.yml"));
    }
    files
}

fn env_name(input: &str) -> String {
    format!("INPUT_{}", input.replace('-', "_").to_uppercase())
}

/// The generated files are what `pi-image action generate` makes of today's flags and
/// outputs; and the check does see a stale file.
#[test]
fn the_generated_actions_and_readme_tables_are_up_to_date() {
    let bin = env!("CARGO_BIN_EXE_pi-image");
    let (code, out, err) = run(Command::new(bin)
        .args(["action", "generate", "--check", "--root"])
        .arg(repo_root()));
    assert_eq!(code, 0, "{out}{err}");

    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path();
    fs::copy(repo_root().join("README.md"), copy.join("README.md")).unwrap();
    let (code, ..) = run(Command::new(bin)
        .args(["action", "generate", "--root"])
        .arg(copy));
    assert_eq!(code, 0);
    for f in action_files() {
        let rel = f.strip_prefix(repo_root()).unwrap();
        assert_eq!(
            fs::read_to_string(copy.join(rel)).unwrap(),
            fs::read_to_string(&f).unwrap()
        );
    }
    let smoke = copy.join("smoke/action.yml");
    let text = fs::read_to_string(&smoke).unwrap();
    fs::write(&smoke, text.replace("  marker:\n", "  markers:\n")).unwrap();
    let (code, out, err) = run(Command::new(bin)
        .args(["action", "generate", "--check", "--root"])
        .arg(copy));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("stale: smoke/action.yml (run `cargo run -- action generate`"),
        "{err}"
    );
}

/// In every action each input reaches the run step as its INPUT_* variable (never in a
/// script), and each output is the run step's output of the same name.
#[test]
fn every_action_maps_each_input_to_its_variable_and_forwards_each_output() {
    for file in action_files() {
        let action = yaml(&file);
        let steps = action["runs"]["steps"].as_sequence().unwrap();
        let run_step = steps.iter().find(|s| s["id"] == "run").unwrap();
        let env = run_step["env"].as_mapping().unwrap();
        let inputs = action["inputs"].as_mapping().unwrap();
        assert!(inputs.len() > 3, "{}", file.display());
        for name in inputs.keys().map(|k| k.as_str().unwrap()) {
            if name == "install" {
                continue;
            }
            let var = env_name(name);
            assert_eq!(
                env.get(var.as_str()).and_then(|v| v.as_str()),
                Some(format!("${{{{ inputs.{name} }}}}").as_str()),
                "{}: {var} must map inputs.{name}",
                file.display()
            );
        }
        for (k, v) in action["outputs"].as_mapping().unwrap() {
            let (k, v) = (k.as_str().unwrap(), v["value"].as_str().unwrap());
            if !k.starts_with("pi-image") {
                assert_eq!(
                    v,
                    format!("${{{{ steps.run.outputs.{k} }}}}"),
                    "{}",
                    file.display()
                );
            }
        }
    }
}

/// `pi-image --print-plan action run` shows what the run step becomes, from INPUT_*
/// variables as the runner passes them (every declared input present, most empty).
fn action_plan(
    file: &str,
    sub: Option<&str>,
    set: &[(&str, &str)],
    dir: &Path,
) -> (i32, serde_json::Value, String) {
    let action = yaml(&repo_root().join(file));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pi-image"));
    cmd.args(["--print-plan", "action", "run"]).current_dir(dir);
    if let Some(sub) = sub {
        cmd.arg(sub);
    }
    cmd.arg("--action-path").arg(repo_root());
    for v in ["IMG_NAME", "OUTPUT_DIR", "USER_DATA", "GITHUB_ACTIONS"] {
        cmd.env_remove(v);
    }
    for name in action["inputs"].as_mapping().unwrap().keys() {
        cmd.env(env_name(name.as_str().unwrap()), "");
    }
    for (k, v) in set {
        cmd.env(env_name(k), v);
    }
    let (code, out, err) = run(&mut cmd);
    let plan = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, plan, format!("{out}{err}"))
}

#[test]
fn a_step_action_turns_its_inputs_into_the_flags_of_the_same_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("cloud-init")).unwrap();
    fs::write(dir.join("cloud-init/user-data.yaml"), "#cloud-config\n").unwrap();
    let (code, plan, log) = action_plan(
        "run-pi-gen/action.yml",
        Some("run-pi-gen"),
        &[
            ("img-name", "kube; rm -rf / #"),
            ("pi-gen-stages", "stage0 stage1"),
            (
                "setting",
                "FIRST_USER_NAME=pi\n\n  \nLOCALE_DEFAULT=en_GB.UTF-8\r\n",
            ),
            ("install-deps", "true"),
            ("continue", "false"),
            ("args", "--hostname\nsk 1"),
        ],
        dir,
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        plan["args"],
        serde_json::json!([
            "--img-name=kube; rm -rf / #",
            "--pi-gen-stages=stage0 stage1",
            "--setting=FIRST_USER_NAME=pi",
            "--setting=LOCALE_DEFAULT=en_GB.UTF-8",
            "--install-deps",
            "--hostname",
            "sk 1"
        ]),
        "{log}"
    );
    assert_eq!(
        plan["env"],
        serde_json::json!([]),
        "own seed in the workspace: {log}"
    );

    // Secrets are variables, never arguments, never shown.
    let (code, plan, log) = action_plan(
        "release/action.yml",
        Some("release"),
        &[
            ("token", "ghs_secret"),
            ("publish", "TRUE"),
            ("assets", "dist/*.sigstore.json"),
        ],
        dir,
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        plan["args"],
        serde_json::json!(["--publish", "--assets=dist/*.sigstore.json"])
    );
    assert!(!log.contains("ghs_secret"), "{log}");

    // Positionals after `--`, so a file named like a flag stays a file.
    let (_, plan, log) = action_plan(
        "sign/action.yml",
        Some("sign"),
        &[("file", "a.img.xz\n--not-a-flag\n")],
        dir,
    );
    assert_eq!(
        plan["args"],
        serde_json::json!(["--", "a.img.xz", "--not-a-flag"]),
        "{log}"
    );

    // Without a seed in the workspace, run-pi-gen gets the action's default seed.
    fs::remove_dir_all(dir.join("cloud-init")).unwrap();
    let (_, plan, log) = action_plan("run-pi-gen/action.yml", Some("run-pi-gen"), &[], dir);
    let seed = repo_root().join("cloud-init/user-data.yaml");
    assert_eq!(
        plan["env"],
        serde_json::json!([["USER_DATA", seed.display().to_string()]]),
        "{log}"
    );
    let (_, plan, _) = action_plan(
        "run-pi-gen/action.yml",
        Some("run-pi-gen"),
        &[("no-user-data", "true")],
        dir,
    );
    assert_eq!(plan["env"], serde_json::json!([]));
    assert_eq!(plan["args"], serde_json::json!(["--no-user-data"]));
}

/// The root action: `command` picks the step; an input the step does not use and an
/// old input name are both named in a warning; bad values are usage errors.
#[test]
fn the_root_action_reports_misplaced_and_renamed_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (code, plan, log) = action_plan(
        "action.yml",
        None,
        &[
            ("command", "collect-artifacts"),
            ("marker", "login:"),
            ("token", "ghs_x"),
            ("xz-preset", "9"),
        ],
        dir,
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(plan["args"], serde_json::json!(["--xz-preset=9"]));
    // A token given to a step without one is named (its value never is); the default
    // token (PI_IMAGE_DEFAULT_TOKEN, below) is not an input and never reported.
    assert_eq!(
        plan["warnings"],
        serde_json::json!([
            "input `marker` is not used by `collect-artifacts` (only by: smoke); ignored",
            "input `token` is not used by `collect-artifacts` (only by: release, pipeline); ignored"
        ]),
        "{log}"
    );
    assert!(!log.contains("ghs_x"), "{log}");
    let (_, plan, _) = action_plan(
        "action.yml",
        None,
        &[("command", "smoke"), ("markers", "ok")],
        dir,
    );
    assert_eq!(plan["args"], serde_json::json!(["--marker=ok"]));
    assert_eq!(
        plan["warnings"],
        serde_json::json!(["input `markers` is deprecated: name it `marker`"])
    );
    for (set, msg) in [
        (vec![], "the `command` input is required"),
        (vec![("command", "rm")], "unknown command rm"),
        (
            vec![("command", "release"), ("draft", "yes")],
            "input `draft` must be true or false, not yes",
        ),
    ] {
        let (code, _, log) = action_plan("action.yml", None, &set, dir);
        assert_eq!(code, 2, "{log}");
        assert!(log.contains(msg), "{log}");
    }
}

/// The real run step, every input empty: it becomes `pi-image doctor` with the binary's
/// defaults, and every output it publishes is one doctor's action declares.
#[test]
fn empty_inputs_keep_the_binary_defaults_and_every_output_is_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("gh-output");
    let action = yaml(&repo_root().join("doctor/action.yml"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pi-image"));
    cmd.args(["action", "run", "doctor"])
        .current_dir(dir)
        .env("GITHUB_OUTPUT", &out)
        .env("REQUIRED_SPACE_GB", "");
    for name in action["inputs"].as_mapping().unwrap().keys() {
        cmd.env(env_name(name.as_str().unwrap()), "");
    }
    let (code, stdout, stderr) = run(&mut cmd);
    // doctor exits 0 or 1 (something missing) but never 2 (bad usage).
    assert!(code == 0 || code == 1, "{code}: {stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("pi-image action: doctor\n"),
        "{stdout}{stderr}"
    );
    let outputs = read_outputs(&out);
    assert!(outputs.contains_key("missing"), "{outputs:?}");
    let declared = action["outputs"].as_mapping().unwrap();
    for k in outputs.keys() {
        assert!(
            declared.contains_key(k.as_str()),
            "doctor publishes `{k}`, its action does not declare it"
        );
    }
    assert!(
        stdout.contains("30 GB") || stderr.contains("30 GB"),
        "default min-free-gb: {stdout}{stderr}"
    );
}

/// A git repository (actionlint reads local actions only inside one, else it checks
/// nothing) holding a copy of every step action, as `./<step>`, and `.github/workflows/`.
fn user_repo_with_step_actions(repo: &Path) {
    sh("git", &["init", "-q", "."], repo);
    for step in pi_image::action::STEPS {
        fs::create_dir_all(repo.join(step)).unwrap();
        fs::copy(
            repo_root().join(step).join("action.yml"),
            repo.join(step).join("action.yml"),
        )
        .unwrap();
    }
    fs::create_dir_all(repo.join(".github/workflows")).unwrap();
}

/// A per-step action declares only its own inputs, so an input given to the wrong step
/// is found before anything runs: actionlint reports it (as the runner warns).
#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn an_input_given_to_the_wrong_step_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    user_repo_with_step_actions(repo);
    let wf = repo.join(".github/workflows/w.yml");
    let workflow = |with: &str| {
        format!(
            "on: push\njobs:\n  b:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./collect-artifacts\n        with:\n{with}"
        )
    };
    let lint = || {
        let out = Command::new(tool("actionlint"))
            .args(["-no-color", ".github/workflows/w.yml"])
            .current_dir(repo)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    fs::write(
        &wf,
        workflow("          xz-preset: 9\n          img-name: pi\n"),
    )
    .unwrap();
    let (ok, log) = lint();
    assert!(ok, "{log}");
    fs::write(
        &wf,
        workflow("          xz-preset: 9\n          marker: 'login:'\n"),
    )
    .unwrap();
    let (ok, log) = lint();
    assert!(
        !ok && log.contains("input \"marker\" is not defined in action"),
        "{log}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn scripts_pass_shellcheck() {
    for f in ["action/install.sh", "act/dry-run.sh"] {
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
            // This action: its root or one of its steps, locally or at the floating tag.
            let own = pi_image::action::STEPS.iter().any(|step| {
                target == format!("./{step}")
                    || target == format!("sugarkube/pi-image-action/{step}@v1")
            });
            if own || target == "./" || target == "sugarkube/pi-image-action@v1" {
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

/// A copy of the action's tree for install.sh: its Cargo files, source and script, and
/// (for a release) `action/release-digests.txt`.
fn action_tree(dir: &Path, digests: Option<&str>) -> PathBuf {
    let tree = dir.join("action-tree");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("action")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock"] {
        fs::copy(repo_root().join(f), tree.join(f)).unwrap();
    }
    sh(
        "cp",
        &[
            "-r",
            repo_root().join("src").to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
        dir,
    );
    fs::copy(
        repo_root().join("action/install.sh"),
        tree.join("action/install.sh"),
    )
    .unwrap();
    if let Some(d) = digests {
        fs::write(tree.join("action/release-digests.txt"), d).unwrap();
    }
    tree
}

/// Runs install.sh of `tree` as a fresh runner would. `os` fakes `uname` (e.g.
/// `("Darwin", "arm64")`); `path_dir` goes first on PATH.
fn install(
    dir: &Path,
    tree: &Path,
    path_dir: Option<&Path>,
    server: &Server,
    mode: &str,
    os: Option<(&str, &str)>,
) -> (i32, String, BTreeMap<String, String>, f64) {
    let out = dir.join("gh-output");
    let _ = fs::remove_file(&out);
    let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
    if let Some(p) = path_dir {
        path = format!("{}:{path}", p.display());
    }
    if let Some((s, m)) = os {
        let shim = dir.join("uname-shim");
        fs::create_dir_all(&shim).unwrap();
        fs::write(
            shim.join("uname"),
            format!("#!/bin/sh\ncase $1 in -s) echo {s} ;; -m) echo {m} ;; *) exec /bin/uname \"$@\" ;; esac\n"),
        )
        .unwrap();
        sh("chmod", &["+x", shim.join("uname").to_str().unwrap()], dir);
        path = format!("{}:{path}", shim.display());
    }
    let started = Instant::now();
    let (code, stdout, stderr) = run(Command::new("bash")
        .arg(tree.join("action/install.sh"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("GITHUB_ACTION_PATH", tree.join("smoke"))
        .env("ACTION_REPOSITORY", "sugarkube/pi-image-action")
        .env("ACTION_REF", "v1")
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

fn host_target() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-gnu",
        "aarch64" => "aarch64-unknown-linux-gnu",
        a => panic!("no release target for {a}"),
    }
}

/// A release of `version` for `target` (the archive holds this build's binary, which
/// runs here whatever the target is called): the files the server serves, and the
/// `release-digests.txt` line the release workflow would commit for it.
fn fake_release(
    dir: &Path,
    version: &str,
    target: &str,
    tamper: bool,
) -> (BTreeMap<String, Vec<u8>>, String) {
    let stage = dir.join("stage");
    fs::create_dir_all(&stage).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_pi-image"), stage.join("pi-image")).unwrap();
    let asset = format!("pi-image-v{version}-{target}.tar.gz");
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
    // As release.yml's pin job writes it: each archive, and the binary inside.
    let digests = format!(
        "{}  {asset}\n{}  pi-image-v{version}-{target}/pi-image\n",
        crate::support::hex_sha256(&tarball),
        crate::support::hex_sha256(&fs::read(stage.join("pi-image")).unwrap())
    );
    if tamper {
        let n = tarball.len();
        tarball[n / 2] ^= 0xff;
    }
    let base = format!("/sugarkube/pi-image-action/releases/download/v{version}");
    (
        BTreeMap::from([(format!("{base}/{asset}"), tarball)]),
        digests,
    )
}

#[test]
fn install_checks_a_release_binary_against_the_digests_in_the_action_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v = version();
    let (files, digests) = fake_release(dir, &v, host_target(), false);
    let server = serve(files);
    let tree = action_tree(dir, Some(&digests));

    // A matching binary on PATH: used, nothing downloaded.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pi-image")).parent().unwrap();
    let (code, log, out, _) = install(dir, &tree, Some(bin_dir), &server, "auto", None);
    assert_eq!(code, 0, "{log}");
    assert_eq!(out["source"], "path", "{log}");
    assert_eq!(out["bin"], env!("CARGO_BIN_EXE_pi-image"));
    assert!(server.hits.lock().unwrap().is_empty());
    assert!(
        !dir.join("gh-path").exists(),
        "PATH's own directory is not re-added"
    );
    // Another build of the same version on PATH is not the released binary: ignored.
    let dev = dir.join("dev-bin");
    fs::create_dir_all(&dev).unwrap();
    let mut other = fs::read(env!("CARGO_BIN_EXE_pi-image")).unwrap();
    other.push(0);
    fs::write(dev.join("pi-image"), other).unwrap();
    sh(
        "chmod",
        &["+x", dev.join("pi-image").to_str().unwrap()],
        dir,
    );
    let (code, log, out, _) = install(dir, &tree, Some(&dev), &server, "auto", None);
    assert_eq!((code, out["source"].as_str()), (0, "download"), "{log}");
    assert!(log.contains("is not the binary of release"), "{log}");
    fs::remove_dir_all(dir.join("toolcache")).unwrap();
    fs::remove_file(dir.join("gh-path")).unwrap();
    server.hits.lock().unwrap().clear();

    // A fresh runner (another version on PATH, no verifier anywhere): the release
    // binary is downloaded and checked against the committed digest.
    let old = dir.join("old-bin");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("pi-image"), "#!/bin/sh\necho 'pi-image 0.0.1'\n").unwrap();
    sh(
        "chmod",
        &["+x", old.join("pi-image").to_str().unwrap()],
        dir,
    );
    let (code, log, out, secs) = install(dir, &tree, Some(&old), &server, "auto", None);
    assert_eq!(code, 0, "{log}");
    assert_eq!(out["source"], "download", "{log}");
    assert!(
        log.contains("ignoring") && log.contains("is not the binary of release"),
        "{log}"
    );
    assert!(
        log.contains("SHA-256 verified against action/release-digests.txt"),
        "{log}"
    );
    let installed = dir.join(format!(
        "toolcache/pi-image/{v}/{}/bin/pi-image",
        host_target()
    ));
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
    // The next step of the job finds it in the tool cache: no second download.
    let hits = server.hits.lock().unwrap().len();
    let (code, log, out, _) = install(dir, &tree, None, &server, "auto", None);
    assert_eq!((code, out["source"].as_str()), (0, "cache"), "{log}");
    assert_eq!(server.hits.lock().unwrap().len(), hits);
    // A binary planted in the tool cache (a self-hosted runner's outlives the job) that
    // says the right version is not run: the cache is re-checked against the digests.
    fs::write(
        &installed,
        format!("#!/bin/sh\necho 'pi-image {v}'\ntouch \"$HOME/planted-ran\"\n"),
    )
    .unwrap();
    let (code, log, out, _) = install(dir, &tree, None, &server, "auto", None);
    assert_eq!((code, out["source"].as_str()), (0, "download"), "{log}");
    assert!(!dir.join("planted-ran").exists(), "{log}");
    assert_eq!(
        fs::read(&installed).unwrap(),
        fs::read(env!("CARGO_BIN_EXE_pi-image")).unwrap()
    );

    // A tampered binary is refused, and nothing is installed.
    let tmp2 = tempfile::tempdir().unwrap();
    let (files, digests) = fake_release(tmp2.path(), &v, host_target(), true);
    let server2 = serve(files);
    let tree2 = action_tree(tmp2.path(), Some(&digests));
    let (code, log, out, _) = install(tmp2.path(), &tree2, None, &server2, "auto", None);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("::error::pi-image install: SHA-256 mismatch"),
        "{log}"
    );
    assert!(
        out.is_empty()
            && !tmp2
                .path()
                .join("toolcache/pi-image")
                .join(&v)
                .join(host_target())
                .join("bin")
                .exists()
    );

    // A tampered digest list (a good binary, another digest committed): refused too.
    let tmp3 = tempfile::tempdir().unwrap();
    let (files, digests) = fake_release(tmp3.path(), &v, host_target(), false);
    let server3 = serve(files);
    let forged = format!("{}{}", "0".repeat(64), &digests[64..]);
    let tree3 = action_tree(tmp3.path(), Some(&forged));
    let (code, log, out, _) = install(tmp3.path(), &tree3, None, &server3, "auto", None);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("SHA-256 mismatch") && log.contains(&"0".repeat(64)),
        "{log}"
    );
    assert!(out.is_empty());
}

#[test]
fn install_picks_the_runners_target_on_arm64_and_macos() {
    let v = version();
    for (os, target) in [
        (("Linux", "aarch64"), "aarch64-unknown-linux-gnu"),
        (("Darwin", "arm64"), "aarch64-apple-darwin"),
        (("Darwin", "x86_64"), "x86_64-apple-darwin"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (files, digests) = fake_release(dir, &v, target, false);
        let server = serve(files);
        let tree = action_tree(dir, Some(&digests));
        let (code, log, out, _) = install(dir, &tree, None, &server, "auto", Some(os));
        assert_eq!(code, 0, "{os:?}: {log}");
        assert_eq!(out["source"], "download", "{log}");
        assert_eq!(
            *server.hits.lock().unwrap(),
            [format!(
                "/sugarkube/pi-image-action/releases/download/v{v}/pi-image-v{v}-{target}.tar.gz"
            )]
        );
    }
}

/// A ref that is not a release (no digests in its tree) never downloads anything: it
/// builds its own source, says so, and a second step reuses that build.
#[test]
fn install_builds_a_ref_that_is_not_a_release_from_its_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v = version();
    let (files, _) = fake_release(dir, &v, host_target(), false);
    let server = serve(files);
    let tree = action_tree(dir, None);

    // No cargo: a clear error naming the way out.
    let (code, log, _, _) = install(dir, &tree, None, &server, "auto", None);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("is not a release") && log.contains("no cargo to build it"),
        "{log}"
    );
    assert!(
        server.hits.lock().unwrap().is_empty(),
        "it downloaded a binary of another source"
    );

    // With cargo (a stand-in that installs this build, as `cargo install --root` would:
    // the real build runs in ci.yml's `action` job): built once, then reused.
    let cargo_dir = dir.join("cargo-bin");
    fs::create_dir_all(&cargo_dir).unwrap();
    fs::write(
        cargo_dir.join("cargo"),
        format!(
            "#!/bin/bash\nprintf '%s\\n' \"$@\" >> \"$HOME/cargo-args\"\nwhile [[ $# -gt 0 ]]; do [[ $1 == --root ]] && root=$2; shift; done\nmkdir -p \"$root/bin\" && cp {} \"$root/bin/pi-image\"\n",
            env!("CARGO_BIN_EXE_pi-image")
        ),
    )
    .unwrap();
    sh(
        "chmod",
        &["+x", cargo_dir.join("cargo").to_str().unwrap()],
        dir,
    );
    let (code, log, out, _) = install(dir, &tree, Some(&cargo_dir), &server, "auto", None);
    assert_eq!((code, out["source"].as_str()), (0, "cargo"), "{log}");
    let args = fs::read_to_string(dir.join("cargo-args")).unwrap();
    assert!(args.starts_with("install\n--locked\n"), "{args}");
    assert!(
        args.contains(&format!("--path\n{}\n", tree.display())),
        "{args}"
    );
    let (code, log, out, _) = install(dir, &tree, Some(&cargo_dir), &server, "auto", None);
    assert_eq!((code, out["source"].as_str()), (0, "cache"), "{log}");
    assert_eq!(
        fs::read_to_string(dir.join("cargo-args")).unwrap(),
        args,
        "built twice"
    );
    // Another source is another build.
    fs::write(tree.join("src/extra.rs"), "// changed\n").unwrap();
    let (_, _, out, _) = install(dir, &tree, Some(&cargo_dir), &server, "auto", None);
    assert_eq!(out["source"], "cargo");
    assert!(server.hits.lock().unwrap().is_empty());

    // install: source builds even a release.
    let tmp2 = tempfile::tempdir().unwrap();
    let (files, digests) = fake_release(tmp2.path(), &v, host_target(), false);
    let server2 = serve(files);
    let tree2 = action_tree(tmp2.path(), Some(&digests));
    let (code, log, _, _) = install(tmp2.path(), &tree2, None, &server2, "source", None);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("input `install` is source"), "{log}");
    assert!(server2.hits.lock().unwrap().is_empty());
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
fn act_dry_runs_the_release_template_from_a_users_repository_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // A user's own repository: its remote, and a copy of each template where the README
    // says to put it. Nothing of pi-image-action is in it.
    let repo = root.join("pi-os");
    fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    for t in ["pi-image-release.yml", "pi-image-build.yml"] {
        fs::copy(
            repo_root().join("templates").join(t),
            repo.join(".github/workflows").join(t),
        )
        .unwrap();
    }
    fs::write(repo.join("README.md"), "My Pi OS\n").unwrap();
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
            "my image",
        ],
        &["remote", "add", "origin", "git@github.com:alice/pi-os.git"],
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
    // Only act is added to PATH: the script finds this checkout's build itself (unless
    // the build lives elsewhere, CARGO_TARGET_DIR).
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pi-image")).parent().unwrap();
    let act_dir = tool("act").parent().unwrap().to_owned();
    let mut path = format!(
        "{}:{}:/usr/sbin:/sbin",
        act_dir.display(),
        std::env::var("PATH").unwrap()
    );
    if bin_dir != repo_root().join("target/debug") {
        path = format!("{}:{path}", bin_dir.display());
    }
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
    // The README's command, from the user's repository.
    cmd.arg(repo_root().join("act/dry-run.sh"))
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
        "pi-image action: run-pi-gen --strategy=native --dry-run\n",
        "pi-image action: prepare-mirrors",
        "pi-image action: run-pi-gen --strategy=native --build-timeout=7200 ",
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
        "from the event act/dry-run.sh writes"
    );
    assert_eq!(manifest["smoke"]["status"], "pass");
    // The image smoke booted is the one pi-gen built: its login prompt, on raspi3b.
    let serial = fs::read_to_string(out_dir.join("smoke/serial.log")).unwrap();
    assert!(serial.contains("raspberrypi login:"), "{serial}");
    // Named after the user's remote, never act's default (nektos/act).
    assert_eq!(manifest["source"]["repository"], "alice/pi-os");
    assert!(
        log.contains("dry-run: .github/workflows/pi-image-release.yml of alice/pi-os with act"),
        "{log}"
    );
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

/// The README opens with a complete release workflow: under 40 lines, valid for the
/// workflow schema and actionlint, and every input it gives a step is one that step's
/// action declares (checked with the step actions as local actions).
#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn the_readme_release_workflow_is_short_valid_and_uses_declared_inputs() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```yaml\nname: Pi image\n")
        .expect("the README's workflow")
        + 8;
    let end = start + readme[start..].find("```\n").unwrap();
    let workflow = &readme[start..end];
    assert!(
        workflow.lines().count() < 40,
        "{} lines",
        workflow.lines().count()
    );
    assert!(workflow.contains("publish: true") && workflow.contains("id-token: write"));

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    user_repo_with_step_actions(repo);
    let local = regex::Regex::new(r"sugarkube/pi-image-action/([a-z-]+)@v1").unwrap();
    let wf = repo.join(".github/workflows/pi-image.yml");
    fs::write(&wf, local.replace_all(workflow, "./$1").as_ref()).unwrap();
    let (code, log) = crate::support::run_merged(
        Command::new(crate::support::check_jsonschema())
            .args(["--builtin-schema", "vendor.github-workflows"])
            .arg(&wf),
    );
    assert_eq!(code, 0, "{log}");
    let out = Command::new(tool("actionlint"))
        .args(["-no-color", ".github/workflows/pi-image.yml"])
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // …and it does check the inputs against the step actions.
    fs::write(
        &wf,
        local
            .replace_all(
                &workflow.replace(
                    "install-deps: true",
                    "install-deps: true\n          marker: x",
                ),
                "./$1",
            )
            .as_ref(),
    )
    .unwrap();
    let out = Command::new(tool("actionlint"))
        .args(["-no-color", ".github/workflows/pi-image.yml"])
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("input \"marker\" is not defined"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// act/dry-run.sh refuses what would make a wrong run: no repository, no workflow, no
/// `origin` (act would name the repository nektos/act), an origin it cannot read.
#[test]
#[ignore = "tier venv: needs check-jsonschema, actionlint or act from .venv (scripts/test.sh installs them)"]
fn the_act_dry_run_refuses_a_repository_it_cannot_name() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("r");
    fs::create_dir_all(&repo).unwrap();
    let path = format!(
        "{}:{}",
        tool("act").parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let dry_run = |dir: &Path| {
        crate::support::run_merged(
            Command::new("bash")
                .arg(repo_root().join("act/dry-run.sh"))
                .current_dir(dir)
                .env("PATH", &path),
        )
    };
    let (code, log) = dry_run(&repo);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("is not in one"), "{log}");
    sh("git", &["init", "-q"], &repo);
    let (code, log) = dry_run(&repo);
    assert!(
        code == 2 && log.contains("no .github/workflows/pi-image-release.yml"),
        "{log}"
    );
    fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    fs::copy(
        repo_root().join("templates/pi-image-release.yml"),
        repo.join(".github/workflows/pi-image-release.yml"),
    )
    .unwrap();
    let (code, log) = dry_run(&repo);
    assert!(
        code == 2 && log.contains("has no remote named origin"),
        "{log}"
    );
    sh(
        "git",
        &["remote", "add", "origin", "https://example.com/x\"},{\"a"],
        &repo,
    );
    let (code, log) = dry_run(&repo);
    assert!(code == 2 && log.contains("cannot read OWNER/NAME"), "{log}");
}
