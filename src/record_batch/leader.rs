//! What a partition leader checks of a client's produce data before appending it, as Kafka's
//! `LogValidator` and `ProduceRequest.validateRecords` do, and the recompression Kafka's
//! topic `compression.type` asks for.
//!
//! [`validate_produce`] takes one partition's records and the topic's [`Rules`] and answers
//! [`Accepted::AsSent`] (append the bytes as they are), [`Accepted::Rewritten`] (append this
//! new batch instead: recompressed, or with `maxTimestamp` corrected as Kafka does), or a
//! [`Refusal`] carrying Kafka's error code, message and per-record errors (Produce v8+).
//!
//! Checks, in order: exactly one v2 batch (Kafka 3+ produce), its size, a known codec (zstd
//! from Produce v7), not a control batch, `recordCount == lastOffsetDelta + 1 > 0` with no
//! offset overflow, a sequence for an idempotent producer, CreateTime stamps; then every
//! record ([`super::walk`]): lengths, header counts, offset deltas, timestamp deltas, no bytes
//! left over, and (listed per record) keys on compacted topics and timestamps within
//! `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`.
//!
//! The CRC: a batch appended as sent is not CRC-checked here, because the log's append runs
//! [`super::validate`] on it right after (one CRC pass per batch on the hot path, not two).
//! It is checked before any refusal (a corrupted batch is CORRUPT_MESSAGE, which clients
//! retry, whatever else looks wrong) and before any rewrite (a rewrite computes a new CRC, which
//! must not launder a corrupted batch). Uncompressed batches are walked in place: the accepted
//! path allocates nothing.

use super::codec::{walk_compressed, Codec, Encoder};
use super::walk::{Flag, WalkError, WalkRules, Walked};
use super::{
    compute_crc, BatchError, BatchHeader, BatchTimestampType, Compression, ATTRIBUTES_AT,
    BATCH_LENGTH_AT, CORRUPT_MESSAGE, CRC_AT, HEADER_BYTES, INVALID_RECORD, INVALID_TIMESTAMP,
    LOG_OVERHEAD_BYTES, MAX_TIMESTAMP_AT, MESSAGE_TOO_LARGE, UNSUPPORTED_COMPRESSION_TYPE,
};

/// The topic's rules for one partition's produce data.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// Topic name (for messages).
    pub topic: &'a str,
    /// Partition (for messages).
    pub partition: i32,
    /// `max.message.bytes`: largest batch, as sent and as rewritten.
    pub max_batch_bytes: usize,
    /// Most bytes a compressed batch's records may decompress to.
    pub max_decompressed_bytes: usize,
    /// `cleanup.policy` contains `compact`: every record needs a key.
    pub compacted: bool,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches, no window applies.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// The broker's clock, in ms since the Unix epoch.
    pub now_ms: i64,
    /// `compression.type`: `None` for `producer` (keep the producer's codec), else the codec
    /// batches arriving in another codec are recompressed to.
    pub recompress: Option<Codec>,
    /// Produce v7+: zstd batches are allowed (Kafka refuses them in older requests).
    pub zstd_allowed: bool,
}

/// One refused record, as Produce v8+ lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record in its batch.
    pub batch_index: i32,
    /// Why.
    pub message: String,
}

/// A refused partition: Kafka's error code, message and per-record errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Kafka error code.
    pub code: i16,
    /// `error_message` of the partition response.
    pub message: String,
    /// `record_errors` of the partition response (empty when the batch as a whole is bad).
    pub record_errors: Vec<RecordError>,
}

impl Refusal {
    fn new(code: i16, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into(), record_errors: Vec::new() }
    }
}

impl From<BatchError> for Refusal {
    fn from(e: BatchError) -> Refusal {
        Refusal::new(e.kafka_error_code(), e.to_string())
    }
}

/// What to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The records as the client sent them (their CRC is still to be checked by the append).
    AsSent,
    /// A new batch (recompressed, or `maxTimestamp` corrected), with a fresh CRC.
    Rewritten(Vec<u8>),
}

