//! cosign's encrypted private keys (`cosign generate-key-pair`, `cosign.key`).
//!
//! The file is one PEM block, `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign before 2.0 wrote
//! `ENCRYPTED COSIGN PRIVATE KEY`), whose body is the JSON that go-securesystemslib's
//! `encrypted.Encrypt` writes (Go marshals `[]byte` as padded standard base64):
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<32 bytes>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<24 bytes>"},
//!  "ciphertext":"<secretbox>"}
//! ```
//!
//! key = scrypt(password, salt, N, r, p, 32); plaintext = secretbox-open(ciphertext,
//! nonce, key) = the PKCS#8 DER of the private key (ECDSA P-256 by default).

use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::usage;

/// The PEM labels cosign reads (`LoadPrivateKey`): the current one, then the pre-2.0 one.
pub const PEM_LABELS: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];

#[derive(Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Whether scrypt parameters are ones cosign writes. cosign writes N=2^15, r=8, p=1;
/// newer go-securesystemslib also reads the stronger 2^16 and 2^17 sets. Anything else
/// is refused rather than run, so an edited key file cannot make us allocate gigabytes
/// (memory is 128·N·r bytes: 128 MiB at most here).
fn params_allowed(p: &ScryptParams) -> bool {
    matches!(p.n, 32_768 | 65_536 | 131_072) && p.r == 8 && p.p == 1
}

/// Decrypts a cosign key file's text to the private key's PKCS#8 DER. `name` names the
/// file in messages. Every failure is the caller's (a wrong file or password): exit 2.
pub fn decrypt(pem_text: &str, password: &[u8], name: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let block =
        pem::parse(pem_text).map_err(|e| usage(format!("`{name}` is not a PEM file ({e})")))?;
    if !PEM_LABELS.contains(&block.tag()) {
        return Err(usage(format!(
            "`{name}` holds a `{}` PEM block, not a cosign private key ({}); create one with `cosign generate-key-pair` or `cosign import-key-pair`",
            block.tag(),
            PEM_LABELS[0]
        )));
    }
    let bad = |what: &str| usage(format!("`{name}` is not a cosign private key: {what}"));
    let env: Envelope = serde_json::from_slice(block.contents())
        .map_err(|e| bad(&format!("its body is not the expected JSON ({e})")))?;
    if env.kdf.name != "scrypt" {
        return Err(bad(&format!("unknown KDF `{}`", env.kdf.name)));
    }
    if env.cipher.name != "nacl/secretbox" {
        return Err(bad(&format!("unknown cipher `{}`", env.cipher.name)));
    }
    if !params_allowed(&env.kdf.params) {
        let p = &env.kdf.params;
        return Err(bad(&format!(
            "unexpected scrypt parameters N={} r={} p={}",
            p.n, p.r, p.p
        )));
    }
    let b64 = |field: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| bad(&format!("`{field}` is not base64 ({e})")))
    };
    let salt = b64("kdf.salt", &env.kdf.salt)?;
    let nonce = b64("cipher.nonce", &env.cipher.nonce)?;
    let ciphertext = b64("ciphertext", &env.ciphertext)?;
    if nonce.len() != 24 {
        return Err(bad(&format!("the nonce has {} bytes, not 24", nonce.len())));
    }
    let log_n = u8::try_from(env.kdf.params.n.trailing_zeros()).map_err(|_| bad("bad N"))?;
    let params = scrypt::Params::new(log_n, env.kdf.params.r, env.kdf.params.p, 32)
        .map_err(|e| bad(&format!("bad scrypt parameters ({e})")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, &salt, &params, key.as_mut())
        .map_err(|e| anyhow::anyhow!("internal: scrypt: {e}"))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.as_ref().into());
    // secretbox authenticates before it decrypts: a wrong password fails the tag check,
    // nothing else can tell it apart from a damaged file.
    let plaintext = cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| usage(format!("cannot decrypt {name}: wrong COSIGN_PASSWORD?")))?;
    Ok(Zeroizing::new(plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encrypts as go-securesystemslib does, with the cheapest parameters the reader
    /// refuses, to test the refusal, and with the real ones for the round trip.
    fn encrypt(plain: &[u8], password: &[u8], n: u64, label: &str) -> String {
        let salt = [7u8; 32];
        let nonce = [9u8; 24];
        let params =
            scrypt::Params::new(u8::try_from(n.trailing_zeros()).unwrap(), 8, 1, 32).unwrap();
        let mut key = [0u8; 32];
        scrypt::scrypt(password, &salt, &params, &mut key).unwrap();
        let ct = crypto_secretbox::XSalsa20Poly1305::new((&key).into())
            .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), plain)
            .unwrap();
        let b = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        let body = serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b(&salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b(&nonce)},
            "ciphertext": b(&ct),
        });
        pem::encode(&pem::Pem::new(label, serde_json::to_vec(&body).unwrap()))
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let text = encrypt(b"pkcs8 bytes", b"s3cret", 32_768, PEM_LABELS[0]);
        assert_eq!(
            decrypt(&text, b"s3cret", "k").unwrap().as_slice(),
            b"pkcs8 bytes"
        );
        let err = decrypt(&text, b"wrong", "cosign.key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot decrypt cosign.key: wrong COSIGN_PASSWORD?"
        );
        assert!(err.downcast_ref::<crate::error::UsageError>().is_some());
        // The pre-2.0 label and an empty password.
        let old = encrypt(b"x", b"", 32_768, PEM_LABELS[1]);
        assert_eq!(decrypt(&old, b"", "k").unwrap().as_slice(), b"x");
    }

    #[test]
    fn refuses_other_files_and_parameters() {
        let weak = encrypt(b"x", b"", 1024, PEM_LABELS[0]);
        assert!(
            decrypt(&weak, b"", "k")
                .unwrap_err()
                .to_string()
                .contains("unexpected scrypt parameters N=1024")
        );
        let other = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(
            decrypt(&other, b"", "k")
                .unwrap_err()
                .to_string()
                .contains("`PRIVATE KEY` PEM block")
        );
        assert!(decrypt("not pem", b"", "k").is_err());
        let junk = pem::encode(&pem::Pem::new(PEM_LABELS[0], b"{}".to_vec()));
        assert!(
            decrypt(&junk, b"", "k")
                .unwrap_err()
                .to_string()
                .contains("not the expected JSON")
        );
    }
}
