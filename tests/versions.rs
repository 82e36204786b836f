//! Every API at every version the broker advertises answers a well-formed request with a
//! response that decodes at that version (kafka-protocol refuses to encode a field that a
//! version lacks, so this catches responses built for the wrong version).

mod common;

use common::{batch, create_topic, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn advertised(conn: &mut Conn) -> Vec<(i16, i16, i16)> {
    let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
    let ResponseKind::ApiVersions(r) = conn.call(ApiKey::ApiVersions, 0, body) else { panic!() };
    r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect()
}

/// A typical request of `key` at `version`, about topic `topic` (id `id`).
fn request(key: ApiKey, version: i16, topic: &str, id: uuid::Uuid) -> Option<RequestKind> {
    if let Some(share) = share_request(key, version, topic, id) {
        return Some(share);
    }
    let scratch = format!("{topic}-scratch-{version}");
    Some(match key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("strata-test"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        ),
        ApiKey::Metadata => {
            let t = metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic)));
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![t])))
        }
        ApiKey::Produce => {
            let p = produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&[(b"k", b"v")])));
            let t = produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![p]);
            let req = ProduceRequest::default().with_acks(1).with_timeout_ms(5000);
            RequestKind::Produce(req.with_topic_data(vec![t]))
        }
        ApiKey::Fetch => {
            let p = fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20);
            let t = fetch_request::FetchTopic::default().with_partitions(vec![p]);
            let t = if version >= 13 { t.with_topic_id(id) } else { t.with_topic(name(topic)) };
            let req = FetchRequest::default().with_max_bytes(1 << 20).with_min_bytes(1);
            RequestKind::Fetch(req.with_max_wait_ms(0).with_topics(vec![t]))
        }
        ApiKey::ListOffsets => {
            let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-2);
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![t]))
        }
        ApiKey::OffsetForLeaderEpoch => {
            use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
            let p = OffsetForLeaderPartition::default().with_current_leader_epoch(-1);
            let t =
                OffsetForLeaderTopic::default().with_topic(name(topic)).with_partitions(vec![p]);
            let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1));
            RequestKind::OffsetForLeaderEpoch(req.with_topics(vec![t]))
        }
        ApiKey::CreateTopics => {
            let t = create_topics_request::CreatableTopic::default()
                .with_name(name(&scratch))
                .with_num_partitions(1)
                .with_replication_factor(1);
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![t]))
        }
        ApiKey::CreatePartitions => {
            let t = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(&scratch))
                .with_count(2);
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![t]))
        }
        ApiKey::DeleteTopics => {
            let req = if version >= 6 {
                let t = delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name(&scratch)));
                DeleteTopicsRequest::default().with_topics(vec![t])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name(&scratch)])
            };
            RequestKind::DeleteTopics(req)
        }
        ApiKey::DescribeConfigs => {
            let r = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.into()));
            let req = DescribeConfigsRequest::default().with_resources(vec![r]);
            RequestKind::DescribeConfigs(req.with_include_synonyms(version >= 1))
        }
        _ => return admin_request(key, version, topic),
    })
}

/// A typical config or DeleteRecords request of `key` at `version` about `topic`.
fn admin_request(key: ApiKey, version: i16, topic: &str) -> Option<RequestKind> {
    Some(match key {
        ApiKey::AlterConfigs => {
            let c = alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_string(format!(
                    "{}",
                    3_600_000 + i64::from(version)
                ))));
            let r = alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.into()))
                .with_configs(vec![c]);
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![r]))
        }
        ApiKey::IncrementalAlterConfigs => {
            let c = incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.bytes"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(format!(
                    "{}",
                    1_000_000 + i64::from(version)
                ))));
            let r = incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.into()))
                .with_configs(vec![c]);
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![r]);
            RequestKind::IncrementalAlterConfigs(req)
        }
        ApiKey::DeleteRecords => {
            let p = delete_records_request::DeleteRecordsPartition::default().with_offset(0);
            let t = delete_records_request::DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![t]))
        }
        _ => return group_request(key, version, topic),
    })
}

