//! Connections served by tasks: one task per connection, written as straight-line async code
//! (`while let Some(msg) = conn.recv().await { ... }`), on the connection's own loop.
//!
//! [`ConnTasks`] is a [`Handler`] that starts, for every accepted connection, the task its
//! function makes from a [`TaskConn`]. The loop still does the reading, decoding, writing and
//! timeouts: each decoded message is queued to the task and wakes it (on the same thread: no
//! lock, no wake-up syscall), and what the task sends goes to the connection's output through
//! the loop's local command queue, flushed in the same iteration. The task is bound to the
//! connection: it is dropped when the connection closes, and a panic in it closes only that
//! connection. When the peer closes its side, the connection stays half-open: the task takes
//! what is still queued, `recv` then returns `None`, and the connection closes (after its
//! output is written) when the task returns. A task that falls behind holds the peer back:
//! past [`QUEUE_MAX`] queued messages the loop stops reading the socket until the task has
//! taken half of them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::codec::Decoder;
use crate::{CloseReason, Conn, Handle, Handler};

/// Messages queued to a connection's task before the loop stops reading from its peer.
pub const QUEUE_MAX: usize = 256;

/// The `on_notify` token a task uses to resume reading.
const RESUME: u64 = u64::MAX;

/// What a connection and its task share (on one thread).
#[derive(Default)]
struct Shared {
    /// The queued messages' bytes, back to back: a message taken is split off the front as a
    /// view of the same buffer (no allocation per message; the buffer is reused once the
    /// views are dropped).
    bytes: RefCell<BytesMut>,
    /// The queued messages' lengths, in order.
    queue: RefCell<VecDeque<usize>>,
    waker: RefCell<Option<Waker>>,
    /// Reading is paused until the task catches up.
    paused: Cell<bool>,
    /// The peer ended its side: `recv` returns `None` once the queue is empty.
    ended: Cell<bool>,
    /// The connection is closed or closing (no close to ask for when the task ends).
    closed: Cell<bool>,
}

impl Shared {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// The per-connection state of [`ConnTasks`] (what the loop shares with the task; opaque).
pub struct TaskConnState(Rc<Shared>);

/// A connection as its task sees it: messages in, bytes out.
pub struct TaskConn {
    shared: Rc<Shared>,
    handle: Handle,
    peer: SocketAddr,
}

impl std::fmt::Debug for TaskConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskConn")
            .field("peer", &self.peer)
            .field("queued", &self.shared.queue.borrow().len())
            .finish()
    }
}

impl TaskConn {
    /// The next decoded message; `None` once the peer has closed its side and every message
    /// was taken (the connection stays open for what the task still sends, and closes when
    /// the task returns or calls [`close`](Self::close)).
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| {
            let len = self.shared.queue.borrow_mut().pop_front();
            match len {
                Some(len) => {
                    let m = self.shared.bytes.borrow_mut().split_to(len).freeze();
                    if self.shared.paused.get() && self.shared.queue.borrow().len() <= QUEUE_MAX / 2
                    {
                        self.shared.paused.set(false);
                        self.handle.notify(RESUME, Bytes::new());
                    }
                    Poll::Ready(Some(m))
                }
                None if self.shared.ended.get() => Poll::Ready(None),
                None => {
                    *self.shared.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Write already-encoded bytes to the connection (after everything sent before).
    pub fn send(&self, bytes: impl Into<Bytes>) {
        self.handle.send(bytes);
    }

    /// Close the connection once what was sent has been written (also done when the task
    /// returns).
    pub fn close(&self) {
        if !self.shared.closed.replace(true) {
            self.handle.close_after_flush();
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// A handle to the connection, for other tasks and threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for TaskConn {
    fn drop(&mut self) {
        self.close();
    }
}

/// A [`Handler`] that serves each connection with a task made by `f` (see the module docs).
///
/// `codec` decodes the messages (any codec whose items are byte slices:
/// [`BytesCodec`](crate::codec::BytesCodec), [`LengthDelimited`](crate::codec::LengthDelimited),
/// [`LinesCodec`](crate::codec::LinesCodec)); sends are raw bytes, as with [`Handle::send`].
///
/// ```no_run
/// use herd_core::codec::BytesCodec;
/// use herd_core::task::{ConnTasks, TaskConn};
/// use herd_core::Server;
///
/// async fn echo(mut conn: TaskConn) {
///     while let Some(msg) = conn.recv().await {
///         conn.send(msg);
///     }
/// }
///
/// let server = Server::new()
///     .bind("127.0.0.1:9000")?
///     .serve(|| ConnTasks::new(BytesCodec, echo))?;
/// # server.join();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ConnTasks<C, F> {
    codec: C,
    f: F,
}

impl<C, F, Fut> ConnTasks<C, F>
where
    C: Clone,
    F: Fn(TaskConn) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    /// Serve connections decoded with `codec` by tasks made with `f`.
    pub fn new(codec: C, f: F) -> Self {
        ConnTasks { codec, f }
    }
}

impl<C, F, Fut> Handler for ConnTasks<C, F>
where
    C: for<'a> Decoder<Item<'a> = &'a [u8]> + Clone + 'static,
    F: Fn(TaskConn) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    type State = TaskConnState;
    type Codec = C;

    fn new_codec(&mut self) -> C {
        self.codec.clone()
    }

    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<TaskConnState> {
        let shared = Rc::new(Shared::default());
        let conn = TaskConn {
            shared: shared.clone(),
            handle: cx.handle(),
            peer: cx.peer_addr(),
        };
        cx.spawn((self.f)(conn));
        Some(TaskConnState(shared))
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, st: &mut TaskConnState, msg: &[u8]) {
        let st = &st.0;
        st.bytes.borrow_mut().extend_from_slice(msg);
        let len = {
            let mut q = st.queue.borrow_mut();
            q.push_back(msg.len());
            q.len()
        };
        if len >= QUEUE_MAX && !st.paused.get() {
            st.paused.set(true);
            cx.pause_reading();
        }
        st.wake();
    }

    fn on_notify(
        &mut self,
        cx: &mut Conn<'_, Self>,
        _st: &mut TaskConnState,
        token: u64,
        _: Bytes,
    ) {
        if token == RESUME {
            cx.resume_reading();
        }
    }

    fn on_peer_closed(&mut self, _cx: &mut Conn<'_, Self>, st: &mut TaskConnState) -> bool {
        // Half-open until the task has answered what was queued and returned.
        st.0.ended.set(true);
        st.0.wake();
        true
    }

    fn on_close(&mut self, _cx: &mut Conn<'_, Self>, st: TaskConnState, _reason: CloseReason) {
        st.0.closed.set(true);
        st.0.ended.set(true);
    }
}
