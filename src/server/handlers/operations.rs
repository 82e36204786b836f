//! Cluster operations: ElectLeaders (KIP-460), AlterPartitionReassignments and
//! ListPartitionReassignments (KIP-455).
//!
//! Each request is checked per partition against this broker's metadata; what passes goes
//! to the controller as one command ([`Command::ElectLeaders`], [`Command::Reassign`]),
//! which the state machine checks again (it may have moved on): see
//! `controller::operations`. A single broker (no controller quorum) leads everything, so
//! elections are never needed there and replicas cannot move: a reassignment to the broker
//! itself is already complete, any other is refused.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::controller::operations::{election, ElectionRefusal};
use crate::controller::placement::Command;
use crate::controller::ControlError;
use crate::protocol::ResponseError as E;
use crate::server::mesh::ControlOp;
use crate::server::shard::Shard;

/// Kafka's ElectionType: 0 preferred, 1 unclean.
const UNCLEAN: i8 = 1;

/// Handles one ElectLeaders request.
pub async fn elect_leaders(
    shard: &Rc<Shard>,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let unclean = version >= 1 && req.election_type == UNCLEAN;
    let meta = shard.meta();
    let all = req.topic_partitions.is_none();
    let asked: Vec<(String, i32)> = match &req.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.to_string(), *p)))
            .collect(),
        None => meta
            .topics
            .values()
            .flat_map(|t| (0..t.partitions.len() as i32).map(move |p| (t.name.clone(), p)))
            .collect(),
    };
    let mut verdicts: Vec<(String, i32, Result<(), ControlError>)> = Vec::new();
    let mut elect = Vec::new();
    for (topic, index) in asked {
        let verdict = match meta.partition(&topic, index) {
            None => Err(ElectionRefusal::Unknown),
            Some(_) if meta.local_node.is_none() => Err(ElectionRefusal::NotNeeded),
            Some(p) => election(p, &meta.fenced, unclean).map(drop),
        };
        // For "every partition", Kafka leaves out those that needed no election.
        if all && verdict == Err(ElectionRefusal::NotNeeded) {
            continue;
        }
        if verdict.is_ok() {
            elect.push((topic.clone(), index));
        }
        let verdict = verdict.map_err(|r| ControlError { code: r.code(), message: refusal(r) });
        verdicts.push((topic, index, verdict));
    }
    if !elect.is_empty() {
        let command = Command::ElectLeaders { partitions: elect, unclean };
        if let Err(e) = shard.control(ControlOp::Replicated(command)).await {
            for (_, _, verdict) in verdicts.iter_mut().filter(|v| v.2.is_ok()) {
                *verdict = Err(e.clone());
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, index, verdict) in verdicts {
        let (code, message) = match verdict {
            Ok(()) => (0, None),
            Err(e) => (e.code, Some(str_bytes(&e.message))),
        };
        let result = PartitionResult::default()
            .with_partition_id(index)
            .with_error_code(code)
            .with_error_message(message);
        by_topic.entry(topic).or_default().push(result);
    }
    let results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(&topic)))
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn refusal(r: ElectionRefusal) -> String {
    match r {
        ElectionRefusal::NotNeeded => "the wanted leader already leads".into(),
        ElectionRefusal::PreferredNotAvailable => {
            "the preferred replica is not in sync or not alive".into()
        }
        ElectionRefusal::NoneEligible => "no live replica can lead".into(),
        ElectionRefusal::Unknown => "no such partition".into(),
    }
}

/// Handles one AlterPartitionReassignments request.
pub async fn alter_reassignments(
    shard: &Rc<Shard>,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let meta = shard.meta();
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let mut verdicts: Vec<(usize, i32, Result<(), ControlError>)> = Vec::new();
    let mut moves = Vec::new();
    for (t, topic) in req.topics.iter().enumerate() {
        let name = topic.name.0.to_string();
        for p in &topic.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let single = meta.local_node.is_none();
            let verdict = if single {
                // A single broker holds every partition's only replica: a move to
                // [itself] is done already (as Kafka answers a reassignment to the current
                // replicas), a move elsewhere names a broker that is not registered.
                let node = shard.config.node_id;
                meta.check_reassignment_among(&name, p.partition_index, target.as_deref(), |id| {
                    id == node
                })
            } else {
                meta.check_reassignment(&name, p.partition_index, target.as_deref()).and_then(
                    |()| check_factor(&meta, &name, p.partition_index, &target, allow_rf_change),
                )
            };
            if verdict.is_ok() && !single {
                moves.push((name.clone(), p.partition_index, target));
            }
            verdicts.push((t, p.partition_index, verdict));
        }
    }
    if !moves.is_empty() {
        if let Err(e) = shard.control(ControlOp::Replicated(Command::Reassign { moves })).await {
            for (_, _, verdict) in verdicts.iter_mut().filter(|v| v.2.is_ok()) {
                *verdict = Err(e.clone());
            }
        }
    }
    let mut responses: Vec<ReassignableTopicResponse> = req
        .topics
        .iter()
        .map(|t| ReassignableTopicResponse::default().with_name(t.name.clone()))
        .collect();
    for (t, index, verdict) in verdicts {
        let (code, message) = match verdict {
            Ok(()) => (0, None),
            Err(e) => (e.code, Some(str_bytes(&e.message))),
        };
        let partition = ReassignablePartitionResponse::default()
            .with_partition_index(index)
            .with_error_code(code)
            .with_error_message(message);
        responses[t].partitions.push(partition);
    }
    let response = AlterPartitionReassignmentsResponse::default().with_responses(responses);
    if version >= 1 {
        response.with_allow_replication_factor_change(req.allow_replication_factor_change)
    } else {
        response
    }
}

/// Refuses a target whose size differs from the partition's original replica count when
/// the request does not allow that (AlterPartitionReassignments v1).
fn check_factor(
    meta: &crate::controller::ClusterMetadata,
    topic: &str,
    index: i32,
    target: &Option<Vec<i32>>,
    allowed: bool,
) -> Result<(), ControlError> {
    let (Some(target), Some(p)) = (target, meta.partition(topic, index)) else { return Ok(()) };
    let original = p.replicas.len() - p.adding.len();
    if allowed || target.len() == original {
        return Ok(());
    }
    let msg = format!("{} target replicas for {original} current ones", target.len());
    Err(ControlError::new(E::InvalidReplicationFactor, msg))
}

/// Handles one ListPartitionReassignments request.
pub fn list_reassignments(
    shard: &Rc<Shard>,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let meta = shard.meta();
    let wanted = |topic: &str, index: i32| match &req.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&index)),
    };
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for (topic, index, p) in meta.reassignments() {
        if !wanted(&topic, index) {
            continue;
        }
        let ongoing = OngoingPartitionReassignment::default()
            .with_partition_index(index)
            .with_replicas(ids(&p.replicas))
            .with_adding_replicas(ids(&p.adding))
            .with_removing_replicas(ids(&p.removing));
        by_topic.entry(topic).or_default().push(ongoing);
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partitions(partitions)
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
