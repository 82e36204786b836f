//! Produce: validate, append in request order, answer when acknowledged.
//!
//! Appends to this shard's partitions happen synchronously inside [`start`]; appends to other
//! shards are sent, in order, before [`start`] returns. The connection awaits [`start`] before
//! reading its next request, so pipelined produce requests append in the order they were sent.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};

use super::{str_bytes, Reply};
use crate::protocol::ResponseError as E;
use crate::record_batch::BatchHeader;
use crate::server::mesh::{Acks, PartitionRef, ProduceOutcome, ShardMsg};
use crate::server::shard::{LocalAppend, LocalFuture, Shard};
use crate::txn::api::{TxnOp, TxnReply};

/// Where one partition's outcome comes from.
enum Slot {
    Done(ProduceOutcome),
    Local(LocalAppend),
    /// Index into the reply of the message sent to a shard.
    Remote {
        shard: usize,
        index: usize,
    },
}

fn refused(error: E, message: &str) -> ProduceOutcome {
    ProduceOutcome {
        error_code: error.code(),
        error_message: Some(message.to_owned()),
        base_offset: -1,
        log_append_time: -1,
        log_start_offset: -1,
    }
}

/// Appends every partition's batches (locally or by message) and returns the future of the
/// response. See the module docs for the ordering guarantee.
pub async fn start(shard: &Rc<Shard>, req: ProduceRequest) -> LocalFuture<Reply> {
    let acks = req.acks;
    let demand = Acks { acks, timeout_ms: req.timeout_ms };
    let verdicts = verify_transactional(shard, &req).await;
    let meta = shard.meta();
    let mut slots: Vec<(usize, Vec<(i32, Slot)>)> = Vec::with_capacity(req.topic_data.len());
    let mut remote: Vec<Vec<(PartitionRef, Bytes)>> =
        (0..shard.count).map(|_| Vec::new()).collect();
    for (topic_index, topic) in req.topic_data.iter().enumerate() {
        let name: &str = &topic.name.0;
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            let verdict = verdicts.get(&(name.to_owned(), p.index)).copied().unwrap_or(0);
            let slot = if !matches!(acks, -1..=1) {
                Slot::Done(refused(E::InvalidRequiredAcks, "acks must be -1, 0 or 1"))
            } else if verdict != 0 {
                let error = E::try_from_code(verdict).unwrap_or(E::InvalidTxnState);
                Slot::Done(refused(error, "transactional batch refused by its coordinator"))
            } else {
                match meta.owner(name, p.index) {
                    Ok(owner) if owner == shard.id => {
                        let records = p.records.clone().unwrap_or_default();
                        Slot::Local(shard.append_local(name, p.index, &records, demand))
                    }
                    Ok(owner) => {
                        let records = p.records.clone().unwrap_or_default();
                        let bucket = &mut remote[owner];
                        let partition = PartitionRef { topic: name.into(), partition: p.index };
                        bucket.push((partition, records));
                        Slot::Remote { shard: owner, index: bucket.len() - 1 }
                    }
                    Err(E::NotLeaderOrFollower) => {
                        Slot::Done(refused(E::NotLeaderOrFollower, "another broker leads it"))
                    }
                    Err(_) => Slot::Done(refused(
                        E::UnknownTopicOrPartition,
                        "unknown topic or partition",
                    )),
                }
            };
            parts.push((p.index, slot));
        }
        slots.push((topic_index, parts));
    }
    let replies = send_remote(shard, remote, demand).await;
    let names: Vec<_> = req.topic_data.into_iter().map(|t| t.name).collect();
    let drop_response = injected_fault(shard);
    Box::pin(async move {
        if acks == 0 {
            return Reply::Nothing;
        }
        let answers = gather_remote(replies).await;
        let answers = &answers;
        let mut topics = Vec::with_capacity(slots.len());
        for (topic_index, parts) in slots {
            let outcomes = join_all(parts.into_iter().map(|(index, slot)| async move {
                let outcome = match slot {
                    Slot::Done(outcome) => outcome,
                    Slot::Local(append) => append.outcome().await,
                    Slot::Remote { shard, index } => {
                        answers[shard].get(index).cloned().unwrap_or_else(|| {
                            refused(E::NotLeaderOrFollower, "the owning shard did not answer")
                        })
                    }
                };
                partition_response(index, outcome)
            }))
            .await;
            let name = names[topic_index].clone();
            topics.push(
                TopicProduceResponse::default().with_name(name).with_partition_responses(outcomes),
            );
        }
        if drop_response {
            return Reply::Close("fault injection: dropped a produce response".into());
        }
        let response = ProduceResponse::default().with_responses(topics);
        Reply::Response(Box::new(ResponseKind::Produce(response)))
    })
}

