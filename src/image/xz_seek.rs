//! Random access into a finished `.img.xz` through the `.xz` index, so the root
//! filesystem can be read (for the SBOM) without a raw copy of the image on disk.
//!
//! A multi-threaded xz encoder (ours, and pi-gen's `xz -T0`) cuts the stream into
//! independent blocks (24 MiB of image each at preset 6) and lists them in the index at
//! the end of the file. A read decodes only the block it falls in, from that block's
//! start; a cursor left in the block makes the next read further on cheap, and a small
//! page cache serves re-reads (a file system's metadata is read many times). Memory is
//! bounded by the cache, whatever the image or block size.
//!
//! Only what the single pass already proved is relied on: that pass decoded the whole
//! file with liblzma, checks included. Here every offset and size read from the file is
//! still bounds-checked, since the file is read again.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

use liblzma::stream::{Action, Filters, Status, Stream};

use super::ReadAt;
use crate::atomic::check_interrupted;

/// Cache page: a few file-system blocks, so neighbouring reads hit.
const PAGE: usize = 256 << 10;
/// Pages kept (16 MiB).
const PAGES: usize = 64;
/// The index of a multi-GB image has a few hundred records; more than this is not an
/// image's.
const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    /// Where the block (its header) starts in the file.
    file_offset: u64,
    /// Header + compressed data + check, as the index records it.
    unpadded: u64,
    check_size: u64,
    /// Where its data starts in the image, and how much it holds.
    image_offset: u64,
    image_size: u64,
}

/// A decoder positioned inside one block.
struct Cursor {
    block: usize,
    stream: Stream,
    /// Next compressed byte to feed (file offset) and where the block's data ends.
    next_in: u64,
    end_in: u64,
    /// Image offset of the next byte the decoder will produce.
    pos: u64,
}

/// Reads an `.xz` file as the image it holds, at any offset.
pub struct SeekableXz {
    file: File,
    blocks: Vec<Block>,
    streams: usize,
    size: u64,
    cursor: Option<Cursor>,
    /// (page number, bytes), most recently used first.
    cache: Vec<(u64, Vec<u8>)>,
    /// Bytes decoded so far, and the most this reader may decode: a pathological file
    /// (one huge block read backwards) is given up on instead of taking hours.
    decoded: u64,
    budget: u64,
}

impl SeekableXz {
    /// Reads the index (every stream's, for concatenated files) from the end of `file`.
    pub fn open(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let mut streams = Vec::new();
        let mut end = len;
        while end > 0 {
            // Stream padding: zero words between or after streams.
            while end >= 4 && read_array::<4>(&file, end - 4)? == [0; 4] {
                end -= 4;
            }
            if end == 0 {
                break;
            }
            let (start, blocks) = read_stream(&file, end)?;
            streams.push(blocks);
            end = start;
        }
        if streams.is_empty() {
            return Err(invalid("the file holds no xz stream"));
        }
        let stream_count = streams.len();
        let mut blocks = Vec::new();
        let mut image_offset = 0u64;
        for stream in streams.into_iter().rev() {
            for mut b in stream {
                b.image_offset = image_offset;
                image_offset = image_offset
                    .checked_add(b.image_size)
                    .ok_or_else(|| invalid("the index's sizes overflow"))?;
                blocks.push(b);
            }
        }
        Ok(Self {
            file,
            blocks,
            streams: stream_count,
            size: image_offset,
            cursor: None,
            cache: Vec::new(),
            decoded: 0,
            budget: image_offset.saturating_mul(4).saturating_add(2 << 30),
        })
    }

    /// How many blocks the file has (one block means every backward read decodes from
    /// the start of the image).
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// How many concatenated streams the file holds.
    pub fn stream_count(&self) -> usize {
        self.streams
    }

    fn block_at(&self, offset: u64) -> Option<usize> {
        let i = self
            .blocks
            .partition_point(|b| b.image_offset + b.image_size <= offset);
        (i < self.blocks.len()).then_some(i)
    }

