#!/usr/bin/env bash
# bench/callgrind.sh: user-space instructions per operation (callgrind Ir) of herd and its peers,
# the machine-independent figure that guards the hot path. Throughput and CPU time on this
# shared 2-core machine move by several percent between runs; instruction counts do not.
#
# Scenarios:
#   echo  herd's echo example vs the hand-written mio loop (`mio-echo`): herd-bench echo,
#         CONNS connections x SIZE bytes, depth 1, one client thread; Ir per echoed message.
#   http  herd's hello example vs `hyper-hello` (hyper 1.x): wrk -t1 -cHTTP_CONNS `GET /hello`;
#         Ir per request. The servers get the same command lines as in http.sh and echo.sh
#         (one loop/thread, hello and hyper with --root of a directory).
#   layers the cost of middleware around a route: herd's hello example with `--layer none`
#         (the bare route), `from_fn` (a pass-through herd middleware), `tower` (a pass-through
#         tower layer through Router::tower_layer) and `unused` (extractor, herd-middleware and
#         tower routes registered beside a bare /hello), plus, with MAIN_HELLO_BIN, another
#         build of the hello example (e.g. the main branch's, to show that the machinery
#         present but unused costs nothing). The load is a fixed number of `GET /hello`
#         requests on one keep-alive connection (curl, one URL glob), LAYERS_SMALL_N and
#         LAYERS_BIG_N requests for the two runs of the slope below; Ir per request, and each
#         mode's difference from `none`.
#
# Method: each server runs under `valgrind --tool=callgrind`, pinned to SERVER_CPU, with the
# load generator pinned to CLIENT_CPU; it is stopped by its PID with SIGTERM (valgrind then
# writes callgrind.out before the process dies) and the run's total Ir is read from the file.
# Start-up is removed by the slope of two loads: every server runs once for SMALL_S seconds
# and once for BIG_S seconds of load, each on a fresh process, and
#     Ir/op = (Ir_big - Ir_small) / (ops_big - ops_small)
# so everything both runs share (valgrind and the program starting, the connects and closes
# of the CONNS connections, the probe connection of start_server, exit) cancels out. The
# table also shows Ir_big / ops_big, start-up included, for comparison.
#
# The echo and http loads are time-bounded, not counted: neither herd-bench nor wrk has a fixed-count mode,
# so ops is what the client counted as completed (herd-bench's messages_total, every verified
# echo; wrk's "N requests in"). What that misses is at most one message or request in flight
# per connection when the client stops, in both runs alike: under 0.1% of the ops difference
# at the defaults. Under callgrind the server is the bottleneck by far (tens of times slower
# than natively), so each epoll_wait returns a full batch of ready connections and the counts
# do not depend on the client's speed; a neighbour stealing CLIENT_CPU could shrink the batches.
#
# Callgrind counts every instruction the server process executes in user space (all its
# threads, libc and the dynamic loader included), none in the kernel. The binaries are the
# benches' release builds (both Cargo workspaces build release with debug = 1, so
# KEEP_LOGS=1 leaves callgrind.out files that `callgrind_annotate` can attribute to source
# lines). glibc picks memcpy and friends by CPU features, so compare figures from machines of
# the same CPU type; the header line prints the model.
#
# Environment (defaults in brackets):
#   SMALL_S [1] BIG_S [5]  seconds of load of the two runs per server (integers, BIG_S > SMALL_S)
#   REPEATS [2]            rounds; the table shows the median and the range over them
#   SCENARIOS ["echo http"]  (or layers)
#   LAYERS_SMALL_N [2000] LAYERS_BIG_N [10000]  requests of the two layers runs
#   MAIN_HELLO_BIN  layers: also measure this hello build (started `BIN --port P --loops 1`)
#   CONNS [100] SIZE [64]  echo connections and payload bytes     HTTP_CONNS [CONNS]
#   HERD_ECHO_BIN, HERD_HTTP_BIN  measure these binaries as "herd" instead of building the
#                  examples (started like the examples: `BIN --port P --loops 1 [--root DIR]`),
#                  e.g. an older commit's build for a before/after comparison
#   PORT_BASE [19500]  SERVER_CPU [0] CLIENT_CPU [1]
#   KEEP_LOGS [0]  1 keeps the work directory, with each run's callgrind output (*.cg)
#
# Only 127.0.0.1 is used. Every client run is bounded by `timeout`; every server this script
# started is stopped by its PID (lib.sh). Installs valgrind and wrk through apt when missing.
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMALL_S=${SMALL_S:-1}
BIG_S=${BIG_S:-5}
REPEATS=${REPEATS:-2}
SCENARIOS=${SCENARIOS-"echo http"}
CONNS=${CONNS:-100}
SIZE=${SIZE:-64}
HTTP_CONNS=${HTTP_CONNS:-$CONNS}
HERD_ECHO_BIN=${HERD_ECHO_BIN:-}
HERD_HTTP_BIN=${HERD_HTTP_BIN:-}
PORT_BASE=${PORT_BASE:-19500}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
LAYERS_SMALL_N=${LAYERS_SMALL_N:-2000}
LAYERS_BIG_N=${LAYERS_BIG_N:-10000}
MAIN_HELLO_BIN=${MAIN_HELLO_BIN:-}
LAYER_MODES=(none from_fn tower unused)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init callgrind

