"""Dynamic broker configs (issue 18 item 5) against real brokers: IncrementalAlterConfigs and
DescribeConfigs on BROKER resources with confluent-kafka, the cluster-wide default (an empty
broker name, which librdkafka and kafka-python both refuse to send) with `strata cluster
config`. A changed default reaches existing topics without an override (retention deletes
old segments, message.max.bytes refuses larger batches), a broker's own value beats the
cluster default, static settings are refused naming why, values survive a restart, and a
cluster-wide change reaches every broker of a cluster. Waits poll with a deadline."""
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)

from conftest import create_topic, strata_bin

DEADLINE_S = 60
SEGMENT_BYTES = 1 << 20
BIG = b"b" * 30_000


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def node_of(bootstrap):
    brokers = admin(bootstrap).list_topics(timeout=30).brokers
    assert len(brokers) == 1
    return next(iter(brokers))


def cli(bootstrap, *args, check=True):
    """`strata cluster config ...`; returns the completed process."""
    done = subprocess.run([strata_bin(), "cluster", "--bootstrap-server", bootstrap, "config",
                           *args], capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def alter_broker(bootstrap, node, *entries, validate_only=False):
    resource = ConfigResource(ConfigResource.Type.BROKER, str(node),
                              incremental_configs=list(entries))
    client = admin(bootstrap)  # kept until the answer: a dropped client fails its futures
    futures = client.incremental_alter_configs([resource], validate_only=validate_only)
    futures[resource].result(30)


def set_entry(name, value):
    return ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)


def delete_entry(name):
    return ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE)


def describe(bootstrap, resource_type, name):
    """DescribeConfigs (librdkafka always asks for synonyms)."""
    resource = ConfigResource(resource_type, str(name))
    client = admin(bootstrap)
    return client.describe_configs([resource])[resource].result(30)


