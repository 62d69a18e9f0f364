//! Sigstore, shared by `sign` and `verify`: trust material (trusted roots, client trust
//! configs, the services to sign with), verification policies with cosign's semantics,
//! and bundle verification. The cryptography is sigstore-rust's (`sigstore-verify`,
//! `sigstore-sign`'s building blocks); this module decides what to trust and how to
//! report it.

pub mod keyfile;
pub mod signing;
pub mod token;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use regex::Regex;
use sigstore_trust_root::{SIGSTORE_PRODUCTION_TRUSTED_ROOT, SigningConfig, TrustedRoot};
use sigstore_types::{ArtifactDigest, Bundle, DerPublicKey, Sha256Hash, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use crate::error::usage;

/// The OIDC issuer of GitHub Actions tokens.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The in-toto payload type of DSSE attestations.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Bundles are written next to the file they sign, under this suffix (cosign's).
pub const BUNDLE_SUFFIX: &str = ".sigstore.json";
const CLIENT_TRUST_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.clienttrustconfig";

/// Makes the ring rustls provider the process default: the Sigstore HTTP clients are
/// built without a provider of their own (octocrab already links ring).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `FILE.sigstore.json`.
pub fn bundle_path_for(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(BUNDLE_SUFFIX);
    PathBuf::from(name)
}

/// Where the trusted root came from, for messages and the cosign command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// The public-good root embedded in this binary.
    PublicGood,
    /// A `trusted_root.json` file.
    File(PathBuf),
    /// The `trustedRoot` of a `ClientTrustConfig` file.
    TrustConfig(PathBuf),
}

/// The keys and certificates a verifier trusts, and the services a signer uses.
#[derive(Debug, Clone)]
pub struct Trust {
    pub root: TrustedRoot,
    pub source: RootSource,
    /// Present when it came from a `ClientTrustConfig`.
    pub signing_config: Option<SigningConfig>,
}

impl Trust {
    /// The public-good Sigstore instance, from the snapshot embedded in this binary.
    pub fn public_good() -> anyhow::Result<Self> {
        Ok(Self {
            root: TrustedRoot::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT)
                .context("the embedded public-good trusted root does not parse")?,
            source: RootSource::PublicGood,
            signing_config: None,
        })
    }

    /// A `trusted_root.json` (protobuf-specs `TrustedRoot`).
    pub fn from_trusted_root(path: &Path) -> anyhow::Result<Self> {
        let text = read_config(path, "trusted root")?;
        let root = TrustedRoot::from_json(&text).map_err(|e| {
            usage(format!(
                "`{}` is not a Sigstore trusted root (trusted_root.json): {e}",
                path.display()
            ))
        })?;
        Ok(Self {
            root,
            source: RootSource::File(path.to_path_buf()),
            signing_config: None,
        })
    }

    /// A `ClientTrustConfig`: `{"mediaType": …, "trustedRoot": {…}, "signingConfig": {…}}`.
    pub fn from_trust_config(path: &Path) -> anyhow::Result<Self> {
        let text = read_config(path, "trust config")?;
        let bad = |what: String| {
            usage(format!(
                "`{}` is not a Sigstore ClientTrustConfig: {what}",
                path.display()
            ))
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let media_type = value
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        if !media_type.starts_with(CLIENT_TRUST_CONFIG_MEDIA_TYPE) {
            return Err(bad(format!(
                "mediaType is `{media_type}`, expected `{CLIENT_TRUST_CONFIG_MEDIA_TYPE}.v0.1+json`"
            )));
        }
        let root = value
            .get("trustedRoot")
            .ok_or_else(|| bad("it has no `trustedRoot`".into()))?;
        let root = TrustedRoot::from_json(&root.to_string())
            .map_err(|e| bad(format!("its trustedRoot: {e}")))?;
        let signing_config = match value.get("signingConfig") {
            Some(sc) => Some(
                SigningConfig::from_json(&sc.to_string())
                    .map_err(|e| bad(format!("its signingConfig: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            root,
            source: RootSource::TrustConfig(path.to_path_buf()),
            signing_config,
        })
    }

    /// `--trust-config` wins over `--trusted-root`; neither means public-good.
    pub fn load(trusted_root: Option<&Path>, trust_config: Option<&Path>) -> anyhow::Result<Self> {
        match (trust_config, trusted_root) {
            (Some(c), _) => Self::from_trust_config(c),
            (None, Some(r)) => Self::from_trusted_root(r),
            (None, None) => Self::public_good(),
        }
    }

    /// The `--trusted-root`/`--trust-config` flag that selects this root again, for
    /// the verification commands printed after signing.
    pub fn flag(&self) -> Option<(&'static str, &Path)> {
        match &self.source {
            RootSource::PublicGood => None,
            RootSource::File(p) => Some(("--trusted-root", p)),
            RootSource::TrustConfig(p) => Some(("--trust-config", p)),
        }
    }
}

fn read_config(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the {what} `{}`: {e}", path.display())))
}

/// Whom a signature must come from: cosign's `--certificate-identity[-regexp]`,
/// `--certificate-oidc-issuer[-regexp]`, or a public key (`--key`).
#[derive(Debug, Clone)]
pub enum Policy {
    Certificate {
        identity: Matcher,
        issuer: Matcher,
    },
    Key {
        public_key: DerPublicKey,
        path: PathBuf,
    },
}

/// An exact value or an (unanchored, like cosign's) regular expression.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(e) => e == value,
            Matcher::Regex(r) => r.is_match(value),
        }
    }

    fn exact(&self) -> Option<&str> {
        match self {
            Matcher::Exact(e) => Some(e),
            Matcher::Regex(_) => None,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(e) => write!(f, "`{e}`"),
            Matcher::Regex(r) => write!(f, "/{}/", r.as_str()),
        }
    }
}

