//! A consumer group as Kafka's `__consumer_offsets` records (group-coordinator JSON schemas,
//! value version 0, flexible encoding): the whole group is an [`Image`], one value per key,
//! and the coordinator writes what changed between two images (a tombstone for a key that
//! went away). Start-up replay collects the latest value of each key and [`restore`]s.
//!
//! | key type | record                                  | key fields          |
//! |----------|-----------------------------------------|---------------------|
//! | 3        | ConsumerGroupMetadata (group epoch)     | group               |
//! | 5        | ConsumerGroupMemberMetadata             | group, member       |
//! | 6        | ConsumerGroupTargetAssignmentMetadata   | group               |
//! | 7        | ConsumerGroupTargetAssignmentMember     | group, member       |
//! | 8        | ConsumerGroupCurrentMemberAssignment    | group, member       |
//!
//! A member speaking the classic protocol carries ClassicMemberMetadata (session timeout
//! and JoinGroup protocols) in tagged field 0 of its ConsumerGroupMemberMetadataValue.
//! (4, ConsumerGroupPartitionMetadata, is not written: Kafka 4.1 replaced it by a hash in
//! the group metadata, and the group here recomputes its topics' metadata after a restart.)
//! Written by hand like the classic records beside it (kafka-protocol has no coordinator
//! record types). Decoding checks every length: bad data is an error, never a panic.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::classic::ClassicMember;
use super::{Assignment, ConsumerGroup, Member, MemberState, Settings};
use crate::group::records::RecordError;

/// Key type of ConsumerGroupMetadata.
pub const GROUP_METADATA: i16 = 3;
/// Key type of ConsumerGroupPartitionMetadata (read and ignored; its key names a group only
/// in Kafka, so it is treated as a group record here).
pub const PARTITION_METADATA: i16 = 4;
/// Key type of ConsumerGroupMemberMetadata.
pub const MEMBER_METADATA: i16 = 5;
/// Key type of ConsumerGroupTargetAssignmentMetadata.
pub const TARGET_METADATA: i16 = 6;
/// Key type of ConsumerGroupTargetAssignmentMember.
pub const TARGET_MEMBER: i16 = 7;
/// Key type of ConsumerGroupCurrentMemberAssignment.
pub const CURRENT_MEMBER: i16 = 8;

/// A record key within one group: (key type, member id for the member records).
pub type Key = (i16, Option<String>);
/// A group's records: key → value bytes (with the value's version prefix).
pub type Image = BTreeMap<Key, Bytes>;

/// Whether `kind` is a consumer group key type this module reads.
pub fn is_consumer_key(kind: i16) -> bool {
    (GROUP_METADATA..=CURRENT_MEMBER).contains(&kind)
}

/// Whether key type `kind` names a member.
pub fn has_member(kind: i16) -> bool {
    matches!(kind, MEMBER_METADATA | TARGET_MEMBER | CURRENT_MEMBER)
}

/// The records of `group`.
pub fn image(group: &ConsumerGroup) -> Image {
    let mut out = Image::new();
    // Epoch, then tagged field 0: MetadataHash (int64).
    let hash = group.metadata_hash.to_be_bytes();
    out.insert((GROUP_METADATA, None), tagged_value(|w| w.i32(group.epoch), &[(0, &hash)]));
    out.insert((TARGET_METADATA, None), value(|w| w.i32(group.assignment_epoch)));
    for m in group.members.values() {
        let fields = |w: &mut Writer| member_metadata(w, m);
        let metadata = match &m.classic {
            None => value(fields),
            Some(c) => tagged_value(fields, &[(0, &classic_metadata(c))]),
        };
        out.insert((MEMBER_METADATA, Some(m.id.clone())), metadata);
        out.insert((CURRENT_MEMBER, Some(m.id.clone())), value(|w| current(w, m)));
    }
    for (id, target) in &group.target {
        out.insert((TARGET_MEMBER, Some(id.clone())), value(|w| w.partitions(target)));
    }
    out
}

/// The changes from `old` to `new`: (key, value or tombstone), group metadata first when the
/// group appears and last when it goes.
pub fn diff(old: &Image, new: &Image) -> Vec<(Key, Option<Bytes>)> {
    let mut out: Vec<(Key, Option<Bytes>)> = Vec::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.push((k.clone(), Some(v.clone())));
        }
    }
    let mut gone: Vec<(Key, Option<Bytes>)> =
        old.keys().filter(|k| !new.contains_key(*k)).map(|k| (k.clone(), None)).collect();
    // Tombstones of member records before those of the group's own records.
    gone.sort_by_key(|(k, _)| std::cmp::Reverse(k.1.is_some()));
    out.extend(gone);
    out
}

