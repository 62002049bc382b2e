//! The `frame_greeter` example (docs/frame.md), run in-process on 127.0.0.1:0 and driven by a
//! python3 client that speaks the frame protocol by hand (`struct.pack`, protobuf's string
//! field encoded byte by byte): typed replies with their request ids, pipelined requests
//! answered in order, error frames for an unknown id, an undecodable body and a handler error
//! on a connection that stays open, a ping, and the TOO_LARGE / PROTOCOL errors that close
//! the connection for an oversized or malformed header. The service's counters must agree.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/frame_greeter.rs"]
mod frame_greeter;
mod python_support;

use herd::Server;

/// The python3 client. `{addr}` and `{max}` are filled in by the test.
const CLIENT: &str = r#"
import socket, struct

ADDR = ("127.0.0.1", {port})
MAX = {max}
RESPONSE, ERROR = 1, 2

def frame(msg_id, rid, body=b"", flags=0):
    return struct.pack(">IHHI", len(body), msg_id, flags, rid) + body

def hello(name):
    raw = name.encode()
    assert len(raw) < 128  # one-byte varint length
    return b"\x0a" + bytes([len(raw)]) + raw  # field 1, wire type 2

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf

def read_frame(s):
    length, msg_id, flags, rid = struct.unpack(">IHHI", recv_exact(s, 12))
    return msg_id, flags, rid, recv_exact(s, length)

def greeting(body):
    assert body[0] == 0x0a and body[1] == len(body) - 2, body
    return body[2:].decode()

def error(body):
    (code,) = struct.unpack(">H", body[:2])
    return code, body[2:].decode()

def connect():
    s = socket.create_connection(ADDR, timeout=10)
    s.settimeout(10)
    return s

s = connect()
s.sendall(frame(1, 7, hello("Ann")))
msg_id, flags, rid, body = read_frame(s)
assert (msg_id, flags, rid) == (1, RESPONSE, 7), (msg_id, flags, rid)
assert greeting(body) == "Hello, Ann!", body

# Pipelined: three requests in one write, answered in order with their own ids.
s.sendall(frame(1, 8, hello("Bob")) + frame(1, 9, hello("Cy")) + frame(1, 10, hello("Di")))
got = [read_frame(s) for _ in range(3)]
assert [(r[2], greeting(r[3])) for r in got] == [
    (8, "Hello, Bob!"), (9, "Hello, Cy!"), (10, "Hello, Di!")], got

# Errors answer their request; the connection stays open.
s.sendall(frame(42, 11, b"whatever"))
msg_id, flags, rid, body = read_frame(s)
assert (msg_id, flags, rid) == (0xFFFF, RESPONSE | ERROR, 11), (msg_id, flags, rid)
assert error(body)[0] == 1, body  # UNKNOWN_ID

s.sendall(frame(1, 12, b"\xff"))
msg_id, flags, rid, body = read_frame(s)
assert (msg_id, rid, error(body)[0]) == (0xFFFF, 12, 2), body  # BAD_BODY

s.sendall(frame(1, 13, b""))  # an empty body is a Hello with an empty name
msg_id, flags, rid, body = read_frame(s)
assert (msg_id, rid, error(body)) == (0xFFFF, 13, (3, "name is empty")), body  # HANDLER

s.sendall(frame(0xFFFE, 14))  # ping
assert read_frame(s) == (0xFFFD, RESPONSE, 14, b""), "pong"

s.sendall(frame(1, 15, hello("Ed")))
assert greeting(read_frame(s)[3]) == "Hello, Ed!"
s.close()

# A header announcing more than MAX: TOO_LARGE for request id 0, then the server closes.
s = connect()
s.sendall(struct.pack(">IHHI", MAX + 1, 1, 0, 16))
msg_id, flags, rid, body = read_frame(s)
assert (msg_id, rid, error(body)[0]) == (0xFFFF, 0, 5), (msg_id, rid, body)  # TOO_LARGE
assert s.recv(1) == b"", "closed"
s.close()

# A reserved flag bit: PROTOCOL, then closed.
s = connect()
s.sendall(frame(1, 17, hello("Fay"), flags=0x8))
msg_id, flags, rid, body = read_frame(s)
assert (msg_id, rid, error(body)[0]) == (0xFFFF, 0, 6), (msg_id, rid, body)  # PROTOCOL
assert s.recv(1) == b"", "closed"
print("ok")
"#;

#[test]
fn python_client_gets_replies_and_error_frames() {
    let frames = frame_greeter::service();
    let counted = frames.clone();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(2)
        .serve(move || frames.protocol())
        .unwrap();
    let script = CLIENT
        .replace("{port}", &server.local_addr().port().to_string())
        .replace("{max}", &frame_greeter::MAX_FRAME.to_string());
    python_support::run_ok(&script);
    let stats = counted.stats();
    assert_eq!(
        (
            stats.unknown_id,
            stats.bad_body,
            stats.handler_errors,
            stats.too_large,
            stats.protocol
        ),
        (1, 1, 1, 1, 1),
        "{stats:?}"
    );
}
