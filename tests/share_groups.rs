//! Share groups (KIP-932) over the raw protocol: members share a partition, every record is
//! delivered and accepted once, locks expire into redeliveries with higher delivery counts,
//! rejected records and records past the delivery limit are archived, share sessions check
//! their epochs, and after kill -9 no accepted record comes back and none is lost; a
//! `read_committed` group (`share.isolation.level`) gets committed records only.

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
    /// The member epoch the group gave on joining.
    member_epoch: i32,
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
        Member { conn, id: id.to_owned(), epoch: 0, member_epoch: r.member_epoch }
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
        let req = self.fetch_request(group, topic_id, acks, max_records, wait_ms);
        self.send_fetch(1, req)
    }

    /// ShareFetch v2 (Kafka 4.2) in acquire `mode` (0 batch-optimized, 1 record-limit), or,
    /// `renew`, a renew fetch: acknowledgements only, every data limit 0 (KIP-1222).
    fn fetch_v2(
        &mut self,
        group: &str,
        topic_id: uuid::Uuid,
        acks: &[(i64, i64, i8)],
        max_records: i32,
        mode: i8,
        renew: bool,
    ) -> Fetched {
        let req = self.fetch_request(group, topic_id, acks, max_records, 0);
        let req = req.with_share_acquire_mode(mode).with_is_renew_ack(renew);
        let req = if renew { req.with_min_bytes(0).with_max_bytes(0) } else { req };
        self.send_fetch(2, req)
    }

    /// ShareAcknowledge at `version` of `acks` on partition 0 (a v2 one says whether it
    /// renews): (error, the partition's error, the answered lock duration).
    fn acknowledge(
        &mut self,
        group: &str,
        topic_id: uuid::Uuid,
        acks: &[(i64, i64, i8)],
        version: i16,
    ) -> (i16, i16, i32) {
        use share_acknowledge_request::{
            AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch,
        };
        let batches = acks
            .iter()
            .map(|(first, last, t)| {
                AcknowledgementBatch::default()
                    .with_first_offset(*first)
                    .with_last_offset(*last)
                    .with_acknowledge_types(vec![*t])
            })
            .collect();
        let p = AcknowledgePartition::default()
            .with_partition_index(0)
            .with_acknowledgement_batches(batches);
        let t = AcknowledgeTopic::default().with_topic_id(topic_id).with_partitions(vec![p]);
        let renew = version >= 2 && acks.iter().any(|a| a.2 == 4);
        let req = ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(self.epoch)
            .with_is_renew_ack(renew)
            .with_topics(vec![t]);
        let body = RequestKind::ShareAcknowledge(req);
        let r = match self.conn.call(ApiKey::ShareAcknowledge, version, body) {
            ResponseKind::ShareAcknowledge(r) => r,
            other => panic!("unexpected {other:?}"),
        };
        if r.error_code == 0 {
            self.epoch += 1;
        }
        let partition = r.responses.first().and_then(|t| t.partitions.first());
        (r.error_code, partition.map_or(0, |p| p.error_code), r.acquisition_lock_timeout_ms)
    }

    fn fetch_request(
        &self,
        group: &str,
        topic_id: uuid::Uuid,
        acks: &[(i64, i64, i8)],
        max_records: i32,
        wait_ms: i32,
    ) -> ShareFetchRequest {
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
        ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(&self.id)))
            .with_share_session_epoch(self.epoch)
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(max_records)
            .with_batch_size(max_records)
            .with_topics(vec![t])
    }

    /// Sends `req` at `version`; what it acquired.
    fn send_fetch(&mut self, version: i16, req: ShareFetchRequest) -> Fetched {
        let r = match self.conn.call(ApiKey::ShareFetch, version, RequestKind::ShareFetch(req)) {
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

/// Member `member` joins share group `group`, takes records 0..=9 of partition 0 of topic `id`
/// and accepts them with its next fetch, which takes 10..=19: it holds those.
fn accept_first_ten(broker: &Broker, group: &str, member: &str, id: uuid::Uuid) -> Member {
    let mut m = Member::join(broker, group, member);
    let f = m.fetch(group, id, &[], 10, 2_000);
    assert_eq!(f.records.first().map(|r| r.0), Some(0));
    let f = m.fetch(group, id, &accept_all(&f.records), 10, 2_000);
    assert_eq!((f.ack_error, f.records.first().map(|r| r.0)), (0, Some(10)));
    m
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

/// A broker started with `args`, [`TOPIC`] holding ten records, and members a and b of
/// group "g": a has acquired all ten, so b's fetch finds none.
fn a_holds_ten_records(
    dir: &std::path::Path,
    args: &[&str],
) -> (Broker, uuid::Uuid, Member, Member) {
    let broker = broker(dir, args);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 10);
    let mut a = Member::join(&broker, "g", "a");
    let mut b = Member::join(&broker, "g", "b");
    let taken = a.fetch("g", topic_id, &[], 100, 1000);
    assert_eq!(taken.records.len(), 10);
    assert!(b.fetch("g", topic_id, &[], 100, 0).records.is_empty(), "a holds every record");
    (broker, topic_id, a, b)
}

#[test]
fn a_member_that_times_out_releases_its_records_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Ten-minute locks and a two-second session: only the release on the member's timeout
    // can hand its records over within the test.
    let args = [
        "--group-share-record-lock-duration-ms",
        "600000",
        "--group-share-session-timeout-ms",
        "2000",
        "--group-share-heartbeat-interval-ms",
        "500",
    ];
    let (broker, topic_id, _a, mut b) = a_holds_ten_records(dir.path(), &args);
    // a falls silent (its share session stays open); b keeps heartbeating and gets a's
    // records, with their delivery counts kept, once a is dropped from the group.
    let mut epoch = b.member_epoch;
    let again = common::poll("a's records after a timed out", || {
        let r = heartbeat(&mut b.conn, "g", "b", epoch);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        epoch = r.member_epoch;
        let f = b.fetch("g", topic_id, &[], 100, 100);
        (!f.records.is_empty()).then_some(f)
    });
    let got: Vec<(i64, i16)> = again.records.iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(got, (0..10).map(|o| (o, 2)).collect::<Vec<_>>());
    // b closes its share session: the records are free again for a third member.
    b.epoch = -1;
    let closed = b.fetch("g", topic_id, &[], 100, 0);
    assert_eq!(closed.error_code, 0);
    let mut c = Member::join(&broker, "g", "c");
    let third = c.fetch("g", topic_id, &[], 100, 0);
    let got: Vec<(i64, i16)> = third.records.iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(got, (0..10).map(|o| (o, 3)).collect::<Vec<_>>());
}

#[test]
fn a_member_whose_connection_closes_releases_its_records_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Ten-minute locks and sessions: only the release when a's connection closes (Kafka's
    // share session cache on a disconnect) can hand its records over within the test.
    let args = [
        "--group-share-record-lock-duration-ms",
        "600000",
        "--group-share-session-timeout-ms",
        "600000",
    ];
    let (_broker, topic_id, a, mut b) = a_holds_ten_records(dir.path(), &args);
    // a's connection goes away without closing its share session or leaving the group.
    drop(a);
    let again = common::poll("a's records after its connection closed", || {
        let f = b.fetch("g", topic_id, &[], 100, 100);
        (!f.records.is_empty()).then_some(f)
    });
    let got: Vec<(i64, i16)> = again.records.iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(got, (0..10).map(|o| (o, 2)).collect::<Vec<_>>());
}

