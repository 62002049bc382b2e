#!/usr/bin/env bash
# TLS interop: the real `herd` binary with TLS on its site (https + wss on one port), frame
# and echo listeners, checked with curl (--cacert), `openssl s_client` (TLS 1.2 and 1.3, ALPN,
# SNI for each name, resumption with -sess_out/-sess_in), python `ssl` + http.client, python
# `websockets` over wss and the frame protocol over TLS (interop/tls/check.py); bad input
# (plain HTTP, random bytes, a truncated ClientHello, a client that rejects the certificate)
# must close cleanly, be counted and logged by cause, and crash no worker.
#
# Certificates are made here with openssl (ECDSA P-256). Idempotent: the venv lives under the
# cargo target directory; packages are installed only when missing. Bounded: every client has a
# timeout, and the herd master this script started is stopped by its PID on exit. Only
# 127.0.0.1 is used. .ci/run calls it (CI=true); it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-tls
WORK=$TARGET/interop-tls
VENV=$WORK/venv
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"

for tool in curl openssl; do
    command -v "$tool" >/dev/null || {
        say "installing $tool"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    }
done
ensure_venv "$VENV" websockets websockets

# --- certificates ----------------------------------------------------------------------------
CERTS=$WORK/certs
rm -rf "$CERTS"
mkdir -p "$CERTS"
(
    cd "$CERTS"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=herd interop CA" -out ca.pem 2>/dev/null
    leaf() { # NAME SANS
        openssl ecparam -name prime256v1 -genkey -noout -out "$1.ec" 2>/dev/null
        openssl pkcs8 -topk8 -nocrypt -in "$1.ec" -out "$1.key"
        openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" >"$1.ext"
        openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
        cat "$1.crt" ca.pem >"$1.pem"
    }
    leaf site "DNS:localhost,DNS:a.test"
    leaf wild "DNS:*.b.test"
)

# --- build and start herd --------------------------------------------------------------------
say "building herd"
cargo build -q --bin herd
BIN=$TARGET/debug/herd
free() { local p=$1; while port_open "$p"; do p=$((p + 1)); done; echo "$p"; }
HTTPS=$(free 19443); FRAME=$(free $((HTTPS + 1))); ECHO=$(free $((FRAME + 1))); PLAIN=$(free $((ECHO + 1))); ADMIN=$(free $((PLAIN + 1)))
LOG=$WORK/error.log
rm -f "$LOG"
TLS="cert = \"$CERTS/site.pem\"
key = \"$CERTS/site.key\"
handshake_timeout = \"5s\""
cat >"$WORK/herd.toml" <<CONF
workers = 2
loops = 1
pid_file = "$WORK/herd.pid"
[log]
file = "$LOG"
level = "info"

[[listener]]
name = "https"
bind = "127.0.0.1:$HTTPS"
protocol = "http"
ws_path = "/ws"
[listener.tls]
$TLS
hsts = "1h"
[[listener.tls.certs]]
cert = "$CERTS/wild.pem"
key = "$CERTS/wild.key"

[[listener]]
name = "frame-tls"
bind = "127.0.0.1:$FRAME"
protocol = "frame"
[listener.tls]
$TLS

[[listener]]
name = "echo-tls"
bind = "127.0.0.1:$ECHO"
protocol = "echo"
[listener.tls]
$TLS

[[listener]]
name = "redirect"
bind = "127.0.0.1:$PLAIN"
protocol = "http"
https_redirect = $HTTPS

[[listener]]
name = "admin"
bind = "127.0.0.1:$ADMIN"
protocol = "admin"
CONF
"$BIN" -t -c "$WORK/herd.toml"
"$BIN" -c "$WORK/herd.toml" >"$WORK/stdout.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    port_open "$PLAIN" && port_open "$ECHO" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { say "herd died at start"; cat "$WORK/stdout.log" "$LOG" >&2; exit 1; }
    sleep 0.1
done
for _ in $(seq 1 100); do [ "$(grep -c ' ready (pid' "$LOG" || true)" -ge 2 ] && break; sleep 0.1; done
say "herd on https $HTTPS, frame $FRAME, echo $ECHO, redirect $PLAIN (pid $SERVER_PID)"

status=0
fail() { say "FAIL: $*"; status=1; }
ok() { say "ok   $*"; }

# --- curl ------------------------------------------------------------------------------------
out=$(curl -sS --max-time 10 --cacert "$CERTS/ca.pem" --resolve "localhost:$HTTPS:127.0.0.1" \
    -v "https://localhost:$HTTPS/" 2>&1) || fail "curl https"
