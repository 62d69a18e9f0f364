//! `pi-image sign` on loopback, keyless (a GitHub-shaped OIDC token from a fake token
//! endpoint, the Sigstore project's mock Fulcio, Rekor and TSA; the bundles checked by
//! `pi-image verify` and, independently, by sigstore-python) and with a cosign key (made
//! by an independent Python implementation of cosign's key format; the bundles checked
//! by `pi-image verify --key` and by Python, since sigstore-python verifies no keys).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::sigstore::{Stack, cosign_generate_key_pair, python_key_check, python_verify};
use crate::support::{hex_sha256, pi_image, read_outputs, run};

const IDENTITY: &str =
    "https://github.com/sugarkube/pi-image-test/.github/workflows/release.yml@refs/tags/v1.0.0";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const IMG: &str = "x";

/// An image, its checksum file, an in-toto statement and a manifest, as `manifest`
/// writes them (the fields `sign` and `verify --manifest` use).
fn artifacts(dir: &Path) -> PathBuf {
    let image: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    fs::write(dir.join("x.img.xz"), &image).unwrap();
    let image_sha = hex_sha256(&image);
    let sums = format!("{image_sha}  x.img.xz\n");
    fs::write(dir.join("x.img.xz.sha256"), &sums).unwrap();
    let meta = b"{\"schema_version\": 1}\n";
    fs::write(dir.join("x.img.xz.metadata.json"), meta).unwrap();
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "x.img.xz", "digest": {"sha256": image_sha}},
            {"name": "x.img.xz.sha256", "digest": {"sha256": hex_sha256(sums.as_bytes())}},
            {"name": "x.img.xz.metadata.json", "digest": {"sha256": hex_sha256(meta)}},
        ],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://github.com/sugarkube/pi-image-action/pi-gen/v1"}},
    });
    let statement = serde_json::to_vec_pretty(&statement).unwrap();
    fs::write(dir.join("x.intoto.json"), &statement).unwrap();
    let artifact = |name: &str, kind: &str, bytes: &[u8]| serde_json::json!({"name": name, "kind": kind, "size_bytes": bytes.len(), "sha256": hex_sha256(bytes)});
    let manifest = serde_json::json!({
        "schema_version": 1,
        "generated_at": "2026-11-26T08:35:07Z",
        "release": {"channel": "stable", "tag": "v1.0.0", "name": "x 1.0.0", "prerelease": false, "make_latest": true},
        "source": {"repository": "sugarkube/pi-image-test", "server_url": "https://github.com", "ref": "refs/tags/v1.0.0",
                   "commit": null, "workflow": null, "run_id": null, "run_attempt": null},
        "artifacts": [
            artifact("x.img.xz", "image", &image),
            artifact("x.img.xz.sha256", "checksum", sums.as_bytes()),
            artifact("x.img.xz.metadata.json", "metadata", meta),
            artifact("x.intoto.json", "provenance", &statement),
        ],
        "verifier": {},
    });
    let path = dir.join("x.img.xz.manifest.json");
    fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    path
}

/// `pi-image sign` as a GitHub Actions step against the stack.
fn sign_cmd(stack: &Stack, dir: &Path, variant: Option<&str>) -> Command {
    let mut cmd = pi_image(dir);
    let url = match variant {
        Some(v) => format!("{}&variant={v}", stack.token_url),
        None => stack.token_url.clone(),
    };
    cmd.arg("sign")
        .arg("--trust-config")
        .arg(stack.trust_config())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", dir.join("outputs"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &stack.request_token)
        .env("IMG_NAME", IMG)
        .env("OUTPUT_DIR", dir);
    cmd
}

fn verify_cmd(
    stack: &Stack,
    dir: &Path,
    file: &str,
    bundle: &str,
    extra: &[&str],
) -> (i32, String) {
    let mut cmd = pi_image(dir);
    cmd.arg("verify")
        .arg(dir.join(file))
        .arg("--bundle")
        .arg(dir.join(bundle))
        .arg("--trust-config")
        .arg(stack.trust_config())
        .args(extra);
    let (code, out, err) = run(cmd);
    (code, format!("{out}{err}"))
}

