#!/usr/bin/env bash
# bench/tls.sh: the herd server's TLS against nginx's over https on loopback (wrk, herd-tls-client).
#
# Scenarios (KIND:N; KIND-rsa runs KIND with the RSA 2048 certificate instead of ECDSA P-256):
#   ka:100    keep-alive `GET /4k.bin` over TLS (the record layer), wrk, N connections
#   hs:8      a new TCP connection and a full TLS 1.3 handshake per request (`GET /hello.txt`,
#             `Connection: close`): herd-tls-client with N threads, keeping no sessions. (Not
#             wrk: with `Connection: close` wrk resumes each connection slot's previous session,
#             nginx's $ssl_session_reused logged "r" for 2,402 of 2,422 handshakes.)
#   res:8     the same, but each connection resumes the TLS 1.3 session (ticket) of an
#             earlier one: herd-tls-client (bench/tls-client, rustls) with N threads; the share
#             of handshakes that resumed is printed and a run under 90% fails
#   res12:8   the same over TLS 1.2 (session tickets)
#   big:10    keep-alive `GET /1m.bin` (1 MiB) over TLS, wrk: server CPU per MiB
#   idle:10000  N TLS connections opened (handshake done, nothing sent) and held idle by
#             herd-tls-client: the server's RSS and PSS (smaps_rollup, master + workers)
#             before and with them, KiB per connection
# Default: "ka:100 hs:8 res:8 res12:8 hs-rsa:8 res-rsa:8 big:10 idle:10000".
# Servers: the `herd` binary (master and one worker with one loop, a static root, a `tls` table
# with its defaults: tickets on, TLS 1.2 on) and nginx from Debian (master and one worker,
# `ssl` with its defaults: tickets on, no shared session cache; the same root, access log off,
# keepalive_requests raised so neither server closes kept-alive connections during a run).
# Both use the same certificate, made here with openssl. wrk (OpenSSL 3) and herd-tls-client
# negotiate TLS 1.3 with X25519 and AES-256-GCM-SHA384 with both; herd-tls-client also offers
# P-256 (TLS 1.2 needs it with an ECDSA certificate) and checks handshake signatures, not the
# certificate chain.
# kTLS is used by neither (herd has none; the script prints whether the kernel has the ULP).
# Interleaved over REPEATS rounds (round_order), each run starts the server pinned to
# SERVER_CPU, runs an unmeasured warm-up, then the client pinned to CLIENT_CPU, and samples
# utime+stime of the server's master and workers around the measured run. Prints per scenario
# the median requests/s, server CPU us per request (per handshake, per MiB) and p99, the
# herd/nginx ratios (of the medians, and the median of the per-round ratios), and how busy the
# run kept the server core (req/s x CPU/req; well under 100% means the client or the shared
# machine set the pace, and 1e6 / CPU-per-request is what the core could do) and how long per
# request the server was runnable but waiting for its CPU (schedstat: other work on the core).
#
# Environment (defaults in brackets):
#   DURATION [5] measured seconds per run     WARMUP [1] unmeasured seconds before it
#   REPEATS [3]  rounds                       SCENARIOS [above]
#   SERVERS ["herd nginx"]                    PORT_BASE [19700] first port tried
#   SERVER_CPU [0] CLIENT_CPU [1]             KEEP_LOGS [0] keep the work directory
#   IDLE_HOLD [30] the longest the idle connections are held (they close once measured)
#   IDLE_REQUEST [0] 1: each idle connection first gets one keep-alive `GET /hello.txt`
#
# Only 127.0.0.1 is used. Every client run is bounded by `timeout`; every server and client
# this script started is stopped by its PID. Installs wrk, nginx and openssl through apt when
# missing (nginx with a policy-rc.d that stops the package from starting its own service).
# Exit status: 0 when every run succeeded, 1 when any failed (after printing everything).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS-"ka:100 hs:8 res:8 res12:8 hs-rsa:8 res-rsa:8 big:10 idle:10000"}
read -r -a SERVERS <<<"${SERVERS:-herd nginx}"
PORT_BASE=${PORT_BASE:-19700}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
KEEP_LOGS=${KEEP_LOGS:-0}
IDLE_HOLD=${IDLE_HOLD:-30}
IDLE_REQUEST=${IDLE_REQUEST:-0}

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init tls

# --- tools ---------------------------------------------------------------------------------

