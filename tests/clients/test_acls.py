"""ACLs and authorized operations with real admin clients.

- confluent-kafka's and kafka-python's create_acls / describe_acls / delete_acls round-trip
  against a broker running the standard authorizer (User:ANONYMOUS is a super user, so it may
  manage ACLs).
- With no authorizer, kafka-python's describe_cluster, describe_groups, describe_topics and
  delete_records get the real authorized-operation sets (every operation the resource
  supports, as Kafka answers), not the "omitted" value.
- `strata acl create|list|delete` round-trips too.
"""
import json
import subprocess

import pytest

from confluent_kafka import Consumer, TopicPartition as CTopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)
from kafka import TopicPartition
from kafka.errors import SecurityDisabledError
from kafka.admin import KafkaAdminClient
from kafka.admin._acls import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                               ACLResourcePatternType, ResourcePattern, ResourcePatternFilter)
from kafka.admin._acls import ResourceType as KResourceType

from conftest import create_topic, strata_bin

AUTHORIZER = ("--authorizer", "standard", "--super-users", "User:ANONYMOUS")

TOPIC_OPS = {"READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS",
             "ALTER_CONFIGS"}
GROUP_OPS = {"READ", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
CLUSTER_OPS = {"CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS",
               "ALTER_CONFIGS", "IDEMPOTENT_WRITE"}


def everything():
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                            AclOperation.ANY, AclPermissionType.ANY)


def confluent_acls():
    return [
        AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, "pay", ResourcePatternType.PREFIXED, "User:alice",
                   "10.0.0.1", AclOperation.WRITE, AclPermissionType.DENY),
        AclBinding(ResourceType.GROUP, "g", ResourcePatternType.LITERAL, "User:*", "*",
                   AclOperation.ALL, AclPermissionType.ALLOW),
        AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                   "User:bob", "*", AclOperation.IDEMPOTENT_WRITE, AclPermissionType.ALLOW),
    ]


def test_confluent_kafka_acls_round_trip(make_broker):
    broker = make_broker("--shards", "2", *AUTHORIZER)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    acls = confluent_acls()
    for future in admin.create_acls(acls).values():
        future.result(timeout=30)
    described = admin.describe_acls(everything()).result(timeout=30)
    assert sorted(map(str, described)) == sorted(map(str, acls))
    # A prefix of the filter: only alice's topic ACLs.
    alice = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.ANY, "User:alice",
                             None, AclOperation.ANY, AclPermissionType.ANY)
    assert len(admin.describe_acls(alice).result(timeout=30)) == 2
    # MATCH: every ACL that applies to topic "payments".
    payments = AclBindingFilter(ResourceType.TOPIC, "payments", ResourcePatternType.MATCH, None,
                                None, AclOperation.ANY, AclPermissionType.ANY)
    matched = admin.describe_acls(payments).result(timeout=30)
    assert [b.name for b in matched] == ["pay"]
    deleted = admin.delete_acls([alice])[alice].result(timeout=30)
    assert len(deleted) == 2
    left = admin.describe_acls(everything()).result(timeout=30)
    assert sorted(b.name for b in left) == ["g", "kafka-cluster"]
    # They survive a restart (they live in the cluster metadata).
    broker.stop()
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert len(admin.describe_acls(everything()).result(timeout=30)) == 2


def test_kafka_python_acls_round_trip(make_broker):
    broker = make_broker("--shards", "2", *AUTHORIZER)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        acl = ACL(principal="User:alice", host="*", operation=ACLOperation.READ,
                  permission_type=ACLPermissionType.ALLOW,
                  resource_pattern=ResourcePattern(KResourceType.TOPIC, "orders",
                                                   ACLResourcePatternType.LITERAL))
        bad = ACL(principal="alice", host="*", operation=ACLOperation.READ,
                  permission_type=ACLPermissionType.ALLOW,
                  resource_pattern=ResourcePattern(KResourceType.TOPIC, "orders",
                                                   ACLResourcePatternType.LITERAL))
        created = admin.create_acls([acl, bad])
        assert created["succeeded"] == [acl]
        assert [e.errno for e in created["failed"]] == [42], "a principal must be Type:name"
        any_filter = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                               permission_type=ACLPermissionType.ANY,
                               resource_pattern=ResourcePatternFilter(
                                   KResourceType.ANY, None, ACLResourcePatternType.ANY))
        found, error = admin.describe_acls(any_filter)
        assert error.errno == 0
        assert found == [acl]
        [(_, deleted, error)] = admin.delete_acls([any_filter])
        assert error.errno == 0 and deleted == [acl]
        found, _ = admin.describe_acls(any_filter)
        assert found == []
    finally:
        admin.close()


