//! Consumer group APIs: route each group's request to the shard that coordinates it.
//!
//! A group is coordinated by the shard owning partition `partition_for(group, n)` of
//! `__consumer_offsets` ([`crate::group`]). These handlers validate what needs cluster
//! metadata (group ids, partitions that exist), send the request there (or run it in place)
//! and merge batched answers (OffsetFetch v8+, DescribeGroups, DeleteGroups, ListGroups).

use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::controller::ClusterMetadata;
use crate::group::api::{
    FetchedOffsets, GroupOp, GroupReply, GroupRequest, HeartbeatContext, Topics,
};
use crate::group::{partition_for, GROUP_ID_BYTES_MAX, OFFSETS_TOPIC};
use crate::protocol::ResponseError as E;
use crate::server::mesh::ShardMsg;
use crate::server::shard::Shard;

/// FindCoordinator key type of consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator key type of transactional ids.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// FindCoordinator key type of share-partitions (KIP-932, v6+): `group:topicId:partition`.
const KEY_TYPE_SHARE: i8 = 2;

/// Runs the group APIs; gives back any other request.
pub async fn handle(
    shard: &Rc<Shard>,
    body: RequestKind,
    version: i16,
) -> Result<ResponseKind, RequestKind> {
    Ok(match body {
        RequestKind::SyncGroup(req) => ResponseKind::SyncGroup(sync(shard, req).await),
        RequestKind::Heartbeat(req) => ResponseKind::Heartbeat(heartbeat(shard, req).await),
        RequestKind::LeaveGroup(req) => ResponseKind::LeaveGroup(leave(shard, req, version).await),
        RequestKind::OffsetCommit(req) => ResponseKind::OffsetCommit(commit(shard, req).await),
        RequestKind::OffsetFetch(req) => {
            ResponseKind::OffsetFetch(fetch(shard, req, version).await)
        }
        RequestKind::ListGroups(req) => ResponseKind::ListGroups(list(shard, req).await),
        RequestKind::DescribeGroups(req) => {
            ResponseKind::DescribeGroups(describe(shard, req, version).await)
        }
        RequestKind::DeleteGroups(req) => ResponseKind::DeleteGroups(delete(shard, req).await),
        RequestKind::OffsetDelete(req) => {
            ResponseKind::OffsetDelete(offset_delete(shard, req).await)
        }
        RequestKind::ConsumerGroupDescribe(req) => {
            ResponseKind::ConsumerGroupDescribe(consumer_describe(shard, req, version).await)
        }
        other => return Err(other),
    })
}

/// A group id a coordinator accepts: not empty, at most `GROUP_ID_BYTES_MAX` bytes.
pub(super) fn valid_group_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= GROUP_ID_BYTES_MAX
}

/// The `__consumer_offsets` partition of a group and the shard owning it.
fn locate(shard: &Shard, group: &str) -> Result<(i32, usize), E> {
    locate_key(shard, OFFSETS_TOPIC, |count| partition_for(group, count))
}

/// The partition of the internal `topic` a key hashes to (`partition_of` its partition
/// count), and the shard owning it: NOT_COORDINATOR when another broker leads it.
pub(super) fn locate_key(
    shard: &Shard,
    topic: &str,
    partition_of: impl FnOnce(i32) -> i32,
) -> Result<(i32, usize), E> {
    let meta = shard.meta();
    let count = meta.partition_count(topic).ok_or(E::CoordinatorNotAvailable)?;
    let partition = partition_of(count);
    match meta.owner(topic, partition) {
        Ok(owner) => Ok((partition, owner)),
        Err(E::NotLeaderOrFollower) => Err(E::NotCoordinator),
        Err(_) => Err(E::CoordinatorNotAvailable),
    }
}

/// The broker coordinating `key`, a group id in [`OFFSETS_TOPIC`] or a transactional id in
/// the transaction state topic (both hash the same way): the leader of its partition of
/// `topic` (this broker on a single node), as (node id, host, port) on `listener`.
fn coordinator_of(
    shard: &Shard,
    topic: &str,
    key: &str,
    listener: &str,
) -> Result<(i32, String, u16), E> {
    let count = shard.meta().partition_count(topic).ok_or(E::CoordinatorNotAvailable)?;
    coordinator_at(shard, topic, partition_for(key, count), listener)
}

