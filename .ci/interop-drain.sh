#!/usr/bin/env bash
# Drains that lose nothing, with a real wrk (Debian package `wrk`, installed when missing):
# `wrk -t1 -c20` keep-alive load on the herd binary (two workers, the bundled site) through
#   1. five HUPs, one every 1.5 s;
#   2. a binary upgrade: USR2, then QUIT to the old master;
#   3. a reload to fewer workers (2 -> 1).
# Each run must end with no `Socket errors` line and no `Non-2xx` line in wrk's report, and
# the reloads and the upgrade must have happened (checked in herd's log). The same HUP run
# with `drain_grace = "0s"` (nginx's way: idle keep-alive connections closed at once) is
# shown for comparison and must lose requests, or the check proves nothing.
#
# Bounded: every wrk run is 9 s under `timeout`; the masters started here are stopped by PID
# on exit. Loopback only. .ci/run calls it; it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-drain
WORK=$TARGET/interop-drain
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"
ensure_tools wrk curl
say "building herd"
cargo build -q --bin herd
BIN=$TARGET/debug/herd
rm -rf "$WORK" && mkdir -p "$WORK"
PORT=19800
while port_open "$PORT"; do PORT=$((PORT + 1)); done
MASTERS=()
cleanup_masters() {
    for p in "${MASTERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [ -f "$WORK/herd.pid" ] && kill -TERM "$(cat "$WORK/herd.pid")" 2>/dev/null || true
    cleanup
}
trap cleanup_masters EXIT

config() { # WORKERS DRAIN_GRACE
    cat >"$WORK/herd.toml" <<TOML
workers = $1
pid_file = "$WORK/herd.pid"
drain_grace = "$2"
[log]
file = "$WORK/error.log"
[[listener]]
name = "site"
bind = "127.0.0.1:$PORT"
protocol = "http"
TOML
}

start() {
    rm -f "$WORK/error.log"
    "$BIN" -c "$WORK/herd.toml" >"$WORK/stderr.txt" 2>&1 &
    MASTER=$!
    MASTERS+=("$MASTER")
    for _ in $(seq 1 100); do
        curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$PORT/api/status" 2>/dev/null && return
        sleep 0.1
    done
    say "herd did not start"; cat "$WORK/stderr.txt" >&2; exit 1
}

stop() {
    local m
    m=$(cat "$WORK/herd.pid" 2>/dev/null || echo "$MASTER")
    kill -QUIT "$m" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$m" 2>/dev/null || break; sleep 0.1; done
}

# wrk for 9 s in the background; the result lands in $WORK/$1.txt
load() {
    timeout 30 wrk -t1 -c20 -d9s "http://127.0.0.1:$PORT/api/status" >"$WORK/$1.txt" 2>&1 &
    WRK=$!
    sleep 1.5
}

report() { # NAME → 0 if wrk saw no error
    wait "$WRK" || true
    local r=$WORK/$1.txt errs
    errs=$(grep -E "Socket errors|Non-2xx" "$r" || true)
    say "$1: $(grep -E 'requests in' "$r" | sed 's/^ *//') ${errs:+— $errs}"
    [ -z "$errs" ]
}

status=0
config 2 2s
start
load hup5
for _ in 1 2 3 4 5; do kill -HUP "$MASTER"; sleep 1.5; done
report hup5 || { say "FAIL: five HUPs lost requests"; status=1; }
n=$(grep -c "configuration reloaded" "$WORK/error.log" || true)
[ "$n" = 5 ] || { say "FAIL: $n reloads logged, not 5"; status=1; }

load upgrade
old=$MASTER
kill -USR2 "$old"
for _ in $(seq 1 100); do
    new=$(cat "$WORK/herd.pid" 2>/dev/null || echo "$old")
    [ "$new" != "$old" ] && break
    sleep 0.1
done
sleep 2
kill -QUIT "$old"
MASTERS+=("$new")
report upgrade || { say "FAIL: USR2 + QUIT lost requests"; status=1; }
[ "$new" != "$old" ] && ! kill -0 "$old" 2>/dev/null || { say "FAIL: the upgrade did not happen ($old -> $new)"; status=1; }
MASTER=$new

config 1 2s
load shrink
kill -HUP "$MASTER"
report shrink || { say "FAIL: the reload to one worker lost requests"; status=1; }
grep -q "1 workers" "$WORK/error.log" || { say "FAIL: no reload to 1 worker logged"; status=1; }
stop

# The comparison: an nginx-style drain loses requests under the same load.
config 2 0s
start
load nginx-style
for _ in 1 2 3 4 5; do kill -HUP "$MASTER"; sleep 1.5; done
if report nginx-style; then
    say "FAIL: drain_grace = 0s lost nothing either; this check cannot tell drains apart"
    status=1
else
    say "as expected, drain_grace = 0s (nginx's drain) lost requests"
fi
stop
[ "$status" = 0 ] && say "3 passed, 0 failed"
exit "$status"
