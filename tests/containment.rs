//! Panic containment against a real broker (issue 15): a bug in one request handler or one
//! consumer group must not end the process. The hidden fault-injection flags make a handler
//! panic for one client id (a Produce while it is started in the connection's reader, any
//! other request in its handler task) and the state machine of one group panic once; the
//! panicking connection closes, other clients on the same shard keep producing and fetching,
//! the group recovers with its committed offsets, /metrics counts every panic, and the
//! process is still alive and stops cleanly.

mod common;

use bytes::{Bytes, BytesMut};
use common::{batch, create_topic, fetch_one, produce, records, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const FAULTY_CLIENT: &str = "boom";
const FAULTY_GROUP: &str = "boom-group";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Sends `body` with client id `client_id`; the decoded response, or None when the broker
/// closed the connection instead.
fn call_as(
    conn: &mut Conn,
    client_id: &str,
    key: ApiKey,
    version: i16,
    body: RequestKind,
) -> Option<ResponseKind> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(11)
        .with_client_id(Some(s(client_id)));
    let mut frame = BytesMut::new();
    header.encode(&mut frame, key.request_header_version(version)).unwrap();
    body.encode(&mut frame, version).unwrap();
    conn.send_frame(&frame);
    let mut response = conn.read_frame()?;
    ResponseHeader::decode(&mut response, key.response_header_version(version)).unwrap();
    Some(ResponseKind::decode(key, &mut response, version).unwrap())
}

/// `strata_refusals_total{reason="handler_panic"}` from the admin listener's /metrics.
fn panics_counted(broker: &Broker) -> u64 {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(broker.admin.expect("an admin listener")).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: strata\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let metric = "strata_refusals_total{reason=\"handler_panic\"} ";
    let line = response.lines().find_map(|l| l.strip_prefix(metric));
    line.map_or(0, |count| count.trim().parse().unwrap())
}

fn join(conn: &mut Conn, member: &str) -> JoinGroupResponse {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"));
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(s(FAULTY_GROUP)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol]);
    match conn.call(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(req)) {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

/// Joins the group alone and syncs: (member id, generation), Stable.
fn join_and_sync(conn: &mut Conn) -> (String, i32) {
    let first = join(conn, "");
    assert_eq!(first.error_code, E::MemberIdRequired.code());
    let member = first.member_id.to_string();
    let joined = join(conn, &member);
    assert_eq!(joined.error_code, 0);
    let assignment = sync_group_request::SyncGroupRequestAssignment::default()
        .with_member_id(s(&member))
        .with_assignment(Bytes::from_static(b"t-0"));
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(FAULTY_GROUP)))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_assignments(vec![assignment]);
    match conn.call(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(req)) {
        ResponseKind::SyncGroup(r) => assert_eq!(r.error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    (member, joined.generation_id)
}

fn heartbeat(conn: &mut Conn, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(FAULTY_GROUP)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    match conn.call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(req)) {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn commit(conn: &mut Conn, member: &str, generation: i32, offset: i64) -> i16 {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s("t")))
        .with_partitions(vec![p]);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(FAULTY_GROUP)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![t]);
    match conn.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req)) {
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

fn committed(conn: &mut Conn) -> i64 {
    let t = offset_fetch_request::OffsetFetchRequestTopics::default()
        .with_name(TopicName(s("t")))
        .with_partition_indexes(vec![0]);
    let g = offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(FAULTY_GROUP)))
        .with_topics(Some(vec![t]));
    let req = OffsetFetchRequest::default().with_groups(vec![g]);
    match conn.call(ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(req)) {
        ResponseKind::OffsetFetch(r) => r.groups[0].topics[0].partitions[0].committed_offset,
        other => panic!("unexpected {other:?}"),
    }
}

