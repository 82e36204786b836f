#!/usr/bin/env bash
# Replicated writes (issue 20 target 8): three brokers on this machine, `acks=all`.
#   - e2e: 100k msgs/s of 100 B over 16 partitions, RF 3: ack and end-to-end latency;
#   - max: max-rate 1 KiB produce over 16 partitions, RF 3 and RF 1 on the same cluster: the
#     RF 3 / RF 1 throughput ratio.
# Side by side: BASE_BIN and NEW_BIN alternate (a fresh cluster per run) in one invocation, so
# both see the same machine. Writes perf/results/<date>-replicated.md (+ raw report dirs).
#
# Usage: perf/replicated.sh BASE_BIN NEW_BIN      (the same binary twice: one build's figures)
# Environment:
#   ROUNDS=2 DURATION=20s WARMUP=3s
#   SCENARIOS="e2e max"
#   BROKER_CPU=0 BENCH_CPU=1   (the three brokers share BROKER_CPU, `--shards 1` each)
#   RESULTS=perf/results       where the report goes
#   STRATA_ARGS=...      extra `strata serve` flags (default: 32 MiB segments, 128 MiB retention
#                        per partition checked every second, so a max-rate run cannot fill the disk)
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

BASE=${1:?usage: perf/replicated.sh BASE_BIN NEW_BIN}
NEW=${2:?usage: perf/replicated.sh BASE_BIN NEW_BIN}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
SCENARIOS=${SCENARIOS:-"e2e max"}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
STRATA_ARGS=${STRATA_ARGS:---segment-bytes 33554432 --retention-bytes 134217728 --retention-check-ms 1000}
DATE=$(date -u +%Y-%m-%d)
TMP=perf/tmp
OUT=${RESULTS:-perf/results}/$DATE-replicated
mkdir -p "$TMP" "$OUT"

log() { echo "[replicated.sh] $*" >&2; }

PIDS=()
stop_cluster() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'block_trace_kill; stop_cluster; rm -rf "$TMP"/replicated-data-*' EXIT

# start_cluster BIN: three brokers on BROKER_CPU; sets BOOTSTRAP and BROKER_CMDS.
start_cluster() {
  local bin=$1 i ports=() cports=() voters="" secret
  secret=$(python3 -c 'import os; print(os.urandom(16).hex())')
  for i in 1 2 3; do ports+=("$(free_port)"); cports+=("$(free_port)"); done
  for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:${cports[$((i - 1))]}"; done
  BROKER_CMDS=""
  for i in 1 2 3; do
    local data=$TMP/replicated-data-$i cmd
    rm -rf "$data"
    cmd="taskset -c $BROKER_CPU $bin serve --listen 127.0.0.1:${ports[$((i - 1))]} --data-dir $data --shards 1 --admin-listen 127.0.0.1:0 --node-id $i --controller-listen 127.0.0.1:${cports[$((i - 1))]} --controller-voters $voters --cluster-secret <secret> $STRATA_ARGS"
    BROKER_CMDS+="$cmd"$'\n'
    ${cmd/<secret>/$secret} >"$TMP/replicated-broker-$i.log" 2>&1 &
    PIDS+=($!)
  done
  BOOTSTRAP=127.0.0.1:${ports[0]}
  for _ in $(seq 600); do
    if "$bin" cluster info --bootstrap-server "$BOOTSTRAP" --output json 2>/dev/null |
      python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if sum(b["alive"] for b in d["brokers"]) == 3 else 1)' 2>/dev/null; then
      return
    fi
    sleep 0.1
  done
  log "the cluster did not come up"; exit 1
}

# create BIN TOPIC RF: the topic, then wait until every replica is in sync.
create() {
  local bin=$1 topic=$2 rf=$3
  "$bin" topic create "$topic" --bootstrap-server "$BOOTSTRAP" --partitions 16 --replication-factor "$rf" >/dev/null
  for _ in $(seq 600); do
    if "$bin" cluster info --bootstrap-server "$BOOTSTRAP" --output json 2>/dev/null |
      python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if not d["under_replicated_partitions"] else 1)' 2>/dev/null; then
      return
    fi
    sleep 0.1
  done
  log "$topic did not get in sync"; exit 1
}

# bench LABEL REPORT ARGS...: one load run, its command and the brokers' kept beside the report.
bench() {
  local report=$1; shift
  rm -rf "$report"
  local cmd="taskset -c $BENCH_CPU $NEW bench $* --brokers $BOOTSTRAP --acks all --partitions 16 --cores 1 --cpus $BENCH_CPU --duration $DURATION --warmup $WARMUP --report $report"
  log "$cmd"
  # A run with errors still writes its report (the errors are counted in it).
  $cmd >"$report.table" 2>/dev/null || log "the load tool reported failures: see $report.table"
  echo "$cmd" >"$report.command"
  echo "$BROKER_CMDS" >"$report.broker"
}

