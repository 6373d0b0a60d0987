# The Kubernetes control plane of the test world: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler (and kubectl), built from source
# through the Go module proxy and run as local processes with TLS and RBAC.
# Sourced after common.sh, never run. See k8s-readme.md.
#
# Functions (all idempotent, safe to call again):
#   etcd_build, k8s_build          build once per version into $MILLRACE_CACHE,
#                                  symlink into $MILLRACE_BIN
#   certs_make                     CA, serving/client certs, SA keys, kubeconfigs
#   etcd_start / etcd_wait
#   apiserver_start / apiserver_wait
#   controller_manager_start / controller_manager_wait
#   scheduler_start / scheduler_wait
#   k8s_stop                       stop the four daemons, newest first
#   k8s_versions                   "etcd v3.6.16", "kube-apiserver v1.36.3", ...
# shellcheck shell=bash

# Secure ports of the controller-manager and the scheduler (health, metrics);
# off the standard 10257/10259 so a host cluster does not collide.
CONTROLLER_MANAGER_PORT="${MILLRACE_CONTROLLER_MANAGER_PORT:-20257}"
SCHEDULER_PORT="${MILLRACE_SCHEDULER_PORT:-20259}"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1" # first IP of SERVICE_CIDR: the `kubernetes` Service
NODE_NAME="${MILLRACE_NODE_NAME:-millrace-node}"
K8S_START_TIMEOUT="${MILLRACE_K8S_START_TIMEOUT:-180}"

ETCD_GO_DIR="$MILLRACE_REPO/tests/env/go/etcd"
K8S_GO_DIR="$MILLRACE_REPO/tests/env/go/kubernetes"
ETCD_CACHE_DIR="$MILLRACE_CACHE/etcd-$ETCD_VERSION"
K8S_CACHE_DIR="$MILLRACE_CACHE/k8s-$K8S_VERSION"
K8S_PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

KUBECONFIG_ADMIN="$MILLRACE_WORLD/kubeconfig"
KUBECONFIG_CONTROLLER_MANAGER="$MILLRACE_WORLD/kubeconfig-controller-manager"
KUBECONFIG_SCHEDULER="$MILLRACE_WORLD/kubeconfig-scheduler"
KUBECONFIG_NODE="$MILLRACE_WORLD/kubeconfig-node"

_k8s_go() {
  local go="${GO:-}"
  [[ -n "$go" ]] || go="$(command -v go 2>/dev/null || true)"
  [[ -n "$go" ]] || go=/usr/local/go/bin/go
  [[ -x "$go" ]] || die "no Go toolchain (set GO=/path/to/go)"
  CGO_ENABLED=0 "$go" "$@"
}

# _k8s_pinned DIR MODULE: the version of MODULE that DIR/go.mod requires.
_k8s_pinned() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1/go.mod"
}

# _k8s_wrapper SRC_DIR OUT_DIR MODULE VERSION: the wrapper module to build in.
# The committed one (SRC_DIR, with its go.sum) when it pins VERSION; otherwise a
# copy in OUT_DIR/src re-pinned to VERSION (for trying other releases).
_k8s_wrapper() {
  local src="$1" out="$2" module="$3" version="$4"
  if [[ "$(_k8s_pinned "$src" "$module")" == "$version" ]]; then
    echo "$src"; return
  fi
  local dir="$out/src"
  log "$module: $src pins $(_k8s_pinned "$src" "$module"), not $version; re-pinning a copy in $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  # A fresh go.mod (not a copy) so no requirement of the pinned release
  # drags the others' dependencies up.
  {
    awk '$1 == "module" || $1 == "go" || $1 == "godebug" {print; print ""}' "$src/go.mod"
    echo "require $module $version"
    echo
    sed -n '/^tool (/,/^)/p; /^tool [^(]/p' "$src/go.mod"
  } >"$dir/go.mod"
  (
    cd "$dir"
    if [[ "$module" == k8s.io/kubernetes ]]; then
      # Staging modules of release v1.X.Y are published as v0.X.Y; take the
      # list from that release's own go.mod.
      local gomod staging
      gomod="$(_k8s_go mod download -json "$module@$version" | awk -F'"' '$2 == "GoMod" {print $4}')"
      [[ -s "$gomod" ]] || exit 1
      staging="v0.${version#v1.}"
      for m in $(awk '/=> \.\/staging\/src\// {print $1}' "$gomod"); do
        # Not every staging module is published for every release (e.g. sample-cli-plugin).
        if _k8s_go mod download "$m@$staging" >/dev/null 2>&1; then
          _k8s_go mod edit -replace="$m=$m@$staging" || exit 1
        fi
      done
    fi
    _k8s_go mod tidy || exit 1
  ) >&2 || die "could not re-pin $module to $version"
  echo "$dir"
}