/// The `--repository OWNER/REPO` shortcut: any workflow of that repository, on GitHub
/// Actions. An identity flag given as well wins.
pub fn repository_identity(repo: &str) -> anyhow::Result<Regex> {
    let ok = repo.split('/').count() == 2
        && repo.split('/').all(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !ok {
        return Err(usage(format!(
            "--repository `{}` is not OWNER/REPO",
            repo.escape_debug()
        )));
    }
    Regex::new(&format!(
        "^https://github\\.com/{}/\\.github/workflows/",
        regex::escape(repo)
    ))
    .context("cannot build the repository identity pattern")
}

impl Policy {
    /// Builds a policy from cosign's flags; exactly one way to name the signer.
    pub fn from_flags(
        identity: Option<&str>,
        identity_regexp: Option<&str>,
        issuer: Option<&str>,
        issuer_regexp: Option<&str>,
        repository: Option<&str>,
        key: Option<&Path>,
    ) -> anyhow::Result<Self> {
        if let Some(path) = key {
            if identity.or(identity_regexp).or(repository).is_some() {
                return Err(usage(
                    "--key verifies a key-signed bundle; it cannot be combined with --certificate-identity, --certificate-identity-regexp or --repository",
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "cannot read the public key `{}`: {e}",
                    path.display()
                ))
            })?;
            let public_key = DerPublicKey::from_pem(&text).map_err(|e| {
                usage(format!(
                    "`{}` is not a PEM public key (`-----BEGIN PUBLIC KEY-----`, as `cosign generate-key-pair` writes to cosign.pub): {e}",
                    path.display()
                ))
            })?;
            return Ok(Policy::Key {
                public_key,
                path: path.to_path_buf(),
            });
        }
        let regex = |flag: &str, re: &str| {
            Regex::new(re).map_err(|e| {
                usage(format!(
                    "{flag} `{re}` is not a valid regular expression: {e}"
                ))
            })
        };
        let identity = match (identity, identity_regexp, repository) {
            (Some(i), _, _) => Matcher::Exact(i.to_owned()),
            (None, Some(r), _) => Matcher::Regex(regex("--certificate-identity-regexp", r)?),
            (None, None, Some(repo)) => Matcher::Regex(repository_identity(repo)?),
            (None, None, None) => {
                return Err(usage(
                    "say whom the signature must come from: --certificate-identity ID or --certificate-identity-regexp RE (with --certificate-oidc-issuer), --repository OWNER/REPO for a GitHub workflow, or --key cosign.pub",
                ));
            }
        };
        let issuer = match (issuer, issuer_regexp, repository) {
            (Some(i), _, _) => Matcher::Exact(i.to_owned()),
            (None, Some(r), _) => Matcher::Regex(regex("--certificate-oidc-issuer-regexp", r)?),
            (None, None, Some(_)) => Matcher::Exact(GITHUB_ISSUER.to_owned()),
            (None, None, None) => {
                return Err(usage(
                    "--certificate-oidc-issuer is required with a certificate identity (GitHub Actions: https://token.actions.githubusercontent.com)",
                ));
            }
        };
        Ok(Policy::Certificate { identity, issuer })
    }

    /// Describes the policy for messages.
    pub fn describe(&self) -> String {
        match self {
            Policy::Certificate { identity, issuer } => {
                format!("identity {identity} from issuer {issuer}")
            }
            Policy::Key { path, .. } => format!("the key in `{}`", path.display()),
        }
    }
}

