#!/usr/bin/env bash
# bench/proxy.sh: the herd server's reverse proxy against nginx's `proxy_pass`, with wrk, on
# loopback.
#
# Scenarios (name:connections): hello:100 and hello:1000 (keep-alive `GET /hello` through
# the proxy to an upstream that answers a 13-byte body). The upstream is herd's `hello` example
# (one loop), started once and shared by both proxies, pinned to CLIENT_CPU beside wrk (so the
# proxy has SERVER_CPU to itself and the CPU measured is the proxy's alone). Proxies: the
# `herd` binary (master and one worker with one loop, `proxy = [{ path = "/hello", upstream =
# "app" }]`, an `[[upstream]]` with `keepalive = 32`) and nginx from Debian (master and one
# worker, `location /hello { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header
# Connection ""; }`, `upstream app { server ...; keepalive 32; }`, access log off). Both pass
# the path unchanged, so the upstream must answer /hello (checked at start). Interleaved
# over REPEATS rounds (round_order), each run starts the proxy pinned to SERVER_CPU, runs an
# unmeasured warm-up, then `wrk -t1 -cN -dD --latency` pinned to CLIENT_CPU, and samples
# utime+stime of the proxy's master and workers around the measured run. Prints per scenario
# the median requests/s, proxy CPU us per request and p99, and the herd/nginx ratios. The
# issue's targets: CPU per proxied request at most 0.8x nginx's, p99 at c=1000 not above
# nginx's.
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured wrk seconds before it
#   REPEATS [3]  rounds                       SCENARIOS ["hello:100 hello:1000"]
#   SERVERS ["herd nginx"]                    PORT_BASE [19800] first port tried
#   SERVER_CPU [0] CLIENT_CPU [1]             KEEP_LOGS [0] keep the work directory
#   KEEPALIVE [32] idle upstream connections each proxy keeps (herd `keepalive`, nginx `keepalive`)
#   MAX_CONNS [0]  herd's `max_conns` (0: no limit; requests beyond it queue in herd). nginx
#                  stays uncapped: open-source nginx has `max_conns` but no `queue`, so a cap
#                  there answers the excess with 502 instead of making it wait.
#
# Only 127.0.0.1 is used. Every wrk run is bounded by `timeout`; every process this script
# started is stopped by its PID on exit. Installs wrk, nginx and curl through apt when missing
# (nginx with a policy-rc.d that stops the package from starting its own service).
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS-"hello:100 hello:1000"}
read -r -a SERVERS <<<"${SERVERS:-herd nginx}"
PORT_BASE=${PORT_BASE:-19800}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
KEEPALIVE=${KEEPALIVE:-32}
MAX_CONNS=${MAX_CONNS:-0}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init proxy

# --- tools ---------------------------------------------------------------------------------

need wrk wrk
need curl curl
need pgrep procps
need_nginx
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "work dir $WORK, $($NGINX -v 2>&1)"

# --- build and the upstream ----------------------------------------------------------------

build_release "$ROOT" "herd" --bin herd
build_release "$ROOT" "herd's hello example" --example hello
HERD_BIN=$ROOT_TARGET/release/herd
HELLO_BIN=$ROOT_TARGET/release/examples/hello
for b in "$HERD_BIN" "$HELLO_BIN"; do
    [ -x "$b" ] || die "missing binary $b"
done

# The upstream: one for the whole benchmark, on the client's CPU.
next_port
UP_PORT=$PORT
taskset -c "$CLIENT_CPU" "$HELLO_BIN" --port "$UP_PORT" --loops 1 >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
LIVE[$UP_PID]=1
for _ in $(seq 1 200); do
    port_open "$UP_PORT" && break
    sleep 0.05
done
curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$UP_PORT/hello" ||
    die "the upstream does not answer /hello"
say "upstream: hello example on 127.0.0.1:$UP_PORT (pid $UP_PID)"

