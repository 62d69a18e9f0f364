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
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Plan;
use super::substage::{self, Contents, GeneratedFile, OverlayEntry, OverlayKind};
use crate::checksum::hex;
use crate::error::usage;

/// run-pi-gen's state inside the checkout.
pub const STATE_DIR: &str = ".pi-image";
pub const LEDGER: &str = ".pi-image/run-pi-gen.json";
/// Files a run may replace (their earlier content is kept and put back).
const REPLACEABLE: &[&str] = &["config", "stage2/04-cloud-init/files/user-data"];
/// What a `SKIP` file written by `--continue` holds.
pub const CONTINUE_SKIP: &str =
    "written by pi-image run-pi-gen --continue: this stage completed in an earlier run\n";
const DIR: &str = "dir";
/// A file about to be written (atomically: it is either absent or complete).
const PENDING: &str = "pending";

/// One path an earlier run wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The SHA-256 of the file written, `dir` for a generated directory, `pending` while
    /// the file is being written.
    pub written: String,
    /// A file that was there before and was replaced: its content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// What an earlier run wrote into the checkout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: BTreeMap<PathBuf, Entry>,
}

/// Whether a ledger may name `rel`: only what run-pi-gen writes (the config, the user-data
/// it replaces, a stage's markers and generated sub-stages), as plain relative paths.
fn ledger_may_name(rel: &Path, entry: &Entry) -> bool {
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
    let replaceable = REPLACEABLE.iter().any(|r| Path::new(r) == rel);
    let generated = parts.len() == 2
        && !parts[0].starts_with('.')
        && [
            "EXPORT_IMAGE",
            "SKIP_IMAGES",
            "SKIP",
            substage::SUBSTAGE,
            substage::CLOUD_INIT_SUBSTAGE,
        ]
        .contains(&parts[1]);
    plain && (replaceable || (generated && entry.before.is_none()))
}

/// `rel` reached from `dir` without a symlink on the way (a symlink in the checkout
/// must not lead a removal or a restore out of it).
fn no_symlink_on_the_way(dir: &Path, rel: &Path) -> bool {
    let mut p = dir.to_path_buf();
    let parts: Vec<_> = rel.iter().collect();
    parts[..parts.len().saturating_sub(1)].iter().all(|c| {
        p.push(c);
        std::fs::symlink_metadata(&p).is_ok_and(|m| !m.file_type().is_symlink())
    })
}

impl Ledger {
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let damaged = || {
            format!(
                "`{}` is damaged: restore the checkout (git checkout . && git clean -fd) and remove it",
                dir.join(LEDGER).display()
            )
        };
        match std::fs::read_to_string(dir.join(LEDGER)) {
            Ok(t) => {
                let ledger: Self = serde_json::from_str(&t).with_context(damaged)?;
                // The next run removes and rewrites these paths: only what run-pi-gen
                // writes, inside the checkout.
                if let Some((bad, _)) = ledger.entries.iter().find(|(p, e)| !ledger_may_name(p, e))
                {
                    anyhow::bail!("{}: it names `{}`", damaged(), bad.display());
                }
                Ok(ledger)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read `{}`", dir.join(LEDGER).display()))
            }
        }
    }

    /// A path the ledger says run-pi-gen created (not one it replaced).
    pub fn created(&self, rel: &Path) -> bool {
        self.entries.get(rel).is_some_and(|e| e.before.is_none())
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir.join(STATE_DIR))?;
        // It may hold an earlier config, with its passwords: for root only.
        let path = dir.join(LEDGER);
        crate::atomic::write(&path, crate::model::to_canonical_json(self)?.as_bytes())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
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
        if !no_symlink_on_the_way(dir, rel) {
            return Err(usage(format!(
                "`{}` is reached through a symlink in the checkout: refusing to write there",
                full.display()
            )));
        }
        let exists = std::fs::symlink_metadata(&full).is_ok();
        let ours = old.entries.contains_key(rel) || generated_dir(&full);
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
        let before = if !is_dir && full.is_file() {
            let bytes = std::fs::read(&full)
                .with_context(|| format!("cannot read `{}`", full.display()))?;
            Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            None
        };
        let written = if *is_dir { DIR } else { PENDING }.to_owned();
        ledger
            .entries
            .insert(rel.clone(), Entry { written, before });
    }
    // Recorded before writing, so an interrupted run is still undone by the next one.
    ledger.write(dir)?;
    let mut by_dir: BTreeMap<PathBuf, Vec<&GeneratedFile>> = BTreeMap::new();
    for f in &plan.files {
        if let Some((d, _)) = tops
            .iter()
            .find(|(d, is_dir)| *is_dir && f.path.starts_with(d))
        {
            by_dir.entry(d.clone()).or_default().push(f);
        } else {
            write_one(&dir.join(&f.path), f)?;
            record_file(&mut ledger, dir, &f.path);
        }
    }
    for (rel, files) in by_dir {
        write_dir(dir, &rel, &files)?;
    }
    // It holds the settings, passwords among them: for root only.
    crate::atomic::write(&dir.join("config"), plan.config.as_bytes())?;
    std::fs::set_permissions(dir.join("config"), std::fs::Permissions::from_mode(0o600))?;
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

/// The digest of what a run wrote, so a later change by someone else is noticed (and
/// left alone) when the run is undone.
fn record_file(ledger: &mut Ledger, dir: &Path, rel: &Path) {
    if let Ok(bytes) = std::fs::read(dir.join(rel)) {
        let e = ledger.entries.entry(rel.to_path_buf()).or_default();
        e.written = sha256_hex(&bytes);
    }
}

