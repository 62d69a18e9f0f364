//! Settings shared by several subcommands, with the environment variables the seed
//! design names, and the artifact file names derived from `IMG_NAME`.

use std::path::{Path, PathBuf};

use crate::error::usage;

/// Where the artifacts go and what they are called.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Image name: artifacts are OUTPUT_DIR/IMG_NAME.img.xz and friends
    #[arg(long, env = "IMG_NAME", default_value = "sugarkube")]
    pub img_name: String,
    /// Directory the artifacts are written to (created if missing)
    #[arg(long, env = "OUTPUT_DIR", default_value = ".")]
    pub output_dir: PathBuf,
}

impl ImageArgs {
    /// Validates the name and derives every artifact path.
    pub fn artifact_paths(&self) -> anyhow::Result<ArtifactPaths> {
        validate_img_name(&self.img_name)?;
        Ok(ArtifactPaths::new(&self.output_dir, &self.img_name))
    }
}

/// `IMG_NAME` becomes part of file names and, later, of pi-gen's sourced config, so it
/// is restricted to a safe file name.
pub fn validate_img_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "IMG_NAME `{}` is not a safe file name: use 1-100 ASCII letters, digits, `.`, `_` \
             or `-`, starting with a letter or digit",
            name.escape_debug()
        )))
    }
}

/// The files one image produces, all in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPaths {
    pub dir: PathBuf,
    pub img_name: String,
    pub image: PathBuf,
    pub checksum: PathBuf,
    pub metadata: PathBuf,
    pub build_log: PathBuf,
    pub manifest: PathBuf,
    pub intoto: PathBuf,
    pub notes: PathBuf,
}

impl ArtifactPaths {
    pub fn new(dir: &Path, img_name: &str) -> Self {
        let image_name = format!("{img_name}.img.xz");
        Self {
            dir: dir.to_path_buf(),
            img_name: img_name.to_owned(),
            image: dir.join(&image_name),
            checksum: dir.join(format!("{image_name}.sha256")),
            metadata: dir.join(format!("{image_name}.metadata.json")),
            build_log: dir.join(format!("{img_name}.build.log")),
            manifest: dir.join(format!("{image_name}.manifest.json")),
            intoto: dir.join(format!("{img_name}.intoto.json")),
            notes: dir.join("RELEASE_NOTES.md"),
        }
    }
}

/// The base name of a path as a string (for checksum lines and manifests).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `path` relative to `base`, `/`-separated (for manifests and messages).
pub fn posix_relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn img_name_rules() {
        for ok in ["sugarkube", "pi-os_2.1", "A"] {
            assert!(validate_img_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", ".hidden", "a/b", "a b", "$(id)", "a;b", "`x`", "ü", "a\nb",
        ] {
            assert!(validate_img_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_names() {
        let p = ArtifactPaths::new(Path::new("out"), "sk");
        assert_eq!(p.image, Path::new("out/sk.img.xz"));
        assert_eq!(p.checksum, Path::new("out/sk.img.xz.sha256"));
        assert_eq!(p.metadata, Path::new("out/sk.img.xz.metadata.json"));
        assert_eq!(p.build_log, Path::new("out/sk.build.log"));
        assert_eq!(p.manifest, Path::new("out/sk.img.xz.manifest.json"));
        assert_eq!(p.intoto, Path::new("out/sk.intoto.json"));
    }
}
