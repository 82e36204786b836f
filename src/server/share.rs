//! Share groups on one shard (KIP-932): the share groups it coordinates, the share-partitions
//! of the partitions it owns, and the share sessions of the connections it serves.
//!
//! * A share group lives on the shard coordinating its group id (the owner of its
//!   `__consumer_offsets` partition, as consumer groups). Its membership is the pure
//!   [`ShareGroup`]; members silent for `group.share.session.timeout.ms` are dropped whenever
//!   the group is touched (a heartbeat, a describe, a list).
//! * A share-partition lives on the shard owning the partition, so acquiring reads the log in
//!   place. On first use (and again when the partition's leader epoch moved: a slot left by
//!   an earlier leadership is stale) its state is read from its share coordinator, the leader
//!   of its `__share_group_state` partition, on this broker or another
//!   ([`super::share_state`]); when it has none it starts at `share.auto.offset.reset`.
//!   Every change of what must survive (acknowledgements, expired locks, released records)
//!   is written to the coordinator, the whole share-partition at the state epoch and leader
//!   epoch it was loaded at, before the acknowledgement is answered; writes of one
//!   share-partition are issued in state order (one at a time, under its write lock). A
//!   write fenced by a newer leader drops the share-partition here. An acquisition is not
//!   written: after a crash or a change of leader, records acquired but not acknowledged
//!   durably are delivered again, with the delivery count last written.
//! * Share sessions (ShareFetch/ShareAcknowledge session epochs, Kafka's ShareSessionCache)
//!   are kept per shard, keyed by group and member: a client that reconnects to another shard
//!   gets SHARE_SESSION_NOT_FOUND and opens a new session, as after a broker restart.
//!
//! A member whose session times out has its locks released at once on every shard (Kafka's
//! `SharePartition.releaseAcquiredRecords`): the coordinating shard notes it, then sends
//! [`ShareRequest::Release`] to every shard before it answers. A closing share session
//! releases its member's locks on the session's partitions (after its acknowledgements), and
//! so does the connection that opened it going away, as Kafka's share session cache does on
//! a disconnect; a member leaving with epoch -1 keeps them until then (its last
//! acknowledgements may still be on their way), or until they expire.
//!
//! A share group with `share.isolation.level` = `read_committed` reads the log as a
//! read_committed Fetch does (below the last stable offset, with the aborted transactions of
//! what was read); the markers and the aborted transactions' batches in a read are archived,
//! never acquired ([`crate::record_batch::AbortedFilter`], the client's filter).
//!
//! Lock expiry is lazy: every operation on a share-partition first expires its due locks, and a
//! waiting ShareFetch wakes at the earliest lock deadline of its partitions.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;
use glommio::sync::Semaphore;

use super::mesh::{FetchItem, OffsetQuery, PartitionRef, ShardMsg};
use super::peer::PeerPool;
use super::shard::Shard;
use super::share_state::{self, StateCall, StateHome, StateStore};
use crate::controller::group_config::{self, GroupSettings};
use crate::group::share_meta::SharePartitions;
use crate::protocol::ResponseError as E;
use crate::record_batch::AbortedFilter;
use crate::share::group::{Heartbeat, HeartbeatError, HeartbeatReply, ShareGroup};
use crate::share::partition::{AckError, AckType, Acquired, Limits, Read, SharePartition};
use crate::share::records::{self, ShareKey, ShareState};
use crate::share::{GROUP_MEMBERS_MAX, STATE_TOPIC};
use crate::storage::AbortedTxn;

mod meta;

/// Share sessions one shard holds (Kafka's `group.share.max.share.sessions` default).
pub const SESSIONS_MAX: usize = 2_000;
/// Bytes of `__share_group_state` read per round while loading a share-partition.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long a state write may wait for the in-sync replicas.
pub(super) const WRITE_TIMEOUT_MS: i32 = 30_000;
/// Reads of the log one acquisition makes at most, when reads hold only records never
/// delivered (markers, aborted transactions).
const READS_MAX: usize = 8;

/// One read for an acquisition.
#[derive(Clone, Copy, Debug)]
struct ReadOp {
    from: i64,
    max_bytes: usize,
    max_records: usize,
    read_committed: bool,
}

/// A share-partition: group, topic, partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpKey {
    /// Share group id.
    pub group: String,
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
}

/// One acknowledgement batch of a request.
#[derive(Clone, Debug)]
pub struct AckBatch {
    /// First offset.
    pub first_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// One type, or one per offset.
    pub types: Vec<i8>,
    /// The request's version knows the Renew type (ShareFetch and ShareAcknowledge v2+,
    /// KIP-1222); an older one carrying it is INVALID_REQUEST, as Kafka answers.
    pub renew_allowed: bool,
}

impl AckBatch {
    /// Whether the batch carries a Renew, and only Renews (it changes nothing persisted).
    fn renews(&self) -> (bool, bool) {
        let renew = |t: &i8| AckType::from_wire(*t) == Some(AckType::Renew);
        (self.types.iter().any(renew), self.types.iter().all(renew))
    }
}

/// What to do on one share-partition (on the shard owning the partition).
#[derive(Clone, Debug)]
pub struct PartitionOp {
    /// The share-partition.
    pub key: SpKey,
    /// Its topic's id (the key of its state records).
    pub topic_id: uuid::Uuid,
    /// The member asking.
    pub member: String,
    /// Acknowledgements to apply first.
    pub acks: Vec<AckBatch>,
    /// Release every lock of the member (its share session closed).
    pub release: bool,
    /// Acquire and return records: (max bytes, max records).
    pub fetch: Option<(usize, usize)>,
}

/// What an operation on one share-partition gave.
#[derive(Clone, Debug, Default)]
pub struct PartitionResult {
    /// Error of the fetch (0: none).
    pub error_code: i16,
    /// Error of the acknowledgements (0: all applied and durable).
    pub ack_error_code: i16,
    /// Whole batches holding the acquired records (and maybe others, which clients skip).
    pub records: Bytes,
    /// The acquired runs.
    pub acquired: Vec<Acquired>,
    /// The partition's high watermark, -1 if unknown.
    pub high_watermark: i64,
    /// The earliest lock deadline of the share-partition, if any.
    pub next_deadline_ms: Option<i64>,
}