#[test]
fn group_ids_of_other_types_are_refused_as_kafka_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    create_topic(&mut admin, TOPIC, 1);
    // A classic group that only commits offsets (a "simple" group).
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(0);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s(TOPIC)))
        .with_partitions(vec![p]);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("classic")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![t]);
    match admin.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)) {
        ResponseKind::OffsetCommit(r) => assert_eq!(r.topics[0].partitions[0].error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    // A KIP-848 consumer group.
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("consumer")))
        .with_member_id(s("c-1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
        .with_topic_partitions(Some(vec![]));
    let body = RequestKind::ConsumerGroupHeartbeat(join.clone());
    match admin.call(ApiKey::ConsumerGroupHeartbeat, 0, body) {
        ResponseKind::ConsumerGroupHeartbeat(r) => assert_eq!(r.error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    for id in ["classic", "consumer"] {
        let r = heartbeat(&mut admin, id, "m", 0);
        assert_eq!(r.error_code, E::GroupIdNotFound.code(), "{id}");
        let message = r.error_message.map(|m| m.to_string());
        assert_eq!(message.as_deref(), Some(format!("Group {id} is not a share group.").as_str()));
    }
    // And the other way round: a share group's id for a classic or consumer member.
    Member::join(&broker, "shared", "a");
    let body = RequestKind::ConsumerGroupHeartbeat(join.with_group_id(GroupId(s("shared"))));
    match admin.call(ApiKey::ConsumerGroupHeartbeat, 0, body) {
        ResponseKind::ConsumerGroupHeartbeat(r) => {
            assert_eq!(r.error_code, E::GroupIdNotFound.code());
            let message = r.error_message.map(|m| m.to_string());
            assert_eq!(message.as_deref(), Some("Group shared is not a consumer group."));
        }
        other => panic!("unexpected {other:?}"),
    }
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0"));
    let classic_join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("shared")))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol]);
    match admin.call(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(classic_join)) {
        ResponseKind::JoinGroup(r) => {
            assert_eq!(r.error_code, E::InconsistentGroupProtocol.code())
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// DescribeShareGroupOffsets of `partitions` of TOPIC: (partition, error, start offset).
fn start_offsets(conn: &mut Conn, group: &str, partitions: Vec<i32>) -> Vec<(i32, i16, i64)> {
    let t = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic::default()
        .with_topic_name(TopicName(s(TOPIC)))
        .with_partitions(partitions);
    let g = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]));
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
    let body = RequestKind::DescribeShareGroupOffsets(req);
    match conn.call(ApiKey::DescribeShareGroupOffsets, 0, body) {
        ResponseKind::DescribeShareGroupOffsets(r) => r.groups[0].topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.start_offset))
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn share_group_offsets_are_described_for_partitions_on_every_shard_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    // Four partitions over two shards.
    let topic_id = create_topic(&mut admin, TOPIC, 4);
    for p in 0..4 {
        let values: Vec<String> = (0..=p).map(|i| i.to_string()).collect();
        let records: Vec<(&[u8], &[u8])> =
            values.iter().map(|v| (b"k".as_slice(), v.as_bytes())).collect();
        assert_eq!(produce(&mut admin, TOPIC, p, common::batch(&records), -1).0, 0);
    }
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(heartbeat(&mut conn, "g", "a", 0).error_code, 0);
    // Fetch and accept everything of every partition (p holds p + 1 records).
    let mut epoch = 0;
    let mut pending: BTreeMap<i32, Vec<(i64, i64, i8)>> = BTreeMap::new();
    let mut taken: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut round = 0;
    let delivered =
        |taken: &BTreeMap<i32, BTreeSet<i64>>| -> usize { taken.values().map(BTreeSet::len).sum() };
    while delivered(&taken) < 10 || pending.values().any(|acks| !acks.is_empty()) {
        round += 1;
        assert!(round < 100, "records never all delivered: {taken:?}");
        let partitions = (0..4)
            .map(|p| {
                let acks = pending
                    .remove(&p)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(first, last, t)| {
                        share_fetch_request::AcknowledgementBatch::default()
                            .with_first_offset(first)
                            .with_last_offset(last)
                            .with_acknowledge_types(vec![t])
                    })
                    .collect();
                share_fetch_request::FetchPartition::default()
                    .with_partition_index(p)
                    .with_acknowledgement_batches(acks)
            })
            .collect();
        let t = share_fetch_request::FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(partitions);
        let req = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s("g"))))
            .with_member_id(Some(s("a")))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(200)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(100)
            .with_batch_size(100)
            .with_topics(vec![t]);
        let r = match conn.call(ApiKey::ShareFetch, 1, RequestKind::ShareFetch(req)) {
            ResponseKind::ShareFetch(r) => r,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(r.error_code, 0);
        epoch += 1;
        for p in r.responses.iter().flat_map(|t| &t.partitions) {
            assert_eq!((p.error_code, p.acknowledge_error_code), (0, 0));
            for a in &p.acquired_records {
                taken.entry(p.partition_index).or_default().extend(a.first_offset..=a.last_offset);
                let acks = pending.entry(p.partition_index).or_default();
                acks.push((a.first_offset, a.last_offset, 1));
            }
        }
    }
    // Every acknowledgement was sent and answered (the last round acquired nothing new).
    let expected: Vec<(i32, i16, i64)> = (0..4).map(|p| (p, 0, i64::from(p) + 1)).collect();
    assert_eq!(start_offsets(&mut admin, "g", (0..4).collect()), expected);
    drop((conn, admin));
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let after = common::poll("the share-group offsets after the restart", || {
        let got = start_offsets(&mut admin, "g", (0..4).collect());
        got.iter().all(|(_, code, _)| *code == 0).then_some(got)
    });
    assert_eq!(after, expected, "the stored start offsets, not loaded by any fetch yet");
}

/// IncrementalAlterConfigs SET of `configs` on GROUP `group`: the error code.
fn alter_group_configs(conn: &mut Conn, group: &str, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(name, value)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(name))
                .with_config_operation(0)
                .with_value(Some(s(value)))
        })
        .collect();
    let r = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(32)
        .with_resource_name(s(group))
        .with_configs(configs);
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![r]);
    let body = RequestKind::IncrementalAlterConfigs(req);
    match conn.call(ApiKey::IncrementalAlterConfigs, 1, body) {
        ResponseKind::IncrementalAlterConfigs(r) => r.responses[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// DescribeConfigs of GROUP `group`: name → (value, source).
fn group_configs(conn: &mut Conn, group: &str) -> BTreeMap<String, (String, i8)> {
    let r = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(32)
        .with_resource_name(s(group))
        .with_configuration_keys(None);
    let body =
        RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![r]));
    match conn.call(ApiKey::DescribeConfigs, 4, body) {
        ResponseKind::DescribeConfigs(r) => {
            assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
            r.results[0]
                .configs
                .iter()
                .map(|c| {
                    let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    (c.name.to_string(), (value, c.config_source))
                })
                .collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn group_configs_set_the_groups_timeouts_are_checked_and_survive_a_restart() {
    const GROUP_CONFIG: i8 = 8;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    create_topic(&mut admin, TOPIC, 1);
    let set = [("share.heartbeat.interval.ms", "2500"), ("share.session.timeout.ms", "30000")];
    assert_eq!(alter_group_configs(&mut admin, "sg", &set), 0);
    let set = [("consumer.heartbeat.interval.ms", "1500")];
    assert_eq!(alter_group_configs(&mut admin, "cg", &set), 0);
    // Out of the bounds, unknown, or an interval not below the session timeout.
    for bad in [
        ("share.record.lock.duration.ms", "999"),
        ("share.session.timeout.ms", "2000"),
        ("consumer.session.timeout.ms", "10"),
        ("share.auto.offset.reset", "sideways"),
        ("share.no.such.config", "1"),
    ] {
        assert_eq!(
            alter_group_configs(&mut admin, "sg", &[bad]),
            E::InvalidConfig.code(),
            "{bad:?}"
        );
    }
    let check = |admin: &mut Conn| {
        let sg = group_configs(admin, "sg");
        assert_eq!(sg["share.heartbeat.interval.ms"], ("2500".to_owned(), GROUP_CONFIG));
        assert_eq!(sg["share.session.timeout.ms"], ("30000".to_owned(), GROUP_CONFIG));
        assert_eq!(sg["share.auto.offset.reset"].0, "earliest", "the broker's value");
        assert_ne!(sg["share.auto.offset.reset"].1, GROUP_CONFIG);
        // The members are told the group's interval, not the broker's 5000.
        let r = heartbeat(admin, "sg", "m", 0);
        assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 2500));
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("cg")))
            .with_member_id(s("c-1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
            .with_topic_partitions(Some(vec![]));
        let body = RequestKind::ConsumerGroupHeartbeat(join);
        match admin.call(ApiKey::ConsumerGroupHeartbeat, 0, body) {
            ResponseKind::ConsumerGroupHeartbeat(r) => {
                assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 1500))
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    check(&mut admin);
    drop(admin);
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    check(&mut admin);
}

#[test]
fn a_groups_delivery_count_limit_and_lock_duration_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // The broker's own settings: ten-minute locks, five deliveries.
    let broker = broker(dir.path(), &["--group-share-record-lock-duration-ms", "600000"]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 1);
    let got = |f: &Fetched| f.records.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>();
    // share.delivery.count.limit 2: a record released at its second delivery is archived.
    assert_eq!(alter_group_configs(&mut admin, "dl", &[("share.delivery.count.limit", "2")]), 0);
    let mut m = Member::join(&broker, "dl", "m");
    assert_eq!(got(&m.fetch("dl", topic_id, &[], 10, 0)), vec![(0, 1)]);
    assert_eq!(got(&m.fetch("dl", topic_id, &[(0, 0, 2)], 10, 0)), vec![(0, 2)]);
    let third = m.fetch("dl", topic_id, &[(0, 0, 2)], 10, 0);
    assert_eq!((third.error_code, third.ack_error), (0, 0));
    assert_eq!(got(&third), vec![], "delivered past the group's limit");
    assert_eq!(start_offset(&mut admin, "dl"), 1);
    // share.record.lock.duration.ms 1000: a's lock runs out long before the broker's would.
    assert_eq!(
        alter_group_configs(&mut admin, "lk", &[("share.record.lock.duration.ms", "1000")]),
        0
    );
    let mut a = Member::join(&broker, "lk", "a");
    let mut b = Member::join(&broker, "lk", "b");
    assert_eq!(got(&a.fetch("lk", topic_id, &[], 10, 0)), vec![(0, 1)]);
    let again = common::poll("a's record after its one-second lock", || {
        let f = b.fetch("lk", topic_id, &[], 10, 500);
        (!f.records.is_empty()).then(|| got(&f))
    });
    assert_eq!(again, vec![(0, 2)]);
}

/// The offsets and values `f` acquired, data records only (a marker's value is no UTF-8
/// word: read_uncommitted groups get markers too, as today).
fn acquired(f: &Fetched) -> Vec<(i64, String)> {
    let word = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric()) && !v.is_empty();
    f.records.iter().filter(|r| word(&r.1)).map(|r| (r.0, r.1.clone())).collect()
}

