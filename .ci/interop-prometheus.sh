#!/usr/bin/env bash
# Metrics interop: a real Prometheus server (Debian package `prometheus`, installed when
# missing) scrapes herd's admin listener every second while .ci/prometheus_check.py drives a
# known load (HTTP, WebSocket, frame, line echo, line echo over TLS) at herd with two workers; the checker then asks
# Prometheus' HTTP API whether each counter moved by exactly the load's amount and whether
# every series in docs/metrics.md exists.
#
# Idempotent (the package is installed only when missing; Prometheus' data directory is made
# fresh each run under the cargo target dir). Bounded: every wait has a limit, the checker runs
# under `timeout`, and both servers this script started are stopped by their PIDs on exit.
# Loopback only. .ci/run calls it (CI=true); it also runs by hand. Takes about 20 s after the
# build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NAME=interop-prometheus
WORK=$TARGET/interop-prometheus
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"
PROM_PID=""
stop_prometheus() {
    if [ -n "$PROM_PID" ]; then
        kill -TERM "$PROM_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PROM_PID" 2>/dev/null || true
        wait "$PROM_PID" 2>/dev/null || true
    fi
    cleanup
}
trap stop_prometheus EXIT

command -v prometheus >/dev/null || {
    say "installing prometheus (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}
command -v python3 >/dev/null || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
}

command -v openssl >/dev/null || {
    say "installing openssl (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
}

say "building herd"
cargo build -q --bin herd
BIN=$TARGET/debug/herd
rm -rf "$WORK" && mkdir -p "$WORK"

free_port() {
    local p=$1
    while port_open "$p" || [[ " $TAKEN " == *" $p "* ]]; do p=$((p + 1)); done
    TAKEN="$TAKEN $p"
    echo "$p"
}
TAKEN=""
SITE=$(free_port 19500); ADMIN=$(free_port 19510); FRAMES=$(free_port 19520)
WS=$(free_port 19530); LINES=$(free_port 19540); TLS_LINES=$(free_port 19550)
PROXY_LINES=$(free_port 19560)
PROM=$(free_port 19590)
# A self-signed certificate for the TLS line listener (its handshake counters).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

cat >"$WORK/herd.toml" <<TOML
workers = 2
# A budget far above what the checks hold: the overload series exist (and stay normal).
memory_budget = 1073741824
[[listener]]
name = "site"
bind = "127.0.0.1:$SITE"
protocol = "http"
ws_path = "/ws"
# A reverse-proxy location (to the site itself; nothing is sent through it), so the
# herd_upstream_* series exist.
proxy = [{ path = "/up/", upstream = "self" }]
[[listener]]
name = "admin"
bind = "127.0.0.1:$ADMIN"
protocol = "admin"
[[listener]]
name = "frames"
bind = "127.0.0.1:$FRAMES"
protocol = "frame"
[[listener]]
name = "wsonly"
bind = "127.0.0.1:$WS"
protocol = "ws"
[[listener]]
name = "lines"
bind = "127.0.0.1:$LINES"
protocol = "echo"
[[listener]]
name = "lines-tls"
bind = "127.0.0.1:$TLS_LINES"
protocol = "echo"
tls = { cert = "$WORK/cert.pem", key = "$WORK/key.pem" }
[[listener]]
name = "lines-proxy"
bind = "127.0.0.1:$PROXY_LINES"
protocol = "echo"
proxy_protocol = true
proxy_trusted = ["127.0.0.0/8"]
[[upstream]]
name = "self"
servers = ["127.0.0.1:$SITE"]
TOML
"$BIN" -c "$WORK/herd.toml" >"$WORK/herd.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    port_open "$ADMIN" && port_open "$LINES" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { say "herd died at start:"; cat "$WORK/herd.log" >&2; exit 1; }
    sleep 0.1
done
port_open "$ADMIN" || { say "herd did not listen within 30 s"; cat "$WORK/herd.log" >&2; exit 1; }
say "herd (pid $SERVER_PID): site $SITE, admin $ADMIN, frames $FRAMES, ws $WS, lines $LINES"

cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: herd
    static_configs:
      - targets: ["127.0.0.1:$ADMIN"]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PROM" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
ready=""
for _ in $(seq 1 300); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PROM/-/ready', timeout=1)" 2>/dev/null; then
        ready=1; break
    fi
    kill -0 "$PROM_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ready" ] || { say "prometheus not ready:"; tail -20 "$WORK/prometheus.log" >&2; exit 1; }
say "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') (pid $PROM_PID) on $PROM"

status=0
timeout 180 python3 "$ROOT/.ci/prometheus_check.py" --prometheus "$PROM" --site "$SITE" \
    --frames "$FRAMES" --ws "$WS" --lines "$LINES" --tls-lines "$TLS_LINES" --proxy-lines "$PROXY_LINES" --ca "$WORK/cert.pem" --docs "$ROOT/docs/metrics.md" || status=$?
[ "$status" = 0 ] || tail -20 "$WORK/prometheus.log" >&2
finish_checks "$status" "$WORK/herd.log"
