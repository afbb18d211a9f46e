#!/usr/bin/env bash
# Assembles the container image's runtime file set without a container
# engine, so a test can run it as the image would:
#
#   tools/runtime-dir.sh BINARY DIR
#
#   DIR/usr/local/bin/envoy-router          the binary (as in the Dockerfile)
#   DIR/usr/share/envoy-router/scripts/     the default scripts and templates,
#                                           a starting point for custom ones
#   DIR/lib/                                every shared object ldd resolves,
#                                           the dynamic loader included
#
# Run it with nothing from the host:
#   env -i DIR/lib/ld-linux-*.so.* --library-path DIR/lib DIR/usr/local/bin/envoy-router check
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: $0 BINARY DIR}
dir=${2:?usage: $0 BINARY DIR}

rm -rf "$dir"
mkdir -p "$dir/usr/local/bin" "$dir/usr/share/envoy-router/scripts/templates" "$dir/lib"
install -m 0755 "$bin" "$dir/usr/local/bin/envoy-router"
cp -R "$top/scripts/." "$dir/usr/share/envoy-router/scripts/"
cp -R "$top/templates/." "$dir/usr/share/envoy-router/scripts/templates/"

# "name => /path (addr)" and the loader's "/path (addr)"; not linux-vdso.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
  while read -r lib; do
    cp -L "$lib" "$dir/lib/$(basename "$lib")"
  done
ls "$dir"/lib/ld-linux* >/dev/null 2>&1 || { echo "runtime-dir: no dynamic loader in ldd output" >&2; exit 1; }
echo "runtime-dir: $(ls "$dir/lib" | wc -l) shared objects, $(du -sh "$dir" | cut -f1) in $dir"
