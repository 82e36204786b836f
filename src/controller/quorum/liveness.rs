//! Broker heartbeats and fencing: every broker tells every controller voter it is alive, and
//! learns from the Raft leader's answer which brokers the leader has heard from lately.
//!
//! A heartbeat carries the broker's epoch, handed out when this incarnation of the broker
//! registered; a voter counts it only when that is the broker's current epoch, so a
//! heartbeat of a previous incarnation (or a replayed one) keeps nobody alive.
//!
//! The leader fences a registered broker ([`Command::FenceBroker`], which moves the
//! leadership of its partitions to in-sync replicas) when either
//! - it has not heard from it within the session timeout (`broker_session_timeout_ms`,
//!   KRaft's broker.session.timeout.ms): a hung host, a network partition; or
//! - the connection its heartbeats came on closed, and no heartbeat came on another one
//!   within `broker_disconnect_timeout_ms`: a dead process (the kernel resets its sockets)
//!   or a shutdown. This is what makes failover after a crash take well under a second
//!   instead of a whole session timeout; a live broker whose connection merely broke
//!   reconnects and heartbeats within an interval.
//!
//! It unfences a fenced broker ([`Command::UnfenceBroker`]) when it heartbeats again. With
//! `auto_leader_rebalance` it also hands leadership back to preferred replicas
//! ([`Command::ElectPreferredLeaders`]) whenever one is eligible, and with
//! `partition_autobalancing` it moves replicas to even out how many each broker holds
//! ([`ClusterMetadata::balance_moves`], proposed as a [`Command::Reassign`]).
//!
//! Heartbeat times are not replicated, but every voter records them, so a voter that becomes
//! leader after the previous one died already knows who was alive (a leader's death does not
//! cost a second session timeout). Brokers this node never heard from count from the moment
//! it became leader: it never fences on information it does not have, and never fences
//! itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use super::net::{Peer, Rpc, RpcReply};
use super::store::StateMachine;
use super::transport::Transport;
use super::{ControllerRaft, NodeId};
use crate::controller::placement::{Command, UNCLEAN_LEADER_ELECTION};
use crate::controller::ClusterMetadata;

/// How long the leader waits for one of its fencing proposals to commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The timing of liveness, from the broker's settings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `broker_session_timeout_ms`.
    pub session_timeout: Duration,
    /// `broker_heartbeat_interval_ms`.
    pub interval: Duration,
    /// `broker_disconnect_timeout_ms`.
    pub disconnect_timeout: Duration,
}

/// A voter's record of heartbeats.
pub struct Sessions {
    /// When this node last became leader: brokers it never heard from count from then.
    since: Instant,
    seen: HashMap<i32, Instant>,
    /// The connection that carried each broker's latest heartbeat.
    carriers: HashMap<i32, u64>,
    /// Brokers whose heartbeat connection closed: fenced at this instant unless they
    /// heartbeat again before.
    suspects: HashMap<i32, Instant>,
    timing: Timing,
}

impl Sessions {
    fn new(timing: Timing) -> Sessions {
        Sessions {
            since: Instant::now(),
            seen: HashMap::new(),
            carriers: HashMap::new(),
            suspects: HashMap::new(),
            timing,
        }
    }

    /// This node became leader now.
    pub fn lead(&mut self, now: Instant) {
        self.since = now;
    }

    /// Records a heartbeat of `id` that came on connection `connection`.
    pub fn beat(&mut self, id: i32, connection: u64) {
        self.seen.insert(id, Instant::now());
        self.carriers.insert(id, connection);
        self.suspects.remove(&id);
    }

    /// Connection `connection` closed: the brokers whose heartbeats it carried are suspects.
    /// Whether any was.
    pub fn closed(&mut self, connection: u64) -> bool {
        let deadline = Instant::now() + self.timing.disconnect_timeout;
        let gone: Vec<i32> =
            self.carriers.iter().filter(|(_, &c)| c == connection).map(|(&id, _)| id).collect();
        for id in &gone {
            self.carriers.remove(id);
            self.suspects.insert(*id, deadline);
        }
        !gone.is_empty()
    }

    /// Whether `id` counts as alive at `now` (`me` always).
    fn live(&self, id: i32, me: i32, now: Instant) -> bool {
        if id == me {
            return true;
        }
        let last = self.seen.get(&id).copied().unwrap_or(self.since);
        let expired = now.duration_since(last) >= self.timing.session_timeout;
        let dropped = self.suspects.get(&id).is_some_and(|&deadline| now >= deadline);
        !expired && !dropped
    }

