//! The `primes` example (docs/pool.md), run in-process with a two-thread pool: curl checks
//! single answers and every bad `n` (400, the connection's other requests unaffected);
//! python3 clients pipeline requests of very different cost on keep-alive connections, four
//! connections at once, and every connection must get its answers in request order.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/primes.rs"]
mod primes;
mod python_support;

use std::net::SocketAddr;
use std::process::Command;

use herd::pool::WorkerPool;
use herd::{Server, ServerHandle};

fn start() -> ServerHandle {
    let server = Server::new().bind("127.0.0.1:0").unwrap().loops(2);
    primes::service(WorkerPool::new(2, 64))
        .serve(server)
        .unwrap()
}

/// curl's status code and body for `path`.
fn curl(addr: SocketAddr, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn counts_primes_and_refuses_bad_n() {
    assert_eq!(
        [0, 1, 2, 3, 10, 100, 1000].map(primes::count_primes),
        [0, 0, 0, 1, 4, 25, 168]
    );
    let server = start();
    let a = server.local_addr();
    assert_eq!(curl(a, "/primes?n=100"), (200, "25\n".into()));
    assert_eq!(curl(a, "/primes?n=1000000"), (200, "78498\n".into()));
    for bad in [
        "/primes",
        "/primes?n=",
        "/primes?n=abc",
        "/primes?n=-5",
        "/primes?n=1e6",
        "/primes?n=99999999999999999999999",
        "/primes?n=10000001",
    ] {
        let (status, body) = curl(a, bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(
        curl(a, "/primes?n=10000001").1,
        "n must be at most 10000000\n"
    );
    assert_eq!(curl(a, "/primes?n=10000000"), (200, "664579\n".into()));
}

/// Four connections at once, each pipelining six requests (one costly, a bad one in the
/// middle) in a single write; each must read its answers in the order it asked.
const PIPELINE: &str = r#"
import socket, threading

ADDR = ("127.0.0.1", {port})
ASKS = [(2000000, 200, b"148933\n"), (10, 200, b"4\n"), (100000, 200, b"9592\n"),
        ("x", 400, None), (1000, 200, b"168\n"), (2, 200, b"0\n")]

def read_response(f):
    status = int(f.readline().split()[1])
    length = None
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, f.read(length)

errors = []

def client(k):
    try:
        s = socket.create_connection(ADDR, timeout=20)
        s.settimeout(20)
        asks = ASKS[k:] + ASKS[:k]  # a different order on every connection
        s.sendall(b"".join(b"GET /primes?n=%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(n).encode()
                           for n, _, _ in asks))
        f = s.makefile("rb")
        for n, status, body in asks:
            got_status, got_body = read_response(f)
            assert got_status == status, (k, n, got_status, got_body)
            if body is not None:
                assert got_body == body, (k, n, got_body)
        s.close()
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
assert not any(t.is_alive() for t in threads), "a client hung"
assert not errors, errors
print("ok")
"#;

#[test]
fn pipelined_answers_come_back_in_request_order_on_every_connection() {
    let server = start();
    let script = PIPELINE.replace("{port}", &server.local_addr().port().to_string());
    python_support::run_ok(&script);
    let stats = server.stats();
    assert_eq!(stats.accepted, 4, "{stats:?}");
}
