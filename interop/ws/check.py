"""WebSocket interop checks against herd's ws_echo example, with python's `websockets`.

Run by .ci/interop-ws.sh: `check.py --port P --max-message N [--deflate off|shared|takeover]`,
once per ws_echo `--deflate` mode. The client offers permessage-deflate (websockets does by
default); `--deflate` says what the server must have answered. With compression on, the
invalid-UTF-8 and oversized frames go out compressed, so the server's inflate limit and its
UTF-8 check after inflating are what answer 1009 and 1007. Every check has a timeout; the
script exits non-zero if any fails, naming each.
"""

import argparse
import asyncio
import socket
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

TIMEOUT = 10


async def echo(uri):
    async with connect(uri) as ws:
        await ws.send("hello, herd")
        assert await ws.recv() == "hello, herd"
        await ws.send(b"\x00\x01\xff")
        assert await ws.recv() == b"\x00\x01\xff"
        big = bytes(range(256)) * 200  # 51200 bytes, 64-bit length header
        await ws.send(big)
        assert await ws.recv() == big
        text = "héllo wörld ✓ " * 10
        await ws.send(text)
        assert await ws.recv() == text


async def fragmentation(uri):
    async with connect(uri) as ws:
        await ws.send(["frag", "men", "ted ✓"])  # an iterable is sent as fragments
        assert await ws.recv() == "fragmented ✓"
        await ws.send([b"ab", b"cd"])
        assert await ws.recv() == b"abcd"


async def ping(uri):
    async with connect(uri) as ws:
        pong = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(pong, TIMEOUT)
        assert latency >= 0


async def close_code(uri):
    ws = await connect(uri)
    await ws.close(code=4001, reason="done here")
    assert ws.close_code == 4001, ws.close_code
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None and rcvd.code == 4001, rcvd


async def expect_close(uri, frame, code):
    async with connect(uri) as ws:
        # Bypass the client's own checks: write the raw frame through the protocol object.
        ws.protocol.send_frame(frame)
        ws.send_data()  # type: ignore[attr-defined]
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            raise AssertionError("no close")
        except ConnectionClosed as e:
            got = e.rcvd.code if e.rcvd else None
            assert got == code, f"expected close {code}, got {got}"


async def invalid_utf8(uri):
    await expect_close(uri, Frame(Opcode.TEXT, b"ok \xff\xfe"), 1007)


async def oversized(uri, max_message):
    await expect_close(uri, Frame(Opcode.BINARY, b"x" * (max_message + 1)), 1009)


async def deflate_negotiated(uri, mode):
    async with connect(uri) as ws:
        exts = ws.protocol.extensions
        if mode == "off":
            assert exts == [], f"server accepted {exts} with compression off"
            return
        assert len(exts) == 1 and exts[0].name == "permessage-deflate", exts
        pmd = exts[0]
        reset = mode == "shared"
        # remote = the server's compressor, local = ours; both reset per message when shared.
        assert pmd.remote_no_context_takeover == reset, vars(pmd)
        assert pmd.local_no_context_takeover == reset, vars(pmd)
        # Watch the RSV1 bit of what arrives, below the extension's decoder.
        seen = []
        decode = pmd.decode

        def spy(frame, *, max_size=None):
            seen.append((frame.opcode, frame.rsv1, len(frame.data)))
            return decode(frame, max_size=max_size)

        pmd.decode = spy
        text = "herd compresses this line of text. " * 400  # 14000 bytes, very compressible
        for _ in range(5):
            await ws.send(text)
            assert await ws.recv() == text
        binary = bytes(range(256)) * 64
        await ws.send(binary)
        assert await ws.recv() == binary
        await ws.send("short")  # below the threshold: sent back uncompressed
        assert await ws.recv() == "short"
        parts = ["frag", "mented " * 100, "✓"]  # compressed as one message, sent in 3 frames
        await ws.send(parts)
        assert await ws.recv() == "".join(parts)
        compressed = [s for s in seen if s[1]]
        assert len(compressed) >= 7, seen
        assert all(n < 1000 for (_, rsv1, n) in seen[:5]), seen[:5]
        assert not seen[6][1], f"a 5-byte message came back compressed: {seen[6]}"


def raw_bad_version(port):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 426 "), head
        assert b"Sec-WebSocket-Version: 13" in head, head


def raw_unmasked(port):
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, "closed during the handshake"
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 101 "), buf
        rest = buf.split(b"\r\n\r\n", 1)[1]
        s.sendall(b"\x81\x02hi")  # unmasked client frame
        while len(rest) < 4:
            chunk = s.recv(4096)
            assert chunk, "closed without a Close frame"
            rest += chunk
        assert rest[0] == 0x88 and int.from_bytes(rest[2:4], "big") == 1002, rest


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-message", type=int, required=True)
    ap.add_argument("--deflate", choices=["off", "shared", "takeover"], default="off")
    args = ap.parse_args()
    print(f"--- ws_echo with --deflate {args.deflate}")
    uri = f"ws://127.0.0.1:{args.port}/interop"
    checks = [
        ("echo", echo(uri)),
        (f"permessage-deflate {args.deflate}", deflate_negotiated(uri, args.deflate)),
        ("fragmentation", fragmentation(uri)),
        ("ping", ping(uri)),
        ("close code", close_code(uri)),
        ("invalid utf-8 -> 1007", invalid_utf8(uri)),
        ("oversized -> 1009", oversized(uri, args.max_message)),
    ]
    failed = 0
    for name, coro in checks:
        try:
            await asyncio.wait_for(coro, TIMEOUT)
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001 - report every failure by name
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    for name, fn in [("bad version -> 426", raw_bad_version), ("unmasked -> 1002", raw_unmasked)]:
        try:
            fn(args.port)
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)


asyncio.run(main())
