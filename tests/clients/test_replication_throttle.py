"""Replication throttles during a reassignment (issue 19, KIP-455's
`leader.replication.throttled.rate` / `follower.replication.throttled.rate`): ordinary
follower traffic is never throttled; the copy of a replica being added goes through both
throttles (their counters in /metrics show the bytes and the waits the rate imposed), and it
is whole: the new replica's log is byte for byte the leader's. How fast a throttled copy runs
is a performance figure, not asserted here.
"""
import json
import urllib.request

from confluent_kafka import Producer

from test_cluster_ops import strata
from test_replication import bootstrap, create, layout, log_bytes, poll, wait_in_sync

# Bytes/s. The copy takes two replica fetches (a follower asks for 1 MiB per partition): after
# the first, each side is in debt (a burst is one second's worth), so the follower holds its
# second fetch back; the leader's rate is the lower, so its debt outlasts the follower's wait
# and the leader holds the second read back too.
LEADER_RATE = 200_000
FOLLOWER_RATE = 400_000
RECORDS = 1500  # of about 1 KiB: more than one fetch's worth


def throttle_counters(node):
    """{(metric, side): value} of the replication throttle counters of one broker."""
    with urllib.request.urlopen(f"http://{node.admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        for name in ("strata_replication_throttled_bytes_total",
                     "strata_replication_throttle_waits_total"):
            for side in ("leader", "follower"):
                if line.startswith(f'{name}{{side="{side}"}} '):
                    out[(name, side)] = int(float(line.split()[-1]))
    return out


def produce(nodes, topic, partition, count):
    p = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all", "linger.ms": 5})
    errors = []
    for i in range(count):
        p.produce(topic, value=b"%07d" % i + b"x" * 1017, partition=partition,
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors[:3]


def test_a_reassignment_copies_through_both_throttles_and_nothing_else_does(make_cluster,
                                                                           tmp_path):
    rates = ["--leader-replication-throttled-rate", str(LEADER_RATE),
             "--follower-replication-throttled-rate", str(FOLLOWER_RATE)]
    nodes = make_cluster(2, "--shards", "1", *rates)
    # Ordinary replication (both replicas in sync from the start) is not throttled.
    create(nodes, "steady", 1, 2)
    wait_in_sync(nodes, "steady", 1, replicas=2)
    produce(nodes, "steady", 0, 200)
    create(nodes, "moving", 1, 1)
    [(leader, replicas, _)] = layout(nodes, "moving").values()
    other = 3 - leader
    produce(nodes, "moving", 0, RECORDS)
    for node in nodes:
        counters = throttle_counters(node)
        assert counters and all(v == 0 for v in counters.values()), counters

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": "moving", "partition": 0, "replicas": [leader, other]}]}))
    strata(nodes, "cluster", "reassign", "execute", "--plan", str(plan))
    poll("the reassignment to complete",
         lambda: strata(nodes, "cluster", "reassign", "verify", "--plan", str(plan))["complete"])
    wait_in_sync(nodes, "moving", 1, replicas=2)

    copied = len(log_bytes(nodes[leader - 1].data_dir, "moving", 0))
    assert copied > RECORDS * 1024
    poll("the new replica's log to be the leader's", lambda: log_bytes(
        nodes[other - 1].data_dir, "moving", 0) == log_bytes(nodes[leader - 1].data_dir,
                                                              "moving", 0))
    sent = throttle_counters(nodes[leader - 1])
    received = throttle_counters(nodes[other - 1])
    print(f"\nleader side: {sent}\nfollower side: {received}")
    # Every byte of the copy went through both throttles (at least once: a fetch may be
    # answered again after a retry), and the rate held the copy back on both sides.
    assert sent[("strata_replication_throttled_bytes_total", "leader")] >= copied
    assert received[("strata_replication_throttled_bytes_total", "follower")] >= copied
    assert sent[("strata_replication_throttle_waits_total", "leader")] > 0
    assert received[("strata_replication_throttle_waits_total", "follower")] > 0
    # Each broker throttled only its own side.
    assert sent[("strata_replication_throttled_bytes_total", "follower")] == 0
    assert received[("strata_replication_throttled_bytes_total", "leader")] == 0
