#!/usr/bin/env python3
"""Time one thread spent off-CPU with a given kernel frame on its stack.

Usage:
    perf record -e sched:sched_switch -g -p BROKER_PID -o off.perf.data -- sleep 8
    perf script -i off.perf.data | python3 perf/blocked.py TID [FRAME]

FRAME defaults to blkdev_issue_discard. Prints how many times thread TID was switched out
with FRAME on its stack, the total and the p50 / max of those spans in ms. A span ends when
the thread is switched back in; `perf record -p` does not see a switch-in from another
process (the idle task, say), so a span then ends at the thread's next switch-out: each span
is an upper bound.
"""
import re
import sys

HEADER = re.compile(r" ([\d.]+): sched:sched_switch: .*prev_pid=(\d+) .*next_pid=(\d+)")


def switches(lines, frame):
    """(time, prev_pid, next_pid, frame on the stack) of each sched_switch sample."""
    event = None
    for line in lines:
        if line[:1] not in (" ", "\t", "\n"):
            if event:
                yield tuple(event)
            m = HEADER.search(line)
            event = [float(m.group(1)), int(m.group(2)), int(m.group(3)), False] if m else None
        elif event and frame in line:
            event[3] = True
    if event:
        yield tuple(event)


def main():
    tid = int(sys.argv[1])
    frame = sys.argv[2] if len(sys.argv) > 2 else "blkdev_issue_discard"
    events = list(switches(sys.stdin, frame))
    spans, out = [], None
    for time, prev, nxt, hit in events:
        if out and tid in (prev, nxt):
            if out[1]:
                spans.append((time - out[0]) * 1000)
            out = None
        if prev == tid:
            out = (time, hit)
    spans.sort()
    window = events[-1][0] - events[0][0] if events else 0
    p50 = spans[len(spans) // 2] if spans else 0
    worst = spans[-1] if spans else 0
    print(f"thread {tid}: {len(spans)} spans off-CPU with {frame}: {sum(spans):.1f} ms "
          f"of {window:.1f} s, p50 {p50:.2f} ms, max {worst:.2f} ms")


if __name__ == "__main__":
    main()
