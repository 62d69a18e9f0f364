//! `IMG_NAME.img.bmap`: pi-gen's own bmap when its export made one and every range's
//! checksum matched the image as it streamed past (within the one pass); otherwise from
//! the partition table and each file system's allocation data (see
//! [`crate::image::bmap`]), once the image is streamed: the allocation is read at random
//! (raw source, or the .img.xz's index), then the mapped ranges are hashed in one more
//! sequential read (the raw source, or the .img.xz decoded on every core).

use std::io::BufReader;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use super::Input;
use super::inventory::{Image, open, write};
use crate::atomic::FileSet;
use crate::image::xz_seek::SeekableXz;
use crate::image::{RawImage, bmap};
use crate::model::metadata::{BmapInfo, PiGenBmapInfo};

/// Largest pi-gen bmap read: a few hundred bytes per range, and a Pi image has at most
/// some thousands of ranges.
const PI_GEN_BMAP_MAX: u64 = 16 << 20;

/// pi-gen's bmap, read and parsed before the pass, checked during it.
pub struct PiGenBmap {
    rel: String,
    state: Result<(bmap::Map, Vec<String>, bmap::Verifier), String>,
}

/// pi-gen's bmap after the pass: its map and checksums if every range matched.
pub struct Checked {
    rel: String,
    result: Result<(bmap::Map, Vec<String>), String>,
}

impl PiGenBmap {
    pub fn load(path: &Path, deploy_dir: &Path) -> Self {
        let rel = path
            .strip_prefix(deploy_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        let state = crate::input::read("pi-gen's bmap", path, None, PI_GEN_BMAP_MAX)
            .and_then(|bytes| Ok(String::from_utf8(bytes)?))
            .and_then(|text| bmap::parse(&text))
            .map(|(map, sums)| {
                let verifier = bmap::Verifier::new(&map, &sums);
                (map, sums, verifier)
            })
            .map_err(|e| format!("{e:#}"));
        Self { rel, state }
    }

    /// The next bytes of the raw image.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Ok((_, _, v)) = &mut self.state {
            v.update(bytes);
        }
    }

    pub fn finish(self, raw_size: u64) -> Checked {
        let result = self.state.and_then(|(map, sums, v)| {
            v.finish(raw_size).map_err(|e| format!("{e:#}"))?;
            Ok((map, sums))
        });
        Checked {
            rel: self.rel,
            result,
        }
    }
}

/// Adds the bmap to `set`, or its removal and why there is none.
pub fn collect(
    input: &Input,
    image: &Image,
    pi_gen: Option<Checked>,
    set: &mut FileSet,
) -> BmapInfo {
    let path = &input.paths.bmap;
    if input.no_bmap {
        set.add_removal(path);
        return skipped("--no-bmap".into());
    }
    let started = Instant::now();
    let mut rejected = None;
    // Read once: pi-gen's bmap is checked against it, and it is the bmap otherwise.
    let mut allocation = None;
    if let Some(Checked { rel, result }) = pi_gen {
        match result
            .and_then(|(map, sums)| {
                let needed = allocation.insert(analyse(image));
                covers_allocation(needed, &map).map(|()| (map, sums))
            })
            .and_then(|(map, sums)| {
                from_pi_gen(input, &rel, &map, &sums).map_err(|e| format!("{e:#}"))
            }) {
            Ok((info, file)) => {
                set.add(file);
                tracing::info!(
                    "bmap: pi-gen's `{}`, every range checked against the image ({} of {} blocks mapped)",
                    crate::gha::escape::plain_line(&rel),
                    info.mapped_blocks.unwrap_or_default(),
                    info.blocks.unwrap_or_default(),
                );
                return info;
            }
            Err(why) => {
                tracing::warn!(
                    "pi-gen's bmap `{}` is not used: {}; deriving one from the file systems",
                    crate::gha::escape::plain_line(&rel),
                    crate::gha::escape::plain_line(&why)
                );
                rejected = Some(PiGenBmapInfo {
                    path: rel,
                    used: false,
                    reason: Some(why),
                });
            }
        }
    }
    let mut info = derived(input, image, allocation, set, started);
    info.pi_gen = rejected;
    info
}

/// Whether `map` writes every block the file systems' own allocation data says is used:
/// pi-gen's bmaptool maps what its image file holds (holes are left out), which is not
/// proof a block is unused, and a forged bmap could leave out anything.
fn covers_allocation(needed: &anyhow::Result<bmap::Map>, map: &bmap::Map) -> Result<(), String> {
    let needed = needed.as_ref().map_err(|e| format!("{e:#}"))?;
    match bmap::uncovered(needed, map) {
        None => Ok(()),
        Some((n, first)) => Err(format!(
            "it leaves out {n} blocks the file systems use (the first: block {first})"
        )),
    }
}

