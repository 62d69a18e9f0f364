//! The streaming part: source → (inflate) → SHA-256 of the raw image → xz encoder →
//! SHA-256 of the output → temporary file. One pass, constant memory, no raw image on
//! disk. Every read checks for SIGINT/SIGTERM so an interrupted run unwinds and its
//! temporary file is removed.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use anyhow::Context as _;

use crate::atomic::check_interrupted;
use crate::checksum::{Digest, Hashing};
use crate::progress::Progress;
use crate::xz::{self, Preset};

const BUF: usize = 256 << 10;

/// Digests of the written (compressed) file and of the raw image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub out: Digest,
    pub raw: Digest,
}

/// Where a byte stream comes from, for error messages.
pub struct Origin<'a> {
    pub what: &'a str,
}

fn read_some(reader: &mut impl Read, buf: &mut [u8], origin: &Origin<'_>) -> anyhow::Result<usize> {
    loop {
        check_interrupted()?;
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot read {}: it is corrupt or truncated; rebuild the image (or re-copy \
                         the file) and run again",
                        origin.what
                    )
                });
            }
        }
    }
}

fn write_context(e: impl Into<anyhow::Error>) -> anyhow::Error {
    let e = e.into();
    // An interruption passes through unchanged: it is not a write failure.
    if e.downcast_ref::<crate::error::Interrupted>().is_some() {
        return e;
    }
    e.context("cannot write the output file (is the disk full?)")
}

/// Sees every byte of the raw image, in order (pi-gen's bmap's checks).
pub type Tap<'a> = &'a mut dyn FnMut(&[u8]);

/// Compresses a raw image stream into `dest`.
pub fn compress(
    source: impl Read,
    origin: &Origin<'_>,
    dest: &mut File,
    preset: Preset,
    threads: u32,
    progress: &mut Progress,
    tap: Tap<'_>,
) -> anyhow::Result<Streamed> {
    // The encoder already hands over output in large chunks: no BufWriter needed.
    let out = Hashing::new(dest);
    let mut encoder = xz::Encoder::new(out, preset, threads)?;
    let mut raw = Hashing::new(source);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = read_some(&mut raw, &mut buf, origin)?;
        if n == 0 {
            break;
        }
        tap(&buf[..n]);
        encoder
            .write_all(&buf[..n], &check_interrupted)
            .map_err(write_context)?;
        progress.inc(n as u64);
    }
    let out = encoder.finish(&check_interrupted).map_err(write_context)?;
    let (out, writer) = out.finish();
    writer.flush().map_err(write_context)?;
    Ok(Streamed {
        out,
        raw: raw.finish().0,
    })
}

/// Reads through `inner`, copying every byte to `copy`.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Verifies an `.img.xz` by decoding it completely, hashing both the file and the raw
/// image, while copying the file's bytes to `copy` (`io::sink()` to only verify).
pub fn verify_xz(
    source: File,
    origin: &Origin<'_>,
    copy: impl Write,
    progress: &mut Progress,
    tap: Tap<'_>,
) -> anyhow::Result<Streamed> {
    let mut copy = BufWriter::with_capacity(BUF, copy);
    let counted = Counting {
        inner: source,
        progress,
    };
    let hashed = Hashing::new(Tee {
        inner: counted,
        copy: &mut copy,
    });
    let mut decoder = xz::decoder(hashed);
    let mut raw = Hashing::new(io::sink());
    let mut buf = vec![0u8; BUF];
    loop {
        let n = read_some(&mut decoder, &mut buf, origin)?;
        if n == 0 {
            break;
        }
        tap(&buf[..n]);
        raw.write_all(&buf[..n]).map_err(write_context)?;
    }
    // Whatever the decoder did not need (there should be nothing) still belongs to the
    // file, so it is copied and hashed too.
    let mut rest = decoder.into_inner();
    loop {
        let n = read_some(&mut rest, &mut buf, origin)?;
        if n == 0 {
            break;
        }
    }
    let (out, _) = rest.finish();
    copy.flush().map_err(write_context)?;
    Ok(Streamed {
        out,
        raw: raw.finish().0,
    })
}

/// Counts bytes read into a progress display.
struct Counting<'a, R> {
    inner: R,
    progress: &'a mut Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
