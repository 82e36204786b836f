//! Prometheus text exposition of the shards' snapshots, through `prometheus-client`.
//!
//! A scrape builds a fresh `Registry` holding one collector over the gathered snapshots, so
//! each metric family is written once (one `# HELP`/`# TYPE`) with a series per shard,
//! partition or group, and nothing is kept between scrapes.

use std::collections::HashMap;
use std::fmt::Result as FmtResult;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{CommittedOffset, LATENCY_BUCKETS_US};
use super::{HistogramSnapshot, PartitionCounts, PartitionSnapshot, ShardSnapshot};

/// Facts about the broker process, for the node-wide series.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Crate version.
    pub version: &'static str,
    /// Node id advertised in Metadata.
    pub node_id: i32,
    /// Seconds since start-up.
    pub uptime_seconds: f64,
}

type Labels = Vec<(&'static str, String)>;

/// Label values are written verbatim by the encoder: escape them as the text format wants.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition, in Prometheus text format (version 0.0.4 / OpenMetrics-compatible).
pub fn render(node: &NodeInfo, shards: &[ShardSnapshot]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { node: node.clone(), shards: shards.to_vec() }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!("encoding metrics failed: {e}");
    }
    out
}

#[derive(Debug)]
struct Scrape {
    node: NodeInfo,
    shards: Vec<ShardSnapshot>,
}

fn partition_labels(shard: usize, p: &PartitionSnapshot) -> Labels {
    vec![
        ("shard", shard.to_string()),
        ("topic", escape(&p.topic)),
        ("partition", p.partition.to_string()),
    ]
}

fn encode_counter(m: &mut MetricEncoder, labels: &Labels, value: u64) -> FmtResult {
    m.encode_family(labels)?.encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

fn encode_gauge(m: &mut MetricEncoder, labels: &Labels, value: i64) -> FmtResult {
    m.encode_family(labels)?.encode_gauge(&value)
}

fn encode_histogram(m: &mut MetricEncoder, labels: &Labels, h: &HistogramSnapshot) -> FmtResult {
    let bounds = LATENCY_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).chain([f64::MAX]);
    let buckets: Vec<(f64, u64)> = bounds.zip(h.buckets.iter().copied()).collect();
    let sum = h.sum_us as f64 / 1e6;
    m.encode_family(labels)?.encode_histogram::<NoLabelSet>(sum, h.count, &buckets, None)
}

/// Every partition of every shard, with the shard it lives on.
fn partitions(shards: &[ShardSnapshot]) -> impl Iterator<Item = (usize, &PartitionSnapshot)> {
    shards.iter().flat_map(|s| s.partitions.iter().map(move |p| (s.shard, p)))
}

/// A per-partition family: name, help and how to read its value.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

const COUNTERS: [Family<PartitionCounts, u64>; 4] = [
    ("strata_partition_bytes_in", "Record batch bytes appended.", |c| c.bytes_in),
    ("strata_partition_messages_in", "Records appended.", |c| c.messages_in),
    ("strata_partition_bytes_out", "Record batch bytes returned to fetches.", |c| c.bytes_out),
    ("strata_partition_messages_out", "Records returned to fetches.", |c| c.messages_out),
];

const GAUGES: [Family<PartitionSnapshot, i64>; 5] = [
    ("strata_partition_log_start_offset", "First offset in the log.", |p| p.log_start_offset),
    ("strata_partition_log_end_offset", "Next offset to be assigned.", |p| p.log_end_offset),
    ("strata_partition_high_watermark", "End of acknowledged data.", |p| p.high_watermark),
    ("strata_partition_segments", "Segment files of the partition.", |p| p.segments as i64),
    (
        "strata_partition_under_replicated",
        "1 if the partition has fewer in-sync replicas than replicas.",
        |p| i64::from(p.under_replicated),
    ),
];

