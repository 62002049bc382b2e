#!/usr/bin/env python3
"""Check the bundled dashboard in headless Chromium against herd's own /metrics.

Started by .ci/interop-dashboard.sh with herd running (2 workers; a `site` http listener and
an `admin` listener). Drives HTTP load at the site in rounds, reloads the master (HUP) and
kills one worker in between so the history has markers, then loads the dashboard from the
admin listener in headless Chromium (--dump-dom) and checks: no page errors, every chart has
a drawn line, the request chart is non-zero, the reload and restart markers are drawn, and the
listener table's numbers equal /metrics. A screenshot at phone width is saved for review.
Standard library only; loopback only; every wait is bounded.
"""

import argparse
import html.parser
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

TIMEOUT = 10


def say(*a):
    print("dashboard-check:", *a, file=sys.stderr, flush=True)


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as r:
        return r.read().decode()


def metric(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    return total if found else None


def wait_for(what, f, limit=30.0):
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        last = f()
        if last is True:
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} (last: {last})")


def http_round(port, n):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    f = s.makefile("rb")
    for _ in range(n):
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b" 200 " in f.readline()
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        f.read(length)
    s.close()


class Dom(html.parser.HTMLParser):
    """Collects the elements the checks look at (by id / data attributes)."""

    def __init__(self):
        super().__init__()
        self.charts = {}       # id -> attrs
        self.paths = []        # (chart id, data-points)
        self.markers = []      # data-kind
        self.rows = {}         # listener -> attrs
        self.errors = None
        self.stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "div" and "chart" in cls:
            self.charts[a["id"]] = a
            self.current = a["id"]
        elif tag == "path" and "data-points" in a:
            self.paths.append((self.current, int(a["data-points"])))
        elif tag == "g" and "marker" in cls:
            self.markers.append(a.get("data-kind"))
        elif tag == "tr" and "data-listener" in a:
            self.rows[a["data-listener"]] = a
        elif tag == "pre" and a.get("id") == "page-errors":
            self.errors = a


def chromium(args, out_path=None, extra=()):
    cmd = [args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={args.work}/chromium-profile",
           "--enable-logging=stderr", "--v=0", "--window-size=412,2200",
           "--virtual-time-budget=6000", *extra, f"http://127.0.0.1:{args.admin}/"]
    r = subprocess.run(cmd, capture_output=True, timeout=120, text=True)
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    if r.returncode != 0:
        raise AssertionError(f"chromium exited {r.returncode}: {r.stderr[-2000:]}")
    return r.stdout, console


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", type=int, required=True)
    ap.add_argument("--admin", type=int, required=True)
    ap.add_argument("--master-pid", type=int, required=True)
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    checks = []

    def check(ok, what):
        checks.append((ok, what))
        say(("ok: " if ok else "FAIL: ") + what)

    def scrape():
        return get(a.admin, "/metrics")

    wait_for("2 workers report", lambda: metric(scrape(), "herd_workers_reporting") == 2 or None)
    # Rounds of load a second apart, so the history has several non-zero points.
    for _ in range(4):
        http_round(a.site, 150)
        time.sleep(0.6)
    # A reload (new generation) and a worker restart, for the markers.
    os.kill(a.master_pid, signal.SIGHUP)
    wait_for("generation 2 serving", lambda: (
        metric(scrape(), "herd_generation") == 2 and
        metric(scrape(), "herd_workers_reporting") == 2) or None)
    status = get(a.admin, "/api/status")
    pid = int(re.search(r'"worker_pid":(\d+)', status).group(1))
    os.kill(pid, signal.SIGKILL)  # a worker of the master this script's caller started
    wait_for("the worker restart is counted", lambda: (
        (metric(scrape(), "herd_worker_restarts_total") or 0) >= 1 and
        metric(scrape(), "herd_workers_reporting") == 2) or None)
    sent = 0
    for _ in range(3):
        http_round(a.site, 100)
        sent += 100
        time.sleep(0.6)
    # The load is over: /metrics must settle on it (the restarted worker started from zero,
    # so the site's count is at most what was sent since the reload).
    wait_for("metrics settle", lambda: (
        metric(scrape(), "herd_connections_open", listener="site") == 0) or None)
    # Open == 0 does not yet mean every worker has published its last snapshot (each
    # refreshes about once a second, on its own phase): the values must stop moving within a
    # few refresh periods, and then stay put over a whole period.
    m2 = scrape()
    for _ in range(6):
        m1 = m2
        time.sleep(1.2)
        m2 = scrape()
        if (metric(m1, "herd_messages_received_total", listener="site") ==
                metric(m2, "herd_messages_received_total", listener="site")):
            break
    want_msgs = metric(m2, "herd_messages_received_total", listener="site")
    want_acc = metric(m2, "herd_connections_accepted_total", listener="site")
    check(want_msgs == metric(m1, "herd_messages_received_total", listener="site"),
          f"/metrics is stable after the load ({want_msgs:g} site requests)")

    page, console = chromium(a, extra=["--dump-dom"])
    with open(os.path.join(a.work, "dashboard.html"), "w") as f:
        f.write(page)
    dom = Dom()
    dom.feed(page)
    check(not console, f"no console errors ({console[:3]})")
    check(dom.errors is not None and "data-count" not in dom.errors,
          f"the page recorded no errors ({dom.errors})")
    for cid in ("c-conns", "c-msgs", "c-bytes", "c-closes", "c-latency"):
        pts = int(dom.charts.get(cid, {}).get("data-points", "0"))
        check(pts >= 3, f"chart {cid} drew {pts} points")
    mx = float(dom.charts.get("c-msgs", {}).get("data-max", "0"))
    check(mx > 0, f"the requests chart is non-zero (peak {mx:.1f}/s)")
    check("reload" in dom.markers, f"a reload marker is drawn ({dom.markers})")
    check("restart" in dom.markers, f"a worker-restart marker is drawn ({dom.markers})")
    row = dom.rows.get("site", {})
    got_msgs = float(row.get("data-msgs-in", "-1"))
    got_acc = float(row.get("data-accepted", "-1"))
    check(got_msgs == want_msgs, f"page: site requests {got_msgs:g} = /metrics {want_msgs:g}")
    check(got_acc == want_acc, f"page: site accepted {got_acc:g} = /metrics {want_acc:g}")

    shot = os.path.join(a.work, "dashboard.png")
    chromium(a, extra=[f"--screenshot={shot}"])
    check(os.path.getsize(shot) > 10_000, f"screenshot saved: {shot}")

    failed = sum(1 for ok, _ in checks if not ok)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
