//! `/var/lib/dpkg/status` (and apt's `Packages` lists, same format): deb822 paragraphs.
//!
//! The file comes out of the image, so it is hostile: every value that reaches the SBOM
//! or the lock is checked against dpkg's own grammar. dpkg refuses to write anything
//! else, so a status file that breaks it is damaged or forged, and no SBOM is better
//! than a wrong one.

use std::collections::BTreeMap;

use anyhow::bail;

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub arch: String,
    /// Epoch kept (`1:2.3-4`).
    pub version: String,
    /// The source package and its version, when dpkg records them (it omits `Source`
    /// when it equals the name, and the version when it equals the binary's).
    pub source: String,
    pub source_version: String,
}

/// What the status file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Installed packages, sorted by name then architecture.
    pub packages: Vec<Package>,
    /// Entries that are known to dpkg but not installed (removed with their
    /// configuration kept, half-installed, …): not in the image's package set.
    pub not_installed: usize,
}

/// One deb822 paragraph: field name (as written) → value (continuation lines joined
/// with `\n`). Lenient, for apt's `Packages` lists (which only label packages already
/// read from the status file): what is not a field is skipped, a repeated field wins.
pub fn paragraphs(text: &str) -> Vec<BTreeMap<&str, String>> {
    deb822(text, false).unwrap_or_default()
}

/// The status file's paragraphs, as dpkg writes them: every line a field or its
/// continuation, no field twice, and the file ends with a newline (one that does not
/// was cut short: its last version may be too).
fn strict_paragraphs(text: &str) -> anyhow::Result<Vec<BTreeMap<&str, String>>> {
    if !text.is_empty() && !text.ends_with('\n') {
        bail!("it does not end with a newline (it was cut short)");
    }
    deb822(text, true)
}

/// deb822 paragraphs; `strict`: any line that is not a field, a continuation of one or an
/// empty separator, and any repeated field, is an error (else it is skipped, or wins).
fn deb822(text: &str, strict: bool) -> anyhow::Result<Vec<BTreeMap<&str, String>>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<&str, String> = BTreeMap::new();
    let mut last: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let separator = if strict {
            line.is_empty()
        } else {
            line.trim().is_empty()
        };
        if separator {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            match last.and_then(|k| cur.get_mut(k)) {
                Some(v) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None if strict => bail!("line {} continues no field", i + 1),
                None => {}
            }
        } else if let Some((k, v)) = line.split_once(':') {
            if cur.insert(k, v.trim().to_owned()).is_some() && strict {
                bail!("line {}: field `{}` is repeated", i + 1, k.escape_debug());
            }
            last = Some(k);
        } else if strict {
            bail!("line {} is neither a field nor a continuation", i + 1);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parses dpkg's status database.
pub fn parse_status(text: &str) -> anyhow::Result<Status> {
    let mut status = Status::default();
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in strict_paragraphs(text)?.iter().enumerate() {
        let Some(name) = p.get("Package") else {
            bail!("entry {} has no Package field", i + 1);
        };
        let Some(state) = p.get("Status") else {
            bail!(
                "package `{}` has no Status field (dpkg always writes one)",
                name.escape_debug()
            );
        };
        // `want flag status`. Installed, or configured with triggers still to run: its
        // files are on the image. Not installed, or only its configuration left: not.
        // Anything between is a build that stopped half-way: no package set to report.
        match state.split(' ').collect::<Vec<_>>()[..] {
            [
                _,
                "ok",
                "installed" | "triggers-pending" | "triggers-awaited",
            ] => {}
            [_, "ok", "not-installed" | "config-files"] => {
                status.not_installed += 1;
                continue;
            }
            [
                _,
                _,
                s @ ("half-installed" | "unpacked" | "half-configured"),
            ] => bail!(
                "package `{}` is {s}: the build left it unfinished",
                name.escape_debug()
            ),
            _ => bail!(
                "package `{}` has Status `{}`, which a finished build does not leave",
                name.escape_debug(),
                state.escape_debug()
            ),
        }
        let pkg = package(p, name)?;
        if !seen.insert((pkg.name.clone(), pkg.arch.clone())) {
            bail!(
                "package `{}:{}` is listed twice as installed",
                pkg.name,
                pkg.arch
            );
        }
        status.packages.push(pkg);
    }
    status.packages.sort();
    Ok(status)
}

/// The checked package of one paragraph (status file or `Packages` list).
pub fn package(p: &BTreeMap<&str, String>, name: &str) -> anyhow::Result<Package> {
    let field = |k: &str| {
        p.get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow::anyhow!("package `{}` has no {k} field", name.escape_debug()))
    };
    check_name(name)?;
    let arch = field("Architecture")?;
    check_arch(name, arch)?;
    let version = field("Version")?;
    check_version(name, version)?;
    let (source, source_version) = match p.get("Source").map(String::as_str) {
        None | Some("") => (name, version),
        Some(s) => match s.split_once(' ') {
            None => (s, version),
            Some((src, v)) => {
                let v = v
                    .strip_prefix('(')
                    .and_then(|v| v.strip_suffix(')'))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "package `{name}` has an invalid Source `{}`",
                            s.escape_debug()
                        )
                    })?;
                check_version(name, v)?;
                (src, v)
            }
        },
    };
    check_name(source)?;
    Ok(Package {
        name: name.to_owned(),
        arch: arch.to_owned(),
        version: version.to_owned(),
        source: source.to_owned(),
        source_version: source_version.to_owned(),
    })
}

