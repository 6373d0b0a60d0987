# The test world's schema registry: Apicurio Registry, whose ccompat API is
# Confluent's Schema Registry REST API, built from its jars on Maven Central
# (tests/env/registry/pom.xml), and the Avro producer of Confluent's Python
# client (tests/env/avro-produce). Sourced after common.sh and data.sh.
#
#   registry_provision / registry_start / registry_wait [SECS] / registry_stop / registry_version
#   registry_get PATH                  GET PATH under the ccompat base URL; body on stdout
#   avro_provision                     the venv of tests/env/avro-produce
#   registry_env                       `export NAME='value'` lines for $MILLRACE_WORLD/env
#
# Every function is idempotent. See data-readme.md.
# shellcheck shell=bash

APICURIO_VERSION="${APICURIO_VERSION:-2.4.2.Final}"
# The Quarkus that Apicurio $APICURIO_VERSION is built with (its parent POM's
# quarkus.version): the plugin builds the application with the same one.
APICURIO_QUARKUS_VERSION="${APICURIO_QUARKUS_VERSION:-2.16.4.Final}"
# The application as Apicurio ships it (a Quarkus "legacy jar"):
# registry-runner.jar and lib/.
REGISTRY_HOME="$MILLRACE_CACHE/apicurio-registry-$APICURIO_VERSION"
REGISTRY_PORT="$SCHEMA_REGISTRY_PORT"
REGISTRY_CCOMPAT_PATH=/apis/ccompat/v7
REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT$REGISTRY_CCOMPAT_PATH"
# HTTPS on a port of its own, with a certificate (for 127.0.0.1 and
# localhost) from a private CA: what a registry inside a cluster, behind
# cert-manager, looks like to the sink.
REGISTRY_TLS_PORT="$SCHEMA_REGISTRY_TLS_PORT"
REGISTRY_TLS_URL="https://127.0.0.1:$REGISTRY_TLS_PORT$REGISTRY_CCOMPAT_PATH"
REGISTRY_TLS_DIR="$MILLRACE_WORLD/registry-tls"
REGISTRY_DATA_DIR="$DATA_DIR/registry"
REGISTRY_HEAP="${MILLRACE_SCHEMA_REGISTRY_HEAP:-256m}"

CONFLUENT_KAFKA_VERSION="${CONFLUENT_KAFKA_VERSION:-2.16.1}"
AVRO_VENV="$MILLRACE_CACHE/avro-venv-$CONFLUENT_KAFKA_VERSION"

