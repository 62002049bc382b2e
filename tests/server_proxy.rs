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

mod server_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
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
        let mut child = Command::new("python3")
            .args(["-c", BACKEND, name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Backend {
            port: line.trim().parse().unwrap(),
            child,
        }
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
    let mut child = Command::new("python3")
        .args(["-c", TLS_BACKEND])
        .arg(&leaf.cert)
        .arg(&leaf.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
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
