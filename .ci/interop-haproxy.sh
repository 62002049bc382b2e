#!/usr/bin/env bash
# herd behind a real HAProxy (Debian package `haproxy`, installed when missing) speaking the
# PROXY protocol to it: `send-proxy` (version 1) and `send-proxy-v2` to an HTTP listener,
# `send-proxy-v2` in front of a TLS listener (HAProxy passes TLS through; the header comes
# before the ClientHello) and in front of an echo listener, with HAProxy's own health checks
# (`check-send-proxy`) against /healthz. Checks, with curl and python clients bound to
# distinct loopback addresses (127.0.0.3 ...):
#   - herd's access log names the client's address, not HAProxy's, for v1, v2 and TLS;
#   - the per-IP limit counts the client behind HAProxy: a third connection from one client
#     address is refused while another client address is still served;
#   - a trusted peer that skips the header and an untrusted peer are closed, counted in
#     /metrics (herd_proxy_failures_total) and logged once;
#   - HAProxy sees the server UP through its health checks.
#
# Bounded: every client has a timeout; HAProxy and herd (started here) are stopped by PID on
# exit. Loopback only. .ci/run calls it; it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-haproxy
WORK=$TARGET/interop-haproxy
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"

ensure_tools haproxy curl openssl python3
say "building herd"
cargo build -q --bin herd
BIN=$TARGET/debug/herd
rm -rf "$WORK" && mkdir -p "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

free() { local p=$1; while port_open "$p" || [[ " $TAKEN " == *" $p "* ]]; do p=$((p + 1)); done; TAKEN="$TAKEN $p"; echo "$p"; }
TAKEN=""
SITE=$(free 19700); SITE_TLS=$(free 19701); LINES=$(free 19702); ADMIN=$(free 19703)
FE_V1=$(free 19710); FE_V2=$(free 19711); FE_TLS=$(free 19712); FE_LINES=$(free 19713)

# One worker: the per-IP limit is per worker, and the check wants one count.
cat >"$WORK/herd.toml" <<TOML
workers = 1
loops = 2
[log]
file = "$WORK/error.log"
level = "info"
access_file = "$WORK/access.log"
[[listener]]
name = "site"
bind = "127.0.0.1:$SITE"
protocol = "http"
proxy_protocol = true
proxy_trusted = ["127.0.0.1"]
max_connections_per_ip = 2
[[listener]]
name = "site-tls"
bind = "127.0.0.1:$SITE_TLS"
protocol = "http"
proxy_protocol = true
proxy_trusted = ["127.0.0.1"]
tls = { cert = "$WORK/cert.pem", key = "$WORK/key.pem" }
[[listener]]
name = "lines"
bind = "127.0.0.1:$LINES"
protocol = "echo"
proxy_protocol = true
proxy_trusted = ["127.0.0.1"]
[[listener]]
name = "admin"
bind = "127.0.0.1:$ADMIN"
protocol = "admin"
TOML
"$BIN" -t -c "$WORK/herd.toml" >&2
"$BIN" -c "$WORK/herd.toml" >"$WORK/herd.out" 2>&1 &
SERVER_PID=$!

cat >"$WORK/haproxy.cfg" <<CFG
global
    stats socket $WORK/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe_v1
    bind 127.0.0.1:$FE_V1
    default_backend be_v1
backend be_v1
    option httpchk GET /healthz
    server herd 127.0.0.1:$SITE send-proxy check check-send-proxy inter 300ms
frontend fe_v2
    bind 127.0.0.1:$FE_V2
    default_backend be_v2
backend be_v2
    server herd 127.0.0.1:$SITE send-proxy-v2
frontend fe_tls
    bind 127.0.0.1:$FE_TLS
    default_backend be_tls
backend be_tls
    server herd 127.0.0.1:$SITE_TLS send-proxy-v2
frontend fe_lines
    bind 127.0.0.1:$FE_LINES
    default_backend be_lines
backend be_lines
    server herd 127.0.0.1:$LINES send-proxy-v2
CFG
haproxy -c -q -f "$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
trap 'kill -TERM "$HAPROXY_PID" 2>/dev/null || true; wait "$HAPROXY_PID" 2>/dev/null || true; cleanup' EXIT

for _ in $(seq 1 300); do
    port_open "$ADMIN" && port_open "$FE_LINES" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { say "herd died at start:"; cat "$WORK/herd.out" "$WORK/error.log" >&2; exit 1; }
    kill -0 "$HAPROXY_PID" 2>/dev/null || { say "haproxy died at start:"; cat "$WORK/haproxy.log" >&2; exit 1; }
    sleep 0.1
done
say "herd (pid $SERVER_PID): site $SITE, site-tls $SITE_TLS, lines $LINES, admin $ADMIN"
say "$(haproxy -v | head -1) (pid $HAPROXY_PID): v1 $FE_V1, v2 $FE_V2, tls $FE_TLS, lines $FE_LINES"

status=0
timeout 120 python3 - "$WORK" "$SITE" "$LINES" "$ADMIN" "$FE_V1" "$FE_V2" "$FE_TLS" "$FE_LINES" <<'PY' || status=$?
import os, re, socket, subprocess, sys, time
work, site, lines, admin, fe_v1, fe_v2, fe_tls, fe_lines = sys.argv[1], *map(int, sys.argv[2:])
TIMEOUT = 5
failed = passed = 0

