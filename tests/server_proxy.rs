//! The `herd` binary as a reverse proxy (`[[upstream]]` + a listener's `proxy`), against two
//! real python3 backends that count their connections: requests alternate between the
//! backends over one kept-alive connection each (the pool's reuse, seen by the backends'
//! accept counts), the backend sees `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`,
//! paths outside the location get the listener's own answer, a backend killed mid-run costs
//! no idempotent request, a POST body reaches the backend and a refused connect moves even a
//! POST to the next backend, a slow backend is a 504 within `read_timeout`, with every backend
//! gone the answer is 502, and `/metrics` counts it all per upstream and outcome. With
//! `max_conns`, 50 concurrent clients cost no more backend connections than the cap and no
//! failed request; a full queue is a 503 that does not mark the backend down.

mod python_support;
mod server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use server_support::*;

const BACKEND: &str = r#"
import http.server, sys, threading, time
conns = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        global conns
        with lock:
            conns += 1
        super().setup()
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/api/slow":
            time.sleep(3)
        if self.path.startswith("/api/brief"):
            time.sleep(0.02)
        if self.path.startswith("/api/hold"):
            # Held until the test creates the file named in the query (at most 10 s).
            flag = self.path.split("?", 1)[1]
            open(flag + ".held", "w").close()
            for _ in range(1000):
                try:
                    open(flag).close()
                    break
                except OSError:
                    time.sleep(0.01)
        body = ("%s conns=%d path=%s xff=%s proto=%s fwd=%s\n" % (sys.argv[1], conns, self.path,
                self.headers.get("X-Forwarded-For"), self.headers.get("X-Forwarded-Proto"),
                self.headers.get("Forwarded"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        got = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = ("%s posted=%s\n" % (sys.argv[1], got.decode())).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_port, flush=True)
s.serve_forever()
"#;

struct Backend {
    child: Child,
    port: u16,
}

impl Backend {
    fn start(name: &str) -> Backend {
        let (child, port) = python_support::spawn_backend(BACKEND, [name]);
        Backend { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One GET on a fresh connection: status and body.
fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path, "")
}

/// One request on a fresh connection: status and body.
fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// An HTTPS backend (python's ssl) with `cert`/`key`, answering every GET with its name.
const TLS_BACKEND: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = ("tls backend path=%s\n" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.daemon_threads = True
print(s.server_port, flush=True)
s.serve_forever()
"#;

fn proxy(backends: &[u16], tag: &str) -> Herd {
    proxy_with(backends, tag, "")
}

fn proxy_with(backends: &[u16], tag: &str, extra: &str) -> Herd {
    let servers: Vec<String> = backends
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let servers = servers.join(", ");
    let h = Herd::launch(TempDir::new(tag), 1, "", |t| {
        *t = t.replace(
            "protocol = \"echo\"\n",
            "protocol = \"http\"\nmetrics = true\nproxy = [{ path = \"/api/\", upstream = \"app\" }]\n",
        );
        let read_timeout = if extra.contains("read_timeout") {
            ""
        } else {
            "read_timeout = \"1s\"\n"
        };
        t.push_str(&format!(
            "\n[[upstream]]\nname = \"app\"\nservers = [{servers}]\n{read_timeout}\
             connect_timeout = \"1s\"\nkeepalive = 8\nmax_fails = 1\nfail_timeout = \"30s\"\n{extra}"
        ));
    });
    let pid = h.pid();
    h.wait_ready_workers(pid, 1);
    h
}

#[test]
fn balanced_kept_alive_forwarded_and_a_killed_backend_costs_nothing() {
    let mut a = Backend::start("A");
    let b = Backend::start("B");
    let h = proxy(&[a.port, b.port], "proxy-ok");
    let mut seen = [0usize; 2];
    for i in 0..20 {
        let (status, body) = get(h.port, &format!("/api/x?i={i}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("path=/api/x?i={i} ")), "{body}");
        assert!(body.contains("xff=127.0.0.1 "), "{body}");
        assert!(body.contains("proto=http "), "{body}");
        assert!(
            body.contains("fwd=for=127.0.0.1;host=\"front.test\";proto=http"),
            "{body}"
        );
        seen[usize::from(body.starts_with('B'))] += 1;
        // One worker, one loop, one request at a time: each backend has one connection.
        assert!(
            body.contains("conns=1 "),
            "the pooled connection is reused: {body}"
        );
    }
    assert_eq!(seen, [10, 10], "round robin");
    // Outside the location: the listener's own site, not the backends.
    let (status, body) = get(h.port, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    a.kill();
    for i in 0..20 {
        let (status, body) = get(h.port, &format!("/api/after?i={i}"));
        assert_eq!(status, 200, "request {i} after the kill: {body}");
        assert!(body.starts_with('B'), "{body}");
    }
    drop(b);
    let (status, _) = get(h.port, "/api/none");
    assert_eq!(status, 502);
    // The metrics count every proxied request by outcome (refreshed about once a second).
    let mut text = String::new();
    wait_until("the upstream counters in /metrics", || {
        text = get(h.port, "/metrics").1;
        text.contains("herd_upstream_requests_total{upstream=\"app\",outcome=\"ok\"} 40")
    });
    assert!(
        text.contains("herd_upstream_requests_total{upstream=\"app\",outcome=\"bad_gateway\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("herd_upstream_next_backend_total{upstream=\"app\"} 1"),
        "{text}"
    );
    drop(h);
}

#[test]
fn a_post_body_is_passed_on_and_a_refused_connect_moves_it_to_the_next_backend() {
    let mut a = Backend::start("A");
    let b = Backend::start("B");
    let h = proxy(&[a.port, b.port], "proxy-post");
    let (s1, b1) = request(h.port, "POST", "/api/items", "one");
    let (s2, b2) = request(h.port, "POST", "/api/items", "two");
    assert_eq!((s1, s2), (201, 201));
    let mut got = [b1, b2];
    got.sort();
    assert_eq!(got, ["A posted=one\n", "B posted=two\n"]);
    // A connect that fails sent nothing, so even a POST may go to the next backend.
    a.kill();
    for i in 0..4 {
        let (status, body) = request(h.port, "POST", "/api/items", &format!("p{i}"));
        assert_eq!((status, body), (201, format!("B posted=p{i}\n")));
    }
    drop(h);
}

#[test]
fn a_slow_backend_is_a_504_within_the_read_timeout() {
    let a = Backend::start("A");
    let h = proxy(&[a.port], "proxy-slow");
    let t = Instant::now();
    let (status, body) = get(h.port, "/api/slow");
    let took = t.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "{took:?}"
    );
    drop(h);
}

#[test]
fn an_https_upstream_is_verified_for_its_name() {
    let ca = herd_testkit::certs::TestCa::new("proxy-tls");
    let leaf = ca.server("backend", &["localhost"]);
    let (child, port) = python_support::spawn_backend(TLS_BACKEND, [&leaf.cert, &leaf.key]);
    let mut backend = Backend { child, port };
    let tls = format!(
        "tls = {{ name = \"localhost\", ca = \"{}\" }}\n",
        ca.ca_file().display()
    );
    let h = proxy_with(&[port], "tls-up", &tls);
    let http = h.port;
    for _ in 0..3 {
        let (status, body) = get(http, "/api/secure");
        assert_eq!(
            (status, body.as_str()),
            (200, "tls backend path=/api/secure\n")
        );
    }
    // A name the certificate does not cover: the handshake fails, the client gets 502.
    let wrong = format!(
        "tls = {{ name = \"other.test\", ca = \"{}\" }}\n",
        ca.ca_file().display()
    );
    let h2 = proxy_with(&[port], "tls-up-wrong", &wrong);
    let (status, _) = get(h2.port, "/api/secure");
    assert_eq!(status, 502);
    backend.kill();
}

#[test]
fn max_conns_caps_backend_connections_under_50_concurrent_clients() {
    let a = Backend::start("A");
    let b = Backend::start("B");
    let h = proxy_with(
        &[a.port, b.port],
        "proxy-capped",
        "max_conns = 2\nqueue = 100\n",
    );
    let port = h.port;
    let clients: Vec<_> = (0..50)
        .map(|c| {
            std::thread::spawn(move || {
                (0..2)
                    .map(|i| get(port, &format!("/api/brief?c={c}&i={i}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut most = [0usize; 2];
    for t in clients {
        for (status, body) in t.join().unwrap() {
            assert_eq!(status, 200, "{body}");
            let conns: usize = body
                .split("conns=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let k = usize::from(body.starts_with('B'));
            most[k] = most[k].max(conns);
        }
    }
    // Each backend's accept count, as it last reported it: never more than the cap.
    assert!(most[0] >= 1 && most[0] <= 2, "A accepted {}", most[0]);
    assert!(most[1] >= 1 && most[1] <= 2, "B accepted {}", most[1]);
    let mut text = String::new();
    wait_until("the upstream counters in /metrics", || {
        text = get(port, "/metrics").1;
        text.contains("herd_upstream_requests_total{upstream=\"app\",outcome=\"ok\"} 100")
    });
    for o in ["queue_full", "queue_timeout", "bad_gateway"] {
        let series = format!("herd_upstream_requests_total{{upstream=\"app\",outcome=\"{o}\"}} 0");
        assert!(text.contains(&series), "{series}: {text}");
    }
    drop(h);
}

#[test]
fn a_full_queue_is_a_503_that_does_not_mark_the_backend_down() {
    let a = Backend::start("A");
    let dir = TempDir::new("proxy-queue-flag");
    let flag = dir.path("go");
    let h = proxy_with(
        &[a.port],
        "proxy-queue",
        "max_conns = 1\nqueue = 0\nread_timeout = \"30s\"\n",
    );
    let port = h.port;
    let path = format!("/api/hold?{}", flag.display());
    let holder = std::thread::spawn(move || get(port, &path));
    let held = flag.with_extension("held");
    wait_until("the backend holds the first request", || held.exists());
    // The one connection is busy and nothing may wait: 503 at once.
    let (status, body) = get(port, "/api/x");
    assert_eq!((status, body.as_str()), (503, "upstream busy\n"));
    std::fs::write(&flag, b"").unwrap();
    let (status, body) = holder.join().unwrap();
    assert_eq!(status, 200, "{body}");
    // With max_fails = 1 a failure would have marked the only backend down (a 502 now).
    let (status, body) = get(port, "/api/after");
    assert_eq!(status, 200, "{body}");
    let mut text = String::new();
    wait_until("the queue_full outcome in /metrics", || {
        text = get(port, "/metrics").1;
        text.contains("herd_upstream_requests_total{upstream=\"app\",outcome=\"queue_full\"} 1")
    });
    assert!(
        text.contains("herd_upstream_requests_total{upstream=\"app\",outcome=\"ok\"} 2"),
        "{text}"
    );
    drop(h);
}

/// A backend for the streaming tests. `GET /api/big`: 64 MiB with a Content-Length, written
/// 1 MiB at a time. `GET /api/sse?F`: an event stream (chunked) whose event `i` is written
/// only once the test creates the file `F.i` (three events). `GET /api/endless?F`: writes
/// until the proxy closes the connection, then creates `F`. `PUT /api/upload`: reads the
/// body (Content-Length or chunked), checks byte `k` is `k % 251`, answers its length.
const STREAM_BACKEND: &str = r#"
import http.server, os, sys, time
def wait_for(path):
    for _ in range(2000):
        if os.path.exists(path):
            return
        time.sleep(0.005)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/api/big":
            self.send_response(200)
            self.send_header("Content-Length", str(64 << 20))
            self.end_headers()
            piece = b"z" * (1 << 20)
            for _ in range(64):
                self.wfile.write(piece)
        elif self.path.startswith("/api/sse?"):
            flag = self.path.split("?", 1)[1]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for i in range(3):
                wait_for("%s.%d" % (flag, i))
                ev = ("data: %d\n\n" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/api/endless?"):
            flag = self.path.split("?", 1)[1]
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            piece = b"e" * 65536
            try:
                while True:
                    self.wfile.write(piece)
            except OSError:
                open(flag, "w").close()
                self.close_connection = True
    def do_PUT(self):
        n = 0
        ok = True
        def check(data):
            nonlocal n, ok
            for k in range(0, len(data), 4093):
                if data[k] != (n + k) % 251:
                    ok = False
            n += len(data)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                check(self.rfile.read(size))
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                check(data)
                left -= len(data)
        body = ("len=%d ok=%s te=%s\n" % (n, ok, self.headers.get("Transfer-Encoding"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_port, flush=True)
s.serve_forever()
"#;

fn stream_backend() -> Backend {
    let (child, port) = python_support::spawn_backend(STREAM_BACKEND, std::iter::empty::<&str>());
    Backend { child, port }
}

/// herd in front of `backend` with a 128 MiB `max_body` on the location (and 1 TiB on the
/// upstream, for the endless response); the worker's pid.
fn stream_proxy(backend: u16, tag: &str) -> (Herd, i32) {
    let h = Herd::launch(TempDir::new(tag), 1, "", |t| {
        *t = t.replace(
            "protocol = \"echo\"\n",
            "protocol = \"http\"\nproxy = [{ path = \"/api/\", upstream = \"app\", max_body = 134217728 }]\n",
        );
        t.push_str(&format!(
            "\n[[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:{backend}\"]\n\
             read_timeout = \"5s\"\nkeepalive = 8\nmax_body = 1099511627776\n"
        ));
    });
    let pid = h.pid();
    let workers = h.wait_ready_workers(pid, 1);
    (h, workers[0])
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: i32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Read a response head from `s`; the rest stays in the returned buffer.
fn read_head_from(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "closed before the head: {buf:?}");
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn a_64_mib_download_and_upload_stream_through_in_bounded_memory() {
    let b = stream_backend();
    let (h, worker) = stream_proxy(b.port, "proxy-stream-big");
    // Warm up (the pool, the loop's buffers), then take the baseline.
    let (status, body) = request(h.port, "PUT", "/api/upload", "");
    assert_eq!((status, body.as_str()), (200, "len=0 ok=True te=None\n"));
    let before = status_kb(worker, "VmHWM:");

    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /api/big HTTP/1.1\r\nHost: front.test\r\n\r\n")
        .unwrap();
    let (head, mut got) = read_head_from(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-length: 67108864"),
        "the length is kept: {head}"
    );
    assert!(!lower.contains("transfer-encoding"), "{head}");
    let mut total = got.len();
    got.resize(1 << 20, 0);
    while total < 64 << 20 {
        let n = s.read(&mut got).unwrap();
        assert!(n > 0, "closed after {total} bytes");
        assert!(got[..n].iter().all(|&c| c == b'z'));
        total += n;
    }
    assert_eq!(total, 64 << 20);
    let after_download = status_kb(worker, "VmHWM:");

    // 64 MiB up, with a Content-Length, written 1 MiB at a time.
    let pattern: Vec<u8> = (0..(64usize << 20)).map(|k| (k % 251) as u8).collect();
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        format!(
            "PUT /api/upload HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            pattern.len()
        )
        .as_bytes(),
    )
    .unwrap();
    for piece in pattern.chunks(1 << 20) {
        s.write_all(piece).unwrap();
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.ends_with("\r\n\r\nlen=67108864 ok=True te=None\n"),
        "{resp}"
    );
    // 8 MiB chunked: passed on chunked.
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"PUT /api/upload HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    for piece in pattern[..8 << 20].chunks(300_000) {
        s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        s.write_all(piece).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.ends_with("\r\n\r\nlen=8388608 ok=True te=chunked\n"),
        "{resp}"
    );
    let after_upload = status_kb(worker, "VmHWM:");
    eprintln!(
        "worker VmHWM: {before} kB before, {after_download} kB after 64 MiB down, \
         {after_upload} kB after 72 MiB up"
    );
    assert!(
        after_download - before < 16 << 10,
        "a 64 MiB download grew the worker's peak RSS from {before} to {after_download} kB"
    );
    assert!(
        after_upload - before < 16 << 10,
        "uploads grew the worker's peak RSS from {before} to {after_upload} kB"
    );
    drop(h);
}

#[test]
fn events_reach_the_client_one_by_one_and_a_client_that_leaves_closes_the_backend() {
    let b = stream_backend();
    let (h, _) = stream_proxy(b.port, "proxy-stream-sse");
    let dir = TempDir::new("proxy-stream-flags");
    let flag = dir.path("ev");
    let flag = flag.to_str().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("GET /api/sse?{flag} HTTP/1.1\r\nHost: front.test\r\n\r\n").as_bytes())
        .unwrap();
    // The head arrives before any event exists.
    let (head, mut got) = read_head_from(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(head.contains("text/event-stream"), "{head}");
    let mut tmp = [0u8; 4096];
    for i in 0..3 {
        assert!(
            !String::from_utf8_lossy(&got).contains(&format!("data: {i}")),
            "event {i} before the backend wrote it"
        );
        std::fs::write(format!("{flag}.{i}"), b"").unwrap();
        while !String::from_utf8_lossy(&got).contains(&format!("data: {i}\n\n")) {
            let n = s.read(&mut tmp).unwrap();
            assert!(n > 0, "closed before event {i}");
            got.extend_from_slice(&tmp[..n]);
        }
    }
    while !got.ends_with(b"0\r\n\r\n") {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "closed before the end");
        got.extend_from_slice(&tmp[..n]);
    }
    drop(s);

    // A client that leaves mid-download: the backend's connection is closed (it sees its
    // writes fail) instead of being read to the end.
    let gone = dir.path("endless-eof");
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        format!(
            "GET /api/endless?{} HTTP/1.1\r\nHost: front.test\r\n\r\n",
            gone.display()
        )
        .as_bytes(),
    )
    .unwrap();
    let (head, _) = read_head_from(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut read = 0;
    while read < 1 << 20 {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0);
        read += n;
    }
    drop(s);
    wait_until("the backend to see its connection closed", || gone.exists());
    // And the proxy keeps working.
    let (status, body) = request(h.port, "PUT", "/api/upload", "");
    assert_eq!((status, body.as_str()), (200, "len=0 ok=True te=None\n"));
    drop(h);
}
