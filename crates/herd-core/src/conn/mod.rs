//! What a handler sees, and the connection types under it.
//!
//! The handler-facing part: the connection context [`Conn`], the loop context [`LoopCx`], the
//! stale-safe addresses [`ConnId`] and [`Handle`]. `Conn` and `LoopCx` borrow the loop's
//! internals for the length of one callback; they never outlive it and are never shared across
//! threads. A [`Handle`] is the cross-thread way in: it queues a command to the owning loop and
//! wakes it once (coalesced), and the loop checks the connection's generation before acting,
//! so a handle to a closed connection can never reach the next tenant of the same slot.
//!
//! Under them, one type per concern, each owning its data behind private fields:
//! `Connection` (the record: transport, codec, lifecycle, both sides), `Lifecycle` (open,
//! draining, closing), `Rx` (read buffer, end of stream, pause reasons), `Tx` (output buffer,
//! file queue, the one send loop), `Transport` (the seam where TLS and the PROXY preamble plug
//! in), and `Core` (the loop's services a callback may use). The event loop drives them; this
//! module does not import it.

mod connection;
mod lifecycle;
mod rx;
mod services;
#[cfg(feature = "tls")]
mod tls;
pub(crate) mod transport;
mod tx;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use crate::id::ConnId;
pub(crate) use connection::Connection;
pub(crate) use services::{Core, TimerKind};
#[cfg(feature = "tls")]
pub(crate) use tls::TlsStream;
pub(crate) use tx::Flushed;

use crate::clock::millis as ms;
use crate::codec::Encoder;
use crate::handler::Handler;
use crate::inbox::{Cmd, Inbox};
use crate::reason::CloseReason;
use crate::stats::Stats;
use crate::timer::TimerId;

/// Smallest pass-through reply `Conn::send` writes straight to the socket. Below it the copy
/// into the output buffer costs less than the extra segment a second `send` in the same
/// callback would then need (it could no longer share the write).
const DIRECT_WRITE_MIN: usize = 16 * 1024;

/// A connection on its loop: its record and the handler's state (`None` until opened and
/// after close).
pub(crate) struct Slot<H: Handler> {
    pub(crate) conn: Connection<H::Codec>,
    pub(crate) state: Option<H::State>,
}

/// A cross-thread, stale-safe reference to a connection. `Send + Sync + Clone`.
///
/// Commands are queued to the owning loop (from another thread through its inbox and wake-up;
/// on the loop's own thread, from a task or a callback, to a local queue the loop runs in the
/// same iteration); if the connection has closed by the time the loop runs them they are
/// dropped and counted in [`Stats::stale_commands`].
#[derive(Clone)]
pub struct Handle {
    pub(crate) id: ConnId,
    pub(crate) inbox: Arc<Inbox>,
}

impl Handle {
    /// The connection this handle addresses.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Give the owning loop a command: directly when called on that loop's thread (it runs
    /// after the loop's tasks, in this iteration), else through its inbox.
    fn push(&self, cmd: Cmd) {
        if let Err(cmd) = crate::task::push_local(&self.inbox, cmd) {
            self.inbox.push(cmd);
        }
    }

    /// Queue already-encoded bytes to be written to the connection.
    pub fn send(&self, bytes: impl Into<Bytes>) {
        self.push(Cmd::Send(self.id, bytes.into()));
    }

    /// Run the handler's [`on_notify`](crate::Handler::on_notify) for this connection on its
    /// loop, with a token and data of your choosing (e.g. a worker-pool result that the
    /// handler must order with other replies). Dropped and counted if the connection is gone.
    pub fn notify(&self, token: u64, data: impl Into<Bytes>) {
        self.push(Cmd::Notify(self.id, token, data.into()));
    }

    /// Close the connection now (pending output is discarded).
    pub fn close(&self) {
        self.push(Cmd::Close(self.id, false));
    }

    /// Close the connection once its pending output has been written.
    pub fn close_after_flush(&self) {
        self.push(Cmd::Close(self.id, true));
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("id", &self.id).finish()
    }
}

/// A timer set through [`Conn`] or [`LoopCx`]; pass it to `cancel_timer` to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// A one-shot timer.
    Once(TimerId),
    /// A repeating timer (its wheel entry changes on every period; this id does not).
    Every(u64),
}

