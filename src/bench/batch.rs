//! RecordBatch v2: a fast encoder that writes records straight into a `BytesMut`, and a
//! zero-allocation reader for the consumer side.
//!
//! Layout of the 61-byte header (big-endian), offsets in bytes:
//! `0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 |
//! 17 crc u32 | 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64 |
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32 |
//! 57 recordCount i32 | 61 records…`. The CRC-32C covers bytes 21 to the end.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::varint::{get_varint, get_varlong, put_varint, put_varlong, varint_len, varlong_len};
use super::workload::Compression;

/// Size of the RecordBatch v2 header.
pub const HEADER_BYTES: usize = 61;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_RECORD_COUNT: usize = 57;
/// Bytes before `batchLength` counts (baseOffset + batchLength).
const LOG_OVERHEAD: usize = 12;

/// Builds one RecordBatch v2. Without compression the records go right after a reserved header
/// in the output buffer; with compression they go into a staging buffer compressed at `finish`.
pub struct BatchBuilder {
    /// Output buffer: header (+ records when uncompressed).
    out: BytesMut,
    /// Uncompressed records when a codec is set.
    raw: BytesMut,
    compression: Compression,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    count: i32,
    /// Uncompressed record bytes appended so far.
    record_bytes: usize,
}

impl BatchBuilder {
    /// Starts a batch whose first record has timestamp `base_timestamp_ms`.
    pub fn new(capacity: usize, compression: Compression, base_timestamp_ms: i64) -> Self {
        let mut out = BytesMut::with_capacity(HEADER_BYTES + capacity);
        out.put_bytes(0, HEADER_BYTES);
        let raw = match compression {
            Compression::None => BytesMut::new(),
            _ => BytesMut::with_capacity(capacity),
        };
        BatchBuilder {
            out,
            raw,
            compression,
            base_timestamp_ms,
            max_timestamp_ms: base_timestamp_ms,
            count: 0,
            record_bytes: 0,
        }
    }

    /// Records appended so far.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Uncompressed size of the batch so far (header + records).
    pub fn size_bytes(&self) -> usize {
        HEADER_BYTES + self.record_bytes
    }

    /// Bytes `append` would add for a record with these key and value lengths.
    pub fn record_size(&self, key_len: Option<usize>, value_len: usize) -> usize {
        let body = self.body_len(0, key_len, value_len);
        varint_len(body as i32) + body
    }

    fn body_len(&self, timestamp_delta: i64, key_len: Option<usize>, value_len: usize) -> usize {
        let key = match key_len {
            Some(n) => varint_len(n as i32) + n,
            None => 1,
        };
        1 + varlong_len(timestamp_delta)
            + varint_len(self.count)
            + key
            + varint_len(value_len as i32)
            + value_len
            + 1
    }

    /// Appends one record; the value is the concatenation of `value_parts` (so a timestamp
    /// prefix and a payload slice need no copy into a temporary buffer).
    pub fn append(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value_parts: &[&[u8]]) {
        let value_len: usize = value_parts.iter().map(|p| p.len()).sum();
        let delta = timestamp_ms - self.base_timestamp_ms;
        let body = self.body_len(delta, key.map(<[u8]>::len), value_len);
        let buf = match self.compression {
            Compression::None => &mut self.out,
            _ => &mut self.raw,
        };
        buf.reserve(body + 5);
        put_varint(buf, body as i32);
        buf.put_u8(0); // record attributes
        put_varlong(buf, delta);
        put_varint(buf, self.count);
        match key {
            Some(k) => {
                put_varint(buf, k.len() as i32);
                buf.put_slice(k);
            }
            None => put_varint(buf, -1),
        }
        put_varint(buf, value_len as i32);
        for part in value_parts {
            buf.put_slice(part);
        }
        put_varint(buf, 0); // headers
        self.record_bytes += varint_len(body as i32) + body;
        self.count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    /// Seals the batch: compresses if needed, fills the header and the CRC-32C.
    pub fn finish(mut self) -> anyhow::Result<Bytes> {
        assert!(self.count > 0, "empty batch");
        match self.compression {
            Compression::None => {}
            Compression::Gzip => compress::<Gzip>(&mut self.out, &self.raw)?,
            Compression::Snappy => compress::<Snappy>(&mut self.out, &self.raw)?,
            Compression::Lz4 => compress::<Lz4>(&mut self.out, &self.raw)?,
            Compression::Zstd => compress::<Zstd>(&mut self.out, &self.raw)?,
        }
        let batch_length = i32::try_from(self.out.len() - LOG_OVERHEAD)?;
        let mut header = &mut self.out[..HEADER_BYTES];
        header.put_i64(0); // baseOffset: the broker assigns it
        header.put_i32(batch_length);
        header.put_i32(-1); // partitionLeaderEpoch
        header.put_i8(2); // magic
        header.put_u32(0); // crc, below
        header.put_i16(self.compression.attribute_bits());
        header.put_i32(self.count - 1); // lastOffsetDelta
        header.put_i64(self.base_timestamp_ms);
        header.put_i64(self.max_timestamp_ms);
        header.put_i64(-1); // producerId
        header.put_i16(-1); // producerEpoch
        header.put_i32(-1); // baseSequence
        header.put_i32(self.count);
        assert!(header.is_empty());
        let crc = crc32c::crc32c(&self.out[OFFSET_ATTRIBUTES..]);
        self.out[OFFSET_CRC..OFFSET_ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
        Ok(self.out.freeze())
    }
}

fn compress<C: Compressor<BytesMut>>(out: &mut BytesMut, raw: &[u8]) -> anyhow::Result<()> {
    C::compress(out, |staging: &mut C::BufMut| {
        staging.put_slice(raw);
        Ok(())
    })
}

/// The header fields of one batch, as read by the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Records in the batch.
    pub record_count: i32,
    /// Compression codec (attribute bits 0..3).
    pub compression: Compression,
    /// Control batch (transaction markers): not user records.
    pub control: bool,
    /// Total bytes of the batch on the wire.
    pub size_bytes: usize,
}

impl BatchHeader {
    /// Offset after the last record of this batch.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta) + 1
    }
}

