//! The HTTP server over real sockets: keep-alive, pipelining, HEAD, 100-continue, chunked
//! requests and responses, blocking handlers in order, the access log, limits and timeouts.

mod http_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{
    header, Body, HeaderValue, HttpOptions, HttpService, Method, Params, Request, Response, Router,
    StatusCode, Trailers,
};
use herd::pool::WorkerPool;
use herd::{Bytes, CloseReason, Server};
use herd_testkit::wait_until;
use http_support::{serve, serve_service, Client};

fn hello(_: Request<Body>) -> Response<Body> {
    let mut r = Response::new(Body::from_static(b"Hello, World!"));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Echoes the body, with the method, the `id` parameter and a trailer value in headers.
fn echo(req: Request<Body>) -> Response<Body> {
    let id = req
        .extensions()
        .get::<Params>()
        .and_then(|p| p.get("id"))
        .unwrap_or("-")
        .to_owned();
    let trailer = req
        .extensions()
        .get::<Trailers>()
        .and_then(|t| t.0.get("x-sum"))
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let method = req.method().clone();
    let body = req.into_body().into_bytes().unwrap();
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert("x-method", HeaderValue::from_str(method.as_str()).unwrap());
    h.insert("x-id", HeaderValue::from_str(&id).unwrap());
    if let Some(t) = trailer {
        h.insert("x-trailer", HeaderValue::from_str(&t).unwrap());
    }
    r
}

fn router() -> Router {
    Router::new()
        .get("/hello", hello)
        .post("/echo/:id", echo)
        .post("/echo", echo)
        .get("/stream", |_| {
            let parts = ["alpha", "", "beta", "gamma"]
                .map(|s: &'static str| Bytes::from_static(s.as_bytes()));
            Response::new(Body::stream(parts))
        })
        .get("/empty", |_| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        })
}

#[test]
fn hello_keep_alive_and_date() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    for _ in 0..3 {
        let r = c.get("/hello");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
        assert_eq!(r.header("content-length"), Some("13"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(!r.says_close());
        let date = r.header("date").expect("Date header");
        assert_eq!(date.len(), 29, "IMF-fixdate: {date}");
        assert!(date.ends_with(" GMT"));
    }
    assert_eq!(c.get("/missing").status, 404);
    let r = c.get("/echo");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(
        c.get("/hello").status,
        200,
        "errors from routing keep the connection"
    );
}

#[test]
fn hundred_pipelined_requests_in_one_write_come_back_in_one_write() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    // Warm up the connection so the counters below cover only the pipelined batch.
    assert_eq!(c.get("/hello").status, 200);
    let before = server.stats();
    let mut batch = Vec::new();
    for i in 0..100 {
        if i % 10 == 9 {
            batch.extend_from_slice(
                b"POST /echo/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            );
        } else {
            batch.extend_from_slice(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        }
    }
    c.send(&batch);
    for i in 0..100 {
        let r = c.response();
        assert_eq!(r.status, 200, "response {i}");
        if i % 10 == 9 {
            assert_eq!(
                (r.body.as_slice(), r.header("x-id")),
                (&b"abc"[..], Some("7"))
            );
        } else {
            assert_eq!(r.body, b"Hello, World!");
        }
    }
    let after = server.stats();
    let writes = after.writes - before.writes;
    let reads = after.reads - before.reads;
    assert!(
        writes <= reads.max(1),
        "replies were not coalesced: {writes} writes for {reads} reads"
    );
    assert!(writes <= 4, "{writes} writes for 100 pipelined requests");
}

#[test]
fn head_never_writes_a_body() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.head_response();
    assert_eq!((r.status, r.header("content-length")), (200, Some("13")));
    let r = c.head_response();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    // If either HEAD response carried a body, this would parse garbage.
    let r = c.response();
    assert_eq!(r.body, b"Hello, World!");
}

#[test]
fn expect_100_continue() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.interim();
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let r = c.response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
}

#[test]
fn chunked_request_with_trailers() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /echo/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(b"5\r\nhello\r\n");
    c.send(b"7;note=yes\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello, world");
    assert_eq!(r.header("x-trailer"), Some("12"));
    assert_eq!(r.header("x-id"), Some("x"));
    assert_eq!(c.get("/hello").status, 200);
}