fn bundles_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".sigstore.json") || n.ends_with(".partial"))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_keyless_on_loopback_is_verified_by_pi_image_and_sigstore_python() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = artifacts(dir);
    let (code, out, err) = run(sign_cmd(&stack, dir, None));
    assert_eq!(code, 0, "sign failed:\n{out}\n{err}");

    // Four v0.3 bundles; the statement's is a DSSE attestation.
    assert_eq!(
        bundles_in(dir),
        [
            "x.img.xz.manifest.json.sigstore.json",
            "x.img.xz.sha256.sigstore.json",
            "x.img.xz.sigstore.json",
            "x.intoto.json.sigstore.json"
        ]
    );
    for b in bundles_in(dir) {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(&b)).unwrap()).unwrap();
        assert_eq!(
            v["mediaType"], "application/vnd.dev.sigstore.bundle.v0.3+json",
            "{b}"
        );
        assert!(
            v["verificationMaterial"]["certificate"]["rawBytes"].is_string(),
            "{b}"
        );
        let body = v["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]
            .as_str()
            .unwrap();
        let body = String::from_utf8(base64_decode(body)).unwrap();
        assert!(
            !body.contains("\\r"),
            "CRLF PEM sent to Rekor in {b}: {body}"
        );
    }
    let att: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("x.intoto.json.sigstore.json")).unwrap())
            .unwrap();
    assert_eq!(
        att["dsseEnvelope"]["payloadType"],
        "application/vnd.in-toto+json"
    );

    // Outputs: identity, issuer, bundles, log indexes, the verification commands.
    let outputs = read_outputs(&dir.join("outputs"));
    assert_eq!(outputs["certificate-identity"], IDENTITY);
    assert_eq!(outputs["certificate-oidc-issuer"], ISSUER);
    assert_eq!(outputs["bundles"].split(' ').count(), 4);
    assert_eq!(
        outputs["rekor-log-indexes"]
            .split(' ')
            .filter(|i| i.parse::<u64>().is_ok())
            .count(),
        4
    );
    assert!(
        outputs["verify-command"].starts_with(
            "pi-image verify --manifest x.img.xz.manifest.json --certificate-identity"
        )
    );
    assert!(outputs["cosign-verify-command"].contains(&format!("cosign verify-blob x.img.xz --bundle x.img.xz.sigstore.json --certificate-identity {IDENTITY} --certificate-oidc-issuer {ISSUER}")));
    let summary = fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("### sign") && summary.contains("cosign verify-blob"),
        "{summary}"
    );

    // Secrets: the request token is masked before use; the JWT only appears in a mask.
    assert!(
        out.contains(&format!("::add-mask::{}", stack.request_token)),
        "{out}"
    );
    for line in out.lines().chain(err.lines()) {
        if !line.starts_with("::add-mask::") {
            assert!(
                !line.contains(&stack.request_token),
                "request token leaked: {line}"
            );
            assert!(!line.contains("eyJhbGciOiJub25l"), "JWT leaked: {line}");
        }
    }

    // The manifest records each bundle's name and digest.
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    for a in m["artifacts"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        if name.ends_with("metadata.json") {
            assert!(a.get("bundle").is_none(), "{a}");
            continue;
        }
        let b = &a["bundle"];
        assert_eq!(b["name"], format!("{name}.sigstore.json"));
        let bytes = fs::read(dir.join(b["name"].as_str().unwrap())).unwrap();
        assert_eq!(b["sha256"], hex_sha256(&bytes));
        assert_eq!(b["size_bytes"], bytes.len());
    }

    // pi-image verify: one file, and the whole manifest (the metadata file is covered by
    // the attestation's subjects).
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.img.xz",
        "x.img.xz.sigstore.json",
        &[
            "--certificate-identity",
            IDENTITY,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    assert_eq!(code, 0, "{text}");
    let mut cmd = pi_image(dir);
    cmd.args(["verify", "--manifest"])
        .arg(&manifest)
        .args(["--repository", "sugarkube/pi-image-test", "--trust-config"])
        .arg(stack.trust_config());
    let (code, o, e) = run(cmd);
    assert_eq!(code, 0, "{o}{e}");
    assert!(e.contains("verified: x.img.xz.metadata.json (its digest is a subject of the verified attestation x.intoto.json)"), "{e}");
    assert!(e.contains("verified: x.img.xz.manifest.json"), "{e}");
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.intoto.json",
        "x.intoto.json.sigstore.json",
        &["--repository", "sugarkube/pi-image-test"],
    );
    assert_eq!(code, 0, "the statement file itself: {text}");
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.img.xz",
        "x.intoto.json.sigstore.json",
        &["--repository", "sugarkube/pi-image-test"],
    );
    assert_eq!(code, 0, "the image against its attestation: {text}");

    // sigstore-python, independently: every bundle.
    for (file, bundle) in [
        ("x.img.xz", "x.img.xz.sigstore.json"),
        ("x.img.xz.sha256", "x.img.xz.sha256.sigstore.json"),
        (
            "x.img.xz.manifest.json",
            "x.img.xz.manifest.json.sigstore.json",
        ),
        ("x.img.xz", "x.intoto.json.sigstore.json"),
    ] {
        let (code, text) = python_verify(
            &stack.trust_config(),
            &dir.join(file),
            &dir.join(bundle),
            IDENTITY,
            ISSUER,
        );
        assert_eq!(
            code, 0,
            "sigstore-python rejected {bundle} for {file}:\n{text}"
        );
    }

    // Tampering: every one rejected by both verifiers.
    let (code, text) = python_verify(
        &stack.trust_config(),
        &dir.join("x.img.xz.sha256"),
        &dir.join("x.img.xz.sigstore.json"),
        IDENTITY,
        ISSUER,
    );
    assert_ne!(code, 0, "sigstore-python: bundle for another file: {text}");
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.img.xz.sha256",
        "x.img.xz.sigstore.json",
        &[
            "--certificate-identity",
            IDENTITY,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    assert_eq!(code, 1, "pi-image: bundle for another file: {text}");
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.img.xz",
        "x.img.xz.sigstore.json",
        &[
            "--certificate-identity",
            "https://github.com/evil/repo/.github/workflows/release.yml@refs/tags/v1.0.0",
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    assert_eq!(code, 1, "wrong identity: {text}");
    let (code, text) = python_verify(
        &stack.trust_config(),
        &dir.join("x.img.xz"),
        &dir.join("x.img.xz.sigstore.json"),
        "https://github.com/evil/repo/.github/workflows/release.yml@refs/tags/v1.0.0",
        ISSUER,
    );
    assert_ne!(code, 0, "sigstore-python: wrong identity: {text}");
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.img.xz",
        "x.img.xz.sigstore.json",
        &[
            "--certificate-identity",
            IDENTITY,
            "--certificate-oidc-issuer",
            "https://accounts.google.com",
        ],
    );
    assert_eq!(code, 1, "wrong issuer: {text}");
    let (code, text) = python_verify(
        &stack.trust_config(),
        &dir.join("x.img.xz"),
        &dir.join("x.img.xz.sigstore.json"),
        IDENTITY,
        "https://accounts.google.com",
    );
    assert_ne!(code, 0, "sigstore-python: wrong issuer: {text}");
    let mut image = fs::read(dir.join("x.img.xz")).unwrap();
    image[1234] ^= 0x01;
    fs::write(dir.join("x.img.xz"), &image).unwrap();
    let (code, text) = verify_cmd(
        &stack,
        dir,
        "x.img.xz",
        "x.img.xz.sigstore.json",
        &[
            "--certificate-identity",
            IDENTITY,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    assert_eq!(code, 1, "changed byte: {text}");
    let (code, text) = python_verify(
        &stack.trust_config(),
        &dir.join("x.img.xz"),
        &dir.join("x.img.xz.sigstore.json"),
        IDENTITY,
        ISSUER,
    );
    assert_ne!(code, 0, "sigstore-python: changed byte: {text}");
    let mut cmd = pi_image(dir);
    cmd.args(["verify", "--manifest"])
        .arg(&manifest)
        .args(["--repository", "sugarkube/pi-image-test", "--trust-config"])
        .arg(stack.trust_config());
    let (code, _, e) = run(cmd);
    assert_eq!(code, 1, "{e}");
    assert!(
        e.contains("x.img.xz: its SHA-256 is"),
        "the failure names the file: {e}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let mut out = out;
    out.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    out.wait_with_output().unwrap().stdout
}

#[test]
fn sign_without_id_token_permission_says_so_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    artifacts(dir);
    let mut cmd = pi_image(dir);
    cmd.arg("sign")
        .env("GITHUB_ACTIONS", "true")
        .env("IMG_NAME", IMG)
        .env("OUTPUT_DIR", dir);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("permissions: id-token: write"), "{out}{err}");
    assert!(bundles_in(dir).is_empty());
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_with_an_expired_token_fails_before_fulcio_and_writes_nothing() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    artifacts(dir);
    let (code, out, err) = run(sign_cmd(&stack, dir, Some("expired")));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("the identity token expired at"), "{out}{err}");
    assert!(bundles_in(dir).is_empty(), "{:?}", bundles_in(dir));
    assert_eq!(stack.counts()["token"], 1);
    assert_eq!(stack.counts()["fulcio"], 0);
    // A token Fulcio itself refuses (wrong audience) is reported with Fulcio's answer.
    let (code, out, err) = run(sign_cmd(&stack, dir, Some("wrong-audience")));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("audience"), "{out}{err}");
    assert!(bundles_in(dir).is_empty());
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_with_fulcio_unreachable_fails_clearly_and_writes_nothing() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    artifacts(dir);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = sign_cmd(&stack, dir, None);
    cmd.args(["--fulcio-url", &format!("http://127.0.0.1:{port}")]);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "Fulcio at http://127.0.0.1:{port} did not issue a signing certificate"
        )),
        "{out}{err}"
    );
    assert!(bundles_in(dir).is_empty(), "{:?}", bundles_in(dir));
    assert_eq!(stack.counts()["rekor"], 0);
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_given_token_and_files_without_manifest() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    // A token fetched the way GitHub hands it out, given with --identity-token.
    let out = Command::new("curl")
        .args([
            "-sf",
            "-H",
            &format!("Authorization: bearer {}", stack.request_token),
            &format!("{}&audience=sigstore", stack.token_url),
        ])
        .output()
        .unwrap();
    let jwt = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut cmd = pi_image(dir);
    cmd.args(["sign", "notes.txt", "--trust-config"])
        .arg(stack.trust_config())
        .env("SIGSTORE_ID_TOKEN", &jwt);
    let (code, o, e) = run(cmd);
    assert_eq!(code, 0, "{o}{e}");
    assert!(!e.contains(&jwt), "token printed");
    assert_eq!(bundles_in(dir), ["notes.txt.sigstore.json"]);
    let (code, text) = python_verify(
        &stack.trust_config(),
        &dir.join("notes.txt"),
        &dir.join("notes.txt.sigstore.json"),
        IDENTITY,
        ISSUER,
    );
    assert_eq!(code, 0, "{text}");
}

