//! Middleware: code that runs around a router's handlers, applied with [`Router::layer`]
//! (every route and the fallback) or [`Router::route_layer`] (the routes added so far, so a
//! group: build it, `route_layer` it, then add the rest).
//!
//! A [`Middleware`] gets the request and a [`Next`] that runs the rest of the chain; it may
//! answer itself (auth, rate limit), change the request, or change the response. Wrapping
//! happens once when the router is built: a layer costs one indirect call per request and
//! no allocation on inline routes. Async routes go through [`Middleware::call_async`]; its
//! default passes the request straight on, so a middleware that must also guard async
//! routes implements it (all of the ones here do, and [`Timeout`] only acts there).
//!
//! Shipped: [`RequestId`], [`Cors`], [`Timeout`], [`BasicAuth`] and [`RateLimitByKey`], plus
//! [`from_fn`] and [`from_fn_async`] for closures.
//!
//! ```
//! use herd_core::http::middleware::{from_fn, RequestId};
//! use herd_core::http::{header, HeaderValue, Router};
//!
//! let router = Router::new()
//!     .get("/", |_| "hi")
//!     .layer(RequestId::new())
//!     .layer(from_fn(|req, next| {
//!         let mut resp = next.run(req);
//!         resp.headers_mut().insert(header::SERVER, HeaderValue::from_static("herd"));
//!         resp
//!     }));
//! # let _ = router;
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::http::header::{self, HeaderName, HeaderValue};
use ::http::{Method, Request, Response, StatusCode};

use super::router::{AsyncHandlerFn, Endpoint, HandlerFn, ResponseFuture};
use super::{Body, IntoResponse, Router};

/// The rest of the chain of an inline or worker-pool route.
pub struct Next<'a>(&'a HandlerFn);

impl Next<'_> {
    /// Runs the inner middleware and the handler.
    #[inline]
    pub fn run(self, req: Request<Body>) -> Response<Body> {
        (self.0)(req)
    }
}

/// The rest of the chain of an async route.
pub struct AsyncNext(Arc<AsyncHandlerFn>);

impl AsyncNext {
    /// Runs the inner middleware and the handler.
    pub fn run(self, req: Request<Body>) -> ResponseFuture {
        (self.0)(req)
    }
}

/// Code around handlers. See the [module documentation](self).
pub trait Middleware: Send + Sync + 'static {
    /// Around an inline or worker-pool route: answer, or call `next.run(req)`.
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body>;

    /// Around an async route. The default passes the request on untouched.
    fn call_async(self: Arc<Self>, req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        next.run(req)
    }
}

/// `endpoint` wrapped in `mw`.
fn wrap(mw: &Arc<dyn Middleware>, ep: &Endpoint) -> Endpoint {
    let mw = mw.clone();
    match ep {
        Endpoint::Inline(f) => {
            let f = f.clone();
            Endpoint::Inline(Arc::new(move |req| mw.call(req, Next(&*f))))
        }
        Endpoint::Blocking(f) => {
            let f = f.clone();
            Endpoint::Blocking(Arc::new(move |req| mw.call(req, Next(&*f))))
        }
        Endpoint::Async(f) => {
            let f = f.clone();
            Endpoint::Async(Arc::new(move |req| {
                mw.clone().call_async(req, AsyncNext(f.clone()))
            }))
        }
        // A streaming route's request body is not a `Body`: layers do not wrap it (yet).
        Endpoint::Stream { .. } => ep.clone(),
    }
}

impl Router {
    /// Wrap every route added so far and the fallback in `mw` (the last layer added runs
    /// first). The router's own 404 and 405 answers do not pass through it, nor do streaming
    /// routes ([`Router::route_stream`]).
    pub fn layer<M: Middleware>(self, mw: M) -> Router {
        let mw: Arc<dyn Middleware> = Arc::new(mw);
        self.map_endpoints(true, |ep| wrap(&mw, ep))
    }

    /// Wrap the routes added so far (not the fallback) in `mw`.
    pub fn route_layer<M: Middleware>(self, mw: M) -> Router {
        let mw: Arc<dyn Middleware> = Arc::new(mw);
        self.map_endpoints(false, |ep| wrap(&mw, ep))
    }
}

