//! Writing the plan into the pi-gen checkout, so that after every run the checkout's
//! generated files are exactly what that run asked for.
//!
//! Each run records what it created and what it replaced in a ledger
//! (`.pi-image/run-pi-gen.json` in the checkout). The next run first undoes that (removes
//! what was created, puts replaced files back), then writes its own plan. A path the
//! plan needs that exists and is not in the ledger belongs to someone else, and the run
//! stops before writing anything.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Plan;
use super::substage::{self, Contents, GeneratedFile, OverlayEntry, OverlayKind};
use crate::error::usage;
use crate::gha::escape::hex;

/// run-pi-gen's state inside the checkout.
pub const STATE_DIR: &str = ".pi-image";
const LEDGER: &str = ".pi-image/run-pi-gen.json";
/// Files a run may replace (their earlier content is kept and put back).
const REPLACEABLE: &[&str] = &["config", "stage2/04-cloud-init/files/user-data"];
/// What a `SKIP` file written by `--continue` holds.
pub const CONTINUE_SKIP: &str =
    "written by pi-image run-pi-gen --continue: this stage completed in an earlier run\n";
const DIR: &str = "dir";
/// A file about to be written (atomically: it is either absent or complete).
const PENDING: &str = "pending";

/// What an earlier run wrote into the checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Paths created: the SHA-256 of the file written, or `dir` for a generated directory.
    pub created: BTreeMap<PathBuf, String>,
    /// Files replaced: their content before, base64.
    pub replaced: BTreeMap<PathBuf, String>,
}

