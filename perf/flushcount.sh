#!/bin/bash
# The device flushes a periodic flush policy costs at max rate (issue 20, target 1's periodic
# figure): 1 KiB max-rate produce (perf/workloads/max-rate-1t-16p-1kb.toml) for 12 s against a
# fresh broker with `--flush-ms 1000` and run.sh's segment/retention flags, counting every
# fsync/fdatasync the file system saw (ext4:ext4_sync_file_enter, the background syncs of
# the 16 partitions) and every block request issued, system-wide.
#
# Usage: perf/flushcount.sh BIN [EXTRA_SERVE_FLAGS...]   (e.g. --flush-bytes 0)
# Prints: "<MB/s> MB/s <syncs> syncs <block requests> requests in <s> s".
# Broker on CPU 0, bench on CPU 1; needs `perf` with tracepoint access (root).
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh
BIN=${1:?usage: perf/flushcount.sh BIN [EXTRA_SERVE_FLAGS...]}
shift
OUT=perf/tmp/flushcount
DATA=$OUT/data
rm -rf "$OUT"
mkdir -p "$OUT"
port=$(free_port)
taskset -c 0 "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$DATA" --shards 1 \
  --admin-listen 127.0.0.1:0 --segment-bytes 268435456 --retention-bytes 1073741824 \
  --retention-check-ms 1000 --flush-ms 1000 "$@" >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
trap stop_broker EXIT
if ! wait_listening "$port"; then
  echo "broker did not start: $OUT/broker.log" >&2
  exit 1
fi
perf stat -a -e ext4:ext4_sync_file_enter -e block:block_rq_issue -o "$OUT/perf.stat" &
stat=$!
taskset -c 1 "$BIN" bench produce --workload perf/workloads/max-rate-1t-16p-1kb.toml \
  --duration 12s --warmup 2s --report "$OUT/report" --brokers "127.0.0.1:$port" --cores 1 \
  --cpus 1 >/dev/null 2>&1
kill -INT "$stat"
wait "$stat" || true
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
PY
