"""Interop check: a Python client of herd's frame protocol against the chat example.

The protobuf classes are generated from examples/proto/chat.proto by protoc (grpcio-tools);
the framing (12-byte header: u32 length, u16 message id, u16 flags, u32 request id, all
big-endian) is written here by hand from the protocol's documentation, so both the wire format
and the .proto are checked against an independent implementation.

Usage: python check.py --port P [--host 127.0.0.1] [--gen DIR] [--max-frame N]
Every socket operation has a timeout; the script connects only to the given loopback address.
Prints one line per check and a closing "frame-interop: N passed, M failed" line; exits 1 if
any check failed.
"""

import argparse
import socket
import struct
import sys
import time
import traceback

HEADER = struct.Struct(">IHHI")
RESPONSE, ERROR, PUSH = 1, 2, 4
ERROR_ID, PING_ID, PONG_ID = 0xFFFF, 0xFFFE, 0xFFFD
UNKNOWN_ID, BAD_BODY, HANDLER, BUSY, TOO_LARGE, PROTOCOL, INTERNAL = range(1, 8)
LOGIN, JOIN, LEAVE, SAY, HISTORY, ECHO, CHAT = 1, 2, 3, 4, 5, 6, 100
TIMEOUT = 10.0

pb = None  # the generated chat_pb2 module, imported in main()


def frame(msg_id, body=b"", flags=0, rid=0):
    return HEADER.pack(len(body), msg_id, flags, rid) + body


class Closed(Exception):
    pass


class ServerError(Exception):
    def __init__(self, code, text):
        super().__init__(f"server error {code}: {text}")
        self.code, self.text = code, text