impl Ledger {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(dir.join(LEDGER)) {
            Ok(t) => serde_json::from_str(&t).with_context(|| {
                format!(
                    "`{}` is damaged: restore the checkout (git checkout . && git clean -fd) and remove it",
                    dir.join(LEDGER).display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", dir.join(LEDGER).display())),
        }
    }

    pub fn created(&self, rel: &Path) -> bool {
        self.created.contains_key(rel)
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir.join(STATE_DIR))?;
        crate::atomic::write(
            &dir.join(LEDGER),
            crate::model::to_canonical_json(self)?.as_bytes(),
        )
    }
}

/// The checkout's stages as written, and the ledger now in force.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Stage name and the fingerprint of everything that makes its root filesystem
    /// (the config, pi-gen's scripts, this and every earlier stage's files).
    pub fingerprints: Vec<(String, String)>,
    pub ledger: Ledger,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The top-level entries of the plan: generated directories, and files outside them.
fn top_level(plan: &Plan) -> Vec<(PathBuf, bool)> {
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    for f in &plan.files {
        if out
            .iter()
            .any(|(d, is_dir)| *is_dir && f.path.starts_with(d))
        {
            continue;
        }
        out.push((f.path.clone(), f.contents == Contents::Dir));
    }
    out.push((PathBuf::from("config"), false));
    out.extend(plan.markers.iter().map(|(p, _)| (p.clone(), false)));
    out
}

/// Undoes the previous run and writes this plan.
pub fn apply(dir: &Path, old: &Ledger, plan: &Plan) -> anyhow::Result<Applied> {
    let tops = top_level(plan);
    // Refuse before touching anything.
    for (rel, is_dir) in &tops {
        let full = dir.join(rel);
        let exists = std::fs::symlink_metadata(&full).is_ok();
        let ours = old.created(rel) || legacy_generated(&full);
        let replaceable = !is_dir && REPLACEABLE.iter().any(|r| Path::new(r) == rel);
        if exists && !ours && !replaceable {
            return Err(usage(format!(
                "`{}` exists and was not written by pi-image run-pi-gen: it is not overwritten; move it away (or rename your sub-stage)",
                full.display()
            )));
        }
    }
    undo(dir, old)?;
    let mut ledger = Ledger::default();
    for (rel, is_dir) in &tops {
        let full = dir.join(rel);
        if !is_dir && full.is_file() {
            let before = std::fs::read(&full)
                .with_context(|| format!("cannot read `{}`", full.display()))?;
            ledger.replaced.insert(
                rel.clone(),
                base64::engine::general_purpose::STANDARD.encode(before),
            );
        } else {
            let mark = if *is_dir { DIR } else { PENDING };
            ledger.created.insert(rel.clone(), mark.to_owned());
        }
    }
    // Recorded before writing, so an interrupted run is still undone by the next one.
    ledger.write(dir)?;
    let mut by_dir: BTreeMap<PathBuf, Vec<&GeneratedFile>> = BTreeMap::new();
    for f in &plan.files {
        match tops
            .iter()
            .find(|(d, is_dir)| *is_dir && f.path.starts_with(d))
        {
            Some((d, _)) => by_dir.entry(d.clone()).or_default().push(f),
            None => {
                write_one(&dir.join(&f.path), f)?;
                record_file(&mut ledger, dir, &f.path);
            }
        }
    }
    for (rel, files) in by_dir {
        write_dir(dir, &rel, &files)?;
    }
    crate::atomic::write(&dir.join("config"), plan.config.as_bytes())?;
    record_file(&mut ledger, dir, Path::new("config"));
    for (rel, text) in &plan.markers {
        crate::atomic::write(&dir.join(rel), text.as_bytes())?;
        record_file(&mut ledger, dir, rel);
    }
    ledger.write(dir)?;
    Ok(Applied {
        fingerprints: fingerprints(dir, &plan.config, &plan.stages)?,
        ledger,
    })
}

/// A file run-pi-gen created gets its digest, so a later change by someone else is
/// noticed (and left alone) when the run is undone.
fn record_file(ledger: &mut Ledger, dir: &Path, rel: &Path) {
    if ledger.replaced.contains_key(rel) {
        return;
    }
    if let Ok(bytes) = std::fs::read(dir.join(rel)) {
        ledger.created.insert(rel.to_path_buf(), sha256_hex(&bytes));
    }
}

/// A generated sub-stage from before the ledger existed (its scripts say whose it is).
fn legacy_generated(path: &Path) -> bool {
    path.join(substage::GENERATED_README).is_file()
        || ["01-run.sh", "00-run.sh"].iter().any(|s| {
            std::fs::read_to_string(path.join(s))
                .is_ok_and(|t| t.contains("Generated by pi-image run-pi-gen"))
        })
}

/// Removes what the last run created and restores what it replaced.
fn undo(dir: &Path, old: &Ledger) -> anyhow::Result<()> {
    for (rel, digest) in &old.created {
        let full = dir.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            continue;
        };
        if digest == DIR {
            if meta.is_dir() && legacy_generated(&full) {
                std::fs::remove_dir_all(&full)
                    .with_context(|| format!("cannot remove `{}`", full.display()))?;
            } else {
                tracing::warn!(
                    "{} was generated by an earlier run but has changed since: left as it is",
                    full.display()
                );
            }
        } else if meta.is_file()
            && (digest == PENDING || std::fs::read(&full).is_ok_and(|b| sha256_hex(&b) == *digest))
        {
            std::fs::remove_file(&full)
                .with_context(|| format!("cannot remove `{}`", full.display()))?;
        } else {
            tracing::warn!(
                "{} was written by an earlier run but has changed since: left as it is",
                full.display()
            );
        }
    }
    for (rel, before) in &old.replaced {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(before)
            .with_context(|| format!("the ledger's copy of `{}` is damaged", rel.display()))?;
        crate::atomic::write(&dir.join(rel), &bytes)?;
    }
    // pi-image before the ledger: sub-stages it generated, and its --continue SKIP files.
    if let Ok(stages) = std::fs::read_dir(dir) {
        for stage in stages.flatten().filter(|e| e.path().is_dir()) {
            for sub in [substage::SUBSTAGE, substage::CLOUD_INIT_SUBSTAGE] {
                let p = stage.path().join(sub);
                if p.is_dir() && legacy_generated(&p) {
                    std::fs::remove_dir_all(&p)
                        .with_context(|| format!("cannot remove `{}`", p.display()))?;
                }
            }
            let skip = stage.path().join("SKIP");
            if std::fs::read_to_string(&skip).is_ok_and(|t| t == CONTINUE_SKIP) {
                std::fs::remove_file(&skip)
                    .with_context(|| format!("cannot remove `{}`", skip.display()))?;
            }
        }
    }
    Ok(())
}

