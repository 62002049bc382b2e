//! The WebSocket connection handler: HTTP until the upgrade, then frames, pings, the close
//! handshake and the heartbeat.
//!
//! [`WsProtocol`] is the per-loop [`Handler`] (made by [`WsService`]); it embeds the HTTP
//! module's per-loop handler and runs its code (generic over the connection's handler type)
//! for every request that is not an upgrade, so pages and WebSocket share a port. On an
//! upgrade request for one of its paths it checks the request (herd-proto's
//! [`check_upgrade`]), asks the [`WsHandler`] (`on_request`), queues the `101`, cancels the HTTP
//! timers and swaps the connection's codec to [`WsCodec`]. From then on it answers Pings,
//! echoes the peer's Close and drops TCP after it, sends a Close with the error's code on a
//! protocol violation (the loop then closes after flushing it, counting
//! [`CloseReason::Decode`] and logging the reason), and runs one periodic heartbeat timer per
//! connection. It must not block, mask what it sends, or send data after its Close. Its
//! caller is the event loop.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ::http::header::{ORIGIN, UPGRADE};
use ::http::StatusCode;
use bytes::Bytes;
use herd_proto::http1::{BodyKind, RequestHead};
use herd_proto::ws::deflate::negotiate;
use herd_proto::ws::{
    check_upgrade, encode_accept_response_with, encode_frame, encode_frame_rsv, CloseAction,
    CloseState, Opcode,
};

use super::codec::{UpgradeCodec, UpgradeError, Upgraded, WsCodec, WsEvent};
use super::deflate::TxDeflate;
use super::{WsHandler, WsOptions, WsRequest, BROADCAST_TOKEN};
use crate::http::{Event, HttpConnState, HttpProtocol, HttpService, Router};
use crate::{CloseReason, Conn, ConnId, Handle, Handler, LoopCx, Server, ServerHandle, Timer};
use herd_proto::ws::close::GOING_AWAY;

/// Timer token of the heartbeat (reserved).
const HEARTBEAT_TOKEN: u64 = u64::MAX;
/// Timer token of the close-handshake deadline (reserved).
const CLOSE_TOKEN: u64 = u64::MAX - 1;

/// A WebSocket service: a handler factory, options, the upgrade paths and the HTTP service
/// for everything else.
///
/// ```no_run
/// use herd_core::http::{Body, HttpService, Response, Router};
/// use herd_core::ws::{WsConn, WsHandler, WsRequest, WsService};
/// use herd_core::Server;
///
/// struct Hello;
/// impl WsHandler for Hello {
///     type State = ();
///     fn on_open(&mut self, cx: &mut WsConn<'_, Self>, _req: &WsRequest) -> Option<()> {
///         cx.send_text("hello");
///         Some(())
///     }
/// }
///
/// let page = Router::new().get("/", |_| Response::new(Body::from("<h1>hi</h1>")));
/// let server = WsService::new(|| Hello)
///     .path("/ws")
///     .http(HttpService::new(page))
///     .serve(Server::new().bind("127.0.0.1:8080")?)?;
/// server.join();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WsService<W: WsHandler> {
    factory: Arc<dyn Fn() -> W + Send + Sync>,
    opts: WsOptions,
    paths: Vec<String>,
    http: Option<HttpService>,
}

/// The service's options and upgrade paths, read by every loop.
struct WsConfig {
    opts: WsOptions,
    /// Exact paths that upgrade; empty means every path.
    paths: Vec<String>,
}

impl<W: WsHandler> WsService<W> {
    /// A service making one handler per loop with `factory`; default options, every path
    /// upgrades, other requests get 404.
    pub fn new(factory: impl Fn() -> W + Send + Sync + 'static) -> Self {
        WsService {
            factory: Arc::new(factory),
            opts: WsOptions::default(),
            paths: Vec::new(),
            http: None,
        }
    }

