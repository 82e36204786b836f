//! Timestamp search inside one batch (ListOffsets by timestamp).

use std::io;

use super::codec::walk_compressed;
use super::walk::{parse_body, varint, Sink, WalkError, WalkRules};
use super::{BatchError, BatchHeader, BatchTimestampType, HEADER_BYTES};

/// Most record bytes one search decompresses: produce admits nothing larger (the validator's
/// `max_decompressed_bytes` is far below this), so only a batch written before validation
/// existed could reach it, and it then fails as corrupt instead of holding the memory.
const MAX_SEARCH_BYTES: usize = 256 << 20;

/// Finds the first record of ONE batch whose timestamp is ≥ `timestamp_ms`, returning its
/// `(offset, timestamp)`, or `Ok(None)` if no record qualifies.
///
/// Uses `maxTimestamp` to skip the batch without decoding. For a LogAppendTime batch every
/// record carries `maxTimestamp`, so the answer is the base offset. Otherwise the records are
/// walked with the validator's bounded codecs (all four, xerial and raw snappy alike), which
/// stream and keep no decompressed copy; a batch that does not walk is `BatchError::Records`.
/// The batch should have passed [`super::validate`] before.
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
    let records_error = |reason: String| BatchError::Records { reason };
    let compression =
        header.compression().ok_or_else(|| records_error("unknown compression codec".into()))?;
    let payload = batch.get(HEADER_BYTES..).unwrap_or_default();
    let rules = WalkRules { compacted: false, window: None, max_bytes: MAX_SEARCH_BYTES };
    let mut search = Search { header: &header, target: timestamp_ms, index: 0, found: None };
    match walk_compressed(compression, payload, &header, &rules, &mut search) {
        Ok(_) => Ok(search.found),
        // The search stopped the walk itself once it found the record.
        Err(WalkError::Io(e))
            if e.kind() == io::ErrorKind::Interrupted && search.found.is_some() =>
        {
            Ok(search.found)
        }
        Err(WalkError::Structure { index, reason }) => {
            Err(records_error(format!("record {index}: {reason}")))
        }
        Err(WalkError::TooLarge { max }) => {
            Err(records_error(format!("records exceed {max} bytes decompressed")))
        }
        Err(WalkError::Io(e)) => Err(records_error(e.to_string())),
    }
}

/// A walk's sink that notes the first record at or after the target timestamp.
struct Search<'a> {
    header: &'a BatchHeader,
    target: i64,
    index: i32,
    found: Option<(i64, i64)>,
}

impl Sink for Search<'_> {
    fn put(&mut self, record: &[u8]) -> io::Result<()> {
        let index = self.index;
        self.index += 1;
        // `record` is the length varint and the body; the walk has checked both.
        let mut at = 0;
        let body = varint(record, &mut at).and_then(|_| record.get(at..)).unwrap_or_default();
        let Ok(fields) = parse_body(body, index) else {
            return Ok(()); // the walk reports it
        };
        let timestamp = self.header.base_timestamp.saturating_add(fields.timestamp_delta);
        if timestamp >= self.target {
            self.found = Some((self.header.base_offset + i64::from(index), timestamp));
            return Err(io::Error::new(io::ErrorKind::Interrupted, "found"));
        }
        Ok(())
    }
}
