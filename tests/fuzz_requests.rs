//! Fuzz target `requests`: what the connection does with bytes from a client before any
//! handler runs: the frame's size prefix ([`protocol::check_frame_size`]) and the header and
//! body decoders of every API and version the broker advertises ([`protocol::parse_request`]
//! with [`handlers::supported`]).
//!
//! Properties, for every input: nothing panics; the heap used while decoding stays within
//! [`AMPLIFICATION_MAX`] times the frame (the vendored kafka-protocol caps what a count read
//! off the wire may pre-allocate, vendor/kafka-protocol/STRATA-PATCH.md); a frame that decodes
//! re-encodes, and the re-encoded frame decodes to the same request.
//!
//! The corpus (`tests/fuzz/corpus/requests/`) holds one real frame per API and version in
//! `handlers::APIS`, written once by the ignored test `write_the_request_corpus` with the
//! kafka-protocol encoders and committed (run it again only when `APIS` changes).
//! `lying_counts_cost_at_most_the_frame` checks the pre-allocation cap directly: every count
//! of every corpus frame, in turn, claims about 2^31 elements.

#[path = "fuzz/mod.rs"]
mod fuzz;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata::config::limits::REQUEST_BYTES_DEFAULT;
use strata::protocol::{self, FRAME_PREFIX_BYTES};
use strata::server::handlers::{self, APIS};

const TARGET: &str = "requests";

/// Most heap bytes decoding may use per byte of frame. Decoding amplifies by design: the two
/// bytes of a null topic name in Metadata v0 become a 72-byte struct, one byte of a compact
/// array a 32-byte `StrBytes`; a vector that grows doubles, and while it grows holds both
/// buffers (about 108 times the frame for a Metadata v0 of null names). A 100 MiB request may
/// thus take ~10 GiB once decoded: the memory budget must count decoded requests, not frames.
const AMPLIFICATION_MAX: usize = 128;

/// Fixed allowance on top of [`AMPLIFICATION_MAX`] (the request's own structs).
const HEAP_BYTES_BASE: usize = 64 * 1024;

/// Parses `body` (a frame without its size prefix) as the connection does; returns the
/// result and the heap it used.
fn parse(body: &[u8]) -> (Result<protocol::Request, protocol::ProtocolError>, usize) {
    let frame = Bytes::copy_from_slice(body);
    fuzz::peak_heap(move || protocol::parse_request(frame, handlers::supported))
}

/// The property of one input (see the module docs).
fn check(input: &[u8]) {
    let Some((prefix, rest)) = input.split_first_chunk::<FRAME_PREFIX_BYTES>() else {
        return;
    };
    // The reader checks the prefix before it allocates anything for the frame.
    let body = match protocol::check_frame_size(i32::from_be_bytes(*prefix), REQUEST_BYTES_DEFAULT)
    {
        Ok(size) if size <= rest.len() => &rest[..size],
        // A prefix that does not fit the input: decode the rest anyway, to reach the decoders.
        _ => rest,
    };
    let (parsed, heap) = parse(body);
    let allowed = AMPLIFICATION_MAX * body.len() + HEAP_BYTES_BASE;
    assert!(heap <= allowed, "decoding {} bytes took {heap} bytes of heap", body.len());
    let Ok(request) = parsed else { return };
    let client_id = request.header.client_id.clone();
    let correlation_id = request.header.correlation_id;
    let encoded = protocol::encode_request(
        request.key,
        request.version,
        correlation_id,
        client_id.clone(),
        &request.body,
    );
    let encoded = encoded.unwrap_or_else(|e| {
        panic!("{:?} v{} decoded but does not re-encode: {e:#}", request.key, request.version)
    });
    let (again, _) = parse(&encoded[FRAME_PREFIX_BYTES..]);
    let again =
        again.unwrap_or_else(|e| panic!("a re-encoded {:?} does not decode: {e}", request.key));
    assert_eq!((again.key, again.version), (request.key, request.version));
    assert_eq!(again.header.correlation_id, correlation_id);
    assert_eq!(again.header.client_id, client_id);
    if again.body != request.body {
        // A float field holding NaN (AlterClientQuotas values) is never equal to itself; the
        // encoding must still be a fixed point, byte for byte.
        let twice = protocol::encode_request(
            again.key,
            again.version,
            correlation_id,
            client_id,
            &again.body,
        );
        let twice = twice.unwrap_or_else(|e| panic!("{:?} does not re-encode: {e:#}", again.key));
        assert!(twice == encoded, "{:?} v{} changed on a round trip", request.key, request.version);
    }
}

#[test]
fn fuzz_requests() {
    fuzz::run(TARGET, check);
}

#[test]
fn the_corpus_has_a_frame_for_every_api_and_version() {
    let corpus = fuzz::corpus(TARGET);
    for api in APIS {
        for version in api.min..=api.max {
            let found = corpus.iter().any(|frame| {
                let body = &frame[FRAME_PREFIX_BYTES..];
                let (parsed, _) = parse(body);
                parsed.is_ok_and(|r| r.key == api.key && r.version == version)
            });
            assert!(found, "no corpus frame decodes as {:?} v{version}", api.key);
        }
    }
}