    /// Whether `id` actually heartbeat this node lately and is not a dropped suspect.
    fn heard(&self, id: i32, me: i32, now: Instant) -> bool {
        id == me || (self.seen.contains_key(&id) && self.live(id, me, now))
    }

    /// The brokers among `ids` that count as alive (`me` always).
    pub fn alive(&self, ids: impl Iterator<Item = i32>, me: i32) -> Vec<i32> {
        let now = Instant::now();
        ids.filter(|&id| self.live(id, me, now)).collect()
    }

    /// The fencing change the leader should propose now, if any: the first registered
    /// unfenced broker not alive, else the first fenced one heard from again.
    pub fn fencing_change(&self, meta: &ClusterMetadata, me: i32) -> Option<Command> {
        let now = Instant::now();
        let mut registered = meta.brokers.keys().copied();
        let expired = registered
            .find(|&id| !meta.fenced.contains(&id) && !self.live(id, me, now))
            .map(|id| Command::FenceBroker { id });
        expired.or_else(|| {
            let mut fenced = meta.fenced.iter().copied();
            let back = fenced.find(|&id| meta.brokers.contains_key(&id) && self.heard(id, me, now));
            back.map(|id| Command::UnfenceBroker { id })
        })
    }
}

/// What the controller thread shares about liveness.
#[derive(Clone)]
pub struct Liveness {
    /// Heartbeats received.
    pub sessions: Arc<Mutex<Sessions>>,
    /// The latest alive set known here (from the leader); `None` until one is known.
    pub alive: Arc<Mutex<Option<Vec<i32>>>>,
    /// Woken when a heartbeat connection closes, so the leader looks at once.
    pub wake: Arc<tokio::sync::Notify>,
    timing: Timing,
}

impl Liveness {
    /// Nothing known yet.
    pub fn new(timing: Timing) -> Liveness {
        let sessions = Arc::new(Mutex::new(Sessions::new(timing)));
        let wake = Arc::new(tokio::sync::Notify::new());
        Liveness { sessions, alive: Arc::default(), wake, timing }
    }

    fn set_alive(&self, alive: Option<Vec<i32>>) {
        if let Ok(mut slot) = self.alive.lock() {
            *slot = alive;
        }
    }

    /// A heartbeat connection closed (see [`Sessions::closed`]).
    pub fn connection_closed(&self, connection: u64) {
        let suspects = self.sessions.lock().map(|mut s| s.closed(connection)).unwrap_or(false);
        if suspects {
            self.wake.notify_one();
        }
    }
}

/// What the liveness loop works with.
pub struct Context {
    /// The Raft node.
    pub raft: ControllerRaft,
    /// The state machine, to read the current metadata.
    pub machine: StateMachine,
    /// This broker.
    pub me: i32,
    /// This process's incarnation (its registration carries it).
    pub incarnation: uuid::Uuid,
    /// The voters (heartbeat targets).
    pub members: BTreeMap<NodeId, BasicNode>,
    /// Shared liveness state.
    pub liveness: Liveness,
    /// How peers are reached.
    pub transport: Transport,
    /// Whether to propose [`Command::ElectPreferredLeaders`].
    pub auto_leader_rebalance: bool,
    /// Whether to balance replicas over brokers ([`ClusterMetadata::balance_moves`]).
    pub partition_autobalancing: bool,
    /// This broker's static `unclean.leader.election.enable` default, made the cluster's while
    /// it leads ([`Command::SetClusterDefaults`]) unless a dynamic broker config sets it.
    pub unclean_leader_election: bool,
}

/// Forever: heartbeat every voter (one task each); as leader, read the sessions, fence and
/// unfence brokers, restore preferred leaders; keep `alive` current.
pub async fn run(context: Context) {
    let Context { raft, machine, me, incarnation, members, liveness, transport, .. } = &context;
    for (&voter, node) in members.iter().filter(|(&id, _)| id != *me as NodeId) {
        let beat = Beat {
            voter,
            peer: Peer::new(node.addr.clone(), transport),
            raft: raft.clone(),
            machine: machine.clone(),
            me: *me,
            incarnation: *incarnation,
            liveness: liveness.clone(),
        };
        tokio::spawn(beat.run());
    }
    let interval = liveness.timing.interval;
    let mut was_leader = false;
    loop {
        let leader = raft.current_leader().await;
        let is_leader = leader == Some(*me as NodeId);
        if is_leader && !was_leader {
            if let Ok(mut sessions) = liveness.sessions.lock() {
                sessions.lead(Instant::now());
            }
        }
        was_leader = is_leader;
        if is_leader {
            // Voters, and every registered broker (observers included).
            let mut ids: BTreeSet<i32> = members.keys().map(|&id| id as i32).collect();
            machine.with_metadata(|meta| ids.extend(meta.brokers.keys().copied()));
            liveness
                .set_alive(liveness.sessions.lock().ok().map(|s| s.alive(ids.into_iter(), *me)));
            // After a change, the next one (if any) at once: brokers may fail together.
            if let Some(command) = leader_change(&context) {
                if propose(raft, command).await {
                    continue;
                }
            }
        } else if leader.is_none() {
            liveness.set_alive(None);
        }
        let sleep = tokio::time::sleep(interval);
        tokio::select! {
            _ = sleep => {}
            _ = liveness.wake.notified() => {}
        }
    }
}