case "$SMALL_S$BIG_S" in *[!0-9]*) die "SMALL_S and BIG_S must be whole seconds" ;; esac
[ "$BIG_S" -gt "$SMALL_S" ] || die "BIG_S ($BIG_S) must be more than SMALL_S ($SMALL_S)"
want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

# --- tools and build -----------------------------------------------------------------------

need valgrind valgrind
want http && need wrk wrk
want layers && need curl curl
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH=$ROOT_TARGET/release/herd-bench
MIO_BIN=$PEERS_TARGET/release/mio-echo
HYPER_BIN=$PEERS_TARGET/release/hyper-hello
if want echo; then
    build_release "$ROOT" "herd-bench" -p herd-bench
    if [ -z "$HERD_ECHO_BIN" ]; then
        build_release "$ROOT" "herd's echo example" --example echo
        HERD_ECHO_BIN=$ROOT_TARGET/release/examples/echo
    fi
    build_release "$ROOT/bench/peers" "mio-echo" --bin mio-echo
    for b in "$BENCH" "$HERD_ECHO_BIN" "$MIO_BIN"; do [ -x "$b" ] || die "missing binary $b"; done
fi
if want http || want layers; then
    if [ -z "$HERD_HTTP_BIN" ]; then
        build_release "$ROOT" "herd's hello example" --example hello
        HERD_HTTP_BIN=$ROOT_TARGET/release/examples/hello
    fi
fi
if want http; then
    build_release "$ROOT/bench/peers" "hyper-hello" --bin hyper-hello
    for b in "$HERD_HTTP_BIN" "$HYPER_BIN"; do [ -x "$b" ] || die "missing binary $b"; done
fi
if want layers; then
    [ -x "$HERD_HTTP_BIN" ] || die "missing binary $HERD_HTTP_BIN"
    [ -z "$MAIN_HELLO_BIN" ] || [ -x "$MAIN_HELLO_BIN" ] || die "missing binary $MAIN_HELLO_BIN"
    case "$LAYERS_SMALL_N$LAYERS_BIG_N" in *[!0-9]*) die "LAYERS_SMALL_N and LAYERS_BIG_N must be whole numbers" ;; esac
    [ "$LAYERS_BIG_N" -gt "$LAYERS_SMALL_N" ] || die "LAYERS_BIG_N must be more than LAYERS_SMALL_N"
fi
SITE=$WORK/site
mkdir -p "$SITE"

