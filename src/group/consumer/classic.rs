//! Classic-protocol members inside a consumer group: Kafka 4.0's online migration
//! (`GroupMetadataManager.classicGroup*ToConsumerGroup`, `ConsumerGroup.fromClassicGroup`),
//! pure like the rest of [`super`].
//!
//! * [`ConsumerGroup::from_classic`] turns a classic group's members into consumer group
//!   members: each keeps its current assignment (decoded from the ConsumerProtocolAssignment
//!   it was given in SyncGroup, which becomes its target too) and its subscription (from its
//!   JoinGroup ConsumerProtocolSubscription); the group epoch is the classic generation.
//! * A classic member then speaks JoinGroup / SyncGroup / Heartbeat / LeaveGroup, answered
//!   from the consumer group: JoinGroup updates its subscription and reconciles it (the
//!   partitions it says it owns in its subscription count as owned; an eager member owns
//!   nothing when it rejoins), the generation it gets is its member epoch, SyncGroup hands it
//!   its current assignment, and Heartbeat answers REBALANCE_IN_PROGRESS while it must rejoin
//!   (behind the group epoch, partitions to revoke, or partitions it waited for now free).
//!   The incremental rule of [`super`] holds unchanged: a partition goes to its new owner
//!   only once the old owner no longer holds it.
//! * Timers, as Kafka's: a classic member's session (its JoinGroup's session timeout) runs
//!   from its JoinGroup and is refreshed by SyncGroup and Heartbeat; a member that answered
//!   JoinGroup must send SyncGroup within its rebalance timeout (the classic member sync
//!   timeout); [`ConsumerGroup::tick`] fences a member past either.
//! * [`ConsumerGroup::classic_members_only`] tells when the group may go back to a classic
//!   group (the last consumer-protocol member left).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment as cpa;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{metadata_hash, refuse, Assignment, ConsumerGroup, Member, MemberState, Refusal};
use super::{Settings, Topics};
use crate::protocol::ResponseError as E;

/// What a classic member brings besides a consumer member's fields (Kafka's
/// ConsumerGroupMemberMetadataValue.ClassicMemberMetadata).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassicMember {
    /// Session timeout of its JoinGroup.
    pub session_timeout_ms: i32,
    /// Its JoinGroup protocols, most preferred first: (name, metadata).
    pub protocols: Vec<(String, Bytes)>,
}

/// A classic member's JoinGroup (or its state in the classic group being converted).
#[derive(Clone, Debug, Default)]
pub struct ClassicJoin {
    /// Member id (the coordinator names new members).
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocols: (name, ConsumerProtocolSubscription).
    pub protocols: Vec<(String, Bytes)>,
}

/// A classic member's answered JoinGroup.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassicJoined {
    /// Member id.
    pub member_id: String,
    /// Generation: the member epoch.
    pub generation: i32,
    /// Protocol name: the member's first.
    pub protocol_name: String,
}

/// A ConsumerProtocolSubscription, decoded (what the migration needs of it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subscription {
    /// Subscribed topic names.
    pub topics: Vec<String>,
    /// Partitions the member says it owns (v1+; cooperative members).
    pub owned: Vec<(String, i32)>,
    /// Rack id (v3).
    pub rack_id: Option<String>,
}

/// Decodes a JoinGroup protocol's metadata (version prefix, then the subscription);
/// `None` when it is not a ConsumerProtocolSubscription.
pub fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)).ok()?;
    Some(Subscription {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p)))
            .collect(),
        rack_id: sub.rack_id.as_ref().map(|r| r.to_string()).filter(|r| !r.is_empty()),
    })
}

