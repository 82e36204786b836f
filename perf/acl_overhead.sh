#!/usr/bin/env bash
# Produce and fetch throughput of 1 KiB records with ACLs enforced (the standard authorizer,
# 100 ACLs) against no authorizer, side by side in one run: rounds alternate off/on so that
# drift of the shared machine hits both alike. Writes perf/results/<date>-acl-overhead.md.
#
# Two runs per round: `produce` (producers only, at the maximum rate) and `e2e` (producers at
# a fixed E2E_RATE and a consumer fetching the tail as it is written: the fetch path's
# end-to-end latency at equal load). Fetching from the earliest offset is not used: cold reads
# of the log, not the request path, bound it (≈25 MB/s here); nor e2e at the maximum rate: one
# load-tool core cannot both produce at the maximum rate and keep up consuming.
#
# Usage: perf/acl_overhead.sh
# Environment:
#   ROUNDS=3                       off/on pairs
#   DURATION=5s                    measured window of each run (after a 2 s warm-up)
#   E2E_RATE=20k                   records/s of the e2e runs
#   BROKER_CPU=0 BENCH_CPU=1       CPUs the broker (--shards 1) and the load tool are pinned to
#   STRATA=target/release/strata   strata binary [built with cargo build --release if missing]
#
# With ACLs on, the load tool's principal (User:ANONYMOUS, no authentication) is allowed by
# ACLs, not as a super user: every produce and fetch goes through the authorizer's cache.
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
E2E_RATE=${E2E_RATE:-20k}
REV=${REV:-$(git rev-parse --short HEAD)}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
STRATA=${STRATA:-target/release/strata}
DATE=$(date -u +%Y-%m-%d)
TMP=perf/tmp/acl
OUT=perf/results/$DATE-acl-overhead
# Small segments and retention keep the disk footprint under 16 x 320 MiB at any time.
ARGS="--shards 1 --segment-bytes 67108864 --retention-bytes 268435456 --retention-check-ms 1000"
mkdir -p "$TMP" "$OUT"

log() { echo "[acl_overhead] $*" >&2; }

[[ -x $STRATA ]] || { log "building $STRATA"; cargo build --release; }

trap stop_broker EXIT

# start_broker DATA_DIR EXTRA_ARGS...: sets ADDR.
start_broker() {
  local data=$1; shift
  taskset -c "$BROKER_CPU" "$STRATA" serve --listen "$ADDR" --data-dir "$data" \
    --admin-listen 127.0.0.1:0 $ARGS "$@" >"$TMP/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 400); do
    if grep -q "strata ready" "$TMP/broker.log"; then return; fi
    sleep 0.05
  done
  log "broker did not start; see $TMP/broker.log"
  exit 1
}

acl() { "$STRATA" acl --bootstrap-server "$ADDR" create "$@" >/dev/null; }