/// Reasons a fetched batch cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0}")]
    Magic(i8),
    /// The batch length field is impossible.
    #[error("bad batch length {0}")]
    Length(i32),
    /// The stored CRC-32C does not match.
    #[error("CRC mismatch")]
    Crc,
    /// Unknown compression bits.
    #[error("unknown compression {0}")]
    Compression(i16),
    /// A record is cut short or malformed.
    #[error("malformed record")]
    Record,
    /// Decompression failed.
    #[error("decompression failed: {0}")]
    Decompress(String),
}

/// Reads the header of the batch at the start of `data`. `Ok(None)` means `data` holds only a
/// partial batch (brokers may cut the last batch of a fetch response short).
pub fn read_header(data: &[u8], verify_crc: bool) -> Result<Option<BatchHeader>, BatchError> {
    if data.len() < HEADER_BYTES {
        return Ok(None);
    }
    let be_i32 =
        |at: usize| i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let batch_length = be_i32(OFFSET_BATCH_LENGTH);
    let magic = data[OFFSET_MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    if batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return Err(BatchError::Length(batch_length));
    }
    let size_bytes = batch_length as usize + LOG_OVERHEAD;
    if data.len() < size_bytes {
        return Ok(None);
    }
    if verify_crc {
        let stored = be_i32(OFFSET_CRC) as u32;
        if crc32c::crc32c(&data[OFFSET_ATTRIBUTES..size_bytes]) != stored {
            return Err(BatchError::Crc);
        }
    }
    let attributes = i16::from_be_bytes([data[OFFSET_ATTRIBUTES], data[OFFSET_ATTRIBUTES + 1]]);
    let compression = Compression::from_attribute_bits(attributes & 0x7)
        .ok_or(BatchError::Compression(attributes & 0x7))?;
    let mut base = [0u8; 8];
    base.copy_from_slice(&data[0..8]);
    Ok(Some(BatchHeader {
        base_offset: i64::from_be_bytes(base),
        last_offset_delta: be_i32(OFFSET_LAST_OFFSET_DELTA),
        record_count: be_i32(OFFSET_RECORD_COUNT),
        compression,
        control: attributes & 0x20 != 0,
        size_bytes,
    }))
}

/// Calls `f(value)` for every record of a batch (`batch` = one whole batch, header included).
/// Compressed records are inflated into `scratch`-owned memory first.
pub fn for_each_value(
    header: &BatchHeader,
    batch: &[u8],
    mut f: impl FnMut(Option<&[u8]>),
) -> Result<(), BatchError> {
    let records = &batch[HEADER_BYTES..header.size_bytes];
    let inflated;
    let records: &[u8] = match header.compression {
        Compression::None => records,
        codec => {
            inflated = decompress(codec, records)?;
            &inflated
        }
    };
    let mut pos = 0;
    for _ in 0..header.record_count {
        let len = get_varint(records, &mut pos).ok_or(BatchError::Record)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&end| end <= records.len())
            .ok_or(BatchError::Record)?;
        let record = &records[pos..end];
        f(record_value(record).ok_or(BatchError::Record)?);
        pos = end;
    }
    Ok(())
}

/// The value of one record body (after its length prefix); `Some(None)` for a null value.
fn record_value(record: &[u8]) -> Option<Option<&[u8]>> {
    let mut pos = 1; // attributes
    get_varlong(record, &mut pos)?; // timestamp delta
    get_varint(record, &mut pos)?; // offset delta
    let key_len = get_varint(record, &mut pos)?;
    if key_len > 0 {
        pos = pos.checked_add(key_len as usize)?;
    }
    let value_len = get_varint(record, &mut pos)?;
    if value_len < 0 {
        return Some(None);
    }
    let end = pos.checked_add(value_len as usize)?;
    record.get(pos..end).map(Some)
}

fn decompress(codec: Compression, records: &[u8]) -> Result<Bytes, BatchError> {
    let mut input = Bytes::copy_from_slice(records);
    let result = match codec {
        Compression::None => Ok(input),
        Compression::Gzip => Gzip::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        Compression::Snappy => Snappy::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        Compression::Lz4 => Lz4::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
        Compression::Zstd => Zstd::decompress(&mut input, |b: &mut Bytes| Ok(b.clone())),
    };
    result.map_err(|e| BatchError::Decompress(e.to_string()))
}

#[cfg(test)]
mod tests;