/// The mapped set from the partition table and the file systems' allocation data, read
/// at random from the raw source or through the .img.xz's index.
fn analyse(image: &Image) -> anyhow::Result<bmap::Map> {
    match image {
        Image::Raw(path) => bmap::analyse(&mut RawImage::new(open(path)?)?),
        Image::Xz(path) => bmap::analyse(
            &mut SeekableXz::open(open(path)?)
                .with_context(|| format!("cannot read the index of `{}`", path.display()))?,
        ),
    }
}

/// pi-gen's bmap, checked, rendered again under this image's name.
fn from_pi_gen(
    input: &Input,
    rel: &str,
    map: &bmap::Map,
    sums: &[String],
) -> anyhow::Result<(BmapInfo, crate::atomic::AtomicFile)> {
    written(
        input,
        map,
        sums,
        "pi-gen's own bmap (bmaptool create), every range checked against the image",
        "pi-gen",
        vec![format!(
            "pi-gen's bmap `{rel}`, every range's checksum matched"
        )],
        Some(PiGenBmapInfo {
            path: rel.to_owned(),
            used: true,
            reason: None,
        }),
    )
}

fn derived(
    input: &Input,
    image: &Image,
    allocation: Option<anyhow::Result<bmap::Map>>,
    set: &mut FileSet,
    started: Instant,
) -> BmapInfo {
    let path = &input.paths.bmap;
    match make(input, image, allocation) {
        Ok((info, file)) => {
            set.add(file);
            tracing::info!(
                "bmap: {} of {} blocks mapped, in {:.1} s",
                info.mapped_blocks.unwrap_or_default(),
                info.blocks.unwrap_or_default(),
                started.elapsed().as_secs_f64()
            );
            info
        }
        Err(e) => {
            let reason = format!("{e:#}");
            tracing::warn!("no bmap for this image: {reason}");
            set.add_removal(path);
            skipped(reason)
        }
    }
}

fn skipped(reason: String) -> BmapInfo {
    BmapInfo {
        status: "skipped".into(),
        reason: Some(reason),
        ..BmapInfo::default()
    }
}

/// The derived bmap; `allocation` is the analysis when it was already made.
fn make(
    input: &Input,
    image: &Image,
    allocation: Option<anyhow::Result<bmap::Map>>,
) -> anyhow::Result<(BmapInfo, crate::atomic::AtomicFile)> {
    let map = allocation.unwrap_or_else(|| analyse(image))?;
    let sums = match image {
        Image::Raw(path) => {
            let file = open(path)?;
            // bmaptool checks every range against the .img.xz it writes: a source that
            // changed since it was streamed fails there, loudly; a size change fails here.
            if file.metadata()?.len() != map.image_size {
                anyhow::bail!("the image changed while it was read");
            }
            bmap::checksums(BufReader::with_capacity(1 << 20, file), &map)?
        }
        Image::Xz(path) => {
            // One stream decodes on every core; several (concatenated) only in order.
            let streams = SeekableXz::open(open(path)?)
                .with_context(|| format!("cannot read the index of `{}`", path.display()))?
                .stream_count();
            let file = BufReader::with_capacity(1 << 20, open(path)?);
            if streams == 1 {
                bmap::checksums(crate::xz::mt_decoder(file, input.threads)?, &map)?
            } else {
                bmap::checksums(crate::xz::decoder(file), &map)?
            }
        }
    };
    let how = map.how.join("; ");
    written(
        input,
        &map,
        &sums,
        &how,
        "allocation",
        map.how.clone(),
        None,
    )
}

/// Writes the bmap of `map` and describes it.
fn written(
    input: &Input,
    map: &bmap::Map,
    sums: &[String],
    comment: &str,
    method: &str,
    partitions: Vec<String>,
    pi_gen: Option<PiGenBmapInfo>,
) -> anyhow::Result<(BmapInfo, crate::atomic::AtomicFile)> {
    let text = bmap::render(map, sums, comment);
    let (file, file_ref) = write(&input.paths.bmap, text.as_bytes())?;
    Ok((
        BmapInfo {
            status: "written".into(),
            reason: None,
            file: Some(file_ref),
            method: Some(method.into()),
            blocks: Some(map.blocks_count()),
            mapped_blocks: Some(map.mapped_blocks()),
            partitions,
            pi_gen,
        },
        file,
    ))
}
