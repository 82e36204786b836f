#!/usr/bin/env bash
# Issue 20's data-path measurements, two broker binaries side by side (A = before,
# B = after), alternating in one invocation so both see the same machine:
#   produce  max-rate produce (100 B and 1 KiB workloads, 12 s): msgs/s, and the broker's CPU
#            time per message (`perf stat -e task-clock` on the broker over the run / records
#            acknowledged; this VM has no hardware counters, so no instructions/message);
#            for 1 KiB also the size of the broker's data writes from a block trace
#            (<report>.devpause.json, needs root)
#   stall    the periodic-flush reproducer of issue 20: `--flush-ms 1000`, 15 s of 1 KiB
#            max-rate produce, then `bench e2e` at 500k msgs/s of 100 B on another topic;
#            ack/e2e distribution and each second's ack p99; then the same policy on a
#            fresh broker, `bench e2e` at 1M msgs/s, with the disk's pauses (`stall-<run>-fresh`)
#   consume  fill a 16-partition topic with 1 KiB records (FILL, 12 s), drop the page cache,
#            `bench consume` from the earliest offset (8 s, CONSUMERS=1 consumer connections,
#            each reading its share of the partitions): MB/s and broker CPU per message;
#            PROFILE=1 also records the broker (`perf record -F 499 --call-graph dwarf`) into
#            perf/tmp/datapath/consume-<run>.perf.data
#   e2e      fdatasync before every ack: `bench e2e` at each rate of E2E_RATE (default 500k;
#            a list such as "1M 500k" runs each) msgs/s of 100 B over 16 partitions (15 s):
#            ack/e2e distribution and each second's ack p99; E2E_ARGS adds `bench e2e` flags;
#            the disk's pauses during the run from its block trace (perf/devpause.py, needs
#            root): <report>.devpause.json
#   fio      the disk's limits: O_DIRECT 1 MiB seq write (qd 8), write+fdatasync at 256 KiB,
#            1 MiB, 4 MiB, 8 MiB (qd 1), 1 MiB seq read (qd 8), and the broker's pattern:
#            16 files at once, 256 KiB write+fdatasync each, into fresh and written space;
#            the same 16 files of 256 KiB writes with no fdatasync and with one every 1 MiB
#            per file (the periodic policy's slice); target 2's durable writes alone: 2 jobs
#            of 1,750 O_DSYNC writes/s of 32 KiB over 8 files each, and without O_DSYNC
# Usage: perf/datapath.sh A_BIN B_BIN [produce|stall|e2e|consume|fio ...]
#        (default: produce stall consume fio)
# Environment: ROUNDS=2, FILL=12s, BROKER_CPU=0 BENCH_CPU=1; SIDES="A B" (SIDES=B: B alone,
# one binary's figures); durations PRODUCE_DURATION=12s STALL_DURATION=15s E2E_DURATION=15s
# CONSUME_DURATION=8s, FIO_RUNTIME=10 (s per job) FIO_SIZE=4G; STRATA_ARGS (the brokers' extra
# flags, default run.sh's: 256 MiB segments, 1 GiB retention per partition checked every
# second); DATAPATH_OUT=perf/tmp/datapath (reports, perf stat and fio output; the fio file and
# perf.data stay in perf/tmp). Prints one line per run (with `uptime`'s load average).
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

A=${1:?usage: perf/datapath.sh A_BIN B_BIN [scenario ...]}
B=${2:?usage: perf/datapath.sh A_BIN B_BIN [scenario ...]}
shift 2
SCENARIOS=${*:-produce stall consume fio}
ROUNDS=${ROUNDS:-2}
FILL=${FILL:-12s}
SIDES=${SIDES:-A B}
PRODUCE_DURATION=${PRODUCE_DURATION:-12s}
STALL_DURATION=${STALL_DURATION:-15s}
E2E_DURATION=${E2E_DURATION:-15s}
CONSUME_DURATION=${CONSUME_DURATION:-8s}
FIO_RUNTIME=${FIO_RUNTIME:-10}
FIO_SIZE=${FIO_SIZE:-4G}
STRATA_ARGS=${STRATA_ARGS:---segment-bytes 268435456 --retention-bytes 1073741824 \
--retention-check-ms 1000}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
OUT=${DATAPATH_OUT:-perf/tmp/datapath}
DATA=perf/tmp/datapath-data
mkdir -p "$OUT" perf/tmp/datapath
trap 'block_trace_kill; stop_broker' EXIT

load() { uptime | sed 's/.*load average: //'; }

