//! Response encoding: status line and headers, chunked body pieces, canned error responses.
//!
//! The connection handler calls [`encode_head`] once per response, then writes the body the way
//! the returned [`HeadOutcome`] says (raw, chunked with [`encode_chunk`] and
//! [`encode_last_chunk`], or not at all). This file decides the framing headers
//! (`Content-Length`, `Transfer-Encoding`, `Connection`) itself so a response can never
//! contradict its own body; it appends to a `Vec<u8>` and never writes to a socket or reads a
//! clock (the `Date` value comes from the caller's [`DateCache`](super::DateCache)).

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};

use super::request::list_items;

/// The body the caller intends to send with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// No body (`Content-Length: 0` where a length is allowed).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// A body of unknown length, sent in chunks (or, to an HTTP/1.0 client, until close).
    Chunked,
}

/// How the caller must write the body after [`encode_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Write no body at all (1xx, 204, 304, a response to HEAD, or an empty body).
    None,
    /// Write exactly this many raw bytes.
    Length(u64),
    /// Write the body through [`encode_chunk`], then [`encode_last_chunk`].
    Chunked,
    /// Write the raw body, then close the connection (chunked body to an HTTP/1.0 client).
    UntilClose,
}

/// What [`encode_head`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadOutcome {
    /// How to write the body.
    pub body: BodyFraming,
    /// Whether the connection stays open for the next request once this response is written.
    /// For 101 Switching Protocols it is passed through from the context: the connection then
    /// belongs to the new protocol.
    pub keep_alive: bool,
}

/// Facts about the request being answered and the current time.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext<'a> {
    /// The request's version (1.0 limits framing and changes the `Connection` default).
    pub version: Version,
    /// Whether the connection may stay open: the request's
    /// [`keep_alive`](super::RequestHead::keep_alive) and the server's own wish.
    pub keep_alive: bool,
    /// The request was HEAD: framing headers are written as for GET, but no body.
    pub head_request: bool,
    /// The `Date` value, usually [`DateCache::header_value`](super::DateCache::header_value);
    /// empty to send no `Date`.
    pub date: &'a [u8],
}

