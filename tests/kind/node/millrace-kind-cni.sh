#!/bin/sh
# millrace-kind-cni: our own minimal stand-in for kindnetd (whose source the Go
# module proxy does not serve here), run by the DaemonSet in default-cni.yaml
# on every node, in the node's network namespace. Every 10 s it
#   - writes this node's bridge CNI config for the podCIDR the
#     controller-manager gave the node (/etc/cni/net.d on the node);
#   - routes every other node's podCIDR via that node's InternalIP (all nodes
#     share one podman bridge, so plain routes are enough).
# No NetworkPolicy enforcement, no IPv6.
set -u
SA=/var/run/secrets/kubernetes.io/serviceaccount
CONF=/host/etc/cni/net.d/10-millrace-kind.conflist
k() { kubectl --server="https://${CONTROL_PLANE_ENDPOINT}" --certificate-authority="$SA/ca.crt" --token="$(cat "$SA/token")" "$@"; }
while :; do
  cidr="$(k get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)"
  if [ -n "$cidr" ]; then
    cat >"$CONF.tmp" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "millrace-kind",
  "plugins": [
    {"type": "bridge", "bridge": "kindbr0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
    if ! cmp -s "$CONF.tmp" "$CONF"; then mv "$CONF.tmp" "$CONF"; echo "wrote $CONF for $cidr"; else rm -f "$CONF.tmp"; fi
  fi
  k get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' 2>/dev/null |
    while read -r n c ip; do
      [ "$n" = "$NODE_NAME" ] && continue
      [ -n "$c" ] && [ -n "$ip" ] || continue
      ip route replace "$c" via "$ip" && true
    done
  sleep 10
done
