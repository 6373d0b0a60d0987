# Shared helpers for the test world's scripts. Sourced, never run.
#
# Layout (everything outside the repository, so a fresh clone reuses it):
#   $MILLRACE_HOME/cache/   downloads and builds, keyed by version (kept by `down`)
#   $MILLRACE_HOME/bin/     the built programs (etcd, kube-*, kubectl, ...)
#   $MILLRACE_WORLD/        one running world: pids/, logs/, data/, certs/, env
# shellcheck shell=bash

set -euo pipefail

MILLRACE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
MILLRACE_HOME="${MILLRACE_HOME:-$HOME/.cache/millrace}"
MILLRACE_WORLD="${MILLRACE_WORLD:-$MILLRACE_HOME/world}"
MILLRACE_CACHE="$MILLRACE_HOME/cache"
MILLRACE_BIN="$MILLRACE_HOME/bin"
export MILLRACE_REPO MILLRACE_HOME MILLRACE_WORLD MILLRACE_CACHE MILLRACE_BIN

PIDS_DIR="$MILLRACE_WORLD/pids"
LOGS_DIR="$MILLRACE_WORLD/logs"
DATA_DIR="$MILLRACE_WORLD/data"
CERTS_DIR="$MILLRACE_WORLD/certs"
ENV_FILE="$MILLRACE_WORLD/env"

# Ports, all on loopback. Overridable so two worlds can share a machine.
ETCD_CLIENT_PORT="${MILLRACE_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${MILLRACE_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${MILLRACE_APISERVER_PORT:-16443}"
KAFKA_PORT="${MILLRACE_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${MILLRACE_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_SASL_PORT="${MILLRACE_KAFKA_SASL_PORT:-19094}"
# TLS listeners, by default just above the SASL one: SSL (server
# certificate only), SASL_SSL (SCRAM), and SSL requiring a client certificate.
KAFKA_SSL_PORT="${MILLRACE_KAFKA_SSL_PORT:-$((KAFKA_PORT + 3))}"
KAFKA_SASL_SSL_PORT="${MILLRACE_KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 4))}"
KAFKA_MTLS_PORT="${MILLRACE_KAFKA_MTLS_PORT:-$((KAFKA_PORT + 5))}"
CASSANDRA_CQL_PORT="${MILLRACE_CASSANDRA_PORT:-19042}"
# The schema registry's HTTP port, by default 18081 beside Kafka's 19092, and
# as far below the Kafka port of any other world (the fault suite's).
SCHEMA_REGISTRY_PORT="${MILLRACE_SCHEMA_REGISTRY_PORT:-$((KAFKA_PORT - 1011))}"
# The same registry over HTTPS, with a certificate from a CA of the world's.
SCHEMA_REGISTRY_TLS_PORT="${MILLRACE_SCHEMA_REGISTRY_TLS_PORT:-$((SCHEMA_REGISTRY_PORT + 1))}"
CASSANDRA_STORAGE_PORT="${MILLRACE_CASSANDRA_STORAGE_PORT:-17000}"
CASSANDRA_JMX_PORT="${MILLRACE_CASSANDRA_JMX_PORT:-17199}"

# Versions of the real programs the world runs.
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
K8S_VERSION="${K8S_VERSION:-v1.36.3}"
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
CASSANDRA_VERSION="${CASSANDRA_VERSION:-5.0.9}"

mkdir -p "$MILLRACE_CACHE" "$MILLRACE_BIN"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# tls_ca DIR NAME CN: a self-signed CA (DIR/NAME.key, DIR/NAME.crt), unless
# present. Keys are PKCS#8 PEM, unencrypted (what Kafka's PEM stores and
# librdkafka read).
tls_ca() {
  local d="$1" name="$2" cn="$3"
  [[ -s "$d/$name.crt" && -s "$d/$name.key" ]] && return 0
  mkdir -p "$d"
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$d/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
    -out "$d/$name.crt" 2>/dev/null
}

# tls_cert DIR CA NAME SUBJECT EXT_LINES...: key + cert signed by CA (both
# in DIR), unless present.
tls_cert() {
  local d="$1" ca="$2" name="$3" subj="$4"; shift 4
  [[ -s "$d/$name.crt" && -s "$d/$name.key" ]] && return 0
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null
  openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
  printf '%s\n' "basicConstraints = critical, CA:FALSE" \
    "keyUsage = critical, digitalSignature, keyEncipherment" "$@" >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/$ca.crt" -CAkey "$d/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt.tmp" 2>/dev/null
  mv -f "$d/$name.crt.tmp" "$d/$name.crt"
  rm -f "$d/$name.csr" "$d/$name.ext" "$d/$ca.srl"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...
# Polls COMMAND every half second until it succeeds or the deadline passes.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

pid_of() { cat "$PIDS_DIR/$1.pid" 2>/dev/null || true; }

is_running() {
  local pid; pid="$(pid_of "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# start_daemon NAME COMMAND...
# Starts COMMAND in its own session, logging to $LOGS_DIR/NAME.log, and
# records its pid so `down` stops exactly what `up` started.
start_daemon() {
  local name="$1"; shift
  mkdir -p "$PIDS_DIR" "$LOGS_DIR"
  if is_running "$name"; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  log "starting $name"
  setsid "$@" >>"$LOGS_DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$PIDS_DIR/$name.pid"
}

# stop_daemon NAME [GRACE_SECONDS]
# SIGTERM to the recorded pid's process group, then SIGKILL after the grace.
stop_daemon() {
  local name="$1" grace="${2:-20}" pid
  pid="$(pid_of "$name")"
  if [[ -z "$pid" ]]; then return 0; fi
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in ${grace}s; killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDS_DIR/$name.pid"
}

# rss_kb PID: resident set size of a process and its children, in KiB.
rss_kb() {
  local pid="$1" total=0 p
  for p in $pid $(pgrep -P "$pid" 2>/dev/null || true); do
    total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
