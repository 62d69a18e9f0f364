//! `IMG_NAME.spdx.json`: an SPDX 2.3 JSON document describing the image (the raw disk
//! image, by its SHA-256) and every installed package in it, with its version (epoch
//! kept), architecture, source package and `pkg:deb` purl.

use std::collections::BTreeSet;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::{Inventory, Package, RASPBERRYPI};

/// purl components are percent-encoded except for the unreserved characters.
const PURL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// What the SBOM is about.
pub struct Subject<'a> {
    /// The image's name (IMG_NAME) and its released file name.
    pub name: &'a str,
    pub file_name: &'a str,
    /// The raw disk image's digest: what the SBOM describes.
    pub raw_sha256: &'a str,
    /// RFC 3339, UTC, seconds.
    pub created: &'a str,
}

/// `pkg:deb/NAMESPACE/NAME@VERSION?arch=ARCH&distro=DISTRO[&upstream=SOURCE]`
/// (purl-spec's deb type: qualifiers sorted, every part percent-encoded).
pub fn purl(p: &Package, namespace: &str, distro: Option<&str>) -> String {
    let enc = |s: &str| utf8_percent_encode(s, PURL).to_string();
    let mut q = vec![format!("arch={}", enc(&p.arch))];
    if let Some(d) = distro {
        q.push(format!("distro={}", enc(d)));
    }
    if p.source != p.name || p.source_version != p.version {
        let up = if p.source_version == p.version {
            p.source.clone()
        } else {
            format!("{}@{}", p.source, p.source_version)
        };
        q.push(format!("upstream={}", enc(&up)));
    }
    format!(
        "pkg:deb/{}/{}@{}?{}",
        enc(namespace),
        enc(&p.name),
        enc(&p.version),
        q.join("&")
    )
}

/// Who publishes the packages of a purl namespace.
pub fn publisher(namespace: &str) -> Option<&'static str> {
    match namespace {
        "debian" => Some("Debian"),
        "raspbian" => Some("Raspbian"),
        RASPBERRYPI => Some("Raspberry Pi Ltd"),
        _ => None,
    }
}

fn supplier(namespace: &str) -> String {
    publisher(namespace).map_or_else(
        || "NOASSERTION".to_owned(),
        |p| format!("Organization: {p}"),
    )
}

/// The purl `distro` qualifier: `ID-VERSION_ID`, else the codename.
pub fn distro(os: &super::OsRelease) -> Option<String> {
    match (&os.version_id, &os.codename) {
        (Some(v), _) => Some(format!("{}-{v}", os.id)),
        (None, Some(c)) => Some(c.clone()),
        (None, None) => None,
    }
}

/// `SPDXRef-` followed by what SPDX allows (letters, digits, `.`, `-`), unique.
fn spdx_id(used: &mut BTreeSet<String>, parts: &[&str]) -> String {
    let base: String = parts
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut id = format!("SPDXRef-{base}");
    let mut n = 2;
    while !used.insert(id.clone()) {
        id = format!("SPDXRef-{base}-{n}");
        n += 1;
    }
    id
}

/// The document (serialise with [`crate::model::to_canonical_json`]).
pub fn document(subject: &Subject<'_>, inv: &Inventory) -> Value {
    let os = &inv.os;
    let distro = distro(os);
    let mut used = BTreeSet::new();
    let image_id = spdx_id(&mut used, &["Image", subject.name]);
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": subject.name,
        "packageFileName": subject.file_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING_SYSTEM",
        "checksums": [{ "algorithm": "SHA256", "checksumValue": subject.raw_sha256 }],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "description": os.pretty_name.clone().unwrap_or_else(|| os.id.clone()),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (p, namespace) in &inv.packages {
        let id = spdx_id(&mut used, &["deb", &p.name, &p.arch]);
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": supplier(namespace),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("built from the source package {} {}", p.source, p.source_version),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, namespace, distro.as_deref()),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.file_name,
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/pi-image-action/{}-{}",
            utf8_percent_encode(subject.name, PURL),
            subject.raw_sha256
        ),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: pi-image-{}", env!("CARGO_PKG_VERSION"))],
            "comment": "Installed packages read from /var/lib/dpkg/status in the image's root file system. \
                        A package is attributed to the Raspberry Pi archive when that archive's apt list in \
                        the image has it at the installed version, otherwise to the image's distribution \
                        (/etc/os-release ID, or the Debian family its ID_LIKE names).",
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, source: &str, source_version: &str) -> Package {
        Package {
            name: name.into(),
            arch: "arm64".into(),
            version: version.into(),
            source: source.into(),
            source_version: source_version.into(),
        }
    }

    #[test]
    fn purls_encode_epochs_and_plus_and_name_the_source() {
        assert_eq!(
            purl(
                &pkg("libstdc++6", "12.2.0-14", "gcc-12", "12.2.0-14"),
                "debian",
                Some("debian-12")
            ),
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=arm64&distro=debian-12&upstream=gcc-12"
        );
        assert_eq!(
            purl(
                &pkg("libgcc-s1", "1:12.2.0-14", "gcc-12", "12.2.0-14"),
                "debian",
                None
            ),
            "pkg:deb/debian/libgcc-s1@1%3A12.2.0-14?arch=arm64&upstream=gcc-12%4012.2.0-14"
        );
        assert_eq!(
            purl(
                &pkg(
                    "raspi-config",
                    "20231012~bookworm",
                    "raspi-config",
                    "20231012~bookworm"
                ),
                RASPBERRYPI,
                Some("debian-12")
            ),
            "pkg:deb/raspberrypi/raspi-config@20231012~bookworm?arch=arm64&distro=debian-12"
        );
    }

    #[test]
    fn ids_are_spdx_refs_and_unique() {
        let mut used = BTreeSet::new();
        assert_eq!(
            spdx_id(&mut used, &["deb", "g++", "arm64"]),
            "SPDXRef-deb-g---arm64"
        );
        assert_eq!(
            spdx_id(&mut used, &["deb", "g+-", "arm64"]),
            "SPDXRef-deb-g---arm64-2"
        );
    }
}
