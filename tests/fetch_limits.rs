//! Fetch honours the request's `max_bytes` together with each partition's
//! `partition_max_bytes`, in partition order, in whole batches (KIP-74): only the first
//! partition with data may exceed the limits, and only by its first batch.

mod common;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// A batch of one record whose value is `size` bytes of `fill`.
fn big_batch(size: usize, fill: u8) -> bytes::Bytes {
    batch(&[(b"k".as_slice(), vec![fill; size].as_slice())])
}

/// Fetch v12 of partitions 0 and 1 of `topic` from offset 0: the record bytes of each.
fn fetch_both(conn: &mut Conn, topic: &str, max_bytes: i32, partition_max: i32) -> Vec<usize> {
    let parts = (0..2)
        .map(|p| {
            fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(partition_max)
        })
        .collect();
    let t = fetch_request::FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.into())))
        .with_partitions(parts);
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
        panic!("not a Fetch response")
    };
    let parts = &r.responses[0].partitions;
    assert!(parts.iter().all(|p| p.error_code == 0), "{parts:?}");
    parts.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).collect()
}

#[test]
fn a_fetch_stays_within_max_bytes_in_whole_batches_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "limits", 2);
    let one = big_batch(300_000, b'a');
    let size = one.len();
    for p in 0..2 {
        for _ in 0..8 {
            assert_eq!(produce(&mut conn, "limits", p, big_batch(300_000, b'a'), -1).0, 0);
        }
    }
    // Served from the tail cache, then, after a restart, from the disk (where a later
    // partition's batch that cannot fit is not read, and its size is remembered: the same
    // fetches again give the same answers).
    check_limits(&mut conn, size);
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    check_limits(&mut conn, size);
    check_limits(&mut conn, size);
}

fn check_limits(conn: &mut Conn, size: usize) {
    // The report: 1,000,512 bytes asked, a partition limit far above it. Three batches of
    // the first partition fit, nothing of the second (its first batch no longer fits).
    assert_eq!(fetch_both(conn, "limits", 1_000_512, 10 << 20), vec![3 * size, 0]);
    // Each partition gets at most its own limit, and the rest of the budget goes on.
    assert_eq!(fetch_both(conn, "limits", 10 << 20, 700_000), vec![2 * size, 2 * size]);
    assert_eq!(fetch_both(conn, "limits", 5 * size as i32, 10 << 20), vec![5 * size, 0]);
    // A first batch larger than every limit still comes back whole (the consumer must make
    // progress), alone; the second partition gets nothing this time.
    assert_eq!(fetch_both(conn, "limits", 1000, 1000), vec![size, 0]);
    // A partition limit below one batch: the first partition's first batch only.
    assert_eq!(fetch_both(conn, "limits", 10 << 20, 1000), vec![size, 0]);
}
