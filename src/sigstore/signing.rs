//! Signing: one signing key per run (an ephemeral key certified by Fulcio for keyless,
//! or a cosign key), then per file a SHA-256 streamed from disk, a signature over the
//! digest (or over the DSSE PAE of an in-toto statement), a Rekor entry, an optional
//! RFC 3161 timestamp, and a v0.3 bundle. Built from sigstore-rust's clients and types.
//!
//! The Rekor v1 entries are built here rather than by `sigstore-rekor`, because that
//! crate writes the certificate as CRLF PEM (the `pem` crate's default). Real Rekor
//! re-encodes the key before logging it, but a log that stores the proposed entry as
//! sent (the Sigstore mock, or anything non-canonicalising) then holds a body that
//! cosign, sigstore-python and sigstore-go reconstruct differently ("transparency log
//! entry is inconsistent"). We send what cosign sends and Rekor stores: LF PEM.

use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use sigstore_oidc::IdentityToken;
use sigstore_sign::bundle::{BundleV03, VerificationMaterialV03};
use sigstore_sign::crypto::KeyPair;
use sigstore_sign::fulcio::FulcioClient;
use sigstore_sign::rekor::{
    DsseEntry, HashedRekord, HashedRekordV2, RekorClient, RekorV2Client, RekorV2KeyDetails,
};
use sigstore_sign::reqwest;
use sigstore_sign::tsa::TimestampClient;
use sigstore_trust_root::SigningConfig;
use sigstore_types::bundle::{MessageDigest, MessageSignature};
use sigstore_types::{
    Bundle, DerCertificate, DsseEnvelope, DsseSignature, HashAlgorithm, KeyId, KindVersion,
    PayloadBytes, Sha256Hash, SignatureBytes, SignatureContent, TransparencyLogEntry,
};

use super::INTOTO_PAYLOAD_TYPE;
use crate::error::usage;

/// Public-good Sigstore's services (used when no URL or trust config says otherwise).
pub const PUBLIC_GOOD_FULCIO: &str = "https://fulcio.sigstore.dev";
pub const PUBLIC_GOOD_REKOR: &str = "https://rekor.sigstore.dev";

/// Where signatures go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    pub fulcio: String,
    pub rekor: String,
    pub rekor_v2: bool,
    pub tsa: Option<String>,
    pub oidc: Option<String>,
}

impl Services {
    /// Explicit URLs win over the signing config, which wins over public-good. Pure.
    pub fn resolve(
        fulcio: Option<&str>,
        rekor: Option<&str>,
        tsa: Option<&str>,
        config: Option<&SigningConfig>,
    ) -> anyhow::Result<Self> {
        let from_config = config.map(|c| {
            let rekor = c.rekor_url(Some(1)).or_else(|| c.rekor_url(None));
            (
                c.fulcio_url().map(|e| e.url.clone()),
                rekor.map(|e| (e.url.clone(), e.major_api_version == 2)),
                c.tsa_url().map(|e| e.url.clone()),
                c.oidc_url().map(|e| e.url.clone()),
            )
        });
        let (cfg_fulcio, cfg_rekor, cfg_tsa, cfg_oidc) = from_config.unwrap_or_default();
        let (rekor, rekor_v2) = match (rekor, cfg_rekor) {
            (Some(r), _) => (r.to_owned(), false),
            (None, Some((r, v2))) => (r, v2),
            (None, None) if config.is_some() => {
                return Err(usage(
                    "the trust config's signingConfig names no Rekor log (rekorTlogUrls); pass --rekor-url",
                ));
            }
            (None, None) => (PUBLIC_GOOD_REKOR.to_owned(), false),
        };
        let fulcio = match (fulcio, cfg_fulcio) {
            (Some(f), _) => f.to_owned(),
            (None, Some(f)) => f,
            (None, None) if config.is_some() => {
                return Err(usage(
                    "the trust config's signingConfig names no Fulcio (caUrls); pass --fulcio-url",
                ));
            }
            (None, None) => PUBLIC_GOOD_FULCIO.to_owned(),
        };
        let tsa = tsa.map(str::to_owned).or(cfg_tsa);
        if rekor_v2 && tsa.is_none() {
            return Err(usage(
                "the Rekor log is a v2 log, which needs a timestamp authority: pass --tsa-url or use a signing config with tsaUrls",
            ));
        }
        for (flag, url) in [("--fulcio-url", &fulcio), ("--rekor-url", &rekor)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(usage(format!("{flag} `{url}` is not an http(s) URL")));
            }
        }
        Ok(Self {
            fulcio: fulcio.trim_end_matches('/').to_owned(),
            rekor: rekor.trim_end_matches('/').to_owned(),
            rekor_v2,
            tsa,
            oidc: cfg_oidc,
        })
    }
}