/// What a verified bundle says about its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Option<String>,
    pub issuer: Option<String>,
    pub log_index: Option<u64>,
    /// `message` (a blob signature) or `attestation` (DSSE in-toto statement).
    pub kind: BundleKind,
    /// For attestations: the subjects' names and SHA-256 digests.
    pub subjects: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Message,
    Attestation,
}

impl BundleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Message => "message",
            BundleKind::Attestation => "attestation",
        }
    }
}

/// What is being verified: a file (read streaming) or a bare digest (`sha256:HEX`).
#[derive(Debug, Clone)]
pub enum Subject {
    File(PathBuf),
    Sha256(String),
}

impl Subject {
    /// `sha256:<64 hex>` that is not an existing file is a digest.
    pub fn parse(arg: &Path) -> Self {
        let s = arg.to_string_lossy();
        match s.strip_prefix("sha256:") {
            Some(hex)
                if !arg.exists()
                    && hex.len() == 64
                    && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Subject::Sha256(hex.to_ascii_lowercase())
            }
            _ => Subject::File(arg.to_path_buf()),
        }
    }

    pub fn display(&self) -> String {
        match self {
            Subject::File(p) => p.display().to_string(),
            Subject::Sha256(h) => format!("sha256:{h}"),
        }
    }
}

/// Reads a bundle file.
pub fn read_bundle(path: &Path) -> anyhow::Result<Bundle> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the bundle `{}`", path.display()))?;
    Bundle::from_json(&text)
        .with_context(|| format!("`{}` is not a valid Sigstore bundle", path.display()))
}

fn sha256_hash(hex: &str) -> anyhow::Result<Sha256Hash> {
    Sha256Hash::from_hex(hex).map_err(|e| anyhow::anyhow!("bad SHA-256 digest `{hex}`: {e}"))
}

/// Verifies `bundle` for `subject` against `trust` and `policy`: the certificate chain
/// (or key), the SCT, the transparency log entry (inclusion proof, checkpoint, SET),
/// timestamps, the signature, and the signer's identity. Files are read streaming.
///
/// A DSSE (in-toto) bundle verifies a file that is one of its statement's subjects, as
/// `cosign verify-blob-attestation` does, or the statement file itself (whose bytes are
/// the signed payload).
pub fn verify_bundle(
    verifier: &Verifier,
    subject: &Subject,
    bundle: &Bundle,
    policy: &Policy,
) -> anyhow::Result<Verified> {
    let (kind, subjects, payload) = match &bundle.content {
        SignatureContent::MessageSignature(_) => (BundleKind::Message, Vec::new(), None),
        SignatureContent::DsseEnvelope(env) => {
            let subjects = statement_subjects(env.payload.as_bytes());
            (
                BundleKind::Attestation,
                subjects,
                Some(env.payload.as_bytes()),
            )
        }
        #[allow(unreachable_patterns, reason = "non_exhaustive upstream")]
        _ => bail!("the bundle holds neither a message signature nor a DSSE envelope"),
    };
    // The statement file itself: its bytes are the payload; bind it through one of
    // its subjects (the signature covers the whole payload either way).
    let statement_digest = match (subject, payload) {
        (Subject::File(path), Some(payload)) => {
            let file = crate::checksum::sha256_file(path)?;
            let payload_sha = crate::checksum::hex(&sha2_digest(payload));
            (file.sha256 == payload_sha).then(|| subjects.first().map(|(_, d)| d.clone()))
        }
        _ => None,
    };
    if statement_digest == Some(None) {
        bail!("the attestation has no SHA-256 subject");
    }
    let result = match (policy, statement_digest.flatten().as_ref(), subject) {
        (_, Some(digest), _) | (_, None, Subject::Sha256(digest)) => {
            let artifact = ArtifactDigest::from(sha256_hash(digest)?);
            run_policy(policy, |p| match p {
                PolicyRef::Cert(c) => verifier.verify(artifact.clone(), bundle, c),
                PolicyRef::Key(k) => verifier.verify(artifact.clone(), bundle, k),
            })?
        }
        (_, None, Subject::File(path)) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            let file = std::io::BufReader::with_capacity(1 << 20, file);
            run_policy(policy, |p| match p {
                PolicyRef::Cert(c) => verifier.verify_reader(file, bundle, c),
                PolicyRef::Key(k) => verifier.verify_reader(file, bundle, k),
            })?
        }
    };
    let identity = result.identity().map(|i| i.as_str().to_owned());
    let issuer = result.issuer().map(str::to_owned);
    if let Policy::Certificate {
        identity: want_id,
        issuer: want_iss,
    } = policy
    {
        match &identity {
            Some(id) if want_id.matches(id) => {}
            Some(id) => bail!("the certificate identity is `{id}`, not {want_id}"),
            None => bail!("the certificate has no identity (SAN)"),
        }
        match &issuer {
            Some(iss) if want_iss.matches(iss) => {}
            Some(iss) => bail!("the certificate's OIDC issuer is `{iss}`, not {want_iss}"),
            None => bail!("the certificate has no OIDC issuer extension"),
        }
    }
    Ok(Verified {
        identity,
        issuer,
        log_index: bundle
            .verification_material
            .tlog_entries
            .first()
            .map(|e| e.log_index.get()),
        kind,
        subjects,
    })
}