    /// Replace the options.
    pub fn options(mut self, opts: WsOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Upgrade only on `path` (call again to add more). Without any, every path upgrades.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// Answer requests that are not WebSocket upgrades with `http`.
    pub fn http(mut self, http: HttpService) -> Self {
        self.http = Some(http);
        self
    }

    /// The handler factory for [`Server::serve`].
    pub fn into_factory(self) -> impl Fn() -> WsProtocol<W> + Send + Sync + Clone + 'static {
        let http = self
            .http
            .unwrap_or_else(|| HttpService::new(Router::new()))
            .into_factory();
        let shared = Arc::new(WsConfig {
            opts: self.opts,
            paths: self.paths,
        });
        let factory = self.factory;
        move || WsProtocol {
            handler: factory(),
            http: http(),
            shared: shared.clone(),
        }
    }

    /// Start serving on `server` (its listeners and options).
    pub fn serve(self, server: Server) -> io::Result<ServerHandle> {
        server.serve(self.into_factory())
    }
}

/// The per-loop handler of a [`WsService`].
pub struct WsProtocol<W: WsHandler> {
    handler: W,
    http: HttpProtocol,
    shared: Arc<WsConfig>,
}

/// The state of one connection: HTTP, or upgraded.
pub struct WsConnState<S> {
    inner: Inner<S>,
}

enum Inner<S> {
    Http(HttpConnState),
    Ws { link: Link, user: Option<S> },
}

/// The WebSocket protocol state of an upgraded connection.
struct Link {
    close: CloseState,
    /// The close code to report in `on_close`, once known.
    code: Option<(u16, Box<str>)>,
    /// Loop time of the last message from the peer.
    last_rx: u64,
    heartbeat: Option<Timer>,
    close_timer: Option<Timer>,
    /// permessage-deflate's send side, once negotiated.
    deflate: Option<Box<TxDeflate>>,
}

impl Link {
    fn note_code(&mut self, code: u16, reason: &str) {
        if self.code.is_none() {
            self.code = Some((code, reason.into()));
        }
    }
}

/// The connection a [`WsHandler`] callback is about. Valid only during that callback.
pub struct WsConn<'a, W: WsHandler> {
    conn: Conn<'a, WsProtocol<W>>,
    link: &'a mut Link,
    opts: &'a WsOptions,
}

impl<'a, W: WsHandler> WsConn<'a, W> {
    fn new(cx: &'a mut Conn<'_, WsProtocol<W>>, link: &'a mut Link, opts: &'a WsOptions) -> Self {
        WsConn {
            conn: cx.reborrow(),
            link,
            opts,
        }
    }

    /// Queue one data or control frame (unmasked), unless this side already sent its Close.
    fn frame(&mut self, opcode: Opcode, payload: &[u8]) -> bool {
        if !self.link.close.can_send() {
            return false;
        }
        if matches!(opcode, Opcode::Text | Opcode::Binary) {
            crate::stats::count(|p| p.ws.messages_out += 1);
            if let Some(tx) = self
                .link
                .deflate
                .as_mut()
                .filter(|t| t.wants(payload.len()))
            {
                let conn = &mut self.conn;
                return tx.with_compressed(payload, |packed| {
                    conn.with_output(|dst| encode_frame_rsv(dst, true, 0b100, opcode, packed, None))
                        .is_some()
                });
            }
        }
        self.conn
            .with_output(|dst| encode_frame(dst, true, opcode, payload, None))
            .is_some()
    }

    /// Send a text message. Returns false if it was dropped (the connection is closing).
    pub fn send_text(&mut self, text: &str) -> bool {
        self.frame(Opcode::Text, text.as_bytes())
    }

    /// Send a binary message. Returns false if it was dropped (the connection is closing).
    pub fn send_binary(&mut self, data: &[u8]) -> bool {
        self.frame(Opcode::Binary, data)
    }

    /// Send a Ping with `data` (at most 125 bytes, else nothing is sent and false returned).
    pub fn ping(&mut self, data: &[u8]) -> bool {
        data.len() <= 125 && self.frame(Opcode::Ping, data)
    }

    /// Queue frames already encoded (e.g. by [`text_frame`](super::text_frame)) as they are.
    pub fn send_encoded(&mut self, frames: &[u8]) -> bool {
        if !self.link.close.can_send() {
            return false;
        }
        self.conn.send_raw(frames);
        true
    }