/// The broker leading `topic`'s `partition`, as FindCoordinator answers it.
fn coordinator_at(
    shard: &Shard,
    topic: &str,
    partition: i32,
    listener: &str,
) -> Result<(i32, String, u16), E> {
    let meta = shard.meta();
    match meta.owner(topic, partition) {
        Ok(_) => {
            let config = &shard.config;
            let own = config.listener(listener).unwrap_or(config.inter_broker());
            Ok((config.node_id, own.advertised_host.clone(), own.advertised_port))
        }
        Err(E::NotLeaderOrFollower) => {
            let leader = meta.partition(topic, partition).and_then(|p| p.leader);
            let broker = leader.and_then(|id| meta.brokers.get(&id));
            let broker = broker.ok_or(E::CoordinatorNotAvailable)?;
            let (host, port) = broker.endpoint(listener).ok_or(E::CoordinatorNotAvailable)?;
            Ok((broker.id, host.to_owned(), port))
        }
        Err(_) => Err(E::CoordinatorNotAvailable),
    }
}

/// The share coordinator of the share-partition `key` names (`group:topicId:partition`, the
/// topic id as Kafka prints it, base64, or hyphenated): the leader of its
/// `__share_group_state` partition.
fn share_coordinator(shard: &Shard, key: &str, listener: &str) -> Result<(i32, String, u16), E> {
    let key = share_key(key).ok_or(E::InvalidRequest)?;
    let count = shard
        .meta()
        .partition_count(crate::share::STATE_TOPIC)
        .ok_or(E::CoordinatorNotAvailable)?;
    let partition = crate::share::state_partition(&key, count);
    coordinator_at(shard, crate::share::STATE_TOPIC, partition, listener)
}

/// The share-partition of a FindCoordinator share key, if it is one.
fn share_key(key: &str) -> Option<crate::share::records::ShareKey> {
    use base64::Engine as _;
    let mut parts = key.rsplitn(3, ':');
    let partition: i32 = parts.next()?.parse().ok().filter(|p| *p >= 0)?;
    let topic = parts.next()?;
    let group = parts.next().filter(|g| !g.is_empty())?;
    let base64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(topic);
    let topic_id = match base64.ok().and_then(|bytes| uuid::Uuid::from_slice(&bytes).ok()) {
        Some(id) => id,
        None => uuid::Uuid::parse_str(topic).ok()?,
    };
    Some(crate::share::records::ShareKey { group: group.to_owned(), topic_id, partition })
}

/// Runs `op` on the shard coordinating `group` (NOT_COORDINATOR when another broker does).
pub(super) async fn route(shard: &Rc<Shard>, group: &str, op: GroupOp) -> Result<GroupReply, E> {
    let (partition, owner) = locate(shard, group)?;
    run_on(shard, owner, GroupRequest { partition, op }).await
}

async fn run_on(shard: &Rc<Shard>, owner: usize, request: GroupRequest) -> Result<GroupReply, E> {
    if owner == shard.id {
        return shard.groups.handle(request).await;
    }
    let (reply, answer) = oneshot::channel();
    if !shard.send(owner, ShardMsg::Group { request: Box::new(request), reply }).await {
        return Err(E::CoordinatorNotAvailable);
    }
    answer.await.map_err(|_| E::CoordinatorNotAvailable)
}

/// FindCoordinator that came in on `listener` (whose addresses it answers with).
pub(super) fn find_coordinator(
    shard: &Shard,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> =
        if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let located = match req.key_type {
                KEY_TYPE_GROUP if !valid_group_id(&key) => Err(E::InvalidRequest),
                KEY_TYPE_GROUP => coordinator_of(shard, OFFSETS_TOPIC, &key, listener),
                KEY_TYPE_TRANSACTION if !crate::txn::valid_id(&key) => Err(E::InvalidRequest),
                KEY_TYPE_TRANSACTION => {
                    coordinator_of(shard, crate::txn::TXN_TOPIC, &key, listener)
                }
                KEY_TYPE_SHARE if version >= 6 => share_coordinator(shard, &key, listener),
                _ => Err(E::InvalidRequest),
            };
            let found = Coordinator::default().with_key(key);
            match located {
                Err(e) => found
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&format!("{e}"))))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
                Ok((node, host, port)) => found
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(&host))
                    .with_port(port.into()),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let one = coordinators.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}

