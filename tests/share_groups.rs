//! Share groups (KIP-932) over the raw protocol: members share a partition, every record is
//! delivered and accepted once, locks expire into redeliveries with higher delivery counts,
//! rejected records and records past the delivery limit are archived, share sessions check
//! their epochs, and after kill -9 no accepted record comes back and none is lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{create_topic, produce, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

const TOPIC: &str = "queue";

fn broker(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let mut args = vec![
        "--shards",
        "2",
        "--offsets-topic-partitions",
        "4",
        "--share-auto-offset-reset",
        "earliest",
    ];
    args.extend_from_slice(extra);
    Broker::start(dir, &args)
}

/// Produces `count` records with values `"0"`, `"1"`, ... in batches of 100.
fn fill(conn: &mut Conn, count: usize) {
    let mut next = 0;
    while next < count {
        let values: Vec<String> = (next..(next + 100).min(count)).map(|i| i.to_string()).collect();
        let records: Vec<(&[u8], &[u8])> =
            values.iter().map(|v| (b"k".as_slice(), v.as_bytes())).collect();
        let (code, _) = produce(conn, TOPIC, 0, common::batch(&records), -1);
        assert_eq!(code, 0);
        next += values.len();
    }
}

fn heartbeat(
    conn: &mut Conn,
    group: &str,
    member: &str,
    epoch: i32,
) -> ShareGroupHeartbeatResponse {
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_subscribed_topic_names((epoch == 0).then(|| vec![TopicName(s(TOPIC))]));
    match conn.call(ApiKey::ShareGroupHeartbeat, 1, RequestKind::ShareGroupHeartbeat(req)) {
        ResponseKind::ShareGroupHeartbeat(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

/// One consumer of the share group: its connection, member id and share session epoch.
struct Member {
    conn: Conn,
    id: String,
    epoch: i32,
}

/// What one ShareFetch gave: (offset, value, delivery count) of each acquired record.
struct Fetched {
    error_code: i16,
    partition_error: i16,
    ack_error: i16,
    records: Vec<(i64, String, i16)>,
}

impl Member {
    fn join(broker: &Broker, group: &str, id: &str) -> Member {
        let mut conn = Conn::connect(broker.addr);
        let r = heartbeat(&mut conn, group, id, 0);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        let assignment = r.assignment.expect("an assignment on joining");
        assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);
        Member { conn, id: id.to_owned(), epoch: 0 }
    }

    /// ShareFetch with `acks` (first, last, type) piggy-backed.
    fn fetch(
        &mut self,
        group: &str,
        topic_id: uuid::Uuid,
        acks: &[(i64, i64, i8)],
        max_records: i32,
        wait_ms: i32,
    ) -> Fetched {
        let batches = acks
            .iter()
            .map(|(first, last, t)| {
                share_fetch_request::AcknowledgementBatch::default()
                    .with_first_offset(*first)
                    .with_last_offset(*last)
                    .with_acknowledge_types(vec![*t])
            })
            .collect();
        let p = share_fetch_request::FetchPartition::default()
            .with_partition_index(0)
            .with_acknowledgement_batches(batches);
        let t = share_fetch_request::FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![p]);
        let req = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(self.epoch)
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(max_records)
            .with_batch_size(max_records)
            .with_topics(vec![t]);
        let r = match self.conn.call(ApiKey::ShareFetch, 1, RequestKind::ShareFetch(req)) {
            ResponseKind::ShareFetch(r) => r,
            other => panic!("unexpected {other:?}"),
        };
        if r.error_code == 0 {
            self.epoch = if self.epoch == -1 { 0 } else { self.epoch + 1 };
        }
        let mut out =
            Fetched { error_code: r.error_code, partition_error: 0, ack_error: 0, records: vec![] };
        let Some(p) = r.responses.first().and_then(|t| t.partitions.first()) else { return out };
        out.partition_error = p.error_code;
        out.ack_error = p.acknowledge_error_code;
        let data = p.records.clone().unwrap_or_default();
        let all = if data.is_empty() { Vec::new() } else { common::records(&data) };
        for a in &p.acquired_records {
            for (offset, _, value) in &all {
                if *offset >= a.first_offset && *offset <= a.last_offset {
                    let value = String::from_utf8(value.clone()).unwrap();
                    out.records.push((*offset, value, a.delivery_count));
                }
            }
            let wanted = a.last_offset - a.first_offset + 1;
            let got = all.iter().filter(|(o, _, _)| *o >= a.first_offset && *o <= a.last_offset);
            assert_eq!(got.count() as i64, wanted, "acquired records missing from the batches");
        }
        out
    }
}

/// The accept acknowledgements of `records`, one batch per contiguous run.
fn accept_all(records: &[(i64, String, i16)]) -> Vec<(i64, i64, i8)> {
    ranges(records.iter().map(|r| r.0), 1)
}

fn ranges(offsets: impl Iterator<Item = i64>, t: i8) -> Vec<(i64, i64, i8)> {
    let mut out: Vec<(i64, i64, i8)> = Vec::new();
    for o in offsets {
        match out.last_mut() {
            Some(last) if last.1 + 1 == o => last.1 = o,
            _ => out.push((o, o, t)),
        }
    }
    out
}

fn start_offset(conn: &mut Conn, group: &str) -> i64 {
    let t = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic::default()
        .with_topic_name(TopicName(s(TOPIC)))
        .with_partitions(vec![0]);
    let g = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]));
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
    match conn.call(
        ApiKey::DescribeShareGroupOffsets,
        0,
        RequestKind::DescribeShareGroupOffsets(req),
    ) {
        ResponseKind::DescribeShareGroupOffsets(r) => {
            r.groups[0].topics[0].partitions[0].start_offset
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn four_members_share_one_partition_and_accept_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 10_000);
    let mut members: Vec<Member> =
        (0..4).map(|i| Member::join(&broker, "g4", &format!("member-{i}"))).collect();
    let mut delivered: BTreeMap<i64, usize> = BTreeMap::new();
    let mut pending: Vec<Vec<(i64, i64, i8)>> = vec![Vec::new(); 4];
    let mut by_member = [0usize; 4];
    common::poll("every record delivered", || {
        for (i, m) in members.iter_mut().enumerate() {
            let acks = std::mem::take(&mut pending[i]);
            let f = m.fetch("g4", topic_id, &acks, 300, 50);
            assert_eq!((f.error_code, f.partition_error, f.ack_error), (0, 0, 0));
            for (offset, value, count) in &f.records {
                assert_eq!(value, &offset.to_string());
                assert_eq!(*count, 1, "a record delivered again before its lock expired");
                *delivered.entry(*offset).or_default() += 1;
            }
            by_member[i] += f.records.len();
            pending[i] = accept_all(&f.records);
        }
        (delivered.len() == 10_000).then_some(())
    });
    // The last acknowledgements, as a closing fetch of each session.
    for (i, m) in members.iter_mut().enumerate() {
        m.epoch = -1;
        let f = m.fetch("g4", topic_id, &pending[i], 300, 0);
        assert_eq!((f.error_code, f.ack_error), (0, 0));
        assert!(f.records.is_empty());
    }
    assert!(delivered.values().all(|n| *n == 1), "a record was delivered twice");
    assert_eq!(delivered.keys().copied().collect::<Vec<_>>(), (0..10_000).collect::<Vec<_>>());
    assert!(by_member.iter().all(|n| *n > 0), "every member got records: {by_member:?}");
    assert_eq!(start_offset(&mut admin, "g4"), 10_000, "every record accepted");
}

