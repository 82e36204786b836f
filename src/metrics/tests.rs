use std::time::Duration;

use super::*;

#[test]
fn histogram_buckets_by_upper_bound() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(50));
    h.observe(Duration::from_micros(51));
    h.observe(Duration::from_secs(100));
    let s = h.snapshot();
    assert_eq!(s.count, 3);
    assert_eq!(s.buckets[0], 1);
    assert_eq!(s.buckets[1], 1);
    assert_eq!(s.buckets[LATENCY_BUCKETS_US.len()], 1);
    assert_eq!(s.sum_us, 50 + 51 + 100_000_000);
}

fn sample() -> Vec<ShardSnapshot> {
    let counters = PartitionCounters::default();
    counters.record_in(1000, 10);
    counters.record_out(500, 5);
    let partition = PartitionSnapshot {
        topic: "t".into(),
        partition: 3,
        counts: counters.snapshot(),
        log_start_offset: 0,
        log_end_offset: 10,
        high_watermark: 10,
        segments: 1,
        under_replicated: false,
    };
    let committed =
        CommittedOffset { group: "g\"1".into(), topic: "t".into(), partition: 3, offset: 4 };
    let api = Histogram::default();
    api.observe(Duration::from_millis(2));
    vec![ShardSnapshot {
        shard: 1,
        connections: 2,
        budget_bytes: 64 << 20,
        budget_used_bytes: 1024,
        recycle_held_bytes: 4096,
        apis: vec![("Produce".into(), api.snapshot())],
        append_latency: HistogramSnapshot::default(),
        partitions: vec![partition],
        committed: vec![committed],
        consumer_fetches: (5, 3, 1),
    }]
}

#[test]
fn render_writes_each_family_once_with_escaped_labels() {
    let node = NodeInfo { version: "0.1.0", node_id: 7, uptime_seconds: 1.5 };
    let text = render(&node, &sample());
    let series = "strata_partition_messages_in_total{shard=\"1\",topic=\"t\",partition=\"3\"} 10";
    assert!(text.contains(series), "{text}");
    let lag = "strata_consumer_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"3\"} 6";
    assert!(text.contains(lag), "{text}");
    let count = "strata_request_latency_seconds_count{shard=\"1\",api=\"Produce\"} 1";
    assert!(text.contains(count), "{text}");
    let inf = "strata_request_latency_seconds_bucket{le=\"+Inf\",shard=\"1\",api=\"Produce\"} 1";
    assert!(text.contains(inf), "{text}");
    assert_eq!(text.matches("# TYPE strata_partition_bytes_in counter").count(), 1, "{text}");
    assert!(text.contains("strata_consumer_fetches_total{role=\"follower\"} 3"), "{text}");
    assert!(text.contains("strata_preferred_read_replica_redirects_total 1"), "{text}");
    assert!(text.contains("strata_segment_recycle_bytes{shard=\"1\"} 4096"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}