/// The key every signature of this run is made with.
pub struct SigningKey {
    key: KeyPair,
    /// The Fulcio certificate (keyless), absent for a cosign key.
    pub certificate: Option<DerCertificate>,
    /// What Rekor logs as the verifier: the certificate or public key, LF PEM.
    verifier_pem: String,
    /// For key-signed bundles: the key hint (base64 SHA-256 of the SPKI).
    hint: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("keyless", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

/// PEM with LF line endings, 64 columns, as Go's `pem.Encode` writes it.
pub fn lf_pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

impl SigningKey {
    /// An ephemeral P-256 key certified by Fulcio for `token`'s identity.
    pub async fn keyless(
        fulcio_url: &str,
        http: &reqwest::Client,
        token: &IdentityToken,
    ) -> anyhow::Result<Self> {
        let key = KeyPair::generate_ecdsa_p256().context("cannot generate a signing key")?;
        let fulcio = FulcioClient::builder(fulcio_url)
            .with_http_client(http.clone())
            .build()
            .context("cannot set up the Fulcio client")?;
        let cert = fulcio
            .create_signing_certificate(token, &key)
            .await
            .with_context(|| format!("Fulcio at {fulcio_url} did not issue a signing certificate"))?
            .leaf_certificate()
            .clone();
        let verifier_pem = lf_pem("CERTIFICATE", cert.as_bytes());
        Ok(Self {
            key,
            certificate: Some(cert),
            verifier_pem,
            hint: String::new(),
        })
    }

    /// A key loaded from PKCS#8 DER (a decrypted cosign key).
    pub fn from_pkcs8(der: &[u8]) -> anyhow::Result<Self> {
        let key = KeyPair::from_pkcs8_der(der)
            .map_err(|e| anyhow::anyhow!("the private key is not usable for signing: {e}"))?;
        let public = key
            .public_key_der()
            .context("cannot export the public key")?;
        let verifier_pem = lf_pem("PUBLIC KEY", public.as_bytes());
        let hint =
            base64::engine::general_purpose::STANDARD.encode(super::sha2_digest(public.as_bytes()));
        Ok(Self {
            key,
            certificate: None,
            verifier_pem,
            hint,
        })
    }

    /// The public key, PEM (for `cosign verify-blob --key`).
    pub fn public_key_pem(&self) -> anyhow::Result<String> {
        let public = self
            .key
            .public_key_der()
            .context("cannot export the public key")?;
        Ok(lf_pem("PUBLIC KEY", public.as_bytes()))
    }

    fn material(&self) -> VerificationMaterialV03 {
        match &self.certificate {
            Some(c) => VerificationMaterialV03::Certificate(c.clone()),
            None => VerificationMaterialV03::PublicKey {
                hint: self.hint.clone(),
            },
        }
    }

    fn verifier_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.verifier_pem.as_bytes())
    }
}

/// Submits signatures of one run.
#[derive(Debug)]
pub struct Signer {
    pub services: Services,
    pub key: SigningKey,
    pub http: reqwest::Client,
}

