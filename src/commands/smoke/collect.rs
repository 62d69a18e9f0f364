//! `--collect`: files copied out of a guest that may be malicious. debugfs dumps each
//! guest path into a fresh private directory; from there only regular files and
//! directories are copied to the host, by this code, which never creates, follows or
//! writes through a symlink: a guest's link (to `/etc/passwd`, say) is reported as
//! skipped, with its target, and nothing is written where it points.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path};

use anyhow::Context as _;

/// Empties `dir` (without following any symlink in it) and creates it anew.
pub fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir),
        Ok(_) => std::fs::remove_file(dir),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("cannot clear `{}`", dir.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))
}

/// Creates `root/rel`'s directories one by one; each that exists must be a real
/// directory, not a link.
fn make_dirs(root: &Path, rel: &Path) -> anyhow::Result<()> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            anyhow::bail!("`{}` is not a plain relative path", rel.display());
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!(
                "`{}` is in the way (not a directory); nothing was written through it",
                cur.display()
            ),
            Err(_) => std::fs::create_dir(&cur)
                .with_context(|| format!("cannot create `{}`", cur.display()))?,
        }
    }
    Ok(())
}

/// Copies one regular file to `dest`, a new file (an old regular file there is
/// replaced; anything else in the way is an error), never through a link.
fn copy_file(from: &Path, dest: &Path) -> anyhow::Result<()> {
    if let Ok(m) = std::fs::symlink_metadata(dest) {
        anyhow::ensure!(
            m.is_file(),
            "`{}` is in the way (not a regular file); nothing was written through it",
            dest.display()
        );
        std::fs::remove_file(dest)
            .with_context(|| format!("cannot replace `{}`", dest.display()))?;
    }
    let mut src = File::open(from).with_context(|| format!("cannot read `{}`", from.display()))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(dest)
        .with_context(|| format!("cannot create `{}`", dest.display()))?;
    std::io::copy(&mut src, &mut out)
        .with_context(|| format!("cannot write `{}`", dest.display()))?;
    out.flush()?;
    Ok(())
}

/// Copies what debugfs dumped for the guest path `guest` (at `dumped`, inside a private
/// directory) to `root/<guest path>`. Returns the entries skipped, each with why.
pub fn copy_out(dumped: &Path, root: &Path, guest: &str) -> anyhow::Result<Vec<String>> {
    let rel = Path::new(guest.trim_start_matches('/'));
    let mut skipped = Vec::new();
    if let Some(parent) = rel.parent() {
        make_dirs(root, parent)?;
    }
    for entry in walkdir::WalkDir::new(dumped)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot read `{}`", dumped.display()))?;
        let sub = entry.path().strip_prefix(dumped).unwrap_or(Path::new(""));
        // (`join("")` would add a trailing `/`: the dumped path itself is `rel`.)
        let (shown, dest_rel) = if sub.as_os_str().is_empty() {
            (guest.to_owned(), rel.to_path_buf())
        } else {
            (
                Path::new(guest).join(sub).display().to_string(),
                rel.join(sub),
            )
        };
        let kind = entry.file_type();
        if kind.is_dir() {
            make_dirs(root, &dest_rel)?;
        } else if kind.is_file() {
            copy_file(entry.path(), &root.join(&dest_rel))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            skipped.push(format!(
                "{shown}: a symlink in the guest (to `{}`), not recreated on the host",
                target.escape_debug()
            ));
        } else {
            skipped.push(format!("{shown}: not a regular file or directory"));
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_links_are_never_followed_or_made() {
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("victim");
        std::fs::write(&victim, "host file").unwrap();
        let dumped = tempfile::tempdir().unwrap();
        let d = dumped.path().join("home");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("ok.txt"), "fine").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("evil")).unwrap();
        let root = host.path().join("collected");
        fresh_dir(&root).unwrap();
        let skipped = copy_out(&d, &root, "/home").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("home/ok.txt")).unwrap(),
            "fine"
        );
        assert!(std::fs::symlink_metadata(root.join("home/evil")).is_err());
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].contains("/home/evil: a symlink"), "{skipped:?}");

        // A link already on the host where a file goes is not written through.
        std::os::unix::fs::symlink(&victim, root.join("home/ok2.txt")).unwrap();
        let f = dumped.path().join("ok2.txt");
        std::fs::write(&f, "guest").unwrap();
        assert!(copy_out(&f, &root, "/home/ok2.txt").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file");
    }
}
