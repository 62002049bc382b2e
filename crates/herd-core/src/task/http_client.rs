//! An HTTP/1.1 client on cosockets, with a per-loop keep-alive pool keyed by upstream.
//!
//! [`HttpClient`] lives on one loop (it is `Rc`-shared and cheap to clone there; make one per
//! loop, e.g. in a `thread_local!`). [`HttpClient::request`] takes an [`Upstream`] (an address,
//! and for HTTPS the TLS name) and an `http::Request<Bytes>`, writes the request head and body
//! in one write over a [`TcpStream`](super::TcpStream) (or a [`TlsStream`](super::TlsStream)),
//! and parses the response with `httparse`: `Content-Length`, chunked (trailers dropped) or
//! read-until-close bodies, interim `1xx` responses skipped, no body for `HEAD`, `204` and
//! `304`; the head and the body are bounded by [`ClientOptions`]. A connection whose response
//! was read to its framed end and that neither side marked `Connection: close` goes back to
//! the pool (most recently used first, at most `max_idle_per_upstream` at the end of each
//! loop turn, for `idle_timeout` on the loop's clock, so a `FakeClock` moves it). Health on
//! reuse: a pooled connection that is readable (the server closed it, or sent something
//! unasked) is discarded before use, and an idempotent request whose reused connection
//! fails before any response byte arrives is retried once on a fresh connection.
//! [`ClientStats`] counts requests, connects, reuses and failures by kind.
//!
//! With `max_conns_per_upstream` set, at most that many connections per upstream exist at
//! once (idle, busy or being made). A request that finds none free waits in a FIFO queue of
//! that upstream: a connection given back after its response goes straight to the first
//! waiter, and a connection that closes frees its slot for the first waiter, which connects.
//! A full queue (`queue_max`) fails at once with [`ErrorKind::QueueFull`], a wait longer than
//! `queue_timeout` (on the loop's clock) with [`ErrorKind::QueueTimeout`], and a waiter whose
//! task is dropped leaves the queue, passing on whatever it had just been handed.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};

use super::TcpStream;
#[cfg(feature = "tls")]
use super::{TlsConnector, TlsStream};

/// How an [`HttpClient`] connects, waits and pools.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit on one TCP connect (and, for TLS, on the handshake too).
    pub connect_timeout: Duration,
    /// Limit on the whole response (head and body) after the request was written.
    pub read_timeout: Duration,
    /// Idle connections kept per upstream (0: no keep-alive); more may wait within one loop
    /// turn, for requests that start in the same turn.
    pub max_idle_per_upstream: usize,
    /// An idle connection older than this (on the loop's clock) is closed instead of reused.
    pub idle_timeout: Duration,
    /// Largest response head (status line and headers).
    pub max_header_bytes: usize,
    /// Largest response body.
    pub max_body_bytes: usize,
    /// Connections per upstream at most (idle, busy and being made); 0: no limit. Requests
    /// beyond it wait in a FIFO queue for a connection to be given back or closed.
    pub max_conns_per_upstream: usize,
    /// Requests that may wait per upstream; one more fails with [`ErrorKind::QueueFull`].
    pub queue_max: usize,
    /// Longest wait in the queue (on the loop's clock); past it [`ErrorKind::QueueTimeout`].
    pub queue_timeout: Duration,
    /// Connector for [`Upstream::tls`] upstreams (requests to them fail without one).
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConnector>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_idle_per_upstream: 32,
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 << 20,
            max_conns_per_upstream: 0,
            queue_max: 1024,
            queue_timeout: Duration::from_secs(60),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Where requests go: an address, and for HTTPS the name the certificate must be valid for.
/// The pool key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    addr: SocketAddr,
    tls_name: Option<Rc<str>>,
}

impl Upstream {
    /// Plain HTTP to `addr`.
    pub fn tcp(addr: SocketAddr) -> Upstream {
        Upstream {
            addr,
            tls_name: None,
        }
    }

    /// HTTPS to `addr`, verifying the certificate for `name` (sent as SNI).
    pub fn tls(addr: SocketAddr, name: &str) -> Upstream {
        Upstream {
            addr,
            tls_name: Some(name.into()),
        }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS name, for HTTPS upstreams.
    pub fn tls_name(&self) -> Option<&str> {
        self.tls_name.as_deref()
    }
}

/// What went wrong with a request (see [`ClientError::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection (or the TLS handshake) failed or was refused.
    Connect,
    /// The connect, or the response, did not finish in time.
    Timeout,
    /// Reading or writing failed, or the peer closed before the response was complete.
    Io,
    /// The response was not valid HTTP/1.x, or its head or body was over the limit.
    Protocol,
    /// Every connection to the upstream was busy and its queue was full (nothing was sent).
    QueueFull,
    /// Every connection to the upstream stayed busy for `queue_timeout` (nothing was sent).
    QueueTimeout,
}

/// A failed request: its kind, whether any response byte had arrived, and the cause.
#[derive(Debug)]
pub struct ClientError {
    kind: ErrorKind,
    connect_phase: bool,
    response_started: bool,
    body_sent: bool,
    source: io::Error,
}

impl ClientError {
    fn new(kind: ErrorKind, connect_phase: bool, started: bool, source: io::Error) -> Self {
        ClientError {
            kind,
            connect_phase,
            response_started: started,
            body_sent: false,
            source,
        }
    }

    fn with_body_sent(mut self, sent: bool) -> Self {
        self.body_sent = sent;
        self
    }

