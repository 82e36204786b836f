//! Messages between shards.
//!
//! Control plane: [`ShardMsg::Control`] goes to shard 0, which owns cluster metadata, and
//! [`ShardMsg::ApplyMetadata`] goes from shard 0 to every shard. Data plane: the other
//! variants go to the shard that owns the partitions they name ([`ShardMsg::Group`]: the
//! owner of the group's `__consumer_offsets` partition). Every message carries a
//! one-shot reply channel; a shard that cannot answer drops it, which the sender sees as a
//! closed channel. A shard handles the produce messages of one peer in arrival order, so
//! pipelined produce requests append in the order the client sent them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::controller::placement::Command;
use crate::controller::{ClusterMetadata, ConfigChange, ControlError};
use crate::group::api::{GroupReply, GroupRequest};
use crate::storage::{AbortedTxn, ProducerInfo};
use crate::txn::api::{TxnReply, TxnRequest};

pub use super::txn::Marker;

/// A partition named across shards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionRef {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

/// Outcome of appending to one partition.
#[derive(Clone, Debug, Default)]
pub struct ProduceOutcome {
    /// Kafka error code (0 = appended).
    pub error_code: i16,
    /// Why, when the error code is not 0.
    pub error_message: Option<String>,
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Broker time stamped on the batch, or -1 under CreateTime.
    pub log_append_time: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
}

/// A produce request's durability demand, per partition.
#[derive(Clone, Copy, Debug)]
pub struct Acks {
    /// 0, 1 or -1 (all in-sync replicas).
    pub acks: i16,
    /// How long an acks=-1 append may wait for the in-sync replicas.
    pub timeout_ms: i32,
}

/// A follower's fetch (Fetch with a replica id).
#[derive(Clone, Copy, Debug)]
pub struct ReplicaFetch {
    /// The follower's broker id.
    pub replica_id: i32,
    /// Epoch of the follower's last batch (-1: none), to find where its log diverges.
    pub last_fetched_epoch: i32,
}

/// A read from one partition.
#[derive(Clone, Debug)]
pub struct FetchItem {
    /// The partition.
    pub partition: PartitionRef,
    /// First offset wanted.
    pub offset: i64,
    /// Most bytes wanted (the first batch is returned whole regardless, KIP-74).
    pub max_bytes: usize,
    /// read_committed (isolation level 1): only below the last stable offset, with the
    /// aborted transactions of what is returned.
    pub read_committed: bool,
    /// The leader epoch the fetcher knows (-1: unchecked).
    pub current_leader_epoch: i32,
    /// Set when a follower fetches: reads go up to the leader's durable end, not the HW.
    pub replica: Option<ReplicaFetch>,
    /// A consumer's fetch that a follower may serve (Fetch v11+, KIP-392), up to the high
    /// watermark it knows; otherwise only the leader reads.
    pub follower_read: bool,
    /// The consumer's `client.rack`, when this broker's rack-aware replica selector is on:
    /// the leader may answer with an in-sync replica of that rack to read from instead.
    pub client_rack: Option<std::sync::Arc<str>>,
    /// A consumer's fetch whose response has no room left for this partition's records:
    /// answer its offsets (high watermark, log start, last stable offset) without reading.
    pub offsets_only: bool,
    /// A consumer's fetch in which an earlier partition returned records: only whole batches
    /// within `max_bytes` (the first partition with data takes at least one, KIP-74), so a
    /// batch that cannot fit is not read from disk.
    pub within_max_bytes: bool,
}

/// What a read from one partition returned.
#[derive(Clone, Debug, Default)]
pub struct FetchOutcome {
    /// Kafka error code (0 = read).
    pub error_code: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// Whole record batches, verbatim.
    pub records: Bytes,
    /// The partition's last stable offset.
    pub last_stable_offset: i64,
    /// read_committed reads: aborted transactions with data in `records`.
    pub aborted: Option<Vec<AbortedTxn>>,
    /// Follower fetches: the (epoch, end offset) to truncate to (KIP-320).
    pub diverging_epoch: Option<(i32, i64)>,
    /// Consumer fetches from a rack-aware leader: the replica to read from instead (KIP-392);
    /// no records come with it.
    pub preferred_read_replica: Option<i32>,
}

/// One ListOffsets query.
#[derive(Clone, Debug)]
pub struct OffsetQuery {
    /// The partition.
    pub partition: PartitionRef,
    /// -2 earliest, -1 latest, otherwise a timestamp in ms.
    pub timestamp: i64,
    /// read_committed: "latest" is the last stable offset.
    pub read_committed: bool,
}