fn pairs(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(o, v)| (*o, (*v).to_owned())).collect()
}

#[test]
fn read_committed_share_groups_get_only_committed_records_below_the_lso() {
    use common::txn;
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    assert_eq!(
        alter_group_configs(&mut admin, "rc", &[("share.isolation.level", "read_committed")]),
        0
    );
    assert_eq!(group_configs(&mut admin, "rc")["share.isolation.level"].0, "read_committed");
    assert_eq!(group_configs(&mut admin, "ru")["share.isolation.level"].0, "read_uncommitted");
    let bad = [("share.isolation.level", "serializable")];
    assert_eq!(alter_group_configs(&mut admin, "rc", &bad), E::InvalidConfig.code());

    // One producer: a committed transaction (0-1, marker 2), an aborted one (3-5, marker 6),
    // a record outside transactions (7), then an open transaction (8-9).
    let (error, pid, epoch) = txn::init(&mut admin, "tp");
    assert_eq!(error, 0);
    let mut sequence = 0;
    let mut transaction = |conn: &mut Conn, values: &[&[u8]]| {
        assert_eq!(txn::add(conn, "tp", (pid, epoch), &[(TOPIC, 0)]), [0]);
        let batch = common::transactional_batch(pid, epoch, sequence, values);
        assert_eq!(txn::produce(conn, "tp", TOPIC, 0, batch), 0);
        sequence += values.len() as i32;
    };
    transaction(&mut admin, &[b"c0", b"c1"]);
    assert_eq!(txn::end(&mut admin, "tp", (pid, epoch), true), 0);
    transaction(&mut admin, &[b"a0", b"a1", b"a2"]);
    assert_eq!(txn::end(&mut admin, "tp", (pid, epoch), false), 0);
    assert_eq!(produce(&mut admin, TOPIC, 0, common::batch(&[(b"k", b"p0")]), -1).0, 0);
    transaction(&mut admin, &[b"o0", b"o1"]);

    // read_committed: the committed records only; the aborted ones and the markers are
    // archived, so once 0, 1 and 7 are accepted the start offset is the LSO, 8.
    let mut rc = Member::join(&broker, "rc", "m");
    let first = rc.fetch("rc", topic_id, &[], 100, 0);
    assert_eq!(acquired(&first), pairs(&[(0, "c0"), (1, "c1"), (7, "p0")]));
    assert_eq!(first.records.len(), 3, "no marker is delivered");
    let nothing = rc.fetch("rc", topic_id, &accept_all(&first.records), 100, 0);
    assert_eq!((nothing.ack_error, nothing.records.len()), (0, 0), "nothing past the LSO");
    assert_eq!(start_offset(&mut admin, "rc"), 8);

    // read_uncommitted: everything up to the high watermark, the open transaction too.
    let mut ru = Member::join(&broker, "ru", "m");
    let all = ru.fetch("ru", topic_id, &[], 100, 0);
    let values: Vec<(i64, &str)> = vec![
        (0, "c0"),
        (1, "c1"),
        (3, "a0"),
        (4, "a1"),
        (5, "a2"),
        (7, "p0"),
        (8, "o0"),
        (9, "o1"),
    ];
    assert_eq!(acquired(&all), pairs(&values));

    // The open transaction commits: read_committed gets it (waking on the marker), and its
    // marker is archived too.
    assert_eq!(txn::end(&mut admin, "tp", (pid, epoch), true), 0);
    let rest = rc.fetch("rc", topic_id, &[], 100, 5_000);
    assert_eq!(acquired(&rest), pairs(&[(8, "o0"), (9, "o1")]));
    assert_eq!(rest.records.len(), 2);
    let done = rc.fetch("rc", topic_id, &accept_all(&rest.records), 100, 0);
    assert_eq!((done.ack_error, done.records.len()), (0, 0));
    assert_eq!(start_offset(&mut admin, "rc"), 11);
}

// ---- across brokers ------------------------------------------------------------------

/// The coordinator of group `group` (FindCoordinator v3), once one other than `dead`
/// answers.
fn group_coordinator(conn: &mut Conn, group: &str, dead: i32) -> i32 {
    common::poll("a group coordinator", || {
        let req = FindCoordinatorRequest::default().with_key(s(group)).with_key_type(0);
        match conn.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req)) {
            ResponseKind::FindCoordinator(r) => {
                (r.error_code == 0 && r.node_id.0 != dead).then_some(r.node_id.0)
            }
            other => panic!("unexpected {other:?}"),
        }
    })
}

/// The leader of partition 0 of `topic` and the topic's id, once it has a leader other
/// than `not`.
fn leader_of(conn: &mut Conn, topic: &str, not: i32) -> (i32, uuid::Uuid) {
    common::poll("a leader", || {
        let r = common::metadata(conn);
        let t = r.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
        let leader = t.partitions.iter().find(|p| p.partition_index == 0)?.leader_id.0;
        (leader >= 0 && leader != not).then_some((leader, t.topic_id))
    })
}

/// A share group whose `__share_group_state` partition for (`topic_id`, 0) is led by a
/// broker other than `leader`, that broker, and the state partition.
fn group_coordinated_elsewhere(
    conn: &mut Conn,
    topic_id: uuid::Uuid,
    leader: i32,
) -> (String, i32, i32) {
    let state = common::poll("the share state topic's leaders", || {
        let parts = common::layout(conn, "__share_group_state")?;
        parts.iter().all(|p| p.1 >= 0).then_some(parts)
    });
    let count = state.len() as i32;
    for i in 0..100 {
        let group = format!("sg-{i}");
        let key = strata::share::records::ShareKey { group: group.clone(), topic_id, partition: 0 };
        let at = strata::share::state_partition(&key, count);
        let state_leader = state[at as usize].1;
        if state_leader != leader {
            return (group, state_leader, at);
        }
    }
    panic!("every candidate group's state partition is led by broker {leader}")
}

/// A member of `group` that joined through its coordinator (asked of `leader`, never the
/// `dead` broker) and fetches from `leader`.
fn member_at(
    cluster: &mut common::Cluster,
    group: &str,
    id: &str,
    leader: i32,
    dead: i32,
) -> Member {
    let mut conn = Conn::connect(cluster.node(leader).addr);
    let r = common::poll("the member to join", || {
        let coordinator = group_coordinator(&mut conn, group, dead);
        let mut to_coordinator = Conn::connect(cluster.node(coordinator).addr);
        let r = heartbeat(&mut to_coordinator, group, id, 0);
        (r.error_code == 0).then_some(r)
    });
    Member { conn, id: id.to_owned(), epoch: 0, member_epoch: r.member_epoch }
}

/// A 3-broker cluster with `TOPIC` (1 partition, 3 replicas) holding 100 records, and a share
/// group whose share coordinator is not the partition's leader.
struct Spread {
    cluster: common::Cluster,
    topic_id: uuid::Uuid,
    group: String,
    /// The partition's leader.
    leader: i32,
    /// The leader of the group's `__share_group_state` partition.
    state_leader: i32,
    state_partition: i32,
}

fn spread(dir: &std::path::Path) -> Spread {
    let args = ["--shards", "1", "--share-auto-offset-reset", "earliest"];
    let mut cluster = common::Cluster::start(dir, 3, &args);
    let mut admin = Conn::connect(cluster.brokers[0].addr);
    assert_eq!(common::create(&mut admin, TOPIC, 1, 3), (0, None));
    let (leader, topic_id) = leader_of(&mut admin, TOPIC, -1);
    let (group, state_leader, state_partition) =
        group_coordinated_elsewhere(&mut admin, topic_id, leader);
    assert_ne!(state_leader, leader);
    let mut to_leader = Conn::connect(cluster.node(leader).addr);
    // Other brokers may learn the placement before the leader itself has applied it.
    common::poll("the leader to serve its partition", || {
        (common::fetch_one(&mut to_leader, TOPIC, 0, 0).error_code == 0).then_some(())
    });
    fill(&mut to_leader, 100);
    Spread { cluster, topic_id, group, leader, state_leader, state_partition }
}