/// One share-partition as describe and the CLI show it.
#[derive(Clone, Debug, Default)]
pub struct PartitionInfo {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Share-partition start offset.
    pub start_offset: i64,
    /// Share-partition end offset.
    pub end_offset: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// In flight: available, acquired, acknowledged, archived.
    pub counts: (usize, usize, usize, usize),
}

/// A share request that crosses the shard mesh.
#[derive(Clone, Debug)]
pub enum ShareRequest {
    /// ShareGroupHeartbeat, on the coordinating shard.
    Heartbeat {
        /// Group id.
        group: String,
        /// The heartbeat.
        hb: Heartbeat,
    },
    /// ShareGroupDescribe, on the coordinating shard.
    Describe {
        /// Group id.
        group: String,
    },
    /// ListGroups: this shard's share groups.
    List,
    /// DeleteGroups of an empty share group, on the coordinating shard: answers
    /// [`ShareReply::Reset`] (NON_EMPTY_GROUP while it has members).
    DeleteGroup {
        /// Group id.
        group: String,
    },
    /// Whether a share group holds this id, on the coordinating shard.
    Exists {
        /// Group id.
        group: String,
    },
    /// ShareFetch/ShareAcknowledge of one share-partition, on the partition's owner.
    Partition(PartitionOp),
    /// The share-partitions on this shard (of `group`, or all).
    States {
        /// Group id, or every group.
        group: Option<String>,
    },
    /// Release every lock `members` of `group` hold on this shard's share-partitions.
    Release {
        /// Group id.
        group: String,
        /// Members that timed out.
        members: Vec<String>,
    },
    /// Alter (`Some`: move the start offset) or delete (`None`) one share-partition's state.
    Reset {
        /// The share-partition.
        key: SpKey,
        /// Its topic's id.
        topic_id: uuid::Uuid,
        /// New start offset and the least state epoch to initialize it at (the group's
        /// epoch), or delete.
        start_offset: Option<(i64, i32)>,
    },
    /// ReadShareGroupState, on the share coordinator (see [`share_state`]).
    ReadState {
        /// The share-partition.
        key: ShareKey,
        /// The reading leader's epoch (-1: not a leader).
        leader_epoch: i32,
    },
    /// WriteShareGroupState, on the share coordinator.
    WriteState {
        /// The share-partition.
        key: ShareKey,
        /// What to merge into its state.
        state: ShareState,
    },
    /// InitializeShareGroupState, on the share coordinator: answers [`ShareReply::Written`].
    InitState {
        /// The share-partition.
        key: ShareKey,
        /// The new state epoch.
        state_epoch: i32,
        /// The new start offset (-1: `share.auto.offset.reset`).
        start_offset: i64,
    },
    /// DeleteShareGroupState, on the share coordinator: answers [`ShareReply::Written`].
    DeleteState {
        /// The share-partition.
        key: ShareKey,
    },
    /// ReadShareGroupStateSummary, on the share coordinator: answers [`ShareReply::State`]
    /// without batches.
    ReadSummary {
        /// The share-partition.
        key: ShareKey,
        /// The reading leader's epoch (-1: not a leader).
        leader_epoch: i32,
    },
    /// AlterShareGroupOffsets on the coordinating shard, as Kafka since KAFKA-20910: bumps
    /// the group's epoch and records it; answers [`ShareReply::Epoch`] with the new epoch,
    /// the state epoch of the share-partitions it then initializes.
    BumpEpoch {
        /// Group id.
        group: String,
    },
    /// The group's ShareGroupStatePartitionMetadata record, after applying `change` to it
    /// (`None`: read it), on the coordinating shard: answers [`ShareReply::Meta`].
    Meta {
        /// Group id.
        group: String,
        /// What to change.
        change: Option<MetaChange>,
    },
}

/// A change of a share group's ShareGroupStatePartitionMetadata record ([`meta`]).
#[derive(Clone, Debug)]
pub enum MetaChange {
    /// Partitions of a topic are being initialized (AlterShareGroupOffsets).
    Initializing {
        /// Topic id.
        topic_id: uuid::Uuid,
        /// Topic name.
        name: String,
        /// The partitions.
        partitions: Vec<i32>,
    },
    /// Partitions of a topic were initialized (AlterShareGroupOffsets).
    Initialized {
        /// Topic id.
        topic_id: uuid::Uuid,
        /// Topic name.
        name: String,
        /// The partitions.
        partitions: Vec<i32>,
    },
    /// The state of these topics (id, name) is about to be deleted.
    Deleting(Vec<(uuid::Uuid, String)>),
    /// The state of these topics is deleted.
    Deleted(Vec<uuid::Uuid>),
}

