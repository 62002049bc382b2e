# bench/lib.sh: helpers shared by the benchmark scripts (echo.sh, frame.sh, http.sh, ws.sh).
#
# Sourced, not run. The script that sources it sets, before calling these: WORK (its work
# directory), KEEP_LOGS, SERVER_CPU, NEXT_PORT, an associative array LIVE of the PIDs it started,
# optionally STRACE_CHILD, and a function `server_cmd NAME PORT` that sets the array CMD.
# Only 127.0.0.1 is ever contacted; only PIDs this script started are ever signalled.
# shellcheck shell=bash

say() { printf '%s\n' "$*" >&2; }
die() {
    say "${0##*/}: $*"
    exit 1
}

# cleanup: stop every server (and strace) this script started; drop the work dir.
cleanup() {
    local pid
    for pid in ${STRACE_CHILD:-}; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${!LIVE[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${!LIVE[@]}"; do stop_pid "$pid"; done
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

json_get() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; } # json_get FILE KEY
