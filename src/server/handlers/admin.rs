//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs.
//!
//! The internal topics (`__consumer_offsets`, `__transaction_state`) hold the broker's own
//! state: DeleteTopics and CreatePartitions refuse them with TOPIC_AUTHORIZATION_FAILED and a
//! message saying why. Kafka's brokers leave this to its tools (`kafka-topics.sh` refuses both
//! client-side) and to ACLs; any client could otherwise drop every group's offsets, or remap
//! every group to another offsets partition. Redpanda answers the same way for its protected
//! topics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;

use super::str_bytes;
use super::topic_rules::is_internal;
use crate::config::BrokerConfig;
use crate::controller::broker_config::{
    self, BrokerSetting, Update, SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT,
    SOURCE_TOPIC,
};
use crate::controller::group_config;
use crate::controller::placement::{self, replication_factor};
use crate::controller::topic_config::{
    broker_default, broker_synonym, is_list, Kind, TOPIC_CONFIGS,
};
use crate::controller::{ControlError, TopicMeta};
use crate::protocol::ResponseError as E;
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

/// Kafka's `ConfigResource.Type` codes.
pub(super) const RESOURCE_TOPIC: i8 = 2;
pub(super) const RESOURCE_BROKER: i8 = 4;
pub(super) const RESOURCE_GROUP: i8 = 32;
/// Kafka's `ConfigDef.Type` codes used here.
const TYPE_UNKNOWN: i8 = 0;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const TYPE_PASSWORD: i8 = 9;

/// Dynamic broker configs by resource name (see `ClusterMetadata::broker_configs`).
type BrokerLayers = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

fn control_error(e: ControlError) -> (i16, Option<String>) {
    (e.code, Some(e.message))
}

/// A checked CreateTopics entry: partitions, replication factor (-1: the default), configs,
/// and the client's replica list of each partition (empty: the controller places them).
type Creation = (i32, i32, BTreeMap<String, String>, Vec<Vec<i32>>);

fn creation_request(
    broker: &BrokerConfig,
    topic: &CreatableTopic,
) -> Result<Creation, ControlError> {
    let refuse = |error: E, message: &str| ControlError::new(error, message);
    let replication_factor = i32::from(topic.replication_factor);
    // A cluster checks the factor against its registered brokers (see `placement`).
    if !broker.is_clustered() && !matches!(replication_factor, -1 | 1) {
        let msg = "replication factor must be 1 (or -1 for the default) on a single broker";
        return Err(refuse(E::InvalidReplicationFactor, msg));
    }
    let (partitions, assignment) = if topic.assignments.is_empty() {
        let partitions = match topic.num_partitions {
            -1 => broker.default_partitions,
            n => n,
        };
        (partitions, Vec::new())
    } else {
        // Kafka's ReplicationControlManager.createTopic: the counts come from the lists.
        if replication_factor != -1 {
            let msg = "A manual partition assignment was specified, but replication factor was \
                       not set to -1.";
            return Err(refuse(E::InvalidRequest, msg));
        }
        if topic.num_partitions != -1 {
            let msg = "A manual partition assignment was specified, but numPartitions was not \
                       set to -1.";
            return Err(refuse(E::InvalidRequest, msg));
        }
        let mut by_partition = BTreeMap::new();
        for a in &topic.assignments {
            let replicas = a.broker_ids.iter().map(|id| id.0).collect();
            if by_partition.insert(a.partition_index, replicas).is_some() {
                let msg = format!(
                    "Found multiple manual partition assignments for partition {}",
                    a.partition_index
                );
                return Err(refuse(E::InvalidReplicaAssignment, &msg));
            }
        }
        if by_partition.keys().copied().ne(0..by_partition.len() as i32) {
            let msg = "partitions should be a consecutive 0-based integer sequence";
            return Err(refuse(E::InvalidReplicaAssignment, msg));
        }
        let assignment: Vec<Vec<i32>> = by_partition.into_values().collect();
        check_single_broker_assignment(broker, &assignment)?;
        (assignment.len() as i32, assignment)
    };
    let configs = topic
        .configs
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect();
    Ok((partitions, replication_factor, configs, assignment))
}

