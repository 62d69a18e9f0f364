//! `sign`'s decision: which files become which bundles, in which order, against which
//! services. Pure: it works on the input and on what [`super::gather`] read (the
//! manifest, the trust material, the files' canonical paths).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Input;
use crate::config::file_name;
use crate::model::manifest::Manifest;
use crate::sigstore::Trust;
use crate::sigstore::signing::Services;
use crate::sigstore::token::Source;

/// How a file is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A message signature over the file's SHA-256 (`cosign sign-blob`).
    Blob,
    /// A DSSE envelope around the in-toto statement the file holds (`cosign attest-blob`).
    Attestation,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub path: PathBuf,
    pub bundle: PathBuf,
    pub kind: Kind,
    /// The digest the manifest records, checked before signing.
    pub expect_sha256: Option<String>,
    /// Whether this is the manifest (signed after it records the other bundles).
    pub is_manifest: bool,
}

/// Keyless (token source) or key-based.
#[derive(Clone)]
pub enum Credential {
    Keyless(Source),
    /// A cosign key file, its encrypted text and its password (`COSIGN_PASSWORD`,
    /// empty when unset).
    Key {
        path: PathBuf,
        password: String,
        text: String,
    },
}

// By hand, so that no debug log can print the password.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keyless(source) => f.debug_tuple("Keyless").field(source).finish(),
            Self::Key { path, .. } => f
                .debug_struct("Key")
                .field("path", path)
                .finish_non_exhaustive(),
        }
    }
}

/// What was read before planning.
#[derive(Debug, Clone)]
pub struct Facts {
    pub manifest: Option<Manifest>,
    pub trust: Trust,
    pub services: Services,
    pub credential: Credential,
    /// Each file to sign, the manifest and every file it lists, resolved through
    /// symlinks and `..` where it exists: two names of one file are signed once.
    pub canonical: BTreeMap<PathBuf, PathBuf>,
}

impl Facts {
    /// Whether `a` and `b` name the same file.
    pub fn same_file(&self, a: &Path, b: &Path) -> bool {
        let resolve = |p: &Path| self.canonical.get(p).cloned();
        match (resolve(a), resolve(b)) {
            (Some(a), Some(b)) => a == b,
            _ => a == b,
        }
    }
}

/// Everything `run` will do, in order, and with whose key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub items: Vec<Item>,
    /// `keyless: <token source>` or `key: <path>`: never the secret.
    pub signer: String,
    /// Asked for a certificate (keyless only).
    pub fulcio: Option<String>,
    pub rekor: String,
    pub tsa: Option<String>,
    /// Every new bundle is verified against the trusted root before it is written.
    pub self_check: bool,
}

/// What to sign, in which order: everything but the manifest, then the manifest (it
/// records the other bundles first). `*.intoto.json` files are attestations. Pure.
pub fn plan(input: &Input, facts: &Facts) -> Plan {
    let manifest_dir = input.manifest_path.parent().unwrap_or(Path::new(""));
    let recorded = |path: &Path| {
        facts.manifest.as_ref().and_then(|m| {
            m.artifacts
                .iter()
                .find(|a| facts.same_file(&manifest_dir.join(&a.name), path))
                .map(|a| a.sha256.clone())
        })
    };
    // A file named twice (`a` and `./a`, or through a symlink) is signed once.
    let first_names = input.files.iter().enumerate().filter(|(i, path)| {
        !input.files[..*i]
            .iter()
            .any(|earlier| facts.same_file(earlier, path))
    });
    let mut items: Vec<Item> = first_names
        .map(|(_, path)| Item {
            path: path.clone(),
            bundle: crate::sigstore::bundle_path_for(path),
            kind: if file_name(path).ends_with(".intoto.json") {
                Kind::Attestation
            } else {
                Kind::Blob
            },
            expect_sha256: recorded(path),
            is_manifest: facts.same_file(path, &input.manifest_path),
        })
        .collect();
    items.sort_by_key(|i| i.is_manifest);
    let (signer, fulcio) = match &facts.credential {
        Credential::Keyless(source) => (
            format!("keyless: {}", source.describe()),
            Some(facts.services.fulcio.clone()),
        ),
        Credential::Key { path, .. } => (format!("key: {}", path.display()), None),
    };
    Plan {
        items,
        signer,
        fulcio,
        rekor: facts.services.rekor.clone(),
        tsa: facts.services.tsa.clone(),
        self_check: input.self_check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_signed_last_and_statements_are_attestations() {
        let m = PathBuf::from("out/x.img.xz.manifest.json");
        let input = Input {
            files: vec![
                m.clone(),
                "out/x.img.xz".into(),
                "out/x.intoto.json".into(),
                // Another name of the image: signed once.
                "out/../out/x.img.xz".into(),
            ],
            manifest_path: m.clone(),
            trusted_root: None,
            trust_config: None,
            fulcio_url: None,
            rekor_url: None,
            tsa_url: None,
            oidc_issuer: None,
            identity_token: None,
            key: None,
            self_check: true,
            files_named: true,
        };
        let facts = Facts {
            manifest: None,
            trust: Trust::public_good().unwrap(),
            services: Services::resolve(None, None, None, None).unwrap(),
            credential: Credential::Keyless(Source::Given("a.b.c".into())),
            canonical: [
                ("out/x.img.xz", "/w/out/x.img.xz"),
                ("out/../out/x.img.xz", "/w/out/x.img.xz"),
                ("out/x.intoto.json", "/w/out/x.intoto.json"),
                (
                    "out/x.img.xz.manifest.json",
                    "/w/out/x.img.xz.manifest.json",
                ),
            ]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect(),
        };
        let plan = plan(&input, &facts);
        let items = &plan.items;
        assert_eq!(items.len(), 3, "{items:#?}");
        assert!(items[2].is_manifest && items[2].path == m);
        assert_eq!(items[1].kind, Kind::Attestation);
        assert_eq!(items[0].kind, Kind::Blob);
        assert_eq!(items[0].bundle, PathBuf::from("out/x.img.xz.sigstore.json"));
        assert_eq!(plan.signer, "keyless: the given identity token");
        assert!(plan.fulcio.is_some());
    }
}