    /// Opens block `i`'s decoder at its first byte. Only the filter chain xz itself
    /// writes for images is accepted: LZMA2 alone.
    fn open_block(&self, i: usize) -> io::Result<Cursor> {
        let b = self.blocks[i];
        let first = read_array::<1>(&self.file, b.file_offset)?[0];
        if first == 0 {
            return Err(invalid("a block starts with the index indicator"));
        }
        let header_len = (u64::from(first) + 1) * 4;
        let mut header = vec![0u8; usize::try_from(header_len).map_err(|_| invalid("header"))?];
        self.file.read_exact_at(&mut header, b.file_offset)?;
        let flags = header[1];
        if flags & 0x3c != 0 {
            return Err(invalid("a block header has reserved flags set"));
        }
        let mut p = 2;
        if flags & 0x40 != 0 {
            varint(&header, &mut p)?;
        }
        if flags & 0x80 != 0 {
            varint(&header, &mut p)?;
        }
        let filters = (flags & 0x03) + 1;
        let id = varint(&header, &mut p)?;
        let props_len = varint(&header, &mut p)?;
        if filters != 1 || id != 0x21 || props_len != 1 {
            return Err(unsupported(
                "a block uses filters other than LZMA2 alone; it cannot be read in place",
            ));
        }
        let props = *header.get(p).ok_or_else(|| invalid("block header"))?;
        let data = b
            .unpadded
            .checked_sub(header_len + b.check_size)
            .ok_or_else(|| invalid("a block is smaller than its header"))?;
        let stream = Stream::new_raw_decoder(Filters::new().lzma2_properties(&[props])?)?;
        Ok(Cursor {
            block: i,
            stream,
            next_in: b.file_offset + header_len,
            end_in: b.file_offset + header_len + data,
            pos: b.image_offset,
        })
    }

    /// Decodes `dst.len()` bytes of the image at `offset`, skipping what comes before
    /// it in the block; the cursor stays after them.
    fn decode(&mut self, mut offset: u64, mut dst: &mut [u8]) -> io::Result<()> {
        let mut input = vec![0u8; 64 << 10];
        let mut scratch = vec![0u8; PAGE];
        while !dst.is_empty() {
            let i = self
                .block_at(offset)
                .ok_or_else(|| invalid("read past the end of the image"))?;
            let reuse = matches!(&self.cursor, Some(c) if c.block == i && c.pos <= offset);
            if !reuse {
                self.cursor = Some(self.open_block(i)?);
            }
            let Some(c) = self.cursor.as_mut() else {
                return Err(invalid("no decoder"));
            };
            let block_end = self.blocks[i].image_offset + self.blocks[i].image_size;
            while c.pos < block_end && !dst.is_empty() {
                check_interrupted().map_err(io::Error::other)?;
                let want = c.pos < offset;
                let out: &mut [u8] = if want {
                    let skip = usize::try_from(offset - c.pos).unwrap_or(usize::MAX);
                    &mut scratch[..skip.min(PAGE)]
                } else {
                    let n = dst.len().min(PAGE);
                    &mut dst[..n]
                };
                let avail = usize::try_from(c.end_in - c.next_in)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                self.file.read_exact_at(&mut input[..avail], c.next_in)?;
                let (in0, out0) = (c.stream.total_in(), c.stream.total_out());
                let status = c
                    .stream
                    .process(&input[..avail], out, Action::Run)
                    .map_err(|e| invalid(&format!("a block does not decode: {e}")))?;
                let used = c.stream.total_in() - in0;
                let made = c.stream.total_out() - out0;
                c.next_in += used;
                c.pos += made;
                self.decoded += made;
                if self.decoded > self.budget {
                    return Err(unsupported(
                        "reading it in place needs too much decoding (too few xz blocks); \
                         compress the image with `xz -T0` or let collect-artifacts compress it",
                    ));
                }
                let made = usize::try_from(made).unwrap_or(0);
                if !want {
                    dst = &mut dst[made..];
                    offset += made as u64;
                }
                if made == 0 && (used == 0 || status == Status::StreamEnd) {
                    return Err(invalid("a block ends before its recorded size"));
                }
            }
            if c.pos >= block_end {
                self.cursor = None;
            }
        }
        Ok(())
    }