/// The bundle's RFC 3161 timestamps (each a DER `TimeStampResp`).
fn rfc3161_timestamps(bundle: &serde_json::Value) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    base64::engine::general_purpose::STANDARD
                        .decode(t["signedTimestamp"].as_str().unwrap())
                        .unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Moves the `TSTInfo`'s genTime (the only `GeneralizedTime`, `YYYYMMDDHHMMSSZ`, in the token:
/// CMS signingTime and the certificates' validity are `UTCTime`) by one second: the token
/// stays well-formed with a plausible time, so only a verifier that checks the TSA's
/// signature over the `TSTInfo` notices.
fn tamper_gen_time(bundle: &mut serde_json::Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ts = &mut bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
        [0]["signedTimestamp"];
    let mut der = b64.decode(ts.as_str().unwrap()).unwrap();
    let at: Vec<usize> = der
        .windows(17)
        .enumerate()
        .filter(|(_, w)| {
            w[0] == 0x18 && w[1] == 15 && w[16] == b'Z' && w[2..16].iter().all(u8::is_ascii_digit)
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "one genTime in the token");
    // The seconds' last digit: 0<->1, 2<->3, ... stays a valid time.
    der[at[0] + 15] ^= 1;
    *ts = b64.encode(&der).into();
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_keyless_with_a_tsa_on_loopback_is_verified_by_pi_image_and_sigstore_python() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    artifacts(dir);
    let mut cmd = sign_cmd(&stack, dir, None);
    cmd.arg("--tsa-url").arg(&stack.tsa_url);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "sign failed:\n{out}\n{err}");
    assert_eq!(stack.counts()["tsa"], 4, "one timestamp per signature");

    // Every bundle carries one RFC 3161 timestamp, verified by both verifiers.
    for (file, bundle) in SIGNED {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join(bundle)).unwrap()).unwrap();
        assert_eq!(rfc3161_timestamps(&v).len(), 1, "{bundle}: {v}");
        let file = if file == "x.intoto.json" {
            "x.img.xz"
        } else {
            file
        };
        let (code, text) = verify_cmd(
            &stack,
            dir,
            file,
            bundle,
            &["--repository", "sugarkube/pi-image-test"],
        );
        assert_eq!(code, 0, "pi-image rejected {bundle}: {text}");
        let (code, text) = python_verify(
            &stack.trust_config(),
            &dir.join(file),
            &dir.join(bundle),
            IDENTITY,
            ISSUER,
        );
        assert_eq!(code, 0, "sigstore-python rejected {bundle}:\n{text}");
    }

    // Variants of the image's bundle. Without Rekor's inclusion promise (optional in a
    // v0.3 bundle) the log's integrated time is no longer a trusted time, so the TSA's
    // is the only one: sigstore-python accepts that bundle only if it verified the
    // timestamp. (sigstore-python 4.5 skips a timestamp it cannot verify while another
    // trusted time remains, so it accepts tampered.json: the full bundle alone cannot
    // show that it checks the timestamp.)
    let original: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("x.img.xz.sigstore.json")).unwrap()).unwrap();
    let variant = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = original.clone();
        edit(&mut v);
        fs::write(dir.join(name), serde_json::to_vec(&v).unwrap()).unwrap();
    };
    let no_promise = |v: &mut serde_json::Value| {
        let entry = v["verificationMaterial"]["tlogEntries"][0]
            .as_object_mut()
            .unwrap();
        assert!(entry.remove("inclusionPromise").is_some(), "{entry:?}");
    };
    // A genuine timestamp from the same TSA, but over another bundle's signature.
    let other: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("x.img.xz.sha256.sigstore.json")).unwrap())
            .unwrap();
    let other_timestamp = |v: &mut serde_json::Value| {
        v["verificationMaterial"]["timestampVerificationData"] =
            other["verificationMaterial"]["timestampVerificationData"].clone();
    };
    variant("tsa-time.json", &no_promise);
    variant("other-tsa-time.json", &|v| {
        no_promise(v);
        other_timestamp(v);
    });
    variant("tampered.json", &tamper_gen_time);
    variant("tampered-tsa-time.json", &|v| {
        no_promise(v);
        tamper_gen_time(v);
    });
    let identity = [
        "--certificate-identity",
        IDENTITY,
        "--certificate-oidc-issuer",
        ISSUER,
    ];
    let python = |bundle: &str| {
        python_verify(
            &stack.trust_config(),
            &dir.join("x.img.xz"),
            &dir.join(bundle),
            IDENTITY,
            ISSUER,
        )
    };
    let (code, text) = python("tsa-time.json");
    assert_eq!(code, 0, "sigstore-python, the TSA's time only: {text}");
    let (code, text) = verify_cmd(&stack, dir, "x.img.xz", "tsa-time.json", &identity);
    assert_eq!(code, 0, "pi-image, the TSA's time only: {text}");
    for bundle in ["other-tsa-time.json", "tampered-tsa-time.json"] {
        let (code, text) = python(bundle);
        assert_ne!(code, 0, "sigstore-python accepted {bundle}: {text}");
        assert!(
            text.contains("not enough sources of verified time"),
            "sigstore-python, {bundle}: {text}"
        );
    }
    // pi-image (sigstore-verify) rejects an unverifiable timestamp outright, even
    // next to Rekor's time.
    for bundle in [
        "tampered.json",
        "tampered-tsa-time.json",
        "other-tsa-time.json",
    ] {
        let (code, text) = verify_cmd(&stack, dir, "x.img.xz", bundle, &identity);
        assert_eq!(code, 1, "pi-image accepted {bundle}: {text}");
        assert!(
            text.contains("invalid RFC 3161 timestamp"),
            "pi-image, {bundle}: {text}"
        );
    }

    // A signing config that selects the TSA (tsaUrls) gets the same, without --tsa-url.
    fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    let mut cmd = pi_image(dir);
    cmd.args(["sign", "notes.txt", "--trust-config"])
        .arg(stack.trust_config_tsa())
        .env("SIGSTORE_ID_TOKEN", stack.github_token());
    let (code, o, e) = run(cmd);
    assert_eq!(code, 0, "{o}{e}");
    assert_eq!(stack.counts()["tsa"], 5);
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("notes.txt.sigstore.json")).unwrap()).unwrap();
    assert_eq!(rfc3161_timestamps(&v).len(), 1, "{v}");
    let (code, text) = python_verify(
        &stack.trust_config_tsa(),
        &dir.join("notes.txt"),
        &dir.join("notes.txt.sigstore.json"),
        IDENTITY,
        ISSUER,
    );
    assert_eq!(code, 0, "{text}");
}

