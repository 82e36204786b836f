//! Share-partition state across brokers (KIP-932): the share coordinator and the persister.
//!
//! * The **share coordinator** of a share-partition is the shard leading its
//!   `__share_group_state` partition ([`crate::share::state_partition`]). It is the one writer
//!   of that partition: a [`StateStore`] per shard answers reads and writes of the
//!   share-partitions it coordinates, from a cache of their latest state (loaded from the log
//!   on first use, and again whenever the state partition's leader epoch moved). A write
//!   merges the request into the stored state as Kafka's share coordinator does (a start
//!   offset of -1 keeps it; the state batches overwrite their offsets), appends the result
//!   as a ShareSnapshot with acks=all, and answers once it is replicated. Writes of one
//!   share-partition are serialised by its lock.
//! * Fencing, as Kafka's: a request whose state epoch is older than the stored one answers
//!   FENCED_STATE_EPOCH; one whose leader epoch is older than the highest seen answers
//!   FENCED_LEADER_EPOCH (a leader epoch of -1 is not checked: a read for describing, not a
//!   leader loading). A read with a newer leader epoch records it (written when there is
//!   state), so a deposed share-partition leader can no longer write. A write with a newer
//!   state epoch replaces the state instead of merging into it.
//! * **InitializeShareGroupState** (AlterShareGroupOffsets) writes a fresh snapshot at the
//!   given state epoch and start offset (an older state epoch: FENCED_STATE_EPOCH; a topic
//!   or partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION). **DeleteShareGroupState**
//!   (DeleteShareGroupOffsets) appends a tombstone of the share-partition's snapshot key
//!   (none when nothing is stored), so compaction and every later replay forget it, and
//!   evicts it from the cache. **ReadShareGroupStateSummary** (DescribeShareGroupOffsets)
//!   answers the start offset, state epoch and highest leader epoch, records nothing.
//! * A read of a share-partition with no state (never initialized, or deleted) answers start
//!   offset -1 at state epoch 0, and so does one initialized from -1 at its state epoch: the
//!   share-partition leader starts it at `share.auto.offset.reset`, as Kafka's does.
//! * The **persister** (the share-partition leader's and the offset admin APIs' side,
//!   [`with_coordinator`]) finds the coordinator in the cluster metadata: on this broker it
//!   calls the owning shard over the mesh (no network hop); on another broker it sends the
//!   same five APIs over the shard's [`PeerPool`] (TLS when the inter-broker listener is).
//!   NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
//!   NOT_LEADER_OR_FOLLOWER and a failed connection are retried [`ATTEMPTS_MAX`] times with
//!   the metadata of that moment and a doubling back-off; then COORDINATOR_NOT_AVAILABLE.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::sync::Semaphore;
use kafka_protocol::messages::{
    delete_share_group_state_request as delete_req,
    initialize_share_group_state_request as init_req, read_share_group_state_request as read_req,
    read_share_group_state_response as read_resp,
    read_share_group_state_summary_request as summary_req,
    read_share_group_state_summary_response as summary_resp,
    write_share_group_state_request as write_req, ApiKey, DeleteShareGroupStateRequest,
    InitializeShareGroupStateRequest, ReadShareGroupStateRequest,
    ReadShareGroupStateSummaryRequest, RequestKind, ResponseKind, WriteShareGroupStateRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::shard::Shard;
use crate::protocol::ResponseError as E;
use crate::share::partition::{StateBatch, STATE_ACKNOWLEDGED};
use crate::share::records::{ShareKey, ShareState};
use crate::share::{state_partition, STATE_TOPIC};

/// Attempts of one persister call before it answers COORDINATOR_NOT_AVAILABLE.
pub const ATTEMPTS_MAX: u32 = 6;
/// Back-off before the second attempt; doubled before each later one.
const BACKOFF_MS_MIN: u64 = 100;
/// Timeout of one call to another broker's share coordinator: its acks=all write may wait
/// `WRITE_TIMEOUT_MS` for the in-sync replicas.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(35);
/// The version of the share-group state APIs (Initialize, Read, Write, Delete) one broker
/// sends another: the only one kafka-protocol has.
pub const STATE_API_VERSION: i16 = 0;
/// The version of ReadShareGroupStateSummary one broker sends another: v1 (Kafka 4.2,
/// KIP-1226) answers the delivery-complete count.
pub const SUMMARY_API_VERSION: i16 = 1;

/// Where the `__share_group_state` partition of a share-partition is led.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateHome {
    /// On this broker: the state partition and the shard owning it.
    Here {
        /// The `__share_group_state` partition.
        partition: i32,
        /// The shard owning it.
        owner: usize,
    },
    /// On another broker: its id and address.
    Broker {
        /// Broker id.
        id: i32,
        /// `host:port` of its inter-broker listener.
        addr: String,
    },
}

