//! Routing by method and path: exact paths, `:name` parameters, `/*` prefixes, 404 and 405.
//!
//! A [`Router`] is built once, before the server starts, and shared read-only by every loop.
//! Lookup order: an exact path first (one hash lookup, no allocation: the hot path), then
//! parameter patterns in the order they were added, then prefix patterns (`/static/*`),
//! longest first. A path that matches routes but none for the method gets 405 with an `Allow`
//! header listing the methods that would match; a path that matches nothing gets 404. `HEAD`
//! falls back to the `GET` route (the server drops the body). Handlers run inline on the loop
//! ([`Router::route`]) or on the worker pool ([`Router::route_blocking`]). This module only
//! matches; it runs no handler and writes nothing. Its caller is the HTTP handler.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use ::http::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;

use super::{Body, IntoResponse};

/// A request handler: takes the request, returns the response.
pub type HandlerFn = dyn Fn(Request<Body>) -> Response<Body> + Send + Sync + 'static;

/// The future an async handler returns: polled on the connection's loop, so it need not be
/// `Send` (it may hold `Rc`s, cosockets, the loop's state).
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + 'static>>;

/// An async request handler: takes the request, returns the future of its response.
pub type AsyncHandlerFn = dyn Fn(Request<Body>) -> ResponseFuture + Send + Sync + 'static;

/// A streaming request handler: takes the request with its body still arriving, returns the
/// future of its response (see [`Router::route_stream`]).
pub type StreamHandlerFn =
    dyn Fn(Request<super::BodyStream>) -> ResponseFuture + Send + Sync + 'static;

/// Box `f` as a [`HandlerFn`], its return value made a response.
fn handler<F, R>(f: F) -> Arc<HandlerFn>
where
    F: Fn(Request<Body>) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    Arc::new(move |req| f(req).into_response())
}

/// Makes the router's own error answers (404, 405) in the application's format.
#[derive(Clone)]
pub struct ErrorPage(Arc<dyn Fn(StatusCode) -> Response<Body> + Send + Sync + 'static>);

impl ErrorPage {
    /// The answer for `status`.
    pub fn render(&self, status: StatusCode) -> Response<Body> {
        (self.0)(status)
    }
}

impl fmt::Debug for ErrorPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorPage")
    }
}

/// How a matched handler runs.
#[derive(Clone)]
pub enum Endpoint {
    /// On the event loop: must not block.
    Inline(Arc<HandlerFn>),
    /// On the worker pool; the response comes back to the loop.
    Blocking(Arc<HandlerFn>),
    /// As a task on the connection's loop (see [`crate::task`]): it may await cosockets,
    /// sleeps and other tasks; the response is written when it is ready, in request order.
    Async(Arc<AsyncHandlerFn>),
    /// As a task started as soon as the request head is in, reading the body as it arrives
    /// (see [`Router::route_stream`]); bodies over `max_body` bytes are refused with 413.
    Stream {
        /// The handler.
        handler: Arc<StreamHandlerFn>,
        /// The route's body limit (instead of [`Limits::max_body`](super::Limits)).
        max_body: u64,
    },
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Inline(_) => "Endpoint::Inline",
            Endpoint::Blocking(_) => "Endpoint::Blocking",
            Endpoint::Async(_) => "Endpoint::Async",
            Endpoint::Stream { .. } => "Endpoint::Stream",
        })
    }
}

/// Path parameters of a matched pattern route, in the request's extensions.
///
/// `:name` segments are percent-decoded (a malformed escape stays as written, and the whole
/// segment does if the result is not UTF-8); the rest of a `/*` route is available as `"*"`,
/// as written (not decoded), without a leading `/`.
///
/// ```
/// use herd_core::http::{Body, Params, Request, Response, Router};
///
/// let router = Router::new().get("/users/:id", |req: Request<Body>| {
///     let id = req.extensions().get::<Params>().and_then(|p| p.get("id")).unwrap_or("");
///     Response::new(Body::from(format!("user {id}")))
/// });
/// # let _ = router;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Arc<str>, String)>,
}

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All parameters, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (&**n, v.as_str()))
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// One segment of a pattern.
#[derive(Debug, Clone)]
enum Seg {
    Lit(Box<str>),
    Param(Arc<str>),
}

