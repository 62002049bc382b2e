//! Typed extractors for routes, in the manner of axum: a handler takes up to six arguments
//! such as [`Path<T>`], [`Query<T>`], [`Json<T>`], [`State<T>`] or [`LoopState<T>`], each
//! made from the request before the handler runs; a failure answers with a typed
//! [`Rejection`] (400, 413, 415 or 500) instead of calling the handler.
//!
//! Handlers with extractors register through the `*_with` methods of [`Router`]
//! ([`Router::get_with`], [`Router::post_with`], [`Router::route_with`],
//! [`Router::get_async_with`], ...). The plain methods (`get`, `post`, ...) keep taking
//! `Fn(Request<Body>)`: a generic `Handler<Args>` bound on them would stop the compiler from
//! inferring the argument type of an unannotated closure (`.get("/", |_| "hi")`), which
//! every existing router relies on.
//!
//! Every argument but the last implements [`FromRequestParts`] (it sees the head only); the
//! last may also consume the body ([`FromRequest`]: [`Json`], [`Form`], [`Bytes`], `String`,
//! `Request<Body>`). Extraction is synchronous and happens on the loop, before an async
//! handler's future is made, so async handlers get owned values.
//!
//! ```
//! use herd_core::http::extract::{Path, Query, State};
//! use herd_core::http::{Json, Router};
//! use std::sync::Arc;
//!
//! #[derive(serde::Deserialize)]
//! struct Page { limit: Option<usize> }
//!
//! let router = Router::new()
//!     .get_with("/users/:id", |Path(id): Path<u32>, Query(p): Query<Page>| {
//!         format!("user {id}, limit {:?}", p.limit)
//!     })
//!     .get_with("/name", |State(name): State<Arc<String>>| name.to_string())
//!     .with_state(Arc::new(String::from("herd")));
//! # let _ = router;
//! ```

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use ::http::header;
use ::http::request::Parts;
use ::http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::router::{Endpoint, ResponseFuture};
use super::{Body, IntoResponse, Json, Params, Router};

/// The default limit of a body an extractor reads ([`Json`], [`Form`], [`Bytes`], `String`):
/// 2 MiB, as axum's. Change it with [`Router::body_limit`].
pub const DEFAULT_BODY_LIMIT: usize = 2 << 20;

type RejectionFn = dyn Fn(Rejection) -> Response<Body> + Send + Sync + 'static;

/// What the extractors of one router share: its states, its rejection format, its body
/// limit. Handlers hold it by `Arc`, so [`Router::with_state`] and [`Router::rejection`]
/// work before or after the routes are added.
pub struct Shared {
    states: RwLock<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
    rejection: RwLock<Option<Arc<RejectionFn>>>,
    body_limit: AtomicUsize,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            states: RwLock::new(Vec::new()),
            rejection: RwLock::new(None),
            body_limit: AtomicUsize::new(DEFAULT_BODY_LIMIT),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    /// The state of type `T` given with [`Router::with_state`].
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let states = self.states.read().unwrap_or_else(|e| e.into_inner());
        states
            .iter()
            .find(|(t, _)| *t == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<T>())
            .cloned()
    }

    /// The largest body an extractor reads.
    pub fn body_limit(&self) -> usize {
        self.body_limit.load(Ordering::Relaxed)
    }

    /// `r` as a response, in the router's format ([`Router::rejection`]) or the default;
    /// counted by kind ([`HttpCounts::rejections`](crate::stats::HttpCounts::rejections))
    /// and logged at debug level.
    pub fn reject(&self, r: Rejection) -> Response<Body> {
        crate::stats::http_rejected(r.kind().index());
        tracing::debug!(
            kind = r.kind().as_str(),
            message = r.message(),
            "http: extractor rejected the request"
        );
        let f = self
            .rejection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match f {
            Some(f) => f(r),
            None => r.into_response(),
        }
    }
}

