#!/usr/bin/env bash
# `make demo`: the main job on the embedded default scripts, locally.
# Starts (or reuses) the loopback control plane and the data plane (Envoy
# Gateway and Envoy, tools/dataplane.sh), runs build/envoy-router against it,
# creates three labelled pods in namespace "demo" (served by stand-ins that
# answer with their name), gives them IPs and readiness as a kubelet would,
# prints the children the operator made and sends a request to each pod
# through Envoy. The operator is stopped at the end; the cluster and the data
# plane keep running for the user's curl (`make cluster-down` stops both).
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

# The data plane: Envoy Gateway and the Gateway, EnvoyProxy and
# BackendTrafficPolicy of the chart (helm template), with the Envoy proxy it
# deploys run as a host process (tools/dataplane.sh). Pods are stood in for
# by small HTTP servers on private addresses of lo, answering with their name.
# If the demo fails, everything it started is stopped again.
gateway=envoy-router-gateway   # the chart's default for a release named envoy-router
pod_port=9090
demo_ok=
stop_dataplane() { [[ -n $demo_ok ]] || tools/dataplane.sh down || true; }
tools/dataplane.sh up
envoy_port=$(tools/dataplane.sh gateway envoy-router "$ns" --set gateway.name=$gateway | sed -n 's/^port=\([0-9]*\).*/\1/p')

log=$state/operator.log
"$bin" --kubeconfig "$KUBECONFIG" --watch-namespace "$ns" --gateway-name $gateway --pod-port $pod_port \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 >"$log" 2>&1 &
op=$!
trap 'kill -TERM $op 2>/dev/null; wait $op 2>/dev/null || true; stop_dataplane' EXIT
echo "operator started (pid $op, log $log)"

pods=(notebook-alice notebook-bob 7-panel.v2)
stand_ins=()
for i in "${!pods[@]}"; do stand_ins+=("${pods[$i]}=10.244.0.$((10 + i))"); done
tools/dataplane.sh pods-stop all # a previous demo's
tools/dataplane.sh pods $pod_port "${stand_ins[@]}" >/dev/null
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
  containers: [{name: app, image: example.invalid/echo:1, ports: [{containerPort: $pod_port}]}]
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
echo "Through Envoy (127.0.0.1:$envoy_port):"
for p in "${pods[@]}"; do
  code=000 first=
  # A new route reaches Envoy within a second or so: retry briefly.
  for _ in $(seq 50); do
    out=$(curl -s --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$envoy_port/$p/" || true)
    code=${out##*$'\n'}
    [[ $code == 200 ]] && break
    sleep 0.2
  done
  first=$(printf '%s\n' "$out" | head -n 1)
  [[ $code == 200 ]] || first=$(printf '%s\n' "$out" | sed '$d' | head -n 1)
  echo "GET /$p/ -> $code $first"
done
demo_ok=1
echo
echo "Try it: curl http://127.0.0.1:$envoy_port/${pods[0]}/"
echo
echo "Operator log: $log. The cluster keeps running: export KUBECONFIG=$KUBECONFIG; stop both with make cluster-down."
