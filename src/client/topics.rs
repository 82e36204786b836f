//! Topic administration calls on a [`Client`]: list, create, delete, configs, partitions.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{protocol, Client, ClientError};

/// Kafka's `ConfigResource.Type` of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type` of a broker (a node id, or empty for the cluster-wide
/// dynamic defaults).
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's `ConfigResource.Type` of a group (its group configs, KIP-848 / KIP-932).
pub const RESOURCE_GROUP: i8 = 32;
/// How long the broker may take for a topic change.
const TIMEOUT_MS: i32 = 30_000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A Kafka error code as an error carrying the broker's message.
fn check(code: i16, message: Option<&StrBytes>, context: String) -> Result<(), ClientError> {
    match message {
        Some(m) if code != 0 => ClientError::check(code, format!("{context}: {}", m.as_str())),
        _ => ClientError::check(code, context),
    }
}

/// One topic as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: uuid::Uuid,
    /// Number of partitions.
    pub partitions: usize,
    /// Whether it is an internal topic (`__consumer_offsets`).
    pub internal: bool,
}

/// One config of a topic as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// Config name.
    pub name: String,
    /// Effective value.
    pub value: Option<String>,
    /// Kafka's source code (1 topic override, 2 dynamic per-broker config, 3 dynamic
    /// cluster-wide default, 4 static broker config, 5 default).
    pub source: i8,
    /// Cannot be altered at run time.
    pub read_only: bool,
    /// A secret (its value is not reported).
    pub sensitive: bool,
}

/// An IncrementalAlterConfigs operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOp {
    /// Set the override.
    Set = 0,
    /// Remove the override.
    Delete = 1,
}

impl Client {
    /// Every topic, sorted by name.
    pub fn list_topics(&mut self) -> Result<Vec<TopicListing>, ClientError> {
        let req = MetadataRequest::default().with_topics(None);
        let (_, ResponseKind::Metadata(r)) =
            self.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))?
        else {
            return Err(protocol("Metadata answered with another message"));
        };
        let mut topics: Vec<TopicListing> = r
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| TopicListing {
                name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                id: t.topic_id,
                partitions: t.partitions.len(),
                internal: t.is_internal,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// CreateTopics for one topic (`partitions` -1: the broker default), with the broker's
    /// default replication factor.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        self.create_replicated_topic(name, partitions, -1, configs)
    }

    /// CreateTopics for one topic with `replication_factor` replicas per partition (-1: the
    /// broker default).
    pub fn create_replicated_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s(k))
                    .with_value(Some(s(v)))
            })
            .collect();
        let topic = create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(configs);
        let req =
            CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(TIMEOUT_MS);
        let (_, ResponseKind::CreateTopics(r)) =
            self.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))?
        else {
            return Err(protocol("CreateTopics answered with another message"));
        };
        let t = r.topics.first().ok_or_else(|| protocol("no topic in CreateTopics answer"))?;
        check(t.error_code, t.error_message.as_ref(), format!("creating topic {name}"))
    }

    /// DeleteTopics for one topic.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(s(name))])
            .with_timeout_ms(TIMEOUT_MS);
        let (_, ResponseKind::DeleteTopics(r)) =
            self.call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(req))?
        else {
            return Err(protocol("DeleteTopics answered with another message"));
        };
        let t = r.responses.first().ok_or_else(|| protocol("no topic in DeleteTopics answer"))?;
        check(t.error_code, t.error_message.as_ref(), format!("deleting topic {name}"))
    }

    /// Every config of a topic with its effective value and source.
    pub fn describe_topic_configs(&mut self, name: &str) -> Result<Vec<ConfigValue>, ClientError> {
        self.describe_configs(RESOURCE_TOPIC, name)
    }

    /// Every config of a resource (`RESOURCE_TOPIC` or `RESOURCE_BROKER`) with its effective
    /// value and source. A broker describes only itself and the cluster-wide defaults (`""`).
    pub fn describe_configs(
        &mut self,
        resource_type: i8,
        name: &str,
    ) -> Result<Vec<ConfigValue>, ClientError> {
        let resource = describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None);
        let req = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let (_, ResponseKind::DescribeConfigs(r)) =
            self.call(ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(req))?
        else {
            return Err(protocol("DescribeConfigs answered with another message"));
        };
        let result = r.results.first().ok_or_else(|| protocol("no DescribeConfigs result"))?;
        check(result.error_code, result.error_message.as_ref(), format!("configs of {name}"))?;
        Ok(result
            .configs
            .iter()
            .map(|c| ConfigValue {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: c.config_source,
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect())
    }

    /// IncrementalAlterConfigs on one topic: `(op, name, value)` in order.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        changes: &[(AlterOp, String, Option<String>)],
    ) -> Result<(), ClientError> {
        self.alter_configs(RESOURCE_TOPIC, name, changes, false)
    }

    /// IncrementalAlterConfigs on one resource: `(op, name, value)` in order; with
    /// `validate_only` the broker only checks them.
    pub fn alter_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        changes: &[(AlterOp, String, Option<String>)],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let configs = changes
            .iter()
            .map(|(op, k, v)| {
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s(k))
                    .with_config_operation(*op as i8)
                    .with_value(v.as_deref().map(s))
            })
            .collect();
        let resource = incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs);
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![resource])
            .with_validate_only(validate_only);
        let body = RequestKind::IncrementalAlterConfigs(req);
        let (_, ResponseKind::IncrementalAlterConfigs(r)) =
            self.call(ApiKey::IncrementalAlterConfigs, 1, body)?
        else {
            return Err(protocol("IncrementalAlterConfigs answered with another message"));
        };
        let result = r.responses.first().ok_or_else(|| protocol("no alter result"))?;
        check(result.error_code, result.error_message.as_ref(), format!("altering {name}"))
    }

    /// CreatePartitions: grow `name` to `total` partitions.
    pub fn add_partitions(&mut self, name: &str, total: i32) -> Result<(), ClientError> {
        let topic = create_partitions_request::CreatePartitionsTopic::default()
            .with_name(TopicName(s(name)))
            .with_count(total);
        let req =
            CreatePartitionsRequest::default().with_topics(vec![topic]).with_timeout_ms(TIMEOUT_MS);
        let (_, ResponseKind::CreatePartitions(r)) =
            self.call(ApiKey::CreatePartitions, 3, RequestKind::CreatePartitions(req))?
        else {
            return Err(protocol("CreatePartitions answered with another message"));
        };
        let t = r.results.first().ok_or_else(|| protocol("no CreatePartitions result"))?;
        check(t.error_code, t.error_message.as_ref(), format!("adding partitions to {name}"))
    }
}
