//! A transactional producer over the raw protocol: InitProducerId, AddPartitionsToTxn,
//! Produce with a transactional id and EndTxn, each answering its error code.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::Conn;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

pub fn txn_id(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

/// Produce v9 with a transactional id to `topic`-`partition`: the partition's error code.
pub fn produce(conn: &mut Conn, id: &str, topic: &str, partition: i32, records: Bytes) -> i16 {
    let data = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(s(topic)))
        .with_partition_data(vec![data]);
    let req = ProduceRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].error_code
}

/// InitProducerId with a one-minute transaction timeout: (error, producer id, epoch).
pub fn init(conn: &mut Conn, id: &str) -> (i16, i64, i16) {
    init_with(conn, id, 60_000, (-1, -1))
}

/// InitProducerId v4 with a timeout and the (producer id, epoch) the client has.
pub fn init_with(conn: &mut Conn, id: &str, timeout_ms: i32, has: (i64, i16)) -> (i16, i64, i16) {
    init_at(conn, 4, id, timeout_ms, has)
}

/// [`init_with`] at InitProducerId `version` (3+: the request carries what the client has).
pub fn init_at(
    conn: &mut Conn,
    version: i16,
    id: &str,
    timeout_ms: i32,
    has: (i64, i16),
) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(has.0))
        .with_producer_epoch(has.1);
    let ResponseKind::InitProducerId(r) =
        conn.call(ApiKey::InitProducerId, version, RequestKind::InitProducerId(req))
    else {
        panic!("not an InitProducerId response")
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// AddPartitionsToTxn v3: error code of each (topic, partition) asked.
pub fn add(conn: &mut Conn, id: &str, producer: (i64, i16), parts: &[(&str, i32)]) -> Vec<i16> {
    add_at(conn, 3, id, producer, parts)
}

/// [`add`] at AddPartitionsToTxn `version` (0-3).
pub fn add_at(
    conn: &mut Conn,
    version: i16,
    id: &str,
    producer: (i64, i16),
    parts: &[(&str, i32)],
) -> Vec<i16> {
    let topics = parts
        .iter()
        .map(|(t, p)| {
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(t)))
                .with_partitions(vec![*p])
        })
        .collect();
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(topics);
    let ResponseKind::AddPartitionsToTxn(r) =
        conn.call(ApiKey::AddPartitionsToTxn, version, RequestKind::AddPartitionsToTxn(req))
    else {
        panic!("not an AddPartitionsToTxn response")
    };
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code))
        .collect()
}

/// EndTxn v3: commit or abort; its error code (the markers are written when it answers).
pub fn end(conn: &mut Conn, id: &str, producer: (i64, i16), commit: bool) -> i16 {
    end_at(conn, 3, id, producer, commit)
}

/// [`end`] at EndTxn `version`.
pub fn end_at(conn: &mut Conn, version: i16, id: &str, producer: (i64, i16), commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let ResponseKind::EndTxn(r) = conn.call(ApiKey::EndTxn, version, RequestKind::EndTxn(req))
    else {
        panic!("not an EndTxn response")
    };
    r.error_code
}

/// AddOffsetsToTxn at `version` for `group`: its error code.
pub fn add_offsets_at(
    conn: &mut Conn,
    version: i16,
    id: &str,
    producer: (i64, i16),
    group: &str,
) -> i16 {
    let req = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(s(group)));
    let ResponseKind::AddOffsetsToTxn(r) =
        conn.call(ApiKey::AddOffsetsToTxn, version, RequestKind::AddOffsetsToTxn(req))
    else {
        panic!("not an AddOffsetsToTxn response")
    };
    r.error_code
}
