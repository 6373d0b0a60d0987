# The test world's data plane: Apache Kafka (KRaft, combined broker+controller
# nodes) and Apache Cassandra, run from their jars on Maven Central, plus cqlsh
# from PyPI. One broker and one node by default; MILLRACE_KAFKA_BROKERS=3 and
# MILLRACE_CASSANDRA_NODES=3 make the multi-node world (replication 3).
# Sourced after common.sh, never run.
#
#   kafka_provision / kafka_start / kafka_wait [SECS] / kafka_stop / kafka_version
#   kafka_daemons                     the brokers' daemon names (kafka, or kafka-1..N)
#   kafka_start_one NAME / kafka_wait_one NAME [SECS]
#   kafka_run TOOL|CLASS ARGS...      Kafka's own CLI tools (topics, console-producer, ...)
#   cassandra_provision / cassandra_start / cassandra_wait [SECS] / cassandra_stop / cassandra_version
#   cassandra_daemons                 the nodes' daemon names (cassandra, or cassandra-1..N)
#   cassandra_start_one NAME / cassandra_wait_one NAME [SECS]
#   cqlsh_provision / cql "STATEMENT" [CQLSH_ARGS...]
#   cassandra_setup_roles             superuser "millrace" with a generated password
#   data_env                          `export NAME='value'` lines for $MILLRACE_WORLD/env
#
# Every function is idempotent. See data-readme.md for versions, flags, timings.
# shellcheck shell=bash

KAFKA_HOME="$MILLRACE_CACHE/kafka-$KAFKA_VERSION"                 # lib/*.jar
CASSANDRA_HOME="$MILLRACE_CACHE/cassandra-$CASSANDRA_VERSION"     # lib/*.jar
CQLSH_VENV="$MILLRACE_CACHE/venv"
CQLSH_VERSION="${CQLSH_VERSION:-6.2.2}"

KAFKA_BROKERS="${MILLRACE_KAFKA_BROKERS:-1}"
CASSANDRA_NODES="${MILLRACE_CASSANDRA_NODES:-1}"
[[ "$KAFKA_BROKERS" =~ ^[1-9]$ ]] || die "MILLRACE_KAFKA_BROKERS must be 1 to 9, not $KAFKA_BROKERS"
[[ "$CASSANDRA_NODES" =~ ^[1-9]$ ]] || die "MILLRACE_CASSANDRA_NODES must be 1 to 9, not $CASSANDRA_NODES"

KAFKA_PASSWORD_FILE="$MILLRACE_WORLD/kafka-password"
# Every broker of one cluster is formatted with the same id.
KAFKA_CLUSTER_ID_FILE="$MILLRACE_WORLD/kafka-cluster-id"
KAFKA_SCRAM_PENDING="$MILLRACE_WORLD/conf/kafka-scram-pending"
# Set once the user has credentials for both SCRAM mechanisms: a world
# formatted before SCRAM-SHA-256 was enabled gets its credential on the next
# start (kafka_wait).
KAFKA_SCRAM_BOTH="$MILLRACE_WORLD/conf/kafka-scram-sha-256-set"
KAFKA_USERNAME=millrace
# The Kafka listeners' certificates, shaped as Strimzi makes them: a cluster
# CA signs the brokers', a clients CA signs the users'.
KAFKA_TLS_DIR="$MILLRACE_WORLD/kafka-tls"
# The user of the mutual-TLS listener (the CN of its certificate).
KAFKA_TLS_USER=millrace-tls
# Internal topics, and topics created without a factor, get a copy on every
# broker (at most 3). With copies on more than one broker, a write
# acknowledged to an acks=all producer is on at least two, as in production.
KAFKA_REPLICATION="${MILLRACE_KAFKA_REPLICATION:-$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3))}"
KAFKA_MIN_ISR="${MILLRACE_KAFKA_MIN_ISR:-$((KAFKA_REPLICATION > 1 ? 2 : 1))}"
# Three brokers must fit beside three Cassandra nodes on one machine.
KAFKA_HEAP="${MILLRACE_KAFKA_HEAP:-$((KAFKA_BROKERS > 1 ? 384 : 512))m}"
# Extra JVM options (space-separated), e.g. -XX:NativeMemoryTracking=summary.
KAFKA_EXTRA_JVM_OPTS="${MILLRACE_KAFKA_JVM_OPTS:-}"

# Where cqlsh's credentials files go (one per call, removed after it).
CASSANDRA_CONF_DIR="$MILLRACE_WORLD/conf/cassandra"
CASSANDRA_PASSWORD_FILE="$MILLRACE_WORLD/cassandra-password"
CASSANDRA_USERNAME=millrace
CASSANDRA_LOCAL_DC=datacenter1
# Client encryption: one CA signs the nodes' certificate and the clients'.
# The nodes take TLS and plaintext on the one CQL port, and a TLS client must
# present a certificate that CA signed (Cassandra 5.0 has no "optional"
# client authentication): see cassandra.yaml.in.
CASSANDRA_TLS_DIR="$MILLRACE_WORLD/cassandra-tls"
# A second Cassandra, a cluster of one node of its own (daemon
# "cassandra-tls"), whose CQL port takes TLS only and asks for no client
# certificate: what most managed and k8ssandra clusters look like, and what
# the world's own nodes cannot show, since Cassandra 5.0 either requires a
# client certificate or never asks for one. Its login is the default
# superuser (cassandra/cassandra): it holds nothing but the tests' data.
CASSANDRA_TLS_ONLY_ADDRESS="${MILLRACE_CASSANDRA_TLS_ONLY_ADDRESS:-127.0.3.1}"
CASSANDRA_TLS_ONLY_HEAP="${MILLRACE_CASSANDRA_TLS_ONLY_HEAP:-512M}"
CASSANDRA_TLS_USER=millrace-cassandra-client
# Only the keystores' own lock: they hold nothing but the world's test CA.
CASSANDRA_TLS_STORE_PASSWORD=millrace-world
# Nodes of a multi-node world listen on PREFIX.1, PREFIX.2, ...: Cassandra
# wants the same storage port on every node, so each needs an address of its
# own; any 127.x.y.z is loopback on Linux.
CASSANDRA_ADDRESS_PREFIX="${MILLRACE_CASSANDRA_ADDRESS_PREFIX:-127.0.1}"
# Heap capped at 1 GiB but starting small: with -Xms1G the JVM's resident
# memory at rest is ~1.5 GiB, with -Xms256m ~0.75 GiB (see data-readme.md).
# 512 MiB each when there are several nodes, so three fit the machine.
if ((CASSANDRA_NODES > 1)); then CASSANDRA_HEAP="${MILLRACE_CASSANDRA_HEAP:-512M}"
else CASSANDRA_HEAP="${MILLRACE_CASSANDRA_HEAP:-1G}"; fi
CASSANDRA_HEAP_MIN="${MILLRACE_CASSANDRA_HEAP_MIN:-256m}"
CASSANDRA_EXTRA_JVM_OPTS="${MILLRACE_CASSANDRA_JVM_OPTS:-}"
# Memtable space, on heap and off heap each: empty for Cassandra's own
# default, a quarter of the heap (see "Memtables and GC" in data-readme.md).
CASSANDRA_MEMTABLE_SPACE="${MILLRACE_CASSANDRA_MEMTABLE_SPACE:-}"
[[ -z "$CASSANDRA_MEMTABLE_SPACE" || "$CASSANDRA_MEMTABLE_SPACE" =~ ^[0-9]+MiB$ ]] ||
  die "MILLRACE_CASSANDRA_MEMTABLE_SPACE must be a size in MiB, such as 64MiB, not $CASSANDRA_MEMTABLE_SPACE"
