//! Authorization of topic and config administration, ACLs, client quotas and cluster
//! operations, as Kafka 3.x's `KafkaApis` and `AclApis`:
//!
//! - CreateTopics: needs CREATE on the cluster or on the topic (configs shown with DESCRIBE_CONFIGS
//!   on it); a denial answers TOPIC_AUTHORIZATION_FAILED per topic (`topic_config_error_code`
//!   likewise).
//! - DeleteTopics: needs DELETE on the topic (by id: DESCRIBE too, else no name is returned); a
//!   denial answers TOPIC_AUTHORIZATION_FAILED per topic.
//! - CreatePartitions: needs ALTER on the topic; a denial answers TOPIC_AUTHORIZATION_FAILED per
//!   topic.
//! - DescribeConfigs: needs DESCRIBE_CONFIGS on the topic, on the group for a group, or on the
//!   cluster for a broker; a denial answers TOPIC_, GROUP_ or CLUSTER_AUTHORIZATION_FAILED per
//!   resource.
//! - AlterConfigs, IncrementalAlterConfigs: needs ALTER_CONFIGS likewise; a denial answers
//!   likewise.
//! - DescribeAcls: needs DESCRIBE on the cluster; a denial answers CLUSTER_AUTHORIZATION_FAILED.
//! - CreateAcls, DeleteAcls: needs ALTER on the cluster; a denial answers
//!   CLUSTER_AUTHORIZATION_FAILED per creation / filter.
//! - DescribeClientQuotas: needs DESCRIBE_CONFIGS on the cluster; a denial answers
//!   CLUSTER_AUTHORIZATION_FAILED.
//! - AlterClientQuotas: needs ALTER_CONFIGS on the cluster; a denial answers
//!   CLUSTER_AUTHORIZATION_FAILED per entity.
//! - ElectLeaders, AlterPartitionReassignments: need ALTER on the cluster;
//!   ListPartitionReassignments: DESCRIBE on the cluster; a denial answers
//!   CLUSTER_AUTHORIZATION_FAILED (and for each partition named).
//! - UnregisterBroker, BrokerRegistration (decommission, recommission): ALTER on the
//!   cluster; DescribeQuorum: DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED).
//! - DescribeLogDirs: DESCRIBE on the cluster (no results; CLUSTER_AUTHORIZATION_FAILED from
//!   v3); AlterReplicaLogDirs: ALTER on the cluster (the error for each partition).
//! - ListConfigResources: DESCRIBE_CONFIGS on the cluster (CLUSTER_AUTHORIZATION_FAILED).
//! - DescribeUserScramCredentials: DESCRIBE on the cluster; AlterUserScramCredentials: ALTER
//!   on the cluster (CLUSTER_AUTHORIZATION_FAILED for the request, or for each user named).
//!
//! Duplicated topics in CreateTopics and CreatePartitions are left to the handler, which
//! answers INVALID_REQUEST first, as Kafka does.

use std::collections::HashSet;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{answer, append, deny, edit, message, Checked};
use crate::protocol::ResponseError as E;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::server::access::Gate;
use crate::server::shard::Shard;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const GROUP: i8 = 32;
/// CreateTopics v5 added configs to the result.
const CONFIGS_IN_RESULT_VERSION: i16 = 5;

