#!/usr/bin/env python3
"""Prints a block device's activity once a second from /proc/diskstats (this machine has no
iostat): MB/s, requests/s, average request size and wait of reads and writes, the share of the
second the device had a request in flight (util) and the average queue depth.

Usage: perf/disksample.py SECONDS [DEVICE]   (DEVICE defaults to vda)
Used to see whether a catch-up read keeps the disk busy (perf/results/2026-12-06-consume-prefetch.md).
"""
import sys
import time


def snap(device):
    for line in open("/proc/diskstats"):
        fields = line.split()
        if fields[2] == device:
            return [int(x) for x in fields[3:]]
    sys.exit(f"no device {device} in /proc/diskstats")


def main():
    seconds = int(sys.argv[1])
    device = sys.argv[2] if len(sys.argv) > 2 else "vda"
    prev = snap(device)
    for i in range(seconds):
        time.sleep(1)
        cur = snap(device)
        d = [c - p for c, p in zip(cur, prev)]
        prev = cur
        # reads, merged, sectors, ms; writes, merged, sectors, ms; in flight, io ms, weighted ms
        reads, rsect, rms, writes, wsect, io_ms, weighted = d[0], d[2], d[3], d[4], d[6], d[9], d[10]
        print(
            f"{i:3d} read {rsect * 512 / 1e6:7.1f} MB/s {reads:6d} io/s "
            f"avg {rsect * 512 / max(reads, 1) / 1024:6.0f} KiB await {rms / max(reads, 1):5.2f} ms"
            f" | write {wsect * 512 / 1e6:7.1f} MB/s {writes:6d} io/s"
            f" | util {io_ms / 10:5.1f}% qd {weighted / 1000:5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
