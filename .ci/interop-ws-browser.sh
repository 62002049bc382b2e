#!/usr/bin/env bash
# WebSocket in a real browser: the ws_chat example (permessage-deflate on) and headless
# Chromium (Debian package `chromium`, installed when missing) running the example's
# examples/ws_chat/selftest.html. Chromium offers permessage-deflate on every connection; the
# page checks that it was negotiated (WebSocket.extensions), that a long line sent by one
# member (compressed by Chromium, inflated by herd) is broadcast to both members (compressed
# once by herd's room, inflated by Chromium) byte for byte, and that a short line (sent plain
# below the threshold) arrives too.
#
# Bounded: Chromium runs with a virtual-time budget under `timeout`; the example this script
# started is stopped by its PID on exit. Loopback only, fresh Chromium profile, no outside
# network. .ci/run calls it; it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-ws-browser
WORK=$TARGET/interop-ws-browser
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
say "building the ws_chat example"
cargo build -q --example ws_chat
rm -rf "$WORK" && mkdir -p "$WORK"
PORT=19650
start_server "$WORK/ws_chat.log" "$TARGET/debug/examples/ws_chat" --loops 2
# Chromium's virtual clock runs on while no fetch is pending; the page fetches /hold from this
# server, which answers only once the page has posted its verdict to /result (or after 40 s),
# so the sockets get real time for as long as the test needs it (see selftest.html).
HOLD=$((PORT + 1))
while port_open "$HOLD"; do HOLD=$((HOLD + 1)); done
timeout 90 python3 -c '
import http.server, sys, threading, urllib.parse
verdict = threading.Event()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/result":
            msg = urllib.parse.parse_qs(url.query).get("msg", [""])[0]
            with open(sys.argv[2], "w") as f:
                f.write(msg + "\n")
            verdict.set()
        else:
            verdict.wait(40)
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
verdict.wait(40)
threading.Event().wait(2)
srv.shutdown()' "$HOLD" "$WORK/verdict.txt" &
HOLD_PID=$!
# Chromium must not load the page before the hold server listens: a refused /hold leaves
# nothing pending, and the virtual clock then runs the 5 s budget out at once.
for _ in $(seq 100); do
    port_open "$HOLD" && break
    sleep 0.1
done
status=0
DOM=$(timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/chromium-profile" --virtual-time-budget=5000 --dump-dom \
    "http://127.0.0.1:$PORT/selftest.html?hold=$HOLD" 2>"$WORK/chromium.log") || status=$?
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true
RESULT=$(printf '%s' "$DOM" | sed -n 's|.*<pre id="result">\([^<]*\)</pre>.*|\1|p')
# The verdict the page posted to the hold server stands in when the dump came too early.
if [ "${RESULT:-RUNNING}" = RUNNING ] && [ -s "$WORK/verdict.txt" ]; then
    RESULT=$(head -n 1 "$WORK/verdict.txt")
fi
printf '%s\n' "$DOM" | sed -n '/<pre id="log">/,/<\/pre>/p' >"$WORK/page.log"
say "page says: ${RESULT:-<nothing>}"
case $RESULT in
PASS\ ext=permessage-deflate*\ peer-ext=permessage-deflate*) ;;
*)
    say "FAIL: expected PASS with permessage-deflate negotiated on both members"
    cat "$WORK/page.log" >&2
    grep -v dbus "$WORK/chromium.log" | tail -n 20 >&2
    status=1
    ;;
esac
finish_checks "$status" "$WORK/ws_chat.log"
