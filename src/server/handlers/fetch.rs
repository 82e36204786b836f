//! Fetch: read whole record batches, long-polling until `min_bytes` or `max_wait_ms`.
//!
//! Each round reads every partition on its owning shard. If the round returned fewer than
//! `min_bytes` and the deadline has not passed, the fetch waits until an append on any of the
//! partitions moves its high watermark past what was seen (woken by the append, on whatever
//! shard it happens), then reads again. Record batches are returned verbatim.
//!
//! Fetch from the closest replica (KIP-392): a consumer's Fetch v11+ may go to a follower,
//! which serves it up to the high watermark it knows. With the rack-aware replica selector
//! on (`replica.selector.class`), a leader answers a consumer that names its rack
//! (`client.rack`) with `preferred_read_replica`, an in-sync follower of that rack, and no
//! records. A follower's replica fetch (v15+) carries its broker epoch: one from an
//! incarnation older than the registered one is refused with STALE_BROKER_EPOCH.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};

use super::str_bytes;
use crate::config::limits;
use crate::controller::ClusterMetadata;
use crate::protocol::ResponseError as E;
use crate::record_batch;
use crate::server::mesh::{FetchItem, FetchOutcome, PartitionRef, ReplicaFetch, ShardMsg};
use crate::server::router::{scatter, Buckets};
use crate::server::shard::{LocalFuture, Shard};

/// Fetch v11 added the consumer's `rack_id` and `preferred_read_replica` (KIP-392).
const RACK_ID_VERSION: i16 = 11;
/// Fetch v13 replaced topic names by topic ids.
const TOPIC_ID_VERSION: i16 = 13;
/// Fetch v15 moved the replica id into `replica_state`, beside the broker epoch (KIP-903).
const REPLICA_STATE_VERSION: i16 = 15;

/// One requested partition, resolved against metadata.
struct Wanted {
    topic: usize,
    partition: i32,
    /// The request's `partition_max_bytes` for it.
    partition_max_bytes: usize,
    /// `Ok((owner shard, item))`, or the error code to answer.
    target: Result<(usize, FetchItem), i16>,
}

/// Handles one Fetch request.
pub async fn handle(shard: &Rc<Shard>, req: FetchRequest, version: i16) -> FetchResponse {
    let wait_ms = req.max_wait_ms.clamp(0, limits::FETCH_WAIT_MS_MAX) as u64;
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = req.min_bytes.max(0) as usize;
    let replica_id = if version >= 15 { req.replica_state.replica_id.0 } else { req.replica_id.0 };
    let replica = replica_id >= 0;
    let max_bytes = req.max_bytes.max(0) as usize;
    let (topics, wanted) = resolve(shard, &req, version, replica_id, max_bytes);
    let read_committed = req.isolation_level == 1;
    let mut outcomes = read_all(shard, &wanted, max_bytes).await;
    loop {
        let bytes: usize = outcomes.iter().map(|o| o.records.len()).sum();
        let failed = outcomes.iter().any(|o| {
            o.error_code != 0 || o.diverging_epoch.is_some() || o.preferred_read_replica.is_some()
        });
        if bytes >= min_bytes || failed || Instant::now() >= deadline {
            break;
        }
        // Read again whether woken by data or by the deadline: at the deadline the answer is
        // whatever is there by then.
        let woken = wait_for_data(shard, &wanted, &outcomes, deadline, replica).await;
        outcomes = read_all(shard, &wanted, max_bytes).await;
        if !woken {
            break;
        }
    }
    let limits: Vec<usize> = wanted.iter().map(|w| w.partition_max_bytes).collect();
    trim_to_budget(&mut outcomes, &limits, max_bytes);
    respond(topics, wanted, outcomes, version, read_committed)
}

