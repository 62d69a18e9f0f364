//! `IMG_NAME.img.bmap`: bmaptool's block map (format 2.0), so `bmaptool copy` writes
//! only the blocks that matter.
//!
//! bmaptool leaves unmapped blocks unwritten on the card, so a block may be left out
//! only when it is provably unused: every byte of it lies in space a file system's own
//! allocation data marks free (FAT tables, ext2/3/4 block bitmaps). Content never
//! decides ("all zeros" is not proof: a zeroed journal or file block must be written).
//! Everything else is mapped: the partition table, gaps between partitions, partitions
//! of any other type, and any file system this reader cannot account for exactly.

use std::io::{self, Read};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use super::mbr::{self, Partition};
use super::{ReadAt, ext4};
use crate::atomic::check_interrupted;

/// bmaptool's block size, and the one every flashing tool expects.
pub const BLOCK: u64 = 4096;

/// The largest image a bmap read from elsewhere may describe (16 TiB).
const MAX_IMAGE: u64 = 1 << 44;

/// Which 4 KiB blocks of the image must be written, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub image_size: u64,
    /// Inclusive `(first, last)` block numbers, ascending, not adjacent.
    pub ranges: Vec<(u64, u64)>,
    /// Of those, the blocks the partition table and the file systems use (the rest lies
    /// in gaps between partitions); for a bmap read from a file, the same as `ranges`.
    pub in_use: Vec<(u64, u64)>,
    /// One line per partition: what its free space was read from.
    pub how: Vec<String>,
}

impl Map {
    pub fn blocks_count(&self) -> u64 {
        self.image_size.div_ceil(BLOCK)
    }

    pub fn mapped_blocks(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a + 1).sum()
    }
}

/// Reads the partition table and each file system's allocation data.
pub fn analyse(image: &mut dyn ReadAt) -> anyhow::Result<Map> {
    let size = image.size();
    let blocks = size.div_ceil(BLOCK);
    let mut sector = [0u8; 512];
    image
        .read_exact_at(0, &mut sector)
        .context("cannot read the partition table")?;
    let parts = mbr::parse_mbr(&sector, size)?;
    // Byte ranges a file system marks free, from every partition it could read.
    let mut free: Vec<(u64, u64)> = Vec::new();
    let mut how = Vec::new();
    for p in &parts {
        let result = if p.is_fat() {
            fat_free(image, p).map(|f| ("FAT", f))
        } else if p.is_linux() {
            ext_free(image, p).map(|f| ("ext4 block bitmaps", f))
        } else {
            Err(anyhow::anyhow!("type {:#04x} is not read", p.kind))
        };
        match result {
            Ok((what, ranges)) => {
                let bytes: u64 = ranges.iter().map(|(a, b)| b - a).sum();
                how.push(format!(
                    "partition {}: {what} ({} MiB free)",
                    p.number,
                    bytes >> 20
                ));
                free.extend(ranges);
            }
            Err(e) => how.push(format!("partition {}: all mapped ({e:#})", p.number)),
        }
    }
    free.sort_unstable();
    // A block is left out only if it lies wholly inside one free byte range.
    let mut unmapped = vec![false; usize::try_from(blocks).unwrap_or(0)];
    for (start, end) in merge(free) {
        let first = start.div_ceil(BLOCK);
        let last = end / BLOCK; // exclusive
        for b in first..last.min(blocks) {
            unmapped[usize::try_from(b).unwrap_or(usize::MAX)] = true;
        }
    }
    // Owned: the partition table's block and every block a partition touches. The rest
    // (gaps between partitions) is mapped too, but no file system uses it.
    let owned = |b: u64| {
        b == 0
            || parts
                .iter()
                .any(|p| b * BLOCK < p.start + p.size && p.start < (b + 1) * BLOCK)
    };
    let ranges = block_runs(&unmapped, |_| true);
    let in_use = block_runs(&unmapped, owned);
    Ok(Map {
        image_size: size,
        ranges,
        in_use,
        how,
    })
}

