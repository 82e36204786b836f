//! Kafka RecordBatch v2 (magic 2): header parsing, broker-side validation, and in-place rewrites.
//!
//! Two levels of validation: [`validate`] checks one batch's framing and CRC (every append,
//! leader or follower); [`validate_produce`] is what a leader checks of a client's batch
//! before that (every record walked, compressed batches decompressed under a bound, topic
//! rules applied, recompression for `compression.type`), see `leader.rs`.
//!
//! Pure and synchronous: no I/O, imports nothing from the crate. The same bytes travel on the
//! wire and on disk, so the storage layer and the protocol layer share this module.
//!
//! Layout (all big-endian): baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C over bytes 21..end),
//! attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57,
//! records @61.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod batches;
mod codec;
mod control;
mod error;
mod leader;
pub mod partition;
mod records;
mod rewrite;
mod timestamp;
mod walk;

#[cfg(test)]
mod leader_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use batches::{whole_batches_within, Batches};
pub use codec::Codec;
pub use control::{
    check_client_batch, marker_batch, marker_kind, AbortedFilter, MARKER_ABORT, MARKER_BATCH_BYTES,
    MARKER_COMMIT,
};
pub use error::{
    BatchError, CORRUPT_MESSAGE, INVALID_RECORD, INVALID_TIMESTAMP, MESSAGE_TOO_LARGE,
    UNSUPPORTED_COMPRESSION_TYPE, UNSUPPORTED_FOR_MESSAGE_FORMAT,
};
pub use leader::{validate_produce, Accepted, RecordError, Refusal, Rules};
pub use records::{record_keys, retain, Compacted, RecordKey};
pub use rewrite::{set_base_offset, set_log_append_time, set_partition_leader_epoch};
pub use timestamp::first_offset_with_timestamp_at_or_after;

/// Bytes of the fixed v2 batch header; the records start here.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the `batchLength` field's count starts (baseOffset + batchLength).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only magic (format version) this broker accepts.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// First byte covered by the CRC (the attributes field).
pub(crate) const CRC_FROM: usize = 21;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORD_COUNT_AT: usize = 57;

const _: () = assert!(RECORD_COUNT_AT + 4 == HEADER_BYTES);
const _: () = assert!(CRC_AT + 4 == CRC_FROM);
const _: () = assert!(BATCH_LENGTH_AT + 4 == LOG_OVERHEAD_BYTES);