/// Where the share coordinator of `key` is, by this shard's cluster metadata.
pub fn state_home(shard: &Shard, key: &ShareKey) -> Result<StateHome, i16> {
    let unavailable = E::CoordinatorNotAvailable.code();
    let meta = shard.meta();
    let count = meta.partition_count(STATE_TOPIC).ok_or(unavailable)?;
    let partition = state_partition(key, count);
    match meta.owner(STATE_TOPIC, partition) {
        Ok(owner) => Ok(StateHome::Here { partition, owner }),
        Err(E::NotLeaderOrFollower) => {
            let leader = meta.partition(STATE_TOPIC, partition).and_then(|p| p.leader);
            let broker = leader.and_then(|id| meta.brokers.get(&id)).ok_or(unavailable)?;
            if broker.id == shard.config.node_id {
                // Named leader here, but not serving it yet.
                return Err(E::CoordinatorLoadInProgress.code());
            }
            Ok(StateHome::Broker {
                id: broker.id,
                addr: format!("{}:{}", broker.host, broker.port),
            })
        }
        Err(_) => Err(unavailable),
    }
}

/// The state partition of `key` when this shard is its coordinator, else NOT_COORDINATOR.
fn coordinated_here(shard: &Shard, key: &ShareKey) -> Result<i32, i16> {
    match state_home(shard, key)? {
        StateHome::Here { partition, owner } if owner == shard.id => Ok(partition),
        _ => Err(E::NotCoordinator.code()),
    }
}

/// Whether the topic and partition of `key` exist (Kafka's coordinator checks its metadata
/// image before initializing).
fn known_partition(shard: &Shard, key: &ShareKey) -> bool {
    let meta = shard.meta();
    let topic = meta.topic_by_id(key.topic_id);
    topic.is_some_and(|t| usize::try_from(key.partition).is_ok_and(|p| p < t.partitions.len()))
}

/// Whether a persister call failing with `code` is tried again.
fn retriable(code: i16) -> bool {
    [E::NotCoordinator, E::CoordinatorNotAvailable, E::CoordinatorLoadInProgress]
        .into_iter()
        .chain([E::NotLeaderOrFollower, E::RequestTimedOut])
        .any(|e| e.code() == code)
}

