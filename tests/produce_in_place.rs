//! Produce writes offsets, leader epochs and LogAppendTime into the request's own buffer (see
//! `take_records` in src/server/handlers/produce.rs): one request spanning both shards and two
//! topics, one of them LogAppendTime, must come back byte for byte as sent, but for exactly
//! the fields the broker assigns, with valid CRCs, and no batch may see another's bytes.
//! Followers copy those batches verbatim: their logs must hold the same bytes.

mod common;

use bytes::Bytes;
use common::{batch, create_with, layout, log_bytes, poll, Broker, Cluster, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const PARTITIONS: i32 = 4;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

/// A batch distinct per (topic, partition, round), `size` bytes of values: the pieces of one
/// frame must not leak into each other.
fn distinct(topic: u8, partition: i32, round: u8, size: usize) -> Bytes {
    let key = [topic, partition as u8, round];
    let value: Vec<u8> = (0..size).map(|i| (i as u8) ^ topic ^ (partition as u8) ^ round).collect();
    batch(&[(&key, &value), (&key, &value[..size / 2])])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// What the log must hold for `sent`: base offset, leader epoch and, when `append_time` is
/// set, the LogAppendTime attribute and maxTimestamp with a recomputed CRC-32C.
fn expected(sent: &[u8], offset: i64, epoch: i32, append_time: Option<i64>) -> Vec<u8> {
    let mut b = sent.to_vec();
    b[0..8].copy_from_slice(&offset.to_be_bytes());
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
    if let Some(time) = append_time {
        let attributes = u16::from_be_bytes([b[21], b[22]]) | 0x08;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[35..43].copy_from_slice(&time.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    b
}

#[test]
fn one_request_many_partitions_is_assigned_in_place_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create_with(&mut conn, "create", PARTITIONS, 1, &[]).0, 0);
    let stamped = [("message.timestamp.type", "LogAppendTime")];
    assert_eq!(create_with(&mut conn, "append", PARTITIONS, 1, &stamped).0, 0);
    let topics = ["create", "append"];

    // sent[topic][partition] = (batch, offset, log append time) per round
    let mut sent: Vec<Vec<Vec<(Bytes, i64, i64)>>> =
        vec![vec![Vec::new(); PARTITIONS as usize]; topics.len()];
    for round in 0..3u8 {
        let data = topics
            .iter()
            .enumerate()
            .map(|(t, topic)| {
                let parts = (0..PARTITIONS)
                    .map(|p| {
                        // Partition 3 of "create" is tiny: copied, not taken over (a share of
                        // the frame below `IN_PLACE_SHARE_MIN`); the others are large, and so
                        // is the frame (`IN_PLACE_FRAME_MIN`).
                        let size = if t == 0 && p == 3 { 10 } else { 6000 + 100 * p as usize };
                        let records = distinct(t as u8, p, round, size);
                        produce_request::PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(records))
                    })
                    .collect();
                produce_request::TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(parts)
            })
            .collect();
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000);
        let req = req.with_topic_data(data);
        let copy = req.clone();
        let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req))
        else {
            panic!("not a Produce response")
        };
        for (t, topic) in r.responses.iter().enumerate() {
            assert_eq!(topic.name.0.as_str(), topics[t]);
            for (p, part) in topic.partition_responses.iter().enumerate() {
                assert_eq!((part.index, part.error_code), (p as i32, 0), "{topic:?}");
                assert_eq!(part.base_offset, 2 * i64::from(round));
                if t == 1 {
                    assert!(part.log_append_time_ms > 0, "{part:?}");
                } else {
                    assert_eq!(part.log_append_time_ms, -1);
                }
                let records = copy.topic_data[t].partition_data[p].records.clone().unwrap();
                sent[t][p].push((records, part.base_offset, part.log_append_time_ms));
            }
        }
    }

    for (t, topic) in topics.iter().enumerate() {
        for p in 0..PARTITIONS {
            let got = common::fetch_one(&mut conn, topic, p, 0);
            assert_eq!((got.error_code, got.high_watermark), (0, 6), "{topic}-{p}");
            let mut data = got.records.unwrap();
            // The decoder checks each batch's CRC, and the offsets are consecutive.
            let offsets: Vec<i64> = common::records(&data).iter().map(|r| r.0).collect();
            assert_eq!(offsets, (0..6).collect::<Vec<_>>(), "{topic}-{p}");
            for (records, offset, time) in &sent[t][p as usize] {
                let len = 12 + be_i32(&data, 8) as usize;
                let stored = data.split_to(len);
                let epoch = be_i32(&stored, 12);
                assert!(epoch >= 0, "{topic}-{p}: leader epoch {epoch}");
                let time = (*time >= 0).then_some(*time);
                let want = expected(records, *offset, epoch, time);
                assert_eq!(&stored[..], &want[..], "{topic}-{p} at {offset}");
                assert_eq!(be_i32(&stored, 17) as u32, crc32c::crc32c(&stored[21..]));
                if let Some(time) = time {
                    assert_eq!(be_i64(&stored, 35), time, "maxTimestamp is the append time");
                }
            }
            assert!(data.is_empty(), "{topic}-{p}: {} bytes past the batches sent", data.len());
        }
    }
}

#[test]
fn followers_store_the_leaders_rewritten_batches_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "2"]);
    let mut conn = Conn::connect(cluster.node(1).addr);
    let stamped = [("message.timestamp.type", "LogAppendTime")];
    assert_eq!(create_with(&mut conn, "r-append", 1, 3, &stamped).0, 0);
    assert_eq!(create_with(&mut conn, "r-create", 1, 3, &[]).0, 0);
    for (t, topic) in ["r-create", "r-append"].into_iter().enumerate() {
        let lead = poll("a leader with every replica in sync", || {
            let parts = layout(&mut conn, topic)?;
            let (_, leader, replicas, isr) = parts.into_iter().next()?;
            (leader > 0 && isr.len() == replicas.len()).then_some(leader)
        });
        let mut to_leader = Conn::connect(cluster.node(lead).addr);
        let mut sent = Vec::new();
        for round in 0..3u8 {
            // Large enough for the frame to be taken over (`IN_PLACE_FRAME_MIN`).
            let records = distinct(t as u8, 0, round, 40_000);
            let (code, offset) = common::produce(&mut to_leader, topic, 0, records.clone(), -1);
            assert_eq!((code, offset), (0, 2 * i64::from(round)), "{topic}");
            sent.push(records);
        }
        let leader_log = log_bytes(&cluster.node(lead).data_dir, topic, 0);
        let mut data = Bytes::from(leader_log.clone());
        for (round, records) in sent.iter().enumerate() {
            let len = 12 + be_i32(&data, 8) as usize;
            let stored = data.split_to(len);
            let time = (t == 1).then(|| be_i64(&stored, 35));
            let want = expected(records, 2 * round as i64, be_i32(&stored, 12), time);
            assert_eq!(&stored[..], &want[..], "{topic}: the leader's log, batch {round}");
        }
        assert!(data.is_empty());
        for node in 1..=3 {
            let dir = cluster.node(node).data_dir.clone();
            poll("every replica holding the leader's bytes", || {
                (log_bytes(&dir, topic, 0) == leader_log).then_some(())
            });
        }
    }
}
