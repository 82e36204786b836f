//! One shard: the partition logs it owns, its copy of cluster metadata, and its mesh links.
//!
//! A `Shard` lives on one executor (`Rc`, never shared across threads). Partition work is
//! routed to the owning shard: done in place when that is this shard, sent over the mesh
//! otherwise ([`Shard::scatter`]). Shard 0 also executes metadata changes ([`Shard::control`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures::channel::oneshot;
use futures::future::join_all;
use glommio::channels::channel_mesh::Senders;
use glommio::sync::Semaphore;
use tracing::Instrument;

use super::mesh::*;
use super::txn::TxnCoordinator;
use crate::config::{BrokerConfig, FlushPolicy};
use crate::controller::placement::Command;
use crate::controller::producer_ids::ProducerIds;
use crate::controller::quorum::QuorumHandle;
use crate::controller::{self, ClusterMetadata, ControlError, TopicMeta};
use crate::group::{self, Coordinator};
use crate::metrics::{PartitionCounters, PartitionSnapshot, ShardMetrics, ShardSnapshot};
use crate::protocol::ResponseError as E;
use crate::storage::{
    self, CleanupConfig, LogConfig, PartitionLog, PendingAppend, ReadError, TimestampType,
};

/// A boxed future that stays on this executor.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// A partition this shard owns: its log and its traffic counters (resolved once, here, so
/// produce and fetch never look a metric up by name).
#[derive(Clone)]
struct Owned {
    log: PartitionLog,
    counters: Rc<PartitionCounters>,
}

/// The logs of one topic that this shard owns.
struct TopicLogs {
    id: uuid::Uuid,
    /// Indexed by partition; `None` where another shard owns the partition.
    partitions: Vec<Option<Owned>>,
}

/// State of one shard. See the module docs.
pub struct Shard {
    /// This shard's index in the mesh (0 is the coordinator).
    pub id: usize,
    /// Number of shards.
    pub count: usize,
    /// Broker configuration.
    pub config: Arc<BrokerConfig>,
    meta: RefCell<Arc<ClusterMetadata>>,
    logs: RefCell<HashMap<Arc<str>, TopicLogs>>,
    mesh: Senders<Envelope>,
    /// Serialises metadata changes on shard 0.
    control_lock: Semaphore,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    /// The consumer groups this shard coordinates.
    pub groups: Rc<Coordinator>,
    /// The transactional ids this shard coordinates.
    pub txns: Rc<TxnCoordinator>,
    /// Produce requests answered so far (for `fault_drop_produce_every`).
    pub produce_count: Cell<u64>,
    /// Shard 0's producer id allocator, loaded on first use.
    producer_ids: RefCell<Option<Rc<ProducerIds>>>,
    /// Fired when the first metadata snapshot has been applied.
    ready: RefCell<Option<oneshot::Sender<()>>>,
    /// Request and storage latency histograms of this shard.
    pub metrics: Rc<ShardMetrics>,
    /// Closed when the shard starts shutting down: connections stop reading requests.
    pub draining: Semaphore,
    /// The controller quorum, when this broker is part of a cluster.
    pub quorum: Option<QuorumHandle>,
    /// Shard 0 in a cluster: proposals waiting until the metadata they changed is published
    /// (version reached, and the signal).
    version_waiters: RefCell<Vec<(u64, oneshot::Sender<()>)>>,
    /// Shard 0 in a cluster: the version every shard has applied (shard 0's own `meta` is
    /// updated before the other shards acknowledge, so it does not tell).
    published_version: Cell<u64>,
}

fn error_outcome(error: E, message: impl Into<String>) -> ProduceOutcome {
    ProduceOutcome {
        error_code: error.code(),
        error_message: Some(message.into()),
        base_offset: -1,
        log_append_time: -1,
        log_start_offset: -1,
    }
}

/// Preallocation extent of `__consumer_offsets` segments.
const OFFSETS_PREALLOC_BYTES: u64 = 1 << 20;

