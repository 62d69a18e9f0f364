//! `IMG_NAME.img.xz.metadata.json`: what was built and how. `collect-artifacts` writes
//! the image part; `manifest` adds the build, pi-gen, repository and options parts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::buildlog::{Incomplete, Span};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub schema_version: u32,
    pub generated_at: String,
    pub image: ImageInfo,
    #[serde(default)]
    pub source: Option<SourceInfo>,
    pub checksum_path: String,
    #[serde(default)]
    pub build_log_path: Option<String>,
    /// The packages in the image (SBOM and lock), or why there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryInfo>,
    /// The block map for bmaptool, or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmap: Option<BmapInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildInfo>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepoInfo>,
    #[serde(default = "not_run")]
    pub verifier: serde_json::Value,
}

fn not_run() -> serde_json::Value {
    serde_json::json!({ "status": "not_run" })
}

/// The compressed image and the raw image inside it (what lands on the SD card).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// File name, relative to the metadata file.
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub raw_sha256: String,
    pub raw_size_bytes: u64,
    #[serde(default)]
    pub compression: Option<Compression>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub format: String,
    /// `null` when an existing `.img.xz` was copied as is.
    pub preset: Option<String>,
}

/// Which pi-gen output the image came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub path: String,
    pub format: String,
    #[serde(default)]
    pub entry: Option<String>,
    pub size_bytes: u64,
}

/// What collect-artifacts read from the image's root file system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryInfo {
    /// `written`, or `skipped` (with the reason: no ext4 root file system, no dpkg
    /// database, a damaged one, `--no-sbom`).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<FileRef>,
    /// The same inventory as a CycloneDX 1.6 BOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cyclonedx: Option<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<usize>,
    /// `/etc/os-release`'s ID, VERSION_ID and VERSION_CODENAME, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_partition: Option<u8>,
    /// How the image was read: `raw image`, or `xz index (N blocks)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<String>,
}

/// `IMG_NAME.img.bmap`: which blocks bmaptool writes, and how that was decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmapInfo {
    /// `written` or `skipped` (with the reason).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    /// `pi-gen`: pi-gen's own bmap, every range checked against the image; `allocation`:
    /// from the partition table and each file system's allocation data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_blocks: Option<u64>,
    /// Per partition: what its free space was read from, or why it is all mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// The bmap pi-gen's export made, when there was one: used (method `pi-gen`) once
    /// every range's checksum matched the image, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pi_gen: Option<PiGenBmapInfo>,
}

/// pi-gen's own bmap, and whether it was used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiGenBmapInfo {
    /// Relative to the deploy directory.
    pub path: String,
    pub used: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A file beside the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// File name, relative to the metadata file.
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub start: Option<String>,
    pub end: String,
    pub duration_seconds: Option<u64>,
    pub stage_durations: BTreeMap<String, u64>,
    pub stages: Vec<Span>,
    pub incomplete_stages: Vec<Incomplete>,
    pub observed_elapsed_seconds: u64,
    pub result: Option<String>,
    pub pi_gen: PiGenInfo,
    pub runner: RunnerInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiGenInfo {
    pub url: String,
    pub branch: String,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub commit: Option<String>,
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerInfo {
    pub os: String,
    pub arch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInfo {
    pub commit: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}
