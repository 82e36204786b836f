//! Authorization of Metadata, and the authorized-operation fields of Metadata (v8+),
//! DescribeGroups (v3+) and DescribeCluster, as Kafka 3.x's `KafkaApis`:
//!
//! - Metadata lists only topics the principal may DESCRIBE. Asking for all topics leaves the
//!   others out silently; naming a topic it may not describe answers
//!   TOPIC_AUTHORIZATION_FAILED for it (with no topic id; asked by id, no name). A topic that
//!   does not exist is auto-created only with CREATE on the cluster or on the topic, else
//!   TOPIC_AUTHORIZATION_FAILED.
//! - DescribeTopicPartitions as Metadata, except that a topic named but not describable is
//!   answered last (as Kafka's handler appends them), and each described topic carries its
//!   authorized operations (it has no flag to ask for them).
//! - DescribeGroups needs DESCRIBE on each group (GROUP_AUTHORIZATION_FAILED).
//! - Asked for authorized operations, the answer is the bit field of the supported operations
//!   the principal may do (every supported one with no authorizer); a cluster's is 0 without
//!   DESCRIBE on it. Left as "not asked" (INT32_MIN) otherwise.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{deny, edit, Checked};
use crate::controller::validate_topic_name;
use crate::protocol::ResponseError as E;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::server::access::Gate;
use crate::server::shard::Shard;

/// Metadata v4 added the client's auto-creation flag.
const AUTO_CREATE_FLAG_VERSION: i16 = 4;

/// Metadata, DescribeGroups and DescribeCluster. See the module docs.
pub(super) fn check(gate: &Gate, shard: &Shard, body: RequestKind, version: i16) -> Checked {
    match body {
        RequestKind::Metadata(req) => metadata(gate, shard, req, version),
        RequestKind::DescribeGroups(req) => describe_groups(gate, req, version),
        RequestKind::DescribeTopicPartitions(req) => describe_topic_partitions(gate, shard, req),
        RequestKind::DescribeCluster(req) => {
            let wanted = req.include_cluster_authorized_operations;
            let ops = wanted.then(|| cluster_operations(gate));
            let finish = ops.and_then(|ops| {
                edit(move |r| {
                    if let ResponseKind::DescribeCluster(r) = r {
                        r.cluster_authorized_operations = ops;
                    }
                })
            });
            Ok((RequestKind::DescribeCluster(req), finish))
        }
        body => Ok((body, None)),
    }
}

