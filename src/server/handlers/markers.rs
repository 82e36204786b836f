//! WriteTxnMarkers (API 27): the transaction coordinator on another broker ends a
//! transaction on the partitions this broker leads (see `server::txn`, which sends it).
//!
//! Each marker's partitions are checked against the cluster metadata here (unknown →
//! UNKNOWN_TOPIC_OR_PARTITION, led by another broker → NOT_LEADER_OR_FOLLOWER) and the rest
//! are written on their shards by [`Shard::write_marker_local`], the path the local
//! coordinator uses: the control batch carries the request's coordinator epoch, the answer
//! waits until it is durable, and a marker in `__consumer_offsets` applies or drops the
//! transaction's offsets there. A marker the log refuses answers the log's error (e.g.
//! INVALID_PRODUCER_EPOCH for an epoch older than the partition's producer). Writing a
//! marker twice is harmless, so the coordinator simply retries what did not answer 0.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::controller::ClusterMetadata;
use crate::protocol::ResponseError as E;
use crate::server::mesh::{PartitionRef, ShardMsg};
use crate::server::router::per_partition;
use crate::server::shard::Shard;
use crate::server::txn::Marker;

/// WriteTxnMarkers v1: every marker at once, one error code per partition.
pub async fn handle(shard: &Rc<Shard>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let meta = shard.meta();
    let markers = join_all(req.markers.iter().map(|m| write_one(shard, &meta, m))).await;
    WriteTxnMarkersResponse::default().with_markers(markers)
}

async fn write_one(
    shard: &Rc<Shard>,
    meta: &ClusterMetadata,
    m: &WritableTxnMarker,
) -> WritableTxnMarkerResult {
    let marker = Marker {
        producer_id: m.producer_id.0,
        epoch: m.producer_epoch,
        commit: m.transaction_result,
        coordinator_epoch: m.coordinator_epoch,
    };
    // Only the leader writes markers (followers hold a log too): `owner` answers
    // NOT_LEADER_OR_FOLLOWER elsewhere.
    let requested = m
        .topics
        .iter()
        .map(|t| {
            let route = |p: &i32| {
                let owner = meta.owner(&t.name, *p).map_err(|e| e.code())?;
                Ok((owner, PartitionRef { topic: t.name.0.as_str().into(), partition: *p }))
            };
            t.partition_indexes.iter().map(route).collect()
        })
        .collect();
    let written = per_partition(
        shard,
        requested,
        |s, p| Box::pin(async move { s.write_marker_local(&p, marker).await }),
        |items, reply| ShardMsg::WriteMarkers { items, marker, reply },
        || E::NotLeaderOrFollower.code(),
    )
    .await;
    let topics = m
        .topics
        .iter()
        .zip(written)
        .map(|(t, codes)| {
            let partitions = t
                .partition_indexes
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(*p)
                        .with_error_code(code)
                })
                .collect();
            WritableTxnMarkerTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics)
}
