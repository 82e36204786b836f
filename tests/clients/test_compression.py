"""Compression with confluent-kafka (librdkafka): every producer codec still round-trips now
that the leader decompresses and walks each batch, topic `compression.type` makes the leader
recompress (consumers read back the same records), and the config is accepted, altered and
described as Kafka does. Also what a librdkafka producer sees for keyless records on a
compacted topic."""
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)

from conftest import create_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TOPIC_CODECS = ["uncompressed", "gzip", "snappy", "lz4", "zstd", "producer"]


def produce(bootstrap, topic, messages, codec="none", **extra):
    """Produces (key, value, headers) messages; returns the delivery errors (None = ok)."""
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                         "linger.ms": 5, "batch.num.messages": 500, **extra})
    for key, value, headers in messages:
        producer.produce(topic, value=value, key=key, headers=headers,
                         on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    return errors


def consume(bootstrap, topic, count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out = []
    try:
        while len(out) < count:
            msg = consumer.poll(30)
            assert msg is not None, f"only {len(out)} of {count} records came back"
            assert msg.error() is None, msg.error()
            out.append((msg.key(), msg.value(), msg.headers() or []))
    finally:
        consumer.close()
    return out


def messages(n, tag):
    # Compressible but varied values, some with headers, a few without a key.
    return [(None if i % 50 == 7 else f"key-{i}".encode(),
             (f"{tag} value {i} " * (1 + i % 20)).encode(),
             [("h", f"{i}".encode())] if i % 3 == 0 else None)
            for i in range(n)]


def normalised(msgs):
    return [(k, v, list(h or [])) for k, v, h in msgs]


@pytest.mark.parametrize("codec", CODECS)
def test_every_producer_codec_round_trips(broker, codec):
    topic = f"codec-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    sent = messages(3000, codec)
    assert produce(broker.bootstrap, topic, sent, codec) == [None] * len(sent)
    assert consume(broker.bootstrap, topic, len(sent)) == normalised(sent)


@pytest.mark.parametrize("target", TOPIC_CODECS)
def test_topic_compression_type_recompresses_and_consumers_read_the_same_records(broker, target):
    topic = f"target-{target}"
    create_topic(broker.bootstrap, topic, 2, {"compression.type": target})
    sent = []
    # Batches in every producer codec, so each one is either kept or recompressed.
    for codec in CODECS:
        batch = messages(400, f"{codec}->{target}")
        assert produce(broker.bootstrap, topic, batch, codec) == [None] * len(batch)
        sent.extend(batch)
    got = consume(broker.bootstrap, topic, len(sent))
    assert sorted(got, key=repr) == sorted(normalised(sent), key=repr)
    configs = describe(broker.bootstrap, topic)
    assert configs["compression.type"].value == target
    assert configs["compression.type"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def describe(bootstrap, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_configs([resource])[resource].result(timeout=30)


def test_compression_configs_are_altered_and_described_with_their_source(make_broker):
    b = make_broker("--compression-type", "zstd", "--compression-zstd-level", "7")
    create_topic(b.bootstrap, "alt", 1)
    configs = describe(b.bootstrap, "alt")
    assert configs["compression.type"].value == "zstd"
    assert configs["compression.type"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert configs["compression.zstd.level"].value == "7"
    assert configs["compression.gzip.level"].value == "-1"
    assert configs["compression.gzip.level"].source == ConfigSource.DEFAULT_CONFIG.value
    resource = ConfigResource(ConfigResource.Type.TOPIC, "alt", incremental_configs=[
        ConfigEntry("compression.type", "gzip", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("compression.gzip.level", "9", incremental_operation=AlterConfigOpType.SET),
    ])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    configs = describe(b.bootstrap, "alt")
    assert configs["compression.type"].value == "gzip"
    assert configs["compression.type"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["compression.gzip.level"].value == "9"
    # The new codec applies to the next batches, and what was written before still reads.
    first = messages(100, "before")
    assert produce(b.bootstrap, "alt", first, "lz4") == [None] * 100
    assert consume(b.bootstrap, "alt", 100) == normalised(first)


def test_keyless_records_on_a_compacted_topic_fail_delivery_with_invalid_record(broker):
    create_topic(broker.bootstrap, "compacted", 1, {"cleanup.policy": "compact"})
    sent = [(b"k1", b"kept", None), (None, b"no key", None)]
    # One message per request, so the keyed one is not refused with its batch.
    errors = produce(broker.bootstrap, "compacted", sent, **{"linger.ms": 0, "batch.num.messages": 1})
    assert errors[0] is None
    assert errors[1] is not None and errors[1].code() == KafkaError.INVALID_RECORD, errors[1]
    assert consume(broker.bootstrap, "compacted", 1) == [(b"k1", b"kept", [])]
