//! OffsetForLeaderEpoch: where a leader epoch ends in the leader's log (KIP-101, KIP-320).
//!
//! Consumers ask it after a leader change to check that their position is still in the log
//! (log truncation detection); the answer comes from the leader epoch cache of the
//! partition's log on the leader.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::protocol::ResponseError as E;
use crate::server::mesh::{EpochAnswer, EpochQuery, PartitionRef, ShardMsg};
use crate::server::router::{scatter, Buckets};
use crate::server::shard::Shard;

/// Handles one OffsetForLeaderEpoch request.
pub async fn handle(
    shard: &Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let meta = shard.meta();
    let mut queries = Vec::new();
    let mut slots: Vec<Vec<(i32, Option<EpochAnswer>)>> = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name: Arc<str> = Arc::from(topic.topic.0.as_str());
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            match meta.owner(&name, p.partition) {
                Ok(owner) => {
                    let partition = PartitionRef { topic: name.clone(), partition: p.partition };
                    queries.push((
                        owner,
                        EpochQuery {
                            partition,
                            current_leader_epoch: p.current_leader_epoch,
                            leader_epoch: p.leader_epoch,
                        },
                    ));
                    parts.push((p.partition, None));
                }
                Err(error) => parts.push((p.partition, Some(EpochAnswer::failed(error)))),
            }
        }
        slots.push(parts);
    }
    let answers = scatter(
        shard,
        Buckets::new(shard.count, queries),
        |s, query| Box::pin(async move { s.epoch_end_local(&query) }),
        |items, reply| ShardMsg::EpochEnds { items, reply },
        || EpochAnswer::failed(E::NotLeaderOrFollower),
    )
    .await;
    let mut answers = answers.into_iter();
    let topics = req
        .topics
        .into_iter()
        .zip(slots)
        .map(|(topic, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(index, known)| {
                    let answer = known
                        .or_else(|| answers.next())
                        .unwrap_or(EpochAnswer::failed(E::NotLeaderOrFollower));
                    EpochEndOffset::default()
                        .with_partition(index)
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
