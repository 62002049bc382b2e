//! tower middleware around routes (feature `tower`): [`Router::tower_layer`] and
//! [`Router::tower_route_layer`] wrap routes in any [`tower::Layer`] whose service takes
//! herd's [`Request<Body>`] and gives its [`Response<Body>`], so the layers of tower and
//! tower-http (CORS, headers, concurrency limits, load shedding, ...) run around herd's
//! handlers.
//!
//! herd's requests and responses already are the `http` crate's types, so nothing is
//! converted at the edge: the layer sees the request the router would have handed to the
//! handler. The route's handler becomes the innermost service ([`HandlerService`] for inline
//! and worker-pool routes, [`AsyncHandlerService`] for async ones); the layered service is
//! built once, when the router is built, and cloned for each request (tower's rule for a
//! service shared by concurrent callers: `poll_ready` and `call` on the same clone).
//!
//! Inline and worker-pool routes cannot wait: their service is polled once with a no-op
//! waker. One that is not ready (a full `ConcurrencyLimit`) is answered with 503 and
//! `Retry-After: 1`, as is a response future that does not finish at its first poll. Async
//! routes await readiness and the response on their connection's loop. A service error
//! answers 500, or 503 (with `Retry-After: 1`) for tower's [`Overloaded`]; both are logged.
//! Streaming routes ([`Router::route_stream`]) pass through unwrapped, as with herd's own
//! layers, and so do the router's own 404 and 405 answers.
//!
//! Layers that change the body type do not fit: the wrapped service must still answer
//! `Response<Body>`, so compression, decompression, request-body limits and tracing bodies
//! of tower-http (which produce their own body types) are refused by the compiler. herd has
//! its own compression ([`Compression`](super::Compression)) and body limits.
//!
//! ```
//! use herd_core::http::{HeaderValue, Router};
//! use tower::limit::ConcurrencyLimitLayer;
//!
//! let router = Router::new()
//!     .get("/", |_| "hi")
//!     .get("/report", |_| "slow")
//!     .tower_route_layer("/report", ConcurrencyLimitLayer::new(4));
//! # let _ = router;
//! ```

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use ::http::header::{HeaderValue, RETRY_AFTER};
use ::http::{Request, Response, StatusCode};
use ::tower::load_shed::error::Overloaded;
use ::tower::{BoxError, Layer, Service};

use super::router::{AsyncHandlerFn, Endpoint, HandlerFn, ResponseFuture};
use super::{text_response, Body, Router};

/// The innermost service of a layered inline or worker-pool route: its handler.
#[derive(Clone)]
pub struct HandlerService(Arc<HandlerFn>);

impl Service<Request<Body>> for HandlerService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        std::future::ready(Ok((self.0)(req)))
    }
}

/// The innermost service of a layered async route: its handler.
#[derive(Clone)]
pub struct AsyncHandlerService(Arc<AsyncHandlerFn>);

/// The future of an [`AsyncHandlerService`]: the handler's, never failing.
pub struct AsyncHandlerFuture(ResponseFuture);

impl Future for AsyncHandlerFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.as_mut().poll(cx).map(Ok)
    }
}

impl Service<Request<Body>> for AsyncHandlerService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AsyncHandlerFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        AsyncHandlerFuture((self.0)(req))
    }
}

/// A [`tower::Layer`] that fits around herd's routes: implemented for every layer whose
/// services over [`HandlerService`] and [`AsyncHandlerService`] take `Request<Body>`, answer
/// `Response<Body>`, fail with an error convertible to [`BoxError`], and are `Clone + Send +
/// Sync` (the async one's future must be `'static`; it need not be `Send`).
pub trait RouteLayer {
    /// `ep` wrapped in this layer.
    #[doc(hidden)]
    fn wrap_endpoint(&self, ep: &Endpoint) -> Endpoint;
}

impl<L, S, A> RouteLayer for L
where
    L: Layer<HandlerService, Service = S> + Layer<AsyncHandlerService, Service = A>,
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    A: Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    A::Error: Into<BoxError>,
    A::Future: 'static,
{
    fn wrap_endpoint(&self, ep: &Endpoint) -> Endpoint {
        match ep {
            Endpoint::Inline(f) => {
                let svc = self.layer(HandlerService(f.clone()));
                Endpoint::Inline(Arc::new(move |req| run_now(&svc, req)))
            }
            Endpoint::Blocking(f) => {
                let svc = self.layer(HandlerService(f.clone()));
                Endpoint::Blocking(Arc::new(move |req| run_now(&svc, req)))
            }
            Endpoint::Async(f) => {
                let svc = self.layer(AsyncHandlerService(f.clone()));
                Endpoint::Async(Arc::new(move |req| {
                    let mut svc = svc.clone();
                    Box::pin(async move {
                        if let Err(e) = poll_fn(|cx| svc.poll_ready(cx)).await {
                            return error_response(e.into());
                        }
                        match svc.call(req).await {
                            Ok(resp) => resp,
                            Err(e) => error_response(e.into()),
                        }
                    }) as ResponseFuture
                }))
            }
            // A streaming route's request body is a `BodyStream`, not a `Body`.
            Endpoint::Stream { .. } => ep.clone(),
        }
    }
}

/// Serve `req` with a clone of `proto` without waiting: a service that is not ready, or a
/// response that is not ready at the first poll, is answered with 503.
fn run_now<S>(proto: &S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    let mut svc = proto.clone();
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return error_response(e.into()),
        Poll::Pending => return not_ready("the tower service is not ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(resp)) => resp,
        Poll::Ready(Err(e)) => error_response(e.into()),
        Poll::Pending => not_ready("the tower response did not finish at once on an inline route"),
    }
}

/// 503 with `Retry-After: 1`.
#[cold]
fn not_ready(why: &'static str) -> Response<Body> {
    tracing::warn!("http: {why}; answering 503");
    unavailable()
}

fn unavailable() -> Response<Body> {
    let mut resp = text_response(StatusCode::SERVICE_UNAVAILABLE);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// 503 for tower's `Overloaded`, 500 for any other service error.
#[cold]
fn error_response(e: BoxError) -> Response<Body> {
    if e.is::<Overloaded>() {
        tracing::warn!("http: tower service overloaded; answering 503");
        return unavailable();
    }
    tracing::error!(error = %e, "http: tower service failed; answering 500");
    text_response(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Router {
    /// Wrap every route added so far and the fallback in the tower layer `layer` (the last
    /// layer added, herd's or tower's, runs first). See the [module docs](super::tower) for
    /// what fits and how inline routes treat a service that is not ready.
    ///
    /// ```
    /// use herd_core::http::{header, HeaderValue, Router};
    /// use tower_http::set_header::SetResponseHeaderLayer;
    ///
    /// let router = Router::new().get("/", |_| "hi").tower_layer(
    ///     SetResponseHeaderLayer::overriding(header::SERVER, HeaderValue::from_static("herd")),
    /// );
    /// # let _ = router;
    /// ```
    pub fn tower_layer<L: RouteLayer>(self, layer: L) -> Router {
        self.map_endpoints(true, |ep| layer.wrap_endpoint(ep))
    }

    /// Wrap the routes of `path` added so far (every method; `path` as it was given to the
    /// route, e.g. `/users/:id`) in the tower layer `layer`. A path without routes is left
    /// alone.
    pub fn tower_route_layer<L: RouteLayer>(self, path: &str, layer: L) -> Router {
        self.map_path(path, |ep| layer.wrap_endpoint(ep))
    }
}
