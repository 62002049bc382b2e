//! The HTTP/1.1 server: a [`Handler`](crate::Handler) that speaks HTTP on herd's event loops,
//! a router, request and response bodies, and a static-file service.
//!
//! Top to bottom:
//! - [`HttpService`] is what a user builds: a [`Router`], [`HttpOptions`] (limits, header and
//!   keep-alive timeouts, requests per connection), an optional access-log hook and worker
//!   pool. [`HttpService::serve`] starts it on a [`Server`](crate::Server); each loop gets its
//!   own [`HttpProtocol`], the [`Handler`](crate::Handler) that speaks HTTP.
//! - [`HttpProtocol`] drives one connection at a time through [`HttpCodec`] (herd-proto's
//!   strict RFC 9112 decoder), runs the matched handler (inline on the loop, or on the worker
//!   pool with the response handed back through [`Handle::notify`](crate::Handle::notify)),
//!   and writes responses in request order: all responses produced by one read go out in one
//!   write, file bodies go out with `sendfile`, streamed bodies are pulled only while the
//!   connection's output is below its high watermark.
//! - Handlers see [`Request<Body>`] and return [`Response<Body>`] (the `http` crate's types,
//!   re-exported here); [`Body`] is bytes, a chunk stream, or a file region. They get no
//!   connection object (no `HttpConn`, unlike frames and WebSocket): the request is all.
//! - A streaming route ([`Router::route_stream`]) gets [`Request<BodyStream>`] instead, as
//!   soon as the head is in, and reads the body as it arrives; the connection stops reading
//!   while [`STREAM_BUFFER`] bytes wait unread (see `docs/http-streaming.md`).
//! - [`StaticDir`] serves a directory (MIME, ETag/304, Range, index, no escape from the root,
//!   pre-compressed `.br`/`.gz` files beside the originals).
//! - [`Compression`] (in [`HttpOptions`]) compresses responses on the fly: gzip and Brotli by
//!   `Accept-Encoding`, for compressible types above a size.
//!
//! What this module does not do: parse bytes (that is [`herd_proto::http1`], sans-IO), read
//! configuration, write log files (the access-log hook hands entries to the caller), HTTP/2
//! or protocol upgrades.
//!
//! ```no_run
//! use herd_core::http::{Body, HttpService, Response, Router};
//! use herd_core::Server;
//!
//! let router = Router::new().get("/hello", |_req| Response::new(Body::from("Hello, World!")));
//! let server = HttpService::new(router).serve(Server::new().bind("127.0.0.1:8080")?)?;
//! server.join();
//! # Ok::<(), std::io::Error>(())
//! ```

mod body;
mod channel;
mod codec;
mod compress;
#[cfg(feature = "json")]
pub mod extract;
pub mod middleware;
mod response;
mod router;
mod server;
mod service;
pub mod state;
mod statics;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(feature = "tower")]
pub mod tower;

use std::net::SocketAddr;
use std::time::Duration;

