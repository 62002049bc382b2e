//! The HTTP/1.1 connection handler: requests in, handlers run, responses out in order.
//!
//! [`HttpProtocol`] is the per-loop [`Handler`] (made by
//! [`HttpService`](super::HttpService), which holds what all loops share) and
//! [`HttpConnState`] the per-connection state.
//! For each decoded request the handler looks up the route and either calls it inline or
//! submits it to the worker pool; a pool response comes back through
//! [`Handle::notify`](crate::Handle::notify). Responses leave in request order: while one is
//! outstanding (on the pool, or a stream waiting for the peer to drain its output) later
//! complete requests wait in a queue, reading from the peer is paused, and a decode error
//! that arrived behind them is answered only after them. Timeouts use one lazily re-armed
//! timer per connection (no timer operation per request): header timeout (408), keep-alive
//! idle timeout, and a silent close for a connection that never sent anything.
//!
//! It must not block the loop (blocking handlers go to the pool), allocate per request beyond
//! the `http` types and the handler's own response, or write a response out of order. Its
//! caller is herd-core's event loop (through the `Handler` trait).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::http::header::{HeaderValue, ALLOW, RETRY_AFTER};
use ::http::request::Parts;
use ::http::{Method, Request, Response, StatusCode, Uri, Version};
use bytes::Bytes;
use herd_proto::http1::encoding::AcceptEncoding;
use herd_proto::http1::{
    continue_100, encode_chunk, encode_head, encode_last_chunk, error_response, BodyFraming,
    BodyKind, BodyLen, DateCache, HttpError, ResponseContext,
};

use super::body::{ChunkSource, Kind};
use super::channel::{BodyReceiver, Next, CHANNEL_TOKEN};
use super::codec::{Event, HttpCodec};
use super::router::{AsyncHandlerFn, Endpoint, HandlerFn, Params, Route, StreamHandlerFn};
use super::service::HttpConfig;
use super::stream::{self, BodyError, BodyStream, Feed, STREAM_TOKEN};
use super::{text_response, AccessEntry, Body, LimitReq, Trailers};
use crate::clock::millis as ms;
use crate::limit::Verdict;
use crate::{CloseReason, Conn, Handler, LoopCx, Timer};

/// The token of the per-connection timeout timer.
const TIMEOUT_TOKEN: u64 = 0;
/// The token of the timer that ends a rate-limit delay ([`Busy::Delayed`]).
const DELAY_TOKEN: u64 = 1;
/// [`Meta::limit`] of a request the rate limit refused.
const LIMIT_REJECTED: u64 = u64::MAX;
/// [`Meta::limit`] of a request refused because the server is over its memory budget.
const OVERLOADED: u64 = u64::MAX - 1;

/// The HTTP protocol's [`Handler`] for one loop (made by
/// [`HttpService::into_factory`](super::HttpService::into_factory)).
pub struct HttpProtocol {
    config: Arc<HttpConfig>,
    out: Out,
}

/// Loop-local output helpers: the `Date` cache and the loop clock's offset to wall time.
struct Out {
    date: DateCache,
    wall_offset_ms: u64,
}

impl Out {
    fn date(&mut self, now_ms: u64) -> &[u8] {
        self.date
            .update(self.wall_offset_ms.saturating_add(now_ms) / 1000);
        self.date.header_value()
    }
}

impl HttpProtocol {
    pub(super) fn new(config: Arc<HttpConfig>) -> HttpProtocol {
        HttpProtocol {
            config,
            out: Out {
                date: DateCache::new(),
                wall_offset_ms: wall_ms(),
            },
        }
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The state of one HTTP connection.
pub struct HttpConnState {
    peer_addr: SocketAddr,
    /// Requests started on this connection.
    served: u64,
    phase: Phase,
    /// The armed timeout timer and when it fires.
    timer: Option<(Timer, u64)>,
    /// A request whose body is arriving.
    incoming: Option<Box<Incoming>>,
    /// A streaming route's request whose body is arriving (its handler may be running).
    stream: Option<Box<StreamIn>>,
    /// Complete requests waiting behind an outstanding response.
    queue: VecDeque<(Request<Body>, Meta)>,
    busy: Busy,
    /// A decode error to answer once the outstanding responses are written.
    pending_error: Option<HttpError>,
    /// A response said `Connection: close`; nothing more is served.
    closing: bool,
    /// A graceful stop began: every response from now on says `Connection: close`.
    stopping: bool,
    /// The request whose body is arriving was answered already (404, 405): its body is read
    /// and dropped (bytes so far), then the connection goes on.
    discarding: Option<u64>,
    /// Reading is paused by this handler.
    read_paused: bool,
    /// When a head started arriving while a response was outstanding (its header timeout
    /// starts once the connection is idle again).
    partial_since: Option<u64>,
    next_token: u64,
}

/// Where a connection is, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (`first`: none yet on this connection).
    Idle { since: u64, first: bool },
    /// Part of a head has arrived.
    Head { since: u64 },
    /// A request body is arriving since `start`; its last bytes came at `last`.
    Body { start: u64, last: u64 },
    /// A request is being answered.
    Active,
}

/// What the response to a request must know about it.
struct Meta {
    version: Version,
    keep_alive: bool,
    head: bool,
    start: u64,
    /// The method's class for the request counters ([`crate::stats::METHODS`]).
    method: u8,
    /// Method, URI, `Referer` and `User-Agent`, kept only when there is an access log.
    log: Option<Box<LogMeta>>,
    /// The request's `Accept-Encoding`, read only when compression is on.
    accept: AcceptEncoding,
    /// What to do with it before routing: 0 run it; [`LIMIT_REJECTED`] or [`OVERLOADED`]
    /// refuse it; otherwise the loop time (ms) before which it must not run (a `limit_req`
    /// delay within the burst).
    limit: u64,
}

/// What the access log needs from a request head.
struct LogMeta {
    method: Method,
    uri: Uri,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

/// The connection's side of a streamed request body.
struct StreamIn {
    feed: Feed,
    /// The route's body limit.
    max_body: u64,
    /// The announced length (`None`: chunked).
    declared: Option<u64>,
}

/// Carries a streamed request's body from its head to its handler through the request queue
/// (an extension, so queued requests keep one type).
#[derive(Clone)]
struct PendingStream(Arc<Mutex<Option<BodyStream>>>);

struct Incoming {
    parts: Parts,
    body: Vec<u8>,
    meta: Meta,
    /// `Expect: 100-continue` still to be answered (a response was outstanding).
    need_continue: bool,
}

/// A response that is not complete yet (boxed: an idle connection keeps its state small).
#[derive(Default)]
enum Busy {
    #[default]
    None,
    /// Computed on the worker pool, or by an async handler's task.
    Blocking(Box<Blocking>),
    /// A streamed body being written.
    Streaming(Box<Streaming>),
    /// The rate limit holds the request at the queue's front until [`DELAY_TOKEN`] fires.
    Delayed,
}

struct Blocking {
    /// The `notify` token the job answers with.
    token: u64,
    /// Where the job leaves the response.
    slot: ResponseSlot,
    meta: Meta,
}

/// Where a streamed body's chunks come from.
enum Source {
    /// Pulled from an iterator ([`Body::stream`]).
    Iter(ChunkSource),
    /// Written by a task ([`Body::channel`]).
    Channel(BodyReceiver),
}

struct Streaming {
    src: Source,
    /// Chunked framing (else raw: until close for HTTP/1.0, or a sized channel's length).
    chunked: bool,
    /// The `Content-Length` sent for a sized channel body ([`Body::channel_sized`]).
    sized: Option<u64>,
    keep_alive: bool,
    status: StatusCode,
    /// Body bytes queued so far.
    sent: u64,
    meta: Meta,
}

impl Handler for HttpProtocol {
    type State = HttpConnState;
    type Codec = HttpCodec;