/// The answer to a [`ShareRequest`].
#[derive(Clone, Debug)]
pub enum ShareReply {
    /// Heartbeat: the reply, or an error code.
    Heartbeat(Result<HeartbeatReply, i16>),
    /// Describe: the group, or an error code.
    Describe(Result<Box<ShareGroup>, i16>),
    /// List: group ids and states.
    List(Vec<(String, &'static str)>),
    /// Partition.
    Partition(PartitionResult),
    /// States.
    States(Vec<PartitionInfo>),
    /// Reset: error code.
    Reset(i16),
    /// Release: done.
    Released,
    /// Exists: whether it does.
    Exists(bool),
    /// ReadState, ReadSummary: the state (`None`: none yet), or an error code.
    State(Result<Option<ShareState>, i16>),
    /// WriteState, InitState, DeleteState: error code.
    Written(i16),
    /// Meta: the record after the change, or an error code.
    Meta(Result<SharePartitions, i16>),
    /// BumpEpoch: the group's new epoch, or an error code.
    Epoch(Result<i32, i16>),
}

struct Slot {
    sp: SharePartition,
    topic_id: uuid::Uuid,
    /// The state epoch it was loaded at (bumped by a reset).
    state_epoch: i32,
    /// The partition's leader epoch it was loaded at: a slot of an older epoch is stale.
    leader_epoch: i32,
    /// Held while a state write is issued, so writes land in state order.
    write: Rc<Semaphore>,
}

struct Session {
    next_epoch: i32,
    partitions: BTreeSet<(uuid::Uuid, i32)>,
    /// Which opening this is ([`Shares::session_token`]): a connection that opened an
    /// earlier one does not close this one when it goes away.
    token: u64,
}

/// The share state of one shard. See the module docs.
pub struct Shares {
    groups: RefCell<HashMap<String, ShareGroup>>,
    partitions: RefCell<HashMap<SpKey, Slot>>,
    sessions: RefCell<HashMap<(String, String), Session>>,
    /// The token of the next share session opened here.
    next_token: std::cell::Cell<u64>,
    /// Members (group, member) that timed out here, whose locks are not yet released.
    left: RefCell<Vec<(String, String)>>,
    /// One share-partition loads at a time (a second request for it waits, then finds it).
    load: Semaphore,
    /// One change of the share groups' ShareGroupStatePartitionMetadata records at a time
    /// (with the share-partition initializations it records, see [`meta`]).
    meta: Semaphore,
    /// One write of the share groups' ShareGroupMetadata records at a time, so a recorded
    /// epoch only goes up.
    epochs: Semaphore,
    /// The share coordinator of the `__share_group_state` partitions this shard owns.
    store: StateStore,
    /// Connections to other brokers' share coordinators.
    pub(super) peers: PeerPool,
}

impl Default for Shares {
    fn default() -> Self {
        Shares::new()
    }
}

/// Wall-clock milliseconds.
fn now_ms() -> i64 {
    crate::group::now_ms()
}

/// The settings of group `group`: the broker's, overridden by the group's configs.
pub fn group_settings(shard: &Shard, group: &str) -> GroupSettings {
    group_config::effective(&shard.settings(), shard.meta().group_layer(group))
}

fn limits_of(shard: &Shard, group: &str) -> Limits {
    let s = shard.settings();
    let g = group_settings(shard, group);
    Limits {
        lock_duration_ms: i64::try_from(g.share_record_lock_duration_ms).unwrap_or(30_000),
        delivery_count_limit: i16::try_from(g.share_delivery_count_limit).unwrap_or(5),
        max_record_locks: s.share.partition_max_record_locks as usize,
    }
}

impl Shares {
    /// No groups, partitions or sessions.
    pub fn new() -> Shares {
        Shares {
            groups: RefCell::new(HashMap::new()),
            partitions: RefCell::new(HashMap::new()),
            sessions: RefCell::new(HashMap::new()),
            next_token: std::cell::Cell::new(1),
            left: RefCell::new(Vec::new()),
            load: Semaphore::new(1),
            meta: Semaphore::new(1),
            epochs: Semaphore::new(1),
            store: StateStore::default(),
            peers: PeerPool::new("share"),
        }
    }

    /// Runs a share request on this shard.
    pub async fn handle(&self, shard: &Rc<Shard>, request: ShareRequest) -> ShareReply {
        match request {
            ShareRequest::Heartbeat { group, hb } => {
                let mut reply = self.heartbeat(shard, &group, &hb);
                // The new epoch is durable before the member hears of it (Kafka writes
                // ShareGroupMetadata with every bump).
                if let Err(code) = self.record_epochs(shard, Some(&group)).await {
                    reply = reply.and(Err(code));
                }
                if reply.is_ok() {
                    self.initialize_subscribed(shard, &group).await;
                }
                self.release_left(shard).await;
                ShareReply::Heartbeat(reply)
            }
            ShareRequest::Describe { group } => {
                let reply = self.describe(shard, &group);
                let _ = self.record_epochs(shard, Some(&group)).await;
                self.release_left(shard).await;
                ShareReply::Describe(reply)
            }
            ShareRequest::List => {
                let reply = self.list(shard);
                let _ = self.record_epochs(shard, None).await;
                self.release_left(shard).await;
                ShareReply::List(reply)
            }
            ShareRequest::Exists { group } => {
                ShareReply::Exists(self.is_share_group(shard, &group))
            }
            ShareRequest::DeleteGroup { group } => {
                let code = self.delete_group(shard, &group);
                let code = self.forget_epoch(shard, &group, code).await;
                self.release_left(shard).await;
                ShareReply::Reset(code)
            }
            ShareRequest::BumpEpoch { group } => {
                ShareReply::Epoch(self.bump_epoch(shard, &group).await)
            }
            ShareRequest::Release { group, members } => {
                self.release(shard, &group, &members).await;
                ShareReply::Released
            }
            ShareRequest::Partition(op) => {
                ShareReply::Partition(self.partition_op(shard, op).await)
            }
            ShareRequest::States { group } => {
                ShareReply::States(self.states(shard, group.as_deref()).await)
            }
            ShareRequest::Reset { key, topic_id, start_offset } => {
                ShareReply::Reset(self.reset(shard, key, topic_id, start_offset).await)
            }
            ShareRequest::ReadState { key, leader_epoch } => {
                ShareReply::State(self.store.read(shard, &key, leader_epoch).await)
            }
            ShareRequest::WriteState { key, state } => {
                ShareReply::Written(self.store.write(shard, &key, &state).await)
            }
            ShareRequest::InitState { key, state_epoch, start_offset } => {
                let code = self.store.initialize(shard, &key, state_epoch, start_offset).await;
                ShareReply::Written(code)
            }
            ShareRequest::DeleteState { key } => {
                ShareReply::Written(self.store.delete(shard, &key).await)
            }
            ShareRequest::ReadSummary { key, leader_epoch } => {
                ShareReply::State(self.store.summary(shard, &key, leader_epoch).await)
            }
            ShareRequest::Meta { group, change } => {
                ShareReply::Meta(self.change_meta(shard, &group, change).await)
            }
        }
    }

    fn partitions_of(shard: &Shard) -> impl Fn(&str) -> Option<i32> {
        let meta = shard.meta();
        move |topic: &str| meta.topics.get(topic).map(|t| t.partitions.len() as i32)
    }

    fn expire_members(&self, shard: &Shard, group: &mut ShareGroup) {
        let timeout = group_settings(shard, &group.id).share_session_timeout_ms;
        let timeout = i64::try_from(timeout).unwrap_or(45_000);
        let gone = group.expire(now_ms(), timeout, &Self::partitions_of(shard));
        for member in gone {
            tracing::info!(group = %group.id, member = %member, "share group member timed out");
            self.left.borrow_mut().push((group.id.clone(), member));
        }
    }

    /// Releases, on every shard, the locks of the members noted in `left`.
    async fn release_left(&self, shard: &Rc<Shard>) {
        let left = std::mem::take(&mut *self.left.borrow_mut());
        let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
        for (group, member) in left {
            by_group.entry(group).or_default().push(member);
        }
        for (group, members) in by_group {
            let calls = (0..shard.count).map(|owner| {
                let request =
                    ShareRequest::Release { group: group.clone(), members: members.clone() };
                // Boxed: `call` runs `handle` again (on this shard or another one).
                let call: futures::future::LocalBoxFuture<'_, Option<ShareReply>> =
                    Box::pin(call(shard, owner, request));
                call
            });
            for (owner, reply) in futures::future::join_all(calls).await.into_iter().enumerate() {
                if reply.is_none() {
                    crate::log_limited!(WARN, group = %group, owner,
                        "share locks of departed members not released; they expire instead");
                }
            }
        }
    }

    /// Releases the locks `members` of `group` hold on this shard's share-partitions and
    /// writes the share-partitions that changed.
    async fn release(&self, shard: &Rc<Shard>, group: &str, members: &[String]) {
        let changed: Vec<SpKey> = {
            let mut parts = self.partitions.borrow_mut();
            parts
                .iter_mut()
                .filter(|(key, _)| key.group == group)
                .filter_map(|(key, slot)| {
                    let mut dirty = false;
                    for m in members {
                        dirty |= !slot.sp.release_member(m).is_empty();
                    }
                    dirty.then(|| key.clone())
                })
                .collect()
        };
        for key in changed {
            if let Err(code) = self.persist(shard, &key).await {
                crate::log_limited!(WARN, group, topic = %key.topic, partition = key.partition,
                    code, "released share locks not written; a restart may deliver them again");
            }
        }
    }

    /// Share group `id` of `groups`, put there first when it is not in memory: it carries
    /// on from its recorded epoch (after a restart). GROUP_ID_NOT_FOUND when a classic or
    /// consumer group holds the id (as Kafka).
    fn group_in<'a>(
        &self,
        groups: &'a mut HashMap<String, ShareGroup>,
        shard: &Shard,
        id: &str,
    ) -> Result<&'a mut ShareGroup, i16> {
        if !groups.contains_key(id) {
            if shard.groups.has_group(id) {
                return Err(E::GroupIdNotFound.code());
            }
            let recorded = self.recorded_epoch(shard, id)?.unwrap_or(0);
            groups.insert(id.to_owned(), ShareGroup::restored(id, GROUP_MEMBERS_MAX, recorded));
        }
        groups.get_mut(id).ok_or(E::GroupIdNotFound.code())
    }

