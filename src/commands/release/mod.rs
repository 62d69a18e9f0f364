//! `release`: create or update the GitHub release for a manifest and upload its
//! artifacts, idempotently. Drafts are found by listing (the by-tag endpoint hides
//! them), a missing release is created as a draft, missing or changed assets are
//! uploaded (streamed from disk), identical ones are kept, stale ones deleted only with
//! `--prune`, and the draft is published last, which also works with immutable releases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use self::plan::{AssetOp, Plan, plan};
use crate::config::{ImageArgs, file_name};
use crate::error::usage;
use crate::gha::{Gha, StepReport, md_cell};
use crate::github::{Asset, GitHub, Release, ReleaseFields};
use crate::model::manifest::Manifest;
use crate::retry::Backoff;
use crate::units::human_size;
use octocrab::repos::releases::MakeLatest;

/// GitHub refuses release assets of 2 GiB and more.
pub const MAX_ASSET: u64 = 2 << 30;

/// The refusal message of the seed workflow, kept for users who grep for it.
pub const UNSMOKED: &str = "QEMU smoke evidence is required when publish_release=true; set publish_release=false for validate-only runs without QEMU.";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub image: ImageArgs,
    /// Manifest from `pi-image manifest` [default: OUTPUT_DIR/IMG_NAME.img.xz.manifest.json]
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Release notes [default: OUTPUT_DIR/RELEASE_NOTES.md]
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// Tag [default: the manifest's]
    #[arg(long)]
    pub tag: Option<String>,
    /// Release files that are not an image (this tool's own binaries): no manifest is read,
    /// --tag and --assets say everything, no smoke evidence is needed
    #[arg(long, requires = "tag", conflicts_with = "manifest")]
    pub no_manifest: bool,
    /// Leave the release as a draft
    #[arg(long)]
    pub draft: bool,
    /// Create/update the release and upload (without it, only the plan is printed)
    #[arg(long, conflicts_with = "dry_run")]
    pub publish: bool,
    /// Print the plan without writing anything (the default)
    #[arg(long)]
    pub dry_run: bool,
    /// More files to attach (glob, repeatable)
    #[arg(long = "assets", value_name = "GLOB")]
    pub assets: Vec<String>,
    /// Delete release assets that are not part of this release
    #[arg(long)]
    pub prune: bool,
    /// Publish even without QEMU smoke evidence in the manifest
    #[arg(long)]
    pub allow_unsmoked: bool,
    /// GitHub token (needs `contents: write`)
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// OWNER/REPO
    #[arg(long, env = "GITHUB_REPOSITORY")]
    pub repository: Option<String>,
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub api_url: String,
    /// Upload base URL [default: uploads.github.com, or GHES's /api/uploads]
    #[arg(long, env = "GITHUB_UPLOAD_URL")]
    pub upload_url: Option<String>,
    /// Attempts per request on transient failures (5xx, rate limits, broken connections)
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
    /// Only write the previous published release's IMG_NAME.packages.lock (same channel)
    /// to FILE, for `manifest --previous-lock`, and stop; no manifest is read
    #[arg(long, value_name = "FILE", conflicts_with_all = ["publish", "no_manifest", "manifest"])]
    pub fetch_previous_lock: Option<PathBuf>,
    /// With --fetch-previous-lock: the channel of this build (stable or nightly)
    #[arg(long, env = "RELEASE_CHANNEL", value_enum, default_value = "stable")]
    pub channel: crate::model::manifest::Channel,
}

/// A file to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAsset {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Known from the manifest (and checked against the bytes as they are uploaded),
    /// or computed only when a same-sized remote asset has to be compared with it.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Input {
    /// `None` with --no-manifest.
    pub manifest: Option<Manifest>,
    pub tag: String,
    pub name: String,
    pub notes: String,
    pub prerelease: bool,
    pub make_latest: bool,
    pub target_commitish: Option<String>,
    pub assets: Vec<LocalAsset>,
    pub mode: Mode,
    pub prune: bool,
    pub token: Option<String>,
    pub repository: String,
    pub api_url: String,
    pub upload_url: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Draft,
    Publish,
}

