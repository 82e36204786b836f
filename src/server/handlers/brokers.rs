//! Decommissioning and recommissioning brokers, and the controller quorum (issue 19).
//!
//! Kafka has no API to drain a broker; it removes one with UnregisterBroker
//! (`kafka-cluster.sh unregister`). Here UnregisterBroker decommissions: the controller
//! moves every replica off the broker, gives it no new ones, and removes it from the Raft
//! membership once it holds none ([`Command::DecommissionBroker`],
//! `controller::operations`). The way back is registration: a BrokerRegistration sent by a
//! tool (Strata brokers register over the controller port, never with this API) for a
//! decommissioned id recommissions it ([`Command::RecommissionBroker`]); only `broker_id`
//! is read. DescribeQuorum shows the Raft membership (voters and observers), so the tools
//! can tell when a decommissioned broker has left it; a single broker answers as a quorum
//! of one, itself. A single broker (no controller quorum) has nothing to drain to:
//! decommissioning it is INVALID_REQUEST, saying so.

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::controller::placement::Command;
use crate::controller::ControlError;
use crate::protocol::ResponseError as E;
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

/// The topic name KRaft's DescribeQuorum answers for (its metadata log).
const METADATA_TOPIC: &str = "__cluster_metadata";
/// The name DescribeQuorum v2 gives the voters' controller listener (`--controller-listen`),
/// KRaft's usual one.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// Writes `command` through the controller; the refusal to answer, if any.
async fn replicate(shard: &Rc<Shard>, command: Command) -> Result<(), ControlError> {
    if shard.quorum.is_none() {
        let msg = "a single broker (no controller quorum) has no other broker to drain to";
        return Err(ControlError::new(E::InvalidRequest, msg));
    }
    shard.control(ControlOp::Replicated(command)).await
}

/// Handles one UnregisterBroker request: decommissions the broker.
pub async fn unregister(
    shard: &Rc<Shard>,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let command = Command::DecommissionBroker { id: req.broker_id.0 };
    let (code, message) = match replicate(shard, command).await {
        Ok(()) => (0, None),
        Err(e) => (e.code, Some(str_bytes(&e.message))),
    };
    UnregisterBrokerResponse::default().with_error_code(code).with_error_message(message)
}

/// Handles one BrokerRegistration request from a tool: recommissions the broker. Answers
/// with the broker's current epoch (-1 if it is not registered).
pub async fn register(
    shard: &Rc<Shard>,
    req: BrokerRegistrationRequest,
) -> BrokerRegistrationResponse {
    let id = req.broker_id.0;
    let result = replicate(shard, Command::RecommissionBroker { id }).await;
    if let Err(e) = &result {
        crate::log_limited!(INFO, broker = id, "recommission refused: {}", e.message);
    }
    let epoch = shard.meta().brokers.get(&id).map_or(-1, |b| b.epoch);
    BrokerRegistrationResponse::default()
        .with_error_code(result.err().map_or(0, |e| e.code))
        .with_broker_epoch(epoch)
}

/// Handles one DescribeQuorum request: the controller quorum as this broker sees it, with
/// every voter and observer (log end offsets are not tracked in a cluster: -1).
pub fn describe_quorum(
    shard: &Rc<Shard>,
    _req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let state = |id: &i32, log_end: i64| {
        ReplicaState::default()
            .with_replica_id(BrokerId(*id))
            .with_log_end_offset(log_end)
            .with_last_fetch_timestamp(-1)
            .with_last_caught_up_timestamp(-1)
    };
    let partition = PartitionData::default().with_partition_index(0);
    let partition = match shard.quorum.as_ref().map(|q| q.quorum()) {
        Some(quorum) => partition
            .with_leader_id(BrokerId(quorum.leader.unwrap_or(-1)))
            .with_leader_epoch(i32::try_from(quorum.term).unwrap_or(i32::MAX))
            .with_high_watermark(i64::try_from(quorum.committed).unwrap_or(i64::MAX))
            .with_current_voters(quorum.voters.iter().map(|id| state(id, -1)).collect())
            .with_observers(quorum.observers.iter().map(|id| state(id, -1)).collect()),
        None => {
            // A single broker is its own controller, a quorum of one that never held an
            // election (epoch 0); its metadata log is the metadata's change count.
            let version = i64::try_from(shard.meta().version).unwrap_or(i64::MAX);
            let me = shard.config.node_id;
            partition
                .with_leader_id(BrokerId(me))
                .with_leader_epoch(0)
                .with_high_watermark(version)
                .with_current_voters(vec![state(&me, version)])
        }
    };
    let topic = TopicData::default()
        .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
        .with_partitions(vec![partition]);
    let response = DescribeQuorumResponse::default().with_topics(vec![topic]);
    if version < 2 {
        // Older versions have no nodes: a response carrying them fails to encode.
        return response;
    }
    // v2: the voters' controller listeners (a single broker has none).
    let nodes = shard
        .config
        .controller_voters
        .iter()
        .map(|v| {
            let listener = Listener::default()
                .with_name(str_bytes(CONTROLLER_LISTENER))
                .with_host(str_bytes(&v.host))
                .with_port(v.port);
            Node::default().with_node_id(BrokerId(v.id)).with_listeners(vec![listener])
        })
        .collect();
    response.with_nodes(nodes)
}
