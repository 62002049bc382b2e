//! The HTTP/1.1 client on cosockets (`task::HttpClient`) against real loopback servers: herd's
//! own HttpService (keep-alive: one accept for many requests, HEAD, 204, chunked bodies),
//! python3's `http.server` (HTTP/1.0, closes after each response), a scripted responder
//! (interim 100, chunked with trailers, `Connection: close`), a server that closes idle
//! connections (the stale pooled connection is discarded before use, or the request retried
//! once on a fresh connection when idempotent, and not retried when not), a silent server
//! (the read timeout on a fake clock), a refused connect, an oversized response, the idle
//! timeout on the loop clock, and an HTTPS upstream through a TlsConnector.
//!
//! The client runs in a driver: an async route of a herd HTTP server (`/go?...`) whose task
//! makes the requests with the loop's client and answers with what it got and the counters.

mod http_support;

use std::cell::OnceCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, HttpService, Request, Response, Router, StatusCode};
use herd::task::{ClientOptions, HttpClient, TlsConnector, Upstream};
use herd::tls::{CertFiles, TlsAcceptor, TlsSettings};
use herd::{Bytes, Server, ServerHandle};
use herd_testkit::certs::TestCa;
use herd_testkit::wait_until;
use http_support::{serve_service, Client};

thread_local! {
    static CLIENT: OnceCell<HttpClient> = const { OnceCell::new() };
}

fn arg<'a>(q: &'a str, k: &str) -> Option<&'a str> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
}

/// `/go?port=P&path=/x&n=N&method=M[&tls=NAME]`: N requests in a row with the loop's client;
/// one line per response (`status len body-or-error`), then the client's counters.
fn driver(opts: ClientOptions, clock: Option<&FakeClock>) -> ServerHandle {
    let router = Router::new().get_async("/go", move |req: Request<Body>| {
        let client = CLIENT.with(|c| c.get_or_init(|| HttpClient::new(opts.clone())).clone());
        let q = req.uri().query().unwrap_or("").to_owned();
        async move {
            let port: u16 = arg(&q, "port").unwrap().parse().unwrap();
            let path = arg(&q, "path").unwrap_or("/").to_owned();
            let n: usize = arg(&q, "n").unwrap_or("1").parse().unwrap();
            let method = arg(&q, "method").unwrap_or("GET").to_owned();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let up = match arg(&q, "tls") {
                Some(name) => Upstream::tls(addr, name),
                None => Upstream::tcp(addr),
            };
            let mut out = String::new();
            // `par=K`: K requests at once, each its own task (the pool's trim test).
            let par: usize = arg(&q, "par").unwrap_or("0").parse().unwrap();
            let tasks: Vec<_> = (0..par)
                .map(|_| {
                    let (client, up, path) = (client.clone(), up.clone(), path.clone());
                    herd::task::spawn_local(async move {
                        let r = herd::http::Request::get(path.as_str())
                            .body(Bytes::new())
                            .unwrap();
                        client.request(&up, r).await.map(|r| r.status().as_u16())
                    })
                })
                .collect();
            for t in tasks {
                match t.await {
                    Ok(Ok(status)) => out.push_str(&format!("{status}\n")),
                    other => out.push_str(&format!("failed {other:?}\n")),
                }
            }
            for _ in 0..n {
                let body = if method == "POST" {
                    Bytes::from_static(b"posted")
                } else {
                    Bytes::new()
                };
                let r = herd::http::Request::builder()
                    .method(method.as_str())
                    .uri(path.as_str())
                    .header("x-test", "1")
                    .body(body)
                    .unwrap();
                match client.request(&up, r).await {
                    Ok(resp) => out.push_str(&format!(
                        "{} {} {}\n",
                        resp.status().as_u16(),
                        resp.body().len(),
                        String::from_utf8_lossy(resp.body())
                    )),
                    Err(e) => out.push_str(&format!(
                        "error {:?} started={} {}\n",
                        e.kind(),
                        e.response_started(),
                        e
                    )),
                }
            }
            let s = client.stats();
            out.push_str(&format!(
                "connects={} reuses={} retries={} stale={} idle={}",
                s.connects, s.reuses, s.retries, s.stale_discarded, s.idle
            ));
            Response::new(Body::from(out))
        }
    });
    serve_service(HttpService::new(router), clock)
}