    fn new_codec(&mut self) -> HttpCodec {
        self.codec()
    }

    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        self.loop_start(lp.now_ms());
    }

    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<HttpConnState> {
        Some(self.open(cx))
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, st: &mut HttpConnState, ev: Event<'_>) {
        self.message(cx, st, ev);
    }

    fn on_notify(
        &mut self,
        cx: &mut Conn<'_, Self>,
        st: &mut HttpConnState,
        token: u64,
        _data: Bytes,
    ) {
        self.notify(cx, st, token);
    }

    fn on_backpressure(&mut self, cx: &mut Conn<'_, Self>, st: &mut HttpConnState, paused: bool) {
        self.backpressure(cx, st, paused);
    }

    fn on_timer(&mut self, cx: &mut Conn<'_, Self>, st: &mut HttpConnState, token: u64) {
        self.timer(cx, st, token);
    }

    fn on_stop(&mut self, _cx: &mut Conn<'_, Self>, st: &mut HttpConnState) {
        st.stop();
    }

    fn held_bytes(&self, st: &HttpConnState) -> usize {
        st.held_bytes()
    }

    fn is_busy(&self, st: &HttpConnState) -> bool {
        st.is_busy()
    }
}

// The handler's work, generic over the `Handler` whose connection it runs on, so that a
// protocol that starts as HTTP and upgrades (WebSocket, `crate::ws`) can run the same code
// with its own codec and state types.
impl HttpProtocol {
    /// The request codec for a new connection.
    pub(crate) fn codec(&self) -> HttpCodec {
        let mut limits = self.config.opts.limits.clone();
        // Streaming routes may take larger bodies; the others are held to `max_body` here.
        limits.max_body = limits.max_body.max(self.config.router.stream_max_body());
        HttpCodec::new(limits)
    }

    /// The loop started at loop time `now_ms`.
    pub(crate) fn loop_start(&mut self, now_ms: u64) {
        self.out.wall_offset_ms = wall_ms().saturating_sub(now_ms);
    }

    /// The state of a new connection (arms its first header timeout).
    pub(crate) fn open<H: Handler>(&mut self, cx: &mut Conn<'_, H>) -> HttpConnState {
        let now = cx.now_ms();
        let mut st = HttpConnState {
            peer_addr: cx.peer_addr(),
            served: 0,
            phase: Phase::Idle {
                since: now,
                first: true,
            },
            timer: None,
            incoming: None,
            stream: None,
            queue: VecDeque::new(),
            busy: Busy::None,
            pending_error: None,
            closing: false,
            stopping: false,
            discarding: None,
            read_paused: false,
            partial_since: None,
            next_token: 1,
        };
        let at = now.saturating_add(ms(self.config.opts.header_timeout));
        arm(cx, &mut st, at);
        st
    }

