"""Admin APIs that kafka-python's own integration suite (tests/suites/kafka-python.sh) found
missing or answered unlike Kafka, checked here through kafka-python's admin client with the
values a user reads back: DescribeLogDirs and AlterReplicaLogDirs (KIP-113),
DescribeTopicPartitions (KIP-966) page by page, ListConfigResources (KIP-1142), and what a
single broker answers to DescribeQuorum and AlterPartitionReassignments."""
import os

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import (InvalidReplicationAssignmentError, LogDirNotFoundError, NoError,
                          NoReassignmentInProgressError, ReplicaNotAvailableError)
from kafka.structs import TopicPartition, TopicPartitionReplica

from conftest import create_topic


@pytest.fixture
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    yield client
    client.close()


def produce(broker, topic, partition, count, size):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    for _ in range(count):
        producer.send(topic, b"x" * size, partition=partition)
    producer.flush(60)
    producer.close()


def log_dir_partitions(admin, topic_partitions=None):
    """{(topic, partition): size} and the log dir entry of the one broker."""
    (broker,) = admin.describe_log_dirs(topic_partitions)
    (log_dir,) = broker["log_dirs"]
    sizes = {(t["name"], p["partition_index"]): p for t in log_dir["topics"]
             for p in t["partitions"]}
    return log_dir, sizes


def test_describe_log_dirs_reports_the_data_dir_and_partition_sizes(broker, admin):
    create_topic(broker.bootstrap, "sized", 2)
    produce(broker, "sized", 0, 200, 1000)
    log_dir, parts = log_dir_partitions(admin)
    assert log_dir["error_code"] == 0
    assert os.path.samefile(log_dir["log_dir"], broker.data_dir)
    assert os.path.isabs(log_dir["log_dir"])
    # 200 records of 1000 bytes in batches: more than the values, less than twice them.
    written = parts[("sized", 0)]["partition_size"]
    assert 200 * 1000 < written < 2 * 200 * 1000
    assert parts[("sized", 1)]["partition_size"] == 0
    assert parts[("sized", 0)]["offset_lag"] == 0
    assert not parts[("sized", 0)]["is_future_key"]
    # v4: the filesystem's size and free space.
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0

    produce(broker, "sized", 0, 100, 1000)
    _, grown = log_dir_partitions(admin, {"sized": [0]})
    assert list(grown) == [("sized", 0)], "only the partition asked for"
    assert grown[("sized", 0)]["partition_size"] > written + 100 * 1000


def test_alter_replica_log_dirs_accepts_only_the_dir_a_replica_is_in(broker, admin):
    create_topic(broker.bootstrap, "moved", 1)
    (entry,) = admin.describe_log_dirs()
    here = entry["log_dirs"][0]["log_dir"]
    result = admin.alter_replica_log_dirs({
        TopicPartitionReplica("moved", 0, 0): here,
        TopicPartitionReplica("missing", 0, 0): here,
    })
    assert result[TopicPartitionReplica("moved", 0, 0)] is NoError
    assert result[TopicPartitionReplica("missing", 0, 0)] is ReplicaNotAvailableError
    elsewhere = admin.alter_replica_log_dirs({TopicPartitionReplica("moved", 0, 0): "/nowhere"})
    assert elsewhere[TopicPartitionReplica("moved", 0, 0)] is LogDirNotFoundError


def described(page):
    return [(t["name"], p["partition_index"]) for t in page["topics"] for p in t["partitions"]]


def test_describe_topic_partitions_pages_with_a_cursor(broker, admin):
    create_topic(broker.bootstrap, "pa", 3)
    create_topic(broker.bootstrap, "pb", 2)
    seen, cursor, pages = [], None, 0
    while True:
        page = admin.describe_topic_partitions(["pb", "pa"], response_partition_limit=2,
                                               cursor=cursor)
        pages += 1
        seen += described(page)
        for t in page["topics"]:
            assert t["error_code"] == 0 and not t["is_internal"]
            for p in t["partitions"]:
                assert p["leader_id"] == 0 and p["replica_nodes"] == [0]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert seen == [("pa", 0), ("pa", 1), ("pa", 2), ("pb", 0), ("pb", 1)]
    assert pages == 3

    whole = admin.describe_topic_partitions(["pa", "nope"])
    assert whole["next_cursor"] is None
    errors = {t["name"]: t["error_code"] for t in whole["topics"]}
    assert errors == {"pa": 0, "nope": 3}, "UNKNOWN_TOPIC_OR_PARTITION for a missing topic"


def test_a_single_broker_is_a_quorum_of_one(broker, admin):
    quorum = admin.describe_metadata_quorum()
    (topic,) = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    (partition,) = topic["partitions"]
    assert partition["leader_id"] == 0
    assert [v["replica_id"] for v in partition["current_voters"]] == [0]
    before = partition["high_watermark"]
    create_topic(broker.bootstrap, "bump", 1)
    after = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]["high_watermark"]
    assert after > before, "the metadata log grows with each change"


def test_single_broker_reassignment_to_itself_is_done(broker, admin):
    create_topic(broker.bootstrap, "stay", 1)
    tp = TopicPartition("stay", 0)
    assert admin.alter_partition_reassignments({tp: [0]}) == {tp: None}
    moved = admin.alter_partition_reassignments({tp: [1]})
    assert isinstance(moved[tp], InvalidReplicationAssignmentError) or \
        moved[tp] is InvalidReplicationAssignmentError
    cancelled = admin.alter_partition_reassignments({tp: None})
    assert isinstance(cancelled[tp], NoReassignmentInProgressError) or \
        cancelled[tp] is NoReassignmentInProgressError
    assert admin.list_partition_reassignments() == {}


def test_list_config_resources_lists_topics_brokers_and_configured_groups(broker, admin):
    create_topic(broker.bootstrap, "listed", 1)
    every = admin.list_config_resources()
    assert "0" in every["broker"] and "0" in every["broker_logger"]
    assert "listed" in every["topic"]
    assert not every.get("group"), "no group has a config yet"
