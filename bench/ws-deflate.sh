#!/usr/bin/env bash
# bench/ws-deflate.sh: WebSocket echo with permessage-deflate (RFC 7692): herd's ws_echo
# example against python's `websockets` echo server (compression="deflate", its default), on
# loopback, with 1 KiB JSON-like text messages.
#
# Every connection does the HTTP upgrade offering permessage-deflate and herd-bench fails the
# run unless the 101 accepted it (`herd-bench ws --deflate MODE`): `shared` offers
# `client_no_context_takeover; server_no_context_takeover` (both ends reset their contexts per
# message; herd then shares one compressor and one decompressor per loop), `takeover` offers
# plain `permessage-deflate; client_max_window_bits` (what browsers send: contexts kept per
# connection; python answers with 12-bit windows). Each message is SIZE bytes of JSON-like
# text whose numbers vary per message (`--payload json`: about 3x per message with zlib, 5-6x
# with context takeover), compressed by the client (zlib-rs level 1) and sent as one masked
# text frame with RSV1; the server inflates, echoes, compresses its echo, and herd-bench
# inflates it and checks every byte. Servers (MODES):
#   herd-shared     ws_echo --loops 1 --deflate shared,   offer `shared`
#   herd-takeover   ws_echo --loops 1 --deflate takeover, offer `takeover`
#   python-shared   websockets serve(compression="deflate"), one process, offer `shared`
#   python-takeover the same server, offer `takeover` (python's own defaults)
# herd compresses at zlib level 1 with a 15-bit window (its DeflateConfig default), python at
# zlib's default level 6 with a 12-bit window and memLevel 5 (websockets' defaults): each
# server as it ships.
#
# Scenarios are SIZE:CONNS, depth 1. For each scenario, interleaved over REPEATS rounds in a
# balanced order (round_order), each server is started pinned to CPU SERVER_CPU (one loop /
# one process), `herd-bench ws --json` runs pinned to CLIENT_CPU, the server's utime+stime is
# sampled from /proc/PID/stat before and after; printed per scenario: the median per server of
# msgs/s, server CPU us per message, p50/p99 latency, and the herd/python ratios per offer
# (lines starting `herd/python`) against the target CPU/message <= 0.70x python's.
#
# Memory pass (MEMORY=1, the default): per server, MEM_CONNS idle connections that negotiated
# deflate (`herd-bench hold --ws --deflate MODE`), server VmRSS (/proc/PID/status) before, once
# every connection is upgraded, and again after one 1 KiB compressed message was echoed on
# each (a server may allocate its contexts lazily, on the first compressed message); printed
# as the RSS growth per connection at both points.
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured seconds before it
#   REPEATS [3]  rounds                       SCENARIOS ["1024:50"] size:conns
#   MODES ["herd-shared herd-takeover python-shared python-takeover"]
#   MEMORY [1]  MEM_CONNS [1000]  MEM_HOLD [2] seconds held after the echoes
#   HERD_WS_BIN  use this binary as herd's ws_echo instead of building the example
#   PYTHON       a python with `websockets` (default: the venv .ci/interop-ws.sh uses,
#                $TARGET/interop-ws/venv, created and filled with pip only when missing)
#   PORT_BASE [19700]  SERVER_CPU [0]  CLIENT_CPU [1]  KEEP_LOGS [0] keep the work directory
#
# Only 127.0.0.1 is used. Every client run is bounded by `timeout`; every server this script
# started is killed by its PID on exit (trap). Exit status: 0 when every run succeeded, 1 when
# any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS-"1024:50"}
MODES=${MODES:-"herd-shared herd-takeover python-shared python-takeover"}
MEMORY=${MEMORY:-1}
MEM_CONNS=${MEM_CONNS:-1000}
MEM_HOLD=${MEM_HOLD:-2}
PORT_BASE=${PORT_BASE:-19700}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
HERD_WS_BIN=${HERD_WS_BIN:-}
PYTHON=${PYTHON:-}
read -r -a SERVERS <<<"$MODES"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init ws-deflate
say "clock ticks/s $CLK_TCK, work dir $WORK"

# --- build and tools -----------------------------------------------------------------------

build_release "$ROOT" "herd-bench" -p herd-bench
if [ -z "$HERD_WS_BIN" ]; then
    build_release "$ROOT" "herd's ws_echo example" --example ws_echo
    HERD_WS_BIN=$ROOT_TARGET/release/examples/ws_echo