    fn heartbeat(&self, shard: &Shard, id: &str, hb: &Heartbeat) -> Result<HeartbeatReply, i16> {
        let mut groups = self.groups.borrow_mut();
        let group = self.group_in(&mut groups, shard, id)?;
        self.expire_members(shard, group);
        // A member leaving with epoch -1 keeps its locks: its client's last acknowledgements
        // may still be on their way (librdkafka sends them alongside the leave), and closing
        // its share session releases the rest, as Kafka's `releaseSession` does.
        let reply = group.heartbeat(hb, now_ms(), &Self::partitions_of(shard));
        let empty_and_new = group.members.is_empty() && group.epoch == 0;
        if empty_and_new {
            groups.remove(id);
        }
        reply.map_err(|e| match e {
            HeartbeatError::Invalid => E::InvalidRequest.code(),
            HeartbeatError::UnknownMember => E::UnknownMemberId.code(),
            HeartbeatError::FencedEpoch => E::FencedMemberEpoch.code(),
            HeartbeatError::Full => {
                crate::refused!(WARN, "share_group_max_size", group = id, "share group full");
                E::GroupMaxSizeReached.code()
            }
        })
    }

    /// Removes share group `id` unless it has members (NON_EMPTY_GROUP) or does not exist.
    fn delete_group(&self, shard: &Shard, id: &str) -> i16 {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(id) else { return E::GroupIdNotFound.code() };
        self.expire_members(shard, group);
        if !group.members.is_empty() {
            return E::NonEmptyGroup.code();
        }
        groups.remove(id);
        tracing::info!(group = id, "share group deleted");
        0
    }

    /// Whether share group `id` exists on this shard: with members or used since the start,
    /// or known by its ShareGroupMetadata or ShareGroupStatePartitionMetadata record (an empty
    /// group after a restart, as Kafka keeps it).
    pub fn is_share_group(&self, shard: &Shard, id: &str) -> bool {
        self.groups.borrow().contains_key(id) || self.recorded(shard, id)
    }

    fn describe(&self, shard: &Shard, id: &str) -> Result<Box<ShareGroup>, i16> {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(id) else {
            if self.recorded(shard, id) {
                let epoch = self.recorded_epoch(shard, id).ok().flatten().unwrap_or(0);
                return Ok(Box::new(ShareGroup::restored(id, GROUP_MEMBERS_MAX, epoch)));
            }
            return Err(E::GroupIdNotFound.code());
        };
        self.expire_members(shard, group);
        Ok(Box::new(group.clone()))
    }