/// The APIs of this file. See the module docs.
pub(super) fn check(gate: &Gate, shard: &Shard, body: RequestKind, version: i16) -> Checked {
    match body {
        RequestKind::CreateTopics(req) => create_topics(gate, req, version),
        RequestKind::DeleteTopics(req) => delete_topics(gate, shard, req),
        RequestKind::CreatePartitions(mut req) => {
            let twice: HashSet<String> = duplicated(req.topics.iter().map(|t| t.name.0.as_str()))
                .into_iter()
                .map(Into::into)
                .collect();
            let denied = deny(&mut req.topics, |t| {
                twice.contains(t.name.0.as_str()) || topic(gate, Operation::Alter, &t.name)
            });
            let finish = append(denied, |r, denied| {
                let ResponseKind::CreatePartitions(r) = r else { return };
                r.results.extend(denied.into_iter().map(|t| {
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(E::TopicAuthorizationFailed.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "The topic authorization is failed.",
                        )))
                }));
            });
            Ok((RequestKind::CreatePartitions(req), finish))
        }
        RequestKind::DescribeConfigs(req) => describe_configs(gate, req),
        RequestKind::AlterConfigs(mut req) => {
            let denied = deny(&mut req.resources, |r| {
                configs_allowed(gate, Operation::AlterConfigs, r.resource_type, &r.resource_name)
            });
            let finish = append(denied, |r, denied| {
                let ResponseKind::AlterConfigs(r) = r else { return };
                r.responses.extend(denied.into_iter().map(|d| {
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(configs_error(d.resource_type).code())
                        .with_resource_type(d.resource_type)
                        .with_resource_name(d.resource_name)
                }));
            });
            Ok((RequestKind::AlterConfigs(req), finish))
        }
        RequestKind::IncrementalAlterConfigs(mut req) => {
            let denied = deny(&mut req.resources, |r| {
                configs_allowed(gate, Operation::AlterConfigs, r.resource_type, &r.resource_name)
            });
            let finish = append(denied, |r, denied| {
                let ResponseKind::IncrementalAlterConfigs(r) = r else { return };
                r.responses.extend(denied.into_iter().map(|d| {
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(configs_error(d.resource_type).code())
                        .with_resource_type(d.resource_type)
                        .with_resource_name(d.resource_name)
                }));
            });
            Ok((RequestKind::IncrementalAlterConfigs(req), finish))
        }
        body => security(gate, body),
    }
}

fn topic(gate: &Gate, op: Operation, name: &str) -> bool {
    gate.allowed(op, ResourceType::Topic, name)
}

/// Names given more than once.
fn duplicated<'a>(names: impl Iterator<Item = &'a str>) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    names.filter(|n| !seen.insert(*n)).collect()
}

fn create_topics(gate: &Gate, mut req: CreateTopicsRequest, version: i16) -> Checked {
    let on_cluster = gate.cluster_quietly(Operation::Create);
    let twice: HashSet<String> = duplicated(req.topics.iter().map(|t| t.name.0.as_str()))
        .into_iter()
        .map(Into::into)
        .collect();
    let denied = deny(&mut req.topics, |t| {
        on_cluster || twice.contains(t.name.0.as_str()) || topic(gate, Operation::Create, &t.name)
    });
    // Configs are returned only with DESCRIBE_CONFIGS on the topic.
    let hidden: Vec<TopicName> = if version >= CONFIGS_IN_RESULT_VERSION {
        let permitted = |t: &&create_topics_request::CreatableTopic| {
            gate.permits(Operation::DescribeConfigs, ResourceType::Topic, &t.name)
        };
        req.topics.iter().filter(|t| !permitted(t)).map(|t| t.name.clone()).collect()
    } else {
        Vec::new()
    };
    if denied.is_empty() && hidden.is_empty() {
        return Ok((RequestKind::CreateTopics(req), None));
    }
    let finish = edit(move |r| {
        let ResponseKind::CreateTopics(r) = r else { return };
        for t in r.topics.iter_mut().filter(|t| t.error_code == 0 && hidden.contains(&t.name)) {
            t.configs = None;
            t.topic_config_error_code = E::TopicAuthorizationFailed.code();
        }
        r.topics.extend(denied.into_iter().map(|t| {
            create_topics_response::CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(E::TopicAuthorizationFailed.code())
                .with_error_message(Some(StrBytes::from_static_str("Authorization failed.")))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        }));
    });
    Ok((RequestKind::CreateTopics(req), finish))
}

fn delete_topics(gate: &Gate, shard: &Shard, mut req: DeleteTopicsRequest) -> Checked {
    use delete_topics_response::DeletableTopicResult;
    let refused = |name| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_error_code(E::TopicAuthorizationFailed.code())
    };
    let mut denied: Vec<DeletableTopicResult> =
        deny(&mut req.topic_names, |n| topic(gate, Operation::Delete, n))
            .into_iter()
            .map(|n| refused(Some(n)))
            .collect();
    let meta = shard.meta();
    let mut by_id = Vec::new();
    let refused_states = deny(&mut req.topics, |t| {
        let name = match &t.name {
            Some(name) => name.0.as_str(),
            None => match meta.topic_by_id(t.topic_id) {
                Some(found) => found.name.as_str(),
                None => return true, // UNKNOWN_TOPIC_ID, from the handler
            },
        };
        let by_id_only = t.name.is_none();
        if by_id_only && !gate.allowed(Operation::Describe, ResourceType::Topic, name) {
            return false; // answered without the name
        }
        let allowed = topic(gate, Operation::Delete, name);
        if !allowed && by_id_only {
            by_id.push((t.topic_id, name.to_owned()));
        }
        allowed
    });
    for t in refused_states {
        let name = t.name.or_else(|| {
            let known = by_id.iter().find(|(id, _)| *id == t.topic_id);
            known.map(|(_, n)| TopicName(StrBytes::from_string(n.clone())))
        });
        denied.push(refused(name).with_topic_id(t.topic_id));
    }
    let finish = append(denied, |r, denied| {
        if let ResponseKind::DeleteTopics(r) = r {
            r.responses.extend(denied);
        }
    });
    Ok((RequestKind::DeleteTopics(req), finish))
}