/// Why an extractor refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// [`Path`]: the parameters do not deserialize into the type (400).
    InvalidPath,
    /// [`Query`]: the query string does not deserialize (400).
    InvalidQuery,
    /// [`Json`]: the body is not valid JSON for the type (400).
    InvalidJson,
    /// [`Form`]: the body is not a valid form for the type (400).
    InvalidForm,
    /// A `String` body that is not UTF-8 (400).
    InvalidUtf8,
    /// [`Json`] or [`Form`] without the matching `Content-Type` (415).
    UnsupportedMediaType,
    /// A body over the router's limit (413).
    PayloadTooLarge,
    /// A body the server did not buffer (a stream or file): 500.
    BodyNotBuffered,
    /// [`State<T>`] with no state of that type on the router (500).
    MissingState,
    /// [`LoopState<T>`] with no per-loop state of that type (500).
    MissingLoopState,
    /// A required header is absent or not text (400).
    MissingHeader,
}

impl RejectionKind {
    /// Every kind, in [`index`](Self::index) order (the order of the
    /// `herd_http_rejections_total` series and of
    /// [`HttpCounts::rejections`](crate::stats::HttpCounts::rejections)).
    pub const ALL: [RejectionKind; crate::stats::REJECTION_KINDS] = [
        RejectionKind::InvalidPath,
        RejectionKind::InvalidQuery,
        RejectionKind::InvalidJson,
        RejectionKind::InvalidForm,
        RejectionKind::InvalidUtf8,
        RejectionKind::UnsupportedMediaType,
        RejectionKind::PayloadTooLarge,
        RejectionKind::BodyNotBuffered,
        RejectionKind::MissingState,
        RejectionKind::MissingLoopState,
        RejectionKind::MissingHeader,
    ];

    /// This kind's position in [`ALL`](Self::ALL).
    ///
    /// ```
    /// use herd_core::http::extract::RejectionKind;
    ///
    /// for (i, k) in RejectionKind::ALL.iter().enumerate() {
    ///     assert_eq!(k.index(), i);
    /// }
    /// assert_eq!(RejectionKind::InvalidJson.as_str(), "invalid_json");
    /// ```
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind's name in metrics and logs (`invalid_json`, `payload_too_large`, ...).
    pub fn as_str(self) -> &'static str {
        use RejectionKind::*;
        match self {
            InvalidPath => "invalid_path",
            InvalidQuery => "invalid_query",
            InvalidJson => "invalid_json",
            InvalidForm => "invalid_form",
            InvalidUtf8 => "invalid_utf8",
            UnsupportedMediaType => "unsupported_media_type",
            PayloadTooLarge => "payload_too_large",
            BodyNotBuffered => "body_not_buffered",
            MissingState => "missing_state",
            MissingLoopState => "missing_loop_state",
            MissingHeader => "missing_header",
        }
    }
}

/// An extractor's refusal: a kind, a status and a message (for the 400s, serde's error
/// text). The default response is `text/plain`: `400 Bad Request: <message>`; a router
/// sets its own format with [`Router::rejection`].
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
    message: String,
}

impl Rejection {
    /// A rejection of `kind` with `message`.
    pub fn new(kind: RejectionKind, message: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            message: message.into(),
        }
    }

    /// Why.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        use RejectionKind::*;
        match self.kind {
            InvalidPath | InvalidQuery | InvalidJson | InvalidForm | InvalidUtf8
            | MissingHeader => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyNotBuffered | MissingState | MissingLoopState => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The detail: serde's error text, or what was expected.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.status();
        write!(
            f,
            "{} {}: {}",
            s.as_str(),
            s.canonical_reason().unwrap_or(""),
            self.message
        )
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut r = format!("{self}\n").into_response();
        *r.status_mut() = status;
        r
    }
}

/// What an extractor sees besides the request: the router's [`Shared`] part.
pub type Ctx = Shared;

/// An extractor that needs only the request head (method, URI, headers, extensions).
pub trait FromRequestParts: Sized {
    /// Makes the value, or refuses the request.
    fn from_request_parts(parts: &mut Parts, cx: &Ctx) -> Result<Self, Rejection>;
}

/// Marks [`FromRequest`] impls that come from [`FromRequestParts`].
#[derive(Debug)]
pub enum ViaParts {}
/// Marks [`FromRequest`] impls that consume the request.
#[derive(Debug)]
pub enum ViaRequest {}

/// An extractor that may consume the body; only a handler's last argument.
pub trait FromRequest<M = ViaRequest>: Sized {
    /// Makes the value, or refuses the request.
    fn from_request(req: Request<Body>, cx: &Ctx) -> Result<Self, Rejection>;
}

