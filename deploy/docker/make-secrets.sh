#!/usr/bin/env bash
# Makes the secrets compose.yaml (and the image's strata.toml) read, with openssl: a test CA,
# one broker certificate (CN=strata-broker, naming strata-1..3, localhost and 127.0.0.1),
# the cluster secret, an admin token and the bootstrap user's password. For tests and local
# clusters only: production certificates come from your CA (cert-manager, Vault, ...).
#   deploy/docker/make-secrets.sh [DIR]     # default: deploy/docker/secrets
set -euo pipefail
dir=${1:-"$(dirname "$0")/secrets"}
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj "/CN=Strata test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=strata-broker" \
    -keyout broker.key -out broker.csr 2>/dev/null
printf 'subjectAltName=DNS:strata-1,DNS:strata-2,DNS:strata-3,DNS:localhost,IP:127.0.0.1\n' \
    >san.ext
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile san.ext -out broker.pem 2>/dev/null
rm -f broker.csr san.ext ca.srl
head -c 32 /dev/urandom | base64 >cluster-secret
head -c 32 /dev/urandom | base64 >admin-token
printf 'admin:%s\n' "$(head -c 24 /dev/urandom | base64)" >bootstrap-user
# Docker compose bind-mounts secrets as they are: the container's strata user (uid 10001)
# must be able to read them. The directory itself stays private.
chmod 0644 ca.pem broker.pem broker.key cluster-secret admin-token bootstrap-user
chmod 0600 ca.key
echo "secrets written to $dir (keep ca.key elsewhere in real use)"
