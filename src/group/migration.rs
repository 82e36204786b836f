//! Online migration between classic groups and KIP-848 consumer groups, on the coordinator
//! (Kafka 4.0's `GroupMetadataManager`: `validateOnlineUpgrade`, `convertToConsumerGroup`,
//! `classicGroup{Join,Sync,Heartbeat,Leave}ToConsumerGroup`, `convertToClassicGroup`), with
//! `group.consumer.migration.policy` deciding which way conversions go.
//!
//! * **Upgrade**: the first ConsumerGroupHeartbeat (epoch 0) for a classic group with members
//!   and protocol type `consumer` turns it into a consumer group whose members are the classic
//!   members with their current assignments ([`ConsumerGroup::from_classic`]); members waiting
//!   in a join or sync phase get REBALANCE_IN_PROGRESS and rejoin. Refused (GROUP_ID_NOT_FOUND,
//!   as Kafka) when the policy forbids it, the protocol type is another or the group is larger
//!   than `group.consumer.max.size`. The caller persists the conversion in one batch: the
//!   classic record's tombstone, then the consumer group's records.
//! * **Classic members inside a consumer group**: JoinGroup, SyncGroup, Heartbeat and
//!   LeaveGroup are answered from the consumer group (see [`super::consumer::classic`]).
//! * **Downgrade**: when the last consumer-protocol member leaves or is fenced and classic
//!   members remain, the group becomes a classic group at generation = group epoch, each
//!   member keeping its assignment, and a rebalance starts; written as the consumer records'
//!   tombstones then the classic group's record, in one batch.
//!
//! No borrow of the groups is held across an await.

use super::consumer::classic::{encode_assignment, ClassicJoin};
use super::consumer::{ConsumerGroup, Settings, Topics};
use super::consumer_ops::ConsumerSlot;
use super::coordinator::{append_durable, Coordinator, Slot};
use super::now_ms;
use super::records::OffsetsRecord;
use super::state::SyncOutcome;
use super::state::{Group, GroupSnapshot, JoinArgs, JoinOutcome, Member, Outbox, SyncArgs};
use crate::protocol::ResponseError as E;

/// The protocol type of groups of Kafka consumers.
const CONSUMER_PROTOCOL: &str = "consumer";

/// Kafka's `validateOnlineUpgrade` then `ConsumerGroup.fromClassicGroup`, pure: the consumer
/// group the classic group `g` becomes, or the refusal the joining consumer member gets.
pub(super) fn to_consumer(
    g: &Group,
    settings: Settings,
    topics: &Topics,
    now_ms: i64,
) -> Result<ConsumerGroup, (E, String)> {
    let id = &g.id;
    let refused = |why: &str| {
        tracing::info!(group = %id, "not converting the classic group to a consumer group: {why}");
        Err((E::GroupIdNotFound, format!("Group {id} is not a consumer group.")))
    };
    if !settings.migration.upgrade() {
        return refused("group.consumer.migration.policy forbids upgrades");
    }
    if g.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL) {
        return refused("its protocol type is not consumer");
    }
    if g.members.len() > settings.max_size {
        return refused("it has more members than group.consumer.max.size");
    }
    if g.members.len() == settings.max_size {
        // Kafka converts, then refuses the joining member and drops the conversion with the
        // rest of the request's records: the same answer, without converting.
        return Err((E::GroupMaxSizeReached, "the group has reached its max size".into()));
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    let members = g
        .members
        .values()
        .map(|m| {
            let join = ClassicJoin {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: m.protocols.clone(),
            };
            (join, m.assignment.clone())
        })
        .collect();
    let generation = g.generation;
    Ok(ConsumerGroup::from_classic(id, settings, generation, &protocol, members, topics, now_ms))
}

/// Turns the classic group in `slot` into a consumer group ([`to_consumer`]), or says why
/// not. `fresh` is an empty classic group that takes over the committed offsets; members
/// waiting in a join or sync phase are answered REBALANCE_IN_PROGRESS.
pub(super) fn upgrade(
    slot: &mut Slot,
    settings: Settings,
    topics: &Topics,
    fresh: Group,
) -> Result<(), (E, String)> {
    let group = to_consumer(&slot.group, settings, topics, now_ms())?;
    tracing::info!(group = %group.id, members = group.members.len(), epoch = group.epoch,
        "converted the classic group to a consumer group");
    let offsets = std::mem::take(&mut slot.group.offsets);
    slot.group = fresh;
    slot.group.offsets = offsets;
    for (member, tx) in slot.joins.drain() {
        let _ = tx.send(JoinOutcome::error(E::RebalanceInProgress, &member));
    }
    for (_, tx) in slot.syncs.drain() {
        let _ = tx.send(SyncOutcome::error(E::RebalanceInProgress));
    }
    slot.consumer = Some(ConsumerSlot { group, persisted: Default::default() });
    Ok(())
}

