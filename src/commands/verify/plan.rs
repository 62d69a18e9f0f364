//! `verify`'s decision: which subject is checked against which bundle, with which
//! recorded digests, under which policy. Pure: it works on the input and on what
//! [`super::gather`] read (the manifest, the policy's key, the trusted root).

use std::path::{Path, PathBuf};

use crate::config::file_name;
use crate::error::usage;
use crate::model::manifest::Manifest;
use crate::sigstore::{Policy, Trust};

/// One bundle to check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// The artifact's name (manifest) or path.
    pub name: String,
    pub subject: SubjectSpec,
    /// The digest the manifest records for the file.
    pub expect_sha256: Option<String>,
    pub bundle: Option<BundleSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectSpec {
    File(PathBuf),
    Sha256(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BundleSpec {
    pub path: PathBuf,
    /// The bundle digest the manifest records.
    pub expect_sha256: Option<String>,
}

/// What was read before planning.
#[derive(Debug, Clone)]
pub struct Facts {
    pub policy: Policy,
    pub trust: Trust,
    pub target: Target,
}

/// What is verified, as read.
#[derive(Debug, Clone)]
pub enum Target {
    /// `--manifest`: the manifest, and whether a bundle of its own lies beside it.
    Manifest {
        path: PathBuf,
        manifest: Box<Manifest>,
        own_bundle: bool,
    },
    /// FILE (a `sha256:HEX` argument that names no existing file is a digest) and the
    /// `--bundle` given.
    File {
        name: String,
        subject: SubjectSpec,
        bundle: Option<PathBuf>,
    },
}

/// Every check `run` makes, and against what.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub checks: Vec<Check>,
    pub policy: String,
    /// `public-good` or the trusted root's file.
    pub trusted_root: String,
}

/// The checks for what was gathered. Pure.
pub fn plan(facts: &Facts) -> anyhow::Result<Plan> {
    let checks = match &facts.target {
        Target::Manifest {
            path,
            manifest,
            own_bundle,
        } => plan_manifest(path, manifest, *own_bundle),
        Target::File {
            name,
            subject,
            bundle,
        } => {
            let bundle = match (bundle, subject) {
                (Some(b), _) => b.clone(),
                (None, SubjectSpec::File(p)) => crate::sigstore::bundle_path_for(p),
                (None, SubjectSpec::Sha256(_)) => {
                    return Err(usage("verifying a digest needs --bundle"));
                }
            };
            vec![Check {
                name: name.clone(),
                subject: subject.clone(),
                expect_sha256: None,
                bundle: Some(BundleSpec {
                    path: bundle,
                    expect_sha256: None,
                }),
            }]
        }
    };
    Ok(Plan {
        checks,
        policy: facts.policy.describe(),
        trusted_root: facts.trust.flag().map_or_else(
            || "public-good".to_owned(),
            |(_, p)| p.display().to_string(),
        ),
    })
}

/// Every artifact of a manifest, with the bundle it lists, and the manifest itself
/// when it has a bundle next to it.
fn plan_manifest(path: &Path, manifest: &Manifest, own_bundle: bool) -> Vec<Check> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut checks: Vec<Check> = manifest
        .artifacts
        .iter()
        .map(|a| Check {
            name: a.name.clone(),
            subject: SubjectSpec::File(dir.join(&a.name)),
            expect_sha256: Some(a.sha256.clone()),
            bundle: a.bundle.as_ref().map(|b| BundleSpec {
                path: dir.join(&b.name),
                expect_sha256: Some(b.sha256.clone()),
            }),
        })
        .collect();
    if own_bundle {
        checks.push(Check {
            name: file_name(path),
            subject: SubjectSpec::File(path.to_path_buf()),
            expect_sha256: None,
            bundle: Some(BundleSpec {
                path: crate::sigstore::bundle_path_for(path),
                expect_sha256: None,
            }),
        });
    }
    checks
}