# --- servers -------------------------------------------------------------------------------

server_cmd() { # server_cmd NAME PORT: sets CMD (one worker, one loop)
    local dir=$WORK/$1.$2
    mkdir -p "$dir"
    case $1 in
    herd)
        cat >"$dir/herd.toml" <<EOF
workers = 1
loops = 1
pid_file = "$dir/herd.pid"
[log]
file = "$dir/error.log"
level = "error"
[[listener]]
bind = "127.0.0.1:$2"
protocol = "http"
proxy = [{ path = "/hello", upstream = "app" }]
[[upstream]]
name = "app"
servers = ["127.0.0.1:$UP_PORT"]
keepalive = $KEEPALIVE
max_conns = $MAX_CONNS
EOF
        CMD=("$HERD_BIN" -c "$dir/herd.toml")
        ;;
    nginx)
        mkdir -p "$dir/logs"
        cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream app {
        server 127.0.0.1:$UP_PORT;
        keepalive $KEEPALIVE;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$2;
        location /hello {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
        CMD=("$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log")
        ;;
    *) die "unknown server $1" ;;
    esac
}

# wait_workers PID: until the master has a worker that answers (the port may be bound by the
# master before the worker runs).
wait_workers() {
    for _ in $(seq 1 100); do
        [ -n "$(pgrep -P "$1")" ] &&
            curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/hello" && return 0
        sleep 0.05
    done
    return 1
}

# run_one SCENARIO SERVER ROUND: one measured run; appends to RESULTS
run_one() {
    local scen=$1 name=$2 round=$3
    local kind=${scen%%:*} conns=${scen##*:}
    local url out t0 t1 rc why="" hdr=()
    out=$WORK/wrk.$kind.$conns.$name.$round.txt
    if ! start_server "$name" || ! wait_workers "$SERVER_PID"; then
        stop_pid "$SERVER_PID"
        record_failure "$scen" "$name" "$round" "server did not start"
        return
    fi
    case $kind in
    hello) url="http://127.0.0.1:$PORT/hello" ;;
    *) die "unknown scenario $kind" ;;
    esac
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${WARMUP}s" \
            "${hdr[@]}" "$url" >/dev/null 2>&1
    fi
    t0=$(tree_ticks "$SERVER_PID")
    timeout $((DURATION + 60)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" \
        --latency "${hdr[@]}" "$url" >"$out" 2>&1
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
    say "  round $round $name: $rps req/s, server ${cpu_us} us CPU/req, p99 ${p99_us} us${sockerr:+ ($sockerr)}"
}

print_table() { # print_table SCENARIO
    local scen=$1 what
    what="keep-alive GET /hello through the proxy"
    printf '\n== %s: %s, %s connections (wrk -t1, %s s after %s s warm-up, median of %s) ==\n' \
        "${scen%%:*}" "$what" "${scen##*:}" "$DURATION" "$WARMUP" "$REPEATS"
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
            printf "herd/nginx: req/s %s, CPU/req %s (target <= 0.80x), p99 %s (target <= 1.00x at c=1000)\n",
                ratio(mr["herd"], mr["nginx"]), ratio(mc["herd"], mc["nginx"]), ratio(mp["herd"], mp["nginx"])
            printf "per-round ratios, median [range]: req/s %s, CPU/req %s\n", paired("herd", "nginx", rr, 1), paired("herd", "nginx", rc, 1)
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
echo "herd reverse-proxy benchmark: proxy on CPU $SERVER_CPU, wrk -t1 and the upstream on CPU $CLIENT_CPU, one worker and loop each"
echo "herd upstream: keepalive = $KEEPALIVE, max_conns = $MAX_CONNS (0: no limit); nginx: keepalive $KEEPALIVE, no max_conns"
echo "upstream = $HELLO_BIN; herd = $HERD_BIN, nginx = $NGINX ($($NGINX -v 2>&1 | sed 's/.*: //'))"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
