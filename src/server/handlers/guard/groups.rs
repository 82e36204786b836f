//! Authorization of the consumer group APIs, as Kafka 3.x's `KafkaApis`:
//!
//! - FindCoordinator: needs DESCRIBE on the group, or on the transactional id; a denial answers
//!   GROUP_ or TRANSACTIONAL_ID_AUTHORIZATION_FAILED (per key from v4).
//! - JoinGroup, SyncGroup, Heartbeat, LeaveGroup: needs READ on the group; a denial answers
//!   GROUP_AUTHORIZATION_FAILED.
//! - OffsetCommit: needs READ on the group, then READ on each topic; a denial answers
//!   GROUP_AUTHORIZATION_FAILED for every partition; TOPIC_AUTHORIZATION_FAILED per partition.
//! - OffsetFetch: needs DESCRIBE on the group, then DESCRIBE on each topic (all partitions: only
//!   describable topics); a denial answers GROUP_AUTHORIZATION_FAILED (per group from v8);
//!   TOPIC_AUTHORIZATION_FAILED per partition.
//! - ListGroups: all groups with DESCRIBE on the cluster, else only the groups it may DESCRIBE.
//! - DeleteGroups: needs DELETE on each group; a denial answers GROUP_AUTHORIZATION_FAILED per
//!   group.
//! - ConsumerGroupHeartbeat: needs READ on the group (GROUP_AUTHORIZATION_FAILED).
//! - ConsumerGroupDescribe: needs DESCRIBE on each group; a denial answers
//!   GROUP_AUTHORIZATION_FAILED per group.
//! - OffsetDelete: needs DELETE on the group, then READ on each topic; a denial answers
//!   GROUP_AUTHORIZATION_FAILED; TOPIC_AUTHORIZATION_FAILED per partition.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{answer, append, deny, edit, message, Checked};
use crate::protocol::ResponseError as E;
use crate::security::acl::{Operation, ResourceType};
use crate::server::access::Gate;

const GROUP_DENIED: E = E::GroupAuthorizationFailed;
const TOPIC_DENIED: E = E::TopicAuthorizationFailed;
/// FindCoordinator key types.
const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

/// The group APIs. See the module docs.
pub(super) fn check(gate: &Gate, body: RequestKind, version: i16) -> Checked {
    let group = |op, id: &str| gate.allowed(op, ResourceType::Group, id);
    let denied = GROUP_DENIED.code();
    match body {
        RequestKind::FindCoordinator(req) => find_coordinator(gate, req, version),
        RequestKind::JoinGroup(req) if !group(Operation::Read, &req.group_id) => {
            let protocol = if version >= 7 { None } else { Some(StrBytes::default()) };
            let r = JoinGroupResponse::default()
                .with_error_code(denied)
                .with_generation_id(-1)
                .with_protocol_name(protocol);
            answer(ResponseKind::JoinGroup(r))
        }
        RequestKind::SyncGroup(req) if !group(Operation::Read, &req.group_id) => {
            answer(ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(denied)))
        }
        RequestKind::Heartbeat(req) if !group(Operation::Read, &req.group_id) => {
            answer(ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(denied)))
        }
        RequestKind::LeaveGroup(req) if !group(Operation::Read, &req.group_id) => {
            answer(ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(denied)))
        }
        RequestKind::OffsetCommit(req) => offset_commit(gate, req),
        RequestKind::OffsetFetch(req) if version < 8 => offset_fetch(gate, req, version),
        RequestKind::OffsetFetch(req) => offset_fetch_groups(gate, req),
        RequestKind::ListGroups(req) => {
            if gate.cluster(Operation::Describe) {
                return Ok((RequestKind::ListGroups(req), None));
            }
            let owned = gate.owned();
            let finish = edit(move |r| {
                let ResponseKind::ListGroups(r) = r else { return };
                let gate = owned.gate();
                r.groups.retain(|g| {
                    gate.permits(Operation::Describe, ResourceType::Group, &g.group_id)
                });
            });
            Ok((RequestKind::ListGroups(req), finish))
        }
        RequestKind::DeleteGroups(mut req) => {
            let refused = deny(&mut req.groups_names, |g| group(Operation::Delete, g));
            let finish = append(refused, move |r, refused| {
                let ResponseKind::DeleteGroups(r) = r else { return };
                r.results.extend(refused.into_iter().map(|g| {
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(g)
                        .with_error_code(denied)
                }));
            });
            Ok((RequestKind::DeleteGroups(req), finish))
        }
        RequestKind::OffsetDelete(req) => offset_delete(gate, req),
        RequestKind::ConsumerGroupHeartbeat(req) if !group(Operation::Read, &req.group_id) => {
            let r = ConsumerGroupHeartbeatResponse::default()
                .with_error_code(denied)
                .with_error_message(message(GROUP_DENIED));
            answer(ResponseKind::ConsumerGroupHeartbeat(r))
        }
        RequestKind::ConsumerGroupDescribe(mut req) => {
            let refused = deny(&mut req.group_ids, |g| group(Operation::Describe, g));
            let finish = append(refused, move |r, refused| {
                let ResponseKind::ConsumerGroupDescribe(r) = r else { return };
                r.groups.extend(refused.into_iter().map(|g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(denied)
                }));
            });
            Ok((RequestKind::ConsumerGroupDescribe(req), finish))
        }
        body => Ok((body, None)),
    }
}

