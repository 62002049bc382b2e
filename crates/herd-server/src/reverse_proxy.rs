//! The reverse proxy: a listener's `proxy` locations pass requests to an `[[upstream]]`'s
//! backends, as nginx's `proxy_pass` does.
//!
//! Each location is a streaming route (`path/*`, every method, bodies up to the location's
//! `max_body`) whose task forwards the request with the loop's [`HttpClient`] (its
//! keep-alive pool holds `keepalive` idle connections per backend per loop) as soon as its
//! head is in: method, path and query, the headers minus the hop-by-hop ones, and
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`; the body
//! follows as it arrives ([`HttpClient::request_stream`]). The backend's response head is
//! passed on when it arrives, and its body through a [`Body::channel`] as it is read (with
//! the backend's `Content-Length` when it sent one), so a slow client holds back the reading
//! of the backend and neither body is ever held whole. The backend is picked by the
//! upstream's balance policy among those not marked down; a backend that fails `max_fails`
//! times within `fail_timeout` is skipped for `fail_timeout` (the state is per event loop).
//! A failed connect, or for idempotent methods a backend that closed before any response
//! byte, moves to the next backend as long as no request body byte was sent; a response that
//! does not arrive in `read_timeout` is a 504; nothing left to try is a 502. With
//! `max_conns`, the client keeps at most that many connections per backend and loop, and a
//! request that finds them all busy waits in the backend's FIFO queue (a backend with a free
//! connection is preferred): a full queue is a 503, a wait past `queue_timeout` a 504, and
//! neither counts as a failure of the backend. Every request is counted per upstream and outcome ([`UpstreamCounters`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use herd_core::http::{
    header, Body, BodySender, BodyStream, ClientAddr, Endpoint, HeaderMap, HeaderValue, Request,
    Response, Router, StatusCode,
};
use herd_core::task::{
    self, BodySource, ClientBody, ClientOptions, ErrorKind, HttpClient, Upstream,
};
use herd_core::Bytes;

use crate::config::{BalancePolicy, ProxyLocation, UpstreamConfig};

/// What became of a proxied request (the `outcome` label of
/// `herd_upstream_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A backend answered (whatever its status).
    Ok,
    /// Every backend tried failed: 502.
    BadGateway,
    /// The backend did not answer in `read_timeout`: 504.
    Timeout,
    /// Every backend is marked down: 502 without trying.
    NoLive,
    /// The backend's connections were all busy and its queue full: 503.
    QueueFull,
    /// No backend connection came free within `queue_timeout`: 504.
    QueueTimeout,
}

impl Outcome {
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::BadGateway,
        Outcome::Timeout,
        Outcome::NoLive,
        Outcome::QueueFull,
        Outcome::QueueTimeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadGateway => "bad_gateway",
            Outcome::Timeout => "timeout",
            Outcome::NoLive => "no_live",
            Outcome::QueueFull => "queue_full",
            Outcome::QueueTimeout => "queue_timeout",
        }
    }
}

/// One upstream's counters in this worker (all loops).
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    /// Requests by [`Outcome`] (in [`Outcome::ALL`] order).
    pub outcomes: [AtomicU64; 6],
    /// Attempts that failed on one backend and went on to the next.
    pub next_backend: AtomicU64,
}

/// The upstreams a worker's proxies use, with their counters, by name (for the metrics).
pub type UpstreamRegistry = Arc<Mutex<Vec<(String, Arc<UpstreamCounters>)>>>;

/// The process's registry of upstream counters.
pub fn registry() -> &'static UpstreamRegistry {
    static R: std::sync::OnceLock<UpstreamRegistry> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

/// This process's upstream counters, for its status snapshot.
pub fn statuses() -> Vec<crate::status::UpstreamStatus> {
    let r = registry().lock().unwrap_or_else(|e| e.into_inner());
    r.iter()
        .map(|(name, c)| crate::status::UpstreamStatus {
            name: name.clone(),
            outcomes: c
                .outcomes
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect(),
            next_backend: c.next_backend.load(Ordering::Relaxed),
        })
        .collect()
}

/// An upstream as the proxy routes see it (shared by every loop).
struct Shared {
    /// Process-unique id: the key of the per-loop state.
    id: usize,
    backends: Vec<SocketAddr>,
    balance: BalancePolicy,
    opts: ClientOptions,
    max_fails: u32,
    fail_timeout_ms: u64,
    counters: Arc<UpstreamCounters>,
    /// The listener has TLS (for `X-Forwarded-Proto`).
    https: bool,
    /// HTTPS to the backends: the name their certificate is verified for.
    tls_name: Option<String>,
    /// `max_conns` is set: prefer backends with a free connection.
    capped: bool,
}

