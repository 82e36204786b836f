#!/usr/bin/env bash
# The cost of encryption and authentication (issue 16 check 4): max-rate produce over PLAINTEXT,
# SSL and SASL_SSL (SCRAM-SHA-256) listeners of one broker binary, 100 B and 1 KiB records,
# side by side in one invocation: every round runs the three protocols one after the other so
# that drift of the shared machine hits them alike. Goal: SSL >= 70% of PLAINTEXT at 1 KiB with
# the broker on one core. Writes perf/results/<date>-tls.md (+ one raw report directory per run).
#
# Usage: perf/tls.sh
# Environment:
#   STRATA=target/release/strata   the binary (built with cargo build --release if missing)
#   ROUNDS=3                       rounds per scenario (PLAINTEXT, SSL, SASL_SSL each round)
#   DURATION=15s WARMUP=3s
#   SCENARIOS="100b 1kb"
#   BROKER_CPU=0 BENCH_CPU=1       CPUs the broker (--shards 1) and the load tool are pinned to
# The load tool encrypts too, on its own core: a figure for SSL is the slower of the two ends.
# A test CA and the broker's certificate are made with openssl in perf/tmp/tls (never reused).
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lib.sh

STRATA=${STRATA:-target/release/strata}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
SCENARIOS=${SCENARIOS:-"100b 1kb"}
BROKER_CPU=${BROKER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
REV=${REV:-$(git rev-parse --short HEAD)}
DATE=$(date -u +%Y-%m-%d)
TMP=perf/tmp/tls
OUT=perf/results/$DATE-tls
# Segments and retention small enough that a run never fills the disk.
ARGS="--shards 1 --segment-bytes 268435456 --retention-bytes 1073741824 --retention-check-ms 1000"
PROTOCOLS="PLAINTEXT SSL SASL_SSL"
mkdir -p "$TMP" "$OUT"

log() { echo "[tls.sh] $*" >&2; }

[[ -x $STRATA ]] || { log "building $STRATA"; cargo build --release --bin strata; }
command -v openssl >/dev/null || { log "openssl is needed to make the test CA"; exit 1; }

# A throwaway CA and a broker certificate for 127.0.0.1 (key and chain in one PEM keystore).
rm -f "$TMP"/*.pem "$TMP"/*.key "$TMP"/*.csr "$TMP"/*.srl "$TMP"/*.ext
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/ca.key" -out "$TMP/ca.pem" -days 2 \
  -subj "/CN=strata-perf-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$TMP/broker.key" -out "$TMP/broker.csr" \
  -subj "/CN=broker" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TMP/broker.ext"
openssl x509 -req -in "$TMP/broker.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
  -CAcreateserial -out "$TMP/broker.crt" -days 2 -extfile "$TMP/broker.ext" 2>/dev/null
cat "$TMP/broker.key" "$TMP/broker.crt" >"$TMP/broker.pem"

workload() {
  case $1 in
    100b) echo "perf/workloads/max-rate-1t-16p-100b.yaml" ;;
    1kb) echo "perf/workloads/max-rate-1t-16p-1kb.toml" ;;
  esac
}

trap stop_broker EXIT

# run SCENARIO PROTOCOL ROUND: a fresh broker with the three listeners, one bench run against
# the listener of PROTOCOL.
run() {
  local scenario=$1 proto=$2 round=$3 data=$TMP/data report addr security=()
  local plain tls sasl
  plain=$(free_port); tls=$(free_port); sasl=$(free_port)
  rm -rf "$data"
  report=$OUT/$scenario-$proto-$round
  rm -rf "$report"
  BROKER_CMD="taskset -c $BROKER_CPU $STRATA serve --data-dir $data --admin-listen 127.0.0.1:0 $ARGS --listeners PLAINTEXT://127.0.0.1:$plain,SSL://127.0.0.1:$tls,SASL_SSL://127.0.0.1:$sasl --ssl-keystore-location $TMP/broker.pem --sasl-enabled-mechanisms SCRAM-SHA-256 --sasl-bootstrap-user perf:perf-secret"
  $BROKER_CMD >"$TMP/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 400); do
    if grep -q "strata ready" "$TMP/broker.log"; then break; fi
    sleep 0.05
  done
  grep -q "strata ready" "$TMP/broker.log" || { log "broker did not start; see $TMP/broker.log"; exit 1; }
  case $proto in
    PLAINTEXT) addr=127.0.0.1:$plain ;;
    SSL) addr=127.0.0.1:$tls; security=(-X security.protocol=SSL -X "ssl.ca.location=$TMP/ca.pem") ;;
    SASL_SSL)
      addr=127.0.0.1:$sasl
      security=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$TMP/ca.pem"
        -X sasl.mechanism=SCRAM-SHA-256 -X sasl.username=perf -X sasl.password=perf-secret) ;;
  esac
  local cmd=(taskset -c "$BENCH_CPU" "$STRATA" bench produce --workload "$(workload "$scenario")"
    --brokers "$addr" --cores 1 --cpus "$BENCH_CPU" --duration "$DURATION" --warmup "$WARMUP"
    "${security[@]}" --report "$report")
  log "$scenario $proto #$round"
  "${cmd[@]}" >"$report.table" 2>"$TMP/progress"
  echo "${cmd[*]}" >"$report.command"
  echo "$BROKER_CMD" >"$report.broker"
  stop_broker
  rm -rf "$data"
}

for scenario in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    for proto in $PROTOCOLS; do
      run "$scenario" "$proto" "$round"
    done
  done
done

python3 - "$OUT" "$SCENARIOS" "$ROUNDS" "$REV" "$DURATION" "$PROTOCOLS" >"$OUT.md" <<'PY'
import json, os, statistics, subprocess, sys
out, scenarios, rounds, rev, duration, protocols = sys.argv[1:7]
scenarios, rounds, protocols = scenarios.split(), int(rounds), protocols.split()
def summary(s, p, r):
    return json.load(open(f"{out}/{s}-{p}-{r}/summary.json"))
def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
print(f"# PLAINTEXT vs SSL vs SASL_SSL: max-rate produce, {os.path.basename(out)[:10]}\n")
print("One broker with three listeners (PLAINTEXT, SSL with TLS 1.3 and rustls, SASL_SSL with "
      "SCRAM-SHA-256), a fresh data directory per run; each round runs the three protocols one "
      "after the other.\n")
print(f"- strata {rev}; command: `perf/tls.sh` (ROUNDS={rounds}, DURATION={duration})")
MODEL = sh("lscpu | sed -n 's/^Model name: *//p'")
print(f"- CPU: {MODEL}, {sh('nproc')} CPUs; broker pinned to CPU 0 "
      f"(`--shards 1`), `strata bench` pinned to CPU 1 (it encrypts too); kernel {sh('uname -r')}")
print(f"- load average at the end: {sh('cat /proc/loadavg')}\n")
print("| scenario | protocol | msgs/s (runs) | median MB/s | of PLAINTEXT (per-round ratios) | ack p50 / p99 / p99.9 / max ms (median run) |")
print("|---|---|---|---|---|---|")
for s in scenarios:
    base = [summary(s, "PLAINTEXT", r)["produce"]["msgs_per_s"] for r in range(1, rounds + 1)]
    for p in protocols:
        runs = [summary(s, p, r) for r in range(1, rounds + 1)]
        rates = [x["produce"]["msgs_per_s"] for x in runs]
        ratios = [a / b for a, b in zip(rates, base)]
        mb = statistics.median(x["produce"]["mb_per_s"] for x in runs)
        mid = sorted(runs, key=lambda x: x["produce"]["msgs_per_s"])[len(runs) // 2]["ack_latency"]
        lat = " / ".join(f"{mid[k]/1000:.1f}" for k in ("p50_us", "p99_us", "p999_us", "max_us"))
        ratio = "" if p == "PLAINTEXT" else (f"**{statistics.median(ratios)*100:.1f}%** ("
                                             + ", ".join(f"{x*100:.0f}%" for x in ratios) + ")")
        print(f"| `{s}` | {p} | {statistics.median(rates)/1e3:.0f}k ("
              + ", ".join(f"{x/1e3:.0f}k" for x in rates) + f") | {mb:.1f} | {ratio} | {lat} |")
print("\nErrors reported by the load tool: "
      + ", ".join(f"{s}: {sum(summary(s, p, r)['produce']['errors'] for p in protocols for r in range(1, rounds + 1))}" for s in scenarios) + ".\n")
print("## Commands\n")
for p in protocols:
    s = scenarios[-1]
    print(f"- {p}: load tool `{open(f'{out}/{s}-{p}-1.command').read().strip()}`")
print(f"- broker: `{open(f'{out}/{scenarios[-1]}-SSL-1.broker').read().strip()}`")
print("\n## Full latency distributions (median run of each)\n")
for s in scenarios:
    for p in protocols:
        runs = sorted(range(1, rounds + 1), key=lambda r: summary(s, p, r)["produce"]["msgs_per_s"])
        r = runs[len(runs) // 2]
        d = summary(s, p, r)["ack_latency"]
        keys = ("p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us")
        print(f"- {s} {p} run #{r} (ms): " + ", ".join(f"{k[:-3]} {d[k]/1000:.2f}" for k in keys if k in d))
print(f"\nRaw reports of every run (summary.json, ack.hgrm, report.html): `{out}/`.")
PY
log "wrote $OUT.md"