/// A typical consumer-group request of `key` at `version`; each version uses its own group so
/// that earlier calls leave nothing behind that changes the answer.
fn group_request(key: ApiKey, version: i16, topic: &str) -> Option<RequestKind> {
    let group = GroupId(StrBytes::from_string(format!("vg-{key:?}-{version}")));
    Some(match key {
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::default();
            RequestKind::FindCoordinator(if version >= 4 {
                req.with_coordinator_keys(vec![group.0])
            } else {
                req.with_key(group.0)
            })
        }
        ApiKey::JoinGroup => {
            let p = join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"));
            let req = JoinGroupRequest::default()
                .with_group_id(group)
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if version >= 1 { 10_000 } else { -1 })
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![p]);
            RequestKind::JoinGroup(req)
        }
        ApiKey::SyncGroup => {
            let req = SyncGroupRequest::default().with_group_id(group).with_generation_id(1);
            RequestKind::SyncGroup(req.with_member_id(StrBytes::from_static_str("nobody")))
        }
        ApiKey::Heartbeat => {
            let req = HeartbeatRequest::default().with_group_id(group).with_generation_id(1);
            RequestKind::Heartbeat(req.with_member_id(StrBytes::from_static_str("nobody")))
        }
        ApiKey::LeaveGroup => {
            let nobody = StrBytes::from_static_str("nobody");
            let req = LeaveGroupRequest::default().with_group_id(group);
            RequestKind::LeaveGroup(if version >= 3 {
                let m = leave_group_request::MemberIdentity::default().with_member_id(nobody);
                req.with_members(vec![m])
            } else {
                req.with_member_id(nobody)
            })
        }
        ApiKey::OffsetCommit => {
            let p = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0);
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            // Generation -1 with no member id: a "simple" commit outside group management.
            let req = OffsetCommitRequest::default().with_group_id(group);
            RequestKind::OffsetCommit(
                req.with_generation_id_or_member_epoch(-1).with_topics(vec![t]),
            )
        }
        ApiKey::OffsetFetch => {
            let req = OffsetFetchRequest::default();
            RequestKind::OffsetFetch(if version >= 8 {
                let t = offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0]);
                let g = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![t]));
                req.with_groups(vec![g])
            } else {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name(topic))
                    .with_partition_indexes(vec![0]);
                req.with_group_id(group).with_topics(Some(vec![t]))
            })
        }
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group]))
        }
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group]))
        }
        // A member joins (v0: the broker names it; v1: the client does) and is assigned
        // the topic's partition; ConsumerGroupDescribe then describes that group.
        ApiKey::ConsumerGroupHeartbeat => {
            let member = if version >= 1 { "vm" } else { "" };
            let req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group)
                .with_member_id(StrBytes::from_static_str(member))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![name(topic)]))
                .with_topic_partitions(Some(Vec::new()));
            RequestKind::ConsumerGroupHeartbeat(req)
        }
        ApiKey::ConsumerGroupDescribe => {
            let joined = format!("vg-{:?}-{version}", ApiKey::ConsumerGroupHeartbeat);
            let groups = vec![GroupId(StrBytes::from_string(joined)), group];
            let req = ConsumerGroupDescribeRequest::default().with_group_ids(groups);
            RequestKind::ConsumerGroupDescribe(req.with_include_authorized_operations(true))
        }
        ApiKey::OffsetDelete => {
            let p = offset_delete_request::OffsetDeleteRequestPartition::default()
                .with_partition_index(0);
            let t = offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            RequestKind::OffsetDelete(
                OffsetDeleteRequest::default().with_group_id(group).with_topics(vec![t]),
            )
        }
        _ => return txn_request(key, version, topic),
    })
}

