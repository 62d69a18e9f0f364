//! `--continue`: which stages an earlier run completed, unchanged since.
//!
//! pi-gen's log says when a stage ended, but not whether it would still be built the
//! same way. Each run records, per image, the fingerprint (see `tree::fingerprints`) of
//! every stage it saw end (`.pi-image/stages.json` in the checkout). A resumed run skips
//! the longest run of leading stages whose recorded fingerprint matches: a stage that
//! failed, never ran, or changed (its files, an earlier stage, the config, pi-gen's
//! scripts) is built again, and so is everything after it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Input;
use super::strategy::Strategy;

pub const RECORD: &str = ".pi-image/stages.json";

/// Completed stages per image name: stage → fingerprint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    images: BTreeMap<String, BTreeMap<String, String>>,
}

fn path(input: &Input) -> PathBuf {
    input.pi_gen_dir.join(RECORD)
}

fn read(input: &Input) -> Record {
    std::fs::read_to_string(path(input))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// What this run will skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub skip: Vec<String>,
}

/// The leading stages that completed unchanged (only with `--continue`).
pub fn decide(input: &Input, fingerprints: &[(String, String)]) -> anyhow::Result<Resume> {
    if !input.continue_build {
        return Ok(Resume::default());
    }
    let record = read(input);
    let done = record
        .images
        .get(&input.img_name)
        .cloned()
        .unwrap_or_default();
    let mut skip = Vec::new();
    for (stage, fp) in fingerprints {
        // The native build's root filesystems are visible here; a container's work
        // volume is not, and pi-gen itself stops if a skipped stage's rootfs is gone.
        let rootfs_ok = input.strategy != Strategy::Native
            || input.work_dir().join(stage).join("rootfs").is_dir();
        match done.get(stage) {
            Some(old) if old == fp && rootfs_ok => skip.push(stage.clone()),
            Some(_) => {
                tracing::info!(
                    "--continue: {stage} changed since it was built (its files, an earlier stage, the config or pi-gen's scripts), or its root filesystem is gone: building from {stage}"
                );
                break;
            }
            None => break,
        }
    }
    if skip.is_empty() {
        tracing::info!(
            "--continue: no stage of an earlier run is complete; building from the start"
        );
    } else {
        tracing::info!(
            "--continue: skipping stages completed earlier: {}",
            skip.join(" ")
        );
    }
    Ok(Resume { skip })
}

/// Records the stages this run saw end (pi-gen logs `End <stage>` only when every step
/// of it succeeded), and forgets those that began and did not end.
pub fn record(
    input: &Input,
    fingerprints: &[(String, String)],
    resume: &Resume,
    log: &str,
) -> anyhow::Result<()> {
    let t = crate::buildlog::parse(log);
    let ended: Vec<String> = t.stages().iter().map(|s| s.name.clone()).collect();
    let mut record = read(input);
    let done = record.images.entry(input.img_name.clone()).or_default();
    for (stage, fp) in fingerprints {
        if resume.skip.contains(stage) {
            continue;
        }
        if ended.contains(stage) {
            done.insert(stage.clone(), fp.clone());
        } else {
            done.remove(stage);
        }
    }
    std::fs::create_dir_all(input.pi_gen_dir.join(super::tree::STATE_DIR))?;
    crate::atomic::write(
        &path(input),
        crate::model::to_canonical_json(&record)?.as_bytes(),
    )
}