    /// A decoded event.
    pub(crate) fn message<H: Handler>(
        &mut self,
        cx: &mut Conn<'_, H>,
        st: &mut HttpConnState,
        ev: Event<'_>,
    ) {
        let HttpProtocol { config, out } = self;
        let config: &HttpConfig = config;
        if st.closing || st.pending_error.is_some() {
            return;
        }
        match ev {
            Event::HeadStarted => {
                match st.phase {
                    Phase::Idle { since, first } => {
                        let since = if first { since } else { cx.now_ms() };
                        st.phase = Phase::Head { since };
                        arm(cx, st, since.saturating_add(ms(config.opts.header_timeout)));
                    }
                    Phase::Active | Phase::Body { .. } => st.partial_since = Some(cx.now_ms()),
                    Phase::Head { .. } => {}
                }
                return;
            }
            Event::Head(head) => {
                st.phase = Phase::Active;
                st.partial_since = None;
                let mut meta = Meta {
                    version: head.request.version,
                    keep_alive: head.keep_alive,
                    head: head.request.method == Method::HEAD,
                    start: cx.now_ms(),
                    method: crate::stats::method_class(head.request.method.as_str()) as u8,
                    log: config.access_log.as_ref().map(|_| {
                        let h = &head.request.headers;
                        Box::new(LogMeta {
                            method: head.request.method.clone(),
                            uri: head.request.uri.clone(),
                            referer: h.get(::http::header::REFERER).cloned(),
                            user_agent: h.get(::http::header::USER_AGENT).cloned(),
                        })
                    }),
                    accept: match config.opts.compression {
                        Some(_) => AcceptEncoding::parse(
                            head.request
                                .headers
                                .get_all(::http::header::ACCEPT_ENCODING),
                        ),
                        None => AcceptEncoding::default(),
                    },
                    limit: 0,
                };
                if let Some(l) = &config.opts.limit_req {
                    meta.limit = limit(l, cx, st);
                }
                if cx.overload() == crate::overload::Level::Hard {
                    meta.limit = OVERLOADED;
                    meta.keep_alive = false;
                }
                if head.body == BodyKind::None {
                    let req = Request::from_parts(head.request, Body::empty());
                    accept(config, out, cx, st, req, meta);
                } else if let Some(resp) = answer_early(config, st, &head.request, &meta) {
                    // The answer does not depend on the body: give it now. A body of a known
                    // small size, or chunked (max_body still bounds it), is then read and
                    // dropped as nginx discards one, and the connection goes on; a larger
                    // one is not waited for: close after the answer (the lingering close
                    // drops what comes).
                    let discard = match head.body {
                        BodyKind::Length(n) => n <= DISCARD_MAX,
                        BodyKind::Chunked => true,
                        BodyKind::None => false,
                    };
                    meta.keep_alive &= discard && !head.expect_continue;
                    st.served += 1;
                    respond(config, out, cx, st, meta, resp);
                    if !st.closing {
                        let now = cx.now_ms();
                        st.discarding = Some(0);
                        st.phase = Phase::Body {
                            start: now,
                            last: now,
                        };
                        arm(cx, st, now.saturating_add(ms(config.opts.body_timeout)));
                    }
                    return;
                } else if let Some(max_body) = stream_route(config, &head.request) {
                    let declared = match head.body {
                        BodyKind::Length(n) => Some(n),
                        _ => None,
                    };
                    if declared.is_some_and(|n| n > max_body) {
                        bad_request(config, out, cx, st, HttpError::BodyTooLarge);
                        return;
                    }
                    let (feed, body) =
                        stream::pair(Some(cx.handle()), declared, head.expect_continue);
                    let mut req = Request::from_parts(head.request, Body::empty());
                    req.extensions_mut()
                        .insert(PendingStream(Arc::new(Mutex::new(Some(body)))));
                    st.stream = Some(Box::new(StreamIn {
                        feed,
                        max_body,
                        declared,
                    }));
                    let now = cx.now_ms();
                    st.phase = Phase::Body {
                        start: now,
                        last: now,
                    };
                    arm(cx, st, now.saturating_add(ms(config.opts.body_timeout)));
                    accept(config, out, cx, st, req, meta);
                } else {
                    if matches!(head.body, BodyKind::Length(n) if n > config.opts.limits.max_body) {
                        // Only reachable when a streaming route raised the codec's limit.
                        bad_request(config, out, cx, st, HttpError::BodyTooLarge);
                        return;
                    }
                    let cap = match head.body {
                        BodyKind::Length(n) => n.min(64 * 1024) as usize,
                        _ => 0,
                    };
                    let mut need_continue = head.expect_continue;
                    if need_continue && !outstanding(st) {
                        cx.with_output(continue_100);
                        need_continue = false;
                    }
                    st.incoming = Some(Box::new(Incoming {
                        parts: head.request,
                        body: Vec::with_capacity(cap),
                        meta,
                        need_continue,
                    }));
                    let now = cx.now_ms();
                    st.phase = Phase::Body {
                        start: now,
                        last: now,
                    };
                    arm(cx, st, now.saturating_add(ms(config.opts.body_timeout)));
                }
            }
            Event::Body(data) if st.discarding.is_some() => {
                // Dropped, but received: it counts as request body bytes.
                let n = data.len() as u64;
                crate::stats::count(|p| p.http.body_bytes_in += n);
                st.discarding = st.discarding.map(|d| d + n);
                if let Phase::Body { last, .. } = &mut st.phase {
                    *last = cx.now_ms();
                }
                return;
            }
            Event::Last { data, .. } if st.discarding.is_some() => {
                // The dropped body is complete: the connection goes on.
                let n = data.len() as u64;
                crate::stats::count(|p| p.http.body_bytes_in += n);
                st.discarding = None;
                st.phase = Phase::Active;
            }
            Event::Error(e) if st.discarding.is_some() => {
                // Its request was answered already: no second answer, just a close.
                tracing::debug!(peer = %st.peer_addr, reason = %e, "http: bad discarded body");
                st.discarding = None;
                st.closing = true;
                cx.close_with(CloseReason::Decode, true);
                return;
            }
            Event::Body(data) if st.stream.is_some() => {
                if !stream_piece(config, out, cx, st, data) {
                    return;
                }
            }
            Event::Last { data, trailers } if st.stream.is_some() => {
                if !stream_piece(config, out, cx, st, data) {
                    return;
                }
                if let Some(s) = st.stream.take() {
                    s.feed.finish(trailers);
                }
                st.phase = Phase::Active;
            }
            Event::Error(e) if st.stream.is_some() => {
                if let Some(s) = st.stream.take() {
                    s.feed.fail(BodyError::Invalid);
                }
                bad_request(config, out, cx, st, e);
                return;
            }
            Event::Body(data) => {
                if let Some(inc) = st.incoming.as_mut() {
                    inc.body.extend_from_slice(data);
                    if inc.body.len() as u64 > config.opts.limits.max_body {
                        // A chunked body over the limit a streaming route raised.
                        bad_request(config, out, cx, st, HttpError::BodyTooLarge);
                        return;
                    }
                    // The timer looks at this when it fires (no re-arm per read).
                    if let Phase::Body { last, .. } = &mut st.phase {
                        *last = cx.now_ms();
                    }
                }
            }
            Event::Last { data, trailers } => {
                st.phase = Phase::Active;
                if let Some(inc) = st.incoming.take() {
                    let mut inc = *inc;
                    inc.body.extend_from_slice(data);
                    let n = inc.body.len() as u64;
                    crate::stats::count(|p| p.http.body_bytes_in += n);
                    let body = Body::from(std::mem::take(&mut inc.body));
                    let mut req = Request::from_parts(inc.parts, body);
                    if let Some(t) = trailers {
                        req.extensions_mut().insert(Trailers(t));
                    }
                    accept(config, out, cx, st, req, inc.meta);
                }
            }
            Event::Error(e) => {
                bad_request(config, out, cx, st, e);
                return;
            }
        }
        settle(config, out, cx, st);
    }

    /// The handler reading a streamed body took bytes or wants `100 Continue`.
    #[cold]
    fn stream_notify<H: Handler>(cx: &mut Conn<'_, H>, st: &mut HttpConnState) {
        if let Some(s) = &st.stream {
            if s.feed.take_continue() && !st.closing {
                cx.with_output(continue_100);
            }
            if !s.feed.drained() {
                return;
            }
        }
        // Drained (or the body ended while reading was paused): read on, as while any one
        // response is outstanding with nothing queued behind it.
        let idle_queue = st.queue.is_empty() && st.pending_error.is_none();
        if st.read_paused && idle_queue && !st.closing {
            st.read_paused = false;
            cx.resume_reading();
        }
    }

