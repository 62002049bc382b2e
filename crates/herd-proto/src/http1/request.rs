//! The HTTP/1.1 request decoder: a sans-IO state machine from bytes to heads, body pieces and
//! end-of-request events.
//!
//! [`RequestDecoder::decode`] is called by the connection handler with the bytes it holds; it
//! reports what it found and how many bytes it consumed. Heads are scanned incrementally and
//! bounded (see `scan.rs`), tokenized by httparse, then checked against RFC 9112's framing rules
//! here; bodies are passed through borrowed from the caller's buffer (chunked ones de-chunked by
//! `chunked.rs`). It must not allocate anything but the `http` types of a head, and must not
//! buffer bytes itself: the caller keeps the unconsumed tail.

use http::header::HeaderMap;
use http::{HeaderName, HeaderValue, Method, Uri, Version};

use super::chunked::{self, ChunkLine};
use super::scan::{BlockRules, BlockScan, Scanned};
use super::{HttpError, Limits};

/// Header slots kept on the stack while httparse tokenizes; larger heads use a heap buffer.
const STACK_HEADERS: usize = 32;

/// What one call to [`RequestDecoder::decode`] found, when it found something (`None` in its
/// place means nothing more is complete: keep the unconsumed bytes and call again once more
/// have arrived).
// The head is large, but boxing it would cost an allocation per request; it is moved once.
// `Option<Decoded>` is no larger than `Decoded`: `None` takes a spare discriminant value.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A complete request head; its body (if any, see [`RequestHead::body`]) follows.
    Head(RequestHead),
    /// A piece of the body (de-chunked), borrowed from the caller's buffer. Never empty.
    Body(&'a [u8]),
    /// The request is complete (trailers, if any, in [`RequestDecoder::trailers`]); the decoder
    /// is ready for the next pipelined request.
    End,
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`, or `Content-Length: 0`.
    None,
    /// Exactly this many bytes (never 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`, length unknown until the last chunk.
    Chunked,
}

/// A validated request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, URI, version (1.0 or 1.1) and headers, as `http` crate types.
    pub request: http::request::Parts,
    /// How the body is framed.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this one: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// HTTP/1.1 `Expect: 100-continue` on a request with a body: answer with
    /// [`continue_100`](super::continue_100) (or a final status) before reading the body.
    pub expect_continue: bool,
    /// HTTP/1.1 `Connection: upgrade` together with an `Upgrade` header (e.g. for WebSocket).
    pub upgrade: bool,
}

/// Where the decoder is within the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    End,
    Failed(HttpError),
}

/// Decodes a stream of pipelined HTTP/1.1 requests.
///
/// Feed it the bytes read from the connection with [`decode`](Self::decode); advance the buffer
/// by the returned count after every call, whatever the event; call again until it returns no
/// event (`None`). After an error the decoder is poisoned and returns the same error.
///
/// ```
/// use herd_proto::http1::{BodyKind, Decoded, RequestDecoder};
///
/// let mut dec = RequestDecoder::default();
/// let req = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
/// let (n, ev) = dec.decode(req).unwrap();
/// let Some(Decoded::Head(head)) = ev else { panic!() };
/// assert_eq!(head.body, BodyKind::Length(5));
/// let (m, ev) = dec.decode(&req[n..]).unwrap();
/// assert!(matches!(ev, Some(Decoded::Body(b"hello"))));
/// assert!(matches!(dec.decode(&req[n + m..]).unwrap(), (0, Some(Decoded::End))));
/// assert!(matches!(dec.decode(&req[n + m..]).unwrap(), (0, None)));
/// ```
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// Progress through an incomplete head or trailer section.
    scan: BlockScan,
    /// Bytes of an incomplete chunk-size line already searched for LF.
    line_pos: usize,
    /// Empty lines skipped before the current request line.
    empty_lines: usize,
    /// Sum of the chunk sizes of the current body.
    chunked_total: u64,
    trailers: Option<HeaderMap>,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(Limits::default())
    }
}