    fn list(&self, shard: &Shard) -> Vec<(String, &'static str)> {
        let mut groups = self.groups.borrow_mut();
        let mut out: Vec<(String, &'static str)> = groups
            .values_mut()
            .map(|g| {
                self.expire_members(shard, g);
                (g.id.clone(), g.state())
            })
            .collect();
        for id in shard.groups.share_groups_recorded() {
            if !groups.contains_key(&id) {
                out.push((id, "Empty"));
            }
        }
        out
    }

    /// Opens, checks or closes the share session of `member` for a request with `epoch`;
    /// adds and forgets partitions. Returns the session's partitions, or the error code.
    pub fn session(
        &self,
        group: &str,
        member: &str,
        epoch: i32,
        add: &[(uuid::Uuid, i32)],
        forget: &[(uuid::Uuid, i32)],
    ) -> Result<Vec<(uuid::Uuid, i32)>, E> {
        let key = (group.to_owned(), member.to_owned());
        let mut sessions = self.sessions.borrow_mut();
        if epoch == 0 {
            if !sessions.contains_key(&key) && sessions.len() >= SESSIONS_MAX {
                crate::refused!(WARN, "share_session_limit", group, "share session cache full");
                return Err(E::ShareSessionLimitReached);
            }
            let partitions: BTreeSet<_> = add.iter().copied().collect();
            let out = partitions.iter().copied().collect();
            let token = self.next_token.get();
            self.next_token.set(token.wrapping_add(1));
            sessions.insert(key, Session { next_epoch: 1, partitions, token });
            return Ok(out);
        }
        let Some(session) = sessions.get_mut(&key) else {
            return Err(E::ShareSessionNotFound);
        };
        if epoch == -1 {
            let out = session.partitions.iter().copied().collect();
            sessions.remove(&key);
            return Ok(out);
        }
        if epoch != session.next_epoch {
            return Err(E::InvalidShareSessionEpoch);
        }
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.partitions.extend(add.iter().copied());
        for f in forget {
            session.partitions.remove(f);
        }
        Ok(session.partitions.iter().copied().collect())
    }

    /// The token of `member`'s open share session, to close it when the connection that
    /// opened it goes away ([`Shares::close_session`]).
    pub fn session_token(&self, group: &str, member: &str) -> Option<u64> {
        let key = (group.to_owned(), member.to_owned());
        self.sessions.borrow().get(&key).map(|s| s.token)
    }

    /// Closes `member`'s share session if it is still the opening `token` (its connection
    /// went away); returns its partitions, whose locks the member then releases.
    pub fn close_session(&self, group: &str, member: &str, token: u64) -> Vec<(uuid::Uuid, i32)> {
        let key = (group.to_owned(), member.to_owned());
        let mut sessions = self.sessions.borrow_mut();
        if sessions.get(&key).is_none_or(|s| s.token != token) {
            return Vec::new();
        }
        let closed = sessions.remove(&key);
        closed.map(|s| s.partitions.into_iter().collect()).unwrap_or_default()
    }

    async fn partition_op(&self, shard: &Rc<Shard>, op: PartitionOp) -> PartitionResult {
        let failed = |code: i16| PartitionResult {
            error_code: code,
            ack_error_code: if op.acks.is_empty() { 0 } else { code },
            high_watermark: -1,
            ..PartitionResult::default()
        };
        if let Err(code) = self.ensure_loaded(shard, &op.key, op.topic_id).await {
            return failed(code);
        }
        let now = now_ms();
        let limits = limits_of(shard, &op.key.group);
        let (mut ack_error, dirty) = {
            let mut parts = self.partitions.borrow_mut();
            let Some(slot) = parts.get_mut(&op.key) else {
                return failed(E::CoordinatorLoadInProgress.code());
            };
            // A group config may have changed the lock duration since the last operation.
            slot.sp.set_limits(limits);
            let mut dirty = !slot.sp.expire(now).is_empty();
            let mut error = 0;
            for ack in &op.acks {
                let (renews, renews_only) = ack.renews();
                if renews && !ack.renew_allowed {
                    error = E::InvalidRequest.code();
                    continue;
                }
                let (first, last) = (ack.first_offset, ack.last_offset);
                match slot.sp.acknowledge(&op.member, first, last, &ack.types, now) {
                    // A renew only moves a lock deadline, which is never persisted.
                    Ok(_) if renews_only => {}
                    Ok(_) => dirty = true,
                    Err(AckError::Invalid) => error = E::InvalidRequest.code(),
                    Err(AckError::NotAcquired) => error = E::InvalidRecordState.code(),
                }
            }
            if op.release && !slot.sp.release_member(&op.member).is_empty() {
                dirty = true;
            }
            (error, dirty)
        };
        if dirty {
            if let Err(code) = self.persist(shard, &op.key).await {
                ack_error = code;
            }
        }
        let mut result = PartitionResult { ack_error_code: ack_error, ..Default::default() };
        if let Some((max_bytes, max_records)) = op.fetch {
            self.acquire(shard, &op, max_bytes, max_records, &mut result).await;
        }
        result.next_deadline_ms =
            self.partitions.borrow().get(&op.key).and_then(|s| s.sp.next_deadline_ms());
        result
    }

    /// Reads from the next fetch offset and acquires what the read returned; reads again (up
    /// to [`READS_MAX`] times) while a read held only records never delivered, so a
    /// read_committed fetch does not wait out `max_wait_ms` behind an aborted transaction.
    async fn acquire(
        &self,
        shard: &Rc<Shard>,
        op: &PartitionOp,
        max_bytes: usize,
        max_records: usize,
        result: &mut PartitionResult,
    ) {
        let read_committed = group_settings(shard, &op.key.group).share_read_committed;
        let next = || self.partitions.borrow().get(&op.key).and_then(|s| s.sp.next_fetch_offset());
        for _ in 0..READS_MAX {
            let before = next();
            let Some(from) = before else {
                result.high_watermark = -1;
                return;
            };
            let read = ReadOp { from, max_bytes, max_records, read_committed };
            self.acquire_once(shard, op, read, result).await;
            let progressed = next().is_some_and(|after| after > from);
            if !result.acquired.is_empty() || result.error_code != 0 || !progressed {
                return;
            }
        }
    }

    /// One read of [`Shares::acquire`], from `read.from`.
    async fn acquire_once(
        &self,
        shard: &Rc<Shard>,
        op: &PartitionOp,
        read: ReadOp,
        result: &mut PartitionResult,
    ) {
        let partition = PartitionRef { topic: op.key.topic.clone(), partition: op.key.partition };
        let item = FetchItem {
            partition,
            offset: read.from,
            max_bytes: read.max_bytes,
            read_committed: read.read_committed,
            current_leader_epoch: -1,
            replica: None,
            follower_read: false,
            client_rack: None,
            offsets_only: false,
            within_max_bytes: false,
        };
        let outcome = shard.read_local(item).await;
        result.high_watermark = outcome.high_watermark;
        if outcome.error_code == E::OffsetOutOfRange.code() {
            // Retention moved the log's start past records never delivered.
            let mut parts = self.partitions.borrow_mut();
            if let Some(slot) = parts.get_mut(&op.key) {
                slot.sp.move_start(outcome.log_start_offset);
            }
            return;
        }
        if outcome.error_code != 0 {
            result.error_code = outcome.error_code;
            return;
        }
        let Some(end) = batches_end(&outcome.records) else { return };
        // read_committed: the read stopped below the last stable offset, and the markers
        // and aborted transactions in it are archived, never delivered (Kafka 4.1).
        let (visible_end, archive) = if read.read_committed {
            let aborted = outcome.aborted.as_deref().unwrap_or_default();
            (outcome.last_stable_offset, unreadable(&outcome.records, aborted))
        } else {
            (outcome.high_watermark, Vec::new())
        };
        let to = end.min(visible_end.max(0));
        let runs = {
            let mut parts = self.partitions.borrow_mut();
            let Some(slot) = parts.get_mut(&op.key) else { return };
            let log = Read { from: read.from, to, archive: &archive };
            slot.sp.acquire_read(&op.member, &log, read.max_records, now_ms())
        };
        if let Some(last) = runs.last().map(|r| r.last_offset) {
            result.records = trim_after(outcome.records, last);
            result.acquired = runs;
        }
    }

    /// Writes the share-partition's state to its share coordinator and waits until durable.
    /// The write lock is held until then, so writes land in state order. A fenced write
    /// (another leader took over) drops the share-partition: the next use loads it again.
    async fn persist(&self, shard: &Rc<Shard>, key: &SpKey) -> Result<(), i16> {
        let lock = match self.partitions.borrow().get(key) {
            Some(slot) => slot.write.clone(),
            None => return Err(E::CoordinatorLoadInProgress.code()),
        };
        let _permit = lock.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        let (share_key, state) = {
            let parts = self.partitions.borrow();
            let slot = parts.get(key).ok_or(E::CoordinatorLoadInProgress.code())?;
            let share_key = ShareKey {
                group: key.group.clone(),
                topic_id: slot.topic_id,
                partition: key.partition,
            };
            let state = ShareState {
                snapshot: true,
                snapshot_epoch: 0,
                state_epoch: slot.state_epoch,
                leader_epoch: slot.leader_epoch,
                start_offset: slot.sp.start_offset(),
                batches: slot.sp.state_batches(),
            };
            (share_key, state)
        };
        let written = on_state_coordinator(shard, &share_key, StateCall::Write(&state)).await;
        let Err(code) = written else { return Ok(()) };
        crate::log_limited!(WARN, group = %key.group, topic = %key.topic,
            partition = key.partition, code, "share state not written");
        let fenced = [E::FencedLeaderEpoch.code(), E::FencedStateEpoch.code()];
        if fenced.contains(&code) {
            self.partitions.borrow_mut().remove(key);
        }
        Err(code)
    }

    /// Drops this shard's share-partitions of the `deleted` topics (by id), so a topic
    /// created again under the same name starts at `share.auto.offset.reset`.
    pub fn drop_topics(&self, deleted: &BTreeSet<uuid::Uuid>) {
        self.partitions.borrow_mut().retain(|key, slot| {
            let gone = deleted.contains(&slot.topic_id);
            if gone {
                tracing::info!(group = %key.group, topic = %key.topic, partition = key.partition,
                    "share-partition of a deleted topic dropped");
            }
            !gone
        });
    }

    /// Loads the share-partition `key` unless it is loaded at the partition's leader epoch
    /// (a slot of an older one was left by an earlier leadership of this broker: stale).
    async fn ensure_loaded(
        &self,
        shard: &Rc<Shard>,
        key: &SpKey,
        topic_id: uuid::Uuid,
    ) -> Result<(), i16> {
        let leader_epoch = leader_epoch_of(shard, &key.topic, key.partition);
        // A slot of another topic id is of a deleted topic of that name: stale too.
        let current = || {
            let parts = self.partitions.borrow();
            parts.get(key).is_some_and(|s| s.leader_epoch == leader_epoch && s.topic_id == topic_id)
        };
        if current() {
            return Ok(());
        }
        let _permit =
            self.load.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        if current() {
            return Ok(());
        }
        self.partitions.borrow_mut().remove(key);
        let share_key = ShareKey { group: key.group.clone(), topic_id, partition: key.partition };
        let stored = on_state_coordinator(shard, &share_key, StateCall::Read { leader_epoch });
        let stored = stored.await?;
        let limits = limits_of(shard, &key.group);
        let partition = PartitionRef { topic: key.topic.clone(), partition: key.partition };
        let log_start = local_offset(shard, &partition, -2, false).await?;
        // No state, or initialized without a start offset: `share.auto.offset.reset`, at
        // the stored state epoch.
        let started = stored.as_ref().filter(|s| s.start_offset >= 0);
        let replayed = started.and_then(|s| replay(std::slice::from_ref(s), limits));
        let state_epoch = stored.as_ref().map_or(0, |s| s.state_epoch);
        let sp = match replayed {
            Some((mut sp, _)) => {
                sp.move_start(log_start);
                sp
            }
            None => SharePartition::new(reset_offset(shard, &key.group, &partition).await?, limits),
        };
        tracing::info!(group = %key.group, topic = %key.topic, partition = key.partition,
            start_offset = sp.start_offset(), leader_epoch, "share-partition loaded");
        let write = Rc::new(Semaphore::new(1));
        let slot = Slot { sp, topic_id, state_epoch, leader_epoch, write };
        self.partitions.borrow_mut().insert(key.clone(), slot);
        Ok(())
    }

    async fn states(&self, shard: &Rc<Shard>, group: Option<&str>) -> Vec<PartitionInfo> {
        let keys: Vec<SpKey> = self
            .partitions
            .borrow()
            .keys()
            .filter(|k| group.is_none_or(|g| g == k.group))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let partition = PartitionRef { topic: key.topic.clone(), partition: key.partition };
            let high_watermark = local_offset(shard, &partition, -1, false).await.unwrap_or(-1);
            let mut parts = self.partitions.borrow_mut();
            let Some(slot) = parts.get_mut(&key) else { continue };
            slot.sp.expire(now_ms());
            out.push(PartitionInfo {
                group: key.group.clone(),
                topic: key.topic.to_string(),
                partition: key.partition,
                start_offset: slot.sp.start_offset(),
                end_offset: slot.sp.end_offset(),
                high_watermark,
                counts: slot.sp.counts(),
            });
        }
        out
    }