/// Kafka's `throwIfConsumerGroupIsFull` then `throwIfClassicProtocolIsNotSupported` for a
/// JoinGroup of `member_id` to the consumer group `g`: GROUP_MAX_SIZE_REACHED for a new
/// member of a full group, then INCONSISTENT_GROUP_PROTOCOL unless the protocol type is
/// `consumer` and one of its protocols is supported by every classic member already in the
/// group (any non-empty list when there is none). The migration policy plays no part: it
/// decides conversions only, as in Kafka.
pub(super) fn check_classic_join(
    g: &ConsumerGroup,
    member_id: &str,
    args: &JoinArgs,
) -> Result<(), E> {
    if !g.members.contains_key(member_id) && g.members.len() >= g.settings.max_size {
        return Err(E::GroupMaxSizeReached);
    }
    let classic: Vec<_> = g.members.values().filter_map(|m| m.classic.as_ref()).collect();
    let supported = args
        .protocols
        .iter()
        .any(|(name, _)| classic.iter().all(|c| c.protocols.iter().any(|(n, _)| n == name)));
    if args.protocol_type != CONSUMER_PROTOCOL || !supported {
        return Err(E::InconsistentGroupProtocol);
    }
    Ok(())
}

/// Kafka's `validateOnlineDowngrade` then `convertToClassicGroup`, pure: when only classic
/// members remain in `g` and the policy allows it, the classic group it becomes (`fresh`
/// filled in at generation = group epoch, a rebalance started); `None` when it stays.
pub(super) fn to_classic(g: &ConsumerGroup, mut fresh: Group, now_ms: i64) -> Option<Group> {
    let allowed = g.settings.migration.downgrade()
        && g.classic_members_only()
        && g.members.len() <= super::GROUP_MEMBERS_MAX;
    if !allowed {
        return None;
    }
    fresh.restore(classic_snapshot(g, now_ms), now_ms);
    // Nobody waits on this group yet: the outbox stays empty.
    fresh.start_rebalance(now_ms, &mut Outbox::default());
    Some(fresh)
}

impl Coordinator {
    /// JoinGroup of a classic member into the consumer group of `group_id`
    /// (`classicGroupJoinToConsumerGroup`); answered once its changes are durable.
    pub(super) async fn classic_join_to_consumer(
        &self,
        group_id: &str,
        args: JoinArgs,
        topics: &Topics,
    ) -> JoinOutcome {
        let checked = {
            let groups = self.groups.borrow();
            match groups.get(group_id).and_then(|s| s.consumer.as_ref()) {
                None => Err(E::CoordinatorNotAvailable),
                Some(c) => check_classic_join(&c.group, &args.member_id, &args),
            }
        };
        if let Err(e) = checked {
            return JoinOutcome::error(e, &args.member_id);
        }
        let mut member_id = args.member_id.clone();
        if member_id.is_empty() {
            member_id = uuid::Uuid::new_v4().to_string();
            if args.require_known_member_id && args.instance_id.is_none() {
                return JoinOutcome::error(E::MemberIdRequired, &member_id);
            }
        }
        let join = ClassicJoin {
            member_id: member_id.clone(),
            instance_id: args.instance_id,
            client_id: args.client_id,
            client_host: args.client_host,
            session_timeout_ms: args.session_timeout_ms,
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            protocols: args.protocols,
        };
        let result = {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(group_id).and_then(|s| s.consumer.as_mut()) {
                None => Err((E::CoordinatorNotAvailable, None)),
                Some(c) => c.group.classic_join(join, topics, now_ms()),
            }
        };
        if let Err(e) = self.persist_consumer(group_id, Vec::new()).await {
            tracing::error!(group = group_id, "persisting the consumer group failed: {e}");
            self.reschedule(group_id);
            return JoinOutcome::error(E::CoordinatorNotAvailable, &member_id);
        }
        self.reschedule(group_id);
        if result.is_ok() {
            // It may have taken the place of the last consumer-protocol (static) member.
            self.maybe_downgrade(group_id).await;
        }
        match result {
            Err((e, _)) => JoinOutcome::error(e, &member_id),
            Ok(joined) => JoinOutcome {
                error: 0,
                generation: joined.generation,
                protocol_type: Some(CONSUMER_PROTOCOL.into()),
                protocol_name: Some(joined.protocol_name),
                // Nobody leads: the coordinator assigns; the member syncs with no assignments.
                leader: String::new(),
                member_id: joined.member_id,
                members: Vec::new(),
                skip_assignment: false,
            },
        }
    }

