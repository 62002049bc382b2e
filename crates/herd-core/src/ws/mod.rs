//! The WebSocket server: RFC 6455 on herd's event loops, reached by an HTTP/1.1 upgrade.
//!
//! Top to bottom:
//! - [`WsService`] is what a user builds: a [`WsHandler`] factory (one handler per loop),
//!   [`WsOptions`] (limits, heartbeat, close timeout, subprotocols, allowed origins), the
//!   paths that upgrade (default: every path) and, optionally, an
//!   [`HttpService`](crate::http::HttpService) answering every request that is not an upgrade
//!   (pages, static files) on the same port. [`WsService::serve`] starts it on a
//!   [`Server`](crate::Server).
//! - [`WsProtocol`] is the per-loop [`Handler`](crate::Handler). A connection starts as HTTP (run
//!   by the HTTP module's own code) with an [`UpgradeCodec`]; a valid upgrade request on a
//!   WebSocket path is answered `101` and the codec switches to [`WsCodec`] in place, so bytes
//!   the client sent right after its request are already read as frames. Invalid upgrades get
//!   400, or 426 for a wrong version.
//! - The handler sees each connection through [`WsConn`] (send text/binary, ping, close with a
//!   code, a [`Handle`](crate::Handle) for other threads) and gets `on_text`, `on_binary`,
//!   `on_close(code, reason)`. Pings are answered, the close handshake is run, and protocol
//!   errors close with their code (1002/1007/1009) by the server itself: the loop counts them as
//!   [`CloseReason::Decode`](crate::CloseReason::Decode) and logs them.
//! - [`Room`] broadcasts to connections spread over loops: the frame is encoded once into
//!   [`Bytes`] and queued to each member through its handle.
//! - Heartbeat: one coarse periodic timer per connection (never a timer per message) pings a
//!   peer that has been silent for `ping_interval` and closes one silent for `idle_timeout`.
//!
//! - permessage-deflate (RFC 7692), when [`WsOptions::deflate`] is set: negotiated in the
//!   upgrade, messages at or above its threshold sent compressed, compressed messages inflated
//!   within `max_message`; contexts are shared per loop unless a connection keeps its window
//!   (see [`DeflateConfig`]). A [`Room`] compresses a broadcast once per parameter set.
//!
//! What this module does not do: parse frames (that is [`herd_proto::ws`], sans-IO), negotiate
//! any other extension, or mask server frames.
//!
//! ```no_run
//! use herd_core::ws::{WsConn, WsHandler, WsRequest, WsService};
//! use herd_core::Server;
//!
//! struct Echo;
//! impl WsHandler for Echo {
//!     type State = ();
//!     fn on_open(&mut self, _cx: &mut WsConn<'_, Self>, _req: &WsRequest) -> Option<()> {
//!         Some(())
//!     }
//!     fn on_text(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), text: &str) {
//!         cx.send_text(text);
//!     }
//!     fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), data: &[u8]) {
//!         cx.send_binary(data);
//!     }
//! }
//!
//! let server = WsService::new(|| Echo).serve(Server::new().bind("127.0.0.1:9001")?)?;
//! server.join();
//! # Ok::<(), std::io::Error>(())
//! ```

mod broadcast;
mod codec;
mod deflate;
mod server;
mod tasks;

use std::net::SocketAddr;
use std::time::Duration;

use ::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;

pub use broadcast::{binary_frame, text_frame, Member, Room};
pub use codec::{UpgradeCodec, UpgradeError, Upgraded, WsCodec, WsEvent, WAIT_MAX};
pub use herd_proto::ws::close as codes;
pub use herd_proto::ws::deflate::DeflateConfig;
pub use server::{WsConn, WsConnState, WsProtocol, WsService};
pub use tasks::{WsMessage, WsTaskConn, WsTaskState, WsTasks};

/// The `Handle::notify` token under which [`Room`] delivers pre-encoded frames; a handler's
/// own notify tokens must differ from it.
pub const BROADCAST_TOKEN: u64 = u64::MAX;

