//! KIP-848 consumer groups over the raw protocol: ConsumerGroupHeartbeat's error codes (bad
//! first heartbeats, fenced and unknown members, static members, the group size limit, a
//! classic group in the way), OffsetCommit/OffsetFetch with member epochs, DescribeGroups,
//! ListGroups and DeleteGroups of a consumer group, and the group's state across a restart;
//! online migration: a classic group converted when a consumer-protocol member joins (its
//! classic member answered from the consumer group, REBALANCE_IN_PROGRESS on its heartbeat,
//! incremental hand-over), across a restart, and back when the consumer member leaves; the
//! refusals (`group.consumer.migration.policy`, a classic group of another protocol type);
//! a classic member that answers JoinGroup but never syncs leaves at its rebalance timeout,
//! one that falls silent after syncing at its session timeout.

mod common;

use common::{create_topic, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn broker(dir: &std::path::Path) -> Broker {
    let args = ["--shards", "2", "--offsets-topic-partitions", "4"];
    Broker::start(dir, &[&args[..], &["--group-consumer-max-size", "3"]].concat())
}

fn first(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName(s(t))).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

fn beat(conn: &mut Conn, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    let body = RequestKind::ConsumerGroupHeartbeat(req);
    match conn.call(ApiKey::ConsumerGroupHeartbeat, 1, body) {
        ResponseKind::ConsumerGroupHeartbeat(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn owned(r: &ConsumerGroupHeartbeatResponse) -> Vec<TopicPartitions> {
    let a = r.assignment.as_ref().expect("an assignment");
    a.topic_partitions
        .iter()
        .map(|t| {
            TopicPartitions::default()
                .with_topic_id(t.topic_id)
                .with_partitions(t.partitions.clone())
        })
        .collect()
}

fn again(group: &str, member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
}

fn commit(conn: &mut Conn, group: &str, member: &str, epoch: i32, topic: &str) -> i16 {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(42);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(epoch)
        .with_member_id(s(member))
        .with_topics(vec![t]);
    match conn.call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(req)) {
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn fetch(conn: &mut Conn, group: &str, member: Option<&str>, epoch: i32) -> (i16, i64) {
    let t = offset_fetch_request::OffsetFetchRequestTopics::default()
        .with_name(TopicName(s("t")))
        .with_partition_indexes(vec![0]);
    let g = offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(member.map(s))
        .with_member_epoch(epoch)
        .with_topics(Some(vec![t]));
    let req = OffsetFetchRequest::default().with_groups(vec![g]);
    match conn.call(ApiKey::OffsetFetch, 9, RequestKind::OffsetFetch(req)) {
        ResponseKind::OffsetFetch(r) => {
            let g = &r.groups[0];
            let offset = g.topics.first().map_or(-1, |t| t.partitions[0].committed_offset);
            (g.error_code, offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn describe(conn: &mut Conn, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    match conn.call(ApiKey::ConsumerGroupDescribe, 1, RequestKind::ConsumerGroupDescribe(req)) {
        ResponseKind::ConsumerGroupDescribe(mut r) => r.groups.remove(0),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_first_heartbeats_get_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 2);
    let cases = [
        first("g", "", &["t"]),
        first("g", "m", &["t"]).with_rebalance_timeout_ms(-1),
        first("g", "m", &["t"]).with_topic_partitions(None),
        first("g", "m", &["t"]).with_subscribed_topic_names(None),
        first("g", "m", &["t"]).with_instance_id(Some(s(""))),
        again("g", "m", -3),
        again("g", "m", -2),
    ];
    for req in cases {
        let r = beat(&mut conn, req.clone());
        assert_eq!(r.error_code, E::InvalidRequest.code(), "{req:?}");
        assert!(r.error_message.is_some());
    }
    let r = beat(&mut conn, first("g", "m", &["t"]).with_server_assignor(Some(s("sticky"))));
    assert_eq!(r.error_code, E::UnsupportedAssignor.code());
    let r = beat(&mut conn, first("g", "m", &[]).with_subscribed_topic_regex(Some(s("("))));
    assert_eq!(r.error_code, E::InvalidRegularExpression.code());
    // v0 names a new member itself.
    let body = RequestKind::ConsumerGroupHeartbeat(first("g0", "", &["t"]));
    let ResponseKind::ConsumerGroupHeartbeat(r) =
        conn.call(ApiKey::ConsumerGroupHeartbeat, 0, body)
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    assert!(!r.member_id.unwrap_or_default().is_empty());
}

#[test]
fn epochs_members_and_static_instances_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 4);
    let a = beat(&mut conn, first("g", "a", &["t"]));
    assert_eq!(a.error_code, 0);
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    assert_eq!(owned(&a).iter().map(|t| t.partitions.len()).sum::<usize>(), 4);
    let r = beat(&mut conn, again("g", "a", 7));
    assert_eq!(r.error_code, E::FencedMemberEpoch.code());
    let r = beat(&mut conn, again("g", "nobody", 1));
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    let r = beat(&mut conn, again("other", "a", 1));
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    // Static members: one instance id, one member at a time.
    let r = beat(&mut conn, first("g", "b", &["t"]).with_instance_id(Some(s("i"))));
    assert_eq!(r.error_code, 0);
    let r = beat(&mut conn, first("g", "c", &["t"]).with_instance_id(Some(s("i"))));
    assert_eq!(r.error_code, E::UnreleasedInstanceId.code());
    let r = beat(&mut conn, first("g", "d", &["t"]));
    assert_eq!(r.error_code, 0);
    let r = beat(&mut conn, first("g", "e", &["t"]));
    assert_eq!(r.error_code, E::GroupMaxSizeReached.code(), "group.consumer.max.size is 3");
    let leave = again("g", "b", -2).with_instance_id(Some(s("i")));
    assert_eq!(beat(&mut conn, leave).member_epoch, -2);
    let r = beat(&mut conn, first("g", "c", &["t"]).with_instance_id(Some(s("i"))));
    assert_eq!(r.error_code, 0, "the instance id is free once its member left with -2");
    // A classic member joining the full group is refused as a consumer member would be.
    let r = classic_join(&mut conn, "g", "", &[]);
    assert_eq!(r.error_code, E::GroupMaxSizeReached.code());
    let d = describe(&mut conn, "g");
    assert_eq!(d.error_code, 0);
    assert_eq!(d.members.len(), 3);
    assert_eq!(d.assignor_name.as_str(), "uniform");
    let missing = describe(&mut conn, "missing");
    assert_eq!(missing.error_code, E::GroupIdNotFound.code());
}

#[test]
fn offsets_use_member_epochs_and_the_group_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 2);
    let a = beat(&mut conn, first("g", "a", &["t"]));
    let epoch = a.member_epoch;
    assert_eq!(commit(&mut conn, "g", "a", epoch, "t"), 0);
    assert_eq!(commit(&mut conn, "g", "a", epoch - 1, "t"), E::StaleMemberEpoch.code());
    assert_eq!(commit(&mut conn, "g", "zz", epoch, "t"), E::UnknownMemberId.code());
    assert_eq!(commit(&mut conn, "g", "", -1, "t"), E::UnknownMemberId.code());
    assert_eq!(fetch(&mut conn, "g", Some("a"), epoch), (0, 42));
    assert_eq!(fetch(&mut conn, "g", Some("a"), epoch + 1).0, E::StaleMemberEpoch.code());
    assert_eq!(fetch(&mut conn, "g", Some("zz"), epoch).0, E::UnknownMemberId.code());
    assert_eq!(fetch(&mut conn, "g", None, -1), (0, 42));
    // DescribeGroups answers as Kafka 4 does for a group that is not classic.
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
    let ResponseKind::DescribeGroups(r) =
        conn.call(ApiKey::DescribeGroups, 6, RequestKind::DescribeGroups(req))
    else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, E::GroupIdNotFound.code());
    assert!(r.groups[0].error_message.is_some());
    // Every older version too (librdkafka's list_groups sends v0): a Dead group without an
    // error, and no error message, which those versions cannot carry (the response once
    // failed to encode and the connection closed).
    for version in 0..6 {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
        let ResponseKind::DescribeGroups(r) =
            conn.call(ApiKey::DescribeGroups, version, RequestKind::DescribeGroups(req))
        else {
            panic!()
        };
        assert_eq!(r.groups[0].error_code, 0, "v{version}");
        assert_eq!(r.groups[0].group_state.as_str(), "Dead", "v{version}");
    }
    let delete = |conn: &mut Conn| {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]);
        match conn.call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(req)) {
            ResponseKind::DeleteGroups(r) => r.results[0].error_code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(delete(&mut conn), E::NonEmptyGroup.code());

    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    let d = describe(&mut conn, "g");
    assert_eq!(d.error_code, 0, "the group came back from __consumer_offsets");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_epoch, epoch);
    assert_eq!(d.members[0].assignment.topic_partitions[0].partitions.len(), 2);
    // The member goes on with its epoch, then leaves.
    let r = beat(&mut conn, again("g", "a", epoch));
    assert_eq!((r.error_code, r.member_epoch), (0, epoch));
    assert_eq!(beat(&mut conn, again("g", "a", -1)).member_epoch, -1);
    let req = ListGroupsRequest::default().with_types_filter(vec![s("consumer")]);
    let ResponseKind::ListGroups(r) =
        conn.call(ApiKey::ListGroups, 5, RequestKind::ListGroups(req))
    else {
        panic!()
    };
    let listed: Vec<(&str, &str, &str)> = r
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.group_type.as_str(), g.group_state.as_str()))
        .collect();
    assert_eq!(listed, vec![("g", "consumer", "Empty")]);
    assert_eq!(commit(&mut conn, "g", "", -1, "t"), 0, "an admin commit on the empty group");
    assert_eq!(delete(&mut conn), 0);
    assert_eq!(describe(&mut conn, "g").error_code, E::GroupIdNotFound.code());
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(describe(&mut conn, "g").error_code, E::GroupIdNotFound.code(), "stays deleted");
    assert_eq!(fetch(&mut conn, "g", None, -1), (0, -1));
}