fn find_coordinator(gate: &Gate, mut req: FindCoordinatorRequest, version: i16) -> Checked {
    let (rt, error) = match req.key_type {
        KEY_GROUP => (ResourceType::Group, GROUP_DENIED),
        KEY_TRANSACTION => (ResourceType::TransactionalId, E::TransactionalIdAuthorizationFailed),
        _ => return Ok((RequestKind::FindCoordinator(req), None)), // the handler's error
    };
    let may = |key: &str| gate.allowed(Operation::Describe, rt, key);
    if version < 4 {
        if may(&req.key) {
            return Ok((RequestKind::FindCoordinator(req), None));
        }
        let r = FindCoordinatorResponse::default()
            .with_error_code(error.code())
            .with_error_message(message(error))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        return answer(ResponseKind::FindCoordinator(r));
    }
    let refused = deny(&mut req.coordinator_keys, |k| may(k));
    let finish = append(refused, move |r, refused| {
        let ResponseKind::FindCoordinator(r) = r else { return };
        r.coordinators.extend(refused.into_iter().map(|key| {
            find_coordinator_response::Coordinator::default()
                .with_key(key)
                .with_error_code(error.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        }));
    });
    Ok((RequestKind::FindCoordinator(req), finish))
}

fn offset_commit(gate: &Gate, mut req: OffsetCommitRequest) -> Checked {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    let errors = |topics: &[offset_commit_request::OffsetCommitRequestTopic], error: E| {
        let topic = |t: &offset_commit_request::OffsetCommitRequestTopic| {
            let partitions = t.partitions.iter().map(|p| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error.code())
            });
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions.collect())
        };
        topics.iter().map(topic).collect::<Vec<_>>()
    };
    if !gate.allowed(Operation::Read, ResourceType::Group, &req.group_id) {
        let r = OffsetCommitResponse::default().with_topics(errors(&req.topics, GROUP_DENIED));
        return answer(ResponseKind::OffsetCommit(r));
    }
    let refused =
        deny(&mut req.topics, |t| gate.allowed(Operation::Read, ResourceType::Topic, &t.name));
    let refused = errors(&refused, TOPIC_DENIED);
    let finish = append(refused, |r, refused| {
        if let ResponseKind::OffsetCommit(r) = r {
            r.topics.extend(refused);
        }
    });
    Ok((RequestKind::OffsetCommit(req), finish))
}

fn unauthorized_partition(index: i32) -> offset_fetch_response::OffsetFetchResponsePartition {
    offset_fetch_response::OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_offset(-1)
        .with_committed_leader_epoch(-1)
        .with_metadata(Some(StrBytes::default()))
        .with_error_code(TOPIC_DENIED.code())
}

