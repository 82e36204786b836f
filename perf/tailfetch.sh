#!/usr/bin/env bash
# Tail-reading consumers (issue 20 target 3): `bench e2e` produces 1 KiB records to 16
# partitions at a fixed rate while consumers read the tail, two broker binaries side by side
# (A = before, B = after), alternating in one invocation so both see the same machine.
# Prints, per run: e2e p50/p99/p99.9/max, consumed MB/s and the broker's CPU time per message
# (`perf stat -e task-clock` on the broker over the run / records consumed; the same records
# are also produced, so this is the whole broker's cost of one message in and out).
# Usage: perf/tailfetch.sh A_BIN B_BIN   Environment: ROUNDS=2, RATE=150k, PARTITIONS=16,
# DURATION=10s, BROKER_CPU=0 BENCH_CPU=1. A_BIN may be a wrapper script that `exec`s the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

A=${1:?usage: perf/tailfetch.sh A_BIN B_BIN}
B=${2:?usage: perf/tailfetch.sh A_BIN B_BIN}
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-150k}
PARTITIONS=${PARTITIONS:-16}
DURATION=${DURATION:-10s}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
OUT=perf/tmp/tailfetch
DATA=perf/tmp/tailfetch-data
mkdir -p "$OUT"
trap stop_broker EXIT

run() {
  local bin=$1 label=$2 port report=$OUT/$2
  port=$(free_port)
  rm -rf "$DATA" "$report"
  taskset -c "$BROKER_CPU" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$DATA" \
    --shards 1 --admin-listen 127.0.0.1:0 --flush-ms 1000 >"$OUT/broker-$label.log" 2>&1 &
  BROKER_PID=$!
  wait_listening "$port" || true
  perf stat -e task-clock -p "$BROKER_PID" -o "$report.stat" &
  local stat=$!
  taskset -c "$BENCH_CPU" "$B" bench e2e --brokers "127.0.0.1:$port" --cores 1 \
    --cpus "$BENCH_CPU" --topic "tail-${PARTITIONS}p-1kb" --partitions "$PARTITIONS" \
    --record-size 1KiB \
    --producers 1 --consumers 1 --rate "$RATE" --duration "$DURATION" --warmup 2s \
    --report "$report" >"$report.out" 2>&1 || true
  kill -INT "$stat"; wait "$stat" || true
  stop_broker
  rm -rf "$DATA"
  python3 - "$report" "$label" "$(uptime | sed 's/.*load average: //')" <<'PY'
import json, re, sys
report, label, load = sys.argv[1:4]
d = json.load(open(report + "/summary.json"))
ms = float(re.search(r"([\d.]+) msec task-clock", open(report + ".stat").read()).group(1))
n = max(d["consumed_total"], 1)
e = d["e2e_latency"]
dist = "/".join(f"{e[k] / 1e3:.2f}" for k in ("p50_us", "p99_us", "p999_us", "max_us"))
print(f"{label}: consumed {d['consumed_total']} ({d['consume']['mb_per_s']:.0f} MB/s), "
      f"broker CPU {ms * 1e6 / n:.0f} ns/msg ({ms / 1e3:.2f} s), e2e p50/p99/p99.9/max "
      f"{dist} ms (load {load})")
PY
}

for round in $(seq "$ROUNDS"); do
  run "$A" "A$round"
  run "$B" "B$round"
done
