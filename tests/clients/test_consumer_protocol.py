"""KIP-848 consumer groups (`group.protocol=consumer`) with confluent-kafka against a real
broker: disjoint assignments covering every partition, a new member taking partitions by
incremental reconciliation (the others revoke only what moves), the partitions of a member
killed with -9 handed over after the session timeout, committed offsets and the group itself
surviving a broker restart, and a classic group converted online into a consumer group when a
consumer-protocol member joins and back when it leaves. Every wait is on an observable
condition with a deadline."""
import json
import subprocess
from collections import Counter

from confluent_kafka import ConsumerGroupType, Producer
from confluent_kafka.admin import AdminClient

from conftest import create_topic, strata_bin
from members import MemberProcess, wait_for

# The members are told to heartbeat often, so reconciliation steps take little time.
FAST = ("--group-consumer-heartbeat-interval-ms", "300")


class Member(MemberProcess):
    """consumer_protocol_member.py in its own process; its events as they arrive."""

    def __init__(self, bootstrap, topic, group, *classic):
        super().__init__("consumer_protocol_member.py", bootstrap, topic, group, *classic)

    def owned(self):
        """The partitions it owns: every incremental assignment minus every revocation."""
        owned = set()
        with self.lock:
            for e in self.events:
                owned |= {p for _, p in e.get("assigned", [])}
                owned -= {p for _, p in e.get("revoked", [])}
        return owned

    def mark(self):
        """A position in the events, for `revoked(since=...)`."""
        with self.lock:
            return len(self.events)

    def revoked(self, since=0):
        with self.lock:
            return [p for e in self.events[since:] for _, p in e.get("revoked", [])]


def partitioned(members, partitions, sizes):
    """Whether the members own disjoint sets covering every partition, of these sizes."""
    owned = [m.owned() for m in members]
    if sorted(len(o) for o in owned) != sorted(sizes):
        return False
    together = set().union(*owned)
    return together == set(range(partitions)) and sum(len(o) for o in owned) == partitions


def produce(bootstrap, topic, partitions, start, count):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + count):
        p.produce(topic, value=str(i).encode(), partition=i % partitions)
    assert p.flush(60) == 0