# How the commitlog is synced: `periodic` (Cassandra's default: a write is
# acknowledged before it is on disk, and a kill -9 loses those acknowledged
# since the last sync marker) or `group` (acknowledged once synced, in groups
# every 15 ms: durable, a little slower). The fault suite uses `group`.
CASSANDRA_COMMITLOG_SYNC="${MILLRACE_CASSANDRA_COMMITLOG_SYNC:-periodic}"

_DATA_SRC="$MILLRACE_REPO/tests/env"

# ---------------------------------------------------------------- helpers ---

# _data_render TEMPLATE OUTPUT VAR...: copy TEMPLATE to OUTPUT replacing each
# literal ${VAR} with the variable's value; fails if one is left outside comments.
_data_render() {
  local in="$1" out="$2" text name pat; shift 2
  text="$(<"$in")"
  for name in "$@"; do
    [[ -v "$name" ]] || die "_data_render: \$$name is not set"
    pat="\${$name}"
    text="${text//"$pat"/"${!name}"}"
  done
  local left
  # shellcheck disable=SC2016
  left="$(grep -v '^[[:space:]]*#' <<<"$text" | grep -o '\${[A-Za-z_]*}' | head -n1)" || true
  [[ -z "$left" ]] || die "$in: $left is not replaced"
  mkdir -p "$(dirname "$out")"
  printf '%s\n' "$text" >"$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
}

# _data_password FILE: create FILE (mode 600) with a random alphanumeric
# password unless it exists. Alphanumeric so it needs no quoting anywhere
# (SCRAM credential syntax, CQL string literals, shell).
_data_password() {
  local file="$1" pw
  [[ -s "$file" ]] && return 0
  mkdir -p "$(dirname "$file")"
  pw="$(head -c 64 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 24)"
  (umask 077 && printf '%s\n' "$pw" >"$file.tmp.$$")
  mv -f "$file.tmp.$$" "$file"
  chmod 600 "$file"
}

_data_read_password() {
  [[ -s "$1" ]] || die "$1 is missing; $2 creates it"
  head -n1 "$1"
}

# _data_fetch NAME POM VERSION_PROPERTY VERSION DEST: copy the runtime
# dependencies of POM into DEST/lib once (marker DEST/.complete).
_data_fetch() {
  local name="$1" pom="$2" prop="$3" version="$4" dest="$5" tmp t0=$SECONDS lock
  [[ -f "$dest/.complete" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed to fetch $name)"
  # One fetch at a time per version, whoever else provisions concurrently.
  exec {lock}>"$dest.lock"
  flock "$lock"
  if [[ ! -f "$dest/.complete" ]]; then
    log "fetching $name $version from Maven Central"
    tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$pom" "-D$prop=$version" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >&2; then
      rm -rf "$tmp"
      die "could not fetch $name $version"
    fi
    rm -rf "$dest"
    mv "$tmp" "$dest"
    touch "$dest/.complete"
    log "fetched $name $version in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
  fi
  exec {lock}>&-
}

# _data_port_open PORT [HOST=127.0.0.1]
_data_port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# _data_died NAME: the daemon exited; show why and fail.
_data_died() {
  log "$1 exited; last lines of $LOGS_DIR/$1.log:"
  tail -n 40 "$LOGS_DIR/$1.log" >&2 || true
  rm -f "$PIDS_DIR/$1.pid"
  return 1
}

# ------------------------------------------------------------------ kafka ---

kafka_provision() {
  _data_fetch Kafka "$_DATA_SRC/kafka/pom.xml" kafka.version "$KAFKA_VERSION" "$KAFKA_HOME"
}

# kafka_daemons: the brokers' daemon names, one a line: `kafka` when the
# world has one (as it always had), else kafka-1 .. kafka-N.
kafka_daemons() {
  if ((KAFKA_BROKERS == 1)); then echo kafka; return; fi
  local i
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do echo "kafka-$i"; done
}

# _kafka_node NAME: sets KAFKA_NODE_{ID,PORT,SASL_PORT,SSL_PORT,SASL_SSL_PORT,
# MTLS_PORT,CONTROLLER_PORT,DATA_DIR,CONF_DIR}
# for broker NAME. Broker i listens on 127.0.0.1, on the world's ports + 10*(i-1).
_kafka_node() {
  local i
  case "$1" in
    kafka)
      ((KAFKA_BROKERS == 1)) || die "this world's brokers are kafka-1 .. kafka-$KAFKA_BROKERS"
      i=1
      KAFKA_NODE_DATA_DIR="$DATA_DIR/kafka"
      KAFKA_NODE_CONF_DIR="$MILLRACE_WORLD/conf/kafka" ;;
    kafka-[1-9])
      i="${1#kafka-}"
      ((KAFKA_BROKERS > 1 && i <= KAFKA_BROKERS)) || die "this world has no broker $1"
      KAFKA_NODE_DATA_DIR="$DATA_DIR/$1"
      KAFKA_NODE_CONF_DIR="$MILLRACE_WORLD/conf/$1" ;;
    *) die "no Kafka broker is called $1" ;;
  esac
  KAFKA_NODE_ID="$i"
  KAFKA_NODE_PORT=$((KAFKA_PORT + 10 * (i - 1)))
  KAFKA_NODE_SASL_PORT=$((KAFKA_SASL_PORT + 10 * (i - 1)))
  KAFKA_NODE_SSL_PORT=$((KAFKA_SSL_PORT + 10 * (i - 1)))
  KAFKA_NODE_SASL_SSL_PORT=$((KAFKA_SASL_SSL_PORT + 10 * (i - 1)))
  KAFKA_NODE_MTLS_PORT=$((KAFKA_MTLS_PORT + 10 * (i - 1)))
  KAFKA_NODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + 10 * (i - 1)))
}