# server_cmd NAME PORT: sets CMD (one loop/thread, as in echo.sh and http.sh).
server_cmd() {
    case $1 in
    herd-echo) CMD=("$HERD_ECHO_BIN" --port "$2" --loops 1) ;;
    mio) CMD=("$MIO_BIN" --port "$2" --threads 1) ;;
    herd-http) CMD=("$HERD_HTTP_BIN" --port "$2" --loops 1 --root "$SITE") ;;
    hyper) CMD=("$HYPER_BIN" --port "$2" --threads 1 --root "$SITE") ;;
    layer-*) CMD=("$HERD_HTTP_BIN" --port "$2" --loops 1 --layer "${1#layer-}") ;;
    main) CMD=("$MAIN_HELLO_BIN" --port "$2" --loops 1) ;;
    *) die "unknown server $1" ;;
    esac
}

# --- runs ----------------------------------------------------------------------------------

# load_run SCENARIO SERVER AMOUNT: a fresh SERVER under callgrind, the scenario's load (AMOUNT
# seconds, or for layers AMOUNT requests), then SIGTERM. Sets OPS (operations the client completed) and IR (the process's total
# Ir), or WHY and returns 1.
load_run() {
    local scen=$1 name=$2 secs=$3 rc alive=1 base
    base=$WORK/$scen.$name.${secs}s.$RANDOM
    OPS="" IR="" WHY=""
    if ! start_server "$name" valgrind --tool=callgrind --callgrind-out-file="$base.cg"; then
        stop_pid "$SERVER_PID"
        WHY="server did not start under callgrind"
        return 1
    fi
    case $scen in
    echo)
        timeout $((secs + 60)) taskset -c "$CLIENT_CPU" "$BENCH" echo --addr "127.0.0.1:$PORT" \
            --connections "$CONNS" --size "$SIZE" --depth 1 --duration "${secs}s" --warmup 0s \
            --threads 1 --json >"$base.json" 2>"$base.err"
        rc=$?
        OPS=$(json_get "$base.json" messages_total)
        ;;
    http)
        timeout $((secs + 60)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$HTTP_CONNS" -d"${secs}s" \
            "http://127.0.0.1:$PORT/hello" >"$base.wrk" 2>&1
        rc=$?
        OPS=$(awk '/requests in/ { print $1; exit }' "$base.wrk")
        if grep -q -e 'Non-2xx' -e 'Socket errors' "$base.wrk"; then
            WHY="wrk: $(grep -e 'Non-2xx' -e 'Socket errors' "$base.wrk" | tr -s ' \n' ' ')"
        fi
        ;;
    layers)
        # One connection, kept alive: curl reuses it for every URL of the glob (the query
        # string only makes the URLs differ; the route ignores it). Per transfer: the status
        # and how many connections that transfer opened (1 for the first, then 0).
        timeout $((secs / 20 + 120)) taskset -c "$CLIENT_CPU" curl -s -o /dev/null \
            -w '%{http_code} %{num_connects}\n' "http://127.0.0.1:$PORT/hello?[1-$secs]" \
            >"$base.curl" 2>"$base.err"
        rc=$?
        OPS=$(awk '$1 == 200 { n++ } END { print n + 0 }' "$base.curl")
        local conns
        conns=$(awk '{ c += $2 } END { print c + 0 }' "$base.curl")
        if [ "$OPS" != "$secs" ]; then
            WHY="curl: $OPS of $secs requests answered 200"
        elif [ "$conns" != 1 ]; then
            WHY="curl opened $conns connections, not one kept alive"
        fi
        ;;
    esac
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_pid "$SERVER_PID" # SIGTERM: valgrind writes callgrind.out, then the process dies
    IR=$(awk '$1 == "summary:" || $1 == "totals:" { print $2; exit }' "$base.cg" 2>/dev/null)
    if [ "$alive" = 0 ]; then
        WHY="server died during the load"
    elif [ "$rc" = 124 ]; then
        WHY="client timed out"
    elif [ "$rc" != 0 ]; then
        WHY="client exit $rc: $(tail -n 1 "$base.err" "$base.wrk" 2>/dev/null | tr '\n' ' ')"
    elif [ -n "$WHY" ]; then
        :
    elif [ -z "$OPS" ] || [ "$OPS" = 0 ]; then
        WHY="no operations counted"
    elif [ -z "$IR" ]; then
        WHY="no callgrind total in $base.cg"
    fi
    [ -z "$WHY" ]
}

