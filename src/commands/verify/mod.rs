//! `verify`: check Sigstore bundles with cosign's flags and semantics, offline, against
//! the public-good root or a given one. Either one file and its bundle, or with
//! `--manifest` every artifact a manifest lists: its digest, its bundle's digest, and the
//! bundle itself. An artifact without a bundle of its own must be a subject of a
//! verified attestation (the in-toto statement) with the same digest.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::sigstore::{self, BundleKind, Policy, Subject, Trust, Verified};

mod plan;
pub use plan::{BundleSpec, Check, Facts, Plan, SubjectSpec, Target, plan};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The file to verify (or `sha256:HEX`); not with --manifest
    #[arg(value_name = "FILE", required_unless_present = "manifest")]
    pub file: Option<PathBuf>,
    /// The Sigstore bundle [default: FILE.sigstore.json]
    #[arg(long, value_name = "FILE.sigstore.json", conflicts_with = "manifest")]
    pub bundle: Option<PathBuf>,
    /// Verify every artifact listed in this manifest, with its bundle
    #[arg(long, value_name = "MANIFEST", conflicts_with = "file")]
    pub manifest: Option<PathBuf>,
    /// The signer's identity (certificate SAN), exactly
    #[arg(long, value_name = "ID")]
    pub certificate_identity: Option<String>,
    /// The signer's identity, as a regular expression
    #[arg(long, value_name = "RE", conflicts_with = "certificate_identity")]
    pub certificate_identity_regexp: Option<String>,
    /// The OIDC issuer of the signer's identity, exactly (GitHub Actions: <https://token.actions.githubusercontent.com>)
    #[arg(long, value_name = "ISS")]
    pub certificate_oidc_issuer: Option<String>,
    /// The OIDC issuer, as a regular expression
    #[arg(long, value_name = "RE", conflicts_with = "certificate_oidc_issuer")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Shortcut: signed by a GitHub Actions workflow of OWNER/REPO
    #[arg(long, value_name = "OWNER/REPO")]
    pub repository: Option<String>,
    /// Public key of a key-signed bundle (cosign.pub)
    #[arg(long, value_name = "cosign.pub")]
    pub key: Option<PathBuf>,
    /// Trusted root (trusted_root.json) [default: public-good Sigstore, embedded]
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// ClientTrustConfig JSON whose trustedRoot to use
    #[arg(long, value_name = "FILE", conflicts_with = "trusted_root")]
    pub trust_config: Option<PathBuf>,
    /// Accepted for cosign compatibility: verification never uses the network
    #[arg(long)]
    pub offline: bool,
}

/// Validated input: what to verify and whom it must come from, before anything is read.
#[derive(Debug, Clone)]
pub struct Input {
    pub what: What,
    pub certificate_identity: Option<String>,
    pub certificate_identity_regexp: Option<String>,
    pub certificate_oidc_issuer: Option<String>,
    pub certificate_oidc_issuer_regexp: Option<String>,
    pub repository: Option<String>,
    pub key: Option<PathBuf>,
    pub trusted_root: Option<PathBuf>,
    pub trust_config: Option<PathBuf>,
}

/// What the command line names to verify.
#[derive(Debug, Clone)]
pub enum What {
    Manifest(PathBuf),
    File {
        file: PathBuf,
        bundle: Option<PathBuf>,
    },
}

impl Input {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let what = match (args.manifest, args.file) {
            (Some(m), _) => What::Manifest(m),
            (None, Some(file)) => What::File {
                file,
                bundle: args.bundle,
            },
            (None, None) => return Err(usage("give a FILE to verify, or --manifest")),
        };
        Ok(Self {
            what,
            certificate_identity: args.certificate_identity,
            certificate_identity_regexp: args.certificate_identity_regexp,
            certificate_oidc_issuer: args.certificate_oidc_issuer,
            certificate_oidc_issuer_regexp: args.certificate_oidc_issuer_regexp,
            repository: args.repository,
            key: args.key,
            trusted_root: args.trusted_root,
            trust_config: args.trust_config,
        })
    }
}

