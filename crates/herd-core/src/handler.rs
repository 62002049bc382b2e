//! The handler trait: what a protocol or application implements to serve connections.
//!
//! The server calls a factory once per loop (`serve(|| MyHandler::new())`), so a handler is
//! owned by one thread and needs neither `Send` nor `Sync` once built. Per-connection state is
//! the typed associated [`Handler::State`], created by [`on_open`](Handler::on_open).
//!
//! Lifecycle, strictly: `on_open` exactly once before anything else (returning `None` refuses
//! the connection: it is closed with [`CloseReason::Refused`] and no other callback runs); then
//! any number of `on_message`, `on_timer`, `on_backpressure`; then `on_close` exactly once, and
//! nothing after it. A panic in a callback closes that connection ([`CloseReason::Panic`]), not
//! the loop.

use crate::codec::Decoder;
use crate::conn::{Conn, LoopCx};
pub use crate::reason::CloseReason;

/// The item type a handler's codec decodes.
pub type Item<'a, H> = <<H as Handler>::Codec as Decoder>::Item<'a>;

/// Serves the connections of one event loop.
///
/// ```
/// use herd_core::{codec::BytesCodec, Conn, Handler};
///
/// /// Echoes every byte back.
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     type Codec = BytesCodec;
///     fn new_codec(&mut self) -> BytesCodec { BytesCodec }
///     fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> { Some(()) }
///     fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
///         cx.send(msg);
///     }
/// }
/// ```
pub trait Handler: Sized + 'static {
    /// Per-connection state, created by `on_open`, dropped after `on_close`.
    type State;
    /// Per-connection codec.
    type Codec: Decoder;

    /// Make the codec for a new connection (before `on_open`, so `on_open` may send).
    fn new_codec(&mut self) -> Self::Codec;

    /// A connection was accepted. Return its state, or `None` to refuse it.
    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<Self::State>;

    /// A decoded item arrived. Replies sent here are written together after the read event.
    fn on_message(&mut self, cx: &mut Conn<'_, Self>, state: &mut Self::State, msg: Item<'_, Self>);

    /// The peer closed its side of the connection (a read returned end of stream). Return
    /// `false` (the default) to close the connection once pending output is written, or
    /// `true` to keep it half-open: nothing more is read, output still goes out (and the idle
    /// timeout still runs) until the handler closes it (e.g. with
    /// [`Handle::close_after_flush`](crate::Handle::close_after_flush)) — for work that is
    /// still answering what the peer sent before its FIN.
    fn on_peer_closed(&mut self, cx: &mut Conn<'_, Self>, state: &mut Self::State) -> bool {
        let _ = (cx, state);
        false
    }

    /// The connection closed; `state` is handed back for the last time.
    fn on_close(&mut self, cx: &mut Conn<'_, Self>, state: Self::State, reason: CloseReason) {
        let _ = (cx, state, reason);
    }

    /// The decoder rejected the input. The loop counts it, logs it and closes the connection
    /// after this returns (after flushing what was sent here, so an error reply such as HTTP 400
    /// reaches the peer).
    fn on_decode_error(
        &mut self,
        cx: &mut Conn<'_, Self>,
        state: &mut Self::State,
        err: &<Self::Codec as Decoder>::Error,
    ) {
        let _ = (cx, state, err);
    }

    /// Output passed the high watermark (`paused == true`: reading from this peer stopped) or
    /// drained below the low watermark (`paused == false`: reading resumed). A handler that
    /// pushes data on its own should stop while paused.
    fn on_backpressure(&mut self, cx: &mut Conn<'_, Self>, state: &mut Self::State, paused: bool) {
        let _ = (cx, state, paused);
    }

    /// A per-connection timer set with [`Conn::run_after`] or [`Conn::run_every`] fired.
    fn on_timer(&mut self, cx: &mut Conn<'_, Self>, state: &mut Self::State, token: u64) {
        let _ = (cx, state, token);
    }

    /// A [`Handle::notify`](crate::Handle::notify) from another thread arrived for this
    /// connection (only while it is open).
    fn on_notify(
        &mut self,
        cx: &mut Conn<'_, Self>,
        state: &mut Self::State,
        token: u64,
        data: bytes::Bytes,
    ) {
        let _ = (cx, state, token, data);
    }

    /// The loop started (before its first connection); set loop timers here.
    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        let _ = lp;
    }

    /// A loop timer set with [`LoopCx::run_after`] or [`LoopCx::run_every`] fired.
    fn on_loop_timer(&mut self, lp: &mut LoopCx<'_, Self>, token: u64) {
        let _ = (lp, token);
    }

    /// A graceful stop began. Called once for every open connection before idle ones are
    /// closed, so a protocol can say goodbye (a WebSocket Close 1001, a frame-protocol push);
    /// what it sends here is flushed before the connection counts as idle.
    fn on_stop(&mut self, cx: &mut Conn<'_, Self>, state: &mut Self::State) {
        let _ = (cx, state);
    }

    /// During a graceful stop, a connection with no buffered input or output is closed unless
    /// this says it is still busy (e.g. a reply is being computed on a worker pool).
    fn is_busy(&self, state: &Self::State) -> bool {
        let _ = state;
        false
    }

    /// Bytes this connection's state holds beyond the loop's own buffers (a request body
    /// being assembled, a fragmented message), for the overload guard's memory scan
    /// ([`Options::memory_budget`](crate::Options::memory_budget)). Default: 0.
    fn held_bytes(&self, state: &Self::State) -> usize {
        let _ = state;
        0
    }
}
