#!/usr/bin/env bash
# WebSocket interop: python's `websockets` client (in a venv this script creates) checks herd's
# ws_echo example over loopback: echo of text and binary, a fragmented message, ping/pong, the
# close handshake with a code, invalid UTF-8 (1007), an oversized message (1009), an unmasked
# frame (1002) and a bad handshake version (426) (interop/ws/check.py); and permessage-deflate
# in each of ws_echo's modes (off, shared contexts, context takeover), with the 1007/1009
# checks sent compressed.
#
# Idempotent: the venv lives under the cargo target directory and is reused; packages are
# installed only when missing. Bounded: the server start waits at most 30 s, the Python checks
# run under `timeout`, and the server this script started is killed by its PID on exit. Only
# 127.0.0.1 is used. .ci/run calls it (CI=true); it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-ws
WORK=$TARGET/interop-ws
VENV=$WORK/venv
MAX_MESSAGE=65536
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"

# --- Python venv with websockets --------------------------------------------------------------
ensure_venv "$VENV" websockets websockets

# --- build and start the ws_echo example ------------------------------------------------------
say "building the ws_echo example"
cargo build -q --example ws_echo
BIN=$TARGET/debug/examples/ws_echo

# --- the checks, once per compression mode ----------------------------------------------------
# off: the client's permessage-deflate offer is declined; shared: contexts reset per message
# and shared by the loop's connections; takeover: each connection keeps its own.
for mode in off shared takeover; do
    PORT=${PORT:-19400}
    start_server "$WORK/ws_echo-$mode.log" "$BIN" --loops 2 --max-message "$MAX_MESSAGE" \
        --deflate "$mode"
    status=0
    timeout 120 "$VENV/bin/python" "$ROOT/interop/ws/check.py" --port "$PORT" \
        --max-message "$MAX_MESSAGE" --deflate "$mode" || status=$?
    finish_checks "$status" "$WORK/ws_echo-$mode.log" || exit 1
    cleanup
    SERVER_PID=""
done
