//! The pure state machine of one consumer group (Kafka's classic protocol).
//!
//! A [`Group`] lives on the shard that coordinates it and is only touched from there. No call
//! reads a clock or does I/O: time comes in as `now_ms`, and what must happen afterwards comes
//! out in an [`Outbox`] (join and sync answers owed to members that are waiting, and whether
//! the group's metadata must be persisted before those answers are sent).
//!
//! States: `Empty → PreparingRebalance → CompletingRebalance → Stable`, back to
//! `PreparingRebalance` when membership or subscriptions change, `Empty` when the last member
//! leaves, `Dead` once deleted.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::ResponseError as E;

/// Where a group is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (may still hold committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment handed out; members heartbeat.
    Stable,
    /// Deleted; answers nothing.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Member id given by the coordinator.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
    /// Session timeout the member asked for.
    pub session_timeout_ms: i32,
    /// Rebalance timeout the member asked for.
    pub rebalance_timeout_ms: i32,
    /// Supported protocols, most preferred first: (name, metadata).
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the leader for the current generation.
    pub assignment: Bytes,
    /// Has sent JoinGroup in this rebalance and waits for its answer.
    pub awaiting_join: bool,
    /// Has sent SyncGroup and waits for the assignment.
    pub awaiting_sync: bool,
    /// The member is evicted when this passes without a heartbeat.
    pub heartbeat_deadline_ms: i64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the committed offset, or -1.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp_ms: i64,
}

/// A JoinGroup request, decoded.
#[derive(Clone, Debug, Default)]
pub struct JoinArgs {
    /// Empty for a new member.
    pub member_id: String,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// Protocols, most preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member must rejoin with the id it is given.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a rejoining static leader can be told to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinOutcome {
    /// Kafka error code.
    pub error: i16,
    /// Generation id.
    pub generation: i32,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinMember>,
    /// KIP-814: the leader gets the members but must not compute a new assignment (a static
    /// leader that rejoined a Stable group). JoinGroup v9+ only.
    pub skip_assignment: bool,
}

