//! Strict RFC 9112 parsing over real sockets: every rule's raw bytes, the status the server
//! answers, and whether it closes the connection afterwards.

mod http_support;

use herd::http::{Body, HttpOptions, Limits, Request, Response, Router};
use herd::CloseReason;
use http_support::{serve, Client};

fn router() -> Router {
    Router::new()
        .get("/", |_| Response::new(Body::from("ok")))
        .post("/", |req: Request<Body>| {
            Response::new(Body::from(format!("{}", req.body().len().unwrap_or(0))))
        })
}

fn small_body_opts() -> HttpOptions {
    HttpOptions {
        limits: Limits {
            max_body: 1000,
            ..Limits::default()
        },
        ..HttpOptions::default()
    }
}

/// (name, request bytes, expected status). Every one of these must close the connection.
fn bad_requests() -> Vec<(&'static str, Vec<u8>, u16)> {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("request line over 8 KiB", long_target, 414),
        ("header line over 8 KiB", long_header, 431),
        ("more than 100 headers", many, 431),
        (
            "Content-Length over the body limit",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".into(),
            413,
        ),
        (
            "chunked body over the body limit",
            format!(
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n{}\r\n0\r\n\r\n",
                "x".repeat(1001)
            ),
            413,
        ),
        (
            "Transfer-Encoding with Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "differing repeated Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(),
            400,
        ),
        (
            "Content-Length list with differing values",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 4\r\n\r\nabcd".into(),
            400,
        ),
        (
            "non-numeric Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n".into(),
            400,
        ),
        (
            "signed Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc".into(),
            400,
        ),
        (
            "overflowing Content-Length",
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(),
            400,
        ),
        (
            "Transfer-Encoding gzip, chunked",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into(),
            501,
        ),
        (
            "Transfer-Encoding identity",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n".into(),
            400,
        ),
        (
            "missing Host on HTTP/1.1",
            "GET / HTTP/1.1\r\n\r\n".into(),
            400,
        ),
        (
            "duplicate Host",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            400,
        ),
        (
            "whitespace before the colon",
            "GET / HTTP/1.1\r\nHost : t\r\n\r\n".into(),
            400,
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n".into(),
            400,
        ),
        (
            "bare CR in a header line",
            "GET / HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n".into(),
            400,
        ),
        (
            "bare LF line endings",
            "GET / HTTP/1.1\nHost: t\n\n".into(),
            400,
        ),
        (
            "invalid chunk size",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n".into(),
            400,
        ),
        (
            "overflowing chunk size",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n".into(),
            400,
        ),
        (
            "chunk data not followed by CRLF",
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n".into(),
            400,
        ),
        ("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        ("garbage version", "GET / HTTX/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("malformed request line", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("invalid target byte", "GET /a|b HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("target with a fragment", "GET /a#b HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
    ];
    cases
        .into_iter()
        .map(|(n, req, status)| (n, req.into_bytes(), status))
        .collect()
}

#[test]
fn every_rule_gets_its_status_and_closes() {
    let server = serve(router(), small_body_opts());
    let cases = bad_requests();
    for (name, bytes, status) in &cases {
        let mut c = Client::connect(server.local_addr());
        // A valid request first: the error must not break what came before it.
        let ok = c.get("/");
        assert_eq!((ok.status, ok.text().as_str()), (200, "ok"), "{name}");
        c.send(bytes);
        let resp = c.response();
        assert_eq!(resp.status, *status, "{name}: wrong status");
        assert!(resp.says_close(), "{name}: no Connection: close");
        c.expect_close();
    }
    let stats = server.stop(std::time::Duration::from_secs(5)).stats;
    assert_eq!(
        stats.closed_by(CloseReason::Decode),
        cases.len() as u64,
        "every refusal is counted as a decode close"
    );
}

#[test]
fn errors_after_pipelined_requests_come_after_their_responses() {
    let server = serve(router(), small_body_opts());
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nPOST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().text(), "ok");
    assert_eq!(c.response().text(), "2");
    let bad = c.response();
    assert_eq!(bad.status, 400);
    c.expect_close();
}

#[test]
fn accepted_edge_cases_keep_the_connection() {
    let server = serve(router(), small_body_opts());
    let mut c = Client::connect(server.local_addr());
    let ok_cases: &[&[u8]] = &[
        // Empty lines before a request line are skipped (RFC 9112 2.2).
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
        // Identical repeated Content-Length values are one value.
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        // Absolute-form target.
        b"GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\n",
        // Header names in any case, and chunk extensions.
        b"POST / HTTP/1.1\r\nhOsT: t\r\ntransfer-encoding: CHUNKED\r\n\r\n1;ext=1\r\na\r\n0\r\n\r\n",
        // Exactly at the body limit.
        &[
            &b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"[..],
            &[b'x'; 1000][..],
        ]
        .concat(),
    ];
    for (i, bytes) in ok_cases.iter().enumerate() {
        c.send(bytes);
        let r = c.response();
        assert_eq!(r.status, 200, "case {i}");
        assert!(!r.says_close(), "case {i}");
    }
}
