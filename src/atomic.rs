//! Outputs appear under their final name only when complete: they are written to a
//! hidden temporary file in the same directory and renamed. A failed step, SIGINT or
//! SIGTERM removes the temporary file (its guard is dropped on the error path).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

use crate::error::Interrupted;

const PARTIAL_SUFFIX: &str = ".partial";

/// A file being written under a temporary name next to `dest`.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file in `dest`'s directory (which must exist).
    pub fn create(dest: &Path) -> anyhow::Result<Self> {
        let dir = parent_dir(dest);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", crate::config::file_name(dest)))
            .suffix(PARTIAL_SUFFIX)
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "cannot create a file in `{}`: check that the directory is writable",
                    dir.display()
                )
            })?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The temporary path (for messages and tests).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes to disk, sets mode 0644 and renames over `dest` (replacing a read-only
    /// file is fine: only the directory must be writable).
    pub fn commit(self) -> anyhow::Result<()> {
        self.finish()?;
        let dest = self.dest;
        self.tmp
            .persist(&dest)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot rename the finished file to `{}`", dest.display()))?;
        Ok(())
    }

    /// Mode 0644 and flushed to disk: ready to be renamed into place.
    fn finish(&self) -> anyhow::Result<()> {
        let file = self.tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| {
                format!("cannot set permissions on `{}`", self.tmp.path().display())
            })?;
        file.sync_all()
            .with_context(|| format!("cannot flush `{}` to disk", self.tmp.path().display()))?;
        Ok(())
    }
}

/// Files that are replaced together or not at all (an image, its checksum and its
/// metadata): when one rename fails, the ones already made are undone, so the
/// previous set stays whole and its checksum still matches.
#[derive(Debug, Default)]
pub struct FileSet {
    items: Vec<(Source, PathBuf)>,
}

#[derive(Debug)]
enum Source {
    Written(AtomicFile),
    Moved(PathBuf),
    /// The set has no such file any more (a build without a log): an old one goes.
    Removed,
}

/// What one rename replaced, to undo it.
struct Done {
    dest: PathBuf,
    backup: Option<PathBuf>,
    moved_from: Option<PathBuf>,
}

impl FileSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A finished file written under a temporary name.
    pub fn add(&mut self, file: AtomicFile) {
        let dest = file.dest.clone();
        self.items.push((Source::Written(file), dest));
    }

    /// A file renamed from `from` (the same file system) to `dest`.
    pub fn add_move(&mut self, from: &Path, dest: &Path) {
        self.items
            .push((Source::Moved(from.to_path_buf()), dest.to_path_buf()));
    }

    /// A file of the previous set that the new set does not have.
    pub fn add_removal(&mut self, dest: &Path) {
        self.items.push((Source::Removed, dest.to_path_buf()));
    }

    /// Puts every file in place, or none: the previous files are kept under hidden
    /// hard links until all renames have succeeded.
    pub fn commit(self) -> anyhow::Result<()> {
        for (source, dest) in &self.items {
            if let Ok(meta) = std::fs::symlink_metadata(dest)
                && meta.is_dir()
            {
                anyhow::bail!(
                    "cannot replace `{}`: it is a directory; remove it and run again",
                    dest.display()
                );
            }
            if let Source::Written(f) = source {
                f.finish()?;
            }
        }
        let mut done: Vec<Done> = Vec::new();
        let mut backups = Vec::new();
        let result = (|| -> anyhow::Result<()> {
            for (source, dest) in self.items {
                let backup = backup_of(dest.as_path())?;
                if let Some(b) = &backup {
                    backups.push(b.clone());
                }
                let moved_from = match source {
                    Source::Written(f) => {
                        f.tmp.persist(&dest).map_err(|e| e.error).with_context(|| {
                            format!("cannot rename the finished file to `{}`", dest.display())
                        })?;
                        None
                    }
                    Source::Moved(from) => {
                        std::fs::rename(&from, &dest).with_context(|| {
                            format!("cannot move `{}` to `{}`", from.display(), dest.display())
                        })?;
                        Some(from)
                    }
                    Source::Removed => {
                        if backup.is_some() {
                            std::fs::remove_file(&dest).with_context(|| {
                                format!("cannot remove the previous `{}`", dest.display())
                            })?;
                        }
                        None
                    }
                };
                done.push(Done {
                    dest,
                    backup,
                    moved_from,
                });
            }
            Ok(())
        })();
        if result.is_err() {
            for d in done.iter().rev() {
                if let Some(from) = &d.moved_from {
                    let _ = std::fs::rename(&d.dest, from);
                }
                match &d.backup {
                    Some(b) => {
                        let _ = std::fs::rename(b, &d.dest);
                    }
                    None if d.moved_from.is_none() => {
                        let _ = std::fs::remove_file(&d.dest);
                    }
                    None => {}
                }
            }
        }
        for b in backups {
            let _ = std::fs::remove_file(b);
        }
        result
    }
}