# measure SCENARIO SERVER ROUND: the two loads and the slope; appends to RESULTS
#   scenario server round ok ir_per_op whole_run_ir_per_op ops_small ops_big ir_small ir_big
measure() {
    local scen=$1 name=$2 round=$3 ops_s ir_s small=$SMALL_S big=$BIG_S unit=" s"
    [ "$scen" = layers ] && small=$LAYERS_SMALL_N big=$LAYERS_BIG_N unit=" requests"
    if ! load_run "$scen" "$name" "$small"; then
        record_failure "$scen" "$name" "$round" "${small}$unit load: $WHY"
        return
    fi
    ops_s=$OPS ir_s=$IR
    if ! load_run "$scen" "$name" "$big"; then
        record_failure "$scen" "$name" "$round" "${big}$unit load: $WHY"
        return
    fi
    if [ "$OPS" -le "$ops_s" ]; then
        record_failure "$scen" "$name" "$round" "the ${big}$unit load did no more ops ($OPS) than the ${small}$unit one ($ops_s)"
        return
    fi
    awk -v s="$scen" -v n="$name" -v r="$round" -v os="$ops_s" -v ob="$OPS" -v is="$ir_s" -v ib="$IR" \
        'BEGIN { printf "%s %s %s ok %.1f %.1f %d %d %d %d\n", s, n, r, (ib - is) / (ob - os), ib / ob, os, ob, is, ib }' \
        >>"$RESULTS"
    say "  round $round $name: $(tail -n 1 "$RESULTS" | awk '{ printf "%s Ir/op (%s incl. start-up; ops %s and %s)", $5, $6, $7, $8 }')"
}

# print_table SCENARIO HERD PEER TITLE
print_table() {
    printf '\n== %s ==\n' "$4"
    awk -v scen="$1" -v servers="$2 $3" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; v[$2] = v[$2] " " $5; w[$2] = w[$2] " " $6; o[$2] = o[$2] " " $8; per[$2, $3] = $5; rounds[$3] = 1
                              if (!($2 in lo) || $5 < lo[$2]) lo[$2] = $5; if (!($2 in hi) || $5 > hi[$2]) hi[$2] = $5 }
        }
        END {
            split(servers, s, " ")
            printf "%-10s %-10s %-8s %10s %-24s %14s %10s\n", "scenario", "server", "runs ok", "Ir/op", " range (spread)", "incl. start-up", "ops (big)"
            for (i = 1; i <= 2; i++) {
                k = s[i]; m[k] = median(v[k])
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (!ok[k]) { printf "%-10s %-10s %-8s %10s\n", scen, k, status, "FAILED"; continue }
                range = sprintf(" %.1f-%.1f (%.2f%%)", lo[k], hi[k], 100 * (hi[k] - lo[k]) / lo[k])
                printf "%-10s %-10s %-8s %10.1f %-24s %14.1f %10d\n", scen, k, status, m[k], range, median(w[k]), median(o[k])
            }
            la = s[1]; lb = s[2]; sub(/-.*/, "", la); sub(/-.*/, "", lb)
            printf "%s/%s: Ir/op %s (per-round ratios: %s)\n", la, lb, ratio(m[s[1]], m[s[2]]), paired(s[1], s[2], per, 1)
        }'
}

