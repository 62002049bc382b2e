//! The message-id router: [`Router`] maps message ids to handlers; [`FrameConn`] is what a
//! handler sees of its connection; [`FrameHandle`] pushes frames from anywhere.
//!
//! Four kinds of route, all stored behind one type-erased signature so dispatch is one
//! binary search and one indirect call:
//! - [`Router::route_raw`]: the body as borrowed bytes (straight from the loop's read buffer);
//! - [`Router::route`]: a prost message decoded from the body, a prost reply encoded straight
//!   into the connection's output buffer (no temporary buffer);
//! - [`Router::route_blocking`] / [`Router::route_blocking_raw`]: the request is decoded (or
//!   copied) on the loop, run on the [`WorkerPool`](crate::pool::WorkerPool), and its reply
//!   comes back through the connection's [`Handle`] and the loop's queue; a full pool answers
//!   [`ErrorCode::Busy`] at once;
//! - [`Router::route_async`]: the request is decoded on the loop and an async function's
//!   future runs as a task of the connection (see [`crate::task`]); its reply takes the pool
//!   reply's path back.
//!
//! This module does not read sockets, time anything out or rate-limit: each loop's
//! [`FrameProtocol`](super::FrameProtocol) decodes frames, applies the heartbeat and flood
//! guard, answers pings, then calls [`Router::find`] and the route. Error frames for a failed
//! route are written by the protocol from the [`HandlerError`] the route returns.

use std::fmt;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use herd_proto::frame::{self as wire, ErrorCode, Flags, FrameError, HEADER_LEN};
use prost::Message;

use super::service::{FrameConnState, FrameDispatch, FrameProtocol, POOL_REPLY};
use crate::{CloseReason, Conn, ConnId, Handle};

/// Why a handler failed: an [`ErrorCode`] and a text, sent to the peer as an error frame
/// answering the request (the connection stays open).
///
/// Any `std::error::Error` converts into one with code [`ErrorCode::Handler`], so `?` works in
/// handlers; [`HandlerError::new`] makes one from text.
///
/// ```
/// use herd_core::frame::HandlerError;
/// use herd_proto::frame::ErrorCode;
///
/// let e = HandlerError::new("no such room");
/// assert_eq!((e.code(), e.text()), (ErrorCode::Handler, "no such room"));
/// let parse: Result<u32, _> = "x".parse::<u32>();
/// let e: HandlerError = parse.unwrap_err().into();
/// assert_eq!(e.code(), ErrorCode::Handler);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    code: ErrorCode,
    text: String,
}

impl HandlerError {
    /// A handler failure ([`ErrorCode::Handler`]) with this text.
    pub fn new(text: impl Into<String>) -> HandlerError {
        HandlerError::with_code(ErrorCode::Handler, text)
    }

    /// A failure with a specific code (e.g. [`ErrorCode::BadBody`] for a request the handler
    /// found invalid after decoding, or [`ErrorCode::Busy`]).
    pub fn with_code(code: ErrorCode, text: impl Into<String>) -> HandlerError {
        HandlerError {
            code,
            text: text.into(),
        }
    }

    /// The code sent to the peer.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The text sent to the peer.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> HandlerError {
        HandlerError::new(e.to_string())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.text)
    }
}

/// What an `on_close` hook learns about the connection that closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseInfo {
    /// The connection.
    pub id: ConnId,
    /// Its peer's address.
    pub peer_addr: SocketAddr,
    /// Why it closed.
    pub reason: CloseReason,
}

/// A route after type erasure: decode, run, reply (or submit to the pool).
pub(crate) type RouteFn<U> =
    dyn Fn(&mut FrameConn<'_, '_, U>, &[u8]) -> Result<(), HandlerError> + Send + Sync;

type CloseHook<U> = dyn Fn(U, CloseInfo) + Send + Sync;