# _k8s_build_into NAME WRAPPER_DIR OUT_DIR LDFLAGS PACKAGE=BINARY...
_k8s_build_into() {
  local name="$1" wrapper="$2" out="$3" ldflags="$4"; shift 4
  local tmp="$out/.build" pkgs=() t0 pb
  for pb in "$@"; do pkgs+=("${pb%%=*}"); done
  rm -rf "$tmp"; mkdir -p "$tmp"
  t0=$SECONDS
  log "$name: go mod download (in $wrapper)"
  (cd "$wrapper" && _k8s_go mod download) || die "$name: go mod download failed"
  log "$name: modules ready in $((SECONDS - t0))s; compiling ${pkgs[*]}"
  local t1=$SECONDS
  (cd "$wrapper" && _k8s_go build -mod=readonly -buildvcs=false -trimpath \
      -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}") || die "$name: go build failed"
  for pb in "$@"; do
    local pkg="${pb%%=*}" bin="${pb#*=}" base
    # go build names a program after its path's last element, skipping a
    # major-version suffix: go.etcd.io/etcd/server/v3 -> server.
    base="$(basename "$pkg")"
    [[ "$base" =~ ^v[0-9]+$ ]] && base="$(basename "$(dirname "$pkg")")"
    mv -f "$tmp/$base" "$out/$bin" || die "$name: $pkg was not built"
  done
  rm -rf "$tmp"
  log "$name: built in $((SECONDS - t1))s (total $((SECONDS - t0))s) -> $out"
}

_k8s_link() { # _k8s_link DIR BINARY...
  local dir="$1"; shift
  local b; for b in "$@"; do ln -sfn "$dir/$b" "$MILLRACE_BIN/$b"; done
}

etcd_build() {
  mkdir -p "$ETCD_CACHE_DIR"
  (
    flock 9
    if [[ -x "$ETCD_CACHE_DIR/etcd" ]]; then exit 0; fi
    local wrapper
    wrapper="$(_k8s_wrapper "$ETCD_GO_DIR" "$ETCD_CACHE_DIR" go.etcd.io/etcd/server/v3 "$ETCD_VERSION")" || exit 1
    # go.etcd.io/etcd/server/v3 is etcd's main package (server/main.go).
    _k8s_build_into "etcd $ETCD_VERSION" "$wrapper" "$ETCD_CACHE_DIR" "-s -w" \
      go.etcd.io/etcd/server/v3=etcd || exit 1
  ) 9>"$ETCD_CACHE_DIR.lock" || return 1
  _k8s_link "$ETCD_CACHE_DIR" etcd
}

k8s_build() {
  mkdir -p "$K8S_CACHE_DIR"
  (
    flock 9
    local b missing=0
    for b in "${K8S_PROGRAMS[@]}"; do [[ -x "$K8S_CACHE_DIR/$b" ]] || missing=1; done
    if ((missing == 0)); then exit 0; fi
    local wrapper v="${K8S_VERSION#v}" major minor x ldflags=(-s -w) now
    now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
    wrapper="$(_k8s_wrapper "$K8S_GO_DIR" "$K8S_CACHE_DIR" k8s.io/kubernetes "$K8S_VERSION")" || exit 1
    # What hack/lib/version.sh would stamp. gitCommit stays empty: the module
    # proxy's source carries no commit id. The tree is the released module as is.
    for x in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=(-X "$x.gitVersion=$K8S_VERSION" -X "$x.gitMajor=$major" -X "$x.gitMinor=$minor"
        -X "$x.gitCommit=" -X "$x.gitTreeState=clean" -X "$x.buildDate=$now")
    done
    local specs=()
    for b in "${K8S_PROGRAMS[@]}"; do specs+=("k8s.io/kubernetes/cmd/$b=$b"); done
    _k8s_build_into "kubernetes $K8S_VERSION" "$wrapper" "$K8S_CACHE_DIR" "${ldflags[*]}" "${specs[@]}" || exit 1
  ) 9>"$K8S_CACHE_DIR.lock" || return 1
  _k8s_link "$K8S_CACHE_DIR" "${K8S_PROGRAMS[@]}"
}

# ---------------------------------------------------------------- certificates

# _k8s_ca / _k8s_cert: tls_ca / tls_cert (common.sh) in $CERTS_DIR.
_k8s_ca() { tls_ca "$CERTS_DIR" "$@"; }
_k8s_cert() { tls_cert "$CERTS_DIR" "$@"; }

