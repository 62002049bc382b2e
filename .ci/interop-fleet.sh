#!/usr/bin/env bash
# The fleet check: bench/fleet.sh (three herd hosts behind HAProxy with send-proxy-v2, in
# network namespaces it creates and deletes) with a 12 s wrk run through a rolling binary
# upgrade and a rolling reload; fails on any failed request or an access log that does not
# name the client. Needs root and network namespaces; where `ip netns add` is not allowed it
# says so and stops with success (nothing could be run, nothing was claimed). .ci/run calls it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v ip >/dev/null || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
}
probe=herd-ci-probe-$$
if ! ip netns add "$probe" 2>/dev/null; then
    echo "interop-fleet: skipped: this machine does not allow network namespaces (ip netns add failed)" >&2
    exit 0
fi
ip netns del "$probe"
DURATION=${DURATION:-12} exec bash "$ROOT/bench/fleet.sh"
