//! ListOffsets: earliest (-2), latest (-1), the record with the largest timestamp (-3,
//! KIP-734), earliest local (-4) and latest tiered (-5, KIP-1005; no tiered storage here, so
//! the log start and -1), and the first offset at or after a timestamp.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::protocol::ResponseError as E;
use crate::server::mesh::{OffsetAnswer, OffsetQuery, PartitionRef, ShardMsg};
use crate::server::router::per_partition;
use crate::server::shard::Shard;

/// ListOffsets v4 added the leader epoch of the offset found.
const LEADER_EPOCH_VERSION: i16 = 4;
/// KIP-1005's LATEST_TIERED_TIMESTAMP.
const LATEST_TIERED: i64 = -5;

/// Handles one ListOffsets request.
pub async fn handle(
    shard: &Rc<Shard>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let meta = shard.meta();
    let read_committed = req.isolation_level == 1;
    let requested = req
        .topics
        .iter()
        .map(|topic| {
            let name: Arc<str> = Arc::from(topic.name.0.as_str());
            let route = |p: &ListOffsetsPartition| {
                let owner = meta.owner(&name, p.partition_index).map_err(|e| failed(e.code()))?;
                let partition = PartitionRef { topic: name.clone(), partition: p.partition_index };
                Ok((owner, OffsetQuery { partition, timestamp: p.timestamp, read_committed }))
            };
            topic.partitions.iter().map(route).collect()
        })
        .collect();
    let answers = per_partition(
        shard,
        requested,
        |s, query| Box::pin(async move { s.offsets_local(query).await }),
        |items, reply| ShardMsg::ListOffsets { items, reply },
        || failed(E::NotLeaderOrFollower.code()),
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
                    let index = p.partition_index;
                    let epoch = meta.partition(&topic.name.0, index).map_or(-1, |p| p.leader_epoch);
                    // Nothing tiered: no offset, and no epoch for it (as Kafka).
                    let epoch = if p.timestamp == LATEST_TIERED { -1 } else { epoch };
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

fn failed(error_code: i16) -> OffsetAnswer {
    OffsetAnswer { error_code, offset: -1, timestamp: -1 }
}