/// The storage settings of one topic: broker defaults overridden by topic configs.
pub fn log_config(broker: &BrokerConfig, topic: &TopicMeta) -> LogConfig {
    let get = |name: &str| topic.configs.get(name).and_then(|v| v.trim().parse::<u64>().ok());
    let (mut messages, mut interval_ms, mut every) = match &broker.flush {
        FlushPolicy::EveryProduce => (None, None, true),
        FlushPolicy::Periodic { messages, interval_ms } => (*messages, *interval_ms, false),
    };
    if let Some(n) = get("flush.messages") {
        messages = Some(n);
        every = n == 1;
    }
    if let Some(ms) = get("flush.ms") {
        interval_ms = Some(ms);
        every = every && ms == 0;
    }
    let append_time = match topic.configs.get("message.timestamp.type") {
        Some(v) => v == "LogAppendTime",
        None => broker.log_append_time,
    };
    // The internal offsets topic holds small records: small extents keep its many
    // partitions from reserving much disk.
    let internal = topic.name == group::OFFSETS_TOPIC || topic.name == crate::txn::TXN_TOPIC;
    let prealloc_bytes = if internal {
        broker.segment_prealloc_bytes.min(OFFSETS_PREALLOC_BYTES)
    } else {
        broker.segment_prealloc_bytes
    };
    LogConfig {
        segment_bytes: get("segment.bytes").unwrap_or(broker.segment_bytes),
        segment_ms: get("segment.ms").or(broker.segment_ms),
        prealloc_bytes,
        max_batch_bytes: get("max.message.bytes").map_or(broker.max_message_bytes, |v| v as usize),
        timestamp_type: if append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        flush: storage::FlushPolicy { every_append: every, messages, interval_ms },
        tail_cache_bytes: broker.tail_cache_bytes,
        cleanup: cleanup_config(broker, topic),
        ..LogConfig::default()
    }
}

/// Retention and compaction settings of one topic: broker defaults overridden by topic configs.
fn cleanup_config(broker: &BrokerConfig, topic: &TopicMeta) -> CleanupConfig {
    let long = |name: &str, default: i64| {
        topic.configs.get(name).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(default)
    };
    let policy = topic.configs.get("cleanup.policy").unwrap_or(&broker.cleanup_policy);
    let unbounded = |v: i64| u64::try_from(v).ok();
    CleanupConfig {
        delete: policy.split(',').any(|p| p.trim() == "delete"),
        compact: policy.split(',').any(|p| p.trim() == "compact"),
        retention_ms: unbounded(long("retention.ms", broker.retention_ms)),
        retention_bytes: unbounded(long("retention.bytes", broker.retention_bytes)),
        delete_retention_ms: unbounded(long("delete.retention.ms", -1))
            .unwrap_or(broker.delete_retention_ms),
        min_compaction_lag_ms: unbounded(long("min.compaction.lag.ms", -1))
            .unwrap_or(broker.min_compaction_lag_ms),
    }
}

impl Shard {
    /// A shard with no partitions and empty metadata.
    pub fn new(
        id: usize,
        count: usize,
        config: Arc<BrokerConfig>,
        mesh: Senders<Envelope>,
        ready: oneshot::Sender<()>,
        quorum: Option<QuorumHandle>,
    ) -> Self {
        let initial_delay_ms = i64::try_from(config.group_initial_rebalance_delay_ms).unwrap_or(0);
        Shard {
            id,
            count,
            config,
            meta: RefCell::new(Arc::new(ClusterMetadata::default())),
            logs: RefCell::new(HashMap::new()),
            mesh,
            control_lock: Semaphore::new(1),
            connections: Cell::new(0),
            groups: Coordinator::new(initial_delay_ms),
            txns: TxnCoordinator::new(),
            producer_ids: RefCell::new(None),
            produce_count: Cell::new(0),
            ready: RefCell::new(Some(ready)),
            metrics: Rc::new(ShardMetrics::new(super::handlers::APIS.len())),
            draining: Semaphore::new(0),
            quorum,
            version_waiters: RefCell::new(Vec::new()),
            published_version: Cell::new(0),
        }
    }

    /// The current metadata snapshot.
    pub fn meta(&self) -> Arc<ClusterMetadata> {
        self.meta.borrow().clone()
    }

    fn log(&self, topic: &str, partition: i32) -> Option<PartitionLog> {
        self.owned(topic, partition).map(|o| o.log)
    }

