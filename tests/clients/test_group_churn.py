"""Issue 15, finding 1: consumers that subscribe and unsubscribe quickly, or are destroyed
during a rebalance, panicked the group coordinator (a RefCell borrowed twice when a group
timer already due ran inside the call that armed it) and the broker exited. Here consumers
come and go in a loop (closed cleanly, closed at once, killed -9 mid-rebalance) while the
broker must stay up; then two consumers stay and the group must end Stable with exactly them,
consuming everything produced."""
import random
import threading
import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

from conftest import create_topic
from members import MemberProcess, wait_for


class ChurnConsumer(MemberProcess):
    """churn_consumer.py in its own process; its latest assignment."""

    def __init__(self, bootstrap, topic, group):
        super().__init__("churn_consumer.py", bootstrap, topic, group)

    @property
    def assigned(self):
        with self.lock:
            return self.events[-1]["assigned"] if self.events else None


def quick_consumer(bootstrap, topic, group, rng):
    """Subscribes, polls for a moment (often less than its first JoinGroup takes, so that
    the broker hands out a member id nobody rejoins with), and unsubscribes and closes (or
    just closes)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                  "max.poll.interval.ms": 6000})
    c.subscribe([topic])
    end = time.monotonic() + rng.choice([0, 0.01, 0.05, 0.2, 0.8])
    while time.monotonic() < end:
        c.poll(0.05)
    if rng.random() < 0.5:
        c.unsubscribe()
    c.close()


def describe(bootstrap, group):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(timeout=30)


def test_churning_consumers_leave_the_broker_up_and_the_group_stable(broker):
    topic, group = "churn", "churners"
    create_topic(broker.bootstrap, topic, 4)
    rng = random.Random(15)
    alive = lambda: broker.proc.poll() is None
    churners = []
    try:
        for _ in range(10):
            # Each round starts from a group that may be empty (its first join phase is held
            # for the initial delay) or mid-rebalance with members dying.
            churners += [ChurnConsumer(broker.bootstrap, topic, group) for _ in range(3)]
            quick = [threading.Thread(target=quick_consumer,
                                      args=(broker.bootstrap, topic, group, random.Random(rng.random())))
                     for _ in range(4)]
            for t in quick:
                t.start()
            time.sleep(rng.uniform(0.05, 1.0))  # churn timing, not synchronisation
            for c in churners:
                if c.proc.poll() is None:
                    c.kill9() if rng.random() < 0.7 else c.stop()
            for t in quick:
                t.join(timeout=60)
            assert alive(), "the broker died:\n" + "\n".join(broker.lines[-30:])
        stayers = [ChurnConsumer(broker.bootstrap, topic, group) for _ in range(2)]
        churners += stayers

        def stable_with_stayers():
            assert alive(), "the broker died:\n" + "\n".join(broker.lines[-30:])
            d = describe(broker.bootstrap, group)
            sizes = sorted(len(s.assigned or []) for s in stayers)
            return d.state == ConsumerGroupState.STABLE and len(d.members) == 2 and sizes == [2, 2]

        wait_for(stable_with_stayers, "the group Stable with the two consumers that stayed")
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(40):
            p.produce(topic, value=str(i).encode(), partition=i % 4)
        assert p.flush(30) == 0
        assert alive()
        panics = [l for l in broker.lines if "panicked" in l or "contained a panic" in l]
        assert not panics, "a panic was logged:\n" + "\n".join(panics)
    finally:
        for c in churners:
            c.stop()
