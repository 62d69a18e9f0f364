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

/// Which pi-gen builds the image: the same settings for `run-pi-gen`, which checks it
/// out, and `manifest`, which records it.
#[derive(Debug, Clone, clap::Args)]
pub struct PiGenArgs {
    /// pi-gen repository
    #[arg(
        long,
        env = "PI_GEN_URL",
        default_value = "https://github.com/RPi-Distro/pi-gen"
    )]
    pub pi_gen_url: String,
    /// Raspberry Pi OS release: bookworm or trixie
    #[arg(long, env = "PI_GEN_BRANCH", default_value = "bookworm")]
    pub pi_gen_branch: String,
    /// Branch, tag or commit of pi-gen [default: from PI_GEN_BRANCH and ARM64]
    #[arg(long, env = "PI_GEN_REF")]
    pub pi_gen_ref: Option<String>,
    /// 1: 64-bit (arm64) userspace; 0: 32-bit armhf
    #[arg(long, env = "ARM64", default_value = "1")]
    pub arm64: String,
    /// Stages to build, in order; the last one exports the image (empty is an error)
    #[arg(
        long,
        visible_alias = "stages",
        env = "PI_GEN_STAGES",
        default_value = "stage0 stage1 stage2"
    )]
    pub pi_gen_stages: String,
}

/// [`PiGenArgs`], validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiGenSource {
    pub url: String,
    pub branch: String,
    pub git_ref: String,
    /// The ref was named (PI_GEN_REF), not derived from the branch and architecture.
    pub ref_explicit: bool,
    pub arm64: bool,
    pub stages: Vec<String>,
}

impl PiGenArgs {
    pub fn resolve(&self) -> anyhow::Result<PiGenSource> {
        let arm64 = parse_arm64(&self.arm64)?;
        // A Debian suite name: pi-gen pastes RELEASE into sed programs and unquoted
        // command lines (`sed -i "s/RELEASE/${RELEASE}/g"`, `bootstrap ${RELEASE} ...`).
        let branch = &self.pi_gen_branch;
        let suite_ok = branch.len() <= 40
            && branch.starts_with(|c: char| c.is_ascii_lowercase())
            && branch
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !suite_ok {
            return Err(usage(format!(
                "PI_GEN_BRANCH `{}` is not a Debian release name (lower-case letters, digits and `-`, e.g. bookworm or trixie)",
                branch.escape_debug()
            )));
        }
        let named = self.pi_gen_ref.clone().filter(|r| !r.trim().is_empty());
        if let Some(r) = &named {
            check_git_ref(r)?;
        }
        // Checked here, not only before a clone: the URL is also recorded in the
        // manifest and linked from the release notes.
        crate::checkout::check_url(&self.pi_gen_url)?;
        Ok(PiGenSource {
            url: self.pi_gen_url.clone(),
            branch: self.pi_gen_branch.clone(),
            ref_explicit: named.is_some(),
            git_ref: named.unwrap_or_else(|| default_pi_gen_ref(&self.pi_gen_branch, arm64)),
            arm64,
            stages: parse_stages(&self.pi_gen_stages)?,
        })
    }
}

/// `ARM64` accepts exactly `0` or `1`.
pub fn parse_arm64(v: &str) -> anyhow::Result<bool> {
    match v.trim() {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(usage(format!("ARM64 must be 0 or 1 (got: {other})"))),
    }
}

/// `PI_GEN_STAGES`: whitespace-separated stage directories, at least one.
pub fn parse_stages(v: &str) -> anyhow::Result<Vec<String>> {
    let stages: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
    if stages.is_empty() {
        return Err(usage(
            "PI_GEN_STAGES is empty: list the stages to build, e.g. `stage0 stage1 stage2` (the default)",
        ));
    }
    if let Some(bad) = stages.iter().find(|s| {
        !s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    }) {
        return Err(usage(format!(
            "PI_GEN_STAGES has an invalid stage name `{}`",
            bad.escape_debug()
        )));
    }
    Ok(stages)
}

/// A branch, tag or commit as git allows it in a ref name (`git check-ref-format`), and
/// never an option: it is passed to git and shown in release notes.
pub fn check_git_ref(r: &str) -> anyhow::Result<()> {
    crate::validate::git_ref("PI_GEN_REF", r)
}