#[test]
fn streamed_responses_are_chunked_and_until_close_for_http10() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/stream");
    assert!(r.chunked);
    assert_eq!(r.text(), "alphabetagamma");
    assert_eq!(c.get("/empty").status, 204);
    assert_eq!(c.get("/hello").status, 200);

    let mut old = Client::connect(server.local_addr());
    old.send(b"GET /stream HTTP/1.0\r\n\r\n");
    let r = old.response();
    assert!(!r.chunked && r.says_close());
    assert_eq!(r.text(), "alphabetagamma");
    old.expect_close();
}

#[test]
fn http10_keep_alive_only_when_asked() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert!(r.says_close());
    c.expect_close();
    // HTTP/1.1 with Connection: close.
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.response().says_close());
    c.expect_close();
}

#[test]
fn big_stream_is_pulled_only_as_the_peer_reads() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 2048; // 128 MiB
    let pulled = Arc::new(AtomicU64::new(0));
    let p = pulled.clone();
    let router = router().get("/big", move |_| {
        let p = p.clone();
        let data = Bytes::from(vec![7u8; CHUNK]);
        Response::new(Body::stream((0..CHUNKS).map(move |_| {
            p.fetch_add(CHUNK as u64, Ordering::Relaxed);
            data.clone()
        })))
    });
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read the raw stream ourselves, checking how far the server ran ahead after each read.
    let mut s = c.s.try_clone().unwrap();
    let total_wire = {
        use std::io::Read;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got: u64 = 0;
        let mut max_ahead: u64 = 0;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got += n as u64;
            let ahead = pulled.load(Ordering::Relaxed).saturating_sub(got);
            max_ahead = max_ahead.max(ahead);
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 16 {
                tail.drain(..tail.len() - 16);
            }
            if tail.ends_with(b"\r\n0\r\n\r\n") {
                break;
            }
        }
        // Output high watermark (1 MiB) + one chunk + kernel socket buffers: far below the
        // 128 MiB an unthrottled stream would have pulled at once.
        assert!(
            max_ahead < 32 << 20,
            "server pulled {max_ahead} bytes ahead of the reader"
        );
        got
    };
    assert!(total_wire > (CHUNK * CHUNKS) as u64);
    assert_eq!(pulled.load(Ordering::Relaxed), (CHUNK * CHUNKS) as u64);
    assert_eq!(c.get("/hello").status, 200, "connection still usable");
}

#[test]
fn blocking_handlers_answer_in_request_order() {
    let (router, release_tx) = slow_router();
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let batch = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /slow HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nzz";
    c.send(batch);
    // Everything is read (and the later requests queued) before the slow one may finish.
    wait_until("the batch is read", || {
        server.stats().bytes_in >= batch.len() as u64
    });
    release_tx.send(()).unwrap();
    assert_eq!(c.response().text(), "slow");
    assert_eq!(c.response().text(), "Hello, World!");
    release_tx.send(()).unwrap();
    assert_eq!(c.response().text(), "slow");
    assert_eq!(c.response().text(), "zz");
    release_tx.send(()).unwrap();
    assert_eq!(c.get("/slow").text(), "slow", "reading resumed");
}

/// A router whose `/slow` runs on the pool and waits for the returned sender.
fn slow_router() -> (Router, mpsc::Sender<()>) {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let router = router().route_blocking(Method::GET, "/slow", move |_| {
        release_rx.lock().unwrap().recv().unwrap();
        Response::new(Body::from("slow"))
    });
    (router, release_tx)
}

#[test]
fn bad_request_behind_a_blocking_one_is_answered_after_it() {
    let (router, release) = slow_router();
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let batch = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\n\r\n";
    c.send(batch);
    wait_until("the batch is read", || {
        server.stats().bytes_in >= batch.len() as u64
    });
    release.send(()).unwrap();
    assert_eq!(c.response().text(), "slow");
    let bad = c.response();
    assert_eq!(bad.status, 400);
    assert!(bad.says_close());
    c.expect_close();
}

#[test]
fn continue_behind_a_blocking_response_waits_for_it() {
    let (router, release) = slow_router();
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let batch = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    c.send(batch);
    wait_until("the batch is read", || {
        server.stats().bytes_in >= batch.len() as u64
    });
    release.send(()).unwrap();
    assert_eq!(c.response().text(), "slow");
    assert_eq!(
        c.interim().status,
        100,
        "100 Continue comes after the earlier response"
    );
    c.send(b"body");
    assert_eq!(c.response().text(), "body");
}

