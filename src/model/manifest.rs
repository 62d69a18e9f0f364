//! `IMG_NAME.img.xz.manifest.json`: the provenance record `sign` and `release` work
//! from: where the build came from, the release it becomes, and every artifact's digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::metadata::BuildInfo;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub generated_at: String,
    pub release: Release,
    pub source: Source,
    #[serde(default)]
    pub build: Option<BuildInfo>,
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub smoke: Option<Smoke>,
    pub verifier: serde_json::Value,
    /// The release the notes' "Changed since" compares with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousRelease {
    /// Its tag, when given.
    pub tag: Option<String>,
    /// The SHA-256 of its packages.lock.
    pub lock_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Stable,
    Nightly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub channel: Channel,
    pub tag: String,
    pub name: String,
    pub prerelease: bool,
    pub make_latest: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub repository: Option<String>,
    pub server_url: String,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub commit: Option<String>,
    pub workflow: Option<String>,
    pub run_id: Option<String>,
    pub run_attempt: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    Image,
    Checksum,
    Metadata,
    BuildLog,
    Provenance,
    /// SPDX 2.3 JSON: every package installed in the image.
    Sbom,
    /// The same as a CycloneDX 1.6 BOM.
    Cyclonedx,
    /// The packages, apt sources, mirrors and pi-gen commit of the build.
    PackagesLock,
    /// `IMG_NAME.img.bmap`: the block map for bmaptool.
    Bmap,
    /// `SHA256SUMS`: every other artifact's digest, in `sha256sum -c` format.
    Sha256sums,
    /// `IMG_NAME.rpi-imager.json`: a Raspberry Pi Imager repository with this image.
    RpiImager,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub kind: ArtifactKind,
    pub size_bytes: u64,
    pub sha256: String,
    /// For the checksum file: the digest it records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains_sha256: Option<String>,
    /// For the image: the raw disk image inside the `.xz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_size_bytes: Option<u64>,
    /// The Sigstore bundle `FILE.sigstore.json`, once `sign` has made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    pub name: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Smoke {
    pub status: String,
    pub directory: String,
    pub artifacts: Vec<SmokeFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmokeFile {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
}

/// Reads a manifest (a file, so read as every input is: no FIFO, no symlink out) and
/// returns it with its text; `Ok(None)` when there is no file at `path`.
pub fn load_if_present(path: &std::path::Path) -> anyhow::Result<Option<(Manifest, String)>> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let text = crate::input::read_text("the manifest (--manifest)", path, None)?;
    let manifest = serde_json::from_str(&text).map_err(|e| {
        crate::error::usage(format!(
            "`{}` is not a pi-image manifest: {e}",
            path.display()
        ))
    })?;
    Ok(Some((manifest, text)))
}

/// [`load_if_present`], a missing file being a usage error that says how to make one.
pub fn load(path: &std::path::Path) -> anyhow::Result<(Manifest, String)> {
    load_if_present(path)?.ok_or_else(|| {
        crate::error::usage(format!(
            "cannot read the manifest `{}`: there is no such file; run `pi-image manifest` first",
            path.display()
        ))
    })
}
