//! The GitHub REST calls `release` needs, sent through octocrab's HTTP client with
//! headers we set ourselves (the exact ones GitHub's recordings show), and uploads
//! streamed from disk: octocrab's own `upload_asset` buffers the whole file, ignores the
//! upload base URL, hard-codes the content type and does not URL-encode the name.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LINK, RETRY_AFTER,
};
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use octocrab::{OctoBody, Octocrab};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the requests this module sends itself (not through octocrab) say they are.
const USER_AGENT: &str = concat!("pi-image/", env!("CARGO_PKG_VERSION"));

/// The most a JSON answer may hold (one page of releases or assets is far less).
const MAX_ANSWER: usize = 64 << 20;

/// The media type GitHub's REST v3 recordings use.
pub const ACCEPT_V3: &str = "application/vnd.github.v3+json";

/// Query values: everything but unreserved characters is escaped.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A release as the REST API returns it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: u64,
    pub tag_name: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub prerelease: bool,
    /// RFC 3339; `None` for a draft.
    #[serde(default)]
    pub published_at: Option<String>,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub upload_url: String,
    #[serde(default)]
    pub assets: Vec<Asset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    /// `uploaded`, or `starter` for an upload that never completed.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub size: u64,
    /// `sha256:<hex>`, reported by GitHub for assets uploaded since mid-2025.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

/// What `release` sets on a release: the body of `POST /releases` and of
/// `PATCH /releases/{id}`. The fields and `MakeLatest` are octocrab's (its release
/// builders serialise the same); the request goes through [`GitHub`]'s own send path for
/// the headers, retries and the API-only pagination. A field left `None` is not sent, so
/// an update changes only what it names.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_commitish: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prerelease: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make_latest: Option<octocrab::repos::releases::MakeLatest>,
}

impl ReleaseFields {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.tag_name.is_none()
            && self.target_commitish.is_none()
            && self.name.is_none()
            && self.body.is_none()
            && self.draft.is_none()
            && self.prerelease.is_none()
            && self.make_latest.is_none()
    }
}

/// The body of `PATCH /releases/assets/{id}`.
#[derive(Debug, Clone, Serialize)]
struct AssetFields<'a> {
    name: &'a str,
    label: &'a str,
}

/// A GitHub error answer, with what callers branch on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("GitHub answered {status} to {method} {path}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub method: String,
    pub path: String,
    pub message: String,
    /// `errors[0].code`, e.g. `already_exists`.
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Worth retrying: server errors, and rate limits (429, or 403 with `retry-after`).
    pub fn is_transient(&self) -> bool {
        self.status >= 500
            || self.status == 429
            || (self.status == 403 && self.retry_after.is_some())
    }

    pub fn already_exists(&self) -> bool {
        self.status == 422 && self.code.as_deref() == Some("already_exists")
    }
}

/// One repository on one GitHub (github.com, Enterprise, or a test server).
pub struct GitHub {
    client: Octocrab,
    api: String,
    uploads: String,
    repo: String,
    auth: HeaderValue,
}

/// `https://api.github.com` uploads go to `https://uploads.github.com`; Enterprise
/// Server serves both from one host (`/api/v3` and `/api/uploads`).
pub fn default_upload_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if api == "https://api.github.com" {
        "https://uploads.github.com".to_owned()
    } else if let Some(base) = api.strip_suffix("/api/v3") {
        format!("{base}/api/uploads")
    } else {
        api.to_owned()
    }
}

impl GitHub {
    pub fn new(api_url: &str, upload_url: &str, token: &str, repo: &str) -> anyhow::Result<Self> {
        let mut auth = HeaderValue::from_str(&format!("token {token}")).map_err(|_| {
            crate::error::usage(
                "the GitHub token contains characters that cannot be sent in a header",
            )
        })?;
        auth.set_sensitive(true);
        let client = Octocrab::builder()
            .set_connect_timeout(Some(Duration::from_secs(30)))
            .set_read_timeout(Some(Duration::from_secs(300)))
            .build()
            .context("cannot set up the GitHub client")?;
        Ok(Self {
            client,
            api: api_url.trim_end_matches('/').to_owned(),
            uploads: upload_url.trim_end_matches('/').to_owned(),
            repo: repo.to_owned(),
            auth,
        })
    }