# _kafka_list PORT_VAR: host:port of every broker for one listener
# (KAFKA_NODE_PORT or KAFKA_NODE_SASL_PORT), comma-separated.
_kafka_list() {
  local var="$1" name out=()
  for name in $(kafka_daemons); do
    _kafka_node "$name"
    out+=("127.0.0.1:${!var}")
  done
  (IFS=,; echo "${out[*]}")
}

# Every broker is also a controller: the controllers' quorum is the brokers.
_kafka_voters() {
  local name out=()
  for name in $(kafka_daemons); do
    _kafka_node "$name"
    out+=("$KAFKA_NODE_ID@127.0.0.1:$KAFKA_NODE_CONTROLLER_PORT")
  done
  (IFS=,; echo "${out[*]}")
}

# A small, quick-starting JVM for Kafka's tools, logging WARN to stderr.
_KAFKA_TOOL_JAVA=(java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
  -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$_DATA_SRC/kafka/log4j2.xml"
  -Dmillrace.log.level=WARN -Dmillrace.log.target=SYSTEM_ERR -Dlog4j2.shutdownHookEnabled=false
  -cp "$KAFKA_HOME/lib/*")

# kafka_run TOOL|CLASS ARGS...: one of Kafka's command-line tools in a small,
# quick-starting JVM, logging WARN to stderr. TOOL is the kafka-*.sh name
# without prefix/suffix (topics, console-producer, ...), or a full class name.
kafka_run() {
  local tool="$1" class; shift
  case "$tool" in
    topics)              class=org.apache.kafka.tools.TopicCommand ;;
    console-producer)    class=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer)    class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups)     class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    configs)             class=org.apache.kafka.tools.ConfigCommand ;;
    acls)                class=org.apache.kafka.tools.AclCommand ;;
    broker-api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    metadata-quorum)     class=org.apache.kafka.tools.MetadataQuorumCommand ;;
    get-offsets)         class=org.apache.kafka.tools.GetOffsetShell ;;
    storage)             class=kafka.tools.StorageTool ;;
    *.*)                 class="$tool" ;;
    *)                   die "kafka_run: unknown tool $tool" ;;
  esac
  "${_KAFKA_TOOL_JAVA[@]}" "$class" "$@"
}

