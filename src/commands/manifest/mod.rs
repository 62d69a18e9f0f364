//! `manifest`: build metadata, the provenance manifest, an in-toto statement and the
//! release notes, from what `collect-artifacts` left in `OUTPUT_DIR`.

pub mod evidence;
pub mod imager;
pub mod notes;
pub mod provenance;

use plan::plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::buildlog;
use crate::checksum::{Digest, Hashing, parse_checksum_line, sha256_file};
use crate::config::{ArtifactPaths, ImageArgs, PiGenArgs, file_name};
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::model;
use crate::model::manifest::{Artifact, ArtifactKind, BundleRef, Channel, Release, Source};
use crate::model::metadata::{ImageInfo, Metadata, PiGenInfo, RepoInfo, RunnerInfo};
use crate::sbom::lock;
use crate::validate;
use crate::{atomic, xz};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Release channel: stable (tag vYYYY.MM.DD+g<sha7>) or nightly (nightly-YYYYMMDD, prerelease)
    #[arg(long, env = "RELEASE_CHANNEL", value_enum, default_value = "stable")]
    pub channel: Channel,
    /// Release title; the name is "<title> YYYY-MM-DD" [default: "<Img_name> Pi Image"]
    #[arg(long, env = "RELEASE_TITLE")]
    pub title: Option<String>,
    #[command(flatten)]
    pub pi_gen: PiGenArgs,
    /// The pi-gen commit built [default: read from --pi-gen-dir with git]
    #[arg(long, env = "PI_GEN_COMMIT")]
    pub pi_gen_commit: Option<String>,
    /// The pi-gen checkout (for its commit)
    #[arg(long, env = "PI_GEN_DIR")]
    pub pi_gen_dir: Option<PathBuf>,
    /// Repository that ran the build, OWNER/REPO
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repository: Option<String>,
    /// Git ref of the calling repository [default: from git]
    #[arg(long = "ref", env = "GITHUB_REF")]
    pub git_ref: Option<String>,
    /// Commit of the calling repository [default: from git]
    #[arg(long, env = "GITHUB_SHA")]
    pub commit: Option<String>,
    #[arg(long, env = "GITHUB_SERVER_URL", default_value = "https://github.com")]
    pub server_url: String,
    #[arg(long, env = "GITHUB_WORKFLOW")]
    pub workflow: Option<String>,
    #[arg(long, env = "GITHUB_RUN_ID")]
    pub run_id: Option<String>,
    #[arg(long, env = "GITHUB_RUN_ATTEMPT")]
    pub run_attempt: Option<String>,
    #[arg(long, env = "RUNNER_OS")]
    pub runner_os: Option<String>,
    #[arg(long, env = "RUNNER_ARCH")]
    pub runner_arch: Option<String>,
    /// When the build started (RFC 3339 or Unix seconds)
    #[arg(long, env = "BUILD_START", value_parser = model::parse_time)]
    pub build_start: Option<DateTime<Utc>>,
    /// When the build ended [default: SOURCE_DATE_EPOCH, else now]
    #[arg(long, env = "BUILD_END", value_parser = model::parse_time)]
    pub build_end: Option<DateTime<Utc>>,
    /// A build option to record, KEY=VALUE (true/false, numbers and strings are typed)
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Smoke-test artifacts directory (from `pi-image smoke`) to record as evidence
    #[arg(long, env = "SMOKE_DIR")]
    pub smoke_dir: Option<PathBuf>,
    /// A verifier report (JSON) to record
    #[arg(long)]
    pub verifier_json: Option<PathBuf>,
    /// pi-gen build log [default: OUTPUT_DIR/IMG_NAME.build.log]
    #[arg(long, env = "BUILD_LOG")]
    pub build_log: Option<PathBuf>,
    /// The previous release's IMG_NAME.packages.lock: the notes list the packages added,
    /// removed, upgraded and downgraded since
    #[arg(long, env = "PREVIOUS_LOCK")]
    pub previous_lock: Option<PathBuf>,
    /// The previous release's tag, named in the notes and the manifest
    #[arg(long, env = "PREVIOUS_TAG", requires = "previous_lock")]
    pub previous_tag: Option<String>,
    /// Where to write the release notes [default: OUTPUT_DIR/RELEASE_NOTES.md]
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// Directory of the calling repository, for its commit and ref when not given
    #[arg(long, default_value = ".")]
    pub repo_dir: PathBuf,
    #[command(flatten)]
    pub imager: ImagerArgs,
}

