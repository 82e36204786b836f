//! Errors from parsing and validating record batches.

/// Kafka error code CORRUPT_MESSAGE.
pub const CORRUPT_MESSAGE: i16 = 2;
/// Kafka error code MESSAGE_TOO_LARGE.
pub const MESSAGE_TOO_LARGE: i16 = 10;
/// Kafka error code INVALID_TIMESTAMP.
pub const INVALID_TIMESTAMP: i16 = 32;
/// Kafka error code UNSUPPORTED_COMPRESSION_TYPE.
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
/// Kafka error code UNSUPPORTED_FOR_MESSAGE_FORMAT.
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
/// Kafka error code INVALID_RECORD.
pub const INVALID_RECORD: i16 = 87;

/// Why a batch (or a buffer of batches) was rejected. Every variant maps to the Kafka error
/// code a Produce response should carry, see [`BatchError::kafka_error_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the header or the declared batch length.
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batchLength` is negative or too small for the v2 header.
    #[error("invalid batch length {batch_length}")]
    InvalidLength {
        /// The declared `batchLength` field.
        batch_length: i32,
    },
    /// The declared size differs from the slice given to `validate`.
    #[error("batch declares {declared} bytes but {actual} were given")]
    LengthMismatch {
        /// `batchLength + 12`.
        declared: usize,
        /// Length of the slice.
        actual: usize,
    },
    /// Magic 0 or 1 (legacy message sets): not supported by this broker.
    #[error("unsupported message format magic {magic}")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// A magic byte that no Kafka version ever used.
    #[error("invalid magic {magic}")]
    InvalidMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The stored CRC-32C does not match the bytes.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of bytes 21..end.
        computed: u32,
    },
    /// The batch is larger than `max.message.bytes`.
    #[error("batch of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Batch size in bytes.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// `recordCount` ≤ 0 or inconsistent with `lastOffsetDelta`.
    #[error("invalid record count {record_count} (last offset delta {last_offset_delta})")]
    InvalidRecordCount {
        /// The `recordCount` field.
        record_count: i32,
        /// The `lastOffsetDelta` field.
        last_offset_delta: i32,
    },
    /// Compression codec 5-7 (reserved).
    #[error("unknown compression in attributes {attributes:#06x}")]
    UnknownCompression {
        /// The raw attributes field.
        attributes: i16,
    },
    /// A produce carried no batch at all.
    #[error("no record batch in the request")]
    Empty,
    /// A client sent a control batch (only transaction coordinators write markers).
    #[error("clients may not write control batches")]
    ControlFromClient,
    /// The records inside the batch could not be decoded (or decompressed).
    #[error("records do not decode: {reason}")]
    Records {
        /// Decoder message.
        reason: String,
    },
}

impl BatchError {
    /// The Kafka error code for a Produce response: CORRUPT_MESSAGE (2) for framing, CRC and
    /// decode errors, MESSAGE_TOO_LARGE (10), UNSUPPORTED_FOR_MESSAGE_FORMAT (43) for magic 0/1,
    /// INVALID_RECORD (87) for bad record counts and empty produce data.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            BatchError::Truncated { .. }
            | BatchError::InvalidLength { .. }
            | BatchError::LengthMismatch { .. }
            | BatchError::InvalidMagic { .. }
            | BatchError::CrcMismatch { .. }
            | BatchError::UnknownCompression { .. }
            | BatchError::Records { .. } => CORRUPT_MESSAGE,
            BatchError::TooLarge { .. } => MESSAGE_TOO_LARGE,
            BatchError::UnsupportedMagic { .. } => UNSUPPORTED_FOR_MESSAGE_FORMAT,
            BatchError::InvalidRecordCount { .. }
            | BatchError::Empty
            | BatchError::ControlFromClient => INVALID_RECORD,
        }
    }
}
