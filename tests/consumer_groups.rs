//! KIP-848 consumer groups over the raw protocol: ConsumerGroupHeartbeat's error codes (bad
//! first heartbeats, fenced and unknown members, static members, the group size limit, a
//! classic group in the way), OffsetCommit/OffsetFetch with member epochs, DescribeGroups,
//! ListGroups and DeleteGroups of a consumer group, and the group's state across a restart.

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
    // A classic member cannot join a consumer group with members (no online migration).
    let protocol = join_group_request::JoinGroupRequestProtocol::default().with_name(s("range"));
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol]);
    let ResponseKind::JoinGroup(r) = conn.call(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(req))
    else {
        panic!()
    };
    assert_eq!(r.error_code, E::InconsistentGroupProtocol.code());
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