# 100 ACLs: what the load tool needs (User:ANONYMOUS on the strata-bench topic and the
# cluster), denies for other principals on the same topic, a wildcard, and 92 for others.
create_acls() {
  local users
  users=$(python3 -c 'print(",".join(f"User:user{i}" for i in range(46)))')
  acl --allow-principal User:ANONYMOUS --operation all --topic strata-bench --resource-pattern-type prefixed
  acl --allow-principal User:ANONYMOUS --operation create,describe,idempotent_write --cluster
  acl --deny-principal User:mallory --operation all --topic strata-bench --resource-pattern-type prefixed
  acl --deny-principal User:guest --operation write --topic strata --resource-pattern-type prefixed
  acl --allow-principal 'User:*' --operation describe --topic '*'
  acl --allow-principal 'User:*' --operation read --group '*'
  acl --allow-principal "$users" --operation read,write --topic filler
  local n
  n=$("$STRATA" acl --bootstrap-server "$ADDR" list --output json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [[ $n == 100 ]] || { log "expected 100 ACLs, found $n"; exit 1; }
}

run_mode() {
  local mode=$1 round=$2 data=$TMP/data report
  rm -rf "$data"
  ADDR=127.0.0.1:$(free_port)
  if [[ $mode == on ]]; then
    start_broker "$data" --authorizer standard --super-users User:ANONYMOUS
    create_acls
    stop_broker
    start_broker "$data" --authorizer standard
  else
    start_broker "$data"
  fi
  for phase in produce e2e; do
    report=$OUT/$mode-$round-$phase
    rm -rf "$report"
    # The topic the ACLs name (the workload file's own topic would not be covered).
    log "round $round, ACLs $mode: $phase"
    local rate=max
    [[ $phase == e2e ]] && rate=$E2E_RATE
    taskset -c "$BENCH_CPU" "$STRATA" bench "$phase" --rate "$rate" \
      --workload perf/workloads/max-rate-1t-16p-1kb.toml --topic strata-bench \
      --brokers "$ADDR" --cores 1 --cpus "$BENCH_CPU" --duration "$DURATION" --warmup 2s \
      --report "$report" >"$report.table" 2>"$TMP/progress"
  done
  if [[ $mode == on ]]; then
    # The answers came from the cache (a miss per topic, then hits).
    grep -c "authorization denied" "$TMP/broker.log" >"$OUT/$mode-$round-denials" || true
  fi
  stop_broker
  rm -rf "$data"
}

for round in $(seq "$ROUNDS"); do
  run_mode off "$round"
  run_mode on "$round"
done

python3 - "$OUT" "$ROUNDS" "$DURATION" "$STRATA" "$BROKER_CPU" "$BENCH_CPU" "$REV" "$E2E_RATE" \
  >"$OUT.md" <<'PY'
import json, statistics, subprocess, sys
out, rounds, duration, strata, bcpu, tcpu, rev, e2e_rate = sys.argv[1:9]
rounds = int(rounds)
def get(mode, r, run, phase, key):
    d = json.load(open(f"{out}/{mode}-{r}-{run}/summary.json"))
    return d[phase][key]
def cpu():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "?"
print(f"# ACLs on (100 rules) vs off: produce and fetch of 1 KiB records\n")
print(f"- CPU: {cpu()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs; broker `--shards 1` pinned to CPU {bcpu}, `strata bench` to CPU {tcpu}")
print(f"- strata {rev}; command: `perf/acl_overhead.sh` (ROUNDS={rounds}, DURATION={duration}, E2E_RATE={e2e_rate})")
print("- broker: `strata serve --shards 1 --segment-bytes 67108864 --retention-bytes 268435456 --retention-check-ms 1000`")
print(f"- produce: `strata bench produce --workload perf/workloads/max-rate-1t-16p-1kb.toml --topic strata-bench --warmup 2s --duration {duration}` (16 partitions, 1 KiB, 2 producers, max rate, acks=1)")
print(f"- fetch: `strata bench e2e` with the same flags but `--rate {e2e_rate}`: producers at a fixed rate, and a consumer fetching the tail as it is written")
print("- ACLs on: `--authorizer standard`, 100 ACLs, the bench's User:ANONYMOUS allowed by a prefixed ACL (not a super user)\n")
print("| round | produce off MB/s | produce on MB/s | fetch (e2e) off MB/s | fetch (e2e) on MB/s |")
print("|---|---|---|---|---|")
ratios = {"produce": [], "consume": []}
vals = {(m, p): [] for m in ("off", "on") for p in ("produce", "consume")}
run = {"produce": "produce", "consume": "e2e"}
for r in range(1, rounds + 1):
    row = []
    for p in ("produce", "consume"):
        off, on = get("off", r, run[p], p, "mb_per_s"), get("on", r, run[p], p, "mb_per_s")
        vals[("off", p)].append(off); vals[("on", p)].append(on)
        ratios[p].append(on / off)
        row += [f"{off:.1f}", f"{on:.1f}"]
    print(f"| {r} | {row[0]} | {row[1]} | {row[2]} | {row[3]} |")
print()
for p, name in (("produce", "produce"), ("consume", "fetch")):
    off, on = statistics.median(vals[("off", p)]), statistics.median(vals[("on", p)])
    rs = sorted(ratios[p])
    print(f"- {name}: median off {off:.1f} MB/s, on {on:.1f} MB/s: on/off of each round "
          f"{', '.join(f'{x:.3f}' for x in ratios[p])} (median {statistics.median(rs):.3f}, "
          f"loss {100 * (1 - statistics.median(rs)):.1f}%)")
keys = ("p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us")
for run_name, field, what in (("produce", "ack_latency", "Produce-ack latency of the produce runs"),
                              ("e2e", "e2e_latency", "End-to-end latency of the e2e runs")):
    hgrm = "ack" if field == "ack_latency" else "e2e"
    print(f"\n{what} (ms; the full distributions are the {hgrm}.hgrm files):\n")
    print("| round | ACLs | p50 | p90 | p99 | p99.9 | p99.99 | max |")
    print("|---|---|---|---|---|---|---|---|")
    for r in range(1, rounds + 1):
        for m in ("off", "on"):
            d = json.load(open(f"{out}/{m}-{r}-{run_name}/summary.json"))[field] or {}
            cells = " | ".join(f"{d[k] / 1000:.2f}" if k in d else "-" for k in keys)
            print(f"| {r} | {m} | {cells} |")
with open("/proc/loadavg") as f:
    load = f.read().split()[:3]
print(f"\nLoad average at the end of the run (a shared machine): {' '.join(load)}.")
print("\nRaw reports (summary.json, .hgrm, report.html) are in the directory of the same name.")
PY
log "wrote $OUT.md"