/// A classic consumer's JoinGroup metadata: ConsumerProtocolSubscription v1 of topic `t` with
/// the partitions it owns.
fn subscription(owned: &[i32]) -> bytes::Bytes {
    use kafka_protocol::protocol::Encodable;
    let tp = consumer_protocol_subscription::TopicPartition::default()
        .with_topic(TopicName(s("t")))
        .with_partitions(owned.to_vec());
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![s("t")])
        .with_owned_partitions(if owned.is_empty() { Vec::new() } else { vec![tp] });
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

fn classic_join_request(group: &str, member: &str, owned: &[i32]) -> JoinGroupRequest {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("cooperative-sticky"))
        .with_metadata(subscription(owned));
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol])
}

fn send_join(conn: &mut Conn, req: JoinGroupRequest) -> JoinGroupResponse {
    match conn.call(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(req)) {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn classic_join_as(
    conn: &mut Conn,
    group: &str,
    member: &str,
    owned: &[i32],
    protocol_type: &str,
) -> JoinGroupResponse {
    let req = classic_join_request(group, member, owned).with_protocol_type(s(protocol_type));
    send_join(conn, req)
}

fn classic_join(conn: &mut Conn, group: &str, member: &str, owned: &[i32]) -> JoinGroupResponse {
    classic_join_as(conn, group, member, owned, "consumer")
}

/// A classic group of one member of `protocol_type` that was given all of `t` (4 partitions);
/// returns (member id, generation).
fn classic_group(conn: &mut Conn, group: &str, protocol_type: &str) -> (String, i32) {
    let first = classic_join_as(conn, group, "", &[], protocol_type);
    assert_eq!(first.error_code, E::MemberIdRequired.code());
    let member = first.member_id.to_string();
    let joined = classic_join_as(conn, group, &member, &[], protocol_type);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member);
    let r = classic_sync(conn, group, &member, joined.generation_id, Some(&[0, 1, 2, 3]));
    assert_eq!(r.error_code, 0);
    (member, joined.generation_id)
}

/// SyncGroup; a leader hands itself `assign` (partitions of `t`). Returns the response.
fn classic_sync(
    conn: &mut Conn,
    group: &str,
    member: &str,
    generation: i32,
    assign: Option<&[i32]>,
) -> SyncGroupResponse {
    use kafka_protocol::protocol::Encodable;
    let assignments = assign.map_or_else(Vec::new, |ps| {
        let tp = consumer_protocol_assignment::TopicPartition::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(ps.to_vec());
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![tp]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        a.encode(&mut buf, 0).unwrap();
        vec![sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(buf.freeze())]
    });
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_name(Some(s("cooperative-sticky")))
        .with_assignments(assignments);
    match conn.call(ApiKey::SyncGroup, 5, RequestKind::SyncGroup(req)) {
        ResponseKind::SyncGroup(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

/// The partitions of `t` in a SyncGroup answer (a ConsumerProtocolAssignment).
fn synced(r: &SyncGroupResponse) -> Vec<i32> {
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;
    assert_eq!(r.error_code, 0);
    let mut buf = r.assignment.clone();
    let version = buf.get_i16();
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).unwrap();
    let mut all: Vec<i32> =
        a.assigned_partitions.iter().flat_map(|t| t.partitions.clone()).collect();
    all.sort();
    all
}

fn classic_heartbeat(conn: &mut Conn, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    match conn.call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(req)) {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// The group's type as ListGroups v5 shows it.
fn group_type(conn: &mut Conn, group: &str) -> String {
    let req = ListGroupsRequest::default();
    let ResponseKind::ListGroups(r) =
        conn.call(ApiKey::ListGroups, 5, RequestKind::ListGroups(req))
    else {
        panic!()
    };
    let g = r.groups.iter().find(|g| g.group_id.as_str() == group).expect("listed");
    g.group_type.to_string()
}

#[test]
fn a_classic_group_converts_online_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 4);
    let (c, generation) = classic_group(&mut conn, "mg", "consumer");
    assert_eq!(classic_heartbeat(&mut conn, "mg", &c, generation), 0);
    assert_eq!(group_type(&mut conn, "mg"), "classic");

    // A consumer-protocol member joins: the group converts; the newcomer's partitions are
    // still the classic member's, so it gets none yet.
    let n = beat(&mut conn, first("mg", "n", &["t"]));
    assert_eq!(n.error_code, 0, "{:?}", n.error_message);
    assert_eq!(n.member_epoch, generation + 1);
    assert!(owned(&n).iter().all(|t| t.partitions.is_empty()));
    assert_eq!(group_type(&mut conn, "mg"), "consumer");
    let d = describe(&mut conn, "mg");
    let mut types: Vec<i8> = d.members.iter().map(|m| m.member_type).collect();
    types.sort();
    assert_eq!(types, vec![0, 1], "one classic member (0), one consumer member (1)");

    // The classic member is told to rejoin; it may still commit with its generation.
    assert_eq!(classic_heartbeat(&mut conn, "mg", &c, generation), E::RebalanceInProgress.code());
    assert_eq!(commit(&mut conn, "mg", &c, generation, "t"), 0);
    // Cooperative rejoin owning all four: it keeps two, at its old generation...
    let j = classic_join(&mut conn, "mg", &c, &[0, 1, 2, 3]);
    assert_eq!((j.error_code, j.generation_id), (0, generation));
    assert_eq!(j.leader.as_str(), "", "the coordinator assigns");
    let kept = synced(&classic_sync(&mut conn, "mg", &c, generation, None));
    assert_eq!(kept.len(), 2);
    // ...and once it gave up the others it moves to the new epoch.
    let j = classic_join(&mut conn, "mg", &c, &kept);
    assert_eq!((j.error_code, j.generation_id), (0, generation + 1));
    assert_eq!(synced(&classic_sync(&mut conn, "mg", &c, generation + 1, None)), kept);
    assert_eq!(classic_heartbeat(&mut conn, "mg", &c, generation + 1), 0);
    assert_eq!(commit(&mut conn, "mg", &c, generation, "t"), E::IllegalGeneration.code());
    // The newcomer now gets the two released partitions.
    let req = again("mg", "n", n.member_epoch).with_topic_partitions(Some(Vec::new()));
    let r = beat(&mut conn, req);
    assert_eq!(r.error_code, 0);
    let mut got: Vec<i32> = owned(&r).iter().flat_map(|t| t.partitions.clone()).collect();
    got.sort();
    let mut all = [kept.clone(), got].concat();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3], "disjoint, covering all four");

    // The converted group, with its classic member, survives a restart.
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(group_type(&mut conn, "mg"), "consumer");
    let d = describe(&mut conn, "mg");
    let mut types: Vec<i8> = d.members.iter().map(|m| m.member_type).collect();
    types.sort();
    assert_eq!(types, vec![0, 1]);
    assert_eq!(classic_heartbeat(&mut conn, "mg", &c, generation + 1), 0);
    assert_eq!(fetch(&mut conn, "mg", None, -1), (0, 42), "the offset committed before");

    // The consumer member leaves: a classic group again, rebalancing.
    assert_eq!(
        beat(&mut conn, again("mg", "n", r.member_epoch).with_member_epoch(-1)).error_code,
        0
    );
    assert_eq!(group_type(&mut conn, "mg"), "classic");
    let code = classic_heartbeat(&mut conn, "mg", &c, generation + 1);
    assert!(
        [E::RebalanceInProgress.code(), E::IllegalGeneration.code()].contains(&code),
        "the classic member must rejoin, got {code}"
    );
    let j = classic_join(&mut conn, "mg", &c, &kept);
    assert_eq!(j.error_code, 0);
    assert_eq!(j.leader.as_str(), c, "a classic group again: its member leads");
    assert!(j.generation_id > generation + 1);
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(group_type(&mut conn, "mg"), "classic", "the downgrade was persisted");
}

