//! Kafka's ShareGroupStatePartitionMetadata record (key type 15 of `__consumer_offsets`):
//! which share-partitions a share group has initialized in `__share_group_state`, is
//! initializing, or is deleting, so DeleteGroups and the share-group offset APIs know them
//! after a restart. Also Kafka's ShareGroupMetadata record (key type 11), the group's epoch,
//! so a restarted coordinator carries on from it.
//!
//! ShareGroupMetadata: key int16 11, then GroupId (string, non-flexible); value int16
//! version 0, then Epoch int32, MetadataHash int64 (Kafka's hash of the subscribed topics'
//! metadata, KIP-1101: Strata does not compute it, writes 0 and ignores it on reading),
//! then empty tagged fields.
//!
//! Key: int16 15, then GroupId (string, non-flexible). Value: int16 version 0, then the
//! flexible fields InitializingTopics and InitializedTopics (compact arrays of TopicId uuid,
//! TopicName compact string, Partitions compact []int32, CreateTimestamp int64, empty tagged
//! fields), DeletingTopics (compact array of TopicId, TopicName, empty tagged fields), then
//! empty tagged fields: the schema of Kafka 4.1
//! (`group-coordinator/src/main/resources/common/message/`; CreateTimestamp came with
//! KAFKA-19204 before 4.1 branched, and the schema is still marked "subject to
//! non-backwards-compatible changes", so a value written without it no longer decodes). A
//! null value is the group's tombstone. Decoding checks every length: bad data is an error,
//! never a panic.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::consumer::records::{Reader, Writer};
use super::records::RecordError;

/// Key type of ShareGroupStatePartitionMetadata.
pub const KEY_TYPE: i16 = 15;
/// Key type of ShareGroupMetadata.
pub const GROUP_KEY_TYPE: i16 = 11;

/// Kafka's ShareGroupMetadataValue (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShareGroupMeta {
    /// The group epoch.
    pub epoch: i32,
    /// Kafka's hash of the subscribed topics' metadata (0: not computed).
    pub metadata_hash: i64,
}
/// Partitions one topic entry may list, at most (a decoder refuses more).
pub const PARTITIONS_MAX: usize = 1 << 16;

/// A topic of the record: its name and partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareTopic {
    /// Topic name.
    pub name: String,
    /// Partitions, sorted.
    pub partitions: BTreeSet<i32>,
    /// When the topic entered this state (Kafka's CreateTimestamp: ms since the epoch).
    pub create_timestamp_ms: i64,
}

/// One share group's share-partitions, by state (a topic id in at most one map of a
/// well-formed record; the decoder keeps what it reads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharePartitions {
    /// Partitions whose InitializeShareGroupState was asked for and not yet answered.
    pub initializing: BTreeMap<Uuid, ShareTopic>,
    /// Partitions with state in `__share_group_state`.
    pub initialized: BTreeMap<Uuid, ShareTopic>,
    /// Topics whose state is being deleted (topic id → name).
    pub deleting: BTreeMap<Uuid, String>,
}

impl SharePartitions {
    /// Whether it lists nothing.
    pub fn is_empty(&self) -> bool {
        self.initializing.is_empty() && self.initialized.is_empty() && self.deleting.is_empty()
    }

    /// Whether `partition` of topic `id` is initialized.
    pub fn is_initialized(&self, id: &Uuid, partition: i32) -> bool {
        self.initialized.get(id).is_some_and(|t| t.partitions.contains(&partition))
    }

    /// Every partition initialized or initializing, by topic (what DeleteGroups deletes).
    pub fn all(&self) -> BTreeMap<Uuid, ShareTopic> {
        let mut all = self.initialized.clone();
        for (id, topic) in &self.initializing {
            let entry = all.entry(*id).or_insert_with(|| ShareTopic {
                name: topic.name.clone(),
                partitions: BTreeSet::new(),
                create_timestamp_ms: topic.create_timestamp_ms,
            });
            entry.partitions.extend(topic.partitions.iter().copied());
        }
        all
    }

    /// Adds `partitions` of topic `id` to `initializing` (and out of `initialized`) at
    /// `now_ms` (the topic's CreateTimestamp there, unless it was listed already).
    pub fn start_initializing(&mut self, id: Uuid, name: &str, partitions: &[i32], now_ms: i64) {
        let (from, to) = (&mut self.initialized, &mut self.initializing);
        move_partitions(from, to, (id, name, now_ms), partitions);
    }

    /// Moves `partitions` of topic `id` to `initialized` (out of `initializing`) at `now_ms`.
    pub fn finish_initializing(&mut self, id: Uuid, name: &str, partitions: &[i32], now_ms: i64) {
        let (from, to) = (&mut self.initializing, &mut self.initialized);
        move_partitions(from, to, (id, name, now_ms), partitions);
    }

    /// Moves topic `id` to `deleting` (out of the other two), as Kafka does before it
    /// deletes the topic's state.
    pub fn start_deleting(&mut self, id: Uuid, name: &str) {
        self.initializing.remove(&id);
        self.initialized.remove(&id);
        self.deleting.insert(id, name.to_owned());
    }

