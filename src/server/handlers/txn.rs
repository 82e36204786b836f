//! Transaction APIs: route each request to the shard coordinating its transactional id
//! (the owner of its `__transaction_state` partition, see `server::txn`), validating what
//! needs cluster metadata here. DescribeProducers goes to the partitions' shards;
//! ListTransactions asks every shard. In a cluster, partitions and groups led by other
//! brokers join a transaction like local ones: the coordinator only records them, and its
//! markers reach them with WriteTxnMarkers (see `server::txn`).

use std::rc::Rc;

use futures::channel::oneshot;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use super::group::CommitCodes;
use super::str_bytes;
use crate::group::api::{GroupOp, GroupReply};
use crate::protocol::ResponseError as E;
use crate::server::mesh::{PartitionRef, ShardMsg};
use crate::server::router::{scatter, Buckets};
use crate::server::shard::Shard;
use crate::txn::api::{TxnOp, TxnReply, TxnRequest};
use crate::txn::state::TxnMeta;
use crate::txn::{partition_for, valid_id, TXN_TIMEOUT_MS_MAX, TXN_TOPIC};

/// Runs the transaction APIs; gives back any other request.
pub async fn handle(
    shard: &Rc<Shard>,
    body: RequestKind,
    _version: i16,
) -> Result<ResponseKind, RequestKind> {
    Ok(match body {
        RequestKind::AddPartitionsToTxn(req) => {
            ResponseKind::AddPartitionsToTxn(add_partitions(shard, req).await)
        }
        RequestKind::AddOffsetsToTxn(req) => {
            ResponseKind::AddOffsetsToTxn(add_offsets(shard, req).await)
        }
        RequestKind::EndTxn(req) => ResponseKind::EndTxn(end_txn(shard, req).await),
        RequestKind::TxnOffsetCommit(req) => {
            ResponseKind::TxnOffsetCommit(txn_offset_commit(shard, req).await)
        }
        RequestKind::DescribeProducers(req) => {
            ResponseKind::DescribeProducers(describe_producers(shard, req).await)
        }
        RequestKind::DescribeTransactions(req) => {
            ResponseKind::DescribeTransactions(describe_transactions(shard, req).await)
        }
        RequestKind::ListTransactions(req) => {
            ResponseKind::ListTransactions(list_transactions(shard, req).await)
        }
        other => return Err(other),
    })
}

/// PRODUCER_FENCED (90) is new in InitProducerId v4, AddPartitionsToTxn, AddOffsetsToTxn and
/// EndTxn v2 (KIP-588): older clients do not know the code (aiokafka, speaking
/// AddPartitionsToTxn v0, took it for an unknown error rather than a fenced producer), and
/// Kafka answers them INVALID_PRODUCER_EPOCH (47) instead. Applied to every response.
pub fn fenced_as_old_clients_know_it(response: &mut ResponseKind, version: i16) {
    let old = |code: &mut i16| {
        if *code == E::ProducerFenced.code() {
            *code = E::InvalidProducerEpoch.code();
        }
    };
    match response {
        ResponseKind::InitProducerId(r) if version < 4 => old(&mut r.error_code),
        ResponseKind::AddOffsetsToTxn(r) if version < 2 => old(&mut r.error_code),
        ResponseKind::EndTxn(r) if version < 2 => old(&mut r.error_code),
        ResponseKind::AddPartitionsToTxn(r) if version < 2 => r
            .results_by_topic_v3_and_below
            .iter_mut()
            .flat_map(|t| t.results_by_partition.iter_mut())
            .for_each(|p| old(&mut p.partition_error_code)),
        _ => {}
    }
}

/// The `__transaction_state` partition of a transactional id and the shard owning it.
/// Another broker leading it (a cluster) answers NOT_COORDINATOR: the client looks the
/// coordinator up again.
pub fn locate(shard: &Shard, id: &str) -> Result<(i32, usize), E> {
    super::group::locate_key(shard, TXN_TOPIC, |count| partition_for(id, count))
}

/// Runs `op` on the shard coordinating `id`.
///
/// A produce's verification ([`TxnOp::Verify`]) of an id coordinated by another broker is
/// skipped (every partition passes): asking that broker needs AddPartitionsToTxn v4
/// (`verify_only`), the broker-to-broker form that is not in `APIS` (advertising it would
/// offer clients the batched form, KAFKA-15757). Such a produce is accepted as Kafka did
/// before 3.6 (KIP-890): a late batch of a fenced producer to a partition outside its
/// transaction can then leave that partition with an open transaction nobody ends.
pub async fn route(shard: &Rc<Shard>, id: &str, op: TxnOp) -> Result<TxnReply, E> {
    if !valid_id(id) {
        return Err(E::InvalidRequest);
    }
    let (partition, owner) = match (locate(shard, id), &op) {
        (Err(E::NotCoordinator), TxnOp::Verify { partitions, .. }) => {
            return Ok(TxnReply::Codes(vec![0; partitions.len()]));
        }
        (located, _) => located?,
    };
    run_on(shard, owner, TxnRequest { partition, op }).await
}