/// Bytes after a lying count in [`lying_counts_cost_at_most_the_frame`]: enough that what a
/// lie pre-allocates stands out from [`HEAP_BYTES_BASE`]. They are `0x80`, from which only
/// elements made of integers decode (varints never end, lengths are negative).
const LIE_TAIL_BYTES: usize = 64 * 1024;
const LIE_TAIL: u8 = 0x80;

/// Most heap a lie may take per byte after it: what the decoder pre-allocates for the claim
/// (at most those bytes, with the cap) and the integer-only elements it decodes from them
/// (about 24 bytes each per wire byte at worst, growth included). Without the cap a lie
/// reserved `size_of` an element per byte: 80 to 176 for the arrays of structs of the corpus.
const LIE_AMPLIFICATION_MAX: usize = 32;

/// Every 4-byte count (non-flexible versions) and every varint count (flexible versions) of
/// every corpus frame claims about 2^31 elements in turn, followed by [`LIE_TAIL_BYTES`]:
/// what decoding takes must stay within [`AMPLIFICATION_MAX`] per byte before the lie and
/// [`LIE_AMPLIFICATION_MAX`] per byte after it.
#[test]
fn lying_counts_cost_at_most_the_frame() {
    let tail = vec![LIE_TAIL; LIE_TAIL_BYTES];
    let mut lies = 0;
    let mut worst = (0.0f64, String::new());
    for frame in fuzz::corpus(TARGET) {
        let body = &frame[FRAME_PREFIX_BYTES..];
        for at in protocol::REQUEST_HEADER_BYTES_MIN..body.len() {
            let four: &[u8] = &i32::MAX.to_be_bytes();
            let varint: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x07];
            for count in [four, varint] {
                let lie = [&body[..at], count, &tail].concat();
                let (_, heap) = parse(&lie);
                let allowed = AMPLIFICATION_MAX * at
                    + LIE_AMPLIFICATION_MAX * LIE_TAIL_BYTES
                    + HEAP_BYTES_BASE;
                let what = format!("a lying count at byte {at} of {:?}", &body[..8]);
                assert!(heap <= allowed, "{what} took {heap} bytes of heap for {}", lie.len());
                let ratio = heap as f64 / LIE_TAIL_BYTES as f64;
                if ratio > worst.0 {
                    worst = (ratio, what);
                }
                lies += 1;
            }
        }
    }
    assert!(lies > 10_000, "only {lies} lies tried: is the corpus there?");
    eprintln!(
        "{lies} lying counts; the most heap per byte after one: {:.1} ({})",
        worst.0, worst.1
    );
}

// ---- the corpus ------------------------------------------------------------------------------

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

/// One RecordBatch v2 of two records, as a producer sends it.
fn batch() -> Bytes {
    use kafka_protocol::records::*;
    let record = |offset: i64, value: &'static [u8]| Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1_700_000_000_000 + offset,
        key: Some(Bytes::from_static(b"key")),
        value: Some(Bytes::from_static(value)),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut out = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &[record(0, b"one"), record(1, b"two")], &options)
        .expect("encoding a batch");
    out.freeze()
}

fn produce(_v: i16) -> RequestKind {
    use produce_request::*;
    let partitions = (0..2)
        .map(|i| PartitionProduceData::default().with_index(i).with_records(Some(batch())))
        .collect();
    let t = TopicProduceData::default().with_name(topic("t")).with_partition_data(partitions);
    RequestKind::Produce(
        ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s("txn"))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![t]),
    )
}

fn fetch(v: i16) -> RequestKind {
    use fetch_request::*;
    let mut p = FetchPartition::default()
        .with_partition(1)
        .with_fetch_offset(42)
        .with_partition_max_bytes(1 << 20);
    if v >= 5 {
        p.log_start_offset = 3;
    }
    if v >= 9 {
        p.current_leader_epoch = 2;
    }
    if v >= 12 {
        p.last_fetched_epoch = 1;
    }
    let mut t = FetchTopic::default().with_partitions(vec![p.clone(), p.with_partition(0)]);
    let mut forgotten = ForgottenTopic::default().with_partitions(vec![7]);
    if v >= 13 {
        t.topic_id = uuid::Uuid::from_u128(0x1234);
        forgotten.topic_id = uuid::Uuid::from_u128(0x5678);
    } else {
        t.topic = topic("t");
        forgotten.topic = topic("old");
    }
    let mut r = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_isolation_level(1)
        .with_topics(vec![t]);
    if v >= 7 {
        r.session_id = 0;
        r.session_epoch = -1;
        r.forgotten_topics_data = vec![forgotten];
    }
    if v >= 11 {
        r.rack_id = s("rack-a");
    }
    RequestKind::Fetch(r)
}

fn list_offsets(v: i16) -> RequestKind {
    use list_offsets_request::*;
    let mut p = ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1);
    if v >= 4 {
        p.current_leader_epoch = 5;
    }
    let t = ListOffsetsTopic::default()
        .with_name(topic("t"))
        .with_partitions(vec![p.clone(), p.with_partition_index(1).with_timestamp(-2)]);
    let mut r = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]);
    if v >= 2 {
        r.isolation_level = 1;
    }
    RequestKind::ListOffsets(r)
}

