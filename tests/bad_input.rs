//! Malformed, oversized and unsupported input: each gets the right Kafka error code or a
//! clean disconnect, and the broker keeps serving everyone else.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{batch, create_topic, fetch_one, produce, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MAX_REQUEST: usize = 4 << 20;

fn broker(dir: &std::path::Path) -> Broker {
    Broker::start(dir, &["--shards", "1", "--max-request-bytes", &MAX_REQUEST.to_string()])
}

/// ApiVersions v3 with this client software name and version: (error code, APIs listed).
fn api_versions_v3(conn: &mut Conn, name: &str, version: &str) -> (i16, usize) {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_string(name.into()))
        .with_client_software_version(StrBytes::from_string(version.into()));
    match conn.call(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(req)) {
        ResponseKind::ApiVersions(r) => (r.error_code, r.api_keys.len()),
        other => panic!("unexpected {other:?}"),
    }
}

/// The broker still answers a well-formed client.
fn assert_serves(broker: &Broker) {
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(api_versions_v3(&mut conn, "librdkafka", "2.16.0").0, 0);
}

#[test]
fn api_versions_checks_the_client_software_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    // Kafka's ApiVersionsRequest.isValid: [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])? each;
    // INVALID_REQUEST (42) and no APIs otherwise, the connection kept.
    for (name, version) in [("bad name!!", "1.0"), ("ok", ""), ("-x", "1"), ("x", "1.0.")] {
        assert_eq!(api_versions_v3(&mut conn, name, version), (42, 0), "{name:?} {version:?}");
    }
    let (code, apis) = api_versions_v3(&mut conn, "apache-kafka-java", "4.1.0");
    assert_eq!(code, 0);
    assert!(apis > 50, "{apis} APIs listed");
}

/// A tiny deterministic generator, so a failure replays.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_and_truncated_frames_get_disconnects_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    for round in 0..300 {
        let mut conn = Conn::connect(broker.addr);
        let len = (rng.next() % 200) as usize + 8;
        let mut frame = rng.bytes(len);
        // Half of the rounds use a real API key and version, so decoding goes deeper.
        if round % 2 == 0 {
            let keys = [0i16, 1, 2, 3, 18, 19, 20, 32, 37];
            let key = keys[(rng.next() % keys.len() as u64) as usize];
            frame[0..2].copy_from_slice(&key.to_be_bytes());
            frame[2..4].copy_from_slice(&((rng.next() % 12) as i16 + 1).to_be_bytes());
        }
        conn.send_frame(&frame);
        // Either an answer (some random bodies decode) or a disconnect; never a hang.
        let _ = conn.read_frame();
    }
    // Frames cut short: the size prefix promises more than is sent, then the client leaves.
    for _ in 0..20 {
        let mut conn = Conn::connect(broker.addr);
        let mut bytes = BytesMut::new();
        bytes.put_i32(100);
        bytes.put_slice(&rng.bytes(30));
        conn.send_raw(&bytes).unwrap();
    }
    assert_serves(&broker);
}

#[test]
fn oversized_and_negative_frames_are_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    for size in [(MAX_REQUEST + 1) as i32, i32::MAX, -1, 0, 3] {
        let mut conn = Conn::connect(broker.addr);
        conn.send_raw(&size.to_be_bytes()).unwrap();
        assert!(conn.is_closed_by_broker(), "frame size {size} was not refused");
    }
    assert_serves(&broker);
}