    /// Start the close handshake with `code` and `reason` (cut to fit a control frame); the
    /// connection closes when the peer answers, or after [`WsOptions::close_timeout`].
    pub fn close(&mut self, code: u16, reason: &str) {
        start_close(
            &mut self.conn,
            self.link,
            self.opts.close_timeout,
            code,
            reason,
        );
    }

    /// Whether messages may still be sent (no Close sent yet).
    pub fn can_send(&self) -> bool {
        self.link.close.can_send()
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// A cross-thread handle to this connection (for [`Room`](super::Room) or
    /// [`Handle::notify`]).
    pub fn handle(&self) -> Handle {
        self.conn.handle()
    }

    /// This connection as a [`Room`](super::Room) member: broadcasts reach it compressed
    /// (one compression per message for the whole room) when it negotiated permessage-deflate
    /// without context takeover on the server's side.
    pub fn member(&self) -> super::Member {
        super::Member::new(
            self.conn.handle(),
            self.link.deflate.as_ref().and_then(|t| t.broadcast_key()),
        )
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.conn.peer_addr()
    }

    /// The loop's current time in ms.
    pub fn now_ms(&self) -> u64 {
        self.conn.now_ms()
    }

    /// The index of the loop running this connection.
    pub fn loop_index(&self) -> usize {
        self.conn.loop_index()
    }

    /// True while output is above the high watermark (stop pushing until
    /// [`on_backpressure(false)`](WsHandler::on_backpressure)).
    pub fn is_paused(&self) -> bool {
        self.conn.is_paused()
    }

    /// Run [`on_timer(token)`](WsHandler::on_timer) once after `delay`. Tokens `u64::MAX` and
    /// `u64::MAX - 1` are reserved.
    pub fn run_after(&mut self, delay: Duration, token: u64) -> Timer {
        self.conn.run_after(delay, token)
    }

    /// Cancel a timer set with [`run_after`](Self::run_after).
    pub fn cancel_timer(&mut self, timer: Timer) {
        self.conn.cancel_timer(timer);
    }

    /// Run `fut` as a task of this connection on its loop (see [`crate::task`]): dropped when
    /// the connection closes; a panic in it closes the connection.
    pub fn spawn<F>(&mut self, fut: F) -> crate::task::JoinHandle<F::Output>
    where
        F: std::future::Future + 'static,
        F::Output: 'static,
    {
        self.conn.spawn(fut)
    }

    /// Stop reading from the peer until [`resume_reading`](Self::resume_reading).
    pub fn pause_reading(&mut self) {
        self.conn.pause_reading();
    }

    /// Undo [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&mut self) {
        self.conn.resume_reading();
    }
}

/// Send this side's Close (if not sent yet) and arm the close-handshake deadline.
fn start_close<H: Handler>(
    cx: &mut Conn<'_, H>,
    link: &mut Link,
    timeout: Duration,
    code: u16,
    reason: &str,
) {
    if !link.close.can_send() {
        return;
    }
    link.note_code(code, reason);
    let action = cx.with_output(|dst| link.close.initiate(dst, code, reason));
    if action == Some(CloseAction::SendThenAwaitPeer) && link.close_timer.is_none() {
        link.close_timer = Some(cx.run_after(timeout, CLOSE_TOKEN));
    }
}

/// Whether a request asks for a protocol upgrade (the handshake checks decide if it is valid).
fn is_upgrade_attempt(head: &RequestHead) -> bool {
    head.upgrade || head.request.headers.contains_key(UPGRADE)
}

/// A short refusal with `status`, then close after it.
fn refuse_upgrade<H: Handler>(
    cx: &mut Conn<'_, H>,
    hs: &mut HttpConnState,
    status: StatusCode,
    why: &str,
) {
    tracing::debug!("ws {}: upgrade refused ({status}): {why}", hs.peer_addr());
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}\n", status.as_u16());
    cx.with_output(|dst| {
        dst.extend_from_slice(
            format!(
                "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                status.as_u16(),
                body.len()
            )
            .as_bytes(),
        )
    });
    hs.detach(cx);
    cx.close_with(CloseReason::Refused, true);
}

