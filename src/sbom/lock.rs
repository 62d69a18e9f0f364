//! `IMG_NAME.packages.lock`: the input set of the build, as a text file a person can
//! read and a later release can diff against.
//!
//! ```text
//! # pi-image packages.lock 1 (header comment)
//! image sugarkube.img.xz <raw image sha256>
//! os debian 12 bookworm
//! pi-gen <commit>
//! source deb http://deb.debian.org/debian bookworm main
//! mirror debian http://mirror.example/debian
//!
//! adduser all 3.134
//! libc6 arm64 2.36-9+deb12u9
//! ```
//!
//! Before the blank line, one fact per line (`source`: the image's apt sources;
//! `mirror`: the mirror prepare-mirrors chose for each archive of the build; `pi-gen`:
//! the commit built, `unknown` when not known). After it, every installed package as
//! `NAME ARCH VERSION`, sorted. Every value is a single word of printable ASCII
//! (checked where it was read), so the format needs no quoting.

use anyhow::bail;

use super::Inventory;

pub const HEADER: &str = "# pi-image packages.lock 1: the packages in the image and what the build used.\n\
# Facts first (image, os, pi-gen, source, mirror), then after a blank line every installed\n\
# package as NAME ARCH VERSION, sorted.\n";

/// What the lock records besides the image's own inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInputs {
    pub pi_gen_commit: Option<String>,
    /// `(archive, url)` the build's apt used.
    pub mirrors: Vec<(String, String)>,
}

/// The lock's text.
pub fn render(image_file: &str, raw_sha256: &str, inv: &Inventory, build: &BuildInputs) -> String {
    let os = &inv.os;
    let mut s = String::from(HEADER);
    s.push_str(&format!("image {image_file} {raw_sha256}\n"));
    s.push_str(&format!(
        "os {} {} {}\n",
        os.id,
        os.version_id.as_deref().unwrap_or("-"),
        os.codename.as_deref().unwrap_or("-")
    ));
    s.push_str(&format!(
        "pi-gen {}\n",
        build.pi_gen_commit.as_deref().unwrap_or("unknown")
    ));
    for src in &inv.sources {
        s.push_str(&format!("source {src}\n"));
    }
    for (archive, url) in &build.mirrors {
        s.push_str(&format!("mirror {archive} {url}\n"));
    }
    s.push('\n');
    for (p, _) in &inv.packages {
        s.push_str(&format!("{} {} {}\n", p.name, p.arch, p.version));
    }
    s
}

/// A lock read back: its facts and its `(name, arch, version)` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    pub facts: Vec<(String, String)>,
    pub packages: Vec<(String, String, String)>,
}

/// Parses a lock (a previous release's: hostile). Package lines must have exactly three
/// words and be sorted, as [`render`] writes them.
pub fn parse(text: &str) -> anyhow::Result<Lock> {
    let mut lock = Lock::default();
    let mut in_packages = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            in_packages = true;
            continue;
        }
        if !line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            bail!("line {} holds characters a lock never has", i + 1);
        }
        if in_packages {
            let w: Vec<_> = line.split(' ').collect();
            let [name, arch, version] = w[..] else {
                bail!("line {}: a package line is `NAME ARCH VERSION`", i + 1);
            };
            // Names, architectures and versions reach the notes' Markdown table: the
            // lock holds only what dpkg's grammar allows, as `render` wrote it.
            super::dpkg::check_name(name)
                .and_then(|()| super::dpkg::check_arch(name, arch))
                .and_then(|()| super::dpkg::check_version(name, version))
                .map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
            let entry = (name.to_owned(), arch.to_owned(), version.to_owned());
            if lock.packages.last().is_some_and(|last| *last >= entry) {
                bail!("line {}: packages are not sorted (or repeated)", i + 1);
            }
            lock.packages.push(entry);
        } else {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            lock.facts.push((k.to_owned(), v.to_owned()));
        }
    }
    if !in_packages {
        bail!("no package list (it follows the first blank line)");
    }
    Ok(lock)
}

/// How the package set changed between two locks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// `(name, arch, version)`.
    pub added: Vec<(String, String, String)>,
    pub removed: Vec<(String, String, String)>,
    /// `(name, arch, from, to)`, in Debian version order.
    pub upgraded: Vec<(String, String, String, String)>,
    pub downgraded: Vec<(String, String, String, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
    }
}