impl Signer {
    /// A message signature over an artifact's SHA-256, logged as hashedrekord.
    pub async fn sign_digest(&self, digest: &Sha256Hash) -> anyhow::Result<Bundle> {
        let signature = self
            .key
            .key
            .sign_digest(digest)
            .context("cannot sign the digest")?;
        let entry = if self.services.rekor_v2 {
            self.log_v2(digest, &signature).await?
        } else {
            let request: HashedRekord = serde_json::from_value(serde_json::json!({
                "apiVersion": "0.0.1",
                "kind": "hashedrekord",
                "spec": {
                    "data": { "hash": { "algorithm": "sha256", "value": digest.to_hex() } },
                    "signature": {
                        "content": base64::engine::general_purpose::STANDARD.encode(signature.as_bytes()),
                        "publicKey": { "content": self.key.verifier_b64() },
                    },
                },
            }))
            .context("cannot build the hashedrekord entry")?;
            let logged = self
                .rekor_v1()?
                .create_entry(request)
                .await
                .with_context(|| self.rekor_failed())?;
            to_bundle_entry(&logged, KindVersion::HashedRekordV001)?
        };
        let content = SignatureContent::MessageSignature(
            MessageSignature::new(signature.clone())
                .with_message_digest(MessageDigest::new(HashAlgorithm::Sha2256, (*digest).into())),
        );
        self.finish(
            BundleV03::new(self.key.material(), content),
            entry,
            &signature,
        )
        .await
    }

    /// A DSSE envelope over an in-toto statement, logged as dsse.
    pub async fn sign_statement(&self, statement: &[u8]) -> anyhow::Result<Bundle> {
        let _: serde_json::Value =
            serde_json::from_slice(statement).context("the in-toto statement is not JSON")?;
        let pae = sigstore_types::dsse::pae(INTOTO_PAYLOAD_TYPE, statement);
        let signature = self
            .key
            .key
            .sign(&pae)
            .context("cannot sign the statement")?;
        let envelope = DsseEnvelope::new(
            INTOTO_PAYLOAD_TYPE,
            PayloadBytes::from_bytes(statement),
            DsseSignature::new(signature.clone(), KeyId::default()),
        );
        let entry = if self.services.rekor_v2 {
            self.log_v2(&sigstore_sign::crypto::sha256(&pae), &signature)
                .await?
        } else {
            let envelope_json =
                serde_json::to_string(&envelope).context("cannot serialise the envelope")?;
            let request: DsseEntry = serde_json::from_value(serde_json::json!({
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "proposedContent": {
                        "envelope": envelope_json,
                        "verifiers": [self.key.verifier_b64()],
                    },
                },
            }))
            .context("cannot build the dsse entry")?;
            let logged = self
                .rekor_v1()?
                .create_dsse_entry(request)
                .await
                .with_context(|| self.rekor_failed())?;
            to_bundle_entry(&logged, KindVersion::DsseV001)?
        };
        let content = SignatureContent::DsseEnvelope(envelope);
        self.finish(
            BundleV03::new(self.key.material(), content),
            entry,
            &signature,
        )
        .await
    }

    async fn finish(
        &self,
        bundle: BundleV03,
        entry: TransparencyLogEntry,
        signature: &SignatureBytes,
    ) -> anyhow::Result<Bundle> {
        let mut bundle = bundle.with_tlog_entry(entry);
        if let Some(tsa) = &self.services.tsa {
            let client = TimestampClient::builder(tsa)
                .with_http_client(self.http.clone())
                .build()
                .context("cannot set up the timestamp authority client")?;
            let ts = client
                .timestamp_signature(signature)
                .await
                .with_context(|| {
                    format!("no valid timestamp from the timestamp authority at {tsa}")
                })?;
            bundle = bundle.with_rfc3161_timestamp(ts);
        }
        Ok(bundle.into_bundle())
    }

    /// Logs a signature over `digest` in a Rekor v2 log (a hashedrekord v0.0.2 entry,
    /// also for DSSE, whose digest is that of the envelope's PAE).
    async fn log_v2(
        &self,
        digest: &Sha256Hash,
        signature: &SignatureBytes,
    ) -> anyhow::Result<TransparencyLogEntry> {
        let request = HashedRekordV2::new_with_certificate(
            digest,
            signature,
            self.v2_certificate()?,
            RekorV2KeyDetails::PkixEcdsaP256Sha256,
        );
        self.rekor_v2()?
            .create_entry(request)
            .await
            .with_context(|| self.rekor_failed())
    }

    fn v2_certificate(&self) -> anyhow::Result<&DerCertificate> {
        self.key.certificate.as_ref().ok_or_else(|| {
            usage("key-based signing needs a Rekor v1 log; pass --rekor-url for one")
        })
    }

    fn rekor_v1(&self) -> anyhow::Result<RekorClient> {
        RekorClient::builder(&self.services.rekor)
            .with_http_client(self.http.clone())
            .build()
            .context("cannot set up the Rekor client")
    }

    fn rekor_v2(&self) -> anyhow::Result<RekorV2Client> {
        RekorV2Client::builder(&self.services.rekor)
            .with_http_client(self.http.clone())
            .build()
            .context("cannot set up the Rekor client")
    }

    fn rekor_failed(&self) -> String {
        format!("Rekor at {} did not log the signature", self.services.rekor)
    }
}