impl Scrape {
    fn node(&self, encoder: &mut DescriptorEncoder) -> FmtResult {
        let help = "1, labelled with the broker's version and node id.";
        let mut m =
            encoder.encode_descriptor("strata_build_info", help, None, MetricType::Gauge)?;
        let labels = vec![("version", self.node.version.to_owned())];
        let labels = [labels, vec![("node_id", self.node.node_id.to_string())]].concat();
        encode_gauge(&mut m, &labels, 1)?;
        let help = "Seconds since the broker started.";
        let mut m =
            encoder.encode_descriptor("strata_uptime_seconds", help, None, MetricType::Gauge)?;
        m.encode_gauge(&self.node.uptime_seconds)?;
        let help = "Partitions led here with fewer in-sync replicas than replicas.";
        let name = "strata_under_replicated_partitions";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        let under = partitions(&self.shards).filter(|(_, p)| p.under_replicated).count();
        m.encode_gauge(&(under as i64))?;
        let help = "Open client connections.";
        let mut m =
            encoder.encode_descriptor("strata_connections", help, None, MetricType::Gauge)?;
        for s in &self.shards {
            encode_gauge(&mut m, &vec![("shard", s.shard.to_string())], s.connections as i64)?;
        }
        let help = "Memory budget of the shard for requests and responses \
                    (queued-max-request-bytes split per shard).";
        let name = "strata_memory_budget_bytes";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &self.shards {
            encode_gauge(&mut m, &vec![("shard", s.shard.to_string())], s.budget_bytes as i64)?;
        }
        let help = "Bytes of the shard's memory budget held by requests being read or handled \
                    and responses not yet written.";
        let name = "strata_memory_budget_used_bytes";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &self.shards {
            let used = s.budget_used_bytes as i64;
            encode_gauge(&mut m, &vec![("shard", s.shard.to_string())], used)?;
        }
        let help = "Disk space held by segment files retention deleted and the shard keeps as \
                    its partitions' next segments (segment-recycle-max-bytes split per shard).";
        let name = "strata_segment_recycle_bytes";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &self.shards {
            let held = s.recycle_held_bytes as i64;
            encode_gauge(&mut m, &vec![("shard", s.shard.to_string())], held)?;
        }
        let help = "Client requests, connections or frames refused, by reason (a limit hit, \
                    a malformed request, ...; handler_panic: a bug contained to one request, \
                    group or transaction).";
        let mut m =
            encoder.encode_descriptor("strata_refusals", help, None, MetricType::Counter)?;
        for (reason, count) in super::refusals() {
            encode_counter(&mut m, &vec![("reason", escape(reason))], count)?;
        }
        let help = "Consumer fetches of one partition served here, by this broker's role \
                    (a follower serves consumers in its rack: KIP-392).";
        let name = "strata_consumer_fetches";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        let sum = |get: fn(&(u64, u64, u64)) -> u64| -> u64 {
            self.shards.iter().map(|s| get(&s.consumer_fetches)).sum()
        };
        encode_counter(&mut m, &vec![("role", "leader".to_owned())], sum(|c| c.0))?;
        encode_counter(&mut m, &vec![("role", "follower".to_owned())], sum(|c| c.1))?;
        let help = "Consumer fetches of one partition this leader sent to an in-sync replica \
                    in the consumer's rack (preferred_read_replica).";
        let name = "strata_preferred_read_replica_redirects";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        m.encode_counter::<NoLabelSet, u64, u64>(&sum(|c| c.2), None)?;
        let help = "Successful SASL logins: first authentications and re-authentications.";
        let name = "strata_sasl_authentications";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        let (first, again) = super::sasl_authentications();
        encode_counter(&mut m, &vec![("kind", "authentication".to_owned())], first)?;
        encode_counter(&mut m, &vec![("kind", "reauthentication".to_owned())], again)?;
        let throttle = super::replication_throttle();
        let sides = [("side", "leader".to_owned()), ("side", "follower".to_owned())];
        let help = "Bytes of replicas being added (reassignment) copied under \
                    leader/follower.replication.throttled.rate, by side.";
        let name = "strata_replication_throttled_bytes";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (label, (bytes, _)) in sides.iter().zip(throttle) {
            encode_counter(&mut m, &vec![label.clone()], bytes)?;
        }
        let help = "Replica fetches of moving partitions that waited for the replication \
                    throttle's rate, by side.";
        let name = "strata_replication_throttle_waits";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (label, (_, waits)) in sides.iter().zip(throttle) {
            encode_counter(&mut m, &vec![label.clone()], waits)?;
        }
        Ok(())
    }