/// A hidden hard link to `dest` as it is now (none when there is no file).
fn backup_of(dest: &Path) -> anyhow::Result<Option<PathBuf>> {
    if std::fs::symlink_metadata(dest).is_err() {
        return Ok(None);
    }
    let name = format!(
        ".{}.{}{PREVIOUS_SUFFIX}",
        crate::config::file_name(dest),
        &crate::gha::escape::stop_token()[..8]
    );
    let backup = parent_dir(dest).join(name);
    std::fs::hard_link(dest, &backup).with_context(|| {
        format!(
            "cannot keep the previous `{}` while it is replaced",
            dest.display()
        )
    })?;
    Ok(Some(backup))
}

const PREVIOUS_SUFFIX: &str = ".previous";

/// Holds `dir` for one writer: a second run into the same output directory waits
/// until the first has finished, so neither sees or removes the other's files.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        use rustix::fs::FlockOperation;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = dir.join(".pi-image.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(&path)
            .with_context(|| format!("cannot open the lock file `{}`", path.display()))?;
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::info!(
                "another pi-image run is writing to `{}`: waiting for it to finish",
                dir.display()
            );
            rustix::fs::flock(&file, FlockOperation::LockExclusive)
                .with_context(|| format!("cannot lock `{}`", path.display()))?;
        }
        Ok(Self { _file: file })
    }
}

/// Writes `bytes` to `dest` atomically.
/// `mkdir -p` that returns exactly the directories it made, outermost first. It walks
/// the path as written, one component at a time, so `missing/../etc` makes `missing` and
/// reports only that: whatever `..` leads back to existed already and is never reported
/// (callers chown, or remove again, what this returns).
pub fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::path::Component;
    let mut made = Vec::new();
    let mut at = PathBuf::new();
    for c in dir.components() {
        at.push(c);
        if !matches!(c, Component::Normal(_)) {
            continue;
        }
        match std::fs::create_dir(&at) {
            Ok(()) => made.push(at.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && at.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(made)
}

pub fn write(dest: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = AtomicFile::create(dest)?;
    file.file()
        .write_all(bytes)
        .with_context(|| format!("cannot write `{}`", file.temp_path().display()))?;
    file.commit()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes `path` if it is there; whether it was.
pub fn remove_if_present(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove `{}`", path.display())),
    }
}

/// Removes temporary files a killed earlier run left next to `dest`: only `dest`'s own
/// (`.<name>.<random>.partial` or `.previous`, never another file's whose name starts
/// the same), and only under the directory's [`DirLock`], so none is a live run's.
pub fn remove_stale_partials(dest: &Path, _held: &DirLock) {
    let prefix = format!(".{}.", crate::config::file_name(dest));
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let random = name.strip_prefix(&prefix).and_then(|r| {
            r.strip_suffix(PARTIAL_SUFFIX)
                .or_else(|| r.strip_suffix(PREVIOUS_SUFFIX))
        });
        if random.is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric())) {
            tracing::info!(
                "removing `{}` left by an interrupted run",
                entry.path().display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Turns SIGINT/SIGTERM into a flag that long loops poll with [`check_interrupted`],
/// so they unwind and remove partial files. A second signal exits at once.
pub fn install_signal_handlers() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0)));
    for sig in [SIGINT, SIGTERM] {
        let received = Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&received))
            .context("cannot install a signal handler")?;
        signal_hook::flag::register(sig, received).context("cannot install a signal handler")?;
        signal_hook::flag::register_usize(sig, Arc::clone(flag), sig.unsigned_abs() as usize)
            .context("cannot install a signal handler")?;
    }
    Ok(())
}