    fn owned(&self, topic: &str, partition: i32) -> Option<Owned> {
        let logs = self.logs.borrow();
        let index = usize::try_from(partition).ok()?;
        logs.get(topic)?.partitions.get(index)?.clone()
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        controller::partition_dir(&self.config.data_dir, topic, partition)
    }

    /// Sends `msg` to shard `to`. False if that shard is gone (shutting down).
    pub async fn send(&self, to: usize, msg: ShardMsg) -> bool {
        debug_assert_ne!(to, self.id, "a shard never messages itself");
        let envelope = Envelope { span: tracing::Span::current(), msg };
        self.mesh.send_to(to, envelope).await.is_ok()
    }

    /// A new producer id, from shard 0's allocator (see `controller::producer_ids`).
    pub async fn allocate_producer_id(self: &Rc<Self>) -> Result<i64, String> {
        if self.id != 0 {
            let (reply, answer) = oneshot::channel();
            if !self.send(0, ShardMsg::AllocateProducerId { reply }).await {
                return Err("the coordinator shard is not available".into());
            }
            return answer.await.unwrap_or_else(|_| Err("the coordinator shard dropped it".into()));
        }
        let existing = self.producer_ids.borrow().clone();
        let ids = match existing {
            Some(ids) => ids,
            None => {
                let ids = ProducerIds::load(&self.config.data_dir).map_err(|e| e.to_string())?;
                let ids = Rc::new(ids);
                *self.producer_ids.borrow_mut() = Some(ids.clone());
                ids
            }
        };
        ids.allocate().await.map_err(|e| format!("reserving producer ids: {e}"))
    }

    // ---- metadata -------------------------------------------------------------------------

    /// Opens, reconfigures and deletes logs so this shard matches `meta`, then adopts it.
    pub async fn apply_metadata(&self, meta: Arc<ClusterMetadata>) {
        let old = self.meta();
        self.drop_stale_topics(&meta).await;
        for topic in meta.topics.values() {
            self.open_topic(topic).await;
            let changed = old.topics.get(&topic.name).map(|t| &t.configs) != Some(&topic.configs);
            if changed {
                self.reconfigure(topic);
            }
        }
        *self.meta.borrow_mut() = meta;
        if let Some(ready) = self.ready.borrow_mut().take() {
            let _ = ready.send(());
        }
    }

    async fn drop_stale_topics(&self, meta: &ClusterMetadata) {
        let stale: Vec<(Arc<str>, TopicLogs)> = {
            let mut logs = self.logs.borrow_mut();
            let names: Vec<Arc<str>> = logs
                .iter()
                .filter(|(name, t)| meta.topics.get(&***name).map(|m| m.id) != Some(t.id))
                .map(|(name, _)| name.clone())
                .collect();
            names.into_iter().filter_map(|n| logs.remove(&n).map(|t| (n, t))).collect()
        };
        for (name, topic) in stale {
            for owned in topic.partitions.into_iter().flatten() {
                if let Err(e) = owned.log.delete().await {
                    tracing::error!(topic = %name, "deleting partition log failed: {e}");
                }
            }
            tracing::info!(shard = self.id, topic = %name, "deleted topic's logs");
        }
    }