/// The Raspberry Pi Imager repository file, `IMG_NAME.rpi-imager.json`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImagerArgs {
    /// Write no IMG_NAME.rpi-imager.json (it needs --repository for its URLs)
    #[arg(long)]
    pub no_imager: bool,
    /// The image's name in Raspberry Pi Imager's OS list [default: the release title]
    #[arg(long)]
    pub imager_name: Option<String>,
    /// Its description there [default: name, 32- or 64-bit, and release tag]
    #[arg(long)]
    pub imager_description: Option<String>,
    /// Its icon: one of Imager's own (icons/NAME.png) or an https:// URL
    #[arg(long, default_value = "icons/cat_raspberry_pi_os.png")]
    pub imager_icon: String,
    /// How Imager customises the first boot (Imager's init_format); auto reads the image's
    /// packages
    #[arg(long, value_enum, default_value = "auto")]
    pub imager_init_format: imager::InitFormat,
    /// Boards Imager offers the image for, comma-separated [default: every board the image
    /// runs on]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub imager_devices: Vec<imager::Device>,
}

impl ImagerArgs {
    fn options(self, title: &str) -> anyhow::Result<Option<imager::Options>> {
        if self.no_imager {
            return Ok(None);
        }
        let name = non_empty(self.imager_name).unwrap_or_else(|| title.to_owned());
        validate::one_line("--imager-name", &name)?;
        let description = non_empty(self.imager_description);
        if let Some(d) = &description {
            validate::one_line("--imager-description", d)?;
        }
        let icon = self.imager_icon;
        validate::one_line("--imager-icon", &icon)?;
        let bundled = icon
            .strip_prefix("icons/")
            .is_some_and(|f| validate::file_name("--imager-icon", f).is_ok());
        if !bundled && !icon.starts_with("https://") {
            return Err(usage(format!(
                "--imager-icon `{}` is neither one of Imager's icons (icons/NAME.png) nor an https:// URL",
                icon.escape_debug()
            )));
        }
        let mut devices = self.imager_devices;
        devices.sort();
        devices.dedup();
        Ok(Some(imager::Options {
            name,
            description,
            icon,
            init_format: self.imager_init_format,
            devices,
        }))
    }
}

/// Validated input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub paths: ArtifactPaths,
    pub notes_path: PathBuf,
    pub channel: Channel,
    pub title: String,
    pub pi_gen: PiGenInfo,
    pub pi_gen_dir: Option<PathBuf>,
    pub arm64: bool,
    pub source: Source,
    pub repo_dir: PathBuf,
    pub runner: RunnerInfo,
    pub build_start: Option<DateTime<Utc>>,
    pub build_end: Option<DateTime<Utc>>,
    pub options: BTreeMap<String, Value>,
    pub smoke_dir: Option<PathBuf>,
    pub verifier_json: Option<PathBuf>,
    pub build_log: Option<PathBuf>,
    pub previous_lock: Option<PathBuf>,
    pub previous_tag: Option<String>,
    /// `None`: `--no-imager`.
    pub imager: Option<imager::Options>,
}

