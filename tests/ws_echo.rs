//! The `ws_echo` example (docs/websocket.md), run in-process with a 64 KiB message limit and
//! driven by a WebSocket client written in python3's standard library alone: the opening
//! handshake (its `Sec-WebSocket-Accept` checked against SHA-1 of the key), masked text and
//! binary frames with 7-, 16- and 64-bit lengths, a fragmented message, a ping, the close
//! handshake, and the closes RFC 6455 prescribes for an unmasked frame (1002), a text message
//! that is not UTF-8 (1007) and a message over the limit (1009); a plain request gets 404.

mod python_support;
#[allow(dead_code)] // the example's `main` and `options` are not called here
#[path = "../examples/ws_echo.rs"]
mod ws_echo;

use herd::ws::WsOptions;
use herd::Server;

const CLIENT: &str = r#"
import base64, hashlib, os, socket, struct

ADDR = ("127.0.0.1", {port})
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0

def recv_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise EOFError("closed after %d of %d bytes" % (len(data), n))
    return data

def connect(path="/echo"):
    s = socket.create_connection(ADDR, timeout=10)
    s.settimeout(10)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
              b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    f = s.makefile("rb")
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 101"), status
    headers = {}
    while True:
        line = f.readline()
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    expected = base64.b64encode(hashlib.sha1(key + GUID).digest())
    assert headers[b"sec-websocket-accept"] == expected, headers
    return s, f

def frame(opcode, payload, fin=True, mask=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

def read_frame(f):
    b0, b1 = recv_exact(f, 2)
    assert b1 & 0x80 == 0, "server frames are not masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", recv_exact(f, 2))
    elif n == 127:
        (n,) = struct.unpack(">Q", recv_exact(f, 8))
    return b0 & 0x80 != 0, b0 & 0x0F, recv_exact(f, n)

def close_code(f):
    fin, op, payload = read_frame(f)
    assert op == CLOSE, (op, payload)
    return struct.unpack(">H", payload[:2])[0]

s, f = connect()
s.sendall(frame(TEXT, "héllo".encode()))
assert read_frame(f) == (True, TEXT, "héllo".encode())

blob = os.urandom(20000)  # a 16-bit length
s.sendall(frame(BINARY, blob))
assert read_frame(f) == (True, BINARY, blob)

big = os.urandom(65536)  # a 64-bit length, exactly at the limit
s.sendall(frame(BINARY, big))
assert read_frame(f) == (True, BINARY, big)

# A fragmented message comes back as one message, with a ping answered in between.
s.sendall(frame(TEXT, b"frag", fin=False) + frame(PING, b"p1") + frame(CONT, b"mented"))
assert read_frame(f) == (True, PONG, b"p1")
assert read_frame(f) == (True, TEXT, b"fragmented")

# Many messages in one write come back in order.
s.sendall(b"".join(frame(TEXT, b"m%d" % i) for i in range(50)))
assert [read_frame(f)[2] for _ in range(50)] == [b"m%d" % i for i in range(50)]

s.sendall(frame(CLOSE, struct.pack(">H", 1000) + b"bye"))
assert close_code(f) == 1000
assert f.read(1) == b"", "closed after the close handshake"
f.close(); s.close()

for bad, code in [
    (frame(TEXT, b"unmasked", mask=False), 1002),
    (frame(TEXT, b"\xff\xfe"), 1007),
    (frame(BINARY, b"x" * 65537), 1009),
]:
    s, f = connect()
    s.sendall(bad)
    assert close_code(f) == code, code
    f.close(); s.close()

# Not an upgrade: a WsService without an HTTP service answers 404.
s = socket.create_connection(ADDR, timeout=10)
s.settimeout(10)
s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
status = s.makefile("rb").readline()
assert status.startswith(b"HTTP/1.1 404"), status
print("ok")
"#;

#[test]
fn stdlib_python_client_round_trips_and_gets_the_right_close_codes() {
    let opts = WsOptions {
        max_message: 64 * 1024,
        max_frame: 64 * 1024,
        ..WsOptions::default()
    };
    let server = ws_echo::service(opts)
        .serve(Server::new().bind("127.0.0.1:0").unwrap().loops(2))
        .unwrap();
    python_support::run_ok(&CLIENT.replace("{port}", &server.local_addr().port().to_string()));
}