fi
if [ -z "$PYTHON" ]; then
    need python3 python3
    VENV=$ROOT_TARGET/interop-ws/venv
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating venv $VENV"
        mkdir -p "$(dirname "$VENV")"
        python3 -m venv "$VENV" 2>/dev/null || {
            rm -rf "$VENV"
            apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$VENV" || die "could not create $VENV"
        }
    fi
    if ! "$VENV/bin/python" -c "import websockets" 2>/dev/null; then
        say "installing websockets into $VENV"
        timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check websockets ||
            die "could not install websockets"
    fi
    PYTHON=$VENV/bin/python
fi
WS_VERSION=$("$PYTHON" -c "import websockets; print(websockets.__version__)") ||
    die "$PYTHON cannot import websockets"

# The python peer: an echo of every message, one process, permessage-deflate on (the default
# compression="deflate", spelled out), no keepalive pings, 16 MiB messages.
PY_PEER=$WORK/ws_deflate_echo.py
cat >"$PY_PEER" <<'EOF'
import asyncio, sys

try:
    from websockets.asyncio.server import serve
except ImportError:  # websockets < 13
    from websockets import serve


async def echo(ws, *_):
    async for msg in ws:
        await ws.send(msg)


async def main(port):
    async with serve(echo, "127.0.0.1", port, compression="deflate",
                     max_size=1 << 24, ping_interval=None):
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
EOF

UPTIME_BEFORE=$(uptime)
BENCH=$ROOT_TARGET/release/herd-bench
for b in "$BENCH" "$HERD_WS_BIN"; do
    [ -x "$b" ] || die "missing binary $b"
done
say "herd = $HERD_WS_BIN; python = $PYTHON (websockets $WS_VERSION)"
say "uptime before: $UPTIME_BEFORE"

# --- servers -------------------------------------------------------------------------------

server_cmd() { # server_cmd NAME PORT: sets CMD (one loop / one process)
    case $1 in
    herd-shared) CMD=("$HERD_WS_BIN" --port "$2" --loops 1 --deflate shared) ;;
    herd-takeover) CMD=("$HERD_WS_BIN" --port "$2" --loops 1 --deflate takeover) ;;
    python-shared | python-takeover) CMD=("$PYTHON" "$PY_PEER" "$2") ;;
    *) die "unknown server $1" ;;
    esac
}

offer() { echo "${1#*-}"; } # offer NAME: the --deflate offer a server is driven with

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# --- measured runs -------------------------------------------------------------------------

run_one() { # run_one SCENARIO SERVER ROUND
    local scen=$1 name=$2 round=$3 size conns
    IFS=: read -r size conns <<<"$scen"
    bench_run "$scen" "$name" "$round" msg ws --connections "$conns" --size "$size" --depth 1 \
        --payload json --deflate "$(offer "$name")"
}

print_table() { # print_table SCENARIO
    local scen=$1 size conns
    IFS=: read -r size conns <<<"$scen"
    printf '\n== %s conns x %s B JSON text messages, permessage-deflate, depth 1 (%s s after %s s warmup, median of %s) ==\n' \
        "$conns" "$size" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -v servers="${SERVERS[*]}" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; m[$2] = m[$2] " " $5; c[$2] = c[$2] " " $6; p5[$2] = p5[$2] " " $7; p9[$2] = p9[$2] " " $8; rm[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            printf "%-16s %-12s %12s %12s %10s %10s\n", "server", "runs ok", "msgs/s", "CPU us/msg", "p50 us", "p99 us"
            n = split(servers, s, " ")
            for (i = 1; i <= n; i++) {
                k = s[i]
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-16s %-12s %12s\n", k, status, "FAILED"; continue }
                mm[k] = median(m[k]); mc[k] = median(c[k])
                printf "%-16s %-12s %12.0f %12.3f %10.1f %10.1f\n", k, status, mm[k], mc[k], median(p5[k]), median(p9[k])
            }
            split("shared takeover", offers, " ")
            for (j = 1; j <= 2; j++) {
                h = "herd-" offers[j]; p = "python-" offers[j]
                if (!(h in runs) || !(p in runs)) continue
                if (mm[p] > 0 && mc[p] > 0 && mm[h] != "") {
                    tr = mm[h] / mm[p]; cr = mc[h] / mc[p]
                    printf "herd/python %s: CPU/message %.2fx (target <= 0.70: %s), throughput %.2fx; per-round ratios, median [range]: CPU/message %s, throughput %s\n",
                        offers[j], cr, (cr <= 0.70 ? "met" : "MISSED"), tr, paired(h, p, rc, 1), paired(h, p, rm, 1)
                } else {
                    printf "herd/python %s: - (a server has no successful run)\n", offers[j]
                }
            }
        }'
}

