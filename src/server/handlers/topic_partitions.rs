//! DescribeTopicPartitions (KIP-966): the partitions of topics a page at a time, which the
//! admin clients of Kafka 3.8+ use to describe topics (`kafka-topics.sh --describe`), with a
//! cursor instead of one Metadata response of every partition.
//!
//! As Kafka's handler: topics in name order, from the cursor's topic (its partitions from
//! the cursor's index) on; at most `response_partition_limit` partitions per response
//! (capped at [`PARTITIONS_PER_RESPONSE_MAX`], Kafka's `max.request.partition.size.limit`
//! default, and at least 1); the next cursor names where the following page starts, none
//! after the last partition. An empty topic list means every topic. A named topic that does
//! not exist is UNKNOWN_TOPIC_OR_PARTITION; a cursor naming a topic outside the list, or a
//! negative partition, is INVALID_REQUEST for every topic asked. Eligible leader replicas
//! (KIP-966's ELR) are not kept here: both ELR lists are empty. Authorization (DESCRIBE on
//! each topic, its operations) is the guard's: `guard::metadata`.

use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::*;

use crate::protocol::ResponseError as E;
use crate::server::shard::Shard;

/// Kafka's `max.request.partition.size.limit` default: the most partitions of one response.
pub const PARTITIONS_PER_RESPONSE_MAX: i32 = 2000;

/// Handles one DescribeTopicPartitions request.
pub fn handle(
    shard: &Rc<Shard>,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let meta = shard.meta();
    let all = req.topics.is_empty();
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.0.as_str(), c.partition_index));
    let from_name = cursor.map_or("", |(name, _)| name);
    let mut names: Vec<&str> = if all {
        meta.topics.keys().map(String::as_str).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.as_str()).collect()
    };
    names.retain(|n| *n >= from_name);
    names.sort_unstable();
    names.dedup();
    let bad_cursor =
        cursor.is_some_and(|(name, index)| index < 0 || (!all && !names.contains(&name)));
    if bad_cursor {
        let topics = req.topics.iter().map(|t| error_topic(&t.name, E::InvalidRequest)).collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let mut budget = req.response_partition_limit.clamp(1, PARTITIONS_PER_RESPONSE_MAX);
    let node = BrokerId(shard.config.node_id);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if budget == 0 {
            next_cursor = Some(cursor_at(name, 0));
            break;
        }
        let Some(topic) = meta.topics.get(name) else {
            let name = TopicName(super::str_bytes(name));
            topics.push(error_topic(&name, E::UnknownTopicOrPartition));
            continue;
        };
        let first = match cursor {
            Some((cursor_name, index)) if cursor_name == name => index,
            _ => 0,
        };
        let described = super::metadata::describe(topic, node, &meta.fenced);
        let mut partitions = Vec::new();
        for p in described.partitions.into_iter().skip(usize::try_from(first).unwrap_or(0)) {
            if budget == 0 {
                next_cursor = Some(cursor_at(name, p.partition_index));
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error_code)
                    .with_partition_index(p.partition_index)
                    .with_leader_id(p.leader_id)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replica_nodes)
                    .with_isr_nodes(p.isr_nodes)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(p.offline_replicas),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(described.name)
                .with_topic_id(described.topic_id)
                .with_is_internal(described.is_internal)
                .with_partitions(partitions),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

fn cursor_at(name: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(super::str_bytes(name)))
        .with_partition_index(partition)
}

fn error_topic(name: &TopicName, error: E) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(name.clone()))
        .with_is_internal(super::topic_rules::is_internal(name.0.as_str()))
}
