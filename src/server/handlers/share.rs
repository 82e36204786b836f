//! Share group APIs (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch,
//! ShareAcknowledge and the share-group offset admin APIs (Describe/Alter/Delete
//! ShareGroupOffsets), on top of [`crate::server::share`].
//!
//! Heartbeats and describes go to the shard coordinating the group id (as consumer groups);
//! ShareFetch and ShareAcknowledge check the share session on the shard that took the request,
//! then send each partition's acknowledgements and acquisition to the shard owning the
//! partition. A ShareFetch that acquired nothing waits, like Fetch, until `max_wait_ms`, new
//! data on one of its partitions, or the earliest lock expiry, then tries again; its
//! piggy-backed acknowledgements are applied (and durable) in the first round.
//!
//! Version 2 of ShareFetch and ShareAcknowledge (Kafka 4.2) adds the Renew acknowledgement
//! (KIP-1222: restart the lock of records still being processed) and ShareFetch's
//! `share_acquire_mode` (KIP-1206). A renew ShareFetch (`is_renew_ack`) only acknowledges:
//! Kafka's `KafkaApis.handleShareFetchRequest` refuses one whose `max_wait_ms`, `min_bytes`,
//! `max_bytes` or `max_records` is not 0, and acquires nothing for it. Both acquire modes
//! acquire at most `max_records` records here: record-limit must, and batch-optimized (the
//! only behaviour of v1) may exceed it only to end on a batch boundary, which this broker never
//! does.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::config::limits;
use crate::group::share_meta::SharePartitions;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::protocol::ResponseError as E;
use crate::server::mesh::{OffsetAnswer, OffsetQuery, PartitionRef, ShardMsg};
use crate::server::router::per_partition;
use crate::server::session::Session;
use crate::server::shard::{LocalFuture, Shard};
use crate::server::share::{
    call, group_settings, stored_progress, AckBatch, MetaChange, PartitionOp, PartitionResult,
    ShareReply, ShareRequest, SpKey,
};
use crate::share::group::Heartbeat;
use crate::share::partition::lag as share_lag;
use crate::share::records::ShareKey;

/// Records one ShareFetch acquires per partition when the request sets no `max_records`.
const MAX_RECORDS_DEFAULT: usize = 500;
/// Largest ShareFetch response asked for that is honoured (Kafka's `fetch.max.bytes` default).
const FETCH_BYTES_MAX: usize = 50 << 20;
/// The assignor share groups use (Kafka's `SimpleAssignor`).
const ASSIGNOR: &str = "simple";
/// The first ShareFetch and ShareAcknowledge version with the Renew type (KIP-1222).
const RENEW_VERSION_MIN: i16 = 2;
/// ShareFetch `share_acquire_mode`: whole batches, `max_records` a soft limit (KIP-1206).
const ACQUIRE_MODE_BATCH_OPTIMIZED: i8 = 0;
/// ShareFetch `share_acquire_mode`: at most `max_records` records (KIP-1206).
const ACQUIRE_MODE_RECORD_LIMIT: i8 = 1;

/// Runs the share group APIs; gives back any other request.
pub async fn handle(
    shard: &Rc<Shard>,
    body: RequestKind,
    client: (String, String),
    version: i16,
) -> Result<ResponseKind, RequestKind> {
    Ok(match body {
        RequestKind::ShareGroupHeartbeat(req) => {
            ResponseKind::ShareGroupHeartbeat(heartbeat(shard, req, client).await)
        }
        RequestKind::ShareGroupDescribe(req) => {
            ResponseKind::ShareGroupDescribe(describe(shard, req).await)
        }
        RequestKind::ShareFetch(req) => {
            ResponseKind::ShareFetch(fetch(shard, req, None, version).await)
        }
        RequestKind::ShareAcknowledge(req) => {
            ResponseKind::ShareAcknowledge(acknowledge(shard, req, version).await)
        }
        RequestKind::DescribeShareGroupOffsets(req) => {
            ResponseKind::DescribeShareGroupOffsets(describe_offsets(shard, req).await)
        }
        RequestKind::AlterShareGroupOffsets(req) => {
            ResponseKind::AlterShareGroupOffsets(alter_offsets(shard, req).await)
        }
        RequestKind::DeleteShareGroupOffsets(req) => {
            ResponseKind::DeleteShareGroupOffsets(delete_offsets(shard, req).await)
        }
        other => return Err(other),
    })
}

/// The shard coordinating share group `group` (NOT_COORDINATOR when another broker does).
fn coordinator(shard: &Shard, group: &str) -> Result<usize, E> {
    if !super::group::valid_group_id(group) {
        return Err(E::InvalidGroupId);
    }
    let partition_of = |count| partition_for(group, count);
    super::group::locate_key(shard, OFFSETS_TOPIC, partition_of).map(|(_, owner)| owner)
}

/// Whether a share group holds id `group` (asked on its coordinating shard), so that a
/// classic or consumer group request for it is refused as Kafka refuses it.
pub(super) async fn is_share_group(shard: &Rc<Shard>, group: &str) -> bool {
    let request = ShareRequest::Exists { group: group.to_owned() };
    matches!(on_coordinator(shard, group, request).await, Ok(ShareReply::Exists(true)))
}