    /// A worker-pool job answered with `token`.
    pub(crate) fn notify<H: Handler>(
        &mut self,
        cx: &mut Conn<'_, H>,
        st: &mut HttpConnState,
        token: u64,
    ) {
        let HttpProtocol { config, out } = self;
        let config: &HttpConfig = config;
        if token == STREAM_TOKEN {
            Self::stream_notify(cx, st);
            return;
        }
        if token == CHANNEL_TOKEN {
            // A channel body has a chunk, or ended.
            if matches!(st.busy, Busy::Streaming(_)) {
                pump(config, cx, st);
                settle(config, out, cx, st);
            }
            return;
        }
        if !matches!(&st.busy, Busy::Blocking(b) if b.token == token) {
            return;
        }
        let Busy::Blocking(job) = std::mem::take(&mut st.busy) else {
            return;
        };
        let Blocking { slot, mut meta, .. } = *job;
        if let Some(s) = st.stream.take_if(|_| st.queue.is_empty()) {
            // A streaming handler answered before the end of its body: the rest is read and
            // dropped if it is chunked or small, else the connection closes after the answer.
            let left = s.declared.map(|n| n.saturating_sub(s.feed.received));
            // A client still waiting for `100 Continue` may never send it: close instead.
            if left.is_none_or(|l| l <= DISCARD_MAX) && !s.feed.continue_unsent() {
                st.discarding = Some(s.feed.received);
            } else {
                meta.keep_alive = false;
            }
        }
        let resp = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut resp = resp.unwrap_or_else(|| text_response(StatusCode::INTERNAL_SERVER_ERROR));
        if let Some(r) = resp.extensions_mut().remove::<PoolRejections>() {
            crate::stats::add_rejections(&r.0);
        }
        respond(config, out, cx, st, meta, resp);
        settle(config, out, cx, st);
    }

    /// Output crossed a watermark.
    pub(crate) fn backpressure<H: Handler>(
        &mut self,
        cx: &mut Conn<'_, H>,
        st: &mut HttpConnState,
        paused: bool,
    ) {
        if paused || !matches!(st.busy, Busy::Streaming(_)) {
            return;
        }
        let HttpProtocol { config, out } = self;
        let config: &HttpConfig = config;
        pump(config, cx, st);
        settle(config, out, cx, st);
    }

    /// A connection timer fired.
    pub(crate) fn timer<H: Handler>(
        &mut self,
        cx: &mut Conn<'_, H>,
        st: &mut HttpConnState,
        token: u64,
    ) {
        let HttpProtocol { config, out } = self;
        let config: &HttpConfig = config;
        if token == DELAY_TOKEN {
            if matches!(st.busy, Busy::Delayed) && !st.closing {
                st.busy = Busy::None;
                settle(config, out, cx, st);
            }
            return;
        }
        if token != TIMEOUT_TOKEN {
            return;
        }
        st.timer = None;
        let now = cx.now_ms();
        match st.phase {
            Phase::Idle { since, first } => {
                let limit = if first {
                    config.opts.header_timeout
                } else {
                    config.opts.keepalive_timeout
                };
                let due = since.saturating_add(ms(limit));
                if now < due {
                    arm(cx, st, due);
                } else if first {
                    tracing::debug!(
                        "http {}: no request within the header timeout",
                        st.peer_addr
                    );
                    cx.close_with(CloseReason::Timeout, false);
                } else {
                    cx.close_with(CloseReason::Idle, false);
                }
            }
            Phase::Head { since } => {
                let due = since.saturating_add(ms(config.opts.header_timeout));
                if now < due {
                    arm(cx, st, due);
                } else {
                    tracing::debug!("http {}: request head timed out", st.peer_addr);
                    refuse(config, out, cx, st, 408, CloseReason::Timeout);
                }
            }
            Phase::Body { start, last } => {
                let timeout = ms(config.opts.body_timeout);
                if st.read_paused || cx.is_paused() {
                    // We stopped reading, not the client: its gap (and its rate) starts over
                    // when we resume.
                    st.phase = Phase::Body {
                        start: now,
                        last: now,
                    };
                    arm(cx, st, now.saturating_add(timeout));
                    return;
                }
                let gap_due = last.saturating_add(timeout);
                // With a minimum rate: the moment the average since `start` falls below it,
                // but not before one whole `body_timeout` has passed.
                let got = match (&st.incoming, st.discarding, &st.stream) {
                    (Some(inc), _, _) => inc.body.len() as u64,
                    (None, Some(n), _) => n,
                    (None, None, Some(s)) => s.feed.received,
                    (None, None, None) => 0,
                };
                let rate_due = config.opts.body_min_rate.map(|min| {
                    let allowed = got.saturating_mul(1000) / u64::from(min.max(1));
                    start.saturating_add(timeout.max(allowed + 1))
                });
                let due = rate_due.map_or(gap_due, |r| r.min(gap_due));
                if now < due {
                    arm(cx, st, due);
                    return;
                }
                if now >= gap_due {
                    tracing::info!(
                        "http {}: request body timed out (nothing for {:?})",
                        st.peer_addr,
                        config.opts.body_timeout
                    );
                } else {
                    tracing::info!(
                        "http {}: request body too slow ({got} bytes in {} ms, under {} bytes/s)",
                        st.peer_addr,
                        now.saturating_sub(start),
                        config.opts.body_min_rate.unwrap_or(0)
                    );
                }
                st.incoming = None;
                if let Some(s) = st.stream.take() {
                    s.feed.fail(BodyError::Timeout);
                    if matches!(st.busy, Busy::Streaming(_)) {
                        // Its answer is being written: no 408 in the middle of it.
                        st.closing = true;
                        cx.close_with(CloseReason::Timeout, true);
                        return;
                    }
                }
                if st.discarding.take().is_some() {
                    // Answered already: no 408 after the answer, just the close.
                    st.closing = true;
                    cx.close_with(CloseReason::Timeout, true);
                    return;
                }
                refuse(config, out, cx, st, 408, CloseReason::Timeout);
            }
            Phase::Active => {}
        }
    }
}

impl HttpConnState {
    /// A response is being computed or written, a request is queued or arriving, or an error
    /// is waiting to be answered.
    pub(crate) fn is_busy(&self) -> bool {
        !matches!(self.busy, Busy::None)
            || !self.queue.is_empty()
            || self.incoming.is_some()
            || self.stream.is_some()
            || self.discarding.is_some()
            || self.pending_error.is_some()
    }