    async fn open_topic(&self, topic: &TopicMeta) {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let number = index as i32;
            if partition.shard != self.id || self.log(&topic.name, number).is_some() {
                continue;
            }
            let dir = self.partition_dir(&topic.name, number);
            let config = log_config(&self.config, topic);
            match PartitionLog::open(dir, config).await {
                Ok(log) => {
                    if topic.name == group::OFFSETS_TOPIC {
                        self.groups.add_partition(number, log.clone());
                    }
                    if topic.name == crate::txn::TXN_TOPIC {
                        self.txns.add_partition(number, log.clone());
                    }
                    self.insert_log(topic, index, log)
                }
                Err(e) => tracing::error!(topic = %topic.name, partition = number,
                    "cannot open partition log: {e}"),
            }
        }
    }

    fn insert_log(&self, topic: &TopicMeta, index: usize, log: PartitionLog) {
        let mut logs = self.logs.borrow_mut();
        let entry = logs
            .entry(Arc::from(topic.name.as_str()))
            .or_insert_with(|| TopicLogs { id: topic.id, partitions: Vec::new() });
        if entry.partitions.len() <= index {
            entry.partitions.resize(index + 1, None);
        }
        let counters = Rc::new(PartitionCounters::default());
        entry.partitions[index] = Some(Owned { log, counters });
    }

    fn reconfigure(&self, topic: &TopicMeta) {
        let config = log_config(&self.config, topic);
        if let Some(t) = self.logs.borrow().get(topic.name.as_str()) {
            for owned in t.partitions.iter().flatten() {
                owned.log.set_config(config.clone());
            }
        }
    }

    /// Executes a metadata change: on shard 0 directly, elsewhere by asking shard 0.
    pub async fn control(self: &Rc<Self>, op: ControlOp) -> Result<(), ControlError> {
        if self.id != 0 {
            let (reply, answer) = oneshot::channel();
            if !self.send(0, ShardMsg::Control { op, reply }).await {
                return Err(unavailable());
            }
            return answer.await.unwrap_or_else(|_| Err(unavailable()));
        }
        if self.quorum.is_some() {
            return self.control_clustered(op).await;
        }
        let _guard = self.control_lock.acquire_permit(1).await.map_err(|_| unavailable())?;
        let meta = self.meta();
        let shards = self.count;
        let (next, validate_only) = match op {
            ControlOp::CreateTopic { name, partitions, configs, validate_only, .. } => {
                (meta.create_topic(&name, partitions, configs, shards)?, validate_only)
            }
            ControlOp::DeleteTopic { name } => (meta.delete_topic(&name)?, false),
            ControlOp::CreatePartitions { name, total, validate_only } => {
                (meta.add_partitions(&name, total, shards)?, validate_only)
            }
            ControlOp::AlterConfigs { name, changes, replace, validate_only } => {
                let next = meta.alter_topic_configs(&name, &changes, replace, &self.config)?;
                (next, validate_only)
            }
        };
        if validate_only {
            return Ok(());
        }
        if let Err(e) = controller::store(&self.config.data_dir, &next).await {
            tracing::error!("persisting cluster metadata failed: {e}");
            return Err(ControlError { code: E::KafkaStorageError.code(), message: e.to_string() });
        }
        self.publish(Arc::new(next)).await;
        Ok(())
    }

    /// Shard 0 in a cluster: turns `op` into a command checked against the current metadata,
    /// writes it through the controller quorum, and returns once this broker published the
    /// metadata it produced.
    async fn control_clustered(&self, op: ControlOp) -> Result<(), ControlError> {
        let meta = self.meta();
        let (command, validate_only) = match op {
            ControlOp::CreateTopic {
                name,
                partitions,
                configs,
                validate_only,
                replication_factor,
            } => {
                let replication_factor =
                    if replication_factor < 0 { 1 } else { replication_factor };
                meta.check_new_topic(&name, partitions, replication_factor, &configs)?;
                let id = uuid::Uuid::new_v4();
                (
                    Command::CreateTopic { name, id, partitions, replication_factor, configs },
                    validate_only,
                )
            }
            ControlOp::DeleteTopic { name } => (Command::DeleteTopic { name }, false),
            ControlOp::CreatePartitions { name, total, validate_only } => {
                (Command::CreatePartitions { name, total }, validate_only)
            }
            ControlOp::AlterConfigs { name, changes, replace, validate_only } => {
                let next = meta.alter_topic_configs(&name, &changes, replace, &self.config)?;
                let configs = next.topics.get(&name).map(|t| t.configs.clone()).unwrap_or_default();
                (Command::SetTopicConfigs { name, configs }, validate_only)
            }
        };
        if validate_only {
            return meta.apply(&command).map(drop);
        }
        self.control_command(command).await
    }

    /// Shard 0 in a cluster: writes `command` through the controller quorum and returns once
    /// this broker published the metadata it produced.
    pub async fn control_command(&self, command: Command) -> Result<(), ControlError> {
        let Some(quorum) = &self.quorum else {
            return Err(unavailable());
        };
        assert_eq!(self.id, 0, "metadata changes go through shard 0");
        let index = quorum.propose(command).await?;
        self.published(index).await;
        Ok(())
    }

    /// Resolves once metadata of `version` or later has been published to every shard.
    async fn published(&self, version: u64) {
        if self.published_version.get() >= version {
            return;
        }
        let (reply, done) = oneshot::channel();
        self.version_waiters.borrow_mut().push((version, reply));
        let _ = done.await;
    }

    /// Shard 0 in a cluster: publishes replicated metadata as this broker sees it (the
    /// shards of the partitions it leads), then wakes the proposals it completes.
    pub async fn publish_replicated(&self, meta: &ClusterMetadata) {
        let local = meta.localize(self.config.node_id, self.count);
        let version = local.version;
        self.publish(Arc::new(local)).await;
        self.published_version.set(version);
        let ready: Vec<oneshot::Sender<()>> = {
            let mut waiters = self.version_waiters.borrow_mut();
            let (done, waiting) = waiters.drain(..).partition(|(v, _)| *v <= version);
            *waiters = waiting;
            done.into_iter().map(|(_, reply)| reply).collect()
        };
        for reply in ready {
            let _ = reply.send(());
        }
    }

    /// Shard 0: hands `meta` to every shard and waits until all applied it.
    pub async fn publish(&self, meta: Arc<ClusterMetadata>) {
        let mut acks = Vec::new();
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let (reply, ack) = oneshot::channel();
            let msg = ShardMsg::ApplyMetadata { meta: meta.clone(), reply };
            if self.send(peer, msg).await {
                acks.push(ack);
            }
        }
        self.apply_metadata(meta).await;
        join_all(acks).await;
    }

    /// Flushes and closes every log (clean shutdown).
    pub async fn close_logs(&self) {
        for log in self.local_logs() {
            if let Err(e) = log.close().await {
                tracing::error!(shard = self.id, "closing a partition log failed: {e}");
            }
        }
    }
}

