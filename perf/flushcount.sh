#!/bin/bash
# The device flushes a periodic flush policy costs at max rate (issue 20, target 1's periodic
# figure): 1 KiB max-rate produce (perf/workloads/max-rate-1t-16p-1kb.toml) for 12 s against a
# fresh broker with `--flush-ms 1000` and run.sh's segment/retention flags, counting every
# fsync/fdatasync the file system saw (ext4:ext4_sync_file_enter, the background syncs of
# the 16 partitions) and every block request issued, system-wide.
#
# Usage: perf/flushcount.sh BIN [EXTRA_SERVE_FLAGS...]   (e.g. --flush-bytes 0)
# Environment: FLUSH_MS=1000 (empty: no --flush-ms, the default fdatasync before every ack;
# 3600000 with --flush-bytes 0: no sync during the run); BENCH_FLAGS (e.g. --max-in-flight 10).
# Prints: "<MB/s> MB/s <syncs> syncs <block requests> requests in <s> s", then the data
# device's writes over the bench's run from /proc/diskstats (rate, mean size, mean latency,
# mean queue) and the broker's CPU per message.
# Broker on CPU 0, bench on CPU 1; needs `perf` with tracepoint access (root).
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh
BIN=${1:?usage: perf/flushcount.sh BIN [EXTRA_SERVE_FLAGS...]}
shift
OUT=perf/tmp/flushcount
FLUSH_MS=${FLUSH_MS-1000}
DATA=$OUT/data
rm -rf "$OUT"
mkdir -p "$OUT"
port=$(free_port)
taskset -c 0 "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$DATA" --shards 1 \
  --admin-listen 127.0.0.1:0 --segment-bytes 268435456 --retention-bytes 1073741824 \
  --retention-check-ms 1000 ${FLUSH_MS:+--flush-ms "$FLUSH_MS"} "$@" >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
trap stop_broker EXIT
if ! wait_listening "$port"; then
  echo "broker did not start: $OUT/broker.log" >&2
  exit 1
fi
disk=$(basename "$(df --output=source "$OUT" | tail -1)")
perf stat -a -e ext4:ext4_sync_file_enter -e block:block_rq_issue -o "$OUT/perf.stat" &
stat=$!
perf stat -e task-clock -p "$BROKER_PID" -o "$OUT/broker.stat" &
broker_stat=$!
grep " $disk " /proc/diskstats >"$OUT/diskstats.0" || true
# shellcheck disable=SC2086 # BENCH_FLAGS: extra `bench produce` flags, word-split on purpose
taskset -c 1 "$BIN" bench produce --workload perf/workloads/max-rate-1t-16p-1kb.toml \
  --duration 12s --warmup 2s --report "$OUT/report" --brokers "127.0.0.1:$port" --cores 1 \
  --cpus 1 ${BENCH_FLAGS:-} >/dev/null 2>&1
grep " $disk " /proc/diskstats >"$OUT/diskstats.1" || true
kill -INT "$stat" "$broker_stat"
wait "$stat" "$broker_stat" || true
stop_broker
rm -rf "$DATA"
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
mb = json.load(open(f"{out}/report/summary.json"))["produce"]["mb_per_s"]
stat = open(f"{out}/perf.stat").read()
count = lambda event: int(re.search(r"([\d,]+)\s+" + event, stat).group(1).replace(",", ""))
secs = float(re.search(r"([\d.]+) seconds time elapsed", stat).group(1))
print(f"{mb:.0f} MB/s {count('ext4:ext4_sync_file_enter')} syncs "
      f"{count('block:block_rq_issue')} requests in {secs:.1f} s")
# /proc/diskstats fields after the name: reads, merged, sectors, ms; writes, merged, sectors,
# ms; in flight, io ms, weighted io ms (the sum of every request's time in the queue).
d0, d1 = (open(f"{out}/diskstats.{i}").read().split()[3:] for i in (0, 1))
d = [int(b) - int(a) for a, b in zip(d0, d1)]
if len(d) > 10:
    writes, sectors, write_ms, weighted_ms = d[4], d[6], d[7], d[10]
    print(f"disk: {sectors * 512 / secs / 1e6:.0f} MB/s written, {writes / secs:.0f} writes/s "
          f"of {sectors * 512 / max(writes, 1) / 1024:.0f} KiB, write latency mean "
          f"{write_ms / max(writes, 1):.2f} ms, mean queue {weighted_ms / secs / 1000:.1f}")
else:
    print("disk: the data directory's device is not in /proc/diskstats")
ms = float(re.search(r"([\d.]+) msec task-clock", open(f"{out}/broker.stat").read()).group(1))
n = json.load(open(f"{out}/report/summary.json"))["produced_total"]
print(f"broker CPU {ms * 1e6 / max(n, 1):.0f} ns/msg, {ms / 1000 / secs:.0%} of a core")
PY
