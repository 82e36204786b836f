"""Replication across three brokers with real clients: acks=all survives the loss of a
leader, the restarted broker catches up byte for byte, min.insync.replicas refuses writes
that could not be replicated. (A paused, partitioned leader is in tests/replication.rs,
which can send a produce straight to it.)
"""
import struct
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Failover within seconds: brokers are fenced 2 s after their last heartbeat, followers
# leave the ISR 3 s after they stop catching up.
FAST = ("--shards", "1", "--broker-session-timeout-ms", "2000",
        "--replica-lag-time-max-ms", "3000", "--group-initial-rebalance-delay-ms", "0")
DEADLINE_S = 60


def poll(what, check, deadline_s=DEADLINE_S):
    """check() until it returns a truthy value, or fail after deadline_s (not a sleep as
    synchronisation: a pause between polls of a condition)."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def bootstrap(nodes):
    return ",".join(n.bootstrap for n in nodes if n.proc is not None)


def create(nodes, topic, partitions, replication, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    new = NewTopic(topic, partitions, replication, config=config or {})
    admin.create_topics([new])[topic].result(timeout=30)


def layout(nodes, topic):
    """{partition: (leader, replicas, isr)} as the live brokers report it, or None."""
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    try:
        md = admin.list_topics(topic, timeout=10)
    except KafkaException:
        return None
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p: (m.leader, sorted(m.replicas), sorted(m.isrs)) for p, m in t.partitions.items()}


def wait_in_sync(nodes, topic, partitions, replicas=3):
    def check():
        now = layout(nodes, topic)
        ok = now and len(now) == partitions and all(
            leader >= 0 and len(isr) == replicas for leader, _, isr in now.values())
        return now if ok else None
    return poll(f"every partition of {topic} to have {replicas} in-sync replicas", check)


def log_bytes(data_dir, topic, partition):
    """The record batches of a partition's log on disk, concatenated in offset order
    (segment files are preallocated: a batch length of 0 ends the data)."""
    out = bytearray()
    pdir = Path(data_dir) / f"{topic}-{partition}"
    for seg in sorted(pdir.glob("*.log")):
        data = seg.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            length = struct.unpack_from(">i", data, pos + 8)[0]
            if length <= 0 or pos + 12 + length > len(data):
                break
            out += data[pos:pos + 12 + length]
            pos += 12 + length
    return bytes(out)


def read_all(nodes, topic, partition):
    """Every record of one partition, from offset 0 to the high watermark: [(offset, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": "check",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        out = []
        while True:
            msg = c.poll(10)
            assert msg is not None, f"no answer reading {topic}/{partition}"
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                return out
            out.append((msg.offset(), msg.value()))
    finally:
        c.close()


def produce_one(nodes, topic, partition, value, **conf):
    """One acks=all produce: the delivery error (None when acknowledged)."""
    p = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all", "retries": 0,
                  "enable.idempotence": False, "message.timeout.ms": 10000, **conf})
    result = []
    p.produce(topic, value=value, partition=partition,
              on_delivery=lambda err, msg: result.append(err))
    p.flush(30)
    assert result, "no delivery report"
    return result[0]


def test_acks_all_survives_leader_kill_and_logs_match(make_cluster):
    nodes = make_cluster(3, *FAST)
    create(nodes, "numbers", 6, 3)
    before = wait_in_sync(nodes, "numbers", 6)
    assert {leader for leader, _, _ in before.values()} == {1, 2, 3}

    victim = before[0][0]
    total = 200_000
    acked = {p: [] for p in range(6)}
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.partition()].append((msg.offset(), msg.value()))

    p = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120000})
    killed = False
    for i in range(total):
        while True:
            try:
                p.produce("numbers", value=b"%d" % i, partition=i % 6, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
        if not killed and sum(map(len, acked.values())) >= total // 4:
            nodes[victim - 1].kill9()
            killed = True
    assert p.flush(180) == 0, "messages still in flight"
    assert killed
    assert not errors, errors[:5]
    assert sum(map(len, acked.values())) == total

    # New leaders come from the old ISR; the restarted broker catches up and rejoins.
    nodes[victim - 1].restart()
    wait_in_sync(nodes, "numbers", 6)

    for partition in range(6):
        records = read_all(nodes, "numbers", partition)
        offsets = [o for o, _ in records]
        assert offsets == list(range(len(records))), f"partition {partition} has gaps"
        values = [int(v) for _, v in records]
        assert values == sorted(set(values)), f"partition {partition}: duplicates or disorder"
        assert set(acked[partition]) <= set(records), f"partition {partition} lost acks"
        assert values == list(range(partition, total, 6))

    # Every replica of every partition holds the same bytes.
    def same_logs():
        for partition in range(6):
            copies = {log_bytes(n.data_dir, "numbers", partition) for n in nodes}
            if len(copies) != 1:
                return False
        return True
    poll("the three replicas' logs to be identical", same_logs)


def test_min_insync_replicas_refuses_then_recovers(make_cluster):
    nodes = make_cluster(3, *FAST)
    create(nodes, "guarded", 1, 3, {"min.insync.replicas": "2"})
    start = wait_in_sync(nodes, "guarded", 1)
    assert produce_one(nodes, "guarded", 0, b"first") is None

    leader = start[0][0]
    others = [n for n in nodes if int(n.extra[1]) != leader]
    # One broker down: two in sync, still enough.
    others[0].kill9()
    poll("the ISR to shrink to two",
         lambda: (layout(nodes, "guarded") or {}).get(0, (0, 0, [0, 0, 0]))[2] != sorted(
             [1, 2, 3]))
    assert produce_one(nodes, "guarded", 0, b"second") is None

    # Two down: the controller quorum is gone too, so the ISR cannot shrink in the metadata;
    # the leader still sees the follower lag (and says so) and from then on refuses
    # acks=all writes with NOT_ENOUGH_REPLICAS, writing nothing.
    others[1].kill9()
    leader_node = nodes[leader - 1]
    wanted = f'topic: "guarded", partition: 0, leader: {leader}'
    poll("the leader to find its last follower lagging", lambda: any(
        "proposing an ISR change" in line and wanted in line and f"isr: [{leader}] }}" in line
        for line in list(leader_node.lines)))
    err = produce_one(nodes, "guarded", 0, b"refused")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    assert [v for _, v in read_all(nodes, "guarded", 0)] == [b"first", b"second"]

    # Back up: acks=all works again.
    others[0].restart()
    others[1].restart()
    wait_in_sync(nodes, "guarded", 1)
    assert produce_one(nodes, "guarded", 0, b"third") is None
    assert [v for _, v in read_all(nodes, "guarded", 0)] == [b"first", b"second", b"third"]
