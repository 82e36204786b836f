//! `__share_group_state` records: Kafka's share-coordinator keys and values (ShareSnapshotKey
//! and ShareUpdateKey, ShareSnapshotValue and ShareUpdateValue), so compaction keeps the
//! latest snapshot of each share-partition and a replay reads them as Kafka would.
//!
//! Written by hand: kafka-protocol 0.18 generates the wire APIs, not the coordinator record
//! schemas (`share-coordinator/src/main/resources/common/message/`). Layout: the key is an
//! int16 record type (0 snapshot, 1 update) then the non-flexible fields GroupId (string),
//! TopicId (uuid), Partition (int32); the value is an int16 version (0) then the flexible
//! fields: SnapshotEpoch, StateEpoch (snapshot only), LeaderEpoch, StartOffset, StateBatches
//! (compact array of FirstOffset, LastOffset, DeliveryState, DeliveryCount, each with empty
//! tagged fields), then empty tagged fields. A decoder refuses anything else cleanly.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::partition::StateBatch;

/// Record type of a snapshot key.
pub const SNAPSHOT: i16 = 0;
/// Record type of an update key.
pub const UPDATE: i16 = 1;
/// State batches one record may hold, at most (a decoder refuses more).
pub const BATCHES_MAX: usize = 1 << 16;

/// The share-partition a record is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShareKey {
    /// Share group id.
    pub group: String,
    /// Topic id.
    pub topic_id: uuid::Uuid,
    /// Partition.
    pub partition: i32,
}

/// A snapshot (the whole state) or an update (a change since the last snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareState {
    /// True: ShareSnapshot; false: ShareUpdate.
    pub snapshot: bool,
    /// Which snapshot an update follows.
    pub snapshot_epoch: i32,
    /// The state epoch (snapshots only; 0 for updates).
    pub state_epoch: i32,
    /// The partition's leader epoch when written.
    pub leader_epoch: i32,
    /// The share-partition start offset (-1 in an update: unchanged).
    pub start_offset: i64,
    /// The runs it sets.
    pub batches: Vec<StateBatch>,
}

impl ShareState {
    /// KIP-1226's delivery-complete count: the offsets at or past the start offset whose
    /// delivery is complete (acknowledged or archived), from the batches; -1 when there is no
    /// start offset yet (initialized without one). Saturates at `i32::MAX`.
    pub fn delivery_complete_count(&self) -> i32 {
        if self.start_offset < 0 {
            return -1;
        }
        let count: i64 = self
            .batches
            .iter()
            .filter(|b| b.delivery_complete())
            .map(|b| (b.last_offset - b.first_offset.max(self.start_offset) + 1).max(0))
            .fold(0, i64::saturating_add);
        i32::try_from(count).unwrap_or(i32::MAX)
    }
}

/// Why a record does not decode.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The key of `key` for a record of type `kind`.
pub fn encode_key(kind: i16, key: &ShareKey) -> Bytes {
    let mut out = BytesMut::with_capacity(24 + key.group.len());
    out.put_i16(kind);
    out.put_i16(key.group.len().min(i16::MAX as usize) as i16);
    out.put_slice(&key.group.as_bytes()[..key.group.len().min(i16::MAX as usize)]);
    out.put_slice(key.topic_id.as_bytes());
    out.put_i32(key.partition);
    out.freeze()
}

/// The record type and share-partition of a key.
pub fn decode_key(mut buf: &[u8]) -> Result<(i16, ShareKey), Malformed> {
    let kind = get_i16(&mut buf)?;
    if kind != SNAPSHOT && kind != UPDATE {
        return Err(Malformed("not a share state key"));
    }
    let len = usize::try_from(get_i16(&mut buf)?).map_err(|_| Malformed("group length"))?;
    if buf.remaining() < len + 20 {
        return Err(Malformed("short key"));
    }
    let group = std::str::from_utf8(&buf[..len]).map_err(|_| Malformed("group utf-8"))?;
    let group = group.to_owned();
    buf.advance(len);
    let mut id = [0u8; 16];
    buf.copy_to_slice(&mut id);
    let partition = buf.get_i32();
    if buf.has_remaining() {
        return Err(Malformed("trailing key bytes"));
    }
    Ok((kind, ShareKey { group, topic_id: uuid::Uuid::from_bytes(id), partition }))
}

/// The value of a state record.
pub fn encode_value(state: &ShareState) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + state.batches.len() * 20);
    out.put_i16(0);
    out.put_i32(state.snapshot_epoch);
    if state.snapshot {
        out.put_i32(state.state_epoch);
    }
    out.put_i32(state.leader_epoch);
    out.put_i64(state.start_offset);
    put_uvarint(&mut out, state.batches.len() as u64 + 1);
    for b in &state.batches {
        out.put_i64(b.first_offset);
        out.put_i64(b.last_offset);
        out.put_i8(b.delivery_state);
        out.put_i16(b.delivery_count);
        out.put_u8(0);
    }
    out.put_u8(0);
    out.freeze()
}

