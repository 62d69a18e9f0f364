//! xz settings and the multi-threaded liblzma encoder/decoder.
//!
//! The encoder always uses liblzma's multi-threaded mode with the default block size
//! (3 × dictionary), so the output depends only on the input and the preset, never on
//! the thread count: the same input gives byte-identical `.img.xz` files everywhere.

use std::io::{self, Read, Write};
use std::str::FromStr;

use liblzma::stream::{Action, Check, MtStreamBuilder, Status, Stream};

/// An xz preset: level 0-9, optionally "extreme" (`9e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub level: u32,
    pub extreme: bool,
}

impl Default for Preset {
    fn default() -> Self {
        Self {
            level: 6,
            extreme: false,
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_start_matches('-');
        let (digits, extreme) = match s.strip_suffix('e') {
            Some(d) => (d, true),
            None => (s, false),
        };
        match digits.parse::<u32>() {
            Ok(level) if level <= 9 && digits.len() == 1 => Ok(Self { level, extreme }),
            _ => Err(format!(
                "`{s}` is not an xz preset: use 0-9, optionally followed by `e` (e.g. 6, 9e)"
            )),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.level, if self.extreme { "e" } else { "" })
    }
}

impl Preset {
    fn flags(self) -> u32 {
        // LZMA_PRESET_EXTREME from lzma/container.h.
        self.level | if self.extreme { 0x8000_0000 } else { 0 }
    }
}

/// Resolves `0` to the number of cores.
pub fn resolve_threads(threads: u32) -> u32 {
    if threads > 0 {
        return threads;
    }
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// A multi-threaded xz encoder writing to `inner`.
///
/// liblzma's worker threads hold whole blocks (24 MiB at preset 6, 192 MiB at 9), so
/// finishing can take a while. The encoder is driven with a short timeout and calls
/// `keep_going` between steps, so a caller can abandon it promptly (e.g. on SIGTERM)
/// instead of waiting for the last blocks.
pub struct Encoder<W: Write> {
    stream: Stream,
    inner: W,
    buf: Vec<u8>,
}

/// Lets liblzma return control every so often even when no output is ready yet.
const STEP_TIMEOUT_MS: u32 = 250;

impl<W: Write> Encoder<W> {
    pub fn new(inner: W, preset: Preset, threads: u32) -> anyhow::Result<Self> {
        let stream = MtStreamBuilder::new()
            .preset(preset.flags())
            .threads(resolve_threads(threads))
            .block_size(0)
            .timeout_ms(STEP_TIMEOUT_MS)
            .check(Check::Crc64)
            .encoder()
            .map_err(|e| anyhow::anyhow!("cannot start the xz encoder (preset {preset}): {e}"))?;
        Ok(Self {
            stream,
            inner,
            buf: Vec::with_capacity(256 << 10),
        })
    }

    fn step(&mut self, input: &[u8], action: Action) -> io::Result<(usize, Status)> {
        self.buf.clear();
        let before = self.stream.total_in();
        let status = self
            .stream
            .process_vec(input, &mut self.buf, action)
            .map_err(|e| io::Error::other(format!("xz encoder: {e}")))?;
        self.inner.write_all(&self.buf)?;
        let consumed = usize::try_from(self.stream.total_in() - before).unwrap_or(input.len());
        Ok((consumed, status))
    }

    /// Compresses all of `input`.
    pub fn write_all(
        &mut self,
        mut input: &[u8],
        keep_going: &impl Fn() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        while !input.is_empty() {
            keep_going()?;
            let (consumed, _) = self.step(input, Action::Run)?;
            input = &input[consumed..];
        }
        Ok(())
    }

    /// Flushes the last blocks and the index; returns the inner writer.
    pub fn finish(mut self, keep_going: &impl Fn() -> anyhow::Result<()>) -> anyhow::Result<W> {
        loop {
            keep_going()?;
            if let (_, Status::StreamEnd) = self.step(&[], Action::Finish)? {
                return Ok(self.inner);
            }
        }
    }
}

/// A multi-threaded decoder for a single-stream `.xz` (what our encoder and `xz -T0`
/// write: independent blocks decode in parallel). For concatenated streams use
/// [`decoder`]: liblzma's threaded decoder is not offered the flag for them here.
pub fn mt_decoder<R: Read>(inner: R, threads: u32) -> anyhow::Result<liblzma::read::XzDecoder<R>> {
    let stream = MtStreamBuilder::new()
        .threads(resolve_threads(threads))
        .timeout_ms(STEP_TIMEOUT_MS)
        // Past this, liblzma decodes in one thread rather than use more memory.
        .memlimit_threading(1 << 30)
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(|e| anyhow::anyhow!("cannot start the xz decoder: {e}"))?;
    Ok(liblzma::read::XzDecoder::new_stream(inner, stream))
}

/// An xz decoder for all concatenated streams in `inner` (what `xz -d` accepts).
pub fn decoder<R: Read>(inner: R) -> liblzma::read::XzDecoder<R> {
    liblzma::read::XzDecoder::new_multi_decoder(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_presets_parse_with_and_without_extreme() {
        assert_eq!(
            "6".parse(),
            Ok(Preset {
                level: 6,
                extreme: false
            })
        );
        assert_eq!(
            "9e".parse(),
            Ok(Preset {
                level: 9,
                extreme: true
            })
        );
        assert_eq!(
            "-0".parse(),
            Ok(Preset {
                level: 0,
                extreme: false
            })
        );
        for bad in ["10", "e", "", "x", "66", "9ee"] {
            assert!(bad.parse::<Preset>().is_err(), "{bad}");
        }
        assert_eq!(
            Preset {
                level: 9,
                extreme: true
            }
            .to_string(),
            "9e"
        );
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251).to_le_bytes()[0] ^ (i >> 13).to_le_bytes()[0])
            .collect();
        let compress = |threads| {
            let go = || Ok(());
            let preset = Preset {
                level: 0,
                extreme: false,
            };
            let mut enc = Encoder::new(Vec::new(), preset, threads).unwrap();
            for chunk in data.chunks(100_000) {
                enc.write_all(chunk, &go).unwrap();
            }
            enc.finish(&go).unwrap()
        };
        let one = compress(1);
        assert_eq!(one, compress(2));
        let mut back = Vec::new();
        decoder(&one[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
