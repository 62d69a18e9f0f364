//! Mirror health probes: GET `dists/<suite>/InRelease`, with a short timeout and a few
//! retries, through `APT_PROXY` unless the host is fetched DIRECT.

use std::time::{Duration, Instant};

use serde::Serialize;

/// What one candidate answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub url: String,
    /// `ok`, `http <status>`, `timeout`, `not a Release file`, or the connection error
    pub result: String,
    pub healthy: bool,
    pub attempts: u32,
    pub millis: u64,
}

/// How to probe: per-attempt timeout, retries after the first attempt, and the proxy.
/// Plain data: [`probe`] does the probing.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub timeout: Duration,
    pub retries: u32,
    pub proxy: Option<String>,
    /// Hosts fetched without the proxy (apt's `Proxy::<host> "DIRECT"`).
    pub direct_hosts: Vec<String>,
}

/// Index files are small (Debian's `InRelease` is ~150 KiB); anything far bigger is not one.
const MAX_BODY: u64 = 16 << 20;

/// A client for one candidate: the step's timeout, and `APT_PROXY` unless the host is
/// fetched DIRECT (then no proxy at all). Without `APT_PROXY`, the usual proxy variables
/// apply, as they do to apt.
fn client(s: &ProbeSettings, host: &str) -> anyhow::Result<reqwest::Client> {
    let direct = s.direct_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
    let mut b = reqwest::Client::builder()
        .timeout(s.timeout)
        .user_agent(concat!(
            "pi-image/",
            env!("CARGO_PKG_VERSION"),
            " (mirror probe)"
        ));
    if let Some(p) = s.proxy.as_deref() {
        b = b.no_proxy();
        if !direct {
            b = b.proxy(reqwest::Proxy::all(p)?);
        }
    }
    Ok(b.build()?)
}

/// Probes `{base}/dists/{suite}/InRelease`.
pub fn probe(s: &ProbeSettings, base: &str, suite: &str) -> Probe {
    let url = format!("{base}/dists/{suite}/InRelease");
    let host = crate::mirror_url::host_of(base);
    let started = Instant::now();
    let backoff = crate::retry::Backoff::mirror_probe(s.retries);
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        let why = match once(s, &url, &host) {
            Ok(()) => {
                return Probe {
                    url: base.to_owned(),
                    result: "ok".into(),
                    healthy: true,
                    attempts,
                    millis: elapsed_ms(started),
                };
            }
            Err(why) => why,
        };
        let Some(wait) = backoff.next(attempts, None) else {
            break why;
        };
        std::thread::sleep(wait);
    };
    Probe {
        url: base.to_owned(),
        result,
        healthy: false,
        attempts,
        millis: elapsed_ms(started),
    }
}

fn once(s: &ProbeSettings, url: &str, host: &str) -> Result<(), String> {
    crate::sigstore::install_tls_provider();
    let client =
        client(s, host).map_err(|e| format!("cannot set up the probe (check APT_PROXY): {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let body = runtime.block_on(async {
        let mut resp = client.get(url).send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("http {}", status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > MAX_BODY {
                break;
            }
        }
        Ok(body)
    })?;
    // A captive portal or a directory listing answers 200 too.
    let text = String::from_utf8_lossy(&body);
    if text
        .lines()
        .any(|l| l.starts_with("Suite:") || l.starts_with("Codename:"))
    {
        Ok(())
    } else {
        Err("not a Release file".into())
    }
}

fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What went wrong, in the words of the innermost cause (reqwest's own message only
/// says that sending failed).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return describe_io(io);
        }
        cause = next;
    }
    cause.to_string()
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}