/// DeleteGroups of share group `group`, as Kafka's group coordinator: refused while it has
/// members; moves every topic its ShareGroupStatePartitionMetadata record lists (and any
/// share-partition a shard holds for it) to deleting, deletes their state
/// (DeleteShareGroupState through the persister, on each partition's owner), drops the
/// record (a tombstone), then the group. A group known only by its record (after a restart)
/// is deleted too. On an error the record keeps the topics as deleting; a retry deletes them.
pub(super) async fn delete_group(shard: &Rc<Shard>, group: &str) -> i16 {
    match has_members(shard, group).await {
        Ok(false) => {}
        Ok(true) => return E::NonEmptyGroup.code(),
        Err(e) => return e.code(),
    }
    let recorded = match meta(shard, group, None).await {
        Ok(recorded) => recorded,
        Err(code) => return code,
    };
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (id, topic) in recorded.all() {
        if let Some(known) = shard.meta().topic_by_id(id) {
            partitions.entry(known.name.to_string()).or_default().extend(topic.partitions);
        }
    }
    for name in recorded.deleting.values() {
        let count = shard.meta().partition_count(name).unwrap_or(0);
        partitions.entry(name.clone()).or_default().extend(0..count);
    }
    for owner in 0..shard.count {
        let request = ShareRequest::States { group: Some(group.to_owned()) };
        if let Some(ShareReply::States(states)) = call(shard, owner, request).await {
            for s in states {
                partitions.entry(s.topic).or_default().insert(s.partition);
            }
        }
    }
    let topics: Vec<(uuid::Uuid, String)> = partitions
        .keys()
        .filter_map(|name| Some((shard.meta().topics.get(name.as_str())?.id, name.clone())))
        .collect();
    if let Err(code) = meta(shard, group, Some(MetaChange::Deleting(topics.clone()))).await {
        return code;
    }
    for (name, ps) in &partitions {
        for &partition in ps {
            let code = reset_partition(shard, group, name, partition, None).await;
            if code != 0 {
                return code;
            }
        }
    }
    // Topics deleted since they were recorded go too (no partition of theirs is left to
    // reset here), so the record empties and its tombstone is written.
    let mut ids: BTreeSet<uuid::Uuid> = topics.iter().map(|(id, _)| *id).collect();
    ids.extend(recorded.all().into_keys().chain(recorded.deleting.keys().copied()));
    let deleted = MetaChange::Deleted(ids.into_iter().collect());
    if let Err(code) = meta(shard, group, Some(deleted)).await {
        return code;
    }
    let request = ShareRequest::DeleteGroup { group: group.to_owned() };
    match on_coordinator(shard, group, request).await {
        Ok(ShareReply::Reset(code))
            if code == E::GroupIdNotFound.code() && !recorded.is_empty() =>
        {
            0
        }
        Ok(ShareReply::Reset(code)) => code,
        Ok(_) => E::UnknownServerError.code(),
        Err(e) => e.code(),
    }
}

/// Reads share group `group`'s ShareGroupStatePartitionMetadata record after applying
/// `change` to it, on the group's coordinating shard.
async fn meta(
    shard: &Rc<Shard>,
    group: &str,
    change: Option<MetaChange>,
) -> Result<SharePartitions, i16> {
    let request = ShareRequest::Meta { group: group.to_owned(), change };
    match on_coordinator(shard, group, request).await {
        Ok(ShareReply::Meta(reply)) => reply,
        Ok(_) => Err(E::UnknownServerError.code()),
        Err(e) => Err(e.code()),
    }
}

/// Alters (`Some`: a new start offset, and the group epoch as the least state epoch) or
/// deletes (`None`) the state of one share-partition of `group`, on the partition's owner;
/// returns the error code.
async fn reset_partition(
    shard: &Rc<Shard>,
    group: &str,
    topic: &str,
    partition: i32,
    start_offset: Option<(i64, i32)>,
) -> i16 {
    let Some(topic_id) = shard.meta().topics.get(topic).map(|t| t.id) else {
        return E::UnknownTopicOrPartition.code();
    };
    let key = SpKey { group: group.to_owned(), topic: std::sync::Arc::from(topic), partition };
    let request = ShareRequest::Reset { key, topic_id, start_offset };
    match on_owner(shard, topic, partition, request).await {
        Ok(ShareReply::Reset(code)) => code,
        Ok(_) => E::UnknownServerError.code(),
        Err(e) => e.code(),
    }
}

async fn on_coordinator(
    shard: &Rc<Shard>,
    group: &str,
    req: ShareRequest,
) -> Result<ShareReply, E> {
    let owner = coordinator(shard, group)?;
    call(shard, owner, req).await.ok_or(E::CoordinatorNotAvailable)
}

