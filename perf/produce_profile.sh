#!/usr/bin/env bash
# Profiles the broker under perf/datapath.sh's 1 KiB max-rate produce (issue 20 target 1): one
# broker on $BROKER_CPU, `bench produce` on $BENCH_CPU, `perf record -k mono --call-graph dwarf`
# of the broker for $SECONDS_RECORDED s in the middle of the run, then the share of samples
# whose leaf is memmove/memcpy or memset, each with its three nearest strata callers.
# Usage: perf/produce_profile.sh BIN [label]   Writes perf/tmp/profile/<label>.perf.data.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh
BIN=${1:?usage: perf/produce_profile.sh BIN [label]}
LABEL=${2:-profile}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
SECONDS_RECORDED=${SECONDS_RECORDED:-6}
OUT=perf/tmp/profile
DATA=perf/tmp/profile-data
mkdir -p "$OUT"
trap stop_broker EXIT
port=$(free_port)
rm -rf "$DATA"
taskset -c "$BROKER_CPU" "$BIN" serve --listen 127.0.0.1:"$port" --data-dir "$DATA" --shards 1 \
  --admin-listen 127.0.0.1:0 --segment-bytes 268435456 --retention-bytes 1073741824 \
  --retention-check-ms 1000 >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
wait_listening "$port" || true
taskset -c "$BENCH_CPU" "$BIN" bench produce --workload perf/workloads/max-rate-1t-16p-1kb.toml \
  --duration 12s --warmup 2s --brokers 127.0.0.1:"$port" --cores 1 --cpus "$BENCH_CPU" \
  --report "$OUT/$LABEL-report" >/dev/null 2>&1 &
bench=$!
sleep 4
perf record -k mono --call-graph dwarf -p "$BROKER_PID" -o "$OUT/$LABEL.perf.data" \
  -- sleep "$SECONDS_RECORDED" >/dev/null 2>&1
wait "$bench"
stop_broker
rm -rf "$DATA"
perf report -i "$OUT/$LABEL.perf.data" --no-children --sort sym --stdio 2>/dev/null \
  | grep -E '^ +[0-9.]+%' | head -25 >"$OUT/$LABEL.top.txt" || true
echo "== $LABEL: top symbols (self) =="
cat "$OUT/$LABEL.top.txt"
echo "== memmove/memcpy callers (share of all broker samples) =="
for sym in __memmove_avx512_unaligned_erms __memset_avx512_unaligned_erms; do
  perf report -i "$OUT/$LABEL.perf.data" --no-children --stdio --symbols="$sym" \
    -g caller,0.5,callee,function,percent --percent-limit 0.5 2>/dev/null \
    | grep -E -- '--[0-9.]+%--|^ +[0-9.]+%' | head -20 || true
done