/// A single broker's check of replica lists a client gave: each must be just this broker
/// (a cluster's controller checks them against its registered brokers).
fn check_single_broker_assignment(
    broker: &BrokerConfig,
    assignment: &[Vec<i32>],
) -> Result<(), ControlError> {
    if broker.is_clustered() {
        return Ok(());
    }
    let node = broker.node_id;
    placement::check_assignment_among(assignment, 1, |id| id == node, |_| false)
}

/// CreateTopics.
pub async fn create_topics(
    shard: &Rc<Shard>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicated: HashSet<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|n| !seen.insert(n.clone()))
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let outcome = if duplicated.contains(&name) {
            Err((E::InvalidRequest.code(), Some("topic named twice in one request".to_owned())))
        } else {
            match creation_request(&shard.config, topic) {
                Ok((partitions, replication_factor, configs, assignment)) => {
                    let validate_only = req.validate_only;
                    let op = ControlOp::CreateTopic {
                        name: name.clone(),
                        partitions,
                        replication_factor,
                        configs,
                        assignment,
                        validate_only,
                    };
                    shard.control(op).await.map_err(control_error)
                }
                Err(e) => Err(control_error(e)),
            }
        };
        results.push(creation_result(shard, topic, outcome, version));
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn creation_result(
    shard: &Shard,
    topic: &CreatableTopic,
    outcome: Result<(), (i16, Option<String>)>,
    version: i16,
) -> CreatableTopicResult {
    // Kafka answers a success with a null message (the field's default is "").
    let result =
        CreatableTopicResult::default().with_name(topic.name.clone()).with_error_message(None);
    if let Err((code, message)) = outcome {
        if code != 0 {
            tracing::info!(topic = %topic.name.0, code, "CreateTopics refused: {message:?}");
        }
        return result
            .with_error_code(code)
            .with_error_message(message.as_deref().map(str_bytes))
            .with_num_partitions(-1)
            .with_replication_factor(-1);
    }
    let meta = shard.meta();
    let Some(created) = meta.topics.get(topic.name.0.as_str()) else {
        // validate_only: nothing was created; report what would have been.
        let (partitions, factor) = match topic.assignments.first() {
            Some(first) => (topic.assignments.len() as i32, first.broker_ids.len() as i16),
            None => (topic.num_partitions, topic.replication_factor.max(1)),
        };
        return result.with_num_partitions(partitions).with_replication_factor(factor);
    };
    let configs = (version >= 5).then(|| {
        config_entries(shard, created)
            .into_iter()
            .map(|e| {
                CreatableTopicConfigs::default()
                    .with_name(e.name)
                    .with_value(e.value)
                    .with_config_source(e.config_source)
            })
            .collect()
    });
    result
        .with_topic_id(created.id)
        .with_num_partitions(created.partitions.len() as i32)
        .with_replication_factor(replication_factor(created) as i16)
        .with_configs(configs)
}

