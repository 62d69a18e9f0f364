//! `pi-image verify` on the sigstore-conformance bundle-verify vectors: every case
//! through the real binary; `_fail` cases must be rejected (exit 1), the rest accepted.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{pi_image, run};

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The vendored Sigstore conformance cases (`tests/fixtures/third-party`).
fn conformance_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/third-party/sigstore-conformance/bundle-verify")
}

/// The public-good trust root, for cases without their own.
fn production_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/third-party/sigstore-python/trusted_root.production.json")
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

#[test]
fn verify_conformance_bundle_verify_cases() {
    let cases_dir = conformance_cases();
    let production_root = production_root();
    let mut cases: Vec<PathBuf> = fs::read_dir(&cases_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bundle.sigstore.json").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 39,
        "expected the conformance cases, found {}",
        cases.len()
    );
    let mut wrong = Vec::new();
    let (mut pass, mut fail) = (0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expect_fail = name.ends_with("_fail");
        let artifact = if case.join("artifact").is_file() {
            case.join("artifact")
        } else {
            cases_dir.join("a.txt")
        };
        let root = if case.join("trusted_root.json").is_file() {
            case.join("trusted_root.json")
        } else {
            production_root.clone()
        };
        let mut cmd = pi_image(case);
        cmd.arg("verify")
            .arg(&artifact)
            .arg("--bundle")
            .arg(case.join("bundle.sigstore.json"))
            .arg("--trusted-root")
            .arg(&root);
        if case.join("key.pub").is_file() {
            cmd.arg("--key").arg(case.join("key.pub"));
        } else {
            let identity =
                read_trimmed(&case.join("identity")).unwrap_or_else(|| DEFAULT_IDENTITY.into());
            let issuer =
                read_trimmed(&case.join("issuer")).unwrap_or_else(|| DEFAULT_ISSUER.into());
            cmd.args(["--certificate-identity", &identity])
                .args(["--certificate-oidc-issuer", &issuer]);
        }
        let (code, _out, err) = run(cmd);
        let ok = if expect_fail { code == 1 } else { code == 0 };
        if expect_fail {
            fail += 1;
        } else {
            pass += 1;
        }
        if !ok {
            let last = err.lines().rev().take(4).collect::<Vec<_>>().join(" / ");
            wrong.push(format!("{name}: exit {code}: {last}"));
        }
    }
    eprintln!(
        "conformance: {} cases ({pass} to accept, {fail} to reject), {} wrong",
        cases.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} conformance cases went wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn verify_rejects_wrong_identity_and_issuer_on_a_real_bundle() {
    let case = conformance_cases().join("happy-path-v0.3");
    let a = conformance_cases().join("a.txt");
    let root = production_root();
    let base = |extra: &[&str]| {
        let mut cmd = pi_image(&case);
        cmd.arg("verify")
            .arg(&a)
            .arg("--bundle")
            .arg(case.join("bundle.sigstore.json"))
            .arg("--trusted-root")
            .arg(&root)
            .args(extra);
        run(cmd)
    };
    let (code, _, err) = base(&[
        "--certificate-identity-regexp",
        "^https://github\\.com/sigstore-conformance/",
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = base(&[
        "--repository",
        "sigstore-conformance/extremely-dangerous-public-oidc-beacon",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = base(&["--repository", "sigstore-conformance/other"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not /^https://github"), "{err}");
    let (code, _, err) = base(&[
        "--certificate-identity",
        DEFAULT_IDENTITY,
        "--certificate-oidc-issuer",
        "https://accounts.google.com",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("happy-path-v0.3"), "{err}");
    let (code, _, err) = base(&["--certificate-oidc-issuer", DEFAULT_ISSUER]);
    assert_eq!(code, 2, "a missing identity is a usage error: {err}");
}
