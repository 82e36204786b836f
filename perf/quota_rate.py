#!/usr/bin/env python3
"""A producer over a 1 MB/s quota, and an unthrottled producer beside it (issue 17, check 3).

Starts a broker (`--shards 1`, pinned to BROKER_CPU), sets `producer_byte_rate=1000000` for
client id `throttled`, and runs two confluent-kafka producers of 1 KiB records as fast as they
can, pinned to BENCH_CPU: `throttled` into topic `q-throttled`, `free` into `q-free`. Before
that, `free` runs alone for the same time as a baseline.

Rates are the broker's own accounting: record batch bytes appended to each topic, from
`strata_partition_bytes_in_total` in /metrics (what the quota meters), over a 10 s window
starting once the quota window (11 × 1 s) has passed, so the initial burst a fresh client is
allowed (10 windows' worth) is behind. Also reported: the throttle times clients were told
(`strata_quota_throttle_time_ms_total`) and the producer's view (value bytes acknowledged).

Usage: perf/quota_rate.py [--strata target/release/strata] [--out perf/results/DATE-quota-rate.md]
(REV=<commit> names the commit the binary was built from, when it is not HEAD.)
"""
import argparse
import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from confluent_kafka import Producer

QUOTA = 1_000_000  # bytes per second
WARMUP_S = 12  # past the 11-sample quota window
WINDOW_S = 10
VALUE = b"x" * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(admin):
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        return r.read().decode()


def bytes_in(text, topic):
    pattern = re.compile(r'^strata_partition_bytes_in_total\{[^}]*topic="%s"[^}]*\} (\S+)' % topic)
    return sum(float(m.group(1)) for m in map(pattern.match, text.splitlines()) if m)


def throttle_ms(text, client):
    pattern = re.compile(
        r'^strata_quota_throttle_time_ms_total\{quota="produce",user="",client_id="%s"\} (\S+)' % client)
    return sum(float(m.group(1)) for m in map(pattern.match, text.splitlines()) if m)


def produce(bootstrap, client_id, topic, stop, acked):
    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "acks": 1,
                  "linger.ms": 5, "batch.size": 65536, "queue.buffering.max.kbytes": 8192})

    def done(err, msg):
        if err is None:
            acked[0] += len(msg.value())

    while not stop.is_set():
        try:
            p.produce(topic, VALUE, callback=done)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(30)


def run(strata, broker_cpu, bench_cpu):
    data = tempfile.mkdtemp(prefix="strata-quota-")
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    cmd = ["taskset", "-c", str(broker_cpu), strata, "serve", "--listen", bootstrap, "--data-dir",
           data, "--shards", "1", "--admin-listen", "127.0.0.1:0"]
    log = open(os.path.join(data, "broker.log"), "w+")
    broker = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        admin = None
        while admin is None:
            assert time.time() < deadline, "broker did not start"
            log.seek(0)
            found = re.search(r"strata ready.* admin=(\S+)", log.read())
            admin = found and found.group(1)
            time.sleep(0.05)
        tool = [strata]
        for topic in ("q-throttled", "q-free"):
            subprocess.run(tool + ["topic", "create", topic, "--partitions", "1",
                                   "--bootstrap-server", bootstrap], check=True, capture_output=True)
        subprocess.run(tool + ["quota", "alter", "--name", "client-id=throttled", "--add",
                               f"producer_byte_rate={QUOTA}", "--bootstrap-server", bootstrap],
                       check=True, capture_output=True)
        os.sched_setaffinity(0, {bench_cpu})

        def window(topics, clients):
            stop = threading.Event()
            acked = {c: [0] for c, _ in clients}
            threads = [threading.Thread(target=produce, args=(bootstrap, c, t, stop, acked[c]))
                       for c, t in clients]
            for t in threads:
                t.start()
            time.sleep(WARMUP_S)
            before, acked_before = scrape(admin), {c: a[0] for c, a in acked.items()}
            start = time.time()
            time.sleep(WINDOW_S)
            after, elapsed = scrape(admin), time.time() - start
            acked_after = {c: a[0] for c, a in acked.items()}
            stop.set()
            for t in threads:
                t.join()
            rates = {t: (bytes_in(after, t) - bytes_in(before, t)) / elapsed for t in topics}
            values = {c: (acked_after[c] - acked_before[c]) / elapsed for c in acked}
            return rates, values, after

        base, base_values, _ = window(["q-free"], [("free", "q-free")])
        rates, values, text = window(["q-throttled", "q-free"],
                                     [("throttled", "q-throttled"), ("free", "q-free")])
        return {
            "baseline_free": base["q-free"],
            "baseline_free_values": base_values["free"],
            "throttled": rates["q-throttled"],
            "throttled_values": values["throttled"],
            "free": rates["q-free"],
            "free_values": values["free"],
            "throttle_ms_total": throttle_ms(text, "throttled"),
            "free_throttle_ms_total": throttle_ms(text, "free"),
            "cmd": " ".join(cmd),
        }
    finally:
        broker.terminate()
        broker.wait(60)
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", default="target/release/strata")
    ap.add_argument("--broker-cpu", type=int, default=0)
    ap.add_argument("--bench-cpu", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    r = run(args.strata, args.broker_cpu, args.bench_cpu)
    deviation = (r["throttled"] - QUOTA) / QUOTA * 100
    kept = r["free"] / r["baseline_free"] * 100
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if l.startswith("Model name:")), "?")
    rev = os.environ.get("REV") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    import confluent_kafka
    client = confluent_kafka.version()
    client = client[0] if isinstance(client, tuple) else client
    md = f"""# A producer over a 1 MB/s quota beside an unthrottled one

- {datetime.date.today()}, strata {rev}; CPU: {cpu}, {os.cpu_count()} CPUs; broker pinned to CPU
  {args.broker_cpu}, both producers (confluent-kafka {client},
  1 KiB values, linger 5 ms, acks=1) to CPU {args.bench_cpu}
- command: `perf/quota_rate.py --strata {args.strata}`; broker: `{r['cmd']}`
- quota: `strata quota alter --name client-id=throttled --add producer_byte_rate={QUOTA}`
  (quota window: the default 11 samples × 1 s)
- rates: record batch bytes appended (the broker's `strata_partition_bytes_in_total`, what the
  quota meters) over {WINDOW_S} s, measured after {WARMUP_S} s (the quota window and the burst a
  new client may send at once are behind); in brackets, value bytes the producer saw
  acknowledged

| producer | rate | vs quota / baseline |
|---|---|---|
| `throttled` (quota {QUOTA / 1e6:.1f} MB/s) | {r['throttled'] / 1e6:.3f} MB/s ({r['throttled_values'] / 1e6:.3f}) | {deviation:+.1f}% of the quota |
| `free`, alone (baseline) | {r['baseline_free'] / 1e6:.1f} MB/s ({r['baseline_free_values'] / 1e6:.1f}) | |
| `free`, beside `throttled` | {r['free'] / 1e6:.1f} MB/s ({r['free_values'] / 1e6:.1f}) | {kept:.1f}% of its baseline |

Throttle time the broker told `throttled` (total, ms): {r['throttle_ms_total']:.0f};
`free`: {r['free_throttle_ms_total']:.0f}.

Goal (issue 17): the throttled producer within ±20% of its quota over 10 s, the other keeping
its rate: {"met" if abs(deviation) <= 20 else "NOT met"} ({deviation:+.1f}%).
"""
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md)


if __name__ == "__main__":
    sys.exit(main())
