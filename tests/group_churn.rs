//! Consumers that come and go while their group rebalances must never take the broker down
//! (issue 15, finding 1: a timer re-armed for a deadline already past ran at once inside the
//! coordinator's `RefCell` borrow and panicked shard 0, and the process exited).
//!
//! Raw protocol, so the timing is exact: one consumer is given a member id and vanishes
//! before rejoining with it (a consumer destroyed mid-rebalance), while another one holds
//! the group's first join phase open past `group.initial.rebalance.delay.ms`.

mod common;

use bytes::Bytes;
use common::{Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"));
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol])
}

/// JoinGroup v5 (v4+ hands a new member its id first); None when the broker hung up.
fn join(conn: &mut Conn, group: &str, member: &str) -> Option<JoinGroupResponse> {
    let req = RequestKind::JoinGroup(join_request(group, member));
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::JoinGroup as i16)
        .with_request_api_version(5)
        .with_correlation_id(7)
        .with_client_id(Some(s("churn")));
    let mut frame = bytes::BytesMut::new();
    use kafka_protocol::protocol::{Decodable, Encodable};
    header.encode(&mut frame, ApiKey::JoinGroup.request_header_version(5)).unwrap();
    req.encode(&mut frame, 5).unwrap();
    conn.send_frame(&frame);
    let mut response = conn.read_frame()?;
    let version = ApiKey::JoinGroup.response_header_version(5);
    ResponseHeader::decode(&mut response, version).unwrap();
    Some(JoinGroupResponse::decode(&mut response, 5).unwrap())
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

/// (state, member ids) of `group` as DescribeGroups reports it.
fn describe(conn: &mut Conn, group: &str) -> (String, Vec<String>) {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let ResponseKind::DescribeGroups(r) =
        conn.call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(req))
    else {
        panic!("not a DescribeGroups response")
    };
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0);
    let members = g.members.iter().map(|m| m.member_id.to_string()).collect();
    (g.group_state.to_string(), members)
}

#[test]
fn a_consumer_gone_mid_rebalance_leaves_the_broker_up_and_the_group_stable() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        Broker::start(dir.path(), &["--shards", "2", "--offsets-topic-partitions", "2"]);
    // Default group.initial.rebalance.delay.ms (3 s): the first join phase is held.
    let groups = ["churn-a", "churn-b", "churn-c"];
    let mut stayers = Vec::new();
    for group in groups {
        let mut stayer = Conn::connect(broker.addr);
        let first = join(&mut stayer, group, "").expect("an answer");
        assert_eq!(first.error_code, E::MemberIdRequired.code());
        // A second consumer is given its id, then is destroyed before it rejoins.
        let mut gone = Conn::connect(broker.addr);
        let given = join(&mut gone, group, "").expect("an answer");
        assert_eq!(given.error_code, E::MemberIdRequired.code());
        drop(gone);
        stayers.push((stayer, first.member_id.to_string()));
    }
    // Each stayer rejoins: its join phase is held for the initial delay, then waits for the
    // vanished member until that one's id expires (its session timeout).
    let joined: Vec<(Conn, String, JoinGroupResponse)> = std::thread::scope(|scope| {
        let waits: Vec<_> = stayers
            .into_iter()
            .zip(groups)
            .map(|((mut conn, member), group)| {
                scope.spawn(move || {
                    let answer = join(&mut conn, group, &member);
                    (conn, member, answer.expect("the join is answered: the broker is up"))
                })
            })
            .collect();
        waits.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for ((mut conn, member, answer), group) in joined.into_iter().zip(groups) {
        assert_eq!(answer.error_code, 0, "{group}");
        assert_eq!(answer.leader.as_str(), member);
        assert_eq!(answer.members.len(), 1, "only the consumer that stayed");
        let synced = sync(&mut conn, group, &member, answer.generation_id);
        assert_eq!(synced.error_code, 0);
        let (state, members) = describe(&mut conn, group);
        assert_eq!((state.as_str(), members), ("Stable", vec![member.clone()]));
    }
    assert!(broker.is_running());
    let mut conn = Conn::connect(broker.addr);
    assert!(!common::metadata(&mut conn).brokers.is_empty(), "the broker still answers");
    broker.stop();
}
