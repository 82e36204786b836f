//! One producer client on one executor: a generator task that builds RecordBatch v2 batches per
//! partition (batch-bytes / linger, Java partitioner), and per leader broker a *lane*: a sender
//! task that drains ready batches into pipelined Produce requests (up to `max_in_flight` per
//! connection) and a reader task that matches responses in order and records latency.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use glommio::sync::Semaphore;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::batch::BatchBuilder;
use super::client::Layout;
use super::conn::{self, decode_response, ConnReader, ConnWriter, Versions};
use super::partitioner::{partition_for_key, Rng, Sticky};
use super::rt::{decimal, yield_now, Notify};
use super::settings::Settings;
use super::stats::{Clock, Progress, Recorder, SendSpan};
use super::workload::{Acks, KeyMode, Rate};

/// Records generated between two yields to the sender and reader tasks.
const CHUNK_RECORDS: u64 = 512;
/// Shortest pacing sleep at a fixed rate. Each sleep arms an io_uring timeout, which costs
/// microseconds of kernel time, so above 1/tick msgs/s per producer the records due are made
/// in bursts once per tick. They keep their scheduled send times, so the up-to-one-tick delay
/// counts in their latency rather than being hidden.
const PACING_TICK_NS: u64 = 50_000;
/// Extra payload bytes so that record values start at varying offsets of the pool.
const PAYLOAD_SLACK: usize = 4096;
/// Produce request timeout sent to the broker.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// What a producer needs from its run.
#[derive(Clone)]
pub struct ProducerPlan {
    /// Producer index (0..producers).
    pub id: usize,
    /// Run settings.
    pub settings: Arc<Settings>,
    /// Topic layout.
    pub layout: Arc<Layout>,
    /// Shared clock.
    pub clock: Clock,
    /// Intended send time of this producer's first record.
    pub start_ns: u64,
    /// End of warm-up: records intended from here on are measured.
    pub measure_start_ns: u64,
    /// No record is intended at or after this time.
    pub end_ns: Option<u64>,
    /// Measured records this producer sends.
    pub messages: Option<u64>,
}

/// A batch sealed and waiting for a request.
struct Ready {
    partition: i32,
    data: Bytes,
    span: SendSpan,
}

/// A produce request on the wire.
struct InFlight {
    correlation_id: i32,
    batches: Vec<(i32, SendSpan)>,
}

/// A partition's batch being filled.
struct Open {
    builder: BatchBuilder,
    span: SendSpan,
    created_ns: u64,
}

/// Per-broker connection state shared by the generator, the sender and the reader.
struct Lane {
    ready: RefCell<VecDeque<Ready>>,
    pending: RefCell<VecDeque<InFlight>>,
    ready_notify: Notify,
    pending_notify: Notify,
    in_flight: Semaphore,
    closing: Cell<bool>,
    sender_done: Cell<bool>,
}

/// State the generator and the lanes share on the executor.
struct Shared {
    plan: ProducerPlan,
    lanes: Vec<Rc<Lane>>,
    /// Lane index of each partition.
    lane_of: Vec<usize>,
    /// Batches a producer may hold (the buffer budget).
    slots: Semaphore,
    recorder: Rc<RefCell<Recorder>>,
    progress: Arc<Progress>,
    failure: RefCell<Option<anyhow::Error>>,
}

impl Shared {
    fn fail(&self, error: anyhow::Error) {
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(error);
        }
        self.slots.close();
        for lane in &self.lanes {
            lane.in_flight.close();
            lane.closing.set(true);
            lane.ready_notify.notify();
            lane.pending_notify.notify();
        }
    }
}

