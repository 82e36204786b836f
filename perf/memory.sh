#!/usr/bin/env bash
# Issue 20 target 4: the broker's RSS under sustained load against the memory it is configured
# to use. Runs the 100-partition workload (perf/workloads/fixed-1t-100p-1kb.yaml: 100k msgs/s
# of 1 KiB) against a fresh broker once per configuration below, samples the broker's VmRSS
# every 0.5 s, and writes perf/results/<date>-memory.md with the peak, the median of the last
# half, and the configured bound (tail caches + request memory budget) beside it.
#
# Usage: perf/memory.sh [STRATA_BIN]       [target/release/strata]
# Environment: DURATION=30s BROKER_CPU=0 BENCH_CPU=1 RESULTS=perf/results (where the .md goes)
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

STRATA=${1:-target/release/strata}
DURATION=${DURATION:-30s}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
TMP=perf/tmp/memory
OUT=${RESULTS:-perf/results}/$(date -u +%Y-%m-%d)-memory.md
mkdir -p "$TMP" "$(dirname "$OUT")"
trap stop_broker EXIT

MIB=$((1 << 20))
BUDGET=$((256 * MIB)) # queued_max_request_bytes in every run: the default (a quarter of the
                      # machine's memory) would make any bound meaningless on a big machine
# name | extra serve flags | tail cache bound in bytes (min(100 partitions x per-partition cap,
# the broker-wide cap))
CONFIGS=(
  "per-partition caches only (8 MiB each, broker-wide cap 1 GiB)||$((100 * 8 * MIB))"
  "broker-wide cap 256 MiB|--tail-cache-max-bytes $((256 * MIB))|$((256 * MIB))"
  "broker-wide cap 64 MiB|--tail-cache-max-bytes $((64 * MIB))|$((64 * MIB))"
)

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

{
  echo "# Broker RSS under load against its configured memory (issue 20, target 4)"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(free -g | awk '/Mem:/ {print $2}') GiB;" \
    "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- Binary: \`$STRATA\` ($(git rev-parse --short HEAD)); command: \`perf/memory.sh $*\`"
  echo "- Workload: perf/workloads/fixed-1t-100p-1kb.yaml for $DURATION; broker on CPU $BROKER_CPU" \
    "(\`--shards 1 --queued-max-request-bytes $BUDGET\`), bench on CPU $BENCH_CPU"
  echo
  echo "| configuration | RSS at rest | peak RSS | median RSS (last half) | bound: tail caches + request budget | peak / bound |"
  echo "|---|---|---|---|---|---|"
} >"$OUT"

for config in "${CONFIGS[@]}"; do
  IFS='|' read -r name flags cache_bound <<<"$config"
  port=$(free_port)
  data=$TMP/data
  rm -rf "$data"
  # shellcheck disable=SC2086
  taskset -c "$BROKER_CPU" "$STRATA" serve --listen "127.0.0.1:$port" --data-dir "$data" \
    --shards 1 --queued-max-request-bytes "$BUDGET" $flags >"$TMP/broker.log" 2>&1 &
  BROKER_PID=$!
  wait_listening "$port" || true
  rest=$(rss_kib "$BROKER_PID")
  taskset -c "$BENCH_CPU" "$STRATA" bench e2e --workload perf/workloads/fixed-1t-100p-1kb.yaml \
    --brokers "127.0.0.1:$port" --duration "$DURATION" --warmup 2s --cores 1 --cpus "$BENCH_CPU" \
    --report "$TMP/report" >"$TMP/bench.log" 2>&1 &
  bench=$!
  : >"$TMP/samples"
  while kill -0 "$bench" 2>/dev/null; do
    rss_kib "$BROKER_PID" >>"$TMP/samples"
    sleep 0.5
  done
  wait "$bench" || echo "bench failed: see $TMP/bench.log" >&2
  stop_broker
  rm -rf "$data"
  read -r peak median < <(python3 -c 'import sys
v = [int(x) for x in open(sys.argv[1]) if x.strip() and int(x) > 0]
half = sorted(v[len(v) // 2:])
print(max(v), half[len(half) // 2])' "$TMP/samples")
  bound=$((cache_bound + BUDGET))
  python3 -c 'import sys
name, rest, peak, median, bound = sys.argv[1], *map(int, sys.argv[2:])
mib = lambda kib: f"{kib / 1024:.0f} MiB"
print(f"| {name} | {mib(rest)} | {mib(peak)} | {mib(median)} | {bound / 2**20:.0f} MiB | {peak * 1024 / bound:.2f} |")' \
    "$name" "$rest" "$peak" "$median" "$bound" >>"$OUT"
done
echo >>"$OUT"
echo "Bench tables of the last run: $TMP/bench.log" >>"$OUT"
cat "$OUT"