fn unavailable() -> ControlError {
    ControlError {
        code: E::CoordinatorNotAvailable.code(),
        message: "the coordinator shard is not available".into(),
    }
}

// ---- data plane: work on partitions this shard owns --------------------------------------------

/// An append that was accepted locally, or its failure.
pub enum LocalAppend {
    /// Queued; resolves when durable per the flush policy. The latency from `queued` to the
    /// acknowledgement goes to `metrics`.
    Pending {
        /// The append.
        pending: PendingAppend,
        /// When it was queued.
        queued: Instant,
        /// Where its latency is recorded.
        metrics: Rc<ShardMetrics>,
    },
    /// Refused.
    Failed(ProduceOutcome),
}

impl LocalAppend {
    /// Waits for the acknowledgement.
    pub async fn outcome(self) -> ProduceOutcome {
        match self {
            LocalAppend::Failed(outcome) => outcome,
            LocalAppend::Pending { pending, queued, metrics } => match pending.durable().await {
                Ok(info) => {
                    metrics.append_latency.observe(queued.elapsed());
                    ProduceOutcome {
                        error_code: 0,
                        error_message: None,
                        base_offset: info.base_offset,
                        log_append_time: info.log_append_time,
                        log_start_offset: info.log_start_offset,
                    }
                }
                Err(e) => ProduceOutcome {
                    error_code: e.kafka_error_code(),
                    error_message: Some(e.to_string()),
                    ..error_outcome(E::KafkaStorageError, "")
                },
            },
        }
    }
}

impl Shard {
    /// Appends to a partition this shard owns, synchronously (call order = log order).
    pub fn append_local(&self, topic: &str, partition: i32, records: &[u8]) -> LocalAppend {
        let Some(Owned { log, counters }) = self.owned(topic, partition) else {
            return LocalAppend::Failed(error_outcome(
                E::NotLeaderOrFollower,
                "partition is not on this shard",
            ));
        };
        let queued = Instant::now();
        match log.append(records) {
            Ok(pending) => {
                let messages = pending.last_offset() - pending.base_offset() + 1;
                counters.record_in(records.len() as u64, messages.max(0) as u64);
                let metrics = self.metrics.clone();
                LocalAppend::Pending { pending, queued, metrics }
            }
            Err(e) => {
                tracing::warn!(topic, partition, "refused produce: {e}");
                LocalAppend::Failed(ProduceOutcome {
                    error_code: e.kafka_error_code(),
                    error_message: Some(e.to_string()),
                    ..error_outcome(E::CorruptMessage, "")
                })
            }
        }
    }