impl Mode {
    fn of(publish: bool, draft: bool) -> Self {
        match (publish, draft) {
            (false, _) => Mode::DryRun,
            (true, true) => Mode::Draft,
            (true, false) => Mode::Publish,
        }
    }
}

fn read_notes(path: &Path) -> anyhow::Result<String> {
    if let Err(e) = std::fs::symlink_metadata(path) {
        return Err(usage(format!(
            "cannot read the release notes `{}`: {e}",
            path.display()
        )));
    }
    crate::input::read_text("the release notes (--notes)", path, None)
}

/// Adds the files each `--assets` glob matches (once each); a glob that matches no file
/// is an error.
fn add_globbed(assets: &mut Vec<LocalAsset>, patterns: &[String]) -> anyhow::Result<()> {
    for pattern in patterns {
        let mut matched = false;
        for entry in glob::glob(pattern)
            .map_err(|e| usage(format!("--assets `{pattern}` is not a valid glob: {e}")))?
        {
            let path = entry.with_context(|| format!("cannot read a match of `{pattern}`"))?;
            if path.is_file() {
                matched = true;
                let name = file_name(&path);
                if !assets.iter().any(|a| a.name == name) {
                    assets.push(local(path.parent().unwrap_or(Path::new(".")), &name, None)?);
                }
            }
        }
        if !matched {
            return Err(usage(format!("--assets `{pattern}` matches no file")));
        }
    }
    Ok(())
}

/// The token, masked; required unless this is a dry run.
fn checked_token(token: Option<String>, mode: Mode, gha: &Gha) -> anyhow::Result<Option<String>> {
    let token = token.filter(|t| !t.trim().is_empty());
    if let Some(t) = &token {
        gha.mask(t);
    }
    if mode != Mode::DryRun && token.is_none() {
        return Err(usage(
            "no GitHub token: set GITHUB_TOKEN (in a workflow: `env: GITHUB_TOKEN: ${{ github.token }}` and `permissions: contents: write`) or pass --token",
        ));
    }
    Ok(token)
}

fn checked_repository(repository: Option<String>) -> anyhow::Result<String> {
    let repo = repository.filter(|r| !r.is_empty()).ok_or_else(|| {
        usage("no repository: set GITHUB_REPOSITORY or pass --repository OWNER/REPO")
    })?;
    crate::validate::repository(
        "the release's repository (--repository, GITHUB_REPOSITORY or the manifest's)",
        &repo,
    )?;
    Ok(repo)
}

/// What a manifest (a file, so hostile) says that becomes part of a request or a path:
/// checked before anything is read from disk or sent.
fn check_manifest(m: &Manifest, path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    for a in &m.artifacts {
        crate::validate::file_name(&format!("artifact name in `{shown}`"), &a.name)?;
        if let Some(b) = &a.bundle {
            crate::validate::file_name(&format!("bundle name in `{shown}`"), &b.name)?;
        }
    }
    crate::validate::git_ref(&format!("release tag in `{shown}`"), &m.release.tag)?;
    crate::validate::one_line(&format!("release name in `{shown}`"), &m.release.name)?;
    if let Some(c) = &m.source.commit {
        crate::validate::commit(&format!("source commit in `{shown}`"), c)?;
    }
    Ok(())
}

