#!/usr/bin/env bash
# Smoke test of the test control plane (tools/cluster.sh), printed as TAP.
# It proves what the end-to-end tests rely on: the API server answers with
# the pinned version, pod status can be written the way a kubelet writes it,
# the garbage collector follows ownerReferences, the namespace controller
# empties deleted namespaces, and the Gateway API CRDs are served.
#
# Starts the cluster or reuses a running one (CLUSTER_DIR chooses which) and
# leaves it running for the next suite; `make cluster-down` stops it.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
kubectl=$top/.cache/bin/kubectl
want_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$top/tools/kube/go.mod")
ns=smoke-$(date +%s)-$RANDOM
pod_ip=10.244.7.9
gc_timeout=30
ns_timeout=60

n=0
failed_setup=""
echo "1..11"

# pass/fail MESSAGE [DETAIL]: one TAP line; DETAIL goes out as comments.
pass() { n=$((n + 1)); echo "ok $n - $1"; }
fail() {
  n=$((n + 1))
  echo "not ok $n - $1"
  if [[ -n ${2:-} ]]; then printf '%s\n' "$2" | sed 's/^/#   /'; fi
}
# A step that cannot run because an earlier one failed still gets its line.
blocked() { fail "$1" "not run: $failed_setup"; }
k() { "$kubectl" "$@" 2>&1; }

# 1. cluster
if out=$("$top/tools/cluster.sh" up 2>&1); then
  eval "$(grep '^export KUBECONFIG=' <<<"$out")"
  pass "cluster up (KUBECONFIG=$KUBECONFIG)"
else
  failed_setup="the cluster did not start"
  fail "cluster up" "$out"
fi

if [[ -n $failed_setup ]]; then
  for d in "server version is $want_version" "create namespace" "create pod" \
           "set pod status" "read pod status back" "create owned ConfigMap" \
           "delete pod" "ConfigMap garbage-collected" "HTTPRoute round trip" \
           "delete namespace"; do
    blocked "$d"
  done
  exit 1
fi

# 2. version
if out=$(k version); then
  printf '%s\n' "$out" | sed 's/^/# /'
  if grep -qx "Server Version: $want_version" <<<"$out"; then
    pass "server version is $want_version"
  else
    fail "server version is $want_version" "$out"
  fi
else
  fail "server version is $want_version" "$out"
fi

# 3. namespace
if out=$(k create namespace "$ns"); then
  pass "create namespace $ns"
else
  fail "create namespace $ns" "$out"
fi

# 4. pod: no kubelet or scheduler runs, so it stays Pending.
if out=$(k -n "$ns" apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {envoy-router/enabled: "true"}
spec:
  containers:
  - name: web
    image: registry.invalid/web:1
    ports: [{containerPort: 8080}]
EOF
) && phase=$(k -n "$ns" get pod web -o 'jsonpath={.status.phase}') && [[ $phase == Pending ]]; then
  pass "create pod web (phase Pending)"
else
  fail "create pod web (phase Pending)" "$out ${phase:-}"
fi

# 5. status as a kubelet writes it
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=$(printf '{"status":{"phase":"Running","hostIP":"127.0.0.1","podIP":"%s","podIPs":[{"ip":"%s"}],"startTime":"%s","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"%s"}]}}' \
  "$pod_ip" "$pod_ip" "$now" "$now")
if out=$(k -n "$ns" patch pod web --subresource=status --type=merge -p "$status"); then
  pass "set pod status through the status subresource"
else
  fail "set pod status through the status subresource" "$out"
fi

# 6. read back
got=$(k -n "$ns" get pod web \
  -o 'jsonpath={.status.podIP} {.status.podIPs[0].ip} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}')
if [[ $got == "$pod_ip $pod_ip Running True" ]]; then
  pass "pod status reads back (IP $pod_ip, Running, Ready)"
else
  fail "pod status reads back (IP $pod_ip, Running, Ready)" \
    "want '$pod_ip $pod_ip Running True', got '$got'"
fi

# 7. ConfigMap owned by the pod
uid=$(k -n "$ns" get pod web -o 'jsonpath={.metadata.uid}')
if out=$(k -n "$ns" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-child
  ownerReferences:
  - {apiVersion: v1, kind: Pod, name: web, uid: "$uid", controller: true, blockOwnerDeletion: false}
data: {owner: web}
EOF
) && owner=$(k -n "$ns" get configmap web-child -o 'jsonpath={.metadata.ownerReferences[0].uid}') \
  && [[ -n $uid && $owner == "$uid" ]]; then
  pass "create ConfigMap owned by the pod"
else
  fail "create ConfigMap owned by the pod" "$out; pod uid '$uid', owner uid '${owner:-}'"
fi

# 8. delete the pod; without a kubelet only a forced deletion finishes.
if out=$(k -n "$ns" delete pod web --grace-period=0 --force --wait=true --timeout=30s) &&
  ! k -n "$ns" get pod web >/dev/null; then
  pass "delete pod (forced)"
else
  fail "delete pod (forced)" "$out"
fi

# 9. the garbage collector removes the orphan
deadline=$((SECONDS + gc_timeout))
start=$SECONDS
while out=$(k -n "$ns" get configmap web-child -o name) && ((SECONDS < deadline)); do
  sleep 0.5
done
if grep -q NotFound <<<"$out"; then
  pass "ConfigMap garbage-collected after $((SECONDS - start)) s"
else
  fail "ConfigMap garbage-collected within $gc_timeout s" \
    "still there: $out (is kube-controller-manager running? see its log in the cluster's logs/)"
fi

# 10. Gateway API CRDs are served
if out=$(k -n "$ns" apply -f - <<'EOF'
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
spec:
  parentRefs: [{name: gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]
EOF
) && got=$(k -n "$ns" get httproute web \
  -o 'jsonpath={.spec.parentRefs[0].name} {.spec.rules[0].matches[0].path.value} {.spec.rules[0].backendRefs[0].port}') \
  && [[ $got == "gateway /web 80" ]]; then
  pass "HTTPRoute round trip"
else
  fail "HTTPRoute round trip" "$out ${got:-}"
fi

# 11. the namespace controller empties and removes the namespace
if out=$(k delete namespace "$ns" --wait=true --timeout="${ns_timeout}s"); then
  pass "namespace $ns deleted"
else
  fail "namespace $ns deleted within $ns_timeout s" "$out"
fi
