#!/usr/bin/env bash
# Issue 20 target 6: what a produce costs when its partition lives on another shard than the
# connection that carries it (the request is forwarded over the shard mesh and the reply comes
# back the same way).
#
# One broker with `--shards 2`, both shards pinned to BROKER_CPU, so that the broker's CPU time
# is one core's and `perf stat -e task-clock` on the broker measures it while the load tool runs
# alone on BENCH_CPU. (With one shard per core the hop also costs a cross-core wake-up instead of
# a context switch; on 2 CPUs the load tool would then share a core with a shard.) A topic of
# one partition, one producer connection at a fixed rate of 100-byte records, acks=1, fdatasync
# before every ack. The kernel's SO_REUSEPORT hash decides which shard accepts the connection:
# the script reads it from the broker's metrics (`strata_connections` per shard) and the
# partition's shard (`strata_partition_messages_in`'s shard label), and starts fresh brokers until
# it has ROUNDS runs of each kind:
#   local    the connection's shard owns the partition
#   remote   the other shard owns it: every produce request hops there and back
# and, as a reference, ROUNDS runs of `--shards 1` (no mesh at all).
#
# Usage: perf/crosscore.sh [STRATA_BIN]   (default target/release/strata)
# Environment: ROUNDS=3 RATE=200k DURATION=10s WARMUP=2s BROKER_CPU=0 BENCH_CPU=1
#   TRIES=20 (brokers started at most, to find both kinds)  RESULTS=perf/results (where to write)
# Broker CPU is reported per record and per produce request (requests counted from the broker's
# `strata_request_latency_seconds_count{api="Produce"}`): the hop is paid per request.
# Writes perf/results/<date>-crosscore.md and the raw reports under perf/results/<date>-crosscore/.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

BIN=${1:-target/release/strata}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-200k}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
TRIES=${TRIES:-20}
DATE=$(date -u +%Y-%m-%d)
OUT=${RESULTS:-perf/results}/$DATE-crosscore
DATA=perf/tmp/crosscore-data
mkdir -p "$OUT" perf/tmp
rm -f "$OUT"/*.line
trap stop_broker EXIT

log() { echo "[crosscore.sh] $*" >&2; }

# start SHARDS: a fresh broker; sets PORT, ADMIN, BROKER_PID.
start() {
  PORT=$(free_port)
  ADMIN=$(free_port)
  rm -rf "$DATA"
  BROKER_CMD="$BIN serve --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN --data-dir $DATA --shards $1 --cpus $BROKER_CPU"
  # shellcheck disable=SC2086
  taskset -c "$BROKER_CPU" $BROKER_CMD >perf/tmp/crosscore-broker.log 2>&1 &
  BROKER_PID=$!
  wait_listening "$PORT" && return
  echo "broker did not start: perf/tmp/crosscore-broker.log" >&2
  exit 1
}

# The kind of the run going on: local, remote, or "" when it cannot be told (the producer's
# connection is not the only one open).
kind() {
  curl -s "http://127.0.0.1:$ADMIN/metrics" | python3 -c '
import re, sys
text = sys.stdin.read()
conns = {m[0]: int(float(m[1])) for m in re.findall(r"^strata_connections\{shard=\"(\d+)\"\} (\S+)", text, re.M)}
owner = re.search(r"^strata_partition_messages_in(?:_total)?\{[^}]*topic=\"crosscore\"[^}]*\}", text, re.M)
owner = re.search(r"shard=\"(\d+)\"", owner.group(0)).group(1) if owner else None
busy = [s for s, n in conns.items() if n > 0]
print("" if owner is None or len(busy) != 1 or conns[busy[0]] != 1 else
      ("local" if busy[0] == owner else "remote"))'
}

# run SHARDS LABEL N: one broker, one bench run; LABEL "" = tell the kind from the metrics.
run() {
  local shards=$1 label=$2 n=$3 report=$OUT/run-$3 stat kind_now=""
  rm -rf "$report"
  start "$shards"
  perf stat -e task-clock -p "$BROKER_PID" -o "$report.stat" &
  stat=$!
  local cmd="taskset -c $BENCH_CPU $BIN bench produce --brokers 127.0.0.1:$PORT --topic crosscore --partitions 1 --producers 1 --record-size 100 --rate $RATE --acks 1 --linger 1ms --duration $DURATION --warmup $WARMUP --cores 1 --cpus $BENCH_CPU --report $report"
  $cmd >"$report.table" 2>&1 &
  local bench=$!
  # Halfway through the measured window, every connection but the producer's is closed.
  sleep "$(python3 -c "import re,sys; f=lambda s: float(re.sub('s$','',s)); print(f('$WARMUP') + f('$DURATION') / 2)")"
  [[ -n $label ]] || kind_now=$(kind)
  wait "$bench"
  kill -INT "$stat"
  wait "$stat" || true
  # Produce requests the broker answered (on the shard that read them), for the cost per request.
  curl -s "http://127.0.0.1:$ADMIN/metrics" | python3 -c '
import re, sys
print(sum(int(float(v)) for v in re.findall(
    r"^strata_request_latency_seconds_count\{[^}]*api=\"Produce\"[^}]*\} (\S+)", sys.stdin.read(), re.M)))' \
    >"$report.requests"
  stop_broker
  echo "$cmd" >"$report.command"
  echo "taskset -c $BROKER_CPU $BROKER_CMD" >"$report.broker"
  echo "${label:-$kind_now}" >"$report.kind"
  log "run $n: shards $shards, ${label:-$kind_now}"
}

n=0
for _ in $(seq "$ROUNDS"); do
  n=$((n + 1))
  run 1 one-shard "$n"
done
locals=0 remotes=0
for _ in $(seq "$TRIES"); do
  if ((locals >= ROUNDS && remotes >= ROUNDS)); then break; fi
  n=$((n + 1))
  run 2 "" "$n"
  case $(cat "$OUT/run-$n.kind") in
    local) locals=$((locals + 1)) ;;
    remote) remotes=$((remotes + 1)) ;;
  esac
done
rm -rf "$DATA"

python3 - "$OUT" "$n" "$RATE" >"$OUT.md" <<'PY'
import json, os, re, statistics, subprocess, sys
out, n, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
runs = {}
for i in range(1, n + 1):
    kind = open(f"{out}/run-{i}.kind").read().strip()
    if not kind:
        continue
    d = json.load(open(f"{out}/run-{i}/summary.json"))
    ms = float(re.search(r"([\d.]+) msec task-clock", open(f"{out}/run-{i}.stat").read()).group(1))
    d["cpu_ns"] = ms * 1e6 / max(d["produced_total"], 1)
    d["requests"] = int(open(f"{out}/run-{i}.requests").read().strip() or 0)
    d["cpu_us_per_request"] = ms * 1e3 / max(d["requests"], 1)
    d["run"] = i
    runs.setdefault(kind, []).append(d)
print(f"# Cross-shard produce cost (issue 20 target 6), {os.path.basename(out)[:10]}\n")
print(f"- binary: `{open(f'{out}/run-1.command').read().split()[3]}` (the work tree's HEAD: "
      f"`{sh('git rev-parse --short HEAD')}`; the binary may be another commit's)")
MODEL = sh("lscpu | sed -n 's/^Model name: *//p'")
print(f"- CPU: {MODEL}, {sh('nproc')} CPUs, kernel "
      f"{sh('uname -r')}; load average at the end: {sh('cat /proc/loadavg')}")