const ATTR_COMPRESSION_MASK: i16 = 0b111;
pub(crate) const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
pub(crate) const ATTR_TRANSACTIONAL: i16 = 1 << 4;
pub(crate) const ATTR_CONTROL: i16 = 1 << 5;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records are stored as is.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec's value in attributes bits 0-2.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name of the codec (`compression.type`); `uncompressed` for none.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec named so (`none` also means uncompressed, as on the producer side).
    pub fn from_name(name: &str) -> Option<Compression> {
        Some(match name {
            "uncompressed" | "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Meaning of the batch timestamps (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchTimestampType {
    /// Timestamps were set by the producer.
    CreateTime,
    /// The broker stamped `maxTimestamp` with its clock; every record has that timestamp.
    LogAppendTime,
}

/// The fixed 61-byte header of a v2 record batch, decoded. Plain data: no invariants beyond
/// what [`BatchHeader::parse`] checked (enough bytes, magic 2, `batch_length` ≥ 49).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 after `parse`.
    pub magic: i8,
    /// Stored CRC-32C of bytes 21..end.
    pub crc: u32,
    /// Raw attributes; see the helper methods.
    pub attributes: i16,
    /// `last offset - base offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (CreateTime).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the append time for LogAppendTime.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Idempotent producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` without looking at the records or the CRC.
    ///
    /// Fails with `Truncated` if `buf` is shorter than [`HEADER_BYTES`], `UnsupportedMagic`
    /// for magic 0/1, `InvalidMagic` for other values, and `InvalidLength` when `batchLength`
    /// is too small to hold the header.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = buf
            .get(..HEADER_BYTES)
            .ok_or(BatchError::Truncated { needed: HEADER_BYTES, available: buf.len() })?;
        let magic = be_i8(header, MAGIC_AT)?;
        match magic {
            MAGIC_V2 => {}
            0 | 1 => return Err(BatchError::UnsupportedMagic { magic }),
            _ => return Err(BatchError::InvalidMagic { magic }),
        }
        let batch_length = be_i32(header, BATCH_LENGTH_AT)?;
        let min_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if batch_length < min_length {
            return Err(BatchError::InvalidLength { batch_length });
        }
        Ok(BatchHeader {
            base_offset: be_i64(header, BASE_OFFSET_AT)?,
            batch_length,
            partition_leader_epoch: be_i32(header, LEADER_EPOCH_AT)?,
            magic,
            crc: be_i32(header, CRC_AT)? as u32,
            attributes: be_i16(header, ATTRIBUTES_AT)?,
            last_offset_delta: be_i32(header, LAST_OFFSET_DELTA_AT)?,
            base_timestamp: be_i64(header, BASE_TIMESTAMP_AT)?,
            max_timestamp: be_i64(header, MAX_TIMESTAMP_AT)?,
            producer_id: be_i64(header, PRODUCER_ID_AT)?,
            producer_epoch: be_i16(header, PRODUCER_EPOCH_AT)?,
            base_sequence: be_i32(header, BASE_SEQUENCE_AT)?,
            record_count: be_i32(header, RECORD_COUNT_AT)?,
        })
    }

    /// Size of the whole batch in bytes (`batchLength` + 12). `parse` guarantees ≥ 61.
    pub fn total_bytes(&self) -> usize {
        // `parse` rejected negative lengths, so the cast cannot wrap.
        self.batch_length.max(0) as usize + LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record: `base_offset + last_offset_delta` (saturating).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec, or `None` (the Option) for the reserved codes 5-7.
    pub fn compression(&self) -> Option<Compression> {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Whether the timestamps are producer (CreateTime) or broker (LogAppendTime) stamped.
    pub fn timestamp_type(&self) -> BatchTimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            BatchTimestampType::LogAppendTime
        } else {
            BatchTimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch is a control batch (transaction marker; attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Full broker-side validation of exactly ONE batch occupying all of `batch`.
///
/// Checks, in order: header (see [`BatchHeader::parse`]), declared length equals
/// `batch.len()`, size ≤ `max_batch_bytes` (`TooLarge`), known compression codec, CRC-32C,
/// `recordCount > 0` and `lastOffsetDelta == recordCount - 1`. Never panics.
pub fn validate(batch: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    validate_with(batch, max_batch_bytes, true)
}

/// [`validate`] for batches read back from a log, where compaction may have removed records:
/// `0 < recordCount <= lastOffsetDelta + 1` instead of equality.
pub fn validate_stored(batch: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    validate_with(batch, max_batch_bytes, false)
}

fn validate_with(
    batch: &[u8],
    max_batch_bytes: usize,
    exact_count: bool,
) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let declared = header.total_bytes();
    if declared != batch.len() {
        return Err(BatchError::LengthMismatch { declared, actual: batch.len() });
    }
    if declared > max_batch_bytes {
        return Err(BatchError::TooLarge { size: declared, max: max_batch_bytes });
    }
    if header.compression().is_none() {
        return Err(BatchError::UnknownCompression { attributes: header.attributes });
    }
    let computed = compute_crc(batch)?;
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    let span = i64::from(header.last_offset_delta) + 1;
    let count = i64::from(header.record_count);
    let count_ok = if exact_count { count == span } else { count <= span };
    if header.record_count <= 0 || !count_ok {
        return Err(BatchError::InvalidRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// CRC-32C (Castagnoli) of `batch[21..]`, the region the stored CRC covers.
pub fn compute_crc(batch: &[u8]) -> Result<u32, BatchError> {
    let covered = batch
        .get(CRC_FROM..)
        .ok_or(BatchError::Truncated { needed: HEADER_BYTES, available: batch.len() })?;
    Ok(crc32c::crc32c(covered))
}

fn field<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], BatchError> {
    let truncated = || BatchError::Truncated { needed: at.saturating_add(N), available: buf.len() };
    let bytes = buf.get(at..at.saturating_add(N)).ok_or_else(truncated)?;
    <[u8; N]>::try_from(bytes).map_err(|_| truncated())
}

fn be_i8(buf: &[u8], at: usize) -> Result<i8, BatchError> {
    Ok(i8::from_be_bytes(field::<1>(buf, at)?))
}

fn be_i16(buf: &[u8], at: usize) -> Result<i16, BatchError> {
    Ok(i16::from_be_bytes(field::<2>(buf, at)?))
}

fn be_i32(buf: &[u8], at: usize) -> Result<i32, BatchError> {
    Ok(i32::from_be_bytes(field::<4>(buf, at)?))
}

fn be_i64(buf: &[u8], at: usize) -> Result<i64, BatchError> {
    Ok(i64::from_be_bytes(field::<8>(buf, at)?))
}
