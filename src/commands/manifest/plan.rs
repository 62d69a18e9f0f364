//! `manifest`'s decision: every file it writes, with its text, and every artifact the
//! manifest lists, with its digest. Pure: it works on the input and on what
//! [`super::gather`] read (the image's digests, the build log, git, the evidence).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Input, imager, notes, provenance};
use crate::buildlog::StageTimings;
use crate::checksum::Digest;
use crate::config::file_name;
use crate::error::usage;
use crate::model::manifest::{
    Artifact, ArtifactKind, BundleRef, Channel, Manifest, PreviousRelease, Release, Smoke,
};
use crate::model::metadata::{BuildInfo, Metadata, RepoInfo};
use crate::model::{SCHEMA_VERSION, rfc3339, to_canonical_json};

/// What was read from disk and git before planning.
#[derive(Debug, Clone)]
pub struct Facts {
    /// collect-artifacts' metadata for this image (or one derived from the image).
    pub metadata: Metadata,
    /// The `.img.xz` and its checksum file, hashed once.
    pub image: Digest,
    pub checksum: Digest,
    pub timings: Option<StageTimings>,
    /// The build log to record, and its digest when it is one of the artifacts
    /// (`OUTPUT_DIR/IMG_NAME.build.log`).
    pub build_log: Option<PathBuf>,
    pub build_log_digest: Option<Digest>,
    /// The SBOM and package lock collect-artifacts wrote, checked against the metadata.
    pub inventory: Vec<(ArtifactKind, PathBuf, Digest)>,
    /// This image's package lock, read back.
    pub lock: Option<crate::sbom::lock::Lock>,
    /// The previous release, when `--previous-lock` names its lock.
    pub previous: Option<Previous>,
    /// The Sigstore bundles already beside the artifacts, by artifact name.
    pub bundles: BTreeMap<String, BundleRef>,
    pub smoke: Option<Smoke>,
    pub verifier: Value,
    pub repo: RepoInfo,
    pub pi_gen_commit: Option<String>,
    pub now: DateTime<Utc>,
}

/// The previous release and how the package set changed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub tag: Option<String>,
    pub lock: Digest,
    pub changes: crate::sbom::lock::Changes,
}

/// One file `run` writes (atomically), with its whole text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Write {
    pub path: PathBuf,
    pub text: String,
}

/// Everything `run` writes, decided up front.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub release: Release,
    /// In order: metadata, Imager repository, in-toto statement, SHA256SUMS, manifest, notes.
    /// Each later file's text
    /// names the digests of the earlier ones.
    pub writes: Vec<Write>,
    /// What the manifest lists.
    pub artifacts: Vec<Artifact>,
    pub smoke_status: Option<String>,
    /// Files of an earlier run this one does not write (so nothing signs or uploads them).
    pub stale: Vec<PathBuf>,
    /// Said once the files are written.
    pub notices: Vec<String>,
}

/// The release a build becomes: tag, name, prerelease and make-latest.
pub fn release(channel: Channel, title: &str, end: DateTime<Utc>, commit: Option<&str>) -> Release {
    match channel {
        Channel::Stable => {
            let date = end.format("%Y.%m.%d");
            let tag = match commit {
                Some(c) => format!("v{date}+g{}", c.get(..7).unwrap_or(c)),
                None => format!("v{date}"),
            };
            Release {
                channel,
                tag,
                name: format!("{title} {}", end.format("%Y-%m-%d")),
                prerelease: false,
                make_latest: true,
            }
        }
        Channel::Nightly => Release {
            channel,
            tag: format!("nightly-{}", end.format("%Y%m%d")),
            name: format!("{title} nightly {}", end.format("%Y-%m-%d")),
            prerelease: true,
            make_latest: false,
        },
    }
}

fn artifact(
    path: &Path,
    kind: ArtifactKind,
    digest: &Digest,
    bundles: &BTreeMap<String, BundleRef>,
) -> Artifact {
    let name = file_name(path);
    Artifact {
        bundle: bundles.get(&name).cloned(),
        name,
        kind,
        size_bytes: digest.size,
        sha256: digest.sha256.clone(),
        contains_sha256: None,
        raw_sha256: None,
        raw_size_bytes: None,
    }
}