/// `--option` typing: true/false (any case) → bool, then integer, float, string.
pub fn parse_option(spec: &str) -> anyhow::Result<(String, Value)> {
    let (k, v) = spec.split_once('=').ok_or_else(|| {
        usage(format!(
            "option `{spec}` is missing `=` (use --option KEY=VALUE)"
        ))
    })?;
    let key = k.trim();
    if key.is_empty() {
        return Err(usage(format!("option `{spec}` has an empty key")));
    }
    let value = if v.eq_ignore_ascii_case("true") {
        Value::Bool(true)
    } else if v.eq_ignore_ascii_case("false") {
        Value::Bool(false)
    } else if let Ok(i) = v.parse::<i64>() {
        Value::from(i)
    } else if let Some(f) = v.parse::<f64>().ok().filter(|f| f.is_finite()) {
        Value::from(f)
    } else {
        // Published in the manifest and the metadata: a URL's credentials never are.
        Value::from(crate::gha::escape::redact_credentials(v))
    };
    Ok((key.to_owned(), value))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl Input {
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let paths = args.image.artifact_paths()?;
        let pi_gen = args.pi_gen.resolve()?;
        let arm64 = pi_gen.arm64;
        let mut options = BTreeMap::new();
        options.insert("arm64".to_owned(), Value::from(u8::from(arm64)));
        options.insert("armhf".to_owned(), Value::from(u8::from(!arm64)));
        options.insert(
            "userspace_arch".to_owned(),
            Value::from(if arm64 { "arm64" } else { "armhf" }),
        );
        for spec in &args.options {
            let (k, v) = parse_option(spec)?;
            options.insert(k, v);
        }
        // Every value below ends up in the notes' commands, links and the manifest:
        // each is checked against its grammar, naming the input it came from.
        let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
        if let Some(repo) = given(&args.repository) {
            validate::repository("--repository (GITHUB_REPOSITORY)", &repo)?;
        }
        if let Some(c) = given(&args.commit) {
            validate::commit("--commit (GITHUB_SHA)", &c)?;
        }
        let previous_tag = given(&args.previous_tag);
        if let Some(t) = &previous_tag {
            validate::git_ref("--previous-tag (PREVIOUS_TAG)", t)?;
        }
        // run-pi-gen reports a checkout without git history as `unknown`.
        let pi_gen_commit = given(&args.pi_gen_commit).filter(|c| c != "unknown");
        if let Some(c) = &pi_gen_commit {
            validate::commit("--pi-gen-commit (PI_GEN_COMMIT)", c)?;
        }
        if let Some(r) = given(&args.git_ref) {
            validate::git_ref("--ref (GITHUB_REF)", &r)?;
        }
        for (what, v) in [
            ("--run-id (GITHUB_RUN_ID)", &args.run_id),
            ("--run-attempt (GITHUB_RUN_ATTEMPT)", &args.run_attempt),
        ] {
            if let Some(v) = given(v) {
                validate::digits(what, &v)?;
            }
        }
        validate::server_url("--server-url (GITHUB_SERVER_URL)", &args.server_url)?;
        if let Some(w) = given(&args.workflow) {
            validate::one_line("--workflow (GITHUB_WORKFLOW)", &w)?;
        }
        if let Some(t) = given(&args.title) {
            validate::one_line("--title (RELEASE_TITLE)", &t)?;
        }
        let title = args
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| {
                let mut name = args.image.img_name.clone();
                if let Some(first) = name.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                format!("{name} Pi Image")
            });
        let imager = args.imager.options(&title)?;
        Ok(Self {
            imager,
            notes_path: args.notes.unwrap_or_else(|| paths.notes.clone()),
            paths,
            channel: args.channel,
            title,
            pi_gen: PiGenInfo {
                // Recorded and linked from the notes: without a URL's credentials.
                url: crate::gha::escape::redact_credentials(&pi_gen.url),
                branch: pi_gen.branch,
                git_ref: Some(pi_gen.git_ref),
                commit: pi_gen_commit,
                stages: pi_gen.stages,
            },
            pi_gen_dir: args.pi_gen_dir,
            arm64,
            source: Source {
                repository: non_empty(args.repository),
                server_url: args.server_url.trim_end_matches('/').to_owned(),
                git_ref: non_empty(args.git_ref),
                commit: non_empty(args.commit),
                workflow: non_empty(args.workflow),
                run_id: non_empty(args.run_id),
                run_attempt: non_empty(args.run_attempt),
            },
            repo_dir: args.repo_dir,
            runner: RunnerInfo {
                os: non_empty(args.runner_os).unwrap_or_else(|| std::env::consts::OS.to_owned()),
                arch: non_empty(args.runner_arch)
                    .unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
            },
            build_start: args.build_start,
            build_end: args.build_end,
            options,
            smoke_dir: args.smoke_dir,
            verifier_json: args.verifier_json,
            build_log: args.build_log,
            previous_lock: args.previous_lock.filter(|p| !p.as_os_str().is_empty()),
            previous_tag,
        })
    }
}

