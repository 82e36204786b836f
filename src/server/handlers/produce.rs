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

use bytes::{Buf, Bytes, BytesMut};
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
use crate::storage::OwnedRecords;
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
pub async fn start(
    shard: &Rc<Shard>,
    mut req: ProduceRequest,
    frame: Option<Bytes>,
    version: i16,
) -> LocalFuture<Reply> {
    let acks = req.acks;
    let demand = Acks { acks, timeout_ms: req.timeout_ms };
    let verdicts = verify_transactional(shard, &req).await;
    let mut records = take_records(&mut req, frame).into_iter();
    let meta = shard.meta();
    let settings = shard.settings();
    let now_ms = crate::storage::now_ms();
    let mut slots: Vec<(usize, Vec<(i32, Slot)>)> = Vec::with_capacity(req.topic_data.len());
    let mut remote: Vec<Vec<(PartitionRef, OwnedRecords)>> =
        (0..shard.count).map(|_| Vec::new()).collect();
    for (topic_index, topic) in req.topic_data.iter().enumerate() {
        let name: &str = &topic.name.0;
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            let records = records.next().unwrap_or_default();
            let verdict = verdicts.get(&(name.to_owned(), p.index)).copied().unwrap_or(0);
            let slot = if !matches!(acks, -1..=1) {
                Slot::Done(refused(E::InvalidRequiredAcks, "acks must be -1, 0 or 1"))
            } else if verdict != 0 {
                let error = E::try_from_code(verdict).unwrap_or(E::InvalidTxnState);
                Slot::Done(refused(error, "transactional batch refused by its coordinator"))
            } else {
                let admitted =
                    |topic| topic_rules::admit(&settings, topic, p.index, records, version, now_ms);
                let owner = meta.owner(name, p.index);
                match owner.map(|owner| (owner, meta.topics.get(name).map(admitted))) {
                    Ok((_, Some(Err(refusal)))) => Slot::Refused(refusal),
                    Ok((owner, Some(Ok(records)))) if owner == shard.id => {
                        Slot::Local(shard.append_local(name, p.index, records, demand))
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

/// A partition's records are written in place (offsets, epoch, LogAppendTime) only when they
/// are at least this share (1 / N) of their request's frame: the tail cache keeps the batches,
/// and so the whole frame, alive, and a small slice must not pin a large frame. Smaller ones
/// are copied, as every partition's were before.
const IN_PLACE_SHARE_MIN: usize = 16;

/// Smaller frames are copied: their records are small (the copy is cheap), and the frame
/// reader may have read them with the read-ahead of other frames into one allocation
/// (`frame_reader`: at most about two read-aheads) that `pinned` would not account for. A
/// larger frame always has its own allocation, of its size.
const IN_PLACE_FRAME_MIN: usize = 4 * crate::server::frame_reader::READ_AHEAD_BYTES;

/// Takes each partition's records out of `req`, in request order (topic by topic), as buffers
/// the appends may rewrite: slices of `frame` without a copy when this request is the frame's
/// only user (see [`IN_PLACE_SHARE_MIN`]), else copies. Topic names and other slices of the
/// frame that `req` keeps become copies (small), so that the records can be its only users.
/// A slice taken over says the frame's size as `pinned`: the tail cache counts its batches
/// as that much, since they keep the whole frame allocated.
fn take_records(req: &mut ProduceRequest, frame: Option<Bytes>) -> Vec<OwnedRecords> {
    req.transactional_id = None; // checked by `verify_transactional`, not needed after
    req.unknown_tagged_fields.clear();
    let mut taken = Vec::new();
    for topic in &mut req.topic_data {
        topic.name.0 = StrBytes::from_string(topic.name.0.to_string());
        topic.unknown_tagged_fields.clear();
        for p in &mut topic.partition_data {
            p.unknown_tagged_fields.clear();
            taken.push(p.records.take().unwrap_or_default());
        }
    }
    let Some(frame) = frame else {
        return taken.into_iter().map(|r| OwnedRecords::own(BytesMut::from(r))).collect();
    };
    // Where each slice lies in the frame (`None`: not in it, e.g. replaced by the guard).
    let base = frame.as_ptr() as usize;
    let position = |r: &Bytes| {
        let start = (r.as_ptr() as usize).checked_sub(base)?;
        (!r.is_empty() && start + r.len() <= frame.len()).then_some(start..start + r.len())
    };
    let ranges: Vec<_> = taken.iter().map(position).collect();
    let mut order: Vec<usize> = (0..taken.len()).filter(|&i| ranges[i].is_some()).collect();
    order.sort_by_key(|&i| ranges[i].as_ref().map_or(0, |r| r.start));
    let disjoint = order.windows(2).all(|w| match (&ranges[w[0]], &ranges[w[1]]) {
        (Some(a), Some(b)) => a.end <= b.start,
        _ => false,
    });
    let size = frame.len();
    let in_place = |i: usize| {
        size >= IN_PLACE_FRAME_MIN
            && ranges[i]
                .as_ref()
                .is_some_and(|r| r.len().saturating_mul(IN_PLACE_SHARE_MIN) >= size)
    };
    let mut out: Vec<Option<OwnedRecords>> = (0..taken.len()).map(|_| None).collect();
    for i in 0..taken.len() {
        if !(disjoint && in_place(i)) {
            out[i] = Some(OwnedRecords::copied(&taken[i]));
        }
    }
    drop(taken);
    match frame.try_into_mut() {
        Ok(mut whole) => {
            let mut at = 0;
            for &i in &order {
                let (None, Some(range)) = (&out[i], ranges[i].clone()) else { continue };
                whole.advance(range.start - at);
                out[i] = Some(OwnedRecords { bytes: whole.split_to(range.len()), pinned: size });
                at = range.end;
            }
        }
        Err(frame) => {
            for (i, range) in ranges.iter().enumerate() {
                if let (None, Some(range)) = (&out[i], range) {
                    out[i] = Some(OwnedRecords::copied(&frame[range.clone()]));
                }
            }
        }
    }
    out.into_iter().map(Option::unwrap_or_default).collect()
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
    remote: Vec<Vec<(PartitionRef, OwnedRecords)>>,
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;

    fn request(sizes: &[usize]) -> ProduceRequest {
        let parts = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let records = Bytes::from(vec![i as u8 + 1; size]);
                PartitionProduceData::default().with_index(i as i32).with_records(Some(records))
            })
            .collect();
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(parts);
        ProduceRequest::default().with_acks(1).with_topic_data(vec![topic])
    }

    /// Decodes `sizes` as the connection does: records and names are slices of the frame.
    fn decoded(sizes: &[usize]) -> (ProduceRequest, Bytes) {
        let mut buf = BytesMut::new();
        request(sizes).encode(&mut buf, 9).unwrap();
        let frame = buf.freeze();
        let mut cursor = frame.clone();
        (ProduceRequest::decode(&mut cursor, 9).unwrap(), frame)
    }

    fn inside(piece: &[u8], frame: std::ops::Range<usize>) -> bool {
        frame.contains(&(piece.as_ptr() as usize))
    }

    #[test]
    fn large_shares_of_a_frame_are_taken_over_small_ones_copied() {
        let sizes = [40_000, 10, 30_000, 0];
        let (mut req, frame) = decoded(&sizes);
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let frame_len = frame.len();
        let taken = take_records(&mut req, Some(frame));
        let pinned: Vec<usize> = taken.iter().map(|p| p.pinned).collect();
        assert_eq!(pinned, [frame_len, 0, frame_len, 0], "what each piece keeps allocated");
        let pieces: Vec<BytesMut> = taken.into_iter().map(|p| p.bytes).collect();
        let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(lens, sizes);
        for (i, piece) in pieces.iter().enumerate() {
            assert!(piece.iter().all(|&b| b == i as u8 + 1), "piece {i} holds its own bytes");
        }
        assert!(inside(&pieces[0], range.clone()) && inside(&pieces[2], range.clone()));
        assert!(!inside(&pieces[1], range), "a small share is copied");
        assert_eq!(req.topic_data[0].name.0.as_str(), "t");
        assert!(req.topic_data[0].partition_data.iter().all(|p| p.records.is_none()));
    }

    #[test]
    fn a_frame_held_elsewhere_is_copied() {
        let (mut req, frame) = decoded(&[40_000, 30_000]);
        let held = frame.clone();
        let range = held.as_ptr() as usize..held.as_ptr() as usize + held.len();
        let taken = take_records(&mut req, Some(frame));
        assert!(taken.iter().all(|p| p.pinned == 0));
        let pieces: Vec<BytesMut> = taken.into_iter().map(|p| p.bytes).collect();
        assert!(pieces.iter().all(|p| !inside(p, range.clone())));
        assert_eq!(pieces.iter().map(|p| p.len()).collect::<Vec<_>>(), [40_000, 30_000]);
        assert!(pieces[1].iter().all(|&b| b == 2));
    }

    #[test]
    fn a_small_frame_is_copied() {
        let (mut req, frame) = decoded(&[4000, 3000]);
        assert!(frame.len() < IN_PLACE_FRAME_MIN);
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let taken = take_records(&mut req, Some(frame));
        assert!(taken.iter().all(|p| p.pinned == 0 && !inside(&p.bytes, range.clone())));
        assert_eq!(taken.iter().map(|p| p.bytes.len()).collect::<Vec<_>>(), [4000, 3000]);
    }
}