#[test]
fn requests_pipelined_behind_a_paused_stream_wait_for_it() {
    const CHUNKS: usize = 128; // 8 MiB: the stream must pause on the output watermark
    let router = router().get("/big", |_| {
        let data = Bytes::from(vec![b'x'; 64 * 1024]);
        Response::new(Body::stream((0..CHUNKS).map(move |_| data.clone())))
    });
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let big = c.response();
    assert!(big.chunked);
    assert_eq!(big.body.len(), CHUNKS * 64 * 1024);
    assert!(big.body.iter().all(|&b| b == b'x'));
    assert_eq!(c.response().text(), "Hello, World!");
    assert!(
        server.stats().backpressure_pauses >= 1,
        "the stream never paused"
    );
}

#[test]
fn graceful_stop_waits_for_a_blocking_response() {
    let (router, release) = slow_router();
    let server = serve(router, HttpOptions::default());
    let mut idle = Client::connect(server.local_addr());
    assert_eq!(idle.get("/hello").status, 200);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("the slow request is read", || server.stats().msgs_in >= 2);
    server.shutdown(Duration::from_secs(30));
    idle.expect_close();
    release.send(()).unwrap();
    let slow = c.response();
    assert_eq!(slow.text(), "slow");
    // Its head was written after the stop began: it tells the client to reconnect.
    assert_eq!(slow.header("connection"), Some("close"));
    c.expect_close();
    let report = server.join();
    // The idle connection was closed by the stop's sweep, the other after its response.
    assert_eq!((report.closed_graceful, report.closed_forced), (1, 0));
    assert_eq!(report.stats.closed_by(CloseReason::Stop), 2);
}

/// A drain with a grace: kept-alive connections stay open until they have been quiet for
/// `drain_grace`, and every request that arrives meanwhile is answered with
/// `Connection: close` (the client reconnects elsewhere instead of losing it).
#[test]
fn a_drain_answers_the_next_request_with_connection_close() {
    let clock = FakeClock::new(1_000);
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .clock(Arc::new(clock.clone()))
        .drain_grace(Duration::from_secs(2));
    let server = HttpService::new(router()).serve(server).unwrap();
    let addr = server.local_addr();
    let mut busy = Client::connect(addr);
    let mut quiet = Client::connect(addr);
    for c in [&mut busy, &mut quiet] {
        let r = c.get("/hello");
        assert_eq!((r.status, r.header("connection")), (200, None));
    }
    server.shutdown(Duration::from_secs(30));
    // The loop closes its listener when the stop begins.
    wait_until("the listener is closed", || {
        std::net::TcpStream::connect(addr).is_err()
    });
    // The next request on a kept-alive connection is served, with Connection: close.
    let r = busy.get("/hello");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert_eq!(r.text(), "Hello, World!");
    busy.expect_close();
    // The quiet one stays open through the grace (its last request came at 1 000 ms)...
    clock.advance(1_900);
    server.tick();
    assert!(!herd_testkit::is_closed_within(
        &mut quiet.s,
        Duration::from_millis(50)
    ));
    // ...and is closed once it has been quiet for 2 s.
    clock.advance(200);
    server.tick();
    quiet.expect_close();
    let report = server.join();
    assert_eq!((report.closed_graceful, report.closed_forced), (1, 0));
    assert_eq!(report.stats.closed_by(CloseReason::Stop), 2);
}

#[test]
fn full_pool_answers_503() {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, release_rx) = (Mutex::new(started_tx), Mutex::new(release_rx));
    let router = Router::new().route_blocking(Method::GET, "/slow", move |_| {
        started_tx.lock().unwrap().send(()).unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        Response::new(Body::from("slow"))
    });
    let pool = WorkerPool::new(1, 1);
    let server = serve_service(HttpService::new(router).pool(pool.clone()), None);
    let mut a = Client::connect(server.local_addr());
    a.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    started_rx.recv().unwrap(); // the only worker is busy
    let mut b = Client::connect(server.local_addr());
    b.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("the second job is queued", || server.stats().msgs_in >= 2);
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/slow");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    release_tx.send(()).unwrap();
    assert_eq!(a.response().text(), "slow");
    started_rx.recv().unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(b.response().text(), "slow");
    drop(server);
    pool.shutdown();
}