/// Message id → handler table, shared by every loop of a [`FrameService`](super::FrameService).
///
/// `U` is the typed per-connection user data (made with `U::default()` when a connection
/// opens, reachable as [`FrameConn::user`], handed to the [`on_close`](Self::on_close) hook).
/// Handlers are `Fn + Send + Sync` because one router serves all loops; they run on the loop
/// that owns the connection (blocking ones on the pool) and must not block.
///
/// ```
/// use herd_core::frame::{FrameService, HandlerError, Router};
///
/// #[derive(Clone, PartialEq, herd_core::frame::prost::Message)]
/// #[prost(prost_path = "::herd_core::frame::prost")]
/// struct Add { #[prost(int64, tag = "1")] a: i64, #[prost(int64, tag = "2")] b: i64 }
/// #[derive(Clone, PartialEq, herd_core::frame::prost::Message)]
/// #[prost(prost_path = "::herd_core::frame::prost")]
/// struct Sum { #[prost(int64, tag = "1")] sum: i64 }
///
/// #[derive(Default)]
/// struct Session { calls: u64 }
///
/// let router = Router::<Session>::with_user_data()
///     .route_raw(1, |cx, body| {
///         cx.user().calls += 1;
///         Ok(Some(body.to_ascii_uppercase()))
///     })
///     .route(2, |_cx, req: Add| Ok(Some(Sum { sum: req.a + req.b })))
///     .route_blocking(3, |req: Add| {
///         req.a.checked_mul(req.b).map(|sum| Sum { sum }).ok_or_else(|| HandlerError::new("overflow"))
///     })
///     .on_close(|session, info| println!("{} made {} calls", info.peer_addr, session.calls));
/// assert!(router.find(2).is_some() && router.find(9).is_none());
/// let server = FrameService::new(router);
/// # drop(server);
/// ```
pub struct Router<U: 'static = ()> {
    /// Sorted by message id.
    routes: Vec<(u16, Box<RouteFn<U>>)>,
    new_user: Box<dyn Fn() -> U + Send + Sync>,
    on_close: Option<Box<CloseHook<U>>>,
    blocking: bool,
}

impl Router<()> {
    /// An empty router without per-connection user data.
    pub fn new() -> Router<()> {
        Router::with_user_data()
    }
}

impl Default for Router<()> {
    fn default() -> Self {
        Router::new()
    }
}

impl<U: Default + 'static> Router<U> {
    /// An empty router whose connections each carry a `U`, made with `U::default()` when the
    /// connection opens. Name the type: `Router::<Session>::with_user_data()`.
    pub fn with_user_data() -> Router<U> {
        Router::with_user_factory(U::default)
    }
}

