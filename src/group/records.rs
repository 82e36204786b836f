//! Kafka's `__consumer_offsets` record formats, so the topic reads like Kafka's.
//!
//! Keys start with an i16 version: 0 or 1 is an OffsetCommitKey `(group, topic, partition)`,
//! 2 a GroupMetadataKey `(group)`. Values are OffsetCommitValue v3 `(offset, leader_epoch,
//! metadata, commit_timestamp)` and GroupMetadataValue v3 `(protocol_type, generation,
//! protocol, leader, current_state_timestamp, members[])`. A null value is a tombstone.
//! Strings are i16-length-prefixed, bytes i32-length-prefixed, non-flexible encoding.
//! Key types 3-8 are KIP-848 consumer group records, whose values
//! [`super::consumer::records`] reads and writes; key types 11 and 15 are a share group's
//! ShareGroupMetadata and ShareGroupStatePartitionMetadata ([`super::share_meta`]).
//! Decoding checks every length against the input: bad data is an error, never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::consumer::records as consumer;
use super::share_meta::{self, ShareGroupMeta, SharePartitions};
use super::state::{Committed, GroupSnapshot, Member};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// A record of `__consumer_offsets` that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Input ended inside a field.
    #[error("record truncated")]
    Truncated,
    /// A length or version is invalid.
    #[error("invalid record: {0}")]
    Invalid(&'static str),
    /// The record batch did not decode.
    #[error("bad record batch: {0}")]
    Batch(String),
}

/// One decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq)]
pub enum OffsetsRecord {
    /// A committed offset, or its deletion (`None`).
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The commit, or `None` for a tombstone.
        value: Option<Committed>,
    },
    /// Group metadata, or the group's deletion (`None`).
    Group {
        /// Group id.
        group: String,
        /// The metadata, or `None` for a tombstone.
        value: Option<GroupSnapshot>,
    },
    /// A KIP-848 consumer group record (key types 3-8, see [`super::consumer::records`]):
    /// its value bytes, or `None` for a tombstone.
    Consumer {
        /// Group id.
        group: String,
        /// Key type.
        kind: i16,
        /// Member id of the member records.
        member: Option<String>,
        /// The value (version prefix included), or `None` for a tombstone.
        value: Option<Bytes>,
    },
    /// A share group's ShareGroupMetadata (key type 11: its epoch), or its deletion.
    ShareGroup {
        /// Group id.
        group: String,
        /// The group's metadata, or `None` for a tombstone.
        value: Option<ShareGroupMeta>,
    },
    /// A share group's ShareGroupStatePartitionMetadata (key type 15), or its deletion.
    SharePartitions {
        /// Group id.
        group: String,
        /// The share-partitions, or `None` for a tombstone.
        value: Option<SharePartitions>,
    },
}