/// Assembles a generated directory next to its place and renames it in.
fn write_dir(dir: &Path, rel: &Path, files: &[&GeneratedFile]) -> anyhow::Result<()> {
    let dest = dir.join(rel);
    let parent = dest
        .parent()
        .context("a generated directory has no parent")?;
    let staging = tempfile::Builder::new()
        .prefix(".pi-image-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a directory in `{}`", parent.display()))?;
    for f in files {
        let inner = f.path.strip_prefix(rel).unwrap_or(&f.path);
        if inner.as_os_str().is_empty() {
            continue;
        }
        write_one(&staging.path().join(inner), f)?;
    }
    // Directory modes last: a 0500 overlay directory must still be filled first.
    let mut dirs: Vec<&&GeneratedFile> = files
        .iter()
        .filter(|f| f.contents == Contents::Dir)
        .collect();
    dirs.sort_by_key(|f| std::cmp::Reverse(f.path.components().count()));
    for f in dirs {
        let inner = f.path.strip_prefix(rel).unwrap_or(&f.path);
        std::fs::set_permissions(
            staging.path().join(inner),
            std::fs::Permissions::from_mode(f.mode),
        )?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &dest)
        .with_context(|| format!("cannot create `{}`", dest.display()))?;
    Ok(())
}

fn write_one(dest: &Path, f: &GeneratedFile) -> anyhow::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
    }
    match &f.contents {
        Contents::Dir => {
            std::fs::create_dir_all(dest)
                .with_context(|| format!("cannot create `{}`", dest.display()))?;
            return Ok(());
        }
        Contents::Symlink(target) => {
            std::os::unix::fs::symlink(target, dest)
                .with_context(|| format!("cannot create the symlink `{}`", dest.display()))?;
            return Ok(());
        }
        Contents::Text(t) => crate::atomic::write(dest, t.as_bytes())?,
        Contents::Bytes(b) => crate::atomic::write(dest, b)?,
        Contents::CopyFile(src) => {
            // Never through a symlink, never a FIFO or device swapped in since the walk.
            let mut from = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(
                    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
                )
                .open(src)
                .with_context(|| format!("cannot open overlay file `{}`", src.display()))?;
            if !from.metadata()?.is_file() {
                return Err(usage(format!(
                    "overlay entry `{}` is no longer a regular file",
                    src.display()
                )));
            }
            let mut to = crate::atomic::AtomicFile::create(dest)?;
            std::io::copy(&mut from, to.file())
                .with_context(|| format!("cannot copy overlay file `{}`", src.display()))?;
            to.commit()?;
        }
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(f.mode))
        .with_context(|| format!("cannot set the mode of `{}`", dest.display()))?;
    Ok(())
}

/// Writes `SKIP` into the stages `--continue` skips, and records them in the ledger.
pub fn write_resume_markers(dir: &Path, applied: &Applied, skip: &[String]) -> anyhow::Result<()> {
    let mut ledger = applied.ledger.clone();
    for s in skip {
        let rel = Path::new(s).join("SKIP");
        if dir.join(&rel).exists() {
            continue;
        }
        crate::atomic::write(&dir.join(&rel), CONTINUE_SKIP.as_bytes())?;
        record_file(&mut ledger, dir, &rel);
    }
    ledger.write(dir)
}

/// Hashes a directory tree: names, types, modes, contents and link targets, in order.
fn hash_tree(h: &mut Sha256, root: &Path, skip: &dyn Fn(&Path) -> bool) -> anyhow::Result<()> {
    for e in walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .follow_links(false)
        .into_iter()
    {
        let e = e.with_context(|| format!("cannot read `{}`", root.display()))?;
        let rel = e.path().strip_prefix(root).unwrap_or(e.path());
        if skip(rel) {
            continue;
        }
        let meta = e.path().symlink_metadata()?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{:o}\0", meta.permissions().mode()).as_bytes());
        if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(e.path())?.as_os_str().as_encoded_bytes());
        } else if meta.is_file() {
            let mut f = std::fs::File::open(e.path())?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update(b"\n");
    }
    Ok(())
}