#[test]
fn migration_is_refused_by_policy_and_by_another_protocol_type() {
    for policy in ["disabled", "downgrade"] {
        let dir = tempfile::tempdir().unwrap();
        let args = ["--offsets-topic-partitions", "4", "--group-consumer-migration-policy", policy];
        let broker = Broker::start(dir.path(), &args);
        let mut conn = Conn::connect(broker.addr);
        create_topic(&mut conn, "t", 4);
        let (c, generation) = classic_group(&mut conn, "pg", "consumer");
        let r = beat(&mut conn, first("pg", "n", &["t"]));
        assert_eq!(r.error_code, E::GroupIdNotFound.code(), "policy {policy}");
        assert_eq!(group_type(&mut conn, "pg"), "classic");
        assert_eq!(classic_heartbeat(&mut conn, "pg", &c, generation), 0);
    }
    // The default policy converts only groups of Kafka consumers (protocol type "consumer").
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 4);
    let (c, generation) = classic_group(&mut conn, "connect-group", "connect");
    let r = beat(&mut conn, first("connect-group", "n", &["t"]));
    assert_eq!(r.error_code, E::GroupIdNotFound.code());
    assert_eq!(group_type(&mut conn, "connect-group"), "classic");
    assert_eq!(classic_heartbeat(&mut conn, "connect-group", &c, generation), 0);
    // A group that did convert takes classic members of type "consumer" only.
    let _ = classic_group(&mut conn, "mixed", "consumer");
    assert_eq!(beat(&mut conn, first("mixed", "n", &["t"])).error_code, 0);
    let r = classic_join_as(&mut conn, "mixed", "x", &[], "connect");
    assert_eq!(r.error_code, E::InconsistentGroupProtocol.code());
}