/// `replica_id`: the fetching follower's broker id, or -1 for a consumer. No partition reads
/// more than the whole response may hold (`max_bytes`), whatever its own limit says.
fn resolve(
    shard: &Shard,
    req: &FetchRequest,
    version: i16,
    replica_id: i32,
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, Vec<Wanted>) {
    let meta = shard.meta();
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    // KIP-392: a consumer's Fetch v11+ may be served by a follower, and tells its rack.
    let follower_read = replica_id < 0 && version >= RACK_ID_VERSION;
    let client_rack =
        (follower_read && shard.config.rack_aware_replica_selector && !req.rack_id.is_empty())
            .then(|| Arc::<str>::from(req.rack_id.as_str()));
    let stale = stale_broker_epoch(&meta, req, version, replica_id);
    for (index, t) in req.topics.iter().enumerate() {
        let (name, unknown) = if version >= TOPIC_ID_VERSION {
            let name = meta.topic_by_id(t.topic_id).map(|m| m.name.clone());
            (name, E::UnknownTopicId.code())
        } else {
            (Some(t.topic.0.to_string()), E::UnknownTopicOrPartition.code())
        };
        topics.push(
            FetchableTopicResponse::default().with_topic(t.topic.clone()).with_topic_id(t.topic_id),
        );
        let topic: Option<Arc<str>> = name.map(Arc::from);
        for p in &t.partitions {
            let partition_max_bytes = p.partition_max_bytes.max(0) as usize;
            let owner = topic.as_ref().map(|n| match stale {
                Some(error) => Err(error),
                None if follower_read => read_shard(&meta, n, p.partition),
                None => meta.owner(n, p.partition),
            });
            let target = match (&topic, owner) {
                (Some(topic), Some(Ok(owner))) => Ok((
                    owner,
                    FetchItem {
                        partition: PartitionRef { topic: topic.clone(), partition: p.partition },
                        offset: p.fetch_offset,
                        max_bytes: partition_max_bytes.min(max_bytes),
                        read_committed: req.isolation_level == 1,
                        current_leader_epoch: p.current_leader_epoch,
                        replica: (replica_id >= 0).then_some(ReplicaFetch {
                            replica_id,
                            last_fetched_epoch: p.last_fetched_epoch,
                        }),
                        follower_read,
                        client_rack: client_rack.clone(),
                        offsets_only: false,
                        within_max_bytes: false,
                    },
                )),
                (Some(_), Some(Err(error))) => Err(error.code()),
                _ => Err(unknown),
            };
            let partition = p.partition;
            wanted.push(Wanted { topic: index, partition, partition_max_bytes, target });
        }
    }
    if version < TOPIC_ID_VERSION {
        for (t, req_topic) in topics.iter_mut().zip(&req.topics) {
            if let Some(m) = meta.topics.get(req_topic.topic.0.as_str()) {
                t.topic_id = m.id;
            }
        }
    }
    (topics, wanted)
}

/// The shard holding `topic`/`partition` here, leader or follower (a consumer's Fetch v11+
/// may read from a follower, KIP-392): NOT_LEADER_OR_FOLLOWER when this broker holds no
/// replica, UNKNOWN_TOPIC_OR_PARTITION when it does not exist.
fn read_shard(meta: &ClusterMetadata, topic: &str, partition: i32) -> Result<usize, E> {
    match meta.partition(topic, partition) {
        None => Err(E::UnknownTopicOrPartition),
        Some(_) => meta.hosted_shard(topic, partition).ok_or(E::NotLeaderOrFollower),
    }
}

