#!/usr/bin/env python3
"""Drive a known load at a running herd and check, through a real Prometheus server's HTTP
API, that herd's counters moved by exactly the load's amounts and that every series listed in
docs/metrics.md exists. Standard library only; loopback only; every wait is bounded.

Started by .ci/interop-prometheus.sh, which starts herd (2 workers, listeners named site,
admin, frames, wsonly, lines) and Prometheus (scraping herd's admin listener every second).
"""

import argparse
import base64
import json
import os
import re
import socket
import ssl
import struct
import sys
import time
import urllib.parse
import urllib.request

TIMEOUT = 10


def say(*a):
    print("prometheus-check:", *a, file=sys.stderr, flush=True)


# --- Prometheus API ----------------------------------------------------------------------------

class Prom:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, q):
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            doc = json.load(r)
        if doc.get("status") != "success":
            raise RuntimeError(f"query {q!r}: {doc}")
        return doc["data"]["result"]

    def scalar(self, q):
        """The single value of q (sum'd by the caller), or None when there is no sample."""
        res = self.query(q)
        if not res:
            return None
        if len(res) != 1:
            raise RuntimeError(f"{q!r} gave {len(res)} series: {res}")
        return float(res[0]["value"][1])

    def wait_for(self, q, pred, what, limit=30.0):
        """Poll q until pred(value) holds (bounded); returns the value."""
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            last = self.scalar(q)
            if last is not None and pred(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"{what}: {q} = {last} after {limit} s")


# --- the load ------------------------------------------------------------------------------

def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_http_response(f):
    """Read one response from a file object; returns (status, body)."""
    status_line = f.readline()
    if not status_line:
        raise RuntimeError("connection closed before a response")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    return status, f.read(length)


def http_load(port, conns, per_conn, posts, body_len, missing):
    """conns keep-alive connections doing per_conn GET / each; one more connection sending
    `posts` POSTs with a body (answered 405 by the bundled site: method not allowed) and
    `missing` GETs of a missing path (404). Returns what was done."""
    done = {"get_2xx": 0, "4xx_get": 0, "4xx_post": 0, "conns": 0, "body_in": 0}
    for _ in range(conns):
        s = connect(port)
        f = s.makefile("rb")
        done["conns"] += 1
        for _ in range(per_conn):
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            st, _ = read_http_response(f)
            assert st == 200, st
            done["get_2xx"] += 1
        s.close()
    s = connect(port)
    f = s.makefile("rb")
    done["conns"] += 1
    body = b"x" * body_len
    for _ in range(posts):
        s.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % body_len + body)
        st, _ = read_http_response(f)
        assert 400 <= st < 500, st
        done["4xx_post"] += 1
        done["body_in"] += body_len
    for _ in range(missing):
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        st, _ = read_http_response(f)
        assert st == 404, st
        done["4xx_get"] += 1
    s.close()
    return done


