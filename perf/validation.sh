#!/usr/bin/env bash
# The cost of leader-side record validation (issue 15 check 5) and of compressed produce
# (issue 20 item 7): max-rate produce, side by side, one broker binary without validation
# (BASE) and one with it (NEW), alternating runs in one invocation so both see the same
# machine. Writes perf/results/<date>-validation.md (+ one raw report directory per run).
#
# Usage: perf/validation.sh BASE_BIN NEW_BIN
# Environment:
#   ROUNDS=3             alternations per scenario (BASE, NEW, BASE, NEW, ...)
#   DURATION=20s WARMUP=3s
#   SCENARIOS="100b 1kb 1kb-lz4 1kb-zstd"
#   BROKER_CPU=0 BENCH_CPU=1
#   NAME=validation      results go to $RESULTS/<date>-$NAME(.md)
#   RESULTS=perf/results
#   STRATA_ARGS=...      extra `strata serve` flags (run.sh's: 256 MiB segments, 1 GiB retention
#                        per partition checked every second, so a run does not fill the disk)
# Scenarios: the shipped max-rate workloads (16 partitions, 2 producers, acks=1, fdatasync
# before every ack); `1kb-lz4` / `1kb-zstd` are the 1 KiB one with the producer compressing.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

BASE=${1:?usage: perf/validation.sh BASE_BIN NEW_BIN}
NEW=${2:?usage: perf/validation.sh BASE_BIN NEW_BIN}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
SCENARIOS=${SCENARIOS:-"100b 1kb 1kb-lz4 1kb-zstd"}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
STRATA_ARGS=${STRATA_ARGS:---segment-bytes 268435456 --retention-bytes 1073741824 --retention-check-ms 1000}
DATE=$(date -u +%Y-%m-%d)
TMP=perf/tmp
OUT=${RESULTS:-perf/results}/$DATE-${NAME:-validation}
mkdir -p "$TMP" "$OUT"

log() { echo "[validation.sh] $*" >&2; }



workload() {
  case $1 in
    100b) echo "perf/workloads/max-rate-1t-16p-100b.yaml" ;;
    1kb*) echo "perf/workloads/max-rate-1t-16p-1kb.toml" ;;
  esac
}

compression() {
  case $1 in
    *-lz4) echo lz4 ;;
    *-zstd) echo zstd ;;
    *) echo none ;;
  esac
}

trap stop_broker EXIT

# run BIN LABEL SCENARIO ROUND: one broker, one bench run; the report goes to $OUT/<...>.
run() {
  local bin=$1 label=$2 scenario=$3 round=$4 port data report cmd
  port=$(free_port)
  data=$TMP/validation-data
  rm -rf "$data"
  report=$OUT/$scenario-$label-$round
  rm -rf "$report"
  BROKER_CMD="taskset -c $BROKER_CPU $bin serve --listen 127.0.0.1:$port --data-dir $data --shards 1 --admin-listen 127.0.0.1:0 $STRATA_ARGS"
  $BROKER_CMD >"$TMP/validation-broker.log" 2>&1 &
  BROKER_PID=$!
  wait_listening "$port" || true
  cmd="taskset -c $BENCH_CPU $NEW bench produce --workload $(workload "$scenario") --brokers 127.0.0.1:$port --cores 1 --cpus $BENCH_CPU --compression $(compression "$scenario") --duration $DURATION --warmup $WARMUP --report $report"
  log "$scenario $label #$round: $cmd"
  # The broker's CPU time over the run: per message, the figure this shared VM's load moves least.
  perf stat -e task-clock -p "$BROKER_PID" -o "$report.stat" &
  local stat=$!
  $cmd >"$report.table" 2>/dev/null
  kill -INT "$stat"
  wait "$stat" || true
  echo "$cmd" >"$report.command"
  echo "$BROKER_CMD" >"$report.broker"
  stop_broker
  rm -rf "$data"
}

for scenario in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    run "$BASE" base "$scenario" "$round"
    run "$NEW" new "$scenario" "$round"
  done
done

python3 - "$OUT" "$SCENARIOS" "$ROUNDS" "$BASE" "$NEW" >"$OUT.md" <<'PY'
import json, os, re, statistics, subprocess, sys
out, scenarios, rounds, base, new = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def summary(s, label, r):
    return json.load(open(f"{out}/{s}-{label}-{r}/summary.json"))
