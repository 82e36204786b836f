"""A confluent-kafka group consumer for test_group_churn.py, run as its own process so the test
can kill -9 it at any moment (a consumer destroyed mid-rebalance). Short session and poll
timeouts, so the broker's group timers (evictions, rebalance deadlines) fire during the test.
Prints one JSON line per assignment: {"assigned": [[topic, partition], ...]}.

Usage: churn_consumer.py BOOTSTRAP TOPIC GROUP
"""
import json
import signal
import sys

from confluent_kafka import Consumer


def main():
    bootstrap, topic, group = sys.argv[1:4]
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "max.poll.interval.ms": 6000,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
        "auto.offset.reset": "earliest",
    })

    def on_assign(consumer, partitions):
        sys.stdout.write(json.dumps({"assigned": sorted([p.topic, p.partition] for p in partitions)}) + "\n")
        sys.stdout.flush()

    c.subscribe([topic], on_assign=on_assign)
    while running[0]:
        c.poll(0.1)
    c.close()


if __name__ == "__main__":
    main()