    fn repo_url(&self, rest: &str) -> String {
        format!("{}/repos/{}{rest}", self.api, self.repo)
    }

    /// Sends one request; a non-2xx answer becomes an [`ApiError`]. At most
    /// [`MAX_ANSWER`] bytes of the answer are read.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: OctoBody,
        extra: &[(http::HeaderName, String)],
    ) -> anyhow::Result<(http::HeaderMap, Bytes)> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(ACCEPT, ACCEPT_V3)
            .header(AUTHORIZATION, self.auth.clone());
        for (k, v) in extra {
            req = req.header(k, v);
        }
        let req = req
            .body(body)
            .with_context(|| format!("cannot build the request {method} {url}"))?;
        let path =
            http::Uri::try_from(url).map_or_else(|_| url.to_owned(), |u| u.path().to_owned());
        let resp = self.client.execute(req).await.map_err(|e| {
            anyhow::Error::new(ApiError {
                status: 0,
                method: method.to_string(),
                path: path.clone(),
                message: format!("cannot reach GitHub: {e}"),
                code: None,
                retry_after: None,
            })
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                anyhow::Error::new(ApiError {
                    status: 0,
                    method: method.to_string(),
                    path: path.clone(),
                    message: format!("the connection broke while reading the answer: {e}"),
                    code: None,
                    retry_after: None,
                })
            })?
            .to_bytes();
        if status.is_success() {
            return Ok((headers, bytes));
        }
        let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(ApiError {
            status: status.as_u16(),
            method: method.to_string(),
            path,
            message: parsed.get("message").and_then(Value::as_str).map_or_else(
                || status.canonical_reason().unwrap_or("error").to_owned(),
                str::to_owned,
            ),
            code: parsed["errors"][0]["code"].as_str().map(str::to_owned),
            retry_after,
        }
        .into())
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(http::HeaderMap, T)> {
        let (body, extra) = match body {
            Some(v) => {
                let text = serde_json::to_string(v)?;
                let len = text.len().to_string();
                (
                    OctoBody::from(text),
                    vec![
                        (CONTENT_TYPE, "application/json; charset=utf-8".to_owned()),
                        (CONTENT_LENGTH, len),
                    ],
                )
            }
            None => (OctoBody::empty(), Vec::new()),
        };
        let (headers, bytes) = self.send(method.clone(), url, body, &extra).await?;
        let parsed = serde_json::from_slice(&bytes).with_context(|| {
            format!("GitHub's answer to {method} {url} is not the JSON expected")
        })?;
        Ok((headers, parsed))
    }

    /// A published release by tag (`GET /releases/tags/{tag}` never returns drafts).
    pub async fn release_by_tag(&self, tag: &str) -> anyhow::Result<Option<Release>> {
        let url = self.repo_url(&format!(
            "/releases/tags/{}",
            utf8_percent_encode(tag, QUERY)
        ));
        match self.json(Method::GET, &url, None).await {
            Ok((_, r)) => Ok(Some(r)),
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.status == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The release for `tag`, drafts included (found by listing every release).
    pub async fn find_release(&self, tag: &str) -> anyhow::Result<Option<Release>> {
        if let Some(r) = self.release_by_tag(tag).await? {
            return Ok(Some(r));
        }
        let all = self.list_releases().await?;
        Ok(all.into_iter().find(|r| r.tag_name == tag))
    }

    /// Follows `Link: <…>; rel="next"` from `first`.
    async fn paginate<T: serde::de::DeserializeOwned>(
        &self,
        first: &str,
    ) -> anyhow::Result<Vec<T>> {
        let mut out = Vec::new();
        let mut next = Some(first.to_owned());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            anyhow::ensure!(
                pages <= 1000,
                "GitHub kept returning more pages from {first}"
            );
            let (headers, items): (_, Vec<T>) = self.json(Method::GET, &url, None).await?;
            out.extend(items);
            next = headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            // The token goes with every page: a link away from the API is not followed.
            if let Some(n) = &next {
                anyhow::ensure!(
                    n.starts_with(&format!("{}/", self.api)),
                    "GitHub's `Link` header points outside the API ({}): not followed, so the token stays with {}",
                    crate::gha::escape::redact_credentials(n),
                    self.api
                );
            }
        }
        Ok(out)
    }

    pub async fn create_release(&self, fields: &ReleaseFields) -> anyhow::Result<Release> {
        let body = serde_json::to_value(fields)?;
        Ok(self
            .json(Method::POST, &self.repo_url("/releases"), Some(&body))
            .await?
            .1)
    }

    pub async fn update_release(&self, id: u64, fields: &ReleaseFields) -> anyhow::Result<Release> {
        let body = serde_json::to_value(fields)?;
        Ok(self
            .json(
                Method::PATCH,
                &self.repo_url(&format!("/releases/{id}")),
                Some(&body),
            )
            .await?
            .1)
    }

    /// Every asset of a release (GitHub's default page size, then `Link` pages).
    pub async fn list_assets(&self, release_id: u64) -> anyhow::Result<Vec<Asset>> {
        self.paginate(&self.repo_url(&format!("/releases/{release_id}/assets")))
            .await
    }

    pub async fn get_asset(&self, id: u64) -> anyhow::Result<Asset> {
        Ok(self
            .json(
                Method::GET,
                &self.repo_url(&format!("/releases/assets/{id}")),
                None,
            )
            .await?
            .1)
    }

    pub async fn update_asset(&self, id: u64, name: &str, label: &str) -> anyhow::Result<Asset> {
        let body = serde_json::to_value(AssetFields { name, label })?;
        Ok(self
            .json(
                Method::PATCH,
                &self.repo_url(&format!("/releases/assets/{id}")),
                Some(&body),
            )
            .await?
            .1)
    }

    /// Every release, drafts included, newest first (GitHub's order).
    pub async fn list_releases(&self) -> anyhow::Result<Vec<Release>> {
        self.paginate(&self.repo_url("/releases?per_page=100"))
            .await
    }

    /// An asset's bytes, at most `limit` of them. GitHub answers with a redirect to its
    /// storage; that redirect is followed here, not by the client, so the token never
    /// leaves the API: the storage request carries no `Authorization` at all (a redirect
    /// layer that strips it per hop would hand it back on a second hop within the
    /// storage's origin), and it must be `https` unless the API itself is not.
    pub async fn download_asset(&self, id: u64, limit: usize) -> anyhow::Result<Vec<u8>> {
        let url = self.repo_url(&format!("/releases/assets/{id}"));
        let path = format!("/repos/{}/releases/assets/{id}", self.repo);
        let allow_http = self.api.starts_with("http://");
        let unreachable = |e: reqwest::Error| {
            anyhow::Error::new(ApiError {
                status: 0,
                method: "GET".into(),
                path: path.clone(),
                message: format!("cannot reach GitHub: {e}"),
                code: None,
                retry_after: None,
            })
        };
        crate::sigstore::install_tls_provider();
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300))
            .build()
            .context("cannot set up the download client")?;
        let resp = api
            .get(&url)
            .header(ACCEPT, "application/octet-stream")
            .header(AUTHORIZATION, self.auth.clone())
            .header(http::header::USER_AGENT, USER_AGENT)
            .send()
            .await
            .map_err(unreachable)?;
        let resp = if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("GitHub redirected the download of asset {id} nowhere")
                })?;
            let target = resp.url().join(location).with_context(|| {
                format!("GitHub redirected the download of asset {id} to an invalid URL")
            })?;
            if target.scheme() != "https" && !(allow_http && target.scheme() == "http") {
                anyhow::bail!(
                    "GitHub redirected the download of asset {id} to a {} URL: not followed",
                    target.scheme()
                );
            }
            let storage = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > 5 {
                        attempt.error("too many redirects")
                    } else if attempt.url().scheme() != "https" && !allow_http {
                        attempt.error("a redirect away from https")
                    } else {
                        attempt.follow()
                    }
                }))
                .connect_timeout(Duration::from_secs(30))
                .timeout(Duration::from_secs(300))
                .build()
                .context("cannot set up the download client")?;
            storage
                .get(target)
                .header(http::header::USER_AGENT, USER_AGENT)
                .send()
                .await
                .map_err(unreachable)?
        } else {
            resp
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError {
                status: status.as_u16(),
                method: "GET".into(),
                path,
                message: status.canonical_reason().unwrap_or("error").to_owned(),
                code: None,
                retry_after: None,
            }
            .into());
        }
        let mut resp = resp;
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if out.len() + chunk.len() > limit {
                anyhow::bail!("asset {id} is larger than the {limit} bytes expected");
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    pub async fn delete_asset(&self, id: u64) -> anyhow::Result<()> {
        self.send(
            Method::DELETE,
            &self.repo_url(&format!("/releases/assets/{id}")),
            OctoBody::empty(),
            &[],
        )
        .await?;
        Ok(())
    }

    /// Uploads a file as a release asset, streaming it from disk (constant memory),
    /// with its real content type and length and a URL-encoded name.
    pub async fn upload_asset(
        &self,
        release_id: u64,
        path: &Path,
        name: &str,
        label: Option<&str>,
    ) -> anyhow::Result<Asset> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open `{}`", path.display()))?;
        let len = file.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let body = http_body_util::StreamBody::new(futures_util::StreamExt::map(stream, |chunk| {
            chunk.map(http_body::Frame::data)
        }));
        let mut url = format!(
            "{}/repos/{}/releases/{release_id}/assets?name={}",
            self.uploads,
            self.repo,
            utf8_percent_encode(name, QUERY)
        );
        if let Some(label) = label {
            url.push_str(&format!("&label={}", utf8_percent_encode(label, QUERY)));
        }
        let headers = [
            (CONTENT_TYPE, content_type(name).to_owned()),
            (CONTENT_LENGTH, len.to_string()),
        ];
        let (_, bytes) = self
            .send(Method::POST, &url, OctoBody::new(sync_body(body)), &headers)
            .await?;
        serde_json::from_slice(&bytes).context("GitHub's answer to an upload is not an asset")
    }
}