    /// Reads from a partition this shard owns.
    pub async fn read_local(&self, item: FetchItem) -> FetchOutcome {
        let owned = self.owned(&item.partition.topic, item.partition.partition);
        let Some(Owned { log, counters }) = owned else {
            return FetchOutcome {
                error_code: E::NotLeaderOrFollower.code(),
                high_watermark: -1,
                log_start_offset: -1,
                ..FetchOutcome::default()
            };
        };
        let last_stable_offset = log.last_stable_offset();
        match log.read(item.offset, item.max_bytes).await {
            Ok(read) => {
                let (records, aborted) = if item.read_committed {
                    let records = below(read.records, last_stable_offset);
                    let end = next_offset(&records).unwrap_or(item.offset);
                    (records, Some(log.aborted_transactions(item.offset, end)))
                } else {
                    (read.records, None)
                };
                counters.record_out(records.len() as u64, record_count(&records));
                FetchOutcome {
                    error_code: 0,
                    high_watermark: read.high_watermark,
                    log_start_offset: read.log_start_offset,
                    records,
                    last_stable_offset: last_stable_offset.min(read.high_watermark),
                    aborted,
                }
            }
            Err(ReadError::OffsetOutOfRange { log_start, high_watermark }) => FetchOutcome {
                error_code: E::OffsetOutOfRange.code(),
                high_watermark,
                log_start_offset: log_start,
                ..FetchOutcome::default()
            },
            Err(ReadError::Storage(e)) => FetchOutcome {
                error_code: e.kafka_error_code(),
                high_watermark: log.high_watermark(),
                log_start_offset: log.log_start_offset(),
                ..FetchOutcome::default()
            },
        }
    }

    /// Resolves when any owned partition among `items` has data past its offset. Never
    /// resolves when none of them is owned here (the caller's deadline ends the wait).
    pub fn wait_local(&self, items: &[(PartitionRef, i64)]) -> LocalFuture<()> {
        let waits: Vec<_> = items
            .iter()
            .filter_map(|(p, offset)| {
                let log = self.log(&p.topic, p.partition)?;
                Some(Box::pin(log.wait_for_data(*offset)))
            })
            .collect();
        if waits.is_empty() {
            return Box::pin(futures::future::pending());
        }
        Box::pin(async move {
            futures::future::select_all(waits).await;
        })
    }