impl RequestDecoder {
    /// A decoder waiting for the first request, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Head,
            scan: BlockScan::default(),
            line_pos: 0,
            empty_lines: 0,
            chunked_total: 0,
            trailers: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the decoder is between requests with nothing of the next one seen: the
    /// connection is idle (use the keep-alive timeout, not the header timeout).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.scan.is_fresh() && self.empty_lines == 0
    }

    /// The trailers of the last chunked body, once its [`Decoded::End`] was returned; cleared
    /// when the next head is decoded.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// Takes the trailers of the last chunked body (see [`trailers`](Self::trailers)).
    pub fn take_trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// Decodes from `src`, the bytes the caller holds that no earlier call consumed.
    ///
    /// Call it whenever bytes arrive and again after every event until it returns no event.
    /// Returns how many bytes of `src` it consumed and the event, if one is complete (the shape
    /// of herd-core's `codec::Decoder`); drop exactly that many bytes from the front of the
    /// buffer (body pieces borrow from the consumed part). `(n, None)` means nothing more is
    /// complete; `n` may be above 0 (empty lines or a chunk-size line were consumed). Then
    /// present the unconsumed bytes again followed by new ones: the decoder remembers how far
    /// it scanned them. `End` is returned without consuming bytes once a body is complete, so
    /// it can arrive with an empty `src`.
    pub fn decode<'a>(&mut self, src: &'a [u8]) -> Result<(usize, Option<Decoded<'a>>), HttpError> {
        let result = self.step(src);
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn step<'a>(&mut self, src: &'a [u8]) -> Result<(usize, Option<Decoded<'a>>), HttpError> {
        let mut at = 0;
        loop {
            let rest = &src[at..];
            match self.state {
                State::Failed(e) => return Err(e),
                State::Head => {
                    if self.scan.is_fresh() {
                        match self.skip_empty_lines(rest)? {
                            0 if rest == b"\r" => return Ok((at, None)),
                            0 => {}
                            skipped => {
                                at += skipped;
                                continue;
                            }
                        }
                    }
                    return match self.scan.scan(rest, &self.head_rules())? {
                        Scanned::Partial => Ok((at, None)),
                        Scanned::Complete { len, lines } => {
                            let head = parse_head(&rest[..len], lines, &self.limits)?;
                            self.begin_body(head.body);
                            Ok((at + len, Some(Decoded::Head(head))))
                        }
                    };
                }
                State::End => {
                    self.state = State::Head;
                    return Ok((at, Some(Decoded::End)));
                }
                State::Length(left) | State::ChunkData(left) => {
                    if rest.is_empty() {
                        return Ok((at, None));
                    }
                    let n = left.min(rest.len() as u64);
                    let left = left - n;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::End,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkDataEnd,
                        _ => State::ChunkData(left),
                    };
                    let n = n as usize;
                    return Ok((at + n, Some(Decoded::Body(&rest[..n]))));
                }
                State::ChunkSize => {
                    let max = self.limits.max_chunk_line;
                    match chunked::scan_chunk_line(rest, &mut self.line_pos, max)? {
                        ChunkLine::Partial => return Ok((at, None)),
                        ChunkLine::Size { size, len } => {
                            self.chunked_total = self
                                .chunked_total
                                .checked_add(size)
                                .filter(|&t| t <= self.limits.max_body)
                                .ok_or(HttpError::BodyTooLarge)?;
                            self.state = if size == 0 {
                                State::Trailers
                            } else {
                                State::ChunkData(size)
                            };
                            at += len;
                        }
                    }
                }
                State::ChunkDataEnd => match rest {
                    [] | [b'\r'] => return Ok((at, None)),
                    [b'\r', b'\n', ..] => {
                        self.state = State::ChunkSize;
                        at += 2;
                    }
                    _ => return Err(HttpError::BadChunkEnd),
                },
                State::Trailers => {
                    let rules = self.trailer_rules();
                    return match self.scan.scan(rest, &rules)? {
                        Scanned::Partial => Ok((at, None)),
                        Scanned::Complete { len, lines } => {
                            if lines > 0 {
                                self.trailers = Some(chunked::parse_trailers(&rest[..len], lines)?);
                            }
                            self.state = State::Head;
                            Ok((at + len, Some(Decoded::End)))
                        }
                    };
                }
            }
        }
    }

    /// Consumes CRLFs before a request line; returns how many bytes it consumed.
    fn skip_empty_lines(&mut self, src: &[u8]) -> Result<usize, HttpError> {
        let mut at = 0;
        loop {
            match &src[at..] {
                [b'\r', b'\n', ..] => {
                    self.empty_lines += 1;
                    if self.empty_lines > self.limits.max_empty_lines {
                        return Err(HttpError::TooManyEmptyLines);
                    }
                    at += 2;
                }
                [b'\n', ..] => return Err(HttpError::BadLineEnding),
                [b'\r', c, ..] if *c != b'\n' => return Err(HttpError::BadLineEnding),
                _ => return Ok(at),
            }
        }
    }

    /// Moves to the body state announced by a fresh head.
    fn begin_body(&mut self, body: BodyKind) {
        self.empty_lines = 0;
        self.trailers = None;
        self.chunked_total = 0;
        self.line_pos = 0;
        self.state = match body {
            BodyKind::None => State::End,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
        };
    }

    fn head_rules(&self) -> BlockRules {
        let l = &self.limits;
        BlockRules {
            first_line: Some((l.max_request_line, HttpError::UriTooLong)),
            max_line: l.max_header_line,
            line_error: HttpError::HeaderLineTooLong,
            max_lines: l.max_headers,
            lines_error: HttpError::TooManyHeaders,
            max_bytes: l.max_head_bytes,
            bytes_error: HttpError::HeadTooLarge,
        }
    }

    fn trailer_rules(&self) -> BlockRules {
        let l = &self.limits;
        BlockRules {
            first_line: None,
            max_line: l.max_header_line,
            line_error: HttpError::TrailersTooLarge,
            max_lines: l.max_trailers,
            lines_error: HttpError::TrailersTooLarge,
            max_bytes: l.max_trailer_bytes,
            bytes_error: HttpError::TrailersTooLarge,
        }
    }
}

