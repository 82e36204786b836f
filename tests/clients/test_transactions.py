"""Transactions with confluent-kafka (librdkafka) against a real broker: commit and abort
across partitions, read_committed vs read_uncommitted consumers, offsets committed in a
transaction, zombie fencing, and a broker killed in the middle of a transaction."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import create_topic

PARTITIONS = 3
PER_PARTITION = 4


def txn_producer(bootstrap, txn_id, **extra):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 1,
                  **extra})
    p.init_transactions(30)
    return p


def produce_all(p, topic, prefix):
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, value=f"{prefix}-{part}-{i}".encode(), partition=part)
    assert p.flush(30) == 0


def consume(bootstrap, topic, isolation, until):
    """Reads `topic` from the start until `until(values)` holds (60 s safety limit)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{isolation}",
                  "enable.auto.commit": False, "isolation.level": isolation})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    values = []
    deadline = time.monotonic() + 60
    while not until(values) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
            continue
        assert m.error() is None, m.error()
        values.append(m.value().decode())
    c.close()
    return values


def expected(*prefixes):
    return {f"{x}-{p}-{i}" for x in prefixes for p in range(PARTITIONS) for i in range(PER_PARTITION)}


def committed_offset(bootstrap, group, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    [tp] = c.committed([TopicPartition(topic, 0)], timeout=30)
    c.close()
    return tp.offset


def test_commit_and_abort_across_partitions(broker):
    create_topic(broker.bootstrap, "txn", PARTITIONS)
    create_topic(broker.bootstrap, "src", 1)
    source = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "txn-group",
                       "enable.auto.commit": False})
    source.assign([TopicPartition("src", 0, 0)])
    group_meta = source.consumer_group_metadata()

    p = txn_producer(broker.bootstrap, "txn-1")
    p.begin_transaction()
    produce_all(p, "txn", "commit1")
    p.send_offsets_to_transaction([TopicPartition("src", 0, 5)], group_meta, 30)
    p.commit_transaction(30)

    p.begin_transaction()
    produce_all(p, "txn", "abort")
    p.send_offsets_to_transaction([TopicPartition("src", 0, 10)], group_meta, 30)
    p.abort_transaction(30)

    p.begin_transaction()
    produce_all(p, "txn", "commit2")
    p.commit_transaction(30)
    source.close()

    committed = expected("commit1", "commit2")
    everything = committed | expected("abort")
    rc = consume(broker.bootstrap, "txn", "read_committed", lambda v: committed <= set(v))
    assert set(rc) == committed, "read_committed sees exactly the committed messages"
    assert len(rc) == len(committed)
    ru = consume(broker.bootstrap, "txn", "read_uncommitted", lambda v: everything <= set(v))
    assert set(ru) == everything, "read_uncommitted sees aborted messages too"
    assert committed_offset(broker.bootstrap, "txn-group", "src") == 5, \
        "offsets sent in the aborted transaction must not apply"


def test_a_zombie_producer_is_fenced(broker):
    create_topic(broker.bootstrap, "zombie", PARTITIONS)
    old = txn_producer(broker.bootstrap, "same-id")
    old.begin_transaction()
    produce_all(old, "zombie", "old")

    new = txn_producer(broker.bootstrap, "same-id")  # fences `old`, aborting its transaction
    with pytest.raises(KafkaException) as fenced:
        old.commit_transaction(30)
    error = fenced.value.args[0]
    assert error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                            KafkaError.INVALID_PRODUCER_EPOCH), error
    assert error.fatal(), error

    new.begin_transaction()
    produce_all(new, "zombie", "new")
    new.commit_transaction(30)
    want = expected("new")
    got = consume(broker.bootstrap, "zombie", "read_committed", lambda v: want <= set(v))
    assert set(got) == want, "the zombie's writes were aborted, the new producer's committed"


