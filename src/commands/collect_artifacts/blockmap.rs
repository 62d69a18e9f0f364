//! `IMG_NAME.img.bmap`, from the partition table and each file system's allocation
//! data (see [`crate::image::bmap`]), once the image is streamed: the allocation is read
//! at random (raw source, or the .img.xz's index), then the mapped ranges are hashed in
//! one more sequential read (the raw source, or the .img.xz decoded on every core).

use std::io::BufReader;
use std::time::Instant;

use anyhow::Context as _;

use super::Input;
use super::inventory::{Image, open, write};
use crate::atomic::FileSet;
use crate::image::xz_seek::SeekableXz;
use crate::image::{RawImage, ReadAt, bmap};
use crate::model::metadata::BmapInfo;

/// Adds the bmap to `set`, or its removal and why there is none.
pub fn collect(input: &Input, image: &Image, set: &mut FileSet) -> BmapInfo {
    let path = &input.paths.bmap;
    if input.no_bmap {
        set.add_removal(path);
        return skipped("--no-bmap".into());
    }
    let started = Instant::now();
    match make(input, image) {
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

fn make(input: &Input, image: &Image) -> anyhow::Result<(BmapInfo, crate::atomic::AtomicFile)> {
    let (map, sums) = match image {
        Image::Raw(path) => {
            let mut raw = RawImage::new(open(path)?)?;
            let map = bmap::analyse(&mut raw)?;
            let file = open(path)?;
            // bmaptool checks every range against the .img.xz it writes: a source that
            // changed since it was streamed fails there, loudly; a size change fails here.
            if file.metadata()?.len() != map.image_size {
                anyhow::bail!("the image changed while it was read");
            }
            let sums = bmap::checksums(BufReader::with_capacity(1 << 20, file), &map)?;
            (map, sums)
        }
        Image::Xz(path) => {
            let mut xz = SeekableXz::open(open(path)?)
                .with_context(|| format!("cannot read the index of `{}`", path.display()))?;
            let map = bmap::analyse(&mut xz)?;
            let file = BufReader::with_capacity(1 << 20, open(path)?);
            let sums = if xz.stream_count() == 1 {
                bmap::checksums(crate::xz::mt_decoder(file, input.threads)?, &map)?
            } else {
                bmap::checksums(crate::xz::decoder(file), &map)?
            };
            if xz.size() != map.image_size {
                anyhow::bail!("the image changed while it was read");
            }
            (map, sums)
        }
    };
    let text = bmap::render(&map, &sums, &map.how.join("; "));
    let (file, file_ref) = write(&input.paths.bmap, text.as_bytes())?;
    Ok((
        BmapInfo {
            status: "written".into(),
            reason: None,
            file: Some(file_ref),
            method: Some("allocation".into()),
            blocks: Some(map.blocks_count()),
            mapped_blocks: Some(map.mapped_blocks()),
            partitions: map.how,
        },
        file,
    ))
}
