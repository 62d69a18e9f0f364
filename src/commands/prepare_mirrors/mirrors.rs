//! Archives, mirror URLs and the apt options: parsing, validation and the rules that
//! decide which archive a source URI belongs to (the same rules as the hook's awk).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::usage;
pub use crate::mirror_url::{normalize_url, redact_userinfo, url_char_ok};

/// The apt archives a Raspberry Pi OS build pulls from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Archive {
    /// 32-bit Raspberry Pi OS (pi-gen `master`/`bookworm`): raspbian.raspberrypi.com
    Raspbian,
    /// 64-bit Raspberry Pi OS (pi-gen `arm64`/`bookworm-arm64`): deb.debian.org
    Debian,
    /// Both: archive.raspberrypi.com (kernel, firmware, Raspberry Pi packages)
    RaspberryPi,
}

impl Archive {
    pub const ALL: [Archive; 3] = [Archive::Raspbian, Archive::Debian, Archive::RaspberryPi];

    /// The name the hook's configuration and the state file use.
    pub fn key(self) -> &'static str {
        match self {
            Archive::Raspbian => "raspbian",
            Archive::Debian => "debian",
            Archive::RaspberryPi => "raspberrypi",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Archive::Raspbian => "Raspbian",
            Archive::Debian => "Debian",
            Archive::RaspberryPi => "Raspberry Pi",
        }
    }

    /// The upstream archive root pi-gen uses (docs/pi-gen.md c.1).
    pub fn upstream(self) -> &'static str {
        match self {
            Archive::Raspbian => "http://raspbian.raspberrypi.com/raspbian",
            Archive::Debian => "http://deb.debian.org/debian",
            Archive::RaspberryPi => "http://archive.raspberrypi.com/debian",
        }
    }

    /// Candidates when nothing is configured: upstream first (a healthy upstream means
    /// nothing is rewritten), then well-run public mirrors.
    pub fn default_candidates(self) -> Vec<String> {
        let mut v = vec![self.upstream().to_owned()];
        if self == Archive::Raspbian {
            v.push("https://mirror.fcix.net/raspbian/raspbian".into());
            v.push("https://mirrors.ocf.berkeley.edu/raspbian/raspbian".into());
        }
        v
    }
}

impl fmt::Display for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// Which archive a source URI names, by the same rules as the hook's awk `classify`
/// (both are tested against `tests/fixtures/mirror-urls/classes.tsv`): an exact
/// candidate or upstream URL first, then the hook's own `mirror+file:` lists, then the
/// well-known hosts and the `/raspbian` path. Host names are case-blind; paths are not.
pub fn classify(uri: &str, known: &BTreeMap<Archive, Vec<String>>) -> Option<Archive> {
    let n = uri.trim_end_matches('/');
    for (a, urls) in known {
        if urls.iter().any(|u| u.trim_end_matches('/') == n) {
            return Some(*a);
        }
    }
    if let Some(list) = n.strip_prefix("mirror+file:")
        && let Some((_, name)) = list.rsplit_once("/pi-image-mirrors/")
    {
        let key = name.strip_suffix(".list")?;
        return Archive::ALL.into_iter().find(|a| a.key() == key);
    }
    let scheme_end = n.find("://")?;
    if !matches!(
        n[..scheme_end].to_ascii_lowercase().as_str(),
        "http" | "https"
    ) {
        return None;
    }
    let rest = &n[scheme_end + 3..];
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = host.rsplit('@').next().unwrap_or(host);
    // `host:port`; an IPv6 literal (`[::1]:3142`) is no archive's host either way.
    // `:port` only when it is digits, as the awk does; any other `:` (an empty or bad
    // port, an IPv6 literal) leaves a host that no rule names.
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
    .to_ascii_lowercase();
    let host = host.as_str();
    let raspbian_host = matches!(
        host,
        "raspbian.raspberrypi.com"
            | "raspbian.raspberrypi.org"
            | "mirrors.pidginhost.com"
            | "mirror.as43289.net"
    );
    if raspbian_host || path == "/raspbian" || path.starts_with("/raspbian/") {
        return Some(Archive::Raspbian);
    }
    if matches!(host, "archive.raspberrypi.com" | "archive.raspberrypi.org") && path == "/debian" {
        return Some(Archive::RaspberryPi);
    }
    let debian_host = matches!(
        host,
        "deb.debian.org" | "ftp.debian.org" | "httpredir.debian.org" | "cdn-fastly.deb.debian.org"
    ) || (host.len() == "ftp.xx.debian.org".len()
        && host.starts_with("ftp.")
        && host.ends_with(".debian.org")
        && host[4..6].chars().all(|c| c.is_ascii_lowercase()));
    if debian_host && path == "/debian" {
        return Some(Archive::Debian);
    }
    None
}

