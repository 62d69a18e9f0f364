//! Where the OIDC identity token for keyless signing comes from: given (`--identity-token`
//! or `SIGSTORE_ID_TOKEN`, a JWT or a file holding one), GitHub Actions' token endpoint
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN`, audience `sigstore`), or an interactive
//! browser flow when a person runs the command. Tokens are never printed.

use std::path::Path;

use anyhow::Context as _;
use sigstore_oidc::IdentityToken;
use sigstore_sign::reqwest;

use crate::error::usage;

/// The audience Fulcio requires.
pub const AUDIENCE: &str = "sigstore";
/// Public-good Sigstore's OIDC provider, for the interactive flow.
pub const DEFAULT_OIDC_ISSUER: &str = "https://oauth2.sigstore.dev/auth";

/// How the token will be obtained.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    Given(String),
    GitHubActions { url: String, request_token: String },
    Interactive { oidc_url: String },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Given(_) => f.write_str("Given(<redacted>)"),
            Source::GitHubActions { url, .. } => write!(f, "GitHubActions({url})"),
            Source::Interactive { oidc_url } => write!(f, "Interactive({oidc_url})"),
        }
    }
}

impl Source {
    pub fn describe(&self) -> &'static str {
        match self {
            Source::Given(_) => "the given identity token",
            Source::GitHubActions { .. } => "GitHub Actions' OIDC token",
            Source::Interactive { .. } => "an interactive browser sign-in",
        }
    }

    /// The secrets to mask in the log before anything is printed.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Source::Given(t) => vec![t.as_str()],
            Source::GitHubActions { request_token, .. } => vec![request_token.as_str()],
            Source::Interactive { .. } => Vec::new(),
        }
    }
}

/// Chooses the token source from the flag and the environment. Pure.
pub fn choose(
    given: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    interactive: bool,
    oidc_url: Option<&str>,
) -> anyhow::Result<Source> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(t) = given.filter(|t| !t.trim().is_empty()) {
        let t = t.trim();
        // cosign's --identity-token takes a token or a file holding one.
        if !t.contains('.') || Path::new(t).is_file() {
            let text = std::fs::read_to_string(t).map_err(|e| {
                usage(format!(
                    "--identity-token is neither a JWT nor a readable file ({e})"
                ))
            })?;
            return Ok(Source::Given(text.trim().to_owned()));
        }
        return Ok(Source::Given(t.to_owned()));
    }
    match (
        env("ACTIONS_ID_TOKEN_REQUEST_URL"),
        env("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) {
        (Some(url), Some(request_token)) => {
            return Ok(Source::GitHubActions { url, request_token });
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(usage(
                "only one of ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN is set; GitHub sets both when the job has `permissions: id-token: write`",
            ));
        }
        (None, None) => {}
    }
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        return Err(usage(
            "no OIDC token for keyless signing: ACTIONS_ID_TOKEN_REQUEST_URL is not set. The job needs `permissions: id-token: write` (and `contents: read`) in the workflow; or pass --identity-token, or --key for key-based signing",
        ));
    }
    if interactive {
        return Ok(Source::Interactive {
            oidc_url: oidc_url.unwrap_or(DEFAULT_OIDC_ISSUER).to_owned(),
        });
    }
    Err(usage(
        "no OIDC identity token: pass --identity-token (or set SIGSTORE_ID_TOKEN), run inside GitHub Actions with `permissions: id-token: write`, run from a terminal to sign in with a browser, or use --key",
    ))
}

/// The GitHub token endpoint URL with `audience=sigstore` appended.
pub fn github_token_url(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}audience={AUDIENCE}")
}

/// Obtains the token (network or browser for the last two sources).
pub async fn fetch(source: &Source, http: &reqwest::Client) -> anyhow::Result<IdentityToken> {
    let jwt = match source {
        Source::Given(t) => t.clone(),
        Source::GitHubActions { url, request_token } => {
            #[derive(serde::Deserialize)]
            struct Reply {
                value: String,
            }
            let resp = http
                .get(github_token_url(url))
                .header("Authorization", format!("bearer {request_token}"))
                .header("Accept", "application/json")
                .send()
                .await
                .context(
                    "cannot reach GitHub's OIDC token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL)",
                )?;
            let status = resp.status();
            if !status.is_success() {
                anyhow::bail!(
                    "GitHub's OIDC token endpoint answered HTTP {status}; check that the job has `permissions: id-token: write`"
                );
            }
            resp.json::<Reply>()
                .await
                .context("GitHub's OIDC token endpoint did not answer {\"value\": JWT}")?
                .value
        }
        Source::Interactive { oidc_url } => {
            return sigstore_oidc::authenticate(oidc_url)
                .await
                .context("the interactive OIDC sign-in failed");
        }
    };
    IdentityToken::from_jwt(jwt.trim())
        .map_err(|e| anyhow::anyhow!("the identity token is not a JWT: {e}"))
}

/// Refuses tokens Fulcio would refuse, with a message that says why. Pure.
pub fn check(token: &IdentityToken, now: jiff::Timestamp) -> anyhow::Result<()> {
    if token.expiration() <= now {
        anyhow::bail!(
            "the identity token expired at {} (issuer {}); get a fresh one (GitHub Actions tokens last minutes: sign right after requesting it)",
            token.expiration(),
            token.issuer()
        );
    }
    if !token.claims().aud.contains(AUDIENCE) {
        anyhow::bail!(
            "the identity token is not for audience `{AUDIENCE}` (Fulcio requires it); request it with audience=sigstore"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn sources_in_order() {
        let gh = |name: &str| match name {
            "ACTIONS_ID_TOKEN_REQUEST_URL" => Some("https://t/x?api-version=2.0".to_owned()),
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN" => Some("rt".to_owned()),
            "GITHUB_ACTIONS" => Some("true".to_owned()),
            _ => None,
        };
        assert_eq!(
            choose(Some("a.b.c"), &gh, false, None).unwrap(),
            Source::Given("a.b.c".into())
        );
        assert!(matches!(
            choose(None, &gh, false, None).unwrap(),
            Source::GitHubActions { .. }
        ));
        assert!(matches!(
            choose(None, &no_env, true, None).unwrap(),
            Source::Interactive { .. }
        ));
        assert!(choose(None, &no_env, false, None).is_err());
    }

    #[test]
    fn missing_id_token_permission_is_explained() {
        let env = |name: &str| (name == "GITHUB_ACTIONS").then(|| "true".to_owned());
        let err = choose(None, &env, true, None).unwrap_err().to_string();
        assert!(err.contains("id-token: write"), "{err}");
    }

    #[test]
    fn audience_is_appended() {
        assert_eq!(
            github_token_url("https://t/x?api-version=2.0"),
            "https://t/x?api-version=2.0&audience=sigstore"
        );
        assert_eq!(
            github_token_url("https://t/x"),
            "https://t/x?audience=sigstore"
        );
    }

    #[test]
    fn debug_hides_tokens() {
        let s = format!("{:?}", Source::Given("secret.jwt.x".into()));
        assert!(!s.contains("secret"));
    }
}
