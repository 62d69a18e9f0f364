//! The disk image: a private sparse copy (the input is never opened for writing) and
//! its MBR partition table.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::atomic::check_interrupted;
use crate::checksum::{Digest, Hashing};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub number: u8,
    pub kind: u8,
    pub start: u64,
    pub size: u64,
}

impl Partition {
    pub fn is_fat(&self) -> bool {
        matches!(self.kind, 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e)
    }

    pub fn is_linux(&self) -> bool {
        self.kind == 0x83
    }
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

/// Parses a DOS partition table (Pi OS images use MBR, not GPT).
pub fn parse_mbr(mbr: &[u8; 512], disk_len: u64) -> anyhow::Result<Vec<Partition>> {
    if mbr[510..512] != [0x55, 0xaa] {
        bail!("no MBR partition table (boot signature 55 AA missing)");
    }
    let mut parts = Vec::new();
    for i in 0..4u8 {
        let e = &mbr[446 + 16 * usize::from(i)..][..16];
        let kind = e[4];
        let lba = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
        let sectors = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
        if kind == 0 || sectors == 0 {
            continue;
        }
        if kind == 0xee {
            bail!("the disk uses GPT; Raspberry Pi OS images use an MBR partition table");
        }
        let (start, size) = (lba * 512, sectors * 512);
        if start + size > disk_len {
            bail!(
                "partition {} ends at byte {} but the image has only {disk_len} bytes: it is truncated",
                i + 1,
                start + size
            );
        }
        parts.push(Partition {
            number: i + 1,
            kind,
            start,
            size,
        });
    }
    if parts.is_empty() {
        bail!("the partition table is empty");
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(u8, u32, u32)]) -> [u8; 512] {
        let mut m = [0u8; 512];
        for (i, (kind, lba, n)) in entries.iter().enumerate() {
            let e = &mut m[446 + 16 * i..][..16];
            e[4] = *kind;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
            e[12..16].copy_from_slice(&n.to_le_bytes());
        }
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    #[test]
    fn pi_os_layout() {
        let p = parse_mbr(
            &mbr(&[(0x0c, 8192, 1_048_576), (0x83, 1_056_768, 4_000_000)]),
            4 << 30,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].is_fat() && p[1].is_linux());
        assert_eq!(p[0].start, 8192 * 512);
    }

    #[test]
    fn an_mbr_without_signature_a_gpt_or_a_truncated_table_is_refused() {
        assert!(
            parse_mbr(&[0u8; 512], 1 << 30)
                .unwrap_err()
                .to_string()
                .contains("55 AA")
        );
        assert!(
            parse_mbr(&mbr(&[(0xee, 1, 100)]), 1 << 30)
                .unwrap_err()
                .to_string()
                .contains("GPT")
        );
        assert!(
            parse_mbr(&mbr(&[(0x83, 8192, 1 << 20)]), 1 << 20)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        assert!(parse_mbr(&mbr(&[]), 1 << 20).is_err());
    }

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