#[test]
fn share_state_on_another_broker_survives_the_share_partition_leaders_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let Spread { mut cluster, topic_id, group, leader, state_leader, .. } = spread(dir.path());
    // FindCoordinator's share key type names the share coordinator, from any broker.
    let key = format!("{group}:{topic_id}:0");
    let mut any = Conn::connect(cluster.node(leader).addr);
    let req =
        FindCoordinatorRequest::default().with_key_type(2).with_coordinator_keys(vec![s(&key)]);
    match any.call(ApiKey::FindCoordinator, 6, RequestKind::FindCoordinator(req)) {
        ResponseKind::FindCoordinator(r) => {
            assert_eq!(
                (r.coordinators[0].error_code, r.coordinators[0].node_id.0),
                (0, state_leader)
            )
        }
        other => panic!("unexpected {other:?}"),
    }

    // Accept most records, release every third one at its first delivery (it comes back,
    // and is accepted then), and keep the last fetch's records acquired at the kill.
    let mut a = member_at(&mut cluster, &group, "a", leader, -1);
    let mut accepted: BTreeSet<i64> = BTreeSet::new();
    let mut released = 0;
    let mut pending: Vec<(i64, i64, i8)> = Vec::new();
    let mut held = Vec::new();
    while accepted.len() < 60 {
        let f = a.fetch(&group, topic_id, &pending, 10, 1000);
        assert_eq!((f.error_code, f.partition_error, f.ack_error), (0, 0, 0));
        // Acknowledgements answered without error are durable on the coordinator.
        for (first, last, t) in &pending {
            if *t == 1 {
                accepted.extend(*first..=*last);
            }
        }
        let release = |r: &&(i64, String, i16)| r.0 % 3 == 0 && r.2 == 1;
        let (back, keep): (Vec<_>, Vec<_>) = f.records.iter().partition(release);
        released += back.len();
        pending = ranges(back.iter().map(|r| r.0), 2);
        pending.extend(ranges(keep.iter().map(|r| r.0), 1));
        held = f.records;
    }
    assert!(released > 0, "some records were released");
    assert!(!held.is_empty(), "records acquired but not acknowledged at the kill");

    cluster.node(leader).kill9();
    let mut admin = Conn::connect(cluster.node(state_leader).addr);
    let (new_leader, _) = leader_of(&mut admin, TOPIC, leader);
    let mut b = member_at(&mut cluster, &group, "b", new_leader, leader);
    let mut after: BTreeMap<i64, i16> = BTreeMap::new();
    let mut pending: Vec<(i64, i64, i8)> = Vec::new();
    common::poll("the rest delivered by the new leader", || {
        let f = b.fetch(&group, topic_id, &pending, 50, 200);
        assert_eq!(f.error_code, 0);
        if f.partition_error != 0 {
            // The new leader may not serve yet: the same acknowledgements again.
            assert!(f.records.is_empty(), "records with error {}", f.partition_error);
            return None;
        }
        assert_eq!(f.ack_error, 0);
        for (offset, _, count) in &f.records {
            assert!(!accepted.contains(offset), "accepted record {offset} delivered again");
            assert!(after.insert(*offset, *count).is_none(), "{offset} delivered twice");
        }
        pending = accept_all(&f.records);
        (accepted.len() + after.len() >= 100).then_some(())
    });
    let rest: BTreeSet<i64> = (0..100).filter(|o| !accepted.contains(o)).collect();
    assert_eq!(after.keys().copied().collect::<BTreeSet<_>>(), rest, "exactly the unaccepted");
    for (offset, _, _) in &held {
        assert!(after.contains_key(offset), "in-flight record {offset} not redelivered");
    }
}

/// A state batch: (first offset, last offset, delivery state, delivery count).
type Run = (i64, i64, i8, i16);

