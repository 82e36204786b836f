//! Authorization of the partition data APIs, as Kafka 3.x's `KafkaApis`:
//!
//! - Produce: needs WRITE on each topic; with transactional batches, WRITE on the transactional id;
//!   a denial answers TOPIC_AUTHORIZATION_FAILED per partition;
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition (acks=0: the connection closes).
//! - Fetch (consumer): needs READ on each topic; a denial answers TOPIC_AUTHORIZATION_FAILED per
//!   partition.
//! - Fetch (replica, `replica_id` ≥ 0): needs CLUSTER_ACTION on the cluster; a denial answers
//!   TOPIC_AUTHORIZATION_FAILED for every partition.
//! - ListOffsets: needs DESCRIBE on each topic; a denial answers TOPIC_AUTHORIZATION_FAILED per
//!   partition.
//! - OffsetForLeaderEpoch: needs CLUSTER_ACTION on the cluster, else DESCRIBE on each topic; a
//!   denial answers TOPIC_AUTHORIZATION_FAILED per partition.
//! - DeleteRecords: needs DELETE on each topic; a denial answers TOPIC_AUTHORIZATION_FAILED per
//!   partition.
//! - DescribeProducers: needs READ on each topic; a denial answers TOPIC_AUTHORIZATION_FAILED per
//!   partition.
//! - WriteTxnMarkers: needs CLUSTER_ACTION on the cluster; a denial answers
//!   CLUSTER_AUTHORIZATION_FAILED for every partition.

use bytes::Bytes;
use kafka_protocol::messages::*;

use super::{answer, append, deny, message, Checked, Guarded};
use crate::protocol::{Request, ResponseError as E};
use crate::record_batch::BatchHeader;
use crate::security::acl::{Operation, ResourceType};
use crate::server::access::Gate;
use crate::server::handlers::Reply;
use crate::server::shard::Shard;

const DENIED: E = E::TopicAuthorizationFailed;

/// Produce. See the module docs.
pub(super) fn produce(
    gate: &Gate,
    version: i16,
    header: RequestHeader,
    body: RequestKind,
    frame: Option<Bytes>,
) -> Guarded {
    let run = |body, finish| {
        Guarded::Run(Request { key: ApiKey::Produce, version, header, body, frame }, finish)
    };
    let RequestKind::Produce(mut req) = body else { return run(body, None) };
    let txn_denied = || {
        let id = req.transactional_id.as_ref();
        !id.is_some_and(|id| gate.allowed(Operation::Write, ResourceType::TransactionalId, id))
    };
    if transactional(&req) && txn_denied() {
        if req.acks == 0 {
            let why = "acks=0 transactional produce without WRITE on its transactional id";
            return Guarded::Answer(Reply::Close(why.into()));
        }
        let topics =
            req.topic_data.iter().map(|t| produce_error(t, E::TransactionalIdAuthorizationFailed));
        let response = ProduceResponse::default().with_responses(topics.collect());
        return Guarded::Answer(Reply::Response(Box::new(ResponseKind::Produce(response))));
    }
    let denied = deny(&mut req.topic_data, |t| {
        gate.allowed(Operation::Write, ResourceType::Topic, t.name.0.as_str())
    });
    if denied.is_empty() {
        return run(RequestKind::Produce(req), None);
    }
    let acks = req.acks;
    let finish: super::Finish = Box::new(move |reply| match reply {
        // Kafka closes an acks=0 connection whose produce failed anywhere.
        Reply::Nothing if acks == 0 => {
            Reply::Close("acks=0 produce to a topic the principal may not write".into())
        }
        Reply::Response(mut response) => {
            if let ResponseKind::Produce(r) = &mut *response {
                r.responses.extend(denied.iter().map(|t| produce_error(t, DENIED)));
            }
            Reply::Response(response)
        }
        other => other,
    });
    run(RequestKind::Produce(req), Some(finish))
}

