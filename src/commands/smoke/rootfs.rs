//! The ext4 root partition, edited and read without mounting through e2fsprogs'
//! `debugfs` on `image?offset=N`: files injected before boot, guest files collected
//! after it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::error::usage;

/// A host file to place in the guest before boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub host: PathBuf,
    pub guest: String,
    pub mode: u32,
}

/// Parses `HOST_PATH:GUEST_PATH[:MODE]` (octal mode; default 0755 for executable host
/// files, else 0644).
pub fn parse_injection(spec: &str) -> anyhow::Result<Injection> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, guest, mode) = match parts.as_slice() {
        [h, g] => (*h, *g, None),
        [h, g, m] => (*h, *g, Some(*m)),
        _ => {
            return Err(usage(format!(
                "--inject `{spec}` is not HOST_PATH:GUEST_PATH[:MODE]"
            )));
        }
    };
    check_guest_path(guest).map_err(|e| usage(format!("--inject `{spec}`: {e}")))?;
    let host = PathBuf::from(host);
    // What --inject may read: a regular file, through no symlink out of the directory it
    // was named in (the workspace for a relative path), as every input is read.
    let (_, meta) = crate::input::open("--inject", &host, None)?;
    let mode = if let Some(m) = mode {
        u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                usage(format!(
                    "--inject `{spec}`: mode `{m}` is not octal like 0644"
                ))
            })?
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        }
    };
    Ok(Injection {
        host,
        guest: guest.to_owned(),
        mode,
    })
}

/// Guest paths go into debugfs command lines: absolute, no `..`, nothing that could
/// split or quote a command.
pub fn check_guest_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path == "/" {
        return Err(format!("guest path `{path}` must be absolute"));
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("guest path `{path}` must not contain `.` or `..`"));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(format!(
            "guest path `{}` has spaces, quotes or control characters",
            path.escape_debug()
        ));
    }
    Ok(())
}

fn target(image: &Path, offset: u64) -> String {
    format!("{}?offset={offset}", image.display())
}

