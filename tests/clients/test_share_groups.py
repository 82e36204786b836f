"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka's share consumer)
against a real broker: four consumers share one partition and every record is accepted once;
released records come back with a higher delivery count and rejected ones never; records
whose lock expires go to another consumer; after kill -9 of the broker no accepted record is
delivered again and none is lost; `strata share-group describe` shows the start offset and
lag. Every wait is on an observable condition with a deadline."""
import json
import subprocess
import time

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer

from conftest import create_topic, strata_bin

DEADLINE_S = 90
SHARE_ARGS = ("--shards", "2", "--share-auto-offset-reset", "earliest")


def produce(bootstrap, topic, count):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        p.produce(topic, value=str(i).encode(), partition=0)
        if i % 1000 == 999:
            p.poll(0)
    assert p.flush(30) == 0


def consumer(bootstrap, group, topic, explicit=False):
    c = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit" if explicit else "implicit",
    })
    c.subscribe([topic])
    return c


def poll_until(consumers, done, on_message, what):
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for i, c in enumerate(consumers):
            for m in c.poll(0.2):
                assert m.error() is None, m.error()
                on_message(i, c, m)


def describe(bootstrap, group):
    out = subprocess.run(
        [strata_bin(), "share-group", "describe", group, "--bootstrap-server", bootstrap,
         "--output", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_four_share_consumers_accept_every_record_once(make_broker):
    broker = make_broker(*SHARE_ARGS)
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 10_000)
    consumers = [consumer(broker.bootstrap, "g4", "q") for _ in range(4)]
    seen = {}
    per_consumer = [0] * 4

    def take(i, _c, m):
        assert m.delivery_count() == 1, (m.offset(), m.delivery_count())
        assert m.value() == str(m.offset()).encode()
        seen[m.offset()] = seen.get(m.offset(), 0) + 1
        per_consumer[i] += 1

    poll_until(consumers, lambda: len(seen) == 10_000, take, "10,000 records")
    for c in consumers:
        # Implicit mode: commit_sync accepts the last poll's records.
        results = c.commit_sync(30)
        assert all(e is None for e in results.values()), results
        c.close()
    assert sorted(seen) == list(range(10_000))
    assert all(n == 1 for n in seen.values()), "a record was delivered twice"
    d = describe(broker.bootstrap, "g4")
    part = [p for p in d["partitions"] if p["topic"] == "q"]
    assert part, d
    part = part[0]
    assert part["start_offset"] == 10_000 and part["lag"] == 0, d


def test_released_records_come_back_and_rejected_ones_never(make_broker):
    broker = make_broker(*SHARE_ARGS, "--group-share-delivery-count-limit", "3")
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 10)
    c = consumer(broker.bootstrap, "g", "q", explicit=True)
    first = {}
    poll_until([c], lambda: len(first) == 10,
               lambda _i, _c, m: first.setdefault(m.offset(), m), "the first delivery")
    for offset, m in first.items():
        c.acknowledge(m, AcknowledgeType.REJECT if offset < 5 else AcknowledgeType.RELEASE)
    results = c.commit_sync(30)
    assert all(e is None for e in results.values()), results
    again = {}

    def take(_i, c2, m):
        again[m.offset()] = m.delivery_count()
        c2.acknowledge(m, AcknowledgeType.ACCEPT)

    poll_until([c], lambda: len(again) == 5, take, "the released records")
    c.commit_sync(30)
    assert again == {o: 2 for o in range(5, 10)}, again
    # Nothing more: the rejected records are archived.
    assert not c.poll(1.0)
    c.close()
    d = describe(broker.bootstrap, "g")
    assert [p["start_offset"] for p in d["partitions"]] == [10], d


def test_records_whose_lock_expires_go_to_another_consumer(make_broker):
    broker = make_broker(*SHARE_ARGS, "--group-share-record-lock-duration-ms", "1000")
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 5)
    a = consumer(broker.bootstrap, "g", "q", explicit=True)
    held = {}
    poll_until([a], lambda: len(held) == 5,
               lambda _i, _c, m: held.setdefault(m.offset(), m.delivery_count()), "a's records")
    assert set(held.values()) == {1}
    # a never acknowledges; b gets the records once a's locks expire.
    b = consumer(broker.bootstrap, "g", "q", explicit=True)
    redelivered = {}

    def take(_i, c, m):
        redelivered[m.offset()] = m.delivery_count()
        c.acknowledge(m, AcknowledgeType.ACCEPT)

    poll_until([b], lambda: len(redelivered) == 5, take, "the expired records")
    b.commit_sync(30)
    assert all(n >= 2 for n in redelivered.values()), redelivered
    b.close()
    a.close()


def test_after_kill9_no_accepted_record_comes_back_and_none_is_lost(make_broker):
    broker = make_broker(*SHARE_ARGS)
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 2_000)
    c = consumer(broker.bootstrap, "g", "q", explicit=True)
    accepted = set()

    def take(_i, c2, m):
        if len(accepted) < 1_000:
            c2.acknowledge(m, AcknowledgeType.ACCEPT)
            accepted.add(m.offset())
        else:
            c2.acknowledge(m, AcknowledgeType.RELEASE)

    poll_until([c], lambda: len(accepted) >= 1_000, take, "1,000 accepted")
    results = c.commit_sync(30)
    assert all(e is None for e in results.values()), results
    broker.kill9()
    broker.restart()
    after = {}

    def rest(_i, c3, m):
        assert m.offset() not in accepted, f"accepted record {m.offset()} delivered again"
        after[m.offset()] = m.delivery_count()
        c3.acknowledge(m, AcknowledgeType.ACCEPT)

    c3 = consumer(broker.bootstrap, "g", "q", explicit=True)
    poll_until([c3], lambda: len(accepted) + len(after) >= 2_000, rest, "the rest")
    c3.commit_sync(30)
    c3.close()
    assert accepted | set(after) == set(range(2_000)), "a record was lost"
    c.close()