/// Runs `op` against the share coordinator of `key`, found anew for each attempt; retries
/// what [`retriable`] says. See the module docs.
pub async fn with_coordinator<T, F, Fut>(shard: &Shard, key: &ShareKey, mut op: F) -> Result<T, i16>
where
    F: FnMut(StateHome) -> Fut,
    Fut: Future<Output = Result<T, i16>>,
{
    let mut last = E::CoordinatorNotAvailable.code();
    for attempt in 0..ATTEMPTS_MAX {
        if attempt > 0 {
            glommio::timer::sleep(Duration::from_millis(BACKOFF_MS_MIN << (attempt - 1))).await;
        }
        let result = match state_home(shard, key) {
            Ok(home) => op(home).await,
            Err(code) => Err(code),
        };
        match result {
            Err(code) if retriable(code) => last = code,
            done => return done,
        }
    }
    crate::log_limited!(WARN, group = %key.group, partition = key.partition, last,
        "share coordinator unreachable");
    Err(E::CoordinatorNotAvailable.code())
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Calls `body` on the share coordinator at broker `(id, addr)`.
async fn call_broker(
    shard: &Rc<Shard>,
    (id, addr): (i32, &str),
    key: ApiKey,
    body: RequestKind,
) -> Result<ResponseKind, i16> {
    let node = shard.config.node_id;
    let version = match key {
        ApiKey::ReadShareGroupStateSummary => SUMMARY_API_VERSION,
        _ => STATE_API_VERSION,
    };
    let api = (key, version);
    let call = shard.shares.peers.call(node, (id, addr), api, body, PEER_CALL_TIMEOUT);
    call.await.map_err(|e| {
        crate::log_limited!(WARN, broker = id, "share coordinator call failed: {e}");
        E::CoordinatorNotAvailable.code()
    })
}

/// One share coordinator API asked about one share-partition: what the persister sends
/// (to the shard coordinating it here, or to another broker, [`call_remote`]).
#[derive(Clone, Copy, Debug)]
pub enum StateCall<'a> {
    /// ReadShareGroupState, as the share-partition's leader at this leader epoch.
    Read {
        /// The reading leader's epoch (-1: not a leader).
        leader_epoch: i32,
    },
    /// WriteShareGroupState of this state.
    Write(&'a ShareState),
    /// InitializeShareGroupState.
    Initialize {
        /// The new state epoch.
        state_epoch: i32,
        /// The new start offset (-1: `share.auto.offset.reset`).
        start_offset: i64,
    },
    /// DeleteShareGroupState.
    Delete,
    /// ReadShareGroupStateSummary (the state without batches).
    Summary {
        /// The reading leader's epoch (-1: not a leader).
        leader_epoch: i32,
    },
}

/// Runs `call` for `key` on the share coordinator at broker `(id, addr)`: the state read
/// (`None`: none) for Read and Summary, `None` once a write, initialization or deletion is
/// durable; an error code otherwise.
pub async fn call_remote(
    shard: &Rc<Shard>,
    broker: (i32, &str),
    key: &ShareKey,
    call: StateCall<'_>,
) -> Result<Option<ShareState>, i16> {
    let (api, body) = remote_request(key, call);
    let response = call_broker(shard, broker, api, body).await?;
    remote_answer(key, call, response)
}

/// The request of `call` for `key`.
fn remote_request(key: &ShareKey, call: StateCall<'_>) -> (ApiKey, RequestKind) {
    let group = str_bytes(&key.group);
    let (id, partition) = (key.topic_id, key.partition);
    match call {
        StateCall::Read { leader_epoch } => {
            let p = read_req::PartitionData::default().with_partition(partition);
            let p = vec![p.with_leader_epoch(leader_epoch)];
            let t = read_req::ReadStateData::default().with_topic_id(id).with_partitions(p);
            let request = ReadShareGroupStateRequest::default().with_topics(vec![t]);
            let body = RequestKind::ReadShareGroupState(request.with_group_id(group));
            (ApiKey::ReadShareGroupState, body)
        }
        StateCall::Write(state) => {
            let body = RequestKind::WriteShareGroupState(write_request(key, state));
            (ApiKey::WriteShareGroupState, body)
        }
        StateCall::Initialize { state_epoch, start_offset } => {
            let p = init_req::PartitionData::default().with_partition(partition);
            let p = vec![p.with_state_epoch(state_epoch).with_start_offset(start_offset)];
            let t = init_req::InitializeStateData::default().with_topic_id(id).with_partitions(p);
            let request = InitializeShareGroupStateRequest::default().with_topics(vec![t]);
            let body = RequestKind::InitializeShareGroupState(request.with_group_id(group));
            (ApiKey::InitializeShareGroupState, body)
        }
        StateCall::Delete => {
            let p = vec![delete_req::PartitionData::default().with_partition(partition)];
            let t = delete_req::DeleteStateData::default().with_topic_id(id).with_partitions(p);
            let request = DeleteShareGroupStateRequest::default().with_topics(vec![t]);
            let body = RequestKind::DeleteShareGroupState(request.with_group_id(group));
            (ApiKey::DeleteShareGroupState, body)
        }
        StateCall::Summary { leader_epoch } => {
            let p = summary_req::PartitionData::default().with_partition(partition);
            let p = vec![p.with_leader_epoch(leader_epoch)];
            let t = summary_req::ReadStateSummaryData::default().with_topic_id(id);
            let request = ReadShareGroupStateSummaryRequest::default();
            let request = request.with_topics(vec![t.with_partitions(p)]).with_group_id(group);
            (ApiKey::ReadShareGroupStateSummary, RequestKind::ReadShareGroupStateSummary(request))
        }
    }
}

/// What the answer to `call` says of `key` (see [`call_remote`]).
fn remote_answer(
    key: &ShareKey,
    call: StateCall<'_>,
    response: ResponseKind,
) -> Result<Option<ShareState>, i16> {
    match (call, response) {
        (StateCall::Read { leader_epoch }, ResponseKind::ReadShareGroupState(r)) => {
            let p = result_of(key, &r.results, |t| (t.topic_id, &t.partitions), |p| p.partition)?;
            error_of(p.error_code)?;
            Ok(from_read(p, leader_epoch))
        }
        (StateCall::Write(_), ResponseKind::WriteShareGroupState(r)) => {
            let p = result_of(key, &r.results, |t| (t.topic_id, &t.partitions), |p| p.partition)?;
            error_of(p.error_code).map(|()| None)
        }
        (StateCall::Initialize { .. }, ResponseKind::InitializeShareGroupState(r)) => {
            let p = result_of(key, &r.results, |t| (t.topic_id, &t.partitions), |p| p.partition)?;
            error_of(p.error_code).map(|()| None)
        }
        (StateCall::Delete, ResponseKind::DeleteShareGroupState(r)) => {
            let p = result_of(key, &r.results, |t| (t.topic_id, &t.partitions), |p| p.partition)?;
            error_of(p.error_code).map(|()| None)
        }
        (StateCall::Summary { .. }, ResponseKind::ReadShareGroupStateSummary(r)) => {
            let p = result_of(key, &r.results, |t| (t.topic_id, &t.partitions), |p| p.partition)?;
            error_of(p.error_code)?;
            Ok(from_summary(p))
        }
        _ => Err(E::UnknownServerError.code()),
    }
}

/// The result for `key`'s partition among a response's per-topic results (none: an error).
fn result_of<'a, T, P: 'a>(
    key: &ShareKey,
    topics: &'a [T],
    topic: impl Fn(&'a T) -> (uuid::Uuid, &'a Vec<P>),
    partition: impl Fn(&P) -> i32,
) -> Result<&'a P, i16> {
    let partitions = topics.iter().map(topic).filter(|(id, _)| *id == key.topic_id);
    let mut all = partitions.flat_map(|(_, partitions)| partitions.iter());
    all.find(|p| partition(p) == key.partition).ok_or(E::UnknownServerError.code())
}

