#!/usr/bin/env bash
# WebSocket interop: python's `websockets` client (in a venv this script creates) checks herd's
# ws_echo example over loopback: echo of text and binary, a fragmented message, ping/pong, the
# close handshake with a code, invalid UTF-8 (1007), an oversized message (1009), an unmasked
# frame (1002) and a bad handshake version (426) (interop/ws/check.py).
#
# Idempotent: the venv lives under the cargo target directory and is reused; packages are
# installed only when missing. Bounded: the server start waits at most 30 s, the Python checks
# run under `timeout`, and the server this script started is killed by its PID on exit. Only
# 127.0.0.1 is used. .ci/run calls it (CI=true); it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET/interop-ws
VENV=$WORK/venv
MAX_MESSAGE=65536
SERVER_PID=""

say() { printf 'interop-ws: %s\n' "$*" >&2; }

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Python venv with websockets --------------------------------------------------------------
command -v python3 >/dev/null || {
    say "installing python3"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
}
mkdir -p "$WORK"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        say "installing python3-venv"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
fi
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
    say "installing websockets into the venv"
    timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check websockets
fi

# --- build and start the ws_echo example ------------------------------------------------------
say "building the ws_echo example"
cargo build -q --example ws_echo
BIN=$TARGET/debug/examples/ws_echo

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
PORT=${PORT:-19400}
while port_open "$PORT"; do PORT=$((PORT + 1)); done

"$BIN" --port "$PORT" --loops 2 --max-message "$MAX_MESSAGE" >"$WORK/ws_echo.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    port_open "$PORT" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { say "ws_echo died at start:"; cat "$WORK/ws_echo.log" >&2; exit 1; }
    sleep 0.1
done
port_open "$PORT" || { say "ws_echo did not listen on $PORT within 30 s"; exit 1; }
say "ws_echo on 127.0.0.1:$PORT (pid $SERVER_PID)"

# --- the checks ------------------------------------------------------------------------------
status=0
timeout 120 "$VENV/bin/python" "$ROOT/interop/ws/check.py" --port "$PORT" \
    --max-message "$MAX_MESSAGE" || status=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the ws_echo server died during the checks:"
    cat "$WORK/ws_echo.log" >&2
    status=1
fi
[ "$status" = 0 ] || { say "server log:"; tail -n 20 "$WORK/ws_echo.log" >&2; }
exit "$status"
