#!/usr/bin/env python3
"""bench/plot.py: SVG charts of a benchmark's results table (standard library only).

    python3 bench/plot.py KIND RESULTS OUTDIR

KIND is the script that wrote RESULTS (echo, frame, ws, http, callgrind); RESULTS is its
results file, one run a line: `SCENARIO SERVER ROUND ok VALUES...` (failed runs are skipped).
For each metric, one grouped bar chart (scenarios on the x axis, one bar per server, the
median over rounds, with the lowest and highest round as a whisker) is written to
OUTDIR/KIND-METRIC.svg:

    echo, frame, ws   throughput (ops/s), server CPU µs per op, p50 and p99 latency (µs)
    http              throughput (req/s), server CPU µs per request, p99 latency (µs)
    callgrind         user-space instructions per op

The scripts call it when PLOT=DIR is set (bench/lib.sh, on exit); it also runs by hand on a
results file kept with KEEP_LOGS=1.
"""

import os
import statistics
import sys
from collections import OrderedDict
from xml.sax.saxutils import escape

# KIND -> [(metric file name, title, column index among VALUES, unit)]
METRICS = {
    "bench": [
        ("throughput", "Throughput", 0, "ops/s"),
        ("cpu", "Server CPU per operation", 1, "µs"),
        ("latency-p50", "p50 latency", 2, "µs"),
        ("latency-p99", "p99 latency", 3, "µs"),
    ],
    "http": [
        ("throughput", "Throughput", 0, "req/s"),
        ("cpu", "Server CPU per request", 1, "µs"),
        ("latency-p99", "p99 latency", 2, "µs"),
    ],
    "tls": [
        ("throughput", "Throughput over TLS", 0, "req/s"),
        ("cpu", "Server CPU per request over TLS", 1, "µs"),
        ("latency-p99", "p99 latency over TLS", 2, "µs"),
    ],
    "callgrind": [("instructions", "User-space instructions per operation", 0, "Ir/op")],
}
COLORS = ["#2f6f4f", "#c2410c", "#1d4ed8", "#a21caf", "#0f766e", "#b45309", "#334155"]


def read(path):
    """{scenario: {server: [values per round]}} in first-seen order."""
    data = OrderedDict()
    for line in open(path, encoding="utf-8"):
        f = line.split()
        if len(f) < 5 or f[3] != "ok":
            continue
        vals = []
        for v in f[4:]:
            try:
                vals.append(float(v))
            except ValueError:
                vals.append(None)
        data.setdefault(f[0], OrderedDict()).setdefault(f[1], []).append(vals)
    return data


def nice(v):
    if v <= 0:
        return 1
    p = 10 ** len(str(int(v))) / 10
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= v:
            return m * p
    return 10 * p


def short(v):
    for d, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= d:
            return f"{v / d:.1f}{s}"
    return f"{v:.0f}" if abs(v) >= 10 or v == 0 else f"{v:.2f}"


def chart(title, unit, data, col):
    """One SVG: a group of bars per scenario."""
    scen = list(data)
    servers = []
    for s in scen:
        for srv in data[s]:
            if srv not in servers:
                servers.append(srv)
    stats = {}
    top = 0
    for s in scen:
        for srv, rounds in data[s].items():
            vals = [r[col] for r in rounds if len(r) > col and r[col] is not None]
            if vals:
                stats[s, srv] = (statistics.median(vals), min(vals), max(vals))
                top = max(top, max(vals))
    top = nice(top)
    W, H, L, R, T, B = max(480, 90 + 70 * len(scen) * max(1, len(servers)) // 2), 300, 64, 12, 40, 70
    gw = (W - L - R) / max(1, len(scen))
    bw = min(36, (gw - 16) / max(1, len(servers)))
    y = lambda v: T + (H - T - B) * (1 - v / top)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           'font-family="system-ui, sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',
           f'<text x="{L}" y="18" font-size="14" font-weight="600">{escape(title)} ({escape(unit)})</text>',
           f'<text x="{L}" y="32" fill="#667085">median of the rounds; whiskers: lowest and highest round</text>']
    for i in range(5):
        v = top * i / 4
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e4e7ec"/>')
        out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#667085">{short(v)}</text>')
    for gi, s in enumerate(scen):
        x0 = L + gi * gw + (gw - bw * len(servers)) / 2
        for si, srv in enumerate(servers):
            if (s, srv) not in stats:
                continue
            med, lo, hi = stats[s, srv]
            x = x0 + si * bw
            c = COLORS[si % len(COLORS)]
            out.append(f'<rect x="{x + 2:.1f}" y="{y(med):.1f}" width="{bw - 4:.1f}" '
                       f'height="{y(0) - y(med):.1f}" fill="{c}"><title>{escape(srv)} {escape(s)}: '
                       f'{med:g}</title></rect>')
            cx = x + bw / 2
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(hi):.1f}" y2="{y(lo):.1f}" stroke="#1d2330"/>')
            out.append(f'<text x="{cx:.1f}" y="{y(med) - 4:.1f}" text-anchor="middle" font-size="9">{short(med)}</text>')
        out.append(f'<text x="{L + gi * gw + gw / 2:.1f}" y="{H - B + 16}" text-anchor="middle">{escape(s)}</text>')
    lx = L
    for si, srv in enumerate(servers):
        out.append(f'<rect x="{lx}" y="{H - 24}" width="10" height="10" fill="{COLORS[si % len(COLORS)]}"/>')
        out.append(f'<text x="{lx + 14}" y="{H - 15}">{escape(srv)}</text>')
        lx += 24 + 7 * len(srv)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    kind, results, outdir = sys.argv[1:]
    data = read(results)
    if not data:
        print(f"plot: no successful runs in {results}", file=sys.stderr)
        return 0
    os.makedirs(outdir, exist_ok=True)
    metrics = METRICS.get(kind, METRICS["bench"])
    for name, title, col, unit in metrics:
        path = os.path.join(outdir, f"{kind}-{name}.svg")
        with open(path, "w", encoding="utf-8") as f:
            f.write(chart(f"{kind}: {title}", unit, data, col))
        print(f"plot: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
