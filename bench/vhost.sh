#!/usr/bin/env bash
# bench/vhost.sh: what virtual hosts cost: the `herd` server with 1 `[[listener.server]]` block
# against the same server behind 9 decoy blocks (10 in all), with wrk, on loopback.
#
# Both configurations serve the same target server: names `site.test` and `*.wild.test`, a
# root with a 13-byte `hello.txt`, and four locations (`= /health`, `^~ /static/`, a `~*`
# image regex and `/`), so every request is a host pick, a location find (the regex tried and
# missed, then `/`) and a static file. The 10-block configuration puts 9 decoys (`dN.test`,
# `*.decoyN.test`, the same locations) before it; their wildcard names are longer, so a
# wildcard host scans all of them first. Scenarios (name:connections): exact:100 (Host:
# site.test, one hash probe) and wild:100 (Host: a.wild.test, a miss then the wildcard scan).
# Interleaved over REPEATS rounds (round_order), each run starts herd (master, one worker with
# one loop) pinned to SERVER_CPU, runs an unmeasured warm-up, then `wrk -t1 -cN -dD --latency`
# pinned to CLIENT_CPU, and samples utime+stime of master and worker around the measured run.
# Prints per scenario the median requests/s, server CPU us per request and p99, and the
# ten/one ratios (of the medians, and the median of the per-round ratios). The machine is
# shared: ratios within a few percent of 1.00 are noise; compare CPU/req first. For the
# machine-independent figure, run the ignored unit benches under callgrind (printed at the end
# with CALLGRIND=1):
#   valgrind --tool=callgrind --toggle-collect='*bench_loop*' HERD_SERVER_TEST_BINARY \
#       --ignored --exact vhost::tests::bench_pick_find_10
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured wrk seconds before it
#   REPEATS [4]  rounds                       SCENARIOS ["exact:100 wild:100"]
#   SERVERS ["one ten"]                       PORT_BASE [19900] first port tried
#   SERVER_CPU [0] CLIENT_CPU [1]             KEEP_LOGS [0] keep the work directory
#   CALLGRIND [0] also build the herd-server unit tests (release) and count instructions per
#                 pick+find for 1 and 10 blocks with valgrind (installed through apt if missing)
#
# Only 127.0.0.1 is used. Every wrk run is bounded by `timeout`; every process this script
# started is stopped by its PID on exit. Installs wrk and curl through apt when missing.
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-4}
SCENARIOS=${SCENARIOS-"exact:100 wild:100"}
read -r -a SERVERS <<<"${SERVERS:-one ten}"
PORT_BASE=${PORT_BASE:-19900}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
CALLGRIND=${CALLGRIND:-0}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init vhost

need wrk wrk
need curl curl
need pgrep procps
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "work dir $WORK"

build_release "$ROOT" "herd" --bin herd
HERD_BIN=$ROOT_TARGET/release/herd
[ -x "$HERD_BIN" ] || die "missing binary $HERD_BIN"

SITE=$WORK/site
mkdir -p "$SITE/static"
printf 'hello, world\n' >"$SITE/hello.txt"

# server_block NAMES: one [[listener.server]] with the four locations.
server_block() {
    cat <<EOF
[[listener.server]]
server_name = [$1]
root = "$SITE"

[[listener.server.location]]
path = "= /health"
return = { status = 200, url = "ok" }

[[listener.server.location]]
path = "^~ /static/"
expires = "1h"

[[listener.server.location]]
path = "~* \\\\.(png|jpe?g|css)\$"
expires = "1d"

[[listener.server.location]]
path = "/"

EOF
}

server_cmd() { # server_cmd NAME PORT: sets CMD (one worker, one loop)
    local dir=$WORK/$1.$2 i
    mkdir -p "$dir"
    {
        cat <<EOF
workers = 1
loops = 1
pid_file = "$dir/herd.pid"
[log]
file = "$dir/error.log"
level = "error"
[[listener]]
bind = "127.0.0.1:$2"
protocol = "http"
EOF
        case $1 in
        one) ;;
        ten) for i in $(seq 1 9); do server_block "\"d$i.test\", \"*.decoy$i.test\""; done ;;
        *) die "unknown server $1" ;;
        esac
        server_block '"site.test", "*.wild.test"'
    } >"$dir/herd.toml"
    CMD=("$HERD_BIN" -c "$dir/herd.toml")
}

host_of() { # host_of SCENARIO-KIND
    case $1 in
    exact) echo site.test ;;
    wild) echo a.wild.test ;;
    *) die "unknown scenario $1" ;;
    esac
}