#[test]
fn unknown_api_key_disconnects_and_unsupported_api_versions_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    let mut frame = BytesMut::new();
    frame.put_i16(999); // no such API
    frame.put_i16(0);
    frame.put_i32(1);
    frame.put_i16(-1);
    conn.send_frame(&frame);
    assert!(conn.is_closed_by_broker());

    // ApiVersions v99: error UNSUPPORTED_VERSION (35) plus our ranges, in a v0 response.
    let mut conn = Conn::connect(broker.addr);
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(77);
    frame.put_i16(-1);
    conn.send_frame(&frame);
    let mut response = conn.read_frame().unwrap();
    use bytes::Buf;
    assert_eq!(response.get_i32(), 77);
    let r = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut response, 0)
        .unwrap();
    assert_eq!(r.error_code, 35);
    let produce = r.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 11));

    // A version we do not implement for another API: the connection is closed.
    let mut conn = Conn::connect(broker.addr);
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::Produce as i16);
    frame.put_i16(1);
    frame.put_i32(1);
    frame.put_i16(-1);
    conn.send_frame(&frame);
    assert!(conn.is_closed_by_broker());
    assert_serves(&broker);
}

#[test]
fn corrupt_batches_get_error_codes_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "bad", 1);
    let good = batch(&[(b"k", b"v")]);

    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert_eq!(produce(&mut conn, "bad", 0, Bytes::from(bad_crc), 1).0, 2); // CORRUPT_MESSAGE

    let mut truncated = good.to_vec();
    truncated.truncate(good.len() - 3);
    assert_eq!(produce(&mut conn, "bad", 0, Bytes::from(truncated), 1).0, 2);

    let mut old_magic = good.to_vec();
    old_magic[16] = 1;
    let code = produce(&mut conn, "bad", 0, Bytes::from(old_magic), 1).0;
    assert!(code == 2 || code == 43, "magic 1 answered with {code}");

    let garbage = Bytes::from(vec![7u8; 100]);
    assert_ne!(produce(&mut conn, "bad", 0, garbage, 1).0, 0);

    // Nothing above was appended: the first good batch gets offset 0.
    assert_eq!(produce(&mut conn, "bad", 0, good.clone(), 1), (0, 0));
    assert_eq!(produce(&mut conn, "bad", 0, good, -1), (0, 1));
    assert_serves(&broker);
}

#[test]
fn oversized_batch_and_bad_targets_get_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "1", "--max-message-bytes", "2048"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 2);
    let big = vec![b'x'; 4096];
    assert_eq!(produce(&mut conn, "t", 0, batch(&[(b"k", &big)]), 1).0, 10); // MESSAGE_TOO_LARGE
    let small = batch(&[(b"k", b"v")]);
    assert_eq!(produce(&mut conn, "t", 2, small.clone(), 1).0, 3); // UNKNOWN_TOPIC_OR_PARTITION
    assert_eq!(produce(&mut conn, "t", -1, small.clone(), 1).0, 3);
    assert_eq!(produce(&mut conn, "nope", 0, small.clone(), 1).0, 3);
    assert_eq!(produce(&mut conn, "t", 0, small.clone(), 7).0, 21); // INVALID_REQUIRED_ACKS
    assert_eq!(produce(&mut conn, "t", 0, small, 1), (0, 0));
}

#[test]
fn out_of_range_fetches_and_unknown_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "f", 1);
    assert_eq!(produce(&mut conn, "f", 0, batch(&[(b"a", b"1"), (b"b", b"2")]), 1), (0, 0));
    assert_eq!(fetch_one(&mut conn, "f", 0, 5).error_code, 1); // OFFSET_OUT_OF_RANGE
    assert_eq!(fetch_one(&mut conn, "f", 0, -3).error_code, 1);
    assert_eq!(fetch_one(&mut conn, "f", 9, 0).error_code, 3);
    assert_eq!(fetch_one(&mut conn, "missing", 0, 0).error_code, 3);
    let at_end = fetch_one(&mut conn, "f", 0, 2);
    assert_eq!((at_end.error_code, at_end.high_watermark), (0, 2));
    assert!(at_end.records.unwrap().is_empty());
    let data = fetch_one(&mut conn, "f", 0, 1);
    let got = common::records(&data.records.unwrap());
    // The whole batch comes back (it holds offset 1), verbatim.
    assert_eq!(got, vec![(0, b"a".to_vec(), b"1".to_vec()), (1, b"b".to_vec(), b"2".to_vec())]);
}