    fn page(&mut self, n: u64) -> io::Result<&[u8]> {
        if let Some(i) = self.cache.iter().position(|(p, _)| *p == n) {
            let hit = self.cache.remove(i);
            self.cache.insert(0, hit);
        } else {
            let start = n * PAGE as u64;
            let len = usize::try_from((self.size - start).min(PAGE as u64)).unwrap_or(PAGE);
            let mut bytes = vec![0u8; len];
            self.decode(start, &mut bytes)?;
            self.cache.truncate(PAGES - 1);
            self.cache.insert(0, (n, bytes));
        }
        Ok(&self.cache[0].1)
    }
}

impl ReadAt for SeekableXz {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&mut self, mut offset: u64, mut dst: &mut [u8]) -> io::Result<()> {
        if offset
            .checked_add(dst.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the image",
            ));
        }
        while !dst.is_empty() {
            let n = offset / PAGE as u64;
            let at = usize::try_from(offset % PAGE as u64).unwrap_or(0);
            let page = self.page(n)?;
            let take = (page.len() - at).min(dst.len());
            dst[..take].copy_from_slice(&page[at..at + take]);
            dst = &mut dst[take..];
            offset += take as u64;
        }
        Ok(())
    }
}

/// Reads the stream that ends at `end`: returns where it starts and its blocks.
fn read_stream(file: &File, end: u64) -> io::Result<(u64, Vec<Block>)> {
    if end < 24 {
        return Err(invalid("the file is too short for an xz stream"));
    }
    let footer = read_array::<12>(file, end - 12)?;
    if footer[10..12] != *b"YZ" {
        return Err(invalid("no xz stream footer at the end of the file"));
    }
    let backward = u64::from(u32::from_le_bytes([
        footer[4], footer[5], footer[6], footer[7],
    ]));
    let index_len = (backward + 1) * 4;
    if index_len > MAX_INDEX {
        return Err(invalid("the xz index is implausibly large"));
    }
    let check_size = match footer[9] & 0x0f {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    };
    let index_start = (end - 12)
        .checked_sub(index_len)
        .ok_or_else(|| invalid("the xz index starts before the file"))?;
    let mut index = vec![0u8; usize::try_from(index_len).map_err(|_| invalid("index"))?];
    file.read_exact_at(&mut index, index_start)?;
    if index[0] != 0 {
        return Err(invalid("no xz index where the footer points"));
    }
    let mut p = 1;
    let count = varint(&index, &mut p)?;
    if count > index_len / 2 {
        return Err(invalid("the xz index lists more blocks than it can hold"));
    }
    let mut records = Vec::new();
    let mut total = 0u64;
    for _ in 0..count {
        let unpadded = varint(&index, &mut p)?;
        let image_size = varint(&index, &mut p)?;
        records.push((unpadded, image_size));
        total = total
            .checked_add(unpadded.div_ceil(4) * 4)
            .ok_or_else(|| invalid("the xz index's sizes overflow"))?;
    }
    let start = index_start
        .checked_sub(total)
        .and_then(|s| s.checked_sub(12))
        .ok_or_else(|| invalid("the xz index lists more data than the file holds"))?;
    let header = read_array::<12>(file, start)?;
    if header[..6] != [0xfd, b'7', b'z', b'X', b'Z', 0] || header[6..8] != footer[8..10] {
        return Err(invalid(
            "no xz stream header where the index says the stream starts",
        ));
    }
    let mut file_offset = start + 12;
    let blocks = records
        .into_iter()
        .map(|(unpadded, image_size)| {
            let b = Block {
                file_offset,
                unpadded,
                check_size,
                image_offset: 0,
                image_size,
            };
            file_offset += unpadded.div_ceil(4) * 4;
            b
        })
        .collect();
    Ok((start, blocks))
}

fn read_array<const N: usize>(file: &File, at: u64) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    file.read_exact_at(&mut b, at)?;
    Ok(b)
}

