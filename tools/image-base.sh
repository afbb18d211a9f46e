#!/usr/bin/env bash
# Makes the Dockerfile's base image available to podman without a registry:
# `debootstrap --variant=minbase` of Debian bookworm from the machine's own
# Debian mirror, cached per user as a tarball, imported as
# docker.io/library/debian:bookworm-slim (the name the Dockerfile uses), so
# the Dockerfile builds unchanged.
#
#   tools/image-base.sh [ARCH]        ARCH: amd64 (default: the host's), arm64
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/envoy-router/image-base/bookworm-minbase-ARCH-WEEK.tar,
# keyed on suite, variant, architecture and ISO week, so the base picks up
# Debian's point and security updates weekly and a warm run only checks that
# podman holds the same tarball (a label carries the key). Foreign
# architectures need qemu-user-static and binfmt_misc (debootstrap --foreign,
# then the second stage under emulation). Needs root (debootstrap, podman).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=${1:-$(dpkg --print-architecture)}
suite=bookworm
name=docker.io/library/debian:bookworm-slim
host_arch=$(dpkg --print-architecture)
[[ $arch == "$host_arch" ]] || name=$name-$arch # a foreign base never shadows the host's
cache=${ENVOY_ROUTER_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/envoy-router/image-base}
key=$suite-minbase-$arch-$(date -u +%G-W%V)
tar=$cache/$key.tar
podman() { "$here/podman.sh" "$@"; }
log() { printf '[image-base %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The first deb URI of the machine's apt sources (deb822 or one-line form).
mirror() {
  local m
  m=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v security | head -n1 || true)
  [[ -n $m ]] || m=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

if [[ ! -s $tar ]]; then
  mkdir -p "$cache"
  root=$(mktemp -d "$cache/root.XXXXXX")
  trap 'rm -rf "$root" "$tar.tmp"' EXIT
  start=$SECONDS
  url=$(mirror)
  if [[ $arch == "$host_arch" ]]; then
    log "debootstrap --variant=minbase $suite ($arch) from $url"
    debootstrap --variant=minbase --arch "$arch" "$suite" "$root" "$url" >"$root.log" 2>&1 ||
      { tail -n 20 "$root.log" >&2; exit 1; }
  else
    log "debootstrap --foreign --variant=minbase $suite ($arch) from $url, second stage under qemu"
    debootstrap --foreign --variant=minbase --arch "$arch" "$suite" "$root" "$url" >"$root.log" 2>&1 ||
      { tail -n 20 "$root.log" >&2; exit 1; }
    chroot "$root" /debootstrap/debootstrap --second-stage >>"$root.log" 2>&1 ||
      { tail -n 20 "$root.log" >&2; exit 1; }
  fi
  rm -f "$root.log"
  # What an image base does not need: apt lists and caches, logs.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
  tar --numeric-owner -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  rm -rf "$root"
  # Older weeks of this architecture are not used again.
  find "$cache" -maxdepth 1 -name "$suite-minbase-$arch-*.tar" ! -name "$key.tar" -delete
  log "built $tar ($(du -h "$tar" | cut -f1)) in $((SECONDS - start)) s"
fi

if [[ $(podman image inspect --format '{{index .Labels "org.envoy-router.base"}}' "$name" 2>/dev/null) == "$key" ]]; then
  log "$name is $key (cached)"
  exit 0
fi
podman import -q --arch "$arch" --change "LABEL org.envoy-router.base=$key" \
  --change 'CMD ["/bin/bash"]' "$tar" "$name" >/dev/null
log "imported $tar as $name"
