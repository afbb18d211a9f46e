#!/usr/bin/env bash
# What can run here of .github/workflows/release.yml, as TAP lines, through
# the same make targets the workflow calls:
#   - actionlint passes on every workflow;
#   - every `make TARGET` the release workflow runs is a target of the Makefile;
#   - `make chart-package` (with the dependency packaged offline by `make
#     helm-deps` instead of the workflow's online `helm dependency build`):
#     version, appVersion, image repository, the bundled Envoy Gateway chart;
#   - `make image-multiarch` for amd64 and arm64 (arm64 under qemu-user-static
#     through binfmt_misc): one manifest list with both, and the arm64 image
#     runs `version` under emulation.
# Not here: the pushes to GHCR (no registry is reachable) and the online
# `helm dependency build`.
#
#   spec/install/release.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$PWD
helm=$top/.cache/bin/helm
version=0.0.0-release-test
repo=localhost/envoy-router-release-test
podman() { "$top/tools/podman.sh" "$@"; }
work=$(mktemp -d)
cleanup() {
  podman manifest rm "$repo:$version" >/dev/null 2>&1
  podman rmi -f "$repo:$version" >/dev/null 2>&1
  rm -rf "$work" "dist/envoy-router-$version.tgz"
}
trap cleanup EXIT
status=0
ok() { echo "ok - $1"; }
fail() { echo "not ok - $1"; [[ -n ${2:-} && -f $2 ]] && sed 's/^/#   /' "$2" | tail -n "${3:-30}"; status=1; }

wf=.github/workflows/release.yml
if .cache/bin/actionlint .github/workflows/*.yml >"$work/actionlint" 2>&1; then
  ok "release: actionlint passes on $(ls .github/workflows/*.yml | wc -l) workflows"
else
  fail "release: actionlint" "$work/actionlint"
fi

# `make X` (the first word after make that is not an option or assignment).
targets=$(grep -oE '^\s*run: make [a-z][-a-z0-9]*|^\s+make [a-z][-a-z0-9]*' "$wf" | awk '{ print $NF }' | sort -u)
if [[ -n $targets ]]; then
  missing=
  for t in $targets; do
    make -n --no-print-directory "$t" >/dev/null 2>&1 || missing+=" $t"
  done
  if [[ -z $missing ]]; then ok "release: the workflow's make targets exist ($(echo $targets))"; else fail "release: make targets the workflow calls are missing:$missing"; fi
else
  fail "release: the workflow calls no make target"
fi

# ---- the chart ------------------------------------------------------------
if make --no-print-directory helm-deps >"$work/deps" 2>&1 &&
   make --no-print-directory chart-package VERSION="$version" IMAGE_REPO=registry.example/team/envoy-router \
     >"$work/package" 2>&1 && [[ -f dist/envoy-router-$version.tgz ]]; then
  ok "release: make chart-package wrote dist/envoy-router-$version.tgz"
else
  cat "$work/deps" >>"$work/package"; fail "release: make chart-package" "$work/package"
fi
tgz=dist/envoy-router-$version.tgz
if [[ -f $tgz ]]; then
  "$helm" show chart "$tgz" >"$work/chart" 2>&1
  if grep -qx "version: $version" "$work/chart" && grep -qx "appVersion: $version" "$work/chart"; then
    ok "release: the packaged chart has version and appVersion $version"
  else
    fail "release: version/appVersion of the packaged chart" "$work/chart"
  fi
  if tar -xzOf "$tgz" envoy-router/charts/gateway-helm/Chart.yaml 2>&1 >"$work/sub" &&
     grep -qx 'name: gateway-helm' "$work/sub" && grep -qx 'version: v1.9.0' "$work/sub"; then
    ok "release: the packaged chart bundles its dependency gateway-helm v1.9.0"
  else
    tar -tzf "$tgz" | grep -v '/crds/' >>"$work/sub"; fail "release: no gateway-helm v1.9.0 in the packaged chart" "$work/sub"
  fi
  if "$helm" template r "$tgz" -n ns-1 --show-only templates/deployment.yaml >"$work/tpl" 2>&1 &&
     grep -q "image: registry.example/team/envoy-router:$version\$" "$work/tpl"; then
    ok "release: the packaged chart deploys registry.example/team/envoy-router:$version"
  else
    fail "release: image of the packaged chart's Deployment" "$work/tpl"
  fi
  if "$helm" lint --strict "$tgz" >"$work/lint" 2>&1; then ok "release: helm lint --strict of the package"; else fail "release: helm lint of the package" "$work/lint"; fi
fi

# ---- the image, amd64 and arm64 --------------------------------------------
start=$SECONDS
if make --no-print-directory image-multiarch IMAGE_ARCHES="amd64 arm64" IMAGE_REPO="$repo" IMAGE_TAG="$version" \
    VERSION="$version" >"$work/multi" 2>&1; then
  ok "release: make image-multiarch for amd64 and arm64 ($((SECONDS - start)) s)"
else
  fail "release: make image-multiarch" "$work/multi" 40
fi
podman manifest inspect "$repo:$version" >"$work/manifest" 2>&1
for a in amd64 arm64; do
  if grep -q "\"architecture\": *\"$a\"" "$work/manifest"; then
    ok "release: the manifest list holds $a"
  else
    fail "release: no $a image in the manifest list" "$work/manifest"
  fi
done
for a in amd64 arm64; do
  digest=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(x["digest"] for x in m["manifests"] if x["platform"]["architecture"]==sys.argv[2]))' \
    "$work/manifest" "$a" 2>/dev/null)
  if [[ -n $digest ]] && podman run --rm "$repo@$digest" version >"$work/v-$a" 2>&1 &&
     grep -qx "envoy-router $version" "$work/v-$a"; then
    ok "release: the $a image runs version$([[ $a != $(dpkg --print-architecture) ]] && echo ' under qemu emulation')"
  else
    fail "release: the $a image runs version" "$work/v-$a"
  fi
done
exit "$status"