/// DeleteTopics (by name, or by topic id from v6).
pub async fn delete_topics(
    shard: &Rc<Shard>,
    req: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    targets
        .extend(req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let meta = shard.meta();
        let resolved = match &name {
            Some(name) => meta.topics.get(name),
            None => meta.topic_by_id(id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))))
            .with_topic_id(id);
        let Some(topic) = resolved else {
            let error = if name.is_some() { E::UnknownTopicOrPartition } else { E::UnknownTopicId };
            responses.push(result.with_error_code(error.code()));
            continue;
        };
        let (topic_name, topic_id) = (topic.name.clone(), topic.id);
        let result =
            result.with_name(Some(TopicName(str_bytes(&topic_name)))).with_topic_id(topic_id);
        if let Some(message) = internal_refusal(&topic_name, "deleted") {
            responses.push(
                result
                    .with_error_code(E::TopicAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes(&message))),
            );
            continue;
        }
        match shard.control(ControlOp::DeleteTopic { name: topic_name.clone() }).await {
            Ok(()) => {
                tracing::info!(topic = %topic_name, "deleted topic");
                responses.push(result);
            }
            Err(e) => responses.push(
                result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions.
pub async fn create_partitions(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let assignment: Vec<Vec<i32>> = topic
            .assignments
            .iter()
            .flatten()
            .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
            .collect();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if let Err(e) = check_single_broker_assignment(&shard.config, &assignment) {
            let message = Some(str_bytes(&e.message));
            results.push(result.with_error_code(e.code).with_error_message(message));
            continue;
        }
        let op = ControlOp::CreatePartitions {
            name: topic.name.0.to_string(),
            total: topic.count,
            assignment,
            validate_only: req.validate_only,
        };
        if let Some(message) = internal_refusal(&topic.name.0, "given partitions") {
            results.push(
                result
                    .with_error_code(E::TopicAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes(&message))),
            );
            continue;
        }
        results.push(match shard.control(op).await {
            Ok(()) => result,
            Err(e) => {
                result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message)))
            }
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// For an internal topic, why a client may not have it `what` (counted and logged).
fn internal_refusal(topic: &str, what: &str) -> Option<String> {
    if !is_internal(topic) {
        return None;
    }
    crate::refused!(
        WARN,
        "admin_on_internal_topic",
        topic,
        "refused: internal topics cannot be {what}"
    );
    Some(format!("{topic} is an internal topic of the broker and cannot be {what} by clients"))
}

/// DescribeConfigs for topics, this broker (its node id) and the cluster-wide dynamic
/// defaults (an empty broker name), as Kafka answers: a broker describes only itself.
pub fn describe_configs(
    shard: &Rc<Shard>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let meta = shard.meta();
    let layers = &meta.broker_configs;
    let results = req
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let name = resource.resource_name.as_str();
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match meta.topics.get(name) {
                    Some(topic) => topic_entries(&shard.config, layers, topic),
                    None => return result.with_error_code(E::UnknownTopicOrPartition.code()),
                },
                RESOURCE_BROKER if name == shard.config.node_id.to_string() => {
                    broker_entries(&shard.config, layers)
                }
                RESOURCE_BROKER if name.is_empty() => default_entries(layers),
                RESOURCE_GROUP => group_entries(&shard.settings(), meta.group_layer(name)),
                RESOURCE_BROKER => {
                    let msg = format!(
                        "unexpected broker id, expected {} or empty string, but received {name}",
                        shard.config.node_id
                    );
                    return result
                        .with_error_code(E::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(&msg)));
                }
                _ => {
                    let msg = "only topic, broker and group resources are supported";
                    return result
                        .with_error_code(E::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(msg)));
                }
            };
            let keys = resource.configuration_keys.as_ref();
            let wanted =
                |e: &DescribeConfigsResourceResult| keys.is_none_or(|k| k.contains(&e.name));
            let entries = entries
                .into_iter()
                .filter(wanted)
                .map(|e| {
                    let broker = resource.resource_type == RESOURCE_BROKER;
                    with_extras(e, broker, req.include_synonyms, req.include_documentation, version)
                })
                .collect();
            result.with_configs(entries)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn with_extras(
    entry: DescribeConfigsResourceResult,
    broker: bool,
    synonyms: bool,
    documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let name = entry.name.as_str();
    let topic = TOPIC_CONFIGS.iter().find(|d| d.name == name).filter(|_| !broker);
    let doc = match (topic, broker_config::setting(name).filter(|_| broker)) {
        (Some(d), _) if d.enforced => "enforced by Strata".to_owned(),
        (Some(_), _) => "stored; not yet enforced by Strata".to_owned(),
        (None, Some(s)) => match s.update {
            Update::Dynamic(_) => format!("{} (dynamic: per broker or cluster-wide)", s.doc),
            Update::ReadOnly(why) => format!("{} (read-only: {why})", s.doc),
        },
        (None, None) if broker => {
            "not a Strata setting: stored as Kafka stores configs it does not know; no effect"
                .to_owned()
        }
        (None, None) => group_config::def(name).map_or(String::new(), |d| d.doc.to_owned()),
    };
    let kept = if synonyms { entry.synonyms.clone() } else { Vec::new() };
    entry
        .with_synonyms(kept)
        .with_documentation((documentation && version >= 3).then(|| str_bytes(&doc)))
}