# kafka_tls_make: the CAs and certificates of the TLS listeners, each made
# only if missing. other-ca is a CA that signed nothing, for tests of a
# wrong CA.
kafka_tls_make() {
  local d="$KAFKA_TLS_DIR"
  tls_ca "$d" cluster-ca millrace-world-kafka-cluster-ca
  tls_ca "$d" clients-ca millrace-world-kafka-clients-ca
  tls_ca "$d" other-ca millrace-world-unrelated-ca
  tls_cert "$d" cluster-ca broker "/CN=kafka" "extendedKeyUsage = serverAuth" \
    "subjectAltName = IP:127.0.0.1, DNS:localhost"
  tls_cert "$d" clients-ca "$KAFKA_TLS_USER" "/CN=$KAFKA_TLS_USER" "extendedKeyUsage = clientAuth"
  # Kafka's PEM key store: the private key, then the certificate.
  [[ -s "$d/broker.pem" ]] || cat "$d/broker.key" "$d/broker.crt" >"$d/broker.pem"
  chmod 600 "$d"/*.key "$d/broker.pem"
}

# kafka_client_config FILE: write a client properties file for the SASL listener.
kafka_client_config() {
  local pw; pw="$(_data_read_password "$KAFKA_PASSWORD_FILE" kafka_start)"
  (umask 077 && cat >"$1" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_USERNAME" password="$pw";
EOF
  )
}

# kafka_start: every broker of the world that is not running.
kafka_start() {
  local name
  for name in $(kafka_daemons); do kafka_start_one "$name"; done
}

kafka_start_one() {
  local name="$1"
  kafka_provision
  _kafka_node "$name"
  if is_running "$name"; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  local KAFKA_VOTERS
  KAFKA_VOTERS="$(_kafka_voters)"
  _kafka_node "$name"
  mkdir -p "$KAFKA_NODE_DATA_DIR" "$KAFKA_NODE_CONF_DIR" "$LOGS_DIR"
  kafka_tls_make
  _data_render "$_DATA_SRC/kafka/server.properties.in" "$KAFKA_NODE_CONF_DIR/server.properties" \
    KAFKA_NODE_ID KAFKA_VOTERS KAFKA_NODE_PORT KAFKA_NODE_SASL_PORT KAFKA_NODE_CONTROLLER_PORT \
    KAFKA_NODE_SSL_PORT KAFKA_NODE_SASL_SSL_PORT KAFKA_NODE_MTLS_PORT KAFKA_TLS_DIR \
    KAFKA_NODE_DATA_DIR KAFKA_REPLICATION KAFKA_MIN_ISR

  local formatted=false
  [[ -f "$KAFKA_NODE_DATA_DIR/meta.properties" ]] && formatted=true
  if [[ ! -s "$KAFKA_PASSWORD_FILE" ]]; then
    _data_password "$KAFKA_PASSWORD_FILE"
    # Formatted earlier with a password that is now lost: set the new one
    # through the running brokers (kafka_wait does it).
    $formatted && touch "$KAFKA_SCRAM_PENDING"
  fi
  if ! $formatted; then
    local cluster_id pw
    if [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
      # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding.
      head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' >"$KAFKA_CLUSTER_ID_FILE"
    fi
    cluster_id="$(head -n1 "$KAFKA_CLUSTER_ID_FILE")"
    pw="$(head -n1 "$KAFKA_PASSWORD_FILE")"
    log "formatting the storage of $name (cluster id $cluster_id)"
    kafka_run storage format --config "$KAFKA_NODE_CONF_DIR/server.properties" \
      --cluster-id "$cluster_id" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_USERNAME,password=$pw]" \
      --add-scram "SCRAM-SHA-256=[name=$KAFKA_USERNAME,password=$pw]" \
      >>"$LOGS_DIR/$name-format.log" 2>&1 \
      || { tail -n 20 "$LOGS_DIR/$name-format.log" >&2; die "formatting the storage of $name failed"; }
    touch "$KAFKA_SCRAM_BOTH"
  fi
  [[ -f "$KAFKA_SCRAM_BOTH" ]] || touch "$KAFKA_SCRAM_PENDING"

  local -a extra=()
  read -r -a extra <<<"$KAFKA_EXTRA_JVM_OPTS"
  KAFKA_STARTED_AT=$SECONDS
  start_daemon "$name" java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$_DATA_SRC/kafka/log4j2.xml" \
    "${extra[@]}" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$KAFKA_NODE_CONF_DIR/server.properties"
}

# kafka_wait [TIMEOUT_SECONDS]: every broker of the world answers.
kafka_wait() {
  local timeout="${1:-120}" name
  for name in $(kafka_daemons); do kafka_wait_one "$name" "$timeout" || return 1; done
  if [[ -f "$KAFKA_SCRAM_PENDING" ]]; then
    log "setting the SCRAM credentials (SHA-512 and SHA-256) of $KAFKA_USERNAME"
    local mechanism
    # One mechanism per request: Kafka refuses two changes of one user's
    # credentials in the same request.
    for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
      kafka_run configs --bootstrap-server "$(_kafka_list KAFKA_NODE_PORT)" --alter \
        --entity-type users --entity-name "$KAFKA_USERNAME" \
        --add-config "$mechanism=[password=$(head -n1 "$KAFKA_PASSWORD_FILE")]" >&2 \
        || { log "kafka: could not set the $mechanism credential"; return 1; }
    done
    rm -f "$KAFKA_SCRAM_PENDING"
    touch "$KAFKA_SCRAM_BOTH"
  fi
  [[ -n "${KAFKA_STARTED_AT:-}" ]] && log "kafka ready $((SECONDS - KAFKA_STARTED_AT))s after start"
  return 0
}

# kafka_wait_one NAME [TIMEOUT_SECONDS]: until broker NAME answers a metadata
# request (topic listing) on its PLAINTEXT listener. The client ports open
# only once the broker is unfenced, so topics can be created as soon as this
# returns.
kafka_wait_one() {
  local name="$1" timeout="${2:-120}" deadline port
  _kafka_node "$name"
  port="$KAFKA_NODE_PORT"
  deadline=$((SECONDS + timeout))
  until _data_port_open "$port"; do
    is_running "$name" || _data_died "$name" || return 1
    ((SECONDS < deadline)) || { log "$name: port $port not open after ${timeout}s"; return 1; }
    sleep 0.5
  done
  until timeout 30 "${_KAFKA_TOOL_JAVA[@]}" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1; do
    is_running "$name" || _data_died "$name" || return 1
    ((SECONDS < deadline)) || { log "$name: no metadata after ${timeout}s"; return 1; }
    sleep 1
  done
}

kafka_stop() {
  local name
  for name in $(kafka_daemons); do stop_daemon "$name" "${1:-30}"; done
}

# kafka_version: the version of the provisioned jars (e.g. 4.4.0).
kafka_version() {
  kafka_provision
  kafka_run kafka.Kafka --version 2>/dev/null | awk 'NR==1 {print $1}'
}

# -------------------------------------------------------------- cassandra ---

cassandra_provision() {
  _data_fetch Cassandra "$_DATA_SRC/cassandra/pom.xml" cassandra.version "$CASSANDRA_VERSION" "$CASSANDRA_HOME"
}

# cassandra_daemons: the nodes' daemon names, one a line: `cassandra` when the
# world has one (as it always had), else cassandra-1 .. cassandra-N.
cassandra_daemons() {
  if ((CASSANDRA_NODES == 1)); then echo cassandra; return; fi
  local i
  for ((i = 1; i <= CASSANDRA_NODES; i++)); do echo "cassandra-$i"; done
}

# _cassandra_node NAME: sets CASSANDRA_NODE_{ADDRESS,JMX_PORT,DATA_DIR,CONF_DIR}
# for node NAME. The single node listens on 127.0.0.1; node i of several on
# $CASSANDRA_ADDRESS_PREFIX.i, each with the world's CQL and storage ports,
# and JMX (which binds to 127.0.0.1) on the world's JMX port + i-1.
_cassandra_node() {
  local i
  case "$1" in
    cassandra)
      ((CASSANDRA_NODES == 1)) || die "this world's nodes are cassandra-1 .. cassandra-$CASSANDRA_NODES"
      i=1
      CASSANDRA_NODE_ADDRESS=127.0.0.1
      CASSANDRA_NODE_DATA_DIR="$DATA_DIR/cassandra"
      CASSANDRA_NODE_CONF_DIR="$MILLRACE_WORLD/conf/cassandra" ;;
    cassandra-[1-9])
      i="${1#cassandra-}"
      ((CASSANDRA_NODES > 1 && i <= CASSANDRA_NODES)) || die "this world has no node $1"
      CASSANDRA_NODE_ADDRESS="$CASSANDRA_ADDRESS_PREFIX.$i"
      CASSANDRA_NODE_DATA_DIR="$DATA_DIR/$1"
      CASSANDRA_NODE_CONF_DIR="$MILLRACE_WORLD/conf/$1" ;;
    cassandra-tls)
      i=10
      CASSANDRA_NODE_ADDRESS="$CASSANDRA_TLS_ONLY_ADDRESS"
      CASSANDRA_NODE_DATA_DIR="$DATA_DIR/cassandra-tls"
      CASSANDRA_NODE_CONF_DIR="$MILLRACE_WORLD/conf/cassandra-tls" ;;
    *) die "no Cassandra node is called $1" ;;
  esac
  CASSANDRA_NODE_JMX_PORT=$((CASSANDRA_JMX_PORT + i - 1))
}

# The first node is the seed and where cql connects; its data directory
# holds the marker of the millrace role.
_cassandra_node "$(cassandra_daemons | head -n1)"
CASSANDRA_SEED_ADDRESS="$CASSANDRA_NODE_ADDRESS"
CASSANDRA_ROLE_MARKER="$CASSANDRA_NODE_DATA_DIR/.millrace-role"

# _cassandra_list: host:port of every node's CQL listener, comma-separated.
_cassandra_list() {
  local name out=()
  for name in $(cassandra_daemons); do
    _cassandra_node "$name"
    out+=("$CASSANDRA_NODE_ADDRESS:$CASSANDRA_CQL_PORT")
  done
  (IFS=,; echo "${out[*]}")
}

# The JVM options of bin/cassandra + conf/jvm-server.options +
# conf/jvm17-server.options that matter, for Java 17; for the node
# _cassandra_node chose last.
_cassandra_jvm_opts() {
  local jamm
  jamm="$(compgen -G "$CASSANDRA_HOME/lib/jamm-*.jar" | head -n1)" || true
  [[ -n "$jamm" ]] || die "jamm jar missing from $CASSANDRA_HOME/lib"
  printf '%s\n' \
    -Xms"$CASSANDRA_HEAP_MIN" -Xmx"$CASSANDRA_HEAP" \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 \
    -XX:G1HeapRegionSize=16m -XX:G1RSetUpdatingPauseTimePercent=5 \
    -XX:MaxGCPauseMillis=100 -XX:InitiatingHeapOccupancyPercent=70 \
    -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem -XX:+UseTLAB -XX:+ResizeTLAB \
    -XX:StringTableSize=1000003 -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true \
    "-javaagent:$jamm" \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    --add-opens java.base/java.nio=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true \
    -Dio.netty.allocator.useCacheForAllThreads=true \
    -Dio.netty.allocator.maxOrder=11 \
    "-Dcassandra.config=file://$CASSANDRA_NODE_CONF_DIR/cassandra.yaml" \
    "-Dlogback.configurationFile=$_DATA_SRC/cassandra/logback.xml" \
    -Dcassandra-foreground=yes \
    "-Dcassandra.storagedir=$CASSANDRA_NODE_DATA_DIR" \
    "-Dcassandra.logdir=$LOGS_DIR" \
    "-Dcassandra.jmx.local.port=$CASSANDRA_NODE_JMX_PORT" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    "-Dcassandra.triggers_dir=$CASSANDRA_NODE_CONF_DIR/triggers"
  local -a extra=()
  read -r -a extra <<<"$CASSANDRA_EXTRA_JVM_OPTS"
  ((${#extra[@]} == 0)) || printf '%s\n' "${extra[@]}"
}

# cassandra_tls_make: the world's Cassandra CA, a certificate every node
# presents (its SANs name every node address the world may use), a client
# certificate, and the PKCS#12 key store and trust store Cassandra reads.
# The TLS-only node's certificate is signed by the same CA (tls-only-ca.crt).
# An unrelated CA (other-ca) lets tests show a wrong CA is refused.
cassandra_tls_make() {
  local d="$CASSANDRA_TLS_DIR" i sans="IP:127.0.0.1, DNS:localhost"
  for ((i = 1; i <= 9; i++)); do sans+=", IP:$CASSANDRA_ADDRESS_PREFIX.$i"; done
  tls_ca "$d" ca millrace-world-cassandra-ca
  tls_ca "$d" other-ca millrace-world-unrelated-ca
  tls_cert "$d" ca node "/CN=cassandra" "extendedKeyUsage = serverAuth" "subjectAltName = $sans"
  tls_cert "$d" ca "$CASSANDRA_TLS_USER" "/CN=$CASSANDRA_TLS_USER" "extendedKeyUsage = clientAuth"
  tls_cert "$d" other-ca untrusted-client "/CN=untrusted-client" "extendedKeyUsage = clientAuth"
  tls_cert "$d" ca tls-only-node "/CN=cassandra-tls" "extendedKeyUsage = serverAuth" \
    "subjectAltName = IP:$CASSANDRA_TLS_ONLY_ADDRESS"
  if [[ ! -s "$d/tls-only-keystore.p12" ]]; then
    openssl pkcs12 -export -name node -in "$d/tls-only-node.crt" -inkey "$d/tls-only-node.key" \
      -certfile "$d/ca.crt" -passout "pass:$CASSANDRA_TLS_STORE_PASSWORD" \
      -out "$d/tls-only-keystore.p12.tmp" \
      && mv -f "$d/tls-only-keystore.p12.tmp" "$d/tls-only-keystore.p12" \
      || die "could not make the TLS-only node's key store"
  fi
  if [[ ! -s "$d/keystore.p12" ]]; then
    openssl pkcs12 -export -name node -in "$d/node.crt" -inkey "$d/node.key" -certfile "$d/ca.crt" \
      -passout "pass:$CASSANDRA_TLS_STORE_PASSWORD" -out "$d/keystore.p12.tmp" \
      && mv -f "$d/keystore.p12.tmp" "$d/keystore.p12" || die "could not make Cassandra's key store"
  fi
  if [[ ! -s "$d/truststore.p12" ]]; then
    rm -f "$d/truststore.p12.tmp"
    keytool -importcert -noprompt -alias ca -file "$d/ca.crt" -storetype PKCS12 \
      -keystore "$d/truststore.p12.tmp" -storepass "$CASSANDRA_TLS_STORE_PASSWORD" >/dev/null \
      && mv -f "$d/truststore.p12.tmp" "$d/truststore.p12" || die "could not make Cassandra's trust store"
  fi
  # The CA the TLS-only node's certificate chains to, under a name of its
  # own: a cluster elsewhere (make test-kind's) may have another.
  [[ -s "$d/tls-only-ca.crt" ]] || cp "$d/ca.crt" "$d/tls-only-ca.crt"
  chmod 600 "$d"/*.key "$d"/*.p12
}

# cassandra_start: every node of the world that is not running.
cassandra_start() {
  local name
  for name in $(cassandra_daemons); do cassandra_start_one "$name"; done
}

cassandra_start_one() {
  local name="$1"
  cassandra_provision
  _cassandra_node "$name"
  if is_running "$name"; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  mkdir -p "$CASSANDRA_NODE_DATA_DIR"/{data,commitlog,saved_caches,hints,cdc_raw} \
    "$CASSANDRA_NODE_CONF_DIR/triggers" "$LOGS_DIR"
  cassandra_tls_make
  # The world's nodes take TLS and plaintext and require a client
  # certificate; the TLS-only node is its own cluster and its own seed.
  local CASSANDRA_CLUSTER_NAME=millrace CASSANDRA_TLS_OPTIONAL=true
  local CASSANDRA_REQUIRE_CLIENT_AUTH=true CASSANDRA_KEYSTORE="$CASSANDRA_TLS_DIR/keystore.p12"
  local CASSANDRA_SEED_ADDRESS="$CASSANDRA_SEED_ADDRESS" CASSANDRA_HEAP="$CASSANDRA_HEAP"
  if [[ "$name" == cassandra-tls ]]; then
    CASSANDRA_CLUSTER_NAME=millrace-tls-only CASSANDRA_TLS_OPTIONAL=false
    CASSANDRA_REQUIRE_CLIENT_AUTH=false CASSANDRA_KEYSTORE="$CASSANDRA_TLS_DIR/tls-only-keystore.p12"
    CASSANDRA_SEED_ADDRESS="$CASSANDRA_NODE_ADDRESS" CASSANDRA_HEAP="$CASSANDRA_TLS_ONLY_HEAP"
  fi
  local CASSANDRA_MEMTABLE_CONF="# memtable_heap_space and memtable_offheap_space: Cassandra's default, a quarter of the heap"
  [[ -z "$CASSANDRA_MEMTABLE_SPACE" ]] ||
    CASSANDRA_MEMTABLE_CONF="memtable_heap_space: $CASSANDRA_MEMTABLE_SPACE"$'\n'"memtable_offheap_space: $CASSANDRA_MEMTABLE_SPACE"
  local CASSANDRA_COMMITLOG_SYNC_CONF
  case "$CASSANDRA_COMMITLOG_SYNC" in
    periodic) CASSANDRA_COMMITLOG_SYNC_CONF=$'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms' ;;
    group) CASSANDRA_COMMITLOG_SYNC_CONF=$'commitlog_sync: group\ncommitlog_sync_group_window: 15ms' ;;
    *) die "MILLRACE_CASSANDRA_COMMITLOG_SYNC must be periodic or group, not $CASSANDRA_COMMITLOG_SYNC" ;;
  esac
  _data_render "$_DATA_SRC/cassandra/cassandra.yaml.in" "$CASSANDRA_NODE_CONF_DIR/cassandra.yaml" \
    CASSANDRA_NODE_ADDRESS CASSANDRA_SEED_ADDRESS CASSANDRA_CQL_PORT CASSANDRA_STORAGE_PORT \
    CASSANDRA_NODE_DATA_DIR CASSANDRA_COMMITLOG_SYNC_CONF CASSANDRA_TLS_DIR CASSANDRA_TLS_STORE_PASSWORD \
    CASSANDRA_CLUSTER_NAME CASSANDRA_TLS_OPTIONAL CASSANDRA_REQUIRE_CLIENT_AUTH CASSANDRA_KEYSTORE \
    CASSANDRA_MEMTABLE_CONF
  local -a opts
  mapfile -t opts < <(_cassandra_jvm_opts)
  ((${#opts[@]} > 10)) || die "could not build Cassandra's JVM options"
  CASSANDRA_STARTED_AT=$SECONDS
  start_daemon "$name" java "${opts[@]}" \
    -cp "$CASSANDRA_NODE_CONF_DIR:$CASSANDRA_HOME/lib/*" org.apache.cassandra.service.CassandraDaemon
}

# cassandra_wait [TIMEOUT_SECONDS]: every node of the world answers.
cassandra_wait() {
  local timeout="${1:-180}" name
  for name in $(cassandra_daemons); do cassandra_wait_one "$name" "$timeout" || return 1; done
  [[ -n "${CASSANDRA_STARTED_AT:-}" ]] && log "cassandra ready $((SECONDS - CASSANDRA_STARTED_AT))s after start"
  return 0
}

# cassandra_wait_one NAME [TIMEOUT_SECONDS]: until a CQL query to node NAME
# succeeds as the superuser; with several nodes, also until NAME sees every
# node up and normal, so what runs next finds the whole ring.
cassandra_wait_one() {
  local name="$1" timeout="${2:-180}" deadline host
  _cassandra_node "$name"
  host="$CASSANDRA_NODE_ADDRESS"
  deadline=$((SECONDS + timeout))
  cqlsh_provision
  until _data_port_open "$CASSANDRA_CQL_PORT" "$host"; do
    is_running "$name" || _data_died "$name" || return 1
    ((SECONDS < deadline)) || { log "$name: port $host:$CASSANDRA_CQL_PORT not open after ${timeout}s"; return 1; }
    sleep 0.5
  done
  # Right after the port opens the default superuser may not exist yet.
  until CQL_HOST="$host" cql "SELECT release_version FROM system.local" >/dev/null 2>&1; do
    is_running "$name" || _data_died "$name" || return 1
    ((SECONDS < deadline)) || { log "$name: no CQL answer after ${timeout}s"; return 1; }
    sleep 1
  done
  ((CASSANDRA_NODES > 1)) || return 0
  until [[ "$(cassandra_nodetool "$name" status 2>/dev/null | grep -c '^UN ')" == "$CASSANDRA_NODES" ]]; do
    is_running "$name" || _data_died "$name" || return 1
    ((SECONDS < deadline)) || { log "$name: does not see all $CASSANDRA_NODES nodes up after ${timeout}s"; return 1; }
    sleep 1
  done
}

# cassandra_tls_only_wait [TIMEOUT_SECONDS]: until the TLS-only node answers
# a query over TLS (checked against the world's Cassandra CA).
cassandra_tls_only_wait() {
  local timeout="${1:-180}" deadline host
  _cassandra_node cassandra-tls
  host="$CASSANDRA_NODE_ADDRESS"
  deadline=$((SECONDS + timeout))
  cqlsh_provision
  until SSL_CERTFILE="$CASSANDRA_TLS_DIR/ca.crt" SSL_VALIDATE=true CQL_HOST="$host" \
      CQL_USER=cassandra CQL_PASSWORD=cassandra cql "SELECT release_version FROM system.local" --ssl \
      >/dev/null 2>&1; do
    is_running cassandra-tls || _data_died cassandra-tls || return 1
    ((SECONDS < deadline)) || { log "cassandra-tls: no CQL answer over TLS after ${timeout}s"; return 1; }
    sleep 1
  done
  log "cassandra-tls answers over TLS at $host:$CASSANDRA_CQL_PORT"
}

# cassandra_nodetool NAME ARGS...: nodetool against node NAME (its JMX port).
cassandra_nodetool() {
  local name="$1"; shift
  _cassandra_node "$name"
  # The module flags of conf/jvm17-clients.options.
  java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    -Dlogback.configurationFile="$_DATA_SRC/cassandra/logback.xml" \
    -cp "$CASSANDRA_HOME/lib/*" org.apache.cassandra.tools.NodeTool \
    -h 127.0.0.1 -p "$CASSANDRA_NODE_JMX_PORT" "$@"
}

# Cassandra drains on SIGTERM (flushes memtables), which can take a while.
cassandra_stop() {
  local name
  for name in $(cassandra_daemons); do stop_daemon "$name" "${1:-60}"; done
}

# cassandra_version: the version of the provisioned jars (e.g. 5.0.9).
cassandra_version() {
  cassandra_provision
  java -cp "$CASSANDRA_HOME/lib/*" -Xshare:auto -XX:TieredStopAtLevel=1 \
    -Dlogback.configurationFile="$_DATA_SRC/cassandra/logback.xml" \
    org.apache.cassandra.tools.GetVersion 2>/dev/null | tail -n1
}

# ------------------------------------------------------------------ cqlsh ---

cqlsh_provision() {
  _cqlsh_ok() { [[ -x "$CQLSH_VENV/bin/cqlsh" ]] && "$CQLSH_VENV/bin/python" -c 'import cassandra' 2>/dev/null; }
  _cqlsh_ok && return 0
  local lock
  exec {lock}>"$CQLSH_VENV.lock"
  flock "$lock"
  if ! _cqlsh_ok; then
    log "installing cqlsh $CQLSH_VERSION into $CQLSH_VENV"
    [[ -x "$CQLSH_VENV/bin/python" ]] || python3 -m venv "$CQLSH_VENV" || die "python3 -m venv failed"
    "$CQLSH_VENV/bin/pip" install -q "cqlsh==$CQLSH_VERSION" >&2 || die "pip install cqlsh failed"
  fi
  exec {lock}>&-
}

# _cql_login: prints "USER PASSWORD" of the superuser to use: millrace once
# cassandra_setup_roles created it in this data dir, else the default one.
_cql_login() {
  if [[ -f "$CASSANDRA_ROLE_MARKER" && -s "$CASSANDRA_PASSWORD_FILE" ]]; then
    printf '%s %s\n' "$CASSANDRA_USERNAME" "$(head -n1 "$CASSANDRA_PASSWORD_FILE")"
  else
    printf 'cassandra cassandra\n'
  fi
}

# cql "STATEMENT" [CQLSH_ARGS...]: run CQL as the superuser; output on stdout.
# CQL_USER / CQL_PASSWORD override the login (e.g. to test other roles),
# CQL_HOST the node (the first one by default).
cql() {
  local stmt="$1" user pw creds rc; shift
  [[ -x "$CQLSH_VENV/bin/cqlsh" ]] || cqlsh_provision
  read -r user pw < <(_cql_login)
  user="${CQL_USER:-$user}"; pw="${CQL_PASSWORD:-$pw}"
  # Password through a credentials file: -p on the command line makes cqlsh warn.
  mkdir -p "$CASSANDRA_CONF_DIR"
  creds="$(umask 077 && mktemp "$CASSANDRA_CONF_DIR/credentials.XXXXXX")"
  printf '[plain_text_auth]\nusername = %s\npassword = %s\n' "$user" "$pw" >"$creds"
  # cqlsh 6.2.2 says on stdout that it was "built against 5.0.0": drop that line.
  "$CQLSH_VENV/bin/cqlsh" "${CQL_HOST:-$CASSANDRA_SEED_ADDRESS}" "$CASSANDRA_CQL_PORT" \
    --cqlshrc=/dev/null --credentials="$creds" -u "$user" \
    --connect-timeout=10 --request-timeout=30 \
    -e "$stmt" "$@" | sed '/^WARNING: cqlsh was built against/d'
  rc="${PIPESTATUS[0]}"
  rm -f "$creds"
  return "$rc"
}

_cql_as_millrace() {
  CQL_USER="$CASSANDRA_USERNAME" CQL_PASSWORD="$(head -n1 "$CASSANDRA_PASSWORD_FILE")" \
    cql "SELECT role FROM system_auth.roles LIMIT 1"
}

# cassandra_setup_roles: superuser role "millrace" whose password is generated
# once into $MILLRACE_WORLD/cassandra-password (mode 600). The default
# cassandra/cassandra superuser is left as it is (working).
cassandra_setup_roles() {
  local pw deadline
  _data_password "$CASSANDRA_PASSWORD_FILE"
  pw="$(head -n1 "$CASSANDRA_PASSWORD_FILE")"
  if ! _cql_as_millrace >/dev/null 2>&1; then
    log "creating Cassandra role $CASSANDRA_USERNAME"
    CQL_USER=cassandra CQL_PASSWORD=cassandra cql \
      "CREATE ROLE IF NOT EXISTS $CASSANDRA_USERNAME WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = '$pw'" >&2 \
      || { log "could not create the Cassandra role $CASSANDRA_USERNAME"; return 1; }
    # The role may have existed with another password (password file lost).
    # Cassandra 5 allows one password change per role every 5 s: retry.
    deadline=$((SECONDS + 30))
    until _cql_as_millrace >/dev/null 2>&1; do
      CQL_USER=cassandra CQL_PASSWORD=cassandra cql \
        "ALTER ROLE $CASSANDRA_USERNAME WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = '$pw'" >/dev/null 2>&1 || true
      ((SECONDS < deadline)) || { log "cannot log in to Cassandra as $CASSANDRA_USERNAME"; return 1; }
      sleep 2
    done
  fi
  if [[ ! -f "$CASSANDRA_ROLE_MARKER" ]] && ((CASSANDRA_NODES > 1)); then
    _cassandra_replicate_auth || return 1
  fi
  touch "$CASSANDRA_ROLE_MARKER"
}

# With several nodes, the roles get a copy on each (NetworkTopologyStrategy,
# factor = nodes, at most 3) as production clusters have them: left at
# Cassandra's factor of 1, a login fails whenever the one node holding the
# role is down. The repair copies the rows written before onto the others.
_cassandra_replicate_auth() {
  local rf=$((CASSANDRA_NODES < 3 ? CASSANDRA_NODES : 3))
  log "replicating system_auth to $rf nodes"
  CQL_USER="$CASSANDRA_USERNAME" CQL_PASSWORD="$(head -n1 "$CASSANDRA_PASSWORD_FILE")" \
    cql "ALTER KEYSPACE system_auth WITH replication = {'class': 'NetworkTopologyStrategy', '$CASSANDRA_LOCAL_DC': $rf}" >&2 \
    || { log "could not alter the replication of system_auth"; return 1; }
  cassandra_nodetool "$(cassandra_daemons | head -n1)" repair -full system_auth >>"$LOGS_DIR/repair.log" 2>&1 \
    || { tail -n 20 "$LOGS_DIR/repair.log" >&2; log "repair of system_auth failed"; return 1; }
}

# ------------------------------------------------------------------- env ---

_data_shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# data_env: the data plane's lines for $MILLRACE_WORLD/env.
data_env() {
  local kpw cpw
  kpw="$(_data_read_password "$KAFKA_PASSWORD_FILE" kafka_start)"
  cpw="$(_data_read_password "$CASSANDRA_PASSWORD_FILE" cassandra_setup_roles)"
  printf 'export %s=%s\n' \
    MILLRACE_KAFKA_BOOTSTRAP "$(_data_shq "$(_kafka_list KAFKA_NODE_PORT)")" \
    MILLRACE_KAFKA_SASL_BOOTSTRAP "$(_data_shq "$(_kafka_list KAFKA_NODE_SASL_PORT)")" \
    MILLRACE_KAFKA_SSL_BOOTSTRAP "$(_data_shq "$(_kafka_list KAFKA_NODE_SSL_PORT)")" \
    MILLRACE_KAFKA_SASL_SSL_BOOTSTRAP "$(_data_shq "$(_kafka_list KAFKA_NODE_SASL_SSL_PORT)")" \
    MILLRACE_KAFKA_MTLS_BOOTSTRAP "$(_data_shq "$(_kafka_list KAFKA_NODE_MTLS_PORT)")" \
    MILLRACE_KAFKA_TLS_DIR "$(_data_shq "$KAFKA_TLS_DIR")" \
    MILLRACE_KAFKA_TLS_USER "$(_data_shq "$KAFKA_TLS_USER")" \
    MILLRACE_KAFKA_BROKERS "$(_data_shq "$KAFKA_BROKERS")" \
    MILLRACE_KAFKA_MIN_ISR "$(_data_shq "$KAFKA_MIN_ISR")" \
    MILLRACE_KAFKA_SASL_MECHANISM "$(_data_shq SCRAM-SHA-512)" \
    MILLRACE_KAFKA_SASL_USERNAME "$(_data_shq "$KAFKA_USERNAME")" \
    MILLRACE_KAFKA_SASL_PASSWORD "$(_data_shq "$kpw")" \
    MILLRACE_CASSANDRA_CONTACT_POINTS "$(_data_shq "$(_cassandra_list)")" \
    MILLRACE_CASSANDRA_NODES "$(_data_shq "$CASSANDRA_NODES")" \
    MILLRACE_CASSANDRA_LOCAL_DC "$(_data_shq "$CASSANDRA_LOCAL_DC")" \
    MILLRACE_CASSANDRA_TLS_DIR "$(_data_shq "$CASSANDRA_TLS_DIR")" \
    MILLRACE_CASSANDRA_TLS_USER "$(_data_shq "$CASSANDRA_TLS_USER")" \
    MILLRACE_CASSANDRA_TLS_ONLY_CONTACT_POINT "$(_data_shq "$CASSANDRA_TLS_ONLY_ADDRESS:$CASSANDRA_CQL_PORT")" \
    MILLRACE_CASSANDRA_USERNAME "$(_data_shq "$CASSANDRA_USERNAME")" \
    MILLRACE_CASSANDRA_PASSWORD "$(_data_shq "$cpw")"
}