need wrk wrk
need openssl openssl
need curl curl
need pgrep procps
need_nginx
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "work dir $WORK, $($NGINX -v 2>&1)"
# kTLS: herd has no kTLS path and this nginx.conf does not ask OpenSSL for it (no
# `ssl_conf_command Options KTLS`), so both encrypt in user space; say what the kernel offers.
ULPS=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null)
case " $ULPS " in
*" tls "*) KTLS="the kernel offers the tls ULP, unused by both (herd has no kTLS path, nginx.conf does not enable it)" ;;
*) KTLS="not in this kernel (tcp_available_ulp: ${ULPS:-none}), both encrypt in user space (nginx without SSL_sendfile)" ;;
esac

# --- build, files, certificate --------------------------------------------------------------

build_release "$ROOT" "herd" --bin herd
HERD_BIN=$ROOT_TARGET/release/herd
SITE=$WORK/site
mkdir -p "$SITE"
printf 'Hello, world!' >"$SITE/hello.txt"
head -c 4096 /dev/urandom >"$SITE/4k.bin"
head -c 1048576 /dev/urandom >"$SITE/1m.bin"
# Two certificates, both servers use the same one in a scenario: ec (ECDSA P-256, the default)
# and rsa (RSA 2048, the scenarios named KIND-rsa).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/ec.key.pem" -out "$WORK/ec.cert.pem" 2>/dev/null || die "openssl req failed"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/rsa.key.pem" -out "$WORK/rsa.cert.pem" 2>/dev/null || die "openssl req failed"
CERT=ec # the certificate server_cmd configures; run_one sets it per scenario

# herd-tls-client (bench/tls-client) drives the hs, res and idle scenarios: built into the
# root target directory, where the aws-lc-sys herd uses is already compiled.
build_release "$ROOT/bench/tls-client" "herd-tls-client" --target-dir "$ROOT_TARGET"
CLIENT_BIN=$ROOT_TARGET/release/herd-tls-client

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
tls = { cert = "$WORK/$CERT.cert.pem", key = "$WORK/$CERT.key.pem" }
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
events { worker_connections 16384; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$2 ssl;
        ssl_certificate $WORK/$CERT.cert.pem;
        ssl_certificate_key $WORK/$CERT.key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
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
            curl -sk --max-time 2 -o /dev/null "https://127.0.0.1:$PORT/hello.txt" && return 0
        sleep 0.05
    done
    return 1
}

# mem_kib PID: "RSS PSS" in KiB, summed over PID and its children (a master and its workers),
# from /proc/PID/smaps_rollup.
mem_kib() {
    local p rss=0 pss=0 r q
    for p in "$1" $(pgrep -P "$1"); do
        read -r r q < <(awk '/^Rss:/ { r = $2 } /^Pss:/ { q = $2 } END { print r + 0, q + 0 }' \
            "/proc/$p/smaps_rollup" 2>/dev/null) || return 1
        rss=$((rss + r)) pss=$((pss + q))
    done
    echo "$rss $pss"
}

# tree_rqwait PID: microseconds the threads of PID and its children have spent runnable but
# waiting for a CPU (/proc/PID/task/TID/schedstat, second field, ns). Per request it shows how
# much the rest of the machine held the server back (its CPU time does not include it).
tree_rqwait() {
    local p
    for p in "$1" $(pgrep -P "$1"); do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done |
        awk '{ w += $2 } END { printf "%d\n", w / 1000 }'
}

# rq_per_op Q0 Q1 N: run-queue wait per operation, us.
rq_per_op() { awk -v d=$(($2 - $1)) -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", d / n; else print "nan" }'; }

# run_one SCENARIO SERVER ROUND: one measured run; appends to RESULTS
run_one() {
    local scen=$1 name=$2 round=$3
    local kind=${scen%%:*} conns=${scen##*:}
    local base=${kind%-rsa}
    CERT=ec
    [ "$base" != "$kind" ] && CERT=rsa
    if ! start_server "$name" || ! wait_workers "$SERVER_PID"; then
        stop_pid "$SERVER_PID"
        record_failure "$scen" "$name" "$round" "server did not start"
        return
    fi
    case $base in
    ka | big) run_wrk "$@" ;;
    hs | res | res12) run_res "$@" ;;
    idle) run_idle "$@" ;;
    *) die "unknown scenario $kind" ;;
    esac
}