/// JoinGroup (needs the client id and address, so the dispatcher calls it directly).
pub async fn join(
    shard: &Rc<Shard>,
    req: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let failed = |e: E, req: &JoinGroupRequest| {
        JoinGroupResponse::default()
            .with_error_code(e.code())
            .with_generation_id(-1)
            .with_member_id(req.member_id.clone())
    };
    if !valid_group_id(&req.group_id) {
        return failed(E::InvalidGroupId, &req);
    }
    if super::share::is_share_group(shard, &req.group_id).await {
        // Kafka's classicGroupJoin answers a share group's id so.
        return failed(E::InconsistentGroupProtocol, &req);
    }
    let group = req.group_id.0.to_string();
    let member = req.member_id.clone();
    // The cluster's topics: a classic member joining a consumer group subscribes by name.
    let topics = topics_view(shard);
    let op = GroupOp::Join { req, version, client_id, client_host, topics };
    match route(shard, &group, op).await {
        Ok(GroupReply::Join(r)) => r,
        Ok(_) => failed(E::UnknownServerError, &JoinGroupRequest::default().with_member_id(member)),
        Err(e) => failed(e, &JoinGroupRequest::default().with_member_id(member)),
    }
}

async fn sync(shard: &Rc<Shard>, req: SyncGroupRequest) -> SyncGroupResponse {
    if !valid_group_id(&req.group_id) {
        return SyncGroupResponse::default().with_error_code(E::InvalidGroupId.code());
    }
    let group = req.group_id.0.to_string();
    match route(shard, &group, GroupOp::Sync { req }).await {
        Ok(GroupReply::Sync(r)) => r,
        Ok(_) => SyncGroupResponse::default().with_error_code(E::UnknownServerError.code()),
        Err(e) => SyncGroupResponse::default().with_error_code(e.code()),
    }
}

async fn heartbeat(shard: &Rc<Shard>, req: HeartbeatRequest) -> HeartbeatResponse {
    if !valid_group_id(&req.group_id) {
        return HeartbeatResponse::default().with_error_code(E::InvalidGroupId.code());
    }
    let group = req.group_id.0.to_string();
    match route(shard, &group, GroupOp::Heartbeat { req }).await {
        Ok(GroupReply::Heartbeat(r)) => r,
        Ok(_) => HeartbeatResponse::default().with_error_code(E::UnknownServerError.code()),
        Err(e) => HeartbeatResponse::default().with_error_code(e.code()),
    }
}

async fn leave(shard: &Rc<Shard>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    if !valid_group_id(&req.group_id) {
        return LeaveGroupResponse::default().with_error_code(E::InvalidGroupId.code());
    }
    let group = req.group_id.0.to_string();
    match route(shard, &group, GroupOp::Leave { req, version }).await {
        Ok(GroupReply::Leave(r)) => r,
        Ok(_) => LeaveGroupResponse::default().with_error_code(E::UnknownServerError.code()),
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
    }
}

/// Error codes of an offset commit's partitions, for OffsetCommit and TxnOffsetCommit alike:
/// a partition that does not exist is answered UNKNOWN_TOPIC_OR_PARTITION here, the rest by
/// the group's coordinator (its error stands for every partition it was sent).
pub(super) struct CommitCodes {
    codes: HashMap<(String, i32), i16>,
    fallback: i16,
}

impl CommitCodes {
    pub(super) fn new() -> CommitCodes {
        CommitCodes { codes: HashMap::new(), fallback: E::UnknownServerError.code() }
    }

    /// Keeps the partitions of `topic` that exist, noting the others.
    pub(super) fn keep_known<P>(
        &mut self,
        meta: &ClusterMetadata,
        topic: &str,
        partitions: &mut Vec<P>,
        index: impl Fn(&P) -> i32,
    ) {
        partitions.retain(|p| {
            let known = meta.partition(topic, index(p)).is_some();
            if !known {
                self.codes.insert((topic.to_owned(), index(p)), E::UnknownTopicOrPartition.code());
            }
            known
        });
    }

    /// Notes the coordinator's answer for one partition.
    pub(super) fn answered(&mut self, topic: &str, partition: i32, code: i16) {
        self.codes.insert((topic.to_owned(), partition), code);
    }

    /// Notes the coordinator's error: the answer of every partition it was sent.
    pub(super) fn failed(&mut self, error: E) {
        self.fallback = error.code();
    }

    /// The code of one partition of the request.
    pub(super) fn code(&self, topic: &str, partition: i32) -> i16 {
        self.codes.get(&(topic.to_owned(), partition)).copied().unwrap_or(self.fallback)
    }
}