/// Appends a response head (status line, headers, blank line) to `dst` and says how to send the
/// body. Call it once per response, before any body bytes.
///
/// The status line is always `HTTP/1.1` (RFC 9110 §6.2). The user's `Content-Length`,
/// `Transfer-Encoding` and `Connection` headers are replaced by ones derived from `body` and
/// `ctx` (a user `Connection: close` still closes), except that a 304 keeps the user's
/// `Content-Length` and a 101 keeps the user's `Connection`. 1xx and 204 responses get no
/// framing headers. `Date` is added unless the user set one or the status is 1xx. Header values
/// holding CR, LF or NUL are dropped rather than written.
///
/// ```
/// use herd_proto::http1::{encode_head, BodyFraming, BodyLen, ResponseContext};
/// use http::{HeaderMap, StatusCode, Version};
///
/// let ctx = ResponseContext {
///     version: Version::HTTP_11,
///     keep_alive: true,
///     head_request: false,
///     date: b"Sun, 06 Nov 1994 08:49:37 GMT",
/// };
/// let mut out = Vec::new();
/// let done = encode_head(&mut out, StatusCode::OK, &HeaderMap::new(), BodyLen::Length(2), &ctx);
/// out.extend_from_slice(b"hi");
/// assert_eq!(done.body, BodyFraming::Length(2));
/// assert!(done.keep_alive);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\r\nhi"
/// );
/// ```
pub fn encode_head(
    dst: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: BodyLen,
    ctx: &ResponseContext<'_>,
) -> HeadOutcome {
    let http10 = ctx.version <= Version::HTTP_10;
    let informational = status.is_informational();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let not_modified = status == StatusCode::NOT_MODIFIED;
    // Linear passes over the handler's (few) headers instead of hash lookups: whether it has a
    // `Date` of its own and a `Connection: close`.
    let mut user_close = false;
    let mut has_date = false;
    for (name, value) in headers {
        if name == CONNECTION {
            user_close |= list_items(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if name == DATE {
            has_date = true;
        }
    }
    let mut keep_alive = ctx.keep_alive && !user_close;

    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
    if !informational && !ctx.date.is_empty() && !has_date {
        put_header(dst, b"Date", ctx.date);
    }
    for (name, value) in headers {
        let framing = name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION;
        let keep = !framing
            || (switching && name == CONNECTION)
            || (not_modified && name == CONTENT_LENGTH);
        let clean = !value
            .as_bytes()
            .iter()
            .any(|&b| matches!(b, b'\r' | b'\n' | 0));
        if keep && clean {
            put_header(dst, name.as_str().as_bytes(), value.as_bytes());
        }
    }

    let mut framing = if informational || status == StatusCode::NO_CONTENT || not_modified {
        BodyFraming::None
    } else {
        match body {
            BodyLen::Empty => {
                put_length(dst, 0);
                BodyFraming::None
            }
            BodyLen::Length(n) => {
                put_length(dst, n);
                BodyFraming::Length(n)
            }
            BodyLen::Chunked if http10 => {
                keep_alive = false;
                BodyFraming::UntilClose
            }
            BodyLen::Chunked => {
                put_header(dst, b"Transfer-Encoding", b"chunked");
                BodyFraming::Chunked
            }
        }
    };
    if ctx.head_request || framing == BodyFraming::Length(0) {
        framing = BodyFraming::None;
    }
    if switching {
        keep_alive = ctx.keep_alive;
    } else if !informational {
        if !keep_alive {
            put_header(dst, b"Connection", b"close");
        } else if http10 {
            put_header(dst, b"Connection", b"keep-alive");
        }
    }
    dst.extend_from_slice(b"\r\n");
    HeadOutcome {
        body: framing,
        keep_alive,
    }
}

/// Appends one chunk holding `data` to `dst`. An empty `data` writes nothing (an empty chunk
/// would end the body; use [`encode_last_chunk`] for that).
///
/// ```
/// let mut out = Vec::new();
/// herd_proto::http1::encode_chunk(&mut out, b"hello, world");
/// assert_eq!(out, b"c\r\nhello, world\r\n");
/// ```
pub fn encode_chunk(dst: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut n = data.len() as u64;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.reserve(digits.len() - at + data.len() + 4);
    dst.extend_from_slice(&digits[at..]);
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(data);
    dst.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and an empty trailer section, ending a chunked body.
///
/// ```
/// let mut out = Vec::new();
/// herd_proto::http1::encode_last_chunk(&mut out);
/// assert_eq!(out, b"0\r\n\r\n");
/// ```
pub fn encode_last_chunk(dst: &mut Vec<u8>) {
    dst.extend_from_slice(b"0\r\n\r\n");
}

/// Appends `HTTP/1.1 100 Continue` (for a request with
/// [`expect_continue`](super::RequestHead::expect_continue)), before reading its body.
///
/// ```
/// let mut out = Vec::new();
/// herd_proto::http1::continue_100(&mut out);
/// assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
/// ```
pub fn continue_100(dst: &mut Vec<u8>) {
    dst.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Appends a complete error response: the status, a short `text/plain` body naming it, and
/// `Connection: close`. Use it for a decoder error ([`HttpError::status`](super::HttpError))
/// and close the connection once it is written. A `status` outside 100..=999 is sent as 500.
///
/// ```
/// let mut out = Vec::new();
/// herd_proto::http1::error_response(&mut out, 431, b"");
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
/// assert!(text.contains("\r\nConnection: close\r\n"));
/// assert!(text.ends_with("\r\n\r\n431 Request Header Fields Too Large\n"));
/// ```
pub fn error_response(dst: &mut Vec<u8>, status: u16, date: &[u8]) {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error").as_bytes();
    let body_len = 3 + 1 + reason.len() + 1;
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(reason);
    dst.extend_from_slice(b"\r\n");
    if !date.is_empty() {
        put_header(dst, b"Date", date);
    }
    put_header(dst, b"Content-Type", b"text/plain; charset=utf-8");
    put_length(dst, body_len as u64);
    put_header(dst, b"Connection", b"close");
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(reason);
    dst.push(b'\n');
}

fn put_header(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.reserve(name.len() + value.len() + 4);
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

fn put_length(dst: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put_header(dst, b"Content-Length", &digits[at..]);
}