fn elect_leaders(v: i16) -> RequestKind {
    use elect_leaders_request::*;
    let t = TopicPartitions::default().with_topic(topic("t")).with_partitions(vec![0, 1]);
    let mut r = ElectLeadersRequest::default().with_topic_partitions(Some(vec![t]));
    r.timeout_ms = 30_000;
    if v >= 1 {
        r.election_type = 1;
    }
    RequestKind::ElectLeaders(r)
}

fn alter_partition_reassignments(v: i16) -> RequestKind {
    use alter_partition_reassignments_request::*;
    let p = ReassignablePartition::default()
        .with_partition_index(0)
        .with_replicas(Some(vec![BrokerId(1), BrokerId(2)]));
    let t = ReassignableTopic::default()
        .with_name(topic("t"))
        .with_partitions(vec![p, ReassignablePartition::default().with_partition_index(1)]);
    let mut r = AlterPartitionReassignmentsRequest::default().with_topics(vec![t]);
    r.timeout_ms = 30_000;
    if v >= 1 {
        r.allow_replication_factor_change = false;
    }
    RequestKind::AlterPartitionReassignments(r)
}

fn list_partition_reassignments(_v: i16) -> RequestKind {
    use list_partition_reassignments_request::*;
    let t = ListPartitionReassignmentsTopics::default()
        .with_name(topic("t"))
        .with_partition_indexes(vec![0]);
    let r = ListPartitionReassignmentsRequest::default().with_topics(Some(vec![t]));
    RequestKind::ListPartitionReassignments(r.with_timeout_ms(30_000))
}

fn describe_user_scram_credentials(_v: i16) -> RequestKind {
    use describe_user_scram_credentials_request::UserName;
    let users = vec![UserName::default().with_name(s("alice"))];
    RequestKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsRequest::default().with_users(Some(users)),
    )
}

fn alter_user_scram_credentials(_v: i16) -> RequestKind {
    use alter_user_scram_credentials_request::*;
    let upsert = ScramCredentialUpsertion::default()
        .with_name(s("alice"))
        .with_mechanism(2)
        .with_iterations(4096)
        .with_salt(Bytes::from_static(b"salt"))
        .with_salted_password(Bytes::from_static(&[7; 64]));
    let delete = ScramCredentialDeletion::default().with_name(s("bob")).with_mechanism(1);
    RequestKind::AlterUserScramCredentials(
        AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![upsert])
            .with_deletions(vec![delete]),
    )
}

fn offset_for_leader_epoch(v: i16) -> RequestKind {
    use offset_for_leader_epoch_request::*;
    let p = OffsetForLeaderPartition::default()
        .with_partition(0)
        .with_current_leader_epoch(3)
        .with_leader_epoch(2);
    let t = OffsetForLeaderTopic::default().with_topic(topic("t")).with_partitions(vec![p]);
    let mut r = OffsetForLeaderEpochRequest::default().with_topics(vec![t]);
    if v >= 3 {
        r.replica_id = BrokerId(-1);
    }
    RequestKind::OffsetForLeaderEpoch(r)
}

fn metadata(v: i16) -> RequestKind {
    use metadata_request::*;
    let mut t = MetadataRequestTopic::default().with_name(Some(topic("t")));
    if v >= 10 {
        t.topic_id = uuid::Uuid::nil();
    }
    let mut r = MetadataRequest::default()
        .with_topics(Some(vec![t.clone(), t.with_name(Some(topic("u")))]));
    if v >= 4 {
        r.allow_auto_topic_creation = false;
    }
    if (8..=10).contains(&v) {
        r.include_cluster_authorized_operations = true;
    }
    if v >= 8 {
        r.include_topic_authorized_operations = true;
    }
    RequestKind::Metadata(r)
}

fn api_versions(v: i16) -> RequestKind {
    let mut r = ApiVersionsRequest::default();
    if v >= 3 {
        r.client_software_name = s("librdkafka");
        r.client_software_version = s("2.16.0");
    }
    RequestKind::ApiVersions(r)
}

fn create_topics(_v: i16) -> RequestKind {
    use create_topics_request::*;
    let config = CreatableTopicConfig::default()
        .with_name(s("cleanup.policy"))
        .with_value(Some(s("compact")));
    let assignment = CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(vec![BrokerId(1), BrokerId(2)]);
    let explicit = CreatableTopic::default()
        .with_name(topic("placed"))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(vec![assignment]);
    let t = CreatableTopic::default()
        .with_name(topic("t"))
        .with_num_partitions(3)
        .with_replication_factor(1)
        .with_configs(vec![config]);
    RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_topics(vec![t, explicit])
            .with_timeout_ms(30_000)
            .with_validate_only(true),
    )
}

fn delete_topics(v: i16) -> RequestKind {
    use delete_topics_request::*;
    let mut r = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if v >= 6 {
        let named = DeleteTopicState::default().with_name(Some(topic("t")));
        let by_id = DeleteTopicState::default().with_topic_id(uuid::Uuid::from_u128(9));
        r.topics = vec![named, by_id];
    } else {
        r.topic_names = vec![topic("t"), topic("u")];
    }
    RequestKind::DeleteTopics(r)
}

