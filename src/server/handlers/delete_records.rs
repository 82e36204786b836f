//! DeleteRecords: moves partitions' log start offsets forward (on their owning shards).
//!
//! Not on the internal topics: INVALID_TOPIC_EXCEPTION, as Kafka ("Cannot delete records of
//! internal topic").

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::delete_records_request::DeleteRecordsPartition;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::topic_rules::is_internal;
use crate::protocol::ResponseError as E;
use crate::server::mesh::{DeleteRecordsItem, DeleteRecordsOutcome, PartitionRef, ShardMsg};
use crate::server::router::per_partition;
use crate::server::shard::Shard;

/// Handles one DeleteRecords request.
pub async fn handle(shard: &Rc<Shard>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let meta = shard.meta();
    let requested = req
        .topics
        .iter()
        .map(|topic| {
            let name: Arc<str> = Arc::from(topic.name.0.as_str());
            let route = |p: &DeleteRecordsPartition| {
                let index = p.partition_index;
                if is_internal(&name) {
                    crate::refused!(WARN, "delete_records_internal_topic", topic = %name,
                        partition = index, "refused DeleteRecords on an internal topic");
                    return Err(failed(E::InvalidTopicException.code()));
                }
                let owner = meta.owner(&name, index).map_err(|e| failed(e.code()))?;
                let partition = PartitionRef { topic: name.clone(), partition: index };
                Ok((owner, DeleteRecordsItem { partition, offset: p.offset }))
            };
            topic.partitions.iter().map(route).collect()
        })
        .collect();
    let outcomes = per_partition(
        shard,
        requested,
        |s, item| Box::pin(async move { s.delete_records_local(item).await }),
        |items, reply| ShardMsg::DeleteRecords { items, reply },
        || failed(E::NotLeaderOrFollower.code()),
    )
    .await;
    let topics = req
        .topics
        .into_iter()
        .zip(outcomes)
        .map(|(topic, outcomes)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(outcomes)
                .map(|(p, outcome)| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(outcome.low_watermark)
                        .with_error_code(outcome.error_code)
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

fn failed(error_code: i16) -> DeleteRecordsOutcome {
    DeleteRecordsOutcome { error_code, low_watermark: -1 }
}