impl Input {
    pub fn from_args(args: Args, gha: &Gha) -> anyhow::Result<Self> {
        if args.no_manifest {
            return Self::without_manifest(args, gha);
        }
        let paths = args.image.artifact_paths()?;
        let manifest_path = args.manifest.unwrap_or(paths.manifest.clone());
        let (manifest, text) = crate::model::manifest::load(&manifest_path)?;
        check_manifest(&manifest, &manifest_path)?;
        if let Some(t) = &args.tag {
            crate::validate::git_ref("--tag", t)?;
        }
        let dir = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let notes = read_notes(&args.notes.unwrap_or_else(|| dir.join("RELEASE_NOTES.md")))?;

        // The manifest's artifacts, their bundles, the manifest itself and its own bundle
        // (which the manifest cannot list: it is made after the manifest's last change),
        // and --assets.
        let mut assets = Vec::new();
        for a in &manifest.artifacts {
            assets.push(local(&dir, &a.name, Some((&a.sha256, a.size_bytes)))?);
            if let Some(b) = &a.bundle {
                assets.push(local(&dir, &b.name, Some((&b.sha256, b.size_bytes)))?);
            }
        }
        assets.push(local(&dir, &file_name(&manifest_path), None)?);
        let manifest_bundle = crate::sigstore::bundle_path_for(&manifest_path);
        if manifest_bundle.is_file() {
            check_manifest_bundle(&manifest_bundle, text.as_bytes())?;
            let name = file_name(&manifest_bundle);
            if !assets.iter().any(|a| a.name == name) {
                assets.push(local(&dir, &name, None)?);
            }
        }
        add_globbed(&mut assets, &args.assets)?;
        if let Some(big) = assets.iter().find(|a| a.size >= MAX_ASSET) {
            return Err(usage(format!(
                "`{}` is {}: GitHub refuses release assets of 2 GiB or more; ship the .img.xz (or split the file)",
                big.path.display(),
                human_size(big.size)
            )));
        }
        let mode = Mode::of(args.publish, args.draft);
        if mode == Mode::Publish
            && !args.allow_unsmoked
            && manifest.smoke.as_ref().is_none_or(|s| s.status != "pass")
        {
            return Err(usage(format!(
                "{UNSMOKED} (pi-image: the manifest has {}; run `pi-image smoke` and `pi-image manifest --smoke-dir`, or pass --allow-unsmoked)",
                manifest
                    .smoke
                    .as_ref()
                    .map_or("no smoke evidence".to_owned(), |s| format!(
                        "smoke status `{}`",
                        s.status
                    ))
            )));
        }
        let token = checked_token(args.token, mode, gha)?;
        // The Imager repository names this release's asset URLs: it holds only for the
        // manifest's own tag and repository.
        if manifest
            .artifacts
            .iter()
            .any(|a| a.kind == crate::model::manifest::ArtifactKind::RpiImager)
        {
            for (flag, given, recorded) in [
                (
                    "--tag",
                    args.tag.as_deref(),
                    Some(manifest.release.tag.as_str()),
                ),
                (
                    "--repository (GITHUB_REPOSITORY)",
                    args.repository.as_deref(),
                    manifest.source.repository.as_deref(),
                ),
            ] {
                if let Some(g) = given.filter(|g| !g.is_empty() && Some(*g) != recorded) {
                    return Err(usage(format!(
                        "{flag} `{g}` differs from the manifest's `{}`, but its Raspberry Pi Imager repository names the manifest's release URLs: run `pi-image manifest` for this release instead",
                        recorded.unwrap_or("(none)")
                    )));
                }
            }
        }
        let repository = checked_repository(
            args.repository
                .or_else(|| manifest.source.repository.clone()),
        )?;
        Ok(Self {
            tag: args.tag.unwrap_or_else(|| manifest.release.tag.clone()),
            name: manifest.release.name.clone(),
            prerelease: manifest.release.prerelease,
            make_latest: manifest.release.make_latest,
            target_commitish: manifest.source.commit.clone(),
            notes,
            assets,
            mode,
            prune: args.prune,
            token,
            upload_url: args
                .upload_url
                .unwrap_or_else(|| crate::github::default_upload_url(&args.api_url)),
            api_url: args.api_url,
            repository,
            attempts: args.attempts.max(1),
            manifest: Some(manifest),
        })
    }