fn create_partitions(_v: i16) -> RequestKind {
    use create_partitions_request::*;
    let assignment = CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]);
    let t = CreatePartitionsTopic::default()
        .with_name(topic("t"))
        .with_count(4)
        .with_assignments(Some(vec![assignment]));
    let u = CreatePartitionsTopic::default().with_name(topic("u")).with_count(2);
    RequestKind::CreatePartitions(
        CreatePartitionsRequest::default().with_topics(vec![t, u]).with_timeout_ms(30_000),
    )
}

fn describe_configs(v: i16) -> RequestKind {
    use describe_configs_request::*;
    let named = DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("t"))
        .with_configuration_keys(Some(vec![s("retention.ms"), s("cleanup.policy")]));
    let all = DescribeConfigsResource::default().with_resource_type(4).with_resource_name(s("0"));
    let mut r = DescribeConfigsRequest::default()
        .with_resources(vec![named, all])
        .with_include_synonyms(true);
    if v >= 3 {
        r.include_documentation = true;
    }
    RequestKind::DescribeConfigs(r)
}

fn alter_configs(_v: i16) -> RequestKind {
    use alter_configs_request::*;
    let config =
        AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("1000")));
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("t"))
        .with_configs(vec![config.clone(), config.with_name(s("x")).with_value(None)]);
    RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![resource]))
}

fn incremental_alter_configs(_v: i16) -> RequestKind {
    use incremental_alter_configs_request::*;
    let set = AlterableConfig::default()
        .with_name(s("retention.ms"))
        .with_config_operation(0)
        .with_value(Some(s("1000")));
    let delete = AlterableConfig::default().with_name(s("segment.ms")).with_config_operation(1);
    let resource = AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("t"))
        .with_configs(vec![set, delete]);
    RequestKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsRequest::default().with_resources(vec![resource]),
    )
}

fn delete_records(_v: i16) -> RequestKind {
    use delete_records_request::*;
    let p = DeleteRecordsPartition::default().with_partition_index(0).with_offset(10);
    let t = DeleteRecordsTopic::default()
        .with_name(topic("t"))
        .with_partitions(vec![p.clone(), p.with_partition_index(1).with_offset(-1)]);
    RequestKind::DeleteRecords(
        DeleteRecordsRequest::default().with_topics(vec![t]).with_timeout_ms(30_000),
    )
}

fn find_coordinator(v: i16) -> RequestKind {
    let mut r = FindCoordinatorRequest::default();
    if v >= 1 {
        r.key_type = 1;
    }
    if v >= 4 {
        r.coordinator_keys = vec![s("g1"), s("g2")];
    } else {
        r.key = s("g1");
    }
    RequestKind::FindCoordinator(r)
}

fn join_group(v: i16) -> RequestKind {
    use join_group_request::*;
    let protocol = |name: &str| {
        JoinGroupRequestProtocol::default()
            .with_name(s(name))
            .with_metadata(Bytes::from_static(b"\x00\x03\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff"))
    };
    let mut r = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(45_000)
        .with_member_id(s("consumer-1-5d1c"))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol("range"), protocol("cooperative-sticky")]);
    if v >= 1 {
        r.rebalance_timeout_ms = 300_000;
    }
    if v >= 5 {
        r.group_instance_id = Some(s("instance-1"));
    }
    if v >= 8 {
        r.reason = Some(s("rebalance"));
    }
    RequestKind::JoinGroup(r)
}

fn sync_group(v: i16) -> RequestKind {
    use sync_group_request::*;
    let assignment = |member: &str| {
        SyncGroupRequestAssignment::default().with_member_id(s(member)).with_assignment(
            Bytes::from_static(
                b"\x00\x03\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x01\x00\x00\x00\x00",
            ),
        )
    };
    let mut r = SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(3)
        .with_member_id(s("a"))
        .with_assignments(vec![assignment("a"), assignment("b")]);
    if v >= 3 {
        r.group_instance_id = Some(s("instance-1"));
    }
    if v >= 5 {
        r.protocol_type = Some(s("consumer"));
        r.protocol_name = Some(s("range"));
    }
    RequestKind::SyncGroup(r)
}

fn heartbeat(v: i16) -> RequestKind {
    let mut r = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(3)
        .with_member_id(s("a"));
    if v >= 3 {
        r.group_instance_id = Some(s("instance-1"));
    }
    RequestKind::Heartbeat(r)
}

fn leave_group(v: i16) -> RequestKind {
    use leave_group_request::*;
    let mut r = LeaveGroupRequest::default().with_group_id(GroupId(s("g")));
    if v >= 3 {
        let mut a = MemberIdentity::default().with_member_id(s("a"));
        let b = MemberIdentity::default().with_group_instance_id(Some(s("instance-2")));
        if v >= 5 {
            a.reason = Some(s("closing"));
        }
        r.members = vec![a, b];
    } else {
        r.member_id = s("a");
    }
    RequestKind::LeaveGroup(r)
}

