#!/usr/bin/env bash
# Assembles the container image's root file system: everything the binary
# needs and nothing else. The Dockerfile runs it in its build stage and copies
# the result into an empty (scratch) image; `make runtime-dir` runs it on the
# host into build/runtime/.
#
#   tools/runtime-dir.sh BINARY DIR
#
#   DIR/usr/local/bin/envoy-router                the binary
#   DIR/<path of each shared object>              every object ldd resolves,
#                                                 the dynamic loader included,
#                                                 at the path the binary asks for
#   DIR/etc/ssl/certs/ca-certificates.crt         the CA bundle (if the host has it)
#   DIR/etc/passwd, DIR/etc/group                 the unprivileged user 65532 (nonroot)
#   DIR/etc/nsswitch.conf                         hosts from files, then DNS
#   DIR/usr/share/envoy-router/scripts/           the default scripts and templates,
#                                                 a starting point for custom ones
#   DIR/tmp                                       empty, sticky, world-writable
#
# No shell, no package manager, no other program: the image runs only the
# binary. Run the directory on the host without a container engine:
#   env -i DIR/lib64/ld-linux-x86-64.so.2 --library-path DIR/lib/x86_64-linux-gnu \
#     DIR/usr/local/bin/envoy-router check
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: $0 BINARY DIR}
dir=${2:?usage: $0 BINARY DIR}

rm -rf "$dir"
mkdir -p "$dir/usr/local/bin" "$dir/usr/share/envoy-router/scripts/templates" "$dir/etc" "$dir/tmp"
chmod 1777 "$dir/tmp"
install -m 0755 "$bin" "$dir/usr/local/bin/envoy-router"
cp -R "$top/scripts/." "$dir/usr/share/envoy-router/scripts/"
cp -R "$top/templates/." "$dir/usr/share/envoy-router/scripts/templates/"

# "name => /path (addr)" and the loader's "/path (addr)"; not linux-vdso.
# Each object is copied (symlinks resolved) to the path the loader looks up.
n=0
while read -r lib; do
  mkdir -p "$dir$(dirname "$lib")"
  cp -L "$lib" "$dir$lib"
  n=$((n + 1))
done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
interp=$(readelf -l "$bin" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[[ -n $interp && -e $dir$interp ]] || { echo "runtime-dir: no dynamic loader ($interp) in ldd output" >&2; exit 1; }

crt=/etc/ssl/certs/ca-certificates.crt
if [[ -r $crt ]]; then
  mkdir -p "$dir/etc/ssl/certs"
  cp -L "$crt" "$dir$crt"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
echo "runtime-dir: $n shared objects, $(du -sh "$dir" | cut -f1) in $dir"
