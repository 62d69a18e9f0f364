//! Mirror health probes: GET `dists/<suite>/InRelease`, with a short timeout and a few
//! retries, through `APT_PROXY` unless the host is fetched DIRECT.

use std::io::Read as _;
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

fn agent(s: &ProbeSettings, host: &str) -> anyhow::Result<ureq::Agent> {
    let direct = s.direct_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(s.timeout))
        .http_status_as_error(false)
        .user_agent(concat!(
            "pi-image/",
            env!("CARGO_PKG_VERSION"),
            " (mirror probe)"
        ));
    if let Some(p) = s.proxy.as_deref() {
        let proxy = if direct {
            None
        } else {
            Some(ureq::Proxy::new(p)?)
        };
        config = config.proxy(proxy);
    }
    Ok(config.build().into())
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
    let agent = agent(s, host).map_err(|e| format!("bad proxy: {e}"))?;
    let mut resp = agent.get(url).call().map_err(describe)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("http {}", status.as_u16()));
    }
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| describe_io(&e))?;
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

fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timeout".into(),
        ureq::Error::Io(io) => describe_io(&io),
        other => other.to_string(),
    }
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}