/// For a transactional produce, asks the transaction coordinator whether each partition is
/// in the producer's ongoing transaction (and the epoch current): partition → error code.
/// Kafka 3.6+ verifies the same way (KIP-890 part 1), so a zombie or a late batch cannot
/// open a transaction nobody will end.
async fn verify_transactional(
    shard: &Rc<Shard>,
    req: &ProduceRequest,
) -> HashMap<(String, i32), i16> {
    let mut verdicts = HashMap::new();
    let mut producer = None;
    let mut partitions = Vec::new();
    for topic in &req.topic_data {
        for p in &topic.partition_data {
            let records = p.records.as_deref().unwrap_or_default();
            let Ok(header) = BatchHeader::parse(records) else { continue };
            if !header.is_transactional() {
                continue;
            }
            let key = (topic.name.0.to_string(), p.index);
            let this = (header.producer_id, header.producer_epoch);
            if req.transactional_id.is_none() {
                // A transaction nobody coordinates would never end.
                verdicts.insert(key, E::InvalidRecord.code());
            } else if *producer.get_or_insert(this) != this {
                verdicts.insert(key, E::InvalidProducerIdMapping.code());
            } else {
                partitions.push(key);
            }
        }
    }
    let (Some(id), Some((producer_id, epoch))) = (req.transactional_id.as_ref(), producer) else {
        return verdicts;
    };
    let op =
        TxnOp::Verify { id: id.0.to_string(), producer_id, epoch, partitions: partitions.clone() };
    let codes = match super::txn::route(shard, &id.0, op).await {
        Ok(TxnReply::Codes(codes)) => codes,
        Ok(_) => vec![E::UnknownServerError.code(); partitions.len()],
        Err(e) => vec![e.code(); partitions.len()],
    };
    verdicts.extend(partitions.into_iter().zip(codes));
    verdicts
}

/// Whether to drop this request's response (see `BrokerConfig::fault_drop_produce_every`).
fn injected_fault(shard: &Shard) -> bool {
    let Some(every) = shard.config.fault_drop_produce_every else { return false };
    let count = shard.produce_count.get() + 1;
    shard.produce_count.set(count);
    count.is_multiple_of(every)
}

async fn send_remote(
    shard: &Rc<Shard>,
    remote: Vec<Vec<(PartitionRef, Bytes)>>,
    acks: Acks,
) -> Vec<Option<oneshot::Receiver<Vec<ProduceOutcome>>>> {
    let mut replies = Vec::with_capacity(remote.len());
    for (owner, items) in remote.into_iter().enumerate() {
        if items.is_empty() {
            replies.push(None);
            continue;
        }
        let (reply, answer) = oneshot::channel();
        let sent = shard.send(owner, ShardMsg::Produce { items, acks, reply }).await;
        replies.push(sent.then_some(answer));
    }
    replies
}

async fn gather_remote(
    replies: Vec<Option<oneshot::Receiver<Vec<ProduceOutcome>>>>,
) -> Vec<Vec<ProduceOutcome>> {
    join_all(replies.into_iter().map(|reply| async move {
        match reply {
            Some(answer) => answer.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }))
    .await
}

fn partition_response(index: i32, outcome: ProduceOutcome) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(outcome.error_code)
        .with_base_offset(outcome.base_offset)
        .with_log_append_time_ms(outcome.log_append_time)
        .with_log_start_offset(outcome.log_start_offset)
        .with_error_message(outcome.error_message.as_deref().map(str_bytes))
}
