//! Client quotas over real connections: the throttling mechanism (throttle_time_ms, the
//! connection muted), not speeds (those are measured in perf/quota_rate.py).
//!
//! The producer here ignores `throttle_time_ms` and sends back to back, so only the broker's
//! muting keeps it near its quota: the bytes the broker accepted over the run are bounded by
//! what the quota allows in that time plus one burst (the quota's sample window, from the
//! broker's settings) plus one request. A slower machine only loosens that bound.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use common::{create_topic, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// The quota window: 2 samples of 1 s (`--quota-window-num 2 --quota-window-size-seconds 1`).
const WINDOW_ARGS: [&str; 4] = ["--quota-window-num", "2", "--quota-window-size-seconds", "1"];
const SAMPLES: f64 = 2.0;
const SAMPLE_S: f64 = 1.0;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn alter_quota(conn: &mut Conn, kind: &str, name: Option<&str>, key: &str, value: f64) {
    use alter_client_quotas_request::{EntityData, EntryData, OpData};
    let entity = EntityData::default().with_entity_type(s(kind)).with_entity_name(name.map(s));
    let op = OpData::default().with_key(s(key)).with_value(value);
    let entry = EntryData::default().with_entity(vec![entity]).with_ops(vec![op]);
    let req = AlterClientQuotasRequest::default().with_entries(vec![entry]);
    let ResponseKind::AlterClientQuotas(r) =
        conn.call(ApiKey::AlterClientQuotas, 1, RequestKind::AlterClientQuotas(req))
    else {
        panic!("not an AlterClientQuotas response")
    };
    assert_eq!(r.entries[0].error_code, 0, "{:?}", r.entries[0].error_message);
}

/// One batch of `count` records of `size` bytes.
fn records(count: usize, size: usize) -> Bytes {
    let value = vec![b'x'; size];
    let records: Vec<(&[u8], &[u8])> = (0..count).map(|_| (&b"k"[..], value.as_slice())).collect();
    common::batch(&records)
}

/// Produce v9 of `batch` to partition 0 of `topic`: (error code, throttle_time_ms).
fn produce(conn: &mut Conn, topic: &str, batch: Bytes) -> (i16, i32) {
    let p =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch));
    let t = produce_request::TopicProduceData::default()
        .with_name(TopicName(s(topic)))
        .with_partition_data(vec![p]);
    let req =
        ProduceRequest::default().with_acks(1).with_timeout_ms(10_000).with_topic_data(vec![t]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!("not a Produce response")
    };
    (r.responses[0].partition_responses[0].error_code, r.throttle_time_ms)
}

/// The admin listener's `/metrics` text.
fn scrape(admin: SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: strata\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").expect("an HTTP response").1.to_owned()
}

/// The value of the sample `name{labels}` in a scrape (0 if absent).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn a_producer_over_its_quota_is_muted_and_throttled_while_another_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--shards", "2"];
    args.extend(WINDOW_ARGS);
    let broker = Broker::start(dir.path(), &args);
    let mut admin = Conn::connect(broker.addr);
    create_topic(&mut admin, "q", 1);
    create_topic(&mut admin, "free", 1);
    let quota = 400_000.0; // bytes per second
    alter_quota(&mut admin, "client-id", Some("slow"), "producer_byte_rate", quota);
    let mut slow = Conn::connect(broker.addr);
    slow.client_id = "slow";
    let mut fast = Conn::connect(broker.addr);
    fast.client_id = "fast";
    let batch = records(10, 10_000); // ≈100 KB per request
    let request_bytes = batch.len() as f64;
    let mut accepted = 0.0;
    let mut throttled = 0;
    let started = Instant::now();
    for _ in 0..16 {
        let (code, throttle_ms) = produce(&mut slow, "q", batch.clone());
        assert_eq!(code, 0);
        accepted += request_bytes;
        throttled += usize::from(throttle_ms > 0);
        // The client without a quota, beside it: never throttled.
        let (code, throttle_ms) = produce(&mut fast, "free", records(1, 100));
        assert_eq!((code, throttle_ms), (0, 0));
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(throttled > 0, "the slow producer was never told it was throttled");
    // What the quota allows over the run, plus the burst a fresh sensor allows (samples - 1
    // windows' worth) plus the request that crossed the quota.
    let burst = quota * (SAMPLES - 1.0) * SAMPLE_S;
    let bound = quota * elapsed + burst + request_bytes;
    assert!(accepted <= bound, "accepted {accepted} B in {elapsed:.2} s, bound {bound:.0} B");
    // The throttling shows in /metrics, per client id.
    let text = scrape(broker.admin.unwrap());
    let labels = r#"quota="produce",user="",client_id="slow""#;
    assert!(sample(&text, "strata_quota_throttled_requests_total", labels) > 0.0, "{text}");
    assert!(sample(&text, "strata_quota_throttle_time_ms_total", labels) > 0.0);
    let fast_labels = r#"quota="produce",user="",client_id="fast""#;
    assert_eq!(sample(&text, "strata_quota_throttled_requests_total", fast_labels), 0.0);
}

