"""Kafka semantics that real clients rely on (issue 18): Fetch limits (KIP-74) and
ListOffsets MAX_TIMESTAMP (KIP-734), through confluent-kafka."""
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from conftest import create_topic

DEADLINE_S = 60


def test_a_consumer_with_a_small_fetch_max_bytes_reads_large_batches(broker):
    """A response larger than the consumer's fetch.max.bytes (+512) is refused by librdkafka
    ("Invalid response size"), so the consumer reconnects and asks again forever. The broker
    must stop at max_bytes even when the partition limit is far larger."""
    create_topic(broker.bootstrap, "big", 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0,
                         "batch.size": 400_000, "message.max.bytes": 1_000_000})
    values = [bytes([65 + i]) * 300_000 for i in range(8)]
    for value in values:
        producer.produce("big", value, partition=0)
        producer.flush(30)
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "big-readers",
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": 1_000_000,
        "receive.message.max.bytes": 1_000_512,
        "max.partition.fetch.bytes": 10 << 20,
    })
    consumer.assign([TopicPartition("big", 0, 0)])
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < len(values) and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg.value())
    consumer.close()
    assert got == values


def test_list_offsets_max_timestamp_finds_the_record_with_the_largest_timestamp(broker):
    create_topic(broker.bootstrap, "stamps", 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    # Offsets 0..4 with timestamps that peak at offset 2 (twice: the first one counts).
    stamps = [1_700_000_001_000, 1_700_000_003_000, 1_700_000_009_000,
              1_700_000_009_000, 1_700_000_002_000]
    for i, ts in enumerate(stamps):
        producer.produce("stamps", f"v{i}".encode(), partition=0, timestamp=ts)
        producer.flush(30)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition("stamps", 0)
    result = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result()
    assert (result.offset, result.timestamp) == (2, 1_700_000_009_000)
    earliest = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result()
    latest = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result()
    assert (earliest.offset, latest.offset) == (0, 5)
    # An empty partition has no record with a largest timestamp.
    create_topic(broker.bootstrap, "empty", 1)
    tp = TopicPartition("empty", 0)
    result = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result()
    assert (result.offset, result.timestamp) == (-1, -1)


def _static_consumer(broker, instance, events, name):
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "statics",
        "group.instance.id": instance,
        "session.timeout.ms": 30_000,
        "heartbeat.interval.ms": 200,
        "auto.offset.reset": "earliest",
    })

    def on_assign(c, parts):
        events.append((name, "assign", sorted(p.partition for p in parts)))

    def on_revoke(c, parts):
        events.append((name, "revoke", sorted(p.partition for p in parts)))

    consumer.subscribe(["statics"], on_assign=on_assign, on_revoke=on_revoke)
    return consumer


def _poll_until(consumers, done, what):
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for c in consumers:
            c.poll(0.1)


def test_a_static_leader_that_restarts_gets_its_partitions_back_without_a_rebalance(broker):
    """KIP-345/KIP-814: the group leader (the first member) restarts with the same
    group.instance.id; it gets its old assignment and the other member is not revoked."""
    create_topic(broker.bootstrap, "statics", 4)
    events = []
    leader = _static_consumer(broker, "i-leader", events, "leader")
    _poll_until([leader], lambda: ("leader", "assign", [0, 1, 2, 3]) in events, "the leader")
    follower = _static_consumer(broker, "i-follower", events, "follower")
    _poll_until([leader, follower],
                lambda: any(e[:2] == ("follower", "assign") and e[2] for e in events),
                "the follower's assignment")
    _poll_until([leader, follower],
                lambda: [e for e in events if e[:2] == ("leader", "assign")][-1][2] != [0, 1, 2, 3],
                "the leader's new assignment")
    leader_parts = [e for e in events if e[:2] == ("leader", "assign")][-1][2]
    follower_parts = [e for e in events if e[:2] == ("follower", "assign")][-1][2]
    assert sorted(leader_parts + follower_parts) == [0, 1, 2, 3]
    # A static member does not leave the group when it closes (KIP-345): the restart is
    # the same member with a new member id.
    leader.close()
    before = len(events)
    restarted = _static_consumer(broker, "i-leader", events, "restarted")
    _poll_until([restarted, follower],
                lambda: any(e[:2] == ("restarted", "assign") for e in events[before:]),
                "the restarted leader's assignment")
    assert [e for e in events[before:] if e[0] == "restarted"] == \
        [("restarted", "assign", leader_parts)]
    # The follower keeps polling through a few heartbeats: no revoke, no new assignment.
    for _ in range(10):
        follower.poll(0.1)
        restarted.poll(0.1)
    assert [e for e in events[before:] if e[0] == "follower"] == []
    restarted.close()
    follower.close()
