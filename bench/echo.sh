#!/usr/bin/env bash
# bench/echo.sh: herd's echo server against tokio and a hand-written mio loop, on loopback.
#
# For each scenario (64 B x 100 conns, 64 B x 1000 conns, 16 KiB x 10 conns) and each server
# (herd; hasync, herd's async echo: one task per connection through herd::task::ConnTasks;
# tokio; mio), interleaved over REPEATS rounds in a balanced order (round_order), it
# starts the server pinned to CPU 0 with one loop/thread, runs `herd-bench echo --json` pinned
# to CPU 1, samples the server's utime+stime from /proc/PID/stat before and after the client
# run, and prints per scenario the median per server of msgs/s, server CPU us per message,
# p50/p99 latency, and the herd/tokio and herd/mio ratios: of the medians, and the median of
# the per-round ratios (the servers of a round run back to back, so the shared machine's slow
# drifts cancel out of those). A failed run is printed as failed and counted in the table's
# "runs" column, never dropped silently.
#
# The mio loop runs twice per round (rows "mio" and "mio2", the same binary): their per-round
# ratio is an A/A control, the resolution of this machine for that round. The table prints its
# median and range next to herd/mio's, so a herd/mio ratio inside the A/A range is noise, not a
# difference between the servers. AA=0 drops the second run. Each per-round ratio also says in
# how many rounds it was at least 1: for two equal servers that is about half of them.
#
# Optional passes:
#   SYSCALLS=1  each server under `strace -c -f` for a short fixed run (100 conns, 64 B,
#               depth 1): syscalls per echoed message, total and for the top syscalls.
#               Throughput collapses under strace; the ratio is what matters.
#   MEMORY=1    10,000 idle connections per server (one echo each, then held): server RSS
#               growth and bytes per connection (VmRSS from /proc/PID/status).
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured seconds before it
#   REPEATS [3]  rounds                       SCENARIOS ["64:100 64:1000 16384:10"] size:conns
#   AA [1]       run the mio loop a second time per round as an A/A control (0: don't)
#   HERD_ECHO_BIN  use this binary as "herd" instead of building herd's echo example
#                  (it is started as `BIN --port P --loops 1`; the peers accept --loops too)
#   PORT_BASE [19100]  first port tried; every server start gets a fresh free port
#   SERVER_CPU [0] CLIENT_CPU [1]             MEM_CONNS [10000] MEM_HOLD [5]
#   SYSCALL_DURATION [2]                      KEEP_LOGS [0] keep the work directory
#
# Only 127.0.0.1 is used. Every client run is bounded by `timeout`; every server this script
# started is killed by its PID on exit (trap). Runs as root on the project's machines and
# installs what it needs (util-linux for taskset, strace when SYSCALLS=1) only when missing.
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS-"64:100 64:1000 16384:10"} # empty: skip the echo runs
SYSCALLS=${SYSCALLS:-0}
MEMORY=${MEMORY:-0}
PORT_BASE=${PORT_BASE:-19100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MEM_CONNS=${MEM_CONNS:-10000}
MEM_HOLD=${MEM_HOLD:-5}
SYSCALL_DURATION=${SYSCALL_DURATION:-2}
KEEP_LOGS=${KEEP_LOGS:-0}
HERD_ECHO_BIN=${HERD_ECHO_BIN:-}
AA=${AA:-1}
SERVERS=(herd hasync tokio mio)
PEERS=("${SERVERS[@]}") # the syscall and memory passes measure each server once
[ "$AA" = 1 ] && SERVERS+=(mio2)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init echo

# --- tools ---------------------------------------------------------------------------------

[ "$SYSCALLS" = 1 ] && need strace strace

# Raise the fd limit (10k idle connections on each side in the memory pass).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "fd limit $(ulimit -n), clock ticks/s $CLK_TCK, work dir $WORK"

# --- build ---------------------------------------------------------------------------------

build_release "$ROOT" "herd-bench" -p herd-bench
if [ -z "$HERD_ECHO_BIN" ]; then
    build_release "$ROOT" "herd's echo example" --example echo
    HERD_ECHO_BIN=$ROOT_TARGET/release/examples/echo
fi
build_release "$ROOT" "herd's async echo example" --example async_echo
HASYNC_BIN=$ROOT_TARGET/release/examples/async_echo
build_release "$ROOT/bench/peers" "the peers"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH=$ROOT_TARGET/release/herd-bench
TOKIO_BIN=$PEERS_TARGET/release/tokio-echo
MIO_BIN=$PEERS_TARGET/release/mio-echo
for b in "$BENCH" "$HERD_ECHO_BIN" "$HASYNC_BIN" "$TOKIO_BIN" "$MIO_BIN"; do
    [ -x "$b" ] || die "missing binary $b"
done
say "herd = $HERD_ECHO_BIN"

# --- servers -------------------------------------------------------------------------------

# server_cmd NAME PORT: sets CMD to the server's command line (one loop/thread).
server_cmd() {
    case $1 in
    herd) CMD=("$HERD_ECHO_BIN" --port "$2" --loops 1) ;;
    hasync) CMD=("$HASYNC_BIN" --port "$2" --loops 1) ;;
    tokio) CMD=("$TOKIO_BIN" --port "$2" --threads 1) ;;
    mio | mio2) CMD=("$MIO_BIN" --port "$2" --threads 1) ;;
    *) die "unknown server $1" ;;
    esac
}

