"""The admin HTTP listener: /metrics counters after real traffic (parsed with Prometheus's
own Python parser, not a regex), health endpoints, the JSON status page, and the Grafana
dashboard's metric names against what the broker exports."""
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, create_topic

N = 500
SIZE = 100


def get(broker, path):
    try:
        with urllib.request.urlopen(f"http://{broker.admin}{path}", timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def scrape(broker):
    status, content_type, text = get(broker, "/metrics")
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    families = list(text_string_to_metric_families(text))
    # The stricter OpenMetrics parser accepts it too.
    strict = {s.name for f in openmetrics_families(text) for s in f.samples}
    assert strict == {s.name for f in families for s in f.samples}
    return families


def samples(families, name, **labels):
    """Values of the samples called `name` whose labels include `labels`."""
    return [s.value for f in families for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def one(families, name, **labels):
    found = samples(families, name, **labels)
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


def produce(bootstrap, topic, count):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(count):
        p.produce(topic, value=(b"%08d" % i).ljust(SIZE, b"x"), partition=0)
    assert p.flush(30) == 0


def consume_and_commit(bootstrap, topic, group, count):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    while got < count:
        m = c.poll(30)
        assert m is not None, f"only {got} of {count} messages arrived"
        assert m.error() is None, m.error()
        assert len(m.value()) == SIZE
        got += 1
    c.commit(asynchronous=False)
    c.close()


def test_metrics_move_by_the_traffic(broker):
    create_topic(broker.bootstrap, "metered", 1)
    produce(broker.bootstrap, "metered", N)
    consume_and_commit(broker.bootstrap, "metered", "metered-group", N)

    families = scrape(broker)
    part = {"topic": "metered", "partition": "0"}
    assert one(families, "strata_partition_messages_in_total", **part) == N
    bytes_in = one(families, "strata_partition_bytes_in_total", **part)
    assert N * SIZE < bytes_in < 2 * N * SIZE  # values plus record and batch overhead
    assert one(families, "strata_partition_messages_out_total", **part) == N
    assert one(families, "strata_partition_bytes_out_total", **part) == bytes_in
    assert one(families, "strata_partition_log_end_offset", **part) == N
    assert one(families, "strata_partition_high_watermark", **part) == N
    assert one(families, "strata_partition_log_start_offset", **part) == 0
    assert one(families, "strata_partition_segments", **part) >= 1
    assert one(families, "strata_partition_under_replicated", **part) == 0
    group = {"group": "metered-group", **part}
    assert one(families, "strata_consumer_group_committed_offset", **group) == N
    assert one(families, "strata_consumer_group_lag", **group) == 0
    for api in ["Produce", "Fetch", "OffsetCommit", "Metadata"]:
        counts = samples(families, "strata_request_latency_seconds_count", api=api)
        assert sum(counts) >= 1, api
    assert sum(samples(families, "strata_storage_append_latency_seconds_count")) >= 1
    assert one(families, "strata_under_replicated_partitions") == 0

    # More data and no consumer: the lag is exactly what was added.
    produce(broker.bootstrap, "metered", 10)
    families = scrape(broker)
    assert one(families, "strata_partition_messages_in_total", **part) == N + 10
    assert one(families, "strata_consumer_group_lag", **group) == 10


def test_health_and_status(broker):
    assert get(broker, "/health/live")[0] == 200
    assert get(broker, "/health/ready")[0] == 200
    assert get(broker, "/nothing-here")[0] == 404
    status, content_type, body = get(broker, "/v1/status")
    assert status == 200 and content_type == "application/json"
    s = json.loads(body)
    assert s["ready"] is True
    assert s["shards"] == 2
    assert s["listeners"]["kafka"] == broker.bootstrap
    assert s["listeners"]["admin"] == broker.admin
    assert s["data_dir"] == str(broker.data_dir)
    assert s["topics"] >= 1 and s["partitions"] >= 1  # __consumer_offsets at least
    assert s["version"]


def test_admin_listener_can_be_disabled(make_broker):
    b = make_broker("--admin-listen", "off")
    assert b.admin is None
    assert any("admin=off" in line for line in b.lines)


def test_dashboard_uses_exported_metric_names(broker):
    create_topic(broker.bootstrap, "dash", 1)
    produce(broker.bootstrap, "dash", 5)
    consume_and_commit(broker.bootstrap, "dash", "dash-group", 5)
    exported = {s.name for f in scrape(broker) for s in f.samples}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "strata.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    used = {m for e in exprs for m in re.findall(r"\bstrata_[a-z_]+", e)}
    assert used, "the dashboard uses no strata metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