def test_a_transaction_open_at_a_crash_is_aborted_after_its_timeout(make_broker):
    broker = make_broker("--shards", "2")
    create_topic(broker.bootstrap, "crash", PARTITIONS)
    timeouts = {"transaction.timeout.ms": 3000, "message.timeout.ms": 3000}
    p = txn_producer(broker.bootstrap, "crashing", **timeouts)
    p.begin_transaction()
    produce_all(p, "crash", "before")
    p.commit_transaction(30)
    p.begin_transaction()
    produce_all(p, "crash", "open")  # acknowledged, never committed
    broker.kill9()
    broker.restart()

    # Another producer commits after the open transaction: read_committed readers see it only
    # once the open transaction is aborted (its timeout passed), so this also proves they are
    # not blocked forever.
    q = txn_producer(broker.bootstrap, "survivor")
    q.begin_transaction()
    produce_all(q, "crash", "after")
    q.commit_transaction(30)
    want = expected("before", "after")
    got = consume(broker.bootstrap, "crash", "read_committed", lambda v: want <= set(v))
    assert set(got) == want
    assert any("aborting a timed-out transaction" in line for line in broker.lines)


def test_a_restarted_producer_aborts_what_its_crashed_broker_left_open(make_broker):
    broker = make_broker("--shards", "2")
    create_topic(broker.bootstrap, "fence", PARTITIONS)
    p = txn_producer(broker.bootstrap, "phoenix")  # default timeout: a minute, never reached
    p.begin_transaction()
    produce_all(p, "fence", "lost")
    broker.kill9()
    broker.restart()

    # The same transactional id comes back: InitProducerId aborts the open transaction at
    # once (the coordinator's state was replayed), then the new transaction commits.
    again = txn_producer(broker.bootstrap, "phoenix")
    again.begin_transaction()
    produce_all(again, "fence", "kept")
    again.commit_transaction(30)
    want = expected("kept")
    got = consume(broker.bootstrap, "fence", "read_committed", lambda v: want <= set(v))
    assert set(got) == want
    everything = want | expected("lost")
    ru = consume(broker.bootstrap, "fence", "read_uncommitted", lambda v: everything <= set(v))
    assert set(ru) == everything, "the aborted records are still in the log"


def test_consume_transform_produce_commits_the_group_offsets_with_the_output(broker):
    create_topic(broker.bootstrap, "eos-in", 1)
    create_topic(broker.bootstrap, "eos-out", PARTITIONS)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(10):
        plain.produce("eos-in", value=str(i).encode(), partition=0)
    assert plain.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "eos",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe(["eos-in"])
    p = txn_producer(broker.bootstrap, "eos-1")
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 10 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        seen.append(int(m.value()))
    assert seen == list(range(10))
    p.begin_transaction()
    for i in seen:
        p.produce("eos-out", value=f"out-{i}".encode(), partition=i % PARTITIONS)
    # The group is a real one here (generation and member id are checked, KIP-447).
    positions = consumer.position(consumer.assignment())
    p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    consumer.close()
    assert committed_offset(broker.bootstrap, "eos", "eos-in") == 10
    want = {f"out-{i}" for i in range(10)}
    got = consume(broker.bootstrap, "eos-out", "read_committed", lambda v: want <= set(v))
    assert set(got) == want


def wait_for_line(broker, needle):
    """Waits (60 s safety limit) until the broker logged `needle`."""
    deadline = time.monotonic() + 60
    while not any(needle in line for line in broker.lines):
        assert time.monotonic() < deadline, f"never logged {needle!r}"
        time.sleep(0.05)


def test_a_transaction_past_its_timeout_is_aborted_under_a_live_producer(broker):
    create_topic(broker.bootstrap, "slow", PARTITIONS)
    timeouts = {"transaction.timeout.ms": 2000, "message.timeout.ms": 2000}
    p = txn_producer(broker.bootstrap, "slowpoke", **timeouts)
    p.begin_transaction()
    produce_all(p, "slow", "expired")
    wait_for_line(broker, "aborting a timed-out transaction")

    # The coordinator aborted it, bumping the epoch: the producer cannot commit it.
    # (librdkafka treats the bumped epoch as a fence; a Java client would re-initialise with
    # its old epoch, which the coordinator accepts: tests/transactions.rs checks that.)
    with pytest.raises(KafkaException):
        p.commit_transaction(30)
    again = txn_producer(broker.bootstrap, "slowpoke", **timeouts)
    again.begin_transaction()
    produce_all(again, "slow", "next")
    again.commit_transaction(30)
    want = expected("next")
    got = consume(broker.bootstrap, "slow", "read_committed", lambda v: want <= set(v))
    assert set(got) == want


