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
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::codec::Decoder;
use crate::{CloseReason, Conn, Handle, Handler};

/// Messages queued to a connection's task before the loop stops reading from its peer.
pub const QUEUE_MAX: usize = 256;

/// The `on_notify` token a task uses to resume reading.
const RESUME: u64 = u64::MAX;

/// Items a loop hands to a task, in order, with the waker of the task waiting for them and
/// the flow control both ends need (shared by [`ConnTasks`] and the WebSocket `WsTasks`).
pub(crate) struct TaskQueue<T> {
    items: RefCell<VecDeque<T>>,
    /// The task's waker, kept across messages (a task's waker does not change, so it is
    /// cloned once, not per message).
    waker: RefCell<Option<Waker>>,
    /// The task waits on this queue (it found it empty): only then does a push wake it.
    waiting: Cell<bool>,
    /// The loop stopped reading the peer until the task catches up.
    paused: Cell<bool>,
    /// No more items will come.
    ended: Cell<bool>,
}

impl<T> Default for TaskQueue<T> {
    fn default() -> Self {
        TaskQueue {
            items: RefCell::new(VecDeque::new()),
            waker: RefCell::new(None),
            waiting: Cell::new(false),
            paused: Cell::new(false),
            ended: Cell::new(false),
        }
    }
}

impl<T> TaskQueue<T> {
    fn wake(&self) {
        if self.waiting.replace(false) {
            if let Some(w) = self.waker.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    /// Queue `item` and wake the task. True when the loop should stop reading the peer now
    /// ([`QUEUE_MAX`] items wait).
    pub(crate) fn push(&self, item: T) -> bool {
        let len = {
            let mut q = self.items.borrow_mut();
            q.push_back(item);
            q.len()
        };
        self.wake();
        len >= QUEUE_MAX && !self.paused.replace(true)
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.borrow().len()
    }

    /// No more items: the task sees `None` once it has taken the rest.
    pub(crate) fn end(&self) {
        self.ended.set(true);
        self.wake();
    }

    /// The next item (`None` once ended and empty); `resume` runs when a paused queue has
    /// drained to half.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>, resume: impl FnOnce()) -> Poll<Option<T>> {
        let item = self.items.borrow_mut().pop_front();
        match item {
            Some(item) => {
                if self.paused.get() && self.items.borrow().len() <= QUEUE_MAX / 2 {
                    self.paused.set(false);
                    resume();
                }
                Poll::Ready(Some(item))
            }
            None if self.ended.get() => Poll::Ready(None),
            None => {
                let mut w = self.waker.borrow_mut();
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                self.waiting.set(true);
                Poll::Pending
            }
        }
    }
}

/// What a connection and its task share (on one thread).
#[derive(Default)]
struct Shared {
    /// The queued messages' bytes, back to back: a message taken is split off the front as a
    /// view of the same buffer (no allocation per message; the buffer is reused once the
    /// views are dropped).
    bytes: RefCell<BytesMut>,
    /// The queued messages' lengths, in order.
    queue: TaskQueue<usize>,
    /// The connection is closed or closing (no close to ask for when the task ends).
    closed: Cell<bool>,
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
            .field("queued", &self.shared.queue.len())
            .finish()
    }
}

impl TaskConn {
    /// The next decoded message; `None` once the peer has closed its side and every message
    /// was taken (the connection stays open for what the task still sends, and closes when
    /// the task returns or calls [`close`](Self::close)).
    pub async fn recv(&mut self) -> Option<Bytes> {
        let len = std::future::poll_fn(|cx| {
            self.shared
                .queue
                .poll_next(cx, || self.handle.notify(RESUME, Bytes::new()))
        })
        .await?;
        Some(self.shared.bytes.borrow_mut().split_to(len).freeze())
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
        st.0.bytes.borrow_mut().extend_from_slice(msg);
        if st.0.queue.push(msg.len()) {
            cx.pause_reading();
        }
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
        st.0.queue.end();
        true
    }

    fn on_close(&mut self, _cx: &mut Conn<'_, Self>, st: TaskConnState, _reason: CloseReason) {
        st.0.closed.set(true);
        st.0.queue.end();
    }
}
