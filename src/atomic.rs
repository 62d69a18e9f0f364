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
        let file = self.tmp.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| {
                format!("cannot set permissions on `{}`", self.tmp.path().display())
            })?;
        file.sync_all()
            .with_context(|| format!("cannot flush `{}` to disk", self.tmp.path().display()))?;
        let dest = self.dest;
        self.tmp
            .persist(&dest)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot rename the finished file to `{}`", dest.display()))?;
        Ok(())
    }
}

/// Writes `bytes` to `dest` atomically.
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

/// Removes temporary files a killed earlier run left next to `dest`.
pub fn remove_stale_partials(dest: &Path) {
    let prefix = format!(".{}.", crate::config::file_name(dest));
    let Ok(entries) = std::fs::read_dir(parent_dir(dest)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(PARTIAL_SUFFIX) {
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
        signal_hook::flag::register_usize(sig, Arc::clone(flag), sig as usize)
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

    #[test]
    fn stale_partials_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.img.xz");
        std::fs::write(dir.path().join(".x.img.xz.abc123.partial"), "junk").unwrap();
        std::fs::write(dir.path().join("keep.partial"), "other").unwrap();
        remove_stale_partials(&dest);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("keep.partial")]);
    }
}