fn offset_commit(v: i16) -> RequestKind {
    use offset_commit_request::*;
    let mut p = OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(42)
        .with_committed_metadata(Some(s("meta")));
    if v >= 6 {
        p.committed_leader_epoch = 4;
    }
    let t = OffsetCommitRequestTopic::default()
        .with_name(topic("t"))
        .with_partitions(vec![p.clone(), p.with_partition_index(1).with_committed_metadata(None)]);
    let mut r = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(3)
        .with_member_id(s("a"))
        .with_topics(vec![t]);
    if v <= 4 {
        r.retention_time_ms = 86_400_000;
    }
    if v >= 7 {
        r.group_instance_id = Some(s("instance-1"));
    }
    RequestKind::OffsetCommit(r)
}

fn offset_fetch(v: i16) -> RequestKind {
    use offset_fetch_request::*;
    let mut r = OffsetFetchRequest::default();
    if v >= 8 {
        let topics = OffsetFetchRequestTopics::default()
            .with_name(topic("t"))
            .with_partition_indexes(vec![0, 1]);
        let mut g = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![topics]));
        if v >= 9 {
            g.member_id = Some(s("a"));
            g.member_epoch = 3;
        }
        let all = OffsetFetchRequestGroup::default().with_group_id(GroupId(s("h")));
        r.groups = vec![g, all];
    } else {
        let t = OffsetFetchRequestTopic::default()
            .with_name(topic("t"))
            .with_partition_indexes(vec![0, 1]);
        r.group_id = GroupId(s("g"));
        r.topics = Some(vec![t]);
    }
    if v >= 7 {
        r.require_stable = true;
    }
    RequestKind::OffsetFetch(r)
}

fn list_groups(v: i16) -> RequestKind {
    let mut r = ListGroupsRequest::default();
    if v >= 4 {
        r.states_filter = vec![s("Stable"), s("Empty")];
    }
    if v >= 5 {
        r.types_filter = vec![s("classic")];
    }
    RequestKind::ListGroups(r)
}

fn describe_groups(v: i16) -> RequestKind {
    let mut r =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("h"))]);
    if v >= 3 {
        r.include_authorized_operations = true;
    }
    RequestKind::DescribeGroups(r)
}

fn delete_groups(_v: i16) -> RequestKind {
    RequestKind::DeleteGroups(
        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g")), GroupId(s("h"))]),
    )
}

fn offset_delete(_v: i16) -> RequestKind {
    use offset_delete_request::*;
    let p = OffsetDeleteRequestPartition::default().with_partition_index(0);
    let t = OffsetDeleteRequestTopic::default()
        .with_name(topic("t"))
        .with_partitions(vec![p.clone(), p.with_partition_index(1)]);
    RequestKind::OffsetDelete(
        OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![t]),
    )
}

fn init_producer_id(v: i16) -> RequestKind {
    let mut r = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("txn"))))
        .with_transaction_timeout_ms(60_000);
    if v >= 3 {
        r.producer_id = ProducerId(7);
        r.producer_epoch = 2;
    }
    RequestKind::InitProducerId(r)
}

fn add_partitions_to_txn(_v: i16) -> RequestKind {
    use add_partitions_to_txn_request::*;
    let t = AddPartitionsToTxnTopic::default().with_name(topic("t")).with_partitions(vec![0, 1]);
    RequestKind::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s("txn")))
            .with_v3_and_below_producer_id(ProducerId(7))
            .with_v3_and_below_producer_epoch(2)
            .with_v3_and_below_topics(vec![t]),
    )
}

fn add_offsets_to_txn(_v: i16) -> RequestKind {
    RequestKind::AddOffsetsToTxn(
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("txn")))
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(2)
            .with_group_id(GroupId(s("g"))),
    )
}

fn end_txn(_v: i16) -> RequestKind {
    RequestKind::EndTxn(
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("txn")))
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(2)
            .with_committed(true),
    )
}

fn txn_offset_commit(v: i16) -> RequestKind {
    use txn_offset_commit_request::*;
    let mut p = TxnOffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(42)
        .with_committed_metadata(Some(s("meta")));
    if v >= 2 {
        p.committed_leader_epoch = 4;
    }
    let t = TxnOffsetCommitRequestTopic::default()
        .with_name(topic("t"))
        .with_partitions(vec![p.clone(), p.with_partition_index(1)]);
    let mut r = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("txn")))
        .with_group_id(GroupId(s("g")))
        .with_producer_id(ProducerId(7))
        .with_producer_epoch(2)
        .with_topics(vec![t]);
    if v >= 3 {
        r.generation_id = 3;
        r.member_id = s("a");
        r.group_instance_id = Some(s("instance-1"));
    }
    RequestKind::TxnOffsetCommit(r)
}

fn describe_producers(_v: i16) -> RequestKind {
    use describe_producers_request::*;
    let t = TopicRequest::default().with_name(topic("t")).with_partition_indexes(vec![0, 1]);
    RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![t]))
}

fn describe_transactions(_v: i16) -> RequestKind {
    let ids = vec![TransactionalId(s("txn")), TransactionalId(s("other"))];
    RequestKind::DescribeTransactions(
        DescribeTransactionsRequest::default().with_transactional_ids(ids),
    )
}

fn list_transactions(v: i16) -> RequestKind {
    let mut r = ListTransactionsRequest::default()
        .with_state_filters(vec![s("Ongoing")])
        .with_producer_id_filters(vec![ProducerId(7)]);
    if v >= 1 {
        r.duration_filter = 60_000;
    }
    RequestKind::ListTransactions(r)
}