impl OffsetsRecord {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            OffsetsRecord::Offset { group, .. }
            | OffsetsRecord::Group { group, .. }
            | OffsetsRecord::Consumer { group, .. }
            | OffsetsRecord::ShareGroup { group, .. }
            | OffsetsRecord::SharePartitions { group, .. } => group,
        }
    }

    /// Encodes the record as (key, value).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            OffsetsRecord::Offset { group, topic, partition, value } => {
                key.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                (key.freeze(), value.as_ref().map(encode_offset))
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(GROUP_KEY_VERSION);
                put_str(&mut key, group);
                (key.freeze(), value.as_ref().map(encode_group))
            }
            OffsetsRecord::Consumer { group, kind, member, value } => {
                key.put_i16(*kind);
                put_str(&mut key, group);
                if let Some(member) = member {
                    put_str(&mut key, member);
                }
                (key.freeze(), value.clone())
            }
            OffsetsRecord::ShareGroup { group, value } => {
                share_meta::encode_group_key(&mut key, group);
                (key.freeze(), value.as_ref().map(share_meta::encode_group_value))
            }
            OffsetsRecord::SharePartitions { group, value } => {
                share_meta::encode_key(&mut key, group);
                (key.freeze(), value.as_ref().map(share_meta::encode_value))
            }
        }
    }

    /// Decodes a (key, value) pair.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<OffsetsRecord, RecordError> {
        let mut k = Reader(key);
        match k.i16()? {
            0 | 1 => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = value.map(decode_offset).transpose()?;
                Ok(OffsetsRecord::Offset { group, topic, partition, value })
            }
            2 => {
                let group = k.string()?;
                let value = value.map(decode_group).transpose()?;
                Ok(OffsetsRecord::Group { group, value })
            }
            kind if consumer::is_consumer_key(kind) => {
                let group = k.string()?;
                let member = if consumer::has_member(kind) { Some(k.string()?) } else { None };
                let value = value.map(Bytes::copy_from_slice);
                Ok(OffsetsRecord::Consumer { group, kind, member, value })
            }
            share_meta::GROUP_KEY_TYPE => {
                let group = k.string()?;
                let value = value.map(share_meta::decode_group_value).transpose()?;
                Ok(OffsetsRecord::ShareGroup { group, value })
            }
            share_meta::KEY_TYPE => {
                let group = k.string()?;
                let value = value.map(share_meta::decode_value).transpose()?;
                Ok(OffsetsRecord::SharePartitions { group, value })
            }
            _ => Err(RecordError::Invalid("unknown key version")),
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    out.put_i16(len);
    out.put_slice(s.as_bytes().get(..len as usize).unwrap_or_default());
}

fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    out.put_slice(b);
}

fn encode_offset(c: &Committed) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(OFFSET_VALUE_VERSION);
    out.put_i64(c.offset);
    out.put_i32(c.leader_epoch);
    put_str(&mut out, &c.metadata);
    out.put_i64(c.commit_timestamp_ms);
    out.freeze()
}

fn decode_offset(value: &[u8]) -> Result<Committed, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=OFFSET_VALUE_VERSION).contains(&version) {
        return Err(RecordError::Invalid("unknown offset value version"));
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    if version == 1 {
        r.i64()?; // expire timestamp
    }
    Ok(Committed { offset, leader_epoch, metadata, commit_timestamp_ms })
}

fn encode_group(g: &GroupSnapshot) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut out, g.protocol_type.as_deref().unwrap_or(""));
    out.put_i32(g.generation);
    put_opt_str(&mut out, g.protocol.as_deref());
    put_opt_str(&mut out, g.leader.as_deref());
    out.put_i64(g.state_timestamp_ms);
    out.put_i32(i32::try_from(g.members.len()).unwrap_or(i32::MAX));
    let protocol = g.protocol.as_deref().unwrap_or("");
    for m in &g.members {
        put_str(&mut out, &m.id);
        put_opt_str(&mut out, m.instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        let subscription = m.protocols.iter().find(|(n, _)| n == protocol).map(|(_, b)| b);
        put_bytes(&mut out, subscription.map_or(&[][..], |b| &b[..]));
        put_bytes(&mut out, &m.assignment);
    }
    out.freeze()
}

fn decode_group(value: &[u8]) -> Result<GroupSnapshot, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return Err(RecordError::Invalid("unknown group value version"));
    }
    let protocol_type = Some(r.string()?).filter(|s| !s.is_empty());
    let generation = r.i32()?;
    let protocol = r.opt_string()?;
    let leader = r.opt_string()?;
    let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    // Each member takes at least 20 bytes: a bad count cannot make us allocate much.
    let count = usize::try_from(count).map_err(|_| RecordError::Invalid("member count"))?;
    if count > r.0.len() / 20 {
        return Err(RecordError::Invalid("member count"));
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(decode_member(&mut r, version, protocol.as_deref())?);
    }
    Ok(GroupSnapshot { protocol_type, generation, protocol, leader, state_timestamp_ms, members })
}