    /// A graceful stop began: the response in progress (if its head is not out yet) and the
    /// next one say `Connection: close`, and the connection closes after it, so a kept-alive
    /// client learns to reconnect instead of having its next request cut off.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether nothing more may be served (a response said `Connection: close`).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Hand the connection over to another protocol (an upgrade): cancel the timeout timer.
    /// The caller has checked [`is_busy`](Self::is_busy) is false.
    pub(crate) fn detach<H: Handler>(&mut self, cx: &mut Conn<'_, H>) {
        if let Some((timer, _)) = self.timer.take() {
            cx.cancel_timer(timer);
        }
        self.closing = true;
    }

    /// Request bodies this connection holds in memory: the one arriving and those queued
    /// behind an outstanding response (for the overload guard).
    pub(crate) fn held_bytes(&self) -> usize {
        let arriving = self.incoming.as_ref().map_or(0, |i| i.body.capacity())
            + self.stream.as_ref().map_or(0, |s| s.feed.buffered());
        let queued: usize = self
            .queue
            .iter()
            .map(|(r, _)| match &r.body().kind {
                Kind::Bytes(b) => b.len(),
                _ => 0,
            })
            .sum();
        arriving + queued
    }

    /// The peer's address.
    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }
}

/// Make sure the timeout timer fires no later than `at`.
fn arm<H: Handler>(cx: &mut Conn<'_, H>, st: &mut HttpConnState, at: u64) {
    if let Some((timer, armed)) = st.timer {
        if armed <= at {
            return;
        }
        cx.cancel_timer(timer);
    }
    let now = cx.now_ms();
    let timer = cx.run_after(Duration::from_millis(at.saturating_sub(now)), TIMEOUT_TOKEN);
    st.timer = Some((timer, at.max(now)));
}

/// Stop reading from the peer while requests wait (once; `settle` resumes).
#[inline]
fn pause_reads<H: Handler>(cx: &mut Conn<'_, H>, st: &mut HttpConnState) {
    if !st.read_paused {
        st.read_paused = true;
        cx.pause_reading();
    }
}

/// A response is still to be completed before the next one may be written.
fn outstanding(st: &HttpConnState) -> bool {
    !matches!(st.busy, Busy::None) || !st.queue.is_empty()
}

/// A complete request: run it now, or queue it behind an outstanding response.
// The request moves by value through accept -> run -> call into the route: inlined into
// one frame, LLVM builds it in place; as separate calls it was copied (~250 bytes) at each
// step (callgrind, hello: 6,859 -> 6,669 instructions per request).
#[inline(always)]
fn accept<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    req: Request<Body>,
    meta: Meta,
) {
    if outstanding(st) {
        st.queue.push_back((req, meta));
        pause_reads(cx, st);
    } else {
        run(config, out, cx, st, req, meta);
    }
}

/// After an event: run queued requests while nothing is outstanding, then answer a deferred
/// error or `100 Continue`, resume reading and go idle as appropriate.
#[inline(always)]
fn settle<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
) {
    while !st.closing && matches!(st.busy, Busy::None) {
        let Some((req, meta)) = st.queue.pop_front() else {
            break;
        };
        run(config, out, cx, st, req, meta);
    }
    if st.closing {
        return;
    }
    if !matches!(st.busy, Busy::None) {
        // Reading goes on while one response is outstanding and nothing waits behind it: the
        // next request is queued (then reading pauses), and a peer that goes away is seen, so
        // the connection closes and cancels the task or discards the pool's answer (as nginx
        // drops an upstream request when its client aborts).
        if !st.queue.is_empty() {
            pause_reads(cx, st);
        }
        return;
    }
    if let Some(e) = st.pending_error.take() {
        refuse(config, out, cx, st, e.status(), CloseReason::Decode);
        return;
    }
    if let Some(inc) = st.incoming.as_mut() {
        if inc.need_continue {
            inc.need_continue = false;
            cx.with_output(continue_100);
        }
    }
    if st.read_paused {
        st.read_paused = false;
        cx.resume_reading();
    }
    if st.incoming.is_none() && st.phase == Phase::Active {
        let now = cx.now_ms();
        if let Some(since) = st.partial_since.take() {
            // The next head is already arriving: its header timeout applies.
            st.phase = Phase::Head { since };
            arm(cx, st, since.saturating_add(ms(config.opts.header_timeout)));
        } else {
            st.phase = Phase::Idle {
                since: now,
                first: false,
            };
            arm(
                cx,
                st,
                now.saturating_add(ms(config.opts.keepalive_timeout)),
            );
        }
    }
}

/// The largest announced body read and dropped after an early answer; a larger one closes
/// the connection after the answer instead.
const DISCARD_MAX: u64 = 64 * 1024;

/// For a request with a body: its answer now, if routing alone decides it (404, 405) and
/// nothing earlier is outstanding, so a client is not made to send a body nobody reads.
#[cold]
fn answer_early(
    config: &HttpConfig,
    st: &HttpConnState,
    head: &::http::request::Parts,
    meta: &Meta,
) -> Option<Response<Body>> {
    if outstanding(st) {
        return None;
    }
    if meta.limit >= OVERLOADED {
        return Some(refused_response(config, meta.limit));
    }
    match routed(
        &config.router,
        config.router.lookup(&head.method, head.uri.path()),
    ) {
        Routed::Run(..) => None,
        Routed::Answer(resp) => Some(resp),
    }
}

/// The body limit of the streaming route `head` goes to, if it goes to one.
#[cold]
fn stream_route(config: &HttpConfig, head: &::http::request::Parts) -> Option<u64> {
    if config.router.stream_max_body() == 0 {
        return None;
    }
    match config.router.lookup(&head.method, head.uri.path()) {
        Route::Found {
            endpoint: Endpoint::Stream { max_body, .. },
            ..
        } => Some(*max_body),
        _ => None,
    }
}

/// A piece of a streamed body: queue it for the handler (stop reading while the queue is
/// full), or refuse it over the route's limit. False when the connection was refused.
fn stream_piece<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    data: &[u8],
) -> bool {
    let Some(s) = st.stream.as_mut() else {
        return true;
    };
    let n = data.len() as u64;
    crate::stats::count(|p| p.http.body_bytes_in += n);
    s.feed.received += n;
    if s.feed.received > s.max_body {
        s.feed.fail(BodyError::TooLarge);
        st.stream = None;
        if st.queue.is_empty() && matches!(st.busy, Busy::Streaming(_)) {
            // Its handler answered already and the answer is being written: just close.
            st.closing = true;
            cx.close_with(CloseReason::Decode, true);
            return false;
        }
        if st.queue.is_empty() {
            // Its handler runs: nothing else is outstanding, 413 now (closing the connection
            // cancels the handler's task).
            st.busy = Busy::None;
        }
        bad_request(config, out, cx, st, HttpError::BodyTooLarge);
        return false;
    }
    if !data.is_empty() && s.feed.push(Bytes::copy_from_slice(data)) {
        pause_reads(cx, st);
    }
    if let Phase::Body { last, .. } = &mut st.phase {
        *last = cx.now_ms();
    }
    true
}