/// `OctoBody` wants `Sync`; a stream body is only ever polled by one task at a time.
fn sync_body<B>(body: B) -> SyncBody<B> {
    SyncBody(std::sync::Mutex::new(body))
}

struct SyncBody<B>(std::sync::Mutex<B>);

impl<B: http_body::Body + Unpin> http_body::Body for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::pin::Pin::new(inner).poll_frame(cx)
    }
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// The content type an asset is served with.
pub fn content_type(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".xz") {
        "application/x-xz"
    } else if n.ends_with(".json") {
        "application/json"
    } else if n.ends_with(".zip") {
        "application/zip"
    } else if n.ends_with(".gz") {
        "application/gzip"
    } else if [".sha256", ".txt", ".log", ".md", ".sig", ".pem"]
        .iter()
        .any(|e| n.ends_with(e))
    {
        "text/plain"
    } else {
        "application/octet-stream"
    }
}

/// The status code of an error, if it came from GitHub.
pub fn status_of(err: &anyhow::Error) -> Option<StatusCode> {
    err.downcast_ref::<ApiError>()
        .and_then(|e| StatusCode::from_u16(e.status).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let h = r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/x?page=2")
        );
        assert_eq!(next_link(r#"<https://a/x?page=1>; rel="prev""#), None);
    }

    #[test]
    fn uploads_go_to_the_upload_host_of_each_github() {
        assert_eq!(
            default_upload_url("https://api.github.com/"),
            "https://uploads.github.com"
        );
        assert_eq!(
            default_upload_url("https://ghe.example/api/v3"),
            "https://ghe.example/api/uploads"
        );
        assert_eq!(
            default_upload_url("http://127.0.0.1:9"),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn types_and_encoding() {
        assert_eq!(content_type("sugarkube.img.xz"), "application/x-xz");
        assert_eq!(content_type("sugarkube.img.xz.sha256"), "text/plain");
        assert_eq!(content_type("x.sigstore.json"), "application/json");
        assert_eq!(
            utf8_percent_encode("a b&c=d/é.txt", QUERY).to_string(),
            "a%20b%26c%3Dd%2F%C3%A9.txt"
        );
    }

    #[test]
    fn server_errors_and_rate_limits_are_transient_and_conflicts_are_named() {
        let e = |status, code: Option<&str>, retry| ApiError {
            status,
            method: "POST".into(),
            path: "/".into(),
            message: String::new(),
            code: code.map(str::to_owned),
            retry_after: retry,
        };
        assert!(e(502, None, None).is_transient());
        assert!(e(429, None, None).is_transient());
        assert!(e(403, None, Some(Duration::from_secs(1))).is_transient());
        assert!(!e(403, None, None).is_transient());
        assert!(e(422, Some("already_exists"), None).already_exists());
    }
}