# start BIN EXTRA_FLAGS: a fresh broker on $BROKER_CPU; sets ADDR, BROKER_PID.
start() {
  local port
  port=$(free_port)
  ADDR=127.0.0.1:$port
  rm -rf "$DATA"
  # shellcheck disable=SC2086
  taskset -c "$BROKER_CPU" "$1" serve --listen "$ADDR" --data-dir "$DATA" --shards 1 \
    --admin-listen 127.0.0.1:0 $STRATA_ARGS $2 >perf/tmp/datapath/broker.log 2>&1 &
  BROKER_PID=$!
  wait_listening "$port" && return
  echo "broker did not start: perf/tmp/datapath/broker.log" >&2
  exit 1
}

finish() { stop_broker; rm -rf "$DATA"; }

# The load tool is always B's (the bench code is the same on both sides).
bench() { taskset -c "$BENCH_CPU" "$B" bench "$@" --brokers "$ADDR" --cores 1 --cpus "$BENCH_CPU"; }

summary() { python3 - "$@" <<'PY'
import json, re, sys
kind, report, stat, label = sys.argv[1:5]
d = json.load(open(report + "/summary.json"))
cpu = ""
if stat != "-":
    ms = float(re.search(r"([\d.]+) msec task-clock", open(stat).read()).group(1))
    n = d["produced_total"] if kind != "consume" else d["consumed_total"]
    cpu = f", broker CPU {ms * 1e6 / max(n, 1):.0f} ns/msg"
def dist(x):
    return "/".join(f"{x[k] / 1e3:.2f}" for k in ("p50_us", "p99_us", "p999_us", "max_us"))
if kind == "consume":
    print(f"{label}: {d['consume']['mb_per_s']:.1f} MB/s{cpu}")
elif kind == "stall":
    secs = " ".join(f"{t['ack_p99_us'] / 1e3:.1f}" for t in d["timeline"])
    print(f"{label}: ack p50/p99/p99.9/max {dist(d['ack_latency'])} ms, "
          f"e2e {dist(d['e2e_latency'])} ms; per-second ack p99: {secs}")
else:
    p = d["produce"]
    print(f"{label}: {p['msgs_per_s'] / 1e3:.0f}k msgs/s {p['mb_per_s']:.0f} MB/s{cpu}, "
          f"ack p50/p99/p99.9/max {dist(d['ack_latency'])} ms")
PY
}

produce() {
  local size=$1 label=$2 workload report
  case $size in
    100b) workload=perf/workloads/max-rate-1t-16p-100b.yaml ;;
    1kb) workload=perf/workloads/max-rate-1t-16p-1kb.toml ;;
  esac
  report=$OUT/produce-$size-$label
  rm -rf "$report"
  start "$BIN" ""
  perf stat -e task-clock -p "$BROKER_PID" -o "$report.stat" &
  local stat=$!
  # 1 KiB: the block layer is traced for the size of the broker's data writes (target 1
  # compares with fio at the broker's own write size). 100 B is CPU-bound: not traced.
  if [[ $size == 1kb ]]; then block_trace_start; fi
  bench produce --workload "$workload" --duration "$PRODUCE_DURATION" --warmup 2s \
    --report "$report" \
    >/dev/null 2>&1
  kill -INT "$stat"; wait "$stat" || true
  if [[ $size == 1kb ]]; then block_trace_stop "$report.devpause.json" "$DATA"; fi
  finish
  summary produce "$report" "$report.stat" "produce $size $label (load $(load))"
  if [[ -s $report.devpause.json ]]; then
    python3 -c 'import json,sys; w=json.load(open(sys.argv[1]))["kinds"].get("WS")
print("data writes (WS): %d, mean %.0f KiB, byte-weighted median %.0f KiB" % (w["count"], w["mean_kib"], w["weighted_median_kib"]) if w else "no data writes traced")' "$report.devpause.json"
  fi
}

