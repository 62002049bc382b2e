"""Interop check: Python clients against herd's TLS listeners.

Run by .ci/interop-tls.sh against a real `herd` master whose config has the site (HTTP and
WebSocket) over TLS, the frame demo over TLS and echo over TLS, with certificates the script
made with openssl. Checks: python `ssl` + http.client (keep-alive, ALPN http/1.1, SNI), the
`websockets` client over wss on the https port, the frame protocol over TLS (12-byte header:
u32 body length, u16 message id, u16 flags, u32 request id, big-endian; id 1 echoes), echo
lines over TLS, TLS 1.2 and 1.3, and bad input that must get a clean close: plain HTTP (a
plain-text 400), random bytes, a truncated ClientHello, and a client that does not trust the
certificate.

Usage: python check.py --ca CA.pem --https P --frame P --echo P
Every socket operation has a timeout; only 127.0.0.1 is contacted. Prints one line per check
and "tls-interop: N passed, M failed"; exits 1 if any failed.
"""

import argparse
import asyncio
import http.client
import os
import socket
import ssl
import struct
import sys
import traceback

TIMEOUT = 10.0
HEADER = struct.Struct(">IHHI")
HOST = "127.0.0.1"


def ctx(ca, version=None, alpn=True):
    c = ssl.create_default_context(cafile=ca)
    if version is not None:
        c.minimum_version = version
        c.maximum_version = version
    if alpn:
        c.set_alpn_protocols(["http/1.1"])
    return c


def tls_socket(args, port, name="localhost", version=None, alpn=True):
    raw = socket.create_connection((HOST, port), timeout=TIMEOUT)
    return ctx(args.ca, version, alpn).wrap_socket(raw, server_hostname=name)


def check_http_keepalive(args):
    conn = http.client.HTTPSConnection(HOST, args.https, timeout=TIMEOUT,
                                       context=ctx(args.ca))
    # The certificate is for localhost; connect by IP but verify the name.
    conn._context.check_hostname = False
    for path in ["/", "/api/status", "/"]:
        conn.request("GET", path, headers={"Host": "localhost"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, (path, r.status)
        assert body, path
    assert conn.sock.selected_alpn_protocol() == "http/1.1", conn.sock.selected_alpn_protocol()
    conn.close()


def check_versions(args):
    for v, want in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]:
        s = tls_socket(args, args.https, version=v)
        assert s.version() == want, (s.version(), want)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:40]
        s.close()


def check_sni(args):
    for name in ["localhost", "a.test", "x.b.test"]:
        s = tls_socket(args, args.https, name=name)
        cert = s.getpeercert()
        sans = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
        assert any(n == name or (n.startswith("*.") and name.endswith(n[1:])) for n in sans), (name, sans)
        s.close()


def check_wss(args):
    import websockets.sync.client as wsc
    c = ctx(args.ca, alpn=False)
    with wsc.connect(f"wss://localhost:{args.https}/ws", ssl=c, open_timeout=TIMEOUT,
                     close_timeout=TIMEOUT, sock=socket.create_connection((HOST, args.https), timeout=TIMEOUT),
                     server_hostname="localhost") as ws:
        for msg in ["hello over wss", "x" * 70000]:
            ws.send(msg)
            assert ws.recv(timeout=TIMEOUT) == msg
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01binary"


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def check_frame(args):
    s = tls_socket(args, args.frame, alpn=False)
    bodies = [b"ping-%d" % i for i in range(20)] + [os.urandom(50000)]
    s.sendall(b"".join(HEADER.pack(len(b), 1, 0, i + 1) + b for i, b in enumerate(bodies)))
    for i, b in enumerate(bodies):
        length, msg_id, flags, rid = HEADER.unpack(recv_exact(s, HEADER.size))
        body = recv_exact(s, length)
        assert (msg_id, rid, body) == (1, i + 1, b), (msg_id, rid, len(body))
    s.close()


def check_echo(args):
    s = tls_socket(args, args.echo, alpn=False)
    f = s.makefile("rwb")
    for line in [b"one\n", b"two\n"]:
        f.write(line)
        f.flush()
        assert f.readline() == line
    s.close()


def closed_cleanly(s):
    s.settimeout(TIMEOUT)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def check_plain_http(args):
    s = socket.create_connection((HOST, args.https), timeout=TIMEOUT)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = closed_cleanly(s)
    assert data.startswith(b"HTTP/1.1 400"), data[:60]
    assert b"HTTPS" in data


def check_random_bytes(args):
    s = socket.create_connection((HOST, args.frame), timeout=TIMEOUT)
    s.sendall(os.urandom(700))
    closed_cleanly(s)


def check_truncated_hello(args):
    # A real ClientHello, cut in the middle, then our side closes.
    c = ctx(args.ca)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = c.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    s = socket.create_connection((HOST, args.https), timeout=TIMEOUT)
    s.sendall(hello[: len(hello) // 2])
    s.shutdown(socket.SHUT_WR)
    closed_cleanly(s)


def check_untrusted(args):
    c = ssl.create_default_context()  # system roots: the test CA is not among them
    raw = socket.create_connection((HOST, args.https), timeout=TIMEOUT)
    try:
        c.wrap_socket(raw, server_hostname="localhost")
    except ssl.SSLCertVerificationError:
        return
    raise AssertionError("an untrusted certificate was accepted")


CHECKS = [check_http_keepalive, check_versions, check_sni, check_wss, check_frame, check_echo,
          check_plain_http, check_random_bytes, check_truncated_hello, check_untrusted]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ca", required=True)
    p.add_argument("--https", type=int, required=True)
    p.add_argument("--frame", type=int, required=True)
    p.add_argument("--echo", type=int, required=True)
    args = p.parse_args()
    passed = failed = 0
    for check in CHECKS:
        try:
            check(args)
            print(f"ok   {check.__name__}")
            passed += 1
        except Exception:
            print(f"FAIL {check.__name__}")
            traceback.print_exc()
            failed += 1
    print(f"tls-interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
