"""Fixtures for tests that drive a real `strata serve` process with real Kafka clients.

The broker binary comes from $STRATA_BIN, else target/debug/strata (built by `.ci/run`).
Each broker gets a free loopback port and its own data directory, and is waited for by its
"strata ready" log line, never by sleeping.
"""
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60


def strata_bin():
    path = os.environ.get("STRATA_BIN") or str(ROOT / "target" / "debug" / "strata")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} does not exist: run `cargo build` first")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A strata broker process. `stop()` is SIGTERM + clean exit; `kill9()` is SIGKILL."""

    def __init__(self, data_dir, *extra):
        self.port = free_port()
        self.data_dir = Path(data_dir)
        self.extra = list(extra)
        self.proc = None
        self.lines = []
        self.admin = None  # "127.0.0.1:PORT" of the admin HTTP listener, from the ready line
        self._start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def _start(self):
        # Many brokers run at once: an ephemeral admin port unless the test picks one.
        admin = [] if "--admin-listen" in self.extra else ["--admin-listen", "127.0.0.1:0"]
        cmd = [strata_bin(), "serve", "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
               "--segment-prealloc-bytes", "1048576", *admin, *self.extra]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"})
        ready = threading.Event()

        def pump(proc=self.proc):
            for line in proc.stderr:
                self.lines.append(line.rstrip())
                if "strata ready" in line:
                    found = re.search(r" admin=(\S+)", line)
                    self.admin = found.group(1) if found and found.group(1) != "off" else None
                    ready.set()
            ready.set()  # exited: unblock the waiter, which then sees the process is gone

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S) or self.proc.poll() is not None:
            raise RuntimeError("broker did not start:\n" + "\n".join(self.lines))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        assert code == 0, "broker exited with %s:\n%s" % (code, "\n".join(self.lines[-20:]))
        self.proc = None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self):
        assert self.proc is None
        self._start()

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data", "--shards", "2")
    yield b
    b.close()


@pytest.fixture
def make_broker(tmp_path):
    made = []

    def make(*extra):
        b = Broker(tmp_path / f"data{len(made)}", *extra)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def create_topic(bootstrap, name, partitions, config=None):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    futures[name].result(timeout=30)


def start_cluster(base_dir, n, *extra):
    """Starts `n` brokers, each a controller voter (node ids 1..n), all at once: none is ready
    before a quorum is up. Returns them once every one lists all `n` brokers in Metadata."""
    import time
    from confluent_kafka.admin import AdminClient
    ports = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(ports))
    brokers = [None] * n
    errors = []

    def start(i):
        try:
            brokers[i] = Broker(Path(base_dir) / f"node{i + 1}", "--node-id", str(i + 1),
                                "--controller-listen", f"127.0.0.1:{ports[i]}",
                                "--controller-voters", voters, *extra)
        except Exception as e:  # reported below, after every thread ended
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for b in brokers:
            if b is not None:
                b.close()
        raise errors[0]
    deadline = time.monotonic() + READY_TIMEOUT_S
    for b in brokers:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        while len(admin.list_topics(timeout=10).brokers) < n:
            assert time.monotonic() < deadline, "brokers did not all register"
            time.sleep(0.05)  # a pause between polls of a condition with a deadline
    return brokers


@pytest.fixture
def cluster(tmp_path):
    brokers = start_cluster(tmp_path, 3, "--shards", "2")
    yield brokers
    for b in brokers:
        b.close()