/// Every group config of a group: its override (source GROUP_CONFIG), else the broker's
/// setting it overrides (DEFAULT_CONFIG, as Kafka reports a group's defaults).
fn group_entries(
    broker: &BrokerConfig,
    layer: Option<&BTreeMap<String, String>>,
) -> Vec<DescribeConfigsResourceResult> {
    /// Kafka's `ConfigSource.GROUP_CONFIG` and `ConfigDef.Type.INT`.
    const SOURCE_GROUP: i8 = 8;
    const TYPE_INT: i8 = 3;
    group_config::GROUP_CONFIGS
        .iter()
        .map(|def| {
            let default = group_config::broker_default(def.name, broker);
            let mut synonyms = Vec::new();
            if let Some(v) = layer.and_then(|l| l.get(def.name)) {
                synonyms.push(synonym(def.name, Some(v.clone()), SOURCE_GROUP));
            }
            synonyms.push(synonym(def.broker_name, default, SOURCE_DEFAULT));
            let config_type = match def.kind {
                group_config::Kind::Int { .. } => TYPE_INT,
                group_config::Kind::Choice(_) => TYPE_STRING,
            };
            entry_of(def.name, synonyms, config_type)
        })
        .collect()
}

/// A config entry whose value and source are its first synonym's (synonyms come in
/// precedence order); without any, no value from the default.
fn entry_of(
    name: &str,
    synonyms: Vec<DescribeConfigsSynonym>,
    config_type: i8,
) -> DescribeConfigsResourceResult {
    let (value, source) = match synonyms.first() {
        Some(first) => (first.value.clone(), first.source),
        None => (None, SOURCE_DEFAULT),
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(value)
        .with_config_source(source)
        .with_config_type(config_type)
        .with_synonyms(synonyms)
}

fn synonym(name: &str, value: Option<String>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(value.as_deref().map(str_bytes))
        .with_source(source)
}

/// Every topic config of a topic created now (CreateTopics v5+ reports them), with this
/// shard's view of the broker defaults.
fn config_entries(shard: &Shard, topic: &TopicMeta) -> Vec<DescribeConfigsResourceResult> {
    topic_entries(&shard.config, &shard.meta().broker_configs, topic)
}

/// Every topic config with its effective value, where the value comes from, and its synonyms
/// in Kafka's precedence order: topic override, this broker's dynamic value, the cluster-wide
/// dynamic default, the static broker setting, the built-in default.
fn topic_entries(
    broker: &BrokerConfig,
    layers: &BrokerLayers,
    topic: &TopicMeta,
) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let broker_name = broker_synonym(def.name).unwrap_or(def.name);
            let mut synonyms = Vec::new();
            if let Some(v) = topic.configs.get(def.name) {
                synonyms.push(synonym(def.name, Some(v.clone()), SOURCE_TOPIC));
            }
            match broker_config::setting(broker_name) {
                Some(setting) => synonyms.extend(
                    broker_config::sources(setting, broker, layers)
                        .into_iter()
                        .map(|(value, source)| synonym(broker_name, value, source)),
                ),
                None => {
                    let builtin = broker_default(def.name, &BrokerConfig::default());
                    synonyms.push(synonym(broker_name, builtin, SOURCE_DEFAULT));
                }
            }
            let config_type = match def.kind {
                Kind::Long { .. } => TYPE_LONG,
                Kind::Choice(_) if is_list(def.name) => TYPE_LIST,
                Kind::Choice(_) => TYPE_STRING,
            };
            entry_of(def.name, synonyms, config_type)
        })
        .collect()
}

