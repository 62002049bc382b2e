#!/usr/bin/env bash
# Slow and hostile clients: bench/slowhttp.sh's short run (slowhttptest's four attacks at
# 200 connections for 10 s each, herd with 5 s timeouts and a 2 s lingering close), which
# fails unless herd has closed every attack's connections within timeout + linger + 2 s of
# their peak. The parallel client's share of its baseline is printed, not checked (see the
# script). .ci/run calls it; it also runs by hand.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONNS=${CONNS:-200} LENGTH=${LENGTH:-10} CHECK=1 exec bash "$ROOT/bench/slowhttp.sh"
