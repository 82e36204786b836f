//! The controller quorum: cluster metadata as a Raft-replicated state machine (openraft).
//!
//! Design. The controller is not on the data path, and openraft wants a tokio runtime, so
//! each broker runs it on one dedicated OS thread ("controller") with a current-thread tokio
//! runtime, beside the glommio shards. Every broker listed in `controller_voters` (KRaft's
//! `controller.quorum.voters`, `id@host:port`) is a voter; any other broker of the cluster
//! is an observer, a Raft learner that the leader sends the log to but that never votes
//! (KRaft's broker-only nodes), so a cluster can grow without growing its quorum.
//! Controllers talk over their own TCP port (`controller_listen`, like KRaft's 9093) with
//! JSON frames ([`net`]); every connection proves both ends know the cluster secret first
//! ([`transport`]), and a peer that does not is refused (`controller_auth` in
//! `strata_refusals_total`, and a rate-limited log line). When the inter-broker listener uses
//! TLS the controller port does too, with client certificates required: a peer must present
//! a certificate of the cluster's CA before the secret is even asked for. Raft's log, vote
//! and snapshots live under `<data>/controller/` ([`store`]), fsynced before openraft is told
//! they are durable.
//!
//! Shard 0 talks to the controller thread through channels only:
//! - [`QuorumHandle::propose`] sends a [`Command`]; the thread writes it through Raft (on the
//!   leader directly, otherwise forwarded to the leader's controller over RPC) and answers
//!   with the log index once this broker has applied it, or the state machine's refusal;
//! - every applied change is sent as a new [`ClusterMetadata`] on the `updates` channel;
//!   shard 0 localizes it (which shard holds which of its replicas) and publishes it to
//!   every shard, as it does on a single broker.
//!
//! The Raft leader also fences brokers whose heartbeats stop, which moves leadership of
//! their partitions to in-sync replicas ([`liveness`]).
//!
//! At start-up a voter initializes the Raft group with the voters (safe on every node with
//! the same voter set; refused and ignored once the group exists); an observer asks the
//! voters, until the leader agrees, to add it as a learner ([`Rpc::Join`]). Then the broker
//! registers (id and advertised address) through Raft, retrying until a leader commits it.
//! The Raft leader is the cluster's controller (Metadata's `controller_id`).
//!
//! Without voters there is no controller thread: shard 0 keeps the metadata alone, in
//! `<data>/metadata.json`, exactly as before clusters existed.

pub mod liveness;
pub mod membership;
pub mod net;
pub mod store;
#[cfg(test)]
mod tests;
pub mod transport;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use kafka_protocol::error::ResponseError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::net::TcpListener;

use crate::config::BrokerConfig;
use crate::controller::placement::Command;
use crate::controller::{BrokerMeta, ClusterMetadata, ControlError};
use crate::security::tls::BrokerTls;
use net::{Network, Peer, Rpc, RpcReply, WriteReply};
use transport::Transport;

/// Raft node ids: the broker's node id.
pub type NodeId = u64;
/// What applying one entry gave: nothing, or the state machine's refusal.
pub type Applied = Result<(), ControlError>;

openraft::declare_raft_types!(
    /// openraft's type configuration for the controller.
    pub TypeConfig:
        D = Command,
        R = Applied,
);

/// The controller's Raft node.
pub type ControllerRaft = Raft<TypeConfig>;

/// Directory of the controller's files inside the data directory.
pub const CONTROLLER_DIR: &str = "controller";
/// File in [`CONTROLLER_DIR`] naming the node whose Raft log and vote the directory holds.
const NODE_ID_FILE: &str = "node.id";