/// Decodes a SyncGroup assignment (a ConsumerProtocolAssignment) into (topic, partition).
pub fn decode_assignment(bytes: &Bytes) -> Vec<(String, i32)> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16();
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `a` as a ConsumerProtocolAssignment (version 0, which every client reads), topics by
/// name; partitions of topics no longer in `topics` are left out.
pub fn encode_assignment(a: &Assignment, topics: &Topics) -> Bytes {
    let names: std::collections::BTreeMap<uuid::Uuid, &str> =
        topics.iter().map(|(n, (id, _))| (*id, n.as_str())).collect();
    let assigned = a
        .to_wire()
        .into_iter()
        .filter_map(|(id, partitions)| {
            let name = names.get(&id)?;
            let topic = kafka_protocol::messages::TopicName(StrBytes::from_string((*name).into()));
            Some(cpa::TopicPartition::default().with_topic(topic).with_partitions(partitions))
        })
        .collect();
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    // Encoding an in-memory message into a BytesMut only fails on a field the version
    // cannot carry, and version 0 carries both fields.
    if message.encode(&mut buf, 0).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

/// (topic name, partition) pairs as an [`Assignment`] by topic id (unknown topics dropped).
pub fn by_id(tps: &[(String, i32)], topics: &Topics) -> Assignment {
    Assignment::from_tps(
        tps.iter().filter_map(|(name, p)| topics.get(name).map(|(id, _)| (*id, *p))),
    )
}

/// The subscription in the first protocol (Kafka deserializes the first one).
fn first_subscription(protocols: &[(String, Bytes)]) -> Subscription {
    protocols.first().and_then(|(_, m)| decode_subscription(m)).unwrap_or_default()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

impl ConsumerGroup {
    /// Kafka's `ConsumerGroup.fromClassicGroup`: the classic group's members, each with its
    /// current assignment (which is also its target), at epoch `generation`. `protocol` is
    /// the classic group's chosen protocol, whose metadata holds each subscription. A
    /// partition two members claim stays with the first.
    pub fn from_classic(
        id: &str,
        settings: Settings,
        generation: i32,
        protocol: &str,
        members: Vec<(ClassicJoin, Bytes)>,
        topics: &Topics,
        now_ms: i64,
    ) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(id, settings);
        g.epoch = generation;
        g.assignment_epoch = generation;
        for (j, assignment) in members {
            let sub = j
                .protocols
                .iter()
                .find(|(n, _)| n == protocol)
                .and_then(|(_, m)| decode_subscription(m))
                .unwrap_or_default();
            let mut m = Member::new(&j.member_id);
            m.instance_id = j.instance_id;
            m.rack_id = sub.rack_id;
            m.client_id = j.client_id;
            m.client_host = j.client_host;
            m.topic_names = sorted(sub.topics);
            m.rebalance_timeout_ms = j.rebalance_timeout_ms;
            m.epoch = generation;
            m.previous_epoch = generation;
            m.state = MemberState::Stable;
            let claimed = by_id(&decode_assignment(&assignment), topics);
            m.assigned = claimed.filter(|tp| !g.owned_by_other(&j.member_id, tp));
            m.session_deadline_ms = now_ms + i64::from(j.session_timeout_ms);
            m.classic = Some(ClassicMember {
                session_timeout_ms: j.session_timeout_ms,
                protocols: j.protocols,
            });
            g.target.insert(m.id.clone(), m.assigned.clone());
            g.members.insert(m.id.clone(), m);
        }
        let meta = g.subscribed_metadata(topics);
        g.metadata_hash = metadata_hash(&meta);
        g.metadata = Some(meta);
        g
    }

    /// Kafka's `classicGroupJoinToConsumerGroup` (protocol type and member id checked by the
    /// caller): creates or updates the member, moves the group epoch and the target when its
    /// subscription changed, and reconciles it.
    pub fn classic_join(
        &mut self,
        j: ClassicJoin,
        topics: &Topics,
        now_ms: i64,
    ) -> Result<ClassicJoined, Refusal> {
        let Some(protocol_name) = j.protocols.first().map(|(n, _)| n.clone()) else {
            return refuse(E::InconsistentGroupProtocol, "no protocols");
        };
        let mut created = false;
        match self.members.get(&j.member_id) {
            Some(m) if m.classic.is_none() => {
                return refuse(E::UnknownMemberId, "the member uses the consumer protocol");
            }
            Some(m) if j.instance_id.is_some() && m.instance_id != j.instance_id => {
                return refuse(E::FencedInstanceId, "the instance id belongs to another member");
            }
            Some(_) => {}
            None => {
                let holder = j.instance_id.as_deref().and_then(|i| self.static_member(i));
                if let Some(old_id) = holder.map(|m| m.id.clone()) {
                    self.replace_static(&old_id, &j.member_id);
                } else {
                    if self.members.len() >= self.settings.max_size {
                        let why = "the group has reached its max size";
                        return refuse(E::GroupMaxSizeReached, why);
                    }
                    let mut m = Member::new(&j.member_id);
                    m.instance_id.clone_from(&j.instance_id);
                    self.members.insert(m.id.clone(), m);
                    created = true;
                }
            }
        }
        let sub = first_subscription(&j.protocols);
        let owned = by_id(&sub.owned, topics);
        let Some(m) = self.members.get_mut(&j.member_id) else {
            return refuse(E::UnknownMemberId, "the member is gone");
        };
        let old = (m.topic_names.clone(), m.topic_regex.clone(), m.server_assignor.clone());
        if sub.rack_id.is_some() {
            m.rack_id = sub.rack_id;
        }
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.topic_names = sorted(sub.topics);
        m.topic_regex = None;
        m.server_assignor = None;
        m.client_id = j.client_id;
        m.client_host = j.client_host;
        m.session_deadline_ms = now_ms + i64::from(j.session_timeout_ms);
        // Kafka's classic member sync timeout: its SyncGroup must follow within its
        // rebalance timeout, or it leaves the group.
        m.sync_deadline_ms = Some(now_ms + i64::from(j.rebalance_timeout_ms.max(0)));
        m.classic = Some(ClassicMember {
            session_timeout_ms: j.session_timeout_ms,
            protocols: j.protocols,
        });
        // A member that took a static member's place brings its subscription along.
        let changed = created || old != (m.topic_names.clone(), m.topic_regex.clone(), None);
        self.bump_epoch_and_target(changed, topics);
        // First pass: may ask it to revoke; second: a member that no longer owns what it
        // must revoke (an eager member owns nothing when it rejoins) moves on at once.
        self.reconcile(&j.member_id, Some(&owned), now_ms);
        self.reconcile(&j.member_id, Some(&owned), now_ms);
        let Some(m) = self.members.get(&j.member_id) else {
            return refuse(E::UnknownMemberId, "the member is gone");
        };
        Ok(ClassicJoined { member_id: m.id.clone(), generation: m.epoch, protocol_name })
    }

    /// Kafka's static member replacement (`getOrMaybeSubscribeStaticConsumerGroupMember`)
    /// when one side speaks the classic protocol: `new_id` takes the place of `old_id` at once
    /// (no leave with epoch -2 needed), with its assignment and target, at member epoch 0 so
    /// that it reconciles; the old id is fenced.
    pub(super) fn replace_static(&mut self, old_id: &str, new_id: &str) {
        if let Some(mut m) = self.members.remove(old_id) {
            m.id = new_id.to_owned();
            m.epoch = 0;
            m.previous_epoch = 0;
            self.members.insert(m.id.clone(), m);
        }
        if let Some(t) = self.target.remove(old_id) {
            self.target.insert(new_id.to_owned(), t);
        }
    }

    /// The classic member `member_id` checked as Kafka's `validateConsumerGroupMember`,
    /// `throwIfMemberDoesNotUseClassicProtocol` and `throwIfGenerationIdUnmatched` do.
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<&Member, E> {
        let m = match instance_id {
            None => self.members.get(member_id).ok_or(E::UnknownMemberId)?,
            Some(instance) => {
                let m = self.static_member(instance).ok_or(E::UnknownMemberId)?;
                if m.id != member_id {
                    return Err(E::FencedInstanceId);
                }
                m
            }
        };
        if m.classic.is_none() {
            return Err(E::UnknownMemberId);
        }
        if generation != m.epoch {
            return Err(E::IllegalGeneration);
        }
        Ok(m)
    }

    fn touch_classic(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            let session = m.classic.as_ref().map_or(0, |c| c.session_timeout_ms);
            m.session_deadline_ms = now_ms + i64::from(session);
        }
    }

    /// Kafka's `classicGroupSyncToConsumerGroup`: the member's current assignment, or
    /// REBALANCE_IN_PROGRESS when the group moved on and it has nothing to revoke first.
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<Assignment, E> {
        let m = self.classic_member(member_id, instance_id, generation)?;
        if m.epoch < self.epoch && m.state != MemberState::UnrevokedPartitions {
            return Err(E::RebalanceInProgress);
        }
        let assigned = m.assigned.clone();
        self.touch_classic(member_id, now_ms);
        if let Some(m) = self.members.get_mut(member_id) {
            m.sync_deadline_ms = None;
        }
        Ok(assigned)
    }

    /// Kafka's `classicGroupHeartbeatToConsumerGroup`: refreshes the session; the member
    /// must rejoin (REBALANCE_IN_PROGRESS) when it is behind the group epoch, has partitions
    /// to revoke, or waits for partitions that are now free.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), E> {
        let m = self.classic_member(member_id, instance_id, generation)?;
        let rejoin = m.epoch < self.epoch
            || m.state == MemberState::UnrevokedPartitions
            || (m.state == MemberState::UnreleasedPartitions && !self.waiting_on_unreleased(m));
        self.touch_classic(member_id, now_ms);
        if rejoin {
            return Err(E::RebalanceInProgress);
        }
        Ok(())
    }

    /// Whether every partition `m` waits for is still owned by another member.
    fn waiting_on_unreleased(&self, m: &Member) -> bool {
        let target = self.target.get(&m.id).cloned().unwrap_or_default();
        let waiting: Vec<_> = target.iter_tps().filter(|tp| !m.assigned.contains(tp)).collect();
        waiting.iter().all(|tp| self.owned_by_other(&m.id, tp))
    }

    /// Kafka's `classicGroupLeaveToConsumerGroup` for one member: removes it (its
    /// partitions are free, the group epoch moves).
    pub fn classic_leave(&mut self, member_id: &str, instance_id: Option<&str>) -> Result<(), E> {
        let id = match instance_id {
            None => self.members.get(member_id).map(|m| m.id.clone()),
            Some(instance) => {
                let m = self.static_member(instance).ok_or(E::UnknownMemberId)?;
                if !member_id.is_empty() && m.id != member_id {
                    return Err(E::FencedInstanceId);
                }
                Some(m.id.clone())
            }
        };
        let id = id.ok_or(E::UnknownMemberId)?;
        self.remove_member(&id);
        Ok(())
    }

    /// Whether the group has members and all of them speak the classic protocol (Kafka's
    /// `validateOnlineDowngrade` before the policy and size checks).
    pub fn classic_members_only(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }
}