impl<U: 'static> Router<U> {
    /// An empty router whose connections each carry a `U` made by `new_user` when the
    /// connection opens (on its loop; it must not block).
    pub fn with_user_factory(new_user: impl Fn() -> U + Send + Sync + 'static) -> Router<U> {
        Router {
            routes: Vec::new(),
            new_user: Box::new(new_user),
            on_close: None,
            blocking: false,
        }
    }

    /// Handle `msg_id` with raw bytes: `f` gets the body (borrowed from the read buffer) and
    /// returns an optional reply body, sent with the RESPONSE flag and the request id. To avoid
    /// the `Vec`, reply with [`FrameConn::reply`] and return `Ok(None)`.
    ///
    /// # Panics
    ///
    /// If `msg_id` is reserved (`0xFFF0..=0xFFFF`) or already routed.
    pub fn route_raw<F>(self, msg_id: u16, f: F) -> Self
    where
        F: Fn(&mut FrameConn<'_, '_, U>, &[u8]) -> Result<Option<Vec<u8>>, HandlerError>
            + Send
            + Sync
            + 'static,
    {
        self.insert(
            msg_id,
            false,
            Box::new(move |cx: &mut FrameConn<'_, '_, U>, body: &[u8]| {
                if let Some(reply) = f(cx, body)? {
                    cx.reply(&reply);
                }
                Ok(())
            }),
        )
    }

    /// Handle `msg_id` with prost messages: the body is decoded into `Req` (an undecodable body
    /// is answered with [`ErrorCode::BadBody`] without calling `f`), and a returned `Resp` is
    /// encoded straight into the output buffer as the reply.
    ///
    /// # Panics
    ///
    /// If `msg_id` is reserved or already routed.
    pub fn route<Req, Resp, F>(self, msg_id: u16, f: F) -> Self
    where
        Req: Message + Default,
        Resp: Message,
        F: Fn(&mut FrameConn<'_, '_, U>, Req) -> Result<Option<Resp>, HandlerError>
            + Send
            + Sync
            + 'static,
    {
        self.insert(
            msg_id,
            false,
            Box::new(move |cx: &mut FrameConn<'_, '_, U>, body: &[u8]| {
                let req = Req::decode(body).map_err(bad_body)?;
                if let Some(resp) = f(cx, req)? {
                    cx.reply_msg(&resp);
                }
                Ok(())
            }),
        )
    }

    /// Handle `msg_id` on the worker pool: the body is decoded into `Req` on the loop
    /// ([`ErrorCode::BadBody`] if it does not decode), `f` runs on a pool thread, and its reply
    /// (or error, or [`ErrorCode::Internal`] if it panics) is encoded there and written by the
    /// connection's loop. If the pool's queue is full the request is answered
    /// [`ErrorCode::Busy`] at once. If the connection closes before the reply is ready, the
    /// reply is dropped and counted ([`Stats::stale_commands`](crate::Stats::stale_commands)),
    /// never written to a later connection in the same slot.
    ///
    /// # Panics
    ///
    /// If `msg_id` is reserved or already routed.
    pub fn route_blocking<Req, Resp, F>(self, msg_id: u16, f: F) -> Self
    where
        Req: Message + Default + Send + 'static,
        Resp: Message,
        F: Fn(Req) -> Result<Resp, HandlerError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.insert(
            msg_id,
            true,
            Box::new(move |cx: &mut FrameConn<'_, '_, U>, body: &[u8]| {
                let req = Req::decode(body).map_err(bad_body)?;
                let f = f.clone();
                cx.submit(move |out| {
                    f(req)?.encode_raw(out);
                    Ok(())
                })
            }),
        )
    }

    /// Like [`route_blocking`](Self::route_blocking) with raw bytes: the body is copied on the
    /// loop and `f` returns the reply body.
    ///
    /// # Panics
    ///
    /// If `msg_id` is reserved or already routed.
    pub fn route_blocking_raw<F>(self, msg_id: u16, f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<Vec<u8>, HandlerError> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.insert(
            msg_id,
            true,
            Box::new(move |cx: &mut FrameConn<'_, '_, U>, body: &[u8]| {
                let body = body.to_vec();
                let f = f.clone();
                cx.submit(move |out| {
                    out.extend_from_slice(&f(&body)?);
                    Ok(())
                })
            }),
        )
    }

    /// Handle `msg_id` with an async function: the body is decoded into `Req` on the loop
    /// ([`ErrorCode::BadBody`] if it does not decode), and the future `f` returns runs as a task
    /// of the connection on its loop, so it may await cosockets, TLS cosockets, sleeps and
    /// other tasks without blocking the loop (it need not be `Send`). Its reply, or error
    /// frame ([`ErrorCode::Internal`] if it panics), is written when it is ready: replies carry
    /// their request id, so later requests are not held behind a slow one (as with
    /// [`route_blocking`](Self::route_blocking)). A connection that closes cancels its tasks.
    ///
    /// # Panics
    ///
    /// If `msg_id` is reserved or already routed.
    pub fn route_async<Req, Resp, F, Fut>(self, msg_id: u16, f: F) -> Self
    where
        Req: Message + Default + 'static,
        Resp: Message + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Resp, HandlerError>> + 'static,
    {
        self.insert(
            msg_id,
            false,
            Box::new(move |cx: &mut FrameConn<'_, '_, U>, body: &[u8]| {
                let req = Req::decode(body).map_err(bad_body)?;
                let fut = f(req);
                cx.spawn_reply(async move {
                    let resp = fut.await?;
                    Ok(move |out: &mut Vec<u8>| resp.encode_raw(out))
                });
                Ok(())
            }),
        )
    }

    /// Run `hook` with the user data of every connection that closes (after its last frame),
    /// e.g. to leave chat rooms. It runs on the connection's loop and must not block.
    pub fn on_close<F>(mut self, hook: F) -> Self
    where
        F: Fn(U, CloseInfo) + Send + Sync + 'static,
    {
        self.on_close = Some(Box::new(hook));
        self
    }

    /// The route for `msg_id`, if one is registered.
    pub fn find(&self, msg_id: u16) -> Option<&RouteFn<U>> {
        self.routes
            .binary_search_by_key(&msg_id, |(id, _)| *id)
            .ok()
            .map(|i| &*self.routes[i].1)
    }

    /// Whether any route runs on the worker pool.
    pub fn has_blocking_routes(&self) -> bool {
        self.blocking
    }

    pub(crate) fn new_user(&self) -> U {
        (self.new_user)()
    }

    pub(crate) fn close_hook(&self) -> Option<&CloseHook<U>> {
        self.on_close.as_deref()
    }

    fn insert(mut self, msg_id: u16, blocking: bool, f: Box<RouteFn<U>>) -> Self {
        assert!(
            wire::is_user_id(msg_id),
            "message id {msg_id:#06x} is reserved for the protocol (0xFFF0..=0xFFFF)"
        );
        match self.routes.binary_search_by_key(&msg_id, |(id, _)| *id) {
            Ok(_) => panic!("message id {msg_id} is routed twice"),
            Err(at) => self.routes.insert(at, (msg_id, f)),
        }
        self.blocking |= blocking;
        self
    }
}

