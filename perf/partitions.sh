#!/usr/bin/env bash
# Many partitions on one broker (issue 15 check 3, issue 20 item 5): creates one topic of
# PARTITIONS partitions on a fresh broker and reports the creation time (and rate), the
# broker's RSS and the disk used (du of the data directory, and the filesystem's free space
# going down) when the partitions are new, after one small record went to each, and after a
# restart (with the shutdown and start-up times); then, beside them, ACTIVE more partitions
# (a second topic) take 1 KiB records at ACTIVE_RATE msgs/s from `strata bench produce` for
# ACTIVE_DURATION, and the produce-ack distribution is reported (issue 20 target 5: 10,000
# partitions, 1,000 active at 100k msgs/s of 1 KiB, ack p99 <= 10 ms). RUNS fresh brokers one
# after the other; the
# report gives every run's figures and their min / median / max. Writes
# perf/results/<date>-partitions-<N>.md.
# du counts the blocks the data directory holds (fallocate'd ones included); the filesystem's
# free space is not used: the disk may be shared with other work.
#
# Usage: perf/partitions.sh [PARTITIONS]          [10000]
# Environment:
#   RUNS=3                         fresh brokers measured one after the other
#   STRATA=target/release/strata   binary [built with cargo build --release if missing]
#   SHARDS=1 BROKER_CPU=0          broker shards and the CPU list it is pinned to
#   STRATA_ARGS="..."              extra `strata serve` flags
#   ACTIVE=1000 ACTIVE_RATE=100k ACTIVE_DURATION=20s  the active phase (ACTIVE=0: skipped)
#   KEY_MODE=none                  the load tool's keys: none (sticky batches, as keyless Kafka
#                                  producers) or random (every batch of a request a different
#                                  partition: each carries a record or two)
#   BENCH_CPU=1                    the CPU the load tool is pinned to
#   RESULTS=perf/results           where the report goes
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

PARTITIONS=${1:-10000}
RUNS=${RUNS:-3}
STRATA=${STRATA:-target/release/strata}
SHARDS=${SHARDS:-1}
BROKER_CPU=${BROKER_CPU:-0}
STRATA_ARGS=${STRATA_ARGS:-}
ACTIVE=${ACTIVE:-1000}
ACTIVE_RATE=${ACTIVE_RATE:-100k}
ACTIVE_DURATION=${ACTIVE_DURATION:-20s}
KEY_MODE=${KEY_MODE:-none}
BENCH_CPU=${BENCH_CPU:-1}
DATE=$(date -u +%Y-%m-%d)
TMP=perf/tmp
RESULTS=${RESULTS:-perf/results}
OUT=$RESULTS/$DATE-partitions-$PARTITIONS.md
mkdir -p "$TMP" "$RESULTS"

