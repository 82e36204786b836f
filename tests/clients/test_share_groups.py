"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka's share consumer)
against a real broker: four consumers share one partition and every record is accepted once;
released records come back with a higher delivery count and rejected ones never; records
whose lock expires go to another consumer; close() commits pending acknowledgements and
releases the rest at once; after kill -9 of the broker no accepted record is delivered again and none is lost; `strata share-group describe` shows the start offset and
lag; group configs set with IncrementalAlterConfigs on a GROUP resource (the group's own
`share.auto.offset.reset`) take effect, are described, checked and kept over a restart; a
group with `share.isolation.level` read_committed gets committed transactions only. Every
wait is on an observable condition with a deadline."""
import json
import subprocess
import time

import pytest
from confluent_kafka import AcknowledgeType, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

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


def describe(bootstrap, group, command="share-group"):
    out = subprocess.run(
        [strata_bin(), command, "describe", group, "--bootstrap-server", bootstrap,
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
    # `strata group describe` shows a share group as `strata share-group describe` does.
    assert describe(broker.bootstrap, "g4", command="group") == d
    out = subprocess.run(
        [strata_bin(), "group", "list", "--bootstrap-server", broker.bootstrap, "--output", "json"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = {g["group"]: g["type"] for g in json.loads(out.stdout)}
    assert listed.get("g4") == "share", listed


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


def test_close_releases_an_implicit_polls_records_and_commits_explicit_acks(make_broker):
    # librdkafka 2.16's close() sends no acknowledgement for the last poll in implicit mode:
    # closing the share session releases those records at once (ten-minute locks here).
    broker = make_broker(*SHARE_ARGS, "--group-share-record-lock-duration-ms", "600000")
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 10)
    c = consumer(broker.bootstrap, "g", "q")
    got = {}
    poll_until([c], lambda: len(got) == 10,
               lambda _i, _c, m: got.setdefault(m.offset(), m.delivery_count()), "the records")
    assert got == {o: 1 for o in range(10)}, got
    c.close()
    again = {}
    c2 = consumer(broker.bootstrap, "g", "q", explicit=True)

    def take(_i, c, m):
        again[m.offset()] = m.delivery_count()
        c.acknowledge(m, AcknowledgeType.ACCEPT)

    poll_until([c2], lambda: len(again) == 10, take, "the released records")
    assert again == {o: 2 for o in range(10)}, again
    # close() with pending explicit acknowledgements commits them, though librdkafka sends
    # its leave heartbeat alongside: the leave must not release the records first.
    c2.close()
    d = describe(broker.bootstrap, "g")
    part = [p for p in d["partitions"] if p["topic"] == "q"]
    assert part and part[0]["start_offset"] == 10 and part[0]["lag"] == 0, d


def test_close_commits_pending_acknowledgements_every_time(make_broker):
    broker = make_broker(*SHARE_ARGS)
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 10)
    # A leave that released the member's records raced the final ShareAcknowledge in about
    # one close of five: twenty groups make a regression all but certain to show.
    for i in range(20):
        c = consumer(broker.bootstrap, f"g{i}", "q", explicit=True)
        got = set()

        def take(_i, c, m):
            got.add(m.offset())
            c.acknowledge(m, AcknowledgeType.ACCEPT)

        poll_until([c], lambda: len(got) == 10, take, "the records")
        c.close()
        d = describe(broker.bootstrap, f"g{i}")
        assert [p["start_offset"] for p in d["partitions"]] == [10], (i, d)


def alter_group(bootstrap, group, **configs):
    """IncrementalAlterConfigs SET on GROUP `group` (names with dots as `a__b`)."""
    entries = [ConfigEntry(k.replace("__", "."), v, incremental_operation=AlterConfigOpType.SET)
               for k, v in configs.items()]
    resource = ConfigResource(ConfigResource.Type.GROUP, group, incremental_configs=entries)
    client = AdminClient({"bootstrap.servers": bootstrap})
    client.incremental_alter_configs([resource])[resource].result(30)


def describe_group_configs(bootstrap, group):
    resource = ConfigResource(ConfigResource.Type.GROUP, group)
    client = AdminClient({"bootstrap.servers": bootstrap})
    return client.describe_configs([resource])[resource].result(30)


def test_group_configs_override_the_broker_and_survive_a_restart(make_broker):
    # The broker's default stays `latest`: only the group's own config makes it start early.
    broker = make_broker("--shards", "2")
    create_topic(broker.bootstrap, "q", 1)
    produce(broker.bootstrap, "q", 20)
    alter_group(broker.bootstrap, "early", share__auto__offset__reset="earliest",
                share__record__lock__duration__ms="20000")
    described = describe_group_configs(broker.bootstrap, "early")
    assert described["share.auto.offset.reset"].value == "earliest"
    assert described["share.record.lock.duration.ms"].value == "20000"
    assert described["share.session.timeout.ms"].value == "45000", "the broker's default"
    # Out of range, or unknown: INVALID_CONFIG, and nothing changes.
    for bad in ({"share__record__lock__duration__ms": "999"},
                {"share__heartbeat__interval__ms": "50000"},
                {"share__auto__offset__reset": "sideways"},
                {"share__no__such__config": "1"}):
        with pytest.raises(KafkaException) as e:
            alter_group(broker.bootstrap, "early", **bad)
        assert e.value.args[0].name() == "INVALID_CONFIG", (bad, e.value)
    assert describe_group_configs(broker.bootstrap, "early")[
        "share.record.lock.duration.ms"].value == "20000"
    c = consumer(broker.bootstrap, "early", "q")
    seen = {}
    poll_until([c], lambda: len(seen) == 20,
               lambda _i, _c, m: seen.setdefault(m.offset(), m.delivery_count()),
               "the records from the earliest offset")
    assert sorted(seen) == list(range(20))
    c.commit_sync(30)
    c.close()
    broker.stop()
    broker.restart()
    described = describe_group_configs(broker.bootstrap, "early")
    assert described["share.auto.offset.reset"].value == "earliest"
    assert described["share.record.lock.duration.ms"].value == "20000"
    # The CLI sets and shows them too (`kafka-configs.sh --entity-type groups`).
    cli = [strata_bin(), "cluster", "--bootstrap-server", broker.bootstrap, "config"]
    done = subprocess.run([*cli, "set", "share.session.timeout.ms", "50000", "--group", "early"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "get", "--group", "early", "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = {c["name"]: (c["value"], c["source"]) for c in json.loads(done.stdout)}
    assert shown["share.session.timeout.ms"] == ("50000", "group"), shown
    assert shown["share.auto.offset.reset"] == ("earliest", "group"), shown
    assert shown["share.heartbeat.interval.ms"] == ("5000", "default"), shown


def test_a_read_committed_share_group_gets_committed_records_only(make_broker):
    broker = make_broker(*SHARE_ARGS)
    create_topic(broker.bootstrap, "tq", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "share-tx"})
    p.init_transactions(30)
    for prefix, commit in (("c", True), ("a", False), ("d", True)):
        p.begin_transaction()
        for i in range(5):
            p.produce("tq", value=f"{prefix}{i}".encode(), partition=0)
        # Written before the transaction ends: an abort purges what was not sent yet.
        assert p.flush(30) == 0
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    # The CLI sets the group config (`kafka-configs.sh --entity-type groups`).
    cli = [strata_bin(), "cluster", "--bootstrap-server", broker.bootstrap, "config"]
    done = subprocess.run(
        [*cli, "set", "share.isolation.level", "read_committed", "--group", "rc"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    committed = sorted(f"{prefix}{i}" for prefix in "cd" for i in range(5))

    def read(group, count):
        c = consumer(broker.bootstrap, group, "tq")
        seen = []
        poll_until([c], lambda: len(seen) >= count,
                   lambda _i, _c, m: seen.append(m.value().decode()), f"{count} records")
        c.commit_sync(30)
        c.close()
        return sorted(seen)

    # Offsets: c0-c4 0-4, marker 5, a0-a4 6-10 (aborted), marker 11, d0-d4 12-16, marker 17.
    assert read("rc", 10) == committed
    part = [x for x in describe(broker.bootstrap, "rc")["partitions"] if x["topic"] == "tq"]
    assert part and part[0]["start_offset"] == 18, part
    # The default, read_uncommitted, gets the aborted records too.
    assert read("ru", 15) == sorted(committed + [f"a{i}" for i in range(5)])