    /// Writes a transaction marker to a partition this shard owns and waits until durable;
    /// a marker in `__consumer_offsets` also applies or drops the transaction's offsets.
    pub async fn write_marker_local(&self, p: &PartitionRef, marker: Marker) -> i16 {
        let Some(log) = self.log(&p.topic, p.partition) else {
            return E::UnknownTopicOrPartition.code();
        };
        let Marker { producer_id, epoch, commit, coordinator_epoch } = marker;
        let pending = match log.append_marker(producer_id, epoch, commit, coordinator_epoch) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, "marker refused: {e}");
                return e.kafka_error_code();
            }
        };
        if let Err(e) = pending.durable().await {
            return e.kafka_error_code();
        }
        if &*p.topic == group::OFFSETS_TOPIC {
            self.groups.complete_txn(p.partition, producer_id, commit);
        }
        0
    }

    /// DescribeProducers of a partition this shard owns.
    pub fn producers_local(&self, p: &PartitionRef) -> Result<Vec<storage::ProducerInfo>, i16> {
        let log = self.log(&p.topic, p.partition).ok_or(E::NotLeaderOrFollower.code())?;
        Ok(log.producers())
    }

    /// Answers a ListOffsets query for a partition this shard owns.
    pub async fn offsets_local(&self, query: OffsetQuery) -> OffsetAnswer {
        let missing =
            OffsetAnswer { error_code: E::NotLeaderOrFollower.code(), offset: -1, timestamp: -1 };
        let Some(log) = self.log(&query.partition.topic, query.partition.partition) else {
            return missing;
        };
        let found = |offset| OffsetAnswer { error_code: 0, offset, timestamp: -1 };
        match query.timestamp {
            -2 => found(log.log_start_offset()),
            -1 if query.read_committed => found(log.last_stable_offset()),
            -1 => found(log.high_watermark()),
            ts if ts < 0 => OffsetAnswer { error_code: E::InvalidRequest.code(), ..missing },
            ts => match log.offset_for_timestamp(ts).await {
                Ok(Some((offset, timestamp))) => OffsetAnswer { error_code: 0, offset, timestamp },
                Ok(None) => found(-1),
                Err(_) => OffsetAnswer { error_code: E::KafkaStorageError.code(), ..missing },
            },
        }
    }

    /// DeleteRecords on a partition this shard owns.
    pub async fn delete_records_local(&self, item: DeleteRecordsItem) -> DeleteRecordsOutcome {
        let failed = |code: i16| DeleteRecordsOutcome { error_code: code, low_watermark: -1 };
        let Some(log) = self.log(&item.partition.topic, item.partition.partition) else {
            return failed(E::NotLeaderOrFollower.code());
        };
        match log.delete_records(item.offset).await {
            Ok(low_watermark) => DeleteRecordsOutcome { error_code: 0, low_watermark },
            Err(e) => failed(e.kafka_error_code()),
        }
    }

    /// Every log this shard owns.
    fn local_logs(&self) -> Vec<PartitionLog> {
        let logs = self.logs.borrow();
        logs.values().flat_map(|t| t.partitions.iter().flatten().map(|o| o.log.clone())).collect()
    }

    /// The shard's background work, forever: every `retention_check_ms`, retention and then
    /// compaction on each log it owns. Runs in its own low-priority task queue; each log's
    /// work yields to the executor often, so produce and fetch stay responsive.
    pub async fn housekeeping(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.config.retention_check_ms);
        loop {
            glommio::timer::sleep(interval).await;
            for log in self.local_logs() {
                let now = storage::now_ms();
                log.expire_producers(now);
                if let Err(e) = log.enforce_retention(now).await {
                    tracing::warn!(dir = %log.dir().display(), "retention failed: {e}");
                }
                match log.compact(now).await {
                    Ok(stats) if stats.segments > 0 => tracing::info!(
                        dir = %log.dir().display(), segments = stats.segments,
                        records = stats.records, "compacted"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(dir = %log.dir().display(), "compaction failed: {e}"),
                }
                glommio::executor().yield_if_needed().await;
            }
        }
    }

    /// Handles a message from another shard. Produce appends happen before this returns, so
    /// one peer's produce messages append in arrival order; everything else runs as a task.
    pub fn on_message(self: &Rc<Self>, envelope: Envelope) {
        let Envelope { span, msg } = envelope;
        let _entered = span.enter();
        match msg {
            ShardMsg::Produce { items, wait, reply } => self.on_produce(items, wait, reply),
            other => {
                let shard = self.clone();
                let task = async move { shard.on_request(other).await };
                glommio::spawn_local(task.instrument(span.clone())).detach();
            }
        }
    }

    fn on_produce(
        &self,
        items: Vec<(PartitionRef, bytes::Bytes)>,
        wait: bool,
        reply: oneshot::Sender<Vec<ProduceOutcome>>,
    ) {
        let appends: Vec<LocalAppend> = items
            .iter()
            .map(|(p, records)| self.append_local(&p.topic, p.partition, records))
            .collect();
        if wait {
            let task = async move {
                let outcomes = join_all(appends.into_iter().map(|a| a.outcome())).await;
                let _ = reply.send(outcomes);
            };
            glommio::spawn_local(task.in_current_span()).detach();
        }
    }

    async fn on_request(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Produce { items, wait, reply } => self.on_produce(items, wait, reply),
            ShardMsg::Fetch { items, reply } => {
                let outcomes = join_all(items.into_iter().map(|i| self.read_local(i))).await;
                let _ = reply.send(outcomes);
            }
            ShardMsg::WaitForData { items, deadline, mut reply } => {
                let wait = self.wait_local(&items);
                let timeout = glommio::timer::sleep(
                    deadline.saturating_duration_since(std::time::Instant::now()),
                );
                let cancelled = reply.cancellation();
                futures::pin_mut!(timeout, cancelled);
                let stop = futures::future::select(timeout, cancelled);
                futures::future::select(wait, stop).await;
                let _ = reply.send(());
            }
            ShardMsg::ListOffsets { items, reply } => {
                let answers = join_all(items.into_iter().map(|q| self.offsets_local(q))).await;
                let _ = reply.send(answers);
            }
            ShardMsg::DeleteRecords { items, reply } => {
                let outcomes = join_all(items.into_iter().map(|i| self.delete_records_local(i)));
                let _ = reply.send(outcomes.await);
            }
            ShardMsg::Control { op, reply } => {
                let _ = reply.send(self.control(op).await);
            }
            ShardMsg::AllocateProducerId { reply } => {
                let _ = reply.send(self.allocate_producer_id().await);
            }
            ShardMsg::Group { request, reply } => {
                let _ = reply.send(self.groups.handle(*request).await);
            }
            ShardMsg::Txn { request, reply } => {
                let _ = reply.send(self.txns.handle(&self, *request).await);
            }
            ShardMsg::WriteMarkers { items, marker, reply } => {
                let writes = items.iter().map(|p| self.write_marker_local(p, marker));
                let _ = reply.send(join_all(writes).await);
            }
            ShardMsg::DescribeProducers { items, reply } => {
                let _ = reply.send(items.iter().map(|p| self.producers_local(p)).collect());
            }
            ShardMsg::ApplyMetadata { meta, reply } => {
                self.apply_metadata(meta).await;
                let _ = reply.send(());
            }
            ShardMsg::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
        }
    }
}