# next_port: sets PORT to the next port nobody listens on.

# start_server NAME [WRAPPER...]: starts NAME on a fresh port pinned to SERVER_CPU, sets
# SERVER_PID (the process we started: the server, or the wrapper when one is given) and PORT,
# and waits up to 10 s for the port to accept. Returns 1 if it never does.

# stop_pid PID: TERM, up to 5 s grace, then KILL; reaps it. Only for PIDs in LIVE (ours, not
# yet reaped, so the number cannot have been reused by someone else's process).

# cpu_ticks PID: utime + stime of the whole process (all threads), in clock ticks.

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# json_get FILE KEY: a number from herd-bench's one-line JSON.

# --- echo runs -----------------------------------------------------------------------------

# run_echo SCENARIO SERVER ROUND SIZE CONNS: one measured run; appends a line to RESULTS:
#   scenario server round ok msgs/s cpu_us/msg p50 p99      or
#   scenario server round FAILED reason...
run_echo() {
    local scen=$1 name=$2 round=$3 size=$4 conns=$5
    bench_run "$scen" "$name" "$round" msg echo --connections "$conns" --size "$size" --depth 1
}

# print_table SCENARIO TITLE: medians per server and herd's ratios.
print_table() {
    local scen=$1 title=$2
    printf '\n== %s (depth 1, %s s after %s s warmup, median of %s) ==\n' \
        "$title" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -v servers="${SERVERS[*]}" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; m[$2] = m[$2] " " $5; c[$2] = c[$2] " " $6; p5[$2] = p5[$2] " " $7; p9[$2] = p9[$2] " " $8; rm[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            ns = split(servers, s, " ")
            printf "%-7s %-12s %12s %12s %10s %10s\n", "server", "runs ok", "msgs/s", "CPU us/msg", "p50 us", "p99 us"
            for (i = 1; i <= ns; i++) {
                k = s[i]
                mm[k] = median(m[k]); mc[k] = median(c[k])
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-7s %-12s %12s %12s %10s %10s\n", k, status, "FAILED", "-", "-", "-"; continue }
                printf "%-7s %-12s %12.0f %12.3f %10.1f %10.1f\n", k, status, mm[k], mc[k], median(p5[k]), median(p9[k])
            }
            printf "herd/tokio: throughput %s, CPU/msg %s (per-round ratios, median [range]: %s, %s)\n", ratio(mm["herd"], mm["tokio"]), ratio(mc["herd"], mc["tokio"]), paired("herd", "tokio", rm, 1), paired("herd", "tokio", rc, 1)
            printf "herd/mio:   throughput %s, CPU/msg %s (per-round ratios, median [range]: %s, %s)\n", ratio(mm["herd"], mm["mio"]), ratio(mc["herd"], mc["mio"]), paired("herd", "mio", rm, 1), paired("herd", "mio", rc, 1)
            if (ok["hasync"]) printf "hasync/herd: throughput %s, CPU/msg %s (per-round ratios, median [range]: %s, %s)  <- the task API against callbacks\n", ratio(mm["hasync"], mm["herd"]), ratio(mc["hasync"], mc["herd"]), paired("hasync", "herd", rm, 1), paired("hasync", "herd", rc, 1)
            if (ok["hasync"]) printf "hasync/tokio: throughput %s, CPU/msg %s (per-round ratios, median [range]: %s, %s)\n", ratio(mm["hasync"], mm["tokio"]), ratio(mc["hasync"], mc["tokio"]), paired("hasync", "tokio", rm, 1), paired("hasync", "tokio", rc, 1)
            if (ok["mio2"]) printf "mio2/mio:   throughput %s, CPU/msg %s (per-round ratios, median [range]: %s, %s)  <- A/A: the same binary twice\n", ratio(mm["mio2"], mm["mio"]), ratio(mc["mio2"], mc["mio"]), paired("mio2", "mio", rm, 1), paired("mio2", "mio", rc, 1)
        }'
}