def check(ok, what):
    global failed, passed
    print(f"interop-haproxy: {'ok  ' if ok else 'FAIL'} {what}", file=sys.stderr)
    failed += not ok
    passed += bool(ok)

def wait(pred, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()

def connect(port, src):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(src, 0))
    return s

def access_lines():
    try:
        return open(f"{work}/access.log").read().splitlines()
    except FileNotFoundError:
        return []

def logged_from(ip, path):
    return any(l.startswith(ip + " ") and f" {path} HTTP/1.1" in l for l in access_lines())

def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", *args],
                       capture_output=True, text=True)
    return r.stdout.strip()

def metrics():
    return subprocess.run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{admin}/metrics"],
                          capture_output=True, text=True).stdout

def series(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total

def haproxy_status(backend):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(f"{work}/haproxy.sock")
    s.sendall(b"show stat\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    for row in data.decode().splitlines():
        f = row.split(",")
        if len(f) > 17 and f[0] == backend and f[1] == "herd":
            return f[17]
    return None

# HAProxy's health checks (with their own PROXY header) find herd up.
check(wait(lambda: haproxy_status("be_v1") == "UP"), f"HAProxy health check (check-send-proxy): be_v1 is {haproxy_status('be_v1')}")

# v1, v2 and TLS: the access log names the client address behind HAProxy.
code = curl("--interface", "127.0.0.3", f"http://127.0.0.1:{fe_v1}/v1-probe")
check(code == "404" and wait(lambda: logged_from("127.0.0.3", "/v1-probe")),
      f"send-proxy (v1): answer {code}, access log names 127.0.0.3")
code = curl("--interface", "127.0.0.4", f"http://127.0.0.1:{fe_v2}/")
check(code == "200" and wait(lambda: logged_from("127.0.0.4", "/")),
      f"send-proxy-v2: answer {code}, access log names 127.0.0.4")
code = curl("--interface", "127.0.0.5", "--cacert", f"{work}/cert.pem",
            "--resolve", f"localhost:{fe_tls}:127.0.0.1", f"https://localhost:{fe_tls}/tls-probe")
check(code == "404" and wait(lambda: logged_from("127.0.0.5", "/tls-probe")),
      f"send-proxy-v2 before TLS: answer {code}, access log names 127.0.0.5")
# Only HAProxy's health checks (and the direct /metrics scrapes) come from 127.0.0.1.
own = [l for l in access_lines() if l.startswith("127.0.0.1 ") and "/healthz" not in l
       and not l.endswith(" admin")]
check(not own, f"no client request is logged with HAProxy's address: {own[:2]}")

# An echo listener behind send-proxy-v2.
s = connect(fe_lines, "127.0.0.6")
s.sendall(b"through haproxy\n")
got = s.makefile("rb").readline()
s.close()
check(got == b"through haproxy\n", f"echo behind send-proxy-v2: {got!r}")

# The per-IP limit (2) counts the client behind HAProxy, not HAProxy.
def request(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: herd\r\n\r\n")
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                return None
            head += chunk
    except OSError:
        return None
    return head.split(b" ", 2)[1].decode()

held = [connect(fe_v2, "127.0.0.7") for _ in range(2)]
codes = [request(s) for s in held]
third = connect(fe_v2, "127.0.0.7")
refused = request(third)
other = connect(fe_v2, "127.0.0.8")
other_code = request(other)
for s in held + [third, other]:
    s.close()
check(codes == ["200", "200"] and refused is None and other_code == "200",
      f"per-IP limit on the real client: 127.0.0.7 got {codes} then {refused}; 127.0.0.8 got {other_code}")

# A trusted peer that skips the header, and an untrusted peer: closed without an answer.
before = metrics()
s = connect(site, "127.0.0.1")
check(request(s) is None, "no PROXY header from a trusted peer: closed without an answer")
s.close()
s = connect(site, "127.0.0.2")
check(request(s) is None, "untrusted source (127.0.0.2): refused")
s.close()

def moved(reason):
    return series(metrics(), "herd_proxy_failures_total", listener="site", reason=reason) - \
        series(before, "herd_proxy_failures_total", listener="site", reason=reason)
check(wait(lambda: moved("not_proxy") == 1), f"/metrics: not_proxy moved by {moved('not_proxy')}")
check(wait(lambda: moved("untrusted") == 1), f"/metrics: untrusted moved by {moved('untrusted')}")
m = metrics()
headers = series(m, "herd_proxy_headers_total")
check(headers >= 8, f"/metrics: {headers:.0f} PROXY headers accepted over all listeners")
limit = series(m, "herd_connections_closed_total", listener="site", reason="limit")
check(limit >= 1, f"/metrics: {limit:.0f} site connection(s) closed by the per-IP limit")
log = open(f"{work}/error.log").read()
for what in ["PROXY header refused (not_proxy)", "PROXY source refused (untrusted)"]:
    check(what in log, f"logged: {what}")
print(f"haproxy-interop: {passed} passed, {failed} failed", file=sys.stderr)
sys.exit(1 if failed else 0)
PY
kill -0 "$HAPROXY_PID" 2>/dev/null || { say "haproxy died:"; cat "$WORK/haproxy.log" >&2; status=1; }
[ "$status" = 0 ] || { say "access log:"; tail -n 20 "$WORK/access.log" >&2 || true; say "error log:"; tail -n 20 "$WORK/error.log" >&2 || true; }
finish_checks "$status" "$WORK/herd.out"