    /// Forgets topic `id` everywhere (its state is deleted).
    pub fn forget(&mut self, id: &Uuid) {
        self.initializing.remove(id);
        self.initialized.remove(id);
        self.deleting.remove(id);
    }
}

/// Moves `partitions` of topic (id, name) between two states; an entry new in `to` is
/// stamped `now_ms`.
fn move_partitions(
    from: &mut BTreeMap<Uuid, ShareTopic>,
    to: &mut BTreeMap<Uuid, ShareTopic>,
    (id, name, now_ms): (Uuid, &str, i64),
    partitions: &[i32],
) {
    if let Some(topic) = from.get_mut(&id) {
        for p in partitions {
            topic.partitions.remove(p);
        }
        if topic.partitions.is_empty() {
            from.remove(&id);
        }
    }
    let topic = to
        .entry(id)
        .or_insert_with(|| ShareTopic { create_timestamp_ms: now_ms, ..ShareTopic::default() });
    topic.name = name.to_owned();
    topic.partitions.extend(partitions.iter().copied());
}

/// The key of `group`'s ShareGroupStatePartitionMetadata record.
pub fn encode_key(out: &mut BytesMut, group: &str) {
    encode_key_of(out, KEY_TYPE, group);
}

/// The key of `group`'s ShareGroupMetadata record.
pub fn encode_group_key(out: &mut BytesMut, group: &str) {
    encode_key_of(out, GROUP_KEY_TYPE, group);
}

/// The value of a ShareGroupMetadata record.
pub fn encode_group_value(v: &ShareGroupMeta) -> Bytes {
    let mut out = BytesMut::with_capacity(15);
    out.put_i16(0);
    out.put_i32(v.epoch);
    out.put_i64(v.metadata_hash);
    out.put_u8(0);
    out.freeze()
}

/// Decodes a ShareGroupMetadata record's value.
pub fn decode_group_value(value: &[u8]) -> Result<ShareGroupMeta, RecordError> {
    let mut r = Reader(value);
    if i16::from_be_bytes(r.array::<2>()?) != 0 {
        return Err(RecordError::Invalid("unknown share group metadata version"));
    }
    let epoch = r.i32()?;
    let metadata_hash = i64::from_be_bytes(r.array::<8>()?);
    r.skip_tags()?;
    if !r.0.is_empty() {
        return Err(RecordError::Invalid("trailing share group metadata bytes"));
    }
    Ok(ShareGroupMeta { epoch, metadata_hash })
}

fn encode_key_of(out: &mut BytesMut, kind: i16, group: &str) {
    out.put_i16(kind);
    let len = group.len().min(i16::MAX as usize);
    out.put_i16(len as i16);
    out.put_slice(group.as_bytes().get(..len).unwrap_or_default());
}

/// The value of a record.
pub fn encode_value(v: &SharePartitions) -> Bytes {
    let mut w = Writer(BytesMut::new());
    w.0.put_i16(0);
    for topics in [&v.initializing, &v.initialized] {
        w.len(topics.len());
        for (id, topic) in topics {
            w.0.put_slice(id.as_bytes());
            w.str(&topic.name);
            w.len(topic.partitions.len());
            for p in &topic.partitions {
                w.i32(*p);
            }
            w.0.put_i64(topic.create_timestamp_ms);
            w.varint(0);
        }
    }
    w.len(v.deleting.len());
    for (id, name) in &v.deleting {
        w.0.put_slice(id.as_bytes());
        w.str(name);
        w.varint(0);
    }
    w.varint(0);
    w.0.freeze()
}

/// Decodes a record's value.
pub fn decode_value(value: &[u8]) -> Result<SharePartitions, RecordError> {
    let mut r = Reader(value);
    if i16::from_be_bytes(r.array::<2>()?) != 0 {
        return Err(RecordError::Invalid("unknown share partition metadata version"));
    }
    let initializing = read_topics(&mut r)?;
    let initialized = read_topics(&mut r)?;
    let mut deleting = BTreeMap::new();
    for _ in 0..r.len()? {
        let id = Uuid::from_bytes(r.array::<16>()?);
        let name = r.str()?;
        r.skip_tags()?;
        deleting.insert(id, name);
    }
    r.skip_tags()?;
    if !r.0.is_empty() {
        return Err(RecordError::Invalid("trailing share partition metadata bytes"));
    }
    Ok(SharePartitions { initializing, initialized, deleting })
}

fn read_topics(r: &mut Reader<'_>) -> Result<BTreeMap<Uuid, ShareTopic>, RecordError> {
    let mut out: BTreeMap<Uuid, ShareTopic> = BTreeMap::new();
    for _ in 0..r.len()? {
        let id = Uuid::from_bytes(r.array::<16>()?);
        let name = r.str()?;
        let count = r.len()?;
        if count > PARTITIONS_MAX {
            return Err(RecordError::Invalid("partition count"));
        }
        let topic = out.entry(id).or_default();
        topic.name = name;
        for _ in 0..count {
            topic.partitions.insert(r.i32()?);
        }
        topic.create_timestamp_ms = i64::from_be_bytes(r.array::<8>()?);
        r.skip_tags()?;
    }
    Ok(out)
}
