//! `summary.json`: the machine-readable result of a run. Every field is documented here and in
//! `perf/README.md` ("summary.json fields"); `SCHEMA_VERSION` changes when a field does.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::run::Outcome;
use crate::bench::settings::Mode;
use crate::bench::stats::NS_PER_S;
use crate::bench::workload::Rate;

/// Version of the `summary.json` layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Layout version of this document (`SCHEMA_VERSION`).
    pub schema_version: u32,
    /// Scenario name (`--workload` file's `name`, else the mode).
    pub name: String,
    /// `produce`, `consume` or `e2e`.
    pub mode: Mode,
    /// The command line that ran the bench.
    pub command: String,
    /// Wall-clock start of the measured window, Unix milliseconds.
    pub measure_start_unix_ms: u64,
    /// Length of the measured window in seconds (warm-up excluded).
    pub measured_seconds: f64,
    /// The settings in force.
    pub settings: SettingsSummary,
    /// Produce throughput over the measured window (absent for `consume`).
    pub produce: Option<Throughput>,
    /// Consume throughput over the measured window (absent for `produce`).
    pub consume: Option<Throughput>,
    /// Records acknowledged over the whole run, warm-up included.
    pub produced_total: u64,
    /// Records consumed over the whole run, warm-up included.
    pub consumed_total: u64,
    /// e2e: consumers saw every acknowledged record before the drain timeout.
    pub drained: bool,
    /// e2e: consumed records not sent by this run (left by an earlier run), skipped.
    pub foreign_records: u64,
    /// CPU the bench process used over the measured window, percent of one core.
    pub tool_cpu_percent: Option<f64>,
    /// Produce-ack latency (absent for `consume` and for `acks=0`).
    pub ack_latency: Option<Latency>,
    /// End-to-end latency (present for `e2e` only).
    pub e2e_latency: Option<Latency>,
    /// One entry per second of the measured window.
    pub timeline: Vec<SecondSummary>,
}

/// The settings of the run, as resolved from flags, workload file and defaults.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsSummary {
    /// Bootstrap brokers.
    pub brokers: Vec<String>,
    /// Topic.
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Producer clients.
    pub producers: usize,
    /// Consumer clients.
    pub consumers: usize,
    /// Record value size spec (`100`, `100..1000`, `100:80,1024:20`).
    pub record_size: String,
    /// Mean record value size in bytes.
    pub record_size_mean_bytes: f64,
    /// `none`, `random` or `sequential`.
    pub key_mode: String,
    /// Maximum uncompressed batch bytes.
    pub batch_bytes: usize,
    /// Linger in milliseconds.
    pub linger_ms: f64,
    /// Compression codec.
    pub compression: String,
    /// `0`, `1` or `all`.
    pub acks: String,
    /// Target rate in msgs/s, or null for `max`.
    pub rate_msgs_per_s: Option<f64>,
    /// Measured duration in seconds, if the run was time-bound.
    pub duration_s: Option<f64>,
    /// Measured message count, if the run was count-bound.
    pub messages: Option<u64>,
    /// Warm-up in seconds.
    pub warmup_s: f64,
    /// glommio executors of the load tool.
    pub cores: usize,
    /// Produce requests in flight per connection.
    pub max_in_flight: usize,
}

/// Throughput over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Records.
    pub messages: u64,
    /// Record value bytes (keys and framing excluded).
    pub bytes: u64,
    /// Records per second.
    pub msgs_per_s: f64,
    /// Value megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Records whose produce failed (produce only; 0 for consume).
    pub errors: u64,
}

/// A latency distribution in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples (records).
    pub count: u64,
    /// Smallest latency, µs.
    pub min_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Standard deviation, µs.
    pub stdev_us: f64,
    /// 50th percentile, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// 99.99th percentile, µs.
    pub p9999_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
}

impl Latency {
    /// Summarizes a histogram (None when empty).
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        Some(Latency {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            stdev_us: h.stdev(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
        })
    }
}

/// One second of the measured window (records counted when acknowledged / consumed).
#[derive(Debug, Clone, Serialize)]
pub struct SecondSummary {
    /// Seconds since the start of the measured window.
    pub second: usize,
    /// Records acknowledged in this second.
    pub produce_msgs: u64,
    /// Value MB (10^6 bytes) acknowledged in this second.
    pub produce_mb: f64,
    /// Records consumed in this second.
    pub consume_msgs: u64,
    /// Value MB consumed in this second.
    pub consume_mb: f64,
    /// Produce-ack latency percentiles of acks in this second, µs (null without samples).
    pub ack_p50_us: Option<u64>,
    /// See `ack_p50_us`.
    pub ack_p99_us: Option<u64>,
    /// See `ack_p50_us`.
    pub ack_max_us: Option<u64>,
    /// End-to-end latency percentiles of records consumed in this second, µs.
    pub e2e_p50_us: Option<u64>,
    /// See `e2e_p50_us`.
    pub e2e_p99_us: Option<u64>,
    /// See `e2e_p50_us`.
    pub e2e_max_us: Option<u64>,
}

fn quantile(h: &Histogram<u64>, q: f64) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q))
}

