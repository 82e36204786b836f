//! One shard: the partition logs it owns, its copy of cluster metadata, and its mesh links.
//!
//! A `Shard` lives on one executor (`Rc`, never shared across threads). Partition work is
//! routed to the owning shard: done in place when that is this shard, sent over the mesh
//! otherwise ([`Shard::scatter`]). Shard 0 also executes metadata changes ([`Shard::control`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use futures::channel::oneshot;
use futures::future::join_all;
use glommio::channels::channel_mesh::Senders;
use glommio::sync::Semaphore;
use tracing::Instrument;

use super::fetcher::{Fetchers, Followed};
use super::mesh::*;
use super::replica::{self, Change, NotReplicated, Replica, Role};
use super::txn::TxnCoordinator;
use crate::config::{BrokerConfig, FlushPolicy};
use crate::controller::placement::Command;
use crate::controller::producer_ids::ProducerIds;
use crate::controller::quorum::QuorumHandle;
use crate::controller::{self, ClusterMetadata, ControlError, TopicMeta};
use crate::group::{self, Coordinator};
use crate::metrics::{PartitionCounters, PartitionSnapshot, ShardMetrics, ShardSnapshot};
use crate::protocol::ResponseError as E;
use crate::runtime::contain::{contained, contained_sync, spawn_contained};
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
    replica: Rc<Replica>,
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
    /// Broker configuration, as started (flags, environment, file).
    pub config: Arc<BrokerConfig>,
    /// The effective configuration: `config` with the dynamic broker configs of the current
    /// metadata applied (see `controller::broker_config`).
    settings: RefCell<Arc<BrokerConfig>>,
    meta: RefCell<Arc<ClusterMetadata>>,
    logs: RefCell<HashMap<Arc<str>, TopicLogs>>,
    mesh: Senders<Envelope>,
    /// Serialises metadata changes on shard 0.
    control_lock: Semaphore,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    /// This shard's memory budget for requests and responses (`queued_max_request_bytes`
    /// split evenly per shard).
    pub budget: Rc<super::budget::Budget>,
    /// The consumer groups this shard coordinates.
    pub groups: Rc<Coordinator>,
    /// The transactional ids this shard coordinates.
    pub txns: Rc<TxnCoordinator>,
    /// The share groups, share-partitions and share sessions of this shard (KIP-932).
    pub shares: super::share::Shares,
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
    /// The follower fetch sessions of this shard.
    pub fetchers: Fetchers,
    /// The byte budget this shard's tail caches share (`tail_cache_max_bytes` / shards).
    pub cache_pool: Rc<storage::CachePool>,
    /// The disk space this shard's kept segment files share (`segment_recycle_max_bytes` /
    /// shards).
    pub recycle_pool: Rc<storage::RecyclePool>,
    /// This shard's share of `leader_replication_throttled_rate` (reassignment traffic).
    leader_throttle: Option<replica::Throttle>,
    /// This shard, for the tasks it starts from `&self` methods.
    me: RefCell<Weak<Shard>>,
    /// The authorizer and client quotas of this shard.
    pub access: super::access::ShardAccess,
    /// Free space of the data directory's filesystem, refreshed by `watch_free_space`.
    pub space: storage::space::FreeSpace,
    /// A partition log failed to open (a full disk): `watch_free_space` tries again.
    open_failed: Cell<bool>,
    /// Held while logs are opened or closed to match the metadata (one at a time, in order).
    applying: Semaphore,
    /// The broker-wide connection limits, which dynamic broker configs change.
    pub conn_limits: RefCell<Option<Arc<super::conn_limits::ConnLimits>>>,
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
/// How often each shard reads the data directory's free space.
const FREE_SPACE_CHECK: std::time::Duration = std::time::Duration::from_millis(500);
/// Partition logs one shard opens (or closes) at once (10,000 partitions: see perf/).
const OPEN_CONCURRENCY: usize = 32;
/// Logs that failed to open are tried again every this many free-space checks.
const REOPEN_EVERY_CHECKS: u64 = 6;
/// Disk taken by a new partition's directory, besides its first preallocation extent.
const PARTITION_DIR_BYTES: u64 = 4096;
/// What a produce refused for lack of disk space says (as Redpanda's).
const DISK_FULL_MESSAGE: &str =
    "no disk space: free space is below the broker's headroom (storage-min-free-bytes)";

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
    let internal = topic.name == group::OFFSETS_TOPIC
        || topic.name == crate::txn::TXN_TOPIC
        || topic.name == crate::share::STATE_TOPIC;
    let prealloc_bytes = if internal {
        broker.segment_prealloc_bytes.min(OFFSETS_PREALLOC_BYTES)
    } else {
        broker.segment_prealloc_bytes
    };
    LogConfig {
        segment_bytes: get("segment.bytes").unwrap_or(broker.segment_bytes),
        segment_ms: get("segment.ms").or(broker.segment_ms),
        prealloc_bytes,
        prealloc_min_bytes: broker.segment_prealloc_min_bytes,
        prezero: broker.segment_prezero,
        recycle: broker.segment_recycle,
        write_dsync: broker.segment_write_dsync,
        max_batch_bytes: get("max.message.bytes").map_or(broker.max_message_bytes, |v| v as usize),
        timestamp_type: if append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        flush: storage::FlushPolicy {
            every_append: every,
            messages,
            interval_ms,
            bytes: (broker.flush_bytes > 0).then_some(broker.flush_bytes),
        },
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

/// The consumer groups' own timeouts (group configs `consumer.session.timeout.ms`,
/// `consumer.heartbeat.interval.ms`): (session timeout, heartbeat interval) by group id.
fn consumer_group_timeouts(
    config: &BrokerConfig,
    meta: &ClusterMetadata,
) -> HashMap<String, (i32, i32)> {
    use controller::group_config::{
        self, CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS,
    };
    meta.group_configs
        .iter()
        .filter(|(_, layer)| {
            layer.contains_key(CONSUMER_SESSION_TIMEOUT_MS)
                || layer.contains_key(CONSUMER_HEARTBEAT_INTERVAL_MS)
        })
        .map(|(group, layer)| {
            let s = group_config::effective(config, Some(layer));
            (
                group.clone(),
                (ms(s.consumer_session_timeout_ms), ms(s.consumer_heartbeat_interval_ms)),
            )
        })
        .collect()
}

/// A millisecond setting as the protocol's i32 carries it (saturating).
fn ms(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The `group.consumer.*` settings as consumer groups take them.
fn consumer_settings(config: &BrokerConfig) -> crate::group::consumer::Settings {
    crate::group::consumer::Settings {
        session_timeout_ms: ms(config.group_consumer_session_timeout_ms),
        heartbeat_interval_ms: ms(config.group_consumer_heartbeat_interval_ms),
        assignors: config
            .group_consumer_assignors
            .split(',')
            .map(|a| a.trim().to_owned())
            .collect(),
        max_size: usize::try_from(config.group_consumer_max_size).unwrap_or(usize::MAX),
        migration: crate::group::consumer::Migration::parse(
            &config.group_consumer_migration_policy,
        ),
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
        let consumer_groups = consumer_settings(&config);
        let session_min = ms(config.group_min_session_timeout_ms);
        let session_max = ms(config.group_max_session_timeout_ms);
        let access = super::access::ShardAccess::new(&config);
        let headroom = storage::space::Headroom {
            min_free_bytes: config.storage_min_free_bytes,
            min_free_percent: config.storage_min_free_percent,
        };
        let budget = config.memory_budget_bytes(None) / count.max(1);
        let share = |rate: Option<u64>, follower: bool| {
            rate.map(|r| replica::Throttle::new(r / count as u64, follower))
        };
        let leader_throttle = share(config.leader_replication_throttled_rate, false);
        let follower_throttle = share(config.follower_replication_throttled_rate, true);
        let cache_pool = storage::CachePool::new(config.tail_cache_max_bytes / count.max(1));
        let recycle_pool =
            storage::RecyclePool::new(config.segment_recycle_max_bytes / count.max(1) as u64);
        Shard {
            id,
            count,
            settings: RefCell::new(config.clone()),
            config,
            meta: RefCell::new(Arc::new(ClusterMetadata::default())),
            logs: RefCell::new(HashMap::new()),
            mesh,
            control_lock: Semaphore::new(1),
            connections: Cell::new(0),
            budget: Rc::new(super::budget::Budget::new(budget)),
            groups: {
                let groups = Coordinator::new(initial_delay_ms);
                groups.set_consumer_settings(consumer_groups);
                groups.set_session_timeout_range(session_min, session_max);
                groups
            },
            txns: TxnCoordinator::new(),
            shares: super::share::Shares::new(),
            producer_ids: RefCell::new(None),
            produce_count: Cell::new(0),
            ready: RefCell::new(Some(ready)),
            metrics: Rc::new(ShardMetrics::new(super::handlers::APIS.len())),
            draining: Semaphore::new(0),
            quorum,
            version_waiters: RefCell::new(Vec::new()),
            published_version: Cell::new(0),
            fetchers: Fetchers::new(follower_throttle),
            cache_pool,
            recycle_pool,
            leader_throttle,
            me: RefCell::new(Weak::new()),
            access,
            space: storage::space::FreeSpace::new(headroom),
            open_failed: Cell::new(false),
            applying: Semaphore::new(1),
            conn_limits: RefCell::new(None),
        }
    }

    /// Lets the shard start tasks that hold it; call once, right after `Rc::new`.
    pub fn init(self: &Rc<Self>) {
        *self.me.borrow_mut() = Rc::downgrade(self);
        self.groups.inject_panic_on_group(self.config.fault_panic_on_group.clone());
    }

    /// The current metadata snapshot.
    pub fn meta(&self) -> Arc<ClusterMetadata> {
        self.meta.borrow().clone()
    }

    /// The effective broker configuration: static settings with the dynamic broker configs
    /// of the current metadata applied.
    pub fn settings(&self) -> Arc<BrokerConfig> {
        self.settings.borrow().clone()
    }

    /// Recomputes the effective configuration when `meta` changes the dynamic broker configs
    /// (or on the first metadata); true when it did.
    fn apply_broker_configs(&self, old: &ClusterMetadata, meta: &ClusterMetadata) -> bool {
        if old.broker_configs == meta.broker_configs {
            return false;
        }
        let settings = controller::broker_config::effective(&self.config, &meta.broker_configs);
        if self.id == 0 {
            // Values of configs Strata does not know may be secrets (Kafka reports them as
            // sensitive): only their names are logged.
            let shown: BTreeMap<&str, BTreeMap<&str, &str>> = meta
                .broker_configs
                .iter()
                .map(|(resource, layer)| {
                    let values = layer.iter().map(|(name, value)| {
                        let custom = controller::broker_config::is_custom(name);
                        (name.as_str(), if custom { "[hidden]" } else { value.as_str() })
                    });
                    (resource.as_str(), values.collect())
                })
                .collect();
            tracing::info!(configs = ?shown, "dynamic broker configs applied");
        }
        if let Some(limits) = self.conn_limits.borrow().as_ref() {
            limits.set(
                settings.max_connections,
                settings.max_connections_per_ip,
                &settings.max_connections_per_ip_overrides,
            );
        }
        *self.settings.borrow_mut() = Arc::new(settings);
        true
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

    /// Asks every other shard over the mesh (`ask` wraps the reply channel in the message)
    /// and returns their answers in shard order; a shard that cannot answer (shutting down)
    /// is left out.
    pub async fn ask_others<T>(&self, ask: impl Fn(oneshot::Sender<T>) -> ShardMsg) -> Vec<T> {
        let mut answers = Vec::new();
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let (reply, answer) = oneshot::channel();
            if self.send(peer, ask(reply)).await {
                answers.push(answer);
            }
        }
        futures::future::join_all(answers).await.into_iter().flatten().collect()
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
        let ids = self.producer_ids()?;
        ids.allocate().await.map_err(|e| format!("reserving producer ids: {e}"))
    }

    /// Shard 0's producer id allocator, loaded on first use.
    fn producer_ids(&self) -> Result<Rc<ProducerIds>, String> {
        let existing = self.producer_ids.borrow().clone();
        match existing {
            Some(ids) => Ok(ids),
            None => {
                let ids = ProducerIds::load(&self.config.data_dir).map_err(|e| e.to_string())?;
                let ids = Rc::new(ids);
                *self.producer_ids.borrow_mut() = Some(ids.clone());
                Ok(ids)
            }
        }
    }

    /// Shard 0 at start: creates the producer id mark's file while there is space, so that
    /// reserving ids later needs none (see `controller::producer_ids`).
    pub async fn prepare_producer_ids(&self) {
        let prepared = match self.producer_ids() {
            Ok(ids) => ids.prepare().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = prepared {
            tracing::warn!(
                "producer id mark not prepared (retried at the first InitProducerId): {e}"
            );
        }
    }

    /// Forever: every [`FREE_SPACE_CHECK`], reads the free space of the data directory's
    /// filesystem; produce and new partitions are refused while it is below the headroom
    /// (`storage_min_free_bytes` / `_percent`). Shard 0 logs each change. Every few checks,
    /// while above the headroom, opens the logs that failed to open (a full disk).
    pub async fn watch_free_space(self: Rc<Self>) {
        let mut rounds: u64 = 0;
        loop {
            rounds += 1;
            let due = rounds.is_multiple_of(REOPEN_EVERY_CHECKS) && !self.space.low();
            if due && self.open_failed.take() {
                self.reopen_failed_logs().await;
            }
            let was_low = self.space.low();
            let refreshed = self.space.refresh(&self.config.data_dir);
            if let Ok(low) = refreshed {
                self.recycle_pool.set_space_low(low);
                if low && !was_low {
                    self.release_kept_files().await;
                }
            }
            match refreshed {
                Ok(low) if low != was_low && self.id == 0 => {
                    let usage = self.space.last();
                    let free = usage.map_or(0, |u| u.available_bytes);
                    let keep = usage.map_or(0, |u| self.space.headroom().bytes(u.total_bytes));
                    if low {
                        tracing::warn!(
                            free_bytes = free,
                            min_free_bytes = keep,
                            "disk space below the headroom: refusing produce and new partitions"
                        );
                    } else {
                        tracing::info!(
                            free_bytes = free,
                            min_free_bytes = keep,
                            "disk space above the headroom again: accepting produce"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    crate::log_limited!(WARN, "cannot read the data directory's free space: {e}")
                }
            }
            glommio::timer::sleep(FREE_SPACE_CHECK).await;
        }
    }

    /// Refuses new partitions that would take the data directory's filesystem below the
    /// headroom: each may reserve a directory and a first preallocation extent.
    fn check_space_for(&self, op: &ControlOp) -> Result<(), ControlError> {
        let added = match op {
            ControlOp::CreateTopic { partitions, .. } => i64::from(*partitions),
            ControlOp::CreatePartitions { name, total, .. } => {
                let current = self.meta().topics.get(name).map_or(0, |t| t.partitions.len());
                i64::from(*total) - current as i64
            }
            _ => return Ok(()),
        };
        if added <= 0 {
            return Ok(());
        }
        // A fresh reading: this is rare, and the answer should not be up to a second old.
        let _ = self.space.refresh(&self.config.data_dir);
        let per_partition = PARTITION_DIR_BYTES + self.config.segment_prealloc_min_bytes;
        let needed = added as u64 * per_partition;
        if self.space.allows(needed) {
            return Ok(());
        }
        let usage = self.space.last();
        let free = usage.map_or(0, |u| u.available_bytes);
        let keep = usage.map_or(0, |u| self.space.headroom().bytes(u.total_bytes));
        crate::refused!(
            WARN,
            "disk_full",
            partitions = added,
            free_bytes = free,
            "refused new partitions: disk space below the headroom"
        );
        let message = format!(
            "not enough disk space for {added} new partition(s): {free} bytes free, about \
             {needed} needed, and {keep} bytes are kept free (storage-min-free-bytes, \
             storage-min-free-percent)"
        );
        Err(ControlError { code: E::PolicyViolation.code(), message })
    }

    // ---- metadata -------------------------------------------------------------------------

    /// Opens, reconfigures and deletes logs so this shard matches `meta`, then adopts it.
    pub async fn apply_metadata(&self, meta: Arc<ClusterMetadata>) {
        let _applying = self.applying.acquire_permit(1).await;
        let old = self.meta();
        // Before opening logs: new logs take the new broker defaults.
        let defaults_changed = self.apply_broker_configs(&old, &meta);
        self.drop_stale_topics(&meta).await;
        self.drop_moved_replicas(&meta).await;
        for topic in meta.topics.values() {
            self.open_topic(topic, meta.local_node.is_none()).await;
            let changed = old.topics.get(&topic.name).map(|t| &t.configs) != Some(&topic.configs);
            if changed || defaults_changed {
                self.reconfigure(topic);
            }
        }
        *self.meta.borrow_mut() = meta.clone();
        self.forget_deleted_topics(&old, &meta);
        if old.group_configs != meta.group_configs || defaults_changed {
            self.groups.set_group_timeouts(consumer_group_timeouts(&self.settings(), &meta));
        }
        self.access.refresh(&meta);
        for topic in meta.topics.values() {
            self.sync_roles(topic, meta.local_node.is_some());
        }
        if let Some(ready) = self.ready.borrow_mut().take() {
            let _ = ready.send(());
        }
    }

    /// The share state of the topics `old` has and `new` does not (deleted: a topic created
    /// again under its name has a new id), as Kafka's group and share coordinators clean it
    /// when a topic is deleted: this shard drops its share-partitions of them at once, then,
    /// in the background, deletes their state from `__share_group_state` and their entries
    /// from the records of the share groups it coordinates ([`super::share::Shares`]).
    fn forget_deleted_topics(&self, old: &ClusterMetadata, new: &ClusterMetadata) {
        let kept: std::collections::HashSet<uuid::Uuid> =
            new.topics.values().map(|t| t.id).collect();
        let deleted: std::collections::BTreeSet<uuid::Uuid> =
            old.topics.values().map(|t| t.id).filter(|id| !kept.contains(id)).collect();
        if deleted.is_empty() {
            return;
        }
        self.shares.drop_topics(&deleted);
        let Some(me) = self.me.borrow().upgrade() else { return };
        let task = async move { me.shares.forget_topics(&me, &deleted).await };
        spawn_contained("the share state of deleted topics", task.in_current_span()).detach();
    }

    /// Opens the logs of the current metadata that failed to open before (a full disk).
    async fn reopen_failed_logs(&self) {
        let _applying = self.applying.acquire_permit(1).await;
        let meta = self.meta();
        for topic in meta.topics.values() {
            self.open_topic(topic, meta.local_node.is_none()).await;
        }
        for topic in meta.topics.values() {
            self.sync_roles(topic, meta.local_node.is_some());
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

    /// Cluster mode: closes and deletes this shard's logs of partitions whose replicas no
    /// longer include this broker (reassigned away, KIP-455), as Kafka's StopReplica does.
    async fn drop_moved_replicas(&self, meta: &ClusterMetadata) {
        let Some(node) = meta.local_node else { return };
        let moved: Vec<(PartitionRef, Owned)> = {
            let mut logs = self.logs.borrow_mut();
            let mut moved = Vec::new();
            for (name, topic) in logs.iter_mut() {
                for (index, slot) in topic.partitions.iter_mut().enumerate() {
                    let gone = slot.is_some()
                        && meta
                            .partition(name, index as i32)
                            .is_some_and(|p| !p.replicas.contains(&node));
                    if let Some(owned) = slot.take_if(|_| gone) {
                        let p = PartitionRef { topic: name.clone(), partition: index as i32 };
                        moved.push((p, owned));
                    }
                }
            }
            moved
        };
        for (p, owned) in moved {
            self.fetchers.unfollow(&p);
            self.coordinate(&p.topic, p.partition, &owned.log, false);
            owned.replica.stop();
            match owned.log.delete().await {
                Ok(()) => tracing::info!(topic = %p.topic, partition = p.partition,
                    "replica moved away: deleted its log"),
                Err(e) => tracing::error!(topic = %p.topic, partition = p.partition,
                    "deleting a moved replica's log failed: {e}"),
            }
        }
    }

    /// Opens the logs of `topic` this shard holds. `coordinate`: a single broker, which
    /// coordinates the groups and transactions of every internal partition it opens (in a
    /// cluster, only of those it leads: see `sync_roles`).
    async fn open_topic(&self, topic: &TopicMeta, coordinate: bool) {
        use futures::StreamExt;
        let config = log_config(&self.settings(), topic);
        let wanted: Vec<usize> = (topic.partitions.iter().enumerate())
            .filter(|(index, p)| {
                p.shard == self.id && self.log(&topic.name, *index as i32).is_none()
            })
            .map(|(index, _)| index)
            .collect();
        // Several at once: opening is mostly waiting for the filesystem.
        let opens = futures::stream::iter(wanted)
            .map(|index| {
                let dir = self.partition_dir(&topic.name, index as i32);
                let config = config.clone();
                async move { (index, PartitionLog::open(dir, config).await) }
            })
            .buffer_unordered(OPEN_CONCURRENCY);
        futures::pin_mut!(opens);
        while let Some((index, opened)) = opens.next().await {
            let number = index as i32;
            match opened {
                Ok(log) => {
                    if coordinate {
                        self.coordinate(&topic.name, number, &log, true);
                    }
                    self.insert_log(topic, index, log)
                }
                Err(e) => {
                    self.open_failed.set(true);
                    crate::log_limited!(ERROR, topic = %topic.name, partition = number,
                        "cannot open partition log (retried every few seconds): {e}");
                }
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
        let name: Arc<str> = Arc::from(topic.name.as_str());
        let max_lag = std::time::Duration::from_millis(self.config.replica_lag_time_max_ms);
        let replica = Rc::new(Replica::new(self.config.node_id, max_lag, name, index as i32));
        log.join_cache_pool(&self.cache_pool);
        log.join_recycle_pool(&self.recycle_pool);
        entry.partitions[index] = Some(Owned { log, counters, replica });
    }

    /// Starts or stops coordinating the groups or transactions of an internal partition.
    fn coordinate(&self, topic: &str, partition: i32, log: &PartitionLog, lead: bool) {
        match (topic, lead) {
            (group::OFFSETS_TOPIC, true) => self.groups.add_partition(partition, log.clone()),
            (group::OFFSETS_TOPIC, false) => self.groups.remove_partition(partition),
            (crate::txn::TXN_TOPIC, true) => self.txns.add_partition(partition, log.clone()),
            (crate::txn::TXN_TOPIC, false) => self.txns.remove_partition(partition),
            _ => {}
        }
    }

    /// Cluster mode: brings every replica of `topic` on this shard in line with its role in
    /// the metadata: leaders serve and track their followers, followers fetch.
    fn sync_roles(&self, topic: &TopicMeta, clustered: bool) {
        let min_insync = replica::min_insync_replicas(topic);
        for (index, meta) in topic.partitions.iter().enumerate() {
            let number = index as i32;
            if meta.shard != self.id {
                continue;
            }
            let Some(owned) = self.owned(&topic.name, number) else { continue };
            let change = owned.replica.update(meta, min_insync, clustered, &owned.log);
            let partition =
                PartitionRef { topic: Arc::from(topic.name.as_str()), partition: number };
            match change {
                Change::None => {}
                Change::Leader => {
                    tracing::info!(topic = %topic.name, partition = number,
                        epoch = meta.leader_epoch, "leading");
                    self.fetchers.unfollow(&partition);
                    self.coordinate(&topic.name, number, &owned.log, true);
                    if owned.replica.role() == Role::Leader {
                        spawn_high_watermark_task(&owned);
                    }
                }
                Change::Follower { leader } => {
                    tracing::info!(topic = %topic.name, partition = number, ?leader,
                        epoch = meta.leader_epoch, "following");
                    self.coordinate(&topic.name, number, &owned.log, false);
                    if let Some(me) = self.me.borrow().upgrade() {
                        let replica = owned.replica.clone();
                        let followed = Followed { log: owned.log.clone(), replica };
                        self.fetchers.follow(&me, partition, leader, followed);
                    }
                }
            }
            // An ISR shrink in this metadata may let the high watermark move.
            owned.replica.advance_high_watermark(&owned.log);
        }
    }

    fn reconfigure(&self, topic: &TopicMeta) {
        let config = log_config(&self.settings(), topic);
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
        self.check_space_for(&op)?;
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
            // A single broker's assignments name only itself (checked by the handlers).
            ControlOp::CreatePartitions { name, total, assignment, validate_only } => {
                let next = meta.add_partitions(&name, total, shards)?;
                let current = meta.topics.get(&name).map_or(0, |t| t.partitions.len());
                let adding = usize::try_from(total).unwrap_or(0).saturating_sub(current);
                controller::placement::check_assignment_count(adding, &assignment)?;
                (next, validate_only)
            }
            ControlOp::AlterConfigs { name, changes, replace, validate_only } => {
                let next = meta.alter_topic_configs(&name, &changes, replace, &self.settings())?;
                (next, validate_only)
            }
            // SCRAM users apply alike to a single broker's metadata.
            ControlOp::Replicated(command @ Command::AlterScramCredentials { .. }) => {
                (meta.apply(&command)?, false)
            }
            ControlOp::Replicated(_) => return Err(unavailable()),
            ControlOp::Metadata(command) => (meta.apply(&command)?, false),
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
                assignment,
                validate_only,
                replication_factor,
            } => {
                let replication_factor = match assignment.first() {
                    Some(replicas) => replicas.len() as i32,
                    None if replication_factor < 0 => 1,
                    None => replication_factor,
                };
                meta.check_new_topic(&name, partitions, replication_factor, &configs, &assignment)?;
                let id = uuid::Uuid::new_v4();
                let command = Command::CreateTopic {
                    name,
                    id,
                    partitions,
                    replication_factor,
                    configs,
                    assignment,
                };
                (command, validate_only)
            }
            ControlOp::DeleteTopic { name } => (Command::DeleteTopic { name }, false),
            ControlOp::CreatePartitions { name, total, assignment, validate_only } => {
                (Command::CreatePartitions { name, total, assignment }, validate_only)
            }
            ControlOp::AlterConfigs { name, changes, replace, validate_only } => {
                let next = meta.alter_topic_configs(&name, &changes, replace, &self.settings())?;
                let configs = next.topics.get(&name).map(|t| t.configs.clone()).unwrap_or_default();
                (Command::SetTopicConfigs { name, configs }, validate_only)
            }
            ControlOp::Replicated(command) | ControlOp::Metadata(command) => (command, false),
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
        let mut local = meta.localize(self.config.node_id, self.count);
        local.local_node = Some(self.config.node_id);
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

    /// Flushes and closes every log (clean shutdown), several at once.
    pub async fn close_logs(&self) {
        use futures::StreamExt;
        let closes = futures::stream::iter(self.local_logs())
            .map(|log| async move { log.close().await })
            .buffer_unordered(OPEN_CONCURRENCY);
        futures::pin_mut!(closes);
        while let Some(closed) = closes.next().await {
            if let Err(e) = closed {
                crate::log_limited!(ERROR, shard = self.id, "closing a partition log failed: {e}");
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
        /// acks=all on a replicated partition: also wait for the high watermark.
        replicated: Option<AwaitIsr>,
    },
    /// Refused.
    Failed(ProduceOutcome),
}

/// An acks=all append waiting for the in-sync replicas.
pub struct AwaitIsr {
    log: PartitionLog,
    replica: Rc<Replica>,
    timeout: std::time::Duration,
    /// The replica's generation when the records were appended: a role or epoch change
    /// after that, even one before this starts waiting, ends the wait.
    generation: u64,
}

impl AwaitIsr {
    /// Waits until the high watermark passes `last_offset`: the error code to answer, or 0.
    async fn wait(self, last_offset: i64) -> (i16, &'static str) {
        let AwaitIsr { log, replica, timeout, generation } = self;
        let role_changed = replica.role_changed();
        // The leadership may have moved while the append waited for its local write (the
        // waiter above only hears of later changes): before, such a produce waited out its
        // whole timeout (30 s for librdkafka) and then answered NOT_LEADER_OR_FOLLOWER.
        let moved = || replica.generation() != generation;
        if !moved() {
            let replicated = log.wait_for_high_watermark(last_offset);
            let timer = glommio::timer::sleep(timeout);
            futures::pin_mut!(replicated, timer);
            let stop = futures::future::select(role_changed, timer);
            futures::future::select(replicated, stop).await;
        }
        if log.high_watermark() > last_offset {
            return match replica.check_after_append() {
                Ok(()) => (0, ""),
                Err(NotReplicated::NotLeader) => {
                    (E::NotLeaderOrFollower.code(), "leadership moved during the append")
                }
                Err(NotReplicated::NotEnoughReplicas) => (
                    E::NotEnoughReplicasAfterAppend.code(),
                    "appended, but fewer in-sync replicas than min.insync.replicas",
                ),
            };
        }
        if replica.role() != Role::Leader || moved() {
            return (E::NotLeaderOrFollower.code(), "leadership moved before replication");
        }
        let (hw, state) = (log.high_watermark(), replica.describe());
        crate::log_limited!(WARN, dir = %log.dir().display(), last_offset, hw,
            "acks=all produce timed out waiting for the in-sync replicas: {state}");
        (E::RequestTimedOut.code(), "not replicated to the in-sync replicas in time")
    }
}

impl LocalAppend {
    /// Waits for the acknowledgement.
    pub async fn outcome(self) -> ProduceOutcome {
        match self {
            LocalAppend::Failed(outcome) => outcome,
            LocalAppend::Pending { pending, queued, metrics, replicated } => {
                match pending.durable().await {
                    Ok(info) => {
                        if let Some(isr) = replicated {
                            let (code, why) = isr.wait(info.last_offset).await;
                            if code != 0 {
                                return ProduceOutcome {
                                    error_code: code,
                                    error_message: Some(why.into()),
                                    ..error_outcome(E::RequestTimedOut, "")
                                };
                            }
                        }
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
                }
            }
        }
    }
}

impl Shard {
    /// Appends to a partition this shard owns, synchronously (call order = log order).
    /// `records` are written in place (see [`PartitionLog::append_owned`]).
    pub fn append_local(
        &self,
        topic: &str,
        partition: i32,
        records: crate::storage::OwnedRecords,
        acks: Acks,
    ) -> LocalAppend {
        let Some(Owned { log, counters, replica }) = self.owned(topic, partition) else {
            return LocalAppend::Failed(error_outcome(
                E::NotLeaderOrFollower,
                "partition is not on this shard",
            ));
        };
        let role = replica.role();
        if matches!(role, Role::Follower { .. }) {
            return LocalAppend::Failed(error_outcome(
                E::NotLeaderOrFollower,
                "this broker follows the partition",
            ));
        }
        if self.space.low() {
            crate::refused!(
                WARN,
                "disk_full",
                topic,
                partition,
                "refused produce: {DISK_FULL_MESSAGE}"
            );
            return LocalAppend::Failed(error_outcome(E::KafkaStorageError, DISK_FULL_MESSAGE));
        }
        let replicated = if acks.acks == -1 && role == Role::Leader {
            if let Err(NotReplicated::NotEnoughReplicas) = replica.check_acks_all() {
                return LocalAppend::Failed(error_outcome(
                    E::NotEnoughReplicas,
                    "fewer in-sync replicas than min.insync.replicas",
                ));
            }
            let timeout = std::time::Duration::from_millis(acks.timeout_ms.max(0) as u64);
            let generation = replica.generation();
            Some(AwaitIsr { log: log.clone(), replica, timeout, generation })
        } else {
            None
        };
        let queued = Instant::now();
        let bytes = records.bytes.len() as u64;
        match log.append_owned(records) {
            Ok(pending) => {
                let messages = pending.last_offset() - pending.base_offset() + 1;
                counters.record_in(bytes, messages.max(0) as u64);
                let metrics = self.metrics.clone();
                LocalAppend::Pending { pending, queued, metrics, replicated }
            }
            Err(e) => {
                crate::refused!(WARN, "append_refused", topic, partition, "refused produce: {e}");
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
        let failed = |error: E| FetchOutcome {
            error_code: error.code(),
            high_watermark: -1,
            log_start_offset: -1,
            ..FetchOutcome::default()
        };
        let Some(Owned { log, counters, replica }) = owned else {
            return failed(E::NotLeaderOrFollower);
        };
        let follower = matches!(replica.role(), Role::Follower { .. });
        if follower && (item.replica.is_some() || !item.follower_read) {
            return failed(E::NotLeaderOrFollower);
        }
        if let Err(error) = check_leader_epoch(&replica, item.current_leader_epoch) {
            return failed(error);
        }
        if item.replica.is_none() {
            if let Some(answer) = self.before_consumer_read(&item, &log, &replica, follower) {
                return answer;
            }
        }
        let last_stable_offset = log.last_stable_offset();
        if item.offsets_only {
            let high_watermark = log.high_watermark();
            return FetchOutcome {
                high_watermark,
                log_start_offset: log.log_start_offset(),
                last_stable_offset: last_stable_offset.min(high_watermark),
                aborted: item.read_committed.then(Vec::new),
                ..FetchOutcome::default()
            };
        }
        let read = match item.replica {
            Some(fetch) => {
                if let Some(diverging) =
                    diverging_epoch(&log, fetch.last_fetched_epoch, item.offset)
                {
                    return FetchOutcome {
                        high_watermark: log.high_watermark(),
                        log_start_offset: log.log_start_offset(),
                        last_stable_offset,
                        diverging_epoch: Some(diverging),
                        ..FetchOutcome::default()
                    };
                }
                if let Some(command) =
                    replica.on_follower_fetch(fetch.replica_id, item.offset, &log)
                {
                    self.propose_isr(replica.clone(), command);
                }
                let throttle = self.leader_throttle.as_ref().filter(|_| {
                    let meta = self.meta();
                    let p = meta.partition(&item.partition.topic, item.partition.partition);
                    p.is_some_and(|p| p.adding.contains(&fetch.replica_id))
                });
                if let Some(throttle) = throttle {
                    throttle.wait().await;
                }
                let read = log.read_replica(item.offset, item.max_bytes).await;
                if let (Some(throttle), Ok(read)) = (throttle, &read) {
                    throttle.charge(read.records.len());
                }
                read
            }
            None if item.within_max_bytes => log.read_within(item.offset, item.max_bytes).await,
            None => log.read(item.offset, item.max_bytes).await,
        };
        match read {
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
                    diverging_epoch: None,
                    preferred_read_replica: None,
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

    /// A consumer's fetch, before reading: counts it by this broker's role, and answers at
    /// once when the leader sends the consumer to a replica of its rack (KIP-392), or when
    /// this follower's high watermark has not reached the offset yet while its log has it
    /// (empty, as Kafka answers, not OFFSET_OUT_OF_RANGE: the consumer asks again).
    fn before_consumer_read(
        &self,
        item: &FetchItem,
        log: &PartitionLog,
        replica: &Replica,
        follower: bool,
    ) -> Option<FetchOutcome> {
        let position = || FetchOutcome {
            high_watermark: log.high_watermark(),
            log_start_offset: log.log_start_offset(),
            last_stable_offset: log.last_stable_offset(),
            ..FetchOutcome::default()
        };
        let rack = item.client_rack.as_deref().filter(|_| !follower);
        if let Some(id) = rack.and_then(|rack| self.read_replica_in(item, replica, rack)) {
            self.metrics.count_read_replica_redirect();
            return Some(FetchOutcome { preferred_read_replica: Some(id), ..position() });
        }
        self.metrics.count_consumer_fetch(follower);
        let visible = follower && item.offset > log.high_watermark();
        (visible && item.offset <= log.log_end_offset()).then(position)
    }

    /// Leader, rack-aware selector: the in-sync, unfenced follower in `rack` that holds the
    /// fetch offset, the furthest ahead if several (Kafka's RackAwareReplicaSelector);
    /// `None` when this broker is in that rack (it serves the consumer itself) or no
    /// follower qualifies.
    fn read_replica_in(&self, item: &FetchItem, replica: &Replica, rack: &str) -> Option<i32> {
        let meta = self.meta();
        let me = self.config.node_id;
        let rack_of = |id: i32| meta.brokers.get(&id).and_then(|b| b.rack.as_deref());
        if rack_of(me) == Some(rack) {
            return None;
        }
        let partition = meta.partition(&item.partition.topic, item.partition.partition)?;
        let in_rack = |id: i32| id != me && rack_of(id) == Some(rack);
        let candidates =
            partition.isr.iter().filter(|&&id| in_rack(id) && !meta.fenced.contains(&id));
        let ends = candidates.filter_map(|&id| Some((replica.follower_end(id)?, id)));
        ends.filter(|(end, _)| *end >= item.offset).max().map(|(_, id)| id)
    }

    /// Resolves when any owned partition among `items` has data past its offset. Never
    /// resolves when none of them is owned here (the caller's deadline ends the wait).
    /// `replica`: a follower's fetch, which waits for appended data rather than the high
    /// watermark.
    pub fn wait_local(&self, items: &[(PartitionRef, i64)], replica: bool) -> LocalFuture<()> {
        let waits: Vec<_> = items
            .iter()
            .filter_map(|(p, offset)| {
                let log = self.log(&p.topic, p.partition)?;
                Some(Box::pin(if replica {
                    log.wait_for_appended(*offset)
                } else {
                    log.wait_for_data(*offset)
                }))
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
                let (topic, partition) = (&p.topic, p.partition);
                crate::log_limited!(WARN, %topic, partition, "marker refused: {e}");
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

    /// OffsetForLeaderEpoch for a partition this shard leads.
    pub fn epoch_end_local(&self, query: &EpochQuery) -> EpochAnswer {
        let p = &query.partition;
        let Some(Owned { log, replica, .. }) = self.owned(&p.topic, p.partition) else {
            return EpochAnswer::failed(E::NotLeaderOrFollower);
        };
        if matches!(replica.role(), Role::Follower { .. }) {
            return EpochAnswer::failed(E::NotLeaderOrFollower);
        }
        if let Err(error) = check_leader_epoch(&replica, query.current_leader_epoch) {
            return EpochAnswer::failed(error);
        }
        let (leader_epoch, end_offset) = match log.latest_epoch() {
            // No epoch recorded (a single broker, epoch 0 throughout): the whole log.
            None if query.leader_epoch >= replica.leader_epoch() => {
                (replica.leader_epoch(), log.log_end_offset())
            }
            None => (-1, -1),
            Some(_) => log.end_offset_for_epoch(query.leader_epoch),
        };
        EpochAnswer { error_code: 0, leader_epoch, end_offset }
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
        let search = match query.timestamp {
            // EARLIEST, and EARLIEST_LOCAL (KIP-1005): without tiered storage the local log is
            // the whole log.
            -2 | -4 => return found(log.log_start_offset()),
            -1 if query.read_committed => return found(log.last_stable_offset()),
            -1 => return found(log.high_watermark()),
            // LATEST_TIERED (KIP-1005): nothing is tiered, Kafka answers offset -1.
            -5 => return found(-1),
            // MAX_TIMESTAMP (KIP-734).
            -3 => log.offset_of_max_timestamp().await,
            ts if ts < 0 => {
                return OffsetAnswer { error_code: E::InvalidRequest.code(), ..missing }
            }
            ts => log.offset_for_timestamp(ts).await,
        };
        match search {
            Ok(Some((offset, timestamp))) => OffsetAnswer { error_code: 0, offset, timestamp },
            Ok(None) => found(-1),
            Err(_) => OffsetAnswer { error_code: E::KafkaStorageError.code(), ..missing },
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

    /// DescribeLogDirs of the logs this shard owns: each one's size and offset lag.
    pub fn log_dir_entries(&self) -> Vec<super::mesh::LogDirEntry> {
        let logs = self.logs.borrow();
        let mut out = Vec::new();
        for (topic, logs) in logs.iter() {
            for (index, owned) in logs.partitions.iter().enumerate() {
                let Some(owned) = owned else { continue };
                let lag = owned.log.high_watermark() - owned.log.log_end_offset();
                out.push(super::mesh::LogDirEntry {
                    topic: topic.clone(),
                    partition: i32::try_from(index).unwrap_or(i32::MAX),
                    size_bytes: owned.log.size_bytes(),
                    offset_lag: lag.max(0),
                });
            }
        }
        out
    }

    /// Every log this shard owns.
    fn local_logs(&self) -> Vec<PartitionLog> {
        let logs = self.logs.borrow();
        logs.values().flat_map(|t| t.partitions.iter().flatten().map(|o| o.log.clone())).collect()
    }

    /// Deletes the segment files this shard's logs keep for reuse (the disk fell below its
    /// headroom: that space is worth more as free space).
    async fn release_kept_files(&self) {
        if self.recycle_pool.held_bytes() == 0 {
            return;
        }
        for log in self.local_logs() {
            if let Err(e) = log.release_kept_file().await {
                let dir = log.dir().display();
                tracing::warn!(dir = %dir, "cannot delete a kept segment file: {e}");
            }
        }
    }

    /// The shard's background work, forever: every `retention_check_ms`, retention and then
    /// compaction on each log it owns. Runs in its own low-priority task queue; each log's
    /// work yields to the executor often, so produce and fetch stay responsive.
    pub async fn housekeeping(self: Rc<Self>) {
        let interval = std::time::Duration::from_millis(self.config.retention_check_ms);
        loop {
            glommio::timer::sleep(interval).await;
            let producer_max_age =
                i64::try_from(self.settings().producer_id_expiration_ms).unwrap_or(i64::MAX);
            for log in self.local_logs() {
                // A panic (compacting client records, say) skips this log until the next round.
                let what = format!("housekeeping of {}", log.dir().display());
                let _ = contained(what, housekeep(&log, producer_max_age)).await;
                glommio::executor().yield_if_needed().await;
            }
        }
    }

    /// Leader: sends an ISR change to the controller in the background.
    fn propose_isr(&self, replica: Rc<Replica>, command: Command) {
        let Some(me) = self.me.borrow().upgrade() else { return };
        let task = async move {
            tracing::info!(?command, "proposing an ISR change");
            if let Err(e) = me.control(ControlOp::Replicated(command)).await {
                tracing::info!("ISR change refused: {e}");
                replica.proposal_failed();
            }
        };
        spawn_contained("an ISR change proposal", task.in_current_span()).detach();
    }

    /// Forever: every quarter of `replica_lag_time_max_ms`, asks the controller to drop
    /// followers that have lagged longer than that from the ISR of each partition led here.
    pub async fn replication_upkeep(self: Rc<Self>) {
        let max_lag = std::time::Duration::from_millis(self.config.replica_lag_time_max_ms);
        let period = (max_lag / 4).max(std::time::Duration::from_millis(50));
        loop {
            glommio::timer::sleep(period).await;
            let replicas: Vec<Rc<Replica>> = {
                let logs = self.logs.borrow();
                logs.values()
                    .flat_map(|t| t.partitions.iter().flatten().map(|o| o.replica.clone()))
                    .filter(|r| r.role() == Role::Leader)
                    .collect()
            };
            for replica in replicas {
                let lagging = contained_sync("the ISR check of a partition", || {
                    replica.check_lagging(max_lag)
                });
                if let Ok(Some(command)) = lagging {
                    self.propose_isr(replica, command);
                }
                // Tens of thousands of partitions make one pass long: let appends and
                // fetches run between replicas.
                glommio::executor().yield_if_needed().await;
            }
        }
    }

    /// Handles a message from another shard. Produce appends happen before this returns, so
    /// one peer's produce messages append in arrival order; everything else runs as a task.
    /// A panic handling a message is contained: its reply channel closes, so the sender
    /// answers its client with an error, and the next messages are handled as usual.
    pub fn on_message(self: &Rc<Self>, envelope: Envelope) {
        let Envelope { span, msg } = envelope;
        let _entered = span.enter();
        match msg {
            ShardMsg::Produce { items, acks, reply } => {
                let appended = || self.on_produce(items, acks, reply);
                let _ = contained_sync("a produce from another shard", appended);
            }
            other => {
                let shard = self.clone();
                let task = async move { shard.on_request(other).await };
                let what = "a request from another shard";
                spawn_contained(what, task.instrument(span.clone())).detach();
            }
        }
    }

    fn on_produce(
        &self,
        items: Vec<(PartitionRef, crate::storage::OwnedRecords)>,
        acks: Acks,
        reply: oneshot::Sender<Vec<ProduceOutcome>>,
    ) {
        let appends: Vec<LocalAppend> = items
            .into_iter()
            .map(|(p, records)| self.append_local(&p.topic, p.partition, records, acks))
            .collect();
        if acks.acks != 0 {
            let task = async move {
                let outcomes = join_all(appends.into_iter().map(|a| a.outcome())).await;
                let _ = reply.send(outcomes);
            };
            spawn_contained("a produce from another shard", task.in_current_span()).detach();
        }
    }

    async fn on_request(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Produce { items, acks, reply } => self.on_produce(items, acks, reply),
            ShardMsg::Fetch { items, reply } => {
                let outcomes = join_all(items.into_iter().map(|i| self.read_local(i))).await;
                let _ = reply.send(outcomes);
            }
            ShardMsg::WaitForData { items, replica, deadline, mut reply } => {
                let wait = self.wait_local(&items, replica);
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
            // A contained panic drops `reply`: the sender answers COORDINATOR_NOT_AVAILABLE.
            ShardMsg::Group { request, reply } => {
                if let Ok(answer) = self.groups.handle(*request).await {
                    let _ = reply.send(answer);
                }
            }
            ShardMsg::Txn { request, reply } => {
                if let Ok(answer) = self.txns.handle(&self, *request).await {
                    let _ = reply.send(answer);
                }
            }
            ShardMsg::WriteMarkers { items, marker, reply } => {
                let writes = items.iter().map(|p| self.write_marker_local(p, marker));
                let _ = reply.send(join_all(writes).await);
            }
            ShardMsg::EpochEnds { items, reply } => {
                let _ = reply.send(items.iter().map(|q| self.epoch_end_local(q)).collect());
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
            ShardMsg::LogDirs { reply } => {
                let _ = reply.send(self.log_dir_entries());
            }
            ShardMsg::Share { request, reply } => {
                let _ = reply.send(self.shares.handle(&self, *request).await);
            }
        }
    }
}

/// A fetch's `current_leader_epoch` against the epoch this broker knows (-1: not checked):
/// FENCED_LEADER_EPOCH when the sender is behind, UNKNOWN_LEADER_EPOCH when this broker is.
fn check_leader_epoch(replica: &Replica, current: i32) -> Result<(), E> {
    let known = replica.leader_epoch();
    if current < 0 || current == known {
        Ok(())
    } else if current < known {
        Err(E::FencedLeaderEpoch)
    } else {
        Err(E::UnknownLeaderEpoch)
    }
}

/// Leader, for a follower's fetch: where the follower's log diverges from this one, if it
/// does (KIP-320). The follower's last batch has epoch `last_fetched_epoch` and it fetches
/// at `offset`; if this log ends that epoch earlier, or never had it, the follower must
/// truncate to the returned end offset.
fn diverging_epoch(log: &PartitionLog, last_fetched_epoch: i32, offset: i64) -> Option<(i32, i64)> {
    if last_fetched_epoch < 0 {
        return None;
    }
    let (epoch, end) = log.end_offset_for_epoch(last_fetched_epoch);
    if epoch < 0 {
        return None;
    }
    (epoch < last_fetched_epoch || end < offset).then_some((epoch, end))
}

/// Leader of a replicated partition: moves the high watermark whenever this broker's own
/// durable end moves (followers move it when they fetch), until the leadership ends.
fn spawn_high_watermark_task(owned: &Owned) {
    let replica = Rc::downgrade(&owned.replica);
    let generation = owned.replica.generation();
    let log = owned.log.clone();
    let task = async move {
        loop {
            let seen = log.durable_end();
            log.wait_for_durable(seen).await;
            let Some(replica) = replica.upgrade() else { return };
            if replica.generation() != generation {
                return;
            }
            replica.advance_high_watermark(&log);
            if log.durable_end() == seen {
                // Closed or poisoned: nothing will move any more.
                return;
            }
        }
    };
    spawn_contained("the high watermark task of a partition", task).detach();
}

/// Retention, then compaction, of one log (a step of [`Shard::housekeeping`]).
async fn housekeep(log: &PartitionLog, producer_max_age: i64) {
    let now = storage::now_ms();
    log.expire_producers(now, producer_max_age);
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
                    // Reported by the leader only, as Kafka does.
                    under_replicated: meta.partition(topic, index as i32).is_some_and(|p| {
                        o.replica.role() == Role::Leader && p.isr.len() < p.replicas.len()
                    }),
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
            budget_bytes: self.budget.capacity() as u64,
            budget_used_bytes: self.budget.used() as u64,
            recycle_held_bytes: self.recycle_pool.held_bytes(),
            apis,
            append_latency: self.metrics.append_latency.snapshot(),
            partitions,
            committed: self.groups.committed_offsets(),
            consumer_fetches: self.metrics.consumer_fetch_counts(),
        }
    }
}

#[cfg(test)]
mod await_isr_tests {
    use super::*;
    use futures::FutureExt;
    use std::time::Duration;

    fn meta(leader: i32, epoch: i32) -> crate::controller::PartitionMeta {
        crate::controller::PartitionMeta {
            shard: 0,
            leader_epoch: epoch,
            replicas: vec![1, 2],
            leader: Some(leader),
            isr: vec![1, 2],
            partition_epoch: epoch,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// An acks=all append whose leadership moves while it waits for its local write: the
    /// wait for the in-sync replicas answers NOT_LEADER_OR_FOLLOWER at once. It used to
    /// register for role changes only once the write was durable, missed this one, and
    /// waited out the produce timeout (30 s for librdkafka).
    #[test]
    fn a_leadership_lost_before_the_wait_starts_ends_it_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(move || async move {
                let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
                let replica = Rc::new(Replica::new(1, Duration::from_secs(10), "t".into(), 0));
                assert_eq!(replica.update(&meta(1, 0), 1, true, &log), Change::Leader);
                let generation = replica.generation();
                // Broker 2 takes over before the wait starts.
                let follower = replica.update(&meta(2, 1), 1, true, &log);
                assert_eq!(follower, Change::Follower { leader: Some(2) });
                let timeout = Duration::from_secs(3600);
                let wait = AwaitIsr { log: log.clone(), replica, timeout, generation };
                let answer = wait.wait(0).now_or_never();
                let (code, _) = answer.expect("answered without waiting");
                assert_eq!(code, E::NotLeaderOrFollower.code());
                log.close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