/// Whether any partition's first batch is transactional (Kafka's `hasTransactionalRecords`).
fn transactional(req: &ProduceRequest) -> bool {
    let batches = req.topic_data.iter().flat_map(|t| t.partition_data.iter());
    batches
        .filter_map(|p| BatchHeader::parse(p.records.as_deref()?).ok())
        .any(|h| h.is_transactional())
}

fn produce_error(
    t: &produce_request::TopicProduceData,
    error: E,
) -> produce_response::TopicProduceResponse {
    let partitions = t.partition_data.iter().map(|p| {
        produce_response::PartitionProduceResponse::default()
            .with_index(p.index)
            .with_error_code(error.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
    });
    produce_response::TopicProduceResponse::default()
        .with_name(t.name.clone())
        .with_partition_responses(partitions.collect())
}

/// The other data APIs. See the module docs.
pub(super) fn check(gate: &Gate, shard: &Shard, body: RequestKind, version: i16) -> Checked {
    use Operation::{Delete, Describe, Read};
    let topic = |op, name: &str| gate.allowed(op, ResourceType::Topic, name);
    match body {
        RequestKind::Fetch(req) => fetch(gate, shard, req, version),
        RequestKind::ListOffsets(mut req) => {
            let denied = deny(&mut req.topics, |t| topic(Describe, &t.name));
            let finish = append(denied, |r, denied| {
                if let ResponseKind::ListOffsets(r) = r {
                    r.topics.extend(denied.iter().map(list_offsets_error));
                }
            });
            Ok((RequestKind::ListOffsets(req), finish))
        }
        RequestKind::OffsetForLeaderEpoch(mut req) => {
            let inter_broker = gate.cluster_quietly(Operation::ClusterAction);
            let denied = deny(&mut req.topics, |t| inter_broker || topic(Describe, &t.topic));
            let finish = append(denied, |r, denied| {
                if let ResponseKind::OffsetForLeaderEpoch(r) = r {
                    r.topics.extend(denied.iter().map(epochs_error));
                }
            });
            Ok((RequestKind::OffsetForLeaderEpoch(req), finish))
        }
        RequestKind::DeleteRecords(mut req) => {
            let denied = deny(&mut req.topics, |t| topic(Delete, &t.name));
            let finish = append(denied, |r, denied| {
                if let ResponseKind::DeleteRecords(r) = r {
                    r.topics.extend(denied.iter().map(delete_records_error));
                }
            });
            Ok((RequestKind::DeleteRecords(req), finish))
        }
        RequestKind::DescribeProducers(mut req) => {
            let denied = deny(&mut req.topics, |t| topic(Read, &t.name));
            let finish = append(denied, |r, denied| {
                if let ResponseKind::DescribeProducers(r) = r {
                    r.topics.extend(denied.iter().map(producers_error));
                }
            });
            Ok((RequestKind::DescribeProducers(req), finish))
        }
        RequestKind::WriteTxnMarkers(req) if !gate.cluster(Operation::ClusterAction) => {
            answer(ResponseKind::WriteTxnMarkers(markers_error(&req)))
        }
        body => Ok((body, None)),
    }
}

fn fetch(gate: &Gate, shard: &Shard, mut req: FetchRequest, version: i16) -> Checked {
    let replica_id = if version >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    if replica_id >= 0 {
        if gate.cluster(Operation::ClusterAction) {
            return Ok((RequestKind::Fetch(req), None));
        }
        let topics = req.topics.iter().map(|t| fetch_error(t, version)).collect();
        return answer(ResponseKind::Fetch(FetchResponse::default().with_responses(topics)));
    }
    // From v13 topics are named by id; an unknown id is the handler's UNKNOWN_TOPIC_ID.
    let meta = (version >= 13).then(|| shard.meta());
    let denied = deny(&mut req.topics, |t| {
        let name = match &meta {
            Some(meta) => meta.topic_by_id(t.topic_id).map(|m| m.name.as_str()),
            None => Some(t.topic.0.as_str()),
        };
        name.is_none_or(|name| gate.allowed(Operation::Read, ResourceType::Topic, name))
    });
    let finish = append(denied, move |r, denied| {
        if let ResponseKind::Fetch(r) = r {
            r.responses.extend(denied.iter().map(|t| fetch_error(t, version)));
        }
    });
    Ok((RequestKind::Fetch(req), finish))
}

fn fetch_error(
    t: &fetch_request::FetchTopic,
    version: i16,
) -> fetch_response::FetchableTopicResponse {
    let partitions = t.partitions.iter().map(|p| {
        fetch_response::PartitionData::default()
            .with_partition_index(p.partition)
            .with_error_code(DENIED.code())
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(Bytes::new()))
    });
    let name = if version >= 13 { TopicName::default() } else { t.topic.clone() };
    fetch_response::FetchableTopicResponse::default()
        .with_topic(name)
        .with_topic_id(t.topic_id)
        .with_partitions(partitions.collect())
}

