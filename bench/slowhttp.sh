#!/usr/bin/env bash
# bench/slowhttp.sh: herd against slowhttptest (Debian package), the four attacks at CONNS
# connections each, with short timeouts on herd, while wrk measures a well-behaved client.
#
# herd (WORKERS workers, a static root with a 1 MiB file and a small one) runs with
# header_timeout = body_timeout = send_timeout = TIMEOUT and lingering_close = LINGER. For each
# mode slowhttptest runs LENGTH seconds (-g: a CSV of its connections per second) while
# `wrk -t1 -c10` fetches the small file; before the attacks, wrk alone gives the baseline.
# Modes:
#   slow-headers  -H  a head that never ends (header_timeout)
#   slow-body     -B  a POST whose body trickles (answered at once: no route takes a body)
#   slow-read     -X  reads the 1 MiB file a few bytes every READ_GAP s (send_timeout)
#   range         -R  many overlapping ranges (one range per request only)
# Printed per mode (from herd's own /metrics on an admin listener, sampled every 0.5 s): the
# most attack connections open at once, how long after that peak herd had closed them all
# (0: answered at once; the goal: within TIMEOUT + LINGER + 2 s; slowhttptest's own view
# lags behind for slow reads, which it notices only at its next read),
# wrk's rate as a share of the baseline (goal: >= 0.90), and the workers' peak RSS.
#
# Environment: CONNS [500] LENGTH [20] TIMEOUT [5] LINGER [2] READ_GAP [10] WORKERS [2]
#   CHECK [0]: exit 1 when a goal is missed (the CI's short run sets it)
# Loopback only; herd and every client started here are stopped by PID on exit.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CONNS=${CONNS:-500}
LENGTH=${LENGTH:-20}
TIMEOUT=${TIMEOUT:-5}
LINGER=${LINGER:-2}
READ_GAP=${READ_GAP:-10}
WORKERS=${WORKERS:-2}
CHECK=${CHECK:-0}
WORK=$TARGET/slowhttp
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
say() { printf 'slowhttp: %s\n' "$*" >&2; }
need slowhttptest slowhttptest
need wrk wrk
need curl curl
say "building herd (release)"
cargo build -q --release --bin herd || exit 1
BIN=$TARGET/release/herd
rm -rf "$WORK" && mkdir -p "$WORK/www"
head -c $((1 << 20)) /dev/urandom >"$WORK/www/big.bin"
printf 'small\n' >"$WORK/www/small.txt"
free() { local p=$1; while timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
PORT=$(free 19900); PROBE=$(free $((PORT + 1))); ADMIN=$(free $((PROBE + 1)))
cat >"$WORK/herd.toml" <<TOML
workers = $WORKERS
lingering_close = "${LINGER}s"
[log]
file = "$WORK/error.log"
[[listener]]
name = "site"
bind = "127.0.0.1:$PORT"
protocol = "http"
root = "$WORK/www"
header_timeout = "${TIMEOUT}s"
body_timeout = "${TIMEOUT}s"
send_timeout = "${TIMEOUT}s"
# The well-behaved client's own port (same workers), so the attack's count stays apart.
[[listener]]
name = "probe"
bind = "127.0.0.1:$PROBE"
protocol = "http"
root = "$WORK/www"
[[listener]]
name = "admin"
bind = "127.0.0.1:$ADMIN"
protocol = "admin"
TOML
"$BIN" -c "$WORK/herd.toml" >"$WORK/stderr.txt" 2>&1 &
MASTER=$!
PIDS=("$MASTER")
trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
for _ in $(seq 1 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && break
    sleep 0.1
done
URL=http://127.0.0.1:$PORT
PROBE_URL=http://127.0.0.1:$PROBE
# the attack listener's open connections as herd counts them (summed over workers, ~1 s fresh)
site_open() {
    curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN/metrics" 2>/dev/null |
        awk '/^herd_connections_open\{.*listener="site"/ { s += $NF } END { printf "%d\n", s }'
}
workers() { pgrep -P "$MASTER" | tr '\n' ' '; }
rss_kb() { # the largest VmRSS (kB) of the workers
    local m=0 p v
    for p in $(workers); do
        v=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)
        [ "${v:-0}" -gt "$m" ] && m=$v
    done
    echo "$m"
}
wrk_rate() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }

say "herd $PORT, $WORKERS workers, timeouts ${TIMEOUT}s, linger ${LINGER}s"

