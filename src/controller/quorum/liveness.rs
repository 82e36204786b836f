//! Broker heartbeats: every broker's controller tells the Raft leader it is alive, and learns
//! from the answer which brokers the leader has heard from lately.
//!
//! Liveness is not replicated (a new leader starts every broker's timer afresh, so it never
//! declares a broker dead on stale information) and, in this phase, only reported
//! (DescribeCluster's `is_fenced`, `strata cluster info`): placement and leadership do not
//! depend on it yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::BasicNode;

use super::net::{Peer, Rpc, RpcReply};
use super::{ControllerRaft, NodeId};

/// How often a broker heartbeats the controller.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A broker not heard from for this long is reported dead (KRaft's broker.session.timeout.ms
/// is 9 s; brokers here are few and on one network).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
const _: () = assert!(SESSION_TIMEOUT.as_millis() >= 4 * HEARTBEAT_INTERVAL.as_millis());

/// The leader's record of heartbeats.
pub struct Sessions {
    /// When this node last became leader: brokers not heard from since get until then plus
    /// the timeout.
    since: Instant,
    seen: HashMap<i32, Instant>,
}

impl Sessions {
    fn new() -> Sessions {
        Sessions { since: Instant::now(), seen: HashMap::new() }
    }

    /// Records a heartbeat of `id`.
    pub fn beat(&mut self, id: i32) {
        self.seen.insert(id, Instant::now());
    }

    /// The brokers among `ids` heard from within the session timeout (`me` always).
    pub fn alive(&self, ids: impl Iterator<Item = i32>, me: i32) -> Vec<i32> {
        let now = Instant::now();
        ids.filter(|id| {
            let last = self.seen.get(id).copied().unwrap_or(self.since).max(self.since);
            *id == me || now.duration_since(last) < SESSION_TIMEOUT
        })
        .collect()
    }
}

/// What the controller thread shares about liveness.
#[derive(Clone)]
pub struct Liveness {
    /// Heartbeats received while leader.
    pub sessions: Arc<Mutex<Sessions>>,
    /// The latest alive set known here (from the leader); `None` until one is known.
    pub alive: Arc<Mutex<Option<Vec<i32>>>>,
}

impl Liveness {
    /// Nothing known yet.
    pub fn new() -> Liveness {
        Liveness { sessions: Arc::new(Mutex::new(Sessions::new())), alive: Arc::default() }
    }

    fn set_alive(&self, alive: Option<Vec<i32>>) {
        if let Ok(mut slot) = self.alive.lock() {
            *slot = alive;
        }
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

/// Forever: heartbeat the leader (or, as leader, read the sessions) and keep `alive` current.
pub async fn run(
    raft: ControllerRaft,
    me: i32,
    members: BTreeMap<NodeId, BasicNode>,
    liveness: Liveness,
) {
    let mut peer: Option<(NodeId, Peer)> = None;
    let mut was_leader = false;
    loop {
        let leader = raft.current_leader().await;
        let is_leader = leader == Some(me as NodeId);
        if is_leader && !was_leader {
            if let Ok(mut sessions) = liveness.sessions.lock() {
                *sessions = Sessions::new();
            }
        }
        was_leader = is_leader;
        let alive = match leader {
            Some(_) if is_leader => liveness
                .sessions
                .lock()
                .ok()
                .map(|s| s.alive(members.keys().map(|&id| id as i32), me)),
            Some(leader) => heartbeat(&mut peer, leader, &members, me).await,
            None => None,
        };
        liveness.set_alive(alive);
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
    }
}

async fn heartbeat(
    peer: &mut Option<(NodeId, Peer)>,
    leader: NodeId,
    members: &BTreeMap<NodeId, BasicNode>,
    me: i32,
) -> Option<Vec<i32>> {
    if peer.as_ref().map(|(id, _)| *id) != Some(leader) {
        let addr = members.get(&leader)?.addr.clone();
        *peer = Some((leader, Peer::new(addr)));
    }
    let (_, connection) = peer.as_mut()?;
    match connection.call(&Rpc::Heartbeat { id: me }, HEARTBEAT_INTERVAL).await {
        Ok(RpcReply::Heartbeat { alive }) => alive,
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(leader, "heartbeat failed: {e}");
            None
        }
    }
}