impl<T: FromRequestParts> FromRequest<ViaParts> for T {
    fn from_request(req: Request<Body>, cx: &Ctx) -> Result<Self, Rejection> {
        let (mut parts, _) = req.into_parts();
        T::from_request_parts(&mut parts, cx)
    }
}

impl FromRequest for Request<Body> {
    fn from_request(req: Request<Body>, _: &Ctx) -> Result<Self, Rejection> {
        Ok(req)
    }
}

/// An optional extractor never refuses: `None` where `T` would.
impl<T: FromRequestParts> FromRequestParts for Option<T> {
    fn from_request_parts(parts: &mut Parts, cx: &Ctx) -> Result<Self, Rejection> {
        Ok(T::from_request_parts(parts, cx).ok())
    }
}

/// The extractor's own result, to handle a rejection in the handler.
impl<T: FromRequestParts> FromRequestParts for Result<T, Rejection> {
    fn from_request_parts(parts: &mut Parts, cx: &Ctx) -> Result<Self, Rejection> {
        Ok(T::from_request_parts(parts, cx))
    }
}

impl FromRequestParts for Method {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        Ok(parts.method.clone())
    }
}

impl FromRequestParts for Uri {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        Ok(parts.uri.clone())
    }
}

/// A copy of the request's headers.
impl FromRequestParts for HeaderMap {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        Ok(parts.headers.clone())
    }
}

/// The path parameters, untyped.
impl FromRequestParts for Params {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        Ok(parts
            .extensions
            .get::<Params>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The client's address (after the PROXY protocol): see [`client_addr`](super::client_addr).
impl FromRequestParts for super::ClientAddr {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        let addr = match parts.extensions.get::<super::ClientAddr>() {
            Some(a) => a.0,
            None => super::state::current_client().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        Ok(super::ClientAddr(addr))
    }
}

/// Path parameters deserialized into `T`: one value (`Path<u32>`), a tuple in pattern
/// order (`Path<(String, u32)>`) or a struct by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts for Path<T> {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        let empty = Params::default();
        let params = parts.extensions.get::<Params>().unwrap_or(&empty);
        T::deserialize(ParamsDe(params))
            .map(Path)
            .map_err(|e| Rejection::new(RejectionKind::InvalidPath, e.0))
    }
}

/// The query string deserialized into `T` (`serde_urlencoded`); no query is an empty one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts for Query<T> {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| Rejection::new(RejectionKind::InvalidQuery, e.to_string()))
    }
}

/// Shared (`Send + Sync`) state given to the router with [`Router::with_state`], by type;
/// keep it cheap to clone (an `Arc`). Missing: 500.
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromRequestParts for State<T> {
    fn from_request_parts(_: &mut Parts, cx: &Ctx) -> Result<Self, Rejection> {
        cx.state::<T>().map(State).ok_or_else(|| {
            Rejection::new(
                RejectionKind::MissingState,
                format!("no state of type {}", std::any::type_name::<T>()),
            )
        })
    }
}

/// The current loop's state of type `T` (need not be `Send`), made by
/// [`HttpService::loop_state`](super::HttpService::loop_state); see
/// [`loop_state`](super::loop_state). Missing: 500.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopState<T>(pub T);

impl<T: Clone + 'static> FromRequestParts for LoopState<T> {
    fn from_request_parts(_: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        super::loop_state::<T>().map(LoopState).ok_or_else(|| {
            Rejection::new(
                RejectionKind::MissingLoopState,
                format!("no loop state of type {}", std::any::type_name::<T>()),
            )
        })
    }
}

/// The request's cookies (the `Cookie` headers, `name=value` pairs split on `;`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cookies(Vec<(String, String)>);

impl Cookies {
    /// Parses `Cookie` header values.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Cookies {
        let mut out = Vec::new();
        for v in values {
            for pair in v.split(';') {
                if let Some((n, val)) = pair.split_once('=') {
                    let val = val.trim();
                    let val = val
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(val);
                    out.push((n.trim().to_owned(), val.to_owned()));
                }
            }
        }
        Cookies(out)
    }

    /// The first cookie named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All cookies, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl FromRequestParts for Cookies {
    fn from_request_parts(parts: &mut Parts, _: &Ctx) -> Result<Self, Rejection> {
        Ok(Cookies::parse(
            parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        ))
    }
}