/// A pattern route: segments, and whether it ends in `/*`.
#[derive(Debug)]
struct Pattern {
    segs: Vec<Seg>,
    prefix: bool,
    methods: Methods,
}

/// The handlers of one path, by method.
#[derive(Debug, Default)]
struct Methods {
    list: Vec<(Method, Endpoint)>,
    any: Option<Endpoint>,
}

impl Methods {
    fn set(&mut self, method: Option<Method>, ep: Endpoint) {
        match method {
            None => self.any = Some(ep),
            Some(m) => match self.list.iter_mut().find(|(k, _)| *k == m) {
                Some(slot) => slot.1 = ep,
                None => self.list.push((m, ep)),
            },
        }
    }

    fn find(&self, method: &Method) -> Option<&Endpoint> {
        let exact = |m: &Method| self.list.iter().find(|(k, _)| k == m).map(|(_, e)| e);
        exact(method)
            .or_else(|| {
                (*method == Method::HEAD)
                    .then(|| exact(&Method::GET))
                    .flatten()
            })
            .or(self.any.as_ref())
    }

    /// Adds this path's methods to an `Allow` list (GET implies HEAD).
    fn allow(&self, out: &mut Vec<Method>) {
        for (m, _) in &self.list {
            let implied = (*m == Method::GET).then_some(Method::HEAD);
            for m in std::iter::once(m.clone()).chain(implied) {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
}

/// What [`Router::lookup`] found.
#[derive(Debug)]
pub enum Route<'r> {
    /// A handler; `params` is empty for exact routes.
    Found {
        /// The handler to run.
        endpoint: &'r Endpoint,
        /// Path parameters (none for an exact route).
        params: Params,
    },
    /// No route matches the path: 404.
    NotFound,
    /// Routes match the path but not the method: 405 with this `Allow` value.
    MethodNotAllowed(String),
}

/// Routes requests by method and path.
///
/// ```
/// use herd_core::http::{Body, Method, Response, Route, Router};
///
/// let router = Router::new()
///     .get("/hello", |_| Response::new(Body::from("hi")))
///     .post("/users/:id", |_| Response::new(Body::empty()))
///     .get("/static/*", |_| Response::new(Body::empty()));
/// assert!(matches!(router.lookup(&Method::GET, "/hello"), Route::Found { .. }));
/// assert!(matches!(router.lookup(&Method::HEAD, "/hello"), Route::Found { .. }));
/// match router.lookup(&Method::GET, "/users/7") {
///     Route::MethodNotAllowed(allow) => assert_eq!(allow, "POST"),
///     other => panic!("{other:?}"),
/// }
/// match router.lookup(&Method::GET, "/static/css/a.css") {
///     Route::Found { params, .. } => assert_eq!(params.get("*"), Some("css/a.css")),
///     other => panic!("{other:?}"),
/// }
/// assert!(matches!(router.lookup(&Method::GET, "/nope"), Route::NotFound));
/// ```
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, Methods, BuildHasherDefault<Fnv>>,
    patterns: Vec<Pattern>,
    has_blocking: bool,
    /// The largest `max_body` of a streaming route (0: none).
    stream_max_body: u64,
    /// Runs for paths no route matches (instead of 404).
    fallback: Option<Endpoint>,
    /// Makes the router's 404 and 405 answers.
    errors: Option<ErrorPage>,
    /// State, rejection format and body limit of the extractor routes (`extract`).
    #[cfg(feature = "json")]
    pub(super) shared: Arc<super::extract::Shared>,
}

/// A route path's segments, and whether it ends in `/*`.
fn parse_path(path: &str) -> (Vec<Seg>, bool) {
    let (body, prefix) = match path.strip_suffix("/*") {
        Some(p) => (p, true),
        None => (path, false),
    };
    let segs = body
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix(':') {
            Some(name) => Seg::Param(name.into()),
            None => Seg::Lit(s.into()),
        })
        .collect();
    (segs, prefix)
}

/// Whether `p` is the pattern of `segs` (parameter names aside).
fn same_shape(p: &Pattern, segs: &[Seg], prefix: bool) -> bool {
    p.prefix == prefix
        && p.segs.len() == segs.len()
        && p.segs.iter().zip(segs).all(|(a, b)| match (a, b) {
            (Seg::Lit(x), Seg::Lit(y)) => x == y,
            (Seg::Param(_), Seg::Param(_)) => true,
            _ => false,
        })
}

