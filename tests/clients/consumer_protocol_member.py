"""A confluent-kafka consumer with `group.protocol=consumer` (KIP-848), run as its own process
by test_consumer_protocol.py (so a test can kill -9 it). Prints one JSON line per event on
stdout: {"assigned": [[topic, partition], ...]} and {"revoked": [...]} for each incremental
change (in this protocol the callbacks carry only what is added or taken away), and
{"msg": [partition, offset, value]} for every message, committed synchronously right after
it is printed. Exits cleanly (leaving the group) on SIGTERM.

Usage: consumer_protocol_member.py BOOTSTRAP TOPIC GROUP [classic STRATEGY]
With `classic STRATEGY` it is a classic-protocol member (`group.protocol=classic`,
`partition.assignment.strategy=STRATEGY`, heartbeating every 500 ms) with the same events: a
cooperative strategy reports incremental changes, an eager one revokes everything first.
"""
import json
import signal
import sys

from confluent_kafka import Consumer


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main():
    bootstrap, topic, group = sys.argv[1:4]
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 2000,
    }
    if sys.argv[4:5] == ["classic"]:
        config.update({
            "group.protocol": "classic",
            "partition.assignment.strategy": sys.argv[5],
            "heartbeat.interval.ms": 500,
        })
    c = Consumer(config)

    def on_assign(consumer, partitions):
        emit({"assigned": sorted([p.topic, p.partition] for p in partitions)})

    def on_revoke(consumer, partitions):
        emit({"revoked": sorted([p.topic, p.partition] for p in partitions)})

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while running[0]:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            emit({"error": str(m.error())})
            continue
        emit({"msg": [m.partition(), m.offset(), m.value().decode()]})
        try:
            c.commit(message=m, asynchronous=False)
        except Exception as e:  # a commit refused while reconciling: report, keep going
            emit({"commit_error": str(e)})
    c.close()


if __name__ == "__main__":
    main()