/// The buffered body, checked against the limit.
fn body_bytes(body: Body, cx: &Ctx) -> Result<Bytes, Rejection> {
    let limit = cx.body_limit();
    match body.len() {
        Some(n) if n > limit as u64 => {
            return Err(Rejection::new(
                RejectionKind::PayloadTooLarge,
                format!("the body is over {limit} bytes"),
            ))
        }
        _ => {}
    }
    body.into_bytes()
        .ok_or_else(|| Rejection::new(RejectionKind::BodyNotBuffered, "the body is not in memory"))
}

/// Whether the request's `Content-Type` is `want` (parameters such as `charset` ignored;
/// for JSON, any `+json` type too).
fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(want)
        || (want == "application/json"
            && essence.len() > 5
            && essence.is_char_boundary(essence.len() - 5)
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

impl FromRequest for Bytes {
    fn from_request(req: Request<Body>, cx: &Ctx) -> Result<Self, Rejection> {
        body_bytes(req.into_body(), cx)
    }
}

impl FromRequest for String {
    fn from_request(req: Request<Body>, cx: &Ctx) -> Result<Self, Rejection> {
        let b = body_bytes(req.into_body(), cx)?;
        String::from_utf8(b.to_vec())
            .map_err(|e| Rejection::new(RejectionKind::InvalidUtf8, e.to_string()))
    }
}

/// A JSON request body (`Content-Type: application/json`, else 415), deserialized with
/// `serde_json` (else 400 with its error text). As a return value, a JSON response.
impl<T: DeserializeOwned> FromRequest for Json<T> {
    fn from_request(req: Request<Body>, cx: &Ctx) -> Result<Self, Rejection> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(Rejection::new(
                RejectionKind::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let b = body_bytes(req.into_body(), cx)?;
        serde_json::from_slice(&b)
            .map(Json)
            .map_err(|e| Rejection::new(RejectionKind::InvalidJson, e.to_string()))
    }
}

/// A form body (`application/x-www-form-urlencoded`, else 415) deserialized into `T`
/// with `serde_urlencoded` (else 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Form<T> {
    fn from_request(req: Request<Body>, cx: &Ctx) -> Result<Self, Rejection> {
        if !content_type_is(req.headers(), "application/x-www-form-urlencoded") {
            return Err(Rejection::new(
                RejectionKind::UnsupportedMediaType,
                "expected Content-Type: application/x-www-form-urlencoded",
            ));
        }
        let b = body_bytes(req.into_body(), cx)?;
        serde_urlencoded::from_bytes(&b)
            .map(Form)
            .map_err(|e| Rejection::new(RejectionKind::InvalidForm, e.to_string()))
    }
}

// --- handlers ------------------------------------------------------------------------------

/// A function that can serve a route: `Fn(T1, .., Tn) -> impl IntoResponse` with up to six
/// extractor arguments (the first ones [`FromRequestParts`], the last [`FromRequest`]).
/// `M` only tells the impls apart; it is inferred.
pub trait Handler<M>: Send + Sync + 'static {
    /// Extracts the arguments and calls the function; a rejection is rendered by `cx`.
    fn call(&self, req: Request<Body>, cx: &Ctx) -> Response<Body>;
}

/// An async handler: `Fn(T1, .., Tn) -> impl Future<Output: IntoResponse>`, the arguments
/// extracted before the future is made.
pub trait AsyncHandler<M>: Send + Sync + 'static {
    /// Extracts the arguments and calls the function.
    fn call(&self, req: Request<Body>, cx: &Ctx) -> ResponseFuture;
}

impl<F, R> Handler<()> for F
where
    F: Fn() -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    fn call(&self, _: Request<Body>, _: &Ctx) -> Response<Body> {
        self().into_response()
    }
}

impl<F, Fut> AsyncHandler<()> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: IntoResponse,
{
    fn call(&self, _: Request<Body>, _: &Ctx) -> ResponseFuture {
        let fut = self();
        Box::pin(async move { fut.await.into_response() })
    }
}