    /// `--no-manifest`: a release of plain files (`--assets`), named after its tag.
    fn without_manifest(args: Args, gha: &Gha) -> anyhow::Result<Self> {
        let tag = args.tag.clone().unwrap_or_default();
        crate::validate::git_ref("--tag", &tag)?;
        let notes = read_notes(
            &args
                .notes
                .clone()
                .unwrap_or_else(|| PathBuf::from("RELEASE_NOTES.md")),
        )?;
        let mut assets: Vec<LocalAsset> = Vec::new();
        add_globbed(&mut assets, &args.assets)?;
        if assets.is_empty() {
            return Err(usage(
                "--no-manifest needs the files to release: pass --assets GLOB",
            ));
        }
        if let Some(big) = assets.iter().find(|a| a.size >= MAX_ASSET) {
            return Err(usage(format!(
                "`{}` is {}: GitHub refuses release assets of 2 GiB or more",
                big.path.display(),
                human_size(big.size)
            )));
        }
        let mode = Mode::of(args.publish, args.draft);
        let token = checked_token(args.token, mode, gha)?;
        let repository = checked_repository(args.repository)?;
        Ok(Self {
            name: tag.clone(),
            prerelease: tag.contains('-'),
            make_latest: !tag.contains('-'),
            target_commitish: std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty()),
            tag,
            notes,
            assets,
            mode,
            prune: args.prune,
            token,
            upload_url: args
                .upload_url
                .unwrap_or_else(|| crate::github::default_upload_url(&args.api_url)),
            api_url: args.api_url,
            repository,
            attempts: args.attempts.max(1),
            manifest: None,
        })
    }
}

/// Refuses a manifest bundle that signs another version of the manifest (the manifest
/// was written again after `sign`): published, it would fail every `verify --manifest`.
/// Only the digest the bundle names is compared; the signature is `verify`'s business.
fn check_manifest_bundle(bundle: &Path, manifest: &[u8]) -> anyhow::Result<()> {
    let stale = || {
        usage(format!(
            "`{}` does not sign the current manifest (it was written again after `pi-image sign`); run `pi-image sign` again, or remove the bundle",
            bundle.display()
        ))
    };
    let text = std::fs::read(bundle)
        .with_context(|| format!("cannot read the manifest's bundle `{}`", bundle.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        usage(format!(
            "`{}` is not a Sigstore bundle: {e}",
            bundle.display()
        ))
    })?;
    // A message signature names the SHA-256 it signed; cosign and pi-image always write it.
    let Some(digest) = v
        .pointer("/messageSignature/messageDigest/digest")
        .and_then(|d| d.as_str())
    else {
        return Ok(());
    };
    let digest = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, digest)
        .map_err(|_| stale())?;
    if digest != crate::sigstore::sha2_digest(manifest) {
        return Err(stale());
    }
    Ok(())
}

