"""Fetch from the closest replica (KIP-392) with a real client: over three racks, with the
rack-aware replica selector on, a confluent-kafka consumer whose client.rack is a follower's
rack is sent there by the leader (preferred_read_replica) and reads every record from that
follower, in order, with its offsets; the follower's /metrics count the consumer fetches it
served as a follower.
"""
import re
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition

from test_replication import bootstrap, create, poll, wait_in_sync

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
RACKS = ["a", "b", "c"]


def metric(node, name):
    text = urllib.request.urlopen(f"http://{node.admin}/metrics", timeout=10).read().decode()
    found = re.search(r"^" + re.escape(name) + r" (\d+)", text, re.M)
    return int(found.group(1)) if found else 0


def produce(nodes, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all"})
    for value in values:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(60) == 0, "records still in flight"


def consume(consumer, count, got):
    def more():
        msg = consumer.poll(0.5)
        if msg is not None:
            assert msg.error() is None, msg.error()
            got.append((msg.offset(), msg.value()))
        return len(got) >= count
    poll(f"{count} records", more)


def test_a_consumer_reads_from_the_follower_in_its_rack(make_cluster):
    nodes = make_cluster(3, "--shards", "1", "--replica-selector-class", SELECTOR, racks=RACKS)
    create(nodes, "near", 1, 3)
    leader, replicas, _ = wait_in_sync(nodes, "near", 1)[0]
    near = next(r for r in replicas if r != leader)
    first = [b"near-%d" % i for i in range(300)]
    produce(nodes, "near", first)

    served = 'strata_consumer_fetches_total{role="follower"}'
    assert metric(nodes[near - 1], served) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": "near",
                         "client.rack": RACKS[near - 1], "enable.auto.commit": False})
    consumer.assign([TopicPartition("near", 0, 0)])
    got = []
    consume(consumer, len(first), got)
    # Records produced while the consumer reads from the follower reach it too.
    second = [b"later-%d" % i for i in range(200)]
    produce(nodes, "near", second)
    consume(consumer, len(first) + len(second), got)
    consumer.close()
    assert got == list(enumerate(first + second))

    assert metric(nodes[leader - 1], "strata_preferred_read_replica_redirects_total") >= 1
    assert metric(nodes[near - 1], served) >= 1, "the follower in the rack served no fetch"
    far = next(r for r in replicas if r not in (leader, near))
    assert metric(nodes[far - 1], served) == 0, "the follower of another rack served fetches"
