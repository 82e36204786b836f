//! Share groups (KIP-932, "queues for Kafka"): many consumers share one partition's records,
//! each record acquired by one member at a time and acknowledged on its own.
//!
//! * [`partition`] is the pure state machine of one share-partition (one partition for one
//!   share group): start and end offsets, in-flight records, acquisition locks, delivery
//!   counts, acknowledgements. It never reads a clock and does no I/O.
//! * [`group`] is the pure state machine of one share group's membership: heartbeats,
//!   member epochs, the uniform share assignor, session expiry.
//! * [`records`] encodes and decodes Kafka's `__share_group_state` records (ShareSnapshot and
//!   ShareUpdate keys and values), through which the server persists each share-partition.
//!
//! The server runs them (`server::share`): a share group lives on the shard coordinating its
//! group id, a share-partition on the shard owning the partition.
//!
//! Imports `protocol` and `config` only.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod group;
pub mod partition;
pub mod records;

#[cfg(test)]
mod tests;

/// Name of the internal topic holding share-partition state.
pub const STATE_TOPIC: &str = "__share_group_state";
/// Partitions of [`STATE_TOPIC`] (Kafka's `share.coordinator.state.topic.num.partitions` is
/// 50; a single broker's shards need fewer).
pub const STATE_TOPIC_PARTITIONS: i32 = 8;
/// Updates written for one share-partition between two snapshots (Kafka's
/// `share.coordinator.snapshot.update.records.per.snapshot` default).
pub const UPDATES_PER_SNAPSHOT: u32 = 500;
/// Members one share group may have (Kafka's `group.share.max.size` default).
pub const GROUP_MEMBERS_MAX: usize = 200;

/// The `__share_group_state` partition of a share-partition: Kafka's key
/// `"group:topicId:partition"` hashed as group ids are.
pub fn state_partition(key: &records::ShareKey, partitions: i32) -> i32 {
    let text = format!("{}:{}:{}", key.group, key.topic_id, key.partition);
    crate::protocol::coordinator_partition(&text, partitions)
}
