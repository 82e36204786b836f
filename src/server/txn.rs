//! The transaction coordinator of one shard.
//!
//! A [`TxnCoordinator`] lives on ONE shard (`Rc`). It owns the partitions of
//! `__transaction_state` that this shard owns and coordinates exactly the transactional ids
//! that hash to them (as groups do with `__consumer_offsets`). Every change of an id's
//! metadata is appended to its partition and applied in memory only once durable; at
//! start-up each partition is replayed ([`TxnCoordinator::add_partition`]), and until that
//! finished its ids answer COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Ending a transaction: PrepareCommit/PrepareAbort is made durable (the decision), then a
//! marker is written to every partition of the transaction, then CompleteCommit/
//! CompleteAbort. Partitions this broker leads get theirs over the shard mesh
//! ([`Shard::write_marker_local`]); those led by other brokers (cluster metadata) get one
//! WriteTxnMarkers request per leading broker, sent at the same time over
//! the shard's [`PeerPool`] of idle connections. Only a 0 from every partition
//! completes the transaction. A marker that could not be written (no leader, a moved leader
//! answering NOT_LEADER_OR_FOLLOWER, a broker down) leaves the id in Prepare*, and
//! [`TxnCoordinator::run_periodic`] retries it with the metadata of that moment;
//! that task also finishes Prepare* states found by the replay after a crash and aborts
//! Ongoing transactions older than their timeout (bumping the epoch, which fences the
//! producer); it also expires ids with no open transaction that were not updated for
//! `--transactional-id-expiration-ms` (a tombstone in their partition, then forgotten).
//! Mutations of one transactional id are serialised by that id's lock, held
//! across its marker writes (markers never need a coordinator lock, so this cannot
//! deadlock); different ids proceed concurrently.
//!
//! Panics: each request and each id's background step runs contained
//! ([`crate::runtime::contain`]). An id's metadata changes in memory only by replacing it
//! whole with a value computed by the pure [`TxnMeta`] transitions and made durable first,
//! so a panic leaves the id at its last durable state; its lock is released as the
//! panicking future is dropped. The client gets COORDINATOR_NOT_AVAILABLE and retries, and
//! [`TxnCoordinator::run_periodic`] finishes a transaction left in Prepare*.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures::future::join_all;
use glommio::sync::Semaphore;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, RequestKind, ResponseKind, TopicName, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::mesh::{PartitionRef, ShardMsg};
use super::peer::PeerPool;
use super::shard::Shard;
use crate::controller::ClusterMetadata;
use crate::protocol::ResponseError as E;
use crate::runtime::contain::{contained, contained_sync, spawn_contained};
use crate::storage::PartitionLog;
use crate::txn::api::{TxnOp, TxnReply, TxnRequest};
use crate::txn::state::{TxnMeta, TxnState};
use crate::txn::{records, TXN_CHECK_INTERVAL_MS, TXN_TOPIC};

/// Bytes read per step of the replay.
const REPLAY_READ_BYTES: usize = 1 << 20;

struct TxnPartition {
    log: PartitionLog,
    loaded: bool,
}

struct Entry {
    meta: TxnMeta,
    partition: i32,
}

/// The transactional ids of one shard. See the module docs.
pub struct TxnCoordinator {
    partitions: RefCell<HashMap<i32, TxnPartition>>,
    txns: RefCell<HashMap<String, Entry>>,
    /// One lock per transactional id (kept while the id is known).
    locks: RefCell<HashMap<String, Rc<Semaphore>>>,
    /// Idle connections to other brokers, for WriteTxnMarkers.
    peers: PeerPool,
}

fn now_ms() -> i64 {
    crate::storage::now_ms()
}

/// A contained task of one transactional id, for the log line of a panic.
struct TxnTask<'a>(&'a str);

impl std::fmt::Display for TxnTask<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transactional id {}", self.0)
    }
}

impl TxnCoordinator {
    /// A coordinator with no partitions yet.
    pub fn new() -> Rc<TxnCoordinator> {
        Rc::new(TxnCoordinator {
            partitions: RefCell::new(HashMap::new()),
            txns: RefCell::new(HashMap::new()),
            locks: RefCell::new(HashMap::new()),
            peers: PeerPool::new("txn"),
        })
    }

    fn ready_log(&self, partition: i32) -> Result<PartitionLog, E> {
        match self.partitions.borrow().get(&partition) {
            None => Err(E::NotCoordinator),
            Some(p) if !p.loaded => Err(E::CoordinatorLoadInProgress),
            Some(p) => Ok(p.log.clone()),
        }
    }