#[test]
fn access_log_sees_every_exchange() {
    type Entry = (String, String, u16, u64);
    let log: Arc<Mutex<Vec<Entry>>> = Arc::default();
    let l = log.clone();
    let service = HttpService::new(router()).access_log(move |e| {
        assert!(e.peer_addr.ip().is_loopback());
        l.lock()
            .unwrap()
            .push((e.method.into(), e.path.into(), e.status, e.bytes));
    });
    let server = serve_service(service, None);
    let mut c = Client::connect(server.local_addr());
    c.get("/hello?x=1");
    c.get("/nope");
    c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    c.head_response();
    c.get("/stream");
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 400);
    c.expect_close();
    drop(server);
    let got = log.lock().unwrap().clone();
    let want: Vec<Entry> = vec![
        ("GET".into(), "/hello?x=1".into(), 200, 13),
        ("GET".into(), "/nope".into(), 404, 14),
        ("HEAD".into(), "/hello".into(), 200, 0),
        ("GET".into(), "/stream".into(), 200, 14),
        ("-".into(), "-".into(), 400, 16),
    ];
    assert_eq!(got, want);
}

#[test]
fn max_requests_per_connection() {
    let opts = HttpOptions {
        max_requests: Some(3),
        ..HttpOptions::default()
    };
    let server = serve(router(), opts);
    let mut c = Client::connect(server.local_addr());
    // Pipelined past the limit: the third answer closes, the fourth request is never served.
    c.send(&b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4));
    assert!(!c.response().says_close());
    assert!(!c.response().says_close());
    assert!(c.response().says_close());
    c.expect_close();
}

#[test]
fn handler_panic_answers_500_and_closes() {
    let router = router().get("/boom", |_| -> Response<Body> { panic!("handler bug") });
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/boom");
    assert_eq!(r.status, 500);
    assert!(r.says_close());
    c.expect_close();
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.get("/hello").status, 200, "the loop survived");
}

// ----- timeouts on a fake clock -----

fn timed_server(clock: &FakeClock) -> herd::ServerHandle {
    let opts = HttpOptions {
        header_timeout: Duration::from_secs(10),
        keepalive_timeout: Duration::from_secs(30),
        ..HttpOptions::default()
    };
    serve_service(HttpService::new(router()).options(opts), Some(clock))
}

#[test]
fn header_timeout_answers_408() {
    let clock = FakeClock::new(1_000_000);
    let server = timed_server(&clock);
    let mut c = Client::connect(server.local_addr());
    let part = b"GET /hello HTTP/1.1\r\nHost: t\r\n";
    c.send(part);
    wait_until("the partial head is read", || {
        server.stats().bytes_in >= part.len() as u64
    });
    clock.advance(9_999);
    server.tick();
    // Not yet: finishing the head now is still in time... but first push past the limit on
    // a second connection to prove the first one's timer is its own.
    let mut d = Client::connect(server.local_addr());
    let part2 = b"GET /hel";
    d.send(part2);
    wait_until("the second partial head is read", || {
        server.stats().bytes_in >= (part.len() + part2.len()) as u64
    });
    clock.advance(1);
    server.tick();
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(r.says_close());
    c.expect_close();
    // The second connection opened at the later time: still within its limit.
    d.send(b"lo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(d.response().status, 200);
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.closed_by(CloseReason::Timeout), 1);
}

/// A request body that stalls: each gap between two reads may be up to `body_timeout` (here
/// 5 s); a longer one gets 408 and a close. Progress restarts the gap, so a slow but steady
/// body is served.
#[test]
fn a_stalled_request_body_gets_408_after_the_body_timeout() {
    let clock = FakeClock::new(1_000_000);
    let opts = HttpOptions {
        body_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    };
    let server = serve_service(HttpService::new(router()).options(opts), Some(&clock));
    let mut c = Client::connect(server.local_addr());
    let head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc";
    c.send(head);
    let read = |n: usize| wait_until("the bytes are read", || server.stats().bytes_in >= n as u64);
    read(head.len());
    clock.advance(4_900);
    server.tick();
    c.send(b"def");
    read(head.len() + 3);
    // 4.9 s + 4.9 s since the head: each gap is under 5 s.
    clock.advance(4_900);
    server.tick();
    c.send(b"ghij");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "abcdefghij"));
    // A second body stalls past the limit.
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab");
    read(2 * head.len() + 7 - 1);
    clock.advance(5_100);
    server.tick();
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(r.says_close());
    c.expect_close();
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.closed_by(CloseReason::Timeout), 1);
}

