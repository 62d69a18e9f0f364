//! `sign`: cosign-compatible Sigstore bundles `FILE.sigstore.json` for the image, its
//! checksum file, the in-toto statement (as a DSSE attestation) and the manifest.
//! Keyless (an OIDC token from GitHub Actions, `--identity-token`, or a browser sign-in;
//! a Fulcio certificate; a Rekor entry) or with a cosign key (`--key`). Files are hashed
//! streaming, every bundle is checked against the trusted root and written atomically,
//! and the manifest records each bundle's name and digest (the manifest is signed last,
//! after that update).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::{ImageArgs, file_name};
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::model::manifest::{BundleRef, Manifest};
use crate::model::to_canonical_json;
use crate::sigstore::signing::{self, Services, Signer, SigningKey};
use crate::sigstore::{self, Trust, keyfile, token};

mod plan;
pub use plan::{Credential, Facts, Item, Kind, Plan, plan};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Files to sign [default: the image, its .sha256, the in-toto statement and the manifest]
    #[arg(id = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Manifest to record the bundles in [default: OUTPUT_DIR/IMG_NAME.img.xz.manifest.json]
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// OIDC identity token (a JWT, or a file holding one) [default: GitHub Actions' token, or a browser sign-in]
    #[arg(long, env = "SIGSTORE_ID_TOKEN", hide_env_values = true)]
    pub identity_token: Option<String>,
    /// OIDC provider for the interactive sign-in [default: the signing config's, else public-good's]
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// Fulcio URL [default: the trust config's, else public-good]
    #[arg(long, value_name = "URL")]
    pub fulcio_url: Option<String>,
    /// Rekor (v1 API) URL [default: the trust config's, else public-good]
    #[arg(long, value_name = "URL")]
    pub rekor_url: Option<String>,
    /// RFC 3161 timestamp authority URL [default: the trust config's, else none]
    #[arg(long, value_name = "URL")]
    pub tsa_url: Option<String>,
    /// ClientTrustConfig JSON: the trusted root to check bundles against and the services to sign with
    #[arg(long, value_name = "FILE")]
    pub trust_config: Option<PathBuf>,
    /// Trusted root to check new bundles against (with --fulcio-url/--rekor-url)
    #[arg(long, value_name = "FILE", conflicts_with = "trust_config")]
    pub trusted_root: Option<PathBuf>,
    /// Sign with a cosign key instead (cosign's encrypted format; password in COSIGN_PASSWORD)
    #[arg(
        long,
        env = "COSIGN_KEY",
        value_name = "cosign.key",
        conflicts_with = "identity_token"
    )]
    pub key: Option<PathBuf>,
}

/// Validated input: what to sign and how, before anything is read.
#[derive(Clone)]
pub struct Input {
    pub files: Vec<PathBuf>,
    pub manifest_path: PathBuf,
    pub trusted_root: Option<PathBuf>,
    pub trust_config: Option<PathBuf>,
    pub fulcio_url: Option<String>,
    pub rekor_url: Option<String>,
    pub tsa_url: Option<String>,
    pub oidc_issuer: Option<String>,
    /// A JWT or a file holding one: never shown.
    pub identity_token: Option<String>,
    pub key: Option<PathBuf>,
    /// False when custom services are used without a trusted root for them.
    pub self_check: bool,
    /// Files were named on the command line (then a missing manifest is no error).
    pub files_named: bool,
}

impl Input {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let paths = args.image.artifact_paths()?;
        let manifest_path = args.manifest.clone().unwrap_or(paths.manifest.clone());
        let files = if args.files.is_empty() {
            // The SBOM and lock exist when collect-artifacts could read the image, and
            // SHA256SUMS once manifest ran; the manifest then lists them, and
            // `verify --manifest` wants their bundles.
            let inventory = [
                &paths.sbom,
                &paths.cyclonedx,
                &paths.lock,
                &paths.bmap,
                &paths.rpi_imager,
                &paths.sha256sums,
            ]
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .cloned();
            [paths.image.clone(), paths.checksum.clone()]
                .into_iter()
                .chain(inventory)
                .chain([paths.intoto.clone(), manifest_path.clone()])
                .collect()
        } else {
            args.files.clone()
        };
        let custom_services = args.fulcio_url.is_some() || args.rekor_url.is_some();
        let self_check =
            !custom_services || args.trusted_root.is_some() || args.trust_config.is_some();
        Ok(Self {
            files,
            manifest_path,
            trusted_root: args.trusted_root,
            trust_config: args.trust_config,
            fulcio_url: args.fulcio_url,
            rekor_url: args.rekor_url,
            tsa_url: args.tsa_url,
            oidc_issuer: args.oidc_issuer,
            identity_token: args.identity_token,
            key: args.key,
            self_check,
            files_named: !args.files.is_empty(),
        })
    }
}

