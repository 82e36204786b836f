//! Kafka's `__transaction_state` record formats.
//!
//! Key: TransactionLogKey v0 = `version i16 = 0, transactional_id string`. Value:
//! TransactionLogValue v0 = `version i16 = 0, producer_id i64, producer_epoch i16,
//! transaction_timeout_ms i32, transaction_status i8, transaction_partitions [topic string,
//! partition_ids [i32]] (nullable), transaction_last_update_timestamp_ms i64,
//! transaction_start_timestamp_ms i64`. A null value is a tombstone. Strings are
//! i16-length-prefixed, arrays i32-count-prefixed. Decoding checks every length: bad data is
//! an error, never a panic.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::state::{TxnMeta, TxnState};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// A `__transaction_state` record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum TxnRecordError {
    /// Input ended inside a field.
    #[error("record truncated")]
    Truncated,
    /// A length, version or state is invalid.
    #[error("invalid record: {0}")]
    Invalid(&'static str),
    /// The record batch did not decode.
    #[error("bad record batch: {0}")]
    Batch(String),
}

/// Encodes one transactional id's metadata as (key, value).
pub fn encode(id: &str, meta: &TxnMeta) -> (Bytes, Bytes) {
    let mut key = BytesMut::new();
    key.put_i16(KEY_VERSION);
    put_str(&mut key, id);
    let mut value = BytesMut::new();
    value.put_i16(VALUE_VERSION);
    value.put_i64(meta.producer_id);
    value.put_i16(meta.epoch);
    value.put_i32(meta.timeout_ms);
    value.put_i8(meta.state.code());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &meta.partitions {
        match topics.last_mut() {
            Some((t, parts)) if *t == topic.as_str() => parts.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    value.put_i32(topics.len() as i32);
    for (topic, parts) in topics {
        put_str(&mut value, topic);
        value.put_i32(parts.len() as i32);
        parts.iter().for_each(|p| value.put_i32(*p));
    }
    value.put_i64(meta.update_ms);
    value.put_i64(meta.start_ms);
    (key.freeze(), value.freeze())
}

/// Decodes a record: the transactional id and its metadata (`None` for a tombstone).
pub fn decode(
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(String, Option<TxnMeta>), TxnRecordError> {
    let mut k = Reader(key);
    if k.i16()? != KEY_VERSION {
        return Err(TxnRecordError::Invalid("key version"));
    }
    let id = k.string()?;
    let Some(value) = value else { return Ok((id, None)) };
    let mut v = Reader(value);
    if v.i16()? != VALUE_VERSION {
        return Err(TxnRecordError::Invalid("value version"));
    }
    let producer_id = v.i64()?;
    let epoch = v.i16()?;
    let timeout_ms = v.i32()?;
    let state = TxnState::from_code(v.i8()?).ok_or(TxnRecordError::Invalid("state"))?;
    let mut partitions = BTreeSet::new();
    let topics = v.i32()?;
    for _ in 0..topics.max(0) {
        let topic = v.string()?;
        let count = v.i32()?;
        if count < 0 || count as usize > v.0.len() / 4 {
            return Err(TxnRecordError::Invalid("partition count"));
        }
        for _ in 0..count {
            partitions.insert((topic.clone(), v.i32()?));
        }
    }
    let update_ms = v.i64()?;
    let start_ms = v.i64()?;
    let meta = TxnMeta {
        producer_id,
        epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
        last_epoch: -1,
    };
    Ok((id, Some(meta)))
}

/// One record batch holding `id`'s metadata.
pub fn encode_batch(id: &str, meta: &TxnMeta, timestamp_ms: i64) -> Result<Bytes, TxnRecordError> {
    let (key, value) = encode(id, meta);
    batch_of(key, Some(value), timestamp_ms)
}

/// One record batch holding `id`'s tombstone (its key and a null value): the id expired.
/// Replay forgets the id, and compaction drops the id's records (and then the tombstone).
pub fn encode_tombstone_batch(id: &str, timestamp_ms: i64) -> Result<Bytes, TxnRecordError> {
    let mut key = BytesMut::new();
    key.put_i16(KEY_VERSION);
    put_str(&mut key, id);
    batch_of(key.freeze(), None, timestamp_ms)
}

fn batch_of(key: Bytes, value: Option<Bytes>, timestamp_ms: i64) -> Result<Bytes, TxnRecordError> {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(key),
        value,
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &[record], &options)
        .map_err(|e| TxnRecordError::Batch(e.to_string()))?;
    Ok(out.freeze())
}

/// A decoded record with its offset.
pub type DecodedTxnRecord = (i64, Result<(String, Option<TxnMeta>), TxnRecordError>);

/// Every record of the whole batches in `data`, with offsets.
pub fn decode_batches(data: &Bytes) -> Result<Vec<DecodedTxnRecord>, TxnRecordError> {
    let mut buf = data.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf)
            .map_err(|e| TxnRecordError::Batch(e.to_string()))?;
        for record in set.records.into_iter().filter(|r| !r.control) {
            let Some(key) = record.key else { continue };
            out.push((record.offset, decode(&key, record.value.as_deref())));
        }
    }
    Ok(out)
}

fn put_str(out: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    out.put_i16(len as i16);
    out.put_slice(&bytes[..len]);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], TxnRecordError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(TxnRecordError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }
    fn i8(&mut self) -> Result<i8, TxnRecordError> {
        self.take().map(i8::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, TxnRecordError> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, TxnRecordError> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, TxnRecordError> {
        self.take().map(i64::from_be_bytes)
    }
    fn string(&mut self) -> Result<String, TxnRecordError> {
        let len = usize::try_from(self.i16()?).map_err(|_| TxnRecordError::Invalid("string"))?;
        let bytes = self.0.get(..len).ok_or(TxnRecordError::Truncated)?;
        self.0 = self.0.get(len..).unwrap_or_default();
        String::from_utf8(bytes.to_vec()).map_err(|_| TxnRecordError::Invalid("utf-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_garbage_is_an_error() {
        let mut meta = TxnMeta::new(42, 60_000, 1_000);
        meta.epoch = 3;
        meta.state = TxnState::PrepareCommit;
        meta.partitions.insert(("a".into(), 0));
        meta.partitions.insert(("a".into(), 2));
        meta.partitions.insert(("b".into(), 1));
        meta.start_ms = 900;
        let (key, value) = encode("txn-1", &meta);
        let (id, back) = decode(&key, Some(&value)).unwrap();
        assert_eq!(id, "txn-1");
        assert_eq!(back, Some(meta.clone()));
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_err());
        }
        assert!(decode(&key[..3], None).is_err());
        let batch = encode_batch("txn-1", &meta, 5).unwrap();
        let decoded = decode_batches(&batch).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].1.as_ref().unwrap().1, Some(meta));
    }

    #[test]
    fn a_tombstone_is_the_key_with_a_null_value() {
        let batch = encode_tombstone_batch("txn-1", 5).unwrap();
        let decoded = decode_batches(&batch).unwrap();
        assert_eq!(decoded.len(), 1);
        let (id, meta) = decoded[0].1.as_ref().unwrap();
        assert_eq!((id.as_str(), meta), ("txn-1", &None));
        let (key, _) = encode("txn-1", &TxnMeta::new(1, 1, 1));
        let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert_eq!(set.records[0].key.as_deref(), Some(&key[..]), "the same key as its values");
        assert!(set.records[0].value.is_none());
    }
}