def java_hash_partition(key, partitions):
    """Kafka's coordinator partition of `key`: abs(String.hashCode) % partitions."""
    h = 0
    for unit in key.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def leaders(bootstrap, topic):
    """partition → leader broker id of `topic`, once it exists and every partition has one."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 60
    while True:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t is not None and t.error is None and t.partitions and \
                all(p.leader > 0 for p in t.partitions.values()):
            return {n: p.leader for n, p in t.partitions.items()}
        assert time.monotonic() < deadline, f"{topic} has no leaders"
        time.sleep(0.05)  # a pause between polls of a condition with a deadline


def coordinator(bootstrap, internal_topic, key):
    found = leaders(bootstrap, internal_topic)
    return found[java_hash_partition(key, len(found))]


def test_transactions_span_brokers(cluster):
    """Partitions led by all three brokers in one transaction, the group's offsets on a
    broker other than the transaction coordinator: markers travel between brokers."""
    boot = ",".join(b.bootstrap for b in cluster)
    create_topic(boot, "xb", PARTITIONS)
    create_topic(boot, "xb-src", 1)
    assert set(leaders(boot, "xb").values()) == {1, 2, 3}, "every broker leads a partition"
    group = "xb-group"
    group_node = coordinator(boot, "__consumer_offsets", group)
    txn_id = next(t for t in (f"xb-txn-{i}" for i in range(100))
                  if coordinator(boot, "__transaction_state", t) != group_node)

    source = Consumer({"bootstrap.servers": boot, "group.id": group,
                       "enable.auto.commit": False})
    source.assign([TopicPartition("xb-src", 0, 0)])
    group_meta = source.consumer_group_metadata()
    p = txn_producer(boot, txn_id)
    p.begin_transaction()
    produce_all(p, "xb", "commit1")
    p.send_offsets_to_transaction([TopicPartition("xb-src", 0, 5)], group_meta, 30)
    p.commit_transaction(30)

    p.begin_transaction()
    produce_all(p, "xb", "abort")
    p.send_offsets_to_transaction([TopicPartition("xb-src", 0, 10)], group_meta, 30)
    p.abort_transaction(30)

    p.begin_transaction()
    produce_all(p, "xb", "commit2")
    p.commit_transaction(30)
    source.close()

    committed = expected("commit1", "commit2")
    everything = committed | expected("abort")
    rc = consume(boot, "xb", "read_committed", lambda v: committed <= set(v))
    assert set(rc) == committed, "read_committed sees exactly the committed messages"
    assert len(rc) == len(committed)
    ru = consume(boot, "xb", "read_uncommitted", lambda v: everything <= set(v))
    assert set(ru) == everything, "read_uncommitted sees aborted messages too"
    assert committed_offset(boot, group, "xb-src") == 5, \
        "the committed transaction's offsets apply, the aborted one's do not"


def test_a_commit_completes_once_a_stopped_leader_is_back(cluster):
    """The coordinator keeps retrying a marker to a broker that is down: once the broker is
    back, its partition's committed messages become visible to read_committed readers."""
    boot = ",".join(b.bootstrap for b in cluster)
    create_topic(boot, "xr", PARTITIONS)
    placed = leaders(boot, "xr")
    txn_id = "xr-txn"
    txn_node = coordinator(boot, "__transaction_state", txn_id)
    down_part, down_node = next((p, n) for p, n in sorted(placed.items()) if n != txn_node)
    p = txn_producer(boot, txn_id)
    p.begin_transaction()
    produce_all(p, "xr", "late")
    down = cluster[down_node - 1]
    down.stop()
    p.commit_transaction(30)  # the decision is durable; one marker is still to be written

    up = [b.bootstrap for b in cluster if b is not down]
    others = {f"late-{q}-{i}" for q in placed if q != down_part for i in range(PER_PARTITION)}
    c = Consumer({"bootstrap.servers": ",".join(up), "group.id": "xr-reader",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition("xr", q, 0) for q in placed if q != down_part])
    got = set()
    deadline = time.monotonic() + 60
    while not others <= got and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.add(m.value().decode())
    c.close()
    assert got == others, "the partitions of live brokers are committed meanwhile"

    down.restart()
    committed = expected("late")
    rc = consume(boot, "xr", "read_committed", lambda v: committed <= set(v))
    assert set(rc) == committed, "the restarted broker's partition got its marker"