/// Refuses controller files another node wrote, as Kafka refuses a `meta.properties` of
/// another `node.id`: a Raft log and vote are one node's, and taken over by another they
/// break the quorum's invariants (openraft panics). The first start records the node id
/// (so do directories from before this check, whose owner cannot be known).
fn check_node_identity(dir: &std::path::Path, node_id: i32) -> anyhow::Result<()> {
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: i32 = text.trim().parse().map_err(|_| {
                anyhow::anyhow!("{}: not a node id: {:?}", path.display(), text.trim())
            })?;
            if stored != node_id {
                anyhow::bail!(
                    "the controller files in {} belong to node {stored}, and this broker is \
                     node {node_id} (node-id): start it as node {stored}, or as node \
                     {node_id} with another data directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let written = (|| {
                let tmp = dir.join(format!("{NODE_ID_FILE}.tmp"));
                std::fs::write(&tmp, format!("{node_id}\n"))?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()
            })();
            written.map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
        }
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// How long a proposal may wait for a leader before the client gets NOT_CONTROLLER.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout of one forwarded write.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts when no leader is known yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A metadata change on its way to the controller thread.
struct Proposal {
    command: Command,
    reply: oneshot::Sender<Result<u64, ControlError>>,
}

/// Shard 0's handle on the controller thread. Cheap to clone, `Send`.
#[derive(Clone)]
pub struct QuorumHandle {
    proposals: tokio::sync::mpsc::UnboundedSender<Proposal>,
    leader: Arc<AtomicI32>,
    registered: Arc<AtomicU64>,
    /// This incarnation's broker epoch once registered, -1 before.
    epoch: Arc<AtomicI64>,
    quorum: Arc<Mutex<Quorum>>,
    liveness: liveness::Liveness,
}

/// The controller quorum as this node sees it (Kafka's DescribeQuorum).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quorum {
    /// The Raft leader, if known.
    pub leader: Option<i32>,
    /// Its term (KRaft's leader epoch).
    pub term: u64,
    /// The last log index this node knows committed.
    pub committed: u64,
    /// Voters (controllers).
    pub voters: Vec<i32>,
    /// Learners (observers): members that are sent the log and do not vote.
    pub observers: Vec<i32>,
}

impl Quorum {
    fn of(metrics: &openraft::RaftMetrics<NodeId, BasicNode>) -> Quorum {
        let membership = metrics.membership_config.membership();
        let voters: Vec<i32> = membership.voter_ids().map(|id| id as i32).collect();
        let learners = membership.learner_ids().map(|id| id as i32);
        Quorum {
            leader: metrics.current_leader.map(|id| id as i32),
            term: metrics.current_term,
            committed: metrics.last_applied.map_or(0, |log_id| log_id.index),
            observers: learners.collect(),
            voters,
        }
    }
}

impl QuorumHandle {
    /// The broker epoch the controller gave this start of the broker, once it registered:
    /// its replica fetches carry it, and leaders refuse older ones (see the Fetch handler).
    pub fn broker_epoch(&self) -> Option<i64> {
        Some(self.epoch.load(Ordering::Acquire)).filter(|&epoch| epoch >= 0)
    }

    /// The Raft membership and leader as last seen here.
    pub fn quorum(&self) -> Quorum {
        self.quorum.lock().map(|q| q.clone()).unwrap_or_default()
    }

    /// The brokers the controller heard from lately, as last learnt from it; `None` before
    /// the first answer or while no controller is reachable.
    pub fn alive_brokers(&self) -> Option<Vec<i32>> {
        self.liveness.alive.lock().ok().and_then(|alive| alive.clone())
    }

    /// The log index at which this start of the broker registered, once this broker applied
    /// it: its metadata from that version on is current, not left over from before a restart.
    pub fn registered_index(&self) -> Option<u64> {
        Some(self.registered.load(Ordering::Acquire)).filter(|&index| index > 0)
    }

    /// The current controller (Raft leader), if one is known.
    pub fn controller_id(&self) -> Option<i32> {
        Some(self.leader.load(Ordering::Relaxed)).filter(|&id| id >= 0)
    }

    /// Writes `command` through Raft. `Ok(index)` once this broker's state machine applied
    /// it (its metadata has `version >= index` on the updates channel).
    pub async fn propose(&self, command: Command) -> Result<u64, ControlError> {
        let (reply, answer) = oneshot::channel();
        if self.proposals.send(Proposal { command, reply }).is_err() {
            return Err(not_controller("the controller thread has stopped"));
        }
        answer.await.unwrap_or_else(|_| Err(not_controller("the controller dropped the change")))
    }
}

