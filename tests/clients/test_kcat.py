"""kcat (Debian's librdkafka 2.0) against strata: list, produce 10,000 keyed messages, read back."""
import subprocess

from conftest import create_topic

N = 10_000
PARTITIONS = 6


def kcat(*args, stdin=None):
    result = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_shows_broker_and_topics(broker):
    create_topic(broker.bootstrap, "listed", 3)
    out = kcat("-b", broker.bootstrap, "-L")
    assert f"broker 0 at {broker.bootstrap}" in out
    assert 'topic "listed" with 3 partitions' in out


def test_produce_and_consume_10000_keyed_messages(broker):
    create_topic(broker.bootstrap, "kc", PARTITIONS)
    sent = [(f"key-{i}", f"value-{i}-" + "x" * (i % 50)) for i in range(N)]
    stdin = "".join(f"{k}\t{v}\n" for k, v in sent)
    kcat("-b", broker.bootstrap, "-P", "-t", "kc", "-K", "\t", "-H", "origin=kcat", "-H", "n=1",
         stdin=stdin)
    out = kcat("-b", broker.bootstrap, "-C", "-t", "kc", "-e", "-q",
               "-f", "%p\t%o\t%k\t%s\t%h\n")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == N
    position = {k: i for i, (k, _) in enumerate(sent)}
    by_partition = {}
    for partition, offset, key, value, headers in rows:
        by_partition.setdefault(int(partition), []).append((int(offset), key, value, headers))
    assert len(by_partition) == PARTITIONS, "keys spread over every partition"
    seen = set()
    for partition, msgs in by_partition.items():
        offsets = [m[0] for m in msgs]
        assert offsets == list(range(len(msgs))), f"partition {partition} offsets contiguous from 0"
        order = [position[m[1]] for m in msgs]
        assert order == sorted(order), f"partition {partition} keeps produce order"
        for _, key, value, headers in msgs:
            assert value == sent[position[key]][1]
            assert headers == "origin=kcat,n=1"
            seen.add(key)
    assert len(seen) == N
