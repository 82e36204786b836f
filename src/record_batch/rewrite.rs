//! In-place rewrites of batch header fields.

use super::{
    compute_crc, BatchError, BatchHeader, ATTRIBUTES_AT, ATTR_TIMESTAMP_TYPE, BASE_OFFSET_AT,
    CRC_AT, HEADER_BYTES, LEADER_EPOCH_AT, MAX_TIMESTAMP_AT,
};

/// Sets `baseOffset` (bytes 0..8). Outside the CRC-covered region: the CRC stays valid.
/// Fails with `Truncated` if `batch` is shorter than a header.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    put(batch, BASE_OFFSET_AT, &base_offset.to_be_bytes())
}

/// Sets `partitionLeaderEpoch` (bytes 12..16). Outside the CRC-covered region.
/// Fails with `Truncated` if `batch` is shorter than a header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    put(batch, LEADER_EPOCH_AT, &epoch.to_be_bytes())
}

/// Marks ONE whole batch as LogAppendTime stamped at `timestamp_ms`: sets attributes bit 3 and
/// `maxTimestamp`, then recomputes the CRC over bytes 21..end. `batch` must be exactly one
/// batch (its declared length must equal `batch.len()`), else `LengthMismatch`/`Truncated`.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_bytes() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.total_bytes(),
            actual: batch.len(),
        });
    }
    let attributes = header.attributes | ATTR_TIMESTAMP_TYPE;
    put(batch, ATTRIBUTES_AT, &attributes.to_be_bytes())?;
    put(batch, MAX_TIMESTAMP_AT, &timestamp_ms.to_be_bytes())?;
    let crc = compute_crc(batch)?;
    put(batch, CRC_AT, &crc.to_be_bytes())
}

fn put(batch: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), BatchError> {
    let available = batch.len();
    let truncated = BatchError::Truncated { needed: HEADER_BYTES, available };
    let target = batch.get_mut(at..at + bytes.len()).ok_or(truncated)?;
    target.copy_from_slice(bytes);
    Ok(())
}