log() { echo "[partitions.sh] $*" >&2; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

if [[ ! -x $STRATA ]]; then
  log "building $STRATA"
  cargo build --release
fi

DATA=""
BROKER_LOG=""
BROKER_PID=""
cleanup() {
  if [[ -n $BROKER_PID ]]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  if [[ -n $DATA ]]; then rm -rf "$DATA" "$BROKER_LOG" "$BROKER_LOG.prev"; fi
}
trap cleanup EXIT

# A fresh data directory and ports for each run.
new_broker() {
  cleanup
  DATA=$(mktemp -d -p "$TMP" partitions.XXXXXX)
  DATA=$(cd "$DATA" && pwd)
  PORT=$(free_port)
  ADMIN=$(free_port)
  BROKER_LOG=$DATA.log
  BROKER_PID=""
  SERVE=(taskset -c "$BROKER_CPU" "$STRATA" serve --shards "$SHARDS" --listen "127.0.0.1:$PORT"
    --admin-listen "127.0.0.1:$ADMIN" --data-dir "$DATA" $STRATA_ARGS)
}

start_broker() {
  [[ -s $BROKER_LOG ]] && cp "$BROKER_LOG" "$BROKER_LOG.prev"; : > "$BROKER_LOG"
  local t0; t0=$(now)
  RUST_LOG=warn,strata=info "${SERVE[@]}" 2>>"$BROKER_LOG" &
  BROKER_PID=$!
  for _ in $(seq 1 1200); do
    if grep -q "strata ready" "$BROKER_LOG"; then
      START_SECONDS=$(elapsed "$t0" "$(now)")
      return
    fi
    sleep 0.1
  done
  log "the broker did not start"; cat "$BROKER_LOG" >&2; exit 1
}
stop_broker() {
  local t0; t0=$(now)
  kill "$BROKER_PID"
  STOP_STATUS=0
  wait "$BROKER_PID" || STOP_STATUS=$?
  STOP_SECONDS=$(elapsed "$t0" "$(now)")
  BROKER_PID=""
}
rss_mb() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$BROKER_PID/status"; }
du_mb() { du -s -B1 "$DATA" | awk '{ printf "%.1f", $1 / 1048576 }'; }


COLUMNS=(CREATE_SECONDS RATE RSS_EMPTY RSS_NEW RSS_TOUCHED RSS_RESTARTED DU_EMPTY DU_NEW DU_TOUCHED
  DU_RESTARTED SHUTDOWN_SECONDS RESTART_SECONDS FINAL_STOP_SECONDS ACTIVE_MSGS RSS_ACTIVE ACK_P50
  ACK_P99 ACK_P999 ACK_MAX)
ROWS=()
for RUN in $(seq 1 "$RUNS"); do
  log "run $RUN of $RUNS"
  new_broker
  start_broker
  RSS_EMPTY=$(rss_mb); DU_EMPTY=$(du_mb)
  log "creating a topic of $PARTITIONS partitions"
  T0=$(now)
  "$STRATA" topic create perf --partitions "$PARTITIONS" --bootstrap-server "127.0.0.1:$PORT" >/dev/null
  T1=$(now)
  CREATE_SECONDS=$(elapsed "$T0" "$T1")
  RATE=$(python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]):.0f}')" "$PARTITIONS" "$CREATE_SECONDS")
  sleep 1
  RSS_NEW=$(rss_mb); DU_NEW=$(du_mb)

  log "one record to each partition"
  python3 - "$PORT" "$PARTITIONS" <<'EOF'
import sys
from confluent_kafka import Producer
port, partitions = sys.argv[1], int(sys.argv[2])
p = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "linger.ms": 50, "acks": "all"})
for i in range(partitions):
    p.produce("perf", value=b"x" * 100, partition=i)
    if i % 1000 == 999:
        p.poll(0)
left = p.flush(120)
assert left == 0, f"{left} records not delivered"
EOF
  sleep 1
  RSS_TOUCHED=$(rss_mb); DU_TOUCHED=$(du_mb)

  log "restarting"
  stop_broker
  SHUTDOWN_SECONDS=$STOP_SECONDS
  SHUTDOWN_STATUS=$STOP_STATUS
  grep -E "WARN|ERROR" "$BROKER_LOG" | tail -5 >&2 || true
  start_broker
  RESTART_SECONDS=$START_SECONDS
  sleep 1
  RSS_RESTARTED=$(rss_mb); DU_RESTARTED=$(du_mb)
  ACK_P50=0 ACK_P99=0 ACK_P999=0 ACK_MAX=0 ACTIVE_MSGS=0 RSS_ACTIVE=0
  if ((ACTIVE > 0)); then
    log "$ACTIVE more partitions at $ACTIVE_RATE msgs/s of 1 KiB for $ACTIVE_DURATION"
    REPORT=$DATA.active
    BENCH_CMD=(taskset -c "$BENCH_CPU" "$STRATA" bench produce --brokers "127.0.0.1:$PORT"
      --topic active --partitions "$ACTIVE" --record-size 1KiB --key-mode "$KEY_MODE"
      --rate "$ACTIVE_RATE" --duration "$ACTIVE_DURATION" --warmup 2s --cores 1
      --cpus "$BENCH_CPU" --report "$REPORT")
    "${BENCH_CMD[@]}" >"$REPORT.table" 2>&1 || { cat "$REPORT.table" >&2; exit 1; }
    RSS_ACTIVE=$(rss_mb)
    read -r ACK_P50 ACK_P99 ACK_P999 ACK_MAX ACTIVE_MSGS < <(python3 - "$REPORT/summary.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
a = d["ack_latency"]
print(*(a[k] / 1e3 for k in ("p50_us", "p99_us", "p999_us", "max_us")), d["produce"]["msgs_per_s"])
PY
)
    cp "$REPORT/ack.hgrm" "$TMP/partitions-active-ack-$RUN.hgrm"
    rm -rf "$REPORT" "$REPORT.table"
  fi
  stop_broker
  FINAL_STOP_SECONDS=$STOP_SECONDS
  [[ $SHUTDOWN_STATUS == 0 ]] || { log "run $RUN: the broker exited with $SHUTDOWN_STATUS"; exit 1; }
  row=""
  for c in "${COLUMNS[@]}"; do row+="${!c} "; done
  ROWS+=("$row")
