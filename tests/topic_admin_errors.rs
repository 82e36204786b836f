//! Bad topic-admin requests over the raw protocol get Kafka error codes with messages, never
//! a dropped connection: unknown config operations, unknown topics, broker resources,
//! DeleteRecords beyond the high watermark.

mod common;

use common::{Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const INVALID_CONFIG: i16 = 40;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_REQUEST: i16 = 42;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const TOPIC_ALREADY_EXISTS: i16 = 36;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn incremental(conn: &mut Conn, kind: i8, name: &str, op: i8, key: &str) -> (i16, String) {
    let c = incremental_alter_configs_request::AlterableConfig::default()
        .with_name(s(key))
        .with_config_operation(op)
        .with_value(Some(s("1")));
    let r = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(s(name))
        .with_configs(vec![c]);
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![r]);
    let ResponseKind::IncrementalAlterConfigs(resp) =
        conn.call(ApiKey::IncrementalAlterConfigs, 1, RequestKind::IncrementalAlterConfigs(req))
    else {
        panic!("wrong response kind")
    };
    let result = &resp.responses[0];
    (result.error_code, result.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// CreateTopics of topic `t<version>` (`t` at v7): its error code, and whether its message
/// is non-empty (`None`: null).
fn create(conn: &mut Conn, version: i16) -> (i16, Option<bool>) {
    let name = if version == 7 { "t".to_owned() } else { format!("t{version}") };
    let t = create_topics_request::CreatableTopic::default()
        .with_name(TopicName(s(&name)))
        .with_num_partitions(1)
        .with_replication_factor(1);
    let req = CreateTopicsRequest::default().with_topics(vec![t]);
    let ResponseKind::CreateTopics(resp) =
        conn.call(ApiKey::CreateTopics, version, RequestKind::CreateTopics(req))
    else {
        panic!("wrong response kind")
    };
    let result = &resp.topics[0];
    (result.error_code, result.error_message.as_ref().map(|m| !m.is_empty()))
}

#[test]
fn bad_admin_requests_get_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    // A created topic's message is null, as from Kafka (aiokafka's own tests check it);
    // a refused one says why.
    for (version, expected) in
        [(3, (0, None)), (7, (0, None)), (7, (TOPIC_ALREADY_EXISTS, Some(true)))]
    {
        assert_eq!(create(&mut conn, version), expected, "CreateTopics v{version}");
    }

    let (code, message) = incremental(&mut conn, 2, "t", 9, "retention.ms");
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("operation"), "{message}");
    let (code, message) = incremental(&mut conn, 2, "t", 2, "retention.ms");
    assert_eq!(code, INVALID_CONFIG, "APPEND on a non-list config");
    assert!(message.contains("list"), "{message}");
    let (code, _) = incremental(&mut conn, 2, "nope", 0, "retention.ms");
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);
    // A static broker setting (log.retention.ms is dynamic: tests/dynamic_configs.rs).
    let (code, message) = incremental(&mut conn, 4, "0", 0, "log.dirs");
    assert_eq!(code, INVALID_REQUEST);
    assert!(message.contains("cannot update log.dirs dynamically"), "{message}");

    let p = delete_records_request::DeleteRecordsPartition::default().with_offset(5);
    let missing = delete_records_request::DeleteRecordsPartition::default()
        .with_partition_index(7)
        .with_offset(0);
    let topic = delete_records_request::DeleteRecordsTopic::default()
        .with_name(TopicName(s("t")))
        .with_partitions(vec![p, missing]);
    let req = DeleteRecordsRequest::default().with_topics(vec![topic]);
    let ResponseKind::DeleteRecords(resp) =
        conn.call(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(req))
    else {
        panic!("wrong response kind")
    };
    let parts = &resp.topics[0].partitions;
    assert_eq!(parts[0].error_code, OFFSET_OUT_OF_RANGE, "the topic is empty");
    assert_eq!(parts[1].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    // CreatePartitions `assignments` on a single broker: only this broker (node 0), one
    // list per new partition; Kafka's code and message otherwise. Nothing is added then.
    let grow = |conn: &mut Conn, lists: &[&[i32]]| {
        use create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
        let assignments = lists.iter().map(|l| {
            let ids = l.iter().map(|id| BrokerId(*id)).collect();
            CreatePartitionsAssignment::default().with_broker_ids(ids)
        });
        let topic = CreatePartitionsTopic::default()
            .with_name(TopicName(s("t")))
            .with_count(2)
            .with_assignments(Some(assignments.collect()));
        let req = CreatePartitionsRequest::default().with_topics(vec![topic]);
        let ResponseKind::CreatePartitions(r) =
            conn.call(ApiKey::CreatePartitions, 3, RequestKind::CreatePartitions(req))
        else {
            panic!("wrong response kind")
        };
        let r = &r.results[0];
        (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
    };
    let (code, message) = grow(&mut conn, &[&[10]]);
    assert_eq!(code, INVALID_REPLICA_ASSIGNMENT);
    assert!(message.contains("broker 10, but no such broker is registered"), "{message}");
    let (code, message) = grow(&mut conn, &[&[0], &[0]]);
    assert_eq!(code, INVALID_REPLICA_ASSIGNMENT);
    assert!(message.contains("add 1 additional partitions, but only 2"), "{message}");
    assert_eq!(grow(&mut conn, &[&[0]]), (0, String::new()));
}