fn not_controller(message: impl Into<String>) -> ControlError {
    ControlError::new(ResponseError::NotController, message)
}

/// What [`start`] gives shard 0.
pub struct Started {
    /// Proposals and the controller id.
    pub handle: QuorumHandle,
    /// Every applied metadata change, in order.
    pub updates: mpsc::UnboundedReceiver<Arc<ClusterMetadata>>,
}

/// Starts the controller thread on `listener` (bound by the caller so that a busy port fails
/// start-up with a clear message).
/// `tls`: the controller port's TLS (mutual, with the inter-broker listener's certificates)
/// when that listener uses TLS; `None` is plain TCP.
pub fn start(
    config: &BrokerConfig,
    listener: std::net::TcpListener,
    tls: Option<Arc<BrokerTls>>,
) -> anyhow::Result<Started> {
    let dir = config.data_dir.join(CONTROLLER_DIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    check_node_identity(&dir, config.node_id)?;
    let (publish, updates) = mpsc::unbounded();
    let log = store::LogStore::open(&dir)
        .map_err(|e| anyhow::anyhow!("opening the controller log in {}: {e}", dir.display()))?;
    let machine = store::StateMachine::open(&dir, publish).map_err(|e| {
        anyhow::anyhow!("opening the controller snapshot in {}: {e}", dir.display())
    })?;
    listener.set_nonblocking(true)?;
    let (proposals, receiver) = tokio::sync::mpsc::unbounded_channel();
    let leader = Arc::new(AtomicI32::new(-1));
    let registered = Arc::new(AtomicU64::new(0));
    let epoch = Arc::new(AtomicI64::new(-1));
    let quorum = Arc::new(Mutex::new(Quorum::default()));
    let members: BTreeMap<NodeId, BasicNode> = config
        .controller_voters
        .iter()
        .map(|v| (v.id as NodeId, BasicNode::new(format!("{}:{}", v.host, v.port))))
        .collect();
    let inter_broker = config.inter_broker();
    let endpoints = config
        .listeners
        .iter()
        .map(|l| crate::controller::BrokerEndpoint {
            listener: l.name.clone(),
            host: l.advertised_host.clone(),
            port: l.advertised_port,
        })
        .collect();
    let me = BrokerMeta {
        id: config.node_id,
        host: inter_broker.advertised_host.clone(),
        port: inter_broker.advertised_port,
        endpoints,
        rack: config.broker_rack.clone(),
        epoch: 0,
        incarnation: uuid::Uuid::new_v4(),
    };
    let liveness = liveness::Liveness::new(liveness::Timing {
        session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
        interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
        disconnect_timeout: Duration::from_millis(config.broker_disconnect_timeout_ms),
    });
    let transport = Transport::new(cluster_secret(config)?, config.node_id, tls);
    let node = Node {
        me,
        transport,
        observer_address: config.observer_address(),
        members,
        leader: leader.clone(),
        registered: registered.clone(),
        epoch: epoch.clone(),
        quorum: quorum.clone(),
        liveness: liveness.clone(),
        auto_leader_rebalance: config.auto_leader_rebalance,
        partition_autobalancing: config.partition_autobalancing,
        disk_full: store::disk_full(&dir),
        unclean_leader_election: config.unclean_leader_election,
    };
    std::thread::Builder::new().name("controller".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match runtime {
            Ok(runtime) => {
                if let Err(e) = runtime.block_on(node.run(log, machine, listener, receiver)) {
                    tracing::error!("the controller stopped: {e:#}");
                }
            }
            Err(e) => tracing::error!("cannot start the controller runtime: {e}"),
        }
    })?;
    let handle = QuorumHandle { proposals, leader, registered, epoch, quorum, liveness };
    Ok(Started { handle, updates })
}

