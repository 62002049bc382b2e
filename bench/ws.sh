#!/usr/bin/env bash
# bench/ws.sh: herd's WebSocket echo (the ws_echo example) against the idiomatic
# tokio-tungstenite echo server (bench/peers tokio-tungstenite-echo), on loopback.
#
# Every connection does the HTTP upgrade (herd-bench checks the 101 and the
# Sec-WebSocket-Accept), then sends masked binary frames of SIZE payload bytes, one in flight
# (depth 1); both servers unmask, check and echo each message back as one unmasked binary frame,
# and `herd-bench ws` verifies every echoed byte. Scenarios are SIZE:CONNS. For each scenario
# and server, interleaved over REPEATS rounds in a balanced order (round_order), it starts the
# server pinned to CPU SERVER_CPU with one loop / worker thread, runs `herd-bench ws --json`
# pinned to CLIENT_CPU, samples the server's utime+stime from /proc/PID/stat before and after,
# and prints per scenario the median per server of msgs/s, server CPU us per message, p50/p99
# latency, the herd/tokio-tungstenite ratios and the issue's targets (CPU/message <= 0.67x
# tokio-tungstenite's, throughput >= 1.0x). A failed run is printed as failed, never dropped.
# `uptime` is printed before and after, to tell whether the machine was busy.
#
# Syscall pass (SYSCALLS=1, the default): each server under `strace -c -f` for a short fixed
# run per SYSCALL_SCENARIOS entry: syscalls per message, total and for the top syscalls.
# Throughput collapses under strace; the per-message counts are what to read.
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured seconds before it
#   REPEATS [3]  rounds                       SCENARIOS ["64:100 16384:100"] size:conns
#   SYSCALLS [1]  SYSCALL_DURATION [2]        SYSCALL_SCENARIOS ["64:100 16384:100"]
#   HERD_WS_BIN  use this binary as "herd" (started as `BIN --port P --loops 1`) instead of
#                building the ws_echo example
#   PORT_BASE [19600]  SERVER_CPU [0]  CLIENT_CPU [1]  KEEP_LOGS [0] keep the work directory
#
# Only 127.0.0.1 is used. Every client run is bounded by `timeout`; every server this script
# started is killed by its PID on exit (trap). Runs as root on the project's machines and
# installs what it needs (util-linux for taskset, strace) only when missing.
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS-"64:100 16384:100"}
SYSCALLS=${SYSCALLS:-1}
SYSCALL_DURATION=${SYSCALL_DURATION:-2}
SYSCALL_SCENARIOS=${SYSCALL_SCENARIOS-"64:100 16384:100"}
PORT_BASE=${PORT_BASE:-19600}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
HERD_WS_BIN=${HERD_WS_BIN:-}
SERVERS=(herd tungstenite)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init ws

# --- tools ---------------------------------------------------------------------------------

[ "$SYSCALLS" = 1 ] && need strace strace
say "clock ticks/s $CLK_TCK, work dir $WORK"

# --- build ---------------------------------------------------------------------------------

build_release "$ROOT" "herd-bench" -p herd-bench
if [ -z "$HERD_WS_BIN" ]; then
    build_release "$ROOT" "herd's ws_echo example" --example ws_echo
    HERD_WS_BIN=$ROOT_TARGET/release/examples/ws_echo
fi
build_release "$ROOT/bench/peers" "the tokio-tungstenite-echo peer" --bin tokio-tungstenite-echo

UPTIME_BEFORE=$(uptime)
BENCH=$ROOT_TARGET/release/herd-bench
TUNG_BIN=$PEERS_TARGET/release/tokio-tungstenite-echo
for b in "$BENCH" "$HERD_WS_BIN" "$TUNG_BIN"; do
    [ -x "$b" ] || die "missing binary $b"
done
say "herd = $HERD_WS_BIN"
say "uptime before: $UPTIME_BEFORE"

# --- servers -------------------------------------------------------------------------------

server_cmd() { # server_cmd NAME PORT: sets CMD (one loop / worker thread)
    case $1 in
    herd) CMD=("$HERD_WS_BIN" --port "$2" --loops 1) ;;
    tungstenite) CMD=("$TUNG_BIN" --port "$2" --threads 1) ;;
    *) die "unknown server $1" ;;
    esac
}

# --- measured runs -------------------------------------------------------------------------

# run_one SCENARIO SERVER ROUND: appends "scenario server round ok msgs/s cpu_us/msg p50 p99"
# or "scenario server round FAILED why" to RESULTS.
run_one() {
    local scen=$1 name=$2 round=$3
    local size conns rest
    IFS=: read -r size conns rest <<<"$scen"
    bench_run "$scen" "$name" "$round" msg ws --connections "$conns" --size "$size" --depth 1
}

