#!/usr/bin/env bash
# The Helm suite, as TAP lines (one per check) for tools/run-suite.sh:
#
#   spec/helm/run.sh            everything below
#   spec/helm/run.sh --charts   lint and helm-unittest only (no cluster; `make helm-test`)
#
# 1. helm lint of both charts (default, secondary and customised values).
# 2. helm-unittest suites in charts/*/tests/, one TAP line per test.
# 3. helm template with default, secondary and customised values applied with
#    `kubectl apply --dry-run=server --server-side` to the loopback API server,
#    after installing the Envoy Gateway and ServiceMonitor CRDs server-side.
# 4. spec/helm/install_spec.lua: helm install into the API server, operators
#    run from the installed Deployments, uninstall.
#
# Needs the charts' dependencies packaged (make helm-deps) and the tools of
# tools/build.sh (helm, helm-unittest, kubectl; etcd and kube-* for 3 and 4).
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$PWD
bin=$top/.cache/bin
helm=$bin/helm
kubectl=$bin/kubectl
charts_only=0
[[ ${1:-} == --charts ]] && charts_only=1

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
status=0

# check NAME CMD...: one TAP line; the command's output as diagnostics on failure.
check() {
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then
    echo "ok - $name"
  else
    echo "not ok - $name"
    sed 's/^/#   /' "$work/out" | head -n 60
    status=1
  fi
}

er=charts/envoy-router
ert=charts/envoy-router-test
custom=spec/helm/values-custom.yaml

# ---- 1. lint --------------------------------------------------------------
check "lint: $er" "$helm" lint --strict "$er"
check "lint: $er with values-secondary.yaml" "$helm" lint --strict "$er" -f "$er/values-secondary.yaml"
check "lint: $er with $custom" "$helm" lint --strict "$er" -f "$custom"
check "lint: $ert" "$helm" lint --strict "$ert"
check "lint: $ert as a second namespace" "$helm" lint --strict "$ert" \
  --set envoy-router.gateway.createClass=false --set envoy-router.envoy-gateway.enabled=false

# ---- 2. helm-unittest -----------------------------------------------------
for c in "$er" "$ert"; do
  report=$work/$(basename "$c").xml
  "$bin/helm-unittest" -t JUnit -o "$report" "$c" >"$work/unittest.log" 2>&1
  rc=$?
  lua5.4 spec/helm/unittest-tap.lua "$(basename "$c")" "$report" || status=1
  if [[ $rc -ne 0 ]] && ! grep -q '<failure' "$report" 2>/dev/null; then
    echo "not ok - helm-unittest $c exited with status $rc"
    sed 's/^/#   /' "$work/unittest.log" | tail -n 30
    status=1
  fi
done

[[ $charts_only -eq 1 ]] && exit "$status"

# ---- 3. helm template | kubectl apply --dry-run=server --server-side -------
eval "$(tools/cluster.sh up)" || { echo "not ok - tools/cluster.sh up"; exit 1; }
k() { "$kubectl" "$@"; }

check "CRDs: Envoy Gateway and ServiceMonitor CRDs applied server-side" \
  k apply --server-side --force-conflicts \
    -f .cache/src/gateway/charts/gateway-helm/charts/crds/crds/generated/ \
    -f .cache/src/prometheus-operator/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
check "CRDs established" env KUBECTL="$kubectl" tools/wait-established.sh 60 \
  crd/envoyproxies.gateway.envoyproxy.io crd/servicemonitors.monitoring.coreos.com \
  crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io

for ns in helm-dry-1 helm-dry-2 helm-dry-3 helm-dry-watched helm-dry-monitoring; do
  k get namespace "$ns" >/dev/null 2>&1 || k create namespace "$ns" >/dev/null
done

# render NAME NS CHART ARGS...: helm template into $work/NAME.yaml
render() {
  local name=$1 ns=$2 chart=$3; shift 3
  "$helm" template "$name" "$chart" -n "$ns" "$@" >"$work/$name.yaml"
}
dry_run() {
  # Every object names its namespace; $1 is only the release namespace.
  k apply --dry-run=server --server-side --force-conflicts -f "$work/$2.yaml"
}

check "template: default values" render dflt helm-dry-1 "$er"
check "dry-run (server): default values" dry_run helm-dry-1 dflt
check "template: default values hold the Envoy Gateway controller, GatewayClass, Gateway, EnvoyProxy, ClusterRole" \
  bash -c "grep -q 'name: envoy-gateway\$' '$work/dflt.yaml' && grep -qx 'kind: GatewayClass' '$work/dflt.yaml' \
    && grep -qx 'kind: Gateway' '$work/dflt.yaml' && grep -qx 'kind: EnvoyProxy' '$work/dflt.yaml' \
    && grep -q 'name: helm-dry-1:dflt-envoy-router' '$work/dflt.yaml'"

check "template: values-secondary.yaml" render second helm-dry-2 "$er" -f "$er/values-secondary.yaml"
check "dry-run (server): values-secondary.yaml" dry_run helm-dry-2 second
check "template: values-secondary.yaml has no Envoy Gateway controller, GatewayClass, ClusterRole or CRD policy" \
  bash -c "! grep -q 'name: envoy-gateway\$' '$work/second.yaml' \
    && ! grep -qE '^kind: (GatewayClass|ClusterRole|ClusterRoleBinding|ValidatingAdmissionPolicy|MutatingWebhookConfiguration)\$' '$work/second.yaml' \
    && grep -qx 'kind: Gateway' '$work/second.yaml' && grep -qx 'kind: Role' '$work/second.yaml'"

check "template: customised values ($custom)" render custom helm-dry-3 "$er" -f "$custom"
check "dry-run (server): customised values" dry_run helm-dry-3 custom
check "template: customised values add the ServiceMonitor, scripts ConfigMap and Lease Role" \
  bash -c "grep -qx 'kind: ServiceMonitor' '$work/custom.yaml' && grep -qx 'kind: ConfigMap' '$work/custom.yaml' \
    && grep -q 'custom-envoy-router-leader-election' '$work/custom.yaml'"

check "template: $ert" render smoke helm-dry-1 "$ert"
check "dry-run (server): $ert" dry_run helm-dry-1 smoke
check "template: $ert as a second namespace" render smoke2 helm-dry-2 "$ert" \
  --set ingress.host=test-pp-2.example.com \
  --set envoy-router.gateway.createClass=false --set envoy-router.envoy-gateway.enabled=false
check "dry-run (server): $ert as a second namespace" dry_run helm-dry-2 smoke2

check "install: a misspelt value fails helm install with the value's path" \
  bash -c "! '$helm' install typo '$er' -n helm-dry-1 --dry-run --set operator.podport=1 2>'$work/typo' \
    && grep -q \"at '/operator': additional properties 'podport' not allowed\" '$work/typo'"

for ns in helm-dry-1 helm-dry-2 helm-dry-3 helm-dry-watched helm-dry-monitoring; do
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
done

# ---- 4. helm install into the API server ----------------------------------
busted --lua=lua5.4 -o TAP spec/helm/install_spec.lua || status=1

# ---- 5. the chart's RBAC is what the operator uses (its own token) -------
busted --lua=lua5.4 -o TAP spec/helm/rbac_spec.lua || status=1

exit "$status"
