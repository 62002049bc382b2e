# bench/lib.sh: helpers shared by the benchmark scripts (echo.sh, frame.sh, http.sh, ws.sh,
# callgrind.sh).
#
# Sourced, not run. The script that sources it sets ROOT, PORT_BASE, KEEP_LOGS, SERVER_CPU and
# CLIENT_CPU, calls `bench_init NAME` (work directory, results file, traps, tools), and defines
# a function `server_cmd NAME PORT` that sets the array CMD.
# Only 127.0.0.1 is ever contacted; only PIDs this script started are ever signalled.
# shellcheck shell=bash

say() { printf '%s\n' "$*" >&2; }
die() {
    say "${0##*/}: $*"
    exit 1
}

# cleanup: stop every server (and strace) this script started; with PLOT=DIR, draw the
# results as SVG charts into DIR (bench/plot.py); drop the work dir.
cleanup() {
    local pid
    for pid in ${STRACE_CHILD:-}; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${!LIVE[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${!LIVE[@]}"; do stop_pid "$pid"; done
    if [ -n "${PLOT:-}" ] && [ -s "${RESULTS:-}" ]; then
        python3 "$ROOT/bench/plot.py" "$BENCH_NAME" "$RESULTS" "$PLOT" || say "plotting failed"
    fi
    if [ "$KEEP_LOGS" = 1 ]; then
        say "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}

APT_UPDATED=0
need() { # need COMMAND DEBIAN-PACKAGE: install the package if the command is missing
    command -v "$1" >/dev/null 2>&1 && return 0
    say "installing $2 (for $1)"
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null ||
        die "could not install $2"
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

need_nginx() { # need_nginx: install Debian's nginx if missing (its service not started); sets NGINX
    if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
        say "installing nginx (apt; its service is not started)"
        local policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            policy=1
        fi
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
        [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [ -x "$NGINX" ] || die "nginx did not install"
}

build_release() { # build_release DIR LABEL CARGO-ARGS...: `cargo build --release -q` in DIR, or die
    local dir=$1 label=$2
    shift 2
    say "building $label (release)"
    (cd "$dir" && cargo build --release -q "$@") || die "building $label failed"
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

next_port() { # sets PORT to the next port nobody listens on
    while port_open "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
}

# start_server NAME [WRAPPER...]: sets SERVER_PID and PORT; waits up to 10 s for the port.
start_server() {
    local name=$1
    shift
    next_port
    server_cmd "$name" "$PORT"
    taskset -c "$SERVER_CPU" "$@" "${CMD[@]}" >"$WORK/$name.$PORT.log" 2>&1 &
    SERVER_PID=$!
    # shellcheck disable=SC2004 # LIVE is an associative array (declared by the caller)
    LIVE[$SERVER_PID]=1
    for _ in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        port_open "$PORT" && return 0
        sleep 0.05
    done
    say "  $name did not accept on port $PORT; its log:"
    tail -n 5 "$WORK/$name.$PORT.log" >&2
    return 1
}

# stop_pid PID: TERM, up to 5 s grace, then KILL; only for PIDs this script started.
stop_pid() {
    local pid=$1
    [ -n "${LIVE[$pid]:-}" ] || return 0
    unset "LIVE[$pid]"
    kill -TERM "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null
        return 0
    }
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cpu_ticks() { # cpu_ticks PID: utime + stime of the whole process, in clock ticks
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # fields after "(comm) ": state is $1, utime ${12}, stime ${13}
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

# bench_init NAME: the state every script keeps (WORK, a fresh /tmp/herd-NAME-bench.* directory;
# RESULTS; LIVE, the PIDs it started and has not reaped yet; NEXT_PORT; FAILURES, failed runs,
# nonzero makes the script exit 1; STRACE_CHILD, the server strace started), the exit traps,
# the tools every script needs (installed through apt only when missing), CLK_TCK, and the
# target directories ROOT_TARGET and PEERS_TARGET.
# to_us VALUE: wrk's "1.23ms" / "456.00us" / "1.01s" in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) printf "%.1f", n
        else if (v ~ /ms$/) printf "%.1f", n * 1000
        else if (v ~ /s$/) printf "%.1f", n * 1000000
        else print "nan" }'
}

# tree_ticks PID: utime + stime of PID and its children (a master and its workers).
tree_ticks() {
    local sum t c
    sum=$(cpu_ticks "$1") || return 1
    for c in $(pgrep -P "$1"); do
        t=$(cpu_ticks "$c") && sum=$((sum + t))
    done
    echo "$sum"
}

bench_init() {
    BENCH_NAME=$1
    WORK=$(mktemp -d "/tmp/herd-$1-bench.XXXXXX")
    RESULTS=$WORK/results.txt
    : >"$RESULTS"
    declare -gA LIVE=()
    NEXT_PORT=$PORT_BASE
    FAILURES=0
    STRACE_CHILD=""
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    need taskset util-linux
    need timeout coreutils
    need getconf libc-bin
    need awk mawk
    command -v cargo >/dev/null || die "cargo not found"
    CLK_TCK=$(getconf CLK_TCK)
    ROOT_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    PEERS_TARGET=${CARGO_TARGET_DIR:-$ROOT/bench/peers/target}
}

# round_order N ROUND: the order in which a round runs the N servers (indices, one per line),
# a Williams design: over N rounds (2N for odd N) every server runs in every position once and
# directly after every other server once. A plain rotation would always run the same server
# before a given one, and what a run leaves behind (closing sockets, the VM's CPU credit) then
# biases its successor: an A/A pair of one binary measured 4-7% apart that way.
round_order() {
    awk -v n="$1" -v round="$2" 'BEGIN {
        r = (round - 1) % (n % 2 ? 2 * n : n)
        # First row 0, 1, n-1, 2, n-2, ...; row r adds r (mod n); odd n adds the rows reversed.
        for (j = 0; j < n; j++) row[j] = (j % 2 ? (j + 1) / 2 : (n - j / 2) % n)
        for (j = 0; j < n; j++) {
            k = r < n ? j : n - 1 - j
            print (row[k] + r) % n
        }
    }'
}

json_get() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; } # json_get FILE KEY

# record_failure SCENARIO SERVER ROUND WHY: a failed run, in RESULTS, FAILURES and the log.
record_failure() {
    echo "$1 $2 $3 FAILED $4" >>"$RESULTS"
    FAILURES=$((FAILURES + 1))
    say "  round $3 $2: FAILED ($4)"
}

# cpu_us_per_op T0 T1 N: server CPU microseconds per operation from two cpu_ticks samples.
cpu_us_per_op() {
    awk -v d=$(($2 - $1)) -v hz="$CLK_TCK" -v n="$3" \
        'BEGIN { if (n > 0) printf "%.3f", d * 1e6 / hz / n; else print "nan" }'
}

# bench_run SCENARIO SERVER ROUND UNIT HERD-BENCH-ARGS...: one measured run of herd-bench
# against a fresh SERVER (started with start_server, pinned to SERVER_CPU; the client is pinned
# to CLIENT_CPU and gets `--addr 127.0.0.1:PORT --duration --warmup --threads 1 --json` after
# the given args). Appends "SCENARIO SERVER ROUND ok per-sec cpu_us_per_op p50 p99" to RESULTS,
# or "SCENARIO SERVER ROUND FAILED why" (counted in FAILURES) when the server did not start or
# died, the client failed or timed out, or no report came back. UNIT names the operation in
# the progress line ("msg", "req"). Needs BENCH, DURATION, WARMUP, CLK_TCK, RESULTS.
bench_run() {
    local scen=$1 name=$2 round=$3 unit=$4
    shift 4
    local out=$WORK/run.$name.$round.$RANDOM.json err
    err=${out%.json}.err
    local t0 t1 rc
    if ! start_server "$name"; then
        stop_pid "$SERVER_PID"
        record_failure "$scen" "$name" "$round" "server did not start"
        return
    fi
    t0=$(cpu_ticks "$SERVER_PID")
    timeout $((WARMUP + DURATION + 60)) taskset -c "$CLIENT_CPU" "$BENCH" "$@" \
        --addr "127.0.0.1:$PORT" --duration "${DURATION}s" --warmup "${WARMUP}s" \
        --threads 1 --json >"$out" 2>"$err"
    rc=$?
    t1=$(cpu_ticks "$SERVER_PID")
    local alive=1
    kill -0 "$SERVER_PID" 2>/dev/null || alive=0
    stop_pid "$SERVER_PID"
    local why=""
    if [ "$alive" = 0 ] || [ -z "$t1" ]; then
        why="server died during the run"
    elif [ "$rc" = 124 ]; then
        why="client timed out"
    elif [ "$rc" != 0 ]; then
        why="herd-bench exit $rc: $(tail -n 1 "$err" | tr '\n' ' ')"
    elif [ -z "$(json_get "$out" messages_total)" ]; then
        why="no JSON report"
    fi
    if [ -n "$why" ]; then
        record_failure "$scen" "$name" "$round" "$why"
        return
    fi
    local total rate p50 p99 cpu
    total=$(json_get "$out" messages_total)
    rate=$(json_get "$out" msgs_per_sec)
    p50=$(json_get "$out" p50_us)
    p99=$(json_get "$out" p99_us)
    cpu=$(cpu_us_per_op "$t0" "$t1" "$total")
    echo "$scen $name $round ok $rate $cpu $p50 $p99" >>"$RESULTS"
    say "  round $round $name: $rate ${unit}s/s, server $cpu us CPU/$unit, p50 $p50 us, p99 $p99 us"
}
