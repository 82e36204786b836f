//! Record validation on the leader, seen by a raw client: what a careless or hostile producer
//! gets back for batches Kafka's leader refuses, what happens to acks=0 producers, and the
//! internal topics only the broker may write (issue 15 findings 6-8, issue 18 item 3).
//! Every test checks what was stored as well as the error code.

mod common;

use bytes::{Bytes, BytesMut};
use common::{batch, create_topic, create_with, fetch_one, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
const HEADER_BYTES: usize = 61;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn broker(dir: &std::path::Path) -> Broker {
    Broker::start(dir, &["--shards", "2", "--offsets-topic-partitions", "1"])
}

fn recrc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Produce of one batch to one partition at `version`: the partition's response.
fn produce_v(
    conn: &mut Conn,
    version: i16,
    topic: &str,
    records: Bytes,
    acks: i16,
) -> PartitionProduceResponse {
    let data =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(s(topic)))
        .with_partition_data(vec![data]);
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, version, RequestKind::Produce(req))
    else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].clone()
}

/// Records fetched from partition 0 from offset 0: (offset, key, value).
fn stored(conn: &mut Conn, topic: &str) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let p = fetch_one(conn, topic, 0, 0);
    assert_eq!(p.error_code, 0);
    common::records(&p.records.unwrap_or_default())
}

fn record(i: usize, key: Option<&[u8]>, value: &[u8], timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: i as i32 - 1,
        timestamp,
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    }
}

fn encode(records: &[Record], compression: Compression) -> Bytes {
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut out, records, &options).unwrap();
    out.freeze()
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    now.as_millis() as i64
}

#[test]
fn a_gzip_flagged_batch_of_garbage_with_a_valid_crc_is_corrupt_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 1);
    let mut b = batch(&[(b"k", b"value one"), (b"k2", b"value two")]).to_vec();
    b[ATTRIBUTES_AT + 1] |= 1; // gzip, over records that are not gzip
    recrc(&mut b);
    let r = produce_v(&mut conn, 9, "t", Bytes::from(b), 1);
    assert_eq!(r.error_code, E::CorruptMessage.code(), "{r:?}");
    assert!(r.error_message.is_some_and(|m| m.contains("gzip")));
    // Nothing stored: a consumer does not loop on it, and the next batch gets offset 0.
    assert!(stored(&mut conn, "t").is_empty());
    let ok = produce_v(&mut conn, 9, "t", batch(&[(b"k", b"good")]), 1);
    assert_eq!((ok.error_code, ok.base_offset), (0, 0));
    assert_eq!(stored(&mut conn, "t"), vec![(0, b"k".to_vec(), b"good".to_vec())]);
}

#[test]
fn records_whose_lengths_lie_are_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 1);
    let good = batch(&[(b"a", b"first value"), (b"b", b"second value")]).to_vec();
    // The first record's length varint: claim 10 bytes more (the CRC is made valid again).
    let mut longer = good.clone();
    longer[HEADER_BYTES] += 20;
    recrc(&mut longer);
    // The second record's key length varint (after length, attributes, timestamp and offset
    // deltas): claim 40 bytes.
    let mut key = good.clone();
    let second = HEADER_BYTES + 1 + (good[HEADER_BYTES] / 2) as usize;
    assert_eq!(good[second + 4], 2, "key length of 'b' (zigzag)");
    key[second + 4] = 80;
    recrc(&mut key);
    // A batch whose records leave bytes over.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    let length = (trailing.len() - 12) as i32;
    trailing[8..12].copy_from_slice(&length.to_be_bytes());
    recrc(&mut trailing);
    for (what, bad) in [("record length", longer), ("key length", key), ("trailing", trailing)] {
        let r = produce_v(&mut conn, 9, "t", Bytes::from(bad), -1);
        let codes = [E::CorruptMessage.code(), E::InvalidRecord.code()];
        assert!(codes.contains(&r.error_code), "{what}: {r:?}");
        assert!(r.error_message.is_some(), "{what}");
    }
    assert!(stored(&mut conn, "t").is_empty());
}

#[test]
fn an_acks0_producer_of_a_corrupt_batch_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 1);
    // A good acks=0 batch: no response, the connection stays usable.
    send_acks0(&mut conn, batch(&[(b"k", b"fine")]));
    let ResponseKind::ApiVersions(v) =
        conn.call(ApiKey::ApiVersions, 0, RequestKind::ApiVersions(Default::default()))
    else {
        panic!("not ApiVersions")
    };
    assert_eq!(v.error_code, 0);
    // A corrupt one: the broker closes the connection, the only way to tell this producer.
    let mut bad = batch(&[(b"k", b"v")]).to_vec();
    bad[ATTRIBUTES_AT + 1] |= 4; // zstd over plain records
    recrc(&mut bad);
    send_acks0(&mut conn, Bytes::from(bad));
    assert!(conn.is_closed_by_broker(), "the connection stayed open");
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(stored(&mut conn, "t"), vec![(0, b"k".to_vec(), b"fine".to_vec())]);
    let metrics = scrape(broker.admin.expect("an admin listener"));
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("reason=\"produce_acks0_failed\"") && !l.ends_with(" 0")),
        "the refusal is counted: {metrics}"
    );
}