    /// Some of a streamed request body ([`HttpClient::request_stream`]) had been taken from
    /// its source when it failed: it cannot be sent again, so no retry elsewhere is possible.
    pub fn body_sent(&self) -> bool {
        self.body_sent
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// It failed while connecting or waiting for a connection (the request was not sent): any
    /// request may go elsewhere.
    pub fn is_connect(&self) -> bool {
        self.connect_phase
    }

    /// Some of the response had arrived when it failed (a retry could repeat side effects
    /// the server already reported).
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// The underlying I/O error.
    pub fn io(&self) -> &io::Error {
        &self.source
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "i/o",
            ErrorKind::Protocol => "protocol",
            ErrorKind::QueueFull => "queue full",
            ErrorKind::QueueTimeout => "queue timeout",
        };
        write!(f, "upstream {what} error: {}", self.source)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<ClientError> for io::Error {
    fn from(e: ClientError) -> io::Error {
        e.source
    }
}

/// Counters of one [`HttpClient`] (all since it was made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests asked for (a retry is not counted again).
    pub requests: u64,
    /// Responses received in full.
    pub responses: u64,
    /// New connections made (successful connects).
    pub connects: u64,
    /// Requests sent on a pooled connection.
    pub reuses: u64,
    /// Pooled connections found closed (or readable) before use, or too old, and discarded.
    pub stale_discarded: u64,
    /// Requests retried on a fresh connection after a reused one failed.
    pub retries: u64,
    /// Failures to connect.
    pub connect_failures: u64,
    /// Timeouts (connect or response).
    pub timeouts: u64,
    /// I/O failures after connecting.
    pub io_failures: u64,
    /// Invalid or oversized responses.
    pub protocol_failures: u64,
    /// Requests that waited in a queue for a connection.
    pub queued: u64,
    /// Requests refused because the queue was full.
    pub queue_full: u64,
    /// Requests that waited `queue_timeout` in vain.
    pub queue_timeouts: u64,
    /// Connections idle in the pool now.
    pub idle: u64,
    /// Requests waiting in a queue now.
    pub waiting: u64,
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl Stream {
    fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(s) => s.poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.poll_read(cx, buf),
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let start = buf.len();
        let cap = buf.capacity();
        // Zero-filled rather than uninitialised: this stays free of `unsafe`.
        buf.resize(cap, 0);
        let r = std::future::poll_fn(|cx| self.poll_read(cx, &mut buf[start..])).await;
        match r {
            Ok(n) => {
                buf.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(data).await,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }

    /// Without waiting: `true` if the connection is quiet (nothing to read, not closed), as a
    /// pooled connection must be.
    async fn is_quiet(&mut self) -> bool {
        let tcp = match self {
            Stream::Tcp(s) => &*s,
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.get_ref(),
        };
        // Nothing reported since the last read ran dry: quiet, without a read to prove it.
        if !tcp.maybe_readable() {
            return true;
        }
        let mut probe = [0u8; 1];
        std::future::poll_fn(|cx| Poll::Ready(self.poll_read(cx, &mut probe).is_pending())).await
    }
}

/// An open connection with its buffers, kept together in the pool.
struct Conn {
    stream: Stream,
    /// The read buffer, kept for the next response (empty between responses).
    rbuf: BytesMut,
    /// The request being written: head and body, encoded here so they leave in one write.
    wbuf: Vec<u8>,
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_BUF),
            wbuf: Vec::with_capacity(WRITE_BUF),
        }
    }
}

struct Idle {
    conn: Conn,
    since_ms: u64,
}

/// A connection's first read buffer; kept with it in the pool, so a reused connection reads
/// into memory it already has.
const READ_BUF: usize = 8 * 1024;

/// A connection's first write buffer (a request head fits); one grown past
/// [`WRITE_BUF_KEEP`] by a large body is not kept.
const WRITE_BUF: usize = 1024;
const WRITE_BUF_KEEP: usize = 16 * 1024;

/// Response bodies up to this size are copied out of the read buffer, which then stays
/// whole for the connection's next response; larger ones take the buffer's memory along.
const COPY_BODY_MAX: usize = 4 * 1024;

/// What a queued request is handed.
enum Grant {
    /// Nothing yet.
    Waiting,
    /// A connection given back after its response (its slot comes with it).
    Conn(Conn),
    /// The slot of a connection that closed: connect.
    Slot,
}

/// A request waiting in an upstream's queue.
struct Waiter {
    grant: RefCell<Grant>,
    waker: RefCell<Option<Waker>>,
}

