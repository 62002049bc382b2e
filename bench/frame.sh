#!/usr/bin/env bash
# bench/frame.sh: herd's frame RPC (the frame_rpc example) against tokio + tokio-util's
# LengthDelimitedCodec + prost (bench/peers tokio-frame) doing the same work, on loopback.
#
# Every request is a 12-byte frame header plus a protobuf RpcReq {id, payload}; both servers
# decode it, build an RpcResp with the same fields, encode it and reply; `herd-bench frame`
# checks every reply byte. Scenarios are PATH:DEPTH:CONNS:SIZE, where PATH is `inline` (message
# id 1: answered on the event loop / the connection's task) or `pool` (id 2: herd's worker pool
# / tokio's spawn_blocking). For each scenario and server, interleaved over REPEATS rounds with
# a balanced order (round_order), it starts the server pinned to CPU SERVER_CPU with one
# loop/worker thread (herd's pool: one thread), runs `herd-bench frame --json` pinned to
# CLIENT_CPU, samples the server's utime+stime from /proc/PID/stat before and after, and prints
# per scenario the median per server of requests/s, server CPU us per request, p50/p99 latency,
# the herd/tokio ratios and the issue's targets (CPU/request at depth 1 <= 0.9x tokio's, at
# depth 16 <= 0.5x; throughput >= 1.0x). A failed run is printed as failed, never dropped.
#
# Syscall pass (SYSCALLS=1, the default): each server under `strace -c -f` for a short fixed
# run per SYSCALL_SCENARIOS entry: syscalls per request, total and for the top syscalls.
# Throughput collapses under strace; the per-request counts are what to read.
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured seconds before it
#   REPEATS [3]  rounds
#   SCENARIOS ["inline:1:100:64 inline:16:100:64 pool:1:100:64 pool:16:100:64"]
#   SYSCALLS [1]  SYSCALL_DURATION [2]
#   SYSCALL_SCENARIOS ["inline:1:100:64 inline:16:100:64 pool:1:100:64 pool:16:100:64"]
#   HERD_FRAME_BIN  use this binary as "herd" (started as `BIN --port P --loops 1
#                   --pool-threads 1`) instead of building the frame_rpc example
#   PORT_BASE [19400]  SERVER_CPU [0]  CLIENT_CPU [1]  KEEP_LOGS [0] keep the work directory
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
SCENARIOS=${SCENARIOS-"inline:1:100:64 inline:16:100:64 pool:1:100:64 pool:16:100:64"}
SYSCALLS=${SYSCALLS:-1}
SYSCALL_DURATION=${SYSCALL_DURATION:-2}
SYSCALL_SCENARIOS=${SYSCALL_SCENARIOS-"inline:1:100:64 inline:16:100:64 pool:1:100:64 pool:16:100:64"}
PORT_BASE=${PORT_BASE:-19400}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
HERD_FRAME_BIN=${HERD_FRAME_BIN:-}
SERVERS=(herd tokio)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init frame

# --- tools ---------------------------------------------------------------------------------

[ "$SYSCALLS" = 1 ] && need strace strace
say "clock ticks/s $CLK_TCK, work dir $WORK"

# --- build ---------------------------------------------------------------------------------

build_release "$ROOT" "herd-bench" -p herd-bench
if [ -z "$HERD_FRAME_BIN" ]; then
    build_release "$ROOT" "herd's frame_rpc example" --example frame_rpc
    HERD_FRAME_BIN=$ROOT_TARGET/release/examples/frame_rpc
fi
build_release "$ROOT/bench/peers" "the tokio-frame peer" --bin tokio-frame

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH=$ROOT_TARGET/release/herd-bench
TOKIO_BIN=$PEERS_TARGET/release/tokio-frame
for b in "$BENCH" "$HERD_FRAME_BIN" "$TOKIO_BIN"; do
    [ -x "$b" ] || die "missing binary $b"
done
say "herd = $HERD_FRAME_BIN"

# --- servers -------------------------------------------------------------------------------

server_cmd() { # server_cmd NAME PORT: sets CMD (one loop / worker thread)
    case $1 in
    herd) CMD=("$HERD_FRAME_BIN" --port "$2" --loops 1 --pool-threads 1) ;;
    tokio) CMD=("$TOKIO_BIN" --port "$2" --threads 1) ;;
    *) die "unknown server $1" ;;
    esac
}

msg_id_of() { # PATH -> message id
    case $1 in
    inline) echo 1 ;;
    pool) echo 2 ;;
    *) die "unknown path $1 (inline or pool)" ;;
    esac
}

# --- measured runs -------------------------------------------------------------------------