/// Runs `f` with `n` empty httparse header slots, on the stack when `n` is small.
pub(crate) fn with_header_slots<'b, R>(
    n: usize,
    f: impl FnOnce(&mut [httparse::Header<'b>]) -> R,
) -> R {
    if n <= STACK_HEADERS {
        let mut slots: [httparse::Header<'b>; STACK_HEADERS] =
            [httparse::EMPTY_HEADER; STACK_HEADERS];
        f(&mut slots[..n])
    } else {
        let mut slots = vec![httparse::EMPTY_HEADER; n];
        f(&mut slots)
    }
}

/// Converts httparse's header slices into a `HeaderMap`.
pub(crate) fn to_header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HttpError::BadHeader)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| HttpError::BadHeader)?;
        map.append(name, value);
    }
    Ok(map)
}

/// Tokenizes a complete head (`lines` non-empty lines, request line included) and validates it.
fn parse_head(block: &[u8], lines: usize, limits: &Limits) -> Result<RequestHead, HttpError> {
    let Some(header_lines) = lines.checked_sub(1) else {
        return Err(HttpError::BadRequestLine);
    };
    with_header_slots(header_lines, |slots| {
        let mut req = httparse::Request::new(slots);
        match req.parse(block) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(HttpError::BadRequestLine),
            Err(e) => return Err(map_httparse_error(e, block)),
        }
        let method = req.method.ok_or(HttpError::BadRequestLine)?;
        let method =
            Method::from_bytes(method.as_bytes()).map_err(|_| HttpError::BadRequestLine)?;
        let version = match req.version {
            Some(0) => Version::HTTP_10,
            Some(1) => Version::HTTP_11,
            _ => return Err(HttpError::BadVersion),
        };
        let uri = parse_target(&method, req.path.ok_or(HttpError::BadRequestLine)?)?;
        let framing = Framing::read(req.headers, version, limits)?;
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = version;
        parts.headers = to_header_map(req.headers)?;
        Ok(RequestHead {
            request: parts,
            body: framing.body,
            keep_alive: framing.keep_alive,
            expect_continue: framing.expect_continue && framing.body != BodyKind::None,
            upgrade: framing.upgrade,
        })
    })
}

