//! Consumer group APIs over the raw protocol: bad input gets Kafka's error codes, and the
//! basic join/sync/commit/fetch/describe/delete cycle works across shards.

mod common;

use bytes::Bytes;
use common::{create_topic, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn broker(dir: &std::path::Path) -> Broker {
    Broker::start(dir, &["--shards", "2", "--offsets-topic-partitions", "4"])
}

fn join_request(group: &str, member: &str, protocol_type: &str) -> JoinGroupRequest {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"));
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_member_id(s(member))
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![protocol])
}

fn join(conn: &mut Conn, req: JoinGroupRequest) -> JoinGroupResponse {
    match conn.call(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(req)) {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

/// Joins `group` as its only member; returns (member id, generation).
fn join_alone(conn: &mut Conn, group: &str) -> (String, i32) {
    let first = join(conn, join_request(group, "", "consumer"));
    assert_eq!(first.error_code, E::MemberIdRequired.code());
    let member = first.member_id.to_string();
    let joined = join(conn, join_request(group, &member, "consumer"));
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member);
    (member, joined.generation_id)
}

fn sync(conn: &mut Conn, group: &str, member: &str, generation: i32) -> SyncGroupResponse {
    let assignment = sync_group_request::SyncGroupRequestAssignment::default()
        .with_member_id(s(member))
        .with_assignment(Bytes::from_static(b"assigned"));
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(vec![assignment]);
    match conn.call(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(req)) {
        ResponseKind::SyncGroup(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn heartbeat(conn: &mut Conn, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    match conn.call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(req)) {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn commit(
    conn: &mut Conn,
    group: &str,
    member: &str,
    generation: i32,
    parts: &[(&str, i32)],
) -> Vec<i16> {
    let topics = parts
        .iter()
        .map(|(topic, partition)| {
            let p = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(42);
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![p])
        })
        .collect();
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics);
    match conn.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req)) {
        ResponseKind::OffsetCommit(r) => {
            r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn fetch_offset(conn: &mut Conn, group: &str, topic: &str, partition: i32) -> i64 {
    let t = offset_fetch_request::OffsetFetchRequestTopics::default()
        .with_name(TopicName(s(topic)))
        .with_partition_indexes(vec![partition]);
    let g = offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]));
    let req = OffsetFetchRequest::default().with_groups(vec![g]);
    match conn.call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(req)) {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.groups[0].error_code, 0);
            r.groups[0].topics[0].partitions[0].committed_offset
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`: a JoinGroup
/// asking for a session timeout outside them is refused, inside them accepted; test suites
/// (kafka-python's among them) lower the minimum to 1 s for their short sessions.
#[test]
fn session_timeouts_are_bounded_by_the_configured_range() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--group-min-session-timeout-ms", "1000", "--group-max-session-timeout-ms", "9000"];
    let broker = Broker::start(dir.path(), &args);
    let mut conn = Conn::connect(broker.addr);
    for (timeout, code) in [
        (999, E::InvalidSessionTimeout.code()),
        (9001, E::InvalidSessionTimeout.code()),
        (1000, E::MemberIdRequired.code()),
        (9000, E::MemberIdRequired.code()),
    ] {
        let r =
            join(&mut conn, join_request("g1", "", "consumer").with_session_timeout_ms(timeout));
        assert_eq!(r.error_code, code, "session timeout {timeout}");
    }
    let short = join_request("g1", "", "consumer").with_session_timeout_ms(3000);
    let member = join(&mut conn, short.clone()).member_id.to_string();
    let joined = join(&mut conn, short.with_member_id(s(&member)));
    assert_eq!(joined.error_code, 0, "a 3 s session joins");

    let default_dir = tempfile::tempdir().unwrap();
    let default = Broker::start(default_dir.path(), &[]);
    let mut conn = Conn::connect(default.addr);
    let r = join(&mut conn, join_request("g1", "", "consumer").with_session_timeout_ms(3000));
    assert_eq!(r.error_code, E::InvalidSessionTimeout.code(), "Kafka's default minimum is 6 s");
}

#[test]
fn bad_joins_get_the_proper_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    let r = join(&mut conn, join_request("", "", "consumer"));
    assert_eq!(r.error_code, E::InvalidGroupId.code());
    let r = join(&mut conn, join_request("g1", "", ""));
    assert_eq!(r.error_code, E::InconsistentGroupProtocol.code(), "empty protocol type");
    let r = join(&mut conn, join_request("g1", "made-up-member", "consumer"));
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    let r = join(&mut conn, join_request("g1", "", "consumer").with_session_timeout_ms(10));
    assert_eq!(r.error_code, E::InvalidSessionTimeout.code());

    let (member, generation) = join_alone(&mut conn, "g1");
    let r = join(&mut conn, join_request("g1", "", "connect"));
    assert_eq!(r.error_code, E::InconsistentGroupProtocol.code(), "other protocol type");
    assert_eq!(
        sync(&mut conn, "g1", &member, generation + 1).error_code,
        E::IllegalGeneration.code()
    );
    assert_eq!(sync(&mut conn, "g1", "stranger", generation).error_code, E::UnknownMemberId.code());
    let synced = sync(&mut conn, "g1", &member, generation);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assigned");
    assert_eq!(heartbeat(&mut conn, "g1", &member, generation), 0);
    assert_eq!(heartbeat(&mut conn, "g1", &member, generation - 1), E::IllegalGeneration.code());
    assert_eq!(heartbeat(&mut conn, "g1", "stranger", generation), E::UnknownMemberId.code());
    assert_eq!(heartbeat(&mut conn, "nogroup", "stranger", 1), E::UnknownMemberId.code());
}

#[test]
fn commits_check_partitions_members_and_generations() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 2);
    let codes = commit(&mut conn, "simple", "", -1, &[("t", 0), ("t", 9), ("missing", 0)]);
    let unknown = E::UnknownTopicOrPartition.code();
    assert_eq!(codes, vec![0, unknown, unknown]);
    assert_eq!(fetch_offset(&mut conn, "simple", "t", 0), 42);
    assert_eq!(fetch_offset(&mut conn, "simple", "t", 1), -1);
    assert_eq!(fetch_offset(&mut conn, "nobody", "t", 0), -1);

    let (member, generation) = join_alone(&mut conn, "managed");
    assert_eq!(
        commit(&mut conn, "managed", &member, generation, &[("t", 1)]),
        vec![E::RebalanceInProgress.code()]
    );
    assert_eq!(sync(&mut conn, "managed", &member, generation).error_code, 0);
    assert_eq!(commit(&mut conn, "managed", &member, generation, &[("t", 1)]), vec![0]);
    let stale = commit(&mut conn, "managed", &member, generation - 1, &[("t", 1)]);
    assert_eq!(stale, vec![E::IllegalGeneration.code()]);
    let stranger = commit(&mut conn, "managed", "stranger", generation, &[("t", 1)]);
    assert_eq!(stranger, vec![E::UnknownMemberId.code()]);
    assert_eq!(commit(&mut conn, "ghost", "m", 3, &[("t", 1)]), vec![E::IllegalGeneration.code()]);

    let delete = |conn: &mut Conn, group: &str| {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        match conn.call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(req)) {
            ResponseKind::DeleteGroups(r) => r.results[0].error_code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(delete(&mut conn, "managed"), E::NonEmptyGroup.code());
    assert_eq!(delete(&mut conn, "ghost"), E::GroupIdNotFound.code());
    assert_eq!(delete(&mut conn, "simple"), 0);
    assert_eq!(fetch_offset(&mut conn, "simple", "t", 0), -1);
}

#[test]
fn find_coordinator_answers_groups_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut conn = Conn::connect(broker.addr);
    let req = FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![
        s("a"),
        s("b"),
        s(""),
    ]);
    let ResponseKind::FindCoordinator(r) =
        conn.call(ApiKey::FindCoordinator, 4, RequestKind::FindCoordinator(req))
    else {
        panic!("not a FindCoordinator response")
    };
    let codes: Vec<i16> = r.coordinators.iter().map(|c| c.error_code).collect();
    assert_eq!(codes, vec![0, 0, E::InvalidRequest.code()]);
    assert_eq!(r.coordinators[0].port, i32::from(broker.addr.port()));
    let mut find = |key_type: i8| {
        let req = FindCoordinatorRequest::default().with_key_type(key_type).with_key(s("txn"));
        let ResponseKind::FindCoordinator(r) =
            conn.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req))
        else {
            panic!("not a FindCoordinator response")
        };
        r
    };
    let r = find(1);
    assert_eq!(r.error_code, 0, "transactional ids have a coordinator");
    assert_eq!(r.port, i32::from(broker.addr.port()));
    assert_eq!(find(2).error_code, E::InvalidRequest.code(), "no such key type");
}
