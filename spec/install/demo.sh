#!/usr/bin/env bash
# The README's first command from a clean clone, as TAP lines: `git clone`
# of this checkout's HEAD into a temporary directory, `make demo` there (the
# Debian packages and the per-user tool cache are shared with this checkout;
# the clone starts its own loopback cluster), then the output is checked for
# what a user is told to expect. The clone's cluster is stopped and the clone
# removed at the end.
#
#   spec/install/demo.sh
#
# Commit first: uncommitted changes are not in the clone. To check more of
# the demo's output, add a line to `expect` below: "description<TAB>regex".
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
clone=$work/envoy-router
cleanup() {
  [[ -d $clone ]] && (cd "$clone" && tools/cluster.sh down >/dev/null 2>&1)
  rm -rf "$work"
}
trap cleanup EXIT
status=0
ok() { echo "ok - $1"; }
fail() { echo "not ok - $1"; [[ -n ${2:-} && -f $2 ]] && sed 's/^/#   /' "$2" | tail -n "${3:-40}"; status=1; }

# What `make demo` prints today (pods as tools/demo.sh names them, in its
# namespace "demo"). One line per check: description, TAB, extended regex.
pods=(notebook-alice notebook-bob 7-panel.v2)
expect=()
for p in "${pods[@]}"; do
  re=${p//./\\.}
  expect+=("pod $p is created with an IP and made Ready	^pod demo/$re: IP 10\.244\.0\.[0-9]+, Ready$")
  expect+=("route /$p goes to a Service on port 80	^/$re[[:space:]]+-> [a-z0-9-]+:80$")
  expect+=("GET /$p/ through Envoy answers 200 from that pod	^GET /$re/ -> 200 $re$")
done

if git clone -q "$top" "$clone" >"$work/clone.log" 2>&1; then
  ok "demo: git clone of the checkout ($(git -C "$clone" rev-parse --short HEAD))"
else
  fail "demo: git clone of the checkout" "$work/clone.log"; exit 1
fi

start=$SECONDS
if (cd "$clone" && make demo) >"$work/demo.log" 2>&1; then
  ok "demo: make demo in a clean clone exits 0 ($((SECONDS - start)) s)"
else
  fail "demo: make demo in a clean clone" "$work/demo.log" 60
fi

for e in "${expect[@]}"; do
  desc=${e%%	*} re=${e#*	}
  if grep -qE -- "$re" "$work/demo.log"; then ok "demo: $desc"; else fail "demo: $desc" "$work/demo.log" 25; fi
done

# Each route's Service has its Service, EndpointSlice and HTTPRoute listed
# (the children take the Service's name, which is the pod's when it is a
# valid DNS label).
for p in "${pods[@]}"; do
  svc=$(awk -v r="/$p" '$1 == r && $2 == "->" { sub(/:[0-9]+$/, "", $3); print $3 }' "$work/demo.log")
  if [[ -n $svc ]] && grep -q "^service/$svc " "$work/demo.log" &&
     grep -q "^endpointslice\.discovery\.k8s\.io/$svc " "$work/demo.log" &&
     grep -q "^httproute\.gateway\.networking\.k8s\.io/$svc " "$work/demo.log"; then
    ok "demo: $p has its Service, EndpointSlice and HTTPRoute $svc listed"
  else
    fail "demo: Service, EndpointSlice and HTTPRoute of $p ('$svc') listed" "$work/demo.log" 25
  fi
done

# Every route line names a distinct pod: one route per pod, no more.
n=$(grep -cE '^/[^ ]+[[:space:]]+-> ' "$work/demo.log")
if [[ $n -eq ${#pods[@]} ]]; then ok "demo: exactly ${#pods[@]} routes printed"; else fail "demo: $n routes printed, want ${#pods[@]}" "$work/demo.log" 25; fi
exit "$status"
