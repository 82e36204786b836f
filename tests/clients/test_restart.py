"""What survives a restart: a clean one, and kill -9 in the middle of a produce stream."""
import subprocess
import sys
import textwrap
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import create_topic


def read_all(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    highs = {}
    for p in range(partitions):
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        highs[p] = high
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {}
    deadline = time.monotonic() + 60
    while sum(1 for _ in got) < sum(highs.values()) and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got[(m.partition(), m.offset())] = m.value()
    c.close()
    return got, highs


def test_clean_restart_keeps_everything(broker):
    create_topic(broker.bootstrap, "keep", 3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
    for i in range(3000):
        p.produce("keep", key=str(i).encode(), value=f"m{i}".encode())
    assert p.flush(30) == 0
    before, highs = read_all(broker.bootstrap, "keep", 3)
    assert len(before) == 3000
    broker.stop()
    broker.restart()
    after, highs_after = read_all(broker.bootstrap, "keep", 3)
    assert after == before
    assert highs_after == highs
    # The log continues at the next offset.
    p = Producer({"bootstrap.servers": broker.bootstrap})
    offsets = []
    p.produce("keep", value=b"next", partition=1,
              on_delivery=lambda err, msg: offsets.append((err, msg.offset())))
    assert p.flush(30) == 0
    assert offsets == [(None, highs[1])]


PRODUCER = textwrap.dedent("""
    import sys
    from confluent_kafka import Producer
    bootstrap, topic = sys.argv[1], sys.argv[2]
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                  "message.timeout.ms": 5000, "retries": 0})
    def acked(err, msg):
        if err is None:
            print(f"{msg.partition()} {msg.offset()} {msg.value().decode()}", flush=True)
    i = 0
    while True:
        p.produce(topic, value=f"msg-{i:08d}".encode(), partition=i % 2, on_delivery=acked)
        p.poll(0)
        i += 1
        if i % 500 == 0:
            p.flush(1)
""")


def test_kill9_during_produce_loses_nothing_acknowledged(broker):
    create_topic(broker.bootstrap, "crash", 2)
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, broker.bootstrap, "crash"],
                                stdout=subprocess.PIPE, text=True)
    acked = []
    for line in producer.stdout:
        acked.append(line.split())
        if len(acked) == 20_000:
            break
    broker.kill9()  # while the producer is still sending
    producer.kill()
    rest, _ = producer.communicate()
    acked += [line.split() for line in rest.splitlines() if line]
    broker.restart()
    got, highs = read_all(broker.bootstrap, "crash", 2)
    for partition, offset, value in acked:
        assert got.get((int(partition), int(offset))) == value.encode(), \
            f"acknowledged {value} at {partition}/{offset} is missing"
    # No garbage: every record read back is one the producer sent, offsets contiguous.
    for p in range(2):
        offsets = sorted(o for (pt, o) in got if pt == p)
        assert offsets == list(range(highs[p]))
    assert all(v.startswith(b"msg-") and len(v) == 12 for v in got.values())
    # The log continues at the next offset after the recovered end.
    p = Producer({"bootstrap.servers": broker.bootstrap})
    delivered = []
    p.produce("crash", value=b"after", partition=0,
              on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert p.flush(30) == 0
    assert delivered == [(None, highs[0])]
