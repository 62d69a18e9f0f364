//! Streaming SHA-256 and the `sha256sum -c` file format.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest (lowercase hex) and the number of bytes hashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub sha256: String,
    pub size: u64,
}

/// Hashes what passes through it, in either direction.
#[derive(Debug)]
pub struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    count: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The digest of everything seen, and the wrapped value.
    pub fn finish(self) -> (Digest, T) {
        let digest = Digest {
            sha256: hex(&self.hasher.finalize()),
            size: self.count,
        };
        (digest, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes a file by streaming it (constant memory whatever its size).
pub fn sha256_file(path: &Path) -> anyhow::Result<Digest> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut reader = Hashing::new(file);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if n == 0 {
            break;
        }
    }
    Ok(reader.finish().0)
}

/// The digest of bytes in memory (a file's text before it is written). Pure.
pub fn of_bytes(bytes: &[u8]) -> Digest {
    Digest {
        sha256: hex(&Sha256::digest(bytes)),
        size: bytes.len() as u64,
    }
}

/// One `sha256sum` line: `<64 lowercase hex>␠␠<basename>\n`. The name is a bare file
/// name so `sha256sum -c` works from the directory holding both files, wherever it is.
pub fn checksum_line(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
}

/// Reads the digest from the first line of a checksum file, if it holds one.
pub fn parse_checksum_line(text: &str) -> Option<String> {
    let first = text.lines().next()?.split_whitespace().next()?;
    let ok = first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| first.to_ascii_lowercase())
}

/// Lowercase hex of a byte slice.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_a_stream_gives_the_known_sha256_and_keeps_the_bytes() {
        let mut w = Hashing::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (d, inner) = w.finish();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.size, 3);
        assert_eq!(inner, b"abc");
    }

    #[test]
    fn checksum_lines_round_trip_in_sha256sum_format() {
        assert_eq!(checksum_line("ab", "x.img.xz"), "ab  x.img.xz\n");
        let d = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            parse_checksum_line(&format!("{d}  x\n")).as_deref(),
            Some(d)
        );
        assert_eq!(parse_checksum_line(&d.to_uppercase()).as_deref(), Some(d));
        assert_eq!(parse_checksum_line("nothex  x"), None);
        assert_eq!(parse_checksum_line(""), None);
    }
}