/// The state a ReadShareGroupState partition result carries (`None`: no state, Kafka's start
/// offset -1 at state epoch 0; a start offset of -1 at a later state epoch was initialized
/// without one).
pub fn from_read(found: &read_resp::PartitionResult, leader_epoch: i32) -> Option<ShareState> {
    (found.start_offset >= 0 || found.state_epoch > 0).then(|| ShareState {
        snapshot: true,
        snapshot_epoch: 0,
        state_epoch: found.state_epoch,
        leader_epoch,
        start_offset: found.start_offset,
        batches: found
            .state_batches
            .iter()
            .map(|b| StateBatch {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                delivery_state: b.delivery_state,
                delivery_count: b.delivery_count,
            })
            .collect(),
    })
}

/// The state a ReadShareGroupStateSummary result carries, its v1 delivery-complete count as
/// one run (`None`: no state; see [`from_read`]).
pub fn from_summary(found: &summary_resp::PartitionResult) -> Option<ShareState> {
    (found.start_offset >= 0 || found.state_epoch > 0).then(|| ShareState {
        snapshot: true,
        snapshot_epoch: 0,
        state_epoch: found.state_epoch,
        leader_epoch: found.leader_epoch,
        start_offset: found.start_offset,
        batches: complete_run(found.start_offset, found.delivery_complete_count),
    })
}

/// The delivery-complete batches a summary stands for when only their count is known (from
/// another broker): one acknowledged run of `count` offsets from `start_offset`, so that
/// [`ShareState::delivery_complete_count`] gives `count` back.
fn complete_run(start_offset: i64, count: i32) -> Vec<StateBatch> {
    if start_offset < 0 || count <= 0 {
        return Vec::new();
    }
    let last_offset = start_offset.saturating_add(i64::from(count) - 1);
    vec![StateBatch {
        first_offset: start_offset,
        last_offset,
        delivery_state: STATE_ACKNOWLEDGED,
        delivery_count: 0,
    }]
}

/// A partition result's error code as a result.
fn error_of(code: i16) -> Result<(), i16> {
    match code {
        0 => Ok(()),
        code => Err(code),
    }
}