# run_wrk SCENARIO SERVER ROUND: ka, big with wrk against the started server; stops it.
run_wrk() {
    local scen=$1 name=$2 round=$3
    local kind=${scen%%:*} conns=${scen##*:}
    local url out t0 t1 q0 q1 rc why="" hdr=()
    out=$WORK/wrk.$kind.$conns.$name.$round.txt
    case ${kind%-rsa} in
    ka) url="https://127.0.0.1:$PORT/4k.bin" ;;
    big) url="https://127.0.0.1:$PORT/1m.bin" ;;
    esac
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${WARMUP}s" \
            "${hdr[@]}" "$url" >/dev/null 2>&1
    fi
    q0=$(tree_rqwait "$SERVER_PID")
    t0=$(tree_ticks "$SERVER_PID")
    timeout $((DURATION + 60)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" \
        --latency "${hdr[@]}" "$url" >"$out" 2>&1
    rc=$?
    t1=$(tree_ticks "$SERVER_PID")
    q1=$(tree_rqwait "$SERVER_PID")
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
    local cpu_us p99_us rq
    cpu_us=$(cpu_us_per_op "$t0" "$t1" "$total")
    p99_us=$(to_us "$p99")
    rq=$(rq_per_op "$q0" "$q1" "$total")
    echo "$scen $name $round ok $rps $cpu_us $p99_us - $rq" >>"$RESULTS"
    say "  round $round $name: $rps req/s, server ${cpu_us} us CPU/req, waited ${rq} us/req for its CPU, p99 ${p99_us} us${sockerr:+ ($sockerr)}"
}

# run_res SCENARIO SERVER ROUND: hs (a full handshake per request: the client keeps no
# sessions), res, res12 (a resumed handshake per request) with herd-tls-client, N threads,
# against the started server; stops it. A res run in which fewer than 90% of the handshakes
# resumed fails (it would not measure resumption), and an hs run in which any resumed.
run_res() {
    local scen=$1 name=$2 round=$3
    local kind=${scen%%:*} conns=${scen##*:}
    local out t0 t1 q0 q1 rc why="" opt=()
    out=$WORK/res.$kind.$conns.$name.$round.txt
    case ${kind%-rsa} in
    hs) opt=(--full) ;;
    res12) opt=(--tls12) ;;
    esac
    local cmd=(taskset -c "$CLIENT_CPU" "$CLIENT_BIN" loop --addr "127.0.0.1:$PORT"
        --threads "$conns" --warmup 0 "${opt[@]}")
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) "${cmd[@]}" --duration "$WARMUP" >/dev/null 2>&1
    fi
    q0=$(tree_rqwait "$SERVER_PID")
    t0=$(tree_ticks "$SERVER_PID")
    timeout $((DURATION + 60)) "${cmd[@]}" --duration "$DURATION" >"$out" 2>&1
    rc=$?
    t1=$(tree_ticks "$SERVER_PID")
    q1=$(tree_rqwait "$SERVER_PID")
    local alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_pid "$SERVER_PID"
    # "total N resumed R errors E seconds S rate X p50_us P p99_us Q mean_us ... first_error"
    local total resumed errors rps p99 pct
    read -r total resumed errors rps p99 < <(awk '$1 == "total" { print $2, $4, $6, $10, $14 }' "$out")
    pct=$(awk -v t="${total:-0}" -v r="${resumed:-0}" 'BEGIN { if (t > 0) printf "%.1f", 100 * r / t; else print 0 }')
    if [ "$alive" = 0 ] || [ -z "$t1" ]; then
        why="server died during the run"
    elif [ "$rc" = 124 ]; then
        why="client timed out"
    elif [ -z "$total" ]; then
        why="herd-tls-client exit $rc: $(tail -n 1 "$out")"
    elif [ "$rc" != 0 ] || [ "$errors" != 0 ]; then
        why="$errors failed requests: $(sed 's/.*first_error //' "$out")"
    elif [ "${kind%-rsa}" != hs ] && awk -v p="$pct" 'BEGIN { exit !(p < 90) }'; then
        why="only $pct% of the handshakes resumed"
    elif [ "${kind%-rsa}" = hs ] && [ "$resumed" != 0 ]; then
        why="$resumed handshakes resumed"
    fi
    if [ -n "$why" ]; then
        record_failure "$scen" "$name" "$round" "$why"
        return
    fi
    local cpu_us rq
    cpu_us=$(cpu_us_per_op "$t0" "$t1" "$total")
    rq=$(rq_per_op "$q0" "$q1" "$total")
    echo "$scen $name $round ok $rps $cpu_us $p99 $pct $rq" >>"$RESULTS"
    say "  round $round $name: $rps req/s, server ${cpu_us} us CPU/req, waited ${rq} us/req for its CPU, p99 ${p99} us, $pct% resumed ($(sed 's/.*\(mean_us.*\) first_error.*/\1/' "$out"))"
}