/// The connection a callback is about. Valid only during that callback.
pub struct Conn<'a, H: Handler> {
    conn: &'a mut Connection<H::Codec>,
    core: &'a mut Core,
}

impl<'a, H: Handler> Conn<'a, H> {
    /// The context for one callback about `conn`.
    #[inline]
    pub(crate) fn new(conn: &'a mut Connection<H::Codec>, core: &'a mut Core) -> Self {
        Conn { conn, core }
    }

    /// The same connection for a shorter borrow (a protocol layer wraps it in its own
    /// context).
    #[inline]
    pub(crate) fn reborrow(&mut self) -> Conn<'_, H> {
        Conn {
            conn: &mut *self.conn,
            core: &mut *self.core,
        }
    }

    /// The connection's codec, to switch its mode (e.g. to WebSocket framing after an HTTP
    /// upgrade). The next bytes read are decoded with it.
    pub fn codec_mut(&mut self) -> &mut H::Codec {
        self.conn.codec_mut()
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// A cross-thread handle to this connection.
    pub fn handle(&self) -> Handle {
        Handle {
            id: self.conn.id(),
            inbox: self.core.inbox.clone(),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer()
    }

    /// The address of the socket's own peer: the same as [`peer_addr`](Conn::peer_addr),
    /// except behind the PROXY protocol, where this is the balancer's and `peer_addr` the
    /// client's from the header.
    pub fn socket_addr(&self) -> SocketAddr {
        self.conn.socket_peer()
    }

    /// The PROXY protocol header this connection began with (listeners with
    /// [`Options::proxy_protocol`](crate::Options::proxy_protocol)), with its addresses and
    /// TLVs (ALPN, authority, unique id, ...).
    pub fn proxy_header(&self) -> Option<&herd_proto::proxy::ProxyHeader> {
        self.conn.proxy_header()
    }

    /// The connection is TLS (its bytes are decrypted below the codec).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.conn.transport().tls().is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The server name the TLS client asked for (SNI), if any.
    #[cfg(feature = "tls")]
    pub fn tls_server_name(&self) -> Option<&str> {
        self.conn.transport().tls().and_then(|t| t.server_name())
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    #[cfg(feature = "tls")]
    pub fn tls_alpn(&self) -> Option<&[u8]> {
        self.conn.transport().tls().and_then(|t| t.alpn())
    }

    /// The local address the connection was accepted on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.conn.local_addr()
    }

    /// The loop's current time in ms (its clock, read once per loop iteration).
    pub fn now_ms(&self) -> u64 {
        self.core.now
    }

    /// Encode `item` with the connection's codec and queue it. Everything sent during one read
    /// event goes out in one write after the event. After close, sends are dropped and counted.
    /// An encoder error closes the connection ([`CloseReason::Encode`]).
    pub fn send<T>(&mut self, item: T)
    where
        H::Codec: Encoder<T>,
    {
        if !self.conn.accepts_output() {
            self.core.stats.stale_commands += 1;
            return;
        }
        // A large pass-through reply to the last message read, with nothing queued before
        // it: the one write the flush would make, minus the copy into the output buffer.
        // (The size is checked first: small replies, the common case, touch nothing more.)
        if let Some(bytes) = self.conn.codec().as_bytes(&item) {
            if bytes.len() >= DIRECT_WRITE_MIN && self.core.last_item && self.conn.idle_output() {
                self.core.write_direct(self.conn, bytes);
                return;
            }
        }
        let (tx, codec) = self.conn.tx_and_codec();
        let dst = tx.out(&mut self.core.pool);
        let before = dst.len();
        match codec.encode(item, dst) {
            Ok(()) => {
                self.core.stats.msgs_out += 1;
                self.core.after_send(self.conn);
            }
            Err(e) => {
                dst.truncate(before);
                tracing::warn!("conn {}: encode failed: {e}", self.conn.id());
                self.core.mark_close(self.conn, CloseReason::Encode);
            }
        }
    }

    /// Queue raw bytes, bypassing the codec.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if !self.conn.accepts_output() {
            self.core.stats.stale_commands += 1;
            return;
        }
        self.conn
            .tx_mut()
            .out(&mut self.core.pool)
            .extend_from_slice(bytes);
        self.core.stats.msgs_out += 1;
        self.core.after_send(self.conn);
    }

    /// Append to the output buffer directly (for encoders that need no codec state).
    pub fn with_output<R>(&mut self, f: impl FnOnce(&mut Vec<u8>) -> R) -> Option<R> {
        if !self.conn.accepts_output() {
            self.core.stats.stale_commands += 1;
            return None;
        }
        let r = f(self.conn.tx_mut().out(&mut self.core.pool));
        self.core.stats.msgs_out += 1;
        self.core.after_send(self.conn);
        Some(r)
    }

    /// Bytes queued in memory and not yet taken by the socket (queued files not counted).
    pub fn pending_output(&self) -> usize {
        self.conn.tx().pending()
    }

    /// Queue `len` bytes of `file` from `offset`, sent with `sendfile` (no copy through user
    /// space, no buffer memory) after everything sent before; bytes sent afterwards follow
    /// it. If the file turns out shorter than `len`, the connection is closed
    /// ([`CloseReason::Error`]), since the peer was promised those bytes.
    pub fn send_file(&mut self, file: std::fs::File, offset: u64, len: u64) {
        if !self.conn.accepts_output() {
            self.core.stats.stale_commands += 1;
            return;
        }
        if len == 0 {
            return;
        }
        self.conn.tx_mut().push_file(file, offset, len);
        self.core.stats.msgs_out += 1;
        self.core.mark_dirty(self.conn);
    }

    /// True while output has passed the high watermark and not yet drained to the low one
    /// (reading from this peer is paused). A handler that pushes on its own should stop sending while this holds
    /// and continue from `on_backpressure(false)`.
    pub fn is_paused(&self) -> bool {
        self.conn.rx().output_paused()
    }

    /// Close now; pending output is discarded. `on_close` runs at the end of this loop
    /// iteration with [`CloseReason::Local`].
    pub fn close(&mut self) {
        self.core.mark_close(self.conn, CloseReason::Local);
    }

    /// Close once everything queued so far has been written.
    pub fn close_after_flush(&mut self) {
        self.core.close_after_flush(self.conn, CloseReason::Local);
    }

    /// Close with a specific reason once everything queued has been written (protocol layers
    /// use this for e.g. [`CloseReason::Flood`] or [`CloseReason::Heartbeat`]).
    pub fn close_with(&mut self, reason: CloseReason, flush: bool) {
        if flush {
            self.core.close_after_flush(self.conn, reason);
        } else {
            self.core.mark_close(self.conn, reason);
        }
    }

    /// Half-close: shut down the write side once queued output is written; reading goes on.
    pub fn shutdown_write(&mut self) {
        self.conn.tx_mut().shutdown_after_flush();
        self.core.mark_dirty(self.conn);
    }

    /// Stop reading from this peer (its data waits in the kernel) until [`resume_reading`].
    ///
    /// [`resume_reading`]: Self::resume_reading
    pub fn pause_reading(&mut self) {
        self.conn.rx_mut().pause_user();
    }

    /// How full the server's memory budget is ([`Options::memory_budget`](crate::Options::memory_budget)),
    /// as of this loop's last scan: a protocol ends keep-alive from [`Level::Soft`] and refuses
    /// new requests at [`Level::Hard`]. Always [`Level::Normal`] without a budget.
    ///
    /// [`Level::Soft`]: crate::overload::Level::Soft
    /// [`Level::Hard`]: crate::overload::Level::Hard
    /// [`Level::Normal`]: crate::overload::Level::Normal
    #[inline]
    pub fn overload(&self) -> crate::overload::Level {
        self.core.overload
    }

    /// Run `fut` as a task on this loop, bound to this connection: it is cancelled (dropped)
    /// when the connection closes, and a panic in it closes the connection. To act on the
    /// connection from the task, move a [`handle`](Self::handle) into it.
    ///
    /// ```no_run
    /// # use herd_core::{Conn, Handler};
    /// # fn on_message<H: Handler>(cx: &mut Conn<'_, H>) {
    /// let h = cx.handle();
    /// cx.spawn(async move {
    ///     herd_core::task::sleep(std::time::Duration::from_millis(5)).await;
    ///     h.send(herd_core::Bytes::from_static(b"later\n"));
    /// });
    /// # }
    /// ```
    pub fn spawn<F>(&mut self, fut: F) -> crate::task::JoinHandle<F::Output>
    where
        F: std::future::Future + 'static,
        F::Output: 'static,
    {
        let exec = crate::task::current().expect("a loop's callback runs on its thread");
        crate::task::spawn_on(&exec, fut, Some(self.conn.id()))
    }

    /// Undo [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&mut self) {
        if self.conn.rx_mut().resume_user() {
            self.core.want_read(self.conn);
        }
    }

    /// Run `on_timer(token)` for this connection once, after `delay`.
    pub fn run_after(&mut self, delay: Duration, token: u64) -> Timer {
        let kind = TimerKind::Conn {
            id: self.conn.id(),
            token,
            every: 0,
            periodic: 0,
        };
        Timer::Once(self.core.timers.insert(self.core.now + ms(delay), kind))
    }

    /// Run `on_timer(token)` for this connection every `period` until cancelled or closed.
    pub fn run_every(&mut self, period: Duration, token: u64) -> Timer {
        let id = self.conn.id();
        self.core
            .schedule_every(ms(period), |every, periodic| TimerKind::Conn {
                id,
                token,
                every,
                periodic,
            })
    }

    /// Cancel a timer of this connection (a fired or unknown timer is ignored).
    pub fn cancel_timer(&mut self, timer: Timer) {
        self.core.cancel_timer(timer);
    }

    /// Loop-wide counters (read-only).
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// The index of the loop running this connection.
    pub fn loop_index(&self) -> usize {
        self.core.loop_index
    }
}