fn local(dir: &Path, name: &str, expected: Option<(&str, u64)>) -> anyhow::Result<LocalAsset> {
    let path = dir.join(name);
    let meta = std::fs::metadata(&path).map_err(|e| {
        usage(format!(
            "asset `{name}` is listed for the release but cannot be read at `{}`: {e}",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(usage(format!(
            "asset `{name}` at `{}` is not a file",
            path.display()
        )));
    }
    // Read from the manifest's directory itself: no symlink out of it, no FIFO.
    crate::input::open(&format!("asset `{name}`"), &path, Some(dir))?;
    if let Some((_, size)) = expected
        && size != meta.len()
    {
        return Err(usage(format!(
            "`{}` changed after the manifest was written (manifest: {size} bytes, file: {} bytes); run `pi-image manifest` again",
            path.display(),
            meta.len()
        )));
    }
    Ok(LocalAsset {
        name: name.to_owned(),
        path,
        size: meta.len(),
        sha256: expected.map(|(d, _)| d.to_owned()),
    })
}

/// Hashes the local assets that have a same-sized remote twin to compare with; the
/// others are hashed while they upload, so a large new asset is read only once.
fn resolve_digests(assets: &mut [LocalAsset], remote: &[Asset]) -> anyhow::Result<()> {
    for a in assets.iter_mut().filter(|a| a.sha256.is_none()) {
        if remote
            .iter()
            .any(|r| r.name == a.name && r.size == a.size && r.digest.is_some())
        {
            a.sha256 = Some(crate::checksum::sha256_file(&a.path)?.sha256);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub release_url: String,
    pub release_id: Option<u64>,
    pub tag: String,
    pub uploaded: Vec<String>,
    pub kept: Vec<String>,
    pub deleted: Vec<String>,
    pub dry_run: bool,
    pub published: bool,
    pub changed: bool,
    /// `--fetch-previous-lock`: what it fetched (nothing else was done).
    pub previous: Option<previous::Fetched>,
}

/// release's step outputs.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    /// The release page (empty in a dry run)
    pub release_url: String,
    /// The release id
    pub release_id: String,
    /// The release tag
    pub tag: String,
    /// Assets uploaded (or to upload, in a dry run), space-separated
    pub uploaded: String,
    /// Assets already up to date, space-separated
    pub kept: String,
    /// --fetch-previous-lock: the previous release's tag (empty if there is none)
    pub previous_tag: String,
    /// --fetch-previous-lock: the file holding its package lock (empty if there is none)
    pub previous_lock: String,
}

impl StepReport for Outcome {
    type Outputs = Outputs;
    fn outputs(&self) -> Outputs {
        Outputs {
            release_url: self.release_url.clone(),
            release_id: self.release_id.map(|i| i.to_string()).unwrap_or_default(),
            tag: self.tag.clone(),
            uploaded: self.uploaded.join(" "),
            kept: self.kept.join(" "),
            previous_tag: self
                .previous
                .as_ref()
                .and_then(|p| p.tag.clone())
                .unwrap_or_default(),
            previous_lock: self
                .previous
                .as_ref()
                .and_then(|p| p.path.as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }

    fn summary(&self) -> String {
        if let Some(p) = &self.previous {
            return match (&p.tag, &p.why_not) {
                (Some(tag), _) => format!(
                    "### release: previous package lock\n\nFrom release `{}`: \"Changed since\" compares with it.\n\n",
                    md_cell(tag)
                ),
                (None, why) => format!(
                    "### release: previous package lock\n\nNone: {}.\n\n",
                    crate::gha::md_text(why.as_deref().unwrap_or_default())
                ),
            };
        }
        let mut s = format!(
            "### release `{}`{}\n\n{}\n\n| Asset | Action |\n| --- | --- |\n",
            md_cell(&self.tag),
            if self.dry_run { " (dry run)" } else { "" },
            if self.release_url.is_empty() {
                "(not created yet)".to_owned()
            } else {
                self.release_url.clone()
            }
        );
        for n in &self.uploaded {
            s.push_str(&format!(
                "| `{}` | {} |\n",
                md_cell(n),
                if self.dry_run {
                    "would upload"
                } else {
                    "uploaded"
                }
            ));
        }
        for n in &self.kept {
            s.push_str(&format!("| `{}` | kept (identical) |\n", md_cell(n)));
        }
        for n in &self.deleted {
            s.push_str(&format!(
                "| `{}` | {} |\n",
                md_cell(n),
                if self.dry_run {
                    "would delete"
                } else {
                    "deleted"
                }
            ));
        }
        s.push('\n');
        s
    }
}

/// Runs `f` until it succeeds, retrying transient GitHub failures with backoff
/// (honouring `retry-after`).
async fn with_retries<T, F, Fut>(what: &str, attempts: u32, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let api = e.downcast_ref::<crate::github::ApiError>();
                let transient = api.is_some_and(|a| a.status == 0 || a.is_transient());
                let next = Backoff::github(attempts).next(attempt, api.and_then(|a| a.retry_after));
                let (true, Some(wait)) = (transient, next) else {
                    return Err(e).with_context(|| format!("failed to {what}"));
                };
                tracing::warn!(
                    "{what}: {e:#}; retrying in {}s (attempt {}/{attempts})",
                    wait.as_secs(),
                    attempt + 1
                );
                tokio::time::sleep(wait).await;
                crate::atomic::check_interrupted()?;
            }
        }
    }
}

/// Uploads one asset, recovering from what a failed attempt can leave behind: a
/// partial (`starter`) asset, or `already_exists` after a retried upload that did land.
pub async fn upload(
    gh: &GitHub,
    release_id: u64,
    asset: &LocalAsset,
    label: Option<&str>,
    attempts: u32,
) -> anyhow::Result<Asset> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match gh
            .upload_asset(release_id, &asset.path, &asset.name, label)
            .await
        {
            Ok(a) => {
                // GitHub reports the digest of what it stored; older servers do not,
                // and then the file is hashed here instead.
                let sent = match (
                    &asset.sha256,
                    a.digest.as_deref().and_then(|d| d.strip_prefix("sha256:")),
                ) {
                    (None, _) => None,
                    (Some(_), Some(d)) => Some(d.to_owned()),
                    (Some(_), None) => Some(crate::checksum::sha256_file(&asset.path)?.sha256),
                };
                if let (Some(want), Some(sent)) = (&asset.sha256, sent)
                    && *want != sent
                {
                    // The file is not what the manifest describes: take it back down.
                    with_retries(
                        &format!("delete the mismatching `{}`", asset.name),
                        attempts,
                        || gh.delete_asset(a.id),
                    )
                    .await?;
                    anyhow::bail!(
                        "`{}` changed after the manifest was written (manifest sha256 {want}, uploaded {sent}); the upload was removed; run `pi-image manifest` again",
                        asset.path.display()
                    );
                }
                return Ok(a);
            }
            Err(e) => {
                let api = e.downcast_ref::<crate::github::ApiError>().cloned();
                let conflict = api
                    .as_ref()
                    .is_some_and(crate::github::ApiError::already_exists);
                let transient = api
                    .as_ref()
                    .is_some_and(|a| a.status == 0 || a.is_transient());
                let next = Backoff::github(attempts)
                    .next(attempt, api.as_ref().and_then(|a| a.retry_after));
                let (true, Some(wait)) = (conflict || transient, next) else {
                    return Err(e).with_context(|| format!("failed to upload `{}`", asset.name));
                };
                tracing::warn!(
                    "uploading `{}`: {e:#}; cleaning up and retrying (attempt {}/{attempts})",
                    asset.name,
                    attempt + 1
                );
                // A conflict is cleaned up at once; only a transient failure waits.
                if !conflict {
                    tokio::time::sleep(wait).await;
                }
                crate::atomic::check_interrupted()?;
                // Whatever the failed attempt left under this name goes first.
                let listed = with_retries("list release assets", attempts, || {
                    gh.list_assets(release_id)
                })
                .await?;
                if let Some(stale) = listed.iter().find(|a| a.name == asset.name) {
                    with_retries(
                        &format!("delete the partial asset `{}`", asset.name),
                        attempts,
                        || gh.delete_asset(stale.id),
                    )
                    .await?;
                }
            }
        }
    }
}

pub async fn run(gha: &Gha, input: &Input) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        tag: input.tag.clone(),
        dry_run: input.mode == Mode::DryRun,
        ..Outcome::default()
    };
    let gh = match &input.token {
        Some(token) => Some(GitHub::new(
            &input.api_url,
            &input.upload_url,
            token,
            &input.repository,
        )?),
        None => None,
    };
    let existing = match &gh {
        Some(gh) => {
            with_retries("look up the release", input.attempts, || {
                gh.find_release(&input.tag)
            })
            .await?
        }
        None => None,
    };
    let remote = match (&gh, &existing) {
        (Some(gh), Some(r)) => {
            with_retries("list release assets", input.attempts, || {
                gh.list_assets(r.id)
            })
            .await?
        }
        _ => Vec::new(),
    };
    let mut input = input.clone();
    resolve_digests(&mut input.assets, &remote)?;
    let input = &input;
    let plan = plan(input, existing.as_ref(), &remote);
    if gha.print_plan(&plan)? {
        return Ok(outcome);
    }
    log_plan(gha, input, existing.as_ref(), &plan);
    for op in &plan.ops {
        match op {
            AssetOp::Upload(n) | AssetOp::Replace { name: n, .. } => {
                outcome.uploaded.push(n.clone());
            }
            AssetOp::Keep(n) => outcome.kept.push(n.clone()),
            AssetOp::Delete { name, .. } => outcome.deleted.push(name.clone()),
            AssetOp::Leave(_) => {}
        }
    }
    outcome.release_id = existing.as_ref().map(|r| r.id);
    outcome.release_url = existing
        .as_ref()
        .map(|r| r.html_url.clone())
        .unwrap_or_default();
    let (Mode::Draft | Mode::Publish, Some(gh)) = (input.mode, &gh) else {
        return Ok(outcome);
    };

    let release = if let Some(r) = existing {
        r
    } else {
        // A draft first: assets are uploaded before anyone can see the release.
        let fields = ReleaseFields {
            tag_name: Some(input.tag.clone()),
            target_commitish: input.target_commitish.clone(),
            name: Some(input.name.clone()),
            body: Some(input.notes.clone()),
            draft: Some(true),
            prerelease: Some(input.prerelease),
            make_latest: None,
        };
        let r = with_retries("create the release", input.attempts, || {
            gh.create_release(&fields)
        })
        .await?;
        tracing::info!("created draft release {} ({})", r.id, r.html_url);
        r
    };
    outcome.release_id = Some(release.id);
    outcome.release_url = release.html_url.clone();
    let by_name: BTreeMap<&str, &LocalAsset> =
        input.assets.iter().map(|a| (a.name.as_str(), a)).collect();
    for op in &plan.ops {
        match op {
            AssetOp::Upload(name) => {
                let asset = by_name[name.as_str()];
                let _g = gha.group(&format!(
                    "release: uploading {name} ({})",
                    human_size(asset.size)
                ));
                upload(gh, release.id, asset, None, input.attempts).await?;
            }
            AssetOp::Replace {
                name,
                asset_id,
                why,
            } => {
                let asset = by_name[name.as_str()];
                let _g = gha.group(&format!("release: replacing {name}: {why}"));
                with_retries(&format!("delete the old `{name}`"), input.attempts, || {
                    gh.delete_asset(*asset_id)
                })
                .await?;
                upload(gh, release.id, asset, None, input.attempts).await?;
            }
            AssetOp::Delete { name, asset_id } => {
                with_retries(
                    &format!("delete the stale `{name}`"),
                    input.attempts,
                    || gh.delete_asset(*asset_id),
                )
                .await?;
                tracing::info!("deleted stale asset {name}");
            }
            AssetOp::Keep(_) | AssetOp::Leave(_) => {}
        }
    }
    let mut patch = ReleaseFields::default();
    if plan.update_fields {
        patch.name = Some(input.name.clone());
        patch.body = Some(input.notes.clone());
        patch.prerelease = Some(input.prerelease);
    }
    if plan.publish {
        patch.draft = Some(false);
        patch.make_latest = Some(if input.make_latest {
            MakeLatest::True
        } else {
            MakeLatest::False
        });
    }
    if !patch.is_empty() {
        let r = with_retries("update the release", input.attempts, || {
            gh.update_release(release.id, &patch)
        })
        .await?;
        outcome.release_url = r.html_url;
        outcome.published = plan.publish;
    }
    outcome.changed = plan.create
        || plan.update_fields
        || plan.publish
        || plan.ops.iter().any(|o| {
            matches!(
                o,
                AssetOp::Upload(_) | AssetOp::Replace { .. } | AssetOp::Delete { .. }
            )
        });
    if !outcome.changed {
        tracing::info!(
            "release {} is already up to date: nothing changed",
            input.tag
        );
    }
    Ok(outcome)
}

