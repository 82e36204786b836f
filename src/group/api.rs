//! Group requests and replies as they cross the shard mesh: `Send` values only (decoded
//! kafka-protocol messages, owned strings). The server's group handlers route each request
//! to the shard that coordinates its group and get one [`GroupReply`] back.

use kafka_protocol::messages::consumer_group_describe_response;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

pub use super::consumer::Topics;
pub use super::consumer_ops::HeartbeatContext;

/// A request for one group (or, for `List`, for every group of one shard).
#[derive(Debug)]
pub struct GroupRequest {
    /// The `__consumer_offsets` partition of the group (ignored by `List`).
    pub partition: i32,
    /// What to do.
    pub op: GroupOp,
}

/// The group operations. Each names its group inside the request.
#[derive(Debug)]
pub enum GroupOp {
    /// JoinGroup.
    Join {
        /// The request.
        req: JoinGroupRequest,
        /// Its version.
        version: i16,
        /// Client id from the request header.
        client_id: String,
        /// Client address, Kafka style (`/127.0.0.1`).
        client_host: String,
        /// The cluster's topics (a classic member of a consumer group subscribes by name).
        topics: Topics,
    },
    /// SyncGroup.
    Sync {
        /// The request.
        req: SyncGroupRequest,
    },
    /// Heartbeat.
    Heartbeat {
        /// The request.
        req: HeartbeatRequest,
    },
    /// LeaveGroup.
    Leave {
        /// The request.
        req: LeaveGroupRequest,
        /// Its version (v3+ batches members).
        version: i16,
    },
    /// OffsetCommit; the handler already removed partitions that do not exist.
    Commit {
        /// The request.
        req: OffsetCommitRequest,
    },
    /// OffsetFetch of one group.
    Fetch {
        /// Group id.
        group: String,
        /// Topics and partitions wanted; `None` = every committed offset.
        topics: Option<Vec<(String, Vec<i32>)>>,
        /// OffsetFetch v9: the member id (checked against a consumer group), or `None`.
        member_id: Option<String>,
        /// OffsetFetch v9: the member epoch, -1 when not given.
        member_epoch: i32,
    },
    /// DescribeGroups of one group.
    Describe {
        /// Group id.
        group: String,
    },
    /// DeleteGroups of one group.
    Delete {
        /// Group id.
        group: String,
    },
    /// OffsetDelete.
    OffsetDelete {
        /// The request.
        req: OffsetDeleteRequest,
    },
    /// TxnOffsetCommit; the handler already removed partitions that do not exist.
    TxnCommit {
        /// The request.
        req: TxnOffsetCommitRequest,
    },
    /// ConsumerGroupHeartbeat (KIP-848).
    ConsumerHeartbeat {
        /// The request.
        req: ConsumerGroupHeartbeatRequest,
        /// Version, client and the cluster's topics.
        ctx: HeartbeatContext,
    },
    /// ConsumerGroupDescribe of one group.
    ConsumerDescribe {
        /// Group id.
        group: String,
        /// The cluster's topics (to name the assigned topic ids).
        topics: Topics,
        /// Request version.
        version: i16,
    },
    /// ListGroups on this shard.
    List {
        /// State names wanted (empty = all), case-insensitive.
        states: Vec<String>,
        /// Group types wanted (empty = all), case-insensitive.
        types: Vec<String>,
    },
}

impl GroupOp {
    /// The group the operation is about (`None` for `List`, which is about every group).
    pub fn group_id(&self) -> Option<&str> {
        Some(match self {
            GroupOp::Join { req, .. } => req.group_id.0.as_str(),
            GroupOp::Sync { req } => req.group_id.0.as_str(),
            GroupOp::Heartbeat { req } => req.group_id.0.as_str(),
            GroupOp::Leave { req, .. } => req.group_id.0.as_str(),
            GroupOp::Commit { req } => req.group_id.0.as_str(),
            GroupOp::OffsetDelete { req } => req.group_id.0.as_str(),
            GroupOp::TxnCommit { req } => req.group_id.0.as_str(),
            GroupOp::ConsumerHeartbeat { req, .. } => req.group_id.0.as_str(),
            GroupOp::ConsumerDescribe { group, .. } => group.as_str(),
            GroupOp::Fetch { group, .. }
            | GroupOp::Describe { group }
            | GroupOp::Delete { group } => group.as_str(),
            GroupOp::List { .. } => return None,
        })
    }
}

/// Committed offsets of one group.
#[derive(Debug, Default)]
pub struct FetchedOffsets {
    /// Group-level error code.
    pub error: i16,
    /// Per topic: (partition, offset, leader epoch, metadata, error).
    pub topics: Vec<(String, Vec<FetchedOffset>)>,
}

/// One partition's committed offset (-1 when none).
#[derive(Debug, Clone, Default)]
pub struct FetchedOffset {
    /// Partition.
    pub partition: i32,
    /// Committed offset or -1.
    pub offset: i64,
    /// Leader epoch or -1.
    pub leader_epoch: i32,
    /// Metadata ("" when none).
    pub metadata: String,
    /// Error code.
    pub error: i16,
}

/// The reply to a [`GroupRequest`], matching its operation.
#[derive(Debug)]
pub enum GroupReply {
    /// JoinGroup response.
    Join(JoinGroupResponse),
    /// SyncGroup response.
    Sync(SyncGroupResponse),
    /// Heartbeat response.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup response.
    Leave(LeaveGroupResponse),
    /// OffsetCommit response.
    Commit(OffsetCommitResponse),
    /// OffsetFetch of one group.
    Fetch(FetchedOffsets),
    /// DescribeGroups of one group.
    Describe(DescribedGroup),
    /// DeleteGroups of one group: its error code.
    Delete(i16),
    /// OffsetDelete response.
    OffsetDelete(OffsetDeleteResponse),
    /// ListGroups of one shard.
    List(Vec<ListedGroup>),
    /// TxnOffsetCommit response.
    TxnCommit(TxnOffsetCommitResponse),
    /// ConsumerGroupHeartbeat response.
    ConsumerHeartbeat(ConsumerGroupHeartbeatResponse),
    /// ConsumerGroupDescribe of one group.
    ConsumerDescribe(consumer_group_describe_response::DescribedGroup),
}