macro_rules! handlers {
    ($($p:ident),* ; $last:ident) => {
        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<F, R, M, $($p,)* $last> Handler<(M, $($p,)* $last)> for F
        where
            F: Fn($($p,)* $last) -> R + Send + Sync + 'static,
            R: IntoResponse,
            $($p: FromRequestParts,)*
            $last: FromRequest<M>,
        {
            fn call(&self, req: Request<Body>, cx: &Ctx) -> Response<Body> {
                let (mut parts, body) = req.into_parts();
                $(let $p = match $p::from_request_parts(&mut parts, cx) {
                    Ok(v) => v,
                    Err(r) => return cx.reject(r),
                };)*
                let $last = match $last::from_request(Request::from_parts(parts, body), cx) {
                    Ok(v) => v,
                    Err(r) => return cx.reject(r),
                };
                self($($p,)* $last).into_response()
            }
        }

        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<F, Fut, M, $($p,)* $last> AsyncHandler<(M, $($p,)* $last)> for F
        where
            F: Fn($($p,)* $last) -> Fut + Send + Sync + 'static,
            Fut: Future + 'static,
            Fut::Output: IntoResponse,
            $($p: FromRequestParts,)*
            $last: FromRequest<M>,
        {
            fn call(&self, req: Request<Body>, cx: &Ctx) -> ResponseFuture {
                let (mut parts, body) = req.into_parts();
                $(let $p = match $p::from_request_parts(&mut parts, cx) {
                    Ok(v) => v,
                    Err(r) => { let resp = cx.reject(r); return Box::pin(async move { resp }) }
                };)*
                let $last = match $last::from_request(Request::from_parts(parts, body), cx) {
                    Ok(v) => v,
                    Err(r) => { let resp = cx.reject(r); return Box::pin(async move { resp }) }
                };
                let fut = self($($p,)* $last);
                Box::pin(async move { fut.await.into_response() })
            }
        }
    };
}

handlers!(; T1);
handlers!(T1; T2);
handlers!(T1, T2; T3);
handlers!(T1, T2, T3; T4);
handlers!(T1, T2, T3, T4; T5);
handlers!(T1, T2, T3, T4, T5; T6);

impl Router {
    /// Add a handler with extractor arguments (see [`Handler`]) for `method` and `path`,
    /// inline on the loop like [`Router::route`].
    pub fn route_with<H: Handler<M>, M>(self, method: Method, path: &str, h: H) -> Router {
        let cx = self.shared.clone();
        self.add(
            Some(method),
            path,
            Endpoint::Inline(Arc::new(move |req| h.call(req, &cx))),
        )
    }

    /// [`route_with`](Self::route_with) on the worker pool, like
    /// [`Router::route_blocking`].
    pub fn route_blocking_with<H: Handler<M>, M>(self, method: Method, path: &str, h: H) -> Router {
        let cx = self.shared.clone();
        self.add(
            Some(method),
            path,
            Endpoint::Blocking(Arc::new(move |req| h.call(req, &cx))),
        )
    }

    /// An async handler with extractor arguments, like [`Router::route_async`].
    pub fn route_async_with<H: AsyncHandler<M>, M>(
        self,
        method: Method,
        path: &str,
        h: H,
    ) -> Router {
        let cx = self.shared.clone();
        self.add(
            Some(method),
            path,
            Endpoint::Async(Arc::new(move |req| h.call(req, &cx))),
        )
    }

    /// `route_with(Method::GET, ..)` (answers HEAD too).
    pub fn get_with<H: Handler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_with(Method::GET, path, h)
    }

    /// `route_with(Method::POST, ..)`.
    pub fn post_with<H: Handler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_with(Method::POST, path, h)
    }

    /// `route_with(Method::PUT, ..)`.
    pub fn put_with<H: Handler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_with(Method::PUT, path, h)
    }

    /// `route_with(Method::PATCH, ..)`.
    pub fn patch_with<H: Handler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_with(Method::PATCH, path, h)
    }

    /// `route_with(Method::DELETE, ..)`.
    pub fn delete_with<H: Handler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_with(Method::DELETE, path, h)
    }

    /// `route_async_with(Method::GET, ..)`.
    pub fn get_async_with<H: AsyncHandler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_async_with(Method::GET, path, h)
    }

    /// `route_async_with(Method::POST, ..)`.
    pub fn post_async_with<H: AsyncHandler<M>, M>(self, path: &str, h: H) -> Router {
        self.route_async_with(Method::POST, path, h)
    }

    /// Give the router's handlers `state` ([`State<T>`] by type `T`; one value per type, a
    /// later one replacing an earlier one). Before or after the routes, either works.
    pub fn with_state<T: Clone + Send + Sync + 'static>(self, state: T) -> Router {
        {
            let mut states = self
                .shared
                .states
                .write()
                .unwrap_or_else(|e| e.into_inner());
            states.retain(|(t, _)| *t != TypeId::of::<T>());
            states.push((TypeId::of::<T>(), Arc::new(state)));
        }
        self
    }

    /// Render every extractor's [`Rejection`] with `f` (the application's error format):
    ///
    /// ```
    /// use herd_core::http::extract::Rejection;
    /// use herd_core::http::{Json, Router};
    ///
    /// let router = Router::new().rejection(|r: Rejection| {
    ///     (r.status(), Json(serde_json::json!({ "error": r.message() })))
    /// });
    /// # let _ = router;
    /// ```
    pub fn rejection<F, R>(self, f: F) -> Router
    where
        F: Fn(Rejection) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        *self
            .shared
            .rejection
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(move |r| f(r).into_response()));
        self
    }

    /// The largest body the extractors read (413 past it); default [`DEFAULT_BODY_LIMIT`].
    /// The server's own limit ([`Limits`](super::Limits)) applies first.
    pub fn body_limit(self, bytes: usize) -> Router {
        self.shared.body_limit.store(bytes, Ordering::Relaxed);
        self
    }
}