/// FNV-1a for the exact-path table: a few times cheaper than SipHash on short paths. Flooding
/// is no concern here: the table holds only the application's own routes, fixed before
/// serving, so a request path can cost at most one probe sequence over those.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325) // the FNV-1a 64-bit offset basis
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Router {
    /// An empty router (every request gets 404).
    pub fn new() -> Router {
        Router::default()
    }

    /// Add an inline handler for `method` and `path`; it runs on the event loop and must not
    /// block. `path` is exact (`/a/b`), has parameters (`/users/:id`), or ends in `/*` (the
    /// prefix and everything below it). A later route for the same method and path replaces
    /// an earlier one.
    pub fn route<F, R>(self, method: Method, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(Some(method), path, Endpoint::Inline(handler(f)))
    }

    /// Add a handler that runs on the worker pool (it may block); its response is written by
    /// the loop, in request order.
    pub fn route_blocking<F, R>(self, method: Method, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(Some(method), path, Endpoint::Blocking(handler(f)))
    }

    /// Add an async handler for `method` and `path`: each request runs as a task on its
    /// connection's loop, so the handler can await outbound calls without blocking the loop
    /// (a cosocket, a [`TlsConnector`](crate::task::TlsConnector), a sleep). Responses still
    /// leave in request order: a pipelined request behind this one waits for it. A connection
    /// that closes drops (cancels) its task; a handler that panics is answered with 500.
    ///
    /// ```
    /// use herd_core::http::{Body, Request, Response, Router};
    /// use std::time::Duration;
    ///
    /// let router = Router::new().get_async("/slow", |_req: Request<Body>| async {
    ///     herd_core::task::sleep(Duration::from_millis(5)).await;
    ///     Response::new(Body::from("done"))
    /// });
    /// # let _ = router;
    /// ```
    pub fn route_async<F, Fut>(self, method: Method, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoResponse,
    {
        let ep = Endpoint::Async(Arc::new(move |req| {
            let fut = f(req);
            Box::pin(async move { fut.await.into_response() }) as ResponseFuture
        }));
        self.add(Some(method), path, ep)
    }

    /// `route_async(Method::GET, ..)`: also answers HEAD unless a HEAD route exists.
    pub fn get_async<F, Fut>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoResponse,
    {
        self.route_async(Method::GET, path, f)
    }

    /// `route_async(Method::POST, ..)`.
    pub fn post_async<F, Fut>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoResponse,
    {
        self.route_async(Method::POST, path, f)
    }

    /// Add a streaming handler for `method` and `path`: it runs as a task on the connection's
    /// loop (like [`route_async`](Self::route_async)) that starts as soon as the request head
    /// is in, and reads the body as it arrives from the request's
    /// [`BodyStream`](super::BodyStream), Content-Length or chunked, up to `max_body` bytes
    /// (this route's limit instead of [`Limits::max_body`](super::Limits); over it the
    /// client gets 413). The connection stops reading the socket while
    /// [`STREAM_BUFFER`](super::STREAM_BUFFER) bytes wait unread, so an upload of any size
    /// costs bounded memory. `Expect: 100-continue` is answered at the first read. A handler
    /// that answers before reading the whole body has the rest read and dropped (a chunked
    /// body, or at most 64 KiB left of a `Content-Length` one) or the connection closed after
    /// its response (more left). See `docs/http-streaming.md`.
    ///
    /// ```
    /// use herd_core::http::{BodyStream, Method, Request, Response, Router};
    ///
    /// let router = Router::new().route_stream(Method::PUT, "/blob", 16 << 20, |mut req: Request<BodyStream>| async move {
    ///     match req.body_mut().collect(16 << 20).await {
    ///         Ok(all) => Response::new(format!("{}\n", all.len()).into()),
    ///         Err(e) => Response::new(format!("{e}\n").into()),
    ///     }
    /// });
    /// # let _ = router;
    /// ```
    pub fn route_stream<F, Fut>(self, method: Method, path: &str, max_body: u64, f: F) -> Router
    where
        F: Fn(Request<super::BodyStream>) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoResponse,
    {
        let handler: Arc<StreamHandlerFn> = Arc::new(move |req| {
            let fut = f(req);
            Box::pin(async move { fut.await.into_response() }) as ResponseFuture
        });
        self.add(Some(method), path, Endpoint::Stream { handler, max_body })
    }

    /// `route_stream(Method::POST, ..)`.
    pub fn post_stream<F, Fut>(self, path: &str, max_body: u64, f: F) -> Router
    where
        F: Fn(Request<super::BodyStream>) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoResponse,
    {
        self.route_stream(Method::POST, path, max_body, f)
    }

    /// `route_stream(Method::PUT, ..)`.
    pub fn put_stream<F, Fut>(self, path: &str, max_body: u64, f: F) -> Router
    where
        F: Fn(Request<super::BodyStream>) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: IntoResponse,
    {
        self.route_stream(Method::PUT, path, max_body, f)
    }

    /// The largest body limit of a streaming route (0 without one).
    pub fn stream_max_body(&self) -> u64 {
        self.stream_max_body
    }

    /// Add an inline handler for every method of `path` (tried after method-specific ones).
    pub fn any<F, R>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(None, path, Endpoint::Inline(handler(f)))
    }

    /// `route(Method::GET, ..)`: also answers HEAD unless a HEAD route exists.
    pub fn get<F, R>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::GET, path, f)
    }

    /// `route(Method::POST, ..)`.
    pub fn post<F, R>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::POST, path, f)
    }

    /// `route(Method::PUT, ..)`.
    pub fn put<F, R>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::PUT, path, f)
    }

    /// `route(Method::DELETE, ..)`.
    pub fn delete<F, R>(self, path: &str, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::DELETE, path, f)
    }

    /// Add an endpoint directly (used by [`Router::statics`](Router::statics) and by code
    /// that builds routes from configuration). `method: None` matches every method.
    pub fn add(mut self, method: Option<Method>, path: &str, ep: Endpoint) -> Router {
        self.has_blocking |= matches!(ep, Endpoint::Blocking(_));
        if let Endpoint::Stream { max_body, .. } = &ep {
            self.stream_max_body = self.stream_max_body.max(*max_body);
        }
        let (segs, prefix) = parse_path(path);
        if !prefix && segs.iter().all(|s| matches!(s, Seg::Lit(_))) {
            self.exact.entry(path.into()).or_default().set(method, ep);
            return self;
        }
        let same = |p: &Pattern| same_shape(p, &segs, prefix);
        match self.patterns.iter_mut().find(|p| same(p)) {
            Some(p) => p.methods.set(method, ep),
            None => {
                let mut methods = Methods::default();
                methods.set(method, ep);
                self.patterns.push(Pattern {
                    segs,
                    prefix,
                    methods,
                });
                // Full patterns keep their order; prefixes go after them, longest first.
                self.patterns
                    .sort_by_key(|p| (p.prefix, std::cmp::Reverse(p.segs.len())));
            }
        }
        self
    }

    /// Run `f` for every request whose path no route matches, instead of answering 404
    /// (e.g. a single-page application's `index.html`, or a JSON 404).
    pub fn fallback<F, R>(mut self, f: F) -> Router
    where
        F: Fn(Request<Body>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.fallback = Some(Endpoint::Inline(handler(f)));
        self
    }

    /// Make the router's own error answers (404 without a fallback, 405 with its `Allow`
    /// header added) with `f`, in the application's format:
    ///
    /// ```
    /// use herd_core::http::{Router, StatusCode};
    ///
    /// let router = Router::new().error_page(|status: StatusCode| {
    ///     (status, format!("{{\"error\":{}}}", status.as_u16()))
    /// });
    /// # let _ = router;
    /// ```
    pub fn error_page<F, R>(mut self, f: F) -> Router
    where
        F: Fn(StatusCode) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.errors = Some(ErrorPage(Arc::new(move |s| f(s).into_response())));
        self
    }

    /// The router's answer for an error status it makes itself (404, 405): the
    /// [`error_page`](Self::error_page) if one is set, else plain text.
    pub fn error_response(&self, status: StatusCode) -> Response<Body> {
        match &self.errors {
            Some(page) => page.render(status),
            None => super::text_response(status),
        }
    }

    /// Replace every route's endpoint (and the fallback's, with `fallback`) by `f` of it:
    /// how [`layer`](Self::layer) and [`route_layer`](Self::route_layer) wrap them.
    pub(super) fn map_endpoints(
        mut self,
        fallback: bool,
        f: impl Fn(&Endpoint) -> Endpoint,
    ) -> Router {
        let each = |m: &mut Methods| {
            for (_, ep) in &mut m.list {
                *ep = f(ep);
            }
            if let Some(ep) = &mut m.any {
                *ep = f(ep);
            }
        };
        self.exact.values_mut().for_each(&each);
        self.patterns.iter_mut().for_each(|p| each(&mut p.methods));
        if fallback {
            if let Some(ep) = &mut self.fallback {
                *ep = f(ep);
            }
        }
        self
    }

    /// Replace each endpoint of the routes of `path` (as given to [`Router::add`]) with
    /// `f(endpoint)`; a path without routes is left alone.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(super) fn map_path(mut self, path: &str, f: impl Fn(&Endpoint) -> Endpoint) -> Router {
        let each = |m: &mut Methods| {
            for (_, ep) in &mut m.list {
                *ep = f(ep);
            }
            if let Some(ep) = &mut m.any {
                *ep = f(ep);
            }
        };
        let (segs, prefix) = parse_path(path);
        if !prefix && segs.iter().all(|s| matches!(s, Seg::Lit(_))) {
            if let Some(m) = self.exact.get_mut(path) {
                each(m);
            }
        } else if let Some(p) = self
            .patterns
            .iter_mut()
            .find(|p| same_shape(p, &segs, prefix))
        {
            each(&mut p.methods);
        }
        self
    }

    /// Whether any route runs on the worker pool.
    pub fn has_blocking(&self) -> bool {
        self.has_blocking
    }

    /// Find the handler for `method` and `path` (the URI's path, without the query).
    pub fn lookup(&self, method: &Method, path: &str) -> Route<'_> {
        let mut allow: Vec<Method> = Vec::new();
        if let Some(methods) = self.exact.get(path) {
            match methods.find(method) {
                Some(endpoint) => {
                    return Route::Found {
                        endpoint,
                        params: Params::default(),
                    }
                }
                None => methods.allow(&mut allow),
            }
        }
        for p in &self.patterns {
            let Some(params) = match_pattern(p, path) else {
                continue;
            };
            match p.methods.find(method) {
                Some(endpoint) => return Route::Found { endpoint, params },
                None => p.methods.allow(&mut allow),
            }
        }
        if allow.is_empty() {
            if let Some(endpoint) = &self.fallback {
                return Route::Found {
                    endpoint,
                    params: Params::default(),
                };
            }
            return Route::NotFound;
        }
        let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
        Route::MethodNotAllowed(list.join(", "))
    }
}