fn list_offsets_error(
    t: &list_offsets_request::ListOffsetsTopic,
) -> list_offsets_response::ListOffsetsTopicResponse {
    let partitions = t.partitions.iter().map(|p| {
        list_offsets_response::ListOffsetsPartitionResponse::default()
            .with_partition_index(p.partition_index)
            .with_error_code(DENIED.code())
            .with_timestamp(-1)
            .with_offset(-1)
            .with_leader_epoch(-1)
    });
    list_offsets_response::ListOffsetsTopicResponse::default()
        .with_name(t.name.clone())
        .with_partitions(partitions.collect())
}

fn epochs_error(
    t: &offset_for_leader_epoch_request::OffsetForLeaderTopic,
) -> offset_for_leader_epoch_response::OffsetForLeaderTopicResult {
    let partitions = t.partitions.iter().map(|p| {
        offset_for_leader_epoch_response::EpochEndOffset::default()
            .with_partition(p.partition)
            .with_error_code(DENIED.code())
            .with_leader_epoch(-1)
            .with_end_offset(-1)
    });
    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
        .with_topic(t.topic.clone())
        .with_partitions(partitions.collect())
}

fn delete_records_error(
    t: &delete_records_request::DeleteRecordsTopic,
) -> delete_records_response::DeleteRecordsTopicResult {
    let partitions = t.partitions.iter().map(|p| {
        delete_records_response::DeleteRecordsPartitionResult::default()
            .with_partition_index(p.partition_index)
            .with_low_watermark(-1)
            .with_error_code(DENIED.code())
    });
    delete_records_response::DeleteRecordsTopicResult::default()
        .with_name(t.name.clone())
        .with_partitions(partitions.collect())
}

fn producers_error(
    t: &describe_producers_request::TopicRequest,
) -> describe_producers_response::TopicResponse {
    let partitions = t.partition_indexes.iter().map(|p| {
        describe_producers_response::PartitionResponse::default()
            .with_partition_index(*p)
            .with_error_code(DENIED.code())
            .with_error_message(message(DENIED))
    });
    describe_producers_response::TopicResponse::default()
        .with_name(t.name.clone())
        .with_partitions(partitions.collect())
}

fn markers_error(req: &WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    use write_txn_markers_response::*;
    let markers = req.markers.iter().map(|m| {
        let topics = m.topics.iter().map(|t| {
            let partitions = t.partition_indexes.iter().map(|p| {
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(*p)
                    .with_error_code(E::ClusterAuthorizationFailed.code())
            });
            WritableTxnMarkerTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions.collect())
        });
        WritableTxnMarkerResult::default()
            .with_producer_id(m.producer_id)
            .with_topics(topics.collect())
    });
    WriteTxnMarkersResponse::default().with_markers(markers.collect())
}
