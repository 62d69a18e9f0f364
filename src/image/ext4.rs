//! An ext2/3/4 superblock's geometry, checked before anything is sized from it: the
//! bmap reads the group descriptors and bitmaps by it, and the SBOM's reader (ext4-view)
//! sizes its group table by it.

use anyhow::bail;

use super::ReadAt;
use super::mbr::Partition;

const INCOMPAT_META_BG: u64 = 0x10;
const INCOMPAT_64BIT: u64 = 0x80;

/// Where the superblock's fields say the file system's pieces are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Block size in bytes.
    pub bs: u64,
    pub count: u64,
    pub first_data: u64,
    pub per_group: u64,
    pub groups: u64,
    /// Group descriptor size.
    pub desc: u64,
    pub is64: bool,
    pub compat: u64,
    pub incompat: u64,
    pub ro_compat: u64,
    /// `s_state`: bit 0 clean, bit 1 errors.
    pub state: u64,
    pub inodes_per_group: u64,
    pub inode_size: u64,
    pub reserved_gdt: u64,
    /// Blocks the group descriptor table takes.
    pub gdt_blocks: u64,
}

pub fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

pub fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Reads and checks the superblock of the file system on `p`: every size it gives fits
/// the partition, so nothing read or allocated from it can exceed the partition's size.
pub fn geometry(image: &mut dyn ReadAt, p: &Partition) -> anyhow::Result<Geometry> {
    let mut sb = [0u8; 1024];
    if p.size < 2048 {
        bail!("the partition is too small for an ext2/3/4 file system");
    }
    image.read_exact_at(p.start + 1024, &mut sb)?;
    if sb[56..58] != [0x53, 0xef] {
        bail!("no ext2/3/4 superblock");
    }
    let log = le32(&sb, 0x18);
    if log > 6 {
        bail!("block size 2^{} is not valid", log.saturating_add(10));
    }
    let bs = 1024u64 << log;
    let incompat = le32(&sb, 0x60);
    let is64 = incompat & INCOMPAT_64BIT != 0;
    let count = le32(&sb, 0x04) | if is64 { le32(&sb, 0x150) << 32 } else { 0 };
    let first_data = le32(&sb, 0x14);
    let per_group = le32(&sb, 0x20);
    let inodes_per_group = le32(&sb, 0x28);
    let inode_size = if le32(&sb, 0x4c) == 0 {
        128
    } else {
        le16(&sb, 0x58)
    };
    let desc = if is64 { le16(&sb, 0xfe) } else { 32 };
    // As the kernel's ext4_fill_super checks them.
    let fits = count.checked_mul(bs).is_some_and(|bytes| bytes <= p.size);
    if !fits || count == 0 {
        bail!("the ext4 block count does not fit its partition");
    }
    if first_data != u64::from(bs == 1024) {
        bail!("the ext4 first data block is {first_data}, not what its block size implies");
    }
    if per_group < 8 || !per_group.is_multiple_of(8) || per_group > bs * 8 {
        bail!("the ext4 blocks per group ({per_group}) is not valid");
    }
    if !(32..=1024).contains(&desc) || !desc.is_power_of_two() {
        bail!("the ext4 group descriptor size ({desc}) is not valid");
    }
    if inodes_per_group == 0 || inodes_per_group > bs * 8 {
        bail!("the ext4 inodes per group ({inodes_per_group}) is not valid");
    }
    if inode_size < 128 || inode_size > bs || !inode_size.is_power_of_two() {
        bail!("the ext4 inode size ({inode_size}) is not valid");
    }
    let groups = (count - first_data).div_ceil(per_group);
    let gdt_blocks = (groups * desc).div_ceil(bs);
    let reserved_gdt = le16(&sb, 0xce);
    if first_data + 1 + gdt_blocks + reserved_gdt > count {
        bail!("the ext4 group descriptors do not fit the file system");
    }
    Ok(Geometry {
        bs,
        count,
        first_data,
        per_group,
        groups,
        desc,
        is64,
        compat: le32(&sb, 0x5c),
        incompat,
        ro_compat: le32(&sb, 0x64),
        state: le16(&sb, 0x3a),
        inodes_per_group,
        inode_size,
        reserved_gdt,
        gdt_blocks,
    })
}

/// Whether descriptors are laid out per meta group rather than in one table.
pub fn meta_bg(g: &Geometry) -> bool {
    g.incompat & INCOMPAT_META_BG != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl ReadAt for Mem {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&mut self, offset: u64, dst: &mut [u8]) -> std::io::Result<()> {
            let at = usize::try_from(offset).unwrap();
            dst.copy_from_slice(&self.0[at..at + dst.len()]);
            Ok(())
        }
    }

    /// A 64 MiB partition holding a plausible 4 KiB-block superblock.
    fn image(edit: impl FnOnce(&mut [u8])) -> (Mem, Partition) {
        let mut m = vec![0u8; 4096];
        let sb = &mut m[1024..2048];
        sb[56..58].copy_from_slice(&[0x53, 0xef]);
        sb[0x18..0x1c].copy_from_slice(&2u32.to_le_bytes()); // 4 KiB
        sb[0x04..0x08].copy_from_slice(&16384u32.to_le_bytes());
        sb[0x20..0x24].copy_from_slice(&32768u32.to_le_bytes());
        sb[0x28..0x2c].copy_from_slice(&8192u32.to_le_bytes());
        sb[0x4c..0x50].copy_from_slice(&1u32.to_le_bytes());
        sb[0x58..0x5a].copy_from_slice(&256u16.to_le_bytes());
        edit(sb);
        let p = Partition {
            number: 2,
            kind: 0x83,
            start: 0,
            size: 64 << 20,
        };
        (Mem(m), p)
    }

    #[test]
    fn a_plausible_superblock_is_read() {
        let (mut m, p) = image(|_| {});
        let g = geometry(&mut m, &p).unwrap();
        assert_eq!((g.bs, g.count, g.groups, g.gdt_blocks), (4096, 16384, 1, 1));
    }

    #[test]
    fn sizes_that_do_not_fit_the_partition_are_refused_before_anything_is_sized() {
        // (what, offset in the superblock, bytes written there)
        let cases: [(&str, usize, &[u8]); 7] = [
            ("block count", 0x04, &[0xff; 4]),
            ("blocks per group", 0x20, &[1, 0, 0, 0]),
            ("first data block", 0x14, &[9, 0, 0, 0]),
            ("inode size", 0x58, &[0, 0]),
            ("inodes per group", 0x28, &[0, 0, 0, 0]),
            ("descriptor size, 64bit", 0x60, &[0x80]),
            ("block size", 0x18, &[7, 0, 0, 0]),
        ];
        for (what, at, bytes) in cases {
            // With 64bit set the descriptor size field (0xfe) is read: 0 is not valid.
            let (mut m, p) = image(|sb| sb[at..at + bytes.len()].copy_from_slice(bytes));
            let e = geometry(&mut m, &p).unwrap_err().to_string();
            assert!(
                e.contains("not valid") || e.contains("does not fit") || e.contains("not what"),
                "{what}: {e}"
            );
        }
    }
}
