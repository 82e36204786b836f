//! The pure state machine of one KIP-848 consumer group ("consumer" protocol).
//!
//! A [`ConsumerGroup`] lives on the shard that coordinates it. No call reads a clock or does
//! I/O: time comes in as `now_ms`, the cluster's topics as a [`Topics`] view, and every
//! answer goes out as a return value. The coordinator persists [`records::image`] after each
//! change and drives [`ConsumerGroup::tick`] from a timer at [`ConsumerGroup::next_deadline_ms`].
//!
//! The protocol (Kafka 4.x's `GroupMetadataManager`, simplified where noted):
//! * The **group epoch** is bumped whenever membership, a subscription or the metadata of a
//!   subscribed topic changes. At the next heartbeat the server-side assignor computes a new
//!   **target assignment** whose epoch (the assignment epoch) is the group epoch.
//! * Each member converges to its target by **incremental reconciliation**: when its target
//!   takes partitions away, it is first told to keep only `assigned ∩ target`
//!   (UNREVOKED_PARTITIONS, member epoch unchanged); once a heartbeat shows it no longer owns
//!   the revoked ones, it moves to the assignment epoch and receives the partitions of its
//!   target that no other member still owns (UNRELEASED_PARTITIONS until all are free).
//!   A partition is thus never owned by two members.
//! * A member is fenced (removed, its partitions freed) when its session times out or when it
//!   does not revoke within its rebalance timeout.
//! * Static members (`instance_id`) leave with epoch -2: they keep their assignment until the
//!   session times out, and a new member with the same instance id takes it over.

pub mod assignor;
pub mod classic;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::protocol::ResponseError as E;

/// A topic partition by topic id.
pub type Tp = (Uuid, i32);

/// Member epoch of a leave request (dynamic member).
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member's temporary leave.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// The cluster's topics as the group sees them: name → (id, partition count).
pub type Topics = BTreeMap<String, (Uuid, i32)>;

/// Partitions by topic id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment(pub BTreeMap<Uuid, BTreeSet<i32>>);

impl Assignment {
    /// From (topic, partition) pairs.
    pub fn from_tps(tps: impl IntoIterator<Item = Tp>) -> Assignment {
        let mut a = Assignment::default();
        for (t, p) in tps {
            a.0.entry(t).or_default().insert(p);
        }
        a
    }

    /// From the wire's (topic id, partitions) lists.
    pub fn from_wire(topics: &[(Uuid, Vec<i32>)]) -> Assignment {
        Assignment::from_tps(topics.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))))
    }

    /// As the wire's (topic id, partitions) lists.
    pub fn to_wire(&self) -> Vec<(Uuid, Vec<i32>)> {
        self.0
            .iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(t, ps)| (*t, ps.iter().copied().collect()))
            .collect()
    }

    /// Every (topic, partition).
    pub fn iter_tps(&self) -> impl Iterator<Item = Tp> + '_ {
        self.0.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
    }

    /// Whether it holds `tp`.
    pub fn contains(&self, tp: &Tp) -> bool {
        self.0.get(&tp.0).is_some_and(|ps| ps.contains(&tp.1))
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partitions of `self` that `keep` says yes to.
    pub fn filter(&self, keep: impl Fn(&Tp) -> bool) -> Assignment {
        Assignment::from_tps(self.iter_tps().filter(|tp| keep(tp)))
    }

    /// Whether every partition of `self` is in `other`.
    pub fn is_subset(&self, other: &Assignment) -> bool {
        self.iter_tps().all(|tp| other.contains(&tp))
    }
}

/// Where a member is in its reconciliation (Kafka's `MemberState` and its record values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// At the assignment epoch with its whole target.
    Stable,
    /// Must give up `pending_revocation` before it moves on.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for partitions others still own.
    UnreleasedPartitions,
}