/// A generated sub-stage (its README, or, from before the ledger, its scripts, say whose
/// it is).
fn generated_dir(path: &Path) -> bool {
    path.join(substage::GENERATED_README).is_file()
        || ["01-run.sh", "00-run.sh"].iter().any(|s| {
            std::fs::read_to_string(path.join(s))
                .is_ok_and(|t| t.contains("Generated by pi-image run-pi-gen"))
        })
}

/// Removes what the last run created and restores what it replaced, where it is still
/// what the run wrote; what someone changed since is left as it is.
fn undo(dir: &Path, old: &Ledger) -> anyhow::Result<()> {
    for (rel, entry) in &old.entries {
        let full = dir.join(rel);
        if !no_symlink_on_the_way(dir, rel) {
            tracing::warn!(
                "{} is reached through a symlink in the checkout: left as it is",
                full.display()
            );
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&full) else {
            continue;
        };
        let unchanged = if entry.written == DIR {
            meta.is_dir() && generated_dir(&full)
        } else {
            meta.is_file()
                && (entry.written == PENDING
                    || std::fs::read(&full).is_ok_and(|b| sha256_hex(&b) == entry.written))
        };
        if !unchanged {
            tracing::warn!(
                "{} was written by an earlier run but has changed since: left as it is",
                full.display()
            );
            continue;
        }
        match &entry.before {
            Some(before) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(before)
                    .with_context(|| {
                        format!("the ledger's copy of `{}` is damaged", rel.display())
                    })?;
                crate::atomic::write(&full, &bytes)?;
            }
            None if meta.is_dir() => std::fs::remove_dir_all(&full)
                .with_context(|| format!("cannot remove `{}`", full.display()))?,
            None => std::fs::remove_file(&full)
                .with_context(|| format!("cannot remove `{}`", full.display()))?,
        }
    }
    // pi-image before the ledger: sub-stages it generated, and its --continue SKIP files.
    if let Ok(stages) = std::fs::read_dir(dir) {
        for stage in stages.flatten().filter(|e| e.path().is_dir()) {
            for sub in [substage::SUBSTAGE, substage::CLOUD_INIT_SUBSTAGE] {
                let p = stage.path().join(sub);
                if p.is_dir()
                    && generated_dir(&p)
                    && !old
                        .entries
                        .contains_key(&PathBuf::from(stage.file_name()).join(sub))
                {
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
        Contents::CopyFile(src, id) => {
            // The very file the walk saw: not a symlink, FIFO or device put in its place
            // since, nor another file reached through a parent directory swapped for a
            // symlink (its device and inode would differ).
            let mut from = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(
                    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK)
                        .bits()
                        .cast_signed(),
                )
                .open(src)
                .with_context(|| format!("cannot open overlay file `{}`", src.display()))?;
            let meta = from.metadata()?;
            if !meta.is_file() || (meta.dev(), meta.ino()) != *id {
                return Err(usage(format!(
                    "overlay entry `{}` changed while the overlay was being copied: leave the overlay alone during the build",
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
    // `overlay/` would resolve a symlink named `overlay`: judge the name itself.
    let trimmed = root.to_string_lossy();
    let trimmed = trimmed.trim_end_matches('/');
    let root = Path::new(if trimmed.is_empty() { "/" } else { trimmed });
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
    crate::input::check_dir("overlay directory", root)?;
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
                id: (meta.dev(), meta.ino()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_file_swapped_after_the_walk_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let ov = dir.path().join("ov");
        std::fs::create_dir_all(ov.join("etc")).unwrap();
        std::fs::write(ov.join("etc/app.conf"), "mine\n").unwrap();
        let entries = walk_overlay(&ov).unwrap();
        let OverlayKind::File { source, id, mode } = &entries[1].kind else {
            panic!("{entries:?}")
        };
        // Another file now sits where the walked one was (a new inode), as when a parent
        // directory is swapped for a symlink to the host's /etc.
        // (The walked file is kept, elsewhere, so its inode is not reused.)
        std::fs::rename(source, dir.path().join("kept")).unwrap();
        std::fs::write(source, "root:*:host shadow\n").unwrap();
        let f = GeneratedFile {
            path: "x".into(),
            contents: Contents::CopyFile(source.clone(), *id),
            mode: *mode,
        };
        let err = write_one(&dir.path().join("copy"), &f)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("changed while the overlay was being copied"),
            "{err}"
        );
        assert!(!dir.path().join("copy").exists());
    }

    #[test]
    fn undo_never_follows_a_symlink_out_of_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("pi-gen");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&checkout).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("EXPORT_IMAGE"), "precious\n").unwrap();
        std::os::unix::fs::symlink(&outside, checkout.join("stage9")).unwrap();
        let mut old = Ledger::default();
        old.entries.insert(
            "stage9/EXPORT_IMAGE".into(),
            Entry {
                written: PENDING.into(),
                before: None,
            },
        );
        undo(&checkout, &old).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("EXPORT_IMAGE")).unwrap(),
            "precious\n"
        );
    }

    #[test]
    fn a_ledger_naming_paths_outside_the_checkout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(STATE_DIR)).unwrap();
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            ".git/config",
            "stage2/../../x",
            "",
        ] {
            let text = serde_json::json!({ "entries": { bad: { "written": "pending" } } });
            std::fs::write(dir.path().join(LEDGER), text.to_string()).unwrap();
            let err = Ledger::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains("is damaged"), "{bad}: {err}");
        }
        let text = serde_json::json!({ "entries": { "stage2/90-pi-image": { "written": "dir" }, "config": { "written": "pending", "before": "" } } });
        std::fs::write(dir.path().join(LEDGER), text.to_string()).unwrap();
        assert!(
            Ledger::read(dir.path())
                .unwrap()
                .created(Path::new("stage2/90-pi-image"))
        );
    }
}