/// What changed from `before` to `after`, package by package (name and architecture).
pub fn diff(before: &Lock, after: &Lock) -> Changes {
    use std::collections::BTreeMap;
    let index = |l: &Lock| -> BTreeMap<(String, String), String> {
        l.packages
            .iter()
            .map(|(n, a, v)| ((n.clone(), a.clone()), v.clone()))
            .collect()
    };
    let (old, new) = (index(before), index(after));
    let mut c = Changes::default();
    for ((name, arch), v) in &new {
        match old.get(&(name.clone(), arch.clone())) {
            None => c.added.push((name.clone(), arch.clone(), v.clone())),
            Some(was) if was == v => {}
            Some(was) => {
                let entry = (name.clone(), arch.clone(), was.clone(), v.clone());
                if version_lt(v, was) {
                    c.downgraded.push(entry);
                } else {
                    c.upgraded.push(entry);
                }
            }
        }
    }
    for ((name, arch), v) in &old {
        if !new.contains_key(&(name.clone(), arch.clone())) {
            c.removed.push((name.clone(), arch.clone(), v.clone()));
        }
    }
    c
}

/// `a < b` in dpkg's order; versions that do not parse compare as text.
fn version_lt(a: &str, b: &str) -> bool {
    match (
        a.parse::<debversion::Version>(),
        b.parse::<debversion::Version>(),
    ) {
        (Ok(x), Ok(y)) => x < y,
        _ => a < b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(pkgs: &str) -> Lock {
        parse(&format!("image x.img.xz abc\n\n{pkgs}")).unwrap()
    }

    #[test]
    fn changes_in_debian_version_order() {
        let before = lock(
            "bash arm64 5.2.15-2+b2\ncurl arm64 7.88.1-10+deb12u5\nold all 1.0\nvim arm64 2:9.0.1378-2\n",
        );
        let after = lock(
            "bash arm64 5.2.15-2+b7\ncurl arm64 7.88.1-10+deb12u5~bpo1\nnew arm64 1:0.1\nvim arm64 2:9.0.1378-2\n",
        );
        let c = diff(&before, &after);
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(c.added, [("new".into(), "arm64".into(), "1:0.1".into())]);
        assert_eq!(c.removed, [("old".into(), "all".into(), "1.0".into())]);
        assert_eq!(
            c.upgraded.iter().map(|u| u.0.clone()).collect::<Vec<_>>(),
            s(&["bash"])
        );
        // `~` sorts before everything, even the end of the string.
        assert_eq!(c.downgraded[0].0, "curl");
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn a_lock_round_trips_and_a_forged_one_is_refused() {
        let inv = crate::sbom::Inventory {
            os: crate::sbom::OsRelease {
                id: "debian".into(),
                family: "debian".into(),
                version_id: Some("12".into()),
                codename: Some("bookworm".into()),
                pretty_name: None,
            },
            packages: vec![(
                crate::sbom::Package {
                    name: "libc6".into(),
                    arch: "arm64".into(),
                    version: "2.36-9+deb12u9".into(),
                    source: "glibc".into(),
                    source_version: "2.36-9+deb12u9".into(),
                },
                "debian".into(),
            )],
            not_installed: 0,
            sources: vec!["deb http://deb.debian.org/debian bookworm main".into()],
        };
        let text = render(
            "x.img.xz",
            "ab",
            &inv,
            &BuildInputs {
                pi_gen_commit: Some("d7a31c6a".into()),
                mirrors: vec![("debian".into(), "http://m.example/debian".into())],
            },
        );
        let l = parse(&text).unwrap();
        assert_eq!(
            l.packages,
            [("libc6".into(), "arm64".into(), "2.36-9+deb12u9".into())]
        );
        assert!(l.facts.contains(&("pi-gen".into(), "d7a31c6a".into())));
        assert!(
            l.facts
                .contains(&("mirror".into(), "debian http://m.example/debian".into()))
        );
        for bad in [
            "x\n\nb arm64 1\na arm64 1\n",
            "x\n\na arm64\n",
            "x\n\na arm64 1 extra\n",
            "x\n\na arm64 1\u{1b}\n",
            "x\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