/// A request whose answer does not depend on its body (no route: 404; a route for other
/// methods: 405) is answered at once, before the body arrives. A small or chunked body is
/// then read and dropped and the connection goes on (as nginx discards one); a large one is
/// not waited for: the connection closes after the answer.
#[test]
fn a_body_nobody_reads_is_not_waited_for() {
    let server = serve(router(), HttpOptions::default());
    // Too large to wait for: answered, then closed.
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    c.send(b"the first bytes of a body");
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    assert!(r.says_close());
    c.expect_close();
    // Small, and chunked: answered before the body is sent, the body dropped, the
    // connection kept for the next request.
    for (head, body, status) in [
        (
            "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n",
            "hello world",
            405,
        ),
        (
            "PUT /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
            404,
        ),
    ] {
        let mut c = Client::connect(server.local_addr());
        c.send(head.as_bytes());
        let r = c.response();
        assert_eq!(r.status, status, "{head}");
        assert!(!r.says_close(), "{head}");
        c.send(body.as_bytes());
        assert_eq!(c.get("/hello").text(), "Hello, World!", "{head}");
    }
    // A body for a route that takes it is still read whole.
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    assert_eq!(c.response().text(), "body");
    server.stop(Duration::ZERO);
}

/// `body_min_rate`: a body that trickles in just inside every `body_timeout` gap is cut once
/// it has been arriving for `body_timeout` at less than the minimum rate; a faster one with
/// the same gaps is not.
#[test]
fn a_body_under_the_minimum_rate_is_cut_after_the_body_timeout() {
    let clock = FakeClock::new(1_000_000);
    let opts = HttpOptions {
        body_timeout: Duration::from_secs(5),
        body_min_rate: Some(100),
        ..HttpOptions::default()
    };
    let server = serve_service(HttpService::new(router()).options(opts), Some(&clock));
    let head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n";
    let mut slow = Client::connect(server.local_addr());
    let mut fast = Client::connect(server.local_addr());
    slow.send(head);
    slow.send(&[b's'; 10]);
    fast.send(head);
    fast.send(&[b'f'; 600]);
    let read = |n: usize| wait_until("the bytes are read", || server.stats().bytes_in >= n as u64);
    read(2 * head.len() + 610);
    clock.advance(4_000);
    server.tick();
    slow.send(&[b's'; 10]);
    fast.send(&[b'f'; 600]);
    read(2 * head.len() + 1220);
    clock.advance(900);
    server.tick();
    // 4.9 s: under the first body_timeout, nobody is judged yet.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(server.stats().closed_by(CloseReason::Timeout), 0);
    clock.advance(200);
    server.tick();
    // 5.1 s: 20 bytes in 5.1 s is under 100 bytes/s; 1200 bytes is not.
    let r = slow.response();
    assert_eq!(r.status, 408);
    slow.expect_close();
    fast.send(&[b'f'; 3800]);
    let r = fast.response();
    assert_eq!((r.status, r.body.len()), (200, 5000));
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.closed_by(CloseReason::Timeout), 1);
}

#[test]
fn silent_connection_is_closed_without_a_response() {
    let clock = FakeClock::new(5_000);
    let server = timed_server(&clock);
    let mut c = Client::connect(server.local_addr());
    wait_until("the connection is open", || server.stats().open == 1);
    clock.advance(10_000);
    server.tick();
    c.expect_close();
}

#[test]
fn keep_alive_idle_timeout() {
    let clock = FakeClock::new(0);
    let server = timed_server(&clock);
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.get("/hello").status, 200);
    // Just under the keep-alive limit (and past the header limit): still open.
    clock.advance(29_999);
    server.tick();
    assert_eq!(c.get("/hello").status, 200);
    clock.advance(29_999);
    server.tick();
    assert_eq!(c.get("/hello").status, 200);
    clock.advance(30_000);
    server.tick();
    c.expect_close();
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.closed_by(CloseReason::Idle), 1);
}

#[test]
fn partial_head_behind_a_blocking_response_gets_408_after_it() {
    let clock = FakeClock::new(0);
    let (router, release) = slow_router();
    let opts = HttpOptions {
        header_timeout: Duration::from_secs(10),
        keepalive_timeout: Duration::from_secs(30),
        ..HttpOptions::default()
    };
    let server = serve_service(HttpService::new(router).options(opts), Some(&clock));
    let mut c = Client::connect(server.local_addr());
    let batch = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /hel";
    c.send(batch);
    wait_until("the batch is read", || {
        server.stats().bytes_in >= batch.len() as u64
    });
    clock.advance(5_000);
    release.send(()).unwrap();
    assert_eq!(c.response().text(), "slow");
    // The partial head started at 0 but was held behind the response: its 10 s count from
    // when it arrived, not from when the response went out, so the keep-alive limit (30 s)
    // does not apply and the server answers 408 at 10 s.
    clock.advance(5_000);
    server.tick();
    assert_eq!(c.response().status, 408);
    c.expect_close();
}