/// The mirror settings as given (environment variables of the seed design).
#[derive(Debug, Clone, Default)]
pub struct MirrorVars {
    pub apt_mirror: Option<String>,
    pub raspbian_mirror: Option<String>,
    pub apt_mirror_raspbian: Option<String>,
    pub apt_rewrite_mirrors: Option<String>,
    pub debian_mirror: Option<String>,
    pub apt_mirror_raspberrypi: Option<String>,
}

/// The ordered, validated candidates for each archive. What the user names for an
/// archive replaces the defaults for it (an air-gapped build must not fall back to the
/// internet); an archive with nothing named gets [`Archive::default_candidates`].
pub fn candidates(vars: &MirrorVars) -> anyhow::Result<BTreeMap<Archive, Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut raspbian: Vec<(&str, &str)> = Vec::new();
    for (var, v) in [
        ("APT_MIRROR_RASPBIAN", &vars.apt_mirror_raspbian),
        ("RASPBIAN_MIRROR", &vars.raspbian_mirror),
        ("APT_MIRROR", &vars.apt_mirror),
    ] {
        if let Some(v) = v {
            raspbian.push((var, v));
        }
    }
    if let Some(list) = &vars.apt_rewrite_mirrors {
        if list.split_whitespace().next().is_none() {
            return Err(usage(
                "APT_REWRITE_MIRRORS is set but lists no mirror: give one or more http(s) URLs separated by spaces, or unset it for the defaults",
            ));
        }
        raspbian.extend(list.split_whitespace().map(|u| ("APT_REWRITE_MIRRORS", u)));
    }
    let debian: Vec<(&str, &str)> = vars
        .debian_mirror
        .iter()
        .flat_map(|v| v.split_whitespace().map(|u| ("DEBIAN_MIRROR", u)))
        .collect();
    let rpi: Vec<(&str, &str)> = vars
        .apt_mirror_raspberrypi
        .iter()
        .flat_map(|v| v.split_whitespace().map(|u| ("APT_MIRROR_RASPBERRYPI", u)))
        .collect();
    for (archive, given) in [
        (Archive::Raspbian, raspbian),
        (Archive::Debian, debian),
        (Archive::RaspberryPi, rpi),
    ] {
        let mut list: Vec<String> = Vec::new();
        for (var, raw) in given {
            if raw.trim().is_empty() {
                continue;
            }
            let url = normalize_url(var, raw)?;
            if !list.contains(&url) {
                list.push(url);
            }
        }
        if list.is_empty() {
            list = archive.default_candidates();
        }
        out.insert(archive, list);
    }
    // One URL for two archives would make the hook's rewrite ambiguous.
    let mut owner: BTreeMap<&str, Archive> = BTreeMap::new();
    for (a, list) in &out {
        for u in list {
            if let Some(prev) = owner.insert(u, *a) {
                return Err(usage(format!(
                    "mirror `{u}` is configured for both the {prev} and the {a} archive; each archive needs its own mirror URL"
                )));
            }
        }
    }
    Ok(out)
}

/// One `-o Key=Value` from `APT_OPTS`, or one of our defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptOption {
    pub key: String,
    pub value: String,
}

