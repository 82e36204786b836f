//! The coordinator's side of KIP-848 consumer groups: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe on the shard that coordinates the group.
//!
//! The pure [`ConsumerGroup`] decides; this file feeds it the request, the cluster's topics
//! and the time, persists what changed ([`records::diff`] of the group's records before and
//! after) and re-arms the group's timer. A heartbeat is answered once its changes are durable.
//! A group id holds either a classic group with members or a consumer group: an empty classic
//! group becomes a consumer group at the first consumer-protocol heartbeat (and an empty
//! consumer group a classic one at the first JoinGroup); a classic group with members is
//! converted online as [`super::migration`] describes (GROUP_ID_NOT_FOUND when
//! `group.consumer.migration.policy` or the group forbid it, as Kafka 4.0 answers).
//! No borrow of the groups is held across an await.

use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_response as hb;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};

use super::consumer::records::{self, Image};
use super::consumer::{Assignment, ConsumerGroup, HeartbeatArgs, Topics};
use super::coordinator::{append_durable, str_bytes, Coordinator, Slot};
use super::now_ms;
use super::records::OffsetsRecord;
use super::state::GroupState as ClassicState;
use crate::protocol::ResponseError as E;

/// A consumer group in its slot, with the records last handed to the log.
#[derive(Debug)]
pub(super) struct ConsumerSlot {
    pub(super) group: ConsumerGroup,
    pub(super) persisted: Image,
}

/// What a ConsumerGroupHeartbeat carries besides the request.
#[derive(Debug)]
pub struct HeartbeatContext {
    /// Request version (v0: the coordinator names new members).
    pub version: i16,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address (`/127.0.0.1`).
    pub client_host: String,
    /// The cluster's topics.
    pub topics: Topics,
}

impl Coordinator {
    pub(super) async fn consumer_heartbeat(
        &self,
        partition: i32,
        req: ConsumerGroupHeartbeatRequest,
        ctx: HeartbeatContext,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = req.group_id.0.to_string();
        if let Err(e) = self.ready_log(partition) {
            return refused(e, None);
        }
        let mut args = heartbeat_args(&req, &ctx);
        if ctx.version == 0 && args.epoch == 0 && args.member_id.is_empty() {
            args.member_id = uuid::Uuid::new_v4().to_string();
        }
        let settings = self.consumer_settings_of(&group_id);
        if let Err((e, why)) = super::consumer::validate(&args, &settings) {
            return refused(e, why);
        }
        let converted = match self.consumer_slot_for(&group_id, partition, args.epoch, &ctx.topics)
        {
            Ok(converted) => converted,
            Err((e, why)) => return refused(e, Some(why)),
        };
        // A converted classic group's record goes in the same batch as the new records.
        let classic_gone = converted
            .then(|| OffsetsRecord::Group { group: group_id.clone(), value: None })
            .into_iter()
            .collect();
        let leaving = args.epoch == super::consumer::LEAVE_EPOCH;
        let result = {
            let mut groups = self.groups.borrow_mut();
            let slot = groups.get_mut(&group_id).and_then(|s| s.consumer.as_mut());
            match slot {
                None => Err((E::CoordinatorNotAvailable, None)),
                Some(c) => {
                    // The group's configs may have changed since the last heartbeat.
                    c.group.settings.session_timeout_ms = settings.session_timeout_ms;
                    c.group.settings.heartbeat_interval_ms = settings.heartbeat_interval_ms;
                    c.group.heartbeat(args, &ctx.topics, now_ms())
                }
            }
        };
        if let Err(e) = self.persist_consumer(&group_id, classic_gone).await {
            tracing::error!(group = %group_id, "persisting the consumer group failed: {e}");
            self.reschedule(&group_id);
            return refused(E::CoordinatorNotAvailable, None);
        }
        self.reschedule(&group_id);
        if leaving && result.is_ok() {
            // The last consumer-protocol member may have left a group of classic members.
            self.maybe_downgrade(&group_id).await;
        }
        match result {
            Err((e, why)) => refused(e, why),
            Ok(reply) => {
                let assignment = reply.assignment.map(|a| {
                    let topics = a
                        .to_wire()
                        .into_iter()
                        .map(|(id, partitions)| {
                            hb::TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(partitions)
                        })
                        .collect();
                    hb::Assignment::default().with_topic_partitions(topics)
                });
                ConsumerGroupHeartbeatResponse::default()
                    .with_member_id(Some(str_bytes(&reply.member_id)))
                    .with_member_epoch(reply.epoch)
                    .with_heartbeat_interval_ms(reply.heartbeat_interval_ms)
                    .with_assignment(assignment)
            }
        }
    }

