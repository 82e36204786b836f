//! Broker metrics: per-shard counters and histograms, and their Prometheus exposition.
//!
//! Thread-per-core: every counter here lives on ONE shard (`Cell`s inside an `Rc`, never
//! shared across threads), and only that shard writes it, so recording is a plain add: no
//! atomics, no locks, no allocation. The per-partition counters are resolved once, when the
//! shard opens the partition, and kept next to its log, so the produce and fetch paths never
//! look a label up. A scrape asks every shard (over the shard mesh) for a [`ShardSnapshot`],
//! plain data that may cross threads, and [`render`] turns the snapshots into Prometheus text
//! with the `prometheus-client` crate's encoder.
//!
//! This module imports nothing from the crate: it knows neither Kafka nor glommio.

mod access;
mod limited;
mod render;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::time::Duration;

pub use access::{count_denial, count_throttle, denial_counts, throttle_counts, Throttled};
pub use limited::{count_refusal, refusals, LogLimiter, LOG_INTERVAL};
pub use render::{render, NodeInfo};

/// Successful SASL logins, process-wide: first authentications, then re-authentications
/// (KIP-368). Touched once per login, never on the produce/fetch path.
static SASL_AUTHENTICATIONS: [std::sync::atomic::AtomicU64; 2] =
    [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)];

/// Counts one successful SASL login (`strata_sasl_authentications_total{kind}`).
pub fn count_sasl_authentication(reauthentication: bool) {
    let counter = &SASL_AUTHENTICATIONS[usize::from(reauthentication)];
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Successful SASL logins so far: (authentications, re-authentications).
pub fn sasl_authentications() -> (u64, u64) {
    let get = |i: usize| SASL_AUTHENTICATIONS[i].load(std::sync::atomic::Ordering::Relaxed);
    (get(0), get(1))
}

/// Replication throttling (`leader/follower.replication.throttled.rate`), process-wide, per
/// side (0 leader, 1 follower): bytes of replicas being added counted against the rate, and
/// the waits the rate imposed. Touched once per replica fetch of a moving partition.
static REPLICATION_THROTTLE: [[std::sync::atomic::AtomicU64; 2]; 2] = [
    [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)],
    [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)],
];

/// Counts `bytes` copied under a replication throttle, and whether the rate made the copy
/// wait first (`strata_replication_throttled_bytes_total`, `..._waits_total`, by side).
pub fn count_replication_throttle(follower: bool, bytes: u64, waited: bool) {
    let side = &REPLICATION_THROTTLE[usize::from(follower)];
    side[0].fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    side[1].fetch_add(u64::from(waited), std::sync::atomic::Ordering::Relaxed);
}

/// Per side (leader, follower): (throttled bytes, waits) so far.
pub fn replication_throttle() -> [(u64, u64); 2] {
    let get = |side: usize, i: usize| {
        REPLICATION_THROTTLE[side][i].load(std::sync::atomic::Ordering::Relaxed)
    };
    [(get(0, 0), get(0, 1)), (get(1, 0), get(1, 1))]
}

/// Upper bounds (µs) of the latency histogram buckets; a last `+Inf` bucket is implied.
pub const LATENCY_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

const BUCKET_COUNT: usize = LATENCY_BUCKETS_US.len() + 1;

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]), written by one shard.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Cell<u64>; BUCKET_COUNT],
    sum_us: Cell<u64>,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let index = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(BUCKET_COUNT - 1);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.set(bucket.get().wrapping_add(1));
        }
        self.sum_us.set(self.sum_us.get().saturating_add(us));
    }

    /// The current counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(Cell::get).collect();
        let count = buckets.iter().sum();
        HistogramSnapshot { buckets, count, sum_us: self.sum_us.get() }
    }
}

/// A histogram's counts at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative), one per [`LATENCY_BUCKETS_US`] plus `+Inf`.
    pub buckets: Vec<u64>,
    /// Observations in all.
    pub count: u64,
    /// Sum of the observations, µs.
    pub sum_us: u64,
}

/// Traffic counters of one partition, on the shard that owns it.
#[derive(Debug, Default)]
pub struct PartitionCounters {
    bytes_in: Cell<u64>,
    messages_in: Cell<u64>,
    bytes_out: Cell<u64>,
    messages_out: Cell<u64>,
}

impl PartitionCounters {
    /// Records an append of `messages` records in `bytes` bytes of batches.
    pub fn record_in(&self, bytes: u64, messages: u64) {
        self.bytes_in.set(self.bytes_in.get().wrapping_add(bytes));
        self.messages_in.set(self.messages_in.get().wrapping_add(messages));
    }

    /// Records a read that returned `messages` records in `bytes` bytes of batches.
    pub fn record_out(&self, bytes: u64, messages: u64) {
        self.bytes_out.set(self.bytes_out.get().wrapping_add(bytes));
        self.messages_out.set(self.messages_out.get().wrapping_add(messages));
    }