async fn heartbeat(
    shard: &Rc<Shard>,
    req: ShareGroupHeartbeatRequest,
    (client_id, client_host): (String, String),
) -> ShareGroupHeartbeatResponse {
    let group_id = req.group_id.0.as_str();
    let interval = group_settings(shard, group_id).share_heartbeat_interval_ms;
    let interval = interval.min(i32::MAX as u64) as i32;
    let failed = |e: E| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_member_id(Some(req.member_id.clone()))
            .with_heartbeat_interval_ms(interval)
    };
    let joining = req.member_epoch == 0;
    if req.member_id.is_empty() || (joining && req.subscribed_topic_names.is_none()) {
        return failed(E::InvalidRequest);
    }
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        rack: req.rack_id.as_ref().map(|r| r.to_string()),
        client_id,
        client_host,
    };
    let group = req.group_id.0.to_string();
    let request = ShareRequest::Heartbeat { group: group.clone(), hb };
    let reply = match on_coordinator(shard, &group, request).await {
        Ok(ShareReply::Heartbeat(Ok(reply))) => reply,
        Ok(ShareReply::Heartbeat(Err(code))) if code == E::GroupIdNotFound.code() => {
            let why = format!("Group {group} is not a share group.");
            return failed(E::GroupIdNotFound).with_error_message(Some(str_bytes(&why)));
        }
        Ok(ShareReply::Heartbeat(Err(code))) => {
            return failed(E::try_from_code(code).unwrap_or(E::UnknownServerError))
        }
        Ok(_) => return failed(E::UnknownServerError),
        Err(e) => return failed(e),
    };
    let meta = shard.meta();
    let assignment = reply.assignment.map(|topics| {
        let topic_partitions = topics
            .into_iter()
            .filter_map(|(topic, partitions)| {
                let id = meta.topics.get(topic.as_str())?.id;
                Some(
                    share_group_heartbeat_response::TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(partitions),
                )
            })
            .collect();
        share_group_heartbeat_response::Assignment::default()
            .with_topic_partitions(topic_partitions)
    });
    ShareGroupHeartbeatResponse::default()
        .with_member_id(Some(req.member_id))
        .with_member_epoch(reply.member_epoch)
        .with_heartbeat_interval_ms(interval)
        .with_assignment(assignment)
}

async fn describe(shard: &Rc<Shard>, req: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    use share_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
    let mut groups = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let failed =
            |e: E| DescribedGroup::default().with_group_id(id.clone()).with_error_code(e.code());
        let group = id.0.to_string();
        let found = on_coordinator(shard, &group, ShareRequest::Describe { group: group.clone() });
        let g = match found.await {
            Ok(ShareReply::Describe(Ok(g))) => g,
            Ok(ShareReply::Describe(Err(code))) => {
                groups.push(failed(E::try_from_code(code).unwrap_or(E::UnknownServerError)));
                continue;
            }
            Ok(_) => {
                groups.push(failed(E::UnknownServerError));
                continue;
            }
            Err(e) => {
                groups.push(failed(e));
                continue;
            }
        };
        let meta = shard.meta();
        let members = g
            .members
            .values()
            .map(|m| {
                let topic_partitions = m
                    .assignment
                    .iter()
                    .map(|(topic, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(
                                meta.topics.get(topic.as_str()).map(|t| t.id).unwrap_or_default(),
                            )
                            .with_topic_name(TopicName(str_bytes(topic)))
                            .with_partitions(partitions.clone())
                    })
                    .collect();
                Member::default()
                    .with_member_id(str_bytes(&m.id))
                    .with_rack_id(m.rack.as_deref().map(str_bytes))
                    .with_member_epoch(m.epoch)
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed.iter().map(|t| TopicName(str_bytes(t))).collect(),
                    )
                    .with_assignment(Assignment::default().with_topic_partitions(topic_partitions))
            })
            .collect();
        groups.push(
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(StrBytes::from_static_str(g.state()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(StrBytes::from_static_str(ASSIGNOR))
                .with_members(members)
                .with_authorized_operations(i32::MIN),
        );
    }
    ShareGroupDescribeResponse::default().with_groups(groups)
}

/// The share groups of every shard, as ListGroups lists them (group type "share"), filtered
/// by `states` and `types` (case-insensitive; empty: all).
pub(super) async fn listed(
    shard: &Rc<Shard>,
    states: &[String],
    types: &[String],
) -> Vec<list_groups_response::ListedGroup> {
    let wanted = |filter: &[String], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    if !wanted(types, "share") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for owner in 0..shard.count {
        let Some(ShareReply::List(found)) = call(shard, owner, ShareRequest::List).await else {
            continue;
        };
        for (id, state) in found {
            if wanted(states, state) {
                out.push(
                    list_groups_response::ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(&id)))
                        .with_protocol_type(StrBytes::from_static_str("share"))
                        .with_group_state(StrBytes::from_static_str(state))
                        .with_group_type(StrBytes::from_static_str("share")),
                );
            }
        }
    }
    out
}

/// One partition of a ShareFetch or ShareAcknowledge, resolved.
struct Target {
    topic_id: uuid::Uuid,
    partition: i32,
    /// (owner shard, topic name), or the error code to answer.
    route: Result<(usize, std::sync::Arc<str>), i16>,
    acks: Vec<AckBatch>,
    leader_epoch: i32,
}

fn resolve(
    shard: &Shard,
    partitions: impl IntoIterator<Item = (uuid::Uuid, i32)>,
    acks: &mut BTreeMap<(uuid::Uuid, i32), Vec<AckBatch>>,
) -> Vec<Target> {
    let meta = shard.meta();
    partitions
        .into_iter()
        .map(|(topic_id, partition)| {
            let topic = meta.topic_by_id(topic_id);
            let route = match topic {
                None => Err(E::UnknownTopicId.code()),
                Some(t) => match meta.owner(&t.name, partition) {
                    Ok(owner) => Ok((owner, std::sync::Arc::from(t.name.as_str()))),
                    Err(e) => Err(e.code()),
                },
            };
            let leader_epoch = topic
                .and_then(|t| meta.partition(&t.name, partition))
                .map_or(-1, |p| p.leader_epoch);
            let acks = acks.remove(&(topic_id, partition)).unwrap_or_default();
            Target { topic_id, partition, route, acks, leader_epoch }
        })
        .collect()
}

