//! WebSocket connections served by tasks: one task per connection reads messages in order
//! with `recv().await` and may await cosockets, sleeps and other tasks between them.
//!
//! [`WsTasks`] is a [`WsHandler`] that starts, for every connection that completes its
//! upgrade, the task its function makes from a [`WsTaskConn`]. The loop still parses frames,
//! answers pings, runs the heartbeat and the close handshake; each text or binary message is
//! queued to the task and wakes it. What the task sends goes back through the connection's own
//! [`WsConn`] (so permessage-deflate uses the connection's compressor, and replies keep the
//! order they were sent in). The task is dropped when the connection closes; past
//! [`QUEUE_MAX`](crate::task::QUEUE_MAX) queued messages the loop stops reading the peer until
//! the task has taken half of them.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;

use super::{WsConn, WsHandler, WsRequest};
use crate::task::TaskQueue;
use crate::Handle;

/// Tokens a task's sends come back with (`on_notify`); below the ones the module reserves.
const SEND_TEXT: u64 = u64::MAX - 2;
const SEND_BINARY: u64 = u64::MAX - 3;
const CLOSE: u64 = u64::MAX - 4;
const RESUME: u64 = u64::MAX - 5;

/// A WebSocket message as a task receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

type Shared = TaskQueue<WsMessage>;

/// The per-connection state of [`WsTasks`] (opaque).
pub struct WsTaskState(Rc<Shared>);

/// A WebSocket connection as its task sees it.
pub struct WsTaskConn {
    shared: Rc<Shared>,
    handle: Handle,
    peer: SocketAddr,
    path: String,
}

impl std::fmt::Debug for WsTaskConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTaskConn")
            .field("peer", &self.peer)
            .field("path", &self.path)
            .finish()
    }
}

impl WsTaskConn {
    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<WsMessage> {
        std::future::poll_fn(|cx| {
            self.shared
                .poll_next(cx, || self.handle.notify(RESUME, Bytes::new()))
        })
        .await
    }

    /// Send a text message (after everything sent before).
    pub fn send_text(&self, text: impl Into<String>) {
        self.handle.notify(SEND_TEXT, Bytes::from(text.into()));
    }

    /// Send a binary message.
    pub fn send_binary(&self, data: impl Into<Bytes>) {
        self.handle.notify(SEND_BINARY, data);
    }

    /// Start the close handshake with `code` (e.g. 1000) and a short reason.
    pub fn close(&self, code: u16, reason: &str) {
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(reason.as_bytes());
        self.handle.notify(CLOSE, data);
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The path of the upgrade request.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A handle to the connection (for rooms and other threads).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

/// A [`WsHandler`] that serves each WebSocket connection with a task made by `f`.
///
/// ```no_run
/// use herd_core::ws::{WsMessage, WsService, WsTaskConn, WsTasks};
/// use herd_core::Server;
///
/// async fn echo(mut ws: WsTaskConn) {
///     while let Some(msg) = ws.recv().await {
///         match msg {
///             WsMessage::Text(t) => ws.send_text(t),
///             WsMessage::Binary(b) => ws.send_binary(b),
///         }
///     }
/// }
///
/// let server = WsService::new(|| WsTasks::new(echo))
///     .path("/ws")
///     .serve(Server::new().bind("127.0.0.1:9002")?)?;
/// # server.join();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WsTasks<F> {
    f: F,
}

impl<F, Fut> WsTasks<F>
where
    F: Fn(WsTaskConn) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    /// Serve connections with tasks made by `f`.
    pub fn new(f: F) -> Self {
        WsTasks { f }
    }
}

impl<F, Fut> WsHandler for WsTasks<F>
where
    F: Fn(WsTaskConn) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    type State = WsTaskState;

    fn on_open(&mut self, cx: &mut WsConn<'_, Self>, req: &WsRequest) -> Option<WsTaskState> {
        let shared: Rc<Shared> = Rc::default();
        let conn = WsTaskConn {
            shared: shared.clone(),
            handle: cx.handle(),
            peer: cx.peer_addr(),
            path: req.path().to_owned(),
        };
        cx.spawn((self.f)(conn));
        Some(WsTaskState(shared))
    }

    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, st: &mut WsTaskState, text: &str) {
        if st.0.push(WsMessage::Text(text.to_owned())) {
            cx.pause_reading();
        }
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, st: &mut WsTaskState, data: &[u8]) {
        if st.0.push(WsMessage::Binary(Bytes::copy_from_slice(data))) {
            cx.pause_reading();
        }
    }

    fn on_notify(
        &mut self,
        cx: &mut WsConn<'_, Self>,
        _st: &mut WsTaskState,
        token: u64,
        data: Bytes,
    ) {
        match token {
            SEND_TEXT => {
                // Made from a `String` by `send_text`.
                cx.send_text(std::str::from_utf8(&data).unwrap_or_default());
            }
            SEND_BINARY => {
                cx.send_binary(&data);
            }
            CLOSE if data.len() >= 2 => {
                let code = u16::from_be_bytes([data[0], data[1]]);
                cx.close(code, std::str::from_utf8(&data[2..]).unwrap_or_default());
            }
            RESUME => cx.resume_reading(),
            _ => {}
        }
    }

    fn on_close(&mut self, _cx: &mut WsConn<'_, Self>, st: WsTaskState, _code: u16, _r: &str) {
        st.0.end();
    }
}
