//! One consumer's fetch loop against one leader broker: a full Fetch (no sessions) for the
//! consumer's partitions on that broker, RecordBatch v2 parsed in place to count records and
//! read each record's intended send time (first 8 bytes of its value). One request in flight
//! in e2e mode; consume mode sends the next fetch before counting a response (prefetch).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::batch::{for_each_value, read_header};
use super::conn::{decode_response, Conn, ConnWriter};
use super::settings::{Mode, Settings};
use super::stats::{Clock, Progress, Recorder};

/// Partition errors a fetch retries: UNKNOWN_TOPIC_OR_PARTITION (3), LEADER_NOT_AVAILABLE (5),
/// NOT_LEADER_OR_FOLLOWER (6), REPLICA_NOT_AVAILABLE (9), as right after topic creation.
const RETRIABLE: [i16; 4] = [3, 5, 6, 9];
/// How long a partition may keep failing with retriable errors.
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between fetches while some partition reports a retriable error.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// What one consumer connection fetches.
#[derive(Clone)]
pub struct ConsumerPlan {
    /// Consumer index.
    pub id: usize,
    /// Run settings.
    pub settings: Arc<Settings>,
    /// Topic.
    pub topic: String,
    /// Leader to fetch from.
    pub broker: SocketAddr,
    /// Partitions and their start offsets.
    pub offsets: Vec<(i32, i64)>,
    /// Consume mode: offsets at which each partition counts as drained.
    pub end_offsets: HashMap<i32, i64>,
    /// Shared clock.
    pub clock: Clock,
    /// Consume mode: stop at this time.
    pub end_ns: Option<u64>,
    /// Start of the run: fetching begins then; in e2e, records stamped earlier are not this
    /// run's.
    pub run_start_ns: u64,
}