/// Reads the collected image's metadata, checking it against the files on disk; with
/// the image's digest (the one pass over it).
fn read_image_metadata(paths: &ArtifactPaths) -> anyhow::Result<(Metadata, Digest)> {
    if !paths.image.is_file() {
        bail!(
            "image not found: `{}`: run `pi-image collect-artifacts` first (same IMG_NAME and OUTPUT_DIR)",
            paths.image.display()
        );
    }
    if !paths.checksum.is_file() {
        bail!(
            "checksum file not found: `{}`: run `pi-image collect-artifacts` first",
            paths.checksum.display()
        );
    }
    let out = sha256_file(&paths.image)?;
    let text = crate::input::read_text("the checksum file", &paths.checksum, None)?;
    match parse_checksum_line(&text) {
        Some(recorded) if recorded == out.sha256 => {}
        Some(recorded) => bail!(
            "`{}` records {recorded} but `{}` hashes to {}: the image changed after it was collected; \
             run `pi-image collect-artifacts` again",
            paths.checksum.display(),
            paths.image.display(),
            out.sha256
        ),
        None => bail!(
            "`{}` does not hold a SHA-256 line; run `pi-image collect-artifacts` again",
            paths.checksum.display()
        ),
    }
    let existing: Option<Metadata> = if std::fs::symlink_metadata(&paths.metadata).is_ok() {
        let text = crate::input::read_text("the image's metadata", &paths.metadata, None)?;
        serde_json::from_str(&text).ok()
    } else {
        None
    };
    match existing {
        Some(m) if m.image.sha256 == out.sha256 && !m.image.raw_sha256.is_empty() => Ok((m, out)),
        _ => {
            tracing::info!(
                "no matching collect-artifacts metadata; hashing the raw image inside {}",
                paths.image.display()
            );
            let raw = raw_digest(&paths.image)?;
            let metadata = Metadata {
                image: ImageInfo {
                    path: file_name(&paths.image),
                    sha256: out.sha256.clone(),
                    size_bytes: out.size,
                    raw_sha256: raw.sha256,
                    raw_size_bytes: raw.size,
                    compression: None,
                },
                checksum_path: file_name(&paths.checksum),
                // No collect-artifacts record to say otherwise: a log beside the image
                // is taken as its own.
                build_log_path: std::fs::symlink_metadata(&paths.build_log)
                    .is_ok()
                    .then(|| file_name(&paths.build_log)),
                ..Metadata::default()
            };
            Ok((metadata, out))
        }
    }
}