fn log_plan(gha: &Gha, input: &Input, existing: Option<&Release>, plan: &Plan) {
    let _g = gha.group(&format!(
        "release plan for {} in {}",
        input.tag, input.repository
    ));
    match existing {
        None => tracing::info!(
            "create release {} (as a draft, published after the uploads)",
            input.tag
        ),
        Some(r) => tracing::info!(
            "update release {} (id {}, {})",
            input.tag,
            r.id,
            if r.draft { "draft" } else { "published" }
        ),
    }
    for op in &plan.ops {
        match op {
            AssetOp::Upload(n) => tracing::info!("  upload   {n}"),
            AssetOp::Replace { name, why, .. } => tracing::info!("  replace  {name}: {why}"),
            AssetOp::Keep(n) => tracing::info!("  keep     {n} (identical)"),
            AssetOp::Delete { name, .. } => tracing::info!("  delete   {name} (stale, --prune)"),
            AssetOp::Leave(n) => {
                tracing::info!("  leave    {n} (not part of this release; --prune deletes it)");
            }
        }
    }
    if plan.update_fields {
        tracing::info!("  update name, notes and prerelease flag");
    }
    if plan.publish {
        tracing::info!("  publish (make latest: {})", input.make_latest);
    }
    if input.mode == Mode::DryRun {
        tracing::info!("dry run: nothing was written (pass --publish to apply)");
    }
}

