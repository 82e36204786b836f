//! With several shards, partitions land on all of them, and requests spanning shards are
//! split, forwarded and merged back in order.

mod common;

use std::thread;

use bytes::Bytes;
use common::{batch, create_topic, idempotent_batch, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn produce_all(topic: &str, partitions: i32, records: &Bytes) -> ProduceRequest {
    let data = (0..partitions)
        .map(|p| {
            produce_request::PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(records.clone()))
        })
        .collect();
    let t = produce_request::TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(data);
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![t])
}

fn shards_of(broker: &Broker, topic: &str) -> Vec<u64> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(broker.data_dir.join("metadata.json")).unwrap())
            .unwrap();
    meta["topics"][topic]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["shard"].as_u64().unwrap())
        .collect()
}

#[test]
fn one_produce_spanning_two_shards() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "span", 4);
    let shards = shards_of(&broker, "span");
    assert!(shards.contains(&0) && shards.contains(&1), "partitions on {shards:?}");

    let records = batch(&[(b"k1", b"v1"), (b"k2", b"v2")]);
    for round in 0..3i64 {
        let req = produce_all("span", 4, &records);
        let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req))
        else {
            panic!()
        };
        let parts = &r.responses[0].partition_responses;
        let got: Vec<(i32, i16, i64)> =
            parts.iter().map(|p| (p.index, p.error_code, p.base_offset)).collect();
        let want: Vec<(i32, i16, i64)> = (0..4).map(|p| (p, 0, round * 2)).collect();
        assert_eq!(got, want);
    }

    // One fetch spanning both shards returns each partition's data, in request order.
    let parts = (0..4)
        .rev()
        .map(|p| {
            fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let t = fetch_request::FetchTopic::default().with_topic(name("span")).with_partitions(parts);
    let req =
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 24).with_topics(vec![t]);
    let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
        panic!()
    };
    let partitions = &r.responses[0].partitions;
    assert_eq!(partitions.iter().map(|p| p.partition_index).collect::<Vec<_>>(), vec![3, 2, 1, 0]);
    for p in partitions {
        assert_eq!((p.error_code, p.high_watermark), (0, 6));
        let got = common::records(p.records.as_ref().unwrap());
        let offsets: Vec<i64> = got.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (0..6).collect::<Vec<_>>());
        assert_eq!(got[5].2, b"v2");
    }
}

#[test]
fn pipelined_produces_append_in_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "pipe", 2);
    // Send 50 produce requests back to back without reading, then read every response.
    let version = 9;
    let mut frames = Vec::new();
    for i in 0..50u32 {
        let value = i.to_be_bytes();
        let req = produce_all("pipe", 2, &batch(&[(b"k", &value)]));
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(i as i32);
        let mut frame = bytes::BytesMut::new();
        use kafka_protocol::protocol::Encodable;
        header.encode(&mut frame, ApiKey::Produce.request_header_version(version)).unwrap();
        req.encode(&mut frame, version).unwrap();
        frames.push(frame);
    }
    for frame in &frames {
        conn.send_frame(frame);
    }
    for i in 0..50i32 {
        let mut response = conn.read_frame().unwrap();
        use kafka_protocol::protocol::Decodable;
        let header =
            ResponseHeader::decode(&mut response, ApiKey::Produce.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, i, "responses come back in request order");
        let r = ProduceResponse::decode(&mut response, version).unwrap();
        for p in &r.responses[0].partition_responses {
            assert_eq!((p.error_code, p.base_offset), (0, i as i64), "partition {}", p.index);
        }
    }
}

#[test]
fn long_poll_fetch_is_woken_by_an_append_on_another_shard() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "wake", 2);
    let addr = broker.addr;
    // The fetch waits up to a minute for one byte on both partitions; the harness's socket
    // timeout (30 s) fails the test if only the deadline ends the wait.
    let waiter = thread::spawn(move || {
        let mut conn = Conn::connect(addr);
        let parts = (0..2)
            .map(|p| {
                fetch_request::FetchPartition::default()
                    .with_partition(p)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        let t =
            fetch_request::FetchTopic::default().with_topic(name("wake")).with_partitions(parts);
        let req = FetchRequest::default()
            .with_max_wait_ms(60_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![t]);
        let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
            panic!()
        };
        r
    });
    let data = produce_request::PartitionProduceData::default()
        .with_index(1)
        .with_records(Some(batch(&[(b"k", b"woken")])));
    let t = produce_request::TopicProduceData::default()
        .with_name(name("wake"))
        .with_partition_data(vec![data]);
    let req =
        ProduceRequest::default().with_acks(1).with_timeout_ms(10_000).with_topic_data(vec![t]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let fetched = waiter.join().unwrap();
    let p1 = fetched.responses[0].partitions.iter().find(|p| p.partition_index == 1).unwrap();
    let got = common::records(p1.records.as_ref().unwrap());
    assert_eq!(got, vec![(0, b"k".to_vec(), b"woken".to_vec())]);
}

#[test]
fn log_lines_of_a_request_carry_its_ids_on_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "ids", 2);
    let shards = shards_of(&broker, "ids");
    assert!(shards.contains(&0) && shards.contains(&1), "partitions on {shards:?}");

    // An idempotent producer's first batch to both partitions, then one with a sequence gap:
    // each owning shard refuses it (OUT_OF_ORDER_SEQUENCE_NUMBER) and logs why, one of them on
    // behalf of a connection that another shard accepted. (A corrupt batch would not do: it is
    // refused by the validator on the accepting shard, before any forwarding.)
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let ResponseKind::InitProducerId(init) =
        conn.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
    else {
        panic!()
    };
    let pid = init.producer_id.0;
    for (sequence, want) in [(0, 0), (9, 45)] {
        let records = idempotent_batch(pid, init.producer_epoch, sequence, &[b"v"]);
        let req = produce_all("ids", 2, &records);
        let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req))
        else {
            panic!()
        };
        let codes: Vec<i16> =
            r.responses[0].partition_responses.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, [want, want], "sequence {sequence}");
    }

    let correlation = format!("correlation_id={}", conn.last_correlation_id());
    let lines = [broker.wait_for_log("refused produce"), broker.wait_for_log("refused produce")];
    let conn_ids: Vec<&str> = lines
        .iter()
        .map(|line| {
            assert!(line.contains(&correlation), "{correlation} missing from {line:?}");
            let start = line.find("conn{id=").unwrap_or_else(|| panic!("no conn id in {line:?}"));
            line[start..].split_whitespace().next().unwrap()
        })
        .collect();
    assert_eq!(conn_ids[0], conn_ids[1], "one connection id on both shards: {lines:?}");
    let partitions: Vec<bool> =
        (0..2).map(|p| lines.iter().any(|l| l.contains(&format!("partition={p}")))).collect();
    assert_eq!(partitions, [true, true]);
}
