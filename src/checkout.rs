//! The pi-gen checkout both `prepare-mirrors` and `run-pi-gen` work on: cloned at the
//! requested ref when missing, or reused, and then reported as what it really is.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::error::usage;
use crate::gha::Gha;
use crate::process::{CmdSpec, find_program};

/// A pi-gen checkout as found (or made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit (`unknown` when the directory is not a git checkout).
    pub commit: String,
    /// The branch or tag it is on, or the commit when detached.
    pub git_ref: String,
}

/// The sub-stage that runs first in stage0 and stage2 (`00-00-` sorts before
/// `00-configure-apt` and any other `00-` directory).
pub const MIRRORS_SUBSTAGE: &str = "00-00-pi-image-mirrors";

/// prepare-mirrors' record of the mirror it chose for each archive (`ARCHIVE URL` lines),
/// in the pi-gen checkout `dir`; collect-artifacts copies it into the package lock.
pub fn mirrors_record(dir: &Path) -> PathBuf {
    dir.join("stage0")
        .join(MIRRORS_SUBSTAGE)
        .join("files/pi-image-mirrors.state")
}

/// `git -C dir` for reading a checkout. A checkout made by another user (a container,
/// the runner) is still ours to read (`safe.directory`), so nothing its own config names
/// may run: `core.fsmonitor` is a command git starts for `status`/`ls-files`.
pub fn git(dir: &Path, summary: &str) -> CmdSpec {
    CmdSpec::new("git", summary)
        .arg("-c")
        .arg("safe.directory=*")
        .arg("-c")
        .arg("core.fsmonitor=false")
        .arg("-C")
        .arg(dir)
}

/// Clones pi-gen from `url` at `git_ref` into `dir`, or reuses the checkout there.
/// An existing checkout is reported with its own branch or tag; when the caller named
/// a ref explicitly (`explicit`), a checkout elsewhere is an error rather than a
/// silently different build.
pub fn checkout_pi_gen(
    gha: &Gha,
    dir: &Path,
    url: &str,
    git_ref: &str,
    explicit: bool,
) -> anyhow::Result<Checkout> {
    if dir.exists() {
        return existing(dir, git_ref, explicit);
    }
    if std::fs::symlink_metadata(dir).is_ok() {
        // A symlink to nothing: cloning through it, and cleaning up after a failed
        // clone, would act on whatever it names.
        return Err(usage(format!(
            "the pi-gen directory `{}` is a symlink that leads nowhere: remove it or point --pi-gen-dir elsewhere",
            dir.display()
        )));
    }
    if find_program("git").is_none() {
        return Err(usage(
            "git is required to check out pi-gen (apt-get install git)",
        ));
    }
    check_url(url)?;
    // The parents are made here, one by one, so that exactly those are known (and taken
    // away again after a failed clone). Only then is `dir` judged: through a `..`
    // (`missing/../src`) it may name a directory that exists once its parents do.
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let made = match parent {
        Some(p) => crate::atomic::create_dirs(p).map_err(|e| {
            anyhow::anyhow!(
                "cannot create `{}` for the pi-gen checkout: {e}",
                p.display()
            )
        })?,
        None => Vec::new(),
    };
    let result = if std::fs::symlink_metadata(dir).is_ok() {
        existing(dir, git_ref, explicit)
    } else {
        let _g = gha.group(&format!("cloning pi-gen {url} at {git_ref}"));
        let cloned = clone(dir, url, git_ref);
        if cloned.is_err() {
            // A half-made checkout would be taken for a checkout by the next run. `dir`
            // did not exist before the clone: what is there now is the clone's.
            let _ = std::fs::remove_dir_all(dir);
        }
        cloned
    };
    if result.is_err() {
        for p in made.iter().rev() {
            let _ = std::fs::remove_dir(p);
        }
    }
    result
}