/// The group the records of `image` describe (`None` without its ConsumerGroupMetadata).
/// Members come back with fresh session deadlines from `now_ms`.
pub fn restore(
    id: &str,
    settings: Settings,
    image: &Image,
    now_ms: i64,
) -> Result<Option<ConsumerGroup>, RecordError> {
    let Some(meta) = image.get(&(GROUP_METADATA, None)) else {
        return Ok(None);
    };
    let mut g = ConsumerGroup::new(id, settings);
    let mut r = Reader::value(meta)?;
    g.epoch = r.i32()?;
    for (tag, data) in r.tags()? {
        if let (0, Ok(hash)) = (tag, <[u8; 8]>::try_from(data)) {
            g.metadata_hash = u64::from_be_bytes(hash);
        }
    }
    if let Some(v) = image.get(&(TARGET_METADATA, None)) {
        g.assignment_epoch = Reader::value(v)?.i32()?;
    }
    g.metadata = None;
    let session = i64::from(g.settings.session_timeout_ms);
    for ((kind, member), v) in image {
        let Some(member) = member else { continue };
        match *kind {
            MEMBER_METADATA => {
                let m = g.members.entry(member.clone()).or_insert_with(|| Member::new(member));
                let mut r = Reader::value(v)?;
                read_member_metadata(&mut r, m)?;
                for (tag, data) in r.tags()? {
                    if tag == 0 {
                        m.classic = read_classic_metadata(data)?;
                    }
                }
                m.session_deadline_ms = now_ms + session;
            }
            CURRENT_MEMBER => {
                let m = g.members.entry(member.clone()).or_insert_with(|| Member::new(member));
                read_current(&mut Reader::value(v)?, m)?;
                m.session_deadline_ms = now_ms + session;
                if m.state == MemberState::UnrevokedPartitions {
                    m.revocation_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms));
                }
            }
            TARGET_MEMBER => {
                let target = Reader::value(v)?.partitions()?;
                g.target.insert(member.clone(), target);
            }
            _ => {}
        }
    }
    // A member whose metadata record was lost is not a member.
    g.target.retain(|id, _| g.members.contains_key(id));
    // A classic member's session is the one of its JoinGroup.
    for m in g.members.values_mut() {
        if let Some(c) = &m.classic {
            m.session_deadline_ms = now_ms + i64::from(c.session_timeout_ms);
        }
    }
    Ok(Some(g))
}

fn member_metadata(w: &mut Writer, m: &Member) {
    w.opt_str(m.instance_id.as_deref());
    w.opt_str(m.rack_id.as_deref());
    w.str(&m.client_id);
    w.str(&m.client_host);
    w.len(m.topic_names.len());
    for t in &m.topic_names {
        w.str(t);
    }
    w.opt_str(m.topic_regex.as_deref());
    w.i32(m.rebalance_timeout_ms);
    w.opt_str(m.server_assignor.as_deref());
}

fn read_member_metadata(r: &mut Reader, m: &mut Member) -> Result<(), RecordError> {
    m.instance_id = r.opt_str()?;
    m.rack_id = r.opt_str()?;
    m.client_id = r.str()?;
    m.client_host = r.str()?;
    let n = r.len()?;
    m.topic_names = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
    m.topic_regex = r.opt_str()?;
    m.rebalance_timeout_ms = r.i32()?;
    m.server_assignor = r.opt_str()?;
    Ok(())
}

/// Tagged field 0 of ConsumerGroupMemberMetadataValue, ClassicMemberMetadata (a nullable
/// struct: presence byte, SessionTimeoutMs, SupportedProtocols [Name, Metadata]).
fn classic_metadata(c: &ClassicMember) -> Vec<u8> {
    let mut w = Writer(BytesMut::new());
    w.0.put_i8(1);
    w.i32(c.session_timeout_ms);
    w.len(c.protocols.len());
    for (name, metadata) in &c.protocols {
        w.str(name);
        w.len(metadata.len());
        w.0.put_slice(metadata);
        w.0.put_u8(0);
    }
    w.0.put_u8(0);
    w.0.to_vec()
}

fn read_classic_metadata(data: &[u8]) -> Result<Option<ClassicMember>, RecordError> {
    let mut r = Reader(data);
    if i8::from_be_bytes(r.array::<1>()?) < 0 {
        return Ok(None);
    }
    let session_timeout_ms = r.i32()?;
    let n = r.len()?;
    let mut protocols = Vec::new();
    for _ in 0..n {
        let name = r.str()?;
        let size = r.len()?;
        let metadata = Bytes::copy_from_slice(r.take(size)?);
        r.skip_tags()?;
        protocols.push((name, metadata));
    }
    Ok(Some(ClassicMember { session_timeout_ms, protocols }))
}

fn current(w: &mut Writer, m: &Member) {
    w.i32(m.epoch);
    w.i32(m.previous_epoch);
    w.0.put_i8(m.state.code());
    w.partitions(&m.assigned);
    w.partitions(&m.pending_revocation);
}

