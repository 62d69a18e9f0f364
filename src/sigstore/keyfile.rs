//! cosign's encrypted private keys (`cosign generate-key-pair`): not supported yet.
//! The format (scrypt N=32768 r=8 p=1, then NaCl secretbox around PKCS#8 DER, in an
//! `ENCRYPTED SIGSTORE PRIVATE KEY` PEM block) is documented in cosign's
//! `pkg/cosign/keys.go`; key-signed bundles already verify (`verify --key`).

use crate::error::usage;

/// Decrypts a cosign key file to PKCS#8 DER.
pub fn decrypt(_pem: &str, _password: &[u8]) -> anyhow::Result<Vec<u8>> {
    Err(usage(
        "signing with a cosign key (--key) is not supported by this version of pi-image; sign keyless (GitHub Actions with `permissions: id-token: write`, --identity-token, or a browser sign-in)",
    ))
}