/// Answer to one ListOffsets query.
#[derive(Clone, Debug, Default)]
pub struct OffsetAnswer {
    /// Kafka error code.
    pub error_code: i16,
    /// The offset found, or -1.
    pub offset: i64,
    /// The timestamp of that offset, or -1.
    pub timestamp: i64,
}

/// One OffsetForLeaderEpoch query.
#[derive(Clone, Debug)]
pub struct EpochQuery {
    /// The partition.
    pub partition: PartitionRef,
    /// The leader epoch the asker knows (-1: unchecked).
    pub current_leader_epoch: i32,
    /// The epoch whose end is wanted.
    pub leader_epoch: i32,
}

/// Answer to one OffsetForLeaderEpoch query.
#[derive(Clone, Copy, Debug)]
pub struct EpochAnswer {
    /// Kafka error code.
    pub error_code: i16,
    /// The largest epoch at most the one asked for, or -1.
    pub leader_epoch: i32,
    /// Where that epoch ends, or -1.
    pub end_offset: i64,
}

impl EpochAnswer {
    /// A refusal.
    pub fn failed(error: crate::protocol::ResponseError) -> EpochAnswer {
        EpochAnswer { error_code: error.code(), leader_epoch: -1, end_offset: -1 }
    }
}

/// DeleteRecords for one partition: move its log start offset up to `offset`.
#[derive(Clone, Debug)]
pub struct DeleteRecordsItem {
    /// The partition.
    pub partition: PartitionRef,
    /// New log start offset; -1 means the high watermark.
    pub offset: i64,
}

/// Outcome of DeleteRecords for one partition.
#[derive(Clone, Debug, Default)]
pub struct DeleteRecordsOutcome {
    /// Kafka error code.
    pub error_code: i16,
    /// The log start offset afterwards, or -1.
    pub low_watermark: i64,
}

/// A change to cluster metadata, executed by shard 0.
#[derive(Clone, Debug)]
pub enum ControlOp {
    /// CreateTopics, one topic.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Partition count (already defaulted).
        partitions: i32,
        /// Replicas per partition; -1 for the default (clusters only; 1 on a single broker).
        replication_factor: i32,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// The client's replica list of each partition, else empty (see
        /// [`crate::controller::placement::Command::CreateTopic`]).
        assignment: Vec<Vec<i32>>,
        /// Only check, change nothing.
        validate_only: bool,
    },
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// CreatePartitions, one topic.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// New partition count.
        total: i32,
        /// The client's replica list of each new partition, else empty.
        assignment: Vec<Vec<i32>>,
        /// Only check, change nothing.
        validate_only: bool,
    },
    /// AlterConfigs (`replace`) or IncrementalAlterConfigs, one topic.
    AlterConfigs {
        /// Topic name.
        name: String,
        /// The changes, in request order.
        changes: Vec<ConfigChange>,
        /// Drop every override not set by `changes` (AlterConfigs semantics).
        replace: bool,
        /// Only check, change nothing.
        validate_only: bool,
    },
    /// Cluster mode: a command for the controller as it is (AlterPartition).
    Replicated(Command),
    /// A change of cluster-wide settings (ACLs, client quotas, dynamic broker configs) that
    /// applies the same way on a single broker (to metadata.json) and in a cluster (through
    /// the controller quorum).
    Metadata(Command),
}