/// The change the leader should propose now: fencing first, then the cluster defaults, then
/// preferred leaders, then the balancer's moves.
fn leader_change(context: &Context) -> Option<Command> {
    let Context { machine, me, liveness, auto_leader_rebalance, .. } = context;
    let balancing = context.partition_autobalancing;
    machine.with_metadata(|meta| {
        // A dynamic broker config (this broker's own, else the cluster-wide one) beats the
        // static setting.
        let unclean = meta
            .broker_value(*me, UNCLEAN_LEADER_ELECTION)
            .map_or(context.unclean_leader_election, |v| v == "true");
        let fencing = liveness.sessions.lock().ok()?.fencing_change(meta, *me);
        let defaults = (meta.unclean_leader_election != unclean)
            .then_some(Command::SetClusterDefaults { unclean_leader_election: unclean });
        let rebalance = *auto_leader_rebalance && meta.preferred_leaders_eligible();
        let leaders = || rebalance.then_some(Command::ElectPreferredLeaders);
        let balance = || {
            let moves = if balancing { meta.balance_moves() } else { Vec::new() };
            (!moves.is_empty()).then_some(Command::Reassign { moves })
        };
        fencing.or(defaults).or_else(leaders).or_else(balance)
    })
}

/// Writes a change of the leader's own (this node leads); whether it was applied. Failures
/// are logged, never retried here: the next tick proposes again if it is still needed.
async fn propose(raft: &ControllerRaft, command: Command) -> bool {
    match tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(command.clone())).await {
        Ok(Ok(written)) => match written.data {
            Ok(()) => {
                tracing::info!(?command, index = written.log_id.index, "controller change");
                return true;
            }
            Err(e) => tracing::debug!(?command, "controller change refused: {e}"),
        },
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            tracing::debug!(?command, "no longer the controller leader")
        }
        Ok(Err(e)) => tracing::warn!(?command, "controller change failed: {e}"),
        Err(_) => tracing::warn!(?command, "controller change not committed in time"),
    }
    false
}

/// This broker's heartbeats to one voter.
struct Beat {
    voter: NodeId,
    peer: Peer,
    raft: ControllerRaft,
    machine: StateMachine,
    me: i32,
    incarnation: uuid::Uuid,
    liveness: Liveness,
}

impl Beat {
    /// This incarnation's broker epoch, once its registration is applied here.
    fn epoch(&self) -> Option<i64> {
        self.machine.with_metadata(|meta| {
            let me = meta.brokers.get(&self.me)?;
            (me.incarnation == self.incarnation).then_some(me.epoch)
        })
    }

    async fn run(mut self) {
        let timing = self.liveness.timing;
        // A slow voter must not make this broker drop its connection (the voter would take
        // that for a death): wait up to half a session for an answer.
        let call_timeout = timing.session_timeout / 2;
        loop {
            let started = Instant::now();
            // A voter removed from the membership (decommissioned) is not contacted.
            let metrics = self.raft.metrics();
            let member = metrics
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.voter);
            drop(metrics);
            if let Some(epoch) = self.epoch().filter(|_| member) {
                let request = Rpc::Heartbeat { id: self.me, epoch };
                let answer = self.peer.call(&request, call_timeout).await;
                let leads = self.raft.current_leader().await == Some(self.voter);
                match answer {
                    Ok(RpcReply::Heartbeat { alive: Some(alive), .. }) => {
                        self.liveness.set_alive(Some(alive))
                    }
                    Ok(RpcReply::Heartbeat { refused: Some(why), .. }) => {
                        crate::log_limited!(WARN, voter = self.voter, "heartbeat refused: {why}")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(
                            voter = self.voter,
                            addr = self.peer.addr(),
                            "heartbeat failed: {e}"
                        );
                        if leads {
                            self.liveness.set_alive(None);
                        }
                    }
                }
            }
            let next = started + timing.interval;
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
    }
}