def strata_group(broker, *args):
    out = subprocess.run([strata_bin(), "group", "--bootstrap-server", broker.bootstrap,
                          "--output", "json", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def describe(bootstrap, group):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(timeout=30)


def test_three_members_then_a_fourth_moves_only_what_it_takes(make_broker):
    broker = make_broker(*FAST)
    create_topic(broker.bootstrap, "six", 6)
    first = [Member(broker.bootstrap, "six", "kip848") for _ in range(3)]
    members = list(first)
    try:
        wait_for(lambda: partitioned(first, 6, [2, 2, 2]), "three members with two each")
        before = [m.owned() for m in first]
        marks = [m.mark() for m in first]
        members.append(Member(broker.bootstrap, "six", "kip848"))
        wait_for(lambda: partitioned(members, 6, [1, 1, 2, 2]), "four members sharing six")
        after = [m.owned() for m in first]
        newcomer = members[3].owned()
        for b, a, m, mark in zip(before, after, first, marks):
            # A member keeps what it keeps without a revoke, and gives up only what moved.
            assert a <= b, "an old member was given a new partition"
            assert set(m.revoked(mark)) == b - a, "revoked more than what moved"
            assert len(m.revoked(mark)) == len(b - a), "a partition revoked twice"
        moved = set().union(*(b - a for b, a in zip(before, after)))
        assert moved == newcomer, "the newcomer got exactly what the others gave up"
        assert len(moved) == 1
        group = describe(broker.bootstrap, "kip848")
        assert group.type == ConsumerGroupType.CONSUMER
        assert len(group.members) == 4
        described = sorted(len(m.assignment.topic_partitions) for m in group.members)
        assert described == [1, 1, 2, 2]
        # `strata group` shows the type, the member epochs and the assignments.
        listed = strata_group(broker, "list")
        assert {"group": "kip848", "type": "consumer", "state": "Stable",
                "protocol_type": "consumer"} in listed
        shown = strata_group(broker, "describe", "kip848")
        assert shown["type"] == "consumer" and shown["assignor"] == "uniform"
        assert shown["assignment_epoch"] == shown["group_epoch"]
        assert all(m["member_epoch"] == shown["group_epoch"] for m in shown["members"])
        cli_owned = sorted(sorted(a["partition"] for a in m["assignment"]) for m in shown["members"])
        assert cli_owned == sorted(sorted(m.owned()) for m in members)
    finally:
        for m in members:
            m.stop()


def test_kill9_hands_the_partitions_over_after_the_session_timeout(make_broker):
    broker = make_broker(*FAST, "--group-consumer-session-timeout-ms", "3000")
    create_topic(broker.bootstrap, "handover", 6)
    members = [Member(broker.bootstrap, "handover", "survivors") for _ in range(2)]
    try:
        wait_for(lambda: partitioned(members, 6, [3, 3]), "two members with three each")
        victim, survivor = members
        victim.kill9()
        wait_for(lambda: survivor.owned() == set(range(6)), "the survivor owning all six")
        produce(broker.bootstrap, "handover", 6, 0, 60)
        wait_for(lambda: len(survivor.messages()) >= 60, "every message at the survivor")
        assert sorted(int(m[2]) for m in survivor.messages()) == list(range(60))
    finally:
        for m in members:
            m.stop()


def test_committed_offsets_and_the_group_survive_a_broker_restart(make_broker):
    broker = make_broker(*FAST)
    create_topic(broker.bootstrap, "resume", 2)
    produce(broker.bootstrap, "resume", 2, 0, 40)
    member = Member(broker.bootstrap, "resume", "resumers")
    try:
        wait_for(lambda: len(member.messages()) >= 40, "the first 40 messages")
    finally:
        member.stop()
    assert describe(broker.bootstrap, "resumers").type == ConsumerGroupType.CONSUMER
    broker.stop()
    broker.restart()
    # The group came back from __consumer_offsets as a consumer group (empty: it left).
    group = describe(broker.bootstrap, "resumers")
    assert group.type == ConsumerGroupType.CONSUMER
    assert len(group.members) == 0
    produce(broker.bootstrap, "resume", 2, 40, 20)
    member = Member(broker.bootstrap, "resume", "resumers")
    try:
        wait_for(lambda: len(member.messages()) >= 20, "the 20 new messages")
        got = sorted(int(m[2]) for m in member.messages())
        assert got == list(range(40, 60)), "resumed from the committed offsets"
    finally:
        member.stop()


def group_type(broker, group):
    """The group's type as ListGroups (v5, through `strata group list`) shows it."""
    listed = [g for g in strata_group(broker, "list") if g["group"] == group]
    return listed[0]["type"] if listed else None


def consumed(members):
    """Every value the members printed (a value seen twice counts once)."""
    return {int(m[2]) for member in members for m in member.messages()}


def duplicates(members):
    """How many deliveries beyond the first, over every record the members printed."""
    seen = Counter(int(m[2]) for member in members for m in member.messages())
    return sum(n - 1 for n in seen.values())


def migrate_and_back(make_broker, strategy, restart=False):
    broker = make_broker(*FAST)
    create_topic(broker.bootstrap, "migrate", 6)
    produce(broker.bootstrap, "migrate", 6, 0, 60)
    classic = [Member(broker.bootstrap, "migrate", "movers", "classic", strategy)
               for _ in range(2)]
    members = list(classic)
    try:
        wait_for(lambda: partitioned(classic, 6, [3, 3]), "two classic members with three each")
        wait_for(lambda: consumed(classic) == set(range(60)), "the first 60 at the classic members")
        assert group_type(broker, "movers") == "classic"
        newcomer = Member(broker.bootstrap, "migrate", "movers")
        members.append(newcomer)
        wait_for(lambda: group_type(broker, "movers") == "consumer", "the group turning consumer")
        wait_for(lambda: partitioned(members, 6, [2, 2, 2]), "three members with two each")
        # The classic members show as such in ConsumerGroupDescribe (member type 0 = classic).
        shown = strata_group(broker, "describe", "movers")
        assert shown["type"] == "consumer"
        assert sorted(m.get("member_type", "") for m in shown["members"]) == \
            ["classic", "classic", "consumer"]
        produce(broker.bootstrap, "migrate", 6, 60, 60)
        wait_for(lambda: consumed(members) == set(range(120)), "every record at some member")
        # Committed offsets carried over: the newcomer started where the classic members were.
        assert all(int(m[2]) >= 60 for m in newcomer.messages()), "records consumed twice"
        if restart:
            broker.stop()
            broker.restart()
            wait_for(lambda: group_type(broker, "movers") == "consumer",
                     "the converted group back after the restart")
            wait_for(lambda: partitioned(members, 6, [2, 2, 2]),
                     "three members with two each after the restart")
        newcomer.stop()
        members.remove(newcomer)
        wait_for(lambda: group_type(broker, "movers") == "classic", "the group back to classic")
        wait_for(lambda: partitioned(classic, 6, [3, 3]), "the classic members sharing all six")
        produce(broker.bootstrap, "migrate", 6, 120, 60)
        wait_for(lambda: consumed(members + [newcomer]) == set(range(180)),
                 "every record after the downgrade")
        # Each member commits every record right after printing it, so a record is seen
        # twice only if it was in flight when its partition moved (at-least-once): at most
        # one per partition, where offsets not carried over would repeat dozens.
        assert duplicates(members + [newcomer]) <= 6, "records consumed twice"
    finally:
        for m in members:
            m.stop()


def test_a_cooperative_classic_group_converts_online_and_back(make_broker):
    migrate_and_back(make_broker, "cooperative-sticky")


def test_an_eager_classic_group_converts_online_and_back(make_broker):
    migrate_and_back(make_broker, "range")


def test_a_converted_group_survives_a_broker_restart(make_broker):
    migrate_and_back(make_broker, "cooperative-sticky", restart=True)
