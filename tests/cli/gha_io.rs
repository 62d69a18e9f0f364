//! The Actions protocol as the binary speaks it: outputs, summary, groups, annotations,
//! exit codes, and empty inputs treated as unset.

use std::fs;

use crate::support::{Workspace, pi_image, read_outputs, run};

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn in_actions_logs_use_workflow_commands() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    let summary = ws.root().join("summary.md");
    let output = ws.root().join("output");
    let (code, stdout, _) = run(ws
        .collect()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &output));
    assert_eq!(code, 0, "{stdout}");
    let group = stdout
        .lines()
        .position(|l| l.starts_with("::group::collect-artifacts: x.img"));
    let end = stdout.lines().position(|l| l == "::endgroup::");
    assert!(
        matches!((group, end), (Some(g), Some(e)) if g < e),
        "{stdout}"
    );
    // No build.log: a warning annotation, not a failure.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("::warning::no pi-gen build.log found")),
        "{stdout}"
    );
    let md = fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("### collect-artifacts") && md.contains("| `sugarkube.img.xz` |"),
        "{md}"
    );
    assert_eq!(read_outputs(&output).len(), 13);
}

#[test]
fn failures_become_error_annotations_with_exit_1() {
    let ws = Workspace::new();
    let (code, stdout, _) = run(ws.collect().env("GITHUB_ACTIONS", "true"));
    assert_eq!(code, 1);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .expect("error annotation");
    // Multi-line messages are escaped onto one command line.
    assert!(
        line.contains("no image found under `deploy`") && !line.contains('\n'),
        "{line}"
    );
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn outside_actions_output_is_plain() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    let (code, stdout, stderr) = run(&mut ws.collect());
    assert_eq!(code, 0);
    assert_eq!(stdout, "", "stdout is reserved for machine output");
    assert!(!stderr.contains("::"), "{stderr}");
    assert!(stderr.contains("output sha256: "), "{stderr}");
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn empty_env_values_count_as_unset() {
    let ws = Workspace::new();
    ws.put_img("x.img");
    let (code, _, err) = run(ws
        .collect()
        .env("IMG_NAME", "")
        .env("XZ_PRESET", "")
        .env("XZ_THREADS", "")
        .env("DEPLOY_DIR", ""));
    assert_eq!(code, 0, "{err}");
    assert!(ws.out().join("sugarkube.img.xz").exists());
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let ws = Workspace::new();
    assert_eq!(run(pi_image(ws.root()).arg("no-such-command")).0, 2);
    assert_eq!(
        run(pi_image(ws.root()).args(["collect-artifacts", "--bogus"])).0,
        2
    );
    let (code, stdout, _) = run(pi_image(ws.root()).arg("--help"));
    assert_eq!(code, 0);
    assert!(stdout.contains("collect-artifacts") && stdout.contains("manifest"));
}