/// dpkg's architecture names (`arm64`, `all`, `linux-any`): lower-case letters, digits
/// and `-`.
pub fn check_arch(name: &str, arch: &str) -> anyhow::Result<()> {
    if arch.is_empty()
        || arch.len() > 32
        || !arch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!(
            "package `{name}` has an invalid architecture `{}`",
            arch.escape_debug()
        );
    }
    Ok(())
}

/// Debian policy 5.6.1: lower-case letters, digits, `+ - .`, two or more, starting
/// with a letter or digit.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() >= 2
        && name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        bail!("invalid package name `{}`", name.escape_debug())
    }
}

/// Debian policy 5.6.12: `[epoch:]upstream[-revision]`, the epoch digits, the upstream
/// part starting with a digit, and only `A-Za-z0-9.+~-` (and `:` after an epoch).
pub fn check_version(name: &str, v: &str) -> anyhow::Result<()> {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, v),
    };
    let ok = v.len() <= 256
        && epoch.is_none_or(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
        && rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:".contains(&b));
    if ok {
        Ok(())
    } else {
        bail!(
            "package `{name}` has an invalid version `{}`",
            v.escape_debug()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: arm64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u9
Description: GNU C Library: Shared libraries
 Contains the standard libraries.
 .
 More.

Package: old-thing
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: libgcc-s1
Status: install ok installed
Architecture: arm64
Source: gcc-12 (12.2.0-14)
Version: 1:12.2.0-14

Package: busybox-static
Status: hold ok installed
Architecture: arm64
Version: 1:1.35.0-4+b3
";

    #[test]
    fn installed_packages_with_their_sources_and_epochs() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.not_installed, 1);
        let got: Vec<_> = s
            .packages
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} {} {}",
                    p.name, p.arch, p.version, p.source, p.source_version
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "busybox-static arm64 1:1.35.0-4+b3 busybox-static 1:1.35.0-4+b3",
                "libc6 arm64 2.36-9+deb12u9 glibc 2.36-9+deb12u9",
                "libgcc-s1 arm64 1:12.2.0-14 gcc-12 12.2.0-14",
            ]
        );
    }

    #[test]
    fn forged_values_are_refused_not_passed_on() {
        for (field, bad) in [
            ("Package", "Evil"),
            ("Package", "a;rm -rf /"),
            ("Version", "1.0\u{1b}[31m"),
            ("Version", "abc"),
            ("Version", "x:1.0"),
            ("Architecture", "arm64 ../../x"),
            ("Source", "glibc (2.36"),
            ("Source", "Glibc"),
        ] {
            let text = STATUS.replacen(
                &format!(
                    "{field}: {}",
                    match field {
                        "Package" => "libc6",
                        "Version" => "2.36-9+deb12u9",
                        "Architecture" => "arm64",
                        _ => "glibc",
                    }
                ),
                &format!("{field}: {bad}"),
                1,
            );
            assert!(
                parse_status(&text).is_err(),
                "{field}: {bad:?} was accepted"
            );
        }
        let twice = format!(
            "{STATUS}\nPackage: libc6\nStatus: install ok installed\nArchitecture: arm64\nVersion: 2\n"
        );
        assert!(
            parse_status(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn a_status_file_dpkg_would_not_write_is_refused() {
        let ok =
            "Package: a1\nStatus: install ok triggers-pending\nArchitecture: all\nVersion: 1\n";
        assert_eq!(parse_status(ok).unwrap().packages.len(), 1);
        for (text, needle) in [
            (
                "Package: a1\nStatus: install ok installed\nArchitecture: all\nVersion: 1",
                "cut short",
            ),
            ("Package: a1\nArchitecture: all\nVersion: 1\n", "no Status"),
            (
                "Package: a1\nStatus: install ok installed\nVersion: 1\nVersion: 2\nArchitecture: all\n",
                "repeated",
            ),
            ("Package: a1\nno colon here\n", "neither a field"),
            (" continuation\n", "continues no field"),
            (
                "Package: a1\nStatus: install ok half-configured\nArchitecture: all\nVersion: 1\n",
                "unfinished",
            ),
            (
                "Package: a1\nStatus: install reinstreq installed\nArchitecture: all\nVersion: 1\n",
                "does not leave",
            ),
        ] {
            let e = format!("{:#}", parse_status(text).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