impl<U> fmt::Debug for Router<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u16> = self.routes.iter().map(|(id, _)| *id).collect();
        f.debug_struct("Router")
            .field("routes", &ids)
            .field("on_close", &self.on_close.is_some())
            .finish()
    }
}

fn bad_body(e: prost::DecodeError) -> HandlerError {
    HandlerError::with_code(ErrorCode::BadBody, e.to_string())
}

/// What a route handler sees: the request's ids, the connection, its user data, and ways to
/// reply and push. Valid only during the handler call.
///
/// Everything sent through it during one read event is written to the socket together, in one
/// write, after the event. A frame larger than the server's `max_frame` is never sent: a reply
/// is replaced by a [`ErrorCode::TooLarge`] error for its request, a push fails with
/// [`FrameError::TooLarge`].
pub struct FrameConn<'a, 'c, U: 'static> {
    pub(crate) conn: &'a mut Conn<'c, FrameProtocol<U>>,
    pub(crate) state: &'a mut FrameConnState<U>,
    pub(crate) dispatch: &'a FrameDispatch<U>,
    pub(crate) msg_id: u16,
    pub(crate) request_id: u32,
}

impl<'a, 'c, U: 'static> FrameConn<'a, 'c, U> {
    /// The request's message id.
    pub fn msg_id(&self) -> u16 {
        self.msg_id
    }

    /// The request's id, echoed in replies.
    pub fn request_id(&self) -> u32 {
        self.request_id
    }

    /// This connection's typed user data.
    pub fn user(&mut self) -> &mut U {
        &mut self.state.user
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    /// The connection's id (loop, slot, generation).
    pub fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// The loop's clock in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.conn.now_ms()
    }

    /// A cross-thread handle for pushing to this connection later (from any thread).
    pub fn handle(&self) -> FrameHandle {
        FrameHandle {
            handle: self.conn.handle(),
            max_frame: self.dispatch.config.max_frame,
        }
    }

    /// Reply with `body`: the request's message id, RESPONSE flag, its request id.
    pub fn reply(&mut self, body: &[u8]) {
        if body.len() > self.max_frame() {
            return self.reply_too_large(body.len());
        }
        let (id, rid) = (self.msg_id, self.request_id);
        self.conn.with_output(|buf| {
            let _ = wire::encode(buf, id, Flags::RESPONSE, rid, body);
        });
    }

    /// Reply with a prost message, encoded straight into the output buffer.
    pub fn reply_msg<M: Message>(&mut self, msg: &M) {
        let (id, rid) = (self.msg_id, self.request_id);
        if let Err(len) = self.write_msg(id, Flags::RESPONSE, rid, msg) {
            self.reply_too_large(len);
        }
    }

    /// Answer the request with an error frame (the connection stays open). Returning
    /// `Err(HandlerError)` from the handler does the same.
    pub fn reply_error(&mut self, code: ErrorCode, text: &str) {
        let rid = self.request_id;
        self.conn.with_output(|buf| {
            let _ = wire::encode_error(buf, rid, code, text);
        });
    }

    /// Push a frame the peer did not ask for: PUSH flag, request id 0.
    pub fn push(&mut self, msg_id: u16, body: &[u8]) -> Result<(), FrameError> {
        self.send(msg_id, Flags::PUSH, 0, body)
    }

    /// Push a prost message (PUSH flag, request id 0), encoded straight into the output buffer.
    pub fn push_msg<M: Message>(&mut self, msg_id: u16, msg: &M) -> Result<(), FrameError> {
        self.write_msg(msg_id, Flags::PUSH, 0, msg)
            .map_err(|len| self.too_large(len))
    }

    /// Send any frame (for flags or request ids the other methods do not cover).
    pub fn send(
        &mut self,
        msg_id: u16,
        flags: Flags,
        request_id: u32,
        body: &[u8],
    ) -> Result<(), FrameError> {
        if body.len() > self.max_frame() {
            return Err(self.too_large(body.len()));
        }
        self.conn.with_output(|buf| {
            let _ = wire::encode(buf, msg_id, flags, request_id, body);
        });
        Ok(())
    }

    /// Queue bytes that already hold whole encoded frames (e.g. one broadcast encoded once
    /// with [`encode_msg`] and sent to many connections).
    pub fn send_encoded(&mut self, frames: &[u8]) {
        self.conn.send_raw(frames);
    }

    /// Bytes queued for this connection and not yet written.
    pub fn pending_output(&self) -> usize {
        self.conn.pending_output()
    }

    /// Close the connection now (queued output is dropped).
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// Close the connection once everything queued has been written.
    pub fn close_after_flush(&mut self) {
        self.conn.close_after_flush();
    }

    fn max_frame(&self) -> usize {
        self.dispatch.config.max_frame as usize
    }

    fn too_large(&self, len: usize) -> FrameError {
        self.dispatch.counters.bump_oversized();
        let max = self.dispatch.config.max_frame;
        FrameError::TooLarge {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            max,
        }
    }

    fn reply_too_large(&mut self, len: usize) {
        let err = self.too_large(len);
        tracing::warn!(
            "conn {} ({}): reply to message {} dropped: {err}",
            self.conn.id(),
            self.conn.peer_addr(),
            self.msg_id
        );
        self.reply_error(ErrorCode::TooLarge, &format!("reply too large: {err}"));
    }

    /// Encode `msg` as one frame into the output buffer; `Err(body_len)` (and nothing queued)
    /// if its body exceeds `max_frame`.
    fn write_msg<M: Message>(
        &mut self,
        msg_id: u16,
        flags: Flags,
        rid: u32,
        msg: &M,
    ) -> Result<(), usize> {
        let max = self.max_frame();
        self.conn
            .with_output(|buf| {
                let start = buf.len();
                let _ = wire::encode_with(buf, msg_id, flags, rid, |b| msg.encode_raw(b));
                let len = buf.len() - start - HEADER_LEN;
                if len > max {
                    buf.truncate(start);
                    return Err(len);
                }
                Ok(())
            })
            .unwrap_or(Ok(()))
    }

    /// Run `fut` as a task of this connection; the encoder it resolves to writes the reply
    /// body (or its error becomes an error frame), sent like a pool reply.
    pub(crate) fn spawn_reply<Fut, E>(&mut self, fut: Fut)
    where
        Fut: std::future::Future<Output = Result<E, HandlerError>> + 'static,
        E: FnOnce(&mut Vec<u8>),
    {
        let (msg_id, rid) = (self.msg_id, self.request_id);
        let max = self.max_frame();
        let handle = self.conn.handle();
        let counters = self.dispatch.counters.clone();
        self.state.pending_jobs += 1;
        self.conn.spawn(async move {
            let done = crate::task::catch_panic(fut).await;
            let out = finish_job(msg_id, rid, max, &counters, move |b| match done {
                Ok(Ok(encode)) => {
                    encode(b);
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                // Re-raised inside the job, so it is counted and logged as a handler panic.
                Err(panic) => std::panic::resume_unwind(panic),
            });
            handle.notify(POOL_REPLY, out);
        });
    }

    /// Run `job` on the worker pool; it appends the reply body to the buffer it is given. The
    /// finished frame (or error frame) goes back through the connection's handle; a full
    /// queue is `Err` with [`ErrorCode::Busy`].
    pub(crate) fn submit<J>(&mut self, job: J) -> Result<(), HandlerError>
    where
        J: FnOnce(&mut Vec<u8>) -> Result<(), HandlerError> + Send + 'static,
    {
        let Some(pool) = self.dispatch.pool.as_ref() else {
            return Err(HandlerError::with_code(
                ErrorCode::Internal,
                "no worker pool configured",
            ));
        };
        let (msg_id, rid) = (self.msg_id, self.request_id);
        let max = self.max_frame();
        let handle = self.conn.handle();
        let counters = self.dispatch.counters.clone();
        let run = move || {
            let out = finish_job(msg_id, rid, max, &counters, job);
            handle.notify(POOL_REPLY, out);
        };
        pool.try_submit(run).map_err(|_| {
            HandlerError::with_code(ErrorCode::Busy, "worker pool queue is full; retry later")
        })?;
        self.state.pending_jobs += 1;
        Ok(())
    }
}