def test_acl_apis_without_an_authorizer_answer_security_disabled(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        any_filter = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                               permission_type=ACLPermissionType.ANY,
                               resource_pattern=ResourcePatternFilter(
                                   KResourceType.ANY, None, ACLResourcePatternType.ANY))
        # SECURITY_DISABLED, as Kafka answers without an authorizer.
        with pytest.raises(SecurityDisabledError):
            admin.describe_acls(any_filter)
    finally:
        admin.close()


def commit_offsets(bootstrap, topic, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    c.commit(offsets=[CTopicPartition(topic, 0, 0)], asynchronous=False)
    c.close()


def test_kafka_python_gets_real_authorized_operations_without_an_authorizer(broker):
    create_topic(broker.bootstrap, "ops", 1)
    commit_offsets(broker.bootstrap, "ops", "ops-group")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        cluster = admin.describe_cluster()
        assert set(cluster["authorized_operations"]) == CLUSTER_OPS
        groups = admin.describe_groups(["ops-group"])
        assert groups["ops-group"]["error"] is None
        assert set(groups["ops-group"]["authorized_operations"]) == GROUP_OPS
        [topic] = admin.describe_topics(["ops"])
        assert set(topic["authorized_operations"]) == TOPIC_OPS
        deleted = admin.delete_records({TopicPartition("ops", 0): 0})
        assert deleted[TopicPartition("ops", 0)]["error_code"] == 0
        # The cluster metadata call asks for topic (and, before v11, cluster) operations.
        metadata = admin._manager.run(admin._get_cluster_metadata, None)
        assert {t["name"]: set(t["authorized_operations"]) for t in metadata["topics"]}["ops"] == TOPIC_OPS
    finally:
        admin.close()


def strata(broker, *args):
    out = subprocess.run([strata_bin(), "acl", "--bootstrap-server", broker.bootstrap, *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_strata_acl_cli_round_trip(make_broker):
    broker = make_broker(*AUTHORIZER)
    strata(broker, "create", "--allow-principal", "alice", "--operation", "read,write",
           "--topic", "orders", "--group", "g")
    listed = json.loads(strata(broker, "list", "--output", "json"))
    assert len(listed) == 4, listed
    assert {a["principal"] for a in listed} == {"User:alice"}
    assert {(a["resource_type"], a["operation"]) for a in listed} == {
        ("TOPIC", "READ"), ("TOPIC", "WRITE"), ("GROUP", "READ"), ("GROUP", "WRITE")}
    table = strata(broker, "list", "--topic", "orders")
    assert "PRINCIPAL" in table and table.count("User:alice") == 2
    deleted = json.loads(strata(broker, "delete", "--group", "g", "--output", "json"))
    assert len(deleted) == 2
    assert len(json.loads(strata(broker, "list", "--output", "json"))) == 2


def test_acls_and_quotas_replicate_through_the_controller(make_cluster):
    import time
    nodes = make_cluster(3, *AUTHORIZER)
    first = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    for future in first.create_acls(confluent_acls()).values():
        future.result(timeout=30)
    strata_quota = [strata_bin(), "quota", "--bootstrap-server", nodes[1].bootstrap, "alter",
                    "--name", "user=alice", "--add", "producer_byte_rate=1048576"]
    subprocess.run(strata_quota, check=True, capture_output=True, timeout=60)
    # Every broker applies the same ACLs and quotas, from the replicated metadata.
    deadline = time.monotonic() + 30
    for node in nodes:
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        while len(admin.describe_acls(everything()).result(timeout=30)) < len(confluent_acls()):
            assert time.monotonic() < deadline, f"ACLs never reached {node.bootstrap}"
            time.sleep(0.05)  # a pause between polls of a condition with a deadline
        described = subprocess.run([strata_bin(), "quota", "--bootstrap-server", node.bootstrap,
                                    "describe", "--output", "json"],
                                   check=True, capture_output=True, text=True, timeout=60)
        while "producer_byte_rate" not in described.stdout:
            assert time.monotonic() < deadline, f"quotas never reached {node.bootstrap}"
            time.sleep(0.05)
            described = subprocess.run([strata_bin(), "quota", "--bootstrap-server",
                                        node.bootstrap, "describe", "--output", "json"],
                                       check=True, capture_output=True, text=True, timeout=60)
        assert json.loads(described.stdout) == [
            {"entity": {"user": "alice"}, "values": {"producer_byte_rate": 1048576.0}}]