stall() {
  local label=$1 report=$OUT/stall-$1
  rm -rf "$report" "$report-produce"
  start "$BIN" "--flush-ms 1000"
  # The first phase's report is the periodic-flush produce rate (issue 20 target 1's second
  # half: against fio's raw sequential write).
  perf stat -e task-clock -p "$BROKER_PID" -o "$report-produce.stat" &
  local stat=$!
  bench produce --workload perf/workloads/max-rate-1t-16p-1kb.toml --duration "$STALL_DURATION" \
    --warmup 1s --report "$report-produce" >/dev/null 2>&1
  kill -INT "$stat"; wait "$stat" || true
  # Traced like target 2's runs: a slow second of the reproducer is the disk's or not.
  block_trace_start
  bench e2e --workload perf/workloads/e2e-1m-1t-16p-100b.yaml --rate 500k \
    --duration "$STALL_DURATION" --warmup 2s --report "$report" >/dev/null 2>&1
  block_trace_stop "$report.devpause.json" "$DATA" "$report"
  finish
  summary produce "$report-produce" "$report-produce.stat" \
    "flush-ms 1000 produce 1kb $label (load $(load))"
  summary stall "$report" - "stall $label (load $(load))"
  device_pause_lines "$report"
  # The same policy on a fresh broker at target 2's rate: there each second's sync flushed
  # ~110 MB and the disk held every other request meanwhile (~60 ms ack p99), which the run
  # after the fill above did not show (perf/results/2026-12-07-device-pauses.md, section 6).
  traced_e2e "$report-fresh" 1M "$STALL_DURATION" "--flush-ms 1000" "stall fresh broker 1M $label"
}

# traced_e2e REPORT RATE DURATION BROKER_FLAGS LABEL [BENCH_FLAGS...]: `bench e2e` of target
# 2's workload against a fresh broker, and the disk's own pauses during the run
# (perf/devpause.py, REPORT.devpause.json): what of the tail the disk set.
traced_e2e() {
  local report=$1 rate=$2 duration=$3 flags=$4 label=$5
  rm -rf "$report"
  start "$BIN" "$flags"
  block_trace_start
  bench e2e --workload perf/workloads/e2e-1m-1t-16p-100b.yaml --rate "$rate" \
    --duration "$duration" --warmup 2s --report "$report" "${@:6}" >/dev/null 2>&1
  block_trace_stop "$report.devpause.json" "$DATA" "$report"
  finish
  summary stall "$report" - "$label (load $(load))"
  device_pause_lines "$report"
}

# device_pause_lines REPORT: the disk's pauses during REPORT's run, if it was traced.
device_pause_lines() {
  if [[ -s $1.devpause.json ]]; then
    json_get "$1.devpause.json" line
    python3 -c 'import json,sys; print("per-second device pause ms:", *json.load(open(sys.argv[1])).get("pause_ms_by_second", []))' "$1.devpause.json"
  fi
}

e2e() {
  local label=$1 rate
  for rate in ${E2E_RATE:-500k}; do
    # shellcheck disable=SC2086 # E2E_ARGS: extra `bench e2e` flags, word-split on purpose
    traced_e2e "$OUT/e2e-$rate-$label" "$rate" "$E2E_DURATION" "" \
      "e2e $rate ${E2E_ARGS:+$E2E_ARGS }$label" ${E2E_ARGS:-}
  done
}

consume() {
  local label=$1 report=$OUT/consume-$1
  rm -rf "$report"
  start "$BIN" "--flush-ms 1000"
  rm -rf "$report-fill"
  bench produce --workload perf/workloads/max-rate-1t-16p-1kb.toml --duration "$FILL" \
    --warmup 1s --report "$report-fill" >/dev/null 2>&1
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  perf stat -e task-clock -p "$BROKER_PID" -o "$report.stat" &
  local stat=$! record=
  if [[ ${PROFILE:-0} == 1 ]]; then
    perf record -F 499 --call-graph dwarf -p "$BROKER_PID" \
      -o "perf/tmp/datapath/consume-$label.perf.data" \
      >/dev/null 2>&1 &
    record=$!
  fi
  # shellcheck disable=SC2086 # CONSUME_ARGS: extra `bench consume` flags, word-split on purpose
  bench consume --topic bench-max-16p-1kb --record-size 1KiB --consumers "${CONSUMERS:-1}" \
    --duration "$CONSUME_DURATION" \
    --warmup 1s --report "$report" ${CONSUME_ARGS:-} >/dev/null 2>&1
  kill -INT "$stat"; wait "$stat" || true
  if [[ -n $record ]]; then kill -INT "$record"; wait "$record" || true; fi
  finish
  summary consume "$report" "$report.stat" \
    "consume ${CONSUMERS:+x$CONSUMERS }${CONSUME_ARGS:+$CONSUME_ARGS }$label (load $(load))"
}

