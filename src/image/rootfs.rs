//! The image's root file system, read in user space (ext4-view): no mount, no root,
//! no loop device. Symlinks are followed inside the image only; nothing of the host is
//! ever reached.

use anyhow::{Context as _, bail};
use ext4_view::Ext4;

use super::mbr::{self, Partition};
use super::{PartitionReader, ReadAt};

/// ext4's superblock magic, at byte 56 of the superblock (byte 1024 of the partition).
const EXT_MAGIC: [u8; 2] = [0x53, 0xef];

pub struct RootFs {
    fs: Ext4,
    pub partition: Partition,
}

impl RootFs {
    /// Opens the root file system: the first Linux partition, which must be ext2/3/4.
    /// The error says why not (no partition table, no Linux partition, not ext4).
    pub fn open(mut image: Box<dyn ReadAt>) -> anyhow::Result<Self> {
        let size = image.size();
        if size < 512 {
            bail!("the image is only {size} bytes: it has no partition table");
        }
        let mut sector = [0u8; 512];
        image
            .read_exact_at(0, &mut sector)
            .context("cannot read the partition table")?;
        let parts = mbr::parse_mbr(&sector, size)?;
        let Some(root) = parts.iter().find(|p| p.is_linux()).copied() else {
            bail!(
                "the partition table has no Linux (type 83) partition: there is no root file system to read"
            );
        };
        let mut magic = [0u8; 2];
        if root.size < 2048 {
            bail!("partition {} is too small for a file system", root.number);
        }
        image
            .read_exact_at(root.start + 1024 + 56, &mut magic)
            .context("cannot read the root partition's superblock")?;
        if magic != EXT_MAGIC {
            bail!(
                "partition {} (the root file system) is not ext4: only ext2/3/4 root file systems can be read",
                root.number
            );
        }
        // ext4-view sizes its group table from the superblock before reading anything
        // else: a forged block count must not become a huge allocation.
        super::ext4::geometry(image.as_mut(), &root).with_context(|| {
            format!(
                "partition {} has an ext4 signature but its superblock is not valid",
                root.number
            )
        })?;
        let fs = Ext4::load(Box::new(PartitionReader::new(image, &root))).map_err(|e| {
            anyhow::anyhow!(
                "partition {} has an ext4 signature but cannot be read as ext4: {e}",
                root.number
            )
        })?;
        Ok(Self {
            fs,
            partition: root,
        })
    }

    /// A regular file's contents (symlinks followed within the image), `None` if there
    /// is nothing at `path`. A file larger than `max` is an error rather than a
    /// surprise allocation.
    pub fn read(&self, path: &str, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
        match self.fs.exists(path) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => bail!("cannot look up `{path}` in the image: {e}"),
        }
        let meta = self
            .fs
            .metadata(path)
            .map_err(|e| anyhow::anyhow!("cannot stat `{path}` in the image: {e}"))?;
        if meta.len() > max {
            bail!(
                "`{path}` in the image is {} bytes; more than the {max} expected",
                meta.len()
            );
        }
        self.fs
            .read(path)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("cannot read `{path}` in the image: {e}"))
    }

    /// The names in a directory, sorted; empty if there is no such directory.
    pub fn list(&self, path: &str) -> anyhow::Result<Vec<String>> {
        if !matches!(self.fs.exists(path), Ok(true)) {
            return Ok(Vec::new());
        }
        let dir = match self.fs.read_dir(path) {
            Ok(d) => d,
            Err(ext4_view::Ext4Error::NotADirectory) => return Ok(Vec::new()),
            Err(e) => bail!("cannot list `{path}` in the image: {e}"),
        };
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| anyhow::anyhow!("cannot list `{path}`: {e}"))?;
            let name = entry.file_name();
            if let Ok(s) = name.as_str()
                && s != "."
                && s != ".."
            {
                names.push(s.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}