fn config_type(setting: &BrokerSetting, value: Option<&str>) -> i8 {
    if setting.sensitive {
        return TYPE_PASSWORD;
    }
    if broker_config::is_list(setting.name) {
        return TYPE_LIST;
    }
    match value {
        Some("true" | "false") => TYPE_BOOLEAN,
        Some(v) if v.parse::<i64>().is_ok() => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

/// One broker setting as DescribeConfigs reports it (a sensitive one without its values).
fn broker_entry(
    setting: &BrokerSetting,
    synonyms: Vec<(Option<String>, i8)>,
) -> DescribeConfigsResourceResult {
    let hide = |v: Option<String>| if setting.sensitive { None } else { v };
    let config_type = config_type(setting, synonyms.first().and_then(|(v, _)| v.as_deref()));
    let synonyms = synonyms
        .into_iter()
        .map(|(value, source)| synonym(setting.name, hide(value), source))
        .collect();
    entry_of(setting.name, synonyms, config_type)
        .with_read_only(!setting.is_dynamic())
        .with_is_sensitive(setting.sensitive)
}

/// Every setting of this broker: its effective value and where it comes from; then the
/// stored configs Strata does not know that apply to it.
fn broker_entries(
    broker: &BrokerConfig,
    layers: &BrokerLayers,
) -> Vec<DescribeConfigsResourceResult> {
    let mut entries: Vec<DescribeConfigsResourceResult> = broker_config::SETTINGS
        .iter()
        .map(|setting| broker_entry(setting, broker_config::sources(setting, broker, layers)))
        .collect();
    let own = layers.get(&broker.node_id.to_string());
    let default = layers.get("");
    let custom: BTreeSet<&String> = [own, default]
        .into_iter()
        .flatten()
        .flat_map(|layer| layer.keys())
        .filter(|name| broker_config::is_custom(name))
        .collect();
    entries.extend(custom.into_iter().map(|name| {
        let in_own = own.is_some_and(|l| l.contains_key(name));
        let in_default = default.is_some_and(|l| l.contains_key(name));
        let sources = [(in_own, SOURCE_DYNAMIC_BROKER), (in_default, SOURCE_DYNAMIC_DEFAULT)];
        custom_entry(name, sources.iter().filter(|(set, _)| *set).map(|(_, s)| *s))
    }));
    entries
}

/// A stored broker config Strata does not know, reported as Kafka reports a config whose
/// type it does not know: of type UNKNOWN and sensitive (no value).
fn custom_entry(name: &str, sources: impl Iterator<Item = i8>) -> DescribeConfigsResourceResult {
    let synonyms = sources.map(|source| synonym(name, None, source)).collect();
    entry_of(name, synonyms, TYPE_UNKNOWN).with_is_sensitive(true)
}

/// The cluster-wide dynamic defaults that are set (Kafka reports only those for an empty
/// broker name).
fn default_entries(layers: &BrokerLayers) -> Vec<DescribeConfigsResourceResult> {
    let Some(defaults) = layers.get("") else { return Vec::new() };
    defaults
        .iter()
        .map(|(name, value)| match broker_config::setting(name) {
            Some(setting) => {
                broker_entry(setting, vec![(Some(value.clone()), SOURCE_DYNAMIC_DEFAULT)])
            }
            None => custom_entry(name, [SOURCE_DYNAMIC_DEFAULT].into_iter()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn secrets_are_sensitive_and_reported_without_a_value() {
        let broker = BrokerConfig {
            cluster_secret: Some(Secret("hunter2".into())),
            ..BrokerConfig::default()
        };
        let entries = broker_entries(&broker, &BrokerLayers::new());
        let secret = entries.iter().find(|e| e.name.as_str() == "cluster.secret").unwrap();
        assert!(secret.is_sensitive);
        assert!(secret.read_only);
        assert_eq!(secret.value, None);
        assert_eq!(secret.config_source, broker_config::SOURCE_STATIC_BROKER);
        assert!(secret.synonyms.iter().all(|s| s.value.is_none()));
        assert_eq!(secret.config_type, TYPE_PASSWORD);
        let retention = entries.iter().find(|e| e.name.as_str() == "log.retention.ms").unwrap();
        assert!(!retention.is_sensitive);
        assert!(!retention.read_only);
        assert_eq!(retention.config_source, SOURCE_DEFAULT);
        assert_eq!(entries.len(), broker_config::SETTINGS.len());
    }
}