/// Inclusive runs of the blocks not `unmapped` for which `keep` holds.
fn block_runs(unmapped: &[bool], keep: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (b, &gone) in unmapped.iter().enumerate() {
        let b = b as u64;
        if gone || !keep(b) {
            continue;
        }
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == b => *last = b,
            _ => ranges.push((b, b)),
        }
    }
    ranges
}

fn merge(sorted: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in sorted {
        match out.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

use super::ext4::{le16, le32};

/// Free clusters of a FAT16 or FAT32 file system, as byte ranges of the image. A
/// cluster is free only when every copy of the FAT says so.
fn fat_free(image: &mut dyn ReadAt, p: &Partition) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut bs = [0u8; 512];
    image.read_exact_at(p.start, &mut bs)?;
    if bs[510..512] != [0x55, 0xaa] {
        bail!("no FAT boot sector");
    }
    let sector = le16(&bs, 11);
    let per_cluster = u64::from(bs[13]);
    let reserved = le16(&bs, 14);
    let fats = u64::from(bs[16]);
    let root_entries = le16(&bs, 17);
    let total = match le16(&bs, 19) {
        0 => le32(&bs, 32),
        n => n,
    };
    let fat_sectors = match le16(&bs, 22) {
        0 => le32(&bs, 36),
        n => n,
    };
    if !matches!(sector, 512 | 1024 | 2048 | 4096)
        || !per_cluster.is_power_of_two()
        || reserved == 0
        || !(1..=4).contains(&fats)
        || fat_sectors == 0
    {
        bail!("the FAT boot sector is not one this reader knows");
    }
    let root_sectors = (root_entries * 32).div_ceil(sector);
    let data_start = reserved + fats * fat_sectors + root_sectors;
    if total <= data_start || total * sector > p.size {
        bail!("the FAT geometry does not fit its partition");
    }
    let clusters = (total - data_start) / per_cluster;
    // Linux (and so the Pi) calls a FAT FAT32 when its 16-bit FAT size is zero, whatever
    // its cluster count; the specification goes by the count. Read only what both agree
    // on: a small FAT32 read as FAT16 would take half-entries for clusters.
    let fat32 = le16(&bs, 22) == 0 && le32(&bs, 36) != 0;
    let entry = match (clusters, fat32) {
        (0..4085, false) => bail!("FAT12 is not read"),
        (4085..65525, false) => 2u64,
        (65525.., true) => 4,
        _ => bail!(
            "a FAT with {clusters} clusters and a {}-bit FAT size field: its type is ambiguous",
            if fat32 { 32 } else { 16 }
        ),
    };
    if (clusters + 2) * entry > fat_sectors * sector {
        bail!("the FAT is smaller than its cluster count");
    }
    let fat_len = usize::try_from((clusters + 2) * entry)?;
    let mut used = vec![false; usize::try_from(clusters + 2)?];
    let mut table = vec![0u8; fat_len];
    for i in 0..fats {
        image.read_exact_at(p.start + (reserved + i * fat_sectors) * sector, &mut table)?;
        for (c, u) in used.iter_mut().enumerate().skip(2) {
            let v = if entry == 2 {
                le16(&table, c * 2)
            } else {
                le32(&table, c * 4) & 0x0fff_ffff
            };
            *u |= v != 0;
        }
    }
    let cluster_bytes = per_cluster * sector;
    let data = p.start + data_start * sector;
    Ok(runs(
        &used[2..],
        |c| data + c * cluster_bytes,
        cluster_bytes,
    ))
}

/// Byte ranges of the runs of `false` in `used`, unit `i` at `at(i)`, each `unit` long.
fn runs(used: &[bool], at: impl Fn(u64) -> u64, unit: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &u) in used.iter().chain([&true]).enumerate() {
        let i = i as u64;
        match (u, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((at(s), at(s) + (i - s) * unit));
                start = None;
            }
            _ => {}
        }
    }
    out
}

// The feature bits whose meaning for allocation this reader knows: each only changes
// how files are stored, not which blocks the bitmaps describe. Any other bit (a journal
// to replay, meta_bg, bigalloc's clusters, sparse_super2's backups, snapshots, shared
// blocks, one unknown) keeps the partition all mapped.
const COMPAT_KNOWN: u64 =
    0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x400 | 0x800 | 0x1000;
