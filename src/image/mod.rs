//! Reading a disk image without mounting it, root or a raw copy: its partition table
//! ([`mbr`]), random access into an `.img.xz` ([`xz_seek`]), and its root file system
//! ([`rootfs`], ext4 read in user space), and its block map for bmaptool ([`bmap`]).

pub mod bmap;
pub mod ext4;
pub mod mbr;
pub mod rootfs;
pub mod xz_seek;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// Random access to the bytes of a disk image.
pub trait ReadAt {
    /// The image's size in bytes.
    fn size(&self) -> u64;
    /// Fills `dst` from `offset`; an error if the image ends first.
    fn read_exact_at(&mut self, offset: u64, dst: &mut [u8]) -> io::Result<()>;
}

/// A raw `.img` file.
pub struct RawImage {
    file: File,
    size: u64,
}

impl RawImage {
    pub fn new(file: File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(Self { file, size })
    }
}

impl ReadAt for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&mut self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        crate::atomic::check_interrupted().map_err(io::Error::other)?;
        self.file.read_exact_at(dst, offset)
    }
}

/// One partition of an image, as a device of its own: reads outside it are errors.
pub struct PartitionReader {
    image: Box<dyn ReadAt>,
    start: u64,
    size: u64,
}

impl PartitionReader {
    pub fn new(image: Box<dyn ReadAt>, part: &mbr::Partition) -> Self {
        Self {
            image,
            start: part.start,
            size: part.size,
        }
    }
}

impl ext4_view::Ext4Read for PartitionReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        if start_byte
            .checked_add(dst.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err("read past the end of the partition".into());
        }
        Ok(self.image.read_exact_at(self.start + start_byte, dst)?)
    }
}
