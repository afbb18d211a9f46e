#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not
# installed yet. One dpkg-query call when nothing is missing (cheap enough to
# run before every build); apt-get (through sudo when not root) otherwise,
# updating the package lists and retrying once if the first install fails.
#
#   tools/deps.sh [-q] PKG...      -q: print nothing when nothing is missing
set -euo pipefail
quiet=0
[[ ${1:-} == -q ]] && { quiet=1; shift; }
(($#)) || { echo "usage: $0 [-q] PKG..." >&2; exit 2; }

installed=$(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "$@" 2>/dev/null |
  awk '$1 == "installed" { print $2 }' | sed 's/:.*//' || true)
missing=()
for p in "$@"; do
  grep -qxF "$p" <<<"$installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  ((quiet)) || echo "deps: all $# packages installed"
  exit 0
fi

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0)
echo "deps: installing ${missing[*]}" >&2
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 ||
  { echo "deps: install failed; updating the package lists and retrying" >&2
    "${apt[@]}" update >&2 && "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2; }