/// A replica fetch (Fetch v15+) from an incarnation of the follower older than the one the
/// controller registered last: STALE_BROKER_EPOCH for every partition, so a restarted
/// broker's old fetcher (a process that was paused, say) cannot move the high watermark or
/// the ISR. An epoch this broker has not learnt yet (a newer registration) or none (-1, or
/// an older Fetch version) is not refused.
fn stale_broker_epoch(
    meta: &ClusterMetadata,
    req: &FetchRequest,
    version: i16,
    replica_id: i32,
) -> Option<E> {
    let epoch = req.replica_state.replica_epoch;
    if replica_id < 0 || version < REPLICA_STATE_VERSION || epoch < 0 {
        return None;
    }
    let current = meta.brokers.get(&replica_id)?.epoch;
    if epoch >= current {
        return None;
    }
    crate::refused!(
        WARN,
        "fetch_stale_broker_epoch",
        broker = replica_id,
        epoch,
        current,
        "replica fetch of an old broker incarnation refused"
    );
    Some(E::StaleBrokerEpoch)
}

/// Reads every wanted partition. When they are all on this shard, they are read in request
/// order, each with what is left of `max_bytes` (as Kafka's `readFromLocalLog`), and those
/// past the budget answer their offsets only. Reading them all at once with the whole budget
/// each, as partitions on other shards still are, made a catch-up consumer of 16 partitions
/// (fetch.max.bytes 8 MiB) read 128 MiB from disk per 8 MiB answered: 62 MB/s at 1 KiB,
/// perf/results/2026-12-05-perf2.md.
async fn read_all(shard: &Rc<Shard>, wanted: &[Wanted], max_bytes: usize) -> Vec<FetchOutcome> {
    let local = |w: &Wanted| w.target.as_ref().ok().is_none_or(|(owner, _)| *owner == shard.id);
    if !wanted.iter().all(local) {
        return read_scattered(shard, wanted).await;
    }
    let mut left = max_bytes;
    let mut first = true;
    let mut outcomes = Vec::with_capacity(wanted.len());
    for w in wanted {
        let outcome = match &w.target {
            Ok((_, item)) => {
                let mut item = item.clone();
                item.max_bytes = item.max_bytes.min(left);
                // `trim_to_budget` keeps nothing of a later partition once the budget is
                // spent; the first one with data keeps its first batch whatever the budget.
                item.offsets_only = left == 0 && !first && item.replica.is_none();
                item.within_max_bytes = !first && item.replica.is_none();
                let outcome = shard.read_local(item).await;
                if !outcome.records.is_empty() {
                    first = false;
                    left = left.saturating_sub(outcome.records.len());
                }
                outcome
            }
            Err(code) => failed_outcome(*code),
        };
        outcomes.push(outcome);
    }
    outcomes
}

fn failed_outcome(error_code: i16) -> FetchOutcome {
    FetchOutcome { error_code, high_watermark: -1, log_start_offset: -1, ..Default::default() }
}

/// Reads every wanted partition at once, each up to its own limit, on whichever shard owns it.
async fn read_scattered(shard: &Rc<Shard>, wanted: &[Wanted]) -> Vec<FetchOutcome> {
    let items = wanted.iter().filter_map(|w| w.target.as_ref().ok().cloned());
    let buckets = Buckets::new(shard.count, items);
    let read = scatter(
        shard,
        buckets,
        |s, item| Box::pin(async move { s.read_local(item).await }),
        |items, reply| ShardMsg::Fetch { items, reply },
        || FetchOutcome { error_code: E::NotLeaderOrFollower.code(), ..Default::default() },
    )
    .await;
    let mut read = read.into_iter();
    wanted
        .iter()
        .map(|w| match &w.target {
            Ok(_) => read.next().unwrap_or_default(),
            Err(code) => failed_outcome(*code),
        })
        .collect()
}

