#!/usr/bin/env bash
# Validates everything in deploy/ with real tools, as CI runs it (`bash deploy/check.sh`):
#   - systemd unit: `systemd-analyze verify` in a scratch root (skipped only if missing)
#   - Kubernetes manifests: kubernetes-validate --strict against the bundled API schemas
#   - strata.toml files (image, compose, systemd and every manifest's ConfigMap):
#     `strata config check`
#   - docker compose: secrets and configs it names exist (make-secrets.sh makes the secrets,
#     and its certificate verifies against its CA), controller and inter-broker ports never
#     published, admin ports on loopback only; Kubernetes: controller port never on a
#     NodePort/LoadBalancer Service or hostPort, probes over HTTPS where the admin port is
#   - seccomp profile: JSON, and io_uring_setup/enter/register allowed unconditionally
#   - Grafana dashboard: JSON with queries (tests/clients/test_admin.py checks its metric names)
# Needs target/debug/strata (or $STRATA_BIN) for the config checks.
set -euo pipefail
cd "$(dirname "$0")"
STRATA_BIN=${STRATA_BIN:-../target/debug/strata}
passed=0
failed=0
skipped=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); printf 'skip  %s\n' "$*"; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# systemd: verify in a scratch root holding the system's units, a stand-in executable at
# ExecStart's path and our unit, so the check does not depend on strata being installed.
if command -v systemd-analyze >/dev/null 2>&1; then
    root="$scratch/root"
    mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/local/bin"
    for units in /usr/lib/systemd/system /lib/systemd/system; do
        [ -d "$units" ] && cp -r "$units" "$root/usr/lib/systemd/" && break
    done
    printf '#!/bin/sh\n' >"$root/usr/local/bin/strata"
    chmod 0755 "$root/usr/local/bin/strata"
    cp systemd/strata.service "$root/etc/systemd/system/"
    # Any output is a problem: verify reports bad values ("ignoring") yet exits 0.
    if out=$(systemd-analyze verify --root="$root" strata.service 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify systemd/strata.service"
    else
        bad "systemd-analyze verify systemd/strata.service: $out"
    fi
else
    skip "systemd-analyze not installed"
fi

# Kubernetes
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check -r requirements.txt || true
fi
if python3 -c 'import kubernetes_validate' 2>/dev/null; then
    for manifest in kubernetes/*.yaml; do
        if out=$(python3 -m kubernetes_validate --strict --quiet "$manifest" 2>&1); then
            ok "kubernetes-validate --strict $manifest"
        else
            bad "kubernetes-validate $manifest: $out"
        fi
    done
else
    bad "kubernetes-validate is not installable (pip install -r deploy/requirements.txt)"
fi

# Config files shipped in the image and the ConfigMap parse and validate as the broker would.
if [ -x "$STRATA_BIN" ]; then
    # Each manifest's ConfigMap, as the broker of node id 0 reads it.
    python3 - "$scratch" <<'PY'
import glob, os, sys, yaml
for path in sorted(glob.glob("kubernetes/*.yaml")):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc["kind"] == "ConfigMap":
            name = os.path.basename(path).replace(".yaml", ".toml")
            open(os.path.join(sys.argv[1], name), "w").write(doc["data"]["strata.toml"])
PY
    for config in docker/strata.toml docker/strata-cluster.toml systemd/strata.toml \
        "$scratch"/*.toml; do
        if out=$("$STRATA_BIN" config check "$config" 2>&1); then
            ok "strata config check $config"
        else
            bad "strata config check $config: $out"
        fi
    done
else
    bad "$STRATA_BIN missing: run cargo build first"
fi

# docker compose (no daemon here: checked statically) and the secrets make-secrets.sh makes.
secrets="$scratch/secrets"
if out=$(bash docker/make-secrets.sh "$secrets" 2>&1) \
    && out=$(openssl verify -CAfile "$secrets/ca.pem" "$secrets/broker.pem" 2>&1); then
    ok "docker/make-secrets.sh makes a certificate that verifies against its CA"
else
    bad "docker/make-secrets.sh: $out"
fi
if out=$(python3 - "$secrets" <<'PY' 2>&1
import os, sys, yaml
compose = yaml.safe_load(open("docker/compose.yaml"))
made = sys.argv[1]
for name, secret in compose["secrets"].items():
    path = secret["file"]
    assert path.startswith("./secrets/"), f"{name}: {path} is not made by make-secrets.sh"
    assert os.path.exists(os.path.join(made, path[len("./secrets/"):])), f"{name}: not made"
for name, config in compose["configs"].items():
    assert os.path.exists(os.path.join("docker", config["file"])), f"config {name} missing"
for name, service in compose["services"].items():
    for secret in service.get("secrets", []):
        assert secret in compose["secrets"], f"{name} uses undeclared secret {secret}"
    for port in service.get("ports", []):
        parts = str(port).split(":")
        inside = parts[-1]
        assert inside not in ("9093", "9094"), f"{name} publishes internal port {inside}"
        if inside == "9644":
            assert parts[0] == "127.0.0.1", f"{name} publishes the admin port beyond loopback"
PY
); then
    ok "docker/compose.yaml: secrets, configs, ports"
else
    bad "docker/compose.yaml: $out"
fi
if out=$(python3 - <<'PY' 2>&1
import glob, yaml
for path in sorted(glob.glob("kubernetes/*.yaml")):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    for doc in docs:
        if doc["kind"] == "Service":
            exposed = doc["spec"].get("type", "ClusterIP") in ("NodePort", "LoadBalancer")
            for port in doc["spec"]["ports"]:
                assert not (exposed and port["port"] == 9093), f"{path}: controller exposed"
        if doc["kind"] == "ConfigMap":
            tls_admin = "admin_ssl_enabled = true" in doc["data"]["strata.toml"]
    for doc in docs:
        if doc["kind"] != "StatefulSet":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for port in c.get("ports", []):
                assert not (port["containerPort"] == 9093 and "hostPort" in port), path
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                scheme = c[probe]["httpGet"].get("scheme", "HTTP")
                assert (scheme == "HTTPS") == tls_admin, f"{path}: {probe} scheme {scheme}"
PY
); then
    ok "kubernetes: controller port internal, probes match the admin port's TLS"
else
    bad "kubernetes: $out"
fi

# seccomp and Grafana JSON
if out=$(python3 - <<'PY' 2>&1
import json
profile = json.load(open("docker/seccomp-strata.json"))
assert profile["defaultAction"] == "SCMP_ACT_ERRNO", "not an allowlist profile"
allowed = {n for s in profile["syscalls"]
           if s["action"] == "SCMP_ACT_ALLOW" and not s.get("args") and not s.get("includes")
           for n in s["names"]}
missing = {"io_uring_setup", "io_uring_enter", "io_uring_register"} - allowed
assert not missing, f"not allowed: {sorted(missing)}"
for basic in ["read", "write", "openat", "fdatasync", "accept4", "mmap", "futex"]:
    assert basic in allowed, basic
dashboard = json.load(open("grafana/strata.json"))
assert all(p.get("targets") for p in dashboard["panels"]), "a panel without queries"
PY
); then
    ok "seccomp profile allows io_uring; Grafana dashboard parses"
else
    bad "seccomp/Grafana: $out"
fi

# The Dockerfile: no daemon or base images can be reached here, so only what it copies is
# checked to exist (build it with `docker build -f deploy/docker/Dockerfile .`).
for copied in docker/strata.toml ../Cargo.toml ../Cargo.lock; do
    [ -f "$copied" ] || bad "Dockerfile copies $copied, which is missing"
done

echo "deploy checks: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
