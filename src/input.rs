//! Files the user names (user-data, a chroot script, build.log, a deploy dir's images,
//! a manifest and its assets, files to inject into a guest). Each is opened the one way
//! that is safe with hostile paths: it must be a regular file (a FIFO would hang the
//! step, a device or directory would mislead), read through no symlink that leads out
//! of the directory it was named in, and the file opened is the one that was checked.

use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::usage;

/// Where a named file must really be: inside the working directory for a path given
/// under it (`$GITHUB_WORKSPACE`), else inside the directory it was named in.
fn default_base(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        Ok(cwd) if path.starts_with(&cwd) || path.is_relative() => {
            std::fs::canonicalize(&cwd).unwrap_or(cwd)
        }
        _ => path
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .unwrap_or_default(),
    }
}

/// Opens the input `what` at `path` for reading; `base` is the directory it must stay
/// in (default: see [`default_base`]). Every refusal is a usage error (exit 2) naming
/// the input, the path as given, and what to do.
pub fn open(what: &str, path: &Path, base: Option<&Path>) -> anyhow::Result<(File, Metadata)> {
    std::fs::symlink_metadata(path)
        .map_err(|e| usage(format!("{what} `{}` cannot be read: {e}", path.display())))?;
    let target = std::fs::canonicalize(path).map_err(|e| {
        usage(format!(
            "{what} `{}` cannot be resolved: {e}",
            path.display()
        ))
    })?;
    let base = match base {
        Some(b) => {
            let b = if b.as_os_str().is_empty() {
                Path::new(".")
            } else {
                b
            };
            std::fs::canonicalize(b).map_err(|e| {
                usage(format!(
                    "{what}: the directory `{}` cannot be read: {e}",
                    b.display()
                ))
            })?
        }
        None => default_base(path),
    };
    if !target.starts_with(&base) {
        return Err(usage(format!(
            "{what} `{}` leads through a symlink out of `{}` (to `{}`): give the file itself",
            path.display(),
            base.display(),
            target.display()
        )));
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOFOLLOW on the resolved
    // path: no symlink swapped in since the check.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            (rustix::fs::OFlags::NONBLOCK
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NOCTTY)
                .bits()
                .cast_signed(),
        )
        .open(&target)
        .map_err(|e| usage(format!("{what} `{}` cannot be read: {e}", path.display())))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else if meta.file_type().is_fifo_like() {
            "a FIFO or socket"
        } else {
            "a device"
        };
        return Err(usage(format!(
            "{what} `{}` is not a regular file but {kind}: give a file",
            path.display()
        )));
    }
    // The file opened must be the one resolved (no rename race in between).
    if let Ok(now) = std::fs::metadata(&target)
        && (now.dev(), now.ino()) != (meta.dev(), meta.ino())
    {
        return Err(usage(format!(
            "{what} `{}` changed while it was being opened; try again",
            path.display()
        )));
    }
    Ok((file, meta))
}

/// Checks that the directory input `what` (an overlay) is where it was named: no
/// symlink on the way (the directory itself or a parent) leads out of the working
/// directory for a path under it, or out of its parent otherwise.
pub fn check_dir(what: &str, path: &Path) -> anyhow::Result<()> {
    let target = std::fs::canonicalize(path).map_err(|e| {
        usage(format!(
            "{what} `{}` cannot be resolved: {e}",
            path.display()
        ))
    })?;
    let base = default_base(path);
    if !target.starts_with(&base) {
        return Err(usage(format!(
            "{what} `{}` leads through a symlink out of `{}` (to `{}`): give the directory itself",
            path.display(),
            base.display(),
            target.display()
        )));
    }
    Ok(())
}

/// Reads the input `what` whole (at most `max` bytes), opened as [`open`] does, with
/// `base` the directory it must stay in (None: where it was named).
pub fn read(what: &str, path: &Path, base: Option<&Path>, max: u64) -> anyhow::Result<Vec<u8>> {
    let (file, meta) = open(what, path, base)?;
    if meta.len() > max {
        return Err(usage(format!(
            "{what} `{}` is {} bytes; at most {max} are accepted",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&file, max + 1), &mut bytes)
        .map_err(|e| usage(format!("{what} `{}` cannot be read: {e}", path.display())))?;
    Ok(bytes)
}

/// The most a text input (a manifest, notes, a key, a JSON report, a build log) may hold.
pub const TEXT_MAX: u64 = 256 << 20;

/// [`read`] of a UTF-8 text input, at most [`TEXT_MAX`] bytes.
pub fn read_text(what: &str, path: &Path, base: Option<&Path>) -> anyhow::Result<String> {
    String::from_utf8(read(what, path, base, TEXT_MAX)?).map_err(|e| {
        usage(format!(
            "{what} `{}` cannot be read as text: {e}",
            path.display()
        ))
    })
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt as _;
        self.is_fifo() || self.is_socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_directories_and_escaping_symlinks_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let err = open("--user-data", &fifo, Some(dir.path())).unwrap_err();
        assert!(format!("{err}").contains("FIFO"), "{err}");
        let err = open("--user-data", dir.path(), Some(dir.path())).unwrap_err();
        assert!(format!("{err}").contains("a directory"), "{err}");
        let outside = tempfile::NamedTempFile::new().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let err = open("--user-data", &link, Some(dir.path())).unwrap_err();
        assert!(format!("{err}").contains("out of"), "{err}");
        std::fs::write(dir.path().join("real"), "x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("inside")).unwrap();
        assert!(open("--user-data", &dir.path().join("inside"), Some(dir.path())).is_ok());
    }
}