/// A password with the characters that break naive quoting or masking.
const PASSWORD: &str = "correct horse 'battery' $taple";

/// The pairs a default `sign` run produces: (file, bundle).
const SIGNED: [(&str, &str); 4] = [
    ("x.img.xz", "x.img.xz.sigstore.json"),
    ("x.img.xz.sha256", "x.img.xz.sha256.sigstore.json"),
    (
        "x.img.xz.manifest.json",
        "x.img.xz.manifest.json.sigstore.json",
    ),
    ("x.intoto.json", "x.intoto.json.sigstore.json"),
];

fn verify_key(stack: &Stack, dir: &Path, file: &str, bundle: &str, key: &Path) -> (i32, String) {
    let key = key.display().to_string();
    verify_cmd(stack, dir, file, bundle, &["--key", &key])
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_with_cosign_key_on_loopback_is_verified_by_pi_image_and_independently() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = artifacts(dir);
    let keys = tempfile::tempdir().unwrap();
    cosign_generate_key_pair(keys.path(), PASSWORD);
    let public = keys.path().join("cosign.pub");
    let mut cmd = sign_cmd(&stack, dir, None);
    cmd.arg("--key")
        .arg(keys.path().join("cosign.key"))
        .env("COSIGN_PASSWORD", PASSWORD);
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "sign --key failed:\n{out}\n{err}");

    // No identity token and no Fulcio: one Rekor entry per bundle.
    let counts = stack.counts();
    assert_eq!(counts["token"], 0, "{counts}");
    assert_eq!(counts["fulcio"], 0, "{counts}");
    assert_eq!(counts["rekor"], 4, "{counts}");
    let mut names: Vec<&str> = SIGNED.iter().map(|(_, b)| *b).collect();
    names.sort_unstable();
    assert_eq!(bundles_in(dir), names);
    for (_, b) in SIGNED {
        let v: serde_json::Value = serde_json::from_slice(&fs::read(dir.join(b)).unwrap()).unwrap();
        let vm = &v["verificationMaterial"];
        assert!(vm["publicKey"]["hint"].is_string(), "{b}: {vm}");
        assert!(vm.get("certificate").is_none(), "{b}: {vm}");
    }

    // The password is masked before anything else is printed, and printed nowhere else.
    let mask = format!("::add-mask::{PASSWORD}");
    assert!(out.contains(&mask), "{out}");
    for line in out.lines().chain(err.lines()) {
        if line != mask {
            assert!(!line.contains(PASSWORD), "password leaked: {line}");
        }
    }
    let outputs = read_outputs(&dir.join("outputs"));
    assert_eq!(outputs["certificate-identity"], "");
    let pub_arg = public.display().to_string();
    assert!(
        outputs["verify-command"].starts_with(&format!(
            "pi-image verify --manifest x.img.xz.manifest.json --key {pub_arg}"
        )),
        "{}",
        outputs["verify-command"]
    );
    assert!(
        outputs["cosign-verify-command"].contains(&format!(
            "cosign verify-blob x.img.xz --bundle x.img.xz.sigstore.json --key {pub_arg}"
        )),
        "{}",
        outputs["cosign-verify-command"]
    );

    // pi-image verify --key: each bundle, the image against its attestation, and the
    // whole manifest.
    for (file, bundle) in SIGNED
        .iter()
        .chain([&("x.img.xz", "x.intoto.json.sigstore.json")])
    {
        let (code, text) = verify_key(&stack, dir, file, bundle, &public);
        assert_eq!(code, 0, "pi-image verify --key {file} {bundle}: {text}");
    }
    let mut cmd = pi_image(dir);
    cmd.args(["verify", "--manifest"])
        .arg(&manifest)
        .arg("--key")
        .arg(&public)
        .arg("--trust-config")
        .arg(stack.trust_config());
    let (code, o, e) = run(cmd);
    assert_eq!(code, 0, "{o}{e}");

    // Independently, in Python: signature over the file, hint, Rekor body naming this
    // key, the log's signed entry timestamp.
    for (file, bundle) in SIGNED
        .iter()
        .chain([&("x.img.xz", "x.intoto.json.sigstore.json")])
    {
        let (code, text) = python_key_check(
            &dir.join(file),
            &dir.join(bundle),
            &public,
            &stack.trusted_root(),
        );
        assert_eq!(code, 0, "Python rejected {bundle} for {file}: {text}");
    }

    // Another key is refused by both.
    let other = tempfile::tempdir().unwrap();
    cosign_generate_key_pair(other.path(), "");
    let other_pub = other.path().join("cosign.pub");
    let (code, text) = verify_key(
        &stack,
        dir,
        "x.img.xz",
        "x.img.xz.sigstore.json",
        &other_pub,
    );
    assert_eq!(code, 1, "another key: {text}");
    let (code, text) = python_key_check(
        &dir.join("x.img.xz"),
        &dir.join("x.img.xz.sigstore.json"),
        &other_pub,
        &stack.trusted_root(),
    );
    assert_eq!(code, 1, "Python: another key: {text}");

    // A changed byte is refused by both.
    let mut image = fs::read(dir.join("x.img.xz")).unwrap();
    image[4321] ^= 0x80;
    fs::write(dir.join("x.img.xz"), &image).unwrap();
    let (code, text) = verify_key(&stack, dir, "x.img.xz", "x.img.xz.sigstore.json", &public);
    assert_eq!(code, 1, "changed byte: {text}");
    let (code, text) = python_key_check(
        &dir.join("x.img.xz"),
        &dir.join("x.img.xz.sigstore.json"),
        &public,
        &stack.trusted_root(),
    );
    assert_eq!(code, 1, "Python: changed byte: {text}");
}