impl Summary {
    /// Builds the summary of a run.
    pub fn of(outcome: &Outcome) -> Summary {
        let s = &outcome.settings;
        let rec = &outcome.recorder;
        let seconds = (outcome.measure_end_ns.saturating_sub(outcome.measure_start_ns)) as f64
            / NS_PER_S as f64;
        let seconds = seconds.max(1e-9);
        let throughput = |messages: u64, bytes: u64, errors: u64| Throughput {
            messages,
            bytes,
            msgs_per_s: messages as f64 / seconds,
            mb_per_s: bytes as f64 / 1e6 / seconds,
            errors,
        };
        let timeline_len = (seconds.ceil() as usize).min(rec.seconds.len());
        Summary {
            schema_version: SCHEMA_VERSION,
            name: s.name.clone(),
            mode: s.mode,
            command: s.command.clone(),
            measure_start_unix_ms: outcome.measure_start_ns / 1_000_000,
            measured_seconds: seconds,
            settings: SettingsSummary::of(outcome),
            produce: s.mode.produces().then(|| throughput(rec.acked, rec.acked_bytes, rec.errors)),
            consume: s.mode.consumes().then(|| throughput(rec.consumed, rec.consumed_bytes, 0)),
            produced_total: outcome.produced_all,
            consumed_total: outcome.consumed_all,
            drained: outcome.drained,
            foreign_records: rec.foreign,
            tool_cpu_percent: outcome.tool_cpu_percent,
            ack_latency: Latency::of(&rec.ack),
            e2e_latency: Latency::of(&rec.e2e),
            timeline: rec.seconds[..timeline_len]
                .iter()
                .enumerate()
                .map(|(second, x)| SecondSummary {
                    second,
                    produce_msgs: x.acked,
                    produce_mb: x.acked_bytes as f64 / 1e6,
                    consume_msgs: x.consumed,
                    consume_mb: x.consumed_bytes as f64 / 1e6,
                    ack_p50_us: quantile(&x.ack, 0.5),
                    ack_p99_us: quantile(&x.ack, 0.99),
                    ack_max_us: (!x.ack.is_empty()).then(|| x.ack.max()),
                    e2e_p50_us: quantile(&x.e2e, 0.5),
                    e2e_p99_us: quantile(&x.e2e, 0.99),
                    e2e_max_us: (!x.e2e.is_empty()).then(|| x.e2e.max()),
                })
                .collect(),
        }
    }
}

impl SettingsSummary {
    fn of(outcome: &Outcome) -> SettingsSummary {
        let s = &outcome.settings;
        SettingsSummary {
            brokers: s.brokers.clone(),
            topic: s.topic.clone(),
            partitions: outcome.partitions,
            producers: s.producers,
            consumers: s.consumers,
            record_size: s.record_size.to_string(),
            record_size_mean_bytes: s.record_size.mean(),
            key_mode: s.key_mode.to_string(),
            batch_bytes: s.batch_bytes,
            linger_ms: s.linger.as_secs_f64() * 1e3,
            compression: s.compression.to_string(),
            acks: s.acks.to_string(),
            rate_msgs_per_s: match s.rate {
                Rate::Max => None,
                Rate::PerSecond(r) => Some(r),
            },
            duration_s: s.duration.map(|d| d.as_secs_f64()),
            messages: s.messages,
            warmup_s: s.warmup.as_secs_f64(),
            cores: s.cores,
            max_in_flight: s.max_in_flight,
        }
    }
}

/// Every field of `summary.json` as a dotted path (`[]` marks an array of objects). Each is
/// documented in `perf/README.md`; the unit tests check both directions.
pub const FIELDS: &[&str] = &[
    "schema_version",
    "name",
    "mode",
    "command",
    "measure_start_unix_ms",
    "measured_seconds",
    "settings",
    "settings.brokers",
    "settings.topic",
    "settings.partitions",
    "settings.producers",
    "settings.consumers",
    "settings.record_size",
    "settings.record_size_mean_bytes",
    "settings.key_mode",
    "settings.batch_bytes",
    "settings.linger_ms",
    "settings.compression",
    "settings.acks",
    "settings.rate_msgs_per_s",
    "settings.duration_s",
    "settings.messages",
    "settings.warmup_s",
    "settings.cores",
    "settings.max_in_flight",
    "produce",
    "produce.messages",
    "produce.bytes",
    "produce.msgs_per_s",
    "produce.mb_per_s",
    "produce.errors",
    "consume",
    "consume.messages",
    "consume.bytes",
    "consume.msgs_per_s",
    "consume.mb_per_s",
    "consume.errors",
    "produced_total",
    "consumed_total",
    "drained",
    "foreign_records",
    "tool_cpu_percent",
    "ack_latency",
    "ack_latency.count",
    "ack_latency.min_us",
    "ack_latency.mean_us",
    "ack_latency.stdev_us",
    "ack_latency.p50_us",
    "ack_latency.p90_us",
    "ack_latency.p99_us",
    "ack_latency.p999_us",
    "ack_latency.p9999_us",
    "ack_latency.max_us",
    "e2e_latency",
    "e2e_latency.count",
    "e2e_latency.min_us",
    "e2e_latency.mean_us",
    "e2e_latency.stdev_us",
    "e2e_latency.p50_us",
    "e2e_latency.p90_us",
    "e2e_latency.p99_us",
    "e2e_latency.p999_us",
    "e2e_latency.p9999_us",
    "e2e_latency.max_us",
    "timeline",
    "timeline[].second",
    "timeline[].produce_msgs",
    "timeline[].produce_mb",
    "timeline[].consume_msgs",
    "timeline[].consume_mb",
    "timeline[].ack_p50_us",
    "timeline[].ack_p99_us",
    "timeline[].ack_max_us",
    "timeline[].e2e_p50_us",
    "timeline[].e2e_p99_us",
    "timeline[].e2e_max_us",
];

/// The documented fields ([`FIELDS`]).
pub fn documented_fields() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().copied()
}