impl Waiter {
    fn hand(&self, g: Grant) {
        *self.grant.borrow_mut() = g;
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// One upstream's connections: the idle ones, how many exist, the requests waiting.
#[derive(Default)]
struct Pool {
    /// Most recently used at the back.
    idle: VecDeque<Idle>,
    /// Connections that exist or are being made (idle, busy or connecting): each is a slot,
    /// at most `max_conns_per_upstream` when that is set.
    open: usize,
    /// Requests waiting for a slot, first come first served. Never non-empty while `idle`
    /// is: a connection given back goes to a waiter before the pool.
    waiters: VecDeque<Rc<Waiter>>,
}

struct Inner {
    opts: ClientOptions,
    pools: RefCell<HashMap<Upstream, Pool>>,
    stats: Cell<ClientStats>,
    /// A trim of the pool down to `max_idle_per_upstream` waits for the end of the turn.
    trim_pending: Cell<bool>,
}

impl Inner {
    /// Close the oldest idle connections beyond `max_idle_per_upstream`.
    fn trim(&self) {
        self.trim_pending.set(false);
        let max = self.opts.max_idle_per_upstream;
        let mut closed = Vec::new();
        for (up, p) in self.pools.borrow_mut().iter_mut() {
            while p.idle.len() > max {
                if let Some(i) = p.idle.pop_front() {
                    closed.push((up.clone(), i));
                }
            }
        }
        // Closed, and their slots freed, outside the pool's borrow.
        for (up, idle) in closed {
            drop(idle);
            self.release(&up);
        }
    }

    /// A connection of `up` closed (or was never made): its slot goes to the first waiter,
    /// which connects, or back to the count.
    fn release(&self, up: &Upstream) {
        let next = {
            let mut pools = self.pools.borrow_mut();
            let Some(p) = pools.get_mut(up) else { return };
            let w = p.waiters.pop_front();
            if w.is_none() {
                p.open = p.open.saturating_sub(1);
            }
            w
        };
        if let Some(w) = next {
            w.hand(Grant::Slot);
        }
    }

    /// A connection of `up` that may carry another request: to the first waiter, else into
    /// the pool (or closed, without keep-alive).
    fn give_back(self: &Rc<Self>, up: &Upstream, mut conn: Conn) {
        let max = self.opts.max_idle_per_upstream;
        if max == 0 {
            drop(conn);
            self.release(up);
            return;
        }
        conn.rbuf.clear();
        if conn.wbuf.capacity() > WRITE_BUF_KEEP {
            conn.wbuf = Vec::with_capacity(WRITE_BUF);
        }
        let mut pools = self.pools.borrow_mut();
        let Some(p) = pools.get_mut(up) else { return };
        if let Some(w) = p.waiters.pop_front() {
            drop(pools);
            w.hand(Grant::Conn(conn));
            return;
        }
        p.idle.push_back(Idle {
            conn,
            since_ms: now_ms(),
        });
        // Beyond `max`, the oldest go (nginx's keepalive cache drops its least recently used
        // too), but only at the end of the loop's turn: a request that starts in the same
        // turn takes a connection another one just gave back instead of opening a new one.
        if p.idle.len() > max && !self.trim_pending.replace(true) {
            let inner = self.clone();
            super::defer(move || inner.trim());
        }
    }
}

/// A slot of an upstream's connection count held by one request: freed when dropped (the
/// connection closed, the request failed or its task was dropped), unless it went on with
/// its connection to the pool or a waiter ([`Lease::keep`]).
struct Lease {
    inner: Rc<Inner>,
    up: Upstream,
    held: bool,
}

impl Lease {
    fn keep(mut self) {
        self.held = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.held {
            self.inner.release(&self.up);
        }
    }
}

/// Waiting in the queue for a [`Grant`]; leaving it when dropped first.
struct Queued {
    inner: Rc<Inner>,
    up: Upstream,
    me: Rc<Waiter>,
    done: bool,
}

impl Future for Queued {
    type Output = Grant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Grant> {
        let g = std::mem::replace(&mut *self.me.grant.borrow_mut(), Grant::Waiting);
        if let Grant::Waiting = g {
            *self.me.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.done = true;
        Poll::Ready(g)
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Cancelled (its task dropped, or the queue timeout): whatever it was handed goes on.
        let g = std::mem::replace(&mut *self.me.grant.borrow_mut(), Grant::Waiting);
        match g {
            Grant::Waiting => {
                let mut pools = self.inner.pools.borrow_mut();
                if let Some(p) = pools.get_mut(&self.up) {
                    p.waiters.retain(|w| !Rc::ptr_eq(w, &self.me));
                }
            }
            Grant::Conn(c) => self.inner.give_back(&self.up, c),
            Grant::Slot => self.inner.release(&self.up),
        }
    }
}

/// How a request gets its connection.
enum Next {
    Connect,
    Wait(Rc<Waiter>),
    Full,
}

/// An HTTP/1.1 client with a keep-alive pool, for tasks of one loop (see the module docs).
///
/// ```no_run
/// use herd_core::task::{ClientOptions, HttpClient, Upstream};
/// use herd_core::Bytes;
/// # async fn call() -> std::io::Result<()> {
/// let client = HttpClient::new(ClientOptions::default());
/// let up = Upstream::tcp("127.0.0.1:8080".parse().unwrap());
/// let req = http::Request::get("/hello").body(Bytes::new()).unwrap();
/// let resp = client.request(&up, req).await?;
/// assert_eq!(resp.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("stats", &self.stats())
            .finish()
    }
}

fn now_ms() -> u64 {
    super::loop_now_ms()
}

/// Methods a request may be repeated for (RFC 9110 idempotent methods).
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn proto(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// How the response body is framed.
#[derive(Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl HttpClient {
    /// A client with `opts` and an empty pool.
    pub fn new(opts: ClientOptions) -> HttpClient {
        HttpClient {
            inner: Rc::new(Inner {
                opts,
                pools: RefCell::new(HashMap::new()),
                stats: Cell::new(ClientStats::default()),
                trim_pending: Cell::new(false),
            }),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        let mut s = self.inner.stats.get();
        let pools = self.inner.pools.borrow();
        s.idle = pools.values().map(|p| p.idle.len() as u64).sum();
        s.waiting = pools.values().map(|p| p.waiters.len() as u64).sum();
        s
    }

    /// Idle connections pooled for `up` now.
    pub fn idle(&self, up: &Upstream) -> usize {
        self.inner
            .pools
            .borrow()
            .get(up)
            .map_or(0, |p| p.idle.len())
    }

    /// Requests waiting in `up`'s queue now.
    pub fn waiting(&self, up: &Upstream) -> usize {
        self.inner
            .pools
            .borrow()
            .get(up)
            .map_or(0, |p| p.waiters.len())
    }

    /// Connections to `up` now: idle, busy and being made.
    pub fn open(&self, up: &Upstream) -> usize {
        self.inner.pools.borrow().get(up).map_or(0, |p| p.open)
    }

    /// Whether a request to `up` would wait in its queue now (every slot of
    /// `max_conns_per_upstream` taken and none idle, or others waiting already).
    pub fn at_capacity(&self, up: &Upstream) -> bool {
        let cap = self.inner.opts.max_conns_per_upstream;
        cap > 0
            && self
                .inner
                .pools
                .borrow()
                .get(up)
                .is_some_and(|p| p.idle.is_empty() && (p.open >= cap || !p.waiters.is_empty()))
    }

    /// Close every idle connection.
    pub fn clear_idle(&self) {
        let mut closed = Vec::new();
        for (up, p) in self.inner.pools.borrow_mut().iter_mut() {
            closed.extend(p.idle.drain(..).map(|i| (up.clone(), i)));
        }
        for (up, idle) in closed {
            drop(idle);
            self.inner.release(&up);
        }
    }

    fn count(&self, f: impl FnOnce(&mut ClientStats)) {
        let mut s = self.inner.stats.get();
        f(&mut s);
        self.inner.stats.set(s);
    }

    fn count_error(&self, e: &ClientError) {
        self.count(|s| match e.kind {
            ErrorKind::Connect => s.connect_failures += 1,
            ErrorKind::Timeout => s.timeouts += 1,
            ErrorKind::Io => s.io_failures += 1,
            ErrorKind::Protocol => s.protocol_failures += 1,
            ErrorKind::QueueFull => s.queue_full += 1,
            ErrorKind::QueueTimeout => s.queue_timeouts += 1,
        });
    }

    /// Send `req` to `up` and read the response (see the module docs). The request's URI
    /// gives the path and query; a `Host` header is added if it has none, and
    /// `Content-Length` for a body.
    pub async fn request(
        &self,
        up: &Upstream,
        req: Request<Bytes>,
    ) -> Result<Response<Bytes>, ClientError> {
        self.count(|s| s.requests += 1);
        let idempotent = is_idempotent(req.method());
        let is_head = req.method() == Method::HEAD;
        let close_asked = has_token(req.headers(), http::header::CONNECTION, "close");
        let (mut conn, lease, reused) = match self.checkout(up).await {
            Ok(v) => v,
            Err(e) => {
                self.count_error(&e);
                return Err(e);
            }
        };
        if reused {
            self.count(|s| s.reuses += 1);
        }
        let mut r = self.exchange(&mut conn, up, &req, is_head).await;
        if let Err(e) = &r {
            if reused && idempotent && !e.response_started && e.kind != ErrorKind::Timeout {
                // The server had closed the pooled connection (a keep-alive race): once more
                // on a fresh one, in the same slot. Only once: a fresh connection that fails
                // is the caller's answer.
                drop(conn);
                conn = self.reconnect(up).await?;
                r = self.exchange(&mut conn, up, &req, is_head).await;
            }
        }
        match r {
            Ok((resp, reusable)) => {
                self.count(|s| s.responses += 1);
                if reusable && !close_asked {
                    lease.keep();
                    self.inner.give_back(up, conn);
                }
                Ok(resp)
            }
            Err(e) => {
                self.count_error(&e);
                Err(e)
            }
        }
    }

    /// A connection to `up` and its slot: a quiet pooled one (`true`), a new one, or one
    /// handed over after a wait in the queue.
    async fn checkout(&self, up: &Upstream) -> Result<(Conn, Lease, bool), ClientError> {
        let lease = || Lease {
            inner: self.inner.clone(),
            up: up.clone(),
            held: true,
        };
        let now = now_ms();
        let idle_ms = self.inner.opts.idle_timeout.as_millis() as u64;
        loop {
            let idle = {
                let mut pools = self.inner.pools.borrow_mut();
                pools.get_mut(up).and_then(|p| p.idle.pop_back())
            };
            let Some(mut idle) = idle else { break };
            // The idle connection's slot is this request's now.
            let l = lease();
            if now.saturating_sub(idle.since_ms) >= idle_ms || !idle.conn.stream.is_quiet().await {
                self.count(|s| s.stale_discarded += 1);
                drop(idle);
                drop(l);
                continue;
            }
            return Ok((idle.conn, l, true));
        }
        let opts = &self.inner.opts;
        let cap = opts.max_conns_per_upstream;
        let next = {
            let mut pools = self.inner.pools.borrow_mut();
            let p = match pools.get_mut(up) {
                Some(p) => p,
                None => pools.entry(up.clone()).or_default(),
            };
            if cap == 0 || (p.open < cap && p.waiters.is_empty()) {
                p.open += 1;
                Next::Connect
            } else if p.waiters.len() >= opts.queue_max {
                Next::Full
            } else {
                let w = Rc::new(Waiter {
                    grant: RefCell::new(Grant::Waiting),
                    waker: RefCell::new(None),
                });
                p.waiters.push_back(w.clone());
                Next::Wait(w)
            }
        };
        let l = match next {
            Next::Connect => lease(),
            Next::Full => {
                return Err(ClientError::new(
                    ErrorKind::QueueFull,
                    true,
                    false,
                    io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "every upstream connection is busy and the queue is full",
                    ),
                ))
            }
            Next::Wait(me) => {
                self.count(|s| s.queued += 1);
                let q = Queued {
                    inner: self.inner.clone(),
                    up: up.clone(),
                    me,
                    done: false,
                };
                match super::timeout(opts.queue_timeout, q).await {
                    Ok(Grant::Conn(c)) => return Ok((c, lease(), true)),
                    Ok(_) => lease(),
                    Err(_) => {
                        return Err(ClientError::new(
                            ErrorKind::QueueTimeout,
                            true,
                            false,
                            io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no upstream connection came free within the queue timeout",
                            ),
                        ))
                    }
                }
            }
        };
        // A new connection in the slot `l` holds (freed again if the connect fails).
        let stream = self.connect(up).await?;
        self.count(|s| s.connects += 1);
        Ok((Conn::new(stream), l, false))
    }