const INCOMPAT_KNOWN: u64 = 0x2
    | 0x40
    | 0x80
    | 0x100
    | 0x200
    | 0x400
    | 0x1000
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x10000
    | 0x20000;
const RO_COMPAT_KNOWN: u64 =
    0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x400 | 0x1000 | 0x2000 | 0x8000 | 0x10000;
const RO_COMPAT_SPARSE_SUPER: u64 = 0x1;
const RO_COMPAT_GDT_CSUM: u64 = 0x10;
const RO_COMPAT_METADATA_CSUM: u64 = 0x400;
const BG_BLOCK_UNINIT: u64 = 0x2;
const STATE_CLEAN: u64 = 0x1;
const STATE_ERRORS: u64 = 0x2;

/// Free blocks of an ext2/3/4 file system per its block bitmaps, as byte ranges.
fn ext_free(image: &mut dyn ReadAt, p: &Partition) -> anyhow::Result<Vec<(u64, u64)>> {
    let geo = ext4::geometry(image, p)?;
    if ext4::meta_bg(&geo) {
        bail!("meta_bg group descriptors are not read");
    }
    for (what, bits, known) in [
        ("compat", geo.compat, COMPAT_KNOWN),
        ("incompat", geo.incompat, INCOMPAT_KNOWN),
        ("ro_compat", geo.ro_compat, RO_COMPAT_KNOWN),
    ] {
        if bits & !known != 0 {
            bail!(
                "{what} features {:#x} are not ones whose allocation this reader knows (a journal to replay, bigalloc, sparse_super2, …)",
                bits & !known
            );
        }
    }
    if geo.state & STATE_CLEAN == 0 || geo.state & STATE_ERRORS != 0 {
        bail!("the file system was not cleanly unmounted or has errors: its bitmaps may be stale");
    }
    let ext4::Geometry {
        bs,
        count,
        first_data,
        per_group,
        groups,
        desc,
        is64,
        ro_compat: ro,
        inodes_per_group,
        inode_size,
        reserved_gdt,
        gdt_blocks,
        ..
    } = geo;
    let uninit_valid = ro & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0;
    // Fits: `geometry` checked the table lies inside the file system, itself inside the
    // partition.
    let mut gdt = vec![0u8; usize::try_from(gdt_blocks * bs)?];
    image.read_exact_at(p.start + (first_data + 1) * bs, &mut gdt)?;
    let has_backup = |g: u64| {
        if ro & RO_COMPAT_SPARSE_SUPER == 0 || g <= 1 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&base| {
            let mut n = base;
            while n < g {
                n *= base;
            }
            n == g
        })
    };
    let mut used = vec![false; usize::try_from(count)?];
    // Blocks before the first group (the boot block with 1 KiB blocks) are in use.
    for u in used.iter_mut().take(usize::try_from(first_data)?) {
        *u = true;
    }
    let mut bitmap = vec![0u8; usize::try_from(bs)?];
    let table_blocks = (inodes_per_group * inode_size).div_ceil(bs);
    for g in 0..groups {
        check_interrupted()?;
        let d = &gdt[usize::try_from(g * desc)?..][..usize::try_from(desc)?];
        let hi = |at: usize| {
            if is64 && desc >= 64 {
                ext4::le32(d, at) << 32
            } else {
                0
            }
        };
        let block_bitmap = ext4::le32(d, 0x00) | hi(0x20);
        let inode_bitmap = ext4::le32(d, 0x04) | hi(0x24);
        let inode_table = ext4::le32(d, 0x08) | hi(0x28);
        let flags = ext4::le16(d, 0x12);
        let start = first_data + g * per_group;
        let end = (start + per_group).min(count);
        if uninit_valid && flags & BG_BLOCK_UNINIT != 0 {
            // No bitmap on disk: in use are exactly what the kernel's
            // ext4_init_block_bitmap marks: this group's superblock and descriptor
            // backups, and its own bitmaps and inode table where they lie in it.
            let mut mark = |from: u64, n: u64| {
                let to = from.saturating_add(n).min(end);
                for b in from.max(start)..to {
                    used[usize::try_from(b).unwrap_or(usize::MAX)] = true;
                }
            };
            if has_backup(g) {
                mark(start, 1 + gdt_blocks + reserved_gdt);
            }
            mark(block_bitmap, 1);
            mark(inode_bitmap, 1);
            mark(inode_table, table_blocks);
            continue;
        }
        if block_bitmap >= count {
            bail!("group {g}'s block bitmap lies outside the file system");
        }
        image.read_exact_at(p.start + block_bitmap * bs, &mut bitmap)?;
        for i in 0..end - start {
            let bit = (bitmap[usize::try_from(i / 8)?] >> (i % 8)) & 1;
            used[usize::try_from(start + i)?] = bit == 1;
        }
    }
    Ok(runs(&used, |b| p.start + b * bs, bs))
}

