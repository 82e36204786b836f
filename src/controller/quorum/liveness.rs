//! Broker heartbeats and fencing: every broker's controller tells the Raft leader it is
//! alive, and learns from the answer which brokers the leader has heard from lately.
//!
//! The leader fences a registered broker not heard from within the session timeout
//! (`broker_session_timeout_ms`, KRaft's broker.session.timeout.ms) by proposing
//! [`Command::FenceBroker`], which moves the leadership of its partitions to in-sync
//! replicas, and unfences it ([`Command::UnfenceBroker`]) when it heartbeats again. With
//! `auto_leader_rebalance` it also hands leadership back to preferred replicas
//! ([`Command::ElectPreferredLeaders`]) whenever one is eligible.
//!
//! Heartbeat times are not replicated: a new leader starts every broker's timer afresh, so it
//! never fences a broker on stale information, and never fences itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use super::net::{Peer, Rpc, RpcReply};
use super::store::StateMachine;
use super::{ControllerRaft, NodeId};
use crate::config::BrokerConfig;
use crate::controller::placement::Command;
use crate::controller::ClusterMetadata;

/// The longest pause between two heartbeats of a broker.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long the leader waits for one of its fencing proposals to commit.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a broker heartbeats the controller: a sixth of the session timeout, at most
/// [`HEARTBEAT_INTERVAL`].
pub fn heartbeat_interval(session_timeout: Duration) -> Duration {
    (session_timeout / 6).min(HEARTBEAT_INTERVAL)
}

/// The leader's record of heartbeats.
pub struct Sessions {
    /// When this node last became leader: brokers not heard from since get until then plus
    /// the timeout.
    since: Instant,
    seen: HashMap<i32, Instant>,
    timeout: Duration,
}

impl Sessions {
    fn new(timeout: Duration) -> Sessions {
        Sessions { since: Instant::now(), seen: HashMap::new(), timeout }
    }

    /// Records a heartbeat of `id`.
    pub fn beat(&mut self, id: i32) {
        self.seen.insert(id, Instant::now());
    }

    /// Whether `id` counts as alive: heard from (or, if not since this node leads, the
    /// leadership began) within the session timeout; `me` always.
    fn live(&self, id: i32, me: i32, now: Instant) -> bool {
        let last = self.seen.get(&id).copied().unwrap_or(self.since).max(self.since);
        id == me || now.duration_since(last) < self.timeout
    }

    /// Whether `id` actually heartbeat this leader within the session timeout (`me` always).
    fn heard(&self, id: i32, me: i32, now: Instant) -> bool {
        id == me || self.seen.get(&id).is_some_and(|&t| now.duration_since(t) < self.timeout)
    }

    /// The brokers among `ids` heard from within the session timeout (`me` always).
    pub fn alive(&self, ids: impl Iterator<Item = i32>, me: i32) -> Vec<i32> {
        let now = Instant::now();
        ids.filter(|&id| self.live(id, me, now)).collect()
    }

    /// The fencing change the leader should propose now, if any: the first registered
    /// unfenced broker whose session expired, else the first fenced one heard from again.
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
    /// Heartbeats received while leader.
    pub sessions: Arc<Mutex<Sessions>>,
    /// The latest alive set known here (from the leader); `None` until one is known.
    pub alive: Arc<Mutex<Option<Vec<i32>>>>,
    /// The session timeout.
    timeout: Duration,
}

impl Liveness {
    /// Nothing known yet; brokers are fenced after `session_timeout` without heartbeats.
    pub fn new(session_timeout: Duration) -> Liveness {
        let sessions = Arc::new(Mutex::new(Sessions::new(session_timeout)));
        Liveness { sessions, alive: Arc::default(), timeout: session_timeout }
    }

    fn set_alive(&self, alive: Option<Vec<i32>>) {
        if let Ok(mut slot) = self.alive.lock() {
            *slot = alive;
        }
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(Duration::from_millis(BrokerConfig::default().broker_session_timeout_ms))
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
    /// The voters (the leader is one of them: heartbeat targets).
    pub members: BTreeMap<NodeId, BasicNode>,
    /// Shared liveness state.
    pub liveness: Liveness,
    /// Whether to propose [`Command::ElectPreferredLeaders`].
    pub auto_leader_rebalance: bool,
}

/// Forever: heartbeat the leader (or, as leader, read the sessions, fence and unfence
/// brokers, restore preferred leaders) and keep `alive` current.
pub async fn run(context: Context) {
    let Context { raft, machine, me, members, liveness, auto_leader_rebalance } = context;
    let interval = heartbeat_interval(liveness.timeout);
    let mut peer: Option<(NodeId, Peer)> = None;
    let mut was_leader = false;
    loop {
        let leader = raft.current_leader().await;
        let is_leader = leader == Some(me as NodeId);
        if is_leader && !was_leader {
            if let Ok(mut sessions) = liveness.sessions.lock() {
                *sessions = Sessions::new(liveness.timeout);
            }
        }
        was_leader = is_leader;
        let alive = match leader {
            Some(_) if is_leader => {
                // Voters, and every registered broker (observers included).
                let mut ids: BTreeSet<i32> = members.keys().map(|&id| id as i32).collect();
                machine.with_metadata(|meta| ids.extend(meta.brokers.keys().copied()));
                liveness.sessions.lock().ok().map(|s| s.alive(ids.into_iter(), me))
            }
            Some(leader) => heartbeat(&mut peer, leader, &members, me, interval).await,
            None => None,
        };
        liveness.set_alive(alive);
        if is_leader {
            let change = machine.with_metadata(|meta| {
                let fencing = liveness.sessions.lock().ok()?.fencing_change(meta, me);
                let rebalance = auto_leader_rebalance && meta.preferred_leaders_eligible();
                fencing.or_else(|| rebalance.then_some(Command::ElectPreferredLeaders))
            });
            // After a change, the next one (if any) at once: brokers may fail together.
            if let Some(command) = change {
                if propose(&raft, command).await {
                    continue;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
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

async fn heartbeat(
    peer: &mut Option<(NodeId, Peer)>,
    leader: NodeId,
    members: &BTreeMap<NodeId, BasicNode>,
    me: i32,
    interval: Duration,
) -> Option<Vec<i32>> {
    if peer.as_ref().map(|(id, _)| *id) != Some(leader) {
        let addr = members.get(&leader)?.addr.clone();
        *peer = Some((leader, Peer::new(addr)));
    }
    let (_, connection) = peer.as_mut()?;
    match connection.call(&Rpc::Heartbeat { id: me }, interval).await {
        Ok(RpcReply::Heartbeat { alive }) => alive,
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(leader, "heartbeat failed: {e}");
            None
        }
    }
}