/// A typical transaction request of `key` at `version`, each version with its own
/// transactional id (unknown to the coordinator: the answer is an error, well encoded).
fn txn_request(key: ApiKey, version: i16, topic: &str) -> Option<RequestKind> {
    let txn = TransactionalId(StrBytes::from_string(format!("vt-{key:?}-{version}")));
    let group = GroupId(StrBytes::from_string(format!("vtg-{key:?}-{version}")));
    Some(match key {
        ApiKey::AddPartitionsToTxn => {
            let t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![0]);
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn)
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![t]);
            RequestKind::AddPartitionsToTxn(req)
        }
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn)
                .with_producer_id(ProducerId(1))
                .with_group_id(group),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default().with_transactional_id(txn).with_producer_id(ProducerId(1)),
        ),
        ApiKey::TxnOffsetCommit => {
            let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0);
            let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![p]);
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(txn)
                .with_group_id(group)
                .with_producer_id(ProducerId(1))
                .with_generation_id(-1)
                .with_topics(vec![t]);
            RequestKind::TxnOffsetCommit(req)
        }
        ApiKey::DescribeProducers => {
            let t = describe_producers_request::TopicRequest::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0]);
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![t]))
        }
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![txn]),
        ),
        ApiKey::WriteTxnMarkers => {
            let t = write_txn_markers_request::WritableTxnMarkerTopic::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0]);
            let m = write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(1))
                .with_topics(vec![t]);
            RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![m]))
        }
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default().with_duration_filter(if version >= 1 {
                0
            } else {
                -1
            }),
        ),
        _ => {
            return access_request(key, version)
                .or_else(|| operations_request(key, version, topic, None))
        }
    })
}

/// A typical ACL or client quota request of `key` at `version` (the broker runs the standard
/// authorizer with User:ANONYMOUS as a super user, so ACL requests do real work).
fn access_request(key: ApiKey, version: i16) -> Option<RequestKind> {
    let resource = StrBytes::from_string(format!("vt-acl-{version}"));
    Some(match key {
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::CreateAcls => {
            let c = create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(resource)
                .with_resource_pattern_type(3)
                .with_principal(StrBytes::from_static_str("User:alice"))
                .with_host(StrBytes::from_static_str("*"))
                .with_operation(3)
                .with_permission_type(3);
            RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![c]))
        }
        ApiKey::DeleteAcls => {
            let f = delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_name_filter(Some(resource))
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1);
            RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![f]))
        }
        ApiKey::DescribeClientQuotas => {
            RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default())
        }
        ApiKey::AlterClientQuotas => {
            use alter_client_quotas_request::{EntityData, EntryData, OpData};
            let name = StrBytes::from_string(format!("vq-{version}"));
            let entity = EntityData::default()
                .with_entity_type(StrBytes::from_static_str("client-id"))
                .with_entity_name(Some(name));
            let op = OpData::default()
                .with_key(StrBytes::from_static_str("producer_byte_rate"))
                .with_value(1e9);
            let entry = EntryData::default().with_entity(vec![entity]).with_ops(vec![op]);
            RequestKind::AlterClientQuotas(
                AlterClientQuotasRequest::default().with_entries(vec![entry]),
            )
        }
        _ => return None,
    })
}

/// A cluster operation of `key` at `version` on partition 0 of `topic`: a preferred
/// election, a move to `target` (a cancellation without one), a listing.
fn operations_request(
    key: ApiKey,
    version: i16,
    topic: &str,
    target: Option<Vec<i32>>,
) -> Option<RequestKind> {
    Some(match key {
        ApiKey::ElectLeaders => {
            let t = elect_leaders_request::TopicPartitions::default()
                .with_topic(name(topic))
                .with_partitions(vec![0]);
            let req = ElectLeadersRequest::default().with_topic_partitions(Some(vec![t]));
            RequestKind::ElectLeaders(req.with_timeout_ms(10_000))
        }
        ApiKey::AlterPartitionReassignments => {
            use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
            let replicas = target.map(|t| t.into_iter().map(BrokerId).collect());
            let p = ReassignablePartition::default().with_replicas(replicas);
            let t = ReassignableTopic::default().with_name(name(topic)).with_partitions(vec![p]);
            let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![t]);
            let req =
                if version >= 1 { req.with_allow_replication_factor_change(true) } else { req };
            RequestKind::AlterPartitionReassignments(req.with_timeout_ms(10_000))
        }
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
        ),
        // On this PLAINTEXT listener both SASL requests are answered ILLEGAL_SASL_STATE and
        // the connection goes on (tests/sasl.rs logs in on a SASL listener).
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default()
                .with_auth_bytes(bytes::Bytes::from_static(b"\0user\0password")),
        ),
        ApiKey::DescribeUserScramCredentials => {
            RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default())
        }
        ApiKey::AlterUserScramCredentials => {
            use alter_user_scram_credentials_request::ScramCredentialDeletion;
            let gone = ScramCredentialDeletion::default()
                .with_name(StrBytes::from_static_str("nobody"))
                .with_mechanism(1);
            RequestKind::AlterUserScramCredentials(
                AlterUserScramCredentialsRequest::default().with_deletions(vec![gone]),
            )
        }
        // Decommission / recommission / the quorum: a single broker answers INVALID_REQUEST
        // (tests/clients/test_cluster_ops.py drains a broker of a cluster).
        ApiKey::UnregisterBroker => RequestKind::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(1)),
        ),
        ApiKey::BrokerRegistration => RequestKind::BrokerRegistration(
            BrokerRegistrationRequest::default().with_broker_id(BrokerId(1)),
        ),
        ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
        // The one log directory: describe every partition; "move" partition 0 of `vt` to
        // the directory it is in (tests/clients/test_kafka_semantics.py checks the answers).
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        ApiKey::AlterReplicaLogDirs => {
            let t = alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                .with_name(name("vt"))
                .with_partitions(vec![0]);
            let d = alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                .with_path(StrBytes::from_static_str("/nowhere"))
                .with_topics(vec![t]);
            RequestKind::AlterReplicaLogDirs(
                AlterReplicaLogDirsRequest::default().with_dirs(vec![d]),
            )
        }
        ApiKey::ListConfigResources => {
            let types = if version >= 1 { vec![2, 4] } else { Vec::new() };
            RequestKind::ListConfigResources(
                ListConfigResourcesRequest::default().with_resource_types(types),
            )
        }
        ApiKey::DescribeTopicPartitions => {
            let t =
                describe_topic_partitions_request::TopicRequest::default().with_name(name("vt"));
            RequestKind::DescribeTopicPartitions(
                DescribeTopicPartitionsRequest::default()
                    .with_topics(vec![t])
                    .with_response_partition_limit(2000),
            )
        }
        _ => return None,
    })
}