    /// The keep-alive retry's fresh connection, in the failed one's slot: counted as a retry
    /// and a connect, or as the error that ends the request.
    async fn reconnect(&self, up: &Upstream) -> Result<Conn, ClientError> {
        self.count(|s| s.retries += 1);
        match self.connect(up).await {
            Ok(s) => {
                self.count(|s| s.connects += 1);
                Ok(Conn::new(s))
            }
            Err(e) => {
                self.count_error(&e);
                Err(e)
            }
        }
    }

    async fn connect(&self, up: &Upstream) -> Result<Stream, ClientError> {
        let limit = self.inner.opts.connect_timeout;
        let conn_err = |e: io::Error| {
            let kind = if e.kind() == io::ErrorKind::TimedOut {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connect
            };
            ClientError::new(kind, true, false, e)
        };
        #[cfg(feature = "tls")]
        if up.tls_name.is_some() && self.inner.opts.tls.is_none() {
            return Err(conn_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an https upstream needs ClientOptions::tls",
            )));
        }
        let tcp = TcpStream::connect_timeout(up.addr, limit)
            .await
            .map_err(conn_err)?;
        match &up.tls_name {
            None => Ok(Stream::Tcp(tcp)),
            #[cfg(feature = "tls")]
            Some(name) => {
                let Some(tls) = &self.inner.opts.tls else {
                    unreachable!("checked before connecting");
                };
                let s = match super::timeout(limit, tls.connect(name, tcp)).await {
                    Ok(r) => r.map_err(conn_err)?,
                    Err(_) => {
                        return Err(conn_err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        )))
                    }
                };
                Ok(Stream::Tls(Box::new(s)))
            }
            #[cfg(not(feature = "tls"))]
            Some(_) => Err(conn_err(io::Error::new(
                io::ErrorKind::Unsupported,
                "herd-core was built without the tls feature",
            ))),
        }
    }

    /// Write `req` (encoded into the connection's write buffer: one write), read one
    /// response; whether the connection may be reused.
    async fn exchange(
        &self,
        conn: &mut Conn,
        up: &Upstream,
        req: &Request<Bytes>,
        is_head: bool,
    ) -> Result<(Response<Bytes>, bool), ClientError> {
        conn.wbuf.clear();
        encode_request(up, req, &mut conn.wbuf);
        if let Err(e) = conn.stream.write_all(&conn.wbuf).await {
            return Err(ClientError::new(ErrorKind::Io, false, false, e));
        }
        let started = Cell::new(false);
        let read = read_response(
            &mut conn.stream,
            &mut conn.rbuf,
            &self.inner.opts,
            is_head,
            &started,
        );
        match super::timeout(self.inner.opts.read_timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::new(
                ErrorKind::Timeout,
                false,
                started.get(),
                io::Error::new(io::ErrorKind::TimedOut, "upstream response timed out"),
            )),
        }
    }
}

/// The request head and body, appended to `out`.
fn encode_request(up: &Upstream, req: &Request<Bytes>, out: &mut Vec<u8>) {
    let body = req.body();
    out.reserve(256 + body.len());
    encode_head(up, req, Some(body.len() as u64), out);
    out.extend_from_slice(body);
}

