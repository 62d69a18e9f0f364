//! Loopback GitHub servers for `release`: a replay of the Octokit team's real API
//! recordings (`tests/fixtures/third-party/octokit-fixtures`), strict about order, method, path,
//! the recorded request headers and bodies; and a small stateful fake for the paths the
//! recordings do not cover, answering with bodies shaped like those recordings.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

type Handler = Arc<dyn Fn(&str, Request<()>, Bytes) -> Response<Full<Bytes>> + Send + Sync>;

/// Serves `handler` on 127.0.0.1 from a background thread; returns the base URL.
fn serve(handler: Handler) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let base2 = base.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let base = base2.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let handler = handler.clone();
                            let base = base.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let bytes = body
                                    .collect()
                                    .await
                                    .map(http_body_util::Collected::to_bytes)
                                    .unwrap_or_default();
                                Ok::<_, Infallible>(handler(
                                    &base,
                                    Request::from_parts(parts, ()),
                                    bytes,
                                ))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    base
}

fn respond(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

fn rewrite(text: &str, base: &str) -> String {
    text.replace("https://api.github.com", base)
        .replace("https://uploads.github.com", base)
}

/// A replay of one recorded scenario.
pub struct Replay {
    pub base: String,
    state: Arc<Mutex<(usize, Vec<String>)>>,
    total: usize,
}

impl Replay {
    pub fn start(scenario: &str) -> Self {
        let path = crate::support::repo_root()
            .join("tests/fixtures/third-party/octokit-fixtures")
            .join(scenario)
            .join("normalized-fixture.json");
        let entries: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let total = entries.len();
        let state = Arc::new(Mutex::new((0usize, Vec::new())));
        let st = state.clone();
        let base = serve(Arc::new(move |base, req, body| {
            let mut st = st.lock().unwrap();
            let Some(e) = entries.get(st.0) else {
                st.1.push(format!(
                    "unexpected extra request {} {}",
                    req.method(),
                    req.uri()
                ));
                return respond(
                    404,
                    &[],
                    b"{\"message\":\"no more recorded requests\"}".to_vec(),
                );
            };
            let mut problems = Vec::new();
            let got_path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            if !req
                .method()
                .as_str()
                .eq_ignore_ascii_case(e["method"].as_str().unwrap())
                || got_path != e["path"].as_str().unwrap()
            {
                problems.push(format!(
                    "expected {} {}, got {} {}",
                    e["method"],
                    e["path"],
                    req.method(),
                    got_path
                ));
            }
            for (k, v) in e["reqheaders"].as_object().unwrap() {
                if k == "host" {
                    continue;
                }
                let want = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let got = req
                    .headers()
                    .get(k.as_str())
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("<missing>");
                if got != want {
                    problems.push(format!("header {k}: expected {want:?}, got {got:?}"));
                }
            }
            match &e["body"] {
                Value::String(s) if !s.is_empty() && s.as_bytes() != body.as_ref() => problems
                    .push(format!(
                        "body: expected {s:?}, got {:?}",
                        String::from_utf8_lossy(&body)
                    )),
                v @ Value::Object(_)
                    if serde_json::from_slice::<Value>(&body).ok().as_ref() != Some(v) =>
                {
                    problems.push(format!(
                        "body: expected {v}, got {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                _ => {}
            }
            if !problems.is_empty() {
                st.1.extend(problems.iter().cloned());
                return respond(
                    404,
                    &[("content-type", "application/json".into())],
                    json!({ "message": problems.join("; ") })
                        .to_string()
                        .into_bytes(),
                );
            }
            st.0 += 1;
            let status = u16::try_from(e["status"].as_u64().unwrap()).unwrap();
            let body = match &e["response"] {
                Value::String(s) if s.is_empty() => Vec::new(),
                v => rewrite(&v.to_string(), base).into_bytes(),
            };
            let mut headers = vec![];
            if let Some(ct) = e["headers"].get("content-type").and_then(Value::as_str) {
                headers.push(("content-type", ct.to_owned()));
            }
            respond(status, &headers, body)
        }));
        Self { base, state, total }
    }

    /// Every recorded request was made, in order, and nothing else.
    pub fn assert_complete(&self) {
        let st = self.state.lock().unwrap();
        assert!(
            st.1.is_empty(),
            "requests that do not match the recording: {:#?}",
            st.1
        );
        assert_eq!(
            st.0, self.total,
            "only {} of {} recorded requests were made",
            st.0, self.total
        );
    }
}

#[derive(Debug, Clone)]
pub struct FakeAsset {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub state: String,
    pub content_type: String,
    /// The bytes, served (after a redirect) by the fake's storage.
    pub content: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct FakeRelease {
    pub id: u64,
    pub tag: String,
    pub name: String,
    pub body: String,
    pub draft: bool,
    pub prerelease: bool,
    pub make_latest: Option<String>,
    pub published_at: Option<String>,
    pub assets: Vec<FakeAsset>,
}

/// Failures to inject, each consumed once.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next upload of this asset name answers 502 and leaves a `starter` asset.
    pub break_upload: Option<String>,
    /// The next request answers 429 with `retry-after: 1`.
    pub rate_limit: bool,
    /// Assets are reported without `digest` (older GitHub).
    pub no_digests: bool,
    /// The asset list's `Link: rel="next"` names this base instead of the API's.
    pub foreign_link: Option<String>,
    /// The storage redirects each download once more, within its own origin.
    pub storage_hop: bool,
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub releases: Vec<FakeRelease>,
    pub next_id: u64,
    pub faults: Faults,
    /// Every request: `METHOD /path?query`.
    pub log: Vec<String>,
    /// Requests that reached the storage asset downloads are redirected to (another
    /// origin), each with the `Authorization` it carried, if any.
    pub storage: Vec<(String, Option<String>)>,
}

/// A stateful GitHub for one repository, `o/r`, token `test-token`.
pub struct FakeGitHub {
    pub base: String,
    pub state: Arc<Mutex<FakeState>>,
}

pub const TOKEN: &str = "test-token";
const PER_PAGE: usize = 2;

fn asset_json(base: &str, a: &FakeAsset, digests: bool) -> Value {
    let mut v = json!({
        "url": format!("{base}/repos/o/r/releases/assets/{}", a.id), "id": a.id, "node_id": "MDA6RW50aXR5MQ==",
        "name": a.name, "label": "", "state": a.state, "content_type": a.content_type, "size": a.size,
        "download_count": 0, "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:00Z",
        "browser_download_url": format!("https://github.com/o/r/releases/download/x/{}", a.name),
    });
    if digests {
        v["digest"] = json!(format!("sha256:{}", a.sha256));
    }
    v
}

fn release_json(base: &str, r: &FakeRelease, digests: bool) -> Value {
    json!({
        "url": format!("{base}/repos/o/r/releases/{}", r.id), "id": r.id, "tag_name": r.tag, "name": r.name, "body": r.body,
        "draft": r.draft, "prerelease": r.prerelease, "published_at": r.published_at,
        "html_url": format!("https://github.com/o/r/releases/tag/{}", r.tag),
        "upload_url": format!("{base}/repos/o/r/releases/{}/assets{{?name,label}}", r.id),
        "assets": r.assets.iter().map(|a| asset_json(base, a, digests)).collect::<Vec<_>>(),
    })
}

fn json_response(status: u16, v: &Value) -> Response<Full<Bytes>> {
    respond(
        status,
        &[("content-type", "application/json; charset=utf-8".into())],
        v.to_string().into_bytes(),
    )
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

impl FakeGitHub {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            next_id: 100,
            ..FakeState::default()
        }));
        // Asset downloads redirect here, another origin, as GitHub's do to its storage.
        let st = state.clone();
        let storage = serve(Arc::new(move |_, req, _| {
            let mut s = st.lock().unwrap();
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned);
            s.storage.push((req.uri().path().to_owned(), auth));
            let path = req.uri().path().to_owned();
            if s.faults.storage_hop && !path.starts_with("/storage/hop/") {
                let id = path.trim_start_matches("/storage/");
                return respond(302, &[("location", format!("/storage/hop/{id}"))], vec![]);
            }
            let id = path
                .trim_start_matches("/storage/")
                .trim_start_matches("hop/");
            match s
                .releases
                .iter()
                .flat_map(|r| &r.assets)
                .find(|a| a.id.to_string() == id)
            {
                Some(a) => respond(
                    200,
                    &[("content-type", a.content_type.clone())],
                    a.content.clone(),
                ),
                None => respond(404, &[], b"not found".to_vec()),
            }
        }));
        let st = state.clone();
        let base = serve(Arc::new(move |base, req, body| {
            let mut s = st.lock().unwrap();
            s.log.push(format!(
                "{} {}",
                req.method(),
                req.uri()
                    .path_and_query()
                    .map_or("", hyper::http::uri::PathAndQuery::as_str)
            ));
            if req
                .headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                != Some(&format!("token {TOKEN}"))
            {
                return json_response(401, &json!({ "message": "Bad credentials" }));
            }
            if s.faults.rate_limit {
                s.faults.rate_limit = false;
                return respond(
                    429,
                    &[
                        ("retry-after", "1".into()),
                        ("content-type", "application/json".into()),
                    ],
                    br#"{"message":"You have exceeded a secondary rate limit."}"#.to_vec(),
                );
            }
            let digests = !s.faults.no_digests;
            let path = req.uri().path().to_owned();
            let parts: Vec<&str> = path.trim_start_matches("/repos/o/r/").split('/').collect();
            let method = req.method().as_str().to_owned();
            match (method.as_str(), parts.as_slice()) {
                ("GET", ["releases", "tags", tag]) => {
                    match s.releases.iter().find(|r| r.tag == *tag && !r.draft) {
                        Some(r) => json_response(200, &release_json(base, r, digests)),
                        None => json_response(404, &json!({ "message": "Not Found" })),
                    }
                }
                ("GET", ["releases"]) => json_response(
                    200,
                    &Value::Array(
                        s.releases
                            .iter()
                            .map(|r| release_json(base, r, digests))
                            .collect(),
                    ),
                ),
                ("POST", ["releases"]) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let tag = v["tag_name"].as_str().unwrap().to_owned();
                    if s.releases.iter().any(|r| r.tag == tag) {
                        return json_response(
                            422,
                            &json!({ "message": "Validation Failed", "errors": [{ "resource": "Release", "code": "already_exists", "field": "tag_name" }] }),
                        );
                    }
                    s.next_id += 1;
                    let r = FakeRelease {
                        id: s.next_id,
                        tag,
                        name: v["name"].as_str().unwrap_or("").into(),
                        body: v["body"].as_str().unwrap_or("").into(),
                        draft: v["draft"].as_bool().unwrap_or(false),
                        prerelease: v["prerelease"].as_bool().unwrap_or(false),
                        make_latest: None,
                        published_at: None,
                        assets: vec![],
                    };
                    let mut r = r;
                    if !r.draft {
                        r.published_at = Some(format!("2026-11-26T00:00:{:02}Z", r.id % 60));
                    }
                    let out = release_json(base, &r, digests);
                    s.releases.push(r);
                    json_response(201, &out)
                }
                ("PATCH", ["releases", id]) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let Some(r) = s.releases.iter_mut().find(|r| r.id.to_string() == *id) else {
                        return json_response(404, &json!({ "message": "Not Found" }));
                    };
                    if let Some(d) = v["draft"].as_bool() {
                        r.draft = d;
                        if !d && r.published_at.is_none() {
                            r.published_at = Some(format!("2026-11-26T00:00:{:02}Z", r.id % 60));
                        }
                    }
                    if let Some(n) = v["name"].as_str() {
                        r.name = n.into();
                    }
                    if let Some(b) = v["body"].as_str() {
                        r.body = b.into();
                    }
                    if let Some(p) = v["prerelease"].as_bool() {
                        r.prerelease = p;
                    }
                    if let Some(m) = v["make_latest"].as_str() {
                        r.make_latest = Some(m.into());
                    }
                    let out = release_json(base, r, digests);
                    json_response(200, &out)
                }
                ("GET", ["releases", id, "assets"]) => {
                    let Some(r) = s.releases.iter().find(|r| r.id.to_string() == *id) else {
                        return json_response(404, &json!({ "message": "Not Found" }));
                    };
                    let page: usize = query(req.uri())
                        .get("page")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(1);
                    let items: Vec<Value> = r
                        .assets
                        .iter()
                        .skip((page - 1) * PER_PAGE)
                        .take(PER_PAGE)
                        .map(|a| asset_json(base, a, digests))
                        .collect();
                    let mut headers =
                        vec![("content-type", "application/json; charset=utf-8".to_owned())];
                    if r.assets.len() > page * PER_PAGE {
                        let next_base = s.faults.foreign_link.as_deref().unwrap_or(base);
                        headers.push((
                            "link",
                            format!(
                                "<{next_base}/repos/o/r/releases/{id}/assets?page={}>; rel=\"next\"",
                                page + 1
                            ),
                        ));
                    }
                    respond(200, &headers, Value::Array(items).to_string().into_bytes())
                }
                ("GET", ["releases", "assets", id])
                    if req.headers().get("accept").and_then(|h| h.to_str().ok())
                        == Some("application/octet-stream") =>
                {
                    respond(
                        302,
                        &[("location", format!("{storage}/storage/{id}"))],
                        vec![],
                    )
                }
                ("DELETE", ["releases", "assets", id]) => {
                    for r in &mut s.releases {
                        r.assets.retain(|a| a.id.to_string() != *id);
                    }
                    respond(204, &[], vec![])
                }
                ("POST", ["releases", id, "assets"]) => {
                    let q = query(req.uri());
                    let name = q.get("name").cloned().unwrap_or_default();
                    let declared: u64 = req
                        .headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u64::MAX);
                    let content_type = req
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if declared != body.len() as u64 || content_type.is_empty() {
                        return json_response(
                            400,
                            &json!({ "message": "Bad Content-Length or Content-Type" }),
                        );
                    }
                    s.next_id += 1;
                    let asset_id = s.next_id;
                    let broken = s.faults.break_upload.as_deref() == Some(name.as_str());
                    if broken {
                        s.faults.break_upload = None;
                    }
                    let Some(r) = s.releases.iter_mut().find(|r| r.id.to_string() == *id) else {
                        return json_response(404, &json!({ "message": "Not Found" }));
                    };
                    if r.assets.iter().any(|a| a.name == name) {
                        return json_response(
                            422,
                            &json!({ "message": "Validation Failed", "errors": [{ "resource": "ReleaseAsset", "code": "already_exists", "field": "name" }] }),
                        );
                    }
                    let a = FakeAsset {
                        id: asset_id,
                        name,
                        size: body.len() as u64,
                        sha256: crate::support::hex_sha256(&body),
                        state: if broken {
                            "starter".into()
                        } else {
                            "uploaded".into()
                        },
                        content_type,
                        content: body.to_vec(),
                    };
                    let out = asset_json(base, &a, digests);
                    r.assets.push(a);
                    if broken {
                        return json_response(502, &json!({ "message": "Server Error" }));
                    }
                    json_response(201, &out)
                }
                _ => json_response(
                    404,
                    &json!({ "message": format!("fake GitHub has no {method} {path}") }),
                ),
            }
        }));
        Self { base, state }
    }

    pub fn release(&self, tag: &str) -> Option<FakeRelease> {
        self.state
            .lock()
            .unwrap()
            .releases
            .iter()
            .find(|r| r.tag == tag)
            .cloned()
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn writes(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| !l.starts_with("GET "))
            .collect()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