/// A share group request (KIP-932) of `key` about partition 0 of `topic` (id `id`): member
/// `vt-m` of share group `vt-share` joins, fetches (opening a share session), acknowledges in
/// it; the offset APIs describe, alter (refused while the group has a member) and delete.
/// From v2 (Kafka 4.2) the fetch is record-limited (KIP-1206) and the acknowledgement a
/// renew (KIP-1222).
fn share_request(key: ApiKey, version: i16, topic: &str, id: uuid::Uuid) -> Option<RequestKind> {
    let group = GroupId(StrBytes::from_static_str("vt-share"));
    let member = StrBytes::from_static_str("vt-m");
    Some(match key {
        ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(
            ShareGroupHeartbeatRequest::default()
                .with_group_id(group)
                .with_member_id(member)
                .with_member_epoch(0)
                .with_subscribed_topic_names(Some(vec![name(topic)])),
        ),
        ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(
            ShareGroupDescribeRequest::default().with_group_ids(vec![group]),
        ),
        ApiKey::ShareFetch => {
            let p = share_fetch_request::FetchPartition::default().with_partition_index(0);
            let t = share_fetch_request::FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![p]);
            RequestKind::ShareFetch(
                ShareFetchRequest::default()
                    .with_group_id(Some(group))
                    .with_member_id(Some(member))
                    .with_share_session_epoch(0)
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_max_records(10)
                    .with_share_acquire_mode(i8::from(version >= 2))
                    .with_topics(vec![t]),
            )
        }
        ApiKey::ShareAcknowledge => {
            let b = share_acknowledge_request::AcknowledgementBatch::default()
                .with_first_offset(0)
                .with_last_offset(0)
                .with_acknowledge_types(vec![if version >= 2 { 4 } else { 1 }]);
            let p = share_acknowledge_request::AcknowledgePartition::default()
                .with_partition_index(0)
                .with_acknowledgement_batches(vec![b]);
            let t = share_acknowledge_request::AcknowledgeTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![p]);
            RequestKind::ShareAcknowledge(
                ShareAcknowledgeRequest::default()
                    .with_group_id(Some(group))
                    .with_member_id(Some(member))
                    .with_share_session_epoch(1)
                    .with_is_renew_ack(version >= 2)
                    .with_topics(vec![t]),
            )
        }
        ApiKey::DescribeShareGroupOffsets => {
            use describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
            let g = DescribeShareGroupOffsetsRequestGroup::default().with_group_id(group);
            RequestKind::DescribeShareGroupOffsets(
                DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]),
            )
        }
        ApiKey::AlterShareGroupOffsets => {
            use alter_share_group_offsets_request::*;
            let p = AlterShareGroupOffsetsRequestPartition::default().with_start_offset(0);
            let t = AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(name(topic))
                .with_partitions(vec![p]);
            RequestKind::AlterShareGroupOffsets(
                AlterShareGroupOffsetsRequest::default().with_group_id(group).with_topics(vec![t]),
            )
        }
        ApiKey::DeleteShareGroupOffsets => {
            use delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
            let t = DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(name(topic));
            RequestKind::DeleteShareGroupOffsets(
                DeleteShareGroupOffsetsRequest::default().with_group_id(group).with_topics(vec![t]),
            )
        }
        // Broker to broker: a share-partition leader's state, written then read.
        ApiKey::WriteShareGroupState => {
            use write_share_group_state_request::*;
            let b = StateBatch::default().with_first_offset(0).with_last_offset(0);
            let p = PartitionData::default().with_start_offset(0).with_state_batches(vec![b]);
            let t = WriteStateData::default().with_topic_id(id).with_partitions(vec![p]);
            RequestKind::WriteShareGroupState(
                WriteShareGroupStateRequest::default().with_group_id(group.0).with_topics(vec![t]),
            )
        }
        ApiKey::ReadShareGroupState => {
            use read_share_group_state_request::*;
            let t = ReadStateData::default()
                .with_topic_id(id)
                .with_partitions(vec![PartitionData::default()]);
            RequestKind::ReadShareGroupState(
                ReadShareGroupStateRequest::default().with_group_id(group.0).with_topics(vec![t]),
            )
        }
        // The group coordinator's side: initialize, summarize, delete.
        ApiKey::InitializeShareGroupState => {
            use initialize_share_group_state_request::*;
            let p = PartitionData::default().with_state_epoch(1).with_start_offset(0);
            let t = InitializeStateData::default().with_topic_id(id).with_partitions(vec![p]);
            RequestKind::InitializeShareGroupState(
                InitializeShareGroupStateRequest::default()
                    .with_group_id(group.0)
                    .with_topics(vec![t]),
            )
        }
        ApiKey::ReadShareGroupStateSummary => {
            use read_share_group_state_summary_request::*;
            let p = PartitionData::default().with_leader_epoch(-1);
            let t = ReadStateSummaryData::default().with_topic_id(id).with_partitions(vec![p]);
            RequestKind::ReadShareGroupStateSummary(
                ReadShareGroupStateSummaryRequest::default()
                    .with_group_id(group.0)
                    .with_topics(vec![t]),
            )
        }
        ApiKey::DeleteShareGroupState => {
            use delete_share_group_state_request::*;
            let t = DeleteStateData::default()
                .with_topic_id(id)
                .with_partitions(vec![PartitionData::default()]);
            RequestKind::DeleteShareGroupState(
                DeleteShareGroupStateRequest::default().with_group_id(group.0).with_topics(vec![t]),
            )
        }
        _ => return None,
    })
}