    fn lock_of(&self, id: &str) -> Rc<Semaphore> {
        let mut locks = self.locks.borrow_mut();
        locks.entry(id.to_owned()).or_insert_with(|| Rc::new(Semaphore::new(1))).clone()
    }

    fn meta(&self, id: &str) -> Option<TxnMeta> {
        self.txns.borrow().get(id).map(|e| e.meta.clone())
    }

    /// Handles one request for an id this shard coordinates. A panic while handling it is
    /// contained (see the module docs) and answered COORDINATOR_NOT_AVAILABLE.
    pub async fn handle(&self, shard: &Rc<Shard>, request: TxnRequest) -> Result<TxnReply, E> {
        let partition = request.partition;
        let failed = |_| E::CoordinatorNotAvailable;
        match request.op {
            TxnOp::Verify { id, producer_id, epoch, partitions } => {
                let verify = || self.verify(partition, &id, producer_id, epoch, &partitions);
                contained_sync(TxnTask(&id), verify).map(TxnReply::Codes).map_err(failed)
            }
            TxnOp::Describe { id } => {
                let describe = || self.describe(partition, &id);
                contained_sync(TxnTask(&id), describe).map(TxnReply::Describe).map_err(failed)
            }
            TxnOp::List => {
                contained_sync(TxnTask("(all)"), || self.list()).map(TxnReply::List).map_err(failed)
            }
            op => {
                let id = match &op {
                    TxnOp::InitProducerId { id, .. }
                    | TxnOp::AddPartitions { id, .. }
                    | TxnOp::End { id, .. } => id.clone(),
                    _ => String::new(),
                };
                let lock = self.lock_of(&id);
                let Ok(_guard) = lock.acquire_permit(1).await else {
                    return Ok(TxnReply::Code(E::CoordinatorNotAvailable.code()));
                };
                contained(TxnTask(&id), self.mutate(shard, partition, op)).await.map_err(failed)
            }
        }
    }

    async fn mutate(&self, shard: &Rc<Shard>, partition: i32, op: TxnOp) -> TxnReply {
        match op {
            TxnOp::InitProducerId { id, timeout_ms, producer_id, epoch } => {
                let asked = (producer_id, epoch);
                let result = self.init_producer(shard, partition, &id, timeout_ms, asked).await;
                TxnReply::Producer(result.map_err(|e| e.code()))
            }
            TxnOp::AddPartitions { id, producer_id, epoch, partitions } => {
                let added = self.add_partitions(partition, &id, producer_id, epoch, &partitions);
                TxnReply::Code(added.await.err().map_or(0, |e| e.code()))
            }
            TxnOp::End { id, producer_id, epoch, commit } => {
                let ended = self.end_txn(shard, partition, &id, producer_id, epoch, commit);
                TxnReply::Code(ended.await.err().map_or(0, |e| e.code()))
            }
            TxnOp::Verify { .. } | TxnOp::Describe { .. } | TxnOp::List => {
                TxnReply::Code(E::UnknownServerError.code())
            }
        }
    }

    /// Appends `meta` for `id` to `partition` and, once durable, adopts it in memory.
    async fn persist(&self, partition: i32, id: &str, meta: TxnMeta) -> Result<(), E> {
        let batch = records::encode_batch(id, &meta, now_ms());
        self.append(partition, id, batch).await?;
        self.txns.borrow_mut().insert(id.to_owned(), Entry { meta, partition });
        Ok(())
    }

    /// Appends `id`'s tombstone to `partition` and, once durable, forgets the id in memory
    /// (its lock too, unless a request is waiting for it). The caller holds the id's lock.
    async fn forget(&self, partition: i32, id: &str, lock: &Rc<Semaphore>) -> Result<(), E> {
        let batch = records::encode_tombstone_batch(id, now_ms());
        self.append(partition, id, batch).await?;
        self.txns.borrow_mut().remove(id);
        // Held by the map and the caller only: no request waits for it, so a later one may
        // start a new lock.
        if Rc::strong_count(lock) == 2 {
            self.locks.borrow_mut().remove(id);
        }
        Ok(())
    }

