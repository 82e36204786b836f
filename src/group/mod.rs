//! Consumer groups: Kafka's classic group protocol, KIP-848 consumer groups and committed
//! offsets.
//!
//! * [`state`] is the pure state machine of one group (members, generations, protocol
//!   selection, leader, assignments, timeouts, static membership, committed offsets). It never
//!   reads a clock: every call takes `now_ms`, so it is tested without time passing.
//! * [`records`] encodes and decodes Kafka's own `__consumer_offsets` keys and values
//!   (OffsetCommitKey/Value, GroupMetadataKey/Value), so compaction can keep the latest.
//! * [`coordinator`] runs the groups of one shard: it owns that shard's partitions of
//!   `__consumer_offsets`, persists through them, replays them at start-up and drives the
//!   session and rebalance timers.
//! * [`consumer`] is the pure state machine of a KIP-848 consumer group (member epochs,
//!   target assignment, incremental reconciliation, assignors, its records), which
//!   `consumer_ops` drives on the coordinator.
//! * [`migration`] converts a classic group into a consumer group and back online, and
//!   answers classic members inside a consumer group (Kafka 4.0's migration).
//! * [`share_meta`] encodes and decodes a share group's ShareGroupStatePartitionMetadata
//!   record (which share-partitions it initialized), which the coordinator replays and
//!   keeps for `server::share`.
//! * [`api`] holds the `Send` request/response enums that cross the shard mesh.
//!
//! A group lives on exactly one shard: the one that owns partition
//! [`partition_for`]`(group_id, n)` of [`OFFSETS_TOPIC`].
//!
//! Imports `storage`, `record_batch`, `protocol` and `config` only.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod consumer;
mod consumer_ops;
pub mod coordinator;
mod load;
mod migration;
mod offsets;
pub mod records;
pub mod share_meta;
mod share_ops;
pub mod state;

#[cfg(test)]
mod share_meta_tests;
#[cfg(test)]
mod tests;

pub use coordinator::Coordinator;

/// Name of the internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `group.min.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MIN: i32 = 6_000;
/// Kafka's `group.max.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MAX: i32 = 1_800_000;
/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Longest group id accepted (Kafka has no limit; keys must stay small).
pub const GROUP_ID_BYTES_MAX: usize = 4096;
/// Members one group may have (Kafka's `group.max.size` default is unlimited; we bound it).
pub const GROUP_MEMBERS_MAX: usize = 10_000;

pub use crate::protocol::{coordinator_partition as partition_for, java_string_hash};

/// Wall-clock milliseconds since the Unix epoch (the coordinator's time source).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