/// Merges the collected metadata with the build facts into the four files. Pure.
pub fn plan(input: &Input, facts: &Facts) -> anyhow::Result<Plan> {
    let paths = &input.paths;
    let end = input.build_end.unwrap_or(facts.now);
    let timings = facts.timings.clone().unwrap_or_default();
    let duration = match input.build_start {
        Some(start) if start > end => {
            return Err(usage(format!(
                "build start {} is after build end {}",
                rfc3339(start),
                rfc3339(end)
            )));
        }
        Some(start) => u64::try_from((end - start).num_seconds()).ok(),
        None => (timings.observed_elapsed_seconds > 0).then_some(timings.observed_elapsed_seconds),
    };
    let mut pi_gen = input.pi_gen.clone();
    pi_gen.commit = pi_gen.commit.or_else(|| facts.pi_gen_commit.clone());
    let mut meta = facts.metadata.clone();
    meta.schema_version = SCHEMA_VERSION;
    meta.generated_at = rfc3339(facts.now);
    meta.build_log_path = facts.build_log.as_deref().map(file_name);
    meta.build = Some(BuildInfo {
        start: input.build_start.map(rfc3339),
        end: rfc3339(end),
        duration_seconds: duration,
        stage_durations: timings.durations.clone(),
        stages: timings.spans.clone(),
        incomplete_stages: timings.incomplete.clone(),
        observed_elapsed_seconds: timings.observed_elapsed_seconds,
        result: timings.result.clone(),
        pi_gen,
        runner: input.runner.clone(),
    });
    meta.options = input.options.clone();
    meta.repository = Some(facts.repo.clone());
    meta.verifier = facts.verifier.clone();
    let mut source = input.source.clone();
    source.commit.clone_from(&facts.repo.commit);
    source.git_ref.clone_from(&facts.repo.git_ref);
    let release = release(input.channel, &input.title, end, source.commit.as_deref());
    // A re-run of the same release fetches that release's own lock: nothing to compare.
    let previous = facts
        .previous
        .as_ref()
        .filter(|p| p.tag.as_deref() != Some(release.tag.as_str()));

    let meta_text = to_canonical_json(&meta)?;
    let bundles = &facts.bundles;
    let mut image = artifact(&paths.image, ArtifactKind::Image, &facts.image, bundles);
    image.raw_sha256 = Some(meta.image.raw_sha256.clone());
    image.raw_size_bytes = Some(meta.image.raw_size_bytes);
    let mut checksum = artifact(
        &paths.checksum,
        ArtifactKind::Checksum,
        &facts.checksum,
        bundles,
    );
    checksum.contains_sha256 = Some(meta.image.sha256.clone());
    let mut artifacts = vec![
        image,
        checksum,
        artifact(
            &paths.metadata,
            ArtifactKind::Metadata,
            &crate::checksum::of_bytes(meta_text.as_bytes()),
            bundles,
        ),
    ];
    for (kind, path, digest) in &facts.inventory {
        artifacts.push(artifact(path, *kind, digest, bundles));
    }
    let mut notices = Vec::new();
    match (&facts.build_log, &facts.build_log_digest) {
        (Some(log), Some(digest)) if log == &paths.build_log => {
            artifacts.push(artifact(log, ArtifactKind::BuildLog, digest, bundles));
        }
        (Some(log), _) => notices.push(format!(
            "build log `{}` is recorded but not one of the artifacts (it is not in OUTPUT_DIR under IMG_NAME.build.log)",
            log.display()
        )),
        (None, _) => {}
    }
    let mut writes = vec![Write {
        path: paths.metadata.clone(),
        text: meta_text,
    }];
    let mut stale = Vec::new();
    match imager_repository(input, facts, &meta, &source, &release)? {
        Ok(file) => {
            notices.push(format!(
                "{}: Raspberry Pi Imager init_format `{}` ({})",
                file_name(&paths.rpi_imager),
                file.init_format,
                file.why
            ));
            artifacts.push(artifact(
                &paths.rpi_imager,
                ArtifactKind::RpiImager,
                &crate::checksum::of_bytes(file.text.as_bytes()),
                bundles,
            ));
            writes.push(Write {
                path: paths.rpi_imager.clone(),
                text: file.text,
            });
        }
        Err(why) => {
            notices.extend(why);
            stale.push(paths.rpi_imager.clone());
        }
    }
    let statement = provenance::statement(&artifacts, &meta, &source);
    let intoto_text = to_canonical_json(&statement)?;
    artifacts.push(artifact(
        &paths.intoto,
        ArtifactKind::Provenance,
        &crate::checksum::of_bytes(intoto_text.as_bytes()),
        bundles,
    ));

    // SHA256SUMS covers every artifact before it; the manifest lists it in turn (and is
    // covered by its own bundle, not by SHA256SUMS).
    let sums_text: String = artifacts
        .iter()
        .map(|a| crate::checksum::checksum_line(&a.sha256, &a.name))
        .collect();
    artifacts.push(artifact(
        &paths.sha256sums,
        ArtifactKind::Sha256sums,
        &crate::checksum::of_bytes(sums_text.as_bytes()),
        bundles,
    ));

    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        generated_at: meta.generated_at.clone(),
        release: release.clone(),
        source,
        build: meta.build.clone(),
        options: meta.options.clone(),
        artifacts: artifacts.clone(),
        smoke: facts.smoke.clone(),
        verifier: meta.verifier.clone(),
        previous: previous.map(|p| PreviousRelease {
            tag: p.tag.clone(),
            lock_sha256: p.lock.sha256.clone(),
        }),
    };
    let manifest_text = to_canonical_json(&manifest)?;
    let start_epoch = input.build_start.map(|t| t.timestamp());
    let notes_text = notes::render(
        &manifest,
        &notes::Extra {
            timings: facts.timings.as_ref(),
            build_start_epoch: start_epoch,
            inventory: meta.inventory.as_ref(),
            changes: previous.map(|p| &p.changes),
        },
    );
    writes.extend([
        Write {
            path: paths.intoto.clone(),
            text: intoto_text,
        },
        Write {
            path: paths.sha256sums.clone(),
            text: sums_text,
        },
        Write {
            path: paths.manifest.clone(),
            text: manifest_text,
        },
        Write {
            path: input.notes_path.clone(),
            text: notes_text,
        },
    ]);
    Ok(Plan {
        release,
        writes,
        stale,
        artifacts,
        smoke_status: facts.smoke.as_ref().map(|s| s.status.clone()),
        notices,
    })
}