/// Validates one partition's produce data; see the module docs. Never panics, and allocates
/// only to refuse or rewrite.
pub fn validate_produce(records: &[u8], rules: &Rules<'_>) -> Result<Accepted, Refusal> {
    let header = check_framing(records, rules)?;
    check_header(&header, rules).map_err(|refusal| crc_first(records, refusal))?;
    let compression = header.compression().unwrap_or(Compression::None);
    let payload = records.get(HEADER_BYTES..).unwrap_or_default();
    let walk_rules = WalkRules {
        compacted: rules.compacted,
        window: (!rules.log_append_time).then(|| window(rules)),
        max_bytes: match compression {
            Compression::None => usize::MAX,
            _ => rules.max_decompressed_bytes,
        },
    };
    let target = rules.recompress.filter(|codec| codec.compression != compression);
    let Some(codec) = target else {
        let walked = walk_compressed(compression, payload, &header, &walk_rules, &mut ())
            .map_err(|e| crc_first(records, walk_refusal(e, compression, rules)))?;
        check_flagged(&walked, rules).map_err(|refusal| crc_first(records, refusal))?;
        let fix = fixed_max_timestamp(&header, &walked, rules);
        return match fix {
            None => Ok(Accepted::AsSent),
            Some(max_timestamp) => {
                verify_crc(records, &header)?;
                let mut batch = records.to_vec();
                seal(&mut batch, compression, max_timestamp)?;
                Ok(Accepted::Rewritten(batch))
            }
        };
    };
    verify_crc(records, &header)?;
    let mut out = Vec::with_capacity(records.len());
    out.extend_from_slice(records.get(..HEADER_BYTES).unwrap_or_default());
    let mut encoder = Encoder::new(codec, out).map_err(codec_failed)?;
    let walked = walk_compressed(compression, payload, &header, &walk_rules, &mut encoder)
        .map_err(|e| walk_refusal(e, compression, rules))?;
    check_flagged(&walked, rules)?;
    let mut batch = encoder.finish().map_err(codec_failed)?;
    let max_timestamp =
        fixed_max_timestamp(&header, &walked, rules).unwrap_or(header.max_timestamp);
    seal(&mut batch, codec.compression, max_timestamp)?;
    if batch.len() > rules.max_batch_bytes {
        return Err(BatchError::TooLarge { size: batch.len(), max: rules.max_batch_bytes }.into());
    }
    Ok(Accepted::Rewritten(batch))
}

/// One whole v2 batch, within the size limit.
fn check_framing(records: &[u8], rules: &Rules<'_>) -> Result<BatchHeader, Refusal> {
    if records.is_empty() {
        return Err(BatchError::Empty.into());
    }
    let header = BatchHeader::parse(records)?;
    let declared = header.total_bytes();
    if declared < records.len() {
        let message = "produce requests may carry exactly one record batch per partition";
        return Err(Refusal::new(INVALID_RECORD, message));
    }
    if declared > records.len() {
        return Err(BatchError::Truncated { needed: declared, available: records.len() }.into());
    }
    if declared > rules.max_batch_bytes {
        return Err(BatchError::TooLarge { size: declared, max: rules.max_batch_bytes }.into());
    }
    Ok(header)
}

/// Header fields a client batch must get right (Kafka's `validateBatch`).
fn check_header(header: &BatchHeader, rules: &Rules<'_>) -> Result<(), Refusal> {
    let compression = header
        .compression()
        .ok_or(BatchError::UnknownCompression { attributes: header.attributes })?;
    if compression == Compression::Zstd && !rules.zstd_allowed {
        let message = "zstd batches need Produce v7 or later";
        return Err(Refusal::new(UNSUPPORTED_COMPRESSION_TYPE, message));
    }
    super::check_client_batch(header)?;
    let span = i64::from(header.last_offset_delta) + 1;
    if header.record_count <= 0 || i64::from(header.record_count) != span {
        return Err(BatchError::InvalidRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        }
        .into());
    }
    if header.base_offset.checked_add(i64::from(header.last_offset_delta)).is_none() {
        return Err(Refusal::new(INVALID_RECORD, "batch has an invalid offset range"));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        let message = format!(
            "invalid sequence number {} in a batch of producer {}",
            header.base_sequence, header.producer_id
        );
        return Err(Refusal::new(INVALID_RECORD, message));
    }
    if header.timestamp_type() == BatchTimestampType::LogAppendTime {
        let message = "producers may not set the timestamp type to LogAppendTime";
        return Err(Refusal::new(INVALID_TIMESTAMP, message));
    }
    Ok(())
}

/// `[now - before, now + after]`, saturating.
fn window(rules: &Rules<'_>) -> (i64, i64) {
    let low = rules.now_ms.saturating_sub(rules.timestamp_before_max_ms.max(0));
    let high = rules.now_ms.saturating_add(rules.timestamp_after_max_ms.max(0));
    (low, high)
}