/// The SHA-256 of each range, from the image's bytes read once in order.
pub fn checksums(mut image: impl Read, map: &Map) -> anyhow::Result<Vec<String>> {
    let mut sums = Vec::with_capacity(map.ranges.len());
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    let skip = |image: &mut dyn Read, n: u64| -> io::Result<()> {
        let copied = io::copy(&mut image.take(n), &mut io::sink())?;
        if copied < n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    };
    for &(first, last) in &map.ranges {
        let start = first * BLOCK;
        let end = ((last + 1) * BLOCK).min(map.image_size);
        skip(&mut image, start - pos).context("the image ended early")?;
        let mut h = Sha256::new();
        let mut left = end - start;
        while left > 0 {
            check_interrupted()?;
            let n = usize::try_from(left.min(buf.len() as u64))?;
            image
                .read_exact(&mut buf[..n])
                .context("the image ended early")?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        sums.push(crate::checksum::hex(&h.finalize()));
        pos = end;
    }
    Ok(sums)
}

/// A bmap another tool wrote (pi-gen runs `bmaptool create` when bmaptool is
/// installed), checked as far as its own text allows: bmaptool's format 2.x, 4 KiB
/// blocks, SHA-256 checksums, its `BmapFileChecksum` right, its ranges ascending, inside
/// the image and adding up to its counts. Whether each range holds what its checksum
/// says is checked against the image by [`Verifier`].
pub fn parse(text: &str) -> anyhow::Result<(Map, Vec<String>)> {
    // Two nodes per range and some whitespace: a node limit well above any real image's
    // keeps a forged file from costing memory out of proportion.
    let options = roxmltree::ParsingOptions {
        nodes_limit: 1 << 22,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options)
        .context("it is not well-formed XML")?;
    let root = doc.root_element();
    let version = root.attribute("version").unwrap_or_default();
    if root.tag_name().name() != "bmap" || !version.starts_with("2.") {
        bail!("it is not a bmap of format 2.x (bmaptool 3.x and later)");
    }
    let field = |name: &str| -> anyhow::Result<&str> {
        let mut found = root.children().filter(|n| n.has_tag_name(name));
        match (found.next(), found.next()) {
            (Some(n), None) => Ok(n.text().unwrap_or_default().trim()),
            (None, _) => bail!("it has no {name}"),
            (Some(_), Some(_)) => bail!("it has {name} twice"),
        }
    };
    let number = |name: &str| -> anyhow::Result<u64> {
        field(name)?
            .parse()
            .with_context(|| format!("its {name} is not a number"))
    };
    let hex64 = |v: &str| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
    let image_size = number("ImageSize")?;
    if image_size > MAX_IMAGE {
        bail!("its ImageSize is larger than any SD card");
    }
    if number("BlockSize")? != BLOCK {
        bail!("its BlockSize is not {BLOCK}");
    }
    if field("ChecksumType")? != "sha256" {
        bail!("its ChecksumType is not sha256");
    }
    let file_sum = field("BmapFileChecksum")?;
    if !hex64(file_sum) {
        bail!("its BmapFileChecksum is not a SHA-256");
    }
    // As bmaptool checks it: the file's digest with that value replaced by zeros.
    let zeroed = text.replacen(file_sum, &"0".repeat(64), 1);
    if crate::checksum::of_bytes(zeroed.as_bytes()).sha256 != file_sum.to_ascii_lowercase() {
        bail!("its BmapFileChecksum does not match the file: it was changed after it was made");
    }
    let blocks = image_size.div_ceil(BLOCK);
    if number("BlocksCount")? != blocks {
        bail!("its BlocksCount does not match its ImageSize");
    }
    let mut map = root.children().filter(|n| n.has_tag_name("BlockMap"));
    let (Some(block_map), None) = (map.next(), map.next()) else {
        bail!("it has not exactly one BlockMap");
    };
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut sums = Vec::new();
    for r in block_map.children().filter(roxmltree::Node::is_element) {
        if !r.has_tag_name("Range") {
            bail!(
                "its BlockMap holds a `{}`",
                r.tag_name().name().escape_debug()
            );
        }
        let sum = r.attribute("chksum").unwrap_or_default();
        if !hex64(sum) {
            bail!("a range has no SHA-256 chksum");
        }
        let span = r.text().unwrap_or_default().trim();
        let (a, b) = span.split_once('-').unwrap_or((span, span));
        let (Ok(first), Ok(last)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) else {
            bail!("range `{}` is not FIRST-LAST", span.escape_debug());
        };
        if first > last || last >= blocks || ranges.last().is_some_and(|&(_, l)| first <= l) {
            bail!("range {first}-{last} is out of order or outside the image");
        }
        ranges.push((first, last));
        sums.push(sum.to_ascii_lowercase());
    }
    let map = Map {
        image_size,
        in_use: ranges.clone(),
        ranges,
        how: vec!["pi-gen's bmaptool".to_owned()],
    };
    if number("MappedBlocksCount")? != map.mapped_blocks() {
        bail!("its MappedBlocksCount does not match its ranges");
    }
    Ok((map, sums))
}

/// The blocks `need` uses that `have` leaves out: how many, and the first of them.
pub fn uncovered(need: &Map, have: &Map) -> Option<(u64, u64)> {
    let mut missing = 0u64;
    let mut first = None;
    let mut j = 0;
    for &(a, b) in &need.in_use {
        let mut at = a;
        while at <= b {
            // Skip the ranges of `have` that end before `at`.
            while j < have.ranges.len() && have.ranges[j].1 < at {
                j += 1;
            }
            match have.ranges.get(j) {
                Some(&(ha, hb)) if ha <= at => at = hb.saturating_add(1),
                next => {
                    let gap_end = next.map_or(b, |&(ha, _)| (ha - 1).min(b));
                    missing += gap_end - at + 1;
                    first.get_or_insert(at);
                    at = gap_end.saturating_add(1);
                }
            }
        }
    }
    first.map(|f| (missing, f))
}

/// Checks a bmap's range checksums against the raw image as it streams past, in order,
/// within the one pass that compresses it.
pub struct Verifier {
    ranges: Vec<(u64, u64)>,
    sums: Vec<String>,
    image_size: u64,
    pos: u64,
    next: usize,
    hasher: Sha256,
    bad: Option<String>,
}

impl Verifier {
    pub fn new(map: &Map, sums: &[String]) -> Self {
        Self {
            ranges: map.ranges.clone(),
            sums: sums.to_vec(),
            image_size: map.image_size,
            pos: 0,
            next: 0,
            hasher: Sha256::new(),
            bad: None,
        }
    }

    fn span(&self, i: usize) -> (u64, u64) {
        let (a, b) = self.ranges[i];
        (a * BLOCK, ((b + 1) * BLOCK).min(self.image_size))
    }

    /// The next bytes of the raw image.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.next < self.ranges.len() && self.bad.is_none() {
            let (start, end) = self.span(self.next);
            if self.pos < start {
                let skip = usize::try_from((start - self.pos).min(bytes.len() as u64))
                    .unwrap_or(bytes.len());
                bytes = &bytes[skip..];
                self.pos += skip as u64;
                continue;
            }
            let take =
                usize::try_from((end - self.pos).min(bytes.len() as u64)).unwrap_or(bytes.len());
            self.hasher.update(&bytes[..take]);
            bytes = &bytes[take..];
            self.pos += take as u64;
            if self.pos == end {
                let sum = crate::checksum::hex(&std::mem::take(&mut self.hasher).finalize());
                if sum != self.sums[self.next] {
                    let (a, b) = self.ranges[self.next];
                    self.bad = Some(format!(
                        "range {a}-{b} does not hold what its checksum says"
                    ));
                }
                self.next += 1;
            }
        }
        self.pos += bytes.len() as u64;
    }

    /// After the whole image: every range was seen and matched, and the image is the
    /// size the bmap says.
    pub fn finish(self, raw_size: u64) -> anyhow::Result<()> {
        if let Some(bad) = self.bad {
            bail!("{bad}");
        }
        if raw_size != self.image_size {
            bail!(
                "it is for an image of {} bytes, not this one of {raw_size}",
                self.image_size
            );
        }
        if self.next != self.ranges.len() {
            bail!("the image ended before its last range");
        }
        Ok(())
    }
}