/// A message from one shard to another.
pub enum ShardMsg {
    /// Append these batches; reply in the same order.
    Produce {
        /// Partitions and their record batches (moved, not copied: the owner writes offsets
        /// into them in place).
        items: Vec<(PartitionRef, crate::storage::OwnedRecords)>,
        /// The request's acks and timeout.
        acks: Acks,
        /// Outcomes, one per item.
        reply: oneshot::Sender<Vec<ProduceOutcome>>,
    },
    /// Read without waiting; reply in the same order.
    Fetch {
        /// Reads.
        items: Vec<FetchItem>,
        /// Outcomes, one per item.
        reply: oneshot::Sender<Vec<FetchOutcome>>,
    },
    /// Reply once any of these partitions has data at or past the offset, or at the deadline.
    /// Dropping the reply receiver cancels the wait.
    WaitForData {
        /// Partitions and the offsets the fetch waits beyond.
        items: Vec<(PartitionRef, i64)>,
        /// A follower's fetch: wait for durable data, not for the high watermark.
        replica: bool,
        /// When to give up.
        deadline: Instant,
        /// Signalled when data arrived or the deadline passed.
        reply: oneshot::Sender<()>,
    },
    /// ListOffsets queries; reply in the same order.
    ListOffsets {
        /// Queries.
        items: Vec<OffsetQuery>,
        /// Answers, one per query.
        reply: oneshot::Sender<Vec<OffsetAnswer>>,
    },
    /// OffsetForLeaderEpoch queries; reply in the same order.
    EpochEnds {
        /// Queries.
        items: Vec<EpochQuery>,
        /// Answers, one per query.
        reply: oneshot::Sender<Vec<EpochAnswer>>,
    },
    /// To shard 0: allocate a producer id (InitProducerId).
    AllocateProducerId {
        /// The id, or why none could be reserved.
        reply: oneshot::Sender<Result<i64, String>>,
    },
    /// DeleteRecords; reply in the same order.
    DeleteRecords {
        /// Partitions and their new log start offsets.
        items: Vec<DeleteRecordsItem>,
        /// Outcomes, one per item.
        reply: oneshot::Sender<Vec<DeleteRecordsOutcome>>,
    },
    /// To shard 0: change cluster metadata.
    Control {
        /// The change.
        op: ControlOp,
        /// Ok once every shard applied it.
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// To the shard coordinating a group (the owner of its `__consumer_offsets` partition),
    /// or to every shard for ListGroups: run a group request.
    Group {
        /// The request (boxed: decoded requests are large).
        request: Box<GroupRequest>,
        /// Its reply.
        reply: oneshot::Sender<GroupReply>,
    },
    /// Share groups (KIP-932): to the shard coordinating a share group, or owning a
    /// partition (share-partition state), or to every shard (list): run a share request.
    Share {
        /// The request.
        request: Box<super::share::ShareRequest>,
        /// Its reply.
        reply: oneshot::Sender<super::share::ShareReply>,
    },
    /// From the admin listener (shard 0): report this shard's metrics.
    Metrics {
        /// The snapshot.
        reply: oneshot::Sender<crate::metrics::ShardSnapshot>,
    },
    /// To the shard coordinating a transactional id (the owner of its `__transaction_state`
    /// partition), or to every shard for ListTransactions: run a transaction request.
    Txn {
        /// The request.
        request: Box<TxnRequest>,
        /// Its reply.
        reply: oneshot::Sender<TxnReply>,
    },
    /// From a transaction coordinator: write this marker to these partitions; reply with one
    /// error code per partition once durable.
    WriteMarkers {
        /// Partitions of the transaction owned by the receiver.
        items: Vec<PartitionRef>,
        /// The marker.
        marker: Marker,
        /// Error codes, one per item.
        reply: oneshot::Sender<Vec<i16>>,
    },
    /// DescribeProducers; reply in the same order.
    DescribeProducers {
        /// Partitions.
        items: Vec<PartitionRef>,
        /// Each partition's producers, or its error code.
        reply: oneshot::Sender<Vec<Result<Vec<ProducerInfo>, i16>>>,
    },
    /// DescribeLogDirs: report every log this shard owns.
    LogDirs {
        /// Each log's size and lag.
        reply: oneshot::Sender<Vec<LogDirEntry>>,
    },
    /// From shard 0: open, configure and delete partition logs to match this snapshot.
    ApplyMetadata {
        /// The new snapshot.
        meta: Arc<ClusterMetadata>,
        /// Signalled when the shard is in line with it.
        reply: oneshot::Sender<()>,
    },
}

/// One partition log in DescribeLogDirs.
#[derive(Debug, Clone)]
pub struct LogDirEntry {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its partition index.
    pub partition: i32,
    /// Bytes of data in its segments.
    pub size_bytes: u64,
    /// How far its log end is below the high watermark (Kafka's `offset_lag`; 0 once caught
    /// up).
    pub offset_lag: i64,
}

/// A [`ShardMsg`] on the wire between shards, with the tracing span of the request that sent
/// it, so log lines of the work done for it on the owning shard carry the same connection and
/// request ids as those on the shard that took the request.
pub struct Envelope {
    /// The sender's current span (the request's `conn`/`req` spans, or none).
    pub span: tracing::Span,
    /// The message.
    pub msg: ShardMsg,
}