impl MemberState {
    /// The value in ConsumerGroupCurrentMemberAssignmentValue.State.
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    /// From a record's value (unknown values read as Stable, which reconciles again).
    pub fn from_code(code: i8) -> MemberState {
        match code {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// One member of a consumer group.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host (`/127.0.0.1`).
    pub client_host: String,
    /// Subscribed topic names.
    pub topic_names: Vec<String>,
    /// Subscribed regular expression.
    pub topic_regex: Option<String>,
    /// The assignor the member asked for.
    pub server_assignor: Option<String>,
    /// Rebalance timeout: how long it may take to revoke.
    pub rebalance_timeout_ms: i32,
    /// Member epoch (-2 while a static member is away).
    pub epoch: i32,
    /// The epoch before the last bump (a member whose answer was lost may retry with it).
    pub previous_epoch: i32,
    /// Reconciliation state.
    pub state: MemberState,
    /// Partitions it owns.
    pub assigned: Assignment,
    /// Partitions it must give up (still owned until it acknowledges).
    pub pending_revocation: Assignment,
    /// Fenced when this passes without a heartbeat.
    pub session_deadline_ms: i64,
    /// Fenced when this passes before it revoked (UNREVOKED_PARTITIONS only).
    pub revocation_deadline_ms: Option<i64>,
    /// Classic members only: fenced when this passes before its SyncGroup (Kafka's classic
    /// member sync timeout, its rebalance timeout from the JoinGroup answered last).
    pub sync_deadline_ms: Option<i64>,
    /// Set for a member that speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat)
    /// inside this consumer group (Kafka's ClassicMemberMetadata): see [`classic`].
    pub classic: Option<classic::ClassicMember>,
}

impl Member {
    fn new(id: &str) -> Member {
        Member {
            id: id.to_owned(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            topic_names: Vec::new(),
            topic_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: 0,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::default(),
            pending_revocation: Assignment::default(),
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
            sync_deadline_ms: None,
            classic: None,
        }
    }

    /// The existing topics it subscribes to (names, plus regex matches): name → (id, count).
    pub fn subscribed(&self, topics: &Topics) -> BTreeMap<String, (Uuid, i32)> {
        let regex = self.topic_regex.as_deref().and_then(|r| compile(r).ok());
        let matches = |name: &str| {
            self.topic_names.iter().any(|n| n == name)
                || regex.as_ref().is_some_and(|re| !name.starts_with("__") && re.is_match(name))
        };
        topics.iter().filter(|(n, _)| matches(n)).map(|(n, v)| (n.clone(), *v)).collect()
    }
}

/// A hash of topics' names, ids and partition counts (FNV-1a 64, Strata's own: Kafka 4.1 hashes
/// differently, and its value is only ever compared with one computed here).
pub fn metadata_hash(topics: &Topics) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    for (name, (id, count)) in topics {
        eat(name.as_bytes());
        eat(&[0]);
        eat(id.as_bytes());
        eat(&count.to_be_bytes());
    }
    h
}

/// Compiles a subscription regex with Java's `Pattern.matches` semantics (the whole name must
/// match). Kafka uses RE2/J; the `regex` crate implements the same RE2 syntax, except that it
/// also accepts a few Perl classes RE2/J refuses and treats `\Q..\E`, `\C` and `(?U)` as RE2/J
/// does not (refused here or meaning something else); size is bounded by the crate's default
/// limits, where RE2/J has its own.
pub fn compile(regex: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{regex})$"))
}

/// Group-wide settings (broker configs).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.assignors`, the first is the default.
    pub assignors: Vec<String>,
    /// `group.consumer.max.size`.
    pub max_size: usize,
    /// `group.consumer.migration.policy`.
    pub migration: Migration,
}

/// Kafka's `group.consumer.migration.policy`: which online conversions between a classic
/// group and a consumer group happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migration {
    /// Both ways (Kafka 4.0's default).
    Bidirectional,
    /// Classic to consumer only.
    Upgrade,
    /// Consumer to classic only.
    Downgrade,
    /// Neither.
    Disabled,
}

impl Migration {
    /// From the setting's value (case-insensitive; anything else is `Disabled`, and the
    /// broker's config check refuses it before it gets here).
    pub fn parse(value: &str) -> Migration {
        match value.to_ascii_lowercase().as_str() {
            "bidirectional" => Migration::Bidirectional,
            "upgrade" => Migration::Upgrade,
            "downgrade" => Migration::Downgrade,
            _ => Migration::Disabled,
        }
    }

    /// Whether a classic group may become a consumer group.
    pub fn upgrade(self) -> bool {
        matches!(self, Migration::Bidirectional | Migration::Upgrade)
    }