async fn run_on(shard: &Rc<Shard>, owner: usize, request: TxnRequest) -> Result<TxnReply, E> {
    if owner == shard.id {
        return shard.txns.handle(shard, request).await;
    }
    let (reply, answer) = oneshot::channel();
    if !shard.send(owner, ShardMsg::Txn { request: Box::new(request), reply }).await {
        return Err(E::CoordinatorNotAvailable);
    }
    answer.await.map_err(|_| E::CoordinatorNotAvailable)
}

fn code_of(reply: Result<TxnReply, E>) -> i16 {
    match reply {
        Ok(TxnReply::Code(code)) => code,
        Ok(_) => E::UnknownServerError.code(),
        Err(e) => e.code(),
    }
}

/// InitProducerId with a transactional id (called by the InitProducerId handler).
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    id: &str,
    timeout_ms: i32,
    producer_id: i64,
    epoch: i16,
) -> Result<(i64, i16), E> {
    if !(1..=TXN_TIMEOUT_MS_MAX).contains(&timeout_ms) {
        return Err(E::InvalidTransactionTimeout);
    }
    let op = TxnOp::InitProducerId { id: id.to_owned(), timeout_ms, producer_id, epoch };
    match route(shard, id, op).await? {
        TxnReply::Producer(Ok(found)) => Ok(found),
        TxnReply::Producer(Err(code)) => {
            Err(E::try_from_code(code).unwrap_or(E::UnknownServerError))
        }
        _ => Err(E::UnknownServerError),
    }
}