/// Runs one round over `targets` on their owners: acknowledgements (first round only),
/// release (a closing session), acquisition (`fetch`).
async fn round(
    shard: &Rc<Shard>,
    group: &str,
    member: &str,
    targets: &[Target],
    first: bool,
    release: bool,
    fetch: Option<(usize, usize)>,
) -> Vec<PartitionResult> {
    let calls = targets.iter().map(|t| {
        let (group, member) = (group.to_owned(), member.to_owned());
        async move {
            let (owner, topic) = match &t.route {
                Ok(route) => route.clone(),
                Err(code) => {
                    let ack = if t.acks.is_empty() { 0 } else { *code };
                    return PartitionResult {
                        error_code: *code,
                        ack_error_code: ack,
                        high_watermark: -1,
                        ..Default::default()
                    };
                }
            };
            let op = PartitionOp {
                key: SpKey { group, topic, partition: t.partition },
                topic_id: t.topic_id,
                member,
                acks: if first { t.acks.clone() } else { Vec::new() },
                release,
                fetch,
            };
            match call(shard, owner, ShareRequest::Partition(op)).await {
                Some(ShareReply::Partition(result)) => result,
                _ => PartitionResult {
                    error_code: E::NotLeaderOrFollower.code(),
                    high_watermark: -1,
                    ..Default::default()
                },
            }
        }
    });
    futures::future::join_all(calls).await
}

/// The acknowledgement batches of a request of `version` (Renew is a type of v2+).
fn acks_of(batches: impl IntoIterator<Item = (i64, i64, Vec<i8>)>, version: i16) -> Vec<AckBatch> {
    let renew_allowed = version >= RENEW_VERSION_MIN;
    batches
        .into_iter()
        .map(|(first_offset, last_offset, types)| AckBatch {
            first_offset,
            last_offset,
            types,
            renew_allowed,
        })
        .collect()
}

fn ids(group: &Option<GroupId>, member: &Option<StrBytes>) -> Option<(String, String)> {
    let group = group.as_ref().map(|g| g.0.to_string()).filter(|g| !g.is_empty())?;
    let member = member.as_ref().map(|m| m.to_string()).filter(|m| !m.is_empty())?;
    Some((group, member))
}

/// ShareFetch on a connection (`session`), which notes the share sessions it opens so that
/// they close when it goes away ([`connection_closed`]).
pub(super) async fn fetch_on(
    shard: &Rc<Shard>,
    req: ShareFetchRequest,
    session: &Session,
    version: i16,
) -> ShareFetchResponse {
    fetch(shard, req, Some(session), version).await
}

/// A connection went away: closes the share sessions it opened (unless reopened since) and
/// releases their members' locks on the sessions' partitions, as Kafka's share session cache
/// does on a disconnect (its `ShareGroupListener.onMemberLeave`).
pub async fn connection_closed(shard: &Rc<Shard>, opened: Vec<(String, String, u64)>) {
    for (group, member, token) in opened {
        let partitions = shard.shares.close_session(&group, &member, token);
        if partitions.is_empty() {
            continue;
        }
        let targets = resolve(shard, partitions, &mut BTreeMap::new());
        round(shard, &group, &member, &targets, false, true, None).await;
        tracing::debug!(group = %group, member = %member,
            "share session closed with its connection; its locks released");
    }
}

async fn fetch(
    shard: &Rc<Shard>,
    req: ShareFetchRequest,
    opener: Option<&Session>,
    version: i16,
) -> ShareFetchResponse {
    let failed = |e: E| ShareFetchResponse::default().with_error_code(e.code());
    let Some((group, member)) = ids(&req.group_id, &req.member_id) else {
        return failed(E::InvalidRequest);
    };
    if let Err(why) = check_v2_fields(&req) {
        let message = Some(StrBytes::from_static_str(why));
        return failed(E::InvalidRequest).with_error_message(message);
    }
    let lock_ms = group_settings(shard, &group).share_record_lock_duration_ms;
    let lock_ms = lock_ms.min(i32::MAX as u64) as i32;
    let mut acks = BTreeMap::new();
    let mut add = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            add.push((t.topic_id, p.partition_index));
            if !p.acknowledgement_batches.is_empty() {
                let batches = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
                acks.insert((t.topic_id, p.partition_index), acks_of(batches, version));
            }
        }
    }
    let epoch = req.share_session_epoch;
    // Acknowledgements need a session to belong to (KIP-932).
    if epoch == 0 && !acks.is_empty() {
        return failed(E::InvalidRequest);
    }
    let forget: Vec<(uuid::Uuid, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    let session = match shard.shares.session(&group, &member, epoch, &add, &forget) {
        Ok(partitions) => partitions,
        Err(e) => return failed(e),
    };
    if let (0, Some(opener)) = (epoch, opener) {
        if let Some(token) = shard.shares.session_token(&group, &member) {
            opener.opened_share_session(&group, &member, token);
        }
    }
    let closing = epoch == -1;
    // The session's partitions, plus any acknowledged outside it.
    let mut all: Vec<(uuid::Uuid, i32)> = session.clone();
    for key in acks.keys() {
        if !all.contains(key) {
            all.push(*key);
        }
    }
    let targets = resolve(shard, all, &mut acks);
    let max_records =
        if req.max_records > 0 { req.max_records as usize } else { MAX_RECORDS_DEFAULT };
    let max_bytes = (req.max_bytes.max(1) as usize).min(FETCH_BYTES_MAX);
    // A renew fetch acknowledges and acquires nothing (KIP-1222).
    let fetching = (!closing && !req.is_renew_ack).then_some((max_bytes, max_records));
    let wait_ms = req.max_wait_ms.clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = req.min_bytes.max(1) as usize;
    let mut results = round(shard, &group, &member, &targets, true, closing, fetching).await;
    let ack_codes: Vec<i16> = results.iter().map(|r| r.ack_error_code).collect();
    loop {
        let bytes: usize = results.iter().map(|r| r.records.len()).sum();
        let failed = results.iter().any(|r| r.error_code != 0);
        let acks_only = fetching.is_none();
        if acks_only || bytes >= min_bytes || failed || Instant::now() >= deadline {
            break;
        }
        let any_acquired = results.iter().any(|r| !r.acquired.is_empty());
        if any_acquired {
            break;
        }
        wait(shard, &targets, &results, deadline).await;
        results = round(shard, &group, &member, &targets, false, false, fetching).await;
    }
    let full = epoch == 0;
    respond(shard, targets, results, ack_codes, full, lock_ms)
}