/// The cluster secret from the settings (`cluster_secret` or `cluster_secret_file`); `None`
/// with `controller_insecure` (validation made sure one of them is set).
fn cluster_secret(
    config: &BrokerConfig,
) -> anyhow::Result<Option<crate::security::peer_auth::ClusterSecret>> {
    use crate::security::peer_auth::ClusterSecret;
    let bytes = match (&config.cluster_secret, &config.cluster_secret_file) {
        (Some(secret), _) => secret.0.as_bytes().to_vec(),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("reading cluster-secret-file {}: {e}", path.display())
            })?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            bytes
        }
        (None, None) => {
            tracing::warn!("controller-insecure: the controller port accepts any peer");
            return Ok(None);
        }
    };
    let secret = ClusterSecret::new(bytes).map_err(|e| anyhow::anyhow!("cluster-secret: {e}"))?;
    Ok(Some(secret))
}

/// The controller thread's state.
struct Node {
    me: BrokerMeta,
    transport: Transport,
    /// For an observer, the address the leader reaches its controller listener at.
    observer_address: Option<String>,
    members: BTreeMap<NodeId, BasicNode>,
    leader: Arc<AtomicI32>,
    registered: Arc<AtomicU64>,
    epoch: Arc<AtomicI64>,
    quorum: Arc<Mutex<Quorum>>,
    liveness: liveness::Liveness,
    auto_leader_rebalance: bool,
    partition_autobalancing: bool,
    /// Set while the controller store waits for disk space (see `store`).
    disk_full: Arc<std::sync::atomic::AtomicBool>,
    unclean_leader_election: bool,
}

impl Node {
    async fn run(
        self,
        log: store::LogStore,
        machine: store::StateMachine,
        listener: std::net::TcpListener,
        mut proposals: tokio::sync::mpsc::UnboundedReceiver<Proposal>,
    ) -> anyhow::Result<()> {
        let config = openraft::Config {
            cluster_name: "strata".into(),
            heartbeat_interval: 100,
            election_timeout_min: 500,
            election_timeout_max: 1000,
            // One file per entry: keep the log directory small.
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
            ..Default::default()
        };
        let config = Arc::new(config.validate()?);
        let id = self.me.id as NodeId;
        let network = Network { transport: self.transport.clone() };
        let raft = Raft::new(id, config, network, log, machine.clone()).await?;
        let listener = TcpListener::from_std(listener)?;
        let served = Served {
            raft: raft.clone(),
            machine: machine.clone(),
            liveness: self.liveness.clone(),
            transport: self.transport.clone(),
            connections: Arc::default(),
        };
        tokio::spawn(serve(served, listener));
        if let Some(address) = &self.observer_address {
            let transport = self.transport.clone();
            tokio::spawn(join(id, address.clone(), self.members.clone(), transport));
        } else if !raft.is_initialized().await? {
            match raft.initialize(self.members.clone()).await {
                Ok(()) => {
                    tracing::info!(voters = self.members.len(), "controller quorum initialized")
                }
                Err(e) => tracing::info!("controller quorum already initialized: {e}"),
            }
        }
        tokio::spawn(watch_leader(raft.clone(), self.leader.clone(), self.quorum.clone()));
        let registering = Registering {
            raft: raft.clone(),
            machine: machine.clone(),
            transport: self.transport.clone(),
            me: self.me.clone(),
            registered: self.registered.clone(),
            epoch: self.epoch.clone(),
        };
        tokio::spawn(registering.run());
        let machine_for_membership = machine.clone();
        let heartbeats = liveness::run(liveness::Context {
            raft: raft.clone(),
            machine,
            me: self.me.id,
            incarnation: self.me.incarnation,
            members: self.members.clone(),
            liveness: self.liveness.clone(),
            transport: self.transport.clone(),
            auto_leader_rebalance: self.auto_leader_rebalance,
            partition_autobalancing: self.partition_autobalancing,
            unclean_leader_election: self.unclean_leader_election,
        });
        tokio::spawn(heartbeats);
        tokio::spawn(membership::run(raft.clone(), machine_for_membership, self.members.clone()));
        while let Some(Proposal { command, reply }) = proposals.recv().await {
            if self.disk_full.load(Ordering::Relaxed) {
                let msg = "this broker's controller store is out of disk space; \
                    retry once space is freed";
                let _ = reply.send(Err(ControlError::new(ResponseError::KafkaStorageError, msg)));
                continue;
            }
            let (raft, transport) = (raft.clone(), self.transport.clone());
            tokio::spawn(async move {
                let _ = reply.send(propose(&raft, &transport, command).await);
            });
        }
        Ok(())
    }
}

