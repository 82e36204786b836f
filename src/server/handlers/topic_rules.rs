//! What clients may write to a topic: the internal topics are the broker's own, and every
//! other topic's configs become the rules its leader checks produce data against.
//!
//! [`admit`] is the one call the produce handler makes per partition: internal topics are
//! refused (Kafka: "Cannot append to internal topic", INVALID_TOPIC_EXCEPTION), then the
//! records go through [`record_batch::validate_produce`] under the topic's rules
//! (`max.message.bytes`, `cleanup.policy`, `message.timestamp.*`, `compression.*`). It runs on
//! the connection's shard, before the append is routed, so its cost spreads with the
//! connections. The broker's own writers (group and transaction coordinators, followers,
//! WriteTxnMarkers) append to logs directly and never come here.

use bytes::{Bytes, BytesMut};

use crate::config::{limits, BrokerConfig};
use crate::controller::TopicMeta;
use crate::protocol::ResponseError as E;
use crate::record_batch::{self, Accepted, Codec, Compression, Refusal, Rules};
use crate::storage::OwnedRecords;

/// Whether `topic` is one of the broker's internal topics.
pub(crate) fn is_internal(topic: &str) -> bool {
    topic == crate::group::OFFSETS_TOPIC
        || topic == crate::txn::TXN_TOPIC
        || topic == crate::share::STATE_TOPIC
}

/// Produce v7 is the first that may carry zstd batches.
const ZSTD_PRODUCE_VERSION_MIN: i16 = 7;

/// One partition's produce data, checked: the bytes to append (as sent, or rewritten), or why
/// not. Refusals are counted and logged (rate-limited).
pub(crate) fn admit(
    broker: &BrokerConfig,
    topic: &TopicMeta,
    partition: i32,
    records: OwnedRecords,
    version: i16,
    now_ms: i64,
) -> Result<OwnedRecords, Refusal> {
    if is_internal(&topic.name) {
        crate::refused!(WARN, "produce_to_internal_topic", topic = %topic.name, partition,
            "refused a client's produce to an internal topic");
        let message = format!("Cannot append to internal topic {}", topic.name);
        return Err(Refusal {
            code: E::InvalidTopicException.code(),
            message,
            record_errors: Vec::new(),
        });
    }
    let rules = rules(broker, topic, partition, version, now_ms);
    match record_batch::validate_produce(&records.bytes, &rules) {
        Ok(Accepted::AsSent) => Ok(records),
        // A fresh allocation: taken over, not copied.
        Ok(Accepted::Rewritten(batch)) => Ok(OwnedRecords::own(BytesMut::from(Bytes::from(batch)))),
        Err(refusal) => {
            crate::refused!(WARN, "invalid_record_batch", topic = %topic.name, partition,
                code = refusal.code, "refused produce data: {}", refusal.message);
            Err(refusal)
        }
    }
}

/// The topic's record rules: its overrides, else the broker's defaults.
fn rules<'a>(
    broker: &BrokerConfig,
    topic: &'a TopicMeta,
    partition: i32,
    version: i16,
    now_ms: i64,
) -> Rules<'a> {
    let configs = &topic.configs;
    let long = |name: &str, default: i64| {
        configs.get(name).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default)
    };
    let max_batch_bytes = configs
        .get("max.message.bytes")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(broker.max_message_bytes);
    let policy = configs.get("cleanup.policy").unwrap_or(&broker.cleanup_policy);
    let log_append_time = match configs.get("message.timestamp.type") {
        Some(v) => v == "LogAppendTime",
        None => broker.log_append_time,
    };
    Rules {
        topic: &topic.name,
        partition,
        max_batch_bytes,
        max_decompressed_bytes: max_batch_bytes
            .saturating_mul(limits::DECOMPRESSED_BATCH_RATIO_MAX)
            .min(i32::MAX as usize),
        compacted: policy.split(',').any(|p| p.trim() == "compact"),
        log_append_time,
        timestamp_before_max_ms: long(
            "message.timestamp.before.max.ms",
            broker.message_timestamp_before_max_ms,
        ),
        timestamp_after_max_ms: long(
            "message.timestamp.after.max.ms",
            broker.message_timestamp_after_max_ms,
        ),
        now_ms,
        recompress: target_codec(broker, topic),
        zstd_allowed: version >= ZSTD_PRODUCE_VERSION_MIN,
    }
}

/// `compression.type` and its level: `None` for `producer`.
fn target_codec(broker: &BrokerConfig, topic: &TopicMeta) -> Option<Codec> {
    let configs = &topic.configs;
    let name = configs.get("compression.type").unwrap_or(&broker.compression_type);
    let compression = Compression::from_name(name.trim())?;
    let level = |key: &str, default: i32| {
        configs.get(key).and_then(|v| v.trim().parse::<i32>().ok()).unwrap_or(default)
    };
    let level = match compression {
        Compression::None | Compression::Snappy => None,
        Compression::Gzip => Some(level("compression.gzip.level", broker.compression_gzip_level)),
        Compression::Lz4 => Some(level("compression.lz4.level", broker.compression_lz4_level)),
        Compression::Zstd => Some(level("compression.zstd.level", broker.compression_zstd_level)),
    };
    Some(Codec { compression, level })
}
