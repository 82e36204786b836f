#!/usr/bin/env python3
"""Pauses of a block device, from the block layer's tracepoints recorded during a run.

Reads `perf script -F time,event,trace` of `block:block_rq_issue` and
`block:block_rq_complete` (perf/lib.sh `block_trace_start` / `block_trace_stop` record them),
pairs each request's issue with its completion and reports, as one JSON object:
- per kind of request (`rwbs`: WS a synchronous data write, FF a cache flush, WSM a
  synchronous metadata write, R a read, ...) the count, latency p50 / p99 / p99.9 / max and
  size (mean, and the byte-weighted median: half the bytes went in requests at most this
  large);
- the device's pauses: the union of the spans of requests slower than `--slow-ms` (2 ms),
  their count, total share of the traced time, the longest and each one's length;
- whether the slow requests were the device's or their own: of the requests issued while a
  request slower than 5 ms was in flight, the share that still completed within 1 ms. Near 0
  means the whole device stalled (nothing the broker issues then can be fast); near 1 means
  single slow requests.

With `--report DIR` (a `strata bench` report) and `--clock-offset S` (CLOCK_REALTIME minus
CLOCK_MONOTONIC when the trace was taken with `perf record -k monotonic`) it also gives each
measured second's pause time (`pause_ms_by_second`), beside the report's per-second latency.

Usage: perf/devpause.py TRACE.txt|- [--device MAJOR,MINOR | --device-of PATH] [--slow-ms 2]
                        [--report DIR --clock-offset S]
Used by perf/datapath.sh's e2e step (target 2) to say how much of a run's tail the disk
itself set (perf/results/2026-12-07-device-pauses.md).
"""
import argparse
import collections
import json
import os
import re
import sys

LINE = re.compile(
    r"\s*(?P<time>[\d.]+):\s+block:block_rq_(?P<event>issue|complete):\s+"
    r"(?P<dev>\d+,\d+)\s+(?P<rwbs>\S+)\s+(?:\d+\s+)?\(\S*\)\s+(?P<sector>\d+)\s+\+\s+(?P<n>\d+)")

# A request at least this slow is a "long" one whose window is checked for other requests.
LONG_S = 0.005
# A request issued in such a window that completes within this is "fast".
FAST_S = 0.001


def pairs(lines, device):
    """(issue time, latency s, rwbs, bytes) of each completed request, in issue order, and the
    number of issues left without a completion.

    A request is known by its device, first sector and length. A block is not written again
    while a write of it is in flight (its buffer stays locked), so an issue of a key that is
    still pending means the earlier one's completion is missing from the trace (seen for about
    one metadata write in 40,000): the later issue replaces it. Pairing first-in-first-out
    instead would shift every later pair of that key. A cache flush is issued as `FF 0 + 0`
    and completes as `FF -1 + 0` followed by `WS 0 + 0` (the flush sequence's end): the
    second pairs with the issue."""
    pending = {}
    done = []
    unpaired = 0
    for line in lines:
        m = LINE.match(line)
        if not m or (device and m["dev"] != device):
            continue
        key = (m["dev"], m["sector"], m["n"])
        t = float(m["time"])
        if m["event"] == "issue":
            unpaired += key in pending
            pending[key] = (t, m["rwbs"], int(m["n"]) * 512)
        elif key in pending:
            t0, rwbs, size = pending.pop(key)
            done.append((t0, t - t0, rwbs, size))
    done.sort()
    return done, unpaired + len(pending)


def quantiles(values):
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1e3  # noqa: E731
    return {"count": len(v), "p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999),
            "max_ms": v[-1] * 1e3}


def sizes(values):
    """Mean and byte-weighted median of request sizes, KiB."""
    v = sorted(values)
    total, seen = sum(v), 0
    median = v[-1]
    for x in v:
        seen += x
        if 2 * seen >= total:
            median = x
            break
    return {"mean_kib": total / len(v) / 1024, "weighted_median_kib": median / 1024}


def by_second(episodes, start, seconds):
    """Milliseconds of `episodes` (monotonic s) within each second from `start`."""
    out = []
    for i in range(seconds):
        a, b = start + i, start + i + 1
        out.append(round(sum(max(0.0, min(b, y) - max(a, x)) for x, y in episodes) * 1e3, 1))
    return out