/// What ShareFetch and ShareAcknowledge v2 add shows in their answers: a record-limited
/// fetch is served (a session opens at epoch 0), and a ShareAcknowledge answers the lock
/// duration (30 s by default), whatever became of its acknowledgement.
fn check_share_v2(response: &ResponseKind, version: i16) {
    if version < 2 {
        return;
    }
    match response {
        ResponseKind::ShareFetch(r) => {
            assert_eq!(r.error_code, 0, "ShareFetch v{version}: {:?}", r.error_message);
            assert_eq!(r.acquisition_lock_timeout_ms, 30_000);
        }
        ResponseKind::ShareAcknowledge(r) => {
            assert_eq!(r.acquisition_lock_timeout_ms, 30_000, "ShareAcknowledge v{version}");
        }
        _ => {}
    }
}

/// Kafka's order: create the scratch topic before adding partitions to it or deleting it.
fn order(key: i16) -> i16 {
    match ApiKey::try_from(key) {
        Ok(ApiKey::CreateTopics) => -3,
        Ok(ApiKey::CreatePartitions) => -2,
        Ok(ApiKey::DeleteTopics) => 100,
        // ACLs exist when DescribeAcls describes them.
        Ok(ApiKey::CreateAcls) => 28,
        _ => key,
    }
}