/// Runs one producer to completion: connects to each leader, generates, waits for every ack.
pub async fn run(
    plan: ProducerPlan,
    recorder: Rc<RefCell<Recorder>>,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let (shared, conns) = connect_lanes(plan, recorder, progress).await?;
    let shared = Rc::new(shared);
    let mut tasks = Vec::new();
    for (i, (writer, reader, versions)) in conns.into_iter().enumerate() {
        let version = versions.pick(ApiKey::Produce, 3, 12)?;
        let (s1, s2) = (shared.clone(), shared.clone());
        tasks.push(glommio::spawn_local(send_loop(s1, i, writer, version)));
        tasks.push(glommio::spawn_local(read_loop(s2, i, reader, version)));
    }
    if let Err(e) = generate(&shared).await {
        shared.fail(e);
    }
    for lane in &shared.lanes {
        lane.closing.set(true);
        lane.ready_notify.notify();
        lane.pending_notify.notify();
    }
    for task in tasks {
        task.await;
    }
    let failure = shared.failure.borrow_mut().take();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

type Halves = (ConnWriter, ConnReader, Versions);

async fn connect_lanes(
    plan: ProducerPlan,
    recorder: Rc<RefCell<Recorder>>,
    progress: Arc<Progress>,
) -> anyhow::Result<(Shared, Vec<Halves>)> {
    let mut leaders: Vec<i32> = plan.layout.leaders.clone();
    leaders.sort_unstable();
    leaders.dedup();
    let mut conns = Vec::new();
    let mut lanes = Vec::new();
    for &leader in &leaders {
        let addr = plan.layout.brokers.get(&leader).copied();
        let addr = addr.ok_or_else(|| anyhow!("no address for broker {leader}"))?;
        conns.push(conn::Conn::open(addr).await?.into_halves());
        lanes.push(Rc::new(Lane {
            ready: RefCell::new(VecDeque::new()),
            pending: RefCell::new(VecDeque::new()),
            ready_notify: Notify::default(),
            pending_notify: Notify::default(),
            in_flight: Semaphore::new(plan.settings.max_in_flight as u64),
            closing: Cell::new(false),
            sender_done: Cell::new(false),
        }));
    }
    let lane_of =
        plan.layout.leaders.iter().map(|l| leaders.binary_search(l).unwrap_or(0)).collect();
    let slot_count = (plan.settings.buffer_bytes / plan.settings.batch_bytes)
        .max(2 * plan.layout.leaders.len())
        .max(2 * plan.settings.max_in_flight);
    let shared = Shared {
        slots: Semaphore::new(slot_count as u64),
        plan,
        lanes,
        lane_of,
        recorder,
        progress,
        failure: RefCell::new(None),
    };
    Ok((shared, conns))
}

/// Record generation state of one producer.
struct Generator {
    rng: Rng,
    sticky: Sticky,
    open: Vec<Option<Open>>,
    open_count: usize,
    payload: Vec<u8>,
    seq: u64,
    measured: u64,
    interval_ns: Option<f64>,
}

/// Generates records until the end condition, then seals every open batch.
async fn generate(shared: &Shared) -> anyhow::Result<()> {
    let plan = &shared.plan;
    let settings = &plan.settings;
    let partitions = plan.layout.partitions();
    let mut rng = Rng::new(0x5eed_0000 + plan.id as u64);
    let payload = (0..settings.record_size.max() + PAYLOAD_SLACK)
        .map(|_| b'0' + (rng.next_u64() % 64) as u8)
        .collect();
    let interval_ns = match settings.rate {
        Rate::Max => None,
        Rate::PerSecond(r) => Some(1e9 * settings.producers as f64 / r),
    };
    let mut g = Generator {
        sticky: Sticky::new(partitions, &mut rng),
        rng,
        open: (0..partitions).map(|_| None).collect(),
        open_count: 0,
        payload,
        seq: 0,
        measured: 0,
        interval_ns,
    };
    while !generate_chunk(shared, &mut g).await? {
        expire_lingering(shared, &mut g)?;
        yield_now().await;
    }
    for p in 0..partitions {
        seal(shared, &mut g, p)?;
    }
    Ok(())
}

/// Generates up to one chunk of due records; `Ok(true)` when the producer is done.
async fn generate_chunk(shared: &Shared, g: &mut Generator) -> anyhow::Result<bool> {
    let plan = &shared.plan;
    let mut now = plan.clock.now_ns();
    let due = match g.interval_ns {
        None => CHUNK_RECORDS,
        Some(interval) => {
            let next = plan.start_ns + (g.seq as f64 * interval) as u64;
            if plan.end_ns.is_some_and(|end| next >= end) {
                return Ok(true);
            }
            if next > now {
                let wake = next.min(linger_deadline(shared, g).unwrap_or(u64::MAX));
                let wait = wake.saturating_sub(now).max(PACING_TICK_NS);
                glommio::timer::sleep(std::time::Duration::from_nanos(wait)).await;
                return Ok(false);
            }
            (((now - plan.start_ns) as f64 / interval) as u64 + 1 - g.seq).min(CHUNK_RECORDS)
        }
    };
    for _ in 0..due {
        let intended = match g.interval_ns {
            None => now,
            Some(interval) => plan.start_ns + (g.seq as f64 * interval) as u64,
        };
        if plan.end_ns.is_some_and(|end| intended >= end) {
            return Ok(true);
        }
        if intended >= plan.measure_start_ns {
            if plan.messages.is_some_and(|m| g.measured >= m) {
                return Ok(true);
            }
            g.measured += 1;
        }
        append_record(shared, g, intended).await?;
        if g.interval_ns.is_none() && g.seq.is_multiple_of(64) {
            now = plan.clock.now_ns();
        }
    }
    Ok(false)
}

/// Earliest time an open batch's linger runs out.
fn linger_deadline(shared: &Shared, g: &Generator) -> Option<u64> {
    if g.open_count == 0 {
        return None;
    }
    let linger = shared.plan.settings.linger.as_nanos() as u64;
    g.open.iter().flatten().map(|o| o.created_ns + linger).min()
}

/// Seals the batches whose linger has run out.
fn expire_lingering(shared: &Shared, g: &mut Generator) -> anyhow::Result<()> {
    if g.open_count == 0 {
        return Ok(());
    }
    let now = shared.plan.clock.now_ns();
    let linger = shared.plan.settings.linger.as_nanos() as u64;
    for p in 0..g.open.len() {
        let expired = g.open[p].as_ref().is_some_and(|o| o.created_ns + linger <= now);
        if expired {
            seal(shared, g, p as i32)?;
        }
    }
    Ok(())
}

/// Appends one record (key, value = 8-byte intended time + payload) to its partition's batch.
async fn append_record(shared: &Shared, g: &mut Generator, intended_ns: u64) -> anyhow::Result<()> {
    let settings = &shared.plan.settings;
    let random = g.rng.next_u64();
    let size = settings.record_size.sample(random);
    let mut key_buf = [0u8; 20];
    let key: Option<&[u8]> = match settings.key_mode {
        KeyMode::None => None,
        KeyMode::Random => Some(decimal(g.rng.next_u64(), &mut key_buf)),
        KeyMode::Sequential => Some(decimal(g.seq, &mut key_buf)),
    };
    let partitions = g.open.len() as i32;
    let partition = match key {
        Some(k) => partition_for_key(k, partitions),
        None => g.sticky.current(),
    };
    let slot = partition as usize;
    if g.open[slot].is_none() {
        shared.slots.acquire(1).await.map_err(|_| producer_stopped(shared))?;
        let compression = settings.compression;
        let builder = BatchBuilder::new(settings.batch_bytes, compression, ms(intended_ns));
        let span = SendSpan { count: 0, bytes: 0, first_ns: intended_ns, last_ns: intended_ns };
        g.open[slot] = Some(Open { builder, span, created_ns: shared.plan.clock.now_ns() });
        g.open_count += 1;
    }
    let offset = (random >> 32) as usize % PAYLOAD_SLACK;
    let stamp = intended_ns.to_be_bytes();
    let (head, tail_len): (&[u8], usize) = if size >= 8 { (&stamp, size - 8) } else { (&[], size) };
    let tail = &g.payload[offset..offset + tail_len];
    let Some(open) = g.open[slot].as_mut() else { unreachable!("opened above") };
    open.builder.append(ms(intended_ns), key, &[head, tail]);
    open.span.count += 1;
    open.span.bytes += size as u64;
    open.span.last_ns = intended_ns;
    let full = open.builder.size_bytes() + open.builder.record_size(key.map(<[u8]>::len), size)
        > settings.batch_bytes;
    g.seq += 1;
    if full {
        seal(shared, g, partition)?;
    }
    Ok(())
}

fn producer_stopped(shared: &Shared) -> anyhow::Error {
    match shared.failure.borrow().as_ref() {
        Some(e) => anyhow!("producer stopped: {e:#}"),
        None => anyhow!("producer stopped"),
    }
}

fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

/// Seals partition `p`'s open batch (if any) and queues it on its lane.
fn seal(shared: &Shared, g: &mut Generator, p: i32) -> anyhow::Result<()> {
    let Some(open) = g.open.get_mut(p as usize).and_then(Option::take) else {
        return Ok(());
    };
    g.open_count -= 1;
    g.sticky.on_batch_closed(p, &mut g.rng);
    let data = open.builder.finish()?;
    Progress::add(&shared.progress.sent, open.span.count);
    let lane = &shared.lanes[shared.lane_of[p as usize]];
    lane.ready.borrow_mut().push_back(Ready { partition: p, data, span: open.span });
    lane.ready_notify.notify();
    Ok(())
}

/// Sender task of a lane: batches → Produce requests, at most `max_in_flight` outstanding.
async fn send_loop(shared: Rc<Shared>, lane_index: usize, mut writer: ConnWriter, version: i16) {
    let lane = shared.lanes[lane_index].clone();
    let result = send_loop_inner(&shared, &lane, &mut writer, version).await;
    lane.sender_done.set(true);
    lane.pending_notify.notify();
    if let Err(e) = result {
        shared.fail(e);
    }
}

async fn send_loop_inner(
    shared: &Shared,
    lane: &Lane,
    writer: &mut ConnWriter,
    version: i16,
) -> anyhow::Result<()> {
    let settings = &shared.plan.settings;
    let topic = TopicName(StrBytes::from_string(shared.plan.layout.topic.clone()));
    loop {
        while lane.ready.borrow().is_empty() {
            if lane.closing.get() {
                return Ok(());
            }
            lane.ready_notify.wait().await;
        }
        if shared.failure.borrow().is_some() {
            return Ok(());
        }
        lane.in_flight.acquire(1).await.map_err(|_| anyhow!("lane closed"))?;
        let (request, batches) = drain_request(lane, &topic, settings)?;
        let correlation_id = writer.encode(&request, version)?;
        drop(request);
        if settings.acks == Acks::None {
            writer.flush().await?;
            complete(shared, lane, &batches, &[]);
            continue;
        }
        lane.pending.borrow_mut().push_back(InFlight { correlation_id, batches });
        lane.pending_notify.notify();
        writer.flush().await?;
    }
}

/// Takes ready batches (one per partition, Produce v3+ allows no more) into one request.
fn drain_request(
    lane: &Lane,
    topic: &TopicName,
    settings: &Settings,
) -> anyhow::Result<(ProduceRequest, Vec<(i32, SendSpan)>)> {
    let mut ready = lane.ready.borrow_mut();
    let mut parts: Vec<PartitionProduceData> = Vec::new();
    let mut batches = Vec::new();
    let mut bytes = 0;
    let mut i = 0;
    while i < ready.len() {
        let (partition, size) = (ready[i].partition, ready[i].data.len());
        let taken = batches.iter().any(|&(p, _)| p == partition);
        if taken || (bytes > 0 && bytes + size > settings.request_bytes_max) {
            i += 1;
            continue;
        }
        let Some(batch) = ready.remove(i) else { break };
        bytes += size;
        batches.push((partition, batch.span));
        parts.push(
            PartitionProduceData::default().with_index(partition).with_records(Some(batch.data)),
        );
    }
    if batches.is_empty() {
        bail!("no batch to send");
    }
    let request = ProduceRequest::default()
        .with_acks(settings.acks.wire())
        .with_timeout_ms(PRODUCE_TIMEOUT_MS)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(parts)]);
    Ok((request, batches))
}

