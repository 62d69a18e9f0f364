//! The image's SBOM and package lock, read from its root file system once the image
//! is streamed: the raw source when there is one on disk, otherwise the finished
//! `.img.xz` through its index (only the blocks holding the file system's metadata and
//! the dpkg database are decoded). No mount, no root, no raw copy.
//!
//! Anything that keeps the inventory from being read right (no ext4 root file system,
//! no dpkg database, a damaged one) is a warning and no SBOM: never a wrong one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use super::Input;
use crate::atomic::{AtomicFile, FileSet};
use crate::checksum::Hashing;
use crate::config::file_name;
use crate::image::rootfs::RootFs;
use crate::image::xz_seek::SeekableXz;
use crate::image::{RawImage, ReadAt};
use crate::model::metadata::{FileRef, InventoryInfo};
use crate::sbom::lock::{self, BuildInputs};
use crate::sbom::{Inventory, cyclonedx, spdx};

/// The image to read, as it is on disk now.
pub enum Image {
    /// A raw `.img` (the source itself).
    Raw(PathBuf),
    /// The `.img.xz` just written or verified.
    Xz(PathBuf),
}

/// What the SBOM and lock are about.
pub struct About<'a> {
    pub image_file: &'a str,
    pub raw_sha256: &'a str,
    pub created: &'a str,
}

/// Reads the inventory and adds the SBOM and lock to `set`; when there is none, adds
/// their removal (a previous run's files are not this image's) and says why.
pub fn collect(
    input: &Input,
    image: &Image,
    about: &About<'_>,
    set: &mut FileSet,
) -> InventoryInfo {
    let paths = &input.paths;
    let skipped = |set: &mut FileSet, reason: String| {
        set.add_removal(&paths.sbom);
        set.add_removal(&paths.cyclonedx);
        set.add_removal(&paths.lock);
        InventoryInfo {
            status: "skipped".into(),
            reason: Some(reason),
            ..InventoryInfo::default()
        }
    };
    if input.no_sbom {
        return skipped(set, "--no-sbom".into());
    }
    let started = Instant::now();
    match read(input, image, about) {
        Ok((info, files)) => {
            for f in files {
                set.add(f);
            }
            let n = info.packages.unwrap_or_default();
            tracing::info!(
                "SBOM: {n} package{} ({}), read from the {} in {:.1} s",
                if n == 1 { "" } else { "s" },
                info.os.as_deref().unwrap_or_default(),
                info.read_from.as_deref().unwrap_or_default(),
                started.elapsed().as_secs_f64()
            );
            info
        }
        Err(e) => {
            // Interrupted: the step stops, as everywhere else.
            let reason = format!("{e:#}");
            tracing::warn!("no SBOM or package lock for this image: {reason}");
            skipped(set, reason)
        }
    }
}

fn read(
    input: &Input,
    image: &Image,
    about: &About<'_>,
) -> anyhow::Result<(InventoryInfo, Vec<AtomicFile>)> {
    let (reader, read_from): (Box<dyn ReadAt>, String) = match image {
        Image::Raw(path) => (
            Box::new(RawImage::new(open(path)?)?),
            "raw image".to_owned(),
        ),
        Image::Xz(path) => {
            let xz = SeekableXz::open(open(path)?)
                .with_context(|| format!("cannot read the index of `{}`", path.display()))?;
            let blocks = xz.block_count();
            let plural = if blocks == 1 { "" } else { "s" };
            (Box::new(xz), format!("xz index ({blocks} block{plural})"))
        }
    };
    let fs = RootFs::open(reader)?;
    let inv = Inventory::read(&fs)?;
    let build = build_inputs(input);
    let os = &inv.os;
    let os_words = [
        Some(os.id.as_str()),
        os.version_id.as_deref(),
        os.codename.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let subject = spdx::Subject {
        name: &input.paths.img_name,
        file_name: about.image_file,
        raw_sha256: about.raw_sha256,
        created: about.created,
    };
    let paths = &input.paths;
    let (sbom_file, sbom) = write(
        &paths.sbom,
        crate::model::to_canonical_json(&spdx::document(&subject, &inv))?.as_bytes(),
    )?;
    let (cdx_file, cdx) = write(
        &paths.cyclonedx,
        crate::model::to_canonical_json(&cyclonedx::document(&subject, &inv))?.as_bytes(),
    )?;
    let lock_text = lock::render(about.image_file, about.raw_sha256, &inv, &build);
    let (lock_file, lock) = write(&paths.lock, lock_text.as_bytes())?;
    Ok((
        InventoryInfo {
            status: "written".into(),
            reason: None,
            sbom: Some(sbom),
            lock: Some(lock),
            cyclonedx: Some(cdx),
            packages: Some(inv.packages.len()),
            os: Some(os_words),
            root_partition: Some(fs.partition.number),
            read_from: Some(read_from),
        },
        vec![sbom_file, cdx_file, lock_file],
    ))
}

pub(super) fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    crate::input::open("the image", path, None).map(|(f, _)| f)
}