    /// The current counts.
    pub fn snapshot(&self) -> PartitionCounts {
        PartitionCounts {
            bytes_in: self.bytes_in.get(),
            messages_in: self.messages_in.get(),
            bytes_out: self.bytes_out.get(),
            messages_out: self.messages_out.get(),
        }
    }
}

/// [`PartitionCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Record batch bytes appended.
    pub bytes_in: u64,
    /// Records appended.
    pub messages_in: u64,
    /// Record batch bytes returned to fetches.
    pub bytes_out: u64,
    /// Records returned to fetches (whole batches are counted).
    pub messages_out: u64,
}

/// Shard-wide metrics: request latency per API and storage append latency.
#[derive(Debug)]
pub struct ShardMetrics {
    /// One histogram per API slot (the caller numbers its APIs).
    api_latency: Vec<Histogram>,
    /// From an append being queued to it being acknowledged (written, and fdatasync'ed if the
    /// flush policy says so).
    pub append_latency: Histogram,
    /// Consumer fetches of one partition read on this shard: as leader, as follower
    /// (KIP-392's fetch from the closest replica).
    consumer_fetches: [Cell<u64>; 2],
    /// Consumer fetches of one partition the leader sent to a replica in the consumer's rack.
    read_replica_redirects: Cell<u64>,
}

impl ShardMetrics {
    /// Metrics for `api_slots` APIs.
    pub fn new(api_slots: usize) -> ShardMetrics {
        ShardMetrics {
            api_latency: (0..api_slots).map(|_| Histogram::default()).collect(),
            append_latency: Histogram::default(),
            consumer_fetches: Default::default(),
            read_replica_redirects: Cell::new(0),
        }
    }

    /// Counts a consumer's fetch of one partition served here, as follower or as leader.
    pub fn count_consumer_fetch(&self, follower: bool) {
        let counter = &self.consumer_fetches[usize::from(follower)];
        counter.set(counter.get() + 1);
    }

    /// Counts a consumer's fetch answered with a preferred read replica.
    pub fn count_read_replica_redirect(&self) {
        self.read_replica_redirects.set(self.read_replica_redirects.get() + 1);
    }

    /// Consumer fetches served: (as leader, as follower, sent to a rack's replica).
    pub fn consumer_fetch_counts(&self) -> (u64, u64, u64) {
        let [leader, follower] = &self.consumer_fetches;
        (leader.get(), follower.get(), self.read_replica_redirects.get())
    }

    /// Records how long a request of API slot `slot` took (ignored if out of range).
    pub fn observe_request(&self, slot: usize, elapsed: Duration) {
        if let Some(histogram) = self.api_latency.get(slot) {
            histogram.observe(elapsed);
        }
    }

    /// The latency histogram of API slot `slot`.
    pub fn api_snapshot(&self, slot: usize) -> HistogramSnapshot {
        self.api_latency.get(slot).map(Histogram::snapshot).unwrap_or_default()
    }
}

/// One partition, as seen by the shard owning it.
#[derive(Clone, Debug, Default)]
pub struct PartitionSnapshot {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Traffic.
    pub counts: PartitionCounts,
    /// First offset in the log.
    pub log_start_offset: i64,
    /// Next offset to be assigned.
    pub log_end_offset: i64,
    /// End of acknowledged data (what consumers see).
    pub high_watermark: i64,
    /// Segment files.
    pub segments: u64,
    /// Whether the partition has fewer in-sync replicas than replicas.
    pub under_replicated: bool,
}

/// A consumer group's committed offset for one partition.
#[derive(Clone, Debug, Default)]
pub struct CommittedOffset {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// The committed offset (the next record the group will read).
    pub offset: i64,
}

/// Everything one shard reports to a scrape.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    /// Shard index.
    pub shard: usize,
    /// Open client connections.
    pub connections: u64,
    /// The shard's memory budget for requests and responses.
    pub budget_bytes: u64,
    /// Bytes of that budget in use.
    pub budget_used_bytes: u64,
    /// Disk space held by the segment files this shard keeps for reuse.
    pub recycle_held_bytes: u64,
    /// Request latency per API name (only APIs that saw requests).
    pub apis: Vec<(String, HistogramSnapshot)>,
    /// Append-to-acknowledgement latency of this shard's partitions.
    pub append_latency: HistogramSnapshot,
    /// The partitions this shard owns.
    pub partitions: Vec<PartitionSnapshot>,
    /// Offsets committed by the groups this shard coordinates.
    pub committed: Vec<CommittedOffset>,
    /// Consumer fetches of one partition served: (as leader, as follower, sent to a
    /// replica in the consumer's rack).
    pub consumer_fetches: (u64, u64, u64),
}