/// The Imager repository file, and the `init_format` it names with the reason.
struct ImagerFile {
    text: String,
    init_format: &'static str,
    why: String,
}

/// The Imager repository file, or why there is none (`None`: `--no-imager`).
fn imager_repository(
    input: &Input,
    facts: &Facts,
    meta: &Metadata,
    source: &crate::model::manifest::Source,
    release: &Release,
) -> anyhow::Result<Result<ImagerFile, Option<String>>> {
    let Some(opts) = &input.imager else {
        return Ok(Err(None));
    };
    let Some(repository) = source.repository.as_deref() else {
        return Ok(Err(Some(format!(
            "no {}: its URLs are the release's, and the repository (--repository, GITHUB_REPOSITORY) is unknown",
            file_name(&input.paths.rpi_imager)
        ))));
    };
    let os_id = facts.lock.as_ref().and_then(|l| {
        l.facts
            .iter()
            .find(|(k, _)| k == "os")
            .and_then(|(_, v)| v.split(' ').next())
    });
    let supported = imager::supported(input.arm64, os_id);
    if let Some(d) = opts.devices.iter().find(|d| !supported.contains(d)) {
        return Err(usage(format!(
            "--imager-devices names {d:?}, which cannot run this image ({}, {}): give some of {:?}",
            if input.arm64 { "arm64" } else { "armhf" },
            os_id.unwrap_or("unknown distribution"),
            supported
        )));
    }
    let (init_format, why) = match opts.init_format {
        imager::InitFormat::Auto => {
            let names = facts
                .lock
                .as_ref()
                .map(|l| l.packages.as_slice())
                .unwrap_or_default();
            let (f, why) = imager::derive_init_format(names.iter().map(|(n, _, _)| n.as_str()));
            (f, format!("auto: {why}"))
        }
        f => (f, "--imager-init-format".to_owned()),
    };
    let bmap_name = meta
        .bmap
        .as_ref()
        .and_then(|b| b.file.as_ref())
        .map(|f| f.path.as_str());
    let value = imager::repository(
        opts,
        &imager::Image {
            server_url: &source.server_url,
            repository,
            tag: &release.tag,
            image_name: &file_name(&input.paths.image),
            image_size: facts.image.size,
            image_sha256: &facts.image.sha256,
            raw_size: meta.image.raw_size_bytes,
            raw_sha256: &meta.image.raw_sha256,
            bmap_name,
            release_date: meta
                .build
                .as_ref()
                .map(|b| b.end.get(..10).unwrap_or_default().to_owned())
                .unwrap_or_default(),
            arm64: input.arm64,
            os_id,
            init_format,
        },
    );
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    Ok(Ok(ImagerFile {
        text,
        init_format: init_format.as_str(),
        why,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::model::parse_time(s).unwrap()
    }

    #[test]
    fn stable_and_nightly_tags_carry_the_date_and_short_commit() {
        let r = release(
            Channel::Stable,
            "Sugarkube Pi Image",
            at("2024-05-21T10:00:00Z"),
            Some("89abcdef0123"),
        );
        assert_eq!(r.tag, "v2024.05.21+g89abcde");
        assert_eq!(r.name, "Sugarkube Pi Image 2024-05-21");
        assert!(!r.prerelease && r.make_latest);
        let r = release(
            Channel::Nightly,
            "Sugarkube Pi Image",
            at("2024-05-22T23:59:59Z"),
            Some("89abcdef"),
        );
        assert_eq!(r.tag, "nightly-20240522");
        assert_eq!(r.name, "Sugarkube Pi Image nightly 2024-05-22");
        assert!(r.prerelease && !r.make_latest);
        assert_eq!(
            release(Channel::Stable, "x", at("2024-05-21T00:00:00Z"), None).tag,
            "v2024.05.21"
        );
    }
}
