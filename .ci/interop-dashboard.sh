#!/usr/bin/env bash
# Dashboard check: the bundled page in headless Chromium (Debian package `chromium`, installed
# when missing) after a short load, a reload and a worker restart: no page or console errors,
# every chart drawn and non-empty, reload/restart markers present, and the page's numbers equal
# /metrics (.ci/dashboard_check.py). Saves a phone-width screenshot for review as
# $CARGO_TARGET_DIR/interop-dashboard/dashboard.png.
#
# Chromium runs with a fresh profile and without network services (no outside network is
# needed or used). Bounded: every wait has a limit, the checker runs under `timeout`, and the
# herd this script started is stopped by its PID on exit. Loopback only. .ci/run calls it
# (CI=true); it also runs by hand. Takes about 20 s after the build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-dashboard
WORK=$TARGET/interop-dashboard
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"

command -v chromium >/dev/null || {
    say "installing chromium (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}
command -v python3 >/dev/null || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
}

say "building herd"
cargo build -q --bin herd
BIN=$TARGET/debug/herd
rm -rf "$WORK" && mkdir -p "$WORK"

SITE=19600
while port_open "$SITE"; do SITE=$((SITE + 1)); done
ADMIN=$((SITE + 1))
while port_open "$ADMIN"; do ADMIN=$((ADMIN + 1)); done
cat >"$WORK/herd.toml" <<TOML
workers = 2
[[listener]]
name = "site"
bind = "127.0.0.1:$SITE"
protocol = "http"
[[listener]]
name = "admin"
bind = "127.0.0.1:$ADMIN"
protocol = "admin"
TOML
"$BIN" -c "$WORK/herd.toml" >"$WORK/herd.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    port_open "$ADMIN" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { say "herd died at start:"; cat "$WORK/herd.log" >&2; exit 1; }
    sleep 0.1
done
port_open "$ADMIN" || { say "herd did not listen within 30 s"; exit 1; }
say "herd (pid $SERVER_PID): site $SITE, admin $ADMIN; $(chromium --version 2>/dev/null | head -1)"

status=0
timeout 300 python3 "$ROOT/.ci/dashboard_check.py" --site "$SITE" --admin "$ADMIN" \
    --master-pid "$SERVER_PID" --work "$WORK" || status=$?
finish_checks "$status" "$WORK/herd.log"