failed=0
printf '%-13s %6s %12s %10s %10s %8s %s\n' mode peak "closed in s" "base r/s" "wrk share" "RSS MiB" verdict
for mode in slow-headers slow-body slow-read range; do
    case $mode in
    slow-headers) args=(-H -i 10 -u "$URL/small.txt") ;;
    slow-body) args=(-B -i 10 -s 8192 -u "$URL/small.txt") ;;
    slow-read) args=(-X -k 1 -n "$READ_GAP" -w 1 -y 64 -z 8 -u "$URL/big.bin") ;;
    range) args=(-R -a 10 -b 3000 -u "$URL/big.bin") ;;
    esac
    # The baseline right before each attack: this host's speed drifts between runs.
    wrk -t1 -c10 -d4s "$PROBE_URL/small.txt" >"$WORK/$mode.base" 2>&1
    BASE=$(wrk_rate "$WORK/$mode.base")
    peak_rss=0
    timeout $((LENGTH + 30)) slowhttptest "${args[@]}" -c "$CONNS" -r 250 -l "$LENGTH" -p 3 \
        -g -o "$WORK/$mode" >"$WORK/$mode.log" 2>&1 &
    ATTACK=$!
    PIDS+=("$ATTACK")
    sleep 2
    wrk -t1 -c10 -d"$((LENGTH - 4))s" "$PROBE_URL/small.txt" >"$WORK/$mode.wrk" 2>&1 &
    WRK=$!
    : >"$WORK/$mode.open"
    while kill -0 "$ATTACK" 2>/dev/null; do
        r=$(rss_kb)
        [ "$r" -gt "$peak_rss" ] && peak_rss=$r
        echo "$(date +%s.%N) $(site_open)" >>"$WORK/$mode.open"
        sleep 0.5
    done
    # The attacker may give up first (everything closed, from its view): follow herd's count
    # until it reaches zero too, for at most TIMEOUT + LINGER + 3 s more.
    for _ in $(seq 1 $(((TIMEOUT + LINGER + 3) * 2))); do
        n=$(site_open)
        echo "$(date +%s.%N) $n" >>"$WORK/$mode.open"
        [ "$n" = 0 ] && break
        sleep 0.5
    done
    wait "$WRK" 2>/dev/null
    # slowhttptest's CSV: seconds,closed,pending,connected,service available
    # herd's own count of the attack's open connections: the peak, and how long after it
    # (the attack's connections opened over CONNS/250 s) they were all gone (-1: never).
    read -r peak closed_in < <(python3 - "$WORK/$mode.open" <<'PY'
import sys
pts = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
peak = max((n for _, n in pts), default=0)
t_peak = next((t for t, n in pts if n == peak), 0)
gone = [t for t, n in pts if t > t_peak and n <= max(1, peak // 100)]
small = peak <= 5  # answered at once: never more than a handful open
print(int(peak), 0 if small else (round(gone[0] - t_peak, 1) if gone else -1))
PY
)
    rate=$(wrk_rate "$WORK/$mode.wrk")
    share=$(python3 -c "print(f'{float(\"${rate:-0}\") / float(\"$BASE\"):.2f}')")
    verdict=ok
    limit=$((TIMEOUT + LINGER + 2))
    # The range attack's connections are answered and closed at once; the others must go
    # within their timeout plus the linger (slowhttptest reconnects: "closed in" is the time
    # until none of its connections was open any more, -1 if that never happened).
    if python3 -c "import sys; c = float('$closed_in'); sys.exit(0 if 0 <= c <= $limit else 1)"; then :; else verdict="SLOW"; fi
    # The closing times are the check; the share is reported (a shared 2-core host running
    # wrk, slowhttptest and herd at once is too noisy to hold it to 0.90 in CI).
    [ "$verdict" = ok ] || failed=1
    python3 -c "import sys; sys.exit(0 if float('$share') >= 0.9 else 1)" || verdict="$verdict (wrk<0.9)"
    printf '%-13s %6s %12s %10.0f %10s %8s %s\n' "$mode" "$peak" "$closed_in" "$BASE" "$share" \
        "$((peak_rss / 1024))" "$verdict"
done
if [ "$CHECK" = 1 ] && [ "$failed" = 1 ]; then
    say "a goal was missed (see above; logs in $WORK)"
    exit 1
fi
exit 0