/// `PI_GEN_URL`: a repository git can clone, never something git would read as an option
/// or a remote helper (`ext::`, `fd::`).
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let scheme_ok = ["https://", "http://", "git://", "ssh://", "file://", "/"]
        .iter()
        .any(|p| url.starts_with(p))
        || (url.starts_with("git@") && !url.contains("::"));
    // No characters that would break the Markdown link the notes make of it.
    if !scheme_ok
        || url.chars().any(|c| {
            !c.is_ascii_graphic() || matches!(c, '`' | '(' | ')' | '<' | '>' | '"' | '\'' | '\\')
        })
    {
        return Err(usage(format!(
            "PI_GEN_URL `{}` is not a repository URL (https://, http://, git://, ssh://, file://, git@host:path or an absolute path)",
            url.escape_debug()
        )));
    }
    Ok(())
}

fn clone(dir: &Path, url: &str, git_ref: &str) -> anyhow::Result<Checkout> {
    if is_commit_like(git_ref) {
        std::fs::create_dir_all(dir)?;
        for args in [
            vec!["init", "-q"],
            vec!["remote", "add", "--", "origin", url],
            vec!["fetch", "-q", "--depth", "1", "--", "origin", git_ref],
            vec!["checkout", "-q", "FETCH_HEAD"],
        ] {
            let mut c = git(dir, &format!("check out pi-gen commit {git_ref}"));
            for a in args {
                c = c.arg(a);
            }
            c.output()?;
        }
    } else {
        CmdSpec::new("git", &format!("clone pi-gen ({url} at {git_ref})"))
            .arg("clone")
            .arg("-q")
            .arg("--depth")
            .arg("1")
            .arg("--branch")
            .arg(git_ref)
            .arg("--")
            .arg(url)
            .arg(dir)
            .output()?;
    }
    Ok(Checkout {
        commit: git(dir, "read the pi-gen commit")
            .arg("rev-parse")
            .arg("HEAD")
            .output()?,
        git_ref: git_ref.to_owned(),
    })
}

fn is_commit_like(r: &str) -> bool {
    r.len() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit())
}

fn existing(dir: &Path, wanted: &str, explicit: bool) -> anyhow::Result<Checkout> {
    if !dir.join("build.sh").is_file() {
        bail!(
            "pi-gen directory `{}` exists but is missing build.sh: point --pi-gen-dir at a pi-gen checkout",
            dir.display()
        );
    }
    if !dir.join(".git").exists() {
        tracing::info!(
            "pi-gen directory {} is not a git checkout: its commit is recorded as `unknown`",
            dir.display()
        );
        return Ok(Checkout {
            commit: "unknown".into(),
            git_ref: if explicit {
                wanted.to_owned()
            } else {
                "unknown".into()
            },
        });
    }
    let commit = git(dir, "read the pi-gen commit")
        .arg("rev-parse")
        .arg("HEAD")
        .output()?;
    let here = git(dir, "read the pi-gen branch")
        .arg("symbolic-ref")
        .arg("-q")
        .arg("--short")
        .arg("HEAD")
        .output()
        .ok()
        .filter(|b| !b.is_empty())
        .or_else(|| {
            git(dir, "read the pi-gen tag")
                .arg("describe")
                .arg("--tags")
                .arg("--exact-match")
                .arg("HEAD")
                .output()
                .ok()
        })
        .unwrap_or_else(|| commit.clone());
    let wanted_commit = git(dir, "resolve the requested pi-gen ref")
        .arg("rev-parse")
        .arg("--verify")
        .arg("-q")
        .arg("--end-of-options")
        .arg(format!("{wanted}^{{commit}}"))
        .output()
        .ok();
    if wanted_commit.as_deref() != Some(commit.as_str()) {
        if explicit {
            return Err(usage(format!(
                "pi-gen checkout `{}` is at `{here}` (commit {}), not at PI_GEN_REF `{wanted}`: check `{wanted}` out there, or remove the directory so it is cloned",
                dir.display(),
                commit.get(..12).unwrap_or(&commit)
            )));
        }
        tracing::info!(
            "pi-gen checkout {} is at `{here}`, not the default `{wanted}`: building it as it is",
            dir.display()
        );
    }
    Ok(Checkout {
        commit,
        git_ref: here,
    })
}