fn walk_refusal(e: WalkError, compression: Compression, rules: &Rules<'_>) -> Refusal {
    match e {
        WalkError::Structure { index, reason } => Refusal::new(
            INVALID_RECORD,
            format!("record {index} of the batch is invalid: {reason}"),
        ),
        WalkError::TooLarge { max } => Refusal::new(
            MESSAGE_TOO_LARGE,
            format!(
                "the {} batch decompresses to more than {max} bytes (the bound for a \
                 max.message.bytes of {})",
                compression.name(),
                rules.max_batch_bytes
            ),
        ),
        WalkError::Io(e) => Refusal::new(
            CORRUPT_MESSAGE,
            format!("the {} records do not decode: {e}", compression.name()),
        ),
    }
}

/// Kafka's `processRecordErrors`: INVALID_TIMESTAMP if any timestamp is out of the window,
/// else INVALID_RECORD, every flagged record listed.
fn check_flagged(walked: &Walked, rules: &Rules<'_>) -> Result<(), Refusal> {
    if walked.flagged.is_empty() {
        return Ok(());
    }
    let (low, high) = window(rules);
    let record_errors: Vec<RecordError> = walked
        .flagged
        .iter()
        .map(|&(batch_index, flag)| RecordError {
            batch_index,
            message: match flag {
                Flag::Keyless => format!(
                    "Compacted topic cannot accept message without key in topic partition \
                     {}-{}.",
                    rules.topic, rules.partition
                ),
                Flag::Timestamp(ts) => format!(
                    "Timestamp {ts} of message with offset {batch_index} is out of range. The \
                     timestamp should be within [{low}, {high}]"
                ),
            },
        })
        .collect();
    let timestamps = walked.flagged.iter().any(|(_, f)| matches!(f, Flag::Timestamp(_)));
    let (code, message) = if timestamps {
        let message = "One or more records have been rejected due to invalid timestamp";
        (INVALID_TIMESTAMP, message.to_owned())
    } else {
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|e| format!("RecordError(batchIndex={}, message='{}')", e.batch_index, e.message))
            .collect();
        let message = format!(
            "One or more records have been rejected due to {} record errors in total, and \
             only showing the first three errors at most: [{}]",
            record_errors.len(),
            shown.join(", ")
        );
        (INVALID_RECORD, message)
    };
    Err(Refusal { code, message, record_errors })
}

/// Kafka stores a CreateTime batch with its true largest timestamp: `Some` when the header's
/// differs from the records'.
fn fixed_max_timestamp(header: &BatchHeader, walked: &Walked, rules: &Rules<'_>) -> Option<i64> {
    let create_time = !rules.log_append_time;
    (create_time && walked.max_timestamp != header.max_timestamp).then_some(walked.max_timestamp)
}

/// A CRC mismatch wins over any other refusal.
fn crc_first(records: &[u8], refusal: Refusal) -> Refusal {
    match BatchHeader::parse(records).map(|h| verify_crc(records, &h)) {
        Ok(Err(crc)) => crc,
        _ => refusal,
    }
}

fn verify_crc(records: &[u8], header: &BatchHeader) -> Result<(), Refusal> {
    let computed = compute_crc(records)?;
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed }.into());
    }
    Ok(())
}

fn codec_failed(e: std::io::Error) -> Refusal {
    // Compressing into memory does not fail; if a codec library does, say so as Kafka would
    // for any unexpected error.
    Refusal::new(UNKNOWN_SERVER_ERROR, format!("recompression failed: {e}"))
}

const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Finishes a rewritten batch: codec bits, `batchLength`, `maxTimestamp`, CRC-32C.
fn seal(batch: &mut [u8], compression: Compression, max_timestamp: i64) -> Result<(), Refusal> {
    let header = BatchHeader::parse(batch)?;
    let attributes = (header.attributes & !0b111) | compression.attribute_bits();
    let length = i32::try_from(batch.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| Refusal::new(MESSAGE_TOO_LARGE, "rewritten batch too large"))?;
    put(batch, ATTRIBUTES_AT, &attributes.to_be_bytes())?;
    put(batch, BATCH_LENGTH_AT, &length.to_be_bytes())?;
    put(batch, MAX_TIMESTAMP_AT, &max_timestamp.to_be_bytes())?;
    let crc = compute_crc(batch)?;
    put(batch, CRC_AT, &crc.to_be_bytes())
}

fn put(batch: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), Refusal> {
    let available = batch.len();
    let field = batch
        .get_mut(at..at + bytes.len())
        .ok_or(BatchError::Truncated { needed: HEADER_BYTES, available })?;
    field.copy_from_slice(bytes);
    Ok(())
}