/// OffsetCommit: partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION here; the rest
/// go to the coordinator.
async fn commit(shard: &Rc<Shard>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let meta = shard.meta();
    let mut codes = CommitCodes::new();
    let mut forwarded = req.clone();
    for topic in forwarded.topics.iter_mut() {
        codes.keep_known(&meta, &topic.name, &mut topic.partitions, |p| p.partition_index);
    }
    forwarded.topics.retain(|t| !t.partitions.is_empty());
    let group = req.group_id.0.to_string();
    let outcome = if !valid_group_id(&group) {
        Err(E::InvalidGroupId)
    } else if forwarded.topics.is_empty() {
        Ok(OffsetCommitResponse::default())
    } else {
        match route(shard, &group, GroupOp::Commit { req: forwarded }).await {
            Ok(GroupReply::Commit(r)) => Ok(r),
            Ok(_) => Err(E::UnknownServerError),
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(r) => r.topics.iter().for_each(|t| {
            let partitions = t.partitions.iter();
            partitions.for_each(|p| codes.answered(&t.name, p.partition_index, p.error_code))
        }),
        Err(e) => codes.failed(e),
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.code(&t.name, p.partition_index))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

async fn fetch_one(
    shard: &Rc<Shard>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    (member_id, member_epoch): (Option<String>, i32),
) -> FetchedOffsets {
    if !valid_group_id(group) {
        return FetchedOffsets { error: E::InvalidGroupId.code(), topics: Vec::new() };
    }
    let op = GroupOp::Fetch { group: group.to_owned(), topics, member_id, member_epoch };
    match route(shard, group, op).await {
        Ok(GroupReply::Fetch(f)) => f,
        Ok(_) => FetchedOffsets { error: E::UnknownServerError.code(), topics: Vec::new() },
        Err(e) => FetchedOffsets { error: e.code(), topics: Vec::new() },
    }
}

/// OffsetFetch: one group before v8, a batch of groups from v8.
async fn fetch(shard: &Rc<Shard>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version < 8 {
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect()
        });
        let fetched = fetch_one(shard, &req.group_id, topics, (None, -1)).await;
        let topics = fetched
            .topics
            .into_iter()
            .map(|(name, offsets)| {
                let partitions = offsets
                    .into_iter()
                    .map(|o| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(o.partition)
                            .with_committed_offset(o.offset)
                            .with_committed_leader_epoch(o.leader_epoch)
                            .with_metadata(Some(str_bytes(&o.metadata)))
                            .with_error_code(if o.error != 0 { o.error } else { fetched.error })
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(partitions)
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics).with_error_code(fetched.error);
    }
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let topics = g.topics.as_ref().map(|ts| {
            ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect()
        });
        // v9 (KIP-848): a consumer group member's id and epoch, checked by the coordinator.
        let member = (g.member_id.as_ref().map(|m| m.to_string()), g.member_epoch);
        let fetched = fetch_one(shard, &g.group_id, topics, member).await;
        let topics = fetched
            .topics
            .into_iter()
            .map(|(name, offsets)| {
                let partitions = offsets
                    .into_iter()
                    .map(|o| {
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(o.partition)
                            .with_committed_offset(o.offset)
                            .with_committed_leader_epoch(o.leader_epoch)
                            .with_metadata(Some(str_bytes(&o.metadata)))
                            .with_error_code(o.error)
                    })
                    .collect();
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_partitions(partitions)
            })
            .collect();
        groups.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_topics(topics)
                .with_error_code(fetched.error),
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// ListGroups: asks every shard for the groups it coordinates.
async fn list(shard: &Rc<Shard>, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string()).collect();
    let mut groups = Vec::new();
    let mut error = 0;
    for owner in 0..shard.count {
        let op = GroupOp::List { states: states.clone(), types: types.clone() };
        match run_on(shard, owner, GroupRequest { partition: -1, op }).await {
            Ok(GroupReply::List(found)) => groups.extend(found),
            Ok(_) => error = E::UnknownServerError.code(),
            Err(e) => error = e.code(),
        }
    }
    groups.extend(super::share::listed(shard, &states, &types).await);
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_error_code(error).with_groups(groups)
}

async fn describe(
    shard: &Rc<Shard>,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    use kafka_protocol::messages::describe_groups_response::DescribedGroup;
    let mut described = Vec::with_capacity(req.groups.len());
    for id in req.groups {
        let failed =
            |e: E| DescribedGroup::default().with_group_id(id.clone()).with_error_code(e.code());
        let mut group = if !valid_group_id(&id) {
            failed(E::InvalidGroupId)
        } else {
            match route(shard, &id, GroupOp::Describe { group: id.0.to_string() }).await {
                Ok(GroupReply::Describe(g)) => g,
                Ok(_) => failed(E::UnknownServerError),
                Err(e) => failed(e),
            }
        };
        // Before v6 Kafka answers an unknown group (or a consumer-protocol one) as a Dead
        // group without an error, and those versions have no error message to carry.
        if version < 6 {
            if group.error_code == E::GroupIdNotFound.code() {
                group.error_code = 0;
            }
            group.error_message = None;
        }
        described.push(group);
    }
    DescribeGroupsResponse::default().with_groups(described)
}

async fn delete(shard: &Rc<Shard>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let code = if !valid_group_id(&id) {
            E::InvalidGroupId.code()
        } else if super::share::is_share_group(shard, &id).await {
            super::share::delete_group(shard, &id).await
        } else {
            match route(shard, &id, GroupOp::Delete { group: id.0.to_string() }).await {
                Ok(GroupReply::Delete(code)) => code,
                Ok(_) => E::UnknownServerError.code(),
                Err(e) => e.code(),
            }
        };
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn offset_delete(shard: &Rc<Shard>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if !valid_group_id(&req.group_id) {
        return OffsetDeleteResponse::default().with_error_code(E::InvalidGroupId.code());
    }
    let group = req.group_id.0.to_string();
    match route(shard, &group, GroupOp::OffsetDelete { req }).await {
        Ok(GroupReply::OffsetDelete(r)) => r,
        Ok(_) => OffsetDeleteResponse::default().with_error_code(E::UnknownServerError.code()),
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
    }
}

/// The cluster's topics as consumer groups see them: name → (id, partition count).
fn topics_view(shard: &Shard) -> Topics {
    let meta = shard.meta();
    meta.topics
        .iter()
        .map(|(name, t)| {
            let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            (name.clone(), (t.id, count))
        })
        .collect()
}

/// ConsumerGroupHeartbeat (needs the client id and address, so the dispatcher calls it).
pub async fn consumer_heartbeat(
    shard: &Rc<Shard>,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> ConsumerGroupHeartbeatResponse {
    let failed = |e: E| ConsumerGroupHeartbeatResponse::default().with_error_code(e.code());
    if !valid_group_id(&req.group_id) {
        return failed(E::InvalidGroupId);
    }
    let group = req.group_id.0.to_string();
    if super::share::is_share_group(shard, &group).await {
        let why = format!("Group {group} is not a consumer group.");
        return failed(E::GroupIdNotFound).with_error_message(Some(str_bytes(&why)));
    }
    let topics = topics_view(shard);
    let ctx = HeartbeatContext { version, client_id, client_host, topics };
    match route(shard, &group, GroupOp::ConsumerHeartbeat { req, ctx }).await {
        Ok(GroupReply::ConsumerHeartbeat(r)) => r,
        Ok(_) => failed(E::UnknownServerError),
        Err(e) => failed(e),
    }
}

/// ConsumerGroupDescribe: each group from its coordinator, in request order.
async fn consumer_describe(
    shard: &Rc<Shard>,
    req: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
    let topics = topics_view(shard);
    let mut described = Vec::with_capacity(req.group_ids.len());
    for id in req.group_ids {
        let failed =
            |e: E| DescribedGroup::default().with_group_id(id.clone()).with_error_code(e.code());
        let group = if !valid_group_id(&id) {
            failed(E::InvalidGroupId)
        } else {
            let op = GroupOp::ConsumerDescribe {
                group: id.0.to_string(),
                topics: topics.clone(),
                version,
            };
            match route(shard, &id, op).await {
                Ok(GroupReply::ConsumerDescribe(g)) => g,
                Ok(_) => failed(E::UnknownServerError),
                Err(e) => failed(e),
            }
        };
        described.push(group);
    }
    ConsumerGroupDescribeResponse::default().with_groups(described)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::share_key;

    #[test]
    fn share_keys_name_group_topic_id_and_partition() {
        let id = uuid::Uuid::from_u128(7);
        let kafka = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes());
        for topic in [kafka, id.to_string()] {
            let key = share_key(&format!("a:b:{topic}:3")).expect("a share key");
            assert_eq!((key.group.as_str(), key.topic_id, key.partition), ("a:b", id, 3));
        }
        for bad in
            [":x:0", "g:not-an-id:0", "g:0", "g", "g:00000000-0000-0000-0000-000000000007:-1"]
        {
            assert!(share_key(bad).is_none(), "{bad}");
        }
    }
}