/// Whether `op` is allowed on a config resource: a topic, or (broker, broker logger) the
/// cluster; other types are left to the handler's INVALID_REQUEST.
fn configs_allowed(gate: &Gate, op: Operation, resource_type: i8, name: &str) -> bool {
    match resource_type {
        TOPIC => gate.allowed(op, ResourceType::Topic, name),
        BROKER | BROKER_LOGGER => gate.allowed(op, ResourceType::Cluster, CLUSTER_NAME),
        GROUP => gate.allowed(op, ResourceType::Group, name),
        _ => true,
    }
}

fn configs_error(resource_type: i8) -> E {
    if resource_type == TOPIC {
        E::TopicAuthorizationFailed
    } else if resource_type == GROUP {
        E::GroupAuthorizationFailed
    } else {
        E::ClusterAuthorizationFailed
    }
}

fn describe_configs(gate: &Gate, mut req: DescribeConfigsRequest) -> Checked {
    let denied = deny(&mut req.resources, |r| {
        configs_allowed(gate, Operation::DescribeConfigs, r.resource_type, &r.resource_name)
    });
    let finish = append(denied, |r, denied| {
        let ResponseKind::DescribeConfigs(r) = r else { return };
        r.results.extend(denied.into_iter().map(|d| {
            let error = configs_error(d.resource_type);
            describe_configs_response::DescribeConfigsResult::default()
                .with_error_code(error.code())
                .with_error_message(message(error))
                .with_resource_type(d.resource_type)
                .with_resource_name(d.resource_name)
        }));
    });
    Ok((RequestKind::DescribeConfigs(req), finish))
}

/// The ACL and quota APIs: cluster-level permissions, whole request.
fn security(gate: &Gate, body: RequestKind) -> Checked {
    let denied = E::ClusterAuthorizationFailed;
    let code = denied.code();
    let refuse = |op| !gate.cluster(op);
    match body {
        RequestKind::DescribeAcls(_) if refuse(Operation::Describe) => {
            let r = DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied));
            answer(ResponseKind::DescribeAcls(r))
        }
        RequestKind::CreateAcls(req) if refuse(Operation::Alter) => {
            let results = req.creations.iter().map(|_| {
                create_acls_response::AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(message(denied))
            });
            answer(ResponseKind::CreateAcls(
                CreateAclsResponse::default().with_results(results.collect()),
            ))
        }
        RequestKind::DeleteAcls(req) if refuse(Operation::Alter) => {
            let results = req.filters.iter().map(|_| {
                delete_acls_response::DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(message(denied))
            });
            let r = DeleteAclsResponse::default().with_filter_results(results.collect());
            answer(ResponseKind::DeleteAcls(r))
        }
        RequestKind::DescribeClientQuotas(_) if refuse(Operation::DescribeConfigs) => {
            let r = DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied));
            answer(ResponseKind::DescribeClientQuotas(r))
        }
        RequestKind::AlterClientQuotas(req) if refuse(Operation::AlterConfigs) => {
            let entries = req.entries.iter().map(|e| {
                let entity = e.entity.iter().map(|p| {
                    alter_client_quotas_response::EntityData::default()
                        .with_entity_type(p.entity_type.clone())
                        .with_entity_name(p.entity_name.clone())
                });
                alter_client_quotas_response::EntryData::default()
                    .with_error_code(code)
                    .with_error_message(message(denied))
                    .with_entity(entity.collect())
            });
            let r = AlterClientQuotasResponse::default().with_entries(entries.collect());
            answer(ResponseKind::AlterClientQuotas(r))
        }
        body => operations(gate, body),
    }
}

