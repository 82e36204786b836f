"""Fixtures for tests that drive a real `strata serve` process with real Kafka clients.

The broker binary comes from $STRATA_BIN, else target/debug/strata (built by `.ci/run`).
Each broker gets a free loopback port and its own data directory, and is waited for by its
"strata ready" log line, never by sleeping.
"""
import itertools
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60


def strata_bin():
    path = os.environ.get("STRATA_BIN") or str(ROOT / "target" / "debug" / "strata")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} does not exist: run `cargo build` first")
    return path


_LOWEST_PORT = 10000
_next_port = itertools.count()


def free_port():
    """A free loopback port for a broker, below the kernel's ephemeral range: outgoing
    connections (brokers hold many: followers fetch from leaders) draw from that range and
    could take a port between this probe and the broker's bind. A counter keeps this
    process's picks apart, the pid other processes'."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    span = max(ephemeral - _LOWEST_PORT, 1000)
    start = os.getpid() * 97 % span
    for _ in range(span):
        port = _LOWEST_PORT + (start + next(_next_port)) % span
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


class Broker:
    """A strata broker process. `stop()` is SIGTERM + clean exit; `kill9()` is SIGKILL."""

    def __init__(self, data_dir, *extra, wait=True):
        """wait=False: launched only (a cluster's brokers start together; none is ready
        before a quorum is up): call _wait_ready() later."""
        self.port = free_port()
        self.data_dir = Path(data_dir)
        # Named listeners: "{addr}" is this broker's bootstrap address, "{port2}" a second
        # free port (e.g. "--listeners", "PLAINTEXT://{addr},SSL://127.0.0.1:{port2}").
        self.port2 = free_port() if any("{port2}" in str(a) for a in extra) else None
        self.extra = [str(a).replace("{addr}", self.bootstrap).replace("{port2}", str(self.port2))
                      for a in extra]
        self.proc = None
        self.lines = []
        self.admin = None  # "127.0.0.1:PORT" of the admin HTTP listener, from the ready line
        self._ready = None
        self._launch()
        if wait:
            self._wait_ready()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def _start(self):
        self._launch()
        self._wait_ready()

    def _launch(self):
        # Many brokers run at once: an ephemeral admin port unless the test picks one.
        admin = [] if "--admin-listen" in self.extra else ["--admin-listen", "127.0.0.1:0"]
        listen = [] if "--listeners" in self.extra else ["--listen", self.bootstrap]
        cmd = [strata_bin(), "serve", *listen, "--data-dir", str(self.data_dir),
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
        self._ready = ready

    def _wait_ready(self):
        if not self._ready.wait(READY_TIMEOUT_S) or self.proc.poll() is not None:
            raise RuntimeError("broker did not start:\n" + "\n".join(self.lines))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        assert code == 0, "broker exited with %s:\n%s" % (code, "\n".join(self.lines[-20:]))
        self.proc = None

    def pause(self):
        """SIGSTOP: the process stays, silent, as behind a network partition."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

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


@pytest.fixture
def make_cluster(tmp_path):
    """make_cluster(n, *extra, observers=0, racks=None): n brokers (node ids 1..n), the first
    n - observers controller voters, the others observers; racks[i] is broker i+1's
    --broker-rack."""
    made = []

    def make(n, *extra, observers=0, racks=None):
        ports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}"
                          for i, port in enumerate(ports[:n - observers]))
        secret = os.urandom(16).hex()  # the controller port's shared secret
        nodes = []
        for i, port in enumerate(ports):
            own = ["--node-id", str(i + 1), "--controller-listen", f"127.0.0.1:{port}",
                   "--controller-voters", voters, "--cluster-secret", secret, *extra]
            if racks:
                own += ["--broker-rack", racks[i]]
            nodes.append(Broker(tmp_path / f"node{i + 1}", *own, wait=False))
        made.extend(nodes)
        for node in nodes:
            node._wait_ready()
        # Ready means registered itself; wait until every broker knows every other one.
        from confluent_kafka.admin import AdminClient
        deadline = time.monotonic() + READY_TIMEOUT_S
        for node in nodes:
            admin = AdminClient({"bootstrap.servers": node.bootstrap})
            while len(admin.list_topics(timeout=10).brokers) < n:
                assert time.monotonic() < deadline, "brokers did not all register"
                time.sleep(0.05)  # a pause between polls of a condition with a deadline
        return nodes

    yield make
    for b in made:
        if b.proc is not None:
            b.resume()
        b.close()


@pytest.fixture
def cluster(make_cluster):
    """Three brokers, two shards each."""
    return make_cluster(3, "--shards", "2")
