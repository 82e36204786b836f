//! Authorization of producer ids and transactions, as Kafka 3.x's `KafkaApis`:
//!
//! - InitProducerId (transactional): needs WRITE on the transactional id; a denial answers
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//! - InitProducerId (idempotent): needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
//!   (KIP-679); a denial answers CLUSTER_AUTHORIZATION_FAILED.
//! - AddPartitionsToTxn: needs WRITE on the transactional id, then WRITE on each topic (never
//!   internal ones); a denial answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition;
//!   else TOPIC_AUTHORIZATION_FAILED for refused partitions, UNKNOWN_TOPIC_OR_PARTITION for unknown
//!   ones, OPERATION_NOT_ATTEMPTED for the rest.
//! - AddOffsetsToTxn: needs WRITE on the transactional id, READ on the group; a denial answers
//!   TRANSACTIONAL_ID_ / GROUP_AUTHORIZATION_FAILED.
//! - EndTxn: needs WRITE on the transactional id; a denial answers
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//! - TxnOffsetCommit: needs WRITE on the transactional id, READ on the group, READ on each topic; a
//!   denial answers TRANSACTIONAL_ID_ / GROUP_AUTHORIZATION_FAILED for every partition;
//!   TOPIC_AUTHORIZATION_FAILED per partition.
//! - DescribeTransactions: needs DESCRIBE on each transactional id (its topics: only those it may
//!   DESCRIBE); a denial answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED per id.
//! - ListTransactions: lists only the ids the principal may DESCRIBE.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{answer, append, deny, edit, Checked};
use crate::protocol::ResponseError as E;
use crate::security::acl::{Operation, ResourceType};
use crate::server::access::Gate;
use crate::server::shard::Shard;

const TXN_DENIED: E = E::TransactionalIdAuthorizationFailed;

/// The transaction APIs. See the module docs.
pub(super) fn check(gate: &Gate, shard: &Shard, body: RequestKind, version: i16) -> Checked {
    let txn = |id: &str| gate.allowed(Operation::Write, ResourceType::TransactionalId, id);
    let _ = version;
    match body {
        RequestKind::InitProducerId(req) => {
            let error = match &req.transactional_id {
                Some(id) if !txn(id) => TXN_DENIED,
                Some(_) => return Ok((RequestKind::InitProducerId(req), None)),
                None if idempotence_allowed(gate) => {
                    return Ok((RequestKind::InitProducerId(req), None))
                }
                None => E::ClusterAuthorizationFailed,
            };
            let r = InitProducerIdResponse::default()
                .with_error_code(error.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            answer(ResponseKind::InitProducerId(r))
        }
        RequestKind::AddPartitionsToTxn(req) => add_partitions(gate, shard, req),
        RequestKind::AddOffsetsToTxn(req) => {
            let error = if !txn(&req.transactional_id) {
                TXN_DENIED
            } else if !gate.allowed(Operation::Read, ResourceType::Group, &req.group_id) {
                E::GroupAuthorizationFailed
            } else {
                return Ok((RequestKind::AddOffsetsToTxn(req), None));
            };
            answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(error.code()),
            ))
        }
        RequestKind::EndTxn(req) if !txn(&req.transactional_id) => {
            let r = EndTxnResponse::default()
                .with_error_code(TXN_DENIED.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            answer(ResponseKind::EndTxn(r))
        }
        RequestKind::TxnOffsetCommit(req) => txn_offset_commit(gate, req),
        RequestKind::DescribeTransactions(req) => describe(gate, req),
        RequestKind::ListTransactions(req) => {
            let owned = gate.owned();
            let finish = edit(move |r| {
                let ResponseKind::ListTransactions(r) = r else { return };
                let gate = owned.gate();
                let may =
                    |id: &str| gate.permits(Operation::Describe, ResourceType::TransactionalId, id);
                r.transaction_states.retain(|s| may(&s.transactional_id));
            });
            Ok((RequestKind::ListTransactions(req), finish))
        }
        body => Ok((body, None)),
    }
}

/// An idempotent producer without a transactional id: IDEMPOTENT_WRITE on the cluster (not
/// audited when missing, as Kafka), or WRITE on some topic (KIP-679); a refusal is audited as
/// the cluster's.
fn idempotence_allowed(gate: &Gate) -> bool {
    gate.cluster_quietly(Operation::IdempotentWrite)
        || gate.on_some(Operation::Write, ResourceType::Topic)
        || gate.cluster(Operation::IdempotentWrite)
}