impl<W: WsHandler> WsProtocol<W> {
    /// Whether this request head asks for a WebSocket on one of our paths, on an idle HTTP
    /// connection (an upgrade pipelined behind unfinished requests is left to HTTP).
    fn wants(&self, head: &RequestHead, hs: &HttpConnState) -> bool {
        let paths = &self.shared.paths;
        is_upgrade_attempt(head)
            && !hs.is_busy()
            && !hs.is_closing()
            && (paths.is_empty() || paths.iter().any(|p| p == head.request.uri.path()))
    }

    /// Answer an upgrade request: refuse it, or switch the connection to WebSocket.
    fn upgrade(
        &mut self,
        cx: &mut Conn<'_, Self>,
        st: &mut WsConnState<W::State>,
        head: RequestHead,
    ) {
        let Inner::Http(hs) = &mut st.inner else {
            return;
        };
        let parts = head.request;
        let up = match check_upgrade(&parts.method, parts.version, &parts.headers) {
            Ok(up) => up,
            Err(e) => {
                tracing::debug!("ws {}: bad upgrade request: {e}", hs.peer_addr());
                cx.with_output(|dst| e.encode_error_response(dst));
                hs.detach(cx);
                cx.close_with(CloseReason::Decode, true);
                return;
            }
        };
        if head.body != BodyKind::None {
            return refuse_upgrade(cx, hs, StatusCode::BAD_REQUEST, "upgrade with a body");
        }
        let opts = &self.shared.opts;
        // The server's preference decides among what the client offered.
        let protocol = opts
            .protocols
            .iter()
            .find(|p| up.protocols.iter().any(|o| o == *p))
            .cloned();
        let mut req = WsRequest {
            uri: parts.uri,
            headers: parts.headers,
            peer_addr: hs.peer_addr(),
            offered_protocols: up.protocols.clone(),
            protocol,
        };
        if let (Some(allowed), Some(origin)) = (&opts.allowed_origins, req.headers.get(ORIGIN)) {
            if !allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) {
                return refuse_upgrade(cx, hs, StatusCode::FORBIDDEN, "origin not allowed");
            }
        }
        if let Err(status) = self.handler.on_request(&mut req) {
            return refuse_upgrade(cx, hs, status, "refused by the handler");
        }
        let accept = up.accept_key();
        let deflate = opts.deflate.as_ref().and_then(|cfg| {
            let params = negotiate(up.extensions.iter().map(String::as_str), cfg)?;
            Some((params, cfg))
        });
        let ext = deflate.as_ref().map(|(p, _)| p.response_value());
        cx.with_output(|dst| {
            encode_accept_response_with(dst, &accept, req.protocol.as_deref(), ext.as_deref())
        });
        hs.detach(cx);
        let mut codec = WsCodec::new(opts.max_frame, opts.max_message);
        if let Some((params, _)) = &deflate {
            codec = codec.with_deflate(params);
        }
        *cx.codec_mut() = UpgradeCodec::Ws(codec);
        let mut link = Link {
            close: CloseState::Open,
            code: None,
            last_rx: cx.now_ms(),
            heartbeat: None,
            close_timer: None,
            deflate: deflate.map(|(params, cfg)| Box::new(TxDeflate::new(&params, cfg))),
        };
        let period = match (opts.ping_interval, opts.idle_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(period) = period.filter(|p| !p.is_zero()) {
            link.heartbeat = Some(cx.run_every(period, HEARTBEAT_TOKEN));
        }
        st.inner = Inner::Ws { link, user: None };
        let Inner::Ws { link, user } = &mut st.inner else {
            return;
        };
        let mut wcx = WsConn::new(cx, link, &self.shared.opts);
        match self.handler.on_open(&mut wcx, &req) {
            Some(s) => *user = Some(s),
            None => wcx.close(super::codes::POLICY_VIOLATION, "refused"),
        }
    }

