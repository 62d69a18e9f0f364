//! Finding pi-gen's exported image under the deploy directory.
//!
//! pi-gen names (see `export-image/05-finalise/01-run.sh`):
//! `image_<date>-<name><suffix>.img.xz` / `.img.gz` / `.zip` (holding
//! `<date>-<name><suffix>.img`) and, without compression, a bare
//! `<date>-<name><suffix>.img`. The same image in several formats is one image; the
//! preference is `.img.xz` > `.zip` > `.img.gz` > `.img`.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::Context as _;
use regex::Regex;

/// Source formats, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Xz,
    Zip,
    Gz,
    Img,
}

impl Format {
    /// The format and the name without its extension, from a file name.
    pub fn from_file_name(name: &str) -> Option<(Self, &str)> {
        let lower = name.to_ascii_lowercase();
        for (ext, format) in [
            (".img.xz", Self::Xz),
            (".zip", Self::Zip),
            (".img.gz", Self::Gz),
            (".img", Self::Img),
        ] {
            if lower.ends_with(ext) && name.len() > ext.len() {
                return Some((format, &name[..name.len() - ext.len()]));
            }
        }
        None
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Xz => "img.xz",
            Self::Zip => "zip",
            Self::Gz => "img.gz",
            Self::Img => "img",
        }
    }
}

/// An image file found under the deploy directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    #[serde(serialize_with = "crate::model::lossy_path")]
    pub path: PathBuf,
    /// Path relative to the deploy directory, `/`-separated.
    pub rel: String,
    pub depth: usize,
    pub format: Format,
    pub size: u64,
    /// pi-gen's `IMG_DATE`, when the name carries one.
    pub date: Option<String>,
    /// The image's identity: the name without `image_`, date and extension
    /// (`sugarkube-lite`). Formats of one image share it.
    pub name: String,
}

static DATED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\d{4}-\d{2}-\d{2})-(.+)$").expect("valid regex"));

impl Candidate {
    pub fn new(path: PathBuf, rel: String, depth: usize, size: u64) -> Option<Self> {
        let file_name = rel.rsplit('/').next().unwrap_or(&rel).to_owned();
        let (format, stem) = Format::from_file_name(&file_name)?;
        let stem = stem.strip_prefix("image_").unwrap_or(stem);
        let (date, name) = match DATED.captures(stem) {
            Some(c) => (Some(c[1].to_owned()), c[2].to_owned()),
            None => (None, stem.to_owned()),
        };
        Some(Self {
            path,
            rel,
            depth,
            format,
            size,
            date,
            name,
        })
    }

    pub fn file_name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }
}

/// What a scan of the deploy directory saw.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files whose name is an image format.
    pub candidates: Vec<Candidate>,
    /// Every regular file seen (relative paths).
    pub all_files: Vec<String>,
    /// Entries with an image's name that were not taken, each `rel: why`.
    pub skipped: Vec<String>,
}

/// Every file under `deploy_dir` (at most `max_depth` levels down) whose name is an
/// image format. Symlinks are not followed (an image is read from the deploy
/// directory itself, never through a link that may lead anywhere), special files
/// are not read, and hidden files (our own partial outputs among them) are skipped;
/// those with an image's name are reported with the reason.
pub fn scan(deploy_dir: &Path, max_depth: usize) -> anyhow::Result<Scan> {
    // The directory is the user's input: a wrong one is a usage error (exit 2).
    let meta = std::fs::metadata(deploy_dir).map_err(|e| {
        crate::error::usage(format!(
            "deploy directory `{}` does not exist or cannot be read ({e}): run pi-gen first, or pass \
             --deploy-dir (DEPLOY_DIR) pointing at its deploy/ output",
            deploy_dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(crate::error::usage(format!(
            "deploy directory `{}` (--deploy-dir, DEPLOY_DIR) is not a directory",
            deploy_dir.display()
        )));
    }
    let mut scan = Scan::default();
    for entry in walkdir::WalkDir::new(deploy_dir)
        .max_depth(max_depth)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot scan `{}`", deploy_dir.display()))?;
        let name = entry.file_name().to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        let rel = crate::config::posix_relative(deploy_dir, entry.path());
        if !kind.is_file() {
            if Format::from_file_name(&name).is_some() {
                let why = if kind.is_symlink() {
                    "a symlink, not followed: put the image itself in the deploy directory"
                } else {
                    "not a regular file (a FIFO, socket or device)"
                };
                scan.skipped.push(format!("{rel}: {why}"));
            }
            continue;
        }
        scan.all_files.push(rel.clone());
        let size = entry.metadata().map_or(0, |m| m.len());
        if let Some(c) = Candidate::new(entry.path().to_path_buf(), rel, entry.depth(), size) {
            scan.candidates.push(c);
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(rel: &str) -> Candidate {
        Candidate::new(
            PathBuf::from(rel),
            rel.to_owned(),
            rel.matches('/').count() + 1,
            1,
        )
        .unwrap()
    }

    #[test]
    fn pi_gen_names() {
        let c = cand("image_2026-06-18-raspios-trixie-armhf-lite.img.xz");
        assert_eq!(
            (c.format, c.date.as_deref(), c.name.as_str()),
            (Format::Xz, Some("2026-06-18"), "raspios-trixie-armhf-lite")
        );
        let c = cand("image_2026-06-18-sugarkube-lite.zip");
        assert_eq!((c.format, c.name.as_str()), (Format::Zip, "sugarkube-lite"));
        let c = cand("2026-06-18-sugarkube-lite.img");
        assert_eq!((c.format, c.name.as_str()), (Format::Img, "sugarkube-lite"));
        let c = cand("x/image_2026-06-18-sugarkube.img.gz");
        assert_eq!(
            (c.format, c.name.as_str(), c.depth),
            (Format::Gz, "sugarkube", 2)
        );
        let c = cand("deep.IMG");
        assert_eq!(
            (c.format, c.date, c.name.as_str()),
            (Format::Img, None, "deep")
        );
        for not in [
            "x.sbom.xz",
            "x.info",
            "x.bmap",
            ".img",
            "x.img.bz2",
            "build.log",
        ] {
            assert!(
                Candidate::new(PathBuf::from(not), not.into(), 1, 1).is_none(),
                "{not}"
            );
        }
    }

    #[test]
    fn xz_is_preferred_over_zip_over_gz_over_img() {
        assert!(Format::Xz < Format::Zip && Format::Zip < Format::Gz && Format::Gz < Format::Img);
    }
}
