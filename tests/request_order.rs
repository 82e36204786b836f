//! One connection's requests take effect in the order they were sent, as in Kafka (which reads
//! a connection's next request only after answering the last): a request sent right behind
//! another, before its answer came, sees what the first one did. librdkafka pipelines requests
//! on its one connection per broker this way (confluent-kafka-python's DeleteRecords test
//! sends DeleteRecords then ListOffsets and expects the new log start).

mod common;

use common::{batch, create_topic, produce, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn delete_records(offset: i64) -> RequestKind {
    let p = delete_records_request::DeleteRecordsPartition::default()
        .with_partition_index(0)
        .with_offset(offset);
    let t = delete_records_request::DeleteRecordsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![p]);
    RequestKind::DeleteRecords(
        DeleteRecordsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000),
    )
}

fn earliest() -> RequestKind {
    let p = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(-2);
    let t = list_offsets_request::ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![p]);
    RequestKind::ListOffsets(
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]),
    )
}

#[test]
fn a_request_sent_behind_another_sees_its_effect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 1);
    for i in 0..5u8 {
        let (code, offset) = produce(&mut conn, "t", 0, batch(&[(b"k", &[i])]), -1);
        assert_eq!((code, offset), (0, i64::from(i)));
    }
    // Rounds of DeleteRecords to the next offset and ListOffsets(earliest), each pair sent
    // together before either answer is read.
    for new_start in 1..=4i64 {
        let sent = conn.send_requests(vec![
            (ApiKey::DeleteRecords, 2, delete_records(new_start)),
            (ApiKey::ListOffsets, 7, earliest()),
        ]);
        let (delete, list) = (sent[0], sent[1]);
        let ResponseKind::DeleteRecords(d) = conn.read_response(ApiKey::DeleteRecords, 2, delete)
        else {
            panic!("not DeleteRecords")
        };
        let deleted = &d.topics[0].partitions[0];
        assert_eq!((deleted.error_code, deleted.low_watermark), (0, new_start));
        let ResponseKind::ListOffsets(l) = conn.read_response(ApiKey::ListOffsets, 7, list) else {
            panic!("not ListOffsets")
        };
        let listed = &l.topics[0].partitions[0];
        assert_eq!((listed.error_code, listed.offset), (0, new_start), "round {new_start}");
    }
}
