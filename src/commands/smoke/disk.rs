//! The disk image: a private sparse copy (the input is never opened for writing) and
//! its MBR partition table.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::atomic::check_interrupted;
use crate::checksum::{Digest, Hashing};
pub use crate::image::mbr::{Partition, parse_mbr};

const CHUNK: usize = 1 << 20;
const HOLE: usize = 64 << 10;

/// Copies `input` (raw `.img`, or `.img.xz` decoded on the fly) to `dest` as a sparse
/// file: runs of zeros become holes, so a mostly empty multi-GB image costs little
/// disk. Returns the digest of the input file as read, to prove it was not changed.
pub fn sparse_copy(input: &Path, dest: &Path) -> anyhow::Result<Digest> {
    let (file, _) = crate::input::open("--image", input, None)?;
    let mut hashed = Hashing::new(io::BufReader::with_capacity(CHUNK, file));
    let xz = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xz"));
    let mut out =
        File::create(dest).with_context(|| format!("cannot create `{}`", dest.display()))?;
    let written = if xz {
        let mut decoder = crate::xz::decoder(&mut hashed);
        copy_sparse(&mut decoder, &mut out).with_context(|| {
            format!(
                "cannot decompress `{}`: it is not a valid or complete .xz file",
                input.display()
            )
        })?
    } else {
        copy_sparse(&mut hashed, &mut out)
            .with_context(|| format!("cannot read `{}`", input.display()))?
    };
    // Read whatever the decoder did not need, so the digest covers the whole file.
    io::copy(&mut hashed, &mut io::sink())
        .with_context(|| format!("cannot read `{}`", input.display()))?;
    out.set_len(written)
        .with_context(|| format!("cannot size `{}`", dest.display()))?;
    out.sync_all().ok();
    Ok(hashed.finish().0)
}

fn copy_sparse(reader: &mut impl Read, out: &mut File) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        check_interrupted()?;
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            return Ok(pos);
        }
        for piece in buf[..filled].chunks(HOLE) {
            if piece.iter().all(|&b| b == 0) {
                out.seek(SeekFrom::Current(i64::try_from(piece.len())?))?;
            } else {
                out.write_all(piece)?;
            }
        }
        pos += filled as u64;
    }
}

/// The SD card model of QEMU's raspi machines only accepts power-of-two sizes.
pub fn pad_to_power_of_two(path: &Path) -> anyhow::Result<(u64, u64)> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    let padded = len.checked_next_power_of_two().unwrap_or(len);
    if padded != len {
        file.set_len(padded)
            .with_context(|| format!("cannot pad `{}`", path.display()))?;
    }
    Ok((len, padded))
}

/// Reads the MBR's primary partitions.
pub fn partitions(image: &Path) -> anyhow::Result<Vec<Partition>> {
    let mut mbr = [0u8; 512];
    let mut f = File::open(image)?;
    let len = f.metadata()?.len();
    if len < 512 {
        bail!(
            "`{}` is not a disk image: it is only {len} bytes",
            image.display()
        );
    }
    f.read_exact(&mut mbr)?;
    parse_mbr(&mbr, len).with_context(|| {
        format!(
            "`{}` is not a Raspberry Pi OS style disk image",
            image.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_keeps_content_and_makes_holes() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.img");
        let mut data = vec![0u8; 8 << 20];
        data[100] = 1;
        data[(6 << 20) + 5] = 2;
        std::fs::write(&src, &data).unwrap();
        let dest = dir.path().join("b.img");
        let d = sparse_copy(&src, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(d.size, 8 << 20);
        assert!(
            std::fs::metadata(&dest).unwrap().blocks() * 512 < 1 << 20,
            "copy is sparse"
        );
        assert_eq!(pad_to_power_of_two(&dest).unwrap(), (8 << 20, 8 << 20));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&dest)
            .unwrap()
            .set_len(9 << 20)
            .unwrap();
        assert_eq!(pad_to_power_of_two(&dest).unwrap(), (9 << 20, 16 << 20));
    }
}