/// Does all the reading before any check: the policy (and its public key), the
/// trusted root, the manifest or the subject.
pub fn gather(input: &Input) -> anyhow::Result<Facts> {
    let policy = Policy::from_flags(
        input.certificate_identity.as_deref(),
        input.certificate_identity_regexp.as_deref(),
        input.certificate_oidc_issuer.as_deref(),
        input.certificate_oidc_issuer_regexp.as_deref(),
        input.repository.as_deref(),
        input.key.as_deref(),
    )?;
    let trust = Trust::load(input.trusted_root.as_deref(), input.trust_config.as_deref())?;
    let target = match &input.what {
        What::Manifest(m) => {
            let (manifest, _) = crate::model::manifest::load(m)?;
            Target::Manifest {
                path: m.clone(),
                manifest: Box::new(manifest),
                own_bundle: sigstore::bundle_path_for(m).is_file(),
            }
        }
        What::File { file, bundle } => Target::File {
            name: file.display().to_string(),
            subject: match Subject::parse(file) {
                Subject::File(p) => SubjectSpec::File(p),
                Subject::Sha256(h) => SubjectSpec::Sha256(h),
            },
            bundle: bundle.clone(),
        },
    };
    Ok(Facts {
        policy,
        trust,
        target,
    })
}

/// The result for one artifact.
#[derive(Debug, Clone)]
pub struct Checked {
    pub name: String,
    pub bundle: Option<PathBuf>,
    pub result: Result<Verified, String>,
    /// For an artifact without a bundle: the attestation that covers it.
    pub covered_by: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub checked: Vec<Checked>,
}

impl Outcome {
    pub fn failures(&self) -> Vec<String> {
        self.checked
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.name)))
            .collect()
    }
}

/// verify's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// The artifacts that verified, space-separated
    pub verified: String,
    /// The signing certificate's identity (empty for key-signed bundles)
    pub certificate_identity: String,
    /// The signing certificate's OIDC issuer
    pub certificate_oidc_issuer: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        let ok: Vec<&Checked> = self.checked.iter().filter(|c| c.result.is_ok()).collect();
        let first = ok.iter().find_map(|c| c.result.as_ref().ok());
        Outputs {
            verified: ok
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            certificate_identity: first.and_then(|v| v.identity.clone()).unwrap_or_default(),
            certificate_oidc_issuer: first.and_then(|v| v.issuer.clone()).unwrap_or_default(),
        }
    }

    fn summary(&self) -> String {
        let mut s = String::from(
            "### verify\n\n| Artifact | Result | Signer | Rekor index |\n| --- | --- | --- | --- |\n",
        );
        for c in &self.checked {
            let (result, signer, index) = match (&c.result, &c.covered_by) {
                (Ok(v), None) => (
                    format!("verified ({})", v.kind.as_str()),
                    v.identity.clone().unwrap_or_else(|| "key".into()),
                    v.log_index.map(|i| i.to_string()).unwrap_or_default(),
                ),
                (Ok(_), Some(att)) => (format!("digest in `{att}`"), String::new(), String::new()),
                (Err(e), _) => (format!("**failed**: {e}"), String::new(), String::new()),
            };
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                md_cell(&c.name),
                md_cell(&result),
                md_cell(&signer),
                index
            ));
        }
        s.push('\n');
        s
    }
}