# _k8s_kubeconfig FILE USER CERT_NAME: kubeconfig with the certs embedded.
_k8s_kubeconfig() {
  local file="$1" user="$2" cert="$3"
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: millrace
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$CERTS_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$CERTS_DIR/$cert.crt")
    client-key-data: $(base64 -w0 <"$CERTS_DIR/$cert.key")
contexts:
- name: $user@millrace
  context:
    cluster: millrace
    user: $user
    namespace: default
current-context: $user@millrace
EOF
  chmod 600 "$file.tmp"
  mv -f "$file.tmp" "$file"
}

certs_make() {
  local d="$CERTS_DIR"
  mkdir -p "$d" "$MILLRACE_WORLD"
  # Every file is made only if missing; a new CA invalidates everything.
  if [[ ! -s "$d/ca.crt" || ! -s "$d/ca.key" ]]; then
    log "making certificates in $d"
    rm -rf "${d:?}"/*
    _k8s_ca ca millrace-ca
  fi
  _k8s_cert ca apiserver "/CN=kube-apiserver" "extendedKeyUsage = serverAuth" \
    "subjectAltName = IP:127.0.0.1, IP:$SERVICE_IP, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
  # Used by the apiserver towards the node agent (logs, exec, port-forward).
  _k8s_cert ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage = clientAuth"
  _k8s_cert ca admin "/O=system:masters/CN=millrace-admin" "extendedKeyUsage = clientAuth"
  _k8s_cert ca kube-controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage = clientAuth"
  _k8s_cert ca kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage = clientAuth"
  # The node agent: a client of the apiserver, and serving for its kubelet API.
  _k8s_cert ca node "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage = clientAuth, serverAuth" \
    "subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:$NODE_NAME"
  # Front proxy (aggregation layer), as kubeadm/kind set it up. Without it the
  # controller-manager and scheduler log "missing content for CA bundle
  # requestheader-client-ca-file" every few seconds.
  _k8s_ca front-proxy-ca front-proxy-ca
  _k8s_cert front-proxy-ca front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage = clientAuth"
  # Service-account token signing key pair.
  if [[ ! -s "$d/sa.key" || ! -s "$d/sa.pub" ]]; then
    openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
    openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  fi
  chmod 600 "$d"/*.key
  _k8s_kubeconfig "$KUBECONFIG_ADMIN" millrace-admin admin
  _k8s_kubeconfig "$KUBECONFIG_CONTROLLER_MANAGER" system:kube-controller-manager kube-controller-manager
  _k8s_kubeconfig "$KUBECONFIG_SCHEDULER" system:kube-scheduler kube-scheduler
  _k8s_kubeconfig "$KUBECONFIG_NODE" "system:node:$NODE_NAME" node
}

# ------------------------------------------------------------------- daemons

# _k8s_wait NAME DESCRIPTION TIMEOUT COMMAND...: like wait_for, but gives up at
# once (showing the log's tail) if the daemon NAME has died.
_k8s_wait() {
  local name="$1" what="$2" timeout="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$name"; then
      log "$name is not running; last lines of $LOGS_DIR/$name.log:"
      tail -n 30 "$LOGS_DIR/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what; last lines of $LOGS_DIR/$name.log:"
      tail -n 30 "$LOGS_DIR/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
  log "$what: ready"
}

# _k8s_get PATH: GET from the apiserver as admin; fails unless the body is "ok"
# (health paths) or the request succeeds (other paths).
_k8s_get() {
  curl -sSf --max-time 5 --cacert "$CERTS_DIR/ca.crt" \
    --cert "$CERTS_DIR/admin.crt" --key "$CERTS_DIR/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}
_k8s_ok() { [[ "$("$@" 2>/dev/null)" == ok ]]; }
_k8s_healthz() { # _k8s_healthz PORT: a component's own /healthz (always allowed)
  # Its serving certificate is self-signed in memory, hence -k.
  curl -sSfk --max-time 5 "https://127.0.0.1:$1/healthz"
}

etcd_start() {
  mkdir -p "$DATA_DIR/etcd"
  chmod 700 "$DATA_DIR/etcd"
  local peer="http://127.0.0.1:$ETCD_PEER_PORT" client="http://127.0.0.1:$ETCD_CLIENT_PORT"
  start_daemon etcd "$MILLRACE_BIN/etcd" \
    --name millrace --data-dir "$DATA_DIR/etcd" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "millrace=$peer" --initial-cluster-state new \
    --unsafe-no-fsync --snapshot-count 10000 --quota-backend-bytes 2147483648 \
    --log-level warn
}

_k8s_etcd_healthy() {
  curl -sf --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" | grep -q '"health":"true"'
}

etcd_wait() {
  _k8s_wait etcd "etcd on 127.0.0.1:$ETCD_CLIENT_PORT" "$K8S_START_TIMEOUT" \
    _k8s_etcd_healthy
}

# MILLRACE_APISERVER_ARGS adds flags (later ones win), e.g. `--profiling`
# to take a CPU profile under a bench (bench/OPERATOR-SCALE.md).
apiserver_start() {
  local c="$CERTS_DIR" extra=()
  read -r -a extra <<<"${MILLRACE_APISERVER_ARGS:-}"
  # Advertising 127.0.0.1 is allowed, but the default (lease) endpoint
  # reconciler cannot publish a loopback address in the `kubernetes`
  # Endpoints, so it is turned off: in-world clients use the kubeconfigs.
  start_daemon kube-apiserver "$MILLRACE_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none \
    --tls-cert-file "$c/apiserver.crt" --tls-private-key-file "$c/apiserver.key" \
    --client-ca-file "$c/ca.crt" \
    --kubelet-client-certificate "$c/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$c/apiserver-kubelet-client.key" \
    --authorization-mode Node,RBAC \
    --requestheader-client-ca-file "$c/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$c/front-proxy-client.crt" \
    --proxy-client-key-file "$c/front-proxy-client.key" \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --service-account-key-file "$c/sa.pub" \
    --service-account-signing-key-file "$c/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --profiling=false \
    --v 1 "${extra[@]}"
}

apiserver_wait() {
  _k8s_wait kube-apiserver "kube-apiserver /readyz on 127.0.0.1:$APISERVER_PORT" "$K8S_START_TIMEOUT" \
    _k8s_ok _k8s_get /readyz
}

# MILLRACE_CONTROLLER_MANAGER_ARGS adds flags, e.g. the client rate a large
# cluster gives it (`--kube-api-qps 200 --kube-api-burst 400`): its default
# of 20 requests/s bounds how fast thousands of Deployments roll out
# (bench/OPERATOR-SCALE.md).
controller_manager_start() {
  local c="$CERTS_DIR" k="$KUBECONFIG_CONTROLLER_MANAGER" extra=()
  read -r -a extra <<<"${MILLRACE_CONTROLLER_MANAGER_ARGS:-}"
  start_daemon kube-controller-manager "$MILLRACE_BIN/kube-controller-manager" \
    --kubeconfig "$k" --authentication-kubeconfig "$k" --authorization-kubeconfig "$k" \
    --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
    --controllers '*' \
    --use-service-account-credentials \
    --service-account-private-key-file "$c/sa.key" \
    --root-ca-file "$c/ca.crt" \
    --cluster-signing-cert-file "$c/ca.crt" --cluster-signing-key-file "$c/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false \
    --profiling=false \
    --v 1 \
    "${extra[@]}"
}

controller_manager_wait() {
  _k8s_wait kube-controller-manager "kube-controller-manager /healthz on 127.0.0.1:$CONTROLLER_MANAGER_PORT" \
    "$K8S_START_TIMEOUT" _k8s_ok _k8s_healthz "$CONTROLLER_MANAGER_PORT" &&
  _k8s_wait kube-controller-manager "ServiceAccount default/default (made by kube-controller-manager)" \
    "$K8S_START_TIMEOUT" _k8s_get /api/v1/namespaces/default/serviceaccounts/default
}

scheduler_start() {
  local k="$KUBECONFIG_SCHEDULER"
  start_daemon kube-scheduler "$MILLRACE_BIN/kube-scheduler" \
    --kubeconfig "$k" --authentication-kubeconfig "$k" --authorization-kubeconfig "$k" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --leader-elect=false \
    --profiling=false \
    --v 1
}

scheduler_wait() {
  _k8s_wait kube-scheduler "kube-scheduler /healthz on 127.0.0.1:$SCHEDULER_PORT" "$K8S_START_TIMEOUT" \
    _k8s_ok _k8s_healthz "$SCHEDULER_PORT"
}

k8s_stop() {
  local n
  for n in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_daemon "$n"; done
}

k8s_versions() {
  local b v
  if [[ -x "$MILLRACE_BIN/etcd" ]]; then
    v="$("$MILLRACE_BIN/etcd" --version 2>/dev/null | awk '/^etcd Version:/ {print "v" $3}')"
    echo "etcd ${v:-unknown}"
  else
    echo "etcd (not built)"
  fi
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    if [[ -x "$MILLRACE_BIN/$b" ]]; then
      v="$("$MILLRACE_BIN/$b" --version 2>/dev/null | awk '{print $2}')"
      echo "$b ${v:-unknown}"
    else
      echo "$b (not built)"
    fi
  done
  if [[ -x "$MILLRACE_BIN/kubectl" ]]; then
    v="$("$MILLRACE_BIN/kubectl" version --client 2>/dev/null | awk '/^Client Version:/ {print $3}')"
    echo "kubectl ${v:-unknown}"
  else
    echo "kubectl (not built)"
  fi
}
