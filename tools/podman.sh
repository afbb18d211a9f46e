#!/usr/bin/env bash
# podman as this machine kind needs it: the runc runtime (crun refuses the
# hybrid cgroup layout) and no default ulimits (setting rlimits is not
# permitted), through tools/containers.conf unless CONTAINERS_CONF names
# another file. Arguments are podman's.
set -euo pipefail
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}
exec podman --runtime "${PODMAN_RUNTIME:-runc}" "$@"