    /// Whether a consumer group may become a classic group.
    pub fn downgrade(self) -> bool {
        matches!(self, Migration::Bidirectional | Migration::Downgrade)
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            assignors: vec!["uniform".into(), "range".into()],
            max_size: super::GROUP_MEMBERS_MAX,
            migration: Migration::Bidirectional,
        }
    }
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatArgs {
    /// Member id (filled in by the coordinator for a new v0 member).
    pub member_id: String,
    /// Member epoch: 0 joins, -1 leaves, -2 leaves a static member temporarily.
    pub epoch: i32,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Rebalance timeout, -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed names, `None` when unchanged.
    pub topic_names: Option<Vec<String>>,
    /// Subscribed regex, `None` when unchanged.
    pub topic_regex: Option<String>,
    /// Server assignor, `None` when unchanged.
    pub server_assignor: Option<String>,
    /// The partitions the member owns, `None` when unchanged.
    pub owned: Option<Assignment>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// A heartbeat's answer (the error fields are zero/`None` on success).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeartbeatReply {
    /// Member id.
    pub member_id: String,
    /// Member epoch.
    pub epoch: i32,
    /// Heartbeat interval.
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it must (re)learn it.
    pub assignment: Option<Assignment>,
}

/// A refused heartbeat: error and message.
pub type Refusal = (E, Option<String>);

fn refuse<T>(e: E, why: &str) -> Result<T, Refusal> {
    Err((e, Some(why.to_owned())))
}

/// Where a consumer group is in its life cycle (the names of DescribeGroups/ListGroups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// The group epoch is ahead of the target assignment.
    Assigning,
    /// Some member has not converged to its target.
    Reconciling,
    /// Every member at the assignment epoch with its target.
    Stable,
}

impl GroupState {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// One consumer group. See the module docs.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    /// Group id.
    pub id: String,
    /// Group epoch.
    pub epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Target assignment by member id.
    pub target: BTreeMap<String, Assignment>,
    /// Subscribed topics' metadata at the last heartbeat (`None` after a restart).
    pub metadata: Option<Topics>,
    /// [`metadata_hash`] of `metadata`, persisted (Kafka 4.1's MetadataHash field): a restart
    /// compares against it, so topic changes while the broker was down move the epoch too.
    pub metadata_hash: u64,
    /// The assignor of the last target.
    pub assignor: String,
    /// Settings.
    pub settings: Settings,
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(id: &str, settings: Settings) -> ConsumerGroup {
        let assignor = settings.assignors.first().cloned().unwrap_or_else(|| "uniform".into());
        ConsumerGroup {
            id: id.to_owned(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: Some(Topics::new()),
            metadata_hash: metadata_hash(&Topics::new()),
            assignor,
            settings,
        }
    }

    /// Life-cycle state.
    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            GroupState::Assigning
        } else if self.members.values().any(|m| {
            m.epoch != STATIC_LEAVE_EPOCH
                && (m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        }) {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    /// The member holding `instance_id`, if any.
    pub fn static_member(&self, instance_id: &str) -> Option<&Member> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// Handles one ConsumerGroupHeartbeat (`version` decides who names new members).
    pub fn heartbeat(
        &mut self,
        args: HeartbeatArgs,
        topics: &Topics,
        now_ms: i64,
    ) -> Result<HeartbeatReply, Refusal> {
        validate(&args, &self.settings)?;
        if args.epoch == LEAVE_EPOCH || args.epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&args);
        }
        let before = self.members.get(&args.member_id).cloned();
        if args.epoch == 0 {
            self.join(&args, now_ms)?;
        } else {
            self.check_epoch(&args)?;
        }
        let full = args.owned.is_some()
            && args.rebalance_timeout_ms != -1
            && (args.topic_names.is_some() || args.topic_regex.is_some());
        let changed = self.update_member(&args, now_ms);
        self.bump_epoch_and_target(changed, topics);
        self.reconcile(&args.member_id, args.owned.as_ref(), now_ms);
        let Some(m) = self.members.get(&args.member_id) else {
            return refuse(E::UnknownMemberId, "the member is gone");
        };
        let moved = before.as_ref().is_none_or(|b| b.assigned != m.assigned || b.epoch != m.epoch);
        Ok(HeartbeatReply {
            member_id: m.id.clone(),
            epoch: m.epoch,
            heartbeat_interval_ms: self.settings.heartbeat_interval_ms,
            assignment: (full || moved).then(|| m.assigned.clone()),
        })
    }