grep -q "ALPN: server accepted http/1.1" <<<"$out" && grep -q "< HTTP/1.1 200" <<<"$out" \
    && grep -qi "< strict-transport-security: max-age=3600" <<<"$out" \
    && ok "curl --cacert: 200, ALPN http/1.1, HSTS" || fail "curl https: $(head -c 2000 <<<"$out")"
loc=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$PLAIN/x?y=1" -H "Host: localhost") || true
[ "$loc" = "301 https://localhost:$HTTPS/x?y=1" ] && ok "http → https redirect" || fail "redirect: $loc"
curl -sS --max-time 10 --resolve "localhost:$HTTPS:127.0.0.1" -o /dev/null "https://localhost:$HTTPS/" 2>/dev/null \
    && fail "curl without the CA accepted the certificate" || ok "curl without the CA refuses"

# --- openssl s_client ------------------------------------------------------------------------
sc() { timeout 10 openssl s_client -connect "127.0.0.1:$HTTPS" -CAfile "$CERTS/ca.pem" "$@" </dev/null 2>&1; }
for v in -tls1_2 -tls1_3; do
    out=$(sc "$v" -alpn http/1.1 -servername localhost -verify_return_error) || true
    grep -q "Verify return code: 0 (ok)" <<<"$out" && grep -q "ALPN protocol: http/1.1" <<<"$out" \
        && ok "s_client $v: verified, ALPN http/1.1" || fail "s_client $v: $(tail -20 <<<"$out")"
done
for name in localhost a.test x.b.test; do
    out=$(sc -servername "$name" -verify_hostname "$name" -verify_return_error) || true
    grep -q "Verify return code: 0 (ok)" <<<"$out" && ok "SNI $name: the right certificate" \
        || fail "SNI $name: $(grep -E 'subject|Verify' <<<"$out" | head -5)"
done
for v in -tls1_2 -tls1_3; do
    rm -f "$WORK/sess"
    # TLS 1.3 tickets arrive after the handshake: send a request so s_client reads them.
    printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' \
        | timeout 10 openssl s_client -connect "127.0.0.1:$HTTPS" -CAfile "$CERTS/ca.pem" \
            -servername localhost "$v" -sess_out "$WORK/sess" -ign_eof >/dev/null 2>&1 || true
    reused=0
    for _ in 1 2 3 4; do
        out=$(printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' \
            | timeout 10 openssl s_client -connect "127.0.0.1:$HTTPS" -CAfile "$CERTS/ca.pem" \
                -servername localhost "$v" -sess_in "$WORK/sess" -ign_eof 2>&1) || true
        grep -q "^Reused, " <<<"$out" && reused=$((reused + 1))
    done
    [ "$reused" = 4 ] && ok "s_client $v resumption: 4 of 4 reused (both workers)" \
        || fail "s_client $v resumption: $reused of 4 reused"
done

# --- python: http.client, wss, frame and echo over TLS, bad input ----------------------------
timeout 120 "$VENV/bin/python" "$ROOT/interop/tls/check.py" --ca "$CERTS/ca.pem" \
    --https "$HTTPS" --frame "$FRAME" --echo "$ECHO" || status=1

# --- counted and logged, no worker crashed ---------------------------------------------------
sleep 0.5
for cause in not_tls eof cert_rejected; do
    grep -q "TLS failed ($cause)" "$LOG" && ok "logged: TLS failed ($cause)" \
        || fail "no log line for TLS failure $cause"
done
# The counters reach /metrics summed over both workers (snapshots refresh about once a second).
sleep 1.5
metrics=$(curl -sS --max-time 10 "http://127.0.0.1:$ADMIN/metrics") || fail "scrape /metrics"
sample() { awk -v k="$1" '$1 == k { print $2 }' <<<"$metrics"; }
hs=$(sample 'herd_tls_handshakes_total{listener="https",protocol="http"}')
nt=$(sample 'herd_tls_failures_total{listener="https",protocol="http",reason="not_tls"}')
fr=$(sample 'herd_tls_handshakes_total{listener="frame-tls",protocol="frame"}')
[ "${hs:-0}" -ge 10 ] && [ "${nt:-0}" -ge 1 ] && [ "${fr:-0}" -ge 1 ] \
    && ok "/metrics: $hs https handshakes, $nt not_tls, $fr frame handshakes" \
    || fail "/metrics TLS counters: handshakes=$hs not_tls=$nt frame=$fr: $(grep herd_tls <<<"$metrics" | head)"
if grep -qE "exited \(signal|respawn|panicked" "$LOG"; then
    fail "a worker crashed: $(grep -E 'exited|respawn|panicked' "$LOG" | head -3)"
else
    ok "no worker crashed"
fi
if [ "$status" != 0 ]; then
    say "herd's log:"; tail -40 "$LOG" >&2
fi
exit "$status"