/// Keeps `leader` equal to the Raft leader, and logs each change; keeps `quorum` current.
async fn watch_leader(raft: ControllerRaft, leader: Arc<AtomicI32>, quorum: Arc<Mutex<Quorum>>) {
    let mut metrics = raft.metrics();
    loop {
        let current = metrics.borrow().current_leader;
        let now = Quorum::of(&metrics.borrow());
        if let Ok(mut slot) = quorum.lock() {
            *slot = now;
        }
        let id = current.map_or(-1, |id| id as i32);
        if leader.swap(id, Ordering::Relaxed) != id {
            let term = metrics.borrow().current_term;
            tracing::info!(controller = id, term, "controller leader changed");
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Asks the voters, in turn, to add this observer as a learner at `address` until the leader
/// has committed it (or it already was, at that address).
async fn join(
    id: NodeId,
    address: String,
    voters: BTreeMap<NodeId, BasicNode>,
    transport: Transport,
) {
    let request = Rpc::Join { id, address: address.clone() };
    let (mut waited, mut refused) = (false, false);
    for voter in voters.values().cycle() {
        let mut peer = Peer::new(voter.addr.clone(), &transport);
        match peer.call(&request, FORWARD_TIMEOUT).await {
            Ok(RpcReply::Write(WriteReply::Committed { result: Ok(()), index })) => {
                tracing::info!(node_id = id, %address, index, "joined the cluster as an observer");
                return;
            }
            // Refused for good (this node id votes there): say so once, keep asking, as the
            // operator may be mending the voter lists.
            Ok(RpcReply::Write(WriteReply::Committed { result: Err(e), .. })) if !refused => {
                tracing::error!("the controller refuses this observer: {e}");
                refused = true;
            }
            Ok(RpcReply::Write(reply)) if !waited => {
                tracing::info!(?reply, voter = %voter.addr, "joining the controller quorum");
                waited = true;
            }
            Err(e) if !waited => {
                tracing::info!(voter = %voter.addr, "joining the controller quorum: {e}");
                waited = true;
            }
            _ => {}
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Adds observer `id` as a Raft learner at `address`, if this node leads: at once when it is
/// already one at that address (a restart), otherwise through a membership change. A node
/// id that votes is refused: two brokers would share it; so is a decommissioned broker
/// (until recommissioned: see [`membership`]).
async fn join_for_peer(
    raft: &ControllerRaft,
    machine: &store::StateMachine,
    id: NodeId,
    address: String,
) -> WriteReply {
    let (me, membership) = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        (metrics.id, metrics.membership_config.clone())
    };
    let leader = raft.current_leader().await;
    if leader != Some(me) {
        let known = leader.and_then(|l| membership.membership().get_node(&l).map(|n| (l, n)));
        return WriteReply::NotLeader(known.map(|(l, n)| (l, n.addr.clone())));
    }
    let index = membership.log_id().map_or(0, |log_id| log_id.index);
    if membership.membership().voter_ids().any(|voter| voter == id) {
        let msg = format!("node id {id} is a controller voter; observers need their own id");
        return WriteReply::Committed { index, result: Err(not_controller(msg)) };
    }
    if machine.with_metadata(|m| m.decommissioned.contains(&(id as i32))) {
        let msg = format!("broker {id} is decommissioned; recommission it to let it join");
        return WriteReply::Committed { index, result: Err(not_controller(msg)) };
    }
    if membership.membership().get_node(&id).is_some_and(|n| n.addr == address) {
        return WriteReply::Committed { index, result: Ok(()) };
    }
    let change = openraft::ChangeMembers::SetNodes(BTreeMap::from([(id, BasicNode::new(address))]));
    match tokio::time::timeout(FORWARD_TIMEOUT, raft.change_membership(change, true)).await {
        Err(_) => WriteReply::Failed("the new observer was not committed in time".into()),
        Ok(Ok(written)) => WriteReply::Committed { index: written.log_id.index, result: Ok(()) },
        Ok(Err(e)) => WriteReply::Failed(e.to_string()),
    }
}

/// What registering this broker needs.
struct Registering {
    raft: ControllerRaft,
    machine: store::StateMachine,
    transport: Transport,
    me: BrokerMeta,
    registered: Arc<AtomicU64>,
    epoch: Arc<AtomicI64>,
}

impl Registering {
    /// Registers this broker through Raft, retrying until it is committed and applied here;
    /// then sets `registered` to its log index.
    async fn run(self) {
        let Registering { raft, machine, transport, me, registered, epoch: epoch_slot } = self;
        let cluster_id = uuid::Uuid::new_v4().to_string();
        loop {
            let command =
                Command::RegisterBroker { broker: me.clone(), cluster_id: cluster_id.clone() };
            match propose(&raft, &transport, command).await {
                Ok(index) => {
                    let epoch = machine.with_metadata(|m| {
                        let registered = m.brokers.get(&me.id)?;
                        (registered.incarnation == me.incarnation).then_some(registered.epoch)
                    });
                    let epoch = epoch.unwrap_or(-1);
                    epoch_slot.store(epoch, Ordering::Release);
                    tracing::info!(
                        node_id = me.id,
                        index,
                        broker_epoch = epoch,
                        "broker registered with the controller"
                    );
                    registered.store(index, Ordering::Release);
                    return;
                }
                Err(e) => tracing::info!("registering with the controller: {e}; retrying"),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Writes `command` through Raft, forwarding to the leader when this node is not it, and
/// waits until this node applied it.
async fn propose(
    raft: &ControllerRaft,
    transport: &Transport,
    command: Command,
) -> Result<u64, ControlError> {
    let deadline = Instant::now() + PROPOSE_TIMEOUT;
    loop {
        // Without a quorum a leader cannot commit, and openraft would wait forever.
        let Ok(written) =
            tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(command.clone())).await
        else {
            let msg = "the change was not committed in time (is a quorum of voters up?)";
            return Err(ControlError::new(ResponseError::RequestTimedOut, msg));
        };
        let leader = match written {
            Ok(written) => return written.data.map(|()| written.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to))) => to.leader_node,
            Err(e) => return Err(not_controller(format!("the controller failed: {e}"))),
        };
        if let Some(leader) = leader {
            let mut peer = Peer::new(leader.addr.clone(), transport);
            match peer.call(&Rpc::Write(command.clone()), FORWARD_TIMEOUT).await {
                Ok(RpcReply::Write(WriteReply::Committed { index, result })) => {
                    result?;
                    let wait = raft.wait(Some(PROPOSE_TIMEOUT));
                    wait.applied_index_at_least(Some(index), "forwarded change")
                        .await
                        .map_err(|e| not_controller(format!("applying the change: {e}")))?;
                    return Ok(index);
                }
                Ok(RpcReply::Write(reply)) => tracing::debug!(?reply, "forwarding failed"),
                Ok(_) => tracing::warn!("the leader answered a forwarded change oddly"),
                Err(e) => tracing::debug!(addr = %leader.addr, "forwarding failed: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(not_controller("no controller leader is available"));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A write on behalf of a peer, bounded by the proposer's forwarding timeout.
async fn write_for_peer(raft: &ControllerRaft, command: Command) -> WriteReply {
    match tokio::time::timeout(FORWARD_TIMEOUT, raft.client_write(command)).await {
        Err(_) => WriteReply::Failed("the change was not committed in time".into()),
        Ok(Ok(written)) => {
            WriteReply::Committed { index: written.log_id.index, result: written.data }
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => {
            WriteReply::NotLeader(to.leader_id.zip(to.leader_node.map(|n| n.addr)))
        }
        Ok(Err(e)) => WriteReply::Failed(e.to_string()),
    }
}

/// What the controller listener serves.
#[derive(Clone)]
struct Served {
    raft: ControllerRaft,
    machine: store::StateMachine,
    liveness: liveness::Liveness,
    transport: Transport,
    /// Numbers accepted connections (heartbeats remember which one carried them).
    connections: Arc<AtomicU64>,
}

/// A heartbeat of broker `id` at `epoch` on connection `connection`: recorded when `epoch`
/// is the broker's current one (any voter records it: see [`liveness`]); answered with the
/// alive set by the leader.
async fn heartbeat(served: &Served, id: i32, epoch: i64, connection: u64) -> RpcReply {
    let current = served.machine.with_metadata(|m| m.brokers.get(&id).map(|b| b.epoch));
    if current != Some(epoch) {
        let why = match current {
            Some(current) => format!("broker {id} epoch {epoch} is not its current {current}"),
            None => format!("broker {id} is not registered here (yet)"),
        };
        if current.is_some() {
            crate::refused!(
                WARN,
                "controller_stale_broker_epoch",
                broker = id,
                epoch,
                "heartbeat of an old broker incarnation refused: {why}"
            );
        }
        return RpcReply::Heartbeat { alive: None, refused: Some(why) };
    }
    if let Ok(mut sessions) = served.liveness.sessions.lock() {
        sessions.beat(id, connection);
    }
    let me = served.raft.metrics().borrow().id;
    let alive = if served.raft.current_leader().await == Some(me) {
        served.liveness.alive.lock().ok().and_then(|a| a.clone())
    } else {
        None
    };
    RpcReply::Heartbeat { alive, refused: None }
}

/// Accepts peer controllers' connections.
async fn serve(served: Served, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let served = served.clone();
                tokio::spawn(async move {
                    match served.transport.accept(stream).await {
                        Ok((channel, _)) => serve_peer(served, channel).await,
                        Err(e) if transport::is_auth_error(&e) => {
                            crate::refused!(WARN, "controller_auth", %peer,
                                "controller connection refused: {e}")
                        }
                        Err(e) if transport::is_tls_error(&e) => {
                            crate::refused!(WARN, "controller_tls", %peer,
                                "controller connection refused: {e}")
                        }
                        Err(e) => crate::refused!(WARN, "controller_handshake", %peer,
                            "controller connection dropped during the handshake: {e}"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!("controller accept failed: {e}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

async fn serve_peer(served: Served, mut channel: transport::Channel) {
    let connection = served.connections.fetch_add(1, Ordering::Relaxed);
    let raft = &served.raft;
    loop {
        let rpc: Rpc = match channel.recv().await {
            Ok(Some(rpc)) => rpc,
            Ok(None) => break,
            Err(e) if transport::is_auth_error(&e) => {
                crate::refused!(WARN, "controller_auth", "controller frame refused: {e}");
                break;
            }
            Err(e) => {
                tracing::debug!("controller peer connection: {e}");
                break;
            }
        };
        let reply = match rpc {
            Rpc::Append(request) => RpcReply::Append(raft.append_entries(request).await),
            Rpc::Vote(request) => RpcReply::Vote(raft.vote(request).await),
            Rpc::Snapshot(request) => RpcReply::Snapshot(raft.install_snapshot(request).await),
            Rpc::Write(command) => RpcReply::Write(write_for_peer(raft, command).await),
            Rpc::Heartbeat { id, epoch } => heartbeat(&served, id, epoch, connection).await,
            Rpc::Join { id, address } => {
                RpcReply::Write(join_for_peer(raft, &served.machine, id, address).await)
            }
        };
        if channel.send(&reply).await.is_err() {
            break;
        }
    }
    served.liveness.connection_closed(connection);
}