/// Run a job that encodes a reply body, and frame its result for request `rid`: the reply
/// (RESPONSE flag), or an error frame if it failed, panicked ([`ErrorCode::Internal`]) or made
/// a body over `max` ([`ErrorCode::TooLarge`]); failures are counted.
fn finish_job<J>(
    msg_id: u16,
    rid: u32,
    max: usize,
    counters: &super::service::Counters,
    job: J,
) -> Vec<u8>
where
    J: FnOnce(&mut Vec<u8>) -> Result<(), HandlerError>,
{
    let mut out = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut failed = None;
        let _ = wire::encode_with(&mut out, msg_id, Flags::RESPONSE, rid, |b| {
            failed = job(b).err();
        });
        failed
    }));
    let error = match result {
        Ok(None) if out.len() - HEADER_LEN <= max => None,
        Ok(None) => {
            counters.bump_oversized();
            Some(HandlerError::with_code(
                ErrorCode::TooLarge,
                format!(
                    "reply too large: {} bytes > max {max}",
                    out.len() - HEADER_LEN
                ),
            ))
        }
        Ok(Some(e)) => {
            counters.count_error(e.code());
            Some(e)
        }
        Err(panic) => {
            counters.count_error(ErrorCode::Internal);
            tracing::error!(
                "handler for message {msg_id} panicked: {}",
                super::service::panic_text(&panic)
            );
            Some(HandlerError::with_code(
                ErrorCode::Internal,
                "internal error",
            ))
        }
    };
    if let Some(e) = error {
        out.clear();
        let _ = wire::encode_error(&mut out, rid, e.code(), e.text());
    }
    out
}

