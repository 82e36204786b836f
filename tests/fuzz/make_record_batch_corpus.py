#!/usr/bin/env python3
"""Writes the corpus of the `record_batch` fuzz target (tests/fuzz/corpus/record_batch/):
real batches from real clients, read back from a strata broker's segment files.

    cargo build && python3 tests/fuzz/make_record_batch_corpus.py

Sources: librdkafka (confluent-kafka) in every codec with keys and headers, idempotent and
transactional (so the broker's commit and abort markers are stored too); kafka-python in every
codec it has (its snappy is xerial-framed, librdkafka's is raw); and the broker's own
recompression (a topic with compression.type=snappy and one with zstd). A few batches of each
topic are kept, so the corpus stays small.
"""
import shutil
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "clients"))
from conftest import Broker, create_topic  # noqa: E402

from confluent_kafka import Producer  # noqa: E402

OUT = ROOT / "tests" / "fuzz" / "corpus" / "record_batch"
KEEP_PER_TOPIC = 3


def messages(n, size):
    return [(f"key-{i}".encode() if i % 5 else None,
             (f"value {i} " * size)[: size * 4].encode(),
             [("trace", f"{i}".encode()), ("h2", None)] if i % 2 else None)
            for i in range(n)]


def librdkafka(bootstrap, topic, config, n=30, size=20, transactions=None):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, **config})
    if transactions:
        producer.init_transactions(30)
        for commit in transactions:
            producer.begin_transaction()
            for key, value, headers in messages(n, size):
                producer.produce(topic, value=value, key=key, headers=headers)
            producer.flush(30)
            (producer.commit_transaction if commit else producer.abort_transaction)(30)
        return
    for key, value, headers in messages(n, size):
        producer.produce(topic, value=value, key=key, headers=headers)
    assert producer.flush(30) == 0


def kafka_python(bootstrap, topic, codec):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=20)
    for key, value, headers in messages(30, 20):
        producer.send(topic, value=value, key=key,
                      headers=[(k, v or b"") for k, v in (headers or [])])
    producer.flush(30)
    producer.close()


def batches(segment):
    data = segment.read_bytes()
    at = 0
    while at + 12 <= len(data):
        length = struct.unpack(">i", data[at + 8:at + 12])[0]
        if length <= 0 or at + 12 + length > len(data):
            break
        yield data[at:at + 12 + length]
        at += 12 + length


def main():
    work = Path(tempfile.mkdtemp())
    broker = Broker(work / "data", "--shards", "1")
    try:
        b = broker.bootstrap
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
            create_topic(b, f"rdkafka-{codec}", 1)
            librdkafka(b, f"rdkafka-{codec}", {"compression.type": codec})
        create_topic(b, "rdkafka-large-lz4", 1)
        librdkafka(b, "rdkafka-large-lz4", {"compression.type": "lz4"}, n=300, size=256)
        create_topic(b, "rdkafka-idempotent", 1)
        librdkafka(b, "rdkafka-idempotent", {"enable.idempotence": True, "compression.type": "zstd"})
        create_topic(b, "rdkafka-transactional", 1)
        librdkafka(b, "rdkafka-transactional",
                   {"transactional.id": "corpus", "compression.type": "gzip"},
                   n=5, transactions=[True, False])
        for codec in [None, "gzip", "snappy", "lz4"]:
            topic = f"kafka-python-{codec or 'none'}"
            create_topic(b, topic, 1)
            kafka_python(b, topic, codec)
        for codec in ["snappy", "zstd"]:
            topic = f"recompressed-{codec}"
            create_topic(b, topic, 1, {"compression.type": codec})
            librdkafka(b, topic, {"compression.type": "none"})
        broker.stop()
        if OUT.exists():
            for old in OUT.glob("*.batch"):
                old.unlink()
        OUT.mkdir(parents=True, exist_ok=True)
        written = 0
        for partition in sorted((work / "data").iterdir()):
            name = partition.name
            if not partition.is_dir() or not name.endswith("-0") or name.startswith("__"):
                continue
            found = [batch for seg in sorted(partition.glob("*.log")) for batch in batches(seg)]
            markers = [b for b in found[KEEP_PER_TOPIC:] if b[22] & 0x20]
            for i, batch in enumerate(found[:KEEP_PER_TOPIC] + markers):
                (OUT / f"{name[:-2]}-{i}.batch").write_bytes(batch)
                written += 1
        print(f"wrote {written} batches to {OUT}")
    finally:
        broker.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
