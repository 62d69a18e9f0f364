//! Output whose shape users depend on, pinned with insta: `--help` texts and the
//! release notes layout (digests and sizes, which depend on the image, are redacted).

use std::fs;

use crate::support::{Workspace, pi_image, run};

#[test]
fn help_texts() {
    let ws = Workspace::new();
    for sub in ["collect-artifacts", "manifest"] {
        let (code, stdout, _) = run(pi_image(ws.root())
            .args([sub, "--help"])
            .env("COLUMNS", "100"));
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("help-{sub}"), stdout);
    }
}

#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn release_notes_layout() {
    let ws = Workspace::new();
    ws.put_zip(
        "image_2026-11-25-sugarkube-lite.zip",
        "2026-11-25-sugarkube-lite.img",
    );
    fs::create_dir_all(ws.root().join("work/sugarkube")).unwrap();
    fs::write(
        ws.root().join("work/sugarkube/build.log"),
        "[10:00:00] Begin /pi-gen\n[10:00:00] Begin /pi-gen/stage0\n[10:00:00] Begin /pi-gen/stage0/00-configure-apt\n\
         [10:00:30] End /pi-gen/stage0/00-configure-apt\n[10:01:00] End /pi-gen/stage0\n[10:01:00] Begin /pi-gen/stage1\n\
         [10:03:00] End /pi-gen/stage1\n[10:03:00] Begin /pi-gen/export-image\n",
    )
    .unwrap();
    assert_eq!(run(&mut ws.collect()).0, 0);
    let (code, _, err) = run(pi_image(ws.root())
        .args([
            "manifest",
            "--output-dir",
            "out",
            "--build-start",
            "1764151200",
            "--build-end",
            "1764151500",
        ])
        .args([
            "--channel",
            "nightly",
            "--repository",
            "sugarkube/demo",
            "--commit",
            "0123456789abcdef0123456789abcdef01234567",
        ])
        .args([
            "--ref",
            "refs/heads/main",
            "--pi-gen-commit",
            "fedcba9876543210fedcba9876543210fedcba98",
        ])
        .env("SOURCE_DATE_EPOCH", "1764151500"));
    assert_eq!(code, 0, "{err}");
    let notes = fs::read_to_string(ws.out().join("RELEASE_NOTES.md")).unwrap();
    insta::with_settings!({filters => vec![
        (r"`[0-9a-f]{64}`", "`[sha256]`"),
        (r"\| [\d.]+ (B|KiB|MiB) \|", "| [size] |"),
        (r"is \d+ bytes", "is [n] bytes"),
        (r"head -c \d+", "head -c [n]"),
    ]}, {
        insta::assert_snapshot!("release-notes", notes);
    });
}

/// `--print-plan`: each step's decision as JSON, nothing changed. Paths under the
/// workspace are shown as `[ws]`.
#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn plans_as_printed() {
    let ws = Workspace::new();
    ws.put_img("image_2026-11-25-sugarkube-lite.img");
    ws.put_zip(
        "image_2026-11-20-sugarkube-lite.zip",
        "2026-11-20-sugarkube-lite.img",
    );
    let root = ws.root().display().to_string();
    let before = Workspace::files(ws.root());
    let mut collect = ws.collect();
    collect.arg("--print-plan");
    let (code, plan, err) = run(&mut collect);
    assert_eq!(code, 0, "{err}");
    // Sizes depend on how the test images are built, not on the plan's shape.
    let sizes = regex::Regex::new(r#""size": \d+"#).unwrap();
    insta::assert_snapshot!(
        "plan-collect-artifacts",
        sizes.replace_all(&plan.replace(&root, "[ws]"), r#""size": "[size]""#)
    );
    assert_eq!(
        Workspace::files(ws.root()),
        before,
        "--print-plan changed files"
    );

    let (code, plan, err) = run(pi_image(ws.root())
        .args([
            "--print-plan",
            "pipeline",
            "--output-dir",
            "out",
            "--skip",
            "run-pi-gen",
        ])
        .env_remove("SIGSTORE_ID_TOKEN")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("COSIGN_KEY"));
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("plan-pipeline", plan);
    assert_eq!(
        Workspace::files(ws.root()),
        before,
        "--print-plan changed files"
    );
}

/// `manifest --print-plan` prints the texts of the four files it writes (metadata,
/// in-toto statement, manifest, notes) and writes none; the real run then writes exactly
/// those texts, each digest in a later file matching an earlier file's bytes.
#[test]
#[ignore = "tier tools: needs mtools, dosfstools, e2fsprogs, zip, apt-utils, gpg, shellcheck or cloud-init (scripts/test.sh installs them)"]
fn the_printed_manifest_plan_is_what_manifest_writes() {
    let ws = Workspace::new();
    ws.put_zip(
        "image_2026-11-25-sugarkube-lite.zip",
        "2026-11-25-sugarkube-lite.img",
    );
    assert_eq!(run(&mut ws.collect()).0, 0);
    let manifest = |plan_only: bool| {
        let mut cmd = pi_image(ws.root());
        if plan_only {
            cmd.arg("--print-plan");
        }
        cmd.args(["manifest", "--output-dir", "out"])
            .args(["--build-start", "1764151200", "--build-end", "1764151500"])
            .args(["--repository", "sugarkube/demo"])
            .args(["--commit", "0123456789abcdef0123456789abcdef01234567"])
            .env("SOURCE_DATE_EPOCH", "1764151500");
        run(&mut cmd)
    };
    let before = Workspace::files(ws.root());
    let (code, printed, err) = manifest(true);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        Workspace::files(ws.root()),
        before,
        "--print-plan changed files"
    );
    let plan: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(plan["release"]["tag"], "v2025.11.26+g0123456");
    let writes = plan["writes"].as_array().unwrap();
    let names: Vec<&str> = writes
        .iter()
        .map(|w| w["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sugarkube.img.xz.metadata.json",
            "sugarkube.rpi-imager.json",
            "sugarkube.intoto.json",
            "SHA256SUMS",
            "sugarkube.img.xz.manifest.json",
            "RELEASE_NOTES.md"
        ]
    );
    let (code, _, err) = manifest(false);
    assert_eq!(code, 0, "{err}");
    for w in writes {
        let path = ws.root().join(w["path"].as_str().unwrap());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            w["text"].as_str().unwrap(),
            "{} differs from its plan",
            path.display()
        );
    }
    let written: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(ws.out().join("sugarkube.img.xz.manifest.json")).unwrap(),
    )
    .unwrap();
    for a in written["artifacts"].as_array().unwrap() {
        let bytes = fs::read(ws.out().join(a["name"].as_str().unwrap())).unwrap();
        assert_eq!(a["sha256"], crate::support::hex_sha256(&bytes), "{a}");
    }
}
