//! The four codecs of Kafka record batches, bounded: walking the records of a compressed batch
//! while it decompresses, and compressing records into a new batch body.
//!
//! Decompression streams (gzip, lz4, zstd): records are checked as they come out of the
//! decompressor, and no decompressed copy of the batch is kept. Snappy has no streaming form
//! in Kafka (raw snappy from librdkafka, xerial-framed blocks from Java), so its output is
//! decompressed whole, after its declared size was checked against the bound. The bound
//! (`WalkRules::max_bytes`) caps the work and memory a zip bomb can cost. Every stream must
//! end exactly where the compressed data ends (trailing garbage, a second gzip member or an
//! unterminated lz4 frame are corrupt), so whatever is accepted here decodes the same with any
//! consumer's decoder.
//!
//! Formats written: gzip (RFC 1952), snappy in xerial framing with 32 KiB blocks (Java's
//! `SnappyOutputStream`), LZ4 frames with independent 64 KiB blocks and no checksums (what
//! Kafka's `KafkaLZ4BlockOutputStream` writes and reads), zstd frames.

use std::io::{self, BufReader, Write};

use super::walk::{walk, Sink, WalkError, WalkRules, Walked};
use super::{BatchHeader, Compression};

/// Decompressed bytes asked of a decompressor per read: records up to this size are checked
/// in place in the reader's buffer.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// xerial snappy: the stream header (magic, version 1, compatible version 1).
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// xerial snappy: uncompressed bytes per block (snappy-java's default).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// zstd windows accepted: at least 2^23 (what a streaming compressor that does not know the
/// input size declares at levels up to 19), at most 2^27 (zstd's own limit; level 22), and
/// within that no more than the decompression bound needs. The decoder reserves the window a
/// frame declares, so this bounds what a tiny hostile frame can make it allocate.
const ZSTD_WINDOW_LOG_MIN: u32 = 23;
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Walks the records of a compressed batch whose compressed records are `payload`.
pub(crate) fn walk_compressed<S: Sink>(
    compression: Compression,
    payload: &[u8],
    header: &BatchHeader,
    rules: &WalkRules,
    sink: &mut S,
) -> Result<Walked, WalkError> {
    match compression {
        Compression::None => walk(&mut { payload }, header, rules, sink),
        Compression::Gzip => {
            let decoder = flate2::bufread::GzDecoder::new(payload);
            let mut reader = BufReader::with_capacity(STREAM_CHUNK_BYTES, decoder);
            let walked = walk(&mut reader, header, rules, sink)?;
            ends_exactly(reader.get_ref().get_ref())?;
            Ok(walked)
        }
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(payload)?;
            let mut reader = BufReader::with_capacity(STREAM_CHUNK_BYTES, decoder);
            let walked = walk(&mut reader, header, rules, sink)?;
            let (rest, finished) = reader.into_inner().finish();
            finished.map_err(|_| corrupt("lz4 frame not terminated"))?;
            ends_exactly(rest)?;
            Ok(walked)
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)?;
            decoder.window_log_max(zstd_window_log(rules.max_bytes))?;
            let mut reader = BufReader::with_capacity(STREAM_CHUNK_BYTES, decoder);
            let walked = walk(&mut reader, header, rules, sink)?;
            ends_exactly(reader.get_ref().get_ref())?;
            Ok(walked)
        }
        Compression::Snappy => {
            let records = snappy_decompress(payload, rules.max_bytes)?;
            walk(&mut records.as_slice(), header, rules, sink)
        }
    }
}

fn ends_exactly(rest: &[u8]) -> Result<(), WalkError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(WalkError::Io(corrupt("bytes after the compressed data")))
    }
}

/// The zstd window log allowed for a decompression bound of `max_bytes`.
fn zstd_window_log(max_bytes: usize) -> u32 {
    let needed = usize::BITS - max_bytes.saturating_sub(1).leading_zeros();
    needed.clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX)
}

/// Decompresses snappy as Kafka's consumers do: xerial framing when the stream starts with its
/// magic, raw snappy otherwise. Fails with `TooLarge` before allocating past `max_bytes`.
fn snappy_decompress(payload: &[u8], max_bytes: usize) -> Result<Vec<u8>, WalkError> {
    let mut decoder = snap::raw::Decoder::new();
    let snappy = |e: snap::Error| WalkError::Io(corrupt(&format!("snappy: {e}")));
    let Some(mut blocks) = payload.strip_prefix(XERIAL_MAGIC.as_slice()) else {
        let size = snap::raw::decompress_len(payload).map_err(snappy)?;
        if size > max_bytes {
            return Err(WalkError::TooLarge { max: max_bytes });
        }
        return decoder.decompress_vec(payload).map_err(snappy);
    };
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let (length, rest) = blocks.split_at_checked(4).ok_or(corrupt("xerial block length"))?;
        let length = u32::from_be_bytes(length.try_into().map_err(|_| corrupt("length"))?);
        let (block, rest) =
            rest.split_at_checked(length as usize).ok_or(corrupt("xerial block cut short"))?;
        let size = snap::raw::decompress_len(block).map_err(snappy)?;
        let start = out.len();
        if start.saturating_add(size) > max_bytes {
            return Err(WalkError::TooLarge { max: max_bytes });
        }
        out.resize(start + size, 0);
        let written =
            decoder.decompress(block, out.get_mut(start..).unwrap_or_default()).map_err(snappy)?;
        out.truncate(start + written);
        blocks = rest;
    }
    Ok(out)
}