/// Fails with [`Interrupted`] once SIGINT or SIGTERM has arrived.
pub fn check_interrupted() -> anyhow::Result<()> {
    let sig = SIGNAL.get().map_or(0, |f| f.load(Ordering::Relaxed));
    match sig {
        0 => Ok(()),
        s if s == signal_hook::consts::SIGINT as usize => Err(Interrupted("SIGINT").into()),
        _ => Err(Interrupted("SIGTERM").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dirs_reports_only_what_it_made_even_through_dot_dot() {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        let made = create_dirs(&tmp.path().join("new/../old/a/b")).unwrap();
        assert_eq!(
            made,
            [
                tmp.path().join("new"),
                tmp.path().join("new/../old/a"),
                tmp.path().join("new/../old/a/b")
            ]
        );
        assert!(old.join("a/b").is_dir());
        assert!(create_dirs(&old).unwrap().is_empty());
    }

    #[test]
    fn dropped_files_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.img.xz");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.file().write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_replaces_read_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.sha256");
        std::fs::write(&dest, "old").unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o444)).unwrap();
        write(&dest, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stale_partials_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.img.xz");
        std::fs::write(dir.path().join(".x.img.xz.abc123.partial"), "junk").unwrap();
        std::fs::write(dir.path().join(".x.img.xz.Zy09ab.previous"), "junk").unwrap();
        std::fs::write(dir.path().join("keep.partial"), "other").unwrap();
        // Another file's partial whose name starts like ours (a live `sign` run's).
        std::fs::write(dir.path().join(".x.img.xz.sha256.abc123.partial"), "live").unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        remove_stale_partials(&dest, &lock);
        let left = names_in(dir.path());
        assert_eq!(
            left,
            [
                ".pi-image.lock",
                ".x.img.xz.sha256.abc123.partial",
                "keep.partial"
            ]
        );
    }

    #[test]
    fn a_set_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        // `c` cannot be replaced: a non-empty directory is in its place... after the check
        // for directories ran, so the failure comes from the rename itself.
        let mut set = FileSet::new();
        for (dest, text) in [(&a, "new a"), (&b, "new b")] {
            let mut f = AtomicFile::create(dest).unwrap();
            f.file().write_all(text.as_bytes()).unwrap();
            set.add(f);
        }
        let mut f = AtomicFile::create(&c).unwrap();
        f.file().write_all(b"new c").unwrap();
        set.add(f);
        std::fs::create_dir(&c).unwrap();
        std::fs::write(c.join("x"), "").unwrap();
        let err = set.commit().unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old b");

        // A rename that fails half-way (the directory appears after the check) is undone.
        std::fs::remove_dir_all(&c).unwrap();
        let mut set = FileSet::new();
        for (dest, text) in [(&a, "new a"), (&b, "new b")] {
            let mut f = AtomicFile::create(dest).unwrap();
            f.file().write_all(text.as_bytes()).unwrap();
            set.add(f);
        }
        let gone = dir.path().join("missing-source");
        set.add_move(&gone, &c);
        assert!(set.commit().is_err());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old b");
        assert!(!c.exists());
        let left = names_in(dir.path());
        assert_eq!(left, ["a", "b"], "no partial or backup is left");
    }
}