fn map_httparse_error(e: httparse::Error, block: &[u8]) -> HttpError {
    match e {
        httparse::Error::HeaderName | httparse::Error::HeaderValue => HttpError::BadHeader,
        httparse::Error::NewLine => HttpError::BadLineEnding,
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Version => version_error(block),
        _ => HttpError::BadRequestLine,
    }
}

/// Tells a well-formed but unsupported version (`HTTP/2.0`: 505) from garbage (400).
fn version_error(block: &[u8]) -> HttpError {
    let line_end = block
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(block.len());
    let line = &block[..line_end];
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => &line[sp + 1..],
        None => return HttpError::BadRequestLine,
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HttpError::UnsupportedVersion
        }
        _ => HttpError::BadVersion,
    }
}

/// Parses the request-target and checks that its form suits the method (RFC 9112 §3.2):
/// authority-form only for CONNECT, asterisk-form only for OPTIONS, otherwise origin-form or
/// absolute-form. Bytes outside RFC 3986 (non-ASCII, `"`, `{`, `|`...), fragments and userinfo
/// are refused.
fn parse_target(method: &Method, target: &str) -> Result<Uri, HttpError> {
    let bytes = target.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(|&b| is_target_char(b)) {
        return Err(HttpError::BadTarget);
    }
    let uri = Uri::try_from(bytes).map_err(|_| HttpError::BadTarget)?;
    let authority_ok = |uri: &Uri| {
        uri.authority()
            .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty())
    };
    let ok = if method == Method::CONNECT {
        uri.scheme().is_none()
            && authority_ok(&uri)
            && uri.port_u16().is_some()
            && uri.path().is_empty()
            && uri.query().is_none()
    } else if bytes == b"*" {
        method == Method::OPTIONS
    } else if bytes[0] == b'/' {
        uri.scheme().is_none() && uri.authority().is_none()
    } else {
        uri.scheme().is_some() && authority_ok(&uri)
    };
    if ok {
        Ok(uri)
    } else {
        Err(HttpError::BadTarget)
    }
}

/// Whether `b` may appear in a request-target: RFC 3986 unreserved, reserved (except `#`, as a
/// request-target has no fragment) and `%`. Space, controls, non-ASCII and
/// `"` `<` `>` `\` `^` `` ` `` `{` `|` `}` are not.
fn is_target_char(b: u8) -> bool {
    TARGET_CHARS[usize::from(b)]
}

/// [`is_target_char`] as a table, built at compile time (one load per byte of every target).
static TARGET_CHARS: [bool; 256] = byte_class(b"-._~:/?[]@!$&'()*+,;=%");

/// A table that is true for ASCII letters, digits and the bytes of `extra`.
const fn byte_class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// Bytes of a `Host` reg-name (RFC 3986 unreserved, sub-delims and `%`), as a table.
static REG_NAME_CHARS: [bool; 256] = byte_class(b"-._~!$&'()*+,;=%");