// --- a serde deserializer over path parameters ---------------------------------------------

/// A deserialization error (its text goes into the rejection).
#[derive(Debug)]
struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// One parameter's text, parsed as the visitor asks.
struct StrDe<'a>(&'a str);

macro_rules! parse_as {
    ($($f:ident => $v:ident),*) => {$(
        fn $f<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            match self.0.parse() {
                Ok(x) => v.$v(x),
                Err(e) => Err(DeError(format!("{:?}: {e}", self.0))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for StrDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_str(self.0)
    }

    parse_as!(deserialize_bool => visit_bool, deserialize_i8 => visit_i8,
        deserialize_i16 => visit_i16, deserialize_i32 => visit_i32, deserialize_i64 => visit_i64,
        deserialize_u8 => visit_u8, deserialize_u16 => visit_u16, deserialize_u32 => visit_u32,
        deserialize_u64 => visit_u64, deserialize_f32 => visit_f32, deserialize_f64 => visit_f64,
        deserialize_char => visit_char);

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_enum(self.0.into_deserializer())
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

impl<'de, 'a> IntoDeserializer<'de, DeError> for StrDe<'a> {
    type Deserializer = StrDe<'a>;
    fn into_deserializer(self) -> StrDe<'a> {
        self
    }
}

/// All parameters: a map (struct), a sequence (tuple), or the only one (a single value).
struct ParamsDe<'a>(&'a Params);

impl ParamsDe<'_> {
    fn single(&self) -> Result<StrDe<'_>, DeError> {
        let mut it = self.0.iter();
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Ok(StrDe(v)),
            _ => Err(DeError(format!(
                "expected 1 path parameter, the route has {}",
                self.0.iter().count()
            ))),
        }
    }
}