pub use ::http::{
    header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
pub use herd_proto::http1::Limits;

pub use body::{Body, ChunkSource, Trailers};
pub use channel::{BodyClosed, BodySender};
pub use codec::{Event, HttpCodec};
pub use compress::Compression;
#[cfg(feature = "json")]
pub use response::Json;
pub use response::{Html, IntoResponse, Redirect};
pub use router::{
    AsyncHandlerFn, Endpoint, ErrorPage, HandlerFn, Params, ResponseFuture, Route, Router,
    StreamHandlerFn,
};
pub use server::{HttpConnState, HttpProtocol};
pub use service::HttpService;
pub use state::{client_addr, loop_state, ClientAddr};
pub use statics::StaticDir;
pub use stream::{BodyError, BodyStream, STREAM_BUFFER};

/// Options of the HTTP server. `Default` gives nginx-like values.
///
/// ```
/// use std::time::Duration;
/// use herd_core::http::HttpOptions;
///
/// let opts = HttpOptions {
///     header_timeout: Duration::from_secs(10),
///     max_requests: Some(1000),
///     ..HttpOptions::default()
/// };
/// assert_eq!(opts.limits.max_headers, 100);
/// ```
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Size limits of request heads and bodies (414/431/413 beyond them).
    pub limits: Limits,
    /// A request head must arrive completely within this time: counted from the connection's
    /// accept for its first request, from the head's first byte for later ones. Past it the
    /// server answers 408 and closes (or just closes a connection that sent nothing).
    /// Default: 60 s.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this long.
    /// Default: 75 s.
    pub keepalive_timeout: Duration,
    /// The longest gap between two reads of a request body (nginx's `client_body_timeout`):
    /// past it the server answers 408 and closes. A gap while reading is paused by the server
    /// (its own output backlog) does not count. Default: 60 s.
    pub body_timeout: Duration,
    /// The slowest a request body may arrive on average, in bytes per second, once it has
    /// been arriving for `body_timeout` (Apache mod_reqtimeout's `MinRate`): a client that
    /// sends one byte just inside every `body_timeout` is cut with 408. Default: none.
    pub body_min_rate: Option<u32>,
    /// Close a connection (with `Connection: close` on the last response) after this many
    /// requests. Default: no limit.
    pub max_requests: Option<u64>,
    /// Headers added to every response that does not set them itself (e.g.
    /// `Strict-Transport-Security` on a TLS listener). Default: none.
    pub response_headers: http::HeaderMap,
    /// Compress responses on the fly (gzip, Brotli) for clients that accept it. Default:
    /// off, as nginx's `gzip`.
    pub compression: Option<Compression>,
    /// Limit the request rate per client address (nginx's `limit_req`). Default: none.
    pub limit_req: Option<LimitReq>,
}

/// A per-client request-rate limit on an HTTP service (nginx's `limit_req`): checked when a
/// request's head is in, before routing, against the client's real address (the PROXY
/// header's, behind a balancer).
///
/// A request past the burst is answered with `status` (and `Retry-After: 1`) before its body
/// is read; one within the burst but ahead of the rate waits its turn unless the limit is
/// `nodelay` (reading from that connection pauses meanwhile). Counted in
/// [`HttpCounts`](crate::stats::HttpCounts) and logged.
///
/// ```
/// use std::sync::Arc;
/// use herd_core::http::{HttpOptions, LimitReq, StatusCode};
/// use herd_core::limit::{Rate, RateLimit, RateTable};
///
/// let table = Arc::new(RateTable::new(65_536));
/// let opts = HttpOptions {
///     limit_req: Some(LimitReq {
///         limit: RateLimit::new(Rate::per_second(10.0), 20, table).nodelay(true),
///         status: StatusCode::TOO_MANY_REQUESTS,
///     }),
///     ..HttpOptions::default()
/// };
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct LimitReq {
    /// The rate, burst and table.
    pub limit: crate::limit::RateLimit,
    /// The answer past the burst: 503 in nginx, 429 (Too Many Requests) as HTTP means it.
    pub status: StatusCode,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(60),
            body_min_rate: None,
            max_requests: None,
            response_headers: http::HeaderMap::new(),
            compression: None,
            limit_req: None,
        }
    }
}

/// One finished exchange, for an access log (see [`HttpService::access_log`]).
#[derive(Debug, Clone, Copy)]
pub struct AccessEntry<'a> {
    /// The request method, or `-` when the request could not be parsed.
    pub method: &'a str,
    /// The request's path and query, or `-` when the request could not be parsed.
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// Body bytes of the response (0 for HEAD, 304 and the like).
    pub bytes: u64,
    /// From the complete request head to the last response byte being queued, on the loop's
    /// clock (millisecond resolution).
    pub duration: Duration,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The request's HTTP version (`HTTP/1.1`), or `-`.
    pub version: &'a str,
    /// The `Referer` header, or `-`.
    pub referer: &'a str,
    /// The `User-Agent` header, or `-`.
    pub user_agent: &'a str,
}

/// A plain-text response naming the status, e.g. `404 Not Found`.
///
/// ```
/// use herd_core::http::{text_response, StatusCode};
///
/// let r = text_response(StatusCode::NOT_FOUND);
/// assert_eq!(r.status(), 404);
/// assert_eq!(r.body().as_bytes(), Some(&b"404 Not Found\n"[..]));
/// ```
pub fn text_response(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