fn read_current(r: &mut Reader, m: &mut Member) -> Result<(), RecordError> {
    m.epoch = r.i32()?;
    m.previous_epoch = r.i32()?;
    m.state = MemberState::from_code(i8::from_be_bytes(r.array::<1>()?));
    m.assigned = r.partitions()?;
    m.pending_revocation = r.partitions()?;
    Ok(())
}

/// A value: version 0, the fields, no tagged fields.
fn value(fields: impl FnOnce(&mut Writer)) -> Bytes {
    tagged_value(fields, &[])
}

/// A value: version 0, the fields, then these tagged fields (tag, data), in tag order.
fn tagged_value(fields: impl FnOnce(&mut Writer), tags: &[(u32, &[u8])]) -> Bytes {
    let mut w = Writer(BytesMut::new());
    w.0.put_i16(0);
    fields(&mut w);
    w.varint(u32::try_from(tags.len()).unwrap_or(0));
    for (tag, data) in tags {
        w.varint(*tag);
        w.varint(u32::try_from(data.len()).unwrap_or(0));
        w.0.put_slice(data);
    }
    w.0.freeze()
}

/// Flexible-version writer: compact (varint length + 1) strings and arrays.
pub(crate) struct Writer(pub(crate) BytesMut);

impl Writer {
    pub(crate) fn varint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.0.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.put_u8(v as u8);
    }
    pub(crate) fn len(&mut self, n: usize) {
        self.varint(u32::try_from(n).unwrap_or(u32::MAX - 1).saturating_add(1));
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.put_slice(s.as_bytes());
    }
    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.varint(0),
        }
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.0.put_i32(v);
    }
    /// `[]TopicPartitions { TopicId uuid, Partitions []int32 }`.
    pub(crate) fn partitions(&mut self, a: &Assignment) {
        let topics = a.to_wire();
        self.len(topics.len());
        for (topic, parts) in topics {
            self.0.put_slice(topic.as_bytes());
            self.len(parts.len());
            for p in parts {
                self.0.put_i32(p);
            }
            self.0.put_u8(0);
        }
    }
}

/// Flexible-version reader; every read checks the input's length.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// A reader past a value's version prefix (only version 0 is known).
    pub(crate) fn value(v: &'a [u8]) -> Result<Reader<'a>, RecordError> {
        let mut r = Reader(v);
        if i16::from_be_bytes(r.array::<2>()?) != 0 {
            return Err(RecordError::Invalid("unknown consumer group value version"));
        }
        Ok(r)
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let b = self.take(N)?;
        b.try_into().map_err(|_| RecordError::Truncated)
    }
    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array::<4>()?))
    }
    pub(crate) fn varint(&mut self) -> Result<u32, RecordError> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let [b] = self.array::<1>()?;
            v |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::Invalid("varint too long"))
    }
    /// A compact length; `None` for null.
    pub(crate) fn opt_len(&mut self) -> Result<Option<usize>, RecordError> {
        let n = self.varint()?;
        let n = n.checked_sub(1).map(|n| n as usize);
        if n.is_some_and(|n| n > self.0.len().max(1) * 8) {
            return Err(RecordError::Invalid("length beyond the record"));
        }
        Ok(n)
    }
    pub(crate) fn len(&mut self) -> Result<usize, RecordError> {
        self.opt_len()?.ok_or(RecordError::Invalid("null where an array is required"))
    }
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>, RecordError> {
        match self.opt_len()? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                let s = std::str::from_utf8(b).map_err(|_| RecordError::Invalid("not UTF-8"))?;
                Ok(Some(s.to_owned()))
            }
        }
    }
    pub(crate) fn str(&mut self) -> Result<String, RecordError> {
        self.opt_str()?.ok_or(RecordError::Invalid("null where a string is required"))
    }
    pub(crate) fn skip_tags(&mut self) -> Result<(), RecordError> {
        self.tags().map(drop)
    }
    /// The tagged fields: (tag, data).
    pub(crate) fn tags(&mut self) -> Result<Vec<(u32, &'a [u8])>, RecordError> {
        let n = self.varint()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let tag = self.varint()?;
            let size = self.varint()? as usize;
            out.push((tag, self.take(size)?));
        }
        Ok(out)
    }
    pub(crate) fn partitions(&mut self) -> Result<Assignment, RecordError> {
        let n = self.len()?;
        let mut out = Assignment::default();
        for _ in 0..n {
            let topic = Uuid::from_bytes(self.array::<16>()?);
            let count = self.len()?;
            let set = out.0.entry(topic).or_default();
            for _ in 0..count {
                set.insert(self.i32()?);
            }
            self.skip_tags()?;
        }
        Ok(out)
    }
}