/// A middleware made by [`from_fn`].
#[derive(Debug, Clone)]
pub struct FromFn<F>(F);

/// A middleware from a closure `|req, next| -> impl IntoResponse` (inline and worker-pool
/// routes; async routes pass through it untouched: see [`from_fn_async`]).
pub fn from_fn<F, R>(f: F) -> FromFn<F>
where
    F: Fn(Request<Body>, Next<'_>) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    FromFn(f)
}

impl<F, R> Middleware for FromFn<F>
where
    F: Fn(Request<Body>, Next<'_>) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body> {
        (self.0)(req, next).into_response()
    }
}

/// A middleware made by [`from_fn_async`].
#[derive(Debug, Clone)]
pub struct FromFnAsync<F>(F);

/// A middleware for async routes from `|req, next: AsyncNext| async move { .. }`; inline
/// routes pass through it untouched.
pub fn from_fn_async<F, Fut>(f: F) -> FromFnAsync<F>
where
    F: Fn(Request<Body>, AsyncNext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: IntoResponse,
{
    FromFnAsync(f)
}

impl<F, Fut> Middleware for FromFnAsync<F>
where
    F: Fn(Request<Body>, AsyncNext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: IntoResponse,
{
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body> {
        next.run(req)
    }

    fn call_async(self: Arc<Self>, req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        let fut = (self.0)(req, next);
        Box::pin(async move { fut.await.into_response() })
    }
}

// --- request id ----------------------------------------------------------------------------

/// Gives every request an `X-Request-Id` (the client's, if it sent one of at most 64
/// visible characters, else a new one: the process start time and a counter, in hex) and
/// copies it to the response.
#[derive(Debug)]
pub struct RequestId {
    prefix: u64,
    next: AtomicU64,
}

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl RequestId {
    /// A request-id middleware.
    pub fn new() -> RequestId {
        let prefix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() & 0xffff_ffff)
            .unwrap_or(0);
        RequestId {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    fn tag(&self, req: &mut Request<Body>) -> HeaderValue {
        if let Some(v) = req.headers().get(&X_REQUEST_ID) {
            if v.len() <= 64 && !v.is_empty() && v.as_bytes().iter().all(|b| b.is_ascii_graphic()) {
                return v.clone();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let v = HeaderValue::try_from(format!("{:08x}-{n:x}", self.prefix))
            .unwrap_or(HeaderValue::from_static("0"));
        req.headers_mut().insert(X_REQUEST_ID.clone(), v.clone());
        v
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl Middleware for RequestId {
    fn call(&self, mut req: Request<Body>, next: Next<'_>) -> Response<Body> {
        let id = self.tag(&mut req);
        let mut resp = next.run(req);
        resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
        resp
    }

    fn call_async(self: Arc<Self>, mut req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        let id = self.tag(&mut req);
        let fut = next.run(req);
        Box::pin(async move {
            let mut resp = fut.await;
            resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
            resp
        })
    }
}

// --- CORS ----------------------------------------------------------------------------------

/// Cross-origin resource sharing: answers preflight requests (`OPTIONS` with
/// `Access-Control-Request-Method`) with 204 and the allowed methods and headers, and adds
/// `Access-Control-Allow-Origin` to the answers of requests with an allowed `Origin`.
/// Preflights reach it only on paths with an `OPTIONS` (or `any`) route: the router's 405
/// comes before the layers.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Option<Vec<HeaderValue>>,
    methods: HeaderValue,
    headers: HeaderValue,
    max_age: HeaderValue,
}

impl Cors {
    /// Any origin (`*`), the common methods, any requested header.
    pub fn permissive() -> Cors {
        Cors {
            origins: None,
            methods: HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
            headers: HeaderValue::from_static("*"),
            max_age: HeaderValue::from_static("600"),
        }
    }

    /// Only these origins (e.g. `https://app.example`), echoed back when they match.
    pub fn origins<'a>(list: impl IntoIterator<Item = &'a str>) -> Cors {
        Cors {
            origins: Some(
                list.into_iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect(),
            ),
            ..Cors::permissive()
        }
    }

    /// The `Access-Control-Allow-Origin` for `req`, if its origin is allowed.
    fn allow(&self, req: &Request<Body>) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN)?;
        match &self.origins {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => list.iter().find(|o| *o == origin).cloned(),
        }
    }

    /// The preflight answer, or `None` for a request to pass on.
    fn preflight(&self, req: &Request<Body>, allow: &HeaderValue) -> Option<Response<Body>> {
        if req.method() != Method::OPTIONS
            || !req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        Some(r)
    }
}

fn add_origin(resp: &mut Response<Body>, allow: Option<HeaderValue>) {
    if let Some(a) = allow {
        resp.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

impl Middleware for Cors {
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body> {
        let allow = self.allow(&req);
        if let Some(r) = allow.as_ref().and_then(|a| self.preflight(&req, a)) {
            return r;
        }
        let mut resp = next.run(req);
        add_origin(&mut resp, allow);
        resp
    }

    fn call_async(self: Arc<Self>, req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        let allow = self.allow(&req);
        if let Some(r) = allow.as_ref().and_then(|a| self.preflight(&req, a)) {
            return Box::pin(async move { r });
        }
        let fut = next.run(req);
        Box::pin(async move {
            let mut resp = fut.await;
            add_origin(&mut resp, allow);
            resp
        })
    }
}

// --- timeout -------------------------------------------------------------------------------

/// Answers 504 when an async route takes longer than the limit (on the loop's clock; the
/// handler's future is dropped). Inline routes cannot be interrupted and pass through.
#[derive(Debug, Clone, Copy)]
pub struct Timeout(pub Duration);

impl Middleware for Timeout {
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body> {
        next.run(req)
    }

    fn call_async(self: Arc<Self>, req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        let fut = next.run(req);
        let limit = self.0;
        Box::pin(async move {
            match crate::task::timeout(limit, fut).await {
                Ok(resp) => resp,
                Err(_) => super::text_response(StatusCode::GATEWAY_TIMEOUT),
            }
        })
    }
}

// --- basic auth ----------------------------------------------------------------------------

/// HTTP Basic authentication: requests without valid credentials get 401 with
/// `WWW-Authenticate: Basic realm="..."`. `check(user, password)` decides.
pub struct BasicAuth<F> {
    challenge: HeaderValue,
    check: F,
}

impl<F: Fn(&str, &str) -> bool + Send + Sync + 'static> BasicAuth<F> {
    /// Basic auth for `realm` (quotes and backslashes are dropped from it).
    pub fn new(realm: &str, check: F) -> BasicAuth<F> {
        let realm: String = realm.chars().filter(|c| !matches!(c, '"' | '\\')).collect();
        BasicAuth {
            challenge: HeaderValue::try_from(format!("Basic realm=\"{realm}\""))
                .unwrap_or(HeaderValue::from_static("Basic")),
            check,
        }
    }

    fn denied(&self, req: &Request<Body>) -> Option<Response<Body>> {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, b64) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(())?;
                let creds = String::from_utf8(base64_decode(b64.trim())?).ok()?;
                let (user, pass) = creds.split_once(':')?;
                Some((self.check)(user, pass))
            })
            .unwrap_or(false);
        if ok {
            return None;
        }
        let mut r = super::text_response(StatusCode::UNAUTHORIZED);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        Some(r)
    }
}

impl<F: Fn(&str, &str) -> bool + Send + Sync + 'static> Middleware for BasicAuth<F> {
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body> {
        match self.denied(&req) {
            Some(r) => r,
            None => next.run(req),
        }
    }

    fn call_async(self: Arc<Self>, req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        match self.denied(&req) {
            Some(r) => Box::pin(async move { r }),
            None => next.run(req),
        }
    }
}

