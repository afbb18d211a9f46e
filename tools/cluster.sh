#!/usr/bin/env bash
# A Kubernetes control plane on loopback for tests: etcd, kube-apiserver and
# kube-controller-manager (garbage collector, namespace and service-account
# controllers), built by tools/build.sh. No kubelet, no scheduler: pods stay
# Pending until a test writes their status through the status subresource.
#
#   tools/cluster.sh up       start (or reuse) the cluster; stdout gets one
#                             line, `export KUBECONFIG=...`, so
#                             `eval "$(tools/cluster.sh up)"` works
#   tools/cluster.sh down     stop the processes it started (and the data plane
#                             of tools/dataplane.sh on the default cluster),
#                             remove its state
#   tools/cluster.sh status   say whether it runs (exit 0) or not (exit 1)
#   tools/cluster.sh env      print the export line of a running cluster
#
# State (certificates, etcd data, logs, pid files, kubeconfig) lives in
# $CLUSTER_DIR, by default .cache/cluster of the checkout; point CLUSTER_DIR
# elsewhere to run an isolated cluster. Ports are picked free at each start.
#
# Identities: the kubeconfig uses a client certificate in system:masters.
# $CLUSTER_DIR/admin.token holds a bearer token with the same rights. Lines of
# the CSV file named by CLUSTER_EXTRA_TOKENS (token,user,uid,"group1,group2")
# are added to the API server's token file at start; the API server reads that
# file only when it starts. Service-account tokens (`kubectl create token`)
# work as well: the signing key is configured.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${CLUSTER_BIN:-$top/.cache/bin}
crd_dir=${CLUSTER_CRDS:-$top/.cache/src/gateway-api/config/crd/standard}
dir=${CLUSTER_DIR:-$top/.cache/cluster}
mkdir -p "$(dirname "$dir")"
dir=$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")

ready_timeout=${CLUSTER_READY_TIMEOUT:-120}
service_range=10.96.0.0/16
service_ip=10.96.0.1
# Stop order: clients of the API server first, etcd last.
components=(kube-controller-manager kube-apiserver etcd)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

kubeconfig=$dir/kubeconfig
kctl() { "$bin/kubectl" --kubeconfig="$kubeconfig" "$@"; }

# ---- processes ----------------------------------------------------------

# The pid recorded for component $1 if that process still runs the
# component's program (a recycled pid is not ours).
live_pid() {
  local f=$dir/pids/$1.pid pid exe
  [[ -r $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $(basename "${exe% (deleted)}") == "$1" ]]
}

# start NAME ARGS...: run $bin/NAME detached in its own session, output to
# logs/NAME.log, pid to pids/NAME.pid. Descriptors other than 0-2 (the lock,
# make's jobserver) are not passed on.
start() {
  local name=$1; shift
  local prog; prog=$(readlink -f "$bin/$name")
  setsid "$prog" "$@" </dev/null >"$dir/logs/$name.log" 2>&1 9>&- &
  echo $! >"$dir/pids/$name.pid"
  # setsid execs the program in place (the shell's child leads no process
  # group); wait for that so live_pid recognises it.
  local i
  for ((i = 0; i < 50; i++)); do
    live_pid "$name" && return 0
    sleep 0.05
  done
  tail -n 30 "$dir/logs/$name.log" >&2
  die "$name did not start (see $dir/logs/$name.log)"
}