def analyse(done, unpaired, slow_s):
    if not done:
        return {"requests": 0, "unpaired": unpaired}
    span = max(t + d for t, d, *_ in done) - done[0][0]
    kinds = collections.defaultdict(list)
    kind_bytes = collections.defaultdict(list)
    for _, d, rwbs, size in done:
        kinds[rwbs].append(d)
        kind_bytes[rwbs].append(size)
    episodes = []
    for t, d, *_ in done:
        if d < slow_s:
            continue
        if episodes and t <= episodes[-1][1]:
            episodes[-1][1] = max(episodes[-1][1], t + d)
        else:
            episodes.append([t, t + d])
    lengths = [(b - a) * 1e3 for a, b in episodes]
    # Requests issued while a long one was in flight, and how many of them were fast anyway.
    issued = fast = 0
    starts = [t for t, *_ in done]
    j = 0
    for t, d, *_ in done:
        if d < LONG_S:
            continue
        while j < len(done) and starts[j] <= t:
            j += 1
        k = j
        while k < len(done) and starts[k] < t + d:
            issued += 1
            fast += done[k][1] < FAST_S
            k += 1
    return {
        "requests": len(done),
        "unpaired": unpaired,
        "traced_s": span,
        "kinds": {k: {**quantiles(v), **sizes(kind_bytes[k])}
                  for k, v in sorted(kinds.items(), key=lambda kv: -len(kv[1]))},
        "slow_ms": slow_s * 1e3,
        "pauses": len(episodes),
        "pause_share": sum(b - a for a, b in episodes) / span if span > 0 else 0.0,
        "longest_pause_ms": max(lengths, default=0.0),
        "pause_ms": [round(x, 1) for x in lengths],
        "episodes": episodes,
        "issued_during_long": issued,
        "fast_during_long": fast,
    }


def line(r):
    """One line for a summary."""
    if not r.get("requests"):
        return "no block requests traced"
    during = (f"; of the {r['issued_during_long']} requests issued while one took > 5 ms, "
              f"{r['fast_during_long']} completed within 1 ms" if r["issued_during_long"] else "")
    return (f"device pauses (a request > {r['slow_ms']:.0f} ms): {r['pauses']} in "
            f"{r['traced_s']:.0f} s, {100 * r['pause_share']:.1f}% of the time, longest "
            f"{r['longest_pause_ms']:.1f} ms{during}")


def device_of(path):
    """MAJOR,MINOR of the disk that holds `path` as the block trace names it: a partition's
    requests are traced on its whole disk. None (trace every device) when it is not a plain
    block device, e.g. a tmpfs."""
    dev = os.stat(path).st_dev
    sys_dir = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if not os.path.exists(sys_dir):
        return None
    if os.path.exists(sys_dir + "/partition"):
        with open(os.path.join(os.path.realpath(sys_dir), "..", "dev")) as f:
            return f.read().strip().replace(":", ",")
    return f"{os.major(dev)},{os.minor(dev)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--device", help="MAJOR,MINOR as the trace prints it (default: all)")
    ap.add_argument("--device-of", help="the disk that holds this file or directory")
    ap.add_argument("--slow-ms", type=float, default=2.0)
    ap.add_argument("--report", help="a bench report directory (its summary.json)")
    ap.add_argument("--clock-offset", type=float, help="CLOCK_REALTIME - CLOCK_MONOTONIC, s")
    a = ap.parse_args()
    device = device_of(a.device_of) if a.device_of else a.device
    f = sys.stdin if a.trace == "-" else open(a.trace)
    with f:
        r = analyse(*pairs(f, device), a.slow_ms / 1e3)
    r["device"] = device
    episodes = r.pop("episodes", [])
    if a.report and a.clock_offset is not None:
        with open(os.path.join(a.report, "summary.json")) as f:
            report = json.load(f)
        start = report["measure_start_unix_ms"] / 1e3 - a.clock_offset
        r["pause_ms_by_second"] = by_second(episodes, start, round(report["measured_seconds"]))
    r["line"] = line(r)
    json.dump(r, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