/// The SBOM, package lock and bmap collect-artifacts recorded, each checked against the file
/// beside the image: one changed or missing since is an error, not a silent new digest.
fn inventory_files(
    paths: &ArtifactPaths,
    metadata: &Metadata,
) -> anyhow::Result<Vec<(ArtifactKind, PathBuf, Digest)>> {
    let inv = metadata.inventory.clone().unwrap_or_default();
    let bmap = metadata.bmap.as_ref().and_then(|b| b.file.clone());
    let mut out = Vec::new();
    for (kind, recorded, path) in [
        (ArtifactKind::Sbom, &inv.sbom, &paths.sbom),
        (ArtifactKind::Cyclonedx, &inv.cyclonedx, &paths.cyclonedx),
        (ArtifactKind::PackagesLock, &inv.lock, &paths.lock),
        (ArtifactKind::Bmap, &bmap, &paths.bmap),
    ] {
        let Some(recorded) = recorded else { continue };
        if recorded.path != file_name(path) {
            bail!(
                "the metadata names `{}` where `{}` belongs: it is not this image's; run `pi-image collect-artifacts` again",
                recorded.path.escape_debug(),
                file_name(path)
            );
        }
        if std::fs::symlink_metadata(path).is_err() {
            bail!(
                "`{}` is missing (collect-artifacts wrote it): run `pi-image collect-artifacts` again",
                path.display()
            );
        }
        let (file, _) = crate::input::open("the SBOM, lock or bmap", path, None)?;
        let mut hashed = Hashing::new(file);
        std::io::copy(&mut hashed, &mut std::io::sink())
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let digest = hashed.finish().0;
        if digest.sha256 != recorded.sha256 {
            bail!(
                "`{}` hashes to {} but the metadata records {}: it changed after it was collected; \
                 run `pi-image collect-artifacts` again",
                path.display(),
                digest.sha256,
                recorded.sha256
            );
        }
        out.push((kind, path.clone(), digest));
    }
    Ok(out)
}

/// This image's package lock, read back (collect-artifacts wrote it; its digest was just
/// checked against the metadata).
fn current_lock(
    inventory: &[(ArtifactKind, PathBuf, Digest)],
) -> anyhow::Result<Option<lock::Lock>> {
    let Some((_, path, _)) = inventory
        .iter()
        .find(|(k, _, _)| *k == ArtifactKind::PackagesLock)
    else {
        return Ok(None);
    };
    let text = crate::input::read_text("the image's package lock", path, None)?;
    let parsed = lock::parse(&text).with_context(|| format!("`{}` is damaged", path.display()))?;
    Ok(Some(parsed))
}

/// `--previous-lock` against this image's lock: what changed since that release.
fn previous_release(
    input: &Input,
    current: Option<&lock::Lock>,
) -> anyhow::Result<Option<plan::Previous>> {
    let Some(prev_path) = &input.previous_lock else {
        return Ok(None);
    };
    let what = "--previous-lock (PREVIOUS_LOCK)";
    let prev_text = crate::input::read_text(what, prev_path, None)?;
    let before = lock::parse(&prev_text).map_err(|e| {
        usage(format!(
            "{what} `{}` is not a packages.lock: {e}; give the previous release's IMG_NAME.packages.lock",
            prev_path.display()
        ))
    })?;
    let Some(after) = current else {
        tracing::warn!(
            "--previous-lock is given but this image has no package lock (see collect-artifacts' warning): the notes have no \"Changed since\" section"
        );
        return Ok(None);
    };
    Ok(Some(plan::Previous {
        tag: input.previous_tag.clone(),
        lock: crate::checksum::of_bytes(prev_text.as_bytes()),
        changes: lock::diff(&before, after),
    }))
}

fn raw_digest(image: &Path) -> anyhow::Result<Digest> {
    let (file, _) = crate::input::open("the image", image, None)?;
    let mut decoder = xz::decoder(std::io::BufReader::new(file));
    let mut sink = Hashing::new(std::io::sink());
    std::io::copy(&mut decoder, &mut sink)
        .with_context(|| format!("`{}` is not a valid .xz file", image.display()))?;
    Ok(sink.finish().0)
}

fn git(dir: &Path, summary: &str, args: &[&str]) -> Option<String> {
    let mut cmd = crate::checkout::git(dir, summary);
    for a in args {
        cmd = cmd.arg(*a);
    }
    match cmd.output() {
        Ok(out) if !out.is_empty() => Some(out),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("{e:#}");
            None
        }
    }
}

/// The bundle `sign` left beside `path`, if any.
fn bundle_of(path: &Path) -> anyhow::Result<Option<(String, BundleRef)>> {
    let name = file_name(path);
    let bundle = path.with_file_name(format!("{name}.sigstore.json"));
    if !bundle.is_file() {
        return Ok(None);
    }
    let d = sha256_file(&bundle)?;
    Ok(Some((
        name,
        BundleRef {
            name: file_name(&bundle),
            sha256: d.sha256,
            size_bytes: d.size,
        },
    )))
}