fn respond(
    shard: &Shard,
    targets: Vec<Target>,
    results: Vec<PartitionResult>,
    ack_codes: Vec<i16>,
    full: bool,
    lock_ms: i32,
) -> ShareFetchResponse {
    use share_fetch_response::{
        AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
    };
    let node = shard.config.node_id;
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    for ((t, r), ack_code) in targets.into_iter().zip(results).zip(ack_codes) {
        let acked = !t.acks.is_empty();
        if !full && r.acquired.is_empty() && r.error_code == 0 && !acked {
            continue;
        }
        let acquired = r
            .acquired
            .iter()
            .map(|a| {
                AcquiredRecords::default()
                    .with_first_offset(a.first_offset)
                    .with_last_offset(a.last_offset)
                    .with_delivery_count(a.delivery_count)
            })
            .collect();
        let data = PartitionData::default()
            .with_partition_index(t.partition)
            .with_error_code(r.error_code)
            .with_acknowledge_error_code(ack_code)
            .with_current_leader(
                LeaderIdAndEpoch::default().with_leader_id(node).with_leader_epoch(t.leader_epoch),
            )
            .with_records(Some(r.records))
            .with_acquired_records(acquired);
        match topics.iter_mut().find(|x| x.topic_id == t.topic_id) {
            Some(topic) => topic.partitions.push(data),
            None => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ShareFetchResponse::default().with_acquisition_lock_timeout_ms(lock_ms).with_responses(topics)
}

/// The ShareFetch v2 fields, as Kafka checks them: a known `share_acquire_mode`, and a renew
/// fetch (`is_renew_ack`) that asks for no data (`max_wait_ms`, `min_bytes`, `max_bytes` and
/// `max_records` all 0). A v1 request decodes to the defaults, which pass.
fn check_v2_fields(req: &ShareFetchRequest) -> Result<(), &'static str> {
    let modes = [ACQUIRE_MODE_BATCH_OPTIMIZED, ACQUIRE_MODE_RECORD_LIMIT];
    if !modes.contains(&req.share_acquire_mode) {
        return Err("Unknown share acquire mode.");
    }
    let asks_data = [req.max_wait_ms, req.min_bytes, req.max_bytes, req.max_records];
    if req.is_renew_ack && asks_data.iter().any(|v| *v != 0) {
        return Err("A renew acknowledgement fetch must set max wait, min bytes, max bytes \
             and max records to 0.");
    }
    Ok(())
}

/// Waits until new data on any target, the earliest lock deadline of a target, or `deadline`.
async fn wait(shard: &Rc<Shard>, targets: &[Target], seen: &[PartitionResult], deadline: Instant) {
    let now_ms = crate::group::now_ms();
    let lock_due = seen.iter().filter_map(|r| r.next_deadline_ms).min();
    let until = match lock_due {
        Some(due) => {
            let ms = u64::try_from(due.saturating_sub(now_ms)).unwrap_or(0);
            deadline.min(Instant::now() + Duration::from_millis(ms))
        }
        None => deadline,
    };
    let mut per_shard: Vec<Vec<(PartitionRef, i64)>> =
        (0..shard.count).map(|_| Vec::new()).collect();
    for (t, r) in targets.iter().zip(seen) {
        if let (Ok((owner, topic)), true) = (&t.route, r.high_watermark >= 0) {
            let p = PartitionRef { topic: topic.clone(), partition: t.partition };
            per_shard[*owner].push((p, r.high_watermark));
        }
    }
    let mut waits: Vec<LocalFuture<()>> = Vec::new();
    for (owner, items) in per_shard.into_iter().enumerate() {
        if items.is_empty() {
            continue;
        }
        if owner == shard.id {
            waits.push(shard.wait_local(&items, false));
            continue;
        }
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::WaitForData { items, replica: false, deadline: until, reply };
        if shard.send(owner, msg).await {
            waits.push(Box::pin(async move {
                let _ = answer.await;
            }));
        }
    }
    let timeout = glommio::timer::sleep(until.saturating_duration_since(Instant::now()));
    if waits.is_empty() {
        timeout.await;
        return;
    }
    let any = futures::future::select_all(waits);
    futures::pin_mut!(timeout);
    futures::future::select(any, timeout).await;
}

async fn acknowledge(
    shard: &Rc<Shard>,
    req: ShareAcknowledgeRequest,
    version: i16,
) -> ShareAcknowledgeResponse {
    use share_acknowledge_response::{
        LeaderIdAndEpoch, PartitionData, ShareAcknowledgeTopicResponse,
    };
    let failed = |e: E| ShareAcknowledgeResponse::default().with_error_code(e.code());
    let Some((group, member)) = ids(&req.group_id, &req.member_id) else {
        return failed(E::InvalidRequest);
    };
    // v2 answers the lock duration a renew restarted (KIP-1222); v1 drops the field.
    let lock_ms = group_settings(shard, &group).share_record_lock_duration_ms;
    let lock_ms = lock_ms.min(i32::MAX as u64) as i32;
    let failed = |e: E| failed(e).with_acquisition_lock_timeout_ms(lock_ms);
    let epoch = req.share_session_epoch;
    if epoch == 0 {
        return failed(E::InvalidShareSessionEpoch);
    }
    let mut acks = BTreeMap::new();
    let mut named = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            named.push((t.topic_id, p.partition_index));
            let batches = p
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            acks.insert((t.topic_id, p.partition_index), acks_of(batches, version));
        }
    }
    let closing = epoch == -1;
    let session = match shard.shares.session(&group, &member, epoch, &[], &[]) {
        Ok(partitions) => partitions,
        Err(e) => return failed(e),
    };
    // A closing session also releases the member's locks on every partition of it.
    let mut all = named.clone();
    if closing {
        all.extend(session.into_iter().filter(|p| !named.contains(p)));
    }
    let targets = resolve(shard, all, &mut acks);
    let results = round(shard, &group, &member, &targets, true, closing, None).await;
    let node = shard.config.node_id;
    let mut topics: Vec<ShareAcknowledgeTopicResponse> = Vec::new();
    for (t, r) in targets.into_iter().zip(results) {
        if !named.contains(&(t.topic_id, t.partition)) {
            continue;
        }
        let code = if r.ack_error_code != 0 { r.ack_error_code } else { r.error_code };
        let data = PartitionData::default()
            .with_partition_index(t.partition)
            .with_error_code(code)
            .with_current_leader(
                LeaderIdAndEpoch::default().with_leader_id(node).with_leader_epoch(t.leader_epoch),
            );
        match topics.iter_mut().find(|x| x.topic_id == t.topic_id) {
            Some(topic) => topic.partitions.push(data),
            None => topics.push(
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ShareAcknowledgeResponse::default()
        .with_acquisition_lock_timeout_ms(lock_ms)
        .with_responses(topics)
}

/// Whether share group `group` has members (the offset admin APIs need it empty).
async fn has_members(shard: &Rc<Shard>, group: &str) -> Result<bool, E> {
    let request = ShareRequest::Describe { group: group.to_owned() };
    match on_coordinator(shard, group, request).await? {
        ShareReply::Describe(Ok(g)) => Ok(!g.members.is_empty()),
        ShareReply::Describe(Err(_)) => Ok(false),
        _ => Err(E::UnknownServerError),
    }
}

/// Runs `request` on the owner of `topic`/`partition`.
async fn on_owner(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    request: ShareRequest,
) -> Result<ShareReply, E> {
    let owner = shard.meta().owner(topic, partition)?;
    call(shard, owner, request).await.ok_or(E::NotLeaderOrFollower)
}

/// The start offsets of one share group's share-partitions, by (topic, partition), and the
/// share-partitions whose stored state could not be read (their error code).
#[derive(Default)]
struct StartOffsets {
    known: BTreeMap<(String, i32), i64>,
    /// The share-partitions the group's record lists as initialized.
    initialized: BTreeSet<(String, i32)>,
    unreadable: BTreeMap<(String, i32), i16>,
    /// The KIP-1226 lag of those in `known` (-1: not known).
    lags: BTreeMap<(String, i32), i64>,
}

async fn describe_offsets(
    shard: &Rc<Shard>,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    use describe_share_group_offsets_response::*;
    let mut groups = Vec::new();
    for g in req.groups {
        let id = g.group_id.0.to_string();
        if let Err(e) = coordinator(shard, &id) {
            groups.push(
                DescribeShareGroupOffsetsResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(e.code()),
            );
            continue;
        }
        // Null (and, leniently, empty) topics mean every topic of the group.
        let asked: Option<Vec<(String, Vec<i32>)>> =
            g.topics.filter(|topics| !topics.is_empty()).map(|topics| {
                topics.into_iter().map(|t| (t.topic_name.0.to_string(), t.partitions)).collect()
            });
        let offsets = start_offsets(shard, &id, asked.as_ref()).await;
        let wanted = asked.unwrap_or_else(|| {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            let listed: BTreeSet<&(String, i32)> =
                offsets.known.keys().chain(&offsets.initialized).collect();
            for (topic, p) in listed {
                by_topic.entry(topic.clone()).or_default().push(*p);
            }
            by_topic.into_iter().collect()
        });
        let topics = wanted.into_iter().map(|(t, ps)| offsets_topic(shard, &offsets, t, ps));
        groups.push(
            DescribeShareGroupOffsetsResponseGroup::default()
                .with_group_id(g.group_id)
                .with_topics(topics.collect()),
        );
    }
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

/// The start offsets of group `id`: of the share-partitions every shard holds in memory, then
/// the stored state (`__share_group_state`) of those no shard holds (not used since a
/// restart) among `asked`, or, when all are asked, the topics the members subscribe to.
async fn start_offsets(
    shard: &Rc<Shard>,
    id: &str,
    asked: Option<&Vec<(String, Vec<i32>)>>,
) -> StartOffsets {
    let mut found = StartOffsets::default();
    for owner in 0..shard.count {
        let request = ShareRequest::States { group: Some(id.to_owned()) };
        if let Some(ShareReply::States(states)) = call(shard, owner, request).await {
            for s in states {
                let complete = i64::try_from(s.counts.2 + s.counts.3).unwrap_or(i64::MAX);
                let lag = share_lag(s.high_watermark, s.start_offset, complete);
                found.lags.insert((s.topic.clone(), s.partition), lag);
                found.known.insert((s.topic, s.partition), s.start_offset);
            }
        }
    }
    let meta = shard.meta();
    let candidates: Vec<(String, Vec<i32>)> = match asked {
        Some(asked) => asked.clone(),
        None => {
            let request = ShareRequest::Describe { group: id.to_owned() };
            let subscribed = match on_coordinator(shard, id, request).await {
                Ok(ShareReply::Describe(Ok(group))) => group.subscribed_topics(),
                _ => Vec::new(),
            };
            let partitions = |t: &str| Some(meta.topics.get(t)?.partitions.len() as i32);
            let mut candidates: Vec<(String, Vec<i32>)> = subscribed
                .into_iter()
                .filter_map(|t| Some((t.clone(), (0..partitions(&t)?).collect())))
                .collect();
            // Every partition the group initialized is listed, with or without a start
            // offset yet (Kafka lists the record's initialized topics).
            let recorded = self::meta(shard, id, None).await.unwrap_or_default();
            for (topic_id, topic) in &recorded.initialized {
                let Some(known) = meta.topic_by_id(*topic_id) else { continue };
                let ps: Vec<i32> = topic.partitions.iter().copied().collect();
                for p in &ps {
                    found.initialized.insert((known.name.to_string(), *p));
                }
                candidates.push((known.name.to_string(), ps));
            }
            candidates
        }
    };
    for (name, partitions) in candidates {
        let Some(topic) = meta.topics.get(name.as_str()) else { continue };
        for p in partitions {
            let name = (topic.name.clone(), p);
            if found.known.contains_key(&name) {
                continue;
            }
            let key = ShareKey { group: id.to_owned(), topic_id: topic.id, partition: p };
            match stored_progress(shard, &key).await {
                Ok(Some((start, complete))) => {
                    let hwm = high_watermark(shard, &topic.name, p).await;
                    found.lags.insert(name.clone(), share_lag(hwm, start, complete.into()));
                    found.known.insert(name, start);
                }
                Ok(None) => {}
                // Not readable yet (its state partition still loading, say): tell the client.
                Err(code) => {
                    found.unreadable.insert(name, code);
                }
            }
        }
    }
    found
}

/// The high watermark of `topic`'s `partition`, from the shard owning it (-1: not known).
async fn high_watermark(shard: &Rc<Shard>, topic: &str, partition: i32) -> i64 {
    let Ok(owner) = shard.meta().owner(topic, partition) else { return -1 };
    let partition = PartitionRef { topic: Arc::from(topic), partition };
    // ListOffsets' latest (-1), read uncommitted: the high watermark.
    let query = OffsetQuery { partition, timestamp: -1, read_committed: false };
    let answers = per_partition(
        shard,
        vec![vec![Ok((owner, query))]],
        |s, query| Box::pin(async move { s.offsets_local(query).await }),
        |items, reply| ShardMsg::ListOffsets { items, reply },
        || OffsetAnswer { error_code: E::NotLeaderOrFollower.code(), offset: -1, timestamp: -1 },
    )
    .await;
    match answers.first().and_then(|t| t.first()) {
        Some(a) if a.error_code == 0 => a.offset,
        _ => -1,
    }
}

/// One topic of a DescribeShareGroupOffsets answer.
fn offsets_topic(
    shard: &Shard,
    offsets: &StartOffsets,
    topic: String,
    partitions: Vec<i32>,
) -> describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseTopic {
    use describe_share_group_offsets_response::*;
    let meta = shard.meta();
    let topic_meta = meta.topics.get(topic.as_str());
    let partitions = partitions
        .into_iter()
        .map(|p| {
            let r = DescribeShareGroupOffsetsResponsePartition::default().with_partition_index(p);
            let name = (topic.clone(), p);
            match (topic_meta, offsets.known.get(&name), offsets.unreadable.get(&name)) {
                (None, _, _) => {
                    r.with_error_code(E::UnknownTopicOrPartition.code()).with_start_offset(-1)
                }
                (Some(_), Some(start), _) => {
                    let lag = offsets.lags.get(&name).copied().unwrap_or(-1);
                    r.with_start_offset(*start).with_leader_epoch(0).with_lag(lag)
                }
                (Some(_), None, Some(code)) => r.with_error_code(*code).with_start_offset(-1),
                (Some(_), None, None) => r.with_start_offset(-1).with_leader_epoch(-1),
            }
        })
        .collect();
    DescribeShareGroupOffsetsResponseTopic::default()
        .with_topic_name(TopicName(str_bytes(&topic)))
        .with_topic_id(topic_meta.map(|t| t.id).unwrap_or_default())
        .with_partitions(partitions)
}

/// AlterShareGroupOffsets, as Kafka's group coordinator (with KAFKA-20910): refused while
/// the group has members; bumps and records the group epoch, records the partitions as
/// initializing, initializes each one's state at the new start offset with the new epoch as
/// its state epoch, then records those that succeeded as initialized.
async fn alter_offsets(
    shard: &Rc<Shard>,
    req: AlterShareGroupOffsetsRequest,
) -> AlterShareGroupOffsetsResponse {
    use alter_share_group_offsets_response::*;
    let group = req.group_id.0.to_string();
    let refused = |code: i16| AlterShareGroupOffsetsResponse::default().with_error_code(code);
    match has_members(shard, &group).await {
        Ok(false) => {}
        Ok(true) => return refused(E::NonEmptyGroup.code()),
        Err(e) => return refused(e.code()),
    }
    let request = ShareRequest::BumpEpoch { group: group.clone() };
    let epoch = match on_coordinator(shard, &group, request).await {
        Ok(ShareReply::Epoch(Ok(epoch))) => epoch,
        Ok(ShareReply::Epoch(Err(code))) => return refused(code),
        Ok(_) => return refused(E::UnknownServerError.code()),
        Err(e) => return refused(e.code()),
    };
    let mut responses = Vec::new();
    for t in req.topics {
        let name = t.topic_name.0.to_string();
        let (topic_id, count) = match shard.meta().topics.get(name.as_str()) {
            Some(m) => (Some(m.id), m.partitions.len()),
            None => (None, 0),
        };
        let mut partitions = Vec::new();
        let mut initialized = Vec::new();
        if let Some(topic_id) = topic_id {
            // Only partitions that exist (Kafka filters the same way).
            let exists = |p: &i32| usize::try_from(*p).is_ok_and(|p| p < count);
            let partitions =
                t.partitions.iter().map(|p| p.partition_index).filter(exists).collect();
            let change = MetaChange::Initializing { topic_id, name: name.clone(), partitions };
            if let Err(code) = meta(shard, &group, Some(change)).await {
                crate::log_limited!(WARN, group = %group, topic = %name, code,
                    "share-partitions to alter not recorded as initializing");
            }
        }
        for p in t.partitions {
            let start = Some((p.start_offset, epoch));
            let code = reset_partition(shard, &group, &name, p.partition_index, start).await;
            if code == 0 {
                initialized.push(p.partition_index);
            }
            partitions.push(
                AlterShareGroupOffsetsResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        if let (Some(topic_id), false) = (topic_id, initialized.is_empty()) {
            let partitions = initialized;
            let change = MetaChange::Initialized { topic_id, name: name.clone(), partitions };
            if let Err(code) = meta(shard, &group, Some(change)).await {
                crate::log_limited!(WARN, group = %group, topic = %name, code,
                    "altered share-partitions not recorded as initialized");
            }
        }
        responses.push(
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name)
                .with_topic_id(topic_id.unwrap_or_default())
                .with_partitions(partitions),
        );
    }
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

async fn delete_offsets(
    shard: &Rc<Shard>,
    req: DeleteShareGroupOffsetsRequest,
) -> DeleteShareGroupOffsetsResponse {
    use delete_share_group_offsets_response::*;
    let group = req.group_id.0.to_string();
    match has_members(shard, &group).await {
        Ok(false) => {}
        Ok(true) => {
            return DeleteShareGroupOffsetsResponse::default()
                .with_error_code(E::NonEmptyGroup.code())
        }
        Err(e) => return DeleteShareGroupOffsetsResponse::default().with_error_code(e.code()),
    }
    let mut responses = Vec::new();
    for t in req.topics {
        let name = t.topic_name.0.to_string();
        let cluster = shard.meta();
        let Some(topic) = cluster.topics.get(name.as_str()) else {
            responses.push(
                DeleteShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(t.topic_name)
                    .with_error_code(E::UnknownTopicOrPartition.code()),
            );
            continue;
        };
        let topic_id = topic.id;
        let count = topic.partitions.len() as i32;
        drop(cluster);
        let deleting = MetaChange::Deleting(vec![(topic_id, name.clone())]);
        let mut code = meta(shard, &group, Some(deleting)).await.err().unwrap_or(0);
        for partition in 0..count {
            match reset_partition(shard, &group, &name, partition, None).await {
                0 => {}
                c => code = c,
            }
        }
        if code == 0 {
            let deleted = MetaChange::Deleted(vec![topic_id]);
            code = meta(shard, &group, Some(deleted)).await.err().unwrap_or(0);
        }
        responses.push(
            DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name)
                .with_topic_id(topic_id)
                .with_error_code(code),
        );
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}
