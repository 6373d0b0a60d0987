# Bringing the whole world up and down. Sourced by tests/env/{up,down,status,logs}.
# shellcheck shell=bash
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=k8s.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s.sh"
# shellcheck source=data.sh
source "$(dirname "${BASH_SOURCE[0]}")/data.sh"
# shellcheck source=registry.sh
source "$(dirname "${BASH_SOURCE[0]}")/registry.sh"
# shellcheck source=tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
# shellcheck source=node.sh
source "$(dirname "${BASH_SOURCE[0]}")/node.sh"

# Daemons in start order; `down` stops them in reverse.
# shellcheck disable=SC2207 # the names never contain spaces
WORLD_DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler
  $(kafka_daemons) $(cassandra_daemons) cassandra-tls registry node-agent)

world_provision() {
  local t0=$SECONDS
  # Maven and pip downloads overlap with the Go and Rust builds.
  ( kafka_provision && cassandra_provision && cqlsh_provision && registry_provision && avro_provision ) \
    >"$MILLRACE_HOME/provision-data.log" 2>&1 &
  local data_pid=$!
  etcd_build
  k8s_build
  helm_build
  # Binaries handed over ready-made (a copy) need no build.
  [[ -n "${MILLRACE_NODE_BIN_DIR:-}" ]] || node_build
  if ! wait "$data_pid"; then
    cat "$MILLRACE_HOME/provision-data.log" >&2
    die "provisioning Kafka/Cassandra/the registry failed"
  fi
  log "everything provisioned in $((SECONDS - t0))s"
}

world_write_env() {
  local tmp="$ENV_FILE.tmp"
  {
    echo "# The millrace test world; written by tests/env/up. Source it, or let the tests read it."
    echo "export KUBECONFIG='$MILLRACE_WORLD/kubeconfig'"
    echo "export MILLRACE_WORLD='$MILLRACE_WORLD'"
    echo "export MILLRACE_BIN='$MILLRACE_BIN'"
    echo "export MILLRACE_REPO='$MILLRACE_REPO'"
    echo "export MILLRACE_NODE_NAME='$NODE_NAME'"
    echo "export MILLRACE_NODE_LOGS='$NODE_STATE/logs'"
    echo "export PATH='$MILLRACE_BIN':\"\$PATH\""
    data_env
    registry_env
  } >"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$ENV_FILE"
}

world_up() {
  local t0=$SECONDS
  mkdir -p "$MILLRACE_WORLD"
  world_provision
  certs_make
  # Slow starters first, so they boot while the control plane comes up.
  cassandra_start
  cassandra_start_one cassandra-tls
  kafka_start
  registry_start
  etcd_start
  etcd_wait
  apiserver_start
  apiserver_wait
  controller_manager_start
  scheduler_start
  node_start
  controller_manager_wait
  scheduler_wait
  node_wait
  kafka_wait
  cassandra_wait
  cassandra_setup_roles
  cassandra_tls_only_wait
  registry_wait
  world_write_env
  log "world up in $((SECONDS - t0))s; env: $ENV_FILE"
}

world_down() {
  local i name kind prev=""
  for ((i = ${#WORLD_DAEMONS[@]} - 1; i >= 0; i--)); do
    name="${WORLD_DAEMONS[$i]}"
    kind="${name%-[0-9]}"
    # The brokers (or nodes) of one cluster stop together: a last broker
    # left alone waits in vain for a controller quorum to shut down cleanly.
    [[ "$kind" == "$prev" ]] || wait
    stop_daemon "$name" 30 &
    prev="$kind"
  done
  wait
}

# True when every daemon of the world is running.
world_running() {
  local name
  for name in "${WORLD_DAEMONS[@]}"; do is_running "$name" || return 1; done
  [[ -f "$ENV_FILE" ]]
}

world_status() {
  local name pid state rss total=0 version kind
  # Asking a JVM for its version takes a second or two: once per kind.
  local -A versions=()
  printf '%-24s %-8s %-9s %-10s %s\n' COMPONENT PID STATE RSS_MIB VERSION
  for name in "${WORLD_DAEMONS[@]}"; do
    pid="$(pid_of "$name")"
    if is_running "$name"; then
      state=running
      # A SIGSTOPped daemon (a fault test) still has a pid but answers nothing.
      [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == T ]] && state=paused
      rss=$(( $(rss_kb "$pid") / 1024 )); total=$((total + rss))
    else state=stopped; rss=-; pid=-; fi
    kind="${name%-[0-9]}"
    if [[ ! -v "versions[$kind]" ]]; then
      versions[$kind]="$(component_version "$name" 2>/dev/null || echo '?')"
    fi
    version="${versions[$kind]}"
    printf '%-24s %-8s %-9s %-10s %s\n' "$name" "$pid" "$state" "$rss" "$version"
  done
  printf '%-24s %-8s %-9s %-10s\n' "total" "" "" "$total"
  [[ -f "$ENV_FILE" ]] && echo "env file: $ENV_FILE"
}

component_version() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-*) echo "$K8S_VERSION" ;;
    kafka | kafka-*) kafka_version ;;
    cassandra | cassandra-*) cassandra_version ;;
    registry) registry_version ;;
    node-agent) echo "millrace-node-agent (Pods as local processes)" ;;
  esac
}