/// One backend's state in one loop.
#[derive(Default, Clone, Copy)]
struct Backend {
    in_flight: u32,
    fails: u32,
    /// Loop time (ms) of the first failure counted in `fails`.
    first_fail_ms: u64,
    /// Loop time until which it is down.
    down_until_ms: u64,
}

/// An upstream's state in one loop: its client (and pool), the round-robin turn, backends.
struct Local {
    client: HttpClient,
    /// The client's key of each backend (made once per loop).
    ups: Vec<Upstream>,
    next: usize,
    backends: Vec<Backend>,
}

thread_local! {
    static LOCAL: RefCell<HashMap<usize, Rc<RefCell<Local>>>> = RefCell::new(HashMap::new());
}

fn local(sh: &Shared) -> Rc<RefCell<Local>> {
    LOCAL.with(|m| {
        m.borrow_mut()
            .entry(sh.id)
            .or_insert_with(|| {
                let ups = sh
                    .backends
                    .iter()
                    .map(|&a| match &sh.tls_name {
                        Some(name) => Upstream::tls(a, name),
                        None => Upstream::tcp(a),
                    })
                    .collect();
                Rc::new(RefCell::new(Local {
                    client: HttpClient::new(sh.opts.clone()),
                    ups,
                    next: 0,
                    backends: vec![Backend::default(); sh.backends.len()],
                }))
            })
            .clone()
    })
}

/// The loop's time in ms (as the client's pool sees it).
fn now_ms() -> u64 {
    task::loop_now_ms()
}

