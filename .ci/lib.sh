# .ci/lib.sh: what the interop scripts share (sourced, not run). The sourcing script sets NAME
# (its log prefix) and WORK (its directory under the cargo target dir) first, and `set -euo
# pipefail` itself.
#
#   say MSG...                       a line on stderr, prefixed with NAME
#   ensure_tools CMD[=PKG]...        installs (apt) the Debian package of each missing command
#                                    (PKG when the package is named otherwise)
#   ensure_venv VENV IMPORTS PKGS... a Python venv at VENV in which `import IMPORTS` works,
#                                    installing python3/python3-venv (apt) and PKGS (pip) only
#                                    when missing
#   start_server LOG CMD...          picks a free 127.0.0.1 port from PORT (default 19300),
#                                    starts CMD with `--port P` appended, output to LOG, and
#                                    waits at most 30 s for it to listen; sets PORT, SERVER_PID
#   finish_checks STATUS LOG         the script's exit status: STATUS, or 1 if the server died;
#                                    prints the server's log tail on failure
#
# The server started here is stopped by its PID on exit (TERM, then KILL after 5 s).

SERVER_PID=""

say() { printf '%s: %s\n' "$NAME" "$*" >&2; }

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools() {
    local spec cmd pkg updated=""
    for spec in "$@"; do
        cmd=${spec%%=*} pkg=${spec#*=}
        command -v "$cmd" >/dev/null && continue
        say "installing $pkg (apt)"
        [ -n "$updated" ] || { apt-get update -qq >/dev/null; updated=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    done
}

ensure_venv() {
    local venv=$1 imports=$2
    shift 2
    command -v python3 >/dev/null || {
        say "installing python3"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    }
    mkdir -p "$(dirname "$venv")"
    if [ ! -x "$venv/bin/python" ]; then
        say "creating venv $venv"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            rm -rf "$venv"
            say "installing python3-venv"
            apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
    fi
    if ! "$venv/bin/python" -c "import $imports" 2>/dev/null; then
        say "installing $* into the venv"
        timeout 600 "$venv/bin/pip" install -q --disable-pip-version-check "$@"
    fi
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

start_server() {
    local log=$1
    shift
    PORT=${PORT:-19300}
    while port_open "$PORT"; do PORT=$((PORT + 1)); done
    "$@" --port "$PORT" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        port_open "$PORT" && break
        kill -0 "$SERVER_PID" 2>/dev/null || { say "$1 died at start:"; cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    port_open "$PORT" || { say "$1 did not listen on $PORT within 30 s"; exit 1; }
    say "$(basename "$1") on 127.0.0.1:$PORT (pid $SERVER_PID)"
}

finish_checks() {
    local status=$1 log=$2
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        say "the server died during the checks:"
        cat "$log" >&2
        status=1
    fi
    [ "$status" = 0 ] || { say "server log:"; tail -n 20 "$log" >&2; }
    return "$status"
}