/// The loop a loop-level callback runs on. Valid only during that callback.
pub struct LoopCx<'a, H: Handler> {
    pub(crate) slab: &'a mut slab::Slab<Slot<H>>,
    pub(crate) core: &'a mut Core,
}

impl<'a, H: Handler> LoopCx<'a, H> {
    /// This loop's index (0-based).
    pub fn loop_index(&self) -> usize {
        self.core.loop_index
    }

    /// The loop's current time in ms.
    pub fn now_ms(&self) -> u64 {
        self.core.now
    }

    /// Number of open connections on this loop.
    pub fn connections(&self) -> usize {
        self.slab.len()
    }

    /// Run `fut` as a task on this loop, bound to no connection (see [`crate::task`]).
    pub fn spawn<F>(&mut self, fut: F) -> crate::task::JoinHandle<F::Output>
    where
        F: std::future::Future + 'static,
        F::Output: 'static,
    {
        crate::task::spawn_local(fut)
    }

    /// Run `on_loop_timer(token)` once after `delay`.
    pub fn run_after(&mut self, delay: Duration, token: u64) -> Timer {
        let at = self.core.now + ms(delay);
        Timer::Once(self.core.timers.insert(
            at,
            TimerKind::Loop {
                token,
                every: 0,
                periodic: 0,
            },
        ))
    }

