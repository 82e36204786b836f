//! Transactions: the pure half of the transaction coordinator.
//!
//! * [`state`] is a transactional id's metadata and the checks and transitions of Kafka's
//!   `TransactionMetadata` (Empty → Ongoing → PrepareCommit/PrepareAbort →
//!   CompleteCommit/CompleteAbort), with error codes. It reads no clock: times are arguments.
//! * [`records`] encodes and decodes Kafka's `__transaction_state` records
//!   (TransactionLogKey v0, TransactionLogValue v0), so the topic reads like Kafka's.
//!
//! The coordinator that owns `__transaction_state` partitions, persists through them, writes
//! markers and aborts timed-out transactions is `server::txn` (it needs the shard mesh).
//! A transactional id lives on the shard owning partition
//! [`partition_for`]`(transactional_id, n)` of [`TXN_TOPIC`].
//!
//! Imports nothing from the crate besides `protocol` (error codes).
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod records;
pub mod state;

/// Name of the internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Partitions of [`TXN_TOPIC`] (Kafka's `transaction.state.log.num.partitions` is 50; a
/// single broker needs fewer).
pub const TXN_TOPIC_PARTITIONS: i32 = 16;
/// Kafka's `transaction.max.timeout.ms` default: longer timeouts are refused.
pub const TXN_TIMEOUT_MS_MAX: i32 = 900_000;
/// Longest transactional id accepted (keys must stay small).
pub const TXN_ID_BYTES_MAX: usize = 4096;
/// Partitions one transaction may touch.
pub const TXN_PARTITIONS_MAX: usize = 100_000;
/// How often each shard looks for timed-out transactions, unfinished commits/aborts and
/// expired transactional ids (Kafka looks for timeouts every 10 s and for expired ids every
/// hour: `transaction.abort.timed.out.transaction.cleanup.interval.ms`,
/// `transaction.remove.expired.transaction.cleanup.interval.ms`).
pub const TXN_CHECK_INTERVAL_MS: u64 = 1_000;

/// The [`TXN_TOPIC`] partition of a transactional id: the same hash as groups use (Kafka's
/// `Utils.abs(id.hashCode) % partitions`).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::protocol::coordinator_partition(transactional_id, partitions)
}

/// Whether a transactional id is acceptable.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= TXN_ID_BYTES_MAX
}