/// Pushes frames to one connection from any thread: a [`Handle`] that speaks frames.
///
/// Stale-safe like the handle it wraps: after the connection closes its frames are dropped
/// and counted, never delivered to a later connection in the same slot.
#[derive(Clone, Debug)]
pub struct FrameHandle {
    handle: Handle,
    max_frame: u32,
}

impl FrameHandle {
    /// The connection this handle addresses.
    pub fn id(&self) -> ConnId {
        self.handle.id()
    }

    /// The underlying core handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Push `body` (PUSH flag, request id 0).
    pub fn push(&self, msg_id: u16, body: &[u8]) -> Result<(), FrameError> {
        self.check(body.len())?;
        self.handle
            .send(encode_frame(msg_id, Flags::PUSH, 0, body)?);
        Ok(())
    }

    /// Push a prost message (PUSH flag, request id 0).
    pub fn push_msg<M: Message>(&self, msg_id: u16, msg: &M) -> Result<(), FrameError> {
        self.check(msg.encoded_len())?;
        self.handle.send(encode_msg(msg_id, Flags::PUSH, 0, msg)?);
        Ok(())
    }

    /// Queue bytes that already hold whole encoded frames, e.g. one broadcast made once with
    /// [`encode_msg`] and cloned (cheaply: it is [`Bytes`]) for every member of a room.
    pub fn send_encoded(&self, frames: Bytes) {
        self.handle.send(frames);
    }

