# Helpers shared by the perf/ scripts (sourced after they cd to the repository root).

# A TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listening PORT: waits up to 10 s for 127.0.0.1:PORT to accept a connection (a broker
# just started); fails if it never does.
wait_listening() {
  for _ in $(seq 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# json_get FILE a.b.c: that field of a JSON file ("" when absent).
json_get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d
for k in sys.argv[2].split("."): v=(v or {}).get(k)
print("" if v is None else v)' "$1" "$2"; }

# Stops the broker started in the background as $BROKER_PID, if any.
BROKER_PID=""
stop_broker() {
  if [[ -n $BROKER_PID ]]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
  fi
}

# block_trace_start: records the block layer's request issues and completions (every device)
# until block_trace_stop, to tell the disk's own pauses from the broker's (perf/devpause.py).
# Without perf or the right to trace (root, or perf_event_paranoid -1) nothing is recorded.
BLOCK_TRACE_PID=""
block_trace_start() {
  BLOCK_TRACE_PID=""
  command -v perf >/dev/null 2>&1 || return 0
  mkdir -p perf/tmp
  rm -f perf/tmp/block.perf.data
  # The trace's clock and the wall clock, to line its seconds up with a bench report's.
  python3 -c 'import time; print(time.time() - time.clock_gettime(time.CLOCK_MONOTONIC))' \
    >perf/tmp/block.clock
  perf record -q -k monotonic -e block:block_rq_issue -e block:block_rq_complete -a \
    -o perf/tmp/block.perf.data >/dev/null 2>&1 &
  BLOCK_TRACE_PID=$!
}

# block_trace_stop OUT.json DIR [REPORT]: stops the recording and writes perf/devpause.py's
# analysis of the device that holds DIR (where the broker's data is) to OUT.json, with the
# pause time of each measured second of the bench report REPORT if given.
block_trace_stop() {
  [[ -n $BLOCK_TRACE_PID ]] || return 0
  block_trace_kill
  wait "$BLOCK_TRACE_PID" 2>/dev/null || true
  BLOCK_TRACE_PID=""
  local seconds=()
  if [[ -n ${3:-} ]]; then seconds=(--report "$3" --clock-offset "$(cat perf/tmp/block.clock)"); fi
  if [[ -s perf/tmp/block.perf.data ]]; then
    perf script -i perf/tmp/block.perf.data -F time,event,trace 2>/dev/null |
      python3 perf/devpause.py - --device-of "$2" "${seconds[@]}" >"$1" || true
  fi
  rm -f perf/tmp/block.perf.data perf/tmp/block.clock
}

# block_trace_kill: ends a recording left running (for an EXIT trap).
block_trace_kill() {
  if [[ -n $BLOCK_TRACE_PID ]]; then kill -INT "$BLOCK_TRACE_PID" 2>/dev/null || true; fi
}