/// Options of the WebSocket server. `Default` gives 16 MiB limits, a ping after 30 s of
/// silence, a close after 60 s, and a 5 s close handshake.
///
/// ```
/// use std::time::Duration;
/// use herd_core::ws::WsOptions;
///
/// let opts = WsOptions {
///     max_message: 1 << 20,
///     protocols: vec!["chat".into()],
///     ..WsOptions::default()
/// };
/// assert_eq!(opts.idle_timeout, Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Largest frame payload accepted (1009 beyond it).
    pub max_frame: u64,
    /// Largest message accepted, fragments summed (1009 beyond it).
    pub max_message: u64,
    /// Ping a peer silent for this long (checked by the connection's heartbeat timer).
    pub ping_interval: Option<Duration>,
    /// Close (1001) a peer silent for this long, counted as
    /// [`CloseReason::Heartbeat`](crate::CloseReason::Heartbeat).
    pub idle_timeout: Option<Duration>,
    /// After this server sent a Close, how long it waits for the peer's before dropping TCP.
    pub close_timeout: Duration,
    /// Subprotocols this server speaks, in its order of preference; the first one the client
    /// offers is selected (the handler may change it in [`WsHandler::on_request`]).
    pub protocols: Vec<String>,
    /// If set, an upgrade whose `Origin` is not in this list is refused with 403. Browsers
    /// always send `Origin`; a request without one is let through.
    pub allowed_origins: Option<Vec<String>>,
    /// permessage-deflate (RFC 7692): `None` (the default) declines every offer; `Some`
    /// accepts the first offer it can honour, with these limits and this threshold.
    pub deflate: Option<DeflateConfig>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            max_frame: herd_proto::ws::DEFAULT_MAX_FRAME,
            max_message: herd_proto::ws::DEFAULT_MAX_MESSAGE,
            ping_interval: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(60)),
            close_timeout: Duration::from_secs(5),
            protocols: Vec::new(),
            allowed_origins: None,
            deflate: None,
        }
    }
}

/// The upgrade request, as the handler sees it in [`WsHandler::on_request`] and
/// [`WsHandler::on_open`].
#[derive(Debug, Clone)]
pub struct WsRequest {
    /// The request target (path and query).
    pub uri: Uri,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The subprotocols the client offered, in its order of preference.
    pub offered_protocols: Vec<String>,
    /// The subprotocol the `101` will select (pre-set from [`WsOptions::protocols`]).
    pub protocol: Option<String>,
}

impl WsRequest {
    /// The request path.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The `Origin` header, if present and text.
    pub fn origin(&self) -> Option<&str> {
        self.headers
            .get(::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
    }
}

/// Serves the WebSocket connections of one event loop (one instance per loop).
///
/// Lifecycle: `on_request` (may refuse with an HTTP status), then the `101` is queued and
/// `on_open` runs (returning `None` closes with 1008); then messages; then `on_close` exactly
/// once with the close code: the peer's (1005 if its Close had none), the one this server sent,
/// or 1006 if the connection dropped without a Close.
pub trait WsHandler: Sized + 'static {
    /// Per-connection state.
    type State;

    /// An upgrade request passed the RFC checks (and the origin list). Return `Err(status)` to
    /// refuse it; set `req.protocol` to choose another offered subprotocol (or none).
    fn on_request(&mut self, req: &mut WsRequest) -> Result<(), StatusCode> {
        let _ = req;
        Ok(())
    }

    /// The `101` has been queued: the connection is a WebSocket now. Sends made here follow
    /// the `101`. Return `None` to close it (1008).
    fn on_open(&mut self, cx: &mut WsConn<'_, Self>, req: &WsRequest) -> Option<Self::State>;

    /// A text message arrived.
    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, st: &mut Self::State, text: &str) {
        let _ = (cx, st, text);
    }

    /// A binary message arrived.
    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, st: &mut Self::State, data: &[u8]) {
        let _ = (cx, st, data);
    }

    /// A Pong arrived (the answer to a heartbeat ping or to [`WsConn::ping`]).
    fn on_pong(&mut self, cx: &mut WsConn<'_, Self>, st: &mut Self::State, data: &[u8]) {
        let _ = (cx, st, data);
    }

    /// The connection closed. Sends are dropped from here on.
    fn on_close(&mut self, cx: &mut WsConn<'_, Self>, st: Self::State, code: u16, reason: &str) {
        let _ = (cx, st, code, reason);
    }

    /// A timer set with [`WsConn::run_after`] fired.
    fn on_timer(&mut self, cx: &mut WsConn<'_, Self>, st: &mut Self::State, token: u64) {
        let _ = (cx, st, token);
    }

    /// A [`Handle::notify`](crate::Handle::notify) arrived (any token but
    /// [`BROADCAST_TOKEN`]).
    fn on_notify(
        &mut self,
        cx: &mut WsConn<'_, Self>,
        st: &mut Self::State,
        token: u64,
        data: Bytes,
    ) {
        let _ = (cx, st, token, data);
    }

    /// Output passed the high watermark (`paused`) or drained below the low one.
    fn on_backpressure(&mut self, cx: &mut WsConn<'_, Self>, st: &mut Self::State, paused: bool) {
        let _ = (cx, st, paused);
    }
}