def cpu_ns(s, label, r):
    """Broker CPU time per produced message (ns), from `perf stat -e task-clock`."""
    text = open(f"{out}/{s}-{label}-{r}.stat").read()
    ms = float(re.search(r"([\d.]+) msec task-clock", text).group(1))
    return ms * 1e6 / max(summary(s, label, r)["produced_total"], 1)
def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
print(f"# Record validation: produce throughput side by side, {os.path.basename(out)[:10]}\n")
print("BASE = broker without leader-side record validation, NEW = with it (every record walked, "
      "compressed batches decompressed while walked). Alternating runs in one invocation: "
      + ", ".join(f"BASE #{r}, NEW #{r}" for r in range(1, rounds + 1)) + " per scenario.\n")
print(f"- BASE binary: `{base}`\n- NEW binary: `{new}`")
if os.path.realpath(base) == os.path.realpath(new):
    print("\nBASE and NEW are the same binary here: the rows compare the scenarios with each other "
          "(e.g. compressed against uncompressed produce), and the two columns show the spread.")
MODEL = sh("lscpu | sed -n 's/^Model name: *//p'")
print(f"- CPU: {MODEL}, {sh('nproc')} CPUs; broker pinned to CPU 0 "
      f"(`--shards 1`), `strata bench` pinned to CPU 1; kernel {sh('uname -r')}")
print(f"- load average at the end: {sh('cat /proc/loadavg')} (other sessions share this VM: see the spread)\n")
print("Broker CPU is `perf stat -e task-clock` on the broker over the load tool's run (warm-up "
      "included) divided by the records it acknowledged: it moves less with the machine's load "
      "than msgs/s, and with compression it shows the broker's cost while the load tool, "
      "compressing on one core, sets the rate.\n")
print("| scenario | BASE msgs/s (runs) | NEW msgs/s (runs) | NEW/BASE (medians) | BASE MB/s | NEW MB/s | broker CPU ns/msg BASE / NEW (medians) | ack p50 / p99 / max ms BASE | NEW |")
print("|---|---|---|---|---|---|---|---|---|")
for s in scenarios:
    rows = {}
    for label in ("base", "new"):
        runs = [summary(s, label, r) for r in range(1, rounds + 1)]
        rows[label] = runs
    med = {l: statistics.median(x["produce"]["msgs_per_s"] for x in rows[l]) for l in rows}
    mb = {l: statistics.median(x["produce"]["mb_per_s"] for x in rows[l]) for l in rows}
    def lat(l):
        x = sorted(rows[l], key=lambda x: x["produce"]["msgs_per_s"])[len(rows[l]) // 2]["ack_latency"]
        return f"{x['p50_us']/1000:.1f} / {x['p99_us']/1000:.1f} / {x['max_us']/1000:.1f}"
    runs = {l: ", ".join(f"{x['produce']['msgs_per_s']/1e3:.0f}k" for x in rows[l]) for l in rows}
    cpu = {l: statistics.median(cpu_ns(s, l, r) for r in range(1, rounds + 1)) for l in rows}
    print(f"| `{s}` | {med['base']/1e3:.0f}k ({runs['base']}) | {med['new']/1e3:.0f}k ({runs['new']}) | "
          f"**{med['new']/med['base']*100:.1f}%** | {mb['base']:.1f} | {mb['new']:.1f} | "
          f"{cpu['base']:.0f} / {cpu['new']:.0f} | {lat('base')} | {lat('new')} |")
print("\nErrors reported by the load tool (records whose produce failed): "
      + ", ".join(f"{s}: {sum(summary(s, l, r)['produce']['errors'] for l in ('base','new') for r in range(1, rounds + 1))}" for s in scenarios) + ".\n")
print("## Commands\n")
for s in scenarios:
    print(f"- `{s}`: broker `{open(f'{out}/{s}-new-1.broker').read().strip()}`; "
          f"load tool `{open(f'{out}/{s}-new-1.command').read().strip()}`")
print("\n## Full latency distributions (median run of each)\n")
for s in scenarios:
    for label in ("base", "new"):
        runs = sorted(range(1, rounds + 1), key=lambda r: summary(s, label, r)["produce"]["msgs_per_s"])
        r = runs[len(runs) // 2]
        print(f"### {s}, {label.upper()} run #{r}: ack latency (values in ms)\n")
        print("```\n" + open(f"{out}/{s}-{label}-{r}/ack.hgrm").read().rstrip() + "\n```\n")
print(f"Raw reports of every run: `{out}/` (summary.json, ack.hgrm, report.html per run).")
PY
log "wrote $OUT.md"
