//! DescribeCluster: the brokers and the controller (the Raft leader in a cluster).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::server::shard::Shard;

/// Kafka's "authorized operations were not asked for".
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Handles one DescribeCluster request. Unlike Metadata (whose `controller_id` is this broker:
/// any broker takes and forwards metadata changes, as in KRaft), this names the real
/// controller, -1 while an election is running. From v2 a broker the controller has not
/// heard from within its session timeout is `is_fenced`, and listed only when the request
/// asks for fenced brokers.
///
/// Addresses are those of the listener the request came in on, as in Metadata; a broker
/// without that listener is left out.
pub fn handle(
    shard: &Rc<Shard>,
    req: DescribeClusterRequest,
    version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    let config = &shard.config;
    let meta = shard.meta();
    let brokers: Vec<DescribeClusterBroker> = if meta.brokers.is_empty() {
        let own = config.listener(listener).unwrap_or(config.inter_broker());
        vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(config.node_id))
            .with_host(str_bytes(&own.advertised_host))
            .with_port(own.advertised_port.into())]
    } else {
        let alive = shard.quorum.as_ref().and_then(|q| q.alive_brokers());
        let fenced = |id: i32| version >= 2 && alive.as_ref().is_some_and(|a| !a.contains(&id));
        meta.brokers
            .values()
            .filter(|b| req.include_fenced_brokers || !fenced(b.id))
            .filter_map(|b| {
                let (host, port) = b.endpoint(listener)?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(str_bytes(host))
                        .with_port(port.into())
                        .with_rack(b.rack.as_deref().map(str_bytes))
                        .with_is_fenced(fenced(b.id)),
                )
            })
            .collect()
    };
    let controller = match &shard.quorum {
        Some(quorum) => quorum.controller_id().unwrap_or(-1),
        None => config.node_id,
    };
    DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(str_bytes(&meta.cluster_id))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}