#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn sign_with_cosign_key_and_wrong_password_exits_2_and_writes_nothing() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = artifacts(dir);
    let before = fs::read(&manifest).unwrap();
    let keys = tempfile::tempdir().unwrap();
    cosign_generate_key_pair(keys.path(), PASSWORD);
    let key = keys.path().join("cosign.key");
    for password in [Some("Correct horse 'battery' $taple"), None] {
        let mut cmd = sign_cmd(&stack, dir, None);
        cmd.arg("--key").arg(&key);
        if let Some(p) = password {
            cmd.env("COSIGN_PASSWORD", p);
        }
        let (code, out, err) = run(cmd);
        assert_eq!(code, 2, "{password:?}: {out}{err}");
        assert!(
            out.contains(&format!(
                "cannot decrypt {}: wrong COSIGN_PASSWORD?",
                key.display()
            )),
            "{out}{err}"
        );
        assert!(bundles_in(dir).is_empty(), "{:?}", bundles_in(dir));
    }
    assert_eq!(fs::read(&manifest).unwrap(), before, "manifest changed");
    assert_eq!(stack.counts()["rekor"], 0);

    // Not a cosign key: said so, exit 2.
    let mut cmd = sign_cmd(&stack, dir, None);
    cmd.arg("--key").arg(keys.path().join("cosign.pub"));
    let (code, out, err) = run(cmd);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("not a cosign private key"), "{out}{err}");

    // An empty password is a password (cosign allows it): COSIGN_PASSWORD unset works.
    let empty = tempfile::tempdir().unwrap();
    cosign_generate_key_pair(empty.path(), "");
    fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    let mut cmd = pi_image(dir);
    cmd.args(["sign", "notes.txt", "--trust-config"])
        .arg(stack.trust_config())
        .arg("--key")
        .arg(empty.path().join("cosign.key"));
    let (code, o, e) = run(cmd);
    assert_eq!(code, 0, "{o}{e}");
    let (code, text) = python_key_check(
        &dir.join("notes.txt"),
        &dir.join("notes.txt.sigstore.json"),
        &empty.path().join("cosign.pub"),
        &stack.trusted_root(),
    );
    assert_eq!(code, 0, "{text}");
}