/// Does all the reading: the manifest, the files to sign, the trust material and the
/// signing services it names, the credential's source (masking its secrets at once),
/// and each file's canonical path.
pub fn gather(gha: &Gha, input: &Input) -> anyhow::Result<Facts> {
    let manifest = match crate::model::manifest::load_if_present(&input.manifest_path)? {
        Some((m, _)) => Some(m),
        None if input.files_named => None,
        None => {
            return Err(usage(format!(
                "cannot read the manifest `{}`: there is no such file; run `pi-image manifest` first, or name the files to sign",
                input.manifest_path.display()
            )));
        }
    };
    for f in &input.files {
        if !f.is_file() {
            return Err(usage(format!("`{}` is not a file to sign", f.display())));
        }
    }
    let trust = Trust::load(input.trusted_root.as_deref(), input.trust_config.as_deref())?;
    let services = Services::resolve(
        input.fulcio_url.as_deref(),
        input.rekor_url.as_deref(),
        input.tsa_url.as_deref(),
        trust.signing_config.as_ref(),
    )?;
    let credential = if let Some(path) = &input.key {
        let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
        gha.mask(&password);
        let given = path.to_string_lossy();
        if given.contains('\n') || given.contains("-----BEGIN") {
            // The key itself instead of its file name: never echoed.
            for line in given.lines() {
                gha.mask(line);
            }
            return Err(usage(
                "--key (COSIGN_KEY) holds a key's text, not a file name: write the key to a file and give its path",
            ));
        }
        if let Err(e) = std::fs::symlink_metadata(path) {
            return Err(usage(format!(
                "cannot read the key `{}`: {e}",
                path.display()
            )));
        }
        Credential::Key {
            path: path.clone(),
            password,
            text: crate::input::read_text("the key (--key)", path, None)?,
        }
    } else {
        let source = token::choose(
            input.identity_token.as_deref(),
            &|name| std::env::var(name).ok(),
            std::io::stdin().is_terminal(),
            input.oidc_issuer.as_deref().or(services.oidc.as_deref()),
        )?;
        for s in source.secrets() {
            gha.mask(s);
        }
        Credential::Keyless(source)
    };
    let dir = input.manifest_path.parent().unwrap_or(Path::new(""));
    let listed = manifest
        .iter()
        .flat_map(|m| m.artifacts.iter().map(|a| dir.join(&a.name)));
    let canonical = input
        .files
        .iter()
        .cloned()
        .chain([input.manifest_path.clone()])
        .chain(listed)
        .filter_map(|p| p.canonicalize().ok().map(|c| (p, c)))
        .collect();
    Ok(Facts {
        manifest,
        trust,
        services,
        credential,
        canonical,
    })
}

/// One bundle written.
#[derive(Debug, Clone)]
pub struct Signed {
    pub file: PathBuf,
    pub bundle: PathBuf,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    pub kind: Kind,
    pub log_index: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub signed: Vec<Signed>,
    pub identity: Option<String>,
    pub issuer: Option<String>,
    pub key: Option<PathBuf>,
    pub manifest_updated: Option<PathBuf>,
    pub rekor_url: String,
    /// `--trusted-root F` / `--trust-config F` for the printed commands.
    pub trust_flag: Option<(String, PathBuf)>,
}

/// Quotes an argument for a POSIX shell when it needs it.
impl Outcome {
    fn signer_flags(&self) -> String {
        match (&self.key, &self.identity, &self.issuer) {
            (Some(k), _, _) => format!(
                "--key {}",
                crate::shell::quote(&public_key_path(k).display().to_string())
            ),
            (None, Some(id), Some(iss)) => format!(
                "--certificate-identity {} --certificate-oidc-issuer {}",
                crate::shell::quote(id),
                crate::shell::quote(iss)
            ),
            _ => String::new(),
        }
    }

