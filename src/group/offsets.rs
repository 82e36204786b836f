//! Offset commits and group administration on the coordinating shard: OffsetCommit,
//! OffsetFetch, DescribeGroups, DeleteGroups, OffsetDelete, ListGroups.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::api::{FetchedOffset, FetchedOffsets};
use super::coordinator::{append_durable, str_bytes, Coordinator, Slot};
use super::records::OffsetsRecord;
use super::state::{Committed, Group, GroupState};
use super::{now_ms, OFFSET_METADATA_BYTES_MAX};
use crate::protocol::ResponseError as E;

/// The entries of OffsetCommit or TxnOffsetCommit topics (their fields are the same).
macro_rules! entries {
    ($topics:expr) => {
        $topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                let metadata = p.committed_metadata.as_deref().unwrap_or("");
                (p.partition_index, p.committed_offset, p.committed_leader_epoch, metadata)
            });
            (t.name.0.as_str(), partitions.collect::<Vec<OffsetEntry>>())
        })
    };
}

/// The group type of classic groups (KIP-848 names the classic protocol "classic").
const GROUP_TYPE: &str = "classic";
/// The group type of KIP-848 consumer groups.
const CONSUMER_TYPE: &str = "consumer";

impl Coordinator {
    /// Checks the committer against the group (creating an empty group for a "simple"
    /// commit with generation < 0).
    fn check_commit(&self, partition: i32, req: &OffsetCommitRequest) -> Result<(), E> {
        self.ready_log(partition)?;
        let group_id = req.group_id.0.to_string();
        let generation = req.generation_id_or_member_epoch;
        let mut groups = self.groups.borrow_mut();
        match groups.get_mut(&group_id) {
            None if generation < 0 => {
                groups.insert(group_id.clone(), Slot::new(self.new_group(&group_id), partition));
                Ok(())
            }
            None => Err(E::IllegalGeneration),
            // OffsetCommit v9+ carries the member epoch of a consumer group member.
            Some(slot) => match &slot.consumer {
                Some(c) => c.group.check_commit(&req.member_id, generation),
                None => slot.group.check_commit(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    generation,
                    false,
                    now_ms(),
                ),
            },
        }
    }

    pub(super) async fn commit(
        &self,
        partition: i32,
        req: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.0.to_string();
        let checked = self.check_commit(partition, &req);
        self.reschedule(&group_id);
        let now = now_ms();
        let (records, mut codes) = commit_records(&group_id, &checked, now, entries!(req.topics));
        if !records.is_empty() {
            let written = match self.ready_log(partition) {
                Ok(log) => append_durable(&log, &records).await,
                Err(e) => Err(format!("{e:?}")),
            };
            match written {
                Ok(()) => self.apply_records(records),
                Err(e) => {
                    tracing::error!(group = %group_id, "persisting offsets failed: {e}");
                    let failed = E::CoordinatorNotAvailable.code();
                    codes.iter_mut().flatten().filter(|c| **c == 0).for_each(|c| *c = failed);
                }
            }
        }
        commit_response(&req, codes)
    }

    /// Applies durable offset records to the in-memory groups.
    pub(super) fn apply_records(&self, records: Vec<OffsetsRecord>) {
        let mut groups = self.groups.borrow_mut();
        for record in records {
            if let OffsetsRecord::Offset { group, topic, partition, value } = record {
                let Some(slot) = groups.get_mut(&group) else {
                    continue;
                };
                match value {
                    Some(c) if slot.group.state != GroupState::Dead => {
                        slot.group.offsets.insert((topic, partition), c);
                    }
                    _ => {
                        slot.group.offsets.remove(&(topic, partition));
                    }
                }
            }
        }
    }

