"""Retention and DeleteRecords against a real broker: old segments go by age and by size, the
earliest offset advances and survives restarts, the newest data stays, and consumers below the
log start are reset per their policy. Waits poll for the condition, never sleep."""
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import create_topic

SEGMENT_BYTES = 1 << 20
VALUE = b"x" * 1000
DEADLINE_S = 60


def produce(bootstrap, topic, count):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=str(i).encode(), value=VALUE + str(i).encode())
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0


def watermarks(bootstrap, topic, partition=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)
    finally:
        c.close()


def wait_for_earliest_above(bootstrap, topic, floor):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        low, high = watermarks(bootstrap, topic)
        if low > floor:
            return low, high
    pytest.fail(f"earliest offset of {topic} never went above {floor}")


def first_message_from(bootstrap, topic, offset):
    """Consumes from `offset` with auto.offset.reset=earliest; returns the first message."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "first",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, offset)])
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                return m
        pytest.fail("no message consumed")
    finally:
        c.close()


def last_message(bootstrap, topic, high):
    return first_message_from(bootstrap, topic, high - 1)


@pytest.fixture
def fast(make_broker):
    return make_broker("--shards", "2", "--retention-check-ms", "100")


def test_time_retention_deletes_old_segments_and_keeps_the_newest(fast):
    create_topic(fast.bootstrap, "aged", 1,
                 {"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "2000"})
    produce(fast.bootstrap, "aged", 4000)
    wait_for_earliest_above(fast.bootstrap, "aged", 0)
    # Every closed segment ages past retention.ms, on one pass or (on a slow machine, where
    # producing took longer than 2 s) several: wait for the end state, only the active one.
    log_dir = fast.data_dir / "aged-0"
    deadline = time.monotonic() + DEADLINE_S
    while len(list(log_dir.glob("*.log"))) > 1:
        assert time.monotonic() < deadline, "closed segments were never all deleted"
        time.sleep(0.1)
    low, high = watermarks(fast.bootstrap, "aged")
    assert high == 4000
    assert 0 < low < high, "the active segment is never deleted"
    # A consumer positioned below the log start is reset to it (auto.offset.reset=earliest).
    assert first_message_from(fast.bootstrap, "aged", 0).offset() == low
    assert last_message(fast.bootstrap, "aged", high).value() == VALUE + b"3999"
    segments = sorted(p.name for p in (fast.data_dir / "aged-0").glob("*.log"))
    assert int(segments[0].split(".")[0]) == low
    # The log start offset survives a restart.
    fast.stop()
    fast.restart()
    assert watermarks(fast.bootstrap, "aged") == (low, high)


def test_size_retention_keeps_at_least_retention_bytes(fast):
    retention_bytes = 2 * SEGMENT_BYTES
    create_topic(fast.bootstrap, "sized", 1,
                 {"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(retention_bytes)})
    produce(fast.bootstrap, "sized", 6000)
    low, high = wait_for_earliest_above(fast.bootstrap, "sized", 0)
    assert high == 6000
    # Kept: at least retention.bytes of log (each record is > 1000 bytes on disk).
    assert (high - low) * len(VALUE) >= retention_bytes * 0.9
    # The segments below the log start may still be being unlinked (the log start is
    # persisted first): count those from it on.
    segments = (fast.data_dir / "sized-0").glob("*.log")
    kept = sum(p.stat().st_size for p in segments if int(p.name.split(".")[0]) >= low)
    assert kept >= retention_bytes
    assert last_message(fast.bootstrap, "sized", high).value() == VALUE + b"5999"


def test_delete_records_moves_the_log_start_and_survives_restart(broker):
    create_topic(broker.bootstrap, "trim", 1)
    produce(broker.bootstrap, "trim", 500)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition("trim", 0, 123)])
    result = list(futures.values())[0].result(timeout=30)
    assert result.low_watermark == 123
    assert watermarks(broker.bootstrap, "trim") == (123, 500)
    assert first_message_from(broker.bootstrap, "trim", 0).offset() == 123
    broker.kill9()
    broker.restart()
    assert watermarks(broker.bootstrap, "trim") == (123, 500)
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    futures = admin.delete_records([TopicPartition("trim", 0, 501)])
    with pytest.raises(KafkaException):
        list(futures.values())[0].result(timeout=30)