    /// A WebSocket event on an upgraded connection.
    fn ws_event(
        &mut self,
        cx: &mut Conn<'_, Self>,
        link: &mut Link,
        user: &mut Option<W::State>,
        ev: WsEvent<'_>,
    ) {
        link.last_rx = cx.now_ms();
        let opts = &self.shared.opts;
        match ev {
            WsEvent::Text(text) => {
                crate::stats::count(|p| p.ws.messages_in += 1);
                if let (true, Some(s)) = (link.close.can_send(), user.as_mut()) {
                    self.handler
                        .on_text(&mut WsConn::new(cx, link, opts), s, &text);
                }
            }
            WsEvent::Binary(data) => {
                crate::stats::count(|p| p.ws.messages_in += 1);
                if let (true, Some(s)) = (link.close.can_send(), user.as_mut()) {
                    self.handler
                        .on_binary(&mut WsConn::new(cx, link, opts), s, &data);
                }
            }
            WsEvent::Ping(data) => {
                if link.close.can_send() {
                    cx.with_output(|dst| encode_frame(dst, true, Opcode::Pong, &data, None));
                }
            }
            WsEvent::Pong(data) => {
                if let Some(s) = user.as_mut() {
                    self.handler
                        .on_pong(&mut WsConn::new(cx, link, opts), s, &data);
                }
            }
            WsEvent::Close(payload) => {
                let payload = payload.as_ref().map(|(code, r)| (*code, r.as_ref()));
                match payload {
                    Some((code, reason)) => link.note_code(code, reason),
                    None => link.note_code(super::codes::NO_STATUS, ""),
                }
                let action = cx.with_output(|dst| link.close.on_peer_close(dst, payload));
                match action {
                    Some(CloseAction::SendThenClose) => {
                        cx.close_with(CloseReason::PeerClosed, true)
                    }
                    Some(CloseAction::CloseNow) => cx.close_with(CloseReason::Local, true),
                    _ => {}
                }
            }
        }
    }

    /// The heartbeat timer: close a peer silent past `idle_timeout`, ping one silent past
    /// `ping_interval`.
    fn heartbeat(&mut self, cx: &mut Conn<'_, Self>, link: &mut Link) {
        let opts = &self.shared.opts;
        let silent = Duration::from_millis(cx.now_ms().saturating_sub(link.last_rx));
        if opts.idle_timeout.is_some_and(|t| silent >= t) {
            tracing::debug!("ws {}: silent for {silent:?}: closing", cx.peer_addr());
            link.note_code(super::codes::GOING_AWAY, "idle timeout");
            if link.close.can_send() {
                cx.with_output(|dst| link.close.initiate(dst, 1001, "idle timeout"));
            }
            cx.close_with(CloseReason::Heartbeat, true);
        } else if opts.ping_interval.is_some_and(|t| silent >= t) && link.close.can_send() {
            cx.with_output(|dst| encode_frame(dst, true, Opcode::Ping, b"", None));
        }
    }
}

impl<W: WsHandler> Handler for WsProtocol<W> {
    type State = WsConnState<W::State>;
    type Codec = UpgradeCodec;