/// `--print-plan`: the files in signing order (the manifest last, the statement as an
/// attestation, each with the digest the manifest records) and the services, and then
/// nothing: no token asked for, no Fulcio or Rekor request, no bundle, no lock, the
/// manifest unchanged. The request token is not printed.
#[test]
#[ignore = "tier node: needs Node.js with the loopback Sigstore stack, and sigstore-python (scripts/test.sh installs them)"]
fn the_printed_sign_plan_contacts_no_service_and_writes_nothing() {
    let stack = Stack::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = artifacts(dir);
    let before = fs::read(&manifest).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let files = listing(dir);
    let mut cmd = sign_cmd(&stack, dir, None);
    cmd.arg("--print-plan").env_remove("GITHUB_ACTIONS");
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains(&stack.request_token), "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = plan["items"].as_array().unwrap();
    let names: Vec<String> = items
        .iter()
        .map(|i| {
            let p = PathBuf::from(i["path"].as_str().unwrap());
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "x.img.xz",
            "x.img.xz.sha256",
            "x.intoto.json",
            "x.img.xz.manifest.json"
        ]
    );
    assert_eq!(items[2]["kind"], "attestation");
    assert_eq!(items[3]["is_manifest"], true);
    let recorded: serde_json::Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(
        items[0]["expect_sha256"],
        recorded["artifacts"][0]["sha256"]
    );
    assert_eq!(plan["signer"], "keyless: GitHub Actions' OIDC token");
    assert_eq!(plan["self_check"], true);
    let counts = stack.counts();
    for service in ["token", "fulcio", "rekor"] {
        assert_eq!(counts[service], 0, "{service} was contacted: {counts}");
    }
    assert_eq!(listing(dir), files, "--print-plan wrote into the directory");
    assert_eq!(fs::read(&manifest).unwrap(), before);
}