# run_idle SCENARIO SERVER ROUND: idle (N connections): a short warm-up of full handshakes,
# the server's memory, then N TLS connections opened by herd-tls-client (4 threads) and held
# idle with their handshakes done, the memory again, then they are closed; stops the server.
run_idle() {
    local scen=$1 name=$2 round=$3
    local conns=${scen##*:}
    local out=$WORK/idle.$conns.$name.$round.txt before after rc why="" cpid opt=()
    [ "$IDLE_REQUEST" = 1 ] && opt=(--request)
    timeout 30 taskset -c "$CLIENT_CPU" "$CLIENT_BIN" loop --addr "127.0.0.1:$PORT" --full \
        --threads 4 --warmup 0 --duration 0.5 >/dev/null 2>&1
    sleep 0.2
    before=$(mem_kib "$SERVER_PID")
    # Held for at most IDLE_HOLD seconds after the last handshake; the memory is read as soon
    # as the client reports them all open, then the client is stopped.
    timeout $((IDLE_HOLD + 120)) taskset -c "$CLIENT_CPU" "$CLIENT_BIN" hold \
        --addr "127.0.0.1:$PORT" --conns "$conns" --threads 4 --hold "$IDLE_HOLD" "${opt[@]}" >"$out" 2>&1 &
    cpid=$!
    for _ in $(seq 1 1200); do # up to 120 s for the handshakes
        grep -q '^open\|^failed' "$out" 2>/dev/null && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q '^open' "$out"; then
        sleep 0.5 # the server reads the last clients' Finished
        after=$(mem_kib "$SERVER_PID")
    fi
    kill -TERM "$cpid" 2>/dev/null
    wait "$cpid"
    rc=$?
    local alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_pid "$SERVER_PID"
    if [ "$alive" = 0 ]; then
        why="server died during the run"
    elif ! grep -q "^open $conns\$" "$out"; then
        why="client: $(tail -n 1 "$out") (exit $rc)"
    elif [ -z "$before" ] || [ -z "$after" ]; then
        why="no memory figures"
    fi
    if [ -n "$why" ]; then
        record_failure "$scen" "$name" "$round" "$why"
        return
    fi
    local line
    line=$(awk -v n="$conns" -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        printf "%.2f %.2f %d %d %d %d", (y[1] - x[1]) / n, (y[2] - x[2]) / n, x[1], y[1], x[2], y[2] }')
    echo "$scen $name $round ok $line" >>"$RESULTS"
    set -- $line
    say "  round $round $name: RSS $3 -> $4 KiB, PSS $5 -> $6 KiB: $1 KiB RSS, $2 KiB PSS per connection"
}

print_table() { # print_table SCENARIO
    local scen=$1 kind=${scen%%:*} what unit="CPU us/req" cert="ECDSA P-256"
    case $kind in *-rsa) cert="RSA 2048" ;; esac
    case ${kind%-rsa} in
    ka) what="keep-alive GET /4k.bin over TLS" ;;
    hs) what="a full TLS 1.3 handshake per request"; unit="CPU us/hs" ;;
    big) what="keep-alive GET /1m.bin (1 MiB) over TLS, CPU per MiB"; unit="CPU us/MiB" ;;
    res) what="a resumed TLS 1.3 handshake (ticket) per request"; unit="CPU us/hs" ;;
    res12) what="a resumed TLS 1.2 handshake (ticket) per request"; unit="CPU us/hs" ;;
    idle) print_idle "$scen"; return ;;
    esac
    local client="wrk -t1, ${scen##*:} connections"
    case ${kind%-rsa} in hs | res*) client="herd-tls-client, ${scen##*:} threads" ;; esac
    printf '\n== %s: %s, %s, %s (%s s after %s s warm-up, median of %s) ==\n' \
        "$kind" "$what" "$cert" "$client" "$DURATION" "$WARMUP" "$REPEATS"
    awk -v scen="$scen" -v servers="${SERVERS[*]}" -v unit="$unit" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; r[$2] = r[$2] " " $5; c[$2] = c[$2] " " $6; p[$2] = p[$2] " " $7; w[$2] = w[$2] " " $9; rr[$2, $3] = $5; rc[$2, $3] = $6; rounds[$3] = 1; if ($8 != "-") { res = 1; q[$2] = q[$2] " " $8 } }
        }
        END {
            ns = split(servers, s, " ")
            printf "%-7s %-12s %12s %12s %12s%s\n", "server", "runs ok", "req/s", unit, "p99 us", res ? "   resumed %" : ""
            for (i = 1; i <= ns; i++) {
                k = s[i]
                mr[k] = median(r[k]); mc[k] = median(c[k]); mp[k] = median(p[k])
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-7s %-12s %12s\n", k, status, "FAILED"; continue }
                printf "%-7s %-12s %12.0f %12.3f %12.1f", k, status, mr[k], mc[k], mp[k]
                if (res) printf " %12.1f", median(q[k])
                printf "\n"
                # The share of the server core the run kept busy: under ~90% the client (or the
                # shared machine) bounded req/s, and 1e6 / CPU is what the core could do.
                busy = busy sprintf("%s%s %.0f%% (%.0f/s)", busy == "" ? "" : ", ", k, mr[k] * mc[k] / 1e4, mc[k] > 0 ? 1e6 / mc[k] : 0)
                wait = wait sprintf("%s%s %.0f us", wait == "" ? "" : ", ", k, median(w[k]))
            }
            printf "herd/nginx: req/s %s, %s %s, p99 %s\n",
                ratio(mr["herd"], mr["nginx"]), unit, ratio(mc["herd"], mc["nginx"]), ratio(mp["herd"], mp["nginx"])
            printf "per-round ratios, median [range]: req/s %s, %s %s\n", paired("herd", "nginx", rr, 1), unit, paired("herd", "nginx", rc, 1)
            printf "server core busy (one core at 1e6/CPU would do): %s\n", busy
            printf "server runnable but waiting for its CPU (other work on the machine), per request: %s\n", wait
        }'
}