/// The cluster operations (elections, reassignments): ALTER or DESCRIBE on the cluster, whole
/// request, as Kafka's `handleElectLeaders` and its controller's reassignment APIs.
fn operations(gate: &Gate, body: RequestKind) -> Checked {
    let denied = E::ClusterAuthorizationFailed;
    let code = denied.code();
    let refuse = |op| !gate.cluster(op);
    match body {
        RequestKind::ElectLeaders(req) if refuse(Operation::Alter) => {
            use elect_leaders_response::{PartitionResult, ReplicaElectionResult};
            let topics = req.topic_partitions.unwrap_or_default().into_iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    PartitionResult::default()
                        .with_partition_id(*p)
                        .with_error_code(code)
                        .with_error_message(message(denied))
                });
                ReplicaElectionResult::default()
                    .with_topic(t.topic)
                    .with_partition_result(partitions.collect())
            });
            let r = ElectLeadersResponse::default()
                .with_error_code(code)
                .with_replica_election_results(topics.collect());
            answer(ResponseKind::ElectLeaders(r))
        }
        RequestKind::AlterPartitionReassignments(req) if refuse(Operation::Alter) => {
            use alter_partition_reassignments_response::{
                ReassignablePartitionResponse, ReassignableTopicResponse,
            };
            let topics = req.topics.into_iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(message(denied))
                });
                ReassignableTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions.collect())
            });
            let r = AlterPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied))
                .with_responses(topics.collect());
            answer(ResponseKind::AlterPartitionReassignments(r))
        }
        RequestKind::ListPartitionReassignments(_) if refuse(Operation::Describe) => {
            let r = ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied));
            answer(ResponseKind::ListPartitionReassignments(r))
        }
        // SCRAM users (KIP-554): DESCRIBE or ALTER on the cluster, as Kafka's handlers.
        RequestKind::DescribeUserScramCredentials(_) if refuse(Operation::Describe) => {
            let r = DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied));
            answer(ResponseKind::DescribeUserScramCredentials(r))
        }
        RequestKind::AlterUserScramCredentials(req) if refuse(Operation::Alter) => {
            use alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
            let users = req.deletions.iter().map(|d| &d.name);
            let mut names: Vec<_> = users.chain(req.upsertions.iter().map(|u| &u.name)).collect();
            names.dedup();
            let results = names.into_iter().map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(user.clone())
                    .with_error_code(code)
                    .with_error_message(message(denied))
            });
            let r = AlterUserScramCredentialsResponse::default().with_results(results.collect());
            answer(ResponseKind::AlterUserScramCredentials(r))
        }
        // Decommission and recommission: ALTER on the cluster (Kafka's UnregisterBroker);
        // the quorum's membership: DESCRIBE on the cluster (Kafka's DescribeQuorum).
        RequestKind::UnregisterBroker(_) if refuse(Operation::Alter) => {
            let r = UnregisterBrokerResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied));
            answer(ResponseKind::UnregisterBroker(r))
        }
        RequestKind::BrokerRegistration(_) if refuse(Operation::Alter) => {
            let r = BrokerRegistrationResponse::default().with_error_code(code);
            answer(ResponseKind::BrokerRegistration(r))
        }
        RequestKind::DescribeQuorum(_) if refuse(Operation::Describe) => {
            let r = DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(message(denied));
            answer(ResponseKind::DescribeQuorum(r))
        }
        // Log directories: DESCRIBE on the cluster to list them (no results, and from v3 the
        // error), ALTER on the cluster to move replicas (the error for each partition).
        RequestKind::DescribeLogDirs(_) if refuse(Operation::Describe) => answer(
            ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_error_code(code)),
        ),
        // Which resources have configs: DESCRIBE_CONFIGS on the cluster (Kafka's).
        RequestKind::ListConfigResources(_) if refuse(Operation::DescribeConfigs) => {
            answer(ResponseKind::ListConfigResources(
                ListConfigResourcesResponse::default().with_error_code(code),
            ))
        }
        RequestKind::AlterReplicaLogDirs(req) if refuse(Operation::Alter) => {
            use alter_replica_log_dirs_response::{
                AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
            };
            let results = req
                .dirs
                .iter()
                .flat_map(|d| &d.topics)
                .map(|t| {
                    AlterReplicaLogDirTopicResult::default()
                        .with_topic_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    AlterReplicaLogDirPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            answer(ResponseKind::AlterReplicaLogDirs(
                AlterReplicaLogDirsResponse::default().with_results(results),
            ))
        }
        body => Ok((body, None)),
    }
}