/// A request cannot be served (bad input, a body over the limit): answer it now, or after
/// the responses still outstanding; either way the connection closes after the answer.
fn bad_request<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    e: HttpError,
) {
    log_bad_request(st.peer_addr, e, cx.now_ms());
    st.incoming = None;
    if outstanding(st) {
        st.pending_error = Some(e);
        pause_reads(cx, st);
    } else {
        refuse(config, out, cx, st, e.status(), CloseReason::Decode);
    }
}

/// Where routing leads: a handler to run, or the answer itself (404, 405).
enum Routed<'r> {
    Run(&'r Endpoint, Params),
    Answer(Response<Body>),
}

/// A found route's endpoint and parameters, or the 404 / 405 answer.
fn routed<'r>(router: &'r super::Router, route: Route<'r>) -> Routed<'r> {
    match route {
        Route::Found { endpoint, params } => Routed::Run(endpoint, params),
        Route::NotFound => Routed::Answer(router.error_response(StatusCode::NOT_FOUND)),
        Route::MethodNotAllowed(allow) => {
            let mut resp = router.error_response(StatusCode::METHOD_NOT_ALLOWED);
            if let Ok(v) = HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(ALLOW, v);
            }
            Routed::Answer(resp)
        }
    }
}

/// Route and run one request.
#[inline(always)]
fn run<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    mut req: Request<Body>,
    mut meta: Meta,
) {
    if meta.limit != 0 {
        if meta.limit >= OVERLOADED {
            st.served += 1;
            let resp = refused_response(config, meta.limit);
            respond(config, out, cx, st, meta, resp);
            return;
        }
        if meta.limit > cx.now_ms() {
            delay(cx, st, req, meta);
            return;
        }
    }
    st.served += 1;
    if config.opts.max_requests.is_some_and(|m| st.served >= m) {
        meta.keep_alive = false;
    }
    let resp = match routed(
        &config.router,
        config.router.lookup(req.method(), req.uri().path()),
    ) {
        Routed::Run(endpoint, params) => {
            if !params.is_empty() {
                req.extensions_mut().insert(params);
            }
            match endpoint {
                Endpoint::Inline(f) => {
                    // Inline handlers find the client's address in a thread-local (no
                    // per-request allocation); the others in the request's extensions.
                    super::state::set_client(Some(st.peer_addr));
                    let resp = call(f.as_ref(), req, &mut meta);
                    super::state::set_client(None);
                    resp
                }
                Endpoint::Async(f) => {
                    req.extensions_mut().insert(super::ClientAddr(st.peer_addr));
                    let (token, slot) = spawn_async(cx, st, f, req);
                    st.busy = Busy::Blocking(Box::new(Blocking { token, slot, meta }));
                    return;
                }
                Endpoint::Stream { handler, .. } => {
                    req.extensions_mut().insert(super::ClientAddr(st.peer_addr));
                    let (token, slot) = spawn_stream(cx, st, handler, req);
                    st.busy = Busy::Blocking(Box::new(Blocking { token, slot, meta }));
                    return;
                }
                Endpoint::Blocking(f) => match submit(config, cx, st, f, {
                    req.extensions_mut().insert(super::ClientAddr(st.peer_addr));
                    req
                }) {
                    Ok((token, slot)) => {
                        st.busy = Busy::Blocking(Box::new(Blocking { token, slot, meta }));
                        return;
                    }
                    Err(status) => {
                        let mut resp = text_response(status);
                        if status == StatusCode::SERVICE_UNAVAILABLE {
                            resp.headers_mut()
                                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                        }
                        resp
                    }
                },
            }
        }
        Routed::Answer(resp) => resp,
    };
    respond(config, out, cx, st, meta, resp);
}

/// The rate limit's verdict on a request from this connection's client, as [`Meta::limit`];
/// counted and logged.
#[cold]
#[inline(never)]
fn limit<H: Handler>(l: &LimitReq, cx: &mut Conn<'_, H>, st: &HttpConnState) -> u64 {
    match l.limit.check(st.peer_addr.ip()) {
        Verdict::Pass => 0,
        Verdict::Delay(d) => {
            crate::stats::count(|p| p.http.limit_delayed += 1);
            let wait = d.as_micros().div_ceil(1000) as u64;
            tracing::debug!(peer = %st.peer_addr, delay_ms = wait, "http: request delayed by limit_req");
            cx.now_ms().saturating_add(wait.max(1))
        }
        Verdict::Reject => {
            crate::stats::count(|p| p.http.limit_rejected += 1);
            tracing::warn!(peer = %st.peer_addr.ip(), status = l.status.as_u16(), "http: request refused by limit_req");
            LIMIT_REJECTED
        }
    }
}