# print_layers: the layers scenario's table, every mode (and main) beside `none`.
print_layers() {
    printf '\n== layers: GET /hello x %s requests on one keep-alive connection (curl), slope of %s and %s; Ir per request ==\n' \
        "$((LAYERS_BIG_N - LAYERS_SMALL_N))" "$LAYERS_SMALL_N" "$LAYERS_BIG_N"
    awk -v servers="${PAIR[*]}" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == "layers" {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; v[$2] = v[$2] " " $5; w[$2] = w[$2] " " $6
                              if (!($2 in lo) || $5 < lo[$2]) lo[$2] = $5; if (!($2 in hi) || $5 > hi[$2]) hi[$2] = $5 }
        }
        END {
            n = split(servers, s, " ")
            printf "%-14s %-8s %10s %-24s %14s %12s\n", "server", "runs ok", "Ir/req", " range (spread)", "incl. start-up", "vs none"
            base = ok["layer-none"] ? median(v["layer-none"]) : 0
            for (i = 1; i <= n; i++) {
                k = s[i]
                status = sprintf("%d/%d", ok[k], runs[k])
                if (!ok[k]) { printf "%-14s %-8s %10s\n", k, status, "FAILED"; continue }
                m = median(v[k])
                range = sprintf(" %.1f-%.1f (%.2f%%)", lo[k], hi[k], 100 * (hi[k] - lo[k]) / lo[k])
                d = base ? sprintf("%+.1f (%+.2f%%)", m - base, 100 * (m - base) / base) : "-"
                printf "%-14s %-8s %10.1f %-24s %14.1f %12s\n", k, status, m, range, median(w[k]), d
            }
        }'
}

for scen in $SCENARIOS; do
    case $scen in
    echo) PAIR=(herd-echo mio) ;;
    http) PAIR=(herd-http hyper) ;;
    layers)
        PAIR=()
        for m in "${LAYER_MODES[@]}"; do PAIR+=("layer-$m"); done
        [ -n "$MAIN_HELLO_BIN" ] && PAIR+=(main)
        LAYERS_PAIR=("${PAIR[@]}")
        ;;
    *) die "unknown scenario $scen (echo, http, layers)" ;;
    esac
    if [ "$scen" = layers ]; then
        say "scenario $scen: ${LAYERS_SMALL_N} and ${LAYERS_BIG_N} requests per server, $REPEATS round(s)"
    else
        say "scenario $scen: ${SMALL_S} s and ${BIG_S} s loads per server, $REPEATS round(s)"
    fi
    for round in $(seq 1 "$REPEATS"); do
        for i in $(round_order "${#PAIR[@]}" "$round"); do
            measure "$scen" "${PAIR[$i]}" "$round"
        done
    done
done

say ""
say "per-run results: scenario server round status Ir/op Ir/op-incl-start-up ops_small ops_big Ir_small Ir_big"
cat "$RESULTS" >&2

if [ "$SCENARIOS" = layers ]; then
    echo "herd callgrind: user-space instructions per request, slope of ${LAYERS_SMALL_N} and ${LAYERS_BIG_N} requests"
else
    echo "herd callgrind: user-space instructions per operation, slope of a ${SMALL_S} s and a ${BIG_S} s load"
fi
echo "(server under $(valgrind --version) on CPU $SERVER_CPU, client on CPU $CLIENT_CPU, one loop/thread;" \
    "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
want echo && echo "herd = $HERD_ECHO_BIN, mio = $MIO_BIN"
want http && echo "herd = $HERD_HTTP_BIN, hyper = $HYPER_BIN"
want layers && echo "layer-MODE = $HERD_HTTP_BIN --layer MODE${MAIN_HELLO_BIN:+, main = $MAIN_HELLO_BIN}"
want echo && print_table echo herd-echo mio \
    "echo: $SIZE B x $CONNS connections, depth 1 (herd-bench); Ir per echoed message"
want http && print_table http herd-http hyper \
    "http: GET /hello x $HTTP_CONNS connections (wrk -t1); Ir per request"
want layers && PAIR=("${LAYERS_PAIR[@]}") && print_layers

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
