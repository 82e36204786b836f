//! The controllers' RPC: one authenticated connection per peer ([`super::transport`]), JSON
//! frames. Requests are Raft's (AppendEntries, Vote, InstallSnapshot) plus `Write`, a
//! metadata change forwarded by a broker to the Raft leader, `Heartbeat` and `Join`.

use std::time::Duration;

use super::transport::{Channel, Transport};
use super::{NodeId, TypeConfig};
use crate::controller::placement::Command;
use crate::controller::ControlError;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

/// A request from one controller to another.
#[derive(Serialize, Deserialize)]
pub enum Rpc {
    /// Raft AppendEntries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(VoteRequest<NodeId>),
    /// Raft InstallSnapshot (one chunk).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata change forwarded to the leader.
    Write(Command),
    /// A broker's heartbeat, sent to every voter (the leader answers it; the others keep
    /// the time, so that one of them taking over knows who was alive).
    Heartbeat {
        /// The broker.
        id: i32,
        /// Its broker epoch (from its registration): an older incarnation's is refused.
        epoch: i64,
    },
    /// An observer (a broker that is not a voter) asks to be added as a Raft learner.
    Join {
        /// The observer's node id.
        id: NodeId,
        /// Its controller listener, as the leader should reach it.
        address: String,
    },
}

/// What a forwarded write came to.
#[derive(Debug, Serialize, Deserialize)]
pub enum WriteReply {
    /// Committed at this log index (applied or refused by the state machine).
    Committed {
        /// Log index of the entry.
        index: u64,
        /// The state machine's verdict.
        result: Result<(), ControlError>,
    },
    /// The receiver is not the leader; the leader it knows of, if any.
    NotLeader(Option<(NodeId, String)>),
    /// Raft failed otherwise.
    Failed(String),
}

/// The answer to an [`Rpc`].
#[derive(Serialize, Deserialize)]
pub enum RpcReply {
    /// To `Append`.
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To `Snapshot`.
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// To `Write`.
    Write(WriteReply),
    /// To `Heartbeat`: the brokers the leader heard from lately; `None` if not the leader.
    Heartbeat {
        /// Alive broker ids.
        alive: Option<Vec<i32>>,
        /// Why the heartbeat was not counted (a stale broker epoch), if it was not.
        refused: Option<String>,
    },
}

/// A connection to one peer controller, opened on first use and again after a failure.
pub struct Peer {
    addr: String,
    transport: Transport,
    channel: Option<Channel>,
}

impl Peer {
    /// A peer at `addr` (host:port), not connected yet.
    pub fn new(addr: String, transport: &Transport) -> Peer {
        Peer { addr, transport: transport.clone(), channel: None }
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `rpc` and waits for its reply, at most `timeout`.
    pub async fn call(&mut self, rpc: &Rpc, timeout: Duration) -> std::io::Result<RpcReply> {
        let result = tokio::time::timeout(timeout, self.exchange(rpc)).await;
        let result = result.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        if let Err(e) = &result {
            self.channel = None; // a late reply must not be taken for the next request's
            if super::transport::is_auth_error(e) {
                crate::refused!(WARN, "controller_auth", peer = %self.addr,
                    "controller peer refused: {e}");
            } else if super::transport::is_tls_error(e) {
                crate::refused!(WARN, "controller_tls", peer = %self.addr,
                    "controller peer refused: {e}");
            }
        }
        result
    }

    async fn exchange(&mut self, rpc: &Rpc) -> std::io::Result<RpcReply> {
        if self.channel.is_none() {
            self.channel = Some(self.transport.connect(&self.addr).await?);
        }
        let Some(channel) = self.channel.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        channel.send(rpc).await?;
        match channel.recv().await? {
            Some(reply) => Ok(reply),
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// Makes [`Client`]s for openraft.
pub struct Network {
    /// How peers are reached.
    pub transport: Transport,
}

/// openraft's handle on one peer.
pub struct Client {
    target: NodeId,
    node: BasicNode,
    peer: Peer,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Client {
        Client { target, node: node.clone(), peer: Peer::new(node.addr.clone(), &self.transport) }
    }
}

fn protocol_error(what: &str) -> std::io::Error {
    std::io::Error::other(format!("peer answered {what} with another reply"))
}

impl Client {
    async fn call<E: std::error::Error>(
        &mut self,
        rpc: Rpc,
        option: &RPCOption,
    ) -> Result<RpcReply, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        self.peer.call(&rpc, option.hard_ttl()).await.map_err(|e| {
            if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused) {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })
    }

    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<NodeId, E>,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e))
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Rpc::Append(rpc), &option).await? {
            RpcReply::Append(reply) => reply.map_err(|e| self.remote(e)),
            _ => Err(RPCError::Network(NetworkError::new(&protocol_error("AppendEntries")))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(Rpc::Snapshot(rpc), &option).await? {
            RpcReply::Snapshot(reply) => reply.map_err(|e| self.remote(e)),
            _ => Err(RPCError::Network(NetworkError::new(&protocol_error("InstallSnapshot")))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(Rpc::Vote(rpc), &option).await? {
            RpcReply::Vote(reply) => reply.map_err(|e| self.remote(e)),
            _ => Err(RPCError::Network(NetworkError::new(&protocol_error("Vote")))),
        }
    }
}
