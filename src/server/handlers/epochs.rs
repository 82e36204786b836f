//! OffsetForLeaderEpoch: where a leader epoch ends in the leader's log (KIP-101, KIP-320).
//!
//! Consumers ask it after a leader change to check that their position is still in the log
//! (log truncation detection); the answer comes from the leader epoch cache of the
//! partition's log on the leader.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::protocol::ResponseError as E;
use crate::server::mesh::{EpochAnswer, EpochQuery, PartitionRef, ShardMsg};
use crate::server::router::per_partition;
use crate::server::shard::Shard;

/// Handles one OffsetForLeaderEpoch request.
pub async fn handle(
    shard: &Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let meta = shard.meta();
    let requested = req
        .topics
        .iter()
        .map(|topic| {
            let name: Arc<str> = Arc::from(topic.topic.0.as_str());
            let route = |p: &OffsetForLeaderPartition| {
                let owner = meta.owner(&name, p.partition).map_err(EpochAnswer::failed)?;
                let query = EpochQuery {
                    partition: PartitionRef { topic: name.clone(), partition: p.partition },
                    current_leader_epoch: p.current_leader_epoch,
                    leader_epoch: p.leader_epoch,
                };
                Ok((owner, query))
            };
            topic.partitions.iter().map(route).collect()
        })
        .collect();
    let answers = per_partition(
        shard,
        requested,
        |s, query| Box::pin(async move { s.epoch_end_local(&query) }),
        |items, reply| ShardMsg::EpochEnds { items, reply },
        || EpochAnswer::failed(E::NotLeaderOrFollower),
    )
    .await;
    let topics = req
        .topics
        .into_iter()
        .zip(answers)
        .map(|(topic, answers)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(answers)
                .map(|(p, answer)| {
                    EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_error_code(answer.error_code)
                        .with_leader_epoch(answer.leader_epoch)
                        .with_end_offset(answer.end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