    /// SyncGroup of a classic member of a consumer group (`classicGroupSyncToConsumerGroup`):
    /// its current assignment as a ConsumerProtocolAssignment. `None` when `group_id` is not a
    /// consumer group.
    pub(super) fn classic_sync_to_consumer(
        &self,
        group_id: &str,
        args: &SyncArgs,
    ) -> Option<SyncOutcome> {
        let mut groups = self.groups.borrow_mut();
        let c = groups.get_mut(group_id).and_then(|s| s.consumer.as_mut())?;
        let g = &mut c.group;
        if args.protocol_type.as_deref().is_some_and(|t| t != CONSUMER_PROTOCOL) {
            return Some(SyncOutcome::error(E::InconsistentGroupProtocol));
        }
        let instance = args.instance_id.as_deref();
        let outcome = match g.classic_sync(&args.member_id, instance, args.generation, now_ms()) {
            Err(e) => SyncOutcome::error(e),
            Ok(assigned) => {
                let topics = g.metadata.clone().unwrap_or_default();
                let first = g.members.get(&args.member_id).and_then(|m| {
                    m.classic.as_ref().and_then(|c| c.protocols.first().map(|(n, _)| n.clone()))
                });
                SyncOutcome {
                    error: 0,
                    protocol_type: Some(CONSUMER_PROTOCOL.into()),
                    protocol_name: args.protocol_name.clone().or(first),
                    assignment: encode_assignment(&assigned, &topics),
                }
            }
        };
        Some(outcome)
    }

    /// LeaveGroup of classic members of a consumer group: one code per member. `None` when
    /// `group_id` is not a consumer group.
    pub(super) async fn classic_leave_to_consumer(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Option<Vec<i16>> {
        let codes = {
            let mut groups = self.groups.borrow_mut();
            let c = groups.get_mut(group_id).and_then(|s| s.consumer.as_mut())?;
            leaving
                .iter()
                .map(|(id, instance)| match c.group.classic_leave(id, instance.as_deref()) {
                    Ok(()) => 0,
                    Err(e) => e.code(),
                })
                .collect::<Vec<i16>>()
        };
        if let Err(e) = self.persist_consumer(group_id, Vec::new()).await {
            tracing::error!(group = group_id, "persisting the consumer group failed: {e}");
            self.reschedule(group_id);
            return Some(vec![E::CoordinatorNotAvailable.code(); leaving.len()]);
        }
        self.reschedule(group_id);
        Some(codes)
    }

    /// Kafka's `validateOnlineDowngrade` then `convertToClassicGroup`: when only classic
    /// members remain in the consumer group of `group_id` and the policy allows it, the group
    /// becomes a classic group and a rebalance starts.
    pub(super) async fn maybe_downgrade(&self, group_id: &str) {
        let partition = {
            let mut groups = self.groups.borrow_mut();
            let Some(slot) = groups.get_mut(group_id) else {
                return;
            };
            let Some(c) = &slot.consumer else {
                return;
            };
            let now = now_ms();
            let Some(mut group) = to_classic(&c.group, self.new_group(group_id), now) else {
                return;
            };
            group.offsets = std::mem::take(&mut slot.group.offsets);
            tracing::info!(
                group = group_id,
                members = group.members.len(),
                generation = group.generation,
                "converted the consumer group to a classic group"
            );
            slot.group = group;
            slot.partition
        };
        let mut records = self.drop_consumer(group_id);
        let snapshot = self.groups.borrow().get(group_id).map(|s| s.group.snapshot());
        records.push(OffsetsRecord::Group { group: group_id.to_owned(), value: snapshot });
        let written = match self.ready_log(partition) {
            Err(e) => Err(format!("{e:?}")),
            Ok(log) => append_durable(&log, &records).await,
        };
        if let Err(e) = written {
            tracing::error!(group = group_id, "persisting the group's downgrade failed: {e}");
        }
        self.reschedule(group_id);
    }
}

/// The classic group a consumer group of classic members becomes: generation = group epoch,
/// each member with its JoinGroup protocols and its assignment as a ConsumerProtocolAssignment.
fn classic_snapshot(g: &ConsumerGroup, now_ms: i64) -> GroupSnapshot {
    let topics = g.metadata.clone().unwrap_or_default();
    let members: Vec<Member> = g
        .members
        .values()
        .filter_map(|m| {
            let c = m.classic.as_ref()?;
            Some(Member {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: c.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: c.protocols.clone(),
                assignment: encode_assignment(&m.assigned, &topics),
                awaiting_join: false,
                awaiting_sync: false,
                heartbeat_deadline_ms: 0,
            })
        })
        .collect();
    // The protocol every member supports, in the first member's order.
    let protocol = members.first().and_then(|first| {
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .find(|name| members.iter().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    });
    GroupSnapshot {
        protocol_type: Some(CONSUMER_PROTOCOL.into()),
        generation: g.epoch,
        protocol,
        leader: None,
        state_timestamp_ms: now_ms,
        members,
    }
}

#[cfg(test)]
#[path = "migration_tests.rs"]
mod tests;