/// Does all the reading: the image and its checksum (hashed once), the build log, the
/// bundles beside the artifacts, the smoke and verifier evidence, and git.
pub fn gather(input: &Input) -> anyhow::Result<Facts> {
    let paths = &input.paths;
    let (metadata, image) = read_image_metadata(paths)?;
    let checksum = sha256_file(&paths.checksum)?;
    let build_log = match &input.build_log {
        Some(p) if std::fs::symlink_metadata(p).is_ok() => Some(p.clone()),
        Some(p) => {
            return Err(usage(format!(
                "build log `{}` (--build-log) does not exist",
                p.display()
            )));
        }
        // The log collect-artifacts put beside the image, when its metadata says it
        // belongs to this image (a log left by an earlier build does not).
        None => (std::fs::symlink_metadata(&input.paths.build_log).is_ok()
            && metadata.build_log_path.is_some())
        .then(|| input.paths.build_log.clone()),
    };
    let timings = if let Some(p) = &build_log {
        let (file, _) = crate::input::open("the build log (--build-log)", p, None)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut bytes)
            .with_context(|| format!("cannot read `{}`", p.display()))?;
        // An appended log from several runs counts only its last run.
        let text = String::from_utf8_lossy(&bytes);
        let t = buildlog::parse(buildlog::current_run(&text));
        if t.spans.is_empty() {
            tracing::warn!(
                "`{}` has no `[HH:MM:SS] Begin/End` lines: no stage timings",
                p.display()
            );
        }
        Some(t)
    } else {
        tracing::warn!(
            "no build log (looked for `{}`): no stage timings",
            input.paths.build_log.display()
        );
        None
    };
    let repo = RepoInfo {
        commit: input.source.commit.clone().or_else(|| {
            git(
                &input.repo_dir,
                "read the repository commit",
                &["rev-parse", "HEAD"],
            )
        }),
        git_ref: input.source.git_ref.clone().or_else(|| {
            git(
                &input.repo_dir,
                "read the repository ref",
                &["symbolic-ref", "-q", "HEAD"],
            )
        }),
    };
    if repo.commit.is_none() {
        tracing::warn!(
            "the repository commit is unknown (no GITHUB_SHA, --commit, or git checkout); the stable tag will have no +g<sha>"
        );
    }
    let pi_gen_commit = match (&input.pi_gen.commit, &input.pi_gen_dir) {
        (None, Some(dir)) => git(dir, "read the pi-gen commit", &["rev-parse", "HEAD"]),
        _ => None,
    };
    let build_log_digest = match &build_log {
        Some(log) if log == &paths.build_log => Some(sha256_file(log)?),
        _ => None,
    };
    let inventory = inventory_files(paths, &metadata)?;
    let lock = current_lock(&inventory)?;
    let previous = previous_release(input, lock.as_ref())?;
    let mut bundles = BTreeMap::new();
    // The metadata and the in-toto statement are written anew: a bundle beside them
    // signs their previous text, so it is not recorded (`sign` makes new ones).
    for p in [
        &paths.image,
        &paths.checksum,
        &paths.build_log,
        &paths.rpi_imager,
    ]
    .into_iter()
    .chain(inventory.iter().map(|(_, p, _)| p))
    {
        bundles.extend(bundle_of(p)?);
    }
    Ok(Facts {
        metadata,
        image,
        checksum,
        timings,
        build_log,
        build_log_digest,
        inventory,
        lock,
        previous,
        bundles,
        smoke: input
            .smoke_dir
            .as_deref()
            .map(evidence::smoke)
            .transpose()?,
        verifier: evidence::verifier(input.verifier_json.as_deref()),
        repo,
        pi_gen_commit,
        now: model::now()?,
    })
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub release: Release,
    pub manifest_path: PathBuf,
    pub notes_path: PathBuf,
    pub metadata_path: PathBuf,
    pub intoto_path: PathBuf,
    pub artifacts: Vec<Artifact>,
    pub smoke_status: Option<String>,
}