/// Fetches until told to stop (e2e), or until the end time / drained (consume).
pub async fn run(
    plan: ConsumerPlan,
    recorder: Rc<RefCell<Recorder>>,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let conn = Conn::open(plan.broker).await?;
    let wait_ns = plan.run_start_ns.saturating_sub(plan.clock.now_ns());
    glommio::timer::sleep(Duration::from_nanos(wait_ns)).await;
    let version = conn.versions.pick(ApiKey::Fetch, 4, 12)?;
    let (mut writer, mut reader, _) = conn.into_halves();
    let mut offsets = plan.offsets.clone();
    let topic = TopicName(StrBytes::from_string(plan.topic.clone()));
    // Consume mode prefetches, as librdkafka's fetcher does: the next fetch, its offsets read
    // from the batch headers alone, is sent before this response's records are counted, so
    // that the broker serves it while this tool parses. E2e keeps one fetch in flight (its
    // latencies stay comparable with earlier runs).
    let prefetch = plan.settings.mode == Mode::Consume;
    let mut retrying: Option<Instant> = None;
    // The correlation id of a fetch already sent ahead (prefetch).
    let mut sent_ahead: Option<i32> = None;
    loop {
        let correlation_id = match sent_ahead.take() {
            Some(id) => id,
            None => {
                if should_stop(&plan, &offsets, &progress) {
                    return Ok(());
                }
                send_fetch(&mut writer, &plan, &topic, &offsets, version).await?
            }
        };
        let frame = reader.next_frame().await?;
        let response = decode_response::<FetchRequest>(frame, correlation_id, version)?;
        if response.error_code != 0 {
            bail!("fetch failed: error code {}", response.error_code);
        }
        if prefetch {
            let (next, retry) = next_offsets(&plan, &response, &offsets)?;
            if !retry && !should_stop(&plan, &next, &progress) {
                sent_ahead = Some(send_fetch(&mut writer, &plan, &topic, &next, version).await?);
            }
        }
        let retry = absorb(&plan, &response, &mut offsets, &recorder, &progress)?;
        retrying = match (retry, retrying) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, Some(since)) if since.elapsed() > RETRY_TIMEOUT => {
                bail!("fetch {}: retriable errors for {RETRY_TIMEOUT:?}", plan.topic)
            }
            (true, since) => since,
        };
        // (Nothing is sent ahead after a retriable error.)
        if retrying.is_some() {
            glommio::timer::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// Sends one fetch from `offsets`; its correlation id.
async fn send_fetch(
    writer: &mut ConnWriter,
    plan: &ConsumerPlan,
    topic: &TopicName,
    offsets: &[(i32, i64)],
    version: i16,
) -> anyhow::Result<i32> {
    let correlation_id = writer.encode(&fetch_request(&plan.settings, topic, offsets), version)?;
    writer.flush().await?;
    Ok(correlation_id)
}

/// Where each partition's next fetch starts after `response`, from its batch headers alone
/// (what [`absorb`] will advance `offsets` to), and whether a partition reported a retriable
/// error. Errors as [`absorb`] for a partition error or a malformed batch.
fn next_offsets(
    plan: &ConsumerPlan,
    response: &FetchResponse,
    offsets: &[(i32, i64)],
) -> anyhow::Result<(Vec<(i32, i64)>, bool)> {
    let mut next = offsets.to_vec();
    let retry = each_partition(plan, response, &mut next, |records, offset| {
        let mut data: &[u8] = records;
        while let Some(header) = read_header(data, false)? {
            data = data.get(header.size_bytes..).unwrap_or_default();
            *offset = (*offset).max(header.next_offset());
        }
        Ok(())
    })?;
    Ok((next, retry))
}

/// Counts a fetch response's records and advances `offsets`; `Ok(true)` if some partition
/// reported a retriable error.
fn absorb(
    plan: &ConsumerPlan,
    response: &FetchResponse,
    offsets: &mut [(i32, i64)],
    recorder: &RefCell<Recorder>,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let now = plan.clock.now_ns();
    let mut recorder = recorder.borrow_mut();
    each_partition(plan, response, offsets, |records, offset| {
        *offset = consume_records(plan, records, *offset, now, &mut recorder, progress)?;
        Ok(())
    })
}

/// Calls `visit` with the records and the offset slot of each partition of `response` that
/// `offsets` lists and that reported no error; `Ok(true)` if some partition reported a
/// retriable error, an error for any other partition error (or one `visit` returned).
fn each_partition(
    plan: &ConsumerPlan,
    response: &FetchResponse,
    offsets: &mut [(i32, i64)],
    mut visit: impl FnMut(&Bytes, &mut i64) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let mut retry = false;
    for t in &response.responses {
        for p in &t.partitions {
            if RETRIABLE.contains(&p.error_code) {
                retry = true;
                continue;
            }
            if p.error_code != 0 {
                bail!("fetch {}/{}: error code {}", plan.topic, p.partition_index, p.error_code);
            }
            let Some(slot) = offsets.iter_mut().find(|(id, _)| *id == p.partition_index) else {
                continue;
            };
            if let Some(records) = &p.records {
                visit(records, &mut slot.1)
                    .with_context(|| format!("partition {}", p.partition_index))?;
            }
        }
    }
    Ok(retry)
}

fn should_stop(plan: &ConsumerPlan, offsets: &[(i32, i64)], progress: &Progress) -> bool {
    if progress.stop_consumers.load(Ordering::Relaxed) {
        return true;
    }
    if plan.settings.mode != Mode::Consume {
        return false;
    }
    if plan.end_ns.is_some_and(|end| plan.clock.now_ns() >= end) {
        return true;
    }
    if plan.settings.messages.is_some_and(|m| Progress::get(&progress.consumed) >= m) {
        return true;
    }
    offsets.iter().all(|(p, o)| plan.end_offsets.get(p).is_some_and(|end| o >= end))
}

fn fetch_request(settings: &Settings, topic: &TopicName, offsets: &[(i32, i64)]) -> FetchRequest {
    let fetch_bytes = i32::try_from(settings.fetch_bytes).unwrap_or(i32::MAX);
    let partitions = offsets
        .iter()
        .map(|&(p, offset)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(fetch_bytes)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(settings.fetch_wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(fetch_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(partitions)])
}

/// Counts the records of a fetched partition at or after `offset`; returns the next offset.
fn consume_records(
    plan: &ConsumerPlan,
    records: &[u8],
    mut offset: i64,
    now_ns: u64,
    recorder: &mut Recorder,
    progress: &Progress,
) -> anyhow::Result<i64> {
    let e2e = plan.settings.mode == Mode::E2e;
    let mut data = records;
    let (mut count, mut bytes, mut foreign) = (0u64, 0u64, 0u64);
    while let Some(header) = read_header(data, true)? {
        let batch = &data[..header.size_bytes];
        data = &data[header.size_bytes..];
        if header.next_offset() <= offset {
            continue;
        }
        if !header.control {
            let mut record_offset = header.base_offset;
            for_each_value(&header, batch, |value| {
                let skip = record_offset < offset;
                record_offset += 1;
                if skip {
                    return;
                }
                let value = value.unwrap_or(&[]);
                if !e2e {
                    count += 1;
                    bytes += value.len() as u64;
                    recorder.record_consumed_only(now_ns, value.len() as u64, progress);
                    return;
                }
                let sent_ns = value.first_chunk::<8>().map_or(0, |s| u64::from_be_bytes(*s));
                if sent_ns < plan.run_start_ns || sent_ns > now_ns {
                    foreign += 1; // left by an earlier run, or not a bench record
                    return;
                }
                count += 1;
                bytes += value.len() as u64;
                recorder.record_consumed(now_ns, sent_ns, value.len() as u64, progress);
            })?;
        }
        offset = header.next_offset();
    }
    recorder.foreign += foreign;
    Progress::add(&progress.consumed, count);
    Progress::add(&progress.consumed_bytes, bytes);
    Ok(offset)
}