/// A codec and level to write batches with (Kafka's `compression.type` and
/// `compression.<codec>.level`). `level` is the codec's own scale; `None` is its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// The codec.
    pub compression: Compression,
    /// Level (gzip 1-9, lz4 1-17, zstd -131072..22); `None` or -1 for the codec's default.
    pub level: Option<i32>,
}

/// Compresses record bytes into a batch body that follows the bytes already in `out`.
pub(crate) enum Encoder {
    None(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Snappy(Box<XerialWriter>),
    Lz4(lz4::Encoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `codec` appending to `out`.
    pub(crate) fn new(codec: Codec, out: Vec<u8>) -> io::Result<Encoder> {
        let level = codec.level.filter(|l| *l != -1);
        Ok(match codec.compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip => {
                let level = level.map_or(flate2::Compression::default(), |l| {
                    flate2::Compression::new(l.clamp(0, 9) as u32)
                });
                Encoder::Gzip(flate2::write::GzEncoder::new(out, level))
            }
            Compression::Snappy => Encoder::Snappy(Box::new(XerialWriter::new(out))),
            Compression::Lz4 => Encoder::Lz4(
                lz4::EncoderBuilder::new()
                    .level(level.unwrap_or(9).clamp(1, 17) as u32)
                    .block_size(lz4::BlockSize::Max64KB)
                    .block_mode(lz4::BlockMode::Independent)
                    .checksum(lz4::ContentChecksum::NoChecksum)
                    .build(out)?,
            ),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level.unwrap_or(3))?)
            }
        })
    }

    /// Ends the stream and returns the buffer.
    pub(crate) fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::None(out) => Ok(out),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Snappy(w) => w.finish(),
            Encoder::Lz4(e) => {
                let (out, result) = e.finish();
                result.map(|()| out)
            }
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl Sink for Encoder {
    fn put(&mut self, record: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(out) => {
                out.extend_from_slice(record);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(record),
            Encoder::Snappy(w) => w.put(record),
            Encoder::Lz4(e) => e.write_all(record),
            Encoder::Zstd(e) => e.write_all(record),
        }
    }
}

/// snappy-java's `SnappyOutputStream` format, by hand because the `snap` crate writes only the
/// official framing format: the xerial header, then per block of at most 32 KiB its
/// compressed length (u32, big-endian) and the raw snappy block.
pub(crate) struct XerialWriter {
    out: Vec<u8>,
    pending: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl XerialWriter {
    fn new(mut out: Vec<u8>) -> XerialWriter {
        out.extend_from_slice(XERIAL_MAGIC);
        let pending = Vec::with_capacity(XERIAL_BLOCK_BYTES);
        XerialWriter { out, pending, encoder: snap::raw::Encoder::new() }
    }

    fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = XERIAL_BLOCK_BYTES - self.pending.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = later;
            if self.pending.len() == XERIAL_BLOCK_BYTES {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = self.out.len();
        let max = snap::raw::max_compress_len(self.pending.len());
        self.out.resize(at + 4 + max, 0);
        let block = self.out.get_mut(at + 4..).unwrap_or_default();
        let written = self
            .encoder
            .compress(&self.pending, block)
            .map_err(|e| io::Error::other(format!("snappy: {e}")))?;
        let length = u32::try_from(written).map_err(|_| io::Error::other("snappy block"))?;
        self.out.truncate(at + 4 + written);
        if let Some(field) = self.out.get_mut(at..at + 4) {
            field.copy_from_slice(&length.to_be_bytes());
        }
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<u8>> {
        self.flush_block()?;
        Ok(self.out)
    }
}

/// Decompresses a whole batch body (no bound): for tests and tools that hold trusted batches.
#[cfg(test)]
pub(crate) fn decompress_all(compression: Compression, payload: &[u8]) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(payload),
        Compression::Gzip => {
            flate2::bufread::GzDecoder::new(payload).read_to_end(&mut out)?;
        }
        Compression::Lz4 => {
            lz4::Decoder::new(payload)?.read_to_end(&mut out)?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::with_buffer(payload)?.read_to_end(&mut out)?;
        }
        Compression::Snappy => {
            out = snappy_decompress(payload, usize::MAX).map_err(|e| match e {
                WalkError::Io(e) => e,
                other => corrupt(&format!("{other:?}")),
            })?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_through_the_encoder() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 ^ (i / 997) as u8).collect();
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut encoder =
                Encoder::new(Codec { compression, level: None }, b"head".to_vec()).unwrap();
            for chunk in data.chunks(7_000) {
                encoder.put(chunk).unwrap();
            }
            let out = encoder.finish().unwrap();
            assert_eq!(&out[..4], b"head");
            let back = decompress_all(compression, &out[4..]).unwrap();
            assert_eq!(back, data, "{compression:?}");
        }
    }

    #[test]
    fn zstd_window_follows_the_bound_within_limits() {
        assert_eq!(zstd_window_log(64 << 20), 26);
        assert_eq!(zstd_window_log((64 << 20) + 1), 27);
        assert_eq!(zstd_window_log(1 << 10), ZSTD_WINDOW_LOG_MIN);
        assert_eq!(zstd_window_log(usize::MAX), ZSTD_WINDOW_LOG_MAX);
    }

    #[test]
    fn a_snappy_size_past_the_bound_is_refused_before_allocating() {
        // Raw snappy whose header claims 2^31 bytes.
        let claim = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(matches!(snappy_decompress(&claim, 1 << 20), Err(WalkError::TooLarge { .. })));
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&6u32.to_be_bytes());
        framed.extend_from_slice(&claim);
        assert!(matches!(snappy_decompress(&framed, 1 << 20), Err(WalkError::TooLarge { .. })));
    }
}