enum PolicyRef<'a> {
    Cert(&'a VerificationPolicy),
    Key(&'a PublicKeyVerificationPolicy),
}

/// Runs the library verification with the policy's library form; exact identity and
/// issuer are also enforced by the library, regular expressions afterwards.
fn run_policy(
    policy: &Policy,
    f: impl FnOnce(PolicyRef<'_>) -> sigstore_verify::Result<sigstore_verify::VerificationResult>,
) -> anyhow::Result<sigstore_verify::VerificationResult> {
    let out = match policy {
        Policy::Certificate { identity, issuer } => {
            let mut p = VerificationPolicy::any_identity();
            if let Some(i) = identity.exact() {
                p = p.require_identity(i);
            }
            if let Some(i) = issuer.exact() {
                p = p.require_issuer(i);
            }
            f(PolicyRef::Cert(&p))
        }
        Policy::Key { public_key, .. } => {
            let p = PublicKeyVerificationPolicy::new(public_key.clone());
            f(PolicyRef::Key(&p))
        }
    };
    out.map_err(anyhow::Error::from)
}

pub fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

/// The `(name, sha256)` subjects of an in-toto statement (empty if it is not one).
pub fn statement_subjects(payload: &[u8]) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Vec::new();
    };
    v.get("subject")
        .and_then(|s| s.as_array())
        .map(|subjects| {
            subjects
                .iter()
                .filter_map(|s| {
                    let name = s.get("name")?.as_str()?.to_owned();
                    let sha = s
                        .get("digest")?
                        .get("sha256")?
                        .as_str()?
                        .to_ascii_lowercase();
                    Some((name, sha))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A verifier for a trust root, with a message that says which root failed to load.
pub fn verifier(trust: &Trust) -> anyhow::Result<Verifier> {
    Verifier::new(&trust.root).map_err(|e| {
        usage(format!(
            "the trusted root {} cannot be used: {e}",
            match &trust.source {
                RootSource::PublicGood => "(public-good, embedded)".to_owned(),
                RootSource::File(p) | RootSource::TrustConfig(p) => format!("`{}`", p.display()),
            }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_lies_beside_its_file() {
        assert_eq!(
            bundle_path_for(Path::new("out/x.img.xz")),
            Path::new("out/x.img.xz.sigstore.json")
        );
    }

    #[test]
    fn repository_matches_only_that_repositorys_workflows() {
        let re = repository_identity("sugarkube/pi-image").unwrap();
        assert!(re.is_match(
            "https://github.com/sugarkube/pi-image/.github/workflows/release.yml@refs/tags/v1"
        ));
        assert!(
            !re.is_match("https://github.com/sugarkube/pi-image-evil/.github/workflows/x.yml@r")
        );
        assert!(!re.is_match("https://github.com/sugarkubeXpi-image/.github/workflows/x.yml@r"));
        for bad in ["a", "a/b/c", "a/", "a/b c", "../x"] {
            assert!(repository_identity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policies_need_a_signer() {
        let err = Policy::from_flags(None, None, Some(GITHUB_ISSUER), None, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--certificate-identity"), "{err}");
        let err = Policy::from_flags(Some("x"), None, None, None, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--certificate-oidc-issuer"), "{err}");
        let p = Policy::from_flags(None, None, None, None, Some("o/r"), None).unwrap();
        let Policy::Certificate { issuer, .. } = p else {
            panic!("certificate policy")
        };
        assert!(issuer.matches(GITHUB_ISSUER));
        assert!(
            Policy::from_flags(None, Some("("), Some("i"), None, None, None).is_err(),
            "bad regex"
        );
    }

    #[test]
    fn digests_and_files() {
        let d = "a".repeat(64);
        assert!(matches!(
            Subject::parse(Path::new(&format!("sha256:{d}"))),
            Subject::Sha256(_)
        ));
        assert!(matches!(
            Subject::parse(Path::new("sha256:abc")),
            Subject::File(_)
        ));
    }

    #[test]
    fn statement_subjects_are_read() {
        let s = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"AB"}},{"name":"b","digest":{"sha512":"cd"}}]}"#;
        assert_eq!(statement_subjects(s), vec![("a".into(), "ab".into())]);
        assert!(statement_subjects(b"not json").is_empty());
    }
}