impl JoinOutcome {
    /// An error answer.
    pub fn error(error: E, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: error.code(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncOutcome {
    /// Kafka error code.
    pub error: i16,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncOutcome {
    /// An error answer.
    pub fn error(error: E) -> SyncOutcome {
        SyncOutcome {
            error: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A SyncGroup request, decoded.
#[derive(Clone, Debug, Default)]
pub struct SyncArgs {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Generation the member believes in.
    pub generation: i32,
    /// v5+: protocol type, checked when given.
    pub protocol_type: Option<String>,
    /// v5+: protocol name, checked when given.
    pub protocol_name: Option<String>,
    /// From the leader: member id → assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// Answer now, or later through the [`Outbox`] addressed to this member id.
#[derive(Debug, PartialEq)]
pub enum Reply<T> {
    /// The answer.
    Now(T),
    /// The answer comes later, addressed to this member id.
    Later(String),
}

/// What a call on a group owes to others.
#[derive(Debug, Default)]
pub struct Outbox {
    /// JoinGroup answers for waiting members: (member id, answer).
    pub joins: Vec<(String, JoinOutcome)>,
    /// SyncGroup answers for waiting members: (member id, answer).
    pub syncs: Vec<(String, SyncOutcome)>,
    /// The group's metadata changed in a way that must be persisted before the answers go.
    pub persist: bool,
    /// The leader's SyncGroup completed the rebalance of this generation: once the write
    /// `persist` asks for lands, [`Group::assignment_written`] answers the members that
    /// synced meanwhile.
    pub sync_completed: Option<i32>,
}

/// One consumer group. See the module docs.
#[derive(Clone, Debug)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Life-cycle state.
    pub state: GroupState,
    /// Protocol type of the members (`consumer`), `None` when empty.
    pub protocol_type: Option<String>,
    /// Chosen protocol of the current generation.
    pub protocol: Option<String>,
    /// Generation id, bumped by every completed join phase.
    pub generation: i32,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// JoinGroup v4+ members that were given an id and must rejoin with it: id → deadline.
    pub pending: BTreeMap<String, i64>,
    /// Deadline of the join phase (PreparingRebalance) or of the sync phase
    /// (CompletingRebalance).
    pub phase_deadline_ms: Option<i64>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// When the state last changed.
    pub state_timestamp_ms: i64,
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first join phase of an empty
    /// group waits for more members before completing, so that consumers starting together
    /// get one generation instead of one rebalance per arrival.
    pub initial_delay_ms: i64,
    /// While the first join phase is held: (complete no earlier than, hold no later than).
    pub initial_hold_ms: Option<(i64, i64)>,
    /// The leader's assignment is being written: SyncGroups wait for the write, as in Kafka,
    /// where the group stays CompletingRebalance until it lands. Without this, a follower
    /// syncing during the write was answered before the leader (aiokafka's own KIP-345
    /// tests saw the leader still unassigned), and got its assignment even if the write
    /// then failed. The generation whose assignment it is.
    pub assignment_unwritten: Option<i32>,
}

fn outcome_error(error: E, member_id: &str) -> Reply<JoinOutcome> {
    Reply::Now(JoinOutcome::error(error, member_id))
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            phase_deadline_ms: None,
            offsets: BTreeMap::new(),
            state_timestamp_ms: now_ms,
            initial_delay_ms: 0,
            initial_hold_ms: None,
            assignment_unwritten: None,
        }
    }

    /// Sets `group.initial.rebalance.delay.ms` (0, the default here, completes at once).
    pub fn with_initial_delay(mut self, delay_ms: i64) -> Group {
        self.initial_delay_ms = delay_ms.max(0);
        self
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Whether a member with this protocol type and protocols may join (Kafka's
    /// `supportsProtocols`): a non-empty type and list for an empty group; otherwise the same
    /// type and at least one protocol every current member supports.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// Protocols every member supports, in the first member's preference order.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| {
                self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect()
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred candidate; most
    /// votes wins, ties go to the earlier candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let votes = |name: &String| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols.iter().find(|(n, _)| candidates.contains(n)).map(|(n, _)| n)
                        == Some(name)
                })
                .count()
        };
        let mut best: Option<(usize, &String)> = None;
        for name in &candidates {
            let count = votes(name);
            if best.is_none_or(|(c, _)| count > c) {
                best = Some((count, name));
            }
        }
        best.map(|(_, name)| name.clone())
    }

    /// The member id a static `instance_id` currently maps to.
    pub fn static_member(&self, instance_id: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.clone())
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    // ---- JoinGroup ------------------------------------------------------------------------

    /// Handles a JoinGroup. `fresh_id` is a unique suffix for a new member's id. Session
    /// timeout bounds and the group id are checked by the caller.
    pub fn join(
        &mut self,
        args: JoinArgs,
        now_ms: i64,
        fresh_id: &str,
        out: &mut Outbox,
    ) -> Reply<JoinOutcome> {
        if self.state == GroupState::Dead {
            return outcome_error(E::CoordinatorNotAvailable, &args.member_id);
        }
        if !self.supports(&args.protocol_type, &args.protocols) {
            return outcome_error(E::InconsistentGroupProtocol, &args.member_id);
        }
        if args.member_id.is_empty() {
            self.join_new(args, now_ms, fresh_id, out)
        } else {
            self.join_known(args, now_ms, out)
        }
    }

    fn join_new(
        &mut self,
        args: JoinArgs,
        now_ms: i64,
        fresh_id: &str,
        out: &mut Outbox,
    ) -> Reply<JoinOutcome> {
        let member_id = format!("{}-{fresh_id}", args.client_id);
        if let Some(instance) = &args.instance_id {
            if let Some(old_id) = self.static_member(instance) {
                return self.replace_static(&old_id, member_id, args, now_ms, out);
            }
        } else if args.require_known_member_id {
            let deadline = now_ms + i64::from(args.session_timeout_ms);
            self.pending.insert(member_id.clone(), deadline);
            return Reply::Now(JoinOutcome::error(E::MemberIdRequired, &member_id));
        }
        if self.members.len() >= crate::group::GROUP_MEMBERS_MAX {
            return outcome_error(E::GroupMaxSizeReached, &member_id);
        }
        self.add_member(member_id, args, now_ms, out)
    }

    fn add_member(
        &mut self,
        member_id: String,
        args: JoinArgs,
        now_ms: i64,
        out: &mut Outbox,
    ) -> Reply<JoinOutcome> {
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: args.instance_id,
            client_id: args.client_id,
            client_host: args.client_host,
            session_timeout_ms: args.session_timeout_ms,
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            protocols: args.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            heartbeat_deadline_ms: now_ms + i64::from(args.session_timeout_ms),
        };
        self.members.insert(member_id.clone(), member);
        if let Some((until, cap)) = self.initial_hold_ms.as_mut() {
            // Another consumer arrived while the first join phase is held: wait for more
            // (Kafka's InitialDelayedJoin), never past the cap.
            *until = (now_ms + self.initial_delay_ms).min(*cap);
        }
        self.rebalance_for_change(now_ms, out);
        Reply::Later(member_id)
    }

    fn join_known(&mut self, args: JoinArgs, now_ms: i64, out: &mut Outbox) -> Reply<JoinOutcome> {
        let id = args.member_id.clone();
        if self.pending.contains_key(&id) {
            // Pending ids go to dynamic members only (Kafka throws here): rejoining with one
            // and an instance id could make two members of one group.instance.id.
            if args.instance_id.is_some() {
                return outcome_error(E::UnknownMemberId, &id);
            }
            self.pending.remove(&id);
            return self.add_member(id, args, now_ms, out);
        }
        let Some(member) = self.members.get(&id) else {
            return outcome_error(E::UnknownMemberId, &id);
        };
        if member.instance_id != args.instance_id {
            return outcome_error(E::FencedInstanceId, &id);
        }
        let changed = member.protocols != args.protocols;
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::Empty | GroupState::Dead => outcome_error(E::UnknownMemberId, &id),
            GroupState::CompletingRebalance | GroupState::Stable
                if !(changed || is_leader && self.state == GroupState::Stable) =>
            {
                self.touch(&id, now_ms);
                Reply::Now(self.current_outcome(&id))
            }
            _ => {
                self.update_member(&args, now_ms);
                self.rebalance_for_change(now_ms, out);
                Reply::Later(id)
            }
        }
    }

    fn update_member(&mut self, args: &JoinArgs, now_ms: i64) {
        if let Some(m) = self.members.get_mut(&args.member_id) {
            m.protocols = args.protocols.clone();
            m.session_timeout_ms = args.session_timeout_ms;
            m.rebalance_timeout_ms = args.rebalance_timeout_ms;
            m.client_id = args.client_id.clone();
            m.client_host = args.client_host.clone();
            m.awaiting_join = true;
            m.heartbeat_deadline_ms = now_ms + i64::from(args.session_timeout_ms);
        }
    }

    /// A static member rejoined with a new member id: the old id is fenced.
    fn replace_static(
        &mut self,
        old_id: &str,
        new_id: String,
        args: JoinArgs,
        now_ms: i64,
        out: &mut Outbox,
    ) -> Reply<JoinOutcome> {
        let Some(mut member) = self.members.remove(old_id) else {
            return outcome_error(E::UnknownMemberId, old_id);
        };
        if member.awaiting_join {
            out.joins.push((old_id.to_owned(), JoinOutcome::error(E::FencedInstanceId, old_id)));
        }
        if member.awaiting_sync {
            out.syncs.push((old_id.to_owned(), SyncOutcome::error(E::FencedInstanceId)));
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        let changed = member.protocols != args.protocols;
        member.id = new_id.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        self.members.insert(new_id.clone(), member);
        let skip = args.supports_skip_assignment;
        let join = JoinArgs { member_id: new_id.clone(), ..args };
        if self.state == GroupState::Stable && !changed {
            // Same subscription: the member gets its old assignment back at SyncGroup, and no
            // other member is disturbed, leader or not (Kafka's static rejoin).
            self.update_member(&join, now_ms);
            if let Some(m) = self.members.get_mut(&new_id) {
                m.awaiting_join = false;
            }
            out.persist = true;
            let mut outcome = self.current_outcome(&new_id);
            if was_leader && skip {
                // KIP-814: the leader learns the members (to watch their subscriptions) but
                // keeps the current assignment.
                outcome.skip_assignment = true;
            } else if was_leader {
                // Before JoinGroup v9 a leader would compute and send a new assignment: name
                // the old id as leader so the client acts as a follower (as Kafka does).
                outcome.leader = old_id.to_owned();
                outcome.members.clear();
            }
            return Reply::Now(outcome);
        }
        self.update_member(&join, now_ms);
        self.rebalance_for_change(now_ms, out);
        Reply::Later(new_id)
    }

    /// The join answer for the current generation (leaders get the member list).
    fn current_outcome(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
            skip_assignment: false,
        }
    }

    /// Membership or subscriptions changed: start (or continue) a rebalance and complete the
    /// join phase if everyone is in.
    fn rebalance_for_change(&mut self, now_ms: i64, out: &mut Outbox) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now_ms, out);
        }
        self.try_complete_join(now_ms, out);
    }

    /// Starts a rebalance of a Stable group (a consumer group that just became this classic
    /// group: its members must rejoin).
    pub fn start_rebalance(&mut self, now_ms: i64, out: &mut Outbox) {
        self.rebalance_for_change(now_ms, out);
    }

    fn prepare_rebalance(&mut self, now_ms: i64, out: &mut Outbox) {
        if self.assignment_unwritten.take().is_some() {
            // Members that synced while the assignment was being written: it is stale now.
            for m in self.members.values_mut().filter(|m| m.awaiting_sync) {
                m.awaiting_sync = false;
                out.syncs.push((m.id.clone(), SyncOutcome::error(E::RebalanceInProgress)));
            }
        }
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if m.awaiting_sync {
                    m.awaiting_sync = false;
                    out.syncs.push((m.id.clone(), SyncOutcome::error(E::RebalanceInProgress)));
                }
            }
        }
        if self.state == GroupState::Empty && self.initial_delay_ms > 0 {
            let cap = now_ms + self.rebalance_timeout_ms().max(self.initial_delay_ms);
            self.initial_hold_ms = Some((now_ms + self.initial_delay_ms, cap));
        }
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.phase_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
    }

    fn try_complete_join(&mut self, now_ms: i64, out: &mut Outbox) {
        if self.initial_hold_ms.is_some_and(|(until, _)| now_ms < until) {
            return;
        }
        let all_in = self.members.values().all(|m| m.awaiting_join);
        if self.state == GroupState::PreparingRebalance && all_in && self.pending.is_empty() {
            self.complete_join(now_ms, out);
        }
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, bumps the generation,
    /// picks protocol and leader, answers every waiting member.
    fn complete_join(&mut self, now_ms: i64, out: &mut Outbox) {
        self.initial_hold_ms = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, out);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.set_state(GroupState::Empty, now_ms);
            // Kafka keeps the protocol type of an empty group (ListGroups shows it).
            self.protocol = None;
            self.leader = None;
            self.phase_deadline_ms = None;
            out.persist = true;
            return;
        }
        self.protocol = self.select_protocol();
        let leader_ok = self.leader.as_ref().is_some_and(|l| self.members.contains_key(l));
        if !leader_ok {
            let first = self.members.values().find(|m| m.awaiting_join);
            self.leader = first.or(self.members.values().next()).map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.phase_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
        let waiting: Vec<String> =
            self.members.values().filter(|m| m.awaiting_join).map(|m| m.id.clone()).collect();
        for id in waiting {
            let outcome = self.current_outcome(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
            }
            out.joins.push((id, outcome));
        }
    }

    fn remove_member(&mut self, id: &str, out: &mut Outbox) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if m.awaiting_join {
            out.joins.push((m.id.clone(), JoinOutcome::error(E::UnknownMemberId, &m.id)));
        }
        if m.awaiting_sync {
            out.syncs.push((m.id.clone(), SyncOutcome::error(E::UnknownMemberId)));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn touch(&mut self, id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
        }
    }

    /// Checks member id, static instance id and generation, in Kafka's order.
    ///
    /// As Kafka's `validateMember`: a request naming an instance id is checked against the
    /// member holding that instance now, so a static member replaced by a newer one hears
    /// FENCED_INSTANCE_ID (librdkafka's own test 0102 waits for that fatal error; it heard
    /// UNKNOWN_MEMBER_ID, rejoined, and the two instances took turns fencing each other).
    fn check_member(&self, id: &str, instance: Option<&str>, generation: i32) -> Result<(), E> {
        if let Some(instance) = instance {
            match self.static_member(instance) {
                None => return Err(E::UnknownMemberId),
                Some(current) if current != id => return Err(E::FencedInstanceId),
                Some(_) => {}
            }
        }
        if !self.members.contains_key(id) {
            return Err(E::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(E::IllegalGeneration);
        }
        Ok(())
    }

    // ---- SyncGroup, Heartbeat, LeaveGroup ---------------------------------------------------

    /// Handles a SyncGroup.
    pub fn sync(&mut self, args: SyncArgs, now_ms: i64, out: &mut Outbox) -> Reply<SyncOutcome> {
        if self.state == GroupState::Dead {
            return Reply::Now(SyncOutcome::error(E::CoordinatorNotAvailable));
        }
        let id = args.member_id.clone();
        if let Err(e) = self.check_member(&id, args.instance_id.as_deref(), args.generation) {
            return Reply::Now(SyncOutcome::error(e));
        }
        let type_ok = args.protocol_type.is_none() || args.protocol_type == self.protocol_type;
        let name_ok = args.protocol_name.is_none() || args.protocol_name == self.protocol;
        if !type_ok || !name_ok {
            return Reply::Now(SyncOutcome::error(E::InconsistentGroupProtocol));
        }
        self.touch(&id, now_ms);
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(SyncOutcome::error(E::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::error(E::RebalanceInProgress))
            }
            GroupState::Stable if self.assignment_unwritten.is_none() => {
                Reply::Now(self.sync_outcome(&id))
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.awaiting_sync = true;
                }
                if self.leader.as_deref() == Some(id.as_str()) {
                    self.complete_sync(args.assignments, now_ms, out);
                }
                Reply::Later(id)
            }
        }
    }

    fn sync_outcome(&self, id: &str) -> SyncOutcome {
        SyncOutcome {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>, now_ms: i64, out: &mut Outbox) {
        let mut assignments: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = assignments.remove(&m.id).unwrap_or_default();
        }
        self.set_state(GroupState::Stable, now_ms);
        self.phase_deadline_ms = None;
        out.persist = true;
        out.sync_completed = Some(self.generation);
        self.assignment_unwritten = Some(self.generation);
        let waiting: Vec<String> =
            self.members.values().filter(|m| m.awaiting_sync).map(|m| m.id.clone()).collect();
        for id in waiting {
            let outcome = self.sync_outcome(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_sync = false;
                m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
            }
            out.syncs.push((id, outcome));
        }
    }

    /// The write of `generation`'s assignment landed (`written`) or failed: the answers of
    /// the members that sent SyncGroup while it ran, their assignment or
    /// COORDINATOR_NOT_AVAILABLE (as the leader's; they will rejoin).
    pub fn assignment_written(
        &mut self,
        generation: i32,
        written: bool,
        now_ms: i64,
    ) -> Vec<(String, SyncOutcome)> {
        if self.assignment_unwritten != Some(generation) {
            return Vec::new();
        }
        self.assignment_unwritten = None;
        let waiting: Vec<String> =
            self.members.values().filter(|m| m.awaiting_sync).map(|m| m.id.clone()).collect();
        let mut answers = Vec::with_capacity(waiting.len());
        for id in waiting {
            let outcome = if written {
                self.sync_outcome(&id)
            } else {
                SyncOutcome::error(E::CoordinatorNotAvailable)
            };
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_sync = false;
                m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
            }
            answers.push((id, outcome));
        }
        answers
    }

    /// Handles a Heartbeat; returns the error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return E::CoordinatorNotAvailable.code();
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return e.code();
        }
        self.touch(member_id, now_ms);
        match self.state {
            GroupState::Empty | GroupState::Dead => E::UnknownMemberId.code(),
            GroupState::PreparingRebalance => E::RebalanceInProgress.code(),
            GroupState::CompletingRebalance | GroupState::Stable => 0,
        }
    }

    /// Handles a LeaveGroup of `(member id, instance id)` pairs (an empty member id with an
    /// instance id names a static member); one error code per pair.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
        out: &mut Outbox,
    ) -> Vec<i16> {
        let mut codes = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for (member_id, instance) in leaving {
            let id = match (member_id.is_empty(), instance) {
                (true, Some(instance)) => self.static_member(instance),
                _ => Some(member_id.clone()),
            };
            let code = match id {
                Some(id) if self.pending.remove(&id).is_some() => 0,
                Some(id) => match self.members.get(&id) {
                    None => E::UnknownMemberId.code(),
                    Some(m) if instance.is_some() && m.instance_id != *instance => {
                        E::FencedInstanceId.code()
                    }
                    Some(_) => {
                        self.remove_member(&id, out);
                        removed = true;
                        0
                    }
                },
                None => E::UnknownMemberId.code(),
            };
            codes.push(code);
        }
        if removed || self.state == GroupState::PreparingRebalance {
            self.after_removal(now_ms, out);
        }
        codes
    }

    fn after_removal(&mut self, now_ms: i64, out: &mut Outbox) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.rebalance_for_change(now_ms, out)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- timers ------------------------------------------------------------------------------

    /// The next time [`Group::tick`] has something to do, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && !m.awaiting_sync)
            .map(|m| m.heartbeat_deadline_ms);
        let phase = match self.state {
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                self.phase_deadline_ms
            }
            _ => None,
        };
        let hold = self.initial_hold_ms.map(|(until, _)| until);
        members.chain(self.pending.values().copied()).chain(phase).chain(hold).min()
    }

    /// Applies every timeout due at `now_ms`: evicts members whose session expired and pending
    /// members that never rejoined, ends a join phase whose rebalance timeout passed (dropping
    /// members that did not rejoin) and a sync phase whose leader never sent the assignment,
    /// and ends the first join phase once its initial delay is over.
    ///
    /// Every deadline due is consumed: right after `tick(now)`, [`Group::next_deadline_ms`]
    /// is later than `now`, unless a member asked for a rebalance timeout of 0 or less (then
    /// one more tick ends that phase too).
    pub fn tick(&mut self, now_ms: i64, out: &mut Outbox) {
        self.pending.retain(|_, deadline| *deadline > now_ms);
        let hold_over = self.initial_hold_ms.is_some_and(|(until, _)| until <= now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && !m.awaiting_sync && m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, out);
        }
        let phase_over = self.phase_deadline_ms.is_some_and(|d| d <= now_ms);
        match self.state {
            GroupState::PreparingRebalance if phase_over => self.complete_join(now_ms, out),
            GroupState::CompletingRebalance if phase_over => {
                let idle: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| !m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in idle {
                    self.remove_member(&id, out);
                }
                self.rebalance_for_change(now_ms, out);
            }
            // Kafka's InitialDelayedJoin: once the delay is over the join phase completes with
            // the members that joined, without waiting for members given an id that have not
            // rejoined with it (they may never: a consumer closed right after its first join).
            GroupState::PreparingRebalance if hold_over => self.complete_join(now_ms, out),
            _ if !expired.is_empty() => self.after_removal(now_ms, out),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            _ => {}
        }
        if self.initial_hold_ms.is_some_and(|(until, _)| until <= now_ms) {
            self.initial_hold_ms = None;
        }
    }

    // ---- offsets -----------------------------------------------------------------------------

    /// Whether an OffsetCommit from this member may be applied (Kafka's `doCommitOffsets`
    /// checks). A generation below 0 on an empty group is a "simple" commit (manual
    /// assignment) and is allowed.
    ///
    /// As Kafka, the committer and its generation are checked first: a commit of an old
    /// generation during a rebalance is ILLEGAL_GENERATION (librdkafka's own test 0113
    /// accepts nothing else), and REBALANCE_IN_PROGRESS is only for a current member whose
    /// group is waiting for the leader's assignment (not for a transactional commit).
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        transactional: bool,
        now_ms: i64,
    ) -> Result<(), E> {
        match self.state {
            GroupState::Dead => return Err(E::CoordinatorNotAvailable),
            GroupState::Empty if generation < 0 => return Ok(()),
            _ => {}
        }
        self.check_member(member_id, instance_id, generation)?;
        if !transactional && self.state == GroupState::CompletingRebalance {
            return Err(E::RebalanceInProgress);
        }
        self.touch(member_id, now_ms);
        Ok(())
    }

    /// Whether DeleteGroups may delete this group.
    pub fn check_delete(&self) -> Result<(), E> {
        match self.state {
            GroupState::Empty => Ok(()),
            GroupState::Dead => Err(E::GroupIdNotFound),
            _ => Err(E::NonEmptyGroup),
        }
    }

    /// Marks the group deleted.
    pub fn mark_dead(&mut self, now_ms: i64) {
        self.set_state(GroupState::Dead, now_ms);
        self.offsets.clear();
    }

    /// Restores a group's membership from persisted metadata (start-up replay): it comes back
    /// `Stable` with fresh session deadlines, or `Empty` without members.
    pub fn restore(&mut self, snapshot: GroupSnapshot, now_ms: i64) {
        self.protocol_type = snapshot.protocol_type;
        self.generation = snapshot.generation;
        self.protocol = snapshot.protocol;
        self.leader = snapshot.leader;
        self.members = snapshot
            .members
            .into_iter()
            .map(|mut m| {
                m.awaiting_join = false;
                m.awaiting_sync = false;
                m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
                (m.id.clone(), m)
            })
            .collect();
        let state = if self.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        self.set_state(state, now_ms);
        self.assignment_unwritten = None;
        self.phase_deadline_ms = None;
    }

    /// The persisted part of the group's metadata.
    pub fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self.members.values().cloned().collect(),
        }
    }
}

/// Group metadata as persisted (Kafka's GroupMetadataValue).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GroupSnapshot {
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Generation id.
    pub generation: i32,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the state last changed.
    pub state_timestamp_ms: i64,
    /// Members with their chosen-protocol subscription and assignment.
    pub members: Vec<Member>,
}