/// pi-gen's branch for a release and architecture (see docs/pi-gen.md c.1).
pub fn default_pi_gen_ref(branch: &str, arm64: bool) -> String {
    match (branch, arm64) {
        ("bookworm", true) => "bookworm-arm64".into(),
        ("trixie", true) => "arm64".into(),
        ("trixie", false) => "master".into(),
        (other, _) => other.into(),
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
    /// The SBOM (SPDX 2.3 JSON) and the package lock, from the image's root file system.
    pub sbom: PathBuf,
    pub lock: PathBuf,
    /// The same inventory as a CycloneDX 1.6 BOM.
    pub cyclonedx: PathBuf,
    /// The block map for bmaptool.
    pub bmap: PathBuf,
    /// The Raspberry Pi Imager repository with this image.
    pub rpi_imager: PathBuf,
    pub manifest: PathBuf,
    pub intoto: PathBuf,
    /// `sha256sum -c` over every artifact the manifest lists (but itself).
    pub sha256sums: PathBuf,
    pub notes: PathBuf,
}

impl ArtifactPaths {
    /// The files collect-artifacts writes.
    pub fn collected(&self) -> [&PathBuf; 8] {
        [
            &self.image,
            &self.checksum,
            &self.metadata,
            &self.build_log,
            &self.sbom,
            &self.cyclonedx,
            &self.lock,
            &self.bmap,
        ]
    }

    /// Every file of the image's set: collect-artifacts' and manifest's.
    pub fn all(&self) -> Vec<&PathBuf> {
        let mut all = self.collected().to_vec();
        all.extend([
            &self.rpi_imager,
            &self.manifest,
            &self.intoto,
            &self.sha256sums,
            &self.notes,
        ]);
        all
    }

    pub fn new(dir: &Path, img_name: &str) -> Self {
        let image_name = format!("{img_name}.img.xz");
        Self {
            dir: dir.to_path_buf(),
            img_name: img_name.to_owned(),
            image: dir.join(&image_name),
            checksum: dir.join(format!("{image_name}.sha256")),
            metadata: dir.join(format!("{image_name}.metadata.json")),
            build_log: dir.join(format!("{img_name}.build.log")),
            sbom: dir.join(format!("{img_name}.spdx.json")),
            cyclonedx: dir.join(format!("{img_name}.cdx.json")),
            lock: dir.join(format!("{img_name}.packages.lock")),
            bmap: dir.join(format!("{img_name}.img.bmap")),
            rpi_imager: dir.join(format!("{img_name}.rpi-imager.json")),
            manifest: dir.join(format!("{image_name}.manifest.json")),
            intoto: dir.join(format!("{img_name}.intoto.json")),
            sha256sums: dir.join("SHA256SUMS"),
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
    fn arm64_and_stages() {
        assert!(parse_arm64("1").unwrap());
        assert!(!parse_arm64("0").unwrap());
        assert_eq!(
            parse_arm64("2").unwrap_err().to_string(),
            "ARM64 must be 0 or 1 (got: 2)"
        );
        assert_eq!(
            parse_stages(" stage0  stage1 ").unwrap(),
            vec!["stage0", "stage1"]
        );
        assert!(
            parse_stages("  ")
                .unwrap_err()
                .to_string()
                .contains("PI_GEN_STAGES is empty")
        );
        assert!(parse_stages("stage0 $(id)").is_err());
    }

    #[test]
    fn git_ref_names() {
        for ok in [
            "bookworm-arm64",
            "2026-06-18-raspios-trixie-arm64",
            "d7a31c6a",
            "feature/x",
        ] {
            assert!(check_git_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "-x",
            "--upload-pack=touch /x",
            "a b",
            "a..b",
            "a:b",
            "x\nb",
            "$(id)x:",
            "a/.b",
            "x.lock",
            "@",
            "HEAD",
            "a\u{202e}b",
        ] {
            assert!(check_git_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pi_gen_refs() {
        assert_eq!(default_pi_gen_ref("bookworm", true), "bookworm-arm64");
        assert_eq!(default_pi_gen_ref("bookworm", false), "bookworm");
        assert_eq!(default_pi_gen_ref("trixie", true), "arm64");
        assert_eq!(default_pi_gen_ref("trixie", false), "master");
    }

    #[test]
    fn artifact_paths_follow_img_name() {
        let p = ArtifactPaths::new(Path::new("out"), "sk");
        assert_eq!(p.image, Path::new("out/sk.img.xz"));
        assert_eq!(p.checksum, Path::new("out/sk.img.xz.sha256"));
        assert_eq!(p.metadata, Path::new("out/sk.img.xz.metadata.json"));
        assert_eq!(p.build_log, Path::new("out/sk.build.log"));
        assert_eq!(p.manifest, Path::new("out/sk.img.xz.manifest.json"));
        assert_eq!(p.intoto, Path::new("out/sk.intoto.json"));
    }
}