fn state(conn: &mut Conn) -> (String, Vec<String>) {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(FAULTY_GROUP))]);
    let ResponseKind::DescribeGroups(r) =
        conn.call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(req))
    else {
        panic!("not a DescribeGroups response")
    };
    let members = r.groups[0].members.iter().map(|m| m.member_id.to_string()).collect();
    (r.groups[0].group_state.to_string(), members)
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    // One shard: every connection below shares the executor whose handlers panic.
    let mut broker =
        Broker::start(dir.path(), &["--shards", "1", "--fault-panic-on-client-id", FAULTY_CLIENT]);
    let mut good = Conn::connect(broker.addr);
    create_topic(&mut good, "t", 1);
    assert_eq!(produce(&mut good, "t", 0, batch(&[(b"k", b"before")]), -1), (0, 0));

    let mut faulty = Conn::connect(broker.addr);
    let metadata = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
    let answer = call_as(&mut faulty, FAULTY_CLIENT, ApiKey::Metadata, 12, metadata);
    assert!(answer.is_none(), "the panicking request's connection is closed: {answer:?}");
    let line = broker.wait_for_log("contained a panic");
    assert!(line.contains("ERROR") && line.contains("request Metadata"), "{line}");
    assert!(line.contains("fault injection"), "the log names the panic message: {line}");

    // A produce panics while it is started, in the connection's reader.
    let mut faulty = Conn::connect(broker.addr);
    let p = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(batch(&[(b"k", b"never")])));
    let t = produce_request::TopicProduceData::default()
        .with_name(TopicName(s("t")))
        .with_partition_data(vec![p]);
    let req =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![t]);
    let answer = call_as(&mut faulty, FAULTY_CLIENT, ApiKey::Produce, 9, RequestKind::Produce(req));
    assert!(answer.is_none(), "the panicking produce's connection is closed");

    // Everyone else, on the same shard, is served as before.
    assert_eq!(produce(&mut good, "t", 0, batch(&[(b"k", b"after")]), -1), (0, 1));
    let fetched = fetch_one(&mut good, "t", 0, 0);
    let values: Vec<Vec<u8>> =
        records(&fetched.records.unwrap()).into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(
        values,
        vec![b"before".to_vec(), b"after".to_vec()],
        "the panicking produce wrote nothing"
    );
    let mut fresh = Conn::connect(broker.addr);
    assert!(!common::metadata(&mut fresh).topics.is_empty());
    assert!(panics_counted(&broker) >= 2, "/metrics counts the panics");
    assert!(broker.is_running());
    broker.stop();
}

#[test]
fn a_group_whose_state_machine_panicked_recovers_with_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--offsets-topic-partitions",
            "1",
            "--fault-panic-on-group",
            FAULTY_GROUP,
        ],
    );
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "t", 1);
    let (member, generation) = join_and_sync(&mut conn);
    assert_eq!(commit(&mut conn, &member, generation, 7), 0);

    // The group's first heartbeat panics inside its coordinator: an error, not a hang up.
    let code = heartbeat(&mut conn, &member, generation);
    assert_eq!(code, E::CoordinatorNotAvailable.code());
    let line = broker.wait_for_log("contained a panic");
    assert!(line.contains(FAULTY_GROUP), "the log names the group: {line}");
    // The group was reset: its members rejoin, as after a coordinator move.
    assert_eq!(heartbeat(&mut conn, &member, generation), E::UnknownMemberId.code());
    assert_eq!(state(&mut conn).0, "Empty");
    assert_eq!(committed(&mut conn), 7, "committed offsets survive the reset");

    let (again, next) = join_and_sync(&mut conn);
    assert!(next > generation, "the generation moves on: {next} after {generation}");
    assert_eq!(state(&mut conn), ("Stable".to_owned(), vec![again.clone()]));
    assert_eq!(heartbeat(&mut conn, &again, next), 0);
    assert_eq!(commit(&mut conn, &again, next, 9), 0);
    assert_eq!(committed(&mut conn), 9);
    assert_eq!(panics_counted(&broker), 1);
    assert!(broker.is_running());
    broker.stop();
}

/// A broker whose log output cannot be written (stderr on a full disk: /dev/full) keeps
/// serving: log lines are dropped, not turned into panics by the logger reporting its own
/// write failure on stderr. Creating a topic, producing and fetching all log at INFO.
#[test]
fn a_broker_whose_logs_cannot_be_written_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", &addr.to_string(), "--admin-listen", "off"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--shards", "2", "--segment-prealloc-bytes", "1048576"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    let mut conn = common::poll("the broker to accept connections", || {
        std::net::TcpStream::connect(addr).ok().map(|_| Conn::connect(addr))
    });
    for round in 0..3 {
        let topic = format!("quiet-{round}");
        create_topic(&mut conn, &topic, 2);
        for partition in 0..2 {
            let (code, offset) = produce(&mut conn, &topic, partition, batch(&[(b"k", b"v")]), 1);
            assert_eq!((code, offset), (0, 0));
            let fetched = fetch_one(&mut conn, &topic, partition, 0);
            assert_eq!(fetched.error_code, 0);
            let data = fetched.records.unwrap_or_default();
            assert_eq!(records(&data), vec![(0, b"k".to_vec(), b"v".to_vec())]);
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "the broker exited");
    drop(conn);
    child.kill().unwrap();
    child.wait().unwrap();
}
