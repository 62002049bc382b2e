#!/usr/bin/env bash
# bench/json.sh: a JSON route, herd against axum 0.8 on hyper, with wrk, on loopback.
#
# Both servers answer `POST /api/echo`: parse the small JSON body (a 3-field object, about 60
# bytes) into a serde_json::Value with their framework's Json extractor and answer it as JSON.
# herd = the `json_api` example (examples/json_api.rs, its echo route, on the extractor layer),
# axum = the `axum-json` peer (bench/peers). wrk sends the POST through a lua script. For each
# round (REPEATS, balanced order) it starts each server pinned to SERVER_CPU with one
# loop/thread, runs an unmeasured warm-up, then `wrk -t1 -cCONNS -dD --latency -s post.lua`
# pinned to CLIENT_CPU, samples the server's utime+stime from /proc/PID/stat around the
# measured run, and prints per server the median requests/s, server CPU us per request and p99,
# and the herd/axum ratios. The issue's target: herd CPU/request at most 0.8x axum's. A failed
# run (no start, died, wrk error, non-2xx, socket errors) is printed as failed and counted.
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured wrk seconds before it
#   REPEATS [3]  rounds                       CONNS [100] wrk connections
#   SERVERS ["herd axum"]                     PORT_BASE [19700] first port tried
#   SERVER_CPU [0] CLIENT_CPU [1]             KEEP_LOGS [0] keep the work directory
#   HERD_JSON_BIN  use this binary as "herd" instead of building the json_api example
#
# Only 127.0.0.1 is used. Every wrk run is bounded by `timeout`; every server this script
# started is stopped by its PID (lib.sh). Installs wrk through apt when missing.
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-100}
SCENARIOS="json:$CONNS"
read -r -a SERVERS <<<"${SERVERS:-herd axum}"
PORT_BASE=${PORT_BASE:-19700}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
HERD_JSON_BIN=${HERD_JSON_BIN:-}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init json

# --- tools ---------------------------------------------------------------------------------

need wrk wrk
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "fd limit $(ulimit -n), clock ticks/s $CLK_TCK, work dir $WORK"

# --- build and files -----------------------------------------------------------------------

if [ -z "$HERD_JSON_BIN" ]; then
    build_release "$ROOT" "herd's json_api example" --example json_api
    HERD_JSON_BIN=$ROOT_TARGET/release/examples/json_api
fi
build_release "$ROOT/bench/peers" "the axum peer" --bin axum-json
AXUM_BIN=$PEERS_TARGET/release/axum-json
for b in "$HERD_JSON_BIN" "$AXUM_BIN"; do
    [ -x "$b" ] || die "missing binary $b"
done

LUA=$WORK/post.lua
cat >"$LUA" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"buy milk","done":false,"tags":["home","today"]}'
wrk.headers["Content-Type"] = "application/json"
LUA
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- servers -------------------------------------------------------------------------------

server_cmd() { # server_cmd NAME PORT: sets CMD (one loop/thread)
    case $1 in
    herd) CMD=("$HERD_JSON_BIN" --port "$2" --loops 1) ;;
    axum) CMD=("$AXUM_BIN" --port "$2" --threads 1) ;;
    *) die "unknown server $1" ;;
    esac
}

# start_server NAME: on a fresh port pinned to SERVER_CPU; sets SERVER_PID and PORT; waits up
# to 10 s for the port to accept. Returns 1 if it never does.

scenario_path() { echo /api/echo; }

# --- runs ----------------------------------------------------------------------------------