/// The apt options `APT_OPTS` may set: how apt downloads (retries, timeouts, proxies,
/// transport tuning). Nothing that names a program, runs a hook or changes which packages
/// are installed; not `Check-Valid-Until` (a mirror could then serve stale, still-signed
/// indexes) nor `Debug::Acquire` (it prints a proxy's `Proxy-Authorization` header).
/// `*` stands for one host name (`Acquire::http::Proxy::deb.example.org`).
pub const ALLOWED_APT_KEYS: &[&str] = &[
    "Acquire::Retries",
    "Acquire::Retries::Delay",
    "Acquire::Retries::Delay::Maximum",
    "Acquire::http::Timeout",
    "Acquire::https::Timeout",
    "Acquire::http::Proxy",
    "Acquire::https::Proxy",
    "Acquire::http::Proxy::*",
    "Acquire::https::Proxy::*",
    "Acquire::http::Pipeline-Depth",
    "Acquire::http::No-Cache",
    "Acquire::http::Dl-Limit",
    "Acquire::https::Dl-Limit",
    "Acquire::http::ConnectionAttemptDelayMsec",
    "Acquire::http::User-Agent",
    "Acquire::Queue-Mode",
    "Acquire::ForceIPv4",
    "Acquire::ForceIPv6",
    "Acquire::PDiffs",
    "Acquire::Languages",
];

/// apt keys are case-insensitive; a `*` part matches one host name.
fn allowed_apt_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split("::").collect();
    ALLOWED_APT_KEYS.iter().any(|allowed| {
        let want: Vec<&str> = allowed.split("::").collect();
        want.len() == parts.len()
            && want.iter().zip(&parts).all(|(w, p)| {
                if *w == "*" {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                } else {
                    w.eq_ignore_ascii_case(p)
                }
            })
    })
}