fn describe_cluster(v: i16) -> RequestKind {
    let mut r = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    if v >= 1 {
        r.endpoint_type = 1;
    }
    if v >= 2 {
        r.include_fenced_brokers = true;
    }
    RequestKind::DescribeCluster(r)
}

fn write_txn_markers(_v: i16) -> RequestKind {
    use write_txn_markers_request::*;
    let t = WritableTxnMarkerTopic::default().with_name(topic("t")).with_partition_indexes(vec![0]);
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(7))
        .with_producer_epoch(2)
        .with_transaction_result(true)
        .with_topics(vec![t])
        .with_coordinator_epoch(1);
    RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![marker]))
}

fn describe_acls(_v: i16) -> RequestKind {
    RequestKind::DescribeAcls(
        DescribeAclsRequest::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(s("orders")))
            .with_pattern_type_filter(4)
            .with_principal_filter(Some(s("User:alice")))
            .with_host_filter(Some(s("*")))
            .with_operation(3)
            .with_permission_type(3),
    )
}

fn create_acls(_v: i16) -> RequestKind {
    use create_acls_request::AclCreation;
    let acl = |name: &str, pattern: i8, permission: i8| {
        AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_resource_pattern_type(pattern)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(permission)
    };
    let creations = vec![acl("orders", 3, 3), acl("pay", 4, 2)];
    RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(creations))
}

fn delete_acls(_v: i16) -> RequestKind {
    use delete_acls_request::DeleteAclsFilter;
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(Some(s("orders")))
        .with_pattern_type_filter(3)
        .with_principal_filter(Some(s("User:alice")))
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![filter]))
}

fn describe_client_quotas(_v: i16) -> RequestKind {
    use describe_client_quotas_request::ComponentData;
    let user = ComponentData::default().with_entity_type(s("user")).with_match_type(0);
    let user = user.with_match(Some(s("alice")));
    let client = ComponentData::default().with_entity_type(s("client-id")).with_match_type(1);
    RequestKind::DescribeClientQuotas(
        DescribeClientQuotasRequest::default()
            .with_components(vec![user, client])
            .with_strict(true),
    )
}

fn alter_client_quotas(_v: i16) -> RequestKind {
    use alter_client_quotas_request::{EntityData, EntryData, OpData};
    let entity = vec![
        EntityData::default().with_entity_type(s("user")).with_entity_name(Some(s("alice"))),
        EntityData::default().with_entity_type(s("client-id")).with_entity_name(None),
    ];
    let ops = vec![
        OpData::default().with_key(s("producer_byte_rate")).with_value(1_048_576.0),
        OpData::default().with_key(s("request_percentage")).with_remove(true),
    ];
    let entry = EntryData::default().with_entity(entity).with_ops(ops);
    RequestKind::AlterClientQuotas(
        AlterClientQuotasRequest::default().with_entries(vec![entry]).with_validate_only(true),
    )
}