    fn partitions(&self, encoder: &mut DescriptorEncoder) -> FmtResult {
        for (name, help, get) in COUNTERS {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (shard, p) in partitions(&self.shards) {
                encode_counter(&mut m, &partition_labels(shard, p), get(&p.counts))?;
            }
        }
        for (name, help, get) in GAUGES {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (shard, p) in partitions(&self.shards) {
                encode_gauge(&mut m, &partition_labels(shard, p), get(p))?;
            }
        }
        Ok(())
    }

    fn latency(&self, encoder: &mut DescriptorEncoder) -> FmtResult {
        let help = "Time from a request being read to its response being ready, per API.";
        let name = "strata_request_latency_seconds";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for s in &self.shards {
            for (api, h) in &s.apis {
                let labels = vec![("shard", s.shard.to_string()), ("api", escape(api))];
                encode_histogram(&mut m, &labels, h)?;
            }
        }
        let help = "Time from an append being queued to it being durable per the flush policy \
                    (O_DIRECT write, plus fdatasync when the policy asks for it).";
        let name = "strata_storage_append_latency_seconds";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for s in &self.shards {
            encode_histogram(&mut m, &vec![("shard", s.shard.to_string())], &s.append_latency)?;
        }
        Ok(())
    }

    fn groups(&self, encoder: &mut DescriptorEncoder) -> FmtResult {
        let ends: HashMap<(&str, i32), i64> = partitions(&self.shards)
            .map(|(_, p)| ((p.topic.as_str(), p.partition), p.high_watermark))
            .collect();
        let commits: Vec<&CommittedOffset> =
            self.shards.iter().flat_map(|s| s.committed.iter()).collect();
        let labels = |c: &CommittedOffset| -> Labels {
            vec![
                ("group", escape(&c.group)),
                ("topic", escape(&c.topic)),
                ("partition", c.partition.to_string()),
            ]
        };
        let help = "Offset a consumer group committed (the next record it will read).";
        let name = "strata_consumer_group_committed_offset";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for c in &commits {
            encode_gauge(&mut m, &labels(c), c.offset)?;
        }
        let help = "Records between a group's committed offset and the partition's high \
                    watermark.";
        let name = "strata_consumer_group_lag";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for c in &commits {
            if let Some(end) = ends.get(&(c.topic.as_str(), c.partition)) {
                encode_gauge(&mut m, &labels(c), (end - c.offset).max(0))?;
            }
        }
        Ok(())
    }
}

impl Scrape {
    fn access(&self, encoder: &mut DescriptorEncoder) -> FmtResult {
        let help = "Requests or parts of requests the authorizer denied, by operation and \
                    resource type.";
        let name = "strata_authorization_denied";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for ((operation, resource_type), count) in super::denial_counts() {
            let labels = vec![
                ("operation", operation.to_owned()),
                ("resource_type", resource_type.to_owned()),
            ];
            encode_counter(&mut m, &labels, count)?;
        }
        let throttles = super::throttle_counts();
        let labels = |kind: &str, user: &str, client: &str| -> Labels {
            vec![("quota", kind.to_owned()), ("user", escape(user)), ("client_id", escape(client))]
        };
        let help = "Requests throttled by a client quota, by quota (produce, fetch, request), \
                    user and client id (as the quota's entity distinguishes them).";
        let name = "strata_quota_throttled_requests";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for ((kind, user, client), t) in &throttles {
            encode_counter(&mut m, &labels(kind, user, client), t.count)?;
        }
        let help = "Total time clients were throttled (their connections muted) for, ms.";
        let name = "strata_quota_throttle_time_ms";
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for ((kind, user, client), t) in &throttles {
            encode_counter(&mut m, &labels(kind, user, client), t.ms)?;
        }
        Ok(())
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> FmtResult {
        self.node(&mut encoder)?;
        self.access(&mut encoder)?;
        self.partitions(&mut encoder)?;
        self.latency(&mut encoder)?;
        self.groups(&mut encoder)
    }
}
