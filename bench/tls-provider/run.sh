#!/usr/bin/env bash
# The crypto-provider measurement behind docs/tls.md: for aws-lc-rs (rustls' default, with the
# X25519MLKEM768 hybrid), aws-lc-rs pinned to X25519, and ring pinned to X25519, time full
# TLS 1.3 handshakes, ticket resumptions and 16 KiB records (client and server in one thread,
# in memory), interleaved, ROUNDS rounds on each of cores 0 and 1; prints best and median.
# Not part of CI (ring must not enter herd's build); run by hand: bench/tls-provider/run.sh
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/../../target/tls-provider}
cargo build --release -q
B=$CARGO_TARGET_DIR/release/herd-tls-provider-bench
out=$(mktemp)
for _ in $(seq "$ROUNDS"); do
    for p in aws-lc-rs aws-lc-rs-x25519 ring-x25519; do
        for m in "handshake 500" "resume 500" "bulk 20000"; do
            for c in 0 1; do
                # shellcheck disable=SC2086
                taskset -c "$c" "$B" "$p" $m 2>/dev/null >>"$out"
            done
        done
    done
done
printf '%-18s %-10s %10s %10s  (us per op)\n' provider op best median
sort -k1,1 -k2,2 -k4n "$out" | awk '
    { k = $1 " " $2; v[k, ++n[k]] = $4 }
    END { for (k in n) { split(k, f, " "); printf "%-18s %-10s %10.1f %10.1f\n", f[1], f[2], v[k, 1], v[k, int((n[k] + 1) / 2)] } }' | sort
rm -f "$out"