/// The request head, appended to `out`: `Content-Length: len` (when a body is sent or the
/// method expects one), or chunked for an unknown `len`.
fn encode_head<T>(up: &Upstream, req: &Request<T>, len: Option<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if pq.is_empty() { b"/" } else { pq.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let h = req.headers();
    if !h.contains_key(http::header::HOST) {
        out.extend_from_slice(b"host: ");
        match (&up.tls_name, req.uri().authority()) {
            (_, Some(a)) => out.extend_from_slice(a.as_str().as_bytes()),
            (Some(n), None) => out.extend_from_slice(n.as_bytes()),
            // (Writing into a Vec cannot fail.)
            (None, None) => drop(write!(out, "{}", up.addr)),
        }
        out.extend_from_slice(b"\r\n");
    }
    for (k, v) in h {
        if k == http::header::CONTENT_LENGTH || k == http::header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let m = req.method();
    match len {
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Some(n) if n > 0 || *m == Method::POST || *m == Method::PUT || *m == Method::PATCH => {
            drop(write!(out, "content-length: {n}\r\n"));
        }
        Some(_) => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Read more of a response body into `buf`: the end of stream is an error here (the body is
/// not complete), and every failure counts as after the response started.
async fn read_more_body(stream: &mut Stream, buf: &mut BytesMut) -> Result<(), ClientError> {
    let io_err = |e: io::Error| ClientError::new(ErrorKind::Io, false, true, e);
    match stream.read_buf(buf).await {
        Ok(0) => Err(io_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed mid-body",
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// Read one final response from `stream` (interim `1xx` skipped); whether the connection may
/// carry another request. `started` is set once a response byte arrived.
async fn read_response(
    stream: &mut Stream,
    buf: &mut BytesMut,
    opts: &ClientOptions,
    is_head: bool,
    started: &Cell<bool>,
) -> Result<(Response<Bytes>, bool), ClientError> {
    let (resp, framing, close) = read_head(stream, buf, opts, is_head, started).await?;
    let (body, reusable) = read_body(stream, buf, opts, framing, close).await?;
    Ok((resp.map(|()| body), reusable))
}

/// Read one final response head (interim `1xx` skipped): the head, how its body is framed,
/// and whether the server closes the connection after it.
async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    opts: &ClientOptions,
    is_head: bool,
    started: &Cell<bool>,
) -> Result<(Response<()>, Framing, bool), ClientError> {
    let io_err = |started: bool, e: io::Error| ClientError::new(ErrorKind::Io, false, started, e);
    let proto_err = |msg: &str| ClientError::new(ErrorKind::Protocol, false, true, proto(msg));
    loop {
        // The head.
        let (head_len, resp, version) = loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut r = httparse::Response::new(&mut headers);
                match r.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = StatusCode::from_u16(r.code.unwrap_or(0))
                            .map_err(|_| proto_err("bad status code"))?;
                        let version = if r.version == Some(0) {
                            Version::HTTP_10
                        } else {
                            Version::HTTP_11
                        };
                        // One copy of the head; every header value is a slice of it
                        // (no allocation per header, and the read buffer stays whole).
                        let head = Bytes::copy_from_slice(&buf[..n]);
                        let base = buf.as_ptr() as usize;
                        let mut map = HeaderMap::with_capacity(r.headers.len());
                        for h in r.headers.iter() {
                            let name = HeaderName::from_bytes(h.name.as_bytes())
                                .map_err(|_| proto_err("bad header name"))?;
                            // (httparse's values point into `buf`; the check keeps it so.)
                            let at = (h.value.as_ptr() as usize).wrapping_sub(base);
                            let end = at.checked_add(h.value.len()).filter(|&e| e <= n);
                            let value = match end {
                                Some(end) => HeaderValue::from_maybe_shared(head.slice(at..end)),
                                None => HeaderValue::from_bytes(h.value),
                            }
                            .map_err(|_| proto_err("bad header value"))?;
                            map.append(name, value);
                        }
                        let mut resp = Response::new(());
                        *resp.status_mut() = status;
                        *resp.version_mut() = version;
                        *resp.headers_mut() = map;
                        break (n, resp, version);
                    }
                    Ok(httparse::Status::Partial) => {
                        if buf.len() > opts.max_header_bytes {
                            return Err(proto_err("response head too large"));
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(proto_err("response head has too many headers"))
                    }
                    Err(_) => return Err(proto_err("invalid response head")),
                }
            }
            let n = stream
                .read_buf(buf)
                .await
                .map_err(|e| io_err(started.get(), e))?;
            if n == 0 {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "upstream closed before the response head",
                );
                return Err(io_err(started.get(), e));
            }
            started.set(true);
        };
        buf.advance(head_len);
        let status = resp.status();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        let headers = resp.headers();
        let close = has_token(headers, http::header::CONNECTION, "close")
            || (version == Version::HTTP_10
                && !has_token(headers, http::header::CONNECTION, "keep-alive"));
        let framing = if is_head
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational()
        {
            Framing::None
        } else if headers.contains_key(http::header::TRANSFER_ENCODING) {
            if has_token(headers, http::header::TRANSFER_ENCODING, "chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else if let Some(v) = headers.get(http::header::CONTENT_LENGTH) {
            let n: u64 = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| proto_err("bad content-length"))?;
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return Ok((resp, framing, close));
    }
}

/// Read a whole response body framed as `framing` (bounded by `max_body_bytes`); whether the
/// connection may carry another request.
async fn read_body(
    stream: &mut Stream,
    buf: &mut BytesMut,
    opts: &ClientOptions,
    framing: Framing,
    close: bool,
) -> Result<(Bytes, bool), ClientError> {
    let io_err = |started: bool, e: io::Error| ClientError::new(ErrorKind::Io, false, started, e);
    let proto_err = |msg: &str| ClientError::new(ErrorKind::Protocol, false, true, proto(msg));
    {
        let max = opts.max_body_bytes;
        let too_big = || proto_err("response body over the limit");
        let (body, reusable) = match framing {
            Framing::None => (Bytes::new(), !close && buf.is_empty()),
            Framing::Length(n) => {
                if n > max as u64 {
                    return Err(too_big());
                }
                let n = n as usize;
                while buf.len() < n {
                    read_more_body(stream, buf).await?;
                }
                let body = if n <= COPY_BODY_MAX {
                    let b = Bytes::copy_from_slice(&buf[..n]);
                    buf.advance(n);
                    b
                } else {
                    buf.split_to(n).freeze()
                };
                (body, !close && buf.is_empty())
            }
            Framing::UntilClose => {
                loop {
                    if buf.len() > max {
                        return Err(too_big());
                    }
                    if stream.read_buf(buf).await.map_err(|e| io_err(true, e))? == 0 {
                        break;
                    }
                }
                (std::mem::take(buf).freeze(), false)
            }
            Framing::Chunked => {
                let mut body = BytesMut::new();
                loop {
                    // The chunk-size line.
                    let size = loop {
                        match httparse::parse_chunk_size(buf) {
                            Ok(httparse::Status::Complete((used, size))) => {
                                buf.advance(used);
                                break size;
                            }
                            Ok(httparse::Status::Partial) => {
                                if buf.len() > 4096 {
                                    return Err(proto_err("chunk size line too long"));
                                }
                            }
                            Err(_) => return Err(proto_err("invalid chunk size")),
                        }
                        read_more_body(stream, buf).await?;
                    };
                    if size == 0 {
                        break;
                    }
                    if body.len() as u64 + size > max as u64 {
                        return Err(too_big());
                    }
                    let need = size as usize + 2;
                    while buf.len() < need {
                        read_more_body(stream, buf).await?;
                    }
                    body.extend_from_slice(&buf[..size as usize]);
                    if &buf[size as usize..need] != b"\r\n" {
                        return Err(proto_err("chunk not followed by CRLF"));
                    }
                    buf.advance(need);
                }
                // Trailers (dropped) up to the empty line.
                loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        buf.advance(i + 2);
                        if empty {
                            break;
                        }
                        continue;
                    }
                    if buf.len() > opts.max_header_bytes {
                        return Err(proto_err("trailers too large"));
                    }
                    read_more_body(stream, buf).await?;
                }
                (body.freeze(), !close && buf.is_empty())
            }
        };
        Ok((body, reusable))
    }
}

/// A request body given piece by piece to [`HttpClient::request_stream`]: `Bytes` (all at
/// once), a server's [`BodyStream`](crate::http::BodyStream) (an upload passed on as it
/// arrives), or anything else that yields chunks.
pub trait BodySource {
    /// The body's exact length if known: sent as `Content-Length` (and checked: a source that
    /// yields more or less fails the request); `None` sends it chunked.
    fn content_length(&self) -> Option<u64>;

    /// The next piece (`Ok(None)` at the end), or a failure of the source (the request fails
    /// and its connection is closed).
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>>;
}

impl BodySource for Bytes {
    fn content_length(&self) -> Option<u64> {
        Some(self.len() as u64)
    }

    fn poll_chunk(&mut self, _: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        Poll::Ready(Ok(Some(std::mem::take(self)).filter(|b| !b.is_empty())))
    }
}

impl<B: BodySource + ?Sized> BodySource for &mut B {
    fn content_length(&self) -> Option<u64> {
        (**self).content_length()
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        (**self).poll_chunk(cx)
    }
}

/// A streaming route's request body: its `Content-Length` when announced (else chunked).
impl BodySource for crate::http::BodyStream {
    fn content_length(&self) -> Option<u64> {
        crate::http::BodyStream::content_length(self)
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        match crate::http::BodyStream::poll_chunk(self, cx) {
            Poll::Ready(Ok(c)) => Poll::Ready(Ok(c)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(io::Error::other(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Bytes of a streamed request body gathered before a write (the first piece goes out with
/// the head when it is ready at once).
const STREAM_WRITE: usize = 64 * 1024;

/// Free space below which a streamed response body's read buffer grows, and by how much.
const STREAM_READ_MIN: usize = 16 * 1024;
const STREAM_READ_GROW: usize = 64 * 1024;

/// A response body read piece by piece ([`HttpClient::request_stream`]).
///
/// [`next_chunk`](ClientBody::next_chunk) gives the body as it arrives, with chunked
/// framing removed (trailers are dropped). Once it has returned `Ok(None)` the connection has
/// gone back to the pool (or to the first request waiting for one). Dropped before the end,
/// the connection is closed and its slot freed. Each read waits at most the client's
/// `read_timeout`; the body is bounded by `max_body_bytes`.
pub struct ClientBody {
    state: BodyState,
}

enum BodyState {
    Done,
    /// The whole body arrived with the head; the connection has been let go already.
    Ready(Bytes),
    Reading(Box<Reading>),
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.state {
            BodyState::Done => "ClientBody::Done",
            BodyState::Ready(_) => "ClientBody::Ready",
            BodyState::Reading(_) => "ClientBody::Reading",
        })
    }
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    Crlf,
    Trailers,
}

/// How much of a streamed body is left.
#[derive(Clone, Copy)]
enum Left {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// A body still arriving, with its connection and slot.
struct Reading {
    client: HttpClient,
    up: Upstream,
    conn: Conn,
    lease: Lease,
    left: Left,
    /// Neither side asked to close after this response.
    keep: bool,
    /// Body bytes so far.
    total: u64,
    /// The announced length (`Content-Length`).
    len: Option<u64>,
}

impl ClientBody {
    /// The body's length when the server announced it (`Content-Length`).
    pub fn content_length(&self) -> Option<u64> {
        match &self.state {
            BodyState::Done => Some(0),
            BodyState::Ready(b) => Some(b.len() as u64),
            BodyState::Reading(r) => r.len,
        }
    }

    /// The whole body if it had all arrived with the head (a small response costs no more
    /// than [`HttpClient::request`]); else `self` back, to read with `next_chunk`.
    pub fn try_into_bytes(self) -> Result<Bytes, ClientBody> {
        match self.state {
            BodyState::Done => Ok(Bytes::new()),
            BodyState::Ready(b) => Ok(b),
            state @ BodyState::Reading(_) => Err(ClientBody { state }),
        }
    }

    /// The next piece of the body, `Ok(None)` at its end (the connection is then back in
    /// the pool), or why it broke off (the connection is closed).
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        match std::mem::replace(&mut self.state, BodyState::Done) {
            BodyState::Done => Ok(None),
            BodyState::Ready(b) => Ok(Some(b).filter(|b| !b.is_empty())),
            BodyState::Reading(mut r) => match r.next().await {
                Ok(Some(c)) => {
                    self.state = BodyState::Reading(r);
                    Ok(Some(c))
                }
                Ok(None) => {
                    r.finish();
                    Ok(None)
                }
                Err(e) => {
                    r.client.count_error(&e);
                    Err(e)
                }
            },
        }
    }

    /// Read the rest into one buffer of at most `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, ClientError> {
        let mut all = BytesMut::new();
        while let Some(c) = self.next_chunk().await? {
            if all.len() + c.len() > limit {
                self.state = BodyState::Done;
                return Err(ClientError::new(
                    ErrorKind::Protocol,
                    false,
                    true,
                    proto("response body over the limit"),
                ));
            }
            all.extend_from_slice(&c);
        }
        Ok(all.freeze())
    }
}

impl Reading {
    /// The body ended at its framed end: the connection goes on if it may.
    fn finish(self) {
        let Reading {
            client,
            up,
            conn,
            lease,
            keep,
            ..
        } = self;
        client.finish_now(&up, conn, lease, keep);
    }

    /// Read more into the buffer, within `read_timeout`; `false` at the end of stream.
    async fn fill(&mut self) -> Result<bool, ClientError> {
        let buf = &mut self.conn.rbuf;
        if buf.capacity() - buf.len() < STREAM_READ_MIN {
            buf.reserve(STREAM_READ_GROW);
        }
        let limit = self.client.inner.opts.read_timeout;
        match super::timeout(limit, self.conn.stream.read_buf(&mut self.conn.rbuf)).await {
            Ok(Ok(n)) => Ok(n > 0),
            Ok(Err(e)) => Err(ClientError::new(ErrorKind::Io, false, true, e)),
            Err(_) => Err(ClientError::new(
                ErrorKind::Timeout,
                false,
                true,
                io::Error::new(io::ErrorKind::TimedOut, "upstream body timed out"),
            )),
        }
    }

    async fn fill_more(&mut self) -> Result<(), ClientError> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(ClientError::new(
                ErrorKind::Io,
                false,
                true,
                io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed mid-body"),
            ))
        }
    }

    /// Take up to `n` buffered bytes as one piece.
    fn take(&mut self, n: usize) -> Result<Bytes, ClientError> {
        let n = n.min(self.conn.rbuf.len());
        self.total += n as u64;
        if self.total > self.client.inner.opts.max_body_bytes as u64 {
            return Err(ClientError::new(
                ErrorKind::Protocol,
                false,
                true,
                proto("response body over the limit"),
            ));
        }
        Ok(self.conn.rbuf.split_to(n).freeze())
    }

    async fn next(&mut self) -> Result<Option<Bytes>, ClientError> {
        let proto_err = |msg: &str| ClientError::new(ErrorKind::Protocol, false, true, proto(msg));
        loop {
            match self.left {
                Left::Length(0) => return Ok(None),
                Left::Length(left) => {
                    if self.conn.rbuf.is_empty() {
                        self.fill_more().await?;
                    }
                    let c = self.take(left.min(usize::MAX as u64) as usize)?;
                    self.left = Left::Length(left - c.len() as u64);
                    return Ok(Some(c));
                }
                Left::UntilClose => {
                    if self.conn.rbuf.is_empty() && !self.fill().await? {
                        self.keep = false;
                        return Ok(None);
                    }
                    let n = self.conn.rbuf.len();
                    return self.take(n).map(Some);
                }
                Left::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&self.conn.rbuf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.conn.rbuf.advance(used);
                        self.left = Left::Chunked(if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        });
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.conn.rbuf.len() > 4096 {
                            return Err(proto_err("chunk size line too long"));
                        }
                        self.fill_more().await?;
                    }
                    Err(_) => return Err(proto_err("invalid chunk size")),
                },
                Left::Chunked(Chunk::Data(left)) => {
                    if self.conn.rbuf.is_empty() {
                        self.fill_more().await?;
                    }
                    let c = self.take(left.min(usize::MAX as u64) as usize)?;
                    let left = left - c.len() as u64;
                    self.left = Left::Chunked(if left == 0 {
                        Chunk::Crlf
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(c));
                }
                Left::Chunked(Chunk::Crlf) => {
                    if self.conn.rbuf.len() < 2 {
                        self.fill_more().await?;
                        continue;
                    }
                    if &self.conn.rbuf[..2] != b"\r\n" {
                        return Err(proto_err("chunk not followed by CRLF"));
                    }
                    self.conn.rbuf.advance(2);
                    self.left = Left::Chunked(Chunk::Size);
                }
                Left::Chunked(Chunk::Trailers) => {
                    let buf = &mut self.conn.rbuf;
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        buf.advance(i + 2);
                        if i == 0 {
                            self.left = Left::Length(0);
                        }
                        continue;
                    }
                    if buf.len() > self.client.inner.opts.max_header_bytes {
                        return Err(proto_err("trailers too large"));
                    }
                    self.fill_more().await?;
                }
            }
        }
    }
}

/// Append one piece of a request body to `out`, framed.
fn frame_piece(out: &mut Vec<u8>, chunked: bool, piece: &[u8]) {
    if chunked {
        drop(write!(out, "{:x}\r\n", piece.len()));
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(piece);
    }
}

impl HttpClient {
    /// Send `req` to `up` with its body taken from a [`BodySource`] as it comes, and return
    /// as soon as the response head is in, its body to be read with
    /// [`ClientBody::next_chunk`] (see its docs for when the connection goes back to the
    /// pool). The body is sent with its `Content-Length` when the source knows it, else
    /// chunked. As with [`request`](HttpClient::request), an idempotent request whose reused
    /// connection fails before any response byte is retried once on a fresh connection, but
    /// only if no body byte had been taken from the source ([`ClientError::body_sent`]).
    /// `read_timeout` applies to each write of the body, to the head, and to each read of
    /// the body.
    ///
    /// ```no_run
    /// use herd_core::task::{ClientOptions, HttpClient, Upstream};
    /// use herd_core::Bytes;
    /// # async fn call() -> Result<(), herd_core::task::ClientError> {
    /// let client = HttpClient::new(ClientOptions::default());
    /// let up = Upstream::tcp("127.0.0.1:8080".parse().unwrap());
    /// let req = http::Request::get("/big").body(Bytes::new()).unwrap();
    /// let mut resp = client.request_stream(&up, req).await?;
    /// let mut total = 0;
    /// while let Some(piece) = resp.body_mut().next_chunk().await? {
    ///     total += piece.len();
    /// }
    /// # let _ = total;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn request_stream<B: BodySource>(
        &self,
        up: &Upstream,
        req: Request<B>,
    ) -> Result<Response<ClientBody>, ClientError> {
        self.count(|s| s.requests += 1);
        let (parts, mut body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let idempotent = is_idempotent(head.method());
        let is_head = head.method() == Method::HEAD;
        let close_asked = has_token(head.headers(), http::header::CONNECTION, "close");
        let (mut conn, lease, reused) = match self.checkout(up).await {
            Ok(v) => v,
            Err(e) => {
                self.count_error(&e);
                return Err(e);
            }
        };
        if reused {
            self.count(|s| s.reuses += 1);
        }
        let mut r = self
            .exchange_stream(&mut conn, up, &head, &mut body, is_head)
            .await;
        if let Err(e) = &r {
            if reused
                && idempotent
                && !e.response_started
                && !e.body_sent
                && e.kind != ErrorKind::Timeout
            {
                // As in `request`: the pooled connection was closed under us; once more.
                drop(conn);
                conn = self.reconnect(up).await?;
                r = self
                    .exchange_stream(&mut conn, up, &head, &mut body, is_head)
                    .await;
            }
        }
        let (resp, framing, close) = match r {
            Ok(v) => v,
            Err(e) => {
                self.count_error(&e);
                return Err(e);
            }
        };
        let keep = !close && !close_asked;
        let too_big = || {
            let e = ClientError::new(
                ErrorKind::Protocol,
                false,
                true,
                proto("response body over the limit"),
            );
            self.count_error(&e);
            e
        };
        let left = match framing {
            Framing::None => None,
            Framing::Length(n) if n > self.inner.opts.max_body_bytes as u64 => {
                return Err(too_big());
            }
            Framing::Length(n) if conn.rbuf.len() as u64 >= n => {
                // All of it is here already: as cheap as `request`.
                let n = n as usize;
                let b = if n <= COPY_BODY_MAX {
                    let b = Bytes::copy_from_slice(&conn.rbuf[..n]);
                    conn.rbuf.advance(n);
                    b
                } else {
                    conn.rbuf.split_to(n).freeze()
                };
                self.finish_now(up, conn, lease, keep);
                return Ok(resp.map(|()| ClientBody {
                    state: BodyState::Ready(b),
                }));
            }
            Framing::Length(n) => Some((Left::Length(n), Some(n))),
            Framing::Chunked => Some((Left::Chunked(Chunk::Size), None)),
            Framing::UntilClose => Some((Left::UntilClose, None)),
        };
        let Some((left, len)) = left else {
            self.finish_now(up, conn, lease, keep);
            return Ok(resp.map(|()| ClientBody {
                state: BodyState::Done,
            }));
        };
        Ok(resp.map(|()| ClientBody {
            state: BodyState::Reading(Box::new(Reading {
                client: self.clone(),
                up: up.clone(),
                conn,
                lease,
                left,
                keep,
                total: 0,
                len,
            })),
        }))
    }

    /// A response complete with its head: count it and let the connection go on if it may.
    /// (Else the connection closes and the lease, dropped, frees its slot.)
    fn finish_now(&self, up: &Upstream, conn: Conn, lease: Lease, keep: bool) {
        self.count(|s| s.responses += 1);
        if keep && conn.rbuf.is_empty() {
            lease.keep();
            self.inner.give_back(up, conn);
        } else {
            drop(conn);
            drop(lease);
        }
    }

    /// Write the head and the body from `body` (the first piece with the head when it is
    /// ready at once), then read the response head.
    async fn exchange_stream<B: BodySource>(
        &self,
        conn: &mut Conn,
        up: &Upstream,
        head: &Request<()>,
        body: &mut B,
        is_head: bool,
    ) -> Result<(Response<()>, Framing, bool), ClientError> {
        let limit = self.inner.opts.read_timeout;
        let len = body.content_length();
        let chunked = len.is_none();
        conn.wbuf.clear();
        encode_head(up, head, len, &mut conn.wbuf);
        let mut taken = 0u64;
        let mut ended = false;
        let src_err = |taken: u64, e: io::Error| {
            ClientError::new(ErrorKind::Io, false, false, e).with_body_sent(taken > 0)
        };
        let write_err = |taken: u64, e: io::Error| {
            ClientError::new(ErrorKind::Io, false, false, e).with_body_sent(taken > 0)
        };
        let timed_out = |taken: u64| {
            ClientError::new(
                ErrorKind::Timeout,
                false,
                false,
                io::Error::new(io::ErrorKind::TimedOut, "upstream did not take the request"),
            )
            .with_body_sent(taken > 0)
        };
        // What is ready at once goes out with the head.
        while conn.wbuf.len() < STREAM_WRITE {
            match std::future::poll_fn(|cx| Poll::Ready(body.poll_chunk(cx))).await {
                Poll::Ready(Ok(Some(c))) => {
                    taken += c.len() as u64;
                    frame_piece(&mut conn.wbuf, chunked, &c);
                }
                Poll::Ready(Ok(None)) => {
                    ended = true;
                    break;
                }
                Poll::Ready(Err(e)) => return Err(src_err(taken, e)),
                Poll::Pending => break,
            }
        }
        loop {
            if ended {
                if chunked {
                    conn.wbuf.extend_from_slice(b"0\r\n\r\n");
                } else if Some(taken) != len {
                    return Err(src_err(
                        taken,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "request body shorter than its length",
                        ),
                    ));
                }
            }
            if len.is_some_and(|n| taken > n) {
                return Err(src_err(
                    taken,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request body longer than its length",
                    ),
                ));
            }
            if !conn.wbuf.is_empty() {
                match super::timeout(limit, conn.stream.write_all(&conn.wbuf)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(write_err(taken, e)),
                    Err(_) => return Err(timed_out(taken)),
                }
                conn.wbuf.clear();
            }
            if ended {
                break;
            }
            match std::future::poll_fn(|cx| body.poll_chunk(cx)).await {
                Ok(Some(c)) => {
                    taken += c.len() as u64;
                    if chunked {
                        frame_piece(&mut conn.wbuf, true, &c);
                    } else if len.is_some_and(|n| taken > n) {
                        continue; // refused above
                    } else {
                        match super::timeout(limit, conn.stream.write_all(&c)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err(write_err(taken, e)),
                            Err(_) => return Err(timed_out(taken)),
                        }
                    }
                }
                Ok(None) => ended = true,
                Err(e) => return Err(src_err(taken, e)),
            }
        }
        if conn.wbuf.capacity() > WRITE_BUF_KEEP {
            conn.wbuf = Vec::with_capacity(WRITE_BUF);
        }
        let started = Cell::new(false);
        let read = read_head(
            &mut conn.stream,
            &mut conn.rbuf,
            &self.inner.opts,
            is_head,
            &started,
        );
        match super::timeout(limit, read).await {
            Ok(r) => r.map_err(|e| e.with_body_sent(taken > 0)),
            Err(_) => Err(ClientError::new(
                ErrorKind::Timeout,
                false,
                started.get(),
                io::Error::new(io::ErrorKind::TimedOut, "upstream response timed out"),
            )
            .with_body_sent(taken > 0)),
        }
    }
}