fn cluster_operations(gate: &Gate) -> i32 {
    if gate.cluster(Operation::Describe) {
        gate.operations(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}

fn metadata(gate: &Gate, shard: &Shard, mut req: MetadataRequest, version: i16) -> Checked {
    let all = match &req.topics {
        None => true,
        Some(topics) => topics.is_empty() && version == 0,
    };
    let cluster_ops = (8..=10).contains(&version) && req.include_cluster_authorized_operations;
    let cluster_ops = cluster_ops.then(|| cluster_operations(gate));
    let mut denied = Vec::new();
    // An explicit list all of whose topics are denied must not become "all topics" (v0).
    let mut none_left = false;
    let mut names: Vec<String> = Vec::new();
    if let (false, Some(topics)) = (all, req.topics.as_mut()) {
        let creating = shard.config.auto_create_topics
            && (version < AUTO_CREATE_FLAG_VERSION || req.allow_auto_topic_creation);
        denied = deny_topics(gate, shard, topics, creating);
        none_left = topics.is_empty() && !denied.is_empty() && version == 0;
        let meta = shard.meta();
        let name = |t: &metadata_request::MetadataRequestTopic| match &t.name {
            Some(n) => Some(n.0.to_string()),
            None => meta.topic_by_id(t.topic_id).map(|m| m.name.clone()),
        };
        names = topics.iter().filter_map(name).collect();
    }
    // All topics: only those the principal may describe, silently (Kafka's logIfDenied off).
    let visible: Option<HashSet<String>> = (all && gate.authorizing()).then(|| {
        let meta = shard.meta();
        let may = |n: &&String| gate.permits(Operation::Describe, ResourceType::Topic, n);
        meta.topics.keys().filter(may).cloned().collect()
    });
    let topic_ops: Option<HashMap<String, i32>> =
        (version >= 8 && req.include_topic_authorized_operations).then(|| {
            if all {
                let meta = shard.meta();
                names = meta
                    .topics
                    .keys()
                    .filter(|n| visible.as_ref().is_none_or(|v| v.contains(*n)))
                    .cloned()
                    .collect();
            }
            names
                .into_iter()
                .map(|n| (gate.operations(ResourceType::Topic, &n), n))
                .map(|(b, n)| (n, b))
                .collect()
        });
    if denied.is_empty() && visible.is_none() && topic_ops.is_none() && cluster_ops.is_none() {
        return Ok((RequestKind::Metadata(req), None));
    }
    let finish = edit(move |r| {
        let ResponseKind::Metadata(r) = r else { return };
        if none_left {
            r.topics.clear();
        }
        let name_of = |t: &metadata_response::MetadataResponseTopic| -> String {
            t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()
        };
        if let Some(visible) = &visible {
            r.topics.retain(|t| visible.contains(&name_of(t)));
        }
        if let Some(ops) = &topic_ops {
            for t in r.topics.iter_mut() {
                if let Some(bits) = ops.get(&name_of(t)) {
                    t.topic_authorized_operations = *bits;
                }
            }
        }
        if let Some(bits) = cluster_ops {
            r.cluster_authorized_operations = bits;
        }
        r.topics.extend(denied);
    });
    Ok((RequestKind::Metadata(req), finish))
}

/// Takes the topics of an explicit Metadata request that may not be described, or would be
/// auto-created without CREATE, out of `topics`, returning their error entries.
fn deny_topics(
    gate: &Gate,
    shard: &Shard,
    topics: &mut Vec<metadata_request::MetadataRequestTopic>,
    creating: bool,
) -> Vec<metadata_response::MetadataResponseTopic> {
    let meta = shard.meta();
    let may_create = std::cell::OnceCell::new();
    let mut denied = Vec::new();
    let refused = deny(topics, |t| {
        let name = match &t.name {
            Some(name) => name.0.as_str(),
            None => match meta.topic_by_id(t.topic_id) {
                Some(topic) => topic.name.as_str(),
                None => return true, // the handler answers UNKNOWN_TOPIC_ID
            },
        };
        if !gate.allowed(Operation::Describe, ResourceType::Topic, name) {
            return false;
        }
        let auto_created = creating
            && t.name.is_some()
            && !meta.topics.contains_key(name)
            && validate_topic_name(name).is_ok();
        !auto_created
            || *may_create.get_or_init(|| gate.cluster_quietly(Operation::Create))
            || gate.allowed(Operation::Create, ResourceType::Topic, name)
    });
    for t in refused {
        let entry = metadata_response::MetadataResponseTopic::default()
            .with_error_code(E::TopicAuthorizationFailed.code());
        denied.push(match t.name {
            // Asked by id: ids are not secret, names are.
            None => entry.with_topic_id(t.topic_id),
            Some(name) => {
                let internal = name.0.as_str() == crate::group::OFFSETS_TOPIC
                    || name.0.as_str() == crate::txn::TXN_TOPIC;
                entry.with_name(Some(name)).with_is_internal(internal)
            }
        });
    }
    denied
}

fn describe_topic_partitions(
    gate: &Gate,
    shard: &Shard,
    mut req: DescribeTopicPartitionsRequest,
) -> Checked {
    use describe_topic_partitions_request::TopicRequest;
    use describe_topic_partitions_response::DescribeTopicPartitionsResponse as Response;
    let mut denied = Vec::new();
    if gate.authorizing() {
        if req.topics.is_empty() {
            // Every topic: only the describable ones, silently. Listed by name (those at or
            // after the cursor's, as the handler would start there), which pages the same
            // way; a cursor on a topic left out starts the next one at its first partition.
            let meta = shard.meta();
            let from = req.cursor.as_ref().map_or("", |c| c.topic_name.0.as_str()).to_owned();
            let may = |n: &&String| gate.permits(Operation::Describe, ResourceType::Topic, n);
            req.topics = meta
                .topics
                .keys()
                .filter(|n| n.as_str() >= from.as_str())
                .filter(may)
                .map(|n| {
                    TopicRequest::default().with_name(TopicName(StrBytes::from_string(n.clone())))
                })
                .collect();
            let cursor_kept = |c: &describe_topic_partitions_request::Cursor| {
                req.topics.iter().any(|t| t.name == c.topic_name)
            };
            if req.cursor.as_ref().is_some_and(|c| !cursor_kept(c)) {
                req.cursor = None;
            }
            if req.topics.is_empty() {
                return super::answer(ResponseKind::DescribeTopicPartitions(Response::default()));
            }
        } else {
            denied = deny(&mut req.topics, |t| {
                gate.allowed(Operation::Describe, ResourceType::Topic, &t.name)
            });
            if req.topics.is_empty() {
                // Nothing left to describe: an empty list would mean every topic.
                let r =
                    Response::default().with_topics(denied.into_iter().map(topic_denied).collect());
                return super::answer(ResponseKind::DescribeTopicPartitions(r));
            }
        }
    }
    let operations: HashMap<String, i32> = req
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), gate.operations(ResourceType::Topic, &t.name)))
        .collect();
    // Every topic, no authorizer: every operation on each.
    let every = req.topics.is_empty().then(|| gate.operations(ResourceType::Topic, ""));
    let finish = edit(move |r| {
        let ResponseKind::DescribeTopicPartitions(r) = r else { return };
        for t in r.topics.iter_mut().filter(|t| t.error_code == 0) {
            let name = t.name.as_ref().map(|n| n.0.as_str()).unwrap_or_default();
            if let Some(bits) = operations.get(name).copied().or(every) {
                t.topic_authorized_operations = bits;
            }
        }
        r.topics.extend(denied.into_iter().map(topic_denied));
    });
    Ok((RequestKind::DescribeTopicPartitions(req), finish))
}