done
SERVE_SHOWN="${SERVE[*]}"
BENCH_SHOWN="${BENCH_CMD[*]:-}"
FS=$(df -T "$DATA" | awk 'NR == 2 { print $2 " on " $1 }')
cleanup
DATA=""

# | run | figures... | rows, then min / median / max of each column.
TABLE=$(printf '%s\n' "${ROWS[@]}" | python3 -c '
import statistics, sys
rows = [[float(x) for x in line.split()] for line in sys.stdin if line.strip()]
def fmt(v):
    return f"{v:.0f}" if v >= 1000 else f"{v:.2f}" if v < 10 else f"{v:.1f}"
for i, row in enumerate(rows, 1):
    print(f"| {i} | " + " | ".join(fmt(v) for v in row) + " |")
for name, f in (("min", min), ("median", statistics.median), ("max", max)):
    print(f"| {name} | " + " | ".join(fmt(f(col)) for col in zip(*rows)) + " |")
')

CPU_MODEL=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
CPUS=$(nproc)
MEM=$(free -g | awk '/Mem:/ { print $2 " GiB" }')
COMMIT=$(git rev-parse --short HEAD)
BINARY=$([[ $STRATA == */debug/* ]] && echo "a debug build" || echo "a release build")
cat > "$OUT" <<EOF
# $PARTITIONS partitions on one broker ($DATE, commit $COMMIT)

Command: \`perf/partitions.sh $PARTITIONS\` with RUNS=$RUNS, SHARDS=$SHARDS, the broker
($BINARY) pinned to CPU $BROKER_CPU, each run on a fresh data directory in perf/tmp:
\`$SERVE_SHOWN\`.
Each run: one topic of $PARTITIONS partitions, created with \`strata topic create --partitions
$PARTITIONS\` (one CreateTopics request, answered once every partition log is open); then one
100-byte record to each partition (confluent-kafka, acks=all); then a clean restart.

Hardware: $CPU_MODEL, $CPUS vCPUs, $MEM RAM; data directory on $FS (a shared VM: figures vary
between runs).

Columns: creation time (s) and rate (partitions/s); broker RSS (MB) of the empty broker
(internal topics only), with the $PARTITIONS new partitions, after one record to each, after a
clean restart; disk used (MiB, \`du\` of the data directory, preallocated blocks included) at
the same four points; clean shutdown (SIGTERM to exit, s) after one record to each; start-up
with the $PARTITIONS partitions (s to the ready line); shutdown after the restart (s).
Then, after the restart, $ACTIVE more partitions (topic \`active\`) take 1 KiB records at
$ACTIVE_RATE msgs/s for $ACTIVE_DURATION (keys: $KEY_MODE; fdatasync before every ack):
\`$BENCH_SHOWN\`; columns: msgs/s reached, broker RSS (MB) after it, produce-ack p50 / p99 /
p99.9 / max (ms, from the intended send time: coordinated omission corrected). Each run's ack
distribution is left in perf/tmp/partitions-active-ack-<run>.hgrm.
Issue 15's target: 10,000 idle partitions on one broker under 1 GiB of disk and under 100 MB
of RSS. Issue 20's target 5: partition creation >= 2,000/s; 1,000 partitions active at 100k
msgs/s of 1 KiB beside the others with ack p99 <= 10 ms.

| run | create s | partitions/s | RSS empty | RSS new | RSS written | RSS restarted | du empty | du new | du written | du restarted | shutdown s | start-up s | 2nd shutdown s | active msgs/s | RSS active | ack p50 | ack p99 | ack p99.9 | ack max |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
$TABLE
EOF
log "wrote $OUT"
cat "$OUT"