/// `verify --print-plan --manifest`: one check per listed artifact with the digests
/// the manifest records, the policy in words, and no verification (a changed image
/// still prints its plan; only the real run fails on it).
#[test]
fn the_printed_verify_plan_lists_each_check_and_verifies_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = artifacts(dir);
    fs::write(dir.join("x.img.xz"), b"changed").unwrap();
    let verify = |plan_only: bool| {
        let mut cmd = pi_image(dir);
        if plan_only {
            cmd.arg("--print-plan");
        }
        cmd.arg("verify")
            .arg("--manifest")
            .arg(&manifest)
            .args(["--repository", "sugarkube/pi-image-test"]);
        run(cmd)
    };
    let (code, out, err) = verify(true);
    assert_eq!(code, 0, "{out}\n{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let recorded: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    let checks = plan["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{plan:#}");
    for (check, artifact) in checks.iter().zip(recorded["artifacts"].as_array().unwrap()) {
        assert_eq!(check["name"], artifact["name"]);
        assert_eq!(check["expect_sha256"], artifact["sha256"]);
        assert!(check["bundle"].is_null(), "{check}");
    }
    assert!(
        plan["policy"]
            .as_str()
            .unwrap()
            .contains(r"github\.com/sugarkube/pi\-image\-test/"),
        "{plan:#}"
    );
    assert_eq!(plan["trusted_root"], "public-good");
    let (code, _, err) = verify(false);
    assert_eq!(code, 1, "{err}");
}