/// xz's variable-length integer: 7 bits a byte, least significant first, at most 9.
fn varint(bytes: &[u8], p: &mut usize) -> io::Result<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *bytes
            .get(*p)
            .ok_or_else(|| invalid("a number runs off the end"))?;
        *p += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(invalid("a number is longer than 9 bytes"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("xz: {what}"))
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("xz: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xz::{Encoder, Preset};

    /// An "image" whose every byte says where it is, compressed by our encoder with
    /// small blocks (and, for one test, by xz itself).
    fn image(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i / 4096 + i * 7) % 251).unwrap())
            .collect()
    }

    /// `blocks`: our multi-threaded encoder (1 MiB blocks at preset 0), or liblzma's
    /// single-threaded one, which writes the whole stream as one block.
    fn compressed(data: &[u8], blocks: bool) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let out = f.reopen().unwrap();
        if blocks {
            let mut enc = Encoder::new(out, "0".parse::<Preset>().unwrap(), 2).unwrap();
            enc.write_all(data, &|| Ok(())).unwrap();
            enc.finish(&|| Ok(())).unwrap();
        } else {
            let mut enc = liblzma::write::XzEncoder::new(out, 0);
            std::io::Write::write_all(&mut enc, data).unwrap();
            enc.finish().unwrap();
        }
        f
    }

    fn check_reads(reader: &mut SeekableXz, data: &[u8]) {
        assert_eq!(reader.size(), data.len() as u64);
        // Forwards, backwards, across pages and blocks, and the very end.
        let len = data.len() as u64;
        for &(at, n) in &[
            (len - 10, 10usize),
            (0, 4096),
            (1_000_000, 300_000),
            (12, 1),
            ((3 << 20) - 5, 10),
            (len / 2, 70_000),
            (5, 3 << 20),
        ] {
            let mut buf = vec![0u8; n];
            reader.read_exact_at(at, &mut buf).unwrap();
            let at = usize::try_from(at).unwrap();
            assert_eq!(buf, data[at..at + n], "read of {n} at {at}");
        }
        let mut buf = [0u8; 2];
        assert!(reader.read_exact_at(len - 1, &mut buf).is_err());
    }

    #[test]
    fn reads_any_range_of_a_multi_block_file() {
        let data = image(9 << 20);
        let f = compressed(&data, true);
        let mut r = SeekableXz::open(f.reopen().unwrap()).unwrap();
        assert!(r.block_count() > 1, "{} blocks", r.block_count());
        check_reads(&mut r, &data);
    }

    #[test]
    fn reads_a_single_block_file_and_concatenated_streams() {
        let data = image(4 << 20);
        let one = compressed(&data, false);
        let mut r = SeekableXz::open(one.reopen().unwrap()).unwrap();
        assert_eq!(r.block_count(), 1);
        check_reads(&mut r, &data);

        // Two streams with stream padding between them, as `cat a.xz b.xz` makes.
        let (a, b) = data.split_at(1 << 20);
        let mut joined = std::fs::read(compressed(a, true).path()).unwrap();
        joined.extend_from_slice(&[0; 8]);
        joined.extend(std::fs::read(compressed(b, false).path()).unwrap());
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &joined).unwrap();
        let mut r = SeekableXz::open(f.reopen().unwrap()).unwrap();
        check_reads(&mut r, &data);
    }

    #[test]
    fn a_damaged_index_or_footer_is_refused() {
        let data = image(1 << 20);
        let f = compressed(&data, true);
        let good = std::fs::read(f.path()).unwrap();
        let n = good.len();
        for (what, at, byte) in [
            ("footer magic", n - 1, b'X'),
            ("backward size", n - 8, 0xff),
        ] {
            let mut bad = good.clone();
            bad[at] = byte;
            let t = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(t.path(), &bad).unwrap();
            assert!(SeekableXz::open(t.reopen().unwrap()).is_err(), "{what}");
        }
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), &good[..n - 20]).unwrap();
        assert!(SeekableXz::open(t.reopen().unwrap()).is_err(), "truncated");
    }
}