# run_one SCENARIO SERVER ROUND: one measured run; appends to RESULTS
#   scenario server round ok req/s cpu_us/req p99_us     or     scenario server round FAILED why
run_one() {
    local scen=$1 name=$2 round=$3
    local kind=${scen%%:*} conns=${scen##*:}
    local url out t0 t1 rc why=""
    out=$WORK/wrk.$kind.$conns.$name.$round.txt
    if ! start_server "$name"; then
        stop_pid "$SERVER_PID"
        record_failure "$scen" "$name" "$round" "server did not start"
        return
    fi
    url="http://127.0.0.1:$PORT$(scenario_path "$kind")"
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${WARMUP}s" -s "$LUA" "$url" \
            >/dev/null 2>&1
    fi
    t0=$(cpu_ticks "$SERVER_PID")
    timeout $((DURATION + 60)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" \
        --latency -s "$LUA" "$url" >"$out" 2>&1
    rc=$?
    t1=$(cpu_ticks "$SERVER_PID")
    local alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_pid "$SERVER_PID"
    local total rps p99 non2xx sockerr
    total=$(awk '/requests in/ { print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
    p99=$(awk '/^ +99%/ { print $2; exit }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF; exit }' "$out")
    sockerr=$(awk '/Socket errors:/ { print; exit }' "$out")
    if [ "$alive" = 0 ] || [ -z "$t1" ]; then
        why="server died during the run"
    elif [ "$rc" = 124 ]; then
        why="wrk timed out"
    elif [ "$rc" != 0 ]; then
        why="wrk exit $rc: $(tail -n 1 "$out")"
    elif [ -z "$total" ] || [ -z "$rps" ] || [ -z "$p99" ]; then
        why="no wrk report"
    elif [ -n "$non2xx" ]; then
        why="$non2xx non-2xx responses"
    elif [ -n "$sockerr" ]; then
        why="$sockerr"
    fi
    if [ -n "$why" ]; then
        record_failure "$scen" "$name" "$round" "$why"
        return
    fi
    local cpu_us p99_us
    cpu_us=$(cpu_us_per_op "$t0" "$t1" "$total")
    p99_us=$(to_us "$p99")
    echo "$scen $name $round ok $rps $cpu_us $p99_us" >>"$RESULTS"
    say "  round $round $name: $rps req/s, server ${cpu_us} us CPU/req, p99 ${p99_us} us"
}

print_table() { # print_table SCENARIO
    local scen=$1
    printf '\n== %s: %s connections (wrk -t1, %s s after %s s warm-up, median of %s) ==\n' \
        "${scen%%:*}" "${scen##*:}" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -v servers="${SERVERS[*]}" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; r[$2] = r[$2] " " $5; c[$2] = c[$2] " " $6; p[$2] = p[$2] " " $7; rr[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            ns = split(servers, s, " ")
            printf "%-7s %-12s %12s %12s %12s\n", "server", "runs ok", "req/s", "CPU us/req", "p99 us"
            for (i = 1; i <= ns; i++) {
                k = s[i]
                mr[k] = median(r[k]); mc[k] = median(c[k]); mp[k] = median(p[k])
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-7s %-12s %12s\n", k, status, "FAILED"; continue }
                printf "%-7s %-12s %12.0f %12.3f %12.1f\n", k, status, mr[k], mc[k], mp[k]
            }
            printf "herd/axum: req/s %s, CPU/req %s (target <= 0.80x), p99 %s\n",
                ratio(mr["herd"], mr["axum"]), ratio(mc["herd"], mc["axum"]), ratio(mp["herd"], mp["axum"])
            printf "per-round ratios, median [range]: req/s %s, CPU/req %s\n", paired("herd", "axum", rr, 1), paired("herd", "axum", rc, 1)
        }'
}

for scen in $SCENARIOS; do
    say "scenario: ${scen%%:*} x ${scen##*:} connections"
    for round in $(seq 1 "$REPEATS"); do
        for i in $(round_order ${#SERVERS[@]} "$round"); do
            run_one "$scen" "${SERVERS[$i]}" "$round"
        done
    done
done

say ""
say "per-run results (also failures): scenario server round status req/s cpu_us/req p99_us"
cat "$RESULTS" >&2

echo "herd JSON benchmark (POST /api/echo): server on CPU $SERVER_CPU, wrk -t1 on CPU $CLIENT_CPU, one loop/thread each"
echo "herd = $HERD_JSON_BIN, axum = $AXUM_BIN"
echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