for spec in $SCENARIOS; do
    size=${spec%%:*}
    conns=${spec##*:}
    say "scenario: $size B x $conns connections"
    for round in $(seq 1 "$REPEATS"); do
        for i in $(round_order ${#SERVERS[@]} "$round"); do
            run_echo "$spec" "${SERVERS[$i]}" "$round" "$size" "$conns"
        done
    done
done

say ""
say "per-run results (also failures): scenario server round status msgs/s cpu_us/msg p50 p99"
cat "$RESULTS" >&2

echo "herd echo benchmark: server on CPU $SERVER_CPU, herd-bench on CPU $CLIENT_CPU, one loop/thread each"
echo "herd = $HERD_ECHO_BIN"
echo "load average before: $LOAD_BEFORE; after the echo runs: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for spec in $SCENARIOS; do
    print_table "$spec" "${spec%%:*} B x ${spec##*:} connections"
done

# --- syscalls per message ------------------------------------------------------------------

if [ "$SYSCALLS" = 1 ]; then
    printf '\n== syscalls per echoed message (strace -c -f, 100 conns x 64 B, depth 1, %s s) ==\n' \
        "$SYSCALL_DURATION"
    printf '%-7s %10s %10s %10s  %s\n' server messages syscalls per-msg "top syscalls per message"
    for name in "${PEERS[@]}"; do
        trace=$WORK/strace.$name.txt
        out=$WORK/strace.$name.json
        if ! start_server "$name" strace -f -c -o "$trace" --; then
            stop_pid "$SERVER_PID"
            printf '%-7s %10s\n' "$name" FAILED
            FAILURES=$((FAILURES + 1))
            continue
        fi
        # The traced server is strace's child; track it so the exit trap can stop it too.
        STRACE_CHILD=$(cat "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null)
        timeout $((SYSCALL_DURATION + 60)) taskset -c "$CLIENT_CPU" "$BENCH" echo \
            --addr "127.0.0.1:$PORT" --connections 100 --size 64 --depth 1 \
            --duration "${SYSCALL_DURATION}s" --warmup 0s --threads 1 --json \
            >"$out" 2>"$WORK/strace.$name.err"
        rc=$?
        # Kill the traced server (strace's child), not strace: strace then writes its summary.
        for c in $STRACE_CHILD; do kill -TERM "$c" 2>/dev/null; done
        stop_pid "$SERVER_PID"
        STRACE_CHILD=""
        total=$(json_get "$out" messages_total)
        if [ "$rc" != 0 ] || [ -z "$total" ] || [ ! -s "$trace" ]; then
            printf '%-7s %10s  (herd-bench exit %s)\n' "$name" FAILED "$rc"
            FAILURES=$((FAILURES + 1))
            continue
        fi
        awk -v name="$name" -v msgs="$total" '
            $1 ~ /^[0-9.]+$/ && NF >= 5 {
                calls = $4; sc = $NF
                if (sc == "total") { total = calls; next }
                n++; c[n] = calls; s[n] = sc
            }
            END {
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (c[j] + 0 > c[i] + 0) { t = c[i]; c[i] = c[j]; c[j] = t; t = s[i]; s[i] = s[j]; s[j] = t }
                top = ""
                for (i = 1; i <= n && i <= 5; i++) top = top sprintf("%s %.3f  ", s[i], c[i] / msgs)
                printf "%-7s %10d %10d %10.3f  %s\n", name, msgs, total, total / msgs, top
            }' "$trace"
    done
fi

# --- memory per idle connection ------------------------------------------------------------

if [ "$MEMORY" = 1 ]; then
    printf '\n== memory: %s idle connections (one 64 B echo each), server RSS ==\n' "$MEM_CONNS"
    printf '%-7s %12s %14s %12s %12s  %s\n' server "RSS before" "RSS with conns" growth "bytes/conn" status
    if [ "$(ulimit -n)" -lt $((MEM_CONNS + 100)) ]; then
        say "fd limit $(ulimit -n) is too low for $MEM_CONNS connections"
    fi
    for name in "${PEERS[@]}"; do
        if ! start_server "$name"; then
            stop_pid "$SERVER_PID"
            printf '%-7s %12s\n' "$name" FAILED
            FAILURES=$((FAILURES + 1))
            continue
        fi
        before=$(rss_kib "$SERVER_PID")
        out=$WORK/hold.$name.out
        timeout $((MEM_HOLD + 120)) taskset -c "$CLIENT_CPU" "$BENCH" hold \
            --addr "127.0.0.1:$PORT" --connections "$MEM_CONNS" --size 64 \
            --hold "${MEM_HOLD}s" --json >"$out" 2>"$WORK/hold.$name.err" &
        hold_pid=$!
        LIVE[$hold_pid]=1
        after=""
        for _ in $(seq 1 1200); do # up to 120 s to open and echo
            if grep -q '^ready' "$out" 2>/dev/null; then
                after=$(rss_kib "$SERVER_PID")
                break
            fi
            kill -0 "$hold_pid" 2>/dev/null || break
            sleep 0.1
        done
        wait "$hold_pid"
        rc=$?
        unset "LIVE[$hold_pid]"
        stop_pid "$SERVER_PID"
        if [ -z "$after" ] || [ -z "$before" ] || [ "$rc" != 0 ]; then
            printf '%-7s %12s %14s %12s %12s  FAILED (herd-bench exit %s: %s)\n' "$name" \
                "${before:--}" "${after:--}" - - "$rc" "$(tail -n 1 "$WORK/hold.$name.err")"
            FAILURES=$((FAILURES + 1))
            continue
        fi
        awk -v n="$name" -v b="$before" -v a="$after" -v c="$MEM_CONNS" 'BEGIN {
            printf "%-7s %9.1f MiB %11.1f MiB %8.1f MiB %12.0f  ok\n", n, b / 1024, a / 1024, (a - b) / 1024, (a - b) * 1024 / c }'
    done
fi

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
