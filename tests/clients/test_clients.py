"""confluent-kafka (librdkafka 2.16) and kafka-python round trips, with every compression codec."""
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import create_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N = 2000


def consume_assigned(bootstrap, topic, partitions, want, start=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, start) for p in partitions])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append((m.partition(), m.offset(), m.key(), m.value(), m.headers()))
    c.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_round_trip(broker, codec):
    topic = f"ck-{codec}"
    create_topic(broker.bootstrap, topic, 4)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                  "linger.ms": 5, "acks": "all"})
    acked = []
    for i in range(N):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode() * 10, headers=[("i", str(i))],
                  on_delivery=lambda err, msg: acked.append((err, msg.partition(), msg.offset())))
    assert p.flush(60) == 0
    assert all(err is None for err, _, _ in acked) and len(acked) == N
    got = consume_assigned(broker.bootstrap, topic, range(4), N)
    assert len(got) == N
    for partition, offset, key, value, headers in got:
        i = int(key[1:])
        assert value == f"v{i}".encode() * 10
        assert headers == [("i", str(i).encode())]
    assert sorted((pt, off) for _, pt, off in acked) == sorted((g[0], g[1]) for g in got)


def test_confluent_assign_and_seek(broker):
    create_topic(broker.bootstrap, "seek", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        p.produce("seek", value=str(i).encode(), partition=0)
    assert p.flush(30) == 0
    got = consume_assigned(broker.bootstrap, "seek", [0], 58, start=42)
    assert [(g[1], g[3]) for g in got] == [(o, str(o).encode()) for o in range(42, 100)]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    low, high = c.get_watermark_offsets(TopicPartition("seek", 0), timeout=10)
    assert (low, high) == (0, 100)
    c.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd", None])
def test_kafka_python_round_trip(broker, codec):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP
    topic = f"kp-{codec}"
    create_topic(broker.bootstrap, topic, 3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, acks=1,
                             linger_ms=5)
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"value-{i}".encode(),
                             headers=[("h", b"1")]) for i in range(500)]
    producer.flush(60)
    metas = [f.get(timeout=60) for f in futures]
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10_000)
    parts = [KTP(topic, p) for p in range(3)]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    got = {}
    for m in consumer:
        got[(m.partition, m.offset)] = (m.key, m.value, m.headers)
        if len(got) == 500:
            break
    assert set(got) == {(m.partition, m.offset) for m in metas}
    for key, value, headers in got.values():
        assert value == b"value-" + key[1:]
        assert headers == [("h", b"1")]
    # Seek into the middle of partition 0 and read from there.
    p0 = sorted(o for (p, o) in got if p == 0)
    if len(p0) > 2:
        consumer.seek(KTP(topic, 0), p0[2])
        first = next(m for m in consumer if m.partition == 0)
        assert first.offset == p0[2]
    consumer.close()
