//! The image's software inventory, read from its root file system: every installed
//! Debian package ([`dpkg`]), written as an SPDX 2.3 SBOM ([`spdx`]) and as the
//! build's package lock ([`lock`]).
//!
//! Which archive a package came from is not in dpkg's database. A package is
//! attributed to the Raspberry Pi archive when that archive's `Packages` list in the
//! image (apt keeps them under `/var/lib/apt/lists`) has it at the installed version;
//! every other package to the distribution the image is (`/etc/os-release` ID: debian,
//! or raspbian for 32-bit Raspberry Pi OS).

pub mod cyclonedx;
pub mod dpkg;
pub mod lock;
pub mod spdx;

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};

use crate::image::rootfs::RootFs;

pub use self::dpkg::Package;

const STATUS: &str = "/var/lib/dpkg/status";
const LISTS: &str = "/var/lib/apt/lists";
const UPDATES: &str = "/var/lib/dpkg/updates";
/// The distributions a purl names as the vendor of the image's own packages.
const FAMILIES: [&str; 2] = ["debian", "raspbian"];
/// dpkg's status for a full desktop image is a few MB.
const MAX_STATUS: u64 = 64 << 20;
const MAX_SMALL: u64 = 1 << 20;
/// The Raspberry Pi archive's lists are a few MB; Debian's (never read) are 50 MB.
const MAX_LIST: u64 = 32 << 20;
/// Hosts whose lists are the Raspberry Pi archive (`archive.raspberrypi.com/debian`).
const RPI_LIST_PREFIXES: [&str; 2] = ["archive.raspberrypi.com_", "archive.raspberrypi.org_"];

/// The package namespace of a purl: who publishes the package.
pub const RASPBERRYPI: &str = "raspberrypi";

/// `/etc/os-release`'s identifying fields (each checked: they go into purls).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OsRelease {
    pub id: String,
    /// `debian` or `raspbian`: `ID`, or the first of `ID_LIKE` that is one (the purl
    /// namespace of the distribution's own packages).
    #[serde(skip)]
    pub family: String,
    pub version_id: Option<String>,
    pub codename: Option<String>,
    pub pretty_name: Option<String>,
}

/// Everything the SBOM and the lock say about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub os: OsRelease,
    /// Sorted by name, then architecture; each with its publisher.
    pub packages: Vec<(Package, String)>,
    pub not_installed: usize,
    /// The image's apt sources, one `deb …` line each, credentials removed.
    pub sources: Vec<String>,
}

impl Inventory {
    /// Reads the inventory of the root file system. An error says why there is none
    /// (no dpkg database, a damaged one); the caller warns and writes no SBOM.
    pub fn read(fs: &RootFs) -> anyhow::Result<Self> {
        let Some(status) = fs.read(STATUS, MAX_STATUS)? else {
            bail!("the root file system has no {STATUS}: it is not a Debian-based image");
        };
        let status = dpkg::parse_status(&String::from_utf8_lossy(&status))
            .with_context(|| format!("{STATUS} in the image is damaged"))?;
        if status.packages.is_empty() {
            bail!("{STATUS} in the image lists no installed package");
        }
        // dpkg applies these journal entries to the status file at its next run: until
        // then the status file is not the package set.
        if fs
            .list(UPDATES)?
            .iter()
            .any(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            bail!(
                "{UPDATES} in the image holds dpkg journal entries not yet applied to {STATUS} \
                 (run `dpkg --configure -a` in the image)"
            );
        }
        let os = os_release(fs)?;
        let sources = apt_sources(fs)?;
        let (rpi_lists, rpi) = raspberrypi_archive(fs)?;
        // Without the Raspberry Pi archive's lists its packages cannot be told from
        // Debian's, and a purl naming the wrong vendor is a wrong SBOM.
        if rpi_lists == 0
            && sources.iter().any(|s| {
                RPI_LIST_PREFIXES
                    .iter()
                    .any(|p| s.contains(&p.replace('_', "/")))
            })
        {
            bail!(
                "the image's apt sources name the Raspberry Pi archive but {LISTS} holds none of its \
                 lists, so its packages cannot be told from Debian's (keep apt's lists in the image)"
            );
        }
        let packages = status
            .packages
            .into_iter()
            .map(|p| {
                let key = (p.name.clone(), p.arch.clone(), p.version.clone());
                let vendor = if rpi.contains(&key) {
                    RASPBERRYPI.to_owned()
                } else {
                    os.family.clone()
                };
                (p, vendor)
            })
            .collect();
        Ok(Self {
            os,
            packages,
            not_installed: status.not_installed,
            sources,
        })
    }
}

