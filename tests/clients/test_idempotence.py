"""An idempotent confluent-kafka producer whose produce responses get lost: the broker drops the
connection after appending every 5th produce request (a hidden fault-injection flag), the
client retries, and every message is still stored exactly once, in order."""
from confluent_kafka import Producer

from conftest import create_topic
from test_clients import consume_assigned

N = 3000
PARTITIONS = 3


def test_idempotent_retries_store_every_message_exactly_once(make_broker):
    broker = make_broker("--shards", "2", "--fault-drop-produce-every", "5")
    create_topic(broker.bootstrap, "idem", PARTITIONS)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "linger.ms": 2, "batch.num.messages": 100, "retry.backoff.ms": 10})
    errors = []
    for i in range(N):
        p.produce("idem", value=str(i).encode(), partition=i % PARTITIONS,
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(60) == 0
    assert errors == []
    dropped = [l for l in broker.lines if "fault injection: dropped a produce response" in l]
    assert dropped, "the fault never fired, so nothing was retried"

    got = consume_assigned(broker.bootstrap, "idem", range(PARTITIONS), N)
    assert len(got) == N
    for part in range(PARTITIONS):
        values = [int(v) for p_, _, _, v, _ in got if p_ == part]
        offsets = [o for p_, o, _, _, _ in got if p_ == part]
        assert values == list(range(part, N, PARTITIONS)), "each message once, in send order"
        assert offsets == list(range(len(values)))
