//! Timestamp search inside one batch (ListOffsets by timestamp).

use kafka_protocol::records::RecordBatchDecoder;

use super::{BatchError, BatchHeader, BatchTimestampType};

/// Finds the first record of ONE batch whose timestamp is ≥ `timestamp_ms`, returning its
/// `(offset, timestamp)`, or `Ok(None)` if no record qualifies.
///
/// Uses `maxTimestamp` to skip the batch without decoding. For a LogAppendTime batch every
/// record carries `maxTimestamp`, so the answer is the base offset. Otherwise the records are
/// decoded (and decompressed) with kafka-protocol's `RecordBatchDecoder`; a decode failure is
/// `BatchError::Records`. The batch should have passed [`super::validate`] before.
pub fn first_offset_with_timestamp_at_or_after(
    batch: &[u8],
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.max_timestamp < timestamp_ms {
        return Ok(None);
    }
    if header.timestamp_type() == BatchTimestampType::LogAppendTime {
        return Ok(Some((header.base_offset, header.max_timestamp)));
    }
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BatchError::Records { reason: e.to_string() })?;
    let found = set
        .records
        .iter()
        .find(|record| record.timestamp >= timestamp_ms)
        .map(|record| (record.offset, record.timestamp));
    Ok(found)
}