#[test]
fn a_classic_static_member_replacing_the_last_consumer_member_downgrades_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 4);
    let (c, generation) = classic_group(&mut conn, "sg", "consumer");
    let join = first("sg", "n", &["t"]).with_instance_id(Some(s("i")));
    assert_eq!(beat(&mut conn, join).error_code, 0);
    assert_eq!(group_type(&mut conn, "sg"), "consumer");
    // The static member restarts as a classic consumer: a JoinGroup under its instance id
    // takes its place at once; no consumer-protocol member is left.
    let req = classic_join_request("sg", "", &[]).with_group_instance_id(Some(s("i")));
    let r = send_join(&mut conn, req);
    assert_eq!(r.error_code, 0);
    assert_ne!(r.member_id.as_str(), "n");
    assert_eq!(group_type(&mut conn, "sg"), "classic");
    let old = beat(&mut conn, again("sg", "n", generation + 1).with_instance_id(Some(s("i"))));
    assert_ne!(old.error_code, 0, "the replaced member is gone");
    // A classic group again, at generation = the group epoch: its other member must rejoin.
    let code = classic_heartbeat(&mut conn, "sg", &c, generation);
    assert_eq!(code, E::IllegalGeneration.code());
    let code = classic_heartbeat(&mut conn, "sg", &c, generation + 1);
    assert_eq!(code, E::RebalanceInProgress.code());
}

