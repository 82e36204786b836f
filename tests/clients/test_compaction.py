"""Log compaction against a real broker: a compacted topic keeps the latest value per key with
offsets preserved, tombstones vanish after delete.retention.ms, and kill -9 in the middle of
compaction leaves a valid, complete log. Waits poll for a condition, never sleep."""
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import create_topic

SEGMENT_BYTES = 1 << 20
KEYS = 1000
DEADLINE_S = 120
PAD = b"p" * 100


def produce(bootstrap, topic, items):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for n, (key, value) in enumerate(items):
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                # The client's queue is full (a slow broker on a busy machine): serve
                # delivery reports until there is room, as librdkafka's docs advise.
                p.poll(1)
        if n % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def updates(count):
    return ((f"k{i % KEYS}".encode(), f"v{i}".encode() + PAD) for i in range(count))


def filler(topic_bytes=SEGMENT_BYTES + 4096):
    """Records of one key that push everything before them out of the active segment."""
    return ((b"filler", PAD * 10) for _ in range(topic_bytes // 1000))


def read_all(bootstrap, topic):
    """Every record from offset 0 to the high watermark: [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-all",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False)
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while (not out or out[-1][0] < high - 1) and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    assert out and out[-1][0] == high - 1, "did not read up to the high watermark"
    return out, high


def latest_per_key(records):
    latest = {}
    for _, key, value in records:
        latest[key] = value
    return latest


def wait_until(what, condition):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
    pytest.fail(f"timed out waiting for {what}")


def assert_increasing(records):
    offsets = [o for o, _, _ in records]
    assert all(a < b for a, b in zip(offsets, offsets[1:])), "offsets must strictly increase"


@pytest.fixture
def fast(make_broker):
    return make_broker("--shards", "2", "--retention-check-ms", "100")


def compacted_topic(broker, name, **extra):
    config = {"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), **extra}
    create_topic(broker.bootstrap, name, 1, config)


def test_compaction_keeps_the_latest_value_per_key(fast):
    compacted_topic(fast, "cmp")
    produce(fast.bootstrap, "cmp", updates(100_000))
    produce(fast.bootstrap, "cmp", filler())
    expected = {f"k{k}".encode(): f"v{99_000 + k}".encode() + PAD for k in range(KEYS)}

    def compacted():
        records, high = read_all(fast.bootstrap, "cmp")
        keyed = [r for r in records if r[1] != b"filler"]
        return (records, high) if len(keyed) == KEYS else None

    records, high = wait_until("compaction to one record per key", compacted)
    assert_increasing(records)
    latest = latest_per_key(records)
    assert {k: v for k, v in latest.items() if k != b"filler"} == expected
    # Offsets are preserved: each kept record sits at the offset it was produced at.
    for offset, key, value in records:
        if key != b"filler":
            assert int(value[1:-len(PAD)]) == offset
    assert high == 100_000 + SEGMENT_BYTES // 1000 + 4
    # kcat (Debian librdkafka 2.0) reads the compacted log the same way.
    out = subprocess.run(["kcat", "-b", fast.bootstrap, "-C", "-t", "cmp", "-o", "beginning",
                          "-e", "-q", "-f", "%o %k\\n"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    seen = [line.split(" ") for line in out.splitlines()]
    # The filler segments go on being compacted between the two reads (their records all
    # share one key), so only the keyed records, already one per key, are stable to compare.
    assert [int(o) for o, k in seen if k != "filler"] == \
        [o for o, k, _ in records if k != b"filler"]
    assert all(int(a[0]) < int(b[0]) for a, b in zip(seen, seen[1:]))
    assert {k for _, k in seen} - {"filler"} == {k.decode() for k in expected}

    # Tombstones for a tenth of the keys vanish once delete.retention.ms has passed.
    admin = AdminClient({"bootstrap.servers": fast.bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "cmp", incremental_configs=[
        ConfigEntry("delete.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    produce(fast.bootstrap, "cmp", ((f"k{k}".encode(), None) for k in range(100)))
    produce(fast.bootstrap, "cmp", filler())

    def tombstones_gone():
        records, _ = read_all(fast.bootstrap, "cmp")
        keys = {k for _, k, _ in records}
        deleted = {f"k{k}".encode() for k in range(100)}
        return records if not keys & deleted else None

    records = wait_until("tombstones to vanish", tombstones_gone)
    assert_increasing(records)
    latest = latest_per_key(records)
    for k in range(100, KEYS):
        assert latest[f"k{k}".encode()] == expected[f"k{k}".encode()]


def test_kill_during_compaction_leaves_a_valid_complete_log(fast):
    compacted_topic(fast, "crash")
    produce(fast.bootstrap, "crash", updates(150_000))
    produce(fast.bootstrap, "crash", filler())
    part = fast.data_dir / "crash-0"
    # Kill -9 as soon as a compaction rewrite is in flight (or has just finished).
    wait_until("a compaction rewrite", lambda: list(part.glob("*.cleaned"))
               or any("compacted" in line for line in fast.lines))
    fast.kill9()
    fast.restart()
    assert not list(part.glob("*.cleaned")), "recovery removes unfinished rewrites"
    records, high = read_all(fast.bootstrap, "crash")
    assert high == 150_000 + SEGMENT_BYTES // 1000 + 4
    assert_increasing(records)
    expected = {f"k{k}".encode(): f"v{149_000 + k}".encode() + PAD for k in range(KEYS)}
    latest = latest_per_key(records)
    assert {k: v for k, v in latest.items() if k != b"filler"} == expected
    # After the restart compaction completes.
    wait_until("compaction after restart", lambda: len(
        [r for r in read_all(fast.bootstrap, "crash")[0] if r[1] != b"filler"]) == KEYS)