pub fn main(gha: &Gha, args: Args) -> anyhow::Result<()> {
    crate::atomic::install_signal_handlers()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(path) = args.fetch_previous_lock.clone() {
        // The client's services start on the runtime.
        let _entered = rt.enter();
        let (req, gh) = previous_request(args, path, gha)?;
        let fetched = rt.block_on(with_retries(
            "fetch the previous release's package lock",
            gh.1,
            || previous::fetch(&gh.0, &req),
        ))?;
        return gha.publish(&Outcome {
            previous: Some(fetched),
            ..Outcome::default()
        });
    }
    let input = Input::from_args(args, gha)?;
    let outcome = rt.block_on(run(gha, &input))?;
    gha.publish(&outcome)
}

/// `--fetch-previous-lock`: what to fetch, and the client (with its attempts).
fn previous_request(
    args: Args,
    path: PathBuf,
    gha: &Gha,
) -> anyhow::Result<(previous::Request, (GitHub, u32))> {
    let paths = args.image.artifact_paths()?;
    if let Some(t) = &args.tag {
        crate::validate::git_ref("--tag", t)?;
    }
    // FILE is written, or removed when there is no previous lock: never one of the
    // image's own files.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if paths.all().iter().any(|p| absolute(p) == absolute(&path)) {
        return Err(usage(format!(
            "--fetch-previous-lock `{}` is one of this image's own files: name another (e.g. $RUNNER_TEMP/previous.packages.lock)",
            path.display()
        )));
    }
    let token = checked_token(args.token, Mode::Publish, gha)?.unwrap_or_default();
    let repository = checked_repository(args.repository)?;
    let upload_url = args
        .upload_url
        .unwrap_or_else(|| crate::github::default_upload_url(&args.api_url));
    let gh = GitHub::new(&args.api_url, &upload_url, &token, &repository)?;
    Ok((
        previous::Request {
            path,
            channel: args.channel,
            asset: file_name(&paths.lock),
            current_tag: args.tag,
        },
        (gh, args.attempts.max(1)),
    ))
}

mod plan;
pub mod previous;
#[cfg(test)]
mod tests;