/// Decodes the value of a record whose key had type `kind`.
pub fn decode_value(kind: i16, mut buf: &[u8]) -> Result<ShareState, Malformed> {
    let snapshot = kind == SNAPSHOT;
    if get_i16(&mut buf)? != 0 {
        return Err(Malformed("unknown value version"));
    }
    let snapshot_epoch = get_i32(&mut buf)?;
    let state_epoch = if snapshot { get_i32(&mut buf)? } else { 0 };
    let leader_epoch = get_i32(&mut buf)?;
    let start_offset = get_i64(&mut buf)?;
    let count = get_uvarint(&mut buf)?.checked_sub(1).ok_or(Malformed("null batches"))?;
    let count = usize::try_from(count).map_err(|_| Malformed("batch count"))?;
    // Each batch takes 20 bytes: a lying count cannot make us allocate.
    if count > BATCHES_MAX || count.saturating_mul(20) > buf.remaining() {
        return Err(Malformed("batch count"));
    }
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        let first_offset = get_i64(&mut buf)?;
        let last_offset = get_i64(&mut buf)?;
        if buf.remaining() < 3 {
            return Err(Malformed("short batch"));
        }
        let delivery_state = buf.get_i8();
        let delivery_count = buf.get_i16();
        skip_tags(&mut buf)?;
        batches.push(StateBatch { first_offset, last_offset, delivery_state, delivery_count });
    }
    skip_tags(&mut buf)?;
    if buf.has_remaining() {
        return Err(Malformed("trailing value bytes"));
    }
    Ok(ShareState { snapshot, snapshot_epoch, state_epoch, leader_epoch, start_offset, batches })
}

fn get_i16(buf: &mut &[u8]) -> Result<i16, Malformed> {
    if buf.remaining() < 2 {
        return Err(Malformed("short"));
    }
    Ok(buf.get_i16())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, Malformed> {
    if buf.remaining() < 4 {
        return Err(Malformed("short"));
    }
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, Malformed> {
    if buf.remaining() < 8 {
        return Err(Malformed("short"));
    }
    Ok(buf.get_i64())
}

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn get_uvarint(buf: &mut &[u8]) -> Result<u64, Malformed> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(Malformed("short varint"));
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Malformed("varint too long"))
}

/// Skips a tagged-field section (we write none and keep none we read).
fn skip_tags(buf: &mut &[u8]) -> Result<(), Malformed> {
    let count = get_uvarint(buf)?;
    for _ in 0..count.min(1 << 16) {
        let _tag = get_uvarint(buf)?;
        let len = usize::try_from(get_uvarint(buf)?).map_err(|_| Malformed("tag length"))?;
        if buf.remaining() < len {
            return Err(Malformed("short tag"));
        }
        buf.advance(len);
    }
    Ok(())
}

/// One record batch holding one state record of `key`.
pub fn encode_batch(
    key: &ShareKey,
    state: &ShareState,
    timestamp_ms: i64,
) -> Result<Bytes, String> {
    let kind = if state.snapshot { SNAPSHOT } else { UPDATE };
    encode_record(encode_key(kind, key), Some(encode_value(state)), timestamp_ms)
}

/// One record batch holding the tombstone of `key` (DeleteShareGroupState): its snapshot key
/// with a null value, so compaction drops the state and a replay forgets what came before.
pub fn encode_tombstone(key: &ShareKey, timestamp_ms: i64) -> Result<Bytes, String> {
    encode_record(encode_key(SNAPSHOT, key), None, timestamp_ms)
}

fn encode_record(key: Bytes, value: Option<Bytes>, timestamp_ms: i64) -> Result<Bytes, String> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
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
    RecordBatchEncoder::encode(&mut out, &[record], &options).map_err(|e| e.to_string())?;
    Ok(out.freeze())
}

/// The state records of `want` in the whole batches of `data`, in log order, with the offset
/// after the last record read; records of other keys, control records and records that do
/// not decode are skipped (a record that does not decode is counted in the third value). A
/// tombstone of `want` drops the records before it, so the state of a deleted
/// share-partition is empty ([`Decoded::deleted`] tells a caller reading in rounds to drop
/// what earlier rounds found).
pub fn decode_batches(data: &Bytes, want: &ShareKey) -> Result<Decoded, String> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut buf = data.clone();
    let mut out = Decoded { states: Vec::new(), next: -1, bad: 0, deleted: false };
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| e.to_string())?;
        for record in set.records {
            out.next = out.next.max(record.offset + 1);
            if record.control {
                continue;
            }
            let Some(key) = record.key else { continue };
            match (decode_key(&key), record.value) {
                (Ok((_, k)), None) if &k == want => {
                    out.states.clear();
                    out.deleted = true;
                }
                (Ok((kind, k)), Some(value)) if &k == want => match decode_value(kind, &value) {
                    Ok(state) => out.states.push(state),
                    Err(_) => out.bad += 1,
                },
                (Ok(_), _) => {}
                (Err(_), _) => out.bad += 1,
            }
        }
    }
    Ok(out)
}

/// What [`decode_batches`] found.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The records of the share-partition, in log order, after its last tombstone.
    pub states: Vec<ShareState>,
    /// The offset after the last record read (-1: none).
    pub next: i64,
    /// Records that do not decode.
    pub bad: usize,
    /// Whether a tombstone of the share-partition was read (`states` follow the last one).
    pub deleted: bool,
}
