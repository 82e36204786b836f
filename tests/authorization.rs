//! ACL enforcement on every API the broker offers (`handlers::APIS`), over real connections.
//!
//! The broker runs the standard authorizer on a SASL_PLAINTEXT listener. The bootstrap user
//! `admin` (a super user) creates the SCRAM users `alice` and `mallory` and the ACLs, then the
//! broker restarts without super users (so users and ACLs also survive a restart). The two
//! principals of the table: `User:alice` is allowed everything, `User:mallory` has no ACL (and
//! an explicit DENY on topic `t`), except DESCRIBE on topic `public` which `User:*` has. For
//! each API, mallory gets the error code Kafka gives, and alice gets no authorization error.
//! The SASL exchange itself is authorized by nothing: its two APIs are sent on connections
//! that have not logged in. ACLs naming hosts are covered by the authorizer's unit tests.

mod common;

use common::sasl::{alter, handshake, scram_login, upsertion};
use common::{batch, create_topic, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata::security::sasl::scram::ScramMechanism;

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;
const AUTH_ERRORS: [i16; 4] = [TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED, TXN_DENIED];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn name(v: &str) -> TopicName {
    TopicName(s(v))
}

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const ALICE: (&str, &str) = ("alice", "alice-pw");
const MALLORY: (&str, &str) = ("mallory", "mallory-pw");

/// A connection logged in as `user` with SCRAM-SHA-256.
fn login(broker: &Broker, (user, password): (&str, &str)) -> Conn {
    let mut conn = Conn::connect(broker.addr);
    let done = scram_login(&mut conn, ScramMechanism::Sha256, user, password);
    assert_eq!(done.error_code, 0, "{user}: {:?}", done.error_message);
    conn
}

/// (resource type, name, pattern type, principal, host, operation, permission)
type Acl = (i8, &'static str, i8, &'static str, &'static str, i8, i8);

const ALL: i8 = 2;
const DESCRIBE: i8 = 8;
const ALLOW: i8 = 3;
const DENY: i8 = 2;
const LITERAL: i8 = 3;

const ACLS: &[Acl] = &[
    (2, "*", LITERAL, "User:alice", "*", ALL, ALLOW),
    (3, "*", LITERAL, "User:alice", "*", ALL, ALLOW),
    (4, "kafka-cluster", LITERAL, "User:alice", "*", ALL, ALLOW),
    (5, "*", LITERAL, "User:alice", "*", ALL, ALLOW),
    (2, "t", LITERAL, "User:mallory", "*", ALL, DENY),
    (2, "public", LITERAL, "User:*", "*", DESCRIBE, ALLOW),
];

fn create_acls(conn: &mut Conn, acls: &[Acl]) {
    let creations = acls
        .iter()
        .map(|(rt, n, pt, p, h, op, perm)| {
            create_acls_request::AclCreation::default()
                .with_resource_type(*rt)
                .with_resource_name(s(n))
                .with_resource_pattern_type(*pt)
                .with_principal(s(p))
                .with_host(s(h))
                .with_operation(*op)
                .with_permission_type(*perm)
        })
        .collect();
    let req = CreateAclsRequest::default().with_creations(creations);
    let ResponseKind::CreateAcls(r) =
        conn.call(ApiKey::CreateAcls, 3, RequestKind::CreateAcls(req))
    else {
        panic!("not a CreateAcls response")
    };
    for result in &r.results {
        assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    }
}

/// A SASL broker with users alice and mallory, topics `t`, `public`, `doomed`, a record in
/// `t` and the ACLs; restarted without super users.
fn setup(dir: &std::path::Path) -> Broker {
    let listener = ["--listeners", "SASL_PLAINTEXT://{addr}", "--shards", "2"];
    let mut first = listener.to_vec();
    first.extend(["--authorizer", "standard", "--super-users", "User:admin"]);
    first.extend(["--sasl-bootstrap-user", "admin:admin-secret"]);
    let mut broker = Broker::start(dir, &first);
    let mut admin = login(&broker, ADMIN);
    let users = [ALICE, MALLORY].map(|(u, p)| upsertion(u, ScramMechanism::Sha256, p, 4096));
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(users.to_vec());
    assert_eq!(alter(&mut admin, req), vec![("alice".into(), 0), ("mallory".into(), 0)]);
    for topic in ["t", "public", "doomed"] {
        create_topic(&mut admin, topic, 1);
    }
    let (code, _) = common::produce(&mut admin, "t", 0, batch(&[(b"k", b"v")]), 1);
    assert_eq!(code, 0);
    create_acls(&mut admin, ACLS);
    // A stop waits for open connections (up to the shutdown timeout): close ours first.
    drop(admin);
    broker.stop();
    let mut args = listener.to_vec();
    args.extend(["--authorizer", "standard", "--auto-create-topics", "true"]);
    let args = args.iter().map(|a| a.to_string()).collect();
    let mut broker = Broker::launch(broker.addr, broker.data_dir.clone(), args);
    broker.wait_ready();
    broker
}

/// Every error code in a response.
fn codes(r: &ResponseKind) -> Vec<i16> {
    use ResponseKind as K;
    let mut out = Vec::new();
    match r {
        K::Produce(r) => out.extend(
            r.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        K::Fetch(r) => {
            out.push(r.error_code);
            out.extend(r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
        }
        K::ListOffsets(r) => {
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::OffsetForLeaderEpoch(r) => {
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::Metadata(r) => out.extend(r.topics.iter().map(|t| t.error_code)),
        K::ApiVersions(r) => out.push(r.error_code),
        K::CreateTopics(r) => out.extend(r.topics.iter().map(|t| t.error_code)),
        K::DeleteTopics(r) => out.extend(r.responses.iter().map(|t| t.error_code)),
        K::CreatePartitions(r) => out.extend(r.results.iter().map(|t| t.error_code)),
        K::DescribeConfigs(r) => out.extend(r.results.iter().map(|t| t.error_code)),
        K::AlterConfigs(r) => out.extend(r.responses.iter().map(|t| t.error_code)),
        K::IncrementalAlterConfigs(r) => out.extend(r.responses.iter().map(|t| t.error_code)),
        K::DeleteRecords(r) => {
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::FindCoordinator(r) => {
            out.push(r.error_code);
            out.extend(r.coordinators.iter().map(|c| c.error_code));
        }
        K::JoinGroup(r) => out.push(r.error_code),
        K::SyncGroup(r) => out.push(r.error_code),
        K::Heartbeat(r) => out.push(r.error_code),
        K::LeaveGroup(r) => out.push(r.error_code),
        K::OffsetCommit(r) => {
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::OffsetFetch(r) => {
            out.push(r.error_code);
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
            for g in &r.groups {
                out.push(g.error_code);
                out.extend(g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
            }
        }
        K::ListGroups(r) => out.push(r.error_code),
        K::DescribeGroups(r) => out.extend(r.groups.iter().map(|g| g.error_code)),
        K::DeleteGroups(r) => out.extend(r.results.iter().map(|g| g.error_code)),
        K::OffsetDelete(r) => {
            out.push(r.error_code);
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
        }
        K::InitProducerId(r) => out.push(r.error_code),
        K::AddPartitionsToTxn(r) => out.extend(
            r.results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code)),
        ),
        K::AddOffsetsToTxn(r) => out.push(r.error_code),
        K::EndTxn(r) => out.push(r.error_code),
        K::TxnOffsetCommit(r) => {
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::DescribeProducers(r) => {
            out.extend(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::DescribeTransactions(r) => out.extend(r.transaction_states.iter().map(|t| t.error_code)),
        K::ListTransactions(r) => out.push(r.error_code),
        K::DescribeCluster(r) => out.push(r.error_code),
        K::WriteTxnMarkers(r) => {
            out.extend(r.markers.iter().flat_map(|m| {
                m.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            }))
        }
        K::DescribeAcls(r) => out.push(r.error_code),
        K::CreateAcls(r) => out.extend(r.results.iter().map(|c| c.error_code)),
        K::DeleteAcls(r) => out.extend(r.filter_results.iter().map(|f| f.error_code)),
        K::DescribeClientQuotas(r) => out.push(r.error_code),
        K::AlterClientQuotas(r) => out.extend(r.entries.iter().map(|e| e.error_code)),
        K::ElectLeaders(r) => {
            out.push(r.error_code);
            out.extend(
                r.replica_election_results
                    .iter()
                    .flat_map(|t| t.partition_result.iter().map(|p| p.error_code)),
            );
        }
        K::AlterPartitionReassignments(r) => {
            out.push(r.error_code);
            out.extend(r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
        }
        K::ListPartitionReassignments(r) => out.push(r.error_code),
        K::UnregisterBroker(r) => out.push(r.error_code),
        K::BrokerRegistration(r) => out.push(r.error_code),
        K::DescribeQuorum(r) => out.push(r.error_code),
        K::DescribeLogDirs(r) => {
            out.push(r.error_code);
            out.extend(r.results.iter().map(|d| d.error_code));
        }
        K::AlterReplicaLogDirs(r) => {
            out.extend(r.results.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::DescribeTopicPartitions(r) => out.extend(r.topics.iter().map(|t| t.error_code)),
        K::ListConfigResources(r) => out.push(r.error_code),
        K::SaslHandshake(r) => out.push(r.error_code),
        K::SaslAuthenticate(r) => out.push(r.error_code),
        K::DescribeUserScramCredentials(r) => {
            out.push(r.error_code);
            out.extend(r.results.iter().map(|u| u.error_code));
        }
        K::AlterUserScramCredentials(r) => out.extend(r.results.iter().map(|u| u.error_code)),
        K::ConsumerGroupHeartbeat(r) => out.push(r.error_code),
        K::ConsumerGroupDescribe(r) => out.extend(r.groups.iter().map(|g| g.error_code)),
        K::ShareGroupHeartbeat(r) => out.push(r.error_code),
        K::ShareGroupDescribe(r) => out.extend(r.groups.iter().map(|g| g.error_code)),
        K::ShareFetch(r) => {
            out.push(r.error_code);
            for p in r.responses.iter().flat_map(|t| t.partitions.iter()) {
                out.extend([p.error_code, p.acknowledge_error_code]);
            }
        }
        K::ShareAcknowledge(r) => {
            out.push(r.error_code);
            out.extend(r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
        }
        K::DescribeShareGroupOffsets(r) => {
            for g in &r.groups {
                out.push(g.error_code);
                out.extend(g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
            }
        }
        K::AlterShareGroupOffsets(r) => {
            out.push(r.error_code);
            out.extend(r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)));
        }
        K::DeleteShareGroupOffsets(r) => {
            out.push(r.error_code);
            out.extend(r.responses.iter().map(|t| t.error_code));
        }
        K::ReadShareGroupState(r) => {
            out.extend(r.results.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::WriteShareGroupState(r) => {
            out.extend(r.results.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::InitializeShareGroupState(r) => {
            out.extend(r.results.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::DeleteShareGroupState(r) => {
            out.extend(r.results.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        K::ReadShareGroupStateSummary(r) => {
            out.extend(r.results.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        }
        other => panic!("no error codes known for {other:?}"),
    }
    out
}

/// One row: an API call, and what the denied connection must get (`None`: the API filters
/// instead of refusing, checked separately).
struct Case {
    key: ApiKey,
    version: i16,
    body: fn() -> RequestKind,
    denied: Option<i16>,
}

impl Case {
    /// SaslHandshake and SaslAuthenticate go to connections that have not logged in (on a
    /// logged-in one they would start a re-authentication).
    fn before_login(&self) -> bool {
        matches!(self.key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
    }
}

fn group() -> GroupId {
    GroupId(s("g"))
}

/// The KIP-848 consumer group and the share group of the table (not `g`: a consumer-protocol
/// member would turn the classic group `g` the other rows use into a consumer group).
fn consumer_group() -> GroupId {
    GroupId(s("cg"))
}

fn share_group() -> GroupId {
    GroupId(s("sg"))
}

/// The new group protocols' rows: READ on the group to join or fetch, DESCRIBE to describe,
/// DELETE / READ for the share-group offset admin APIs, as Kafka's `KafkaApis`.
fn group_protocol_cases() -> Vec<Case> {
    let c = |key, version, body: fn() -> RequestKind, denied| Case { key, version, body, denied };
    vec![
        c(
            ApiKey::ConsumerGroupHeartbeat,
            0,
            || {
                RequestKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(consumer_group())
                        .with_member_id(s("m-1"))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(10_000)
                        .with_subscribed_topic_names(Some(vec![name("public")]))
                        .with_topic_partitions(Some(vec![])),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::ConsumerGroupDescribe,
            0,
            || {
                RequestKind::ConsumerGroupDescribe(
                    ConsumerGroupDescribeRequest::default().with_group_ids(vec![consumer_group()]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::ShareGroupHeartbeat,
            1,
            || {
                RequestKind::ShareGroupHeartbeat(
                    ShareGroupHeartbeatRequest::default()
                        .with_group_id(share_group())
                        .with_member_id(s("share-member-0000001"))
                        .with_member_epoch(0)
                        .with_subscribed_topic_names(Some(vec![name("public")])),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::ShareGroupDescribe,
            1,
            || {
                RequestKind::ShareGroupDescribe(
                    ShareGroupDescribeRequest::default().with_group_ids(vec![share_group()]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::ShareFetch,
            1,
            || {
                RequestKind::ShareFetch(
                    ShareFetchRequest::default()
                        .with_group_id(Some(share_group()))
                        .with_member_id(Some(s("share-member-0000002")))
                        .with_share_session_epoch(0)
                        .with_max_wait_ms(0)
                        .with_max_bytes(1 << 20)
                        .with_max_records(10)
                        .with_batch_size(10),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::ShareAcknowledge,
            1,
            || {
                RequestKind::ShareAcknowledge(
                    ShareAcknowledgeRequest::default()
                        .with_group_id(Some(share_group()))
                        .with_member_id(Some(s("share-member-0000002")))
                        .with_share_session_epoch(1),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::DescribeShareGroupOffsets,
            0,
            || {
                let g = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(share_group());
                RequestKind::DescribeShareGroupOffsets(
                    DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::AlterShareGroupOffsets,
            0,
            || {
                RequestKind::AlterShareGroupOffsets(
                    AlterShareGroupOffsetsRequest::default().with_group_id(share_group()),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::DeleteShareGroupOffsets,
            0,
            || {
                RequestKind::DeleteShareGroupOffsets(
                    DeleteShareGroupOffsetsRequest::default().with_group_id(share_group()),
                )
            },
            Some(GROUP_DENIED),
        ),
        // Group configs: DESCRIBE_CONFIGS / ALTER_CONFIGS on the group (Kafka 4.x).
        c(
            ApiKey::DescribeConfigs,
            4,
            || {
                let r = describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(share_group().0);
                RequestKind::DescribeConfigs(
                    DescribeConfigsRequest::default().with_resources(vec![r]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::IncrementalAlterConfigs,
            1,
            || {
                let cfg = incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("share.record.lock.duration.ms"))
                    .with_value(Some(s("20000")));
                let r = incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(share_group().0)
                    .with_configs(vec![cfg]);
                RequestKind::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest::default().with_resources(vec![r]),
                )
            },
            Some(GROUP_DENIED),
        ),
    ]
}

fn txn_id() -> TransactionalId {
    TransactionalId(s("x"))
}

fn produce() -> RequestKind {
    let p = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(batch(&[(b"k", b"v")])));
    let t = produce_request::TopicProduceData::default()
        .with_name(name("t"))
        .with_partition_data(vec![p]);
    RequestKind::Produce(
        ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![t]),
    )
}

fn fetch_from(replica: i32) -> RequestKind {
    let p = fetch_request::FetchPartition::default()
        .with_partition_max_bytes(1 << 20)
        .with_current_leader_epoch(-1);
    let t = fetch_request::FetchTopic::default().with_topic(name("t")).with_partitions(vec![p]);
    let req = FetchRequest::default().with_max_bytes(1 << 20).with_replica_id(BrokerId(replica));
    RequestKind::Fetch(req.with_max_wait_ms(0).with_topics(vec![t]))
}

fn cases() -> Vec<Case> {
    let c = |key, version, body: fn() -> RequestKind, denied| Case { key, version, body, denied };
    vec![
        c(ApiKey::Produce, 9, produce, Some(TOPIC_DENIED)),
        c(ApiKey::Fetch, 12, || fetch_from(-1), Some(TOPIC_DENIED)),
        // A replica fetch needs CLUSTER_ACTION; Kafka answers TOPIC_AUTHORIZATION_FAILED.
        c(ApiKey::Fetch, 12, || fetch_from(7), Some(TOPIC_DENIED)),
        c(
            ApiKey::ListOffsets,
            6,
            || {
                let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2);
                let t = list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![p]);
                RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![t]))
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::OffsetForLeaderEpoch,
            4,
            || {
                use offset_for_leader_epoch_request::{
                    OffsetForLeaderPartition, OffsetForLeaderTopic,
                };
                let p = OffsetForLeaderPartition::default().with_current_leader_epoch(-1);
                let t =
                    OffsetForLeaderTopic::default().with_topic(name("t")).with_partitions(vec![p]);
                RequestKind::OffsetForLeaderEpoch(
                    OffsetForLeaderEpochRequest::default().with_topics(vec![t]),
                )
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::Metadata,
            12,
            || {
                let t =
                    metadata_request::MetadataRequestTopic::default().with_name(Some(name("t")));
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![t])))
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::ApiVersions,
            3,
            || {
                let r = ApiVersionsRequest::default()
                    .with_client_software_name(s("strata-test"))
                    .with_client_software_version(s("1.0"));
                RequestKind::ApiVersions(r)
            },
            None,
        ),
        c(
            ApiKey::CreateTopics,
            7,
            || {
                let t = create_topics_request::CreatableTopic::default()
                    .with_name(name("made"))
                    .with_num_partitions(1)
                    .with_replication_factor(1);
                RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![t]))
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::DeleteTopics,
            6,
            || {
                let t = delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name("doomed")));
                RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![t]))
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::CreatePartitions,
            3,
            || {
                let t = create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name("t"))
                    .with_count(2);
                RequestKind::CreatePartitions(
                    CreatePartitionsRequest::default().with_topics(vec![t]),
                )
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::DescribeConfigs,
            4,
            || {
                let r = describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"));
                RequestKind::DescribeConfigs(
                    DescribeConfigsRequest::default().with_resources(vec![r]),
                )
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::DescribeConfigs,
            4,
            || {
                let r = describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("0"));
                RequestKind::DescribeConfigs(
                    DescribeConfigsRequest::default().with_resources(vec![r]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::AlterConfigs,
            2,
            || {
                let cfg = alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("3600000")));
                let r = alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![cfg]);
                RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![r]))
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::IncrementalAlterConfigs,
            1,
            || {
                let cfg = incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("7200000")));
                let r = incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![cfg]);
                RequestKind::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest::default().with_resources(vec![r]),
                )
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::DeleteRecords,
            2,
            || {
                let p = delete_records_request::DeleteRecordsPartition::default().with_offset(0);
                let t = delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![p]);
                RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![t]))
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::FindCoordinator,
            4,
            || {
                RequestKind::FindCoordinator(
                    FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::FindCoordinator,
            4,
            || {
                RequestKind::FindCoordinator(
                    FindCoordinatorRequest::default()
                        .with_key_type(1)
                        .with_coordinator_keys(vec![s("x")]),
                )
            },
            Some(TXN_DENIED),
        ),
        c(
            ApiKey::FindCoordinator,
            3,
            || RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("g"))),
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::JoinGroup,
            9,
            || {
                let p =
                    join_group_request::JoinGroupRequestProtocol::default().with_name(s("range"));
                RequestKind::JoinGroup(
                    JoinGroupRequest::default()
                        .with_group_id(group())
                        .with_session_timeout_ms(10_000)
                        .with_rebalance_timeout_ms(10_000)
                        .with_protocol_type(s("consumer"))
                        .with_protocols(vec![p]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::SyncGroup,
            5,
            || {
                RequestKind::SyncGroup(
                    SyncGroupRequest::default()
                        .with_group_id(group())
                        .with_member_id(s("m"))
                        .with_protocol_type(Some(s("consumer")))
                        .with_protocol_name(Some(s("range"))),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::Heartbeat,
            4,
            || {
                RequestKind::Heartbeat(
                    HeartbeatRequest::default().with_group_id(group()).with_member_id(s("m")),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::LeaveGroup,
            5,
            || {
                let m = leave_group_request::MemberIdentity::default().with_member_id(s("m"));
                RequestKind::LeaveGroup(
                    LeaveGroupRequest::default().with_group_id(group()).with_members(vec![m]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(ApiKey::OffsetCommit, 9, offset_commit, Some(GROUP_DENIED)),
        c(
            ApiKey::OffsetFetch,
            7,
            || {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]);
                RequestKind::OffsetFetch(
                    OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![t])),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::OffsetFetch,
            9,
            || {
                let g = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group())
                    .with_member_epoch(-1);
                RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![g]))
            },
            Some(GROUP_DENIED),
        ),
        c(ApiKey::ListGroups, 5, || RequestKind::ListGroups(ListGroupsRequest::default()), None),
        c(
            ApiKey::DescribeGroups,
            5,
            || {
                RequestKind::DescribeGroups(
                    DescribeGroupsRequest::default().with_groups(vec![group()]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::DeleteGroups,
            2,
            || {
                RequestKind::DeleteGroups(
                    DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("other"))]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::OffsetDelete,
            0,
            || {
                let p = offset_delete_request::OffsetDeleteRequestPartition::default();
                let t = offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![p]);
                RequestKind::OffsetDelete(
                    OffsetDeleteRequest::default()
                        .with_group_id(GroupId(s("other")))
                        .with_topics(vec![t]),
                )
            },
            Some(GROUP_DENIED),
        ),
        c(
            ApiKey::InitProducerId,
            4,
            || {
                RequestKind::InitProducerId(
                    InitProducerIdRequest::default()
                        .with_transactional_id(Some(txn_id()))
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                )
            },
            Some(TXN_DENIED),
        ),
        // Idempotence without a transactional id: IDEMPOTENT_WRITE on the cluster, or WRITE
        // on some topic (KIP-679); mallory has neither.
        c(
            ApiKey::InitProducerId,
            4,
            || {
                RequestKind::InitProducerId(
                    InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::AddPartitionsToTxn,
            3,
            || {
                let t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![0]);
                RequestKind::AddPartitionsToTxn(
                    AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(txn_id())
                        .with_v3_and_below_producer_id(ProducerId(1))
                        .with_v3_and_below_topics(vec![t]),
                )
            },
            Some(TXN_DENIED),
        ),
        c(
            ApiKey::AddOffsetsToTxn,
            3,
            || {
                RequestKind::AddOffsetsToTxn(
                    AddOffsetsToTxnRequest::default()
                        .with_transactional_id(txn_id())
                        .with_producer_id(ProducerId(1))
                        .with_group_id(group()),
                )
            },
            Some(TXN_DENIED),
        ),
        c(
            ApiKey::EndTxn,
            3,
            || {
                RequestKind::EndTxn(
                    EndTxnRequest::default()
                        .with_transactional_id(txn_id())
                        .with_producer_id(ProducerId(1)),
                )
            },
            Some(TXN_DENIED),
        ),
        c(
            ApiKey::TxnOffsetCommit,
            3,
            || {
                let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_committed_offset(0);
                let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![p]);
                RequestKind::TxnOffsetCommit(
                    TxnOffsetCommitRequest::default()
                        .with_transactional_id(txn_id())
                        .with_group_id(group())
                        .with_producer_id(ProducerId(1))
                        .with_generation_id(-1)
                        .with_topics(vec![t]),
                )
            },
            Some(TXN_DENIED),
        ),
        c(
            ApiKey::DescribeProducers,
            0,
            || {
                let t = describe_producers_request::TopicRequest::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]);
                RequestKind::DescribeProducers(
                    DescribeProducersRequest::default().with_topics(vec![t]),
                )
            },
            Some(TOPIC_DENIED),
        ),
        c(
            ApiKey::DescribeTransactions,
            0,
            || {
                RequestKind::DescribeTransactions(
                    DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id()]),
                )
            },
            Some(TXN_DENIED),
        ),
        c(
            ApiKey::ListTransactions,
            1,
            || {
                RequestKind::ListTransactions(
                    ListTransactionsRequest::default().with_duration_filter(-1),
                )
            },
            None,
        ),
        c(
            ApiKey::DescribeCluster,
            1,
            || {
                RequestKind::DescribeCluster(
                    DescribeClusterRequest::default()
                        .with_include_cluster_authorized_operations(true),
                )
            },
            None,
        ),
        c(
            ApiKey::WriteTxnMarkers,
            1,
            || {
                let t = write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]);
                let m = write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(99))
                    .with_topics(vec![t]);
                RequestKind::WriteTxnMarkers(
                    WriteTxnMarkersRequest::default().with_markers(vec![m]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::ReadShareGroupState,
            0,
            || {
                use read_share_group_state_request::*;
                let t = ReadStateData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![PartitionData::default()]);
                RequestKind::ReadShareGroupState(
                    ReadShareGroupStateRequest::default()
                        .with_group_id(s("sg"))
                        .with_topics(vec![t]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::WriteShareGroupState,
            0,
            || {
                use write_share_group_state_request::*;
                let p = PartitionData::default().with_start_offset(0);
                let t = WriteStateData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![p]);
                RequestKind::WriteShareGroupState(
                    WriteShareGroupStateRequest::default()
                        .with_group_id(s("sg"))
                        .with_topics(vec![t]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::InitializeShareGroupState,
            0,
            || {
                use initialize_share_group_state_request::*;
                let p = PartitionData::default().with_state_epoch(1);
                let t = InitializeStateData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![p]);
                RequestKind::InitializeShareGroupState(
                    InitializeShareGroupStateRequest::default()
                        .with_group_id(s("sg"))
                        .with_topics(vec![t]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::DeleteShareGroupState,
            0,
            || {
                use delete_share_group_state_request::*;
                let t = DeleteStateData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![PartitionData::default()]);
                RequestKind::DeleteShareGroupState(
                    DeleteShareGroupStateRequest::default()
                        .with_group_id(s("sg"))
                        .with_topics(vec![t]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::ReadShareGroupStateSummary,
            0,
            || {
                use read_share_group_state_summary_request::*;
                let t = ReadStateSummaryData::default()
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partitions(vec![PartitionData::default()]);
                RequestKind::ReadShareGroupStateSummary(
                    ReadShareGroupStateSummaryRequest::default()
                        .with_group_id(s("sg"))
                        .with_topics(vec![t]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::DescribeAcls,
            3,
            || {
                RequestKind::DescribeAcls(
                    DescribeAclsRequest::default()
                        .with_resource_type_filter(1)
                        .with_resource_name_filter(None)
                        .with_principal_filter(None)
                        .with_host_filter(None)
                        .with_pattern_type_filter(1)
                        .with_operation(1)
                        .with_permission_type(1),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::CreateAcls,
            3,
            || {
                let a = create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s("extra"))
                    .with_resource_pattern_type(3)
                    .with_principal(s("User:bob"))
                    .with_host(s("*"))
                    .with_operation(3)
                    .with_permission_type(3);
                RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![a]))
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::DeleteAcls,
            3,
            || {
                let f = delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_name_filter(Some(s("nothing")))
                    .with_pattern_type_filter(3)
                    .with_operation(1)
                    .with_permission_type(1);
                RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![f]))
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::DescribeClientQuotas,
            1,
            || RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default()),
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::AlterClientQuotas,
            1,
            || {
                use alter_client_quotas_request::{EntityData, EntryData, OpData};
                let e = EntityData::default()
                    .with_entity_type(s("client-id"))
                    .with_entity_name(Some(s("c")));
                let op = OpData::default().with_key(s("producer_byte_rate")).with_value(1e6);
                let entry = EntryData::default().with_entity(vec![e]).with_ops(vec![op]);
                RequestKind::AlterClientQuotas(
                    AlterClientQuotasRequest::default()
                        .with_entries(vec![entry])
                        .with_validate_only(true),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::ElectLeaders,
            2,
            || {
                let t = elect_leaders_request::TopicPartitions::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![0]);
                RequestKind::ElectLeaders(
                    ElectLeadersRequest::default()
                        .with_topic_partitions(Some(vec![t]))
                        .with_timeout_ms(10_000),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::AlterPartitionReassignments,
            0,
            || {
                use alter_partition_reassignments_request::{
                    ReassignablePartition, ReassignableTopic,
                };
                // A cancellation (no target): nothing moves.
                let p = ReassignablePartition::default().with_replicas(None);
                let t = ReassignableTopic::default().with_name(name("t")).with_partitions(vec![p]);
                RequestKind::AlterPartitionReassignments(
                    AlterPartitionReassignmentsRequest::default()
                        .with_topics(vec![t])
                        .with_timeout_ms(10_000),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::ListPartitionReassignments,
            0,
            || {
                RequestKind::ListPartitionReassignments(
                    ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        // Decommission / recommission (a single broker refuses both, INVALID_REQUEST, once
        // authorized) and the controller quorum.
        c(
            ApiKey::UnregisterBroker,
            0,
            || {
                RequestKind::UnregisterBroker(
                    UnregisterBrokerRequest::default().with_broker_id(BrokerId(1)),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::BrokerRegistration,
            0,
            || {
                RequestKind::BrokerRegistration(
                    BrokerRegistrationRequest::default().with_broker_id(BrokerId(1)),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::DescribeQuorum,
            1,
            || RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
            Some(CLUSTER_DENIED),
        ),
        // Log directories: DESCRIBE / ALTER on the cluster.
        c(
            ApiKey::DescribeLogDirs,
            4,
            || RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::AlterReplicaLogDirs,
            2,
            || {
                let t = alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![0]);
                let d = alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                    .with_path(s("/nowhere"))
                    .with_topics(vec![t]);
                RequestKind::AlterReplicaLogDirs(
                    AlterReplicaLogDirsRequest::default().with_dirs(vec![d]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        // Which resources have configs: DESCRIBE_CONFIGS on the cluster.
        c(
            ApiKey::ListConfigResources,
            1,
            || RequestKind::ListConfigResources(ListConfigResourcesRequest::default()),
            Some(CLUSTER_DENIED),
        ),
        // Paged topic descriptions: DESCRIBE on the topic, as Metadata.
        c(
            ApiKey::DescribeTopicPartitions,
            0,
            || {
                let t =
                    describe_topic_partitions_request::TopicRequest::default().with_name(name("t"));
                RequestKind::DescribeTopicPartitions(
                    DescribeTopicPartitionsRequest::default()
                        .with_topics(vec![t])
                        .with_response_partition_limit(10),
                )
            },
            Some(TOPIC_DENIED),
        ),
        // The SASL exchange is authorized by nothing (sent before a login: the handshake is
        // accepted, a malformed SCRAM message after it refused as a failed login); SCRAM users
        // need DESCRIBE / ALTER on the cluster.
        c(
            ApiKey::SaslHandshake,
            1,
            || {
                RequestKind::SaslHandshake(
                    SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")),
                )
            },
            None,
        ),
        c(
            ApiKey::SaslAuthenticate,
            2,
            || {
                let token = bytes::Bytes::from_static(b"\0u\0pw");
                RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default().with_auth_bytes(token),
                )
            },
            None,
        ),
        c(
            ApiKey::DescribeUserScramCredentials,
            0,
            || {
                RequestKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsRequest::default(),
                )
            },
            Some(CLUSTER_DENIED),
        ),
        c(
            ApiKey::AlterUserScramCredentials,
            0,
            || {
                use alter_user_scram_credentials_request::ScramCredentialDeletion;
                let d = ScramCredentialDeletion::default().with_name(s("nobody")).with_mechanism(1);
                RequestKind::AlterUserScramCredentials(
                    AlterUserScramCredentialsRequest::default().with_deletions(vec![d]),
                )
            },
            Some(CLUSTER_DENIED),
        ),
    ]
}

fn offset_commit() -> RequestKind {
    let p = offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(1);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(name("t"))
        .with_partitions(vec![p]);
    RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![t]),
    )
}

#[test]
fn every_api_answers_the_denied_principal_with_kafkas_error_and_the_allowed_one_without() {
    let dir = tempfile::tempdir().unwrap();
    let broker = setup(dir.path());
    let mut allowed = login(&broker, ALICE);
    let mut denied = login(&broker, MALLORY);
    let mut cases = cases();
    cases.extend(group_protocol_cases());
    let advertised = {
        let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let ResponseKind::ApiVersions(r) = allowed.call(ApiKey::ApiVersions, 0, body) else {
            panic!()
        };
        r.api_keys
    };
    for api in &advertised {
        let key = ApiKey::try_from(api.api_key).unwrap();
        assert!(cases.iter().any(|c| c.key == key), "{key:?} is offered but not in the table");
    }
    for case in &cases {
        let what = format!("{:?} v{}", case.key, case.version);
        if case.before_login() {
            let mut fresh = Conn::connect(broker.addr);
            if case.key == ApiKey::SaslAuthenticate {
                // Without a handshake first, the broker closes the connection (as Kafka).
                assert_eq!(handshake(&mut fresh, "SCRAM-SHA-256", 1).error_code, 0);
            }
            let answered = codes(&fresh.call(case.key, case.version, (case.body)()));
            assert!(!answered.iter().any(|c| AUTH_ERRORS.contains(c)), "{what}: {answered:?}");
            continue;
        }
        // The denied principal first: its attempt must change nothing the allowed one relies on.
        let refused = codes(&denied.call(case.key, case.version, (case.body)()));
        if let Some(expected) = case.denied {
            assert!(refused.contains(&expected), "{what} from mallory: {refused:?}");
        }
        let answered = codes(&allowed.call(case.key, case.version, (case.body)()));
        assert!(!answered.iter().any(|c| AUTH_ERRORS.contains(c)), "{what} allowed: {answered:?}");
    }
    filtered_apis_hide_what_the_principal_may_not_see(&mut allowed, &mut denied);
    metadata_hides_denied_topics(&mut allowed, &mut denied);
}

fn filtered_apis_hide_what_the_principal_may_not_see(allowed: &mut Conn, denied: &mut Conn) {
    // Alice committed offsets for group g (OffsetCommit above): ListGroups shows
    // it to alice only.
    let list = |conn: &mut Conn| {
        let ResponseKind::ListGroups(r) =
            conn.call(ApiKey::ListGroups, 5, RequestKind::ListGroups(ListGroupsRequest::default()))
        else {
            panic!()
        };
        r.groups.iter().map(|g| g.group_id.0.to_string()).collect::<Vec<_>>()
    };
    assert!(list(allowed).contains(&"g".to_owned()));
    assert!(list(denied).is_empty());
    // InitProducerId("x") above left transactional id x: listed to alice only.
    let txns = |conn: &mut Conn| {
        let req = ListTransactionsRequest::default().with_duration_filter(-1);
        let ResponseKind::ListTransactions(r) =
            conn.call(ApiKey::ListTransactions, 1, RequestKind::ListTransactions(req))
        else {
            panic!()
        };
        r.transaction_states.len()
    };
    assert_eq!(txns(allowed), 1);
    assert_eq!(txns(denied), 0);
    // DescribeCluster's operations: every cluster operation for alice, none for
    // the other (no DESCRIBE on the cluster).
    let ops = |conn: &mut Conn| {
        let req =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let ResponseKind::DescribeCluster(r) =
            conn.call(ApiKey::DescribeCluster, 1, RequestKind::DescribeCluster(req))
        else {
            panic!()
        };
        r.cluster_authorized_operations
    };
    let cluster_ops = [5, 7, 8, 9, 10, 11, 12].iter().fold(0, |bits, op| bits | (1 << op));
    assert_eq!(ops(allowed), cluster_ops);
    assert_eq!(ops(denied), 0);
}

fn metadata_hides_denied_topics(allowed: &mut Conn, denied: &mut Conn) {
    let all = |conn: &mut Conn| {
        let req = MetadataRequest::default()
            .with_topics(None)
            .with_include_topic_authorized_operations(true);
        let ResponseKind::Metadata(r) = conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        else {
            panic!()
        };
        let mut topics: Vec<(String, i32)> = r
            .topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.topic_authorized_operations))
            .collect();
        topics.sort();
        topics
    };
    let seen = all(allowed);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"t") && names.contains(&"public"), "{names:?}");
    let topic_ops = [3, 4, 5, 6, 7, 8, 10, 11].iter().fold(0, |bits, op| bits | (1 << op));
    assert!(seen.iter().all(|(_, ops)| *ops == topic_ops), "{seen:?}");
    assert_eq!(all(denied), vec![("public".to_owned(), 1 << 8)], "only DESCRIBE on public");
    // Auto-creation needs CREATE: mallory gets TOPIC_AUTHORIZATION_FAILED and nothing
    // is created; alice creates the topic.
    let ask = |conn: &mut Conn, topic: &str| {
        let t = metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic)));
        let req = MetadataRequest::default()
            .with_topics(Some(vec![t]))
            .with_allow_auto_topic_creation(true);
        let ResponseKind::Metadata(r) = conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
        else {
            panic!()
        };
        r.topics[0].error_code
    };
    assert_eq!(ask(denied, "fresh"), TOPIC_DENIED);
    assert!(!all(allowed).iter().any(|(n, _)| n == "fresh"), "a denied auto-creation created it");
    assert_eq!(ask(allowed, "fresh"), 0);
    assert!(all(allowed).iter().any(|(n, _)| n == "fresh"));
}

#[test]
fn acls_survive_a_restart_and_are_listed_filtered_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = setup(dir.path());
    let mut admin = login(&broker, ALICE);
    let describe = |conn: &mut Conn, principal: Option<&str>| {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(principal.map(s))
            .with_operation(1)
            .with_permission_type(1);
        let ResponseKind::DescribeAcls(r) =
            conn.call(ApiKey::DescribeAcls, 3, RequestKind::DescribeAcls(req))
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(r.error_message, None, "a success's message is null, as Kafka sends it");
        r.resources.iter().map(|res| res.acls.len()).sum::<usize>()
    };
    assert_eq!(describe(&mut admin, None), ACLS.len(), "the ACLs survived the restart");
    assert_eq!(describe(&mut admin, Some("User:*")), 1);
    // A filter with an UNKNOWN operation is refused as Kafka refuses it.
    let bad = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_operation(0)
        .with_permission_type(1);
    let ResponseKind::DescribeAcls(r) =
        admin.call(ApiKey::DescribeAcls, 3, RequestKind::DescribeAcls(bad))
    else {
        panic!()
    };
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
    // Deleting the DENY on t gives mallory... still nothing: t has ACLs, none for it.
    let f = delete_acls_request::DeleteAclsFilter::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_name_filter(Some(s("t")))
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(2);
    let ResponseKind::DeleteAcls(r) = admin.call(
        ApiKey::DeleteAcls,
        3,
        RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![f])),
    ) else {
        panic!()
    };
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    // Kafka (and kafkajs's own tests) expect null messages on success.
    assert_eq!(r.filter_results[0].error_message, None);
    assert_eq!(r.filter_results[0].matching_acls[0].error_message, None);
    assert_eq!(describe(&mut admin, None), ACLS.len() - 1);
    let mut denied = login(&broker, MALLORY);
    assert!(codes(&denied.call(ApiKey::Produce, 9, produce())).contains(&TOPIC_DENIED));
    // An ALLOW for mallory on t: now it may write.
    create_acls(&mut admin, &[(2, "t", LITERAL, "User:mallory", "*", 4, ALLOW)]);
    assert_eq!(codes(&denied.call(ApiKey::Produce, 9, produce())), vec![0]);
}
