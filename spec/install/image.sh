#!/usr/bin/env bash
# The image suite, as TAP lines: `make docker-build` (podman, the base made
# by debootstrap), then the built image is inspected and run:
#   - what it holds: only the binary, its shared objects and loader, CA
#     certificates, passwd/group/nsswitch, the default scripts; no shell, no
#     package manager; at most 30 MB; runs as a non-root user;
#   - `version` and `check` in a container;
#   - the operator in a container against the loopback cluster (host
#     network, the kubeconfig mounted read-only) until it has made a labelled
#     pod's Service, EndpointSlice and HTTPRoute; then SIGTERM and exit 0.
#
#   spec/install/image.sh        (IMAGE_TEST_TAG: the tag to build; removed at the end)
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$PWD
image=localhost/envoy-router-test:${IMAGE_TEST_TAG:-suite-$$}
version=0.0.0-image-test
max_mb=30
podman() { "$top/tools/podman.sh" "$@"; }
kubectl() { "$top/.cache/bin/kubectl" "$@"; }
work=$(mktemp -d)
ctr=envoy-router-test-$$
ns=image-$$-$RANDOM
cleanup() {
  podman rm -f "$ctr" >/dev/null 2>&1
  podman rmi -f "$image" >/dev/null 2>&1
  [[ -n ${KUBECONFIG:-} ]] && kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
status=0
ok() { echo "ok - $1"; }
fail() { echo "not ok - $1"; [[ -n ${2:-} && -f $2 ]] && sed 's/^/#   /' "$2" | tail -n "${3:-40}"; status=1; }

# ---- build ------------------------------------------------------------------
start=$(date +%s%N)
if make --no-print-directory docker-build IMAGE_REPO="${image%:*}" IMAGE_TAG="${image##*:}" VERSION="$version" \
    >"$work/build.log" 2>&1; then
  ok "image: make docker-build ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
else
  fail "image: make docker-build" "$work/build.log" 60; exit 1
fi

# ---- what the image holds ---------------------------------------------------
size=$(podman image inspect --format '{{.Size}}' "$image")
if [[ $size -le $((max_mb * 1000 * 1000)) ]]; then
  ok "image: $((size / 1000)) kB, at most $max_mb MB"
else
  fail "image: $((size / 1000)) kB, more than $max_mb MB"
fi

user=$(podman image inspect --format '{{.Config.User}}' "$image")
uid=${user%%:*}
if [[ -n $uid && $uid =~ ^[0-9]+$ && $uid -ne 0 ]]; then
  ok "image: runs as user $user (not root)"
else
  fail "image: user is '$user', want a numeric non-root uid"
fi

podman create --name "$ctr" "$image" >/dev/null && podman export "$ctr" | tar -t | sed 's|^\./||; s|/$||' | sort >"$work/files"
podman rm -f "$ctr" >/dev/null
if [[ -s $work/files ]] && ! grep -qxE '(usr/)?bin/(ba|da)?sh|(usr/)?bin/busybox' "$work/files"; then
  ok "image: no shell ($(wc -l <"$work/files") paths, no bin/sh, bash, dash or busybox)"
else
  fail "image: a shell in the image (or an empty listing)" "$work/files"
fi
if ! grep -qE '(^|/)(apt|apt-get|dpkg)$|^var/lib/dpkg' "$work/files"; then
  ok "image: no package manager (no apt, dpkg or its database)"
else
  fail "image: a package manager in the image" "$work/files"
fi
# Every regular path is one the image is meant to hold.
allowed='^(usr/local/bin/envoy-router|usr/share/envoy-router/scripts(/.*)?|(usr/)?lib(64|/[a-z0-9_-]+-linux-gnu[a-z0-9_]*)?(/[^/]+\.so[.0-9]*)?|etc/ssl/certs/ca-certificates\.crt|etc/(passwd|group|nsswitch\.conf)|tmp|etc|etc/ssl|etc/ssl/certs|usr|usr/local|usr/local/bin|usr/share|usr/share/envoy-router|\.|proc|sys|dev|run|etc/(hosts|hostname|resolv\.conf)|run/.*|dev/.*)$'
grep -vE "$allowed" "$work/files" >"$work/unexpected"
if [[ ! -s $work/unexpected ]]; then
  ok "image: holds only the binary, its shared objects and loader, CA certificates, passwd/group and the default scripts"
else
  fail "image: unexpected paths" "$work/unexpected"
fi

# ---- version and check in a container ---------------------------------------
if podman run --rm "$image" version >"$work/version" 2>&1 && grep -qx "envoy-router $version" "$work/version"; then
  ok "image: version ($(head -n1 "$work/version"))"
else
  fail "image: version prints 'envoy-router $version'" "$work/version"
fi
if podman run --rm "$image" check >"$work/check" 2>&1 && grep -q '^ok:' "$work/check"; then
  ok "image: check ($(head -n1 "$work/check"))"
else
  fail "image: check" "$work/check"
fi
if podman run --rm "$image" check --scripts-dir /usr/share/envoy-router/scripts >"$work/check2" 2>&1; then
  ok "image: check of the shipped copy of the default scripts"
else
  fail "image: check of the shipped copy of the default scripts" "$work/check2"
fi

# ---- the operator against the loopback cluster --------------------------------
KUBECONFIG=
eval "$(tools/cluster.sh up)"
[[ -n $KUBECONFIG ]] || { echo "not ok - image: tools/cluster.sh up (the loopback cluster)"; exit 1; }
kubectl create namespace "$ns" >/dev/null
# The container's user must be able to read the kubeconfig (certificates are
# embedded in it); a copy readable by all, in a directory only root lists.
install -m 0644 "$KUBECONFIG" "$work/kubeconfig"
port() { # a port below the ephemeral range that nothing uses
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null || { echo "$p"; return; }
  done
}
mport=$(port) hport=$(port)
[[ $mport == "$hport" ]] && hport=$((hport + 1))
podman run -d --name "$ctr" --network host -v "$work/kubeconfig:/kube/config:ro" "$image" \
  --kubeconfig /kube/config --watch-namespace "$ns" \
  --metrics-bind-address "127.0.0.1:$mport" --health-probe-bind-address "127.0.0.1:$hport" >"$work/run" 2>&1 ||
  fail "image: podman run of the operator" "$work/run"

ready=0
for _ in $(seq 1 200); do
  [[ $(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hport/readyz") == 200 ]] && { ready=1; break; }
  sleep 0.1
done
if [[ $ready -eq 1 ]]; then ok "image: operator ready (host network, /readyz)"; else podman logs "$ctr" >"$work/log" 2>&1; fail "image: operator not ready within 20 s" "$work/log"; fi

pod=image-pod-1 ip=10.244.9.21
kubectl apply --server-side -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  namespace: $ns
  labels: {envoy-router/enabled: "true"}
spec:
  containers: [{name: app, image: example.invalid/echo:1, ports: [{containerPort: 8080}]}]
YAML
kubectl patch pod "$pod" -n "$ns" --subresource=status --type=merge -p \
  "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null

children() {
  kubectl get services,endpointslices,httproutes -n "$ns" -l app.kubernetes.io/managed-by=envoy-router \
    -o jsonpath='{range .items[*]}{.kind}{" "}{.metadata.ownerReferences[0].name}{"\n"}{end}' 2>/dev/null
}
made=0
for _ in $(seq 1 300); do
  children >"$work/children"
  if grep -qx "Service $pod" "$work/children" && grep -qx "EndpointSlice $pod" "$work/children" &&
     grep -qx "HTTPRoute $pod" "$work/children"; then made=1; break; fi
  sleep 0.1
done
if [[ $made -eq 1 ]]; then
  ok "image: the operator in the container made the pod's Service, EndpointSlice and HTTPRoute"
else
  podman logs "$ctr" >"$work/log" 2>&1; cat "$work/children" >>"$work/log"
  fail "image: the pod's children within 30 s" "$work/log"
fi

podman kill --signal TERM "$ctr" >/dev/null 2>&1
rc=$(timeout 60 "$top/tools/podman.sh" wait "$ctr" 2>&1)
if [[ $rc == 0 ]]; then
  ok "image: exits 0 on SIGTERM"
else
  podman logs "$ctr" >"$work/log" 2>&1
  fail "image: exit status '$rc' after SIGTERM, want 0" "$work/log"
fi
exit "$status"