    /// Alters or deletes a share-partition's state on its share coordinator, as Kafka's group
    /// coordinator does: AlterShareGroupOffsets initializes it at `start_offset` with the
    /// group's bumped epoch (InitializeShareGroupState; the stored state epoch + 1 if that is
    /// higher, so a state written before group epochs were recorded is not fenced),
    /// DeleteShareGroupOffsets (`None`)
    /// deletes it (DeleteShareGroupState; the next use starts at `share.auto.offset.reset`).
    /// Runs on the partition's owner, which then drops the share-partition it holds, so the
    /// next use loads the new state. The group must have no members (checked by the caller
    /// on the group's coordinator). Writes of the share-partition are held off meanwhile.
    async fn reset(
        &self,
        shard: &Rc<Shard>,
        key: SpKey,
        topic_id: uuid::Uuid,
        start_offset: Option<(i64, i32)>,
    ) -> i16 {
        let share_key = ShareKey { group: key.group.clone(), topic_id, partition: key.partition };
        let _load = match self.load.acquire_permit(1).await {
            Ok(permit) => permit,
            Err(_) => return E::UnknownServerError.code(),
        };
        let write = self.partitions.borrow().get(&key).map(|slot| slot.write.clone());
        let _write = match &write {
            Some(lock) => match lock.acquire_permit(1).await {
                Ok(permit) => Some(permit),
                Err(_) => return E::UnknownServerError.code(),
            },
            None => None,
        };
        let done = match start_offset {
            Some((start, group_epoch)) => {
                async {
                    let stored = read_summary(shard, &share_key, -1).await?;
                    let next = stored.map_or(0, |s| s.state_epoch).saturating_add(1);
                    let state_epoch = next.max(group_epoch);
                    initialize_state(shard, &share_key, state_epoch, start).await
                }
                .await
            }
            None => on_state_coordinator(shard, &share_key, StateCall::Delete).await.map(drop),
        };
        self.partitions.borrow_mut().remove(&key);
        match done {
            Ok(()) => 0,
            Err(code) => code,
        }
    }
}