print_table() { # print_table SCENARIO
    local scen=$1 size conns
    IFS=: read -r size conns <<<"$scen"
    printf '\n== %s conns x %s B binary messages, depth 1 (%s s after %s s warmup, median of %s) ==\n' \
        "$conns" "$size" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; m[$2] = m[$2] " " $5; c[$2] = c[$2] " " $6; p5[$2] = p5[$2] " " $7; p9[$2] = p9[$2] " " $8; rm[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            printf "%-12s %-12s %12s %12s %10s %10s\n", "server", "runs ok", "msgs/s", "CPU us/msg", "p50 us", "p99 us"
            split("herd tungstenite", s, " ")
            for (i = 1; i <= 2; i++) {
                k = s[i]
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-12s %-12s %12s\n", k, status, "FAILED"; continue }
                mm[k] = median(m[k]); mc[k] = median(c[k])
                printf "%-12s %-12s %12.0f %12.3f %10.1f %10.1f\n", k, status, mm[k], mc[k], median(p5[k]), median(p9[k])
            }
            if (mm["tungstenite"] > 0 && mc["tungstenite"] > 0 && mm["herd"] != "") {
                tr = mm["herd"] / mm["tungstenite"]; cr = mc["herd"] / mc["tungstenite"]
                printf "herd/tokio-tungstenite: throughput %.2fx (target >= 1.00: %s), CPU/message %.2fx (target <= 0.67: %s)\n",
                    tr, (tr >= 1.0 ? "met" : "MISSED"), cr, (cr <= 0.67 ? "met" : "MISSED")
            } else {
                print "herd/tokio-tungstenite: - (a server has no successful run)"
            }
            printf "per-round ratios, median [range]: throughput %s, CPU/message %s\n", paired("herd", "tungstenite", rm, 1), paired("herd", "tungstenite", rc, 1)
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

echo "herd WebSocket benchmark: server on CPU $SERVER_CPU (one loop / worker thread), herd-bench on CPU $CLIENT_CPU"
echo "herd = $HERD_WS_BIN; tokio-tungstenite = $TUNG_BIN"
echo "uptime before: $UPTIME_BEFORE"
echo "uptime after:  $(uptime)"
echo "(other work on these CPUs skews throughput; compare CPU per message first)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

# --- syscalls per request ------------------------------------------------------------------

if [ "$SYSCALLS" = 1 ]; then
    printf '\n== syscalls per message (strace -c -f, %s s per run) ==\n' "$SYSCALL_DURATION"
    printf '%-12s %-12s %10s %10s %8s  %s\n' scenario server messages syscalls per-msg "top syscalls per message"
    for scen in $SYSCALL_SCENARIOS; do
        IFS=: read -r size conns <<<"$scen"
        for name in "${SERVERS[@]}"; do
            trace=$WORK/strace.$name.$size.$conns.txt
            out=$WORK/strace.$name.$size.$conns.json
            if ! start_server "$name" strace -f -c -o "$trace" --; then
                stop_pid "$SERVER_PID"
                printf '%-12s %-12s %10s\n' "$scen" "$name" FAILED
                FAILURES=$((FAILURES + 1))
                continue
            fi
            STRACE_CHILD=$(cat "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null)
            timeout $((SYSCALL_DURATION + 60)) taskset -c "$CLIENT_CPU" "$BENCH" ws \
                --addr "127.0.0.1:$PORT" --connections "$conns" --size "$size" --depth 1 \
                --duration "${SYSCALL_DURATION}s" --warmup 0s --threads 1 --json \
                >"$out" 2>"$out.err"
            rc=$?
            for c in $STRACE_CHILD; do kill -TERM "$c" 2>/dev/null; done
            stop_pid "$SERVER_PID"
            STRACE_CHILD=""
            total=$(json_get "$out" messages_total)
            if [ "$rc" != 0 ] || [ -z "$total" ] || [ ! -s "$trace" ]; then
                printf '%-12s %-12s %10s  (herd-bench exit %s)\n' "$scen" "$name" FAILED "$rc"
                FAILURES=$((FAILURES + 1))
                continue
            fi
            awk -v scen="$scen" -v name="$name" -v msgs="$total" '
                $1 ~ /^[0-9.]+$/ && NF >= 5 {
                    calls = $4; sc = $NF
                    if (sc == "total") { total = calls; next }
                    n++; c[n] = calls; s[n] = sc
                }
                END {
                    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (c[j] + 0 > c[i] + 0) { t = c[i]; c[i] = c[j]; c[j] = t; t = s[i]; s[i] = s[j]; s[j] = t }
                    top = ""
                    for (i = 1; i <= n && i <= 5; i++) top = top sprintf("%s %.3f  ", s[i], c[i] / msgs)
                    printf "%-12s %-12s %10d %10d %8.3f  %s\n", scen, name, msgs, total, total / msgs, top
                }' "$trace"
        done
    done
fi

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