#[test]
fn every_advertised_version_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &[
            "--shards",
            "2",
            "--auto-create-topics",
            "false",
            "--authorizer",
            "standard",
            "--super-users",
            "User:ANONYMOUS",
        ],
    );
    let mut conn = Conn::connect(broker.addr);
    let id = create_topic(&mut conn, "vt", 1);
    let mut apis = advertised(&mut conn);
    apis.sort_by_key(|(key, _, _)| order(*key));
    let mut untested = Vec::new();
    for (raw_key, min, max) in apis {
        let key = ApiKey::try_from(raw_key).unwrap();
        for version in min..=max {
            let Some(body) = request(key, version, "vt", id) else {
                untested.push(format!("{key:?} v{version}"));
                continue;
            };
            // Conn::call panics if the response does not decode or the broker disconnects.
            let response = conn.call(key, version, body);
            assert_ne!(format!("{response:?}"), "", "{key:?} v{version}");
            check_share_v2(&response, version);
        }
    }
    assert!(untested.is_empty(), "advertised but not covered here: {untested:?}");
    check_lag_v1(&mut conn, "vt", id);
}

/// What DescribeShareGroupOffsets and ReadShareGroupStateSummary v1 add (Kafka 4.2,
/// KIP-1226) for a known state of partition 0 of `topic` (id `id`): group `vt-lag` starts at
/// offset 1 (available) and has offset 2 acknowledged, so one record at or past the start offset is
/// delivery-complete and the lag is the high watermark less 1 less 1. v0 carries neither.
fn check_lag_v1(conn: &mut Conn, topic: &str, id: uuid::Uuid) {
    let group = StrBytes::from_static_str("vt-lag");
    let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![p]);
    let body = RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![t]));
    let ResponseKind::ListOffsets(r) = conn.call(ApiKey::ListOffsets, 1, body) else { panic!() };
    let high_watermark = r.topics[0].partitions[0].offset;
    assert!(high_watermark >= 3, "the produce requests above wrote {high_watermark}");
    {
        use initialize_share_group_state_request::*;
        let p = PartitionData::default().with_state_epoch(1).with_start_offset(1);
        let t = InitializeStateData::default().with_topic_id(id).with_partitions(vec![p]);
        let req = InitializeShareGroupStateRequest::default().with_group_id(group.clone());
        let body = RequestKind::InitializeShareGroupState(req.with_topics(vec![t]));
        let ResponseKind::InitializeShareGroupState(r) =
            conn.call(ApiKey::InitializeShareGroupState, 0, body)
        else {
            panic!()
        };
        assert_eq!(r.results[0].partitions[0].error_code, 0);
    }
    {
        use write_share_group_state_request::*;
        let batch = |offset: i64, state: i8| {
            StateBatch::default()
                .with_first_offset(offset)
                .with_last_offset(offset)
                .with_delivery_state(state)
                .with_delivery_count(1)
        };
        let p = PartitionData::default()
            .with_state_epoch(1)
            .with_start_offset(-1)
            .with_state_batches(vec![batch(1, 0), batch(2, 2)]);
        let t = WriteStateData::default().with_topic_id(id).with_partitions(vec![p]);
        let req = WriteShareGroupStateRequest::default().with_group_id(group.clone());
        let body = RequestKind::WriteShareGroupState(req.with_topics(vec![t]));
        let ResponseKind::WriteShareGroupState(r) =
            conn.call(ApiKey::WriteShareGroupState, 0, body)
        else {
            panic!()
        };
        assert_eq!(r.results[0].partitions[0].error_code, 0);
    }
    for version in 0..=1 {
        use describe_share_group_offsets_request::*;
        let t = DescribeShareGroupOffsetsRequestTopic::default()
            .with_topic_name(name(topic))
            .with_partitions(vec![0]);
        let g = DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(group.clone()))
            .with_topics(Some(vec![t]));
        let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
        let body = RequestKind::DescribeShareGroupOffsets(req);
        let ResponseKind::DescribeShareGroupOffsets(r) =
            conn.call(ApiKey::DescribeShareGroupOffsets, version, body)
        else {
            panic!()
        };
        let p = &r.groups[0].topics[0].partitions[0];
        let lag = if version >= 1 { high_watermark - 2 } else { -1 };
        assert_eq!((p.error_code, p.start_offset, p.lag), (0, 1, lag), "v{version}");
    }
    for version in 0..=1 {
        use read_share_group_state_summary_request::*;
        let p = PartitionData::default().with_leader_epoch(-1);
        let t = ReadStateSummaryData::default().with_topic_id(id).with_partitions(vec![p]);
        let req = ReadShareGroupStateSummaryRequest::default().with_group_id(group.clone());
        let body = RequestKind::ReadShareGroupStateSummary(req.with_topics(vec![t]));
        let ResponseKind::ReadShareGroupStateSummary(r) =
            conn.call(ApiKey::ReadShareGroupStateSummary, version, body)
        else {
            panic!()
        };
        let p = &r.results[0].partitions[0];
        let complete = if version >= 1 { 1 } else { -1 };
        let got = (p.error_code, p.start_offset, p.delivery_complete_count);
        assert_eq!(got, (0, 1, complete), "v{version}");
    }
}

