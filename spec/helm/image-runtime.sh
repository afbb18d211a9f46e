#!/usr/bin/env bash
# Runs the image's runtime file set (build/runtime, from `make runtime-dir`)
# the way the container would: an empty environment, only the shared objects
# of that directory (through its own dynamic loader). TAP lines.
#
#   spec/helm/image-runtime.sh [DIR]        (default build/runtime)
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$PWD
dir=${1:-build/runtime}
dir=$(cd "$dir" && pwd) || { echo "not ok - no runtime directory $dir (make runtime-dir)"; exit 1; }
bin=$dir/usr/local/bin/envoy-router
lib=$dir/lib
loader=$(ls "$lib"/ld-linux* 2>/dev/null | head -n 1)
work=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
status=0
ok() { echo "ok - $1"; }
fail() { echo "not ok - $1"; [[ -f ${2:-/nonexistent} ]] && sed 's/^/#   /' "$2" | tail -n 40; status=1; }

# run ARGS...: the binary under `env -i` through the directory's loader.
run() { env -i "$loader" --library-path "$lib" "$bin" "$@"; }

if [[ -x $loader ]]; then ok "runtime: the directory holds its dynamic loader"; else fail "runtime: no dynamic loader in $lib"; exit 1; fi

# Every shared object resolves inside the directory.
env -i "$loader" --library-path "$lib" --list "$bin" >"$work/list" 2>&1
if grep -q '=>' "$work/list" && ! grep '=>' "$work/list" | grep -v "=> $lib/" | grep -q .; then
  ok "runtime: every shared object comes from $dir/lib ($(grep -c '=>' "$work/list") of them)"
else
  fail "runtime: shared objects resolved outside $dir/lib" "$work/list"
fi

if run version >"$work/version" 2>&1 && grep -q '^envoy-router ' "$work/version"; then
  ok "runtime: version ($(head -n1 "$work/version"))"
else
  fail "runtime: version" "$work/version"
fi

if run check >"$work/check" 2>&1; then ok "runtime: check (built-in scripts)"; else fail "runtime: check (built-in scripts)" "$work/check"; fi
if run check --scripts-dir "$dir/usr/share/envoy-router/scripts" >"$work/check2" 2>&1; then
  ok "runtime: check of the shipped copy of the default scripts"
else
  fail "runtime: check of the shipped copy of the default scripts" "$work/check2"
fi

# A short run against the loopback cluster: ready within a few seconds.
kubeconfig=$(tools/cluster.sh up | sed -n 's/^export KUBECONFIG=//p')
if [[ -z $kubeconfig ]]; then fail "runtime: tools/cluster.sh up"; exit 1; fi
ns=runtime-check
"$top/.cache/bin/kubectl" --kubeconfig "$kubeconfig" get namespace "$ns" >/dev/null 2>&1 ||
  "$top/.cache/bin/kubectl" --kubeconfig "$kubeconfig" create namespace "$ns" >/dev/null
port() { # a port below the ephemeral range that nothing uses
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null || { echo "$p"; return; }
  done
}
mport=$(port) hport=$(port)
[[ $mport == "$hport" ]] && hport=$((hport + 1))
start=$(date +%s%N)
# Not through run(): $! must be the operator itself (env and the loader exec).
env -i "$loader" --library-path "$lib" "$bin" --kubeconfig "$kubeconfig" --watch-namespace "$ns" \
  --metrics-bind-address "127.0.0.1:$mport" --health-probe-bind-address "127.0.0.1:$hport" \
  >"$work/run.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 100); do
  if [[ $(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hport/readyz") == 200 ]]; then
    ready=1; break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [[ $ready -eq 1 ]]; then ok "runtime: ready against the cluster in ${ms} ms"; else fail "runtime: not ready within 5 s" "$work/run.log"; fi
curl -s -m 2 -o "$work/metrics" "http://127.0.0.1:$mport/metrics"
if grep -q '^envoy_router_managed_pods' "$work/metrics"; then
  ok "runtime: serves /metrics"
else
  fail "runtime: /metrics" "$work/run.log"
fi
kill -TERM "$pid" 2>/dev/null
if wait "$pid"; then ok "runtime: exits 0 on SIGTERM"; else fail "runtime: exit status on SIGTERM" "$work/run.log"; fi
pid=
"$top/.cache/bin/kubectl" --kubeconfig "$kubeconfig" delete namespace "$ns" --wait=false >/dev/null 2>&1
exit "$status"