#[test]
fn slow_head_on_a_kept_alive_connection_gets_408() {
    let clock = FakeClock::new(0);
    let server = timed_server(&clock);
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.get("/hello").status, 200);
    clock.advance(20_000);
    server.tick();
    let before = server.stats().bytes_in;
    c.send(b"GET /hello HTTP/1.1\r\n");
    wait_until("the partial head is read", || {
        server.stats().bytes_in > before
    });
    clock.advance(10_000);
    server.tick();
    assert_eq!(c.response().status, 408);
    c.expect_close();
}

/// Lingering close: after a `Connection: close` response the server shuts down its write
/// side (the client reads the response and end of stream) but keeps reading and dropping
/// what the client still sends (here a pipelined request), so the close is never a reset;
/// the connection goes when the client closes, or when the linger time passes.
#[test]
fn a_close_after_a_response_lingers_until_the_client_closes_or_time_passes() {
    let clock = FakeClock::new(1_000);
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .clock(Arc::new(clock.clone()))
        .lingering_close(Duration::from_secs(2));
    let server = HttpService::new(router()).serve(server).unwrap();
    let addr = server.local_addr();
    let close_then_more = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n";

    // The client closes after reading: the linger ends with its FIN.
    let mut c = Client::connect(addr);
    c.send(close_then_more);
    let r = c.response();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    c.expect_close();
    assert_eq!(server.stats().open, 1, "closed before the client did");
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    wait_until("the lingering connection is closed", || {
        server.stats().open == 0
    });
    assert_eq!(server.stats().closed_by(CloseReason::Local), 1);

    // A client that keeps its socket: the linger ends after 2 s of loop time.
    let mut d = Client::connect(addr);
    d.send(close_then_more);
    assert_eq!(d.response().status, 200);
    d.expect_close();
    d.send(b"more bytes the server reads and drops");
    clock.advance(1_900);
    server.tick();
    // (The client reads end of stream from the start; the server side is what lingers.)
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(server.stats().open, 1, "the linger ended early");
    clock.advance(200);
    server.tick();
    wait_until("the linger timer closes it", || server.stats().open == 0);
    assert_eq!(server.stats().closed_by(CloseReason::Local), 2);
    server.stop(Duration::ZERO);
}

/// With a lingering close, an error answer survives the rest of a request nobody reads: 100
/// clients each send a 1 MB head (431) or a 64 KB body past `max_body` (413), all of it,
/// then read; every one reads its complete error response and then end of stream, none a
/// reset (without the linger, the unread bytes make the kernel answer with one).
#[test]
fn error_answers_survive_the_unread_rest_of_the_request() {
    let opts = HttpOptions {
        limits: herd::proto::http1::Limits {
            max_body: 1024,
            ..Default::default()
        },
        ..HttpOptions::default()
    };
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .lingering_close(Duration::from_secs(5));
    let server = HttpService::new(router())
        .options(opts)
        .serve(server)
        .unwrap();
    let addr = server.local_addr();
    let mut big_head = b"GET /hello HTTP/1.1\r\nHost: t\r\n".to_vec();
    while big_head.len() < 1 << 20 {
        big_head.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    let mut big_body = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n".to_vec();
    big_body.resize(big_body.len() + 65536, b'b');
    let (big_head, big_body) = (Arc::new(big_head), Arc::new(big_body));
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let (big_head, big_body) = (big_head.clone(), big_body.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for i in 0..10 {
                    let (req, want) = if (t + i) % 2 == 0 {
                        (&big_head, 431)
                    } else {
                        (&big_body, 413)
                    };
                    let mut c = Client::connect(addr);
                    c.send(req);
                    let r = c.response();
                    c.expect_close();
                    seen.push((r.status, want));
                }
                seen
            })
        })
        .collect();
    for t in threads {
        for (got, want) in t.join().unwrap() {
            assert_eq!(got, want);
        }
    }
    server.stop(Duration::ZERO);
}