    /// Appends one encoded batch of `id` to `partition` and waits until it is durable.
    async fn append(
        &self,
        partition: i32,
        id: &str,
        batch: Result<bytes::Bytes, records::TxnRecordError>,
    ) -> Result<(), E> {
        let log = self.ready_log(partition)?;
        let batch = batch.map_err(|e| {
            crate::log_limited!(
                ERROR,
                transactional_id = id,
                "encoding transaction state failed: {e}"
            );
            E::UnknownServerError
        })?;
        let written = match log.append(&batch) {
            Ok(pending) => pending.durable().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = written {
            crate::log_limited!(
                ERROR,
                transactional_id = id,
                "persisting transaction state failed: {e}"
            );
            return Err(E::CoordinatorNotAvailable);
        }
        Ok(())
    }

    async fn init_producer(
        &self,
        shard: &Rc<Shard>,
        partition: i32,
        id: &str,
        timeout_ms: i32,
        (producer_id, epoch): (i64, i16),
    ) -> Result<(i64, i16), E> {
        self.ready_log(partition)?;
        let Some(mut meta) = self.meta(id) else {
            let new_id = shard.allocate_producer_id().await.map_err(|e| {
                crate::log_limited!(ERROR, "InitProducerId: {e}");
                E::CoordinatorNotAvailable
            })?;
            let meta = TxnMeta::new(new_id, timeout_ms, now_ms());
            self.persist(partition, id, meta).await?;
            return Ok((new_id, 0));
        };
        if producer_id >= 0 && !meta.may_reinit(producer_id, epoch) {
            return Err(E::ProducerFenced);
        }
        if meta.state.is_prepare() {
            meta = self.finish(shard, partition, id, meta).await?;
        }
        if meta.state == TxnState::Ongoing {
            // Fence the previous producer: abort its transaction at a newer epoch.
            let prepared = meta.fence(now_ms());
            self.persist(partition, id, prepared.clone()).await?;
            meta = self.finish(shard, partition, id, prepared).await?;
        }
        let next = match meta.initialized(timeout_ms, now_ms()) {
            Some(next) => next,
            None => {
                let producer_id = shard.allocate_producer_id().await.map_err(|e| {
                    crate::log_limited!(ERROR, "InitProducerId: {e}");
                    E::CoordinatorNotAvailable
                })?;
                TxnMeta::new(producer_id, timeout_ms, now_ms())
            }
        };
        let answer = (next.producer_id, next.epoch);
        self.persist(partition, id, next).await?;
        Ok(answer)
    }

    async fn add_partitions(
        &self,
        partition: i32,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), E> {
        self.ready_log(partition)?;
        let meta = self.meta(id).ok_or(E::InvalidProducerIdMapping)?;
        meta.check_producer(producer_id, epoch)?;
        match meta.add_partitions(partitions, now_ms())? {
            Some(next) => self.persist(partition, id, next).await,
            None => Ok(()),
        }
    }

    async fn end_txn(
        &self,
        shard: &Rc<Shard>,
        partition: i32,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), E> {
        self.ready_log(partition)?;
        let meta = self.meta(id).ok_or(E::InvalidProducerIdMapping)?;
        let timed_out = meta.last_epoch >= 0 && epoch == meta.last_epoch;
        if timed_out && producer_id == meta.producer_id && !commit && !meta.state.is_prepare() {
            // Its transaction was already aborted for it (the timeout).
            return Ok(());
        }
        meta.check_producer(producer_id, epoch)?;
        let Some(prepared) = meta.end(commit, now_ms())? else {
            return Ok(());
        };
        self.persist(partition, id, prepared.clone()).await?;
        // The decision is durable: a marker failure is retried by `run_periodic`, and the
        // client's next operation waits for it (CONCURRENT_TRANSACTIONS).
        if let Err(e) = self.finish(shard, partition, id, prepared).await {
            crate::log_limited!(WARN, transactional_id = id, "markers not all written yet: {e:?}");
        }
        Ok(())
    }

    /// Writes the markers of a Prepare* `meta` and records its completion. Returns the
    /// completed metadata, or CONCURRENT_TRANSACTIONS when some marker is still missing.
    async fn finish(
        &self,
        shard: &Rc<Shard>,
        partition: i32,
        id: &str,
        meta: TxnMeta,
    ) -> Result<TxnMeta, E> {
        debug_assert!(meta.state.is_prepare());
        let commit = meta.state == TxnState::PrepareCommit;
        if !write_markers(shard, partition, &meta, commit).await {
            return Err(E::ConcurrentTransactions);
        }
        let done = meta.complete(now_ms());
        self.persist(partition, id, done.clone()).await?;
        Ok(done)
    }

    fn verify(
        &self,
        partition: i32,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Vec<i16> {
        let all = |e: E| vec![e.code(); partitions.len()];
        if let Err(e) = self.ready_log(partition) {
            return all(e);
        }
        let txns = self.txns.borrow();
        let Some(entry) = txns.get(id) else { return all(E::InvalidProducerIdMapping) };
        let meta = &entry.meta;
        if meta.producer_id != producer_id {
            return all(E::InvalidProducerIdMapping);
        }
        if meta.epoch != epoch {
            return all(E::InvalidProducerEpoch);
        }
        let ongoing = meta.state == TxnState::Ongoing;
        partitions
            .iter()
            .map(
                |p| {
                    if ongoing && meta.partitions.contains(p) {
                        0
                    } else {
                        E::InvalidTxnState.code()
                    }
                },
            )
            .collect()
    }

    fn describe(&self, partition: i32, id: &str) -> Result<TxnMeta, i16> {
        self.ready_log(partition).map_err(|e| e.code())?;
        self.meta(id).ok_or(E::TransactionalIdNotFound.code())
    }

    fn list(&self) -> Vec<(String, TxnMeta)> {
        let loaded: Vec<i32> =
            self.partitions.borrow().iter().filter(|(_, p)| p.loaded).map(|(n, _)| *n).collect();
        let txns = self.txns.borrow();
        let mut out: Vec<(String, TxnMeta)> = txns
            .iter()
            .filter(|(_, e)| loaded.contains(&e.partition))
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forever, every [`TXN_CHECK_INTERVAL_MS`]: finishes transactions left in Prepare*
    /// (a crash, or a marker that failed), aborts Ongoing ones past their timeout and
    /// expires ids idle past `--transactional-id-expiration-ms`.
    pub async fn run_periodic(self: Rc<Self>, shard: Rc<Shard>) {
        let expiration_ms =
            i64::try_from(shard.config.transactional_id_expiration_ms).unwrap_or(i64::MAX);
        loop {
            glommio::timer::sleep(Duration::from_millis(TXN_CHECK_INTERVAL_MS)).await;
            self.complete_due(&shard).await;
            self.expire_idle(expiration_ms).await;
        }
    }

    /// Forgets every transactional id with no transaction open whose last update is at least
    /// `expiration_ms` old (Kafka's `removeExpiredTransactionalIds`): a tombstone is
    /// appended to its partition first, so a restart's replay forgets it too.
    async fn expire_idle(&self, expiration_ms: i64) {
        let now = now_ms();
        let due: Vec<(String, i32)> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, e)| e.meta.expired(now, expiration_ms))
            .map(|(id, e)| (id.clone(), e.partition))
            .collect();
        for (id, partition) in due {
            let _ = contained(TxnTask(&id), self.expire_one(&id, partition, expiration_ms)).await;
        }
    }

    async fn expire_one(&self, id: &str, partition: i32, expiration_ms: i64) {
        let lock = self.lock_of(id);
        let Ok(_guard) = lock.acquire_permit(1).await else { return };
        // Re-read under the lock: a request may have used the id meanwhile.
        let still =
            self.txns.borrow().get(id).is_some_and(|e| {
                e.partition == partition && e.meta.expired(now_ms(), expiration_ms)
            });
        if !still || self.ready_log(partition).is_err() {
            return;
        }
        match self.forget(partition, id, &lock).await {
            Ok(()) => tracing::info!(transactional_id = %id, "expired transactional id"),
            Err(e) => tracing::warn!(transactional_id = %id, "expiring: {e:?}"),
        }
    }

    /// Finishes transactions left in Prepare* and aborts Ongoing ones past their timeout.
    async fn complete_due(&self, shard: &Rc<Shard>) {
        let now = now_ms();
        let due: Vec<(String, i32)> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, e)| e.meta.state.is_prepare() || e.meta.timed_out(now))
            .map(|(id, e)| (id.clone(), e.partition))
            .collect();
        for (id, partition) in due {
            let _ = contained(TxnTask(&id), self.complete_one(shard, &id, partition)).await;
        }
    }

    async fn complete_one(&self, shard: &Rc<Shard>, id: &str, partition: i32) {
        let lock = self.lock_of(id);
        let Ok(_guard) = lock.acquire_permit(1).await else { return };
        // Re-read under the lock: a request may have moved it on meanwhile.
        let now = now_ms();
        let Some(meta) = self.meta(id) else { return };
        if self.ready_log(partition).is_err() || !(meta.state.is_prepare() || meta.timed_out(now)) {
            return;
        }
        let prepared = if meta.state.is_prepare() {
            meta
        } else {
            tracing::info!(transactional_id = %id, "aborting a timed-out transaction");
            let prepared = meta.timeout_abort(now);
            if self.persist(partition, id, prepared.clone()).await.is_err() {
                return;
            }
            prepared
        };
        match self.finish(shard, partition, id, prepared).await {
            Ok(done) => tracing::info!(transactional_id = %id, state = done.state.name(),
                "completed a transaction in the background"),
            Err(e) => tracing::warn!(transactional_id = %id, "completing transaction: {e:?}"),
        }
    }

    /// Takes ownership of `partition` of `__transaction_state` and replays it in a task.
    pub fn add_partition(self: &Rc<Self>, partition: i32, log: PartitionLog) {
        let entry = TxnPartition { log: log.clone(), loaded: false };
        self.partitions.borrow_mut().insert(partition, entry);
        let this = self.clone();
        // A panic while replaying leaves the partition loading (COORDINATOR_LOAD_IN_PROGRESS).
        let what = format!("loading {TXN_TOPIC} partition {partition}");
        spawn_contained(what, async move {
            let count = this.replay(partition, &log).await;
            if let Some(p) = this.partitions.borrow_mut().get_mut(&partition) {
                p.loaded = true;
            }
            tracing::info!(partition, records = count, "loaded transaction state partition");
        })
        .detach();
    }

    /// Stops coordinating `partition` (its leadership moved to another broker): forgets its
    /// transactional ids, which the new leader replays from the replicated log.
    pub fn remove_partition(&self, partition: i32) {
        if self.partitions.borrow_mut().remove(&partition).is_none() {
            return;
        }
        self.txns.borrow_mut().retain(|_, entry| entry.partition != partition);
        tracing::info!(partition, "no longer coordinating transaction state partition");
    }

    async fn replay(&self, partition: i32, log: &PartitionLog) -> usize {
        let mut applied = 0;
        log.replay(REPLAY_READ_BYTES, |offset, data| match records::decode_batches(data) {
            Ok(decoded) => {
                for (at, record) in decoded.into_iter().filter(|(at, _)| *at >= offset) {
                    match record {
                        Ok((id, Some(meta))) => {
                            self.txns.borrow_mut().insert(id, Entry { meta, partition });
                            applied += 1;
                        }
                        Ok((id, None)) => {
                            self.txns.borrow_mut().remove(&id);
                        }
                        Err(e) => tracing::warn!(partition, offset = at, "skipping: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!(partition, offset, "skipping undecodable batches: {e}"),
        })
        .await;
        applied
    }
}

/// Writes `meta`'s markers to every partition of its transaction: on this broker's shards
/// over the mesh, and with one WriteTxnMarkers request per other leading broker, all at once.
/// True when every one is written (or its partition no longer exists). `txn_partition` is the
/// `__transaction_state` partition of the id; its leader epoch is the coordinator epoch.
async fn write_markers(
    shard: &Rc<Shard>,
    txn_partition: i32,
    meta: &TxnMeta,
    commit: bool,
) -> bool {
    let cluster = shard.meta();
    let node = shard.config.node_id;
    let mut per_shard: Vec<Vec<PartitionRef>> = (0..shard.count).map(|_| Vec::new()).collect();
    let mut per_broker: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut leaderless = 0;
    for (topic, partition) in &meta.partitions {
        // Deleted since it joined the transaction: nothing left to mark.
        let Some(found) = cluster.partition(topic, *partition) else { continue };
        match found.leader {
            Some(leader) if leader != node => {
                per_broker.entry(leader).or_default().push((topic.clone(), *partition));
            }
            _ => match cluster.owner(topic, *partition) {
                Ok(owner) => {
                    if let Some(bucket) = per_shard.get_mut(owner) {
                        let topic = topic.as_str().into();
                        bucket.push(PartitionRef { topic, partition: *partition });
                    }
                }
                // No leader right now: unwritten, retried once one is elected.
                Err(_) => leaderless += 1,
            },
        }
    }
    let coordinator_epoch =
        cluster.partition(TXN_TOPIC, txn_partition).map_or(0, |p| p.leader_epoch);
    let marker =
        Marker { producer_id: meta.producer_id, epoch: meta.epoch, commit, coordinator_epoch };
    let mut local = Vec::new();
    for (owner, items) in per_shard.into_iter().enumerate().filter(|(_, i)| !i.is_empty()) {
        let shard = shard.clone();
        local.push(async move {
            if owner == shard.id {
                let writes = items.iter().map(|p| shard.write_marker_local(p, marker));
                return join_all(writes).await;
            }
            let (reply, answer) = futures::channel::oneshot::channel();
            let count = items.len();
            if !shard.send(owner, ShardMsg::WriteMarkers { items, marker, reply }).await {
                return vec![E::CoordinatorNotAvailable.code(); count];
            }
            answer.await.unwrap_or_else(|_| vec![E::CoordinatorNotAvailable.code(); count])
        });
    }
    let remote = per_broker.into_iter().map(|(broker, items)| {
        let cluster = cluster.clone();
        async move {
            let codes = write_remote(shard, &cluster, broker, &items, marker).await;
            (broker, codes)
        }
    });
    let (local, remote) = futures::join!(join_all(local), join_all(remote));
    let done = |c: &i16| *c == 0 || *c == E::UnknownTopicOrPartition.code();
    let local_ok = local.iter().flatten().all(done);
    // A broker's UNKNOWN_TOPIC_OR_PARTITION may be metadata it has not caught up with: only
    // our own metadata (checked above, on every retry) may drop a partition.
    let remote_ok = remote.iter().all(|(_, r)| r.as_ref().is_ok_and(|c| c.iter().all(|c| *c == 0)));
    let ok = leaderless == 0 && local_ok && remote_ok;
    if !ok {
        // One line per attempt, with every reason (the periodic finisher retries each second).
        let local: Vec<i16> = local.into_iter().flatten().collect();
        let remote: Vec<String> = remote
            .iter()
            .map(|(broker, r)| match r {
                Ok(codes) => format!("broker {broker}: {codes:?}"),
                Err(e) => format!("broker {broker}: {e}"),
            })
            .collect();
        tracing::warn!(
            producer_id = meta.producer_id,
            ?local,
            ?remote,
            leaderless,
            "some markers were not written yet"
        );
    }
    ok
}

/// Timeout of one WriteTxnMarkers call to another broker.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Calls WriteTxnMarkers v1 on `broker` at `addr` over the coordinator's [`PeerPool`].
async fn call_peer(
    shard: &Rc<Shard>,
    broker: i32,
    addr: &str,
    request: WriteTxnMarkersRequest,
) -> Result<WriteTxnMarkersResponse, String> {
    let body = RequestKind::WriteTxnMarkers(request);
    let api = (ApiKey::WriteTxnMarkers, 1);
    let node = shard.config.node_id;
    match shard.txns.peers.call(node, (broker, addr), api, body, PEER_CALL_TIMEOUT).await? {
        ResponseKind::WriteTxnMarkers(response) => Ok(response),
        other => Err(format!("{addr}: not a WriteTxnMarkers answer: {other:?}")),
    }
}

/// Sends `marker` for `items` to `broker` (their leader) as one WriteTxnMarkers v1 request:
/// one error code per item, in order, or why the call failed (the caller logs it).
async fn write_remote(
    shard: &Rc<Shard>,
    cluster: &ClusterMetadata,
    broker: i32,
    items: &[(String, i32)],
    marker: Marker,
) -> Result<Vec<i16>, String> {
    let Some(addr) = cluster.brokers.get(&broker).map(|b| format!("{}:{}", b.host, b.port)) else {
        return Err("not registered".into());
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in items {
        topics.entry(topic.as_str()).or_default().push(*partition);
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                .with_partition_indexes(partitions)
        })
        .collect();
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(marker.producer_id))
            .with_producer_epoch(marker.epoch)
            .with_transaction_result(marker.commit)
            .with_coordinator_epoch(marker.coordinator_epoch)
            .with_topics(topics)]);
    let response = call_peer(shard, broker, &addr, request).await?;
    let mut codes: HashMap<(&str, i32), i16> = HashMap::new();
    for topic in response.markers.iter().flat_map(|m| &m.topics) {
        for p in &topic.partitions {
            codes.insert((topic.name.0.as_str(), p.partition_index), p.error_code);
        }
    }
    let missing = E::UnknownServerError.code();
    Ok(items
        .iter()
        .map(|(t, p)| codes.get(&(t.as_str(), *p)).copied().unwrap_or(missing))
        .collect())
}

/// A transaction marker to write: whose, at which epoch, commit or abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
    /// The coordinator epoch (leader epoch of the id's `__transaction_state` partition),
    /// stored in the marker.
    pub coordinator_epoch: i32,
}
