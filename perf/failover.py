#!/usr/bin/env python3
"""Failover time of a 3-broker Strata cluster with its default liveness settings.

Each cycle: a topic of 12 partitions (RF 3) under a paced confluent-kafka acks=all load; one
broker is killed (kill -9): in odd cycles a broker that leads partitions but is not the
controller, in even cycles the controller itself; the time from the kill until Metadata from
the survivors names a live leader for each partition the victim led is recorded per
partition (polled every 10 ms). The broker is then restarted and the cluster waited for
until every replica is back in sync and the preferred leaders lead again. At the end:
acknowledged records are all readable (nothing lost), and the distribution is printed.

    python3 perf/failover.py [--cycles 10] [--bin target/debug/strata] [--out FILE.md]
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))

import conftest  # noqa: E402  (Broker, free_port: the test harness)
from confluent_kafka.admin import AdminClient  # noqa: E402
from test_cluster_ops import Load  # noqa: E402
from test_replication import bootstrap, create, layout, poll, wait_in_sync  # noqa: E402


def start_cluster(base, n=3):
    ports = [conftest.free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports))
    secret = os.urandom(16).hex()
    nodes = [conftest.Broker(base / f"node{i + 1}", "--shards", "1", "--node-id", str(i + 1),
                             "--controller-listen", f"127.0.0.1:{p}", "--controller-voters",
                             voters, "--cluster-secret", secret, wait=False)
             for i, p in enumerate(ports)]
    for node in nodes:
        node._wait_ready()
    return nodes


def controller(nodes):
    admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
    return admin.describe_cluster(request_timeout=10).result().controller.id


def cycle(nodes, kill_controller):
    before = wait_in_sync(nodes, "failover", 12)
    ctrl = poll("a controller", lambda: controller(nodes) or None)
    leaders = {leader for leader, _, _ in before.values()}
    if kill_controller:
        victim = ctrl
    else:
        victim = next(b for b in sorted(leaders) if b != ctrl)
    led = [p for p, (leader, _, _) in before.items() if leader == victim]
    nodes[victim - 1].kill9()
    killed = time.monotonic()
    re_led = {}

    def done():
        now = layout(nodes, "failover") or {}
        for p in led:
            if p not in re_led and now.get(p, (-1,))[0] not in (-1, victim):
                re_led[p] = time.monotonic() - killed
        return len(re_led) == len(led)
    poll("every partition re-led", done, deadline_s=60)
    nodes[victim - 1].restart()
    # Back in sync, and the preferred leaders lead again (auto.leader.rebalance).
    poll("preferred leaders back", lambda: (layout(nodes, "failover") or {}) and all(
        leader == before[p][0] and len(isr) == 3
        for p, (leader, _, isr) in layout(nodes, "failover").items()), deadline_s=180)
    return victim, ctrl == victim, sorted(re_led.values())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--bin", default=str(ROOT / "target" / "debug" / "strata"))
    parser.add_argument("--out")
    args = parser.parse_args()
    os.environ["STRATA_BIN"] = str(Path(args.bin).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        nodes = start_cluster(Path(tmp))
        try:
            create(nodes, "failover", 12, 3)
            wait_in_sync(nodes, "failover", 12)
            load = Load(nodes, "failover", 12)
            rows = []
            for i in range(args.cycles):
                victim, was_ctrl, times = cycle(nodes, kill_controller=i % 2 == 1)
                rows.append((i + 1, victim, was_ctrl, times))
                print(f"cycle {i + 1}: killed broker {victim}"
                      f"{' (controller)' if was_ctrl else ''}: {len(times)} partitions re-led,"
                      f" max {times[-1]:.3f} s", flush=True)
            load.finish()
            load.check_nothing_lost(nodes)
            acked = load.acknowledged()
        finally:
            for node in nodes:
                node.close()
    report(rows, acked, args)


def report(rows, acked, args):
    def dist(values):
        values = sorted(values)
        q = lambda f: values[min(len(values) - 1, int(f * len(values)))]  # noqa: E731
        return (f"n={len(values)} min {values[0]:.3f} p50 {q(0.5):.3f} p90 {q(0.9):.3f} "
                f"max {values[-1]:.3f} mean {statistics.mean(values):.3f} (s)")
    plain = [t for _, _, c, times in rows if not c for t in times]
    ctrl = [t for _, _, c, times in rows if c for t in times]
    lines = [
        "# Failover time, 3 brokers, default liveness settings",
        "",
        f"Command: `python3 perf/failover.py --cycles {args.cycles}` ({args.bin})",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
        " (a shared 2-vCPU VM; other sessions were building and testing at the same time)",
        "",
        "Time from kill -9 of a broker until Metadata names a live leader, per partition it led:",
        "",
        f"- non-controller broker killed: {dist(plain) if plain else 'none'}",
        f"- controller broker killed: {dist(ctrl) if ctrl else 'none'}",
        f"- acknowledged records (idempotent acks=all, paced load): {acked}, all read back",
        "",
        "| cycle | victim | controller? | partitions | max (s) | all (s) |",
        "|---|---|---|---|---|---|",
    ]
    for n, victim, was_ctrl, times in rows:
        lines.append(f"| {n} | {victim} | {'yes' if was_ctrl else 'no'} | {len(times)} | "
                     f"{times[-1]:.3f} | {' '.join(f'{t:.3f}' for t in times)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