/// `ID` (the purl namespace) must be what os-release allows: `a-z 0-9 . _ -`.
fn os_release(fs: &RootFs) -> anyhow::Result<OsRelease> {
    let text = match fs.read("/etc/os-release", MAX_SMALL)? {
        Some(t) => t,
        None => fs
            .read("/usr/lib/os-release", MAX_SMALL)?
            .unwrap_or_default(),
    };
    let text = String::from_utf8_lossy(&text);
    let mut os = OsRelease::default();
    let mut like = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(['"', '\'']).to_owned();
        let token = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
        match k.trim() {
            "ID_LIKE" => like = v,
            "ID" if token => os.id = v,
            "ID" => bail!(
                "/etc/os-release in the image has an invalid ID `{}`",
                v.escape_debug()
            ),
            "VERSION_ID" if token => os.version_id = Some(v),
            "VERSION_CODENAME" if token => os.codename = Some(v),
            "PRETTY_NAME" => {
                os.pretty_name = Some(
                    crate::gha::escape::plain_line(&v)
                        .chars()
                        .take(128)
                        .collect(),
                );
            }
            _ => {}
        }
    }
    if os.id.is_empty() {
        bail!("the image has no /etc/os-release ID: its distribution is unknown");
    }
    // A derivative (`ID=sugarkube`, `ID_LIKE=debian`) installs its family's packages.
    os.family = std::iter::once(os.id.as_str())
        .chain(like.split_whitespace())
        .find(|f| FAMILIES.contains(f))
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "/etc/os-release in the image names `{}`, which is neither Debian nor Raspbian \
                 nor like them (ID_LIKE): the packages' vendor is unknown",
                os.id
            )
        })?;
    Ok(os)
}

/// `(name, arch, version)`.
type PackageKey = (String, String, String);

/// How many of the Raspberry Pi archive's lists there are, and the `(name, arch,
/// version)` of every package they hold.
fn raspberrypi_archive(fs: &RootFs) -> anyhow::Result<(usize, BTreeSet<PackageKey>)> {
    let mut found = BTreeSet::new();
    let mut lists = 0;
    for name in fs.list(LISTS)? {
        if !RPI_LIST_PREFIXES.iter().any(|p| name.starts_with(p)) || !name.ends_with("_Packages") {
            continue;
        }
        let path = format!("{LISTS}/{name}");
        let Some(text) = fs.read(&path, MAX_LIST)? else {
            continue;
        };
        lists += 1;
        for p in dpkg::paragraphs(&String::from_utf8_lossy(&text)) {
            if let Some(n) = p.get("Package")
                && let Ok(pkg) = dpkg::package(&p, n)
            {
                found.insert((pkg.name, pkg.arch, pkg.version));
            }
        }
    }
    Ok((lists, found))
}

/// A URL's `user:password@` in a one-line apt source, `#` included.
static SOURCE_CREDENTIALS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"(?i)([a-z][a-z0-9+.-]*://)([^/?\s]+)@")
        .unwrap_or_else(|e| unreachable!("a literal pattern: {e}"))
});

/// The image's apt sources (`sources.list`, `sources.list.d/*.list` and deb822
/// `*.sources`), one-line form. A line with anything but printable ASCII is dropped:
/// it is not a source apt would use as written, and it would reach a published file.
fn apt_sources(fs: &RootFs) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut files = vec!["/etc/apt/sources.list".to_owned()];
    for name in fs.list("/etc/apt/sources.list.d")? {
        if name.ends_with(".list") || name.ends_with(".sources") {
            files.push(format!("/etc/apt/sources.list.d/{name}"));
        }
    }
    for path in files {
        let Some(text) = fs.read(&path, MAX_SMALL)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        if path.ends_with(".sources") {
            for p in dpkg::paragraphs(&text) {
                if p.get("Enabled")
                    .is_some_and(|e| e.eq_ignore_ascii_case("no"))
                {
                    continue;
                }
                let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
                let words = |k: &str| get(k).split_whitespace().collect::<Vec<_>>().join(" ");
                for t in get("Types").split_whitespace() {
                    for uri in get("URIs").split_whitespace() {
                        for suite in get("Suites").split_whitespace() {
                            out.push(format!("{t} {uri} {suite} {}", words("Components")));
                        }
                    }
                }
            }
        } else {
            for line in text.lines() {
                // Hidden before the comment is cut: a password holding `#` would
                // otherwise leave its first part behind.
                let line = SOURCE_CREDENTIALS.replace_all(line, "${1}***@");
                let line = line.split('#').next().unwrap_or_default();
                let words: Vec<_> = line.split_whitespace().collect();
                if matches!(words.first(), Some(&("deb" | "deb-src"))) {
                    out.push(words.join(" "));
                }
            }
        }
    }
    let mut clean: Vec<String> = out
        .into_iter()
        .map(|l| crate::gha::escape::redact_credentials(l.trim()))
        .filter(|l| l.len() <= 1024 && l.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .collect();
    clean.dedup();
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sources_password_holding_a_hash_is_hidden_whole() {
        let line = "deb https://user:pa#ss@apt.example/debian bookworm main # comment";
        let hidden = SOURCE_CREDENTIALS.replace_all(line, "${1}***@");
        assert_eq!(
            hidden,
            "deb https://***@apt.example/debian bookworm main # comment"
        );
        assert_eq!(
            crate::gha::escape::redact_credentials("x_https://u:p@h/"),
            "x_https://***@h/"
        );
    }
}
