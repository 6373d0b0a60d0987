# The node agent and the binaries it runs for Pods. Sourced after common.sh.
# shellcheck shell=bash

NODE_NAME="${MILLRACE_NODE_NAME:-millrace-node}"
NODE_STATE="$MILLRACE_WORLD/node"
# N in the Pods' loopback addresses 127.N.x.y; another N for a second world.
POD_IP_OCTET="${MILLRACE_POD_IP_OCTET:-10}"

cargo_target_dir() {
  (cd "$MILLRACE_REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}

# Builds the node agent and every binary a Pod's image may stand for.
node_build() {
  log "building the node agent and the Pod binaries (cargo build)"
  local t0=$SECONDS
  (cd "$MILLRACE_REPO" && cargo build --quiet -p millrace-testsupport --bins -p millrace-testpod -p millrace-runner -p millrace-operator)
  log "cargo build took $((SECONDS - t0))s"
}

# Where the node agent and the Pods' binaries are taken from: the cargo
# target dir, or MILLRACE_NODE_BIN_DIR (a copy, so a long run is not changed
# under its feet by someone rebuilding the shared target dir).
node_bin_dir() {
  if [[ -n "${MILLRACE_NODE_BIN_DIR:-}" ]]; then echo "$MILLRACE_NODE_BIN_DIR"; else echo "$(cargo_target_dir)/debug"; fi
}

node_images() {
  local dir; dir="$(node_bin_dir)"
  echo "millrace-testpod=$dir/millrace-testpod,millrace-runner=$dir/millrace-runner,millrace-operator=$dir/millrace-operator"
}

node_start() {
  local dir; dir="$(node_bin_dir)"
  mkdir -p "$NODE_STATE"
  RUST_LOG="${MILLRACE_NODE_LOG:-info}" start_daemon node-agent "$dir/millrace-node-agent" \
    --kubeconfig "$MILLRACE_WORLD/kubeconfig-node" \
    --node-name "$NODE_NAME" \
    --state-dir "$NODE_STATE" \
    --apiserver-port "$APISERVER_PORT" \
    --pod-ip-octet "$POD_IP_OCTET" \
    --image "$(node_images)"
}

node_ready() {
  "$MILLRACE_BIN/kubectl" --kubeconfig "$MILLRACE_WORLD/kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

node_wait() { wait_for "node $NODE_NAME Ready" 60 node_ready; }

# Container logs of a Pod: NAMESPACE/POD or POD (any namespace).
node_pod_logs() {
  local ref="$1" ns pod found=0 f
  if [[ "$ref" == */* ]]; then ns="${ref%%/*}"; pod="${ref#*/}"; else ns="*"; pod="$ref"; fi
  for f in "$NODE_STATE"/logs/${ns}_${pod}_*.log; do
    [[ -e "$f" ]] || continue
    found=1
    echo "==> $(basename "$f" .log | sed 's/_/\//; s/_/ container=/')"
    cat "$f"
  done
  ((found)) || { echo "no container logs for pod $ref" >&2; return 1; }
}