# run_one SCENARIO SERVER ROUND: appends "scenario server round ok req/s cpu_us/req p50 p99"
# or "scenario server round FAILED why" to RESULTS.
run_one() {
    local scen=$1 name=$2 round=$3
    local path depth conns size rest
    IFS=: read -r path depth conns size rest <<<"$scen"
    bench_run "$scen" "$name" "$round" req frame --msg-id "$(msg_id_of "$path")" \
        --connections "$conns" --size "$size" --depth "$depth"
}

print_table() { # print_table SCENARIO
    local scen=$1 path depth conns size
    IFS=: read -r path depth conns size <<<"$scen"
    printf '\n== %s path, depth %s, %s conns x %s B payload (%s s after %s s warmup, median of %s) ==\n' \
        "$path" "$depth" "$conns" "$size" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -v depth="$depth" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; m[$2] = m[$2] " " $5; c[$2] = c[$2] " " $6; p5[$2] = p5[$2] " " $7; p9[$2] = p9[$2] " " $8; rm[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            printf "%-7s %-12s %12s %12s %10s %10s\n", "server", "runs ok", "req/s", "CPU us/req", "p50 us", "p99 us"
            split("herd tokio", s, " ")
            for (i = 1; i <= 2; i++) {
                k = s[i]
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-7s %-12s %12s\n", k, status, "FAILED"; continue }
                mm[k] = median(m[k]); mc[k] = median(c[k])
                printf "%-7s %-12s %12.0f %12.3f %10.1f %10.1f\n", k, status, mm[k], mc[k], median(p5[k]), median(p9[k])
            }
            if (mm["tokio"] > 0 && mc["tokio"] > 0 && mm["herd"] != "") {
                tr = mm["herd"] / mm["tokio"]; cr = mc["herd"] / mc["tokio"]
                target = (depth + 0 >= 16) ? 0.5 : 0.9
                printf "herd/tokio: throughput %.2fx (target >= 1.00: %s), CPU/request %.2fx (target <= %.2f: %s)\n",
                    tr, (tr >= 1.0 ? "met" : "MISSED"), cr, target, (cr <= target ? "met" : "MISSED")
            } else {
                print "herd/tokio: - (a server has no successful run)"
            }
            printf "per-round ratios, median [range]: throughput %s, CPU/request %s\n", paired("herd", "tokio", rm, 1), paired("herd", "tokio", rc, 1)
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
say "per-run results: scenario server round status req/s cpu_us/req p50 p99"
cat "$RESULTS" >&2

echo "herd frame benchmark: server on CPU $SERVER_CPU (one loop / worker thread; herd pool: one thread), herd-bench on CPU $CLIENT_CPU"
echo "herd = $HERD_FRAME_BIN; tokio = $TOKIO_BIN"
echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

# --- syscalls per request ------------------------------------------------------------------

if [ "$SYSCALLS" = 1 ]; then
    printf '\n== syscalls per request (strace -c -f, %s s per run) ==\n' "$SYSCALL_DURATION"
    printf '%-24s %-7s %10s %10s %8s  %s\n' scenario server requests syscalls per-req "top syscalls per request"
    for scen in $SYSCALL_SCENARIOS; do
        IFS=: read -r path depth conns size <<<"$scen"
        for name in "${SERVERS[@]}"; do
            trace=$WORK/strace.$name.$path.$depth.txt
            out=$WORK/strace.$name.$path.$depth.json
            if ! start_server "$name" strace -f -c -o "$trace" --; then
                stop_pid "$SERVER_PID"
                printf '%-24s %-7s %10s\n' "$scen" "$name" FAILED
                FAILURES=$((FAILURES + 1))
                continue
            fi
            STRACE_CHILD=$(cat "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null)
            timeout $((SYSCALL_DURATION + 60)) taskset -c "$CLIENT_CPU" "$BENCH" frame \
                --addr "127.0.0.1:$PORT" --msg-id "$(msg_id_of "$path")" --connections "$conns" \
                --size "$size" --depth "$depth" --duration "${SYSCALL_DURATION}s" --warmup 0s \
                --threads 1 --json >"$out" 2>"$out.err"
            rc=$?
            for c in $STRACE_CHILD; do kill -TERM "$c" 2>/dev/null; done
            stop_pid "$SERVER_PID"
            STRACE_CHILD=""
            total=$(json_get "$out" messages_total)
            if [ "$rc" != 0 ] || [ -z "$total" ] || [ ! -s "$trace" ]; then
                printf '%-24s %-7s %10s  (herd-bench exit %s)\n' "$scen" "$name" FAILED "$rc"
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
                    printf "%-24s %-7s %10d %10d %8.3f  %s\n", scen, name, msgs, total, total / msgs, top
                }' "$trace"
        done
    done
fi

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