/// The message-framing facts of a head, read from its raw headers.
struct Framing {
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

impl Framing {
    /// Applies RFC 9112's Host, Content-Length and Transfer-Encoding rules (§3.2, §6.1, §6.3).
    ///
    /// Repeated `Content-Length` values (several fields or a list) that are all identical are
    /// accepted as that one value, as RFC 9110 §8.6 permits; differing ones are refused.
    fn read(
        headers: &[httparse::Header<'_>],
        version: Version,
        limits: &Limits,
    ) -> Result<Framing, HttpError> {
        let mut hosts = 0;
        let mut content_length: Option<u64> = None;
        // Transfer codings: how many, how many of them `chunked`, and whether the last is.
        let (mut te_items, mut te_chunked, mut te_last_chunked) = (0usize, 0usize, false);
        let (mut close, mut keep_alive, mut conn_upgrade) = (false, false, false);
        let (mut expect_continue, mut has_upgrade) = (false, false);
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
                if hosts > 1 {
                    return Err(HttpError::DuplicateHost);
                }
                if !valid_host(h.value) {
                    return Err(HttpError::BadHost);
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                for item in list_items(h.value) {
                    let n = parse_decimal(item).ok_or(HttpError::BadContentLength)?;
                    if content_length.is_some_and(|prev| prev != n) {
                        return Err(HttpError::ConflictingContentLength);
                    }
                    content_length = Some(n);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                for item in list_items(h.value) {
                    te_items += 1;
                    te_last_chunked = item.eq_ignore_ascii_case(b"chunked");
                    te_chunked += usize::from(te_last_chunked);
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                for item in list_items(h.value) {
                    close |= item.eq_ignore_ascii_case(b"close");
                    keep_alive |= item.eq_ignore_ascii_case(b"keep-alive");
                    conn_upgrade |= item.eq_ignore_ascii_case(b"upgrade");
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                has_upgrade = true;
            }
        }
        let http11 = version == Version::HTTP_11;
        if http11 && hosts == 0 {
            return Err(HttpError::MissingHost);
        }
        let body = if te_items > 0 {
            if content_length.is_some() {
                return Err(HttpError::TransferEncodingWithContentLength);
            }
            if !http11 {
                return Err(HttpError::TransferEncodingInHttp10);
            }
            // RFC 9112 §6.3: without `chunked` last the body's length cannot be known (400 and
            // close); §6.1: `chunked` at most once. A coding before it (`gzip, chunked`) is
            // well framed but not one herd decodes: 501.
            if !te_last_chunked || te_chunked > 1 {
                return Err(HttpError::ChunkedNotFinal);
            }
            if te_items != 1 {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            BodyKind::Chunked
        } else {
            match content_length {
                None | Some(0) => BodyKind::None,
                Some(n) if n > limits.max_body => return Err(HttpError::BodyTooLarge),
                Some(n) => BodyKind::Length(n),
            }
        };
        Ok(Framing {
            body,
            keep_alive: !close && (http11 || keep_alive),
            expect_continue: http11 && expect_continue,
            upgrade: http11 && conn_upgrade && has_upgrade,
        })
    }
}

/// The elements of a comma-separated field value, with surrounding whitespace trimmed. Empty
/// elements are kept (as empty slices; an empty value is one empty element) so callers can
/// refuse them.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |e| e + 1);
    &value[start..end]
}

/// Parses 1*DIGIT into a u64; `None` for anything else or on overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Whether a `Host` value is empty or `uri-host [":" port]` (RFC 9110 §7.2), without userinfo.
fn valid_host(value: &[u8]) -> bool {
    let port = match value {
        [] => return true,
        [b'[', ..] => {
            let Some(close) = value.iter().position(|&b| b == b']') else {
                return false;
            };
            let ip = &value[1..close];
            let ip_char = |b: &u8| b.is_ascii_hexdigit() || *b == b':' || *b == b'.';
            if ip.is_empty() || !ip.iter().all(ip_char) {
                return false;
            }
            &value[close + 1..]
        }
        _ => {
            let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            let reg_name = |b: &u8| REG_NAME_CHARS[usize::from(*b)];
            if colon == 0 || !value[..colon].iter().all(reg_name) {
                return false;
            }
            &value[colon..]
        }
    };
    match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}