/// manifest's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// The release tag
    pub tag: String,
    /// The release name
    pub name: String,
    /// true for nightly releases
    pub prerelease: String,
    /// Whether the release becomes the latest
    pub make_latest: String,
    /// The manifest JSON
    pub manifest_path: String,
    /// The release notes (RELEASE_NOTES.md)
    pub notes_path: String,
    /// The metadata JSON
    pub metadata_path: String,
    /// The in-toto statement
    pub intoto_path: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            tag: self.release.tag.clone(),
            name: self.release.name.clone(),
            prerelease: self.release.prerelease.to_string(),
            make_latest: self.release.make_latest.to_string(),
            manifest_path: self.manifest_path.display().to_string(),
            notes_path: self.notes_path.display().to_string(),
            metadata_path: self.metadata_path.display().to_string(),
            intoto_path: self.intoto_path.display().to_string(),
        }
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "### manifest: `{}`\n\n{} · prerelease: {} · smoke: {}\n\n| Artifact | Size | SHA-256 |\n| --- | --- | --- |\n",
            md_cell(&self.release.tag),
            md_cell(&self.release.name),
            self.release.prerelease,
            self.smoke_status.as_deref().unwrap_or("not run")
        );
        for a in &self.artifacts {
            s.push_str(&format!(
                "| `{}` | {} B | `{}` |\n",
                md_cell(&a.name),
                a.size_bytes,
                a.sha256
            ));
        }
        s.push('\n');
        s
    }
}

/// Writes metadata, in-toto statement, SHA256SUMS, manifest and notes, each atomically, with the
/// texts the plan holds (so each file hashes to the digest the next one records).
pub fn run(input: &Input, plan: &Plan) -> anyhow::Result<Outcome> {
    for stale in &plan.stale {
        if atomic::remove_if_present(stale)? {
            tracing::info!("removed `{}` of an earlier run", stale.display());
        }
    }
    for w in &plan.writes {
        if let Some(dir) = w.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        atomic::write(&w.path, w.text.as_bytes())?;
    }
    for n in &plan.notices {
        tracing::info!("{n}");
    }
    let written: Vec<String> = plan
        .writes
        .iter()
        .map(|w| w.path.display().to_string())
        .collect();
    tracing::info!(
        "release {} ({}): wrote {}",
        plan.release.tag,
        plan.release.name,
        written.join(", ")
    );
    Ok(Outcome {
        release: plan.release.clone(),
        metadata_path: input.paths.metadata.clone(),
        intoto_path: input.paths.intoto.clone(),
        manifest_path: input.paths.manifest.clone(),
        notes_path: input.notes_path.clone(),
        artifacts: plan.artifacts.clone(),
        smoke_status: plan.smoke_status.clone(),
    })
}

/// Entry point: parse → gather → plan → run → publish.
pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    let input = Input::from_args(args)?;
    let facts = gather(&input)?;
    let plan = plan(&input, &facts)?;
    if gha.print_plan(&plan)? {
        return Ok(());
    }
    let outcome = run(&input, &plan)?;
    gha.publish(&outcome)
}

mod plan;
pub use plan::{Facts, Plan, release};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_typed_as_bool_integer_float_or_string() {
        assert_eq!(
            parse_option("a=TRUE").unwrap(),
            ("a".into(), Value::Bool(true))
        );
        assert_eq!(parse_option("a=false").unwrap().1, Value::Bool(false));
        assert_eq!(parse_option("a=42").unwrap().1, Value::from(42));
        assert_eq!(parse_option("a=1.5").unwrap().1, Value::from(1.5));
        assert_eq!(parse_option("a=v3").unwrap().1, Value::from("v3"));
        assert_eq!(parse_option("a=x=y").unwrap().1, Value::from("x=y"));
        assert!(
            parse_option("novalue")
                .unwrap_err()
                .to_string()
                .contains("missing `=`")
        );
    }
}