macro_rules! via_single {
    ($($f:ident),*) => {$(
        fn $f<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.single()?.$f(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ParamsDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    via_single!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_option
    );

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        n: &'static str,
        vs: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.single()?.deserialize_enum(n, vs, v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_seq(de::value::SeqDeserializer::new(
            self.0.iter().map(|(_, val)| StrDe(val)),
        ))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, DeError> {
        let n = self.0.iter().count();
        if n != len {
            return Err(DeError(format!(
                "expected {len} path parameters, the route has {n}"
            )));
        }
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_tuple(len, v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_map(de::value::MapDeserializer::new(
            self.0.iter().map(|(k, val)| (StrDe(k), StrDe(val))),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 bytes byte_buf unit unit_struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Route;

    fn call(r: &Router, m: Method, uri: &str, ct: Option<&str>, body: &str) -> (u16, String) {
        let path = uri.split('?').next().unwrap();
        let Route::Found { endpoint, params } = r.lookup(&m, path) else {
            return (404, String::new());
        };
        let Endpoint::Inline(f) = endpoint else {
            panic!()
        };
        let mut b = Request::builder().method(m).uri(uri);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        let mut req = b.body(Body::from(body.to_owned())).unwrap();
        req.extensions_mut().insert(params);
        let resp = f(req);
        let status = resp.status().as_u16();
        let text = String::from_utf8(resp.into_body().into_bytes().unwrap().to_vec()).unwrap();
        (status, text)
    }

    #[derive(serde::Deserialize)]
    struct Item {
        name: String,
        n: u32,
    }

    #[derive(serde::Deserialize)]
    struct Ids {
        a: u32,
        b: String,
    }

    #[test]
    fn extractors_and_rejections() {
        let r = Router::new()
            .get_with("/one/:id", |Path(id): Path<u32>| format!("id {id}"))
            .get_with("/two/:a/:b", |Path((a, b)): Path<(u32, String)>| {
                format!("{a} {b}")
            })
            .get_with("/st/:a/:b", |Path(p): Path<Ids>, m: Method| {
                format!("{} {} {m}", p.a, p.b)
            })
            .get_with("/q", |Query(q): Query<Item>| format!("{} {}", q.name, q.n))
            .post_with("/j", |Json(i): Json<Item>| format!("{} {}", i.name, i.n))
            .post_with("/f", |Form(i): Form<Item>| format!("{} {}", i.name, i.n))
            .get_with("/s", |State(s): State<Arc<String>>| s.to_string())
            .get_with("/none", |State(s): State<u8>| s.to_string())
            .post_with("/text", |s: String| s)
            .get_with("/c", |c: Cookies| c.get("b").unwrap_or("-").to_owned())
            .get_with("/zero", || "zero")
            .with_state(Arc::new("shared".to_string()))
            .body_limit(64);
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(
            call(&r, g.clone(), "/one/7", None, ""),
            (200, "id 7".into())
        );
        let (s, t) = call(&r, g.clone(), "/one/x", None, "");
        assert_eq!(s, 400);
        assert!(t.contains("\"x\""), "{t}");
        assert_eq!(
            call(&r, g.clone(), "/two/1/a%20b", None, ""),
            (200, "1 a b".into())
        );
        assert_eq!(
            call(&r, g.clone(), "/st/3/z", None, ""),
            (200, "3 z GET".into())
        );
        assert_eq!(
            call(&r, g.clone(), "/q?name=a&n=2", None, ""),
            (200, "a 2".into())
        );
        let (s, t) = call(&r, g.clone(), "/q?name=a", None, "");
        assert_eq!((s, t.contains("missing field `n`")), (400, true), "{t}");
        let json = Some("application/json");
        assert_eq!(
            call(&r, p.clone(), "/j", json, r#"{"name":"x","n":1}"#),
            (200, "x 1".into())
        );
        assert_eq!(call(&r, p.clone(), "/j", json, "{").0, 400);
        assert_eq!(call(&r, p.clone(), "/j", Some("text/plain"), "{}").0, 415);
        assert_eq!(call(&r, p.clone(), "/j", None, "{}").0, 415);
        let big = format!(r#"{{"name":"{}","n":1}}"#, "x".repeat(100));
        assert_eq!(call(&r, p.clone(), "/j", json, &big).0, 413);
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(
            call(&r, p.clone(), "/f", form, "name=a+b&n=3"),
            (200, "a b 3".into())
        );
        assert_eq!(call(&r, p.clone(), "/f", form, "name=a&n=-1").0, 400);
        assert_eq!(call(&r, p.clone(), "/f", json, "name=a&n=1").0, 415);
        assert_eq!(call(&r, g.clone(), "/s", None, ""), (200, "shared".into()));
        assert_eq!(call(&r, g.clone(), "/none", None, "").0, 500);
        assert_eq!(
            call(&r, p.clone(), "/text", None, "hey"),
            (200, "hey".into())
        );
        assert_eq!(call(&r, g.clone(), "/zero", None, ""), (200, "zero".into()));
        let c = Cookies::parse(["a=1; b=\"two\"", "c=3"]);
        assert_eq!(
            (c.get("b"), c.get("c"), c.get("d")),
            (Some("two"), Some("3"), None)
        );
    }

    #[test]
    fn the_rejection_format_is_the_routers() {
        let r = Router::new()
            .post_with("/j", |Json(i): Json<Item>| i.name)
            .rejection(|r: Rejection| (r.status(), format!("E {}", r.status().as_u16())));
        let (s, t) = call(&r, Method::POST, "/j", Some("application/json"), "[");
        assert_eq!((s, t.as_str()), (400, "E 400"));
    }
}