class Conn:
    """One connection: request ids, replies matched by id, other frames kept in order."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_rid = 1
        self.kept = []

    def rid(self):
        r = self.next_rid
        self.next_rid += 1
        return r

    def send(self, data):
        self.sock.sendall(data)

    def read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed(f"closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def recv_frame(self):
        length, msg_id, flags, rid = HEADER.unpack(self.read_exact(HEADER.size))
        body = self.read_exact(length) if length else b""
        if msg_id == PING_ID:  # answer server heartbeats like any client must
            self.send(frame(PONG_ID, flags=RESPONSE, rid=rid))
            return self.recv_frame()
        return msg_id, flags, rid, body

    def wait(self, pred):
        for i, f in enumerate(self.kept):
            if pred(f):
                return self.kept.pop(i)
        while True:
            f = self.recv_frame()
            if pred(f):
                return f
            self.kept.append(f)

    def reply(self, rid):
        f = self.wait(lambda f: f[1] & RESPONSE and f[2] == rid)
        msg_id, flags, _, body = f
        if flags & ERROR:
            code, text = parse_error(body)
            raise ServerError(code, text)
        return f

    def call(self, msg_id, req, resp_cls):
        rid = self.rid()
        self.send(frame(msg_id, req.SerializeToString(), rid=rid))
        _, _, _, body = self.reply(rid)
        resp = resp_cls()
        resp.ParseFromString(body)
        return resp

    def push(self):
        return self.wait(lambda f: f[1] & PUSH)

    def closed_by_server(self):
        """True once the server closes (EOF or reset) within the timeout."""
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def parse_error(body):
    assert len(body) >= 2, f"error payload of {len(body)} bytes"
    return struct.unpack(">H", body[:2])[0], body[2:].decode("utf-8", "replace")


def expect_error(conn, rid, code):
    msg_id, flags, r, body = conn.wait(lambda f: f[1] & ERROR and f[2] == rid)
    assert msg_id == ERROR_ID, f"error frame id {msg_id:#x}"
    assert flags == RESPONSE | ERROR, f"error frame flags {flags}"
    got, text = parse_error(body)
    assert got == code, f"expected code {code}, got {got} ({text!r})"
    return text


def login(addr, name):
    c = Conn(addr)
    resp = c.call(LOGIN, pb.LoginReq(name=name), pb.LoginResp)
    assert resp.name == name and resp.online >= 1, resp
    return c


# ----- checks ------------------------------------------------------------------------------


def check_requests(addr):
    a = login(addr, "alice")
    b = login(addr, "bob")
    joined = a.call(JOIN, pb.JoinReq(room="lobby"), pb.JoinResp)
    assert list(joined.members) == ["alice"], joined
    joined = b.call(JOIN, pb.JoinReq(room="lobby"), pb.JoinResp)
    assert list(joined.members) == ["alice", "bob"], joined
    said = b.call(SAY, pb.SayReq(room="lobby", text="hello from python"), pb.SayResp)
    assert said.delivered == 1 and said.seq == 1, said
    msg_id, flags, rid, body = a.push()
    assert (msg_id, flags, rid) == (CHAT, PUSH, 0), (msg_id, flags, rid)
    chat = pb.ChatMsg()
    chat.ParseFromString(body)
    assert (chat.room, chat.text, chat.seq) == ("lobby", "hello from python", 1), chat
    assert getattr(chat, "from") == "bob"
    # The blocking query on the server's worker pool.
    hist = a.call(HISTORY, pb.HistoryReq(room="lobby", limit=10), pb.HistoryResp)
    assert [m.text for m in hist.messages] == ["hello from python"], hist
    left = a.call(LEAVE, pb.LeaveReq(room="lobby"), pb.LeaveResp)
    assert left.room == "lobby"
    said = b.call(SAY, pb.SayReq(room="lobby", text="anyone?"), pb.SayResp)
    assert said.delivered == 0, said
    a.close()
    b.close()


def check_pipelined(addr):
    c = login(addr, "piper")
    c.call(JOIN, pb.JoinReq(room="pipes"), pb.JoinResp)
    batch, expect = b"", {}
    for i in range(20):
        rid = c.rid()
        if i % 3 == 0:
            batch += frame(SAY, pb.SayReq(room="pipes", text=f"m{i}").SerializeToString(), rid=rid)
            expect[rid] = ("say", i)
        elif i % 3 == 1:
            batch += frame(HISTORY, pb.HistoryReq(room="pipes").SerializeToString(), rid=rid)
            expect[rid] = ("history", i)
        else:
            body = f"echo {i}".encode() * (i + 1)
            batch += frame(ECHO, body, rid=rid)
            expect[rid] = ("echo", body)
    c.send(batch)  # one write, 20 requests
    seqs = []
    for rid, (kind, arg) in expect.items():
        msg_id, flags, r, body = c.reply(rid)
        assert flags == RESPONSE and r == rid, (flags, r, rid)
        if kind == "echo":
            assert msg_id == ECHO and body == arg, (msg_id, body[:20])
        elif kind == "say":
            resp = pb.SayResp()
            resp.ParseFromString(body)
            seqs.append(resp.seq)
        else:
            pb.HistoryResp().ParseFromString(body)
    # SAYs on one connection are handled in order.
    assert seqs == sorted(seqs) and len(seqs) == 7, seqs
    c.close()


def check_ping(addr):
    c = Conn(addr)
    c.send(frame(PING_ID, rid=4242))
    msg_id, flags, rid, body = c.recv_frame()
    assert (msg_id, flags, rid, body) == (PONG_ID, RESPONSE, 4242, b""), (msg_id, flags, rid, body)
    # The exact bytes from the protocol documentation.
    c.send(bytes.fromhex("00000000 FFFE 0000 00000007".replace(" ", "")))
    assert c.read_exact(12) == bytes.fromhex("00000000FFFD000100000007")
    c.close()


def check_errors_keep_connection(addr):
    c = Conn(addr)
    rid = c.rid()
    c.send(frame(999, b"?", rid=rid))
    text = expect_error(c, rid, UNKNOWN_ID)
    assert "999" in text, text
    rid = c.rid()
    c.send(frame(LOGIN, b"\xff\xff\xff", rid=rid))  # not a LoginReq
    expect_error(c, rid, BAD_BODY)
    rid = c.rid()
    c.send(frame(JOIN, pb.JoinReq(room="x").SerializeToString(), rid=rid))
    assert expect_error(c, rid, HANDLER) == "log in first"
    # Still open and working.
    rid = c.rid()
    c.send(frame(ECHO, b"still here", rid=rid))
    assert c.reply(rid)[3] == b"still here"
    c.close()


def check_oversized(addr, max_frame):
    c = Conn(addr)
    # Only the header: the server must refuse from the length field alone.
    c.send(HEADER.pack(max_frame + 1, ECHO, 0, 77))
    text = expect_error(c, 0, TOO_LARGE)
    assert str(max_frame) in text, text
    assert c.closed_by_server(), "connection left open after an oversized frame"
    c.close()


def check_reserved_flags(addr):
    c = Conn(addr)
    c.send(frame(ECHO, b"x", flags=0x0100, rid=5))
    expect_error(c, 0, PROTOCOL)
    assert c.closed_by_server(), "connection left open after a protocol error"
    c.close()


def check_truncated(addr):
    whole = frame(ECHO, b"in two pieces", rid=9)
    c = Conn(addr)
    c.send(whole[:10])
    c.sock.settimeout(0.3)
    try:
        data = c.sock.recv(100)
        raise AssertionError(f"reply to a truncated frame: {data!r}")
    except socket.timeout:
        pass
    c.sock.settimeout(TIMEOUT)
    c.send(whole[10:])
    msg_id, flags, rid, body = c.recv_frame()
    assert (msg_id, flags, rid, body) == (ECHO, RESPONSE, 9, b"in two pieces")
    # A frame cut short by the client hanging up: the server shrugs, others are unaffected.
    c.send(whole[:5])
    c.close()
    d = Conn(addr)
    rid = d.rid()
    d.send(frame(ECHO, b"after", rid=rid))
    assert d.reply(rid)[3] == b"after"
    d.close()


CHECKS = [
    ("requests: login, join, say with push, history on the pool, leave", check_requests),
    ("pipelined: 20 mixed requests in one write", check_pipelined),
    ("ping answered with pong", check_ping),
    ("unknown id, bad body, handler error keep the connection", check_errors_keep_connection),
    ("oversized frame: TOO_LARGE then close", None),
    ("reserved flags: PROTOCOL then close", check_reserved_flags),
    ("truncated frames", check_truncated),
]


def main():
    global pb
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gen", default=".")
    ap.add_argument("--max-frame", type=int, default=65536)
    args = ap.parse_args()
    sys.path.insert(0, args.gen)
    import chat_pb2

    pb = chat_pb2
    addr = (args.host, args.port)
    passed = failed = 0
    for name, fn in CHECKS:
        started = time.monotonic()
        try:
            if fn is None:
                check_oversized(addr, args.max_frame)
            else:
                fn(addr)
            passed += 1
            print(f"ok    {name} ({(time.monotonic() - started) * 1000:.0f} ms)")
        except Exception as e:  # report every check, then fail at the end
            failed += 1
            print(f"FAIL  {name}: {e!r}")
            traceback.print_exc()
    print(f"frame-interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
