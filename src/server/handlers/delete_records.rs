//! DeleteRecords: moves partitions' log start offsets forward (on their owning shards).

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::protocol::ResponseError as E;
use crate::server::mesh::{DeleteRecordsItem, DeleteRecordsOutcome, PartitionRef, ShardMsg};
use crate::server::router::{scatter, Buckets};
use crate::server::shard::Shard;

/// Handles one DeleteRecords request.
pub async fn handle(shard: &Rc<Shard>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let meta = shard.meta();
    let mut items = Vec::new();
    let mut slots: Vec<Vec<(i32, Option<DeleteRecordsOutcome>)>> = Vec::new();
    for topic in &req.topics {
        let name: Arc<str> = Arc::from(topic.name.0.as_str());
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let index = p.partition_index;
            match meta.owner(&name, index) {
                Ok(owner) => {
                    let partition = PartitionRef { topic: name.clone(), partition: index };
                    items.push((owner, DeleteRecordsItem { partition, offset: p.offset }));
                    parts.push((index, None));
                }
                Err(error) => {
                    let code = error.code();
                    let unknown = DeleteRecordsOutcome { error_code: code, low_watermark: -1 };
                    parts.push((index, Some(unknown)));
                }
            }
        }
        slots.push(parts);
    }
    let outcomes = scatter(
        shard,
        Buckets::new(shard.count, items),
        |s, item| Box::pin(async move { s.delete_records_local(item).await }),
        |items, reply| ShardMsg::DeleteRecords { items, reply },
        || DeleteRecordsOutcome { error_code: E::NotLeaderOrFollower.code(), low_watermark: -1 },
    )
    .await;
    let mut outcomes = outcomes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .zip(slots)
        .map(|(topic, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(index, known)| {
                    let outcome = known.or_else(|| outcomes.next()).unwrap_or_default();
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(index)
                        .with_low_watermark(outcome.low_watermark)
                        .with_error_code(outcome.error_code)
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
