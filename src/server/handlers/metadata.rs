//! Metadata: brokers, topics and partition leaders; auto-creates topics when allowed.
//!
//! Brokers are listed with the addresses of the listener the request came in on (Kafka's
//! per-listener metadata): a client of the `SECURE` listener is sent every broker's
//! `SECURE` address. A broker without that listener is left out, and a partition it leads
//! answers LISTENER_NOT_FOUND, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::str_bytes;
use crate::controller::{validate_topic_name, BrokerMeta, TopicMeta};
use crate::protocol::ResponseError as E;
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

/// From v4 the client says whether to auto-create; before, Kafka always did.
const AUTO_CREATE_FLAG_VERSION: i16 = 4;

/// Handles one Metadata request that came in on `listener`.
pub async fn handle(
    shard: &Rc<Shard>,
    req: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    let config = &shard.config;
    let node = BrokerId(config.node_id);
    let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = match &req.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect(),
        ),
    };
    let auto_create = config.auto_create_topics
        && (version < AUTO_CREATE_FLAG_VERSION || req.allow_auto_topic_creation);
    let topics = match wanted {
        None => {
            let meta = shard.meta();
            meta.topics.values().map(|t| describe(t, node, &meta.fenced)).collect()
        }
        Some(wanted) => {
            let mut topics = Vec::with_capacity(wanted.len());
            for (name, id) in wanted {
                topics.push(lookup(shard, name, id, auto_create, node).await);
            }
            topics
        }
    };
    let meta = shard.meta();
    let mut topics = topics;
    let brokers: Vec<MetadataResponseBroker> = if meta.brokers.is_empty() {
        let own = config.listener(listener).unwrap_or(config.inter_broker());
        vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(str_bytes(&own.advertised_host))
            .with_port(own.advertised_port.into())]
    } else {
        // Racks from v1 (v0 has no such field).
        let broker = |b: &BrokerMeta| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(host))
                    .with_port(port.into())
                    .with_rack(b.rack.as_deref().filter(|_| version >= 1).map(str_bytes)),
            )
        };
        let listed: Vec<MetadataResponseBroker> =
            meta.brokers.values().filter_map(broker).collect();
        if listed.len() < meta.brokers.len() {
            mark_unreachable_leaders(&mut topics, &listed);
        }
        listed
    };
    // As in KRaft, clients send metadata changes to this broker, which forwards them to the
    // real controller (DescribeCluster names that one): an election never leaves them
    // waiting for a dead controller.
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&meta.cluster_id)))
        .with_controller_id(node)
        .with_topics(topics)
}

/// LISTENER_NOT_FOUND on every partition whose leader is not in `listed` (it has no
/// endpoint on the client's listener).
fn mark_unreachable_leaders(
    topics: &mut [MetadataResponseTopic],
    listed: &[MetadataResponseBroker],
) {
    let partitions = topics.iter_mut().flat_map(|t| t.partitions.iter_mut());
    for p in partitions.filter(|p| p.leader_id.0 >= 0 && p.error_code == 0) {
        if !listed.iter().any(|b| b.node_id == p.leader_id) {
            p.error_code = E::ListenerNotFound.code();
        }
    }
}

async fn lookup(
    shard: &Rc<Shard>,
    name: Option<String>,
    id: uuid::Uuid,
    auto_create: bool,
    node: BrokerId,
) -> MetadataResponseTopic {
    let Some(name) = name else {
        return match shard.meta().topic_by_id(id) {
            Some(topic) => describe(topic, node, &shard.meta().fenced),
            None => error_topic(None, id, E::UnknownTopicId),
        };
    };
    if let Some(topic) = shard.meta().topics.get(&name) {
        return describe(topic, node, &shard.meta().fenced);
    }
    if validate_topic_name(&name).is_err() {
        return error_topic(Some(&name), id, E::InvalidTopicException);
    }
    if !auto_create {
        return error_topic(Some(&name), id, E::UnknownTopicOrPartition);
    }
    let op = ControlOp::CreateTopic {
        name: name.clone(),
        partitions: shard.config.default_partitions,
        replication_factor: -1,
        configs: Default::default(),
        assignment: Vec::new(),
        validate_only: false,
    };
    match shard.control(op).await {
        Ok(()) => tracing::info!(topic = %name, "auto-created topic"),
        Err(e) if e.code == E::TopicAlreadyExists.code() => {}
        Err(e) => crate::log_limited!(WARN, topic = %name, "auto-creating topic failed: {e}"),
    }
    match shard.meta().topics.get(&name) {
        Some(topic) => describe(topic, node, &shard.meta().fenced),
        None => error_topic(Some(&name), id, E::LeaderNotAvailable),
    }
}

fn error_topic(name: Option<&str>, id: uuid::Uuid, error: E) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
}

/// One topic of a Metadata response (DescribeTopicPartitions shares it).
pub(super) fn describe(
    topic: &TopicMeta,
    node: BrokerId,
    fenced: &std::collections::BTreeSet<i32>,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_epoch(p.leader_epoch);
            if p.replicas.is_empty() {
                // A single broker: it holds and leads everything.
                return partition
                    .with_leader_id(node)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node]);
            }
            let ids = |list: &[i32]| list.iter().copied().map(BrokerId).collect::<Vec<_>>();
            let offline: Vec<i32> =
                p.replicas.iter().copied().filter(|id| fenced.contains(id)).collect();
            let partition = partition
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline));
            match p.leader {
                Some(leader) => partition.with_leader_id(BrokerId(leader)),
                // No in-sync replica is alive: clients wait (unclean election is off).
                None => partition
                    .with_leader_id(BrokerId(-1))
                    .with_error_code(E::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.id)
        .with_is_internal(super::topic_rules::is_internal(&topic.name))
        .with_partitions(partitions)
}