def ws_frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
    else:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read_frame(f):
    b0, b1 = f.read(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    return b0 & 0x0F, f.read(n)


def ws_load(port, path, conns, msgs):
    """conns WebSocket connections, each echoing msgs text messages then closing with 1000."""
    for _ in range(conns):
        s = connect(port)
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                  b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        f = s.makefile("rb")
        assert b" 101 " in f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        for i in range(msgs):
            s.sendall(ws_frame(1, b"hello %d" % i))
            op, data = ws_read_frame(f)
            assert (op, data) == (1, b"hello %d" % i), (op, data)
        s.sendall(ws_frame(8, struct.pack(">H", 1000) + b"bye"))
        op, _ = ws_read_frame(f)
        assert op == 8, op
        assert f.read(1) == b""  # the server closes TCP after its Close
        s.close()
    return conns * msgs


FRAME_HEADER = struct.Struct(">IHHI")


def frame_load(port, echo, upper, unknown):
    """One connection: `echo` ECHO (id 1), `upper` UPPER (id 3, on the pool) and `unknown`
    requests for id 9 (no route); reads every answer."""
    s = connect(port)
    f = s.makefile("rb")
    rid = 0
    for msg_id, n in ((1, echo), (3, upper), (9, unknown)):
        for _ in range(n):
            rid += 1
            s.sendall(FRAME_HEADER.pack(4, msg_id, 0, rid) + b"herd")
            length, _, flags, got = FRAME_HEADER.unpack(f.read(FRAME_HEADER.size))
            f.read(length)
            assert got == rid, (got, rid)
    s.close()


def line_load(port, conns, lines):
    for _ in range(conns):
        s = connect(port)
        f = s.makefile("rb")
        for i in range(lines):
            s.sendall(b"line %d\n" % i)
            assert f.readline() == b"line %d\n" % i
        s.close()
    return conns * lines


def tls_line_load(port, ca, conns):
    """`conns` TLS connections that echo one line each, then one plain-text connection that
    the TLS listener must refuse (counted as not_tls)."""
    ctx = ssl.create_default_context(cafile=ca)
    for i in range(conns):
        with ctx.wrap_socket(connect(port), server_hostname="localhost") as s:
            s.sendall(b"tls %d\n" % i)
            assert s.makefile("rb").readline() == b"tls %d\n" % i
    s = connect(port)
    s.sendall(b"plain text to a TLS port\n")
    s.settimeout(TIMEOUT)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    return conns


def proxy_line_load(port):
    """Connections to a PROXY-protocol echo listener: two with a version 1 header, one with a
    version 2 header (each then echoes a line), and one that skips the header (closed,
    counted as not_proxy). Returns the number of headers sent."""
    v1 = [b"PROXY TCP4 192.0.2.%d 127.0.0.1 4000%d %d\r\n" % (i, i, port) for i in (1, 2)]
    addrs = bytes([192, 0, 2, 3, 127, 0, 0, 1]) + struct.pack(">HH", 40003, port)
    v2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs)) + addrs
    for i, head in enumerate(v1 + [v2]):
        s = connect(port)
        s.sendall(head + b"proxied %d\n" % i)
        assert s.makefile("rb").readline() == b"proxied %d\n" % i
        s.close()
    s = connect(port)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    s.settimeout(TIMEOUT)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    return len(v1) + 1


# --- the checks ----------------------------------------------------------------------------

