//! The resolved settings of one bench run (flags over workload file over defaults).

use std::time::Duration;

use serde::Serialize;

use super::workload::{Acks, Compression, KeyMode, Rate, SizeDist};

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producers only: produce-ack latency and throughput.
    Produce,
    /// Consumers only, reading the topic from the earliest offset.
    Consume,
    /// Producers and consumers (from the latest offset): ack and end-to-end latency.
    E2e,
}

impl Mode {
    /// Whether the run has producers.
    pub fn produces(self) -> bool {
        matches!(self, Mode::Produce | Mode::E2e)
    }

    /// Whether the run has consumers.
    pub fn consumes(self) -> bool {
        matches!(self, Mode::Consume | Mode::E2e)
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Run mode.
    pub mode: Mode,
    /// Scenario name for reports.
    pub name: String,
    /// Bootstrap brokers (`host:port`).
    pub brokers: Vec<String>,
    /// Topic.
    pub topic: String,
    /// Partitions when creating the topic.
    pub partitions: i32,
    /// Replication factor when creating the topic.
    pub replication_factor: i16,
    /// Producer clients (each has one connection per leader broker).
    pub producers: usize,
    /// Consumer clients (each fetches its share of partitions).
    pub consumers: usize,
    /// Record value sizes.
    pub record_size: SizeDist,
    /// Key mode.
    pub key_mode: KeyMode,
    /// Maximum uncompressed batch size.
    pub batch_bytes: usize,
    /// How long a partial batch may wait.
    pub linger: Duration,
    /// Batch compression.
    pub compression: Compression,
    /// Produce acks.
    pub acks: Acks,
    /// Target rate over all producers.
    pub rate: Rate,
    /// Measured duration (None: until `messages`).
    pub duration: Option<Duration>,
    /// Measured messages over all producers (None: until `duration`).
    pub messages: Option<u64>,
    /// Unmeasured warm-up.
    pub warmup: Duration,
    /// glommio executors.
    pub cores: usize,
    /// CPUs to pin executors to (None: glommio's spread placement).
    pub cpus: Option<Vec<usize>>,
    /// Busy-poll time before an idle executor parks (zero: park at once).
    pub spin: Duration,
    /// Produce requests in flight per connection.
    pub max_in_flight: usize,
    /// Bytes of batches a producer may hold (open, queued and in flight).
    pub buffer_bytes: usize,
    /// Largest produce request.
    pub request_bytes_max: usize,
    /// Fetch `max_wait_ms`.
    pub fetch_wait: Duration,
    /// Fetch `max_bytes` per response (and per partition).
    pub fetch_bytes: usize,
    /// How long to wait after producing for consumers to catch up.
    pub drain_timeout: Duration,
    /// Where to write reports.
    pub report: Option<std::path::PathBuf>,
    /// The command line, for reports.
    pub command: String,
}

impl Settings {
    /// Checks cross-field rules.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.brokers.is_empty(), "--brokers is empty");
        anyhow::ensure!(self.partitions > 0, "--partitions must be > 0");
        anyhow::ensure!(self.cores > 0 && self.cores <= 64, "--cores must be 1..=64");
        anyhow::ensure!(self.max_in_flight > 0, "--max-in-flight must be > 0");
        if self.mode.produces() {
            anyhow::ensure!(self.producers > 0, "--producers must be > 0");
        }
        if self.mode.consumes() {
            anyhow::ensure!(self.consumers > 0, "--consumers must be > 0");
        }
        if self.mode == Mode::E2e {
            anyhow::ensure!(
                self.record_size.min() >= 8,
                "e2e needs records of at least 8 bytes (the send timestamp)"
            );
        }
        anyhow::ensure!(self.batch_bytes >= 128, "--batch-bytes must be >= 128");
        anyhow::ensure!(
            self.duration.is_some() || self.messages.is_some(),
            "give --duration or --messages"
        );
        if let Some(cpus) = &self.cpus {
            anyhow::ensure!(cpus.len() == self.cores, "--cpus must list exactly --cores CPUs");
        }
        Ok(())
    }
}