fn send_acks0(conn: &mut Conn, records: Bytes) {
    use kafka_protocol::protocol::Encodable;
    let data =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(s("t")))
        .with_partition_data(vec![data]);
    let req =
        ProduceRequest::default().with_acks(0).with_timeout_ms(1000).with_topic_data(vec![topic]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1000)
        .with_client_id(Some(s("acks0")));
    let mut frame = BytesMut::new();
    header.encode(&mut frame, ApiKey::Produce.request_header_version(9)).unwrap();
    req.encode(&mut frame, 9).unwrap();
    conn.send_frame(&frame);
}

fn scrape(admin: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: strata\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

#[test]
fn keyless_records_on_a_compacted_topic_are_each_listed_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    let (code, message) = create_with(&mut conn, "c", 1, 1, &[("cleanup.policy", "compact")]);
    assert_eq!(code, 0, "{message:?}");
    let now = now_ms();
    let records: Vec<Record> = (0..5)
        .map(|i| {
            let key = (i % 2 == 0).then_some(&b"key"[..]);
            record(i, key, b"value", now)
        })
        .collect();
    for compression in [Compression::None, Compression::Lz4] {
        let r = produce_v(&mut conn, 9, "c", encode(&records, compression), 1);
        assert_eq!(r.error_code, E::InvalidRecord.code(), "{r:?}");
        let listed: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(listed, vec![1, 3], "{compression:?}");
        let message = r.record_errors[0].batch_index_error_message.as_ref().unwrap();
        assert!(message.contains("without key"), "{message}");
        assert!(r.error_message.is_some_and(|m| m.contains("2 record errors")));
    }
    // Produce v7 has no record_errors: the code alone.
    let r = produce_v(&mut conn, 7, "c", encode(&records, Compression::None), 1);
    assert_eq!(r.error_code, E::InvalidRecord.code());
    assert!(stored(&mut conn, "c").is_empty());
    let keyed = encode(&[record(0, Some(b"k"), b"v", now)], Compression::None);
    assert_eq!(produce_v(&mut conn, 9, "c", keyed, 1).error_code, 0);
}

#[test]
fn timestamps_outside_the_topic_window_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    let configs = [("message.timestamp.before.max.ms", "60000")];
    assert_eq!(create_with(&mut conn, "w", 1, 1, &configs).0, 0);
    let now = now_ms();
    let records = vec![
        record(0, None, b"now", now),
        record(1, None, b"an hour ago", now - 3_600_000),
        record(2, None, b"two hours ahead", now + 7_200_000),
    ];
    let r = produce_v(&mut conn, 9, "w", encode(&records, Compression::Zstd), 1);
    assert_eq!(r.error_code, E::InvalidTimestamp.code(), "{r:?}");
    let listed: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(listed, vec![1, 2]);
    assert!(stored(&mut conn, "w").is_empty());
    let fine = encode(&records[..1], Compression::None);
    assert_eq!(produce_v(&mut conn, 9, "w", fine, 1).error_code, 0);
}

#[test]
fn clients_may_not_write_delete_or_grow_internal_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    for topic in ["__consumer_offsets", "__transaction_state"] {
        let r = produce_v(&mut conn, 9, topic, batch(&[(b"k", b"v")]), 1);
        assert_eq!(r.error_code, E::InvalidTopicException.code(), "{topic}: {r:?}");
        assert!(r.error_message.is_some_and(|m| m.contains("internal topic")));

        let p = delete_records_request::DeleteRecordsPartition::default()
            .with_partition_index(0)
            .with_offset(-1);
        let t = delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![p]);
        let req = DeleteRecordsRequest::default().with_topics(vec![t]).with_timeout_ms(5000);
        let ResponseKind::DeleteRecords(r) =
            conn.call(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(req))
        else {
            panic!("not DeleteRecords")
        };
        assert_eq!(r.topics[0].partitions[0].error_code, E::InvalidTopicException.code());

        let t = create_partitions_request::CreatePartitionsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_count(60);
        let req = CreatePartitionsRequest::default().with_topics(vec![t]).with_timeout_ms(5000);
        let ResponseKind::CreatePartitions(r) =
            conn.call(ApiKey::CreatePartitions, 3, RequestKind::CreatePartitions(req))
        else {
            panic!("not CreatePartitions")
        };
        assert_eq!(r.results[0].error_code, E::TopicAuthorizationFailed.code(), "{topic}");

        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(s(topic))])
            .with_timeout_ms(5000);
        let ResponseKind::DeleteTopics(r) =
            conn.call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(req))
        else {
            panic!("not DeleteTopics")
        };
        assert_eq!(r.responses[0].error_code, E::TopicAuthorizationFailed.code(), "{topic}");
    }
    // Both topics are still there, with their partition counts.
    let meta = common::metadata(&mut conn);
    let offsets =
        meta.topics.iter().find(|t| t.name.as_ref().unwrap().0.as_str() == "__consumer_offsets");
    assert_eq!(offsets.expect("still there").partitions.len(), 1);
    assert!(meta
        .topics
        .iter()
        .any(|t| t.name.as_ref().unwrap().0.as_str() == "__transaction_state"));
}

