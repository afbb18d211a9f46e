#!/usr/bin/env bash
# `make demo`: the main job on the embedded default scripts, locally.
# Starts (or reuses) the loopback control plane, runs build/envoy-router
# against it, creates three labelled pods in namespace "demo", gives them
# IPs and readiness as a kubelet would, and prints the children the operator
# made. The operator is stopped at the end; the cluster keeps running
# (`make cluster-down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${ENVOY_ROUTER_BIN:-build/envoy-router}
ns=${DEMO_NAMESPACE:-demo}
state=.cache/demo
mkdir -p "$state"

eval "$(tools/cluster.sh up)"
kubectl() { .cache/bin/kubectl "$@"; }

kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
kubectl create namespace "$ns" >/dev/null

# The Gateway the routes attach to (no Envoy Gateway controller runs here, so
# it stays unprogrammed; on a real cluster the Helm chart creates it).
kubectl apply --server-side -f - >/dev/null <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: envoy-router}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: envoy-router, namespace: $ns}
spec:
  gatewayClassName: envoy-router
  listeners: [{name: http, protocol: HTTP, port: 80}]
EOF

log=$state/operator.log
"$bin" --kubeconfig "$KUBECONFIG" --watch-namespace "$ns" \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 >"$log" 2>&1 &
op=$!
trap 'kill -TERM $op 2>/dev/null; wait $op 2>/dev/null || true' EXIT
echo "operator started (pid $op, log $log)"

pods=(notebook-alice notebook-bob 7-panel.v2)
for i in "${!pods[@]}"; do
  p=${pods[$i]}
  kubectl apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $p
  namespace: $ns
  labels: {envoy-router/enabled: "true", app: demo}
spec:
  containers: [{name: app, image: example.invalid/echo:1, ports: [{containerPort: 8080}]}]
EOF
  ip=10.244.0.$((10 + i))
  kubectl patch pod "$p" -n "$ns" --subresource=status --type=merge -p \
    "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null
  echo "pod $ns/$p: IP $ip, Ready"
done

# Wait until every pod has its route (the operator usually takes milliseconds).
for _ in $(seq 100); do
  n=$(kubectl get httproutes -n "$ns" -l app.kubernetes.io/managed-by=envoy-router -o name | wc -l)
  [[ $n -ge ${#pods[@]} ]] && break
  sleep 0.1
done

echo
kubectl get services,endpointslices,httproutes -n "$ns" -l app.kubernetes.io/managed-by=envoy-router
echo
echo "Routes (path prefix -> Service:port):"
kubectl get httproutes -n "$ns" -o \
  jsonpath='{range .items[*]}{.spec.rules[0].matches[0].path.value}{"\t-> "}{.spec.rules[0].backendRefs[0].name}{":"}{.spec.rules[0].backendRefs[0].port}{"\n"}{end}'
echo
echo "Operator log: $log. The cluster keeps running: export KUBECONFIG=$KUBECONFIG; stop it with make cluster-down."