fn add_partitions(gate: &Gate, shard: &Shard, req: AddPartitionsToTxnRequest) -> Checked {
    use add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    let id = &req.v3_and_below_transactional_id;
    let refused_txn = !gate.allowed(Operation::Write, ResourceType::TransactionalId, id);
    let internal = |n: &str| n == crate::group::OFFSETS_TOPIC || n == crate::txn::TXN_TOPIC;
    let refused: Vec<bool> = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            !refused_txn
                && (internal(&t.name)
                    || !gate.allowed(Operation::Write, ResourceType::Topic, &t.name))
        })
        .collect();
    if !refused_txn && !refused.contains(&true) {
        return Ok((RequestKind::AddPartitionsToTxn(req), None));
    }
    // Any refused partition fails the whole request, as Kafka.
    let meta = shard.meta();
    let results = req.v3_and_below_topics.iter().zip(refused).map(|(t, topic_refused)| {
        let partitions = t.partitions.iter().map(|p| {
            let code = if refused_txn {
                TXN_DENIED
            } else if topic_refused {
                E::TopicAuthorizationFailed
            } else if meta.partition(&t.name, *p).is_none() {
                E::UnknownTopicOrPartition
            } else {
                E::OperationNotAttempted
            };
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(*p)
                .with_partition_error_code(code.code())
        });
        AddPartitionsToTxnTopicResult::default()
            .with_name(t.name.clone())
            .with_results_by_partition(partitions.collect())
    });
    let r =
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results.collect());
    answer(ResponseKind::AddPartitionsToTxn(r))
}

fn txn_offset_commit(gate: &Gate, mut req: TxnOffsetCommitRequest) -> Checked {
    use txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    let errors = |topics: &[txn_offset_commit_request::TxnOffsetCommitRequestTopic], error: E| {
        let topic = |t: &txn_offset_commit_request::TxnOffsetCommitRequestTopic| {
            let partitions = t.partitions.iter().map(|p| {
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error.code())
            });
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions.collect())
        };
        topics.iter().map(topic).collect::<Vec<_>>()
    };
    let whole =
        if !gate.allowed(Operation::Write, ResourceType::TransactionalId, &req.transactional_id) {
            Some(TXN_DENIED)
        } else if !gate.allowed(Operation::Read, ResourceType::Group, &req.group_id) {
            Some(E::GroupAuthorizationFailed)
        } else {
            None
        };
    if let Some(error) = whole {
        let r = TxnOffsetCommitResponse::default().with_topics(errors(&req.topics, error));
        return answer(ResponseKind::TxnOffsetCommit(r));
    }
    let refused =
        deny(&mut req.topics, |t| gate.allowed(Operation::Read, ResourceType::Topic, &t.name));
    let refused = errors(&refused, E::TopicAuthorizationFailed);
    let finish = append(refused, |r, refused| {
        if let ResponseKind::TxnOffsetCommit(r) = r {
            r.topics.extend(refused);
        }
    });
    Ok((RequestKind::TxnOffsetCommit(req), finish))
}

fn describe(gate: &Gate, mut req: DescribeTransactionsRequest) -> Checked {
    use describe_transactions_response::TransactionState;
    let refused = deny(&mut req.transactional_ids, |id| {
        gate.allowed(Operation::Describe, ResourceType::TransactionalId, id)
    });
    let owned = gate.owned();
    let finish = edit(move |r| {
        let ResponseKind::DescribeTransactions(r) = r else { return };
        let gate = owned.gate();
        for state in r.transaction_states.iter_mut() {
            state
                .topics
                .retain(|t| gate.permits(Operation::Describe, ResourceType::Topic, &t.topic));
        }
        r.transaction_states.extend(refused.into_iter().map(|id| {
            TransactionState::default()
                .with_transactional_id(id)
                .with_error_code(TXN_DENIED.code())
                .with_transaction_state(StrBytes::default())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_timeout_ms(-1)
                .with_transaction_start_time_ms(-1)
        }));
    });
    Ok((RequestKind::DescribeTransactions(req), finish))
}