fio_limits() {
  local f=perf/tmp/datapath-fio.dat job
  run_fio() {
    fio --name="$1" ${f:+--filename="$f"} --direct=1 --ioengine=io_uring --size="$FIO_SIZE" \
      --runtime="$FIO_RUNTIME" \
      --time_based --output-format=json --cpus_allowed="$BROKER_CPU" "${@:2}" >"$OUT/fio-$1.json"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]
bw = max(j["read"]["bw_bytes"], j["write"]["bw_bytes"])
print("fio %s: %.0f MB/s" % (sys.argv[2], bw / 1e6))' "$OUT/fio-$1.json" "$1"
  }
  run_fio seqwrite-1m-qd8 --rw=write --bs=1M --iodepth=8
  for job in 256k 1m 4m 8m; do
    run_fio "write-fdatasync-$job" --rw=write --bs="$job" --iodepth=1 --fdatasync=1
  done
  run_fio seqread-1m-qd8 --rw=read --bs=1M --iodepth=8
  rm -f "$f"
  # fio job $1 with its files (partitions) in an emptied directory, its jobs reported
  # together; $2...: its other options (how many jobs and files).
  local dir=perf/tmp/datapath-fio-dir
  run_fio_dir() {
    rm -rf "$dir"; mkdir -p "$dir"
    f='' run_fio "$1" --directory="$dir" --group_reporting "${@:2}"
  }
  # The broker's own pattern: 16 partitions, each a file written in ~256-512 KiB O_DIRECT
  # writes with an fdatasync after each, all at once. Into fresh fallocated space (as a new
  # segment: every write converts unwritten extents, io_uring hands it to a kernel worker
  # and each fdatasync writes the inode) and into blocks already written (a reused file).
  # 512 MiB per file and 2 s: no job wraps around into its own written blocks.
  local kind overwrite
  for kind in fresh written; do
    overwrite=0; [[ $kind == written ]] && overwrite=1
    # shellcheck disable=SC2016 # $jobnum is fio's, not the shell's
    run_fio_dir "write-fdatasync-256k-16f-$kind" --numjobs=16 --filename_format='j.$jobnum' \
      --size=512M --runtime=2 --rw=write --bs=256k --fdatasync=1 --overwrite=$overwrite
  done
  # Target 1's periodic flush, its limit for the broker's pattern: the same 16 files of
  # 256 KiB writes with no fdatasync at all, and with one every 1 MiB per file (the default
  # `flush_bytes` slice). fio's single stream above is the target's yardstick; these say
  # how much of it the pattern and the syncs leave (perf/results/2026-12-07-periodic-ceiling.md).
  local every
  for every in 0 4; do
    # shellcheck disable=SC2016 # $jobnum is fio's, not the shell's
    run_fio_dir "write-256k-16f-sync$every" --numjobs=16 --filename_format='j.$jobnum' \
      --size=1G --rw=write --bs=256k --fdatasync=$every
  done
  # Target 2's durable writes alone. The e2e workload (1M msgs/s of 100 B over 16 partitions,
  # 2 producers, sticky partitioner, 500 us linger) sends each producer's records of one
  # linger as one batch to one partition, the partitions taken in turn: measured, ~3,500
  # appends/s of ~31 KB (8 blocks of 4 KiB), each an O_DIRECT write to an O_DSYNC segment in
  # fresh fallocated space. fio does only that: 2 jobs of 1,750 writes/s of 32 KiB, each over
  # 8 files in turn; its write latency is the disk's share of the ack. Then the same writes
  # without O_DSYNC, the device's write latency with no cache flush at all: the difference is
  # the most that one flush shared by a shard's partitions could save.
  local sync
  for sync in dsync direct; do
    # shellcheck disable=SC2016 # $jobnum and $filenum are fio's, not the shell's
    run_fio_dir "$sync-32k-2x8f-1750iops" --numjobs=2 --nrfiles=8 \
      --file_service_type=roundrobin --filename_format='j.$jobnum.$filenum' --size=2G \
      --rw=write --bs=32k --rate_iops=1750 --sync="${sync/direct/none}" \
      --lat_percentiles=1 --percentile_list=50:99:99.9:99.99
  done
  rm -rf "$dir"
  echo "(load $(load))"
}

for scenario in $SCENARIOS; do
  if [[ $scenario == fio ]]; then fio_limits; continue; fi
  for round in $(seq "$ROUNDS"); do
    for side in $SIDES; do
      if [[ $side == A ]]; then BIN=$A; else BIN=$B; fi
      case $scenario in
        produce) produce 100b "$side$round"; produce 1kb "$side$round" ;;
        stall) stall "$side$round" ;;
        e2e) e2e "$side$round" ;;
        consume) consume "$side$round" ;;
      esac
    done
  done
done