def produce_errors(bootstrap, topic, value, partition=None):
    """Produces one record; returns its delivery error (None when stored)."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "retries": 0})
    extra = {} if partition is None else {"partition": partition}
    p.produce(topic, value=value, on_delivery=lambda err, msg: errors.append(err), **extra)
    assert p.flush(30) == 0
    return errors[0]


def watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30, cached=False)
    finally:
        c.close()


def test_cluster_default_retention_reaches_an_existing_topic(make_broker):
    b = make_broker("--shards", "2", "--retention-check-ms", "100")
    create_topic(b.bootstrap, "aged", 1, {"segment.bytes": str(SEGMENT_BYTES)})
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(4000):
        p.produce("aged", value=b"x" * 1000 + str(i).encode())
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    log_dir = b.data_dir / "aged-0"
    assert len(list(log_dir.glob("*.log"))) > 1
    assert watermarks(b.bootstrap, "aged")[0] == 0, "7 days of retention by default"
    cli(b.bootstrap, "set", "log.retention.ms", "1000")
    # Every closed segment ages past the new default: only the active one stays.
    deadline = time.monotonic() + DEADLINE_S
    while len(list(log_dir.glob("*.log"))) > 1:
        assert time.monotonic() < deadline, "the new retention default never applied"
        time.sleep(0.1)  # a pause between polls of a condition with a deadline
    low, high = watermarks(b.bootstrap, "aged")
    assert 0 < low < high == 4000
    entry = describe(b.bootstrap, ConfigResource.Type.TOPIC, "aged")["retention.ms"]
    assert entry.value == "1000"
    assert entry.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    shown = cli(b.bootstrap, "get", "log.retention.ms").stdout
    assert "1000" in shown and "dynamic-cluster-default" in shown, shown


def test_message_max_bytes_per_broker_refuses_larger_batches_and_survives_restart(broker):
    node = node_of(broker.bootstrap)
    create_topic(broker.bootstrap, "big", 1)
    assert produce_errors(broker.bootstrap, "big", BIG) is None
    alter_broker(broker.bootstrap, node, set_entry("message.max.bytes", "10000"))
    error = produce_errors(broker.bootstrap, "big", BIG)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    assert produce_errors(broker.bootstrap, "big", b"s" * 5000) is None
    configs = describe(broker.bootstrap, ConfigResource.Type.BROKER, node)
    assert configs["message.max.bytes"].value == "10000"
    assert configs["message.max.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert not configs["message.max.bytes"].is_read_only
    assert configs["log.dirs"].is_read_only
    assert configs["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    topic = describe(broker.bootstrap, ConfigResource.Type.TOPIC, "big")["max.message.bytes"]
    assert (topic.value, topic.source) == ("10000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    broker.stop()
    broker.restart()
    error = produce_errors(broker.bootstrap, "big", BIG)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    configs = describe(broker.bootstrap, ConfigResource.Type.BROKER, node)
    assert configs["message.max.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value


def test_a_brokers_value_beats_the_cluster_default(broker):
    node = node_of(broker.bootstrap)
    create_topic(broker.bootstrap, "prec", 1)
    cli(broker.bootstrap, "set", "log.retention.ms", "600000")
    alter_broker(broker.bootstrap, node, set_entry("log.retention.ms", "300000"))
    entry = describe(broker.bootstrap, ConfigResource.Type.BROKER, node)["log.retention.ms"]
    assert (entry.value, entry.source) == ("300000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert "log.retention.ms" in entry.synonyms
    topic = describe(broker.bootstrap, ConfigResource.Type.TOPIC, "prec")["retention.ms"]
    assert (topic.value, topic.source) == ("300000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert "log.retention.ms" in topic.synonyms
    shown = cli(broker.bootstrap, "get", "--broker", str(node), "log.retention.ms").stdout
    assert "300000" in shown and "dynamic-broker" in shown, shown
    # Without the broker's own value, the cluster-wide default applies; without that, the
    # built-in default.
    alter_broker(broker.bootstrap, node, delete_entry("log.retention.ms"))
    entry = describe(broker.bootstrap, ConfigResource.Type.BROKER, node)["log.retention.ms"]
    assert (entry.value, entry.source) == (
        "600000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    cli(broker.bootstrap, "delete", "log.retention.ms")
    entry = describe(broker.bootstrap, ConfigResource.Type.BROKER, node)["log.retention.ms"]
    assert (entry.value, entry.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value)


@pytest.mark.parametrize("name,value,why", [
    ("log.dirs", "/tmp/elsewhere", "cannot update log.dirs dynamically"),
    ("auto.create.topics.enable", "false", "cannot update auto.create.topics.enable"),
    # A name Strata does not know is stored, as Kafka stores it, but within bounds.
    ("no.such.config", "v" * 4097, "at most 4096 bytes"),
    ("log.retention.ms", "-5", "log.retention.ms"),
])
def test_static_unknown_and_bad_settings_are_refused_naming_why(broker, name, value, why):
    node = node_of(broker.bootstrap)
    with pytest.raises(KafkaException) as refused:
        alter_broker(broker.bootstrap, node, set_entry(name, value))
    error = refused.value.args[0]
    assert error.code() == KafkaError.INVALID_REQUEST, error
    assert why in error.str(), error.str()
    done = cli(broker.bootstrap, "set", name, value, check=False)
    assert done.returncode != 0 and why in done.stderr, done.stderr


def test_validate_only_changes_nothing(broker):
    node = node_of(broker.bootstrap)
    alter_broker(broker.bootstrap, node, set_entry("log.retention.ms", "1000"),
                 validate_only=True)
    entry = describe(broker.bootstrap, ConfigResource.Type.BROKER, node)["log.retention.ms"]
    assert entry.source == ConfigSource.DEFAULT_CONFIG.value


def test_a_cluster_wide_change_reaches_every_broker(make_cluster):
    nodes = make_cluster(3)
    create_topic(nodes[0].bootstrap, "spread", 3)
    cli(nodes[0].bootstrap, "set", "message.max.bytes", "10000")
    for i, node in enumerate(nodes):
        deadline = time.monotonic() + DEADLINE_S
        while True:
            entry = describe(node.bootstrap, ConfigResource.Type.BROKER, i + 1)
            if entry["message.max.bytes"].value == "10000":
                break
            assert time.monotonic() < deadline, f"broker {i + 1} never applied the default"
            time.sleep(0.1)  # a pause between polls of a condition with a deadline
        assert (entry["message.max.bytes"].source
                == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    # Each partition has its own leader (round-robin): every one refuses the larger batch,
    # until broker 2's own value lets its partition take it.
    leaders = {p.id: p.leader
               for p in admin(nodes[0].bootstrap).list_topics(timeout=30)
               .topics["spread"].partitions.values()}
    assert sorted(leaders.values()) == [1, 2, 3]
    for partition in leaders:
        error = produce_errors(nodes[0].bootstrap, "spread", BIG, partition)
        assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    alter_broker(nodes[0].bootstrap, 2, set_entry("message.max.bytes", "100000"))
    on_two = next(p for p, leader in leaders.items() if leader == 2)
    deadline = time.monotonic() + DEADLINE_S
    while produce_errors(nodes[0].bootstrap, "spread", BIG, on_two) is not None:
        assert time.monotonic() < deadline, "broker 2 never applied its own value"
        time.sleep(0.1)  # a pause between polls of a condition with a deadline
    for partition, leader in leaders.items():
        if leader != 2:
            error = produce_errors(nodes[0].bootstrap, "spread", BIG, partition)
            assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