    /// Epoch 0: a new member, a member starting over, or a static member's replacement.
    fn join(&mut self, args: &HeartbeatArgs, now_ms: i64) -> Result<(), Refusal> {
        if let Some(instance) = &args.instance_id {
            let holder = self.static_member(instance);
            let holder = holder.map(|m| (m.id.clone(), m.epoch, m.classic.is_some()));
            if let Some((old_id, old_epoch, classic)) = holder {
                if old_id != args.member_id && classic {
                    // A classic member's place is taken at once (Kafka does not wait for a
                    // leave it cannot send); the newcomer speaks the consumer protocol.
                    self.replace_static(&old_id, &args.member_id);
                    if let Some(m) = self.members.get_mut(&args.member_id) {
                        m.classic = None;
                        m.sync_deadline_ms = None;
                        m.session_deadline_ms =
                            now_ms + i64::from(self.settings.session_timeout_ms);
                    }
                    return Ok(());
                }
                if old_id != args.member_id && old_epoch != STATIC_LEAVE_EPOCH {
                    return refuse(E::UnreleasedInstanceId, "the instance id is in use");
                }
                if old_id != args.member_id {
                    // Takes over the old member's place: its assignment and epoch.
                    if let Some(mut m) = self.members.remove(&old_id) {
                        m.id = args.member_id.clone();
                        m.epoch = m.previous_epoch.max(0);
                        m.session_deadline_ms =
                            now_ms + i64::from(self.settings.session_timeout_ms);
                        self.members.insert(m.id.clone(), m);
                    }
                    if let Some(t) = self.target.remove(&old_id) {
                        self.target.insert(args.member_id.clone(), t);
                    }
                    return Ok(());
                }
            }
        }
        if self.members.remove(&args.member_id).is_some() {
            // A known member starting over with epoch 0: it gave up everything.
            self.target.remove(&args.member_id);
            self.epoch += 1;
        }
        if self.members.len() >= self.settings.max_size {
            return refuse(E::GroupMaxSizeReached, "the group has reached its max size");
        }
        let mut m = Member::new(&args.member_id);
        m.session_deadline_ms = now_ms + i64::from(self.settings.session_timeout_ms);
        self.members.insert(m.id.clone(), m);
        Ok(())
    }

    /// Kafka's `throwIfMemberEpochIsInvalid` for a member already in the group.
    fn check_epoch(&self, args: &HeartbeatArgs) -> Result<(), Refusal> {
        let Some(m) = self.members.get(&args.member_id) else {
            return refuse(E::UnknownMemberId, "unknown member id");
        };
        if args.instance_id.is_some() && m.instance_id != args.instance_id {
            return refuse(E::FencedInstanceId, "the instance id belongs to another member");
        }
        if args.epoch > m.epoch {
            return refuse(E::FencedMemberEpoch, "the member epoch is ahead of the group's");
        }
        if args.epoch < m.epoch {
            let lost_answer = args.epoch == m.previous_epoch
                && args.owned.as_ref().is_some_and(|o| o.is_subset(&m.assigned));
            if !lost_answer {
                return refuse(E::FencedMemberEpoch, "the member epoch is stale");
            }
        }
        Ok(())
    }