    /// Close the connection now.
    pub fn close(&self) {
        self.handle.close();
    }

    /// Close the connection once its queued output has been written.
    pub fn close_after_flush(&self) {
        self.handle.close_after_flush();
    }

    fn check(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_frame as usize {
            return Err(FrameError::TooLarge {
                len: u32::try_from(len).unwrap_or(u32::MAX),
                max: self.max_frame,
            });
        }
        Ok(())
    }
}

/// One encoded frame as [`Bytes`], for [`FrameHandle::send_encoded`] or
/// [`FrameConn::send_encoded`].
///
/// ```
/// use herd_core::frame::encode_frame;
/// use herd_proto::frame::Flags;
///
/// let b = encode_frame(9, Flags::PUSH, 0, b"hey").unwrap();
/// assert_eq!(&b[..], &[0, 0, 0, 3, 0, 9, 0, 4, 0, 0, 0, 0, b'h', b'e', b'y']);
/// ```
pub fn encode_frame(
    msg_id: u16,
    flags: Flags,
    request_id: u32,
    body: &[u8],
) -> Result<Bytes, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    wire::encode(&mut out, msg_id, flags, request_id, body)?;
    Ok(out.into())
}

/// One frame whose body is the prost encoding of `msg`, as [`Bytes`] (encode once, send to
/// many).
pub fn encode_msg<M: Message>(
    msg_id: u16,
    flags: Flags,
    request_id: u32,
    msg: &M,
) -> Result<Bytes, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + msg.encoded_len());
    wire::encode_with(&mut out, msg_id, flags, request_id, |b| msg.encode_raw(b))?;
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &mut FrameConn<'_, '_, ()>, _: &[u8]) -> Result<Option<Vec<u8>>, HandlerError> {
        Ok(None)
    }

    #[test]
    fn routes_are_found_by_id_whatever_the_registration_order() {
        let r = Router::new()
            .route_raw(300, ok)
            .route_raw(1, ok)
            .route_raw(0xFFEF, ok)
            .route_raw(42, ok);
        for id in [1, 42, 300, 0xFFEF] {
            assert!(r.find(id).is_some(), "{id}");
        }
        for id in [0, 2, 299, 0xFFF0, 0xFFFE] {
            assert!(r.find(id).is_none(), "{id}");
        }
        assert!(!r.has_blocking_routes());
        let r = r.route_blocking_raw(7, |b| Ok(b.to_vec()));
        assert!(r.has_blocking_routes());
        assert_eq!(
            format!("{r:?}"),
            "Router { routes: [1, 7, 42, 300, 65519], on_close: false }"
        );
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn reserved_ids_cannot_be_routed() {
        let _ = Router::new().route_raw(wire::PING_ID, ok);
    }

    #[test]
    #[should_panic(expected = "routed twice")]
    fn an_id_cannot_be_routed_twice() {
        let _ = Router::new().route_raw(5, ok).route_raw(5, ok);
    }

    #[test]
    fn encoded_frames_decode_back() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct M {
            #[prost(string, tag = "1")]
            s: String,
        }
        let b = encode_msg(3, Flags::PUSH, 0, &M { s: "hi".into() }).unwrap();
        let (used, f) = wire::FrameDecoder::default().decode(&b).unwrap();
        let f = f.unwrap();
        assert_eq!(
            (used, f.header.msg_id, f.header.flags),
            (b.len(), 3, Flags::PUSH)
        );
        assert_eq!(M::decode(f.body).unwrap().s, "hi");
    }
}