/// The WriteShareGroupState request writing `state` for `key`.
pub fn write_request(key: &ShareKey, state: &ShareState) -> WriteShareGroupStateRequest {
    let batches = state
        .batches
        .iter()
        .map(|b| {
            write_req::StateBatch::default()
                .with_first_offset(b.first_offset)
                .with_last_offset(b.last_offset)
                .with_delivery_state(b.delivery_state)
                .with_delivery_count(b.delivery_count)
        })
        .collect();
    let partition = write_req::PartitionData::default()
        .with_partition(key.partition)
        .with_state_epoch(state.state_epoch)
        .with_leader_epoch(state.leader_epoch)
        .with_start_offset(state.start_offset)
        .with_state_batches(batches);
    let topic = write_req::WriteStateData::default()
        .with_topic_id(key.topic_id)
        .with_partitions(vec![partition]);
    WriteShareGroupStateRequest::default()
        .with_group_id(str_bytes(&key.group))
        .with_topics(vec![topic])
}

/// What a coordinator knows of one share-partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Its latest state, `None` when it has none.
    pub state: Option<ShareState>,
    /// The highest leader epoch seen (-1: none).
    pub leader_epoch: i32,
}

impl Stored {
    /// What the state records `states` (in log order) leave.
    pub fn replayed(states: &[ShareState]) -> Stored {
        let leader_epoch = states.iter().map(|s| s.leader_epoch).max().unwrap_or(-1);
        // Initialized without a start offset (InitializeShareGroupState from -1), nothing
        // written since: kept as it is, the leader starts it at `share.auto.offset.reset`.
        if let Some(last) = states.last().filter(|s| s.snapshot && s.start_offset < 0) {
            let state = ShareState { leader_epoch, batches: Vec::new(), ..last.clone() };
            return Stored { state: Some(state), leader_epoch };
        }
        let state = super::share::replay(states, Default::default()).map(|(sp, snapshot_epoch)| {
            let state_epoch = states.iter().rev().find(|s| s.snapshot).map_or(0, |s| s.state_epoch);
            ShareState {
                snapshot: true,
                snapshot_epoch,
                state_epoch,
                leader_epoch,
                start_offset: sp.start_offset(),
                batches: sp.state_batches(),
            }
        });
        Stored { state, leader_epoch }
    }

    /// A read by the leader at `leader_epoch`: the stored state to record afterwards if the
    /// epoch is new (`Some`), or FENCED_LEADER_EPOCH.
    pub fn read(&mut self, leader_epoch: i32) -> Result<Option<ShareState>, i16> {
        if leader_epoch >= 0 && leader_epoch < self.leader_epoch {
            return Err(E::FencedLeaderEpoch.code());
        }
        if leader_epoch <= self.leader_epoch {
            return Ok(None);
        }
        self.leader_epoch = leader_epoch;
        Ok(self.state.as_mut().map(|s| {
            s.leader_epoch = leader_epoch;
            s.snapshot_epoch = s.snapshot_epoch.wrapping_add(1);
            s.clone()
        }))
    }

    /// The snapshot a write of `update` leaves (not yet applied), or why it is refused.
    pub fn write(&self, update: &ShareState) -> Result<ShareState, i16> {
        let stored = self.state.as_ref();
        if stored.is_some_and(|s| update.state_epoch < s.state_epoch) {
            return Err(E::FencedStateEpoch.code());
        }
        if update.leader_epoch >= 0 && update.leader_epoch < self.leader_epoch {
            return Err(E::FencedLeaderEpoch.code());
        }
        // A newer state epoch starts the state afresh, and so does a first write after an
        // initialization without a start offset.
        let base = stored.filter(|s| s.state_epoch == update.state_epoch && s.start_offset >= 0);
        if base.is_none() && update.start_offset < 0 {
            return Err(E::InvalidRequest.code());
        }
        let as_update = ShareState { snapshot: base.is_none(), ..update.clone() };
        let states: Vec<ShareState> = base.cloned().into_iter().chain([as_update]).collect();
        let merged = Stored::replayed(&states).state.ok_or(E::UnknownServerError.code())?;
        Ok(ShareState {
            snapshot: true,
            snapshot_epoch: stored.map_or(0, |s| s.snapshot_epoch.wrapping_add(1)),
            state_epoch: update.state_epoch,
            leader_epoch: update.leader_epoch.max(self.leader_epoch),
            ..merged
        })
    }