    pub(super) fn fetch(
        &self,
        partition: i32,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        (member_id, member_epoch): (Option<&str>, i32),
    ) -> FetchedOffsets {
        if let Err(e) = self.ready_log(partition) {
            return FetchedOffsets { error: e.code(), topics: Vec::new() };
        }
        let groups = self.groups.borrow();
        let consumer = groups.get(group_id).and_then(|s| s.consumer.as_ref());
        let checked = match consumer {
            Some(c) => c.group.check_fetch(member_id, member_epoch),
            // A classic group (or none): OffsetFetch v9's member fields are not checked.
            None => Ok(()),
        };
        if let Err(e) = checked {
            return FetchedOffsets { error: e.code(), topics: Vec::new() };
        }
        let group = groups.get(group_id).map(|s| &s.group);
        let lookup = |topic: &str, partition: i32| -> FetchedOffset {
            let found = group.and_then(|g| g.offsets.get(&(topic.to_owned(), partition)));
            match found {
                Some(c) => FetchedOffset {
                    partition,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    error: 0,
                },
                None => {
                    FetchedOffset { partition, offset: -1, leader_epoch: -1, ..Default::default() }
                }
            }
        };
        let topics = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, parts)| {
                    let offsets = parts.into_iter().map(|p| lookup(&t, p)).collect();
                    (t, offsets)
                })
                .collect(),
            None => {
                let mut all: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
                let keys: Vec<&(String, i32)> =
                    group.map(|g| g.offsets.keys().collect()).unwrap_or_default();
                for (topic, p) in keys {
                    let entry = lookup(topic, *p);
                    match all.last_mut() {
                        Some((t, list)) if t == topic => list.push(entry),
                        _ => all.push((topic.clone(), vec![entry])),
                    }
                }
                all
            }
        };
        FetchedOffsets { error: 0, topics }
    }

    pub(super) fn describe(&self, partition: i32, group_id: &str) -> DescribedGroup {
        let base = DescribedGroup::default().with_group_id(GroupId(str_bytes(group_id)));
        if let Err(e) = self.ready_log(partition) {
            return base.with_error_code(e.code());
        }
        let groups = self.groups.borrow();
        let Some(slot) = groups.get(group_id) else {
            return base
                .with_error_code(E::GroupIdNotFound.code())
                .with_group_state(str_bytes("Dead"));
        };
        if slot.consumer.is_some() {
            // Kafka 4 answers DescribeGroups of a consumer group this way (its members are
            // seen with ConsumerGroupDescribe).
            let why = format!("Group {group_id} is not a classic group.");
            return base
                .with_error_code(E::GroupIdNotFound.code())
                .with_error_message(Some(str_bytes(&why)))
                .with_group_state(str_bytes("Dead"));
        }
        let g = &slot.group;
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        let members = g
            .members
            .values()
            .map(|m| {
                let metadata =
                    m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, b)| b.clone());
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.id))
                    .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_member_metadata(if stable {
                        metadata.unwrap_or_default()
                    } else {
                        Default::default()
                    })
                    .with_member_assignment(if stable {
                        m.assignment.clone()
                    } else {
                        Default::default()
                    })
            })
            .collect();
        base.with_group_state(str_bytes(g.state.name()))
            .with_protocol_type(str_bytes(g.protocol_type.as_deref().unwrap_or("")))
            .with_protocol_data(str_bytes(if stable { &protocol } else { "" }))
            .with_members(members)
            .with_authorized_operations(i32::MIN)
    }

    pub(super) async fn delete(&self, partition: i32, group_id: &str) -> i16 {
        let log = match self.ready_log(partition) {
            Ok(log) => log,
            Err(e) => return e.code(),
        };
        let records = {
            let groups = self.groups.borrow();
            let Some(slot) = groups.get(group_id) else {
                return E::GroupIdNotFound.code();
            };
            match &slot.consumer {
                Some(c) if !c.group.members.is_empty() => return E::NonEmptyGroup.code(),
                Some(_) => {}
                None => {
                    if let Err(e) = slot.group.check_delete() {
                        return e.code();
                    }
                }
            }
            tombstones(group_id, slot.group.offsets.keys(), true)
        };
        let records = [self.drop_consumer(group_id), records].concat();
        if let Some(slot) = self.groups.borrow_mut().get_mut(group_id) {
            slot.group.mark_dead(now_ms());
        }
        let written = append_durable(&log, &records).await;
        self.groups.borrow_mut().remove(group_id);
        match written {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(group = group_id, "persisting group deletion failed: {e}");
                E::CoordinatorNotAvailable.code()
            }
        }
    }

    pub(super) async fn offset_delete(
        &self,
        partition: i32,
        req: OffsetDeleteRequest,
    ) -> OffsetDeleteResponse {
        let group_id = req.group_id.0.to_string();
        let log = match self.ready_log(partition) {
            Ok(log) => log,
            Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
        };
        let subscribed = {
            let groups = self.groups.borrow();
            let Some(slot) = groups.get(&group_id) else {
                return OffsetDeleteResponse::default().with_error_code(E::GroupIdNotFound.code());
            };
            let g = &slot.group;
            let consumer = g.protocol_type.as_deref() == Some("consumer");
            if g.state != GroupState::Empty && !consumer {
                return OffsetDeleteResponse::default().with_error_code(E::NonEmptyGroup.code());
            }
            match &slot.consumer {
                // A consumer group's members subscribe by name (a regex subscription is not
                // counted here: its topics' offsets can be deleted).
                Some(c) => c.group.members.values().flat_map(|m| m.topic_names.clone()).collect(),
                None => subscribed_topics(g),
            }
        };
        let mut keys = Vec::new();
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let busy = subscribed.contains(t.name.0.as_str());
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        if !busy {
                            keys.push((t.name.0.to_string(), p.partition_index));
                        }
                        let code = if busy { E::GroupSubscribedToTopic.code() } else { 0 };
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        let records = tombstones(&group_id, keys.iter(), false);
        if !records.is_empty() {
            if let Err(e) = append_durable(&log, &records).await {
                tracing::error!(group = %group_id, "persisting offset deletion failed: {e}");
                return OffsetDeleteResponse::default()
                    .with_error_code(E::CoordinatorNotAvailable.code());
            }
            self.apply_records(records);
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }

    pub(super) fn list(&self, states: &[String], types: &[String]) -> Vec<ListedGroup> {
        let wanted_state =
            |s: &str| states.is_empty() || states.iter().any(|w| w.eq_ignore_ascii_case(s));
        let wanted_type =
            |kind: &str| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(kind));
        let loaded: BTreeSet<i32> =
            self.partitions.borrow().iter().filter(|(_, p)| p.loaded).map(|(n, _)| *n).collect();
        let groups = self.groups.borrow();
        let mut listed: Vec<ListedGroup> = groups
            .values()
            .filter(|s| loaded.contains(&s.partition) && s.group.state != GroupState::Dead)
            .filter_map(|s| {
                let (kind, state, protocol_type) = match &s.consumer {
                    Some(c) => (CONSUMER_TYPE, c.group.state().name(), "consumer"),
                    None => (
                        GROUP_TYPE,
                        s.group.state.name(),
                        s.group.protocol_type.as_deref().unwrap_or(""),
                    ),
                };
                (wanted_type(kind) && wanted_state(state)).then(|| {
                    ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(&s.group.id)))
                        .with_protocol_type(str_bytes(protocol_type))
                        .with_group_state(str_bytes(state))
                        .with_group_type(str_bytes(kind))
                })
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
        listed
    }
}