/// The answer to a request past the rate limit's burst ([`LIMIT_REJECTED`]) or refused over
/// the memory budget ([`OVERLOADED`]: 503).
#[cold]
fn refused_response(config: &HttpConfig, why: u64) -> Response<Body> {
    let status = match &config.opts.limit_req {
        Some(l) if why == LIMIT_REJECTED => l.status,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut resp = text_response(status);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Hold a request the rate limit delays: it waits at the queue's front (later requests
/// behind it, reading paused) until the delay timer fires.
#[cold]
#[inline(never)]
fn delay<H: Handler>(cx: &mut Conn<'_, H>, st: &mut HttpConnState, req: Request<Body>, meta: Meta) {
    let wait = meta.limit.saturating_sub(cx.now_ms());
    st.queue.push_front((req, meta));
    st.busy = Busy::Delayed;
    pause_reads(cx, st);
    cx.run_after(Duration::from_millis(wait), DELAY_TOKEN);
}

/// Call an inline handler; a panic becomes a 500 that closes the connection.
#[inline(always)]
fn call(f: &HandlerFn, req: Request<Body>, meta: &mut Meta) -> Response<Body> {
    match catch_unwind(AssertUnwindSafe(|| f(req))) {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!("http handler panicked; answering 500");
            meta.keep_alive = false;
            text_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Extractor rejections a worker-pool job counted on its pool thread, carried back to the
/// loop in the response's extensions.
#[derive(Clone, Copy)]
struct PoolRejections([u64; crate::stats::REJECTION_KINDS]);

/// Where a pool job or an async handler's task leaves its response.
type ResponseSlot = Arc<Mutex<Option<Response<Body>>>>;

/// Run an async handler as a task of this connection (dropped if it closes first). Returns
/// the notify token its response comes back with and the slot it will be in. A panic while
/// the handler makes or polls its future is answered with 500.
fn spawn_async<H: Handler>(
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    f: &Arc<AsyncHandlerFn>,
    req: Request<Body>,
) -> (u64, ResponseSlot) {
    let f = f.clone();
    // `f(req)` runs at the first poll, inside the catch too.
    spawn_task(cx, st, async move { f(req).await })
}

/// Spawn the task computing a response; it leaves it in the slot and notifies the token.
#[inline(always)]
fn spawn_task<H: Handler>(
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    fut: impl std::future::Future<Output = Response<Body>> + 'static,
) -> (u64, ResponseSlot) {
    let token = st.next_token;
    st.next_token += 1;
    let slot: ResponseSlot = Arc::new(Mutex::new(None));
    let (slot2, handle) = (slot.clone(), cx.handle());
    cx.spawn(async move {
        let resp = crate::task::catch_panic(fut).await.unwrap_or_else(|_| {
            tracing::error!("async http handler panicked; answering 500");
            text_response(StatusCode::INTERNAL_SERVER_ERROR)
        });
        *slot2.lock().unwrap_or_else(|p| p.into_inner()) = Some(resp);
        handle.notify(token, Bytes::new());
    });
    (token, slot)
}

/// Run a streaming handler as a task of this connection, with the body the head made (or an
/// empty one, for a request without a body).
#[cold]
fn spawn_stream<H: Handler>(
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    f: &Arc<StreamHandlerFn>,
    mut req: Request<Body>,
) -> (u64, ResponseSlot) {
    let body = req
        .extensions_mut()
        .remove::<PendingStream>()
        .and_then(|p| p.0.lock().unwrap_or_else(|p| p.into_inner()).take())
        .unwrap_or_else(|| BodyStream::from_bytes(Bytes::new()));
    let req = req.map(|_| body);
    let f = f.clone();
    spawn_task(cx, st, async move { f(req).await })
}

/// Hand a blocking request to the worker pool. On success returns the notify token and the
/// slot the response will be in; when the pool is full, 503.
fn submit<H: Handler>(
    config: &HttpConfig,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    f: &Arc<HandlerFn>,
    req: Request<Body>,
) -> Result<(u64, ResponseSlot), StatusCode> {
    let Some(pool) = config.pool.as_ref() else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let token = st.next_token;
    st.next_token += 1;
    let slot: ResponseSlot = Arc::new(Mutex::new(None));
    let (slot2, handle, f) = (slot.clone(), cx.handle(), f.clone());
    let job = move || {
        let mut resp = catch_unwind(AssertUnwindSafe(|| f(req))).unwrap_or_else(|_| {
            tracing::error!("blocking http handler panicked; answering 500");
            text_response(StatusCode::INTERNAL_SERVER_ERROR)
        });
        // Counters are per loop thread: what this pool thread counted goes back with the job.
        if let Some(r) = crate::stats::take_rejections() {
            resp.extensions_mut().insert(PoolRejections(r));
        }
        *slot2.lock().unwrap_or_else(|p| p.into_inner()) = Some(resp);
        handle.notify(token, Bytes::new());
    };
    match pool.try_submit(job) {
        Ok(()) => Ok((token, slot)),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Add the configured response headers a response does not set itself.
#[cold]
fn add_headers(dst: &mut http::HeaderMap, extra: &http::HeaderMap) {
    for (k, v) in extra {
        if !dst.contains_key(k) {
            dst.insert(k.clone(), v.clone());
        }
    }
}

/// Write a response: its head, and its body as its kind and the framing require.
fn respond<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    meta: Meta,
    resp: Response<Body>,
) {
    let (mut parts, mut body) = resp.into_parts();
    if !config.opts.response_headers.is_empty() {
        add_headers(&mut parts.headers, &config.opts.response_headers);
    }
    if let Some(c) = &config.opts.compression {
        body = match super::compress::encode_response(
            c,
            &meta.accept,
            parts.status,
            &mut parts.headers,
            body,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("http: reading a body to compress: {e}");
                let (p, b) = text_response(StatusCode::INTERNAL_SERVER_ERROR).into_parts();
                parts = p;
                b
            }
        };
    }
    let len = match &body.kind {
        Kind::Empty => BodyLen::Empty,
        Kind::Bytes(b) => BodyLen::Length(b.len() as u64),
        Kind::File { len, .. } => BodyLen::Length(*len),
        Kind::Channel(rx) if rx.len.is_some() => BodyLen::Length(rx.len.unwrap_or(0)),
        Kind::Stream(_) | Kind::Channel(_) => BodyLen::Chunked,
    };
    let ctx = ResponseContext {
        version: meta.version,
        // Past the memory budget's soft mark, connections are not kept (overload guard).
        keep_alive: meta.keep_alive
            && !st.stopping
            && cx.overload() == crate::overload::Level::Normal,
        head_request: meta.head,
        date: out.date(cx.now_ms()),
    };
    let written = cx.with_output(|dst| {
        let outcome = encode_head(dst, parts.status, &parts.headers, len, &ctx);
        if let (BodyFraming::Length(_), Kind::Bytes(b)) = (outcome.body, &body.kind) {
            dst.extend_from_slice(b);
        }
        outcome
    });
    let Some(outcome) = written else {
        return; // the connection is closing
    };
    let sent = match (outcome.body, body.kind) {
        (BodyFraming::Length(n), Kind::Bytes(_)) => n,
        (BodyFraming::Length(n), Kind::File { file, offset, len }) => {
            cx.send_file(file, offset, len);
            n
        }
        (
            framing @ (BodyFraming::Chunked | BodyFraming::UntilClose | BodyFraming::Length(_)),
            kind @ (Kind::Stream(_) | Kind::Channel(_)),
        ) => {
            let src = match kind {
                Kind::Stream(it) => Source::Iter(it),
                Kind::Channel(rx) => Source::Channel(rx),
                _ => unreachable!("matched above"),
            };
            let sized = match framing {
                BodyFraming::Length(n) => Some(n),
                _ => None,
            };
            if sized == Some(0) {
                // Nothing to send: the response is complete with its head.
                finish(config, cx, st, &meta, parts.status, 0, outcome.keep_alive);
                return;
            }
            st.busy = Busy::Streaming(Box::new(Streaming {
                src,
                chunked: outcome.body == BodyFraming::Chunked,
                sized,
                keep_alive: outcome.keep_alive,
                status: parts.status,
                sent: 0,
                meta,
            }));
            pump(config, cx, st);
            return;
        }
        // No body (HEAD, 204, 304, empty), and no other pairing: the length follows the kind.
        _ => 0,
    };
    finish(
        config,
        cx,
        st,
        &meta,
        parts.status,
        sent,
        outcome.keep_alive,
    );
}

/// Pull stream chunks into the output while it stays below the high watermark; on the end of
/// the stream, finish the response. Continued from `on_backpressure(false)`.
fn pump<H: Handler>(config: &HttpConfig, cx: &mut Conn<'_, H>, st: &mut HttpConnState) {
    loop {
        let Busy::Streaming(stream) = &mut st.busy else {
            return;
        };
        let Streaming {
            src,
            chunked,
            sent,
            sized,
            ..
        } = &mut **stream;
        if cx.is_paused() {
            return;
        }
        let mut broken = false;
        let next = match src {
            Source::Iter(it) => it.next(),
            Source::Channel(rx) => match rx.next(|| cx.handle()) {
                Next::Chunk(c) => Some(c),
                // The sender notifies the connection (`CHANNEL_TOKEN`) when it writes.
                Next::Pending => return,
                Next::End => None,
                Next::Aborted => {
                    broken = true;
                    None
                }
            },
        };
        let next = match (next, *sized) {
            // A sized body that ends short is broken too: close rather than hang the client.
            (None, Some(n)) if *sent != n => {
                broken = true;
                None
            }
            // Past its length: send up to it, then close.
            (Some(chunk), Some(n)) if *sent + chunk.len() as u64 > n => {
                broken = true;
                Some(chunk.slice(..(n - *sent) as usize))
            }
            (next, _) => next,
        };
        if broken {
            if let Some(chunk) = &next {
                cx.with_output(|dst| dst.extend_from_slice(chunk));
            }
            let Busy::Streaming(stream) = std::mem::take(&mut st.busy) else {
                return;
            };
            let sent = stream.sent + next.map_or(0, |c| c.len() as u64);
            tracing::debug!("http: a streamed response body broke off after {sent} bytes");
            finish(config, cx, st, &stream.meta, stream.status, sent, false);
            return;
        }
        match next {
            Some(chunk) if chunk.is_empty() => {}
            Some(chunk) => {
                let chunked = *chunked;
                let queued = cx.with_output(|dst| {
                    if chunked {
                        encode_chunk(dst, &chunk);
                    } else {
                        dst.extend_from_slice(&chunk);
                    }
                });
                if queued.is_none() {
                    st.busy = Busy::None; // closing: drop the stream
                    return;
                }
                *sent += chunk.len() as u64;
            }
            None => {
                let Busy::Streaming(stream) = std::mem::take(&mut st.busy) else {
                    return;
                };
                let Streaming {
                    chunked,
                    keep_alive,
                    status,
                    sent,
                    meta,
                    ..
                } = *stream;
                if chunked {
                    cx.with_output(encode_last_chunk);
                }
                finish(config, cx, st, &meta, status, sent, keep_alive);
                return;
            }
        }
    }
}

/// A response is fully queued: log it, and close after it if it was the last.
fn finish<H: Handler>(
    config: &HttpConfig,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    meta: &Meta,
    status: StatusCode,
    bytes: u64,
    keep_alive: bool,
) {
    let elapsed = cx.now_ms().saturating_sub(meta.start);
    crate::stats::http_done(meta.method as usize, status.as_u16(), elapsed, bytes);
    if let (Some(log), Some(m)) = (&config.access_log, &meta.log) {
        let path = m.uri.path_and_query().map_or("/", |p| p.as_str());
        log(&AccessEntry {
            version: version_str(meta.version),
            referer: header_text(&m.referer),
            user_agent: header_text(&m.user_agent),
            method: m.method.as_str(),
            path,
            status: status.as_u16(),
            bytes,
            duration: Duration::from_millis(elapsed),
            peer_addr: st.peer_addr,
        });
    }
    if !keep_alive {
        st.closing = true;
        st.queue.clear();
        let why = if st.stopping {
            CloseReason::Stop
        } else {
            CloseReason::Local
        };
        cx.close_with(why, true);
    }
}

fn header_text(v: &Option<HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-")
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        _ => "-",
    }
}

/// Log a malformed request: at warn level the first of each reason per minute on this loop,
/// at debug level the rest, so a scanner's thousands are not one WARN line each. Every one is
/// counted all the same (the `decode` close reason and its 4xx/5xx status class).
#[cold]
#[inline(never)]
fn log_bad_request(peer: SocketAddr, e: HttpError, now_ms: u64) {
    crate::stats::count(|p| p.http.bad_requests[e.index()] += 1);
    thread_local! {
        static WARNED: std::cell::RefCell<Vec<(HttpError, u64)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let warn = WARNED.with(|w| {
        let mut w = w.borrow_mut();
        match w.iter_mut().find(|(k, _)| *k == e) {
            Some((_, at)) if now_ms.saturating_sub(*at) < 60_000 => false,
            Some((_, at)) => {
                *at = now_ms;
                true
            }
            None => {
                w.push((e, now_ms));
                true
            }
        }
    });
    if warn {
        tracing::warn!(peer = %peer, reason = %e, "http: bad request (further ones for this reason are logged at debug level for a minute)");
    } else {
        tracing::debug!(peer = %peer, reason = %e, "http: bad request");
    }
}

/// Answer a request that cannot be served (decode error 4xx/5xx, 408) and close after it.
fn refuse<H: Handler>(
    config: &HttpConfig,
    out: &mut Out,
    cx: &mut Conn<'_, H>,
    st: &mut HttpConnState,
    status: u16,
    reason: CloseReason,
) {
    let date = out.date(cx.now_ms());
    cx.with_output(|dst| error_response(dst, status, date));
    crate::stats::http_done(crate::stats::METHODS.len() - 1, status, 0, 0);
    if let Some(log) = &config.access_log {
        let reason_len = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map_or(0, str::len);
        log(&AccessEntry {
            method: "-",
            path: "-",
            status,
            bytes: (3 + 1 + reason_len + 1) as u64,
            duration: Duration::ZERO,
            peer_addr: st.peer_addr,
            version: "-",
            referer: "-",
            user_agent: "-",
        });
    }
    st.closing = true;
    st.queue.clear();
    st.incoming = None;
    cx.close_with(reason, true);
}
