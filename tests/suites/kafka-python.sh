#!/usr/bin/env bash
# kafka-python's own integration suite (test/integration/ of its PyPI sdist) against a real
# `strata serve` on loopback, as an outside reviewer would check our Kafka compatibility: their
# tests, their expectations, our broker. tests/clients/ holds the tests we wrote; this is the
# suite we did not write.
#
# The version is the kafka-python installed from tests/clients/requirements.txt (checked
# against its pin there). Its sdist is downloaded once into target/suites/ and unpacked into a
# temporary folder with our shim (tests/suites/kafka_python_shim/: the sdist lacks
# test/service.py and test/__init__.py). The broker gets the settings of their broker fixture
# (servers/resources/default/kafka.properties): 4 partitions a topic, the standard authorizer
# with allow.everyone.if.no.acl.found, 2 offsets-topic partitions, no initial rebalance delay,
# a 1 s minimum session timeout. The suite runs as KAFKA_VERSION=4.0.0 against KAFKA_URI.
#
# Deselected, and only these:
#   test/integration/test_ssl_integration.py: its fixture spawns a Kafka broker of its own from
#     a Kafka install, with JKS keystores made by keytool; there is neither here, and it never
#     uses the external broker.
# test_sasl_integration.py skips itself when KAFKA_URI is set (their own marker).
#
# A failed test is run again, up to twice (pytest-rerunfailures; the summary lists reruns):
# kafka-python 3.0.12 has a race of its own in consumers. Its first metadata request, sent while
# bootstrapping, asks for no topics; when subscribe() comes while that request is in flight,
# the answer clears the refresh subscribe() asked for, and the consumer sees its topic only at
# the next periodic refresh (metadata.max.age.ms, 5 minutes): the test times out with nothing
# consumed, the broker having answered each request right (the client's debug log shows it).
# Over 10 runs of the whole suite that hit 3 of 30 runs of test_idempotent_producer_max_in_flight
# and 1 of 10 of test_kafka_consumer. A broker bug fails all three tries.
#
# Usage: STRATA_BIN=target/debug/strata bash tests/suites/kafka-python.sh [pytest args...]
# Exits non-zero if any test fails or errors. The broker's log is target/suites/kafka-python-
# broker.log (kept after the run).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
STRATA_BIN=$(realpath "${STRATA_BIN:-$root/target/debug/strata}")
cache="$root/target/suites"
shim="$root/tests/suites/kafka_python_shim"
ready_timeout_s=60
stop_timeout_s=60

[ -x "$STRATA_BIN" ] || { echo "kafka-python suite: $STRATA_BIN missing: cargo build" >&2; exit 1; }

# The installed kafka-python, which must satisfy the pin our own client tests use.
version=$(python3 - "$root/tests/clients/requirements.txt" <<'EOF'
import importlib.metadata
import sys
from packaging.requirements import Requirement

pins = [Requirement(line.split("#")[0].strip()) for line in open(sys.argv[1])
        if line.strip().lower().startswith("kafka-python")]
try:
    installed = importlib.metadata.version("kafka-python")
except importlib.metadata.PackageNotFoundError:
    sys.exit("kafka-python is not installed: pip install -r tests/clients/requirements.txt")
if len(pins) != 1 or not pins[0].specifier.contains(installed):
    sys.exit(f"installed kafka-python {installed} does not match {pins} in {sys.argv[1]}")
print(installed)
EOF
)

mkdir -p "$cache"
sdist="$cache/kafka_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        "kafka-python==$version" -d "$cache"
fi
[ -f "$sdist" ] || { echo "kafka-python suite: pip gave no $sdist" >&2; exit 1; }

scratch=$(mktemp -d)
broker_pid=
broker_exit=0
# SIGTERM, then SIGKILL past the deadline; broker_exit is its exit status (0: a clean stop).
stop_broker() {
    [ -n "$broker_pid" ] || return 0
    kill -TERM "$broker_pid" 2>/dev/null || true
    local deadline=$((SECONDS + stop_timeout_s))
    while kill -0 "$broker_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || broker_exit=$?
    broker_pid=
}
trap 'stop_broker; rm -rf "$scratch"' EXIT

if ! tar -xzf "$sdist" -C "$scratch"; then
    rm -f "$sdist"  # a truncated download: fetch it again next time
    echo "kafka-python suite: $sdist does not unpack" >&2
    exit 1
fi
src="$scratch/kafka_python-$version"
cp "$shim/service.py" "$shim/__init__.py" "$src/test/"
# KAFKA_ROOT must name a folder (their fixture checks) even though no Kafka is spawned.
mkdir "$scratch/no-kafka-install" "$scratch/data"

# A free loopback port below the ephemeral range: the clients' own connections draw from that
# range and could take a port between this probe and the broker's bind (as in
# tests/clients/conftest.py).
port=$(python3 - <<'EOF'
import random
import socket

with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    ephemeral = int(f.read().split()[0])
ports = range(10000, max(ephemeral, 11000))
for port in random.sample(ports, min(500, len(ports))):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit("no free loopback port below the ephemeral range")
EOF
)

log="$cache/kafka-python-broker.log"
RUST_LOG=info NO_COLOR=1 "$STRATA_BIN" serve \
    --listeners "PLAINTEXT://127.0.0.1:$port" \
    --admin-listen 127.0.0.1:0 \
    --data-dir "$scratch/data" \
    --segment-prealloc-bytes 1048576 \
    --default-partitions 4 \
    --authorizer standard --allow-everyone-if-no-acl-found true \
    --offsets-topic-partitions 2 \
    --group-initial-rebalance-delay-ms 0 \
    --group-min-session-timeout-ms 1000 \
    >"$log" 2>&1 &
broker_pid=$!

deadline=$((SECONDS + ready_timeout_s))
until grep -q 'strata ready' "$log"; do
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "kafka-python suite: the broker exited before it was ready:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "kafka-python suite: the broker was not ready within ${ready_timeout_s} s:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    sleep 0.1
done

status=0
(
    cd "$src"
    KAFKA_VERSION=4.0.0 KAFKA_URI="tcp://127.0.0.1:$port" KAFKA_ROOT="$scratch/no-kafka-install" \
        python3 -m pytest test/integration -p no:cacheprovider -vv -rfE \
        --timeout 60 --timeout-method=signal --reruns 2 -rR \
        --junitxml="$scratch/junit.xml" \
        --deselect test/integration/test_ssl_integration.py \
        "$@"
) || status=$?

if ! kill -0 "$broker_pid" 2>/dev/null; then
    echo "kafka-python suite: the broker exited during the run; its log's end:" >&2
    tail -n 40 "$log" >&2
    status=1
fi
stop_broker
if [ "$broker_exit" -ne 0 ]; then
    echo "kafka-python suite: the broker did not stop cleanly (exit $broker_exit)" >&2
    status=1
fi

# One line: the plain "N passed, N failed, N skipped" form (errors count as failed).
python3 - "$scratch/junit.xml" "$version" "$status" <<'EOF'
import sys
import xml.etree.ElementTree as ET

path, version, status = sys.argv[1:]
try:
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    count = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError):
    print(f"kafka-python {version}: no report (pytest exit {status})")
    sys.exit()
failed = count["failures"] + count["errors"]
passed = count["tests"] - failed - count["skipped"]
print(f"kafka-python-{version}: {passed} passed, {failed} failed, {count['skipped']} skipped")
EOF
exit "$status"