/// Waits until an append moves any partition's high watermark past what the last round saw.
/// Returns false when the deadline passed first.
async fn wait_for_data(
    shard: &Rc<Shard>,
    wanted: &[Wanted],
    seen: &[FetchOutcome],
    deadline: Instant,
    replica: bool,
) -> bool {
    let mut per_shard: Vec<Vec<(PartitionRef, i64)>> =
        (0..shard.count).map(|_| Vec::new()).collect();
    for (w, outcome) in wanted.iter().zip(seen) {
        if let Ok((owner, item)) = &w.target {
            // A follower waits for data past its fetch offset (it reads beyond the HW).
            let beyond =
                if replica { item.offset } else { item.offset.max(outcome.high_watermark) };
            per_shard[*owner].push((item.partition.clone(), beyond));
        }
    }
    let mut waits: Vec<LocalFuture<()>> = Vec::new();
    for (owner, items) in per_shard.into_iter().enumerate() {
        if items.is_empty() {
            continue;
        }
        if owner == shard.id {
            waits.push(Box::pin(shard.wait_local(&items, replica)));
            continue;
        }
        let (reply, answer) = oneshot::channel();
        let msg = ShardMsg::WaitForData { items, replica, deadline, reply };
        if shard.send(owner, msg).await {
            waits.push(Box::pin(async move {
                let _ = answer.await;
            }));
        }
    }
    if waits.is_empty() {
        return false;
    }
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    let any = futures::future::select_all(waits);
    futures::pin_mut!(timeout);
    matches!(futures::future::select(any, timeout).await, futures::future::Either::Left(_))
}

/// Keeps the response within the request's `max_bytes`, as Kafka's `readFromLocalLog`
/// (KIP-74): partitions are filled in request order, each with whole batches up to the
/// smaller of its `partition_max_bytes` and what is left of `max_bytes`. Only the first
/// partition that returns data may exceed those limits, and only by its first batch, so a
/// consumer always makes progress past a batch larger than its limits; a later partition whose
/// next batch does not fit returns nothing this time.
fn trim_to_budget(outcomes: &mut [FetchOutcome], partition_limits: &[usize], max_bytes: usize) {
    let mut left = max_bytes;
    let mut first = true;
    for (outcome, limit) in outcomes.iter_mut().zip(partition_limits) {
        if outcome.records.is_empty() {
            continue;
        }
        let keep = record_batch::whole_batches_within(&outcome.records, (*limit).min(left), first);
        if keep < outcome.records.len() {
            outcome.records = outcome.records.slice(..keep);
        }
        if keep > 0 {
            first = false;
            left = left.saturating_sub(keep);
        }
    }
}

fn respond(
    mut topics: Vec<FetchableTopicResponse>,
    wanted: Vec<Wanted>,
    outcomes: Vec<FetchOutcome>,
    version: i16,
    read_committed: bool,
) -> FetchResponse {
    for (w, outcome) in wanted.into_iter().zip(outcomes) {
        let aborted = outcome.aborted.map(|list| {
            list.into_iter()
                .map(|a| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(a.producer_id))
                        .with_first_offset(a.first_offset)
                })
                .collect()
        });
        let failed = outcome.error_code != 0;
        let lso = if failed { -1 } else { outcome.last_stable_offset };
        let mut diverging = EpochEndOffset::default();
        if let Some((epoch, end_offset)) = outcome.diverging_epoch {
            diverging = diverging.with_epoch(epoch).with_end_offset(end_offset);
        }
        let data = PartitionData::default()
            .with_diverging_epoch(diverging)
            .with_partition_index(w.partition)
            .with_error_code(outcome.error_code)
            .with_high_watermark(outcome.high_watermark)
            .with_last_stable_offset(lso)
            .with_log_start_offset(outcome.log_start_offset)
            .with_preferred_read_replica(BrokerId(outcome.preferred_read_replica.unwrap_or(-1)))
            .with_aborted_transactions(if read_committed {
                Some(aborted.unwrap_or_default())
            } else {
                None
            })
            .with_records(Some(outcome.records));
        if let Some(topic) = topics.get_mut(w.topic) {
            topic.partitions.push(data);
        }
    }
    if version >= TOPIC_ID_VERSION {
        for t in &mut topics {
            t.topic = TopicName(str_bytes(""));
        }
    }
    FetchResponse::default().with_responses(topics)
}