print_idle() { # print_idle SCENARIO: the idle-connection memory table
    local scen=$1 what="handshake done, nothing sent"
    [ "$IDLE_REQUEST" = 1 ] && what="handshake and one keep-alive GET /hello.txt done"
    printf '\n== idle: %s idle TLS connections (%s), ECDSA P-256: server memory, master + workers (median of %s) ==\n' \
        "${scen##*:}" "$what" "$REPEATS"
    awk -v scen="$scen" -v servers="${SERVERS[*]}" -f "$ROOT/bench/table.awk" -f /dev/stdin "$RESULTS" <<<'
        $1 == scen {
            runs[$2]++
            if ($4 == "ok") { ok[$2]++; r[$2] = r[$2] " " $5; q[$2] = q[$2] " " $6; b[$2] = b[$2] " " $7; a[$2] = a[$2] " " $8; rr[$2, $3] = $5; rq[$2, $3] = $6; rounds[$3] = 1 }
        }
        END {
            ns = split(servers, s, " ")
            printf "%-7s %-12s %14s %14s %14s %14s\n", "server", "runs ok", "RSS before KiB", "RSS after KiB", "RSS KiB/conn", "PSS KiB/conn"
            for (i = 1; i <= ns; i++) {
                k = s[i]
                mr[k] = median(r[k]); mq[k] = median(q[k])
                fail = runs[k] - ok[k]
                status = sprintf("%d/%d%s", ok[k], runs[k], fail ? " FAILED " fail : "")
                if (ok[k] == 0) { printf "%-7s %-12s %14s\n", k, status, "FAILED"; continue }
                printf "%-7s %-12s %14d %14d %14.2f %14.2f\n", k, status, median(b[k]), median(a[k]), mr[k], mq[k]
            }
            printf "herd/nginx: RSS/conn %s, PSS/conn %s\n", ratio(mr["herd"], mr["nginx"]), ratio(mq["herd"], mq["nginx"])
            printf "per-round ratios, median [range]: RSS/conn %s, PSS/conn %s\n", paired("herd", "nginx", rr, 1), paired("herd", "nginx", rq, 1)
        }'
}

for scen in $SCENARIOS; do
    say "scenario: ${scen%%:*} x ${scen##*:}"
    for round in $(seq 1 "$REPEATS"); do
        for i in $(round_order ${#SERVERS[@]} "$round"); do
            run_one "$scen" "${SERVERS[$i]}" "$round"
        done
    done
done

say ""
say "per-run results (also failures): scenario server round status, then req/s cpu_us p99_us resumed% (- for wrk) runqueue_wait_us, or for idle rss/conn pss/conn rss-before rss-after pss-before pss-after (KiB)"
cat "$RESULTS" >&2
echo "herd TLS benchmark: server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU, one worker and loop each"
echo "herd = $HERD_BIN, nginx = $NGINX ($($NGINX -v 2>&1 | sed 's/.*: //'))"
echo "kTLS: $KTLS"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on these CPUs skews throughput)"
for scen in $SCENARIOS; do
    print_table "$scen"
done

if [ "$FAILURES" -gt 0 ]; then
    echo
    echo "$FAILURES run(s) FAILED (shown above as FAILED)"
    exit 1
fi
