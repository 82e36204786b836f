//! Test-only batch builder on top of kafka-protocol's encoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Record `i` of a batch from no producer: offset `i`, no key, no headers.
fn record(i: usize, timestamp: i64, value: Option<Bytes>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        // sequence = offset - 1 keeps every record in one batch.
        sequence: i as i32 - 1,
        timestamp,
        key: None,
        value,
        headers: IndexMap::new(),
    }
}

fn encode(records: &[Record], compression: Compression) -> Bytes {
    let options = RecordEncodeOptions { version: 2, compression };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
    buf.freeze()
}

/// Encodes ONE batch of `count` records with values of `value_bytes` bytes, base offset 0,
/// timestamps `timestamp_ms + i`.
pub(crate) fn batch(count: usize, value_bytes: usize, timestamp_ms: i64) -> Bytes {
    batch_with(count, value_bytes, timestamp_ms, Compression::None)
}

/// Like [`batch`] with a compression codec.
pub(crate) fn batch_with(
    count: usize,
    value_bytes: usize,
    timestamp_ms: i64,
    compression: Compression,
) -> Bytes {
    let value = Bytes::from(vec![b'v'; value_bytes]);
    let records: Vec<Record> =
        (0..count).map(|i| record(i, timestamp_ms + i as i64, Some(value.clone()))).collect();
    encode(&records, compression)
}

/// An idempotent producer's batch: `count` records of 100 bytes with sequences
/// `base_sequence..`.
pub(crate) fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: usize,
) -> Bytes {
    let value = Bytes::from(vec![b'i'; 100]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            producer_id,
            producer_epoch: epoch,
            sequence: base_sequence + i as i32,
            ..record(i, 1_000 + i as i64, Some(value.clone()))
        })
        .collect();
    encode(&records, Compression::None)
}

/// ONE uncompressed batch at base offset 0 with these `(key, value)` records (`None` = null).
pub(crate) fn keyed_batch(records: &[(Option<&str>, Option<&str>)], timestamp_ms: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            ..record(i, timestamp_ms, value.map(|v| Bytes::copy_from_slice(v.as_bytes())))
        })
        .collect();
    encode(&records, Compression::None)
}

/// A transactional producer's batch: `count` records of 100 bytes with sequences
/// `base_sequence..`.
pub(crate) fn transactional_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    count: usize,
) -> Bytes {
    let value = Bytes::from(vec![b't'; 100]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: true,
            producer_id,
            producer_epoch: epoch,
            sequence: base_sequence + i as i32,
            ..record(i, 1_000 + i as i64, Some(value.clone()))
        })
        .collect();
    encode(&records, Compression::None)
}

/// ONE transactional batch of one keyed record from (producer, epoch) at sequence `seq`.
pub(crate) fn keyed_transactional_batch(
    producer_id: i64,
    epoch: i16,
    seq: i32,
    key: &str,
    value: &str,
) -> Bytes {
    let record = Record {
        transactional: true,
        producer_id,
        producer_epoch: epoch,
        sequence: seq,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        ..record(0, 1_000, Some(Bytes::copy_from_slice(value.as_bytes())))
    };
    encode(&[record], Compression::None)
}