/// The start offset stored for share-partition `key` in `__share_group_state` and how many
/// offsets at or past it are delivery-complete (KIP-1226) (`None`: it has none), asked of
/// its share coordinator with ReadShareGroupStateSummary, as Kafka's group coordinator does
/// for DescribeShareGroupOffsets. Not a leader's read: no epoch is
/// recorded, and a state initialized without a start offset has none yet.
pub async fn stored_progress(shard: &Rc<Shard>, key: &ShareKey) -> Result<Option<(i64, i32)>, i16> {
    let summary = read_summary(shard, key, -1).await?;
    let started = summary.filter(|s| s.start_offset >= 0);
    Ok(started.map(|s| (s.start_offset, s.delivery_complete_count())))
}

/// The leader epoch of a partition by this shard's metadata (0 if unknown).
fn leader_epoch_of(shard: &Shard, topic: &str, partition: i32) -> i32 {
    shard.meta().partition(topic, partition).map_or(0, |p| p.leader_epoch)
}

/// Runs `request` on shard `owner`, boxed: it may run [`Shares::handle`] again.
fn call_boxed<'a>(
    shard: &'a Rc<Shard>,
    owner: usize,
    request: ShareRequest,
) -> futures::future::LocalBoxFuture<'a, Option<ShareReply>> {
    Box::pin(call(shard, owner, request))
}

/// Runs `call` for `key` on its share coordinator (the persister): over the mesh when a
/// shard of this broker coordinates it, else on its broker. The state read (`None`: none)
/// for Read and Summary; `None` once a write, initialization or deletion is durable.
async fn on_state_coordinator(
    shard: &Rc<Shard>,
    key: &ShareKey,
    call: StateCall<'_>,
) -> Result<Option<ShareState>, i16> {
    share_state::with_coordinator(shard, key, |home| async move {
        match home {
            StateHome::Here { owner, .. } => {
                match call_boxed(shard, owner, local_request(key, call)).await {
                    Some(ShareReply::State(read)) => read,
                    Some(ShareReply::Written(0)) => Ok(None),
                    Some(ShareReply::Written(code)) => Err(code),
                    _ => Err(E::CoordinatorNotAvailable.code()),
                }
            }
            StateHome::Broker { id, addr } => {
                share_state::call_remote(shard, (id, &addr), key, call).await
            }
        }
    })
    .await
}

/// The mesh request of `call` for `key`.
fn local_request(key: &ShareKey, call: StateCall<'_>) -> ShareRequest {
    let key = key.clone();
    match call {
        StateCall::Read { leader_epoch } => ShareRequest::ReadState { key, leader_epoch },
        StateCall::Write(state) => ShareRequest::WriteState { key, state: state.clone() },
        StateCall::Initialize { state_epoch, start_offset } => {
            ShareRequest::InitState { key, state_epoch, start_offset }
        }
        StateCall::Delete => ShareRequest::DeleteState { key },
        StateCall::Summary { leader_epoch } => ShareRequest::ReadSummary { key, leader_epoch },
    }
}