/// OffsetFetch v1-7: one group.
fn offset_fetch(gate: &Gate, mut req: OffsetFetchRequest, version: i16) -> Checked {
    use offset_fetch_response::OffsetFetchResponseTopic;
    if !gate.allowed(Operation::Describe, ResourceType::Group, &req.group_id) {
        let mut r = OffsetFetchResponse::default().with_error_code(GROUP_DENIED.code());
        if version < 2 {
            // v1 has no top-level error: every partition asked for carries it.
            let topics = req.topics.iter().flatten().map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|p| unauthorized_partition(*p).with_error_code(GROUP_DENIED.code()));
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions.collect())
            });
            r = r.with_topics(topics.collect()).with_error_code(0);
        }
        return answer(ResponseKind::OffsetFetch(r));
    }
    let Some(topics) = req.topics.as_mut() else {
        // Every partition: only the topics it may describe.
        let owned = gate.owned();
        let finish = edit(move |r| {
            let ResponseKind::OffsetFetch(r) = r else { return };
            let gate = owned.gate();
            r.topics.retain(|t| gate.permits(Operation::Describe, ResourceType::Topic, &t.name));
        });
        return Ok((RequestKind::OffsetFetch(req), finish));
    };
    let refused = deny(topics, |t| gate.allowed(Operation::Describe, ResourceType::Topic, &t.name));
    let finish = append(refused, |r, refused| {
        let ResponseKind::OffsetFetch(r) = r else { return };
        r.topics.extend(refused.into_iter().map(|t| {
            let partitions = t.partition_indexes.iter().map(|p| unauthorized_partition(*p));
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions.collect())
        }));
    });
    Ok((RequestKind::OffsetFetch(req), finish))
}

/// OffsetFetch v8+: a batch of groups, each checked alone.
fn offset_fetch_groups(gate: &Gate, mut req: OffsetFetchRequest) -> Checked {
    use offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
    };
    let refused_groups = deny(&mut req.groups, |g| {
        gate.allowed(Operation::Describe, ResourceType::Group, &g.group_id)
    });
    // Per allowed group: the topics refused, or (every partition asked) `None` to filter.
    let mut refused_topics: Vec<(
        GroupId,
        Option<Vec<offset_fetch_request::OffsetFetchRequestTopics>>,
    )> = Vec::new();
    for g in req.groups.iter_mut() {
        match g.topics.as_mut() {
            Some(topics) => {
                let refused = deny(topics, |t| {
                    gate.allowed(Operation::Describe, ResourceType::Topic, &t.name)
                });
                if !refused.is_empty() {
                    refused_topics.push((g.group_id.clone(), Some(refused)));
                }
            }
            None if gate.authorizing() => refused_topics.push((g.group_id.clone(), None)),
            None => {}
        }
    }
    if refused_groups.is_empty() && refused_topics.is_empty() {
        return Ok((RequestKind::OffsetFetch(req), None));
    }
    let owned = gate.owned();
    let finish = edit(move |r| {
        let ResponseKind::OffsetFetch(r) = r else { return };
        let gate = owned.gate();
        for (id, refused) in refused_topics {
            let Some(group) = r.groups.iter_mut().find(|g| g.group_id == id) else { continue };
            match refused {
                None => group
                    .topics
                    .retain(|t| gate.permits(Operation::Describe, ResourceType::Topic, &t.name)),
                Some(refused) => group.topics.extend(refused.into_iter().map(|t| {
                    let partitions = t.partition_indexes.iter().map(|p| {
                        let u = unauthorized_partition(*p);
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(u.partition_index)
                            .with_committed_offset(-1)
                            .with_committed_leader_epoch(-1)
                            .with_metadata(u.metadata)
                            .with_error_code(u.error_code)
                    });
                    OffsetFetchResponseTopics::default()
                        .with_name(t.name)
                        .with_partitions(partitions.collect())
                })),
            }
        }
        r.groups.extend(refused_groups.into_iter().map(|g| {
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_error_code(GROUP_DENIED.code())
        }));
    });
    Ok((RequestKind::OffsetFetch(req), finish))
}

fn offset_delete(gate: &Gate, mut req: OffsetDeleteRequest) -> Checked {
    use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    if !gate.allowed(Operation::Delete, ResourceType::Group, &req.group_id) {
        let r = OffsetDeleteResponse::default().with_error_code(GROUP_DENIED.code());
        return answer(ResponseKind::OffsetDelete(r));
    }
    let refused =
        deny(&mut req.topics, |t| gate.allowed(Operation::Read, ResourceType::Topic, &t.name));
    let finish = append(refused, |r, refused| {
        let ResponseKind::OffsetDelete(r) = r else { return };
        if r.error_code != 0 {
            return; // a group error answers without partitions, as Kafka
        }
        r.topics.extend(refused.into_iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(TOPIC_DENIED.code())
            });
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions.collect())
        }));
    });
    Ok((RequestKind::OffsetDelete(req), finish))
}
