"""SIGTERM while a producer is running: the broker drains, exits 0 within its bound, and
every message it acknowledged is there after a restart."""
import subprocess
import sys

from conftest import create_topic
from test_restart import PRODUCER, read_all

SHUTDOWN_TIMEOUT_S = 5
# The broker's own watchdog ends it (non-zero) CLOSE_GRACE = 30 s after the timeout; waiting
# longer than that only guards against a hang of the test itself.
EXIT_BOUND_S = SHUTDOWN_TIMEOUT_S + 30


def test_sigterm_under_load_exits_cleanly_and_keeps_acknowledged(make_broker):
    broker = make_broker("--shards", "2", "--shutdown-timeout-ms",
                         str(SHUTDOWN_TIMEOUT_S * 1000))
    create_topic(broker.bootstrap, "drain", 2)
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, broker.bootstrap, "drain"],
                                stdout=subprocess.PIPE, text=True)
    acked = []
    for line in producer.stdout:
        acked.append(line.split())
        if len(acked) == 10_000:
            break
    broker.proc.terminate()  # SIGTERM while the producer is still sending
    code = broker.proc.wait(timeout=EXIT_BOUND_S)
    assert code == 0, "\n".join(broker.lines[-20:])
    broker.proc = None
    assert any("strata stopped cleanly" in line for line in broker.lines)
    producer.kill()
    rest, _ = producer.communicate()
    acked += [line.split() for line in rest.splitlines() if line]

    broker.restart()
    got, highs = read_all(broker.bootstrap, "drain", 2)
    for partition, offset, value in acked:
        assert got.get((int(partition), int(offset))) == value.encode(), \
            f"acknowledged {value} at {partition}/{offset} is missing"
    for p in range(2):
        assert sorted(o for (pt, o) in got if pt == p) == list(range(highs[p]))