    /// Makes sure `group_id` has a consumer group (converting an empty classic group, or one
    /// with members when a member joins and [`super::migration::upgrade`] allows it);
    /// whether a classic group was converted. No group at all for a member that is not
    /// joining is refused.
    fn consumer_slot_for(
        &self,
        group_id: &str,
        partition: i32,
        epoch: i32,
        topics: &Topics,
    ) -> Result<bool, (E, String)> {
        let settings = self.consumer_settings.borrow().clone();
        let mut groups = self.groups.borrow_mut();
        let slot = groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Slot::new(self.new_group(group_id), partition));
        if slot.consumer.is_some() {
            return Ok(false);
        }
        let classic_empty = slot.group.members.is_empty() && slot.group.pending.is_empty();
        if slot.group.state == ClassicState::Dead || (!classic_empty && epoch != 0) {
            let why = format!("Group {group_id} is not a consumer group.");
            return Err((E::GroupIdNotFound, why));
        }
        if !classic_empty {
            super::migration::upgrade(slot, settings, topics, self.new_group(group_id))?;
            return Ok(true);
        }
        if epoch != 0 {
            // Leaving or heartbeating a group that does not exist (any more).
            return Err((E::UnknownMemberId, format!("Group {group_id} has no such member.")));
        }
        let had_classic = slot.group.generation > 0 || slot.group.protocol_type.is_some();
        slot.consumer = Some(ConsumerSlot {
            group: ConsumerGroup::new(group_id, settings),
            persisted: Image::new(),
        });
        Ok(had_classic)
    }

    /// Writes `first` then what changed in the consumer group of `group_id` since the last
    /// write, in one batch.
    pub(super) async fn persist_consumer(
        &self,
        group_id: &str,
        first: Vec<OffsetsRecord>,
    ) -> Result<(), String> {
        let (partition, changes) = {
            let mut groups = self.groups.borrow_mut();
            let Some(slot) = groups.get_mut(group_id) else {
                return Ok(());
            };
            let partition = slot.partition;
            let Some(c) = slot.consumer.as_mut() else {
                return Ok(());
            };
            let image = records::image(&c.group);
            let changes = records::diff(&c.persisted, &image);
            c.persisted = image;
            (partition, changes)
        };
        if changes.is_empty() && first.is_empty() {
            return Ok(());
        }
        let mut records = first;
        records.extend(changes.into_iter().map(|((kind, member), value)| {
            OffsetsRecord::Consumer { group: group_id.to_owned(), kind, member, value }
        }));
        let log = self.ready_log(partition).map_err(|e| format!("{e:?}"))?;
        let written = append_durable(&log, &records).await;
        if written.is_err() {
            // Write everything again next time.
            let mut groups = self.groups.borrow_mut();
            if let Some(c) = groups.get_mut(group_id).and_then(|s| s.consumer.as_mut()) {
                c.persisted = Image::new();
            }
        }
        written
    }

    /// Tombstones of every record of the consumer group of `group_id` (when it is deleted or
    /// becomes a classic group); it is removed from its slot.
    pub(super) fn drop_consumer(&self, group_id: &str) -> Vec<OffsetsRecord> {
        let mut groups = self.groups.borrow_mut();
        let Some(c) = groups.get_mut(group_id).and_then(|s| s.consumer.take()) else {
            return Vec::new();
        };
        records::diff(&c.persisted, &Image::new())
            .into_iter()
            .map(|((kind, member), value)| OffsetsRecord::Consumer {
                group: group_id.to_owned(),
                kind,
                member,
                value,
            })
            .collect()
    }

    /// Fences the members of `group_id`'s consumer group whose deadlines passed (timer).
    pub(super) async fn consumer_tick(&self, group_id: &str) {
        let fenced = {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(group_id).and_then(|s| s.consumer.as_mut()) {
                None => return,
                Some(c) => c.group.tick(now_ms()),
            }
        };
        if fenced.is_empty() {
            return;
        }
        tracing::info!(group = group_id, members = ?fenced, "fenced consumer group members");
        if let Err(e) = self.persist_consumer(group_id, Vec::new()).await {
            tracing::error!(group = group_id, "persisting the consumer group failed: {e}");
        }
        self.maybe_downgrade(group_id).await;
    }

    /// ConsumerGroupDescribe of one group.
    pub(super) fn consumer_describe(
        &self,
        partition: i32,
        group_id: &str,
        topics: &Topics,
        version: i16,
    ) -> describe::DescribedGroup {
        let base = describe::DescribedGroup::default().with_group_id(GroupId(str_bytes(group_id)));
        if let Err(e) = self.ready_log(partition) {
            return base.with_error_code(e.code());
        }
        let groups = self.groups.borrow();
        let Some(slot) = groups.get(group_id) else {
            let why = format!("Group {group_id} not found.");
            return base
                .with_error_code(E::GroupIdNotFound.code())
                .with_error_message(Some(str_bytes(&why)));
        };
        let Some(c) = &slot.consumer else {
            let why = format!("Group {group_id} is not a consumer group.");
            return base
                .with_error_code(E::GroupIdNotFound.code())
                .with_error_message(Some(str_bytes(&why)));
        };
        let g = &c.group;
        let names: std::collections::BTreeMap<uuid::Uuid, &str> =
            topics.iter().map(|(n, (id, _))| (*id, n.as_str())).collect();
        let wire = |a: &Assignment| {
            let tps = a
                .to_wire()
                .into_iter()
                .map(|(id, partitions)| {
                    let name = names.get(&id).copied().unwrap_or("");
                    describe::TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(name)))
                        .with_partitions(partitions)
                })
                .collect();
            describe::Assignment::default().with_topic_partitions(tps)
        };
        let members = g
            .members
            .values()
            .map(|m| {
                let target = g.target.get(&m.id).cloned().unwrap_or_default();
                let names = m.topic_names.iter().map(|t| TopicName(str_bytes(t))).collect();
                let member = describe::Member::default()
                    .with_member_id(str_bytes(&m.id))
                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                    .with_member_epoch(m.epoch)
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_subscribed_topic_names(names)
                    .with_subscribed_topic_regex(m.topic_regex.as_deref().map(str_bytes))
                    .with_assignment(wire(&m.assigned))
                    .with_target_assignment(wire(&target));
                // v1 tells consumer-protocol (1) from classic (0) members.
                if version >= 1 {
                    member.with_member_type(if m.classic.is_some() { 0 } else { 1 })
                } else {
                    member
                }
            })
            .collect();
        base.with_group_state(str_bytes(g.state().name()))
            .with_group_epoch(g.epoch)
            .with_assignment_epoch(g.assignment_epoch)
            .with_assignor_name(str_bytes(&g.assignor))
            .with_members(members)
            .with_authorized_operations(i32::MIN)
    }
}

fn refused(e: E, why: Option<String>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(e.code())
        .with_error_message(why.as_deref().map(str_bytes))
}

fn heartbeat_args(req: &ConsumerGroupHeartbeatRequest, ctx: &HeartbeatContext) -> HeartbeatArgs {
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let wire: Vec<(uuid::Uuid, Vec<i32>)> =
            tps.iter().map(|t| (t.topic_id, t.partitions.clone())).collect();
        Assignment::from_wire(&wire)
    });
    HeartbeatArgs {
        member_id: req.member_id.to_string(),
        epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
    }
}