fn check_apt_option(opt: &str) -> anyhow::Result<AptOption> {
    let Some((key, value)) = opt.split_once('=') else {
        return Err(usage(format!(
            "APT_OPTS: `-o {}` is not Key=Value (e.g. -o Acquire::Retries=5)",
            opt.escape_debug()
        )));
    };
    let key_ok = !key.is_empty()
        && key.split("::").all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/'))
        });
    if !key_ok {
        return Err(usage(format!(
            "APT_OPTS: `{}` is not an apt configuration key (Word::Word::Word, e.g. Acquire::http::Timeout)",
            key.escape_debug()
        )));
    }
    if !allowed_apt_key(key) {
        return Err(usage(format!(
            "APT_OPTS: `{}` is not an option prepare-mirrors applies. Allowed: {}. Options that run programs (DPkg::*, APT::Update::*, *::Pre-Invoke, *::Post-Invoke) or change what is installed are refused",
            key.escape_debug(),
            ALLOWED_APT_KEYS.join(", ")
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| matches!(c, '"' | '\\' | '{' | '}' | ';') || c.is_control())
    {
        return Err(usage(format!(
            "APT_OPTS: the value of {key} contains `{}`, which apt's configuration syntax cannot hold",
            bad.escape_debug()
        )));
    }
    Ok(AptOption {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Parses `APT_OPTS` (`-o K=V`, `-oK=V`, `--option K=V`, `--option=K=V`). Anything else is
/// refused: pi-gen ignores `APT_OPTS`, so only configuration options can reach its apt
/// calls, through an apt.conf.d file.
pub fn parse_apt_opts(opts: &str) -> anyhow::Result<Vec<AptOption>> {
    let mut out = Vec::new();
    let mut words = opts.split_whitespace();
    while let Some(w) = words.next() {
        let opt = if w == "-o" || w == "--option" {
            words.next().ok_or_else(|| {
                usage(format!(
                    "APT_OPTS ends with `{w}`: it needs a Key=Value after it"
                ))
            })?
        } else if let Some(rest) = w.strip_prefix("--option=") {
            rest
        } else if let Some(rest) = w.strip_prefix("-o") {
            rest
        } else {
            return Err(usage(format!(
                "APT_OPTS: `{}` is not an apt configuration option; only `-o Key=Value` options can be applied to pi-gen's apt calls (e.g. -o Acquire::Retries=5)",
                w.escape_debug()
            )));
        };
        out.push(check_apt_option(opt)?);
    }
    Ok(out)
}

/// Our hardening defaults with `APT_OPTS` merged over them (apt keys are case-insensitive;
/// a later setting of the same key wins, as on apt's command line).
pub fn merged_apt_options(retries: u32, timeout: u32, user: Vec<AptOption>) -> Vec<AptOption> {
    let mut list: Vec<AptOption> = [
        ("Acquire::Retries", retries.to_string()),
        ("Acquire::http::Timeout", timeout.to_string()),
        ("Acquire::https::Timeout", timeout.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| AptOption {
        key: k.into(),
        value: v,
    })
    .collect();
    for opt in user {
        if let Some(existing) = list
            .iter_mut()
            .find(|o| o.key.eq_ignore_ascii_case(&opt.key))
        {
            existing.value = opt.value;
        } else {
            list.push(opt);
        }
    }
    list
}

/// Every http(s) URL in `text`.
pub fn urls_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("http") {
        let tail = &rest[i..];
        if tail.starts_with("http://") || tail.starts_with("https://") {
            let end = tail.find(|c: char| !url_char_ok(c)).unwrap_or(tail.len());
            out.push(&tail[..end]);
            rest = &tail[end..];
        } else {
            rest = &tail[4..];
        }
    }
    out
}

/// The archives the checkout's stage0 uses, each with the URL it names (its debootstrap
/// call in `prerun.sh` and the sources in `00-configure-apt/files`). The build is
/// rewritten only for these: arm64 branches use Debian + Raspberry Pi, armhf branches
/// Raspbian + Raspberry Pi. `read` gives a file's upstream text by its path in the checkout.
pub fn archives_in_checkout(
    files: &[PathBuf],
    read: impl Fn(&Path) -> Option<String>,
    known: &BTreeMap<Archive, Vec<String>>,
) -> BTreeMap<Archive, String> {
    let mut found = BTreeMap::new();
    for f in files {
        let Some(text) = read(f) else {
            continue;
        };
        for line in text.lines() {
            for url in urls_in(line) {
                // Kept exactly as written (trailing slash or not): the export restores
                // the sources in the template's own form.
                if let Some(a) = classify(url, known) {
                    found.entry(a).or_insert_with(|| url.to_owned());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    type Known = BTreeMap<Archive, Vec<String>>;

    /// The shared vectors: the known mirror lists, and each URI with its archive.
    fn vectors() -> (Known, Vec<(String, Option<Archive>)>) {
        let text = include_str!("../../../tests/fixtures/mirror-urls/classes.tsv");
        let archive = |key: &str| Archive::ALL.into_iter().find(|a| a.key() == key);
        let mut known = Known::new();
        let mut rows = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["known", a, url] => known
                    .entry(archive(a).unwrap())
                    .or_default()
                    .push((*url).to_owned()),
                [uri, "-"] => rows.push(((*uri).to_owned(), None)),
                [uri, a] => rows.push(((*uri).to_owned(), Some(archive(a).unwrap()))),
                _ => panic!("bad vector line {line:?}"),
            }
        }
        assert!(rows.len() > 30, "{rows:?}");
        (known, rows)
    }

    #[test]
    fn rust_classifier_meets_the_shared_vectors() {
        let (known, rows) = vectors();
        let wrong: Vec<String> = rows
            .iter()
            .filter(|(uri, want)| classify(uri, &known) != *want)
            .map(|(uri, want)| format!("{uri}: want {want:?}, got {:?}", classify(uri, &known)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// The hook's awk program, cut from the shipped script and run by the host's awk in
    /// its `classify` mode, on the same rows.
    #[test]
    fn hook_awk_classifier_meets_the_shared_vectors() {
        let (known, rows) = vectors();
        let script = super::super::HOOK_SCRIPT;
        let start = script.find("AWK_PROG='").unwrap() + "AWK_PROG='".len();
        let len = script[start..].find("\n}'\n").unwrap() + 2;
        let program = &script[start..start + len];
        let input: String = rows.iter().map(|(u, _)| format!("{u}\n")).collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("uris"), input).unwrap();
        let mut cmd = crate::process::CmdSpec::new("awk", "run the hook's classifier")
            .args([
                "-v",
                "mode=classify",
                "-v",
                "archives=raspbian debian raspberrypi",
            ])
            .args(["-v", "FILENAME_HINT=uris", program, "uris"])
            .cwd(dir.path());
        for (a, urls) in &known {
            cmd = cmd.env(&format!("KNOWN_{}", a.key()), &urls.join(" "));
        }
        let out = cmd.output().unwrap();
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got.len(), rows.len(), "{out}");
        let wrong: Vec<String> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, (uri, want))| {
                let g = got[i];
                let w = want.map_or("-", Archive::key);
                (g != w).then(|| format!("{uri}: want {w:?}, got {g:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn candidates_replace_defaults_per_archive() {
        let c = candidates(&MirrorVars {
            apt_rewrite_mirrors: Some(" http://a.example/raspbian/  https://b.example/r ".into()),
            apt_mirror: Some("http://c.example/raspbian".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c[&Archive::Raspbian],
            [
                "http://c.example/raspbian",
                "http://a.example/raspbian",
                "https://b.example/r"
            ]
        );
        assert_eq!(c[&Archive::Debian], ["http://deb.debian.org/debian"]);
    }

    #[test]
    fn bad_mirrors_are_refused() {
        for (vars, needle) in [
            (
                MirrorVars {
                    apt_rewrite_mirrors: Some("   ".into()),
                    ..Default::default()
                },
                "lists no mirror",
            ),
            (
                MirrorVars {
                    debian_mirror: Some("ftp://ftp.debian.org/debian".into()),
                    ..Default::default()
                },
                "not an http:// or https:// URL",
            ),
            (
                MirrorVars {
                    apt_mirror: Some("http://x.example/ra$(id)".into()),
                    ..Default::default()
                },
                "contains `$`",
            ),
            (
                MirrorVars {
                    apt_mirror: Some("http:///raspbian".into()),
                    ..Default::default()
                },
                "no host",
            ),
            (
                MirrorVars {
                    apt_mirror: Some("http://m.example/debian".into()),
                    debian_mirror: Some("http://m.example/debian".into()),
                    ..Default::default()
                },
                "both the",
            ),
        ] {
            let err = candidates(&vars).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn apt_opts_parse_and_merge() {
        let user = parse_apt_opts(
            "-o acquire::retries=9 -oAcquire::http::Proxy::deb.example.org=DIRECT --option=Acquire::ForceIPv4=true",
        )
        .unwrap();
        let merged = merged_apt_options(5, 30, user);
        let get = |k: &str| merged.iter().find(|o| o.key == k).map(|o| o.value.as_str());
        assert_eq!(
            get("Acquire::Retries"),
            Some("9"),
            "keys are case-insensitive"
        );
        assert_eq!(get("Acquire::http::Proxy::deb.example.org"), Some("DIRECT"));
        assert_eq!(get("Acquire::https::Timeout"), Some("30"));
        assert_eq!(get("Acquire::ForceIPv4"), Some("true"));
        // Anything that can name a program, or changes what is installed, is refused.
        for bad in [
            "-o DPkg::Pre-Invoke=touch",
            "-o DPkg::Pre-Invoke::=touch",
            "-o dpkg::post-invoke::0=touch",
            "-o APT::Update::Pre-Invoke::1=touch",
            "-o APT::Update::Post-Invoke-Success=touch",
            "-o Dpkg::Options::=--force-confnew",
            "-o APT::Install-Recommends=false",
            "-o APT::Get::Fix-Missing=true",
            "-o Acquire::http::Proxy-Auto-Detect=/bin/sh",
            "-o Acquire::http::Proxy::a/b=DIRECT",
            "-o Dir::Bin::Methods=/tmp",
            "-o Acquire::Check-Valid-Until=false",
            "-o Debug::Acquire::http=true",
            "-o Foo::Bar=x",
        ] {
            let err = parse_apt_opts(bad).unwrap_err().to_string();
            assert!(
                err.contains("is not an option prepare-mirrors applies")
                    || err.contains("is not an apt configuration key"),
                "{bad}: {err}"
            );
        }
        for bad in [
            "-y",
            "-o",
            "-o Acquire::Retries",
            "-o Acq uire=1",
            "-o A::B=\"x\"",
            "-o A::B=x;y",
            "-o ::B=1",
        ] {
            assert!(parse_apt_opts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_found_in_scripts() {
        assert_eq!(
            urls_in(
                "bootstrap ${RELEASE} \"${ROOTFS_DIR}\" http://deb.debian.org/debian/\n# see https://x.example/a."
            ),
            ["http://deb.debian.org/debian/", "https://x.example/a."]
        );
    }
}