    /// `pi-image verify …`: the manifest when it records the bundles, else each file.
    pub fn pi_image_command(&self) -> String {
        let trust = match &self.trust_flag {
            Some((flag, path)) => format!(
                " {flag} {}",
                crate::shell::quote(&path.display().to_string())
            ),
            None => String::new(),
        };
        match &self.manifest_updated {
            Some(m) => format!(
                "pi-image verify --manifest {} {}{trust}",
                crate::shell::quote(&file_name(m)),
                self.signer_flags()
            ),
            None => self
                .signed
                .iter()
                .map(|s| {
                    format!(
                        "pi-image verify {} --bundle {} {}{trust}",
                        crate::shell::quote(&file_name(&s.file)),
                        crate::shell::quote(&file_name(&s.bundle)),
                        self.signer_flags()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The equivalent `cosign verify-blob` for each message bundle.
    pub fn cosign_commands(&self) -> String {
        let trust = match &self.trust_flag {
            Some((flag, path)) if flag == "--trusted-root" => {
                format!(
                    " --trusted-root {}",
                    crate::shell::quote(&path.display().to_string())
                )
            }
            Some(_) => " --trusted-root trusted_root.json".to_owned(),
            None => String::new(),
        };
        self.signed
            .iter()
            .filter(|s| s.kind == Kind::Blob)
            .map(|s| {
                format!(
                    "cosign verify-blob {} --bundle {} {}{trust}",
                    crate::shell::quote(&file_name(&s.file)),
                    crate::shell::quote(&file_name(&s.bundle)),
                    self.signer_flags()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `cosign.key` → `cosign.pub` (where `cosign generate-key-pair` puts it).
fn public_key_path(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

/// sign's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// The Sigstore bundles written, space-separated
    pub bundles: String,
    /// The signing certificate's identity (empty for key-signed bundles)
    pub certificate_identity: String,
    /// The signing certificate's OIDC issuer
    pub certificate_oidc_issuer: String,
    /// The transparency log index of each bundle, space-separated
    pub rekor_log_indexes: String,
    /// The `pi-image verify` command users run to check the bundles
    pub verify_command: String,
    /// The equivalent `cosign verify-blob` commands
    pub cosign_verify_command: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            bundles: self
                .signed
                .iter()
                .map(|s| s.bundle.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            certificate_identity: self.identity.clone().unwrap_or_default(),
            certificate_oidc_issuer: self.issuer.clone().unwrap_or_default(),
            rekor_log_indexes: self
                .signed
                .iter()
                .map(|s| s.log_index.map(|i| i.to_string()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" "),
            verify_command: self.pi_image_command(),
            cosign_verify_command: self.cosign_commands(),
        }
    }

    fn summary(&self) -> String {
        let mut s = String::from("### sign\n\n");
        match (&self.key, &self.identity) {
            (Some(k), _) => s.push_str(&format!(
                "Signed with the key `{}`.\n\n",
                md_cell(&k.display().to_string())
            )),
            (None, Some(id)) => s.push_str(&format!(
                "Signed as `{}` (issuer `{}`), logged in {}.\n\n",
                md_cell(id),
                md_cell(self.issuer.as_deref().unwrap_or("?")),
                md_cell(&self.rekor_url)
            )),
            _ => {}
        }
        s.push_str("| File | Bundle | Kind | Rekor log index |\n| --- | --- | --- | --- |\n");
        for b in &self.signed {
            s.push_str(&format!(
                "| `{}` | `{}` | {} | {} |\n",
                md_cell(&file_name(&b.file)),
                md_cell(&file_name(&b.bundle)),
                match b.kind {
                    Kind::Blob => "signature",
                    Kind::Attestation => "in-toto attestation (DSSE)",
                },
                b.log_index.map(|i| i.to_string()).unwrap_or_default()
            ));
        }
        s.push_str(&format!(
            "\nVerify:\n\n```sh\n{}\n```\n\nor with cosign:\n\n```sh\n{}\n```\n\n",
            self.pi_image_command(),
            self.cosign_commands()
        ));
        s
    }
}

/// Gets the key (token + Fulcio, or the cosign key), then signs every item.
pub async fn run(gha: &Gha, input: &Input, facts: &Facts, plan: &Plan) -> anyhow::Result<Outcome> {
    let items = &plan.items;
    let http = signing::http_client()?;
    let (key, key_path) = match &facts.credential {
        Credential::Keyless(source) => {
            let token = token::fetch(source, &http).await.with_context(|| {
                format!("cannot get an identity token from {}", source.describe())
            })?;
            gha.mask(token.expose_secret());
            token::check(&token, jiff::Timestamp::now())?;
            tracing::info!(
                "signing as `{}` (issuer {}) with Fulcio {} and Rekor {}",
                token.identity(),
                token.issuer(),
                facts.services.fulcio,
                facts.services.rekor
            );
            (
                SigningKey::keyless(&facts.services.fulcio, &http, &token).await?,
                None,
            )
        }
        Credential::Key {
            path,
            password,
            text,
        } => {
            // Decrypted before any service is contacted: a wrong password costs nothing
            // and leaves no bundle or log entry behind.
            let der = keyfile::decrypt(text, password.as_bytes(), &path.display().to_string())?;
            let key = SigningKey::from_pkcs8(&der).map_err(|e| {
                usage(format!(
                    "the key `{}` cannot sign: {e:#} (pi-image signs with ECDSA P-256 keys, cosign's default)",
                    path.display()
                ))
            })?;
            tracing::info!(
                "signing with the key `{}` and Rekor {}",
                path.display(),
                facts.services.rekor
            );
            (key, Some(path.clone()))
        }
    };
    let (identity, issuer) = match &key.certificate {
        Some(cert) => {
            let info = sigstore_sign::crypto::parse_certificate_info(cert)
                .context("Fulcio's certificate does not parse")?;
            (info.identity.map(|i| i.as_str().to_owned()), info.issuer)
        }
        None => (None, None),
    };
    let verifier = if input.self_check {
        Some(sigstore::verifier(&facts.trust)?)
    } else {
        tracing::warn!(
            "custom --fulcio-url/--rekor-url without --trusted-root or --trust-config: new bundles are not checked against a trusted root"
        );
        None
    };
    let signer = Signer {
        services: facts.services.clone(),
        key,
        http,
    };
    // Only now, with the credential in hand, is anything written: one writer per
    // directory at a time (collect-artifacts, sign), so no run removes another live
    // run's partial files.
    let mut locks = Vec::new();
    let mut locked = std::collections::BTreeSet::new();
    for i in items {
        let dir = i
            .bundle
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if locked.insert(dir.clone()) {
            locks.push(crate::atomic::DirLock::acquire(&dir)?);
        }
        if let Some(lock) = locks.last() {
            crate::atomic::remove_stale_partials(&i.bundle, lock);
        }
    }
    let mut outcome = Outcome {
        identity,
        issuer,
        key: key_path,
        rekor_url: facts.services.rekor.clone(),
        trust_flag: facts
            .trust
            .flag()
            .map(|(f, p)| (f.to_owned(), p.to_path_buf())),
        ..Outcome::default()
    };
    let mut manifest = facts.manifest.clone();
    for item in items {
        if item.is_manifest
            && let Some(m) = &manifest
            && !outcome.signed.is_empty()
        {
            record_bundles(facts, &input.manifest_path, m.clone(), &outcome.signed)?;
            outcome.manifest_updated = Some(input.manifest_path.clone());
            manifest = None;
        }
        crate::atomic::check_interrupted()?;
        let signed = sign_one(&signer, verifier.as_ref(), item)
            .await
            .with_context(|| format!("cannot sign `{}`", item.path.display()))?;
        gha.line(&format!(
            "signed {} -> {}{}",
            item.path.display(),
            signed.bundle.display(),
            signed
                .log_index
                .map(|i| format!(" (Rekor log index {i})"))
                .unwrap_or_default()
        ));
        outcome.signed.push(signed);
    }
    // The manifest was not among the files: still record the bundles in it.
    if let Some(m) = manifest
        && items.iter().all(|i| !i.is_manifest)
        && outcome
            .signed
            .iter()
            .any(|s| listed(facts, &input.manifest_path, &m, &s.file))
    {
        record_bundles(facts, &input.manifest_path, m, &outcome.signed)?;
        outcome.manifest_updated = Some(input.manifest_path.clone());
    }
    Ok(outcome)
}

fn listed(facts: &Facts, manifest_path: &Path, m: &Manifest, file: &Path) -> bool {
    let dir = manifest_path.parent().unwrap_or(Path::new(""));
    m.artifacts
        .iter()
        .any(|a| facts.same_file(&dir.join(&a.name), file))
}

/// Writes each bundle's name and digest into the manifest's artifacts (atomically).
fn record_bundles(
    facts: &Facts,
    path: &Path,
    mut m: Manifest,
    signed: &[Signed],
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(""));
    for a in &mut m.artifacts {
        if let Some(s) = signed
            .iter()
            .find(|s| facts.same_file(&dir.join(&a.name), &s.file))
        {
            a.bundle = Some(BundleRef {
                name: file_name(&s.bundle),
                sha256: s.bundle_sha256.clone(),
                size_bytes: s.bundle_size,
            });
        }
    }
    crate::atomic::write(path, to_canonical_json(&m)?.as_bytes())
        .with_context(|| format!("cannot update the manifest `{}`", path.display()))
}

async fn sign_one(
    signer: &Signer,
    verifier: Option<&sigstore_verify::Verifier>,
    item: &Item,
) -> anyhow::Result<Signed> {
    let (bundle, check_digest) = match item.kind {
        Kind::Blob => {
            let (digest, _) = signing::sha256_file(&item.path)?;
            check_recorded(item, &digest.to_hex())?;
            (signer.sign_digest(&digest).await?, digest)
        }
        Kind::Attestation => {
            let bytes = std::fs::read(&item.path)
                .with_context(|| format!("cannot read `{}`", item.path.display()))?;
            let (digest, _) = signing::sha256_file(&item.path)?;
            check_recorded(item, &digest.to_hex())?;
            let subjects = sigstore::statement_subjects(&bytes);
            let Some((_, first)) = subjects.first() else {
                return Err(usage(format!(
                    "`{}` is not an in-toto statement with SHA-256 subjects",
                    item.path.display()
                )));
            };
            let first = sigstore_types::Sha256Hash::from_hex(first)
                .map_err(|e| anyhow::anyhow!("bad subject digest `{first}`: {e}"))?;
            (signer.sign_statement(&bytes).await?, first)
        }
    };
    if let Some(v) = verifier {
        signing::self_check(v, &bundle, &check_digest, &signer.key)?;
    }
    let mut json = bundle
        .to_json_pretty()
        .context("cannot serialise the bundle")?;
    json.push('\n');
    crate::atomic::write(&item.bundle, json.as_bytes())?;
    Ok(Signed {
        file: item.path.clone(),
        bundle: item.bundle.clone(),
        bundle_sha256: crate::checksum::hex(&sigstore::sha2_digest(json.as_bytes())),
        bundle_size: json.len() as u64,
        kind: item.kind,
        log_index: bundle
            .verification_material
            .tlog_entries
            .first()
            .map(|e| e.log_index.get()),
    })
}

fn check_recorded(item: &Item, actual: &str) -> anyhow::Result<()> {
    match &item.expect_sha256 {
        Some(want) if want != actual => Err(usage(format!(
            "`{}` changed after the manifest was written (manifest sha256 {want}, file {actual}); run `pi-image manifest` again",
            item.path.display()
        ))),
        _ => Ok(()),
    }
}

/// Entry point: parse → gather → plan → sign → publish.
pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    crate::atomic::install_signal_handlers()?;
    let input = Input::from_args(args)?;
    let facts = gather(gha, &input)?;
    let plan = plan(&input, &facts);
    if gha.print_plan(&plan)? {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = rt.block_on(run(gha, &input, &facts, &plan))?;
    gha.publish(&outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigstore::GITHUB_ISSUER;

    #[test]
    fn pasted_commands_quote_only_what_needs_it() {
        assert_eq!(crate::shell::quote("a.img.xz"), "a.img.xz");
        assert_eq!(
            crate::shell::quote("https://github.com/o/r/.github/workflows/x.yml@refs/tags/v1"),
            "https://github.com/o/r/.github/workflows/x.yml@refs/tags/v1"
        );
        assert_eq!(crate::shell::quote("a b'c"), "'a b'\\''c'");
    }

    #[test]
    fn verify_commands_name_the_signer() {
        let o = Outcome {
            signed: vec![Signed {
                file: "out/x.img.xz".into(),
                bundle: "out/x.img.xz.sigstore.json".into(),
                bundle_sha256: String::new(),
                bundle_size: 0,
                kind: Kind::Blob,
                log_index: Some(3),
            }],
            identity: Some("https://github.com/o/r/.github/workflows/r.yml@refs/tags/v1".into()),
            issuer: Some(GITHUB_ISSUER.into()),
            ..Outcome::default()
        };
        assert_eq!(
            o.cosign_commands(),
            "cosign verify-blob x.img.xz --bundle x.img.xz.sigstore.json --certificate-identity https://github.com/o/r/.github/workflows/r.yml@refs/tags/v1 --certificate-oidc-issuer https://token.actions.githubusercontent.com"
        );
        assert!(o.pi_image_command().starts_with(
            "pi-image verify x.img.xz --bundle x.img.xz.sigstore.json --certificate-identity"
        ));
    }
}