/// The whole batches of `records` that start below `offset` (a prefix).
fn below(records: bytes::Bytes, offset: i64) -> bytes::Bytes {
    let mut end = 0;
    for item in crate::record_batch::Batches::new(&records) {
        match item {
            Ok((header, range)) if header.base_offset < offset => end = range.end,
            _ => break,
        }
    }
    records.slice(..end)
}

/// The offset after the last whole batch of `records`.
fn next_offset(records: &[u8]) -> Option<i64> {
    crate::record_batch::Batches::new(records)
        .map_while(Result::ok)
        .map(|(h, _)| h.last_offset() + 1)
        .last()
}

/// Records in whole record batches (their headers' record counts).
fn record_count(records: &[u8]) -> u64 {
    crate::record_batch::Batches::new(records)
        .filter_map(Result::ok)
        .map(|(header, _)| header.record_count.max(0) as u64)
        .sum()
}

impl Shard {
    /// What this shard reports to a metrics scrape.
    pub fn metrics_snapshot(&self) -> ShardSnapshot {
        let meta = self.meta();
        let partitions: Vec<PartitionSnapshot> = {
            let logs = self.logs.borrow();
            let owned = logs.iter().flat_map(|(topic, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, o)| Some((topic, i, o.as_ref()?)))
            });
            owned
                .map(|(topic, index, o)| PartitionSnapshot {
                    topic: topic.to_string(),
                    partition: index as i32,
                    counts: o.counters.snapshot(),
                    log_start_offset: o.log.log_start_offset(),
                    log_end_offset: o.log.log_end_offset(),
                    high_watermark: o.log.high_watermark(),
                    segments: o.log.segment_count() as u64,
                    // Until replication exists the ISR is the leader alone (see Metadata),
                    // so a partition with more replicas than that is under-replicated.
                    under_replicated: meta
                        .partition(topic, index as i32)
                        .is_some_and(|p| p.replicas.len() > 1),
                })
                .collect()
        };
        let apis = super::handlers::APIS
            .iter()
            .enumerate()
            .map(|(slot, api)| (format!("{:?}", api.key), self.metrics.api_snapshot(slot)))
            .filter(|(_, h)| h.count > 0)
            .collect();
        ShardSnapshot {
            shard: self.id,
            connections: self.connections.get() as u64,
            apis,
            append_latency: self.metrics.append_latency.snapshot(),
            partitions,
            committed: self.groups.committed_offsets(),
        }
    }
}
