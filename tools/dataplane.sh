#!/usr/bin/env bash
# The data plane for tests and `make demo`: real Envoy Gateway and Envoy on
# the loopback cluster of tools/cluster.sh, with pods stood in for by small
# HTTP servers on private addresses of `lo`.
#
#   tools/dataplane.sh up                 start (or reuse) Envoy Gateway: CRDs of
#                                         its chart, certificates (certgen), then
#                                         envoy-gateway as a host process
#   tools/dataplane.sh gateway RELEASE NS [HELM-ARGS...]
#                                         apply the GatewayClass, Gateway,
#                                         EnvoyProxy and BackendTrafficPolicy of
#                                         `helm template RELEASE charts/envoy-router
#                                         -n NS HELM-ARGS`, then run the Envoy
#                                         proxy Envoy Gateway deploys for that
#                                         Gateway; prints "port=P admin=A"
#   tools/dataplane.sh pods PORT NAME=IP...
#                                         stand-ins for pods: puts each IP on lo
#                                         (/32) and serves NAME on IP:PORT (one
#                                         process); prints its pid
#   tools/dataplane.sh pods-stop PID|all  stop such a process (or all), remove its addresses
#   tools/dataplane.sh restart-eg         SIGTERM Envoy Gateway, start it again
#   tools/dataplane.sh down               stop everything by pid (also the client
#                                         loops and operators specs recorded in
#                                         spawned/), remove addresses and mount
#                                         points, delete state
#   tools/dataplane.sh status             what runs (exit 1 when Envoy Gateway does not)
#
# Envoy Gateway runs as the chart runs it: provider Kubernetes, deploy type
# GatewayNamespace (its config is the chart's envoy-gateway-config, rendered by
# helm), plus what only a host process needs: no leader election, no topology
# injector, and its admin and metrics ports moved off Envoy's. It reads its xDS
# certificates from the fixed path /certs and the in-cluster credentials from
# /var/run/secrets/kubernetes.io/serviceaccount, so it runs in a private mount
# namespace where both are bind mounts of directories under the state dir
# (the empty mount points are created on the host if missing and removed by
# `down`). Envoy Gateway's ports are fixed (xDS 18000, 8080, 8081): one data
# plane per machine at a time.
#
# Root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) is needed. State lives in
# $DATAPLANE_DIR (default .cache/dataplane).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/.cache/bin
dir=${DATAPLANE_DIR:-$top/.cache/dataplane}
mkdir -p "$(dirname "$dir")"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")
eg_ns=envoy-gateway-system
mountpoints=(/certs /var/run/secrets/kubernetes.io/serviceaccount)