for scen in $SCENARIOS; do
    say "scenario: $scen"
    for round in $(seq 1 "$REPEATS"); do
        for i in $(round_order ${#SERVERS[@]} "$round"); do
            run_one "$scen" "${SERVERS[$i]}" "$round"
        done
    done
done

say ""
say "per-run results: scenario server round status msgs/s cpu_us/msg p50 p99"
cat "$RESULTS" >&2

echo "herd WebSocket permessage-deflate benchmark: server on CPU $SERVER_CPU (one loop / one process), herd-bench on CPU $CLIENT_CPU"
echo "herd = $HERD_WS_BIN (zlib-rs level 1, 15-bit window); python = websockets $WS_VERSION (zlib level 6, 12-bit window)"
echo "uptime before: $UPTIME_BEFORE"
echo "uptime after:  $(uptime)"
echo "(other work on these CPUs skews throughput; compare CPU per message first)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

# --- memory per idle compressed connection -------------------------------------------------

# wait_line FILE PREFIX PID: waits up to 120 s for a line starting PREFIX in FILE while PID
# lives; status 0 when it came.
wait_line() {
    for _ in $(seq 1 1200); do
        grep -q "^$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { grep -q "^$2" "$1" 2>/dev/null; return; }
        sleep 0.1
    done
    return 1
}

if [ "$MEMORY" = 1 ]; then
    printf '\n== memory: %s idle connections with permessage-deflate, server VmRSS ==\n' "$MEM_CONNS"
    printf '%-16s %10s %14s %12s %14s %12s  %s\n' server "RSS before" "upgraded" "bytes/conn" \
        "+1 msg each" "bytes/conn" status
    if [ "$(ulimit -n)" -lt $((MEM_CONNS + 100)) ]; then
        say "fd limit $(ulimit -n) is too low for $MEM_CONNS connections"
    fi
    for name in "${SERVERS[@]}"; do
        if ! start_server "$name"; then
            stop_pid "$SERVER_PID"
            printf '%-16s %10s\n' "$name" FAILED
            FAILURES=$((FAILURES + 1))
            continue
        fi
        sleep 0.2 # let the server settle after its first accept
        before=$(rss_kib "$SERVER_PID")
        out=$WORK/hold.$name.out
        timeout $((MEM_HOLD + 180)) taskset -c "$CLIENT_CPU" "$BENCH" hold --ws \
            --addr "127.0.0.1:$PORT" --connections "$MEM_CONNS" --size 1024 --payload json \
            --deflate "$(offer "$name")" --pause 1s --hold "${MEM_HOLD}s" --json \
            >"$out" 2>"$WORK/hold.$name.err" &
        hold_pid=$!
        LIVE[$hold_pid]=1
        upgraded="" after=""
        if wait_line "$out" upgraded "$hold_pid"; then
            sleep 0.3 # the last upgrades' responses are out; let the server finish them
            upgraded=$(rss_kib "$SERVER_PID")
            if wait_line "$out" ready "$hold_pid"; then
                after=$(rss_kib "$SERVER_PID")
            fi
        fi
        wait "$hold_pid"
        rc=$?
        unset "LIVE[$hold_pid]"
        stop_pid "$SERVER_PID"
        if [ -z "$after" ] || [ -z "$upgraded" ] || [ -z "$before" ] || [ "$rc" != 0 ]; then
            printf '%-16s %10s %14s %12s %14s %12s  FAILED (herd-bench exit %s: %s)\n' "$name" \
                "${before:--}" "${upgraded:--}" - "${after:--}" - "$rc" \
                "$(tail -n 1 "$WORK/hold.$name.err")"
            FAILURES=$((FAILURES + 1))
            continue
        fi
        awk -v n="$name" -v b="$before" -v u="$upgraded" -v a="$after" -v c="$MEM_CONNS" 'BEGIN {
            printf "%-16s %6.1f MiB %10.1f MiB %12.0f %10.1f MiB %12.0f  ok\n", n, b / 1024, u / 1024, (u - b) * 1024 / c, a / 1024, (a - b) * 1024 / c }'
    done
fi

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