pub(super) fn write(dest: &Path, bytes: &[u8]) -> anyhow::Result<(AtomicFile, FileRef)> {
    let mut file = AtomicFile::create(dest)?;
    let mut hashed = Hashing::new(file.file());
    hashed
        .write_all(bytes)
        .with_context(|| format!("cannot write `{}`", dest.display()))?;
    let (digest, _) = hashed.finish();
    Ok((
        file,
        FileRef {
            path: file_name(dest),
            sha256: digest.sha256,
            size_bytes: digest.size,
        },
    ))
}

/// The pi-gen commit and the mirrors prepare-mirrors chose, when `--pi-gen-dir` names
/// the checkout. Both are read from files others can write, so each value is checked
/// and left out (with a note) when it is not what those tools write.
fn build_inputs(input: &Input) -> BuildInputs {
    let Some(dir) = &input.pi_gen_dir else {
        return BuildInputs::default();
    };
    let commit = crate::checkout::git(dir, "read the pi-gen commit")
        .arg("rev-parse")
        .arg("HEAD")
        .output()
        .ok()
        .filter(|c| crate::validate::commit("the pi-gen commit", c).is_ok());
    let state = crate::checkout::mirrors_record(dir);
    let mut mirrors = Vec::new();
    if std::fs::symlink_metadata(&state).is_ok() {
        match crate::input::open("prepare-mirrors' record", &state, Some(dir)) {
            Ok((file, _)) => {
                let mut text = String::new();
                if std::io::Read::read_to_string(&mut std::io::Read::take(file, 1 << 16), &mut text)
                    .is_ok()
                {
                    mirrors = mirror_lines(&text);
                }
            }
            Err(e) => tracing::warn!("the lock lists no mirrors: {e:#}"),
        }
    }
    BuildInputs {
        pi_gen_commit: commit,
        mirrors,
    }
}

/// `ARCHIVE URL` lines as prepare-mirrors writes them; anything else is left out.
fn mirror_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (archive, url) = l.trim().split_once(' ')?;
            let ok = !archive.is_empty()
                && archive.bytes().all(|b| b.is_ascii_lowercase())
                && (url.starts_with("http://") || url.starts_with("https://"))
                && url.chars().all(crate::mirror_url::url_char_ok);
            ok.then(|| (archive.to_owned(), crate::mirror_url::redact_userinfo(url)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_mirror_lines_reach_the_lock_and_never_credentials() {
        let got = mirror_lines(
            "debian http://deb.debian.org/debian\n\
             raspberrypi https://u:secret@mirror.example/rpi\n\
             debian http://x.example/$(reboot)\n\
             Evil http://x.example/\n\
             debian ftp://x.example/\n",
        );
        assert_eq!(
            got,
            [
                (
                    "debian".to_owned(),
                    "http://deb.debian.org/debian".to_owned()
                ),
                (
                    "raspberrypi".to_owned(),
                    "https://***@mirror.example/rpi".to_owned()
                ),
            ]
        );
    }
}