/// The cluster operations at every version they are advertised at, on a cluster where they
/// do something: a preferred election that is not needed, moves that start and are
/// cancelled, the listing that shows them.
#[test]
fn every_cluster_operation_version_answers_on_a_cluster() {
    use common::{create, layout, poll, Cluster};
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let mut conn = Conn::connect(cluster.brokers[0].addr);
    assert_eq!(create(&mut conn, "ops", 1, 2), (0, None));
    let replicas = poll("the partition in sync", || {
        let now = layout(&mut conn, "ops")?;
        (now[0].3.len() == 2).then(|| now[0].2.clone())
    });
    let spare = (1..=3).find(|id| !replicas.contains(id)).unwrap();
    for (key, min, max) in advertised(&mut conn) {
        let key = ApiKey::try_from(key).unwrap();
        for version in min..=max {
            match key {
                ApiKey::ElectLeaders => {
                    let body = operations_request(key, version, "ops", None).unwrap();
                    let ResponseKind::ElectLeaders(r) = conn.call(key, version, body) else {
                        panic!("not an ElectLeaders response")
                    };
                    let code = r.replica_election_results[0].partition_result[0].error_code;
                    assert_eq!(code, 84, "ELECTION_NOT_NEEDED at v{version}");
                }
                ApiKey::AlterPartitionReassignments => {
                    // A move to the spare broker, one back, then a cancellation: of the move
                    // back if it is still in progress (0), else NO_REASSIGNMENT_IN_PROGRESS.
                    for (target, want) in [
                        (Some(vec![replicas[0], spare]), &[0][..]),
                        (Some(replicas.clone()), &[0][..]),
                        (None, &[0, 85][..]),
                    ] {
                        let body = operations_request(key, version, "ops", target).unwrap();
                        let ResponseKind::AlterPartitionReassignments(r) =
                            conn.call(key, version, body)
                        else {
                            panic!("not an AlterPartitionReassignments response")
                        };
                        let code = r.responses[0].partitions[0].error_code;
                        assert!(want.contains(&code), "code {code} at v{version}");
                    }
                }
                ApiKey::DescribeQuorum => {
                    // Every version encodes on a cluster, whose voters v2 lists with their
                    // controller listeners (v0/v1 cannot carry them).
                    let body = RequestKind::DescribeQuorum(DescribeQuorumRequest::default());
                    let ResponseKind::DescribeQuorum(r) = conn.call(key, version, body) else {
                        panic!("not a DescribeQuorum response")
                    };
                    assert_eq!(r.error_code, 0);
                    let voters = &r.topics[0].partitions[0].current_voters;
                    assert_eq!(voters.len(), 3, "v{version}");
                    assert_eq!(r.nodes.len(), if version >= 2 { 3 } else { 0 }, "v{version}");
                }
                ApiKey::ListPartitionReassignments => {
                    let body = operations_request(key, version, "ops", None).unwrap();
                    let ResponseKind::ListPartitionReassignments(r) = conn.call(key, version, body)
                    else {
                        panic!("not a ListPartitionReassignments response")
                    };
                    assert_eq!(r.error_code, 0);
                }
                _ => {}
            }
        }
    }
}