fn decode_member(
    r: &mut Reader<'_>,
    version: i16,
    protocol: Option<&str>,
) -> Result<Member, RecordError> {
    let id = r.string()?;
    let instance_id = if version >= 3 { r.opt_string()? } else { None };
    let client_id = r.string()?;
    let client_host = r.string()?;
    let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
    let session_timeout_ms = r.i32()?;
    let subscription = r.bytes()?;
    let assignment = r.bytes()?;
    let rebalance_timeout_ms =
        if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
    Ok(Member {
        id,
        instance_id,
        client_id,
        client_host,
        session_timeout_ms,
        rebalance_timeout_ms,
        protocols: vec![(protocol.unwrap_or("").to_owned(), subscription)],
        assignment,
        awaiting_join: false,
        awaiting_sync: false,
        heartbeat_deadline_ms: 0,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn opt_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        let s = std::str::from_utf8(raw).map_err(|_| RecordError::Invalid("string not UTF-8"))?;
        Ok(Some(s.to_owned()))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.opt_string()?.ok_or(RecordError::Invalid("null string"))
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }
}

/// Encodes records as one uncompressed RecordBatch v2 (offsets relative to 0; the log assigns
/// the real ones).
pub fn encode_batch(records: &[OffsetsRecord], timestamp_ms: i64) -> Result<Bytes, RecordError> {
    encode_batch_for(records, timestamp_ms, None)
}

/// Like [`encode_batch`], as a transactional batch of producer `(id, epoch)` without
/// sequence numbers (TxnOffsetCommit: the offsets apply when the commit marker follows).
pub fn encode_batch_for(
    records: &[OffsetsRecord],
    timestamp_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, RecordError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.encode();
            Record {
                transactional: producer.is_some(),
                control: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // sequence = offset - 1 keeps every record in one batch (see platform notes).
                sequence: i as i32 - 1,
                timestamp: timestamp_ms,
                key: Some(key),
                value,
                headers: Default::default(),
                delete_horizon: false,
            }
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &records, &options)
        .map_err(|e| RecordError::Batch(e.to_string()))?;
    Ok(out.freeze())
}

/// A record's offset and what it decoded to.
pub type DecodedRecord = (i64, Result<OffsetsRecord, RecordError>);

/// Decodes every record of the whole batches in `data`, with its offset. Records without a
/// key are skipped; a record that does not decode is returned as an error in its place.
pub fn decode_batches(data: &Bytes) -> Result<Vec<DecodedRecord>, RecordError> {
    let items = decode_log(data)?;
    Ok(items
        .into_iter()
        .filter_map(|item| match item {
            LogItem::Record { offset, producer: None, record } => Some((offset, record)),
            _ => None,
        })
        .collect())
}

/// One thing found in `__consumer_offsets`.
#[derive(Debug)]
pub enum LogItem {
    /// A record; `producer` is the producer id of a transactional batch.
    Record {
        /// Its offset.
        offset: i64,
        /// Producer id of a transactional record (TxnOffsetCommit), else `None`.
        producer: Option<i64>,
        /// What it decoded to.
        record: Result<OffsetsRecord, RecordError>,
    },
    /// A transaction marker of `producer`: commit (true) or abort.
    Marker {
        /// Its offset.
        offset: i64,
        /// The producer id.
        producer: i64,
        /// Commit or abort.
        commit: bool,
    },
}

/// Decodes every record and transaction marker of the whole batches in `data`.
pub fn decode_log(data: &Bytes) -> Result<Vec<LogItem>, RecordError> {
    let mut buf = data.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set =
            RecordBatchDecoder::decode(&mut buf).map_err(|e| RecordError::Batch(e.to_string()))?;
        for record in set.records {
            let Some(key) = record.key else {
                continue;
            };
            let offset = record.offset;
            if record.control {
                let kind = key.get(2..4).map(|k| i16::from_be_bytes([k[0], k[1]]));
                if let Some(kind @ 0..=1) = kind {
                    out.push(LogItem::Marker {
                        offset,
                        producer: record.producer_id,
                        commit: kind == 1,
                    });
                }
                continue;
            }
            let producer = record.transactional.then_some(record.producer_id);
            let decoded = OffsetsRecord::decode(&key, record.value.as_deref());
            out.push(LogItem::Record { offset, producer, record: decoded });
        }
    }
    Ok(out)
}