/// Tombstones for these offsets, and for the group's metadata when `group_too`.
fn tombstones<'a>(
    group_id: &str,
    keys: impl Iterator<Item = &'a (String, i32)>,
    group_too: bool,
) -> Vec<OffsetsRecord> {
    let mut records: Vec<OffsetsRecord> = keys
        .map(|(topic, partition)| OffsetsRecord::Offset {
            group: group_id.to_owned(),
            topic: topic.clone(),
            partition: *partition,
            value: None,
        })
        .collect();
    if group_too {
        records.push(OffsetsRecord::Group { group: group_id.to_owned(), value: None });
    }
    records
}

/// Topics the members of a consumer group subscribe to (from their subscription metadata).
fn subscribed_topics(g: &Group) -> BTreeSet<String> {
    let mut topics = BTreeSet::new();
    if g.state == GroupState::Empty || g.protocol_type.as_deref() != Some("consumer") {
        return topics;
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    for m in g.members.values() {
        let Some((_, metadata)) = m.protocols.iter().find(|(n, _)| *n == protocol) else {
            continue;
        };
        if let Some(sub) = super::consumer::classic::decode_subscription(metadata) {
            topics.extend(sub.topics);
        }
    }
    topics
}

fn commit_response(req: &OffsetCommitRequest, codes: Vec<Vec<i16>>) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .zip(codes)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

impl Coordinator {
    /// Checks a TxnOffsetCommit's committer against the group (KIP-447: generation and
    /// member are checked when given; a group unknown here is created, as for simple
    /// commits).
    fn check_txn_commit(&self, partition: i32, req: &TxnOffsetCommitRequest) -> Result<(), E> {
        self.ready_log(partition)?;
        let group_id = req.group_id.0.to_string();
        let mut groups = self.groups.borrow_mut();
        match groups.get_mut(&group_id) {
            None => {
                let slot = Slot::new(self.new_group(&group_id), partition);
                groups.insert(group_id, slot);
                Ok(())
            }
            Some(_) if req.generation_id < 0 => Ok(()),
            Some(slot) => slot.group.check_commit(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
                true,
                now_ms(),
            ),
        }
    }

    /// TxnOffsetCommit: writes the offsets as a transactional batch of the producer; they
    /// apply when the producer's commit marker reaches this partition
    /// ([`Coordinator::complete_txn`]) and are dropped by an abort marker.
    pub(super) async fn txn_commit(
        &self,
        partition: i32,
        req: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let group_id = req.group_id.0.to_string();
        let checked = self.check_txn_commit(partition, &req);
        let now = now_ms();
        let (records, mut codes) = commit_records(&group_id, &checked, now, entries!(req.topics));
        if !records.is_empty() {
            let producer = (req.producer_id.0, req.producer_epoch);
            match self.append_txn_offsets(partition, &records, producer).await {
                Ok(()) => {
                    let mut pending = self.pending_txn.borrow_mut();
                    pending.entry((partition, producer.0)).or_default().extend(records);
                }
                Err(e) => {
                    tracing::error!(group = %group_id, "persisting txn offsets failed: {e}");
                    let failed = E::CoordinatorNotAvailable.code();
                    codes.iter_mut().flatten().filter(|c| **c == 0).for_each(|c| *c = failed);
                }
            }
        }
        let topics = req
            .topics
            .iter()
            .zip(codes)
            .map(|(t, codes)| {
                let partitions = t
                    .partitions
                    .iter()
                    .zip(codes)
                    .map(|(p, code)| {
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    }

    async fn append_txn_offsets(
        &self,
        partition: i32,
        records: &[OffsetsRecord],
        producer: (i64, i16),
    ) -> Result<(), String> {
        let log = self.ready_log(partition).map_err(|e| format!("{e:?}"))?;
        let batch = super::records::encode_batch_for(records, now_ms(), Some(producer))
            .map_err(|e| e.to_string())?;
        let pending = log.append(&batch).map_err(|e| e.to_string())?;
        pending.durable().await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// One committed offset as a request carries it: partition, offset, leader epoch, metadata.
type OffsetEntry<'a> = (i32, i64, i32, &'a str);

/// The offset records of a commit and one error code per partition, in request order:
/// `checked` refuses every partition, metadata over the limit refuses its own.
fn commit_records<'a>(
    group_id: &str,
    checked: &Result<(), E>,
    now: i64,
    topics: impl Iterator<Item = (&'a str, Vec<OffsetEntry<'a>>)>,
) -> (Vec<OffsetsRecord>, Vec<Vec<i16>>) {
    let mut records = Vec::new();
    let codes = topics
        .map(|(topic, partitions)| {
            let codes =
                partitions.into_iter().map(|(partition, offset, leader_epoch, metadata)| {
                    match checked {
                        Err(e) => e.code(),
                        Ok(()) if metadata.len() > OFFSET_METADATA_BYTES_MAX => {
                            E::OffsetMetadataTooLarge.code()
                        }
                        Ok(()) => {
                            records.push(OffsetsRecord::Offset {
                                group: group_id.to_owned(),
                                topic: topic.to_owned(),
                                partition,
                                value: Some(Committed {
                                    offset,
                                    leader_epoch,
                                    metadata: metadata.to_owned(),
                                    commit_timestamp_ms: now,
                                }),
                            });
                            0
                        }
                    }
                });
            codes.collect()
        })
        .collect();
    (records, codes)
}