/// The chain of stage fingerprints: each covers the config and pi-gen's own scripts,
/// its stage directory, and the fingerprint of the stage before it.
fn fingerprints(
    dir: &Path,
    config: &str,
    stages: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut base = Sha256::new();
    // Where the image is deployed and which stages follow do not change a stage's
    // root filesystem.
    for line in config
        .lines()
        .filter(|l| !l.starts_with("STAGE_LIST=") && !l.starts_with("DEPLOY_DIR="))
    {
        base.update(line.as_bytes());
        base.update(b"\n");
    }
    for f in ["build.sh", "depends"] {
        base.update(std::fs::read(dir.join(f)).unwrap_or_default());
    }
    if dir.join("scripts").is_dir() {
        hash_tree(&mut base, &dir.join("scripts"), &|_| false)?;
    }
    let mut prev = hex(&base.finalize());
    let mut out = Vec::new();
    for s in stages {
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        let stage_dir = dir.join(s);
        hash_tree(&mut h, &stage_dir, &|rel: &Path| {
            // Export markers decide only what is exported, and our own SKIP marker is
            // the result of this very comparison.
            matches!(rel.to_str(), Some("EXPORT_IMAGE" | "SKIP_IMAGES"))
                || (rel == Path::new("SKIP")
                    && std::fs::read_to_string(stage_dir.join("SKIP"))
                        .is_ok_and(|t| t == CONTINUE_SKIP))
        })?;
        prev = hex(&h.finalize());
        out.push((s.clone(), prev.clone()));
    }
    Ok(out)
}

/// The overlay tree, walked without following symlinks: directories, regular files and
/// symlinks (kept as links, resolved later inside the image). Anything else, a name that
/// is not printable UTF-8, or a path under a host mount is refused.
pub fn walk_overlay(root: &Path) -> anyhow::Result<Vec<OverlayEntry>> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| {
        usage(format!(
            "overlay directory `{}` cannot be read: {e}",
            root.display()
        ))
    })?;
    if meta.file_type().is_symlink() {
        return Err(usage(format!(
            "overlay directory `{}` is a symlink: give the directory itself",
            root.display()
        )));
    }
    if !meta.is_dir() {
        return Err(usage(format!(
            "overlay directory `{}` does not exist or is not a directory",
            root.display()
        )));
    }
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .follow_links(false)
    {
        let e = e.map_err(|err| {
            usage(format!(
                "cannot read the overlay `{}`: {err}",
                root.display()
            ))
        })?;
        let rel_path = e.path().strip_prefix(root).unwrap_or(e.path());
        let rel = rel_path
            .to_str()
            .ok_or_else(|| {
                usage(format!(
                    "overlay entry `{}` has a name that is not UTF-8: rename it",
                    rel_path.display()
                ))
            })?
            .to_owned();
        substage::check_overlay_path(&rel, "overlay entry")?;
        let meta = e.path().symlink_metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(e.path())?;
            let target = target
                .to_str()
                .filter(|t| !t.chars().any(char::is_control))
                .ok_or_else(|| {
                    usage(format!(
                        "overlay symlink `{rel}` points at a name that is not printable UTF-8"
                    ))
                })?
                .to_owned();
            OverlayKind::Symlink { target }
        } else if meta.is_dir() {
            OverlayKind::Dir { mode }
        } else if meta.is_file() {
            OverlayKind::File {
                mode,
                source: e.path().to_path_buf(),
            }
        } else {
            return Err(usage(format!(
                "overlay entry `{rel}` is a FIFO, socket or device: an overlay holds files, directories and symlinks"
            )));
        };
        out.push(OverlayEntry { rel, kind });
    }
    Ok(out)
}