    fn new_codec(&mut self) -> UpgradeCodec {
        UpgradeCodec::Http(self.http.codec())
    }

    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        self.http.loop_start(lp.now_ms());
    }

    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<Self::State> {
        Some(WsConnState {
            inner: Inner::Http(self.http.open(cx)),
        })
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, st: &mut Self::State, msg: Upgraded<'_>) {
        match msg {
            Upgraded::Http(Event::Head(head)) => {
                let wants = matches!(&st.inner, Inner::Http(hs) if self.wants(&head, hs));
                if wants {
                    self.upgrade(cx, st, head);
                } else if let Inner::Http(hs) = &mut st.inner {
                    self.http.message(cx, hs, Event::Head(head));
                }
            }
            Upgraded::Http(ev) => {
                if let Inner::Http(hs) = &mut st.inner {
                    self.http.message(cx, hs, ev);
                }
            }
            Upgraded::Ws(ev) => {
                if let Inner::Ws { link, user } = &mut st.inner {
                    self.ws_event(cx, link, user, ev);
                }
            }
        }
    }

    fn on_decode_error(
        &mut self,
        cx: &mut Conn<'_, Self>,
        st: &mut Self::State,
        err: &UpgradeError,
    ) {
        if let (UpgradeError::Ws(e), Inner::Ws { link, .. }) = (err, &mut st.inner) {
            link.note_code(e.close_code, e.reason);
            cx.with_output(|dst| link.close.on_error(dst, e));
        }
    }

    fn on_backpressure(&mut self, cx: &mut Conn<'_, Self>, st: &mut Self::State, paused: bool) {
        match &mut st.inner {
            Inner::Http(hs) => self.http.backpressure(cx, hs, paused),
            Inner::Ws { link, user } => {
                if let Some(s) = user.as_mut() {
                    let mut wcx = WsConn::new(cx, link, &self.shared.opts);
                    self.handler.on_backpressure(&mut wcx, s, paused);
                }
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Conn<'_, Self>, st: &mut Self::State, token: u64) {
        match &mut st.inner {
            Inner::Http(hs) => self.http.timer(cx, hs, token),
            Inner::Ws { link, .. } if token == HEARTBEAT_TOKEN => self.heartbeat(cx, link),
            Inner::Ws { link, .. } if token == CLOSE_TOKEN => {
                link.close_timer = None;
                tracing::debug!("ws {}: no Close from the peer in time", cx.peer_addr());
                cx.close_with(CloseReason::Timeout, false);
            }
            Inner::Ws { link, user } => {
                if let Some(s) = user.as_mut() {
                    let mut wcx = WsConn::new(cx, link, &self.shared.opts);
                    self.handler.on_timer(&mut wcx, s, token);
                }
            }
        }
    }

    fn on_notify(
        &mut self,
        cx: &mut Conn<'_, Self>,
        st: &mut Self::State,
        token: u64,
        data: Bytes,
    ) {
        match &mut st.inner {
            Inner::Http(hs) => self.http.notify(cx, hs, token),
            Inner::Ws { link, .. } if token == BROADCAST_TOKEN => {
                if link.close.can_send() {
                    cx.send_raw(&data);
                }
            }
            Inner::Ws { link, user } => {
                if let Some(s) = user.as_mut() {
                    let mut wcx = WsConn::new(cx, link, &self.shared.opts);
                    self.handler.on_notify(&mut wcx, s, token, data);
                }
            }
        }
    }

    fn on_close(&mut self, cx: &mut Conn<'_, Self>, st: Self::State, _reason: CloseReason) {
        let Inner::Ws { mut link, user } = st.inner else {
            return;
        };
        for t in [link.heartbeat.take(), link.close_timer.take()]
            .into_iter()
            .flatten()
        {
            cx.cancel_timer(t);
        }
        let (code, reason) = link
            .code
            .take()
            .unwrap_or((super::codes::ABNORMAL, "".into()));
        crate::stats::ws_closed(code);
        if let Some(s) = user {
            let mut wcx = WsConn::new(cx, &mut link, &self.shared.opts);
            self.handler.on_close(&mut wcx, s, code, &reason);
        }
    }

    fn on_stop(&mut self, cx: &mut Conn<'_, Self>, st: &mut Self::State) {
        match &mut st.inner {
            Inner::Ws { link, .. } => {
                let timeout = self.shared.opts.close_timeout;
                start_close(cx, link, timeout, GOING_AWAY, "server stopping");
            }
            Inner::Http(hs) => hs.stop(),
        }
    }

    fn held_bytes(&self, st: &Self::State) -> usize {
        match &st.inner {
            Inner::Http(hs) => hs.held_bytes(),
            Inner::Ws { .. } => 0,
        }
    }

    fn is_busy(&self, st: &Self::State) -> bool {
        match &st.inner {
            Inner::Http(hs) => hs.is_busy(),
            // Waiting for the peer's answer to our Close (bounded by close_timeout).
            Inner::Ws { link, .. } => link.close == CloseState::CloseSent,
        }
    }
}
