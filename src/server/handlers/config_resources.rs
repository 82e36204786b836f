//! ListConfigResources (KIP-1142, Kafka 4.1; v0 was KIP-714's ListClientMetricsResources):
//! which resources have configs to describe, as `kafka-configs.sh` and the admin clients'
//! `listConfigResources` list them.
//!
//! As Kafka: v0 lists client-metrics subscriptions only; v1 lists the types asked for (none:
//! every type) among topics (every topic), brokers and broker loggers (every broker's id,
//! this one alone on a single broker), client-metrics subscriptions and groups (those with
//! a group config). A type outside those is UNSUPPORTED_VERSION, with nothing listed.
//! Strata keeps no client-metrics subscriptions (KIP-714 telemetry is not implemented):
//! that type lists nothing. DESCRIBE_CONFIGS on the cluster is the guard's.

use std::rc::Rc;

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::protocol::ResponseError as E;
use crate::server::shard::Shard;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

/// Handles one ListConfigResources request.
pub fn handle(
    shard: &Rc<Shard>,
    req: ListConfigResourcesRequest,
    version: i16,
) -> ListConfigResourcesResponse {
    let supported: &[i8] = if version >= 1 {
        &[TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP]
    } else {
        &[CLIENT_METRICS]
    };
    let wanted: &[i8] = if req.resource_types.is_empty() { supported } else { &req.resource_types };
    if wanted.iter().any(|t| !supported.contains(t)) {
        return ListConfigResourcesResponse::default()
            .with_error_code(E::UnsupportedVersion.code());
    }
    let meta = shard.meta();
    let brokers: Vec<String> = if meta.brokers.is_empty() {
        vec![shard.config.node_id.to_string()]
    } else {
        meta.brokers.keys().map(i32::to_string).collect()
    };
    let mut listed = Vec::new();
    let mut add = |name: &str, kind: i8| {
        listed.push(
            ConfigResource::default().with_resource_name(str_bytes(name)).with_resource_type(kind),
        );
    };
    if wanted.contains(&TOPIC) {
        meta.topics.keys().for_each(|t| add(t, TOPIC));
    }
    if wanted.contains(&BROKER) {
        brokers.iter().for_each(|b| add(b, BROKER));
    }
    if wanted.contains(&BROKER_LOGGER) {
        brokers.iter().for_each(|b| add(b, BROKER_LOGGER));
    }
    if wanted.contains(&GROUP) {
        meta.group_configs.keys().for_each(|g| add(g, GROUP));
    }
    ListConfigResourcesResponse::default().with_config_resources(listed)
}