/// Standard base64 (padding optional); `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s.trim_end_matches('=').as_bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// --- rate limit by key ---------------------------------------------------------------------

/// A token bucket per key (an API key header, a user): `rate` requests per second on
/// average, bursts of `burst`; past it 429 with `Retry-After: 1`. Requests for which `key`
/// gives `None` pass. An example: the table grows with the keys seen (no eviction), so keys
/// must come from a bounded set; for client addresses use the server's `limit_req`.
pub struct RateLimitByKey<K> {
    rate: f64,
    burst: f64,
    key: K,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl<K: Fn(&Request<Body>) -> Option<String> + Send + Sync + 'static> RateLimitByKey<K> {
    /// `rate` per second, bursts of `burst`, keyed by `key`.
    pub fn new(rate: f64, burst: u32, key: K) -> RateLimitByKey<K> {
        RateLimitByKey {
            rate,
            burst: f64::from(burst.max(1)),
            key,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refused(&self, req: &Request<Body>) -> Option<Response<Body>> {
        let k = (self.key)(req)?;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = b.entry(k).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return None;
        }
        let mut r = super::text_response(StatusCode::TOO_MANY_REQUESTS);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Some(r)
    }
}

impl<K: Fn(&Request<Body>) -> Option<String> + Send + Sync + 'static> Middleware
    for RateLimitByKey<K>
{
    fn call(&self, req: Request<Body>, next: Next<'_>) -> Response<Body> {
        match self.refused(&req) {
            Some(r) => r,
            None => next.run(req),
        }
    }

    fn call_async(self: Arc<Self>, req: Request<Body>, next: AsyncNext) -> ResponseFuture {
        match self.refused(&req) {
            Some(r) => Box::pin(async move { r }),
            None => next.run(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Route;

    fn call(r: &Router, req: Request<Body>) -> Response<Body> {
        let Route::Found { endpoint, .. } = r.lookup(req.method(), req.uri().path()) else {
            panic!("no route")
        };
        let Endpoint::Inline(f) = endpoint else {
            panic!("not inline")
        };
        f(req)
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::builder().uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn layers_wrap_in_order_and_route_layer_skips_later_routes() {
        let tag = |t: &'static str| {
            from_fn(move |req, next: Next<'_>| {
                let mut r = next.run(req);
                r.headers_mut().append("x-t", HeaderValue::from_static(t));
                r
            })
        };
        let r = Router::new()
            .get("/a", |_| "a")
            .route_layer(tag("inner"))
            .get("/b", |_| "b")
            .layer(tag("outer"));
        let resp = call(&r, get("/a", &[]));
        let t: Vec<_> = resp.headers().get_all("x-t").iter().collect();
        assert_eq!(t, ["inner", "outer"]);
        assert_eq!(
            call(&r, get("/b", &[]))
                .headers()
                .get_all("x-t")
                .iter()
                .count(),
            1
        );
    }

    #[test]
    fn request_id_cors_auth_rate() {
        let r = Router::new()
            .get("/", |_| "ok")
            .any("/api", |_| "api")
            .layer(RequestId::new())
            .route_layer(BasicAuth::new("herd", |u, p| u == "u" && p == "p"))
            .layer(Cors::origins(["https://a.example"]))
            .layer(RateLimitByKey::new(0.001, 2, |req: &Request<Body>| {
                req.headers()
                    .get("x-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            }));
        // dTpw = "u:p"
        let auth = ("authorization", "Basic dTpw");
        let resp = call(&r, get("/", &[("x-request-id", "abc"), auth]));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-request-id"], "abc");
        let resp = call(&r, get("/", &[auth]));
        assert!(resp.headers()["x-request-id"].len() > 8);
        let resp = call(&r, get("/", &[("authorization", "Basic dTp4")]));
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"herd\"");
        assert_eq!(call(&r, get("/", &[])).status(), 401);
        let o = ("origin", "https://a.example");
        let resp = call(&r, get("/", &[o, auth]));
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            "https://a.example"
        );
        let resp = call(&r, get("/", &[("origin", "https://b.example"), auth]));
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
        let mut pre = get("/api", &[o, ("access-control-request-method", "POST")]);
        *pre.method_mut() = Method::OPTIONS;
        let resp = call(&r, pre);
        assert_eq!(resp.status(), 204);
        assert!(resp.headers().contains_key("access-control-allow-methods"));
        let k = ("x-key", "k1");
        assert_eq!(call(&r, get("/", &[auth, k])).status(), 200);
        assert_eq!(call(&r, get("/", &[auth, k])).status(), 200);
        assert_eq!(call(&r, get("/", &[auth, k])).status(), 429);
        assert_eq!(call(&r, get("/", &[auth, ("x-key", "k2")])).status(), 200);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
    }
}