run() {
  local bin=$1 label=$2 scenario=$3 round=$4
  start_cluster "$bin"
  case $scenario in
    e2e)
      create "$bin" rf3 3
      # The disk's own pauses during the run (perf/devpause.py): what of the tail it set.
      block_trace_start
      bench "$OUT/e2e-$label-$round" e2e --topic rf3 --record-size 100 --rate 100k
      block_trace_stop "$OUT/e2e-$label-$round.devpause.json" "$TMP" "$OUT/e2e-$label-$round"
      ;;
    max)
      create "$bin" rf3 3
      create "$bin" rf1 1
      bench "$OUT/max-rf3-$label-$round" produce --topic rf3 --record-size 1024 --producers 2
      bench "$OUT/max-rf1-$label-$round" produce --topic rf1 --record-size 1024 --producers 2
      ;;
  esac
  stop_cluster
  rm -rf "$TMP"/replicated-data-*
}

for scenario in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    run "$BASE" base "$scenario" "$round"
    run "$NEW" new "$scenario" "$round"
  done
done

python3 - "$OUT" "$SCENARIOS" "$ROUNDS" "$BASE" "$NEW" >"$OUT.md" <<'PY'
import json, os, statistics, subprocess, sys
out, scenarios, rounds, base, new = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def summary(name):
    return json.load(open(f"{out}/{name}/summary.json"))
def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
def ms(x, key):
    return f"{x[key] / 1000:.2f}"
def dist(x):
    return " / ".join(ms(x, k) for k in ("p50_us", "p99_us", "p999_us", "p9999_us", "max_us"))
def pauses(name):
    """The disk's pauses during a run: count, share of the time, longest (none: not traced)."""
    try:
        d = json.load(open(f"{out}/{name}.devpause.json"))
    except (OSError, ValueError):
        return "not traced"
    if not d.get("requests"):
        return "no block requests traced"
    return (f"{d['pauses']} ({100 * d['pause_share']:.1f}% of the time, longest "
            f"{d['longest_pause_ms']:.1f} ms)")
print(f"# Replicated writes, three brokers, acks=all: {os.path.basename(out)[:10]}\n")
print("BASE and NEW alternate, a fresh three-broker cluster per run, in one invocation: "
      + ", ".join(f"BASE #{r}, NEW #{r}" for r in range(1, rounds + 1)) + " per scenario.\n")
print(f"- BASE binary: `{base}`\n- NEW binary: `{new}`")
model = sh("lscpu | sed -n 's/^Model name: *//p'")
print(f"- CPU: {model}, {sh('nproc')} CPUs; the three brokers pinned to CPU 0 (`--shards 1` "
      f"each), `strata bench` pinned to CPU 1; kernel {sh('uname -r')}; fdatasync before every ack")
print(f"- load average at the end: {sh('cat /proc/loadavg')}\n")
if "e2e" in scenarios:
    print("## 100k msgs/s of 100 B, 16 partitions, RF 3: latency in ms "
          "(p50 / p99 / p99.9 / p99.99 / max)\n")
    print("| binary | run | msgs/s | ack | end to end | the disk's pauses (perf/devpause.py) |")
    print("|---|---|---|---|---|---|")
    for label in ("base", "new"):
        for r in range(1, rounds + 1):
            x = summary(f"e2e-{label}-{r}")
            print(f"| {label.upper()} | {r} | {x['produce']['msgs_per_s']:.0f} | "
                  f"{dist(x['ack_latency'])} | {dist(x['e2e_latency'])} | "
                  f"{pauses(f'e2e-{label}-{r}')} |")
    print()
if "max" in scenarios:
    print("## Max-rate 1 KiB produce, 16 partitions, 2 producers: RF 3 against RF 1 "
          "on the same cluster\n")
    print("| binary | RF 3 MB/s (runs) | RF 1 MB/s (runs) | RF 3 / RF 1 (medians) | RF 3 ack p50 / p99 / p99.9 / p99.99 / max ms |")
    print("|---|---|---|---|---|")
    for label in ("base", "new"):
        mb = {rf: [summary(f"max-{rf}-{label}-{r}")["produce"]["mb_per_s"] for r in range(1, rounds + 1)]
              for rf in ("rf3", "rf1")}
        med = {rf: statistics.median(v) for rf, v in mb.items()}
        runs = sorted(range(1, rounds + 1), key=lambda r: mb["rf3"][r - 1])
        lat = dist(summary(f"max-rf3-{label}-{runs[len(runs) // 2]}")["ack_latency"])
        print(f"| {label.upper()} | {med['rf3']:.0f} ({', '.join(f'{v:.0f}' for v in mb['rf3'])}) | "
              f"{med['rf1']:.0f} ({', '.join(f'{v:.0f}' for v in mb['rf1'])}) | "
              f"**{med['rf3'] / med['rf1']:.2f}** | {lat} |")
    print()
print("Errors reported by the load tool: " + ", ".join(
    f"{n}: {summary(n)['produce']['errors']}" for n in sorted(os.listdir(out))
    if os.path.isdir(f"{out}/{n}")) + ".\n")
print("## Commands\n")
first = sorted(n for n in os.listdir(out) if n.endswith(".command"))
for n in first:
    print(f"- `{n[:-8]}`: `{open(f'{out}/{n}').read().strip()}`")
b = next(n for n in sorted(os.listdir(out)) if n.endswith(".broker"))
print("\nBrokers (one run's; the cluster secret elided):\n\n```\n" + open(f"{out}/{b}").read().strip() + "\n```\n")
print(f"Raw reports of every run (summary.json, ack.hgrm, e2e.hgrm, report.html): `{out}/`.")
PY
log "wrote $OUT.md"
