#!/usr/bin/env bash
# Packages Envoy Gateway's Helm chart (gateway-helm) from the Go module source
# that tools/build.sh links at .cache/src/gateway, as the release on
# oci://docker.io/envoyproxy would be, so the envoy-router chart's dependency
# can be satisfied without reaching docker.io.
#
#   tools/package-gateway-chart.sh DEST_DIR
#
# The module's chart carries values.tmpl.yaml with ${GatewayImage} and
# ${GatewayImagePullPolicy} placeholders that upstream's release fills in;
# they get the upstream image of the module's version and IfNotPresent. The
# version is read from the module's VERSION file (v1.9.0) and used for the
# chart's version and appVersion, as upstream tags it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
src=${GATEWAY_SRC:-$top/.cache/src/gateway}
helm=${HELM:-$top/.cache/bin/helm}
dest=${1:?usage: $0 DEST_DIR}
mkdir -p "$dest" && dest=$(cd "$dest" && pwd)

chart=$src/charts/gateway-helm
[[ -f $chart/values.tmpl.yaml ]] || { echo "package-gateway-chart: no $chart/values.tmpl.yaml (run tools/build.sh crds)" >&2; exit 1; }
version=$(tr -d '[:space:]' <"$src/VERSION")
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "package-gateway-chart: unexpected VERSION '$version'" >&2; exit 1; }

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# The module cache is read-only: copy, then make the copy writable.
cp -R "$chart" "$work/gateway-helm"
chmod -R u+w "$work/gateway-helm"
cd "$work/gateway-helm"

sed -e "s|\${GatewayImage}|docker.io/envoyproxy/gateway:$version|g" \
    -e 's|\${GatewayImagePullPolicy}|IfNotPresent|g' values.tmpl.yaml >values.yaml
rm values.tmpl.yaml
if grep -n '\${' values.yaml >&2; then
  echo "package-gateway-chart: placeholders left in values.yaml (above)" >&2
  exit 1
fi

mkdir -p "$dest"
"$helm" package . --version "$version" --app-version "$version" -d "$dest" >/dev/null
echo "$dest/gateway-helm-$version.tgz"
