"""Cluster operations with real clients (issue 19): partitions reassigned under
confluent-kafka acks=all load lose nothing and end where the plan says (check 1); a killed
leader's partitions all get new leaders under load, with nothing acknowledged lost, and the
time each took is printed (check 3; the 2 s figure is measured by perf/failover.py, since
tests assert no wall-clock thresholds); a broker decommissioned under load ends with no
replicas and out of the controller quorum, is stopped with nothing acknowledged lost, and
comes back when recommissioned (check 2), when the continuous balancer gives it its share of
replicas back.
"""
import json
import subprocess
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import strata_bin
from test_replication import bootstrap, create, layout, poll, read_all, wait_in_sync


def strata(nodes, *args):
    """`strata <args> --output json --bootstrap-server <a live broker>`, parsed."""
    out = subprocess.run([strata_bin(), *args, "--output", "json", "--bootstrap-server",
                          bootstrap(nodes).split(",")[0]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


class Load:
    """An idempotent acks=all producer writing numbered records to every partition of a
    topic from a thread until stopped; remembers what was acknowledged."""

    def __init__(self, nodes, topic, partitions):
        self.topic, self.partitions = topic, partitions
        self.acked = {p: set() for p in range(partitions)}
        self.errors = []
        self.stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 5,
                                  "message.timeout.ms": 120000})
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def delivered(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.acked[msg.partition()].add(msg.value())

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce(self.topic, value=b"%d" % i,
                                      partition=i % self.partitions, on_delivery=self.delivered)
                i += 1
            except BufferError:
                pass
            # Paces the load (about 2,000 records/s) so the shared machine keeps up.
            self.producer.poll(0.0005 if i % 10 else 0.005)

    def acknowledged(self):
        return sum(map(len, self.acked.values()))

    def finish(self):
        self.stop.set()
        self.thread.join()
        assert self.producer.flush(120) == 0, "records still in flight"
        assert not self.errors, self.errors[:5]

    def check_nothing_lost(self, nodes):
        for p in range(self.partitions):
            values = {v for _, v in read_all(nodes, self.topic, p)}
            lost = self.acked[p] - values
            if lost:
                # Kept for the diagnosis (an open bug lost acknowledged records here once in
                # ten runs): each broker's log beside its data, under pytest's tmp_path.
                for n in nodes:
                    (n.data_dir / "broker.log").write_text("\n".join(n.lines))
            assert not lost, (f"partition {p} lost {len(lost)} acknowledged records; broker "
                              f"logs in {nodes[0].data_dir.parent}/*/broker.log")


def plan(partitions, brokers, topic):
    """Replicas of partition i: 3 brokers round-robin from brokers[i % n]."""
    n = len(brokers)
    return {"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": [brokers[(p + j) % n] for j in range(3)]}
        for p in range(partitions)]}


def test_reassignment_under_load_moves_every_partition_as_planned(make_cluster, tmp_path):
    nodes = make_cluster(4, "--shards", "1", observers=1)
    create(nodes, "moving", 12, 3)
    wait_in_sync(nodes, "moving", 12)
    # Start from brokers 1-3 only.
    first = tmp_path / "first.json"
    first.write_text(json.dumps(plan(12, [1, 2, 3], "moving")))
    strata(nodes, "cluster", "reassign", "execute", "--plan", str(first))
    poll("the first plan to complete",
         lambda: strata(nodes, "cluster", "reassign", "verify", "--plan", str(first))["complete"])
    # The brokers learn the completed plan from the controller one after the other: the one
    # layout() asks may not have it yet.
    poll("every broker to know the first plan's layout",
         lambda: (now := layout(nodes, "moving")) is not None
         and all(4 not in replicas for _, replicas, _ in now.values()))

    load = Load(nodes, "moving", 12)
    poll("records to be acknowledged", lambda: load.acknowledged() >= 500)
    second = tmp_path / "second.json"
    wanted = plan(12, [2, 3, 4], "moving")
    second.write_text(json.dumps(wanted))
    strata(nodes, "cluster", "reassign", "execute", "--plan", str(second))
    # ListPartitionReassignments shows the moves in progress: broker 4 added, 1 removed.
    seen = strata(nodes, "cluster", "reassign", "list")
    for move in seen:
        assert set(move["adding"]) <= {4} and set(move["removing"]) <= {1}, move
    poll("the second plan to complete",
         lambda: strata(nodes, "cluster", "reassign", "verify", "--plan", str(second))["complete"])
    before = load.acknowledged()
    poll("records to keep being acknowledged", lambda: load.acknowledged() >= before + 500)
    load.finish()
    assert strata(nodes, "cluster", "reassign", "list") == []
    final = wait_in_sync(nodes, "moving", 12)
    for p in wanted["partitions"]:
        assert final[p["partition"]][1] == sorted(p["replicas"]), final
    load.check_nothing_lost(nodes)
    # Broker 1 holds no copy of any moved partition any more.
    poll("broker 1 to delete its moved replicas",
         lambda: not any((nodes[0].data_dir / f"moving-{p}").exists() for p in range(12)))