/// ReadShareGroupState of (`group`, `topic_id`, 0) at `leader_epoch`: (error, state epoch,
/// start offset, batches).
fn read_state(
    conn: &mut Conn,
    group: &str,
    topic_id: uuid::Uuid,
    leader_epoch: i32,
) -> (i16, i32, i64, Vec<Run>) {
    use read_share_group_state_request::{PartitionData, ReadStateData};
    let p = PartitionData::default().with_partition(0).with_leader_epoch(leader_epoch);
    let t = ReadStateData::default().with_topic_id(topic_id).with_partitions(vec![p]);
    let req = ReadShareGroupStateRequest::default().with_group_id(s(group)).with_topics(vec![t]);
    let r = match conn.call(ApiKey::ReadShareGroupState, 0, RequestKind::ReadShareGroupState(req)) {
        ResponseKind::ReadShareGroupState(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    let p = &r.results[0].partitions[0];
    let batches = p
        .state_batches
        .iter()
        .map(|b| (b.first_offset, b.last_offset, b.delivery_state, b.delivery_count))
        .collect();
    (p.error_code, p.state_epoch, p.start_offset, batches)
}

/// WriteShareGroupState of (`group`, `topic_id`, 0): its error code.
fn write_state(
    conn: &mut Conn,
    group: &str,
    topic_id: uuid::Uuid,
    (state_epoch, leader_epoch, start): (i32, i32, i64),
    batches: &[Run],
) -> i16 {
    use write_share_group_state_request::{PartitionData, StateBatch, WriteStateData};
    let batches = batches
        .iter()
        .map(|(first, last, state, count)| {
            StateBatch::default()
                .with_first_offset(*first)
                .with_last_offset(*last)
                .with_delivery_state(*state)
                .with_delivery_count(*count)
        })
        .collect();
    let p = PartitionData::default()
        .with_partition(0)
        .with_state_epoch(state_epoch)
        .with_leader_epoch(leader_epoch)
        .with_start_offset(start)
        .with_state_batches(batches);
    let t = WriteStateData::default().with_topic_id(topic_id).with_partitions(vec![p]);
    let req = WriteShareGroupStateRequest::default().with_group_id(s(group)).with_topics(vec![t]);
    match conn.call(ApiKey::WriteShareGroupState, 0, RequestKind::WriteShareGroupState(req)) {
        ResponseKind::WriteShareGroupState(r) => r.results[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_share_coordinator_rpcs_merge_fence_and_refuse_malformed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    let id = uuid::Uuid::from_u128(42);
    // Unknown group and partition: no state, not an error (Kafka's "not initialized").
    assert_eq!(read_state(&mut conn, "nobody", id, 0), (0, 0, -1, vec![]));
    // A first write needs a start offset; malformed ones are refused.
    assert_eq!(write_state(&mut conn, "g", id, (0, 1, -1), &[]), E::InvalidRequest.code());
    assert_eq!(write_state(&mut conn, "", id, (0, 1, 0), &[]), E::InvalidRequest.code());
    let backwards = [(9, 5, 0, 1)];
    assert_eq!(write_state(&mut conn, "g", id, (0, 1, 0), &backwards), E::InvalidRequest.code());
    // Written, then merged: acknowledging 3..=4 keeps the rest of the stored run.
    assert_eq!(write_state(&mut conn, "g", id, (0, 1, 0), &[(0, 9, 0, 1)]), 0);
    assert_eq!(write_state(&mut conn, "g", id, (0, 1, -1), &[(3, 4, 2, 1)]), 0);
    let merged = vec![(0, 2, 0, 1), (3, 4, 2, 1), (5, 9, 0, 1)];
    assert_eq!(read_state(&mut conn, "g", id, 1), (0, 0, 0, merged.clone()));
    // A read by a newer leader fences the older one's writes and reads.
    assert_eq!(read_state(&mut conn, "g", id, 2), (0, 0, 0, merged));
    let fenced = E::FencedLeaderEpoch.code();
    assert_eq!(write_state(&mut conn, "g", id, (0, 1, 5), &[]), fenced);
    assert_eq!(read_state(&mut conn, "g", id, 1).0, fenced);
    // A newer state epoch starts afresh; an older one is fenced.
    assert_eq!(write_state(&mut conn, "g", id, (1, 2, 20), &[]), 0);
    assert_eq!(read_state(&mut conn, "g", id, 2), (0, 1, 20, vec![]));
    let stale = write_state(&mut conn, "g", id, (0, 2, 30), &[]);
    assert_eq!(stale, E::FencedStateEpoch.code());
}

#[test]
fn acknowledgements_follow_the_share_coordinator_to_its_new_leader_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let Spread { mut cluster, topic_id, group, leader, state_leader, state_partition } =
        spread(dir.path());
    let mut a = member_at(&mut cluster, &group, "a", leader, -1);
    let f = a.fetch(&group, topic_id, &[], 10, 1000);
    assert_eq!((f.error_code, f.partition_error, f.ack_error), (0, 0, 0));
    let mut pending = accept_all(&f.records);
    let mut delivered: BTreeSet<i64> = f.records.iter().map(|r| r.0).collect();

    cluster.node(state_leader).kill9();
    // Acknowledgements fail (COORDINATOR_NOT_AVAILABLE, after the persister's retries) until
    // the state partition has a new leader, then succeed again; none is lost meanwhile.
    common::poll("every record accepted through the new coordinator", || {
        let f = a.fetch(&group, topic_id, &pending, 10, 200);
        assert_eq!((f.error_code, f.partition_error), (0, 0));
        if f.ack_error != 0 {
            assert_eq!(f.ack_error, E::CoordinatorNotAvailable.code());
        }
        for (offset, _, _) in &f.records {
            assert!(delivered.insert(*offset), "{offset} delivered twice");
        }
        // Acknowledgements whose write failed are applied on the leader all the same (and
        // written with its next state): acknowledging them again would be INVALID_RECORD_STATE.
        pending = accept_all(&f.records);
        (delivered.len() == 100 && f.ack_error == 0 && pending.is_empty()).then_some(())
    });
    let mut admin = Conn::connect(cluster.node(leader).addr);
    let new_state_leader = common::poll("a new leader of the state partition", || {
        let parts = common::layout(&mut admin, "__share_group_state")?;
        let now = parts[state_partition as usize].1;
        (now >= 0 && now != state_leader).then_some(now)
    });
    let mut to_coordinator = Conn::connect(cluster.node(new_state_leader).addr);
    // Not a leader's read (-1): every record accepted, so the state starts past them all, at
    // the state epoch the member's join initialized it at (the group epoch).
    let state = read_state(&mut to_coordinator, &group, topic_id, -1);
    assert_eq!(state, (0, a.member_epoch, 100, vec![]));
}

/// InitializeShareGroupState of (`group`, `topic_id`, 0): its error code.
fn initialize_state(
    conn: &mut Conn,
    group: &str,
    topic_id: uuid::Uuid,
    state_epoch: i32,
    start: i64,
) -> i16 {
    use initialize_share_group_state_request::{InitializeStateData, PartitionData};
    let p = PartitionData::default()
        .with_partition(0)
        .with_state_epoch(state_epoch)
        .with_start_offset(start);
    let t = InitializeStateData::default().with_topic_id(topic_id).with_partitions(vec![p]);
    let req =
        InitializeShareGroupStateRequest::default().with_group_id(s(group)).with_topics(vec![t]);
    let body = RequestKind::InitializeShareGroupState(req);
    match conn.call(ApiKey::InitializeShareGroupState, 0, body) {
        ResponseKind::InitializeShareGroupState(r) => r.results[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// DeleteShareGroupState of (`group`, `topic_id`, 0): its error code.
fn delete_state(conn: &mut Conn, group: &str, topic_id: uuid::Uuid) -> i16 {
    use delete_share_group_state_request::{DeleteStateData, PartitionData};
    let p = PartitionData::default().with_partition(0);
    let t = DeleteStateData::default().with_topic_id(topic_id).with_partitions(vec![p]);
    let req = DeleteShareGroupStateRequest::default().with_group_id(s(group)).with_topics(vec![t]);
    let body = RequestKind::DeleteShareGroupState(req);
    match conn.call(ApiKey::DeleteShareGroupState, 0, body) {
        ResponseKind::DeleteShareGroupState(r) => r.results[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// ReadShareGroupStateSummary of (`group`, `topic_id`, 0) at `leader_epoch`: (error, state
/// epoch, leader epoch, start offset).
fn state_summary(
    conn: &mut Conn,
    group: &str,
    topic_id: uuid::Uuid,
    leader_epoch: i32,
) -> (i16, i32, i32, i64) {
    use read_share_group_state_summary_request::{PartitionData, ReadStateSummaryData};
    let p = PartitionData::default().with_partition(0).with_leader_epoch(leader_epoch);
    let t = ReadStateSummaryData::default().with_topic_id(topic_id).with_partitions(vec![p]);
    let req =
        ReadShareGroupStateSummaryRequest::default().with_group_id(s(group)).with_topics(vec![t]);
    let body = RequestKind::ReadShareGroupStateSummary(req);
    match conn.call(ApiKey::ReadShareGroupStateSummary, 0, body) {
        ResponseKind::ReadShareGroupStateSummary(r) => {
            let p = &r.results[0].partitions[0];
            (p.error_code, p.state_epoch, p.leader_epoch, p.start_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn state_is_initialized_summarized_fenced_and_deleted_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    let id = create_topic(&mut conn, TOPIC, 1);
    // Nothing stored: Kafka's "not initialized".
    assert_eq!(state_summary(&mut conn, "g", id, -1), (0, 0, -1, -1));
    // Initialized: a read and a summary show it; no leader has read it yet.
    assert_eq!(initialize_state(&mut conn, "g", id, 1, 5), 0);
    assert_eq!(read_state(&mut conn, "g", id, -1), (0, 1, 5, vec![]));
    assert_eq!(state_summary(&mut conn, "g", id, -1), (0, 1, -1, 5));
    // A leader's read records its epoch; the summary shows it and fences older leaders.
    assert_eq!(read_state(&mut conn, "g", id, 3), (0, 1, 5, vec![]));
    assert_eq!(state_summary(&mut conn, "g", id, -1), (0, 1, 3, 5));
    assert_eq!(state_summary(&mut conn, "g", id, 2).0, E::FencedLeaderEpoch.code());
    // An older state epoch is fenced; the same or a newer one replaces the state.
    assert_eq!(initialize_state(&mut conn, "g", id, 0, 9), E::FencedStateEpoch.code());
    assert_eq!(write_state(&mut conn, "g", id, (1, 3, 5), &[(5, 6, 2, 1)]), 0);
    assert_eq!(initialize_state(&mut conn, "g", id, 2, 8), 0);
    assert_eq!(read_state(&mut conn, "g", id, 3), (0, 2, 8, vec![]));
    // Malformed, or a partition that does not exist.
    assert_eq!(initialize_state(&mut conn, "g", id, 3, -2), E::InvalidRequest.code());
    let unknown = uuid::Uuid::from_u128(42);
    let code = initialize_state(&mut conn, "g", unknown, 1, 0);
    assert_eq!(code, E::UnknownTopicOrPartition.code());
    // Another group's state, to outlive the deletion below.
    assert_eq!(initialize_state(&mut conn, "h", id, 4, 7), 0);
    // Deleted: no state, and deleting nothing is no error.
    assert_eq!(delete_state(&mut conn, "g", id), 0);
    assert_eq!(read_state(&mut conn, "g", id, 3), (0, 0, -1, vec![]));
    assert_eq!(state_summary(&mut conn, "g", id, -1), (0, 0, -1, -1));
    assert_eq!(delete_state(&mut conn, "g", id), 0);
    assert_eq!(delete_state(&mut conn, "nobody", id), 0);
    // Still gone after a restart (the replay meets the tombstone); the other group's stays.
    drop(conn);
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    let after = common::poll("the share coordinator after the restart", || {
        let got = read_state(&mut conn, "g", id, -1);
        (got.0 == 0).then_some(got)
    });
    assert_eq!(after, (0, 0, -1, vec![]));
    assert_eq!(state_summary(&mut conn, "h", id, -1), (0, 4, -1, 7));
}

/// AlterShareGroupOffsets of TOPIC-0 to `start`: (error, partition error).
fn alter_offsets(conn: &mut Conn, group: &str, start: i64) -> (i16, i16) {
    use alter_share_group_offsets_request::*;
    let p = AlterShareGroupOffsetsRequestPartition::default()
        .with_partition_index(0)
        .with_start_offset(start);
    let t = AlterShareGroupOffsetsRequestTopic::default()
        .with_topic_name(TopicName(s(TOPIC)))
        .with_partitions(vec![p]);
    let req = AlterShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![t]);
    match conn.call(ApiKey::AlterShareGroupOffsets, 0, RequestKind::AlterShareGroupOffsets(req)) {
        ResponseKind::AlterShareGroupOffsets(r) => {
            let partition = r.responses.first().and_then(|t| t.partitions.first());
            (r.error_code, partition.map_or(-1, |p| p.error_code))
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// DeleteShareGroupOffsets of TOPIC: (error, topic error).
fn delete_offsets(conn: &mut Conn, group: &str) -> (i16, i16) {
    use delete_share_group_offsets_request::*;
    let t = DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(TopicName(s(TOPIC)));
    let req = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(vec![t]);
    let body = RequestKind::DeleteShareGroupOffsets(req);
    match conn.call(ApiKey::DeleteShareGroupOffsets, 0, body) {
        ResponseKind::DeleteShareGroupOffsets(r) => {
            (r.error_code, r.responses.first().map_or(-1, |t| t.error_code))
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The first offset one fetch of a new member `member` of `group` acquires.
fn first_fetched(broker: &Broker, group: &str, member: &str, topic_id: uuid::Uuid) -> i64 {
    let mut m = Member::join(broker, group, member);
    let f = m.fetch(group, topic_id, &[], 5, 2_000);
    assert_eq!((f.error_code, f.partition_error), (0, 0));
    let first = f.records.first().expect("records fetched").0;
    assert_eq!(heartbeat(&mut m.conn, group, member, -1).error_code, 0);
    first
}

#[test]
fn altered_offsets_are_where_fetches_start_and_deleted_offsets_leave_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 100);
    // A member takes and accepts 0..=9, holds 10..=19, then leaves.
    let mut m = accept_first_ten(&broker, "ga", "a", id);
    assert_eq!(start_offset(&mut admin, "ga"), 10);
    // Not while it is a member.
    assert_eq!(alter_offsets(&mut admin, "ga", 50).0, E::NonEmptyGroup.code());
    assert_eq!(heartbeat(&mut m.conn, "ga", "a", -1).error_code, 0);
    // Altered: the group epoch is bumped past the one a's leaving gave, and the state is
    // initialized at 50 with it as the state epoch (KAFKA-20910).
    assert_eq!(alter_offsets(&mut admin, "ga", 50), (0, 0));
    assert_eq!(start_offset(&mut admin, "ga"), 50);
    let (_, epoch, _) = describe_epoch(&mut admin, "ga");
    assert_eq!(epoch, m.member_epoch + 2);
    assert_eq!(state_summary(&mut admin, "ga", id, -1).1, epoch);
    assert_eq!(first_fetched(&broker, "ga", "b", id), 50);
    // Deleted: no state any more; the next member starts at share.auto.offset.reset.
    assert_eq!(delete_offsets(&mut admin, "ga"), (0, 0));
    assert_eq!(start_offset(&mut admin, "ga"), -1);
    assert_eq!(read_state(&mut admin, "ga", id, -1), (0, 0, -1, vec![]));
    assert_eq!(first_fetched(&broker, "ga", "c", id), 0);
    // A group never used: altering it initializes its state all the same.
    assert_eq!(alter_offsets(&mut admin, "fresh", 30), (0, 0));
    assert_eq!(start_offset(&mut admin, "fresh"), 30);
    assert_eq!(first_fetched(&broker, "fresh", "d", id), 30);
}

/// A share group coordinated by `leader` whose `__share_group_state` partition for
/// (`topic_id`, 0) another broker leads, and that broker.
fn group_here_state_elsewhere(conn: &mut Conn, topic_id: uuid::Uuid, leader: i32) -> (String, i32) {
    let state = common::poll("the share state topic's leaders", || {
        let parts = common::layout(conn, "__share_group_state")?;
        parts.iter().all(|p| p.1 >= 0).then_some(parts)
    });
    let count = state.len() as i32;
    for i in 0..500 {
        let group = format!("here-{i}");
        let key = strata::share::records::ShareKey { group: group.clone(), topic_id, partition: 0 };
        let state_leader = state[strata::share::state_partition(&key, count) as usize].1;
        if state_leader != leader && group_coordinator(conn, &group, -1) == leader {
            return (group, state_leader);
        }
    }
    panic!("no candidate group is coordinated by {leader} with its state elsewhere")
}

#[test]
fn offsets_are_altered_described_and_deleted_through_a_share_coordinator_on_another_broker() {
    let dir = tempfile::tempdir().unwrap();
    let Spread { mut cluster, topic_id, leader, .. } = spread(dir.path());
    let mut at_leader = Conn::connect(cluster.node(leader).addr);
    let (group, state_leader) = group_here_state_elsewhere(&mut at_leader, topic_id, leader);
    let mut at_coordinator = Conn::connect(cluster.node(state_leader).addr);
    // The state APIs are served by the share coordinator only.
    let code = initialize_state(&mut at_leader, &group, topic_id, 1, 5);
    assert_eq!(code, E::NotCoordinator.code());
    assert_eq!(state_summary(&mut at_leader, &group, topic_id, -1).0, E::NotCoordinator.code());
    assert_eq!(delete_state(&mut at_leader, &group, topic_id), E::NotCoordinator.code());
    // Altered on the partition's leader: initialized on the other broker, at state epoch 1.
    assert_eq!(alter_offsets(&mut at_leader, &group, 40), (0, 0));
    assert_eq!(state_summary(&mut at_coordinator, &group, topic_id, -1), (0, 1, -1, 40));
    assert_eq!(start_offset(&mut at_leader, &group), 40);
    assert_eq!(alter_offsets(&mut at_leader, &group, 45), (0, 0));
    assert_eq!(state_summary(&mut at_coordinator, &group, topic_id, -1), (0, 2, -1, 45));
    // Deleted there too.
    assert_eq!(delete_offsets(&mut at_leader, &group), (0, 0));
    assert_eq!(state_summary(&mut at_coordinator, &group, topic_id, -1), (0, 0, -1, -1));
    assert_eq!(start_offset(&mut at_leader, &group), -1);
}

/// DeleteGroups of `group`: its error code.
fn delete_group(conn: &mut Conn, group: &str) -> i16 {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    match conn.call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(req)) {
        ResponseKind::DeleteGroups(r) => r.results[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn deleting_an_empty_share_group_deletes_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 50);
    let mut m = accept_first_ten(&broker, "gd", "a", id);
    assert_eq!(read_state(&mut admin, "gd", id, -1).2, 10);
    assert_eq!(delete_group(&mut admin, "gd"), E::NonEmptyGroup.code());
    assert_eq!(heartbeat(&mut m.conn, "gd", "a", -1).error_code, 0);
    assert_eq!(delete_group(&mut admin, "gd"), 0);
    assert_eq!(read_state(&mut admin, "gd", id, -1), (0, 0, -1, vec![]));
    assert_eq!(start_offset(&mut admin, "gd"), -1);
    assert_eq!(delete_group(&mut admin, "gd"), E::GroupIdNotFound.code());
    // A new group of that id starts at share.auto.offset.reset.
    assert_eq!(first_fetched(&broker, "gd", "b", id), 0);
}

/// DescribeShareGroupOffsets of every topic of `group` (null topics): (topic, partition,
/// error, start offset) of each partition listed.
fn all_start_offsets(conn: &mut Conn, group: &str) -> Vec<(String, i32, i16, i64)> {
    let g = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
    let body = RequestKind::DescribeShareGroupOffsets(req);
    match conn.call(ApiKey::DescribeShareGroupOffsets, 0, body) {
        ResponseKind::DescribeShareGroupOffsets(r) => {
            assert_eq!(r.groups[0].error_code, 0);
            let topics = r.groups[0].topics.iter();
            let rows = topics.flat_map(|t| {
                let name = t.topic_name.0.to_string();
                t.partitions
                    .iter()
                    .map(move |p| (name.clone(), p.partition_index, p.error_code, p.start_offset))
            });
            rows.collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn joining_initializes_the_share_partitions_and_the_group_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let id = create_topic(&mut admin, TOPIC, 1);
    // Joining initializes the partition (InitializeShareGroupState: state epoch = the group
    // epoch, no start offset yet) before the member gets it; describe lists it.
    let mut conn = Conn::connect(broker.addr);
    let r = heartbeat(&mut conn, "gi", "a", 0);
    assert_eq!(r.error_code, 0);
    assert_eq!(state_summary(&mut admin, "gi", id, -1), (0, r.member_epoch, -1, -1));
    assert_eq!(all_start_offsets(&mut admin, "gi"), vec![(TOPIC.to_owned(), 0, 0, -1)]);
    // A second member finds it initialized: the state epoch stays.
    let r2 = heartbeat(&mut Conn::connect(broker.addr), "gi", "b", 0);
    assert_eq!(r2.error_code, 0);
    assert_eq!(state_summary(&mut admin, "gi", id, -1).1, r.member_epoch);
    // The record survives a restart: the group, empty now, still lists the partition.
    drop(conn);
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let listed = common::poll("the group's initialized partitions after the restart", || {
        let listed = all_start_offsets(&mut admin, "gi");
        (!listed.is_empty()).then_some(listed)
    });
    assert_eq!(listed, vec![(TOPIC.to_owned(), 0, 0, -1)]);
    // Deleting the topic's offsets drops it from the record (and the state).
    assert_eq!(delete_offsets(&mut admin, "gi"), (0, 0));
    assert_eq!(all_start_offsets(&mut admin, "gi"), vec![]);
    assert_eq!(state_summary(&mut admin, "gi", id, -1), (0, 0, -1, -1));
    // Altering records it again.
    assert_eq!(alter_offsets(&mut admin, "gi", 3), (0, 0));
    assert_eq!(all_start_offsets(&mut admin, "gi"), vec![(TOPIC.to_owned(), 0, 0, 3)]);
}

#[test]
fn a_share_group_deleted_after_a_restart_takes_its_state_along_and_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 50);
    // A member takes and accepts 0..=9, then leaves.
    let mut m = accept_first_ten(&broker, "gr", "a", id);
    assert_eq!(heartbeat(&mut m.conn, "gr", "a", -1).error_code, 0);
    drop((m, admin));
    // After a restart no shard holds the share-partition and the group has no members in
    // memory: the group's record still names what it initialized.
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let settled = [E::CoordinatorLoadInProgress.code(), E::CoordinatorNotAvailable.code()];
    let code = common::poll("DeleteGroups after the restart", || {
        let code = delete_group(&mut admin, "gr");
        (!settled.contains(&code)).then_some(code)
    });
    assert_eq!(code, 0);
    assert_eq!(read_state(&mut admin, "gr", id, -1), (0, 0, -1, vec![]));
    assert_eq!(all_start_offsets(&mut admin, "gr"), vec![]);
    assert_eq!(delete_group(&mut admin, "gr"), E::GroupIdNotFound.code());
    // A group recreated with that id starts at share.auto.offset.reset, not at 10.
    assert_eq!(first_fetched(&broker, "gr", "b", id), 0);
    // Still so after another restart (the tombstone of the record replays too): the
    // recreated group's partition is listed, not started (-1), or started at 0 if b's
    // released records were written before the stop, never at the old 10.
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let listed = common::poll("the recreated group's partitions after the restart", || {
        let listed = all_start_offsets(&mut admin, "gr");
        (!listed.is_empty()).then_some(listed)
    });
    assert_eq!(listed.len(), 1);
    let (topic, partition, code, start) = listed[0].clone();
    assert_eq!((topic.as_str(), partition, code), (TOPIC, 0, 0));
    assert!(start == -1 || start == 0, "the recreated group starts over, not at {start}");
}

#[test]
fn a_share_group_whose_topic_was_deleted_is_deleted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    create_topic(&mut admin, TOPIC, 1);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(heartbeat(&mut conn, "gt", "a", 0).error_code, 0);
    assert_eq!(all_start_offsets(&mut admin, "gt"), vec![(TOPIC.to_owned(), 0, 0, -1)]);
    assert_eq!(heartbeat(&mut conn, "gt", "a", -1).error_code, 0);
    assert_eq!(delete_topic(&mut admin, TOPIC), 0);
    // Whether or not the record still names the deleted topic's id, deleting the group
    // drops it all.
    assert_eq!(delete_group(&mut admin, "gt"), 0);
    assert_eq!(delete_group(&mut admin, "gt"), E::GroupIdNotFound.code());
}

/// Offset and delivery count of each acquired record of `f`.
fn counted(f: &Fetched) -> Vec<(i64, i16)> {
    f.records.iter().map(|r| (r.0, r.2)).collect()
}

/// KIP-1222: a member that renews its records keeps them past the lock duration they were
/// acquired with (its other records, acquired with them, come back to another member when
/// that lock runs out: the proof that it did), at the delivery count they had; only the
/// member holding a record may renew it.
#[test]
fn renewed_records_stay_with_their_member_past_the_lock_duration() {
    let dir = tempfile::tempdir().unwrap();
    // Three-second locks: a renews many times as often.
    let broker = broker(dir.path(), &["--group-share-record-lock-duration-ms", "3000"]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 10);
    let mut a = Member::join(&broker, "g", "a");
    let mut b = Member::join(&broker, "g", "b");
    let first = a.fetch("g", topic_id, &[], 10, 1000);
    assert_eq!(counted(&first), (0..10).map(|o| (o, 1)).collect::<Vec<_>>());
    // b's session, then b's renew of a's records: INVALID_RECORD_STATE.
    assert!(b.fetch("g", topic_id, &[], 10, 0).records.is_empty());
    let (code, partition, lock_ms) = b.acknowledge("g", topic_id, &[(0, 4, 4)], 2);
    assert_eq!((code, partition), (0, E::InvalidRecordState.code()));
    assert_eq!(lock_ms, 3000, "ShareAcknowledge v2 answers the lock duration");
    // a renews 0-4 with a renew fetch (which acquires nothing), then ShareAcknowledge v2
    // until b gets 5-9, acquired with 0-4 and never renewed.
    let renewed = a.fetch_v2("g", topic_id, &[(0, 4, 4)], 0, 0, true);
    assert_eq!((renewed.error_code, renewed.ack_error), (0, 0));
    assert!(renewed.records.is_empty(), "a renew fetch acquired {:?}", renewed.records);
    let mut to_b = Vec::new();
    common::poll("a's records not renewed, redelivered to b", || {
        let (code, partition, _) = a.acknowledge("g", topic_id, &[(0, 4, 4)], 2);
        assert_eq!((code, partition), (0, 0), "a renew refused: a's lock ran out");
        let f = b.fetch("g", topic_id, &[], 10, 100);
        to_b.extend(counted(&f));
        (to_b.len() >= 5).then_some(())
    });
    assert_eq!(to_b, (5..10).map(|o| (o, 2)).collect::<Vec<_>>(), "renewed ones went to b");
    // Still a's, at their first delivery: released, they come back at the second.
    assert_eq!(a.acknowledge("g", topic_id, &[(0, 4, 2)], 2), (0, 0, 3000));
    let again = common::poll("a's released records", || {
        let f = b.fetch("g", topic_id, &[], 10, 100);
        (!f.records.is_empty()).then(|| counted(&f))
    });
    assert_eq!(again, (0..5).map(|o| (o, 2)).collect::<Vec<_>>(), "renews counted as deliveries");
}

/// KIP-1206 and the v2 checks: a record-limit fetch acquires `max_records` records of a
/// larger batch and no more; an unknown acquire mode, or a renew fetch that asks for data, is
/// INVALID_REQUEST; a v1 request carrying a Renew is INVALID_REQUEST for its partition, and
/// leaves the records as they were.
#[test]
fn record_limit_fetches_acquire_at_most_max_records_and_v1_knows_no_renew() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 20);
    let mut a = Member::join(&broker, "g", "a");
    let invalid = E::InvalidRequest.code();
    assert_eq!(a.fetch_v2("g", topic_id, &[], 5, 7, false).error_code, invalid);
    let asks_data = a.fetch_request("g", topic_id, &[], 5, 0).with_is_renew_ack(true);
    assert_eq!(a.send_fetch(2, asks_data).error_code, invalid);
    // One batch of 20 records: 3, then 4 of them.
    let f = a.fetch_v2("g", topic_id, &[], 3, 1, false);
    assert_eq!(counted(&f), vec![(0, 1), (1, 1), (2, 1)]);
    let f = a.fetch_v2("g", topic_id, &[], 4, 1, false);
    assert_eq!(counted(&f), (3..7).map(|o| (o, 1)).collect::<Vec<_>>());
    // Renew in v1: refused, in ShareAcknowledge and in ShareFetch alike.
    assert_eq!(a.acknowledge("g", topic_id, &[(0, 2, 4)], 1), (0, invalid, 0));
    let f = a.fetch("g", topic_id, &[(0, 2, 4)], 1, 0);
    assert_eq!((f.error_code, f.ack_error), (0, invalid));
    assert_eq!(counted(&f), vec![(7, 1)]);
    // Nothing of it applied: 0-7 are still a's to accept.
    assert_eq!(a.acknowledge("g", topic_id, &[(0, 7, 1)], 1), (0, 0, 0));
    assert_eq!(start_offset(&mut admin, "g"), 8);
}

/// DeleteTopics of `topic`: its error code.
fn delete_topic(conn: &mut Conn, topic: &str) -> i16 {
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s(topic))])
        .with_timeout_ms(5000);
    match conn.call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(req)) {
        ResponseKind::DeleteTopics(r) => r.responses[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_deleted_topics_share_state_goes_and_the_topic_created_again_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let old = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 50);
    // A member takes and accepts 0..=9 and leaves: the share-partition starts at 10.
    let mut m = accept_first_ten(&broker, "gx", "a", old);
    assert_eq!(read_state(&mut admin, "gx", old, -1).2, 10);
    assert_eq!(heartbeat(&mut m.conn, "gx", "a", -1).error_code, 0);
    drop(m);
    // Deleting the topic deletes its share state and drops it from the group's record.
    assert_eq!(delete_topic(&mut admin, TOPIC), 0);
    broker.wait_for_log("share state of deleted topics deleted");
    assert_eq!(read_state(&mut admin, "gx", old, -1), (0, 0, -1, vec![]));
    // The topic created again under its name (a new id) starts at share.auto.offset.reset
    // (earliest), not at the old 10.
    let new = create_topic(&mut admin, TOPIC, 1);
    assert_ne!(new, old);
    fill(&mut admin, 50);
    assert_eq!(all_start_offsets(&mut admin, "gx"), vec![]);
    let mut m = accept_first_ten(&broker, "gx", "b", new);
    assert_eq!(heartbeat(&mut m.conn, "gx", "b", -1).error_code, 0);
    drop(m);
    // After a restart the old state stays gone and the new topic's is where b left it.
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let listed = common::poll("the group's partitions after the restart", || {
        let listed = all_start_offsets(&mut admin, "gx");
        (!listed.is_empty()).then_some(listed)
    });
    assert_eq!(listed, vec![(TOPIC.to_owned(), 0, 0, 10)]);
    assert_eq!(read_state(&mut admin, "gx", old, -1), (0, 0, -1, vec![]));
    assert_eq!(first_fetched(&broker, "gx", "c", new), 10);
}

/// ShareGroupDescribe of `group`: (error, group epoch, members).
fn describe_epoch(conn: &mut Conn, group: &str) -> (i16, i32, usize) {
    let req = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    match conn.call(ApiKey::ShareGroupDescribe, 1, RequestKind::ShareGroupDescribe(req)) {
        ResponseKind::ShareGroupDescribe(r) => {
            let g = &r.groups[0];
            (g.error_code, g.group_epoch, g.members.len())
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// [`describe_epoch`] once the coordinator has loaded `group` after a restart.
fn described_after_restart(conn: &mut Conn, group: &str) -> (i16, i32, usize) {
    let loading = [E::CoordinatorLoadInProgress.code(), E::CoordinatorNotAvailable.code()];
    common::poll("the share group described after the restart", || {
        let described = describe_epoch(conn, group);
        (!loading.contains(&described.0) && described.0 != E::GroupIdNotFound.code())
            .then_some(described)
    })
}

#[test]
fn the_group_epoch_survives_a_restart_and_altering_offsets_bumps_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &[]);
    let mut admin = Conn::connect(broker.addr);
    let id = create_topic(&mut admin, TOPIC, 1);
    // Two members join and leave: each change bumps the group epoch.
    let (mut a, mut b) = (Conn::connect(broker.addr), Conn::connect(broker.addr));
    let joined = heartbeat(&mut a, "ge", "a", 0).member_epoch;
    assert!(heartbeat(&mut b, "ge", "b", 0).member_epoch > joined);
    assert_eq!(heartbeat(&mut a, "ge", "a", -1).error_code, 0);
    assert_eq!(heartbeat(&mut b, "ge", "b", -1).error_code, 0);
    let (code, epoch, members) = describe_epoch(&mut admin, "ge");
    assert_eq!((code, members), (0, 0));
    assert!(epoch > joined, "leaving bumps the epoch");
    // After a restart the empty group is described at the same epoch (ShareGroupMetadata),
    // and a new member carries on from it.
    drop((a, b, admin));
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    assert_eq!(described_after_restart(&mut admin, "ge"), (0, epoch, 0));
    let mut c = Conn::connect(broker.addr);
    let rejoined = heartbeat(&mut c, "ge", "c", 0);
    assert_eq!(rejoined.error_code, 0);
    assert!(rejoined.member_epoch > epoch, "{} after {epoch}", rejoined.member_epoch);
    assert_eq!(heartbeat(&mut c, "ge", "c", -1).error_code, 0);
    let left = describe_epoch(&mut admin, "ge").1;
    assert!(left > rejoined.member_epoch);
    // AlterShareGroupOffsets bumps the epoch and initializes the state at it (KAFKA-20910).
    assert_eq!(alter_offsets(&mut admin, "ge", 3), (0, 0));
    assert_eq!(describe_epoch(&mut admin, "ge"), (0, left + 1, 0));
    assert_eq!(state_summary(&mut admin, "ge", id, -1), (0, left + 1, -1, 3));
    assert_eq!(all_start_offsets(&mut admin, "ge"), vec![(TOPIC.to_owned(), 0, 0, 3)]);
    // Refused while the group has members: the epoch stays.
    let mut d = Conn::connect(broker.addr);
    let joined = heartbeat(&mut d, "ge", "d", 0).member_epoch;
    assert!(joined > left + 1);
    assert_eq!(alter_offsets(&mut admin, "ge", 5).0, E::NonEmptyGroup.code());
    assert_eq!(describe_epoch(&mut admin, "ge"), (0, joined, 1));
    assert_eq!(heartbeat(&mut d, "ge", "d", -1).error_code, 0);
    // Deleting the group deletes the record: after a restart the id is unknown.
    assert_eq!(delete_group(&mut admin, "ge"), 0);
    drop((c, d, admin));
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let settled = [E::CoordinatorLoadInProgress.code(), E::CoordinatorNotAvailable.code()];
    let code = common::poll("DeleteGroups after the restart", || {
        let code = delete_group(&mut admin, "ge");
        (!settled.contains(&code)).then_some(code)
    });
    assert_eq!(code, E::GroupIdNotFound.code());
}

/// DescribeShareGroupOffsets of TOPIC-0 at `version`: (error, start offset, lag; v0 has no
/// lag, so it decodes as -1).
fn offsets_lag(conn: &mut Conn, group: &str, version: i16) -> (i16, i64, i64) {
    use describe_share_group_offsets_request::*;
    let t = DescribeShareGroupOffsetsRequestTopic::default()
        .with_topic_name(TopicName(s(TOPIC)))
        .with_partitions(vec![0]);
    let g = DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]));
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
    let body = RequestKind::DescribeShareGroupOffsets(req);
    match conn.call(ApiKey::DescribeShareGroupOffsets, version, body) {
        ResponseKind::DescribeShareGroupOffsets(r) => {
            let p = &r.groups[0].topics[0].partitions[0];
            (p.error_code, p.start_offset, p.lag)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// ReadShareGroupStateSummary v1 of TOPIC-0: (error, start offset, delivery-complete count).
fn delivery_complete(conn: &mut Conn, group: &str, topic_id: uuid::Uuid) -> (i16, i64, i32) {
    use read_share_group_state_summary_request::{PartitionData, ReadStateSummaryData};
    let p = PartitionData::default().with_partition(0).with_leader_epoch(-1);
    let t = ReadStateSummaryData::default().with_topic_id(topic_id).with_partitions(vec![p]);
    let req =
        ReadShareGroupStateSummaryRequest::default().with_group_id(s(group)).with_topics(vec![t]);
    let body = RequestKind::ReadShareGroupStateSummary(req);
    match conn.call(ApiKey::ReadShareGroupStateSummary, 1, body) {
        ResponseKind::ReadShareGroupStateSummary(r) => {
            let p = &r.results[0].partitions[0];
            (p.error_code, p.start_offset, p.delivery_complete_count)
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// KIP-1226: the lag is the high watermark less the start offset less the records at or past
/// it whose delivery is complete (acknowledged or archived), from the share-partition a shard
/// holds and, after a restart, from the stored state; v0 answers stay as they were.
#[test]
fn the_lag_is_what_is_not_delivery_complete_up_to_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path(), &["--group-share-record-lock-duration-ms", "60000"]);
    let mut admin = Conn::connect(broker.addr);
    let topic_id = create_topic(&mut admin, TOPIC, 1);
    fill(&mut admin, 10);
    let mut a = Member::join(&broker, "g", "a");
    assert_eq!(a.fetch("g", topic_id, &[], 100, 1000).records.len(), 10);
    // Accept 0-1 (the start offset moves to 2) and 4, reject 6-7, release 8-9: 3 records at
    // or past the start offset are delivery-complete, 2, 3 and 5 stay acquired.
    let acks = [(0, 1, 1), (4, 4, 1), (6, 7, 3), (8, 9, 2)];
    let (code, partition_code, _) = a.acknowledge("g", topic_id, &acks, 1);
    assert_eq!((code, partition_code), (0, 0));
    assert_eq!(offsets_lag(&mut admin, "g", 1), (0, 2, 10 - 2 - 3));
    assert_eq!(delivery_complete(&mut admin, "g", topic_id), (0, 2, 3));
    // v0: no lag, no count; the rest as before.
    assert_eq!(offsets_lag(&mut admin, "g", 0), (0, 2, -1));
    let summary_v0 = state_summary(&mut admin, "g", topic_id, -1);
    assert_eq!((summary_v0.0, summary_v0.3), (0, 2));
    // New records add to the lag.
    fill(&mut admin, 5);
    assert_eq!(offsets_lag(&mut admin, "g", 1), (0, 2, 15 - 2 - 3));
    // After a restart no shard holds the share-partition: the stored state says the same.
    drop(a);
    drop(admin);
    broker.stop();
    broker.restart();
    let mut admin = Conn::connect(broker.addr);
    let after = common::poll("the share-partition's stored state", || {
        let got = offsets_lag(&mut admin, "g", 1);
        (got.0 == 0 && got.1 >= 0).then_some(got)
    });
    assert_eq!(after, (0, 2, 10));
    assert_eq!(delivery_complete(&mut admin, "g", topic_id), (0, 2, 3));
    // Everything accepted: no lag.
    let mut b = Member::join(&broker, "g", "b");
    let f = b.fetch("g", topic_id, &[], 100, 1000);
    let offsets: Vec<i64> = f.records.iter().map(|r| r.0).collect();
    assert_eq!(offsets, [2, 3, 5, 8, 9, 10, 11, 12, 13, 14]);
    let (code, partition_code, _) = b.acknowledge("g", topic_id, &accept_all(&f.records), 1);
    assert_eq!((code, partition_code), (0, 0));
    assert_eq!(offsets_lag(&mut admin, "g", 1), (0, 15, 0));
    assert_eq!(delivery_complete(&mut admin, "g", topic_id), (0, 15, 0));
}