fn go(d: &ServerHandle, query: &str) -> String {
    let mut c = Client::connect(d.local_addr());
    c.get(&format!("/go?{query}")).text()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// herd's own upstream: `/hello`, a chunked `/stream`, `/empty` (204), `/echo` of headers.
fn herd_upstream() -> ServerHandle {
    let router = Router::new()
        .get("/hello", |_: Request<Body>| {
            Response::new(Body::from_static(b"Hello, World!"))
        })
        .get("/stream", |_: Request<Body>| {
            Response::new(Body::stream(vec![
                Bytes::from_static(b"abc"),
                Bytes::from_static(b"defgh"),
            ]))
        })
        .get("/empty", |_: Request<Body>| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        })
        .get("/echo", |req: Request<Body>| {
            let v = req
                .headers()
                .get("x-test")
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            Response::new(Body::from(format!("x-test={v}")))
        })
        .post("/echo", |req: Request<Body>| {
            let b = req.into_body().into_bytes().unwrap_or_default();
            Response::new(Body::from(b))
        });
    serve_service(HttpService::new(router), None)
}

#[test]
fn herd_upstream_keep_alive_head_204_chunked_and_post() {
    let up = herd_upstream();
    let port = up.local_addr().port();
    let d = driver(ClientOptions::default(), None);
    let r = go(&d, &format!("port={port}&path=/hello&n=5"));
    let l = lines(&r);
    assert_eq!(l[..5], ["200 13 Hello, World!"; 5], "{r}");
    assert_eq!(l[5], "connects=1 reuses=4 retries=0 stale=0 idle=1");
    assert_eq!(
        up.stats().accepted,
        1,
        "one upstream connection for five requests"
    );

    let r = go(&d, &format!("port={port}&path=/hello&method=HEAD"));
    assert!(r.starts_with("200 0 \n"), "{r}");
    let r = go(&d, &format!("port={port}&path=/empty"));
    assert!(r.starts_with("204 0 \n"), "{r}");
    let r = go(&d, &format!("port={port}&path=/stream"));
    assert!(r.starts_with("200 8 abcdefgh\n"), "{r}");
    let r = go(&d, &format!("port={port}&path=/echo"));
    assert!(r.starts_with("200 8 x-test=1\n"), "{r}");
    let r = go(&d, &format!("port={port}&path=/echo&method=POST"));
    assert!(r.starts_with("200 6 posted\n"), "{r}");
    assert!(
        r.ends_with("connects=1 reuses=9 retries=0 stale=0 idle=1"),
        "{r}"
    );
    assert_eq!(up.stats().accepted, 1);
    d.stop(Duration::ZERO);
    up.stop(Duration::ZERO);
}

struct Python(Child);
impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn python_http_server_http10_close_after_each_response() {
    let dir = std::env::temp_dir().join(format!("herd-hc-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file.txt"), b"from python").unwrap();
    let script = "import http.server,sys\n\
        s=http.server.HTTPServer(('127.0.0.1',0),http.server.SimpleHTTPRequestHandler)\n\
        print(s.server_port,flush=True)\n\
        s.serve_forever()\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _py = Python(child);
    let port: u16 = line.trim().parse().unwrap();
    let d = driver(ClientOptions::default(), None);
    let r = go(&d, &format!("port={port}&path=/file.txt&n=3"));
    let l = lines(&r);
    assert_eq!(l[..3], ["200 11 from python"; 3], "{r}");
    // HTTP/1.0 without keep-alive: nothing pooled, a connection per request.
    assert_eq!(
        l[l.len() - 1],
        "connects=3 reuses=0 retries=0 stale=0 idle=0"
    );
    let r = go(&d, &format!("port={port}&path=/missing"));
    assert!(r.starts_with("404 "), "{r}");
    d.stop(Duration::ZERO);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a scripted server does on each connection.
#[derive(Clone, Copy)]
enum Script {
    /// 100 Continue, then a chunked body with a trailer; keep-alive.
    Chunked,
    /// Answers the first request of a connection, then closes it right away.
    CloseAfterOne,
    /// Answers the first request of a connection; at the second one, closes without a byte.
    DropSecond,
    /// Reads the request and never answers.
    Silent,
    /// A head larger than the client allows.
    HugeHead,
    /// `Connection: close` with a Content-Length body, and closes.
    SaysClose,
}

struct Scripted {
    port: u16,
    accepts: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => return false,
        }
    }
    // A POST in these tests carries "posted".
    if buf.starts_with(b"POST") {
        let mut body = [0u8; 6];
        return s.read_exact(&mut body).is_ok();
    }
    true
}