/// A realistic request of `key` at `version`: every field that version has, set.
fn sample(key: ApiKey, v: i16) -> RequestKind {
    match key {
        ApiKey::Produce => produce(v),
        ApiKey::Fetch => fetch(v),
        ApiKey::ListOffsets => list_offsets(v),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(v),
        ApiKey::Metadata => metadata(v),
        ApiKey::ApiVersions => api_versions(v),
        ApiKey::CreateTopics => create_topics(v),
        ApiKey::DeleteTopics => delete_topics(v),
        ApiKey::CreatePartitions => create_partitions(v),
        ApiKey::DescribeConfigs => describe_configs(v),
        ApiKey::AlterConfigs => alter_configs(v),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs(v),
        ApiKey::DeleteRecords => delete_records(v),
        ApiKey::FindCoordinator => find_coordinator(v),
        ApiKey::JoinGroup => join_group(v),
        ApiKey::SyncGroup => sync_group(v),
        ApiKey::Heartbeat => heartbeat(v),
        ApiKey::LeaveGroup => leave_group(v),
        ApiKey::OffsetCommit => offset_commit(v),
        ApiKey::OffsetFetch => offset_fetch(v),
        ApiKey::ListGroups => list_groups(v),
        ApiKey::DescribeGroups => describe_groups(v),
        ApiKey::DeleteGroups => delete_groups(v),
        ApiKey::OffsetDelete => offset_delete(v),
        ApiKey::InitProducerId => init_producer_id(v),
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn(v),
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn(v),
        ApiKey::EndTxn => end_txn(v),
        ApiKey::TxnOffsetCommit => txn_offset_commit(v),
        ApiKey::DescribeProducers => describe_producers(v),
        ApiKey::DescribeTransactions => describe_transactions(v),
        ApiKey::ListTransactions => list_transactions(v),
        ApiKey::DescribeCluster => describe_cluster(v),
        ApiKey::WriteTxnMarkers => write_txn_markers(v),
        ApiKey::ElectLeaders => elect_leaders(v),
        ApiKey::AlterPartitionReassignments => alter_partition_reassignments(v),
        ApiKey::ListPartitionReassignments => list_partition_reassignments(v),
        ApiKey::DescribeAcls => describe_acls(v),
        ApiKey::CreateAcls => create_acls(v),
        ApiKey::DeleteAcls => delete_acls(v),
        ApiKey::DescribeClientQuotas => describe_client_quotas(v),
        ApiKey::AlterClientQuotas => alter_client_quotas(v),
        ApiKey::SaslHandshake => {
            RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN")))
        }
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0pw")),
        ),
        ApiKey::DescribeUserScramCredentials => describe_user_scram_credentials(v),
        ApiKey::AlterUserScramCredentials => alter_user_scram_credentials(v),
        ApiKey::UnregisterBroker => RequestKind::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(1)),
        ),
        ApiKey::BrokerRegistration => RequestKind::BrokerRegistration(
            BrokerRegistrationRequest::default().with_broker_id(BrokerId(1)),
        ),
        ApiKey::DescribeQuorum => {
            use describe_quorum_request::{PartitionData, TopicData};
            let p = PartitionData::default().with_partition_index(0);
            let t = TopicData::default()
                .with_topic_name(TopicName(s("__cluster_metadata")))
                .with_partitions(vec![p]);
            RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![t]))
        }
        ApiKey::DescribeLogDirs => {
            use describe_log_dirs_request::DescribableLogDirTopic;
            let t = DescribableLogDirTopic::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![0]);
            RequestKind::DescribeLogDirs(
                DescribeLogDirsRequest::default().with_topics(Some(vec![t])),
            )
        }
        ApiKey::AlterReplicaLogDirs => {
            use alter_replica_log_dirs_request::{AlterReplicaLogDir, AlterReplicaLogDirTopic};
            let t = AlterReplicaLogDirTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![0]);
            let d = AlterReplicaLogDir::default().with_path(s("/data")).with_topics(vec![t]);
            RequestKind::AlterReplicaLogDirs(
                AlterReplicaLogDirsRequest::default().with_dirs(vec![d]),
            )
        }
        ApiKey::ListConfigResources => RequestKind::ListConfigResources(
            ListConfigResourcesRequest::default().with_resource_types(if v >= 1 {
                vec![2, 32]
            } else {
                Vec::new()
            }),
        ),
        ApiKey::DescribeTopicPartitions => {
            use describe_topic_partitions_request::{Cursor, TopicRequest};
            let t = TopicRequest::default().with_name(TopicName(s("t")));
            let c = Cursor::default().with_topic_name(TopicName(s("t"))).with_partition_index(1);
            RequestKind::DescribeTopicPartitions(
                DescribeTopicPartitionsRequest::default()
                    .with_topics(vec![t])
                    .with_response_partition_limit(1)
                    .with_cursor(Some(c)),
            )
        }
        ApiKey::ConsumerGroupHeartbeat => consumer_group_heartbeat(v),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(s("g"))])
                .with_include_authorized_operations(true),
        ),
        ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(
            ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("sg")))
                .with_member_id(s("share-member-0000001"))
                .with_subscribed_topic_names(Some(vec![TopicName(s("t"))])),
        ),
        ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(
            ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("sg"))]),
        ),
        ApiKey::ShareFetch => share_fetch(v),
        ApiKey::ShareAcknowledge => share_acknowledge(v),
        ApiKey::DescribeShareGroupOffsets => {
            use describe_share_group_offsets_request::*;
            let t = DescribeShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(s("t")))
                .with_partitions(vec![0, 1]);
            let g = DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(s("sg")))
                .with_topics(Some(vec![t]));
            RequestKind::DescribeShareGroupOffsets(
                DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]),
            )
        }
        ApiKey::AlterShareGroupOffsets => {
            use alter_share_group_offsets_request::*;
            let p = AlterShareGroupOffsetsRequestPartition::default().with_start_offset(5);
            let t = AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(s("t")))
                .with_partitions(vec![p]);
            RequestKind::AlterShareGroupOffsets(
                AlterShareGroupOffsetsRequest::default()
                    .with_group_id(GroupId(s("sg")))
                    .with_topics(vec![t]),
            )
        }
        ApiKey::DeleteShareGroupOffsets => {
            use delete_share_group_offsets_request::*;
            let t =
                DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(TopicName(s("t")));
            RequestKind::DeleteShareGroupOffsets(
                DeleteShareGroupOffsetsRequest::default()
                    .with_group_id(GroupId(s("sg")))
                    .with_topics(vec![t]),
            )
        }
        ApiKey::ReadShareGroupState => {
            use read_share_group_state_request::*;
            let p = PartitionData::default().with_partition(1).with_leader_epoch(4);
            let t = ReadStateData::default()
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(vec![p]);
            RequestKind::ReadShareGroupState(
                ReadShareGroupStateRequest::default().with_group_id(s("sg")).with_topics(vec![t]),
            )
        }
        ApiKey::WriteShareGroupState => {
            use write_share_group_state_request::*;
            let b = StateBatch::default()
                .with_first_offset(5)
                .with_last_offset(9)
                .with_delivery_state(2)
                .with_delivery_count(1);
            let p = PartitionData::default()
                .with_partition(1)
                .with_state_epoch(0)
                .with_leader_epoch(4)
                .with_start_offset(5)
                .with_state_batches(vec![b]);
            let t = WriteStateData::default()
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(vec![p]);
            RequestKind::WriteShareGroupState(
                WriteShareGroupStateRequest::default().with_group_id(s("sg")).with_topics(vec![t]),
            )
        }
        ApiKey::InitializeShareGroupState => {
            use initialize_share_group_state_request::*;
            let p =
                PartitionData::default().with_partition(1).with_state_epoch(2).with_start_offset(5);
            let t = InitializeStateData::default()
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(vec![p]);
            RequestKind::InitializeShareGroupState(
                InitializeShareGroupStateRequest::default()
                    .with_group_id(s("sg"))
                    .with_topics(vec![t]),
            )
        }
        ApiKey::DeleteShareGroupState => {
            use delete_share_group_state_request::*;
            let t = DeleteStateData::default()
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(vec![PartitionData::default().with_partition(1)]);
            RequestKind::DeleteShareGroupState(
                DeleteShareGroupStateRequest::default().with_group_id(s("sg")).with_topics(vec![t]),
            )
        }
        ApiKey::ReadShareGroupStateSummary => {
            use read_share_group_state_summary_request::*;
            let p = PartitionData::default().with_partition(1).with_leader_epoch(4);
            let t = ReadStateSummaryData::default()
                .with_topic_id(uuid::Uuid::from_u128(7))
                .with_partitions(vec![p]);
            RequestKind::ReadShareGroupStateSummary(
                ReadShareGroupStateSummaryRequest::default()
                    .with_group_id(s("sg"))
                    .with_topics(vec![t]),
            )
        }
        other => panic!("no sample of {other:?}: add one for the new API"),
    }
}

