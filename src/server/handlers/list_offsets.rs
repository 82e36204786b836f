//! ListOffsets: earliest (-2), latest (-1) and first offset at or after a timestamp.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::protocol::ResponseError as E;
use crate::server::mesh::{OffsetAnswer, OffsetQuery, PartitionRef, ShardMsg};
use crate::server::router::{scatter, Buckets};
use crate::server::shard::Shard;

/// ListOffsets v4 added the leader epoch of the offset found.
const LEADER_EPOCH_VERSION: i16 = 4;

/// Handles one ListOffsets request.
pub async fn handle(
    shard: &Rc<Shard>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let meta = shard.meta();
    let mut queries = Vec::new();
    let mut slots: Vec<Vec<(i32, Option<OffsetAnswer>)>> = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name: Arc<str> = Arc::from(topic.name.0.as_str());
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            match meta.owner(&name, p.partition_index) {
                Ok(owner) => {
                    let partition =
                        PartitionRef { topic: name.clone(), partition: p.partition_index };
                    let read_committed = req.isolation_level == 1;
                    let query = OffsetQuery { partition, timestamp: p.timestamp, read_committed };
                    queries.push((owner, query));
                    parts.push((p.partition_index, None));
                }
                Err(error) => {
                    let unknown =
                        OffsetAnswer { error_code: error.code(), offset: -1, timestamp: -1 };
                    parts.push((p.partition_index, Some(unknown)));
                }
            }
        }
        slots.push(parts);
    }
    let answers = scatter(
        shard,
        Buckets::new(shard.count, queries),
        |s, query| Box::pin(async move { s.offsets_local(query).await }),
        |items, reply| ShardMsg::ListOffsets { items, reply },
        || OffsetAnswer { error_code: E::NotLeaderOrFollower.code(), offset: -1, timestamp: -1 },
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
                    let answer = known.or_else(|| answers.next()).unwrap_or_default();
                    let epoch = meta.partition(&topic.name.0, index).map_or(-1, |p| p.leader_epoch);
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_code(answer.error_code)
                        .with_offset(answer.offset)
                        .with_timestamp(answer.timestamp)
                        .with_leader_epoch(if version >= LEADER_EPOCH_VERSION { epoch } else { -1 })
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