/// Verifies every check; failures are collected, not fatal, so the report names all.
pub fn run(facts: &Facts, plan: &Plan) -> anyhow::Result<Outcome> {
    let verifier = sigstore::verifier(&facts.trust)?;
    let mut outcome = Outcome::default();
    let mut unbundled = Vec::new();
    for check in &plan.checks {
        match &check.bundle {
            Some(b) => {
                let result =
                    check_one(&verifier, check, b, &facts.policy).map_err(|e| format!("{e:#}"));
                outcome.checked.push(Checked {
                    name: check.name.clone(),
                    bundle: Some(b.path.clone()),
                    result,
                    covered_by: None,
                });
            }
            None => unbundled.push(check),
        }
    }
    // An artifact with no bundle of its own must be a subject of a verified attestation.
    let attestations: Vec<(String, Vec<(String, String)>)> = outcome
        .checked
        .iter()
        .filter_map(|c| match &c.result {
            Ok(v) if v.kind == BundleKind::Attestation => {
                Some((c.name.clone(), v.subjects.clone()))
            }
            _ => None,
        })
        .collect();
    for check in unbundled {
        let result = (|| -> anyhow::Result<(Verified, String)> {
            let digest = subject_digest(check)?;
            let (att, _) = attestations
                .iter()
                .find(|(_, subjects)| subjects.iter().any(|(_, d)| *d == digest))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "it has no bundle, and no verified attestation lists its digest {digest}; run `pi-image sign` on it"
                    )
                })?;
            let v = Verified {
                identity: None,
                issuer: None,
                log_index: None,
                kind: BundleKind::Message,
                subjects: Vec::new(),
            };
            Ok((v, att.clone()))
        })();
        let (result, covered_by) = match result {
            Ok((v, att)) => (Ok(v), Some(att)),
            Err(e) => (Err(format!("{e:#}")), None),
        };
        outcome.checked.push(Checked {
            name: check.name.clone(),
            bundle: None,
            result,
            covered_by,
        });
    }
    Ok(outcome)
}

fn subject_digest(check: &Check) -> anyhow::Result<String> {
    let actual = match &check.subject {
        SubjectSpec::File(p) => crate::checksum::sha256_file(p)?.sha256,
        SubjectSpec::Sha256(h) => h.clone(),
    };
    if let Some(want) = &check.expect_sha256
        && *want != actual
    {
        anyhow::bail!("its SHA-256 is {actual}, but the manifest records {want}: the file changed");
    }
    Ok(actual)
}

fn check_one(
    verifier: &sigstore_verify::Verifier,
    check: &Check,
    bundle: &BundleSpec,
    policy: &Policy,
) -> anyhow::Result<Verified> {
    if check.expect_sha256.is_some() {
        subject_digest(check)?;
    }
    if let Some(want) = &bundle.expect_sha256 {
        let got = crate::checksum::sha256_file(&bundle.path)?.sha256;
        if *want != got {
            anyhow::bail!(
                "its bundle `{}` has SHA-256 {got}, but the manifest records {want}",
                bundle.path.display()
            );
        }
    }
    let parsed = sigstore::read_bundle(&bundle.path)?;
    let subject = match &check.subject {
        SubjectSpec::File(p) => Subject::File(p.clone()),
        SubjectSpec::Sha256(h) => Subject::Sha256(h.clone()),
    };
    sigstore::verify_bundle(verifier, &subject, &parsed, policy).with_context(|| {
        format!(
            "`{}` does not verify with `{}` for {}",
            subject.display(),
            bundle.path.display(),
            policy.describe()
        )
    })
}

/// Entry point: parse → gather → plan → verify → publish; exit 1 unless everything verified.
pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    sigstore::install_tls_provider();
    let input = Input::from_args(args)?;
    let facts = gather(&input)?;
    let plan = plan(&facts)?;
    if gha.print_plan(&plan)? {
        return Ok(());
    }
    let outcome = run(&facts, &plan)?;
    for c in &outcome.checked {
        match (&c.result, &c.covered_by) {
            (Ok(v), None) => gha.line(&format!(
                "verified: {} ({}, {}{})",
                c.name,
                v.kind.as_str(),
                v.identity.as_deref().unwrap_or("key-signed"),
                v.log_index
                    .map(|i| format!(", Rekor log index {i}"))
                    .unwrap_or_default()
            )),
            (Ok(_), Some(att)) => gha.line(&format!(
                "verified: {} (its digest is a subject of the verified attestation {att})",
                c.name
            )),
            (Err(e), _) => gha.line(&format!("FAILED: {}: {e}", c.name)),
        }
    }
    gha.publish(&outcome)?;
    let failures = outcome.failures();
    if !failures.is_empty() {
        anyhow::bail!(
            "{} of {} did not verify:\n  {}",
            failures.len(),
            outcome.checked.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}
