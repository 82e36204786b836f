//! One connection's requests take effect in the order they were sent, as in Kafka (which reads
//! a connection's next request only after answering the last): a request sent right behind
//! another, before its answer came, sees what the first one did. librdkafka pipelines requests
//! on its one connection per broker this way (confluent-kafka-python's DeleteRecords test
//! sends DeleteRecords then ListOffsets and expects the new log start).

mod common;

use bytes::{Bytes, BytesMut};
use common::{batch, create_topic, produce, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Encodes one request frame (no size prefix) with `correlation_id`.
fn frame(key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("order")));
    let mut out = BytesMut::new();
    header.encode(&mut out, key.request_header_version(version)).unwrap();
    body.encode(&mut out, version).unwrap();
    out
}

fn response(conn: &mut Conn, key: ApiKey, version: i16, correlation_id: i32) -> ResponseKind {
    let mut bytes: Bytes = conn.read_frame().expect("a response");
    let header = ResponseHeader::decode(&mut bytes, key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, correlation_id, "responses come in request order");
    ResponseKind::decode(key, &mut bytes, version).unwrap()
}

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
    let mut correlation = 100;
    for new_start in 1..=4i64 {
        let delete = frame(ApiKey::DeleteRecords, 2, correlation, &delete_records(new_start));
        let list = frame(ApiKey::ListOffsets, 7, correlation + 1, &earliest());
        let mut wire = BytesMut::new();
        for f in [&delete, &list] {
            wire.extend_from_slice(&(f.len() as i32).to_be_bytes());
            wire.extend_from_slice(f);
        }
        conn.send_raw(&wire).unwrap();
        let ResponseKind::DeleteRecords(d) =
            response(&mut conn, ApiKey::DeleteRecords, 2, correlation)
        else {
            panic!("not DeleteRecords")
        };
        let deleted = &d.topics[0].partitions[0];
        assert_eq!((deleted.error_code, deleted.low_watermark), (0, new_start));
        let ResponseKind::ListOffsets(l) =
            response(&mut conn, ApiKey::ListOffsets, 7, correlation + 1)
        else {
            panic!("not ListOffsets")
        };
        let listed = &l.topics[0].partitions[0];
        assert_eq!((listed.error_code, listed.offset), (0, new_start), "round {new_start}");
        correlation += 2;
    }
}
