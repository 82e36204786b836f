//! Idempotent producers: InitProducerId hands out fresh ids, retries of a producer's recent
//! batches are answered with their first offsets and stored once, also across a crash, and
//! sequence gaps are refused.

mod common;

use common::{create_topic, fetch_one, idempotent_batch, produce, records, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn init_producer_id(conn: &mut Conn, version: i16) -> (i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let ResponseKind::InitProducerId(r) =
        conn.call(ApiKey::InitProducerId, version, RequestKind::InitProducerId(req))
    else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

fn values(conn: &mut Conn, topic: &str, partition: i32) -> Vec<(i64, Vec<u8>)> {
    let data = fetch_one(conn, topic, partition, 0);
    assert_eq!(data.error_code, 0);
    let fetched = records(&data.records.unwrap_or_default());
    fetched.into_iter().map(|(offset, _, value)| (offset, value)).collect()
}

#[test]
fn retries_are_stored_once_across_a_crash_and_gaps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "idem", 2);
    let (pid, epoch) = init_producer_id(&mut conn, 4);
    let (other, _) = init_producer_id(&mut conn, 0);
    assert_eq!(epoch, 0);
    assert_ne!(pid, other);

    // Both partitions (one per shard): a first batch, its retry, the next batch, a gap.
    for p in 0..2 {
        let first = idempotent_batch(pid, 0, 0, &[b"a", b"b", b"c"]);
        assert_eq!(produce(&mut conn, "idem", p, first.clone(), -1), (0, 0));
        assert_eq!(produce(&mut conn, "idem", p, first, -1), (0, 0), "a retry keeps its offset");
        let next = idempotent_batch(pid, 0, 3, &[b"d", b"e"]);
        assert_eq!(produce(&mut conn, "idem", p, next, -1), (0, 3));
        let gap = idempotent_batch(pid, 0, 9, &[b"x"]);
        assert_eq!(produce(&mut conn, "idem", p, gap, -1).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    }

    broker.kill9();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    for p in 0..2 {
        let retry = idempotent_batch(pid, 0, 3, &[b"d", b"e"]);
        assert_eq!(produce(&mut conn, "idem", p, retry, -1), (0, 3), "deduplicated after a crash");
        let next = idempotent_batch(pid, 0, 5, &[b"f"]);
        assert_eq!(produce(&mut conn, "idem", p, next, -1), (0, 5));
        let want: Vec<(i64, Vec<u8>)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.as_bytes().to_vec()))
            .collect();
        assert_eq!(values(&mut conn, "idem", p), want);
    }
    let (after, _) = init_producer_id(&mut conn, 5);
    assert!(after > pid && after > other, "ids are never handed out twice, even after a crash");

    // A producer this partition has never seen starts at sequence 0: a later batch arriving
    // first means its earlier ones were refused, and accepting it would let librdkafka take
    // them as written (its "implicit ack").
    create_topic(&mut conn, "idem-new", 1);
    let later = idempotent_batch(other, 0, 5, &[b"late"]);
    assert_eq!(produce(&mut conn, "idem-new", 0, later.clone(), -1).0, 45, "not from 0");
    let first = idempotent_batch(other, 0, 0, &[b"a", b"b", b"c", b"d", b"e"]);
    assert_eq!(produce(&mut conn, "idem-new", 0, first, -1), (0, 0));
    assert_eq!(produce(&mut conn, "idem-new", 0, later, -1), (0, 5), "in order now");
}

#[test]
fn transactional_ids_keep_their_producer_id_and_bump_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "1"]);
    let mut conn = Conn::connect(broker.addr);
    let mut init = |timeout_ms: i32| {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let ResponseKind::InitProducerId(r) =
            conn.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
        else {
            panic!("not an InitProducerId response")
        };
        (r.error_code, r.producer_id.0, r.producer_epoch)
    };
    let (code, first, epoch) = init(60_000);
    assert_eq!((code, epoch), (0, 0));
    assert!(first >= 0);
    assert_eq!(init(60_000), (0, first, 1), "same producer id, next epoch");
    let (code, id, _) = init(0);
    assert_eq!((code, id), (50, -1), "INVALID_TRANSACTION_TIMEOUT");
}
