# Tools the delivery path needs beside the world: helm, built from source
# through the Go module proxy like the control plane. Sourced after k8s.sh.
# shellcheck shell=bash

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HELM_GO_DIR="$MILLRACE_REPO/tests/env/go/helm"
HELM_CACHE_DIR="$MILLRACE_CACHE/helm-$HELM_VERSION"

helm_build() {
  mkdir -p "$HELM_CACHE_DIR"
  (
    flock 9
    if [[ -x "$HELM_CACHE_DIR/helm" ]]; then exit 0; fi
    local wrapper
    wrapper="$(_k8s_wrapper "$HELM_GO_DIR" "$HELM_CACHE_DIR" helm.sh/helm/v3 "$HELM_VERSION")" || exit 1
    _k8s_build_into "helm $HELM_VERSION" "$wrapper" "$HELM_CACHE_DIR" \
      "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
      helm.sh/helm/v3/cmd/helm=helm || exit 1
  ) 9>"$HELM_CACHE_DIR.lock" || return 1
  _k8s_link "$HELM_CACHE_DIR" helm
}