    /// Run `on_loop_timer(token)` every `period` until cancelled.
    pub fn run_every(&mut self, period: Duration, token: u64) -> Timer {
        self.core
            .schedule_every(ms(period), |every, periodic| TimerKind::Loop {
                token,
                every,
                periodic,
            })
    }

    /// Cancel a loop timer.
    pub fn cancel_timer(&mut self, timer: Timer) {
        self.core.cancel_timer(timer);
    }

    /// Call `f` for every open connection of this loop.
    pub fn for_each(&mut self, mut f: impl FnMut(&mut Conn<'_, H>, &mut H::State)) {
        for (_, slot) in self.slab.iter_mut() {
            if let Some(state) = slot.state.as_mut() {
                let mut cx = Conn::new(&mut slot.conn, self.core);
                f(&mut cx, state);
            }
        }
    }

    /// Call `f` for one connection of this loop, if it is still open.
    pub fn with_conn<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Conn<'_, H>, &mut H::State) -> R,
    ) -> Option<R> {
        let slot = self.slab.get_mut(id.slot as usize)?;
        if slot.conn.id() != id {
            return None;
        }
        let state = slot.state.as_mut()?;
        let mut cx = Conn::new(&mut slot.conn, self.core);
        Some(f(&mut cx, state))
    }

    /// Loop-wide counters (read-only).
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }
}