/// A classic member's JoinGroup into consumer group `group` (a new member: the first
/// JoinGroup gets its id), with `rebalance_timeout_ms`; returns (member id, generation).
fn classic_member_joins(conn: &mut Conn, group: &str, rebalance_timeout_ms: i32) -> (String, i32) {
    let req = classic_join_request(group, "", &[]).with_rebalance_timeout_ms(rebalance_timeout_ms);
    let named = send_join(conn, req.clone());
    assert_eq!(named.error_code, E::MemberIdRequired.code());
    let joined = send_join(conn, req.with_member_id(named.member_id.clone()));
    assert_eq!(joined.error_code, 0);
    (named.member_id.to_string(), joined.generation_id)
}

#[test]
fn a_classic_member_in_a_consumer_group_leaves_at_its_sync_or_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 4);
    assert_eq!(beat(&mut conn, first("sync", "n", &["t"])).error_code, 0);
    // y joins and syncs at once; x joins after it and never syncs. Both have a one-second
    // rebalance timeout and a 30 s session that their heartbeats keep alive.
    let (y, y_generation) = classic_member_joins(&mut conn, "sync", 1_000);
    assert_eq!(classic_sync(&mut conn, "sync", &y, y_generation, None).error_code, 0);
    let (x, x_generation) = classic_member_joins(&mut conn, "sync", 1_000);
    // Only the sync timeout can remove x: it fires one rebalance timeout after its join.
    let present = |code: i16| code != E::UnknownMemberId.code();
    common::poll("x removed by its sync timeout", || {
        let x_there = present(classic_heartbeat(&mut conn, "sync", &x, x_generation));
        let y_there = present(classic_heartbeat(&mut conn, "sync", &y, y_generation));
        // y joined before x: had its sync timer not stopped, it would be gone first.
        assert!(y_there, "y synced in time and heartbeats, yet it left");
        (!x_there).then_some(())
    });
    let late = classic_sync(&mut conn, "sync", &x, x_generation, None);
    assert_eq!(late.error_code, E::UnknownMemberId.code());
    let mut members: Vec<String> =
        describe(&mut conn, "sync").members.iter().map(|m| m.member_id.to_string()).collect();
    members.sort();
    let mut expected = vec!["n".to_owned(), y.clone()];
    expected.sort();
    assert_eq!(members, expected);

    // z joins and syncs, then falls silent: its session (the JoinGroup's 6 s, the least
    // allowed) removes it; its one-minute sync timer plays no part.
    let req = classic_join_request("sync", "", &[])
        .with_session_timeout_ms(6_000)
        .with_rebalance_timeout_ms(60_000);
    let named = send_join(&mut conn, req.clone());
    let z = named.member_id.to_string();
    let joined = send_join(&mut conn, req.with_member_id(named.member_id));
    assert_eq!(joined.error_code, 0);
    assert_eq!(classic_sync(&mut conn, "sync", &z, joined.generation_id, None).error_code, 0);
    common::poll("z removed by its session timeout", || {
        assert!(present(classic_heartbeat(&mut conn, "sync", &y, y_generation)));
        let d = describe(&mut conn, "sync");
        d.members.iter().all(|m| m.member_id.as_str() != z).then_some(())
    });
}