def test_killed_leader_partitions_are_all_re_led_under_load(make_cluster):
    # Default liveness settings: what the failover time depends on.
    nodes = make_cluster(3, "--shards", "1")
    create(nodes, "failover", 12, 3)
    before = wait_in_sync(nodes, "failover", 12)
    victim = before[0][0]
    led = [p for p, (leader, _, _) in before.items() if leader == victim]
    load = Load(nodes, "failover", 12)
    poll("records to be acknowledged", lambda: load.acknowledged() >= 500)
    nodes[victim - 1].kill9()
    killed = time.monotonic()
    re_led = {}

    def all_re_led():
        now = layout(nodes, "failover") or {}
        for p in led:
            leader = now.get(p, (-1,))[0]
            if p not in re_led and leader not in (-1, victim):
                re_led[p] = time.monotonic() - killed
        return len(re_led) == len(led)
    poll("every partition the victim led to have a new leader", all_re_led)
    times = sorted(re_led.values())
    print(f"\nfailover: broker {victim} killed; {len(led)} partitions re-led after "
          f"min {times[0]:.3f} s, median {times[len(times) // 2]:.3f} s, max {times[-1]:.3f} s")
    before = load.acknowledged()
    poll("records to keep being acknowledged", lambda: load.acknowledged() >= before + 500)
    load.finish()
    load.check_nothing_lost(nodes)


def strata_at(node, *args, timeout=180):
    """`strata <args> --bootstrap-server <node>`: the completed process."""
    return subprocess.run([strata_bin(), *args, "--bootstrap-server", node.bootstrap],
                          capture_output=True, text=True, timeout=timeout)


def test_decommission_under_load_drains_a_voter_and_recommission_lets_it_back(make_cluster):
    # voters 1-3, observer 4; the balancer on (it gives broker 1 its share back at the end)
    nodes = make_cluster(4, "--shards", "1", "--partition-autobalancing-mode", "continuous",
                         observers=1)
    # Refused while some topic needs every broker: the reason is given.
    create(nodes, "wide", 1, 4)
    refused = strata_at(nodes[1], "cluster", "decommission", "1")
    assert refused.returncode != 0 and "replication factor is 4" in refused.stderr, refused
    subprocess.run([strata_bin(), "topic", "delete", "wide", "--bootstrap-server",
                    nodes[1].bootstrap], check=True, capture_output=True)

    create(nodes, "drained", 6, 3)
    wait_in_sync(nodes, "drained", 6)
    assert any(1 in replicas for _, replicas, _ in layout(nodes, "drained").values())
    load = Load(nodes, "drained", 6)
    poll("records to be acknowledged", lambda: load.acknowledged() >= 500)
    done = strata_at(nodes[1], "cluster", "decommission", "1")
    assert done.returncode == 0, done.stderr
    assert "replica(s) left" in done.stdout and "is decommissioned" in done.stdout, done.stdout
    status = strata(nodes[1:], "cluster", "decommission-status", "1")
    assert status == {"broker": 1, "replicas": 0, "member": False, "done": True}, status
    quorum_leader_ok = layout(nodes[1:], "drained")
    assert all(1 not in replicas and leader not in (-1, 1)
               for leader, replicas, _ in quorum_leader_ok.values()), quorum_leader_ok
    poll("broker 1 to delete its replicas",
         lambda: not any((nodes[0].data_dir / f"drained-{p}").exists() for p in range(6)))
    nodes[0].stop()
    before = load.acknowledged()
    poll("records to keep being acknowledged", lambda: load.acknowledged() >= before + 500)
    load.finish()
    wait_in_sync(nodes[1:], "drained", 6)
    load.check_nothing_lost(nodes[1:])

    # Recommissioned, it rejoins the quorum and may hold replicas again.
    again = strata(nodes[1:], "cluster", "recommission", "1")
    assert again == {"broker": 1, "recommissioned": True}, again
    nodes[0].restart()
    poll("broker 1 back in the controller quorum",
         lambda: strata(nodes[1:], "cluster", "decommission-status", "1")["member"])
    create(nodes, "back", 4, 3)
    placed = wait_in_sync(nodes, "back", 4)
    assert any(1 in replicas for _, replicas, _ in placed.values()), placed

    # The balancer moves replicas to broker 1 until every broker holds as many as the
    # others (every topic, __consumer_offsets included), give or take one.
    def balanced():
        if strata(nodes, "cluster", "reassign", "list"):
            return None
        counts = {b: 0 for b in (1, 2, 3, 4)}
        topics = AdminClient({"bootstrap.servers": bootstrap(nodes)}).list_topics(timeout=10)
        for topic in topics.topics.values():
            for p in topic.partitions.values():
                for b in p.replicas:
                    counts[b] += 1
        return counts if max(counts.values()) - min(counts.values()) <= 1 else None
    print("\nreplicas per broker after balancing:", poll("a balanced cluster", balanced))