fn commit(conn: &mut Conn, group: &str, topic: &str, offset: i64) -> i16 {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![t]);
    let ResponseKind::OffsetCommit(r) =
        conn.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))
    else {
        panic!("not OffsetCommit")
    };
    r.topics[0].partitions[0].error_code
}

fn committed(conn: &mut Conn, group: &str, topic: &str) -> i64 {
    let t = offset_fetch_request::OffsetFetchRequestTopics::default()
        .with_name(TopicName(s(topic)))
        .with_partition_indexes(vec![0]);
    let g = offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]));
    let req = OffsetFetchRequest::default().with_groups(vec![g]);
    // Right after a restart the coordinator may still be loading its offsets partition
    // (COORDINATOR_LOAD_IN_PROGRESS, retriable): ask again, as clients do.
    common::poll("the offsets partition loaded", || {
        let ResponseKind::OffsetFetch(r) =
            conn.call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(req.clone()))
        else {
            panic!("not OffsetFetch")
        };
        let code = r.groups[0].error_code;
        if code == E::CoordinatorLoadInProgress.code() {
            return None;
        }
        assert_eq!(code, 0);
        Some(r.groups[0].topics[0].partitions[0].committed_offset)
    })
}

#[test]
fn a_forged_offset_commit_is_refused_and_not_applied_after_a_restart() {
    use strata::group::records::{encode_batch, OffsetsRecord};
    use strata::group::state::Committed;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "orders", 1);
    // The group coordinator's own write into __consumer_offsets still works.
    assert_eq!(commit(&mut conn, "honest", "orders", 7), 0);
    // A client forges the record the coordinator would write for group "victim".
    let forged = OffsetsRecord::Offset {
        group: "victim".into(),
        topic: "orders".into(),
        partition: 0,
        value: Some(Committed {
            offset: 123_456,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: now_ms(),
        }),
    };
    let forged = encode_batch(&[forged], now_ms()).unwrap();
    let r = produce_v(&mut conn, 9, "__consumer_offsets", forged, -1);
    assert_eq!(r.error_code, E::InvalidTopicException.code(), "{r:?}");
    drop(conn);
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(committed(&mut conn, "victim", "orders"), -1, "the forged commit was applied");
    assert_eq!(committed(&mut conn, "honest", "orders"), 7, "the real commit survived");
}

#[test]
fn zstd_needs_produce_v7() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "z", 1);
    let zstd = encode(&[record(0, None, b"v", now_ms())], Compression::Zstd);
    let r = produce_v(&mut conn, 6, "z", zstd.clone(), 1);
    assert_eq!(r.error_code, E::UnsupportedCompressionType.code());
    assert_eq!(produce_v(&mut conn, 7, "z", zstd, 1).error_code, 0);
}

#[test]
fn compression_type_recompresses_on_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    let configs = [("compression.type", "zstd"), ("compression.zstd.level", "10")];
    assert_eq!(create_with(&mut conn, "z", 1, 1, &configs).0, 0);
    let now = now_ms();
    let records: Vec<Record> = (0..20)
        .map(|i| record(i, Some(b"key"), format!("value {i}").as_bytes(), now + i as i64))
        .collect();
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let r = produce_v(&mut conn, 9, "z", encode(&records, compression), -1);
        assert_eq!(r.error_code, 0, "{compression:?}: {r:?}");
    }
    let data = fetch_one(&mut conn, "z", 0, 0).records.unwrap();
    let mut buf = data.clone();
    let mut batches = 0;
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert!(matches!(set.compression, Compression::Zstd), "stored as {:?}", set.compression);
        assert_eq!(set.records.len(), 20);
        for (i, r) in set.records.iter().enumerate() {
            assert_eq!(r.offset, (batches * 20 + i) as i64);
            assert_eq!(r.timestamp, now + i as i64);
            assert_eq!(r.value.as_deref(), Some(format!("value {i}").as_bytes()));
        }
        batches += 1;
    }
    assert_eq!(batches, 3);
}