print(f"- one partition, one producer connection, {rate} msgs/s of 100 B, acks=1, fdatasync "
      "before every ack; broker shards pinned to one CPU, the load tool to the other")
print("- broker CPU = `perf stat -e task-clock` on the broker over the load tool's run "
      "(warm-up included) / records acknowledged\n")
print("| kind | runs | broker CPU ns/msg (median; runs) | broker CPU µs/request (median) | records/request | msgs/s | ack p50 / p99 / p99.9 / p99.99 / max ms (median run) |")
print("|---|---|---|---|---|---|---|")
med, med_req = {}, {}
for kind in ("one-shard", "local", "remote"):
    rs = runs.get(kind, [])
    if not rs:
        print(f"| {kind} | 0 | — | — | — | — | — |")
        continue
    cpu = statistics.median(r["cpu_ns"] for r in rs)
    med[kind] = cpu
    mid = sorted(rs, key=lambda r: r["cpu_ns"])[len(rs) // 2]
    a = mid["ack_latency"]
    lat = " / ".join(f"{a[k] / 1e3:.2f}" for k in ("p50_us", "p99_us", "p999_us", "p9999_us", "max_us") if k in a)
    per_req = statistics.median(r["cpu_us_per_request"] for r in rs)
    med_req[kind] = per_req
    batch = statistics.median(r["produced_total"] / max(r["requests"], 1) for r in rs)
    print(f"| {kind} | {len(rs)} | **{cpu:.0f}** ({', '.join(format(r['cpu_ns'], '.0f') for r in rs)}) | "
          f"{per_req:.1f} | {batch:.0f} | {statistics.median(r['produce']['msgs_per_s'] for r in rs) / 1e3:.0f}k | {lat} |")
if "local" in med and "remote" in med:
    print(f"\nRemote / local broker CPU per message: **{med['remote'] / med['local']:.2f}×** "
          f"({med['remote'] - med['local']:+.0f} ns per message, "
          f"{med_req['remote'] - med_req['local']:+.1f} µs per produce request).")
print("\n## Commands\n")
for kind in ("one-shard", "local", "remote"):
    for r in runs.get(kind, [])[:1]:
        i = r["run"]
        print(f"- {kind}: broker `{open(f'{out}/run-{i}.broker').read().strip()}`; load tool "
              f"`{open(f'{out}/run-{i}.command').read().strip()}`")
print(f"\nRaw reports of every run: `{out}/`.")
PY
log "wrote $OUT.md"