log() { printf '[dataplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

kubeconfig() { "$top/tools/cluster.sh" up | sed -n 's/^export KUBECONFIG=//p'; }
kctl() { "$bin/kubectl" --kubeconfig="$KUBECONFIG" "$@"; }

# The pid in file $1 if that process still runs program $2 (basename of its
# executable; a recycled pid is not ours).
live_pid() {
  local f=$1 pid exe
  [[ -r $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=$(basename "${exe% (deleted)}")
  [[ $exe == "$2"* ]] || return 1
  echo "$pid"
}

# stop_pid FILE PROG: SIGTERM, up to 15 s, then SIGKILL; removes FILE.
stop_pid() {
  local pid i
  if pid=$(live_pid "$1" "$2"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$2 (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
  fi
  rm -f "$1"
}

# wait_until SECONDS WHAT CMD...: retry CMD every 0.2 s.
wait_until() {
  local t=$1 what=$2; shift 2
  local deadline=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out after $t s waiting for $what"; return 1; }
    sleep 0.2
  done
}

# ---- Envoy Gateway --------------------------------------------------------

# The chart's rendering of Envoy Gateway's config, with what a host process
# needs on top.
write_eg_config() {
  "$bin/helm" template envoy-router "$top/charts/envoy-router" -n "$eg_ns" \
    --show-only charts/envoy-gateway/templates/envoy-gateway-config.yaml >"$dir/eg-configmap.yaml"
  python3 - "$dir/eg-configmap.yaml" "$dir/envoy-gateway.yaml" <<'EOF'
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
cfg = yaml.safe_load(cm["data"]["envoy-gateway.yaml"])
k = cfg["provider"]["kubernetes"]
assert k["deploy"]["type"] == "GatewayNamespace", "the chart's deploy type changed: %s" % k["deploy"]
k.setdefault("leaderElection", {})["disable"] = True
k.setdefault("proxyTopologyInjector", {})["disabled"] = True
cfg["admin"] = {"address": {"host": "127.0.0.1", "port": 19100}}
cfg.setdefault("telemetry", {}).setdefault("metrics", {})["prometheus"] = {"disable": True}
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
EOF
}

start_eg() {
  local api
  api=$(sed -n 's/^apiserver=//p' "$(dirname "$KUBECONFIG")/ports")
  # setsid: its own session, so a test's process group signal does not reach it.
  setsid env KUBECONFIG="$KUBECONFIG" ENVOY_GATEWAY_NAMESPACE=$eg_ns \
    KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$api" \
    unshare -m --propagation private -- bash -c '
      mount --bind "$1" /certs && mount --bind "$2" /var/run/secrets/kubernetes.io/serviceaccount &&
      exec "$3" server --config-path "$4"' _ \
    "$dir/certs" "$dir/sa" "$(readlink -f "$bin/envoy-gateway")" "$dir/envoy-gateway.yaml" \
    </dev/null >>"$dir/logs/envoy-gateway.log" 2>&1 9>&- &
  echo $! >"$dir/pids/envoy-gateway.pid"
  # unshare and bash exec in place: the pid becomes envoy-gateway's.
  wait_until 10 "envoy-gateway to start" live_pid "$dir/pids/envoy-gateway.pid" envoy-gateway ||
    { tail -n 20 "$dir/logs/envoy-gateway.log" >&2; die "envoy-gateway did not start"; }
  wait_until 60 "envoy-gateway /healthz" curl -fsS --max-time 2 http://127.0.0.1:8081/healthz ||
    { tail -n 20 "$dir/logs/envoy-gateway.log" >&2; die "envoy-gateway not healthy"; }
}

cmd_up() {
  KUBECONFIG=$(kubeconfig)
  [[ -n $KUBECONFIG ]] || die "tools/cluster.sh up gave no KUBECONFIG"
  export KUBECONFIG
  local b
  for b in envoy-gateway envoy helm kubectl; do
    [[ -x $bin/$b ]] || die "$bin/$b is missing: run 'make tools' first"
  done
  if live_pid "$dir/pids/envoy-gateway.pid" envoy-gateway >/dev/null; then
    log "reusing Envoy Gateway (pid $(<"$dir/pids/envoy-gateway.pid"))"
    return 0
  fi
  if [[ -e $dir ]]; then cmd_down; fi
  mkdir -p "$dir/pids" "$dir/logs" "$dir/certs" "$dir/sa" "$dir/proxies" "$dir/pods"
  touch "$dir/.envoy-router-dataplane"
  local m
  for m in "${mountpoints[@]}"; do
    if [[ ! -e $m ]]; then mkdir -p "$m" && echo "$m" >>"$dir/created-mountpoints"; fi
  done

  # The CRDs as the gateway-helm chart installs them (Gateway API experimental
  # channel and Envoy Gateway's own), server-side (they are too big for
  # client-side apply).
  local crds=$top/.cache/src/gateway/charts/gateway-helm/charts/crds/crds
  [[ -d $crds ]] || die "$crds is missing: run 'make tools' first"
  local -a f=(-f "$crds/gatewayapi-crds.yaml")
  for m in "$crds"/generated/*.yaml; do f+=(-f "$m"); done
  kctl apply --server-side --force-conflicts --field-manager=envoy-router-dataplane "${f[@]}" \
    >"$dir/logs/crds.log" 2>&1 || { tail -n 20 "$dir/logs/crds.log" >&2; die "CRD install failed"; }
  KUBECTL=$bin/kubectl "$top/tools/wait-established.sh" 60 --kubeconfig="$KUBECONFIG" "${f[@]}" \
    >>"$dir/logs/crds.log" 2>&1 || { tail -n 20 "$dir/logs/crds.log" >&2; die "CRDs not Established"; }

  kctl create namespace $eg_ns --dry-run=client -o yaml | kctl apply -f - >/dev/null
  # The chart's certgen Job, as a host process.
  ENVOY_GATEWAY_NAMESPACE=$eg_ns "$bin/envoy-gateway" certgen --disable-topology-injector \
    >"$dir/logs/certgen.log" 2>&1 || { tail -n 20 "$dir/logs/certgen.log" >&2; die "certgen failed"; }
  local k
  for k in tls.crt tls.key ca.crt; do
    kctl get secret envoy-gateway -n $eg_ns -o "jsonpath={.data.${k//./\\.}}" | base64 -d >"$dir/certs/$k"
  done
  # In-cluster credentials: the TokenReview of the proxies' tokens goes
  # through them. The admin token stands in for the chart's ServiceAccount.
  cp "$(dirname "$KUBECONFIG")/admin.token" "$dir/sa/token"
  cp "$(dirname "$KUBECONFIG")/pki/ca.crt" "$dir/sa/ca.crt"
  printf '%s' $eg_ns >"$dir/sa/namespace"
  chmod 600 "$dir/certs/tls.key" "$dir/sa/token"

  write_eg_config
  start_eg
  log "Envoy Gateway $("$bin/envoy-gateway" version 2>/dev/null | sed -n 's/.*\(v[0-9.]*\).*/\1/p' | head -1) up (pid $(<"$dir/pids/envoy-gateway.pid"), log $dir/logs/envoy-gateway.log)"
}

cmd_restart-eg() {
  KUBECONFIG=$(kubeconfig); export KUBECONFIG
  stop_pid "$dir/pids/envoy-gateway.pid" envoy-gateway
  log "Envoy Gateway stopped; starting it again"
  start_eg
}

# ---- Gateways and their proxies -------------------------------------------

cmd_gateway() {
  local release=${1:?usage: gateway RELEASE NAMESPACE [HELM-ARGS...]} ns=${2:?namespace}
  shift 2
  KUBECONFIG=$(kubeconfig); export KUBECONFIG
  live_pid "$dir/pids/envoy-gateway.pid" envoy-gateway >/dev/null || die "Envoy Gateway is not running (tools/dataplane.sh up)"
  local out=$dir/gateway-$ns-$release.yaml
  "$bin/helm" template "$release" "$top/charts/envoy-router" -n "$ns" "$@" >"$dir/rendered.yaml"
  # Only the data-plane objects; the operator runs out of cluster in tests.
  python3 - "$dir/rendered.yaml" "$out" <<'EOF'
import sys, yaml
keep = ("GatewayClass", "Gateway", "EnvoyProxy", "BackendTrafficPolicy")
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") in keep]
# Policies first: a policy that arrives after routes stalls new routes for up
# to 15 s (Envoy's initial_fetch_timeout), so it is applied before any pod.
docs.sort(key=lambda d: keep.index(d["kind"]))
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
  kctl create namespace "$ns" --dry-run=client -o yaml | kctl apply -f - >/dev/null
  kctl apply --server-side --force-conflicts --field-manager=envoy-router-dataplane -f "$out" >/dev/null
  local gw port
  gw=$(python3 -c 'import sys,yaml; print([d for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"]=="Gateway"][0]["metadata"]["name"])' "$out")
  port=$(python3 -c 'import sys,yaml; print([d for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"]=="Gateway"][0]["spec"]["listeners"][0]["port"])' "$out")
  local pdir=$dir/proxies/$ns-$gw other
  # All proxies share one network namespace and Envoy binds with SO_REUSEPORT:
  # two on one port would silently split the traffic between them.
  for other in "$dir"/proxies/*/; do
    other=${other%/}
    [[ $other != "$pdir" && -r $other/port && $(<"$other/port") == $((port + 10000)) ]] || continue
    live_pid "$other/envoy.pid" envoy >/dev/null || continue
    die "port $((port + 10000)) is taken by the proxy of $(basename "$other"): give this Gateway another gateway.port"
  done
  stop_proxy "$pdir"
  mkdir -p "$pdir"
  # Each proxy gets its own admin/stats ports (all share one network namespace).
  local offset n
  n=$(find "$dir/proxies" -mindepth 1 -maxdepth 1 -type d | wc -l)
  offset=$(( (n - 1) * 10 ))
  setsid python3 "$top/tools/dataplane/proxy.py" "$ns" "$gw" "$pdir" "$offset" \
    </dev/null >>"$pdir/envoy.log" 2>&1 9>&- &
  echo $! >"$pdir/kubelet.pid"
  wait_until 90 "Envoy of Gateway $ns/$gw (log $pdir/envoy.log)" \
    curl -fsS --max-time 2 "http://127.0.0.1:$((19000 + offset))/ready" ||
    { tail -n 20 "$pdir/envoy.log" >&2; die "the proxy of Gateway $ns/$gw is not ready"; }
  # Ready is not enough: the Gateway's listener must have arrived over xDS.
  wait_until 30 "Envoy listening on port $((port + 10000))" \
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$((port + 10000))/" ||
    { tail -n 20 "$pdir/envoy.log" >&2; die "the proxy of Gateway $ns/$gw has no listener"; }
  echo "$((port + 10000))" >"$pdir/port"
  log "Gateway $ns/$gw: Envoy (pid $(<"$pdir/envoy.pid")) listens on 127.0.0.1:$((port + 10000))"
  echo "port=$((port + 10000)) admin=$((19000 + offset))"
}

stop_proxy() {
  [[ -d $1 ]] || return 0
  stop_pid "$1/envoy.pid" envoy
  stop_pid "$1/kubelet.pid" python3
}

# ---- pod stand-ins ----------------------------------------------------------

cmd_pods() {
  local port=${1:?usage: pods PORT NAME=IP...}; shift
  (($# > 0)) || die "usage: pods PORT NAME=IP..."
  mkdir -p "$dir/pods"
  local a ip
  local -a ips=()
  for a in "$@"; do
    ip=${a#*=}
    [[ $ip =~ ^10\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "pod address $ip: use 10.x.y.z"
    ips+=("$ip")
    ip addr replace "$ip/32" dev lo
  done
  setsid python3 "$top/tools/dataplane/podserver.py" --port "$port" "$@" \
    </dev/null >>"$dir/logs/pods.log" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$dir/pods/$pid.pid"
  printf '%s\n' "${ips[@]}" >"$dir/pods/$pid.addrs"
  # Ready when the last address accepts connections.
  wait_until 10 "pod stand-ins on port $port" bash -c "exec 3<>/dev/tcp/${ips[-1]}/$port" ||
    die "pod stand-ins did not start (log $dir/logs/pods.log)"
  echo "$pid"
}

cmd_pods-stop() {
  local pid=${1:?usage: pods-stop PID|all} a f
  if [[ $pid == all ]]; then
    for f in "$dir"/pods/*.addrs; do [[ -e $f ]] && cmd_pods-stop "$(basename "$f" .addrs)"; done
    return 0
  fi
  stop_pid "$dir/pods/$pid.pid" python3
  if [[ -r $dir/pods/$pid.addrs ]]; then
    while read -r a; do ip addr del "$a/32" dev lo 2>/dev/null || true; done <"$dir/pods/$pid.addrs"
    rm -f "$dir/pods/$pid.addrs"
  fi
}

# ---- down / status -----------------------------------------------------------

cmd_down() {
  [[ -d $dir ]] || return 0
  [[ -e $dir/.envoy-router-dataplane ]] || die "$dir has no .envoy-router-dataplane marker; not touching it"
  local p m
  # Client loops and operators the specs started (spec/dataplane/support.lua).
  for p in "$dir"/spawned/*.pid; do
    [[ -e $p ]] || continue
    if live_pid "$p" python3 >/dev/null; then stop_pid "$p" python3; else stop_pid "$p" envoy-router; fi
  done
  cmd_pods-stop all
  for p in "$dir"/proxies/*/; do
    [[ -d $p ]] && stop_proxy "${p%/}"
  done
  stop_pid "$dir/pids/envoy-gateway.pid" envoy-gateway
  if [[ -r $dir/created-mountpoints ]]; then
    while read -r m; do
      rmdir "$m" 2>/dev/null || log "mount point $m not empty; left in place"
      # And the parents made for it, while empty (/var/run/secrets/...).
      m=$(dirname "$m")
      while [[ $m != / && $m != /var/run && $m != /run ]] && rmdir "$m" 2>/dev/null; do m=$(dirname "$m"); done
    done <"$dir/created-mountpoints"
  fi
  rm -rf "$dir"
  log "data plane stopped"
}

cmd_status() {
  local pid p rc=1
  if pid=$(live_pid "$dir/pids/envoy-gateway.pid" envoy-gateway); then
    echo "envoy-gateway running, pid $pid"; rc=0
  else
    echo "envoy-gateway not running"
  fi
  for p in "$dir"/proxies/*/; do
    [[ -d $p ]] || continue
    if pid=$(live_pid "$p/envoy.pid" envoy); then
      echo "proxy $(basename "$p") running, pid $pid, port $(cat "$p/port" 2>/dev/null)"
    else
      echo "proxy $(basename "$p") not running"
    fi
  done
  for p in "$dir"/pods/*.pid; do
    [[ -e $p ]] || continue
    echo "pod stand-ins pid $(basename "$p" .pid): $(tr '\n' ' ' <"${p%.pid}.addrs")"
  done
  return $rc
}

case ${1:-} in
  up | down | restart-eg | gateway | pods | pods-stop)
    c=$1; shift
    # One command at a time per state directory (a lock file of its own:
    # tools/cluster.sh, called from here, locks the parent directory).
    exec 9>"$dir.lock"
    flock 9
    "cmd_$c" "$@"
    ;;
  status) cmd_status ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