fn consumer_group_heartbeat(v: i16) -> RequestKind {
    let owned = consumer_group_heartbeat_request::TopicPartitions::default()
        .with_topic_id(uuid::Uuid::from_u128(7))
        .with_partitions(vec![0, 1]);
    RequestKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("member-0000000000001"))
            .with_member_epoch(3)
            .with_instance_id(Some(s("i")))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
            // The regex field came with v1.
            .with_subscribed_topic_regex((v >= 1).then(|| s("^t.*")))
            .with_server_assignor(Some(s("uniform")))
            .with_topic_partitions(Some(vec![owned])),
    )
}

/// v2 (Kafka 4.2) adds the acquire mode and the renew flag, and the Renew type (4).
fn share_fetch(v: i16) -> RequestKind {
    use share_fetch_request::*;
    let types = if v >= 2 { vec![1, 2, 3, 4] } else { vec![1, 2, 3] };
    let ack = AcknowledgementBatch::default()
        .with_first_offset(0)
        .with_last_offset(types.len() as i64 - 1)
        .with_acknowledge_types(types);
    let p = FetchPartition::default()
        .with_partition_max_bytes(1 << 20)
        .with_acknowledgement_batches(vec![ack]);
    let t = FetchTopic::default().with_topic_id(uuid::Uuid::from_u128(7)).with_partitions(vec![p]);
    let forgotten =
        ForgottenTopic::default().with_topic_id(uuid::Uuid::from_u128(8)).with_partitions(vec![1]);
    let req = ShareFetchRequest::default();
    let req = if v >= 2 { req.with_share_acquire_mode(1).with_is_renew_ack(true) } else { req };
    RequestKind::ShareFetch(
        req.with_group_id(Some(GroupId(s("sg"))))
            .with_member_id(Some(s("share-member-0000001")))
            .with_share_session_epoch(1)
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(500)
            .with_batch_size(500)
            .with_topics(vec![t])
            .with_forgotten_topics_data(vec![forgotten]),
    )
}

fn share_acknowledge(v: i16) -> RequestKind {
    use share_acknowledge_request::*;
    let ack = AcknowledgementBatch::default()
        .with_first_offset(0)
        .with_last_offset(1)
        .with_acknowledge_types(if v >= 2 { vec![4] } else { vec![1] });
    let p = AcknowledgePartition::default().with_acknowledgement_batches(vec![ack]);
    let t = AcknowledgeTopic::default()
        .with_topic_id(uuid::Uuid::from_u128(7))
        .with_partitions(vec![p]);
    RequestKind::ShareAcknowledge(
        ShareAcknowledgeRequest::default()
            .with_is_renew_ack(v >= 2)
            .with_group_id(Some(GroupId(s("sg"))))
            .with_member_id(Some(s("share-member-0000001")))
            .with_share_session_epoch(2)
            .with_topics(vec![t]),
    )
}

/// Writes the corpus: one frame per API and version of `APIS`. Run by hand when `APIS`
/// changes (`cargo test --test fuzz_requests -- --ignored write_the_request_corpus`), then
/// commit the files.
#[test]
#[ignore]
fn write_the_request_corpus() {
    for api in APIS {
        for version in api.min..=api.max {
            let body = sample(api.key, version);
            let client_id = Some(s("fuzz-corpus"));
            let frame = protocol::encode_request(api.key, version, 7, client_id, &body)
                .unwrap_or_else(|e| panic!("{:?} v{version}: {e:#}", api.key));
            let name = format!("{:?}-v{version}", api.key);
            fuzz::save(TARGET, &name, &frame);
        }
    }
}