    /// Copies what the heartbeat carries into the member; whether its subscription changed.
    fn update_member(&mut self, args: &HeartbeatArgs, now_ms: i64) -> bool {
        let session = i64::from(self.settings.session_timeout_ms);
        let Some(m) = self.members.get_mut(&args.member_id) else {
            return false;
        };
        let old = (m.topic_names.clone(), m.topic_regex.clone(), m.server_assignor.clone());
        m.session_deadline_ms = now_ms + session;
        if args.instance_id.is_some() {
            m.instance_id = args.instance_id.clone();
        }
        if args.rack_id.is_some() {
            m.rack_id = args.rack_id.clone();
        }
        if args.rebalance_timeout_ms != -1 {
            m.rebalance_timeout_ms = args.rebalance_timeout_ms;
        }
        if let Some(names) = &args.topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            m.topic_names = names;
        }
        if let Some(regex) = &args.topic_regex {
            m.topic_regex = (!regex.is_empty()).then(|| regex.clone());
        }
        if let Some(assignor) = &args.server_assignor {
            m.server_assignor = (!assignor.is_empty()).then(|| assignor.clone());
        }
        m.client_id.clone_from(&args.client_id);
        m.client_host.clone_from(&args.client_host);
        let new_member = m.epoch == 0 && m.assigned.is_empty() && !self.target.contains_key(&m.id);
        new_member
            || old != (m.topic_names.clone(), m.topic_regex.clone(), m.server_assignor.clone())
    }

    /// After a member joined or changed (`changed`: its subscription did): a new group epoch
    /// if the subscription or the subscribed topics' metadata changed, then the target
    /// assignment for it.
    fn bump_epoch_and_target(&mut self, changed: bool, topics: &Topics) {
        let meta = self.subscribed_metadata(topics);
        let hash = metadata_hash(&meta);
        if changed || hash != self.metadata_hash {
            self.epoch += 1;
        }
        self.metadata = Some(meta);
        self.metadata_hash = hash;
        if self.epoch > self.assignment_epoch {
            self.update_target(topics);
        }
    }

    /// The metadata of every topic some member subscribes to.
    fn subscribed_metadata(&self, topics: &Topics) -> Topics {
        self.members.values().flat_map(|m| m.subscribed(topics)).collect()
    }

    /// Computes the target assignment for the group epoch.
    fn update_target(&mut self, topics: &Topics) {
        let assignor = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
            .filter(|a| self.settings.assignors.contains(a))
            .unwrap_or_else(|| self.settings.assignors.first().cloned().unwrap_or_default());
        let specs: BTreeMap<String, assignor::MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let topics = m.subscribed(topics).into_values().collect();
                let previous = self.target.get(&m.id).cloned().unwrap_or_default();
                (m.id.clone(), assignor::MemberSpec { topics, previous })
            })
            .collect();
        self.target = assignor::assign(&assignor, &specs);
        self.assignor = assignor;
        self.assignment_epoch = self.epoch;
    }

    /// Whether a member other than `member_id` owns `tp` (assigned or still revoking).
    fn owned_by_other(&self, member_id: &str, tp: &Tp) -> bool {
        self.members.values().any(|m| {
            m.id != member_id && (m.assigned.contains(tp) || m.pending_revocation.contains(tp))
        })
    }

    /// Moves `member_id` one step towards its target (see the module docs).
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        if m.state == MemberState::UnrevokedPartitions {
            let revoked =
                owned.is_some_and(|o| !m.pending_revocation.iter_tps().any(|tp| o.contains(&tp)));
            if !revoked {
                return;
            }
        } else if m.epoch == assignment_epoch && m.state == MemberState::Stable {
            return;
        }
        let keep = m.assigned.filter(|tp| target.contains(tp));
        let revoke = m.assigned.filter(|tp| !target.contains(tp));
        let wanted = target.filter(|tp| !keep.contains(tp));
        let free = wanted.filter(|tp| !self.owned_by_other(member_id, tp));
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        m.pending_revocation = Assignment::default();
        m.revocation_deadline_ms = None;
        if !revoke.is_empty() {
            m.assigned = keep;
            m.pending_revocation = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revocation_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(0)));
            return;
        }
        let complete = free.len() == wanted.len();
        m.assigned = Assignment::from_tps(keep.iter_tps().chain(free.iter_tps()));
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        m.state = if complete { MemberState::Stable } else { MemberState::UnreleasedPartitions };
    }

    /// Epoch -1 (leave) or -2 (a static member's temporary leave).
    fn leave(&mut self, args: &HeartbeatArgs) -> Result<HeartbeatReply, Refusal> {
        let found = match &args.instance_id {
            Some(instance) => self.static_member(instance).map(|m| m.id.clone()),
            None => self.members.contains_key(&args.member_id).then(|| args.member_id.clone()),
        };
        let Some(id) = found else {
            return refuse(E::UnknownMemberId, "unknown member id");
        };
        if id != args.member_id {
            return refuse(E::FencedInstanceId, "the instance id belongs to another member");
        }
        if args.epoch == STATIC_LEAVE_EPOCH {
            if let Some(m) = self.members.get_mut(&id) {
                if m.epoch != STATIC_LEAVE_EPOCH {
                    m.previous_epoch = m.epoch;
                }
                m.epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            self.remove_member(&id);
        }
        Ok(HeartbeatReply {
            member_id: id,
            epoch: args.epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes (fences) a member: its partitions are free, the group epoch moves.
    pub fn remove_member(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.epoch += 1;
        }
    }

    /// The earliest session, revocation or sync deadline.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| {
                let timers = m.revocation_deadline_ms.into_iter().chain(m.sync_deadline_ms);
                std::iter::once(m.session_deadline_ms).chain(timers)
            })
            .min()
    }

    /// Fences every member whose session, revocation or sync deadline passed; returns their
    /// ids.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let passed = |deadline: Option<i64>| deadline.is_some_and(|d| d <= now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || passed(m.revocation_deadline_ms)
                    || passed(m.sync_deadline_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id);
        }
        expired
    }

    /// Kafka's OffsetCommit check for consumer groups (`validateOffsetCommit`): a commit
    /// with a negative epoch (an admin tool, or a consumer without group management) is
    /// allowed on an empty group only; otherwise the member must exist (UNKNOWN_MEMBER_ID)
    /// and commit with its current epoch (STALE_MEMBER_EPOCH).
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), E> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(E::UnknownMemberId);
        };
        if epoch != m.epoch {
            // A classic member commits with its generation (Kafka: ILLEGAL_GENERATION).
            return Err(if m.classic.is_some() {
                E::IllegalGeneration
            } else {
                E::StaleMemberEpoch
            });
        }
        Ok(())
    }

    /// OffsetFetch v9's check (`validateOffsetFetch`): without member id and with a negative
    /// epoch anyone may fetch; otherwise the member must exist with that epoch.
    pub fn check_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), E> {
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id.unwrap_or_default()) else {
            return Err(E::UnknownMemberId);
        };
        if epoch != m.epoch {
            return Err(E::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid` (INVALID_REQUEST with a message),
/// then the assignor and regex checks.
pub fn validate(a: &HeartbeatArgs, settings: &Settings) -> Result<(), Refusal> {
    if a.member_id.is_empty() {
        return refuse(E::InvalidRequest, "MemberId can't be empty.");
    }
    if a.instance_id.as_deref() == Some("") {
        return refuse(E::InvalidRequest, "InstanceId can't be empty.");
    }
    if a.rack_id.as_deref() == Some("") {
        return refuse(E::InvalidRequest, "RackId can't be empty.");
    }
    match a.epoch {
        0 => {
            if a.rebalance_timeout_ms == -1 {
                return refuse(
                    E::InvalidRequest,
                    "RebalanceTimeoutMs must be provided in first request.",
                );
            }
            if a.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return refuse(
                    E::InvalidRequest,
                    "TopicPartitions must be empty when (re-)joining.",
                );
            }
            let names = a.topic_names.as_ref().is_some_and(|n| !n.is_empty());
            let regex = a.topic_regex.as_ref().is_some_and(|r| !r.is_empty());
            if !names && !regex && a.topic_names.is_none() {
                return refuse(
                    E::InvalidRequest,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        STATIC_LEAVE_EPOCH if a.instance_id.is_none() => {
            return refuse(E::InvalidRequest, "InstanceId can't be null.");
        }
        e if e < STATIC_LEAVE_EPOCH => return refuse(E::InvalidRequest, "MemberEpoch is invalid."),
        _ => {}
    }
    if let Some(name) = a.server_assignor.as_deref().filter(|n| !n.is_empty()) {
        if !settings.assignors.iter().any(|a| a == name) {
            return refuse(
                E::UnsupportedAssignor,
                &format!("ServerAssignor {name} is not supported."),
            );
        }
    }
    if let Some(re) = a.topic_regex.as_deref().filter(|r| !r.is_empty()) {
        if let Err(e) = compile(re) {
            return refuse(
                E::InvalidRegularExpression,
                &format!("SubscribedTopicRegex is invalid: {e}"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
