//! The group coordinator of one shard.
//!
//! A [`Coordinator`] lives on ONE shard (`Rc`, never shared across threads). It owns the
//! partitions of `__consumer_offsets` that this shard owns, and coordinates exactly the groups
//! that hash to them. Every change of group metadata and every offset commit is appended to
//! the group's partition and answered only once durable. At start-up each partition is
//! replayed ([`Coordinator::add_partition`]); until that finished, its groups answer
//! COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Timers: each group has at most one timer task, armed for [`Group::next_deadline_ms`] and
//! re-armed whenever an operation moves that deadline (a heartbeat, a join, ...). Nothing
//! polls. A timer task is spawned with no borrow of the groups held, and it yields before it
//! touches them (glommio's `spawn_local` runs a new task at once, inside its spawner).
//!
//! Panics: every operation and every timer of a group runs contained
//! ([`crate::runtime::contain`]). When one panics, the group's in-memory state may be half
//! changed, so the group is reset ([`Coordinator::reset_group`]): its members are dropped
//! (those waiting for a join or sync answer, and the panicking request itself, get
//! COORDINATOR_NOT_AVAILABLE; the others find out at their next heartbeat and rejoin), while
//! its generation, protocol type and committed offsets stay. Offsets change only by applying
//! records already durable in `__consumer_offsets`, outside the state machine, so they match
//! the log. Other groups, and the shard, are not affected.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::channel::oneshot;
use kafka_protocol::messages::{join_group_response, leave_group_response};
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::api::{GroupOp, GroupReply, GroupRequest};
use super::consumer::Settings as ConsumerSettings;
use super::consumer_ops::ConsumerSlot;
use super::records::{self, OffsetsRecord};
use super::share_meta::{ShareGroupMeta, SharePartitions};
use super::state::{Group, JoinArgs, JoinOutcome, Outbox, Reply, SyncArgs, SyncOutcome};
use super::{now_ms, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
use crate::protocol::ResponseError as E;
use crate::runtime::contain::contained;
use crate::storage::PartitionLog;

/// One owned partition of `__consumer_offsets`.
pub(super) struct OffsetsPartition {
    pub(super) log: PartitionLog,
    pub(super) loaded: bool,
}

/// One group and what waits on it.
pub(super) struct Slot {
    pub(super) group: Group,
    pub(super) partition: i32,
    pub(super) joins: HashMap<String, oneshot::Sender<JoinOutcome>>,
    pub(super) syncs: HashMap<String, oneshot::Sender<SyncOutcome>>,
    /// The armed timer: its deadline and task (dropping the task cancels it).
    timer: Option<(i64, glommio::Task<()>)>,
    /// The KIP-848 consumer group of this id, if it is one (`group` then has no members and
    /// only holds the committed offsets; classic members live in the consumer group).
    pub(super) consumer: Option<ConsumerSlot>,
}

impl Slot {
    pub(super) fn new(group: Group, partition: i32) -> Slot {
        let (joins, syncs) = (HashMap::new(), HashMap::new());
        Slot { group, partition, joins, syncs, timer: None, consumer: None }
    }

    /// The earliest deadline of the classic group or of the consumer group.
    fn next_deadline_ms(&self) -> Option<i64> {
        let consumer = self.consumer.as_ref().and_then(|c| c.group.next_deadline_ms());
        match (self.group.next_deadline_ms(), consumer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The groups of one shard. See the module docs.
pub struct Coordinator {
    pub(super) this: Weak<Coordinator>,
    pub(super) partitions: RefCell<HashMap<i32, OffsetsPartition>>,
    pub(super) groups: RefCell<HashMap<String, Slot>>,
    /// `group.initial.rebalance.delay.ms` of new groups.
    initial_delay_ms: i64,
    /// Session timeouts a classic JoinGroup may ask for (Kafka's
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`), inclusive.
    session_timeout_range: std::cell::Cell<(i32, i32)>,
    /// Offsets committed in open transactions (TxnOffsetCommit), by (`__consumer_offsets`
    /// partition, producer id), in commit order: applied by the commit marker, dropped by
    /// the abort marker.
    pub(super) pending_txn: RefCell<HashMap<(i32, i64), Vec<OffsetsRecord>>>,
    /// Testing only (`--fault-panic-on-group`): the group whose next Heartbeat panics inside
    /// the coordinator, once. `None` in production.
    fault_panic_group: RefCell<Option<String>>,
    /// Settings of KIP-848 consumer groups (`group.consumer.*`).
    pub(super) consumer_settings: RefCell<ConsumerSettings>,
    /// Group configs `consumer.session.timeout.ms` / `consumer.heartbeat.interval.ms` of the
    /// consumer groups that set them: (session timeout, heartbeat interval) by group id.
    pub(super) group_timeouts: RefCell<HashMap<String, (i32, i32)>>,
    /// While a partition replays: the consumer group records read so far, by group id
    /// (partition, latest value per key); turned into groups when the replay ends.
    pub(super) consumer_images: RefCell<HashMap<String, (i32, super::consumer::records::Image)>>,
    /// Share groups' ShareGroupStatePartitionMetadata, by group id: (`__consumer_offsets`
    /// partition, the latest value). Kept for `server::share`, which runs the share groups.
    pub(super) share_partitions: RefCell<HashMap<String, (i32, SharePartitions)>>,
    /// Share groups' ShareGroupMetadata (their epochs), by group id: (`__consumer_offsets`
    /// partition, the latest value).
    pub(super) share_groups: RefCell<HashMap<String, (i32, ShareGroupMeta)>>,
}

/// What a contained group task is, for the log line of a panic: `group g1`.
struct GroupTask<'a> {
    kind: &'static str,
    id: &'a str,
}

impl std::fmt::Display for GroupTask<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl Coordinator {
    /// A coordinator with no partitions yet; new groups hold their first join phase for
    /// `initial_delay_ms` (Kafka's `group.initial.rebalance.delay.ms`).
    pub fn new(initial_delay_ms: i64) -> Rc<Coordinator> {
        Rc::new_cyclic(|this| Coordinator {
            this: this.clone(),
            partitions: RefCell::new(HashMap::new()),
            groups: RefCell::new(HashMap::new()),
            initial_delay_ms,
            session_timeout_range: std::cell::Cell::new((
                SESSION_TIMEOUT_MS_MIN,
                SESSION_TIMEOUT_MS_MAX,
            )),
            pending_txn: RefCell::new(HashMap::new()),
            fault_panic_group: RefCell::new(None),
            consumer_settings: RefCell::new(ConsumerSettings::default()),
            group_timeouts: RefCell::new(HashMap::new()),
            consumer_images: RefCell::new(HashMap::new()),
            share_partitions: RefCell::new(HashMap::new()),
            share_groups: RefCell::new(HashMap::new()),
        })
    }

    /// Whether a classic group (with members, a generation or offsets) or a consumer group
    /// holds id `id` here: a share group may not take it (Kafka's "is not a share group").
    pub fn has_group(&self, id: &str) -> bool {
        self.groups.borrow().get(id).is_some_and(|s| {
            let g = &s.group;
            s.consumer.is_some()
                || (g.state != super::state::GroupState::Dead
                    && (!g.members.is_empty() || g.generation > 0 || !g.offsets.is_empty()))
        })
    }

    /// Sets the consumer groups' own session timeouts and heartbeat intervals (their group
    /// configs), applied from each group's next heartbeat on.
    pub fn set_group_timeouts(&self, timeouts: HashMap<String, (i32, i32)>) {
        *self.group_timeouts.borrow_mut() = timeouts;
    }

    /// The settings of consumer group `id`: the broker's, with the group's own timeouts.
    pub(super) fn consumer_settings_of(&self, id: &str) -> ConsumerSettings {
        let mut settings = self.consumer_settings.borrow().clone();
        if let Some((session, interval)) = self.group_timeouts.borrow().get(id) {
            settings.session_timeout_ms = *session;
            settings.heartbeat_interval_ms = *interval;
        }
        settings
    }

    /// The session timeouts classic groups accept: Kafka's `group.min.session.timeout.ms`
    /// and `group.max.session.timeout.ms` (a JoinGroup outside gets INVALID_SESSION_TIMEOUT).
    pub fn set_session_timeout_range(&self, min_ms: i32, max_ms: i32) {
        self.session_timeout_range.set((min_ms, max_ms));
    }

    /// Sets the `group.consumer.*` settings of consumer groups created from now on.
    pub fn set_consumer_settings(&self, settings: ConsumerSettings) {
        *self.consumer_settings.borrow_mut() = settings;
    }

    /// Testing only: the next Heartbeat of `group` panics inside the coordinator (once), as a
    /// bug in the group state machine would.
    pub fn inject_panic_on_group(&self, group: Option<String>) {
        *self.fault_panic_group.borrow_mut() = group;
    }

    #[allow(clippy::panic)]
    fn injected_panic(&self, group_id: &str) {
        let armed = self.fault_panic_group.borrow().as_deref() == Some(group_id);
        if armed {
            self.fault_panic_group.borrow_mut().take();
            panic!("fault injection: a panic in the state machine of group {group_id}");
        }
    }

    /// A new, empty group with this coordinator's settings.
    pub(super) fn new_group(&self, id: &str) -> Group {
        Group::new(id, now_ms()).with_initial_delay(self.initial_delay_ms)
    }

    /// The log of `partition` if this shard owns it and finished loading it.
    pub(super) fn ready_log(&self, partition: i32) -> Result<PartitionLog, E> {
        match self.partitions.borrow().get(&partition) {
            None => Err(E::NotCoordinator),
            Some(p) if !p.loaded => Err(E::CoordinatorLoadInProgress),
            Some(p) => Ok(p.log.clone()),
        }
    }

    /// Every offset committed by the groups this shard coordinates (for metrics).
    pub fn committed_offsets(&self) -> Vec<crate::metrics::CommittedOffset> {
        let groups = self.groups.borrow();
        let commits = groups.iter().flat_map(|(id, slot)| {
            slot.group.offsets.iter().map(move |((topic, partition), c)| {
                crate::metrics::CommittedOffset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                }
            })
        });
        commits.collect()
    }

    /// Handles one group request on this shard. A panic while handling it is contained: the
    /// group is reset ([`Coordinator::reset_group`]) and the request gets
    /// COORDINATOR_NOT_AVAILABLE, which clients retry after looking the coordinator up again.
    pub async fn handle(&self, request: GroupRequest) -> Result<GroupReply, E> {
        let group = request.op.group_id().map(str::to_owned);
        let what = GroupTask { kind: "group", id: group.as_deref().unwrap_or("(all)") };
        match contained(what, self.run(request)).await {
            Ok(reply) => Ok(reply),
            Err(_) => {
                if let Some(group) = &group {
                    self.reset_group(group);
                }
                Err(E::CoordinatorNotAvailable)
            }
        }
    }

    /// After a panic in the code of `group_id`: replaces the group with an empty one that
    /// keeps its generation, protocol type and committed offsets (see the module docs). The
    /// old slot is dropped outside the borrow: its waiting members' answer channels close
    /// (they get COORDINATOR_NOT_AVAILABLE) and its timer is cancelled.
    pub(super) fn reset_group(&self, group_id: &str) {
        let old = self.groups.borrow_mut().remove(group_id);
        let Some(mut old) = old else {
            return;
        };
        if old.group.state != super::state::GroupState::Dead {
            let mut group = self.new_group(group_id);
            group.generation = old.group.generation;
            group.protocol_type = old.group.protocol_type.take();
            group.offsets = std::mem::take(&mut old.group.offsets);
            let members = old.group.members.len();
            tracing::warn!(group = group_id, members, "reset the group after a panic");
            let mut slot = Slot::new(group, old.partition);
            // A consumer group loses its members (they rejoin) but keeps its epoch and the
            // record of what was persisted, so the next write tombstones the members.
            slot.consumer = old.consumer.take().map(|mut c| {
                let settings = c.group.settings.clone();
                let mut fresh = super::consumer::ConsumerGroup::new(group_id, settings);
                fresh.epoch = c.group.epoch + 1;
                fresh.assignment_epoch = c.group.assignment_epoch;
                c.group = fresh;
                c
            });
            self.groups.borrow_mut().insert(group_id.to_owned(), slot);
        }
        drop(old);
    }

    async fn run(&self, request: GroupRequest) -> GroupReply {
        let partition = request.partition;
        match request.op {
            GroupOp::Join { req, version, client_id, client_host, topics } => {
                let client = (client_id, client_host);
                GroupReply::Join(self.join(partition, req, version, client, &topics).await)
            }
            GroupOp::Sync { req } => GroupReply::Sync(self.sync(partition, req).await),
            GroupOp::Heartbeat { req } => GroupReply::Heartbeat(self.heartbeat(partition, req)),
            GroupOp::Leave { req, version } => {
                GroupReply::Leave(self.leave(partition, req, version).await)
            }
            GroupOp::Commit { req } => GroupReply::Commit(self.commit(partition, req).await),
            GroupOp::Fetch { group, topics, member_id, member_epoch } => {
                let member = (member_id.as_deref(), member_epoch);
                GroupReply::Fetch(self.fetch(partition, &group, topics, member))
            }
            GroupOp::Describe { group } => GroupReply::Describe(self.describe(partition, &group)),
            GroupOp::Delete { group } => GroupReply::Delete(self.delete(partition, &group).await),
            GroupOp::OffsetDelete { req } => {
                GroupReply::OffsetDelete(self.offset_delete(partition, req).await)
            }
            GroupOp::List { states, types } => GroupReply::List(self.list(&states, &types)),
            GroupOp::TxnCommit { req } => {
                GroupReply::TxnCommit(self.txn_commit(partition, req).await)
            }
            GroupOp::ConsumerHeartbeat { req, ctx } => {
                self.injected_panic(&req.group_id.0);
                GroupReply::ConsumerHeartbeat(self.consumer_heartbeat(partition, req, ctx).await)
            }
            GroupOp::ConsumerDescribe { group, topics, version } => GroupReply::ConsumerDescribe(
                self.consumer_describe(partition, &group, &topics, version),
            ),
        }
    }

    // ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ------------------------------------

    async fn join(
        &self,
        partition: i32,
        req: JoinGroupRequest,
        version: i16,
        (client_id, client_host): (String, String),
        topics: &super::consumer::Topics,
    ) -> JoinGroupResponse {
        let group_id = req.group_id.0.to_string();
        let args = JoinArgs {
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id,
            client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        };
        let member_id = args.member_id.clone();
        if let Err(e) = self.ready_log(partition) {
            return join_response(JoinOutcome::error(e, &member_id));
        }
        let timeout = args.session_timeout_ms;
        let (min, max) = self.session_timeout_range.get();
        if !(min..=max).contains(&timeout) {
            return join_response(JoinOutcome::error(E::InvalidSessionTimeout, &member_id));
        }
        match self.classic_slot_for(&group_id, partition).await {
            Err(e) => return join_response(JoinOutcome::error(e, &member_id)),
            Ok(true) => {
                let outcome = self.classic_join_to_consumer(&group_id, args, topics).await;
                return join_response(outcome);
            }
            Ok(false) => {}
        }
        let (tx, rx) = oneshot::channel();
        let (reply, out) = {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&group_id) {
                if !member_id.is_empty() {
                    return join_response(JoinOutcome::error(E::UnknownMemberId, &member_id));
                }
                groups.insert(group_id.clone(), Slot::new(self.new_group(&group_id), partition));
            }
            let Some(slot) = groups.get_mut(&group_id) else {
                return join_response(JoinOutcome::error(E::CoordinatorNotAvailable, &member_id));
            };
            let mut out = Outbox::default();
            let fresh = uuid::Uuid::new_v4().to_string();
            let reply = slot.group.join(args, now_ms(), &fresh, &mut out);
            if let Reply::Later(id) = &reply {
                slot.joins.insert(id.clone(), tx);
            }
            (reply, out)
        };
        self.finish(&group_id, out).await;
        self.forget_if_unused(&group_id);
        let outcome = match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(id) => {
                rx.await.unwrap_or_else(|_| JoinOutcome::error(E::CoordinatorNotAvailable, &id))
            }
        };
        join_response(outcome)
    }

    async fn sync(&self, partition: i32, req: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = req.group_id.0.to_string();
        if let Err(e) = self.ready_log(partition) {
            return sync_response(SyncOutcome::error(e));
        }
        let args = SyncArgs {
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: req.generation_id,
            protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
            protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        if let Some(outcome) = self.classic_sync_to_consumer(&group_id, &args) {
            self.reschedule(&group_id);
            return sync_response(outcome);
        }
        let (tx, rx) = oneshot::channel();
        let (reply, out) = {
            let mut groups = self.groups.borrow_mut();
            let Some(slot) = groups.get_mut(&group_id) else {
                return sync_response(SyncOutcome::error(E::UnknownMemberId));
            };
            let mut out = Outbox::default();
            let reply = slot.group.sync(args, now_ms(), &mut out);
            if let Reply::Later(id) = &reply {
                slot.syncs.insert(id.clone(), tx);
            }
            (reply, out)
        };
        self.finish(&group_id, out).await;
        let outcome = match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(_) => {
                rx.await.unwrap_or_else(|_| SyncOutcome::error(E::CoordinatorNotAvailable))
            }
        };
        sync_response(outcome)
    }

    fn heartbeat(&self, partition: i32, req: HeartbeatRequest) -> HeartbeatResponse {
        let code = match self.ready_log(partition) {
            Err(e) => e.code(),
            Ok(_) => {
                let group_id = req.group_id.0.to_string();
                let mut groups = self.groups.borrow_mut();
                self.injected_panic(&group_id);
                match groups.get_mut(&group_id) {
                    None => E::UnknownMemberId.code(),
                    Some(Slot { consumer: Some(c), .. }) => {
                        let instance = req.group_instance_id.as_deref();
                        let generation = req.generation_id;
                        let id = &req.member_id;
                        match c.group.classic_heartbeat(id, instance, generation, now_ms()) {
                            Ok(()) => 0,
                            Err(e) => e.code(),
                        }
                    }
                    Some(slot) => slot.group.heartbeat(
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id,
                        now_ms(),
                    ),
                }
            }
        };
        self.reschedule(&req.group_id.0);
        HeartbeatResponse::default().with_error_code(code)
    }

    async fn leave(
        &self,
        partition: i32,
        req: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let group_id = req.group_id.0.to_string();
        if self.ready_log(partition).is_ok() {
            if let Some(codes) = self.classic_leave_to_consumer(&group_id, &leaving).await {
                return leave_response(&leaving, &codes, version);
            }
        }
        let result = match self.ready_log(partition) {
            Err(e) => Err(e),
            Ok(_) => {
                let mut groups = self.groups.borrow_mut();
                match groups.get_mut(&group_id) {
                    None => Err(E::UnknownMemberId),
                    Some(slot) => {
                        let mut out = Outbox::default();
                        let codes = slot.group.leave(&leaving, now_ms(), &mut out);
                        Ok((codes, out))
                    }
                }
            }
        };
        let (codes, out) = match result {
            Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
            Ok(found) => found,
        };
        self.finish(&group_id, out).await;
        leave_response(&leaving, &codes, version)
    }

    // ---- persistence, delivery and timers ------------------------------------------------

    /// After an operation on a group: persists its metadata if the outbox asks, then delivers
    /// the answers owed to waiting members and re-arms the group's timer.
    pub(super) async fn finish(&self, group_id: &str, mut out: Outbox) {
        let mut written = true;
        if out.persist {
            if let Err(e) = self.persist_group(group_id).await {
                written = false;
                tracing::error!(group = group_id, "persisting group metadata failed: {e}");
                for (_, o) in out.joins.iter_mut() {
                    o.error = E::CoordinatorNotAvailable.code();
                }
                for (_, o) in out.syncs.iter_mut() {
                    o.error = E::CoordinatorNotAvailable.code();
                }
            }
        }
        {
            let mut groups = self.groups.borrow_mut();
            if let Some(slot) = groups.get_mut(group_id) {
                if let Some(generation) = out.sync_completed {
                    // After the members that were waiting when the leader synced.
                    let late = slot.group.assignment_written(generation, written, now_ms());
                    out.syncs.extend(late);
                }
                for (member, outcome) in out.joins {
                    if let Some(tx) = slot.joins.remove(&member) {
                        let _ = tx.send(outcome);
                    }
                }
                for (member, outcome) in out.syncs {
                    if let Some(tx) = slot.syncs.remove(&member) {
                        let _ = tx.send(outcome);
                    }
                }
            }
        }
        self.reschedule(group_id);
    }

    async fn persist_group(&self, group_id: &str) -> Result<(), String> {
        let (partition, snapshot) = {
            let groups = self.groups.borrow();
            let slot = groups.get(group_id).ok_or("group vanished")?;
            (slot.partition, slot.group.snapshot())
        };
        let log = self.ready_log(partition).map_err(|e| format!("{e:?}"))?;
        let record = OffsetsRecord::Group { group: group_id.to_owned(), value: Some(snapshot) };
        append_durable(&log, &[record]).await
    }

    /// Arms the group's timer for its next deadline (dropping a timer that no longer fits).
    ///
    /// No borrow of the groups is held while the old task is dropped or the new one spawned
    /// (issue 15: `spawn_local` ran a timer already due at once, whose `on_timer` borrowed the
    /// groups again and panicked the shard).
    pub(super) fn reschedule(&self, group_id: &str) {
        let (next, replaced) = {
            let mut groups = self.groups.borrow_mut();
            let Some(slot) = groups.get_mut(group_id) else {
                return;
            };
            let next = slot.next_deadline_ms();
            if slot.timer.as_ref().map(|(at, _)| *at) == next {
                return;
            }
            (next, slot.timer.take())
        };
        drop(replaced);
        let Some(at) = next else {
            return;
        };
        let task = self.spawn_timer(group_id, at);
        // The new task has not touched the groups yet (it yields first): store it. Whatever
        // it displaces, or the task itself when the group is gone, is dropped (cancelled)
        // after the borrow ends.
        let displaced = match self.groups.borrow_mut().get_mut(group_id) {
            Some(slot) => slot.timer.replace((at, task)),
            None => Some((at, task)),
        };
        drop(displaced);
    }

    /// Spawns the timer task of `group_id` for deadline `at`; a panic in it resets the group.
    fn spawn_timer(&self, group_id: &str, at: i64) -> glommio::Task<()> {
        let this = self.this.clone();
        let id = group_id.to_owned();
        let wait = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
        glommio::spawn_local(async move {
            // spawn_local polls this at once, inside the caller: yield before anything else.
            glommio::executor().yield_now().await;
            glommio::timer::sleep(wait).await;
            let Some(this) = this.upgrade() else {
                return;
            };
            let what = GroupTask { kind: "timer of group", id: &id };
            if contained(what, this.on_timer(&id)).await.is_err() {
                this.reset_group(&id);
            }
        })
    }

    async fn on_timer(&self, group_id: &str) {
        let out = {
            let mut groups = self.groups.borrow_mut();
            let Some(slot) = groups.get_mut(group_id) else {
                return;
            };
            // This task is the armed one: detach it so re-arming does not cancel it mid-run.
            if let Some((_, task)) = slot.timer.take() {
                drop(task.detach());
            }
            let mut out = Outbox::default();
            slot.group.tick(now_ms(), &mut out);
            out
        };
        self.consumer_tick(group_id).await;
        self.finish(group_id, out).await;
    }

    /// Before a JoinGroup: whether a consumer group of this id with members takes the classic
    /// member ([`super::migration`]); an empty one is deleted (tombstones) so a classic group
    /// takes its place, keeping the offsets.
    async fn classic_slot_for(&self, group_id: &str, partition: i32) -> Result<bool, E> {
        let busy = {
            let groups = self.groups.borrow();
            match groups.get(group_id).and_then(|s| s.consumer.as_ref()) {
                None => return Ok(false),
                Some(c) => !c.group.members.is_empty(),
            }
        };
        if busy {
            return Ok(true);
        }
        let tombstones = self.drop_consumer(group_id);
        if tombstones.is_empty() {
            return Ok(false);
        }
        let log = self.ready_log(partition)?;
        append_durable(&log, &tombstones).await.map_err(|e| {
            tracing::error!(group = group_id, "persisting the group's conversion failed: {e}");
            E::CoordinatorNotAvailable
        })?;
        Ok(false)
    }

    /// Drops a group that a failed join created and that holds nothing.
    fn forget_if_unused(&self, group_id: &str) {
        let mut groups = self.groups.borrow_mut();
        let unused = groups.get(group_id).is_some_and(|s| {
            s.group.members.is_empty()
                && s.consumer.is_none()
                && s.group.pending.is_empty()
                && s.group.offsets.is_empty()
                && s.group.generation == 0
        });
        if unused {
            groups.remove(group_id);
        }
    }
}

/// Appends `records` to `log` as one batch and waits until durable.
pub(super) async fn append_durable(
    log: &PartitionLog,
    records: &[OffsetsRecord],
) -> Result<(), String> {
    let batch = records::encode_batch(records, now_ms()).map_err(|e| e.to_string())?;
    let pending = log.append(&batch).map_err(|e| e.to_string())?;
    pending.durable().await.map_err(|e| e.to_string())?;
    Ok(())
}

fn join_response(o: JoinOutcome) -> JoinGroupResponse {
    let members = o
        .members
        .into_iter()
        .map(|m| {
            join_group_response::JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation)
        .with_protocol_type(o.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(o.protocol_name.as_deref().map(str_bytes))
        .with_leader(str_bytes(&o.leader))
        .with_member_id(str_bytes(&o.member_id))
        .with_members(members)
        .with_skip_assignment(o.skip_assignment)
}

fn sync_response(o: SyncOutcome) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(o.error)
        .with_protocol_type(o.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(o.protocol_name.as_deref().map(str_bytes))
        .with_assignment(o.assignment)
}

fn leave_response(
    leaving: &[(String, Option<String>)],
    codes: &[i16],
    version: i16,
) -> LeaveGroupResponse {
    if version < 3 {
        let code = codes.first().copied().unwrap_or(0);
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = leaving
        .iter()
        .zip(codes)
        .map(|((id, instance), code)| {
            leave_group_response::MemberResponse::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(instance.as_deref().map(str_bytes))
                .with_error_code(*code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