    /// The snapshot an InitializeShareGroupState at `state_epoch` from `start_offset` (-1:
    /// where `share.auto.offset.reset` says, when a leader loads it) leaves, or why it is
    /// refused: an older state epoch than the stored one is FENCED_STATE_EPOCH (Kafka's
    /// `ShareCoordinatorShard.initializeState`). It replaces the state (no batches) and keeps
    /// the highest leader epoch seen, so a deposed leader stays fenced.
    pub fn initialize(&self, state_epoch: i32, start_offset: i64) -> Result<ShareState, i16> {
        if start_offset < -1 {
            return Err(E::InvalidRequest.code());
        }
        let stored = self.state.as_ref();
        if stored.is_some_and(|s| state_epoch < s.state_epoch) {
            return Err(E::FencedStateEpoch.code());
        }
        Ok(ShareState {
            snapshot: true,
            snapshot_epoch: stored.map_or(0, |s| s.snapshot_epoch.wrapping_add(1)),
            state_epoch,
            leader_epoch: self.leader_epoch,
            start_offset,
            batches: Vec::new(),
        })
    }

    /// ReadShareGroupStateSummary by the leader at `leader_epoch` (-1: not a leader): the
    /// stored state with only its delivery-complete batches (what
    /// [`ShareState::delivery_complete_count`] counts), its leader epoch the highest seen;
    /// nothing is recorded. An older leader epoch than the highest seen is FENCED_LEADER_EPOCH.
    pub fn summary(&self, leader_epoch: i32) -> Result<Option<ShareState>, i16> {
        if leader_epoch >= 0 && leader_epoch < self.leader_epoch {
            return Err(E::FencedLeaderEpoch.code());
        }
        Ok(self.state.as_ref().map(|s| ShareState {
            batches: s.batches.iter().filter(|b| b.delivery_complete()).copied().collect(),
            leader_epoch: self.leader_epoch,
            ..s.clone()
        }))
    }
}

struct Cached {
    /// The state partition's leader epoch when this was loaded.
    partition_epoch: i32,
    stored: Stored,
}

/// The share coordinator of one shard. See the module docs.
#[derive(Default)]
pub struct StateStore {
    cache: RefCell<HashMap<ShareKey, Cached>>,
    locks: RefCell<HashMap<ShareKey, Rc<Semaphore>>>,
}

impl StateStore {
    fn lock_of(&self, key: &ShareKey) -> Rc<Semaphore> {
        let mut locks = self.locks.borrow_mut();
        locks.entry(key.clone()).or_insert_with(|| Rc::new(Semaphore::new(1))).clone()
    }

    /// ReadShareGroupState of `key` by its leader at `leader_epoch`, on the coordinator.
    pub async fn read(
        &self,
        shard: &Rc<Shard>,
        key: &ShareKey,
        leader_epoch: i32,
    ) -> Result<Option<ShareState>, i16> {
        let lock = self.lock_of(key);
        let _permit = lock.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        let partition = coordinated_here(shard, key)?;
        let mut stored = self.load(shard, key, partition).await?;
        if let Some(newer) = stored.read(leader_epoch)? {
            append(shard, key, partition, &newer).await?;
        }
        let state = stored.state.clone();
        self.keep(shard, key, partition, stored);
        Ok(state)
    }

    /// WriteShareGroupState of `update` for `key`, on the coordinator: answers once durable.
    pub async fn write(&self, shard: &Rc<Shard>, key: &ShareKey, update: &ShareState) -> i16 {
        let lock = self.lock_of(key);
        let Ok(_permit) = lock.acquire_permit(1).await else {
            return E::UnknownServerError.code();
        };
        let written = async {
            let partition = coordinated_here(shard, key)?;
            let mut stored = self.load(shard, key, partition).await?;
            let next = stored.write(update)?;
            append(shard, key, partition, &next).await?;
            stored.leader_epoch = next.leader_epoch;
            stored.state = Some(next);
            self.keep(shard, key, partition, stored);
            Ok::<(), i16>(())
        };
        written.await.err().unwrap_or(0)
    }

    /// InitializeShareGroupState of `key` on the coordinator (see [`Stored::initialize`]):
    /// answers once the new snapshot is durable.
    pub async fn initialize(
        &self,
        shard: &Rc<Shard>,
        key: &ShareKey,
        state_epoch: i32,
        start_offset: i64,
    ) -> i16 {
        let lock = self.lock_of(key);
        let Ok(_permit) = lock.acquire_permit(1).await else {
            return E::UnknownServerError.code();
        };
        let written = async {
            let partition = coordinated_here(shard, key)?;
            if !known_partition(shard, key) {
                return Err(E::UnknownTopicOrPartition.code());
            }
            let mut stored = self.load(shard, key, partition).await?;
            let next = stored.initialize(state_epoch, start_offset)?;
            append(shard, key, partition, &next).await?;
            stored.state = Some(next);
            self.keep(shard, key, partition, stored);
            Ok::<(), i16>(())
        };
        written.await.err().unwrap_or(0)
    }