/// Accounts a finished request: latency, counters, and the buffer and in-flight permits.
fn complete(shared: &Shared, lane: &Lane, batches: &[(i32, SendSpan)], failed: &[i32]) {
    let now = shared.plan.clock.now_ns();
    let progress = &shared.progress;
    let mut recorder = shared.recorder.borrow_mut();
    for &(partition, span) in batches {
        if failed.contains(&partition) {
            recorder.errors += span.count;
            Progress::add(&progress.errors, span.count);
            continue;
        }
        Progress::add(&progress.acked, span.count);
        Progress::add(&progress.acked_bytes, span.bytes);
        if shared.plan.settings.acks == Acks::None {
            recorder.record_written(now, span, progress);
        } else {
            recorder.record_acks(now, span, progress);
        }
    }
    shared.slots.signal(batches.len() as u64);
    lane.in_flight.signal(1);
}

/// Reader task of a lane: responses in order, matched to the requests in flight.
async fn read_loop(shared: Rc<Shared>, lane_index: usize, mut reader: ConnReader, version: i16) {
    let lane = shared.lanes[lane_index].clone();
    if shared.plan.settings.acks == Acks::None {
        return;
    }
    if let Err(e) = read_loop_inner(&shared, &lane, &mut reader, version).await {
        shared.fail(e);
    }
}

async fn read_loop_inner(
    shared: &Shared,
    lane: &Lane,
    reader: &mut ConnReader,
    version: i16,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    loop {
        while lane.pending.borrow().is_empty() {
            if lane.sender_done.get() || shared.failure.borrow().is_some() {
                return Ok(());
            }
            lane.pending_notify.wait().await;
        }
        let frame = reader.next_frame().await?;
        let Some(request) = lane.pending.borrow_mut().pop_front() else {
            bail!("response without a request in flight");
        };
        let response = decode_response::<ProduceRequest>(frame, request.correlation_id, version)?;
        failed.clear();
        for topic in &response.responses {
            for p in &topic.partition_responses {
                if p.error_code != 0 {
                    failed.push(p.index);
                    report_produce_error(shared, p.index, p.error_code);
                }
            }
        }
        complete(shared, lane, &request.batches, &failed);
    }
}

fn report_produce_error(shared: &Shared, partition: i32, code: i16) {
    let errors = Progress::get(&shared.progress.errors);
    if errors < 5 {
        eprintln!("produce to partition {partition} failed: error code {code}");
    }
}
