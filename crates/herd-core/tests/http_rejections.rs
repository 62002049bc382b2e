//! Extractor rejections are counted by kind, over real loopback sockets: one request per
//! `RejectionKind` (each built-in extractor's failure, a request body a middleware turned
//! into a stream, a missing router or loop state, and an application's own extractor's
//! missing header), on inline, worker-pool and async routes, then the server's counters
//! (`ServerHandle::stats().proto.http.rejections`, what the herd server exports as
//! `herd_http_rejections_total{kind}`) show exactly one of each.
#![cfg(feature = "json")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use herd_core::http::extract::{
    Ctx, Form, FromRequestParts, LoopState, Path, Query, Rejection, RejectionKind, State,
};
use herd_core::http::middleware::from_fn;
use herd_core::http::{Body, HttpService, Json, Method, Router};
use herd_core::{Bytes, Server};
use http::request::Parts;

#[derive(serde::Deserialize)]
struct Page {
    #[allow(dead_code)]
    limit: usize,
}

#[derive(serde::Deserialize)]
struct Item {
    #[allow(dead_code)]
    name: String,
}

/// An application's extractor: the `x-api-key` header, or a `MissingHeader` rejection.
struct ApiKey(String);

impl FromRequestParts for ApiKey {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| ApiKey(v.to_string()))
            .ok_or_else(|| Rejection::new(RejectionKind::MissingHeader, "x-api-key"))
    }
}

/// A request that must be rejected: the kind, the status, method, path, headers, body.
type Case = (
    RejectionKind,
    u16,
    &'static str,
    &'static str,
    &'static str,
    &'static [u8],
);

/// Send one request (`Connection: close`) and return the status code.
fn status(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn every_rejection_kind_is_counted_once() {
    let router = Router::new()
        .post_with("/streamed", |b: Bytes| format!("{}", b.len()))
        .route_layer(from_fn(|req: herd_core::http::Request<Body>, next| {
            // A body that is not in memory (as a streaming route's would be).
            let req = req.map(|_| Body::stream(vec![Bytes::from_static(b"x")]));
            next.run(req)
        }))
        .get_with("/path/:id", |Path(id): Path<u32>| format!("{id}"))
        .get_with("/query", |Query(p): Query<Page>| format!("{}", p.limit))
        .post_with("/json", |Json(_): Json<Item>| "ok")
        // On the worker pool: its counts come back to the loop with the response.
        .route_blocking_with(Method::POST, "/form", |f: Form<Item>| {
            let _ = f;
            "ok"
        })
        .post_with("/text", |s: String| s)
        .post_async_with("/bytes", |b: Bytes| async move { format!("{}", b.len()) })
        .get_with("/state", |State(n): State<Arc<u64>>| format!("{n}"))
        .get_with("/loop-state", |LoopState(n): LoopState<u32>| format!("{n}"))
        .get_async_with("/key", |ApiKey(k): ApiKey| async move { k })
        .body_limit(64);
    let server = HttpService::new(router)
        .serve(Server::new().bind("127.0.0.1:0").unwrap().loops(2))
        .unwrap();
    let addr = server.local_addr();
    let json = "Content-Type: application/json\r\n";
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let cases: [Case; 11] = [
        (RejectionKind::InvalidPath, 400, "GET", "/path/abc", "", b""),
        (
            RejectionKind::InvalidQuery,
            400,
            "GET",
            "/query?limit=x",
            "",
            b"",
        ),
        (
            RejectionKind::InvalidJson,
            400,
            "POST",
            "/json",
            json,
            b"{\"name\":",
        ),
        (
            RejectionKind::InvalidForm,
            400,
            "POST",
            "/form",
            form,
            b"nom=x",
        ),
        (
            RejectionKind::InvalidUtf8,
            400,
            "POST",
            "/text",
            "",
            b"\xff\xfe",
        ),
        (
            RejectionKind::UnsupportedMediaType,
            415,
            "POST",
            "/json",
            "",
            b"{}",
        ),
        (
            RejectionKind::PayloadTooLarge,
            413,
            "POST",
            "/bytes",
            "",
            &[b'a'; 100],
        ),
        (
            RejectionKind::BodyNotBuffered,
            500,
            "POST",
            "/streamed",
            "",
            b"abc",
        ),
        (RejectionKind::MissingState, 500, "GET", "/state", "", b""),
        (
            RejectionKind::MissingLoopState,
            500,
            "GET",
            "/loop-state",
            "",
            b"",
        ),
        (RejectionKind::MissingHeader, 400, "GET", "/key", "", b""),
    ];
    // Every kind is tested, in `ALL` order.
    let kinds: Vec<_> = cases.iter().map(|c| c.0).collect();
    assert_eq!(kinds, RejectionKind::ALL);
    for (kind, want, method, path, headers, body) in cases {
        assert_eq!(
            status(addr, method, path, headers, body),
            want,
            "{} ({method} {path})",
            kind.as_str()
        );
    }
    // Requests that pass are not counted.
    assert_eq!(status(addr, "GET", "/path/7", "", b""), 200);
    assert_eq!(status(addr, "POST", "/form", form, b"name=x"), 200);
    assert_eq!(status(addr, "GET", "/key", "x-api-key: k\r\n", b""), 200);

    let counts = server.stats().proto.http.rejections;
    for k in RejectionKind::ALL {
        assert_eq!(counts[k.index()], 1, "{}: {counts:?}", k.as_str());
    }
    server.stop(Duration::from_secs(1));
}