fn debugfs(
    image: &Path,
    offset: u64,
    write: bool,
    request: &str,
    summary: &str,
) -> anyhow::Result<(String, String)> {
    let mut cmd = crate::process::command("debugfs");
    if write {
        cmd.arg("-w");
    }
    let out = cmd
        .arg("-R")
        .arg(request)
        .arg(target(image, offset))
        .output()
        .with_context(|| {
            format!("failed to {summary}: cannot run `debugfs` (apt-get install e2fsprogs)")
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!(
            "failed to {summary}: debugfs ended with {}: {}",
            out.status,
            stderr.trim()
        );
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
}

/// Whether a guest path exists, and whether it is a directory.
pub fn stat(image: &Path, offset: u64, path: &str) -> anyhow::Result<Option<bool>> {
    let (out, err) = debugfs(
        image,
        offset,
        false,
        &format!("stat \"{path}\""),
        &format!("look up `{path}` in the root filesystem"),
    )?;
    if err.contains("not found") || err.contains("File not found") {
        return Ok(None);
    }
    Ok(Some(out.contains("Type: directory")))
}

/// Writes every injection (parents created, owner root, the given mode) and reads each
/// file back to prove it landed: debugfs exits 0 even when a command fails.
pub fn inject(
    image: &Path,
    offset: u64,
    files: &[Injection],
    scratch: &Path,
) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let mut script = String::new();
    for f in files {
        let mut dir = String::new();
        let parents: Vec<&str> = f.guest.trim_start_matches('/').split('/').collect();
        for part in &parents[..parents.len() - 1] {
            dir.push('/');
            dir.push_str(part);
            script.push_str(&format!("mkdir \"{dir}\"\n"));
        }
        script.push_str(&format!("rm \"{}\"\n", f.guest));
        script.push_str(&format!("write \"{}\" \"{}\"\n", f.host.display(), f.guest));
        script.push_str(&format!(
            "sif \"{}\" mode 0{:o}\n",
            f.guest,
            0o100_000 | f.mode
        ));
        script.push_str(&format!(
            "sif \"{}\" uid 0\nsif \"{}\" gid 0\n",
            f.guest, f.guest
        ));
    }
    let cmds = scratch.join("inject.debugfs");
    std::fs::File::create(&cmds)
        .and_then(|mut c| c.write_all(script.as_bytes()))
        .with_context(|| format!("cannot write `{}`", cmds.display()))?;
    let out = crate::process::command("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(target(image, offset))
        .output()
        .context("failed to inject files: cannot run `debugfs` (apt-get install e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "failed to inject files into the root filesystem: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for f in files {
        let back = scratch.join("inject.check");
        let _ = std::fs::remove_file(&back);
        debugfs(
            image,
            offset,
            false,
            &format!("dump \"{}\" \"{}\"", f.guest, back.display()),
            &format!("read back `{}`", f.guest),
        )?;
        let want = std::fs::read(&f.host)
            .with_context(|| format!("cannot read `{}`", f.host.display()))?;
        if std::fs::read(&back).ok().as_deref() != Some(want.as_slice()) {
            bail!(
                "injecting `{}` as `{}` failed (is the root filesystem full, or `{}` not a directory?): {}",
                f.host.display(),
                f.guest,
                Path::new(&f.guest)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        tracing::info!(
            "injected {} → {} (mode {:04o})",
            f.host.display(),
            f.guest,
            f.mode
        );
    }
    Ok(())
}

/// Replays the ext4 journal of the copy (a guest stopped right after `sync` can leave
/// `needs_recovery` set, and debugfs reads the filesystem without replaying it).
pub fn recover(image: &Path, offset: u64) {
    let out = crate::process::command("e2fsck")
        .arg("-fy")
        .arg(target(image, offset))
        .output();
    match out {
        // 0: clean, 1: errors corrected, 2: corrected, reboot wanted (irrelevant here).
        Ok(o) if matches!(o.status.code(), Some(0..=2)) => {}
        Ok(o) => tracing::warn!(
            "e2fsck could not repair the guest's root filesystem ({}); collected files may be stale: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap_or_default()
        ),
        Err(e) => tracing::warn!("cannot run e2fsck to replay the guest's journal: {e}"),
    }
}

/// Copies a guest file or directory to `dest_dir/<guest path>`. Returns false when the
/// guest path does not exist.
pub fn collect(image: &Path, offset: u64, guest: &str, dest_dir: &Path) -> anyhow::Result<bool> {
    let Some(is_dir) = stat(image, offset, guest)? else {
        return Ok(false);
    };
    let rel = guest.trim_start_matches('/');
    let dest = dest_dir.join(rel);
    let parent = dest.parent().unwrap_or(dest_dir);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create `{}`", parent.display()))?;
    if is_dir {
        if dest.exists() {
            std::fs::remove_dir_all(&dest)
                .with_context(|| format!("cannot replace `{}`", dest.display()))?;
        }
        // rdump recreates the directory (by its own name) inside the target.
        debugfs(
            image,
            offset,
            false,
            &format!("rdump \"{guest}\" \"{}\"", parent.display()),
            &format!("copy `{guest}` out of the guest"),
        )?;
    } else {
        debugfs(
            image,
            offset,
            false,
            &format!("dump \"{guest}\" \"{}\"", dest.display()),
            &format!("copy `{guest}` out of the guest"),
        )?;
    }
    Ok(dest.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_specs_name_host_file_guest_path_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("stub.sh");
        std::fs::write(&host, "#!/bin/sh\n").unwrap();
        let spec = format!("{}:/opt/smoketest/stub.sh:0755", host.display());
        let i = parse_injection(&spec).unwrap();
        assert_eq!(
            (i.guest.as_str(), i.mode),
            ("/opt/smoketest/stub.sh", 0o755)
        );
        assert_eq!(
            parse_injection(&format!("{}:/etc/x.conf", host.display()))
                .unwrap()
                .mode,
            0o644
        );
        for bad in [
            format!("{}:relative", host.display()),
            format!("{}:/a/../etc/shadow", host.display()),
            format!("{}:/a b", host.display()),
            format!("{}:/x:999", host.display()),
            "/nonexistent:/x".to_owned(),
            "onlyone".to_owned(),
        ] {
            assert!(parse_injection(&bad).is_err(), "{bad}");
        }
    }
}