fn scripted(script: Script) -> Scripted {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let (a, c, h) = (accepts.clone(), closed.clone(), held.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            let h = h.clone();
            std::thread::spawn(move || {
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                match script {
                    Script::Chunked => {
                        while read_head(&mut s) {
                            let _ = s.write_all(
                                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\
                                  Transfer-Encoding: chunked\r\n\r\n\
                                  4\r\nWiki\r\n6;ext=1\r\npedia!\r\n0\r\nX-Trailer: t\r\n\r\n",
                            );
                        }
                    }
                    Script::CloseAfterOne => {
                        if read_head(&mut s) {
                            let _ = s.write_all(ok);
                        }
                    }
                    Script::DropSecond => {
                        if read_head(&mut s) {
                            let _ = s.write_all(ok);
                        }
                        read_head(&mut s);
                    }
                    Script::Silent => {
                        read_head(&mut s);
                        h.lock().unwrap().push(s);
                        return;
                    }
                    Script::HugeHead => {
                        read_head(&mut s);
                        let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
                        for i in 0..40 {
                            let pad = format!("X-Pad-{i}: {}\r\n", "p".repeat(200));
                            r.extend_from_slice(pad.as_bytes());
                        }
                        r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                        let _ = s.write_all(&r);
                    }
                    Script::SaysClose => {
                        read_head(&mut s);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
                        );
                    }
                }
                drop(s);
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Scripted {
        port,
        accepts,
        closed,
        held,
    }
}

#[test]
fn interim_100_chunked_with_extension_and_trailer() {
    let s = scripted(Script::Chunked);
    let d = driver(ClientOptions::default(), None);
    let r = go(&d, &format!("port={}&path=/c&n=3", s.port));
    let l = lines(&r);
    assert_eq!(l[..3], ["200 10 Wikipedia!"; 3], "{r}");
    assert_eq!(l[3], "connects=1 reuses=2 retries=0 stale=0 idle=1");
    assert_eq!(s.accepts.load(Ordering::SeqCst), 1);
    d.stop(Duration::ZERO);
}

#[test]
fn connection_close_from_the_server_is_honoured() {
    let s = scripted(Script::SaysClose);
    let d = driver(ClientOptions::default(), None);
    let r = go(&d, &format!("port={}&path=/&n=2", s.port));
    assert_eq!(
        lines(&r),
        [
            "200 3 bye",
            "200 3 bye",
            "connects=2 reuses=0 retries=0 stale=0 idle=0"
        ]
    );
    d.stop(Duration::ZERO);
}

#[test]
fn a_pooled_connection_the_server_closed_is_discarded_before_use() {
    let s = scripted(Script::CloseAfterOne);
    let d = driver(ClientOptions::default(), None);
    let r = go(&d, &format!("port={}&path=/", s.port));
    assert_eq!(
        lines(&r),
        ["200 2 ok", "connects=1 reuses=0 retries=0 stale=0 idle=1"]
    );
    wait_until("the server closed its end", || {
        s.closed.load(Ordering::SeqCst) == 1
    });
    // The loop saw the FIN: the pooled connection is found closed and a new one is made.
    let r = go(&d, &format!("port={}&path=/", s.port));
    assert_eq!(
        lines(&r),
        ["200 2 ok", "connects=2 reuses=0 retries=0 stale=1 idle=1"]
    );
    d.stop(Duration::ZERO);
}

#[test]
fn a_reused_connection_failing_before_the_response_is_retried_once_if_idempotent() {
    let s = scripted(Script::DropSecond);
    let d = driver(ClientOptions::default(), None);
    let r = go(&d, &format!("port={}&path=/&n=2", s.port));
    // The second GET went out on the pooled connection, which closed without a byte: once
    // more on a fresh connection, which answers.
    assert_eq!(
        lines(&r),
        [
            "200 2 ok",
            "200 2 ok",
            "connects=2 reuses=1 retries=1 stale=0 idle=1"
        ]
    );
    assert_eq!(s.accepts.load(Ordering::SeqCst), 2);
    // A POST is not repeated: the caller hears of the failure.
    let r = go(&d, &format!("port={}&path=/&method=POST", s.port));
    let l = lines(&r);
    assert!(l[0].starts_with("error Io started=false"), "{r}");
    assert_eq!(l[1], "connects=2 reuses=2 retries=1 stale=0 idle=0");
    d.stop(Duration::ZERO);
}

#[test]
fn a_silent_server_times_the_response_out_on_the_loop_clock() {
    let s = scripted(Script::Silent);
    let clock = FakeClock::new(1_000);
    let opts = ClientOptions {
        read_timeout: Duration::from_secs(3),
        ..ClientOptions::default()
    };
    let d = driver(opts, Some(&clock));
    let mut c = Client::connect(d.local_addr());
    c.send(format!("GET /go?port={}&path=/ HTTP/1.1\r\nHost: t\r\n\r\n", s.port).as_bytes());
    wait_until("the upstream holds the request", || {
        s.held.lock().unwrap().len() == 1
    });
    clock.advance(2_000);
    d.tick();
    c.s.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(c.s.peek(&mut b).is_err(), "no answer before the timeout");
    c.s.set_read_timeout(Some(herd_testkit::WAIT)).unwrap();
    clock.advance(1_000);
    d.tick();
    let r = c.response().text();
    assert!(r.starts_with("error Timeout started=false"), "{r}");
    d.stop(Duration::ZERO);
}

#[test]
fn idle_connections_expire_on_the_loop_clock() {
    let up = herd_upstream();
    let port = up.local_addr().port();
    let clock = FakeClock::new(1_000);
    let opts = ClientOptions {
        idle_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let d = driver(opts, Some(&clock));
    let r = go(&d, &format!("port={port}&path=/hello"));
    assert!(
        r.ends_with("connects=1 reuses=0 retries=0 stale=0 idle=1"),
        "{r}"
    );
    clock.advance(5_000);
    let r = go(&d, &format!("port={port}&path=/hello"));
    assert!(
        r.ends_with("connects=1 reuses=1 retries=0 stale=0 idle=1"),
        "{r}"
    );
    clock.advance(10_000);
    let r = go(&d, &format!("port={port}&path=/hello"));
    assert!(
        r.ends_with("connects=2 reuses=1 retries=0 stale=1 idle=1"),
        "{r}"
    );
    d.stop(Duration::ZERO);
    up.stop(Duration::ZERO);
}

#[test]
fn the_pool_keeps_at_most_max_idle_once_the_turn_ends() {
    let up = herd_upstream();
    let port = up.local_addr().port();
    let opts = ClientOptions {
        max_idle_per_upstream: 2,
        ..ClientOptions::default()
    };
    let d = driver(opts, None);
    // Four at once need four connections; all four go back to the pool, which is trimmed to
    // two when the loop's turn ends.
    let r = go(&d, &format!("port={port}&path=/hello&par=4&n=0"));
    assert_eq!(r.matches("200\n").count(), 4, "{r}");
    assert!(r.contains("connects=4 reuses=0"), "{r}");
    let r = go(&d, &format!("port={port}&path=/hello&n=0"));
    assert!(r.ends_with("idle=2"), "{r}");
    // Four again: the two kept are reused, two more are opened, and two stay idle after.
    let r = go(&d, &format!("port={port}&path=/hello&par=4&n=0"));
    assert!(r.contains("connects=6 reuses=2"), "{r}");
    let r = go(&d, &format!("port={port}&path=/hello&n=0"));
    assert!(
        r.ends_with("connects=6 reuses=2 retries=0 stale=0 idle=2"),
        "{r}"
    );
    d.stop(Duration::ZERO);
    up.stop(Duration::ZERO);
}

#[test]
fn refused_and_oversized_responses_fail_with_their_kind() {
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let d = driver(
        ClientOptions {
            max_header_bytes: 4096,
            ..ClientOptions::default()
        },
        None,
    );
    let r = go(&d, &format!("port={port}&path=/"));
    assert!(r.starts_with("error Connect started=false"), "{r}");
    let s = scripted(Script::HugeHead);
    let r = go(&d, &format!("port={}&path=/", s.port));
    assert!(r.starts_with("error Protocol started=true"), "{r}");
    assert!(r.contains("too large"), "{r}");
    d.stop(Duration::ZERO);
}

#[test]
fn an_https_upstream_through_a_tls_connector_keeps_its_connection() {
    let ca = TestCa::new("hc-tls");
    let leaf = ca.server("site", &["localhost"]);
    let settings = TlsSettings {
        certs: vec![CertFiles {
            cert: leaf.cert.clone(),
            key: leaf.key.clone(),
            ocsp: None,
        }],
        ..TlsSettings::default()
    };
    let router = Router::new().get("/hello", |_: Request<Body>| {
        Response::new(Body::from_static(b"secure"))
    });
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .tls(TlsAcceptor::new(settings.build().unwrap()));
    let up = HttpService::new(router).serve(server).unwrap();
    let opts = ClientOptions {
        tls: Some(TlsConnector::ca_file(ca.ca_file()).unwrap()),
        ..ClientOptions::default()
    };
    let d = driver(opts, None);
    let port = up.local_addr().port();
    let r = go(&d, &format!("port={port}&path=/hello&n=3&tls=localhost"));
    assert_eq!(
        lines(&r),
        [
            "200 6 secure",
            "200 6 secure",
            "200 6 secure",
            "connects=1 reuses=2 retries=0 stale=0 idle=1"
        ]
    );
    assert_eq!(up.stats().tls_handshakes, 1);
    // Without a connector an https upstream is refused before any connect.
    let plain = driver(ClientOptions::default(), None);
    let r = go(&plain, &format!("port={port}&path=/hello&tls=localhost"));
    assert!(r.starts_with("error Connect"), "{r}");
    plain.stop(Duration::ZERO);
    d.stop(Duration::ZERO);
    up.stop(Duration::ZERO);
}

/// An upstream that holds each request until the test lets it through ([`Gate::open`]),
/// logging request paths in the order they arrive; answers with the path as the body, and
/// closes after answering a path that contains `close`.
struct Gate {
    port: u16,
    accepts: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    permits: Arc<(Mutex<usize>, std::sync::Condvar)>,
}

impl Gate {
    fn start() -> Gate {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let g = Gate {
            port,
            accepts: Arc::new(AtomicUsize::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new((Mutex::new(0), std::sync::Condvar::new())),
        };
        let (a, log, permits) = (g.accepts.clone(), g.log.clone(), g.permits.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let (log, permits) = (log.clone(), permits.clone());
                std::thread::spawn(move || loop {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(1) => head.push(b[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    log.lock().unwrap().push(path.clone());
                    // Wait (bounded) for the test to let one response through.
                    let (m, cv) = &*permits;
                    let mut n = m.lock().unwrap();
                    while *n == 0 {
                        let (g, t) = cv.wait_timeout(n, herd_testkit::WAIT).unwrap();
                        n = g;
                        if t.timed_out() {
                            return;
                        }
                    }
                    *n -= 1;
                    drop(n);
                    let close = path.contains("close");
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{path}",
                        path.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    );
                    if s.write_all(r.as_bytes()).is_err() || close {
                        return;
                    }
                });
            }
        });
        g
    }

    /// Let `n` more responses through.
    fn open(&self, n: usize) {
        let (m, cv) = &*self.permits;
        *m.lock().unwrap() += n;
        cv.notify_all();
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// A driver for the queue tests: `/one?port=P&path=/x` makes one request with the loop's
/// client (`200 /x`, or `error KIND`); `/stats?port=P` (an async route, so it runs after the
/// turn's timers and woken tasks) reports the client's counters and the upstream's state.
fn queue_driver(opts: ClientOptions, clock: Option<&FakeClock>) -> ServerHandle {
    let client_for =
        move || CLIENT.with(|c| c.get_or_init(|| HttpClient::new(opts.clone())).clone());
    let c2 = client_for.clone();
    let up_of = |q: &str| {
        let port: u16 = arg(q, "port").unwrap().parse().unwrap();
        Upstream::tcp(SocketAddr::from(([127, 0, 0, 1], port)))
    };
    let router = Router::new()
        .get_async("/one", move |req: Request<Body>| {
            let client = client_for();
            let q = req.uri().query().unwrap_or("").to_owned();
            async move {
                let up = up_of(&q);
                let path = arg(&q, "path").unwrap_or("/").to_owned();
                let r = herd::http::Request::get(path.as_str())
                    .body(Bytes::new())
                    .unwrap();
                let out = match client.request(&up, r).await {
                    Ok(resp) => format!(
                        "{} {}",
                        resp.status().as_u16(),
                        String::from_utf8_lossy(resp.body())
                    ),
                    Err(e) => format!("error {:?}", e.kind()),
                };
                Response::new(Body::from(out))
            }
        })
        .get_async("/stats", move |req: Request<Body>| {
            let client = c2();
            let q = req.uri().query().unwrap_or("").to_owned();
            async move {
                let up = up_of(&q);
                let s = client.stats();
                Response::new(Body::from(format!(
                    "open={} idle={} waiting={} queued={} queue_full={} queue_timeouts={} \
                     connects={} reuses={}",
                    client.open(&up),
                    client.idle(&up),
                    client.waiting(&up),
                    s.queued,
                    s.queue_full,
                    s.queue_timeouts,
                    s.connects,
                    s.reuses
                )))
            }
        });
    serve_service(HttpService::new(router), clock)
}

/// Send `/one?port=..&path=..` on a connection of its own; the answer is read later.
fn one(d: &ServerHandle, port: u16, path: &str) -> Client {
    let mut c = Client::connect(d.local_addr());
    c.send(format!("GET /one?port={port}&path={path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c
}

fn stats(d: &ServerHandle, port: u16) -> String {
    let mut c = Client::connect(d.local_addr());
    c.get(&format!("/stats?port={port}")).text()
}

fn capped(max: usize, queue: usize) -> ClientOptions {
    ClientOptions {
        max_conns_per_upstream: max,
        queue_max: queue,
        ..ClientOptions::default()
    }
}

#[test]
fn at_the_cap_requests_wait_and_take_the_connection_in_fifo_order() {
    let g = Gate::start();
    let d = queue_driver(capped(1, 16), None);
    let mut first = one(&d, g.port, "/1");
    wait_until("the upstream holds /1", || g.log().len() == 1);
    let mut waiting = Vec::new();
    for k in 2..=4 {
        waiting.push(one(&d, g.port, &format!("/{k}")));
        wait_until("the request is queued", || {
            stats(&d, g.port).contains(&format!("waiting={}", k - 1))
        });
    }
    let s = stats(&d, g.port);
    assert!(s.starts_with("open=1 idle=0 waiting=3 queued=3"), "{s}");
    assert_eq!(g.log(), ["/1"], "nothing else reached the upstream");
    g.open(4);
    assert_eq!(first.response().text(), "200 /1");
    for (k, c) in waiting.iter_mut().enumerate() {
        assert_eq!(c.response().text(), format!("200 /{}", k + 2));
    }
    // One connection, handed from each request to the next in the order they came.
    assert_eq!(g.log(), ["/1", "/2", "/3", "/4"]);
    assert_eq!(g.accepts.load(Ordering::SeqCst), 1);
    let s = stats(&d, g.port);
    assert_eq!(
        s,
        "open=1 idle=1 waiting=0 queued=3 queue_full=0 queue_timeouts=0 connects=1 reuses=3"
    );
    d.stop(Duration::ZERO);
}

#[test]
fn a_full_queue_fails_at_once_with_queue_full() {
    let g = Gate::start();
    let d = queue_driver(capped(1, 1), None);
    let mut first = one(&d, g.port, "/1");
    wait_until("the upstream holds /1", || g.log().len() == 1);
    let mut second = one(&d, g.port, "/2");
    wait_until("/2 is queued", || stats(&d, g.port).contains("waiting=1"));
    let mut third = one(&d, g.port, "/3");
    assert_eq!(third.response().text(), "error QueueFull");
    g.open(2);
    assert_eq!(first.response().text(), "200 /1");
    assert_eq!(second.response().text(), "200 /2");
    let s = stats(&d, g.port);
    assert!(
        s.contains("waiting=0 queued=1 queue_full=1 queue_timeouts=0 connects=1"),
        "{s}"
    );
    d.stop(Duration::ZERO);
}

#[test]
fn a_wait_past_queue_timeout_fails_on_the_loop_clock() {
    let g = Gate::start();
    let clock = FakeClock::new(1_000);
    let opts = ClientOptions {
        queue_timeout: Duration::from_secs(3),
        ..capped(1, 16)
    };
    let d = queue_driver(opts, Some(&clock));
    let mut first = one(&d, g.port, "/1");
    wait_until("the upstream holds /1", || g.log().len() == 1);
    let mut second = one(&d, g.port, "/2");
    wait_until("/2 is queued", || stats(&d, g.port).contains("waiting=1"));
    clock.advance(2_999);
    d.tick();
    let s = stats(&d, g.port);
    assert!(
        s.contains("waiting=1 queued=1 queue_full=0 queue_timeouts=0"),
        "{s}"
    );
    second
        .s
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(second.s.peek(&mut b).is_err(), "no answer at 2999 ms");
    second.s.set_read_timeout(Some(herd_testkit::WAIT)).unwrap();
    clock.advance(1);
    d.tick();
    assert_eq!(second.response().text(), "error QueueTimeout");
    let s = stats(&d, g.port);
    assert!(
        s.contains("open=1 idle=0 waiting=0 queued=1 queue_full=0 queue_timeouts=1"),
        "{s}"
    );
    // The holder is unaffected, and the upstream never saw /2.
    g.open(1);
    assert_eq!(first.response().text(), "200 /1");
    assert_eq!(g.log(), ["/1"]);
    d.stop(Duration::ZERO);
}

#[test]
fn a_cancelled_waiter_leaves_the_queue_and_a_closed_connection_wakes_the_next() {
    let g = Gate::start();
    let d = queue_driver(capped(1, 16), None);
    let mut first = one(&d, g.port, "/1-close");
    wait_until("the upstream holds /1", || g.log().len() == 1);
    // A waiter whose client goes away: its task is dropped and it leaves the queue.
    let gone = one(&d, g.port, "/gone");
    wait_until("/gone is queued", || {
        stats(&d, g.port).contains("waiting=1")
    });
    drop(gone);
    wait_until("/gone left the queue", || {
        stats(&d, g.port).contains("waiting=0")
    });
    let mut next = one(&d, g.port, "/2");
    wait_until("/2 is queued", || stats(&d, g.port).contains("waiting=1"));
    // /1's response closes its connection: the freed slot goes to /2, which connects.
    g.open(2);
    assert_eq!(first.response().text(), "200 /1-close");
    assert_eq!(next.response().text(), "200 /2");
    assert_eq!(g.log(), ["/1-close", "/2"]);
    assert_eq!(g.accepts.load(Ordering::SeqCst), 2);
    // No slot leaked: the one connection left is idle, and a request reuses it.
    let s = stats(&d, g.port);
    assert!(s.starts_with("open=1 idle=1 waiting=0 queued=2"), "{s}");
    g.open(1);
    let mut again = one(&d, g.port, "/3");
    assert_eq!(again.response().text(), "200 /3");
    let s = stats(&d, g.port);
    assert!(s.ends_with("connects=2 reuses=1"), "{s}");
    d.stop(Duration::ZERO);
}

/// `/sgo?port=P&path=/x&n=N[&drop=1]`: N streamed requests in a row with the loop's client,
/// each body read piece by piece to its end (or, with `drop`, dropped after its first
/// piece); one line per response (`status bytes pieces open-after`), then the counters.
fn stream_driver(opts: ClientOptions) -> ServerHandle {
    let router = Router::new().get_async("/sgo", move |req: Request<Body>| {
        let client = CLIENT.with(|c| c.get_or_init(|| HttpClient::new(opts.clone())).clone());
        let q = req.uri().query().unwrap_or("").to_owned();
        async move {
            let port: u16 = arg(&q, "port").unwrap().parse().unwrap();
            let path = arg(&q, "path").unwrap_or("/").to_owned();
            let n: usize = arg(&q, "n").unwrap_or("1").parse().unwrap();
            let drop_early = arg(&q, "drop").is_some();
            let up = Upstream::tcp(SocketAddr::from(([127, 0, 0, 1], port)));
            let mut out = String::new();
            for _ in 0..n {
                let r = herd::http::Request::get(path.as_str())
                    .body(Bytes::new())
                    .unwrap();
                match client.request_stream(&up, r).await {
                    Ok(mut resp) => {
                        let (mut bytes, mut pieces) = (0usize, 0usize);
                        loop {
                            match resp.body_mut().next_chunk().await {
                                Ok(Some(c)) => {
                                    bytes += c.len();
                                    pieces += 1;
                                    if drop_early {
                                        break;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    out.push_str(&format!("error {e} "));
                                    break;
                                }
                            }
                        }
                        let status = resp.status().as_u16();
                        drop(resp);
                        out.push_str(&format!(
                            "{status} {bytes} {} open={}\n",
                            if pieces > 1 { "many" } else { "one" },
                            client.open(&up)
                        ));
                    }
                    Err(e) => out.push_str(&format!("error {:?} {e}\n", e.kind())),
                }
            }
            let s = client.stats();
            out.push_str(&format!(
                "connects={} reuses={} responses={} idle={}",
                s.connects, s.reuses, s.responses, s.idle
            ));
            Response::new(Body::from(out))
        }
    });
    serve_service(HttpService::new(router), None)
}

/// An upstream with a 4 MiB body (`/big`, Content-Length) and a chunked one (`/stream`).
fn big_upstream() -> ServerHandle {
    let router = Router::new()
        .get("/big", |_: Request<Body>| {
            Response::new(Body::from(vec![7u8; 4 << 20]))
        })
        .get("/stream", |_: Request<Body>| {
            Response::new(Body::stream(
                (0..64).map(|_| Bytes::from(vec![b'x'; 64 * 1024])),
            ))
        });
    serve_service(HttpService::new(router), None)
}

#[test]
fn streamed_bodies_give_the_connection_back_at_their_end_and_close_it_when_dropped() {
    let up = big_upstream();
    let port = up.local_addr().port();
    // With a cap of one connection: a slot not given back would hang the next request.
    let opts = ClientOptions {
        max_conns_per_upstream: 1,
        ..ClientOptions::default()
    };
    let d = stream_driver(opts);
    // Read to the end: in many pieces, and the one connection is reused.
    let got = go_path(&d, &format!("/sgo?port={port}&path=/big&n=2"));
    assert_eq!(
        lines(&got),
        [
            "200 4194304 many open=1",
            "200 4194304 many open=1",
            "connects=1 reuses=1 responses=2 idle=1"
        ],
        "{got}"
    );
    // Chunked, framing removed, reused too.
    let got = go_path(&d, &format!("/sgo?port={port}&path=/stream&n=1"));
    assert_eq!(
        lines(&got),
        [
            "200 4194304 many open=1",
            "connects=1 reuses=2 responses=3 idle=1"
        ],
        "{got}"
    );
    // Dropped after its first piece: the connection is closed and its slot freed at once,
    // so the next request connects anew instead of waiting for the cap.
    let got = go_path(&d, &format!("/sgo?port={port}&path=/big&n=2&drop=1"));
    let l = lines(&got);
    assert_eq!(l.len(), 3, "{got}");
    assert!(
        l[0].starts_with("200 ") && l[0].ends_with(" one open=0"),
        "{got}"
    );
    assert!(
        l[1].starts_with("200 ") && l[1].ends_with(" one open=0"),
        "{got}"
    );
    assert_eq!(l[2], "connects=2 reuses=3 responses=3 idle=0", "{got}");
    // And a full read after that reuses nothing (none idle) but works within the cap.
    let got = go_path(&d, &format!("/sgo?port={port}&path=/big&n=1"));
    assert_eq!(
        lines(&got),
        [
            "200 4194304 many open=1",
            "connects=3 reuses=3 responses=4 idle=1"
        ],
        "{got}"
    );
}

fn go_path(d: &ServerHandle, path: &str) -> String {
    let mut c = Client::connect(d.local_addr());
    c.get(path).text()
}
