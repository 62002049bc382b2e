//! Response encoding: framing headers per status, version and method; chunks; canned responses;
//! the date cache.

use crate::http1::{
    continue_100, encode_chunk, encode_head, encode_last_chunk, error_response, BodyFraming,
    BodyLen, DateCache, HeadOutcome, ResponseContext,
};
use http::{HeaderMap, HeaderValue, StatusCode, Version};

const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

fn ctx(version: Version, keep_alive: bool, head_request: bool) -> ResponseContext<'static> {
    ResponseContext {
        version,
        keep_alive,
        head_request,
        date: DATE,
    }
}

fn encode(
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: BodyLen,
    ctx: ResponseContext<'_>,
) -> (String, HeadOutcome) {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(*n, HeaderValue::from_static(v));
    }
    let mut out = Vec::new();
    let status = StatusCode::from_u16(status).unwrap();
    let outcome = encode_head(&mut out, status, &map, body, &ctx);
    (String::from_utf8(out).unwrap(), outcome)
}

fn v11() -> ResponseContext<'static> {
    ctx(Version::HTTP_11, true, false)
}

#[test]
fn fixed_length_keep_alive_11() {
    let (text, out) = encode(
        200,
        &[("content-type", "text/plain")],
        BodyLen::Length(5),
        v11(),
    );
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         content-type: text/plain\r\nContent-Length: 5\r\n\r\n"
    );
    assert_eq!(
        out,
        HeadOutcome {
            body: BodyFraming::Length(5),
            keep_alive: true
        }
    );
}

#[test]
fn empty_body_has_zero_length() {
    let (text, out) = encode(200, &[], BodyLen::Empty, v11());
    assert!(text.contains("\r\nContent-Length: 0\r\n"));
    assert_eq!(out.body, BodyFraming::None);
    let (_, out) = encode(200, &[], BodyLen::Length(0), v11());
    assert_eq!(out.body, BodyFraming::None);
}