/// Matches `path` against a pattern, returning its parameters.
fn match_pattern(p: &Pattern, path: &str) -> Option<Params> {
    if !path.starts_with('/') {
        return None;
    }
    let mut rest = path;
    let mut params = Params::default();
    for seg in &p.segs {
        // Empty segments (`//`) are skipped, as `add` ignored them in patterns.
        let r = rest.trim_start_matches('/');
        if r.is_empty() {
            return None;
        }
        let end = r.find('/').unwrap_or(r.len());
        let (value, after) = r.split_at(end);
        match seg {
            Seg::Lit(lit) if **lit == *value => {}
            Seg::Lit(_) => return None,
            Seg::Param(name) => params.pairs.push((name.clone(), percent_decode(value))),
        }
        rest = after;
    }
    // `rest` is now empty or starts with '/'.
    if p.prefix {
        let tail = rest.strip_prefix('/').unwrap_or(rest);
        params.pairs.push(("*".into(), tail.to_owned()));
        Some(params)
    } else if rest.is_empty() || rest == "/" {
        Some(params)
    } else {
        None
    }
}

/// Percent-decodes a path segment (a malformed escape stays as written); keeps the whole
/// segment as written if the result is not UTF-8.
fn percent_decode(s: &str) -> String {
    match percent_decode_str(s).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(tag: &'static str) -> impl Fn(Request<Body>) -> Response<Body> + Send + Sync {
        move |_| Response::new(Body::from(tag))
    }

    /// Runs the matched handler and returns its body, or the routing outcome.
    fn hit(r: &Router, m: Method, path: &str) -> String {
        match r.lookup(&m, path) {
            Route::Found { endpoint, params } => {
                let (Endpoint::Inline(f) | Endpoint::Blocking(f)) = endpoint else {
                    return "async".into();
                };
                let body = f(Request::new(Body::empty())).into_body();
                let text = String::from_utf8(body.as_bytes().unwrap().to_vec()).unwrap();
                let ps: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if ps.is_empty() {
                    text
                } else {
                    format!("{text} {}", ps.join(" "))
                }
            }
            Route::NotFound => "404".into(),
            Route::MethodNotAllowed(allow) => format!("405 {allow}"),
        }
    }

    fn router() -> Router {
        Router::new()
            .get("/", ok("root"))
            .get("/users/new", ok("new"))
            .get("/users/:id", ok("user"))
            .delete("/users/:id", ok("del"))
            .get("/users/:id/posts/:post", ok("post"))
            .get("/static/*", ok("static"))
            .get("/static/deep/*", ok("deep"))
            .post("/form", ok("form"))
    }

    #[test]
    fn exact_beats_params_and_params_decode() {
        let r = router();
        assert_eq!(hit(&r, Method::GET, "/"), "root");
        assert_eq!(hit(&r, Method::GET, "/users/new"), "new");
        assert_eq!(hit(&r, Method::GET, "/users/42"), "user id=42");
        assert_eq!(hit(&r, Method::GET, "/users/a%20b"), "user id=a b");
        assert_eq!(hit(&r, Method::GET, "/users/a%zz"), "user id=a%zz");
        assert_eq!(hit(&r, Method::GET, "/users/%41%zz%2"), "user id=A%zz%2");
        assert_eq!(
            hit(&r, Method::GET, "/users/caf%C3%A9"),
            "user id=caf\u{e9}"
        );
        assert_eq!(hit(&r, Method::GET, "/users/%ff%41"), "user id=%ff%41");
        assert_eq!(hit(&r, Method::DELETE, "/users/42"), "del id=42");
        assert_eq!(hit(&r, Method::GET, "/users/1/posts/2"), "post id=1 post=2");
        assert_eq!(hit(&r, Method::GET, "/users/1/posts"), "404");
        assert_eq!(hit(&r, Method::GET, "/users/1/"), "user id=1");
    }

    #[test]
    fn prefixes_longest_first() {
        let r = router();
        assert_eq!(hit(&r, Method::GET, "/static"), "static *=");
        assert_eq!(hit(&r, Method::GET, "/static/"), "static *=");
        assert_eq!(hit(&r, Method::GET, "/static/a/b.css"), "static *=a/b.css");
        assert_eq!(hit(&r, Method::GET, "/static/deep/x"), "deep *=x");
        assert_eq!(hit(&r, Method::GET, "/staticx"), "404");
        let root = Router::new()
            .get("/*", ok("all"))
            .get("/exact", ok("exact"));
        assert_eq!(hit(&root, Method::GET, "/"), "all *=");
        assert_eq!(hit(&root, Method::GET, "/a/b"), "all *=a/b");
        assert_eq!(hit(&root, Method::GET, "/exact"), "exact");
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let r = router();
        assert_eq!(hit(&r, Method::GET, "/nope"), "404");
        assert_eq!(hit(&r, Method::GET, "/form"), "405 POST");
        assert_eq!(hit(&r, Method::POST, "/users/9"), "405 GET, HEAD, DELETE");
        assert_eq!(hit(&r, Method::PUT, "/"), "405 GET, HEAD");
        assert_eq!(hit(&r, Method::HEAD, "/users/9"), "user id=9");
    }

    #[test]
    fn any_and_replacement() {
        let r = Router::new()
            .any("/x", ok("any"))
            .get("/x", ok("get1"))
            .get("/x", ok("get2"));
        assert_eq!(hit(&r, Method::GET, "/x"), "get2");
        assert_eq!(hit(&r, Method::PATCH, "/x"), "any");
        assert!(!r.has_blocking());
        let r = r.route_blocking(Method::POST, "/slow", ok("slow"));
        assert!(r.has_blocking());
        assert!(matches!(
            r.lookup(&Method::POST, "/slow"),
            Route::Found {
                endpoint: Endpoint::Blocking(_),
                ..
            }
        ));
    }
}