/// Fetch v12 of partition 0 of `topic` from `offset`: (records bytes, throttle_time_ms,
/// next offset).
fn fetch(conn: &mut Conn, topic: &str, offset: i64) -> (usize, i32, i64) {
    let p = fetch_request::FetchPartition::default()
        .with_fetch_offset(offset)
        .with_partition_max_bytes(10 << 20)
        .with_current_leader_epoch(-1);
    let t = fetch_request::FetchTopic::default()
        .with_topic(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(10 << 20)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
        panic!("not a Fetch response")
    };
    let Some(partition) = r.responses.first().and_then(|t| t.partitions.first()) else {
        return (0, r.throttle_time_ms, offset); // a throttled fetch answers nothing
    };
    let data = partition.records.clone().unwrap_or_default();
    let next = common::records(&data).last().map_or(offset, |(o, _, _)| o + 1);
    (data.len(), r.throttle_time_ms, next)
}

#[test]
fn a_consumer_over_its_quota_gets_capped_then_empty_throttled_fetches_yet_progresses() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &WINDOW_ARGS);
    let mut admin = Conn::connect(broker.addr);
    create_topic(&mut admin, "r", 1);
    for _ in 0..10 {
        let (code, _) = produce(&mut admin, "r", records(10, 5_000)); // ≈50 KB batches
        assert_eq!(code, 0);
    }
    let quota = 100_000.0;
    alter_quota(&mut admin, "user", None, "consumer_byte_rate", quota);
    let mut reader = Conn::connect(broker.addr);
    let cap = quota * (SAMPLES - 1.0) * SAMPLE_S; // Kafka's max value in the quota window
    let (mut offset, mut empty_throttled) = (0, 0);
    while offset < 100 {
        let (bytes, throttle_ms, next) = fetch(&mut reader, "r", offset);
        assert!(bytes as f64 <= cap, "a fetch returned {bytes} B, more than the window's {cap}");
        if bytes == 0 && throttle_ms > 0 {
            empty_throttled += 1;
        }
        offset = next;
    }
    assert!(empty_throttled > 0, "no fetch was throttled");
}

#[test]
fn a_request_percentage_quota_throttles_busy_clients_and_quotas_are_described() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &WINDOW_ARGS);
    let mut admin = Conn::connect(broker.addr);
    // 0.01% of a shard: 100 µs of handling per second.
    alter_quota(&mut admin, "user", Some("ANONYMOUS"), "request_percentage", 0.01);
    let req = DescribeClientQuotasRequest::default();
    let ResponseKind::DescribeClientQuotas(r) =
        admin.call(ApiKey::DescribeClientQuotas, 1, RequestKind::DescribeClientQuotas(req))
    else {
        panic!()
    };
    let entries = r.entries.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entity[0].entity_name.as_deref(), Some("ANONYMOUS"));
    assert_eq!(entries[0].values[0].value, 0.01);
    let mut busy = Conn::connect(broker.addr);
    let throttled = (0..200).find_map(|_| {
        let req = MetadataRequest::default().with_topics(None);
        let ResponseKind::Metadata(r) = busy.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        else {
            panic!()
        };
        (r.throttle_time_ms > 0).then_some(r.throttle_time_ms)
    });
    assert!(throttled.is_some(), "200 Metadata requests never exceeded 100 µs per second");
}
