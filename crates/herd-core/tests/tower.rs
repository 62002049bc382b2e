//! tower layers around herd routes (feature `tower`), over real loopback sockets: tower-http's
//! SetResponseHeader on inline, worker-pool and async routes, its CORS layer answering a
//! preflight and tagging a simple request, tower's ConcurrencyLimit (inline and pool routes
//! answer 503 with Retry-After when it is full, async routes wait for a permit) and LoadShed
//! (its Overloaded error answers 503), a failing service answering 500, and
//! `tower_route_layer` wrapping only its path.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use herd_core::http::{header, Body, HeaderValue, HttpService, Method, Request, Response, Router};
use herd_core::{Server, ServerHandle};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, Layer, Service, ServiceBuilder};
use tower_http::cors::{Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// A parsed response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send `head` (without the final blank line; `Connection: close` is added) and read the
/// whole answer.
fn send(addr: SocketAddr, head: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{head}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, &format!("GET {path} HTTP/1.1\r\nHost: t"))
}

fn serve(router: Router) -> ServerHandle {
    HttpService::new(router)
        .serve(Server::new().bind("127.0.0.1:0").unwrap().loops(1))
        .unwrap()
}

/// Wait (bounded) until `f` holds.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A gate handlers wait at until the test opens it: counts who entered.
#[derive(Clone, Default)]
struct Gate {
    entered: Arc<AtomicUsize>,
    open: Arc<AtomicBool>,
}

