#!/usr/bin/env bash
# bench/fleet.sh: a herd fleet on one machine, in network namespaces this script creates and
# deletes itself: three herd hosts (each its own master with WORKERS workers) behind HAProxy
# (`mode tcp`, `send-proxy-v2`, HTTP health checks on /healthz with `check-send-proxy`), and a
# client namespace running wrk through HAProxy. While wrk runs, the script performs a rolling
# binary upgrade of all three hosts (USR2, wait for the new master's workers, QUIT the old
# master; one host after another), then a rolling configuration reload (HUP each host).
#
# It reports wrk's totals and errors, and the fleet's requests per second sampled every
# 0.5 s from each host's admin /metrics (herd_http_requests_total summed over hosts): the
# median rate, the lowest, and the dip (lowest / median) during the rolling operations. It
# checks that no request failed (no socket errors, no non-2xx answers), that every host's
# access log names the client namespace's address (10.77.0.100) rather than HAProxy's, and
# that the hosts' per-IP counters keyed on it.
#
# Topology (10.77.0.0/24 on a bridge in namespace herd-sw):
#   herd-lb  10.77.0.1    HAProxy, frontend :80
#   herd-h1  10.77.0.11   herd: site :8081 (proxy_protocol, trusted 10.77.0.1), admin :9180
#   herd-h2  10.77.0.12   the same
#   herd-h3  10.77.0.13   the same
#   herd-cl  10.77.0.100  wrk
#
# Needs root (ip netns), haproxy, wrk, curl, python3 (installed with apt when missing).
# Environment: DURATION [20] wrk seconds  CONNS [20]  WORKERS [2]  KEEP [0] keep the work dir
#   DRAIN_GRACE ["2s"] the hosts' drain_grace ("0s" shows what an nginx-style drain loses)
# Only addresses inside these namespaces are used; everything started here is stopped by PID
# and the namespaces are deleted on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-20}
CONNS=${CONNS:-20}
WORKERS=${WORKERS:-2}
DRAIN_GRACE=${DRAIN_GRACE:-2s}
WORK=$TARGET/fleet
NS=(herd-sw herd-lb herd-h1 herd-h2 herd-h3 herd-cl)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
say() { printf 'fleet: %s\n' "$*" >&2; }

need haproxy haproxy
need wrk wrk
need curl curl
need python3 python3
need ip iproute2

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    # Masters started by an upgrade are recorded in their pid files.
    for h in 1 2 3; do
        [ -f "$WORK/h$h/herd.pid" ] && kill -TERM "$(cat "$WORK/h$h/herd.pid")" 2>/dev/null || true
    done
    sleep 1
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK/h1/"*.sock "$WORK/h2/"*.sock "$WORK/h3/"*.sock 2>/dev/null || true
}
trap cleanup EXIT

say "building herd (release)"
cargo build -q --release --bin herd
BIN=$TARGET/release/herd

rm -rf "$WORK" && mkdir -p "$WORK"
for n in "${NS[@]}"; do
    ip netns del "$n" 2>/dev/null || true
    ip netns add "$n"
    ip -n "$n" link set lo up
