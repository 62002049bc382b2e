#!/usr/bin/env bash
# bench/metrics-scrape.sh: what one Prometheus scrape of `/metrics` costs the server, with
# WORKERS worker processes and LISTENERS listeners (defaults 8 and 50: the issue's figure).
#
# Starts herd (release build) with LISTENERS-1 listeners (http, ws, frame and echo in turn)
# plus one admin listener, waits until every worker reports, sends a little traffic to every
# listener so every series has values, then:
#   1. idle: the CPU time (utime+stime from /proc, master and all workers) over IDLE_S
#      seconds without scrapes: the background cost of the once-a-second refreshes;
#   2. SCRAPES scrapes of /metrics back to back on one keep-alive connection, timing each;
# and prints the server CPU per scrape = (CPU during the scrapes - idle rate x their wall
# time) / SCRAPES, the median and p99 wall time of a scrape and the exposition's size.
# CPU comes in 10 ms clock ticks: SCRAPES must add up to a few hundred ms for a usable figure.
#
# Environment: WORKERS [8] LISTENERS [50] SCRAPES [400] IDLE_S [5] PORT_BASE [20000]
# Only 127.0.0.1; the herd started here is stopped by its PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKERS=${WORKERS:-8}
LISTENERS=${LISTENERS:-50}
SCRAPES=${SCRAPES:-400}
IDLE_S=${IDLE_S:-5}
PORT_BASE=${PORT_BASE:-20000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/herd-scrape.XXXXXX)
PID=""
stop() {
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap stop EXIT

(cd "$ROOT" && cargo build -q --release --bin herd)
BIN=$TARGET/release/herd

ADMIN=$PORT_BASE
{
    echo "workers = $WORKERS"
    echo "[[listener]]"; echo "name = \"admin\""; echo "bind = \"127.0.0.1:$ADMIN\""
    echo "protocol = \"admin\""
    protos=(http ws frame echo)
    for i in $(seq 1 $((LISTENERS - 1))); do
        echo "[[listener]]"; echo "name = \"l$i\""; echo "bind = \"127.0.0.1:$((PORT_BASE + i))\""
        echo "protocol = \"${protos[$((i % 4))]}\""
    done
} >"$WORK/herd.toml"
"$BIN" -c "$WORK/herd.toml" >"$WORK/herd.log" 2>&1 &
PID=$!

python3 - "$PID" "$ADMIN" "$PORT_BASE" "$LISTENERS" "$WORKERS" "$SCRAPES" "$IDLE_S" <<'PY'
import os, socket, statistics, sys, time
master, admin, base, listeners, workers, scrapes, idle_s = map(int, sys.argv[1:])

def pids():
    out = [master]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                st = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(st[st.rfind(")") + 2:].split()[1]) == master:
                out.append(int(p))
    return out

def ticks(ps):
    t = 0
    for p in ps:
        f = open(f"/proc/{p}/stat").read()
        f = f[f.rfind(")") + 2:].split()
        t += int(f[11]) + int(f[12])
    return t

HZ = os.sysconf("SC_CLK_TCK")

def conn(port):
    for _ in range(300):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never opened")

def get(s, f, path):
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    f.readline()
    n = 0
    while True:
        line = f.readline()
        if line == b"\r\n":
            break
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    return f.read(n)

s = conn(admin)
f = s.makefile("rb")
deadline = time.time() + 60
while True:
    body = get(s, f, b"/metrics").decode()
    line = [l for l in body.splitlines() if l.startswith("herd_workers_reporting ")]
    if line and int(float(line[0].split()[1])) == workers:
        break
    if time.time() > deadline:
        raise SystemExit("workers never all reported")
    time.sleep(0.2)
# A little traffic on every listener, so every listener has counters.
for i in range(1, listeners):
    c = conn(base + i)
    c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" if i % 4 == 0 else b"x\n")
    c.settimeout(1)
    try:
        c.recv(65536)
    except OSError:
        pass
    c.close()
time.sleep(1.5)  # let the refresh publish them (not an assertion)
ps = pids()
t0, c0 = time.monotonic(), ticks(ps)
time.sleep(idle_s)
idle_rate = (ticks(ps) - c0) / HZ / (time.monotonic() - t0)
walls = []
t0, c0 = time.monotonic(), ticks(ps)
for _ in range(scrapes):
    a = time.perf_counter()
    body = get(s, f, b"/metrics")
    walls.append(time.perf_counter() - a)
wall = time.monotonic() - t0
cpu = (ticks(ps) - c0) / HZ
per = (cpu - idle_rate * wall) / scrapes
walls.sort()
series = sum(1 for l in body.decode().splitlines() if l and not l.startswith("#"))
print(f"workers {workers}, listeners {listeners}: {len(body)} bytes, {series} samples per scrape")
print(f"idle background: {idle_rate * 1000:.1f} ms CPU per second (all processes)")
print(f"server CPU per scrape: {per * 1000:.2f} ms  (over {scrapes} scrapes, {cpu:.2f} s CPU in {wall:.2f} s)")
print(f"wall per scrape: median {statistics.median(walls) * 1000:.2f} ms, p99 {walls[int(len(walls) * 0.99) - 1] * 1000:.2f} ms")
PY