/// Add the listener's `proxy` locations to `router`. `upstreams` are the configuration's;
/// `max_body` is the listener's request body limit, for locations without their own.
pub fn routes(
    mut router: Router,
    locations: &[ProxyLocation],
    upstreams: &[UpstreamConfig],
    https: bool,
    max_body: u64,
) -> Router {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    for loc in locations {
        let Some(u) = upstreams.iter().find(|u| u.name == loc.upstream) else {
            continue;
        };
        let counters = {
            let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
            match r.iter().find(|(n, _)| *n == u.name) {
                Some((_, c)) => c.clone(),
                None => {
                    let c = Arc::new(UpstreamCounters::default());
                    r.push((u.name.clone(), c.clone()));
                    c
                }
            }
        };
        let sh = Arc::new(Shared {
            id: NEXT.fetch_add(1, Ordering::Relaxed) as usize,
            backends: u.servers.iter().filter_map(|s| s.parse().ok()).collect(),
            balance: u.balance,
            opts: ClientOptions {
                connect_timeout: u.connect_timeout.0,
                read_timeout: u.read_timeout.0,
                max_idle_per_upstream: u.keepalive,
                idle_timeout: u.keepalive_timeout.0,
                max_body_bytes: u.max_body,
                max_conns_per_upstream: u.max_conns,
                queue_max: u.queue,
                queue_timeout: u.queue_timeout.0,
                // (Validated with the config: an unreadable CA file is refused there.)
                tls: u.tls.as_ref().and_then(|t| t.connector().ok()),
                ..ClientOptions::default()
            },
            max_fails: u.max_fails,
            fail_timeout_ms: u.fail_timeout.0.as_millis() as u64,
            counters,
            https,
            tls_name: u.tls.as_ref().map(|t| t.name.clone()),
            capped: u.max_conns > 0,
        });
        let prefix = loc.path.trim_end_matches('/');
        let pattern = format!("{prefix}/*");
        let handler = move |req: Request<BodyStream>| {
            let sh = sh.clone();
            Box::pin(forward(sh, req)) as herd_core::http::ResponseFuture
        };
        router = router.add(
            None,
            &pattern,
            Endpoint::Stream {
                handler: Arc::new(handler),
                max_body: loc.max_body.unwrap_or(max_body),
            },
        );
    }
    router
}

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded.
const HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Chunks of a response body that may wait between the backend and the client (each up to
/// a read of the backend, about 64 KiB).
const RESPONSE_CHUNKS: usize = 4;

/// The client's request body on its way to a backend: its length (`None`: chunked), and
/// whether any of it was taken or it failed (the client went away, or over `max_body`).
struct Upload {
    body: BodyStream,
    len: Option<u64>,
    taken: bool,
    failed: bool,
}

impl BodySource for Upload {
    fn content_length(&self) -> Option<u64> {
        self.len
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<Bytes>>> {
        match self.body.poll_chunk(cx) {
            Poll::Ready(Ok(Some(c))) => {
                self.taken = true;
                Poll::Ready(Ok(Some(c)))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(e)) => {
                self.failed = true;
                Poll::Ready(Err(std::io::Error::other(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Pass a backend's response body on to the client as it is read. A client that goes away
/// stops it, and dropping `body` then closes the backend connection; a backend that breaks
/// off mid-body (or stays silent for `read_timeout`) closes the client's connection without
/// a proper end, so the client sees a truncated body.
async fn relay(
    sh: Arc<Shared>,
    l: Rc<RefCell<Local>>,
    i: usize,
    guard: InFlight,
    mut body: ClientBody,
    tx: BodySender,
) {
    loop {
        let next = {
            let mut read = pin!(body.next_chunk());
            std::future::poll_fn(|cx| {
                if tx.poll_closed(cx).is_ready() {
                    return Poll::Ready(None);
                }
                read.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match next {
            // The client left.
            None => break,
            Some(Ok(Some(c))) => {
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            Some(Ok(None)) => break,
            Some(Err(e)) => {
                failed(&sh, &mut l.borrow_mut(), i, now_ms());
                tracing::warn!(backend = %sh.backends[i], error = %e, "upstream response broke off mid-body");
                tx.abort();
                drop(guard);
                return;
            }
        }
    }
    drop(guard);
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for n in HOP {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from_static(msg.as_bytes()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The order to try backends in for one request (down ones left out).
fn plan(sh: &Shared, l: &mut Local, now: u64) -> Vec<usize> {
    let n = sh.backends.len();
    let live = |b: &Backend| b.down_until_ms <= now;
    let mut order: Vec<usize> = match sh.balance {
        BalancePolicy::RoundRobin => {
            let start = l.next % n.max(1);
            l.next = l.next.wrapping_add(1);
            (0..n).map(|i| (start + i) % n).collect()
        }
        BalancePolicy::LeastConn => {
            let start = l.next % n.max(1);
            l.next = l.next.wrapping_add(1);
            let mut v: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
            v.sort_by_key(|&i| l.backends[i].in_flight);
            v
        }
    };
    order.retain(|&i| live(&l.backends[i]));
    if sh.capped {
        // Backends with a free (or idle) connection first, in the policy's order; a request
        // waits in a queue only when every live backend is busy.
        order.sort_by_key(|&i| l.client.at_capacity(&l.ups[i]));
    }
    order
}

/// A request in flight to backend `.1` (for `least_conn`); counted down on drop, so a task
/// cancelled because its client left does not leave the count behind.
struct InFlight(Rc<RefCell<Local>>, usize);

impl InFlight {
    fn enter(l: &Rc<RefCell<Local>>, i: usize) -> InFlight {
        l.borrow_mut().backends[i].in_flight += 1;
        InFlight(l.clone(), i)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut l = self.0.borrow_mut();
        let b = &mut l.backends[self.1];
        b.in_flight = b.in_flight.saturating_sub(1);
    }
}

fn failed(sh: &Shared, l: &mut Local, i: usize, now: u64) {
    if sh.max_fails == 0 {
        return;
    }
    let b = &mut l.backends[i];
    if b.fails == 0 || now.saturating_sub(b.first_fail_ms) > sh.fail_timeout_ms {
        b.fails = 0;
        b.first_fail_ms = now;
    }
    b.fails += 1;
    if b.fails >= sh.max_fails {
        b.down_until_ms = now + sh.fail_timeout_ms;
        b.fails = 0;
        tracing::warn!(backend = %sh.backends[i], "upstream backend marked down");
    }
}

fn count(sh: &Shared, o: Outcome) {
    let i = Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0);
    sh.counters.outcomes[i].fetch_add(1, Ordering::Relaxed);
}

/// Forward one request (see the module docs).
async fn forward(sh: Arc<Shared>, req: Request<BodyStream>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let peer = parts.extensions.get::<ClientAddr>().map(|p| p.0);
    let mut headers = parts.headers;
    // Chunked in, chunked on; no framing at all is no body.
    let len = match body.content_length() {
        Some(n) => Some(n),
        None if headers.contains_key(header::TRANSFER_ENCODING) => None,
        None => Some(0),
    };
    let mut upload = Upload {
        body,
        len,
        taken: false,
        failed: false,
    };
    strip_hop_by_hop(&mut headers);
    // herd answers `100 Continue` itself, when the body is first read.
    headers.remove(header::EXPECT);
    if let Some(p) = peer {
        let ip = p.ip().to_string();
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.clone(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let node = if p.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip
        };
        let proto = if sh.https { "https" } else { "http" };
        let fwd = if host.is_empty() {
            format!("for={node};proto={proto}")
        } else {
            format!("for={node};host=\"{host}\";proto={proto}")
        };
        if let Ok(v) = HeaderValue::from_str(&fwd) {
            headers.append(header::FORWARDED, v);
        }
        if !host.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&host) {
                headers.insert("x-forwarded-host", v);
            }
        }
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if sh.https { "https" } else { "http" }),
    );
    let idempotent = task::is_idempotent(&parts.method);
    // The path and query as they came (an origin-form request URI is just that; an
    // absolute-form one is cut down to it).
    let uri = match parts.uri.scheme() {
        None => parts.uri.clone(),
        Some(_) => parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .unwrap_or_default(),
    };
    let mut headers = Some(headers);
    let l = local(&sh);
    let order = plan(&sh, &mut l.borrow_mut(), now_ms());
    if order.is_empty() {
        count(&sh, Outcome::NoLive);
        return text(StatusCode::BAD_GATEWAY, "no live upstream\n");
    }
    let client = l.borrow().client.clone();
    for (k, &i) in order.iter().enumerate() {
        let mut out = Request::new(&mut upload);
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri.clone();
        // The last attempt takes the headers; earlier ones copy them.
        *out.headers_mut() = if k + 1 == order.len() {
            headers.take().unwrap_or_default()
        } else {
            headers.clone().unwrap_or_default()
        };
        let up = l.borrow().ups[i].clone();
        let guard = InFlight::enter(&l, i);
        let r = client.request_stream(&up, out).await;
        match r {
            Ok(resp) => {
                count(&sh, Outcome::Ok);
                let (mut rp, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rp.headers);
                rp.headers.remove(header::CONTENT_LENGTH);
                let body = match rbody.try_into_bytes() {
                    Ok(all) => {
                        drop(guard);
                        Body::from(all)
                    }
                    Err(rest) => {
                        let (tx, body) = match rest.content_length() {
                            Some(n) => Body::channel_sized(RESPONSE_CHUNKS, n),
                            None => Body::channel(RESPONSE_CHUNKS),
                        };
                        task::spawn_local(relay(sh.clone(), l.clone(), i, guard, rest, tx));
                        body
                    }
                };
                return Response::from_parts(rp, body);
            }
            Err(e) if e.kind() == ErrorKind::QueueFull => {
                // The backend is busy, not failing: no mark against it.
                count(&sh, Outcome::QueueFull);
                tracing::warn!(backend = %sh.backends[i], "upstream queue full");
                return text(StatusCode::SERVICE_UNAVAILABLE, "upstream busy\n");
            }
            Err(e) if e.kind() == ErrorKind::QueueTimeout => {
                count(&sh, Outcome::QueueTimeout);
                tracing::warn!(backend = %sh.backends[i], "upstream queue timeout");
                return text(StatusCode::GATEWAY_TIMEOUT, "upstream busy, timed out\n");
            }
            Err(e) if upload.failed => {
                // The client's body broke off (it left, or went over `max_body`, and was
                // answered already): not the backend's fault.
                drop(guard);
                count(&sh, Outcome::BadGateway);
                tracing::debug!(backend = %sh.backends[i], error = %e, "client body failed mid-upload");
                return text(StatusCode::BAD_REQUEST, "request body incomplete\n");
            }
            Err(e) => {
                drop(guard);
                failed(&sh, &mut l.borrow_mut(), i, now_ms());
                tracing::warn!(backend = %sh.backends[i], error = %e, "upstream request failed");
                if e.kind() == ErrorKind::Timeout && !e.is_connect() {
                    count(&sh, Outcome::Timeout);
                    return text(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n");
                }
                // Only while none of the body has gone: it cannot be sent twice.
                let again = !upload.taken
                    && !e.body_sent()
                    && (e.is_connect() || (idempotent && !e.response_started()));
                if again && k + 1 < order.len() {
                    sh.counters.next_backend.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                count(&sh, Outcome::BadGateway);
                return text(StatusCode::BAD_GATEWAY, "bad gateway\n");
            }
        }
    }
    count(&sh, Outcome::BadGateway);
    text(StatusCode::BAD_GATEWAY, "bad gateway\n")
}