done
ip -n herd-sw link add br0 type bridge
ip -n herd-sw link set br0 up
node() { # NS ADDR
    local ns=$1 addr=$2 short=${1#herd-}
    ip link add "v-$short" type veth peer name "p-$short"
    ip link set "v-$short" netns "$ns"
    ip link set "p-$short" netns herd-sw
    ip -n herd-sw link set "p-$short" master br0 up
    ip -n "$ns" addr add "$addr/24" dev "v-$short"
    ip -n "$ns" link set "v-$short" up
}
node herd-lb 10.77.0.1
node herd-h1 10.77.0.11
node herd-h2 10.77.0.12
node herd-h3 10.77.0.13
node herd-cl 10.77.0.100

for h in 1 2 3; do
    d=$WORK/h$h
    mkdir -p "$d"
    cat >"$d/herd.toml" <<TOML
workers = $WORKERS
pid_file = "$d/herd.pid"
shutdown_timeout = "10s"
drain_grace = "$DRAIN_GRACE"
[log]
file = "$d/error.log"
access_file = "$d/access.log"
[[listener]]
name = "site"
bind = "10.77.0.1$h:8081"
protocol = "http"
proxy_protocol = true
proxy_trusted = ["10.77.0.1"]
max_connections_per_ip = 10000
[[listener]]
name = "admin"
bind = "127.0.0.1:9180"
protocol = "admin"
TOML
    ip netns exec "herd-h$h" "$BIN" -c "$d/herd.toml" >"$d/stderr.txt" 2>&1 &
    PIDS+=($!)
done

cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 10.77.0.1:80
    default_backend fleet
backend fleet
    balance roundrobin
    option httpchk GET /healthz
    default-server send-proxy-v2 check check-send-proxy inter 300ms fall 1 rise 2
    server h1 10.77.0.11:8081
    server h2 10.77.0.12:8081
    server h3 10.77.0.13:8081
CFG
ip netns exec herd-lb haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

# host H's admin, from inside its namespace
metrics() { ip netns exec "herd-h$1" curl -fsS --max-time 2 "http://127.0.0.1:9180/metrics" 2>/dev/null || true; }
requests() { # sum of herd_http_requests_total{listener="site"} of host H
    metrics "$1" | awk '/^herd_http_requests_total\{.*listener="site"/ { s += $NF } END { printf "%d\n", s }'
}
for h in 1 2 3; do
    for _ in $(seq 1 100); do
        ip netns exec "herd-h$h" curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:9180/healthz" 2>/dev/null && break
        sleep 0.1
    done
done
ok=0
for _ in $(seq 1 100); do
    if ip netns exec herd-cl curl -fsS --max-time 1 -o /dev/null http://10.77.0.1/healthz 2>/dev/null; then ok=1; break; fi
    sleep 0.1
done
[ "$ok" = 1 ] || { say "the fleet does not answer through HAProxy"; cat "$WORK/haproxy.log" >&2; exit 1; }
say "fleet up: 3 hosts x $WORKERS workers behind $(haproxy -v | head -1 | awk '{print $3}')"

# Sample the fleet's request counter every 0.5 s while wrk runs.
(
    while :; do
        t=$(date +%s.%N)
        n=0
        for h in 1 2 3; do n=$((n + $(requests "$h"))); done
        echo "$t $n"
        sleep 0.5
    done
) >"$WORK/samples.txt" &
SAMPLER=$!
PIDS+=($SAMPLER)

WRK_START=$(date +%s.%N)
ip netns exec herd-cl wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s http://10.77.0.1/api/status \
    >"$WORK/wrk.txt" 2>&1 &
WRK=$!
PIDS+=($WRK)
sleep 4

master_of() { cat "$WORK/h$1/herd.pid"; }
echo "$WRK_START wrk-start" >"$WORK/marks.txt"
echo "$(date +%s.%N) upgrade-start" >>"$WORK/marks.txt"
for h in 1 2 3; do
    old=$(master_of "$h")
    kill -USR2 "$old"
    for _ in $(seq 1 100); do
        new=$(cat "$WORK/h$h/herd.pid" 2>/dev/null || echo "$old")
        [ "$new" != "$old" ] && break
        sleep 0.1
    done
    [ "$new" != "$old" ] || { say "host $h: no new master after USR2"; exit 1; }
    for _ in $(seq 1 100); do
        [ "$(grep -c "ready (pid" "$WORK/h$h/error.log" || true)" -ge $((WORKERS * 2)) ] && break
        sleep 0.1
    done
    kill -QUIT "$old"
    for _ in $(seq 1 150); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    say "host $h upgraded: master $old -> $new"
    sleep 1
done
echo "$(date +%s.%N) reload-start" >>"$WORK/marks.txt"
for h in 1 2 3; do
    kill -HUP "$(master_of "$h")"
    sleep 1.5
    say "host $h reloaded"
done
echo "$(date +%s.%N) done" >>"$WORK/marks.txt"
wait "$WRK" || true
kill "$SAMPLER" 2>/dev/null || true

cat "$WORK/wrk.txt"
status=0
python3 - "$WORK" <<'PY' || status=$?
import re, sys
work = sys.argv[1]
wrk = open(f"{work}/wrk.txt").read()
samples = [tuple(map(float, l.split())) for l in open(f"{work}/samples.txt") if len(l.split()) == 2]
marks = [l.split() for l in open(f"{work}/marks.txt")]
t_wrk, t0, t_end = float(marks[0][0]), float(marks[1][0]), float(marks[-1][0])
rates = []
for (ta, na), (tb, nb) in zip(samples, samples[1:]):
    if tb > ta and nb >= na:
        rates.append(((ta + tb) / 2, (nb - na) / (tb - ta)))
during = [r for t, r in rates if t0 <= t <= t_end]
steady = sorted(r for t, r in rates if t_wrk + 1 < t < t0) or sorted(r for _, r in rates)
median = steady[len(steady) // 2] if steady else 0
low = min(during) if during else 0
print(f"fleet: requests/s before the rolling operations (median of {len(steady)} samples): {median:.0f}")
print(f"fleet: during the rolling upgrade and reload: lowest {low:.0f}/s, dip {low / median if median else 0:.2f}x of before")
failed = []
m = re.search(r"Socket errors: (.*)", wrk)
if m:
    failed.append(f"wrk socket errors: {m.group(1)}")
m = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
if m:
    failed.append(f"wrk non-2xx answers: {m.group(1)}")
total = re.search(r"(\d+) requests in", wrk)
print(f"fleet: wrk: {total.group(1) if total else '?'} requests, "
      f"{'no' if not failed else 'SOME'} failed")
for h in (1, 2, 3):
    lines = open(f"{work}/h{h}/access.log").read().splitlines()
    client = sum(1 for l in lines if l.startswith("10.77.0.100 "))
    lb = sum(1 for l in lines if l.startswith("10.77.0.1 ") and "/healthz" not in l)
    print(f"fleet: host {h}: {client} requests logged from 10.77.0.100, {lb} from HAProxy's address")
    if client == 0 or lb:
        failed.append(f"host {h}: access log does not name the client ({client} from it, {lb} from HAProxy)")
for f in failed:
    print("fleet: FAIL:", f)
sys.exit(1 if failed else 0)
PY
exit "$status"