def documented_series(path):
    names = []
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\| `(herd_[a-z_]+)` \| (\w+) \|", line)
        if m:
            names.append((m.group(1), m.group(2)))
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", type=int, required=True)
    ap.add_argument("--site", type=int, required=True)
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--ws", type=int, required=True)
    ap.add_argument("--lines", type=int, required=True)
    ap.add_argument("--tls-lines", type=int, required=True)
    ap.add_argument("--proxy-lines", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--docs", required=True)
    a = ap.parse_args()
    prom = Prom(a.prometheus)

    # herd is up and both workers report, as Prometheus sees it.
    prom.wait_for('up{job="herd"}', lambda v: v == 1, "Prometheus scrapes herd", 60)
    prom.wait_for("herd_workers_reporting", lambda v: v == 2, "both workers report", 30)

    def total(metric, **labels):
        sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f"sum({metric}{{{sel}}}) or vector(0)"

    checks = {
        "site GET 2xx": total("herd_http_requests_total", listener="site", method="GET",
                              status_class="2xx"),
        "site GET 4xx": total("herd_http_requests_total", listener="site", method="GET",
                              status_class="4xx"),
        "site POST 4xx": total("herd_http_requests_total", listener="site", method="POST",
                               status_class="4xx"),
        "site accepted": total("herd_connections_accepted_total", listener="site"),
        "site closed": total("herd_connections_closed_total", listener="site"),
        "site request bodies": total("herd_http_request_body_bytes_total", listener="site"),
        "site durations": total("herd_http_request_duration_seconds_count", listener="site"),
        "site ws messages in": total("herd_ws_messages_received_total", listener="site"),
        "ws-only messages in": total("herd_ws_messages_received_total", listener="wsonly"),
        "ws-only messages out": total("herd_ws_messages_sent_total", listener="wsonly"),
        "ws-only closes 1000": total("herd_ws_closes_total", listener="wsonly", code="1000"),
        "ws-only accepted": total("herd_connections_accepted_total", listener="wsonly"),
        "frame echo": total("herd_frame_requests_total", listener="frames", msg_id="1"),
        "frame upper": total("herd_frame_requests_total", listener="frames", msg_id="3"),
        "frame unknown id": total("herd_frame_errors_total", listener="frames",
                                  kind="unknown_id"),
        "lines in": total("herd_messages_received_total", listener="lines"),
        "lines accepted": total("herd_connections_accepted_total", listener="lines"),
        "tls handshakes": total("herd_tls_handshakes_total", listener="lines-tls"),
        "tls not_tls": total("herd_tls_failures_total", listener="lines-tls", reason="not_tls"),
        "proxy headers": total("herd_proxy_headers_total", listener="lines-proxy"),
        "proxy not_proxy": total("herd_proxy_failures_total", listener="lines-proxy",
                                 reason="not_proxy"),
        "proxy lines in": total("herd_messages_received_total", listener="lines-proxy"),
    }
    before = {k: prom.scalar(q) or 0.0 for k, q in checks.items()}
    say("before:", before)

    # The load; each generator reports what it did.
    h = http_load(a.site, conns=8, per_conn=50, posts=5, body_len=1000, missing=7)
    site_ws = ws_load(a.site, "/ws", conns=2, msgs=10)
    ws_msgs = ws_load(a.ws, "/anything", conns=4, msgs=25)
    frame_load(a.frames, echo=30, upper=10, unknown=2)
    lines = line_load(a.lines, conns=5, lines=20)
    tls_conns = tls_line_load(a.tls_lines, a.ca, conns=3)
    proxied = proxy_line_load(a.proxy_lines)
    say("load done:", h, f"site ws {site_ws}, ws {ws_msgs}, lines {lines}")

    expected = {
        "site GET 2xx": h["get_2xx"],
        "site GET 4xx": h["4xx_get"],
        "site POST 4xx": h["4xx_post"],
        # The WebSocket connections on the site listener are accepted there too.
        "site accepted": h["conns"] + 2,
        "site closed": h["conns"] + 2,
        "site request bodies": h["body_in"],
        # Upgrade requests are not HTTP responses the site finishes: 101 is counted by the
        # WebSocket layer, not as an HTTP request.
        "site durations": h["get_2xx"] + h["4xx_get"] + h["4xx_post"],
        "site ws messages in": site_ws,
        "ws-only messages in": ws_msgs,
        "ws-only messages out": ws_msgs,
        "ws-only closes 1000": 4,
        "ws-only accepted": 4,
        "frame echo": 30,
        "frame upper": 10,
        "frame unknown id": 2,
        "lines in": lines,
        "lines accepted": 5,
        "tls handshakes": tls_conns,
        "tls not_tls": 1,
        "proxy headers": proxied,
        "proxy not_proxy": 1,
        "proxy lines in": proxied,
    }
    failures = []
    for k, q in checks.items():
        want = before[k] + expected[k]
        try:
            got = prom.wait_for(q, lambda v, w=want: v >= w, k, 30)
        except AssertionError as e:
            failures.append(str(e))
            continue
        if got != want:
            failures.append(f"{k}: {q} = {got}, expected exactly {want}")
        else:
            say(f"ok: {k} moved by {expected[k]:g} (now {got:g})")
    # Still exact one scrape later (nothing counted twice by a second worker's record).
    prom.wait_for("time() - max(timestamp(herd_workers_reporting))", lambda v: v < 3,
                  "fresh scrape", 10)
    for k, q in checks.items():
        want = before[k] + expected[k]
        got = prom.scalar(q)
        if got != want:
            failures.append(f"{k} (re-read): {got}, expected {want}")

    # Every documented series exists in Prometheus.
    series = documented_series(a.docs)
    assert len(series) > 20, f"only {len(series)} series found in {a.docs}"
    missing = []
    for name, kind in series:
        probe = name + "_count" if kind == "histogram" else name
        if not prom.query(f'count({{__name__="{probe}"}})'):
            missing.append(name)
    if missing:
        failures.append(f"documented but not in Prometheus: {missing}")
    else:
        say(f"ok: all {len(series)} documented series exist in Prometheus")

    if failures:
        for f in failures:
            say("FAIL:", f)
        print(f"{len(checks) * 2 + 1 - len(failures)} passed, {len(failures)} failed")
        return 1
    print(f"{len(checks) * 2 + 1} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