#[test]
fn unacknowledged_records_come_back_after_the_lock_expires_with_a_higher_count() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &["--group-share-record-lock-duration-ms", "500"]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 20);
    let mut a = Member::join(&broker, "g", "a");
    let mut b = Member::join(&broker, "g", "b");
    let first = a.fetch("g", topic_id, &[], 10, 1000);
    let taken: Vec<i64> = first.records.iter().map(|r| r.0).collect();
    assert_eq!(taken, (0..10).collect::<Vec<_>>());
    assert!(first.records.iter().all(|r| r.2 == 1));
    // b gets the other ten at once, then a's ten when their locks expire.
    let second = b.fetch("g", topic_id, &[], 100, 1000);
    assert_eq!(
        second.records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    let mut again = Vec::new();
    common::poll("a's records redelivered", || {
        let f = b.fetch("g", topic_id, &[], 100, 1000);
        again.extend(f.records);
        (again.len() >= 10).then_some(())
    });
    let offsets: BTreeSet<i64> = again.iter().map(|r| r.0).collect();
    assert!(offsets.is_superset(&(0..10).collect()), "{again:?}");
    assert!(again.iter().filter(|r| r.0 < 10).all(|r| r.2 >= 2), "{again:?}");
    // a's late acknowledgement is refused: the records are not a's any more.
    let late = a.fetch("g", topic_id, &accept_all(&first.records), 10, 0);
    assert_eq!(late.ack_error, E::InvalidRecordState.code());
}

