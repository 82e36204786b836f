//! Produce: validate, append in request order, answer when acknowledged.
//!
//! Each partition's records are admitted first ([`topic_rules::admit`]: internal topics
//! refused, every record checked as Kafka's leader does, recompressed for the topic's
//! `compression.type`), on this shard, whichever shard owns the partition. Appends to this
//! shard's partitions happen synchronously inside [`start`]; appends to other shards are sent,
//! in order, before [`start`] returns. The connection awaits [`start`] before reading its next
//! request, so pipelined produce requests append in the order they were sent.
//!
//! acks=0 gets no response, so a refusal known at once (a bad batch, an unknown partition)
//! closes the connection instead, as Kafka does: the only signal such a producer gets.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_rules, Reply};
use crate::protocol::ResponseError as E;
use crate::record_batch::{BatchHeader, Refusal};
use crate::server::mesh::{Acks, PartitionRef, ProduceOutcome, ShardMsg};
use crate::server::shard::{LocalAppend, LocalFuture, Shard};
use crate::txn::api::{TxnOp, TxnReply};

/// Where one partition's outcome comes from.
enum Slot {
    Done(ProduceOutcome),
    /// Refused by [`topic_rules::admit`], with per-record errors.
    Refused(Refusal),
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
pub async fn start(shard: &Rc<Shard>, req: ProduceRequest, version: i16) -> LocalFuture<Reply> {
    let acks = req.acks;
    let demand = Acks { acks, timeout_ms: req.timeout_ms };
    let verdicts = verify_transactional(shard, &req).await;
    let meta = shard.meta();
    let settings = shard.settings();
    let now_ms = crate::storage::now_ms();
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
                let admitted = |topic| {
                    let records = p.records.clone().unwrap_or_default();
                    topic_rules::admit(&settings, topic, p.index, &records, version, now_ms)
                };
                let owner = meta.owner(name, p.index);
                match owner.map(|owner| (owner, meta.topics.get(name).map(admitted))) {
                    Ok((_, Some(Err(refusal)))) => Slot::Refused(refusal),
                    Ok((owner, Some(Ok(records)))) if owner == shard.id => {
                        Slot::Local(shard.append_local(name, p.index, &records, demand))
                    }
                    Ok((owner, Some(Ok(records)))) => {
                        let bucket = &mut remote[owner];
                        let partition = PartitionRef { topic: name.into(), partition: p.index };
                        bucket.push((partition, records));
                        Slot::Remote { shard: owner, index: bucket.len() - 1 }
                    }
                    Err(E::NotLeaderOrFollower) => {
                        Slot::Done(refused(E::NotLeaderOrFollower, "another broker leads it"))
                    }
                    Ok((_, None)) | Err(_) => Slot::Done(refused(
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
    if acks == 0 {
        let reply = unanswerable_failure(&slots, &names).map_or(Reply::Nothing, Reply::Close);
        return Box::pin(async move { reply });
    }
    let drop_response = injected_fault(shard);
    Box::pin(async move {
        let answers = gather_remote(replies).await;
        let answers = &answers;
        let mut topics = Vec::with_capacity(slots.len());
        for (topic_index, parts) in slots {
            let outcomes = join_all(parts.into_iter().map(|(index, slot)| async move {
                let outcome = match slot {
                    Slot::Done(outcome) => outcome,
                    Slot::Refused(refusal) => return refused_response(index, refusal),
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

/// acks=0: the first partition refused at once, as the reason to close the connection (counted
/// and logged, rate-limited); `None` when every partition was appended or queued.
fn unanswerable_failure(
    slots: &[(usize, Vec<(i32, Slot)>)],
    names: &[kafka_protocol::messages::TopicName],
) -> Option<String> {
    let (topic, partition, code, message) = slots
        .iter()
        .flat_map(|(t, parts)| parts.iter().map(move |(p, s)| (*t, *p, s)))
        .find_map(|(topic, partition, slot)| {
            let (code, message) = match slot {
                Slot::Refused(r) => (r.code, r.message.clone()),
                Slot::Done(o) | Slot::Local(LocalAppend::Failed(o)) if o.error_code != 0 => {
                    (o.error_code, o.error_message.clone().unwrap_or_default())
                }
                _ => return None,
            };
            Some((topic, partition, code, message))
        })?;
    let topic = names.get(topic).map_or("?", |n| n.0.as_str());
    crate::refused!(
        WARN,
        "produce_acks0_failed",
        topic,
        partition,
        code,
        "acks=0 produce failed: closing the connection, as Kafka does: {message}"
    );
    Some(format!(
        "acks=0 produce to {topic}-{partition} failed with error {code} ({message}): closing the \
         connection, the only way to tell an acks=0 producer"
    ))
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

/// A partition refused by [`topic_rules::admit`]: error code, message and (Produce v8+, the
/// encoder drops them below) the per-record errors.
fn refused_response(index: i32, refusal: Refusal) -> PartitionProduceResponse {
    let record_errors = refusal
        .record_errors
        .into_iter()
        .map(|e| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(e.batch_index)
                .with_batch_index_error_message(Some(StrBytes::from_string(e.message)))
        })
        .collect();
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(refusal.code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_record_errors(record_errors)
        .with_error_message(Some(StrBytes::from_string(refusal.message)))
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