# registry_provision: build the Quarkus application once into $REGISTRY_HOME
# (marker $REGISTRY_HOME/.complete).
registry_provision() {
  local dest="$REGISTRY_HOME" tmp t0=$SECONDS lock
  [[ -f "$dest/.complete" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed to build Apicurio Registry)"
  exec {lock}>"$dest.lock"
  flock "$lock"
  if [[ ! -f "$dest/.complete" ]]; then
    log "building Apicurio Registry $APICURIO_VERSION from Maven Central"
    tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$_DATA_SRC/registry/pom.xml" \
        "-Dapicurio.version=$APICURIO_VERSION" "-Dquarkus.version=$APICURIO_QUARKUS_VERSION" \
        "-Dregistry.build.dir=$tmp/build" package >&2; then
      rm -rf "$tmp"
      die "could not build Apicurio Registry $APICURIO_VERSION"
    fi
    [[ -f "$tmp/build/schema-registry-0-runner.jar" && -d "$tmp/build/lib" ]] \
      || { rm -rf "$tmp"; die "the build made no schema-registry-0-runner.jar and lib/"; }
    # The runner jar's manifest names its jars as lib/...: keep them side by side.
    mv "$tmp/build/schema-registry-0-runner.jar" "$tmp/registry-runner.jar"
    mv "$tmp/build/lib" "$tmp/lib"
    rm -rf "$tmp/build" "$dest"
    mv "$tmp" "$dest"
    touch "$dest/.complete"
    log "built Apicurio Registry $APICURIO_VERSION in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
  fi
  exec {lock}>&-
}

# registry_start: the registry, unless it runs. Its schemas are kept in an
# H2 database file under the world's data directory, so ids survive a
# restart (a sink that stopped on a registry outage finds them again).
# Not registry.ccompat.use-canonical-hash: Apicurio 2.4's canonical form
# sorts a record's fields, so GET /schemas/ids/N would return a schema whose
# field order differs from the one the bytes were written with.
registry_start() {
  registry_provision
  if is_running registry; then
    log "registry already running (pid $(pid_of registry))"
    return 0
  fi
  registry_tls_make
  mkdir -p "$REGISTRY_DATA_DIR/tmp" "$LOGS_DIR"
  REGISTRY_STARTED_AT=$SECONDS
  start_daemon registry java -Xms64m "-Xmx$REGISTRY_HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true "-Djava.io.tmpdir=$REGISTRY_DATA_DIR/tmp" \
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT" \
    "-Dquarkus.http.ssl-port=$REGISTRY_TLS_PORT" \
    "-Dquarkus.http.ssl.certificate.files=$REGISTRY_TLS_DIR/registry.crt" \
    "-Dquarkus.http.ssl.certificate.key-files=$REGISTRY_TLS_DIR/registry.key" \
    "-Dquarkus.datasource.jdbc.url=jdbc:h2:file:$REGISTRY_DATA_DIR/registry" \
    -jar "$REGISTRY_HOME/registry-runner.jar"
}

# registry_tls_make: the registry's CA and its server certificate, unless
# present.
registry_tls_make() {
  local d="$REGISTRY_TLS_DIR"
  tls_ca "$d" ca millrace-world-registry-ca
  tls_cert "$d" ca registry "/CN=registry" "extendedKeyUsage = serverAuth" \
    "subjectAltName = IP:127.0.0.1, DNS:localhost"
  chmod 600 "$d"/*.key
}

# registry_get PATH: GET $REGISTRY_URL/PATH (HTTP/1.0 over bash's /dev/tcp,
# so nothing else is needed); the body on stdout; fails unless the status is 200.
registry_get() {
  local path="$1" line status
  exec 3<>"/dev/tcp/127.0.0.1/$REGISTRY_PORT" || return 1
  printf 'GET %s/%s HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n' \
    "$REGISTRY_CCOMPAT_PATH" "${path#/}" >&3
  IFS= read -r -t 10 line <&3 || { exec 3<&-; return 1; }
  status="$(awk '{print $2}' <<<"$line")"
  # Headers end at the first empty line.
  while IFS= read -r -t 10 line <&3; do [[ "${line%$'\r'}" == "" ]] && break; done
  cat <&3
  exec 3<&-
  [[ "$status" == 200 ]]
}

registry_wait() {
  local timeout="${1:-120}" deadline
  deadline=$((SECONDS + timeout))
  until registry_get subjects >/dev/null 2>&1; do
    is_running registry || _data_died registry || return 1
    ((SECONDS < deadline)) || { log "registry: no answer at $REGISTRY_URL after ${timeout}s"; return 1; }
    sleep 0.5
  done
  [[ -n "${REGISTRY_STARTED_AT:-}" ]] && log "registry ready $((SECONDS - REGISTRY_STARTED_AT))s after start"
  return 0
}

registry_stop() { stop_daemon registry "${1:-20}"; }

registry_version() { echo "Apicurio Registry $APICURIO_VERSION"; }

# avro_provision: confluent-kafka (its Avro serializer and Schema Registry
# client, with what they import) in a venv of its own.
avro_provision() {
  _avro_ok() {
    [[ -x "$AVRO_VENV/bin/python" ]] && "$AVRO_VENV/bin/python" -c \
      'import confluent_kafka.schema_registry.avro, fastavro' 2>/dev/null
  }
  _avro_ok && return 0
  local lock
  exec {lock}>"$AVRO_VENV.lock"
  flock "$lock"
  if ! _avro_ok; then
    log "installing confluent-kafka $CONFLUENT_KAFKA_VERSION into $AVRO_VENV"
    [[ -x "$AVRO_VENV/bin/python" ]] || python3 -m venv "$AVRO_VENV" || die "python3 -m venv failed"
    "$AVRO_VENV/bin/pip" install -q "confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION" >&2 \
      || die "pip install confluent-kafka failed"
  fi
  exec {lock}>&-
}

# registry_env: the registry's lines for $MILLRACE_WORLD/env.
registry_env() {
  printf 'export %s=%s\n' \
    MILLRACE_SCHEMA_REGISTRY_URL "$(_data_shq "$REGISTRY_URL")" \
    MILLRACE_SCHEMA_REGISTRY_TLS_URL "$(_data_shq "$REGISTRY_TLS_URL")" \
    MILLRACE_SCHEMA_REGISTRY_CA "$(_data_shq "$REGISTRY_TLS_DIR/ca.crt")"
}