/// The summary of the state of `key` (no batches; `None`: no state) from its share
/// coordinator (ReadShareGroupStateSummary), asked at `leader_epoch` (-1: not a leader).
async fn read_summary(
    shard: &Rc<Shard>,
    key: &ShareKey,
    leader_epoch: i32,
) -> Result<Option<ShareState>, i16> {
    on_state_coordinator(shard, key, StateCall::Summary { leader_epoch }).await
}

/// Initializes the state of `key` on its share coordinator (InitializeShareGroupState):
/// returns once durable.
async fn initialize_state(
    shard: &Rc<Shard>,
    key: &ShareKey,
    state_epoch: i32,
    start_offset: i64,
) -> Result<(), i16> {
    let call = StateCall::Initialize { state_epoch, start_offset };
    on_state_coordinator(shard, key, call).await.map(drop)
}

/// Replays state records in log order: the latest snapshot, then the updates after it.
/// Returns the share-partition and its snapshot epoch, or `None` when there is no snapshot.
pub(super) fn replay(states: &[ShareState], limits: Limits) -> Option<(SharePartition, i32)> {
    let last_snapshot = states.iter().rposition(|s| s.snapshot)?;
    let snapshot = &states[last_snapshot];
    let mut sp = SharePartition::new(snapshot.start_offset, limits);
    for b in &snapshot.batches {
        sp.restore(b);
    }
    for update in &states[last_snapshot + 1..] {
        if update.start_offset >= 0 {
            sp.move_start(update.start_offset);
        }
        for b in &update.batches {
            sp.restore(b);
        }
    }
    Some((sp, snapshot.snapshot_epoch))
}

/// The runs of offsets (first, last) in `records` that a read_committed share group never
/// gets: transaction markers, and the batches of the `aborted` transactions.
fn unreadable(records: &Bytes, aborted: &[AbortedTxn]) -> Vec<(i64, i64)> {
    let mut filter = AbortedFilter::new(aborted.iter().map(|a| (a.producer_id, a.first_offset)));
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for item in crate::record_batch::Batches::new(records) {
        let Ok((header, _)) = item else { break };
        if !filter.skips(&header) {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.1 + 1 == header.base_offset => run.1 = header.last_offset(),
            _ => runs.push((header.base_offset, header.last_offset())),
        }
    }
    runs
}

/// The end (last offset + 1) of the whole batches in `records`, or `None` if there are none.
fn batches_end(records: &Bytes) -> Option<i64> {
    let mut end = None;
    for item in crate::record_batch::Batches::new(records) {
        let Ok((header, _)) = item else { break };
        end = Some(header.base_offset + i64::from(header.last_offset_delta) + 1);
    }
    end
}

/// `records` without the whole batches that start after `last` (no acquired record in them):
/// a slice of the same buffer, no copy.
fn trim_after(records: Bytes, last: i64) -> Bytes {
    let mut keep = 0;
    for item in crate::record_batch::Batches::new(&records) {
        let Ok((header, range)) = item else { break };
        if header.base_offset > last {
            break;
        }
        keep = range.end;
    }
    records.slice(..keep)
}

/// Where a share-partition of `group` without state starts: `share.auto.offset.reset`'s log
/// start or end; under `read_committed` the end is the last stable offset (a read_committed
/// consumer's "latest"), so an open transaction's records are not passed over.
async fn reset_offset(shard: &Shard, group: &str, partition: &PartitionRef) -> Result<i64, i16> {
    let settings = group_settings(shard, group);
    let which = if settings.share_auto_offset_reset_earliest { -2 } else { -1 };
    local_offset(shard, partition, which, settings.share_read_committed).await
}

/// An offset of a partition this shard owns: -2 log start, -1 high watermark (the last
/// stable offset when `read_committed`).
async fn local_offset(
    shard: &Shard,
    partition: &PartitionRef,
    which: i64,
    read_committed: bool,
) -> Result<i64, i16> {
    let query = OffsetQuery { partition: partition.clone(), timestamp: which, read_committed };
    let answer = shard.offsets_local(query).await;
    if answer.error_code != 0 {
        return Err(answer.error_code);
    }
    Ok(answer.offset.max(0))
}

/// Every state record of `key` in `__share_group_state` partition `partition`, which this
/// shard owns, in log order.
pub(super) async fn read_states(
    shard: &Shard,
    key: &ShareKey,
    partition: i32,
) -> Result<Vec<ShareState>, i16> {
    let p = PartitionRef { topic: Arc::from(STATE_TOPIC), partition };
    let mut offset = local_offset(shard, &p, -2, false).await?;
    let end = local_offset(shard, &p, -1, false).await?;
    let mut states = Vec::new();
    while offset < end {
        let item = FetchItem {
            partition: p.clone(),
            offset,
            max_bytes: LOAD_READ_BYTES,
            read_committed: false,
            current_leader_epoch: -1,
            replica: None,
            follower_read: false,
            client_rack: None,
            offsets_only: false,
            within_max_bytes: false,
        };
        let outcome = shard.read_local(item).await;
        if outcome.error_code != 0 {
            return Err(E::CoordinatorLoadInProgress.code());
        }
        let found = records::decode_batches(&outcome.records, key).map_err(|e| {
            crate::log_limited!(ERROR, "reading {STATE_TOPIC}-{partition}: {e}");
            E::CoordinatorLoadInProgress.code()
        })?;
        if found.bad > 0 {
            crate::log_limited!(WARN, bad = found.bad, "undecodable {STATE_TOPIC} records skipped");
        }
        if found.deleted {
            // DeleteShareGroupState: what came before the tombstone is gone.
            states.clear();
        }
        states.extend(found.states);
        let next = found.next;
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(states)
}

/// Runs `request` on shard `owner` (here or through the mesh); `None` if it cannot answer.
pub async fn call(shard: &Rc<Shard>, owner: usize, request: ShareRequest) -> Option<ShareReply> {
    if owner == shard.id {
        return Some(shard.shares.handle(shard, request).await);
    }
    let (reply, answer) = oneshot::channel();
    let msg = ShardMsg::Share { request: Box::new(request), reply };
    if !shard.send(owner, msg).await {
        return None;
    }
    answer.await.ok()
}
