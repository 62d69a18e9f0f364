//! `release`'s decision: the desired release against the one GitHub has. Pure: it
//! works on the input and on what [`super::run`] read from GitHub.

use std::collections::BTreeMap;

use super::{Input, LocalAsset, Mode};
use crate::github::{Asset, Release};

/// What happens to one asset name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetOp {
    Upload(String),
    /// The remote copy differs (digest, size, incomplete upload) or has no digest.
    Replace {
        name: String,
        asset_id: u64,
        why: String,
    },
    Keep(String),
    Delete {
        name: String,
        asset_id: u64,
    },
    /// Not ours, left alone without --prune.
    Leave(String),
}

/// What `run` will change on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The release as it will be: repository, tag, name, notes and flags.
    pub repository: String,
    pub tag: String,
    pub name: String,
    pub notes: String,
    pub prerelease: bool,
    pub make_latest: bool,
    pub target_commitish: Option<String>,
    /// Nothing is sent without `--publish`: the plan is the dry run's report.
    pub dry_run: bool,
    pub create: bool,
    pub update_fields: bool,
    pub publish: bool,
    pub ops: Vec<AssetOp>,
}

/// Desired state against the existing release. Pure.
pub fn plan(input: &Input, existing: Option<&Release>, remote: &[Asset]) -> Plan {
    let by_name: BTreeMap<&str, &Asset> = remote.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut ops = Vec::new();
    for a in &input.assets {
        ops.push(match by_name.get(a.name.as_str()) {
            None => AssetOp::Upload(a.name.clone()),
            Some(r) => match differs(a, r) {
                None => AssetOp::Keep(a.name.clone()),
                Some(why) => AssetOp::Replace {
                    name: a.name.clone(),
                    asset_id: r.id,
                    why,
                },
            },
        });
    }
    for r in remote {
        if !input.assets.iter().any(|a| a.name == r.name) {
            ops.push(if input.prune {
                AssetOp::Delete {
                    name: r.name.clone(),
                    asset_id: r.id,
                }
            } else {
                AssetOp::Leave(r.name.clone())
            });
        }
    }
    let update_fields = existing.is_some_and(|r| {
        r.name.as_deref() != Some(input.name.as_str())
            || r.body.as_deref().map(str::trim_end) != Some(input.notes.trim_end())
            || r.prerelease != input.prerelease
    });
    Plan {
        repository: input.repository.clone(),
        tag: input.tag.clone(),
        name: input.name.clone(),
        notes: input.notes.clone(),
        prerelease: input.prerelease,
        make_latest: input.make_latest,
        target_commitish: input.target_commitish.clone(),
        dry_run: input.mode == Mode::DryRun,
        create: existing.is_none(),
        update_fields,
        publish: input.mode == Mode::Publish && existing.is_none_or(|r| r.draft),
        ops,
    }
}

fn differs(local: &LocalAsset, remote: &Asset) -> Option<String> {
    if remote.state != "uploaded" {
        return Some(format!(
            "the upload never completed (state `{}`)",
            remote.state
        ));
    }
    if remote.size != local.size {
        return Some(format!(
            "size {} on GitHub, {} here",
            remote.size, local.size
        ));
    }
    match &remote.digest {
        Some(d)
            if local.sha256.is_some() && d.strip_prefix("sha256:") == local.sha256.as_deref() =>
        {
            None
        }
        Some(d) => Some(format!(
            "digest {d} on GitHub, sha256:{} here",
            local.sha256.as_deref().unwrap_or("unknown")
        )),
        None => Some("GitHub reports no digest for it, so it cannot be compared".to_owned()),
    }
}
