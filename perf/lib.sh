# Helpers shared by the perf/ scripts (sourced after they cd to the repository root).

# A TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
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