/// AddPartitionsToTxn v0-3 (one transaction). Unknown partitions fail with
/// UNKNOWN_TOPIC_OR_PARTITION and the rest with OPERATION_NOT_ATTEMPTED, as in Kafka.
/// Partitions led by other brokers are accepted: the coordinator only records them, and its
/// markers reach them with WriteTxnMarkers.
async fn add_partitions(
    shard: &Rc<Shard>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let meta = shard.meta();
    let mut wanted = Vec::new();
    let mut unknown = false;
    for t in &req.v3_and_below_topics {
        for p in &t.partitions {
            unknown |= meta.partition(&t.name, *p).is_none();
            wanted.push((t.name.0.to_string(), *p));
        }
    }
    let id = req.v3_and_below_transactional_id.0.to_string();
    let shared_code = if unknown {
        E::OperationNotAttempted.code()
    } else if wanted.is_empty() {
        0
    } else {
        let producer_id = req.v3_and_below_producer_id.0;
        let epoch = req.v3_and_below_producer_epoch;
        let op = TxnOp::AddPartitions { id: id.clone(), producer_id, epoch, partitions: wanted };
        code_of(route(shard, &id, op).await)
    };
    let results = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let results = t
                .partitions
                .iter()
                .map(|p| {
                    let missing = meta.partition(&t.name, *p).is_none();
                    let code =
                        if missing { E::UnknownTopicOrPartition.code() } else { shared_code };
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction,
/// whichever broker leads it (coordinates the group): the client sends TxnOffsetCommit
/// there, and the transaction's marker applies or drops those offsets there.
async fn add_offsets(shard: &Rc<Shard>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let respond = |code: i16| AddOffsetsToTxnResponse::default().with_error_code(code);
    let group = req.group_id.0.to_string();
    if !super::group::valid_group_id(&group) {
        return respond(E::InvalidGroupId.code());
    }
    let meta = shard.meta();
    let Some(count) = meta.partition_count(crate::group::OFFSETS_TOPIC) else {
        return respond(E::CoordinatorNotAvailable.code());
    };
    let partition = crate::group::partition_for(&group, count);
    let id = req.transactional_id.0.to_string();
    let partitions = vec![(crate::group::OFFSETS_TOPIC.to_owned(), partition)];
    let op = TxnOp::AddPartitions {
        id: id.clone(),
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
        partitions,
    };
    respond(code_of(route(shard, &id, op).await))
}

async fn end_txn(shard: &Rc<Shard>, req: EndTxnRequest) -> EndTxnResponse {
    let id = req.transactional_id.0.to_string();
    let op = TxnOp::End {
        id: id.clone(),
        producer_id: req.producer_id.0,
        epoch: req.producer_epoch,
        commit: req.committed,
    };
    EndTxnResponse::default()
        .with_error_code(code_of(route(shard, &id, op).await))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// TxnOffsetCommit: goes to the group's coordinator, which holds the offsets until the
/// transaction's marker reaches the group's `__consumer_offsets` partition.
async fn txn_offset_commit(
    shard: &Rc<Shard>,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let meta = shard.meta();
    let mut codes = CommitCodes::new();
    let mut forwarded = req.clone();
    for topic in forwarded.topics.iter_mut() {
        // Offsets of partitions led anywhere (the group's coordinator keeps them).
        codes.keep_known(&meta, &topic.name, &mut topic.partitions, |p| p.partition_index);
    }
    forwarded.topics.retain(|t| !t.partitions.is_empty());
    let group = req.group_id.0.to_string();
    let outcome = if !super::group::valid_group_id(&group) {
        Err(E::InvalidGroupId)
    } else if !valid_id(&req.transactional_id) {
        Err(E::InvalidRequest)
    } else if forwarded.topics.is_empty() {
        Ok(TxnOffsetCommitResponse::default())
    } else {
        route_group(shard, &group, GroupOp::TxnCommit { req: forwarded }).await
    };
    match outcome {
        Ok(r) => r.topics.iter().for_each(|t| {
            let partitions = t.partitions.iter();
            partitions.for_each(|p| codes.answered(&t.name, p.partition_index, p.error_code))
        }),
        Err(e) => codes.failed(e),
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.code(&t.name, p.partition_index))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

async fn route_group(
    shard: &Rc<Shard>,
    group: &str,
    op: GroupOp,
) -> Result<TxnOffsetCommitResponse, E> {
    match super::group::route(shard, group, op).await? {
        GroupReply::TxnCommit(r) => Ok(r),
        _ => Err(E::UnknownServerError),
    }
}

async fn describe_producers(
    shard: &Rc<Shard>,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    let meta = shard.meta();
    let mut queries = Vec::new();
    for t in &req.topics {
        for p in &t.partition_indexes {
            if let Some(owner) = meta.shard_of(&t.name, *p) {
                queries
                    .push((owner, PartitionRef { topic: t.name.0.as_str().into(), partition: *p }));
            }
        }
    }
    let answers = scatter(
        shard,
        Buckets::new(shard.count, queries),
        |s, p| Box::pin(async move { s.producers_local(&p) }),
        |items, reply| ShardMsg::DescribeProducers { items, reply },
        || Err(E::NotLeaderOrFollower.code()),
    )
    .await;
    let mut answers = answers.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let found = if meta.shard_of(&t.name, *p).is_some() {
                        answers.next().unwrap_or(Err(E::UnknownServerError.code()))
                    } else {
                        Err(E::UnknownTopicOrPartition.code())
                    };
                    let base = PartitionResponse::default().with_partition_index(*p);
                    match found {
                        Err(code) => base.with_error_code(code),
                        Ok(producers) => base.with_active_producers(
                            producers
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(i32::from(p.epoch))
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(if p.last_append_ms > 0 {
                                            p.last_append_ms
                                        } else {
                                            -1
                                        })
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(p.txn_start_offset)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe_one(
    id: &TransactionalId,
    meta: TxnMeta,
) -> describe_transactions_response::TransactionState {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &meta.partitions {
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    TransactionState::default()
        .with_transactional_id(id.clone())
        .with_transaction_state(str_bytes(meta.state.name()))
        .with_transaction_timeout_ms(meta.timeout_ms)
        .with_transaction_start_time_ms(meta.start_ms)
        .with_producer_id(ProducerId(meta.producer_id))
        .with_producer_epoch(meta.epoch)
        .with_topics(topics)
}

async fn describe_transactions(
    shard: &Rc<Shard>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    use kafka_protocol::messages::describe_transactions_response::TransactionState;
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let failed = |code: i16| {
            TransactionState::default()
                .with_transactional_id(id.clone())
                .with_error_code(code)
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_timeout_ms(-1)
                .with_transaction_start_time_ms(-1)
        };
        let op = TxnOp::Describe { id: id.0.to_string() };
        states.push(match route(shard, &id.0, op).await {
            Ok(TxnReply::Describe(Ok(meta))) => describe_one(id, meta),
            Ok(TxnReply::Describe(Err(code))) => failed(code),
            Ok(_) => failed(E::UnknownServerError.code()),
            Err(E::InvalidRequest) => failed(E::TransactionalIdNotFound.code()),
            Err(e) => failed(e.code()),
        });
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// Kafka's state names, for ListTransactions filters.
const STATE_NAMES: &[&str] =
    &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];

async fn list_transactions(
    shard: &Rc<Shard>,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    let unknown: Vec<_> =
        req.state_filters.iter().filter(|s| !STATE_NAMES.contains(&s.as_str())).cloned().collect();
    let now = crate::storage::now_ms();
    let wanted = |meta: &TxnMeta| {
        let state_ok = req.state_filters.is_empty()
            || req.state_filters.iter().any(|s| s.as_str() == meta.state.name());
        let producer_ok = req.producer_id_filters.is_empty()
            || req.producer_id_filters.iter().any(|p| p.0 == meta.producer_id);
        let duration_ok = req.duration_filter < 0
            || (meta.start_ms >= 0 && now - meta.start_ms >= req.duration_filter);
        state_ok && producer_ok && duration_ok
    };
    let mut error = 0;
    let mut states = Vec::new();
    for owner in 0..shard.count {
        match run_on(shard, owner, TxnRequest { partition: -1, op: TxnOp::List }).await {
            Ok(TxnReply::List(found)) => {
                states.extend(found.into_iter().filter(|(_, m)| wanted(m)).map(|(id, m)| {
                    TransactionState::default()
                        .with_transactional_id(TransactionalId(str_bytes(&id)))
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_transaction_state(str_bytes(m.state.name()))
                }))
            }
            Ok(_) => error = E::UnknownServerError.code(),
            Err(e) => error = e.code(),
        }
    }
    ListTransactionsResponse::default()
        .with_error_code(error)
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