fn to_bundle_entry(
    entry: &sigstore_sign::rekor::LogEntry,
    kind: KindVersion,
) -> anyhow::Result<TransparencyLogEntry> {
    entry
        .to_bundle_entry(kind)
        .map_err(|e| anyhow::anyhow!("Rekor's answer is not a usable log entry: {e}"))
}

/// SHA-256 of a file, streamed in 1 MiB reads: constant memory whatever its size.
pub fn sha256_file(path: &Path) -> anyhow::Result<(Sha256Hash, u64)> {
    let d = crate::checksum::sha256_file(path)?;
    let hash = Sha256Hash::from_hex(&d.sha256)
        .map_err(|e| anyhow::anyhow!("internal: bad digest: {e}"))?;
    Ok((hash, d.size))
}

/// The HTTP client for the Sigstore services and the token endpoint.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    super::install_tls_provider();
    reqwest::Client::builder()
        .user_agent(concat!("pi-image/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot set up the HTTP client")
}

/// Checks a fresh bundle before it is written, so a bundle that would not verify is
/// never published.
pub fn self_check(
    verifier: &sigstore_verify::Verifier,
    bundle: &Bundle,
    digest: &Sha256Hash,
    key: &SigningKey,
) -> anyhow::Result<()> {
    let artifact = sigstore_types::ArtifactDigest::from(*digest);
    let result = if key.certificate.is_some() {
        verifier
            .verify(
                artifact,
                bundle,
                &sigstore_verify::VerificationPolicy::any_identity(),
            )
            .map(|_| ())
    } else {
        let public = key
            .key
            .public_key_der()
            .context("cannot export the public key")?;
        verifier
            .verify(
                artifact,
                bundle,
                &sigstore_verify::PublicKeyVerificationPolicy::new(public),
            )
            .map(|_| ())
    };
    if let Err(e) = result {
        bail!("the new bundle does not verify against the trusted root ({e}); it was not written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_lf() {
        let pem = lf_pem("CERTIFICATE", &[7u8; 100]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!pem.contains('\r'));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
    }

    #[test]
    fn explicit_urls_win_over_the_signing_config_over_public_good() {
        let s = Services::resolve(None, None, None, None).unwrap();
        assert_eq!(s.fulcio, PUBLIC_GOOD_FULCIO);
        assert_eq!(s.rekor, PUBLIC_GOOD_REKOR);
        assert!(!s.rekor_v2 && s.tsa.is_none());
        let s =
            Services::resolve(Some("http://127.0.0.1:1/"), Some("http://r"), None, None).unwrap();
        assert_eq!(s.fulcio, "http://127.0.0.1:1");
        assert!(Services::resolve(Some("ftp://x"), None, None, None).is_err());
    }
}