/// `text` made safe inside an XML comment, which must not hold `--`.
fn xml_comment_text(text: &str) -> String {
    let mut t = text.to_owned();
    while t.contains("--") {
        t = t.replace("--", "- -");
    }
    t
}

/// The bmap file, with `BmapFileChecksum` computed as bmaptool does: the SHA-256 of
/// the file with that field's value set to 64 zeros.
pub fn render(map: &Map, sums: &[String], how: &str) -> String {
    let mut s = String::from("<?xml version=\"1.0\" ?>\n");
    s.push_str(&format!(
        "<!-- Block map of the image for bmaptool (https://github.com/yoctoproject/bmaptool):\n     \
         only the mapped blocks need to be written. Written by pi-image-{}; free space read from\n     \
         {}. -->\n",
        env!("CARGO_PKG_VERSION"),
        xml_comment_text(how)
    ));
    let mapped = map.mapped_blocks();
    let pct = if map.blocks_count() == 0 {
        0.0
    } else {
        mapped as f64 * 100.0 / map.blocks_count() as f64
    };
    s.push_str("<bmap version=\"2.0\">\n");
    s.push_str(&format!(
        "    <ImageSize> {} </ImageSize>\n",
        map.image_size
    ));
    s.push_str(&format!("    <BlockSize> {BLOCK} </BlockSize>\n"));
    s.push_str(&format!(
        "    <BlocksCount> {} </BlocksCount>\n",
        map.blocks_count()
    ));
    s.push_str(&format!(
        "    <!-- {pct:.1}% of the image is mapped -->\n    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n"
    ));
    s.push_str("    <ChecksumType> sha256 </ChecksumType>\n");
    let zeros = "0".repeat(64);
    s.push_str(&format!(
        "    <BmapFileChecksum> {zeros} </BmapFileChecksum>\n"
    ));
    s.push_str("    <BlockMap>\n");
    for (&(a, b), sum) in map.ranges.iter().zip(sums) {
        if a == b {
            s.push_str(&format!("        <Range chksum=\"{sum}\"> {a} </Range>\n"));
        } else {
            s.push_str(&format!(
                "        <Range chksum=\"{sum}\"> {a}-{b} </Range>\n"
            ));
        }
    }
    s.push_str("    </BlockMap>\n</bmap>\n");
    let digest = crate::checksum::of_bytes(s.as_bytes()).sha256;
    s.replacen(&zeros, &digest, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_byte_ranges_unmap_only_whole_blocks() {
        let used = [true, false, false, true, false];
        assert_eq!(runs(&used, |i| 100 + i * 10, 10), [(110, 130), (140, 150)]);
        assert_eq!(merge(vec![(0, 10), (5, 20), (30, 40)]), [(0, 20), (30, 40)]);
    }

    #[test]
    fn the_file_checksum_is_over_the_file_with_zeros_in_its_place() {
        let map = Map {
            image_size: 3 * BLOCK + 100,
            ranges: vec![(0, 1), (3, 3)],
            in_use: vec![],
            how: vec![],
        };
        let text = render(&map, &["a".repeat(64), "b".repeat(64)], "test");
        let line = text
            .lines()
            .find(|l| l.contains("BmapFileChecksum"))
            .unwrap();
        let sum = line.split_whitespace().nth(1).unwrap();
        let zeroed = text.replacen(sum, &"0".repeat(64), 1);
        assert_eq!(crate::checksum::of_bytes(zeroed.as_bytes()).sha256, sum);
        assert!(text.contains("<BlocksCount> 4 </BlocksCount>"));
        assert!(text.contains("<MappedBlocksCount> 3 </MappedBlocksCount>"));
        assert!(text.contains("> 0-1 </Range>") && text.contains("> 3 </Range>"));
    }

    #[test]
    fn a_bmap_we_render_parses_back_and_a_changed_one_is_refused() {
        let image: Vec<u8> = (0..5 * BLOCK + 10).map(|i| (i % 251) as u8).collect();
        let map = Map {
            image_size: image.len() as u64,
            ranges: vec![(0, 1), (3, 5)],
            in_use: vec![],
            how: vec![],
        };
        let sums = checksums(&image[..], &map).unwrap();
        let text = render(&map, &sums, "test");
        let (parsed, parsed_sums) = parse(&text).unwrap();
        assert_eq!(
            (parsed.image_size, &parsed.ranges),
            (map.image_size, &map.ranges)
        );
        assert_eq!(parsed_sums, sums);
        for (from, to) in [
            ("> 3-5 </Range>", "> 3-6 </Range>"),
            ("<BlockSize> 4096", "<BlockSize> 512"),
            ("<bmap version=\"2.0\">", "<bmap version=\"1.4\">"),
        ] {
            assert!(parse(&text.replace(from, to)).is_err(), "{to}");
        }
        assert!(parse("<!DOCTYPE x [<!ENTITY a \"b\">]><bmap version=\"2.0\"/>").is_err());
    }

    #[test]
    fn the_verifier_checks_each_range_as_the_image_streams_past() {
        let image: Vec<u8> = (0..5 * BLOCK + 10).map(|i| (i % 251) as u8).collect();
        let map = Map {
            image_size: image.len() as u64,
            ranges: vec![(1, 1), (3, 5)],
            in_use: vec![],
            how: vec![],
        };
        let sums = checksums(&image[..], &map).unwrap();
        let feed = |img: &[u8], chunk: usize| {
            let mut v = Verifier::new(&map, &sums);
            for c in img.chunks(chunk) {
                v.update(c);
            }
            v.finish(img.len() as u64)
        };
        for chunk in [1, 7, 4096, 1 << 20] {
            assert!(feed(&image, chunk).is_ok(), "{chunk}");
        }
        let mut changed = image.clone();
        changed[10] ^= 1; // block 0: not mapped, not checked
        assert!(feed(&changed, 999).is_ok());
        changed[4 * 4096] ^= 1; // block 4: mapped
        assert!(feed(&changed, 999).unwrap_err().to_string().contains("3-5"));
        assert!(feed(&image[..3 * 4096], 999).is_err());
    }

    #[test]
    fn uncovered_blocks_are_counted_from_the_first() {
        let map = |ranges: &[(u64, u64)]| Map {
            image_size: 100 * BLOCK,
            ranges: ranges.to_vec(),
            in_use: ranges.to_vec(),
            how: vec![],
        };
        let need = map(&[(0, 9), (20, 29)]);
        assert_eq!(uncovered(&need, &map(&[(0, 29)])), None);
        assert_eq!(uncovered(&need, &map(&[(0, 9), (20, 29)])), None);
        assert_eq!(uncovered(&need, &map(&[])), Some((20, 0)));
        assert_eq!(
            uncovered(&need, &map(&[(0, 4), (6, 9), (22, 40)])),
            Some((3, 5))
        );
        assert_eq!(uncovered(&need, &map(&[(1, 99)])), Some((1, 0)));
    }
}