# Stop the components we have a live pid for, one after the other in
# $components order (the API server shuts down cleanly only while etcd still
# answers): SIGTERM, up to 20 s, then SIGKILL.
stop_all() {
  local c pid i
  for c in "${components[@]}"; do
    live_pid "$c" || continue
    pid=$(<"$dir/pids/$c.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$c (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  done
}

# Remove the state directory, only if it is one of ours.
remove_state() {
  [[ -d $dir ]] || return 0
  [[ -e $dir/.envoy-router-cluster ]] ||
    die "$dir has no .envoy-router-cluster marker; not removing it"
  rm -rf "$dir"
}

# ---- health -------------------------------------------------------------

api_port() { [[ -r $dir/ports ]] && sed -n 's/^apiserver=//p' "$dir/ports"; }

# GET https://127.0.0.1:<api>/$1 as the admin; prints the body.
api_get() {
  curl -fsS --max-time 5 --cacert "$dir/pki/ca.crt" \
    -H "Authorization: Bearer $(<"$dir/admin.token")" \
    "https://127.0.0.1:$(api_port)/$1"
}

all_live() {
  local c
  for c in "${components[@]}"; do live_pid "$c" || return 1; done
}

api_ready() { [[ $(api_get readyz 2>/dev/null) == ok ]]; }

running() { all_live && [[ -e $dir/up-seconds ]] && api_ready; }

any_running() {
  local c
  for c in "${components[@]}"; do live_pid "$c" && return 0; done
  return 1
}

# wait_for WHAT LOG CMD...: retry CMD every 0.2 s until it succeeds or the
# deadline passes; then print the log's tail and fail.
wait_for() {
  local what=$1 logf=$2; shift 2
  local deadline=$((SECONDS + ready_timeout)) name
  name=$(basename "$logf" .log)
  until "$@" >/dev/null 2>&1; do
    if ! live_pid "$name"; then
      log "$name exited while waiting for $what; last lines of $logf:"
      tail -n 30 "$logf" >&2
      die "$name did not start"
    fi
    if ((SECONDS >= deadline)); then
      log "timed out after ${ready_timeout} s waiting for $what; last lines of $logf:"
      tail -n 30 "$logf" >&2
      die "$what not ready"
    fi
    sleep 0.2
  done
}

# ---- ports and certificates -----------------------------------------------

# N distinct TCP ports on 127.0.0.1 that nothing listens on or uses now,
# outside the kernel's ephemeral range: a port in it can be taken as the
# local end of an outgoing connection (the API server's to etcd, say)
# between this pick and the bind (kube-controller-manager once failed so).
free_ports() {
  local n=$1 p used lo=32768 hi=60999 base span
  local -a out=()
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if ((lo > 12000)); then
    base=10000 span=$((lo - 10000))
  else
    base=$((hi + 1)) span=$((65536 - hi - 1))
  fi
  used=" $(ss -Htan 2>/dev/null | awk '{n=split($4,a,":"); printf "%s ", a[n]}') "
  while ((${#out[@]} < n)); do
    p=$((base + (RANDOM * 32768 + RANDOM) % span))
    [[ $used == *" $p "* ]] && continue
    # Nothing must answer there either (covers sockets ss cannot see).
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
    used+="$p "
    out+=("$p")
  done
  echo "${out[@]}"
}

make_pki() {
  local p=$dir/pki
  mkdir -p "$p"
  (
    cd "$p"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt \
      -days 3650 -subj "/CN=envoy-router-test-ca" 2>/dev/null
    # API server serving certificate: every name a client may dial.
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf '%s\n' \
      "subjectAltName=IP:127.0.0.1,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # Admin client certificate: O becomes the group.
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=envoy-router-admin" 2>/dev/null
    printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment" >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile admin.ext -out admin.crt 2>/dev/null
    # Service-account token signing pair.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
  )
  local token
  token=$(openssl rand -hex 24)
  (umask 077 && printf '%s\n' "$token" >"$dir/admin.token")
  {
    printf '%s,envoy-router-admin,envoy-router-admin,"system:masters"\n' "$token"
    if [[ -n ${CLUSTER_EXTRA_TOKENS:-} ]]; then cat "$CLUSTER_EXTRA_TOKENS"; fi
  } >"$p/tokens.csv"
  chmod 600 "$p/tokens.csv"
}

write_kubeconfig() {
  local port=$1 p=$dir/pki
  local tmp=$kubeconfig.tmp
  (umask 077 && cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envoy-router-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$p/ca.crt")
users:
- name: envoy-router-admin
  user:
    client-certificate-data: $(base64 -w0 "$p/admin.crt")
    client-key-data: $(base64 -w0 "$p/admin.key")
contexts:
- name: envoy-router-test
  context:
    cluster: envoy-router-test
    user: envoy-router-admin
current-context: envoy-router-test
EOF
  )
  mv "$tmp" "$kubeconfig"
}

# ---- commands -------------------------------------------------------------

# start_apiserver ETCD_PORT API_PORT: kube-apiserver with the cluster's PKI,
# waiting for /readyz. OwnerReferencesPermissionEnforcement (on in OpenShift
# and other hardened clusters) makes a blocking ownerReference need `update`
# on the owner's finalizers: the chart's RBAC is proven against it.
start_apiserver() {
  local etcd_port=$1 api=$2 p=$dir/pki
  start kube-apiserver \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api" \
    --cert-dir="$p/apiserver" \
    --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
    --client-ca-file="$p/ca.crt" --token-auth-file="$p/tokens.csv" \
    --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount \
    --enable-admission-plugins=OwnerReferencesPermissionEnforcement \
    --service-cluster-ip-range="$service_range" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" \
    --allow-privileged=true --profiling=false
  wait_for "kube-apiserver /readyz on port $api" "$dir/logs/kube-apiserver.log" \
    bash -c '[[ $(curl -fsS --max-time 5 --cacert "$1" -H "Authorization: Bearer $(<"$2")" "$3") == ok ]]' \
    _ "$p/ca.crt" "$dir/admin.token" "https://127.0.0.1:$api/readyz"

}

cmd_up() {
  local t0 c
  t0=$(date +%s.%N)
  # up-seconds is written last: without it an earlier `up` did not finish.
  if all_live && [[ -e $dir/up-seconds ]]; then
    # A busy API server may answer slowly: wait rather than tear it down
    # under another suite's feet.
    wait_for "kube-apiserver /readyz" "$dir/logs/kube-apiserver.log" api_ready
    log "reusing the running cluster in $dir (API on port $(api_port))"
    echo "export KUBECONFIG=$kubeconfig"
    return 0
  fi
  if any_running || [[ -e $dir ]]; then
    log "found a stopped or unhealthy cluster in $dir; removing it"
    stop_all
    remove_state
  fi
  for c in etcd kube-apiserver kube-controller-manager kubectl; do
    [[ -x $bin/$c ]] || die "$bin/$c is missing: run 'make tools' first"
  done
  [[ -d $crd_dir ]] || die "$crd_dir is missing: run 'make tools' first"

  mkdir -p "$dir/pids" "$dir/logs" "$dir/etcd" "$dir/pki/apiserver" "$dir/pki/kcm"
  touch "$dir/.envoy-router-cluster"
  make_pki

  local etcd_port peer_port api kcm_port
  read -r etcd_port peer_port api kcm_port < <(free_ports 4)
  printf 'etcd=%s\netcd-peer=%s\napiserver=%s\ncontroller-manager=%s\n' \
    "$etcd_port" "$peer_port" "$api" "$kcm_port" >"$dir/ports"
  write_kubeconfig "$api"
  local p=$dir/pki

  start etcd \
    --name=test --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="test=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level=warn
  wait_for "etcd on port $etcd_port" "$dir/logs/etcd.log" \
    curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"

  start_apiserver "$etcd_port" "$api"

  # Gateway API CRDs (standard channel). The bundle's ValidatingAdmissionPolicy
  # (safe-upgrades) is left out: it would refuse Envoy Gateway's chart CRDs.
  local -a files=()
  mapfile -t files < <(find "$crd_dir" -maxdepth 1 -name '*.yaml' ! -name '*vap*' | sort)
  ((${#files[@]} > 0)) || die "no CRD files in $crd_dir"
  local -a fargs=()
  for c in "${files[@]}"; do fargs+=(-f "$c"); done
  kctl apply --server-side --field-manager=envoy-router-tests "${fargs[@]}" \
    >"$dir/logs/crds.log" 2>&1 || { tail -n 20 "$dir/logs/crds.log" >&2; die "CRD install failed"; }
  KUBECTL=$bin/kubectl "$top/tools/wait-established.sh" "$ready_timeout" --kubeconfig="$kubeconfig" "${fargs[@]}" \
    >>"$dir/logs/crds.log" 2>&1 || { tail -n 20 "$dir/logs/crds.log" >&2; die "CRDs not Established"; }

  # After the CRDs: the garbage collector finds resource kinds at start and
  # then only every 30 s, and until it watches HTTPRoutes it cannot hold a
  # Service back for the route that blocks it (order_spec's collector-only
  # case, run within 30 s of `up`, saw the Service go first).
  start kube-controller-manager \
    --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
    --authentication-skip-lookup=true \
    --controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller \
    --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" --cert-dir="$p/kcm" \
    --profiling=false

  wait_for "kube-controller-manager /healthz on port $kcm_port" \
    "$dir/logs/kube-controller-manager.log" \
    bash -c '[[ $(curl -fsSk --max-time 5 "$1") == ok ]]' _ "https://127.0.0.1:$kcm_port/healthz"

  local took
  took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "$took" >"$dir/up-seconds"
  log "cluster up in $took s: API https://127.0.0.1:$api, state in $dir"
  echo "export KUBECONFIG=$kubeconfig"
}

cmd_down() {
  # The data plane (tools/dataplane.sh: Envoy Gateway, proxies, pod stand-ins
  # on addresses of lo) runs against the checkout's default cluster; it would
  # outlive the cluster and keep its fixed ports.
  if [[ $dir == "$top/.cache/cluster" && -x $top/tools/dataplane.sh ]]; then
    "$top/tools/dataplane.sh" down || log "tools/dataplane.sh down failed"
  fi
  if any_running; then
    stop_all
    log "stopped the cluster in $dir"
  fi
  remove_state
}

cmd_status() {
  local c
  for c in "${components[@]}"; do
    if live_pid "$c"; then
      printf '%-24s running, pid %s\n' "$c" "$(<"$dir/pids/$c.pid")"
    else
      printf '%-24s not running\n' "$c"
    fi
  done
  if running; then
    echo "API https://127.0.0.1:$(api_port) ready; KUBECONFIG=$kubeconfig"
    return 0
  fi
  echo "cluster in $dir is not ready"
  return 1
}

# Kills kube-apiserver (SIGKILL: connections drop as in a crash or a network
# cut) and starts it again on the same port with the same state, for tests
# of reconnects. etcd and the controller-manager keep running.
cmd_restart-apiserver() {
  running || die "no running cluster in $dir (run: tools/cluster.sh up)"
  local pid
  pid=$(<"$dir/pids/kube-apiserver.pid")
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  log "kube-apiserver killed; starting it again"
  start_apiserver "$(sed -n 's/^etcd=//p' "$dir/ports")" "$(api_port)"
  log "kube-apiserver is back on port $(api_port)"
}

# The fault specs' finer steps: kill kube-apiserver and leave it down,
# start it again, freeze and thaw it (SIGSTOP/SIGCONT: connections stay open
# and hang), and compact etcd's history up to now (watches from an older
# resourceVersion then get 410 Gone).
cmd_stop-apiserver() {
  running || die "no running cluster in $dir (run: tools/cluster.sh up)"
  local pid
  pid=$(<"$dir/pids/kube-apiserver.pid")
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  log "kube-apiserver killed"
}

cmd_start-apiserver() {
  live_pid kube-apiserver && die "kube-apiserver is running already"
  start_apiserver "$(sed -n 's/^etcd=//p' "$dir/ports")" "$(api_port)"
  log "kube-apiserver is back on port $(api_port)"
}

cmd_pause-apiserver() {
  kill -STOP "$(<"$dir/pids/kube-apiserver.pid")"
  log "kube-apiserver stopped (SIGSTOP)"
}

cmd_resume-apiserver() {
  kill -CONT "$(<"$dir/pids/kube-apiserver.pid")"
  log "kube-apiserver resumed (SIGCONT)"
}

cmd_compact-etcd() {
  local url rev
  url="http://127.0.0.1:$(sed -n 's/^etcd=//p' "$dir/ports")"
  # The JSON gateway of etcd's v3 API: the revision from any read ("/" in
  # base64), then a physical compaction at it.
  rev=$(curl -fsS --max-time 10 -X POST -d '{"key":"Lw=="}' "$url/v3/kv/range" |
    sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
  [[ -n $rev ]] || die "cannot read etcd's revision at $url"
  curl -fsS --max-time 60 -X POST -d "{\"revision\":\"$rev\",\"physical\":true}" \
    "$url/v3/kv/compaction" >/dev/null || die "etcd compaction at $rev failed"
  log "etcd compacted at revision $rev"
  echo "$rev"
}

cmd_env() {
  running || die "no running cluster in $dir (run: tools/cluster.sh up)"
  echo "export KUBECONFIG=$kubeconfig"
}

case ${1:-} in
  up | down | restart-apiserver | stop-apiserver | start-apiserver)
    # One up/down at a time per parent directory. The lock is on the parent so
    # that `down` can remove the state directory while holding it.
    exec 9<"$(dirname "$dir")"
    flock 9
    "cmd_$1"
    ;;
  status | env | pause-apiserver | resume-apiserver | compact-etcd) "cmd_$1" ;;
  *)
    echo "usage: $0 up|down|restart-apiserver|stop-apiserver|start-apiserver|pause-apiserver|resume-apiserver|compact-etcd|status|env   (state in \$CLUSTER_DIR, default .cache/cluster)" >&2
    exit 2
    ;;
esac