    /// DeleteShareGroupState of `key` on the coordinator: appends its tombstone (acks=all)
    /// unless it has nothing stored, then forgets it here (cache and lock), so neither this
    /// coordinator nor a replay of the state partition knows it any more.
    pub async fn delete(&self, shard: &Rc<Shard>, key: &ShareKey) -> i16 {
        let lock = self.lock_of(key);
        let deleted = async {
            let _permit = lock.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
            let partition = coordinated_here(shard, key)?;
            let stored = self.load(shard, key, partition).await?;
            if stored.state.is_some() || stored.leader_epoch >= 0 {
                append_tombstone(shard, key, partition).await?;
            }
            self.cache.borrow_mut().remove(key);
            Ok::<(), i16>(())
        };
        let code = deleted.await.err().unwrap_or(0);
        // The lock goes too, unless another call holds or waits for it (this one and the
        // map's are the only references then).
        if Rc::strong_count(&lock) == 2 {
            self.locks.borrow_mut().remove(key);
        }
        code
    }

    /// ReadShareGroupStateSummary of `key` on the coordinator (see [`Stored::summary`]).
    pub async fn summary(
        &self,
        shard: &Rc<Shard>,
        key: &ShareKey,
        leader_epoch: i32,
    ) -> Result<Option<ShareState>, i16> {
        let lock = self.lock_of(key);
        let _permit = lock.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        let partition = coordinated_here(shard, key)?;
        let stored = self.load(shard, key, partition).await?;
        let summary = stored.summary(leader_epoch)?;
        self.keep(shard, key, partition, stored);
        Ok(summary)
    }

    /// What is stored of `key`: cached, or read from its state partition `partition`.
    async fn load(&self, shard: &Rc<Shard>, key: &ShareKey, partition: i32) -> Result<Stored, i16> {
        let epoch = partition_epoch(shard, partition);
        if let Some(c) = self.cache.borrow().get(key).filter(|c| c.partition_epoch == epoch) {
            return Ok(c.stored.clone());
        }
        let states = super::share::read_states(shard, key, partition).await?;
        Ok(Stored::replayed(&states))
    }

    fn keep(&self, shard: &Shard, key: &ShareKey, partition: i32, stored: Stored) {
        let partition_epoch = partition_epoch(shard, partition);
        self.cache.borrow_mut().insert(key.clone(), Cached { partition_epoch, stored });
    }
}

fn partition_epoch(shard: &Shard, partition: i32) -> i32 {
    shard.meta().partition(STATE_TOPIC, partition).map_or(-1, |p| p.leader_epoch)
}

/// Appends `state` of `key` to the state partition `partition` this shard owns, acks=all.
async fn append(
    shard: &Shard,
    key: &ShareKey,
    partition: i32,
    state: &ShareState,
) -> Result<(), i16> {
    let batch = crate::share::records::encode_batch(key, state, crate::group::now_ms());
    append_batch(shard, key, partition, batch).await
}

/// Appends the tombstone of `key` to the state partition `partition`, acks=all.
async fn append_tombstone(shard: &Shard, key: &ShareKey, partition: i32) -> Result<(), i16> {
    let batch = crate::share::records::encode_tombstone(key, crate::group::now_ms());
    append_batch(shard, key, partition, batch).await
}

async fn append_batch(
    shard: &Shard,
    key: &ShareKey,
    partition: i32,
    batch: Result<bytes::Bytes, String>,
) -> Result<(), i16> {
    let batch = batch.map_err(|e| {
        crate::log_limited!(ERROR, "encoding share state: {e}");
        E::UnknownServerError.code()
    })?;
    let acks = super::mesh::Acks { acks: -1, timeout_ms: super::share::WRITE_TIMEOUT_MS };
    let outcome = shard
        .append_local(STATE_TOPIC, partition, crate::storage::OwnedRecords::copied(&batch), acks)
        .outcome()
        .await;
    if outcome.error_code != 0 {
        crate::log_limited!(WARN, group = %key.group, partition = key.partition,
            code = outcome.error_code, "share state not written");
        return Err(outcome.error_code);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