#[test]
fn chunked_on_11_and_until_close_on_10() {
    let (text, out) = encode(200, &[], BodyLen::Chunked, v11());
    assert!(text.contains("\r\nTransfer-Encoding: chunked\r\n"));
    assert!(!text.contains("Connection"));
    assert_eq!(
        out,
        HeadOutcome {
            body: BodyFraming::Chunked,
            keep_alive: true
        }
    );

    let (text, out) = encode(
        200,
        &[],
        BodyLen::Chunked,
        ctx(Version::HTTP_10, true, false),
    );
    assert!(!text.contains("Transfer-Encoding"));
    assert!(!text.contains("Content-Length"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert_eq!(
        out,
        HeadOutcome {
            body: BodyFraming::UntilClose,
            keep_alive: false
        }
    );
}

#[test]
fn connection_header_per_version() {
    let (text, out) = encode(
        200,
        &[],
        BodyLen::Empty,
        ctx(Version::HTTP_11, false, false),
    );
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(!out.keep_alive);
    let (text, out) = encode(200, &[], BodyLen::Empty, ctx(Version::HTTP_10, true, false));
    assert!(text.contains("\r\nConnection: keep-alive\r\n"));
    assert!(out.keep_alive);
    let (text, _) = encode(
        200,
        &[],
        BodyLen::Empty,
        ctx(Version::HTTP_10, false, false),
    );
    assert!(text.contains("\r\nConnection: close\r\n"));
}

#[test]
fn user_connection_close_is_honoured_once() {
    let (text, out) = encode(200, &[("connection", "close")], BodyLen::Empty, v11());
    assert!(!out.keep_alive);
    assert_eq!(text.matches("onnection").count(), 1);
}

#[test]
fn user_framing_headers_are_replaced() {
    let headers = [("content-length", "77"), ("transfer-encoding", "gzip")];
    let (text, out) = encode(200, &headers, BodyLen::Length(3), v11());
    assert!(!text.contains("77"));
    assert!(!text.contains("gzip"));
    assert_eq!(text.matches("Content-Length: 3\r\n").count(), 1);
    assert_eq!(out.body, BodyFraming::Length(3));
}

#[test]
fn head_request_keeps_length_but_sends_no_body() {
    let (text, out) = encode(
        200,
        &[],
        BodyLen::Length(1234),
        ctx(Version::HTTP_11, true, true),
    );
    assert!(text.contains("\r\nContent-Length: 1234\r\n"));
    assert_eq!(out.body, BodyFraming::None);
    let (text, out) = encode(
        200,
        &[],
        BodyLen::Chunked,
        ctx(Version::HTTP_11, true, true),
    );
    assert!(text.contains("Transfer-Encoding: chunked"));
    assert_eq!(out.body, BodyFraming::None);
}

#[test]
fn no_body_statuses() {
    let (text, out) = encode(204, &[("content-length", "5")], BodyLen::Length(5), v11());
    assert!(!text.contains("ength"));
    assert_eq!(out.body, BodyFraming::None);
    assert!(out.keep_alive);
    let (text, out) = encode(304, &[("content-length", "5")], BodyLen::Length(5), v11());
    assert_eq!(
        text.matches("ength").count(),
        1,
        "304 keeps the user's length: {text}"
    );
    assert_eq!(out.body, BodyFraming::None);
    let (text, out) = encode(103, &[("link", "</a.css>")], BodyLen::Length(5), v11());
    assert_eq!(text, "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n");
    assert_eq!(out.body, BodyFraming::None);
}

#[test]
fn switching_protocols_keeps_user_connection() {
    let headers = [("connection", "Upgrade"), ("upgrade", "websocket")];
    let (text, out) = encode(101, &headers, BodyLen::Empty, v11());
    assert_eq!(
        text,
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n"
    );
    assert_eq!(out.body, BodyFraming::None);
}

#[test]
fn user_date_wins_and_empty_date_is_omitted() {
    let (text, _) = encode(200, &[("date", "yesterday")], BodyLen::Empty, v11());
    assert!(text.contains("date: yesterday\r\n"));
    assert!(!text.contains(std::str::from_utf8(DATE).unwrap()));
    let mut c = v11();
    c.date = b"";
    let (text, _) = encode(200, &[], BodyLen::Empty, c);
    assert!(!text.to_ascii_lowercase().contains("date"));
}

#[test]
fn unknown_status_has_empty_reason() {
    let (text, _) = encode(599, &[], BodyLen::Empty, v11());
    assert!(text.starts_with("HTTP/1.1 599 \r\n"));
}

#[test]
fn chunks_and_last_chunk() {
    let mut out = Vec::new();
    encode_chunk(&mut out, b"");
    assert!(out.is_empty());
    encode_chunk(&mut out, &[b'x'; 255]);
    assert!(out.starts_with(b"ff\r\nxxx"));
    assert!(out.ends_with(b"x\r\n"));
    assert_eq!(out.len(), 2 + 2 + 255 + 2);
    out.clear();
    encode_chunk(&mut out, &[0u8; 4096]);
    assert!(out.starts_with(b"1000\r\n"));
    out.clear();
    encode_last_chunk(&mut out);
    assert_eq!(out, b"0\r\n\r\n");
}

#[test]
fn canned_responses() {
    let mut out = Vec::new();
    continue_100(&mut out);
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    for status in [400u16, 413, 414, 431, 501, 505] {
        let mut out = Vec::new();
        error_response(&mut out, status, DATE);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains("\r\nDate: Sun, 06 Nov 1994"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(body.starts_with(&status.to_string()));
    }
    let mut out = Vec::new();
    error_response(&mut out, 42, b"");
    assert!(out.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
}

#[test]
fn error_response_is_parseable() {
    let mut out = Vec::new();
    error_response(&mut out, 400, DATE);
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut headers);
    let n = resp.parse(&out).unwrap().unwrap();
    assert_eq!(resp.code, Some(400));
    assert_eq!(&out[n..], b"400 Bad Request\n");
}

#[test]
fn date_cache_formats_and_clamps() {
    let mut d = DateCache::new();
    assert_eq!(d.header_value(), b"Thu, 01 Jan 1970 00:00:00 GMT");
    d.update(784_111_777);
    assert_eq!(d.header_value(), DATE);
    d.update(784_111_777);
    assert_eq!(d.header_value(), DATE);
    d.update(784_111_778);
    assert_eq!(d.header_value(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    d.update(0);
    assert_eq!(d.header_value(), b"Thu, 01 Jan 1970 00:00:00 GMT");
    d.update(u64::MAX);
    assert_eq!(d.header_value(), b"Fri, 31 Dec 9999 23:59:59 GMT");
}
