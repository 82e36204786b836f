//! Transaction requests and replies as they cross the shard mesh (`Send` values only). The
//! server's handlers route each request to the shard coordinating its transactional id.

use super::state::TxnMeta;

/// A request for one transactional id (or, for `List`, for every id of one shard).
#[derive(Debug, Clone)]
pub struct TxnRequest {
    /// The `__transaction_state` partition of the id (ignored by `List`).
    pub partition: i32,
    /// What to do.
    pub op: TxnOp,
}

/// The coordinator's operations.
#[derive(Debug, Clone)]
pub enum TxnOp {
    /// InitProducerId with a transactional id.
    InitProducerId {
        /// Transactional id.
        id: String,
        /// Transaction timeout asked for.
        timeout_ms: i32,
        /// Producer id the client has (v3+), or -1.
        producer_id: i64,
        /// Epoch the client has (v3+), or -1.
        epoch: i16,
    },
    /// AddPartitionsToTxn, or AddOffsetsToTxn (the group's `__consumer_offsets` partition).
    AddPartitions {
        /// Transactional id.
        id: String,
        /// Producer id.
        producer_id: i64,
        /// Producer epoch.
        epoch: i16,
        /// Partitions to add (all exist).
        partitions: Vec<(String, i32)>,
    },
    /// EndTxn.
    End {
        /// Transactional id.
        id: String,
        /// Producer id.
        producer_id: i64,
        /// Producer epoch.
        epoch: i16,
        /// Commit (true) or abort.
        commit: bool,
    },
    /// Produce: may this producer write these partitions in its transaction?
    Verify {
        /// Transactional id.
        id: String,
        /// Producer id of the batches.
        producer_id: i64,
        /// Producer epoch of the batches.
        epoch: i16,
        /// Partitions written.
        partitions: Vec<(String, i32)>,
    },
    /// DescribeTransactions of one id.
    Describe {
        /// Transactional id.
        id: String,
    },
    /// ListTransactions on this shard.
    List,
}

/// The reply to a [`TxnRequest`], matching its operation.
#[derive(Debug, Clone)]
pub enum TxnReply {
    /// InitProducerId: (producer id, epoch) or an error code.
    Producer(Result<(i64, i16), i16>),
    /// AddPartitions, End: one error code.
    Code(i16),
    /// Verify: one error code per partition, in request order.
    Codes(Vec<i16>),
    /// Describe: the id's metadata or an error code.
    Describe(Result<TxnMeta, i16>),
    /// List: every loaded id of the shard with its metadata.
    List(Vec<(String, TxnMeta)>),
}
