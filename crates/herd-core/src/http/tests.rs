//! The HTTP/1.1 connection state driven in memory (no sockets): pipelining order, keep-alive,
//! the header and keep-alive timeouts, and request bodies arriving in pieces. The driver is
//! the event loop's own per-connection code over a memory transport
//! ([`Pair`](crate::event_loop::pair::Pair)), with a clock the test moves.

use std::time::Duration;

use ::http::{Request, Response};

use super::{Body, HttpOptions, HttpProtocol, HttpService, Router};
use crate::event_loop::pair::Pair;
use crate::{CloseReason, Options};

fn echo(req: Request<Body>) -> Response<Body> {
    let body = req.into_body().into_bytes().unwrap_or_default();
    Response::new(Body::from(body))
}

fn pair_with(opts: HttpOptions) -> Pair<HttpProtocol> {
    let router = Router::new()
        .get("/a", |_| Response::new(Body::from_static(b"first")))
        .get("/b", |_| Response::new(Body::from_static(b"second")))
        .post("/echo", echo);
    let make = HttpService::new(router).options(opts).into_factory();
    Pair::new(make(), &Options::default())
}

fn pair() -> Pair<HttpProtocol> {
    pair_with(HttpOptions::default())
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The status codes of the responses in `out`, in order.
fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.1 ")
        .map(|(i, _)| out[i + 9..i + 12].parse().unwrap())
        .collect()
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_write() {
    let mut p = pair();
    let writes = p.stats().writes;
    p.feed(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = text(&p.take_output());
    assert_eq!(statuses(&out), [200, 200]);
    let (b, a) = (out.find("second").unwrap(), out.find("first").unwrap());
    assert!(b < a, "responses in request order: {out}");
    assert_eq!(p.stats().writes - writes, 1, "both responses in one send");
    assert_eq!(p.closed(), None, "keep-alive");
}

#[test]
fn a_request_split_at_every_byte_gets_the_same_answer() {
    let req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let mut whole = pair();
    whole.feed(req);
    let expect = text(&whole.take_output());
    assert!(expect.ends_with("hello"), "{expect}");
    let mut split = pair();
    for b in req.iter() {
        split.feed(std::slice::from_ref(b));
    }
    let got = text(&split.take_output());
    assert_eq!(statuses(&got), [200]);
    assert!(got.ends_with("hello"), "{got}");
    assert_eq!(got.len(), expect.len());
}

#[test]
fn a_chunked_body_in_pieces_is_assembled() {
    let mut p = pair();
    p.feed(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(p.take_output().is_empty(), "no answer before the body");
    p.feed(b"3\r\nabc\r\n");
    p.feed(b"4\r\ndefg\r\n");
    assert!(p.take_output().is_empty());
    p.feed(b"0\r\n\r\n");
    let out = text(&p.take_output());
    assert_eq!(statuses(&out), [200]);
    assert!(out.ends_with("abcdefg"), "{out}");
}

#[test]
fn connection_close_answers_then_closes() {
    let mut p = pair();
    p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    let out = text(&p.take_output());
    assert_eq!(
        statuses(&out),
        [200],
        "nothing after the closing request: {out}"
    );
    assert!(out.contains("first") && !out.contains("second"));
    assert_eq!(p.closed(), Some(CloseReason::Local));
}

#[test]
fn a_slow_head_gets_408_at_the_header_timeout() {
    let mut p = pair_with(HttpOptions {
        header_timeout: Duration::from_secs(10),
        ..HttpOptions::default()
    });
    p.feed(b"GET /a HTTP/1.1\r\nHo");
    p.advance(9_999);
    assert_eq!(p.closed(), None, "not before the timeout");
    assert!(p.take_output().is_empty());
    p.advance(1);
    assert_eq!(statuses(&text(&p.take_output())), [408]);
    assert_eq!(p.closed(), Some(CloseReason::Timeout));
}

#[test]
fn an_idle_keepalive_connection_closes_silently() {
    let mut p = pair_with(HttpOptions {
        keepalive_timeout: Duration::from_secs(5),
        ..HttpOptions::default()
    });
    p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&text(&p.take_output())), [200]);
    p.advance(4_999);
    assert_eq!(p.closed(), None);
    p.advance(1);
    assert!(p.take_output().is_empty(), "no response to an idle close");
    assert_eq!(p.closed(), Some(CloseReason::Idle));
}

#[test]
fn a_bad_request_behind_good_ones_is_answered_after_them() {
    let mut p = pair();
    p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nBAD\x01 / HTTP/1.1\r\n\r\n");
    let out = text(&p.take_output());
    assert_eq!(statuses(&out), [200, 200, 400], "{out}");
    assert_eq!(p.closed(), Some(CloseReason::Decode));
}

#[test]
fn a_response_larger_than_the_socket_buffer_waits_for_writable() {
    let mut p = pair();
    p.set_room(Some(10));
    p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    let first = p.take_output();
    assert_eq!(first.len(), 10, "a short write takes what fits");
    p.set_room(None);
    let mut out = first;
    out.extend(p.take_output());
    let out = text(&out);
    assert_eq!(statuses(&out), [200]);
    assert!(out.ends_with("first"), "{out}");
}

#[test]
fn the_peer_closing_after_a_response_closes_the_connection() {
    let mut p = pair();
    p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(statuses(&text(&p.take_output())), [200]);
    p.peer_close();
    assert_eq!(p.closed(), Some(CloseReason::PeerClosed));
}