# wait_workers PID HOST: until the master has a worker that answers.
wait_workers() {
    for _ in $(seq 1 100); do
        [ -n "$(pgrep -P "$1")" ] &&
            [ "$(curl -sf --max-time 2 -H "Host: $2" "http://127.0.0.1:$PORT/hello.txt")" = "hello, world" ] &&
            return 0
        sleep 0.05
    done
    return 1
}

# run_one SCENARIO SERVER ROUND: one measured run; appends to RESULTS
run_one() {
    local scen=$1 name=$2 round=$3
    local kind=${scen%%:*} conns=${scen##*:}
    local host url out t0 t1 rc why=""
    host=$(host_of "$kind")
    out=$WORK/wrk.$kind.$conns.$name.$round.txt
    if ! start_server "$name" || ! wait_workers "$SERVER_PID" "$host"; then
        stop_pid "$SERVER_PID"
        record_failure "$scen" "$name" "$round" "server did not start"
        return
    fi
    url="http://127.0.0.1:$PORT/hello.txt"
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${WARMUP}s" \
            -H "Host: $host" "$url" >/dev/null 2>&1
    fi
    t0=$(tree_ticks "$SERVER_PID")
    timeout $((DURATION + 60)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" \
        --latency -H "Host: $host" "$url" >"$out" 2>&1
    rc=$?
    t1=$(tree_ticks "$SERVER_PID")
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
    printf '\n== %s: keep-alive GET /hello.txt, Host %s, %s connections (wrk -t1, %s s after %s s warm-up, median of %s) ==\n' \
        "${scen%%:*}" "$(host_of "${scen%%:*}")" "${scen##*:}" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -v servers="${SERVERS[*]}" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; r[$2] = r[$2] " " $5; c[$2] = c[$2] " " $6; p[$2] = p[$2] " " $7; rr[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            ns = split(servers, s, " ")
            printf "%-7s %-12s %12s %12s %12s\n", "blocks", "runs ok", "req/s", "CPU us/req", "p99 us"
            for (i = 1; i <= ns; i++) {
                k = s[i]
                mr[k] = median(r[k]); mc[k] = median(c[k]); mp[k] = median(p[k])
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-7s %-12s %12s\n", k, status, "FAILED"; continue }
                printf "%-7s %-12s %12.0f %12.3f %12.1f\n", k, status, mr[k], mc[k], mp[k]
            }
            printf "ten/one: req/s %s, CPU/req %s, p99 %s\n",
                ratio(mr["ten"], mr["one"]), ratio(mc["ten"], mc["one"]), ratio(mp["ten"], mp["one"])
            printf "per-round ratios, median [range]: req/s %s, CPU/req %s\n", paired("ten", "one", rr, 1), paired("ten", "one", rc, 1)
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
say "per-run results (also failures): scenario blocks round status req/s cpu_us/req p99_us"
cat "$RESULTS" >&2
echo "herd virtual-host benchmark: herd on CPU $SERVER_CPU, wrk -t1 on CPU $CLIENT_CPU, one worker and loop; one = 1 server block, ten = 10"
echo "herd = $HERD_BIN"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

if [ "$CALLGRIND" = 1 ]; then
    need valgrind valgrind
    say "building the herd-server unit tests (release)"
    bin=$(cd "$ROOT" && cargo test --release -q -p herd-server --lib --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -x "$bin" ] || die "no herd-server test binary"
    echo
    echo "== callgrind: instructions per pick+find (3 hosts x 4 paths, HERD_VHOST_BENCH_N rounds) =="
    declare -A IR
    for n in 1 10; do
        ir=()
        for rounds in 1000 2000; do
            out=$WORK/callgrind.$n.$rounds
            HERD_VHOST_BENCH_N=$rounds timeout 300 valgrind --tool=callgrind \
                --toggle-collect='*bench_loop*' --callgrind-out-file="$out" \
                "$bin" --ignored --exact "vhost::tests::bench_pick_find_$n" >/dev/null 2>&1 ||
                die "callgrind run failed ($n blocks)"
            ir+=("$(awk '/^summary:/ { print $2 }' "$out")")
        done
        # The slope between the two runs: what one more round of 12 pick+finds costs.
        IR[$n]=$(awk -v a="${ir[0]}" -v b="${ir[1]}" 'BEGIN { printf "%.1f", (b - a) / (1000 * 12) }')
        printf '%2d block(s): %s Ir per pick+find\n' "$n" "${IR[$n]}"
    done
    awk -v a="${IR[10]}" -v b="${IR[1]}" 'BEGIN { printf "ten/one: %.2fx\n", a / b }'
fi

[ "$FAILURES" = 0 ] || {
    say "$FAILURES run(s) failed"
    exit 1
}
