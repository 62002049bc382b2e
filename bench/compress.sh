#!/usr/bin/env bash
# bench/compress.sh: HTTP response compression, the herd server against nginx, with wrk on
# loopback: a 100 KiB HTML page (text with varied numbers and words, about 4-5x with gzip -1)
# requested with `Accept-Encoding: gzip`.
#
# Scenarios (name:connections): gzip:20 (compressed per request: herd's `compression = {
# gzip_level = 1 }` against nginx's `gzip on; gzip_comp_level 1`) and static:20 (the same page
# with a pre-compressed `page.html.gz` beside it: herd's `precompressed = true` against nginx's
# `gzip_static on`). Servers: the `herd` binary (master and one worker with one loop, a static
# root) and nginx from Debian (master and one worker, access log off, keepalive_requests
# raised). Before the runs, each server's answer is checked: `Content-Encoding: gzip` and a
# body that gunzips to the page. Interleaved over REPEATS rounds (round_order), each run
# starts the server pinned to SERVER_CPU, runs an unmeasured warm-up, then `wrk -t1 -cN -dD
# --latency` pinned to CLIENT_CPU, and samples utime+stime of the server's master and workers
# around the measured run. Prints per scenario the median requests/s, server CPU us per
# request and p99, and the herd/nginx ratios (of the medians, and the median of the
# per-round ratios).
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured wrk seconds before it
#   REPEATS [3]  rounds                       SCENARIOS ["gzip:20 static:20"]
#   SERVERS ["herd nginx"]                    PORT_BASE [19700] first port tried
#   SERVER_CPU [0] CLIENT_CPU [1]             KEEP_LOGS [0] keep the work directory
#
# Only 127.0.0.1 is used. Every wrk run is bounded by `timeout`; every server this script
# started is stopped by its PID on exit. Installs wrk and nginx through apt when missing
# (nginx with a policy-rc.d that stops the package from starting its own service).
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS-"gzip:20 static:20"}
read -r -a SERVERS <<<"${SERVERS:-herd nginx}"
PORT_BASE=${PORT_BASE:-19700}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init compress

# --- tools ---------------------------------------------------------------------------------

need wrk wrk
need gzip gzip
need curl curl
need pgrep procps
need_nginx
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "work dir $WORK, $($NGINX -v 2>&1)"

# --- build, files, certificate --------------------------------------------------------------

build_release "$ROOT" "herd" --bin herd
HERD_BIN=$ROOT_TARGET/release/herd
SITE=$WORK/site
mkdir -p "$SITE"
# 100 KiB of HTML whose rows differ in numbers and words (not one line repeated: that would
# compress a thousandfold and measure nothing).
python3 - "$SITE/page.html" <<'PY'
import random, sys
random.seed(7)
words = "herd loop socket worker master reload upgrade drain frame header body stream".split()
out = ["<!doctype html><html><head><title>herd</title></head><body><table>"]
i = 0
while sum(map(len, out)) < 100 * 1024:
    i += 1
    row = " ".join(random.choice(words) for _ in range(6))
    out.append(f'<tr><td class="n">{i}</td><td>{row}</td><td>{random.randint(0, 10**6)}</td>'
               f'<td><a href="/item/{random.randint(0, 99999)}">{random.choice(words)}</a></td></tr>\n')
out.append("</table></body></html>\n")
open(sys.argv[1], "w").write("".join(out)[: 100 * 1024])
PY
cp "$SITE/page.html" "$SITE/static.html"
gzip -9 -k -n "$SITE/static.html"
say "page.html $(stat -c %s "$SITE/page.html") bytes; gzip -1 $(gzip -1 -c "$SITE/page.html" | wc -c), static.html.gz (-9) $(stat -c %s "$SITE/static.html.gz")"

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
level = "warn"
[[listener]]
bind = "127.0.0.1:$2"
protocol = "http"
root = "$SITE"
compression = { gzip_level = 1, brotli_level = 0, precompressed = true }
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
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    gzip on;
    gzip_comp_level 1;
    gzip_min_length 256;
    gzip_types text/html;
    gzip_vary on;
    gzip_static on;
    server {
        listen 127.0.0.1:$2;
        root $SITE;
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
            curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/page.html" && return 0
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
    gzip) url="http://127.0.0.1:$PORT/page.html" ;;
    static) url="http://127.0.0.1:$PORT/static.html" ;;
    *) die "unknown scenario $kind" ;;
    esac
    hdr=(-H "Accept-Encoding: gzip")
    # The answer must be gzip and must gunzip to the page.
    local enc
    enc=$(curl -s --max-time 5 -D - -o "$out.body" -H "Accept-Encoding: gzip" "$url" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }')
    if [ "$enc" != gzip ] || ! gzip -dc "$out.body" | cmp -s - "$SITE/page.html"; then
        stop_pid "$SERVER_PID"
        record_failure "$scen" "$name" "$round" "not a gzip answer of the page (Content-Encoding: ${enc:-none})"
        return
    fi
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
    case ${scen%%:*} in
    gzip) what="a 100 KiB HTML page gzipped per request (level 1)" ;;
    static) what="the same page pre-compressed beside it (gzip_static)" ;;
    esac
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
            printf "herd/nginx: req/s %s, CPU/req %s, p99 %s\n",
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
echo "herd compression benchmark: server on CPU $SERVER_CPU, wrk -t1 on CPU $CLIENT_CPU, one worker and loop each"
echo "herd = $HERD_BIN, nginx = $NGINX ($($NGINX -v 2>&1 | sed 's/.*: //'))"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
