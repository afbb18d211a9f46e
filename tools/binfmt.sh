#!/usr/bin/env bash
# Registers qemu-user-static for foreign architectures with binfmt_misc, so
# that arm64 programs (debootstrap's second stage, RUN steps of a foreign
# image build, the built image itself) run under emulation. Mounts
# binfmt_misc when it is not mounted. The F flag of Debian's registration
# opens the interpreter now, so it works inside chroots and containers too.
#
#   tools/binfmt.sh ARCH...       Debian names: arm64 (aarch64), armhf, ...
set -euo pipefail
dir=/proc/sys/fs/binfmt_misc
[[ -e $dir/register ]] || mount -t binfmt_misc binfmt_misc "$dir"
for arch in "$@"; do
  case $arch in
    arm64) q=aarch64 ;; armhf) q=arm ;; ppc64el) q=ppc64le ;; *) q=$arch ;;
  esac
  if [[ -e $dir/qemu-$q ]]; then continue; fi
  conf=/usr/lib/binfmt.d/qemu-$q.conf
  [[ -r $conf ]] || { echo "binfmt: no $conf (apt-get install qemu-user-static)" >&2; exit 1; }
  cat "$conf" >"$dir/register"
  echo "binfmt: registered qemu-$q" >&2
done
