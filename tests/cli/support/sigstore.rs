//! The loopback Sigstore stack (`tests/fixtures/sigstore/stack.js`: the Sigstore
//! project's @sigstore/mock Fulcio, Rekor and TSA behind a local HTTP server, plus a fake
//! GitHub Actions token endpoint) and the independent verifier, sigstore-python.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::{repo_root, run_merged};

/// A running stack; stopped when dropped.
pub struct Stack {
    child: Child,
    _stdin: ChildStdin,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token_url: String,
    /// The RFC 3161 timestamp endpoint (`…/api/v1/timestamp`).
    pub tsa_url: String,
    pub request_token: String,
}

impl Stack {
    pub fn start() -> Self {
        let fixture = repo_root().join("tests/fixtures/sigstore");
        assert!(
            fixture.join("node_modules/@sigstore/mock").is_dir(),
            "@sigstore/mock is not installed in {}: run scripts/test.sh (it runs `npm ci` there)",
            fixture.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("node")
            .arg(fixture.join("stack.js"))
            .arg(dir.path())
            .current_dir(&fixture)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (run scripts/test.sh to install Node.js)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the Sigstore stack did not start ({e}): {line:?}"));
        let s = |k: &str| ready[k].as_str().unwrap().to_owned();
        Self {
            url: s("url"),
            token_url: s("token_url"),
            tsa_url: s("tsa_url"),
            request_token: s("request_token"),
            child,
            _stdin: stdin,
            dir,
        }
    }

    pub fn trust_config(&self) -> PathBuf {
        self.dir.path().join("trust_config.json")
    }

    /// The same trusted root, with a signingConfig that selects the TSA (tsaUrls).
    pub fn trust_config_tsa(&self) -> PathBuf {
        self.dir.path().join("trust_config_tsa.json")
    }

    /// A GitHub Actions OIDC token (audience `sigstore`) from the fake token endpoint.
    pub fn github_token(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-H",
                &format!("Authorization: bearer {}", self.request_token),
                &format!("{}&audience=sigstore", self.token_url),
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn trusted_root(&self) -> PathBuf {
        self.dir.path().join("trusted_root.json")
    }

    /// How many requests each service has answered.
    pub fn counts(&self) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/counts", self.url)])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sigstore-python's CLI, from the repository's `.venv` (scripts/test.sh installs it).
pub fn sigstore_python() -> PathBuf {
    let p = repo_root().join(".venv/bin/sigstore");
    assert!(
        p.exists(),
        "sigstore-python is not installed at {}: run scripts/test.sh",
        p.display()
    );
    p
}

/// `sigstore --trust-config TC verify identity --offline …`: (exit code, output).
pub fn python_verify(
    trust_config: &Path,
    file: &Path,
    bundle: &Path,
    identity: &str,
    issuer: &str,
) -> (i32, String) {
    run_merged(
        Command::new(sigstore_python())
            .arg("--trust-config")
            .arg(trust_config)
            .args(["verify", "identity", "--offline", "--bundle"])
            .arg(bundle)
            .args(["--cert-identity", identity, "--cert-oidc-issuer", issuer])
            .arg(file),
    )
}

/// The `.venv` Python, with `cryptography` (a sigstore-python dependency) and `PyNaCl`.
fn venv_python() -> PathBuf {
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "the test .venv is missing at {}: run scripts/test.sh",
        p.display()
    );
    p
}

/// Writes `dir/cosign.key` (encrypted with `password`) and `dir/cosign.pub` the way
/// `cosign generate-key-pair` does, with Python's hashlib.scrypt and `PyNaCl`'s
/// `SecretBox`: an implementation that shares no code with pi-image's.
pub fn cosign_generate_key_pair(dir: &Path, password: &str) {
    let out = Command::new(venv_python())
        .arg(repo_root().join("tests/fixtures/sigstore/cosign_key.py"))
        .arg("gen")
        .arg(dir)
        .env("COSIGN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cosign_key.py gen failed (PyNaCl missing? run scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cosign_key.py check`: a key-signed bundle checked in Python (signature over the
/// file, key hint, Rekor body naming the key, the log's signed entry timestamp).
pub fn python_key_check(
    file: &Path,
    bundle: &Path,
    public_key: &Path,
    trusted_root: &Path,
) -> (i32, String) {
    run_merged(
        Command::new(venv_python())
            .arg(repo_root().join("tests/fixtures/sigstore/cosign_key.py"))
            .arg("check")
            .args([file, bundle, public_key, trusted_root]),
    )
}
