//! Record-level access for log compaction: the key of every record of a batch, and rebuilding
//! a batch that keeps only some of its records.
//!
//! Record layout (v2, inside the batch after the 61-byte header, uncompressed): length
//! varint, attributes i8, timestampDelta varlong, offsetDelta varint, keyLength varint, key,
//! valueLength varint, value, header count varint, headers. Varints are zigzag LEB128.
//! Rebuilt batches keep the header's base offset, lastOffsetDelta, timestamps and producer
//! fields, so every kept record keeps its offset (gaps are allowed, as in Kafka's compacted
//! logs); recordCount, batchLength and the CRC-32C are recomputed.

use std::ops::Range;

use kafka_protocol::records::RecordBatchDecoder;

use super::{
    compute_crc, BatchError, BatchHeader, Compression, BATCH_LENGTH_AT, CRC_AT, HEADER_BYTES,
    LOG_OVERHEAD_BYTES, RECORD_COUNT_AT,
};

/// What compaction needs of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    /// The record's offset.
    pub offset: i64,
    /// Its key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Whether its value is null (a tombstone).
    pub tombstone: bool,
    /// Its bytes inside the batch; `None` for records of compressed batches.
    pub range: Option<Range<usize>>,
}

fn records_error(reason: impl Into<String>) -> BatchError {
    BatchError::Records { reason: reason.into() }
}

/// Reads a zigzag LEB128 varint at `*at`, advancing it.
fn varint(buf: &[u8], at: &mut usize) -> Result<i64, BatchError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at).ok_or_else(|| records_error("varint past the batch end"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(records_error("varint longer than 10 bytes"))
}

/// Skips `len` bytes at `*at` (a length of -1 is null and skips nothing).
fn bytes_field<'a>(
    buf: &'a [u8],
    at: &mut usize,
    len: i64,
) -> Result<Option<&'a [u8]>, BatchError> {
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| records_error("field length"))?;
    let end = at.checked_add(len).ok_or_else(|| records_error("field length"))?;
    let field = buf.get(*at..end).ok_or_else(|| records_error("field past the record end"))?;
    *at = end;
    Ok(Some(field))
}

fn uncompressed_keys(batch: &[u8], header: &BatchHeader) -> Result<Vec<RecordKey>, BatchError> {
    let count = usize::try_from(header.record_count).map_err(|_| records_error("count"))?;
    let mut keys = Vec::with_capacity(count.min(batch.len() / 7));
    let mut at = HEADER_BYTES;
    for _ in 0..count {
        let start = at;
        let length = varint(batch, &mut at)?;
        let length = usize::try_from(length).map_err(|_| records_error("record length"))?;
        let end = at.checked_add(length).ok_or_else(|| records_error("record length"))?;
        let record = batch.get(..end).ok_or_else(|| records_error("record past the batch"))?;
        at += 1; // attributes
        varint(record, &mut at)?; // timestampDelta
        let offset_delta = varint(record, &mut at)?;
        let key_len = varint(record, &mut at)?;
        let key = bytes_field(record, &mut at, key_len)?.map(<[u8]>::to_vec);
        let value_len = varint(record, &mut at)?;
        keys.push(RecordKey {
            offset: header.base_offset.saturating_add(offset_delta),
            key,
            tombstone: value_len < 0,
            range: Some(start..end),
        });
        at = end;
    }
    if at != batch.len() {
        return Err(records_error("bytes after the last record"));
    }
    Ok(keys)
}

/// Every record's offset, key and tombstone flag. Control batches have no keys to compact:
/// an empty list. Compressed batches are decoded with kafka-protocol (which checks the CRC).
pub fn record_keys(batch: &[u8]) -> Result<Vec<RecordKey>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.is_control() {
        return Ok(Vec::new());
    }
    if header.compression() == Some(Compression::None) {
        return uncompressed_keys(batch, &header);
    }
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| records_error(e.to_string()))?;
    Ok(set
        .records
        .iter()
        .map(|r| RecordKey {
            offset: r.offset,
            key: r.key.as_ref().map(|k| k.to_vec()),
            tombstone: r.value.is_none(),
            range: None,
        })
        .collect())
}

/// A batch after compaction decided which of its records stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compacted {
    /// Every record stays: keep the batch as it is.
    Unchanged,
    /// No record stays: drop the batch.
    Dropped,
    /// A rebuilt batch with only the kept records (same base offset and last offset).
    Rebuilt(Vec<u8>),
}

/// Keeps the records of `batch` for which `keep[i]` is true (`keys` from [`record_keys`]).
/// A compressed batch is kept whole when any of its records stays (it is not re-encoded).
pub fn retain(batch: &[u8], keys: &[RecordKey], keep: &[bool]) -> Result<Compacted, BatchError> {
    if keep.len() != keys.len() {
        return Err(records_error("keep flags do not match the records"));
    }
    let kept = keep.iter().filter(|k| **k).count();
    if kept == keys.len() {
        return Ok(Compacted::Unchanged);
    }
    if kept == 0 {
        return Ok(Compacted::Dropped);
    }
    let ranges: Option<Vec<Range<usize>>> =
        keys.iter().zip(keep).filter(|(_, k)| **k).map(|(r, _)| r.range.clone()).collect();
    let Some(ranges) = ranges else {
        return Ok(Compacted::Unchanged);
    };
    let header = batch.get(..HEADER_BYTES).ok_or_else(|| records_error("short batch"))?;
    let mut out = Vec::with_capacity(batch.len());
    out.extend_from_slice(header);
    for range in ranges {
        out.extend_from_slice(batch.get(range).ok_or_else(|| records_error("record range"))?);
    }
    let batch_length =
        i32::try_from(out.len() - LOG_OVERHEAD_BYTES).map_err(|_| records_error("size"))?;
    let count = i32::try_from(kept).map_err(|_| records_error("count"))?;
    put(&mut out, BATCH_LENGTH_AT, &batch_length.to_be_bytes())?;
    put(&mut out, RECORD_COUNT_AT, &count.to_be_bytes())?;
    let crc = compute_crc(&out)?;
    put(&mut out, CRC_AT, &crc.to_be_bytes())?;
    Ok(Compacted::Rebuilt(out))
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), BatchError> {
    let end = at + bytes.len();
    buf.get_mut(at..end).ok_or_else(|| records_error("short batch"))?.copy_from_slice(bytes);
    Ok(())
}