/// A DescribeTopicPartitions answer for a topic the principal may not describe.
fn topic_denied(
    t: describe_topic_partitions_request::TopicRequest,
) -> describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic {
    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(E::TopicAuthorizationFailed.code())
        .with_name(Some(t.name))
}

fn describe_groups(gate: &Gate, mut req: DescribeGroupsRequest, version: i16) -> Checked {
    let ops = version >= 3 && req.include_authorized_operations;
    // Positions of the denied groups, to answer in request order.
    let mut position = 0usize;
    let mut denied_at = Vec::new();
    let denied = deny(&mut req.groups, |g| {
        let allowed = gate.allowed(Operation::Describe, ResourceType::Group, g);
        if !allowed {
            denied_at.push(position);
        }
        position += 1;
        allowed
    });
    if denied.is_empty() && !ops {
        return Ok((RequestKind::DescribeGroups(req), None));
    }
    let operations: Vec<(GroupId, i32)> = if ops {
        req.groups.iter().map(|g| (g.clone(), gate.operations(ResourceType::Group, g))).collect()
    } else {
        Vec::new()
    };
    let finish = edit(move |r| {
        let ResponseKind::DescribeGroups(r) = r else { return };
        for g in r.groups.iter_mut().filter(|g| g.error_code == 0) {
            if let Some((_, bits)) = operations.iter().find(|(id, _)| *id == g.group_id) {
                g.authorized_operations = *bits;
            }
        }
        let mut allowed = std::mem::take(&mut r.groups).into_iter();
        let mut denied = denied.into_iter().zip(denied_at).peekable();
        let total = allowed.len() + denied.len();
        for i in 0..total {
            let next = match denied.peek() {
                Some((_, at)) if *at == i => denied.next().map(|(id, _)| group_error(id)),
                _ => allowed.next(),
            };
            r.groups.extend(next);
        }
    });
    Ok((RequestKind::DescribeGroups(req), finish))
}

fn group_error(id: GroupId) -> describe_groups_response::DescribedGroup {
    describe_groups_response::DescribedGroup::default()
        .with_group_id(id)
        .with_error_code(E::GroupAuthorizationFailed.code())
}
