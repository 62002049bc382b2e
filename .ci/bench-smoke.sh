#!/usr/bin/env bash
# Benchmark smoke run: each bench/*.sh script once, as short as it goes (1 s runs, one round,
# one small scenario, the syscall and memory passes shrunk), so a fresh clone proves that every
# benchmark the README quotes still builds its servers and peers, starts them, drives them and
# prints its table. The figures of such a short run on a CI machine mean nothing and are not
# checked; what is checked is that each script exits 0 (it exits 1 when any run failed) and
# printed its herd-vs-peer ratio line.
#
# Bounded: every script bounds its own client runs with `timeout` and stops the servers it
# started by PID; this wrapper adds an overall `timeout` per script. Only 127.0.0.1 is used.
# .ci/run calls it; it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export DURATION=1 WARMUP=0 REPEATS=1 KEEP_LOGS=0
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
FAILED=0

# smoke NAME EXPECTED-LINE-PREFIX [VAR=VALUE...]: runs bench/NAME.sh with the extra settings.
smoke() {
    local name=$1 expect=$2
    shift 2
    printf 'bench-smoke: %s.sh %s\n' "$name" "$*" >&2
    if ! env "$@" timeout 900 bash "bench/$name.sh" >"$LOG/$name.out" 2>"$LOG/$name.err"; then
        printf 'bench-smoke: %s.sh FAILED; its output:\n' "$name" >&2
        cat "$LOG/$name.out" >&2
        tail -n 30 "$LOG/$name.err" >&2
        FAILED=1
        return
    fi
    cat "$LOG/$name.out"
    if ! grep -q "^$expect" "$LOG/$name.out"; then
        printf 'bench-smoke: %s.sh printed no "%s" line\n' "$name" "$expect" >&2
        FAILED=1
    fi
}

smoke echo "herd/mio:" SCENARIOS=64:10 SYSCALLS=1 SYSCALL_DURATION=1 MEMORY=1 MEM_CONNS=200 MEM_HOLD=1
smoke frame "herd/tokio" SCENARIOS=inline:1:10:64 SYSCALLS=1 SYSCALL_DURATION=1 SYSCALL_SCENARIOS=inline:1:10:64
smoke ws "herd/tokio" SCENARIOS=64:10 SYSCALLS=1 SYSCALL_DURATION=1 SYSCALL_SCENARIOS=64:10
smoke http "herd/hyper" SCENARIOS="hello:10 4k:10"
smoke tls "herd/nginx" SCENARIOS="ka:10 hs:5 res:4 res12:4 big:5 idle:200" IDLE_HOLD=5
smoke proxy "herd/nginx" SCENARIOS="hello:10"
smoke compress "herd/nginx" SCENARIOS="gzip:5 static:5"
smoke vhost "ten/one:" SCENARIOS="exact:10"
smoke ws-deflate "herd/python" SCENARIOS=1024:10 MEM_CONNS=100
smoke callgrind "herd/mio:" SMALL_S=1 BIG_S=2
smoke callgrind "layer-none " SCENARIOS=layers LAYERS_SMALL_N=20 LAYERS_BIG_N=100
exit "$FAILED"