impl Gate {
    fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    /// Block the calling (pool) thread until open, 10 s at most.
    fn pass_blocking(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.open.load(Ordering::SeqCst) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Await (on the loop) until open, 10 s at most.
    async fn pass(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.open.load(Ordering::SeqCst) && Instant::now() < end {
            herd_core::task::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[test]
fn tower_http_set_header_and_cors_around_every_kind_of_route() {
    let router = Router::new()
        .get("/inline", |_| "inline")
        .route_blocking(Method::GET, "/pool", |_| "pool")
        .get_async("/async", |_| async { "async" })
        .any("/api", |_| "api")
        .tower_layer(SetResponseHeaderLayer::overriding(
            header::SERVER,
            HeaderValue::from_static("herd+tower"),
        ))
        .tower_layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        );
    let server = serve(router);
    let addr = server.local_addr();
    for (path, body) in [
        ("/inline", "inline"),
        ("/pool", "pool"),
        ("/async", "async"),
    ] {
        let r = get(addr, path);
        assert_eq!((r.status, r.body.as_str()), (200, body), "{path}");
        assert_eq!(r.header("server"), Some("herd+tower"), "{path}");
    }
    // A simple cross-origin request gets the allow-origin header.
    let r = send(
        addr,
        "GET /inline HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // A preflight is answered by the CORS layer, not the handler.
    let r = send(
        addr,
        "OPTIONS /api HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type",
    );
    assert_eq!(r.status, 200, "preflight");
    assert_eq!(r.body, "");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let methods = r.header("access-control-allow-methods").unwrap();
    assert!(methods.contains("POST"), "{methods}");
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    // tower-http takes every OPTIONS for a preflight; other methods reach the handler.
    let r = send(
        addr,
        "POST /api HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "api"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // The router's own 404 does not pass through the layers.
    let r = get(addr, "/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("server"), None);
    server.stop(Duration::from_secs(1));
}

#[test]
fn a_full_concurrency_limit_answers_503_on_pool_routes_and_waits_on_async_ones() {
    let (pool_gate, shed_gate, async_gate, async_shed_gate) = (
        Gate::default(),
        Gate::default(),
        Gate::default(),
        Gate::default(),
    );
    let (g1, g2, g3, g4) = (
        pool_gate.clone(),
        shed_gate.clone(),
        async_gate.clone(),
        async_shed_gate.clone(),
    );
    let router = Router::new()
        .route_blocking(Method::GET, "/pool", move |_| {
            g1.pass_blocking();
            "pool"
        })
        .tower_route_layer("/pool", ConcurrencyLimitLayer::new(1))
        .route_blocking(Method::GET, "/shed", move |_| {
            g2.pass_blocking();
            "shed"
        })
        .tower_route_layer(
            "/shed",
            ServiceBuilder::new()
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(1)),
        )
        .get_async("/async", move |_| {
            let g = g3.clone();
            async move {
                g.pass().await;
                "async"
            }
        })
        .tower_route_layer("/async", ConcurrencyLimitLayer::new(1))
        .get_async("/async-shed", move |_| {
            let g = g4.clone();
            async move {
                g.pass().await;
                "async-shed"
            }
        })
        .tower_route_layer(
            "/async-shed",
            ServiceBuilder::new()
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(1)),
        );
    let server = serve(router);
    let addr = server.local_addr();

    // Pool route, limit 1: the second request while the first holds the permit gets 503 (not
    // ready: the pool thread cannot wait); the LoadShed one gets 503 through Overloaded.
    for (path, gate) in [("/pool", &pool_gate), ("/shed", &shed_gate)] {
        let first = std::thread::spawn(move || get(addr, path));
        wait_for("the first request to hold the permit", || {
            gate.entered() == 1
        });
        let second = get(addr, path);
        assert_eq!(second.status, 503, "{path}");
        assert_eq!(second.header("retry-after"), Some("1"), "{path}");
        assert_eq!(
            gate.entered(),
            1,
            "{path}: the refused request ran no handler"
        );
        gate.open.store(true, Ordering::SeqCst);
        let first = first.join().unwrap();
        assert_eq!((first.status, first.body.as_str()), (200, &path[1..]));
        // The permit is back.
        assert_eq!(get(addr, path).status, 200, "{path}");
    }

    // Async route, limit 1: the second request waits for the permit, then runs.
    let first = std::thread::spawn(move || get(addr, "/async"));
    wait_for("the first async request", || async_gate.entered() == 1);
    let second = std::thread::spawn(move || get(addr, "/async"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(async_gate.entered(), 1, "the second waits for the permit");
    async_gate.open.store(true, Ordering::SeqCst);
    for r in [first.join().unwrap(), second.join().unwrap()] {
        assert_eq!((r.status, r.body.as_str()), (200, "async"));
    }
    assert_eq!(async_gate.entered(), 2);

    // Async route behind LoadShed: refused at once instead of waiting.
    let first = std::thread::spawn(move || get(addr, "/async-shed"));
    wait_for("the first async request", || async_shed_gate.entered() == 1);
    let second = get(addr, "/async-shed");
    assert_eq!(second.status, 503);
    assert_eq!(second.header("retry-after"), Some("1"));
    async_shed_gate.open.store(true, Ordering::SeqCst);
    assert_eq!(first.join().unwrap().status, 200);
    server.stop(Duration::from_secs(1));
}

/// A layer whose service fails every request (an application's tower middleware that errs).
#[derive(Clone)]
struct FailLayer;

#[derive(Clone)]
struct Fail<S>(S);

impl<S> Layer<S> for FailLayer {
    type Service = Fail<S>;
    fn layer(&self, inner: S) -> Fail<S> {
        Fail(inner)
    }
}

impl<S: Service<Request<Body>, Error = Infallible>> Service<Request<Body>> for Fail<S> {
    type Response = S::Response;
    type Error = BoxError;
    type Future = std::future::Ready<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        std::future::ready(Err("boom".into()))
    }
}

#[test]
fn a_service_error_answers_500_and_route_layers_keep_to_their_path() {
    let router = Router::new()
        .get("/ok", |_| Response::new(Body::from("ok")))
        .get("/fail", |_| "never")
        .get_async("/fail-async", |_| async { "never" })
        .tower_route_layer("/fail", FailLayer)
        .tower_route_layer("/fail-async", FailLayer)
        .tower_route_layer("/not-a-route", FailLayer);
    let server = serve(router);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/fail").status, 500);
    assert_eq!(get(addr, "/fail-async").status, 500);
    let r = get(addr, "/ok");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    server.stop(Duration::from_secs(1));
}