#[test]
fn rejected_records_and_records_past_the_delivery_limit_are_archived() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--group-share-record-lock-duration-ms",
        "60000",
        "--group-share-delivery-count-limit",
        "2",
    ];
    let broker = broker(dir.path(), &args);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 10);
    let mut a = Member::join(&broker, "g", "a");
    let f = a.fetch("g", topic_id, &[], 100, 1000);
    assert_eq!(f.records.len(), 10);
    // Reject 0-4, release 5-9.
    let acks = [(0, 4, 3), (5, 9, 2)];
    let f = a.fetch("g", topic_id, &acks, 100, 1000);
    assert_eq!(f.ack_error, 0);
    let got: Vec<(i64, i16)> = f.records.iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(got, (5..10).map(|o| (o, 2)).collect::<Vec<_>>(), "rejected ones never again");
    // Released at the delivery limit: archived, never delivered again.
    let f = a.fetch("g", topic_id, &[(5, 9, 2)], 100, 300);
    assert_eq!(f.ack_error, 0);
    assert!(f.records.is_empty(), "{:?}", f.records);
    assert_eq!(start_offset(&mut admin, "g"), 10, "everything archived");
}

#[test]
fn share_sessions_check_their_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    let mut a = Member::join(&broker, "g", "a");
    a.epoch = 3;
    let f = a.fetch("g", topic_id, &[], 1, 0);
    assert_eq!(f.error_code, E::ShareSessionNotFound.code());
    a.epoch = 0;
    assert_eq!(a.fetch("g", topic_id, &[], 1, 0).error_code, 0);
    a.epoch = 7;
    assert_eq!(a.fetch("g", topic_id, &[], 1, 0).error_code, E::InvalidShareSessionEpoch.code());
    a.epoch = 1;
    assert_eq!(a.fetch("g", topic_id, &[], 1, 0).error_code, 0);
    // Acknowledgements without a session are refused.
    a.epoch = 0;
    assert_eq!(a.fetch("g", topic_id, &[(0, 0, 1)], 1, 0).error_code, E::InvalidRequest.code());
    // Heartbeats: a stale epoch is fenced, an unknown member refused.
    let r = heartbeat(&mut admin, "g", "a", 99);
    assert_eq!(r.error_code, E::FencedMemberEpoch.code());
    let r = heartbeat(&mut admin, "g", "nobody", 1);
    assert_eq!(r.error_code, E::UnknownMemberId.code());
}

#[test]
fn after_kill_9_no_accepted_record_comes_back_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 1_000);
    let mut a = Member::join(&broker, "g", "a");
    let mut accepted: BTreeSet<i64> = BTreeSet::new();
    let mut pending = Vec::new();
    let mut held = Vec::new();
    while accepted.len() < 500 {
        let f = a.fetch("g", topic_id, &pending, 50, 1000);
        assert_eq!((f.error_code, f.ack_error), (0, 0));
        // What was acknowledged in this request is durable now that it was answered.
        for (first, last, _) in &pending {
            accepted.extend(*first..=*last);
        }
        pending = accept_all(&f.records);
        held = f.records;
    }
    assert!(!held.is_empty(), "records acquired but not acknowledged at the kill");
    broker.kill9();
    broker.restart();
    let mut b = Member::join(&broker, "g", "b");
    let mut after: BTreeMap<i64, i16> = BTreeMap::new();
    let mut pending = Vec::new();
    common::poll("the rest delivered after the restart", || {
        let f = b.fetch("g", topic_id, &pending, 200, 200);
        assert_eq!((f.error_code, f.ack_error), (0, 0));
        for (offset, _, count) in &f.records {
            assert!(!accepted.contains(offset), "accepted record {offset} delivered again");
            after.insert(*offset, *count);
        }
        pending = accept_all(&f.records);
        (accepted.len() + after.len() >= 1_000).then_some(())
    });
    let all: BTreeSet<i64> = accepted.iter().chain(after.keys()).copied().collect();
    assert_eq!(all, (0..1_000).collect(), "no record lost");
    for (offset, _, _) in &held {
        assert!(after.contains_key(offset), "in-flight record {offset} not redelivered");
    }
}
