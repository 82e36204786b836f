"""Topic configs through confluent-kafka's AdminClient: AlterConfigs, IncrementalAlterConfigs,
DescribeConfigs sources (also after a restart), and refusal of invalid values."""
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic)

from conftest import create_topic

INVALID_CONFIG = 40


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def describe(broker, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    client = admin(broker)
    return client.describe_configs([resource])[resource].result(timeout=30)


def incremental(broker, topic, *entries):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=list(entries))
    client = admin(broker)
    return client.incremental_alter_configs([resource])[resource].result(timeout=30)


def test_alter_configs_replaces_overrides_and_describe_reports_source(broker):
    create_topic(broker.bootstrap, "alt", 1, {"segment.ms": "60000"})
    configs = describe(broker, "alt")
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    resource = ConfigResource(ConfigResource.Type.TOPIC, "alt", set_config={"retention.ms": "5000"})
    client = admin(broker)
    client.alter_configs([resource])[resource].result(timeout=30)
    configs = describe(broker, "alt")
    assert configs["retention.ms"].value == "5000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # AlterConfigs replaces the whole set: segment.ms went back to its default.
    assert configs["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_incremental_alter_configs_survive_a_restart(broker):
    create_topic(broker.bootstrap, "inc", 2)
    incremental(broker, "inc",
                ConfigEntry("retention.ms", "3600000",
                            incremental_operation=AlterConfigOpType.SET),
                ConfigEntry("cleanup.policy", "compact",
                            incremental_operation=AlterConfigOpType.APPEND))
    incremental(broker, "inc",
                ConfigEntry("retention.bytes", "1048576",
                            incremental_operation=AlterConfigOpType.SET))
    before = describe(broker, "inc")
    assert before["retention.ms"].value == "3600000"
    assert before["cleanup.policy"].value == "delete,compact"
    assert before["retention.bytes"].value == "1048576"

    broker.stop()
    broker.restart()
    after = describe(broker, "inc")
    for name in ("retention.ms", "cleanup.policy", "retention.bytes"):
        assert after[name].value == before[name].value, name
        assert after[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, name

    incremental(broker, "inc",
                ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
                ConfigEntry("cleanup.policy", "delete",
                            incremental_operation=AlterConfigOpType.SUBTRACT))
    final = describe(broker, "inc")
    assert final["retention.ms"].value == "604800000"
    assert final["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert final["cleanup.policy"].value == "compact"


def test_subtracting_the_last_cleanup_policy_leaves_it_empty(broker):
    """As Kafka: removing `delete` from a `delete` topic leaves the empty list (no deletion,
    no compaction), which confluent-kafka-python's own incremental-alter test expects; and
    `file.delete.delay.ms`, which its basic-operations test sets, is a topic config."""
    create_topic(broker.bootstrap, "keep", 1)
    incremental(broker, "keep",
                ConfigEntry("cleanup.policy", "delete",
                            incremental_operation=AlterConfigOpType.SUBTRACT),
                ConfigEntry("file.delete.delay.ms", "1234",
                            incremental_operation=AlterConfigOpType.SET))
    configs = describe(broker, "keep")
    assert configs["cleanup.policy"].value == ""
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["file.delete.delay.ms"].value == "1234"
    resource = ConfigResource(ConfigResource.Type.TOPIC, "keep",
                              set_config={"cleanup.policy": "compact"})
    client = admin(broker)
    client.alter_configs([resource])[resource].result(timeout=30)
    configs = describe(broker, "keep")
    assert configs["cleanup.policy"].value == "compact"
    assert configs["file.delete.delay.ms"].value == "60000", "back to Kafka's default"


def test_broker_defaults_are_reported_as_static_with_synonyms(make_broker):
    b = make_broker("--retention-ms", "86400000")
    create_topic(b.bootstrap, "syn", 1, {"retention.ms": "1000"})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "syn")
    client = admin(b)
    configs = client.describe_configs([resource])[resource].result(30)
    retention = configs["retention.ms"]
    assert retention.value == "1000"
    # Kafka lists log.retention.ms twice (static broker and default); the client's dict of
    # synonyms keeps one entry per name.
    sources = [(s.name, s.value, s.source) for s in retention.synonyms.values()]
    assert ("retention.ms", "1000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value) in sources
    assert "log.retention.ms" in retention.synonyms
    # Without the topic override the configured broker default is the value.
    create_topic(b.bootstrap, "syn2", 1)
    configs = client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "syn2")])
    entry = list(configs.values())[0].result(30)["retention.ms"]
    assert entry.value == "86400000"
    assert entry.source == ConfigSource.STATIC_BROKER_CONFIG.value


def test_a_broker_default_given_at_its_built_in_value_is_static(make_broker):
    # Kafka reports STATIC_BROKER_CONFIG for what server.properties sets, whatever the value.
    b = make_broker("--retention-ms", "604800000")
    create_topic(b.bootstrap, "given", 1)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "given")
    client = admin(b)
    entry = client.describe_configs([resource])[resource].result(30)["retention.ms"]
    assert entry.value == "604800000"
    assert entry.source == ConfigSource.STATIC_BROKER_CONFIG.value


@pytest.mark.parametrize("name,value", [
    ("retention.ms", "-5"),
    ("cleanup.policy", "shred"),
    ("segment.bytes", "1000"),
    ("no.such.config", "1"),
])
def test_invalid_configs_are_refused_with_invalid_config(broker, name, value):
    create_topic(broker.bootstrap, "bad", 1)
    with pytest.raises(KafkaException) as alter:
        incremental(broker, "bad",
                    ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
    error = alter.value.args[0]
    assert error.code() == INVALID_CONFIG
    assert name in error.str()
    # The same value at creation time is refused too, and nothing was created.
    client = admin(broker)
    futures = client.create_topics([NewTopic("bad2", 1, 1, config={name: value})])
    with pytest.raises(KafkaException) as create:
        futures["bad2"].result(timeout=30)
    assert create.value.args[0].code() == INVALID_CONFIG
    assert describe(broker, "bad")["retention.ms"].value == "604800000"
