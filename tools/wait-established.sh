#!/usr/bin/env bash
# Waits until CRDs are Established.
#
#   tools/wait-established.sh TIMEOUT_SECONDS KUBECTL_ARGS...
#   e.g. tools/wait-established.sh 60 --kubeconfig k crd/a.example.com -f b.yaml
#
# `kubectl wait --for=condition=Established` fails at once, instead of
# waiting, on a CRD created a moment ago whose status has no conditions yet
# (".status.conditions accessor error"). This asks again until the deadline.
# The last kubectl output is printed; exit status 1 on timeout.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kubectl=${KUBECTL:-$here/../.cache/bin/kubectl}
timeout=$1; shift
deadline=$((SECONDS + timeout))
until out=$("$kubectl" wait --for=condition=Established --timeout=10s "$@" 2>&1); do
  if ((SECONDS >= deadline)); then
    echo "$out"
    exit 1
  fi
  sleep 0.5
done
echo "$out"
